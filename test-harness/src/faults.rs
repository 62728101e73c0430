//! Killing plugins mid-operation, as a node does (OOM killer, a runtime's
//! timeout, a reboot), two ways:
//!
//! * **Delay**: a real `SIGKILL` (through a pidfd, so never to a recycled
//!   pid) a chosen time after the runtime started plugin *i* of the chain.
//! * **Syscall**: `strace -f` injects `SIGKILL` when the process tree of one
//!   plugin exec (the plugin, the IPAM plugin or DNS daemon it starts, their
//!   threads) makes its *n*-th call of syscall *S* — strace counts per
//!   process and per syscall, so `(S, n)` names one point of the recorded
//!   trace. Sweeping every `(S, n)` of a recorded run kills at every syscall.
//!   The plugin is replaced in the lab's fault bin dir by a script that execs
//!   the real binary under strace (`-DDD`: the tracer is a detached
//!   grandchild, the plugin stays the runtime's child); plugins that another
//!   plugin execs (host-local) are found there too, through `CNI_PATH`.
//!
//! After the operation, [`Armed::settle`] waits for what the killed plugin
//! left running in its process group (an IPAM plugin finishing on its own)
//! and detaches the tracers (`SIGTERM`: strace then lets the remaining
//! tracees — a DNS daemon — run on untraced).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::chainlab::{link_plugins, ChainLab};
use crate::procs::{self, PidFd};
use crate::runtime::{Runtime, SpawnHook, Spawned};

/// CNI verb of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verb {
    Add,
    Del,
}

impl Verb {
    pub fn command(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
        }
    }
}

/// Where a run's plugin is killed.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// No fault (recording, warm-up).
    None,
    /// `SIGKILL` plugin `index` of the chain (`plugin`: its type) `after` the
    /// runtime started it (from just before the spawn, as exec times are measured).
    Delay { index: usize, plugin: String, after: Duration },
    /// `SIGKILL` at the `nth` call of `syscall` in the exec tree of binary `plugin`.
    Syscall(KillPoint),
}

/// One point of a recorded trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KillPoint {
    /// The binary whose exec is traced (`bridge`, `host-local`, `dns-sidecar`, …).
    pub plugin: String,
    pub syscall: String,
    pub nth: u32,
    /// Which process of the tree made that call when recorded (`host-local`,
    /// `dns-sidecar serve`, `bridge+` for a thread or fork of bridge).
    pub role: String,
    /// Position among the trace's distinct points.
    pub position: usize,
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::None => write!(f, "no fault"),
            Fault::Delay { plugin, after, .. } => write!(f, "{plugin} +{:.2} ms", after.as_secs_f64() * 1e3),
            Fault::Syscall(p) => {
                write!(f, "{} #{} {}({}) in {}", p.plugin, p.position, p.syscall, p.nth, p.role)
            }
        }
    }
}

/// A runtime with a fault armed, and what is needed to settle it afterwards.
pub struct Armed {
    pub rt: Runtime,
    groups: Arc<Mutex<Vec<u32>>>,
    killers: Arc<Mutex<Vec<JoinHandle<()>>>>,
    tracer_mark: String,
}

impl Armed {
    /// The lab's runtime with `fault` on `verb`.
    pub fn new(lab: &ChainLab, fault: &Fault, verb: Verb) -> io::Result<Armed> {
        match fault {
            Fault::Syscall(p) => {
                let args = inject_args(&lab.strace_log(), &p.syscall, p.nth);
                Armed::traced(lab, &p.plugin, &args)
            }
            Fault::Delay { index, after, .. } => {
                Ok(Armed::hooked(lab, lab.rt.clone(), Some((*index, *after, verb)), None))
            }
            Fault::None => Ok(Armed::hooked(lab, lab.rt.clone(), None, None)),
        }
    }

    /// The lab's runtime with every exec of binary `plugin` traced whole
    /// (`strace -f`) into the lab's strace log: run one operation, then
    /// [`Armed::settle`] and [`read_trace`].
    pub fn tracing(lab: &ChainLab, plugin: &str) -> io::Result<Armed> {
        Armed::traced(lab, plugin, &["-o".into(), lab.strace_log()])
    }

    fn traced(lab: &ChainLab, plugin: &str, args: &[String]) -> io::Result<Armed> {
        let dir = lab.dir.join("faultbin");
        fault_bin(lab, &dir, plugin, args)?;
        let mut rt = lab.rt.clone();
        rt.bin_dirs = vec![dir];
        // The tree of `plugin`'s exec hangs below the plugin the runtime starts.
        let root = match plugin {
            "host-local" => "bridge",
            "dns-sidecar" => "dnsname",
            p => p,
        };
        Ok(Armed::hooked(lab, rt, None, Some(root.to_string())))
    }

