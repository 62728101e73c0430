//! DNS messages (RFC 1035, EDNS per RFC 6891): the small decoder and encoder
//! the server needs, written for the UDP fast path — a query is parsed into
//! stack buffers, an answer is written straight into the caller's send
//! buffer, and nothing is allocated.
//!
//! Forwarded answers are never re-encoded: the server relays the upstream's
//! bytes with the ID rewritten (and, from the cache, the TTLs aged).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const HEADER_LEN: usize = 12;
/// Longest name in wire form (RFC 1035 §3.1).
pub const MAX_WIRE_NAME: usize = 255;
/// The classic UDP payload limit without EDNS.
pub const UDP_CLASSIC: usize = 512;
/// The payload size we advertise in our OPT record (the DNS flag day value).
pub const EDNS_SIZE: u16 = 1232;
/// Length of an OPT record without options.
pub const OPT_LEN: usize = 11;

pub mod rtype {
    pub const A: u16 = 1;
    pub const SOA: u16 = 6;
    pub const PTR: u16 = 12;
    pub const AAAA: u16 = 28;
    pub const OPT: u16 = 41;
    pub const ANY: u16 = 255;
}

pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const FORMERR: u8 = 1;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const NOTIMP: u8 = 4;
    pub const REFUSED: u8 = 5;
}

pub const CLASS_IN: u16 = 1;
pub const CLASS_ANY: u16 = 255;

pub mod flag {
    pub const QR: u16 = 0x8000;
    pub const OPCODE: u16 = 0x7800;
    pub const AA: u16 = 0x0400;
    pub const TC: u16 = 0x0200;
    pub const RD: u16 = 0x0100;
    pub const RA: u16 = 0x0080;
    pub const CD: u16 = 0x0010;
    pub const RCODE: u16 = 0x000f;
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

#[inline]
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// A name in lowercase dotted form without the trailing dot (`""` is the root).
#[derive(Clone)]
pub struct Name {
    buf: [u8; MAX_WIRE_NAME],
    len: u8,
    /// False when a label holds a `.` byte, so the dotted form is ambiguous.
    pub plain: bool,
}

impl Name {
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// The EDNS facts of a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_size: u16,
    pub version: u8,
    pub dnssec_ok: bool,
}

/// A parsed query. The question section is `msg[HEADER_LEN..question_end]`.
#[derive(Clone, Debug)]
pub struct Query {
    pub id: u16,
    pub flags: u16,
    pub name: Name,
    pub qtype: u16,
    pub qclass: u16,
    pub question_end: usize,
    pub edns: Option<Edns>,
}

impl Query {
    /// Largest UDP answer the client accepts.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => (e.udp_size as usize).max(UDP_CLASSIC),
            None => UDP_CLASSIC,
        }
    }
}

/// Why a message is not a query we answer normally.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bad {
    /// Not worth an answer (too short, or a response).
    Drop,
    /// Answer with this rcode; the question is echoed when it parsed.
    Rcode { rcode: u8, question_end: Option<usize> },
}

/// Read a name at `at` (no compression: questions never need it) into
/// lowercase dotted form. Returns the name and the offset after it.
fn read_question_name(msg: &[u8], mut at: usize) -> Option<(Name, usize)> {
    let mut name = Name { buf: [0; MAX_WIRE_NAME], len: 0, plain: true };
    let mut len = 0usize;
    let mut wire = 0usize;
    loop {
        let l = *msg.get(at)? as usize;
        at += 1;
        wire += 1;
        if l == 0 {
            break;
        }
        if l > 63 {
            return None; // compression pointer or reserved label type
        }
        wire += l;
        // The root label still to come counts too.
        if wire + 1 > MAX_WIRE_NAME {
            return None;
        }
        let label = msg.get(at..at + l)?;
        if len > 0 {
            name.buf[len] = b'.';
            len += 1;
        }
        for &c in label {
            if c == b'.' {
                name.plain = false;
            }
            name.buf[len] = c.to_ascii_lowercase();
            len += 1;
        }
        at += l;
    }
    name.len = len as u8;
    Some((name, at))
}

