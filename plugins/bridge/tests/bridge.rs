//! Root tests of the bridge plugin: the built binaries (`cargo build
//! --workspace --bins` first) driven by the harness' libcni-like runtime, with
//! our host-local as IPAM on a temp data dir. Plugins run in a fresh "host"
//! netns per test; every container is its own netns; every assertion reads
//! kernel state (`ip -j`, `nft -j`) or real packets. Each test skips itself
//! when not root.

// `InvokeError` carries everything a failing test prints; its size on the
// error path of a test does not matter.
#![allow(clippy::result_large_err)]

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_harness::*;

// ----- helpers ------------------------------------------------------------------

/// The network name of every test (each test has its own host netns and data dir).
const NET: &str = "brtest";
/// The bridge of every test (inside the test's host netns).
const BR: &str = "cnibr0";

/// One test's world: the host netns plugins run in, a runtime with its cache,
/// and host-local's data dir.
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

    /// A host-local IPAM section: one range set per subnet, leases in our data dir.
    fn ipam(&self, subnets: &[&str]) -> Value {
        let ranges: Vec<Value> = subnets.iter().map(|s| json!([{ "subnet": s }])).collect();
        json!({"type": "host-local", "dataDir": self.data.path(), "ranges": ranges})
    }

    /// A one-plugin list: `{"type":"bridge","bridge":BR}` plus `fields`.
    fn list(&self, version: &str, fields: Value) -> NetConfList {
        let mut plugin = json!({"type": "bridge", "bridge": BR});
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

    /// host-local lease files (named by an IP) of our network.
    fn leases(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.data.join(NET))
            .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.retain(|n| n.parse::<std::net::IpAddr>().is_ok());
        v.sort();
        v
    }

    /// Names of the host's links of a kind (`bridge`, `veth`).
    fn host_links_of_kind(&self, kind: &str) -> Vec<String> {
        let v = self.host.ip_json(&["-d", "link", "show", "type", kind]).expect("ip link show type");
        v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str().map(str::to_string)).collect()
    }

    fn host_veths(&self) -> Vec<String> {
        self.host_links_of_kind("veth")
    }

    /// Ports of our bridge.
    fn ports(&self) -> Vec<String> {
        let v = self.host.ip_json(&["link", "show", "master", BR]).unwrap_or(json!([]));
        v.as_array().into_iter().flatten().filter_map(|l| l["ifname"].as_str().map(str::to_string)).collect()
    }

    /// Every set/map element in the host's ruleset whose JSON mentions `needle`
    /// (a container ID or an address).
    fn nft_elems_with(&self, needle: &str) -> Vec<String> {
        nft_elems(&self.host).into_iter().filter(|e| e.contains(needle)).collect()
    }
}

/// Every element of every set and map of `ns`'s ruleset, as JSON text.
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

/// The first address of `res` of the family, without prefix.
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

/// The host end of the container's veth, named in the result.
fn host_veth(res: &CniResult) -> String {
    res.interfaces.get(1).map(|i| i.name.clone()).expect("result names the host veth")
}

