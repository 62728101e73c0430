#![cfg_attr(not(test), no_main)]
//! host-device: moves a device of the host (found by name, MAC, kernel
//! path, PCI address or the runtime's deviceID) into the container as
//! `CNI_IFNAME`, with IPAM's addresses; DEL moves it back under its old name.
//!
//! The host name travels with the device as its alias (`IFLA_IFALIAS`), as
//! the reference keeps it, so either plugin can DEL what the other added.
//! ADD either completes or puts the device back as it was; DEL succeeds
//! when there is nothing to return, and renames a device the kernel
//! returned by itself when the container's netns died.

mod config;
mod device;
mod sysfs;
#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::links::{self, link_error};
use common::net::NetStack;
use common::netlink::rtnl::{Link, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface};
use common::undo::Undo;
use common::{ifconfig, CniError, Errors, Result};

use config::{Config, Selector};
use device::Device;
use sysfs::Sysfs;

struct HostDevice;

/// The verbs below act through the kernel seam and a sysfs root, so that
/// unit tests can run them against `common::fake`; here they get the real ones.
impl Plugin for HostDevice {
    fn about(&self) -> String {
        format!("CNI host-device plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let ns = Netns::open_container(&args.netns)?;
        add(args, &conf, &Sysfs::new(), &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        // A config ADD would refuse still gets its lease released.
        let conf = Config::load(args).ok();
        let mut errors = Errors::new();
        let mut ctr = common::net::container_for_del(&args.netns, &mut errors)?;
        let host = Rtnl::open();
        errors.note(host.map_err(Into::into).and_then(|mut host| {
            del(args, conf.as_ref(), &Sysfs::new(), &mut host, ctr.as_mut(), &mut ipam::Exec)
        }));
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let ns = Netns::open_container(&args.netns)?;
        check(args, &conf, &Sysfs::new(), &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        // The device itself is in a container once ADD has run: not a sign of trouble.
        Config::load(args)?;
        ipam::status_if_configured(args)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        ipam::gc_if_configured(args)
    }
}

/// ADD: the name is checked and the device found before anything changes;
/// a failure after that puts the device back as it was.
fn add<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    sysfs: &Sysfs,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<CniResult> {
    links::ensure_name_free(ctr, &args.ifname)?;
    let device = device::find(&conf.selector, sysfs, host)?;
    let mut undo = Undo::new(args);
    let res = match &device {
        Device::Netdev { link, pci_id } => add_netdev(args, link, pci_id, host, ctr, ipam, &mut undo),
        Device::Dpdk { pci_id } => add_dpdk(args, pci_id, ipam, &mut undo),
    };
    if res.is_err() {
        undo.run(host, ctr, ipam);
    }
    res
}

/// The ADD story of a net device. Every step that changes something
/// registers its undo.
fn add_netdev<'a, N: NetStack>(
    args: &'a CmdArgs,
    dev: &Link,
    pci_id: &str,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    // 1. The device goes down with the move; an undo brings it back up.
    let name = dev.name.clone();
    if dev.is_up() {
        let name = name.clone();
        undo.push("set the device up again", move |host, _| {
            let index = host.link_by_name(&name)?.index;
            Ok(host.set_up(index)?)
        });
    }
    // 2. Its host name into its alias, where DEL finds it.
    host.set_alias(dev.index, &name).map_err(|e| link_error(&format!("setting the alias of {name}"), e))?;
    let (n, old_alias) = (name.clone(), dev.alias.clone().unwrap_or_default());
    undo.push("restore the alias", move |host, _| {
        let index = host.link_by_name(&n)?.index;
        Ok(host.set_alias(index, &old_alias)?)
    });

    // 3. Into the container as CNI_IFNAME.
    let moved = links::move_link(host, ctr, &name, &args.ifname)?;
    undo.return_link(&args.ifname, &name);

    // 4. Addresses (the device is there for IPAM, e.g. dhcp), then up and routes.
    let mut res = ipam::allocate(ipam, args, undo)?;
    let link = if res.ips.is_empty() {
        ctr.set_up(moved.index).map_err(|e| link_error(&format!("setting {} up", args.ifname), e))?;
        ctr.link_by_index(moved.index).map_err(|e| link_error(&args.ifname, e))?
    } else {
        ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, true)?
    };
    let iface = Interface { mac: link.mac_string(), ..container_interface(args, pci_id) };
    finish(args, &mut res, iface);
    Ok(res)
}

/// A PCI function a DPDK application drives: nothing moves; IPAM's
/// addresses are reported for the application to use.
fn add_dpdk<'a, N: NetStack>(
    args: &'a CmdArgs,
    pci_id: &str,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    let mut res = ipam::allocate(ipam, args, undo)?;
    finish(args, &mut res, container_interface(args, pci_id));
    Ok(res)
}

fn container_interface(args: &CmdArgs, pci_id: &str) -> Interface {
    Interface {
        name: args.ifname.clone(),
        sandbox: args.netns.clone(),
        pci_id: pci_id.to_string(),
        ..Default::default()
    }
}

/// The result: the one container interface, every IP on it, the config's DNS.
fn finish(args: &CmdArgs, res: &mut CniResult, iface: Interface) {
    res.interfaces = vec![iface];
    for ip in &mut res.ips {
        ip.interface = Some(0);
    }
    if let Some(dns) = args.conf.dns.as_ref().filter(|d| !d.is_empty()) {
        res.dns = dns.clone();
    }
}

