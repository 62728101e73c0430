//! Test helper: a named netns (`ip netns add cni-nft-test-<pid>-<n>`) that is
//! deleted on drop, and commands run inside it. Root tests skip without root.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::netns::Netns;

static COUNT: AtomicUsize = AtomicUsize::new(0);

pub(crate) struct TestNs {
    pub name: String,
}

impl TestNs {
    /// None (and a note on stderr) when not root.
    pub fn new(tag: &str) -> Option<TestNs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return None;
        }
        let n = COUNT.fetch_add(1, Ordering::SeqCst);
        let name = format!("cni-{tag}-test-{}-{n}", std::process::id());
        let ok = Command::new("ip").args(["netns", "add", &name]).status().unwrap().success();
        assert!(ok, "ip netns add {name}");
        Some(TestNs { name })
    }

    pub fn netns(&self) -> Netns {
        Netns::open(format!("/run/netns/{}", self.name)).unwrap()
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name]).args(args);
        c
    }

    /// Run a command in the netns; panics on failure; returns stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Run a command with `input` on stdin; panics on failure.
    pub fn run_stdin(&self, args: &[&str], input: &str) -> String {
        let mut child = self
            .cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }
}

impl Drop for TestNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}
