//! Typed, synchronous rtnetlink on the `netlink` core: links (veth, bridge,
//! macvlan, vlan, vxlan, dummy, bridge ports and VLANs), addresses, routes,
//! rules, neighbours, bridge forwarding entries and traffic control ([`tc`]).
//!
//! An [`Rtnl`] acts in the netns it was opened in, so open it with
//! [`Rtnl::in_netns`] to change a container. Kernel refusals come back as
//! [`NlError`](super::NlError) so callers can test `EEXIST`, `ENODEV`, `ENOENT`.
//! Plugins reach it through the `common::net::NetStack` trait, so that their
//! decisions can be unit tested against a fake.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{NlResult, Reply, Socket};
use crate::netns::Netns;

mod addr;
mod link;
mod neigh;
mod netconf;
mod route;
mod rule;
pub mod tc;
#[cfg(test)]
mod tc_tests;
#[cfg(test)]
mod tests;
mod vxlan;

pub use addr::{Addr, AddrOpts};
pub use link::{
    parse_bridge_vlans, BridgeOpts, BridgePort, BridgePortOpts, BridgeVlan, Link, LinkKind, MacvlanMode,
    MacvlanOpts, NewLink, IF_OPER_UP,
};
pub use link::{IpvlanFlags, IpvlanMode, VlanProtocol};
pub use neigh::Neigh;
pub use route::Route;
pub use rule::{Rule, FR_ACT_TO_TBL};
pub use vxlan::{Fdb, VxlanOpts, VXLAN_PORT};

/// A route netlink socket bound to one network namespace.
pub struct Rtnl {
    sock: Socket,
    /// The socket's netns: given to `in_netns`, or opened on first need for
    /// one from `open` (see `netns_fd`).
    netns: Option<Netns>,
    /// Opened in the calling thread's own netns: sysctls need no visit.
    here: bool,
}

impl Rtnl {
    /// A socket in the calling thread's netns, for use on that thread.
    pub fn open() -> NlResult<Rtnl> {
        Ok(Rtnl { sock: Socket::open(libc::NETLINK_ROUTE)?, netns: None, here: true })
    }

    /// A socket that lives in `ns`, usable from any thread afterwards.
    pub fn in_netns(ns: &Netns) -> NlResult<Rtnl> {
        Ok(Rtnl { sock: ns.route_socket()?, netns: Some(ns.try_clone()?), here: false })
    }

    /// An fd of this socket's netns, to create or move links into it from
    /// another one (`IFLA_NET_NS_FD`). Valid as long as this `Rtnl` lives.
    pub fn netns_fd(&mut self) -> NlResult<std::os::fd::RawFd> {
        if self.netns.is_none() {
            self.netns = Some(Netns::current()?);
        }
        Ok(self.netns.as_ref().map_or(-1, Netns::fd))
    }

    /// Read a sysctl (`net/ipv4/conf/eth0/arp_notify`) of this netns.
    pub fn sysctl(&mut self, key: &str) -> std::io::Result<String> {
        self.in_own_netns(|| crate::sysctl::read(key))
    }

    /// Write sysctls of this netns, in order (one netns visit for all).
    pub fn set_sysctls(&mut self, settings: &[(&str, &str)]) -> std::io::Result<()> {
        self.in_own_netns(|| settings.iter().try_for_each(|(k, v)| crate::sysctl::write(k, v)))
    }

    /// A connection to nf_tables of this socket's netns.
    pub fn nft(&mut self) -> crate::nft::NftResult<crate::nft::Nft> {
        match (&self.netns, self.here) {
            (Some(ns), false) => crate::nft::Nft::in_netns(ns),
            _ => crate::nft::Nft::open(),
        }
    }

    /// Run `f` where /proc/sys/net shows this socket's netns (and where a
    /// descriptor of a namespaced device, /dev/net/tun, joins it).
    pub(crate) fn in_own_netns<T>(&self, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
        match (&self.netns, self.here) {
            (Some(ns), false) => ns.visit(f)?,
            _ => f(),
        }
    }

    /// The underlying socket, for requests this layer does not cover.
    pub fn socket(&mut self) -> &mut Socket {
        &mut self.sock
    }
}

/// Address family filter for listings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Any,
    V4,
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(ip: &IpAddr) -> Family {
        if ip.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    fn af(self) -> u8 {
        match self {
            Family::Any => libc::AF_UNSPEC as u8,
            Family::V4 => libc::AF_INET as u8,
            Family::V6 => libc::AF_INET6 as u8,
        }
    }

    fn matches(self, af: u8) -> bool {
        self == Family::Any || self.af() == af
    }
}

/// Parse "aa:bb:cc:dd:ee:ff" (two hex digits per byte, any case).
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in mac.iter_mut() {
        let p = parts.next()?;
        if p.len() != 2 || !p.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// Format a MAC as lowercase "aa:bb:cc:dd:ee:ff".
pub fn format_mac(mac: &[u8; 6]) -> String {
    let m = mac;
    format!("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", m[0], m[1], m[2], m[3], m[4], m[5])
}

fn ip_bytes(ip: &IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn parse_ip(data: &[u8]) -> Option<IpAddr> {
    match data.len() {
        4 => Some(IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(data).ok()?))),
        16 => Some(IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(data).ok()?))),
        _ => None,
    }
}

fn af_of(ip: &IpAddr) -> u8 {
    Family::of(ip).af()
}

fn unspecified(af: u8) -> IpAddr {
    if af == libc::AF_INET6 as u8 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

fn ne_u32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4).map(|s| u32::from_ne_bytes([s[0], s[1], s[2], s[3]])).unwrap_or(0)
}

/// The payload of a reply of the expected type and minimum header size.
fn payload_of(r: &Reply, ty: u16, header_len: usize) -> Option<&[u8]> {
    (r.ty == ty && r.payload.len() >= header_len).then_some(&r.payload[..])
}

/// The byte layout of a built message after the netlink header, as the
/// kernel would echo it; lets unit tests feed our encoders to our parsers.
#[cfg(test)]
fn as_reply(mut m: super::Msg) -> Reply {
    let ty = m.msg_type();
    let bytes = m.bytes(1);
    Reply { ty, flags: 0, payload: bytes[super::NLMSG_HDRLEN..].to_vec() }
}
