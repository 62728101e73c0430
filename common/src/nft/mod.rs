//! A small typed nf_tables layer over our netlink core (libc only).
//!
//! Changes go through a [`Batch`], committed by [`Nft::commit`] as one
//! nfnetlink transaction: all of it applies or none, however many elements
//! (long element lists are spread over several messages of the batch; the
//! socket's send buffer is raised to fit it). Listing (tables, chains,
//! sets, rules with handle and comment, set elements with comment) lets CHECK,
//! GC and DEL work from kernel state alone. Expressions live in [`expr`].
//!
//! Attribute ids follow linux/netfilter/nf_tables.h; the byte layout of the
//! messages matches what nft 1.0.6 sends (see the golden tests and
//! docs/nftables-notes.md).

use std::collections::HashMap;
use std::fmt;

use crate::netlink::{Attrs, Msg, NlError, Reply, Socket, NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_EXCL};
use crate::netns::Netns;

pub mod expr;
#[cfg(test)]
mod large_tests;
#[cfg(any(test, feature = "fake"))]
pub(crate) mod model;
pub mod tag;
#[cfg(test)]
pub(crate) mod testns;
#[cfg(test)]
mod tests;

pub use expr::{Expr, Verdict};

pub(crate) const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;

// enum nf_tables_msg_types
const MSG_NEWTABLE: u16 = 0;
const MSG_GETTABLE: u16 = 1;
const MSG_DELTABLE: u16 = 2;
const MSG_NEWCHAIN: u16 = 3;
const MSG_GETCHAIN: u16 = 4;
const MSG_DELCHAIN: u16 = 5;
const MSG_NEWRULE: u16 = 6;
const MSG_GETRULE: u16 = 7;
const MSG_DELRULE: u16 = 8;
const MSG_NEWSET: u16 = 9;
const MSG_GETSET: u16 = 10;
const MSG_DELSET: u16 = 11;
const MSG_NEWSETELEM: u16 = 12;
const MSG_GETSETELEM: u16 = 13;
const MSG_DELSETELEM: u16 = 14;
const MSG_DESTROYTABLE: u16 = 26; // kernel >= 6.3
const MSG_DESTROYSETELEM: u16 = 30;

const TABLE_NAME: u16 = 1;
const TABLE_FLAGS: u16 = 2;
const CHAIN_TABLE: u16 = 1;
const CHAIN_HANDLE: u16 = 2;
const CHAIN_NAME: u16 = 3;
const CHAIN_HOOK: u16 = 4;
const CHAIN_POLICY: u16 = 5;
const CHAIN_TYPE: u16 = 7;
const HOOK_HOOKNUM: u16 = 1;
const HOOK_PRIORITY: u16 = 2;
const RULE_TABLE: u16 = 1;
const RULE_CHAIN: u16 = 2;
const RULE_HANDLE: u16 = 3;
const RULE_EXPRESSIONS: u16 = 4;
const RULE_POSITION: u16 = 6;
const RULE_USERDATA: u16 = 7;
const SET_TABLE: u16 = 1;
const SET_NAME: u16 = 2;
const SET_FLAGS: u16 = 3;
const SET_KEY_TYPE: u16 = 4;
const SET_KEY_LEN: u16 = 5;
const SET_DATA_TYPE: u16 = 6;
const SET_DATA_LEN: u16 = 7;
const SET_ID: u16 = 10;
const SET_USERDATA: u16 = 13;
const ELEM_LIST_TABLE: u16 = 1;
const ELEM_LIST_SET: u16 = 2;
const ELEM_LIST_ELEMENTS: u16 = 3;
const ELEM_LIST_SET_ID: u16 = 4;
const ELEM_KEY: u16 = 1;
const ELEM_DATA: u16 = 2;
const ELEM_USERDATA: u16 = 6;
pub(crate) const LIST_ELEM: u16 = 1;
pub(crate) const DATA_VALUE: u16 = 1;
pub(crate) const DATA_VERDICT: u16 = 2;

/// Set flags (NFT_SET_*). MAP is added by [`SetSpec`] itself for maps.
pub const SET_F_CONSTANT: u32 = 0x2;
pub const SET_F_INTERVAL: u32 = 0x4;
pub const SET_F_MAP: u32 = 0x8;
pub const SET_F_TIMEOUT: u32 = 0x10;
const NFT_DATA_VERDICT: u32 = 0xffff_ff00;

/// Longest comment nft accepts; longer ones are cut at a char boundary.
pub const COMMENT_MAX: usize = 128;

/// An address family of nf_tables (NFPROTO_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Family {
    Inet = 1,
    Ip = 2,
    Arp = 3,
    Netdev = 5,
    Bridge = 7,
    Ip6 = 10,
}

impl Family {
    pub fn from_u8(v: u8) -> Option<Family> {
        use Family::*;
        [Inet, Ip, Arp, Netdev, Bridge, Ip6].into_iter().find(|f| *f as u8 == v)
    }
    pub fn name(self) -> &'static str {
        match self {
            Family::Inet => "inet",
            Family::Ip => "ip",
            Family::Arp => "arp",
            Family::Netdev => "netdev",
            Family::Bridge => "bridge",
            Family::Ip6 => "ip6",
        }
    }
}