    /// `rt` with a spawn hook that records each plugin's process group,
    /// kills plugin `kill.0` of the list `kill.1` after the runtime started
    /// it for verb `kill.2`, and detaches the lab's tracers once the plugin
    /// of type `detach` and its process group are gone: a tracer keeps the
    /// plugin's stderr open for as long as it traces anything (a DNS daemon
    /// the plugin started, in a session of its own), and the runtime reads
    /// stderr to its end.
    fn hooked(
        lab: &ChainLab,
        mut rt: Runtime,
        kill: Option<(usize, Duration, Verb)>,
        detach: Option<String>,
    ) -> Armed {
        // Faulted execs are not the timings random delays are drawn over.
        rt.exec_log = None;
        let groups: Arc<Mutex<Vec<u32>>> = Arc::default();
        let killers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let mark = lab.strace_log();
        let (g, k, m) = (groups.clone(), killers.clone(), mark.clone());
        rt.spawn_hook = Some(SpawnHook(Arc::new(move |s: &Spawned| {
            g.lock().unwrap().push(s.pid);
            let Ok(fd) = PidFd::open(s.pid) else { return };
            match kill {
                Some((index, after, verb)) if s.index == index && s.command == verb.command() => {
                    let started = s.started;
                    k.lock().unwrap().push(std::thread::spawn(move || {
                        // A real-time thread wakes when asked, not when a busy
                        // machine gets round to it (it only sleeps and signals).
                        let param = libc::sched_param { sched_priority: 1 };
                        // SAFETY: this thread's own policy; failure leaves it as it was.
                        unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
                        std::thread::sleep(after.saturating_sub(started.elapsed()));
                        fd.signal(libc::SIGKILL);
                    }));
                }
                _ if detach.as_deref() == Some(s.plugin.as_str()) => {
                    let (m, pgid) = (m.clone(), s.pid);
                    k.lock().unwrap().push(std::thread::spawn(move || {
                        fd.wait_exit();
                        procs::wait_group_gone(pgid, Duration::from_secs(20));
                        stop_tracers(&m);
                    }));
                }
                _ => {}
            }
        })));
        Armed { rt, groups, killers, tracer_mark: mark }
    }

    /// After the operation: the kill has landed or missed, the killed
    /// plugin's children have finished, the tracers are detached. Returns
    /// what did not settle.
    pub fn settle(&self) -> Vec<String> {
        let mut bad = Vec::new();
        for k in std::mem::take(&mut *self.killers.lock().unwrap()) {
            let _ = k.join();
        }
        for g in std::mem::take(&mut *self.groups.lock().unwrap()) {
            if !procs::wait_group_gone(g, Duration::from_secs(20)) {
                bad.push(format!("processes of killed plugin group {g} still running after 20 s"));
            }
        }
        stop_tracers(&self.tracer_mark);
        bad
    }
}

/// Detach every tracer that writes `mark` (SIGTERM: strace detaches from its
/// tracees and exits); SIGKILL what does not exit.
pub fn stop_tracers(mark: &str) {
    let pids = procs::with_arg(mark);
    if pids.is_empty() {
        return;
    }
    procs::signal_all(&pids, libc::SIGTERM);
    if !procs::wait_gone(&pids, Duration::from_secs(5)) {
        procs::signal_all(&pids, libc::SIGKILL);
        procs::wait_gone(&pids, Duration::from_secs(5));
    }
}

fn inject_args(log: &str, syscall: &str, nth: u32) -> Vec<String> {
    vec![
        "-o".into(),
        log.into(),
        "-e".into(),
        format!("trace={syscall},execve"),
        "-e".into(),
        format!("inject={syscall}:signal=KILL:when={nth}"),
    ]
}

/// The names a binary is exec'd under in the lab (`dns-sidecar` is `dnsname`
/// in the list).
fn exec_names(plugin: &str) -> Vec<&str> {
    match plugin {
        "dns-sidecar" => vec!["dnsname"],
        p => vec![p],
    }
}

/// `dir`: the lab's plugins, with `plugin` exec'd under `strace -DDD -f -q <args>`.
fn fault_bin(lab: &ChainLab, dir: &Path, plugin: &str, args: &[String]) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    link_plugins(&lab.real_bin, dir)?;
    let real = lab.real_bin.join(plugin);
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let script =
        format!("#!/bin/sh\nexec strace -DDD -f -q {} -- '{}' \"$@\"\n", quoted.join(" "), real.display());
    for name in exec_names(plugin) {
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, &script)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, dir.join(name))?;
    }
    Ok(())
}

/// The recorded trace (after [`Armed::settle`]).
pub fn read_trace(lab: &ChainLab) -> io::Result<String> {
    std::fs::read_to_string(lab.strace_log())
}