/// The MAC address the kernel shows for `ifname` in `ns`.
fn kernel_mac(ns: &TestNs, ifname: &str) -> String {
    link(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing"))["address"].as_str().unwrap().to_string()
}

fn flags(ns: &TestNs, ifname: &str) -> Vec<String> {
    link(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing"))["flags"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str().map(str::to_string))
        .collect()
}

fn mtu(ns: &TestNs, ifname: &str) -> u64 {
    link(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing"))["mtu"].as_u64().unwrap()
}

/// Bridge-port details of a host veth (`info_slave_data`).
fn port_data(ns: &TestNs, ifname: &str) -> Value {
    link(ns, ifname).unwrap_or_else(|| panic!("{ifname} missing"))["linkinfo"]["info_slave_data"].clone()
}

/// Pings that should keep failing: none of `n` tries succeeds.
fn never_pings(from: &TestNs, ip: &str, n: usize) -> bool {
    (0..n).all(|_| !ping_timeout(from, ip, Duration::from_millis(500)))
}

/// Pings that may need a moment (ARP, gratuitous ARP): succeeds within 5 s.
fn pings_soon(from: &TestNs, ip: &str) -> bool {
    wait_until(Duration::from_secs(5), || ping(from, ip))
}

/// A UDP listener in `ns` (python3) that prints the source address of the
/// first datagram on port 9999. Kill it (by its own PID) when done.
struct UdpListener {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl UdpListener {
    fn start(ns: &TestNs) -> UdpListener {
        const PY: &str = r#"
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 9999))
s.settimeout(5)
print("ready", flush=True)
try:
    _, a = s.recvfrom(100)
    print(a[0], flush=True)
except socket.timeout:
    print("timeout", flush=True)
"#;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns.name(), "python3", "-c", PY])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 listener");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().and_then(|l| l.ok()).as_deref(), Some("ready"), "listener did not start");
        UdpListener { child, lines }
    }

    /// The source address of the first datagram (or "timeout").
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

/// Send a few UDP datagrams from inside `from` to `dst:9999`.
fn send_udp(from: &TestNs, dst: &str) {
    let dst = format!("{dst}:9999");
    from.run(move || {
        let s = UdpSocket::bind("0.0.0.0:0").expect("udp socket");
        for _ in 0..10 {
            let _ = s.send_to(b"hello", &dst);
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .expect("run in netns");
}

/// An "outside" netns linked to the host by a veth: host 203.0.113.1/24 on
/// `up0`, outside 203.0.113.2/24; the outside has no route to the containers.
fn outside_peer(w: &World) -> TestNs {
    let out = TestNs::with_lo().expect("outside netns");
    veth(&w.host, "up0", &out, "eth0").unwrap();
    w.host.ip(&["addr", "add", "203.0.113.1/24", "dev", "up0"]).unwrap();
    out.ip(&["addr", "add", "203.0.113.2/24", "dev", "eth0"]).unwrap();
    // Without masquerade the datagram arrives from an address the outside cannot
    // route back to; loose reverse-path filtering lets the listener see it.
    for key in ["net.ipv4.conf.all.rp_filter", "net.ipv4.conf.eth0.rp_filter"] {
        out.set_sysctl(key, "0").unwrap();
    }
    out
}

/// What source address the outside peer sees for UDP from a container.
fn source_seen_outside(w: &World, ip_masq: bool) -> (String, String) {
    let out = outside_peer(w);
    let list = w.list(
        "1.0.0",
        json!({"isDefaultGateway": true, "ipMasq": ip_masq, "ipam": w.ipam(&["10.77.20.0/24"])}),
    );
    let c = ctr();
    let res = w.add(&list, "ctr-m", &c);
    let listener = UdpListener::start(&out);
    send_udp(&c, "203.0.113.2");
    let seen = listener.source();
    w.del(&list, "ctr-m", &c.path_str());
    (seen, ip_of(&res, true))
}

// ----- 1. connectivity and the result ------------------------------------------

#[test]
fn two_containers_ping_each_other_and_the_gateway() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": w.ipam(&["10.77.1.0/24"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-a", &a);
    let rb = w.add(&list, "ctr-b", &b);
    let (ipa, ipb, gw) = (ip_of(&ra, true), ip_of(&rb, true), gw_of(&ra, true));
    assert_eq!(gw, "10.77.1.1");
    assert!(addrs(&w.host, BR).contains(&"10.77.1.1/24".to_string()), "gateway on the bridge");
    assert_eq!(w.host.sysctl("net.ipv4.ip_forward").unwrap(), "1", "isGateway enables forwarding");
    assert!(ping(&a, &gw), "a -> gateway");
    assert!(ping(&b, &gw), "b -> gateway");
    assert!(ping(&a, &ipb), "a -> b");
    assert!(ping(&b, &ipa), "b -> a");
    w.del(&list, "ctr-a", &a.path_str());
    w.del(&list, "ctr-b", &b.path_str());
    assert!(w.leases().is_empty(), "leases released: {:?}", w.leases());
    assert!(w.host_veths().is_empty(), "host veths gone: {:?}", w.host_veths());
}

/// `podman restart`: DEL, then ADD again with the same address and a new MAC.
/// A neighbour that still has the old MAC in its ARP cache (REACHABLE, so the
/// kernel will not re-check it for up to ~45 s) must learn the new one from the
/// plugin's gratuitous ARP at once, as with the reference plugin.
#[test]
fn a_neighbour_with_a_stale_arp_entry_reaches_a_re_added_container_at_once() {
    require_root!();
    let w = World::new();
    let ipam = json!({"type": "host-local", "dataDir": w.data.path(),
        "ranges": [[{"subnet": "10.77.9.0/24", "rangeStart": "10.77.9.10", "rangeEnd": "10.77.9.11"}]]});
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": ipam}));
    let (a, b) = (ctr(), ctr());
    w.add(&list, "ctr-a", &a);
    let ipb = ip_of(&w.add(&list, "ctr-b", &b), true);
    assert!(ping(&a, &ipb), "a -> b");
    w.del(&list, "ctr-b", &b.path_str());
    // The restarted container: a new netns, a new veth (new MAC), the same address.
    let b2 = ctr();
    let res = w.add(&list, "ctr-b", &b2);
    assert_eq!(ip_of(&res, true), ipb, "the only free address again");
    assert!(
        ping_timeout(&a, &ipb, Duration::from_secs(2)),
        "a -> restarted b: a's ARP cache still has the old MAC: {}",
        a.ip(&["neigh", "show", &ipb]).unwrap_or_default()
    );
    w.del(&list, "ctr-a", &a.path_str());
    w.del(&list, "ctr-b", &b2.path_str());
}

#[test]
fn result_names_bridge_host_veth_and_container_with_kernel_macs() {
    require_root!();
    let w = World::new();
    let ipam = json!({"type": "host-local", "dataDir": w.data.path(),
        "ranges": [[{"subnet": "10.77.2.0/24"}]], "routes": [{"dst": "192.168.50.0/24"}]});
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": ipam}));
    let c = ctr();
    let res = w.add(&list, "ctr-r", &c);

    let names: Vec<&str> = res.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 3, "interfaces = [bridge, host veth, container]: {names:?}");
    assert_eq!(names[0], BR);
    assert!(names[1].starts_with("veth"), "host veth name {:?}", names[1]);
    assert_eq!(names[2], "eth0");
    assert_eq!(res.interfaces[0].sandbox, "", "bridge has no sandbox");
    assert_eq!(res.interfaces[1].sandbox, "", "host veth has no sandbox");
    assert_eq!(res.interfaces[2].sandbox, c.path_str(), "container interface sandbox");

    assert_eq!(res.interfaces[0].mac, kernel_mac(&w.host, BR), "bridge MAC");
    assert_eq!(res.interfaces[1].mac, kernel_mac(&w.host, names[1]), "host veth MAC");
    assert_eq!(res.interfaces[2].mac, kernel_mac(&c, "eth0"), "container MAC");
    assert_eq!(link(&w.host, names[1]).unwrap()["master"], BR, "host veth is a bridge port");

    assert_eq!(res.ips.len(), 1);
    for ip in &res.ips {
        assert_eq!(ip.interface, Some(2), "every ip points at the container interface");
    }
    assert_eq!(res.ips[0].gateway.map(|g| g.to_string()).as_deref(), Some("10.77.2.1"));
    assert!(addrs(&c, "eth0").contains(&res.ips[0].address.to_string()), "address in the kernel");
    assert_eq!(res.routes.len(), 1, "IPAM routes pass through: {:?}", res.routes);
    assert_eq!(res.routes[0].dst.to_string(), "192.168.50.0/24");
    let r = routes(&c);
    let route =
        r.as_array().unwrap().iter().find(|r| r["dst"] == "192.168.50.0/24").expect("route installed");
    assert_eq!(route["gateway"], "10.77.2.1", "route through the gateway");
    assert!(flags(&c, "eth0").contains(&"UP".to_string()), "container interface up");
    w.del(&list, "ctr-r", &c.path_str());
}

#[test]
fn result_is_valid_in_every_version() {
    require_root!();
    let w = World::new();
    for (n, ver) in ["0.2.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let list = w.list(ver, json!({"isGateway": true, "ipam": w.ipam(&["10.77.3.0/24"])}));
        let c = ctr();
        let cid = format!("ctr-v{n}");
        let rc = RuntimeConf::new(&cid, c.path(), "eth0");
        let req = w.rt.request(&list, 0, None, &rc).unwrap();
        let out = w.rt.invoke("ADD", &list, 0, &req, &rc).unwrap_or_else(|e| panic!("ADD {ver}: {e}"));
        let v: Value =
            serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{ver}: {e}: {}", out.stdout));
        assert_eq!(v["cniVersion"], ver, "{v}");
        let ip = addrs(&c, "eth0").into_iter().find(|a| a.starts_with("10.77.3.")).expect("address set");
        if ver == "0.2.0" {
            assert_eq!(v["ip4"]["ip"], ip.as_str(), "0.2.0 ip4.ip: {v}");
            assert_eq!(v["ip4"]["gateway"], "10.77.3.1", "0.2.0 ip4.gateway: {v}");
            assert!(v.get("interfaces").is_none() && v.get("ips").is_none(), "no 0.3 keys in 0.2.0: {v}");
        } else {
            assert_eq!(v["interfaces"].as_array().map(Vec::len), Some(3), "{ver}: {v}");
            assert_eq!(v["interfaces"][2]["sandbox"], c.path_str().as_str(), "{ver}: {v}");
            assert_eq!(v["ips"][0]["address"], ip.as_str(), "{ver}: {v}");
            assert_eq!(v["ips"][0]["interface"], 2, "{ver}: {v}");
            if ver.starts_with("0.") {
                assert_eq!(v["ips"][0]["version"], "4", "{ver} ips carry version: {v}");
            } else {
                assert!(v["ips"][0].get("version").is_none(), "{ver} ips have no version: {v}");
            }
        }
        w.del(&list, &cid, &c.path_str());
    }
    assert!(w.leases().is_empty(), "{:?}", w.leases());
}

// ----- 2. masquerade -----------------------------------------------------------

#[test]
fn ipmasq_outside_peer_sees_the_host_address() {
    require_root!();
    let w = World::new();
    let (seen, _) = source_seen_outside(&w, true);
    assert_eq!(seen, "203.0.113.1", "masqueraded to the host's address on the way out");
    assert!(nft_is_empty(&w.host), "masquerade state gone after DEL:\n{}", nft_text(&w.host));
}

#[test]
fn without_ipmasq_outside_peer_sees_the_container_address() {
    require_root!();
    let w = World::new();
    let (seen, ip) = source_seen_outside(&w, false);
    assert_eq!(seen, ip, "no masquerade: the container's own address");
    assert!(nft_is_empty(&w.host), "no nf_tables state without ipMasq:\n{}", nft_text(&w.host));
}

/// On a host whose ip_forward reads 1 while new interfaces start with
/// forwarding off, the bridge the ADD makes must still route the
/// containers' packets out.
#[test]
fn a_container_reaches_outside_where_new_interfaces_start_without_forwarding() {
    require_root!();
    let w = World::new();
    w.host.forwarding_on_but_off_for_new_interfaces().unwrap();
    let (seen, _) = source_seen_outside(&w, true);
    assert_eq!(seen, "203.0.113.1", "routed out through the bridge and masqueraded");
}

/// The kernel brings a veth's carrier, and so the bridge port, up through
/// linkwatch, which may defer the event by up to a second; ADD must not return
/// before the port forwards, or the container's first packets are dropped.
#[test]
fn host_port_forwards_when_add_returns() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": w.ipam(&["10.77.4.0/24"])}));
    let ctrs: Vec<ContainerNs> = (0..8).map(|_| ctr()).collect();
    for (i, c) in ctrs.iter().enumerate() {
        let res = w.add(&list, &format!("ctr-f{i}"), c);
        let port = host_veth(&res);
        let data = port_data(&w.host, &port);
        assert_eq!(data["state"], "forwarding", "ADD {i} returned before its port forwards: {data}");
        assert_eq!(link(&w.host, &port).unwrap()["operstate"], "UP", "ADD {i}: host veth not oper-up");
        assert!(ping(c, "10.77.4.1"), "ADD {i}: first ping to the gateway lost");
    }
    for (i, c) in ctrs.iter().enumerate() {
        w.del(&list, &format!("ctr-f{i}"), &c.path_str());
    }
}

