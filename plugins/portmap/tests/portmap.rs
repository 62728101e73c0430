//! Root tests: bridge + host-local + portmap chained by a libcni-like runtime
//! in a private "host" netns, a real server in the container and real
//! clients outside (a peer netns on a veth), on the host, in a second
//! container and in the container itself. Each test skips without root.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_harness::*;

const PY: &str = "/usr/bin/python3";

const SERVER: &str = r#"
import socket, sys
proto, port, name = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if proto == 'udp':
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
else:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_SCTP if proto == 'sctp' else 0)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('::', port))
if proto != 'udp':
    s.listen(64)
print('ready', flush=True)
def peer(p):
    return p[0][7:] if p[0].startswith('::ffff:') else p[0]
while True:
    if proto == 'udp':
        data, p = s.recvfrom(2048)
        print('got', data.decode(errors='replace'), flush=True)
        s.sendto(('%s %s' % (name, peer(p))).encode(), p)
    else:
        c, p = s.accept()
        c.settimeout(2)
        try:
            data = c.recv(2048)
            print('got', data.decode(errors='replace'), flush=True)
            c.sendall(('%s %s' % (name, peer(p))).encode())
        except Exception:
            pass
        c.close()
"#;

const CLIENT: &str = r#"
import socket, sys
proto, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
sport = int(sys.argv[4]) if len(sys.argv) > 4 else 0
fam = socket.AF_INET6 if ':' in host else socket.AF_INET
if proto == 'udp':
    s = socket.socket(fam, socket.SOCK_DGRAM)
else:
    s = socket.socket(fam, socket.SOCK_STREAM, socket.IPPROTO_SCTP if proto == 'sctp' else 0)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if sport:
    s.bind(('', sport))
s.settimeout(1.5)
try:
    if proto == 'udp':
        s.sendto(b'hello', (host, port))
        print(s.recvfrom(2048)[0].decode())
    else:
        s.connect((host, port))
        s.sendall(b'hello')
        print(s.recv(2048).decode())
except Exception as e:
    print('error', e, file=sys.stderr)
    sys.exit(1)
"#;

/// Sends one UDP datagram as a raw Ethernet frame out of `ifname`, so the
/// destination may be anything (127.0.0.1 included).
const RAW_UDP: &str = r#"
import socket, struct, sys
ifname, dmac, sip, dip, dport, payload = sys.argv[1:7]
p = payload.encode()
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s > 0xffff:
        s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
udp = struct.pack('!HHHH', 40001, int(dport), 8 + len(p), 0) + p
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, socket.inet_aton(sip), socket.inet_aton(dip))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((ifname, 0))
smac = s.getsockname()[4]
s.send(bytes.fromhex(dmac.replace(':', '')) + smac + b'\x08\x00' + ip + udp)
"#;

fn root() -> bool {
    if !is_root() {
        eprintln!("skipping: needs root");
    }
    is_root()
}

