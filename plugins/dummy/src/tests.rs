//! dummy's decisions against the fake kernel (no root): what ADD makes and
//! in which order, that a failure at any step leaves nothing, what DEL and
//! CHECK do. tests/dummy.rs proves the same stories on a real kernel.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::Family;
use common::skel::Command;
use common::spec::Route;

struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (host, ctr) = (kernel.host(), kernel.netns("c1"));
        World { kernel, host, ctr }
    }

    fn add(&mut self, conf: &Value) -> Result<CniResult> {
        let args = cmd_args(Command::Add, conf);
        ipam_plugin(&args)?;
        add(&args, &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }

    fn del(&mut self, conf: &Value, netns_gone: bool) -> Result<()> {
        let args = cmd_args(Command::Del, conf);
        let ctr = if netns_gone { None } else { Some(&mut self.ctr) };
        del(&args, ctr, &mut self.kernel.ipam())
    }

    fn check(&mut self, conf: &Value, prev: &CniResult) -> Result<()> {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.to_value("1.1.0").unwrap();
        check(&cmd_args(Command::Check, &conf), &mut self.ctr, &mut self.kernel.ipam())
    }
}

fn conf() -> Value {
    json!({"cniVersion": "1.1.0", "name": "svc", "type": "dummy", "ipam": {"type": "host-local"}})
}

/// IPAM's answer: two families and a route, so ADD exercises every step.
fn with_route(w: &mut World) {
    let ip = |a: &str| common::spec::IpConfig { address: a.parse().unwrap(), gateway: None, interface: None };
    let routes = vec![Route::new("10.99.0.0/16".parse().unwrap(), None)];
    let ips = vec![ip("10.88.0.5/32"), ip("fd88::5/128")];
    w.kernel.set_ipam_result(CniResult { ips, routes, ..CniResult::default() });
}

#[test]
fn add_makes_the_dummy_in_the_container_with_addresses_and_routes() {
    let mut w = World::new();
    with_route(&mut w);
    let res = w.add(&conf()).unwrap();
    assert_eq!(
        w.kernel.changes(),
        [
            "c1: add_link",
            "ipam: ipam_add",
            "c1: set_sysctls",
            "c1: add_addr",
            "c1: add_addr",
            "c1: set_up",
            "c1: add_route"
        ]
    );
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert_eq!(eth0.kind.as_deref(), Some("dummy"));
    assert!(eth0.is_up());
    let addrs: Vec<String> = w
        .ctr
        .addrs(Some(eth0.index), Family::Any)
        .unwrap()
        .iter()
        .map(|a| format!("{}/{}", a.addr, a.prefix))
        .collect();
    assert_eq!(addrs, ["10.88.0.5/32", "fd88::5/128"]);
    let routes = w.ctr.routes(Family::V4, 0).unwrap();
    assert_eq!((routes[0].dst.to_string(), routes[0].oif), ("10.99.0.0".into(), Some(eth0.index)));
    assert_eq!(w.host.links().unwrap().len(), 1, "nothing on the host but lo");

    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!(
        (i.name.as_str(), i.sandbox.as_str(), i.mac.clone()),
        ("eth0", "/run/netns/c1", eth0.mac_string())
    );
    assert!(res.ips.iter().all(|ip| ip.interface == Some(0)));
}

#[test]
fn without_ipam_nothing_is_made() {
    for ipam in [Value::Null, json!({})] {
        let mut w = World::new();
        let mut c = conf();
        c["ipam"] = ipam;
        let e = w.add(&c).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "dummy interface requires an IPAM configuration"));
        assert!(w.kernel.calls().is_empty());
    }
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    let mut ok = World::new();
    with_route(&mut ok);
    ok.add(&conf()).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
        with_route(&mut w);
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EIO);
        if w.add(&conf()).is_err() {
            failed += 1;
            assert_eq!(w.kernel.state(), before, "failure at call {n}: {:?}", w.kernel.calls());
        }
    }
    assert!(failed >= ok.kernel.changes().len(), "{failed} of {calls} failures, {:?}", ok.kernel.changes());
}

#[test]
fn a_kernel_without_dummy_or_a_taken_name_is_said_so() {
    let mut w = World::new();
    w.kernel.fail_on("add_link", libc::EOPNOTSUPP);
    let e = w.add(&conf()).unwrap_err();
    assert!(e.msg.contains("this kernel has no dummy link type"), "{e}");
    assert!(w.kernel.leases().is_empty());

    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    let before = w.kernel.state();
    let e = w.add(&conf()).unwrap_err();
    assert_eq!(e.msg, "container already has an interface named \"eth0\"");
    assert_eq!(w.kernel.state(), before, "the existing eth0 is untouched");
}

#[test]
fn del_releases_first_then_removes_and_succeeds_when_gone() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.add(&conf()).unwrap();
    w.kernel.clear_calls();
    w.del(&conf(), false).unwrap();
    assert_eq!(w.kernel.changes(), ["ipam: ipam_del", "c1: del_link_by_name"]);
    assert_eq!(w.kernel.state(), before);
    w.del(&conf(), false).unwrap();

    w.add(&conf()).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&conf(), true).unwrap();
    assert!(w.kernel.leases().is_empty());
}

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    with_route(&mut w);
    let res = w.add(&conf()).unwrap();
    w.check(&conf(), &res).unwrap();

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    w.ctr.set_down(eth0.index).unwrap();
    assert!(w.check(&conf(), &res).unwrap_err().msg.contains("route to 10.99.0.0/16 is missing"));
    w.ctr.set_up(eth0.index).unwrap();
    let mut route = common::netlink::rtnl::Route::new("10.99.0.0".parse().unwrap(), 16);
    (route.oif, route.scope) = (Some(eth0.index), libc::RT_SCOPE_LINK);
    w.ctr.add_route(&route).unwrap();
    w.check(&conf(), &res).unwrap();

    w.ctr.set_mac(eth0.index, [2, 0, 0, 0, 0, 9]).unwrap();
    assert!(w.check(&conf(), &res).unwrap_err().msg.contains("has MAC 02:00:00:00:00:09"));

    w.ctr.del_link(eth0.index).unwrap();
    w.ctr.add_link(&NewLink::bridge("eth0")).unwrap();
    let mut prev = res.clone();
    (prev.ips, prev.routes) = (Vec::new(), Vec::new());
    assert!(w.check(&conf(), &prev).unwrap_err().msg.contains("eth0 is not a dummy"));

    w.del(&conf(), false).unwrap();
    assert!(w.check(&conf(), &res).unwrap_err().msg.contains("no lease"), "the lease is checked first");
}

#[test]
fn a_name_template_is_refused_before_anything_is_made() {
    let mut w = World::new();
    let mut args = cmd_args(Command::Add, &conf());
    args.ifname = "eth%d".into();
    let e = add(&args, &mut w.host, &mut w.ctr, &mut w.kernel.ipam()).unwrap_err();
    assert_eq!(e.code, 4, "{e}");
    assert!(w.kernel.calls().is_empty());
}
