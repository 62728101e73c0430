//! TAP devices: created through `/dev/net/tun` (they cannot be made with
//! rtnetlink), persistent, owned by a user and group, in the netns of the
//! [`Rtnl`] that makes them; and their settings as the kernel reports them.
//!
//! A tap is made by `TUNSETIFF` on a `/dev/net/tun` descriptor opened inside
//! the target netns (the device joins the netns of that descriptor), then
//! `TUNSETOWNER`/`TUNSETGROUP`, and `TUNSETPERSIST` so that it outlives the
//! descriptor. Until `TUNSETPERSIST` the device lives only as long as the
//! descriptor: a failure on the way closes it and the device is gone, so a
//! failed creation leaves nothing. MTU, MAC and master are set over
//! rtnetlink afterwards, like any link's.
//!
//! With an SELinux context the device must carry that label, which the
//! kernel takes from the task that creates it: as with the reference plugin,
//! `ip tuntap add` is run with the context as its exec label
//! (`/proc/thread-self/attr/exec`), so that the process that will attach
//! (a VM, say) is allowed to.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use crate::netlink::rtnl::Rtnl;
use crate::netlink::{Attrs, NlError, NlResult};

/// The tun/tap character device.
pub const TUN_DEVICE: &str = "/dev/net/tun";
/// The largest MTU of a tap: 65535 less its Ethernet header.
pub const MAX_MTU: u32 = 65521;

// linux/if_link.h: IFLA_TUN_*
const IFLA_TUN_OWNER: u16 = 1;
const IFLA_TUN_GROUP: u16 = 2;
const IFLA_TUN_TYPE: u16 = 3;
const IFLA_TUN_PI: u16 = 4;
const IFLA_TUN_VNET_HDR: u16 = 5;
const IFLA_TUN_PERSIST: u16 = 6;
const IFLA_TUN_MULTI_QUEUE: u16 = 7;

/// `selinuxfs`' magic number (linux/magic.h).
const SELINUX_MAGIC: libc::c_long = 0xf97cff8c;

/// A tap device to create (see [`Rtnl::add_tap`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewTap {
    /// At most 15 bytes; a `%` (a kernel name template) is refused.
    pub name: String,
    /// Several queues (`IFF_MULTI_QUEUE`): each attaching descriptor gets one.
    pub multi_queue: bool,
    /// The user allowed to attach without CAP_NET_ADMIN (`TUNSETOWNER`).
    pub owner: Option<u32>,
    /// The group allowed to attach without CAP_NET_ADMIN (`TUNSETGROUP`).
    pub group: Option<u32>,
    /// The SELinux context the device is created in (its label).
    pub selinux_context: Option<String>,
}

/// A tun/tap link's settings as the kernel reports them (`IFLA_INFO_DATA`
/// of kind "tun"; `ip -d link` shows them as `tun type tap …`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TunInfo {
    /// A tap (Ethernet frames), not a tun (IP packets).
    pub tap: bool,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub multi_queue: bool,
    /// Outlives its descriptors.
    pub persist: bool,
    /// Frames carry a packet-information header (`IFF_NO_PI` clear).
    pub pi: bool,
    /// Frames carry a virtio-net header.
    pub vnet_hdr: bool,
}

impl TunInfo {
    pub(crate) fn parse(d: Attrs<'_>) -> TunInfo {
        let flag = |ty| d.get(ty).is_some_and(|a| a.u8() != 0);
        TunInfo {
            tap: d.get(IFLA_TUN_TYPE).is_some_and(|a| a.u8() == libc::IFF_TAP as u8),
            owner: d.get(IFLA_TUN_OWNER).map(|a| a.u32()),
            group: d.get(IFLA_TUN_GROUP).map(|a| a.u32()),
            multi_queue: flag(IFLA_TUN_MULTI_QUEUE),
            persist: flag(IFLA_TUN_PERSIST),
            pi: flag(IFLA_TUN_PI),
            vnet_hdr: flag(IFLA_TUN_VNET_HDR),
        }
    }

