//! Root tests of the tap plugin, driven as libcni drives it.
//!
//! Each test builds its own world: a "host" netns the plugin runs in and
//! container netns; IPAM is our host-local from the target dir with a
//! temporary data dir. A tap is proven usable by a process that attaches to
//! it inside the container (as a VM would) with nothing but the user and
//! group IDs the config names, writes an ARP request for the tap's address
//! into it and reads the kernel's reply.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::process::Command;

use serde_json::{json, Value};
use test_harness::*;

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        if !std::path::Path::new("/dev/net/tun").exists() {
            eprintln!("skipped: this machine has no /dev/net/tun (run it in the VM: scripts/vm-test)");
            return;
        }
    };
}

const NET: &str = "vmnet";
const IFNAME: &str = "eth0";
/// IDs no account has here, so `ip` prints them as numbers.
const UID: u32 = 54321;
const GID: u32 = 54322;

/// The host, a runtime and an IPAM data dir.
struct World {
    host: HostNs,
    rt: Runtime,
    _cache: TempDir,
    data: TempDir,
}

impl World {
    fn new() -> World {
        let host = HostNs::with_lo().unwrap();
        let (rt, cache) = runtime_in(&host);
        World { host, rt, _cache: cache, data: TempDir::new().unwrap() }
    }

    /// host-local on 10.77.0.0/24 from .10, a route to 10.99.0.0/16 via .1.
    fn ipam(&self) -> Value {
        json!({"type": "host-local", "dataDir": self.data.path(),
               "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "gateway": "10.77.0.1"}]],
               "routes": [{"dst": "10.99.0.0/16"}]})
    }

    /// A one-plugin list `{"type": "tap", "ipam": <ours>}` overlaid with
    /// `extra` (a null value removes the key).
    fn list(&self, ver: &str, extra: Value) -> NetConfList {
        let mut p = json!({"type": "tap", "ipam": self.ipam()});
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
        self.rt.add(list, id, ctr.path(), IFNAME, "", json!({}))
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &TestNs) {
        self.rt.del(list, id, ctr.path(), IFNAME, "", json!({})).unwrap();
    }

    fn check(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<(), InvokeError> {
        self.rt.check(list, id, ctr.path(), IFNAME, "", json!({}))
    }

    /// Lease files (named by address).
    fn leases(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join(NET)) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// Nothing left: only `lo` on the host, `lo` plus `keep` in the container, no lease.
    fn assert_clean(&self, ctr: &TestNs, keep: &[&str]) {
        assert_eq!(link_names(&self.host), ["lo"], "stray link on the host");
        let mut want: Vec<String> = ["lo"].iter().chain(keep).map(|s| s.to_string()).collect();
        let mut have = link_names(ctr);
        want.sort();
        have.sort();
        assert_eq!(have, want, "stray link in the container");
        assert!(self.leases().is_empty(), "stray lease: {:?}", self.leases());
    }
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().unwrap()
}

/// The container's `eth0` as `ip -d -j link` shows it.
fn eth0(ctr: &TestNs) -> Value {
    link(ctr, IFNAME).expect("eth0 exists")
}

/// A JSON number or string as text (`ip` prints a user as a name or a number).
fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}

const ATTACH_PY: &str = r#"
import fcntl, os, select, socket, struct, sys, time
name, mq, uid, gid, ip, peer_ip = sys.argv[1:7]
fd = os.open("/dev/net/tun", os.O_RDWR)
os.setgroups([]); os.setgid(int(gid)); os.setuid(int(uid))  # no capability is left
flags = 0x0002 | 0x1000 | (0x0100 if mq == "1" else 0)  # IFF_TAP | IFF_NO_PI | IFF_MULTI_QUEUE
try:
    fcntl.ioctl(fd, 0x400454ca, struct.pack("16sH22x", name.encode(), flags))  # TUNSETIFF
except OSError as e:
    print("attach failed", e.errno, flush=True)
    sys.exit(0)
