//! A small synchronous netlink socket, message builder and attribute parser
//! on `libc` alone. rtnetlink (links, addresses, routes, neighbours),
//! nf_tables and conntrack all speak through this one core.
//!
//! A socket is bound to the network namespace of the thread that opened it,
//! so to work inside a container open the socket there (see `netns`) and keep
//! using it from any thread.

use std::fmt;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

pub mod rtnl;

pub const NLMSG_HDRLEN: usize = 16;
const NLA_HDRLEN: usize = 4;
pub const NLA_F_NESTED: u16 = 1 << 15;
const NLA_TYPE_MASK: u16 = !(NLA_F_NESTED | (1 << 14));

pub const NLM_F_REQUEST: u16 = 0x01;
pub const NLM_F_MULTI: u16 = 0x02;
pub const NLM_F_ACK: u16 = 0x04;
pub const NLM_F_DUMP: u16 = 0x300;
pub const NLM_F_REPLACE: u16 = 0x100;
pub const NLM_F_EXCL: u16 = 0x200;
pub const NLM_F_CREATE: u16 = 0x400;
pub const NLM_F_APPEND: u16 = 0x800;
const NLM_F_ACK_TLVS: u16 = 0x200;

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSGERR_ATTR_MSG: u16 = 1;

const SOL_NETLINK: libc::c_int = 270;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;

#[inline]
pub const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A kernel refusal: the errno and, when the kernel gave one, its extended-ack text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NlError {
    pub errno: i32,
    pub ext: Option<String>,
}

impl NlError {
    pub fn is(&self, errno: i32) -> bool {
        self.errno == errno
    }
    pub fn not_found(&self) -> bool {
        self.errno == libc::ENOENT || self.errno == libc::ENODEV || self.errno == libc::ESRCH
    }
    fn from_io(e: io::Error) -> Self {
        NlError { errno: e.raw_os_error().unwrap_or(libc::EIO), ext: Some(e.to_string()) }
    }
}

impl fmt::Display for NlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ext {
            Some(ext) if ext.contains("os error") => write!(f, "{ext}"),
            Some(ext) => write!(f, "{} ({ext})", io::Error::from_raw_os_error(self.errno)),
            None => write!(f, "{}", io::Error::from_raw_os_error(self.errno)),
        }
    }
}

impl std::error::Error for NlError {}

impl From<io::Error> for NlError {
    fn from(e: io::Error) -> Self {
        NlError::from_io(e)
    }
}

impl From<NlError> for crate::error::CniError {
    fn from(e: NlError) -> Self {
        crate::error::CniError::internal(e.to_string())
    }
}

pub type NlResult<T> = std::result::Result<T, NlError>;

/// The most an attribute (header included) can hold: its length field is 16 bits.
pub const NLA_MAX_LEN: usize = u16::MAX as usize;

/// An attribute or nest that would outgrow its 16-bit length field. The
/// writer records it instead of letting the length wrap (the kernel would
/// then read a fraction of the data as the whole); the message then cannot
/// be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLong {
    /// The attribute type (flags masked off).
    pub ty: u16,
    /// Its length with header, in bytes.
    pub len: usize,
}

impl fmt::Display for TooLong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "netlink attribute {} would be {} bytes, more than the {NLA_MAX_LEN} an attribute can hold",
            self.ty, self.len
        )
    }
}

impl From<TooLong> for NlError {
    fn from(e: TooLong) -> Self {
        NlError { errno: libc::EMSGSIZE, ext: Some(e.to_string()) }
    }
}

/// A netlink message under construction: header, fixed family header, attributes.
///
/// Attribute lengths are checked: an attribute or nest longer than
/// [`NLA_MAX_LEN`] is left out and recorded, and [`Msg::check`] (and every
/// send) then fails with that [`TooLong`] as an EMSGSIZE [`NlError`].
#[derive(Clone, Debug)]
pub struct Msg {
    buf: Vec<u8>,
    too_long: Option<TooLong>,
}

impl Msg {
    pub fn new(ty: u16, flags: u16) -> Msg {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(&0u32.to_ne_bytes()); // length, set at send
        buf.extend_from_slice(&ty.to_ne_bytes());
        buf.extend_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(&0u32.to_ne_bytes()); // seq, set at send
        buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills it
        Msg { buf, too_long: None }
    }

