//! bridge's decisions against the fake kernel (no root): what ADD makes, that
//! a failure at any step of the fullest ADD leaves nothing, what DEL removes.
//! tests/bridge.rs proves the same stories on the real kernel.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::Family;
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
    let mut ok = World::new();
    ok.add(&full()).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
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
