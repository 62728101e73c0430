//! DNS load generation and a trivial DNS responder, for benchmarks
//! (cnibench scenario 5, dns-sidecar's `examples/load.rs`).
//!
//! * [`run_load`]: one UDP socket keeps a window of queries in flight with
//!   `sendmmsg`/`recvmmsg` (closed loop, the server's throughput), or sends at
//!   a fixed rate (open loop, latency at a given load); answers per second,
//!   round-trip times, rcodes, and queries lost (no answer within a timeout).
//! * [`probe`]: one query, resent until an answer that satisfies a predicate
//!   arrives (how soon a newly registered name is live).
//! * [`Responder`]: a fixed-answer UDP server on a thread (the machine's
//!   ceiling for the load generator, or a fake upstream server).
//!
//! Sockets belong to the netns they are created in: create them inside a
//! namespace (e.g. `TestNs::run(|| UdpSocket::bind(..))`) and use them from
//! any thread.

use common::sockaddr::to_raw;
use std::io;
use std::mem::zeroed;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub mod qtype {
    pub const A: u16 = 1;
    pub const PTR: u16 = 12;
    pub const AAAA: u16 = 28;
}

pub mod rcode {
    pub const NOERROR: u8 = 0;
    pub const SERVFAIL: u8 = 2;
    pub const NXDOMAIN: u8 = 3;
    pub const REFUSED: u8 = 5;
}

const HEADER: usize = 12;

/// A query (ID 0, RD set, no EDNS) for `name` (dots separate labels; a
/// trailing dot is optional). None for an invalid name.
pub fn build_query(name: &str, qtype: u16) -> Option<Vec<u8>> {
    let mut m = vec![0, 0, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.').filter(|l| !l.is_empty()) {
        if label.len() > 63 {
            return None;
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    if m.len() - HEADER > 255 {
        return None;
    }
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    Some(m)
}

/// The reverse-lookup name of `ip` (`4.3.2.1.in-addr.arpa`, nibbles for IPv6).
pub fn ptr_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(a) => {
            let mut s = String::new();
            for b in a.octets().iter().rev() {
                s += &format!("{:x}.{:x}.", b & 15, b >> 4);
            }
            s + "ip6.arpa"
        }
    }
}

/// A reply's ID, rcode and answer count, when `msg` is a response.
pub fn reply_facts(msg: &[u8]) -> Option<(u16, u8, u16)> {
    if msg.len() < HEADER || msg[2] & 0x80 == 0 {
        return None;
    }
    Some((u16::from_be_bytes([msg[0], msg[1]]), msg[3] & 15, u16::from_be_bytes([msg[6], msg[7]])))
}

/// What a load run is.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    pub server: SocketAddr,
    /// Queries (IDs are overwritten), asked in turn.
    pub queries: Vec<Vec<u8>>,
    pub duration: Duration,
    /// Queries in flight at most (1–4096).
    pub window: usize,
    /// Queries per second to send (open loop); None: keep the window full.
    pub rate: Option<f64>,
    /// A query without an answer after this long is lost.
    pub timeout: Duration,
}

impl LoadSpec {
    pub fn new(server: SocketAddr, queries: Vec<Vec<u8>>, duration: Duration) -> LoadSpec {
        LoadSpec { server, queries, duration, window: 128, rate: None, timeout: Duration::from_millis(100) }
    }
}

/// What a load run measured.
#[derive(Clone, Debug, Default)]
pub struct LoadStats {
    pub sent: u64,
    /// Answers to queries still waited for (late and foreign ones excluded).
    pub answered: u64,
    /// Answers that arrived during the timed part (for the rate).
    pub answered_in_time: u64,
    /// Queries with no answer within the timeout.
    pub lost: u64,
    /// Answers by rcode.
    pub rcodes: [u64; 16],
    /// NOERROR answers without an answer record.
    pub empty: u64,
    /// The timed part.
    pub elapsed: Duration,
    /// Round-trip times in microseconds, sorted.
    pub rtt_us: Vec<u32>,
}

