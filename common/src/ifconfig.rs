//! A container interface's IP configuration: sysctls, addresses, link up and
//! routes inside the container netns (what the reference's
//! `ipam.ConfigureIface` does), and its verification for CHECK; the
//! sysctls around it (neighbour announcements, forwarding).
//!
//! Shared by every main plugin that hands an interface to a container.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::ipnet::IpNet;
use crate::links::link_error;
use crate::net::NetStack;
use crate::netlink::rtnl::{self, AddrOpts, Family, Link};
use crate::spec::{IpConfig, Route};
use crate::{CniError, Result};

const IFA_F_TENTATIVE: u32 = 0x40;

/// Configure `ifname` in `nl`'s netns: DAD policy and ARP notification
/// first, then addresses, link up, then routes (which need the addresses).
pub fn configure(
    nl: &mut impl NetStack,
    ifname: &str,
    ips: &[IpConfig],
    routes: &[Route],
    enable_dad: bool,
) -> Result<Link> {
    let has_v6 = ips.iter().any(|ip| !ip.address.is_ipv4());
    container_sysctls(nl, ifname, has_v6, enable_dad)?;
    let link = nl.link_by_name(ifname).map_err(|e| link_error("container interface", e))?;
    for ip in ips {
        // Without DAD a container's IPv6 address is usable at once instead of a second later.
        let opts = AddrOpts { nodad: !enable_dad && !ip.address.is_ipv4(), ..Default::default() };
        match nl.add_addr(link.index, ip.address.addr, ip.address.prefix, &opts) {
            Ok(()) => {}
            Err(e) if e.is(libc::EEXIST) => {}
            Err(e) => return Err(link_error(&format!("adding {} to {ifname}", ip.address), e)),
        }
    }
    nl.set_up(link.index).map_err(|e| link_error("setting the container interface up", e))?;
    if enable_dad && has_v6 {
        settle_addresses(nl, link.index)?;
    }
    for r in routes {
        let route = kernel_route(r, ips, link.index)?;
        match nl.add_route(&route) {
            Ok(()) => {}
            Err(e) if e.is(libc::EEXIST) => {}
            Err(e) => return Err(link_error(&format!("adding route to {}", r.dst), e)),
        }
    }
    nl.link_by_index(link.index).map_err(|e| link_error("container interface", e))
}

/// The container interface's settings before it gets addresses: neighbour
/// announcements, and DAD on or off for its IPv6 addresses ([`configure`]
/// sets them; a plugin configuring the interface its own way calls this first).
pub fn container_sysctls(nl: &mut impl NetStack, ifname: &str, has_v6: bool, enable_dad: bool) -> Result<()> {
    // Gratuitous ARP / unsolicited NA when the link comes up or its MAC is
    // (re)set, so neighbours learn the new MAC at once (see `announce`).
    let arp = format!("net/ipv4/conf/{ifname}/arp_notify");
    if !has_v6 {
        return Ok(nl.set_sysctl(&arp, "1")?);
    }
    let v6 = |leaf: &str| format!("net/ipv6/conf/{ifname}/{leaf}");
    let (ndisc, enhanced, accept) = (v6("ndisc_notify"), v6("enhanced_dad"), v6("accept_dad"));
    if enable_dad {
        nl.set_sysctls(&[(&arp, "1"), (&ndisc, "1"), (&enhanced, "1"), (&accept, "1")])?;
    } else {
        nl.set_sysctls(&[(&arp, "1"), (&ndisc, "1"), (&accept, "0")])?;
    }
    Ok(())
}

/// Have the kernel announce `ifname`'s addresses to its neighbours when it
/// comes up or changes MAC (`arp_notify`, and `ndisc_notify` where the netns
/// has IPv6), so that a LAN holding a stale entry for a reused address
/// learns the new MAC at once.
pub fn announce_changes(nl: &mut impl NetStack, ifname: &str) -> Result<()> {
    nl.set_sysctl(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1")?;
    // Absent when IPv6 is disabled in the netns: nothing to announce then.
    match nl.set_sysctl(&format!("net/ipv6/conf/{ifname}/ndisc_notify"), "1") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => Ok(r?),
    }
}

