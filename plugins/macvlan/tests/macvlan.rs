//! Root tests of the macvlan plugin, driven as libcni drives it.
//!
//! Each test builds its own world of namespaces: a "host" netns the plugin
//! runs in, whose master `m0` is one end of a veth (the kernel here has no
//! `dummy` driver), the other end `lan0` sitting in a "LAN peer" netns at
//! 10.77.0.1/24 and fd77::1/64; and container netns. IPAM is our host-local
//! from the target dir with a temporary data dir.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

const NET: &str = "mvnet";
const LAN_IP: &str = "10.77.0.1";
const LAN_IP6: &str = "fd77::1";
const IFNAME: &str = "eth0";

/// The host with its master, the LAN peer, a runtime and an IPAM data dir.
struct Lan {
    host: HostNs,
    peer: TestNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl Lan {
    fn new() -> Lan {
        let host = HostNs::with_lo().unwrap();
        let peer = TestNs::with_lo().unwrap();
        veth(&host, "m0", &peer, "lan0").unwrap();
        peer.ip(&["addr", "add", "10.77.0.1/24", "dev", "lan0"]).unwrap();
        peer.ip(&["addr", "add", "fd77::1/64", "dev", "lan0", "nodad"]).unwrap();
        let (rt, cache) = runtime_in(&host);
        Lan { host, peer, rt, _cache: cache, data: TempDir::new().unwrap() }
    }

    /// host-local on 10.77.0.0/24 from .10, default route via the LAN peer.
    fn ipam(&self) -> Value {
        json!({"type": "host-local", "dataDir": self.data.path(),
               "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "gateway": LAN_IP}]],
               "routes": [{"dst": "0.0.0.0/0"}]})
    }

    fn ipam_dual(&self) -> Value {
        json!({"type": "host-local", "dataDir": self.data.path(),
               "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "gateway": LAN_IP}],
                          [{"subnet": "fd77::/64", "rangeStart": "fd77::a", "gateway": LAN_IP6}]]})
    }

    /// A one-plugin list: `{"type": "macvlan", "master": "m0", "ipam": <ours>}`
    /// overlaid with `extra` (a null value removes the key).
    fn list(&self, ver: &str, extra: Value) -> NetConfList {
        let mut p = json!({"type": "macvlan", "master": "m0", "ipam": self.ipam()});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        conflist_value(&json!({"cniVersion": ver, "name": NET, "plugins": [p]}))
    }

    fn add(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<CniResult, InvokeError> {
        self.rt.add(list, id, ctr.path(), IFNAME, "IgnoreUnknown=1", json!({}))
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &TestNs) {
        self.rt.del(list, id, ctr.path(), IFNAME, "IgnoreUnknown=1", json!({})).unwrap();
    }

    /// Lease files (named by address) of network `net`.
    fn leases(&self, net: &str) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join(net)) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// Nothing left behind: only `lo` + `m0` on the host, only `lo` plus
    /// `keep` in the container, no lease.
    fn assert_clean(&self, ctr: &TestNs, keep: &[&str]) {
        assert_eq!(link_names(&self.host), ["lo", "m0"], "stray link on the host");
        let mut want = vec!["lo".to_string()];
        want.extend(keep.iter().map(|s| s.to_string()));
        let mut have = link_names(ctr);
        have.sort();
        want.sort();
        assert_eq!(have, want, "stray link in the container");
        assert!(self.leases(NET).is_empty(), "stray lease: {:?}", self.leases(NET));
    }
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().unwrap()
}

/// The container's `eth0` as `ip -d -j link` shows it.
fn eth0(ctr: &TestNs) -> Value {
    link(ctr, IFNAME).expect("eth0 exists")
}

