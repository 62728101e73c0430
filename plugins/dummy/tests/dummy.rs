//! Root tests of the dummy plugin, driven as libcni drives it.
//!
//! They need a kernel with the dummy link type. The development machines'
//! kernel has none, so there they skip with a message; they run on Debian
//! 12's 6.1 in the VM (`scripts/vm-test --tests dummy`; CI: tests/vm/ci).
//!
//! Each test builds its own world: a "host" netns the plugin runs in and a
//! container whose own interface `up0` (a veth, as another plugin would
//! give it) reaches a peer at 10.50.0.1; the peer routes the dummy's subnet
//! through the container, so a ping proves the dummy's address serves.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;

use serde_json::{json, Value};
use test_harness::*;

/// Skips (saying why) without root or without the dummy link type.
macro_rules! require_dummy {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        if !kernel_has_dummy() {
            eprintln!(
                "skipped: this kernel has no dummy link type (module dummy); \
                 run it on Debian 12's 6.1: scripts/vm-test --tests dummy"
            );
            return;
        }
    };
}

fn kernel_has_dummy() -> bool {
    let probe = TestNs::new().unwrap();
    probe.ip(&["link", "add", "probe0", "type", "dummy"]).is_ok()
}

const NET: &str = "svc";
const IFNAME: &str = "dm0";

struct World {
    host: HostNs,
    peer: TestNs,
    ctr: ContainerNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl World {
    fn new() -> World {
        let host = HostNs::with_lo().unwrap();
        let (peer, ctr) = (TestNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
        veth(&ctr, "up0", &peer, "p0").unwrap();
        ctr.ip(&["addr", "add", "10.50.0.2/24", "dev", "up0"]).unwrap();
        peer.ip(&["addr", "add", "10.50.0.1/24", "dev", "p0"]).unwrap();
        peer.ip(&["route", "add", "10.77.0.0/24", "via", "10.50.0.2"]).unwrap();
        let (rt, cache) = runtime_in(&host);
        World { host, peer, ctr, rt, _cache: cache, data: TempDir::new().unwrap() }
    }

    fn ipam(&self) -> Value {
        json!({"type": "host-local", "dataDir": self.data.path(),
               "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10"}]],
               "routes": [{"dst": "10.88.0.0/16"}]})
    }

    fn list(&self, ver: &str, ipam: Value) -> NetConfList {
        conflist_value(&json!({"cniVersion": ver, "name": NET, "plugins": [{"type": "dummy", "ipam": ipam}]}))
    }

    fn add(&self, list: &NetConfList, id: &str) -> Result<CniResult, InvokeError> {
        self.rt.add(list, id, self.ctr.path(), IFNAME, "", json!({}))
    }

    fn del(&self, list: &NetConfList, id: &str) {
        self.rt.del(list, id, self.ctr.path(), IFNAME, "", json!({})).unwrap();
    }

    fn leases(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join(NET)) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// Only `lo` and `up0` in the container, only `lo` on the host, no lease.
    fn assert_clean(&self) {
        assert_eq!(link_names(&self.host), ["lo"]);
        let mut have = link_names(&self.ctr);
        have.sort();
        assert_eq!(have, ["lo", "up0"], "stray link in the container");
        assert!(self.leases().is_empty(), "stray lease: {:?}", self.leases());
    }
}

#[test]
fn add_gives_an_address_that_serves_and_del_removes_it() {
    require_dummy!();
    let w = World::new();
    let list = w.list("1.1.0", w.ipam());
    let res = w.add(&list, "c1").unwrap();

    let l = link(&w.ctr, IFNAME).expect("dm0 exists");
    assert_eq!(l["linkinfo"]["info_kind"], "dummy", "{l}");
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{l}");
    assert_eq!(
        addrs(&w.ctr, IFNAME).iter().filter(|a| a.starts_with("10.")).collect::<Vec<_>>(),
        ["10.77.0.10/24"]
    );
    assert!(has_route(&w.ctr, "10.88.0.0/16"), "IPAM's route through the dummy");
    assert_eq!(link_names(&w.host), ["lo"], "nothing on the host");

    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!((i.name.as_str(), i.sandbox.as_str()), (IFNAME, w.ctr.path_str().as_str()));
    assert_eq!(l["address"].as_str(), Some(i.mac.as_str()));
    assert_eq!((res.ips[0].address.to_string(), res.ips[0].interface), ("10.77.0.10/24".into(), Some(0)));

    // The address answers, reached through the container's real interface.
    assert!(ping(&w.peer, "10.77.0.10"), "the peer reaches the dummy's address");

    w.rt.check(&list, "c1", w.ctr.path(), IFNAME, "", json!({})).unwrap();
    w.del(&list, "c1");
    w.assert_clean();
    assert!(!ping_timeout(&w.peer, "10.77.0.10", std::time::Duration::from_millis(500)));
    w.del(&list, "c1");
}