/// IP forwarding on in `nl`'s netns for the families in use (a gateway), and
/// for IPv4 on `ingress`, the interface the containers' routed packets come in
/// by (IPv4 asks the receiving interface; IPv6 asks only `all`).
///
/// Why both: two processes writing 1 over 0 at once can leave ip_forward
/// reading 1 with forwarding turned on for no interface (the kernel puts the
/// old value back to retry when RTNL is busy, and a writer that read the
/// interim 1 changes nothing); a host may also start new interfaces with
/// forwarding off (`conf/default`). So our writers take turns, and each makes
/// sure of its own interface. Read over netlink: on is the common case.
pub fn enable_forwarding(nl: &mut impl NetStack, ingress: &Link, v4: bool, v6: bool) -> Result<()> {
    if v4 {
        if !forwards(nl, Family::V4, None) {
            let _turn = nl.lock("ip_forward")?;
            nl.ensure_sysctl("net/ipv4/ip_forward", "1")?;
        }
        if !forwards(nl, Family::V4, Some(ingress.index)) {
            nl.set_sysctl(&format!("net/ipv4/conf/{}/forwarding", ingress.name), "1")?;
        }
    }
    if v6 && !forwards(nl, Family::V6, None) {
        nl.set_sysctl("net/ipv6/conf/all/forwarding", "1")?;
    }
    Ok(())
}

/// Unknown counts as off: the write that follows is harmless.
fn forwards(nl: &mut impl NetStack, family: Family, index: Option<u32>) -> bool {
    nl.forwarding(family, index).unwrap_or(false)
}

