//! Bad input never panics: every plugin binary answers with one CNI error
//! object on stdout (exit 1), nothing else on stdout, and leaves nothing.

use serde_json::{json, Value};
use test_harness::*;

mod rows;
mod table;

const PLUGINS: &[&str] = &[
    "loopback",
    "bridge",
    "host-local",
    "macvlan",
    "ipvlan",
    "vlan",
    "portmap",
    "dns-sidecar",
    "firewall",
    "tuning",
    "static",
    "dhcp",
    "bandwidth",
    "sbr",
    "vrf",
    "host-device",
    "tap",
    "dummy",
    "ptp",
];

fn built() -> Vec<std::path::PathBuf> {
    PLUGINS.iter().map(|p| target_bin_dir().join(p)).filter(|p| p.is_file()).collect()
}

fn env<'a>(cmd: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut e = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/nonexistent/netns"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    for (k, v) in extra {
        e.retain(|(x, _)| x != k);
        e.push((k, v));
    }
    e
}

/// The plugin fails with `code`, one error object on stdout, no panic; the object.
fn assert_error(bin: &std::path::Path, env: &[(&str, &str)], stdin: impl AsRef<[u8]>, code: u64) -> Value {
    let stdin = stdin.as_ref();
    let out = run_plugin(bin, None, env, stdin).unwrap();
    let name = bin.file_name().unwrap().to_string_lossy();
    let shown: String = String::from_utf8_lossy(stdin).chars().take(100).collect();
    assert_eq!(out.exit_code, Some(1), "{name} {env:?} {shown:?}: {}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: stdout is not one JSON object ({e}): {:?}", out.stdout));
    assert_eq!(v["code"], code, "{name} {env:?} {shown:?}: {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{name}: empty msg");
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{name}: {}",
        out.stderr
    );
    v
}

