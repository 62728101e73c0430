//! A plugin's long-lived helper (dns-sidecar's DNS server, the overlay's
//! agent): the plugin's own binary started again as `<exe> serve <network>`,
//! detached from the runtime that called the plugin, which tells the plugin
//! on a pipe when it is ready; and how a plugin ends one that no longer
//! answers.
//!
//! The helper is in its own session (the runtime's signals to the plugin's
//! process group do not reach it), in `/`, with umask 077, stdin and stdout
//! on /dev/null and no `CNI_*` variables. The write end of the readiness pipe
//! is its fd 3, named by an environment variable; it writes one line, `ok` or
//! its error, and the plugin waits for that line a bounded time.

use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Why a helper did not start.
#[derive(Debug)]
pub enum NotStarted {
    /// It could not be run at all.
    Spawn(io::Error),
    /// Its readiness line was not `ok` (empty: it exited without a word).
    Said(String),
    /// No line within the time allowed.
    Silent(io::Error),
}

impl fmt::Display for NotStarted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotStarted::Spawn(e) => write!(f, "could not be started: {e}"),
            NotStarted::Said(s) if s.is_empty() => write!(f, "exited"),
            NotStarted::Said(s) => write!(f, "{s}"),
            NotStarted::Silent(e) => write!(f, "{e}"),
        }
    }
}

/// Start `exe serve <network>` as a detached helper, its stderr to `stderr`,
/// and wait up to `timeout` for its readiness line. A helper that does not
/// say `ok` is killed and reaped.
pub fn start(
    exe: &Path,
    network: &str,
    ready_env: &str,
    stderr: Stdio,
    timeout: Duration,
) -> Result<(), NotStarted> {
    let mut fds = [0; 2];
    // SAFETY: fds is an array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(NotStarted::Spawn(io::Error::last_os_error()));
    }
    // SAFETY: both fds are fresh and ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wfd = w.as_raw_fd();
    let mut cmd = Command::new(exe);
    cmd.arg("serve")
        .arg(network)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .current_dir("/")
        .env(ready_env, "3");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(k);
        }
    }
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(io::Error::last_os_error());
            }
            if wfd == 3 {
                if libc::fcntl(3, libc::F_SETFD, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(wfd, 3) < 0 {
                return Err(io::Error::last_os_error());
            }
            libc::umask(0o077);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(NotStarted::Spawn)?;
    drop(w);
    let said = read_line(r, timeout);
    if matches!(said.as_deref().map(str::trim), Ok("ok")) {
        return Ok(());
    }
    let _ = child.kill();
    let _ = child.wait();
    Err(match said {
        Ok(line) => NotStarted::Said(line.trim().to_string()),
        Err(e) => NotStarted::Silent(e),
    })
}

/// Read up to the first newline (or EOF) within `timeout`.
fn read_line(r: OwnedFd, timeout: Duration) -> io::Result<String> {
    let deadline = Instant::now() + timeout;
    let mut f = std::fs::File::from(r);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "timed out waiting for it to get ready"));
        }
        let mut p = libc::pollfd { fd: f.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        if unsafe { libc::poll(&mut p, 1, left.as_millis().max(1) as _) } <= 0 {
            continue;
        }
        match f.read(&mut buf) {
            Ok(0) => return Ok(String::from_utf8_lossy(&out).into_owned()),
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.contains(&b'\n') {
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The helper's end of the readiness pipe (none when it was not started by
/// [`start`]).
pub struct ReadyPipe(Option<OwnedFd>);

impl ReadyPipe {
    /// The pipe named by `ready_env`, which is then removed from the
    /// environment (the helper's own children do not inherit it).
    pub fn from_env(ready_env: &str) -> ReadyPipe {
        let fd = std::env::var(ready_env).ok().and_then(|v| v.parse::<i32>().ok()).filter(|fd| *fd > 2);
        std::env::remove_var(ready_env);
        // SAFETY: the plugin passed this fd for exactly this use; F_GETFD checks it is open.
        ReadyPipe(
            fd.filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
                .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
        )
    }

    /// Say the one line (`ok\n` or the error) and close the pipe.
    pub fn say(&mut self, line: &str) {
        if let Some(fd) = self.0.take() {
            let _ = std::fs::File::from(fd).write_all(line.as_bytes());
        }
    }
}

/// Send one command line on the helper's control socket at `path`; its
/// one-line reply, trimmed (a helper that closes without one: empty).
pub fn ask(path: &Path, cmd: &str, timeout: Duration) -> io::Result<String> {
    let mut s = crate::sockaddr::with_unix_path(path, |p| UnixStream::connect(p))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(format!("{cmd}\n").as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line)?;
    Ok(line.trim().to_string())
}

/// Is `pid` a helper serving `network` (and not a recycled pid)?
pub fn is_serving(pid: i32, network: &str) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| serves(&c, network))
}

fn serves(cmdline: &[u8], network: &str) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.len() >= 3 && args[1] == b"serve" && args[2] == network.as_bytes()
}

