//! Socket addresses in the kernel's form (`sockaddr_storage`), for the raw
//! socket calls std does not offer (recvmmsg/sendmmsg, bind with options).

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Run `f` (a bind or connect) with a path to the unix socket `path` that
/// fits a `sun_path` (108 bytes with its NUL): `path` itself, or, when it is
/// longer (a state dir named after a long network name), the same file
/// through an `O_PATH` descriptor of its directory, `/proc/self/fd/N/<name>`,
/// open while `f` runs.
pub fn with_unix_path<T>(path: &Path, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
    const SUN_PATH: usize = 107;
    if path.as_os_str().len() <= SUN_PATH {
        return f(path);
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else { return f(path) };
    let dir = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW)
        .open(dir)?;
    f(&Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name))
}

/// A socket address in the kernel's form.
pub fn to_raw(addr: &SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: sockaddr_storage is plain data; zero is a valid value.
    let mut ss: libc::sockaddr_storage = unsafe { zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            let sin = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as _;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            let sin6 = unsafe { &mut *(&mut ss as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as _;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            sin6.sin6_flowinfo = a.flowinfo();
            sin6.sin6_scope_id = a.scope_id();
            size_of::<libc::sockaddr_in6>()
        }
    };
    (ss, len as libc::socklen_t)
}

/// A kernel socket address as ours (None for other families).
#[inline]
pub fn from_raw(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as libc::c_int {
        libc::AF_INET => {
            // SAFETY: the family says this is a sockaddr_in.
            let sin = unsafe { &*(ss as *const _ as *const libc::sockaddr_in) };
            let ip = Ipv4Addr::from(sin.sin_addr.s_addr.to_ne_bytes());
            Some(SocketAddr::V4(SocketAddrV4::new(ip, u16::from_be(sin.sin_port))))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this is a sockaddr_in6.
            let sin6 = unsafe { &*(ss as *const _ as *const libc::sockaddr_in6) };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod unix_path_tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn a_long_socket_path_is_reached_through_its_directory() {
        let dir =
            std::env::temp_dir().join(format!("cnirs-sun-{}", std::process::id())).join("d".repeat(200));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ctl.sock");
        assert!(UnixListener::bind(&path).is_err(), "too long for sun_path");
        let listener = with_unix_path(&path, |p| UnixListener::bind(p)).unwrap();
        assert!(path.exists(), "the socket is where it belongs");
        with_unix_path(&path, |p| UnixStream::connect(p)).unwrap();
        listener.accept().unwrap();
        // A short path is used as it is.
        with_unix_path(Path::new("/x"), |p| {
            assert_eq!(p, Path::new("/x"));
            Ok(())
        })
        .unwrap();
        std::fs::remove_dir_all(dir.parent().unwrap()).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_convert_both_ways() {
        for s in ["10.1.2.3:53", "[fd00::1]:5353", "[fe80::1%2]:53"] {
            let a: SocketAddr = s.parse().unwrap();
            let (ss, _) = to_raw(&a);
            assert_eq!(from_raw(&ss), Some(a));
        }
    }
}
