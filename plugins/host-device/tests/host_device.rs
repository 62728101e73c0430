//! Root tests of the host-device plugin, driven as libcni drives it.
//!
//! Each test builds its own world: a "host" netns the plugin runs in, whose
//! device `hd0` (MTU 1400) is one end of a veth (this kernel has no `dummy`,
//! and a veth is a device like any other to the plugin), the other end `lan0`
//! in a "LAN peer" netns at 10.66.0.1/24; and container netns. IPAM is our
//! host-local from the target dir with a temporary data dir. The plugin runs
//! in a mount namespace of its own with sysfs mounted for the host netns (as
//! `ip netns exec` does), so that /sys shows the host netns' devices as it
//! does on a real host.
//!
//! The `physical_*` tests need real PCI network devices: the VM of
//! `scripts/vm-test` has two virtio NICs on one emulated hub for them, and
//! names their MACs in `CNI_TEST_VM_NICS`; elsewhere they skip, saying so.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

const NET: &str = "hostnet";
const LAN_IP: &str = "10.66.0.1";
const IFNAME: &str = "eth0";
const MTU: u64 = 1400;

/// A plugin directory whose `host-device` runs ours in a mount namespace of
/// its own, with sysfs mounted for its netns (the runtime's host netns).
fn own_sysfs_plugin_dir() -> TempDir {
    let dir = TempDir::new().unwrap();
    let bin = target_bin_dir().join("host-device");
    let script = format!(
        "#!/bin/sh\nexec unshare --mount --propagation private sh -c 'mount -t sysfs sysfs /sys && exec \"$0\"' {}\n",
        bin.display()
    );
    let path = dir.join("host-device");
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// The host with its device, the LAN peer, a runtime and an IPAM data dir.
struct Lan {
    host: HostNs,
    peer: TestNs,
    rt: Runtime,
    _cache: TempDir,
    _plugins: TempDir,
    data: TempDir,
}

impl Lan {
    fn new() -> Lan {
        let host = HostNs::with_lo().unwrap();
        let peer = TestNs::with_lo().unwrap();
        veth(&host, "hd0", &peer, "lan0").unwrap();
        host.ip(&["link", "set", "hd0", "mtu", &MTU.to_string()]).unwrap();
        peer.ip(&["link", "set", "lan0", "mtu", &MTU.to_string()]).unwrap();
        peer.ip(&["addr", "add", "10.66.0.1/24", "dev", "lan0"]).unwrap();
        Lan::around(host, peer)
    }

    fn around(host: HostNs, peer: TestNs) -> Lan {
        let plugins = own_sysfs_plugin_dir();
        let cache = TempDir::new().unwrap();
        let rt = Runtime::new(
            vec![plugins.path().into(), target_bin_dir()],
            Some(host.path().into()),
            cache.path(),
        );
        Lan { host, peer, rt, _cache: cache, _plugins: plugins, data: TempDir::new().unwrap() }
    }

    /// host-local on 10.66.0.0/24 from .10, a route via the LAN peer.
    fn ipam(&self) -> Value {
        json!({"type": "host-local", "dataDir": self.data.path(),
               "ranges": [[{"subnet": "10.66.0.0/24", "rangeStart": "10.66.0.10", "gateway": LAN_IP}]],
               "routes": [{"dst": "10.99.0.0/16"}]})
    }

    /// A one-plugin list: `{"type": "host-device", "device": "hd0", "ipam": <ours>}`
    /// overlaid with `extra` (a null value removes the key).
    fn list(&self, ver: &str, extra: Value) -> NetConfList {
        let mut p = json!({"type": "host-device", "device": "hd0", "ipam": self.ipam()});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                p.as_object_mut().unwrap().remove(k);
            } else {
                p[k] = v.clone();
            }
        }
        conflist_value(&json!({"cniVersion": ver, "name": NET, "plugins": [p]}))
    }

    fn add(&self, list: &NetConfList, id: &str, ctr: &str) -> Result<CniResult, InvokeError> {
        self.rt.add(list, id, ctr, IFNAME, "IgnoreUnknown=1", json!({}))
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &str) -> Result<(), InvokeError> {
        self.rt.del(list, id, ctr, IFNAME, "IgnoreUnknown=1", json!({}))
    }

    /// Lease files (named by address) of the network.
    fn leases(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join(NET)) else { return Vec::new() };
        dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.parse::<IpAddr>().is_ok())
            .collect()
    }

    /// `hd0` is home: on the host under its name, its MAC and MTU, no alias,
    /// no lease left; `up` as given.
    fn assert_home(&self, mac: &str, up: bool) {
        let l = link(&self.host, "hd0").expect("hd0 is back on the host");
        assert_eq!((l["address"].as_str(), l["mtu"].as_u64()), (Some(mac), Some(MTU)), "{l}");
        assert!(l.get("ifalias").is_none(), "no alias left: {l}");
        assert_eq!(is_up(&l), up, "{l}");
        assert!(self.leases().is_empty(), "stray lease: {:?}", self.leases());
    }
}

