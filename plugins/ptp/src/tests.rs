//! ptp's decisions against the fake kernel (no root): what ADD makes on both
//! ends, that a failure at any step leaves nothing, what DEL removes with and
//! without the netns, GC and CHECK. tests/ptp.rs proves the same stories on
//! the real kernel, with traffic.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::Route as KernelRoute;
use common::skel::Command;
use common::spec::{Attachment, IpConfig, Route};

/// A host with forwarding already on (ADD turns it on and never off) and a
/// container netns "c1".
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (mut host, ctr) = (kernel.host(), kernel.netns("c1"));
        host.set_sysctl("net/ipv4/ip_forward", "1").unwrap();
        host.set_sysctl("net/ipv6/conf/all/forwarding", "1").unwrap();
        kernel.clear_calls();
        World { kernel, host, ctr }
    }

    fn add(&mut self, conf: &Value) -> Result<CniResult> {
        let args = cmd_args(Command::Add, conf);
        let c = Config::load(&args)?;
        add(&args, &c, &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }

    /// ADD of container `cid` in its own netns.
    fn add_other(&mut self, conf: &Value, cid: &str) -> Result<(CniResult, FakeNet)> {
        let mut ctr = self.kernel.netns(cid);
        let mut args = cmd_args(Command::Add, conf);
        (args.container_id, args.netns) = (cid.into(), format!("/run/netns/{cid}"));
        let c = Config::load(&args)?;
        add(&args, &c, &mut self.host, &mut ctr, &mut self.kernel.ipam()).map(|r| (r, ctr))
    }

    fn del(&mut self, conf: &Value, netns_gone: bool) -> Result<()> {
        let args = cmd_args(Command::Del, conf);
        let ctr = if netns_gone { None } else { Some(&mut self.ctr) };
        del(&args, &mut self.host, ctr, &mut self.kernel.ipam())
    }

    fn check(&mut self, conf: &Value, prev: &CniResult) -> Result<()> {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.to_value("1.1.0").unwrap();
        let args = cmd_args(Command::Check, &conf);
        let c = Config::load(&args)?;
        check(&args, &c, &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }

    /// Routes of a netns as "dst/prefix via gw dev ifindex scope src".
    fn routes(net: &mut FakeNet) -> Vec<String> {
        let show = |r: KernelRoute| {
            let via = r.gateway.map(|g| format!(" via {g}")).unwrap_or_default();
            let src = r.src.map(|s| format!(" src {s}")).unwrap_or_default();
            format!("{}/{}{via} dev {} scope {}{src}", r.dst, r.prefix, r.oif.unwrap_or(0), r.scope)
        };
        net.routes(Family::Any, 0).unwrap().into_iter().map(show).collect()
    }
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "net1", "type": "ptp", "ipam": {"type": "host-local"}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

/// Everything on: dual stack with a route from IPAM, masquerade, an MTU.
fn full() -> Value {
    conf(json!({"ipMasq": true, "mtu": 1400}))
}

fn dual_stack(w: &World) {
    let ip = |a: &str, g: &str| IpConfig {
        address: a.parse().unwrap(),
        gateway: Some(g.parse().unwrap()),
        interface: None,
    };
    let routes =
        vec![Route::new("0.0.0.0/0".parse().unwrap(), None), Route::new("::/0".parse().unwrap(), None)];
    w.kernel.set_ipam_result(CniResult {
        ips: vec![ip("10.1.0.5/24", "10.1.0.1"), ip("fd01::5/64", "fd01::1")],
        routes,
        ..CniResult::default()
    });
}

#[test]
fn add_routes_the_container_through_the_gateway_on_the_host_end() {
    let mut w = World::new();
    dual_stack(&w);
    let res = w.add(&full()).unwrap();

    // The result: host end, container end; every address on the container end.
    let names: Vec<&str> = res.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_eq!((names[1], res.interfaces[1].sandbox.as_str()), ("eth0", "/run/netns/c1"));
    assert_eq!(res.interfaces[0].sandbox, "");
    assert!(res.ips.iter().all(|ip| ip.interface == Some(1)), "{:?}", res.ips);

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let veth = w.host.link_by_name(names[0]).unwrap();
    assert_eq!(
        (eth0.kind.as_deref(), eth0.link, veth.link),
        (Some("veth"), Some(veth.index), Some(eth0.index))
    );
    assert_eq!((eth0.mtu, veth.mtu, eth0.is_up(), veth.is_up()), (1400, 1400, true, true));
    assert_eq!(
        (res.interfaces[0].mac.clone(), res.interfaces[1].mac.clone()),
        (veth.mac_string(), eth0.mac_string())
    );
    assert_eq!(veth.alias.as_deref(), Some("cni-rs ptp net1/c1/eth0"), "DEL finds it without the netns");
    let no_dad =
        |net: &mut FakeNet, dev: &str| net.sysctl(&format!("net/ipv6/conf/{dev}/accept_dad")).unwrap();
    assert_eq!(no_dad(&mut w.host, names[0]), "0", "the host end's link-local is usable at once");
    assert_eq!(no_dad(&mut w.ctr, "eth0"), "0");

    // The container: its /24 and /64 without subnet routes, everything through the gateway.
    let addrs = w.ctr.addrs(Some(eth0.index), Family::Any).unwrap();
    let shown: Vec<String> = addrs.iter().map(|a| format!("{}/{}", a.addr, a.prefix)).collect();
    assert_eq!(shown, ["10.1.0.5/24", "fd01::5/64"]);
    assert!(addrs.iter().all(|a| a.flags & libc::IFA_F_NOPREFIXROUTE != 0), "no subnet route on the link");
    assert!(addrs[1].flags & libc::IFA_F_NODAD != 0, "usable at once");
    let e = eth0.index;
    assert_eq!(
        World::routes(&mut w.ctr),
        [
            format!("10.1.0.1/32 dev {e} scope 253 src 10.1.0.5"),
            format!("10.1.0.0/24 via 10.1.0.1 dev {e} scope 0 src 10.1.0.5"),
            format!("fd01::1/128 dev {e} scope 253 src fd01::5"),
            format!("fd01::/64 via fd01::1 dev {e} scope 0 src fd01::5"),
            format!("0.0.0.0/0 via 10.1.0.1 dev {e} scope 0"),
            format!("::/0 via fd01::1 dev {e} scope 0"),
        ]
    );

    // The host end: each gateway as a host address, a host route to each container address.
    let gws: Vec<String> = w
        .host
        .addrs(Some(veth.index), Family::Any)
        .unwrap()
        .iter()
        .map(|a| format!("{}/{} nodad={}", a.addr, a.prefix, a.flags & libc::IFA_F_NODAD != 0))
        .collect();
    assert_eq!(gws, ["10.1.0.1/32 nodad=false", "fd01::1/128 nodad=true"]);
    let v = veth.index;
    assert_eq!(
        World::routes(&mut w.host),
        [format!("10.1.0.5/32 dev {v} scope 254"), format!("fd01::5/128 dev {v} scope 254")]
    );

    let state = w.kernel.state();
    assert!(state.contains("nft table inet cnirs_ptp"), "{state}");
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.1.0.5/24,fd01::5/64"]);
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    let mut ok = World::new();
    dual_stack(&ok);
    ok.add(&full()).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
        dual_stack(&w);
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EIO);
        match w.add(&full()) {
            Err(_) => {
                failed += 1;
                assert_eq!(w.kernel.state(), before, "failure at call {n}: {:#?}", w.kernel.calls());
            }
            Ok(_) => assert_eq!(w.kernel.leases().len(), 1, "call {n}"),
        }
    }
    assert!(failed > calls / 2, "{failed} of {calls} failed");
}

