//! The fake's own tests, and its conformance with the real kernel: one
//! script of calls runs against `Rtnl` in two fresh namespaces (root only)
//! and against the fake, and every step must end the same way.

use std::net::IpAddr;
use std::process::Command as Process;
use std::sync::atomic::{AtomicU32, Ordering};

use super::*;
use crate::ipam::Ipam;
use crate::net::NetStack;
use crate::netlink::rtnl::{AddrOpts, Family, Link, LinkKind, MacvlanMode, NewLink, Route, Rtnl, Rule};
use crate::netlink::rtnl::{IpvlanFlags, IpvlanMode, VlanProtocol};
use crate::netns::Netns;
use crate::nft::Nftables;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn names(net: &mut FakeNet) -> Vec<String> {
    let mut v: Vec<String> = net.links().unwrap().into_iter().map(|l| l.name).collect();
    v.sort();
    v
}

#[test]
fn links_live_in_the_netns_they_are_created_in_with_per_netns_indexes() {
    let k = FakeKernel::new();
    let (mut host, mut ctr) = (k.host(), k.netns("c1"));
    let fd = ctr.netns_fd().unwrap();
    let veth = NewLink::new("eth0", LinkKind::Veth { peer: "veth0".into(), peer_netns_fd: Some(fd) });
    host.add_link(&veth).unwrap();
    assert_eq!(names(&mut host), ["eth0", "lo"]);
    assert_eq!(names(&mut ctr), ["lo", "veth0"]);
    let (a, b) = (host.link_by_name("eth0").unwrap(), ctr.link_by_name("veth0").unwrap());
    assert_eq!((a.index, b.index), (2, 2), "each netns counts its own indexes");
    assert_eq!((a.link, a.link_netnsid.is_some()), (Some(b.index), true), "the peer is elsewhere");
    assert_eq!(a.mtu, 1500);
    // Deleting one end takes the other.
    ctr.del_link_by_name("veth0").unwrap();
    assert_eq!(names(&mut host), ["lo"]);
    assert_eq!(host.del_link_by_name("eth0").unwrap_err().errno, libc::ENODEV);
}

#[test]
fn a_macvlan_goes_with_its_parent_and_inherits_its_mtu() {
    let k = FakeKernel::new();
    let (mut host, mut ctr) = (k.host(), k.netns("c1"));
    host.add_link(&NewLink { mtu: Some(9000), ..NewLink::new("m0", LinkKind::Dummy) }).unwrap();
    let parent = host.link_by_name("m0").unwrap().index;
    let fd = ctr.netns_fd().unwrap();
    let mv = NewLink { netns_fd: Some(fd), ..NewLink::macvlan("mv0", parent, MacvlanMode::Bridge) };
    host.add_link(&mv).unwrap();
    let l = ctr.link_by_name("mv0").unwrap();
    assert_eq!((l.mtu, l.link, l.macvlan_mode), (9000, Some(parent), Some(MacvlanMode::Bridge)));
    let big = NewLink { mtu: Some(9001), name: "mv1".into(), ..mv.clone() };
    assert_eq!(host.add_link(&big).unwrap_err().errno, libc::EINVAL);
    let passthru = NewLink::macvlan("mv2", parent, MacvlanMode::Passthru);
    assert_eq!(host.add_link(&passthru).unwrap_err().errno, libc::EINVAL, "not the only macvlan");
    host.del_link(parent).unwrap();
    assert_eq!(names(&mut ctr), ["lo"]);
}