/// A table by family and name; every command names one.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Table {
    pub family: Family,
    pub name: String,
}

impl Table {
    pub fn new(family: Family, name: impl Into<String>) -> Table {
        Table { family, name: name.into() }
    }
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.family.name(), self.name)
    }
}

/// Netfilter hooks (NF_INET_*).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    Prerouting = 0,
    Input = 1,
    Forward = 2,
    Output = 3,
    Postrouting = 4,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainType {
    Filter,
    Nat,
    Route,
}

impl ChainType {
    fn name(self) -> &'static str {
        match self {
            ChainType::Filter => "filter",
            ChainType::Nat => "nat",
            ChainType::Route => "route",
        }
    }
}

/// What makes a chain a base chain: its type, hook, priority and policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BaseChain {
    pub ty: ChainType,
    pub hook: Hook,
    pub priority: i32,
    /// true: policy accept, false: policy drop.
    pub accept: bool,
}

impl BaseChain {
    pub fn filter(hook: Hook, priority: i32) -> BaseChain {
        BaseChain { ty: ChainType::Filter, hook, priority, accept: true }
    }
    pub fn nat(hook: Hook, priority: i32) -> BaseChain {
        BaseChain { ty: ChainType::Nat, hook, priority, accept: true }
    }
}

/// A data type of set keys and map values: nft's type id, its byte length
/// and byte order (0 none, 1 host, 2 network) that nft keeps in set user data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataType {
    pub id: u32,
    pub len: u32,
    pub order: u32,
}

impl DataType {
    pub const MARK: DataType = DataType { id: 19, len: 4, order: 1 };
    pub const IPV4_ADDR: DataType = DataType { id: 7, len: 4, order: 2 };
    pub const IPV6_ADDR: DataType = DataType { id: 8, len: 16, order: 2 };
    pub const ETHER_ADDR: DataType = DataType { id: 9, len: 6, order: 2 };
    pub const INET_PROTO: DataType = DataType { id: 12, len: 1, order: 0 };
    pub const INET_SERVICE: DataType = DataType { id: 13, len: 2, order: 2 };
    pub const IFNAME: DataType = DataType { id: 41, len: 16, order: 1 };

    /// nft's encoding of a concatenation: type ids shifted by 6 bits each,
    /// every field padded to 4 bytes, no single byte order.
    fn concat(types: &[DataType]) -> (u32, u32, u32) {
        match types {
            [one] => (one.id, one.len, one.order),
            _ => types.iter().fold((0, 0, 0), |(id, len, _), t| ((id << 6) | t.id, len + pad4(t.len), 0)),
        }
    }
}

fn pad4(n: u32) -> u32 {
    (n + 3) & !3
}

/// What a set maps its keys to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SetData {
    /// A plain set.
    None,
    /// A map to values (concatenated when more than one type).
    Value(Vec<DataType>),
    /// A verdict map (`vmap`).
    Verdict,
}

/// A named set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetSpec {
    pub name: String,
    pub key: Vec<DataType>,
    pub data: SetData,
    /// Extra NFT_SET_* flags (SET_F_MAP is added for maps).
    pub flags: u32,
}

impl SetSpec {
    pub fn set(name: impl Into<String>, key: &[DataType]) -> SetSpec {
        SetSpec { name: name.into(), key: key.to_vec(), data: SetData::None, flags: 0 }
    }
    pub fn map(name: impl Into<String>, key: &[DataType], data: &[DataType]) -> SetSpec {
        SetSpec { data: SetData::Value(data.to_vec()), ..SetSpec::set(name, key) }
    }
    pub fn vmap(name: impl Into<String>, key: &[DataType]) -> SetSpec {
        SetSpec { data: SetData::Verdict, ..SetSpec::set(name, key) }
    }
}

/// Data of a map element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ElemData {
    Value(Vec<u8>),
    Verdict(Verdict),
}

/// A set or map element: key bytes (see [`key`]), optional data and comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Elem {
    pub key: Vec<u8>,
    pub data: Option<ElemData>,
    pub comment: Option<String>,
}

impl Elem {
    pub fn new(key: Vec<u8>) -> Elem {
        Elem { key, data: None, comment: None }
    }
    pub fn value(mut self, data: Vec<u8>) -> Elem {
        self.data = Some(ElemData::Value(data));
        self
    }
    pub fn verdict(mut self, v: Verdict) -> Elem {
        self.data = Some(ElemData::Verdict(v));
        self
    }
    pub fn comment(mut self, c: impl Into<String>) -> Elem {
        self.comment = Some(c.into());
        self
    }
}

/// Key and data bytes in the layout nf_tables stores them.
pub mod key {
    use std::net::IpAddr;

