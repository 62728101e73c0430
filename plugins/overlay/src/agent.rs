//! The per-node, per-network agent (`overlay serve <network>`), started by
//! the network's first ADD on the node and stopped by its last DEL, like
//! dns-sidecar's daemon: detached, liveness by flock (`agent.lock`), a
//! control socket, readiness reported on a pipe.
//!
//! While it runs it:
//! - keeps the node registered: `nodes/<node>` under a lease of `leaseTTL`
//!   seconds, renewed every third of it (a lost lease is granted anew);
//! - watches the network's prefix and keeps the VXLAN device's and bridge's
//!   entries exactly equal to etcd's view of the *other live* nodes'
//!   containers. A start (or restart) reconciles from scratch: it reads the
//!   whole prefix and the kernel's entries and fixes the difference. A watch
//!   silent for half the TTL is re-opened after a full resync, so a dead
//!   etcd member is left behind within the TTL. While etcd cannot be read
//!   the entries stay as they are: running containers keep talking;
//! - retries releases that DEL or GC could not get through (`pending.json`);
//! - feeds the names of the other nodes' containers to the local DNS server
//!   (see `dnsfeed`).
//!
//! `stop` (last DEL) revokes the lease — the node leaves every other node's
//! view at once — and the agent exits; `drain` does the same but first
//! gets the pending releases through. `start` (an ADD while it drains)
//! registers it again.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::{self, NotStarted, ReadyPipe};
use common::lock::FileLock;
use common::netlink::rtnl::Rtnl;
use common::{CniError, Result};

use crate::cluster::{self, Keys, NodeRecord, View};
use crate::config::Config;
use crate::dataplane;
use crate::dnsfeed::Feed;
use crate::etcd::{Etcd, EtcdError, EtcdResult, Event};
use crate::state::NetDir;

pub const READY_FD_ENV: &str = "OVERLAY_READY_FD";
const START_TIMEOUT: Duration = Duration::from_secs(20);
const CTL_TIMEOUT: Duration = Duration::from_secs(20);
const STOP_WAIT: Duration = Duration::from_secs(3);

struct Agent {
    conf: Config,
    keys: Keys,
    etcd: Etcd,
    dir: NetDir,
    /// etcd's view and the kernel's entries, changed together.
    state: Mutex<Synced>,
    lease: AtomicI64,
    /// A lease `leave` could not revoke (etcd down): retried while draining.
    stale_lease: AtomicI64,
    /// Between `stop` and `start`: no longer a member, only draining releases.
    draining: AtomicBool,
    /// The last etcd call failed (log transitions only).
    etcd_down: AtomicBool,
}

struct Synced {
    view: View,
    /// The revision `view` was read at: older watch messages are stale.
    revision: i64,
    nl: Rtnl,
    dns: Feed,
}

/// The agent's main: returns the exit code.
pub fn serve(network: &str) -> i32 {
    let mut ready = ReadyPipe::from_env(READY_FD_ENV);
    match start(network, &mut ready) {
        Ok(()) => 0,
        Err(e) => {
            ready.say(&format!("err {} {}\n", e.code, e.msg));
            1
        }
    }
}

fn start(network: &str, ready: &mut ReadyPipe) -> Result<()> {
    if !common::spec::valid_name(network) {
        return Err(CniError::invalid_config(format!("invalid network name {network:?}")));
    }
    let dir = NetDir::new(network);
    // SAFETY: plain libc calls on our own process, before any thread exists.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let Some(life) = FileLock::try_exclusive(dir.agent_lock_path())? else {
        return Err(CniError::internal(format!("an agent for network {network} is already running")));
    };
    let conf: Config = serde_json::from_slice(&std::fs::read(dir.config_path())?)
        .map_err(|e| CniError::internal(format!("{}: {e}", dir.config_path().display())))?;
    let agent = Arc::new(Agent {
        keys: Keys::new(&conf),
        etcd: Etcd::new(&conf.etcd)?,
        dir: dir.clone(),
        state: Mutex::new(Synced {
            view: View::default(),
            revision: 0,
            nl: Rtnl::open()?,
            dns: Feed::new(network),
        }),
        lease: AtomicI64::new(0),
        stale_lease: AtomicI64::new(0),
        draining: AtomicBool::new(false),
        etcd_down: AtomicBool::new(false),
        conf,
    });
    agent.register()?;
    let rev = agent.resync().map_err(|e| e.cni("reading the network from etcd"))?;

    let ctl_path = dir.ctl_path();
    let _ = std::fs::remove_file(&ctl_path);
    let ctl = common::sockaddr::with_unix_path(&ctl_path, |p| UnixListener::bind(p))?;
    std::fs::set_permissions(&ctl_path, std::fs::Permissions::from_mode(0o600))?;
    let tmp = dir.path.join("pid.tmp");
    std::fs::write(&tmp, format!("{}\n", std::process::id()))?;
    std::fs::rename(&tmp, dir.pid_path())?;

    let a = agent.clone();
    std::thread::Builder::new().name("watch".into()).spawn(move || a.watch_loop(rev))?;
    let a = agent.clone();
    std::thread::Builder::new().name("lease".into()).spawn(move || a.lease_loop())?;
    ready.say("ok\n");
    agent.control_loop(ctl);
    drop(life);
    Ok(())
}