#[test]
fn rename_wants_the_link_down_and_the_name_free() {
    let k = FakeKernel::new();
    let mut n = k.host();
    n.add_link(&NewLink::new("d0", LinkKind::Dummy)).unwrap();
    n.add_link(&NewLink::new("d1", LinkKind::Dummy)).unwrap();
    let d0 = n.link_by_name("d0").unwrap().index;
    assert_eq!(n.rename(d0, "d1").unwrap_err().errno, libc::EEXIST);
    assert_eq!(n.rename(d0, "a/b").unwrap_err().errno, libc::EINVAL);
    n.set_sysctl("net/ipv4/conf/d0/arp_notify", "1").unwrap();
    n.set_up(d0).unwrap();
    assert_eq!(n.rename(d0, "d2").unwrap_err().errno, libc::EBUSY);
    n.set_down(d0).unwrap();
    n.rename(d0, "d2").unwrap();
    assert_eq!(n.sysctl("net/ipv4/conf/d2/arp_notify").unwrap(), "1", "settings follow the link");
    assert_eq!(n.sysctl("net/ipv4/conf/d0/arp_notify").unwrap_err().kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn routes_need_an_up_link_and_a_reachable_gateway() {
    let k = FakeKernel::new();
    let mut n = k.host();
    n.add_link(&NewLink::new("d0", LinkKind::Dummy)).unwrap();
    let d0 = n.link_by_name("d0").unwrap().index;
    n.add_addr(d0, ip("10.1.0.2"), 24, &AddrOpts::default()).unwrap();
    assert_eq!(n.add_addr(d0, ip("10.1.0.2"), 24, &AddrOpts::default()).unwrap_err().errno, libc::EEXIST);
    let mut default = Route::new(ip("0.0.0.0"), 0);
    (default.gateway, default.oif) = (Some(ip("10.1.0.1")), Some(d0));
    assert_eq!(n.add_route(&default).unwrap_err().errno, libc::ENETUNREACH, "the link is down");
    let mut device = Route::new(ip("10.3.0.0"), 24);
    device.oif = Some(d0);
    assert_eq!(n.add_route(&device).unwrap_err().errno, libc::ENETDOWN);
    n.set_up(d0).unwrap();
    let mut far = default.clone();
    far.gateway = Some(ip("10.2.0.1"));
    assert_eq!(n.add_route(&far).unwrap_err().errno, libc::ENETUNREACH);
    n.add_route(&default).unwrap();
    assert_eq!(n.add_route(&default).unwrap_err().errno, libc::EEXIST);
    assert_eq!(n.routes(Family::V4, 254).unwrap(), [default.clone()]);
    n.set_down(d0).unwrap();
    assert!(n.routes(Family::V4, 0).unwrap().is_empty(), "a link going down takes its IPv4 routes");
    assert_eq!(n.del_route(&default).unwrap_err().errno, libc::ESRCH);
}

#[test]
fn rules_get_a_priority_and_are_found_by_their_selectors() {
    let k = FakeKernel::new();
    let mut n = k.host();
    let rule = Rule { src: Some("10.1.0.2/32".parse().unwrap()), ..Rule::new(Family::V4, 100) };
    n.add_rule(&rule).unwrap();
    assert_eq!(n.add_rule(&Rule { priority: Some(32765), ..rule.clone() }).unwrap_err().errno, libc::EEXIST);
    let got: Vec<Rule> = n.rules(Family::V4).unwrap().into_iter().filter(|r| r.table == 100).collect();
    assert_eq!(got, [Rule { priority: Some(32765), ..rule.clone() }]);
    n.del_rule(&rule).unwrap();
    assert_eq!(n.del_rule(&rule).unwrap_err().errno, libc::ENOENT);
}

#[test]
fn moving_a_link_keeps_its_index_when_free_and_drops_its_addresses() {
    let k = FakeKernel::new();
    let (mut host, mut ctr) = (k.host(), k.netns("c1"));
    host.add_link(&NewLink::new("d0", LinkKind::Dummy)).unwrap();
    let d0 = host.link_by_name("d0").unwrap().index;
    host.add_addr(d0, ip("10.1.0.2"), 24, &AddrOpts::default()).unwrap();
    let fd = ctr.netns_fd().unwrap();
    host.set_netns_fd(d0, fd).unwrap();
    let moved = ctr.link_by_name("d0").unwrap();
    assert_eq!(moved.index, d0);
    assert!(
        ctr.addrs(Some(d0), Family::Any).unwrap().is_empty()
            && host.addrs(Some(d0), Family::Any).unwrap().is_empty()
    );
    assert_eq!(host.set_netns_fd(1, 12345).unwrap_err().errno, libc::EBADF);
}

#[test]
fn faults_hit_the_chosen_call_and_change_nothing() {
    let k = FakeKernel::new();
    let mut n = k.host();
    let before = k.state();
    k.fail_at(2, libc::EPERM);
    n.add_link(&NewLink::new("d0", LinkKind::Dummy)).unwrap();
    assert_eq!(n.add_link(&NewLink::new("d1", LinkKind::Dummy)).unwrap_err().errno, libc::EPERM);
    assert_eq!(names(&mut n), ["d0", "lo"]);
    assert_eq!(k.calls()[1], "host: add_link dummy d1 → injected errno 1");
    n.del_link_by_name("d0").unwrap();
    assert_eq!(k.state(), before);
    k.fail_on("set_sysctls", libc::EACCES);
    assert_eq!(n.set_sysctl("net/ipv4/ip_forward", "1").unwrap_err().raw_os_error(), Some(libc::EACCES));
    n.set_sysctl("net/ipv4/ip_forward", "1").unwrap();
    assert_eq!(n.sysctl("net/ipv4/ip_forward").unwrap(), "1");
}

#[test]
fn ipv6_sysctls_are_missing_where_ipv6_is_off() {
    let k = FakeKernel::new();
    let mut c = k.netns("c1");
    assert!(c.set_sysctl("net/ipv6/conf/lo/ndisc_notify", "1").is_ok());
    k.disable_ipv6("c1");
    assert_eq!(c.sysctl("net/ipv6/conf/lo/ndisc_notify").unwrap_err().kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn deleting_a_netns_destroys_its_links_and_their_peers() {
    let k = FakeKernel::new();
    let (mut host, mut ctr) = (k.host(), k.netns("c1"));
    let fd = host.netns_fd().unwrap();
    ctr.add_link(&NewLink::new("eth0", LinkKind::Veth { peer: "veth0".into(), peer_netns_fd: Some(fd) }))
        .unwrap();
    k.delete_netns("c1");
    assert_eq!(names(&mut host), ["lo"]);
    assert!(!k.state().contains("c1"));
}

#[test]
fn ipam_leases_one_address_per_attachment() {
    let k = FakeKernel::new();
    let mut ipam = k.ipam();
    let args = cmd_args(Command::Add, &serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "x"}));
    let r = ipam.add("host-local", &args).unwrap();
    assert_eq!(r.ips[0].address.to_string(), "10.88.0.2/16");
    assert!(ipam.add("host-local", &args).is_err(), "a second ADD of the same attachment");
    assert_eq!(k.leases(), ["c1/eth0 10.88.0.2/16"]);
    ipam.check("host-local", &args).unwrap();
    ipam.del("host-local", &args).unwrap();
    ipam.del("host-local", &args).unwrap();
    assert!(ipam.check("host-local", &args).is_err());
    assert!(k.leases().is_empty());
}

// ----- conformance with the real kernel ---------------------------------------------------

/// A script of calls with edge cases; each step's outcome as text.
fn script<N: NetStack>(host: &mut N, ctr: &mut N) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<(), NlError>| {
        out.push(format!("{what}: {}", r.map_or_else(|e| format!("errno {}", e.errno), |_| "ok".into())));
    };
    let ctr_fd = ctr.netns_fd().unwrap();
    let veth = |name: &str, peer: &str| {
        NewLink::new(name, LinkKind::Veth { peer: peer.into(), peer_netns_fd: Some(ctr_fd) })
    };
    note("veth", host.add_link(&NewLink { mtu: Some(1400), ..veth("up0", "down0") }));
    note("veth again", host.add_link(&veth("up0", "x")));
    note("veth peer taken", host.add_link(&veth("up1", "down0")));
    note("bad name", host.add_link(&veth("a/b", "x")));
    let up0 = host.link_by_name("up0").unwrap();
    note("mtu both ends", ctr.link_by_name("down0").map(|l| assert_eq!(l.mtu, 1400)));
    let mv = |name: &str| NewLink {
        netns_fd: Some(ctr_fd),
        ..NewLink::macvlan(name, up0.index, MacvlanMode::Bridge)
    };
    note("macvlan into ctr", host.add_link(&mv("mv0")));
    note("macvlan mtu above parent", host.add_link(&NewLink { mtu: Some(1500), ..mv("mv1") }));
    note("multicast mac", host.add_link(&NewLink { mac: Some([1, 0, 0x5e, 0, 0, 1]), ..mv("mv2") }));
    note("macvlan without parent", host.add_link(&NewLink { parent: Some(999_999), ..mv("mv3") }));
    let mv0 = ctr.link_by_name("mv0").unwrap();
    note("rename to taken", ctr.rename(mv0.index, "down0"));
    // (Renaming an up link is EBUSY before Linux 6.x, allowed after: the
    // fake refuses it, as the oldest kernels do; see its own test.)
    note("rename", ctr.rename(mv0.index, "eth0"));
    note("enslave to non-master", ctr.set_master(mv0.index, 1));
    note("addr", ctr.add_addr(mv0.index, ip("10.5.0.2"), 24, &AddrOpts::default()));
    note("addr again", ctr.add_addr(mv0.index, ip("10.5.0.2"), 24, &AddrOpts::default()));
    let mut default = Route::new(ip("0.0.0.0"), 0);
    (default.gateway, default.oif) = (Some(ip("10.5.0.1")), Some(mv0.index));
    let mut device_route = Route::new(ip("10.7.0.0"), 24);
    (device_route.oif, device_route.scope) = (Some(mv0.index), libc::RT_SCOPE_LINK);
    note("device route via down link", ctr.add_route(&device_route));
    note("route via down link", ctr.add_route(&default));
    note("up again", ctr.set_up(mv0.index));
    let mut far = default.clone();
    far.gateway = Some(ip("10.6.0.1"));
    note("unreachable gateway", ctr.add_route(&far));
    let far_onlink = Route { onlink: true, ..far.clone() };
    note("unreachable gateway onlink", ctr.add_route(&far_onlink));
    note("del onlink", ctr.del_route(&far_onlink));
    note("v4 link-local gateway", ctr.add_route(&Route { gateway: Some(ip("169.254.1.1")), ..far.clone() }));
    note("route", ctr.add_route(&default));
    note("route again", ctr.add_route(&default));
    note("del route", ctr.del_route(&default));
    note("del route again", ctr.del_route(&default));
    note("del addr missing", ctr.del_addr(mv0.index, ip("10.5.0.9"), 24));
    let rule =
        Rule { src: Some("10.5.0.2/32".parse().unwrap()), priority: Some(100), ..Rule::new(Family::V4, 100) };
    note("rule", ctr.add_rule(&rule));
    note("rule again", ctr.add_rule(&rule));
    note("del rule", ctr.del_rule(&rule));
    note("del rule again", ctr.del_rule(&rule));
    note("neigh", ctr.set_neigh(mv0.index, ip("10.5.0.7"), [2, 0, 0, 0, 0, 7]));
    note("del neigh", ctr.del_neigh(mv0.index, ip("10.5.0.7")));
    note("del neigh again", ctr.del_neigh(mv0.index, ip("10.5.0.7")));
    let io = |r: std::io::Result<()>| {
        let not_found = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
        r.map_err(|e| NlError { errno: if not_found(&e) { libc::ENOENT } else { -1 }, ext: None })
    };
    note("sysctl of a link", io(ctr.set_sysctl("net/ipv4/conf/eth0/arp_notify", "1")));
    note("sysctl of no link", io(ctr.set_sysctl("net/ipv4/conf/nope0/arp_notify", "1")));
    note("move back", ctr.set_netns_fd(mv0.index, host.netns_fd().unwrap()));
    note("parent deleted", host.del_link(up0.index));
    note("children gone", host.link_by_name("eth0").map(drop));
    note("peer gone", ctr.link_by_name("down0").map(drop));
    out
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A named netns for the length of a test.
struct RealNs(String);

impl RealNs {
    fn new() -> RealNs {
        let name = format!("cni-fake-test-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        assert!(Process::new("ip").args(["netns", "add", &name]).status().unwrap().success());
        RealNs(name)
    }
    fn rtnl(&self) -> Rtnl {
        let ns = Netns::open(format!("/run/netns/{}", self.0)).unwrap();
        Rtnl::in_netns(&ns).unwrap()
    }
}

impl Drop for RealNs {
    fn drop(&mut self) {
        let _ = Process::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn the_fake_refuses_what_the_kernel_refuses() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    let (a, b) = (RealNs::new(), RealNs::new());
    let real = script(&mut a.rtnl(), &mut b.rtnl());
    let k = FakeKernel::new();
    let fake = script(&mut k.host(), &mut k.netns("c1"));
    assert_eq!(fake, real);
}

/// A script of VRF calls: a port enslaved and released, what happens to
/// its addresses and routes; each outcome and what the listings show, as
/// text. None when the kernel has no vrf.
fn vrf_script<N: NetStack>(n: &mut N) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, NlError>| {
        out.push(format!("{what}: {}", r.unwrap_or_else(|e| format!("errno {}", e.errno))));
    };
    let ok = |r: Result<(), NlError>| r.map(|_| "ok".to_string());
    match n.add_link(&NewLink::new("vrf0", LinkKind::Vrf { table: 10 })) {
        Err(e) if e.errno == libc::EOPNOTSUPP => return None,
        r => note("vrf", ok(r)),
    }
    note("vrf again", ok(n.add_link(&NewLink::new("vrf0", LinkKind::Vrf { table: 11 }))));
    let vrf = n.link_by_name("vrf0").unwrap();
    note("table", Ok(format!("{:?} {:?}", vrf.kind, vrf.vrf_table)));
    note("vrf up", ok(n.set_up(vrf.index)));
    note("veth", ok(n.add_link(&NewLink::veth("p0", "p1"))));
    let (p0, p1) = (n.link_by_name("p0").unwrap().index, n.link_by_name("p1").unwrap().index);
    note("up", ok(n.set_up(p0).and_then(|_| n.set_up(p1))));
    let nodad = AddrOpts { nodad: true, ..AddrOpts::default() };
    note("v4 addr", ok(n.add_addr(p0, ip("10.8.0.2"), 24, &nodad)));
    note("v6 addr", ok(n.add_addr(p0, ip("fd00:8::2"), 64, &nodad)));
    let mut via = Route::new(ip("10.20.0.0"), 16);
    (via.gateway, via.oif) = (Some(ip("10.8.0.1")), Some(p0));
    note("route", ok(n.add_route(&via)));
    note("enslave", ok(n.set_master(p0, vrf.index)));
    let addrs = |n: &mut N| {
        n.addrs(Some(p0), Family::Any).map(|a| {
            let mut v: Vec<String> = a.iter().filter(|a| a.scope == 0).map(|a| a.addr.to_string()).collect();
            v.sort();
            v.join(" ")
        })
    };
    note("global addresses kept", addrs(n));
    let routes = |n: &mut N, table: u32, dst: &str| {
        n.routes(Family::Any, table).map(|r| {
            let r: Vec<&Route> = r.iter().filter(|r| r.dst == ip(dst) && r.oif == Some(p0)).collect();
            r.iter().map(|r| format!("type {} scope {}", r.route_type, r.scope)).collect::<Vec<_>>().join(",")
        })
    };
    note("main route gone", routes(n, libc::RT_TABLE_MAIN as u32, "10.20.0.0"));
    note("v4 local route in the vrf table", routes(n, 10, "10.8.0.2"));
    note("v6 addr back", ok(n.add_addr(p0, ip("fd00:8::2"), 64, &nodad)));
    // The kernel adds the local route of a new IPv6 address from a work queue.
    let mut v6_local = routes(n, 10, "fd00:8::2");
    for _ in 0..100 {
        if v6_local.as_ref().is_ok_and(|s| !s.is_empty()) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        v6_local = routes(n, 10, "fd00:8::2");
    }
    note("v6 local route in the vrf table", v6_local);
    let mut in_vrf = via.clone();
    in_vrf.table = 10;
    note("route into the vrf table", ok(n.add_route(&in_vrf)));
    note("release", ok(n.set_nomaster(p0)));
    note("global addresses after release", addrs(n));
    note("vrf table after release", routes(n, 10, "10.20.0.0"));
    note("local route after release", routes(n, 10, "10.8.0.2"));
    note("master", n.link_by_index(p0).map(|l| format!("{:?}", l.master)));
    note("delete vrf", ok(n.del_link(vrf.index)));
    Some(out)
}

#[test]
fn the_fake_enslaves_to_a_vrf_as_the_kernel_does() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    let a = RealNs::new();
    let Some(real) = vrf_script(&mut a.rtnl()) else {
        // Straight to stderr: libtest would hide an eprintln! of a passing test.
        let msg = "SKIPPED: this kernel has no vrf module; scripts/vm-test runs this test on 6.1\n";
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        return;
    };
    let k = FakeKernel::new();
    let fake = vrf_script(&mut k.host()).unwrap();
    assert_eq!(fake, real);
}

/// A script of nf_tables batches with edge cases; each outcome and what the
/// listings show, as text.
fn nft_script(nft: &mut impl Nftables) -> Vec<String> {
    use crate::nft::{expr, key, BaseChain, Batch, DataType, Elem, Hook, Position, SetSpec, Table, Verdict};
    let t = Table::new(crate::nft::Family::Inet, "cni_fake_test");
    let out = std::cell::RefCell::new(Vec::new());
    let note = |what: &str, r: crate::nft::NftResult<()>| {
        out.borrow_mut().push(format!(
            "{what}: {}",
            r.map_or_else(|e| format!("errno {}", e.err.errno), |_| "ok".into())
        ));
    };
    let batch = |f: &dyn Fn(&mut Batch)| {
        let mut b = Batch::new();
        f(&mut b);
        b
    };
    let v4 = |ip: &str| key::ip(ip.parse().unwrap());
    note(
        "setup",
        nft.commit(&batch(&|b| {
            b.add_table(&t)
                .add_chain(&t, "post", Some(BaseChain::nat(Hook::Postrouting, 100)))
                .add_chain(&t, "mac_x", None)
                .add_set(&t, &SetSpec::set("s4", &[DataType::IPV4_ADDR]))
                .add_set(&t, &SetSpec::vmap("ports", &[DataType::IFNAME]));
        })),
    );
    note(
        "setup again",
        nft.commit(&batch(&|b| {
            b.add_table(&t)
                .add_chain(&t, "mac_x", None)
                .add_set(&t, &SetSpec::set("s4", &[DataType::IPV4_ADDR]));
        })),
    );
    let elem = || Elem::new(v4("10.0.0.1")).comment("a");
    note(
        "element",
        nft.commit(&batch(&|b| {
            b.add_elements(&t, "s4", &[elem()]);
        })),
    );
    note(
        "element again",
        nft.commit(&batch(&|b| {
            b.add_elements(&t, "s4", &[elem()]);
        })),
    );
    note(
        "create existing",
        nft.commit(&batch(&|b| {
            b.create_elements(&t, "s4", &[elem()]);
        })),
    );
    note(
        "short key",
        nft.commit(&batch(&|b| {
            b.add_elements(&t, "s4", &[Elem::new(vec![10, 0, 0])]);
        })),
    );
    let port = |v: Verdict| Elem::new(key::ifname("veth1")).verdict(v).comment("p");
    note(
        "jump",
        nft.commit(&batch(&|b| {
            b.add_elements(&t, "ports", &[port(Verdict::Jump("mac_x".into()))]);
        })),
    );
    note(
        "other data",
        nft.commit(&batch(&|b| {
            b.add_elements(&t, "ports", &[port(Verdict::Drop)]);
        })),
    );
    note(
        "delete jumped-to chain",
        nft.commit(&batch(&|b| {
            b.delete_chain(&t, "mac_x");
        })),
    );
    note(
        "rules",
        nft.commit(&batch(&|b| {
            b.add_rule(&t, "post", &crate::nft::Rule::new(expr::counter()).comment("r1"));
            b.add_rule(&t, "post", &crate::nft::Rule::new(expr::counter()).comment("r0").at(Position::Start));
            b.add_rule(&t, "mac_x", &crate::nft::Rule::new(expr::counter()));
        })),
    );
    note(
        "delete missing rule",
        nft.commit(&batch(&|b| {
            b.delete_rule(&t, "post", 9999);
        })),
    );
    note(
        "delete missing element",
        nft.commit(&batch(&|b| {
            b.delete_elements(&t, "s4", &[v4("10.9.9.9")]);
        })),
    );
    note(
        "all or nothing",
        nft.commit(&batch(&|b| {
            b.add_elements(&t, "s4", &[Elem::new(v4("10.0.0.2"))]).delete_elements(
                &t,
                "s4",
                &[v4("10.9.9.9")],
            );
        })),
    );
    note(
        "destroy missing element and set",
        nft.commit(&batch(&|b| {
            b.destroy_elements(&t, "s4", &[v4("10.9.9.9")]).destroy_elements(&t, "nope", &[v4("10.9.9.9")]);
        })),
    );
    note(
        "delete missing set",
        nft.commit(&batch(&|b| {
            b.delete_set(&t, "nope");
        })),
    );
    let elems = nft.list_elements(&t, "s4").unwrap();
    out.borrow_mut()
        .push(format!("s4: {:?}", elems.iter().map(|e| (&e.key, &e.comment)).collect::<Vec<_>>()));
    let rules = nft.list_rules(&t, "post").unwrap();
    out.borrow_mut().push(format!("post: {:?}", rules.iter().map(|r| &r.comment).collect::<Vec<_>>()));
    let sets = nft.list_sets(&t).unwrap();
    out.borrow_mut().push(format!(
        "sets: {:?}",
        sets.iter().map(|s| (&s.name, s.key_len, s.data_len)).collect::<Vec<_>>()
    ));
    let chains = nft.list_chains(&t).unwrap();
    out.borrow_mut()
        .push(format!("chains: {:?}", chains.iter().map(|c| (&c.name, c.hook)).collect::<Vec<_>>()));
    note("missing chain's rules", nft.list_rules(&t, "nope").map(drop));
    note(
        "unjump, flush and delete chain",
        nft.commit(&batch(&|b| {
            b.destroy_elements(&t, "ports", &[key::ifname("veth1")])
                .flush_chain(&t, "mac_x")
                .delete_chain(&t, "mac_x");
        })),
    );
    note(
        "destroy table",
        nft.commit(&batch(&|b| {
            b.destroy_table(&t);
        })),
    );
    note(
        "destroy table again",
        nft.commit(&batch(&|b| {
            b.destroy_table(&t);
        })),
    );
    note(
        "delete missing table",
        nft.commit(&batch(&|b| {
            b.delete_table(&t);
        })),
    );
    note("missing table's sets", nft.list_sets(&t).map(drop));
    note("missing table's rules", nft.list_rules(&t, "post").map(drop));
    note("missing table's elements", nft.list_elements(&t, "s4").map(drop));
    out.borrow_mut().push(format!("missing table's chains: {:?}", nft.list_chains(&t).map(|c| c.len())));
    out.into_inner()
}

#[test]
fn the_fake_nf_tables_applies_batches_as_the_kernel_does() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    let ns = RealNs::new();
    let real = nft_script(&mut ns.rtnl().nft().unwrap());
    let k = FakeKernel::new();
    let fake = nft_script(&mut k.host().nft().unwrap());
    assert_eq!(fake, real);
    assert!(!k.state().contains("nft "), "the script cleans up");
}

/// A script of traffic-control calls with edge cases; each outcome, and
/// what the listings show, as text.
fn tc_script<N: NetStack>(n: &mut N) -> Vec<String> {
    use crate::netlink::rtnl::tc::{
        handle, Qdisc, QdiscKind, Redirect, Tbf, INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT,
    };
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, NlError>| {
        out.push(format!("{what}: {}", r.unwrap_or_else(|e| format!("errno {}", e.errno))));
    };
    let ok = |r: Result<(), NlError>| r.map(|_| "ok".to_string());
    note("veth", ok(n.add_link(&NewLink::veth("v0", "v1"))));
    note("ifb", ok(n.add_link(&NewLink::new("ifb0", LinkKind::Ifb))));
    let index = |n: &mut N, name: &str| n.link_by_name(name).map(|l| l.index).unwrap_or(999_999);
    let (v0, v1, ifb) = (index(n, "v0"), index(n, "v1"), index(n, "ifb0"));
    note("ifb kind", n.link_by_name("ifb0").map(|l| format!("{:?}", l.kind)));
    note("up", ok(n.set_up(v0)));
    let tbf = Tbf { rate: 125_000, buffer: 1_000_000, limit: 20_000 };
    note("tbf on no link", ok(n.add_qdisc(&Qdisc::root_tbf(999_999, tbf))));
    note("tbf", ok(n.add_qdisc(&Qdisc::root_tbf(v0, tbf))));
    note("tbf again", ok(n.add_qdisc(&Qdisc::root_tbf(v0, tbf))));
    note("ingress", ok(n.add_qdisc(&Qdisc::ingress(v0))));
    note("ingress again", ok(n.add_qdisc(&Qdisc::ingress(v0))));
    let redirect = Redirect {
        index: v0,
        parent: INGRESS_HANDLE,
        prio: 1,
        protocol: libc::ETH_P_ALL as u16,
        classid: handle(1, 1),
        target: ifb,
    };
    note("redirect without ingress", ok(n.add_redirect(&Redirect { index: v1, ..redirect })));
    note("redirect to no link", ok(n.add_redirect(&Redirect { target: 999_999, ..redirect })));
    note("redirect", ok(n.add_redirect(&redirect)));
    let listing = |n: &mut N, i: u32| -> Result<String, NlError> {
        let qdiscs = n.qdiscs(Some(i))?;
        let mut qdiscs: Vec<String> = qdiscs
            .iter()
            .filter(|q| !matches!(q.kind, QdiscKind::Other(_)))
            .map(|q| format!("{:#x}@{:#x} {:?}", q.handle, q.parent, q.kind))
            .collect();
        qdiscs.sort();
        let filters = n.filters(i, INGRESS_HANDLE)?;
        let rules: Vec<String> = filters
            .iter()
            .filter(|f| !f.mirred.is_empty())
            .map(|f| format!("prio {} classid {:?} all to {:?}", f.prio, f.classid, f.redirects_all_to()))
            .collect();
        Ok(format!("{qdiscs:?} {rules:?}"))
    };
    note("listing", listing(n, v0));
    note("no filters without ingress", n.filters(v1, INGRESS_HANDLE).map(|f| f.len().to_string()));
    note("filters of no link", n.filters(999_999, INGRESS_HANDLE).map(|f| f.len().to_string()));
    note("alias", ok(n.set_alias(ifb, "cni-rs bandwidth net1")));
    note("alias read", n.link_by_index(ifb).map(|l| format!("{:?}", l.alias)));
    note("alias too long", ok(n.set_alias(ifb, &"x".repeat(256))));
    note(
        "alias removed",
        ok(n.set_alias(ifb, "")).and_then(|_| n.link_by_index(ifb).map(|l| format!("{:?}", l.alias))),
    );
    note("del root", ok(n.del_qdisc(v0, TC_H_ROOT)));
    note("del root again", ok(n.del_qdisc(v0, TC_H_ROOT)));
    note("del ingress", ok(n.del_qdisc(v0, TC_H_INGRESS)));
    note("del ingress again", ok(n.del_qdisc(v0, TC_H_INGRESS)));
    note("del on no link", ok(n.del_qdisc(999_999, TC_H_ROOT)));
    note("listing after", listing(n, v0));
    note("ingress back", ok(n.add_qdisc(&Qdisc::ingress(v0))));
    note("redirect back", ok(n.add_redirect(&redirect)));
    note("target deleted", ok(n.del_link(ifb)));
    let dangling = n.filters(v0, INGRESS_HANDLE).map(|f| {
        format!("{:?}", f.iter().flat_map(|f| f.mirred.iter().map(|m| m.ifindex)).collect::<Vec<_>>())
    });
    note("redirect to nowhere", dangling);
    out
}

#[test]
fn the_fake_shapes_traffic_as_the_kernel_does() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    let a = RealNs::new();
    let real = tc_script(&mut a.rtnl());
    let k = FakeKernel::new();
    let fake = tc_script(&mut k.host());
    assert_eq!(fake, real);
    assert!(fake.contains(&"redirect: ok".to_string()), "{fake:#?}");
}

