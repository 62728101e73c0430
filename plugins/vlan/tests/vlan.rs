//! Root tests of the vlan plugin, driven as libcni drives it. The kernel
//! must have 8021q: this development machine's does not, so they skip here
//! with a message and run under `scripts/vm-test` on Debian 12's 6.1
//! (tests/vm/ci lists the ones CI runs there).
//!
//! Each test builds its own world: a "host" netns the plugin runs in, with
//! two NICs `m0` and `m1` cabled to a switch, the bridge `sw0` of a "LAN"
//! netns (no VLAN filtering: it passes tagged frames as they are), where
//! `sw0.100` (10.100.0.1/24) is a host on VLAN 100; and container netns.
//! The kernel allows one VLAN device per VLAN ID and master, so two
//! containers on VLAN 100 of this host use the two NICs.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde_json::{json, Value};
use test_harness::*;

macro_rules! require_vlan {
    () => {
        if let Some(why) = skip_unless_root_and("vlan") {
            eprintln!("{why}");
            return;
        }
    };
}

const IFNAME: &str = "eth0";
const SUBNET: &str = "10.100.0.0/24";
const VLAN100_HOST: &str = "10.100.0.1";

struct Lan {
    host: HostNs,
    sw: TestNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl Lan {
    fn new() -> Lan {
        let host = HostNs::with_lo().unwrap();
        let sw = TestNs::with_lo().unwrap();
        sw.ip(&["link", "add", "sw0", "type", "bridge"]).unwrap();
        sw.ip(&["link", "set", "sw0", "up"]).unwrap();
        for (nic, port) in [("m0", "p0"), ("m1", "p1")] {
            veth(&host, nic, &sw, port).unwrap();
            sw.ip(&["link", "set", port, "master", "sw0"]).unwrap();
        }
        sw.ip(&["link", "add", "link", "sw0", "name", "sw0.100", "type", "vlan", "id", "100"]).unwrap();
        sw.ip(&["addr", "add", "10.100.0.1/24", "dev", "sw0.100"]).unwrap();
        sw.ip(&["link", "set", "sw0.100", "up"]).unwrap();
        let (rt, cache) = runtime_in(&host);
        Lan { host, sw, rt, _cache: cache, data: TempDir::new().unwrap() }
    }

    /// A vlan network `name` on `master`, host-local on 10.100.0.0/24 from
    /// `.first` to `.first+9` (every network shares the subnet: only the
    /// VLAN keeps them apart), overlaid with `extra` (null removes a key).
    fn list(&self, name: &str, master: &str, vlan: u16, first: u8, extra: Value) -> NetConfList {
        conflist_value(&self.list_value(name, master, vlan, first, extra))
    }

    fn list_value(&self, name: &str, master: &str, vlan: u16, first: u8, extra: Value) -> Value {
        let ipam = json!({"type": "host-local", "dataDir": self.data.path(),
            "ranges": [[{"subnet": SUBNET, "rangeStart": format!("10.100.0.{first}"),
                         "rangeEnd": format!("10.100.0.{}", first + 9)}]]});
        let mut p = json!({"type": "vlan", "master": master, "vlanId": vlan, "ipam": ipam});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        json!({"cniVersion": "1.1.0", "name": name, "plugins": [p]})
    }

    fn add(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<CniResult, InvokeError> {
        self.rt.add(list, id, ctr.path(), IFNAME, "", json!({}))
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &TestNs) {
        self.rt.del(list, id, ctr.path(), IFNAME, "", json!({})).unwrap();
    }

    fn check(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<(), InvokeError> {
        self.rt.check(list, id, ctr.path(), IFNAME, "", json!({}))
    }

    fn leases(&self, net: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join(net)) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    fn assert_host_clean(&self) {
        assert_eq!(link_names(&self.host), ["lo", "m0", "m1"], "stray link on the host");
    }
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().unwrap()
}

fn eth0(ctr: &TestNs) -> Value {
    link(ctr, IFNAME).expect("eth0 exists")
}

fn first_ip(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

/// An AF_PACKET socket on `ifname` in `ns` receiving every frame, with the
/// kernel's auxiliary data: a VLAN tag taken off by offload is told there.
fn sniffer(ns: &TestNs, ifname: &str) -> OwnedFd {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    ns.run(move || {
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2), owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto as i32) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        // SAFETY: an int option of the right size on a valid socket.
        let r = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_AUXDATA,
                &on as *const _ as *const libc::c_void,
                4,
            )
        };
        assert_eq!(r, 0, "PACKET_AUXDATA: {}", std::io::Error::last_os_error());
        // SAFETY: zeroed sockaddr_ll is valid; the name is NUL-terminated.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = unsafe { libc::if_nametoindex(ifname.as_ptr()) } as i32;
        assert!(sll.sll_ifindex > 0, "no {ifname:?}");
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: a valid sockaddr_ll of that length.
        let r = unsafe { libc::bind(fd.as_raw_fd(), &sll as *const _ as *const libc::sockaddr, len) };
        assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
        fd
    })
    .unwrap()
}

