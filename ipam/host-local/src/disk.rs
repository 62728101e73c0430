//! Leases on disk, laid out exactly as the reference host-local does so the
//! two can share a data dir in both directions:
//!
//! ```text
//! <dataDir>/<network>/lock                 flock'd while anyone works here
//! <dataDir>/<network>/<ip>                 one lease, "<containerID>\r\n<ifname>", 0600
//! <dataDir>/<network>/last_reserved_ip.<n> round-robin cursor of range set n
//! <dataDir>/<network>/cnirs-index          ours only, see below
//! <dataDir>/<network>/cnirs-lease.tmp      ours only: a lease being created
//! ```
//!
//! A lease file appears whole: it is written under a temporary name and
//! linked under its address (the link is what fails when the address is
//! taken), so a process killed at any point never leaves an empty lease that
//! no DEL would match; a temporary file left by one is removed by the next
//! holder of the lock.
//!
//! The index spares ADD from reading every lease to refuse a duplicate
//! allocation (the reference's ADD cost grows with the network). Its lines are
//! `<ip> <containerID> <ifname>` per lease we made — written before the lease
//! itself, so that a DEL after an ADD killed half-way finds every lease that
//! ADD made — and `@ <set> <ip>`, the cursor each range set had when we last
//! wrote. It is only a hint: every entry
//! is checked against its lease file; DEL and CHECK read every lease when it
//! names nothing; and whenever a cursor file differs from what the index
//! recorded — someone else (the reference) allocated here — or the index is
//! missing, ADD reads every lease and writes it anew. The reference ignores the
//! file: its name is no IP and its content no lease.
//!
//! No lease, cursor or index file is followed through a symlink (the data
//! dir and the network directory themselves may be links: that is the
//! operator's choice, as with the reference; `lock` is common::lock's). A
//! link, FIFO or socket planted under one of these names is never read as
//! state nor written through: a cursor or index there counts as missing and
//! is replaced by a file of ours (the link itself is removed, its target
//! untouched); one under an IP's name holds that address, as any file there
//! does, but is no lease (never released, never matched). Only the cursors of
//! the configured range sets are read: other `last_reserved_ip.*` files are
//! ignored. Lease files are read whole, whatever the container ID's length.

use std::collections::HashMap;
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use common::lock::{lock_error, FileLock};
use common::{CniError, Result};

use crate::store::{lease_content, Lease, Store};

const CURSOR_PREFIX: &str = "last_reserved_ip.";
const INDEX: &str = "cnirs-index";
const INDEX_TMP: &str = "cnirs-index.tmp";
/// A lease being written, before it is linked under its address.
const LEASE_TMP: &str = "cnirs-lease.tmp";

/// Open flags for every file of ours in the network directory: a planted
/// link fails with ELOOP instead of being followed, and a FIFO cannot block
/// the open (std adds O_CLOEXEC itself).
const NO_LINKS: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;
/// The longest lease any plugin can write: the kernel caps an environment
/// string (CNI_CONTAINERID=...) at 128 KiB, and an ifname is 15 bytes. A
/// longer file is no lease of anyone we could be asked about.
const MAX_LEASE: usize = 256 << 10;
/// An IP in text, with room for stray whitespace.
const MAX_CURSOR: usize = 64;
/// Far beyond the index of the largest network (a /16 of 64-hex IDs is ~6 MiB).
const MAX_INDEX: usize = 64 << 20;