#[test]
fn malformed_input_gets_the_right_code_from_every_plugin() {
    let bins = built();
    assert!(!bins.is_empty(), "build the plugins first (cargo build --workspace --bins)");
    let good =
        r#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}}"#;
    for bin in &bins {
        assert_error(bin, &env("ADD", &[]), "{not json", 6);
        assert_error(bin, &env("ADD", &[]), "", 6);
        assert_error(bin, &env("ADD", &[]), r#"{"cniVersion":"1.0.0"}"#, 7);
        assert_error(bin, &env("ADD", &[]), r#"{"cniVersion":"7.7.7","name":"n"}"#, 1);
        assert_error(bin, &env("CHECK", &[]), r#"{"cniVersion":"0.3.1","name":"n"}"#, 1);
        assert_error(bin, &env("FROB", &[]), good, 4);
        assert_error(bin, &env("ADD", &[("CNI_IFNAME", "a/b")]), good, 4);
        assert_error(bin, &env("ADD", &[("CNI_CONTAINERID", "")]), good, 4);
        assert_error(bin, &env("ADD", &[("CNI_ARGS", "garbage")]), good, 4);
        assert_error(bin, &[("CNI_PATH", "/x")], good, 4); // no CNI_COMMAND
    }
}

#[test]
fn empty_non_utf8_and_deeply_nested_stdin_is_code_6_for_every_verb() {
    let mut not_utf8 = br#"{"cniVersion":"1.1.0","name":"n","type":"x","k":""#.to_vec();
    not_utf8.extend_from_slice(b"\xff\xfe\"}");
    let deep =
        format!(r#"{{"cniVersion":"1.1.0","name":"n","x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    for bin in built() {
        for verb in ["ADD", "DEL", "CHECK", "STATUS", "GC"] {
            let e = env(verb, &[]);
            let v = assert_error(&bin, &e, "", 6);
            assert!(v["msg"].as_str().unwrap().contains("EOF"), "{} {verb}: {v}", bin.display());
            let v = assert_error(&bin, &e, &not_utf8, 6);
            assert!(v["msg"].as_str().unwrap().contains("not valid UTF-8"), "{} {verb}: {v}", bin.display());
            let v = assert_error(&bin, &e, &deep, 6);
            assert!(v["msg"].as_str().unwrap().contains("recursion limit"), "{} {verb}: {v}", bin.display());
        }
        // VERSION ignores stdin.
        for stdin in [&b""[..], &not_utf8, deep.as_bytes()] {
            let out = run_plugin(&bin, None, &[("CNI_COMMAND", "VERSION")], stdin).unwrap();
            assert_eq!(out.exit_code, Some(0), "{}: {}", bin.display(), out.stdout);
        }
    }
}

#[test]
fn stdin_that_never_ends_is_cut_at_16_mib_with_code_6() {
    for plugin in ["bridge", "host-local", "portmap"] {
        let head = r#"{"cniVersion":"1.1.0","name":"n","type":"x"}"#;
        let feed = |mut w: std::process::ChildStdin| {
            let spaces = [b' '; 64 * 1024];
            if w.write_all(head.as_bytes()).is_err() {
                return;
            }
            // Far more than the cap (a plugin without one reads it all), then
            // no EOF ever: hold the pipe open until the plugin has gone,
            // which shows as POLLERR once its read end is closed.
            for _ in 0..1024 {
                if w.write_all(&spaces).is_err() {
                    return;
                }
            }
            let mut p = libc::pollfd { fd: w.as_raw_fd(), events: 0, revents: 0 };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut p, 1, -1) };
        };
        let out = run_plugin_feeding(&bin(plugin), None, &env("ADD", &[]), feed, HANG)
            .unwrap_or_else(|e| panic!("{plugin}: {e}"));
        let v = cni_error(plugin, "endless stdin", &out);
        assert_eq!(v["code"], 6, "{plugin}: {v}");
        assert_eq!(v["msg"], "the network configuration on stdin is larger than 16 MiB", "{plugin}");
    }
}

#[test]
fn no_command_prints_an_about_line() {
    for bin in built() {
        let out = run_plugin(&bin, None, &[], b"").unwrap();
        assert_eq!(out.exit_code, Some(1));
        assert!(out.stderr.contains("CNI protocol versions supported: 0.1.0"), "{}", out.stderr);
    }
}

#[test]
fn version_lists_every_spec_version() {
    for bin in built() {
        let out =
            run_plugin(&bin, None, &[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#).unwrap();
        assert_eq!(out.exit_code, Some(0));
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let all: Vec<&str> =
            v["supportedVersions"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(all, common::spec::version::ALL, "{}", bin.display());
    }
}

// ---- hostile input through the real binaries, as root in test namespaces ----

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Far above any normal plugin run: only a hang reaches it.
const HANG: Duration = Duration::from_secs(60);

fn bin(name: &str) -> std::path::PathBuf {
    let p = target_bin_dir().join(name);
    assert!(p.is_file(), "build the plugins first (cargo build --workspace --bins): {}", p.display());
    p
}

/// Run `plugin` in `host` (its own netns); it must return within [`HANG`].
fn run_in(host: &TestNs, plugin: &str, env: &[(&str, &str)], stdin: &str) -> PluginOutput {
    run_plugin_within(&bin(plugin), Some(host.path()), env, stdin.as_bytes(), HANG)
        .unwrap_or_else(|e| panic!("{plugin} {env:?}: {e}"))
}

/// The one CNI error object a failed run printed (and nothing else on stdout).
fn cni_error(plugin: &str, what: &str, out: &PluginOutput) -> Value {
    assert_eq!(out.exit_code, Some(1), "{plugin} {what}: {} {}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{plugin} {what}: stdout is not one JSON object ({e}): {:?}", out.stdout))
}

/// CNI_NETNS values that are no usable network namespace, made in a temp dir.
struct BadPaths {
    dir: TempDir,
    _sock: UnixListener,
    /// `unshare` holding a real netns mounted on `dir/hidden`, visible only in
    /// its own mount namespace: here `dir/hidden` is an empty file.
    hider: Child,
}

impl BadPaths {
    fn new(ctr: &TestNs) -> BadPaths {
        let dir = TempDir::new().unwrap();
        let status = Command::new("mkfifo").arg(dir.join("fifo")).status().unwrap();
        assert!(status.success());
        std::os::unix::fs::symlink(dir.join("fifo"), dir.join("link-to-fifo")).unwrap();
        std::fs::create_dir(dir.join("dir")).unwrap();
        std::fs::write(dir.join("file"), "not a netns\n").unwrap();
        std::fs::write(dir.join("empty"), "").unwrap();
        std::fs::write(dir.join("hidden"), "").unwrap();
        let sock = UnixListener::bind(dir.join("sock")).unwrap();
        let mut hider = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" "$2" && echo ready && exec sleep 600"#)
            .arg("sh")
            .arg(ctr.path())
            .arg(dir.join("hidden"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(hider.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "unshare + mount --bind failed");
        BadPaths { dir, _sock: sock, hider }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    /// (path, what the error says about it): paths that never were a netns.
    fn garbage(&self) -> Vec<(String, &'static str)> {
        vec![
            (self.path("fifo"), "is a FIFO, not a network namespace"),
            (self.path("link-to-fifo"), "is a FIFO, not a network namespace"),
            (self.path("sock"), "is a socket, not a network namespace"),
            (self.path("dir"), "is a directory, not a network namespace"),
            ("/dev/null".into(), "is a device, not a network namespace"),
            (self.path("file"), "is an ordinary file, not a network namespace"),
            ("/proc/self/ns/mnt".into(), "is a mount namespace, not a network namespace"),
        ]
    }

    /// (path, what the error says about it): a netns that is gone, or out of reach.
    fn gone(&self) -> Vec<(String, &'static str)> {
        let mut dead = Command::new("true").spawn().unwrap();
        let pid = dead.id();
        dead.wait().unwrap();
        vec![
            (self.path("nowhere"), "does not exist"),
            (self.path("empty"), "is an empty file, not a network namespace: nothing is mounted on it here"),
            (self.path("hidden"), "is an empty file, not a network namespace: nothing is mounted on it here"),
            (format!("/proc/{pid}/ns/net"), "does not exist"),
        ]
    }
}

impl Drop for BadPaths {
    fn drop(&mut self) {
        // Our own child: its mount namespace (and the bind mount) ends with it.
        let _ = self.hider.kill();
        let _ = self.hider.wait();
    }
}

/// `CNI_PATH`: the directory of the built plugins.
fn bin_dir() -> &'static str {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| target_bin_dir().to_string_lossy().into_owned())
}

fn netns_env<'a>(cmd: &'a str, netns: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "badns1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", bin_dir()),
    ]
}

/// Configs of the plugins that enter the container netns.
fn netns_users(data: &TempDir) -> Vec<(&'static str, String)> {
    let prev = json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}],
        "ips": [{"address": "10.99.0.2/24", "interface": 0}]});
    let d = data.path().to_str().unwrap();
    vec![
        ("loopback", json!({"cniVersion": "1.0.0", "name": "badns", "type": "loopback"})),
        (
            "bridge",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "bridge", "bridge": "cnibadns0",
                "prevResult": prev,
                "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": d}}),
        ),
        (
            "macvlan",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "macvlan", "master": "m0",
            "prevResult": prev}),
        ),
        (
            "host-device",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "host-device", "device": "hd0",
                "prevResult": prev}),
        ),
        (
            "ipvlan",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "ipvlan", "master": "m0",
            "prevResult": prev}),
        ),
        (
            "vlan",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "vlan", "master": "m0", "vlanId": 5,
            "prevResult": prev}),
        ),
        (
            "tuning",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "tuning", "dataDir": d,
                "sysctl": {"net.ipv4.conf.eth0.arp_notify": "1"}, "prevResult": prev}),
        ),
        (
            "tap",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "tap", "prevResult": prev,
                "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": d}}),
        ),
        (
            "dummy",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "dummy", "prevResult": prev,
                "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": d}}),
        ),
        (
            "bandwidth",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "bandwidth", "prevResult": prev,
                "runtimeConfig": {"bandwidth": {"ingressRate": 8000000, "ingressBurst": 256000}}}),
        ),
        (
            "ptp",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "ptp", "ipMasq": true, "prevResult": prev,
                "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": d}}),
        ),
        ("sbr", json!({"cniVersion": "1.0.0", "name": "badns", "type": "sbr", "prevResult": prev})),
        (
            "vrf",
            json!({"cniVersion": "1.0.0", "name": "badns", "type": "vrf", "vrfname": "vrf0", "prevResult": prev}),
        ),
    ]
    .into_iter()
    .map(|(p, c)| (p, c.to_string()))
    .collect()
}

