//! The nf_tables state of published ports: one table for the whole node,
//! flat in the number of containers.
//!
//! ```text
//! table inet cnirs_portmap {
//!   map ports4  { type inet_proto . inet_service : ipv4_addr . inet_service }             # any host address
//!   map hostip4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service } # one host address
//!   set snat4   { type ipv4_addr . inet_service }   # container addr . port to masquerade when hairpinned
//!   set masq4   { type ipv4_addr . inet_service }   # container addr . port to masquerade always (masqAll)
//!   (ports6, hostip6, snat6, masq6 alike)           # every element: comment "<network>/<containerID>/<ifname>"
//!   set localnet { type ifname }                    # where we turned route_localnet on (to turn it off)
//!
//!   chain hostports {
//!     meta nfproto ipv4 dnat ip to ip daddr . meta l4proto . th dport map @hostip4
//!     meta nfproto ipv4 dnat ip to meta l4proto . th dport map @ports4
//!     meta nfproto ipv6 dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostip6
//!     meta nfproto ipv6 dnat ip6 to meta l4proto . th dport map @ports6
//!   }
//!   chain prerouting { type nat hook prerouting priority dstnat; fib daddr type local jump hostports }
//!   chain output     { type nat hook output priority -100;       fib daddr type local jump hostports }
//!   chain guard      { type filter hook prerouting priority raw;
//!     ip daddr 127.0.0.0/8 iifname != "lo" drop      # kubernetes#90259: route_localnet is not an open door
//!   }
//!   chain postrouting { type nat hook postrouting priority srcnat;
//!     ct status dnat ip daddr . th dport @masq4 masquerade comment "masqAll"
//!     ct status dnat ip6 daddr . th dport @masq6 masquerade comment "masqAll"
//!     ct status dnat ip saddr 127.0.0.0/8 ip daddr . th dport @snat4 masquerade comment "localhost"
//!     ct status dnat ip saddr 10.88.0.0/16 ip daddr . th dport @snat4 masquerade comment "hairpin 10.88.0.0/16"
//!     # one hairpin rule per container subnet, kept while a snat element lies in it
//!   }
//! }
//! ```
//!
//! ADD is one transaction adding elements (plus the skeleton with the first
//! container, plus a hairpin rule with the first container of a subnet).
//! Port-map elements are *created* (NLM_F_EXCL): a key that already exists
//! fails the transaction, and only then are the maps listed to tell the
//! container's own stale elements (replaced) from another container's
//! (a conflict naming it). DEL and GC find elements by their tag; when the
//! last element goes, the table goes: zero rules left.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use common::ipnet::IpNet;
use common::nft::expr::{self, Addr, CmpOp, Verdict};
use common::nft::tag::{self, Legacy, Owner};
use common::nft::{
    key, BaseChain, Batch, DataType, Elem, ElemData, Family, Hook, Nft, NftError, Rule, SetSpec, Table,
};
use common::{CniError, Result};

use crate::config::{Config, Mapping, Proto};

pub const TABLE: &str = "cnirs_portmap";
pub const LOCALNET: &str = "localnet";
const HOSTPORTS: &str = "hostports";
const POSTROUTING: &str = "postrouting";
const HAIRPIN: &str = "hairpin ";
/// Base chains and the regular chain every complete table has.
pub const CHAINS: [&str; 5] = [HOSTPORTS, "prerouting", "output", "guard", POSTROUTING];

pub fn table() -> Table {
    Table::new(Family::Inet, TABLE)
}

/// Serializes ADD/DEL/GC of all networks: the skeleton and the hairpin rules
/// are created on demand and must not be created twice.
pub fn lock() -> Result<common::lock::FileLock> {
    common::lock::runtime_lock("nft-cnirs_portmap")
}

/// The attachment whose elements these are. They carry its tag
/// (`common::nft::tag`), whose network part lets GC of one network leave the
/// others' elements alone: the table is node-wide because host ports are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub container_id: String,
    pub ifname: String,
    pub network: String,
}