fn is_up(link: &Value) -> bool {
    link["flags"].as_array().unwrap().iter().any(|f| f == "UP")
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().unwrap()
}

fn mac_of(ns: &TestNs, ifname: &str) -> String {
    link(ns, ifname).unwrap()["address"].as_str().unwrap().to_string()
}

// ----- ADD, traffic, DEL ------------------------------------------------------------------

#[test]
fn add_moves_the_device_in_with_its_address_and_del_returns_it() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let mac = mac_of(&lan.host, "hd0");
    let list = lan.list("1.1.0", json!({"dns": {"nameservers": ["10.66.0.53"]}}));
    let res = lan.add(&list, "c1", &c.path_str()).unwrap();

    // Result: the one interface, in the sandbox, with the device's MAC; every IP on it.
    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!(
        (i.name.as_str(), i.sandbox.as_str(), i.mac.as_str()),
        (IFNAME, c.path_str().as_str(), mac.as_str())
    );
    assert_eq!(res.ips.len(), 1);
    assert_eq!((res.ips[0].address.to_string(), res.ips[0].interface), ("10.66.0.10/24".into(), Some(0)));
    assert_eq!(res.dns.nameservers, ["10.66.0.53"]);

    // The kernel: the device is gone from the host and is the container's eth0,
    // same MAC and MTU, up, its host name in its alias, with the address and route.
    assert!(!link_exists(&lan.host, "hd0"));
    let l = link(&c, IFNAME).unwrap();
    assert_eq!((l["address"].as_str(), l["mtu"].as_u64()), (Some(mac.as_str()), Some(MTU)));
    assert_eq!(l["ifalias"], "hd0");
    assert!(is_up(&l));
    assert_eq!(
        addrs(&c, IFNAME).iter().filter(|a| a.starts_with("10.")).collect::<Vec<_>>(),
        ["10.66.0.10/24"]
    );
    assert!(has_route(&c, "10.99.0.0/16"));
    assert!(ping(&lan.peer, "10.66.0.10"), "the LAN peer reaches the container through the device");
    assert!(ping(&c, LAN_IP), "the container reaches the LAN peer");
    assert_eq!(lan.leases(), ["10.66.0.10"]);

    lan.del(&list, "c1", &c.path_str()).unwrap();
    assert_eq!(link_names(&c), ["lo"]);
    lan.assert_home(&mac, false);
    // DEL twice is fine.
    lan.del(&list, "c1", &c.path_str()).unwrap();
    lan.assert_home(&mac, false);
}