    /// What [`Rtnl::add_tap`] makes of `t`: a persistent tap without
    /// packet-information or virtio-net header (the process that attaches
    /// sets those for itself).
    pub fn of(t: &NewTap) -> TunInfo {
        TunInfo {
            tap: true,
            owner: t.owner,
            group: t.group,
            multi_queue: t.multi_queue,
            persist: true,
            pi: false,
            vnet_hdr: false,
        }
    }
}

impl Rtnl {
    /// Create a persistent tap in this socket's netns. `EBUSY` when a link
    /// of that name exists (the tap is never attached to an existing one),
    /// `EINVAL` for a name that is empty, too long or a template (`%`).
    pub fn add_tap(&mut self, tap: &NewTap) -> NlResult<()> {
        check_name(&tap.name)?;
        match &tap.selinux_context {
            None => self.in_own_netns(|| Ok(create(tap)))?,
            Some(label) => self.in_own_netns(|| Ok(create_with_ip(tap, Some(label))))?,
        }
    }
}

/// Names TUNSETIFF would not take as they are: an empty one or a template
/// gets a name the kernel picks, a long one is cut.
pub(crate) fn check_name(name: &str) -> NlResult<()> {
    if name.is_empty() || name.len() > 15 || name.contains('%') {
        return Err(NlError { errno: libc::EINVAL, ext: Some(format!("invalid tap name {name:?}")) });
    }
    Ok(())
}

fn os_error(what: &str) -> NlError {
    let e = io::Error::last_os_error();
    NlError { errno: e.raw_os_error().unwrap_or(libc::EIO), ext: Some(format!("{what}: {e}")) }
}

/// The ioctls, on a descriptor opened here (the calling thread's netns).
fn create(tap: &NewTap) -> NlResult<()> {
    let tun =
        OpenOptions::new().read(true).write(true).custom_flags(libc::O_CLOEXEC).open(TUN_DEVICE).map_err(
            |e| NlError {
                errno: e.raw_os_error().unwrap_or(libc::EIO),
                ext: Some(format!("opening {TUN_DEVICE}: {e}")),
            },
        )?;
    // struct ifreq: the name, then ifr_flags (a short) in the union.
    let mut ifr = [0u8; std::mem::size_of::<libc::ifreq>()];
    ifr[..tap.name.len()].copy_from_slice(tap.name.as_bytes());
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_TUN_EXCL;
    if tap.multi_queue {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    ifr[libc::IFNAMSIZ..libc::IFNAMSIZ + 2].copy_from_slice(&(flags as u16).to_ne_bytes());
    // SAFETY: a valid descriptor and an ifreq-sized buffer the kernel may write back into.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
        return Err(os_error("TUNSETIFF"));
    }
    set(&tun, libc::TUNSETOWNER, tap.owner, "TUNSETOWNER")?;
    set(&tun, libc::TUNSETGROUP, tap.group, "TUNSETGROUP")?;
    set(&tun, libc::TUNSETPERSIST, Some(1), "TUNSETPERSIST")
    // Closing `tun` detaches it; the device stays, persistent.
}

fn set(tun: &File, request: libc::Ioctl, value: Option<u32>, what: &str) -> NlResult<()> {
    let Some(v) = value else { return Ok(()) };
    // SAFETY: these requests take their argument by value.
    if unsafe { libc::ioctl(tun.as_raw_fd(), request, v as libc::c_ulong) } < 0 {
        return Err(os_error(what));
    }
    Ok(())
}

