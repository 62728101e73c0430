//! host-device's decisions against the fake kernel and a sysfs tree in a
//! temporary directory (no root): which device each selector finds, what
//! ADD changes and in which order, that a failure at any step puts the
//! device back as it was, what DEL does with the netns alive or gone, and
//! what CHECK notices. tests/host_device.rs proves the stories on the kernel.

use std::fs;
use std::os::unix::fs::symlink;

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::{Family, LinkKind, NewLink};
use common::skel::Command;
use common::spec::Route;
use test_harness::TempDir;

const MAC: [u8; 6] = [0x0a, 0x58, 0, 0, 0, 7];
const PCI: &str = "0000:3b:00.1";

/// A host with the physical device `hd0` (up, MTU 9000, MAC 0a:58:00:00:00:07,
/// PCI function 0000:3b:00.1 in sysfs), a container netns "c1" and sysfs.
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
    sys: TempDir,
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (mut host, ctr) = (kernel.host(), kernel.netns("c1"));
        kernel.add_device("host", "hd0", MAC);
        let hd0 = host.link_by_name("hd0").unwrap().index;
        host.set_mtu(hd0, 9000).unwrap();
        host.set_up(hd0).unwrap();
        let w = World { kernel, host, ctr, sys: TempDir::new().unwrap() };
        w.pci_netdev(PCI, "", "hd0");
        w.kernel.clear_calls();
        w
    }

    fn sysfs(&self) -> Sysfs {
        Sysfs::at(self.sys.path())
    }

    /// A PCI function bound to `ixgbe`, `devices/pci0000:00/<id>` with
    /// `bus/pci/devices/<id>` linking to it as in sysfs, its net device
    /// `name` in `<sub>/net/` (`sub` is e.g. "virtio3", or "").
    fn pci_netdev(&self, id: &str, sub: &str, name: &str) {
        let dev = self.sys.join("devices/pci0000:00").join(id);
        self.netdev_dir(&dev.join(sub).join("net").join(name), name);
        self.pci_link(id, "ixgbe");
    }

    fn pci_link(&self, id: &str, driver: &str) {
        let dev = self.sys.join("devices/pci0000:00").join(id);
        fs::create_dir_all(&dev).unwrap();
        fs::create_dir_all(self.sys.join("bus/pci/drivers").join(driver)).unwrap();
        let _ = symlink(format!("../../../../bus/pci/drivers/{driver}"), dev.join("driver"));
        fs::create_dir_all(self.sys.join("bus/pci/devices")).unwrap();
        let _ =
            symlink(format!("../../../devices/pci0000:00/{id}"), self.sys.join("bus/pci/devices").join(id));
    }

    /// A net device's own directory: its ifindex and address, as the host sees it.
    fn netdev_dir(&self, dir: &std::path::Path, name: &str) {
        fs::create_dir_all(dir).unwrap();
        let link = self.host.clone().link_by_name(name).unwrap();
        fs::write(dir.join("ifindex"), format!("{}\n", link.index)).unwrap();
        fs::write(dir.join("address"), format!("{}\n", link.mac_string())).unwrap();
    }

    fn args(&self, command: Command, conf: &Value) -> CmdArgs {
        cmd_args(command, conf)
    }

    fn add(&mut self, conf: &Value) -> Result<CniResult> {
        let args = self.args(Command::Add, conf);
        let c = Config::load(&args)?;
        add(&args, &c, &self.sysfs(), &mut self.host, &mut self.ctr, &mut self.kernel.ipam())
    }

    fn del(&mut self, conf: &Value, netns_gone: bool) -> Result<()> {
        let args = self.args(Command::Del, conf);
        let c = Config::load(&args).ok();
        let sysfs = self.sysfs();
        let ctr = if netns_gone { None } else { Some(&mut self.ctr) };
        del(&args, c.as_ref(), &sysfs, &mut self.host, ctr, &mut self.kernel.ipam())
    }

    fn check(&mut self, conf: &Value, prev: &CniResult) -> Result<()> {
        let mut conf = conf.clone();
        conf["prevResult"] = prev.to_value("1.1.0").unwrap();
        let args = self.args(Command::Check, &conf);
        let c = Config::load(&args)?;
        check(&args, &c, &self.sysfs(), &mut self.ctr, &mut self.kernel.ipam())
    }

    fn names(&self, net: &FakeNet) -> Vec<String> {
        let mut v: Vec<String> = net.clone().links().unwrap().into_iter().map(|l| l.name).collect();
        v.sort();
        v
    }
}

