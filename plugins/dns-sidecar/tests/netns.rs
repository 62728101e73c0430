//! Root tests in network namespaces the test builds by hand with `ip`:
//!
//! ```text
//!   C1 (eth0 10.0.0.2, fd00::2) ─┐                        ┌─ U (10.0.250.2): fake upstream DNS
//!   C2 (eth0 10.0.0.3, fd00::3) ─┼─ br0 10.0.0.1, fd00::1 │   and an "outside" client
//!                                │        HOST ───────────┘ (10.0.250.1)
//!   C3 (eth0 10.0.1.2) ──────────┴─ br1 10.0.1.1 (second network)
//! ```
//!
//! The plugin runs inside HOST (setns before exec) with a hand-made
//! prevResult, so the daemon it starts lives there too; queries go from the
//! container namespaces. Namespaces are removed on drop, and only the
//! daemons of this test's own (uniquely named) networks are killed.

use std::fs;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::netns::Netns;
use dns_sidecar::forward::{TRIES, TRY_TIMEOUT};
use dns_sidecar::server::{MAX_TCP, MAX_TCP_PER_CLIENT, TCP_IDLE, TCP_LIFETIME};
use dns_sidecar::wire::{self, rcode, rtype, Rdata, Response, Writer};
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_dns-sidecar");
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn unique() -> usize {
    COUNTER.fetch_add(1, Ordering::SeqCst)
}