/// The distinct `(syscall, n)` points of an `strace -f` trace of `plugin`,
/// in the order they were first reached.
pub fn kill_points(plugin: &str, trace: &str) -> Vec<KillPoint> {
    let mut counts: HashMap<(u32, String), u32> = HashMap::new();
    let mut roles: HashMap<u32, String> = HashMap::new();
    let mut seen: BTreeMap<(String, u32), ()> = BTreeMap::new();
    let mut out = Vec::new();
    let mut root = None;
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let rest = rest.trim_start();
        // What a daemon does after the plugin exited is not part of the exec.
        if *root.get_or_insert(pid) == pid && rest.starts_with("+++") {
            break;
        }
        let role = roles.get(&pid).cloned().unwrap_or_else(|| plugin.to_string());
        // A new process or thread takes its creator's role, marked.
        if let Some(child) = creation(rest) {
            roles.insert(child, format!("{}+", role.trim_end_matches('+')));
        }
        if rest.starts_with("<...") {
            continue;
        }
        let Some(name) = rest.split('(').next().filter(|n| !n.is_empty() && n.bytes().all(is_name_byte))
        else {
            continue;
        };
        if name == "execve" {
            roles.insert(pid, exec_role(rest));
        }
        let n = counts.entry((pid, name.to_string())).or_default();
        *n += 1;
        if seen.insert((name.to_string(), *n), ()).is_none() {
            let role = roles.get(&pid).cloned().unwrap_or(role);
            out.push(KillPoint {
                plugin: plugin.into(),
                syscall: name.into(),
                nth: *n,
                role,
                position: out.len(),
            });
        }
    }
    out
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// The pid a `clone`/`clone3`/`fork`/`vfork` line reports as created.
fn creation(rest: &str) -> Option<u32> {
    let name = rest.trim_start_matches("<... ").split(['(', ' ']).next()?;
    if !matches!(name, "clone" | "clone3" | "fork" | "vfork") {
        return None;
    }
    rest.rsplit_once(") = ")?.1.split_whitespace().next()?.parse().ok()
}

/// `execve("/x/dns-sidecar", ["/x/dns-sidecar", "serve", …` → `dns-sidecar serve`.
fn exec_role(rest: &str) -> String {
    let path = rest.split('"').nth(1).unwrap_or("?");
    let base = path.rsplit('/').next().unwrap_or(path);
    if rest.contains("\"serve\"") {
        format!("{base} serve")
    } else {
        base.to_string()
    }
}

/// Which processes the lab's fault log shows killed by `SIGKILL` (their roles).
pub fn killed_roles(lab: &ChainLab, plugin: &str) -> Vec<String> {
    let Ok(log) = std::fs::read_to_string(lab.strace_log()) else { return Vec::new() };
    let mut roles: HashMap<u32, String> = HashMap::new();
    let mut out = Vec::new();
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(' ') else { continue };
        let Ok(pid) = pid.parse::<u32>() else { continue };
        let rest = rest.trim_start();
        if rest.starts_with("execve(") {
            roles.insert(pid, exec_role(rest));
        }
        if rest.starts_with("+++ killed by SIGKILL") {
            out.push(roles.get(&pid).cloned().unwrap_or_else(|| format!("{plugin}+")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kill_points_count_per_process_and_syscall() {
        let trace = "\
10 execve(\"/b/bridge\", [\"/b/bridge\"], 0x1 /* 3 vars */) = 0
10 openat(AT_FDCWD, \"a\", O_RDONLY) = 3
10 clone3({flags=CLONE_VM, child_tid=0x1}, 88 <unfinished ...>
11 openat(AT_FDCWD, \"b\", O_RDONLY) = 3
10 <... clone3 resumed>) = 11
10 openat(AT_FDCWD, \"c\", O_RDONLY) = 3
12 execve(\"/b/dns-sidecar\", [\"/b/dns-sidecar\", \"serve\", \"n\"], 0x1 /* 3 vars */) = 0
12 openat(AT_FDCWD, \"d\", O_RDONLY) = 3
12 openat(AT_FDCWD, \"e\", O_RDONLY) = 3
12 openat(AT_FDCWD, \"f\", O_RDONLY) = 3
10 +++ exited with 0 +++
";
        let p = kill_points("bridge", trace);
        let got: Vec<(String, u32, String)> =
            p.iter().map(|k| (k.syscall.clone(), k.nth, k.role.clone())).collect();
        assert_eq!(
            got,
            vec![
                ("execve".into(), 1, "bridge".into()),
                ("openat".into(), 1, "bridge".into()),
                ("clone3".into(), 1, "bridge".into()),
                ("openat".into(), 2, "bridge".into()),
                ("openat".into(), 3, "dns-sidecar serve".into()),
            ]
        );
        assert!(p.iter().enumerate().all(|(i, k)| k.position == i));
    }
}
