//! nf_tables expressions and helpers that build the common matches the way
//! nft 1.0.6 does (so `nft list ruleset` prints them back as nft syntax).
//!
//! Registers: [`REG_VERDICT`], 16-byte [`REG_1`]/[`REG_2`], and 32-bit slots
//! from [`REG32_00`] (= 8, the first quarter of REG_1); reg 9 is the second.

use std::net::IpAddr;

use super::{Family, DATA_VALUE, DATA_VERDICT, LIST_ELEM};
use crate::netlink::{Attrs, Msg};

pub const REG_VERDICT: u32 = 0;
pub const REG_1: u32 = 1;
pub const REG_2: u32 = 2;
pub const REG32_00: u32 = 8;
pub const REG32_01: u32 = 9;

const EXPR_NAME: u16 = 1;
const EXPR_DATA: u16 = 2;
const VERDICT_CODE: u16 = 1;
const VERDICT_CHAIN: u16 = 2;

/// ct state bits (NF_CT_STATE_*).
pub const CT_STATE_INVALID: u32 = 1;
pub const CT_STATE_ESTABLISHED: u32 = 2;
pub const CT_STATE_RELATED: u32 = 4;
pub const CT_STATE_NEW: u32 = 8;
/// ct status bits (IPS_*).
pub const CT_STATUS_SRC_NAT: u32 = 0x10;
pub const CT_STATUS_DST_NAT: u32 = 0x20;
/// NAT flags (NF_NAT_RANGE_*).
pub const NAT_F_RANDOM: u32 = 0x4;
pub const NAT_F_PERSISTENT: u32 = 0x8;
pub const NAT_F_FULLY_RANDOM: u32 = 0x10;
/// fib flags and results.
pub const FIB_F_SADDR: u32 = 1;
pub const FIB_F_DADDR: u32 = 2;
pub const FIB_F_IIF: u32 = 8;
pub const FIB_F_OIF: u32 = 16;
pub const FIB_RESULT_OIF: u32 = 1;
pub const FIB_RESULT_ADDRTYPE: u32 = 3;
const RTN_LOCAL: u32 = 2;

/// A verdict: as a rule's last word, or as the data of a verdict map element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
    Continue,
    Return,
    Jump(String),
    Goto(String),
}

impl Verdict {
    fn code(&self) -> i32 {
        match self {
            Verdict::Drop => 0,
            Verdict::Accept => 1,
            Verdict::Continue => -1,
            Verdict::Jump(_) => -3,
            Verdict::Goto(_) => -4,
            Verdict::Return => -5,
        }
    }

    /// Write NFTA_DATA_VERDICT { CODE, CHAIN } into a data nest.
    pub(crate) fn encode(&self, m: &mut Msg) {
        m.nest(DATA_VERDICT, |v| {
            v.attr_u32_be(VERDICT_CODE, self.code() as u32);
            if let Verdict::Jump(c) | Verdict::Goto(c) = self {
                v.attr_str(VERDICT_CHAIN, c);
            }
        });
    }