fn conf(extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.1.0", "name": "hostnet", "type": "host-device", "device": "hd0",
                       "ipam": {"type": "host-local"}});
    for (k, v) in extra.as_object().unwrap() {
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v.clone();
        }
    }
    c
}

/// A selector instead of `device`.
fn by(key: &str, value: Value) -> Value {
    let mut extra = json!({"device": null});
    extra[key] = value;
    conf(extra)
}

/// IPAM's answer with a route, so ADD exercises every step.
fn with_route(w: &mut World) {
    let ip = common::spec::IpConfig {
        address: "10.66.0.5/24".parse().unwrap(),
        gateway: Some("10.66.0.1".parse().unwrap()),
        interface: None,
    };
    let routes = vec![Route::new("10.99.0.0/16".parse().unwrap(), None)];
    w.kernel.set_ipam_result(CniResult { ips: vec![ip], routes, ..CniResult::default() });
}

// ----- ADD ---------------------------------------------------------------------------------

#[test]
fn add_moves_the_device_in_under_ifname_with_its_addresses() {
    let mut w = World::new();
    with_route(&mut w);
    let res = w.add(&conf(json!({"dns": {"nameservers": ["10.66.0.53"]}}))).unwrap();

    assert_eq!(
        w.kernel.changes(),
        [
            // The host name goes into the alias, before anything moves …
            "host: set_alias",
            // … the device travels through a scratch netns, renamed there …
            "c1: scratch_netns",
            "host: set_netns_fd",
            "scratch2: rename",
            "scratch2: set_netns_fd",
            // … and only then an address: the lease is never taken for a device that did not arrive.
            "ipam: ipam_add",
            "c1: set_sysctls",
            "c1: add_addr",
            "c1: set_up",
            "c1: add_route",
        ]
    );
    assert_eq!(w.names(&w.host), ["lo"]);
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert_eq!(
        (eth0.kind.as_deref(), eth0.mac, eth0.mtu),
        (None, Some(MAC), 9000),
        "the same device, MTU kept"
    );
    assert_eq!(eth0.alias.as_deref(), Some("hd0"));
    assert!(eth0.is_up());
    let addrs = w.ctr.addrs(Some(eth0.index), Family::V4).unwrap();
    assert_eq!((addrs[0].addr.to_string(), addrs[0].prefix), ("10.66.0.5".into(), 24));
    assert_eq!(w.ctr.routes(Family::V4, 0).unwrap().len(), 1);

    assert_eq!(res.interfaces.len(), 1);
    let i = &res.interfaces[0];
    assert_eq!(
        (i.name.as_str(), i.sandbox.as_str(), i.mac.as_str()),
        ("eth0", "/run/netns/c1", "0a:58:00:00:00:07")
    );
    assert_eq!(i.pci_id, "", "named by name: no PCI address");
    assert_eq!(res.ips[0].interface, Some(0));
    assert_eq!(res.dns.nameservers, ["10.66.0.53"]);
    assert_eq!(w.kernel.leases(), ["c1/eth0 10.66.0.5/24"]);
}

#[test]
fn without_ipam_the_device_is_just_moved_in_and_up() {
    let mut w = World::new();
    let res = w.add(&conf(json!({"ipam": null}))).unwrap();
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert!(eth0.is_up());
    assert!(w.ctr.addrs(Some(eth0.index), Family::Any).unwrap().is_empty());
    assert!(res.ips.is_empty() && w.kernel.leases().is_empty());
    assert_eq!(res.interfaces[0].mac, "0a:58:00:00:00:07");
}

