//! Tests against the real kernel. Each one works in namespaces of its own
//! (`ip netns add cni-rtnl-test-<pid>-<n>`), never on the host's interfaces,
//! and cross-checks our readback with `ip -j` inside the same namespace.
//! Without root they print a skip message and pass.

use std::fs::File;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use serde_json::Value;

use super::*;

static SEQ: AtomicU32 = AtomicU32::new(0);
/// `ip netns add/del` race on the shared /run/netns mount when run in parallel.
static NS_LOCK: Mutex<()> = Mutex::new(());

pub(super) struct TestNs {
    pub(super) name: String,
    ns: Netns,
}

impl TestNs {
    /// A fresh named netns, or None (after a skip message) when not root.
    pub(super) fn new() -> Option<TestNs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: kernel tests need root");
            return None;
        }
        let name = format!("cni-rtnl-test-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed));
        let _g = NS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().unwrap().success();
        assert!(ok, "ip netns add {name}");
        let ns = Netns::open(format!("/run/netns/{name}")).unwrap();
        Some(TestNs { name, ns })
    }

    pub(super) fn rtnl(&self) -> Rtnl {
        Rtnl::in_netns(&self.ns).unwrap()
    }

    /// An fd of this netns for IFLA_NET_NS_FD (keep the File alive while used).
    fn file(&self) -> File {
        File::open(self.ns.path()).unwrap()
    }

    /// `ip -n NAME -j ARGS…` parsed as JSON.
    fn ip(&self, args: &str) -> Value {
        self.iproute2("ip", args)
    }

    /// `bridge -j ARGS` inside the netns.
    fn bridge(&self, args: &str) -> Value {
        self.iproute2("bridge", args)
    }

    fn iproute2(&self, tool: &str, args: &str) -> Value {
        let mut cmd = Command::new(tool);
        cmd.args(["-n", &self.name, "-j"]).args(args.split_whitespace());
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{tool} {args}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    /// The first object of `ip -j link show dev NAME` (with details).
    fn ip_link(&self, dev: &str) -> Value {
        self.ip(&format!("-d link show dev {dev}"))[0].clone()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _g = NS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

fn has_flag(j: &Value, flag: &str) -> bool {
    j["flags"].as_array().unwrap().iter().any(|f| f == flag)
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A veth pair `a`/`b` inside `t`, both up; returns (a, b) indexes.
fn veth_up(r: &mut Rtnl, a: &str, b: &str) -> (u32, u32) {
    r.add_veth(a, b, None, None, None).unwrap();
    let (ia, ib) = (r.link_by_name(a).unwrap().index, r.link_by_name(b).unwrap().index);
    r.set_up(ia).unwrap();
    r.set_up(ib).unwrap();
    (ia, ib)
}

#[test]
fn mac_parse_and_format() {
    let m = parse_mac("02:Ab:cd:00:0f:ff").unwrap();
    assert_eq!(m, [2, 0xab, 0xcd, 0, 0x0f, 0xff]);
    assert_eq!(format_mac(&m), "02:ab:cd:00:0f:ff");
    for bad in [
        "",
        "02:ab:cd:00:0f",
        "02:ab:cd:00:0f:ff:01",
        "2:ab:cd:00:0f:ff",
        "+2:ab:cd:00:0f:ff",
        "zz:ab:cd:00:0f:ff",
    ] {
        assert_eq!(parse_mac(bad), None, "{bad}");
    }
}

#[test]
fn veth_pair_across_two_netns() {
    let (Some(a), Some(b)) = (TestNs::new(), TestNs::new()) else { return };
    let (mut ra, mut rb) = (a.rtnl(), b.rtnl());
    let mac = parse_mac("02:11:22:33:44:55").unwrap();
    let bfile = b.file();
    ra.add_veth("host0", "ctr0", Some(bfile.as_raw_fd()), Some(1400), Some(mac)).unwrap();
    let host = ra.link_by_name("host0").unwrap();
    let ctr = rb.link_by_name("ctr0").unwrap();
    assert_eq!((host.kind.as_deref(), host.mtu, host.mac), (Some("veth"), 1400, Some(mac)));
    assert_eq!((ctr.kind.as_deref(), ctr.mtu), (Some("veth"), 1400));
    assert_eq!(host.link, Some(ctr.index), "IFLA_LINK names the peer");
    assert!(host.link_netnsid.is_some() && ctr.link_netnsid.is_some(), "peers live in other netns");
    assert_eq!(ra.link_by_name("ctr0").unwrap_err().errno, libc::ENODEV);
    assert_eq!(ra.link_by_index(host.index).unwrap(), host);
    let j = b.ip_link("ctr0");
    assert_eq!((j["mtu"].as_u64(), j["linkinfo"]["info_kind"].as_str()), (Some(1400), Some("veth")));
    assert_eq!(a.ip_link("host0")["address"], format_mac(&mac));
    let e = ra.add_veth("host0", "other", None, None, None).unwrap_err();
    assert_eq!(e.errno, libc::EEXIST);
    // Deleting one end removes the peer in the other netns too.
    ra.del_link(host.index).unwrap();
    assert!(rb.link_by_name("ctr0").unwrap_err().not_found());
}

#[test]
fn link_settings_up_mtu_mac_promisc_allmulti_txqlen() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    r.add_veth("s0", "s1", None, None, None).unwrap();
    let i = r.link_by_name("s0").unwrap().index;
    let mac = parse_mac("02:aa:bb:cc:dd:01").unwrap();
    r.set_mtu(i, 1280).unwrap();
    r.set_mac(i, mac).unwrap();
    r.set_txqlen(i, 77).unwrap();
    r.set_promisc(i, true).unwrap();
    r.set_allmulti(i, true).unwrap();
    r.set_up(i).unwrap();
    let l = r.link_by_index(i).unwrap();
    assert_eq!((l.mtu, l.mac, l.txqlen), (1280, Some(mac), 77));
    assert!(l.is_up() && l.is_promisc() && l.is_allmulti());
    let j = t.ip_link("s0");
    assert_eq!((j["mtu"].as_u64(), j["txqlen"].as_u64()), (Some(1280), Some(77)));
    assert_eq!(j["address"], "02:aa:bb:cc:dd:01");
    assert!(has_flag(&j, "UP") && has_flag(&j, "PROMISC") && has_flag(&j, "ALLMULTI"));
    // The peer is down, so the carrier is too; bring it up and see IF_OPER_UP.
    let peer = r.link_by_name("s1").unwrap().index;
    r.set_up(peer).unwrap();
    let mut oper = 0;
    for _ in 0..100 {
        oper = r.link_by_index(i).unwrap().oper_state;
        if oper == IF_OPER_UP {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(oper, IF_OPER_UP);
    r.set_promisc(i, false).unwrap();
    r.set_allmulti(i, false).unwrap();
    r.set_down(i).unwrap();
    let l = r.link_by_index(i).unwrap();
    assert!(!l.is_up() && !l.is_promisc() && !l.is_allmulti());
    let j = t.ip_link("s0");
    assert!(!has_flag(&j, "UP") && !has_flag(&j, "PROMISC"));
    assert_eq!(r.set_mtu(999_999, 1500).unwrap_err().errno, libc::ENODEV);
}

#[test]
fn rename_move_list_delete() {
    let (Some(a), Some(b)) = (TestNs::new(), TestNs::new()) else { return };
    let (mut ra, mut rb) = (a.rtnl(), b.rtnl());
    ra.add_veth("m0", "m1", None, None, None).unwrap();
    let i = ra.link_by_name("m0").unwrap().index;
    ra.rename(i, "renamed0").unwrap();
    assert_eq!(ra.link_by_index(i).unwrap().name, "renamed0");
    assert_eq!(ra.link_by_name("m0").unwrap_err().errno, libc::ENODEV);
    let names: Vec<String> = ra.links().unwrap().into_iter().map(|l| l.name).collect();
    assert!(["lo", "renamed0", "m1"].iter().all(|n| names.iter().any(|x| x == n)), "{names:?}");
    let ip_names: Vec<String> = a
        .ip("link show")
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["ifname"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ip_names.len(), names.len());

    let bfile = b.file();
    ra.set_netns_fd(i, bfile.as_raw_fd()).unwrap();
    assert_eq!(ra.link_by_name("renamed0").unwrap_err().errno, libc::ENODEV);
    let moved = rb.link_by_name("renamed0").unwrap();
    assert_eq!(moved.kind.as_deref(), Some("veth"));
    assert_eq!(b.ip_link("renamed0")["ifname"], "renamed0");
    rb.del_link_by_name("renamed0").unwrap();
    assert_eq!(rb.link_by_name("renamed0").unwrap_err().errno, libc::ENODEV);
    assert_eq!(ra.link_by_name("m1").unwrap_err().errno, libc::ENODEV, "peer went with it");
    assert_eq!(rb.del_link_by_name("renamed0").unwrap_err().errno, libc::ENODEV);
    assert_eq!(rb.del_link(999_999).unwrap_err().errno, libc::ENODEV);
}

#[test]
fn bridge_enslave_hairpin_isolated() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let mac = parse_mac("02:00:00:00:b0:01").unwrap();
    r.add_bridge("br0", &BridgeOpts { mtu: Some(1450), mac: Some(mac), vlan_filtering: None }).unwrap();
    let br = r.link_by_name("br0").unwrap();
    assert_eq!((br.kind.as_deref(), br.mac), (Some("bridge"), Some(mac)));
    assert_eq!(br.vlan_filtering, Some(false));
    assert_eq!(t.ip_link("br0")["linkinfo"]["info_kind"], "bridge");

    r.add_veth("p0", "p1", None, None, None).unwrap();
    let p = r.link_by_name("p0").unwrap().index;
    assert_eq!(r.link_by_index(p).unwrap().bridge_port, None);
    // Not a port yet: there is no bridge to take the request.
    assert_eq!(r.set_bridge_port(p, &BridgePortOpts::default()).unwrap_err().errno, libc::EOPNOTSUPP);
    r.set_master(p, br.index).unwrap();
    let port = r.link_by_index(p).unwrap();
    assert_eq!(port.master, Some(br.index));
    assert_eq!(port.bridge_port, Some(BridgePort { hairpin: false, isolated: false, learning: true }));

    let on = BridgePortOpts { hairpin: Some(true), isolated: Some(true), learning: Some(false) };
    r.set_bridge_port(p, &on).unwrap();
    let bp = r.link_by_index(p).unwrap().bridge_port.unwrap();
    assert_eq!(bp, BridgePort { hairpin: true, isolated: true, learning: false });
    let sd = &t.ip_link("p0")["linkinfo"]["info_slave_data"];
    assert_eq!((sd["hairpin"].as_bool(), sd["isolated"].as_bool()), (Some(true), Some(true)));
    assert_eq!(sd["learning"].as_bool(), Some(false));

    // Only the given setting changes.
    r.set_bridge_port(p, &BridgePortOpts { hairpin: Some(false), ..BridgePortOpts::default() }).unwrap();
    let bp = r.link_by_index(p).unwrap().bridge_port.unwrap();
    assert_eq!(bp, BridgePort { hairpin: false, isolated: true, learning: false });
    assert_eq!(t.ip_link("p0")["linkinfo"]["info_slave_data"]["hairpin"].as_bool(), Some(false));

    r.set_nomaster(p).unwrap();
    let port = r.link_by_index(p).unwrap();
    assert_eq!((port.master, port.bridge_port), (None, None));
    assert!(t.ip_link("p0").get("master").is_none());

    let vf = BridgeOpts { vlan_filtering: Some(true), ..BridgeOpts::default() };
    match r.add_bridge("br1", &vf) {
        Ok(()) => assert_eq!(r.link_by_name("br1").unwrap().vlan_filtering, Some(true)),
        Err(e) if e.errno == libc::EOPNOTSUPP => {
            eprintln!("skipping vlan_filtering readback: kernel says {e}")
        }
        Err(e) => panic!("{e}"),
    }
}

#[test]
fn bridge_port_vlans() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    r.add_bridge("br0", &BridgeOpts::default()).unwrap();
    let br = r.link_by_name("br0").unwrap().index;
    r.add_veth("p0", "p1", None, None, None).unwrap();
    let p = r.link_by_name("p0").unwrap().index;
    r.set_master(p, br).unwrap();
    let v = BridgeVlan { vid: 100, pvid: true, untagged: true };
    match r.bridge_vlan_add(p, v, false) {
        Err(e) if e.errno == libc::EOPNOTSUPP => {
            eprintln!("skipping bridge vlan test: kernel has no bridge VLAN filtering ({e})");
            // Listing still works, it is just empty.
            assert!(r.bridge_vlans(p).unwrap().is_empty());
            return;
        }
        res => res.unwrap(),
    }
    assert!(r.bridge_vlans(p).unwrap().contains(&v));
    // Cross-check with iproute2: vid 100, PVID and egress untagged.
    let j = t.bridge("vlan show dev p0");
    let vlans = j[0]["vlans"].as_array().cloned().unwrap_or_default();
    let v100 = vlans.iter().find(|x| x["vlan"] == 100).unwrap_or_else(|| panic!("no vid 100: {j}"));
    let flags = v100["flags"].to_string();
    assert!(flags.contains("PVID") && flags.contains("Egress Untagged"), "{j}");
    r.bridge_vlan_del(p, 100, false).unwrap();
    assert!(!r.bridge_vlans(p).unwrap().iter().any(|x| x.vid == 100));
}

#[test]
fn vlan_device() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    r.add_veth("p0", "p1", None, None, None).unwrap();
    let p = r.link_by_name("p0").unwrap().index;
    match r.add_vlan("p0.5", p, 5, Some(1400), None) {
        Err(e) if e.errno == libc::EOPNOTSUPP => {
            eprintln!("skipping vlan test: kernel has no 8021q ({e})");
            return;
        }
        res => res.unwrap(),
    }
    let l = r.link_by_name("p0.5").unwrap();
    assert_eq!((l.kind.as_deref(), l.vlan_id, l.link, l.mtu), (Some("vlan"), Some(5), Some(p), 1400));
    assert_eq!(l.vlan_protocol, Some(crate::netlink::rtnl::VlanProtocol::Dot1Q));
    assert_eq!(t.ip_link("p0.5")["linkinfo"]["info_data"]["id"].as_u64(), Some(5));
}

#[test]
fn vrf_device_its_table_and_ports() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    match r.add_link(&NewLink::new("vrf0", LinkKind::Vrf { table: 1001 })) {
        Err(e) if e.errno == libc::EOPNOTSUPP => {
            // Straight to stderr: libtest would hide an eprintln! of a passing test.
            let msg = format!(
                "SKIPPED vrf test: this kernel has no vrf module ({e}); scripts/vm-test runs it on 6.1\n"
            );
            let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
            return;
        }
        res => res.unwrap(),
    }
    let v = r.link_by_name("vrf0").unwrap();
    assert_eq!((v.kind.as_deref(), v.vrf_table), (Some("vrf"), Some(1001)));
    assert_eq!(t.ip_link("vrf0")["linkinfo"]["info_data"]["table"].as_u64(), Some(1001));
    r.set_up(v.index).unwrap();
    let (p, _) = veth_up(&mut r, "p0", "p1");
    r.add_addr(p, ip("10.8.0.2"), 24, &AddrOpts::default()).unwrap();
    r.set_master(p, v.index).unwrap();
    assert_eq!(r.link_by_index(p).unwrap().master, Some(v.index));
    assert_eq!(t.ip_link("p0")["master"], "vrf0");
    // The port's routes are looked up in the VRF's table: its subnet is there, not in main.
    let in_vrf = r.routes(Family::V4, 1001).unwrap();
    assert!(in_vrf.iter().any(|x| x.dst == ip("10.8.0.0") && x.oif == Some(p)), "{in_vrf:?}");
    assert!(!r.routes(Family::V4, libc::RT_TABLE_MAIN as u32).unwrap().iter().any(|x| x.oif == Some(p)));
    r.set_nomaster(p).unwrap();
    assert_eq!(r.link_by_index(p).unwrap().master, None);
    assert!(r.routes(Family::V4, 1001).unwrap().iter().all(|x| x.oif != Some(p)));
    r.del_link(v.index).unwrap();
}