impl Attachment {
    pub fn new(container_id: &str, ifname: &str, network: &str) -> Attachment {
        Attachment { container_id: container_id.into(), ifname: ifname.into(), network: network.into() }
    }

    pub fn tag(&self) -> String {
        tag::of(&self.network, &self.container_id, &self.ifname)
    }

    /// True when an element's owner is this attachment (also in an earlier tag format).
    pub fn owns(&self, o: &Owner) -> bool {
        o.in_network(&self.network) && o.is(&self.container_id, &self.ifname)
    }
}

/// The owner an element's comment names (earlier versions put the network last).
pub fn owner(comment: Option<&str>) -> Option<Owner> {
    Owner::parse(comment?, Legacy::NetworkLast)
}

/// The sets and maps holding per-attachment elements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Ports,
    HostIp,
    Snat,
    Masq,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Ports, Kind::HostIp, Kind::Snat, Kind::Masq];

    pub fn set(self, v6: bool) -> &'static str {
        match (self, v6) {
            (Kind::Ports, false) => "ports4",
            (Kind::Ports, true) => "ports6",
            (Kind::HostIp, false) => "hostip4",
            (Kind::HostIp, true) => "hostip6",
            (Kind::Snat, false) => "snat4",
            (Kind::Snat, true) => "snat6",
            (Kind::Masq, false) => "masq4",
            (Kind::Masq, true) => "masq6",
        }
    }

    fn spec(self, v6: bool) -> SetSpec {
        let a = if v6 { DataType::IPV6_ADDR } else { DataType::IPV4_ADDR };
        let (proto, port) = (DataType::INET_PROTO, DataType::INET_SERVICE);
        let name = self.set(v6);
        match self {
            Kind::Ports => SetSpec::map(name, &[proto, port], &[a, port]),
            Kind::HostIp => SetSpec::map(name, &[a, proto, port], &[a, port]),
            Kind::Snat | Kind::Masq => SetSpec::set(name, &[a, port]),
        }
    }

    /// Every (kind, family) pair.
    pub fn every() -> impl Iterator<Item = (Kind, bool)> {
        Kind::ALL.into_iter().flat_map(|k| [(k, false), (k, true)])
    }
}

/// One element an attachment wants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub v6: bool,
    pub elem: Elem,
    /// The mapping behind a port-map element (conflicts name it).
    pub mapping: Option<Mapping>,
}

/// Everything one attachment puts into the table.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub attachment: Option<Attachment>,
    pub entries: Vec<Entry>,
    /// Container subnets that need a hairpin rule (snat only).
    pub subnets: Vec<IpNet>,
    /// How many mappings the config has (for messages).
    pub mappings: usize,
}

fn addr_port(a: IpAddr, port: u16) -> Vec<u8> {
    key::concat(&[&key::ip(a), &key::port(port)])
}

/// The elements for `cfg`'s mappings of a container with addresses `c4`/`c6`.
pub fn wanted(cfg: &Config, c4: Option<IpNet>, c6: Option<IpNet>, att: &Attachment) -> Wanted {
    let tag = att.tag();
    let tag = tag.as_str();
    let mut w = Wanted { attachment: Some(att.clone()), mappings: cfg.mappings.len(), ..Default::default() };
    for (v6, caddr) in [(false, c4), (true, c6)] {
        let Some(caddr) = caddr else { continue };
        let mut applied = BTreeSet::new();
        for m in cfg.mappings.iter().filter(|m| m.applies_to(v6)) {
            let data = addr_port(caddr.addr, m.container_port);
            let (kind, k) = match m.specific_ip() {
                None => (Kind::Ports, key::concat(&[&[m.proto.number()], &key::port(m.host_port)])),
                Some(h) => {
                    (Kind::HostIp, key::concat(&[&key::ip(h), &[m.proto.number()], &key::port(m.host_port)]))
                }
            };
            let elem = Elem::new(k).value(data.clone()).comment(tag);
            w.entries.push(Entry { kind, v6, elem, mapping: Some(*m) });
            applied.insert(data);
        }
        for data in &applied {
            if cfg.masq_all {
                let elem = Elem::new(data.clone()).comment(tag);
                w.entries.push(Entry { kind: Kind::Masq, v6, elem, mapping: None });
            }
            if cfg.snat {
                let elem = Elem::new(data.clone()).comment(tag);
                w.entries.push(Entry { kind: Kind::Snat, v6, elem, mapping: None });
            }
        }
        if cfg.snat && !applied.is_empty() {
            w.subnets.push(caddr.network());
        }
    }
    w
}