// ----- 3. fields ---------------------------------------------------------------

#[test]
fn mtu_applies_to_bridge_host_veth_and_container() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"mtu": 1400, "isGateway": true, "ipam": w.ipam(&["10.77.5.0/24"])}));
    let c = ctr();
    let res = w.add(&list, "ctr-mtu", &c);
    assert_eq!(mtu(&w.host, BR), 1400, "bridge MTU");
    assert_eq!(mtu(&w.host, &host_veth(&res)), 1400, "host veth MTU");
    assert_eq!(mtu(&c, "eth0"), 1400, "container MTU");
    w.del(&list, "ctr-mtu", &c.path_str());
}

#[test]
fn hairpin_mode_sets_the_port_flag() {
    require_root!();
    let w = World::new();
    let on = w.list("1.0.0", json!({"hairpinMode": true, "ipam": w.ipam(&["10.77.6.0/24"])}));
    let off = w.list("1.0.0", json!({"ipam": w.ipam(&["10.77.6.0/24"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&on, "ctr-hp", &a);
    let rb = w.add(&off, "ctr-nohp", &b);
    assert_eq!(port_data(&w.host, &host_veth(&ra))["hairpin"], true, "hairpinMode: true");
    assert_eq!(port_data(&w.host, &host_veth(&rb))["hairpin"], false, "hairpin off by default");
    w.del(&on, "ctr-hp", &a.path_str());
    w.del(&off, "ctr-nohp", &b.path_str());
}

#[test]
fn promisc_mode_makes_the_bridge_promiscuous() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"promiscMode": true, "ipam": w.ipam(&["10.77.7.0/24"])}));
    let c = ctr();
    w.add(&list, "ctr-pr", &c);
    assert!(flags(&w.host, BR).contains(&"PROMISC".to_string()), "bridge flags {:?}", flags(&w.host, BR));
    assert!(w.check(&list, "ctr-pr", &c).is_ok(), "CHECK agrees with promiscMode");
    w.del(&list, "ctr-pr", &c.path_str());
}

#[test]
fn hairpin_and_promisc_together_are_invalid_config() {
    require_root!();
    let w = World::new();
    let list =
        w.list("1.0.0", json!({"hairpinMode": true, "promiscMode": true, "ipam": w.ipam(&["10.77.8.0/24"])}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-hpp", &c.path_str());
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(!link_exists(&w.host, BR), "nothing created");
    assert!(w.leases().is_empty());
}

#[test]
fn is_default_gateway_adds_default_route_in_container() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"isDefaultGateway": true, "ipam": w.ipam(&["10.77.9.0/24"])}));
    let c = ctr();
    let res = w.add(&list, "ctr-dg", &c);
    let r = routes(&c);
    let def = r.as_array().unwrap().iter().find(|r| r["dst"] == "default").expect("default route");
    assert_eq!(def["gateway"], "10.77.9.1", "{def}");
    assert_eq!(def["dev"], "eth0");
    assert!(res.routes.iter().any(|r| r.dst.to_string() == "0.0.0.0/0"), "in the result: {:?}", res.routes);
    assert!(addrs(&w.host, BR).contains(&"10.77.9.1/24".to_string()), "implies isGateway");
    w.del(&list, "ctr-dg", &c.path_str());
}

/// A bridge that already carries another IPv4 address.
fn preset_bridge(w: &World) {
    w.host.ip(&["link", "add", "name", BR, "type", "bridge"]).unwrap();
    w.host.ip(&["addr", "add", "10.99.9.1/24", "dev", BR]).unwrap();
}

#[test]
fn force_address_false_refuses_a_bridge_with_another_address() {
    require_root!();
    let w = World::new();
    preset_bridge(&w);
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": w.ipam(&["10.77.10.0/24"])}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-fa", &c.path_str());
    assert!(e.msg().contains("already has an IP address"), "{e}");
    let v4: Vec<String> = addrs(&w.host, BR).into_iter().filter(|a| !a.contains(':')).collect();
    assert_eq!(v4, ["10.99.9.1/24"], "bridge address untouched");
}

#[test]
fn force_address_true_replaces_the_bridge_address() {
    require_root!();
    let w = World::new();
    preset_bridge(&w);
    let list =
        w.list("1.0.0", json!({"isGateway": true, "forceAddress": true, "ipam": w.ipam(&["10.77.11.0/24"])}));
    let c = ctr();
    w.add(&list, "ctr-fa", &c);
    let a: Vec<String> = addrs(&w.host, BR).into_iter().filter(|a| !a.starts_with("fe80")).collect();
    assert_eq!(a, ["10.77.11.1/24"], "old address replaced by the gateway");
    assert!(ping(&c, "10.77.11.1"));
    w.del(&list, "ctr-fa", &c.path_str());
}

/// A dual-stack IPAM section.
fn dual(w: &World, n: u8) -> Value {
    w.ipam(&[&format!("10.77.{n}.0/24"), &format!("fd77:{n}::/64")])
}

#[test]
fn enabledad_controls_accept_dad_in_the_container() {
    require_root!();
    let w = World::new();
    let on = w.list("1.0.0", json!({"enabledad": true, "ipam": dual(&w, 12)}));
    let off = w.list("1.0.0", json!({"ipam": dual(&w, 12)}));
    let (a, b) = (ctr(), ctr());
    w.add(&on, "ctr-dad", &a);
    w.add(&off, "ctr-nodad", &b);
    assert_eq!(a.sysctl("net.ipv6.conf.eth0.accept_dad").unwrap(), "1", "enabledad: true");
    assert_eq!(b.sysctl("net.ipv6.conf.eth0.accept_dad").unwrap(), "0", "DAD off by default");
    w.del(&on, "ctr-dad", &a.path_str());
    w.del(&off, "ctr-nodad", &b.path_str());
}

#[test]
fn macspoofchk_drops_frames_from_a_changed_mac() {
    require_root!();
    let w = World::new();
    let checked =
        w.list("1.0.0", json!({"isGateway": true, "macspoofchk": true, "ipam": w.ipam(&["10.77.13.0/24"])}));
    let plain = w.list("1.0.0", json!({"isGateway": true, "ipam": w.ipam(&["10.77.13.0/24"])}));
    let (a, b) = (ctr(), ctr());
    w.add(&checked, "ctr-spoof", &a);
    w.add(&plain, "ctr-free", &b);
    assert!(!w.nft_elems_with("ctr-spoof").is_empty(), "spoof-check state:\n{}", nft_text(&w.host));
    assert!(w.nft_elems_with("ctr-free").is_empty(), "no spoof check without macspoofchk");
    assert!(ping(&a, "10.77.13.1"), "own MAC passes");
    assert!(ping(&b, "10.77.13.1"));

    for c in [&a, &b] {
        c.ip(&["link", "set", "dev", "eth0", "address", "02:de:ad:be:ef:01"]).unwrap();
    }
    // The unchecked one shows the new MAC is otherwise fine (gratuitous ARP, arp_notify).
    assert!(pings_soon(&b, "10.77.13.1"), "control: a changed MAC works without macspoofchk");
    assert!(never_pings(&a, "10.77.13.1", 4), "spoofed source MAC must be dropped");
    w.del(&checked, "ctr-spoof", &a.path_str());
    w.del(&plain, "ctr-free", &b.path_str());
    assert!(nft_is_empty(&w.host), "spoof-check state gone:\n{}", nft_text(&w.host));
}