#[test]
fn a_netns_path_that_is_no_netns_is_code_8_at_once_for_add_and_check() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let data = TempDir::new().unwrap();
    let bad = BadPaths::new(&ctr);
    for (plugin, conf) in netns_users(&data) {
        for (path, why) in bad.garbage().into_iter().chain(bad.gone()) {
            for cmd in ["ADD", "CHECK"] {
                let what = format!("{cmd} {path}");
                let v = cni_error(plugin, &what, &run_in(&host, plugin, &netns_env(cmd, &path), &conf));
                assert_eq!(v["code"], 8, "{plugin} {what}: {v}");
                let msg = v["msg"].as_str().unwrap();
                assert!(msg.starts_with(&format!("CNI_NETNS {path:?} {why}")), "{plugin} {what}: {msg}");
            }
        }
    }
    // Nothing was made on the way to the error.
    assert_eq!(link_names(&host), ["lo"]);
    assert_eq!(link_names(&ctr), ["lo"]);
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0, "host-local or tuning left state");
}

#[test]
fn del_succeeds_when_the_netns_is_gone_and_refuses_garbage() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let data = TempDir::new().unwrap();
    let bad = BadPaths::new(&ctr);
    // tuning's DEL only enters the netns when it saved settings to restore;
    // bandwidth's never does (see plugins_that_never_enter_the_netns_…).
    let users: Vec<_> =
        netns_users(&data).into_iter().filter(|(p, _)| *p != "tuning" && *p != "bandwidth").collect();
    for (plugin, conf) in &users {
        for (path, _) in bad.gone() {
            let out = run_in(&host, plugin, &netns_env("DEL", &path), conf);
            assert_eq!(out.exit_code, Some(0), "{plugin} DEL {path}: {}", out.stdout);
            assert_eq!(out.stdout, "", "{plugin} DEL {path}");
        }
        for (path, why) in bad.garbage() {
            let what = format!("DEL {path}");
            let v = cni_error(plugin, &what, &run_in(&host, plugin, &netns_env("DEL", &path), conf));
            assert_eq!(v["code"], 8, "{plugin} {what}: {v}");
            let msg = v["msg"].as_str().unwrap();
            assert!(msg.starts_with(&format!("CNI_NETNS {path:?} {why}")), "{plugin} {what}: {msg}");
            assert!(msg.contains("empty CNI_NETNS"), "{plugin} {what}: {msg}");
        }
    }
}

