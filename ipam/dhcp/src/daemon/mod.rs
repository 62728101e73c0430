//! `dhcp daemon`: holds the DHCP leases of every container of the node.
//!
//! Started as the reference's is (same flags, same default socket
//! `/run/cni/dhcp.sock`, systemd socket activation too). It listens on a
//! Unix socket only root may use; each plugin call is one connection (see
//! `protocol`), served on a short-lived thread; each lease lives on a thread
//! of its own (see `lease`). SIGTERM/SIGINT stop it cleanly: the socket and
//! pidfile are removed and the leases are kept — on the servers and in the
//! state directory — for the next daemon to resume.

mod dhcp4;
mod event;
mod flags;
mod iface;
mod lease;
mod log;
mod packet;
mod server;
mod store;

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use event::Event;
use flags::{Flags, Parsed};
use lease::{LeaseHandle, Stop};
use log::log;
use store::Store;

/// Connections served at once; more wait in the listen backlog.
const MAX_CONNS: usize = 256;
const CONN_STACK: usize = 256 * 1024;
/// Scales the lease timers (T1, T2, expiry), for tests that want to see a
/// renewal without waiting minutes: e.g. `0.05`. Production leaves it unset.
const TIMER_SCALE_ENV: &str = "CNIRS_DHCP_TIMER_SCALE";

/// What every thread of the daemon shares.
pub struct Ctx {
    pub flags: Flags,
    /// Lease timer scale (1.0 unless [`TIMER_SCALE_ENV`] says otherwise).
    pub scale: f64,
    pub store: Store,
    pub euid: u32,
    leases: Mutex<HashMap<String, Arc<LeaseHandle>>>,
    shutdown: Event,
    conns: AtomicUsize,
}

impl Ctx {
    pub fn table(&self) -> MutexGuard<'_, HashMap<String, Arc<LeaseHandle>>> {
        self.leases.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drop `h` from the table, unless another lease took its key meanwhile.
    pub fn forget(&self, h: &Arc<LeaseHandle>) {
        let key = h.spec.key();
        let mut t = self.table();
        if t.get(&key).is_some_and(|x| Arc::ptr_eq(x, h)) {
            t.remove(&key);
        }
    }
}

/// The daemon's `main`: the exit code (2 for bad flags, as Go's flag package).
pub fn main(args: &[String]) -> i32 {
    let flags = match flags::parse(args) {
        Ok(Parsed::Run(f)) => f,
        Ok(Parsed::Help) => {
            eprint!("{}", flags::USAGE);
            return 0;
        }
        Err(e) => {
            eprint!("{e}\n{}", flags::USAGE);
            return 2;
        }
    };
    // Writes to a client that is gone are errors, not a fatal signal; the
    // stop signals are taken by one thread (all others inherit the mask).
    // SAFETY: no other thread exists yet; plain signal-mask calls.
    let stop_signals = unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    };
    match run(flags, stop_signals) {
        Ok(()) => 0,
        Err(e) => {
            log!("{e}");
            1
        }
    }
}

fn run(flags: Flags, stop_signals: libc::sigset_t) -> Result<(), String> {
    let scale = match std::env::var(TIMER_SCALE_ENV) {
        Err(_) => 1.0,
        Ok(v) => match v.parse::<f64>() {
            Ok(s) if s > 0.0 && s <= 1.0 => s,
            _ => return Err(format!("{TIMER_SCALE_ENV}={v:?}: must be a number in (0, 1]")),
        },
    };
    if let Some(p) = &flags.pidfile {
        if !p.is_absolute() {
            return Err(format!("Error writing pidfile {:?}: path not absolute", p.display()));
        }
        std::fs::write(p, std::process::id().to_string())
            .map_err(|e| format!("Error writing pidfile {:?}: {e}", p.display()))?;
    }
    let result = serve(flags.clone(), scale, stop_signals);
    if let Some(p) = &flags.pidfile {
        let _ = std::fs::remove_file(p);
    }
    result
}

