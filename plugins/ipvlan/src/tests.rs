//! ipvlan's decisions against the fake kernel (no root): what ADD makes and
//! in which order, the chained case without IPAM, that a failure at any step
//! leaves nothing, what DEL and CHECK do. tests/ipvlan.rs proves the same
//! stories on a real kernel.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::{Family, IpvlanMode, MacvlanMode};
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

    fn mac_of(&mut self, name: &str) -> String {
        self.host.link_by_name(name).unwrap().mac_string()
    }
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "lan", "type": "ipvlan", "master": "m0",
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

/// IPAM's answer with a route, so ADD exercises every step.
fn with_route(w: &mut World) {
    let ip = common::spec::IpConfig {
        address: "10.88.0.5/16".parse().unwrap(),
        gateway: Some("10.88.0.1".parse().unwrap()),
        interface: None,
    };
    let routes = vec![Route::new("10.99.0.0/16".parse().unwrap(), None)];
    w.kernel.set_ipam_result(CniResult { ips: vec![ip], routes, ..CniResult::default() });
}

/// What a plugin before ipvlan in a chain hands over: the master as its one
/// interface (no sandbox), and an address.
fn chained(master: &str) -> Value {
    conf(json!({"master": null, "ipam": null, "prevResult": {"cniVersion": "1.1.0",
        "interfaces": [{"name": master}],
        "ips": [{"address": "10.1.2.2/24", "gateway": "10.1.2.1", "interface": 0}],
        "routes": [{"dst": "10.9.0.0/16"}],
        "dns": {"nameservers": ["10.1.2.53"]}}}))
}