peer_mac = bytes.fromhex("02aa00000001")
arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, peer_mac, socket.inet_aton(peer_ip),
                  bytes(6), socket.inet_aton(ip))
request = b"\xff" * 6 + peer_mac + b"\x08\x06" + arp
deadline = time.time() + 10
while time.time() < deadline:
    os.write(fd, request)
    ready = select.select([fd], [], [], 0.5)[0]
    while ready:
        f = os.read(fd, 2048)
        if f[12:14] == b"\x08\x06" and f[20:22] == b"\x00\x02" and f[28:32] == socket.inet_aton(ip):
            print("reply from", f[22:28].hex(":"), flush=True)
            sys.exit(0)
        ready = select.select([fd], [], [], 0)[0]
print("no reply", flush=True)
"#;

/// Attach to the tap `name` in `ctr` as `uid`/`gid` (no capabilities),
/// send an ARP request for `ip` from 10.77.0.250 and say what came back:
/// "reply from <mac>", "no reply" or "attach failed <errno>".
fn attach_and_arp(ctr: &TestNs, name: &str, multi_queue: bool, uid: u32, gid: u32, ip: &str) -> String {
    let mq = if multi_queue { "1" } else { "0" };
    let (uid, gid) = (uid.to_string(), gid.to_string());
    let args = ["python3", "-c", ATTACH_PY, name, mq, &uid, &gid, ip, "10.77.0.250"];
    let out = Command::new("ip").args(["netns", "exec", ctr.name()]).args(args).output().expect("python3");
    assert!(out.status.success(), "attacher: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

// ----- ADD: the device, its use, the result ---------------------------------------------

#[test]
fn add_makes_a_tap_its_owner_attaches_to_and_del_removes_it() {
    require_root!();
    let w = World::new();
    let c = ctr();
    let list = w.list(
        "1.1.0",
        json!({"multiQueue": true, "owner": UID, "group": GID, "mtu": 1400, "mac": "02:77:00:00:00:10",
               "dns": {"nameservers": ["10.77.0.53"]}}),
    );
    let res = w.add(&list, "c1", &c).unwrap();

    // What `ip -d link` shows: a persistent multi-queue tap owned by UID:GID, as configured.
    let l = eth0(&c);
    assert_eq!(l["linkinfo"]["info_kind"], "tun", "{l}");
    let d = &l["linkinfo"]["info_data"];
    assert_eq!(
        (d["type"].as_str(), d["multi_queue"].as_bool(), d["persist"].as_bool()),
        (Some("tap"), Some(true), Some(true)),
        "{l}"
    );
    assert_eq!((d["pi"].as_bool(), d["vnet_hdr"].as_bool()), (Some(false), Some(false)), "{l}");
    assert_eq!((text(&d["user"]), text(&d["group"])), (UID.to_string(), GID.to_string()), "{l}");
    assert_eq!((l["mtu"].as_u64(), l["address"].as_str()), (Some(1400), Some("02:77:00:00:00:10")));
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_eq!(
        addrs(&c, IFNAME).iter().filter(|a| a.starts_with("10.")).collect::<Vec<_>>(),
        ["10.77.0.10/24"]
    );
    assert!(has_route(&c, "10.99.0.0/16"));
    assert_eq!(link_names(&w.host), ["lo"], "nothing on the host");

    // The result: the one interface in the sandbox, every IP on it, the config's DNS.
    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!(
        (i.name.as_str(), i.mac.as_str(), i.sandbox.as_str()),
        (IFNAME, "02:77:00:00:00:10", c.path_str().as_str())
    );
    assert_eq!((res.ips.len(), res.ips[0].interface, res.routes.len()), (1, Some(0), 1));
    assert_eq!(res.dns.nameservers, ["10.77.0.53"]);

    // Usable: another user may not attach; the owner may, and the tap answers ARP for its address.
    let other = attach_and_arp(&c, IFNAME, true, UID + 77, GID + 77, "10.77.0.10");
    assert_eq!(other, format!("attach failed {}", libc::EPERM));
    let owner = attach_and_arp(&c, IFNAME, true, UID, GID, "10.77.0.10");
    assert_eq!(owner, "reply from 02:77:00:00:00:10");

    w.check(&list, "c1", &c).unwrap();
    assert_eq!(w.leases(), ["10.77.0.10"]);
    w.del(&list, "c1", &c);
    w.assert_clean(&c, &[]);
    w.del(&list, "c1", &c);
}

#[test]
fn without_owner_or_group_any_process_may_attach() {
    require_root!();
    let w = World::new();
    let c = ctr();
    let list = w.list("1.1.0", json!({}));
    let res = w.add(&list, "c1", &c).unwrap();
    let d = eth0(&c)["linkinfo"]["info_data"].clone();
    assert_eq!((d["multi_queue"].as_bool(), d.get("user"), d.get("group")), (Some(false), None, None), "{d}");
    // The kernel checks owner and group only when set: any process that can open /dev/net/tun may attach.
    let mac = res.interfaces[0].mac.clone();
    assert_eq!(attach_and_arp(&c, IFNAME, false, UID, GID, "10.77.0.10"), format!("reply from {mac}"));
    // A single-queue tap refuses a multi-queue attach.
    assert_eq!(
        attach_and_arp(&c, IFNAME, true, 0, 0, "10.77.0.10"),
        format!("attach failed {}", libc::EINVAL)
    );
    w.del(&list, "c1", &c);
    w.assert_clean(&c, &[]);
}

#[test]
fn results_in_every_version() {
    require_root!();
    let w = World::new();
    for ver in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let c = ctr();
        let id = format!("c{}", ver.replace('.', ""));
        let list = w.list(ver, json!({}));
        let rtc = RuntimeConf::new(&id, c.path(), IFNAME);
        let req = w.rt.request(&list, 0, None, &rtc).unwrap();
        let out = w.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        // (host-local hands out addresses round robin.)
        let ip = addrs(&c, IFNAME).into_iter().find(|a| a.starts_with("10.77.0.")).expect("an address");
        if ver.starts_with("0.1") || ver.starts_with("0.2") {
            assert_eq!(v["ip4"]["ip"], ip, "{ver}: {v}");
            assert!(v.get("interfaces").is_none(), "{ver}: {v}");
        } else {
            assert_eq!(v["interfaces"][0]["name"], IFNAME, "{ver}: {v}");
            assert_eq!(v["interfaces"][0]["sandbox"], c.path_str());
            assert_eq!(v["ips"][0]["interface"], 0);
            assert_eq!(v["ips"][0]["address"], ip);
            assert_eq!(v["ips"][0].get("version").is_some(), ver.starts_with("0."), "{ver}: {v}");
        }
        assert!(link_exists(&c, IFNAME));
        w.rt.del_rt(&list, &rtc).unwrap();
        w.assert_clean(&c, &[]);
    }
}

#[test]
fn on_a_bridge_in_the_container_without_ipam() {
    require_root!();
    let w = World::new();
    let c = ctr();
    c.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
    c.ip(&["link", "set", "br0", "up"]).unwrap();
    let list = w.list("1.1.0", json!({"bridge": "br0", "ipam": null}));
    let res = w.add(&list, "c1", &c).unwrap();
    assert!(res.ips.is_empty() && res.routes.is_empty());
    let l = eth0(&c);
    assert_eq!(l["master"], "br0", "{l}");
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert!(addrs(&c, IFNAME).iter().all(|a| a.starts_with("fe80:")));
    w.check(&list, "c1", &c).unwrap();

    // Taken off the bridge: CHECK says so.
    c.ip(&["link", "set", IFNAME, "nomaster"]).unwrap();
    let e = w.check(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("not a port of bridge \"br0\""), "{e}");
    w.del(&list, "c1", &c);
    w.assert_clean(&c, &["br0"]);

    // A bridge that is not there, or is no bridge: code 7, nothing made.
    for (bridge, msg) in [("nope0", "no such interface"), ("lo", "is not a bridge")] {
        let e = w.add(&w.list("1.1.0", json!({"bridge": bridge})), "c2", &c).unwrap_err();
        assert_eq!(e.code(), Some(7), "{e}");
        assert!(e.msg().contains(msg), "{e}");
        w.assert_clean(&c, &["br0"]);
    }
}

#[test]
fn dual_stack_addresses_are_usable_at_once() {
    require_root!();
    let w = World::new();
    let c = ctr();
    let ipam = json!({"type": "host-local", "dataDir": w.data.path(),
        "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10"}], [{"subnet": "fd77::/64", "rangeStart": "fd77::a"}]],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]});
    let list = w.list("1.1.0", json!({"ipam": ipam}));
    let res = w.add(&list, "c1", &c).unwrap();
    let got: Vec<String> = res.ips.iter().map(|ip| ip.address.to_string()).collect();
    assert_eq!(got, ["10.77.0.10/24", "fd77::a/64"]);
    // Nothing has attached (no carrier), yet the address is not tentative and the routes are there.
    let v6 = c.ip_json(&["-6", "addr", "show", "dev", IFNAME, "scope", "global"]).unwrap();
    let info = &v6[0]["addr_info"][0];
    assert_eq!(info["local"], "fd77::a", "{v6}");
    assert!(info.get("tentative").is_none(), "{v6}");
    assert!(has_route(&c, "default"));
    assert!(c.ip(&["-6", "route", "show", "default"]).unwrap().contains("fd77::1"));
    w.check(&list, "c1", &c).unwrap();
    w.del(&list, "c1", &c);
    w.assert_clean(&c, &[]);
}

