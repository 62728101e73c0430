//! The firewall's nf_tables state.
//!
//! ```text
//! table inet cnirs_firewall {
//!   set c4_<net> { type ipv4_addr }        # container IPs, comment "<net>/<cid>/<ifname>"
//!   set c6_<net> { type ipv6_addr }
//!   set isolated { type ifname }           # bridges of same-bridge/isolated networks, comment "<net>"
//!   chain forward { type filter hook forward priority filter - 10; policy accept;
//!     meta mark & 0x01000000 == 0x01000000 meta mark set meta mark & 0xfeffffff   # "clear-mark"
//!     # ingressPolicy same-bridge / isolated, one rule per network ("<net> isolate <br>"):
//!     iifname "<br>" oifname != "<br>" oifname @isolated drop
//!     # ingressPolicy isolated only ("<net> intra <br>"):
//!     iifname "<br>" oifname "<br>" drop
//!     # per network and family ("<net> in4", "<net> out4", ...):
//!     ip daddr @c4_<net> ct state established,related meta mark set meta mark | 0x01000000 accept
//!     ip daddr @c4_<net> ct status dnat meta mark set meta mark | 0x01000000 accept   # published ports
//!     ip saddr @c4_<net> meta mark set meta mark | 0x01000000 accept
//!   }
//! }
//! # in every other forward filter chain (ip, ip6, inet) that runs after ours,
//! # e.g. the host's `inet filter forward` or iptables-nft's `ip filter FORWARD`:
//!     meta mark & 0x01000000 == 0x01000000 accept comment "cnirs_firewall"     # first rule
//! ```
//!
//! Why the mark: in nf_tables an `accept` only ends the base chain it is
//! in; every other base chain on the hook still sees the packet, and a
//! `drop` (or a drop policy) there is final. So accepting in our own table
//! cannot make a container reachable on a host whose own forward chain has
//! `policy drop`. Our chain runs first and marks what it accepts; one static
//! rule at the top of each other forward chain accepts marked packets, which
//! is what the reference's `-I FORWARD -j CNI-FORWARD` achieves with
//! iptables. The mark bit is cleared on entry to our chain, so only packets
//! we accepted carry it. The hook-in rules are added on every ADD (to chains
//! that appeared since), verified by CHECK, and removed with our table.
//!
//! Per container the ADD cost is one set element; rules depend on the number
//! of networks only. `<net>` is the network's bounded part, and comments are
//! tags and rule comments of `common::nft::tag`: whatever the name's length,
//! they are found again by recomputing them.

use std::collections::BTreeSet;

use common::nft::expr::{self, Addr, CmpOp, Expr, MetaKey, Verdict, REG_1};
use common::nft::tag::{self, Legacy, Owner};
use common::nft::{
    key, BaseChain, Batch, ChainInfo, DataType, Elem, Family, Hook, Nft, Position, Rule, SetSpec, Table,
};
use common::spec::Attachment as Att;
use common::{CniError, Result};

use crate::{Attachment, Ingress};

pub const TABLE: &str = "cnirs_firewall";
const CHAIN: &str = "forward";
/// filter - 10: before the usual filter chains at priority 0.
pub const PRIORITY: i32 = -10;
/// The meta mark bit meaning "accepted by cnirs_firewall".
pub const MARK: u32 = 0x0100_0000;
/// The comment of our rule in other tables' forward chains.
pub const HOOK_COMMENT: &str = "cnirs_firewall";
const CLEAR_COMMENT: &str = "clear-mark";
const ISOLATED_SET: &str = "isolated";
const NF_INET_FORWARD: u32 = 2;

fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

fn set_prefix(v6: bool) -> &'static str {
    if v6 {
        "c6_"
    } else {
        "c4_"
    }
}

fn set_name(network: &str, v6: bool) -> String {
    tag::set_name(set_prefix(v6), network)
}

/// The network's address sets under every name they may have (`tag::set_names`).
fn all_set_names(network: &str) -> Vec<String> {
    [false, true].into_iter().flat_map(|v6| tag::set_names(set_prefix(v6), network)).collect()
}

/// `<net> in4`, `<net> out6`, …
fn family_comment(network: &str, kind: &str, v6: bool) -> String {
    tag::rule_comment(network, &format!("{kind}{}", fam(v6)))
}