    pub fn ip(a: IpAddr) -> Vec<u8> {
        match a {
            IpAddr::V4(a) => a.octets().to_vec(),
            IpAddr::V6(a) => a.octets().to_vec(),
        }
    }
    /// A port (inet_service), network byte order.
    pub fn port(p: u16) -> Vec<u8> {
        p.to_be_bytes().to_vec()
    }
    /// An interface name, NUL padded to IFNAMSIZ.
    pub fn ifname(name: &str) -> Vec<u8> {
        let mut v = name.as_bytes().to_vec();
        v.resize(16, 0);
        v
    }
    /// Fields of a concatenation, each padded to 4 bytes.
    pub fn concat(fields: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for f in fields {
            v.extend_from_slice(f);
            v.resize((v.len() + 3) & !3, 0);
        }
        v
    }
}

/// Where a new rule goes in its chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Position {
    End,
    Start,
    After(u64),
    Before(u64),
}

/// A rule: its expressions, an optional comment and where it goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub exprs: Vec<Expr>,
    pub comment: Option<String>,
    pub position: Position,
}

impl Rule {
    pub fn new(exprs: Vec<Expr>) -> Rule {
        Rule { exprs, comment: None, position: Position::End }
    }
    pub fn comment(mut self, c: impl Into<String>) -> Rule {
        self.comment = Some(c.into());
        self
    }
    pub fn at(mut self, p: Position) -> Rule {
        self.position = p;
        self
    }
}

/// libnftnl user data: a TLV of type 0 (comment), NUL terminated.
pub fn comment_udata(c: &str) -> Vec<u8> {
    let mut end = c.len().min(COMMENT_MAX);
    while !c.is_char_boundary(end) {
        end -= 1;
    }
    let mut v = vec![0, (end + 1) as u8];
    v.extend_from_slice(&c.as_bytes()[..end]);
    v.push(0);
    v
}

/// The comment in libnftnl user data, if any.
pub fn parse_comment(mut udata: &[u8]) -> Option<String> {
    while udata.len() >= 2 {
        let (ty, len) = (udata[0], udata[1] as usize);
        let val = udata.get(2..2 + len)?;
        if ty == 0 {
            let end = val.iter().position(|&b| b == 0).unwrap_or(val.len());
            return Some(String::from_utf8_lossy(&val[..end]).into_owned());
        }
        udata = &udata[2 + len..];
    }
    None
}

/// One element of an element list: key, data, comment.
fn encode_elem(l: &mut Msg, e: &Elem) {
    l.nest(LIST_ELEM, |n| {
        n.nest(ELEM_KEY, |k| {
            k.attr(DATA_VALUE, &e.key);
        });
        match &e.data {
            Some(ElemData::Value(v)) => {
                n.nest(ELEM_DATA, |d| {
                    d.attr(DATA_VALUE, v);
                });
            }
            Some(ElemData::Verdict(v)) => {
                n.nest(ELEM_DATA, |d| v.encode(d));
            }
            None => {}
        }
        if let Some(c) = &e.comment {
            n.attr(ELEM_USERDATA, &comment_udata(c));
        }
    });
}

/// A refused nf_tables command or listing, with what we were doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NftError {
    pub what: String,
    pub err: NlError,
}

impl NftError {
    pub fn not_found(&self) -> bool {
        self.err.not_found()
    }
}

