//! Network namespaces: open one by path, run work inside it on a scoped
//! thread, open netlink sockets inside it.
//!
//! A thread that entered another netns never comes back into service: the
//! closure runs on a fresh thread that ends with it, so no thread of ours is
//! ever left in the wrong namespace.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::netlink::Socket;

const NSFS_MAGIC: libc::c_long = 0x6e736673;
const PROC_SUPER_MAGIC: libc::c_long = 0x9fa0;

#[derive(Debug)]
pub struct Netns {
    file: File,
    path: PathBuf,
}

impl Netns {
    /// Open a netns by path (`/run/netns/x`, `/proc/<pid>/ns/net`, a bind mount).
    /// A path that does not exist gives `ErrorKind::NotFound`; a path that is
    /// not a network namespace gives `ErrorKind::InvalidInput`.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Netns> {
        let path = path.as_ref();
        let file = File::open(path)?;
        // SAFETY: statfs is plain data, filled by fstatfs on a valid fd.
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid fd and a valid out pointer.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } < 0 {
            return Err(io::Error::last_os_error());
        }
        let magic = st.f_type as libc::c_long;
        if magic != NSFS_MAGIC && magic != PROC_SUPER_MAGIC {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a network namespace", path.display()),
            ));
        }
        Ok(Netns { file, path: path.to_path_buf() })
    }

    /// The container netns for ADD/CHECK: any failure is a clear CNI error.
    pub fn open_container(path: &str) -> crate::Result<Netns> {
        Netns::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => {
                crate::CniError::invalid_netns(format!("netns {path:?} does not exist"))
            }
            _ => crate::CniError::invalid_netns(format!("failed to open netns {path:?}: {e}")),
        })
    }

    /// The container netns for DEL: `None` when there is none any more (empty
    /// path, deleted bind mount, exited process), so DEL can still clean up
    /// host-side state and succeed.
    pub fn open_if_exists(path: &str) -> crate::Result<Option<Netns>> {
        if path.is_empty() {
            return Ok(None);
        }
        match Netns::open(path) {
            Ok(ns) => Ok(Some(ns)),
            Err(e) if matches!(e.kind(), io::ErrorKind::NotFound | io::ErrorKind::InvalidInput) => Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
            Err(e) => Err(crate::CniError::invalid_netns(format!("failed to open netns {path:?}: {e}"))),
        }
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

    /// True when both handles name the same namespace.
    pub fn same_as(&self, other: &Netns) -> io::Result<bool> {
        let (a, b) = (self.file.metadata()?, other.file.metadata()?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
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

#[cfg(test)]
mod tests {
    use super::*;

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