fn serve(flags: Flags, scale: f64, stop_signals: libc::sigset_t) -> Result<(), String> {
    let socket_path = format!("{}{}", flags.hostprefix, flags.socketpath);
    let (listener, ours) = listen(&socket_path)?;
    let state_dir = state_dir(&flags);
    let store =
        Store::open(&state_dir).map_err(|e| format!("state directory {}: {e}", state_dir.display()))?;
    let ctx = Arc::new(Ctx {
        flags,
        scale,
        store,
        // SAFETY: no preconditions.
        euid: unsafe { libc::geteuid() },
        leases: Mutex::new(HashMap::new()),
        shutdown: Event::new().map_err(|e| e.to_string())?,
        conns: AtomicUsize::new(0),
    });
    let c = ctx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut sig = 0;
            // SAFETY: a valid set and out-pointer; the signals are blocked in every thread.
            while unsafe { libc::sigwait(&stop_signals, &mut sig) } != 0 {}
            log!("signal {sig}: shutting down");
            c.shutdown.set();
        })
        .map_err(|e| format!("starting the signal thread: {e}"))?;

    resume(&ctx);
    let how = if ours.is_some() { "listening on" } else { "listening (socket activation) on" };
    log!("{how} {socket_path}, pid {}, leases kept in {}", std::process::id(), state_dir.display());
    accept_loop(&ctx, &listener);

    drop(listener);
    if let Some((path, ino)) = ours {
        // Only our socket: a newer daemon may have replaced it already.
        if std::fs::symlink_metadata(&path).is_ok_and(|m| m.ino() == ino) {
            let _ = std::fs::remove_file(&path);
        }
    }
    stop_all(&ctx);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctx.conns.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_all(&ctx); // anything an ADD in flight started meanwhile
    log!("stopped; leases kept for the next daemon");
    Ok(())
}

/// Stop every lease without releasing it, and wait for their threads.
fn stop_all(ctx: &Ctx) {
    let all: Vec<Arc<LeaseHandle>> = ctx.table().drain().map(|(_, h)| h).collect();
    for h in &all {
        h.stop(Stop::Quiet);
    }
    for h in all {
        h.stop_and_join(Stop::Quiet);
    }
}

/// `<socket dir>/<socket name without extension>.leases` under the host
/// prefix (`/run/cni/dhcp.leases`), unless `-statedir` names one.
fn state_dir(flags: &Flags) -> PathBuf {
    if let Some(d) = &flags.statedir {
        return PathBuf::from(format!("{}{d}", flags.hostprefix));
    }
    let sock = Path::new(&flags.socketpath);
    let stem = sock.file_stem().map_or("dhcp".into(), |s| s.to_string_lossy().into_owned());
    let dir = sock.parent().map_or("/".into(), |p| p.to_string_lossy().into_owned());
    PathBuf::from(format!("{}{}", flags.hostprefix, Path::new(&dir).join(format!("{stem}.leases")).display()))
}

/// The listening socket: systemd's (socket activation), or ours at `path`,
/// mode 0600 in a directory made 0700. Ours comes with its path and inode.
fn listen(path: &str) -> Result<(UnixListener, Option<(PathBuf, u64)>), String> {
    if let Some(l) = activated()? {
        return Ok((l, None));
    }
    let p = Path::new(path);
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| format!("Error getting listener: creating {}: {e}", dir.display()))?;
    }
    if let Ok(m) = std::fs::symlink_metadata(p) {
        if !m.file_type().is_socket() {
            return Err(format!("Error getting listener: {path} exists and is not a socket"));
        }
        match UnixStream::connect(p) {
            Ok(_) => return Err(format!("Error getting listener: another DHCP daemon listens on {path}")),
            // Left by a daemon that was killed: nobody listens, so it can go.
            Err(_) => std::fs::remove_file(p)
                .map_err(|e| format!("Error getting listener: removing stale {path}: {e}"))?,
        }
    }
    // Born 0600: no moment in which others could connect.
    // SAFETY: umask has no preconditions; no other thread creates files now.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(p);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let l = bound.map_err(|e| format!("Error getting listener: {path}: {e}"))?;
    let ino = std::fs::symlink_metadata(p).map(|m| m.ino()).unwrap_or(0);
    Ok((l, Some((p.to_path_buf(), ino))))
}