/// The errno text without std's " (os error N)" suffix.
pub(crate) fn errno_text(errno: i32) -> String {
    let s = std::io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl fmt::Display for NftError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "nf_tables: {}: {}", self.what, errno_text(self.err.errno))?;
        match &self.err.ext {
            Some(ext) if !ext.contains("os error") => write!(f, " ({ext})"),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for NftError {}

impl From<NftError> for crate::error::CniError {
    fn from(e: NftError) -> Self {
        crate::error::CniError::internal(e.to_string())
    }
}

pub type NftResult<T> = std::result::Result<T, NftError>;

fn nfgen(ty: u16, flags: u16, family: u8) -> Msg {
    let mut m = Msg::new((NFNL_SUBSYS_NFTABLES << 8) | ty, flags);
    m.push(&[family, 0, 0, 0]);
    m
}

#[derive(Clone, Debug)]
struct Cmd {
    msg: Msg,
    what: String,
    /// For DESTROY commands: the DEL commands that replace it on kernels
    /// before 6.3, one per object so that a missing one can be told apart.
    fallback: Vec<Msg>,
    /// "Not found" counts as success (DESTROY and its DEL fallbacks).
    missing_ok: bool,
}

/// Commands collected for one nf_tables transaction.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    cmds: Vec<Cmd>,
    set_ids: HashMap<(Family, String, String), u32>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    fn cmd(&mut self, msg: Msg, what: String) -> &mut Msg {
        self.cmds.push(Cmd { msg, what, fallback: Vec::new(), missing_ok: false });
        &mut self.cmds.last_mut().unwrap().msg
    }

    /// What the batch does, one "what" per command ("adding table inet x; …").
    pub fn describe(&self) -> String {
        self.cmds.iter().map(|c| c.what.as_str()).collect::<Vec<_>>().join("; ")
    }

    /// The per-batch id of a set added earlier in this batch.
    fn set_id(&self, t: &Table, set: &str) -> Option<u32> {
        self.set_ids.get(&(t.family, t.name.clone(), set.to_string())).copied()
    }

    /// Add a table; an existing one is left as it is.
    pub fn add_table(&mut self, t: &Table) -> &mut Self {
        let m = self.cmd(nfgen(MSG_NEWTABLE, NLM_F_CREATE, t.family as u8), format!("adding table {t}"));
        m.attr_str(TABLE_NAME, &t.name).attr_u32_be(TABLE_FLAGS, 0);
        self
    }

    /// Delete a table with everything in it; fails when it does not exist.
    pub fn delete_table(&mut self, t: &Table) -> &mut Self {
        let m = self.cmd(nfgen(MSG_DELTABLE, 0, t.family as u8), format!("deleting table {t}"));
        m.attr_str(TABLE_NAME, &t.name);
        self
    }

    /// Delete a table if it exists.
    pub fn destroy_table(&mut self, t: &Table) -> &mut Self {
        let mut del = nfgen(MSG_DELTABLE, 0, t.family as u8);
        del.attr_str(TABLE_NAME, &t.name);
        let mut m = nfgen(MSG_DESTROYTABLE, 0, t.family as u8);
        m.attr_str(TABLE_NAME, &t.name);
        self.cmds.push(Cmd {
            msg: m,
            what: format!("deleting table {t}"),
            fallback: vec![del],
            missing_ok: true,
        });
        self
    }

    /// Add a chain (a base chain when `base` is given); an existing one is kept.
    pub fn add_chain(&mut self, t: &Table, name: &str, base: Option<BaseChain>) -> &mut Self {
        let what = format!("adding chain {t}/{name}");
        let m = self.cmd(nfgen(MSG_NEWCHAIN, NLM_F_CREATE, t.family as u8), what);
        m.attr_str(CHAIN_TABLE, &t.name).attr_str(CHAIN_NAME, name);
        if let Some(b) = base {
            m.attr_str(CHAIN_TYPE, b.ty.name()).attr_u32_be(CHAIN_POLICY, b.accept as u32).nest(
                CHAIN_HOOK,
                |h| {
                    h.attr_u32_be(HOOK_HOOKNUM, b.hook as u32).attr_u32_be(HOOK_PRIORITY, b.priority as u32);
                },
            );
        }
        self
    }

    /// Remove every rule of a chain.
    pub fn flush_chain(&mut self, t: &Table, chain: &str) -> &mut Self {
        let m = self.cmd(nfgen(MSG_DELRULE, 0, t.family as u8), format!("flushing chain {t}/{chain}"));
        m.attr_str(RULE_TABLE, &t.name).attr_str(RULE_CHAIN, chain);
        self
    }

    /// Delete a chain and its rules; fails while other rules jump to it.
    pub fn delete_chain(&mut self, t: &Table, chain: &str) -> &mut Self {
        let m = self.cmd(nfgen(MSG_DELCHAIN, 0, t.family as u8), format!("deleting chain {t}/{chain}"));
        m.attr_str(CHAIN_TABLE, &t.name).attr_str(CHAIN_NAME, chain);
        self
    }

    /// Add a set or map; an existing one of the same type is kept.
    pub fn add_set(&mut self, t: &Table, s: &SetSpec) -> &mut Self {
        let id = self.set_ids.len() as u32 + 1;
        self.set_ids.insert((t.family, t.name.clone(), s.name.clone()), id);
        let kind = if s.data == SetData::None { "set" } else { "map" };
        let what = format!("adding {kind} {t}/{}", s.name);
        let m = self.cmd(nfgen(MSG_NEWSET, NLM_F_CREATE, t.family as u8), what);
        let flags = s.flags | if s.data == SetData::None { 0 } else { SET_F_MAP };
        let (kt, kl, korder) = DataType::concat(&s.key);
        // libnftnl set user data: KEYBYTEORDER (0), DATABYTEORDER (1) for maps;
        // nft needs them to print host-order keys such as ifname back.
        let mut udata = vec![0, 4];
        udata.extend_from_slice(&korder.to_ne_bytes());
        m.attr_str(SET_TABLE, &t.name).attr_str(SET_NAME, &s.name).attr_u32_be(SET_FLAGS, flags);
        m.attr_u32_be(SET_KEY_TYPE, kt).attr_u32_be(SET_KEY_LEN, kl);
        match &s.data {
            SetData::None => {}
            SetData::Value(d) => {
                let (dt, dl, dorder) = DataType::concat(d);
                m.attr_u32_be(SET_DATA_TYPE, dt).attr_u32_be(SET_DATA_LEN, dl);
                udata.extend_from_slice(&[1, 4]);
                udata.extend_from_slice(&dorder.to_ne_bytes());
            }
            SetData::Verdict => {
                m.attr_u32_be(SET_DATA_TYPE, NFT_DATA_VERDICT);
                udata.extend_from_slice(&[1, 4, 0, 0, 0, 0]);
            }
        }
        m.attr_u32_be(SET_ID, id).attr(SET_USERDATA, &udata);
        self
    }

    /// Delete a set or map (fails while rules refer to it).
    pub fn delete_set(&mut self, t: &Table, set: &str) -> &mut Self {
        let m = self.cmd(nfgen(MSG_DELSET, 0, t.family as u8), format!("deleting set {t}/{set}"));
        m.attr_str(SET_TABLE, &t.name).attr_str(SET_NAME, set);
        self
    }

    /// Element messages for `elems`, each with the number of elements it
    /// holds: as many messages as the list needs, since one list attribute
    /// holds at most 64 KiB (a few hundred elements with comments). All
    /// go into the same batch, so they still apply together or not at all.
    fn elem_msgs(&self, ty: u16, flags: u16, t: &Table, set: &str, elems: &[Elem]) -> Vec<(Msg, usize)> {
        let mut out = Vec::new();
        let mut rest = elems;
        while !rest.is_empty() {
            let mut m = nfgen(ty, flags, t.family as u8);
            m.attr_str(ELEM_LIST_TABLE, &t.name).attr_str(ELEM_LIST_SET, set);
            if let Some(id) = self.set_id(t, set) {
                m.attr_u32_be(ELEM_LIST_SET_ID, id);
            }
            let n = m.nest_fill(ELEM_LIST_ELEMENTS, rest, encode_elem);
            rest = &rest[n..];
            out.push((m, n));
        }
        out
    }

    fn elem_cmds(&mut self, ty: u16, flags: u16, t: &Table, set: &str, elems: &[Elem], what: String) {
        for (msg, _) in self.elem_msgs(ty, flags, t, set, elems) {
            self.cmd(msg, what.clone());
        }
    }

    /// Add elements to a set or map. Re-adding an element is fine; a map key
    /// that already maps to other data fails with EEXIST.
    pub fn add_elements(&mut self, t: &Table, set: &str, elems: &[Elem]) -> &mut Self {
        self.elem_cmds(
            MSG_NEWSETELEM,
            NLM_F_CREATE,
            t,
            set,
            elems,
            format!("adding element to set {t}/{set}"),
        );
        self
    }

    /// Add elements that must be new: any existing key, even with the same
    /// data, fails the batch with EEXIST (`nft create element`). Lets a caller
    /// notice keys held by others without listing the set first.
    pub fn create_elements(&mut self, t: &Table, set: &str, elems: &[Elem]) -> &mut Self {
        let what = format!("adding element to set {t}/{set}");
        self.elem_cmds(MSG_NEWSETELEM, NLM_F_CREATE | NLM_F_EXCL, t, set, elems, what);
        self
    }

    /// Delete elements by key; fails when one is missing.
    pub fn delete_elements(&mut self, t: &Table, set: &str, keys: &[Vec<u8>]) -> &mut Self {
        let elems: Vec<Elem> = keys.iter().map(|k| Elem::new(k.clone())).collect();
        self.elem_cmds(MSG_DELSETELEM, 0, t, set, &elems, format!("deleting element from set {t}/{set}"));
        self
    }

    /// Delete elements by key; missing elements (or set) are not an error.
    pub fn destroy_elements(&mut self, t: &Table, set: &str, keys: &[Vec<u8>]) -> &mut Self {
        let elems: Vec<Elem> = keys.iter().map(|k| Elem::new(k.clone())).collect();
        let what = format!("deleting element from set {t}/{set}");
        let mut rest = &elems[..];
        for (msg, n) in self.elem_msgs(MSG_DESTROYSETELEM, 0, t, set, &elems) {
            let (these, more) = rest.split_at(n);
            rest = more;
            let one = |e: &Elem| self.elem_msgs(MSG_DELSETELEM, 0, t, set, std::slice::from_ref(e));
            let fallback = these.iter().flat_map(one).map(|(m, _)| m).collect();
            self.cmds.push(Cmd { msg, what: what.clone(), fallback, missing_ok: true });
        }
        self
    }

    /// Add a rule to a chain.
    pub fn add_rule(&mut self, t: &Table, chain: &str, r: &Rule) -> &mut Self {
        let flags = match r.position {
            Position::End | Position::After(_) => NLM_F_CREATE | NLM_F_APPEND,
            Position::Start | Position::Before(_) => NLM_F_CREATE,
        };
        let mut m = nfgen(MSG_NEWRULE, flags, t.family as u8);
        m.attr_str(RULE_TABLE, &t.name).attr_str(RULE_CHAIN, chain);
        if let Position::After(h) | Position::Before(h) = r.position {
            m.attr_u64_be(RULE_POSITION, h);
        }
        m.nest(RULE_EXPRESSIONS, |l| {
            for e in &r.exprs {
                e.encode(l, |set| self.set_id(t, set));
            }
        });
        if let Some(c) = &r.comment {
            m.attr(RULE_USERDATA, &comment_udata(c));
        }
        self.cmd(m, format!("adding rule to chain {t}/{chain}"));
        self
    }

    /// Delete a rule by its handle.
    pub fn delete_rule(&mut self, t: &Table, chain: &str, handle: u64) -> &mut Self {
        let what = format!("deleting rule {handle} of chain {t}/{chain}");
        let m = self.cmd(nfgen(MSG_DELRULE, 0, t.family as u8), what);
        m.attr_str(RULE_TABLE, &t.name).attr_str(RULE_CHAIN, chain).attr_u64_be(RULE_HANDLE, handle);
        self
    }

    /// The same batch for kernels before 6.3: every DESTROY replaced by its
    /// DEL fallbacks.
    fn for_old_kernels(&self) -> Batch {
        let mut b = Batch { cmds: Vec::new(), set_ids: self.set_ids.clone() };
        for c in &self.cmds {
            if c.fallback.is_empty() {
                b.cmds.push(c.clone());
            }
            for m in &c.fallback {
                b.cmds.push(Cmd {
                    msg: m.clone(),
                    what: c.what.clone(),
                    fallback: Vec::new(),
                    missing_ok: true,
                });
            }
        }
        b
    }

    /// The wire messages: batch begin, the commands, batch end. Only the
    /// last command asks for an ACK: the kernel answers refusals anyway, and
    /// an ACK for each of thousands of commands would overflow the socket's
    /// receive buffer.
    fn messages(&self) -> Vec<Msg> {
        let mut begin = Msg::new(NFNL_MSG_BATCH_BEGIN, 0);
        begin.push(&[0, 0, 0, NFNL_SUBSYS_NFTABLES as u8]);
        let mut out = vec![begin];
        out.extend(self.cmds.iter().map(|c| c.msg.clone()));
        if let Some(last) = out.last_mut().filter(|_| !self.cmds.is_empty()) {
            last.add_flags(NLM_F_ACK);
        }
        let mut end = Msg::new(NFNL_MSG_BATCH_END, 0);
        end.push(&[0, 0, 0, NFNL_SUBSYS_NFTABLES as u8]);
        out.push(end);
        out
    }
}