impl LoadStats {
    /// Answers per second during the timed part.
    pub fn qps(&self) -> f64 {
        self.answered_in_time as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Round-trip time percentile `p` (0–100) in microseconds.
    pub fn rtt_pct(&self, p: f64) -> Option<f64> {
        if self.rtt_us.is_empty() {
            return None;
        }
        let i = ((self.rtt_us.len() - 1) as f64 * p / 100.0).round() as usize;
        Some(self.rtt_us[i] as f64)
    }

    /// Answers with rcode `r`.
    pub fn rcode(&self, r: u8) -> u64 {
        self.rcodes[r as usize & 15]
    }

    /// One line for humans.
    pub fn summary(&self) -> String {
        format!(
            "{:.0} answers/s ({} answers, {} sent, {} lost, {:.2} s); rtt p50 {:?} us p99 {:?} us; rcodes {:?}; \
             empty {}",
            self.qps(),
            self.answered,
            self.sent,
            self.lost,
            self.elapsed.as_secs_f64(),
            self.rtt_pct(50.0).unwrap_or(0.0),
            self.rtt_pct(99.0).unwrap_or(0.0),
            self.rcodes.iter().enumerate().filter(|(_, c)| **c > 0).map(|(r, c)| (r, *c)).collect::<Vec<_>>(),
            self.empty
        )
    }
}

const BATCH: usize = 64;
const RECV_SIZE: usize = 1500;

/// Batched receive buffers.
struct RecvBatch {
    buf: Vec<u8>,
    addr: [libc::sockaddr_storage; BATCH],
    iov: [libc::iovec; BATCH],
    hdr: [libc::mmsghdr; BATCH],
}

impl RecvBatch {
    fn new() -> Box<RecvBatch> {
        // SAFETY: all-zero is valid for these plain C structs; pointers are set in `recv`.
        let mut b = Box::new(RecvBatch {
            buf: vec![0; BATCH * RECV_SIZE],
            addr: unsafe { zeroed() },
            iov: unsafe { zeroed() },
            hdr: unsafe { zeroed() },
        });
        for i in 0..BATCH {
            b.iov[i] = libc::iovec {
                iov_base: b.buf[i * RECV_SIZE..].as_mut_ptr() as *mut libc::c_void,
                iov_len: RECV_SIZE,
            };
        }
        b
    }

