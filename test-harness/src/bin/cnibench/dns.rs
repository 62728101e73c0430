//! Scenario 5: DNS. dns-sidecar (registered through the plugin's ADD with a
//! hand-made prevResult), dnsmasq configured as containers/dnsname ran it,
//! aardvark-dns (Debian packages) and a fixed-answer responder (the ceiling
//! of this machine with the load generator on the same cores), all on the
//! same load, in namespaces built here:
//!
//! ```text
//!  CLIENT netns: eth<k> 10.(120+k).0.3/16, fd6e:<k>::3/64 ──┐  one network per server
//!  HOST netns:   bridge cnidns<k> 10.(120+k).0.1/16 (gateway: the server listens there)
//!                dnsup 10.119.0.1/24 ──── UPSTREAM netns: 10.119.0.2 fake upstream DNS;
//!                                          10.119.0.3–.5 "dead" upstreams (nft drop)
//! ```
//! The load generator (test_harness::dnsload) runs in this process with
//! sockets created in CLIENT; the servers run in HOST; no traffic leaves
//! these namespaces. Servers of one kind are compared by interleaving the
//! load runs (rotating order per repetition) and by paired ratios.

use std::fs;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use test_harness::dnsload::{self, probe, qtype, rcode, run_load, Answer, LoadSpec, LoadStats, Responder};
use test_harness::{run_plugin, TempDir, TestNs};

use crate::ctx::{ms, Ctx};
use crate::report::{Section, Table};
use crate::setup::{container_id, order};
use crate::stats::{fmt_ms, fmt_ratio, median, percentile};

const DOMAIN: &str = "dns.podman";
const UP_LIVE: &str = "10.119.0.2";
const UP_DEAD: [&str; 3] = ["10.119.0.3", "10.119.0.4", "10.119.0.5"];
/// Index of the first churn / new-name container (beyond the registered ones).
const NEW_BASE: usize = 3000;
const CHURN_BASE: usize = 4000;

fn addr4(k: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 120 + k, (i / 250) as u8, (i % 250 + 2) as u8)
}

fn addr6(k: u8, i: usize) -> Ipv6Addr {
    Ipv6Addr::new(0xfd6e, k as u16, 0, 0, 0, 0, 0, (i + 2) as u16)
}

fn gw4(k: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 120 + k, 0, 1)
}

fn gw6(k: u8) -> Ipv6Addr {
    Ipv6Addr::new(0xfd6e, k as u16, 0, 0, 0, 0, 0, 1)
}

fn name_of(i: usize) -> String {
    match i {
        i if i >= CHURN_BASE => format!("churn{}", i - CHURN_BASE),
        i if i >= NEW_BASE => format!("new{}", i - NEW_BASE),
        i => format!("ctr{i}"),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Sidecar,
    Dnsmasq,
    Aardvark,
    Floor,
}

/// One server under test on its own network `k`.
struct Server {
    label: String,
    kind: Kind,
    bin: PathBuf,
    k: u8,
    net: String,
    dir: PathBuf,
    resolv: PathBuf,
    /// Registered containers (indices), in order.
    names: Vec<usize>,
    child: Option<Child>,
    pid: Option<u32>,
    responder: Option<Responder>,
}

struct Lab {
    host: TestNs,
    client: TestNs,
    _upstream: TestNs,
    _up: Responder,
    tmp: TempDir,
}

fn sh(what: &str, out: std::io::Result<std::process::Output>) -> Result<String, String> {
    match out {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!("{what}: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!("{what}: {e}")),
    }
}

impl Lab {
    fn new() -> Result<Lab, String> {
        let e = |x: std::io::Error| x.to_string();
        let host = TestNs::with_lo().map_err(e)?;
        let client = TestNs::with_lo().map_err(e)?;
        let upstream = TestNs::with_lo().map_err(e)?;
        host.ip(&["link", "add", "dnsup", "type", "veth", "peer", "name", "eth0", "netns", upstream.name()])
            .map_err(e)?;
        host.ip(&["addr", "add", "10.119.0.1/24", "dev", "dnsup"]).map_err(e)?;
        host.ip(&["link", "set", "dnsup", "up"]).map_err(e)?;
        for a in [UP_LIVE].iter().chain(UP_DEAD.iter()) {
            upstream.ip(&["addr", "add", &format!("{a}/24"), "dev", "eth0"]).map_err(e)?;
        }
        upstream.ip(&["link", "set", "eth0", "up"]).map_err(e)?;
        let dead = UP_DEAD.join(", ");
        let rules = format!(
            "table inet cnibench_dead {{\n chain input {{\n type filter hook input priority 0;\n \
             ip daddr {{ {dead} }} drop\n }}\n}}\n"
        );
        let out = upstream.spawn(&["nft", "-f", "-"], rules.as_bytes()).map_err(e)?;
        if !out.success() {
            return Err(format!("nft in the upstream netns: {}", out.stderr.trim()));
        }
        let sock = upstream
            .run(|| UdpSocket::bind((UP_LIVE.parse::<Ipv4Addr>().expect("ip"), 53)))
            .map_err(e)?
            .map_err(e)?;
        let up = Responder::spawn(sock, Answer::Upstream).map_err(e)?;
        let tmp = TempDir::new().map_err(e)?;
        fs::write(tmp.join("resolv.live"), format!("nameserver {UP_LIVE}\n")).map_err(e)?;
        let dead: String = UP_DEAD.iter().map(|a| format!("nameserver {a}\n")).collect();
        fs::write(tmp.join("resolv.dead"), dead).map_err(e)?;
        Ok(Lab { host, client, _upstream: upstream, _up: up, tmp })
    }

    /// Network `k`: its bridge with the gateway addresses, and the client's leg.
    fn network(&self, k: u8) -> Result<(), String> {
        let e = |x: std::io::Error| x.to_string();
        let (br, port, eth) = (format!("cnidns{k}"), format!("dnsp{k}"), format!("eth{k}"));
        let h = &self.host;
        h.ip(&["link", "add", &br, "type", "bridge"]).map_err(e)?;
        h.ip(&["addr", "add", &format!("{}/16", gw4(k)), "dev", &br]).map_err(e)?;
        h.ip(&["addr", "add", &format!("{}/64", gw6(k)), "dev", &br, "nodad"]).map_err(e)?;
        h.ip(&["link", "set", &br, "up"]).map_err(e)?;
        h.ip(&["link", "add", &port, "type", "veth", "peer", "name", &eth, "netns", self.client.name()])
            .map_err(e)?;
        h.ip(&["link", "set", &port, "master", &br, "up"]).map_err(e)?;
        let c = &self.client;
        c.ip(&["addr", "add", &format!("{}/16", addr4(k, 1)), "dev", &eth]).map_err(e)?;
        c.ip(&["addr", "add", &format!("{}/64", addr6(k, 1)), "dev", &eth, "nodad"]).map_err(e)?;
        c.ip(&["link", "set", &eth, "up"]).map_err(e)?;
        Ok(())
    }

    fn client_sock(&self) -> UdpSocket {
        self.client
            .run(|| UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)))
            .expect("client netns")
            .expect("client socket")
    }
}