/// A listed chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainInfo {
    pub name: String,
    pub handle: u64,
    /// Hook number and priority of a base chain.
    pub hook: Option<(u32, i32)>,
}

/// A listed rule: its chain, handle and comment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleInfo {
    pub chain: String,
    pub handle: u64,
    pub comment: Option<String>,
}

/// A listed set or map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SetInfo {
    pub name: String,
    pub flags: u32,
    pub key_len: u32,
    pub data_len: u32,
}

/// The objects of one table that exist (see [`Nft::present`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Present {
    pub table: bool,
    pub chains: std::collections::BTreeSet<String>,
    pub sets: std::collections::BTreeSet<String>,
}

impl Present {
    pub fn chain(&self, name: &str) -> bool {
        self.chains.contains(name)
    }
    pub fn set(&self, name: &str) -> bool {
        self.sets.contains(name)
    }
}

/// A connection to nf_tables in one network namespace.
pub struct Nft {
    sock: Socket,
}

impl Nft {
    /// nf_tables of the calling thread's netns.
    pub fn open() -> NftResult<Nft> {
        Socket::open(libc::NETLINK_NETFILTER)
            .map(|sock| Nft { sock })
            .map_err(|e| NftError { what: "opening netlink socket".into(), err: e.into() })
    }