    pub(crate) fn decode(a: Attrs<'_>) -> Option<Verdict> {
        let chain = || a.get(VERDICT_CHAIN).map(|c| c.str().to_string());
        Some(match a.get(VERDICT_CODE)?.u32_be() as i32 {
            0 => Verdict::Drop,
            1 => Verdict::Accept,
            -1 => Verdict::Continue,
            -3 => Verdict::Jump(chain()?),
            -4 => Verdict::Goto(chain()?),
            -5 => Verdict::Return,
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaKey {
    Len = 0,
    Protocol = 1,
    Mark = 3,
    Iif = 4,
    Oif = 5,
    IifName = 6,
    OifName = 7,
    IifType = 8,
    NfProto = 15,
    L4Proto = 16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtKey {
    State = 0,
    Direction = 1,
    Status = 2,
    Mark = 3,
    L3Protocol = 7,
    Protocol = 10,
    ProtoSrc = 11,
    ProtoDst = 12,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    Eq = 0,
    Neq = 1,
    Lt = 2,
    Lte = 3,
    Gt = 4,
    Gte = 5,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    Link = 0,
    Network = 1,
    Transport = 2,
}

/// One nf_tables expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    Meta {
        key: MetaKey,
        dreg: u32,
    },
    MetaSet {
        key: MetaKey,
        sreg: u32,
    },
    Cmp {
        sreg: u32,
        op: CmpOp,
        data: Vec<u8>,
    },
    Payload {
        base: Base,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    /// dreg = (sreg & mask) ^ xor; mask and xor have the same length.
    Bitwise {
        sreg: u32,
        dreg: u32,
        mask: Vec<u8>,
        xor: Vec<u8>,
    },
    /// Set membership (dreg None), map lookup (dreg Some), vmap (dreg REG_VERDICT).
    Lookup {
        set: String,
        sreg: u32,
        dreg: Option<u32>,
        invert: bool,
    },
    Ct {
        key: CtKey,
        dreg: u32,
        dir: Option<u8>,
    },
    Fib {
        flags: u32,
        result: u32,
        dreg: u32,
    },
    Immediate {
        dreg: u32,
        data: Vec<u8>,
    },
    Verdict(Verdict),
    /// snat (dnat false) or dnat; family Ip or Ip6; registers holding address / port.
    Nat {
        dnat: bool,
        family: Family,
        addr: Option<u32>,
        proto: Option<u32>,
        flags: u32,
    },
    Masq {
        flags: u32,
    },
    Counter,
}

impl Expr {
    fn name(&self) -> &'static str {
        match self {
            Expr::Meta { .. } | Expr::MetaSet { .. } => "meta",
            Expr::Cmp { .. } => "cmp",
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Lookup { .. } => "lookup",
            Expr::Ct { .. } => "ct",
            Expr::Fib { .. } => "fib",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Nat { .. } => "nat",
            Expr::Masq { .. } => "masq",
            Expr::Counter => "counter",
        }
    }

    /// Write this expression as one element of NFTA_RULE_EXPRESSIONS.
    /// `set_id` gives the batch id of a set created in the same batch.
    pub(crate) fn encode(&self, m: &mut Msg, set_id: impl Fn(&str) -> Option<u32>) {
        m.nest(LIST_ELEM, |e| {
            e.attr_str(EXPR_NAME, self.name());
            e.nest(EXPR_DATA, |d| self.encode_data(d, &set_id));
        });
    }

    fn encode_data(&self, d: &mut Msg, set_id: &dyn Fn(&str) -> Option<u32>) {
        let value = |d: &mut Msg, ty: u16, v: &[u8]| {
            d.nest(ty, |n| {
                n.attr(DATA_VALUE, v);
            });
        };
        match self {
            Expr::Meta { key, dreg } => {
                d.attr_u32_be(2, *key as u32).attr_u32_be(1, *dreg);
            }
            Expr::MetaSet { key, sreg } => {
                d.attr_u32_be(2, *key as u32).attr_u32_be(3, *sreg);
            }
            Expr::Cmp { sreg, op, data } => {
                d.attr_u32_be(1, *sreg).attr_u32_be(2, *op as u32);
                value(d, 3, data);
            }
            Expr::Payload { base, offset, len, dreg } => {
                d.attr_u32_be(1, *dreg).attr_u32_be(2, *base as u32);
                d.attr_u32_be(3, *offset).attr_u32_be(4, *len);
            }
            Expr::Bitwise { sreg, dreg, mask, xor } => {
                d.attr_u32_be(1, *sreg).attr_u32_be(2, *dreg).attr_u32_be(3, mask.len() as u32);
                value(d, 4, mask);
                value(d, 5, xor);
            }
            Expr::Lookup { set, sreg, dreg, invert } => {
                d.attr_u32_be(2, *sreg);
                if let Some(r) = dreg {
                    d.attr_u32_be(3, *r);
                }
                d.attr_str(1, set);
                if let Some(id) = set_id(set) {
                    d.attr_u32_be(4, id);
                }
                if *invert {
                    d.attr_u32_be(5, 1);
                }
            }
            Expr::Ct { key, dreg, dir } => {
                d.attr_u32_be(2, *key as u32).attr_u32_be(1, *dreg);
                if let Some(dir) = dir {
                    d.attr_u8(3, *dir);
                }
            }
            Expr::Fib { flags, result, dreg } => {
                d.attr_u32_be(1, *dreg).attr_u32_be(2, *result).attr_u32_be(3, *flags);
            }
            Expr::Immediate { dreg, data } => {
                d.attr_u32_be(1, *dreg);
                value(d, 2, data);
            }
            Expr::Verdict(v) => {
                d.attr_u32_be(1, REG_VERDICT);
                d.nest(2, |n| v.encode(n));
            }
            Expr::Nat { dnat, family, addr, proto, flags } => {
                d.attr_u32_be(1, *dnat as u32).attr_u32_be(2, *family as u32);
                if let Some(r) = addr {
                    d.attr_u32_be(3, *r);
                }
                if let Some(r) = proto {
                    d.attr_u32_be(5, *r);
                }
                if *flags != 0 {
                    d.attr_u32_be(7, *flags);
                }
            }
            Expr::Masq { flags } => {
                if *flags != 0 {
                    d.attr_u32_be(1, *flags);
                }
            }
            Expr::Counter => {}
        }
    }
}

/// Which address of the IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Addr {
    Src,
    Dst,
}

fn addr_payload(field: Addr, v6: bool) -> Expr {
    let (offset, len) = match (v6, field) {
        (false, Addr::Src) => (12, 4),
        (false, Addr::Dst) => (16, 4),
        (true, Addr::Src) => (8, 16),
        (true, Addr::Dst) => (24, 16),
    };
    Expr::Payload { base: Base::Network, offset, len, dreg: REG_1 }
}

fn cmp(op: CmpOp, data: impl Into<Vec<u8>>) -> Expr {
    Expr::Cmp { sreg: REG_1, op, data: data.into() }
}

/// `meta nfproto ipv4|ipv6`: needed once per rule in inet tables before IP header matches.
pub fn nfproto(v6: bool) -> Vec<Expr> {
    vec![Expr::Meta { key: MetaKey::NfProto, dreg: REG_1 }, cmp(CmpOp::Eq, [if v6 { 10 } else { 2 }])]
}

/// `meta l4proto <p>`.
pub fn l4proto(p: u8) -> Vec<Expr> {
    vec![Expr::Meta { key: MetaKey::L4Proto, dreg: REG_1 }, cmp(CmpOp::Eq, [p])]
}

/// `ip[6] saddr|daddr [!=] @set`.
pub fn addr_in_set(field: Addr, v6: bool, set: &str, invert: bool) -> Vec<Expr> {
    vec![addr_payload(field, v6), Expr::Lookup { set: set.into(), sreg: REG_1, dreg: None, invert }]
}

/// `ip[6] saddr|daddr <op> net/plen`, loading only whole prefix bytes like nft.
pub fn addr_in_prefix(field: Addr, net: IpAddr, plen: u8, op: CmpOp) -> Vec<Expr> {
    let bytes = super::key::ip(net);
    let plen = (plen as usize).min(bytes.len() * 8);
    let mask: Vec<u8> = (0..bytes.len())
        .map(|i| {
            let bits = plen.saturating_sub(i * 8).min(8);
            (0xff00u16 >> bits) as u8
        })
        .collect();
    let masked: Vec<u8> = bytes.iter().zip(&mask).map(|(b, m)| b & m).collect();
    let mut load = addr_payload(field, net.is_ipv6());
    if plen & 7 == 0 && plen > 0 {
        if let Expr::Payload { len, .. } = &mut load {
            *len = (plen / 8) as u32;
        }
        return vec![load, cmp(op, &masked[..plen / 8])];
    }
    let xor = vec![0; mask.len()];
    vec![load, Expr::Bitwise { sreg: REG_1, dreg: REG_1, mask, xor }, cmp(op, masked)]
}

/// `iifname|oifname <op> "name"`.
pub fn ifname(input: bool, name: &str, op: CmpOp) -> Vec<Expr> {
    let key = if input { MetaKey::IifName } else { MetaKey::OifName };
    vec![Expr::Meta { key, dreg: REG_1 }, cmp(op, super::key::ifname(name))]
}

/// `ether saddr <op> mac` (bridge family; other families need `meta iiftype ether` first).
pub fn ether_saddr(mac: [u8; 6], op: CmpOp) -> Vec<Expr> {
    vec![Expr::Payload { base: Base::Link, offset: 6, len: 6, dreg: REG_1 }, cmp(op, mac)]
}

fn ct_bits(key: CtKey, mask: u32) -> Vec<Expr> {
    vec![
        Expr::Ct { key, dreg: REG_1, dir: None },
        Expr::Bitwise { sreg: REG_1, dreg: REG_1, mask: mask.to_ne_bytes().to_vec(), xor: vec![0; 4] },
        cmp(CmpOp::Neq, [0; 4]),
    ]
}

/// `ct state <any of mask>`, e.g. CT_STATE_ESTABLISHED | CT_STATE_RELATED.
pub fn ct_state(mask: u32) -> Vec<Expr> {
    ct_bits(CtKey::State, mask)
}

/// `ct status <any of mask>`, e.g. CT_STATUS_DST_NAT (`ct status dnat`).
pub fn ct_status(mask: u32) -> Vec<Expr> {
    ct_bits(CtKey::Status, mask)
}

/// `fib daddr type local`.
pub fn fib_daddr_local() -> Vec<Expr> {
    vec![
        Expr::Fib { flags: FIB_F_DADDR, result: FIB_RESULT_ADDRTYPE, dreg: REG_1 },
        cmp(CmpOp::Eq, RTN_LOCAL.to_ne_bytes()),
    ]
}

/// `meta mark & mask != 0`.
pub fn mark_has(mask: u32) -> Vec<Expr> {
    vec![
        Expr::Meta { key: MetaKey::Mark, dreg: REG_1 },
        Expr::Bitwise { sreg: REG_1, dreg: REG_1, mask: mask.to_ne_bytes().to_vec(), xor: vec![0; 4] },
        cmp(CmpOp::Neq, [0; 4]),
    ]
}

/// `meta mark set <mark>`.
pub fn mark_set(mark: u32) -> Vec<Expr> {
    vec![
        Expr::Immediate { dreg: REG_1, data: mark.to_ne_bytes().to_vec() },
        Expr::MetaSet { key: MetaKey::Mark, sreg: REG_1 },
    ]
}

fn nat_family(v6: bool) -> Family {
    if v6 {
        Family::Ip6
    } else {
        Family::Ip
    }
}

/// `dnat ip[6] to meta l4proto . th dport map @map`, the map typed
/// `inet_proto . inet_service : ipv4_addr|ipv6_addr . inet_service`.
pub fn dnat_via_map(map: &str, v6: bool) -> Vec<Expr> {
    vec![
        Expr::Meta { key: MetaKey::L4Proto, dreg: REG_1 },
        Expr::Payload { base: Base::Transport, offset: 2, len: 2, dreg: REG32_01 },
        Expr::Lookup { set: map.into(), sreg: REG_1, dreg: Some(REG_1), invert: false },
        Expr::Nat {
            dnat: true,
            family: nat_family(v6),
            addr: Some(REG_1),
            // the port follows the address: 4 bytes in for IPv4, 16 for IPv6
            proto: Some(if v6 { REG_2 } else { REG32_01 }),
            flags: 0,
        },
    ]
}

/// `dnat ip[6] to ip[6] daddr . meta l4proto . th dport map @map`, the map
/// typed `ipv4_addr|ipv6_addr . inet_proto . inet_service : ipv4_addr|ipv6_addr
/// . inet_service` (a per-address port map). Registers as nft 1.0.6 uses them.
pub fn dnat_via_addr_map(map: &str, v6: bool) -> Vec<Expr> {
    // after the address: 1 slot for IPv4, 4 for IPv6 (REG_2 is slot 4 of REG_1)
    let (proto_reg, port_reg) = if v6 { (REG_2, REG32_01 + 4) } else { (REG32_01, REG32_01 + 1) };
    vec![
        addr_payload(Addr::Dst, v6),
        Expr::Meta { key: MetaKey::L4Proto, dreg: proto_reg },
        Expr::Payload { base: Base::Transport, offset: 2, len: 2, dreg: port_reg },
        Expr::Lookup { set: map.into(), sreg: REG_1, dreg: Some(REG_1), invert: false },
        Expr::Nat {
            dnat: true,
            family: nat_family(v6),
            addr: Some(REG_1),
            proto: Some(if v6 { REG_2 } else { REG32_01 }),
            flags: 0,
        },
    ]
}

/// `ip[6] saddr|daddr . th dport [!=] @set`, the set typed
/// `ipv4_addr|ipv6_addr . inet_service`.
pub fn addr_dport_in_set(field: Addr, v6: bool, set: &str, invert: bool) -> Vec<Expr> {
    vec![
        addr_payload(field, v6),
        Expr::Payload { base: Base::Transport, offset: 2, len: 2, dreg: if v6 { REG_2 } else { REG32_01 } },
        Expr::Lookup { set: set.into(), sreg: REG_1, dreg: None, invert },
    ]
}

/// `snat|dnat ip[6] to addr[:port]`.
pub fn nat_to(dnat: bool, addr: IpAddr, port: Option<u16>) -> Vec<Expr> {
    let v6 = addr.is_ipv6();
    let preg = if v6 { REG_2 } else { REG32_01 };
    let mut v = vec![Expr::Immediate { dreg: REG_1, data: super::key::ip(addr) }];
    if let Some(p) = port {
        v.push(Expr::Immediate { dreg: preg, data: p.to_be_bytes().to_vec() });
    }
    v.push(Expr::Nat {
        dnat,
        family: nat_family(v6),
        addr: Some(REG_1),
        proto: port.map(|_| preg),
        flags: 0,
    });
    v
}

/// `masquerade` (flags: NAT_F_FULLY_RANDOM …, 0 for none).
pub fn masquerade(flags: u32) -> Vec<Expr> {
    vec![Expr::Masq { flags }]
}

/// `counter`.
pub fn counter() -> Vec<Expr> {
    vec![Expr::Counter]
}

/// `accept`, `drop`, `return`, `jump chain`, `goto chain`.
pub fn verdict(v: Verdict) -> Vec<Expr> {
    vec![Expr::Verdict(v)]
}

/// `iifname vmap @map` (the map keyed by ifname, data verdict).
pub fn iifname_vmap(map: &str) -> Vec<Expr> {
    vec![
        Expr::Meta { key: MetaKey::IifName, dreg: REG_1 },
        Expr::Lookup { set: map.into(), sreg: REG_1, dreg: Some(REG_VERDICT), invert: false },
    ]
}