fn first_ip(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

// ----- ADD, the result, reachability ----------------------------------------------------

#[test]
fn add_gives_a_macvlan_the_lan_reaches_and_del_removes_it() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"dns": {"nameservers": ["10.77.0.53"], "search": ["lan"]}}));
    let res = lan.add(&list, "c1", &c).unwrap();

    // Result: one interface in the sandbox, every IP on it, IPAM's routes, config DNS.
    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!((i.name.as_str(), i.sandbox.as_str()), (IFNAME, c.path_str().as_str()));
    let l = eth0(&c);
    assert_eq!(l["address"].as_str(), Some(i.mac.as_str()));
    assert_eq!(res.ips.len(), 1);
    assert_eq!(res.ips[0].interface, Some(0));
    assert_eq!(res.ips[0].address.to_string(), "10.77.0.10/24");
    assert_eq!(res.routes.len(), 1);
    assert_eq!(res.dns.nameservers, ["10.77.0.53"]);
    assert_eq!(res.dns.search, ["lan"]);

    // The kernel view: a bridge-mode macvlan on m0, up, with the address and route.
    assert_eq!(l["linkinfo"]["info_kind"], "macvlan");
    assert_eq!(l["linkinfo"]["info_data"]["mode"], "bridge");
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        addrs(&c, IFNAME).iter().filter(|a| a.starts_with("10.")).collect::<Vec<_>>(),
        ["10.77.0.10/24"]
    );
    assert!(has_route(&c, "default"));
    assert_eq!(c.sysctl("net.ipv4.conf.eth0.arp_notify").unwrap(), "1");
    assert_eq!(c.sysctl("net.ipv6.conf.eth0.ndisc_notify").unwrap(), "1");
    // Nothing appeared on the host: the device was born in the container.
    assert_eq!(link_names(&lan.host), ["lo", "m0"]);

    assert!(ping(&lan.peer, "10.77.0.10"), "the LAN peer reaches the container");
    assert!(ping(&c, LAN_IP), "the container reaches the LAN peer");
    assert_eq!(lan.leases(NET), ["10.77.0.10"]);

    lan.del(&list, "c1", &c);
    lan.assert_clean(&c, &[]);
    // DEL twice is fine.
    lan.del(&list, "c1", &c);
}

#[test]
fn results_in_0_4_0_and_1_1_0() {
    require_root!();
    let lan = Lan::new();
    for (ver, id) in [("0.4.0", "c040"), ("1.1.0", "c110"), ("1.0.0", "c100"), ("0.3.1", "c031")] {
        let c = ctr();
        let list = lan.list(ver, json!({}));
        let rtc = RuntimeConf::new(id, c.path(), IFNAME);
        let req = lan.rt.request(&list, 0, None, &rtc).unwrap();
        let out = lan.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        assert_eq!(v["interfaces"][0]["name"], IFNAME);
        assert_eq!(v["interfaces"][0]["sandbox"], c.path_str());
        assert_eq!(v["ips"][0]["interface"], 0);
        assert_eq!(v["ips"][0]["gateway"], LAN_IP);
        let has_version = v["ips"][0].get("version").is_some();
        assert_eq!(has_version, ver.starts_with("0."), "{ver}: {v}");
        if has_version {
            assert_eq!(v["ips"][0]["version"], "4");
        }
        assert!(v.get("dns").is_none(), "empty dns is omitted: {v}");
        lan.rt.del_rt(&list, &rtc).unwrap();
        assert!(!link_exists(&c, IFNAME));
    }
    assert!(lan.leases(NET).is_empty());
}

#[test]
fn empty_ipam_gives_a_link_without_addresses() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"ipam": {}}));
    let res = lan.add(&list, "c1", &c).unwrap();
    assert_eq!(res.interfaces.len(), 1);
    assert!(res.ips.is_empty() && res.routes.is_empty());
    let l = eth0(&c);
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "link only, but up");
    assert!(addrs(&c, IFNAME).iter().all(|a| a.starts_with("fe80:")));
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&list, "c1", &c);
    assert!(!link_exists(&c, IFNAME));

    // An absent ipam section means the same.
    let list = lan.list("1.1.0", json!({"ipam": null}));
    let res = lan.add(&list, "c2", &c).unwrap();
    assert!(res.ips.is_empty());
    lan.del(&list, "c2", &c);
    lan.assert_clean(&c, &[]);
}

#[test]
fn dual_stack_both_families_reach_the_lan() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"ipam": lan.ipam_dual()}));
    let res = lan.add(&list, "c1", &c).unwrap();
    let got: Vec<String> = res.ips.iter().map(|ip| ip.address.to_string()).collect();
    assert_eq!(got, ["10.77.0.10/24", "fd77::a/64"]);
    assert!(res.ips.iter().all(|ip| ip.interface == Some(0)));
    assert!(ping(&lan.peer, "10.77.0.10"));
    assert!(ping_timeout(&lan.peer, "fd77::a", Duration::from_secs(3)), "IPv6 from the LAN");
    assert!(ping(&c, LAN_IP6));
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&list, "c1", &c);
    lan.assert_clean(&c, &[]);
}

#[test]
fn neighbours_learn_the_new_address_without_traffic() {
    require_root!();
    let lan = Lan::new();
    // Let the LAN peer create neighbour entries from gratuitous ARP.
    lan.peer.set_sysctl("net.ipv4.conf.lan0.arp_accept", "1").unwrap();
    let c = ctr();
    let list = lan.list("1.1.0", json!({}));
    let res = lan.add(&list, "c1", &c).unwrap();
    let mac = res.interfaces[0].mac.clone();
    let learned = wait_until(Duration::from_secs(3), || {
        lan.peer.ip(&["neigh", "show", "10.77.0.10", "dev", "lan0"]).unwrap().contains(&mac)
    });
    assert!(learned, "the LAN peer never saw the announcement");
    lan.del(&list, "c1", &c);
}

