//! tap's decisions against the fake kernel (no root): what ADD makes and in
//! which order, that a failure at any step leaves nothing, what DEL and
//! CHECK do. tests/tap.rs proves the same stories on the real kernel.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::{Family, LinkKind, NewLink};
use common::skel::Command;
use common::spec::Route;
use common::tap::TunInfo;

/// A host and a container netns "c1" holding a bridge `br0` (up).
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (host, mut ctr) = (kernel.host(), kernel.netns("c1"));
        ctr.add_link(&NewLink::bridge("br0")).unwrap();
        let br0 = ctr.link_by_name("br0").unwrap().index;
        ctr.set_up(br0).unwrap();
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
        check(&args, &c, &mut self.ctr, &mut self.kernel.ipam())
    }
}

fn conf(extra: Value) -> Value {
    let mut c =
        json!({"cniVersion": "1.1.0", "name": "vmnet", "type": "tap", "ipam": {"type": "host-local"}});
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

#[test]
fn add_makes_the_tap_in_the_container_then_sets_it_up_with_addresses_and_routes() {
    let mut w = World::new();
    with_route(&mut w);
    let c = conf(json!({"multiQueue": true, "owner": 1000, "group": 1001, "mtu": 9000,
                        "mac": "02:00:00:00:00:07", "bridge": "br0"}));
    let res = w.add(&c).unwrap();

    assert_eq!(
        w.kernel.changes(),
        [
            // Made in the container, under its name; set up before the lease is taken …
            "c1: add_tap",
            "c1: set_mtu",
            "c1: set_mac",
            "c1: set_master",
            // … and only then an address: the lease is never taken for a tap that failed.
            "ipam: ipam_add",
            "c1: set_sysctls",
            "c1: add_addr",
            "c1: set_up",
            "c1: add_route",
        ]
    );
    assert!(w.kernel.calls().iter().any(|c| c == "c1: add_tap eth0 owner=1000 group=1001 multi_queue"));
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let br0 = w.ctr.link_by_name("br0").unwrap();
    let want = TunInfo {
        owner: Some(1000),
        group: Some(1001),
        multi_queue: true,
        ..TunInfo::of(&NewTap::default())
    };
    assert_eq!(eth0.tun, Some(want));
    assert_eq!(
        (eth0.mtu, eth0.mac_string(), eth0.master),
        (9000, "02:00:00:00:00:07".into(), Some(br0.index))
    );
    assert!(eth0.is_up());
    let addrs = w.ctr.addrs(Some(eth0.index), Family::V4).unwrap();
    assert_eq!((addrs[0].addr.to_string(), addrs[0].prefix), ("10.88.0.5".into(), 16));
    let routes = w.ctr.routes(Family::V4, 0).unwrap();
    assert_eq!(
        (routes[0].dst.to_string(), routes[0].gateway),
        ("10.99.0.0".into(), Some("10.88.0.1".parse().unwrap()))
    );
    assert!(!w.host.links().unwrap().iter().any(|l| l.name != "lo"), "nothing on the host");

    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!(
        (i.name.as_str(), i.sandbox.as_str(), i.mac.as_str()),
        ("eth0", "/run/netns/c1", "02:00:00:00:00:07")
    );
    assert_eq!(res.ips[0].interface, Some(0));
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.88.0.5/16"]);
}

#[test]
fn without_ipam_the_tap_is_up_without_addresses() {
    let mut w = World::new();
    let res = w.add(&conf(json!({"ipam": null}))).unwrap();
    assert!(res.ips.is_empty() && res.routes.is_empty());
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert!(eth0.is_up());
    assert_eq!(eth0.tun, Some(TunInfo::of(&NewTap::default())), "single queue, no owner or group");
    assert!(w.kernel.leases().is_empty());
}

/// Run ADD with the n-th kernel or IPAM call failing, for every n a
/// successful ADD makes: either ADD still succeeds or nothing is left, and
/// every change it would make has failed once.
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
            Ok(_) => {
                let leases = ok.kernel.leases().len();
                assert!(w.ctr.link_by_name("eth0").is_ok() && w.kernel.leases().len() == leases, "call {n}")
            }
        }
    }
    assert!(failed >= ok.kernel.changes().len(), "{failed} of {calls} failures, {:?}", ok.kernel.changes());
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    every_failure_rolls_back(
        json!({"multiQueue": true, "owner": 0, "mtu": 1400, "mac": "02:00:00:00:00:08", "bridge": "br0"}),
        with_route,
    );
}

#[test]
fn a_failure_at_any_step_leaves_nothing_without_ipam() {
    every_failure_rolls_back(json!({"ipam": null}), |_| {});
}

#[test]
fn a_name_taken_during_add_is_reported_and_nothing_is_left() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.kernel.fail_on("add_tap", libc::EBUSY);
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert_eq!(e.msg, "container already has an interface named \"eth0\"");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn a_taken_name_or_a_missing_bridge_is_refused_before_anything_is_made() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert!(e.msg.contains("already has an interface named \"eth0\""), "{e}");
    assert!(w.kernel.changes().is_empty(), "{:?}", w.kernel.calls());

    for (bridge, msg) in [
        ("nope0", "bridge \"nope0\" in the container netns: no such interface"),
        ("lo", "\"lo\" in the container netns is not a bridge"),
    ] {
        let mut w = World::new();
        let e = w.add(&conf(json!({"bridge": bridge}))).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, msg));
        assert!(w.kernel.changes().is_empty(), "{:?}", w.kernel.calls());
    }
}