    /// Up to BATCH datagrams; `flags` as for recvmmsg. Ok(0) on timeout/EAGAIN.
    fn recv(&mut self, fd: i32, flags: i32) -> io::Result<usize> {
        for i in 0..BATCH {
            let h = &mut self.hdr[i];
            h.msg_hdr.msg_name = &mut self.addr[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        loop {
            // SAFETY: every header points at live buffers of the stated sizes.
            let n =
                unsafe { libc::recvmmsg(fd, self.hdr.as_mut_ptr(), BATCH as _, flags, std::ptr::null_mut()) };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => return Ok(0),
                // An ICMP error (port unreachable) reported on the socket.
                io::ErrorKind::ConnectionRefused => return Ok(0),
                _ => return Err(e),
            }
        }
    }

    fn msg(&self, i: usize) -> &[u8] {
        &self.buf[i * RECV_SIZE..i * RECV_SIZE + self.hdr[i].msg_len as usize]
    }
}

fn nanos_since(t0: Instant) -> u64 {
    t0.elapsed().as_nanos() as u64
}

/// Wait until `fd` is readable or `ns` nanoseconds pass.
fn wait_readable(fd: i32, ns: u64) {
    let ts = libc::timespec { tv_sec: (ns / 1_000_000_000) as _, tv_nsec: (ns % 1_000_000_000) as _ };
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, a valid timespec, no signal mask.
    unsafe { libc::ppoll(&mut p, 1, &ts, std::ptr::null()) };
}

/// Run a load from `sock` (an unconnected UDP socket, created in the client's
/// netns) against `spec.server`.
pub fn run_load(sock: &UdpSocket, spec: &LoadSpec) -> io::Result<LoadStats> {
    if spec.queries.is_empty() {
        return Err(io::Error::other("no queries"));
    }
    let window = spec.window.clamp(1, 4096);
    let fd = sock.as_raw_fd();
    // Precise sleeps for the paced mode.
    // SAFETY: plain prctl on the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1u64, 0u64, 0u64, 0u64) };
    let (dst, dst_len) = to_raw(&spec.server);
    let mut rb = RecvBatch::new();
    // Drain anything left from an earlier run on this socket.
    while rb.recv(fd, libc::MSG_DONTWAIT)? > 0 {}
    let timeout_ns = spec.timeout.as_nanos() as u64;
    let dur_ns = spec.duration.as_nanos() as u64;
    let mut st = LoadStats::default();
    // Per ID (= sequence number mod 65536): when it was sent (ns since t0 + 1), 0 = not waited for.
    let mut sent_at = vec![0u64; 65536];
    let (mut next, mut oldest, mut inflight) = (0u64, 0u64, 0usize);
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    // SAFETY: zeroed C structs, pointed at live data before each use.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut rtts: Vec<u32> = Vec::new();
    let t0 = Instant::now();
    let mut draining = false;
    loop {
        let now = nanos_since(t0);
        if !draining && now >= dur_ns {
            draining = true;
            st.elapsed = Duration::from_nanos(now);
            st.answered_in_time = st.answered;
        }
        if draining && (inflight == 0 || now >= dur_ns + timeout_ns) {
            st.lost += inflight as u64;
            break;
        }
        // Expire the oldest queries without an answer.
        while oldest < next {
            let s = sent_at[(oldest & 0xffff) as usize];
            if s == 0 {
                oldest += 1;
            } else if now >= s - 1 + timeout_ns {
                st.lost += 1;
                inflight -= 1;
                sent_at[(oldest & 0xffff) as usize] = 0;
                oldest += 1;
            } else {
                break;
            }
        }
        // Send what the window (and the rate) allows.
        let mut next_due = u64::MAX;
        if !draining {
            let mut k = (window - inflight).min(BATCH);
            if let Some(rate) = spec.rate {
                let due = (rate * now as f64 / 1e9) as u64 + 1;
                let allowed = due.saturating_sub(st.sent) as usize;
                k = k.min(allowed);
                next_due = ((st.sent + k as u64) as f64 * 1e9 / rate) as u64;
            }
            // Never reuse an ID still waited for.
            k = k.min((oldest + 65536 - next) as usize);
            if k > 0 {
                for i in 0..k {
                    let q = &mut bufs[i];
                    q.clear();
                    q.extend_from_slice(&spec.queries[(next + i as u64) as usize % spec.queries.len()]);
                    q[0..2].copy_from_slice(&(((next + i as u64) & 0xffff) as u16).to_be_bytes());
                    iov[i] = libc::iovec { iov_base: q.as_ptr() as *mut libc::c_void, iov_len: q.len() };
                    hdr[i].msg_hdr.msg_name = &dst as *const _ as *mut libc::c_void;
                    hdr[i].msg_hdr.msg_namelen = dst_len;
                    hdr[i].msg_hdr.msg_iov = &mut iov[i];
                    hdr[i].msg_hdr.msg_iovlen = 1;
                }
                let stamp = nanos_since(t0) + 1;
                // SAFETY: k valid headers pointing at live buffers.
                let n = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), k as u32, 0) };
                if n < 0 {
                    let e = io::Error::last_os_error();
                    if !matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::ConnectionRefused
                    ) {
                        return Err(e);
                    }
                } else {
                    for i in 0..n as u64 {
                        sent_at[((next + i) & 0xffff) as usize] = stamp;
                    }
                    next += n as u64;
                    st.sent += n as u64;
                    inflight += n as usize;
                }
            }
        }
        // Receive: wait no longer than the next send or expiry is due.
        let now = nanos_since(t0);
        let mut wait = 5_000_000u64;
        if next_due != u64::MAX {
            wait = wait.min(next_due.saturating_sub(now));
        }
        if oldest < next {
            let s = sent_at[(oldest & 0xffff) as usize];
            if s > 0 {
                wait = wait.min((s - 1 + timeout_ns).saturating_sub(now));
            }
        }
        if draining {
            wait = wait.min((dur_ns + timeout_ns).saturating_sub(now));
        }
        let full = inflight >= window || (spec.rate.is_none() && inflight > 0 && wait > 0);
        if wait > 0 && (full || spec.rate.is_some() || draining) {
            wait_readable(fd, wait);
        }
        let n = rb.recv(fd, libc::MSG_DONTWAIT)?;
        let at = nanos_since(t0);
        for i in 0..n {
            let Some((id, rc, an)) = reply_facts(rb.msg(i)) else { continue };
            let s = &mut sent_at[id as usize];
            if *s == 0 {
                continue; // late (already counted lost) or not ours
            }
            rtts.push(((at - (*s - 1)) / 1000).min(u32::MAX as u64) as u32);
            *s = 0;
            inflight -= 1;
            st.answered += 1;
            st.rcodes[rc as usize] += 1;
            if rc == rcode::NOERROR && an == 0 {
                st.empty += 1;
            }
        }
    }
    rtts.sort_unstable();
    st.rtt_us = rtts;
    Ok(st)
}

