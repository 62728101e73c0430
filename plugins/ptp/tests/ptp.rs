//! Root tests of the ptp plugin: the built binaries (`cargo build --workspace
//! --bins` first) driven by the harness' libcni-like runtime, with our
//! host-local as IPAM on a temp data dir. Plugins run in a fresh "host" netns
//! per test; every container is its own netns; every assertion reads kernel
//! state (`ip -j`, `nft -j`) or real packets. The reference plugin (Debian's,
//! /usr/lib/cni) runs beside ours where a test compares the two. Each test
//! skips itself when not root.

// `InvokeError` carries everything a failing test prints; its size on the
// error path of a test does not matter.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

const NET: &str = "ptptest";
const REFERENCE: &str = "/usr/lib/cni";

/// One test's world: the host netns plugins run in, a runtime with its
/// cache, and host-local's data dir.
struct World {
    host: HostNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl World {
    fn new() -> World {
        let host = HostNs::with_lo().expect("host netns");
        let (rt, cache) = runtime_in(&host);
        World { host, rt, _cache: cache, data: TempDir::new().expect("data dir") }
    }

    /// The same world with the plugins of `dir` (the reference's).
    fn runtime_of(&self, dir: &str) -> Runtime {
        let mut rt = self.rt.clone();
        rt.bin_dirs = vec![PathBuf::from(dir)];
        rt
    }

    /// host-local: one range set per subnet, a default route per family.
    fn ipam(&self, subnets: &[&str]) -> Value {
        let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
        let mut routes = Vec::new();
        if subnets.iter().any(|s| !s.contains(':')) {
            routes.push(json!({"dst": "0.0.0.0/0"}));
        }
        if subnets.iter().any(|s| s.contains(':')) {
            routes.push(json!({"dst": "::/0"}));
        }
        json!({"type": "host-local", "dataDir": self.data.path(), "ranges": ranges, "routes": routes})
    }

    /// A one-plugin list: `{"type":"ptp"}` plus `fields`.
    fn list(&self, version: &str, fields: Value) -> NetConfList {
        let mut plugin = json!({"type": "ptp"});
        for (k, v) in fields.as_object().expect("fields object") {
            plugin[k] = v.clone();
        }
        conflist_value(&json!({"cniVersion": version, "name": NET, "plugins": [plugin]}))
    }

    fn add(&self, list: &NetConfList, cid: &str, ctr: &ContainerNs) -> CniResult {
        self.rt.add(list, cid, ctr.path(), "eth0", "", json!({})).unwrap_or_else(|e| panic!("ADD {cid}: {e}"))
    }

    fn add_err(&self, list: &NetConfList, cid: &str, netns: &str) -> InvokeError {
        match self.rt.add(list, cid, netns, "eth0", "", json!({})) {
            Ok(r) => panic!("ADD {cid} should fail, got {r:?}"),
            Err(e) => e,
        }
    }

    fn del(&self, list: &NetConfList, cid: &str, netns: &str) {
        self.rt.del(list, cid, netns, "eth0", "", json!({})).unwrap_or_else(|e| panic!("DEL {cid}: {e}"));
    }

    fn check(&self, list: &NetConfList, cid: &str, ctr: &ContainerNs) -> Result<(), InvokeError> {
        self.rt.check(list, cid, ctr.path(), "eth0", "", json!({}))
    }

    /// host-local lease files (named by an IP) of a network.
    fn leases_of(&self, net: &str) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data.join(net))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| n.parse::<std::net::IpAddr>().is_ok());
        v.sort();
        v
    }

    fn leases(&self) -> Vec<String> {
        self.leases_of(NET)
    }

    fn host_veths(&self) -> Vec<String> {
        let v = self.host.ip_json(&["link", "show", "type", "veth"]).expect("ip link show type veth");
        v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str().map(str::to_string)).collect()
    }

    /// The host's routes to `ip` (any device).
    fn host_routes_to(&self, ip: &str) -> Vec<Value> {
        routes(&self.host).as_array().into_iter().flatten().filter(|r| r["dst"] == ip).cloned().collect()
    }

    /// Set and map elements of the host's ruleset mentioning `needle`.
    fn nft_elems_with(&self, needle: &str) -> Vec<String> {
        nft_elems(&self.host).into_iter().filter(|e| e.contains(needle)).collect()
    }
}

fn nft_elems(ns: &TestNs) -> Vec<String> {
    let rs = nft_ruleset(ns);
    ["set", "map"]
        .iter()
        .flat_map(|k| nft_objects(&rs, k))
        .flat_map(|s| s["elem"].as_array().cloned().unwrap_or_default())
        .map(|e| e.to_string())
        .collect()
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().expect("container netns")
}

fn ip_of(res: &CniResult, v4: bool) -> String {
    res.ips
        .iter()
        .find(|i| i.address.is_ipv4() == v4)
        .map(|i| i.address.addr.to_string())
        .unwrap_or_else(|| panic!("no IPv{} in {res:?}", if v4 { 4 } else { 6 }))
}