#[test]
fn a_dying_netns_returns_physical_devices_and_destroys_the_rest() {
    let k = FakeKernel::new();
    let (mut host, mut ctr) = (k.host(), k.netns("c1"));
    k.add_device("c1", "eth0", [2, 0, 0, 0, 0, 1]);
    k.add_device("c1", "eth1", [2, 0, 0, 0, 0, 2]);
    k.add_device("host", "eth1", [2, 0, 0, 0, 0, 3]);
    let fd = host.netns_fd().unwrap();
    ctr.add_link(&NewLink::new("v0", LinkKind::Veth { peer: "v0p".into(), peer_netns_fd: Some(fd) }))
        .unwrap();
    let eth0 = ctr.link_by_name("eth0").unwrap();
    assert_eq!(eth0.kind, None, "a device has no link kind");
    ctr.set_alias(eth0.index, "enp3s0").unwrap();
    ctr.set_up(eth0.index).unwrap();
    let eth1 = ctr.link_by_name("eth1").unwrap().index;
    k.delete_netns("c1");
    // eth0 keeps its name and alias, down; eth1's name is taken: dev<ifindex>.
    assert_eq!(
        names(&mut host),
        ["dev".to_string() + &eth1.to_string(), "eth0".into(), "eth1".into(), "lo".into()]
    );
    let back = host.link_by_name("eth0").unwrap();
    assert_eq!(
        (back.alias.as_deref(), back.is_up(), back.mac),
        (Some("enp3s0"), false, Some([2, 0, 0, 0, 0, 1]))
    );
}

