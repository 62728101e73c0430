//! The daemon (`dns-sidecar serve <network>`): one per network, in the netns
//! where the plugin runs, listening on the network's gateway addresses.
//!
//! Threads: per listen address one UDP worker (batched `recvmmsg` /
//! `sendmmsg`) and one TCP acceptor (a short-lived thread per connection of
//! a client of the network, at most [`MAX_TCP_PER_CLIENT`] per client address
//! and [`MAX_TCP`] in all); one forwarder thread; the main thread serves the
//! control socket. The name table is an `Arc` swapped whole under a mutex;
//! workers keep their own clone and look at a generation counter once per
//! batch, so the fast path takes no lock, and a `reload` acknowledged to the
//! plugin is seen by every query received after it.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::ReadyPipe;
use common::lock::FileLock;

use crate::forward::Forwarder;
use crate::sock::{self, Batch};
use crate::state::{NetDir, Records};
use crate::table::{Answer, Table};
use crate::wire::{self, rcode, rtype, Writer, CLASS_ANY, CLASS_IN};

pub const PORT_ENV: &str = "DNS_SIDECAR_PORT";
pub const RESOLV_ENV: &str = "DNS_SIDECAR_RESOLV_CONF";
/// Set by the plugin: the fd on which the daemon reports `ok` or `err …`.
pub const READY_FD_ENV: &str = "DNS_SIDECAR_READY_FD";

/// TTL of our own answers: 0, as dnsmasq (local-ttl) and aardvark-dns, so a
/// removed container's name is gone from every cache at once.
pub const LOCAL_TTL: u32 = 0;
/// TCP connections at once, in all and from one client address.
pub const MAX_TCP: usize = 64;
pub const MAX_TCP_PER_CLIENT: usize = 8;
/// Each query on a TCP connection must arrive whole within this time ...
pub const TCP_IDLE: Duration = Duration::from_secs(3);
/// ... and the connection ends this long after it was accepted, however
/// slowly or quickly the client sends.
pub const TCP_LIFETIME: Duration = Duration::from_secs(10);
const TCP_QUERIES: usize = 64;

pub fn port() -> u16 {
    std::env::var(PORT_ENV).ok().and_then(|p| p.parse().ok()).unwrap_or(53)
}

fn resolv_path() -> PathBuf {
    match std::env::var_os(RESOLV_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from("/etc/resolv.conf"),
    }
}

/// What the server shares between its threads.
pub struct Shared {
    table: Mutex<Arc<Table>>,
    generation: AtomicU64,
    pub fwd: Forwarder,
    /// TCP connections being served: in all, and per client address.
    tcp: Mutex<(usize, HashMap<IpAddr, usize>)>,
}

impl Shared {
    pub fn new(table: Table, fwd: Forwarder) -> Shared {
        Shared {
            table: Mutex::new(Arc::new(table)),
            generation: AtomicU64::new(0),
            fwd,
            tcp: Mutex::new((0, HashMap::new())),
        }
    }

    pub fn set_table(&self, t: Table) {
        let mut cur = self.table.lock().unwrap();
        *cur = Arc::new(t);
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn snapshot(&self) -> (u64, Arc<Table>) {
        let cur = self.table.lock().unwrap();
        (self.generation.load(Ordering::Acquire), cur.clone())
    }

    /// A TCP slot for a connection from `client`, if the bounds allow one.
    fn admit_tcp(self: &Arc<Self>, client: IpAddr) -> Option<TcpSlot> {
        let mut tcp = self.tcp.lock().unwrap();
        let (total, per_client) = &mut *tcp;
        let mine = per_client.entry(client).or_insert(0);
        if *total >= MAX_TCP || *mine >= MAX_TCP_PER_CLIENT {
            if *mine == 0 {
                per_client.remove(&client);
            }
            return None;
        }
        *mine += 1;
        *total += 1;
        Some(TcpSlot { shared: self.clone(), client })
    }
}

/// A TCP connection's place within the bounds, given back when dropped.
struct TcpSlot {
    shared: Arc<Shared>,
    client: IpAddr,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        let mut tcp = self.shared.tcp.lock().unwrap();
        let (total, per_client) = &mut *tcp;
        *total -= 1;
        if let Some(n) = per_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                per_client.remove(&self.client);
            }
        }
    }
}

