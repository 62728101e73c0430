//! vrf's decisions against the fake kernel (no root), which cycles a VRF
//! port as the kernel does (common::fake's conformance script checks that
//! on a kernel with vrf): the VRF and its table, what is put back after
//! enslaving, that a failure at any step leaves nothing, DEL and CHECK.
//! tests/vrf.rs proves the same on the real kernel (in the VM), with traffic.

use std::net::IpAddr;

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::ipnet::IpNet;
use common::skel::Command;

/// A container "c1" with `eth0` (10.1.0.2/24 and fd00:1::2/64, a default
/// route via 10.1.0.1, a device route an IPAM set, a route via a gateway)
/// and `eth1` (10.2.0.2/24), as main plugins leave them.
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (host, mut ctr) = (kernel.host(), kernel.netns("c1"));
        for (name, addrs) in [("eth0", &["10.1.0.2/24", "fd00:1::2/64"][..]), ("eth1", &["10.2.0.2/24"][..])]
        {
            ctr.add_link(&NewLink::new(name, LinkKind::Dummy)).unwrap();
            let i = ctr.link_by_name(name).unwrap().index;
            ctr.set_up(i).unwrap();
            for a in addrs {
                let net: IpNet = a.parse().unwrap();
                ctr.add_addr(i, net.addr, net.prefix, &AddrOpts { nodad: true, ..AddrOpts::default() })
                    .unwrap();
                let sub = net.network();
                let kernel_route =
                    Route { oif: Some(i), protocol: libc::RTPROT_KERNEL, ..Route::new(sub.addr, sub.prefix) };
                ctr.add_route(&kernel_route).unwrap();
            }
        }
        let eth0 = ctr.link_by_name("eth0").unwrap().index;
        let mut device = Route::new(ip("10.60.0.0"), 24);
        (device.oif, device.scope) = (Some(eth0), libc::RT_SCOPE_LINK);
        ctr.add_route(&device).unwrap();
        for (dst, prefix, gw) in
            [("0.0.0.0", 0, "10.1.0.1"), ("10.61.0.0", 16, "10.60.0.1"), ("::", 0, "fd00:1::1")]
        {
            let mut r = Route::new(ip(dst), prefix);
            (r.gateway, r.oif) = (Some(ip(gw)), Some(eth0));
            ctr.add_route(&r).unwrap();
        }
        // Calico's kind of route: the gateway is on the link whatever the addresses say.
        let mut onlink = Route::new(ip("10.62.0.0"), 16);
        (onlink.gateway, onlink.oif, onlink.onlink) = (Some(ip("169.254.1.1")), Some(eth0), true);
        ctr.add_route(&onlink).unwrap();
        kernel.clear_calls();
        World { kernel, host, ctr }
    }

    fn index(&mut self, name: &str) -> u32 {
        self.ctr.link_by_name(name).unwrap().index
    }

    fn args(&self, command: Command, conf: &Value, ifname: &str) -> CmdArgs {
        CmdArgs { ifname: ifname.into(), ..cmd_args(command, conf) }
    }

    fn add_on(&mut self, conf: &Value, ifname: &str) -> Result<()> {
        let args = self.args(Command::Add, conf, ifname);
        let c = config::load(&args.conf)?;
        add(&args, &c, &mut self.host, &mut self.ctr)
    }

    fn add(&mut self, conf: &Value) -> Result<()> {
        self.add_on(conf, "eth0")
    }

    fn del_on(&mut self, conf: &Value, ifname: &str) -> Result<()> {
        let args = self.args(Command::Del, conf, ifname);
        del(&args, &config::load(&args.conf)?, &mut self.ctr)
    }

    fn check_on(&mut self, conf: &Value, ifname: &str) -> Result<()> {
        let args = self.args(Command::Check, conf, ifname);
        check(&args, &config::load(&args.conf)?, &mut self.ctr)
    }

    /// The unicast routes of `table` as "dst/prefix [via gw] dev name", sorted.
    fn table(&mut self, table: u32) -> Vec<String> {
        let links = self.ctr.links().unwrap();
        let name =
            |i: Option<u32>| links.iter().find(|l| Some(l.index) == i).map_or("-", |l| l.name.as_str());
        let mut v: Vec<String> = self
            .ctr
            .routes(Family::Any, table)
            .unwrap()
            .iter()
            .filter(|r| r.route_type == libc::RTN_UNICAST)
            .map(|r| {
                let via = r.gateway.map_or(String::new(), |g| format!(" via {g}"));
                format!("{}/{}{via} dev {}", r.dst, r.prefix, name(r.oif))
            })
            .collect();
        v.sort();
        v
    }

    fn vrf(&mut self, name: &str) -> Option<Link> {
        self.ctr.link_by_name(name).ok()
    }

    fn master_of(&mut self, ifname: &str) -> Option<String> {
        let m = self.ctr.link_by_name(ifname).unwrap().master?;
        Some(self.ctr.link_by_index(m).unwrap().name)
    }

    fn v6_of(&mut self, ifname: &str) -> Vec<String> {
        let i = self.index(ifname);
        self.ctr
            .addrs(Some(i), Family::V6)
            .unwrap()
            .iter()
            .map(|a| format!("{}/{}", a.addr, a.prefix))
            .collect()
    }
}

