//! Advisory file locks (flock). The same kind of lock the Go plugins take, so
//! our host-local and the reference one interlock on the same lock file.
//!
//! Nobody waits forever: a lock still busy after [`lock_wait`] is an error
//! naming the lock file and its holder, code 11 (try again later).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

/// Environment variable: how many seconds to wait for a busy lock.
pub const LOCK_WAIT_ENV: &str = "CNIRS_LOCK_WAIT";

/// The default wait for a busy lock. Locks are held for milliseconds (one
/// lease written, one nf_tables commit), so even 32+ parallel ADDs on one
/// network queue for well under a second, and a few seconds on a slow
/// disk: a minute is far beyond any real queue. It is also well inside the
/// kubelet's CRI deadlines (2 min for StopPodSandbox, 4 for RunPodSandbox),
/// so a wedged holder shows up as our error naming the lock and its holder,
/// not as a plugin killed by the runtime without a word.
pub const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(60);

/// The longest pause between two attempts: a freed lock is taken within a
/// few milliseconds, at a cost of a few hundred cheap syscalls per second.
const MAX_PAUSE: Duration = Duration::from_millis(4);

/// How long to wait for a busy lock: [`DEFAULT_LOCK_WAIT`], or
/// `CNIRS_LOCK_WAIT` seconds (fractions allowed) when set to a number.
pub fn lock_wait() -> Duration {
    wait_from(std::env::var(LOCK_WAIT_ENV).ok().as_deref())
}

fn wait_from(value: Option<&str>) -> Duration {
    value
        .and_then(|v| v.trim().parse::<f64>().ok())
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .unwrap_or(DEFAULT_LOCK_WAIT)
}

/// An exclusive flock held until drop.
#[derive(Debug)]
pub struct FileLock {
    file: File,
}

impl FileLock {
    /// Create (0600) or open `path` and take the exclusive lock, waiting at
    /// most [`lock_wait`]; a lock still busy then is `ErrorKind::TimedOut`.
    pub fn exclusive(path: impl AsRef<Path>) -> io::Result<FileLock> {
        FileLock::exclusive_within(path, lock_wait())
    }

    /// [`FileLock::exclusive`] with an explicit wait. Polls with a short
    /// growing pause rather than blocking in flock, which cannot time out:
    /// no timer, signal or thread is left behind.
    pub fn exclusive_within(path: impl AsRef<Path>, wait: Duration) -> io::Result<FileLock> {
        let path = path.as_ref();
        FileLock::exclusive_on(open(path)?, path, wait)
    }