fn pid_alive(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !matches!(s.rsplit(')').next().and_then(|r| r.split_whitespace().next()), Some("Z" | "X")))
        .unwrap_or(false)
}

fn rss_kib(pid: u32) -> Option<u64> {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn signal(pid: u32, sig: i32) -> bool {
    // SAFETY: plain kill(2) on a pid we started (or read from its own pidfile).
    unsafe { libc::kill(pid as i32, sig) == 0 }
}

impl Server {
    fn new(label: &str, kind: Kind, bin: PathBuf, k: u8, lab: &Lab, dead: bool) -> Result<Server, String> {
        let net = format!("dnsbench{k}");
        let dir = lab.tmp.join(format!("srv{k}"));
        fs::create_dir_all(dir.join("aardvark")).map_err(|e| e.to_string())?;
        lab.network(k)?;
        let resolv = lab.tmp.join(if dead { "resolv.dead" } else { "resolv.live" });
        Ok(Server {
            label: label.into(),
            kind,
            bin,
            k,
            net,
            dir,
            resolv,
            names: Vec::new(),
            child: None,
            pid: None,
            responder: None,
        })
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(gw4(self.k)), 53)
    }

    /// dns-sidecar's plugin ADD or DEL of container `i`, exec'd in HOST as a
    /// runtime does (the last plugin of the chain: its return is ADD's).
    fn sidecar(&self, lab: &Lab, cmd: &str, i: usize) -> Result<(), String> {
        let conf = json!({
            "cniVersion": "1.0.0", "name": self.net, "type": "dns-sidecar", "domainName": DOMAIN,
            "capabilities": {"aliases": true},
            "prevResult": {"cniVersion": "1.0.0",
                "interfaces": [{"name": format!("cnidns{}", self.k)}, {"name": "eth0", "sandbox": lab.client.path_str()}],
                "ips": [{"address": format!("{}/16", addr4(self.k, i)), "gateway": gw4(self.k).to_string(), "interface": 1},
                        {"address": format!("{}/64", addr6(self.k, i)), "gateway": gw6(self.k).to_string(), "interface": 1}]}
        });
        let cid = container_id(50 + self.k as u32, i);
        let args = format!("IgnoreUnknown=1;K8S_POD_NAME={}", name_of(i));
        let (dir, resolv, netns) =
            (self.dir.to_string_lossy(), self.resolv.to_string_lossy(), lab.client.path_str());
        let path = self.bin.parent().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default();
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", cid.as_str()),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", path.as_str()),
            ("CNI_ARGS", args.as_str()),
            ("DNS_SIDECAR_RUN_DIR", &dir),
            ("DNS_SIDECAR_RESOLV_CONF", &resolv),
        ];
        let out = run_plugin(&self.bin, Some(lab.host.path()), &env, conf.to_string().as_bytes())
            .map_err(|e| format!("dns-sidecar {cmd}: {e}"))?;
        if !out.success() {
            return Err(format!(
                "dns-sidecar {cmd} {}: {}{}",
                name_of(i),
                out.stdout.trim(),
                out.stderr.trim()
            ));
        }
        Ok(())
    }

    fn hosts_line(&self, i: usize) -> String {
        match self.kind {
            // dnsname: one line per IP, "<ip>\t<name> <aliases…>".
            Kind::Dnsmasq => {
                format!("{}\t{}\n{}\t{}\n", addr4(self.k, i), name_of(i), addr6(self.k, i), name_of(i))
            }
            // netavark: "<id> <ipv4,…> <ipv6,…> <name,aliases…>".
            _ => format!(
                "{} {} {} {}\n",
                container_id(50 + self.k as u32, i),
                addr4(self.k, i),
                addr6(self.k, i),
                name_of(i)
            ),
        }
    }

    fn records_path(&self) -> PathBuf {
        match self.kind {
            Kind::Dnsmasq => self.dir.join("addnhosts"),
            _ => self.dir.join("aardvark").join(&self.net),
        }
    }

    /// Rewrite the whole records file (dnsname and netavark rewrite it on removal).
    fn rewrite(&self) -> Result<(), String> {
        let mut s = String::new();
        if self.kind == Kind::Aardvark {
            s += &format!("{},{}\n", gw4(self.k), gw6(self.k));
        }
        for &i in &self.names {
            s += &self.hosts_line(i);
        }
        let p = self.records_path();
        // Written beside, not inside, aardvark-dns's config dir (it parses every file there).
        let tmp = self.dir.join("records.tmp");
        fs::write(&tmp, s).and_then(|_| fs::rename(&tmp, &p)).map_err(|e| e.to_string())
    }

    /// Register containers as each implementation's ADD does: the plugin for
    /// dns-sidecar; append to the hosts/config file and SIGHUP the server for
    /// dnsmasq (dnsname) and aardvark-dns (netavark). `bulk`: one file write
    /// and one signal for all (setting up, not measured).
    fn add(&mut self, lab: &Lab, idx: &[usize], bulk: bool) -> Result<(), String> {
        match self.kind {
            Kind::Floor => self.names.extend_from_slice(idx),
            Kind::Sidecar => {
                for &i in idx {
                    self.sidecar(lab, "ADD", i)?;
                    self.names.push(i);
                }
            }
            Kind::Dnsmasq | Kind::Aardvark => {
                self.names.extend_from_slice(idx);
                if bulk || self.pid.is_none() {
                    self.rewrite()?;
                } else {
                    let mut f = fs::OpenOptions::new()
                        .append(true)
                        .open(self.records_path())
                        .map_err(|e| e.to_string())?;
                    for &i in idx {
                        f.write_all(self.hosts_line(i).as_bytes()).map_err(|e| e.to_string())?;
                    }
                }
                self.hup();
            }
        }
        Ok(())
    }

    fn del(&mut self, lab: &Lab, i: usize) -> Result<(), String> {
        self.names.retain(|&n| n != i);
        match self.kind {
            Kind::Floor => {}
            Kind::Sidecar => self.sidecar(lab, "DEL", i)?,
            Kind::Dnsmasq | Kind::Aardvark => {
                self.rewrite()?;
                self.hup();
            }
        }
        Ok(())
    }

    fn hup(&self) {
        if let Some(pid) = self.pid {
            signal(pid, libc::SIGHUP);
        }
    }

    /// Start the server (after the first registration for dns-sidecar, whose
    /// ADD starts it) and wait until it answers for `ctr1`.
    fn start(&mut self, lab: &Lab) -> Result<(), String> {
        match self.kind {
            Kind::Sidecar => {
                let p = self.dir.join(&self.net).join("pid");
                let pid = fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()))?;
                self.pid = pid.trim().parse().ok();
            }
            Kind::Floor => {
                let addr = self.addr();
                let sock = lab
                    .host
                    .run(move || UdpSocket::bind(addr))
                    .map_err(|e| e.to_string())?
                    .map_err(|e| format!("bind {addr}: {e}"))?;
                self.responder = Some(Responder::spawn(sock, Answer::Fixed).map_err(|e| e.to_string())?);
            }
            Kind::Dnsmasq => {
                // containers/dnsname's generated dnsmasq.conf, with only
                // resolv-file added (dnsname's dnsmasq reads the host's
                // /etc/resolv.conf; ours names the fake upstream).
                let conf = format!(
                    "## WARNING: THIS IS AN AUTOGENERATED FILE\n## AND SHOULD NOT BE EDITED MANUALLY AS IT\n\
                     ## LIKELY TO AUTOMATICALLY BE REPLACED.\nstrict-order\nlocal=/{DOMAIN}/\ndomain={DOMAIN}\n\
                     expand-hosts\npid-file={dir}/pidfile\nexcept-interface=lo\nbind-dynamic\nno-hosts\n\
                     interface=cnidns{k}\naddn-hosts={dir}/addnhosts\nresolv-file={resolv}\n",
                    dir = self.dir.display(),
                    k = self.k,
                    resolv = self.resolv.display()
                );
                let cf = self.dir.join("dnsmasq.conf");
                fs::write(&cf, conf).map_err(|e| e.to_string())?;
                self.rewrite()?;
                let (mut cmd, _guard) = lab.host.command(&self.bin).map_err(|e| e.to_string())?;
                // As dnsname runs it (`dnsmasq -u root --conf-file=…`), kept
                // in the foreground so that the pid is our child's.
                cmd.arg("-u").arg("root").arg(format!("--conf-file={}", cf.display())).arg("-k");
                cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
                let child = cmd.spawn().map_err(|e| format!("dnsmasq: {e}"))?;
                self.pid = Some(child.id());
                self.child = Some(child);
            }
            Kind::Aardvark => {
                let cdir = self.dir.join("aardvark");
                fs::create_dir_all(&cdir).map_err(|e| e.to_string())?;
                self.rewrite()?;
                // aardvark-dns 1.4 reads /etc/resolv.conf: give it ours in a
                // private mount namespace, then enter HOST's netns. It forks,
                // the parent exits when the child is ready; the child's pid
                // is in <config dir>/aardvark.pid.
                let out = Command::new("unshare")
                    .args(["-m", "--propagation", "private", "sh", "-c"])
                    .arg(
                        "mount --bind \"$0\" /etc/resolv.conf && exec nsenter --net=\"$1\" \"$2\" --config \"$3\" \
                         -p 53 run",
                    )
                    .arg(&self.resolv)
                    .arg(lab.host.path())
                    .arg(&self.bin)
                    .arg(&cdir)
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::piped())
                    .output();
                let out = sh("aardvark-dns run", out)?;
                let _ = out;
                let p = cdir.join("aardvark.pid");
                let t = Instant::now();
                while self.pid.is_none() && t.elapsed() < Duration::from_secs(5) {
                    self.pid = fs::read_to_string(&p).ok().and_then(|s| s.trim().parse().ok());
                    std::thread::sleep(Duration::from_millis(10));
                }
                if self.pid.is_none() {
                    return Err(format!("aardvark-dns: no pid in {}", p.display()));
                }
            }
        }
        let first = *self.names.first().unwrap_or(&1);
        self.wait_answer(lab, first, Duration::from_secs(5))
    }

    /// Wait until container `i`'s name answers with an address.
    fn wait_answer(&self, lab: &Lab, i: usize, limit: Duration) -> Result<(), String> {
        let q = dnsload::build_query(&format!("{}.{DOMAIN}", name_of(i)), qtype::A).expect("query");
        let sock = lab.client_sock();
        let p = probe(&sock, self.addr(), &q, Duration::from_millis(20), limit, |rc, an| rc == 0 && an > 0);
        match p.after {
            Some(_) => Ok(()),
            None => Err(format!("{}: {} not answered (last reply {:?})", self.label, name_of(i), p.last)),
        }
    }

    fn stop(&mut self) -> Vec<String> {
        let mut errs = Vec::new();
        self.responder.take();
        if let Some(pid) = self.pid.take() {
            signal(pid, libc::SIGTERM);
            if let Some(mut c) = self.child.take() {
                let _ = c.wait();
            }
            let t = Instant::now();
            while pid_alive(pid) && t.elapsed() < Duration::from_secs(3) {
                std::thread::sleep(Duration::from_millis(10));
            }
            if pid_alive(pid) {
                signal(pid, libc::SIGKILL);
                errs.push(format!("{} (pid {pid}) needed SIGKILL", self.label));
            }
        }
        errs
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The query kinds measured: label, and whether the right answer is NXDOMAIN.
const QKINDS: &[(&str, bool)] =
    &[("A", false), ("AAAA", false), ("PTR", false), ("NXDOMAIN", true), ("forwarded (cached)", false)];

/// The queries of kind `q` for server `s` with containers 1..=n registered:
/// up to 64 distinct names spread over the table.
fn queries(q: usize, s: &Server, n: usize) -> Vec<Vec<u8>> {
    let picks: Vec<usize> =
        if n <= 64 { (1..=n).collect() } else { (0..64).map(|j| 1 + (j * (n - 1)) / 63).collect() };
    let mk = |name: String, t| dnsload::build_query(&name, t).expect("query");
    match q {
        0 => picks.iter().map(|&i| mk(name_of(i), qtype::A)).collect(),
        1 => picks.iter().map(|&i| mk(format!("{}.{DOMAIN}", name_of(i)), qtype::AAAA)).collect(),
        2 => picks.iter().map(|&i| mk(dnsload::ptr_name(IpAddr::V4(addr4(s.k, i))), qtype::PTR)).collect(),
        3 => (0..64).map(|j| mk(format!("nope{j}.{DOMAIN}"), qtype::A)).collect(),
        _ => (0..64).map(|j| mk(format!("www{j}.example.com"), qtype::A)).collect(),
    }
}

/// Answers that are right for the query kind.
fn right(st: &LoadStats, nx: bool) -> u64 {
    if nx {
        st.rcode(rcode::NXDOMAIN)
    } else {
        st.rcode(rcode::NOERROR) - st.empty
    }
}

struct Plan {
    names: Vec<usize>,
    dur: Duration,
    reps: usize,
    paced_rate: f64,
    paced_dur: Duration,
    paced_reps: usize,
    live_samples: usize,
    churn_dur: Duration,
    servfail_limit: Option<Duration>,
}

pub fn dns(ctx: &mut Ctx) {
    let mut sec = Section::new("5. DNS");
    let tiny = ctx.opts.tiny;
    let plan = if tiny {
        Plan {
            names: vec![1, 20],
            dur: Duration::from_millis(10),
            reps: 1,
            paced_rate: 10_000.0,
            paced_dur: Duration::from_millis(20),
            paced_reps: 1,
            live_samples: 4,
            churn_dur: Duration::from_millis(50),
            servfail_limit: None,
        }
    } else {
        Plan {
            names: vec![1, 1000],
            dur: Duration::from_millis(1500),
            reps: 3,
            paced_rate: 10_000.0,
            paced_dur: Duration::from_millis(500),
            paced_reps: 10,
            live_samples: 40,
            churn_dur: Duration::from_secs(3),
            servfail_limit: Some(Duration::from_secs(10)),
        }
    };
    // The servers: every dns-sidecar of a non-baseline dir, then the anchors and the floor.
    let mut specs: Vec<(String, Kind, PathBuf)> = Vec::new();
    for (k, imp) in ctx.impls.iter().enumerate() {
        if k != ctx.base && imp.missing(&["dns-sidecar"]).is_empty() {
            specs.push((format!("dns-sidecar ({})", imp.name), Kind::Sidecar, imp.dir.join("dns-sidecar")));
        }
    }
    if specs.is_empty() {
        let msg = "skipped: no dns-sidecar in the plugin dirs under test";
        println!("== DNS: {msg}");
        sec.text(msg);
        ctx.report.push(sec);
        return;
    }
    let which = |b: &str| -> Option<PathBuf> {
        [
            format!("/usr/sbin/{b}"),
            format!("/usr/bin/{b}"),
            format!("/usr/lib/podman/{b}"),
            format!("/usr/libexec/podman/{b}"),
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
    };
    let mut notes = Vec::new();
    match which("dnsmasq") {
        Some(b) => specs.push(("dnsmasq (dnsname)".into(), Kind::Dnsmasq, b)),
        None => notes.push("dnsmasq not installed (Debian: dnsmasq-base): skipped".to_string()),
    }
    match which("aardvark-dns") {
        Some(b) => specs.push(("aardvark-dns".into(), Kind::Aardvark, b)),
        None => notes.push("aardvark-dns not installed (Debian: aardvark-dns): skipped".to_string()),
    }
    specs.push(("fixed responder (floor)".into(), Kind::Floor, PathBuf::new()));
    let versions = versions(&specs);
    println!("== DNS: {}", specs.iter().map(|s| s.0.as_str()).collect::<Vec<_>>().join(", "));

    let lab = match Lab::new() {
        Ok(l) => l,
        Err(e) => {
            ctx.report.error(format!("DNS lab: {e}"));
            sec.text(format!("**failed to build the namespaces: {e}**"));
            ctx.report.push(sec);
            return;
        }
    };
    let mut servers: Vec<Server> = Vec::new();
    for (j, (label, kind, bin)) in specs.iter().enumerate() {
        let r = Server::new(label, *kind, bin.clone(), j as u8, &lab, false).and_then(|mut s| {
            s.add(&lab, &[1], true)?;
            s.start(&lab)?;
            Ok(s)
        });
        match r {
            Ok(s) => servers.push(s),
            Err(e) => {
                let e = format!("DNS: starting {label}: {e}");
                if *kind == Kind::Sidecar {
                    ctx.report.error(e.clone());
                }
                notes.push(e);
            }
        }
    }
    let errors = run(ctx, &lab, &mut servers, &plan, &mut sec, &versions, &mut notes);
    for s in &mut servers {
        for e in s.stop() {
            notes.push(e);
        }
    }
    // dns-sidecar's daemon must be gone (and nothing else of ours left running).
    for e in errors {
        ctx.report.error(e);
    }
    for n in notes {
        sec.text(n);
    }
    ctx.report.push(sec);
}

fn versions(specs: &[(String, Kind, PathBuf)]) -> String {
    let mut v = Vec::new();
    for (label, kind, bin) in specs {
        let out = match kind {
            Kind::Dnsmasq => Command::new(bin).arg("--version").output().ok(),
            Kind::Aardvark => Command::new(bin).arg("--version").output().ok(),
            _ => None,
        };
        if let Some(o) = out {
            let s = String::from_utf8_lossy(&o.stdout);
            let line = s.lines().next().unwrap_or("").trim().to_string();
            v.push(format!("{label}: {line}"));
        }
    }
    v.join("; ")
}

fn pct_of(a: u64, b: u64) -> String {
    if b == 0 {
        "–".into()
    } else if a == b {
        "100".into()
    } else {
        format!("{:.1}", 100.0 * a as f64 / b as f64)
    }
}

fn us(x: Option<f64>) -> String {
    x.map(|v| format!("{v:.0}")).unwrap_or_else(|| "–".into())
}

#[allow(clippy::too_many_arguments)]
fn run(
    ctx: &mut Ctx,
    lab: &Lab,
    servers: &mut [Server],
    plan: &Plan,
    sec: &mut Section,
    versions: &str,
    notes: &mut Vec<String>,
) -> Vec<String> {
    let mut errors = Vec::new();
    let ns = servers.len();
    let dnsmasq = servers.iter().position(|s| s.kind == Kind::Dnsmasq);
    let sidecars: Vec<usize> = (0..ns).filter(|&j| servers[j].kind == Kind::Sidecar).collect();
    sec.text(format!(
        "Servers, each on its own network (bridge, gateway 10.(120+k).0.1, client leg in one client netns), same \
         load from the same process: {}. dns-sidecar: containers registered through the plugin's ADD (a hand-made \
         bridge prevResult, IPv4 + IPv6, `K8S_POD_NAME`), the daemon started by the first ADD. dnsmasq: the \
         `dnsmasq.conf` containers/dnsname generates (`local=/dns.podman/`, `domain`, `expand-hosts`, `bind-dynamic`, \
         `interface=<bridge>`, `addn-hosts`, `strict-order`, `no-hosts`; plus `resolv-file` naming the fake \
         upstream), run as `dnsmasq -u root --conf-file=… -k`; names appended to the hosts file + SIGHUP, as \
         dnsname's ADD. aardvark-dns: netavark's config dir format (`<gw4>,<gw6>` then `<id> <ipv4> <ipv6> \
         <name>`), `aardvark-dns --config <dir> -p 53 run` in a mount namespace whose /etc/resolv.conf names the \
         fake upstream; updates appended + SIGHUP, as netavark. Floor: a fixed-answer UDP responder (batched \
         recvmmsg/sendmmsg, one thread) in the same place. Forwarded names go to a fake upstream server in a peer \
         netns (A 192.0.2.1, TTL 3600 for `*.example.com`, NXDOMAIN otherwise).{}",
        servers.iter().map(|s| s.label.as_str()).collect::<Vec<_>>().join(", "),
        if versions.is_empty() { String::new() } else { format!(" Versions: {versions}.") }
    ));
    sec.text(format!(
        "Load: one UDP socket in the client netns keeps {} queries in flight (`sendmmsg`/`recvmmsg`), {} s per run, \
         {} run(s) per server interleaved (order rotated), 64 distinct names per run (spread over the table); rate = \
         answers/s, p50/p99 = round trip under that saturating load (mostly queueing); right = answers with the \
         expected rcode and an answer record (NXDOMAIN for the unknown names); lost = no answer within 100 ms. The \
         forwarded names are asked once before timing (so they are cached where the server caches).",
        128,
        plan.dur.as_secs_f64(),
        plan.reps
    ));
    let mut rss_t = Table::new(&["server", "names", "RSS KiB"]);
    let mut thr = Table::new(&[
        "names",
        "query",
        "server",
        "answers/s (median)",
        "paired ratio / dnsmasq",
        "p50 µs",
        "p99 µs",
        "right %",
        "lost",
    ]);
    let mut lat = Table::new(&[
        "names",
        "server",
        "p50 µs",
        "p99 µs",
        "paired p99 ratio / dnsmasq",
        "max µs",
        "answered",
        "lost",
        "right %",
    ]);
    let mut registered = 1usize;
    for &n in &plan.names {
        if n > registered {
            let idx: Vec<usize> = (registered + 1..=n).collect();
            let t = Instant::now();
            for s in servers.iter_mut() {
                let r = s.add(lab, &idx, true).and_then(|_| s.wait_answer(lab, n, Duration::from_secs(10)));
                if let Err(e) = r {
                    let e = format!("DNS: registering {n} names with {}: {e}", s.label);
                    if s.kind == Kind::Sidecar {
                        errors.push(e.clone());
                    }
                    notes.push(e);
                }
            }
            println!("   registered {n} names everywhere in {:.1} s", t.elapsed().as_secs_f64());
            registered = n;
        }
        for s in servers.iter() {
            if let Some(kib) = s.pid.and_then(rss_kib) {
                rss_t.row(vec![s.label.clone(), n.to_string(), kib.to_string()]);
                if s.kind == Kind::Sidecar && n >= 1000 {
                    ctx.report.target(
                        format!("DNS daemon RSS with {n} names ({})", s.label),
                        kib as f64 / 1024.0,
                        4.0,
                        "MiB",
                        "after the load runs: see the RSS table",
                    );
                }
            }
        }
        // Saturating load per query kind.
        let mut qps_by: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); ns]; QKINDS.len()];
        for (q, (qlabel, nx)) in QKINDS.iter().enumerate() {
            if q == 4 {
                for s in servers.iter() {
                    let sock = lab.client_sock();
                    for qq in queries(q, s, n) {
                        probe(
                            &sock,
                            s.addr(),
                            &qq,
                            Duration::from_millis(50),
                            Duration::from_millis(500),
                            |_, _| true,
                        );
                    }
                }
            }
            let mut stats: Vec<Vec<LoadStats>> = vec![Vec::new(); ns];
            for rep in 0..plan.reps {
                for j in order(ns, rep + q) {
                    let s = &servers[j];
                    let mut spec = LoadSpec::new(s.addr(), queries(q, s, n), plan.dur);
                    spec.window = 128;
                    match run_load(&lab.client_sock(), &spec) {
                        Ok(st) => stats[j].push(st),
                        Err(e) => notes.push(format!("load against {}: {e}", s.label)),
                    }
                }
            }
            for (j, s) in servers.iter().enumerate() {
                let v = &stats[j];
                let qps: Vec<f64> = v.iter().map(LoadStats::qps).collect();
                qps_by[q][j] = qps.clone();
                let ratio = match dnsmasq {
                    Some(d) if d != j && !stats[d].is_empty() => {
                        let r: Vec<f64> = v.iter().zip(&stats[d]).map(|(a, b)| a.qps() / b.qps()).collect();
                        fmt_ratio(median(&r))
                    }
                    _ => String::new(),
                };
                let p50: Vec<f64> = v.iter().filter_map(|x| x.rtt_pct(50.0)).collect();
                let p99: Vec<f64> = v.iter().filter_map(|x| x.rtt_pct(99.0)).collect();
                let (ans, ok, lost) =
                    v.iter().fold((0, 0, 0), |(a, o, l), x| (a + x.answered, o + right(x, *nx), l + x.lost));
                thr.row(vec![
                    n.to_string(),
                    qlabel.to_string(),
                    s.label.clone(),
                    format!("{:.0}", median(&qps)),
                    ratio,
                    us(Some(median(&p50)).filter(|x| x.is_finite())),
                    us(Some(median(&p99)).filter(|x| x.is_finite())),
                    if s.kind == Kind::Floor { "(fixed)".into() } else { pct_of(ok, ans) },
                    lost.to_string(),
                ]);
                if s.kind == Kind::Sidecar && ok < ans {
                    errors.push(format!(
                        "DNS: {} gave {} wrong answers of {ans} for {qlabel} ({n} names)",
                        s.label,
                        ans - ok
                    ));
                }
            }
            println!(
                "   {n} names, {qlabel}: {}",
                servers
                    .iter()
                    .enumerate()
                    .map(|(j, s)| format!("{} {:.0}/s", s.label, median(&qps_by[q][j])))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        // Targets: queries/s at least dnsmasq's for A, AAAA, PTR, NXDOMAIN (paired, worst kind).
        if let Some(d) = dnsmasq {
            for &j in &sidecars {
                let mut worst = (f64::INFINITY, "");
                for q in 0..4 {
                    let r: Vec<f64> = qps_by[q][j].iter().zip(&qps_by[q][d]).map(|(a, b)| a / b).collect();
                    let m = median(&r);
                    if m < worst.0 {
                        worst = (m, QKINDS[q].0);
                    }
                }
                ctx.report.target_min(
                    format!(
                        "DNS queries/s / dnsmasq's, {n} name(s), worst of A/AAAA/PTR/NXDOMAIN ({})",
                        servers[j].label
                    ),
                    worst.0,
                    1.0,
                    "ratio",
                    &format!("worst: {}", worst.1),
                );
            }
        }
        // Cached forwarded names should cost what local names cost. The
        // query kinds run one after another, so compare each to the floor
        // measured in the same interleaved runs, then the two.
        let floor = servers.iter().position(|s| s.kind == Kind::Floor);
        for &j in &sidecars {
            let vs_floor = |q: usize, f: usize| {
                median(&qps_by[q][j].iter().zip(&qps_by[q][f]).map(|(a, b)| a / b).collect::<Vec<_>>())
            };
            if let (Some(f), true) = (floor, n == *plan.names.last().unwrap_or(&1)) {
                let (fwd, a) = (vs_floor(4, f), vs_floor(0, f));
                ctx.report.target_min(
                    format!("DNS cached forwarded names vs local A names, {n} names ({})", servers[j].label),
                    fwd / a,
                    0.9,
                    "ratio",
                    &format!(
                        "answers/s relative to the floor in the same runs: forwarded {} vs A {}; {:.0}/s vs \
                         {:.0}/s; 0.9 allows for noise",
                        fmt_ratio(fwd),
                        fmt_ratio(a),
                        median(&qps_by[4][j]),
                        median(&qps_by[0][j])
                    ),
                );
            }
        }
        // Latency at a moderate load: a fixed rate, open loop, many short
        // interleaved runs; percentiles per run, then medians and the
        // median of per-run paired p99 ratios (one noisy burst of the shared
        // machine then spoils one run, not a server's whole p99).
        let mut runs: Vec<Vec<LoadStats>> = vec![Vec::new(); ns];
        for rep in 0..plan.paced_reps {
            for j in order(ns, rep) {
                let s = &servers[j];
                let mut spec = LoadSpec::new(s.addr(), queries(0, s, n), plan.paced_dur);
                spec.window = 4096;
                spec.rate = Some(plan.paced_rate);
                match run_load(&lab.client_sock(), &spec) {
                    Ok(st) => runs[j].push(st),
                    Err(e) => notes.push(format!("paced load against {}: {e}", s.label)),
                }
            }
        }
        let pct =
            |v: &[LoadStats], p: f64| median(&v.iter().filter_map(|x| x.rtt_pct(p)).collect::<Vec<_>>());
        for (j, s) in servers.iter().enumerate() {
            let v = &runs[j];
            let (ans, lost, ok) =
                v.iter().fold((0, 0, 0), |(a, l, o), x| (a + x.answered, l + x.lost, o + right(x, false)));
            let ratio = match dnsmasq {
                Some(d) if d != j => {
                    let r: Vec<f64> = v
                        .iter()
                        .zip(&runs[d])
                        .filter_map(|(a, b)| Some(a.rtt_pct(99.0)? / b.rtt_pct(99.0)?))
                        .collect();
                    fmt_ratio(median(&r))
                }
                _ => String::new(),
            };
            lat.row(vec![
                n.to_string(),
                s.label.clone(),
                us(Some(pct(v, 50.0)).filter(|x| x.is_finite())),
                us(Some(pct(v, 99.0)).filter(|x| x.is_finite())),
                ratio,
                us(Some(pct(v, 100.0)).filter(|x| x.is_finite())),
                ans.to_string(),
                lost.to_string(),
                if s.kind == Kind::Floor { "(fixed)".into() } else { pct_of(ok, ans) },
            ]);
        }
        if let Some(d) = dnsmasq {
            for &j in &sidecars {
                let r: Vec<f64> = runs[j]
                    .iter()
                    .zip(&runs[d])
                    .filter_map(|(a, b)| Some(a.rtt_pct(99.0)? / b.rtt_pct(99.0)?))
                    .collect();
                ctx.report.target(
                    format!(
                        "DNS p99 at {:.0} queries/s / dnsmasq's, {n} name(s) ({})",
                        plan.paced_rate, servers[j].label
                    ),
                    median(&r),
                    1.0,
                    "ratio",
                    &format!(
                        "median of {} paired runs; p99 {} µs vs {} µs",
                        r.len(),
                        us(Some(pct(&runs[j], 99.0))),
                        us(Some(pct(&runs[d], 99.0)))
                    ),
                );
            }
        }
    }
    // RSS after the load.
    for s in servers.iter() {
        if let Some(kib) = s.pid.and_then(rss_kib) {
            rss_t.row(vec![format!("{} (after the load)", s.label), registered.to_string(), kib.to_string()]);
        }
    }
    sec.text("Throughput (saturating load):");
    sec.table(thr);
    sec.text(format!(
        "Latency at a moderate load: A queries sent at a fixed {:.0}/s (open loop), {} runs of {} s per server, \
         interleaved; p50/p99/max are medians over the runs, the ratio the median of per-run p99 ratios:",
        plan.paced_rate,
        plan.paced_reps,
        plan.paced_dur.as_secs_f64()
    ));
    sec.table(lat);

    // A new name: time from registration returning to the first right answer.
    let mut live = Table::new(&[
        "server",
        "registration",
        "samples",
        "ADD/update ms (median)",
        "first answer after: median ms",
        "p95 ms",
        "max ms",
        "≤ 1 ms",
        "wrong replies before",
        "queries unanswered (2 ms)",
        "control: an old name right after, median / max ms",
    ]);
    for s in servers.iter_mut() {
        if s.kind == Kind::Floor {
            continue;
        }
        let sock = lab.client_sock();
        let (mut after, mut reg, mut control) = (Vec::new(), Vec::new(), Vec::new());
        let (mut never, mut wrong, mut unanswered) = (0, 0, 0);
        let old = dnsload::build_query(&format!("{}.{DOMAIN}", name_of(1)), qtype::A).expect("query");
        for t in 0..plan.live_samples {
            let i = NEW_BASE + t;
            let q = dnsload::build_query(&format!("{}.{DOMAIN}", name_of(i)), qtype::A).expect("query");
            // Every other registration, ask for an old name instead: the
            // same moment's round trip for a name that was always there.
            let is_control = t % 2 == 1;
            let t0 = Instant::now();
            if let Err(e) = s.add(lab, &[i], false) {
                notes.push(format!("{}: registering {}: {e}", s.label, name_of(i)));
                break;
            }
            reg.push(ms(t0.elapsed()));
            let ask = if is_control { &old } else { &q };
            let p =
                probe(&sock, s.addr(), ask, Duration::from_millis(2), Duration::from_secs(3), |rc, an| {
                    rc == 0 && an > 0
                });
            if is_control {
                control.extend(p.after.map(ms));
                continue;
            }
            wrong += p.wrong;
            unanswered += p.tries - p.wrong - p.after.is_some() as u32;
            match p.after {
                Some(d) => after.push(ms(d)),
                None => never += 1,
            }
        }
        let within = after.iter().filter(|&&x| x <= 1.0).count();
        let maxv = after.iter().copied().fold(f64::NAN, f64::max);
        live.row(vec![
            s.label.clone(),
            match s.kind {
                Kind::Sidecar => "plugin ADD (exec, returns after the daemon's ack)".into(),
                Kind::Dnsmasq => "append to addn-hosts + SIGHUP (dnsname)".into(),
                _ => "append to the config file + SIGHUP (netavark)".into(),
            },
            format!(
                "{}{}",
                after.len(),
                if never > 0 { format!(" (+{never} never within 3 s)") } else { String::new() }
            ),
            fmt_ms(median(&reg)),
            fmt_ms(median(&after)),
            fmt_ms(percentile(&after, 95.0)),
            fmt_ms(maxv),
            format!("{within}/{}", after.len() + never),
            wrong.to_string(),
            unanswered.to_string(),
            format!(
                "{} / {}",
                fmt_ms(median(&control)),
                fmt_ms(control.iter().copied().fold(f64::NAN, f64::max))
            ),
        ]);
        if s.kind == Kind::Sidecar {
            let worst = if never > 0 { f64::INFINITY } else { maxv };
            ctx.report.target(
                format!(
                    "DNS new name answers after ADD returns, worst of {} ({})",
                    after.len() + never,
                    s.label
                ),
                worst,
                1.0,
                "ms",
                &format!(
                    "median {} ms; control (old name, same moment) median {} / max {} ms",
                    fmt_ms(median(&after)),
                    fmt_ms(median(&control)),
                    fmt_ms(control.iter().copied().fold(f64::NAN, f64::max))
                ),
            );
        }
    }
    sec.text(format!(
        "A newly registered name ({registered} names registered): the time from the registration returning to the first \
         right answer for it, asking again every 2 ms without an answer (at once after a wrong one); every other \
         registration is followed by a query for an old name instead (the control: what the first round trip after \
         an update costs anyway)."
    ));
    sec.table(live);

    // Churn: a steady moderate load on registered names while containers come and go.
    let mut churn_t = Table::new(&[
        "server",
        "queries sent",
        "answered",
        "lost",
        "REFUSED",
        "SERVFAIL",
        "NXDOMAIN",
        "empty",
        "updates",
    ]);
    for s in servers.iter_mut() {
        if s.kind == Kind::Floor {
            continue;
        }
        let addr = s.addr();
        let qs = queries(0, s, registered);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (st, ops, errs) = std::thread::scope(|sc| {
            let churn = sc.spawn(|| {
                let mut ops = 0u64;
                let mut errs = Vec::new();
                let mut t = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let i = CHURN_BASE + t;
                    let r = if t.is_multiple_of(2) { s.add(lab, &[i], false) } else { s.del(lab, i - 1) };
                    match r {
                        Ok(()) => ops += 1,
                        Err(e) => errs.push(e),
                    }
                    t += 1;
                    std::thread::sleep(Duration::from_millis(10));
                }
                (ops, errs)
            });
            let mut spec = LoadSpec::new(addr, qs, plan.churn_dur);
            spec.window = 4096;
            spec.rate = Some(plan.paced_rate);
            let st = run_load(&lab.client_sock(), &spec);
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            let (ops, errs) = churn.join().unwrap_or_default();
            (st, ops, errs)
        });
        if let Some(e) = errs.first() {
            notes.push(format!("{}: churn update failed ({} times): {e}", s.label, errs.len()));
        }
        let Ok(st) = st else { continue };
        let bad = st.lost
            + st.rcode(rcode::REFUSED)
            + st.rcode(rcode::SERVFAIL)
            + st.rcode(rcode::NXDOMAIN)
            + st.empty;
        churn_t.row(vec![
            s.label.clone(),
            st.sent.to_string(),
            st.answered.to_string(),
            st.lost.to_string(),
            st.rcode(rcode::REFUSED).to_string(),
            st.rcode(rcode::SERVFAIL).to_string(),
            st.rcode(rcode::NXDOMAIN).to_string(),
            st.empty.to_string(),
            ops.to_string(),
        ]);
        if s.kind == Kind::Sidecar {
            ctx.report.target(
                format!("DNS queries lost or refused while records change ({})", s.label),
                bad as f64,
                0.0,
                "count",
                &format!("{} queries, {ops} ADD/DEL", st.sent),
            );
        }
    }
    sec.text(format!(
        "Records changing under load: A queries for registered names at {:.0}/s for {} s while another thread \
         registers and removes a container every 10 ms (dns-sidecar: plugin ADD/DEL; dnsmasq: hosts file + SIGHUP; \
         aardvark-dns: config file + SIGHUP). Every query should be answered with its address.",
        plan.paced_rate,
        plan.churn_dur.as_secs_f64()
    ));
    sec.table(churn_t);

    // Every upstream dead.
    match plan.servfail_limit {
        None => sec.text("Every upstream dead: skipped in --tiny (it waits seconds)."),
        Some(limit) => servfail(ctx, lab, servers, limit, sec, notes),
    }
    sec.text("Daemon memory (VmRSS; the floor runs inside cnibench):");
    sec.table(rss_t);
    errors
}