/// What the index file holds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Index {
    pub leases: Vec<Lease>,
    pub cursors: HashMap<usize, IpAddr>,
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
        let lock = FileLock::exclusive(&path).map_err(|e| lock_error(&path, e))?;
        // A lease being created when its process was killed: nobody else
        // writes it while we hold the lock.
        let _ = fs::remove_file(dir.join(LEASE_TMP));
        Ok(DiskStore { dir: dir.to_path_buf(), _lock: lock })
    }

    /// The file of a lease. `ip` prints without separators, so the path
    /// cannot leave the directory.
    fn lease_path(&self, ip: IpAddr) -> PathBuf {
        self.dir.join(ip.to_string())
    }

    /// The lease file of `ip`, if it is one.
    fn read_lease(&self, ip: IpAddr) -> Option<Lease> {
        let content = read_state(&self.lease_path(ip), MAX_LEASE).ok()?;
        Some(Lease::parse(ip, &String::from_utf8_lossy(&content)))
    }

    /// The index: its lease entries and the cursors it recorded; None when
    /// there is no (readable) index.
    fn read_index(&self) -> Option<Index> {
        let content = read_state(&self.dir.join(INDEX), MAX_INDEX).ok()?;
        Some(Index::parse(&String::from_utf8_lossy(&content)))
    }

    /// Replace the index (temp file + rename, so readers never see half of it).
    fn write_index(&self, index: &Index) {
        let body = index.render();
        let tmp = self.dir.join(INDEX_TMP);
        // Created afresh (O_EXCL never follows a link); a leftover of a crash,
        // or anything planted under the name, is removed first.
        let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp);
        let file = match create() {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp).and_then(|()| create())
            }
            other => other,
        };
        let ok = file
            .and_then(|mut f| f.write_all(body.as_bytes()))
            .and_then(|()| fs::rename(&tmp, self.dir.join(INDEX)));
        if ok.is_err() {
            // No index is always safe: the next ADD rebuilds it.
            let _ = fs::remove_file(&tmp);
            let _ = fs::remove_file(self.dir.join(INDEX));
        }
    }

    fn write_cursor(&self, set: usize, ip: IpAddr) -> io::Result<()> {
        let path = self.dir.join(format!("{CURSOR_PREFIX}{set}"));
        // Truncated in place as the reference does (one open); a link (ELOOP),
        // FIFO or socket (ENXIO) under the name is replaced, never written through.
        let open = || {
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .custom_flags(NO_LINKS)
                .open(&path)
        };
        let mut f = match open() {
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENXIO)) => {
                fs::remove_file(&path)?;
                open()?
            }
            other => other?,
        };
        f.write_all(ip.to_string().as_bytes())
    }
}

impl DiskStore {
    /// Extend an index that exists (a missing one is rebuilt whole by the
    /// next ADD). Anything but our own file there (a link: ELOOP) is
    /// removed, so the next ADD rebuilds it.
    fn append_index(&self, lines: &str) {
        let index = self.dir.join(INDEX);
        match OpenOptions::new().append(true).custom_flags(NO_LINKS).open(&index) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            appended => {
                if appended.and_then(|mut f| f.write_all(lines.as_bytes())).is_err() {
                    let _ = fs::remove_file(&index);
                }
            }
        }
    }

    /// Create the lease file `path` with `content` in one step: written to a
    /// temporary file, then linked under the address's name (which fails
    /// when the address is taken, as O_EXCL does), so that a process killed
    /// half-way never leaves an empty lease that no DEL matches. False when
    /// the address is taken. Where hard links are not supported, the file is
    /// created in place (O_EXCL) and written.
    fn create_lease(&self, path: &Path, content: &[u8]) -> io::Result<bool> {
        let tmp = self.dir.join(LEASE_TMP);
        let _ = fs::remove_file(&tmp);
        let excl = |p: &Path| OpenOptions::new().write(true).create_new(true).mode(0o600).open(p);
        excl(&tmp)?.write_all(content)?;
        let linked = fs::hard_link(&tmp, path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP)) => {
                let mut f = match excl(path) {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(false),
                    other => other?,
                };
                f.write_all(content).inspect_err(|_| {
                    let _ = fs::remove_file(path);
                })?;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}

impl Index {
    fn lease_line(l: &Lease) -> String {
        format!("{} {} {}\n", l.ip, l.container_id, l.ifname.as_deref().unwrap_or(""))
    }

    /// The file's text (what [`Index::parse`] reads).
    pub fn render(&self) -> String {
        let mut body: String = self.leases.iter().map(Self::lease_line).collect();
        for (set, ip) in &self.cursors {
            body.push_str(&format!("@ {set} {ip}\n"));
        }
        body
    }

    /// The index's text: `<ip> <containerID> <ifname>` per lease, `@ <set>
    /// <ip>` per cursor; anything else is skipped (it is only a hint).
    pub fn parse(text: &str) -> Index {
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
        index
    }
}

/// A cursor file's content: an IP, surrounding whitespace allowed.
pub fn parse_cursor(content: &[u8]) -> Option<IpAddr> {
    std::str::from_utf8(content).ok()?.trim().parse().ok()
}

