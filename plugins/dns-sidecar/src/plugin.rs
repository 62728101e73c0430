//! The CNI verbs, and starting/stopping the network's daemon.
//!
//! Every verb that changes records holds the network's lock from reading the
//! records until the daemon has acknowledged them, so two plugin calls never
//! interleave and never start two daemons.

use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::Duration;

use common::daemon;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::{CniError, Result};

use crate::config::{self, DnsConf};
use crate::server::{self, control, READY_FD_ENV};
use crate::state::{NetDir, Record, Records};
use crate::wire::{self, rcode, rtype, Rdata};

pub struct DnsSidecar;

const START_TIMEOUT: Duration = Duration::from_secs(5);
const CTL_TIMEOUT: Duration = Duration::from_secs(3);
const STOP_WAIT: Duration = Duration::from_secs(2);

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(io::Error) -> CniError {
    move |e| CniError::io(format!("{what}: {e}"))
}

/// The network's lock: code 11 when it stayed busy for the whole bounded wait.
fn lock_err(e: io::Error) -> CniError {
    match e.kind() {
        io::ErrorKind::TimedOut => CniError::try_again(format!("locking DNS state: {e}; try again later")),
        _ => CniError::io(format!("locking DNS state: {e}")),
    }
}

impl Plugin for DnsSidecar {
    fn about(&self) -> String {
        "dns-sidecar: container names on CNI networks (dnsname-compatible)".into()
    }

    /// dnsname loads CNI_ARGS into `{K8S_POD_NAME}` (other keys need IgnoreUnknown);
    /// the rest of Kubernetes' keys are accepted too.
    fn known_args(&self) -> &'static [&'static str] {
        &["K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"]
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let conf = DnsConf::parse(&a.conf)?;
        let prev = a.conf.prev_result.as_ref().ok_or_else(|| {
            CniError::invalid_config(
                "dns-sidecar must be chained after a plugin that sets up the interface (no prevResult)",
            )
        })?;
        let ips = config::container_ips(prev, &a.ifname);
        if ips.is_empty() {
            return Err(CniError::invalid_config(format!(
                "prevResult has no IP address for interface {}",
                a.ifname
            )));
        }
        let gateways = config::gateways(prev, &a.ifname)?;
        let record = Record {
            id: a.container_id.clone(),
            ifname: a.ifname.clone(),
            names: common::dns_names::of(a),
            ips,
            gateways,
        };

        let dir = NetDir::new(a.conf.name_as_dir("dns-sidecar")?);
        let _lock = dir.lock(true).map_err(lock_err)?.expect("created");
        let old = dir.load().map_err(io_err("reading DNS records"))?;
        let mut new = old.clone();
        new.domain = conf.domain.clone();
        let gateways = record.gateways.clone();
        new.upsert(record);
        dir.store(&new).map_err(io_err("writing DNS records"))?;
        if let Err(e) = ensure_daemon(&dir) {
            // Undo: the records as they were, the daemon as it was.
            if old.containers.is_empty() {
                stop_daemon(&dir);
                let _ = dir.remove();
            } else if dir.store(&old).is_ok() && dir.daemon_running() {
                let _ = control(&dir, "reload", CTL_TIMEOUT);
            }
            return Err(e);
        }
        Ok(config::result(prev, &gateways, &conf.domain))
    }

    fn del(&self, a: &CmdArgs) -> Result<()> {
        // A name too long for a directory: no ADD could have stored anything.
        let Ok(name) = a.conf.name_as_dir("dns-sidecar") else { return Ok(()) };
        let dir = NetDir::new(name);
        let Some(_lock) = dir.lock(false).map_err(lock_err)? else {
            return Ok(()); // nothing of this network: already gone
        };
        // Unreadable records cannot be served either: treat as empty.
        let mut recs = dir.load().unwrap_or_default();
        recs.remove(&a.container_id, &a.ifname);
        update(&dir, &recs)
    }

    fn check(&self, a: &CmdArgs) -> Result<()> {
        DnsConf::parse(&a.conf)?;
        let dir = NetDir::new(a.conf.name_as_dir("dns-sidecar")?);
        let missing = || {
            CniError::internal(format!(
                "container {} has no DNS records on network {}",
                a.container_id, a.conf.name
            ))
        };
        let _lock = dir.lock(false).map_err(lock_err)?.ok_or_else(missing)?;
        let recs = dir.load().map_err(io_err("reading DNS records"))?;
        let rec = recs.find(&a.container_id, &a.ifname).ok_or_else(missing)?;
        if let Some(prev) = &a.conf.prev_result {
            let mut want = config::container_ips(prev, &a.ifname);
            let mut have = rec.ips.clone();
            want.sort();
            have.sort();
            if want != have {
                return Err(CniError::internal(format!(
                    "DNS records of container {} list {:?}, prevResult has {:?}",
                    a.container_id, have, want
                )));
            }
        }
        // Like dnsname ("dnsmasq instance not running"): CHECK reports a dead
        // server and leaves the repair to the runtime (ADD starts it again).
        if !dir.daemon_running() {
            return Err(CniError::internal(format!(
                "the DNS server of network {} is not running (an ADD on the network starts it again)",
                a.conf.name
            )));
        }
        probe(&recs, rec)
    }

    fn status(&self, _a: &CmdArgs) -> Result<()> {
        Ok(())
    }

    fn gc(&self, a: &CmdArgs) -> Result<()> {
        let valid = a.conf.valid_attachments()?;
        let Ok(name) = a.conf.name_as_dir("dns-sidecar") else { return Ok(()) };
        let dir = NetDir::new(name);
        let Some(_lock) = dir.lock(false).map_err(lock_err)? else {
            return Ok(());
        };
        let mut recs = dir.load().unwrap_or_default();
        recs.containers.retain(|c| valid.iter().any(|v| v.container_id == c.id && v.ifname == c.ifname));
        update(&dir, &recs)
    }
}