    pub fn msg_type(&self) -> u16 {
        u16::from_ne_bytes([self.buf[4], self.buf[5]])
    }

    pub fn flags(&self) -> u16 {
        u16::from_ne_bytes([self.buf[6], self.buf[7]])
    }

    pub fn add_flags(&mut self, flags: u16) {
        let f = self.flags() | flags;
        self.buf[6..8].copy_from_slice(&f.to_ne_bytes());
    }

    /// Ok unless an attribute was too long to encode.
    pub fn check(&self) -> NlResult<()> {
        match self.too_long {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    fn record(&mut self, ty: u16, len: usize) {
        self.too_long.get_or_insert(TooLong { ty: ty & NLA_TYPE_MASK, len });
    }

    /// Raw bytes of the family header (ifinfomsg, nfgenmsg …), padded to 4.
    pub fn push(&mut self, raw: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(raw);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let n = align4(self.buf.len());
        self.buf.resize(n, 0);
    }

    pub fn attr(&mut self, ty: u16, data: &[u8]) -> &mut Self {
        let Ok(len) = u16::try_from(NLA_HDRLEN + data.len()) else {
            self.record(ty, NLA_HDRLEN + data.len());
            return self;
        };
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(data);
        self.pad();
        self
    }

    pub fn attr_u8(&mut self, ty: u16, v: u8) -> &mut Self {
        self.attr(ty, &[v])
    }
    pub fn attr_u16(&mut self, ty: u16, v: u16) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }
    pub fn attr_u32(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_ne_bytes())
    }
    pub fn attr_u16_be(&mut self, ty: u16, v: u16) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    pub fn attr_u32_be(&mut self, ty: u16, v: u32) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    pub fn attr_u64_be(&mut self, ty: u16, v: u64) -> &mut Self {
        self.attr(ty, &v.to_be_bytes())
    }
    /// A NUL-terminated string attribute.
    pub fn attr_str(&mut self, ty: u16, s: &str) -> &mut Self {
        let mut v = Vec::with_capacity(s.len() + 1);
        v.extend_from_slice(s.as_bytes());
        v.push(0);
        self.attr(ty, &v)
    }

    /// A nested attribute whose contents `f` writes.
    pub fn nest(&mut self, ty: u16, f: impl FnOnce(&mut Msg)) -> &mut Self {
        let start = self.open_nest(ty);
        f(self);
        self.close_nest(ty, start);
        self
    }

    /// A nested attribute holding as many of `items` as fit (at least one),
    /// each written by `f`; returns how many it took. Lets a caller spread
    /// a long list over several messages.
    pub fn nest_fill<T>(&mut self, ty: u16, items: &[T], mut f: impl FnMut(&mut Msg, &T)) -> usize {
        let start = self.open_nest(ty);
        let mut n = 0;
        for item in items {
            let mark = self.buf.len();
            f(self, item);
            if n > 0 && self.buf.len() - start > NLA_MAX_LEN {
                self.buf.truncate(mark);
                break;
            }
            n += 1;
        }
        self.close_nest(ty, start);
        n
    }

    fn open_nest(&mut self, ty: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
        start
    }

    fn close_nest(&mut self, ty: u16, start: usize) {
        match u16::try_from(self.buf.len() - start) {
            Ok(len) => self.buf[start..start + 2].copy_from_slice(&len.to_ne_bytes()),
            Err(_) => {
                self.record(ty, self.buf.len() - start);
                self.buf.truncate(start);
            }
        }
    }

    /// The bytes to send, with length and sequence number filled in.
    fn finish(&mut self, seq: u32) -> NlResult<&[u8]> {
        self.check()?;
        self.stamp(seq)?;
        Ok(&self.buf)
    }

    fn stamp(&mut self, seq: u32) -> NlResult<()> {
        let len = u32::try_from(self.buf.len())
            .map_err(|_| NlError { errno: libc::EMSGSIZE, ext: Some("netlink message over 4 GiB".into()) })?;
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        Ok(())
    }