#[test]
fn results_in_old_and_new_versions() {
    require_dummy!();
    let w = World::new();
    for ver in ["0.2.0", "0.4.0", "1.1.0"] {
        let list = w.list(ver, w.ipam());
        let rtc = RuntimeConf::new("c1", w.ctr.path(), IFNAME);
        let req = w.rt.request(&list, 0, None, &rtc).unwrap();
        let out = w.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        if ver == "0.2.0" {
            assert_eq!(v["ip4"]["ip"], "10.77.0.10/24", "{v}");
        } else {
            assert_eq!(
                (v["interfaces"][0]["name"].as_str(), v["ips"][0]["interface"].as_u64()),
                (Some(IFNAME), Some(0)),
                "{v}"
            );
        }
        w.rt.del_rt(&list, &rtc).unwrap();
        w.assert_clean();
    }
}

#[test]
fn failures_leave_nothing() {
    require_dummy!();
    let w = World::new();
    // No IPAM: code 7 before anything.
    for ipam in [json!({}), Value::Null] {
        let mut v = json!({"cniVersion": "1.1.0", "name": NET, "plugins": [{"type": "dummy", "ipam": ipam}]});
        if v["plugins"][0]["ipam"].is_null() {
            v["plugins"][0].as_object_mut().unwrap().remove("ipam");
        }
        let e = w.add(&conflist_value(&v), "c1").unwrap_err();
        assert_eq!(e.code(), Some(7), "{e}");
        assert!(e.msg().contains("requires an IPAM configuration"), "{e}");
        w.assert_clean();
    }
    // IPAM's route cannot be installed: the dummy and the lease go.
    let mut ipam = w.ipam();
    ipam["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]);
    let e = w.add(&w.list("1.1.0", ipam), "c1").unwrap_err();
    assert!(e.msg().contains("route"), "{e}");
    w.assert_clean();
    // The name is taken: the link that has it stays.
    let e = w.rt.add(&w.list("1.1.0", w.ipam()), "c1", w.ctr.path(), "up0", "", json!({})).unwrap_err();
    assert!(e.msg().contains("already has an interface named \"up0\""), "{e}");
    assert_eq!(link(&w.ctr, "up0").unwrap()["linkinfo"]["info_kind"], "veth");
    w.assert_clean();
}

#[test]
fn check_notices_drift_and_del_needs_no_netns() {
    require_dummy!();
    let w = World::new();
    let list = w.list("1.1.0", w.ipam());
    w.add(&list, "c1").unwrap();
    let check = || w.rt.check(&list, "c1", w.ctr.path(), IFNAME, "", json!({}));
    check().unwrap();
    w.ctr.ip(&["addr", "del", "10.77.0.10/24", "dev", IFNAME]).unwrap();
    assert!(check().unwrap_err().msg().contains("lacks its address 10.77.0.10/24"));
    w.ctr.ip(&["addr", "add", "10.77.0.10/24", "dev", IFNAME]).unwrap();
    w.ctr.ip(&["route", "add", "10.88.0.0/16", "dev", IFNAME]).unwrap();
    check().unwrap();
    w.ctr.ip(&["link", "set", IFNAME, "address", "02:bb:00:00:00:01"]).unwrap();
    assert!(check().unwrap_err().msg().contains("MAC"));
    w.ctr.ip(&["link", "del", IFNAME]).unwrap();
    assert!(check().unwrap_err().msg().contains("missing"));

    // DEL with the netns gone (or not given) still releases the lease.
    w.rt.del(&list, "c1", "", IFNAME, "", json!({})).unwrap();
    assert!(w.leases().is_empty());
    w.rt.del(&list, "c1", "/run/netns/cni-t-gone", IFNAME, "", json!({})).unwrap();
}

#[test]
fn the_cnitool_example_works() {
    require_dummy!();
    let w = World::new();
    let text = std::fs::read_to_string(format!(
        "{}/../../conf-examples/cnitool/dummy.conflist",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let list = conflist(&text);
    let res = w.rt.add(&list, "c1", w.ctr.path(), IFNAME, "", json!({})).unwrap();
    let got: Vec<String> = res.ips.iter().map(|ip| ip.address.to_string()).collect();
    assert_eq!(got, ["192.0.2.10/32", "2001:db8::10/128"]);
    let have = addrs(&w.ctr, IFNAME);
    assert!(
        have.contains(&"192.0.2.10/32".to_string()) && have.contains(&"2001:db8::10/128".to_string()),
        "{have:?}"
    );
    w.peer.ip(&["route", "add", "192.0.2.10/32", "via", "10.50.0.2"]).unwrap();
    assert!(ping(&w.peer, "192.0.2.10"));
    w.rt.check(&list, "c1", w.ctr.path(), IFNAME, "", json!({})).unwrap();
    w.rt.del(&list, "c1", w.ctr.path(), IFNAME, "", json!({})).unwrap();
    w.assert_clean();
}