fn is_root() -> bool {
    // SAFETY: plain getter.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! need_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

fn sh(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("ip");
    assert!(out.status.success(), "ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A network namespace of ours, deleted on drop.
struct Ns {
    name: String,
}

impl Ns {
    fn new() -> Ns {
        let name = format!("cni-dns-t-{}-{}", std::process::id(), unique());
        sh(&["netns", "add", &name]);
        let ns = Ns { name };
        ns.ip("link set lo up");
        ns
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
    fn ip(&self, args: &str) {
        let mut v = vec!["-n", &self.name];
        v.extend(args.split_whitespace());
        sh(&v);
    }
    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        Netns::open(self.path()).unwrap().run(f).unwrap()
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn cmdline(pid: u32) -> Vec<String> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| b.split(|&c| c == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
        .unwrap_or_default()
}

/// The pids of the daemons serving `network` (its name is unique to the test).
fn daemons_of(network: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let c = cmdline(pid);
        if c.len() >= 3 && c[1] == "serve" && c[2] == network && alive(pid) {
            out.push(pid);
        }
    }
    out
}

fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            !matches!(s.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

struct Lab {
    tmp: PathBuf,
    nets: Vec<String>,
    host: Ns,
}

impl Drop for Lab {
    fn drop(&mut self) {
        for n in &self.nets {
            for pid in daemons_of(n) {
                // SAFETY: killing a daemon of this test's own network.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
        let _ = fs::remove_dir_all(&self.tmp);
    }
}

struct Container {
    ns: Ns,
    id: String,
    v4: String,
    v6: Option<String>,
}

impl Lab {
    fn new() -> Lab {
        let tmp = std::env::temp_dir().join(format!("cni-dns-t-{}-{}", std::process::id(), unique()));
        fs::create_dir_all(&tmp).unwrap();
        fs::write(tmp.join("resolv.conf"), "nameserver 10.0.250.2\n").unwrap();
        let host = Ns::new();
        Lab { tmp, nets: Vec::new(), host }
    }

    fn network(&mut self, tag: &str) -> String {
        let n = format!("{tag}-{}-{}", std::process::id(), unique());
        self.nets.push(n.clone());
        n
    }

    fn run_dir(&self) -> PathBuf {
        self.tmp.join("run")
    }

    fn bridge(&self, br: &str, v4: &str, v6: Option<&str>) {
        self.host.ip(&format!("link add name {br} type bridge"));
        self.host.ip(&format!("addr add {v4} dev {br}"));
        if let Some(v6) = v6 {
            self.host.ip(&format!("addr add {v6} dev {br} nodad"));
        }
        self.host.ip(&format!("link set {br} up"));
    }

    fn container(&self, br: &str, v4: &str, gw4: &str, v6: Option<&str>) -> Container {
        let ns = Ns::new();
        let n = unique();
        let hv = format!("vd{n}");
        self.host.ip(&format!("link add name {hv} type veth peer name eth0 netns {}", ns.name));
        self.host.ip(&format!("link set {hv} master {br} up"));
        ns.ip(&format!("addr add {v4} dev eth0"));
        if let Some(v6) = v6 {
            ns.ip(&format!("addr add {v6} dev eth0 nodad"));
        }
        ns.ip("link set eth0 up");
        ns.ip(&format!("route add default via {gw4}"));
        let id = format!("{:012x}{}", 0x00c0_ffee_0000_u64 + n as u64, "ab".repeat(26));
        Container { ns, id, v4: v4.into(), v6: v6.map(str::to_string) }
    }

    /// A peer namespace behind HOST at 10.0.250.2 (upstream / outside client).
    fn upstream_ns(&self) -> Ns {
        let ns = Ns::new();
        let n = unique();
        let hv = format!("vu{n}");
        self.host.ip(&format!("link add name {hv} type veth peer name eth0 netns {}", ns.name));
        self.host.ip(&format!("addr add 10.0.250.1/24 dev {hv}"));
        self.host.ip(&format!("link set {hv} up"));
        ns.ip("addr add 10.0.250.2/24 dev eth0");
        ns.ip("link set eth0 up");
        ns.ip("route add default via 10.0.250.1");
        ns
    }

    /// Run the plugin in HOST; exit code and stdout.
    fn plugin(&self, cmd: &str, c: &Container, conf: &Value, cni_args: &str) -> (i32, Value) {
        self.plugin_env(cmd, &c.id, &c.ns.path(), conf, cni_args)
    }

    fn plugin_env(&self, cmd: &str, id: &str, netns: &str, conf: &Value, cni_args: &str) -> (i32, Value) {
        let host = fs::File::open(self.host.path()).unwrap();
        let hfd = host.as_raw_fd();
        let mut p = Command::new(BIN);
        p.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("CNI_COMMAND", cmd)
            .env("CNI_CONTAINERID", id)
            .env("CNI_NETNS", netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", "/opt/cni/bin")
            .env("CNI_ARGS", cni_args)
            .env("DNS_SIDECAR_RUN_DIR", self.run_dir())
            .env("DNS_SIDECAR_RESOLV_CONF", self.tmp.join("resolv.conf"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: setns is async-signal-safe; hfd stays open until spawn returns.
        unsafe {
            p.pre_exec(move || {
                if libc::setns(hfd, libc::CLONE_NEWNET) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = p.spawn().unwrap();
        child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    fn pid(&self, net: &str) -> Option<u32> {
        fs::read_to_string(self.run_dir().join(net).join("pid")).ok()?.trim().parse().ok()
    }
}

/// A chained config as Podman sends it, with prevResult for `c` on `br`.
fn conf(
    net: &str,
    ver: &str,
    br: &str,
    c: &Container,
    gw4: &str,
    gw6: Option<&str>,
    aliases: Value,
) -> Value {
    let mut ips = vec![json!({"address": c.v4, "gateway": gw4, "interface": 2})];
    if let (Some(v6), Some(g6)) = (&c.v6, gw6) {
        ips.push(json!({"address": v6, "gateway": g6, "interface": 2}));
    }
    let mut prev = json!({
        "cniVersion": ver,
        "interfaces": [{"name": br}, {"name": "vethx"}, {"name": "eth0", "sandbox": c.ns.path()}],
        "ips": ips,
        "routes": [{"dst": "0.0.0.0/0"}],
        "dns": {}
    });
    if ver.starts_with("0.") {
        for ip in prev["ips"].as_array_mut().unwrap() {
            let v = if ip["address"].as_str().unwrap().contains(':') { "6" } else { "4" };
            ip["version"] = json!(v);
        }
    }
    let mut c = json!({
        "cniVersion": ver, "name": net, "type": "dnsname", "domainName": "dns.podman",
        "capabilities": {"aliases": true}, "prevResult": prev
    });
    if !aliases.is_null() {
        c["runtimeConfig"] = json!({ "aliases": aliases });
    }
    c
}

fn ask_udp(from: &Ns, server: &str, name: &str, qtype: u16, timeout: Duration) -> Option<Response> {
    let to = SocketAddr::new(server.parse().unwrap(), 53);
    let q = wire::build_query(0x4242, name, qtype, None).unwrap();
    from.run(move || {
        let s = UdpSocket::bind(dns_sidecar::sock::any_of(&to.ip())).unwrap();
        s.set_read_timeout(Some(timeout)).unwrap();
        s.send_to(&q, to).unwrap();
        let mut buf = [0u8; 4096];
        let (n, src) = s.recv_from(&mut buf).ok()?;
        assert_eq!(src, to, "answer from the address asked");
        let r = wire::parse_response(&buf[..n]).expect("well-formed answer");
        assert_eq!(r.id, 0x4242);
        Some(r)
    })
}

/// One UDP query, one try: a lost query is a failure.
fn udp(from: &Ns, server: &str, name: &str, qtype: u16) -> Response {
    ask_udp(from, server, name, qtype, Duration::from_secs(2))
        .unwrap_or_else(|| panic!("no answer from {server} for {name}"))
}

fn tcp(from: &Ns, server: &str, names: &[(&str, u16)]) -> Vec<Response> {
    let to = SocketAddr::new(server.parse().unwrap(), 53);
    let qs: Vec<Vec<u8>> = names
        .iter()
        .enumerate()
        .map(|(i, (n, t))| wire::build_query(i as u16, n, *t, None).unwrap())
        .collect();
    from.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut out = Vec::new();
        for (i, q) in qs.iter().enumerate() {
            s.write_all(&(q.len() as u16).to_be_bytes()).unwrap();
            s.write_all(q).unwrap();
            let mut len = [0u8; 2];
            s.read_exact(&mut len).unwrap();
            let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
            s.read_exact(&mut buf).unwrap();
            let r = wire::parse_response(&buf).unwrap();
            assert_eq!(r.id, i as u16);
            out.push(r);
        }
        out
    })
}

/// A TCP connection to `server`:53, made from inside `ns`.
fn tcp_connect(ns: &Ns, server: &str) -> TcpStream {
    let to = SocketAddr::new(server.parse().unwrap(), 53);
    ns.run(move || TcpStream::connect_timeout(&to, Duration::from_secs(2)).unwrap())
}

/// One length-prefixed query on `s` and its answer; the error kind when
/// there is none (`TimedOut`/`WouldBlock`: the server kept the connection
/// open without answering).
fn tcp_ask(s: &mut TcpStream, id: u16, name: &str, qtype: u16) -> Result<Response, std::io::ErrorKind> {
    let q = wire::build_query(id, name, qtype, None).unwrap();
    let mut m = (q.len() as u16).to_be_bytes().to_vec();
    m.extend_from_slice(&q);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&m).map_err(|e| e.kind())?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(|e| e.kind())?;
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).map_err(|e| e.kind())?;
    let r = wire::parse_response(&buf).expect("well-formed answer");
    assert_eq!(r.id, id);
    Ok(r)
}

/// Did the server close `s` (end of stream or reset), rather than keep it open?
fn closed_by_server(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 512];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(n) => panic!("{n} bytes from the server"),
        Err(e) => !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
    }
}

fn is_closed(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(kind, UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe)
}

fn addrs(r: &Response) -> Vec<String> {
    r.answers
        .iter()
        .map(|(d, _)| match d {
            Rdata::A(a) => a.to_string(),
            Rdata::Aaaa(a) => a.to_string(),
            Rdata::Ptr(p) => p.clone(),
            Rdata::Other(t, _) => format!("type{t}"),
        })
        .collect()
}

fn reverse_name(ip: &str) -> String {
    match ip.parse::<IpAddr>().unwrap() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let nib: Vec<String> = v6
                .octets()
                .iter()
                .rev()
                .flat_map(|b| [format!("{:x}", b & 15), format!("{:x}", b >> 4)])
                .collect();
            format!("{}.ip6.arpa", nib.join("."))
        }
    }
}

/// What a fake upstream saw.
#[derive(Default)]
struct UpstreamLog {
    /// Queries, UDP and TCP.
    count: AtomicUsize,
    /// Where each UDP query came from.
    sources: std::sync::Mutex<Vec<SocketAddr>>,
}

/// A fake upstream server in `ns` at 10.0.250.2:53, UDP and TCP (answers:
/// see `upstream_answer`). A UDP query for a name starting with `spoof` is
/// first answered falsely (A 6.6.6.6) from 10.0.250.2:5353, from
/// 10.0.250.4:53, for another question and under another ID — then truly.
fn fake_upstream(ns: &Ns) -> Arc<UpstreamLog> {
    let log = Arc::new(UpstreamLog::default());
    ns.ip("addr add 10.0.250.4/24 dev eth0");
    let (udp, tcp, other_port, other_addr) = ns.run(|| {
        (
            UdpSocket::bind("10.0.250.2:53").unwrap(),
            TcpListener::bind("10.0.250.2:53").unwrap(),
            UdpSocket::bind("10.0.250.2:5353").unwrap(),
            UdpSocket::bind("10.0.250.4:53").unwrap(),
        )
    });
    let l = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        let mut out = [0u8; 4096];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            l.count.fetch_add(1, Ordering::SeqCst);
            l.sources.lock().unwrap().push(from);
            let msg = &buf[..n];
            if let Ok(q) = wire::parse_query(msg) {
                if q.name.as_bytes().starts_with(b"spoof") {
                    let forged = forged_a(msg, None);
                    let _ = other_port.send_to(&forged, from);
                    let _ = other_addr.send_to(&forged, from);
                    let _ = udp.send_to(&forged_a(msg, Some("example.com")), from);
                    let mut wrong_id = forged.clone();
                    wrong_id[0] ^= 0x5a;
                    let _ = udp.send_to(&wrong_id, from);
                }
            }
            if let Some(len) = upstream_answer(msg, &mut out, false) {
                let _ = udp.send_to(&out[..len], from);
            }
        }
    });
    let l = log.clone();
    std::thread::spawn(move || {
        while let Ok((mut s, _)) = tcp.accept() {
            l.count.fetch_add(1, Ordering::SeqCst);
            let mut len = [0u8; 2];
            if s.read_exact(&mut len).is_err() {
                continue;
            }
            let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
            if s.read_exact(&mut q).is_err() {
                continue;
            }
            let mut out = vec![0u8; 65535];
            if let Some(n) = upstream_answer(&q, &mut out, true) {
                let _ = s.write_all(&(n as u16).to_be_bytes());
                let _ = s.write_all(&out[..n]);
            }
        }
    });
    log
}

/// A false answer (A 6.6.6.6, TTL 300) to the query `msg`, under its ID;
/// for the question `name` instead of its own when given.
fn forged_a(msg: &[u8], name: Option<&str>) -> Vec<u8> {
    let other;
    let msg = match name {
        Some(n) => {
            other = wire::build_query(wire::id_of(msg), n, rtype::A, None).unwrap();
            &other[..]
        }
        None => msg,
    };
    let q = wire::parse_query(msg).unwrap();
    let mut out = [0u8; 512];
    let mut w = Writer::reply(&q, msg, &mut out, 512, rcode::NOERROR, false);
    w.a(&[6, 6, 6, 6], 300);
    let n = w.finish();
    out[..n].to_vec()
}

fn upstream_answer(msg: &[u8], out: &mut [u8], tcp: bool) -> Option<usize> {
    let q = wire::parse_query(msg).ok()?;
    let limit = if tcp { out.len() } else { q.udp_limit() };
    let n = match q.name.as_bytes() {
        b"example.com" => {
            let mut w = Writer::reply(&q, msg, out, limit, rcode::NOERROR, false);
            w.a(&[192, 0, 2, 10], 300);
            w.finish()
        }
        n if n.starts_with(b"spoof") => {
            let mut w = Writer::reply(&q, msg, out, limit, rcode::NOERROR, false);
            w.a(&[192, 0, 2, 11], 300);
            w.finish()
        }
        b"big.example" => {
            let mut w = Writer::reply(&q, msg, out, limit, rcode::NOERROR, false);
            for i in 0..40u8 {
                w.a(&[198, 51, 100, i], 300);
            }
            w.finish()
        }
        _ => wire::rcode_reply(&q, msg, rcode::NXDOMAIN, false, out),
    };
    Some(n)
}

/// One network (br0, v4 + v6) with two containers added.
struct TwoOnOne {
    lab: Lab,
    net: String,
    c1: Container,
    c2: Container,
    add1: Value,
}

fn two_on_one() -> TwoOnOne {
    let mut lab = Lab::new();
    let net = lab.network("neta");
    lab.bridge("br0", "10.0.0.1/24", Some("fd00::1/64"));
    let c1 = lab.container("br0", "10.0.0.2/24", "10.0.0.1", Some("fd00::2/64"));
    let c2 = lab.container("br0", "10.0.0.3/24", "10.0.0.1", Some("fd00::3/64"));
    let aliases = json!({ net.clone(): ["www", "API"], "other": ["nope"] });
    let cf = conf(&net, "0.4.0", "br0", &c1, "10.0.0.1", Some("fd00::1"), aliases);
    let (rc, add1) = lab.plugin("ADD", &c1, &cf, "IgnoreUnknown=1;K8S_POD_NAME=web");
    assert_eq!(rc, 0, "{add1}");
    let cf = conf(&net, "1.0.0", "br0", &c2, "10.0.0.1", Some("fd00::1"), json!(["store"]));
    let (rc, out) = lab.plugin("ADD", &c2, &cf, "K8S_POD_NAME=db");
    assert_eq!(rc, 0, "{out}");
    TwoOnOne { lab, net, c1, c2, add1 }
}

#[test]
fn containers_resolve_each_other() {
    need_root!();
    let t = two_on_one();
    // The result points the container at the sidecar.
    assert_eq!(t.add1["dns"]["nameservers"], json!(["10.0.0.1", "fd00::1"]));
    assert_eq!(t.add1["dns"]["domain"], "dns.podman");
    assert_eq!(t.add1["dns"]["search"], json!(["dns.podman"]));
    assert_eq!(t.add1["ips"][0]["address"], "10.0.0.2/24");
    assert_eq!(t.add1["cniVersion"], "0.4.0");

    let short = &t.c1.id[..12];
    let from = &t.c2.ns;
    for name in ["web", "web.dns.podman", "WEB.DNS.Podman.", "www", "api.dns.podman", short] {
        let r = udp(from, "10.0.0.1", name, rtype::A);
        assert_eq!((r.rcode, addrs(&r)), (rcode::NOERROR, vec!["10.0.0.2".to_string()]), "{name}");
        assert!(r.authoritative());
    }
    let r = udp(from, "10.0.0.1", "web", rtype::AAAA);
    assert_eq!(addrs(&r), vec!["fd00::2"]);
    // The IPv6 listener answers too.
    let r = udp(from, "fd00::1", "web.dns.podman", rtype::AAAA);
    assert_eq!(addrs(&r), vec!["fd00::2"]);
    for ip in ["10.0.0.2", "fd00::2"] {
        let r = udp(from, "10.0.0.1", &reverse_name(ip), rtype::PTR);
        assert_eq!(addrs(&r), vec!["web.dns.podman"], "PTR {ip}");
    }
    // The other way round: K8S_POD_NAME, list aliases, short ID.
    let short2 = &t.c2.id[..12];
    for name in ["db", "store.dns.podman", short2] {
        let r = udp(&t.c1.ns, "10.0.0.1", name, rtype::A);
        assert_eq!(addrs(&r), vec!["10.0.0.3"], "{name}");
    }
    // Aliases of another network are not ours.
    let r = udp(from, "10.0.0.1", "nope.dns.podman", rtype::A);
    assert_eq!((r.rcode, r.authoritative()), (rcode::NXDOMAIN, true));
    let r = udp(from, "10.0.0.1", &reverse_name("10.0.0.77"), rtype::PTR);
    assert_eq!(r.rcode, rcode::NXDOMAIN);
    // TCP: several queries on one connection.
    let rs = tcp(
        from,
        "10.0.0.1",
        &[("web", rtype::A), ("db.dns.podman", rtype::AAAA), ("x.dns.podman", rtype::A)],
    );
    assert_eq!(addrs(&rs[0]), vec!["10.0.0.2"]);
    assert_eq!(addrs(&rs[1]), vec!["fd00::3"]);
    assert_eq!(rs[2].rcode, rcode::NXDOMAIN);
    // One daemon, listening on the gateways only, state private.
    assert_eq!(daemons_of(&t.net).len(), 1);
    let dir = t.lab.run_dir().join(&t.net);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    // CHECK passes (it asks the server itself).
    let cf = conf(&t.net, "0.4.0", "br0", &t.c1, "10.0.0.1", Some("fd00::1"), Value::Null);
    let (rc, out) = t.lab.plugin("CHECK", &t.c1, &cf, "K8S_POD_NAME=web");
    assert_eq!(rc, 0, "{out}");
}

#[test]
fn forwarding_caching_and_truncation() {
    need_root!();
    let t = two_on_one();
    let up = t.lab.upstream_ns();
    let log = fake_upstream(&up);
    let count = &log.count;
    let from = &t.c1.ns;
    let r = udp(from, "10.0.0.1", "example.com", rtype::A);
    assert_eq!((r.rcode, addrs(&r)), (rcode::NOERROR, vec!["192.0.2.10".to_string()]));
    assert!(!r.authoritative(), "relayed unchanged");
    assert_eq!(r.answers[0].1, 300);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Cached: the upstream is not asked again.
    for _ in 0..5 {
        let r = udp(from, "10.0.0.1", "EXAMPLE.com", rtype::A);
        assert_eq!(addrs(&r), vec!["192.0.2.10"]);
        assert!(r.answers[0].1 <= 300);
    }
    assert_eq!(count.load(Ordering::SeqCst), 1);
    // Unknown bare names go upstream (its NXDOMAIN comes back).
    let r = udp(from, "10.0.0.1", "nohost", rtype::A);
    assert_eq!((r.rcode, r.authoritative()), (rcode::NXDOMAIN, false));
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // Too big for UDP: the TC answer is relayed; over TCP the daemon asks
    // upstream over UDP, sees TC, and retries over TCP.
    let r = udp(from, "10.0.0.1", "big.example", rtype::A);
    assert!(r.truncated());
    let rs = tcp(from, "10.0.0.1", &[("big.example", rtype::A), ("example.com", rtype::A)]);
    assert_eq!(rs[0].answers.len(), 40);
    assert!(!rs[0].truncated());
    assert_eq!(addrs(&rs[1]), vec!["192.0.2.10"]);
}

#[test]
fn strangers_cannot_lock_containers_out_of_tcp() {
    need_root!();
    let t = two_on_one();
    let outside = t.lab.upstream_ns();
    outside.ip("route add 10.0.0.0/24 via 10.0.250.1");
    // More connections from outside the network than the server takes in
    // all, each starting a big query and then sending a byte at a time.
    let mut slow: Vec<TcpStream> = (0..MAX_TCP + 8).map(|_| tcp_connect(&outside, "10.0.0.1")).collect();
    for s in &mut slow {
        let _ = s.write_all(&[0xff]);
    }
    // Meanwhile the containers are answered over TCP, again and again.
    for round in 0..4 {
        for s in &mut slow {
            let _ = s.write_all(b"x");
        }
        let rs = tcp(&t.c1.ns, "10.0.0.1", &[("db", rtype::A), ("web", rtype::A)]);
        assert_eq!(
            (addrs(&rs[0]), addrs(&rs[1])),
            (vec!["10.0.0.3".into()], vec!["10.0.0.2".into()]),
            "{round}"
        );
        let mut s = tcp_connect(&t.c2.ns, "10.0.0.1");
        assert_eq!(addrs(&tcp_ask(&mut s, 7, "web", rtype::A).unwrap()), vec!["10.0.0.2"], "{round}");
        std::thread::sleep(Duration::from_millis(300));
    }
    // The strangers got nothing: their connections were closed unanswered.
    for (i, s) in slow.iter_mut().enumerate() {
        assert!(closed_by_server(s, Duration::from_secs(2)), "stranger connection {i} still open");
    }
}

#[test]
fn tcp_connections_are_limited_per_client() {
    need_root!();
    let t = two_on_one();
    // One container holds as many connections as a client may, all served.
    let mut held: Vec<TcpStream> =
        (0..MAX_TCP_PER_CLIENT).map(|_| tcp_connect(&t.c1.ns, "10.0.0.1")).collect();
    for (i, s) in held.iter_mut().enumerate() {
        assert_eq!(addrs(&tcp_ask(s, i as u16, "db", rtype::A).unwrap()), vec!["10.0.0.3"]);
    }
    // One more from it is closed without an answer ...
    let mut extra = tcp_connect(&t.c1.ns, "10.0.0.1");
    let e = tcp_ask(&mut extra, 99, "db", rtype::A).map(|r| addrs(&r)).unwrap_err();
    assert!(is_closed(e), "{e:?}");
    // ... while another container is served, and the held ones still are.
    let mut other = tcp_connect(&t.c2.ns, "10.0.0.1");
    assert_eq!(addrs(&tcp_ask(&mut other, 1, "web", rtype::A).unwrap()), vec!["10.0.0.2"]);
    for s in &mut held {
        assert_eq!(addrs(&tcp_ask(s, 2, "db", rtype::A).unwrap()), vec!["10.0.0.3"]);
    }
    // Closed connections give their slots back.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut s = tcp_connect(&t.c1.ns, "10.0.0.1");
        match tcp_ask(&mut s, 3, "db", rtype::A) {
            Ok(r) => break assert_eq!(addrs(&r), vec!["10.0.0.3"]),
            Err(e) => assert!(Instant::now() < deadline, "slots not given back: {e:?}"),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn slow_tcp_clients_are_cut_at_their_deadline() {
    need_root!();
    let t = two_on_one();
    let give_up = TCP_LIFETIME + Duration::from_secs(15);
    std::thread::scope(|sc| {
        // A query sent a byte at a time, each byte well within the idle
        // time: it must still arrive whole in time.
        let trickle = sc.spawn(|| {
            let mut s = tcp_connect(&t.c1.ns, "10.0.0.1");
            let start = Instant::now();
            let _ = s.write_all(&[0xff]); // 0xff40 bytes announced
            while start.elapsed() < give_up {
                std::thread::sleep(Duration::from_millis(300));
                if s.write_all(&[0x40]).is_err() || closed_by_server(&mut s, Duration::from_millis(10)) {
                    return Some(start.elapsed());
                }
            }
            None
        });
        // Whole queries, answered, but slowly: the connection still ends
        // at its total lifetime.
        let slow = sc.spawn(|| {
            let mut s = tcp_connect(&t.c2.ns, "10.0.0.1");
            let start = Instant::now();
            let mut answered = 0;
            while start.elapsed() < give_up {
                match tcp_ask(&mut s, answered, "web", rtype::A) {
                    Ok(r) => assert_eq!(addrs(&r), vec!["10.0.0.2"]),
                    Err(e) => {
                        assert!(is_closed(e), "{e:?}");
                        return (answered, Some(start.elapsed()));
                    }
                }
                answered += 1;
                std::thread::sleep(Duration::from_millis(700));
            }
            (answered, None)
        });
        let cut = trickle.join().unwrap().expect("a trickling client is cut");
        assert!(cut >= TCP_IDLE, "cut after {cut:?}, before the idle time");
        eprintln!("trickling client cut after {cut:?}");
        let (answered, cut) = slow.join().unwrap();
        let cut = cut.expect("a slow client is cut at the connection's lifetime");
        assert!(answered >= 2, "{answered}");
        assert!(cut >= TCP_LIFETIME, "cut after {cut:?}");
        eprintln!("slow client cut after {cut:?} and {answered} answers");
    });
}

#[test]
fn forwarded_queries_leave_from_fresh_random_ports() {
    need_root!();
    let t = two_on_one();
    let up = t.lab.upstream_ns();
    let log = fake_upstream(&up);
    // Names the upstream answers NXDOMAIN without a SOA: never cached, so
    // each query is forwarded.
    let n = 32;
    for i in 0..n {
        let r = udp(&t.c1.ns, "10.0.0.1", &format!("nx{i}.example"), rtype::A);
        assert_eq!(r.rcode, rcode::NXDOMAIN);
    }
    let rs = tcp(&t.c1.ns, "10.0.0.1", &[("nxtcp1.example", rtype::A), ("nxtcp2.example", rtype::A)]);
    assert!(rs.iter().all(|r| r.rcode == rcode::NXDOMAIN));
    let sources = log.sources.lock().unwrap().clone();
    // At least one try per query (a retry under load adds one).
    assert!(sources.len() >= n + 2, "{sources:?}");
    assert!(sources.iter().all(|s| s.ip().to_string() == "10.0.250.1"), "{sources:?}");
    let mut ports: Vec<u16> = sources.iter().map(|s| s.port()).collect();
    ports.sort();
    ports.dedup();
    // Random ports from the kernel's ephemeral range: a repeat or two is
    // chance, a fixed port (or a handful) is not.
    assert!(
        ports.len() >= n + 2 - 4,
        "{} distinct source ports for {} queries: {ports:?}",
        ports.len(),
        n + 2
    );
}

#[test]
fn forged_upstream_answers_are_neither_relayed_nor_cached() {
    need_root!();
    let t = two_on_one();
    let up = t.lab.upstream_ns();
    let log = fake_upstream(&up);
    // The upstream sends four forgeries (other port, other address, other
    // question, other ID) before the true answer: only the true one counts.
    let r = udp(&t.c1.ns, "10.0.0.1", "spoof1.example", rtype::A);
    assert_eq!((r.rcode, addrs(&r)), (rcode::NOERROR, vec!["192.0.2.11".to_string()]));
    let rs = tcp(&t.c1.ns, "10.0.0.1", &[("spoof2.example", rtype::A)]);
    assert_eq!(addrs(&rs[0]), vec!["192.0.2.11"]);
    // (More than 2 only if a try was retried: a loaded machine's delay.)
    let asked = log.count.load(Ordering::SeqCst);
    assert!(asked >= 2, "{asked}");
    // And the cache holds the true answers.
    for name in ["spoof1.example", "spoof2.example"] {
        assert_eq!(addrs(&udp(&t.c2.ns, "10.0.0.1", name, rtype::A)), vec!["192.0.2.11"], "{name}");
        assert_eq!(addrs(&tcp(&t.c2.ns, "10.0.0.1", &[(name, rtype::A)])[0]), vec!["192.0.2.11"], "{name}");
    }
    assert_eq!(log.count.load(Ordering::SeqCst), asked, "answered from the cache");
}

#[test]
fn a_refusing_upstream_is_skipped() {
    need_root!();
    let t = two_on_one();
    let up = t.lab.upstream_ns();
    // 10.0.250.3 is a host where nothing listens on port 53: it answers
    // with ICMP port unreachable; the daemon goes on to the live server.
    up.ip("addr add 10.0.250.3/24 dev eth0");
    let log = fake_upstream(&up);
    fs::write(t.lab.tmp.join("resolv.conf"), "nameserver 10.0.250.3\nnameserver 10.0.250.2\n").unwrap();
    let cf = conf(&t.net, "1.0.0", "br0", &t.c1, "10.0.0.1", Some("fd00::1"), Value::Null);
    assert_eq!(t.lab.plugin("ADD", &t.c1, &cf, "K8S_POD_NAME=web").0, 0);
    for i in 0..3 {
        let start = Instant::now();
        let r = ask_udp(&t.c1.ns, "10.0.0.1", &format!("nx{i}.example"), rtype::A, Duration::from_secs(5))
            .expect("an answer");
        assert_eq!(r.rcode, rcode::NXDOMAIN);
        eprintln!("answered via the second server after {:?}", start.elapsed());
    }
    let rs = tcp(&t.c1.ns, "10.0.0.1", &[("example.com", rtype::A)]);
    assert_eq!(addrs(&rs[0]), vec!["192.0.2.10"]);
    assert!(log.count.load(Ordering::SeqCst) >= 4);
}

#[test]
fn no_port_left_is_a_quick_servfail_and_forwarding_recovers() {
    need_root!();
    let t = two_on_one();
    let up = t.lab.upstream_ns();
    // An upstream that never answers, and two ephemeral ports in the
    // daemon's netns: two queries hold them, a third finds none.
    let silent = up.run(|| UdpSocket::bind("10.0.250.2:53").unwrap());
    t.lab.host.run(|| fs::write("/proc/sys/net/ipv4/ip_local_port_range", "50000 50001").unwrap());
    let names: Vec<String> = (0..5).map(|i| format!("q{i}.example")).collect();
    let to: SocketAddr = "10.0.0.1:53".parse().unwrap();
    let sock = t.c1.ns.run(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    for (i, n) in names.iter().enumerate() {
        sock.send_to(&wire::build_query(i as u16, n, rtype::A, None).unwrap(), to).unwrap();
    }
    // Local names need no port.
    assert_eq!(addrs(&udp(&t.c2.ns, "10.0.0.1", "web", rtype::A)), vec!["10.0.0.2"]);
    // Every query is answered SERVFAIL: the three without a port at once,
    // the two with one when their tries are spent.
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut order = Vec::new();
    let mut buf = [0u8; 512];
    for _ in 0..names.len() {
        let n = sock.recv(&mut buf).expect("every query answered");
        let r = wire::parse_response(&buf[..n]).unwrap();
        assert_eq!(r.rcode, rcode::SERVFAIL);
        order.push(r.id);
    }
    order[..3].sort();
    order[3..].sort();
    assert_eq!(order, vec![2, 3, 4, 0, 1], "the queries without a port were answered first");
    let mut received = 0;
    silent.set_nonblocking(true).unwrap();
    while silent.recv(&mut buf).is_ok() {
        received += 1;
    }
    assert_eq!(received, 2 * TRIES as usize, "only the two with a port went out, each tried {TRIES} times");
    // The ports are free again: forwarding works as before.
    drop(silent);
    let log = fake_upstream(&up);
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "example.com", rtype::A)), vec!["192.0.2.10"]);
    assert_eq!(log.count.load(Ordering::SeqCst), 1);
}

#[test]
fn removal_is_immediate_and_last_del_stops_the_daemon() {
    need_root!();
    let t = two_on_one();
    let pid = t.lab.pid(&t.net).unwrap();
    assert!(alive(pid));
    let cf2 = conf(&t.net, "1.0.0", "br0", &t.c2, "10.0.0.1", Some("fd00::1"), Value::Null);
    let (rc, out) = t.lab.plugin("DEL", &t.c2, &cf2, "");
    assert_eq!(rc, 0, "{out}");
    let r = udp(&t.c1.ns, "10.0.0.1", "db.dns.podman", rtype::A);
    assert_eq!(r.rcode, rcode::NXDOMAIN, "gone the moment DEL returns");
    let r = udp(&t.c1.ns, "10.0.0.1", &reverse_name("10.0.0.3"), rtype::PTR);
    assert_eq!(r.rcode, rcode::NXDOMAIN);
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "web", rtype::A)), vec!["10.0.0.2"]);
    assert_eq!(t.lab.pid(&t.net), Some(pid), "same daemon, updated in place");
    // Re-ADD: resolvable the moment ADD returns (one query, no retry).
    let cf2 = conf(&t.net, "1.0.0", "br0", &t.c2, "10.0.0.1", Some("fd00::1"), Value::Null);
    let (rc, _) = t.lab.plugin("ADD", &t.c2, &cf2, "K8S_POD_NAME=db2");
    assert_eq!(rc, 0);
    let start = Instant::now();
    let r = udp(&t.c1.ns, "10.0.0.1", "db2", rtype::A);
    assert_eq!(addrs(&r), vec!["10.0.0.3"]);
    eprintln!("first answer after ADD in {:?}", start.elapsed());

    // DEL without prevResult and with the netns gone still removes the records.
    let mut bare = cf2.clone();
    bare.as_object_mut().unwrap().remove("prevResult");
    let (rc, out) = t.lab.plugin_env("DEL", &t.c2.id, "/run/netns/does-not-exist", &bare, "");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(udp(&t.c1.ns, "10.0.0.1", "db2.dns.podman", rtype::A).rcode, rcode::NXDOMAIN);
    // Last DEL: the daemon exits and the state is removed. DEL twice is fine.
    let cf1 = conf(&t.net, "0.4.0", "br0", &t.c1, "10.0.0.1", Some("fd00::1"), Value::Null);
    for _ in 0..2 {
        let (rc, out) = t.lab.plugin("DEL", &t.c1, &cf1, "");
        assert_eq!(rc, 0, "{out}");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!alive(pid), "daemon gone after last DEL");
    assert!(daemons_of(&t.net).is_empty());
    assert!(!t.lab.run_dir().join(&t.net).exists(), "state removed");
    // And nothing answers on the gateway any more.
    assert!(ask_udp(&t.c1.ns, "10.0.0.1", "web", rtype::A, Duration::from_millis(300)).is_none());
}