#[test]
fn plugins_that_never_enter_the_netns_are_not_held_up_by_a_fifo() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let data = TempDir::new().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let bad = BadPaths::new(&ctr);
    let fifo = bad.path("fifo");
    let d = data.path().to_str().unwrap();
    let ipam = json!({"cniVersion": "1.0.0", "name": "badns", "type": "bridge",
        "ipam": {"type": "host-local", "subnet": "10.99.0.0/24", "dataDir": d}})
    .to_string();
    let out = run_in(&host, "host-local", &netns_env("ADD", &fifo), &ipam);
    assert_eq!(out.exit_code, Some(0), "{}", out.stdout);
    let out = run_in(&host, "host-local", &netns_env("DEL", &fifo), &ipam);
    assert_eq!((out.exit_code, out.stdout.as_str()), (Some(0), ""));
    let dns_dir = data.join("dns");
    // (bandwidth enters the container for ADD and CHECK, never for DEL.)
    for plugin in ["portmap", "firewall", "dns-sidecar", "bandwidth"] {
        let conf = json!({"cniVersion": "1.0.0", "name": "badns", "type": plugin, "domainName": "dns.test"});
        let mut env = netns_env("DEL", &fifo);
        env.push(("DNS_SIDECAR_RUN_DIR", dns_dir.to_str().unwrap()));
        let out = run_in(&host, plugin, &env, &conf.to_string());
        assert_eq!((out.exit_code, out.stdout.as_str()), (Some(0), ""), "{plugin}: {}", out.stdout);
    }
}