fn gw_of(res: &CniResult, v4: bool) -> String {
    res.ips
        .iter()
        .find(|i| i.address.is_ipv4() == v4)
        .and_then(|i| i.gateway)
        .map(|g| g.to_string())
        .unwrap_or_else(|| panic!("no gateway in {res:?}"))
}

/// The host end, named first in the result.
fn host_veth(res: &CniResult) -> String {
    res.interfaces.first().map(|i| i.name.clone()).expect("result names the host veth")
}

fn mtu(ns: &TestNs, ifname: &str) -> u64 {
    link(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing"))["mtu"].as_u64().unwrap()
}

fn kernel_mac(ns: &TestNs, ifname: &str) -> String {
    link(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing"))["address"].as_str().unwrap().to_string()
}

/// Addresses of a link (not link-local) as "addr/prefix", with "tentative"
/// appended while DAD runs.
fn addr_states(ns: &TestNs, ifname: &str) -> Vec<String> {
    let v = ns.ip_json(&["addr", "show", "dev", ifname]).unwrap_or(json!([]));
    let mut out = Vec::new();
    for a in v[0]["addr_info"].as_array().into_iter().flatten() {
        let local = a["local"].as_str().unwrap_or("");
        if local.starts_with("fe80") {
            continue;
        }
        let tentative = if a["tentative"].as_bool() == Some(true) { " tentative" } else { "" };
        out.push(format!("{local}/{}{tentative}", a["prefixlen"]));
    }
    out
}

/// Routes of a netns as comparable text (link-local ones left out), the
/// device named `rename.0` shown as `rename.1`.
fn route_lines(ns: &TestNs, rename: (&str, &str)) -> BTreeSet<String> {
    routes(ns)
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["dst"] != "fe80::/64")
        .map(|r| {
            let dev = r["dev"].as_str().unwrap_or("");
            let dev = if dev == rename.0 { rename.1 } else { dev };
            let s = |k: &str| r[k].as_str().map(|v| format!(" {k} {v}")).unwrap_or_default();
            format!(
                "{}{} dev {dev}{}{}{}",
                r["dst"].as_str().unwrap_or(""),
                s("gateway"),
                s("scope"),
                s("prefsrc"),
                s("protocol")
            )
        })
        .collect()
}

// ----- 1. connectivity, the result, the kernel state -----------------------------

#[test]
fn two_containers_reach_each_other_and_the_gateway_over_ipv4_and_ipv6() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipam": w.ipam(&["10.78.1.0/24", "fd78:1::/64"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-a", &a);
    let rb = w.add(&list, "ctr-b", &b);
    assert_eq!(ra.ips.len(), 2, "one address per family: {ra:?}");
    // No duplicate address detection on either end: nothing is tentative when ADD returns.
    for (ns, dev) in [(&a, "eth0".to_string()), (&w.host, host_veth(&ra))] {
        let states = addr_states(ns, &dev);
        assert!(states.iter().all(|s| !s.ends_with("tentative")), "{dev}: {states:?}");
    }
    for v4 in [true, false] {
        assert!(ping(&a, &gw_of(&ra, v4)), "a -> gateway (v4: {v4})");
        assert!(ping(&a, &ip_of(&rb, v4)), "a -> b (v4: {v4})");
        assert!(ping(&b, &ip_of(&ra, v4)), "b -> a (v4: {v4})");
    }
    // Through the host, not over a shared link: b's packets come from a's gateway hop.
    let trace = a.exec_ok(&["ip", "route", "get", &ip_of(&rb, true)]).unwrap();
    assert!(trace.contains("via 10.78.1.1 dev eth0"), "{trace}");
    assert_eq!(w.host.sysctl("net.ipv4.ip_forward").unwrap(), "1");
    assert_eq!(w.host.sysctl("net.ipv6.conf.all.forwarding").unwrap(), "1");
    w.del(&list, "ctr-a", &a.path_str());
    w.del(&list, "ctr-b", &b.path_str());
    assert!(w.leases().is_empty(), "{:?}", w.leases());
    assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
    assert!(
        w.host_routes_to(&ip_of(&ra, true)).is_empty() && w.host_routes_to(&ip_of(&rb, false)).is_empty()
    );
}

/// The kernel's link watch activates a veth's queues some time after its
/// carrier came on; until then it drops what it is given. ADD returns only
/// when both ends are operationally up, so the first packet gets through.
#[test]
fn both_ends_pass_packets_when_add_returns() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipam": w.ipam(&["10.78.6.0/24"])}));
    let ctrs: Vec<ContainerNs> = (0..8).map(|_| ctr()).collect();
    for (i, c) in ctrs.iter().enumerate() {
        let res = w.add(&list, &format!("ctr-f{i}"), c);
        assert!(ping(c, "10.78.6.1"), "ADD {i}: the first ping to the gateway was lost");
        assert_eq!(link(&w.host, &host_veth(&res)).unwrap()["operstate"], "UP", "ADD {i}: host end");
        assert_eq!(link(c, "eth0").unwrap()["operstate"], "UP", "ADD {i}: container end");
    }
    for (i, c) in ctrs.iter().enumerate() {
        w.del(&list, &format!("ctr-f{i}"), &c.path_str());
    }
}