/// A server process in a netns; what it received is collected; killed on drop.
struct Server {
    child: Child,
    got: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start(ns: &TestNs, proto: &str, port: u16, name: &str) -> Option<Server> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), PY, "-c", SERVER, proto, &port.to_string(), name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        match lines.next() {
            Some(Ok(l)) if l == "ready" => {}
            _ => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                eprintln!("{proto} server did not start: {}", String::from_utf8_lossy(&out.stderr));
                return None;
            }
        }
        let got = Arc::new(Mutex::new(Vec::new()));
        let g = got.clone();
        std::thread::spawn(move || {
            for l in lines.map_while(|l| l.ok()) {
                g.lock().unwrap().push(l);
            }
        });
        Some(Server { child, got })
    }

    fn received(&self, what: &str) -> bool {
        self.got.lock().unwrap().iter().any(|l| l == &format!("got {what}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request from `ns` that should be answered: up to 3 tries (the first
/// packets of a fresh netns may wait for neighbour resolution).
fn ask(ns: &TestNs, proto: &str, host: &str, port: u16) -> Option<String> {
    (0..3).find_map(|_| ask_from(ns, proto, host, port, 0))
}

/// One request from `ns`: the server's answer `"<name> <peer address>"`.
fn ask_once(ns: &TestNs, proto: &str, host: &str, port: u16) -> Option<String> {
    ask_from(ns, proto, host, port, 0)
}

fn ask_from(ns: &TestNs, proto: &str, host: &str, port: u16, sport: u16) -> Option<String> {
    let out = ns.exec(&[PY, "-c", CLIENT, proto, host, &port.to_string(), &sport.to_string()]).unwrap();
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn raw_udp(ns: &TestNs, ifname: &str, dmac: &str, sip: &str, dip: &str, port: u16, payload: &str) {
    let out = ns.exec(&[PY, "-c", RAW_UDP, ifname, dmac, sip, dip, &port.to_string(), payload]).unwrap();
    assert!(out.status.success(), "raw send: {}", String::from_utf8_lossy(&out.stderr));
}

fn mac_of(ns: &TestNs, ifname: &str) -> String {
    link(ns, ifname).unwrap()["address"].as_str().unwrap().to_string()
}

/// A host netns with a peer netns "outside" on a veth: host 192.168.77.1 and
/// .3 (fd77::1), outside 192.168.77.2 (fd77::2). Plugins run in `host`.
struct Env {
    host: HostNs,
    outside: TestNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl Env {
    fn new() -> Option<Env> {
        if !root() {
            return None;
        }
        let host = HostNs::with_lo().unwrap();
        let outside = TestNs::with_lo().unwrap();
        veth(&host, "ext0", &outside, "ext1").unwrap();
        for a in ["192.168.77.1/24", "192.168.77.3/24"] {
            host.ip(&["addr", "add", a, "dev", "ext0"]).unwrap();
        }
        host.ip(&["addr", "add", "fd77::1/64", "dev", "ext0", "nodad"]).unwrap();
        outside.ip(&["addr", "add", "192.168.77.2/24", "dev", "ext1"]).unwrap();
        outside.ip(&["addr", "add", "fd77::2/64", "dev", "ext1", "nodad"]).unwrap();
        let (rt, cache) = runtime_in(&host);
        Some(Env { host, outside, rt, _cache: cache, data: TempDir::new().unwrap() })
    }

    /// bridge (hairpin, gateway, no ipMasq) + host-local dual-stack + portmap.
    fn list(&self, version: &str, portmap: Value) -> NetConfList {
        let mut pm = json!({"type": "portmap", "capabilities": {"portMappings": true}});
        pm.as_object_mut().unwrap().extend(portmap.as_object().unwrap().clone());
        conflist_value(&json!({
            "cniVersion": version, "name": "pmnet",
            "plugins": [
                {"type": "bridge", "bridge": "cnipm0", "isGateway": true, "hairpinMode": true,
                 "ipam": {"type": "host-local", "dataDir": self.data.path(),
                          "ranges": [[{"subnet": "10.99.0.0/24"}], [{"subnet": "fd99::/64"}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
                pm
            ]
        }))
    }

    fn add(&self, list: &NetConfList, id: &str, ctr: &TestNs, maps: Value) -> Result<CniResult, InvokeError> {
        self.rt.add(list, id, ctr.path(), "eth0", "", json!({ "portMappings": maps }))
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &TestNs, maps: Value) {
        self.rt.del(list, id, ctr.path(), "eth0", "", json!({ "portMappings": maps })).unwrap();
    }
}

fn addr_of(res: &CniResult, v4: bool) -> String {
    res.ips.iter().find(|ip| ip.address.is_ipv4() == v4).unwrap().address.addr.to_string()
}

fn eventually(f: impl FnMut() -> bool) -> bool {
    wait_until(Duration::from_secs(5), f)
}

#[test]
fn tcp_and_udp_reach_the_container_from_everywhere() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.1.0", json!({}));
    let (a, b) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let maps = json!([
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5300, "containerPort": 53, "protocol": "udp"}
    ]);
    let ra = env.add(&list, "ctra", &a, maps.clone()).unwrap();
    let rb = env.add(&list, "ctrb", &b, json!([])).unwrap();
    let a4 = addr_of(&ra, true);
    assert!(a4.starts_with("10.99.0."), "{ra:?}");
    let Some(_tcp) = Server::start(&a, "tcp", 80, "A") else { panic!("tcp server") };
    let Some(_udp) = Server::start(&a, "udp", 53, "A") else { panic!("udp server") };
    let text = nft_text(&env.host);

    // outside, at every host address, IPv4 and IPv6: the client address is kept
    for (host, peer) in
        [("192.168.77.1", "192.168.77.2"), ("192.168.77.3", "192.168.77.2"), ("fd77::1", "fd77::2")]
    {
        for (proto, port) in [("tcp", 8080), ("udp", 5300)] {
            let got = ask(&env.outside, proto, host, port);
            assert_eq!(
                got.as_deref(),
                Some(format!("A {peer}").as_str()),
                "outside {proto} {host}:{port}\n{text}"
            );
        }
    }
    // the host itself: at its own address (no masquerade needed) and at 127.0.0.1 (masqueraded)
    assert_eq!(ask(&env.host, "tcp", "192.168.77.1", 8080).as_deref(), Some("A 192.168.77.1"));
    assert_eq!(ask(&env.host, "udp", "192.168.77.1", 5300).as_deref(), Some("A 192.168.77.1"));
    assert_eq!(ask(&env.host, "tcp", "127.0.0.1", 8080).as_deref(), Some("A 10.99.0.1"), "{text}");
    assert_eq!(ask(&env.host, "udp", "127.0.0.1", 5300).as_deref(), Some("A 10.99.0.1"));
    assert_eq!(env.host.sysctl("net.ipv4.conf.cnipm0.route_localnet").unwrap(), "1");
    // a second container on the bridge and the container itself (hairpin): masqueraded
    for (ns, who) in [(&b, "B"), (&a, "A itself")] {
        for host in ["192.168.77.1", "10.99.0.1"] {
            let got = ask(ns, "tcp", host, 8080);
            assert_eq!(got.as_deref(), Some("A 10.99.0.1"), "{who} -> {host}:8080\n{text}");
        }
        assert_eq!(ask(ns, "udp", "192.168.77.1", 5300).as_deref(), Some("A 10.99.0.1"), "{who} udp");
        assert_eq!(
            ask(ns, "tcp", "fd77::1", 8080).as_deref(),
            Some(format!("A {}", "fd99::1").as_str()),
            "{who} v6"
        );
    }
    // unmapped ports are not forwarded
    assert_eq!(ask_once(&env.outside, "tcp", "192.168.77.1", 8081), None);
    env.rt.check(&list, "ctra", a.path(), "eth0", "", json!({ "portMappings": maps })).unwrap();

    env.del(&list, "ctrb", &b, json!([]));
    env.del(&list, "ctra", &a, maps);
    assert_eq!(ask_once(&env.outside, "tcp", "192.168.77.1", 8080), None);
    let rs = nft_ruleset(&env.host);
    assert!(
        nft_objects(&rs, "table").iter().all(|t| t["name"] != "cnirs_portmap"),
        "{}",
        nft_text(&env.host)
    );
    // route_localnet goes back off with the last mapping
    assert_eq!(env.host.sysctl("net.ipv4.conf.cnipm0.route_localnet").unwrap(), "0");
    let _ = rb;
}

#[test]
fn host_ip_limits_the_mapping_to_that_address() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let a = ContainerNs::with_lo().unwrap();
    let maps = json!([
        {"hostPort": 8080, "containerPort": 80, "hostIP": "192.168.77.3"},
        {"hostPort": 8443, "containerPort": 80, "hostIP": "fd77::1"}
    ]);
    env.add(&list, "hip", &a, maps.clone()).unwrap();
    let _srv = Server::start(&a, "tcp", 80, "A").unwrap();
    assert_eq!(ask(&env.outside, "tcp", "192.168.77.3", 8080).as_deref(), Some("A 192.168.77.2"));
    assert_eq!(ask_once(&env.outside, "tcp", "192.168.77.1", 8080), None);
    assert_eq!(ask_once(&env.outside, "tcp", "fd77::1", 8080), None);
    assert_eq!(ask(&env.outside, "tcp", "fd77::1", 8443).as_deref(), Some("A fd77::2"));
    assert_eq!(ask_once(&env.outside, "tcp", "192.168.77.3", 8443), None);
    // a hostIP-specific mapping and an any-address one of another container coexist;
    // the specific one wins at its address
    let b = ContainerNs::with_lo().unwrap();
    env.add(&list, "any", &b, json!([{"hostPort": 8080, "containerPort": 80}])).unwrap();
    let _srvb = Server::start(&b, "tcp", 80, "B").unwrap();
    assert_eq!(ask(&env.outside, "tcp", "192.168.77.3", 8080).as_deref(), Some("A 192.168.77.2"));
    assert_eq!(ask(&env.outside, "tcp", "192.168.77.1", 8080).as_deref(), Some("B 192.168.77.2"));
    env.del(&list, "any", &b, json!([{"hostPort": 8080, "containerPort": 80}]));
    env.del(&list, "hip", &a, maps);
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
}

#[test]
fn conflicts_name_the_holder_and_own_readd_is_fine() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let (a, b) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let maps = json!([{"hostPort": 8080, "containerPort": 80}]);
    let ra = env.add(&list, "holder1", &a, maps.clone()).unwrap();
    let e = env.add(&list, "second2", &b, json!([{"hostPort": 8080, "containerPort": 8000}])).unwrap_err();
    assert_eq!(e.plugin, "portmap", "{e:?}");
    assert!(
        e.msg().contains("host port 8080/tcp is already mapped for container holder1 (eth0)"),
        "{}",
        e.msg()
    );
    // the failed ADD changed nothing: A still answers
    let _srv = Server::start(&a, "tcp", 80, "A").unwrap();
    assert_eq!(ask(&env.outside, "tcp", "192.168.77.1", 8080).as_deref(), Some("A 192.168.77.2"));
    // udp on the same port and another host port are not conflicts
    env.rt.del(&list, "second2", b.path(), "eth0", "", json!({})).unwrap();
    env.add(&list, "second2", &b, json!([{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]))
        .unwrap();
    // the same container re-adding its mapping (portmap alone, as a retried ADD would)
    let rtc = RuntimeConf::new("holder1", a.path(), "eth0").cap_args(json!({ "portMappings": maps }));
    let req = env.rt.request(&list, 1, Some(&ra), &rtc).unwrap();
    env.rt.invoke("ADD", &list, 1, &req, &rtc).unwrap();
    // ... even pointing elsewhere now
    let rtc2 = RuntimeConf::new("holder1", a.path(), "eth0")
        .cap_args(json!({ "portMappings": [{"hostPort": 8080, "containerPort": 81}] }));
    let req = env.rt.request(&list, 1, Some(&ra), &rtc2).unwrap();
    env.rt.invoke("ADD", &list, 1, &req, &rtc2).unwrap();
    let _srv81 = Server::start(&a, "tcp", 81, "A81").unwrap();
    assert_eq!(ask(&env.outside, "tcp", "192.168.77.1", 8080).as_deref(), Some("A81 192.168.77.2"));
    env.del(&list, "holder1", &a, maps);
    env.del(&list, "second2", &b, json!([{"hostPort": 8080, "containerPort": 80, "protocol": "udp"}]));
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
}

#[test]
fn cri_capitalized_keys_and_del_without_netns_or_prev_result() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let a = ContainerNs::with_lo().unwrap();
    let maps = json!([{"HostPort": 30080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""}]);
    env.add(&list, "cri1", &a, maps.clone()).unwrap();
    let srv = Server::start(&a, "tcp", 80, "A").unwrap();
    assert_eq!(ask(&env.outside, "tcp", "192.168.77.1", 30080).as_deref(), Some("A 192.168.77.2"));
    drop(srv);
    // the sandbox is gone; the CRI's second DEL has no netns and no prevResult
    let path = a.path_str();
    drop(a);
    assert!(!std::path::Path::new(&path).exists());
    let rtc = RuntimeConf::new("cri1", "", "eth0").cap_args(json!({ "portMappings": maps }));
    let req = env.rt.request(&list, 1, None, &rtc).unwrap();
    assert!(req.get("prevResult").is_none());
    env.rt.invoke("DEL", &list, 1, &req, &rtc).unwrap();
    assert!(!nft_text(&env.host).contains("cnirs_portmap"), "{}", nft_text(&env.host));
    // and again (DEL is idempotent), then the whole list
    env.rt.invoke("DEL", &list, 1, &req, &rtc).unwrap();
    env.rt.del_rt(&list, &rtc).unwrap();
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
}

#[test]
fn empty_mappings_do_no_netfilter_work_and_prev_result_is_required() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.1.0", json!({}));
    let a = ContainerNs::with_lo().unwrap();
    let res = env.add(&list, "none", &a, json!([])).unwrap();
    assert_eq!(res.ips.len(), 2);
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
    env.rt.check(&list, "none", a.path(), "eth0", "", json!({})).unwrap();
    env.rt.status(&list).unwrap();
    env.del(&list, "none", &a, json!([]));
    // portmap alone, first in a list: no prevResult
    let alone = conflist_value(&json!({"cniVersion": "1.0.0", "name": "x",
        "plugins": [{"type": "portmap", "capabilities": {"portMappings": true}}]}));
    let e = env.rt.add(
        &alone,
        "c",
        a.path(),
        "eth0",
        "",
        json!({"portMappings": [{"hostPort": 1, "containerPort": 1}]}),
    );
    let e = e.unwrap_err();
    assert_eq!(e.code(), Some(7));
    assert!(e.msg().contains("chained plugin"), "{}", e.msg());
    // iptables-only conditions are refused as unsupported
    let cond = env.list("1.0.0", json!({"conditionsV4": ["-s", "1.2.3.4"]}));
    let c2 = ContainerNs::with_lo().unwrap();
    let e = env.add(&cond, "c2", &c2, json!([{"hostPort": 1, "containerPort": 1}])).unwrap_err();
    assert_eq!((e.plugin.as_str(), e.code()), ("portmap", Some(2)), "{}", e.msg());
    let c3 = ContainerNs::with_lo().unwrap();
    let bad = env.add(&list, "c3", &c3, json!([{"hostPort": 70000, "containerPort": 1}])).unwrap_err();
    assert_eq!((bad.plugin.as_str(), bad.code()), ("portmap", Some(7)), "{}", bad.msg());
    // a failed ADD is followed by DEL, as runtimes do
    env.del(&cond, "c2", &c2, json!([{"hostPort": 1, "containerPort": 1}]));
    env.del(&list, "c3", &c3, json!([]));
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
}

/// portmap alone with a synthetic prevResult (the table is the only state).
fn pm_list(name: &str, version: &str) -> NetConfList {
    conflist_value(&json!({"cniVersion": version, "name": name,
        "plugins": [{"type": "portmap", "capabilities": {"portMappings": true}}]}))
}

fn prev(v4: &str, v6: Option<&str>) -> CniResult {
    let mut ips = vec![json!({"address": v4, "interface": 0})];
    if let Some(v6) = v6 {
        ips.push(json!({"address": v6, "interface": 0}));
    }
    CniResult::parse(
        &json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}], "ips": ips}),
        "1.0.0",
    )
    .unwrap()
}