#[test]
fn a_second_container_that_fails_leaves_the_first_one_alone() {
    let mut w = World::new();
    w.add(&full()).unwrap();
    w.kernel.netns("c2");
    let before = w.kernel.state();
    w.kernel.fail_on("replace_route", libc::EIO); // the host's route, after both ends are made
    assert!(w.add_other(&full(), "c2").is_err());
    assert_eq!(w.kernel.state(), before, "c1's veth, addresses, routes, lease and masquerade stay");
    assert_eq!(w.kernel.leases().len(), 1);
}

#[test]
fn two_containers_share_the_gateway_address_on_their_own_host_ends() {
    let mut w = World::new();
    let (r1, _c2) = w.add_other(&conf(json!({})), "c2").unwrap();
    let (r2, _c3) = w.add_other(&conf(json!({})), "c3").unwrap();
    for res in [&r1, &r2] {
        let veth = w.host.link_by_name(&res.interfaces[0].name).unwrap();
        let a = w.host.addrs(Some(veth.index), Family::V4).unwrap();
        assert_eq!((a[0].addr.to_string(), a[0].prefix), ("10.88.0.1".into(), 32));
    }
    assert_ne!(r1.ips[0].address, r2.ips[0].address);
}

#[test]
fn an_address_without_a_gateway_is_refused_and_nothing_is_left() {
    let mut w = World::new();
    w.kernel.set_ipam_result(CniResult {
        ips: vec![IpConfig { address: "10.1.0.5/24".parse().unwrap(), gateway: None, interface: None }],
        ..CniResult::default()
    });
    let before = w.kernel.state();
    let e = w.add(&full()).unwrap_err();
    assert_eq!(e.code, 7, "{e}");
    assert!(e.msg.contains("IPAM gave 10.1.0.5/24 no gateway"), "{e}");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn a_gateway_that_is_the_container_address_is_refused() {
    let mut w = World::new();
    let ip = IpConfig {
        address: "10.1.0.5/24".parse().unwrap(),
        gateway: Some("10.1.0.5".parse().unwrap()),
        interface: None,
    };
    w.kernel.set_ipam_result(CniResult { ips: vec![ip], ..CniResult::default() });
    let before = w.kernel.state();
    let e = w.add(&full()).unwrap_err();
    assert!(e.msg.contains("the container's own address"), "{e}");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn no_ipam_and_bad_fields_are_refused_before_anything_is_made() {
    for (c, msg) in [
        (json!({"cniVersion": "1.1.0", "name": "net1", "type": "ptp"}), "needs an \"ipam\" section"),
        (conf(json!({"mtu": 67})), "invalid mtu 67"),
        (conf(json!({"ipMasqBackend": "pf"})), "invalid ipMasqBackend \"pf\""),
    ] {
        let mut w = World::new();
        let e = w.add(&c).unwrap_err();
        assert_eq!(e.code, 7, "{e}");
        assert!(e.msg.contains(msg), "{e}");
        assert!(w.kernel.calls().is_empty(), "{:?}", w.kernel.calls());
    }
    // ipMasqBackend values of the reference are accepted (masquerade is nf_tables either way).
    World::new().add(&conf(json!({"ipMasqBackend": "iptables"}))).unwrap();
}

#[test]
fn del_removes_everything_with_the_netns_without_it_and_when_it_is_gone() {
    let mut w = World::new();
    let before = w.kernel.state();
    // The netns is there.
    w.add(&full()).unwrap();
    w.del(&full(), false).unwrap();
    assert_eq!(w.kernel.state(), before);
    w.del(&full(), false).unwrap();

    // The runtime does not say where it is (it is still alive): the host
    // end is found by its alias, the container end goes with it.
    w.add(&full()).unwrap();
    w.del(&full(), true).unwrap();
    assert_eq!(w.kernel.state(), before);

    // It is gone, and the veth with it: lease and masquerade are still removed.
    w.add(&full()).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&full(), true).unwrap();
    assert!(w.kernel.leases().is_empty());
    assert!(!w.kernel.state().contains("nft "), "{}", w.kernel.state());
    w.del(&full(), true).unwrap();
}

#[test]
fn del_finds_the_masquerade_whatever_the_config_says_now() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.add(&full()).unwrap();
    w.del(&conf(json!({})), true).unwrap();
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn del_leaves_other_containers_alone() {
    let mut w = World::new();
    let (_, _c2) = w.add_other(&full(), "c2").unwrap();
    let with_c2 = w.kernel.state();
    w.add(&full()).unwrap();
    w.del(&full(), true).unwrap();
    assert_eq!(w.kernel.state(), with_c2);
}

#[test]
fn ipam_runs_while_the_container_interface_exists() {
    let mut w = World::new();
    w.add(&full()).unwrap();
    let calls = w.kernel.calls();
    let pos = |calls: &[String], what: &str| calls.iter().position(|c| c.contains(what));
    let (veth, leased) = (pos(&calls, "add_link"), pos(&calls, "ipam_add"));
    assert!(veth.is_some() && leased.is_some() && veth < leased, "{calls:?}");
    w.kernel.clear_calls();
    w.del(&full(), false).unwrap();
    let calls = w.kernel.calls();
    let (released, gone) = (pos(&calls, "ipam_del"), pos(&calls, "c1: del_link"));
    assert!(released.is_some() && gone.is_some() && released < gone, "{calls:?}");
}

#[test]
fn gc_removes_the_host_ends_and_masquerade_of_attachments_not_valid() {
    let mut w = World::new();
    let (_, _keep) = w.add_other(&full(), "keep").unwrap();
    let (_, _stale) = w.add_other(&full(), "stale").unwrap();
    let (_, _other) = w.add_other(&conf(json!({"name": "net2", "ipMasq": true})), "other").unwrap();
    let mut c = full();
    c["cni.dev/valid-attachments"] = json!([{"containerID": "keep", "ifname": "eth0"}]);
    gc(&cmd_args(Command::Gc, &c), &mut w.host).unwrap();
    let aliases: Vec<String> = w.host.links().unwrap().into_iter().filter_map(|l| l.alias).collect();
    assert_eq!(
        aliases,
        ["cni-rs ptp net1/keep/eth0", "cni-rs ptp net2/other/eth0"],
        "another network's stay"
    );
    let valid = [Attachment { container_id: "keep".into(), ifname: "eth0".into() }];
    let keep_ip = [common::ipnet::IpNet { addr: "10.88.0.2".parse().unwrap(), prefix: 16 }];
    MASQ.check(&mut w.host.nft().unwrap(), "net1", &valid[0].container_id, "eth0", &keep_ip).unwrap();
    let elements = w.kernel.state().lines().filter(|l| l.contains("nft element")).count();
    assert_eq!(elements, 2, "keep's and other's: {}", w.kernel.state());
}

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    dual_stack(&w);
    let c = full();
    let res = w.add(&c).unwrap();
    w.check(&c, &res).unwrap();

    let e = w.check(&conf(json!({"ipMasq": true, "mtu": 1500})), &res).unwrap_err();
    assert!(e.msg.contains("has MTU 1400, the config says 1500"), "{e}");

    let veth = w.host.link_by_name(&res.interfaces[0].name).unwrap();
    w.host.del_route(&routes::host_route(veth.index, "fd01::5".parse().unwrap())).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("no route to fd01::5 through"), "{e}");
    w.host.replace_route(&routes::host_route(veth.index, "fd01::5".parse().unwrap())).unwrap();

    w.host.del_addr(veth.index, "10.1.0.1".parse().unwrap(), 32).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("lacks the gateway 10.1.0.1"), "{e}");
    w.host.add_addr(veth.index, "10.1.0.1".parse().unwrap(), 32, &Default::default()).unwrap();
    w.check(&c, &res).unwrap();

    MASQ.del(&mut w.host.nft().unwrap(), "net1", "c1", "eth0").unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("masquerade"), "{e}");
    w.check(&conf(json!({"mtu": 1400})), &res).unwrap();

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    w.ctr.set_mac(eth0.index, [2, 0, 0, 0, 0, 9]).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("has MAC 02:00:00:00:00:09, prevResult says"), "{e}");

    w.del(&c, false).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("no lease"), "the lease is checked first: {e}");
}