/// With DAD on, wait (bounded) until no address is tentative: routes through
/// a tentative source would fail.
fn settle_addresses(nl: &mut impl NetStack, index: u32) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let tentative = nl.addrs(Some(index), Family::V6)?.iter().any(|a| a.flags & IFA_F_TENTATIVE != 0);
        if !tentative {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(CniError::internal(
                "IPv6 addresses still tentative after 5s of duplicate address detection",
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A result route as the kernel wants it: network address, the family's
/// gateway when the route names none, through the container interface.
pub fn kernel_route(r: &Route, ips: &[IpConfig], oif: u32) -> Result<rtnl::Route> {
    let net = r.dst.network();
    let mut route = rtnl::Route::new(net.addr, net.prefix);
    route.gateway = r.gw.or_else(|| default_gateway(ips, &r.dst.addr));
    route.oif = Some(oif);
    if let Some(t) = r.table {
        route.table = t;
    }
    if let Some(s) = r.scope {
        route.scope = s;
    }
    route.priority = r.priority;
    route.mtu = r.mtu;
    route.advmss = r.adv_mss;
    if route.gateway.is_none() && r.scope.is_none() {
        route.scope = libc::RT_SCOPE_LINK;
    }
    Ok(route)
}

fn default_gateway(ips: &[IpConfig], like: &IpAddr) -> Option<IpAddr> {
    ips.iter().filter(|ip| ip.address.addr.is_ipv4() == like.is_ipv4()).find_map(|ip| ip.gateway)
}

/// Whether `ns` still has the addresses and routes the result promised (CHECK).
pub fn verify(nl: &mut impl NetStack, ifname: &str, ips: &[&IpConfig], routes: &[Route]) -> Result<Link> {
    let link = nl
        .link_by_name(ifname)
        .map_err(|e| CniError::internal(format!("container interface {ifname:?} is missing: {e}")))?;
    let have: Vec<IpNet> = nl
        .addrs(Some(link.index), Family::Any)?
        .into_iter()
        .map(|a| IpNet { addr: a.addr, prefix: a.prefix })
        .collect();
    for ip in ips {
        if !have.contains(&ip.address) {
            return Err(CniError::internal(format!("{ifname} lacks its address {}", ip.address)));
        }
    }
    let all = nl.routes(Family::Any, 0)?;
    for r in routes {
        let net = r.dst.network();
        let found = all
            .iter()
            .any(|k| k.dst == net.addr && k.prefix == net.prefix && (r.gw.is_none() || k.gateway == r.gw));
        if !found {
            return Err(CniError::internal(format!("route to {} is missing in the container", r.dst)));
        }
    }
    Ok(link)
}

/// Ask the kernel to announce the interface's addresses again (gratuitous ARP,
/// unsolicited NA): setting the MAC it already has raises NETDEV_CHANGEADDR,
/// which the kernel answers with announcements when arp_notify/ndisc_notify are
/// set. Cheaper than a packet socket of our own, whose close waits for the
/// network stack to quiesce (~10 ms).
pub fn announce(nl: &mut impl NetStack, link: &Link) -> Result<()> {
    let Some(mac) = link.mac else { return Ok(()) };
    nl.set_mac(link.index, mac).map_err(|e| CniError::internal(format!("announcing {}: {e}", link.name)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;
    use crate::netlink::rtnl::{LinkKind, NewLink};

    fn ip(address: &str, gateway: Option<&str>) -> IpConfig {
        IpConfig {
            address: address.parse().unwrap(),
            gateway: gateway.map(|g| g.parse().unwrap()),
            interface: None,
        }
    }

    #[test]
    fn configure_sets_dad_policy_then_addresses_then_up_then_routes() {
        let k = FakeKernel::new();
        let mut c = k.netns("c1");
        c.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
        k.clear_calls();
        let ips = [ip("10.1.0.2/24", Some("10.1.0.1")), ip("fd00::2/64", Some("fd00::1"))];
        let routes =
            [Route::new("0.0.0.0/0".parse().unwrap(), None), Route::new("::/0".parse().unwrap(), None)];
        let link = configure(&mut c, "eth0", &ips, &routes, false).unwrap();
        assert!(link.is_up());
        let ops: Vec<String> =
            k.calls().iter().map(|c| c.split_whitespace().nth(1).unwrap().into()).collect();
        assert_eq!(
            ops,
            [
                "set_sysctls",
                "link_by_name",
                "add_addr",
                "add_addr",
                "set_up",
                "add_route",
                "add_route",
                "link_by_index"
            ]
        );
        assert_eq!(c.sysctl("net/ipv6/conf/eth0/accept_dad").unwrap(), "0");
        assert_eq!(c.sysctl("net/ipv4/conf/eth0/arp_notify").unwrap(), "1");
        let v6 = c.addrs(Some(link.index), Family::V6).unwrap();
        assert_eq!(v6[0].flags & libc::IFA_F_NODAD, libc::IFA_F_NODAD, "usable at once");
        let defaults: Vec<_> = c.routes(Family::Any, 0).unwrap().into_iter().map(|r| r.gateway).collect();
        assert_eq!(
            defaults,
            [Some("10.1.0.1".parse().unwrap()), Some("fd00::1".parse().unwrap())],
            "each family's gateway"
        );
    }

    #[test]
    fn announcing_needs_no_ipv6() {
        let k = FakeKernel::new();
        let mut c = k.netns("c1");
        c.add_link(&NewLink::new("eth0", LinkKind::Dummy)).unwrap();
        k.disable_ipv6("c1");
        announce_changes(&mut c, "eth0").unwrap();
        assert_eq!(c.sysctl("net/ipv4/conf/eth0/arp_notify").unwrap(), "1");
    }

    #[test]
    fn forwarding_is_written_once_under_the_lock_and_on_the_ingress_too() {
        let k = FakeKernel::new();
        let mut c = k.netns("c1");
        c.add_link(&NewLink::new("br0", LinkKind::Dummy)).unwrap();
        let br0 = c.link_by_name("br0").unwrap();
        k.clear_calls();
        enable_forwarding(&mut c, &br0, true, true).unwrap();
        enable_forwarding(&mut c, &br0, true, true).unwrap();
        let calls = k.calls();
        let (writes, locks) = (
            calls.iter().filter(|c| c.contains("set_sysctls")).count(),
            calls.iter().filter(|c| c.contains("lock ip_forward")).count(),
        );
        assert_eq!((writes, locks), (3, 1), "{calls:#?}");
        for key in ["net/ipv4/ip_forward", "net/ipv4/conf/br0/forwarding", "net/ipv6/conf/all/forwarding"] {
            assert_eq!(c.sysctl(key).unwrap(), "1", "{key}");
        }
        // ip_forward already on (the case the lock cannot help): the ingress still forwards.
        c.add_link(&NewLink::new("br1", LinkKind::Dummy)).unwrap();
        let br1 = c.link_by_name("br1").unwrap();
        enable_forwarding(&mut c, &br1, true, false).unwrap();
        assert_eq!(c.sysctl("net/ipv4/conf/br1/forwarding").unwrap(), "1");
    }
}