#[test]
fn every_selector_finds_the_device() {
    require_root!();
    let lan = Lan::new();
    let mac = mac_of(&lan.host, "hd0");
    for (what, extra) in [
        ("hwaddr", json!({"device": null, "hwaddr": mac.to_uppercase()})),
        ("kernelpath", json!({"device": null, "kernelpath": "/sys/devices/virtual/net/hd0"})),
    ] {
        let c = ctr();
        let list = lan.list("1.0.0", extra);
        let res = lan.add(&list, "c1", &c.path_str()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(res.interfaces[0].mac, mac, "{what}");
        assert_eq!(mac_of(&c, IFNAME), mac, "{what}");
        lan.del(&list, "c1", &c.path_str()).unwrap();
        lan.assert_home(&mac, false);
    }
}

#[test]
fn a_device_that_is_not_there_is_a_clear_error_and_changes_nothing() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    for (what, extra, msg) in [
        ("device", json!({"device": "nope0"}), "failed to find host device: no interface \"nope0\""),
        (
            "hwaddr",
            json!({"device": null, "hwaddr": "02:00:00:00:00:99"}),
            "no interface with MAC 02:00:00:00:00:99",
        ),
        ("pciBusID", json!({"device": null, "pciBusID": "0000:ff:1f.7"}), "no PCI device \"0000:ff:1f.7\""),
        (
            "deviceID",
            json!({"device": null, "runtimeConfig": {"deviceID": "0000:ff:1f.7"}}),
            "neither a PCI nor an auxiliary device",
        ),
        (
            "kernelpath",
            json!({"device": null, "kernelpath": "/sys/devices/virtual/net/nope0"}),
            "nothing at \"/sys/devices/virtual/net/nope0\"",
        ),
    ] {
        let e = lan.add(&lan.list("1.1.0", extra), "c1", &c.path_str()).unwrap_err();
        assert_eq!(e.code(), Some(7), "{what}: {e}");
        assert!(e.msg().contains(msg), "{what}: {e}");
        assert_eq!(link_names(&c), ["lo"], "{what}");
        assert!(is_up(&link(&lan.host, "hd0").unwrap()), "{what}");
        assert!(lan.leases().is_empty(), "{what}");
    }
}

#[test]
fn results_in_every_version() {
    require_root!();
    let lan = Lan::new();
    let mac = mac_of(&lan.host, "hd0");
    for ver in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let c = ctr();
        let list = lan.list(ver, json!({}));
        let rtc = RuntimeConf::new("c1", c.path(), IFNAME);
        let req = lan.rt.request(&list, 0, None, &rtc).unwrap();
        let out = lan.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        if ver < "0.3.0" {
            assert!(v["ip4"]["ip"].as_str().unwrap().starts_with("10.66.0."), "{ver}: {v}");
            assert!(v.get("interfaces").is_none(), "{ver}: {v}");
        } else {
            assert_eq!(v["interfaces"][0]["name"], IFNAME, "{ver}: {v}");
            assert_eq!(v["interfaces"][0]["mac"], mac.as_str(), "{ver}: {v}");
            assert_eq!(v["interfaces"][0]["sandbox"], c.path_str(), "{ver}: {v}");
            assert_eq!(v["ips"][0]["interface"], 0, "{ver}: {v}");
            assert_eq!(v["ips"][0].get("version").is_some(), ver.starts_with("0."), "{ver}: {v}");
        }
        lan.rt.del_rt(&list, &rtc).unwrap();
        lan.assert_home(&mac, false);
    }
}

// ----- failures, DEL without netns, name clashes ----------------------------------------------

#[test]
fn a_failed_add_after_the_move_puts_the_device_back_as_it_was() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let mac = mac_of(&lan.host, "hd0");
    lan.host.ip(&["link", "set", "hd0", "alias", "uplink"]).unwrap();
    // IPAM answers, then its route cannot be added (no address reaches the gateway):
    // the lease is released and the device goes home, up, with its own alias.
    let mut ipam = lan.ipam();
    ipam["routes"] = json!([{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]);
    let list = lan.list("1.1.0", json!({"ipam": ipam}));
    let e = lan.add(&list, "c1", &c.path_str()).unwrap_err();
    assert!(e.msg().contains("adding route to 10.99.0.0/16"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);
    let l = link(&lan.host, "hd0").unwrap();
    assert_eq!(
        (l["address"].as_str(), l["mtu"].as_u64(), &l["ifalias"]),
        (Some(mac.as_str()), Some(MTU), &json!("uplink"))
    );
    assert!(is_up(&l));
    assert!(lan.leases().is_empty());

    // An IPAM plugin that is not there fails after the move too.
    let list = lan.list("1.1.0", json!({"ipam": {"type": "no-such-ipam"}}));
    assert!(lan.add(&list, "c1", &c.path_str()).is_err());
    assert!(is_up(&link(&lan.host, "hd0").unwrap()));
    assert_eq!(link_names(&c), ["lo"]);
}

#[test]
fn del_without_the_netns_releases_the_lease() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let path = c.path_str();
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &path).unwrap();
    // A veth dies with the netns (a physical device would come back: physical_*).
    drop(c);
    assert!(wait_until(Duration::from_secs(30), || !link_exists(&lan.peer, "lan0")));
    lan.del(&list, "c1", &path).unwrap();
    lan.del(&list, "c1", "").unwrap();
    assert!(lan.leases().is_empty());
    assert!(!link_exists(&lan.host, "hd0"));
}