#[test]
fn add_makes_an_l2_ipvlan_in_the_container_with_the_masters_mac() {
    let mut w = World::new();
    with_route(&mut w);
    let res = w.add(&conf(json!({}))).unwrap();
    assert_eq!(
        w.kernel.changes(),
        [
            // Born in the container (from the host, which sees the master), told
            // to announce itself, named; then an address, the link up, a route.
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
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let m0 = w.host.link_by_name("m0").unwrap();
    assert_eq!(
        (eth0.kind.as_deref(), eth0.ipvlan_mode, eth0.ipvlan_flags),
        (Some("ipvlan"), Some(IpvlanMode::L2), Some(IpvlanFlags::Bridge))
    );
    assert_eq!((eth0.link, eth0.link_netnsid.is_some(), eth0.is_up()), (Some(m0.index), true, true));
    let addrs = w.ctr.addrs(Some(eth0.index), Family::V4).unwrap();
    assert_eq!((addrs[0].addr.to_string(), addrs[0].prefix), ("10.88.0.5".into(), 16));
    assert_eq!(w.ctr.routes(Family::V4, 0).unwrap()[0].gateway, Some("10.88.0.1".parse().unwrap()));

    // The result: one interface in the sandbox, reporting the master's MAC, every IP on it.
    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!((i.name.as_str(), i.sandbox.as_str()), ("eth0", "/run/netns/c1"));
    assert_eq!(i.mac, m0.mac_string());
    assert_eq!(res.ips[0].interface, Some(0));
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.88.0.5/16"]);
}

#[test]
fn each_mode_is_made_and_a_bad_one_is_refused() {
    for (mode, want) in [("l2", IpvlanMode::L2), ("l3", IpvlanMode::L3), ("l3s", IpvlanMode::L3s)] {
        let mut w = World::new();
        w.add(&conf(json!({"mode": mode}))).unwrap();
        assert_eq!(w.ctr.link_by_name("eth0").unwrap().ipvlan_mode, Some(want), "{mode}");
    }
    let mut w = World::new();
    let e = w.add(&conf(json!({"mode": "L2"}))).unwrap_err();
    assert_eq!((e.code, e.msg.as_str()), (7, "unknown ipvlan mode \"L2\" (must be l2, l3 or l3s)"));
    assert!(w.kernel.changes().is_empty());
}

#[test]
fn chained_without_ipam_the_master_and_addresses_come_from_prev_result() {
    let mut w = World::new();
    w.host.add_link(&NewLink::new("up1", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    let res = w.add(&chained("up1")).unwrap();
    assert!(!w.kernel.changes().iter().any(|c| c.starts_with("ipam")), "no IPAM: {:?}", w.kernel.changes());
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert_eq!(
        eth0.link,
        Some(w.host.link_by_name("up1").unwrap().index),
        "prevResult's interface is the master"
    );
    let addrs = w.ctr.addrs(Some(eth0.index), Family::V4).unwrap();
    assert_eq!(addrs[0].addr.to_string(), "10.1.2.2");
    let routes = w.ctr.routes(Family::V4, 0).unwrap();
    assert_eq!(
        (routes[0].dst.to_string(), routes[0].gateway),
        ("10.9.0.0".into(), Some("10.1.2.1".parse().unwrap()))
    );
    // The result is prevResult's with the ipvlan as its only interface.
    assert_eq!(res.interfaces.len(), 1);
    assert_eq!(
        (res.interfaces[0].name.as_str(), res.interfaces[0].sandbox.as_str()),
        ("eth0", "/run/netns/c1")
    );
    assert_eq!(res.interfaces[0].mac, w.mac_of("up1"));
    assert_eq!((res.ips.len(), res.ips[0].interface), (1, Some(0)));
    assert_eq!(res.dns.nameservers, ["10.1.2.53"], "prevResult's DNS when the config has none");
    assert!(w.kernel.leases().is_empty());

    // CHECK of the chained attachment (no master configured, none to compare).
    let mut c = chained("up1");
    c.as_object_mut().unwrap().remove("prevResult");
    w.check(&c, &res).unwrap();
    // DEL: no IPAM to call.
    w.kernel.clear_calls();
    w.del(&c, false).unwrap();
    assert_eq!(w.kernel.changes(), ["c1: del_link_by_name"]);
}

#[test]
fn chained_without_one_named_interface_is_a_config_error() {
    let mut w = World::new();
    let mut c = chained("up1");
    c["prevResult"]["interfaces"] = json!([{"name": "a"}, {"name": "b"}]);
    let e = w.add(&c).unwrap_err();
    assert_eq!(e.code, 7);
    assert!(e.msg.contains("prevResult lacks a single named interface"), "{e}");
    // A configured master wins over prevResult; its addresses are still used.
    let mut c = chained("up1");
    c["master"] = json!("m0");
    let res = w.add(&c).unwrap();
    assert_eq!(w.ctr.link_by_name("eth0").unwrap().link, Some(w.host.link_by_name("m0").unwrap().index));
    assert_eq!(res.ips[0].address.to_string(), "10.1.2.2/24");
}

#[test]
fn a_second_ipvlan_sets_the_mode_of_the_masters_others_and_check_says_so() {
    let mut w = World::new();
    let l2 = conf(json!({"mode": "l2"}));
    let res = w.add(&l2).unwrap();
    w.check(&l2, &res).unwrap();
    // Another network on the same master, in l3, from another container.
    let mut other = w.kernel.netns("c2");
    let mut args = cmd_args(Command::Add, &conf(json!({"mode": "l3", "name": "other"})));
    args.container_id = "c2".into();
    add(&args, &Config::load(&args).unwrap(), &mut w.host, &mut other, &mut w.kernel.ipam()).unwrap();
    let e = w.check(&l2, &res).unwrap_err();
    assert!(e.msg.starts_with("eth0 has ipvlan mode l3, the config says l2"), "{e}");
    assert!(e.msg.contains("share one mode"), "{e}");
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
            Ok(_) => assert!(w.ctr.link_by_name("eth0").is_ok(), "call {n}"),
        }
    }
    assert!(failed >= ok.kernel.changes().len(), "{failed} of {calls} failures, {:?}", ok.kernel.changes());
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    every_failure_rolls_back(conf(json!({"mode": "l3"})), with_route);
}

#[test]
fn a_failure_at_any_step_leaves_nothing_with_the_master_in_the_container() {
    every_failure_rolls_back(conf(json!({"linkInContainer": true, "master": "m1", "mtu": 1400})), |w| {
        w.ctr.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
        w.kernel.clear_calls();
    });
}

#[test]
fn a_failure_at_any_step_leaves_nothing_when_chained() {
    every_failure_rolls_back(chained("m0"), |_| {});
}

#[test]
fn what_the_master_cannot_carry_is_refused_before_or_without_leaving_anything() {
    // An MTU above the master's: the kernel would make it; we refuse first.
    let mut w = World::new();
    let e = w.add(&conf(json!({"mtu": 9000}))).unwrap_err();
    assert_eq!(e.code, 7, "{e}");
    assert!(e.msg.contains("must be [0, master MTU(1500)]"), "{e}");
    assert!(w.kernel.changes().is_empty(), "{:?}", w.kernel.calls());

    // A master that carries a macvlan: the kernel's EBUSY, explained.
    let mut w = World::new();
    let m0 = w.host.link_by_name("m0").unwrap().index;
    w.host.add_link(&NewLink::macvlan("mv0", m0, MacvlanMode::Bridge)).unwrap();
    let before = w.kernel.state();
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert!(e.msg.starts_with("creating an l2 ipvlan on \"m0\": Device or resource busy"), "{e}");
    assert!(e.msg.ends_with("cannot carry ipvlans)"), "{e}");
    assert_eq!(w.kernel.state(), before);

    // The loopback, and a name taken in the container.
    let e = w.add(&conf(json!({"master": "lo"}))).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (7, "master \"lo\" is a loopback device: an ipvlan needs an Ethernet master")
    );
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert!(e.msg.contains("already has an interface named \"eth0\""), "{e}");
}

#[test]
fn without_a_master_the_default_route_interface_is_used() {
    let mut w = World::new();
    let e = w.add(&conf(json!({"master": null}))).unwrap_err();
    assert!(e.msg.contains("no default route interface"), "{e}");
    w.host.add_link(&NewLink::new("uplink", LinkKind::Dummy)).unwrap();
    let up = w.host.link_by_name("uplink").unwrap().index;
    w.host.set_up(up).unwrap();
    let mut default = common::netlink::rtnl::Route::new("0.0.0.0".parse().unwrap(), 0);
    default.oif = Some(up);
    w.host.add_route(&default).unwrap();
    w.add(&conf(json!({"master": null}))).unwrap();
    assert_eq!(w.ctr.link_by_name("eth0").unwrap().link, Some(up));
}

#[test]
fn with_link_in_container_the_ipvlan_is_made_inside() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    let c = conf(json!({"linkInContainer": true, "master": "m1", "mode": "l3s"}));
    let res = w.add(&c).unwrap();
    assert_eq!(w.kernel.changes()[0], "c1: add_link");
    let (eth0, m1) = (w.ctr.link_by_name("eth0").unwrap(), w.ctr.link_by_name("m1").unwrap());
    assert_eq!((eth0.link, eth0.link_netnsid, eth0.mac), (Some(m1.index), None, m1.mac));
    w.check(&c, &res).unwrap();
    // The host's m0 is not the master here.
    let e = w.check(&conf(json!({"linkInContainer": true, "mode": "l3s"})), &res).unwrap_err();
    assert!(e.msg.contains("master \"m0\" in the container netns"), "{e}");
}