#[test]
fn config_values_are_checked_and_fields_match_ignoring_case() {
    let load = |extra: Value| Config::load(&cmd_args(Command::Add, &conf(extra)));
    for (bad, msg) in [
        (json!({"mtu": 67}), "invalid MTU 67"),
        (json!({"mtu": 65522}), "invalid MTU 65522 (must be 68-65521"),
        (json!({"owner": -1}), "\"owner\""),
        (json!({"owner": 4294967295u64}), "invalid owner 4294967295"),
        (json!({"group": 4294967295u64}), "invalid group 4294967295"),
        (json!({"mac": "01:00:5e:00:00:01"}), "multicast"),
        (json!({"bridge": "a/b"}), "invalid bridge name \"a/b\""),
        (json!({"selinuxContext": "a\u{0}b"}), "NUL"),
        (json!({"multiQueue": "yes"}), "\"multiQueue\""),
    ] {
        let e = load(bad.clone()).unwrap_err();
        assert_eq!(e.code, 7, "{bad}: {e}");
        assert!(e.msg.contains(msg), "{bad}: {e}");
    }
    let c = load(json!({"selinuxcontext": "system_u:system_r:svirt_t:s0", "MULTIQUEUE": true, "Owner": 0}))
        .unwrap();
    assert_eq!(
        (c.selinux_context.as_deref(), c.multi_queue, c.owner, c.mtu),
        (Some("system_u:system_r:svirt_t:s0"), true, Some(0), None)
    );
    // runtimeConfig.mac wins over the config's own.
    let mut v = conf(json!({"mac": "02:00:00:00:00:01", "runtimeConfig": {"mac": "02:00:00:00:00:02"}}));
    v["capabilities"] = json!({"mac": true});
    assert_eq!(Config::load(&cmd_args(Command::Add, &v)).unwrap().mac, Some([2, 0, 0, 0, 0, 2]));
}

#[test]
fn the_selinux_context_goes_to_the_kernel_seam() {
    let mut w = World::new();
    w.add(&conf(json!({"selinuxContext": "system_u:system_r:svirt_t:s0", "ipam": null}))).unwrap();
    assert!(w.kernel.calls().iter().any(|c| c == "c1: add_tap eth0 selinux=system_u:system_r:svirt_t:s0"));
}

#[test]
fn del_removes_tap_and_lease_and_succeeds_when_they_are_gone() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.add(&conf(json!({}))).unwrap();
    w.kernel.clear_calls();
    w.del(&conf(json!({})), false).unwrap();
    assert_eq!(w.kernel.state(), before);
    let changes = w.kernel.changes();
    assert_eq!(
        changes,
        ["ipam: ipam_del", "c1: del_link_by_name"],
        "the lease first (dhcp releases through the link)"
    );
    w.del(&conf(json!({})), false).unwrap();

    // The netns went first (and the tap with it): the lease is still released.
    w.add(&conf(json!({}))).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&conf(json!({})), true).unwrap();
    assert!(w.kernel.leases().is_empty());
}

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    let c = conf(json!({"multiQueue": true, "owner": 1000, "bridge": "br0", "mtu": 1400}));
    let res = w.add(&c).unwrap();
    w.check(&c, &res).unwrap();

    for (other, msg) in [
        (json!({"multiQueue": false}), "has multi_queue true, the config says false"),
        (json!({"group": 5}), "has owner Some(1000) and group None, the config says Some(1000) and Some(5)"),
        (json!({"mtu": 1500}), "has MTU 1400, the config says 1500"),
    ] {
        let mut changed = c.clone();
        for (k, v) in other.as_object().unwrap() {
            changed[k] = v.clone();
        }
        let e = w.check(&changed, &res).unwrap_err();
        assert!(e.msg.contains(msg), "{other}: {e}");
    }

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    w.ctr.set_nomaster(eth0.index).unwrap();
    assert!(w.check(&c, &res).unwrap_err().msg.contains("is not a port of bridge \"br0\""));
    let br0 = w.ctr.link_by_name("br0").unwrap().index;
    w.ctr.set_master(eth0.index, br0).unwrap();
    w.ctr.set_mac(eth0.index, [2, 0, 0, 0, 0, 9]).unwrap();
    assert!(w.check(&c, &res).unwrap_err().msg.contains("has MAC 02:00:00:00:00:09, prevResult says"));

    let addr = res.ips[0].address;
    w.ctr.del_addr(eth0.index, addr.addr, addr.prefix).unwrap();
    assert!(w.check(&c, &res).unwrap_err().msg.contains("lacks its address"));

    // Another kind of link under the name is not the tap.
    w.ctr.del_link(eth0.index).unwrap();
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    let mut l2 = c.clone();
    l2.as_object_mut().unwrap().remove("ipam");
    let mut prev = res.clone();
    prev.ips.clear();
    prev.routes.clear();
    let e = w.check(&l2, &prev).unwrap_err();
    assert!(e.msg.contains("eth0 is not a tap"), "{e}");

    w.del(&c, false).unwrap();
    assert!(w.check(&c, &res).unwrap_err().msg.contains("no lease"), "the lease is checked first");
}

#[test]
fn a_name_template_is_refused_before_anything_is_made() {
    let mut w = World::new();
    let mut args = cmd_args(Command::Add, &conf(json!({})));
    args.ifname = "eth%d".into();
    let c = Config::load(&args).unwrap();
    let e = add(&args, &c, &mut w.host, &mut w.ctr, &mut w.kernel.ipam()).unwrap_err();
    assert_eq!(e.code, 4, "{e}");
    assert!(e.msg.contains("\"eth%d\""), "{e}");
    assert!(w.kernel.calls().is_empty());
}