/// A thread's view of the table, refreshed when the generation moves.
struct View {
    generation: u64,
    table: Arc<Table>,
}

impl View {
    fn new(s: &Shared) -> View {
        let (generation, table) = s.snapshot();
        View { generation, table }
    }
    #[inline]
    fn refresh(&mut self, s: &Shared) {
        if s.generation.load(Ordering::Acquire) != self.generation {
            *self = View::new(s);
        }
    }
}

/// What to do with one incoming message. (The query stays inline: boxing
/// it would allocate on every forwarded query.)
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// The answer is in the output buffer, this long.
    Reply(usize),
    /// Not ours: forward it.
    Forward(wire::Query),
    Drop,
}

/// Answer `msg` from `src` out of `table` if we can. `limit`: the largest
/// answer the transport allows (UDP: the client's size; TCP: 64 KiB).
pub fn answer(table: &Table, msg: &[u8], src: IpAddr, out: &mut [u8], tcp: bool) -> Action {
    let q = match wire::parse_query(msg) {
        Ok(q) => q,
        Err(bad) => return wire::error_reply(msg, bad, out).map_or(Action::Drop, Action::Reply),
    };
    if !table.allows(&src) {
        return Action::Reply(wire::rcode_reply(&q, msg, rcode::REFUSED, false, out));
    }
    if q.qclass != CLASS_IN && q.qclass != CLASS_ANY {
        return Action::Forward(q);
    }
    let limit = if tcp { out.len() } else { q.udp_limit().min(out.len()) };
    let n = match table.lookup(&q.name, q.qtype) {
        Answer::Addrs(a) => {
            let mut w = Writer::reply(&q, msg, out, limit, rcode::NOERROR, true);
            if q.qtype == rtype::A || q.qtype == rtype::ANY {
                for ip in &a.v4 {
                    w.a(ip, LOCAL_TTL);
                }
            }
            if q.qtype == rtype::AAAA || q.qtype == rtype::ANY {
                for ip in &a.v6 {
                    w.aaaa(ip, LOCAL_TTL);
                }
            }
            w.finish()
        }
        Answer::Ptr(target) => {
            let mut w = Writer::reply(&q, msg, out, limit, rcode::NOERROR, true);
            w.ptr(target, LOCAL_TTL);
            w.finish()
        }
        Answer::NoData => Writer::reply(&q, msg, out, limit, rcode::NOERROR, true).finish(),
        Answer::NxDomain => wire::rcode_reply(&q, msg, rcode::NXDOMAIN, true, out),
        Answer::Forward => return Action::Forward(q),
    };
    Action::Reply(n)
}