/// Links through a scratch netns, what stays in its netns, and what a
/// scratch netns that dies takes along; each outcome as text.
fn transit_script<N: NetStack>(host: &mut N, ctr: &mut N) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, NlError>| {
        out.push(format!("{what}: {}", r.unwrap_or_else(|e| format!("errno {}", e.errno))));
    };
    let ok = |r: Result<(), NlError>| r.map(|_| "ok".to_string());
    let ctr_fd = ctr.netns_fd().unwrap();
    note("veth", ok(host.add_link(&NewLink::veth("t0", "t0p"))));
    note("veth 2", ok(host.add_link(&NewLink::veth("t1", "t1p"))));
    note("bridge", ok(host.add_link(&NewLink::bridge("br9"))));
    let (t0, t1) = (host.link_by_name("t0").unwrap().index, host.link_by_name("t1").unwrap().index);
    let br9 = host.link_by_name("br9").unwrap().index;
    note("up", ok(host.set_up(t0)));
    note("alias", ok(host.set_alias(t0, "was t0")));
    let arp_notify = "net/ipv4/conf/t0/arp_notify";
    note("sysctl", host.set_sysctl(arp_notify, "1").map(|_| "ok".into()).map_err(NlError::from));
    note("loopback stays", ok(host.set_netns_fd(1, ctr_fd)));
    note("bridge stays", ok(host.set_netns_fd(br9, ctr_fd)));
    {
        let mut s = host.scratch_netns().unwrap();
        let names =
            |n: &mut N| n.links().map(|v| v.into_iter().map(|l| l.name).collect::<Vec<_>>().join(","));
        note("scratch links", names(&mut s));
        let s_fd = s.netns_fd().unwrap();
        note("into scratch", ok(host.set_netns_fd(t0, s_fd)));
        let l = s.link_by_name("t0");
        note("in transit", l.clone().map(|l| format!("same index {}, up {}", l.index == t0, l.is_up())));
        note("sysctl in transit", s.sysctl(arp_notify).map_err(NlError::from));
        let i = l.map(|l| l.index).unwrap_or(0);
        note("rename in transit", ok(s.rename(i, "eth5")));
        note("into ctr", ok(s.set_netns_fd(i, ctr_fd)));
        note("arrived", ctr.link_by_name("eth5").map(|l| format!("alias {:?}, up {}", l.alias, l.is_up())));
        note("left in scratch", ok(host.set_netns_fd(t1, s_fd)));
    }
    // The kernel tears a netns down in the background: wait for it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while host.link_by_name("t1p").is_ok() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    note("veth in a dead scratch netns, peer", host.link_by_name("t1p").map(|l| l.name));
    note("peer of the one that went on", host.link_by_name("t0p").map(|l| l.name));
    out
}