    /// nf_tables of another netns.
    pub fn in_netns(ns: &Netns) -> NftResult<Nft> {
        ns.socket(libc::NETLINK_NETFILTER).map(|sock| Nft { sock }).map_err(|e| NftError {
            what: format!("opening netlink socket in {}", ns.path().display()),
            err: e.into(),
        })
    }

    pub fn from_socket(sock: Socket) -> Nft {
        Nft { sock }
    }

    /// Apply a batch as one transaction. DESTROY commands fall back to DEL
    /// on kernels before 6.3; "not found" of either counts as success.
    pub fn commit(&mut self, batch: &Batch) -> NftResult<()> {
        let mut batch = batch.clone();
        let mut old_kernel = false;
        loop {
            if batch.cmds.is_empty() {
                return Ok(());
            }
            let mut msgs = batch.messages();
            let errors = self
                .sock
                .transact_all(&mut msgs)
                .map_err(|err| NftError { what: "sending batch".into(), err })?;
            // Message 0 is the batch header; command i is message i + 1.
            let errors: Vec<(usize, NlError)> =
                errors.into_iter().map(|(i, e)| (i.saturating_sub(1).min(batch.cmds.len() - 1), e)).collect();
            if errors.is_empty() {
                return Ok(());
            }
            let unsupported = |e: &NlError| e.is(libc::EINVAL) || e.is(libc::EOPNOTSUPP);
            if !old_kernel
                && errors.iter().any(|(i, e)| !batch.cmds[*i].fallback.is_empty() && unsupported(e))
            {
                old_kernel = true;
                batch = batch.for_old_kernels();
                continue;
            }
            let missing = |i: usize, e: &NlError| batch.cmds[i].missing_ok && e.not_found();
            if let Some((i, err)) = errors.iter().find(|(i, e)| !missing(*i, e)) {
                return Err(NftError { what: batch.cmds[*i].what.clone(), err: err.clone() });
            }
            // Only "not found" refusals, which aborted the whole batch: try
            // again without those commands.
            let gone: std::collections::BTreeSet<usize> = errors.iter().map(|(i, _)| *i).collect();
            let mut i = 0;
            batch.cmds.retain(|_| {
                i += 1;
                !gone.contains(&(i - 1))
            });
        }
    }

