//! The two ends of the point-to-point link, as the reference configures them.
//!
//! The IPAM result says, e.g., 10.1.0.5/24 with gateway 10.1.0.1. A veth
//! cannot be IFF_POINTTOPOINT, so the container keeps its /24 address but
//! not the subnet route: everything, its subnet included, goes through the
//! gateway, which is on the link by a host route of its own:
//!
//! ```text
//! container: 10.1.0.5/24 (noprefixroute)    host: 10.1.0.1/32 on the host veth
//!   10.1.0.1 dev eth0 scope link src 10.1.0.5     10.1.0.5 dev vethXXXX scope host
//!   10.1.0.0/24 via 10.1.0.1 dev eth0 src 10.1.0.5
//!   + the result's routes (default via 10.1.0.1)
//! ```
//!
//! Every host veth carries the same gateway address; the host routes each
//! container's address to its own veth, so containers reach each other
//! through the host. The reference adds the address with its subnet route
//! and deletes that route afterwards; `noprefixroute` never makes it.

use std::net::IpAddr;

use common::ipnet::{is_link_local, max_prefix};
use common::links::link_error;
use common::net::NetStack;
use common::netlink::rtnl::{AddrOpts, Family, Link, Route as KernelRoute};
use common::netlink::NlResult;
use common::spec::{IpConfig, Route};
use common::{ifconfig, CniError, Result};

/// The container end: addresses, link up, the gateway on the link, then the
/// subnet and the result's routes through it. IPv6 addresses skip duplicate
/// address detection: the host end is the only other node on the link.
pub fn configure_container(
    ctr: &mut impl NetStack,
    ifname: &str,
    ips: &[IpConfig],
    routes: &[Route],
) -> Result<Link> {
    let has_v6 = ips.iter().any(|ip| !ip.address.is_ipv4());
    ifconfig::container_sysctls(ctr, ifname, has_v6, false)?;
    let link = ctr.link_by_name(ifname).map_err(|e| link_error("container interface", e))?;
    for ip in ips {
        let opts = AddrOpts { nodad: !ip.address.is_ipv4(), noprefixroute: true, ..Default::default() };
        tolerate_exists(ctr.add_addr(link.index, ip.address.addr, ip.address.prefix, &opts))
            .map_err(|e| link_error(&format!("adding {} to {ifname}", ip.address), e))?;
    }
    ctr.set_up(link.index).map_err(|e| link_error("setting the container interface up", e))?;
    for (i, ip) in ips.iter().enumerate() {
        let (addr, gw) = (ip.address.addr, gateway(ip)?);
        // Addresses sharing a gateway share its route.
        if !ips[..i].iter().any(|earlier| earlier.gateway == Some(gw)) {
            let mut to_gw = KernelRoute::new(gw, max_prefix(&gw));
            (to_gw.oif, to_gw.scope, to_gw.src) = (Some(link.index), libc::RT_SCOPE_LINK, Some(addr));
            ctr.add_route(&to_gw).map_err(|e| {
                let mut err = link_error(&format!("adding the route to the gateway {gw}"), e.clone());
                if e.is(libc::EEXIST) {
                    err.msg += " (another interface of the container routes to it: one subnet on two?)";
                }
                err
            })?;
        }
        let net = ip.address.network();
        let mut subnet = KernelRoute::new(net.addr, net.prefix);
        (subnet.gateway, subnet.oif, subnet.src) = (Some(gw), Some(link.index), Some(addr));
        tolerate_exists(ctr.add_route(&subnet))
            .map_err(|e| link_error(&format!("adding the route to {net} via {gw}"), e))?;
    }
    for r in routes {
        let route = ifconfig::kernel_route(r, ips, link.index)?;
        tolerate_exists(ctr.add_route(&route))
            .map_err(|e| link_error(&format!("adding route to {}", r.dst), e))?;
    }
    ctr.link_by_index(link.index).map_err(|e| link_error("container interface", e))
}

