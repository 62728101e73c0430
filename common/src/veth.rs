//! The veth pair that plugs a container into a host-side switch (bridge,
//! overlay, ptp): created from inside the container so its end is born with
//! `CNI_IFNAME` (and MAC), the host end appearing in the host netns under a
//! fresh random name; and the wait for its host end to carry traffic.

use crate::links::{ensure_name_free, link_error};
use crate::net::NetStack;
use crate::netlink::rtnl::{Link, LinkKind, NewLink, IF_OPER_UP};
use crate::{CniError, Result};

/// Create the pair from the container side: the container end is `ifname`
/// (with `mtu` and `mac`), the host end appears in `host`'s netns, down,
/// as `veth` + 8 hex digits, which is returned. An `ifname` the container
/// already has is [`crate::links::name_taken`].
pub fn create_for_container(
    ctr: &mut impl NetStack,
    host: &mut impl NetStack,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
) -> Result<String> {
    let host_ns = host.netns_fd().map_err(|e| link_error("opening the host netns", e))?;
    for _ in 0..4 {
        let host_name = format!("veth{:08x}", crate::random_u32());
        let kind = LinkKind::Veth { peer: host_name.clone(), peer_netns_fd: Some(host_ns) };
        match ctr.add_link(&NewLink { mtu, mac, ..NewLink::new(ifname, kind) }) {
            Ok(()) => return Ok(host_name),
            // Either the container already has `ifname` or the random name collided.
            Err(e) if e.is(libc::EEXIST) => ensure_name_free(ctr, ifname)?,
            Err(e) => return Err(link_error("creating the veth pair", e)),
        }
    }
    Err(CniError::try_again("could not find a free name for the host veth"))
}

/// A pair with both ends in `net`: one called `name` (with `mtu`), the other
/// `veth` + 8 hex digits, which is returned; both down. A taken `name` is
/// an error saying so.
pub fn create_local(net: &mut impl NetStack, name: &str, mtu: Option<u32>) -> Result<String> {
    for _ in 0..4 {
        let peer = format!("veth{:08x}", crate::random_u32());
        let kind = LinkKind::Veth { peer: peer.clone(), peer_netns_fd: None };
        match net.add_link(&NewLink { mtu, ..NewLink::new(name, kind) }) {
            Ok(()) => return Ok(peer),
            // Either `name` is taken or the random name collided.
            Err(e) if e.is(libc::EEXIST) && net.link_by_name(name).is_ok() => {
                return Err(CniError::internal(format!("an interface named {name:?} already exists")))
            }
            Err(e) if e.is(libc::EEXIST) => {}
            Err(e) => return Err(link_error(&format!("creating the veth pair {name:?}"), e)),
        }
    }
    Err(CniError::try_again("could not find a free name for a veth"))
}

/// Wait until a link is operationally up: carrier (and a bridge port's
/// state) come up asynchronously after both ends are set up, and until the
/// kernel's link watch has run the link drops what it is given (the
/// container's first packets). Back-off as the reference plugin: 0, 50, 500,
/// 1000, 1000 ms.
pub fn wait_oper_up(nl: &mut impl NetStack, index: u32) -> Result<Link> {
    let mut name = String::new();
    for ms in [0u64, 50, 500, 1000, 1000] {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let l = nl.link_by_index(index).map_err(|e| link_error("the veth", e))?;
        if l.oper_state == IF_OPER_UP {
            return Ok(l);
        }
        name = l.name;
    }
    Err(CniError::internal(format!("{name} did not come up (its operational state is not up after 2.5 s)")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;

    fn names(net: &mut impl NetStack) -> Vec<String> {
        let mut v: Vec<String> = net.links().unwrap().into_iter().map(|l| l.name).collect();
        v.sort();
        v
    }

    #[test]
    fn a_veth_is_born_with_its_container_name_and_a_fresh_host_name() {
        let k = FakeKernel::new();
        let (mut host, mut ctr) = (k.host(), k.netns("c1"));
        let mac = [2, 0, 0, 0, 0, 7];
        let host_name = create_for_container(&mut ctr, &mut host, "eth0", Some(1400), Some(mac)).unwrap();
        assert!(host_name.starts_with("veth") && host_name.len() == 12, "{host_name}");
        let (c, h) = (ctr.link_by_name("eth0").unwrap(), host.link_by_name(&host_name).unwrap());
        assert_eq!((c.mac, c.mtu, h.mtu, c.link, h.is_up()), (Some(mac), 1400, 1400, Some(h.index), false));

        // A taken container name is refused and nothing is made.
        let before = k.state();
        let e = create_for_container(&mut ctr, &mut host, "eth0", None, None).unwrap_err();
        assert_eq!(e.msg, "container already has an interface named \"eth0\"");
        assert_eq!(k.state(), before);

        // A host name that collides is drawn again.
        k.fail_on("add_link", libc::EEXIST);
        create_for_container(&mut ctr, &mut host, "eth1", None, None).unwrap();
        assert_eq!(names(&mut ctr), ["eth0", "eth1", "lo"]);
    }

    #[test]
    fn a_local_pair_has_both_ends_here() {
        let k = FakeKernel::new();
        let mut host = k.host();
        let peer = create_local(&mut host, "br0.10", Some(1400)).unwrap();
        let (a, b) = (host.link_by_name("br0.10").unwrap(), host.link_by_name(&peer).unwrap());
        assert!(peer.starts_with("veth") && peer.len() == 12, "{peer}");
        assert_eq!((a.link, b.link, a.mtu, b.mtu), (Some(b.index), Some(a.index), 1400, 1400));
        let e = create_local(&mut host, "br0.10", None).unwrap_err();
        assert_eq!(e.msg, "an interface named \"br0.10\" already exists");
    }

    #[test]
    fn the_host_end_is_awaited_until_both_ends_are_up() {
        let k = FakeKernel::new();
        let (mut host, mut ctr) = (k.host(), k.netns("c1"));
        let name = create_for_container(&mut ctr, &mut host, "eth0", None, None).unwrap();
        let (h, c) = (host.link_by_name(&name).unwrap().index, ctr.link_by_name("eth0").unwrap().index);
        host.set_up(h).unwrap();
        ctr.set_up(c).unwrap();
        assert_eq!(wait_oper_up(&mut host, h).unwrap().oper_state, IF_OPER_UP);
    }
}
