//! Interface addresses (RTM_*ADDR).

use std::net::{IpAddr, Ipv4Addr};

use super::{af_of, ip_bytes, ne_u32, parse_ip, payload_of, Family, Rtnl};
use crate::netlink::{Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_EXCL};

const IFADDRMSG_LEN: usize = 8;

/// Options of a new address.
#[derive(Clone, Copy, Debug, Default)]
pub struct AddrOpts {
    /// Skip IPv6 duplicate address detection (usable at once).
    pub nodad: bool,
    /// Do not install the prefix route for the subnet.
    pub noprefixroute: bool,
    /// IPv4 broadcast address (ignored for IPv6).
    pub broadcast: Option<Ipv4Addr>,
}

/// An address on an interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    /// `IFA_F_*` flags (NODAD, NOPREFIXROUTE, TENTATIVE, PERMANENT …).
    pub flags: u32,
    pub scope: u8,
    pub broadcast: Option<Ipv4Addr>,
    pub label: Option<String>,
}

impl Addr {
    /// An RTM_NEWADDR reply (None for any other message).
    pub fn parse(r: &Reply) -> Option<Addr> {
        let p = payload_of(r, libc::RTM_NEWADDR, IFADDRMSG_LEN)?;
        let (af, prefix, flags8, scope, index) = (p[0], p[1], p[2], p[3], ne_u32(p, 4));
        let attrs = r.attrs(IFADDRMSG_LEN);
        // IPv4 reports the interface's own address in IFA_LOCAL (IFA_ADDRESS is the
        // peer on point-to-point links); IPv6 uses IFA_ADDRESS.
        let local = if af == libc::AF_INET as u8 { attrs.get(libc::IFA_LOCAL) } else { None };
        let addr = parse_ip(local.or_else(|| attrs.get(libc::IFA_ADDRESS))?.data)?;
        Some(Addr {
            index,
            addr,
            prefix,
            flags: attrs.get(libc::IFA_FLAGS).map_or(flags8 as u32, |a| a.u32()),
            scope,
            broadcast: attrs.get(libc::IFA_BROADCAST).and_then(|a| parse_ip(a.data)).and_then(
                |ip| match ip {
                    IpAddr::V4(b) => Some(b),
                    IpAddr::V6(_) => None,
                },
            ),
            label: attrs.get(libc::IFA_LABEL).map(|a| a.str().to_string()),
        })
    }
}

fn addr_msg(ty: u16, flags: u16, index: u32, addr: &IpAddr, prefix: u8, o: &AddrOpts) -> Msg {
    let mut ifa_flags = 0u32;
    if o.nodad {
        ifa_flags |= libc::IFA_F_NODAD;
    }
    if o.noprefixroute {
        ifa_flags |= libc::IFA_F_NOPREFIXROUTE;
    }
    let mut h = [0u8; IFADDRMSG_LEN];
    h[0] = af_of(addr);
    h[1] = prefix;
    h[2] = ifa_flags as u8; // the low bits; IFA_FLAGS carries the rest
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    let mut m = Msg::new(ty, flags);
    m.push(&h);
    let bytes = ip_bytes(addr);
    m.attr(libc::IFA_LOCAL, &bytes).attr(libc::IFA_ADDRESS, &bytes);
    if let (IpAddr::V4(_), Some(b)) = (addr, o.broadcast) {
        m.attr(libc::IFA_BROADCAST, &b.octets());
    }
    if ifa_flags != 0 {
        m.attr_u32(libc::IFA_FLAGS, ifa_flags);
    }
    m
}

impl Rtnl {
    /// Add `addr/prefix` to a link; `EEXIST` if it is already there.
    pub fn add_addr(&mut self, index: u32, addr: IpAddr, prefix: u8, opts: &AddrOpts) -> NlResult<()> {
        self.sock.request(addr_msg(libc::RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL, index, &addr, prefix, opts))
    }

    /// Remove `addr/prefix` from a link (`EADDRNOTAVAIL` if absent).
    pub fn del_addr(&mut self, index: u32, addr: IpAddr, prefix: u8) -> NlResult<()> {
        self.sock.request(addr_msg(libc::RTM_DELADDR, 0, index, &addr, prefix, &AddrOpts::default()))
    }

    /// Addresses of one link (or all with `None`) of the given family.
    pub fn addrs(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Addr>> {
        let mut m = Msg::new(libc::RTM_GETADDR, 0);
        m.push(&[family.af(), 0, 0, 0, 0, 0, 0, 0]);
        let all = self.sock.dump(m)?.iter().filter_map(Addr::parse).collect::<Vec<_>>();
        Ok(all
            .into_iter()
            .filter(|a| !matches!(index, Some(i) if i != a.index) && family.matches(af_of(&a.addr)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    #[test]
    fn v6_address_with_flags_roundtrips() {
        let o = AddrOpts { nodad: true, noprefixroute: true, broadcast: Some(Ipv4Addr::BROADCAST) };
        let ip: IpAddr = "fd00::5".parse().unwrap();
        let r = as_reply(addr_msg(libc::RTM_NEWADDR, 0, 4, &ip, 64, &o));
        let a = Addr::parse(&r).unwrap();
        assert_eq!((a.index, a.addr, a.prefix), (4, ip, 64));
        assert_eq!(a.flags, libc::IFA_F_NODAD | libc::IFA_F_NOPREFIXROUTE);
        assert_eq!(r.payload[0], libc::AF_INET6 as u8);
        assert_eq!(r.payload[2], libc::IFA_F_NODAD as u8);
        assert_eq!(a.broadcast, None, "no IPv4 broadcast on an IPv6 address");
    }

    #[test]
    fn v4_address_with_broadcast_and_no_flags() {
        let o = AddrOpts { broadcast: Some("10.1.2.255".parse().unwrap()), ..AddrOpts::default() };
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let r = as_reply(addr_msg(libc::RTM_NEWADDR, 0, 2, &ip, 24, &o));
        assert!(r.attrs(IFADDRMSG_LEN).get(libc::IFA_FLAGS).is_none());
        let a = Addr::parse(&r).unwrap();
        assert_eq!((a.addr, a.prefix, a.flags), (ip, 24, 0));
        assert_eq!(a.broadcast, o.broadcast);
    }
}
