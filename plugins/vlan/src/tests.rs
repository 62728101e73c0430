//! vlan's decisions against the fake kernel (no root): what ADD makes and in
//! which order, the checks before anything is made, that a failure at any
//! step leaves nothing, what DEL and CHECK do. tests/vlan.rs proves the same
//! stories on a real kernel.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::Family;
use common::skel::Command;
use common::spec::Route;

/// A host with the master `m0` (up, MTU 1500) and a container netns "c1".
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (mut host, ctr) = (kernel.host(), kernel.netns("c1"));
        host.add_link(&NewLink::new("m0", LinkKind::Dummy)).unwrap();
        let m0 = host.link_by_name("m0").unwrap().index;
        host.set_up(m0).unwrap();
        kernel.clear_calls();
        World { kernel, host, ctr }
    }

    fn add(&mut self, conf: &Value) -> Result<CniResult> {
        let args = cmd_args(Command::Add, conf);
        let c = Config::load(&args)?;
        add(&args, &c, &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }

    fn del(&mut self, conf: &Value, netns_gone: bool) -> Result<()> {
        let args = cmd_args(Command::Del, conf);
        let ctr = if netns_gone { None } else { Some(&mut self.ctr) };
        on_master::del(&args, ctr, &mut self.kernel.ipam())
    }

    fn check(&mut self, conf: &Value, prev: &CniResult) -> Result<()> {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.to_value("1.1.0").unwrap();
        let args = cmd_args(Command::Check, &conf);
        let c = Config::load(&args)?;
        check(&args, &c, &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "v100", "type": "vlan", "master": "m0", "vlanId": 100,
                       "ipam": {"type": "host-local"}});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

fn with_route(w: &mut World) {
    let ip = common::spec::IpConfig {
        address: "10.88.0.5/16".parse().unwrap(),
        gateway: Some("10.88.0.1".parse().unwrap()),
        interface: None,
    };
    let routes = vec![Route::new("10.99.0.0/16".parse().unwrap(), None)];
    w.kernel.set_ipam_result(CniResult { ips: vec![ip], routes, ..CniResult::default() });
}

#[test]
fn add_makes_a_tagged_vlan_device_of_the_master_in_the_container() {
    let mut w = World::new();
    with_route(&mut w);
    let res = w.add(&conf(json!({"mtu": 1400}))).unwrap();
    assert_eq!(
        w.kernel.changes(),
        [
            "host: add_link",
            "c1: set_sysctls",
            "c1: set_sysctls",
            "c1: rename",
            "ipam: ipam_add",
            "c1: set_sysctls",
            "c1: add_addr",
            "c1: set_up",
            "c1: add_route",
        ]
    );
    let made = w.kernel.calls().into_iter().find(|c| c.contains("add_link")).unwrap();
    assert!(
        made.starts_with("host: add_link vlan vl") && made.ends_with(" parent=m0 netns=c1 mtu=1400"),
        "{made}"
    );
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let m0 = w.host.link_by_name("m0").unwrap();
    assert_eq!(
        (eth0.kind.as_deref(), eth0.vlan_id, eth0.vlan_protocol, eth0.mtu),
        (Some("vlan"), Some(100), Some(VlanProtocol::Dot1Q), 1400)
    );
    assert_eq!((eth0.link, eth0.link_netnsid.is_some(), eth0.is_up()), (Some(m0.index), true, true));
    let addrs = w.ctr.addrs(Some(eth0.index), Family::V4).unwrap();
    assert_eq!(addrs[0].addr.to_string(), "10.88.0.5");
    assert_eq!(res.interfaces.len(), 1);
    assert_eq!(
        (res.interfaces[0].name.as_str(), res.interfaces[0].sandbox.as_str(), res.interfaces[0].mac.as_str()),
        ("eth0", "/run/netns/c1", eth0.mac_string().as_str())
    );
    assert_eq!(res.ips[0].interface, Some(0));
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.88.0.5/16"]);
}

#[test]
fn config_errors_are_found_before_anything_is_made() {
    for (extra, code, msg) in [
        (json!({"master": null}), 7, "\"master\" field is required"),
        (json!({"vlanId": 4095}), 7, "invalid VLAN ID 4095 (must be between 0 and 4094)"),
        (json!({"vlanId": -1}), 7, "invalid VLAN ID -1"),
        (json!({"mtu": 1501}), 7, "invalid MTU 1501, must be [0, master MTU(1500)]"),
        (json!({"mtu": 67}), 7, "invalid MTU 67"),
        (json!({"master": "nope0"}), 7, "failed to look up master \"nope0\": no such interface"),
        (json!({"master": "lo"}), 7, "master \"lo\" is a loopback device: a VLAN needs an Ethernet master"),
        (json!({"vlanId": "100"}), 7, "vlanId"),
    ] {
        let mut w = World::new();
        let e = w.add(&conf(extra.clone())).unwrap_err();
        assert_eq!(e.code, code, "{extra}: {e}");
        assert!(e.msg.contains(msg), "{extra}: {e}");
        assert!(w.kernel.changes().is_empty(), "{extra}: {:?}", w.kernel.calls());
    }
    // 0 (priority tags only) and 4094 are VLAN ids the kernel makes.
    for id in [0, 4094] {
        let mut w = World::new();
        w.add(&conf(json!({"vlanId": id}))).unwrap();
        assert_eq!(w.ctr.link_by_name("eth0").unwrap().vlan_id, Some(id));
    }
}

#[test]
fn a_vlan_id_taken_on_the_master_is_explained_and_leaves_nothing() {
    let mut w = World::new();
    w.add(&conf(json!({}))).unwrap();
    let mut other = w.kernel.netns("c2");
    let before = w.kernel.state();
    let args = cmd_args(Command::Add, &conf(json!({})));
    let e =
        add(&args, &Config::load(&args).unwrap(), &mut w.host, &mut other, &mut w.kernel.ipam()).unwrap_err();
    assert!(e.msg.starts_with("creating VLAN 100 on \"m0\": File exists"), "{e}");
    assert!(e.msg.contains("one per VLAN ID and master"), "{e}");
    assert_eq!(w.kernel.state(), before);
}

/// Run ADD with the n-th kernel or IPAM call failing, for every n a
/// successful ADD makes: either ADD still succeeds or nothing is left, and
/// every change it would make has failed once.
fn every_failure_rolls_back(c: Value, setup: impl Fn(&mut World)) {
    let mut ok = World::new();
    setup(&mut ok);
    ok.add(&c).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
        setup(&mut w);
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EIO);
        match w.add(&c) {
            Err(_) => {
                failed += 1;
                assert_eq!(w.kernel.state(), before, "failure at call {n}: {:?}", w.kernel.calls());
            }
            Ok(_) => assert!(w.ctr.link_by_name("eth0").is_ok() && w.kernel.leases().len() == 1, "call {n}"),
        }
    }
    assert!(failed >= ok.kernel.changes().len(), "{failed} of {calls} failures, {:?}", ok.kernel.changes());
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    every_failure_rolls_back(conf(json!({})), with_route);
}