#[test]
fn disable_container_interface_leaves_it_down() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"disableContainerInterface": true, "ipam": {}}));
    let c = ctr();
    let res = w.add(&list, "ctr-dis", &c);
    assert_eq!(res.interfaces.len(), 3);
    assert!(
        !flags(&c, "eth0").contains(&"UP".to_string()),
        "container link is down: {:?}",
        flags(&c, "eth0")
    );
    assert_eq!(link(&w.host, &host_veth(&res)).unwrap()["master"], BR, "still plugged in");
    w.del(&list, "ctr-dis", &c.path_str());
}

#[test]
fn disable_container_interface_with_ipam_is_invalid_config() {
    require_root!();
    let w = World::new();
    let list =
        w.list("1.0.0", json!({"disableContainerInterface": true, "ipam": w.ipam(&["10.77.14.0/24"])}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-dis", &c.path_str());
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(!link_exists(&w.host, BR) && w.leases().is_empty(), "nothing created");
}

#[test]
fn port_isolation_separates_containers_but_not_the_gateway() {
    require_root!();
    let w = World::new();
    let list = w
        .list("1.0.0", json!({"isGateway": true, "portIsolation": true, "ipam": w.ipam(&["10.77.15.0/24"])}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-iso-a", &a);
    let rb = w.add(&list, "ctr-iso-b", &b);
    assert_eq!(port_data(&w.host, &host_veth(&ra))["isolated"], true, "port flag");
    assert!(ping(&a, "10.77.15.1") && ping(&b, "10.77.15.1"), "isolated ports reach the gateway");
    assert!(never_pings(&a, &ip_of(&rb, true), 2), "a must not reach b");
    assert!(never_pings(&b, &ip_of(&ra, true), 2), "b must not reach a");
    w.del(&list, "ctr-iso-a", &a.path_str());
    w.del(&list, "ctr-iso-b", &b.path_str());
}

#[test]
fn dns_from_config_is_in_the_result() {
    require_root!();
    let w = World::new();
    let dns =
        json!({"nameservers": ["10.77.16.53"], "domain": "cluster.test", "search": ["svc.cluster.test"]});
    let list = w.list("1.0.0", json!({"dns": dns, "ipam": w.ipam(&["10.77.16.0/24"])}));
    let c = ctr();
    let res = w.add(&list, "ctr-dns", &c);
    assert_eq!(res.dns.nameservers, ["10.77.16.53"]);
    assert_eq!(res.dns.domain, "cluster.test");
    assert_eq!(res.dns.search, ["svc.cluster.test"]);
    w.del(&list, "ctr-dns", &c.path_str());
}

#[test]
fn container_mac_precedence_cni_args_then_args_then_runtime_config() {
    require_root!();
    let w = World::new();
    let (m_env, m_args, m_rc) = ("02:00:00:00:0e:01", "02:00:00:00:0a:02", "02:00:00:00:0c:03");
    let plain = w.list("1.0.0", json!({"ipam": w.ipam(&["10.77.17.0/24"])}));
    let with_args = w.list(
        "1.0.0",
        json!({"args": {"cni": {"mac": m_args}}, "capabilities": {"mac": true}, "ipam": w.ipam(&["10.77.17.0/24"])}),
    );
    let cases = [
        ("ctr-mac1", &plain, json!({}), m_env),
        ("ctr-mac2", &with_args, json!({}), m_args),
        ("ctr-mac3", &with_args, json!({"mac": m_rc}), m_rc),
    ];
    for (cid, list, caps, want) in cases {
        let c = ctr();
        // host-local, like the reference, rejects CNI_ARGS it does not know without IgnoreUnknown.
        let args = format!("IgnoreUnknown=1;MAC={m_env}");
        let rc = RuntimeConf::new(cid, c.path(), "eth0").cni_args(&args).cap_args(caps);
        let res = w.rt.add_rt(list, &rc).unwrap_or_else(|e| panic!("ADD {cid}: {e}"));
        assert_eq!(kernel_mac(&c, "eth0"), want, "{cid}: container MAC");
        assert_eq!(res.interfaces[2].mac, want, "{cid}: result MAC");
        w.rt.del_rt(list, &rc).unwrap();
    }
}

#[test]
fn empty_ipam_is_l2_only() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"ipam": {}}));
    let c = ctr();
    let res = w.add(&list, "ctr-l2", &c);
    assert_eq!(res.interfaces.len(), 3, "{res:?}");
    assert!(res.ips.is_empty() && res.routes.is_empty(), "no L3: {res:?}");
    assert!(flags(&c, "eth0").contains(&"UP".to_string()), "container link up");
    let v4: Vec<String> = addrs(&c, "eth0").into_iter().filter(|a| !a.contains(':')).collect();
    assert!(v4.is_empty(), "no IPv4 address: {v4:?}");
    w.del(&list, "ctr-l2", &c.path_str());
    assert!(w.host_veths().is_empty());
}

#[test]
fn dual_stack_containers_ping_over_ipv6_at_once() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": dual(&w, 18)}));
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-ds-a", &a);
    let t0 = Instant::now();
    let rb = w.add(&list, "ctr-ds-b", &b);
    assert_eq!(ra.ips.len(), 2, "one address per family: {ra:?}");
    assert!(ra.ips.iter().all(|i| i.interface == Some(2)));
    // No DAD wait: the very first IPv6 ping right after ADD succeeds. The
    // timeout allows one neighbour-solicitation retransmit (1 s): on a loaded
    // machine (load ~8 on 2 cores) the first NS after ADD is lost in about 1 of
    // 10 runs; not yet diagnosed (port state and NODAD addresses look right).
    assert!(
        ping_timeout(&b, &ip_of(&ra, false), Duration::from_millis(2500)),
        "b -> a over IPv6 right after ADD"
    );
    assert!(ping(&a, &ip_of(&rb, false)), "a -> b over IPv6");
    assert!(ping(&a, &gw_of(&ra, false)), "a -> IPv6 gateway");
    assert!(ping(&a, &ip_of(&rb, true)), "a -> b over IPv4");
    assert!(t0.elapsed() < Duration::from_secs(4), "ADD + pings took {:?}", t0.elapsed());
    assert_eq!(w.host.sysctl("net.ipv6.conf.all.forwarding").unwrap(), "1");
    w.del(&list, "ctr-ds-a", &a.path_str());
    w.del(&list, "ctr-ds-b", &b.path_str());
}

/// Whether this kernel's bridges can filter VLANs (built with
/// CONFIG_BRIDGE_VLAN_FILTERING): probed in a throwaway netns.
fn kernel_has_vlan_filtering() -> bool {
    let ns = TestNs::new().unwrap();
    ns.ip(&["link", "add", "name", "vf0", "type", "bridge", "vlan_filtering", "1"]).is_ok()
        && link(&ns, "vf0").is_some_and(|l| l["linkinfo"]["info_data"]["vlan_filtering"] == 1)
}