impl Wanted {
    /// True when an existing element is this attachment's (in any tag format).
    pub fn owns(&self, e: &Elem) -> bool {
        let Some(a) = &self.attachment else { return false };
        owner(e.comment.as_deref()).is_some_and(|o| a.owns(&o))
    }
    /// True when an IPv4 mapping may be reached from 127.0.0.1 (snat on).
    pub fn wants_localhost(&self) -> bool {
        self.entries.iter().any(|e| e.kind == Kind::Snat && !e.v6)
    }
    /// UDP host ports (with their specific host address) of this attachment.
    pub fn udp_ports(&self) -> Vec<(u16, Option<IpAddr>)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter_map(|e| e.mapping)
            .filter(|m| m.proto == Proto::Udp)
            .map(|m| (m.host_port, m.specific_ip()))
            .collect();
        v.sort();
        v.dedup();
        v
    }
}

// ---- the skeleton -------------------------------------------------------------

fn masq_rule(v6: bool, src: Option<IpNet>, set: &str, comment: String) -> Rule {
    let mut e = [expr::ct_status(expr::CT_STATUS_DST_NAT), expr::nfproto(v6)].concat();
    if let Some(net) = src {
        e.extend(expr::addr_in_prefix(Addr::Src, net.addr, net.prefix, CmpOp::Eq));
    }
    e.extend(expr::addr_dport_in_set(Addr::Dst, v6, set, false));
    e.extend(expr::masquerade(0));
    Rule::new(e).comment(comment)
}

fn hairpin_comment(net: &IpNet) -> String {
    format!("{HAIRPIN}{net}")
}

fn hairpin_rule(net: &IpNet) -> Rule {
    let v6 = !net.is_ipv4();
    masq_rule(v6, Some(*net), Kind::Snat.set(v6), hairpin_comment(net))
}

/// Table, sets, chains and the fixed rules, in one batch.
fn skeleton(b: &mut Batch, t: &Table) {
    b.add_table(t);
    for (kind, v6) in Kind::every() {
        b.add_set(t, &kind.spec(v6));
    }
    b.add_set(t, &SetSpec::set(LOCALNET, &[DataType::IFNAME]));
    b.add_chain(t, HOSTPORTS, None)
        .add_chain(t, "prerouting", Some(BaseChain::nat(Hook::Prerouting, -100)))
        .add_chain(t, "output", Some(BaseChain::nat(Hook::Output, -100)))
        .add_chain(t, "guard", Some(BaseChain::filter(Hook::Prerouting, -300)))
        .add_chain(t, POSTROUTING, Some(BaseChain::nat(Hook::Postrouting, 100)));
    for v6 in [false, true] {
        let hostip = [expr::nfproto(v6), expr::dnat_via_addr_map(Kind::HostIp.set(v6), v6)].concat();
        b.add_rule(t, HOSTPORTS, &Rule::new(hostip));
        let any = [expr::nfproto(v6), expr::dnat_via_map(Kind::Ports.set(v6), v6)].concat();
        b.add_rule(t, HOSTPORTS, &Rule::new(any));
    }
    for chain in ["prerouting", "output"] {
        let jump = [expr::fib_daddr_local(), expr::verdict(Verdict::Jump(HOSTPORTS.into()))].concat();
        b.add_rule(t, chain, &Rule::new(jump));
    }
    let lo: IpAddr = "127.0.0.0".parse().unwrap();
    let guard = [
        expr::nfproto(false),
        expr::addr_in_prefix(Addr::Dst, lo, 8, CmpOp::Eq),
        expr::ifname(true, "lo", CmpOp::Neq),
        expr::verdict(Verdict::Drop),
    ];
    b.add_rule(t, "guard", &Rule::new(guard.concat()).comment("kubernetes#90259"));
    for v6 in [false, true] {
        b.add_rule(t, POSTROUTING, &masq_rule(v6, None, Kind::Masq.set(v6), "masqAll".into()));
    }
    let localhost = IpNet { addr: lo, prefix: 8 };
    b.add_rule(t, POSTROUTING, &masq_rule(false, Some(localhost), Kind::Snat.set(false), "localhost".into()));
}