#[test]
fn a_container_interface_named_like_the_host_device_is_no_obstacle() {
    // The reference's case: a container has eth0 and gets the host's eth0 as net1.
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("hd0", LinkKind::Dummy)).unwrap();
    let args = CmdArgs { ifname: "net1".into(), ..cmd_args(Command::Add, &conf(json!({}))) };
    let conf_ = Config::load(&args).unwrap();
    add(&args, &conf_, &w.sysfs(), &mut w.host, &mut w.ctr, &mut w.kernel.ipam()).unwrap();
    assert_eq!(w.names(&w.ctr), ["hd0", "lo", "net1"]);
    assert_eq!(w.ctr.link_by_name("net1").unwrap().mac, Some(MAC));
    let conf_ = Some(conf_);
    let args = CmdArgs { command: Command::Del, ..args };
    del(&args, conf_.as_ref(), &w.sysfs(), &mut w.host, Some(&mut w.ctr), &mut w.kernel.ipam()).unwrap();
    assert_eq!(w.names(&w.ctr), ["hd0", "lo"]);
    assert_eq!(w.names(&w.host), ["hd0", "lo"]);
}

#[test]
fn every_selector_finds_the_device() {
    for (what, c) in [
        ("hwaddr", by("hwaddr", json!("0A-58-00-00-00-07"))),
        ("kernelpath of the PCI function", by("kernelpath", json!(format!("/sys/devices/pci0000:00/{PCI}")))),
        (
            "kernelpath of the net device",
            by("kernelpath", json!(format!("/sys/devices/pci0000:00/{PCI}/net/hd0"))),
        ),
        ("pciBusID", by("pciBusID", json!(PCI))),
        ("deviceID", conf(json!({"device": null, "runtimeConfig": {"deviceID": PCI}}))),
    ] {
        let mut w = World::new();
        let res = w.add(&c).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(w.ctr.link_by_name("eth0").unwrap().mac, Some(MAC), "{what}");
        let by_pci = what == "pciBusID" || what == "deviceID";
        assert_eq!(res.interfaces[0].pci_id, if by_pci { PCI } else { "" }, "{what}");
        w.del(&c, false).unwrap();
        assert_eq!(w.host.link_by_name("hd0").unwrap().mac, Some(MAC), "{what}");
    }
}

#[test]
fn a_virtio_function_and_an_auxiliary_device_are_found_through_their_net_dirs() {
    let mut w = World::new();
    w.kernel.add_device("host", "vn0", [2, 0, 0, 0, 0, 0x10]);
    w.pci_netdev("0000:00:04.0", "virtio1", "vn0");
    let res = w.add(&by("pciBusID", json!("0000:00:04.0"))).unwrap();
    assert_eq!(res.interfaces[0].mac, "02:00:00:00:00:10");

    let mut w = World::new();
    w.kernel.add_device("host", "sf0", [2, 0, 0, 0, 0, 0x11]);
    w.netdev_dir(&w.sys.join("devices/pci0000:00/0000:3b:00.0/mlx5_core.sf.4/net/sf0"), "sf0");
    fs::create_dir_all(w.sys.join("bus/auxiliary/devices")).unwrap();
    symlink(
        "../../../devices/pci0000:00/0000:3b:00.0/mlx5_core.sf.4",
        w.sys.join("bus/auxiliary/devices/mlx5_core.sf.4"),
    )
    .unwrap();
    let res = w.add(&conf(json!({"device": null, "runtimeConfig": {"deviceID": "mlx5_core.sf.4"}}))).unwrap();
    assert_eq!(
        (res.interfaces[0].mac.as_str(), res.interfaces[0].pci_id.as_str()),
        ("02:00:00:00:00:11", "")
    );
}

#[test]
fn a_dpdk_function_is_not_moved_and_gets_its_addresses_reported() {
    let mut w = World::new();
    w.pci_link("0000:3b:00.2", "vfio-pci");
    let before = w.kernel.state();
    let c = conf(json!({"device": null, "runtimeConfig": {"deviceID": "0000:3b:00.2"}}));
    let res = w.add(&c).unwrap();
    assert_eq!(w.kernel.state(), before.clone() + "lease c1/eth0 10.88.0.2/16\n", "nothing moved");
    assert_eq!(w.kernel.changes(), ["ipam: ipam_add"]);
    let i = &res.interfaces[0];
    assert_eq!((i.name.as_str(), i.sandbox.as_str(), i.mac.as_str()), ("eth0", "/run/netns/c1", ""));
    assert_eq!(i.pci_id, "0000:3b:00.2");
    assert_eq!(res.ips[0].interface, Some(0));
    w.check(&c, &res).unwrap();
    w.del(&c, false).unwrap();
    assert!(w.kernel.leases().is_empty());
    assert_eq!(w.kernel.state(), before);
}