#[test]
fn result_names_host_veth_and_container_with_kernel_macs_and_the_mtu_on_both_ends() {
    require_root!();
    let w = World::new();
    let dns = json!({"nameservers": ["10.78.2.53"], "search": ["svc.test"]});
    let list = w.list("1.0.0", json!({"mtu": 1400, "dns": dns, "ipam": w.ipam(&["10.78.2.0/24"])}));
    let c = ctr();
    let res = w.add(&list, "ctr-r", &c);
    let names: Vec<&str> = res.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 2, "interfaces = [host veth, container]: {names:?}");
    assert!(names[0].starts_with("veth"), "{names:?}");
    assert_eq!((names[1], res.interfaces[1].sandbox.as_str()), ("eth0", c.path_str().as_str()));
    assert_eq!(res.interfaces[0].sandbox, "");
    assert_eq!(res.interfaces[0].mac, kernel_mac(&w.host, names[0]));
    assert_eq!(res.interfaces[1].mac, kernel_mac(&c, "eth0"));
    assert_eq!(res.ips[0].interface, Some(1));
    assert_eq!(res.ips[0].gateway.map(|g| g.to_string()).as_deref(), Some("10.78.2.1"));
    assert_eq!((mtu(&w.host, names[0]), mtu(&c, "eth0")), (1400, 1400));
    assert_eq!(res.dns.nameservers, ["10.78.2.53"]);
    assert_eq!(res.routes.len(), 1, "IPAM's routes only: {:?}", res.routes);
    w.del(&list, "ctr-r", &c.path_str());
}

#[test]
fn result_is_valid_in_every_version() {
    require_root!();
    let w = World::new();
    for (n, ver) in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let list = w.list(ver, json!({"ipam": w.ipam(&["10.78.3.0/24"])}));
        let c = ctr();
        let cid = format!("ctr-v{n}");
        let rc = RuntimeConf::new(&cid, c.path(), "eth0");
        let req = w.rt.request(&list, 0, None, &rc).unwrap();
        let out = w.rt.invoke("ADD", &list, 0, &req, &rc).unwrap_or_else(|e| panic!("ADD {ver}: {e}"));
        let v: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{ver}: {e}: {}", out.stdout));
        assert_eq!(v["cniVersion"], ver, "{v}");
        let ip =
            addr_states(&c, "eth0").into_iter().find(|a| a.starts_with("10.78.3.")).expect("address set");
        if ver.starts_with("0.1") || ver.starts_with("0.2") {
            assert_eq!(v["ip4"]["ip"], ip.as_str(), "{ver}: {v}");
            assert_eq!(v["ip4"]["gateway"], "10.78.3.1", "{ver}: {v}");
        } else {
            assert_eq!(v["interfaces"].as_array().map(Vec::len), Some(2), "{ver}: {v}");
            assert_eq!(v["interfaces"][1]["sandbox"], c.path_str().as_str(), "{ver}: {v}");
            assert_eq!(
                (&v["ips"][0]["address"], &v["ips"][0]["interface"]),
                (&json!(ip), &json!(1)),
                "{ver}: {v}"
            );
        }
        w.del(&list, &cid, &c.path_str());
    }
    assert!(w.leases().is_empty(), "{:?}", w.leases());
}

/// The reference plugin and ours, from the same request, leave the same
/// addresses and routes on both ends (our IPv6 addresses are never tentative:
/// the reference's are, until DAD ends).
#[test]
fn kernel_state_matches_the_reference() {
    require_root!();
    if !Path::new(REFERENCE).join("ptp").is_file() {
        eprintln!(
            "SKIP: no reference ptp in {REFERENCE} (scripts/deps installs containernetworking-plugins)"
        );
        return;
    }
    let state = |rt: &Runtime, w: &World, net: &str| {
        let ipam = json!({"type": "host-local", "dataDir": w.data.path(),
            "ranges": [[{"subnet": "10.78.4.0/24"}], [{"subnet": "fd78:4::/64"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}, {"dst": "192.168.78.0/24", "gw": "10.78.4.1"}]});
        let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": net,
            "plugins": [{"type": "ptp", "mtu": 1420, "ipam": ipam}]}));
        let c = ctr();
        let res =
            rt.add(&list, "ctr-same", c.path(), "eth0", "", json!({})).unwrap_or_else(|e| panic!("{e}"));
        let veth = host_veth(&res);
        let strip =
            |v: Vec<String>| -> Vec<String> { v.into_iter().map(|a| a.replace(" tentative", "")).collect() };
        let s = (
            strip(addr_states(&c, "eth0")),
            route_lines(&c, ("", "")),
            strip(addr_states(&w.host, &veth)),
            route_lines(&w.host, (&veth, "HOSTVETH")),
            (mtu(&c, "eth0"), mtu(&w.host, &veth)),
            serde_json::to_value(&res.routes).unwrap(),
        );
        rt.del(&list, "ctr-same", c.path(), "eth0", "", json!({})).unwrap_or_else(|e| panic!("{e}"));
        s
    };
    let w = World::new();
    let ours = state(&w.rt, &w, "ours");
    let theirs = state(&w.runtime_of(REFERENCE), &w, "theirs");
    assert_eq!(ours, theirs);
    assert!(ours.1.contains("10.78.4.0/24 gateway 10.78.4.1 dev eth0 prefsrc 10.78.4.2"), "{:?}", ours.1);
    assert!(ours.3.contains("10.78.4.2 dev HOSTVETH scope host"), "{:?}", ours.3);
    assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
}