// ---- ADD ------------------------------------------------------------------------

fn not_found_ok<T: Default>(r: common::nft::NftResult<T>) -> Result<T> {
    match r {
        Ok(v) => Ok(v),
        Err(e) if e.not_found() => Ok(T::default()),
        Err(e) => Err(e.into()),
    }
}

/// Who holds an element, for messages.
fn holder(comment: Option<&str>, network: &str) -> String {
    match owner(comment) {
        Some(o) if o.in_network(network) => format!("container {} ({})", o.container_id(), o.ifname()),
        Some(o) => format!(
            "container {} ({}) of network {}",
            o.container_id(),
            o.ifname(),
            o.network().unwrap_or_default()
        ),
        None => "another owner (no container tag)".into(),
    }
}

/// Add the attachment's elements; `localnet` is an interface whose
/// route_localnet the caller is about to turn on. Call under [`lock`].
pub fn add(nft: &mut Nft, w: &Wanted, localnet: Option<&str>) -> Result<()> {
    let t = table();
    let exists = nft.table_exists(&t)?;
    let mut base = Batch::new();
    if !exists {
        skeleton(&mut base, &t);
    }
    let rules: BTreeSet<String> = if exists {
        not_found_ok(nft.list_rules(&t, POSTROUTING))?.into_iter().filter_map(|r| r.comment).collect()
    } else {
        BTreeSet::new()
    };
    for net in &w.subnets {
        if !rules.contains(&hairpin_comment(net)) {
            base.add_rule(&t, POSTROUTING, &hairpin_rule(net));
        }
    }
    if let Some(ifname) = localnet {
        base.add_elements(&t, LOCALNET, &[Elem::new(key::ifname(ifname))]);
    }
    let mut b = base.clone();
    create_all(&mut b, &t, w);
    match nft.commit(&b) {
        Ok(()) => return Ok(()),
        Err(e) if e.err.is(libc::EEXIST) => {}
        Err(e) => return Err(publish_error(w, e)),
    }
    // Some key exists: ours from an earlier ADD (replace it), another
    // attachment's port (a conflict), or a stale snat/masq element of a gone
    // container that had this address (take it over).
    let network = w.attachment.as_ref().map(|a| a.network.clone()).unwrap_or_default();
    let mut b = base;
    for (kind, v6) in Kind::every() {
        let mine: Vec<&Entry> = w.entries.iter().filter(|e| e.kind == kind && e.v6 == v6).collect();
        if mine.is_empty() {
            continue;
        }
        let set = kind.set(v6);
        let existing: BTreeMap<Vec<u8>, Elem> =
            not_found_ok(nft.list_elements(&t, set))?.into_iter().map(|e| (e.key.clone(), e)).collect();
        let mut stale = Vec::new();
        for e in &mine {
            let Some(old) = existing.get(&e.elem.key) else { continue };
            if let (Some(m), false) = (e.mapping, w.owns(old)) {
                return Err(CniError::internal(format!(
                    "host port {m} is already mapped for {}",
                    holder(old.comment.as_deref(), &network)
                )));
            }
            stale.push(e.elem.key.clone());
        }
        b.destroy_elements(&t, set, &stale);
    }
    create_all(&mut b, &t, w);
    nft.commit(&b).map_err(|e| publish_error(w, e))
}