// ----- ADD failures --------------------------------------------------------------------------

/// Run ADD with the n-th kernel or IPAM call failing, for every n a
/// successful ADD makes: either ADD still succeeds, or everything is as
/// before (the device up on the host under its name, no alias, no lease),
/// and every change it would make has failed once.
fn every_failure_rolls_back(c: Value, setup: impl Fn(&mut World)) {
    let mut ok = World::new();
    setup(&mut ok);
    ok.add(&c).unwrap();
    let calls = ok.kernel.calls().len();
    let mut failed = 0;
    for n in 1..=calls {
        let mut w = World::new();
        setup(&mut w);
        let before = w.kernel.state();
        w.kernel.fail_at(n, libc::EIO);
        match w.add(&c) {
            Err(_) => {
                failed += 1;
                assert_eq!(w.kernel.state(), before, "failure at call {n}: {:#?}", w.kernel.calls());
            }
            Ok(_) => assert!(w.ctr.link_by_name("eth0").is_ok(), "call {n}"),
        }
    }
    assert!(failed >= ok.kernel.changes().len(), "{failed} of {calls} failures, {:?}", ok.kernel.changes());
}

#[test]
fn a_failure_at_any_step_puts_the_device_back() {
    every_failure_rolls_back(conf(json!({})), with_route);
}

#[test]
fn a_failure_at_any_step_puts_the_device_back_without_ipam() {
    every_failure_rolls_back(conf(json!({"ipam": null})), |_| {});
}

#[test]
fn a_failure_at_any_step_puts_the_device_back_with_its_own_alias() {
    every_failure_rolls_back(by("pciBusID", json!(PCI)), |w| {
        let i = w.host.link_by_name("hd0").unwrap().index;
        w.host.set_alias(i, "uplink to rack 3").unwrap();
        w.kernel.clear_calls();
    });
}

#[test]
fn an_ipam_failure_after_the_move_sends_the_device_home() {
    let mut w = World::new();
    let before = w.kernel.state();
    w.kernel.fail_on("ipam_add", libc::EIO);
    assert!(w.add(&conf(json!({}))).is_err());
    assert_eq!(w.kernel.state(), before);
    let hd0 = w.host.link_by_name("hd0").unwrap();
    assert!(hd0.is_up() && hd0.alias.is_none());
}

#[test]
fn nothing_changes_when_the_device_or_the_name_is_not_there() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("name", conf(json!({"device": "nope0"})), "failed to find host device: no interface \"nope0\""),
        ("mac", by("hwaddr", json!("02:00:00:00:00:99")), "no interface with MAC 02:00:00:00:00:99"),
        ("pci", by("pciBusID", json!("0000:99:00.0")), "no PCI device \"0000:99:00.0\""),
        ("kernelpath", by("kernelpath", json!("/sys/devices/nope")), "nothing at \"/sys/devices/nope\""),
        (
            "deviceID",
            conf(json!({"device": null, "runtimeConfig": {"deviceID": "0000:99:00.0"}})),
            "neither a PCI nor an auxiliary device",
        ),
    ];
    for (what, c, msg) in cases {
        let mut w = World::new();
        let e = w.add(&c).unwrap_err();
        assert_eq!(e.code, 7, "{what}: {e}");
        assert!(e.msg.contains(msg), "{what}: {e}");
        assert!(w.kernel.changes().is_empty(), "{what}: {:?}", w.kernel.calls());
    }

    // What the kernel keeps in its netns.
    let mut w = World::new();
    w.host.add_link(&NewLink::bridge("br0")).unwrap();
    w.kernel.clear_calls();
    for (name, what) in [("lo", "the loopback device"), ("br0", "a bridge")] {
        let e = w.add(&conf(json!({"device": name}))).unwrap_err();
        assert_eq!(e.code, 7, "{e}");
        assert!(e.msg.contains(&format!("host device \"{name}\" is {what}: the kernel keeps it")), "{e}");
    }
    assert!(w.kernel.changes().is_empty());

    // A PCI function without a net device here (not bound, or in a container already).
    let mut w = World::new();
    w.pci_link("0000:3b:00.3", "ixgbe");
    let e = w.add(&by("pciBusID", json!("0000:3b:00.3"))).unwrap_err();
    assert!(
        e.msg.contains("PCI device \"0000:3b:00.3\" has no network interface here (driver ixgbe)"),
        "{e}"
    );

    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    w.kernel.clear_calls();
    let e = w.add(&conf(json!({}))).unwrap_err();
    assert!(e.msg.contains("already has an interface named \"eth0\""), "{e}");
    assert!(w.kernel.changes().is_empty());
}