/// The socket systemd passed (`LISTEN_PID`/`LISTEN_FDS`, fd 3), if any.
fn activated() -> Result<Option<UnixListener>, String> {
    let pid_ok =
        std::env::var("LISTEN_PID").ok().and_then(|p| p.parse::<u32>().ok()) == Some(std::process::id());
    let n = std::env::var("LISTEN_FDS").ok().and_then(|n| n.parse::<u32>().ok()).unwrap_or(0);
    if !pid_ok || n == 0 {
        return Ok(None);
    }
    if n > 1 {
        return Err(format!("Error getting listener: Too many ({n}) FDs passed through socket activation"));
    }
    const FIRST: i32 = 3;
    // SAFETY: fstat on an fd number we were told is ours; plain data out.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(FIRST, &mut st) } < 0 || st.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("Error getting listener: LISTEN_FDS=1 but fd 3 is not a socket".into());
    }
    // SAFETY: fd 3 is the socket systemd handed us, owned from here on.
    unsafe { libc::fcntl(FIRST, libc::F_SETFD, libc::FD_CLOEXEC) };
    Ok(Some(unsafe { UnixListener::from_raw_fd(FIRST) }))
}

/// Take back every saved lease whose interface is still there.
fn resume(ctx: &Arc<Ctx>) {
    for saved in ctx.store.load_all() {
        let key = lease::key(&saved.container_id, &saved.network, &saved.ifname);
        match lease::revive(ctx, &saved) {
            Ok((spec, l, mac)) => {
                let mut table = ctx.table();
                match lease::start(ctx, spec, Some((l, mac))) {
                    Ok(h) => {
                        table.insert(key, h);
                    }
                    Err(e) => log!("resuming {key}: {e}"),
                }
            }
            Err(why) => {
                ctx.store.remove(&key);
                log!("dropping the saved lease of {key}: {why}");
            }
        }
    }
}

/// Counts a connection while it is served.
struct ConnGuard<'a>(&'a AtomicUsize);

impl Drop for ConnGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn accept_loop(ctx: &Arc<Ctx>, listener: &UnixListener) {
    let _ = listener.set_nonblocking(true);
    loop {
        match event::wait(&[(ctx.shutdown.fd(), libc::POLLIN), (listener.as_raw_fd(), libc::POLLIN)], None) {
            Ok(Some(0)) => return,
            Ok(_) => {}
            Err(e) => {
                log!("waiting for connections: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let stream = match listener.accept() {
            Ok((s, _)) => s,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                // Out of descriptors or memory: wait instead of spinning.
                log!("accepting a connection: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        if ctx.conns.fetch_add(1, Ordering::SeqCst) >= MAX_CONNS {
            ctx.conns.fetch_sub(1, Ordering::SeqCst);
            busy(&stream, "the DHCP daemon is serving too many requests at once");
            continue;
        }
        let c = ctx.clone();
        let spawned =
            std::thread::Builder::new().name("conn".into()).stack_size(CONN_STACK).spawn(move || {
                let _count = ConnGuard(&c.conns);
                server::serve(&c, stream);
            });
        if let Err(e) = spawned {
            ctx.conns.fetch_sub(1, Ordering::SeqCst);
            log!("starting a connection thread: {e}");
        }
    }
}

/// Answer code 11 without reading the request (never blocks: a short line
/// always fits the socket buffer of a fresh connection).
fn busy(stream: &UnixStream, why: &str) {
    use std::io::Write;
    let _ = stream.set_nonblocking(true);
    let reply = crate::protocol::Reply::error(&common::CniError::try_again(why));
    let _ = (&*stream).write_all(&crate::protocol::to_line(&reply));
}
