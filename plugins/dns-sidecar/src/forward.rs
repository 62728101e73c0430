//! Forwarding to the upstream servers of resolv.conf, and the answer cache.
//!
//! Every try of every forwarded query goes out on a socket of its own, on a
//! source port the kernel picks at random, under a random ID (as dnsmasq and
//! unbound do): a forger must guess the port as well as the ID, about 2^31
//! combinations instead of 2^16. The socket is connected to the server asked,
//! so only datagrams from that address and port reach it; an answer must
//! also carry the ID and the question asked. A server that answers with an
//! ICMP error (nothing listens there) is left for the next one at once.
//!
//! UDP clients: the worker that received the query sends it upstream and
//! records it as in flight; one forwarder thread waits on all the query
//! sockets (epoll), restores the client's ID in the answer and sends the
//! bytes, unchanged otherwise, from the listening socket. The same thread
//! retries on timeouts (next server, new socket) and answers SERVFAIL when
//! the budget is spent. A truncated upstream answer is relayed as is: the
//! client then asks us over TCP. No socket to be had (descriptors or
//! ephemeral ports exhausted) fails that try at once, so the worst case is a
//! quick SERVFAIL, never a hang.
//!
//! TCP clients: resolved in the connection's thread, UDP first and TCP when
//! the upstream answer is truncated.
//!
//! The cache keeps NOERROR and NXDOMAIN answers for their TTL (NXDOMAIN:
//! the SOA's negative TTL) and serves them with the TTLs aged.

use std::cell::Cell;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use crate::resolv;
use crate::sock::{self, Epoll};
use crate::table::{FxBuild, FxHasher};
use crate::wire::{self, flag, rcode, Query};

/// Time one upstream gets before the next try.
pub const TRY_TIMEOUT: Duration = Duration::from_millis(700);
/// Tries per query, over the servers in turn: SERVFAIL after at most
/// TRIES × TRY_TIMEOUT (+ one scan interval) when every upstream is dead.
pub const TRIES: u8 = 3;
const SCAN: Duration = Duration::from_millis(25);
/// Queries in flight at most: each holds a socket and an ephemeral port, and
/// a busy network must not take much of the host's ~28000 (at 50 ms per
/// upstream round trip this still allows 20000 queries/s) ...
const MAX_INFLIGHT: usize = 1024;
/// ... and never so many that the descriptors left drop below this.
const SPARE_FDS: usize = 256;
const SHARDS: usize = 8;
const CACHE_ENTRIES: usize = 4096;
const MAX_CACHE_TTL: u32 = 3600;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    hash: u64,
}

fn key_of(q: &Query) -> Key {
    let mut h = FxHasher::default();
    h.write(q.name.as_bytes());
    h.write_u32(((q.qtype as u32) << 16) | q.qclass as u32);
    h.write_u8(cache_bits(q));
    Key { hash: h.finish() }
}

/// The query bits that change an upstream answer.
fn cache_bits(q: &Query) -> u8 {
    let mut b = 0;
    if q.flags & flag::RD != 0 {
        b |= 1;
    }
    if q.flags & flag::CD != 0 {
        b |= 2;
    }
    if let Some(e) = q.edns {
        b |= 4;
        if e.dnssec_ok {
            b |= 8;
        }
    }
    b
}

struct Cached {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    bits: u8,
    resp: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    stored: Instant,
    ttl: u32,
}

/// A UDP client's query on its way upstream.
struct Inflight {
    /// The client's query, under the ID of the current try.
    query: Vec<u8>,
    q: Query,
    orig_id: u16,
    client: SocketAddr,
    reply: Arc<UdpSocket>,
    tries: u8,
    /// The current try's socket, connected to the server asked (None: that
    /// try failed; the next one is due).
    sock: Option<UdpSocket>,
    deadline: Instant,
}

pub struct Forwarder {
    upstreams: RwLock<Arc<Vec<SocketAddr>>>,
    resolv_path: PathBuf,
    resolv_mtime: Mutex<Option<SystemTime>>,
    exclude: RwLock<Vec<IpAddr>>,
    /// The sockets of the queries in flight, by token.
    epoll: Epoll,
    /// The queries in flight by token, in shards: the UDP workers add and
    /// the forwarder thread takes, mostly without meeting on a lock.
    pending: [Mutex<HashMap<u64, Inflight, FxBuild>>; SHARDS],
    next_token: AtomicU64,
    inflight: AtomicUsize,
    max_inflight: usize,
    cache: Mutex<HashMap<Key, Cached, FxBuild>>,
}