#[test]
fn macvlan_each_mode_into_another_netns() {
    let (Some(host), Some(ctr)) = (TestNs::new(), TestNs::new()) else { return };
    let (mut rh, mut rc) = (host.rtnl(), ctr.rtnl());
    rh.add_veth("uplink", "uplink-peer", None, Some(1500), None).unwrap();
    let parent = rh.link_by_name("uplink").unwrap();
    let cfile = ctr.file();
    let modes = [
        (MacvlanMode::Bridge, "bridge"),
        (MacvlanMode::Private, "private"),
        (MacvlanMode::Vepa, "vepa"),
        (MacvlanMode::Passthru, "passthru"),
        (MacvlanMode::Source, "source"),
    ];
    for (i, (mode, spelling)) in modes.into_iter().enumerate() {
        assert_eq!(MacvlanMode::parse(spelling), Some(mode));
        // passthru takes over the parent's address; the others take ours.
        let mac = (mode != MacvlanMode::Passthru).then_some([0x02, 0, 0, 0, 0xaa, i as u8]);
        let o = MacvlanOpts {
            mode,
            mtu: Some(1400),
            mac,
            bc_queue_len: Some(100 + i as u32),
            netns_fd: Some(cfile.as_raw_fd()),
        };
        rh.add_macvlan("mv0", parent.index, &o).unwrap();
        assert_eq!(rh.link_by_name("mv0").unwrap_err().errno, libc::ENODEV, "created in the other netns");
        let l = rc.link_by_name("mv0").unwrap();
        assert_eq!((l.kind.as_deref(), l.macvlan_mode, l.mtu), (Some("macvlan"), Some(mode), 1400));
        assert_eq!(l.link, Some(parent.index));
        assert!(l.link_netnsid.is_some());
        assert_eq!(l.mac, Some(mac.unwrap_or(parent.mac.unwrap())));
        let info = &ctr.ip_link("mv0")["linkinfo"];
        assert_eq!(info["info_data"]["mode"], spelling);
        assert_eq!(info["info_data"]["bcqueuelen"].as_u64(), Some(100 + i as u64));
        rc.del_link(l.index).unwrap();
    }
    let e = rh.add_macvlan("mv0", 999_999, &MacvlanOpts::default()).unwrap_err();
    assert!(e.is(libc::ENODEV) || e.is(libc::EINVAL), "{e}");
}