// ----- failures leave nothing ----------------------------------------------------------------

#[test]
fn failed_adds_leave_nothing() {
    require_root!();
    let w = World::new();
    let c = ctr();

    // IPAM fails after the tap exists (its range is used up): the tap goes again.
    let full = json!({"type": "host-local", "dataDir": w.data.path(),
                      "ranges": [[{"subnet": "10.77.0.0/24", "rangeStart": "10.77.0.10", "rangeEnd": "10.77.0.10"}]]});
    let list = w.list("1.1.0", json!({"ipam": full, "multiQueue": true, "owner": UID}));
    let c0 = ctr();
    w.add(&list, "c0", &c0).unwrap();
    let e = w.add(&list, "c1", &c).unwrap_err();
    assert!(e.msg().contains("host-local"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);
    assert_eq!(w.leases(), ["10.77.0.10"], "c0's lease only");
    w.del(&list, "c0", &c0);
    w.assert_clean(&c, &[]);

    // A route IPAM hands out that cannot be installed: tap and lease go.
    let mut ipam = w.ipam();
    ipam["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]);
    let e = w.add(&w.list("1.1.0", json!({"ipam": ipam})), "c1", &c).unwrap_err();
    assert!(e.msg().contains("route"), "{e}");
    w.assert_clean(&c, &[]);

    // The name is taken: the existing link is left alone.
    c.ip(&["link", "add", IFNAME, "type", "veth", "peer", "name", "x0"]).unwrap();
    let e = w.add(&w.list("1.1.0", json!({})), "c1", &c).unwrap_err();
    assert!(e.msg().contains("already has an interface named \"eth0\""), "{e}");
    assert_eq!(eth0(&c)["linkinfo"]["info_kind"], "veth");
    w.assert_clean(&c, &["eth0", "x0"]);
}

#[test]
fn config_errors_are_code_7_and_leave_nothing() {
    require_root!();
    let w = World::new();
    let c = ctr();
    let mut cases = vec![
        (json!({"mtu": 67}), "invalid MTU 67"),
        (json!({"mtu": 65522}), "invalid MTU 65522"),
        (json!({"owner": -1}), "\"owner\""),
        (json!({"group": 4294967295u64}), "invalid group 4294967295"),
        (json!({"mac": "01:00:5e:00:00:01"}), "multicast"),
        (json!({"bridge": "a/b"}), "invalid bridge name"),
        (json!({"multiQueue": "yes"}), "\"multiQueue\""),
    ];
    if !std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        // The reference fails here too (it cannot set the exec label).
        cases.push((json!({"selinuxContext": "system_u:system_r:svirt_t:s0"}), "needs SELinux"));
    }
    for (extra, msg) in cases {
        let e = w.add(&w.list("1.1.0", extra.clone()), "c1", &c).unwrap_err();
        assert_eq!(e.code(), Some(7), "{extra}: {e}");
        assert!(e.msg().contains(msg), "{extra}: {e}");
        w.assert_clean(&c, &[]);
    }
    let e =
        w.rt.add(&w.list("1.1.0", json!({})), "c1", c.path(), IFNAME, "IgnoreUnknown=1;MAC=zz", json!({}))
            .unwrap_err();
    assert_eq!(e.code(), Some(7), "{e}");
    w.assert_clean(&c, &[]);
    let e =
        w.rt.add(&w.list("1.1.0", json!({})), "c1", "/run/netns/cni-t-does-not-exist", IFNAME, "", json!({}))
            .unwrap_err();
    assert_eq!(e.code(), Some(8), "{e}");
    w.assert_clean(&c, &[]);
}

// ----- MAC ----------------------------------------------------------------------------------

#[test]
fn mac_from_runtime_config_cni_args_and_config() {
    require_root!();
    let w = World::new();
    let c = ctr();
    let caps = w.list("1.1.0", json!({"capabilities": {"mac": true}, "mac": "02:aa:00:00:00:03"}));
    let r = w.rt.add(
        &caps,
        "c1",
        c.path(),
        IFNAME,
        "IgnoreUnknown=1;MAC=02:aa:00:00:00:02",
        json!({"mac": "02:aa:00:00:00:01"}),
    );
    assert_eq!(r.unwrap().interfaces[0].mac, "02:aa:00:00:00:01", "runtimeConfig first");
    w.rt.del(&caps, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    let plain = w.list("1.1.0", json!({"mac": "02:aa:00:00:00:03"}));
    let r = w.rt.add(&plain, "c2", c.path(), IFNAME, "IgnoreUnknown=1;MAC=02:aa:00:00:00:02", json!({}));
    assert_eq!(r.unwrap().interfaces[0].mac, "02:aa:00:00:00:02", "then CNI_ARGS");
    assert_eq!(eth0(&c)["address"], "02:aa:00:00:00:02");
    w.rt.del(&plain, "c2", c.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!(w.add(&plain, "c3", &c).unwrap().interfaces[0].mac, "02:aa:00:00:00:03", "then the config");
    w.del(&plain, "c3", &c);
    w.assert_clean(&c, &[]);
}

// ----- DEL, CHECK, STATUS, GC ------------------------------------------------------------------

#[test]
fn del_without_netns_releases_the_lease() {
    require_root!();
    let w = World::new();
    let list = w.list("1.1.0", json!({}));
    let path = {
        let c = ctr();
        w.add(&list, "c1", &c).unwrap();
        c.path_str()
    }; // the container netns is gone, and its tap with it
    assert_eq!(w.leases().len(), 1);
    w.rt.del(&list, "c1", &path, IFNAME, "", json!({})).unwrap();
    assert!(w.leases().is_empty());
    w.rt.del(&list, "c1", &path, IFNAME, "", json!({})).unwrap();

    let c = ctr();
    w.add(&list, "c2", &c).unwrap();
    w.rt.del(&list, "c2", "", IFNAME, "", json!({})).unwrap();
    assert!(w.leases().is_empty());
}

#[test]
fn check_passes_then_notices_drift() {
    require_root!();
    let w = World::new();
    let c = ctr();
    let list = w.list("1.1.0", json!({"mtu": 1400, "multiQueue": true, "owner": UID}));
    w.add(&list, "c1", &c).unwrap();
    w.check(&list, "c1", &c).unwrap();
    let fails = |l: &NetConfList, msg: &str| {
        let e = w.check(l, "c1", &c).unwrap_err();
        assert!(e.msg().contains(msg), "{msg}: {e}");
    };
    fails(&w.list("1.1.0", json!({"mtu": 1400, "multiQueue": false, "owner": UID})), "multi_queue");
    fails(&w.list("1.1.0", json!({"mtu": 1400, "multiQueue": true, "owner": UID + 1})), "owner");

    c.ip(&["link", "set", IFNAME, "mtu", "1500"]).unwrap();
    fails(&list, "has MTU 1500, the config says 1400");
    c.ip(&["link", "set", IFNAME, "mtu", "1400"]).unwrap();
    c.ip(&["route", "del", "10.99.0.0/16"]).unwrap();
    fails(&list, "route to 10.99.0.0/16");
    c.ip(&["route", "add", "10.99.0.0/16", "via", "10.77.0.1", "dev", IFNAME]).unwrap();
    w.check(&list, "c1", &c).unwrap();
    c.ip(&["addr", "del", "10.77.0.10/24", "dev", IFNAME]).unwrap();
    fails(&list, "lacks its address 10.77.0.10/24");
    c.ip(&["link", "del", IFNAME]).unwrap();
    fails(&list, "missing");
    // Another kind of link under the name is not the tap.
    c.ip(&["link", "add", IFNAME, "type", "veth", "peer", "name", "x0"]).unwrap();
    c.ip(&["addr", "add", "10.77.0.10/24", "dev", IFNAME]).unwrap();
    c.ip(&["link", "set", IFNAME, "up"]).unwrap();
    c.ip(&["route", "add", "10.99.0.0/16", "via", "10.77.0.1", "dev", IFNAME]).unwrap();
    fails(&list, "eth0 is not a tap");
    w.del(&list, "c1", &c);
    assert!(w.leases().is_empty());
}

#[test]
fn status_and_gc_are_forwarded_to_ipam() {
    require_root!();
    let w = World::new();
    let list = w.list("1.1.0", json!({}));
    w.rt.status(&list).unwrap();
    let e = w.rt.status(&w.list("1.1.0", json!({"ipam": {"type": "no-such-ipam"}}))).unwrap_err();
    assert!(e.msg().contains("no-such-ipam"), "{e}");

    let (a, b) = (ctr(), ctr());
    w.add(&list, "a", &a).unwrap();
    w.add(&list, "b", &b).unwrap();
    let cache = TempDir::new().unwrap();
    let fresh = Runtime::new(vec![target_bin_dir()], Some(w.host.path().to_path_buf()), cache.path());
    fresh.gc(&list, &[("a", IFNAME)]).unwrap();
    assert_eq!(w.leases(), ["10.77.0.10"], "b's lease is freed");
    w.del(&list, "a", &a);
    w.del(&list, "b", &b);
    assert!(w.leases().is_empty());
}

#[test]
fn the_cnitool_example_works() {
    require_root!();
    let w = World::new();
    let example = std::fs::read_to_string(format!(
        "{}/../../conf-examples/cnitool/tap.conflist",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let mut v: Value = serde_json::from_str(&example).unwrap();
    v["plugins"][0]["ipam"]["dataDir"] = json!(w.data.path());
    // IDs `ip` shows as numbers (107 may have a name here).
    assert_eq!(
        (v["plugins"][0]["owner"].as_u64(), v["plugins"][0]["group"].as_u64()),
        (Some(107), Some(107))
    );
    (v["plugins"][0]["owner"], v["plugins"][0]["group"]) = (json!(UID), json!(GID));
    let list = conflist_value(&v);
    let c = ctr();
    let res = w.rt.add(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!(res.ips[0].address.to_string(), "10.91.0.2/24");
    let d = eth0(&c)["linkinfo"]["info_data"].clone();
    assert_eq!(
        (d["multi_queue"].as_bool(), text(&d["user"]), text(&d["group"])),
        (Some(true), UID.to_string(), GID.to_string()),
        "{d}"
    );
    w.rt.check(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    w.rt.del(&list, "c1", c.path(), IFNAME, "", json!({})).unwrap();
    assert_eq!(link_names(&c), ["lo"]);
}