    /// [`FileLock::exclusive_within`] on a file already open; `path` names
    /// it in messages. The lock lasts while `file`'s open file description
    /// has a descriptor, so give it one of its own.
    pub fn exclusive_on(file: File, path: &Path, wait: Duration) -> io::Result<FileLock> {
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_micros(100);
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(FileLock { file }),
                Err(std::fs::TryLockError::WouldBlock) => {}
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let holder = holder_of(path).map(|pid| format!(" (held by pid {pid})")).unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} is still locked after {:?}{holder}", path.display(), wait),
                ));
            }
            std::thread::sleep(jitter(pause).min(left));
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }

    /// Take the lock only if nobody holds it.
    pub fn try_exclusive(path: impl AsRef<Path>) -> io::Result<Option<FileLock>> {
        let file = open(path.as_ref())?;
        match file.try_lock() {
            Ok(()) => Ok(Some(FileLock { file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }

    pub fn file(&self) -> &File {
        &self.file
    }
}

/// The lock file, created 0600 if missing.
/// A link planted under the lock's name is never followed: a lock file must
/// not be created or opened outside its state dir. The link is removed and a
/// lock file of ours takes its place (its target untouched), as host-local
/// does with its other state files; failing instead (ELOOP) would make
/// every later call fail, DEL included, and wedge the pods of the network.
/// (An O_RDWR open of a FIFO does not block; O_NONBLOCK keeps it so for any
/// special file.)
fn open(path: &Path) -> io::Result<File> {
    let open = || {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
    };
    match open() {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            // unlink(2) removes the link itself; a racing plugin may have done so.
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            open()
        }
        other => other,
    }
}

/// `pause` scaled by a random factor in [0.5, 1.5), so that waiters started
/// together do not retry in lockstep.
fn jitter(pause: Duration) -> Duration {
    let mut b = [0u8; 1];
    crate::random_bytes(&mut b);
    pause * (128 + u32::from(b[0])) / 256
}

/// The pid holding a flock on `path`, from /proc/locks (for error messages).
fn holder_of(path: &Path) -> Option<u32> {
    let meta = std::fs::metadata(path).ok()?;
    let dev = (libc::major(meta.dev()), libc::minor(meta.dev()));
    holder_in(&std::fs::read_to_string("/proc/locks").ok()?, dev, meta.ino())
}

/// The pid of the flock on inode `ino` of device `dev` in a /proc/locks
/// text. On overlayfs (a kind node's /var/lib/cni, a VM's scratch) stat
/// shows the overlay's device but /proc/locks the upper one's, with the same
/// inode number: then the one flock on that inode number is taken.
fn holder_in(locks: &str, dev: (u32, u32), ino: u64) -> Option<u32> {
    // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters have "->" after the id.
    let flocks = locks.lines().filter_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) != Some(&"FLOCK") {
            return None;
        }
        let mut id = f.get(5)?.split(':');
        let major = u32::from_str_radix(id.next()?, 16).ok()?;
        let minor = u32::from_str_radix(id.next()?, 16).ok()?;
        let file_ino: u64 = id.next()?.parse().ok()?;
        Some(((major, minor), file_ino, f.get(4)?.parse::<u32>().ok()?))
    });
    let on_inode: Vec<_> = flocks.filter(|&(_, i, _)| i == ino).collect();
    match on_inode.iter().find(|&&(d, _, _)| d == dev) {
        Some(&(_, _, pid)) => Some(pid),
        None if on_inode.len() == 1 => Some(on_inode[0].2),
        None => None,
    }
}

/// A failed [`FileLock::exclusive`] as a CNI error: code 11 (try again
/// later) when the lock stayed busy, 5 otherwise; both name the lock file.
pub fn lock_error(path: &Path, e: io::Error) -> crate::CniError {
    if e.kind() == io::ErrorKind::TimedOut {
        crate::CniError::try_again(format!("lock file {e}; try again later"))
    } else {
        crate::CniError::io(format!("cannot lock {}: {e}", path.display()))
    }
}

/// Where our runtime locks live (created 0700 on first use).
pub const RUNTIME_LOCK_DIR: &str = "/run/cni-rs/locks";

/// An exclusive lock named `name` under [`RUNTIME_LOCK_DIR`], for state that
/// parallel plugin runs share (bridge creation, nf_tables rule setup).
pub fn runtime_lock(name: &str) -> crate::Result<FileLock> {
    named_lock(Path::new(RUNTIME_LOCK_DIR), name, lock_wait())
}