fn conf(vrf: &str) -> Value {
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "vrf", "vrfname": vrf,
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": "/run/netns/c1"}],
            "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0}]}})
}

fn with(mut c: Value, extra: Value) -> Value {
    c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    c
}

#[test]
fn add_makes_the_vrf_enslaves_and_gives_back_what_enslaving_took() {
    let mut w = World::new();
    w.add(&conf("blue")).unwrap();
    let vrf = w.vrf("blue").unwrap();
    assert_eq!((vrf.kind.as_deref(), vrf.vrf_table, vrf.is_up()), (Some("vrf"), Some(1), true));
    assert_eq!(w.master_of("eth0").as_deref(), Some("blue"));
    assert_eq!(w.v6_of("eth0"), ["fd00:1::2/64"], "the IPv6 address the kernel dropped is back");
    let eth0 = w.index("eth0");
    let addr = w.ctr.addrs(Some(eth0), Family::V6).unwrap().remove(0);
    assert_ne!(addr.flags & libc::IFA_F_NODAD, 0, "with its flags");
    assert_eq!(
        w.table(1),
        [
            "0.0.0.0/0 via 10.1.0.1 dev eth0",
            "10.60.0.0/24 dev eth0",
            "10.61.0.0/16 via 10.60.0.1 dev eth0",
            "10.62.0.0/16 via 169.254.1.1 dev eth0",
            "::/0 via fd00:1::1 dev eth0"
        ],
        "the routes an IPAM or a main plugin set, device routes too; the kernel makes its own again"
    );
    assert!(w.table(MAIN).iter().all(|r| !r.ends_with("eth0")), "{:?}", w.table(MAIN));
    let onlink = w.ctr.routes(Family::V4, 1).unwrap().into_iter().find(|r| r.prefix == 16 && r.onlink);
    assert!(onlink.is_some(), "moved with its onlink flag");
}

#[test]
fn a_second_interface_joins_the_vrf_and_other_vrfs_get_other_tables() {
    let mut w = World::new();
    w.add(&conf("blue")).unwrap();
    w.add_on(&conf("blue"), "eth1").unwrap();
    assert_eq!(w.master_of("eth1").as_deref(), Some("blue"));
    assert_eq!(w.vrf("blue").unwrap().vrf_table, Some(1));

    let mut w = World::new();
    for (name, table) in [("a", 1), ("b", 2), ("c", 4)] {
        w.ctr.add_link(&NewLink::new(name, LinkKind::Vrf { table })).unwrap();
    }
    w.add(&conf("red")).unwrap();
    assert_eq!(w.vrf("red").unwrap().vrf_table, Some(3), "the first table no VRF uses");
    assert_eq!(free_table(&(1..=252).collect()), 256, "never default, main or local");
}