/// Switching implementations on a running node: each one's CHECK and DEL on
/// what the other made.
#[test]
fn the_reference_and_ours_check_and_delete_each_others_attachments() {
    require_root!();
    if !Path::new(REFERENCE).join("ptp").is_file() {
        eprintln!("SKIP: no reference ptp in {REFERENCE}");
        return;
    }
    let w = World::new();
    let theirs = w.runtime_of(REFERENCE);
    let list = w.list("1.0.0", json!({"ipam": w.ipam(&["10.78.5.0/24", "fd78:5::/64"])}));
    for (maker, checker) in [(&theirs, &w.rt), (&w.rt, &theirs)] {
        let c = ctr();
        maker.add(&list, "ctr-x", c.path(), "eth0", "", json!({})).unwrap_or_else(|e| panic!("ADD: {e}"));
        checker
            .check(&list, "ctr-x", c.path(), "eth0", "", json!({}))
            .unwrap_or_else(|e| panic!("CHECK: {e}"));
        checker.del(&list, "ctr-x", c.path(), "eth0", "", json!({})).unwrap_or_else(|e| panic!("DEL: {e}"));
        assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
        assert_eq!(link_names(&c), ["lo"]);
        assert!(w.leases().is_empty(), "{:?}", w.leases());
    }
}

// ----- 2. masquerade -----------------------------------------------------------

/// A UDP listener in `ns` (python3) printing the source address of the first
/// datagram on port 9999. Killed (by its own PID) when dropped.
struct UdpListener {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl UdpListener {
    fn start(ns: &TestNs, v6: bool) -> UdpListener {
        let (family, any) = if v6 { ("AF_INET6", "::") } else { ("AF_INET", "0.0.0.0") };
        let py = format!(
            "import socket\ns = socket.socket(socket.{family}, socket.SOCK_DGRAM)\ns.bind(('{any}', 9999))\n\
             s.settimeout(5)\nprint('ready', flush=True)\ntry:\n    _, a = s.recvfrom(100)\n    print(a[0], flush=True)\n\
             except socket.timeout:\n    print('timeout', flush=True)\n"
        );
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3", "-c", &py])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 listener");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("ready"), "listener did not start");
        UdpListener { child, lines }
    }

    fn source(mut self) -> String {
        let line = self.lines.next().and_then(|l| l.ok()).unwrap_or_default();
        let _ = self.child.wait();
        line
    }
}

impl Drop for UdpListener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn send_udp(from: &TestNs, dst: &str) {
    let dst = if dst.contains(':') { format!("[{dst}]:9999") } else { format!("{dst}:9999") };
    from.run(move || {
        let any = if dst.starts_with('[') { "[::]:0" } else { "0.0.0.0:0" };
        let s = UdpSocket::bind(any).expect("udp socket");
        for _ in 0..10 {
            let _ = s.send_to(b"hello", &dst);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .expect("run in netns");
}

/// An "outside" netns linked to the host by a veth: host 203.0.113.1/24 and
/// 2001:db8:78::1/64 on `up0`, outside .2 and ::2; no route back to the containers.
fn outside_peer(w: &World) -> TestNs {
    let out = TestNs::with_lo().expect("outside netns");
    veth(&w.host, "up0", &out, "eth0").unwrap();
    w.host.ip(&["addr", "add", "203.0.113.1/24", "dev", "up0"]).unwrap();
    w.host.ip(&["addr", "add", "2001:db8:78::1/64", "dev", "up0", "nodad"]).unwrap();
    out.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]).unwrap();
    out.ip(&["addr", "add", "2001:db8:78::2/64", "dev", "eth0", "nodad"]).unwrap();
    // Without masquerade the datagram comes from an address the outside cannot
    // route back to; loose reverse-path filtering lets the listener see it.
    for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth0.rp_filter"] {
        out.set_sysctl(key, "0").unwrap();
    }
    out
}

/// The source addresses (IPv4, IPv6) the outside peer sees for UDP from a
/// container, and the container's own.
fn sources_seen_outside(w: &World, ip_masq: bool) -> ((String, String), (String, String)) {
    let out = outside_peer(w);
    let list =
        w.list("1.0.0", json!({"ipMasq": ip_masq, "ipam": w.ipam(&["10.78.20.0/24", "fd78:20::/64"])}));
    let c = ctr();
    let res = w.add(&list, "ctr-m", &c);
    let mut seen = Vec::new();
    for (v6, dst) in [(false, "203.0.113.2"), (true, "2001:db8:78::2")] {
        let listener = UdpListener::start(&out, v6);
        send_udp(&c, dst);
        seen.push(listener.source());
    }
    w.del(&list, "ctr-m", &c.path_str());
    ((seen[0].clone(), seen[1].clone()), (ip_of(&res, true), ip_of(&res, false)))
}

