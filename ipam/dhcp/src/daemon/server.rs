//! One connection: a request from the plugin, answered from the lease table.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use common::spec::CniResult;
use common::{CniError, Result};

use super::event;
use super::iface;
use super::lease::{self, LeaseHandle, Phase, Spec, Stop, MAX_LEASES};
use super::log::log;
use super::Ctx;
use crate::protocol::{self, Reply, Request};

/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// The connecting process's uid (`SO_PEERCRED`).
fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    // SAFETY: ucred is plain data; zero is valid.
    let mut cred: libc::ucred = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: a valid fd and out-pointer of the stated length.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            &mut cred as *mut _ as *mut libc::c_void,
            &mut len,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Serve one connection to its end. Never panics on what a client sends.
pub fn serve(ctx: &Arc<Ctx>, stream: UnixStream) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let reply = match protocol::read_line(&stream, protocol::MAX_REQUEST) {
        Ok(None) => None,
        Err(e) => Some(Reply::error(&CniError::decode(format!("reading the request: {e}")))),
        Ok(Some(line)) => match peer_uid(&stream) {
            // Root, or whoever runs the daemon, may use it; the socket's mode
            // (0600) says the same, this holds also for a socket made by systemd.
            Ok(uid) if uid == 0 || uid == ctx.euid => handle(ctx, &stream, &line),
            Ok(uid) => Some(Reply::error(&CniError::invalid_env(format!(
                "permission denied: uid {uid} may not use the DHCP daemon (root only)"
            )))),
            Err(e) => Some(Reply::error(&CniError::io(format!("cannot identify the client: {e}")))),
        },
    };
    if let Some(reply) = reply {
        // A client that went away cannot be told; SIGPIPE is ignored.
        let _ = (&stream).write_all(&protocol::to_line(&reply));
    }
    close_gently(stream);
}

