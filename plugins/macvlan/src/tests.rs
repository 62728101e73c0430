//! macvlan's decisions against the fake kernel (no root): what ADD makes and
//! in which order, that a failure at any step leaves nothing, what DEL and
//! CHECK do. tests/macvlan.rs proves the same stories on the real kernel.

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
        del(&args, ctr, &mut self.kernel.ipam())
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
    let mut c = json!({"cniVersion": "1.1.0", "name": "lan", "type": "macvlan", "master": "m0",
                       "ipam": {"type": "host-local"}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
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

#[test]
fn add_makes_the_macvlan_in_the_container_then_names_addresses_and_routes_it() {
    let mut w = World::new();
    with_route(&mut w);
    let res = w.add(&conf(json!({}))).unwrap();

    assert_eq!(
        w.kernel.changes(),
        [
            // Born in the container (from the host, which sees the master) …
            "host: add_link",
            // … told to announce itself, then given its name …
            "c1: set_sysctls",
            "c1: set_sysctls",
            "c1: rename",
            // … and only then an address: the lease is never taken for a link that failed.
            "ipam: ipam_add",
            "c1: set_sysctls",
            "c1: add_addr",
            "c1: set_up",
            "c1: add_route",
        ]
    );
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let m0 = w.host.link_by_name("m0").unwrap();
    assert_eq!(eth0.kind.as_deref(), Some("macvlan"));
    assert_eq!(
        (eth0.macvlan_mode, eth0.link, eth0.link_netnsid.is_some()),
        (Some(MacvlanMode::Bridge), Some(m0.index), true)
    );
    assert!(eth0.is_up());
    assert_eq!(w.ctr.sysctl("net/ipv4/conf/eth0/arp_notify").unwrap(), "1");
    let addrs = w.ctr.addrs(Some(eth0.index), Family::V4).unwrap();
    assert_eq!((addrs[0].addr.to_string(), addrs[0].prefix), ("10.88.0.5".into(), 16));
    let routes = w.ctr.routes(Family::V4, 0).unwrap();
    assert_eq!(routes.len(), 1);
    assert_eq!(
        (routes[0].dst.to_string(), routes[0].gateway),
        ("10.99.0.0".into(), Some("10.88.0.1".parse().unwrap()))
    );

    assert_eq!(res.interfaces.len(), 1);
    assert_eq!(
        (res.interfaces[0].name.as_str(), res.interfaces[0].sandbox.as_str()),
        ("eth0", "/run/netns/c1")
    );
    assert_eq!(res.interfaces[0].mac, eth0.mac_string());
    assert_eq!(res.ips[0].interface, Some(0));
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.88.0.5/16"]);
}

/// Run ADD with the n-th kernel or IPAM call failing, for every n a
/// successful ADD makes: either ADD still succeeds (a failed lookup may be
/// harmless) or nothing is left, and every change it would make has failed
/// once.
fn every_failure_rolls_back(extra: Value, setup: impl Fn(&mut World)) {
    let mut ok = World::new();
    setup(&mut ok);
    ok.add(&conf(extra.clone())).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
        setup(&mut w);
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EIO);
        match w.add(&conf(extra.clone())) {
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
    every_failure_rolls_back(json!({}), with_route);
}

#[test]
fn a_failure_at_any_step_leaves_nothing_with_the_master_in_the_container() {
    every_failure_rolls_back(json!({"linkInContainer": true, "master": "m1", "mtu": 1400}), |w| {
        w.ctr.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
        w.kernel.clear_calls();
    });
}

#[test]
fn a_failure_at_any_step_leaves_nothing_without_ipam() {
    let mut c = conf(json!({}));
    c.as_object_mut().unwrap().remove("ipam");
    let mut w = World::new();
    w.add(&c).unwrap();
    assert!(w.ctr.link_by_name("eth0").unwrap().is_up());
    for n in 1..=w.kernel.calls().len() {
        let mut w = World::new();
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EPERM);
        if w.add(&c).is_err() {
            assert_eq!(w.kernel.state(), before, "failure at call {n}");
        }
    }
}

#[test]
fn a_name_taken_during_add_is_reported_and_the_macvlan_removed() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.kernel.fail_on("rename", libc::EEXIST);
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert_eq!(e.msg, "container already has an interface named \"eth0\"");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn an_existing_interface_or_a_bad_mtu_is_refused_before_anything_is_made() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert!(e.msg.contains("already has an interface named \"eth0\""), "{e}");
    assert!(w.kernel.changes().is_empty(), "{:?}", w.kernel.calls());

    let mut w = World::new();
    let e = w.add(&conf(json!({"mtu": 9000}))).unwrap_err();
    assert_eq!(e.code, 7, "{e}");
    assert!(e.msg.contains("must be [0, master MTU(1500)]"), "{e}");
    assert!(w.kernel.changes().is_empty(), "{:?}", w.kernel.calls());
}