/// portmap alone: ADD and CHECK get the given (dummy) netns, DEL none.
fn pm(
    (rt, ns): (&Runtime, &TestNs),
    cmd: &str,
    list: &NetConfList,
    id: &str,
    p: Option<&CniResult>,
    maps: Value,
) -> Result<(), InvokeError> {
    let netns = if cmd == "DEL" { String::new() } else { ns.path_str() };
    let rtc = RuntimeConf::new(id, netns, "eth0").cap_args(json!({ "portMappings": maps }));
    let req = rt.request(list, 0, p, &rtc).unwrap();
    rt.invoke(cmd, list, 0, &req, &rtc).map(drop)
}

#[test]
fn hundred_containers_flat_add_then_zero_rules() {
    if !root() {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let dummy = ContainerNs::new().unwrap();
    let list = pm_list("many", "1.0.0");
    let mut times = Vec::new();
    for i in 0..100u16 {
        let p =
            prev(&format!("10.98.{}.{}/16", i / 200, 2 + i % 200), Some(&format!("fd98::{:x}/64", i + 2)));
        let maps = json!([{"hostPort": 10000 + i, "containerPort": 80}, {"hostPort": 20000 + i, "containerPort": 53, "protocol": "udp"}]);
        let t = Instant::now();
        pm((&rt, &dummy), "ADD", &list, &format!("c{i}"), Some(&p), maps).unwrap();
        times.push(t.elapsed());
    }
    let rs = nft_ruleset(&host);
    let rules = nft_objects(&rs, "rule").len();
    // rules do not grow with containers: fixed ones + one hairpin rule per subnet
    assert_eq!(rules, 4 + 2 + 1 + 3 + 2, "{}", nft_text(&host));
    let elems = |set: &str| {
        let out = host.spawn(&["nft", "-j", "list", "map", "inet", "cnirs_portmap", set], b"").unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        nft_objects(&v, "map")[0]["elem"].as_array().map_or(0, |a| a.len())
    };
    assert_eq!((elems("ports4"), elems("ports6")), (200, 200));
    let first: Duration = times[..10].iter().sum();
    let last: Duration = times[90..].iter().sum();
    eprintln!("portmap ADD: first 10 avg {:?}, last 10 avg {:?}", first / 10, last / 10);
    let t = Instant::now();
    for i in 0..100u16 {
        let maps = json!([{"hostPort": 10000 + i, "containerPort": 80}]);
        pm((&rt, &dummy), "DEL", &list, &format!("c{i}"), None, maps).unwrap();
    }
    eprintln!("portmap DEL: avg {:?}", t.elapsed() / 100);
    assert!(nft_is_empty(&host), "{}", nft_text(&host));
}

#[test]
fn check_is_exact_and_ipv4_only_containers_pass() {
    if !root() {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let dummy = ContainerNs::new().unwrap();
    let list = pm_list("chk", "1.0.0");
    let p4 = prev("10.97.0.2/24", None);
    let maps = json!([{"hostPort": 8080, "containerPort": 80}, {"hostPort": 53, "containerPort": 53, "protocol": "udp"}]);
    pm((&rt, &dummy), "ADD", &list, "v4only", Some(&p4), maps.clone()).unwrap();
    pm((&rt, &dummy), "CHECK", &list, "v4only", Some(&p4), maps.clone()).unwrap();
    // another container's view of the same port is not ours
    let e = pm((&rt, &dummy), "CHECK", &list, "other", Some(&p4), maps.clone()).unwrap_err();
    assert!(e.msg().contains("belongs to container v4only (eth0)"), "{}", e.msg());
    // remove one element by hand: CHECK names what is missing
    let out = host
        .spawn(&["nft", "delete", "element", "inet", "cnirs_portmap", "ports4", "{ udp . 53 }"], b"")
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    let e = pm((&rt, &dummy), "CHECK", &list, "v4only", Some(&p4), maps.clone()).unwrap_err();
    assert!(e.msg().contains("host port 53/udp is not published"), "{}", e.msg());
    // a missing hairpin rule is noticed too
    pm((&rt, &dummy), "ADD", &list, "v4only", Some(&p4), maps.clone()).unwrap();
    pm((&rt, &dummy), "CHECK", &list, "v4only", Some(&p4), maps.clone()).unwrap();
    host.spawn(&["nft", "flush", "chain", "inet", "cnirs_portmap", "postrouting"], b"").unwrap();
    let e = pm((&rt, &dummy), "CHECK", &list, "v4only", Some(&p4), maps.clone()).unwrap_err();
    assert!(e.msg().contains("hairpin"), "{}", e.msg());
    pm((&rt, &dummy), "DEL", &list, "v4only", None, maps).unwrap();
    assert!(nft_is_empty(&host), "{}", nft_text(&host));
}

#[test]
fn gc_removes_attachments_not_listed_in_this_network_only() {
    if !root() {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let dummy = ContainerNs::new().unwrap();
    let (n1, n2) = (pm_list("net1", "1.1.0"), pm_list("net2", "1.1.0"));
    for (list, id, port, ip) in [
        (&n1, "keep", 1001, "10.96.0.2/24"),
        (&n1, "gone", 1002, "10.96.0.3/24"),
        (&n2, "other", 1003, "10.95.0.2/24"),
    ] {
        pm(
            (&rt, &dummy),
            "ADD",
            list,
            id,
            Some(&prev(ip, None)),
            json!([{"hostPort": port, "containerPort": 80}]),
        )
        .unwrap();
    }
    rt.gc(&n1, &[("keep", "eth0")]).unwrap();
    let text = nft_text(&host);
    assert!(text.contains("net1/keep/eth0") && text.contains("net2/other/eth0"), "{text}");
    assert!(!text.contains("net1/gone/eth0") && !text.contains("10.96.0.3"), "{text}");
    // the hairpin rule of a subnet stays while a container in it does
    assert!(text.contains("hairpin 10.96.0.0/24") && text.contains("hairpin 10.95.0.0/24"), "{text}");
    rt.gc(&n2, &[]).unwrap();
    let text = nft_text(&host);
    assert!(!text.contains("hairpin 10.95.0.0/24") && text.contains("hairpin 10.96.0.0/24"), "{text}");
    rt.gc(&n1, &[]).unwrap();
    assert!(nft_is_empty(&host), "{}", nft_text(&host));
    rt.status(&n1).unwrap();
}

#[test]
fn localhost_from_outside_stays_closed() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let (a, b) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let maps = json!([
        {"hostPort": 5300, "containerPort": 53, "protocol": "udp"},
        {"hostPort": 5301, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}
    ]);
    env.add(&list, "lh", &a, maps.clone()).unwrap();
    let rb = env.add(&list, "lhb", &b, json!([])).unwrap();
    let srv = Server::start(&a, "udp", 53, "A").unwrap();
    // as kube-proxy does on many nodes: route_localnet on everywhere
    env.host.set_sysctl("net.ipv4.conf.all.route_localnet", "1").unwrap();
    let host_mac = mac_of(&env.host, "ext0");
    let bridge_mac = mac_of(&env.host, "cnipm0");
    let b4 = addr_of(&rb, true);
    // control: the same kind of frame to a host address is forwarded
    raw_udp(&env.outside, "ext1", &host_mac, "192.168.77.2", "192.168.77.1", 5300, "control");
    assert!(eventually(|| srv.received("control")), "raw frames do not work");
    // to 127.0.0.1, from outside and from a neighbour on the bridge: dropped
    raw_udp(&env.outside, "ext1", &host_mac, "192.168.77.2", "127.0.0.1", 5300, "outside-lo");
    raw_udp(&b, "eth0", &bridge_mac, &b4, "127.0.0.1", 5300, "bridge-lo");
    // a port published on 127.0.0.1 only (podman -p 127.0.0.1:5301:53)
    raw_udp(&env.outside, "ext1", &host_mac, "192.168.77.2", "127.0.0.1", 5301, "outside-lo-only");
    raw_udp(&b, "eth0", &bridge_mac, &b4, "127.0.0.1", 5301, "bridge-lo-only");
    std::thread::sleep(Duration::from_millis(500));
    for probe in ["outside-lo", "bridge-lo", "outside-lo-only", "bridge-lo-only"] {
        assert!(!srv.received(probe), "{probe}: {:?}", srv.got.lock().unwrap());
    }
    // the host itself still reaches both at 127.0.0.1
    assert_eq!(ask(&env.host, "udp", "127.0.0.1", 5300).as_deref(), Some("A 10.99.0.1"));
    assert_eq!(ask(&env.host, "udp", "127.0.0.1", 5301).as_deref(), Some("A 10.99.0.1"));
    assert_eq!(ask_once(&env.outside, "udp", "192.168.77.1", 5301), None);
    // honesty: without the guard rule the same frame would get through
    let rs = nft_ruleset(&env.host);
    let guard = nft_objects(&rs, "rule").into_iter().find(|r| r["chain"] == "guard").unwrap();
    let h = guard["handle"].to_string();
    let out = env
        .host
        .spawn(&["nft", "delete", "rule", "inet", "cnirs_portmap", "guard", "handle", &h], b"")
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    raw_udp(&env.outside, "ext1", &host_mac, "192.168.77.2", "127.0.0.1", 5300, "unguarded");
    assert!(eventually(|| srv.received("unguarded")), "the test cannot see the hole");
    env.del(&list, "lhb", &b, json!([]));
    env.del(&list, "lh", &a, maps);
}

#[test]
fn udp_conntrack_is_flushed_on_add_and_del() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let (a, b) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    // conntrack is on in the host once the table exists
    env.add(&list, "ct-a", &a, json!([{"hostPort": 8080, "containerPort": 80}])).unwrap();
    // a client keeps sending from one source port to an unmapped UDP port:
    // its conntrack entry points at the host itself
    assert_eq!(ask_from(&env.outside, "udp", "192.168.77.1", 5300, 40555), None);
    let ct = |ns: &TestNs| {
        let out = ns.spawn(&["conntrack", "-L", "-p", "udp", "--orig-port-dst", "5300"], b"").unwrap();
        out.stdout.lines().count()
    };
    assert_eq!(ct(&env.host), 1);
    let maps = json!([{"hostPort": 5300, "containerPort": 53, "protocol": "udp"}]);
    env.add(&list, "ct-b", &b, maps.clone()).unwrap();
    let _srv = Server::start(&b, "udp", 53, "B").unwrap();
    // the same flow now reaches the container: the stale entry was flushed
    assert_eq!(ask_from(&env.outside, "udp", "192.168.77.1", 5300, 40555).as_deref(), Some("B 192.168.77.2"));
    assert_eq!(ct(&env.host), 1);
    env.del(&list, "ct-b", &b, maps);
    assert_eq!(ct(&env.host), 0, "DEL leaves UDP conntrack entries");
    env.del(&list, "ct-a", &a, json!([{"hostPort": 8080, "containerPort": 80}]));
}

#[test]
fn sctp_mappings() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let a = ContainerNs::with_lo().unwrap();
    let maps = json!([{"hostPort": 9999, "containerPort": 99, "protocol": "SCTP"}]);
    env.add(&list, "sctp", &a, maps.clone()).unwrap();
    let text = nft_text(&env.host);
    assert!(text.contains("sctp . 9999"), "{text}");
    match Server::start(&a, "sctp", 99, "A") {
        Some(_srv) => {
            assert_eq!(ask(&env.outside, "sctp", "192.168.77.1", 9999).as_deref(), Some("A 192.168.77.2"));
        }
        None => eprintln!("skipping SCTP traffic: the kernel has no SCTP support"),
    }
    env.rt.check(&list, "sctp", a.path(), "eth0", "", json!({ "portMappings": maps })).unwrap();
    env.del(&list, "sctp", &a, maps);
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
}