/// `<net> isolate <bridge>`, `<net> intra <bridge>`.
fn bridge_comment(network: &str, kind: &str, bridge: &str) -> String {
    tag::rule_comment(network, &format!("{kind} {bridge}"))
}

fn lock() -> Result<common::lock::FileLock> {
    common::lock::runtime_lock("nft-cnirs_firewall")
}

fn nft_err(what: &str) -> impl Fn(common::nft::NftError) -> CniError + '_ {
    move |e| CniError::internal(format!("{what}: {e}"))
}

// ----- expressions -------------------------------------------------------------

/// `meta mark & MARK == MARK`.
fn marked() -> Vec<Expr> {
    vec![
        Expr::Meta { key: MetaKey::Mark, dreg: REG_1 },
        Expr::Bitwise { sreg: REG_1, dreg: REG_1, mask: MARK.to_ne_bytes().to_vec(), xor: vec![0; 4] },
        Expr::Cmp { sreg: REG_1, op: CmpOp::Eq, data: MARK.to_ne_bytes().to_vec() },
    ]
}

/// `meta mark set meta mark & ~MARK ^ xor` (xor MARK sets the bit, 0 clears it).
fn mark_write(set: bool) -> Vec<Expr> {
    vec![
        Expr::Meta { key: MetaKey::Mark, dreg: REG_1 },
        Expr::Bitwise {
            sreg: REG_1,
            dreg: REG_1,
            mask: (!MARK).to_ne_bytes().to_vec(),
            xor: if set { MARK } else { 0 }.to_ne_bytes().to_vec(),
        },
        Expr::MetaSet { key: MetaKey::Mark, sreg: REG_1 },
    ]
}

fn clear_rule() -> Rule {
    Rule::new([marked(), mark_write(false)].concat()).comment(CLEAR_COMMENT)
}

fn hook_rule() -> Rule {
    Rule::new([marked(), expr::verdict(Verdict::Accept)].concat()).comment(HOOK_COMMENT).at(Position::Start)
}

fn fam(v6: bool) -> char {
    if v6 {
        '6'
    } else {
        '4'
    }
}

/// Replies and related traffic to the containers.
fn in_rule(network: &str, v6: bool) -> Rule {
    Rule::new(
        [
            expr::nfproto(v6),
            expr::addr_in_set(Addr::Dst, v6, &set_name(network, v6), false),
            expr::ct_state(expr::CT_STATE_ESTABLISHED | expr::CT_STATE_RELATED),
            mark_write(true),
            expr::verdict(Verdict::Accept),
        ]
        .concat(),
    )
    .comment(family_comment(network, "in", v6))
}

/// New connections to the containers that were DNATed to them: published
/// ports (portmap, or anyone's DNAT). Docker and netavark accept these too.
fn dnat_rule(network: &str, v6: bool) -> Rule {
    Rule::new(
        [
            expr::nfproto(v6),
            expr::addr_in_set(Addr::Dst, v6, &set_name(network, v6), false),
            expr::ct_status(expr::CT_STATUS_DST_NAT),
            mark_write(true),
            expr::verdict(Verdict::Accept),
        ]
        .concat(),
    )
    .comment(family_comment(network, "dnat", v6))
}

/// Everything the containers send.
fn out_rule(network: &str, v6: bool) -> Rule {
    Rule::new(
        [
            expr::nfproto(v6),
            expr::addr_in_set(Addr::Src, v6, &set_name(network, v6), false),
            mark_write(true),
            expr::verdict(Verdict::Accept),
        ]
        .concat(),
    )
    .comment(family_comment(network, "out", v6))
}

/// From this network's bridge to another isolated bridge: drop (the
/// reference's CNI-ISOLATION-STAGE-1/2 in one rule).
fn isolate_rule(network: &str, bridge: &str) -> Rule {
    Rule::new(
        [
            expr::ifname(true, bridge, CmpOp::Eq),
            expr::ifname(false, bridge, CmpOp::Neq),
            vec![
                Expr::Meta { key: MetaKey::OifName, dreg: REG_1 },
                Expr::Lookup { set: ISOLATED_SET.into(), sreg: REG_1, dreg: None, invert: false },
            ],
            expr::verdict(Verdict::Drop),
        ]
        .concat(),
    )
    .comment(bridge_comment(network, "isolate", bridge))
    .at(Position::Start)
}