    /// The message bytes with length and sequence number filled in (for
    /// tests: an over-long attribute is missing from them, see [`Msg::check`]).
    pub fn bytes(&mut self, seq: u32) -> Vec<u8> {
        let _ = self.stamp(seq);
        self.buf.clone()
    }
}

/// One received message: its type, flags and payload after the netlink header.
#[derive(Clone, Debug)]
pub struct Reply {
    pub ty: u16,
    pub flags: u16,
    pub payload: Vec<u8>,
}

impl Reply {
    /// Attributes after a fixed family header of `header_len` bytes.
    pub fn attrs(&self, header_len: usize) -> Attrs<'_> {
        Attrs::new(self.payload.get(align4(header_len)..).unwrap_or(&[]))
    }
}

/// One attribute: its type (flags masked off) and payload.
#[derive(Clone, Copy, Debug)]
pub struct Attr<'a> {
    pub ty: u16,
    pub data: &'a [u8],
}

impl<'a> Attr<'a> {
    pub fn u8(&self) -> u8 {
        self.data.first().copied().unwrap_or(0)
    }
    pub fn u16(&self) -> u16 {
        self.data.get(..2).map(|b| u16::from_ne_bytes([b[0], b[1]])).unwrap_or(0)
    }
    pub fn u32(&self) -> u32 {
        self.data.get(..4).map(|b| u32::from_ne_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
    }
    pub fn u16_be(&self) -> u16 {
        self.data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]])).unwrap_or(0)
    }
    pub fn u32_be(&self) -> u32 {
        self.data.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]])).unwrap_or(0)
    }
    pub fn u64_be(&self) -> u64 {
        self.data.get(..8).map(|b| u64::from_be_bytes(b.try_into().unwrap())).unwrap_or(0)
    }
    /// A string attribute without its NUL terminator.
    pub fn str(&self) -> &'a str {
        let end = self.data.iter().position(|&b| b == 0).unwrap_or(self.data.len());
        std::str::from_utf8(&self.data[..end]).unwrap_or("")
    }
    pub fn nested(&self) -> Attrs<'a> {
        Attrs::new(self.data)
    }
}

/// Iterator over a run of attributes.
#[derive(Clone, Debug)]
pub struct Attrs<'a> {
    rest: &'a [u8],
}

impl<'a> Attrs<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Attrs { rest: buf }
    }
    /// The first attribute of this type.
    pub fn get(&self, ty: u16) -> Option<Attr<'a>> {
        self.clone().find(|a| a.ty == ty)
    }
}

impl<'a> Iterator for Attrs<'a> {
    type Item = Attr<'a>;
    fn next(&mut self) -> Option<Attr<'a>> {
        if self.rest.len() < NLA_HDRLEN {
            return None;
        }
        let len = u16::from_ne_bytes([self.rest[0], self.rest[1]]) as usize;
        let ty = u16::from_ne_bytes([self.rest[2], self.rest[3]]) & NLA_TYPE_MASK;
        if len < NLA_HDRLEN || len > self.rest.len() {
            self.rest = &[];
            return None;
        }
        let data = &self.rest[NLA_HDRLEN..len];
        self.rest = &self.rest[align4(len).min(self.rest.len())..];
        Some(Attr { ty, data })
    }
}

/// The messages of one received datagram, each with its sequence number; a
/// header whose length runs past the datagram ends the list.
pub fn split_messages(datagram: &[u8]) -> Vec<(u32, Reply)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= datagram.len() {
        let b = &datagram[off..];
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        if len < NLMSG_HDRLEN || len > b.len() {
            break;
        }
        let ty = u16::from_ne_bytes([b[4], b[5]]);
        let flags = u16::from_ne_bytes([b[6], b[7]]);
        let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
        out.push((seq, Reply { ty, flags, payload: b[NLMSG_HDRLEN..len].to_vec() }));
        off += align4(len);
    }
    out
}

