//! Network namespaces: open one by path, run work inside it on a scoped
//! thread, open netlink sockets inside it.
//!
//! A thread that entered another netns never comes back into service: the
//! closure runs on a fresh thread that ends with it, so no thread of ours is
//! ever left in the wrong namespace.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::netlink::Socket;

const NSFS_MAGIC: libc::c_long = 0x6e736673;
/// Pseudo file systems whose files all look empty.
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;
const SYSFS_MAGIC: libc::c_long = 0x62656572;
/// `NS_GET_NSTYPE` from <linux/nsfs.h>: `_IO(0xb7, 0x3)` (Linux 4.11).
const NS_GET_NSTYPE: libc::c_ulong = 0xb703;

#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

/// Why a path is not a network namespace we can enter.
#[derive(Debug)]
enum NotNetns {
    /// Nothing there: the path does not exist, or names a process that exited.
    Gone(io::Error),
    /// An empty regular file: the mount point of a netns that was unmounted,
    /// or that is mounted only in another mount namespace.
    Unmounted,
    /// Anything else: a FIFO, socket, device, directory, ordinary file,
    /// another kind of namespace, or a path we may not open.
    Invalid(String),
}

impl NotNetns {
    /// "<path> <what is wrong>", for messages.
    fn describe(&self, path: &Path) -> String {
        let p = path.display();
        match self {
            NotNetns::Gone(e) if e.raw_os_error() == Some(libc::ENOENT) => format!("{p:?} does not exist"),
            NotNetns::Gone(e) => format!("{p:?} is gone: {e}"),
            NotNetns::Unmounted => format!(
                "{p:?} is an empty file, not a network namespace: nothing is mounted on it here \
                 (the netns was deleted, or is mounted in another mount namespace)"
            ),
            NotNetns::Invalid(what) => format!("{p:?} {what}"),
        }
    }
}