/// ADD is one transaction, and a transaction is one datagram: with
/// CAP_NET_ADMIN the send buffer grows to fit (a million elements were
/// tried), without it (rootless) it stops at twice net.core.wmem_max.
fn publish_error(w: &Wanted, e: NftError) -> CniError {
    match &e.err.ext {
        Some(why) if e.err.is(libc::EMSGSIZE) => CniError::invalid_config(format!(
            "too many port mappings ({}) for one nf_tables transaction: {why}",
            w.mappings
        )),
        _ => CniError::internal(format!("publishing ports: {e}")),
    }
}

fn create_all(b: &mut Batch, t: &Table, w: &Wanted) {
    for (kind, v6) in Kind::every() {
        let elems: Vec<Elem> =
            w.entries.iter().filter(|e| e.kind == kind && e.v6 == v6).map(|e| e.elem.clone()).collect();
        b.create_elements(t, kind.set(v6), &elems);
    }
}

// ---- DEL and GC ---------------------------------------------------------------

/// What a prune removed, for the caller's conntrack flush and sysctl reset.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// UDP host ports that were unpublished, with their specific host address.
    pub udp_ports: Vec<(u16, Option<IpAddr>)>,
    /// The table went with the last element.
    pub table_gone: bool,
    /// Interfaces whose route_localnet we had turned on (when the table went).
    pub localnet: Vec<String>,
}

/// The UDP host port (and host address) a port-map key publishes.
fn udp_port_of(kind: Kind, v6: bool, k: &[u8]) -> Option<(u16, Option<IpAddr>)> {
    let (alen, off) = match kind {
        Kind::Ports => (0, 0),
        Kind::HostIp if v6 => (16, 16),
        Kind::HostIp => (4, 4),
        _ => return None,
    };
    if *k.get(off)? != Proto::Udp.number() {
        return None;
    }
    let port = u16::from_be_bytes([*k.get(off + 4)?, *k.get(off + 5)?]);
    let ip = match alen {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(&k[..4]).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(&k[..16]).ok()?)),
        _ => None,
    };
    Some((port, ip))
}

/// The container address of a snat element (`addr . port`).
fn snat_addr(v6: bool, k: &[u8]) -> Option<IpAddr> {
    if v6 {
        Some(IpAddr::from(<[u8; 16]>::try_from(k.get(..16)?).ok()?))
    } else {
        Some(IpAddr::from(<[u8; 4]>::try_from(k.get(..4)?).ok()?))
    }
}