#[test]
fn a_refused_passthru_macvlan_says_why() {
    let mut w = World::new();
    let m0 = w.host.link_by_name("m0").unwrap().index;
    w.host.add_link(&NewLink::macvlan("other", m0, MacvlanMode::Bridge)).unwrap();
    let before = w.kernel.state();
    let e = w.add(&conf(json!({"mode": "passthru"}))).unwrap_err();
    assert!(e.msg.contains("creating a passthru macvlan on \"m0\""), "{e}");
    assert!(e.msg.ends_with("(a passthru macvlan must be its master's only macvlan)"), "{e}");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn with_link_in_container_the_macvlan_is_made_inside() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("m1", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    w.add(&conf(json!({"linkInContainer": true, "master": "m1", "mode": "vepa"}))).unwrap();
    assert_eq!(w.kernel.changes()[0], "c1: add_link");
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let m1 = w.ctr.link_by_name("m1").unwrap();
    assert_eq!(
        (eth0.link, eth0.link_netnsid, eth0.macvlan_mode),
        (Some(m1.index), None, Some(MacvlanMode::Vepa))
    );
    // The host's m0 of the same name-space index is not the parent.
    assert!(w.host.links().unwrap().iter().all(|l| l.kind.as_deref() != Some("macvlan")));
}

#[test]
fn without_a_master_the_default_route_interface_is_used() {
    let mut w = World::new();
    w.host.add_link(&NewLink::new("uplink", LinkKind::Dummy)).unwrap();
    let up = w.host.link_by_name("uplink").unwrap().index;
    w.host.set_up(up).unwrap();
    let mut default = common::netlink::rtnl::Route::new("0.0.0.0".parse().unwrap(), 0);
    default.oif = Some(up);
    w.host.add_route(&default).unwrap();
    let mut c = conf(json!({}));
    c.as_object_mut().unwrap().remove("master");
    w.add(&c).unwrap();
    assert_eq!(w.ctr.link_by_name("eth0").unwrap().link, Some(up));
}

#[test]
fn del_removes_link_and_lease_and_succeeds_when_they_are_gone() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.add(&conf(json!({}))).unwrap();
    w.del(&conf(json!({})), false).unwrap();
    assert_eq!(w.kernel.state(), before);
    w.del(&conf(json!({})), false).unwrap();

    // The netns went first (and the macvlan with it): the lease is still released.
    w.add(&conf(json!({}))).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&conf(json!({})), true).unwrap();
    assert!(w.kernel.leases().is_empty());
    assert_eq!(w.kernel.changes().last().map(String::as_str), Some("ipam: ipam_del"));
}

#[test]
fn del_releases_the_lease_while_the_interface_still_exists() {
    // dhcp sends its DHCPRELEASE through the container's interface.
    let mut w = World::new();
    w.add(&conf(json!({}))).unwrap();
    w.kernel.clear_calls();
    w.del(&conf(json!({})), false).unwrap();
    let changes = w.kernel.changes();
    let released = changes.iter().position(|c| c == "ipam: ipam_del");
    let deleted = changes.iter().position(|c| c.starts_with("c1: del_link"));
    assert!(released.is_some() && deleted.is_some() && released < deleted, "{changes:?}");
}

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    let c = conf(json!({"mode": "private"}));
    let res = w.add(&c).unwrap();
    w.check(&c, &res).unwrap();

    let e = w.check(&conf(json!({"mode": "bridge"})), &res).unwrap_err();
    assert!(e.msg.contains("has macvlan mode Some(Private), the config says Bridge"), "{e}");

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    w.ctr.set_mac(eth0.index, [2, 0, 0, 0, 0, 9]).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("has MAC 02:00:00:00:00:09, prevResult says"), "{e}");

    let addr = res.ips[0].address;
    w.ctr.del_addr(eth0.index, addr.addr, addr.prefix).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("lacks its address"), "{e}");

    w.del(&c, false).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("no lease"), "the lease is checked first: {e}");
}