#[test]
fn addresses_both_families() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let (i, _) = veth_up(&mut r, "a0", "a1");
    let v4 = ip("10.1.2.3");
    let v6 = ip("fd00:1::3");
    let bcast = "10.1.2.255".parse().unwrap();
    r.add_addr(i, v4, 24, &AddrOpts { broadcast: Some(bcast), ..AddrOpts::default() }).unwrap();
    r.add_addr(i, v6, 64, &AddrOpts { nodad: true, ..AddrOpts::default() }).unwrap();
    r.add_addr(i, ip("10.7.0.1"), 24, &AddrOpts { noprefixroute: true, ..AddrOpts::default() }).unwrap();
    assert_eq!(r.add_addr(i, v4, 24, &AddrOpts::default()).unwrap_err().errno, libc::EEXIST);

    let a4 = r.addrs(Some(i), Family::V4).unwrap();
    assert_eq!(a4.len(), 2, "{a4:?}");
    let a = a4.iter().find(|a| a.addr == v4).unwrap();
    assert_eq!((a.prefix, a.broadcast, a.index, a.label.as_deref()), (24, Some(bcast), i, Some("a0")));
    let np = a4.iter().find(|a| a.addr == ip("10.7.0.1")).unwrap();
    assert_ne!(np.flags & libc::IFA_F_NOPREFIXROUTE, 0);
    let a6 = r.addrs(Some(i), Family::V6).unwrap();
    let a = a6.iter().find(|a| a.addr == v6).unwrap();
    assert_eq!(a.prefix, 64);
    assert_ne!(a.flags & libc::IFA_F_NODAD, 0);
    assert_eq!(a.flags & libc::IFA_F_TENTATIVE, 0, "nodad addresses are usable at once");
    // A new netns has lo down and bare; up, it gets 127.0.0.1 (the loopback plugin's job).
    assert!(!r.addrs(None, Family::Any).unwrap().iter().any(|a| a.addr == ip("127.0.0.1")));
    let lo = r.link_by_name("lo").unwrap().index;
    r.set_up(lo).unwrap();
    assert!(r
        .addrs(Some(lo), Family::V4)
        .unwrap()
        .iter()
        .any(|a| a.addr == ip("127.0.0.1") && a.prefix == 8));

    // noprefixroute: no subnet route for 10.7.0.0/24, but one for 10.1.2.0/24.
    let routes = r.routes(Family::V4, libc::RT_TABLE_MAIN as u32).unwrap();
    assert!(routes.iter().any(|rt| rt.dst == ip("10.1.2.0") && rt.prefix == 24));
    assert!(!routes.iter().any(|rt| rt.dst == ip("10.7.0.0")));

    let j = t.ip("addr show dev a0");
    let info = j[0]["addr_info"].as_array().unwrap();
    let find = |l: &str| info.iter().find(|x| x["local"] == l).unwrap().clone();
    assert_eq!(find("10.1.2.3")["broadcast"], "10.1.2.255");
    assert_eq!(find("fd00:1::3")["nodad"].as_bool(), Some(true));
    assert_eq!(find("10.7.0.1")["noprefixroute"].as_bool(), Some(true));

    r.del_addr(i, v4, 24).unwrap();
    r.del_addr(i, v6, 64).unwrap();
    assert!(!r.addrs(Some(i), Family::Any).unwrap().iter().any(|a| a.addr == v4 || a.addr == v6));
    assert_eq!(r.del_addr(i, v4, 24).unwrap_err().errno, libc::EADDRNOTAVAIL);
    let j = t.ip("addr show dev a0").to_string();
    assert!(!j.contains("10.1.2.3") && !j.contains("fd00:1::3"));
}