/// An AF_PACKET socket in `ns` that receives every ARP packet (payload only).
fn arp_sniffer(ns: &TestNs) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    ns.run(|| {
        let proto = (0x0806u16).to_be() as i32;
        // SAFETY: plain socket(2), owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor nobody else owns.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    })
    .unwrap()
}

/// Gratuitous ARP requests for `ip` from `mac` queued on the sniffer.
fn garps(fd: &std::os::fd::OwnedFd, ip: [u8; 4], mac: [u8; 6]) -> usize {
    use std::os::fd::AsRawFd;
    let mut n = 0;
    let mut buf = [0u8; 128];
    loop {
        // SAFETY: valid fd and buffer.
        let len = unsafe {
            libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT)
        };
        if len < 0 {
            return n;
        }
        let p = &buf[..len as usize];
        let is_garp = p.len() >= 28
            && p[6..8] == [0, 1]
            && p[8..14] == mac
            && p[14..18] == ip
            && p[24..28] == ip
            && p[18..24] == [0; 6];
        n += is_garp as usize;
    }
}

#[test]
fn a_gratuitous_arp_announces_the_container() {
    require_root!();
    let lan = Lan::new();
    let sniffer = arp_sniffer(&lan.peer);
    let c = ctr();
    let list = lan.list("1.1.0", json!({"mac": "02:dd:00:00:00:01"}));
    lan.add(&list, "c1", &c).unwrap();
    let (ip, mac) = ([10, 77, 0, 10], [2, 0xdd, 0, 0, 0, 1]);
    // Sent by the kernel as the link comes up, because the plugin set arp_notify
    // and added the address first.
    let mut seen = 0;
    let one = wait_until(Duration::from_secs(2), || {
        seen += garps(&sniffer, ip, mac);
        seen >= 1
    });
    assert!(one, "saw no gratuitous ARP for the container");
    lan.del(&list, "c1", &c);
}

/// An AF_PACKET socket in `ns` receiving IPv6 packets (from the IPv6 header on).
fn ipv6_sniffer(ns: &TestNs) -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    ns.run(|| {
        let proto = (0x86ddu16).to_be() as i32;
        // SAFETY: plain socket(2), owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, proto) };
        assert!(fd >= 0, "AF_PACKET socket: {}", std::io::Error::last_os_error());
        // SAFETY: fresh descriptor nobody else owns.
        unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
    })
    .unwrap()
}

/// Unsolicited NAs (to ff02::1, override set, solicited clear) for `ip`
/// carrying `mac` as target link-layer address.
fn unsolicited_nas(fd: &std::os::fd::OwnedFd, ip: std::net::Ipv6Addr, mac: [u8; 6]) -> usize {
    use std::os::fd::AsRawFd;
    let all_nodes = "ff02::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let mut n = 0;
    let mut buf = [0u8; 256];
    loop {
        // SAFETY: valid fd and buffer.
        let len = unsafe {
            libc::recv(fd.as_raw_fd(), buf.as_mut_ptr() as *mut libc::c_void, buf.len(), libc::MSG_DONTWAIT)
        };
        if len < 0 {
            return n;
        }
        let p = &buf[..len as usize];
        let icmp = p.get(40..).unwrap_or(&[]);
        let is_na = p.len() >= 40 + 32
            && p[6] == 58 // ICMPv6
            && p[7] == 255 // hop limit
            && p[24..40] == all_nodes
            && icmp[0] == 136
            && icmp[4] & 0x60 == 0x20
            && icmp[8..24] == ip.octets()
            && icmp[24..26] == [2, 1]
            && icmp[26..32] == mac;
        n += is_na as usize;
    }
}

#[test]
fn an_unsolicited_neighbour_advertisement_announces_the_container() {
    require_root!();
    let lan = Lan::new();
    let sniffer = ipv6_sniffer(&lan.peer);
    let c = ctr();
    let list = lan.list("1.1.0", json!({"mac": "02:dd:00:00:00:02", "ipam": lan.ipam_dual()}));
    lan.add(&list, "c1", &c).unwrap();
    let mut seen = 0;
    // Sent by the kernel (ndisc_notify, set by the plugin) once the address is valid.
    let ok = wait_until(Duration::from_secs(3), || {
        seen += unsolicited_nas(&sniffer, "fd77::a".parse().unwrap(), [2, 0xdd, 0, 0, 0, 2]);
        seen >= 1
    });
    assert!(ok, "saw no unsolicited NA for fd77::a");
    lan.del(&list, "c1", &c);
}

