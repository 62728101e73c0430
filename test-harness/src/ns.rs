//! Network namespace fixtures: a uniquely named netns per fixture, removed
//! (with everything in it) on drop. Tests create everything inside namespaces
//! they made and never touch the machine's own interfaces, routes or ruleset.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::netns::Netns;

use crate::exec::{enter_netns_on_spawn, run_captured, PluginOutput};
use crate::tmp::unique_suffix;

/// A named netns (`ip netns add cni-t-<pid>-<n>`), deleted on drop.
#[derive(Debug)]
pub struct TestNs {
    name: String,
    path: PathBuf,
}

/// The netns a test uses as "the host": plugins run with it as their own netns.
pub type HostNs = TestNs;
/// A container's netns (`CNI_NETNS`).
pub type ContainerNs = TestNs;

impl TestNs {
    /// Create a fresh, empty netns (only `lo`, down).
    pub fn new() -> io::Result<TestNs> {
        let name = format!("cni-t-{}", unique_suffix());
        let mut last = String::new();
        // `ip netns add` can race with another one setting up /run/netns.
        for _ in 0..3 {
            let out = Command::new("ip").args(["netns", "add", &name]).output()?;
            if out.status.success() {
                let path = PathBuf::from("/run/netns").join(&name);
                return Ok(TestNs { name, path });
            }
            last = String::from_utf8_lossy(&out.stderr).trim().to_string();
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Err(io::Error::other(format!("ip netns add {name}: {last}")))
    }

    /// A fresh netns whose `lo` is up.
    pub fn with_lo() -> io::Result<TestNs> {
        let ns = TestNs::new()?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path as a string (for `CNI_NETNS`).
    pub fn path_str(&self) -> String {
        self.path.to_string_lossy().into_owned()
    }

    /// Open it as our common `Netns`.
    pub fn netns(&self) -> io::Result<Netns> {
        Netns::open(&self.path)
    }

    /// The netns inode (what `readlink /proc/self/ns/net` shows as `net:[N]`).
    pub fn inode(&self) -> io::Result<u64> {
        Ok(std::fs::metadata(&self.path)?.ino())
    }

    /// Run a Rust closure on a thread inside this netns (`Netns::run`).
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        self.netns()?.run(f)
    }

    /// A `Command` for `program` that enters this netns between fork and exec
    /// (fast; no `/sys` remount: use [`TestNs::exec`] for tools reading /sys).
    /// Keep the returned guard alive until the command is spawned.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> io::Result<(Command, std::fs::File)> {
        let mut cmd = Command::new(program);
        let guard = enter_netns_on_spawn(&mut cmd, &self.path)?;
        Ok((cmd, guard))
    }

    /// Run `argv` inside this netns (setns before exec) and capture its output.
    pub fn spawn(&self, argv: &[&str], stdin: &[u8]) -> io::Result<PluginOutput> {
        let (prog, args) = argv.split_first().ok_or_else(|| io::Error::other("empty argv"))?;
        run_captured(
            || {
                let mut c = Command::new(prog);
                c.args(args);
                c
            },
            Some(&self.path),
            stdin,
        )
    }

    /// `ip netns exec NAME argv…`, output captured whatever the exit code.
    pub fn exec(&self, argv: &[&str]) -> io::Result<Output> {
        Command::new("ip").args(["netns", "exec", &self.name]).args(argv).output()
    }

    /// `ip netns exec NAME argv…`; error (with stderr) unless it exits 0; stdout.
    pub fn exec_ok(&self, argv: &[&str]) -> io::Result<String> {
        checked(&format!("ip netns exec {} {}", self.name, argv.join(" ")), self.exec(argv)?)
    }

    /// `ip -n NAME args…`; error (with stderr) unless it exits 0; stdout.
    pub fn ip(&self, args: &[&str]) -> io::Result<String> {
        let out = Command::new("ip").args(["-n", &self.name]).args(args).output()?;
        checked(&format!("ip -n {} {}", self.name, args.join(" ")), out)
    }

    /// `ip -n NAME -j args…` parsed (an empty output is `[]`).
    pub fn ip_json(&self, args: &[&str]) -> io::Result<serde_json::Value> {
        let out = Command::new("ip").args(["-n", &self.name, "-j"]).args(args).output()?;
        let text = checked(&format!("ip -n {} -j {}", self.name, args.join(" ")), out)?;
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Array(Vec::new()));
        }
        serde_json::from_str(&text).map_err(|e| io::Error::other(format!("ip -j output: {e}: {text}")))
    }

    /// Bring `lo` up.
    pub fn lo_up(&self) -> io::Result<()> {
        self.ip(&["link", "set", "lo", "up"]).map(drop)
    }

    /// A sysctl of this netns, e.g. `net.ipv4.ip_forward` (read via /proc/sys
    /// from a thread inside the netns).
    pub fn sysctl(&self, key: &str) -> io::Result<String> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        self.run(move || std::fs::read_to_string(path))?.map(|s| s.trim().to_string())
    }

    /// Set a sysctl of this netns.
    pub fn set_sysctl(&self, key: &str, value: &str) -> io::Result<()> {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let value = value.to_string();
        self.run(move || std::fs::write(path, value))?
    }

    /// Leave this netns as two processes writing `ip_forward` at once can
    /// (the kernel puts the old value back to retry when RTNL is busy, and a
    /// writer that read the interim 1 changes nothing), and as a node's
    /// sysctl.d may: ip_forward reads 1, yet every interface made from now
    /// on starts with IPv4 forwarding off.
    pub fn forwarding_on_but_off_for_new_interfaces(&self) -> io::Result<()> {
        self.set_sysctl("net.ipv4.ip_forward", "1")?;
        self.set_sysctl("net.ipv4.conf.default.forwarding", "0")
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).output();
    }
}

fn checked(what: &str, out: Output) -> io::Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "{what}: exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// A veth pair `a_if` (in `a`) <-> `b_if` (in `b`), both up.
pub fn veth(a: &TestNs, a_if: &str, b: &TestNs, b_if: &str) -> io::Result<()> {
    a.ip(&["link", "add", "name", a_if, "type", "veth", "peer", "name", b_if, "netns", b.name()])?;
    a.ip(&["link", "set", a_if, "up"])?;
    b.ip(&["link", "set", b_if, "up"])?;
    Ok(())
}

/// Names of the namespaces `ip netns list` shows.
pub fn netns_names() -> io::Result<Vec<String>> {
    let out = Command::new("ip").args(["netns", "list"]).output()?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect())
}

/// True when running as root (root tests skip themselves otherwise).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// First line of a root test: returns from it, saying so, unless root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}
