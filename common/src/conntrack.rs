//! Conntrack entries over ctnetlink (nfnetlink subsystem 1): list them and
//! delete those whose original tuple matches a protocol and destination port.
//!
//! Portmap uses this for UDP mappings: a stale entry would keep steering
//! datagrams to the old backend. Open the socket with
//! `Socket::open(libc::NETLINK_NETFILTER)` or `Netns::socket(..)`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::netlink::{Attrs, Msg, NlResult, Socket};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const IPCTNL_MSG_CT_DELETE: u16 = 2;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_ID: u16 = 12;
const CTA_ZONE: u16 = 18;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;

pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// One conntrack entry, by its original-direction tuple.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub zone: u16,
    pub id: Option<u32>,
}

/// Which entries to delete: protocol and original destination port, and
/// optionally the address family (libc::AF_INET / AF_INET6) and destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub proto: u8,
    pub dport: u16,
    pub family: Option<u8>,
    pub dst: Option<IpAddr>,
}

impl Filter {
    pub fn udp_port(dport: u16) -> Filter {
        Filter { proto: PROTO_UDP, dport, family: None, dst: None }
    }
    fn matches(&self, e: &Entry) -> bool {
        let fam = if e.dst.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 } as u8;
        e.proto == self.proto
            && e.dport == self.dport
            && self.family.unwrap_or(fam) == fam
            && self.dst.unwrap_or(e.dst) == e.dst
    }
}

fn ct_msg(ty: u16, family: u8) -> Msg {
    let mut m = Msg::new((NFNL_SUBSYS_CTNETLINK << 8) | ty, 0);
    m.push(&[family, 0, 0, 0]);
    m
}

fn parse_ip(a: Attrs<'_>, v4: u16, v6: u16) -> Option<IpAddr> {
    if let Some(x) = a.get(v4) {
        return Some(Ipv4Addr::from(<[u8; 4]>::try_from(x.data).ok()?).into());
    }
    Some(Ipv6Addr::from(<[u8; 16]>::try_from(a.get(v6)?.data).ok()?).into())
}

/// One entry of a conntrack dump (the attributes after its nfgenmsg).
pub fn parse_entry(a: Attrs<'_>) -> Option<Entry> {
    let orig = a.get(CTA_TUPLE_ORIG)?.nested();
    let ip = orig.get(CTA_TUPLE_IP)?.nested();
    let proto = orig.get(CTA_TUPLE_PROTO)?.nested();
    let port = |ty| proto.get(ty).map_or(0, |p| p.u16_be());
    Some(Entry {
        src: parse_ip(ip.clone(), CTA_IP_V4_SRC, CTA_IP_V6_SRC)?,
        dst: parse_ip(ip, CTA_IP_V4_DST, CTA_IP_V6_DST)?,
        proto: proto.get(CTA_PROTO_NUM)?.u8(),
        sport: port(CTA_PROTO_SRC_PORT),
        dport: port(CTA_PROTO_DST_PORT),
        zone: a.get(CTA_ZONE).map_or(0, |z| z.u16_be()),
        id: a.get(CTA_ID).map(|x| x.u32_be()),
    })
}

/// All entries of a family (libc::AF_INET, AF_INET6, or 0 for both).
pub fn list(sock: &mut Socket, family: u8) -> NlResult<Vec<Entry>> {
    let replies = sock.dump(ct_msg(IPCTNL_MSG_CT_GET, family))?;
    Ok(replies.iter().filter_map(|r| parse_entry(r.attrs(4))).collect())
}

/// Delete one entry by its original tuple (and id). A vanished entry is fine.
pub fn delete(sock: &mut Socket, e: &Entry) -> NlResult<()> {
    let (fam, v4) = if e.src.is_ipv4() { (libc::AF_INET as u8, true) } else { (libc::AF_INET6 as u8, false) };
    let mut m = ct_msg(IPCTNL_MSG_CT_DELETE, fam);
    m.nest(CTA_TUPLE_ORIG, |t| {
        t.nest(CTA_TUPLE_IP, |ip| {
            let (s, d) = if v4 { (CTA_IP_V4_SRC, CTA_IP_V4_DST) } else { (CTA_IP_V6_SRC, CTA_IP_V6_DST) };
            ip.attr(s, &crate::nft::key::ip(e.src)).attr(d, &crate::nft::key::ip(e.dst));
        });
        t.nest(CTA_TUPLE_PROTO, |p| {
            p.attr_u8(CTA_PROTO_NUM, e.proto);
            p.attr_u16_be(CTA_PROTO_SRC_PORT, e.sport).attr_u16_be(CTA_PROTO_DST_PORT, e.dport);
        });
    });
    if e.zone != 0 {
        m.attr_u16_be(CTA_ZONE, e.zone);
    }
    if let Some(id) = e.id {
        m.attr_u32_be(CTA_ID, id);
    }
    match sock.request(m) {
        Err(err) if err.not_found() => Ok(()),
        r => r,
    }
}