// ----- modes ----------------------------------------------------------------------------

#[test]
fn bridge_mode_containers_reach_each_other() {
    require_root!();
    let lan = Lan::new();
    let (a, b) = (ctr(), ctr());
    let list = lan.list("1.1.0", json!({"mode": "bridge"}));
    let ra = lan.add(&list, "a", &a).unwrap();
    let rb = lan.add(&list, "b", &b).unwrap();
    assert_ne!(first_ip(&ra), first_ip(&rb));
    assert!(ping(&a, &first_ip(&rb)) && ping(&b, &first_ip(&ra)));
    assert!(ping(&lan.peer, &first_ip(&ra)) && ping(&lan.peer, &first_ip(&rb)));
    lan.del(&list, "a", &a);
    lan.del(&list, "b", &b);
    lan.assert_clean(&a, &[]);
    lan.assert_clean(&b, &[]);
}

#[test]
fn private_mode_isolates_containers_but_not_the_lan() {
    require_root!();
    let lan = Lan::new();
    let (a, b) = (ctr(), ctr());
    let list = lan.list("1.1.0", json!({"mode": "private"}));
    let ra = lan.add(&list, "a", &a).unwrap();
    let rb = lan.add(&list, "b", &b).unwrap();
    assert_eq!(eth0(&a)["linkinfo"]["info_data"]["mode"], "private");
    assert!(ping(&lan.peer, &first_ip(&ra)) && ping(&lan.peer, &first_ip(&rb)));
    assert!(!ping(&a, &first_ip(&rb)), "private mode must block container to container");
    assert!(!ping(&b, &first_ip(&ra)));
    lan.rt.check(&list, "a", a.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&list, "a", &a);
    lan.del(&list, "b", &b);
    assert!(lan.leases(NET).is_empty());
}

#[test]
fn vepa_and_passthru_modes_are_set() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"mode": "vepa"}));
    lan.add(&list, "c1", &c).unwrap();
    assert_eq!(eth0(&c)["linkinfo"]["info_data"]["mode"], "vepa");
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&list, "c1", &c);

    let list = lan.list("1.1.0", json!({"mode": "passthru"}));
    let r = lan.add(&list, "c2", &c).unwrap();
    assert_eq!(eth0(&c)["linkinfo"]["info_data"]["mode"], "passthru");
    assert!(ping(&lan.peer, &first_ip(&r)));
    // A master carries one passthru device only: the second ADD fails cleanly.
    let c2 = ctr();
    let e = lan.add(&list, "c3", &c2).unwrap_err();
    assert!(e.msg().contains("passthru"), "{e}");
    assert_eq!(link_names(&c2), ["lo"]);
    assert_eq!(lan.leases(NET).len(), 1, "only c2's lease: {:?}", lan.leases(NET));
    lan.del(&list, "c2", &c);
    lan.assert_clean(&c, &[]);
}

// ----- MAC, MTU, bcqueuelen -------------------------------------------------------------

#[test]
fn mac_from_cni_args_runtime_config_args_and_config() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let plain = lan.list("1.1.0", json!({}));

    // CNI_ARGS MAC (what Podman sends for a static MAC).
    let r = lan.rt.add(&plain, "c1", c.path(), IFNAME, "IgnoreUnknown=1;MAC=02:aa:00:00:00:01", json!({}));
    assert_eq!(r.unwrap().interfaces[0].mac, "02:aa:00:00:00:01");
    assert_eq!(eth0(&c)["address"], "02:aa:00:00:00:01");
    lan.del(&plain, "c1", &c);

    // runtimeConfig.mac (capability) wins over CNI_ARGS.
    let caps = lan.list("1.1.0", json!({"capabilities": {"mac": true}}));
    let r = lan.rt.add(
        &caps,
        "c2",
        c.path(),
        IFNAME,
        "IgnoreUnknown=1;MAC=02:aa:00:00:00:01",
        json!({"mac": "02:AA:00:00:00:02"}),
    );
    let r = r.unwrap();
    assert_eq!(r.interfaces[0].mac, "02:aa:00:00:00:02");
    assert_eq!(eth0(&c)["address"], "02:aa:00:00:00:02");
    assert!(ping(&lan.peer, &first_ip(&r)));
    lan.rt.check(&caps, "c2", c.path(), IFNAME, "", json!({"mac": "02:aa:00:00:00:02"})).unwrap();
    lan.rt.del(&caps, "c2", c.path(), IFNAME, "", json!({})).unwrap();

    // args.cni.mac, then the config's own `mac`.
    let args =
        lan.list("1.1.0", json!({"args": {"cni": {"mac": "02:aa:00:00:00:03"}}, "mac": "02:aa:00:00:00:04"}));
    assert_eq!(lan.add(&args, "c3", &c).unwrap().interfaces[0].mac, "02:aa:00:00:00:03");
    lan.del(&args, "c3", &c);
    let conf = lan.list("1.1.0", json!({"mac": "02:aa:00:00:00:04"}));
    assert_eq!(lan.add(&conf, "c4", &c).unwrap().interfaces[0].mac, "02:aa:00:00:00:04");
    lan.del(&conf, "c4", &c);
    lan.assert_clean(&c, &[]);
}

