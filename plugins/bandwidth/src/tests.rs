//! bandwidth's decisions against the fake kernel (no root): what ADD makes
//! and in which order, that a failure at any step leaves nothing, what DEL,
//! CHECK and GC do. tests/bandwidth.rs proves the same on the real kernel,
//! with traffic.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::skel::Command;

const CLOCK: Clock = Clock { ticks_per_usec: 15.625 };

/// A host and a container "c1" joined by a veth: `vethh0` (MTU 1400) ↔ `eth0`.
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (mut host, mut ctr) = (kernel.host(), kernel.netns("c1"));
        let fd = host.netns_fd().unwrap();
        let kind = LinkKind::Veth { peer: "vethh0".into(), peer_netns_fd: Some(fd) };
        ctr.add_link(&NewLink { mtu: Some(1400), ..NewLink::new("eth0", kind) }).unwrap();
        let h = host.link_by_name("vethh0").unwrap().index;
        host.set_up(h).unwrap();
        kernel.clear_calls();
        World { kernel, host, ctr }
    }

    fn args(&self, command: Command, conf: &Value) -> CmdArgs {
        cmd_args(command, conf)
    }

    fn add(&mut self, conf: &Value) -> Result<CniResult> {
        let args = self.args(Command::Add, conf);
        let buckets = config::load(&args.conf)?.expect("something to shape").buckets(&CLOCK)?;
        add(&args, &buckets, prev_result(&args)?, &mut self.host, &mut self.ctr)
    }

    fn del(&mut self, conf: &Value) -> Result<()> {
        del(&self.args(Command::Del, conf), &mut self.host)
    }

    fn check(&mut self, conf: &Value) -> Result<()> {
        let args = self.args(Command::Check, conf);
        let buckets = config::load(&args.conf)?.map(|b| b.buckets(&CLOCK)).transpose()?;
        check(&args, buckets.as_ref(), &prev_result(&args)?, &mut self.host, &mut self.ctr)
    }

    fn gc(&mut self, conf: &Value, valid: &[&str]) -> Result<()> {
        let mut conf = conf.clone();
        let list: Vec<Value> = valid.iter().map(|c| json!({"containerID": c, "ifname": "eth0"})).collect();
        conf["cni.dev/valid-attachments"] = Value::Array(list);
        gc(&self.args(Command::Gc, &conf), &mut self.host)
    }

    fn veth(&mut self) -> Link {
        self.host.link_by_name("vethh0").unwrap()
    }
}

/// Kubernetes' request: 10 Mbit/s in, 20 Mbit/s out, bursts at the maximum
/// the kubelet sends, capitalized keys (containerd's CRI).
fn conf(bandwidth: Value) -> Value {
    json!({"cniVersion": "1.0.0", "name": "k8s-pods", "type": "bandwidth",
           "capabilities": {"bandwidth": true},
           "runtimeConfig": {"bandwidth": bandwidth},
           "prevResult": {"cniVersion": "1.0.0",
               "interfaces": [{"name": "cni0", "mac": "02:00:00:00:00:01"},
                              {"name": "vethh0", "mac": "02:00:00:00:00:02"},
                              {"name": "eth0", "mac": "02:00:00:00:00:03", "sandbox": "/run/netns/c1"}],
               "ips": [{"address": "10.22.0.5/16", "gateway": "10.22.0.1", "interface": 2}]}})
}

fn k8s() -> Value {
    conf(json!({"IngressRate": 10_000_000, "IngressBurst": 4294967295u64,
                "EgressRate": 20_000_000, "EgressBurst": 4294967295u64}))
}

const IFB: &str = "bwp5425e9da77be";

#[test]
fn the_ifb_is_named_as_the_reference_names_it() {
    // From the reference plugin (1.1.1): network "k8s-pods", container "abc".
    assert_eq!(ifb_name("k8s-pods", "abc"), "bwp9393934fd37b");
    assert_eq!(ifb_name("k8s-pods", "c1"), IFB);
    assert_eq!(ifb_alias("k8s-pods", "c1").unwrap(), "cni-rs bandwidth k8s-pods c1");
    let long = "n".repeat(200);
    assert_eq!(ifb_alias(&long, &"c".repeat(64)).unwrap(), format!("cni-rs bandwidth {long}"));
    assert_eq!(ifb_alias(&"n".repeat(239), "c"), None);
}

