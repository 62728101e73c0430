//! Policy routing rules (RTM_*RULE): which table a packet is routed by.

use super::{parse_ip, payload_of, Family, Rtnl};
use crate::ipnet::IpNet;
use crate::netlink::{Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_EXCL};

const FIB_RULE_HDR_LEN: usize = 12;
// linux/fib_rules.h
const FRA_DST: u16 = 1;
const FRA_SRC: u16 = 2;
const FRA_IIFNAME: u16 = 3;
const FRA_PRIORITY: u16 = 6;
const FRA_FWMARK: u16 = 10;
const FRA_TABLE: u16 = 15;
const FRA_FWMASK: u16 = 16;
const FRA_OIFNAME: u16 = 17;
const FRA_L3MDEV: u16 = 19;
/// `FR_ACT_TO_TBL`: look the packet up in `table`.
pub const FR_ACT_TO_TBL: u8 = 1;

/// A routing rule: packets matching the selectors are routed by `table`.
/// Build with [`Rule::new`] and set the public fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// V4 or V6 (never `Any` when adding).
    pub family: Family,
    /// The rule's preference; `None` lets the kernel pick (adding) or
    /// matches any (deleting).
    pub priority: Option<u32>,
    pub src: Option<IpNet>,
    pub dst: Option<IpNet>,
    /// The table to use; 0 with `l3mdev`.
    pub table: u32,
    pub iif: Option<String>,
    pub oif: Option<String>,
    pub fwmark: Option<u32>,
    pub fwmask: Option<u32>,
    /// Use the table of the packet's VRF device (`ip rule add l3mdev`).
    pub l3mdev: bool,
    /// `FR_ACT_*`: to-table by default.
    pub action: u8,
}

impl Rule {
    /// A to-table rule of `family` with no selector.
    pub fn new(family: Family, table: u32) -> Rule {
        Rule {
            family,
            priority: None,
            src: None,
            dst: None,
            table,
            iif: None,
            oif: None,
            fwmark: None,
            fwmask: None,
            l3mdev: false,
            action: FR_ACT_TO_TBL,
        }
    }

    fn parse(r: &Reply) -> Option<Rule> {
        let p = payload_of(r, libc::RTM_NEWRULE, FIB_RULE_HDR_LEN)?;
        let family = match p[0] as i32 {
            libc::AF_INET => Family::V4,
            libc::AF_INET6 => Family::V6,
            _ => return None,
        };
        let (dst_len, src_len, table8, action) = (p[1], p[2], p[4], p[7]);
        let mut rule = Rule { action, ..Rule::new(family, table8 as u32) };
        let net = |data: &[u8], prefix| parse_ip(data).map(|addr| IpNet { addr, prefix });
        for a in r.attrs(FIB_RULE_HDR_LEN) {
            match a.ty {
                FRA_DST => rule.dst = net(a.data, dst_len),
                FRA_SRC => rule.src = net(a.data, src_len),
                FRA_IIFNAME => rule.iif = Some(a.str().to_string()),
                FRA_OIFNAME => rule.oif = Some(a.str().to_string()),
                FRA_PRIORITY => rule.priority = Some(a.u32()),
                FRA_FWMARK => rule.fwmark = Some(a.u32()),
                FRA_FWMASK => rule.fwmask = Some(a.u32()),
                FRA_TABLE => rule.table = a.u32(),
                FRA_L3MDEV => rule.l3mdev = a.u8() != 0,
                _ => {}
            }
        }
        Some(rule)
    }
}

fn rule_msg(ty: u16, flags: u16, r: &Rule) -> Msg {
    let table8 = if r.table < 256 { r.table as u8 } else { libc::RT_TABLE_UNSPEC };
    let prefix = |n: &Option<IpNet>| n.as_ref().map_or(0, |n| n.prefix);
    let mut h = [0u8; FIB_RULE_HDR_LEN];
    (h[0], h[1], h[2], h[4], h[7]) = (r.family.af(), prefix(&r.dst), prefix(&r.src), table8, r.action);
    let mut m = Msg::new(ty, flags);
    m.push(&h);
    if r.table > 0 {
        m.attr_u32(FRA_TABLE, r.table);
    }
    for (ty, net) in [(FRA_DST, &r.dst), (FRA_SRC, &r.src)] {
        if let Some(n) = net {
            m.attr(ty, &super::ip_bytes(&n.addr));
        }
    }
    for (ty, name) in [(FRA_IIFNAME, &r.iif), (FRA_OIFNAME, &r.oif)] {
        if let Some(name) = name {
            m.attr_str(ty, name);
        }
    }
    for (ty, v) in [(FRA_PRIORITY, r.priority), (FRA_FWMARK, r.fwmark), (FRA_FWMASK, r.fwmask)] {
        if let Some(v) = v {
            m.attr_u32(ty, v);
        }
    }
    if r.l3mdev {
        m.attr_u8(FRA_L3MDEV, 1);
    }
    m
}

impl Rtnl {
    /// Add a rule; `EEXIST` if an equal one exists.
    pub fn add_rule(&mut self, rule: &Rule) -> NlResult<()> {
        self.sock.request(rule_msg(libc::RTM_NEWRULE, NLM_F_CREATE | NLM_F_EXCL, rule))
    }

    /// Delete the first rule matching `rule`'s set fields; `ENOENT` if none.
    pub fn del_rule(&mut self, rule: &Rule) -> NlResult<()> {
        self.sock.request(rule_msg(libc::RTM_DELRULE, 0, rule))
    }

    /// The rules of `family` (both with `Any`), in the kernel's order.
    pub fn rules(&mut self, family: Family) -> NlResult<Vec<Rule>> {
        let mut m = Msg::new(libc::RTM_GETRULE, 0);
        m.push(&[family.af(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let all = self.sock.dump(m)?;
        Ok(all
            .iter()
            .filter_map(Rule::parse)
            .filter(|r| family == Family::Any || r.family == family)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    #[test]
    fn source_rule_roundtrips() {
        let mut r = Rule::new(Family::V4, 100);
        r.src = Some("10.1.2.3/32".parse().unwrap());
        r.priority = Some(1000);
        let reply = as_reply(rule_msg(libc::RTM_NEWRULE, 0, &r));
        assert_eq!(reply.payload[2], 32, "src_len in the header");
        assert_eq!(Rule::parse(&reply).unwrap(), r);
    }

    #[test]
    fn v6_rule_with_every_selector_and_a_big_table_roundtrips() {
        let mut r = Rule::new(Family::V6, 5000);
        r.src = Some("fd00::/64".parse().unwrap());
        r.dst = Some("fd01::/48".parse().unwrap());
        (r.iif, r.oif) = (Some("eth0".into()), Some("eth1".into()));
        (r.fwmark, r.fwmask, r.priority) = (Some(7), Some(0xff), Some(10));
        let reply = as_reply(rule_msg(libc::RTM_NEWRULE, 0, &r));
        assert_eq!(reply.payload[4], libc::RT_TABLE_UNSPEC, "table 5000 does not fit the header");
        assert_eq!(Rule::parse(&reply).unwrap(), r);
    }

    #[test]
    fn l3mdev_rule_has_no_table() {
        let r = Rule { l3mdev: true, priority: Some(1000), ..Rule::new(Family::V4, 0) };
        let reply = as_reply(rule_msg(libc::RTM_NEWRULE, 0, &r));
        assert!(reply.attrs(FIB_RULE_HDR_LEN).get(FRA_TABLE).is_none());
        assert_eq!(Rule::parse(&reply).unwrap(), r);
    }
}