/// A second instance of each server whose upstreams (three) all drop
/// queries: how long until a client gets an answer (SERVFAIL), if ever.
fn servfail(
    ctx: &mut Ctx,
    lab: &Lab,
    servers: &[Server],
    limit: Duration,
    sec: &mut Section,
    notes: &mut Vec<String>,
) {
    let base = servers.len() as u8;
    let mut dead: Vec<Server> = Vec::new();
    for (j, s) in servers.iter().enumerate() {
        if s.kind == Kind::Floor {
            continue;
        }
        let r = Server::new(&s.label, s.kind, s.bin.clone(), base + j as u8, lab, true).and_then(|mut d| {
            d.add(lab, &[1], true)?;
            d.start(lab)?;
            Ok(d)
        });
        match r {
            Ok(d) => dead.push(d),
            Err(e) => notes.push(format!("dead-upstream instance of {}: {e}", s.label)),
        }
    }
    let results: Vec<dnsload::Probe> = std::thread::scope(|sc| {
        let hs: Vec<_> = dead
            .iter()
            .map(|d| {
                let sock = lab.client_sock();
                let addr = d.addr();
                sc.spawn(move || {
                    let q = dnsload::build_query("www.unreachable.example.org", qtype::A).expect("query");
                    // One query, never resent: what the first try of a stub resolver sees.
                    probe(&sock, addr, &q, limit, limit, |_, _| true)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let mut t = Table::new(&["server", "answer", "after s"]);
    for (d, p) in dead.iter().zip(&results) {
        let (after, last) = (&p.after, &p.last);
        let what = match last {
            Some((rc, _)) if *rc == rcode::SERVFAIL => "SERVFAIL".to_string(),
            Some((rc, _)) => format!("rcode {rc}"),
            None => format!("none within {} s", limit.as_secs()),
        };
        t.row(vec![
            d.label.clone(),
            what,
            after.map(|a| format!("{:.2}", a.as_secs_f64())).unwrap_or_else(|| "–".into()),
        ]);
        if d.kind == Kind::Sidecar {
            let ok = matches!(last, Some((rc, _)) if *rc == rcode::SERVFAIL);
            ctx.report.target(
                format!("DNS SERVFAIL with every upstream dead ({})", d.label),
                if ok { after.map(|a| a.as_secs_f64()).unwrap_or(f64::INFINITY) } else { f64::INFINITY },
                5.0,
                "s",
                "bounded wait; 5 s = aardvark-dns's total budget, a stub resolver's first timeout",
            );
        }
    }
    for mut d in dead {
        notes.extend(d.stop());
    }
    sec.text(format!(
        "Every upstream dead: a second instance of each server, 1 name, whose resolv.conf lists three upstream \
         addresses that drop all queries; one query for an external name, not resent, waited for up to {} s.",
        limit.as_secs()
    ));
    sec.table(t);
}
