//! Root tests of the ipvlan plugin, driven as libcni drives it. The kernel
//! must have ipvlan: this development machine's does not, so they skip here
//! with a message and run under `scripts/vm-test` on Debian 12's 6.1
//! (tests/vm/ci lists the ones CI runs there).
//!
//! Each test builds its own world of namespaces: a "host" netns the plugin
//! runs in, whose master `m0` is one end of a veth, the other end `lan0`
//! sitting in a "LAN peer" netns at 10.77.0.1/24; and container netns. IPAM
//! is our host-local from the target dir with a temporary data dir.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;

use serde_json::{json, Value};
use test_harness::*;

macro_rules! require_ipvlan {
    () => {
        if let Some(why) = skip_unless_root_and("ipvlan") {
            eprintln!("{why}");
            return;
        }
    };
}

const NET: &str = "ipvnet";
const LAN_IP: &str = "10.77.0.1";
const IFNAME: &str = "eth0";

/// The host with its master, the LAN peer, a runtime and an IPAM data dir.
struct Lan {
    host: HostNs,
    peer: TestNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl Lan {
    fn new() -> Lan {
        let host = HostNs::with_lo().unwrap();
        let peer = TestNs::with_lo().unwrap();
        veth(&host, "m0", &peer, "lan0").unwrap();
        peer.ip(&["addr", "add", "10.77.0.1/24", "dev", "lan0"]).unwrap();
        let (rt, cache) = runtime_in(&host);
        Lan { host, peer, rt, _cache: cache, data: TempDir::new().unwrap() }
    }

    /// host-local on `subnet` from .10, default route via .1.
    fn ipam(&self, subnet: &str) -> Value {
        let base = subnet.trim_end_matches(".0/24");
        json!({"type": "host-local", "dataDir": self.data.path(),
               "ranges": [[{"subnet": subnet, "rangeStart": format!("{base}.10"), "gateway": format!("{base}.1")}]],
               "routes": [{"dst": "0.0.0.0/0"}]})
    }

    /// A one-plugin list named `name`: `{"type": "ipvlan", "master": "m0",
    /// "ipam": <ours on 10.77.0.0/24>}` overlaid with `extra` (a null value
    /// removes the key).
    fn list_named(&self, name: &str, ver: &str, extra: Value) -> NetConfList {
        let mut p = json!({"type": "ipvlan", "master": "m0", "ipam": self.ipam("10.77.0.0/24")});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        conflist_value(&json!({"cniVersion": ver, "name": name, "plugins": [p]}))
    }

    fn list(&self, extra: Value) -> NetConfList {
        self.list_named(NET, "1.1.0", extra)
    }

    fn add(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<CniResult, InvokeError> {
        self.rt.add(list, id, ctr.path(), IFNAME, "", json!({}))
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &TestNs) {
        self.rt.del(list, id, ctr.path(), IFNAME, "", json!({})).unwrap();
    }

    fn check(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<(), InvokeError> {
        self.rt.check(list, id, ctr.path(), IFNAME, "", json!({}))
    }

    /// Lease files (named by address) of network `net`.
    fn leases(&self, net: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join(net)) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// Nothing left behind: only `lo` + `m0` on the host, only `lo` plus
    /// `keep` in the container, no lease.
    fn assert_clean(&self, ctr: &TestNs, keep: &[&str]) {
        assert_eq!(link_names(&self.host), ["lo", "m0"], "stray link on the host");
        let mut want: Vec<String> = ["lo"].iter().chain(keep).map(|s| s.to_string()).collect();
        let mut have = link_names(ctr);
        want.sort();
        have.sort();
        assert_eq!(have, want, "stray link in the container");
        assert!(self.leases(NET).is_empty(), "stray lease: {:?}", self.leases(NET));
    }

    fn master_mac(&self) -> String {
        link(&self.host, "m0").unwrap()["address"].as_str().unwrap().to_string()
    }
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().unwrap()
}

/// The container's `eth0` as `ip -d -j link` shows it.
fn eth0(ctr: &TestNs) -> Value {
    link(ctr, IFNAME).expect("eth0 exists")
}

fn first_ip(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

#[test]
fn l2_containers_reach_each_other_and_the_lan() {
    require_ipvlan!();
    let lan = Lan::new();
    let (a, b) = (ctr(), ctr());
    let list = lan.list(json!({"dns": {"nameservers": ["10.77.0.53"]}}));
    let ra = lan.add(&list, "a", &a).unwrap();
    let rb = lan.add(&list, "b", &b).unwrap();

    // The result: one interface in the sandbox with the master's MAC (an
    // ipvlan has no MAC of its own), every IP on it, config DNS.
    assert_eq!(ra.interfaces.len(), 1);
    let i = &ra.interfaces[0];
    assert_eq!((i.name.as_str(), i.sandbox.as_str()), (IFNAME, a.path_str().as_str()));
    assert_eq!(i.mac, lan.master_mac());
    assert_eq!(eth0(&a)["address"].as_str(), Some(i.mac.as_str()));
    assert_eq!((ra.ips[0].interface, ra.ips[0].address.to_string()), (Some(0), "10.77.0.10/24".into()));
    assert_eq!(ra.dns.nameservers, ["10.77.0.53"]);

    // The kernel's view: an l2 ipvlan of m0, up, with its address and the default route.
    let l = eth0(&a);
    assert_eq!(l["linkinfo"]["info_kind"], "ipvlan");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "l2");
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(addrs(&a, IFNAME).contains(&"10.77.0.10/24".to_string()));
    assert!(has_route(&a, "default"));
    assert_eq!(a.sysctl("net.ipv4.conf.eth0.arp_notify").unwrap(), "1");
    assert_eq!(link_names(&lan.host), ["lo", "m0"], "born in the container");

    assert!(ping(&a, &first_ip(&rb)) && ping(&b, &first_ip(&ra)), "the containers reach each other");
    assert!(ping(&lan.peer, &first_ip(&ra)) && ping(&lan.peer, &first_ip(&rb)), "the LAN reaches both");
    assert!(ping(&a, LAN_IP), "a container reaches the LAN");
    // The LAN sees both containers at the master's MAC.
    let neigh = lan.peer.ip(&["neigh", "show", "dev", "lan0"]).unwrap();
    assert!(neigh.contains(&lan.master_mac()), "{neigh}");

    lan.check(&list, "a", &a).unwrap();
    lan.del(&list, "a", &a);
    lan.del(&list, "b", &b);
    lan.assert_clean(&a, &[]);
    assert_eq!(link_names(&b), ["lo"]);
    lan.del(&list, "a", &a); // twice is fine
}

#[test]
fn l3_mode_routes_through_the_masters_netns() {
    require_ipvlan!();
    let lan = Lan::new();
    // The host routes for the containers: an address on the LAN, and the LAN
    // peer's way back to the container subnets through it.
    lan.host.ip(&["addr", "add", "10.77.0.2/24", "dev", "m0"]).unwrap();
    lan.peer.ip(&["route", "add", "10.78.0.0/16", "via", "10.77.0.2"]).unwrap();
    let (a, b) = (ctr(), ctr());
    let la = lan.list_named("l3a", "1.1.0", json!({"mode": "l3", "ipam": lan.ipam("10.78.1.0/24")}));
    let lb = lan.list_named("l3b", "1.1.0", json!({"mode": "l3", "ipam": lan.ipam("10.78.2.0/24")}));
    let ra = lan.add(&la, "a", &a).unwrap();
    let rb = lan.add(&lb, "b", &b).unwrap();
    let l = eth0(&a);
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "l3");
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "NOARP"), "no ARP in l3: {l}");