/// A DEL killed after it stored the records without the container but
/// before the daemon took them (found by the chaos campaign): the runtime's
/// retried DEL finds nothing left to remove on disk, yet must still bring
/// the daemon up to date, or the name resolves for ever.
#[test]
fn a_retried_del_updates_the_daemon_an_interrupted_del_did_not() {
    need_root!();
    let t = two_on_one();
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "db", rtype::A)), vec!["10.0.0.3"]);
    // The records file as the killed DEL left it (written as the plugin writes it: tmp + rename).
    let records = t.lab.run_dir().join(&t.net).join("records.json");
    let mut recs: Value = serde_json::from_str(&fs::read_to_string(&records).unwrap()).unwrap();
    recs["containers"].as_array_mut().unwrap().retain(|c| c["id"] != t.c2.id.as_str());
    let tmp = records.with_extension("killed-del");
    fs::write(&tmp, recs.to_string()).unwrap();
    fs::rename(&tmp, &records).unwrap();
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "db", rtype::A)), vec!["10.0.0.3"], "not pushed yet");
    let cf2 = conf(&t.net, "1.0.0", "br0", &t.c2, "10.0.0.1", Some("fd00::1"), Value::Null);
    let (rc, out) = t.lab.plugin("DEL", &t.c2, &cf2, "");
    assert_eq!(rc, 0, "{out}");
    let r = udp(&t.c1.ns, "10.0.0.1", "db.dns.podman", rtype::A);
    assert_eq!(r.rcode, rcode::NXDOMAIN, "gone once the retried DEL returns");
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "web", rtype::A)), vec!["10.0.0.2"]);
}