impl Agent {
    fn me(&self) -> &str {
        self.conf.node_name()
    }

    fn log(&self, msg: &str) {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        eprintln!("{}.{:03} {msg}", t.as_secs(), t.subsec_millis());
    }

    /// Note whether etcd answered; log only the changes.
    fn etcd_ok<T>(&self, r: &EtcdResult<T>) {
        let down = r.as_ref().is_err_and(EtcdError::is_unreachable);
        if self.etcd_down.swap(down, Ordering::Relaxed) != down {
            match r {
                Err(e) => self.log(&format!("{e}; keeping the entries as they are")),
                Ok(_) => self.log("etcd is reachable again"),
            }
        }
    }

    /// Check the network's shared settings, take a lease, publish this node.
    fn register(&self) -> Result<()> {
        cluster::claim_network(&self.etcd, &self.conf)?;
        let lease = self.etcd.lease_grant(self.conf.lease_ttl).map_err(|e| e.cni("taking an etcd lease"))?;
        let vtep = self.conf.vtep.ok_or_else(|| CniError::internal("no VTEP address resolved"))?;
        let rec = serde_json::to_vec(&NodeRecord { vtep }).expect("serializable");
        self.etcd.put(&self.keys.node(self.me()), &rec, lease).map_err(|e| e.cni("registering the node"))?;
        self.lease.store(lease, Ordering::Relaxed);
        self.draining.store(false, Ordering::Relaxed);
        Ok(())
    }

    /// Read the whole network and make the kernel match it.
    fn resync(&self) -> EtcdResult<i64> {
        let r = self.etcd.range_prefix(self.keys.network(), false);
        self.etcd_ok(&r);
        let (rev, kvs) = r?;
        let mut s = self.state.lock().unwrap();
        s.view = View::from_kvs(&self.keys, &kvs);
        s.revision = rev;
        self.apply(&mut s);
        Ok(rev)
    }

    /// Program the kernel and the DNS feed from the view.
    fn apply(&self, s: &mut Synced) {
        let draining = self.draining.load(Ordering::Relaxed);
        let want = if draining { Default::default() } else { s.view.remote_entries(self.me()) };
        if let Err(e) = dataplane::sync_entries(&mut s.nl, &self.conf, &want) {
            self.log(&format!("programming entries: {e}"));
        }
        // A draining agent's names are gone (`leave` removed the feed, after
        // setting `draining`, under this lock): never write it again.
        if !draining {
            let view = s.view.clone();
            s.dns.update(&view, self.me(), self.conf.subnet.prefix);
        }
    }