    fn dump(&mut self, msg: Msg, what: impl FnOnce() -> String) -> NftResult<Vec<Reply>> {
        self.sock.dump(msg).map_err(|err| NftError { what: what(), err })
    }

    /// Tables of one family, or of all families.
    pub fn list_tables(&mut self, family: Option<Family>) -> NftResult<Vec<Table>> {
        let fam = family.map_or(0, |f| f as u8);
        let replies = self.dump(nfgen(MSG_GETTABLE, 0, fam), || "listing tables".into())?;
        Ok(parse_tables(&replies))
    }

    /// True when the table exists.
    pub fn table_exists(&mut self, t: &Table) -> NftResult<bool> {
        Nftables::table_exists(self, t)
    }

    /// What already exists of table `t`. Re-adding an existing table, chain
    /// or set is legal but makes the kernel wait an RCU grace period (6–15 ms)
    /// when this socket closes, so an ADD adds only what is missing.
    pub fn present(&mut self, t: &Table) -> NftResult<Present> {
        Nftables::present(self, t)
    }

    /// Chains of a table.
    pub fn list_chains(&mut self, t: &Table) -> NftResult<Vec<ChainInfo>> {
        let mut m = nfgen(MSG_GETCHAIN, 0, t.family as u8);
        m.attr_str(CHAIN_TABLE, &t.name);
        let replies = self.dump(m, || format!("listing chains of {t}"))?;
        Ok(parse_chains(&replies, t))
    }

    /// Rules of a chain in order, with handle and comment.
    pub fn list_rules(&mut self, t: &Table, chain: &str) -> NftResult<Vec<RuleInfo>> {
        let mut m = nfgen(MSG_GETRULE, 0, t.family as u8);
        m.attr_str(RULE_TABLE, &t.name).attr_str(RULE_CHAIN, chain);
        let replies = self.dump(m, || format!("listing rules of chain {t}/{chain}"))?;
        Ok(parse_rules(&replies, t, chain))
    }

    /// Sets and maps of a table.
    pub fn list_sets(&mut self, t: &Table) -> NftResult<Vec<SetInfo>> {
        let mut m = nfgen(MSG_GETSET, 0, t.family as u8);
        m.attr_str(SET_TABLE, &t.name);
        let replies = self.dump(m, || format!("listing sets of {t}"))?;
        Ok(parse_sets(&replies, t))
    }

    /// Elements of a set or map with data and comment.
    pub fn list_elements(&mut self, t: &Table, set: &str) -> NftResult<Vec<Elem>> {
        let mut m = nfgen(MSG_GETSETELEM, 0, t.family as u8);
        m.attr_str(ELEM_LIST_TABLE, &t.name).attr_str(ELEM_LIST_SET, set);
        let replies = self.dump(m, || format!("listing elements of set {t}/{set}"))?;
        Ok(parse_elements(&replies))
    }
}

// The listings' replies decoded, apart from the socket so that they can be
// checked on any bytes (fuzz/).

/// The tables in a GETTABLE dump.
pub fn parse_tables(replies: &[Reply]) -> Vec<Table> {
    replies
        .iter()
        .filter_map(|r| {
            let family = Family::from_u8(*r.payload.first()?)?;
            let name = r.attrs(4).get(TABLE_NAME)?.str().to_string();
            Some(Table { family, name })
        })
        .collect()
}

/// The chains of table `t` in a GETCHAIN dump.
pub fn parse_chains(replies: &[Reply], t: &Table) -> Vec<ChainInfo> {
    replies
        .iter()
        .filter_map(|r| {
            let a = r.attrs(4);
            if a.get(CHAIN_TABLE)?.str() != t.name {
                return None;
            }
            Some(ChainInfo {
                name: a.get(CHAIN_NAME)?.str().to_string(),
                handle: a.get(CHAIN_HANDLE).map_or(0, |x| x.u64_be()),
                hook: hook_of(&a),
            })
        })
        .collect()
}

/// The rules of `t`/`chain` in a GETRULE dump.
pub fn parse_rules(replies: &[Reply], t: &Table, chain: &str) -> Vec<RuleInfo> {
    replies
        .iter()
        .filter_map(|r| {
            let a = r.attrs(4);
            let ch = a.get(RULE_CHAIN)?.str();
            if a.get(RULE_TABLE)?.str() != t.name || ch != chain {
                return None;
            }
            Some(RuleInfo {
                chain: ch.to_string(),
                handle: a.get(RULE_HANDLE)?.u64_be(),
                comment: a.get(RULE_USERDATA).and_then(|u| parse_comment(u.data)),
            })
        })
        .collect()
}

/// The sets and maps of table `t` in a GETSET dump.
pub fn parse_sets(replies: &[Reply], t: &Table) -> Vec<SetInfo> {
    replies
        .iter()
        .filter_map(|r| {
            let a = r.attrs(4);
            if a.get(SET_TABLE)?.str() != t.name {
                return None;
            }
            let u = |ty| a.get(ty).map_or(0, |x| x.u32_be());
            Some(SetInfo {
                name: a.get(SET_NAME)?.str().to_string(),
                flags: u(SET_FLAGS),
                key_len: u(SET_KEY_LEN),
                data_len: u(SET_DATA_LEN),
            })
        })
        .collect()
}

