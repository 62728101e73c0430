//! Leases on disk, laid out exactly as the reference host-local does so the
//! two can share a data dir in both directions:
//!
//! ```text
//! <dataDir>/<network>/lock                 flock'd while anyone works here
//! <dataDir>/<network>/<ip>                 one lease, "<containerID>\r\n<ifname>", 0600
//! <dataDir>/<network>/last_reserved_ip.<n> round-robin cursor of range set n
//! <dataDir>/<network>/cnirs-index          ours only, see below
//! ```
//!
//! The index spares ADD from reading every lease to refuse a duplicate
//! allocation (the reference's ADD cost grows with the network). Its lines are
//! `<ip> <containerID> <ifname>` per lease we made and `@ <set> <ip>`, the
//! cursor each range set had when we last wrote. It is only a hint: every entry
//! is checked against its lease file; DEL and CHECK read every lease when it
//! names nothing; and whenever a cursor file differs from what the index
//! recorded — someone else (the reference) allocated here — or the index is
//! missing, ADD reads every lease and writes it anew. The reference ignores the
//! file: its name is no IP and its content no lease.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use common::lock::FileLock;
use common::{CniError, Result};

use crate::store::{lease_content, Lease, Store};

const CURSOR_PREFIX: &str = "last_reserved_ip.";
const INDEX: &str = "cnirs-index";

/// What the index file holds.
#[derive(Debug, Default)]
struct Index {
    leases: Vec<Lease>,
    cursors: HashMap<usize, IpAddr>,
}

/// The leases of one network, locked for as long as this value lives.
#[derive(Debug)]
pub struct DiskStore {
    dir: PathBuf,
    _lock: FileLock,
}

fn io_err(what: &str, path: &Path, e: io::Error) -> CniError {
    CniError::io(format!("{what} {}: {e}", path.display()))
}

impl DiskStore {
    /// Open the network directory, creating it (ADD).
    pub fn create(dir: &Path) -> Result<DiskStore> {
        DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(|e| io_err("cannot create data directory", dir, e))?;
        Self::lock(dir)
    }

    /// Open the network directory if it exists: DEL, CHECK and GC have nothing
    /// to do otherwise and should not leave empty directories behind.
    pub fn open_existing(dir: &Path) -> Result<Option<DiskStore>> {
        match fs::metadata(dir) {
            Ok(m) if m.is_dir() => Self::lock(dir).map(Some),
            Ok(_) => Err(CniError::io(format!("data directory {} is not a directory", dir.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("cannot open data directory", dir, e)),
        }
    }

    fn lock(dir: &Path) -> Result<DiskStore> {
        let path = dir.join("lock");
        let lock = FileLock::exclusive(&path).map_err(|e| io_err("cannot lock", &path, e))?;
        Ok(DiskStore { dir: dir.to_path_buf(), _lock: lock })
    }

    /// The file of a lease. `ip` prints without separators, so the path
    /// cannot leave the directory.
    fn lease_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// The lease file of `ip`, if it is one.
    fn read_lease(&self, ip: IpAddr) -> Option<Lease> {
        let mut buf = [0u8; 512];
        let n = fs::File::open(self.lease_path(ip)).and_then(|mut f| f.read(&mut buf)).ok()?;
        Some(Lease::parse(ip, &String::from_utf8_lossy(&buf[..n])))
    }

    /// The index: its lease entries and the cursors it recorded; None when
    /// there is no (readable) index.
    fn read_index(&self) -> Option<Index> {
        let text = fs::read_to_string(self.dir.join(INDEX)).ok()?;
        let mut index = Index::default();
        for line in text.lines() {
            let mut f = line.splitn(3, ' ');
            match (f.next(), f.next(), f.next()) {
                (Some("@"), Some(set), Some(ip)) => {
                    // A set number past usize fails to parse (never wraps).
                    if let (Ok(set), Ok(ip)) = (set.parse(), ip.parse()) {
                        index.cursors.insert(set, ip);
                    }
                }
                (Some(ip), Some(id), ifname) => {
                    if let Ok(ip) = ip.parse() {
                        let ifname = ifname.filter(|i| !i.is_empty()).map(str::to_string);
                        index.leases.push(Lease { ip, container_id: id.to_string(), ifname });
                    }
                }
                _ => {}
            }
        }
        Some(index)
    }

    fn lease_line(l: &Lease) -> String {
        format!("{} {} {}\n", l.ip, l.container_id, l.ifname.as_deref().unwrap_or(""))
    }

    /// Replace the index (temp file + rename, so readers never see half of it).
    fn write_index(&self, index: &Index) {
        let mut body: String = index.leases.iter().map(Self::lease_line).collect();
        for (set, ip) in &index.cursors {
            body.push_str(&format!("@ {set} {ip}\n"));
        }
        let tmp = self.dir.join(format!("{INDEX}.tmp"));
        let ok = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| f.write_all(body.as_bytes()))
            .and_then(|()| fs::rename(&tmp, self.dir.join(INDEX)));
        if ok.is_err() {
            // No index is always safe: the next ADD rebuilds it.
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(self.dir.join(INDEX));
        }
    }

    fn write_cursor(&self, set: usize, ip: IpAddr) -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(self.dir.join(format!("{CURSOR_PREFIX}{set}")))?;
        f.write_all(ip.to_string().as_bytes())
    }
}