#[test]
fn del_releases_the_lease_first_then_the_link_and_succeeds_when_they_are_gone() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.add(&conf(json!({}))).unwrap();
    w.kernel.clear_calls();
    w.del(&conf(json!({})), false).unwrap();
    assert_eq!(
        w.kernel.changes(),
        ["ipam: ipam_del", "c1: del_link_by_name"],
        "dhcp releases through the link"
    );
    assert_eq!(w.kernel.state(), before);
    w.del(&conf(json!({})), false).unwrap();

    w.add(&conf(json!({}))).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&conf(json!({})), true).unwrap();
    assert!(w.kernel.leases().is_empty());
}

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    let c = conf(json!({"mode": "l3"}));
    let res = w.add(&c).unwrap();
    w.check(&c, &res).unwrap();

    let e = w.check(&conf(json!({"mode": "l3", "mtu": 1400})), &res).unwrap_err();
    assert!(e.msg.contains("has MTU 1500, the config says 1400"), "{e}");
    w.host.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
    let e = w.check(&conf(json!({"mode": "l3", "master": "m1"})), &res).unwrap_err();
    assert_eq!(e.msg, "eth0 is not on master \"m1\"");
    let mut other = res.clone();
    other.interfaces[0].mac = "02:00:00:00:00:09".into();
    let e = w.check(&c, &other).unwrap_err();
    assert!(e.msg.contains("prevResult says 02:00:00:00:00:09"), "{e}");

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let addr = res.ips[0].address;
    w.ctr.del_addr(eth0.index, addr.addr, addr.prefix).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("lacks its address"), "{e}");

    w.del(&c, false).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("no lease"), "the lease is checked first: {e}");
    let e = w.check(&conf(json!({"ipam": null})), &CniResult::default()).unwrap_err();
    assert!(e.msg.contains("no container interface"), "{e}");
}