/// The shipped examples (Podman `-p`, Kubernetes hostPort) publish a port for
/// real; only the lease directory is redirected to a temp dir.
#[test]
fn conf_examples_publish_a_port() {
    let Some(env) = Env::new() else { return };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf-examples");
    for (file, maps) in [
        (
            "podman/bridge-portmap.conflist",
            json!([{"hostPort": 28080, "containerPort": 80, "protocol": "tcp"}]),
        ),
        (
            "kubernetes/10-hostport.conflist",
            json!([{"HostPort": 30080, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""}]),
        ),
    ] {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        let mut v: Value = serde_json::from_str(&text).unwrap();
        v["plugins"][0]["ipam"]["dataDir"] = json!(env.data.path());
        let list = conflist_value(&v);
        let port =
            maps[0].as_object().unwrap().iter().find(|(k, _)| k.eq_ignore_ascii_case("hostPort")).unwrap().1;
        let port = port.as_u64().unwrap() as u16;
        let a = ContainerNs::with_lo().unwrap();
        env.add(&list, "example", &a, maps.clone()).unwrap();
        let _srv = Server::start(&a, "tcp", 80, "A").unwrap();
        assert_eq!(
            ask(&env.outside, "tcp", "192.168.77.1", port).as_deref(),
            Some("A 192.168.77.2"),
            "{file}"
        );
        assert_eq!(
            ask(&env.host, "tcp", "127.0.0.1", port).as_deref().map(|s| &s[..2]),
            Some("A "),
            "{file}"
        );
        env.rt.check(&list, "example", a.path(), "eth0", "", json!({ "portMappings": maps })).unwrap();
        env.del(&list, "example", &a, maps);
        assert!(nft_is_empty(&env.host), "{file}: {}", nft_text(&env.host));
    }
}