#[test]
fn add_shapes_ingress_on_the_veth_and_egress_through_an_ifb() {
    let mut w = World::new();
    let res = w.add(&k8s()).unwrap();
    assert_eq!(
        w.kernel.changes(),
        [
            "host: add_qdisc",  // the ingress bucket on the veth
            "host: add_link",   // the ifb …
            "host: set_txqlen", // … as the reference makes it …
            "host: set_alias",  // … with its owner for GC …
            "host: set_up",
            "host: add_qdisc",    // the veth's ingress hook
            "host: add_redirect", // everything arriving → the ifb
            "host: add_qdisc",    // the egress bucket on the ifb
        ]
    );
    let veth = w.veth();
    let ifb = w.host.link_by_name(IFB).unwrap();
    assert_eq!((ifb.kind.as_deref(), ifb.mtu, ifb.txqlen, ifb.is_up()), (Some("ifb"), 1400, 0, true));
    assert_eq!(ifb.alias.as_deref(), Some("cni-rs bandwidth k8s-pods c1"));
    let ingress = Tbf { rate: 1_250_000, buffer: u32::MAX, limit: 536_902_161 };
    let egress = Tbf { rate: 2_500_000, buffer: 3_355_443_187, limit: 536_933_411 };
    assert_eq!(
        w.host.qdiscs(Some(veth.index)).unwrap(),
        [Qdisc::root_tbf(veth.index, ingress), Qdisc::ingress(veth.index)]
    );
    assert_eq!(w.host.qdiscs(Some(ifb.index)).unwrap(), [Qdisc::root_tbf(ifb.index, egress)]);
    let filters = w.host.filters(veth.index, INGRESS_HANDLE).unwrap();
    assert_eq!(filters.len(), 1);
    assert_eq!(
        (filters[0].redirects_all_to(), filters[0].prio, filters[0].classid),
        (Some(ifb.index), 1, Some(0x10001))
    );
    assert_eq!(filters[0].protocol, libc::ETH_P_ALL as u16);
    // The result: prevResult and the ifb as a host interface.
    assert_eq!(res.interfaces.len(), 4);
    let last = &res.interfaces[3];
    assert_eq!(
        (last.name.as_str(), last.mac.as_str(), last.sandbox.as_str()),
        (IFB, ifb.mac_string().as_str(), "")
    );
    assert_eq!(res.ips.len(), 1);
    // Nothing in the container changes.
    assert!(
        !w.kernel.calls().iter().any(|c| c.starts_with("c1:") && !c.contains("link_by_name")),
        "{:?}",
        w.kernel.calls()
    );
}

#[test]
fn one_direction_alone() {
    let mut w = World::new();
    w.add(&conf(json!({"ingressRate": 8_000_000, "ingressBurst": 80_000}))).unwrap();
    assert_eq!(w.kernel.changes(), ["host: add_qdisc"]);
    assert!(w.host.link_by_name(IFB).is_err());

    let mut w = World::new();
    let res = w.add(&conf(json!({"egressRate": 8_000_000, "egressBurst": 80_000}))).unwrap();
    let veth = w.veth();
    let qdiscs = w.host.qdiscs(Some(veth.index)).unwrap();
    assert_eq!(qdiscs, [Qdisc::ingress(veth.index)], "no bucket on the veth");
    assert_eq!(res.interfaces.last().unwrap().name, IFB);
}

/// Run ADD with the n-th kernel call failing, for every call a successful
/// ADD makes: nothing is left, and every change has failed once.
#[test]
fn a_failure_at_any_step_leaves_nothing() {
    let mut ok = World::new();
    ok.add(&k8s()).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EIO);
        let e = w.add(&k8s()).unwrap_err();
        failed += 1;
        assert_eq!(w.kernel.state(), before, "failure at call {n} ({e}): {:?}", w.kernel.calls());
    }
    assert!(failed >= ok.kernel.changes().len());
}