/// Read what the client still sends (the rest of an oversized request)
/// until it closes, briefly: a Unix socket closed with unread data resets
/// the connection, and the client would read ECONNRESET, not our reply.
fn close_gently(stream: UnixStream) {
    use std::io::Read;
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 8192];
    let mut left = protocol::MAX_REPLY;
    while left > 0 {
        match (&stream).read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

/// The reply to the request `line`; None when the client is gone.
fn handle(ctx: &Arc<Ctx>, stream: &UnixStream, line: &[u8]) -> Option<Reply> {
    let req: Request = match serde_json::from_slice(line) {
        Ok(r) => r,
        Err(e) => return Some(Reply::error(&CniError::decode(format!("unreadable request: {e}")))),
    };
    if req.version != protocol::VERSION {
        return Some(Reply::error(&CniError::incompatible_version(format!(
            "the DHCP daemon speaks protocol version {}, the plugin {}: run the daemon of the same release",
            protocol::VERSION,
            req.version
        ))));
    }
    let res = match req.command.as_str() {
        "ADD" => return add(ctx, stream, &req),
        "DEL" => del(ctx, &req).map(|_| Reply::ok()),
        "CHECK" => check(ctx, &req).map(Reply::result),
        "GC" => gc(ctx, &req).map(|_| Reply::ok()),
        "STATUS" => Ok(Reply::ok()),
        other => Err(CniError::invalid_env(format!("unknown command {other:?}"))),
    };
    Some(res.unwrap_or_else(|e| Reply::error(&e)))
}

fn attachment(req: &Request) -> Result<()> {
    if req.container_id.is_empty() || req.ifname.is_empty() || req.network.is_empty() {
        return Err(CniError::invalid_env("the request needs containerID, ifname and network"));
    }
    Ok(())
}

/// Acquire a lease (or hand back the one held), waiting for the exchange
/// while watching the client: if it hangs up, the lease is given back.
fn add(ctx: &Arc<Ctx>, stream: &UnixStream, req: &Request) -> Option<Reply> {
    let err = |e: CniError| Some(Reply::error(&e));
    if let Err(e) = attachment(req) {
        return err(e);
    }
    if ctx.shutdown.is_set() {
        return err(CniError::try_again("the DHCP daemon is shutting down"));
    }
    if !req.netns.starts_with('/') {
        return err(CniError::invalid_env(format!("netns {:?} is not an absolute path", req.netns)));
    }
    let path = format!("{}{}", ctx.flags.hostprefix, req.netns);
    let netns_id = match iface::netns_id(&path) {
        Ok(id) => id,
        Err(e) => {
            return err(CniError::invalid_netns(format!("the DHCP daemon cannot use netns {path}: {e}")))
        }
    };
    let spec = Spec {
        container_id: req.container_id.clone(),
        network: req.network.clone(),
        ifname: req.ifname.clone(),
        netns: req.netns.clone(),
        netns_id,
        request: req.request.clone(),
        provide: req.provide.clone(),
        priority: req.priority,
    };
    let key = spec.key();
    let mut replaced = None;
    let h = {
        let mut table = ctx.table();
        if let Some(old) = table.get(&key) {
            match old.phase() {
                Phase::Acquiring => {
                    return err(CniError::try_again("an ADD of this attachment is already acquiring a lease"))
                }
                // Held already (an ADD repeated): the same lease, as the reference answers.
                Phase::Bound(l) if old.spec.netns_id == netns_id => {
                    return Some(Reply::result(l.result(req.priority)))
                }
                // Lost, or from a netns that is gone: start afresh.
                _ => replaced = table.remove(&key),
            }
        }
        if table.len() >= MAX_LEASES {
            return err(CniError::try_again(format!("the DHCP daemon holds {MAX_LEASES} leases, its limit")));
        }
        match lease::start(ctx, spec, None) {
            Ok(h) => {
                table.insert(key, h.clone());
                h
            }
            Err(e) => return err(CniError::internal(format!("starting the lease: {e}"))),
        }
    };
    if let Some(old) = replaced {
        old.stop_and_join(Stop::Release);
    }
    log!("{}: acquiring a lease on {} in {}", h.spec.label(), h.spec.ifname, path);
    wait_settled(ctx, stream, &h)?;
    match h.phase() {
        Phase::Bound(l) => {
            let reply = Reply::result(l.result(req.priority));
            if (&*stream).write_all(&protocol::to_line(&reply)).is_err() {
                give_back(ctx, &h, "its ADD's caller is gone");
            }
            None
        }
        Phase::Failed(e) => err(e),
        Phase::Lost(m) => err(CniError::internal(m)),
        Phase::Acquiring => err(CniError::internal("the lease is still being acquired")),
    }
}

/// Wait for the acquisition, or for the client to hang up (then the lease
/// is given back and there is nobody to answer: None).
fn wait_settled(ctx: &Arc<Ctx>, stream: &UnixStream, h: &Arc<LeaseHandle>) -> Option<()> {
    loop {
        let ready =
            event::wait(&[(h.settled.fd(), libc::POLLIN), (stream.as_raw_fd(), libc::POLLRDHUP)], None);
        match ready {
            Ok(Some(0)) => return Some(()),
            Ok(Some(_)) => {
                give_back(ctx, h, "its ADD's caller hung up");
                return None;
            }
            Ok(None) => continue,
            Err(_) => return Some(()),
        }
    }
}

/// Release a lease nobody will use.
fn give_back(ctx: &Arc<Ctx>, h: &Arc<LeaseHandle>, why: &str) {
    log!("{}: {why}; giving the lease back", h.spec.label());
    ctx.forget(h);
    h.stop_and_join(Stop::Release);
}

fn del(ctx: &Arc<Ctx>, req: &Request) -> Result<()> {
    attachment(req)?;
    let key = lease::key(&req.container_id, &req.network, &req.ifname);
    let h = ctx.table().remove(&key);
    match h {
        Some(h) => h.stop_and_join(Stop::Release),
        None => ctx.store.remove(&key), // a lost lease may have left nothing else
    }
    Ok(())
}

fn check(ctx: &Arc<Ctx>, req: &Request) -> Result<CniResult> {
    attachment(req)?;
    let key = lease::key(&req.container_id, &req.network, &req.ifname);
    let h = ctx.table().get(&key).cloned();
    match h.map(|h| h.phase()) {
        Some(Phase::Bound(l)) => Ok(l.result(req.priority)),
        Some(Phase::Lost(m)) => Err(CniError::internal(m)),
        Some(Phase::Acquiring) => Err(CniError::try_again("the lease is still being acquired")),
        Some(Phase::Failed(e)) => Err(e),
        None => Err(CniError::internal(format!(
            "the DHCP daemon holds no lease for container {} interface {} on network {}",
            req.container_id, req.ifname, req.network
        ))),
    }
}

/// Release the network's leases whose attachment the runtime no longer has.
fn gc(ctx: &Arc<Ctx>, req: &Request) -> Result<()> {
    if req.network.is_empty() {
        return Err(CniError::invalid_env("GC needs the network"));
    }
    let valid = |s: &Spec| {
        req.valid_attachments.iter().any(|a| a.container_id == s.container_id && a.ifname == s.ifname)
    };
    let stale: Vec<Arc<LeaseHandle>> = {
        let mut table = ctx.table();
        let keys: Vec<String> = table
            .iter()
            .filter(|(_, h)| h.spec.network == req.network && !valid(&h.spec))
            .map(|(k, _)| k.clone())
            .collect();
        keys.iter().filter_map(|k| table.remove(k)).collect()
    };
    for h in stale {
        log!("{}: not a valid attachment any more (GC)", h.spec.label());
        h.stop_and_join(Stop::Release);
    }
    Ok(())
}
