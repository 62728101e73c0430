//! The names of one network, as the server looks them up: a hash map from
//! lowercase name to addresses, a reverse map for PTR, and the subnets whose
//! clients may ask. Built whole from the records and swapped in at once, so
//! a query sees either the old or the new table, never half of one.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;

use common::dns_names::dns_name;
use common::ipnet::IpNet;

use crate::wire::{self, rtype, Name};

/// A small multiply-rotate hash (the rustc "Fx" hash): names are short and
/// the table is ours, so SipHash's DoS resistance buys nothing here (a
/// client cannot insert keys).
#[derive(Default, Clone, Copy)]
pub struct FxHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FxHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(SEED);
    }
}

impl Hasher for FxHasher {
    #[inline]
    fn write(&mut self, mut bytes: &[u8]) {
        while bytes.len() >= 8 {
            self.add(u64::from_le_bytes(bytes[..8].try_into().unwrap()));
            bytes = &bytes[8..];
        }
        if bytes.len() >= 4 {
            self.add(u32::from_le_bytes(bytes[..4].try_into().unwrap()) as u64);
            bytes = &bytes[4..];
        }
        for &b in bytes {
            self.add(b as u64);
        }
    }
    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(i as u64)
    }
    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i)
    }
    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64)
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

pub type FxBuild = BuildHasherDefault<FxHasher>;

/// The addresses of one name.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Addrs {
    pub v4: Vec<[u8; 4]>,
    pub v6: Vec<[u8; 16]>,
}

/// What to answer for a question.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer<'a> {
    /// A known name: its addresses (the writer picks those of the asked type).
    Addrs(&'a Addrs),
    /// A known address: the PTR target in wire form.
    Ptr(&'a [u8]),
    /// The name exists, but has no records of the asked type.
    NoData,
    /// No such name in our domain (or a reverse name in our subnets).
    NxDomain,
    /// Not ours: ask upstream.
    Forward,
}

/// One attachment's contribution to the table.
pub struct Entry<'a> {
    /// Validated names; the first is the one PTR answers with.
    pub names: &'a [String],
    pub ips: &'a [IpNet],
}

#[derive(Default, Debug)]
pub struct Table {
    /// Lowercase dotted domain ("" for none).
    domain: Vec<u8>,
    names: HashMap<Box<[u8]>, Addrs, FxBuild>,
    reverse: HashMap<IpAddr, Box<[u8]>, FxBuild>,
    subnets: Vec<IpNet>,
}

impl Table {
    pub fn build<'a>(domain: &str, entries: impl IntoIterator<Item = Entry<'a>>) -> Table {
        let domain = dns_name(domain).unwrap_or_default();
        let mut t = Table { domain: domain.clone().into_bytes(), ..Default::default() };
        for e in entries {
            for name in e.names.iter().filter_map(|n| dns_name(n)) {
                let a = t.names.entry(name.into_bytes().into_boxed_slice()).or_default();
                for ip in e.ips {
                    match ip.addr {
                        IpAddr::V4(v4) if !a.v4.contains(&v4.octets()) => a.v4.push(v4.octets()),
                        IpAddr::V6(v6) if !a.v6.contains(&v6.octets()) => a.v6.push(v6.octets()),
                        _ => {}
                    }
                }
            }
            if let Some(primary) = e.names.iter().find_map(|n| dns_name(n)) {
                let fqdn = if domain.is_empty() { primary } else { format!("{primary}.{domain}") };
                if let Some(w) = wire::encode_name(&fqdn) {
                    let w = w.into_boxed_slice();
                    for ip in e.ips {
                        t.reverse.insert(ip.addr, w.clone());
                    }
                }
            }
            for ip in e.ips {
                let net = ip.network();
                if !t.subnets.contains(&net) {
                    t.subnets.push(net);
                }
            }
        }
        t.names.shrink_to_fit();
        t.reverse.shrink_to_fit();
        t
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn subnets(&self) -> &[IpNet] {
        &self.subnets
    }

    /// May `ip` ask us? Only clients of this network's own subnets.
    #[inline]
    pub fn allows(&self, ip: &IpAddr) -> bool {
        self.subnets.iter().any(|n| n.contains(ip))
    }

    /// The answer for `name` (lowercase dotted, as parsed) and `qtype`.
    pub fn lookup(&self, name: &Name, qtype: u16) -> Answer<'_> {
        let n = name.as_bytes();
        let d = &self.domain[..];
        let rel = if d.is_empty() {
            None
        } else if n == d {
            Some(&n[..0])
        } else if n.len() > d.len() && n.ends_with(d) && n[n.len() - d.len() - 1] == b'.' {
            Some(&n[..n.len() - d.len() - 1])
        } else {
            None
        };
        match rel {
            Some([]) => Answer::NoData, // the domain apex itself
            Some(_) if !name.plain => Answer::NxDomain,
            Some(r) => match self.names.get(r) {
                Some(a) => by_type(a, qtype),
                None => Answer::NxDomain,
            },
            None if !name.plain => Answer::Forward,
            None => {
                if let Some(a) = self.names.get(n) {
                    return by_type(a, qtype);
                }
                match wire::parse_reverse(n) {
                    Some(ip) => match self.reverse.get(&ip) {
                        Some(w) if qtype == rtype::PTR || qtype == rtype::ANY => Answer::Ptr(w),
                        Some(_) => Answer::NoData,
                        None if self.allows(&ip) => Answer::NxDomain,
                        None => Answer::Forward,
                    },
                    None => Answer::Forward,
                }
            }
        }
    }
}