/// The host end up, without DAD: the host solicits a container's address
/// from its link-local one, and not at all while that is tentative (a
/// second or two after the link comes up).
pub fn host_end_up(host: &mut impl NetStack, veth: &Link) -> Result<()> {
    match host.set_sysctl(&format!("net/ipv6/conf/{}/accept_dad", veth.name), "0") {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {} // no IPv6 in the host netns
        r => r?,
    }
    host.set_up(veth.index).map_err(|e| link_error("setting the host veth up", e))
}

/// Wait (bounded) while the host end's link-local address is tentative: the
/// kernel adds it when the carrier comes on and, even without DAD, clears
/// the flag from a work queue; until then the host cannot solicit the
/// container's addresses, and the first IPv6 packets to it wait a second.
pub fn await_link_local(host: &mut impl NetStack, veth: &Link) -> Result<()> {
    for ms in [0u64, 5, 20, 50, 100, 200, 500] {
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let addrs = host.addrs(Some(veth.index), Family::V6)?;
        if !addrs.iter().any(|a| is_link_local(&a.addr) && a.flags & libc::IFA_F_TENTATIVE != 0) {
            return Ok(());
        }
    }
    Err(CniError::internal(format!("the link-local address of {} stays tentative", veth.name)))
}

/// The host end's addresses and routes: each gateway as a /32 (/128)
/// address, and a route to each container address through it.
pub fn configure_host(host: &mut impl NetStack, veth: &Link, ips: &[IpConfig]) -> Result<()> {
    for ip in ips {
        let gw = gateway(ip)?;
        let bits = max_prefix(&gw);
        // No DAD: the container must reach its gateway the moment ADD returns.
        let opts = AddrOpts { nodad: gw.is_ipv6(), ..Default::default() };
        tolerate_exists(host.add_addr(veth.index, gw, bits, &opts))
            .map_err(|e| link_error(&format!("adding {gw}/{bits} to {}", veth.name), e))?;
        // Replaced, not added: a route left to this address by a container
        // whose DEL never came must not take the new container's traffic.
        host.replace_route(&host_route(veth.index, ip.address.addr)).map_err(|e| {
            link_error(&format!("adding the route to {} through {}", ip.address.addr, veth.name), e)
        })?;
    }
    Ok(())
}

/// The host's route to a container address: `<ip>/32 dev <veth> scope host`.
pub fn host_route(veth: u32, ip: IpAddr) -> KernelRoute {
    let mut r = KernelRoute::new(ip, max_prefix(&ip));
    (r.oif, r.scope) = (Some(veth), libc::RT_SCOPE_HOST);
    r
}

/// The gateway of an address: ptp cannot work without one, and it must not
/// be the container's own address.
pub fn gateway(ip: &IpConfig) -> Result<IpAddr> {
    match ip.gateway {
        Some(gw) if gw == ip.address.addr => Err(CniError::invalid_config(format!(
            "the gateway of {} is the container's own address: ptp puts the gateway on the host",
            ip.address
        ))),
        Some(gw) if gw.is_ipv4() != ip.address.is_ipv4() => Err(CniError::invalid_config(format!(
            "the gateway {gw} of {} is of the other IP family",
            ip.address
        ))),
        Some(gw) => Ok(gw),
        None => Err(CniError::invalid_config(format!(
            "IPAM gave {} no gateway: ptp routes everything through one (give the range or address a gateway)",
            ip.address
        ))),
    }
}

/// IPAM's routes can only go through a gateway: nothing else is on the link.
pub fn check_routes(ips: &[IpConfig], routes: &[Route]) -> Result<()> {
    for r in routes {
        let Some(gw) = r.gw else { continue };
        if !ips.iter().any(|ip| ip.gateway == Some(gw)) {
            let gateways: Vec<String> =
                ips.iter().filter_map(|ip| ip.gateway).map(|g| g.to_string()).collect();
            return Err(CniError::invalid_config(format!(
                "the route to {} goes through {gw}, which ptp cannot reach: only the gateway ({}) is on the link",
                r.dst,
                gateways.join(", ")
            )));
        }
    }
    Ok(())
}

fn tolerate_exists(r: NlResult<()>) -> NlResult<()> {
    match r {
        Err(e) if e.is(libc::EEXIST) => Ok(()),
        r => r,
    }
}