impl Netns {
    /// Open a netns by path (`/run/netns/x`, `/proc/<pid>/ns/net`, a bind mount).
    /// A path that does not exist gives `ErrorKind::NotFound`; a path that is
    /// not a network namespace gives `ErrorKind::InvalidInput`. Never blocks
    /// and never opens anything else for reading: a FIFO, socket or device
    /// path is only looked at (O_PATH), never opened.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Netns> {
        let path = path.as_ref();
        match probe(path) {
            Ok(file) => Ok(Netns { file, path: path.to_path_buf() }),
            Err(why @ NotNetns::Gone(_)) => Err(io::Error::new(io::ErrorKind::NotFound, why.describe(path))),
            Err(why) => Err(io::Error::new(io::ErrorKind::InvalidInput, why.describe(path))),
        }
    }

    /// The container netns for ADD/CHECK: anything but a network namespace
    /// is an invalid environment, code 8 (libcni's ErrInvalidNetNS).
    pub fn open_container(path: &str) -> crate::Result<Netns> {
        probe(Path::new(path)).map(|file| Netns { file, path: PathBuf::from(path) }).map_err(|why| {
            crate::CniError::invalid_netns(format!("CNI_NETNS {}", why.describe(Path::new(path))))
        })
    }

    /// The container netns for DEL: `None` when there is none any more (empty
    /// path, deleted bind mount, exited process, or an empty mount point left
    /// by an unmounted netns), so DEL can still clean up host-side state and
    /// succeed. A path that cannot ever have been a netns (a FIFO, socket,
    /// device, directory, ordinary file, another namespace type) is code 8:
    /// the runtime passed garbage, and the attachment may still be alive in a
    /// netns we were not shown; the runtime can DEL with an empty CNI_NETNS to
    /// release the host side.
    pub fn open_if_exists(path: &str) -> crate::Result<Option<Netns>> {
        if path.is_empty() {
            return Ok(None);
        }
        match probe(Path::new(path)) {
            Ok(file) => Ok(Some(Netns { file, path: PathBuf::from(path) })),
            Err(NotNetns::Gone(_) | NotNetns::Unmounted) => Ok(None),
            Err(why) => Err(crate::CniError::invalid_netns(format!(
                "CNI_NETNS {} (a DEL with an empty CNI_NETNS releases the host side)",
                why.describe(Path::new(path))
            ))),
        }
    }

    /// A new, empty network namespace (only `lo`, down), alive while this
    /// handle or anything opened in it (a netlink socket) lives. When the
    /// last goes, the kernel destroys the virtual links still in it and
    /// returns physical devices to the initial netns.
    pub fn scratch() -> io::Result<Netns> {
        let file = std::thread::scope(|s| {
            s.spawn(|| {
                // SAFETY: affects only this thread, which ends right after.
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                File::open("/proc/thread-self/ns/net")
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the thread making a netns failed")))
        })?;
        Ok(Netns { file, path: PathBuf::from("(scratch netns)") })
    }

    /// The netns of the calling thread.
    pub fn current() -> io::Result<Netns> {
        Netns::open("/proc/thread-self/ns/net")
    }

    /// The namespace fd, e.g. for IFLA_NET_NS_FD when creating a link inside it.
    pub fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Another handle on the same namespace (the fd duplicated).
    pub fn try_clone(&self) -> io::Result<Netns> {
        Ok(Netns { file: self.file.try_clone()?, path: self.path.clone() })
    }

    /// True when both handles name the same namespace.
    pub fn same_as(&self, other: &Netns) -> io::Result<bool> {
        let (a, b) = (self.file.metadata()?, other.file.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    }

    /// An exclusive flock on the namespace itself, the lock the reference's
    /// sbr takes on `CNI_NETNS`: plugins that pick free numbers inside one
    /// container (routing tables) take turns, ours and the reference's
    /// alike. Code 11 when it stays busy (see [`crate::lock::lock_wait`]).
    pub fn lock(&self) -> crate::Result<crate::lock::FileLock> {
        // An open file description of its own (reopened through /proc), so
        // that the lock ends with the returned guard, not with this handle.
        let reopen = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        File::open(reopen)
            .and_then(|f| crate::lock::FileLock::exclusive_on(f, &self.path, crate::lock::lock_wait()))
            .map_err(|e| crate::lock::lock_error(&self.path, e))
    }

    /// Run `f` inside this netns on a short-lived thread and return its value.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        std::thread::scope(|s| {
            s.spawn(|| {
                // The thread must not share its fs attributes for setns to be allowed
                // in all cases; CLONE_NEWNET only needs the fd.
                // SAFETY: valid netns fd; affects this thread only.
                if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(f())
            })
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("thread inside the netns failed")))
        })
    }

    /// A netlink socket of `protocol` that lives in this netns. The calling
    /// thread enters the netns only for the socket(2) call and comes straight
    /// back: cheaper than a thread, and a socket keeps the netns it was born in.
    pub fn socket(&self, protocol: libc::c_int) -> io::Result<Socket> {
        self.visit(|| Socket::open(protocol))?
    }

    /// Run `f` on the calling thread inside this netns, then return to the
    /// thread's own netns (also when `f` unwinds). For short, non-blocking
    /// work such as opening sockets or /proc/sys files.
    pub fn visit<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        let home = File::open("/proc/thread-self/ns/net")?;
        // SAFETY: valid netns fd; affects this thread only.
        if unsafe { libc::setns(self.file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
            return Err(io::Error::last_os_error());
        }
        struct Return(File);
        impl Drop for Return {
            fn drop(&mut self) {
                // SAFETY: valid netns fd of our own netns.
                if unsafe { libc::setns(self.0.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                    // A thread stranded in the wrong netns must never go on working.
                    std::process::abort();
                }
            }
        }
        let _back = Return(home);
        Ok(f())
    }

    /// A route netlink socket in this netns.
    pub fn route_socket(&self) -> io::Result<Socket> {
        self.socket(libc::NETLINK_ROUTE)
    }
}