fn seed() -> u64 {
    let mut b = [0u8; 8];
    // SAFETY: writes at most 8 bytes into b.
    let n = unsafe { libc::getrandom(b.as_mut_ptr() as *mut libc::c_void, 8, 0) };
    let t = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    (if n == 8 { u64::from_ne_bytes(b) } else { t ^ std::process::id() as u64 }) | 1
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A random query ID (xorshift64*, seeded per thread from getrandom).
fn random_id() -> u16 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        r.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 48) as u16
    })
}

/// How many queries may be in flight: each holds a descriptor.
fn inflight_bound() -> usize {
    let mut rl = libc::rlimit { rlim_cur: 1024, rlim_max: 1024 };
    // SAFETY: getrlimit fills the struct (left as it is on failure).
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) };
    MAX_INFLIGHT.min((rl.rlim_cur as usize).saturating_sub(SPARE_FDS)).max(1)
}

impl Forwarder {
    pub fn new(resolv_path: PathBuf, exclude: Vec<IpAddr>) -> io::Result<Forwarder> {
        let f = Forwarder {
            upstreams: RwLock::new(Arc::new(Vec::new())),
            resolv_path,
            resolv_mtime: Mutex::new(None),
            exclude: RwLock::new(exclude),
            epoll: Epoll::new()?,
            pending: Default::default(),
            next_token: AtomicU64::new(0),
            inflight: AtomicUsize::new(0),
            max_inflight: inflight_bound(),
            cache: Mutex::new(HashMap::default()),
        };
        f.reload(None);
        Ok(f)
    }

    /// Re-read resolv.conf (with new addresses to exclude, when given).
    pub fn reload(&self, exclude: Option<Vec<IpAddr>>) {
        if let Some(x) = exclude {
            *self.exclude.write().unwrap() = x;
        }
        let mtime = std::fs::metadata(&self.resolv_path).and_then(|m| m.modified()).ok();
        let text = std::fs::read_to_string(&self.resolv_path).unwrap_or_default();
        let ups = resolv::parse(&text, &self.exclude.read().unwrap());
        *self.resolv_mtime.lock().unwrap() = mtime;
        let changed = **self.upstreams.read().unwrap() != ups;
        if changed {
            *self.upstreams.write().unwrap() = Arc::new(ups);
            self.cache.lock().unwrap().clear();
        }
    }

    /// Reload when resolv.conf changed since we read it.
    fn reload_if_changed(&self) {
        let mtime = std::fs::metadata(&self.resolv_path).and_then(|m| m.modified()).ok();
        if mtime != *self.resolv_mtime.lock().unwrap() {
            self.reload(None);
        }
    }

    pub fn upstreams(&self) -> Arc<Vec<SocketAddr>> {
        self.upstreams.read().unwrap().clone()
    }

    /// Answer `q` from the cache into `out`; the length.
    pub fn cached(&self, q: &Query, msg: &[u8], out: &mut [u8], limit: usize) -> Option<usize> {
        let key = key_of(q);
        let cache = self.cache.lock().unwrap();
        let c = cache.get(&key)?;
        let age = c.stored.elapsed().as_secs();
        if age >= c.ttl as u64
            || c.resp.len() > limit.min(out.len())
            || *c.name != *q.name.as_bytes()
            || (c.qtype, c.qclass, c.bits) != (q.qtype, q.qclass, cache_bits(q))
        {
            return None;
        }
        let n = c.resp.len();
        out[..n].copy_from_slice(&c.resp);
        let offsets = c.ttl_offsets.clone();
        drop(cache);
        wire::set_id(out, q.id);
        // The client's own spelling of the name (0x20 case randomization).
        out[wire::HEADER_LEN..q.question_end].copy_from_slice(&msg[wire::HEADER_LEN..q.question_end]);
        wire::age_ttls(&mut out[..n], &offsets, age as u32);
        Some(n)
    }