/// A host-local network whose data dir lives in a temp dir.
fn store_conf(data: &TempDir, net: &str, subnet: &str) -> String {
    json!({"cniVersion": "1.0.0", "name": net, "type": "bridge", "bridge": net,
        "ipam": {"type": "host-local", "subnet": subnet, "dataDir": data.path()}})
    .to_string()
}

/// IP-named lease files of host-local network `net`.
fn leases(data: &TempDir, net: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(data.join(net))
        .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.parse::<std::net::IpAddr>().is_ok());
    v
}

#[test]
fn a_busy_store_lock_is_code_11_naming_the_lock_and_its_holder() {
    let data = TempDir::new().unwrap();
    let conf = store_conf(&data, "lk", "10.98.0.0/24");
    std::fs::create_dir_all(data.join("lk")).unwrap();
    let lock_path = data.join("lk/lock");
    // This process holds the lock the plugin processes need.
    let held = common::lock::FileLock::exclusive(&lock_path).unwrap();
    for cmd in ["ADD", "DEL", "CHECK"] {
        let e = env(cmd, &[("CNIRS_LOCK_WAIT", "0.3")]);
        let out = run_plugin_within(&bin("host-local"), None, &e, conf.as_bytes(), HANG).unwrap();
        let v = cni_error("host-local", cmd, &out);
        assert_eq!(v["code"], 11, "{cmd}: {v}");
        let msg = v["msg"].as_str().unwrap();
        assert!(msg.contains(&format!("{} is still locked", lock_path.display())), "{cmd}: {msg}");
        assert!(msg.contains(&format!("held by pid {}", std::process::id())), "{cmd}: {msg}");
    }
    assert!(leases(&data, "lk").is_empty());
    // The same request goes through once the lock is free.
    drop(held);
    let out = run_plugin_within(&bin("host-local"), None, &env("ADD", &[]), conf.as_bytes(), HANG).unwrap();
    assert_eq!(out.exit_code, Some(0), "{}", out.stdout);
    assert_eq!(leases(&data, "lk"), ["10.98.0.2"]);
}

#[test]
fn a_busy_bridge_lock_is_code_11_and_the_add_leaves_nothing() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let data = TempDir::new().unwrap();
    let bridge = format!("cnilk{}", std::process::id() % 100_000);
    let conf = store_conf(&data, &bridge, "10.97.0.0/24");
    let lock = format!("bridge-{bridge}");
    let lock_path = format!("{}/{lock}.lock", common::lock::RUNTIME_LOCK_DIR);
    struct Remove(String);
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let _remove = Remove(lock_path.clone());
    let held = common::lock::runtime_lock(&lock).unwrap();
    let ns = ctr.path_str();
    let mut e = netns_env("ADD", &ns);
    e.push(("CNIRS_LOCK_WAIT", "0.3"));
    let v = cni_error("bridge", "ADD", &run_in(&host, "bridge", &e, &conf));
    assert_eq!(v["code"], 11, "{v}");
    assert!(v["msg"].as_str().unwrap().contains(&format!("{lock_path} is still locked")), "{v}");
    assert_eq!(link_names(&host), ["lo"]);
    assert_eq!(link_names(&ctr), ["lo"]);
    assert!(leases(&data, &bridge).is_empty(), "the lease was not released");
    drop(held);
    let out = run_in(&host, "bridge", &netns_env("ADD", &ns), &conf);
    assert_eq!(out.exit_code, Some(0), "{}", out.stdout);
    let out = run_in(&host, "bridge", &netns_env("DEL", &ns), &conf);
    assert_eq!(out.exit_code, Some(0), "{}", out.stdout);
}