/// Skip a possibly compressed name; the offset after it.
pub fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let l = *msg.get(at)? as usize;
        match l {
            0 => return Some(at + 1),
            1..=63 => at += 1 + l,
            _ if l & 0xc0 == 0xc0 => {
                msg.get(at + 1)?;
                return Some(at + 2);
            }
            _ => return None,
        }
    }
}

/// One resource record's position: type, the offset of its TTL, rdata range.
struct Rr {
    rtype: u16,
    class: u16,
    ttl_at: usize,
    rdata: usize,
    end: usize,
}

fn read_rr(msg: &[u8], at: usize) -> Option<Rr> {
    let p = skip_name(msg, at)?;
    if p + 10 > msg.len() {
        return None;
    }
    let rdlen = be16(msg, p + 8) as usize;
    let end = p + 10 + rdlen;
    if end > msg.len() {
        return None;
    }
    Some(Rr { rtype: be16(msg, p), class: be16(msg, p + 2), ttl_at: p + 4, rdata: p + 10, end })
}

/// Parse a query far enough to answer it.
pub fn parse_query(msg: &[u8]) -> Result<Query, Bad> {
    if msg.len() < HEADER_LEN {
        return Err(Bad::Drop);
    }
    let flags = be16(msg, 2);
    if flags & flag::QR != 0 {
        return Err(Bad::Drop);
    }
    if flags & flag::OPCODE != 0 {
        return Err(Bad::Rcode { rcode: rcode::NOTIMP, question_end: None });
    }
    if be16(msg, 4) != 1 {
        return Err(Bad::Rcode { rcode: rcode::FORMERR, question_end: None });
    }
    let formerr = Bad::Rcode { rcode: rcode::FORMERR, question_end: None };
    let (name, at) = read_question_name(msg, HEADER_LEN).ok_or(formerr)?;
    if at + 4 > msg.len() {
        return Err(formerr);
    }
    let qtype = be16(msg, at);
    let qclass = be16(msg, at + 2);
    let question_end = at + 4;
    let edns = if be16(msg, 10) > 0 { find_opt(msg, question_end) } else { None };
    Ok(Query { id: be16(msg, 0), flags, name, qtype, qclass, question_end, edns })
}

/// The OPT record among the records after the question, if any.
fn find_opt(msg: &[u8], mut at: usize) -> Option<Edns> {
    let (an, ns, ar) = (be16(msg, 6) as usize, be16(msg, 8) as usize, be16(msg, 10) as usize);
    for i in 0..(an + ns + ar).min(64) {
        let rr = read_rr(msg, at)?;
        if i >= an + ns && rr.rtype == rtype::OPT {
            let ttl = be32(msg, rr.ttl_at);
            return Some(Edns {
                udp_size: rr.class,
                version: (ttl >> 16) as u8,
                dnssec_ok: ttl & 0x8000 != 0,
            });
        }
        at = rr.end;
    }
    None
}

/// Writes one answer into a caller's buffer.
pub struct Writer<'a> {
    buf: &'a mut [u8],
    len: usize,
    /// Bytes the answer may take (the OPT record already set aside).
    limit: usize,
    ancount: u16,
    truncated: bool,
    edns: bool,
}

