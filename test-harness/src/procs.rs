//! Processes a test started, found again through `/proc`: a killed plugin's
//! process group, the daemons and tracers of one lab (recognised by a path
//! unique to the lab in their environment or argv — never by a name alone),
//! and race-free signals through pidfds.

use std::io;
use std::time::{Duration, Instant};

/// Every pid in `/proc`.
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect()
}

/// The NUL-separated fields of `/proc/<pid>/<file>` (`cmdline`, `environ`).
pub fn proc_strings(pid: u32, file: &str) -> Vec<String> {
    std::fs::read(format!("/proc/{pid}/{file}"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// State letter and process group of `pid` (`/proc/<pid>/stat`), if it exists.
fn stat(pid: u32) -> Option<(char, u32)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ppid pgrp ...": comm may hold spaces and parentheses.
    let mut rest = s.rsplit_once(')')?.1.split_whitespace();
    let state = rest.next()?.chars().next()?;
    let pgrp = rest.nth(1)?.parse().ok()?;
    Some((state, pgrp))
}

/// True while `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(s, _)| s != 'Z' && s != 'X')
}

/// Live processes of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| stat(p).is_some_and(|(s, g)| g == pgid && s != 'Z' && s != 'X'))
        .collect()
}

/// Wait until process group `pgid` has no live process (a killed plugin's
/// children — an IPAM plugin it was waiting for — finish on their own).
/// False when some are still running after `timeout`.
pub fn wait_group_gone(pgid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if group_members(pgid).is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Live processes whose environment has exactly `key=value`.
pub fn with_env(key: &str, value: &str) -> Vec<u32> {
    let want = format!("{key}={value}");
    all_pids().into_iter().filter(|&p| alive(p) && proc_strings(p, "environ").contains(&want)).collect()
}

/// Live processes with `arg` as one of their argv elements.
pub fn with_arg(arg: &str) -> Vec<u32> {
    all_pids()
        .into_iter()
        .filter(|&p| alive(p) && proc_strings(p, "cmdline").iter().any(|a| a == arg))
        .collect()
}

/// A process handle that cannot be confused with a later process reusing the pid.
#[derive(Debug)]
pub struct PidFd(i32);

impl PidFd {
    pub fn open(pid: u32) -> io::Result<PidFd> {
        // SAFETY: plain syscall with a pid and no flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(PidFd(fd as i32))
    }

    /// Send `sig`; false when the process is already gone.
    pub fn signal(&self, sig: i32) -> bool {
        // SAFETY: our open pidfd, no siginfo, no flags.
        unsafe {
            libc::syscall(libc::SYS_pidfd_send_signal, self.0, sig, std::ptr::null::<libc::siginfo_t>(), 0)
                == 0
        }
    }
}

impl PidFd {
    /// Block until the process has exited (zombie or reaped).
    pub fn wait_exit(&self) {
        let mut p = libc::pollfd { fd: self.0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd; a pidfd is readable once the process exits.
        while unsafe { libc::poll(&mut p, 1, -1) } < 0 {}
    }
}

impl Drop for PidFd {
    fn drop(&mut self) {
        // SAFETY: we own the fd.
        unsafe { libc::close(self.0) };
    }
}

/// Signal each of `pids` (found by [`with_env`]/[`with_arg`], so ours).
pub fn signal_all(pids: &[u32], sig: i32) {
    for &p in pids {
        if let Ok(fd) = PidFd::open(p) {
            fd.signal(sig);
        }
    }
}

/// Wait until none of `pids` is alive; false on timeout.
pub fn wait_gone(pids: &[u32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    true
}