/// Open `path` if it is a network namespace, without ever blocking: look at
/// it through an O_PATH descriptor first (which opens nothing: no FIFO
/// rendezvous, no device open side effects), and open it for real only once
/// it is known to be a namespace file.
fn probe(path: &Path) -> Result<File, NotNetns> {
    let c = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| NotNetns::Invalid("contains a NUL byte".into()))?;
    // SAFETY: a valid C string; O_PATH opens no file contents.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        let e = io::Error::last_os_error();
        return Err(match e.raw_os_error() {
            Some(libc::ENOENT | libc::ESRCH) => NotNetns::Gone(e),
            _ => NotNetns::Invalid(format!("cannot be opened: {e}")),
        });
    }
    // SAFETY: a descriptor we just opened and own.
    let handle = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: statfs is plain data, filled by fstatfs on a valid fd.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a valid out pointer.
    if unsafe { libc::fstatfs(handle.as_raw_fd(), &mut st) } < 0 {
        return Err(NotNetns::Invalid(format!("cannot be inspected: {}", io::Error::last_os_error())));
    }
    let magic = st.f_type as libc::c_long;
    if magic != NSFS_MAGIC {
        let meta = File::from(handle)
            .metadata()
            .map_err(|e| NotNetns::Invalid(format!("cannot be inspected: {e}")))?;
        let t = meta.file_type();
        let what = if t.is_fifo() {
            "a FIFO"
        } else if t.is_socket() {
            "a socket"
        } else if t.is_char_device() || t.is_block_device() {
            "a device"
        } else if t.is_dir() {
            "a directory"
        } else if meta.len() == 0 && magic != PROC_SUPER_MAGIC && magic != SYSFS_MAGIC {
            return Err(NotNetns::Unmounted);
        } else {
            "an ordinary file"
        };
        return Err(NotNetns::Invalid(format!("is {what}, not a network namespace")));
    }
    // Reopen the same inode for reading (setns refuses O_PATH descriptors).
    let file = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
        .map_err(|e| NotNetns::Invalid(format!("cannot be opened: {e}")))?;
    // SAFETY: an ioctl without argument on a valid fd.
    let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
    if kind >= 0 && kind != libc::CLONE_NEWNET {
        return Err(NotNetns::Invalid(format!("is {}, not a network namespace", namespace_kind(kind))));
    }
    Ok(file)
}

