//! Finding the device a config names: in the host netns by name or MAC,
//! through sysfs by kernel path, PCI address or auxiliary device.

use common::error::shown;
use common::net::NetStack;
use common::netlink::rtnl::{format_mac, Link};
use common::{CniError, Result};

use crate::config::Selector;
use crate::sysfs::{NetDev, Sysfs};

/// What a selector names on this host.
#[derive(Debug)]
pub enum Device {
    /// A net device in the host netns; `pci_id` when named by PCI address.
    Netdev { link: Link, pci_id: String },
    /// A PCI function bound to a user-space driver (DPDK): no net device,
    /// nothing to move.
    Dpdk { pci_id: String },
}

/// Where the selector points in sysfs, for the ones that go through it.
enum Sys {
    Pci(String),
    Aux(String),
    KernelPath(String),
}

fn sys_of(selector: &Selector, sysfs: &Sysfs) -> Result<Option<Sys>> {
    Ok(Some(match selector {
        Selector::Name(_) | Selector::Mac(_) => return Ok(None),
        Selector::KernelPath(p) => Sys::KernelPath(p.clone()),
        Selector::Pci(id) => Sys::Pci(id.clone()),
        // The reference's order: a PCI function first, then an auxiliary device.
        Selector::DeviceId(id) if sysfs.pci_device(id).exists() => Sys::Pci(id.clone()),
        Selector::DeviceId(id) if sysfs.aux_device(id).exists() => Sys::Aux(id.clone()),
        Selector::DeviceId(id) => {
            return Err(CniError::invalid_config(format!(
                "runtimeConfig.deviceID {} is neither a PCI nor an auxiliary device (nothing at {} or {})",
                shown(id),
                sysfs.pci_device(id).display(),
                sysfs.aux_device(id).display()
            )))
        }
    }))
}

/// The PCI function the selector names, if it names one.
pub fn pci_id(selector: &Selector, sysfs: &Sysfs) -> Option<String> {
    match sys_of(selector, sysfs) {
        Ok(Some(Sys::Pci(id))) => Some(id),
        _ => None,
    }
}

/// The device `selector` names, as `host` (the plugin's netns) sees it.
/// Not finding it is code 7, like a missing master elsewhere.
pub fn find<N: NetStack>(selector: &Selector, sysfs: &Sysfs, host: &mut N) -> Result<Device> {
    let missing = |what: String| {
        CniError::invalid_config(format!(
            "failed to find host device: {what} (a device in use by another container is in its netns)"
        ))
    };
    let (netdevs, pci_id) = match (selector, sys_of(selector, sysfs)?) {
        (Selector::Name(name), _) => {
            let link = host.link_by_name(name).map_err(|_| missing(format!("no interface {name:?}")))?;
            movable(&link)?;
            return Ok(Device::Netdev { link, pci_id: String::new() });
        }
        (Selector::Mac(mac), _) => {
            let links = host.links().map_err(|e| common::links::link_error("listing links", e))?;
            let link = links
                .into_iter()
                .find(|l| l.mac == Some(*mac))
                .ok_or_else(|| missing(format!("no interface with MAC {}", format_mac(mac))))?;
            movable(&link)?;
            return Ok(Device::Netdev { link, pci_id: String::new() });
        }
        (_, Some(Sys::Pci(id))) => {
            if !sysfs.pci_device(&id).exists() {
                return Err(CniError::invalid_config(format!(
                    "failed to find host device: no PCI device {} (nothing at {})",
                    shown(&id),
                    sysfs.pci_device(&id).display()
                )));
            }
            if sysfs.userspace_driver(&id).is_some() {
                return Ok(Device::Dpdk { pci_id: id });
            }
            let devs = sysfs.pci_netdevs(&id).map_err(|e| sys_error(&sysfs.pci_device(&id).display(), e))?;
            if devs.is_empty() {
                let driver = sysfs.driver(&id).map_or("no driver bound".into(), |d| format!("driver {d}"));
                return Err(missing(format!(
                    "PCI device {} has no network interface here ({driver})",
                    shown(&id)
                )));
            }
            (devs, id)
        }
        (_, Some(Sys::Aux(id))) => {
            let devs = sysfs.aux_netdevs(&id).map_err(|e| sys_error(&sysfs.aux_device(&id).display(), e))?;
            if devs.is_empty() {
                return Err(missing(format!(
                    "auxiliary device {} has no network interface here",
                    shown(&id)
                )));
            }
            (devs, String::new())
        }
        (_, Some(Sys::KernelPath(p))) => {
            let devs = sysfs.kernelpath_netdevs(&p).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    missing(format!("nothing at {}", shown(&p)))
                } else {
                    sys_error(&shown(&p), e)
                }
            })?;
            if devs.is_empty() {
                return Err(missing(format!("{} has no network interface here", shown(&p))));
            }
            (devs, String::new())
        }
        (_, None) => unreachable!("every other selector goes through sysfs"),
    };
    // The first, as the reference takes it; sysfs and netlink must agree.
    let link = same_device(&netdevs[0], host)?;
    movable(&link)?;
    Ok(Device::Netdev { link, pci_id })
}

