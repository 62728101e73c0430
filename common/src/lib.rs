//! Shared mechanisms of the CNI plugin suite. Every kernel touch lives here,
//! one module per subsystem, so a fix lands once.

pub mod args;
pub mod conntrack;
pub mod daemon;
pub mod dns_names;
pub mod error;
#[cfg(any(test, feature = "fake"))]
pub mod fake;
pub mod ifconfig;
pub mod ipam;
pub mod ipnet;
pub mod links;
pub mod lock;
pub mod masq;
pub mod net;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod on_master;
pub mod skel;
pub mod sockaddr;
pub mod spec;
pub mod sysctl;
pub mod tap;
pub mod undo;
pub mod veth;

pub use error::{CniError, Context, Errors, Result};

/// Fill `buf` from the kernel's random pool (names, MACs).
pub fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: writes at most the remaining length into our own buffer.
        let n = unsafe {
            libc::getrandom(buf[filled..].as_mut_ptr() as *mut libc::c_void, buf.len() - filled, 0)
        };
        if n > 0 {
            filled += n as usize;
        } else if std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            // getrandom cannot fail on a supported kernel; fall back to the clock.
            let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            for (i, b) in buf[filled..].iter_mut().enumerate() {
                *b = (t.as_nanos() >> ((i % 16) * 8)) as u8 ^ std::process::id() as u8;
            }
            return;
        }
    }
}

/// A random number from the kernel's pool (temporary names).
pub fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    random_bytes(&mut b);
    u32::from_ne_bytes(b)
}

/// A random, locally administered unicast MAC.
pub fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    random_bytes(&mut m);
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..64 {
            let m = super::random_mac();
            assert_eq!(m[0] & 0x03, 0x02, "{m:?}");
        }
    }
}