impl<'a> Writer<'a> {
    /// Start the reply to `q` (whose bytes are `msg`) in `out`, at most
    /// `limit` bytes long in all. `aa` marks an authoritative answer.
    pub fn reply(q: &Query, msg: &[u8], out: &'a mut [u8], limit: usize, rcode: u8, aa: bool) -> Self {
        Self::start(
            q.id,
            q.flags,
            Some(&msg[HEADER_LEN..q.question_end]),
            q.edns.is_some(),
            out,
            limit,
            rcode,
            aa,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn start(
        id: u16,
        qflags: u16,
        question: Option<&[u8]>,
        edns: bool,
        out: &'a mut [u8],
        limit: usize,
        rcode: u8,
        aa: bool,
    ) -> Self {
        let mut flags = flag::QR | (qflags & (flag::OPCODE | flag::RD | flag::CD)) | flag::RA;
        if aa {
            flags |= flag::AA;
        }
        flags |= rcode as u16 & flag::RCODE;
        out[0..2].copy_from_slice(&id.to_be_bytes());
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        out[4..6].copy_from_slice(&(question.is_some() as u16).to_be_bytes());
        out[6..12].fill(0);
        let mut len = HEADER_LEN;
        if let Some(q) = question {
            out[len..len + q.len()].copy_from_slice(q);
            len += q.len();
        }
        let limit = limit.min(out.len()) - if edns { OPT_LEN } else { 0 };
        Writer { buf: out, len, limit, ancount: 0, truncated: false, edns }
    }

    /// Append an answer record whose owner is the question name.
    fn record(&mut self, rtype: u16, ttl: u32, rdata: &[u8]) {
        let need = 12 + rdata.len();
        if self.truncated || self.len + need > self.limit {
            self.truncated = true;
            return;
        }
        let b = &mut self.buf[self.len..self.len + need];
        b[0] = 0xc0;
        b[1] = HEADER_LEN as u8; // pointer to the question name
        b[2..4].copy_from_slice(&rtype.to_be_bytes());
        b[4..6].copy_from_slice(&CLASS_IN.to_be_bytes());
        b[6..10].copy_from_slice(&ttl.to_be_bytes());
        b[10..12].copy_from_slice(&(rdata.len() as u16).to_be_bytes());
        b[12..].copy_from_slice(rdata);
        self.len += need;
        self.ancount += 1;
    }

    pub fn a(&mut self, ip: &[u8; 4], ttl: u32) {
        self.record(rtype::A, ttl, ip)
    }

    pub fn aaaa(&mut self, ip: &[u8; 16], ttl: u32) {
        self.record(rtype::AAAA, ttl, ip)
    }

    /// A PTR record; `target` is a name in wire form.
    pub fn ptr(&mut self, target: &[u8], ttl: u32) {
        self.record(rtype::PTR, ttl, target)
    }

    /// Fill in the counts (and TC, and our OPT when the query had one); the length.
    pub fn finish(self) -> usize {
        let Writer { buf, mut len, ancount, truncated, edns, .. } = self;
        buf[6..8].copy_from_slice(&ancount.to_be_bytes());
        if truncated {
            buf[2] |= (flag::TC >> 8) as u8;
        }
        if edns {
            let opt = &mut buf[len..len + OPT_LEN];
            opt[0] = 0; // root owner
            opt[1..3].copy_from_slice(&rtype::OPT.to_be_bytes());
            opt[3..5].copy_from_slice(&EDNS_SIZE.to_be_bytes());
            opt[5..11].fill(0); // ext-rcode, version 0, flags, rdlen 0
            len += OPT_LEN;
            buf[10..12].copy_from_slice(&1u16.to_be_bytes());
        }
        len
    }
}

/// The reply to a message `parse_query` judged `Bad` (None: send nothing).
pub fn error_reply(msg: &[u8], bad: Bad, out: &mut [u8]) -> Option<usize> {
    match bad {
        Bad::Drop => None,
        Bad::Rcode { rcode, question_end } => {
            let question = question_end.map(|e| &msg[HEADER_LEN..e]);
            let w = Writer::start(be16(msg, 0), be16(msg, 2), question, false, out, usize::MAX, rcode, false);
            Some(w.finish())
        }
    }
}

/// A reply carrying only the question and `rcode` (REFUSED, SERVFAIL, NXDOMAIN …).
pub fn rcode_reply(q: &Query, msg: &[u8], rcode: u8, aa: bool, out: &mut [u8]) -> usize {
    Writer::reply(q, msg, out, usize::MAX, rcode, aa).finish()
}

/// A name in wire form from dotted text (a trailing dot is fine). None when
/// a label is empty or too long, or the whole is too long.
pub fn encode_name(dotted: &str) -> Option<Vec<u8>> {
    let d = dotted.strip_suffix('.').unwrap_or(dotted);
    let mut out = Vec::with_capacity(d.len() + 2);
    if !d.is_empty() {
        for label in d.split('.') {
            if label.is_empty() || label.len() > 63 {
                return None;
            }
            out.push(label.len() as u8);
            out.extend_from_slice(label.as_bytes());
        }
    }
    out.push(0);
    (out.len() <= MAX_WIRE_NAME).then_some(out)
}

/// A query message (for CHECK, tests and tools).
pub fn build_query(id: u16, name: &str, qtype: u16, edns: Option<u16>) -> Option<Vec<u8>> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&flag::RD.to_be_bytes());
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, edns.is_some() as u8]);
    m.extend_from_slice(&encode_name(name)?);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&CLASS_IN.to_be_bytes());
    if let Some(size) = edns {
        m.push(0);
        m.extend_from_slice(&rtype::OPT.to_be_bytes());
        m.extend_from_slice(&size.to_be_bytes());
        m.extend_from_slice(&[0; 6]);
    }
    Some(m)
}