/// An ADD killed while writing the records (found by the chaos campaign)
/// leaves `records.json.tmp` beside the other containers' records; the
/// runtime's DEL of that container, which never made it into the file, must
/// not leave it behind.
#[test]
fn del_removes_the_temporary_records_file_of_an_interrupted_add() {
    need_root!();
    let t = two_on_one();
    let dir = t.lab.run_dir().join(&t.net);
    fs::write(dir.join("records.json.tmp"), "{\"domain\":\"dns.podman\",\"contai").unwrap();
    let stranger = t.lab.container("br0", "10.0.0.9/24", "10.0.0.1", None);
    let cf = conf(&t.net, "1.0.0", "br0", &stranger, "10.0.0.1", Some("fd00::1"), Value::Null);
    let (rc, out) = t.lab.plugin("DEL", &stranger, &cf, "");
    assert_eq!(rc, 0, "{out}");
    let mut files: Vec<String> =
        fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    files.sort();
    assert_eq!(files, ["ctl.sock", "daemon.lock", "lock", "pid", "records.json"]);
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "db", rtype::A)), vec!["10.0.0.3"]);
    assert_eq!(addrs(&udp(&t.c2.ns, "10.0.0.1", "web", rtype::A)), vec!["10.0.0.2"]);
}

#[test]
fn networks_are_isolated_and_strangers_refused() {
    need_root!();
    let mut t = two_on_one();
    let netb = t.lab.network("netb");
    t.lab.bridge("br1", "10.0.1.1/24", None);
    let c3 = t.lab.container("br1", "10.0.1.2/24", "10.0.1.1", None);
    let cf = conf(&netb, "1.0.0", "br1", &c3, "10.0.1.1", None, Value::Null);
    let (rc, out) = t.lab.plugin("ADD", &c3, &cf, "K8S_POD_NAME=other");
    assert_eq!(rc, 0, "{out}");
    assert_eq!(out["dns"]["nameservers"], json!(["10.0.1.1"]));
    assert_eq!(daemons_of(&netb).len(), 1);
    assert_eq!(daemons_of(&t.net).len(), 1);
    // Each network's names on its own server only.
    assert_eq!(addrs(&udp(&c3.ns, "10.0.1.1", "other.dns.podman", rtype::A)), vec!["10.0.1.2"]);
    assert_eq!(udp(&c3.ns, "10.0.1.1", "web.dns.podman", rtype::A).rcode, rcode::NXDOMAIN);
    assert_eq!(udp(&t.c1.ns, "10.0.0.1", "other.dns.podman", rtype::A).rcode, rcode::NXDOMAIN);
    // A client of network A asking network B's server is refused, and vice versa.
    assert_eq!(udp(&t.c1.ns, "10.0.1.1", "other", rtype::A).rcode, rcode::REFUSED);
    assert_eq!(udp(&c3.ns, "10.0.0.1", "web", rtype::A).rcode, rcode::REFUSED);
    // A client outside every network: refused, for local and external names alike.
    let outside = t.lab.upstream_ns();
    outside.ip("route add 10.0.0.0/24 via 10.0.250.1");
    for name in ["web", "example.com"] {
        assert_eq!(udp(&outside, "10.0.0.1", name, rtype::A).rcode, rcode::REFUSED, "{name}");
    }
    // Over TCP the connection is closed unanswered (before it takes a slot).
    let mut s = tcp_connect(&outside, "10.0.0.1");
    let e = tcp_ask(&mut s, 1, "web", rtype::A).map(|r| r.rcode).unwrap_err();
    assert!(is_closed(e), "{e:?}");

    // A third network claiming network A's gateway cannot take over its
    // server's address: ADD fails clearly and leaves nothing behind.
    let netc = t.lab.network("netc");
    t.lab.bridge("br2", "10.0.0.1/24", None);
    let c4 = t.lab.container("br2", "10.0.0.9/24", "10.0.0.1", None);
    let cf = conf(&netc, "1.0.0", "br2", &c4, "10.0.0.1", None, Value::Null);
    let (rc, out) = t.lab.plugin("ADD", &c4, &cf, "K8S_POD_NAME=thief");
    assert_eq!(rc, 1, "{out}");
    assert!(out["msg"].as_str().unwrap().contains("did not start"), "{out}");
    assert!(!t.lab.run_dir().join(&netc).exists());
    assert!(daemons_of(&netc).is_empty());
    assert_eq!(addrs(&udp(&t.c2.ns, "10.0.0.1", "web", rtype::A)), vec!["10.0.0.2"]);
}

