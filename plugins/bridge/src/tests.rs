//! bridge's decisions against the fake kernel (no root): what ADD makes, that
//! a failure at any step of the fullest ADD leaves nothing, what DEL removes.
//! tests/bridge.rs proves the same stories on the real kernel.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::{BridgeVlan, Family};
use common::skel::Command;

/// A host with IP forwarding already on (ADD turns it on and never off) and
/// a container netns "c1".
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
        kernel.clear_calls();
        World { kernel, host, ctr }
    }

    fn add(&mut self, conf: &Value) -> Result<CniResult> {
        let args = cmd_args(Command::Add, conf);
        let c = Config::load(&args)?;
        add(&args, &c, None, &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }

    fn del(&mut self, conf: &Value, netns_gone: bool) -> Result<()> {
        let args = cmd_args(Command::Del, conf);
        let ctr = if netns_gone { None } else { Some(&mut self.ctr) };
        del(&args, &mut self.host, ctr, &mut self.kernel.ipam())
    }
}

/// Everything on: bridge made, gateway, default route, masquerade, spoof check.
fn full() -> Value {
    json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge", "bridge": "cni0",
           "isDefaultGateway": true, "ipMasq": true, "macspoofchk": true, "hairpinMode": true,
           "ipam": {"type": "host-local"}})
}

#[test]
fn add_makes_bridge_port_container_gateway_and_netfilter_state() {
    let mut w = World::new();
    let res = w.add(&full()).unwrap();
    let cni0 = w.host.link_by_name("cni0").unwrap();
    let names: Vec<&str> = res.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names[0], "cni0");
    let port = w.host.link_by_name(names[1]).unwrap();
    assert_eq!((port.master, port.bridge_port.map(|p| p.hairpin)), (Some(cni0.index), Some(true)));
    assert_eq!(port.oper_state, common::netlink::rtnl::IF_OPER_UP);
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert_eq!((eth0.kind.as_deref(), eth0.link), (Some("veth"), Some(port.index)));
    assert_eq!(res.interfaces[2].mac, eth0.mac_string());
    let gw = w.host.addrs(Some(cni0.index), Family::V4).unwrap();
    assert_eq!(gw.iter().map(|a| format!("{}/{}", a.addr, a.prefix)).collect::<Vec<_>>(), ["10.88.0.1/16"]);
    assert_eq!(w.host.sysctl("net/ipv4/conf/cni0/forwarding").unwrap(), "1", "the gateway forwards");
    let routes = w.ctr.routes(Family::V4, 0).unwrap();
    assert!(routes.iter().any(|r| r.is_default() && r.gateway == Some("10.88.0.1".parse().unwrap())));
    let state = w.kernel.state();
    assert!(
        state.contains("nft table inet cnirs_bridge") && state.contains("nft table bridge cnirs_bridge_mac")
    );
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.88.0.2/16"]);
}

#[test]
fn a_failure_at_any_step_leaves_nothing() {
    for conf in [full(), vlan_gateway(10)] {
        let mut ok = World::new();
        ok.add(&conf).unwrap();
        let calls = ok.kernel.calls().len();
        let mut failed = 0;
        for n in 1..=calls {
            let mut w = World::new();
            let before = w.kernel.state();
            w.kernel.fail_at(n, libc::EIO);
            match w.add(&conf) {
                Err(_) => {
                    failed += 1;
                    assert_eq!(w.kernel.state(), before, "failure at call {n}: {:#?}", w.kernel.calls());
                }
                Ok(_) => assert_eq!(w.kernel.leases().len(), 1, "call {n}"),
            }
        }
        assert!(failed > calls / 2, "{conf}: {failed} of {calls} failed");
    }
}

/// `vlan` with a gateway: masquerade and a default route, as `full()`.
fn vlan_gateway(vlan: u16) -> Value {
    json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge", "bridge": "cni0", "vlan": vlan,
           "isDefaultGateway": true, "ipMasq": true, "ipam": {"type": "host-local"}})
}

/// An access port of `vid`: its only VLAN, untagged and the PVID.
fn access(vid: u16) -> Vec<BridgeVlan> {
    vec![BridgeVlan { vid, pvid: true, untagged: true }]
}

fn addrs_of(net: &mut FakeNet, name: &str) -> Vec<String> {
    let l = net.link_by_name(name).unwrap();
    net.addrs(Some(l.index), Family::V4).unwrap().iter().map(|a| format!("{}/{}", a.addr, a.prefix)).collect()
}