/// The elements (key, data, comment) in a GETSETELEM dump.
pub fn parse_elements(replies: &[Reply]) -> Vec<Elem> {
    replies.iter().flat_map(|r| elems_of(&r.attrs(4))).collect()
}

/// A chain's hook number and priority (base chains only).
fn hook_of(a: &Attrs<'_>) -> Option<(u32, i32)> {
    a.get(CHAIN_HOOK).map(|h| {
        let h = h.nested();
        let num = h.get(HOOK_HOOKNUM).map_or(0, |x| x.u32_be());
        (num, h.get(HOOK_PRIORITY).map_or(0, |x| x.u32_be() as i32))
    })
}

/// The elements of an element list message (a listing reply or a command).
fn elems_of(a: &Attrs<'_>) -> Vec<Elem> {
    let Some(list) = a.get(ELEM_LIST_ELEMENTS) else { return Vec::new() };
    let mut out = Vec::new();
    for e in list.nested().filter(|e| e.ty == LIST_ELEM) {
        let a = e.nested();
        let Some(key) = a.get(ELEM_KEY).and_then(|k| k.nested().get(DATA_VALUE)) else { continue };
        let data = a.get(ELEM_DATA).and_then(|d| {
            let d = d.nested();
            match (d.get(DATA_VALUE), d.get(DATA_VERDICT)) {
                (Some(v), _) => Some(ElemData::Value(v.data.to_vec())),
                (None, Some(v)) => Verdict::decode(v.nested()).map(ElemData::Verdict),
                _ => None,
            }
        });
        let comment = a.get(ELEM_USERDATA).and_then(|u| parse_comment(u.data));
        out.push(Elem { key: key.data.to_vec(), data, comment });
    }
    out
}

/// nf_tables of one netns as a plugin uses it: the seam that lets unit tests
/// run a plugin's nf_tables decisions against the fake of `common::fake`.
/// [`Nft`] is the real one.
pub trait Nftables {
    /// Apply a batch as one transaction (see [`Nft::commit`]).
    fn commit(&mut self, batch: &Batch) -> NftResult<()>;
    /// Tables of one family, or of all families.
    fn list_tables(&mut self, family: Option<Family>) -> NftResult<Vec<Table>>;
    /// Chains of a table (none for a missing table).
    fn list_chains(&mut self, t: &Table) -> NftResult<Vec<ChainInfo>>;
    /// Rules of a chain in order (none for a missing table or chain).
    fn list_rules(&mut self, t: &Table, chain: &str) -> NftResult<Vec<RuleInfo>>;
    /// Sets and maps of a table; "not found" for a missing table.
    fn list_sets(&mut self, t: &Table) -> NftResult<Vec<SetInfo>>;
    /// Elements of a set or map; "not found" for a missing one.
    fn list_elements(&mut self, t: &Table, set: &str) -> NftResult<Vec<Elem>>;
    /// Hold the runtime lock `name` (see `lock::runtime_lock`) while
    /// reading and changing shared tables; the fake needs none.
    fn lock(&mut self, name: &str) -> crate::Result<Option<crate::lock::FileLock>>;

    /// True when the table exists.
    fn table_exists(&mut self, t: &Table) -> NftResult<bool> {
        Ok(self.list_tables(Some(t.family))?.contains(t))
    }
    /// What already exists of table `t` (see [`Nft::present`]).
    fn present(&mut self, t: &Table) -> NftResult<Present> {
        // Listing the sets of a missing table fails with ENOENT (chains do not).
        let sets = match self.list_sets(t) {
            Ok(s) => s.into_iter().map(|s| s.name).collect(),
            Err(e) if e.not_found() => return Ok(Present::default()),
            Err(e) => return Err(e),
        };
        let chains = self.list_chains(t)?.into_iter().map(|c| c.name).collect();
        Ok(Present { table: true, chains, sets })
    }
}

impl Nftables for Nft {
    fn commit(&mut self, batch: &Batch) -> NftResult<()> {
        Nft::commit(self, batch)
    }
    fn list_tables(&mut self, family: Option<Family>) -> NftResult<Vec<Table>> {
        Nft::list_tables(self, family)
    }
    fn list_chains(&mut self, t: &Table) -> NftResult<Vec<ChainInfo>> {
        Nft::list_chains(self, t)
    }
    fn list_rules(&mut self, t: &Table, chain: &str) -> NftResult<Vec<RuleInfo>> {
        Nft::list_rules(self, t, chain)
    }
    fn list_sets(&mut self, t: &Table) -> NftResult<Vec<SetInfo>> {
        Nft::list_sets(self, t)
    }
    fn list_elements(&mut self, t: &Table, set: &str) -> NftResult<Vec<Elem>> {
        Nft::list_elements(self, t, set)
    }
    fn lock(&mut self, name: &str) -> crate::Result<Option<crate::lock::FileLock>> {
        crate::lock::runtime_lock(name).map(Some)
    }
}
