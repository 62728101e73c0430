//! Per-network state on disk, under `$DNS_SIDECAR_RUN_DIR` (default
//! `/run/cni/dns-sidecar`) `/<network>/`, mode 0700:
//!
//! | file           | written by | purpose                                                    |
//! |----------------|------------|------------------------------------------------------------|
//! | `lock`         | plugin     | flock serialising ADD/DEL/CHECK/GC of this network          |
//! | `records.json` | plugin     | the attachments and their names (tmp + rename, under `lock`) |
//! | `daemon.lock`  | daemon     | flock held for the daemon's whole life: "is it running?"    |
//! | `pid`          | daemon     | its pid, for SIGTERM when the control socket does not answer |
//! | `ctl.sock`     | daemon     | control socket: `reload`, `ping`, `stop`                     |
//!
//! Beside the directory, `<network>.remote.json` (same format, written
//! atomically by another agent — the overlay's, with the containers of the
//! network's other nodes) is served too; the daemon reads it with its own
//! records on start and `reload`. It outlives the directory on purpose: a
//! server started later (the node's first container) finds it at once.
//!
//! Liveness is the `daemon.lock` flock, not the pid: the kernel drops it
//! when the daemon dies, so a stale pidfile can never pass for a live server.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::ipnet::IpNet;
use common::lock::FileLock;
use serde::{Deserialize, Serialize};

use crate::table::{Entry, Table};

pub const RUN_DIR_ENV: &str = "DNS_SIDECAR_RUN_DIR";
pub const DEFAULT_RUN_DIR: &str = "/run/cni/dns-sidecar";

pub fn run_root() -> PathBuf {
    match std::env::var_os(RUN_DIR_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_RUN_DIR),
    }
}

/// One attachment of a container to the network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub ifname: String,
    /// Validated, lowercase; the first is the PTR name.
    pub names: Vec<String>,
    pub ips: Vec<IpNet>,
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
}

/// Everything the daemon serves for one network.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct Records {
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub containers: Vec<Record>,
}

impl Records {
    /// The addresses to listen on: every gateway, in first-seen order.
    pub fn listen_addrs(&self) -> Vec<IpAddr> {
        let mut out: Vec<IpAddr> = Vec::new();
        for g in self.containers.iter().flat_map(|c| &c.gateways) {
            if !out.contains(g) {
                out.push(*g);
            }
        }
        out
    }

    pub fn table(&self) -> Table {
        Table::build(&self.domain, self.containers.iter().map(|c| Entry { names: &c.names, ips: &c.ips }))
    }

    pub fn find(&self, id: &str, ifname: &str) -> Option<&Record> {
        self.containers.iter().find(|c| c.id == id && c.ifname == ifname)
    }

    /// Put `r` in place of the attachment with the same (id, ifname).
    pub fn upsert(&mut self, r: Record) {
        match self.containers.iter_mut().find(|c| c.id == r.id && c.ifname == r.ifname) {
            Some(c) => *c = r,
            None => self.containers.push(r),
        }
    }

    /// Drop the attachment; true if it was there.
    pub fn remove(&mut self, id: &str, ifname: &str) -> bool {
        let before = self.containers.len();
        self.containers.retain(|c| !(c.id == id && c.ifname == ifname));
        self.containers.len() != before
    }
}

/// The state directory of one network.
#[derive(Clone, Debug)]
pub struct NetDir {
    pub network: String,
    pub path: PathBuf,
}

impl NetDir {
    /// `network` must already be a valid CNI network name (no `/`, no `..`).
    pub fn new(network: &str) -> NetDir {
        NetDir::under(&run_root(), network)
    }

    pub fn under(root: &Path, network: &str) -> NetDir {
        NetDir { network: network.to_string(), path: root.join(network) }
    }