#[test]
fn a_vlan_gateway_is_a_veth_whose_peer_is_a_port_in_that_vlan() {
    // The bridge's own port is in VLAN 1: a gateway there is out of a VLAN
    // 10 container's reach. As the reference, it goes on `<bridge>.<vid>`.
    let mut w = World::new();
    let res = w.add(&vlan_gateway(10)).unwrap();
    let cni0 = w.host.link_by_name("cni0").unwrap();
    assert_eq!(addrs_of(&mut w.host, "cni0"), Vec::<String>::new(), "no gateway on the bridge");
    let gw = w.host.link_by_name("cni0.10").unwrap();
    assert_eq!((gw.kind.as_deref(), gw.is_up(), gw.master), (Some("veth"), true, None));
    assert_eq!(addrs_of(&mut w.host, "cni0.10"), ["10.88.0.1/16"]);
    // Routed packets come in by the gateway, so that is what must forward.
    assert_eq!(w.host.sysctl("net/ipv4/conf/cni0.10/forwarding").unwrap(), "1");
    let peer = w.host.link_by_index(gw.link.unwrap()).unwrap();
    assert_eq!((peer.master, peer.is_up()), (Some(cni0.index), true));
    assert_eq!(w.host.bridge_vlans(peer.index).unwrap(), access(10), "VLAN 1 removed");
    let port = w.host.link_by_name(&res.interfaces[1].name).unwrap();
    assert_eq!(w.host.bridge_vlans(port.index).unwrap(), access(10));
    // Result: bridge, host veth, container, then the VLAN gateway (the reference's order).
    let names: Vec<&str> = res.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["cni0", port.name.as_str(), "eth0", "cni0.10"]);
    assert_eq!(res.interfaces[3].mac, gw.mac_string());
    assert!(res.ips.iter().all(|ip| ip.interface == Some(2)));
    let routes = w.ctr.routes(Family::V4, 0).unwrap();
    assert!(routes.iter().any(|r| r.is_default() && r.gateway == Some("10.88.0.1".parse().unwrap())));
}

#[test]
fn containers_of_a_vlan_share_its_gateway_which_stays_like_the_bridge() {
    let mut w = World::new();
    w.add(&vlan_gateway(10)).unwrap();
    let gw10 = w.host.link_by_name("cni0.10").unwrap();
    let add_as = |w: &mut World, cid: &str, conf: &Value| {
        let mut ctr = w.kernel.netns(cid);
        let mut args = cmd_args(Command::Add, conf);
        (args.container_id, args.netns) = (cid.into(), format!("/run/netns/{cid}"));
        let c = Config::load(&args).unwrap();
        add(&args, &c, None, &mut w.host, &mut ctr, &mut w.kernel.ipam()).unwrap()
    };
    let r2 = add_as(&mut w, "c2", &vlan_gateway(10));
    assert_eq!(w.host.link_by_name("cni0.10").unwrap().index, gw10.index, "the same gateway");
    assert_eq!(r2.interfaces[3].name, "cni0.10");
    let r3 = add_as(&mut w, "c3", &vlan_gateway(20));
    assert_eq!(r3.interfaces[3].name, "cni0.20");
    assert_eq!(addrs_of(&mut w.host, "cni0.20"), ["10.88.0.1/16"]);
    // DEL leaves the gateways, as the bridge and its address stay for the next container.
    w.del(&vlan_gateway(10), false).unwrap();
    assert!(w.host.link_by_name("cni0.10").is_ok() && w.host.link_by_name("cni0.20").is_ok());
}

#[test]
fn a_failed_add_keeps_a_vlan_gateway_another_container_of_that_vlan_may_use() {
    let mut w = World::new();
    // c1 in VLAN 10 without a gateway; c2's failed ADD made cni0.10 after its port was in VLAN 10.
    let mut l2 = vlan_gateway(10);
    l2["isDefaultGateway"] = json!(false);
    w.add(&l2).unwrap();
    let mut c2 = w.kernel.netns("c2");
    let mut args = cmd_args(Command::Add, &vlan_gateway(10));
    (args.container_id, args.netns) = ("c2".into(), "/run/netns/c2".into());
    let conf = Config::load(&args).unwrap();
    w.kernel.fail_on("nft_commit", libc::EIO); // the masquerade, after the gateway
    assert!(add(&args, &conf, None, &mut w.host, &mut c2, &mut w.kernel.ipam()).is_err());
    assert!(w.host.link_by_name("cni0.10").is_ok(), "c1's VLAN may be served by it already");
    assert!(w.kernel.leases().len() == 1 && c2.link_by_name("eth0").is_err());
}