#[test]
fn mtu_is_applied_and_validated_against_the_master() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"mtu": 1400}));
    lan.add(&list, "c1", &c).unwrap();
    assert_eq!(eth0(&c)["mtu"], 1400);
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    lan.del(&list, "c1", &c);

    // Equal to the master's is fine; above it is a config error and leaves nothing.
    let list = lan.list("1.1.0", json!({"mtu": 1500}));
    lan.add(&list, "c2", &c).unwrap();
    lan.del(&list, "c2", &c);
    for bad in [json!(1501), json!(9000), json!(-1)] {
        let list = lan.list("1.1.0", json!({"mtu": bad}));
        let e = lan.add(&list, "c3", &c).unwrap_err();
        assert_eq!(e.code(), Some(7), "mtu {bad}: {e}");
        assert!(e.msg().contains("MTU"), "{e}");
        lan.assert_clean(&c, &[]);
    }
    // A master with a bigger MTU allows a bigger macvlan.
    lan.host.ip(&["link", "set", "m0", "mtu", "9000"]).unwrap();
    let list = lan.list("1.1.0", json!({"mtu": 9000}));
    lan.add(&list, "c4", &c).unwrap();
    assert_eq!(eth0(&c)["mtu"], 9000);
    lan.del(&list, "c4", &c);
}

#[test]
fn bcqueuelen_is_applied() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"bcqueuelen": 123}));
    lan.add(&list, "c1", &c).unwrap();
    assert_eq!(eth0(&c)["linkinfo"]["info_data"]["bcqueuelen"], 123);
    assert!(ping(&lan.peer, "10.77.0.10"), "broadcast (ARP) still works");
    lan.del(&list, "c1", &c);
}

// ----- where the master is ---------------------------------------------------------------

#[test]
fn link_in_container_uses_a_master_inside_the_container() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    // The container's own uplink: "up0" in the container, "lan1" at the LAN peer.
    veth(&c, "up0", &lan.peer, "lan1").unwrap();
    lan.peer.ip(&["addr", "add", "10.78.0.1/24", "dev", "lan1"]).unwrap();
    let ipam = json!({"type": "host-local", "dataDir": lan.data.path(),
                      "ranges": [[{"subnet": "10.78.0.0/24", "rangeStart": "10.78.0.10"}]]});
    let list = lan.list("1.1.0", json!({"master": "up0", "linkInContainer": true, "ipam": ipam}));
    let res = lan.add(&list, "c1", &c).unwrap();
    assert_eq!(first_ip(&res), "10.78.0.10");
    let l = eth0(&c);
    assert_eq!(l["link"], "up0", "the parent is the container's up0: {l}");
    assert!(ping(&lan.peer, "10.78.0.10"));
    assert_eq!(link_names(&lan.host), ["lo", "m0"]);
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    // The host's m0 is not the master here: a master only the host has is an error.
    let wrong = lan.list("1.1.0", json!({"master": "m0", "linkInContainer": true, "ipam": {}}));
    let c2 = ctr();
    let e = lan.add(&wrong, "c2", &c2).unwrap_err();
    assert_eq!(e.code(), Some(7), "{e}");
    lan.del(&list, "c1", &c);
    lan.assert_clean(&c, &["up0"]);
}