#[test]
fn vlan_without_kernel_support_is_a_clear_error_and_leaves_nothing() {
    require_root!();
    if kernel_has_vlan_filtering() {
        // The access-VLAN behaviour itself is not covered here: the machines this
        // suite was written on have no bridge VLAN filtering.
        eprintln!(
            "SKIP: this kernel supports bridge VLAN filtering; the unsupported-kernel path is not testable"
        );
        return;
    }
    let w = World::new();
    let list = w.list("1.0.0", json!({"vlan": 10, "isGateway": true, "ipam": w.ipam(&["10.77.19.0/24"])}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-vlan", &c.path_str());
    assert!(e.msg().contains("VLAN filtering"), "a clear error: {e}");
    assert_eq!(e.code(), Some(2), "unsupported field: {e}");
    assert!(!link_exists(&w.host, BR), "no bridge left: {:?}", link_names(&w.host));
    assert!(w.host_veths().is_empty(), "no veth left");
    assert_eq!(link_names(&c), ["lo"], "container untouched");
    assert!(w.leases().is_empty(), "lease released: {:?}", w.leases());
}

/// The VLANs of a bridge port as `bridge -j vlan show` reports them: (vid, flags).
fn port_vlans(ns: &TestNs, port: &str) -> Vec<(u64, Vec<String>)> {
    let out =
        Command::new("bridge").args(["-n", ns.name(), "-j", "vlan", "show", "dev", port]).output().unwrap();
    assert!(out.status.success(), "bridge vlan show: {}", String::from_utf8_lossy(&out.stderr));
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or(json!([]));
    let vlans = j[0]["vlans"].as_array().cloned().unwrap_or_default();
    let flags = |v: &Value| {
        v["flags"].as_array().into_iter().flatten().filter_map(|f| f.as_str().map(str::to_string)).collect()
    };
    vlans.iter().map(|v| (v["vlan"].as_u64().unwrap(), flags(v))).collect()
}

/// On kernels with bridge VLAN filtering (Debian 12's 6.1 has it: run by
/// `scripts/vm-test --ci`): `vlan` makes the port an access port of that VLAN,
/// so containers reach those of their own VLAN and not those of another on
/// the same bridge and subnet; `vlanTrunk` adds tagged VLANs, and without
/// `vlan` the native VLAN stays 1 (as the reference since v1.8.0), so the
/// trunk container's own untagged traffic reaches the plain ports.
#[test]
fn vlan_access_ports_isolate_vlans_and_trunks_carry_tagged_vids() {
    require_root!();
    if !kernel_has_vlan_filtering() {
        eprintln!("SKIP: this kernel has no bridge VLAN filtering");
        return;
    }
    let w = World::new();
    // One subnet, address ranges apart so the networks' leases never collide.
    let net = |name: &str, first: &str, last: &str, vlan: Value| {
        let range = json!([{"subnet": "10.77.41.0/24", "rangeStart": first, "rangeEnd": last}]);
        let mut p = json!({"type": "bridge", "bridge": BR, "preserveDefaultVlan": false,
            "ipam": {"type": "host-local", "dataDir": w.data.path(), "ranges": [range]}});
        for (k, v) in vlan.as_object().unwrap() {
            p[k] = v.clone();
        }
        conflist_value(&json!({"cniVersion": "1.0.0", "name": name, "plugins": [p]}))
    };
    let v10 = net("vlan10", "10.77.41.10", "10.77.41.19", json!({"vlan": 10}));
    let v20 = net("vlan20", "10.77.41.20", "10.77.41.29", json!({"vlan": 20}));
    let trunk = net(
        "trunk",
        "10.77.41.30",
        "10.77.41.39",
        json!({"vlanTrunk": [{"id": 30}, {"minID": 40, "maxID": 42}]}),
    );
    let plain = net("plain", "10.77.41.40", "10.77.41.49", json!({}));
    let (a, b, c, t, p) = (ctr(), ctr(), ctr(), ctr(), ctr());
    let ra = w.add(&v10, "ctr-a", &a);
    let rb = w.add(&v10, "ctr-b", &b);
    let rc = w.add(&v20, "ctr-c", &c);
    let rt = w.add(&trunk, "ctr-t", &t);
    let rp = w.add(&plain, "ctr-p", &p);

    let br = link(&w.host, BR).expect("bridge");
    assert_eq!(br["linkinfo"]["info_data"]["vlan_filtering"], 1, "{br}");
    let access = |vid| vec![(vid, vec!["PVID".to_string(), "Egress Untagged".to_string()])];
    assert_eq!(port_vlans(&w.host, &host_veth(&ra)), access(10), "the default VLAN 1 is removed");
    assert_eq!(port_vlans(&w.host, &host_veth(&rc)), access(20));
    let trunk_vlans = port_vlans(&w.host, &host_veth(&rt));
    let tagged: Vec<u64> = trunk_vlans.iter().filter(|(vid, _)| *vid != 1).map(|(vid, _)| *vid).collect();
    assert_eq!(tagged, [30, 40, 41, 42]);
    for (vid, flags) in &trunk_vlans {
        let native = *vid == 1;
        assert_eq!(flags.contains(&"PVID".to_string()), native, "VLAN {vid}: {flags:?}");
        assert_eq!(flags.contains(&"Egress Untagged".to_string()), native, "VLAN {vid}: {flags:?}");
    }
    assert_eq!(trunk_vlans.len(), 5, "VLAN 1 is the trunk's native VLAN: {trunk_vlans:?}");

    assert!(pings_soon(&a, &ip_of(&rb, true)), "same VLAN: a -> b");
    assert!(never_pings(&a, &ip_of(&rc, true), 2), "VLAN 10 must not reach VLAN 20");
    assert!(never_pings(&c, &ip_of(&rb, true), 2), "VLAN 20 must not reach VLAN 10");
    assert!(pings_soon(&t, &ip_of(&rp, true)), "native VLAN 1: the trunk container -> a plain port");

    w.del(&v10, "ctr-a", &a.path_str());
    w.del(&v10, "ctr-b", &b.path_str());
    w.del(&v20, "ctr-c", &c.path_str());
    w.del(&trunk, "ctr-t", &t.path_str());
    w.del(&plain, "ctr-p", &p.path_str());
    assert!(w.ports().is_empty(), "no port left: {:?}", w.ports());
}

/// The IPv4 addresses of `ifname` in `ns`.
fn ipv4_addrs(ns: &TestNs, ifname: &str) -> Vec<String> {
    addrs(ns, ifname).into_iter().filter(|a| !a.contains(':')).collect()
}

/// The result's interface names, host veths (random names) as "veth*".
fn shape(res: &CniResult) -> Vec<String> {
    let veth = |n: &str| n.starts_with("veth") && n.len() == 12;
    res.interfaces.iter().map(|i| if veth(&i.name) { "veth*".into() } else { i.name.clone() }).collect()
}

/// `vlan` + `isGateway` (bridge VLAN filtering: run in the VM): the bridge's
/// own port is in VLAN 1, so the gateway of VLAN 10 goes on `<bridge>.10`, a
/// veth whose peer is a port in VLAN 10, as the reference makes it (its
/// binary is run beside ours when installed). Its containers reach the
/// gateway; CHECK notices it lose its address; it stays after DEL, as the
/// bridge does.
#[test]
fn vlan_gateway_is_a_veth_in_the_vlan_as_the_reference_makes_it() {
    require_root!();
    if !kernel_has_vlan_filtering() {
        eprintln!("SKIP: this kernel has no bridge VLAN filtering");
        return;
    }
    let w = World::new();
    let list =
        w.list("1.0.0", json!({"vlan": 10, "isDefaultGateway": true, "ipam": w.ipam(&["10.77.42.0/24"])}));
    let gw = format!("{BR}.10");
    let (a, b) = (ctr(), ctr());
    let ra = w.add(&list, "ctr-a", &a);
    let rb = w.add(&list, "ctr-b", &b);
    assert_eq!(shape(&ra), [BR, "veth*", "eth0", gw.as_str()]);
    assert_eq!(ra.interfaces[3].mac, kernel_mac(&w.host, &gw));
    assert!(ra.ips.iter().all(|ip| ip.interface == Some(2)), "{:?}", ra.ips);
    assert_eq!(link(&w.host, &gw).unwrap()["linkinfo"]["info_kind"], "veth");
    assert_eq!(ipv4_addrs(&w.host, &gw), ["10.77.42.1/24"]);
    assert_eq!(ipv4_addrs(&w.host, BR), Vec::<String>::new(), "the bridge is in VLAN 1: no gateway there");
    let mut ports = w.ports();
    ports.retain(|p| *p != host_veth(&ra) && *p != host_veth(&rb));
    assert_eq!(ports.len(), 1, "one port for the gateway: {ports:?}");
    let access = vec![(10, vec!["PVID".to_string(), "Egress Untagged".to_string()])];
    assert_eq!(port_vlans(&w.host, &ports[0]), access);
    assert!(pings_soon(&a, "10.77.42.1"), "VLAN 10 reaches its gateway");
    assert!(pings_soon(&b, &ip_of(&ra, true)));

    w.check(&list, "ctr-a", &a).unwrap();
    w.host.ip(&["addr", "del", "10.77.42.1/24", "dev", &gw]).unwrap();
    let e = w.check(&list, "ctr-a", &a).unwrap_err();
    assert!(e.msg().contains("lacks the gateway address 10.77.42.1/24"), "{e}");
    w.del(&list, "ctr-a", &a.path_str());
    w.del(&list, "ctr-b", &b.path_str());
    assert!(link_exists(&w.host, &gw), "the VLAN gateway stays, as the bridge does");

    let reference = std::path::Path::new("/usr/lib/cni/bridge");
    if !reference.is_file() {
        eprintln!("SKIP: no reference bridge to compare with");
        return;
    }
    let host = HostNs::with_lo().expect("host netns");
    let cache = TempDir::new().unwrap();
    let rt = Runtime::new(vec!["/usr/lib/cni".into()], Some(host.path().to_path_buf()), cache.path());
    let c = ctr();
    let theirs = rt.add(&list, "ctr-ref", c.path(), "eth0", "", json!({})).expect("the reference's ADD");
    assert_eq!(shape(&theirs), shape(&ra), "the reference's interfaces");
    assert_eq!(link(&host, &gw).unwrap()["linkinfo"]["info_kind"], "veth");
    assert_eq!(ipv4_addrs(&host, &gw), ["10.77.42.1/24"]);
    assert!(pings_soon(&c, "10.77.42.1"));
    rt.del(&list, "ctr-ref", c.path(), "eth0", "", json!({})).expect("the reference's DEL");
    assert!(link_exists(&host, &gw), "the reference leaves it too");
}

// ----- 4. failed ADDs leave nothing --------------------------------------------

#[test]
fn bad_netns_path_creates_no_bridge() {
    require_root!();
    let w = World::new();
    let list =
        w.list("1.0.0", json!({"isGateway": true, "ipMasq": true, "ipam": w.ipam(&["10.77.30.0/24"])}));
    for bad in ["/run/netns/cni-t-does-not-exist", "/tmp"] {
        let e = w.add_err(&list, "ctr-badns", bad);
        assert!(e.msg().contains("netns") || e.msg().contains("namespace"), "{bad}: {e}");
        assert!(!link_exists(&w.host, BR), "{bad}: no bridge: {:?}", link_names(&w.host));
        assert!(w.host_veths().is_empty(), "{bad}: no veth");
        assert!(w.leases().is_empty(), "{bad}: no lease: {:?}", w.leases());
        assert!(nft_is_empty(&w.host), "{bad}: no nf_tables state");
    }
}

#[test]
fn failing_ipam_leaves_no_veth_and_no_bridge() {
    require_root!();
    let w = World::new();
    let fake = FakePlugins::new().unwrap();
    fake.plugin("fake-ipam", Value::Null).unwrap();
    fake.fail("fake-ipam", "ADD", 11, "no addresses today").unwrap();
    let mut rt = w.rt.clone();
    rt.bin_dirs.push(fake.bin_dir());
    let list =
        w.list("1.0.0", json!({"isGateway": true, "macspoofchk": true, "ipam": {"type": "fake-ipam"}}));
    let c = ctr();
    let e = rt.add(&list, "ctr-ipamfail", c.path(), "eth0", "", json!({})).expect_err("ADD must fail");
    assert_eq!(e.code(), Some(11), "IPAM's error is passed on: {e}");
    assert!(e.msg().contains("no addresses today"), "{e}");
    assert!(!link_exists(&w.host, BR), "no bridge: {:?}", link_names(&w.host));
    assert!(w.host_veths().is_empty(), "no veth: {:?}", w.host_veths());
    assert_eq!(link_names(&c), ["lo"], "container untouched");
    assert!(nft_is_empty(&w.host), "no nf_tables state:\n{}", nft_text(&w.host));
}

#[test]
fn exhausted_range_leaves_no_extra_veth() {
    require_root!();
    let w = World::new();
    // A /30 has one address besides the gateway.
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": w.ipam(&["10.77.31.0/30"])}));
    let (a, b) = (ctr(), ctr());
    w.add(&list, "ctr-first", &a);
    let e = w.add_err(&list, "ctr-second", &b.path_str());
    assert!(e.msg().contains("no IP addresses available") || e.msg().contains("exhausted"), "{e}");
    assert_eq!(w.ports().len(), 1, "only the first container's port: {:?}", w.ports());
    assert_eq!(w.host_veths().len(), 1);
    assert_eq!(link_names(&b), ["lo"], "second container untouched");
    assert_eq!(w.leases(), ["10.77.31.2"]);
    w.del(&list, "ctr-first", &a.path_str());
}

#[test]
fn failure_after_ipam_releases_lease_and_removes_everything() {
    require_root!();
    let w = World::new();
    preset_bridge(&w); // another IPv4 on the bridge and forceAddress false: fails after IPAM
    let list = w.list(
        "1.0.0",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": w.ipam(&["10.77.32.0/24"])}),
    );
    let c = ctr();
    let e = w.add_err(&list, "ctr-late", &c.path_str());
    assert!(e.msg().contains("already has an IP address"), "{e}");
    assert!(w.leases().is_empty(), "lease released: {:?}", w.leases());
    assert!(w.host_veths().is_empty(), "veth gone: {:?}", w.host_veths());
    assert_eq!(link_names(&c), ["lo"], "container end gone");
    assert!(nft_elems(&w.host).is_empty(), "no nf_tables elements:\n{}", nft_text(&w.host));
    assert!(link_exists(&w.host, BR), "the pre-existing bridge stays");
}

#[test]
fn failure_after_creating_the_bridge_removes_the_bridge() {
    require_root!();
    let w = World::new();
    // A route through a gateway outside the subnet: the container side fails
    // after the bridge and the veth exist.
    let ipam = json!({"type": "host-local", "dataDir": w.data.path(),
        "ranges": [[{"subnet": "10.77.35.0/24"}]], "routes": [{"dst": "192.168.0.0/16", "gw": "172.31.0.1"}]});
    let list = w.list("1.0.0", json!({"isGateway": true, "macspoofchk": true, "ipam": ipam}));
    let c = ctr();
    let e = w.add_err(&list, "ctr-route", &c.path_str());
    assert!(e.msg().contains("192.168.0.0/16"), "{e}");
    assert!(!link_exists(&w.host, BR), "the bridge this ADD created is gone: {:?}", link_names(&w.host));
    assert!(w.host_veths().is_empty(), "veth gone");
    assert_eq!(link_names(&c), ["lo"], "container end gone");
    assert!(w.leases().is_empty(), "lease released: {:?}", w.leases());
    assert!(nft_is_empty(&w.host), "spoof check undone:\n{}", nft_text(&w.host));
}

// ----- 5. DEL when the netns is gone -------------------------------------------

/// ADD with masquerade and spoof check, drop the container netns, then DEL
/// with `netns` (the old path or empty); `keep_prev` = whether the runtime
/// still has the cached result (prevResult) to send.
fn del_after_netns_gone(netns_for_del: Option<&str>, keep_prev: bool) {
    let w = World::new();
    let list = w.list(
        "1.0.0",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": w.ipam(&["10.77.33.0/24"])}),
    );
    let c = ctr();
    let res = w.add(&list, "ctr-gone", &c);
    let ip = ip_of(&res, true);
    assert!(!w.nft_elems_with("ctr-gone").is_empty(), "state exists:\n{}", nft_text(&w.host));
    assert_eq!(w.leases(), std::slice::from_ref(&ip));
    let path = c.path_str();
    drop(c);
    assert!(wait_until(Duration::from_secs(2), || w.host_veths().is_empty()), "veth goes with the netns");
    if !keep_prev {
        std::fs::remove_file(w.rt.cache_path(NET, "ctr-gone", "eth0")).unwrap();
    }
    let netns = netns_for_del.map(|_| path.as_str()).unwrap_or("");
    w.del(&list, "ctr-gone", netns);
    assert!(w.nft_elems_with("ctr-gone").is_empty(), "spoof-check elements gone:\n{}", nft_text(&w.host));
    assert!(w.nft_elems_with(&ip).is_empty(), "masquerade element gone:\n{}", nft_text(&w.host));
    assert!(w.leases().is_empty(), "lease gone: {:?}", w.leases());
    w.del(&list, "ctr-gone", netns); // twice is fine
    assert!(nft_is_empty(&w.host), "nothing left after the last DEL:\n{}", nft_text(&w.host));
}

#[test]
fn del_with_gone_netns_path_and_prev_result_cleans_up() {
    require_root!();
    del_after_netns_gone(Some("original"), true);
}

#[test]
fn del_with_gone_netns_path_without_prev_result_cleans_up() {
    require_root!();
    del_after_netns_gone(Some("original"), false);
}

#[test]
fn del_with_empty_netns_and_prev_result_cleans_up() {
    require_root!();
    del_after_netns_gone(None, true);
}

#[test]
fn del_with_empty_netns_without_prev_result_cleans_up() {
    require_root!();
    del_after_netns_gone(None, false);
}

#[test]
fn del_twice_with_live_netns_is_ok() {
    require_root!();
    let w = World::new();
    let list = w.list("0.3.1", json!({"ipMasq": true, "ipam": w.ipam(&["10.77.34.0/24"])}));
    let c = ctr();
    w.add(&list, "ctr-twice", &c);
    w.del(&list, "ctr-twice", &c.path_str());
    w.del(&list, "ctr-twice", &c.path_str());
    assert_eq!(link_names(&c), ["lo"]);
    assert!(w.leases().is_empty() && nft_is_empty(&w.host));
}

#[test]
fn del_with_a_config_that_dropped_ipmasq_still_removes_masquerade() {
    require_root!();
    let w = World::new();
    let with =
        w.list("1.0.0", json!({"ipMasq": true, "macspoofchk": true, "ipam": w.ipam(&["10.77.36.0/24"])}));
    let without = w.list("1.0.0", json!({"ipam": w.ipam(&["10.77.36.0/24"])}));
    let c = ctr();
    w.add(&with, "ctr-cfg", &c);
    assert!(!nft_is_empty(&w.host));
    w.del(&without, "ctr-cfg", &c.path_str());
    assert!(nft_is_empty(&w.host), "state found by container ID, not config:\n{}", nft_text(&w.host));
    assert!(w.leases().is_empty());
}

// ----- 6. concurrency ----------------------------------------------------------

#[test]
fn parallel_adds_on_a_missing_bridge_then_parallel_dels() {
    require_root!();
    const N: usize = 32;
    let w = World::new();
    let list = w.list(
        "1.0.0",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": w.ipam(&["10.77.40.0/24"])}),
    );
    assert!(!link_exists(&w.host, BR));
    let ctrs: Vec<ContainerNs> = (0..N).map(|_| ctr()).collect();
    let results: Vec<Result<CniResult, InvokeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (w, list) = (&w, &list);
                s.spawn(move || w.rt.add(list, &format!("ctr-p{i}"), c.path(), "eth0", "", json!({})))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(errors.is_empty(), "{} of {N} ADDs failed: {errors:#?}", errors.len());
    assert_eq!(w.host_links_of_kind("bridge"), [BR], "exactly one bridge");
    let ips: HashSet<String> = results.iter().map(|r| ip_of(r.as_ref().unwrap(), true)).collect();
    assert_eq!(ips.len(), N, "distinct addresses");
    assert_eq!(w.leases().len(), N);
    assert_eq!(w.ports().len(), N, "every port on the bridge");
    assert_eq!(nft_elems(&w.host).len(), 2 * N, "a masquerade and a spoof-check element each");
    for (i, c) in ctrs.iter().enumerate() {
        assert!(ping(c, "10.77.40.1"), "container {i} reaches the gateway");
    }

    let dels: Vec<Result<(), InvokeError>> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (w, list) = (&w, &list);
                s.spawn(move || w.rt.del(list, &format!("ctr-p{i}"), c.path(), "eth0", "", json!({})))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let errors: Vec<String> = dels.iter().filter_map(|r| r.as_ref().err().map(|e| e.to_string())).collect();
    assert!(errors.is_empty(), "{} of {N} DELs failed: {errors:#?}", errors.len());
    let mut left = link_names(&w.host);
    left.sort();
    assert_eq!(left, [BR, "lo"], "nothing but the bridge");
    assert!(w.leases().is_empty(), "{:?}", w.leases());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

// ----- 7. the bridge MAC -------------------------------------------------------

#[test]
fn bridge_mac_survives_the_last_container_and_a_new_add_works() {
    require_root!();
    let w = World::new();
    let list = w.list("1.0.0", json!({"isGateway": true, "ipam": w.ipam(&["10.77.41.0/24"])}));
    let a = ctr();
    w.add(&list, "ctr-first", &a);
    let mac = kernel_mac(&w.host, BR);
    w.del(&list, "ctr-first", &a.path_str());
    drop(a);
    assert!(w.ports().is_empty(), "no port left");
    let after = kernel_mac(&w.host, BR);
    assert_ne!(after, "00:00:00:00:00:00", "bridge MAC fell to zero");
    assert_eq!(after, mac, "bridge MAC unchanged");
    let b = ctr();
    let res = w.add(&list, "ctr-next", &b);
    assert_eq!(res.interfaces[0].mac, mac);
    assert!(ping(&b, "10.77.41.1"));
    w.del(&list, "ctr-next", &b.path_str());
}

// ----- 8. CHECK ----------------------------------------------------------------

/// A network with masquerade for the CHECK tests, and one attached container.
fn checked_attachment(w: &World, cid: &str, n: u8) -> (NetConfList, ContainerNs, CniResult) {
    let list = w.list(
        "1.0.0",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true,
               "ipam": w.ipam(&[&format!("10.77.{n}.0/24")])}),
    );
    let c = ctr();
    let res = w.add(&list, cid, &c);
    w.check(&list, cid, &c).unwrap_or_else(|e| panic!("CHECK right after ADD: {e}"));
    (list, c, res)
}

#[test]
fn check_passes_for_dual_stack_default_gateway_with_all_features() {
    require_root!();
    let w = World::new();
    let list = w.list(
        "1.1.0",
        json!({"isDefaultGateway": true, "ipMasq": true, "macspoofchk": true, "hairpinMode": true,
               "ipam": dual(&w, 48)}),
    );
    let c = ctr();
    let res = w.add(&list, "ctr-ck0", &c);
    assert_eq!(res.routes.len(), 2, "a default route per family: {:?}", res.routes);
    assert!(has_route(&c, "default"), "{}", routes(&c));
    w.check(&list, "ctr-ck0", &c).unwrap_or_else(|e| panic!("CHECK: {e}"));
    w.del(&list, "ctr-ck0", &c.path_str());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

#[test]
fn check_fails_when_the_spoof_check_element_is_deleted() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked_attachment(&w, "ctr-ck4", 49);
    let port = host_veth(&res);
    let out = w
        .host
        .spawn(
            &[
                "nft",
                "delete",
                "element",
                "bridge",
                "cnirs_bridge_mac",
                "ports",
                &format!("{{ \"{port}\" }}"),
            ],
            b"",
        )
        .unwrap();
    assert!(out.success(), "nft delete element: {}", out.stderr);
    let e = w.check(&list, "ctr-ck4", &c).expect_err("CHECK must notice the missing spoof check");
    assert!(e.msg().contains("spoof"), "{e}");
    w.del(&list, "ctr-ck4", &c.path_str());
    // DEL still removes the attachment's port chain (and so the whole table).
    assert!(nft_is_empty(&w.host), "spoof-check leftovers after DEL:\n{}", nft_text(&w.host));
}

#[test]
fn check_fails_when_the_container_address_is_removed() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked_attachment(&w, "ctr-ck1", 42);
    c.ip(&["addr", "del", &res.ips[0].address.to_string(), "dev", "eth0"]).unwrap();
    let e = w.check(&list, "ctr-ck1", &c).expect_err("CHECK must notice the missing address");
    assert!(e.msg().contains(&res.ips[0].address.to_string()), "{e}");
    w.del(&list, "ctr-ck1", &c.path_str());
}