/// What [`probe`] saw.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Probe {
    /// From the call to the reply that satisfied the predicate.
    pub after: Option<Duration>,
    /// The last reply's (rcode, answer count).
    pub last: Option<(u8, u16)>,
    /// Queries sent.
    pub tries: u32,
    /// Replies that did not satisfy the predicate.
    pub wrong: u32,
}

/// Send `query` to `server` every `retry` until a reply for which `ok(rcode,
/// answer count)` holds arrives or `limit` passes; after a reply that does
/// not satisfy it, ask again at once.
pub fn probe(
    sock: &UdpSocket,
    server: SocketAddr,
    query: &[u8],
    retry: Duration,
    limit: Duration,
    ok: impl Fn(u8, u16) -> bool,
) -> Probe {
    let t0 = Instant::now();
    let fd = sock.as_raw_fd();
    let mut rb = RecvBatch::new();
    let mut q = query.to_vec();
    let mut p = Probe::default();
    let mut id: u16 = (t0.elapsed().subsec_nanos() & 0xffff) as u16;
    while t0.elapsed() < limit {
        id = id.wrapping_add(1);
        q[0..2].copy_from_slice(&id.to_be_bytes());
        let _ = sock.send_to(&q, server);
        p.tries += 1;
        let sent = Instant::now();
        let mut answered = false;
        while sent.elapsed() < retry {
            wait_readable(fd, (retry.saturating_sub(sent.elapsed())).as_nanos() as u64);
            let Ok(n) = rb.recv(fd, libc::MSG_DONTWAIT) else { break };
            for i in 0..n {
                if let Some((rid, rc, an)) = reply_facts(rb.msg(i)) {
                    if rid == id {
                        p.last = Some((rc, an));
                        if ok(rc, an) {
                            p.after = Some(t0.elapsed());
                            return p;
                        }
                        p.wrong += 1;
                        answered = true;
                    }
                }
            }
            if answered {
                break; // answered, but not as wanted: ask again at once
            }
        }
    }
    p
}

/// How a [`Responder`] answers.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Answer {
    /// Every query: NOERROR, for type A one record 192.0.2.1 (TTL 3600).
    Fixed,
    /// A fake upstream: names under `example.com` as `Fixed`, everything else
    /// NXDOMAIN.
    Upstream,
}

/// A trivial DNS server on a thread: batched receive, an answer built in
/// place, batched send. Stops when dropped.
pub struct Responder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
    pub addr: SocketAddr,
}

impl Responder {
    /// Serve on `sock` (bound where it should listen, in its netns).
    pub fn spawn(sock: UdpSocket, answer: Answer) -> io::Result<Responder> {
        let addr = sock.local_addr()?;
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name("dns-responder".into())
            .spawn(move || serve(&sock, answer, &s))?;
        Ok(Responder { stop, thread: Some(thread), addr })
    }

    /// Stop; the number of queries answered.
    pub fn stop(mut self) -> u64 {
        self.halt()
    }

    fn halt(&mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0)
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The end of the question section of `q`, and whether the name ends in
/// `example.com`.
fn question_end(q: &[u8]) -> Option<(usize, bool)> {
    let mut at = HEADER;
    let mut labels: Vec<&[u8]> = Vec::new();
    loop {
        let l = *q.get(at)? as usize;
        if l == 0 {
            at += 1;
            break;
        }
        if l > 63 {
            return None;
        }
        labels.push(q.get(at + 1..at + 1 + l)?);
        at += 1 + l;
    }
    if at + 4 > q.len() {
        return None;
    }
    let n = labels.len();
    let ex = n >= 2
        && labels[n - 2].eq_ignore_ascii_case(b"example")
        && labels[n - 1].eq_ignore_ascii_case(b"com");
    Some((at + 4, ex))
}

/// The answer to `q` in `out`; its length (0: no answer).
fn answer(q: &[u8], out: &mut [u8], how: Answer) -> usize {
    if q.len() < HEADER || q[2] & 0x80 != 0 || u16::from_be_bytes([q[4], q[5]]) != 1 {
        return 0;
    }
    let Some((end, ex)) = question_end(q) else { return 0 };
    if end + 16 > out.len() {
        return 0;
    }
    let qtype = u16::from_be_bytes([q[end - 4], q[end - 3]]);
    let nx = how == Answer::Upstream && !ex;
    let give_a = !nx && qtype == qtype::A;
    out[..end].copy_from_slice(&q[..end]);
    out[2] = 0x80 | (q[2] & 0x79); // QR, opcode and RD kept
    out[3] = 0x80 | if nx { rcode::NXDOMAIN } else { rcode::NOERROR }; // RA
    out[6..12].copy_from_slice(&[0, give_a as u8, 0, 0, 0, 0]);
    if !give_a {
        return end;
    }
    out[end..end + 16].copy_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0x0e, 0x10, 0, 4, 192, 0, 2, 1]);
    end + 16
}