/// Remove every element whose tag satisfies `doomed`, hairpin rules no
/// snat element needs any more, and the whole table when nothing is left.
/// Call under [`lock`].
pub fn prune(nft: &mut Nft, doomed: impl Fn(Option<&Owner>) -> bool) -> Result<Pruned> {
    let t = table();
    let mut out = Pruned::default();
    if !nft.table_exists(&t)? {
        return Ok(out);
    }
    let mut b = Batch::new();
    let mut remaining = 0;
    let mut snat_left: Vec<IpAddr> = Vec::new();
    for (kind, v6) in Kind::every() {
        let set = kind.set(v6);
        let elems = not_found_ok(nft.list_elements(&t, set))?;
        let (gone, kept): (Vec<Elem>, Vec<Elem>) =
            elems.into_iter().partition(|e| doomed(owner(e.comment.as_deref()).as_ref()));
        remaining += kept.len();
        if kind == Kind::Snat {
            snat_left.extend(kept.iter().filter_map(|e| snat_addr(v6, &e.key)));
        }
        out.udp_ports.extend(gone.iter().filter_map(|e| udp_port_of(kind, v6, &e.key)));
        let keys: Vec<Vec<u8>> = gone.into_iter().map(|e| e.key).collect();
        b.destroy_elements(&t, set, &keys);
    }
    out.udp_ports.sort();
    out.udp_ports.dedup();
    if remaining == 0 {
        out.localnet = not_found_ok(nft.list_elements(&t, LOCALNET))?
            .iter()
            .map(|e| String::from_utf8_lossy(&e.key).trim_end_matches('\0').to_string())
            .collect();
        out.table_gone = true;
        let mut b = Batch::new();
        b.destroy_table(&t);
        nft.commit(&b).map_err(|e| CniError::internal(format!("removing published ports: {e}")))?;
        return Ok(out);
    }
    for r in not_found_ok(nft.list_rules(&t, POSTROUTING))? {
        let Some(net) = r.comment.as_deref().and_then(|c| c.strip_prefix(HAIRPIN)) else { continue };
        let Ok(net) = net.parse::<IpNet>() else { continue };
        if !snat_left.iter().any(|a| net.contains(a)) {
            b.delete_rule(&t, POSTROUTING, r.handle);
        }
    }
    nft.commit(&b).map_err(|e| CniError::internal(format!("removing published ports: {e}")))?;
    Ok(out)
}

// ---- CHECK ----------------------------------------------------------------------

/// Every element of `w` is in place with this attachment's tag, and the
/// chains and hairpin rules exist.
pub fn check(nft: &mut Nft, w: &Wanted) -> Result<()> {
    let t = table();
    if !nft.table_exists(&t)? {
        return Err(CniError::internal(format!("table {t} of published ports is missing")));
    }
    let chains: BTreeSet<String> = nft.list_chains(&t)?.into_iter().map(|c| c.name).collect();
    if let Some(c) = CHAINS.iter().find(|c| !chains.contains(**c)) {
        return Err(CniError::internal(format!("chain {c} of table {t} is missing")));
    }
    // each set listed once, its elements by key (thousands of mappings)
    let mut cache: BTreeMap<&str, BTreeMap<Vec<u8>, Elem>> = BTreeMap::new();
    for e in &w.entries {
        let set = e.kind.set(e.v6);
        if !cache.contains_key(set) {
            let elems = nft.list_elements(&t, set)?.into_iter().map(|x| (x.key.clone(), x)).collect();
            cache.insert(set, elems);
        }
        let found = cache[set].get(&e.elem.key);
        let what = match e.mapping {
            Some(m) => format!("host port {m}"),
            None => format!("masquerade of {} ({set})", describe_addr_port(e.v6, &e.elem.key)),
        };
        match found {
            None => return Err(CniError::internal(format!("{what} is not published"))),
            Some(x) if !w.owns(x) => {
                let network = w.attachment.as_ref().map(|a| a.network.as_str()).unwrap_or_default();
                return Err(CniError::internal(format!(
                    "{what} belongs to {}",
                    holder(x.comment.as_deref(), network)
                )));
            }
            Some(x) if e.elem.data.is_some() && x.data != e.elem.data => {
                return Err(CniError::internal(format!(
                    "{what} points elsewhere: {}",
                    describe_data(e.v6, &x.data)
                )))
            }
            Some(_) => {}
        }
    }
    let rules: BTreeSet<String> =
        nft.list_rules(&t, POSTROUTING)?.into_iter().filter_map(|r| r.comment).collect();
    for net in &w.subnets {
        if !rules.contains(&hairpin_comment(net)) {
            return Err(CniError::internal(format!("the hairpin masquerade rule for {net} is missing")));
        }
    }
    Ok(())
}

fn describe_addr_port(v6: bool, k: &[u8]) -> String {
    let n = if v6 { 16 } else { 4 };
    let (Some(a), Some(p)) = (snat_addr(v6, k), k.get(n..n + 2)) else { return "?".into() };
    let port = u16::from_be_bytes([p[0], p[1]]);
    if v6 {
        format!("[{a}]:{port}")
    } else {
        format!("{a}:{port}")
    }
}