#[test]
fn del_refuses_while_the_host_name_is_taken_and_keeps_the_device_working() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let mac = mac_of(&lan.host, "hd0");
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &c.path_str()).unwrap();
    lan.host.ip(&["link", "add", "hd0", "type", "veth", "peer", "name", "squat0"]).unwrap();
    let e = lan.del(&list, "c1", &c.path_str()).unwrap_err();
    assert!(
        e.msg().contains("cannot return eth0 to the host as hd0: the host has another interface called hd0"),
        "{e}"
    );
    assert!(is_up(&link(&c, IFNAME).unwrap()), "the container keeps its interface");
    assert!(ping(&c, LAN_IP));
    lan.host.ip(&["link", "del", "hd0"]).unwrap();
    lan.del(&list, "c1", &c.path_str()).unwrap();
    lan.assert_home(&mac, false);
}

#[test]
fn a_container_interface_named_like_the_device_is_no_obstacle() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let other = TestNs::new().unwrap();
    veth(&c, "hd0", &other, "x0").unwrap();
    let theirs = mac_of(&c, "hd0");
    let list = lan.list("1.1.0", json!({}));
    let rtc = RuntimeConf::new("c1", c.path(), "net1");
    lan.rt.add_rt(&list, &rtc).unwrap();
    assert_eq!(link(&c, "net1").unwrap()["ifalias"], "hd0");
    lan.rt.del_rt(&list, &rtc).unwrap();
    assert_eq!(mac_of(&c, "hd0"), theirs, "the container's own hd0 is untouched");
    assert!(!link_exists(&c, "net1"));
    assert!(link_exists(&lan.host, "hd0"));
}

#[test]
fn check_passes_after_add_and_notices_drift() {
    require_root!();
    let lan = Lan::new();
    let c = ctr();
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &c.path_str()).unwrap();
    lan.rt.check(&list, "c1", c.path(), IFNAME, "IgnoreUnknown=1", json!({})).unwrap();
    let check = || lan.rt.check(&list, "c1", c.path(), IFNAME, "IgnoreUnknown=1", json!({}));
    c.ip(&["link", "set", IFNAME, "alias", ""]).unwrap();
    let e = check().unwrap_err();
    assert!(e.msg().contains("has lost its alias, which holds its host name"), "{e}");
    c.ip(&["link", "set", IFNAME, "alias", "hd0"]).unwrap();
    check().unwrap();
    c.ip(&["route", "del", "10.99.0.0/16"]).unwrap();
    let e = check().unwrap_err();
    assert!(e.msg().contains("route to 10.99.0.0/16 is missing"), "{e}");
    c.ip(&["addr", "del", "10.66.0.10/24", "dev", IFNAME]).unwrap();
    let e = check().unwrap_err();
    assert!(e.msg().contains("eth0 lacks its address 10.66.0.10/24"), "{e}");
    lan.del(&list, "c1", &c.path_str()).unwrap();
    let e = check().unwrap_err();
    assert!(e.msg().contains("no address is allocated"), "the lease is checked first: {e}");
}

// ----- beside the reference -----------------------------------------------------------------

const REFERENCE: &str = "/usr/lib/cni/host-device";