/// What the kernel keeps in its netns (`netns_local`) is a config error,
/// said before anything changes.
fn movable(link: &Link) -> Result<()> {
    let what = match link.kind.as_deref() {
        _ if link.flags & libc::IFF_LOOPBACK as u32 != 0 => "the loopback device",
        Some("bridge") => "a bridge",
        Some("vrf") => "a VRF",
        _ => return Ok(()),
    };
    Err(CniError::invalid_config(format!(
        "host device {:?} is {what}: the kernel keeps it in its network namespace",
        link.name
    )))
}

/// The link sysfs lists as `dev`: /sys shows the netns that mounted it, and
/// a name alone could be another netns' device of the same name.
fn same_device<N: NetStack>(dev: &NetDev, host: &mut N) -> Result<Link> {
    let mismatch = |why: String| {
        CniError::internal(format!(
            "sysfs lists {:?}, but {why}: /sys shows another network namespace (mount sysfs for the \
             plugin's netns, as `ip netns exec` does)",
            dev.name
        ))
    };
    let link =
        host.link_by_name(&dev.name).map_err(|_| mismatch("this netns has no such interface".into()))?;
    let index_differs = dev.ifindex.is_some_and(|i| i != link.index);
    let mac_differs = matches!((dev.mac, link.mac), (Some(a), Some(b)) if a != b);
    if index_differs || mac_differs {
        return Err(mismatch(format!("this netns' {} is another device", dev.name)));
    }
    Ok(link)
}

fn sys_error(what: &dyn std::fmt::Display, e: std::io::Error) -> CniError {
    CniError::internal(format!("reading {what}: {e}"))
}

/// Whether `link`, found in the host netns with `alias` as its host name,
/// is the device `selector` names (DEL, after the kernel returned it).
pub fn names(selector: &Selector, sysfs: &Sysfs, link: &Link, alias: &str) -> bool {
    let listed =
        |devs: std::io::Result<Vec<NetDev>>| devs.is_ok_and(|d| d.iter().any(|d| d.name == link.name));
    match (selector, sys_of(selector, sysfs)) {
        (Selector::Name(name), _) => name == alias,
        (Selector::Mac(mac), _) => link.mac == Some(*mac),
        (_, Ok(Some(Sys::Pci(id)))) => listed(sysfs.pci_netdevs(&id)),
        (_, Ok(Some(Sys::Aux(id)))) => listed(sysfs.aux_netdevs(&id)),
        (_, Ok(Some(Sys::KernelPath(p)))) => listed(sysfs.kernelpath_netdevs(&p)),
        _ => false,
    }
}

/// Whether `link`, in the container with `alias` as its host name, may be
/// the device `selector` names: by name or MAC that is known; a device
/// found through sysfs cannot be told from inside the container.
pub fn may_be(selector: &Selector, link: &Link, alias: &str) -> bool {
    match selector {
        Selector::Name(name) => name == alias,
        Selector::Mac(mac) => link.mac == Some(*mac),
        _ => true,
    }
}