/// The ID of a message.
pub fn id_of(msg: &[u8]) -> u16 {
    be16(msg, 0)
}

pub fn set_id(msg: &mut [u8], id: u16) {
    msg[0..2].copy_from_slice(&id.to_be_bytes());
}

/// Does `resp` answer the question (name, type, class) of `q`?
pub fn answers_question(resp: &[u8], q: &Query) -> bool {
    if resp.len() < HEADER_LEN || be16(resp, 2) & flag::QR == 0 || be16(resp, 4) != 1 {
        return false;
    }
    match read_question_name(resp, HEADER_LEN) {
        Some((name, at)) if at + 4 <= resp.len() => {
            name.as_bytes() == q.name.as_bytes()
                && be16(resp, at) == q.qtype
                && be16(resp, at + 2) == q.qclass
        }
        _ => false,
    }
}

/// How long a forwarded answer may be cached and where its TTLs sit: None
/// for answers not to cache (errors other than NXDOMAIN, truncated, no TTL).
pub fn cache_facts(resp: &[u8]) -> Option<(u32, Vec<u16>)> {
    if resp.len() < HEADER_LEN {
        return None;
    }
    let flags = be16(resp, 2);
    let rc = (flags & flag::RCODE) as u8;
    if flags & flag::TC != 0 || (rc != rcode::NOERROR && rc != rcode::NXDOMAIN) || be16(resp, 4) != 1 {
        return None;
    }
    let (an, ns, ar) = (be16(resp, 6) as usize, be16(resp, 8) as usize, be16(resp, 10) as usize);
    let mut at = skip_name(resp, HEADER_LEN)? + 4;
    let mut offsets = Vec::with_capacity(an + ns + ar);
    let mut min_answer: Option<u32> = None;
    let mut negative: Option<u32> = None;
    for i in 0..an + ns + ar {
        let rr = read_rr(resp, at)?;
        if rr.rtype != rtype::OPT {
            let ttl = be32(resp, rr.ttl_at);
            offsets.push(u16::try_from(rr.ttl_at).ok()?);
            if i < an {
                min_answer = Some(min_answer.map_or(ttl, |m| m.min(ttl)));
            } else if i < an + ns && rr.rtype == rtype::SOA && rr.end >= rr.rdata + 4 {
                // RFC 2308: negative answers live min(SOA TTL, SOA MINIMUM).
                negative = Some(ttl.min(be32(resp, rr.end - 4)));
            }
        }
        at = rr.end;
    }
    let ttl = if an > 0 && rc == rcode::NOERROR { min_answer } else { negative }?;
    (ttl > 0).then_some((ttl, offsets))
}

/// Set every TTL at `offsets` to `ttl - age` (not below 0).
pub fn age_ttls(resp: &mut [u8], offsets: &[u16], age: u32) {
    for &o in offsets {
        let o = o as usize;
        let t = be32(resp, o).saturating_sub(age);
        resp[o..o + 4].copy_from_slice(&t.to_be_bytes());
    }
}

