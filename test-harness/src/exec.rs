//! Exec'ing a plugin the way libcni's `RawExec` does: config on stdin, `CNI_*`
//! in the environment, result or error JSON on stdout — optionally with a
//! given netns as the plugin's own ("the host netns" of a test).

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::CniError;

/// What one plugin process did.
#[derive(Clone, Debug, Default)]
pub struct PluginOutput {
    pub stdout: String,
    pub stderr: String,
    /// Exit code; `None` when killed by a signal.
    pub exit_code: Option<i32>,
}

impl PluginOutput {
    pub fn success(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// Make `cmd` enter the netns at `netns` between fork and exec (setns in
/// `pre_exec`): the child's own netns is then that one, without the mount
/// namespace games of `ip netns exec`. The returned file must outlive the spawn.
pub fn enter_netns_on_spawn(cmd: &mut Command, netns: &Path) -> io::Result<File> {
    let file = File::open(netns)
        .map_err(|e| io::Error::new(e.kind(), format!("open netns {}: {e}", netns.display())))?;
    let fd = file.as_raw_fd();
    // SAFETY: only an async-signal-safe syscall runs between fork and exec; the
    // fd stays open in the child until exec (it is CLOEXEC, which is fine).
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(file)
}

/// Run `cmd` with `stdin` fed in and stdout/stderr captured. When `netns` is
/// given the child runs inside it. Retries up to 5 times on `ETXTBSY` (a
/// binary or script still open for writing somewhere), like libcni.
pub fn run_captured(
    make: impl FnMut() -> Command,
    netns: Option<&Path>,
    stdin: &[u8],
) -> io::Result<PluginOutput> {
    run_captured_observed(make, netns, stdin, &mut |_| {})
}

/// [`run_captured`], calling `spawned` with the child's pid as soon as it
/// runs (before it can exit and be reaped, so the pid is still its own).
pub fn run_captured_observed(
    mut make: impl FnMut() -> Command,
    netns: Option<&Path>,
    stdin: &[u8],
    spawned: &mut dyn FnMut(u32),
) -> io::Result<PluginOutput> {
    let mut attempt = 0;
    loop {
        let mut cmd = make();
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let _ns = match netns {
            Some(p) => Some(enter_netns_on_spawn(&mut cmd, p)?),
            None => None,
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 << attempt));
                continue;
            }
            Err(e) => return Err(e),
        };
        spawned(child.id());
        let mut input = child.stdin.take().expect("piped stdin");
        let out = std::thread::scope(|s| {
            // Feed stdin from another thread: a plugin may write before it reads.
            s.spawn(move || {
                let _ = input.write_all(stdin);
            });
            child.wait_with_output()
        })?;
        return Ok(PluginOutput {
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            exit_code: out.status.code().or_else(|| out.status.signal().map(|s| 128 + s)),
        });
    }
}

/// Find the binary named `name` in `dirs` (libcni `FindInPath`).
pub fn find_plugin(name: &str, dirs: &[PathBuf]) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Why a runtime operation failed: which plugin, how, and everything it printed.
#[derive(Clone, Debug, Default)]
pub struct InvokeError {
    /// `ADD`, `DEL`, `CHECK`, `GC` or `STATUS`.
    pub command: String,
    /// The plugin's `type` (empty when the failure is the runtime's own, e.g. the cache).
    pub plugin: String,
    /// Position of the plugin in the list.
    pub index: Option<usize>,
    /// The plugin's exit code; `None` when it did not run or was killed.
    pub exit_code: Option<i32>,
    /// The CNI error object the plugin printed on stdout, if any.
    pub error: Option<CniError>,
    pub stdout: String,
    pub stderr: String,
    /// A one-line description, libcni-style.
    pub message: String,
}

impl InvokeError {
    /// The CNI error code, when the plugin printed an error object.
    pub fn code(&self) -> Option<u32> {
        self.error.as_ref().map(|e| e.code)
    }