#[test]
fn the_configured_table_is_used_and_checked() {
    let mut w = World::new();
    w.add(&with(conf("blue"), json!({"table": 1001}))).unwrap();
    assert_eq!(w.vrf("blue").unwrap().vrf_table, Some(1001));
    w.check_on(&with(conf("blue"), json!({"table": 1001})), "eth0").unwrap();
    w.add_on(&conf("blue"), "eth1").unwrap(); // no table: the VRF's own

    let mut w = World::new();
    w.add(&with(conf("blue"), json!({"table": 1001}))).unwrap();
    let before = w.kernel.state();
    let e = w.add_on(&with(conf("blue"), json!({"table": 1002})), "eth1").unwrap_err();
    assert!(e.msg.contains("VRF blue already exist with different routing table 1001"), "{e}");
    // Two VRFs on one table would share their routes: refused (the kernel's strict mode).
    let e = w.add_on(&with(conf("red"), json!({"table": 1001})), "eth1").unwrap_err();
    assert_eq!(e.code, 7);
    assert!(e.msg.contains("table 1001 is the table of VRF blue"), "{e}");
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn a_name_that_is_not_a_vrf_or_an_interface_with_a_master_is_refused() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::bridge("br0")).unwrap();
    let before = w.kernel.state();
    let e = w.add(&conf("br0")).unwrap_err();
    assert!(e.msg.contains("br0 is a bridge in the container, not a VRF"), "{e}");
    let (eth1, br) = (w.index("eth1"), w.index("br0"));
    w.ctr.set_master(eth1, br).unwrap();
    let before_master = w.kernel.state();
    let e = w.add_on(&conf("blue"), "eth1").unwrap_err();
    assert!(e.msg.contains("interface eth1 has already a master set: br0"), "{e}");
    assert_eq!(w.kernel.state(), before_master, "no VRF made");
    let e = w.add_on(&conf("blue"), "eth9").unwrap_err();
    assert!(e.msg.contains("could not get link eth9"), "{e}");
    let _ = before;
}

#[test]
fn a_failure_at_any_step_leaves_everything_as_it_was() {
    for existing in [false, true] {
        let setup = |w: &mut World| {
            if existing {
                w.ctr.add_link(&NewLink::new("blue", LinkKind::Vrf { table: 7 })).unwrap();
                w.kernel.clear_calls();
            }
        };
        let mut ok = World::new();
        setup(&mut ok);
        ok.add(&conf("blue")).unwrap();
        let calls = ok.kernel.calls().len();
        let mut failed = 0;
        for n in 1..=calls {
            let mut w = World::new();
            setup(&mut w);
            let before = w.kernel.state();
            w.kernel.fail_at(n, libc::EIO);
            if let Err(e) = w.add(&conf("blue")) {
                failed += 1;
                assert_eq!(w.kernel.state(), before, "failure at call {n} ({e}): {:#?}", w.kernel.calls());
            }
        }
        assert!(failed > 5, "{failed} of {calls}");
    }
}

#[test]
fn addresses_the_kernel_keeps_are_not_added_again() {
    let mut w = World::new();
    w.ctr.set_sysctl("net/ipv6/conf/all/keep_addr_on_down", "1").unwrap();
    w.kernel.clear_calls();
    w.add(&conf("blue")).unwrap();
    assert!(!w.kernel.calls().iter().any(|c| c.contains("add_addr")), "{:#?}", w.kernel.calls());
    assert_eq!(w.v6_of("eth0"), ["fd00:1::2/64"]);
}

#[test]
fn del_releases_and_the_vrf_goes_with_its_last_port() {
    let mut w = World::new();
    w.add(&conf("blue")).unwrap();
    w.add_on(&conf("blue"), "eth1").unwrap();
    w.del_on(&conf("blue"), "eth0").unwrap();
    assert_eq!(w.master_of("eth0"), None);
    assert!(w.vrf("blue").is_some(), "eth1 is still in it");
    w.del_on(&conf("blue"), "eth0").unwrap();
    // The interface gone before DEL (its main plugin went first): the VRF goes all the same.
    let eth1 = w.index("eth1");
    w.ctr.del_link(eth1).unwrap();
    w.del_on(&conf("blue"), "eth1").unwrap();
    assert!(w.vrf("blue").is_none());
    w.del_on(&conf("blue"), "eth1").unwrap();
}