/// The address a reverse name (`4.3.2.1.in-addr.arpa`, nibbles `.ip6.arpa`) stands for.
pub fn parse_reverse(name: &[u8]) -> Option<IpAddr> {
    if let Some(p) = name.strip_suffix(b".in-addr.arpa") {
        let mut o = [0u8; 4];
        let mut n = 0;
        for part in p.split(|&c| c == b'.') {
            if n == 4 || part.is_empty() || part.len() > 3 || (part.len() > 1 && part[0] == b'0') {
                return None;
            }
            let mut v: u16 = 0;
            for &c in part {
                if !c.is_ascii_digit() {
                    return None;
                }
                v = v * 10 + (c - b'0') as u16;
            }
            o[3 - n] = u8::try_from(v).ok()?;
            n += 1;
        }
        return (n == 4).then(|| IpAddr::V4(Ipv4Addr::from(o)));
    }
    if let Some(p) = name.strip_suffix(b".ip6.arpa") {
        if p.len() != 63 {
            return None;
        }
        let mut v: u128 = 0;
        for (i, &c) in p.iter().enumerate() {
            if i % 2 == 1 {
                if c != b'.' {
                    return None;
                }
                continue;
            }
            let d = (c as char).to_digit(16)? as u128;
            v |= d << (4 * (i / 2));
        }
        return Some(IpAddr::V6(Ipv6Addr::from(v)));
    }
    None
}

/// A decoded answer, for CHECK and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rdata {
    A(Ipv4Addr),
    Aaaa(Ipv6Addr),
    /// A PTR target in dotted form.
    Ptr(String),
    Other(u16, Vec<u8>),
}

/// A decoded response, for CHECK and tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: u16,
    pub flags: u16,
    pub rcode: u8,
    pub answers: Vec<(Rdata, u32)>,
    pub has_opt: bool,
}

impl Response {
    pub fn truncated(&self) -> bool {
        self.flags & flag::TC != 0
    }
    pub fn authoritative(&self) -> bool {
        self.flags & flag::AA != 0
    }
}

/// Read a possibly compressed name as dotted text.
fn read_name_text(msg: &[u8], mut at: usize) -> Option<String> {
    let mut out = String::new();
    for _ in 0..128 {
        let l = *msg.get(at)? as usize;
        if l == 0 {
            return Some(out);
        }
        if l & 0xc0 == 0xc0 {
            at = ((l & 0x3f) << 8) | *msg.get(at + 1)? as usize;
            continue;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&String::from_utf8_lossy(msg.get(at + 1..at + 1 + l)?));
        at += 1 + l;
    }
    None
}