    /// The CNI error message (or the runtime's own message).
    pub fn msg(&self) -> &str {
        self.error.as_ref().map(|e| e.msg.as_str()).unwrap_or(&self.message)
    }

    pub(crate) fn runtime(command: &str, message: impl Into<String>) -> InvokeError {
        InvokeError { command: command.into(), message: message.into(), ..Default::default() }
    }

    /// From a failed plugin run: parse the error object from stdout; when
    /// stdout is empty, libcni wraps stderr text instead.
    pub(crate) fn from_output(command: &str, plugin: &str, index: usize, out: PluginOutput) -> InvokeError {
        let error = parse_error(&out.stdout);
        let message = match (&error, out.stdout.trim().is_empty()) {
            (Some(e), _) => format!("plugin type={plugin:?} failed ({}): {e}", command.to_lowercase()),
            (None, true) => format!(
                "plugin type={plugin:?} failed ({}): netplugin failed: {:?}",
                command.to_lowercase(),
                out.stderr.trim()
            ),
            (None, false) => format!(
                "plugin type={plugin:?} failed ({}): netplugin failed but error parsing its diagnostic message {:?}",
                command.to_lowercase(),
                out.stdout.trim()
            ),
        };
        InvokeError {
            command: command.into(),
            plugin: plugin.into(),
            index: Some(index),
            exit_code: out.exit_code,
            error,
            stdout: out.stdout,
            stderr: out.stderr,
            message,
        }
    }
}

/// `{"code": N, "msg": "...", "details": "..."}` → CniError.
pub fn parse_error(stdout: &str) -> Option<CniError> {
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).ok()?;
    let code = v.get("code")?.as_u64()? as u32;
    let text = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
    Some(CniError { code, msg: text("msg"), details: text("details") })
}

impl fmt::Display for InvokeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(c) = self.exit_code {
            write!(f, " [exit {c}]")?;
        }
        if !self.stderr.trim().is_empty() && self.error.is_some() {
            write!(f, "\n--- plugin stderr:\n{}", self.stderr.trim_end())?;
        }
        Ok(())
    }
}

impl std::error::Error for InvokeError {}

/// Run the plugin binary `bin` directly, as a runtime would, with exactly the
/// `env` given (nothing inherited) and `stdin`, inside `netns` when given.
pub fn run_plugin(
    bin: &Path,
    netns: Option<&Path>,
    env: &[(&str, &str)],
    stdin: &[u8],
) -> io::Result<PluginOutput> {
    run_captured(
        || {
            let mut c = Command::new(bin);
            c.env_clear().envs(env.iter().copied());
            c
        },
        netns,
        stdin,
    )
}

/// [`run_plugin`] for a plugin that might hang: one still running after
/// `limit` is killed and reported as `ErrorKind::TimedOut`. A hang detector,
/// not a speed check: pick a limit far above any normal run.
pub fn run_plugin_within(
    bin: &Path,
    netns: Option<&Path>,
    env: &[(&str, &str)],
    stdin: &[u8],
    limit: Duration,
) -> io::Result<PluginOutput> {
    run_plugin_feeding(bin, netns, env, |mut w| drop(w.write_all(stdin)), limit)
}