#[test]
fn default_master_is_the_default_route_interface() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({"master": null}));

    // No default route: nothing to default to, a config error, nothing left.
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(e.msg().contains("default route"), "{e}");
    lan.assert_clean(&c, &[]);
    let status = lan.rt.status(&list).unwrap_err();
    assert_eq!(status.code(), Some(50), "{status}");

    // A second candidate proves the choice: "other" has no default route.
    let other = TestNs::with_lo().unwrap();
    veth(&lan.host, "other", &other, "o0").unwrap();
    lan.host.ip(&["addr", "add", "192.0.2.2/24", "dev", "m0"]).unwrap();
    lan.host.ip(&["route", "add", "default", "via", "192.0.2.1", "dev", "m0"]).unwrap();
    lan.peer.ip(&["addr", "add", "192.0.2.1/24", "dev", "lan0"]).unwrap();
    let res = lan.add(&list, "c1", &c).unwrap();
    let m0_index = lan.host.ip_json(&["link", "show", "m0"]).unwrap()[0]["ifindex"].clone();
    assert_eq!(eth0(&c)["link_index"], m0_index, "parent is m0");
    assert!(ping(&lan.peer, &first_ip(&res)));
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    lan.rt.status(&list).unwrap();
    lan.del(&list, "c1", &c);
    assert_eq!(link_names(&c), ["lo"]);
}

// ----- failure paths leave nothing --------------------------------------------------------

#[test]
fn config_errors_are_code_7_and_leave_nothing() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let cases = [
        (json!({"master": "nosuch0"}), "nosuch0"),
        (json!({"master": "bad/name"}), "master"),
        (json!({"mode": "source"}), "mode"),
        (json!({"mode": "bogus"}), "mode"),
        (json!({"mtu": 65536}), "MTU"),
        (json!({"mac": "not-a-mac"}), "MAC"),
        (json!({"linkInContainer": "yes"}), "invalid macvlan config"),
    ];
    for (extra, needle) in cases {
        let list = lan.list("1.1.0", extra.clone());
        let e = lan.add(&list, "c1", &c).unwrap_err();
        assert_eq!(e.code(), Some(7), "{extra}: {e}");
        assert!(e.msg().contains(needle), "{extra}: {e}");
        lan.assert_clean(&c, &[]);
    }
    // A bad MAC in CNI_ARGS too.
    let list = lan.list("1.1.0", json!({}));
    let e = lan.rt.add(&list, "c1", c.path(), IFNAME, "IgnoreUnknown=1;MAC=zz", json!({})).unwrap_err();
    assert_eq!(e.code(), Some(7), "{e}");
    lan.assert_clean(&c, &[]);
}

#[test]
fn kernel_and_ipam_failures_roll_back() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();

    // The kernel refuses a MAC another macvlan of the master has
    // (EADDRINUSE; a multicast one is refused before, as a config error):
    // no link, no lease.
    let list = lan.list("1.1.0", json!({"mac": "0a:00:5e:00:00:01"}));
    let holder = ctr();
    lan.add(&list, "c0", &holder).unwrap();
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("Address already in use"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);
    lan.del(&list, "c0", &holder);
    lan.assert_clean(&c, &[]);

    // IPAM fails (its subnet is exhausted): the link is gone again.
    let full = json!({"type": "host-local", "dataDir": lan.data.path(),
                      "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "rangeEnd": "10.77.0.10"}]]});
    let list = lan.list("1.1.0", json!({"ipam": full}));
    let c0 = ctr();
    lan.add(&list, "c0", &c0).unwrap();
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("host-local"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);
    assert_eq!(lan.leases(NET), ["10.77.0.10"], "c0's lease only");
    lan.del(&list, "c0", &c0);
    lan.assert_clean(&c, &[]);

    // IPAM binary missing.
    let list = lan.list("1.1.0", json!({"ipam": {"type": "no-such-ipam"}}));
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("no-such-ipam"), "{e}");
    lan.assert_clean(&c, &[]);

    // A configured route IPAM hands out that cannot be installed: link and lease go.
    let mut ipam = lan.ipam();
    ipam["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]);
    let list = lan.list("1.1.0", json!({"ipam": ipam}));
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("route"), "{e}");
    lan.assert_clean(&c, &[]);
}

#[test]
fn existing_ifname_in_the_container_is_refused_and_kept() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    c.ip(&["link", "add", IFNAME, "type", "veth", "peer", "name", "x0"]).unwrap();
    let list = lan.list("1.1.0", json!({}));
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("already has an interface"), "{e}");
    assert_eq!(eth0(&c)["linkinfo"]["info_kind"], "veth", "the existing eth0 is untouched");
    lan.assert_clean(&c, &["eth0", "x0"]);
}

#[test]
fn missing_netns_is_refused_on_add() {
    require_root!();
    let lan = Lan::new();
    let list = lan.list("1.1.0", json!({}));
    let e = lan.rt.add(&list, "c1", "/run/netns/cni-t-does-not-exist", IFNAME, "", json!({})).unwrap_err();
    assert_eq!(e.code(), Some(8), "{e}");
    assert!(lan.leases(NET).is_empty());
    assert_eq!(link_names(&lan.host), ["lo", "m0"]);
}

// ----- DEL --------------------------------------------------------------------------------