#[test]
fn an_ifb_left_behind_is_reported_and_left_alone() {
    let mut w = World::new();
    w.host.add_link(&NewLink::new(IFB, LinkKind::Ifb)).unwrap();
    let before = w.kernel.state();
    let e = w.add(&k8s()).unwrap_err();
    assert!(
        e.msg.contains(&format!("creating the ifb device {IFB}")) && e.msg.contains("earlier ADD"),
        "{e}"
    );
    assert_eq!(w.kernel.state(), before, "the ingress bucket is taken back, the old ifb stays");
}

#[test]
fn the_host_end_is_the_veth_peer_listed_in_prev_result() {
    let mut w = World::new();
    let mut c = k8s();
    c["prevResult"]["interfaces"] = json!([]);
    assert!(w.add(&c).unwrap_err().msg.contains("prevResult lists no interfaces"));
    let mut c = k8s();
    c["prevResult"]["interfaces"][1]["name"] = json!("veth99");
    let e = w.add(&c).unwrap_err();
    assert_eq!(e.msg, "eth0's host end vethh0 is not among prevResult's host interfaces");
    // Listed, but as a container interface: not a host interface.
    let mut c = k8s();
    c["prevResult"]["interfaces"][1]["sandbox"] = json!("/run/netns/c1");
    assert!(w.add(&c).is_err());
    // A container interface that is not a veth.
    w.ctr.add_link(&NewLink::new("net1", LinkKind::Dummy)).unwrap();
    let mut args = w.args(Command::Add, &k8s());
    args.ifname = "net1".into();
    let buckets = config::load(&args.conf).unwrap().unwrap().buckets(&CLOCK).unwrap();
    let e = add(&args, &buckets, prev_result(&args).unwrap(), &mut w.host, &mut w.ctr).unwrap_err();
    assert!(e.msg.contains("net1 has no veth peer"), "{e}");
    // A veth whose peer lives in a third netns.
    let mut other = w.kernel.netns("elsewhere");
    let fd = other.netns_fd().unwrap();
    let kind = LinkKind::Veth { peer: "away0".into(), peer_netns_fd: Some(fd) };
    w.ctr.add_link(&NewLink::new("net2", kind)).unwrap();
    args.ifname = "net2".into();
    let e = add(&args, &buckets, prev_result(&args).unwrap(), &mut w.host, &mut w.ctr).unwrap_err();
    assert!(
        e.msg.contains("the veth peer of net2") && e.msg.contains("not in the host's network namespace"),
        "{e}"
    );
    // Results before 0.3.0 list no interfaces: the peer alone decides.
    let mut old = k8s();
    old["cniVersion"] = json!("0.2.0");
    old["prevResult"] = json!({"cniVersion": "0.2.0", "ip4": {"ip": "10.22.0.5/16"}});
    w.add(&old).unwrap();
    assert!(w.host.link_by_name(IFB).is_ok());
}

#[test]
fn del_removes_the_ifb_and_succeeds_when_it_is_gone() {
    let mut w = World::new();
    w.add(&k8s()).unwrap();
    w.del(&k8s()).unwrap();
    assert!(w.host.link_by_name(IFB).is_err());
    w.del(&k8s()).unwrap();
    // The container and its veth gone: DEL needs neither, nor prevResult or limits.
    let mut w = World::new();
    w.add(&k8s()).unwrap();
    w.kernel.delete_netns("c1");
    w.del(&json!({"cniVersion": "1.0.0", "name": "k8s-pods", "type": "bandwidth"})).unwrap();
    assert!(w.host.link_by_name(IFB).is_err());
    // A device of another kind under that name is not ours.
    let mut w = World::new();
    w.host.add_link(&NewLink::new(IFB, LinkKind::Dummy)).unwrap();
    w.del(&k8s()).unwrap();
    assert!(w.host.link_by_name(IFB).is_ok());
    // A refusal is reported.
    let mut w = World::new();
    w.add(&k8s()).unwrap();
    w.kernel.fail_on("del_link", libc::EPERM);
    assert!(w.del(&k8s()).unwrap_err().msg.contains(&format!("deleting {IFB}")));
}