impl DiskStore {
    /// The index entries of (id, ifname) whose lease file still says so.
    fn verified(&self, index: Vec<Lease>, id: &str, ifname: &str) -> Vec<Lease> {
        let mut out: Vec<Lease> = index
            .into_iter()
            .filter(|l| l.is(id, ifname) || l.is_legacy_of(id))
            .filter_map(|l| self.read_lease(l.ip))
            .filter(|l| l.is(id, ifname) || l.is_legacy_of(id))
            .collect();
        out.sort_by_key(|l| l.ip);
        out.dedup();
        out
    }
}

impl Store for DiskStore {
    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str, set: usize) -> Result<bool> {
        let path = self.lease_path(ip);
        // O_EXCL is the real arbiter: a file that exists is a held address,
        // whoever wrote it.
        let mut f = match OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
            Err(e) => return Err(io_err("cannot create lease", &path, e)),
        };
        if let Err(e) = f.write_all(lease_content(id, ifname).as_bytes()) {
            let _ = fs::remove_file(&path);
            return Err(io_err("cannot write lease", &path, e));
        }
        if let Err(e) = self.write_cursor(set, ip) {
            let _ = fs::remove_file(&path);
            return Err(io_err("cannot write cursor in", &self.dir, e));
        }
        // Only extend an index that exists (a missing one is rebuilt whole):
        // the lease, and the cursor we just moved.
        let lease = Lease { ip, container_id: id.trim().to_string(), ifname: Some(ifname.to_string()) };
        let index = self.dir.join(INDEX);
        if index.exists() {
            let lines = format!("{}@ {set} {ip}\n", Self::lease_line(&lease));
            let appended =
                OpenOptions::new().append(true).open(&index).and_then(|mut f| f.write_all(lines.as_bytes()));
            if appended.is_err() {
                let _ = fs::remove_file(&index);
            }
        }
        Ok(true)
    }

    fn leases_of(&self, id: &str, ifname: &str) -> Result<Vec<Lease>> {
        let known =
            self.read_index().map(|index| self.verified(index.leases, id, ifname)).unwrap_or_default();
        if !known.is_empty() {
            return Ok(known);
        }
        // Not ours, legacy, or a stale index: read them all.
        Ok(self.leases()?.into_iter().filter(|l| l.is(id, ifname) || l.is_legacy_of(id)).collect())
    }

    fn known_leases_of(&mut self, id: &str, ifname: &str, sets: usize) -> Result<Vec<Lease>> {
        // Every ADD moves the cursor of every configured set, so those are
        // the ones to compare; other cursor files are not ours to read.
        if let Some(index) = self.read_index() {
            if (0..sets).all(|set| self.last_reserved(set) == index.cursors.get(&set).copied()) {
                return Ok(self.verified(index.leases, id, ifname));
            }
        }
        let leases = self.leases()?;
        let mine = leases.iter().filter(|l| l.is(id, ifname) || l.is_legacy_of(id)).cloned().collect();
        let cursors = (0..sets).filter_map(|set| Some((set, self.last_reserved(set)?))).collect();
        self.write_index(&Index { leases, cursors });
        Ok(mine)
    }

    fn forget(&mut self, ips: &[IpAddr]) {
        if let Some(mut index) = self.read_index() {
            index.leases.retain(|l| !ips.contains(&l.ip));
            self.write_index(&index);
        }
    }

    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        fs::read_to_string(self.dir.join(format!("{CURSOR_PREFIX}{set}"))).ok()?.trim().parse().ok()
    }

    /// Every lease file: a regular file named by an IP in its canonical form
    /// (anything else — lock, cursors, strays, symlinks — is not a lease).
    /// Unreadable files are skipped, as the reference does.
    fn leases(&self) -> Result<Vec<Lease>> {
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err("cannot read", &self.dir, e))?;
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(ip) =
                name.to_str().and_then(|n| n.parse::<IpAddr>().ok().filter(|ip| ip.to_string() == n))
            else {
                continue;
            };
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            // One open and one read per lease (leases are a few dozen bytes): an
            // ADD reads every lease to refuse a duplicate, so this is its
            // per-container cost as the network fills.
            let mut buf = [0u8; 512];
            let read = fs::File::open(entry.path()).and_then(|mut f| f.read(&mut buf));
            if let Ok(n) = read {
                out.push(Lease::parse(ip, &String::from_utf8_lossy(&buf[..n])));
            }
        }
        Ok(out)
    }

    fn release(&mut self, ip: IpAddr) -> Result<()> {
        let path = self.lease_path(ip);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_err("cannot remove lease", &path, e)),
            _ => Ok(()),
        }
    }
}