/// A netlink socket of one protocol, bound in the netns where it was opened.
pub struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    pub fn open(protocol: libc::c_int) -> io::Result<Socket> {
        // SAFETY: plain socket(2); the fd is owned right away.
        let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, protocol) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            // Failure only loses extended error text, so it is ignored.
            set_sockopt(fd.as_raw_fd(), SOL_NETLINK, opt, 1);
        }
        // SAFETY: sockaddr_nl is plain data; zeroed means "kernel, assign my port id".
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: addr is a valid sockaddr_nl for the duration of the call.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &addr as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Ok(Socket { fd, seq: seed, buf: vec![0; 64 * 1024] })
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    fn send_bytes(&self, bytes: &[u8]) -> io::Result<()> {
        loop {
            // SAFETY: bytes is a valid buffer; the kernel is the destination (port 0).
            let rc = unsafe {
                libc::send(self.fd.as_raw_fd(), bytes.as_ptr() as *const libc::c_void, bytes.len(), 0)
            };
            if rc >= 0 {
                return Ok(());
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }

    /// Receive one datagram and split it into messages.
    fn recv_replies(&mut self) -> NlResult<Vec<(u32, Reply)>> {
        self.recv_with(0)
    }

    fn recv_with(&mut self, flags: libc::c_int) -> NlResult<Vec<(u32, Reply)>> {
        let n = loop {
            // SAFETY: self.buf is a valid, writable buffer of its length.
            let rc = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr() as *mut libc::c_void,
                    self.buf.len(),
                    flags | libc::MSG_TRUNC,
                )
            };
            if rc >= 0 {
                break rc as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e.into());
            }
        };
        // With MSG_TRUNC the kernel says how long the datagram really was.
        if n > self.buf.len() {
            let ext = format!(
                "a netlink reply of {n} bytes did not fit the {}-byte receive buffer",
                self.buf.len()
            );
            return Err(NlError { errno: libc::EMSGSIZE, ext: Some(ext) });
        }
        Ok(split_messages(&self.buf[..n]))
    }

    /// Decode an NLMSG_ERROR payload: Ok(()) for an ACK, the error otherwise.
    pub fn ack_result(reply: &Reply) -> NlResult<()> {
        let p = &reply.payload;
        if p.len() < 4 {
            return Err(NlError { errno: libc::EPROTO, ext: Some("short netlink error message".into()) });
        }
        let err = i32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
        if err == 0 {
            return Ok(());
        }
        // The kernel sends a negated errno; anything else is no error we know.
        let Some(errno) = err.checked_neg().filter(|e| *e > 0) else {
            return Err(NlError {
                errno: libc::EPROTO,
                ext: Some(format!("netlink error code {err} is no errno")),
            });
        };
        let mut ext = None;
        if reply.flags & NLM_F_ACK_TLVS != 0 {
            // With NETLINK_CAP_ACK the echoed request is only its header.
            let skip = 4 + NLMSG_HDRLEN;
            if p.len() > skip {
                if let Some(a) = Attrs::new(&p[skip..]).get(NLMSGERR_ATTR_MSG) {
                    ext = Some(a.str().to_string());
                }
            }
        }
        Err(NlError { errno, ext })
    }

    /// Send one request and wait for its ACK.
    pub fn request(&mut self, mut msg: Msg) -> NlResult<()> {
        let seq = self.next_seq();
        msg.add_flags(NLM_F_ACK);
        self.send_bytes(msg.finish(seq)?)?;
        loop {
            for (s, r) in self.recv_replies()? {
                if s == seq && r.ty == NLMSG_ERROR {
                    return Self::ack_result(&r);
                }
            }
        }
    }

    /// Send a request that the kernel answers with one message (a GET without DUMP).
    pub fn get(&mut self, mut msg: Msg) -> NlResult<Reply> {
        let seq = self.next_seq();
        self.send_bytes(msg.finish(seq)?)?;
        loop {
            for (s, r) in self.recv_replies()? {
                if s != seq {
                    continue;
                }
                if r.ty == NLMSG_ERROR {
                    Self::ack_result(&r)?;
                    continue;
                }
                return Ok(r);
            }
        }
    }

    /// Send a dump request and collect every reply message until NLMSG_DONE.
    pub fn dump(&mut self, mut msg: Msg) -> NlResult<Vec<Reply>> {
        let seq = self.next_seq();
        msg.add_flags(NLM_F_DUMP);
        self.send_bytes(msg.finish(seq)?)?;
        let mut out = Vec::new();
        loop {
            for (s, r) in self.recv_replies()? {
                if s != seq {
                    continue;
                }
                match r.ty {
                    NLMSG_DONE => return Ok(out),
                    NLMSG_ERROR => {
                        Self::ack_result(&r)?;
                        return Ok(out);
                    }
                    _ => out.push(r),
                }
            }
        }
    }

    /// Send several messages in one datagram (an nfnetlink batch) and wait for
    /// an answer to every message that asked for an ACK. Returns the first error.
    pub fn transact(&mut self, msgs: &mut [Msg]) -> NlResult<()> {
        match self.transact_all(msgs)?.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// Like [`Socket::transact`], but returns every refusal with the index of
    /// the message it answers, in message order, so a caller can name the
    /// failed command.
    ///
    /// The kernel answers every message it refuses and every message that
    /// asked for an ACK, in message order, and has processed the whole batch
    /// before `send` returns. So one ACK, on the last message, is enough to
    /// know the end: a batch of thousands of ACKed messages would overflow the
    /// receive buffer. A refused first message that did not ask for an ACK
    /// (an nfnetlink batch header: nothing was processed) ends the wait with
    /// that error. A message that cannot be encoded ([`Msg::check`]) is
    /// returned as the refusal of its index, and nothing is sent.
    pub fn transact_all(&mut self, msgs: &mut [Msg]) -> NlResult<Vec<(usize, NlError)>> {
        let unencodable: Vec<(usize, NlError)> =
            msgs.iter().enumerate().filter_map(|(i, m)| m.check().err().map(|e| (i, e))).collect();
        if !unencodable.is_empty() {
            return Ok(unencodable);
        }
        let first_seq = self.seq.wrapping_add(1);
        let mut wire = Vec::new();
        let mut pending = 0;
        for m in msgs.iter_mut() {
            let seq = self.next_seq();
            pending += usize::from(m.flags() & NLM_F_ACK != 0);
            wire.extend_from_slice(m.finish(seq)?);
        }
        let index_of = |seq: u32| Some(seq.wrapping_sub(first_seq) as usize).filter(|&i| i < msgs.len());
        self.fit_send_buffer(wire.len())?;
        self.send_bytes(&wire)?;
        let mut errors = Vec::new();
        while pending > 0 {
            let replies = match self.recv_replies() {
                Err(e) if e.is(libc::ENOBUFS) => return self.after_overflow(errors, &index_of),
                r => r?,
            };
            for (s, r) in replies {
                let Some(idx) = index_of(s).filter(|_| r.ty == NLMSG_ERROR) else { continue };
                let acked = msgs[idx].flags() & NLM_F_ACK != 0;
                pending -= usize::from(acked);
                match Self::ack_result(&r) {
                    Err(e) if idx == 0 && !acked => return Err(e),
                    Err(e) => errors.push((idx, e)),
                    Ok(()) => {}
                }
            }
        }
        errors.sort_by_key(|(i, _)| *i);
        Ok(errors)
    }

    /// Answers were dropped because the receive buffer overflowed. Only
    /// refusals come in such numbers, so the batch failed; the kernel has
    /// queued all it will send, so collect the refusals left without waiting.
    fn after_overflow(
        &mut self,
        mut errors: Vec<(usize, NlError)>,
        index_of: &impl Fn(u32) -> Option<usize>,
    ) -> NlResult<Vec<(usize, NlError)>> {
        loop {
            let replies = match self.recv_with(libc::MSG_DONTWAIT) {
                Err(e) if e.is(libc::EAGAIN) => break,
                Err(e) if e.is(libc::ENOBUFS) => continue,
                r => r?,
            };
            for (s, r) in replies.into_iter().filter(|(_, r)| r.ty == NLMSG_ERROR) {
                if let (Some(idx), Err(e)) = (index_of(s), Self::ack_result(&r)) {
                    errors.push((idx, e));
                }
            }
        }
        if errors.is_empty() {
            let ext = "the kernel's answers to the batch overflowed the receive buffer".to_string();
            return Err(NlError { errno: libc::ENOBUFS, ext: Some(ext) });
        }
        errors.sort_by_key(|(i, _)| *i);
        Ok(errors)
    }

    /// Make room for one datagram of `len` bytes: the kernel refuses a send
    /// larger than the send buffer (less 32 bytes) with EMSGSIZE. Raising it
    /// past net.core.wmem_max needs CAP_NET_ADMIN (SO_SNDBUFFORCE).
    fn fit_send_buffer(&self, len: usize) -> NlResult<()> {
        let need = len.saturating_add(32);
        let fd = self.fd.as_raw_fd();
        if sockopt(fd, libc::SO_SNDBUF).is_some_and(|b| b >= need) {
            return Ok(());
        }
        // The kernel doubles the value it is given.
        let ask = libc::c_int::try_from(need.div_ceil(2)).unwrap_or(libc::c_int::MAX);
        if !set_sockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, ask) {
            set_sockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, ask);
        }
        match sockopt(fd, libc::SO_SNDBUF) {
            Some(b) if b >= need => Ok(()),
            got => {
                let max = got.unwrap_or(0).saturating_sub(32);
                let ext = format!(
                    "the batch is {len} bytes, more than the {max} this process may send at once \
                     (twice net.core.wmem_max, without CAP_NET_ADMIN)"
                );
                Err(NlError { errno: libc::EMSGSIZE, ext: Some(ext) })
            }
        }
    }
}

