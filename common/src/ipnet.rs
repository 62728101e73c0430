//! An IP address with a prefix length, as CNI writes it (`10.1.2.3/24`: the
//! host bits are kept, unlike a pure network). Small enough that a crate
//! would cost more than it saves.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpNet {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpNet {
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        (prefix <= max_prefix(&addr)).then_some(IpNet { addr, prefix })
    }

    /// A single-address network (/32 or /128).
    pub fn host(addr: IpAddr) -> IpNet {
        IpNet { addr, prefix: max_prefix(&addr) }
    }

    pub fn is_ipv4(&self) -> bool {
        self.addr.is_ipv4()
    }

    pub fn max_prefix(&self) -> u8 {
        max_prefix(&self.addr)
    }

    /// The network with host bits cleared.
    pub fn network(&self) -> IpNet {
        IpNet { addr: from_bits(&self.addr, to_bits(&self.addr) & self.mask_bits()), prefix: self.prefix }
    }

    pub fn first(&self) -> IpAddr {
        self.network().addr
    }

    /// The last address (IPv4 broadcast).
    pub fn last(&self) -> IpAddr {
        from_bits(&self.addr, to_bits(&self.addr) | !self.mask_bits() & all_ones(&self.addr))
    }

    pub fn netmask(&self) -> IpAddr {
        from_bits(&self.addr, self.mask_bits())
    }

    fn mask_bits(&self) -> u128 {
        let max = self.max_prefix() as u32;
        let host = max - self.prefix as u32;
        if host >= 128 {
            0
        } else {
            (all_ones(&self.addr) >> host) << host
        }
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4()
            && to_bits(ip) & self.mask_bits() == to_bits(&self.addr) & self.mask_bits()
    }

    pub fn overlaps(&self, other: &IpNet) -> bool {
        self.contains(&other.first()) || other.contains(&self.first())
    }

    /// Number of addresses, saturating.
    pub fn size(&self) -> u128 {
        let host = (self.max_prefix() - self.prefix) as u32;
        if host >= 128 {
            u128::MAX
        } else {
            1u128 << host
        }
    }
}

/// Link-local: 169.254.0.0/16 or fe80::/10. Valid only on its own link, so no
/// use as a nameserver, and every IPv6 interface has one of its own.
pub fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    }
}

pub fn max_prefix(ip: &IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

fn all_ones(ip: &IpAddr) -> u128 {
    if ip.is_ipv4() {
        u32::MAX as u128
    } else {
        u128::MAX
    }
}

pub fn to_bits(ip: &IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u32::from(*v) as u128,
        IpAddr::V6(v) => u128::from(*v),
    }
}

/// An address of the same family as `like` from its integer form.
pub fn from_bits(like: &IpAddr, bits: u128) -> IpAddr {
    match like {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(bits)),
    }
}

/// The address after `ip`, wrapping at the end of the family.
pub fn next_ip(ip: &IpAddr) -> IpAddr {
    from_bits(ip, to_bits(ip).wrapping_add(1) & all_ones(ip))
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for IpNet {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) =
            s.split_once('/').ok_or_else(|| format!("invalid CIDR address {s:?}: no prefix length"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("invalid CIDR address {s:?}: bad IP"))?;
        let prefix: u8 = p.parse().map_err(|_| format!("invalid CIDR address {s:?}: bad prefix length"))?;
        IpNet::new(addr, prefix).ok_or_else(|| format!("invalid CIDR address {s:?}: prefix length too long"))
    }
}

impl Serialize for IpNet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn link_local_of_both_families() {
        let ll = |s: &str| is_link_local(&s.parse().unwrap());
        assert!(ll("fe80::1") && ll("febf::1") && ll("169.254.3.4"));
        assert!(!ll("fec0::1") && !ll("fd00::1") && !ll("169.253.0.1") && !ll("10.0.0.1"));
    }

    #[test]
    fn parse_and_display_keep_host_bits() {
        assert_eq!(n("10.1.2.3/24").to_string(), "10.1.2.3/24");
        assert_eq!(n("10.1.2.3/24").network().to_string(), "10.1.2.0/24");
        assert_eq!(n("2001:db8::5/64").network().to_string(), "2001:db8::/64");
        assert!("10.1.2.3".parse::<IpNet>().is_err());
        assert!("10.1.2.3/33".parse::<IpNet>().is_err());
        assert!("x/3".parse::<IpNet>().is_err());
    }

    #[test]
    fn ranges_and_membership() {
        let net = n("10.1.2.0/24");
        assert_eq!(net.last().to_string(), "10.1.2.255");
        assert_eq!(net.netmask().to_string(), "255.255.255.0");
        assert!(net.contains(&"10.1.2.77".parse().unwrap()));
        assert!(!net.contains(&"10.1.3.1".parse().unwrap()));
        assert!(!net.contains(&"::1".parse().unwrap()));
        assert_eq!(net.size(), 256);
        assert_eq!(n("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(n("::/0").size(), u128::MAX);
        assert!(n("::/0").contains(&"2001:db8::1".parse().unwrap()));
        assert!(n("10.0.0.0/8").overlaps(&net));
        assert!(!n("10.2.0.0/16").overlaps(&net));
        assert_eq!(next_ip(&"10.1.2.255".parse().unwrap()).to_string(), "10.1.3.0");
        assert_eq!(next_ip(&"255.255.255.255".parse().unwrap()).to_string(), "0.0.0.0");
    }
}