#[test]
fn a_trunk_port_without_vlan_keeps_vlan_1_as_its_native_vlan() {
    // As the reference since v1.8.0: untagged frames of the container are VLAN 1's.
    let mut w = World::new();
    let conf = json!({"cniVersion": "1.1.0", "name": "net1", "type": "bridge", "bridge": "cni0",
        "vlanTrunk": [{"id": 30}, {"minID": 40, "maxID": 41}], "ipam": {"type": "host-local"}});
    let res = w.add(&conf).unwrap();
    let port = w.host.link_by_name(&res.interfaces[1].name).unwrap();
    let mut vlans = w.host.bridge_vlans(port.index).unwrap();
    vlans.sort_by_key(|v| v.vid);
    let tagged = |vid| BridgeVlan { vid, pvid: false, untagged: false };
    assert_eq!(vlans, [access(1), vec![tagged(30), tagged(40), tagged(41)]].concat());
    // With `vlan`, that VLAN is the native one instead.
    let mut both = conf.clone();
    both["vlan"] = json!(10);
    let mut c2 = w.kernel.netns("c2");
    let mut args = cmd_args(Command::Add, &both);
    (args.container_id, args.netns) = ("c2".into(), "/run/netns/c2".into());
    let c = Config::load(&args).unwrap();
    let res = add(&args, &c, None, &mut w.host, &mut c2, &mut w.kernel.ipam()).unwrap();
    let port = w.host.link_by_name(&res.interfaces[1].name).unwrap();
    let mut vlans = w.host.bridge_vlans(port.index).unwrap();
    vlans.sort_by_key(|v| v.vid);
    assert_eq!(vlans, [access(10), vec![tagged(30), tagged(40), tagged(41)]].concat());
}

#[test]
fn a_second_container_that_fails_leaves_the_first_one_alone() {
    let mut w = World::new();
    w.add(&full()).unwrap();
    let mut c2 = w.kernel.netns("c2");
    let before = w.kernel.state();
    let mut args = cmd_args(Command::Add, &full());
    (args.container_id, args.netns) = ("c2".into(), "/run/netns/c2".into());
    let conf = Config::load(&args).unwrap();
    w.kernel.fail_on("add_addr", libc::EIO); // the container's address, after bridge and port
    assert!(add(&args, &conf, None, &mut w.host, &mut c2, &mut w.kernel.ipam()).is_err());
    assert_eq!(w.kernel.state(), before, "the bridge in use, c1's port, lease and nf_tables state stay");
}

#[test]
fn del_removes_everything_with_or_without_the_netns() {
    let mut w = World::new();
    // The bridge and its gateway stay for the next container, as in the reference.
    let only_the_bridge_is_left = |w: &World| {
        let left = w.kernel.state();
        assert!(left.contains("link cni0 bridge up") && left.contains("addr cni0 10.88.0.1/16"), "{left}");
        assert!(!left.contains("veth") && !left.contains("nft ") && !left.contains("lease"), "{left}");
    };
    w.add(&full()).unwrap();
    w.del(&full(), false).unwrap();
    only_the_bridge_is_left(&w);
    w.del(&full(), false).unwrap();

    w.add(&full()).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&full(), true).unwrap();
    only_the_bridge_is_left(&w);
}

#[test]
fn ipam_runs_while_the_container_interface_exists() {
    // dhcp leases and releases through the container's interface: IPAM ADD
    // after the veth is made, IPAM DEL before it goes (as the reference).
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
fn check_finds_drift_of_port_vlans_and_of_the_vlan_gateway() {
    let mut w = World::new();
    let mut conf = vlan_gateway(10);
    conf["vlanTrunk"] = json!([{"id": 30}]);
    let res = w.add(&conf).unwrap();
    let c = Config::load(&cmd_args(Command::Check, &conf)).unwrap();
    let bridge = w.host.link_by_name("cni0").unwrap();
    let port = w.host.link_by_name(&res.interfaces[1].name).unwrap();
    let gws = [IpNet { addr: "10.88.0.1".parse().unwrap(), prefix: 16 }];
    links::check_port_vlans(&mut w.host, &c, &port).unwrap();
    links::check_vlan_gateway(&mut w.host, &c, &bridge, &gws).unwrap();

    w.host.bridge_vlan_del(port.index, 30, false).unwrap();
    let e = links::check_port_vlans(&mut w.host, &c, &port).unwrap_err();
    assert!(e.msg.contains("trunk VLAN 30 is missing"), "{e}");
    w.host.bridge_vlan_add(port.index, BridgeVlan { vid: 20, pvid: true, untagged: true }, false).unwrap();
    let e = links::check_port_vlans(&mut w.host, &c, &port).unwrap_err();
    assert!(e.msg.contains("native VLAN (PVID)") && e.msg.contains("is 20"), "{e}");

    let gw = w.host.link_by_name("cni0.10").unwrap();
    let gw_port = gw.link.unwrap();
    w.host.bridge_vlan_add(gw_port, BridgeVlan { vid: 20, pvid: true, untagged: true }, false).unwrap();
    let e = links::check_vlan_gateway(&mut w.host, &c, &bridge, &gws).unwrap_err();
    assert!(e.msg.contains("not in VLAN 10"), "{e}");
    w.host.del_addr(gw.index, gws[0].addr, 16).unwrap();
    let e = links::check_vlan_gateway(&mut w.host, &c, &bridge, &gws).unwrap_err();
    assert!(e.msg.contains("lacks the gateway address 10.88.0.1/16"), "{e}");
    w.host.del_link(gw.index).unwrap();
    let e = links::check_vlan_gateway(&mut w.host, &c, &bridge, &gws).unwrap_err();
    assert!(e.msg.contains("\"cni0.10\" is missing"), "{e}");
}