/// Elements of a set or map of the portmap table, counted with `nft -j list`.
fn elem_count(host: &TestNs, kind: &str, set: &str) -> usize {
    let out = host.spawn(&["nft", "-j", "list", kind, "inet", "cnirs_portmap", set], b"").unwrap();
    assert!(out.success(), "nft list {kind} {set}: {}", out.stderr);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    nft_objects(&v, kind)[0]["elem"].as_array().map_or(0, |a| a.len())
}

/// 1000 mappings, tcp and udp alternating, host ports 20000-20999 to
/// container ports 8000-8049 (tcp) and 9000-9049 (udp).
fn thousand_mappings() -> Value {
    let maps: Vec<Value> = (0..1000u16)
        .map(|i| {
            let (proto, base) = if i % 2 == 0 { ("tcp", 8000) } else { ("udp", 9000) };
            json!({"hostPort": 20000 + i, "containerPort": base + (i / 2) % 50, "protocol": proto})
        })
        .collect();
    Value::Array(maps)
}

#[test]
fn thousand_mappings_on_one_container() {
    let Some(env) = Env::new() else { return };
    let list = env.list("1.0.0", json!({}));
    let a = ContainerNs::with_lo().unwrap();
    let maps = thousand_mappings();
    let res = env.add(&list, "many-ports", &a, maps.clone()).unwrap();
    // every mapping of both families is in the maps; one snat element per
    // container port and family
    assert_eq!(elem_count(&env.host, "map", "ports4"), 1000);
    assert_eq!(elem_count(&env.host, "map", "ports6"), 1000);
    assert_eq!(elem_count(&env.host, "set", "snat4"), 100);
    assert_eq!(elem_count(&env.host, "set", "snat6"), 100);
    // sampled ports, first, middle and last, tcp and udp, reach the container
    let _servers: Vec<Server> = [("tcp", 8000), ("tcp", 8049), ("udp", 9000), ("udp", 9049)]
        .into_iter()
        .map(|(proto, port)| Server::start(&a, proto, port, &format!("{proto}{port}")).unwrap())
        .collect();
    for (proto, host_port, answer) in [
        ("tcp", 20000, "tcp8000"),
        ("tcp", 20500, "tcp8000"),
        ("tcp", 20998, "tcp8049"),
        ("udp", 20001, "udp9000"),
        ("udp", 20999, "udp9049"),
    ] {
        let got = ask(&env.outside, proto, "192.168.77.1", host_port);
        assert_eq!(got.as_deref(), Some(format!("{answer} 192.168.77.2").as_str()), "{proto} {host_port}");
        let got = ask(&env.outside, proto, "fd77::1", host_port);
        assert_eq!(got.as_deref(), Some(format!("{answer} fd77::2").as_str()), "{proto} [::]:{host_port}");
    }
    env.rt.check(&list, "many-ports", a.path(), "eth0", "", json!({ "portMappings": maps })).unwrap();
    // a retried ADD (portmap alone) finds its own keys and replaces all of
    // them in one transaction
    let rtc = RuntimeConf::new("many-ports", a.path(), "eth0").cap_args(json!({ "portMappings": maps }));
    let req = env.rt.request(&list, 1, Some(&res), &rtc).unwrap();
    env.rt.invoke("ADD", &list, 1, &req, &rtc).unwrap();
    assert_eq!(elem_count(&env.host, "map", "ports4"), 1000);
    assert_eq!(ask(&env.outside, "udp", "192.168.77.1", 20999).as_deref(), Some("udp9049 192.168.77.2"));
    env.del(&list, "many-ports", &a, maps);
    assert!(nft_is_empty(&env.host), "{}", nft_text(&env.host));
}