    fn store(&self, q: &Query, resp: &[u8]) {
        let Some((ttl, offsets)) = wire::cache_facts(resp) else { return };
        let mut cache = self.cache.lock().unwrap();
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, c| c.stored.elapsed().as_secs() < c.ttl as u64);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(
            key_of(q),
            Cached {
                name: q.name.as_bytes().into(),
                qtype: q.qtype,
                qclass: q.qclass,
                bits: cache_bits(q),
                resp: resp.into(),
                ttl_offsets: offsets.into(),
                stored: Instant::now(),
                ttl: ttl.min(MAX_CACHE_TTL),
            },
        );
    }

    /// Send a UDP client's query upstream; its answer comes from the
    /// forwarder thread. Returns a reply for `out` when it cannot be sent
    /// (no upstream, too much in flight, no socket for any try): SERVFAIL.
    pub fn submit(
        &self,
        q: Query,
        msg: &[u8],
        client: SocketAddr,
        reply: &Arc<UdpSocket>,
        out: &mut [u8],
    ) -> Option<usize> {
        let ups = self.upstreams();
        if ups.is_empty() {
            return Some(wire::rcode_reply(&q, msg, rcode::SERVFAIL, false, out));
        }
        if self.inflight.fetch_add(1, Ordering::AcqRel) >= self.max_inflight {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Some(wire::rcode_reply(&q, msg, rcode::SERVFAIL, false, out));
        }
        let orig_id = q.id;
        let mut inf = Inflight {
            query: msg.to_vec(),
            q,
            orig_id,
            client,
            reply: reply.clone(),
            tries: 0,
            sock: None,
            deadline: Instant::now(),
        };
        if !self.try_next(&mut inf, &ups) {
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            return Some(wire::rcode_reply(&inf.q, msg, rcode::SERVFAIL, false, out));
        }
        self.track(self.next_token.fetch_add(1, Ordering::Relaxed), inf);
        None
    }

    /// Send `inf` to the next server on a new socket, skipping tries that
    /// cannot even be sent. False when no try is left.
    fn try_next(&self, inf: &mut Inflight, ups: &[SocketAddr]) -> bool {
        inf.sock = None;
        while inf.tries < TRIES && !ups.is_empty() {
            let up = ups[inf.tries as usize % ups.len()];
            inf.tries += 1;
            wire::set_id(&mut inf.query, random_id());
            if let Ok(s) = sock::query_socket(&up) {
                if s.send(&inf.query).is_ok() {
                    inf.sock = Some(s);
                    inf.deadline = Instant::now() + TRY_TIMEOUT;
                    return true;
                }
            }
        }
        false
    }

    fn shard(&self, token: u64) -> &Mutex<HashMap<u64, Inflight, FxBuild>> {
        &self.pending[token as usize % SHARDS]
    }

    /// Put `inf` in flight under `token` and watch its socket. (Watched only
    /// once recorded, so the forwarder thread never sees a token it does not know.)
    fn track(&self, token: u64, mut inf: Inflight) {
        let mut pending = self.shard(token).lock().unwrap();
        if let Some(s) = &inf.sock {
            if self.epoll.add(s.as_raw_fd(), token).is_err() {
                inf.sock = None; // unwatchable: this try is over
                inf.deadline = Instant::now();
            }
        }
        pending.insert(token, inf);
    }

    /// The socket of `token` is readable: relay a valid answer. True when
    /// the try failed at once (an ICMP error) and the next one is due.
    fn on_ready(&self, token: u64, buf: &mut [u8]) -> bool {
        let Some(mut inf) = self.shard(token).lock().unwrap().remove(&token) else { return false };
        let mut failed = false;
        if let Some(s) = &inf.sock {
            loop {
                match s.recv(buf) {
                    // From the server asked (the socket is connected); it
                    // must carry this try's ID and our question too.
                    Ok(n) => {
                        let resp = &mut buf[..n];
                        if n >= wire::HEADER_LEN
                            && wire::id_of(resp) == wire::id_of(&inf.query)
                            && wire::answers_question(resp, &inf.q)
                        {
                            self.relay(inf, resp);
                            return false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        failed = true;
                        break;
                    }
                }
            }
        }
        if failed {
            inf.sock = None;
            inf.deadline = Instant::now();
        }
        self.shard(token).lock().unwrap().insert(token, inf);
        failed
    }

    /// The answer to a UDP client, under its own ID; then into the cache.
    fn relay(&self, inf: Inflight, resp: &mut [u8]) {
        self.inflight.fetch_sub(1, Ordering::AcqRel);
        wire::set_id(resp, inf.orig_id);
        let _ = inf.reply.send_to(resp, inf.client);
        wire::set_id(resp, inf.q.id);
        self.store(&inf.q, resp);
    }

    /// Retry what timed out or failed on the next server; SERVFAIL what is out of tries.
    fn expire(&self, now: Instant) {
        let mut due: Vec<(u64, Inflight)> = Vec::new();
        for shard in &self.pending {
            let mut pending = shard.lock().unwrap();
            let ids: Vec<u64> = pending.iter().filter(|(_, i)| i.deadline <= now).map(|(t, _)| *t).collect();
            due.extend(ids.into_iter().filter_map(|t| pending.remove(&t).map(|i| (t, i))));
        }
        if due.is_empty() {
            return;
        }
        let ups = self.upstreams();
        let mut out = [0u8; 600];
        for (token, mut i) in due {
            if self.try_next(&mut i, &ups) {
                self.track(token, i);
                continue;
            }
            self.inflight.fetch_sub(1, Ordering::AcqRel);
            let mut q = i.q.clone();
            q.id = i.orig_id;
            let n = wire::rcode_reply(&q, &i.query, rcode::SERVFAIL, false, &mut out);
            let _ = i.reply.send_to(&out[..n], i.client);
        }
    }

    /// The forwarder thread: upstream answers, retries, resolv.conf changes.
    /// `alive` is asked every few seconds; the thread ends the process when it says no.
    pub fn run(&self, alive: impl Fn() -> bool) {
        let mut buf = vec![0u8; 65535];
        // SAFETY: epoll_event is plain data; zero is a valid value.
        let mut events = vec![unsafe { std::mem::zeroed::<libc::epoll_event>() }; 64];
        let mut ready = Vec::with_capacity(events.len());
        let mut last_check = Instant::now();
        let mut next_scan = Instant::now() + SCAN;
        loop {
            // Rounded up: a wait of 0 ms would spin until the scan is due.
            let wait = next_scan.saturating_duration_since(Instant::now());
            self.epoll.wait(&mut events, wait.as_nanos().div_ceil(1_000_000) as i32, &mut ready);
            let mut retry_now = false;
            for &token in &ready {
                retry_now |= self.on_ready(token, &mut buf);
            }
            let now = Instant::now();
            if retry_now || now >= next_scan {
                self.expire(now);
                next_scan = now + SCAN;
            }
            if now.duration_since(last_check) >= Duration::from_secs(2) {
                last_check = now;
                self.reload_if_changed();
                if !alive() {
                    std::process::exit(0);
                }
            }
        }
    }

    /// Resolve `q` for a TCP client, in the caller's thread: cache, then
    /// UDP to each server in turn, TCP to the same server when truncated.
    pub fn resolve_blocking(&self, q: &Query, msg: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; 65535];
        if let Some(n) = self.cached(q, msg, &mut out, usize::MAX) {
            out.truncate(n);
            return Some(out);
        }
        let ups = self.upstreams();
        if ups.is_empty() {
            return None;
        }
        for t in 0..TRIES as usize {
            let up = ups[t % ups.len()];
            if let Ok(resp) = ask_upstream(up, q, msg) {
                self.store(q, &resp);
                return Some(resp);
            }
        }
        None
    }
}