fn serve(sock: &UdpSocket, how: Answer, stop: &AtomicBool) -> u64 {
    let fd = sock.as_raw_fd();
    let mut rb = RecvBatch::new();
    let mut out = vec![0u8; BATCH * 512];
    // SAFETY: zeroed C structs, pointed at live data before use.
    let mut iov: [libc::iovec; BATCH] = unsafe { zeroed() };
    let mut hdr: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
    let mut total = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let n = match rb.recv(fd, libc::MSG_WAITFORONE) {
            Ok(n) => n,
            Err(_) => break,
        };
        let mut k = 0;
        for i in 0..n {
            let len = answer(rb.msg(i), &mut out[k * 512..(k + 1) * 512], how);
            if len == 0 {
                continue;
            }
            iov[k] = libc::iovec { iov_base: out[k * 512..].as_mut_ptr() as *mut libc::c_void, iov_len: len };
            hdr[k].msg_hdr.msg_name = &mut rb.addr[i] as *mut _ as *mut libc::c_void;
            hdr[k].msg_hdr.msg_namelen = rb.hdr[i].msg_hdr.msg_namelen;
            hdr[k].msg_hdr.msg_iov = &mut iov[k];
            hdr[k].msg_hdr.msg_iovlen = 1;
            k += 1;
        }
        let mut done = 0;
        while done < k {
            // SAFETY: headers done..k point at live buffers and addresses.
            let r = unsafe { libc::sendmmsg(fd, hdr[done..].as_mut_ptr(), (k - done) as u32, 0) };
            if r <= 0 {
                break;
            }
            done += r as usize;
        }
        total += done as u64;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_answer_and_names() {
        let q = build_query("www.Example.com.", qtype::A).unwrap();
        assert_eq!(q.len(), 12 + 17 + 4);
        let mut out = [0u8; 512];
        let n = answer(&q, &mut out, Answer::Upstream);
        assert_eq!(reply_facts(&out[..n]), Some((0, rcode::NOERROR, 1)));
        let q = build_query("nope.dns.podman", qtype::A).unwrap();
        let n = answer(&q, &mut out, Answer::Upstream);
        assert_eq!(reply_facts(&out[..n]), Some((0, rcode::NXDOMAIN, 0)));
        let n = answer(&q, &mut out, Answer::Fixed);
        assert_eq!(reply_facts(&out[..n]), Some((0, rcode::NOERROR, 1)));
        assert_eq!(ptr_name("10.1.2.3".parse().unwrap()), "3.2.1.10.in-addr.arpa");
        assert!(ptr_name("fd00::1".parse().unwrap()).starts_with("1.0.0.0."));
    }

    #[test]
    fn load_against_a_responder_on_loopback() {
        let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else { return };
        let r = Responder::spawn(sock, Answer::Fixed).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let q = build_query("x.example.com", qtype::A).unwrap();
        let mut spec = LoadSpec::new(r.addr, vec![q.clone()], Duration::from_millis(100));
        spec.window = 16;
        let st = run_load(&client, &spec).unwrap();
        assert!(st.answered > 0 && st.rcode(rcode::NOERROR) == st.answered, "{}", st.summary());
        spec.rate = Some(2000.0);
        let st = run_load(&client, &spec).unwrap();
        assert!(st.sent >= 150 && st.sent <= 260, "{}", st.summary());
        let p = probe(&client, r.addr, &q, Duration::from_millis(5), Duration::from_secs(1), |rc, an| {
            rc == 0 && an > 0
        });
        assert!(p.after.is_some() && p.last == Some((0, 1)) && p.tries == 1 && p.wrong == 0, "{p:?}");
    }
}