/// What portmap answered and left, run as rootless Podman runs it: in a user
/// namespace of its own with a fresh netns (created by `unshare`, gone with
/// it), where CAP_NET_ADMIN does not reach the host's socket limits.
struct Rootless {
    /// Exit code and stdout of the ADD.
    rc: i32,
    out: String,
    /// Elements in `ports4` right after the ADD.
    published: usize,
    /// `nft list ruleset` after the ADD (and the DEL when the ADD succeeded).
    left: String,
}

fn rootless_add(maps: &Value) -> Rootless {
    let dir = TempDir::new().unwrap();
    let req = json!({"cniVersion": "1.0.0", "name": "big", "type": "portmap",
        "runtimeConfig": {"portMappings": maps},
        "prevResult": {"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
                       "ips": [{"address": "10.97.0.2/24", "interface": 0}]}});
    let req_path = dir.path().join("req.json");
    std::fs::write(&req_path, req.to_string()).unwrap();
    let script = r#"
        plugin=$1; req=$2; out=$3
        CNI_COMMAND=ADD "$plugin" < "$req" > "$out/add"; echo $? > "$out/rc"
        nft -j list map inet cnirs_portmap ports4 > "$out/ports4" 2>/dev/null
        [ "$(cat "$out/rc")" = 0 ] && CNI_COMMAND=DEL "$plugin" < "$req" > /dev/null
        nft list ruleset > "$out/left"
    "#;
    let plugin = target_bin_dir().join("portmap");
    let cid = "f".repeat(64);
    let status = Command::new("unshare")
        .args(["--user", "--map-root-user", "--net", "sh", "-c", script, "sh"])
        .args([plugin.as_os_str(), req_path.as_os_str(), dir.path().as_os_str()])
        .env("CNI_CONTAINERID", &cid)
        .env("CNI_NETNS", "/proc/self/ns/net")
        .env("CNI_NETNS_OVERRIDE", "1")
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", target_bin_dir())
        .status()
        .unwrap();
    assert!(status.success());
    let read = |f: &str| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default();
    let published = serde_json::from_str::<Value>(&read("ports4"))
        .ok()
        .and_then(|v| nft_objects(&v, "map").first().and_then(|m| m["elem"].as_array().map(|a| a.len())))
        .unwrap_or(0);
    let rc: i32 = read("rc").trim().parse().unwrap();
    Rootless { rc, out: read("add"), published, left: read("left") }
}