/// [`run_plugin_within`] with stdin written by `feed` on its own thread
/// (e.g. a stream that never ends); the run ends when the plugin does.
pub fn run_plugin_feeding(
    bin: &Path,
    netns: Option<&Path>,
    env: &[(&str, &str)],
    feed: impl FnOnce(std::process::ChildStdin) + Send,
    limit: Duration,
) -> io::Result<PluginOutput> {
    use std::io::Read;
    let mut cmd = Command::new(bin);
    cmd.env_clear().envs(env.iter().copied());
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let _ns = match netns {
        Some(p) => Some(enter_netns_on_spawn(&mut cmd, p)?),
        None => None,
    };
    let mut child = cmd.spawn()?;
    let (input, mut out, mut err) = (
        child.stdin.take().expect("piped"),
        child.stdout.take().expect("piped"),
        child.stderr.take().expect("piped"),
    );
    let started = std::time::Instant::now();
    std::thread::scope(|s| {
        s.spawn(move || feed(input));
        let stdout = s.spawn(move || {
            let mut buf = Vec::new();
            let _ = out.read_to_end(&mut buf);
            buf
        });
        let stderr = s.spawn(move || {
            let mut buf = Vec::new();
            let _ = err.read_to_end(&mut buf);
            buf
        });
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > limit {
                // Our own child, by its handle; its pipes close with it.
                let _ = child.kill();
                let _ = child.wait();
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("{} still running after {limit:?}: killed", bin.display()),
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        Ok(PluginOutput {
            stdout: String::from_utf8_lossy(&stdout.join().expect("reader")).into_owned(),
            stderr: String::from_utf8_lossy(&stderr.join().expect("reader")).into_owned(),
            exit_code: status.code().or_else(|| status.signal().map(|s| 128 + s)),
        })
    })
}

/// What the kernel accounted to one finished process (`wait4`'s rusage).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Usage {
    /// Peak resident set size in KiB (`ru_maxrss`): the process's own, or a
    /// child's it waited for when that is larger.
    pub max_rss_kib: u64,
    /// User and system CPU time in microseconds.
    pub user_us: u64,
    pub sys_us: u64,
}

/// [`run_captured`] with the child reaped by `wait4`, so its resource usage
/// is known, and no helper thread. Without `netns` the command is spawned from
/// the calling thread (and so in that thread's netns, with `posix_spawn`),
/// like a runtime that lives in the host netns. `stdin` is written before the
/// output is read, so it must fit a pipe buffer (64 KiB), as CNI requests do.
pub fn run_with_usage(
    mut cmd: Command,
    netns: Option<&Path>,
    stdin: &[u8],
) -> io::Result<(PluginOutput, Usage)> {
    use std::io::Read;
    let _ns = match netns {
        Some(p) => Some(enter_netns_on_spawn(&mut cmd, p)?),
        None => None,
    };
    if stdin.len() > 60 * 1024 {
        return Err(io::Error::other("stdin larger than a pipe buffer"));
    }
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut attempt = 0;
    let mut child = loop {
        match cmd.spawn() {
            Ok(c) => break c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20 << attempt));
            }
            Err(e) => return Err(e),
        }
    };
    if let Some(mut input) = child.stdin.take() {
        // EPIPE when the plugin exits without reading: not our concern.
        let _ = input.write_all(stdin);
    }
    let (mut out, mut err) = (child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let (mut obuf, mut ebuf) = (Vec::new(), Vec::new());
    // Drain both pipes with poll, on this thread.
    let (mut o_open, mut e_open) = (true, true);
    let mut chunk = [0u8; 8192];
    while o_open || e_open {
        let mut fds = [
            libc::pollfd { fd: if o_open { out.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: if e_open { err.as_raw_fd() } else { -1 }, events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfd entries (negative fds are ignored by poll).
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if o_open && fds[0].revents != 0 {
            match out.read(&mut chunk)? {
                0 => o_open = false,
                n => obuf.extend_from_slice(&chunk[..n]),
            }
        }
        if e_open && fds[1].revents != 0 {
            match err.read(&mut chunk)? {
                0 => e_open = false,
                n => ebuf.extend_from_slice(&chunk[..n]),
            }
        }
    }
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: zeroed rusage is valid plain data; filled by wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: our own child, valid out pointers. std never reaps it on its own.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let exit_code = if libc::WIFEXITED(status) {
        Some(libc::WEXITSTATUS(status))
    } else if libc::WIFSIGNALED(status) {
        Some(128 + libc::WTERMSIG(status))
    } else {
        None
    };
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Ok((
        PluginOutput {
            stdout: String::from_utf8_lossy(&obuf).into_owned(),
            stderr: String::from_utf8_lossy(&ebuf).into_owned(),
            exit_code,
        },
        Usage { max_rss_kib: ru.ru_maxrss as u64, user_us: us(ru.ru_utime), sys_us: us(ru.ru_stime) },
    ))
}