/// STATUS: can leases be written under `dir`? Creates it (as ADD would) and
/// writes and removes a probe file.
pub fn check_writable(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    let probe = dir.join(format!(".status-probe.{}", std::process::id()));
    OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&probe)?;
    fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("host-local-disk-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn layout_matches_the_reference() {
        let root = tempdir("layout");
        let dir = root.join("net1");
        assert!(DiskStore::open_existing(&dir).unwrap().is_none());
        let mut s = DiskStore::create(&dir).unwrap();
        let ip: IpAddr = "2001:db8::a".parse().unwrap();
        assert!(s.reserve(ip, "c1", "eth0", 1).unwrap());
        assert!(!s.reserve(ip, "c2", "eth0", 1).unwrap());
        assert_eq!(fs::read_to_string(dir.join("2001:db8::a")).unwrap(), "c1\r\neth0");
        let mode = fs::metadata(dir.join("2001:db8::a")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::read_to_string(dir.join("last_reserved_ip.1")).unwrap(), "2001:db8::a");
        assert_eq!(s.last_reserved(1), Some(ip));
        assert_eq!(s.last_reserved(0), None);
        assert!(dir.join("lock").exists());

        // Strays are not leases; old single-field leases are.
        fs::write(dir.join("10.0.0.5"), "old-id").unwrap();
        fs::write(dir.join("010.0.0.5"), "x").unwrap();
        fs::write(dir.join("notes"), "c1\r\neth0").unwrap();
        fs::create_dir(dir.join("10.0.0.6")).unwrap();
        std::os::unix::fs::symlink("/etc/hostname", dir.join("10.0.0.7")).unwrap();
        let mut l = s.leases().unwrap();
        l.sort_by_key(|l| l.ip);
        assert_eq!(l.len(), 2);
        assert_eq!((l[0].container_id.as_str(), l[0].ifname.as_deref()), ("old-id", None));
        s.release(ip).unwrap();
        s.release(ip).unwrap();
        assert!(!dir.join("2001:db8::a").exists());
        drop(s);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_index_answers_for_our_leases_and_notices_foreign_ones() {
        let root = tempdir("index");
        let dir = root.join("net1");
        let mut s = DiskStore::create(&dir).unwrap();
        let (a, b, c): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.2".parse().unwrap(), "10.0.0.3".parse().unwrap(), "10.0.0.4".parse().unwrap());
        // First ADD builds the index; later reservations extend it.
        assert!(s.known_leases_of("c1", "eth0", 1).unwrap().is_empty());
        assert!(dir.join(INDEX).exists());
        assert!(s.reserve(a, "c1", "eth0", 0).unwrap());
        assert_eq!(s.known_leases_of("c1", "eth0", 1).unwrap()[0].ip, a);
        assert_eq!(s.leases_of("c1", "eth0").unwrap()[0].ip, a);

        // A lease the reference writes (file + cursor, no index line) is still seen.
        fs::write(dir.join("10.0.0.3"), "c2\r\neth0").unwrap();
        fs::write(dir.join("last_reserved_ip.0"), "10.0.0.3").unwrap();
        assert_eq!(s.known_leases_of("c2", "eth0", 1).unwrap()[0].ip, b);
        assert!(fs::read_to_string(dir.join(INDEX)).unwrap().contains("10.0.0.3 c2 eth0"), "index rebuilt");

        // An entry whose lease file changed hands or vanished is not believed.
        fs::remove_file(dir.join("10.0.0.2")).unwrap();
        fs::write(dir.join("10.0.0.2"), "other\r\neth0").unwrap();
        assert!(s.known_leases_of("c1", "eth0", 1).unwrap().is_empty());
        assert!(s.leases_of("c1", "eth0").unwrap().is_empty());

        // Release forgets the entry; DEL of something the index never knew reads every lease.
        assert!(s.reserve(c, "c3", "eth1", 0).unwrap());
        s.release(c).unwrap();
        s.forget(&[c]);
        assert!(!fs::read_to_string(dir.join(INDEX)).unwrap().contains("10.0.0.4 c3"));
        fs::write(dir.join("10.0.0.9"), "old-id").unwrap();
        assert_eq!(s.leases_of("old-id", "eth0").unwrap().len(), 1, "legacy lease found by a full read");
        drop(s);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn status_probe_fails_under_a_regular_file() {
        let root = tempdir("status");
        fs::create_dir_all(&root).unwrap();
        check_writable(&root.join("ok")).unwrap();
        assert_eq!(fs::read_dir(root.join("ok")).unwrap().count(), 0, "the probe is gone");
        fs::write(root.join("file"), "").unwrap();
        assert!(check_writable(&root.join("file").join("net")).is_err());
        assert!(DiskStore::create(&root.join("file").join("net")).is_err());
        assert!(DiskStore::open_existing(&root.join("file")).is_err());
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn only_the_configured_sets_cursors_count() {
        let root = tempdir("strays");
        let dir = root.join("net1");
        let mut s = DiskStore::create(&dir).unwrap();
        for n in ["300000", "18446744073709551615", "99999999999999999999", "01", "+1", "-1", ""] {
            fs::write(dir.join(format!("{CURSOR_PREFIX}{n}")), "10.0.0.5").unwrap();
        }
        assert!(s.known_leases_of("c1", "eth0", 1).unwrap().is_empty());
        assert!(s.reserve("10.0.0.2".parse().unwrap(), "c1", "eth0", 0).unwrap());
        let index = fs::read_to_string(dir.join(INDEX)).unwrap();
        assert!(index.lines().filter(|l| l.starts_with('@')).all(|l| l.starts_with("@ 0 ")), "{index}");
        // Steady state: ADDs answer from the index without rebuilding it.
        let inode = |d: &Path| std::os::unix::fs::MetadataExt::ino(&fs::metadata(d.join(INDEX)).unwrap());
        let built = inode(&dir);
        assert_eq!(s.known_leases_of("c1", "eth0", 1).unwrap().len(), 1);
        assert!(s.known_leases_of("c2", "eth0", 1).unwrap().is_empty());
        assert_eq!(inode(&dir), built, "index rebuilt although nobody else allocated");
        // An index naming absurd sets (written by hand) is harmless too.
        fs::write(dir.join(INDEX), "@ 18446744073709551615 10.0.0.5\n@ 0 10.0.0.2\n10.0.0.2 c1 eth0\n")
            .unwrap();
        assert_eq!(s.known_leases_of("c1", "eth0", 1).unwrap().len(), 1);
        drop(s);
        fs::remove_dir_all(&root).unwrap();
    }
}