/// The IPv4 frames queued on the sniffer: (802.1Q VLAN id if tagged, source).
fn ipv4_frames(fd: &OwnedFd) -> Vec<(Option<u16>, Ipv4Addr)> {
    let mut out = Vec::new();
    loop {
        let mut buf = [0u8; 2048];
        let mut ctl = [0u64; 16];
        let mut iov = libc::iovec { iov_base: buf.as_mut_ptr() as *mut libc::c_void, iov_len: buf.len() };
        // SAFETY: zeroed msghdr is valid; pointers to our buffers follow.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = ctl.as_mut_ptr() as *mut libc::c_void;
        msg.msg_controllen = std::mem::size_of_val(&ctl);
        // SAFETY: valid fd and message buffers.
        let len = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, libc::MSG_DONTWAIT) };
        if len < 0 {
            return out;
        }
        let frame = &buf[..len as usize];
        // A tag the driver took off (veth offloads it) is in the aux data.
        let mut tag = None;
        // SAFETY: walking the control messages recvmsg filled in.
        let mut c = unsafe { libc::CMSG_FIRSTHDR(&msg) };
        while !c.is_null() {
            // SAFETY: c points into ctl, as CMSG_FIRSTHDR/NXTHDR return.
            let h = unsafe { &*c };
            if h.cmsg_level == libc::SOL_PACKET && h.cmsg_type == libc::PACKET_AUXDATA {
                // SAFETY: the kernel put a tpacket_auxdata there.
                let aux =
                    unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const libc::tpacket_auxdata) };
                let tpid_ok =
                    aux.tp_status & libc::TP_STATUS_VLAN_TPID_VALID == 0 || aux.tp_vlan_tpid == 0x8100;
                if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 && tpid_ok {
                    tag = Some(aux.tp_vlan_tci & 0xfff);
                }
            }
            // SAFETY: as above.
            c = unsafe { libc::CMSG_NXTHDR(&msg, c) };
        }
        // … or still in the frame.
        let mut l3 = 14;
        if frame.len() >= 18 && frame[12..14] == [0x81, 0x00] {
            tag = Some(u16::from_be_bytes([frame[14], frame[15]]) & 0xfff);
            l3 = 18;
        }
        if frame.len() >= l3 + 20 && frame[l3 - 2..l3] == [0x08, 0x00] {
            out.push((tag, Ipv4Addr::new(frame[l3 + 12], frame[l3 + 13], frame[l3 + 14], frame[l3 + 15])));
        }
    }
}