#[test]
fn a_failure_at_any_step_leaves_nothing_with_the_master_in_the_container() {
    every_failure_rolls_back(conf(json!({"linkInContainer": true, "master": "m1"})), |w| {
        w.ctr.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
        w.kernel.clear_calls();
    });
}

#[test]
fn without_ipam_the_link_is_just_up() {
    let mut w = World::new();
    let res = w.add(&conf(json!({"ipam": null}))).unwrap();
    assert!(res.ips.is_empty());
    assert!(w.ctr.link_by_name("eth0").unwrap().is_up());
    assert!(!w.kernel.changes().iter().any(|c| c.starts_with("ipam")));
}

#[test]
fn with_link_in_container_the_vlan_is_made_inside() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    let c = conf(json!({"linkInContainer": true, "master": "m1", "vlanId": 7}));
    let res = w.add(&c).unwrap();
    assert_eq!(w.kernel.changes()[0], "c1: add_link");
    let (eth0, m1) = (w.ctr.link_by_name("eth0").unwrap(), w.ctr.link_by_name("m1").unwrap());
    assert_eq!((eth0.link, eth0.link_netnsid, eth0.vlan_id), (Some(m1.index), None, Some(7)));
    w.check(&c, &res).unwrap();
}

#[test]
fn del_releases_the_lease_first_then_the_link_and_succeeds_when_they_are_gone() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.add(&conf(json!({}))).unwrap();
    w.kernel.clear_calls();
    w.del(&conf(json!({})), false).unwrap();
    assert_eq!(w.kernel.changes(), ["ipam: ipam_del", "c1: del_link_by_name"]);
    assert_eq!(w.kernel.state(), before);
    w.del(&conf(json!({})), false).unwrap();

    // The netns went first; the lease is still released, the master not needed.
    w.add(&conf(json!({}))).unwrap();
    w.kernel.delete_netns("c1");
    w.host.del_link_by_name("m0").unwrap();
    w.del(&conf(json!({})), true).unwrap();
    assert!(w.kernel.leases().is_empty());
}

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    let c = conf(json!({}));
    let res = w.add(&c).unwrap();
    w.check(&c, &res).unwrap();

    let e = w.check(&conf(json!({"vlanId": 200})), &res).unwrap_err();
    assert_eq!(e.msg, "eth0 is VLAN Some(100) (Some(Dot1Q)), the config says 200 (802.1Q)");
    let e = w.check(&conf(json!({"mtu": 1400})), &res).unwrap_err();
    assert!(e.msg.contains("has MTU 1500, the config says 1400"), "{e}");
    w.host.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
    let e = w.check(&conf(json!({"master": "m1"})), &res).unwrap_err();
    assert_eq!(e.msg, "eth0 is not on master \"m1\"");

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    w.ctr.set_mac(eth0.index, [2, 0, 0, 0, 0, 9]).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("has MAC 02:00:00:00:00:09, prevResult says"), "{e}");

    w.ctr.del_link_by_name("eth0").unwrap();
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    let e =
        w.check(&c, &CniResult { interfaces: res.interfaces.clone(), ..CniResult::default() }).unwrap_err();
    assert_eq!(e.msg, "eth0 is not a vlan link");
}