#[test]
fn ipmasq_outside_peer_sees_the_host_address() {
    require_root!();
    let w = World::new();
    let (seen, _) = sources_seen_outside(&w, true);
    assert_eq!(seen, ("203.0.113.1".into(), "2001:db8:78::1".into()), "masqueraded to the host's addresses");
    assert!(nft_is_empty(&w.host), "masquerade state gone after DEL:\n{}", nft_text(&w.host));
}

#[test]
fn without_ipmasq_outside_peer_sees_the_container_address() {
    require_root!();
    let w = World::new();
    let (seen, own) = sources_seen_outside(&w, false);
    assert_eq!(seen, own, "no masquerade: the container's own addresses");
    assert!(nft_is_empty(&w.host), "no nf_tables state without ipMasq:\n{}", nft_text(&w.host));
}

#[test]
fn containers_of_one_subnet_reach_each_other_unmasqueraded() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.21.0/24"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-a", &a);
    let rb = w.add(&list, "ctr-b", &b);
    let listener = UdpListener::start(&b, false);
    send_udp(&a, &ip_of(&rb, true));
    assert_eq!(listener.source(), ip_of(&ra, true), "traffic inside the subnet keeps its source");
    w.del(&list, "ctr-a", &a.path_str());
    w.del(&list, "ctr-b", &b.path_str());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

// ----- 3. failed ADDs leave nothing --------------------------------------------

#[test]
fn bad_netns_and_missing_ipam_create_nothing() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.30.0/24"])}));
    for bad in ["/run/netns/cni-t-does-not-exist", "/tmp"] {
        let e = w.add_err(&list, "ctr-badns", bad);
        assert!(e.msg().contains("netns") || e.msg().contains("namespace"), "{bad}: {e}");
    }
    let no_ipam = w.list("1.0.0", json!({"ipMasq": true}));
    let c = ctr();
    let e = w.add_err(&no_ipam, "ctr-noipam", &c.path_str());
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(w.host_veths().is_empty() && w.leases().is_empty() && nft_is_empty(&w.host));
    assert_eq!(link_names(&c), ["lo"]);
}

/// static IPAM with an address and no gateway: refused after the veth exists.
#[test]
fn an_address_without_a_gateway_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    let w = World::new();
    let list = w.list(
        "1.0.0",
        json!({"ipMasq": true, "ipam": {"type": "static", "addresses": [{"address": "10.78.31.5/24"}]}}),
    );
    let c = ctr();
    let e = w.add_err(&list, "ctr-nogw", &c.path_str());
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(e.msg().contains("IPAM gave 10.78.31.5/24 no gateway"), "{e}");
    assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
    assert_eq!(link_names(&c), ["lo"]);
    assert!(nft_is_empty(&w.host));
    // With one it works.
    let list = w.list(
        "1.0.0",
        json!({"ipam": {"type": "static", "addresses": [{"address": "10.78.31.5/24", "gateway": "10.78.31.1"}]}}),
    );
    w.add(&list, "ctr-gw", &c);
    assert!(ping(&c, "10.78.31.1"));
    w.del(&list, "ctr-gw", &c.path_str());
}

/// The last step fails (the masquerade: its set in our table was made by
/// someone else with another type): both ends, the host's routes to the
/// container, the lease and every element go.
#[test]
fn a_failure_at_the_last_step_leaves_no_veth_route_lease_or_element() {
    require_root!();
    let w = World::new();
    let set = format!("m4_{NET}");
    let nft = format!("add table inet cnirs_ptp\nadd set inet cnirs_ptp {set} {{ type ipv6_addr; }}\n");
    let out = w.host.spawn(&["nft", "-f", "-"], nft.as_bytes()).unwrap();
    assert!(out.success(), "{}", out.stderr);
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.32.0/24"])}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-late", &c.path_str());
    assert!(e.msg().contains("masquerade"), "{e}");
    assert!(w.host_veths().is_empty(), "{:?}", w.host_veths());
    assert!(w.host_routes_to("10.78.32.2").is_empty(), "{}", routes(&w.host));
    assert_eq!(link_names(&c), ["lo"]);
    assert!(w.leases().is_empty(), "{:?}", w.leases());
    assert!(nft_elems(&w.host).is_empty(), "{}", nft_text(&w.host));
}

/// A route the container cannot take (a gateway off its link): after the
/// veth, the lease and the container's addresses.
#[test]
fn a_failure_in_the_container_leaves_nothing() {
    require_root!();
    let w = World::new();
    let ipam = json!({"type": "host-local", "dataDir": w.data.path(), "ranges": [[{"subnet": "10.78.33.0/24"}]],
        "routes": [{"dst": "192.168.0.0/16", "gw": "172.31.0.1"}]});
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": ipam}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-route", &c.path_str());
    assert!(e.msg().contains("192.168.0.0/16"), "{e}");
    assert!(w.host_veths().is_empty() && w.leases().is_empty() && nft_is_empty(&w.host));
    assert_eq!(link_names(&c), ["lo"]);
}