/// CNI_ARGS as cnitool passes them, without `IgnoreUnknown`: a key the
/// plugin does not read is refused (code 4, naming it) exactly by the
/// plugins whose reference loads CNI_ARGS into a struct, and accepted by
/// every other, as the reference plugins never look. The reference binaries
/// (Debian's in /usr/lib/cni) are run beside ours where installed.
#[test]
fn cnitool_style_cni_args_are_refused_where_the_reference_refuses_them() {
    require_root!();
    let reference = std::path::Path::new("/usr/lib/cni");
    // dns-sidecar and overlay read K8S_POD_NAME (as dnsname does).
    let reads = |p: &str, key: &str| key == "K8S_POD_NAME" && matches!(p, "dns-sidecar" | "overlay");
    let profiles = rows::profiles();
    let lacks = rows::kernel_lacks();
    for (plugin, why) in &lacks {
        eprintln!("skipped: {plugin}: {why}");
    }
    for p in profiles.iter().filter(|p| !p.chain && !lacks.iter().any(|(l, _)| *l == p.name)) {
        let theirs = reference.join(p.name);
        let compare = if p.name == "dhcp" {
            eprintln!("SKIP: the reference dhcp is not run (it would ask the host's daemon)");
            false
        } else if !theirs.is_file() {
            eprintln!("SKIP: no reference {} to compare with", p.name);
            false
        } else if let Err(e) = table::baseline_add(p, reference, "") {
            eprintln!("SKIP: the reference {} fails the baseline here: {e:?}", p.name);
            false
        } else {
            true
        };
        for key in ["K8S_POD_NAME", "FROB"] {
            let cni_args = format!("{key}=x");
            let refused = rows::strict_cni_args(p) && !reads(p.name, key);
            match table::baseline_add(p, &target_bin_dir(), &cni_args) {
                Ok(()) => assert!(!refused, "{} accepted {cni_args}", p.name),
                Err((code, msg)) => {
                    assert!(refused, "{} refused {cni_args}: {code} {msg}", p.name);
                    assert_eq!(code, 4, "{}: {msg}", p.name);
                    assert!(msg.contains(&format!("unknown key \"{key}\"")), "{}: {msg}", p.name);
                }
            }
            if compare {
                let theirs = table::baseline_add(p, reference, &cni_args);
                assert_eq!(theirs.is_err(), refused, "the reference {} with {cni_args}: {theirs:?}", p.name);
            }
        }
    }
}

// ---- the table: every plugin, every kind of hostile input -------------------

#[test]
fn every_row_of_the_bad_input_table() {
    require_root!();
    let profiles = rows::profiles();
    let mut rows = rows::rows(&profiles);
    // Plugins of link kinds this kernel lacks run in the VM (scripts/vm-test).
    for (plugin, why) in rows::kernel_lacks() {
        let before = rows.len();
        rows.retain(|r| r.profile != plugin);
        // Straight to stderr: libtest would hide an eprintln! of a passing test.
        let msg = format!("skipped: {} rows of {plugin}: {why}\n", before - rows.len());
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
    }
    table::run_all(&profiles, rows);
}

/// docs/bad-input.md shows exactly the rows the test runs
/// (`BAD_INPUT_WRITE_DOCS=1` rewrites it).
#[test]
fn the_docs_show_the_bad_input_table() {
    let profiles = rows::profiles();
    let table = table::markdown(&rows::rows(&profiles));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/bad-input.md");
    let doc = std::fs::read_to_string(&path).unwrap_or_default();
    const START: &str = "<!-- table: generated from test-harness/tests/bad_input/rows.rs -->\n";
    const END: &str = "<!-- end of table -->";
    let (head, rest) = doc.split_once(START).unwrap_or((&doc, ""));
    let tail = rest.split_once(END).map(|(_, t)| t).unwrap_or("\n");
    let want = format!("{head}{START}{table}{END}{tail}");
    if std::env::var_os("BAD_INPUT_WRITE_DOCS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    assert!(doc == want, "{} is not the table of the test: run with BAD_INPUT_WRITE_DOCS=1", path.display());
}