fn named_lock(dir: &Path, name: &str, wait: Duration) -> crate::Result<FileLock> {
    if !crate::spec::valid_name(name) {
        return Err(crate::CniError::internal(format!("invalid lock name {name:?}")));
    }
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| crate::CniError::io(format!("creating {}: {e}", dir.display())))?;
    }
    let path = dir.join(format!("{name}.lock"));
    FileLock::exclusive_within(&path, wait).map_err(|e| lock_error(&path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("cni-lock-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_busy_lock_fails_after_the_wait_naming_the_file_and_holder() {
        let dir = temp_dir("busy");
        let p = dir.join("lock");
        // flock conflicts between open files, so this process can play the holder.
        let _held = FileLock::exclusive(&p).unwrap();
        let e = FileLock::exclusive_within(&p, Duration::from_millis(200)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut, "{e}");
        let msg = e.to_string();
        assert!(msg.contains(&p.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        let e = lock_error(&p, e);
        assert_eq!(e.code, 11, "{e}");
        assert!(e.msg.contains(&p.display().to_string()), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_holder_is_read_from_proc_locks_also_through_overlayfs() {
        let locks = "1: FLOCK  ADVISORY  WRITE 236 00:39:111 0 EOF\n\
                     2: POSIX  ADVISORY  WRITE 300 00:3a:111 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 400 08:01:222 0 EOF\n";
        assert_eq!(holder_in(locks, (8, 1), 222), Some(400));
        // overlayfs: stat's device (00:3a) is not the one /proc/locks shows.
        assert_eq!(holder_in(locks, (0, 0x3a), 111), Some(236));
        assert_eq!(holder_in(locks, (8, 1), 333), None);
        // Two flocks on that inode number, neither on our device: no guess.
        let two = "1: FLOCK  ADVISORY  WRITE 1 00:39:7 0 EOF\n2: FLOCK  ADVISORY  WRITE 2 00:40:7 0 EOF\n";
        assert_eq!(holder_in(two, (0, 0x3a), 7), None);
        assert_eq!(holder_in(two, (0, 0x40), 7), Some(2));
    }

    #[test]
    fn a_planted_link_is_never_followed_but_replaced() {
        let dir = temp_dir("planted");
        let outside = dir.join("outside");
        let victim = dir.join("victim");
        std::fs::write(&victim, "keep").unwrap();
        // A dangling link (following it would create `outside`), and one to a file.
        for target in [&outside, &victim] {
            let _ = std::fs::remove_file(dir.join("lock"));
            std::os::unix::fs::symlink(target, dir.join("lock")).unwrap();
            let held = FileLock::exclusive_within(dir.join("lock"), Duration::ZERO).unwrap();
            let meta = std::fs::symlink_metadata(dir.join("lock")).unwrap();
            assert!(meta.file_type().is_file(), "the link is replaced by a lock file");
            assert_eq!(held.file().metadata().unwrap().ino(), meta.ino());
            // A second locker finds the same file, and the lock busy.
            assert!(FileLock::try_exclusive(dir.join("lock")).unwrap().is_none());
        }
        assert!(!outside.exists(), "the lock was created through the link");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_lock_released_during_the_wait_is_taken() {
        let dir = temp_dir("released");
        let p = dir.join("lock");
        let held = FileLock::exclusive(&p).unwrap();
        let holder = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            drop(held);
        });
        // Far longer than the holder keeps it: only a waiter that never
        // looks again could fail.
        FileLock::exclusive_within(&p, Duration::from_secs(120)).unwrap();
        holder.join().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_lock_failures_are_io_errors_naming_the_file() {
        let p = Path::new("/nonexistent-dir/lock");
        let e = lock_error(p, FileLock::exclusive(p).unwrap_err());
        assert_eq!(e.code, 5, "{e}");
        assert!(e.msg.starts_with("cannot lock /nonexistent-dir/lock: "), "{e}");
    }

    #[test]
    fn a_busy_runtime_lock_is_code_11() {
        let dir = temp_dir("runtime");
        let _held = named_lock(&dir, "bridge-x", Duration::from_secs(1)).unwrap();
        let e = named_lock(&dir, "bridge-x", Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.code, 11, "{e}");
        assert!(e.msg.contains(&dir.join("bridge-x.lock").display().to_string()), "{e}");
        assert_eq!(named_lock(&dir, "../x", Duration::ZERO).unwrap_err().code, 999);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_wait_is_a_minute_unless_the_environment_says_otherwise() {
        assert_eq!(wait_from(None), Duration::from_secs(60));
        assert_eq!(wait_from(Some("0.25")), Duration::from_millis(250));
        assert_eq!(wait_from(Some("300")), Duration::from_secs(300));
        for junk in ["", "soon", "-1", "NaN", "inf"] {
            assert_eq!(wait_from(Some(junk)), Duration::from_secs(60), "{junk:?}");
        }
    }

    #[test]
    fn lock_excludes_a_second_holder_until_dropped() {
        let dir = std::env::temp_dir().join(format!("cni-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("lock");
        let held = FileLock::exclusive(&p).unwrap();
        assert!(FileLock::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(FileLock::try_exclusive(&p).unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