#[test]
fn sysfs_of_another_netns_is_noticed_not_trusted() {
    // /sys lists hd0 with another ifindex: it is some other netns' hd0.
    let mut w = World::new();
    let dir = w.sys.join(format!("devices/pci0000:00/{PCI}/net/hd0"));
    fs::write(dir.join("ifindex"), "77\n").unwrap();
    let e = w.add(&by("pciBusID", json!(PCI))).unwrap_err();
    assert!(e.msg.contains("sysfs lists \"hd0\", but this netns' hd0 is another device"), "{e}");
    assert!(e.msg.contains("mount sysfs for the plugin's netns"), "{e}");
    assert!(w.kernel.changes().is_empty());
}

// ----- DEL ---------------------------------------------------------------------------------

#[test]
fn del_returns_the_device_under_its_name_and_is_idempotent() {
    let mut w = World::new();
    with_route(&mut w);
    let before = w.kernel.state();
    w.add(&conf(json!({}))).unwrap();
    w.kernel.clear_calls();
    w.del(&conf(json!({})), false).unwrap();
    let changes = w.kernel.changes();
    assert_eq!(changes.first().map(String::as_str), Some("ipam: ipam_del"), "the lease first: {changes:?}");
    // Back under its name, MTU and MAC kept, no alias; down, as the reference leaves it.
    let hd0 = w.host.link_by_name("hd0").unwrap();
    assert_eq!((hd0.mtu, hd0.mac, hd0.alias.as_deref(), hd0.is_up()), (9000, Some(MAC), None, false));
    assert_eq!(w.kernel.state().replace("hd0 device down", "hd0 device up"), before);
    assert!(w.ctr.link_by_name("eth0").is_err());
    w.del(&conf(json!({})), false).unwrap();
    w.del(&conf(json!({})), true).unwrap();
}

#[test]
fn del_after_the_netns_died_renames_the_device_the_kernel_returned() {
    // The kernel returns a physical device to the initial netns, named as in
    // the container (CNI_IFNAME) or, when that is taken, dev<ifindex>.
    for (what, c, taken) in [
        ("by name", conf(json!({})), false),
        ("by hwaddr", by("hwaddr", json!("0a:58:00:00:00:07")), false),
        ("by pciBusID", by("pciBusID", json!(PCI)), false),
        ("by name, eth0 taken on the host", conf(json!({})), true),
    ] {
        let mut w = World::new();
        if taken {
            w.host.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
        }
        w.add(&c).unwrap();
        w.kernel.delete_netns("c1");
        let returned = if taken { "dev2" } else { "eth0" };
        assert_eq!(w.host.link_by_name(returned).unwrap().alias.as_deref(), Some("hd0"), "{what}");
        if what == "by pciBusID" {
            // sysfs lists it under its PCI function with its name now.
            fs::remove_dir_all(w.sys.join(format!("devices/pci0000:00/{PCI}/net/hd0"))).unwrap();
            w.netdev_dir(&w.sys.join(format!("devices/pci0000:00/{PCI}/net/eth0")), "eth0");
        }
        w.del(&c, true).unwrap();
        let hd0 = w.host.link_by_name("hd0").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!((hd0.mac, hd0.alias), (Some(MAC), None), "{what}");
        assert!(w.host.link_by_name(returned).is_err() || taken, "{what}");
        assert!(w.kernel.leases().is_empty(), "{what}");
    }
}