#[test]
fn exhausted_range_leaves_no_extra_veth() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipam": w.ipam(&["10.78.34.0/30"])}));
    let (a, b) = (ctr(), ctr());
    w.add(&list, "ctr-first", &a);
    let e = w.add_err(&list, "ctr-second", &b.path_str());
    assert!(e.msg().contains("no IP addresses available") || e.msg().contains("exhausted"), "{e}");
    assert_eq!(w.host_veths().len(), 1);
    assert_eq!(link_names(&b), ["lo"]);
    assert_eq!(w.leases(), ["10.78.34.2"]);
    w.del(&list, "ctr-first", &a.path_str());
}

// ----- 4. DEL -------------------------------------------------------------------

/// ADD with masquerade (dual stack), then DEL without a netns: the runtime
/// gives none (the container's netns still lives) or its path is gone.
fn del_without_the_netns(netns_alive: bool, keep_prev: bool) {
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.40.0/24", "fd78:40::/64"])}));
    let c = ctr();
    let res = w.add(&list, "ctr-gone", &c);
    let (v4, v6) = (ip_of(&res, true), ip_of(&res, false));
    assert!(!w.host_routes_to(&v4).is_empty() && !w.host_routes_to(&v6).is_empty());
    assert_eq!(w.nft_elems_with("ctr-gone").len(), 2, "one per address:\n{}", nft_text(&w.host));
    if !keep_prev {
        std::fs::remove_file(w.rt.cache_path(NET, "ctr-gone", "eth0")).unwrap();
    }
    let path = c.path_str();
    let netns = if netns_alive {
        ""
    } else {
        drop(c);
        path.as_str()
    };
    w.del(&list, "ctr-gone", netns);
    assert!(w.host_veths().is_empty(), "host end gone: {:?}", w.host_veths());
    assert!(w.host_routes_to(&v4).is_empty() && w.host_routes_to(&v6).is_empty(), "{}", routes(&w.host));
    assert!(nft_is_empty(&w.host), "masquerade gone:\n{}", nft_text(&w.host));
    assert!(w.leases().is_empty(), "{:?}", w.leases());
    w.del(&list, "ctr-gone", netns); // twice is fine
}

#[test]
fn del_without_netns_while_it_lives_removes_the_host_end_routes_and_masquerade() {
    require_root!();
    del_without_the_netns(true, true);
    del_without_the_netns(true, false);
}

#[test]
fn del_with_a_gone_netns_removes_routes_masquerade_and_lease() {
    require_root!();
    del_without_the_netns(false, true);
    del_without_the_netns(false, false);
}

#[test]
fn del_twice_and_with_a_config_that_dropped_ipmasq() {
    require_root!();
    let w = World::new();
    let with = w.list("0.4.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.41.0/24"])}));
    let without = w.list("0.4.0", json!({"ipam": w.ipam(&["10.78.41.0/24"])}));
    let c = ctr();
    w.add(&with, "ctr-twice", &c);
    w.del(&without, "ctr-twice", &c.path_str());
    w.del(&without, "ctr-twice", &c.path_str());
    assert_eq!(link_names(&c), ["lo"]);
    assert!(w.leases().is_empty() && nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

#[test]
fn del_leaves_the_other_containers_alone() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.42.0/24"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-a", &a);
    w.add(&list, "ctr-b", &b);
    w.del(&list, "ctr-b", ""); // no netns: found by its alias, not a's
    assert_eq!(w.host_veths(), [host_veth(&ra)]);
    assert!(ping(&a, "10.78.42.1"));
    w.check(&list, "ctr-a", &a).unwrap_or_else(|e| panic!("a is intact: {e}"));
    w.del(&list, "ctr-a", &a.path_str());
}

// ----- 5. CHECK, GC, STATUS -----------------------------------------------------

fn checked(w: &World, cid: &str, n: u8) -> (NetConfList, ContainerNs, CniResult) {
    let list = w.list(
        "1.1.0",
        json!({"ipMasq": true, "mtu": 1400, "ipam": w.ipam(&[&format!("10.78.{n}.0/24"), &format!("fd78:{n}::/64")])}),
    );
    let c = ctr();
    let res = w.add(&list, cid, &c);
    w.check(&list, cid, &c).unwrap_or_else(|e| panic!("CHECK right after ADD: {e}"));
    (list, c, res)
}

#[test]
fn check_fails_when_the_host_route_to_the_container_is_gone() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked(&w, "ctr-ck1", 50);
    w.host.ip(&["-6", "route", "del", &ip_of(&res, false), "dev", &host_veth(&res)]).unwrap();
    let e = w.check(&list, "ctr-ck1", &c).expect_err("CHECK must notice the missing host route");
    assert!(e.msg().contains(&format!("no route to {}", ip_of(&res, false))), "{e}");
    w.del(&list, "ctr-ck1", &c.path_str());
}