fn namespace_kind(clone_flag: libc::c_int) -> &'static str {
    match clone_flag {
        libc::CLONE_NEWNS => "a mount namespace",
        libc::CLONE_NEWUTS => "a UTS namespace",
        libc::CLONE_NEWIPC => "an IPC namespace",
        libc::CLONE_NEWUSER => "a user namespace",
        libc::CLONE_NEWPID => "a PID namespace",
        libc::CLONE_NEWCGROUP => "a cgroup namespace",
        _ => "another kind of namespace",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn current_netns_is_itself() {
        let a = Netns::current().unwrap();
        let b = Netns::open("/proc/self/ns/net").unwrap();
        assert!(a.same_as(&b).unwrap());
    }

    #[test]
    fn visit_comes_back_home() {
        let here = Netns::current().unwrap();
        let same = Netns::open("/proc/self/ns/net").unwrap();
        let inode = same.visit(|| Netns::current().unwrap()).unwrap();
        assert!(inode.same_as(&here).unwrap());
        assert!(Netns::current().unwrap().same_as(&here).unwrap());
    }

    #[test]
    fn the_netns_lock_is_a_flock_on_the_namespace_that_ends_with_its_guard() {
        let ns = Netns::open("/proc/self/ns/net").unwrap();
        // What the reference's sbr does: flock on a description of its own.
        let theirs = File::open("/proc/thread-self/ns/net").unwrap();
        // SAFETY: a valid descriptor; a non-blocking flock.
        let try_theirs = || unsafe { libc::flock(theirs.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        let guard = ns.lock().unwrap();
        assert_eq!(try_theirs(), -1, "held by our guard");
        drop(guard);
        assert_eq!(try_theirs(), 0, "free again while the Netns handle lives");
    }

    /// Run `f` on its own thread and fail, rather than hang the suite, if
    /// it has not returned after a minute (a blocked open never returns).
    fn without_hanging<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(std::time::Duration::from_secs(60)).unwrap_or_else(|_| panic!("{what}: hung"))
    }

    /// A temp dir holding one of every kind of file that is not a netns.
    struct Zoo(PathBuf, Option<std::os::unix::net::UnixListener>);

    impl Zoo {
        fn new(tag: &str) -> Zoo {
            let dir = std::env::temp_dir().join(format!("cni-netns-zoo-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("dir")).unwrap();
            let fifo = CString::new(dir.join("fifo").as_os_str().as_bytes()).unwrap();
            // SAFETY: a valid C string.
            assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
            std::os::unix::fs::symlink(dir.join("fifo"), dir.join("link-to-fifo")).unwrap();
            std::os::unix::fs::symlink(dir.join("nowhere"), dir.join("dangling")).unwrap();
            std::fs::write(dir.join("file"), "not a netns\n").unwrap();
            std::fs::write(dir.join("empty"), "").unwrap();
            let sock = std::os::unix::net::UnixListener::bind(dir.join("sock")).unwrap();
            Zoo(dir, Some(sock))
        }
        fn path(&self, name: &str) -> String {
            self.0.join(name).to_string_lossy().into_owned()
        }
    }

    impl Drop for Zoo {
        fn drop(&mut self) {
            self.1.take();
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// The /proc netns path of a process that has exited and been reaped.
    fn dead_process_netns() -> String {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        format!("/proc/{pid}/ns/net")
    }

    #[test]
    fn garbage_is_refused_at_once_with_what_it_is() {
        let zoo = Zoo::new("add");
        let cases = [
            (zoo.path("fifo"), "is a FIFO, not a network namespace"),
            (zoo.path("link-to-fifo"), "is a FIFO, not a network namespace"),
            (zoo.path("sock"), "is a socket, not a network namespace"),
            (zoo.path("dir"), "is a directory, not a network namespace"),
            ("/dev/null".into(), "is a device, not a network namespace"),
            (zoo.path("file"), "is an ordinary file, not a network namespace"),
            (zoo.path("empty"), "is an empty file, not a network namespace: nothing is mounted on it here"),
            ("/proc/self/ns/mnt".into(), "is a mount namespace, not a network namespace"),
            ("/proc/self/ns/uts".into(), "is a UTS namespace, not a network namespace"),
            ("/proc/self/status".into(), "is an ordinary file, not a network namespace"),
        ];
        for (path, why) in cases {
            let p = path.clone();
            let e = without_hanging(&path, move || Netns::open(&p).unwrap_err());
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{path}: {e}");
            let p = path.clone();
            let e = without_hanging(&path, move || Netns::open_container(&p).unwrap_err());
            assert_eq!(e.code, 8, "{path}");
            assert!(e.msg.starts_with(&format!("CNI_NETNS {path:?} {why}")), "{path}: {}", e.msg);
        }
    }

    #[test]
    fn missing_netns_is_code_8_for_add_and_nothing_to_do_for_del() {
        let zoo = Zoo::new("gone");
        for path in [zoo.path("nowhere"), zoo.path("dangling"), dead_process_netns(), String::new()] {
            let e = Netns::open(&path).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::NotFound, "{path}: {e}");
            let e = Netns::open_container(&path).unwrap_err();
            assert_eq!((e.code, e.msg.clone()), (8, format!("CNI_NETNS {path:?} does not exist")));
            assert!(Netns::open_if_exists(&path).unwrap().is_none(), "{path}");
        }
    }

    #[test]
    fn del_treats_an_empty_mount_point_as_gone_and_garbage_as_an_error() {
        let zoo = Zoo::new("del");
        assert!(Netns::open_if_exists(&zoo.path("empty")).unwrap().is_none());
        for name in ["fifo", "link-to-fifo", "sock", "dir", "file"] {
            let path = zoo.path(name);
            let p = path.clone();
            let e = without_hanging(&path, move || Netns::open_if_exists(&p).unwrap_err());
            assert_eq!(e.code, 8, "{path}");
            assert!(e.msg.contains("not a network namespace"), "{path}: {}", e.msg);
            assert!(e.msg.contains("empty CNI_NETNS"), "{path}: {}", e.msg);
        }
        for path in ["/dev/null", "/proc/self/ns/mnt"] {
            assert_eq!(Netns::open_if_exists(path).unwrap_err().code, 8, "{path}");
        }
    }

    #[test]
    fn a_real_netns_opens_by_every_kind_of_path() {
        let own = Netns::current().unwrap();
        for path in ["/proc/self/ns/net", "/proc/thread-self/ns/net"] {
            assert!(Netns::open_container(path).unwrap().same_as(&own).unwrap(), "{path}");
            assert!(Netns::open_if_exists(path).unwrap().unwrap().same_as(&own).unwrap(), "{path}");
        }
        // Entering it works: the descriptor is a real one, not O_PATH.
        assert!(Netns::open("/proc/self/ns/net").unwrap().visit(|| ()).is_ok());
    }

    #[test]
    fn non_netns_paths_are_refused() {
        let e = Netns::open("/etc/hostname").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        let e = Netns::open("/nonexistent/netns").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(Netns::open_if_exists("/nonexistent/netns").unwrap().is_none());
        assert!(Netns::open_if_exists("").unwrap().is_none());
        assert_eq!(Netns::open_container("/nonexistent/netns").unwrap_err().code, 8);
    }
}