/// An integer socket option of level SOL_SOCKET.
fn sockopt(fd: libc::c_int, opt: libc::c_int) -> Option<usize> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: valid fd; v and len are valid for writes of their sizes.
    let rc = unsafe {
        libc::getsockopt(fd, libc::SOL_SOCKET, opt, &mut v as *mut _ as *mut libc::c_void, &mut len)
    };
    (rc == 0).then(|| usize::try_from(v).unwrap_or(0))
}

/// Set an integer socket option; true when the kernel took it.
fn set_sockopt(fd: libc::c_int, level: libc::c_int, opt: libc::c_int, v: libc::c_int) -> bool {
    // SAFETY: valid fd and a c_int option value of the right size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_roundtrip_with_nesting_and_padding() {
        let mut m = Msg::new(16, 0);
        m.push(&[1, 2, 3]);
        m.attr_str(3, "eth0").attr_u32(4, 1500).nest(5, |n| {
            n.attr_u8(1, 7);
            n.attr_u16_be(2, 0x1f90);
        });
        let bytes = m.bytes(9);
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()) as usize, bytes.len());
        let attrs: Vec<_> = Attrs::new(&bytes[NLMSG_HDRLEN + 4..]).collect();
        assert_eq!(attrs.len(), 3);
        assert_eq!(attrs[0].str(), "eth0");
        assert_eq!(attrs[1].u32(), 1500);
        assert_eq!(attrs[2].ty, 5);
        let inner: Vec<_> = attrs[2].nested().collect();
        assert_eq!(inner[0].u8(), 7);
        assert_eq!(inner[1].data, &[0x1f, 0x90]);
    }

    #[test]
    fn an_attribute_too_long_for_its_length_field_is_an_error_not_a_wrap() {
        // 65531 bytes of data + 4 of header: exactly what 16 bits can say
        let mut m = Msg::new(16, 0);
        m.attr(1, &vec![7; NLA_MAX_LEN - NLA_HDRLEN]);
        assert_eq!(m.check(), Ok(()));
        let bytes = m.bytes(1);
        let a: Vec<_> = Attrs::new(&bytes[NLMSG_HDRLEN..]).collect();
        assert_eq!(a[0].data.len(), NLA_MAX_LEN - NLA_HDRLEN);
        // one byte more would wrap to a 0-length attribute
        let mut m = Msg::new(16, 0);
        m.attr_u32(2, 9).attr(3, &vec![7; NLA_MAX_LEN - NLA_HDRLEN + 1]).attr_u32(4, 10);
        let e = m.check().unwrap_err();
        assert_eq!(e.errno, libc::EMSGSIZE);
        assert_eq!(e.ext.as_deref(), Some(TooLong { ty: 3, len: 65536 }.to_string().as_str()));
        assert!(e.to_string().contains("netlink attribute 3 would be 65536 bytes"), "{e}");
        // the attribute is left out, the message stays well formed
        let types: Vec<u16> = Attrs::new(&m.bytes(1)[NLMSG_HDRLEN..]).map(|a| a.ty).collect();
        assert_eq!(types, [2, 4]);
    }

    #[test]
    fn a_nest_too_long_is_an_error_and_left_out() {
        let mut m = Msg::new(16, 0);
        m.attr_u32(1, 5).nest(2, |n| {
            for _ in 0..20 {
                n.attr(1, &[0; 4000]);
            }
        });
        let e = m.check().unwrap_err();
        assert_eq!(e.errno, libc::EMSGSIZE);
        assert!(e.to_string().contains("netlink attribute 2 would be 80084 bytes"), "{e}");
        let bytes = m.bytes(1);
        assert_eq!(bytes.len(), NLMSG_HDRLEN + 8);
        assert_eq!(Attrs::new(&bytes[NLMSG_HDRLEN..]).count(), 1);
    }

    #[test]
    fn an_unencodable_message_is_never_sent() {
        let mut sock = Socket::open(libc::NETLINK_ROUTE).unwrap();
        let mut m = Msg::new(libc::RTM_NEWLINK, NLM_F_CREATE);
        m.push(&[0; 16]).attr_str(libc::IFLA_IFNAME, &"x".repeat(70_000));
        let e = sock.request(m.clone()).unwrap_err();
        assert_eq!(e.errno, libc::EMSGSIZE, "{e}");
        let refused = sock.transact_all(&mut [Msg::new(libc::RTM_GETLINK, 0), m]).unwrap();
        assert_eq!(refused.len(), 1);
        assert_eq!((refused[0].0, refused[0].1.errno), (1, libc::EMSGSIZE));
    }

    #[test]
    fn nest_fill_takes_what_fits_and_the_rest_goes_to_the_next_message() {
        let items: Vec<u32> = (0..1000).collect();
        let put = |n: &mut Msg, i: &u32| {
            n.nest(1, |e| {
                e.attr_u32(1, *i).attr(2, &[0; 100]);
            });
        };
        let mut taken = Vec::new();
        let mut rest = &items[..];
        while !rest.is_empty() {
            let mut m = Msg::new(16, 0);
            let n = m.nest_fill(3, rest, put);
            assert_eq!(m.check(), Ok(()));
            let bytes = m.bytes(1);
            assert!(bytes.len() - NLMSG_HDRLEN <= NLA_MAX_LEN);
            let list = Attrs::new(&bytes[NLMSG_HDRLEN..]).get(3).unwrap();
            let got: Vec<u32> = list.nested().map(|e| e.nested().get(1).unwrap().u32()).collect();
            assert_eq!(got.len(), n);
            taken.extend(got);
            rest = &rest[n..];
        }
        // 116 bytes an item: 564 fit in one attribute, the rest in a second
        assert_eq!(taken, items);
        let mut m = Msg::new(16, 0);
        assert_eq!(m.nest_fill(3, &items, put), (NLA_MAX_LEN - 4) / 116);
        // an item too long on its own is an error, not skipped silently
        let mut m = Msg::new(16, 0);
        m.nest_fill(3, &[1, 70_000usize, 1], |n, len| {
            n.attr(1, &vec![0; *len]);
        });
        assert_eq!(m.check().unwrap_err().errno, libc::EMSGSIZE);
    }

    #[test]
    fn truncated_attributes_stop_cleanly() {
        let buf = [8u8, 0, 1, 0, 1, 2];
        assert_eq!(Attrs::new(&buf).count(), 0);
    }

    #[test]
    fn an_error_code_that_is_no_negated_errno_is_a_protocol_error() {
        // Found by fuzz/ (netlink_replies): i32::MIN overflowed on negation.
        for code in [i32::MIN, 1, i32::MAX] {
            let reply = Reply { ty: NLMSG_ERROR, flags: 0, payload: code.to_ne_bytes().to_vec() };
            let e = Socket::ack_result(&reply).unwrap_err();
            assert_eq!(e.errno, libc::EPROTO, "{code}");
            assert!(e.ext.unwrap().contains(&code.to_string()));
        }
        let reply = Reply { ty: NLMSG_ERROR, flags: 0, payload: (-libc::ENOENT).to_ne_bytes().to_vec() };
        assert!(Socket::ack_result(&reply).unwrap_err().not_found());
    }
}