#[test]
fn containers_on_one_vlan_reach_each_other_and_no_one_else() {
    require_vlan!();
    let lan = Lan::new();
    let tap = sniffer(&lan.sw, "p0");
    // VLAN 100 and VLAN 200, each on both NICs, all in one subnet.
    let (a, b, c, d) = (ctr(), ctr(), ctr(), ctr());
    let nets = [
        (lan.list("v100a", "m0", 100, 10, json!({})), "a", &a),
        (lan.list("v100b", "m1", 100, 20, json!({})), "b", &b),
        (lan.list("v200a", "m0", 200, 30, json!({})), "c", &c),
        (lan.list("v200b", "m1", 200, 40, json!({})), "d", &d),
    ];
    let res: Vec<CniResult> = nets.iter().map(|(l, id, ns)| lan.add(l, id, ns).unwrap()).collect();
    let ip: Vec<String> = res.iter().map(first_ip).collect();
    assert_eq!(ip, ["10.100.0.10", "10.100.0.20", "10.100.0.30", "10.100.0.40"]);

    // The result and the kernel's view: a VLAN device of m0 with its MAC.
    let m0_mac = link(&lan.host, "m0").unwrap()["address"].clone();
    let i = &res[0].interfaces[0];
    assert_eq!((i.name.as_str(), i.sandbox.as_str()), (IFNAME, a.path_str().as_str()));
    assert_eq!(eth0(&a)["address"], m0_mac);
    assert_eq!(i.mac, m0_mac.as_str().unwrap());
    assert_eq!(res[0].ips[0].interface, Some(0));
    let l = eth0(&a);
    assert_eq!(l["linkinfo"]["info_kind"], "vlan");
    assert_eq!(l["linkinfo"]["info_data"]["id"], 100);
    assert_eq!(l["linkinfo"]["info_data"]["protocol"], "802.1Q");
    assert_eq!(l["link_index"], link(&lan.host, "m0").unwrap()["ifindex"]);
    assert_eq!(lan.host.ip(&["-o", "link", "show", "type", "vlan"]).unwrap(), "", "born in the containers");

    assert!(ping(&a, &ip[1]) && ping(&b, &ip[0]), "VLAN 100 across the switch");
    assert!(ping(&a, VLAN100_HOST), "a host on VLAN 100 of the LAN");
    assert!(ping(&c, &ip[3]), "VLAN 200 across the switch");
    assert!(!ping(&c, &ip[0]) && !ping(&a, &ip[2]), "VLAN 100 and 200 do not meet");
    assert!(!ping(&c, VLAN100_HOST), "VLAN 200 does not reach VLAN 100's host");

    // On the wire between m0 and the switch, each container's frames carry its tag.
    let frames = ipv4_frames(&tap);
    let a_ip: Ipv4Addr = ip[0].parse().unwrap();
    let c_ip: Ipv4Addr = ip[2].parse().unwrap();
    assert!(frames.contains(&(Some(100), a_ip)), "{frames:?}");
    assert!(frames.contains(&(Some(200), c_ip)), "{frames:?}");
    assert!(!frames.iter().any(|(tag, src)| tag.is_none() && (*src == a_ip || *src == c_ip)), "{frames:?}");

    lan.check(&nets[0].0, "a", &a).unwrap();
    for (l, id, ns) in &nets {
        lan.del(l, id, ns);
        assert_eq!(link_names(ns), ["lo"]);
    }
    for net in ["v100a", "v100b", "v200a", "v200b"] {
        assert!(lan.leases(net).is_empty(), "{net}");
    }
    lan.assert_host_clean();
}

#[test]
fn a_failed_add_leaves_nothing() {
    require_vlan!();
    let lan = Lan::new();
    let list = lan.list("v100", "m0", 100, 10, json!({}));
    let (a, b) = (ctr(), ctr());
    lan.add(&list, "a", &a).unwrap();

    // VLAN 100 of m0 is a's: the kernel allows one. Said so, nothing left.
    let e = lan.add(&list, "b", &b).unwrap_err();
    assert!(e.msg().contains("one per VLAN ID and master"), "{e}");
    assert_eq!(link_names(&b), ["lo"]);
    assert_eq!(lan.leases("v100"), ["10.100.0.10"], "a's lease only");

    // IPAM fails after the link was made (its range is exhausted): the link goes.
    let full = lan.list("v7", "m0", 7, 10, json!({}));
    let mut ipam = full.plugins[0]["ipam"].clone();
    ipam["ranges"][0][0]["rangeEnd"] = json!("10.100.0.10");
    let full = lan.list("v7", "m0", 7, 10, json!({"ipam": ipam}));
    let a7 = ctr();
    lan.add(&full, "a7", &a7).unwrap();
    let e = lan
        .add(&lan.list("v7", "m1", 7, 10, json!({"ipam": full.plugins[0]["ipam"].clone()})), "b", &b)
        .unwrap_err();
    assert!(e.msg().contains("host-local"), "{e}");
    assert_eq!(link_names(&b), ["lo"]);

    // Config errors: code 7, before anything is made.
    for (extra, needle) in [
        (json!({"vlanId": 4095}), "invalid VLAN ID 4095"),
        (json!({"mtu": 1501}), "master MTU(1500)"),
        (json!({"master": "nosuch0"}), "nosuch0"),
        (json!({"master": null}), "\"master\" field is required"),
    ] {
        let e = lan.add(&lan.list("v9", "m1", 9, 10, extra.clone()), "b", &b).unwrap_err();
        assert_eq!(e.code(), Some(7), "{extra}: {e}");
        assert!(e.msg().contains(needle), "{extra}: {e}");
        assert_eq!(link_names(&b), ["lo"]);
        assert!(lan.leases("v9").is_empty());
    }
    lan.assert_host_clean();
}

