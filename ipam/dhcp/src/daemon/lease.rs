//! One lease's life, on a thread of its own: acquire (or resume after a
//! daemon restart), then sleep until T1; RENEWING until T2, REBINDING until
//! the lease expires; release on DEL. A lease that is refused or expires is
//! asked for once more (the same address); failing that, the interface is
//! set down, as the reference does, since its address is no longer ours.
//! A lease whose netns or interface disappeared is forgotten.
//!
//! Why a thread per lease: each lease is a small sequential state machine
//! that sleeps almost all the time and blocks only in its own exchanges, so
//! a thread (256 KiB of reserved stack, a few pages resident) keeps it
//! readable, and one slow server or interface never delays another lease.
//! The daemon caps leases at [`MAX_LEASES`].

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::CniError;

use super::dhcp4::{Ack, Client, Failure, Lease};
use super::event::Event;
use super::iface::{self, NetnsId, Place, Unreachable};
use super::log::log;
use super::store::{self, Saved};
use super::Ctx;
use crate::protocol::Provided;

pub const MAX_LEASES: usize = 4096;
const STACK: usize = 256 * 1024;

/// The attachment a lease belongs to, and how it asks.
#[derive(Clone, Debug, PartialEq)]
pub struct Spec {
    pub container_id: String,
    pub network: String,
    pub ifname: String,
    pub netns: String,
    pub netns_id: NetnsId,
    pub request: Vec<u8>,
    pub provide: Vec<Provided>,
    pub priority: u32,
}

impl Spec {
    /// One lease per attachment: the reference's client id, uncut.
    pub fn key(&self) -> String {
        key(&self.container_id, &self.network, &self.ifname)
    }

    /// A shortened key for log lines (container IDs may be very long).
    pub fn label(&self) -> String {
        let id: String = self.container_id.chars().take(16).collect();
        format!("{id}/{}/{}", self.network, self.ifname)
    }
}

pub fn key(container_id: &str, network: &str, ifname: &str) -> String {
    format!("{container_id}/{network}/{ifname}")
}

/// Where a lease is in its life.
#[derive(Clone, Debug)]
pub enum Phase {
    Acquiring,
    Bound(Lease),
    /// Refused or expired, and not won back; the interface was set down.
    Lost(String),
    /// The first acquisition failed (the ADD's error).
    Failed(CniError),
}

/// How a lease is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Stop {
    /// DEL (or GC, or the ADD's caller vanished): release it.
    Release = 1,
    /// The daemon shuts down: keep it (on the server and on disk).
    Quiet = 2,
}

/// A lease as the rest of the daemon sees it.
pub struct LeaseHandle {
    pub spec: Spec,
    phase: Mutex<Phase>,
    /// Set when the first acquisition ends, either way.
    pub settled: Event,
    stop: Event,
    stop_how: AtomicU8,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means a thread panicked while holding it; with
    // panic=abort that never happens, and the data is still consistent.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl LeaseHandle {
    pub fn phase(&self) -> Phase {
        lock(&self.phase).clone()
    }

    fn set_phase(&self, p: Phase) {
        *lock(&self.phase) = p;
    }

    /// Ask the thread to end; the first request decides how.
    pub fn stop(&self, how: Stop) {
        let _ = self.stop_how.compare_exchange(0, how as u8, Ordering::SeqCst, Ordering::SeqCst);
        self.stop.set();
    }

    fn stopped_how(&self) -> Stop {
        if self.stop_how.load(Ordering::SeqCst) == Stop::Quiet as u8 {
            Stop::Quiet
        } else {
            Stop::Release
        }
    }

    /// Sleep for `d` unless stopped: how, if stopped.
    fn sleep(&self, d: Duration) -> Option<Stop> {
        self.stop.sleep(d).then(|| self.stopped_how())
    }

    /// Stop it and wait for its thread to end (a release is one packet).
    pub fn stop_and_join(&self, how: Stop) {
        self.stop(how);
        if let Some(t) = lock(&self.thread).take() {
            let _ = t.join();
        }
    }
}

/// Start a lease's thread: acquiring, or resuming `resumed` (a saved lease
/// and its link's MAC). The caller has put the handle in the table.
pub fn start(
    ctx: &Arc<Ctx>,
    spec: Spec,
    resumed: Option<(Lease, [u8; 6])>,
) -> std::io::Result<Arc<LeaseHandle>> {
    let phase = match &resumed {
        Some((lease, _)) => Phase::Bound(lease.clone()),
        None => Phase::Acquiring,
    };
    let h = Arc::new(LeaseHandle {
        spec,
        phase: Mutex::new(phase),
        settled: Event::new()?,
        stop: Event::new()?,
        stop_how: AtomicU8::new(0),
        thread: Mutex::new(None),
    });
    if resumed.is_some() {
        h.settled.set();
    }
    let (ctx2, h2) = (ctx.clone(), h.clone());
    let t = std::thread::Builder::new()
        .name("lease".into())
        .stack_size(STACK)
        .spawn(move || run(&ctx2, &h2, resumed))?;
    *lock(&h.thread) = Some(t);
    Ok(h)
}