#[test]
fn routes_gateway_table_metrics_priority_scope() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let (i, _) = veth_up(&mut r, "r0", "r1");
    r.add_addr(i, ip("10.9.0.1"), 24, &AddrOpts::default()).unwrap();
    r.add_addr(i, ip("fd00:9::1"), 64, &AddrOpts { nodad: true, ..AddrOpts::default() }).unwrap();
    let main = libc::RT_TABLE_MAIN as u32;

    let mut via = Route::new(ip("10.20.0.0"), 16);
    (via.gateway, via.oif, via.priority) = (Some(ip("10.9.0.254")), Some(i), Some(50));
    (via.mtu, via.advmss, via.src) = (Some(1300), Some(1260), Some(ip("10.9.0.1")));
    r.add_route(&via).unwrap();
    assert_eq!(r.add_route(&via).unwrap_err().errno, libc::EEXIST);
    let mut dev = Route::new(ip("10.30.0.0"), 24);
    (dev.oif, dev.scope) = (Some(i), libc::RT_SCOPE_LINK);
    r.add_route(&dev).unwrap();
    let mut dflt = Route::new(ip("0.0.0.0"), 0);
    (dflt.gateway, dflt.table) = (Some(ip("10.9.0.254")), 100);
    r.add_route(&dflt).unwrap();
    let mut v6 = Route::new(ip("fd00:20::"), 48);
    (v6.gateway, v6.oif, v6.priority, v6.mtu) = (Some(ip("fd00:9::fe")), Some(i), Some(70), Some(1400));
    r.add_route(&v6).unwrap();
    let mut v6d = Route::new(ip("::"), 0);
    (v6d.gateway, v6d.oif, v6d.table) = (Some(ip("fd00:9::fe")), Some(i), 100);
    r.add_route(&v6d).unwrap();

    let mut onlink = Route::new(ip("10.40.0.0"), 16);
    (onlink.gateway, onlink.oif, onlink.onlink) = (Some(ip("169.254.1.1")), Some(i), true);
    assert_eq!(r.add_route(&Route { onlink: false, ..onlink.clone() }).unwrap_err().errno, libc::ENETUNREACH);
    r.add_route(&onlink).unwrap();

    let m4 = r.routes(Family::V4, main).unwrap();
    assert_eq!(m4.iter().find(|x| x.dst == onlink.dst), Some(&onlink));
    assert_eq!(t.ip("route show 10.40.0.0/16")[0]["flags"][0], "onlink");
    let got = m4.iter().find(|x| x.dst == via.dst).unwrap();
    assert_eq!(got, &via);
    let got = m4.iter().find(|x| x.dst == dev.dst).unwrap();
    assert_eq!((got.scope, got.oif, got.gateway), (libc::RT_SCOPE_LINK, Some(i), None));
    assert!(!m4.iter().any(|x| x.is_default()), "the default route went to table 100");
    let t100 = r.routes(Family::Any, 100).unwrap();
    assert_eq!(t100.len(), 2, "{t100:?}");
    let d4 = t100.iter().find(|x| x.dst.is_ipv4()).unwrap();
    assert!(d4.is_default() && d4.gateway == dflt.gateway && d4.table == 100);
    let d6 = t100.iter().find(|x| x.dst.is_ipv6()).unwrap();
    assert!(d6.is_default() && d6.gateway == v6d.gateway);
    let got6 = r.routes(Family::V6, main).unwrap().into_iter().find(|x| x.dst == v6.dst).unwrap();
    assert_eq!((got6.prefix, got6.gateway, got6.priority, got6.mtu), (48, v6.gateway, Some(70), Some(1400)));
    assert!(r.routes(Family::Any, 0).unwrap().iter().any(|x| x.table == libc::RT_TABLE_LOCAL as u32));

    let j = t.ip("route show 10.20.0.0/16");
    assert_eq!((j[0]["gateway"].as_str(), j[0]["metric"].as_u64()), (Some("10.9.0.254"), Some(50)));
    assert_eq!(j[0]["metrics"][0]["mtu"].as_u64(), Some(1300));
    assert_eq!(j[0]["metrics"][0]["advmss"].as_u64(), Some(1260));
    assert_eq!(t.ip("route show 10.30.0.0/24")[0]["scope"], "link");
    let j = t.ip("route show table 100");
    assert_eq!((j[0]["dst"].as_str(), j[0]["gateway"].as_str()), (Some("default"), Some("10.9.0.254")));
    let j = t.ip("-6 route show fd00:20::/48");
    assert_eq!((j[0]["gateway"].as_str(), j[0]["metric"].as_u64()), (Some("fd00:9::fe"), Some(70)));

    // Replace keys on destination + metric: the gateway changes in place.
    let mut via2 = via.clone();
    via2.gateway = Some(ip("10.9.0.253"));
    r.replace_route(&via2).unwrap();
    let now: Vec<_> = r.routes(Family::V4, main).unwrap().into_iter().filter(|x| x.dst == via.dst).collect();
    assert_eq!(now, vec![via2.clone()]);
    assert_eq!(t.ip("route show 10.20.0.0/16")[0]["gateway"], "10.9.0.253");

    for rt in [&via2, &dev, &dflt, &v6, &v6d, &onlink] {
        r.del_route(rt).unwrap();
    }
    assert_eq!(r.del_route(&via2).unwrap_err().errno, libc::ESRCH);
    assert!(r.routes(Family::Any, 100).unwrap().is_empty());
    assert_eq!(t.ip("route show 10.20.0.0/16"), Value::Array(vec![]));
}