#[test]
fn del_without_netns_and_check_after_drift() {
    require_vlan!();
    let lan = Lan::new();
    let list = lan.list("v100", "m0", 100, 10, json!({"mtu": 1400}));
    let c = ctr();
    lan.add(&list, "c1", &c).unwrap();
    assert_eq!(eth0(&c)["mtu"], 1400);
    lan.check(&list, "c1", &c).unwrap();

    let e = lan.check(&lan.list("v100", "m0", 200, 10, json!({"mtu": 1400})), "c1", &c).unwrap_err();
    assert!(e.msg().contains("is VLAN Some(100)"), "{e}");
    let e = lan.check(&lan.list("v100", "m1", 100, 10, json!({"mtu": 1400})), "c1", &c).unwrap_err();
    assert!(e.msg().contains("not on master \"m1\""), "{e}");
    c.ip(&["link", "set", IFNAME, "mtu", "1300"]).unwrap();
    let e = lan.check(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("has MTU 1300, the config says 1400"), "{e}");

    // DEL once the container's netns (and the VLAN device in it) is gone.
    let path = c.path_str();
    drop(c);
    lan.rt.del(&list, "c1", &path, IFNAME, "", json!({})).unwrap();
    assert!(lan.leases("v100").is_empty());
    lan.rt.del(&list, "c1", "", IFNAME, "", json!({})).unwrap();
    // VLAN 100 of m0 is free again.
    let c2 = ctr();
    lan.add(&list, "c2", &c2).unwrap();
    lan.del(&list, "c2", &c2);

    // STATUS: the master's absence is code 50.
    lan.rt.status(&list).unwrap();
    lan.host.ip(&["link", "del", "m0"]).unwrap();
    assert_eq!(lan.rt.status(&list).unwrap_err().code(), Some(50));
}

/// GC is IPAM's: the lease of an attachment the runtime no longer lists is
/// released, a listed one's kept.
#[test]
fn gc_releases_the_leases_of_attachments_not_listed() {
    require_vlan!();
    let lan = Lan::new();
    let (a, b) = (lan.list("v100", "m0", 100, 10, json!({})), lan.list("v100", "m1", 100, 10, json!({})));
    let (keep, stale) = (ctr(), ctr());
    let kept = first_ip(&lan.add(&a, "c-keep", &keep).unwrap());
    lan.add(&b, "c-stale", &stale).unwrap();
    // The runtime forgot the stale one (no cache entry): only GC can clean it.
    std::fs::remove_file(lan.rt.cache_path("v100", "c-stale", IFNAME)).unwrap();
    lan.rt.gc(&a, &[("c-keep", IFNAME)]).unwrap_or_else(|e| panic!("GC: {e:?}"));
    assert_eq!(lan.leases("v100"), [kept]);
    lan.check(&a, "c-keep", &keep).unwrap();
    lan.del(&a, "c-keep", &keep);
    assert!(lan.leases("v100").is_empty());
    lan.assert_host_clean();
}

#[test]
fn link_in_container_tags_on_the_containers_own_nic() {
    require_vlan!();
    let lan = Lan::new();
    let c = ctr();
    veth(&c, "up0", &lan.sw, "p2").unwrap();
    lan.sw.ip(&["link", "set", "p2", "master", "sw0"]).unwrap();
    let list = lan.list("v100", "up0", 100, 10, json!({"linkInContainer": true}));
    let res = lan.add(&list, "c1", &c).unwrap();
    assert_eq!(eth0(&c)["link"], "up0");
    assert!(ping(&c, VLAN100_HOST) && ping(&lan.sw, &first_ip(&res)));
    lan.check(&list, "c1", &c).unwrap();
    lan.del(&list, "c1", &c);
    assert_eq!(link_names(&c), ["lo", "up0"]);
    lan.assert_host_clean();
}