/// What a running lease needs besides its handle.
struct Bound {
    lease: Lease,
    mac: [u8; 6],
}

fn run(ctx: &Ctx, h: &Arc<LeaseHandle>, resumed: Option<(Lease, [u8; 6])>) {
    let label = h.spec.label();
    let mut b = match resumed {
        Some((lease, mac)) => {
            log!("{label}: resumed lease {}/{} from {}", lease.ip, lease.prefix, ctx.store.dir().display());
            Bound { lease, mac }
        }
        None => match acquire(ctx, h, None) {
            Ok(b) => {
                save(ctx, h, &b);
                let expires = b.lease.lease_secs;
                log!(
                    "{label}: lease acquired: {}/{} from {}, expires in {expires}s",
                    b.lease.ip,
                    b.lease.prefix,
                    b.lease.server
                );
                h.set_phase(Phase::Bound(b.lease.clone()));
                h.settled.set();
                b
            }
            Err(e) => {
                log!("{label}: {}", e.msg);
                h.set_phase(Phase::Failed(e));
                h.settled.set();
                ctx.forget(h);
                return;
            }
        },
    };
    match maintain(ctx, h, &mut b) {
        End::Stopped(Stop::Release) => {
            release(ctx, h, &b);
            ctx.store.remove(&h.spec.key());
        }
        End::Stopped(Stop::Quiet) | End::Lost => {}
        End::Gone(why) => {
            log!("{label}: {why}; the lease is no longer maintained");
            ctx.store.remove(&h.spec.key());
            ctx.forget(h);
        }
    }
}

/// How maintenance ended.
enum End {
    Stopped(Stop),
    /// The lease was lost (and the thread then stopped): nothing to release.
    Lost,
    /// The netns or interface is gone.
    Gone(String),
}

/// The netns path as the daemon sees it (`-hostprefix` in front).
fn netns_path(ctx: &Ctx, h: &LeaseHandle) -> String {
    format!("{}{}", ctx.flags.hostprefix, h.spec.netns)
}

fn place<'a>(path: &'a str, h: &'a LeaseHandle, mac: Option<[u8; 6]>) -> Place<'a> {
    Place { path, netns_id: h.spec.netns_id, ifname: &h.spec.ifname, mac }
}

/// Run `f` with the lease's interface opened (set up first when `set_up`).
fn with_wire<T>(
    ctx: &Ctx,
    h: &LeaseHandle,
    mac: Option<[u8; 6]>,
    set_up: bool,
    f: impl FnOnce(&mut iface::PacketWire, &Client) -> T,
) -> Result<T, Unreachable> {
    let path = netns_path(ctx, h);
    let mut wire = iface::open(&place(&path, h, mac), set_up, &h.stop)?;
    let client = Client {
        mac: wire.mac,
        client_id: super::dhcp4::client_id(&h.spec.container_id, &h.spec.network, &h.spec.ifname),
        request: h.spec.request.clone(),
        provide: h.spec.provide.clone(),
        broadcast: ctx.flags.broadcast,
        timeout: ctx.flags.timeout,
    };
    Ok(f(&mut wire, &client))
}

fn interface_state(ctx: &Ctx, h: &LeaseHandle, mac: [u8; 6]) -> Result<(), Unreachable> {
    iface::exists(&place(&netns_path(ctx, h), h, Some(mac)))
}

/// The delay before retry `n` (0-based) of an acquisition, as the reference
/// backs off: 2 s four times, then 4 s doubling up to `-resendmax`, each ±1 s.
fn backoff(n: u32, max: Duration) -> Duration {
    let base = if n < 4 {
        Duration::from_secs(2)
    } else {
        let doubled = Duration::from_secs(4).saturating_mul(1u32 << (n - 4).min(16));
        doubled.min(max.max(Duration::from_secs(4)))
    };
    let mut r = [0u8; 2];
    common::random_bytes(&mut r);
    let jitter_ms = u64::from(u16::from_ne_bytes(r) % 2001); // 0..=2000
    (base + Duration::from_millis(jitter_ms)).saturating_sub(Duration::from_secs(1))
}