/// Run one plugin binary in `lan`'s host with `conf` as a 1.0.0 config.
fn run_binary(lan: &Lan, bin: &str, cmd: &str, c: &TestNs) -> PluginOutput {
    let conf = json!({"cniVersion": "1.0.0", "name": NET, "type": "host-device", "device": "hd0", "ipam": lan.ipam()});
    let env: Vec<(String, String)> = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", &c.path_str()),
        ("CNI_IFNAME", IFNAME),
        ("CNI_PATH", &target_bin_dir().to_string_lossy()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    lan.rt.exec(std::path::Path::new(bin), &env, conf.to_string().as_bytes()).unwrap()
}

#[test]
fn the_reference_and_we_return_each_others_devices_and_answer_alike() {
    require_root!();
    if !std::path::Path::new(REFERENCE).exists() {
        eprintln!(
            "skipped: no reference plugin at {REFERENCE} (scripts/deps installs containernetworking-plugins)"
        );
        return;
    }
    let lan = Lan::new();
    let mac = mac_of(&lan.host, "hd0");
    let ours = target_bin_dir().join("host-device").to_string_lossy().into_owned();
    let mut results = Vec::new();
    for (adder, deleter) in [(REFERENCE, ours.as_str()), (ours.as_str(), REFERENCE)] {
        let c = ctr();
        let out = run_binary(&lan, adder, "ADD", &c);
        assert!(out.success(), "{adder} ADD: {}", out.stdout);
        assert_eq!(link(&c, IFNAME).unwrap()["ifalias"], "hd0", "{adder}");
        // The same but for what differs by design: the netns, the address
        // (host-local goes round), an empty "dns" (the reference prints `{}`).
        let mut v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["interfaces"][0]["sandbox"] = json!("<netns>");
        v["ips"][0]["address"] = json!("<address>");
        if v["dns"] == json!({}) {
            v.as_object_mut().unwrap().remove("dns");
        }
        results.push(v);
        let out = run_binary(&lan, deleter, "DEL", &c);
        assert!(out.success(), "{deleter} DEL: {}", out.stdout);
        let l = link(&lan.host, "hd0").unwrap_or_else(|| panic!("{deleter} returned hd0"));
        assert_eq!(l["address"].as_str(), Some(mac.as_str()));
        assert!(lan.leases().is_empty(), "{deleter}");
        assert_eq!(link_names(&c), ["lo"]);
        // (The reference 1.1.1 leaves the alias on the returned device.)
        lan.host.ip(&["link", "set", "hd0", "alias", ""]).unwrap();
    }
    assert_eq!(results[0], results[1], "the same result as the reference");
}

// ----- physical devices (the VM's virtio NICs) ---------------------------------------------

/// The NICs are shared by the physical tests: one at a time.
static NICS: Mutex<()> = Mutex::new(());

/// The name of the link with `mac` in the test's own netns (the VM's initial one).
fn own_link_with_mac(mac: &str) -> Option<String> {
    let out = std::process::Command::new("ip").args(["-j", "link", "show"]).output().ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.as_array()?.iter().find(|l| l["address"] == mac).and_then(|l| l["ifname"].as_str().map(String::from))
}

/// The kernel device of the test's own `ifname` (what /sys/class/net/<if>/device
/// links to: for virtio-net the virtio device, e.g. /sys/devices/pci0000:00/0000:00:04.0/virtio1)
/// and its PCI function ("0000:00:04.0").
fn device_of(ifname: &str) -> (String, String) {
    let dev = std::fs::canonicalize(format!("/sys/class/net/{ifname}/device")).unwrap();
    let pci = dev.parent().unwrap().file_name().unwrap().to_string_lossy().into_owned();
    (dev.to_string_lossy().into_owned(), pci)
}

/// The VM's NICs, moved into a fresh host netns as `hd0` and `hd1`, with
/// their kernel devices and PCI functions; None (and a note) outside the VM.
fn physical_lan() -> Option<(Lan, Vec<(String, String)>)> {
    let Ok(macs) = std::env::var("CNI_TEST_VM_NICS") else {
        eprintln!("skipped: no test NICs (CNI_TEST_VM_NICS: scripts/vm-test's VM has two)");
        return None;
    };
    let mut found = Vec::new();
    for mac in macs.split_whitespace() {
        // A netns of an earlier test may still be returning them.
        let mut name = None;
        wait_until(Duration::from_secs(60), || {
            name = own_link_with_mac(mac);
            name.is_some()
        });
        let name = name.unwrap_or_else(|| panic!("the VM's NIC {mac} is not in the initial netns"));
        found.push((name.clone(), device_of(&name)));
    }
    assert_eq!(found.len(), 2, "CNI_TEST_VM_NICS names two MACs: {macs:?}");
    let host = HostNs::with_lo().unwrap();
    for (i, (name, _)) in found.iter().enumerate() {
        let ip =
            |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
        ip(&["link", "set", "dev", name, "down"]);
        ip(&["link", "set", "dev", name, "netns", host.name(), "name", &format!("hd{i}")]);
    }
    // The LAN peer is hd1, in a netns of its own.
    let peer = TestNs::with_lo().unwrap();
    host.ip(&["link", "set", "hd1", "netns", peer.name(), "name", "lan0"]).unwrap();
    peer.ip(&["addr", "add", "10.66.0.1/24", "dev", "lan0"]).unwrap();
    peer.ip(&["link", "set", "lan0", "up"]).unwrap();
    host.ip(&["link", "set", "hd0", "mtu", &MTU.to_string(), "up"]).unwrap();
    Some((Lan::around(host, peer), found.into_iter().map(|(_, dev)| dev).collect()))
}

#[test]
fn physical_by_pci_address_and_kernel_path_with_traffic() {
    require_root!();
    let _one = NICS.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lan, devs)) = physical_lan() else { return };
    let (kernelpath, pci) = &devs[0];
    let mac = mac_of(&lan.host, "hd0");
    for (what, extra) in [
        ("pciBusID", json!({"device": null, "pciBusID": pci})),
        (
            "deviceID",
            json!({"device": null, "capabilities": {"deviceID": true}, "runtimeConfig": {"deviceID": pci}}),
        ),
        ("kernelpath", json!({"device": null, "kernelpath": kernelpath})),
    ] {
        let c = ctr();
        let list = lan.list("1.1.0", extra);
        let res = lan.add(&list, "c1", &c.path_str()).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(res.interfaces[0].mac, mac, "{what}");
        let pci_id = if what == "kernelpath" { "" } else { pci.as_str() };
        assert_eq!(res.interfaces[0].pci_id, pci_id, "{what}");
        assert!(wait_until(Duration::from_secs(20), || ping(&c, LAN_IP)), "{what}: traffic over the NIC");
        lan.del(&list, "c1", &c.path_str()).unwrap();
        lan.assert_home(&mac, false);
        lan.host.ip(&["link", "set", "hd0", "up"]).unwrap();
    }
}