fn udp_worker(sock: Arc<UdpSocket>, shared: Arc<Shared>) {
    let fd = sock.as_raw_fd();
    let mut batch = Batch::new();
    let mut view = View::new(&shared);
    loop {
        let n = match batch.recv(fd) {
            Ok(n) => n,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        view.refresh(&shared);
        for i in 0..n {
            let (_, from) = batch.received(i);
            let Some(from) = from else { continue };
            let (msg, out) = batch.slot(i);
            let len = match answer(&view.table, msg, from.ip(), out, false) {
                Action::Reply(len) => Some(len),
                Action::Drop => None,
                Action::Forward(q) => {
                    let limit = q.udp_limit();
                    match shared.fwd.cached(&q, msg, out, limit) {
                        Some(len) => Some(len),
                        None => shared.fwd.submit(q, msg, from, &sock, out),
                    }
                }
            };
            if let Some(len) = len {
                batch.queue(i, len);
            }
        }
        batch.flush(fd);
    }
}

fn tcp_acceptor(listener: TcpListener, shared: Arc<Shared>) {
    let mut view = View::new(&shared);
    loop {
        let (stream, peer) = match listener.accept() {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        };
        // Clients outside the network are closed at once, before they take
        // a slot or a thread: no stranger can crowd the containers out.
        view.refresh(&shared);
        if !view.table.allows(&peer.ip()) {
            continue;
        }
        // Over a bound: closed too (one client cannot take every slot).
        let Some(slot) = shared.admit_tcp(peer.ip()) else { continue };
        let s = shared.clone();
        // A failed spawn drops the closure, and the slot with it.
        let _ = std::thread::Builder::new().stack_size(128 << 10).spawn(move || {
            let _ = tcp_conn(stream, peer, &s);
            drop(slot);
        });
    }
}

/// Fill `buf` from `s` by `deadline`, however the bytes trickle in (a
/// socket timeout alone bounds each read, not the whole).
fn read_by(s: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Write all of `buf` to `s` by `deadline` (a client that does not read
/// its answers is not waited for).
fn write_by(s: &mut TcpStream, buf: &[u8], deadline: Instant) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        s.set_write_timeout(Some(left))?;
        match s.write(&buf[done..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Length-prefixed queries on one connection, until closed, a query takes
/// longer than [`TCP_IDLE`] to arrive, [`TCP_QUERIES`] were answered or the
/// connection's [`TCP_LIFETIME`] is over.
fn tcp_conn(mut stream: TcpStream, peer: SocketAddr, shared: &Shared) -> io::Result<()> {
    let _ = stream.set_nodelay(true);
    let end = Instant::now() + TCP_LIFETIME;
    let mut view = View::new(shared);
    let mut out = vec![0u8; 2 + 65535];
    let mut msg = Vec::new();
    for _ in 0..TCP_QUERIES {
        let by = end.min(Instant::now() + TCP_IDLE);
        let mut len = [0u8; 2];
        read_by(&mut stream, &mut len, by)?;
        msg.resize(u16::from_be_bytes(len) as usize, 0);
        read_by(&mut stream, &mut msg, by)?;
        view.refresh(shared);
        let n = match answer(&view.table, &msg, peer.ip(), &mut out[2..], true) {
            Action::Reply(n) => n,
            Action::Drop => return Ok(()),
            Action::Forward(q) => match shared.fwd.resolve_blocking(&q, &msg) {
                Some(resp) if resp.len() <= 65535 => {
                    out[2..2 + resp.len()].copy_from_slice(&resp);
                    resp.len()
                }
                _ => wire::rcode_reply(&q, &msg, rcode::SERVFAIL, false, &mut out[2..]),
            },
        };
        out[..2].copy_from_slice(&(n as u16).to_be_bytes());
        write_by(&mut stream, &out[..2 + n], end)?;
    }
    Ok(())
}

/// The listen addresses that have sockets and threads.
struct Listeners {
    port: u16,
    bound: Vec<IpAddr>,
}

impl Listeners {
    /// Bind and serve every address of `addrs` not served yet. Binds all
    /// sockets before starting any thread, so an error leaves nothing half-done.
    fn ensure(&mut self, addrs: &[IpAddr], shared: &Arc<Shared>) -> io::Result<()> {
        let mut new = Vec::new();
        for ip in addrs.iter().filter(|ip| !self.bound.contains(ip)) {
            let sa = SocketAddr::new(*ip, self.port);
            new.push((*ip, sock::bind_udp(sa)?, sock::bind_tcp(sa)?));
        }
        for (ip, udp, tcp) in new {
            let (s1, s2) = (shared.clone(), shared.clone());
            let udp = Arc::new(udp);
            std::thread::Builder::new()
                .name(format!("udp {ip}"))
                .stack_size(256 << 10)
                .spawn(move || udp_worker(udp, s1))?;
            std::thread::Builder::new()
                .name(format!("tcp {ip}"))
                .stack_size(128 << 10)
                .spawn(move || tcp_acceptor(tcp, s2))?;
            self.bound.push(ip);
        }
        Ok(())
    }
}

/// The daemon's main: returns the exit code.
pub fn serve(network: &str) -> i32 {
    let mut ready = ReadyPipe::from_env(READY_FD_ENV);
    match start(network, &mut ready) {
        Ok(()) => 0,
        Err(e) => {
            ready.say(&format!("err {e}\n"));
            1
        }
    }
}

fn start(network: &str, ready: &mut ReadyPipe) -> io::Result<()> {
    if !common::spec::valid_name(network) {
        return Err(io::Error::other(format!("invalid network name {network:?}")));
    }
    let dir = NetDir::new(network);
    if !dir.exists() {
        return Err(io::Error::other(format!("{} does not exist", dir.path.display())));
    }
    // SAFETY: plain libc calls on our own process.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    raise_fd_limit();
    let Some(life) = FileLock::try_exclusive(dir.daemon_lock_path())? else {
        return Err(io::Error::other(format!("a server for network {network} is already running")));
    };
    let records = dir.load_served()?;
    let listen = records.listen_addrs();
    if listen.is_empty() {
        return Err(io::Error::other("no containers, nothing to listen on"));
    }
    let shared = Arc::new(Shared::new(records.table(), Forwarder::new(resolv_path(), listen.clone())?));
    let mut listeners = Listeners { port: port(), bound: Vec::new() };
    listeners.ensure(&listen, &shared)?;
    let ctl_path = dir.ctl_path();
    let _ = std::fs::remove_file(&ctl_path);
    let ctl = dir.with_ctl_path(|p| UnixListener::bind(p))?;
    std::fs::set_permissions(&ctl_path, std::fs::Permissions::from_mode(0o600))?;
    let pid = format!("{}\n", std::process::id());
    crate::state::write_atomically(&dir.path.join("pid.tmp"), pid.as_bytes(), &dir.pid_path())?;

    let fwd_shared = shared.clone();
    let records_path = dir.records_path();
    std::thread::Builder::new().name("forward".into()).stack_size(256 << 10).spawn(move || {
        // Our state removed behind our back (not by DEL, which stops us
        // first): nothing left to serve.
        fwd_shared.fwd.run(|| records_path.exists())
    })?;
    ready.say("ok\n");
    control_loop(ctl, &dir, &shared, &mut listeners);
    drop(life);
    Ok(())
}

/// Every forwarded query in flight holds a socket: allow as many
/// descriptors as the hard limit does, up to 65536 (the soft limit is
/// often 1024).
fn raise_fd_limit() {
    let mut rl = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit fills the struct; setrlimit reads it.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) == 0 && rl.rlim_cur < rl.rlim_max.min(1 << 16) {
            rl.rlim_cur = rl.rlim_max.min(1 << 16);
            libc::setrlimit(libc::RLIMIT_NOFILE, &rl);
        }
    }
}

fn control_loop(ctl: UnixListener, dir: &NetDir, shared: &Arc<Shared>, listeners: &mut Listeners) {
    for conn in ctl.incoming() {
        let Ok(conn) = conn else { continue };
        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
        let mut line = String::new();
        if BufReader::new(&conn).take(256).read_line(&mut line).is_err() {
            continue;
        }
        let reply = match line.trim() {
            "ping" => "ok\n".to_string(),
            "reload" => match reload(dir, shared, listeners) {
                Ok(n) => format!("ok {n}\n"),
                Err(e) => format!("err {e}\n"),
            },
            "stop" => {
                let _ = (&conn).write_all(b"ok\n");
                std::process::exit(0);
            }
            other => format!("err unknown command {other:?}\n"),
        };
        let _ = (&conn).write_all(reply.as_bytes());
    }
}

/// Re-read the records: new listeners first, then the table, then upstreams.
fn reload(dir: &NetDir, shared: &Arc<Shared>, listeners: &mut Listeners) -> io::Result<usize> {
    let records: Records = dir.load_served()?;
    let listen = records.listen_addrs();
    listeners.ensure(&listen, shared)?;
    let n = records.containers.len();
    shared.set_table(records.table());
    let mut exclude = listeners.bound.clone();
    exclude.extend(listen);
    shared.fwd.reload(Some(exclude));
    drop(records);
    // Parsing the records and building the table left freed memory behind:
    // give it back, so the daemon stays small however often it reloads.
    // SAFETY: plain libc call.
    unsafe { libc::malloc_trim(0) };
    Ok(n)
}

/// Send one control command to the daemon of `dir`; its reply line.
pub fn control(dir: &NetDir, cmd: &str, timeout: Duration) -> io::Result<String> {
    let line = common::daemon::ask(&dir.ctl_path(), cmd, timeout)?;
    if line == "ok" || line.starts_with("ok ") {
        Ok(line)
    } else if let Some(e) = line.strip_prefix("err ") {
        Err(io::Error::other(e.to_string()))
    } else {
        Err(io::Error::other(format!("unexpected control reply {line:?}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::Entry;
    use crate::wire::{build_query, parse_response, Rdata};

    fn table() -> Table {
        let names = ["web".to_string(), "0123456789ab".into()];
        let ips = ["10.1.0.2/24".parse().unwrap(), "fd00:1::2/64".parse().unwrap()];
        Table::build("dns.podman", [Entry { names: &names, ips: &ips }])
    }

    fn ask(name: &str, t: u16, src: &str) -> (Action, Vec<u8>) {
        let m = build_query(7, name, t, None).unwrap();
        let mut out = vec![0u8; 4096];
        let a = answer(&table(), &m, src.parse().unwrap(), &mut out, false);
        (a, out)
    }

    fn reply(name: &str, t: u16, src: &str) -> wire::Response {
        match ask(name, t, src) {
            (Action::Reply(n), out) => parse_response(&out[..n]).unwrap(),
            (a, _) => panic!("{a:?}"),
        }
    }

    #[test]
    fn local_answers() {
        let r = reply("web.dns.podman", rtype::A, "10.1.0.3");
        assert_eq!(r.rcode, rcode::NOERROR);
        assert_eq!(r.answers, vec![(Rdata::A("10.1.0.2".parse().unwrap()), 0)]);
        let r = reply("WEB", rtype::AAAA, "10.1.0.3");
        assert_eq!(r.answers, vec![(Rdata::Aaaa("fd00:1::2".parse().unwrap()), 0)]);
        assert_eq!(reply("web", rtype::ANY, "fd00:1::9").answers.len(), 2);
        let r = reply("2.0.1.10.in-addr.arpa", rtype::PTR, "10.1.0.3");
        assert_eq!(r.answers, vec![(Rdata::Ptr("web.dns.podman".into()), 0)]);
        let r = reply("nope.dns.podman", rtype::A, "10.1.0.3");
        assert_eq!((r.rcode, r.authoritative()), (rcode::NXDOMAIN, true));
        let r = reply("web", 16, "10.1.0.3");
        assert_eq!((r.rcode, r.answers.len()), (rcode::NOERROR, 0));
    }

    #[test]
    fn strangers_are_refused_and_the_rest_forwarded() {
        assert_eq!(reply("web", rtype::A, "10.2.0.3").rcode, rcode::REFUSED);
        assert_eq!(reply("example.com", rtype::A, "192.0.2.1").rcode, rcode::REFUSED);
        assert!(matches!(ask("example.com", rtype::A, "10.1.0.3").0, Action::Forward(_)));
        let mut m = build_query(7, "web", rtype::A, None).unwrap();
        m[2] |= 0x80;
        let mut out = vec![0u8; 512];
        assert!(matches!(answer(&table(), &m, "10.1.0.3".parse().unwrap(), &mut out, false), Action::Drop));
    }
}