#[test]
fn results_in_every_version() {
    require_vlan!();
    let lan = Lan::new();
    let c = ctr();
    for ver in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let mut v = lan.list_value("v100", "m0", 100, 10, json!({}));
        v["cniVersion"] = json!(ver);
        let list = conflist_value(&v);
        let rtc = RuntimeConf::new(&format!("c{}", ver.replace('.', "")), c.path(), IFNAME);
        let req = lan.rt.request(&list, 0, None, &rtc).unwrap();
        let out = lan.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        if ver < "0.3.0" {
            assert!(v["ip4"]["ip"].as_str().is_some_and(|ip| ip.starts_with("10.100.0.")), "{ver}: {v}");
        } else {
            assert_eq!(v["interfaces"][0]["name"], IFNAME, "{ver}: {v}");
            assert_eq!(v["interfaces"][0]["sandbox"], c.path_str());
            assert_eq!(v["ips"][0]["interface"], 0);
        }
        lan.rt.del_rt(&list, &rtc).unwrap();
        assert!(!link_exists(&c, IFNAME), "{ver}");
    }
    assert!(lan.leases("v100").is_empty());
}

// ----- beside the reference plugin -----------------------------------------------------------

/// Debian's reference plugins (containernetworking-plugins 1.1.1).
const REFERENCE: &str = "/usr/lib/cni/vlan";

#[test]
fn the_reference_makes_the_same_and_each_takes_over_the_others() {
    require_vlan!();
    if !std::path::Path::new(REFERENCE).exists() {
        eprintln!(
            "skipped: no reference plugin at {REFERENCE} (scripts/deps installs containernetworking-plugins)"
        );
        return;
    }
    let lan = Lan::new();
    // The reference's vlan (and our host-local), sharing our result cache so
    // that either runtime's CHECK and DEL act on the other's attachments.
    let dir = TempDir::new().unwrap();
    std::os::unix::fs::symlink(REFERENCE, dir.join("vlan")).unwrap();
    let reference = Runtime::new(
        vec![dir.path().to_path_buf(), target_bin_dir()],
        Some(lan.host.path().to_path_buf()),
        lan._cache.path(),
    );
    let (a, b) = (ctr(), ctr());
    // Debian's reference speaks up to 1.0.0.
    let list = |master| {
        let mut v = lan.list_value("v100", master, 100, 10, json!({"mtu": 1400}));
        v["cniVersion"] = json!("1.0.0");
        conflist_value(&v)
    };
    let (la, lb) = (list("m0"), list("m1"));
    let ours = lan.add(&la, "a", &a).unwrap();
    let theirs = reference.add(&lb, "b", b.path(), IFNAME, "", json!({})).unwrap();

    // The same result but for the address, sandbox and MAC (each its master's).
    let shape = |r: &CniResult, ns: &TestNs| {
        let mut v = r.to_value("1.1.0").unwrap();
        assert_eq!(v["interfaces"][0]["sandbox"], ns.path_str());
        assert_eq!(v["interfaces"][0]["mac"], eth0(ns)["address"]);
        v["interfaces"][0]["sandbox"] = json!("<netns>");
        v["interfaces"][0]["mac"] = json!("<mac>");
        v["ips"][0]["address"] = json!("<address>");
        v
    };
    assert_eq!(shape(&ours, &a), shape(&theirs, &b));
    let kernel = |ns: &TestNs| {
        let l = eth0(ns);
        (l["linkinfo"].clone(), l["flags"].clone(), l["mtu"].clone())
    };
    assert_eq!(kernel(&a), kernel(&b));
    assert!(ping(&a, &first_ip(&theirs)), "ours and the reference's on one VLAN");

    // Each CHECKs and DELs what the other made.
    lan.check(&lb, "b", &b).unwrap();
    reference.check(&la, "a", a.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&lb, "b", &b);
    reference.del(&la, "a", a.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!((link_names(&a), link_names(&b)), (vec!["lo".to_string()], vec!["lo".to_string()]));
    assert!(lan.leases("v100").is_empty());
}