#[test]
fn links_in_transit_behave_as_in_the_kernel() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    let (a, b) = (RealNs::new(), RealNs::new());
    let real = transit_script(&mut a.rtnl(), &mut b.rtnl());
    let k = FakeKernel::new();
    let fake = transit_script(&mut k.host(), &mut k.netns("c1"));
    assert_eq!(fake, real);
    assert!(fake.contains(&"veth in a dead scratch netns, peer: errno 19".to_string()), "{fake:#?}");
    assert!(!k.state().contains("scratch"), "{}", k.state());
}

/// A script of tap calls with edge cases; each outcome, and what the
/// kernel reports of the taps, as text.
fn tap_script<N: NetStack>(n: &mut N) -> Vec<String> {
    use crate::tap::NewTap;
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, NlError>| {
        out.push(format!("{what}: {}", r.unwrap_or_else(|e| format!("errno {}", e.errno))));
    };
    let ok = |r: Result<(), NlError>| r.map(|_| "ok".to_string());
    let tap = |name: &str| NewTap { name: name.into(), ..NewTap::default() };
    let mq = NewTap { multi_queue: true, owner: Some(1000), group: Some(1001), ..tap("tap0") };
    note("tap", ok(n.add_tap(&mq)));
    note("tap again", ok(n.add_tap(&tap("tap0"))));
    note("plain tap", ok(n.add_tap(&tap("tap1"))));
    note("veth", ok(n.add_link(&NewLink::veth("v0", "v1"))));
    note("tap named like a veth", ok(n.add_tap(&tap("v0"))));
    for bad in ["", "tap%d", "sixteen-bytes-xx", "a/b", "a b"] {
        note(&format!("tap {bad:?}"), ok(n.add_tap(&tap(bad))));
    }
    note("owner root", ok(n.add_tap(&NewTap { owner: Some(0), group: Some(0), ..tap("tap2") })));
    note("no such user", ok(n.add_tap(&NewTap { owner: Some(u32::MAX), ..tap("tap3") })));
    note("no such group", ok(n.add_tap(&NewTap { group: Some(u32::MAX), ..tap("tap4") })));
    // A failed tap is not persistent: it goes when its last descriptor
    // closes, which a child another test thread forks meanwhile may hold
    // until it execs.
    for name in ["tap3", "tap4"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while n.link_by_name(name).is_ok() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let show = |n: &mut N, name: &str| {
        n.link_by_name(name).map(|l| format!("{:?} {:?} up={}", l.kind, l.tun, l.is_up()))
    };
    for name in ["tap0", "tap1", "tap2", "tap3", "tap4"] {
        note(&format!("{name} reads"), show(n, name));
    }
    let index = |n: &mut N, name: &str| n.link_by_name(name).map(|l| l.index).unwrap_or(999_999);
    let (tap0, tap1) = (index(n, "tap0"), index(n, "tap1"));
    note("mtu 9000", ok(n.set_mtu(tap0, 9000)));
    note("mtu 65521", ok(n.set_mtu(tap0, 65521)));
    note("mtu 65522", ok(n.set_mtu(tap0, 65522)));
    note("mtu 67", ok(n.set_mtu(tap0, 67)));
    note("mac", ok(n.set_mac(tap0, [2, 0, 0, 0, 0, 0x42])));
    note("mtu 9000", ok(n.set_mtu(tap0, 9000)));
    note("mtu and mac read", n.link_by_index(tap0).map(|l| format!("{} {}", l.mtu, l.mac_string())));
    note("bridge", ok(n.add_link(&NewLink::bridge("br0"))));
    let br0 = index(n, "br0");
    note("enslave", ok(n.set_master(tap1, br0)));
    note("master read", n.link_by_index(tap1).map(|l| format!("{:?}", l.master == Some(br0))));
    note("up", ok(n.set_up(tap0)));
    note("del", ok(n.del_link(tap0)));
    note("del by name", ok(n.del_link_by_name("tap1")));
    note("gone", show(n, "tap0"));
    out
}

#[test]
fn the_fake_makes_taps_as_the_kernel_does() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    if !std::path::Path::new(crate::tap::TUN_DEVICE).exists() {
        eprintln!("skipping: this machine has no {}", crate::tap::TUN_DEVICE);
        return;
    }
    let a = RealNs::new();
    let real = tap_script(&mut a.rtnl());
    let k = FakeKernel::new();
    let fake = tap_script(&mut k.host());
    assert_eq!(fake, real);
    assert!(fake.contains(&"tap: ok".to_string()), "{fake:#?}");
}