#[test]
fn del_leaves_alone_what_is_not_this_networks_device() {
    let mut w = World::new();
    w.add(&conf(json!({}))).unwrap();
    // Another network's config for the same ifname: another device.
    w.del(&conf(json!({"device": "hd1"})), false).unwrap();
    w.del(&by("hwaddr", json!("02:00:00:00:00:99")), false).unwrap();
    assert_eq!(w.ctr.link_by_name("eth0").unwrap().alias.as_deref(), Some("hd0"));
    assert_eq!(w.names(&w.host), ["lo"]);

    // A container interface without a host name is not one this plugin moved.
    let mut w = World::new();
    w.ctr.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
    let before = w.kernel.state();
    w.del(&conf(json!({})), false).unwrap();
    assert_eq!(w.kernel.state(), before);

    // A host device that merely has an alias is no returned device.
    let mut w = World::new();
    let i = w.host.link_by_name("hd0").unwrap().index;
    w.host.set_alias(i, "eth0").unwrap();
    let before = w.kernel.state();
    let mut c = conf(json!({}));
    c["device"] = json!("eth0");
    w.del(&c, true).unwrap();
    assert_eq!(w.kernel.state(), before);
}

#[test]
fn del_fails_while_another_interface_holds_the_host_name_and_keeps_the_device() {
    let mut w = World::new();
    w.add(&conf(json!({}))).unwrap();
    w.host.add_link(&NewLink::veth("hd0", "squatter")).unwrap();
    let e = w.del(&conf(json!({})), false).unwrap_err();
    assert!(
        e.msg.contains("cannot return eth0 to the host as hd0: the host has another interface called hd0"),
        "{e}"
    );
    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    assert!(eth0.is_up() && eth0.alias.as_deref() == Some("hd0"), "untouched in the container");
    w.host.del_link_by_name("hd0").unwrap();
    w.del(&conf(json!({})), false).unwrap();
    assert_eq!(w.host.link_by_name("hd0").unwrap().mac, Some(MAC));
}

#[test]
fn del_of_a_virtual_device_whose_netns_died_has_nothing_to_return() {
    let mut w = World::new();
    w.host.add_link(&NewLink::veth("v0", "v0p")).unwrap();
    let c = conf(json!({"device": "v0"}));
    w.add(&c).unwrap();
    w.kernel.delete_netns("c1");
    assert!(w.host.link_by_name("v0p").is_err(), "the veth died with the netns");
    w.del(&c, true).unwrap();
    assert!(w.kernel.leases().is_empty());
}

#[test]
fn del_of_a_config_add_refuses_still_releases_the_lease() {
    let mut w = World::new();
    w.add(&conf(json!({}))).unwrap();
    w.del(&conf(json!({"device": null})), false).unwrap();
    assert!(w.kernel.leases().is_empty());
    assert_eq!(w.host.link_by_name("hd0").unwrap().mac, Some(MAC), "the alias said where it goes");
}

// ----- CHECK -------------------------------------------------------------------------------

#[test]
fn check_passes_after_add_and_notices_what_changed() {
    let mut w = World::new();
    with_route(&mut w);
    let c = conf(json!({}));
    let res = w.add(&c).unwrap();
    w.check(&c, &res).unwrap();

    let e = w.check(&conf(json!({"device": "hd1"})), &res).unwrap_err();
    assert!(e.msg.contains("eth0 is host device \"hd0\""), "{e}");

    let eth0 = w.ctr.link_by_name("eth0").unwrap();
    let addr = res.ips[0].address;
    w.ctr.del_addr(eth0.index, addr.addr, addr.prefix).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("lacks its address"), "{e}");
    w.ctr.add_addr(eth0.index, addr.addr, addr.prefix, &Default::default()).unwrap();

    w.ctr.set_alias(eth0.index, "").unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("has lost its alias"), "{e}");
    w.ctr.set_alias(eth0.index, "hd0").unwrap();

    w.ctr.set_mac(eth0.index, [2, 0, 0, 0, 0, 9]).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("has MAC 02:00:00:00:00:09, prevResult says"), "{e}");

    w.del(&c, false).unwrap();
    let e = w.check(&c, &res).unwrap_err();
    assert!(e.msg.contains("no lease"), "the lease is checked first: {e}");
    let no_prev = w.args(Command::Check, &conf(json!({"ipam": null})));
    let e = check(&no_prev, &Config::load(&no_prev).unwrap(), &w.sysfs(), &mut w.ctr, &mut w.kernel.ipam());
    assert_eq!(e.unwrap_err().code, 7);
}