#[test]
fn neighbours_add_replace_delete() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let (i, _) = veth_up(&mut r, "n0", "n1");
    let (m1, m2) = (parse_mac("02:00:00:00:00:07").unwrap(), parse_mac("02:00:00:00:00:08").unwrap());
    for addr in [ip("10.9.0.7"), ip("fd00:9::7")] {
        let fam = Family::of(&addr);
        r.set_neigh(i, addr, m1).unwrap();
        let n = r.neighbours(Some(i), fam).unwrap().into_iter().find(|n| n.ip == addr).unwrap();
        assert_eq!((n.mac, n.state, n.index), (Some(m1), libc::NUD_PERMANENT, i));
        r.set_neigh(i, addr, m2).unwrap(); // replace in place
        let all = r.neighbours(Some(i), fam).unwrap();
        assert_eq!(all.iter().filter(|n| n.ip == addr).count(), 1);
        assert_eq!(all.iter().find(|n| n.ip == addr).unwrap().mac, Some(m2));
        let j = t.ip(&format!("neigh show {addr} dev n0"));
        assert_eq!(j[0]["lladdr"], "02:00:00:00:00:08");
        assert_eq!(j[0]["state"][0], "PERMANENT");
    }
    assert_eq!(
        r.neighbours(Some(i), Family::Any).unwrap().iter().filter(|n| n.state == libc::NUD_PERMANENT).count(),
        2
    );
    r.del_neigh(i, ip("10.9.0.7")).unwrap();
    r.del_neigh(i, ip("fd00:9::7")).unwrap();
    assert!(r.neighbours(Some(i), Family::Any).unwrap().iter().all(|n| n.state != libc::NUD_PERMANENT));
    assert_eq!(r.del_neigh(i, ip("10.9.0.7")).unwrap_err().errno, libc::ENOENT);
    assert_eq!(t.ip("neigh show dev n0 nud permanent"), Value::Array(vec![]));
}