#[test]
fn check_fails_when_the_gateway_leaves_the_host_end() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked(&w, "ctr-ck2", 51);
    w.host.ip(&["addr", "del", "10.78.51.1/32", "dev", &host_veth(&res)]).unwrap();
    let e = w.check(&list, "ctr-ck2", &c).expect_err("CHECK must notice the missing gateway");
    assert!(e.msg().contains("lacks the gateway 10.78.51.1"), "{e}");
    w.del(&list, "ctr-ck2", &c.path_str());
}

#[test]
fn check_fails_when_the_container_address_or_route_is_gone() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked(&w, "ctr-ck3", 52);
    c.ip(&["-6", "route", "del", "default"]).unwrap();
    let e = w.check(&list, "ctr-ck3", &c).expect_err("CHECK must notice the missing route");
    assert!(e.msg().contains("route to ::/0"), "{e}");
    c.ip(&["addr", "del", &res.ips[0].address.to_string(), "dev", "eth0"]).unwrap();
    let e = w.check(&list, "ctr-ck3", &c).expect_err("CHECK must notice the missing address");
    assert!(e.msg().contains(&res.ips[0].address.to_string()), "{e}");
    w.del(&list, "ctr-ck3", &c.path_str());
}

#[test]
fn check_fails_when_the_masquerade_element_is_deleted() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked(&w, "ctr-ck4", 53);
    let ip = ip_of(&res, true);
    let set = format!("m4_{NET}");
    let out = w
        .host
        .spawn(&["nft", "delete", "element", "inet", "cnirs_ptp", &set, &format!("{{ {ip} }}")], b"")
        .unwrap();
    assert!(out.success(), "nft delete element: {}", out.stderr);
    let e = w.check(&list, "ctr-ck4", &c).expect_err("CHECK must notice the missing masquerade");
    assert!(e.msg().contains("masquerade"), "{e}");
    w.del(&list, "ctr-ck4", &c.path_str());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

#[test]
fn gc_removes_host_ends_masquerade_and_leases_of_attachments_not_valid() {
    require_root!();
    let w = World::new();
    let list = w.list("1.1.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.54.0/24"])}));
    let (keep, stale) = (ctr(), ctr());
    let rk = w.add(&list, "ctr-keep", &keep);
    let rs = w.add(&list, "ctr-stale", &stale);
    // The runtime forgot the stale one (no cache entry): only the plugins' GC can clean it.
    std::fs::remove_file(w.rt.cache_path(NET, "ctr-stale", "eth0")).unwrap();
    w.rt.gc(&list, &[("ctr-keep", "eth0")]).unwrap_or_else(|e| panic!("GC: {e:?}"));
    assert_eq!(w.leases(), [ip_of(&rk, true)]);
    assert_eq!(w.host_veths(), [host_veth(&rk)], "the stale host end is gone");
    assert!(w.host_routes_to(&ip_of(&rs, true)).is_empty());
    assert_eq!(link_names(&stale), ["lo"], "its container end with it");
    assert_eq!(nft_elems(&w.host).len(), 1, "{}", nft_text(&w.host));
    w.check(&list, "ctr-keep", &keep).unwrap_or_else(|e| panic!("the valid attachment is intact: {e}"));
    w.del(&list, "ctr-keep", &keep.path_str());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

#[test]
fn status_is_ok_with_a_usable_data_dir_and_50_without() {
    require_root!();
    let w = World::new();
    w.rt.status(&w.list("1.1.0", json!({"ipam": w.ipam(&["10.78.55.0/24"])})))
        .unwrap_or_else(|e| panic!("{e}"));
    let file = w.data.join("a-file");
    std::fs::write(&file, "").unwrap();
    let ipam =
        json!({"type": "host-local", "dataDir": file.join("sub"), "ranges": [[{"subnet": "10.78.55.0/24"}]]});
    let e = w.rt.status(&w.list("1.1.0", json!({"ipam": ipam}))).expect_err("STATUS must fail");
    assert_eq!(e.code(), Some(50), "{e}");
}

// ----- 6. concurrency and the configurations nodes use --------------------------