    fn watch_loop(&self, mut rev: i64) {
        let idle = Duration::from_millis((self.conf.lease_ttl as u64 * 500).clamp(1000, 10_000));
        loop {
            match self.etcd.watch(self.keys.network(), rev + 1, idle) {
                Ok(mut w) => loop {
                    let msg = match w.next() {
                        Ok(m) if !m.canceled => m,
                        _ => break,
                    };
                    let mut s = self.state.lock().unwrap();
                    if msg.revision <= s.revision {
                        continue; // already in the view (a resync read past it)
                    }
                    for ev in &msg.events {
                        match ev {
                            Event::Put(kv) => s.view.apply(&self.keys, &kv.key, Some(&kv.value)),
                            Event::Delete(key) => s.view.apply(&self.keys, key, None),
                        }
                    }
                    s.revision = msg.revision;
                    rev = msg.revision;
                    self.apply(&mut s);
                },
                Err(e) => self.etcd_ok::<()>(&Err(e)),
            }
            // The stream ended (silence, a member gone, compaction): read
            // everything again and watch from there.
            match self.resync() {
                Ok(r) => rev = r,
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }

    fn lease_loop(&self) {
        let period = Duration::from_millis(self.conf.lease_ttl as u64 * 1000 / 3);
        loop {
            std::thread::sleep(period);
            let left = self.retry_pending();
            if self.draining.load(Ordering::Relaxed) {
                let stale = self.stale_lease.load(Ordering::Relaxed);
                if stale != 0 && self.etcd.lease_revoke(stale).is_ok() {
                    self.stale_lease.store(0, Ordering::Relaxed);
                }
                if !left && self.stale_lease.load(Ordering::Relaxed) == 0 {
                    self.finish();
                }
                continue;
            }
            let r = self.etcd.lease_keepalive(self.lease.load(Ordering::Relaxed));
            self.etcd_ok(&r);
            if let Ok(0) = r {
                // The lease expired (etcd was unreachable too long): the node
                // vanished from the others' view. Register anew.
                self.log("lease expired; registering again");
                if let Err(e) = self.register() {
                    self.log(&format!("registering again: {e}"));
                }
            }
            self.state.lock().unwrap().dns.retry();
        }
    }

    /// Retry pending releases; true while some are left.
    fn retry_pending(&self) -> bool {
        let Ok(Some(_lock)) = self.dir.lock(false) else { return false };
        let pending = self.dir.pending().unwrap_or_default();
        if pending.is_empty() {
            return false;
        }
        let mut left = Vec::new();
        for p in pending {
            let r = cluster::release(&self.etcd, &self.keys, &p.claim, &p.container_id, &p.ifname);
            self.etcd_ok(&r);
            match r {
                Ok(_) => {
                    self.log(&format!("released {} of {} {} (pending)", p.claim.ip, p.container_id, p.ifname))
                }
                Err(_) => left.push(p),
            }
        }
        let _ = self.dir.store_pending(&left);
        !left.is_empty()
    }

    /// Leave the cluster: revoke the lease (the node key goes with it).
    fn leave(&self) {
        self.draining.store(true, Ordering::Relaxed);
        let lease = self.lease.swap(0, Ordering::Relaxed);
        if lease != 0 && self.etcd.lease_revoke(lease).is_err() {
            // Retried while draining; else it expires within the TTL.
            self.stale_lease.store(lease, Ordering::Relaxed);
        }
        let mut s = self.state.lock().unwrap();
        s.dns.remove();
    }

    /// Exit once drained; the state directory goes if nothing is left in it
    /// (taken under the network lock: no plugin waits on us then).
    fn finish(&self) -> ! {
        if let Ok(Some(_lock)) = self.dir.lock(false) {
            let attached = self.dir.attachments().map(|a| !a.is_empty()).unwrap_or(true);
            let pending = self.dir.pending().map(|p| !p.is_empty()).unwrap_or(true);
            if !attached && !pending {
                let _ = self.dir.remove();
            }
        }
        std::process::exit(0)
    }

    fn control_loop(&self, ctl: UnixListener) {
        for conn in ctl.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
            let mut line = String::new();
            if BufReader::new(&conn).take(256).read_line(&mut line).is_err() {
                continue;
            }
            let reply = match line.trim() {
                "ping" if self.draining.load(Ordering::Relaxed) => "ok draining\n".to_string(),
                "ping" => "ok\n".to_string(),
                "start" => match self.rejoin() {
                    Ok(()) => "ok\n".to_string(),
                    Err(e) => format!("err {} {}\n", e.code, e.msg),
                },
                "sync" => match self.resync() {
                    Ok(rev) => format!("ok {rev}\n"),
                    Err(e) => format!("err 11 {e}\n"),
                },
                // The last DEL, holding the network lock: leave at once,
                // without touching the lock.
                "stop" => {
                    self.leave();
                    let _ = (&conn).write_all(b"ok\n");
                    std::process::exit(0)
                }
                // The last DEL, with releases still pending: leave, keep
                // retrying them, exit when through (see lease_loop).
                "drain" => {
                    self.leave();
                    "ok draining\n".to_string()
                }
                other => format!("err 999 unknown command {other:?}\n"),
            };
            let _ = (&conn).write_all(reply.as_bytes());
        }
    }

    /// `start`: an ADD arrived while draining — become a member again.
    fn rejoin(&self) -> Result<()> {
        if !self.draining.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.register()?;
        self.stale_lease.store(0, Ordering::Relaxed); // expires by itself
        self.resync().map_err(|e| e.cni("reading the network from etcd"))?;
        Ok(())
    }
}

// ----- the plugin's side -------------------------------------------------------

/// Send one control command; the agent's reply, or its error as a CNI error
/// (`err <code> <msg>`). Connection failures are `io::Error`s.
fn control(dir: &NetDir, cmd: &str, timeout: Duration) -> io::Result<Result<String>> {
    Ok(parse_reply(&daemon::ask(&dir.ctl_path(), cmd, timeout)?))
}

fn parse_reply(line: &str) -> Result<String> {
    if line == "ok" || line.starts_with("ok ") {
        return Ok(line.to_string());
    }
    let rest = line.strip_prefix("err ").unwrap_or(line);
    let (code, msg) = match rest.split_once(' ') {
        Some((c, m)) if c.parse::<u32>().is_ok() => (c.parse().unwrap(), m),
        _ => (999, rest),
    };
    let msg = if msg.is_empty() { "the overlay agent exited without a word" } else { msg };
    Err(CniError::new(code, msg.to_string()))
}

/// Make sure the network's agent runs on this node and is a member.
pub fn ensure_running(dir: &NetDir) -> Result<()> {
    if dir.agent_running() {
        match control(dir, "start", CTL_TIMEOUT) {
            Ok(r) => return r.map(drop),
            Err(_) => stop(dir, false), // hung or half-dead: replace it
        }
    }
    spawn(dir)
}

/// Is the agent alive and a member?
pub fn is_member(dir: &NetDir) -> bool {
    dir.agent_running() && matches!(control(dir, "ping", CTL_TIMEOUT), Ok(Ok(r)) if r == "ok")
}

/// Start the agent (see `common::daemon`; stderr to `agent.log`) and wait
/// until it is registered and synced.
fn spawn(dir: &NetDir) -> Result<()> {
    let exe =
        std::env::current_exe().map_err(|e| CniError::internal(format!("finding our own binary: {e}")))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.path.join("agent.log"))
        .map_err(|e| CniError::io(format!("opening the agent log: {e}")))?;
    daemon::start(&exe, &dir.network, READY_FD_ENV, log.into(), START_TIMEOUT).map_err(|e| {
        let e = match e {
            NotStarted::Spawn(e) => {
                CniError::internal(format!("starting the overlay agent {}: {e}", exe.display()))
            }
            NotStarted::Said(line) => {
                parse_reply(&line).err().unwrap_or_else(|| CniError::internal("agent exited"))
            }
            NotStarted::Silent(e) => CniError::try_again(format!("the overlay agent did not get ready: {e}")),
        };
        e.context(format!("overlay agent of network {}", dir.network))
    })
}

/// Ask the agent to leave: with `drain`, it keeps retrying pending
/// releases and exits when they are through; otherwise it exits now and
/// this returns once it is gone. A hung agent is ended by SIGTERM, then
/// SIGKILL (by pidfile, checked against /proc/<pid>/cmdline).
pub fn stop(dir: &NetDir, drain: bool) {
    if !dir.agent_running() {
        return;
    }
    let cmd = if drain { "drain" } else { "stop" };
    match control(dir, cmd, Duration::from_secs(5)) {
        Ok(Ok(_)) if drain => return,
        Ok(Ok(_)) if daemon::wait_gone(|| dir.agent_running(), STOP_WAIT) => return,
        _ => {}
    }
    daemon::end(dir.pid(), &dir.network, || dir.agent_running(), STOP_WAIT);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_carry_the_cni_code() {
        assert_eq!(parse_reply("ok").unwrap(), "ok");
        assert_eq!(parse_reply("ok draining").unwrap(), "ok draining");
        let e = parse_reply("err 11 etcd is unavailable").unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (11, "etcd is unavailable"));
        assert_eq!(parse_reply("err weird").unwrap_err().code, 999);
        assert_eq!(parse_reply("").unwrap_err().code, 999);
    }
}