#[test]
fn check_fails_while_the_daemon_is_dead_and_add_restarts_it() {
    need_root!();
    let t = two_on_one();
    // Kill only the daemon this test's network started, by its pid.
    let kill = |pid: u32| {
        assert_eq!(daemons_of(&t.net), vec![pid], "the pidfile names our daemon");
        // SAFETY: a daemon of this test's network.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let deadline = Instant::now() + Duration::from_secs(2);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!alive(pid));
    };
    let cf = conf(&t.net, "1.0.0", "br0", &t.c1, "10.0.0.1", Some("fd00::1"), Value::Null);
    let (rc, out) = t.lab.plugin("CHECK", &t.c1, &cf, "");
    assert_eq!(rc, 0, "{out}");
    let pid = t.lab.pid(&t.net).unwrap();
    kill(pid);
    assert!(ask_udp(&t.c1.ns, "10.0.0.1", "db", rtype::A, Duration::from_millis(200)).is_none());
    // CHECK reports it, as dnsname's CHECK does ("dnsmasq instance not
    // running", error 999), and changes nothing: no daemon is started.
    for _ in 0..2 {
        let (rc, out) = t.lab.plugin("CHECK", &t.c1, &cf, "");
        assert_eq!((rc, out["code"].as_u64()), (1, Some(999)), "{out}");
        let msg = out["msg"].as_str().unwrap();
        assert!(msg.contains("not running") && msg.contains(&t.net), "{msg}");
        assert!(daemons_of(&t.net).is_empty(), "CHECK started a daemon");
    }
    assert!(ask_udp(&t.c1.ns, "10.0.0.1", "db", rtype::A, Duration::from_millis(200)).is_none());
    // ADD (of a container already there: an update) starts it again.
    let (rc, out) = t.lab.plugin("ADD", &t.c1, &cf, "K8S_POD_NAME=web");
    assert_eq!(rc, 0, "{out}");
    let pid2 = t.lab.pid(&t.net).unwrap();
    assert_ne!(pid, pid2);
    assert_eq!(daemons_of(&t.net).len(), 1);
    assert_eq!(addrs(&udp(&t.c2.ns, "10.0.0.1", "web", rtype::A)), vec!["10.0.0.2"]);
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "db", rtype::A)), vec!["10.0.0.3"]);
    let (rc, out) = t.lab.plugin("CHECK", &t.c1, &cf, "");
    assert_eq!(rc, 0, "{out}");
    // CHECK of a container the network does not know fails.
    let mut other = cf.clone();
    other["prevResult"]["ips"][0]["address"] = json!("10.0.0.9/24");
    let (rc, out) = t.lab.plugin_env("CHECK", &"f".repeat(64), &t.c1.ns.path(), &other, "");
    assert_eq!(rc, 1, "{out}");
}