fn describe_data(v6: bool, d: &Option<ElemData>) -> String {
    match d {
        Some(ElemData::Value(v)) => describe_addr_port(v6, v),
        _ => "?".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(snat: bool, masq_all: bool, m: serde_json::Value) -> Config {
        Config { snat, masq_all, mappings: crate::config::parse_mappings(Some(&m)).unwrap() }
    }

    #[test]
    fn wanted_elements_per_family() {
        let c = cfg(
            true,
            false,
            serde_json::json!([
                {"hostPort": 8080, "containerPort": 80},
                {"hostPort": 8081, "containerPort": 80, "protocol": "udp", "hostIP": "192.0.2.1"},
                {"hostPort": 8082, "containerPort": 82, "hostIP": "2001:db8::1"}
            ]),
        );
        let c4: IpNet = "10.88.0.5/24".parse().unwrap();
        let w = wanted(&c, Some(c4), None, &Attachment::new("abc", "eth0", "net"));
        let kinds: Vec<(Kind, bool)> = w.entries.iter().map(|e| (e.kind, e.v6)).collect();
        // the IPv6 hostIP mapping does not apply to an IPv4-only container;
        // two mappings to :80 need one snat element
        assert_eq!(kinds, vec![(Kind::Ports, false), (Kind::HostIp, false), (Kind::Snat, false)]);
        assert_eq!(w.entries[0].elem.key, vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
        assert_eq!(w.entries[0].elem.data, Some(ElemData::Value(vec![10, 88, 0, 5, 0, 80, 0, 0])));
        assert_eq!(w.entries[1].elem.key, vec![192, 0, 2, 1, 17, 0, 0, 0, 0x1f, 0x91, 0, 0]);
        assert_eq!(w.entries[0].elem.comment.as_deref(), Some("net/abc/eth0"));
        assert_eq!(w.subnets, vec!["10.88.0.0/24".parse().unwrap()]);
        assert!(w.wants_localhost());
        assert_eq!(w.udp_ports(), vec![(8081, Some("192.0.2.1".parse().unwrap()))]);
        assert_eq!(udp_port_of(Kind::HostIp, false, &w.entries[1].elem.key), w.udp_ports().first().copied());

        let c6: IpNet = "fd00::5/64".parse().unwrap();
        let w = wanted(
            &cfg(false, true, serde_json::json!([{"hostPort": 1, "containerPort": 2}])),
            None,
            Some(c6),
            &Attachment::new("t", "i", "n"),
        );
        let kinds: Vec<(Kind, bool)> = w.entries.iter().map(|e| (e.kind, e.v6)).collect();
        assert_eq!(kinds, vec![(Kind::Ports, true), (Kind::Masq, true)]);
        assert!(w.subnets.is_empty() && !w.wants_localhost());
    }
}

#[cfg(test)]
mod attachment_tests {
    use super::{owner, Attachment};

    #[test]
    fn attachments_own_their_tags_and_those_of_earlier_versions() {
        let long = "n".repeat(100);
        let cid = "c".repeat(64);
        for net in ["k8s-pods", long.as_str()] {
            let a = Attachment::new(&cid, "eth0", net);
            let o = owner(Some(&a.tag())).unwrap();
            assert!(a.owns(&o));
            assert!(!Attachment::new(&cid, "eth1", net).owns(&o));
            assert!(!Attachment::new(&cid, "eth0", "podman").owns(&o));
            // The previous version: "<cid> <ifname> <network>", cut at 128 bytes.
            let mut old = format!("{cid} eth0 {net}");
            old.truncate(128);
            assert!(a.owns(&owner(Some(&old)).unwrap()), "{old}");
            assert!(!Attachment::new(&cid, "eth0", "podman").owns(&owner(Some(&old)).unwrap()));
        }
        assert_eq!(owner(Some("abc eth0")), None);
        assert_eq!(owner(None), None);
    }
}
