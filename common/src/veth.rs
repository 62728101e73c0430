//! The veth pair that plugs a container into a host-side switch: created
//! from inside the container so its end is born with `CNI_IFNAME` (and MAC),
//! the host end appearing in the host netns under a fresh random name.

use crate::netlink::rtnl::{Link, Rtnl, IF_OPER_UP};
use crate::netns::Netns;
use crate::{CniError, Result};

/// Create the pair from the container side; returns the host end's name
/// (`veth` + 8 hex digits). An `ifname` the container already has is an error.
pub fn create_for_container(
    container: &mut Rtnl,
    host_ns: &Netns,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
) -> Result<String> {
    for _ in 0..4 {
        let mut r = [0u8; 4];
        crate::random_bytes(&mut r);
        let host_name = format!("veth{:08x}", u32::from_ne_bytes(r));
        match container.add_veth(ifname, &host_name, Some(host_ns.fd()), mtu, mac) {
            Ok(()) => return Ok(host_name),
            Err(e) if e.is(libc::EEXIST) => {
                // Either the container already has `ifname` or the random name collided.
                if container.link_by_name(ifname).is_ok() {
                    return Err(CniError::internal(format!(
                        "container already has an interface named {ifname:?}"
                    )));
                }
            }
            Err(e) => return Err(CniError::internal(format!("creating the veth pair: {e}"))),
        }
    }
    Err(CniError::try_again("could not find a free name for the host veth"))
}

/// A random, locally administered unicast MAC.
pub fn random_mac() -> [u8; 6] {
    let mut m = [0u8; 6];
    crate::random_bytes(&mut m);
    m[0] = (m[0] & 0xfe) | 0x02;
    m
}

/// Wait until a link is operationally up: carrier and bridge port state come
/// up asynchronously after both ends are set up, and until then the
/// container's first packets are dropped. Back-off as the reference plugin:
/// 0, 50, 500, 1000, 1000 ms.
pub fn wait_oper_up(nl: &mut Rtnl, index: u32) -> Result<Link> {
    for ms in [0u64, 50, 500, 1000, 1000] {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let l = nl.link_by_index(index).map_err(|e| CniError::internal(format!("host veth: {e}")))?;
        if l.oper_state == IF_OPER_UP {
            return Ok(l);
        }
    }
    Err(CniError::internal("bridge port in error state: the host veth did not come up"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_macs_are_local_unicast() {
        for _ in 0..64 {
            let m = random_mac();
            assert_eq!(m[0] & 0x03, 0x02, "{m:?}");
        }
    }
}
