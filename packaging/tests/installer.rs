//! cni-rs-install on real plugin binaries (target/<profile>; build them first:
//! `cargo build --workspace --bins`). No root needed: files and execs only.
//! Versions other than ours are made by rewriting the marker in a copy.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use test_harness::{target_bin_dir, TempDir};

const PLUGINS: &[&str] = &["loopback", "bridge", "host-local"];
const PREFIX: &[u8] = b"\0cni-rs-plugins version ";

fn installer() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cni-rs-install"))
}

/// The plugin binary with its marker saying `version` (no longer than ours).
fn with_version(bytes: &[u8], version: &str) -> Vec<u8> {
    let at =
        bytes.windows(PREFIX.len()).position(|w| w == PREFIX).expect("marker in the plugin") + PREFIX.len();
    let end = at + bytes[at..].iter().position(|&b| b == 0).unwrap();
    assert!(version.len() <= end - at, "{version} longer than the marker's room");
    let mut out = bytes.to_vec();
    out[at..end].fill(0);
    out[at..at + version.len()].copy_from_slice(version.as_bytes());
    out
}

/// A source dir as the image holds it: the plugins marked `version`, plus the
/// tarball's LICENSE and README.md (not executable, not installed).
fn source(version: &str) -> TempDir {
    let d = TempDir::new().unwrap();
    for p in PLUGINS {
        let bytes =
            fs::read(target_bin_dir().join(p)).expect("plugin built (cargo build --workspace --bins)");
        let dest = d.join(p);
        fs::write(&dest, with_version(&bytes, version)).unwrap();
        fs::set_permissions(&dest, fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(d.join("LICENSE"), "license text\n").unwrap();
    fs::write(d.join("README.md"), "readme\n").unwrap();
    d
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(installer()).args(args).output().unwrap();
    eprintln!(
        "cni-rs-install {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn install(from: &Path, to: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["--from", from.to_str().unwrap(), "--to", to.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(&args)
}

/// (inode, mtime in ns, size) of every file: what an idempotent rerun keeps.
fn snapshot(dir: &Path) -> Vec<(String, u64, i64, u64)> {
    let mut v: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = fs::metadata(e.path()).unwrap();
            (
                e.file_name().into_string().unwrap(),
                m.ino(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                m.size(),
            )
        })
        .collect();
    v.sort();
    v
}

fn same_bytes(a: &Path, b: &Path) -> bool {
    fs::read(a).unwrap() == fs::read(b).unwrap()
}

#[test]
fn installs_every_plugin_and_nothing_else() {
    let src = source("1.0.0");
    let host = TempDir::new().unwrap();
    let to = host.join("opt/cni/bin"); // created when missing
    let out = install(src.path(), &to, &[]);
    assert!(out.status.success());
    let mut names: Vec<_> =
        fs::read_dir(&to).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let mut want: Vec<_> = PLUGINS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(names, want, "only the plugins, no temp files, no LICENSE");
    for p in PLUGINS {
        assert!(same_bytes(&src.join(p), &to.join(p)), "{p}");
        assert_eq!(fs::metadata(to.join(p)).unwrap().permissions().mode() & 0o777, 0o755, "{p}");
        // And it runs.
        let v = Command::new(to.join(p)).env("CNI_COMMAND", "VERSION").stdin(Stdio::null()).output().unwrap();
        assert!(
            v.status.success() && String::from_utf8_lossy(&v.stdout).contains("supportedVersions"),
            "{p}"
        );
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("bridge: installed 1.0.0"));
}

#[test]
fn rerun_changes_nothing() {
    let src = source("1.0.0");
    let to = TempDir::new().unwrap();
    assert!(install(src.path(), to.path(), &[]).status.success());
    let before = snapshot(to.path());
    std::thread::sleep(std::time::Duration::from_millis(20)); // a rewrite would show a later mtime
    let out = install(src.path(), to.path(), &[]);
    assert!(out.status.success());
    assert_eq!(snapshot(to.path()), before, "same inodes and mtimes");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("0 installed, 3 unchanged"), "{text}");
}

#[test]
fn upgrade_replaces_and_reports_the_old_version() {
    let (old, new) = (source("1.0.0"), source("1.2.0"));
    let to = TempDir::new().unwrap();
    assert!(install(old.path(), to.path(), &[]).status.success());
    let out = install(new.path(), to.path(), &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("bridge: installed 1.2.0 (was 1.0.0)"));
    for p in PLUGINS {
        assert!(same_bytes(&new.join(p), &to.path().join(p)), "{p}");
    }
}

#[test]
fn downgrade_is_refused_and_changes_nothing_unless_forced() {
    let (new, old) = (source("1.2.0"), source("1.0.0"));
    let to = TempDir::new().unwrap();
    assert!(install(new.path(), to.path(), &[]).status.success());
    // One plugin still old: the others being newer is enough to refuse all.
    fs::copy(old.join("loopback"), to.path().join("loopback")).unwrap();
    let before = snapshot(to.path());
    let out = install(old.path(), to.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to downgrade") && err.contains("bridge 1.2.0 (ours: 1.0.0)"), "{err}");
    assert!(!err.contains("loopback"), "loopback is not newer: {err}");
    assert_eq!(snapshot(to.path()), before, "nothing changed");

    assert!(install(old.path(), to.path(), &["--force"]).status.success());
    for p in PLUGINS {
        assert!(same_bytes(&old.join(p), &to.path().join(p)), "{p}");
    }
}

#[test]
fn a_binary_that_is_not_ours_is_replaced_and_named() {
    let src = source("1.0.0");
    let to = TempDir::new().unwrap();
    fs::copy("/bin/true", to.path().join("bridge")).unwrap(); // say the reference's
    let out = install(src.path(), to.path(), &[]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("bridge: installed 1.0.0 (replaced a binary that is not cni-rs)"));
    assert!(same_bytes(&src.join("bridge"), &to.path().join("bridge")));
}

#[test]
fn leftovers_of_an_interrupted_run_are_removed() {
    let src = source("1.0.0");
    let to = TempDir::new().unwrap();
    let stale = to.path().join(".bridge.cni-rs-install-tmp-12345");
    fs::write(&stale, b"half a binary").unwrap();
    assert!(install(src.path(), to.path(), &[]).status.success());
    assert!(!stale.exists());
}

#[test]
fn bad_input_is_a_clear_error() {
    let to = TempDir::new().unwrap();
    let out = install(Path::new("/nonexistent-cni-src"), to.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent-cni-src"));
    // An executable without our marker in the source: not installed, nothing written.
    let src = TempDir::new().unwrap();
    fs::copy("/bin/true", src.join("true")).unwrap();
    let out = install(src.path(), to.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a cni-rs plugin"));
    assert!(fs::read_dir(to.path()).unwrap().next().is_none());
    let out = run(&["--frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown argument"));
}

#[test]
fn conflist_is_written_only_when_asked_and_only_when_it_differs() {
    let src = source("1.0.0");
    let (to, conf) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let conf_dir = conf.join("net.d");
    assert!(install(src.path(), to.path(), &["--conf-dir", conf_dir.to_str().unwrap()]).status.success());
    assert!(!conf_dir.exists(), "no --conflist, no conf dir");

    let list = src.join("10-cni-rs.conflist");
    fs::write(&list, r#"{"cniVersion":"1.0.0","name":"k8s","plugins":[{"type":"loopback"}]}"#).unwrap();
    let args = ["--conflist", list.to_str().unwrap(), "--conf-dir", conf_dir.to_str().unwrap()];
    assert!(install(src.path(), to.path(), &args).status.success());
    let written = conf_dir.join("10-cni-rs.conflist");
    assert!(same_bytes(&list, &written));
    assert_eq!(fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o644);
    let before = snapshot(&conf_dir);
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert!(install(src.path(), to.path(), &args).status.success());
    assert_eq!(snapshot(&conf_dir), before);
}

/// The runtime execs plugins while the installer replaces them: every exec
/// runs a whole binary (old or new), none fails (ETXTBSY, ENOEXEC, a crash).
#[test]
fn plugins_exec_while_being_replaced_never_fail() {
    let (a, b) = (source("1.0.0"), source("1.2.0"));
    let to = TempDir::new().unwrap();
    assert!(install(a.path(), to.path(), &[]).status.success());
    let stop = Arc::new(AtomicBool::new(false));
    let execs = {
        let (stop, dir) = (stop.clone(), to.path().to_path_buf());
        std::thread::spawn(move || {
            let mut n = 0u32;
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) || n < 50 {
                for p in PLUGINS {
                    let r =
                        Command::new(dir.join(p)).env("CNI_COMMAND", "VERSION").stdin(Stdio::null()).output();
                    match r {
                        Ok(o) if o.status.success() && o.stdout.starts_with(b"{") => {}
                        Ok(o) => {
                            failures.push(format!("{p}: {} {}", o.status, String::from_utf8_lossy(&o.stdout)))
                        }
                        Err(e) => failures.push(format!("{p}: exec: {e}")),
                    }
                    n += 1;
                }
            }
            (n, failures)
        })
    };
    for i in 0..30 {
        let from = if i % 2 == 0 { b.path() } else { a.path() };
        let out = install(from, to.path(), &["--force"]);
        assert!(out.status.success(), "install round {i}");
    }
    stop.store(true, Ordering::Relaxed);
    let (n, failures) = execs.join().unwrap();
    assert!(
        failures.is_empty(),
        "{} of {n} execs failed: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
}