/// ingressPolicy isolated: between ports of the same bridge, too (seen here
/// only for routed/hairpin traffic, or with br_netfilter for bridged frames).
fn intra_rule(network: &str, bridge: &str) -> Rule {
    Rule::new(
        [
            expr::ifname(true, bridge, CmpOp::Eq),
            expr::ifname(false, bridge, CmpOp::Eq),
            expr::verdict(Verdict::Drop),
        ]
        .concat(),
    )
    .comment(bridge_comment(network, "intra", bridge))
    .at(Position::Start)
}

// ----- other tables' forward chains ------------------------------------------

/// Forward filter chains of other tables (ip, ip6, inet) that run after ours.
fn foreign_forward_chains(nft: &mut Nft) -> Result<Vec<(Table, ChainInfo)>> {
    let mut out = Vec::new();
    for t in nft.list_tables(None).map_err(nft_err("listing tables"))? {
        if !matches!(t.family, Family::Ip | Family::Ip6 | Family::Inet) || t.name.starts_with("cnirs_") {
            continue;
        }
        let chains = match nft.list_chains(&t) {
            Ok(c) => c,
            Err(e) if e.not_found() => continue, // went away meanwhile
            Err(e) => return Err(nft_err("listing chains")(e)),
        };
        for c in chains {
            if matches!(c.hook, Some((NF_INET_FORWARD, prio)) if prio > PRIORITY) {
                out.push((t.clone(), c));
            }
        }
    }
    Ok(out)
}

/// Handles of our hook-in rules in a foreign chain.
fn hook_handles(nft: &mut Nft, t: &Table, chain: &str) -> Result<Vec<u64>> {
    match nft.list_rules(t, chain) {
        Ok(rules) => Ok(rules
            .into_iter()
            .filter(|r| r.comment.as_deref() == Some(HOOK_COMMENT))
            .map(|r| r.handle)
            .collect()),
        Err(e) if e.not_found() => Ok(Vec::new()),
        Err(e) => Err(nft_err("listing rules")(e)),
    }
}

/// Add the hook-in rule to every foreign forward chain that lacks it.
fn ensure_hooks(nft: &mut Nft, b: &mut Batch) -> Result<()> {
    for (t, c) in foreign_forward_chains(nft)? {
        if hook_handles(nft, &t, &c.name)?.is_empty() {
            b.add_rule(&t, &c.name, &hook_rule());
        }
    }
    Ok(())
}

/// Remove our hook-in rules from every foreign forward chain.
fn remove_hooks(nft: &mut Nft, b: &mut Batch) -> Result<()> {
    for t in nft.list_tables(None).map_err(nft_err("listing tables"))? {
        if !matches!(t.family, Family::Ip | Family::Ip6 | Family::Inet) || t.name.starts_with("cnirs_") {
            continue;
        }
        let Ok(chains) = nft.list_chains(&t) else { continue };
        for c in chains.iter().filter(|c| matches!(c.hook, Some((NF_INET_FORWARD, _)))) {
            for h in hook_handles(nft, &t, &c.name)? {
                b.delete_rule(&t, &c.name, h);
            }
        }
    }
    Ok(())
}

// ----- the verbs ----------------------------------------------------------------

fn rule_comments(nft: &mut Nft, t: &Table) -> Result<BTreeSet<String>> {
    match nft.list_rules(t, CHAIN) {
        Ok(rules) => Ok(rules.into_iter().filter_map(|r| r.comment).collect()),
        Err(e) if e.not_found() => Ok(BTreeSet::new()),
        Err(e) => Err(nft_err("listing our rules")(e)),
    }
}