/// After records were removed (under the lock): stop and clean up when
/// nothing is left, else store them and push them to a running daemon —
/// even when nothing was removed: a DEL or GC killed between its store and
/// its push left the daemon answering for a container that is gone, an ADD
/// killed mid-store left `records.json.tmp`, and only the retried DEL, which
/// finds nothing to remove, can put that right.
fn update(dir: &NetDir, recs: &Records) -> Result<()> {
    if recs.containers.is_empty() {
        stop_daemon(dir);
        return dir.remove().map_err(io_err("removing DNS state"));
    }
    dir.store(recs).map_err(io_err("writing DNS records"))?;
    if dir.daemon_running() && control(dir, "reload", CTL_TIMEOUT).is_err() {
        // A daemon that does not take the update is replaced: it must not
        // keep answering for a container that left.
        stop_daemon(dir);
        let _ = start_daemon(dir);
    }
    Ok(())
}

/// Push the records to the running daemon, or start one.
fn ensure_daemon(dir: &NetDir) -> Result<()> {
    if dir.daemon_running() {
        match control(dir, "reload", CTL_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Other => {
                return Err(CniError::internal(format!("DNS server of network {}: {e}", dir.network)))
            }
            Err(_) => stop_daemon(dir), // hung or half-dead: replace it
        }
    }
    start_daemon(dir)
}

/// Start the daemon (see `common::daemon`; stderr on /dev/null) and wait
/// until it listens.
pub fn start_daemon(dir: &NetDir) -> Result<()> {
    let exe = std::env::current_exe().map_err(io_err("finding our own binary"))?;
    daemon::start(&exe, &dir.network, READY_FD_ENV, Stdio::null(), START_TIMEOUT).map_err(|e| {
        let why = match &e {
            daemon::NotStarted::Said(s) if !s.is_empty() => s.strip_prefix("err ").unwrap_or(s).to_string(),
            _ => e.to_string(),
        };
        CniError::internal(format!("DNS server for network {} did not start: {why}", dir.network))
    })
}

/// Stop the daemon: ask it over the control socket, then SIGTERM, then
/// SIGKILL (by pidfile, checked to be our daemon). Returns once it is gone.
pub fn stop_daemon(dir: &NetDir) {
    if !dir.daemon_running() {
        return;
    }
    if control(dir, "stop", Duration::from_secs(1)).is_ok()
        && daemon::wait_gone(|| dir.daemon_running(), STOP_WAIT)
    {
        return;
    }
    daemon::end(dir.pid(), &dir.network, || dir.daemon_running(), STOP_WAIT);
}

/// CHECK's probe: ask the daemon for one of the container's names, as a
/// client would, and expect one of its addresses back.
fn probe(recs: &Records, rec: &Record) -> Result<()> {
    let name = rec.names.first().ok_or_else(|| CniError::internal("container has no valid DNS name"))?;
    let fqdn = if recs.domain.is_empty() { name.clone() } else { format!("{name}.{}", recs.domain) };
    let (qtype, want): (u16, Vec<IpAddr>) = match rec.ips.iter().find(|i| i.is_ipv4()) {
        Some(_) => (rtype::A, rec.ips.iter().filter(|i| i.is_ipv4()).map(|i| i.addr).collect()),
        None => (rtype::AAAA, rec.ips.iter().map(|i| i.addr).collect()),
    };
    let server = rec.gateways.first().ok_or_else(|| CniError::internal("no listen address"))?;
    let to = SocketAddr::new(*server, server::port());
    let query =
        wire::build_query(0x5ca1, &fqdn, qtype, None).ok_or_else(|| CniError::internal("bad name"))?;
    let mut last = String::from("no answer");
    for _ in 0..3 {
        match ask(&query, to) {
            Ok(resp) => {
                let r =
                    wire::parse_response(&resp).ok_or_else(|| CniError::internal("malformed DNS answer"))?;
                let got: Vec<IpAddr> = r
                    .answers
                    .iter()
                    .filter_map(|(d, _)| match d {
                        Rdata::A(v4) => Some(IpAddr::V4(*v4)),
                        Rdata::Aaaa(v6) => Some(IpAddr::V6(*v6)),
                        _ => None,
                    })
                    .collect();
                if r.rcode == rcode::NOERROR && got.iter().any(|g| want.contains(g)) {
                    return Ok(());
                }
                last = format!("rcode {} answers {got:?}", r.rcode);
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(CniError::internal(format!("DNS server at {to} does not answer {fqdn}: {last}")))
}

fn ask(query: &[u8], to: SocketAddr) -> io::Result<Vec<u8>> {
    let s = UdpSocket::bind(crate::sock::any_of(&to.ip()))?;
    s.connect(to)?;
    s.set_read_timeout(Some(Duration::from_millis(500)))?;
    s.send(query)?;
    let mut buf = vec![0u8; 4096];
    loop {
        let n = s.recv(&mut buf)?;
        if n >= wire::HEADER_LEN && wire::id_of(&buf[..n]) == wire::id_of(query) {
            return Ok(buf[..n].to_vec());
        }
    }
}