/// Delete every entry that matches `f`; returns how many were deleted.
pub fn delete_matching(sock: &mut Socket, f: &Filter) -> NlResult<usize> {
    let entries: Vec<Entry> =
        list(sock, f.family.unwrap_or(0))?.into_iter().filter(|e| f.matches(e)).collect();
    for e in &entries {
        delete(sock, e)?;
    }
    Ok(entries.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::testns::TestNs;

    fn send_udp(ns: &TestNs, dst: &str, port: u16) {
        ns.run(&["bash", "-c", &format!("echo x > /dev/udp/{dst}/{port}")]);
    }

    #[test]
    fn short_port_and_zone_attributes_read_as_zero_instead_of_panicking() {
        // Seen while writing fuzz/netlink_replies: a one-byte port indexed past its data.
        let mut m = ct_msg(IPCTNL_MSG_CT_GET, libc::AF_INET as u8);
        m.nest(CTA_TUPLE_ORIG, |o| {
            o.nest(CTA_TUPLE_IP, |ip| {
                ip.attr(CTA_IP_V4_SRC, &[10, 0, 0, 1]).attr(CTA_IP_V4_DST, &[10, 0, 0, 2]);
            });
            o.nest(CTA_TUPLE_PROTO, |p| {
                p.attr_u8(CTA_PROTO_NUM, PROTO_UDP)
                    .attr(CTA_PROTO_SRC_PORT, &[1])
                    .attr(CTA_PROTO_DST_PORT, &[]);
            });
        });
        m.attr(CTA_ZONE, &[7]);
        let bytes = m.bytes(1);
        let e = parse_entry(Attrs::new(&bytes[crate::netlink::NLMSG_HDRLEN + 4..])).unwrap();
        assert_eq!((e.proto, e.sport, e.dport, e.zone), (PROTO_UDP, 0, 0, 0));
    }

    #[test]
    fn filter_matches_proto_port_family_and_dst() {
        let e = Entry {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            proto: PROTO_UDP,
            sport: 40000,
            dport: 53,
            zone: 0,
            id: None,
        };
        assert!(Filter::udp_port(53).matches(&e));
        assert!(!Filter::udp_port(54).matches(&e));
        assert!(!Filter { proto: PROTO_TCP, ..Filter::udp_port(53) }.matches(&e));
        assert!(!Filter { family: Some(libc::AF_INET6 as u8), ..Filter::udp_port(53) }.matches(&e));
        assert!(Filter { dst: Some(e.dst), ..Filter::udp_port(53) }.matches(&e));
        assert!(!Filter { dst: Some(e.src), ..Filter::udp_port(53) }.matches(&e));
    }

    #[test]
    fn flush_udp_entries_by_port() {
        let Some(ns) = TestNs::new("ct") else { return };
        ns.run(&["ip", "link", "set", "lo", "up"]);
        // conntrack runs in a netns only once something uses it
        ns.run_stdin(
            &["nft", "-f", "-"],
            "table inet t {\n chain c {\n type filter hook output priority 0; ct state new counter\n }\n}\n",
        );
        send_udp(&ns, "127.0.0.1", 5353);
        send_udp(&ns, "127.0.0.1", 5353);
        send_udp(&ns, "127.0.0.1", 5354);
        send_udp(&ns, "::1", 5353);
        let proc_count = |port: u16| {
            let text = ns.run(&["cat", "/proc/net/nf_conntrack"]);
            text.lines().filter(|l| l.contains("udp") && l.contains(&format!(" dport={port} "))).count()
        };
        // each line holds both directions; count the original ones
        assert_eq!(proc_count(5353), 3, "{}", ns.run(&["cat", "/proc/net/nf_conntrack"]));

        let mut sock = ns.netns().socket(libc::NETLINK_NETFILTER).unwrap();
        let all = list(&mut sock, 0).unwrap();
        assert_eq!(all.iter().filter(|e| e.dport == 5353).count(), 3, "{all:?}");

        let v4 = Filter { family: Some(libc::AF_INET as u8), ..Filter::udp_port(5353) };
        assert_eq!(delete_matching(&mut sock, &v4).unwrap(), 2);
        let left = list(&mut sock, 0).unwrap();
        assert_eq!(left.iter().filter(|e| e.dport == 5353).count(), 1);
        assert!(left.iter().any(|e| e.dport == 5354 && e.proto == PROTO_UDP));
        assert_eq!(proc_count(5353), 1);

        assert_eq!(delete_matching(&mut sock, &Filter::udp_port(5353)).unwrap(), 1);
        assert_eq!(delete_matching(&mut sock, &Filter::udp_port(5353)).unwrap(), 0);
        assert_eq!(proc_count(5353), 0);
        assert_eq!(proc_count(5354), 1);
    }
}