fn by_type(a: &Addrs, qtype: u16) -> Answer<'_> {
    let has = match qtype {
        rtype::A => !a.v4.is_empty(),
        rtype::AAAA => !a.v6.is_empty(),
        rtype::ANY => !a.v4.is_empty() || !a.v6.is_empty(),
        _ => false,
    };
    if has {
        Answer::Addrs(a)
    } else {
        Answer::NoData
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{build_query, parse_query};

    fn name(s: &str) -> Name {
        parse_query(&build_query(1, s, 1, None).unwrap()).unwrap().name
    }

    fn table() -> Table {
        let web = ["web".to_string(), "www".into(), "0123456789ab".into(), "bad name".into()];
        let db = ["DB".to_string(), "my.app".into(), "www".into()];
        let ips1 = ["10.1.0.2/24".parse().unwrap(), "fd00:1::2/64".parse().unwrap()];
        let ips2 = ["10.1.0.3/24".parse().unwrap()];
        Table::build("DNS.podman.", [Entry { names: &web, ips: &ips1 }, Entry { names: &db, ips: &ips2 }])
    }

    #[test]
    fn bare_and_qualified_names_answer() {
        let t = table();
        assert_eq!(t.len(), 5, "invalid names are skipped");
        let Answer::Addrs(a) = t.lookup(&name("WEB"), rtype::A) else { panic!() };
        assert_eq!(a.v4, vec![[10, 1, 0, 2]]);
        assert!(matches!(t.lookup(&name("web.dns.podman."), rtype::AAAA), Answer::Addrs(_)));
        assert!(matches!(t.lookup(&name("0123456789AB.dns.podman"), rtype::A), Answer::Addrs(_)));
        assert!(matches!(t.lookup(&name("my.app"), rtype::A), Answer::Addrs(_)));
        assert!(matches!(t.lookup(&name("my.app.dns.podman"), rtype::A), Answer::Addrs(_)));
        // A shared alias answers with every container's address.
        let Answer::Addrs(a) = t.lookup(&name("www"), rtype::A) else { panic!() };
        assert_eq!(a.v4, vec![[10, 1, 0, 2], [10, 1, 0, 3]]);
        // Known name, no address of that type, or another type.
        assert_eq!(t.lookup(&name("db"), rtype::AAAA), Answer::NoData);
        assert_eq!(t.lookup(&name("db"), 15), Answer::NoData);
    }

    #[test]
    fn unknown_names_in_the_domain_do_not_exist_others_go_upstream() {
        let t = table();
        assert_eq!(t.lookup(&name("nope.dns.podman"), rtype::A), Answer::NxDomain);
        assert_eq!(t.lookup(&name("dns.podman"), rtype::A), Answer::NoData);
        assert_eq!(t.lookup(&name("nope"), rtype::A), Answer::Forward);
        assert_eq!(t.lookup(&name("example.com"), rtype::A), Answer::Forward);
        assert_eq!(t.lookup(&name("xdns.podman"), rtype::A), Answer::Forward);
    }

    #[test]
    fn reverse_lookups() {
        let t = table();
        let Answer::Ptr(w) = t.lookup(&name("2.0.1.10.in-addr.arpa"), rtype::PTR) else { panic!() };
        assert_eq!(w, b"\x03web\x03dns\x06podman\x00");
        let Answer::Ptr(w) = t.lookup(&name("3.0.1.10.in-addr.arpa"), rtype::PTR) else { panic!() };
        assert_eq!(w, b"\x02db\x03dns\x06podman\x00");
        assert_eq!(t.lookup(&name("2.0.1.10.in-addr.arpa"), rtype::A), Answer::NoData);
        assert_eq!(t.lookup(&name("9.0.1.10.in-addr.arpa"), rtype::PTR), Answer::NxDomain);
        assert_eq!(t.lookup(&name("8.8.8.8.in-addr.arpa"), rtype::PTR), Answer::Forward);
        let ip: std::net::Ipv6Addr = "fd00:1::2".parse().unwrap();
        let nib: Vec<String> = ip
            .octets()
            .iter()
            .rev()
            .flat_map(|b| [format!("{:x}", b & 15), format!("{:x}", b >> 4)])
            .collect();
        let v6 = format!("{}.ip6.arpa", nib.join("."));
        assert!(matches!(t.lookup(&name(&v6), rtype::PTR), Answer::Ptr(_)));
    }

    #[test]
    fn only_the_networks_subnets_may_ask() {
        let t = table();
        assert!(t.allows(&"10.1.0.77".parse().unwrap()));
        assert!(t.allows(&"fd00:1::99".parse().unwrap()));
        assert!(!t.allows(&"10.2.0.2".parse().unwrap()));
        assert!(!t.allows(&"127.0.0.1".parse().unwrap()));
        assert_eq!(t.subnets().len(), 2);
    }

    #[test]
    fn no_domain_means_bare_names_only() {
        let n = ["web".to_string()];
        let ips = ["10.1.0.2/24".parse().unwrap()];
        let t = Table::build("", [Entry { names: &n, ips: &ips }]);
        assert!(matches!(t.lookup(&name("web"), rtype::A), Answer::Addrs(_)));
        assert_eq!(t.lookup(&name("web.dns.podman"), rtype::A), Answer::Forward);
    }
}