/// DEL: the lease first (dhcp releases through the interface), then the
/// device back to the host under the name in its alias. With the netns
/// gone a virtual device went with it, and a physical one came back to the
/// initial netns by itself, under CNI_IFNAME or `dev<N>`: it gets its name.
fn del<N: NetStack>(
    args: &CmdArgs,
    conf: Option<&Config>,
    sysfs: &Sysfs,
    host: &mut N,
    ctr: Option<&mut N>,
    ipam: &mut impl Ipam,
) -> Result<()> {
    let mut errors = Errors::new();
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    let in_ctr = ctr.and_then(|ctr| ctr.link_by_name(&args.ifname).ok().map(|link| (ctr, link)));
    match in_ctr {
        Some((ctr, link)) => errors.note(return_device(args, conf, host, ctr, &link)),
        None => errors.note(rename_returned(args, conf, sysfs, host)),
    }
    errors.into_result()
}

/// The container's `CNI_IFNAME`, back to the host as its alias says.
fn return_device<N: NetStack>(
    args: &CmdArgs,
    conf: Option<&Config>,
    host: &mut N,
    ctr: &mut N,
    link: &Link,
) -> Result<()> {
    // No host name: not a device this plugin moved in (a failed ADD's
    // runtime DEL finds another plugin's interface here, say): not ours.
    let Some(host_name) = link.alias.as_deref().filter(|a| common::skel::validate_ifname(a).is_ok()) else {
        return Ok(());
    };
    if conf.is_some_and(|c| !device::may_be(&c.selector, link, host_name)) {
        return Ok(()); // another network's device under this name
    }
    ensure_free_on_host(host, &args.ifname, host_name)?;
    let back = links::move_link(ctr, host, &args.ifname, host_name)?;
    host.set_alias(back.index, "").map_err(|e| link_error(&format!("clearing the alias of {host_name}"), e))
}

/// A device the kernel returned to this netns when the container's died:
/// physical, its alias a host name it does not have, named CNI_IFNAME or
/// `dev<N>`, and the one the config names.
fn rename_returned<N: NetStack>(
    args: &CmdArgs,
    conf: Option<&Config>,
    sysfs: &Sysfs,
    host: &mut N,
) -> Result<()> {
    let Some(conf) = conf else { return Ok(()) };
    let links = host.links().map_err(|e| link_error("listing links", e))?;
    let returned = links.iter().find(|l| {
        let fallback = l
            .name
            .strip_prefix("dev")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        l.kind.is_none()
            && (l.name == args.ifname || fallback)
            && l.alias.as_deref().is_some_and(|a| {
                a != l.name
                    && common::skel::validate_ifname(a).is_ok()
                    && device::names(&conf.selector, sysfs, l, a)
            })
    });
    let Some(l) = returned else { return Ok(()) };
    let host_name = l.alias.clone().unwrap_or_default();
    ensure_free_on_host(host, &l.name, &host_name)?;
    if l.is_up() {
        host.set_down(l.index).map_err(|e| link_error(&format!("setting {} down", l.name), e))?;
    }
    host.rename(l.index, &host_name)
        .map_err(|e| link_error(&format!("renaming {} to {host_name}", l.name), e))?;
    host.set_alias(l.index, "").map_err(|e| link_error(&format!("clearing the alias of {host_name}"), e))
}

fn ensure_free_on_host<N: NetStack>(host: &mut N, ifname: &str, host_name: &str) -> Result<()> {
    if host.link_by_name(host_name).is_ok() {
        return Err(CniError::internal(format!(
            "cannot return {ifname} to the host as {host_name}: the host has another interface called \
             {host_name} (rename or remove it, then DEL again)"
        )));
    }
    Ok(())
}

/// CHECK: the lease, then the container interface against prevResult.
fn check<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    sysfs: &Sysfs,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<()> {
    if let Some(plugin) = args.conf.ipam_type() {
        ipam.check(plugin, args)?;
    }
    let prev = args
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("host-device CHECK needs prevResult"))?;
    // A DPDK function was never moved: there is nothing to look at.
    if device::pci_id(&conf.selector, sysfs).is_some_and(|id| sysfs.userspace_driver(&id).is_some()) {
        return Ok(());
    }
    let iface =
        prev.interfaces.iter().find(|i| i.name == args.ifname && !i.sandbox.is_empty()).ok_or_else(|| {
            CniError::internal(format!("prevResult has no container interface {:?}", args.ifname))
        })?;
    if iface.sandbox != args.netns {
        return Err(CniError::internal(format!(
            "interface {} is in netns {:?}, not {:?}",
            args.ifname, iface.sandbox, args.netns
        )));
    }
    let link = ifconfig::verify(ctr, &args.ifname, &prev.ips_of(&args.ifname), &prev.routes)?;
    if !iface.mac.is_empty() && link.mac_string() != iface.mac.to_lowercase() {
        return Err(CniError::internal(format!(
            "{} has MAC {}, prevResult says {}",
            args.ifname,
            link.mac_string(),
            iface.mac
        )));
    }
    let host_name = link.alias.as_deref().unwrap_or_default();
    if host_name.is_empty() {
        return Err(CniError::internal(format!(
            "{} has lost its alias, which holds its host name: DEL could not return it",
            args.ifname
        )));
    }
    if !device::may_be(&conf.selector, &link, host_name) {
        let named = match &conf.selector {
            Selector::Name(n) => format!("device {n:?}"),
            Selector::Mac(m) => format!("hwaddr {}", common::netlink::rtnl::format_mac(m)),
            _ => "device".into(),
        };
        return Err(CniError::internal(format!(
            "{} is host device {host_name:?} (MAC {}), not the config's {named}",
            args.ifname,
            link.mac_string()
        )));
    }
    Ok(())
}

common::plugin_main!(HostDevice);