/// INIT: get a lease, retrying until `-resendtimeout`. `want`: the address
/// we would like (after losing it).
fn acquire(ctx: &Ctx, h: &LeaseHandle, want: Option<Ipv4Addr>) -> Result<Bound, CniError> {
    let label = h.spec.label();
    let give_up = Instant::now() + ctx.flags.resendtimeout;
    let mut last = String::new();
    for n in 0u32.. {
        let got = with_wire(ctx, h, None, true, |wire, client| (client.acquire(wire, want), wire.mac));
        match got {
            Ok((Ok(ack), mac)) => match Lease::from_ack(ack.clone(), SystemTime::now()) {
                Ok(lease) => return Ok(Bound { lease, mac }),
                Err(why) => {
                    // Not usable: give it back at once, as the reference does.
                    let _ = with_wire(ctx, h, None, false, |wire, client| client.release_ack(wire, &ack));
                    return Err(CniError::internal(format!("DHCP lease on {}: {why}", h.spec.ifname)));
                }
            },
            Ok((Err(Failure::Stopped), _)) => return acquire_stopped(h),
            Ok((Err(f), _)) => last = f.to_string(),
            Err(Unreachable::Gone(why)) => {
                return Err(CniError::internal(format!(
                    "{why} (the dhcp IPAM runs after the main plugin has made the interface)"
                )))
            }
            Err(Unreachable::Failed(why)) => last = why,
        }
        let delay = backoff(n, ctx.flags.resendmax);
        if Instant::now() + delay >= give_up {
            break;
        }
        log!("{label}: {last}; trying again in {:.1}s", delay.as_secs_f64());
        if h.sleep(delay).is_some() {
            return acquire_stopped(h);
        }
    }
    Err(CniError::try_again(format!(
        "no DHCP lease on {} in netns {} within {:?} (-resendtimeout): {last}",
        h.spec.ifname, h.spec.netns, ctx.flags.resendtimeout
    )))
}

fn acquire_stopped(h: &LeaseHandle) -> Result<Bound, CniError> {
    Err(CniError::try_again(match h.stopped_how() {
        Stop::Quiet => "the DHCP daemon is shutting down",
        Stop::Release => "the attachment was deleted while its lease was being acquired",
    }))
}

/// BOUND → RENEWING → REBINDING, until stopped, lost or gone.
fn maintain(ctx: &Ctx, h: &LeaseHandle, b: &mut Bound) -> End {
    let label = h.spec.label();
    loop {
        let t = b.lease.timers(ctx.scale);
        let now = SystemTime::now();
        if now < t.renew {
            if let Some(how) = h.sleep(t.renew.duration_since(now).unwrap_or_default()) {
                return End::Stopped(how);
            }
            continue;
        }
        if let Err(Unreachable::Gone(why)) = interface_state(ctx, h, b.mac) {
            return End::Gone(why);
        }
        let (rebinding, until) = match (now < t.rebind, now < t.expire) {
            (true, _) => (false, t.rebind),
            (false, true) => (true, t.expire),
            (false, false) => match win_back(ctx, h, b, "the lease expired") {
                Some(end) => return end,
                None => continue,
            },
        };
        let got =
            with_wire(ctx, h, Some(b.mac), false, |wire, client| client.extend(wire, &b.lease, rebinding));
        let failure = match got {
            Ok(Ok(ack)) => match Lease::from_ack(ack, SystemTime::now()) {
                Ok(lease) if lease.ip == b.lease.ip => {
                    let what = if rebinding { "rebound" } else { "renewed" };
                    log!("{label}: lease {what}: {}, expires in {}s", lease.ip, lease.lease_secs);
                    b.lease = lease;
                    h.set_phase(Phase::Bound(b.lease.clone()));
                    save(ctx, h, b);
                    continue;
                }
                Ok(other) => format!("the server answered with another address ({})", other.ip),
                Err(why) => why,
            },
            Ok(Err(Failure::Stopped)) => return End::Stopped(h.stopped_how()),
            Ok(Err(Failure::Nak(m))) => match win_back(ctx, h, b, &Failure::Nak(m).to_string()) {
                Some(end) => return end,
                None => continue,
            },
            Ok(Err(f)) => f.to_string(),
            Err(Unreachable::Gone(why)) => return End::Gone(why),
            Err(Unreachable::Failed(why)) => why,
        };
        // RFC 2131 4.4.5: wait half the time left, at least 60 s (scaled).
        let left = until.duration_since(SystemTime::now()).unwrap_or_default();
        let floor = Duration::from_secs(60).mul_f64(ctx.scale);
        let wait = (left / 2).max(floor).min(left).max(Duration::from_millis(100));
        let state = if rebinding { "rebinding" } else { "renewing" };
        log!("{label}: {state}: {failure}; trying again in {:.1}s", wait.as_secs_f64());
        if let Some(how) = h.sleep(wait) {
            return End::Stopped(how);
        }
    }
}