pub fn add(att: &Attachment, ingress: Ingress) -> Result<()> {
    // Declared before the lock so the lock is released first: closing the
    // socket may wait for the kernel, and parallel ADDs must not queue on that.
    let mut nft = Nft::open().map_err(nft_err("opening nf_tables"))?;
    let _lock = lock()?;
    let t = table();
    let present = nft.present(&t).map_err(nft_err("listing our table"))?;
    let existing = rule_comments(&mut nft, &t)?;
    let net = att.network;
    let mut b = Batch::new();
    if !present.table {
        b.add_table(&t);
    }
    if !present.chain(CHAIN) {
        b.add_chain(&t, CHAIN, Some(BaseChain::filter(Hook::Forward, PRIORITY)));
    }
    if !existing.contains(CLEAR_COMMENT) {
        b.add_rule(&t, CHAIN, &clear_rule().at(Position::Start));
    }
    for v6 in [false, true] {
        let mine: Vec<_> = att.ips.iter().filter(|ip| ip.is_ipv4() != v6).collect();
        if mine.is_empty() {
            continue;
        }
        let kind = if v6 { DataType::IPV6_ADDR } else { DataType::IPV4_ADDR };
        let set = set_name(net, v6);
        if !present.set(&set) {
            b.add_set(&t, &SetSpec::set(&set, &[kind]));
        }
        let elems: Vec<Elem> = mine
            .iter()
            .map(|ip| Elem::new(key::ip(ip.addr)).comment(tag::of(net, att.container_id, att.ifname)))
            .collect();
        b.add_elements(&t, &set, &elems);
        for rule in [in_rule(net, v6), dnat_rule(net, v6), out_rule(net, v6)] {
            if !existing.contains(rule.comment.as_deref().unwrap_or_default()) {
                b.add_rule(&t, CHAIN, &rule);
            }
        }
    }
    if ingress != Ingress::Open {
        let bridge = att.bridge.as_deref().unwrap_or_default();
        if !present.set(ISOLATED_SET) {
            b.add_set(&t, &SetSpec::set(ISOLATED_SET, &[DataType::IFNAME]));
        }
        b.add_elements(&t, ISOLATED_SET, &[Elem::new(key::ifname(bridge)).comment(tag::network(net))]);
        let mut wanted = vec![isolate_rule(net, bridge)];
        if ingress == Ingress::Isolated {
            wanted.push(intra_rule(net, bridge));
        }
        for rule in wanted {
            if !existing.contains(rule.comment.as_deref().unwrap_or_default()) {
                b.add_rule(&t, CHAIN, &rule);
            }
        }
    }
    ensure_hooks(&mut nft, &mut b)?;
    nft.commit(&b).map_err(nft_err("setting up the firewall"))
}

pub fn del(network: &str, container_id: &str, ifname: &str) -> Result<()> {
    prune(network, |o| o.is_some_and(|o| o.is(container_id, ifname)))
}

pub fn gc(network: &str, valid: &[Att]) -> Result<()> {
    prune(network, |o| o.is_none_or(|o| !valid.iter().any(|a| o.is(&a.container_id, &a.ifname))))
}

/// Remove the elements whose tag is doomed; a network's rules and sets go
/// with its last address, the table and hook-in rules with the last network.
fn prune(network: &str, doomed: impl Fn(Option<&Owner>) -> bool) -> Result<()> {
    let t = table();
    let mut nft = Nft::open().map_err(nft_err("opening nf_tables"))?;
    let _lock = lock()?;
    if !nft.table_exists(&t).map_err(nft_err("listing tables"))? {
        // Nothing of ours, but a hook-in may outlive a table someone deleted.
        let mut b = Batch::new();
        remove_hooks(&mut nft, &mut b)?;
        return nft.commit(&b).map_err(nft_err("removing hook-in rules"));
    }
    let mut remaining = 0;
    for set in all_set_names(network) {
        let (_, left) = tag::delete_where(&mut nft, &t, &set, Legacy::Attachment, &doomed)
            .map_err(nft_err("removing container addresses"))?;
        remaining += left;
    }
    if remaining > 0 {
        return Ok(());
    }
    remove_network(&mut nft, &t, network)
}