    // Different subnets, no router between them but the ipvlan itself.
    assert!(ping(&a, &first_ip(&rb)) && ping(&b, &first_ip(&ra)));
    // Out through the host's routing table, and back by the host's address.
    assert!(ping(&a, LAN_IP), "the container reaches the LAN through the host's routes");
    assert!(ping(&lan.peer, &first_ip(&ra)), "the LAN reaches the container via the host");
    lan.check(&la, "a", &a).unwrap();

    lan.del(&la, "a", &a);
    lan.del(&lb, "b", &b);
    assert!(lan.leases("l3a").is_empty() && lan.leases("l3b").is_empty());
    assert_eq!(link_names(&a), ["lo"]);
}

#[test]
fn link_in_container_uses_the_containers_own_master() {
    require_ipvlan!();
    let lan = Lan::new();
    let c = ctr();
    // The container's own uplink: "up0" in the container, "lan1" at the LAN peer.
    veth(&c, "up0", &lan.peer, "lan1").unwrap();
    lan.peer.ip(&["addr", "add", "10.79.0.1/24", "dev", "lan1"]).unwrap();
    let list = lan.list(json!({"master": "up0", "linkInContainer": true, "ipam": lan.ipam("10.79.0.0/24")}));
    let res = lan.add(&list, "c1", &c).unwrap();
    assert_eq!(eth0(&c)["link"], "up0", "the parent is the container's up0");
    assert_eq!(res.interfaces[0].mac, link(&c, "up0").unwrap()["address"].as_str().unwrap());
    assert!(ping(&lan.peer, &first_ip(&res)) && ping(&c, "10.79.0.1"));
    assert_eq!(link_names(&lan.host), ["lo", "m0"]);
    lan.check(&list, "c1", &c).unwrap();
    // A master only the host has is a config error there.
    let wrong = lan.list(json!({"linkInContainer": true}));
    let c2 = ctr();
    let e = lan.add(&wrong, "c2", &c2).unwrap_err();
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(e.msg().contains("master \"m0\" in the container netns"), "{e}");
    lan.del(&list, "c1", &c);
    lan.assert_clean(&c, &["up0"]);
}