/// Wait until `running` says no; false when it still runs after `within`.
pub fn wait_gone(mut running: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while running() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

/// End a helper that did not leave when asked: SIGTERM, then SIGKILL, each
/// given `within` to take effect — only while `pid` still is the helper of
/// `network` (a pidfile can outlive its process, and the pid be reused).
pub fn end(pid: Option<i32>, network: &str, mut running: impl FnMut() -> bool, within: Duration) {
    let Some(pid) = pid.filter(|p| is_serving(*p, network)) else { return };
    for sig in [libc::SIGTERM, libc::SIGKILL] {
        // SAFETY: signalling a process just verified to be the helper.
        unsafe { libc::kill(pid, sig) };
        if wait_gone(&mut running, within) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    /// An executable shell script in a fresh directory.
    fn script(name: &str, body: &str) -> (tempdir::Dir, PathBuf) {
        let dir = tempdir::Dir::new(name);
        let path = dir.0.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        (dir, path)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new(tag: &str) -> Dir {
                let p = std::env::temp_dir().join(format!("cnirs-daemon-{tag}-{}", std::process::id()));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn a_helper_that_says_ok_runs_detached_with_its_arguments() {
        let (dir, exe) = script(
            "ok",
            r#"echo "$1 $2 ${CNI_DAEMON_TEST-unset} $(pwd) $(umask) $(cut -d' ' -f6 /proc/$$/stat) $$" > "$0.out"
echo ok >&3"#,
        );
        // No other test reads this variable: setting it does not race with them.
        std::env::set_var("CNI_DAEMON_TEST", "set");
        start(&exe, "net1", "TEST_READY_FD", Stdio::null(), Duration::from_secs(10)).unwrap();
        // It wrote before it said ok.
        let out = std::fs::read_to_string(dir.0.join("ok.out")).unwrap();
        let words: Vec<&str> = out.split_whitespace().collect();
        assert_eq!(&words[..5], ["serve", "net1", "unset", "/", "0077"]);
        // Its own session: the session id is its pid.
        assert_eq!(words[5], words[6]);
    }

    #[test]
    fn a_helper_that_fails_or_exits_is_reported_and_reaped() {
        let (_d, exe) = script("err", "echo 'err no such network' >&3");
        match start(&exe, "n", "TEST_READY_FD", Stdio::null(), Duration::from_secs(10)) {
            Err(NotStarted::Said(s)) => assert_eq!(s, "err no such network"),
            other => panic!("{other:?}"),
        }
        let (_d, exe) = script("exit", "exit 3");
        let e = start(&exe, "n", "TEST_READY_FD", Stdio::null(), Duration::from_secs(10)).unwrap_err();
        assert_eq!(e.to_string(), "exited");
        let e = start(Path::new("/nonexistent/helper"), "n", "X", Stdio::null(), Duration::from_secs(1))
            .unwrap_err();
        assert!(matches!(e, NotStarted::Spawn(_)), "{e:?}");
    }

    #[test]
    fn a_silent_helper_is_killed_after_the_timeout() {
        let (dir, exe) = script("silent", r#"echo $$ > "$0.pid"; exec sleep 30"#);
        let t = Instant::now();
        let e = start(&exe, "n", "TEST_READY_FD", Stdio::null(), Duration::from_millis(300)).unwrap_err();
        assert!(matches!(&e, NotStarted::Silent(io) if io.kind() == io::ErrorKind::TimedOut), "{e:?}");
        assert!(t.elapsed() < Duration::from_secs(10));
        let pid = std::fs::read_to_string(dir.0.join("silent.pid")).unwrap();
        // Killed and reaped: no process, not even a zombie.
        assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
    }

    #[test]
    fn ask_sends_one_line_and_reads_one_back() {
        let dir = tempdir::Dir::new("ask");
        let path = dir.0.join("ctl");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let helper = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut cmd = String::new();
            BufReader::new(&s).read_line(&mut cmd).unwrap();
            (&s).write_all(format!("ok {}", cmd.trim()).as_bytes()).unwrap();
        });
        assert_eq!(ask(&path, "reload", Duration::from_secs(5)).unwrap(), "ok reload");
        helper.join().unwrap();
        let e = ask(&dir.0.join("none"), "x", Duration::from_secs(1)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn only_the_helper_of_that_network_is_recognised() {
        assert!(serves(b"/opt/cni/bin/dnsname\0serve\0podman\0", "podman"));
        assert!(!serves(b"/opt/cni/bin/dnsname\0serve\0podman2\0", "podman"));
        assert!(!serves(b"/usr/bin/sleep\0podman\0", "podman"));
        assert!(!serves(b"", "podman"));
        assert!(!is_serving(std::process::id() as i32, "podman"));
    }

    #[test]
    fn a_helper_that_ignores_sigterm_is_killed() {
        // `sh serve net1`: argv[1] and [2] as a real helper's.
        let (dir, _) = script("serve", "trap '' TERM\nwhile :; do sleep 0.01; done");
        let mut child = Command::new("/bin/sh").args(["serve", "net1"]).current_dir(&dir.0).spawn().unwrap();
        let pid = child.id() as i32;
        assert!(wait_gone(|| !is_serving(pid, "net1"), Duration::from_secs(5)));
        let mut running = || child.try_wait().unwrap().is_none();
        end(Some(pid), "other", &mut running, Duration::from_millis(200));
        assert!(running(), "a helper of another network is left alone");
        end(Some(pid), "net1", &mut running, Duration::from_millis(300));
        assert!(!running());
    }
}