#[test]
fn parallel_adds_then_parallel_dels() {
    require_root!();
    const N: usize = 16;
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipMasq": true, "ipam": w.ipam(&["10.78.60.0/24", "fd78:60::/64"])}));
    let ctrs: Vec<ContainerNs> = (0..N).map(|_| ctr()).collect();
    let results: Vec<Result<CniResult, InvokeError>> = std::thread::scope(|s| {
        let hs: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (w, list) = (&w, &list);
                s.spawn(move || w.rt.add(list, &format!("ctr-p{i}"), c.path(), "eth0", "", json!({})))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let ips: HashSet<String> = results.iter().map(|r| ip_of(r.as_ref().unwrap(), true)).collect();
    assert_eq!((ips.len(), w.host_veths().len(), nft_elems(&w.host).len()), (N, N, 2 * N));
    // The writers of ip_forward took turns, so the kernel turned forwarding on
    // for every interface, those to come too (racing, it could do so for none).
    assert_eq!(w.host.sysctl("net.ipv4.conf.default.forwarding").unwrap(), "1");
    let (first, last) = (results[0].as_ref().unwrap(), results[N - 1].as_ref().unwrap());
    for (from, to, v4) in [(0, last, true), (N - 1, first, false)] {
        let dst = ip_of(to, v4);
        assert!(
            ping(&ctrs[from], &dst),
            "{from} -> {dst}: host {} {}; container {}",
            w.host.ip(&["neigh"]).unwrap_or_default(),
            w.host.ip(&["-6", "addr"]).unwrap_or_default(),
            ctrs[from].ip(&["neigh"]).unwrap_or_default()
        );
    }
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let (w, list) = (&w, &list);
            s.spawn(move || w.del(list, &format!("ctr-p{i}"), &c.path_str()));
        }
    });
    assert!(w.host_veths().is_empty() && w.leases().is_empty(), "{:?}", w.leases());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

/// On a host whose ip_forward reads 1 while new interfaces start with
/// forwarding off (what the parallel test above once met), each host end the
/// ADD makes must still forward.
#[test]
fn containers_reach_each_other_where_new_interfaces_start_without_forwarding() {
    require_root!();
    let w = World::new();
    w.host.forwarding_on_but_off_for_new_interfaces().unwrap();
    let list = w.list("1.0.0", json!({"ipam": w.ipam(&["10.78.61.0/24"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-a", &a);
    let rb = w.add(&list, "ctr-b", &b);
    assert!(ping(&a, &ip_of(&rb, true)), "a -> b");
    assert!(ping(&b, &ip_of(&ra, true)), "b -> a");
    w.del(&list, "ctr-a", &a.path_str());
    w.del(&list, "ctr-b", &b.path_str());
    assert!(w.host_veths().is_empty() && w.leases().is_empty(), "{:?}", w.leases());
}

/// kind's node conflist (conf-examples/kubernetes/10-kindnet.conflist:
/// cniVersion 0.3.1, ptp without masquerade, MTU, host-local with its own
/// dataDir, then portmap), only the dataDir pointed at our temp dir; and the
/// same list dual-stack, as kindnet writes it for a dual-stack cluster.
#[test]
fn kinds_node_conflist_works_unmodified_single_and_dual_stack() {
    require_root!();
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf-examples/kubernetes/10-kindnet.conflist");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!((v["cniVersion"].as_str(), v["plugins"][0]["type"].as_str()), (Some("0.3.1"), Some("ptp")));
    let w = World::new();
    v["plugins"][0]["ipam"]["dataDir"] = json!(w.data.path());
    let mut dual = v.clone();
    dual["plugins"][0]["ipam"]["ranges"] =
        json!([[{"subnet": "10.244.0.0/24"}], [{"subnet": "fd00:10:244::/64"}]]);
    dual["plugins"][0]["ipam"]["routes"] = json!([{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]);
    for (stack, v) in [("single", v), ("dual", dual)] {
        let list = conflist_value(&v);
        let (a, b) = (ctr(), ctr());
        let k8s = "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=p;K8S_POD_INFRA_CONTAINER_ID=x";
        let ports = json!({"portMappings": [{"hostPort": 18080, "containerPort": 80, "protocol": "tcp"}]});
        let ra_conf = RuntimeConf::new("kind-a", a.path(), "eth0").cni_args(k8s).cap_args(ports);
        let rb_conf = RuntimeConf::new("kind-b", b.path(), "eth0").cni_args(k8s);
        let ra = w.rt.add_rt(&list, &ra_conf).unwrap_or_else(|e| panic!("{stack}: ADD: {e}"));
        let rb = w.rt.add_rt(&list, &rb_conf).unwrap_or_else(|e| panic!("{stack}: ADD: {e}"));
        assert_eq!(ra.cni_version, "0.3.1");
        assert!(has_route(&a, "default"), "{stack}: {}", routes(&a));
        assert_eq!((mtu(&a, "eth0"), mtu(&w.host, &host_veth(&ra))), (1500, 1500));
        assert!(ping(&a, &ip_of(&rb, true)) && ping(&b, "10.244.0.1"), "{stack}");
        if stack == "dual" {
            assert!(ping(&a, &ip_of(&rb, false)), "IPv6 pod to pod");
        }
        assert!(nft_elems(&w.host).iter().any(|e| e.contains("18080")), "portmap chained on ptp's result");
        w.rt.del_rt(&list, &ra_conf).unwrap_or_else(|e| panic!("{stack}: DEL: {e}"));
        w.rt.del_rt(&list, &rb_conf).unwrap_or_else(|e| panic!("{stack}: DEL: {e}"));
        assert!(w.host_veths().is_empty() && w.leases_of("kindnet").is_empty(), "{stack}");
        assert!(nft_elems(&w.host).is_empty(), "{stack}: {}", nft_text(&w.host));
    }
}