#[test]
fn del_gives_the_interface_back_as_add_found_it() {
    // Its main-table routes and IPv6 addresses, which enslaving and
    // releasing take, are back: a runtime that keeps the interface (or a
    // chain that ADDs again) finds it routed as before.
    // (The kernel's own prefix routes come back by themselves on the real
    // kernel, as bad_input's vrf rows show in the VM; the fake does not
    // make them.)
    let mut w = World::new();
    let kernels = ["10.1.0.0/24 dev eth0", "fd00:1::/64 dev eth0"];
    let mut before = w.table(MAIN);
    before.retain(|r| !kernels.contains(&r.as_str()));
    let v6 = w.v6_of("eth0");
    w.add(&conf("blue")).unwrap();
    w.del_on(&conf("blue"), "eth0").unwrap();
    assert_eq!(w.master_of("eth0"), None);
    assert_eq!(w.table(MAIN), before);
    assert_eq!(w.v6_of("eth0"), v6);
}

#[test]
fn del_leaves_a_port_of_another_master_and_a_device_that_is_no_vrf() {
    let mut w = World::new();
    w.ctr.add_link(&NewLink::bridge("blue")).unwrap();
    let (eth0, br) = (w.index("eth0"), w.index("blue"));
    w.ctr.set_master(eth0, br).unwrap();
    let before = w.kernel.state();
    w.del_on(&conf("blue"), "eth0").unwrap();
    assert_eq!(w.kernel.state(), before);

    let mut w = World::new();
    w.add(&conf("blue")).unwrap();
    w.ctr.add_link(&NewLink::bridge("br0")).unwrap();
    let (eth1, br) = (w.index("eth1"), w.index("br0"));
    w.ctr.set_master(eth1, br).unwrap();
    w.del_on(&conf("blue"), "eth1").unwrap();
    assert_eq!(w.master_of("eth1").as_deref(), Some("br0"));
    assert_eq!(w.master_of("eth0").as_deref(), Some("blue"), "eth0 is still in it");
}

#[test]
fn check_finds_a_missing_vrf_a_released_interface_or_another_table() {
    let mut w = World::new();
    w.add(&conf("blue")).unwrap();
    w.check_on(&conf("blue"), "eth0").unwrap();
    let e = w.check_on(&conf("blue"), "eth1").unwrap_err();
    assert!(e.msg.contains("failed to find eth1 associated to vrf blue"), "{e}");
    let e = w.check_on(&with(conf("blue"), json!({"table": 9})), "eth0").unwrap_err();
    assert!(e.msg.contains("VRF blue has routing table 1; the config says 9"), "{e}");
    let e = w.check_on(&conf("red"), "eth0").unwrap_err();
    assert!(e.msg.contains("finding VRF red"), "{e}");
}

#[test]
fn fields_are_read_as_the_reference_reads_them() {
    let load = |c: Value| config::load(&cmd_args(Command::Add, &c).conf);
    let base = json!({"cniVersion": "1.0.0", "name": "n", "type": "vrf"});
    let ok = load(with(base.clone(), json!({"vrfName": "blue", "Table": 0}))).unwrap();
    assert_eq!((ok.vrf.as_str(), ok.table), ("blue", None));
    for (extra, msg) in [
        (json!({}), "configuration is expected to have a valid vrf name"),
        (json!({"vrfname": ""}), "configuration is expected to have a valid vrf name"),
        (json!({"vrfname": "a-name-too-long-x"}), "at most 15 bytes"),
        (json!({"vrfname": "a/b"}), "cannot contain /"),
        (json!({"vrfname": 5}), "\"vrfname\""),
        (json!({"vrfname": "blue", "table": -1}), "\"table\""),
        (json!({"vrfname": "blue", "table": 4294967296u64}), "\"table\""),
    ] {
        let e = load(with(base.clone(), extra.clone())).unwrap_err();
        assert_eq!(e.code, 7, "{extra}: {e}");
        assert!(e.msg.contains(msg), "{extra}: {e}");
    }
}
