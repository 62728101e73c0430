//! What sysfs says about devices: the net devices under a kernel device
//! (`kernelpath`), a PCI function (`pciBusID`, `deviceID`) or an auxiliary
//! device (`deviceID`), and the driver that makes a PCI function a DPDK one.
//!
//! A net device's entry is tagged with its netns: /sys shows the devices of
//! the netns that mounted it, which for a runtime on a host is the plugin's.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Drivers that hand a PCI function to user space (DPDK): it has no net
/// device, so nothing is moved (the reference's list).
const USERSPACE_DRIVERS: [&str; 3] = ["vfio-pci", "uio_pci_generic", "igb_uio"];

/// sysfs, mounted at /sys (elsewhere in unit tests).
pub struct Sysfs {
    root: PathBuf,
}

/// A net device as sysfs lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetDev {
    pub name: String,
    pub ifindex: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

impl Sysfs {
    pub fn new() -> Sysfs {
        Sysfs { root: PathBuf::from("/sys") }
    }

    #[cfg(test)]
    pub fn at(root: &Path) -> Sysfs {
        Sysfs { root: root.to_path_buf() }
    }

    /// A path written as /sys/… (a `kernelpath`), where this sysfs has it.
    pub fn path(&self, sys_path: &str) -> PathBuf {
        self.root.join(sys_path.strip_prefix("/sys/").unwrap_or(sys_path))
    }

    pub fn pci_device(&self, id: &str) -> PathBuf {
        self.root.join("bus/pci/devices").join(id)
    }

    pub fn aux_device(&self, id: &str) -> PathBuf {
        self.root.join("bus/auxiliary/devices").join(id)
    }

    /// The user-space driver a PCI function is bound to, if it is (DPDK).
    pub fn userspace_driver(&self, pci_id: &str) -> Option<String> {
        let driver = fs::read_link(self.pci_device(pci_id).join("driver")).ok()?;
        let name = driver.file_name()?.to_str()?;
        USERSPACE_DRIVERS.contains(&name).then(|| name.to_string())
    }

    /// The name of the driver a PCI function is bound to, for messages.
    pub fn driver(&self, pci_id: &str) -> Option<String> {
        let driver = fs::read_link(self.pci_device(pci_id).join("driver")).ok()?;
        Some(driver.file_name()?.to_string_lossy().into_owned())
    }

    /// The net devices of a PCI function: in its `net/`, or in that of its
    /// virtio device (`virtio*/net/`) for virtio-net.
    pub fn pci_netdevs(&self, pci_id: &str) -> io::Result<Vec<NetDev>> {
        let dev = self.pci_device(pci_id);
        let direct = dev.join("net");
        if direct.is_dir() {
            return netdevs_in(&direct);
        }
        let mut virtio: Vec<PathBuf> = fs::read_dir(&dev)?
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("virtio"))
            .map(|e| e.path().join("net"))
            .filter(|p| p.is_dir())
            .collect();
        virtio.sort();
        match virtio.first() {
            Some(dir) => netdevs_in(dir),
            None => Ok(Vec::new()),
        }
    }

    /// The net devices of an auxiliary device (a sub-function).
    pub fn aux_netdevs(&self, id: &str) -> io::Result<Vec<NetDev>> {
        let dir = self.aux_device(id).join("net");
        if dir.is_dir() {
            netdevs_in(&dir)
        } else {
            Ok(Vec::new())
        }
    }

    /// The net devices of a kernel device: those in its `net/` (the
    /// reference's reading), or the device itself when the path is a net
    /// device's own directory (what /sys/class/net/<name> links to).
    pub fn kernelpath_netdevs(&self, kernelpath: &str) -> io::Result<Vec<NetDev>> {
        let dir = self.path(kernelpath);
        if dir.join("ifindex").is_file() {
            let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            return Ok(vec![netdev(&dir, name)]);
        }
        fs::metadata(&dir)?;
        let net = dir.join("net");
        if net.is_dir() {
            netdevs_in(&net)
        } else {
            Ok(Vec::new())
        }
    }
}

/// The entries of a `net/` directory, by name (as the reference reads them).
fn netdevs_in(dir: &Path) -> io::Result<Vec<NetDev>> {
    let mut names: Vec<String> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names.into_iter().map(|n| netdev(&dir.join(&n), n)).collect())
}

fn netdev(dir: &Path, name: String) -> NetDev {
    let read = |f: &str| fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_string());
    NetDev {
        ifindex: read("ifindex").and_then(|s| s.parse().ok()),
        mac: read("address").and_then(|s| common::netlink::rtnl::parse_mac(&s)),
        name,
    }
}