#[test]
fn rules_add_list_delete_as_ip_rule_sees_them() {
    let Some(t) = TestNs::new() else { return };
    let mut r = t.rtnl();
    let mut v4 = Rule::new(Family::V4, 100);
    (v4.src, v4.priority, v4.iif) = (Some("10.9.0.2/32".parse().unwrap()), Some(500), Some("lo".into()));
    let mut v6 = Rule::new(Family::V6, 5000);
    (v6.dst, v6.fwmark, v6.fwmask) = (Some("fd00:9::/64".parse().unwrap()), Some(7), Some(0xff));
    v6.priority = Some(600);
    for rule in [&v4, &v6] {
        r.add_rule(rule).unwrap();
        assert_eq!(r.add_rule(rule).unwrap_err().errno, libc::EEXIST);
    }
    let j = t.ip("rule show pref 500");
    assert_eq!(
        (j[0]["src"].as_str(), j[0]["table"].as_str(), j[0]["iif"].as_str()),
        (Some("10.9.0.2"), Some("100"), Some("lo"))
    );
    let j = t.ip("-6 rule show pref 600");
    assert_eq!(
        (j[0]["dst"].as_str(), j[0]["dstlen"].as_u64(), j[0]["table"].as_str()),
        (Some("fd00:9::"), Some(64), Some("5000"))
    );
    let ours = |r: &mut Rtnl| {
        r.rules(Family::Any)
            .unwrap()
            .into_iter()
            .filter(|x| x.table == 100 || x.table == 5000)
            .collect::<Vec<_>>()
    };
    assert_eq!(ours(&mut r), vec![v4.clone(), v6.clone()]);
    // The kernel's own rules are listed too: local, main, default.
    assert!(r.rules(Family::V4).unwrap().iter().any(|x| x.table == 254 && x.priority == Some(32766)));
    for rule in [&v4, &v6] {
        r.del_rule(rule).unwrap();
        assert_eq!(r.del_rule(rule).unwrap_err().errno, libc::ENOENT);
    }
    assert!(ours(&mut r).is_empty());
}