/// The lease was refused or ran out: ask for the same address once more.
/// `None` when won back; otherwise how maintenance ends.
fn win_back(ctx: &Ctx, h: &LeaseHandle, b: &mut Bound, why: &str) -> Option<End> {
    let label = h.spec.label();
    let old = b.lease.ip;
    log!("{label}: {why}; asking for {old} again");
    match acquire(ctx, h, Some(old)) {
        Ok(won) if won.lease.ip == old && won.mac == b.mac => {
            log!("{label}: lease won back: {old}, expires in {}s", won.lease.lease_secs);
            *b = won;
            h.set_phase(Phase::Bound(b.lease.clone()));
            save(ctx, h, b);
            return None;
        }
        Ok(other) => {
            let _ =
                with_wire(ctx, h, Some(other.mac), false, |wire, client| client.release(wire, &other.lease));
        }
        Err(_) if h.stop.is_set() => return Some(End::Stopped(h.stopped_how())),
        Err(_) => {}
    }
    // The address is no longer ours: take the interface down, as the reference does.
    match iface::set_down(&place(&netns_path(ctx, h), h, Some(b.mac))) {
        Err(Unreachable::Gone(why)) => return Some(End::Gone(why)),
        Err(Unreachable::Failed(e)) => log!("{label}: {e}"),
        Ok(()) => {}
    }
    let msg = format!(
        "the DHCP lease of {old} was lost ({why}) and could not be won back; {} was set down",
        h.spec.ifname
    );
    log!("{label}: {msg}");
    h.set_phase(Phase::Lost(msg));
    ctx.store.remove(&h.spec.key());
    // Nothing left to maintain or release: wait for DEL (or shutdown).
    while h.sleep(Duration::from_secs(3600)).is_none() {}
    Some(End::Lost)
}

fn release(ctx: &Ctx, h: &LeaseHandle, b: &Bound) {
    let label = h.spec.label();
    let ip = b.lease.ip;
    match with_wire(ctx, h, Some(b.mac), false, |wire, client| client.release(wire, &b.lease)) {
        Ok(Ok(())) => log!("{label}: lease of {ip} released"),
        Ok(Err(e)) => log!("{label}: sending DHCPRELEASE for {ip}: {e}"),
        Err(e) => log!(
            "{label}: cannot send DHCPRELEASE for {ip} ({e}); the server reclaims it when the lease expires"
        ),
    }
}

fn save(ctx: &Ctx, h: &LeaseHandle, b: &Bound) {
    let s = &h.spec;
    let saved = Saved {
        container_id: s.container_id.clone(),
        network: s.network.clone(),
        ifname: s.ifname.clone(),
        netns: s.netns.clone(),
        netns_dev: s.netns_id.0,
        netns_ino: s.netns_id.1,
        mac: b.mac,
        request: s.request.clone(),
        provide: s.provide.clone(),
        priority: s.priority,
        ack: store::to_hex(&b.lease.ack.bytes),
        ack_src_ip: b.lease.ack.src_ip,
        ack_src_mac: b.lease.ack.src_mac,
        bound_at: b.lease.bound_at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    };
    if let Err(e) = ctx.store.save(&s.key(), &saved) {
        log!(
            "{}: saving the lease in {}: {e} (it will not survive a daemon restart)",
            s.label(),
            ctx.store.dir().display()
        );
    }
}

/// A saved lease back as a spec and a lease, when its interface is still
/// there (same netns, same link).
pub fn revive(ctx: &Ctx, saved: &Saved) -> Result<(Spec, Lease, [u8; 6]), String> {
    let spec = Spec {
        container_id: saved.container_id.clone(),
        network: saved.network.clone(),
        ifname: saved.ifname.clone(),
        netns: saved.netns.clone(),
        netns_id: (saved.netns_dev, saved.netns_ino),
        request: saved.request.clone(),
        provide: saved.provide.clone(),
        priority: saved.priority,
    };
    let bytes = store::from_hex(&saved.ack).ok_or("the saved ACK is not hex")?;
    let ack = Ack { bytes, src_ip: saved.ack_src_ip, src_mac: saved.ack_src_mac };
    let lease = Lease::from_ack(ack, UNIX_EPOCH + Duration::from_secs(saved.bound_at))?;
    let path = format!("{}{}", ctx.flags.hostprefix, spec.netns);
    iface::exists(&Place {
        path: &path,
        netns_id: spec.netns_id,
        ifname: &spec.ifname,
        mac: Some(saved.mac),
    })
    .map_err(|e| e.to_string())?;
    Ok((spec, lease, saved.mac))
}