#[test]
fn dead_upstreams_give_servfail_in_bounded_time() {
    need_root!();
    let t = two_on_one();
    // Nothing answers at .3 (no such host) nor at .2 (no server in this
    // test: it refuses with ICMP port unreachable, so that try ends at once).
    fs::write(t.lab.tmp.join("resolv.conf"), "nameserver 10.0.250.3\nnameserver 10.0.250.2\n").unwrap();
    let _up = t.lab.upstream_ns();
    // resolv.conf changes are picked up without a restart (mtime check every 2 s),
    // and any ADD re-reads it: make it certain.
    let cf = conf(&t.net, "1.0.0", "br0", &t.c1, "10.0.0.1", Some("fd00::1"), Value::Null);
    assert_eq!(t.lab.plugin("ADD", &t.c1, &cf, "K8S_POD_NAME=web").0, 0);
    let start = Instant::now();
    let r =
        ask_udp(&t.c1.ns, "10.0.0.1", "example.org", rtype::A, Duration::from_secs(5)).expect("an answer");
    let took = start.elapsed();
    assert_eq!(r.rcode, rcode::SERVFAIL);
    assert!(took < Duration::from_secs(3), "SERVFAIL after {took:?}");
    // Tries: .3 (waited out), .2 (refused), .3 (waited out).
    assert!(took >= 2 * TRY_TIMEOUT, "really waited for the upstreams: {took:?}");
    // TCP too.
    let start = Instant::now();
    let rs = tcp(&t.c1.ns, "10.0.0.1", &[("example.net", rtype::A)]);
    assert_eq!(rs[0].rcode, rcode::SERVFAIL);
    assert!(start.elapsed() < Duration::from_secs(3));
    // Local names are unaffected.
    assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", "db", rtype::A)), vec!["10.0.0.3"]);
}