/// Decode a response (the answer section and whether an OPT came back).
pub fn parse_response(msg: &[u8]) -> Option<Response> {
    if msg.len() < HEADER_LEN {
        return None;
    }
    let flags = be16(msg, 2);
    let (qd, an, ns, ar) =
        (be16(msg, 4) as usize, be16(msg, 6) as usize, be16(msg, 8) as usize, be16(msg, 10) as usize);
    let mut at = HEADER_LEN;
    for _ in 0..qd {
        at = skip_name(msg, at)? + 4;
    }
    let mut answers = Vec::new();
    let mut has_opt = false;
    for i in 0..an + ns + ar {
        let rr = read_rr(msg, at)?;
        let rdata = &msg[rr.rdata..rr.end];
        if i < an {
            let d = match rr.rtype {
                rtype::A if rdata.len() == 4 => {
                    Rdata::A(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]))
                }
                rtype::AAAA if rdata.len() == 16 => {
                    Rdata::Aaaa(Ipv6Addr::from(<[u8; 16]>::try_from(rdata).ok()?))
                }
                rtype::PTR => Rdata::Ptr(read_name_text(msg, rr.rdata)?),
                t => Rdata::Other(t, rdata.to_vec()),
            };
            answers.push((d, be32(msg, rr.ttl_at)));
        } else if rr.rtype == rtype::OPT {
            has_opt = true;
        }
        let _ = rr.class;
        at = rr.end;
    }
    Some(Response { id: be16(msg, 0), flags, rcode: (flags & flag::RCODE) as u8, answers, has_opt })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(name: &str, t: u16, edns: Option<u16>) -> Vec<u8> {
        build_query(0x1234, name, t, edns).unwrap()
    }

    #[test]
    fn parses_a_query_lowercasing_the_name() {
        let m = q("Web.DNS.podman.", rtype::A, None);
        let p = parse_query(&m).unwrap();
        assert_eq!(p.id, 0x1234);
        assert_eq!(p.name.as_bytes(), b"web.dns.podman");
        assert!(p.name.plain);
        assert_eq!((p.qtype, p.qclass), (rtype::A, CLASS_IN));
        assert_eq!(p.question_end, m.len());
        assert_eq!(p.edns, None);
        assert_eq!(p.udp_limit(), 512);
        let m = q("x", rtype::AAAA, Some(4096));
        let p = parse_query(&m).unwrap();
        assert_eq!(p.edns, Some(Edns { udp_size: 4096, version: 0, dnssec_ok: false }));
        assert_eq!(p.udp_limit(), 4096);
        let p = parse_query(&q("", rtype::A, None)).unwrap();
        assert_eq!(p.name.as_bytes(), b"");
    }

    #[test]
    fn bad_queries_get_the_right_treatment() {
        assert_eq!(parse_query(&[0; 5]).unwrap_err(), Bad::Drop);
        let mut m = q("a", rtype::A, None);
        m[2] |= 0x80; // a response
        assert_eq!(parse_query(&m).unwrap_err(), Bad::Drop);
        let mut m = q("a", rtype::A, None);
        m[2] |= 0x10; // opcode 2 (STATUS)
        assert!(matches!(parse_query(&m), Err(Bad::Rcode { rcode: rcode::NOTIMP, .. })));
        let mut m = q("a", rtype::A, None);
        m[5] = 2; // two questions
        assert!(matches!(parse_query(&m), Err(Bad::Rcode { rcode: rcode::FORMERR, .. })));
        let m = q("abc", rtype::A, None);
        assert!(matches!(parse_query(&m[..m.len() - 1]), Err(Bad::Rcode { rcode: rcode::FORMERR, .. })));
        let mut m = q("abc", rtype::A, None);
        m[12] = 0xc0; // a pointer in the question
        assert!(parse_query(&m).is_err());
        // A label containing a dot is kept but marked.
        let mut m = q("abc", rtype::A, None);
        m[14] = b'.';
        assert!(!parse_query(&m).unwrap().name.plain);
        let mut out = [0u8; 512];
        let n = error_reply(&q("a", rtype::A, None)[..5], Bad::Drop, &mut out);
        assert_eq!(n, None);
        let mut m = q("a", rtype::A, None);
        m[5] = 2;
        let n = error_reply(&m, parse_query(&m).unwrap_err(), &mut out).unwrap();
        let r = parse_response(&out[..n]).unwrap();
        assert_eq!((r.id, r.rcode), (0x1234, rcode::FORMERR));
    }

    #[test]
    fn writes_answers_with_pointers_and_opt() {
        let m = q("Web.dns.podman", rtype::A, Some(1232));
        let p = parse_query(&m).unwrap();
        let mut out = [0u8; 4096];
        let mut w = Writer::reply(&p, &m, &mut out, 512, rcode::NOERROR, true);
        w.a(&[10, 0, 0, 2], 0);
        w.a(&[10, 0, 0, 3], 5);
        let n = w.finish();
        let r = parse_response(&out[..n]).unwrap();
        assert_eq!(r.id, 0x1234);
        assert_eq!(r.rcode, 0);
        assert!(r.authoritative() && !r.truncated() && r.has_opt);
        assert_eq!(
            r.answers,
            vec![(Rdata::A("10.0.0.2".parse().unwrap()), 0), (Rdata::A("10.0.0.3".parse().unwrap()), 5)]
        );
        assert_eq!(r.flags & flag::RD, flag::RD);
        assert_eq!(r.flags & flag::RA, flag::RA);
        // The question is echoed with the client's case (0x20 randomization).
        assert_eq!(&out[12..p.question_end], &m[12..p.question_end]);

        let m = q("4.3.2.1.in-addr.arpa", rtype::PTR, None);
        let p = parse_query(&m).unwrap();
        let mut w = Writer::reply(&p, &m, &mut out, 512, rcode::NOERROR, true);
        w.ptr(&encode_name("web.dns.podman").unwrap(), 0);
        let n = w.finish();
        let r = parse_response(&out[..n]).unwrap();
        assert_eq!(r.answers, vec![(Rdata::Ptr("web.dns.podman".into()), 0)]);
        assert!(!r.has_opt);
    }

    #[test]
    fn too_many_answers_truncate() {
        let m = q("many", rtype::AAAA, None);
        let p = parse_query(&m).unwrap();
        let mut out = [0u8; 4096];
        let mut w = Writer::reply(&p, &m, &mut out, p.udp_limit(), rcode::NOERROR, true);
        for i in 0..100u8 {
            w.aaaa(&[i; 16], 0);
        }
        let n = w.finish();
        assert!(n <= 512);
        let r = parse_response(&out[..n]).unwrap();
        assert!(r.truncated());
        assert_eq!(r.answers.len(), (512 - m.len()) / 28);
    }

    #[test]
    fn reverse_names() {
        assert_eq!(parse_reverse(b"4.3.2.10.in-addr.arpa"), Some("10.2.3.4".parse().unwrap()));
        for bad in [
            &b"3.2.10.in-addr.arpa"[..],
            b"4.3.2.1.0.in-addr.arpa",
            b"256.3.2.1.in-addr.arpa",
            b"01.3.2.1.in-addr.arpa",
            b"a.3.2.1.in-addr.arpa",
            b"in-addr.arpa",
            b"x.ip6.arpa",
        ] {
            assert_eq!(parse_reverse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        let ip: Ipv6Addr = "fd00:1:2::a".parse().unwrap();
        let mut nibbles: Vec<String> = Vec::new();
        for b in ip.octets().iter().rev() {
            nibbles.push(format!("{:x}", b & 0xf));
            nibbles.push(format!("{:x}", b >> 4));
        }
        let name = format!("{}.ip6.arpa", nibbles.join("."));
        assert_eq!(parse_reverse(name.as_bytes()), Some(IpAddr::V6(ip)));
    }

    #[test]
    fn names_encode_and_bound() {
        assert_eq!(encode_name("a.bc.").unwrap(), b"\x01a\x02bc\x00");
        assert_eq!(encode_name("").unwrap(), b"\x00");
        assert!(encode_name("a..b").is_none());
        assert!(encode_name(&"x".repeat(64)).is_none());
        assert!(encode_name(&["abcdefg"; 40].join(".")).is_none());
    }

    /// A query whose name has labels of these lengths (all `a`), raw.
    fn query_with_labels(labels: &[usize]) -> Vec<u8> {
        let mut m = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for &l in labels {
            m.push(l as u8);
            m.extend(std::iter::repeat_n(b'a', l));
        }
        m.push(0);
        m.extend_from_slice(&[0, 1, 0, 1]);
        m
    }

    #[test]
    fn a_wire_name_of_255_bytes_is_the_longest_accepted() {
        // 3 × (1 + 63) + (1 + 61) + 1 (root) = 255 bytes on the wire.
        let m = query_with_labels(&[63, 63, 63, 61]);
        assert_eq!(m.len(), HEADER_LEN + 255 + 4);
        let p = parse_query(&m).expect("255 bytes is legal");
        assert_eq!(p.name.as_bytes().len(), 253);
        assert_eq!(p.question_end, m.len());
        let dotted = String::from_utf8(p.name.as_bytes().to_vec()).unwrap();
        assert_eq!(encode_name(&dotted).unwrap().len(), 255);
        let mut out = [0u8; 1024];
        let n = rcode_reply(&p, &m, rcode::NXDOMAIN, false, &mut out);
        assert!(answers_question(&out[..n], &p));

        // One byte more: FORMERR (RFC 1035 §3.1 and §2.3.4), in queries and answers alike.
        let m = query_with_labels(&[63, 63, 63, 62]);
        assert_eq!(m.len(), HEADER_LEN + 256 + 4);
        assert_eq!(parse_query(&m).unwrap_err(), Bad::Rcode { rcode: rcode::FORMERR, question_end: None });
        let mut resp = m.clone();
        resp[2] |= 0x80;
        assert!(!answers_question(&resp, &p));
        assert!(encode_name(&format!("{dotted}a")).is_none());
        // Many short labels reach the limit the same way: 127 × 2 + 1 = 255, 128 × 2 + 1 = 257.
        assert!(parse_query(&query_with_labels(&[1; 127])).is_ok());
        assert!(parse_query(&query_with_labels(&[1; 128])).is_err());
    }

    /// An upstream-style answer: compressed names, an answer and an OPT.
    fn upstream_answer(ttl: u32) -> Vec<u8> {
        let m = q("example.com", rtype::A, Some(1232));
        let p = parse_query(&m).unwrap();
        let mut out = [0u8; 512];
        let mut w = Writer::reply(&p, &m, &mut out, 512, rcode::NOERROR, false);
        w.a(&[192, 0, 2, 1], ttl);
        w.a(&[192, 0, 2, 2], ttl + 10);
        let n = w.finish();
        out[..n].to_vec()
    }

    #[test]
    fn cache_facts_and_aging() {
        let mut r = upstream_answer(300);
        let (ttl, offs) = cache_facts(&r).unwrap();
        assert_eq!(ttl, 300);
        assert_eq!(offs.len(), 2, "the OPT pseudo-record has no TTL");
        age_ttls(&mut r, &offs, 100);
        let d = parse_response(&r).unwrap();
        assert_eq!(d.answers.iter().map(|a| a.1).collect::<Vec<_>>(), vec![200, 210]);
        assert!(cache_facts(&upstream_answer(0)).is_none());
        let mut tc = upstream_answer(300);
        tc[2] |= 0x02;
        assert!(cache_facts(&tc).is_none());
        let mut servfail = upstream_answer(300);
        servfail[3] = (servfail[3] & 0xf0) | rcode::SERVFAIL;
        assert!(cache_facts(&servfail).is_none());
        // NXDOMAIN without SOA: nothing says how long, so no caching.
        let m = q("nope.example", rtype::A, None);
        let p = parse_query(&m).unwrap();
        let mut out = [0u8; 512];
        let n = rcode_reply(&p, &m, rcode::NXDOMAIN, false, &mut out);
        assert!(cache_facts(&out[..n]).is_none());
        // With a SOA in authority: min(SOA TTL, MINIMUM).
        let mut nx = out[..n].to_vec();
        nx[9] = 1; // nscount
        nx.extend_from_slice(&[0xc0, 12 + 5]); // points at "example"
        nx.extend_from_slice(&rtype::SOA.to_be_bytes());
        nx.extend_from_slice(&CLASS_IN.to_be_bytes());
        nx.extend_from_slice(&900u32.to_be_bytes());
        let rdata: Vec<u8> = [&[0u8, 0][..], &[0; 16], &60u32.to_be_bytes()].concat();
        nx.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        nx.extend_from_slice(&rdata);
        assert_eq!(cache_facts(&nx).unwrap().0, 60);
    }

    #[test]
    fn responses_are_matched_to_their_question() {
        let m = q("Example.COM", rtype::A, Some(1232));
        let p = parse_query(&m).unwrap();
        assert!(answers_question(&upstream_answer(1), &p));
        let other = parse_query(&q("example.org", rtype::A, None)).unwrap();
        assert!(!answers_question(&upstream_answer(1), &other));
        assert!(!answers_question(&m, &p), "a query is not an answer");
    }
}