#[test]
fn physical_device_comes_back_when_the_netns_dies_and_del_renames_it() {
    require_root!();
    let _one = NICS.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lan, _)) = physical_lan() else { return };
    let mac = mac_of(&lan.host, "hd0");
    let c = ctr();
    let path = c.path_str();
    let list = lan.list("1.1.0", json!({}));
    lan.add(&list, "c1", &path).unwrap();
    drop(c);
    // The kernel returns it to the initial netns (ours here) under its container name.
    let mut back = None;
    assert!(wait_until(Duration::from_secs(60), || {
        back = own_link_with_mac(&mac);
        back.is_some()
    }));
    let back = back.unwrap();
    let l: Value = serde_json::from_slice(
        &std::process::Command::new("ip").args(["-j", "link", "show", "dev", &back]).output().unwrap().stdout,
    )
    .unwrap();
    // Named as in the container, or dev<N> when that name is taken here.
    assert!(back == IFNAME || back.starts_with("dev"), "{l}");
    assert_eq!(l[0]["ifalias"], "hd0", "{l}");
    // The runtime's host is the initial netns on a node; here the test's host
    // netns plays it, so the device goes there as the kernel left it.
    assert!(std::process::Command::new("ip")
        .args(["link", "set", "dev", &back, "netns", lan.host.name()])
        .status()
        .unwrap()
        .success());
    lan.del(&list, "c1", &path).unwrap();
    lan.assert_home(&mac, false);
    assert!(!link_exists(&lan.host, IFNAME));
}