#[test]
fn check_finds_each_bucket_and_the_redirect_as_add_made_them() {
    let mut w = World::new();
    w.add(&k8s()).unwrap();
    w.check(&k8s()).unwrap();
    // Other limits than the ones in place.
    let other = conf(json!({"IngressRate": 10_000_000, "IngressBurst": 8_000_000,
                            "EgressRate": 20_000_000, "EgressBurst": 4294967295u64}));
    let e = w.check(&other).unwrap_err();
    assert!(
        e.msg.starts_with("the ingress limit on vethh0 is 1250000 bytes/s, a bucket of 4294967295 ticks"),
        "{e}"
    );
    // Without limits there is nothing to check beyond the veth.
    w.check(&conf(json!(null))).unwrap();
    // The redirect gone.
    let veth = w.veth().index;
    w.host.del_qdisc(veth, TC_H_INGRESS).unwrap();
    assert_eq!(w.check(&k8s()).unwrap_err().msg, format!("vethh0's traffic is not redirected to {IFB}"));
    // The buckets gone.
    w.host.del_qdisc(veth, TC_H_ROOT).unwrap();
    assert_eq!(w.check(&k8s()).unwrap_err().msg, "vethh0 has no token bucket (tbf) for the ingress limit");
    w.del(&k8s()).unwrap();
    let egress_only = conf(json!({"EgressRate": 20_000_000, "EgressBurst": 4294967295u64}));
    assert!(w
        .check(&egress_only)
        .unwrap_err()
        .msg
        .starts_with(&format!("the ifb device {IFB} of the egress limit")));
}

#[test]
fn gc_removes_our_ifbs_of_attachments_that_are_gone() {
    let mut w = World::new();
    w.add(&k8s()).unwrap();
    // Another attachment on this network, one on another network, and one the reference made.
    let mut mine = NewLink::new(&ifb_name("k8s-pods", "gone"), LinkKind::Ifb);
    w.host.add_link(&mine).unwrap();
    let i = w.host.link_by_name(&mine.name).unwrap().index;
    w.host.set_alias(i, "cni-rs bandwidth k8s-pods gone").unwrap();
    mine.name = ifb_name("other-net", "gone");
    w.host.add_link(&mine).unwrap();
    let i = w.host.link_by_name(&mine.name).unwrap().index;
    w.host.set_alias(i, "cni-rs bandwidth other-net gone").unwrap();
    let reference = ifb_name("k8s-pods", "old");
    w.host.add_link(&NewLink::new(&reference, LinkKind::Ifb)).unwrap();

    w.gc(&k8s(), &["c1"]).unwrap();
    let mut left: Vec<String> = w.host.links().unwrap().into_iter().map(|l| l.name).collect();
    left.sort();
    let mut want =
        vec![IFB.to_string(), ifb_name("other-net", "gone"), reference, "lo".into(), "vethh0".into()];
    want.sort();
    assert_eq!(left, want);
    // Nothing valid: ours goes too.
    w.gc(&k8s(), &[]).unwrap();
    assert!(w.host.link_by_name(IFB).is_err());
}

#[test]
fn nothing_to_shape_passes_prev_result_through_without_touching_the_kernel() {
    let args = cmd_args(Command::Add, &conf(json!({"ingressRate": 0, "ingressBurst": 0})));
    let res = Bandwidth.add(&args).unwrap();
    assert_eq!(res, args.conf.prev_result.clone().unwrap());
    let mut bare = conf(json!(null));
    bare.as_object_mut().unwrap().remove("prevResult");
    let e = Bandwidth.add(&cmd_args(Command::Add, &bare)).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (7, "bandwidth must be called as a chained plugin: prevResult is missing")
    );
}