    pub fn records_path(&self) -> PathBuf {
        self.path.join("records.json")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.path.join("pid")
    }
    pub fn ctl_path(&self) -> PathBuf {
        self.path.join("ctl.sock")
    }
    /// Records fed by another agent (see the module doc).
    pub fn remote_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(".remote.json");
        self.path.with_file_name(name)
    }
    pub fn daemon_lock_path(&self) -> PathBuf {
        self.path.join("daemon.lock")
    }
    fn lock_path(&self) -> PathBuf {
        self.path.join("lock")
    }

    /// The directory is there (a symlink under its name is not ours: it
    /// counts as missing and is never followed).
    pub fn exists(&self) -> bool {
        fs::symlink_metadata(&self.path).is_ok_and(|m| m.is_dir())
    }

    /// Run `f` (bind, connect) with a path to the control socket that fits
    /// a `sun_path`, however long the network name (common::sockaddr).
    pub fn with_ctl_path<T>(&self, f: impl FnOnce(&Path) -> io::Result<T>) -> io::Result<T> {
        common::sockaddr::with_unix_path(&self.ctl_path(), f)
    }

    /// Take the network's lock, creating the directory when `create`. None
    /// when the directory does not exist and `create` is false. A lock on a
    /// file that a concurrent DEL unlinked (removing the directory) is
    /// dropped and taken again on the new one.
    pub fn lock(&self, create: bool) -> io::Result<Option<FileLock>> {
        for _ in 0..1000 {
            if create {
                self.create()?;
            } else if !self.exists() {
                return Ok(None);
            }
            let lock = match FileLock::exclusive(self.lock_path()) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    if create {
                        continue;
                    }
                    return Ok(None);
                }
                Err(e) => return Err(e),
            };
            let held = lock.file().metadata()?;
            match fs::metadata(self.lock_path()) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(Some(lock)),
                _ => continue,
            }
        }
        Err(io::Error::other(format!("could not lock {}", self.lock_path().display())))
    }

    fn create(&self) -> io::Result<()> {
        if let Some(root) = self.path.parent() {
            fs::create_dir_all(root)?;
        }
        // A symlink planted under the network's name is removed (unlink
        // does not follow it), never written through.
        if fs::symlink_metadata(&self.path).is_ok_and(|m| m.file_type().is_symlink()) {
            fs::remove_file(&self.path)?;
        }
        match DirBuilder::new().mode(0o700).create(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::set_permissions(&self.path, fs::Permissions::from_mode(0o700))
            }
            Err(e) => Err(e),
        }
    }

    /// The records (empty when there is no file yet, or a symlink where it
    /// should be: that is not ours and is never followed; the next store
    /// replaces it).
    pub fn load(&self) -> io::Result<Records> {
        let mut bytes = Vec::new();
        let read = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(self.records_path())
            .and_then(|mut f| f.read_to_end(&mut bytes));
        match read {
            Ok(_) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", self.records_path().display()))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ELOOP) => {
                Ok(Records::default())
            }
            Err(e) => Err(e),
        }
    }

    /// What the daemon serves: our records plus the remote ones, if any
    /// (an unreadable remote file is ignored: our own names still answer).
    pub fn load_served(&self) -> io::Result<Records> {
        let mut r = self.load()?;
        if let Ok(b) = fs::read(self.remote_path()) {
            if let Ok(remote) = serde_json::from_slice::<Records>(&b) {
                r.containers.extend(remote.containers.into_iter().map(|mut c| {
                    c.gateways.clear(); // never listen on another node's behalf
                    c
                }));
            }
        }
        Ok(r)
    }

    /// Replace the records atomically (write a temporary file, rename it).
    pub fn store(&self, r: &Records) -> io::Result<()> {
        let bytes = serde_json::to_vec(r).map_err(io::Error::other)?;
        write_atomically(&self.path.join("records.json.tmp"), &bytes, &self.records_path())
    }

    /// The daemon's pid, if the pidfile holds one.
    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_path()).ok()?.trim().parse().ok().filter(|p| *p > 0)
    }

    /// Is a daemon holding `daemon.lock`?
    pub fn daemon_running(&self) -> bool {
        match FileLock::try_exclusive(self.daemon_lock_path()) {
            Ok(Some(_)) => false,
            Ok(None) => true,
            Err(_) => false,
        }
    }

    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Write `bytes` to `tmp`, created anew (O_EXCL follows no link; whatever
/// was planted or left under its name is removed first), and rename it over
/// `to` (rename replaces a link at `to`, never writes through it).
pub fn write_atomically(tmp: &Path, bytes: &[u8], to: &Path) -> io::Result<()> {
    let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(tmp);
    let file = match create() {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::remove_file(tmp).and_then(|()| create()),
        other => other,
    };
    let res = file.and_then(|mut f| f.write_all(bytes)).and_then(|()| fs::rename(tmp, to));
    if res.is_err() {
        let _ = fs::remove_file(tmp);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_root(tag: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("dns-sidecar-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        p
    }

    fn rec(id: &str, name: &str, ip: &str, gw: &str) -> Record {
        Record {
            id: id.into(),
            ifname: "eth0".into(),
            names: vec![name.into()],
            ips: vec![ip.parse().unwrap()],
            gateways: vec![gw.parse().unwrap()],
        }
    }

    #[test]
    fn records_round_trip_atomically_in_a_private_dir() {
        let root = tmp_root("rt");
        let d = NetDir::under(&root, "net1");
        assert!(d.lock(false).unwrap().is_none(), "no dir, no create: nothing to lock");
        assert!(!d.exists());
        let _l = d.lock(true).unwrap().unwrap();
        assert_eq!(fs::metadata(&d.path).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(d.load().unwrap(), Records::default());
        let mut r = Records { domain: "dns.podman".into(), containers: vec![] };
        r.upsert(rec("c1", "web", "10.1.0.2/24", "10.1.0.1"));
        r.upsert(rec("c2", "db", "10.1.0.3/24", "10.1.0.1"));
        r.upsert(rec("c1", "web2", "10.1.0.2/24", "10.1.0.1"));
        d.store(&r).unwrap();
        let back = d.load().unwrap();
        assert_eq!(back, r);
        assert_eq!(back.containers.len(), 2);
        assert_eq!(back.find("c1", "eth0").unwrap().names, vec!["web2"]);
        assert_eq!(back.listen_addrs(), vec!["10.1.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(back.table().len(), 2);
        assert!(!d.path.join("records.json.tmp").exists());
        let mode = fs::metadata(d.records_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let mut r2 = back.clone();
        assert!(r2.remove("c1", "eth0"));
        assert!(!r2.remove("c1", "eth0"));
        assert!(!d.daemon_running());
        assert_eq!(d.pid(), None);
        d.remove().unwrap();
        d.remove().unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn remote_records_are_served_beside_ours_without_their_gateways() {
        let root = tmp_root("remote");
        let d = NetDir::under(&root, "net1");
        let _l = d.lock(true).unwrap().unwrap();
        let mut r = Records { domain: "app.overlay".into(), containers: vec![] };
        r.upsert(rec("c1", "web", "10.90.0.2/16", "10.90.0.1"));
        d.store(&r).unwrap();
        assert_eq!(d.remote_path(), root.join("net1.remote.json"));
        assert_eq!(d.load_served().unwrap(), r, "no remote file: our records");
        let remote =
            Records { domain: String::new(), containers: vec![rec("c2", "db", "10.90.0.3/16", "10.9.9.9")] };
        fs::write(d.remote_path(), serde_json::to_vec(&remote).unwrap()).unwrap();
        let served = d.load_served().unwrap();
        assert_eq!(served.containers.len(), 2);
        assert_eq!(served.domain, "app.overlay");
        assert_eq!(served.listen_addrs(), vec!["10.90.0.1".parse::<IpAddr>().unwrap()]);
        assert_eq!(served.table().len(), 2);
        assert_eq!(d.load().unwrap(), r, "our own file is untouched");
        fs::write(d.remote_path(), b"garbage").unwrap();
        assert_eq!(d.load_served().unwrap(), r);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn planted_links_are_never_followed() {
        let root = tmp_root("links");
        let victim = root.join("victim");
        fs::create_dir_all(&root).unwrap();
        fs::write(&victim, "keep").unwrap();
        // The network's directory a link: replaced by a directory of ours.
        let d = NetDir::under(&root, "n");
        std::os::unix::fs::symlink(&root, &d.path).unwrap();
        assert!(!d.exists());
        assert!(d.lock(false).unwrap().is_none(), "a link is no state of ours");
        let _l = d.lock(true).unwrap().unwrap();
        assert!(fs::symlink_metadata(&d.path).unwrap().is_dir());
        // records.json and its temp file links: not read, replaced.
        for name in ["records.json", "records.json.tmp"] {
            std::os::unix::fs::symlink(&victim, d.path.join(name)).unwrap();
        }
        assert_eq!(d.load().unwrap(), Records::default());
        let r = Records { domain: "x".into(), containers: vec![rec("c1", "web", "10.1.0.2/24", "10.1.0.1")] };
        d.store(&r).unwrap();
        assert_eq!(d.load().unwrap(), r);
        assert_eq!(fs::read_to_string(&victim).unwrap(), "keep");
        assert!(!d.path.join("records.json.tmp").exists());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_long_path_reaches_the_control_socket_through_the_directory() {
        use std::os::unix::fs::FileTypeExt;
        let root = tmp_root("longctl");
        let d = NetDir::under(&root, &"n".repeat(200));
        d.create().unwrap();
        let listener = d.with_ctl_path(|p| std::os::unix::net::UnixListener::bind(p)).unwrap();
        assert!(fs::symlink_metadata(d.ctl_path()).unwrap().file_type().is_socket());
        d.with_ctl_path(|p| std::os::unix::net::UnixStream::connect(p)).unwrap();
        listener.accept().unwrap();
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_lock_on_a_removed_directory_is_retaken() {
        let root = tmp_root("relock");
        let d = NetDir::under(&root, "n");
        let held = d.lock(true).unwrap().unwrap();
        let d2 = d.clone();
        let t = std::thread::spawn(move || {
            let l = d2.lock(true).unwrap().unwrap();
            // The lock we got is on the file that exists now.
            let m = fs::metadata(d2.path.join("lock")).unwrap();
            assert_eq!(m.ino(), l.file().metadata().unwrap().ino());
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        d.remove().unwrap();
        drop(held);
        t.join().unwrap();
        fs::remove_dir_all(&root).unwrap();
    }
}