/// ptp's routing, each outcome as text: addresses without their subnet
/// routes (`noprefixroute`), a gateway reachable only through a host route,
/// the host end's /32 and /128 routes, all gone with the veth.
fn point_to_point_script<N: NetStack>(host: &mut N, ctr: &mut N) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<(), NlError>| {
        out.push(format!("{what}: {}", r.map_or_else(|e| format!("errno {}", e.errno), |_| "ok".into())));
    };
    let fd = ctr.netns_fd().unwrap();
    note(
        "veth",
        host.add_link(&NewLink::new("p0", LinkKind::Veth { peer: "q0".into(), peer_netns_fd: Some(fd) })),
    );
    let (p0, q0) = (host.link_by_name("p0").unwrap().index, ctr.link_by_name("q0").unwrap().index);
    note("up", host.set_up(p0).and_then(|_| ctr.set_up(q0)));
    let no_subnet_route = AddrOpts { noprefixroute: true, nodad: true, ..AddrOpts::default() };
    for (addr, gw, bits) in [("10.8.0.5", "10.8.0.1", 32), ("fd08::5", "fd08::1", 128)] {
        let prefix = if bits == 32 { 24 } else { 64 };
        note("address without subnet route", ctr.add_addr(q0, ip(addr), prefix, &no_subnet_route));
        let net = crate::ipnet::IpNet { addr: ip(addr), prefix }.network();
        let mut subnet = Route::new(net.addr, net.prefix);
        (subnet.gateway, subnet.oif, subnet.src) = (Some(ip(gw)), Some(q0), Some(ip(addr)));
        note("subnet via a gateway not on the link", ctr.add_route(&subnet));
        let mut to_gw = Route::new(ip(gw), bits);
        (to_gw.oif, to_gw.scope, to_gw.src) = (Some(q0), libc::RT_SCOPE_LINK, Some(ip(addr)));
        note("the gateway on the link", ctr.add_route(&to_gw));
        note("the gateway again", ctr.add_route(&to_gw));
        note("subnet via the gateway", ctr.add_route(&subnet));
        let mut default = Route::new(if bits == 32 { ip("0.0.0.0") } else { ip("::") }, 0);
        (default.gateway, default.oif) = (Some(ip(gw)), Some(q0));
        note("default via the gateway", ctr.add_route(&default));
        note(
            "gateway on the host end",
            host.add_addr(p0, ip(gw), bits, &AddrOpts { nodad: true, ..AddrOpts::default() }),
        );
        let mut to_ctr = Route::new(ip(addr), bits);
        (to_ctr.oif, to_ctr.scope) = (Some(p0), libc::RT_SCOPE_HOST);
        note("route to the container", host.add_route(&to_ctr));
        note("route to the container again", host.add_route(&to_ctr));
        note("replaced", host.replace_route(&to_ctr));
    }
    let through_p0 = |host: &mut N| {
        host.routes(Family::Any, 0).map(|v| {
            v.iter()
                .filter(|r| r.oif == Some(p0) && (r.dst == ip("10.8.0.5") || r.dst == ip("fd08::5")))
                .count()
        })
    };
    note("two host routes", through_p0(host).map(|n| assert_eq!(n, 2)));
    note("container end deleted", ctr.del_link(q0));
    note("host end gone", host.link_by_name("p0").map(drop));
    note("its routes gone", through_p0(host).map(|n| assert_eq!(n, 0)));
    out
}