#[test]
fn chained_only_gc_and_status() {
    need_root!();
    let mut lab = Lab::new();
    let net = lab.network("gc");
    lab.bridge("br0", "10.0.0.1/24", None);
    let c1 = lab.container("br0", "10.0.0.2/24", "10.0.0.1", None);
    let c2 = lab.container("br0", "10.0.0.3/24", "10.0.0.1", None);
    // No prevResult: a clear config error, nothing left behind.
    let mut bare = conf(&net, "1.1.0", "br0", &c1, "10.0.0.1", None, Value::Null);
    bare.as_object_mut().unwrap().remove("prevResult");
    let (rc, out) = lab.plugin("ADD", &c1, &bare, "");
    assert_eq!((rc, out["code"].as_u64()), (1, Some(7)), "{out}");
    assert!(out["msg"].as_str().unwrap().contains("prevResult"));
    assert!(!lab.run_dir().join(&net).exists());
    // DEL of nothing is fine.
    assert_eq!(lab.plugin("DEL", &c1, &bare, "").0, 0);
    // Two ADDs at once: one daemon.
    let cf1 = conf(&net, "1.1.0", "br0", &c1, "10.0.0.1", None, Value::Null);
    let cf2 = conf(&net, "1.1.0", "br0", &c2, "10.0.0.1", None, Value::Null);
    std::thread::scope(|s| {
        let a = s.spawn(|| lab.plugin("ADD", &c1, &cf1, "K8S_POD_NAME=one"));
        let b = s.spawn(|| lab.plugin("ADD", &c2, &cf2, "K8S_POD_NAME=two"));
        assert_eq!(a.join().unwrap().0, 0);
        assert_eq!(b.join().unwrap().0, 0);
    });
    assert_eq!(daemons_of(&net).len(), 1);
    assert_eq!(addrs(&udp(&c1.ns, "10.0.0.1", "two", rtype::A)), vec!["10.0.0.3"]);
    assert_eq!(addrs(&udp(&c2.ns, "10.0.0.1", "one", rtype::A)), vec!["10.0.0.2"]);
    // STATUS.
    let st = json!({"cniVersion": "1.1.0", "name": net, "type": "dnsname"});
    assert_eq!(lab.plugin_env("STATUS", "", "", &st, "").0, 0);
    // GC keeps the valid attachments only, then stops the daemon when none is left.
    let pid = lab.pid(&net).unwrap();
    let mut gc = st.clone();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": c1.id, "ifname": "eth0"}]);
    assert_eq!(lab.plugin_env("GC", "", "", &gc, "").0, 0);
    assert_eq!(udp(&c1.ns, "10.0.0.1", "two.dns.podman", rtype::A).rcode, rcode::NXDOMAIN);
    assert_eq!(addrs(&udp(&c2.ns, "10.0.0.1", "one", rtype::A)), vec!["10.0.0.2"]);
    gc["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(lab.plugin_env("GC", "", "", &gc, "").0, 0);
    let deadline = Instant::now() + Duration::from_secs(2);
    while alive(pid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(!alive(pid));
    assert!(!lab.run_dir().join(&net).exists());
}

#[test]
fn no_query_lost_or_refused_while_records_change() {
    need_root!();
    let t = two_on_one();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (good, bad) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let c1 = Netns::open(t.c1.ns.path()).unwrap();
    std::thread::scope(|s| {
        let (stop2, good2, bad2) = (stop.clone(), good.clone(), bad.clone());
        s.spawn(move || {
            c1.run(|| {
                let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
                sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
                let mut buf = [0u8; 512];
                let mut id = 0u16;
                while !stop2.load(Ordering::SeqCst) {
                    id = id.wrapping_add(1);
                    let q = wire::build_query(id, "web.dns.podman", rtype::A, None).unwrap();
                    sock.send_to(&q, "10.0.0.1:53").unwrap();
                    let ok = match sock.recv(&mut buf) {
                        Ok(n) => wire::parse_response(&buf[..n]).is_some_and(|r| {
                            r.id == id && r.rcode == rcode::NOERROR && addrs(&r) == ["10.0.0.2"]
                        }),
                        Err(_) => false,
                    };
                    if ok { &good2 } else { &bad2 }.fetch_add(1, Ordering::SeqCst);
                }
            })
            .unwrap();
        });
        // Churn: the other container leaves and comes back, again and again.
        let cf2 = conf(&t.net, "1.0.0", "br0", &t.c2, "10.0.0.1", Some("fd00::1"), Value::Null);
        for i in 0..10 {
            assert_eq!(t.lab.plugin("DEL", &t.c2, &cf2, "").0, 0);
            assert_eq!(udp(&t.c1.ns, "10.0.0.1", "db.dns.podman", rtype::A).rcode, rcode::NXDOMAIN);
            assert_eq!(t.lab.plugin("ADD", &t.c2, &cf2, &format!("K8S_POD_NAME=db{i}")).0, 0);
            assert_eq!(addrs(&udp(&t.c1.ns, "10.0.0.1", &format!("db{i}"), rtype::A)), vec!["10.0.0.3"]);
        }
        stop.store(true, Ordering::SeqCst);
    });
    let (g, b) = (good.load(Ordering::SeqCst), bad.load(Ordering::SeqCst));
    eprintln!("{g} queries answered during churn, {b} lost or wrong");
    assert!(g > 100, "the querier ran ({g})");
    assert_eq!(b, 0);
}