#[test]
fn check_fails_when_the_host_veth_leaves_the_bridge() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked_attachment(&w, "ctr-ck2", 43);
    w.host.ip(&["link", "set", "dev", &host_veth(&res), "nomaster"]).unwrap();
    let e = w.check(&list, "ctr-ck2", &c).expect_err("CHECK must notice the unplugged port");
    assert!(e.msg().contains("not plugged into"), "{e}");
    w.del(&list, "ctr-ck2", &c.path_str());
}

#[test]
fn check_fails_when_the_masquerade_element_is_deleted() {
    require_root!();
    let w = World::new();
    let (list, c, res) = checked_attachment(&w, "ctr-ck3", 44);
    let ip = ip_of(&res, true);
    let set = format!("m4_{NET}");
    let out = w
        .host
        .spawn(&["nft", "delete", "element", "inet", "cnirs_bridge", &set, &format!("{{ {ip} }}")], b"")
        .unwrap();
    assert!(out.success(), "nft delete element: {}", out.stderr);
    let e = w.check(&list, "ctr-ck3", &c).expect_err("CHECK must notice the missing masquerade");
    assert!(e.msg().contains("masquerade"), "{e}");
    w.del(&list, "ctr-ck3", &c.path_str());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

// ----- 9. GC and STATUS --------------------------------------------------------

#[test]
fn gc_removes_state_of_attachments_not_in_the_valid_list() {
    require_root!();
    let w = World::new();
    let list = w.list(
        "1.1.0",
        json!({"isGateway": true, "ipMasq": true, "macspoofchk": true, "ipam": w.ipam(&["10.77.45.0/24"])}),
    );
    let (keep, stale) = (ctr(), ctr());
    let rk = w.add(&list, "ctr-keep", &keep);
    let rs = w.add(&list, "ctr-stale", &stale);
    let (ipk, ips) = (ip_of(&rk, true), ip_of(&rs, true));
    // The runtime forgot the stale one (no cache entry): only the plugins' GC can clean it.
    std::fs::remove_file(w.rt.cache_path(NET, "ctr-stale", "eth0")).unwrap();
    w.rt.gc(&list, &[("ctr-keep", "eth0")]).unwrap_or_else(|e| panic!("GC: {e:?}"));

    assert_eq!(w.leases(), std::slice::from_ref(&ipk), "stale lease gone, valid one kept");
    assert!(w.nft_elems_with("ctr-stale").is_empty(), "stale nft state gone:\n{}", nft_text(&w.host));
    assert!(w.nft_elems_with(&ips).is_empty(), "stale masquerade gone:\n{}", nft_text(&w.host));
    assert!(!w.nft_elems_with(&ipk).is_empty(), "valid masquerade kept:\n{}", nft_text(&w.host));
    w.check(&list, "ctr-keep", &keep).unwrap_or_else(|e| panic!("the valid attachment is intact: {e}"));
    w.del(&list, "ctr-keep", &keep.path_str());
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

#[test]
fn status_is_ok_with_a_usable_data_dir() {
    require_root!();
    let w = World::new();
    let list = w.list("1.1.0", json!({"ipam": w.ipam(&["10.77.46.0/24"])}));
    w.rt.status(&list).unwrap_or_else(|e| panic!("STATUS: {e}"));
}

#[test]
fn status_fails_with_50_when_the_data_dir_is_unusable() {
    require_root!();
    let w = World::new();
    let file = w.data.join("a-file");
    std::fs::write(&file, "").unwrap();
    let ipam =
        json!({"type": "host-local", "dataDir": file.join("sub"), "ranges": [[{"subnet": "10.77.47.0/24"}]]});
    let list = w.list("1.1.0", json!({"ipam": ipam}));
    let e = w.rt.status(&list).expect_err("STATUS must fail");
    assert_eq!(e.code(), Some(50), "{e}");
}

// ----- 10. real clients' configurations ----------------------------------------

/// The first plugin of a client's conflist, with only host-local's `dataDir`
/// pointed at our temp dir (never /var/lib/cni).
fn client_list(w: &World, path: &str, plugin_index: usize) -> (NetConfList, String) {
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut plugin = v["plugins"][plugin_index].clone();
    assert_eq!(plugin["type"], "bridge", "{path}");
    plugin["ipam"]["dataDir"] = json!(w.data.path());
    let bridge = plugin["bridge"].as_str().unwrap().to_string();
    v["plugins"] = json!([plugin]);
    (conflist_value(&v), bridge)
}

fn client_leases(w: &World, net: &str) -> usize {
    std::fs::read_dir(w.data.join(net))
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.file_name().to_string_lossy().parse::<std::net::IpAddr>().is_ok())
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn podman_bridge_entry_works_unmodified() {
    require_root!();
    let w = World::new();
    let (list, bridge) = client_list(&w, "/work/shared/clients/podman/br1.conflist", 0);
    assert_eq!(list.cni_version, "0.4.0");
    let (a, b) = (ctr(), ctr());
    let ra = RuntimeConf::new("podman-a", a.path(), "eth0")
        .cni_args("IgnoreUnknown=1;K8S_POD_NAME=x")
        .cap_args(json!({"ips": ["10.231.1.50"]}));
    let rb = RuntimeConf::new("podman-b", b.path(), "eth0").cni_args("IgnoreUnknown=1;K8S_POD_NAME=x");
    let res = w.rt.add_rt(&list, &ra).unwrap_or_else(|e| panic!("podman ADD: {e}"));
    let res_b = w.rt.add_rt(&list, &rb).unwrap_or_else(|e| panic!("podman ADD: {e}"));
    assert_eq!(ip_of(&res, true), "10.231.1.50", "the ips capability reaches host-local");
    assert_eq!(res.interfaces[0].name, bridge);
    assert_eq!(port_data(&w.host, &host_veth(&res))["hairpin"], true);
    assert!(has_route(&a, "default"), "IPAM's default route");
    assert!(ping(&a, "10.231.1.1") && ping(&a, &ip_of(&res_b, true)));
    w.rt.check_rt(&list, &ra).unwrap_or_else(|e| panic!("podman CHECK: {e}"));
    assert!(!w.nft_elems_with("10.231.1.50").is_empty(), "masqueraded");
    w.rt.del_rt(&list, &ra).unwrap_or_else(|e| panic!("podman DEL: {e}"));
    w.rt.del_rt(&list, &rb).unwrap_or_else(|e| panic!("podman DEL: {e}"));
    assert_eq!(client_leases(&w, "br1"), 0);
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}

#[test]
fn containerd_bridge_entry_works_unmodified() {
    require_root!();
    let w = World::new();
    let (list, bridge) = client_list(&w, "/work/shared/clients/cri/10-k8s-node.conflist", 0);
    assert_eq!(list.cni_version, "1.0.0");
    let c = ctr();
    let rc = RuntimeConf::new("cri-pod", c.path(), "eth0").cni_args(
        "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=x;K8S_POD_INFRA_CONTAINER_ID=cri-pod",
    );
    let res = w.rt.add_rt(&list, &rc).unwrap_or_else(|e| panic!("containerd ADD: {e}"));
    assert_eq!(res.interfaces[0].name, bridge);
    assert!(ip_of(&res, true).starts_with("10.232.1."), "{res:?}");
    assert!(has_route(&c, "default"));
    assert!(ping(&c, "10.232.1.1"));
    w.rt.check_rt(&list, &rc).unwrap_or_else(|e| panic!("containerd CHECK: {e}"));
    // containerd deletes after the task exited: the netns may be gone.
    let path = c.path_str();
    drop(c);
    let rc = RuntimeConf { netns: path, ..rc };
    w.rt.del_rt(&list, &rc).unwrap_or_else(|e| panic!("containerd DEL: {e}"));
    assert_eq!(client_leases(&w, "k8s-pods"), 0);
    assert!(nft_is_empty(&w.host), "{}", nft_text(&w.host));
}