#[test]
fn check_wants_the_container_interface_in_its_netns() {
    let mut w = World::new();
    let c = full();
    let mut res = w.add(&c).unwrap();
    res.interfaces[1].sandbox = "/run/netns/elsewhere".into();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("prevResult has no interface \"eth0\" in netns \"/run/netns/c1\""), "{e}");
}

#[test]
fn a_second_interface_on_the_same_subnet_is_refused_clearly_and_the_first_stays() {
    let mut w = World::new();
    w.add(&full()).unwrap();
    let before = w.kernel.state();
    let mut args = cmd_args(Command::Add, &full());
    args.ifname = "eth1".into();
    let c = Config::load(&args).unwrap();
    let e = add(&args, &c, &mut w.host, &mut w.ctr, &mut w.kernel.ipam()).unwrap_err();
    assert!(e.msg.contains("adding the route to the gateway 10.88.0.1"), "{e}");
    assert!(e.msg.contains("one subnet on two?"), "{e}");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn a_route_through_another_gateway_is_refused_and_nothing_is_left() {
    let mut w = World::new();
    let ip = IpConfig {
        address: "10.1.0.5/24".parse().unwrap(),
        gateway: Some("10.1.0.1".parse().unwrap()),
        interface: None,
    };
    let via = |gw: &str| Route {
        gw: Some(gw.parse().unwrap()),
        ..Route::new("192.168.0.0/16".parse().unwrap(), None)
    };
    w.kernel.set_ipam_result(CniResult {
        ips: vec![ip.clone()],
        routes: vec![via("10.1.0.254")],
        ..CniResult::default()
    });
    let before = w.kernel.state();
    let e = w.add(&full()).unwrap_err();
    assert_eq!(e.code, 7, "{e}");
    assert!(e.msg.contains("the route to 192.168.0.0/16 goes through 10.1.0.254"), "{e}");
    assert!(e.msg.contains("only the gateway (10.1.0.1) is on the link"), "{e}");
    assert_eq!(w.kernel.state(), before);
    // Through the gateway itself it is fine.
    w.kernel.set_ipam_result(CniResult {
        ips: vec![ip],
        routes: vec![via("10.1.0.1")],
        ..CniResult::default()
    });
    w.add(&full()).unwrap();
}