#[test]
fn chained_without_ipam_it_takes_the_master_and_addresses_from_prev_result() {
    require_ipvlan!();
    let lan = Lan::new();
    // The plugin before it names the master and hands out the address, as
    // in the reference's chained test.
    let fakes = FakePlugins::new().unwrap();
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "m0"}],
        "ips": [{"address": "10.77.0.42/24", "gateway": LAN_IP, "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0"}]});
    fakes.plugin("addresser", prev).unwrap();
    let cache = TempDir::new().unwrap();
    let rt = Runtime::new(
        vec![fakes.bin_dir(), target_bin_dir()],
        Some(lan.host.path().to_path_buf()),
        cache.path(),
    );
    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": "chain", "plugins": [
        {"type": "addresser"}, {"type": "ipvlan"}]}));
    let c = ctr();
    let res = rt.add(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!(res.interfaces.len(), 1, "the ipvlan replaces prevResult's interfaces: {res:?}");
    assert_eq!(
        (res.interfaces[0].name.as_str(), res.interfaces[0].sandbox.as_str()),
        (IFNAME, c.path_str().as_str())
    );
    assert_eq!((res.ips.len(), res.ips[0].interface), (1, Some(0)));
    assert_eq!(eth0(&c)["link_index"], link(&lan.host, "m0").unwrap()["ifindex"], "m0 is the master");
    assert!(addrs(&c, IFNAME).contains(&"10.77.0.42/24".to_string()));
    assert!(ping(&c, LAN_IP) && ping(&lan.peer, "10.77.0.42"));
    rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    rt.del(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!(link_names(&c), ["lo"]);
}

#[test]
fn a_failed_add_leaves_nothing() {
    require_ipvlan!();
    let lan = Lan::new();
    let c = ctr();

    // IPAM fails after the link was made (its range is exhausted): the link goes.
    let mut full = lan.ipam("10.77.0.0/24");
    full["ranges"][0][0]["rangeEnd"] = json!("10.77.0.10");
    let list = lan.list(json!({"ipam": full}));
    let c0 = ctr();
    lan.add(&list, "c0", &c0).unwrap();
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("host-local"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);
    assert_eq!(lan.leases(NET), ["10.77.0.10"], "c0's lease only");
    lan.del(&list, "c0", &c0);

    // A route IPAM hands out that cannot be installed: link and lease go.
    let mut bad_route = lan.ipam("10.77.0.0/24");
    bad_route["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]);
    let e = lan.add(&lan.list(json!({"ipam": bad_route})), "c1", &c).unwrap_err();
    assert!(e.msg().contains("route"), "{e}");
    lan.assert_clean(&c, &[]);

    // The kernel refuses: m0 carries a macvlan. Said so, nothing made.
    lan.host.ip(&["link", "add", "mv0", "link", "m0", "type", "macvlan"]).unwrap();
    let e = lan.add(&lan.list(json!({})), "c1", &c).unwrap_err();
    assert!(e.msg().contains("cannot carry ipvlans"), "{e}");
    lan.host.ip(&["link", "del", "mv0"]).unwrap();
    lan.assert_clean(&c, &[]);

    // Config errors: code 7 before anything is made.
    for (extra, needle) in [
        (json!({"mode": "l4"}), "unknown ipvlan mode \"l4\""),
        (json!({"mtu": 1501}), "master MTU(1500)"),
        (json!({"master": "nosuch0"}), "nosuch0"),
        (json!({"master": null}), "no default route interface"),
    ] {
        let e = lan.add(&lan.list(extra.clone()), "c1", &c).unwrap_err();
        assert_eq!(e.code(), Some(7), "{extra}: {e}");
        assert!(e.msg().contains(needle), "{extra}: {e}");
        lan.assert_clean(&c, &[]);
    }
}

#[test]
fn del_without_netns_and_check_after_drift() {
    require_ipvlan!();
    let lan = Lan::new();
    let list = lan.list(json!({}));
    let c = ctr();
    lan.add(&list, "c1", &c).unwrap();
    lan.check(&list, "c1", &c).unwrap();

    // Another network makes an l3 ipvlan on the same master: the kernel
    // switches every ipvlan of m0 to l3, and CHECK of the first says why.
    let other = lan.list_named("other", "1.1.0", json!({"mode": "l3", "ipam": lan.ipam("10.78.0.0/24")}));
    let c2 = ctr();
    lan.add(&other, "c2", &c2).unwrap();
    let e = lan.check(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("has ipvlan mode l3, the config says l2"), "{e}");
    lan.del(&other, "c2", &c2);
    // The address removed.
    c.ip(&["addr", "flush", "dev", IFNAME]).unwrap();
    let e = lan.check(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("10.77.0.10"), "{e}");

    // DEL once the container's netns is gone: the lease is released.
    let path = c.path_str();
    drop(c);
    lan.rt.del(&list, "c1", &path, IFNAME, "", json!({})).unwrap();
    assert!(lan.leases(NET).is_empty());
    lan.rt.del(&list, "c1", "", IFNAME, "", json!({})).unwrap();

    // STATUS: the master's absence is code 50.
    lan.rt.status(&list).unwrap();
    lan.host.ip(&["link", "del", "m0"]).unwrap();
    assert_eq!(lan.rt.status(&list).unwrap_err().code(), Some(50));
}

/// GC is IPAM's: the lease of an attachment the runtime no longer lists is
/// released, a listed one's kept.
#[test]
fn gc_releases_the_leases_of_attachments_not_listed() {
    require_ipvlan!();
    let lan = Lan::new();
    let list = lan.list(json!({}));
    let (keep, stale) = (ctr(), ctr());
    let kept = first_ip(&lan.add(&list, "c-keep", &keep).unwrap());
    lan.add(&list, "c-stale", &stale).unwrap();
    // The runtime forgot the stale one (no cache entry): only GC can clean it.
    std::fs::remove_file(lan.rt.cache_path(NET, "c-stale", IFNAME)).unwrap();
    lan.rt.gc(&list, &[("c-keep", IFNAME)]).unwrap_or_else(|e| panic!("GC: {e:?}"));
    assert_eq!(lan.leases(NET), [kept]);
    lan.check(&list, "c-keep", &keep).unwrap();
    lan.del(&list, "c-keep", &keep);
    lan.assert_clean(&keep, &[]);
}

#[test]
fn results_in_every_version() {
    require_ipvlan!();
    let lan = Lan::new();
    let c = ctr();
    for ver in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let list = lan.list_named(NET, ver, json!({}));
        let rtc = RuntimeConf::new(&format!("c{}", ver.replace('.', "")), c.path(), IFNAME);
        let req = lan.rt.request(&list, 0, None, &rtc).unwrap();
        let out = lan.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        if ver < "0.3.0" {
            assert!(v["ip4"]["ip"].as_str().is_some_and(|ip| ip.starts_with("10.77.0.")), "{ver}: {v}");
            assert!(v.get("interfaces").is_none(), "{ver}: {v}");
        } else {
            assert_eq!(v["interfaces"][0]["mac"], lan.master_mac().as_str(), "{ver}: {v}");
            assert_eq!(v["interfaces"][0]["sandbox"], c.path_str());
            assert_eq!(v["ips"][0]["interface"], 0);
            assert_eq!(v["ips"][0].get("version").is_some(), ver.starts_with("0."), "{ver}: {v}");
        }
        lan.rt.del_rt(&list, &rtc).unwrap();
        assert!(!link_exists(&c, IFNAME), "{ver}");
    }
    lan.assert_clean(&c, &[]);
}

#[test]
fn podman_ipvlan_conflist_works() {
    require_ipvlan!();
    let lan = Lan::new();
    // What Podman 4.3's CNI backend writes for `podman network create -d ipvlan`,
    // its master swapped for m0 and (tests never write /var/lib/cni) a temporary data dir.
    let path = format!("{}/../../conf-examples/podman/ipvlan.conflist", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(path).unwrap();
    let mut v: Value = serde_json::from_str(&text.replace("\"eth0\"", "\"m0\"")).unwrap();
    assert_eq!(v["plugins"][0]["ipam"]["ranges"][0][0]["subnet"], "10.231.10.0/24");
    v["plugins"][0]["ipam"]["dataDir"] = json!(lan.data.path());
    let list = conflist_value(&v);
    lan.peer.ip(&["addr", "add", "10.231.10.1/24", "dev", "lan0"]).unwrap();
    let (c1, c2) = (ctr(), ctr());
    let r1 =
        lan.rt.add(&list, "p1", c1.path(), IFNAME, "IgnoreUnknown=1;K8S_POD_NAME=p1", json!({})).unwrap();
    assert_eq!(first_ip(&r1), "10.231.10.2");
    assert_eq!(eth0(&c1)["linkinfo"]["info_data"]["mode"], "l2", "no mode means l2");
    // A static IP arrives as runtimeConfig.ips (capability "ips").
    let ips = json!({"ips": ["10.231.10.77/24"]});
    let r2 =
        lan.rt.add(&list, "p2", c2.path(), IFNAME, "IgnoreUnknown=1;K8S_POD_NAME=p2", ips.clone()).unwrap();
    assert_eq!(first_ip(&r2), "10.231.10.77");
    assert!(ping(&c1, "10.231.10.1") && ping(&c1, "10.231.10.77"), "the gateway on the LAN, the other pod");
    lan.rt.check(&list, "p2", c2.path(), IFNAME, "IgnoreUnknown=1;K8S_POD_NAME=p2", ips).unwrap();
    lan.rt.del(&list, "p1", c1.path(), IFNAME, "", json!({})).unwrap();
    lan.rt.del(&list, "p2", c2.path(), IFNAME, "", json!({})).unwrap();
    assert!(lan.leases("ipv").is_empty());
    assert_eq!((link_names(&c1), link_names(&c2)), (vec!["lo".to_string()], vec!["lo".to_string()]));
}

// ----- beside the reference plugin -----------------------------------------------------------

/// Debian's reference plugins (containernetworking-plugins 1.1.1).
const REFERENCE: &str = "/usr/lib/cni/ipvlan";

/// A runtime running the reference's ipvlan (and our host-local), sharing
/// `lan`'s result cache, so that either runtime's CHECK and DEL act on the
/// other's attachments.
fn reference_runtime(lan: &Lan, dir: &TempDir) -> Runtime {
    std::os::unix::fs::symlink(REFERENCE, dir.join("ipvlan")).unwrap();
    Runtime::new(
        vec![dir.path().to_path_buf(), target_bin_dir()],
        Some(lan.host.path().to_path_buf()),
        lan._cache.path(),
    )
}

#[test]
fn the_reference_makes_the_same_and_each_takes_over_the_others() {
    require_ipvlan!();
    if !std::path::Path::new(REFERENCE).exists() {
        eprintln!(
            "skipped: no reference plugin at {REFERENCE} (scripts/deps installs containernetworking-plugins)"
        );
        return;
    }
    let lan = Lan::new();
    let dir = TempDir::new().unwrap();
    let reference = reference_runtime(&lan, &dir);
    // Debian's reference speaks up to 1.0.0.
    let list = lan.list_named(NET, "1.0.0", json!({"mode": "l3", "dns": {"nameservers": ["10.77.0.53"]}}));
    let (a, b) = (ctr(), ctr());
    let ours = lan.add(&list, "a", &a).unwrap();
    let theirs = reference.add(&list, "b", b.path(), IFNAME, "", json!({})).unwrap();

    // The same result but for the address and the sandbox.
    let shape = |r: &CniResult, ns: &TestNs| {
        let mut v = r.to_value("1.1.0").unwrap();
        assert_eq!(v["interfaces"][0]["sandbox"], ns.path_str());
        v["interfaces"][0]["sandbox"] = json!("<netns>");
        v["ips"][0]["address"] = json!("<address>");
        v
    };
    assert_eq!(shape(&ours, &a), shape(&theirs, &b));
    // The same link but for its address.
    let kernel = |ns: &TestNs| {
        let l = eth0(ns);
        (
            l["linkinfo"].clone(),
            l["flags"].clone(),
            l["mtu"].clone(),
            l["address"].clone(),
            l["link_index"].clone(),
        )
    };
    assert_eq!(kernel(&a), kernel(&b));
    let routes_of = |ns: &TestNs| {
        let mut r = routes(ns);
        r.as_array_mut().unwrap().iter_mut().for_each(|r| drop(r.as_object_mut().unwrap().remove("prefsrc")));
        r
    };
    assert_eq!(routes_of(&a), routes_of(&b));

    // Each CHECKs and DELs what the other made.
    lan.check(&list, "b", &b).unwrap();
    reference.check(&list, "a", a.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&list, "b", &b);
    reference.del(&list, "a", a.path(), IFNAME, "", json!({})).unwrap();
    lan.assert_clean(&a, &[]);
    assert_eq!(link_names(&b), ["lo"]);
}