/// `ip tuntap add` for `tap`, run here (its netns is the calling thread's),
/// with `exec_label` as the SELinux context it runs in.
pub(crate) fn create_with_ip(tap: &NewTap, exec_label: Option<&str>) -> NlResult<()> {
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("ip");
    let mut cmd = Command::new(ip);
    cmd.args(["tuntap", "add", "mode", "tap", "name", &tap.name]);
    if tap.multi_queue {
        cmd.arg("multi_queue");
    }
    if let Some(uid) = tap.owner {
        cmd.args(["user", &uid.to_string()]);
    }
    if let Some(gid) = tap.group {
        cmd.args(["group", &gid.to_string()]);
    }
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    if let Some(label) = exec_label {
        let label = CString::new(label).map_err(|_| NlError {
            errno: libc::EINVAL,
            ext: Some("an SELinux context cannot contain a NUL byte".into()),
        })?;
        // SAFETY: the closure runs between fork and exec and only makes
        // async-signal-safe calls on data prepared before the fork.
        unsafe { cmd.pre_exec(move || set_exec_label(&label)) };
    }
    let out = cmd.output().map_err(|e| NlError {
        errno: e.raw_os_error().unwrap_or(libc::EIO),
        ext: Some(match exec_label {
            Some(l) => format!("running {ip} tuntap add with SELinux context {l:?}: {e}"),
            None => format!("running {ip} tuntap add: {e}"),
        }),
    })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let busy = stderr.contains("busy");
        return Err(NlError {
            errno: if busy { libc::EBUSY } else { libc::EIO },
            ext: Some(format!("{ip} tuntap add: {}", stderr.trim())),
        });
    }
    Ok(())
}

/// Make the next exec run in SELinux context `label` (the child's own thread).
fn set_exec_label(label: &CString) -> io::Result<()> {
    let path = c"/proc/thread-self/attr/exec";
    // SAFETY: plain syscalls on a static path and a buffer we own.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let bytes = label.as_bytes();
        let n = libc::write(fd, bytes.as_ptr() as *const libc::c_void, bytes.len());
        let e = io::Error::last_os_error();
        libc::close(fd);
        if n != bytes.len() as isize {
            return Err(e);
        }
    }
    Ok(())
}

/// Whether SELinux is enabled here (selinuxfs is mounted at /sys/fs/selinux).
pub fn selinux_enabled() -> bool {
    // SAFETY: statfs is plain data, filled by statfs(2) on a static path.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and out pointer.
    let ok = unsafe { libc::statfs(c"/sys/fs/selinux".as_ptr(), &mut st) } == 0;
    ok && st.f_type as libc::c_long == SELINUX_MAGIC
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::testns::TestNs;

    fn tap(name: &str) -> NewTap {
        NewTap { name: name.into(), ..NewTap::default() }
    }

    #[test]
    fn names_the_kernel_would_change_are_refused() {
        for bad in ["", "sixteen-bytes-xx", "tap%d"] {
            assert_eq!(check_name(bad).unwrap_err().errno, libc::EINVAL, "{bad:?}");
        }
        check_name("fifteen-bytes-x").unwrap();
    }

    #[test]
    fn ip_tuntap_makes_the_same_device_as_the_ioctls() {
        let Some(ns) = TestNs::new("tap") else { return };
        let mut nl = Rtnl::in_netns(&ns.netns()).unwrap();
        for t in [
            NewTap { multi_queue: true, owner: Some(1000), group: Some(1001), ..tap("viaioctl") },
            tap("plain"),
        ] {
            nl.add_tap(&t).unwrap();
            let by_ioctl = nl.link_by_name(&t.name).unwrap();
            assert_eq!(by_ioctl.tun, Some(TunInfo::of(&t)), "{t:?}");
            nl.del_link(by_ioctl.index).unwrap();
            let netns = ns.netns();
            netns.visit(|| create_with_ip(&t, None)).unwrap().unwrap();
            assert_eq!(nl.link_by_name(&t.name).unwrap().tun, by_ioctl.tun, "{t:?} through ip");
            let e = netns.visit(|| create_with_ip(&t, None)).unwrap().unwrap_err();
            assert_eq!(e.errno, libc::EBUSY, "{e}");
            nl.del_link_by_name(&t.name).unwrap();
        }
    }

    #[test]
    fn an_selinux_context_without_selinux_fails_and_makes_nothing() {
        let Some(ns) = TestNs::new("tap") else { return };
        if selinux_enabled() {
            eprintln!("skipping: SELinux is enabled here");
            return;
        }
        let mut nl = Rtnl::in_netns(&ns.netns()).unwrap();
        let t = NewTap { selinux_context: Some("system_u:system_r:container_t:s0".into()), ..tap("sel0") };
        let e = nl.add_tap(&t).unwrap_err();
        assert!(e.to_string().contains("SELinux context \"system_u:system_r:container_t:s0\""), "{e}");
        assert!(nl.link_by_name("sel0").unwrap_err().not_found());
    }
}