#[test]
fn the_fake_routes_a_point_to_point_link_as_the_kernel_does() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: comparing with the kernel needs root");
        return;
    }
    let (a, b) = (RealNs::new(), RealNs::new());
    let real = point_to_point_script(&mut a.rtnl(), &mut b.rtnl());
    let k = FakeKernel::new();
    let fake = point_to_point_script(&mut k.host(), &mut k.netns("c1"));
    assert_eq!(fake, real);
}

/// Whether the kernel makes links of `kind` (its module may be missing:
/// this machine's 6.18 has no ipvlan or 8021q; Debian's 6.1 has both).
fn kernel_has(kind: LinkKind) -> bool {
    let ns = RealNs::new();
    let mut n = ns.rtnl();
    n.add_link(&NewLink::veth("k0", "k1")).unwrap();
    let parent = n.link_by_name("k0").unwrap().index;
    let res = n.add_link(&NewLink { parent: Some(parent), ..NewLink::new("probe0", kind.clone()) });
    match res {
        Err(e) if e.is(libc::EOPNOTSUPP) => {
            eprintln!(
                "skipped: this kernel has no {} links ({e}); scripts/vm-test runs this on 6.1",
                kind.name()
            );
            false
        }
        _ => true,
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: comparing with the kernel needs root");
    }
    root
}