/// `n` distinct mappings, tcp then udp, each to the same container port.
fn mappings(n: usize) -> Value {
    let maps: Vec<Value> = (0..n)
        .map(|i| {
            let (proto, port) = if i < 65535 { ("tcp", i + 1) } else { ("udp", i - 65535 + 1) };
            json!({"hostPort": port, "containerPort": port, "protocol": proto})
        })
        .collect();
    Value::Array(maps)
}

/// One ADD is one nf_tables transaction, and one transaction is one
/// datagram. With CAP_NET_ADMIN the socket's send buffer is raised to fit
/// (a million elements were tried); without it, as in rootless Podman, it
/// stops at twice net.core.wmem_max. Past that: a clear error, nothing left.
#[test]
fn past_the_transaction_limit_a_clear_error_and_nothing_left() {
    if !root() {
        return;
    }
    let wmem_max: usize =
        std::fs::read_to_string("/proc/sys/net/core/wmem_max").unwrap().trim().parse().unwrap();
    // a mapping is about 220 bytes here (a ports4 and a snat4 element, each
    // with a 73-byte comment)
    let (fits, too_many) = (2 * wmem_max / 400, 2 * wmem_max / 150);
    if too_many > 2 * 65535 {
        eprintln!("skipping: net.core.wmem_max {wmem_max} allows more mappings than there are ports");
        return;
    }
    let ok = rootless_add(&mappings(fits));
    assert_eq!(ok.rc, 0, "{fits} mappings: {}", ok.out);
    assert_eq!(ok.published, fits);
    assert_eq!(ok.left, "", "DEL left:\n{}", ok.left);

    let big = rootless_add(&mappings(too_many));
    assert_ne!(big.rc, 0);
    let e: Value = serde_json::from_str(&big.out).unwrap();
    let msg = e["msg"].as_str().unwrap();
    assert_eq!(e["code"], 7, "{msg}");
    assert!(
        msg.starts_with(&format!("too many port mappings ({too_many}) for one nf_tables transaction")),
        "{msg}"
    );
    assert!(msg.contains("net.core.wmem_max"), "{msg}");
    assert_eq!(big.published, 0);
    assert_eq!(big.left, "", "a failed ADD left:\n{}", big.left);
}