/// A file of ours in the network directory, whole, opened with [`NO_LINKS`];
/// more than `limit` bytes is an error (no plugin wrote that). Leases are a
/// few dozen bytes, so one read() answers in the common case: a short read
/// of a regular file is its end.
fn read_state(path: &Path, limit: usize) -> io::Result<Vec<u8>> {
    let mut f = OpenOptions::new().read(true).custom_flags(NO_LINKS).open(path)?;
    let mut first = [0u8; 512];
    let n = f.read(&mut first)?;
    let mut data = first[..n].to_vec();
    if n == first.len() {
        f.take((limit.saturating_sub(n) + 1) as u64).read_to_end(&mut data)?;
    }
    if data.len() > limit {
        return Err(io::Error::new(io::ErrorKind::InvalidData, format!("longer than {limit} bytes")));
    }
    Ok(data)
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
        // The index names the lease before it exists: a DEL after an ADD
        // killed anywhere below still finds it (a line whose lease never came
        // is dropped by the check against the lease file).
        let lease = Lease { ip, container_id: id.trim().to_string(), ifname: Some(ifname.to_string()) };
        self.append_index(&Index::lease_line(&lease));
        match self.create_lease(&path, lease_content(id, ifname).as_bytes()) {
            Ok(true) => {}
            Ok(false) => return Ok(false),
            Err(e) => return Err(io_err("cannot create lease", &path, e)),
        }
        if let Err(e) = self.write_cursor(set, ip) {
            let _ = fs::remove_file(&path);
            return Err(io_err("cannot write cursor in", &self.dir, e));
        }
        self.append_index(&format!("@ {set} {ip}\n"));
        Ok(true)
    }

    fn holder(&self, ip: IpAddr) -> Option<Lease> {
        self.read_lease(ip)
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
        let content = read_state(&self.dir.join(format!("{CURSOR_PREFIX}{set}")), MAX_CURSOR).ok()?;
        parse_cursor(&content)
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
            // One open and one read per lease in the common case: a full
            // scan (DEL of a lease the index does not know, rebuilds) costs
            // that per lease. NO_LINKS also covers a link swapped in since readdir.
            if let Ok(content) = read_state(&entry.path(), MAX_LEASE) {
                out.push(Lease::parse(ip, &String::from_utf8_lossy(&content)));
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
/// creates and removes a probe file (O_EXCL: never through a planted link).
pub fn check_writable(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o755).create(dir)?;
    let probe = dir.join(format!(".status-probe.{}", std::process::id()));
    let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(&probe);
    if let Err(e) = create() {
        if e.kind() != io::ErrorKind::AlreadyExists {
            return Err(e);
        }
        fs::remove_file(&probe)?;
        create()?;
    }
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
    fn long_leases_are_read_whole() {
        let root = tempdir("long");
        let dir = root.join("net1");
        let mut s = DiskStore::create(&dir).unwrap();
        // Around the old 512-byte read, and far past it (a runtime can pass up
        // to 128 KiB in CNI_CONTAINERID).
        for (n, len) in [1, 505, 506, 507, 600, 4096, 100_000].into_iter().enumerate() {
            let id = "x".repeat(len);
            let ip: IpAddr = format!("10.0.0.{}", n + 2).parse().unwrap();
            assert!(s.known_leases_of(&id, "eth0", 1).unwrap().is_empty());
            assert!(s.reserve(ip, &id, "eth0", 0).unwrap());
            let known = s.known_leases_of(&id, "eth0", 1).unwrap();
            assert_eq!(known.iter().map(|l| l.ip).collect::<Vec<_>>(), [ip], "index answer, id of {len}");
            let held = s.leases_of(&id, "eth0").unwrap();
            assert_eq!(held.len(), 1, "id of {len}");
            assert!(held[0].is(&id, "eth0"), "id of {len}");
        }
        assert!(s.leases().unwrap().iter().all(|l| l.ifname.as_deref() == Some("eth0")));
        // An old lease holding only a long ID is that container's.
        fs::write(dir.join("10.0.1.1"), "y".repeat(3000)).unwrap();
        assert_eq!(s.leases_of(&"y".repeat(3000), "eth0").unwrap().len(), 1);
        drop(s);
        fs::remove_dir_all(&root).unwrap();
    }

    /// An outside file with an old mtime, to see whether anything touched it.
    fn outside_file(path: &Path, content: &str) -> std::time::SystemTime {
        fs::write(path, content).unwrap();
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
        fs::metadata(path).unwrap().modified().unwrap()
    }

    #[test]
    fn planted_links_are_neither_trusted_nor_written_through() {
        let root = tempdir("links");
        let (dir, outside) = (root.join("net1"), root.join("outside"));
        fs::create_dir_all(&outside).unwrap();
        let mut s = DiskStore::create(&dir).unwrap();
        let targets = [
            (CURSOR_PREFIX.to_string() + "0", outside.join("cursor"), "10.0.0.9"),
            (INDEX.to_string(), outside.join("index"), "10.0.0.7 c7 eth0\n"),
            (format!("{INDEX}.tmp"), outside.join("tmp"), "precious"),
        ];
        let mut before = Vec::new();
        for (name, target, content) in &targets {
            before.push(outside_file(target, content));
            std::os::unix::fs::symlink(target, dir.join(name)).unwrap();
        }
        // Dangling links must not create their targets either.
        std::os::unix::fs::symlink(outside.join("new-lease"), dir.join("10.0.0.8")).unwrap();
        std::os::unix::fs::symlink(outside.join("new-cursor"), dir.join(CURSOR_PREFIX.to_string() + "1"))
            .unwrap();

        assert_eq!(s.last_reserved(0), None, "a linked cursor is not believed");
        assert!(s.known_leases_of("c7", "eth0", 2).unwrap().is_empty(), "a linked index is not believed");
        let ip: IpAddr = "10.0.0.2".parse().unwrap();
        assert!(s.reserve(ip, "c1", "eth0", 0).unwrap());
        assert!(!s.reserve("10.0.0.8".parse().unwrap(), "c1", "eth1", 1).unwrap(), "a linked lease is taken");
        assert!(s.reserve("10.0.0.3".parse().unwrap(), "c1", "eth1", 1).unwrap());
        assert_eq!(s.known_leases_of("c1", "eth0", 2).unwrap()[0].ip, ip);
        s.release(ip).unwrap();
        s.forget(&[ip]);
        assert_eq!(s.last_reserved(0), Some(ip));

        for ((_, target, content), mtime) in targets.iter().zip(before) {
            assert_eq!(fs::read_to_string(target).unwrap(), *content, "{} written", target.display());
            assert_eq!(fs::metadata(target).unwrap().modified().unwrap(), mtime, "{}", target.display());
        }
        assert!(!outside.join("new-lease").exists() && !outside.join("new-cursor").exists());
        for name in [CURSOR_PREFIX.to_string() + "0", INDEX.to_string()] {
            let t = fs::symlink_metadata(dir.join(&name)).unwrap().file_type();
            assert!(t.is_file(), "{name} is now our own file");
        }
        // A linked lease is never read as one: its target names nobody here.
        std::os::unix::fs::symlink(outside.join("index"), dir.join("10.0.0.7")).unwrap();
        assert!(s.leases_of("c7", "eth0").unwrap().is_empty());
        drop(s);
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

    #[test]
    fn planted_fifos_never_block() {
        let root = tempdir("fifos");
        let dir = root.join("net1");
        let mut s = DiskStore::create(&dir).unwrap();
        for name in [CURSOR_PREFIX.to_string() + "0", INDEX.to_string(), "10.0.0.5".to_string()] {
            let path = std::ffi::CString::new(dir.join(name).into_os_string().into_encoded_bytes()).unwrap();
            assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        }
        assert_eq!(s.last_reserved(0), None);
        assert!(s.known_leases_of("c1", "eth0", 1).unwrap().is_empty());
        assert!(s.reserve("10.0.0.2".parse().unwrap(), "c1", "eth0", 0).unwrap());
        assert!(
            !s.reserve("10.0.0.5".parse().unwrap(), "c2", "eth0", 0).unwrap(),
            "a FIFO holds its address"
        );
        assert_eq!(s.last_reserved(0), Some("10.0.0.2".parse().unwrap()));
        assert_eq!(s.leases_of("c1", "eth0").unwrap().len(), 1);
        assert_eq!(s.known_leases_of("c1", "eth0", 1).unwrap().len(), 1);
        assert!(fs::symlink_metadata(dir.join(INDEX)).unwrap().is_file(), "the index is ours again");
        drop(s);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn status_probe_never_writes_through_a_link() {
        let root = tempdir("status-link");
        let dir = root.join("net1");
        fs::create_dir_all(&dir).unwrap();
        let target = root.join("outside");
        let mtime = outside_file(&target, "precious");
        let probe = dir.join(format!(".status-probe.{}", std::process::id()));
        std::os::unix::fs::symlink(&target, &probe).unwrap();
        check_writable(&dir).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "precious");
        assert_eq!(fs::metadata(&target).unwrap().modified().unwrap(), mtime);
        assert!(fs::symlink_metadata(&probe).is_err(), "the probe is gone");
        fs::remove_dir_all(&root).unwrap();
    }
}
