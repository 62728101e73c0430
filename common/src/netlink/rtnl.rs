//! Typed, synchronous rtnetlink on the `netlink` core: links (veth, bridge,
//! macvlan, vlan, vxlan, bridge ports and VLANs), addresses, routes,
//! neighbours and bridge forwarding entries.
//!
//! An [`Rtnl`] acts in the netns it was opened in, so open it with
//! [`Rtnl::in_netns`] to change a container. Kernel refusals come back as
//! [`NlError`](super::NlError) so callers can test `EEXIST`, `ENODEV`, `ENOENT`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{NlResult, Reply, Socket};
use crate::netns::Netns;

mod addr;
mod link;
mod neigh;
mod route;
#[cfg(test)]
mod tests;
mod vxlan;

pub use addr::{Addr, AddrOpts};
pub use link::{
    BridgeOpts, BridgePort, BridgePortOpts, BridgeVlan, Link, MacvlanMode, MacvlanOpts, IF_OPER_UP,
};
pub use neigh::Neigh;
pub use route::Route;
pub use vxlan::{Fdb, VxlanOpts, VXLAN_PORT};

/// A route netlink socket bound to one network namespace.
pub struct Rtnl {
    sock: Socket,
}

impl Rtnl {
    /// A socket in the calling thread's netns.
    pub fn open() -> NlResult<Rtnl> {
        Ok(Rtnl { sock: Socket::open(libc::NETLINK_ROUTE)? })
    }

    /// A socket that lives in `ns`, usable from any thread afterwards.
    pub fn in_netns(ns: &Netns) -> NlResult<Rtnl> {
        Ok(Rtnl { sock: ns.route_socket()? })
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