fn remove_network(nft: &mut Nft, t: &Table, network: &str) -> Result<()> {
    let rules = match nft.list_rules(t, CHAIN) {
        Ok(r) => r,
        Err(e) if e.not_found() => Vec::new(),
        Err(e) => return Err(nft_err("listing our rules")(e)),
    };
    let (theirs, others): (Vec<_>, Vec<_>) =
        rules.into_iter().partition(|r| r.comment.as_deref().is_some_and(|c| tag::rule_of(c, network)));
    let sets = nft.list_sets(t).map_err(nft_err("listing sets"))?;
    let my_sets = all_set_names(network);
    let other_addr_sets = sets
        .iter()
        .filter(|s| (s.name.starts_with("c4_") || s.name.starts_with("c6_")) && !my_sets.contains(&s.name))
        .count();
    let mut b = Batch::new();
    if other_addr_sets == 0 {
        b.destroy_table(t);
        remove_hooks(nft, &mut b)?;
        return nft.commit(&b).map_err(nft_err("removing the firewall table"));
    }
    for r in &theirs {
        b.delete_rule(t, CHAIN, r.handle);
    }
    for s in sets.iter().filter(|s| my_sets.contains(&s.name)) {
        b.delete_set(t, &s.name);
    }
    // The bridge leaves the isolated set unless another network's rule still names it.
    let bridges_of = |rules: &[common::nft::RuleInfo]| -> BTreeSet<String> {
        rules
            .iter()
            .filter_map(|r| r.comment.as_deref())
            .filter_map(|c| c.split_once(" isolate ").map(|(_, br)| br.to_string()))
            .collect()
    };
    let still = bridges_of(&others);
    let gone: Vec<Vec<u8>> =
        bridges_of(&theirs).into_iter().filter(|br| !still.contains(br)).map(|br| key::ifname(&br)).collect();
    b.destroy_elements(t, ISOLATED_SET, &gone);
    nft.commit(&b).map_err(nft_err(&format!("removing the firewall rules of {network}")))
}

pub fn check(att: &Attachment, ingress: Ingress) -> Result<()> {
    if att.ips.is_empty() {
        return Ok(());
    }
    let t = table();
    let mut nft = Nft::open().map_err(nft_err("opening nf_tables"))?;
    if !nft.table_exists(&t).map_err(nft_err("listing tables"))? {
        return Err(CniError::internal(format!("table inet {TABLE} is missing")));
    }
    let comments = rule_comments(&mut nft, &t)?;
    let net = att.network;
    let mine =
        |c: &str| Owner::parse(c, Legacy::Attachment).is_some_and(|o| o.is(att.container_id, att.ifname));
    let need = |c: String| -> Result<()> {
        if comments.contains(&c) {
            Ok(())
        } else {
            Err(CniError::internal(format!("firewall rule {c:?} is missing")))
        }
    };
    need(CLEAR_COMMENT.to_string())?;
    for ip in &att.ips {
        let v6 = !ip.is_ipv4();
        let set = set_name(net, v6);
        let elems = nft
            .list_elements(&t, &set)
            .map_err(|e| CniError::internal(format!("firewall set {set} is missing: {e}")))?;
        let k = key::ip(ip.addr);
        if !elems.iter().any(|e| e.key == k && e.comment.as_deref().is_some_and(mine)) {
            return Err(CniError::internal(format!(
                "{} of {} ({}) is not in the firewall set {set}",
                ip.addr, att.container_id, att.ifname
            )));
        }
        for kind in ["in", "dnat", "out"] {
            need(family_comment(net, kind, v6))?;
        }
    }
    if ingress != Ingress::Open {
        let bridge = att.bridge.as_deref().unwrap_or_default();
        need(bridge_comment(net, "isolate", bridge))?;
        if ingress == Ingress::Isolated {
            need(bridge_comment(net, "intra", bridge))?;
        }
        let elems = nft
            .list_elements(&t, ISOLATED_SET)
            .map_err(|e| CniError::internal(format!("firewall set {ISOLATED_SET} is missing: {e}")))?;
        if !elems.iter().any(|e| e.key == key::ifname(bridge)) {
            return Err(CniError::internal(format!("bridge {bridge:?} is not in the isolated set")));
        }
    }
    for (ft, c) in foreign_forward_chains(&mut nft)? {
        if hook_handles(&mut nft, &ft, &c.name)?.is_empty() {
            return Err(CniError::internal(format!(
                "the forward chain {ft}/{} lacks our accept rule for marked packets",
                c.name
            )));
        }
    }
    Ok(())
}