/// One exchange with one upstream: UDP (a socket of its own, as for UDP
/// clients), then TCP when the answer is truncated.
fn ask_upstream(up: SocketAddr, q: &Query, msg: &[u8]) -> io::Result<Vec<u8>> {
    let s = sock::query_socket(&up)?;
    let id = random_id();
    let mut query = msg.to_vec();
    wire::set_id(&mut query, id);
    s.send(&query)?;
    let deadline = Instant::now() + TRY_TIMEOUT;
    let mut buf = vec![0u8; 65535];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !sock::wait_readable(s.as_raw_fd(), left) {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let n = match s.recv(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) => continue,
            Err(e) => return Err(e), // ICMP error: the next server
        };
        let resp = &mut buf[..n];
        if n < wire::HEADER_LEN || wire::id_of(resp) != id || !wire::answers_question(resp, q) {
            continue;
        }
        if u16::from_be_bytes([resp[2], resp[3]]) & flag::TC != 0 {
            return ask_upstream_tcp(up, &query, id, q);
        }
        wire::set_id(resp, q.id);
        return Ok(resp.to_vec());
    }
}

fn ask_upstream_tcp(up: SocketAddr, query: &[u8], id: u16, q: &Query) -> io::Result<Vec<u8>> {
    let mut s = TcpStream::connect_timeout(&up, TRY_TIMEOUT)?;
    s.set_read_timeout(Some(TRY_TIMEOUT))?;
    s.set_write_timeout(Some(TRY_TIMEOUT))?;
    let mut m = Vec::with_capacity(query.len() + 2);
    m.extend_from_slice(&(query.len() as u16).to_be_bytes());
    m.extend_from_slice(query);
    s.write_all(&m)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut resp = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut resp)?;
    if resp.len() < wire::HEADER_LEN || wire::id_of(&resp) != id || !wire::answers_question(&resp, q) {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "upstream answered another question"));
    }
    wire::set_id(&mut resp, q.id);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{build_query, parse_query, parse_response, rtype, Rdata, Writer};

    fn forwarder(resolv: &str) -> (Forwarder, PathBuf) {
        let p = std::env::temp_dir().join(format!("dns-sidecar-fwd-{}-{}", std::process::id(), resolv.len()));
        std::fs::write(&p, resolv).unwrap();
        (Forwarder::new(p.clone(), vec!["10.0.0.1".parse().unwrap()]).unwrap(), p)
    }

    fn upstream_answer(q: &Query, msg: &[u8], ttl: u32) -> Vec<u8> {
        let mut out = [0u8; 512];
        let mut w = Writer::reply(q, msg, &mut out, 512, rcode::NOERROR, false);
        w.a(&[192, 0, 2, 1], ttl);
        let n = w.finish();
        out[..n].to_vec()
    }

    #[test]
    fn upstreams_skip_our_own_address() {
        let (f, p) = forwarder("nameserver 10.0.0.1\nnameserver 192.0.2.53\n");
        assert_eq!(*f.upstreams(), vec!["192.0.2.53:53".parse::<SocketAddr>().unwrap()]);
        f.reload(Some(vec!["192.0.2.53".parse().unwrap()]));
        assert_eq!(*f.upstreams(), vec!["10.0.0.1:53".parse::<SocketAddr>().unwrap()]);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn cache_serves_with_the_clients_id_and_spelling() {
        let (f, p) = forwarder("nameserver 192.0.2.53\n");
        let m1 = build_query(1, "example.com", rtype::A, None).unwrap();
        let q1 = parse_query(&m1).unwrap();
        f.store(&q1, &upstream_answer(&q1, &m1, 300));
        let m2 = build_query(2, "ExAmPlE.CoM", rtype::A, None).unwrap();
        let q2 = parse_query(&m2).unwrap();
        let mut out = [0u8; 4096];
        let n = f.cached(&q2, &m2, &mut out, 512).expect("cached");
        let r = parse_response(&out[..n]).unwrap();
        assert_eq!(r.id, 2);
        assert_eq!(r.answers, vec![(Rdata::A("192.0.2.1".parse().unwrap()), 300)]);
        assert_eq!(&out[12..q2.question_end], &m2[12..q2.question_end]);
        // Another type, or a query with EDNS, is another entry.
        let m3 = build_query(3, "example.com", rtype::AAAA, None).unwrap();
        assert!(f.cached(&parse_query(&m3).unwrap(), &m3, &mut out, 512).is_none());
        let m4 = build_query(4, "example.com", rtype::A, Some(1232)).unwrap();
        assert!(f.cached(&parse_query(&m4).unwrap(), &m4, &mut out, 512).is_none());
        // TTL 0 answers are not kept.
        let m5 = build_query(5, "zero.example", rtype::A, None).unwrap();
        let q5 = parse_query(&m5).unwrap();
        f.store(&q5, &upstream_answer(&q5, &m5, 0));
        assert!(f.cached(&q5, &m5, &mut out, 512).is_none());
        // A changed resolv.conf empties the cache.
        std::fs::write(&p, "nameserver 192.0.2.54\n").unwrap();
        f.reload(None);
        assert!(f.cached(&q2, &m2, &mut out, 512).is_none());
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn no_upstream_is_an_immediate_servfail() {
        let (f, p) = forwarder("# nothing\n");
        let m = build_query(9, "example.com", rtype::A, None).unwrap();
        let q = parse_query(&m).unwrap();
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").unwrap());
        let mut out = [0u8; 512];
        let n = f.submit(q.clone(), &m, "127.0.0.1:9".parse().unwrap(), &sock, &mut out).unwrap();
        assert_eq!(parse_response(&out[..n]).unwrap().rcode, rcode::SERVFAIL);
        assert!(f.resolve_blocking(&q, &m).is_none());
        std::fs::remove_file(p).unwrap();
    }
}