#[test]
fn del_without_netns_releases_the_lease() {
    require_root!();
    let lan = Lan::new();
    let list = lan.list("1.1.0", json!({}));
    let path = {
        let c = ctr();
        lan.add(&list, "c1", &c).unwrap();
        c.path_str()
    }; // the container netns is gone (and its macvlan with it)
    assert_eq!(lan.leases(NET).len(), 1);
    lan.rt.del(&list, "c1", &path, IFNAME, "", json!({})).unwrap();
    assert!(lan.leases(NET).is_empty());
    lan.rt.del(&list, "c1", &path, IFNAME, "", json!({})).unwrap();

    // An empty CNI_NETNS too.
    let c = ctr();
    lan.add(&list, "c2", &c).unwrap();
    lan.rt.del(&list, "c2", "", IFNAME, "", json!({})).unwrap();
    assert!(lan.leases(NET).is_empty());
    lan.rt.del(&list, "c2", "", IFNAME, "", json!({})).unwrap();
}

#[test]
fn del_works_after_the_master_is_gone() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &c).unwrap();
    lan.host.ip(&["link", "del", "m0"]).unwrap(); // takes the macvlan along
    lan.del(&list, "c1", &c);
    assert!(lan.leases(NET).is_empty());
    assert_eq!(link_names(&c), ["lo"]);
}

// ----- CHECK, STATUS, GC ---------------------------------------------------------------------

#[test]
fn check_passes_then_fails_after_tampering() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &c).unwrap();
    let check = |l: &NetConfList| lan.rt.check(l, "c1", c.path(), IFNAME, "", json!({}));
    check(&list).unwrap();

    // A different mode in the config than on the link.
    let e = check(&lan.list("1.1.0", json!({"mode": "private"}))).unwrap_err();
    assert!(e.msg().contains("mode"), "{e}");
    // A different master.
    lan.host.ip(&["link", "add", "m1", "type", "veth", "peer", "name", "m1p"]).unwrap();
    let e = check(&lan.list("1.1.0", json!({"master": "m1"}))).unwrap_err();
    assert!(e.msg().contains("master"), "{e}");
    lan.host.ip(&["link", "del", "m1"]).unwrap();

    // The route removed.
    c.ip(&["route", "del", "default"]).unwrap();
    let e = check(&list).unwrap_err();
    assert!(e.msg().contains("route"), "{e}");
    c.ip(&["route", "add", "default", "via", LAN_IP, "dev", IFNAME]).unwrap();
    check(&list).unwrap();

    // The address removed.
    c.ip(&["addr", "del", "10.77.0.10/24", "dev", IFNAME]).unwrap();
    let e = check(&list).unwrap_err();
    assert!(e.msg().contains("10.77.0.10"), "{e}");

    // The MAC changed.
    c.ip(&["addr", "add", "10.77.0.10/24", "dev", IFNAME]).unwrap();
    c.ip(&["route", "replace", "default", "via", LAN_IP, "dev", IFNAME]).unwrap();
    check(&list).unwrap();
    c.ip(&["link", "set", IFNAME, "address", "02:bb:00:00:00:01"]).unwrap();
    let e = check(&list).unwrap_err();
    assert!(e.msg().contains("MAC"), "{e}");

    // The link gone.
    c.ip(&["link", "del", IFNAME]).unwrap();
    let e = check(&list).unwrap_err();
    assert!(e.msg().contains("missing"), "{e}");
    lan.del(&list, "c1", &c);
    lan.assert_clean(&c, &[]);
}

#[test]
fn check_fails_when_ipam_lost_the_lease() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &c).unwrap();
    std::fs::remove_file(lan.data.join(NET).join("10.77.0.10")).unwrap();
    let e = lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap_err();
    assert!(e.msg().contains("host-local"), "IPAM CHECK is forwarded: {e}");
    lan.del(&list, "c1", &c);
}

#[test]
fn status_reports_a_missing_master_as_50() {
    require_root!();
    let lan = Lan::new();
    let list = lan.list("1.1.0", json!({}));
    lan.rt.status(&list).unwrap();
    lan.host.ip(&["link", "del", "m0"]).unwrap();
    let e = lan.rt.status(&list).unwrap_err();
    assert_eq!(e.code(), Some(50), "{e}");
    assert!(e.msg().contains("m0"), "{e}");
    // IPAM STATUS is forwarded: an IPAM plugin that cannot run fails STATUS.
    let lan = Lan::new();
    let list = lan.list("1.1.0", json!({"ipam": {"type": "no-such-ipam"}}));
    let e = lan.rt.status(&list).unwrap_err();
    assert!(e.msg().contains("no-such-ipam"), "{e}");
}