/// ipvlans: the master's MAC and mode, what cannot share a master, a
/// loopback master; each outcome and what the links show, as text.
fn ipvlan_script<N: NetStack>(host: &mut N, ctr: &mut N) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, NlError>| {
        out.push(format!("{what}: {}", r.unwrap_or_else(|e| format!("errno {}", e.errno))));
    };
    let ok = |r: Result<(), NlError>| r.map(|_| "ok".to_string());
    let ctr_fd = ctr.netns_fd().unwrap();
    for (a, b) in [("m0", "p0"), ("m1", "p1"), ("m2", "p2")] {
        host.add_link(&NewLink::veth(a, b)).unwrap();
    }
    let m0 = host.link_by_name("m0").unwrap();
    let (m1, m2) = (host.link_by_name("m1").unwrap().index, host.link_by_name("m2").unwrap().index);
    let ipvlan = |name: &str, parent: u32, mode| NewLink::ipvlan(name, parent, mode);
    let show = |l: Link| {
        format!("{:?} {:?} mtu {} mac of m0 {}", l.ipvlan_mode, l.ipvlan_flags, l.mtu, l.mac == m0.mac)
    };

    let into_ctr = NewLink { netns_fd: Some(ctr_fd), ..ipvlan("iv0", m0.index, IpvlanMode::L2) };
    note("ipvlan into ctr", ok(host.add_link(&into_ctr)));
    note(
        "seen in ctr",
        ctr.link_by_name("iv0")
            .map(|l| format!("{} parent m0 {}", show(l.clone()), l.link == Some(m0.index))),
    );
    note(
        "mtu above master, l3",
        ok(host.add_link(&NewLink { mtu: Some(9000), ..ipvlan("iv1", m0.index, IpvlanMode::L3) })),
    );
    note("the first one follows", ctr.link_by_name("iv0").map(show));
    let iv1 = host.link_by_name("iv1").unwrap().index;
    let private = LinkKind::Ipvlan { mode: IpvlanMode::L3s, flags: IpvlanFlags::Private };
    note("on an ipvlan", ok(host.add_link(&NewLink { parent: Some(iv1), ..NewLink::new("iv2", private) })));
    note("lands on its master", host.link_by_name("iv2").map(|l| format!("{}", l.link == Some(m0.index))));
    note("all follow", ctr.link_by_name("iv0").map(show));
    let asked = NewLink { mac: Some([2, 0, 0, 0, 0, 9]), ..ipvlan("iv3", m0.index, IpvlanMode::L3s) };
    note("a MAC asked for", ok(host.add_link(&asked)).and_then(|_| host.link_by_name("iv3").map(show)));
    note("set a MAC", ok(host.set_mac(iv1, [2, 0, 0, 0, 0, 8])));
    note("macvlan beside", ok(host.add_link(&NewLink::macvlan("mv0", m0.index, MacvlanMode::Bridge))));
    note("on loopback", ok(host.add_link(&ipvlan("iv4", 1, IpvlanMode::L2))));
    host.add_link(&NewLink::bridge("br0")).unwrap();
    let br0 = host.link_by_name("br0").unwrap().index;
    host.set_master(m1, br0).unwrap();
    note("on a bridge port", ok(host.add_link(&ipvlan("iv5", m1, IpvlanMode::L2))));
    host.add_link(&NewLink::macvlan("mv1", m2, MacvlanMode::Bridge)).unwrap();
    note("beside a macvlan", ok(host.add_link(&ipvlan("iv6", m2, IpvlanMode::L2))));
    host.del_link_by_name("mv1").unwrap();
    note("once the macvlan is gone", ok(host.add_link(&ipvlan("iv6", m2, IpvlanMode::L2))));
    host.del_link_by_name("iv6").unwrap();
    note(
        "a macvlan once the ipvlan is gone",
        ok(host.add_link(&NewLink::macvlan("mv1", m2, MacvlanMode::Bridge))),
    );
    note("master deleted", ok(host.del_link(m0.index)));
    note("children gone", ok(ctr.link_by_name("iv0").map(drop)));
    out
}

#[test]
fn the_fake_makes_ipvlans_as_the_kernel_does() {
    let k = FakeKernel::new();
    let fake = ipvlan_script(&mut k.host(), &mut k.netns("c1"));
    for line in [
        "seen in ctr: Some(L2) Some(Bridge) mtu 1500 mac of m0 true parent m0 true",
        "the first one follows: Some(L3) Some(Bridge) mtu 1500 mac of m0 true",
        "all follow: Some(L3s) Some(Private) mtu 1500 mac of m0 true",
        "set a MAC: errno 95",
        "macvlan beside: errno 16",
        "on loopback: errno 22",
        "on a bridge port: errno 16",
    ] {
        assert!(fake.iter().any(|l| l == line), "{line}: {fake:#?}");
    }
    let kind = LinkKind::Ipvlan { mode: IpvlanMode::L2, flags: IpvlanFlags::Bridge };
    if is_root() && kernel_has(kind) {
        let (a, b) = (RealNs::new(), RealNs::new());
        assert_eq!(fake, ipvlan_script(&mut a.rtnl(), &mut b.rtnl()));
    }
}

/// VLAN devices: id, tag protocol, MAC and MTU, one id per parent, the id
/// range, a loopback parent; each outcome as text.
fn vlan_script<N: NetStack>(host: &mut N, ctr: &mut N) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, r: Result<String, NlError>| {
        out.push(format!("{what}: {}", r.unwrap_or_else(|e| format!("errno {}", e.errno))));
    };
    let ok = |r: Result<(), NlError>| r.map(|_| "ok".to_string());
    let ctr_fd = ctr.netns_fd().unwrap();
    host.add_link(&NewLink { mtu: Some(1400), ..NewLink::veth("m0", "p0") }).unwrap();
    let m0 = host.link_by_name("m0").unwrap();
    let vlan = |name: &str, id| NewLink::vlan(name, m0.index, id);
    let show = |l: Link| {
        format!(
            "{:?} {:?} mtu {} mac of m0 {} parent m0 {}",
            l.vlan_id,
            l.vlan_protocol,
            l.mtu,
            l.mac == m0.mac,
            l.link == Some(m0.index)
        )
    };
    note("vlan into ctr", ok(host.add_link(&NewLink { netns_fd: Some(ctr_fd), ..vlan("v100", 100) })));
    note("seen in ctr", ctr.link_by_name("v100").map(show));
    note("the same id again", ok(host.add_link(&vlan("w100", 100))));
    let qinq = LinkKind::Vlan { id: 100, protocol: VlanProtocol::Dot1Ad };
    note(
        "the same id in 802.1ad",
        ok(host.add_link(&NewLink { parent: Some(m0.index), ..NewLink::new("s100", qinq) })),
    );
    note("read back", host.link_by_name("s100").map(show));
    note("id 0", ok(host.add_link(&vlan("v0", 0))));
    note("id 4094", ok(host.add_link(&vlan("v4094", 4094))));
    note("id 4095", ok(host.add_link(&vlan("v4095", 4095))));
    note("mtu above parent", ok(host.add_link(&NewLink { mtu: Some(1401), ..vlan("v7", 7) })));
    note(
        "mtu below",
        ok(host.add_link(&NewLink { mtu: Some(1300), ..vlan("v8", 8) }))
            .and_then(|_| host.link_by_name("v8").map(show)),
    );
    let mac = [2, 0, 0, 0, 0, 7];
    note(
        "own MAC",
        ok(host.add_link(&NewLink { mac: Some(mac), ..vlan("v9", 9) }))
            .and_then(|_| host.link_by_name("v9").map(|l| format!("{}", l.mac == Some(mac)))),
    );
    note("on loopback", ok(host.add_link(&NewLink::vlan("lo.5", 1, 5))));
    note("parent deleted", ok(host.del_link(m0.index)));
    note("children gone", ok(ctr.link_by_name("v100").map(drop)));
    out
}

#[test]
fn the_fake_makes_vlans_as_the_kernel_does() {
    let k = FakeKernel::new();
    let fake = vlan_script(&mut k.host(), &mut k.netns("c1"));
    for line in [
        "seen in ctr: Some(100) Some(Dot1Q) mtu 1400 mac of m0 true parent m0 true",
        "the same id again: errno 17",
        "the same id in 802.1ad: ok",
        "id 4095: errno 34",
        "mtu above parent: errno 22",
        "on loopback: errno 95",
    ] {
        assert!(fake.iter().any(|l| l == line), "{line}: {fake:#?}");
    }
    let kind = LinkKind::Vlan { id: 5, protocol: VlanProtocol::Dot1Q };
    if is_root() && kernel_has(kind) {
        let (a, b) = (RealNs::new(), RealNs::new());
        assert_eq!(fake, vlan_script(&mut a.rtnl(), &mut b.rtnl()));
    }
}