#[test]
fn gc_is_forwarded_to_ipam() {
    require_root!();
    let lan = Lan::new();
    let (a, b) = (ctr(), ctr());
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "a", &a).unwrap();
    lan.add(&list, "b", &b).unwrap();
    assert_eq!(lan.leases(NET).len(), 2);
    // A runtime that knows nothing of these attachments: only IPAM's GC can
    // free b's lease.
    let cache = TempDir::new().unwrap();
    let fresh = Runtime::new(vec![target_bin_dir()], Some(lan.host.path().to_path_buf()), cache.path());
    fresh.gc(&list, &[("a", IFNAME)]).unwrap();
    assert_eq!(lan.leases(NET), ["10.77.0.10"]);
    lan.del(&list, "a", &a);
    lan.del(&list, "b", &b);
    assert!(lan.leases(NET).is_empty());
}

// ----- what real clients send ----------------------------------------------------------------

/// A shipped conflist with its master swapped for `m0` and (tests never
/// write /var/lib/cni) a temporary IPAM data dir.
fn shipped(lan: &Lan, path: &str, master: &str) -> NetConfList {
    let text = std::fs::read_to_string(format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let mut v: Value = serde_json::from_str(&text.replace(&format!("\"{master}\""), "\"m0\"")).unwrap();
    v["plugins"][0]["ipam"]["dataDir"] = json!(lan.data.path());
    conflist_value(&v)
}

#[test]
fn podman_mv_conflist_works_with_its_ips_capability() {
    require_root!();
    let lan = Lan::new();
    lan.peer.ip(&["addr", "add", "10.231.9.1/24", "dev", "lan0"]).unwrap();
    let list = shipped(&lan, "conf-examples/podman/macvlan.conflist", "eth0");
    assert_eq!(list.cni_version, "0.4.0");
    assert_eq!(list.plugins[0]["capabilities"]["ips"], true);
    assert!(list.plugins[0].get("mode").is_none());

    // Podman's CNI_ARGS, no static IP.
    let c1 = ctr();
    let args = "IgnoreUnknown=1;K8S_POD_NAME=m1";
    let r1 = lan.rt.add(&list, "m1", c1.path(), IFNAME, args, json!({})).unwrap();
    assert_eq!(first_ip(&r1), "10.231.9.2");
    assert_eq!(r1.interfaces[0].sandbox, c1.path_str());
    assert_eq!(eth0(&c1)["linkinfo"]["info_data"]["mode"], "bridge", "no mode means bridge");
    assert!(ping(&c1, "10.231.9.1"), "the gateway on the LAN");

    // Two static IPs arrive as runtimeConfig.ips; a static MAC as CNI_ARGS MAC.
    let c2 = ctr();
    let args = "IgnoreUnknown=1;K8S_POD_NAME=m2;MAC=02:cc:00:00:00:02";
    let r2 = lan.rt.add(&list, "m2", c2.path(), IFNAME, args, json!({"ips": ["10.231.9.77/24"]})).unwrap();
    assert_eq!(first_ip(&r2), "10.231.9.77");
    assert_eq!(r2.interfaces[0].mac, "02:cc:00:00:00:02");
    assert!(ping(&c1, "10.231.9.77") && ping(&lan.peer, "10.231.9.77"));
    lan.rt.check(&list, "m2", c2.path(), IFNAME, args, json!({"ips": ["10.231.9.77/24"]})).unwrap();

    lan.rt.del(&list, "m1", c1.path(), IFNAME, "", json!({})).unwrap();
    lan.rt.del(&list, "m2", c2.path(), IFNAME, "", json!({})).unwrap();
    assert!(lan.leases("mv").is_empty());
    assert_eq!(link_names(&c1), ["lo"]);
    assert_eq!(link_names(&c2), ["lo"]);
}

#[test]
fn cnitool_example_conflist_works() {
    require_root!();
    let lan = Lan::new();
    let text = std::fs::read_to_string(format!(
        "{}/../../conf-examples/cnitool/macvlan.conflist",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    let master = v["plugins"][0]["master"].as_str().unwrap().to_string();
    let list = shipped(&lan, "conf-examples/cnitool/macvlan.conflist", &master);
    let subnet = list.plugins[0]["ipam"]["ranges"][0][0]["subnet"].as_str().unwrap().to_string();
    let c = ctr();
    let res = lan.rt.add(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    let net: common::ipnet::IpNet = subnet.parse().unwrap();
    assert!(net.contains(&res.ips[0].address.addr), "{subnet}");
    lan.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    lan.rt.del(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!(link_names(&c), ["lo"]);
}
