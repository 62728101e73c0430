//! The built `host-local` binary, driven as a runtime drives it, against a
//! temporary data dir; plus side-by-side runs with the reference binary on
//! the same data dir. (skel's environment rules are tested in `common`.)

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{json, Value};

const OURS: &str = env!("CARGO_BIN_EXE_host-local");
const REFERENCE: &str = "/usr/lib/cni/host-local";

/// What a plugin run printed and how it exited.
#[derive(Debug)]
struct Out {
    ok: bool,
    stdout: String,
    json: Value,
}

impl Out {
    fn code(&self) -> u64 {
        self.json["code"].as_u64().unwrap_or(0)
    }
    fn msg(&self) -> &str {
        self.json["msg"].as_str().unwrap_or("")
    }
}

/// One invocation: `cmd` for (id, ifname) with `cni_args`, config on stdin.
/// GC and STATUS get only CNI_COMMAND and CNI_PATH, as runtimes send them.
fn spawn(bin: &str, cmd: &str, id: &str, ifname: &str, cni_args: &str, conf: &Value) -> Child {
    let mut c = Command::new(bin);
    c.env_clear().env("CNI_COMMAND", cmd).env("CNI_PATH", "/usr/lib/cni");
    if !matches!(cmd, "GC" | "STATUS") {
        c.env("CNI_CONTAINERID", id)
            .env("CNI_IFNAME", ifname)
            .env("CNI_NETNS", "/var/run/netns/host-local-test-none");
    }
    if !cni_args.is_empty() {
        c.env("CNI_ARGS", cni_args);
    }
    let mut child =
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn plugin");
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    child
}

fn finish(child: Child) -> Out {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let json = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    Out { ok: out.status.success(), stdout, json }
}

fn run(bin: &str, cmd: &str, id: &str, ifname: &str, cni_args: &str, conf: &Value) -> Out {
    finish(spawn(bin, cmd, id, ifname, cni_args, conf))
}

fn ours(cmd: &str, id: &str, conf: &Value) -> Out {
    run(OURS, cmd, id, "eth0", "", conf)
}

fn add_ok(bin: &str, id: &str, conf: &Value) -> Value {
    let out = run(bin, "ADD", id, "eth0", "", conf);
    assert!(out.ok, "ADD {id} with {bin}: {}", out.stdout);
    out.json
}

fn reference_present() -> bool {
    let here = Path::new(REFERENCE).exists();
    if !here {
        println!("SKIP: {REFERENCE} is absent, compatibility with the reference not tested");
    }
    here
}

/// A data dir that is removed when the test ends.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("host-local-it-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn net(&self) -> PathBuf {
        self.0.join("net1")
    }
    fn s(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn conf(ver: &str, ipam: Value) -> Value {
    json!({"cniVersion": ver, "name": "net1", "type": "bridge", "ipam": ipam})
}

fn v4(dir: &TempDir, subnet: &str) -> Value {
    conf("1.1.0", json!({"type": "host-local", "dataDir": dir.s(), "ranges": [[{"subnet": subnet}]]}))
}

/// Lease files (named by an IP) in the network dir, sorted.
fn leases(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.retain(|n| n.parse::<std::net::IpAddr>().is_ok());
    v.sort();
    v
}

fn first_ip(result: &Value) -> String {
    result["ips"][0]["address"].as_str().unwrap().to_string()
}

#[test]
fn add_answers_in_every_result_version() {
    let dir = TempDir::new("versions");
    let resolv = dir.0.join("resolv.conf");
    fs::write(
        &resolv,
        "nameserver 10.0.0.53\ndomain example.com\nsearch a.example b.example\noptions ndots:2\n",
    )
    .unwrap();
    let ipam = |dual: bool| {
        let mut ranges = vec![json!([{"subnet": "10.1.2.0/24", "gateway": "10.1.2.254"}])];
        if dual {
            ranges.push(json!([{"subnet": "2001:db8:1::/64"}]));
        }
        json!({"type": "host-local", "dataDir": dir.s(), "resolvConf": resolv, "ranges": ranges,
               "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.2.1"}]})
    };
    let dns = json!({"nameservers": ["10.0.0.53"], "domain": "example.com",
                     "search": ["a.example", "b.example"], "options": ["ndots:2"]});

    let r = add_ok(OURS, "c020", &conf("0.2.0", ipam(false)));
    assert_eq!(
        r,
        json!({"cniVersion": "0.2.0",
               "ip4": {"ip": "10.1.2.1/24", "gateway": "10.1.2.254",
                       "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.9.0.0/16", "gw": "10.1.2.1"}]},
               "dns": dns})
    );
    let r = add_ok(OURS, "c040", &conf("0.4.0", ipam(true)));
    assert_eq!(
        r["ips"],
        json!([{"version": "4", "address": "10.1.2.2/24", "gateway": "10.1.2.254"},
               {"version": "6", "address": "2001:db8:1::2/64", "gateway": "2001:db8:1::1"}])
    );
    assert_eq!(r["routes"][1], json!({"dst": "10.9.0.0/16", "gw": "10.1.2.1"}));
    assert_eq!(r["dns"], dns);
    assert!(r.get("interfaces").is_none());
    for (ver, id, want) in [("1.0.0", "c100", "10.1.2.3/24"), ("1.1.0", "c110", "10.1.2.4/24")] {
        let r = add_ok(OURS, id, &conf(ver, ipam(true)));
        assert_eq!(r["cniVersion"], ver);
        assert_eq!(
            r["ips"][0],
            json!({"address": want, "gateway": "10.1.2.254"}),
            "no version, no interface"
        );
        assert_eq!(r["ips"][1]["gateway"], "2001:db8:1::1");
        assert_eq!(r["dns"], dns);
    }
}

#[test]
fn lease_files_cursors_and_modes_on_disk() {
    let dir = TempDir::new("layout");
    let c = conf(
        "1.0.0",
        json!({"dataDir": dir.s(), "ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/120"}]]}),
    );
    add_ok(OURS, "ctr-a", &c);
    let net = dir.net();
    assert_eq!(leases(&net), ["10.1.2.2", "fd00::2"]);
    for f in ["10.1.2.2", "fd00::2"] {
        assert_eq!(fs::read_to_string(net.join(f)).unwrap(), "ctr-a\r\neth0");
        assert_eq!(fs::metadata(net.join(f)).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert_eq!(fs::read_to_string(net.join("last_reserved_ip.0")).unwrap(), "10.1.2.2");
    assert_eq!(fs::read_to_string(net.join("last_reserved_ip.1")).unwrap(), "fd00::2");
    assert!(net.join("lock").is_file());
    // Round robin continues from the cursor, whoever wrote it.
    fs::write(net.join("last_reserved_ip.0"), "10.1.2.99").unwrap();
    assert_eq!(first_ip(&add_ok(OURS, "ctr-b", &c)), "10.1.2.100/24");
}

#[test]
fn del_is_idempotent_and_needs_no_directory() {
    let dir = TempDir::new("del");
    let c = v4(&dir, "10.1.2.0/24");
    add_ok(OURS, "c1", &c);
    add_ok(OURS, "c2", &c);
    assert!(ours("DEL", "c1", &c).ok);
    assert_eq!(leases(&dir.net()), ["10.1.2.3"]);
    let again = ours("DEL", "c1", &c);
    assert!(again.ok && again.stdout.is_empty(), "{}", again.stdout);
    // An old lease holding only the container ID is released too.
    fs::write(dir.net().join("10.1.2.77"), "old-ctr").unwrap();
    assert!(ours("DEL", "old-ctr", &c).ok);
    assert_eq!(leases(&dir.net()), ["10.1.2.3"]);
    // No network dir: success, and none is created.
    let gone = v4(&TempDir::new("del-none"), "10.1.2.0/24");
    let missing = dir.0.join("nope");
    let mut c2 = gone.clone();
    c2["ipam"]["dataDir"] = json!(missing);
    assert!(ours("DEL", "c1", &c2).ok);
    assert!(!missing.exists());
    // DEL reads only the data dir: ranges sent at ADD time by the runtime are not needed.
    let mut bare = c.clone();
    bare["ipam"].as_object_mut().unwrap().remove("ranges");
    assert!(ours("DEL", "c2", &bare).ok);
    assert!(leases(&dir.net()).is_empty());
}

#[test]
fn check_finds_the_lease_of_the_attachment() {
    let dir = TempDir::new("check");
    let c = v4(&dir, "10.1.2.0/24");
    let none = ours("CHECK", "c1", &c);
    assert!(!none.ok && none.msg().contains("no address is allocated to container c1"), "{}", none.stdout);
    add_ok(OURS, "c1", &c);
    let out = ours("CHECK", "c1", &c);
    assert!(out.ok && out.stdout.is_empty(), "{}", out.stdout);
    assert!(!run(OURS, "CHECK", "c1", "eth1", "", &c).ok, "another interface holds nothing");
    assert!(ours("DEL", "c1", &c).ok);
    assert!(!ours("CHECK", "c1", &c).ok);
}

#[test]
fn gc_releases_attachments_not_listed_under_either_key() {
    for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
        let dir = TempDir::new("gc");
        let c = v4(&dir, "10.1.2.0/24");
        for id in ["keep", "drop1", "drop2"] {
            add_ok(OURS, id, &c);
        }
        run(OURS, "ADD", "keep", "net1", "", &c);
        fs::write(dir.net().join("10.1.2.200"), "keep").unwrap(); // old format, container still valid
        fs::write(dir.net().join("10.1.2.201"), "gone").unwrap();
        let mut g = c.clone();
        g[key] = json!([{"containerID": "keep", "ifname": "eth0"}]);
        let out = run(OURS, "GC", "", "", "", &g);
        assert!(out.ok && out.stdout.is_empty(), "{key}: {}", out.stdout);
        assert_eq!(leases(&dir.net()), ["10.1.2.2", "10.1.2.200"], "{key}");
        assert!(ours("CHECK", "keep", &c).ok);
    }
    // GC of a network that never allocated anything.
    let dir = TempDir::new("gc-none");
    let mut g = v4(&dir, "10.1.2.0/24");
    g["cni.dev/valid-attachments"] = json!([]);
    assert!(run(OURS, "GC", "", "", "", &g).ok);
}

#[test]
fn status_is_50_when_leases_cannot_be_written() {
    let dir = TempDir::new("status");
    let out = run(OURS, "STATUS", "", "", "", &v4(&dir, "10.1.2.0/24"));
    assert!(out.ok && out.stdout.is_empty(), "{}", out.stdout);
    let file = dir.0.join("plain-file");
    fs::write(&file, "").unwrap();
    let c = conf("1.1.0", json!({"dataDir": file.join("sub"), "ranges": [[{"subnet": "10.1.2.0/24"}]]}));
    let out = run(OURS, "STATUS", "", "", "", &c);
    assert!(!out.ok);
    assert_eq!(out.code(), 50, "{}", out.stdout);
    assert!(out.msg().contains("cannot store leases"), "{}", out.msg());
    // ADD there fails cleanly too.
    assert!(!ours("ADD", "c1", &c).ok);
}

#[test]
fn exhaustion_names_the_range_and_leaves_nothing() {
    let dir = TempDir::new("exhaust");
    let c = conf(
        "1.0.0",
        json!({"dataDir": dir.s(), "ranges": [[{"subnet": "10.1.2.0/30"}], [{"subnet": "fd00::/126"}]]}),
    );
    add_ok(OURS, "c1", &c);
    // Set 0 has one address (.1 is the gateway); set 1 has two. c2 fails in set 0.
    let out = ours("ADD", "c2", &c);
    assert!(!out.ok);
    assert_eq!(out.msg(), "no IP addresses available in range set 10.1.2.0/30 (10.1.2.1-10.1.2.2)");
    assert_eq!(leases(&dir.net()), ["10.1.2.2", "fd00::2"], "the failed ADD left no lease");
    let dup = ours("ADD", "c1", &c);
    assert!(dup.msg().contains("duplicate allocation is not allowed"), "{}", dup.stdout);
}

#[test]
fn bad_config_is_code_7_with_a_readable_message() {
    let dir = TempDir::new("badconf");
    let c = conf(
        "1.0.0",
        json!({"dataDir": dir.s(), "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.5"}]]}),
    );
    let out = ours("ADD", "c1", &c);
    assert_eq!(out.code(), 7);
    assert_eq!(
        out.msg(),
        "invalid range set 0: invalid range 10.1.2.0/24: rangeStart 10.1.3.5 is outside the subnet"
    );
    let out = ours(
        "ADD",
        "c1",
        &conf("1.0.0", json!({"dataDir": dir.s(), "resolvConf": "/nonexistent/r", "subnet": "10.1.2.0/24"})),
    );
    assert_eq!(out.code(), 7, "{}", out.stdout);
    assert!(!dir.net().exists(), "nothing was created");
}

#[test]
fn requested_ips_from_args_and_runtime_config() {
    let dir = TempDir::new("requested");
    let ipam =
        json!({"dataDir": dir.s(), "ranges": [[{"subnet": "10.1.2.0/24"}], [{"subnet": "fd00::/64"}]]});
    let c = conf("1.0.0", ipam.clone());
    let out = run(OURS, "ADD", "c1", "eth0", "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.1.2.50,fd00::50", &c);
    assert!(out.ok, "{}", out.stdout);
    assert_eq!(out.json["ips"][0]["address"], "10.1.2.50/24");
    assert_eq!(out.json["ips"][1]["address"], "fd00::50/64");

    let mut c2 = c.clone();
    c2["args"] = json!({"cni": {"ips": ["10.1.2.60"]}});
    c2["runtimeConfig"] = json!({"ips": ["fd00::60/64"]});
    let r = add_ok(OURS, "c2", &c2);
    assert_eq!(
        (first_ip(&r).as_str(), r["ips"][1]["address"].as_str()),
        ("10.1.2.60/24", Some("fd00::60/64"))
    );

    // Taken, gateway, outside: each fails and takes nothing.
    let before = leases(&dir.net());
    for (ip, want) in [
        ("10.1.2.50", "10.1.2.50 is not available"),
        ("10.1.2.1", "is the gateway"),
        ("192.168.0.1", "not in any range set"),
    ] {
        let out = run(OURS, "ADD", "c9", "eth0", &format!("IP={ip}"), &c);
        assert!(!out.ok && out.msg().contains(want), "{ip}: {}", out.stdout);
        assert_eq!(leases(&dir.net()), before, "{ip}");
    }
    // runtimeConfig.ipRanges is prepended: it becomes range set 0.
    let dir2 = TempDir::new("ipranges");
    let mut c3 = conf("1.0.0", json!({"dataDir": dir2.s(), "ranges": [[{"subnet": "10.1.2.0/24"}]]}));
    c3["runtimeConfig"] = json!({"ipRanges": [[{"subnet": "10.5.0.0/24"}]]});
    let r = add_ok(OURS, "c1", &c3);
    assert_eq!(r["ips"][0]["address"], "10.5.0.2/24");
    assert_eq!(r["ips"][1]["address"], "10.1.2.2/24");
}

#[test]
fn thirty_two_parallel_adds_get_distinct_addresses() {
    let dir = TempDir::new("parallel");
    let c = v4(&dir, "10.1.0.0/16");
    let children: Vec<Child> =
        (0..32).map(|i| spawn(OURS, "ADD", &format!("p{i}"), "eth0", "", &c)).collect();
    let ips: HashSet<String> = children
        .into_iter()
        .map(|ch| {
            let out = finish(ch);
            assert!(out.ok, "{}", out.stdout);
            first_ip(&out.json)
        })
        .collect();
    assert_eq!(ips.len(), 32);
    assert_eq!(leases(&dir.net()).len(), 32);
}

// ---- long IDs, planted links and stray files in the state dir ----

/// Container IDs around the old 512-byte read of a lease, and far past it
/// (the kernel lets an environment string reach 128 KiB).
const LONG_IDS: [usize; 5] = [506, 507, 600, 4096, 100_000];

#[test]
fn long_container_ids_are_released_by_del() {
    let dir = TempDir::new("long-id");
    // One allocatable address (.1 is the gateway): a lease left behind shows at once.
    let c = v4(&dir, "10.3.0.0/30");
    for len in LONG_IDS {
        let id = "a".repeat(len);
        assert_eq!(first_ip(&add_ok(OURS, &id, &c)), "10.3.0.2/30", "id of {len}");
        let dup = ours("ADD", &id, &c);
        assert!(dup.msg().contains("duplicate allocation is not allowed"), "id of {len}: {}", dup.stdout);
        assert!(ours("CHECK", &id, &c).ok, "id of {len}");
        assert!(ours("DEL", &id, &c).ok, "id of {len}");
        assert!(leases(&dir.net()).is_empty(), "DEL of an id of {len} left its lease");
        assert!(!ours("CHECK", &id, &c).ok, "id of {len}");
    }
    // A wider range: a second ADD of a long ID must not take a second address.
    let dir = TempDir::new("long-id-dup");
    let c = v4(&dir, "10.3.1.0/24");
    let id = "b".repeat(600);
    add_ok(OURS, &id, &c);
    assert!(!ours("ADD", &id, &c).ok);
    assert_eq!(leases(&dir.net()), ["10.3.1.2"]);
}

/// An outside file with an old mtime, to see afterwards whether anything touched it.
fn outside_file(path: &Path, content: &str) -> std::time::SystemTime {
    fs::write(path, content).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options().write(true).open(path).unwrap().set_modified(old).unwrap();
    fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn links_planted_in_the_network_dir_write_nothing_outside() {
    let dir = TempDir::new("links");
    let outside = dir.0.join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::create_dir_all(dir.net()).unwrap();
    let c = v4(&dir, "10.4.0.0/24");
    // The cursor's target names an address: a believed cursor would start after it.
    let planted = [
        ("last_reserved_ip.0", "cursor", "10.4.0.9"),
        ("cnirs-index", "index", "10.4.0.7 c7 eth0\n@ 0 10.4.0.9\n"),
        ("cnirs-index.tmp", "tmp", "precious"),
    ];
    let mut mtimes = Vec::new();
    for (name, target, content) in planted {
        mtimes.push(outside_file(&outside.join(target), content));
        std::os::unix::fs::symlink(outside.join(target), dir.net().join(name)).unwrap();
    }
    std::os::unix::fs::symlink(outside.join("dangling"), dir.net().join("last_reserved_ip.1")).unwrap();

    assert_eq!(first_ip(&add_ok(OURS, "c1", &c)), "10.4.0.2/24");
    assert_eq!(first_ip(&add_ok(OURS, "c2", &c)), "10.4.0.3/24");
    assert!(ours("ADD", "c1", &c).msg().contains("duplicate allocation"));
    assert!(ours("DEL", "c1", &c).ok);
    assert_eq!(leases(&dir.net()), ["10.4.0.3"]);
    // The links are replaced by the plugin's own files; the targets are untouched.
    for ((name, target, content), mtime) in planted.into_iter().zip(mtimes) {
        let target = outside.join(target);
        assert_eq!(fs::read_to_string(&target).unwrap(), content, "{name} wrote through its link");
        assert_eq!(fs::metadata(&target).unwrap().modified().unwrap(), mtime, "{name} touched its target");
    }
    assert!(!outside.join("dangling").exists());
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 3, "nothing new outside");
    assert!(fs::symlink_metadata(dir.net().join("last_reserved_ip.0")).unwrap().is_file());

    // The temp file is written on rebuilds: plant it again, then make the index stale.
    fs::remove_file(dir.net().join("cnirs-index.tmp")).ok();
    std::os::unix::fs::symlink(outside.join("tmp"), dir.net().join("cnirs-index.tmp")).unwrap();
    fs::write(dir.net().join("last_reserved_ip.0"), "10.4.0.50").unwrap();
    assert_eq!(first_ip(&add_ok(OURS, "c3", &c)), "10.4.0.51/24");
    assert_eq!(fs::read_to_string(outside.join("tmp")).unwrap(), "precious");
    assert!(ours("DEL", "c3", &c).ok && ours("DEL", "c2", &c).ok);
    assert!(leases(&dir.net()).is_empty());
}

/// How many times a plugin run opened a file whose name contains `needle`
/// (None when strace is absent).
fn opens_of(needle: &str, cmd: &str, id: &str, conf: &Value) -> Option<usize> {
    let trace = std::env::temp_dir().join(format!("host-local-strace-{}-{id}", std::process::id()));
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-e", "trace=open,openat,openat2", "-o"]).arg(&trace).arg(OURS);
    c.env_clear().env("CNI_COMMAND", cmd).env("CNI_PATH", "/usr/lib/cni");
    c.env("CNI_CONTAINERID", id).env("CNI_IFNAME", "eth0").env("CNI_NETNS", "/var/run/netns/none");
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null()).spawn().ok()?;
    child.stdin.take().unwrap().write_all(conf.to_string().as_bytes()).unwrap();
    let out = finish(child);
    assert!(out.ok, "{cmd} {id} under strace: {}", out.stdout);
    let text = fs::read_to_string(&trace).ok()?;
    let _ = fs::remove_file(&trace);
    Some(text.lines().filter(|l| l.contains(needle)).count())
}

/// Run `cmd` under strace, killed (SIGKILL) at its `n`-th call of `syscall`:
/// None when strace is absent, else whether it was killed (false: the run
/// made fewer such calls and finished).
fn killed_at(syscall: &str, n: usize, cmd: &str, id: &str, conf: &Value) -> Option<bool> {
    let mut c = Command::new("strace");
    c.args(["-f", "-qq", "-o", "/dev/null", "-e"])
        .arg(format!("inject={syscall}:signal=KILL:when={n}"))
        .arg(OURS);
    c.env_clear().env("CNI_COMMAND", cmd).env("CNI_PATH", "/usr/lib/cni");
    c.env("CNI_CONTAINERID", id).env("CNI_IFNAME", "eth0").env("CNI_NETNS", "/var/run/netns/none");
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().ok()?;
    let _ = child.stdin.take().unwrap().write_all(conf.to_string().as_bytes());
    let status = child.wait().unwrap();
    Some(std::os::unix::process::ExitStatusExt::signal(&status) == Some(libc::SIGKILL))
}

/// Whatever an ADD killed at any point leaves, a DEL of the same attachment
/// releases — a runtime's recovery — and the container can be added again.
/// (With two range sets, an ADD killed after its IPv6 lease but before the
/// index knew it left a lease that DEL, trusting the index, never released;
/// one killed between creating a lease file and writing it left an empty
/// lease nobody's DEL matches.)
#[test]
fn del_releases_whatever_a_killed_add_left() {
    let dir = TempDir::new("killed");
    let ranges = json!([[{"subnet": "10.6.0.0/24"}], [{"subnet": "fd06::/64"}]]);
    let c = conf("1.1.0", json!({"type": "host-local", "dataDir": dir.s(), "ranges": ranges}));
    // A first ADD and DEL: the index and the cursors exist from then on.
    add_ok(OURS, "warm", &c);
    assert!(ours("DEL", "warm", &c).ok);
    let mut kills = 0;
    for syscall in ["openat", "write", "link", "linkat", "rename", "unlink", "unlinkat"] {
        for n in 1.. {
            let Some(killed) = killed_at(syscall, n, "ADD", "victim", &c) else {
                println!("SKIP: strace is absent, no ADD killed");
                return;
            };
            let del = ours("DEL", "victim", &c);
            assert!(del.ok, "DEL after an ADD killed at {syscall} #{n}: {}", del.stdout);
            assert_eq!(
                leases(&dir.net()),
                Vec::<String>::new(),
                "after an ADD killed at {syscall} #{n} and DEL"
            );
            if !killed {
                break;
            }
            kills += 1;
            add_ok(OURS, "victim", &c);
            assert!(ours("DEL", "victim", &c).ok);
            assert_eq!(leases(&dir.net()), Vec::<String>::new());
        }
    }
    assert!(kills > 10, "only {kills} kill points");
}

#[test]
fn stray_cursor_files_change_nothing() {
    let dir = TempDir::new("strays");
    let c = v4(&dir, "10.5.0.0/24");
    fs::create_dir_all(dir.net()).unwrap();
    for n in ["300000", "18446744073709551615", "99999999999999999999", "01"] {
        fs::write(dir.net().join(format!("last_reserved_ip.{n}")), "10.5.0.200").unwrap();
    }
    assert_eq!(first_ip(&add_ok(OURS, "c1", &c)), "10.5.0.2/24");
    assert_eq!(first_ip(&add_ok(OURS, "c2", &c)), "10.5.0.3/24");
    assert!(ours("ADD", "c1", &c).msg().contains("duplicate allocation"));
    assert!(ours("DEL", "c1", &c).ok);
    assert_eq!(leases(&dir.net()), ["10.5.0.3"]);
    // ADD reads the cursor of its one range set, not one per stray.
    match opens_of("last_reserved_ip.", "ADD", "c3", &c) {
        Some(n) => assert!(n < 10, "ADD opened cursor files {n} times"),
        None => println!("SKIP: strace is absent, cursor reads not counted"),
    }
    assert_eq!(leases(&dir.net()), ["10.5.0.3", "10.5.0.4"]);
}

// ---- compatibility with the reference binary, both ways ----

fn ref_conf(dir: &TempDir) -> Value {
    // Debian's reference (v1.1.1) speaks up to 1.0.0.
    conf("1.0.0", json!({"type": "host-local", "dataDir": dir.s(), "ranges": [[{"subnet": "10.7.0.0/24"}]]}))
}

#[test]
fn reference_and_ours_share_a_data_dir() {
    if !reference_present() {
        return;
    }
    let dir = TempDir::new("compat");
    let c = ref_conf(&dir);
    let a = first_ip(&add_ok(REFERENCE, "ref-1", &c));
    let b = first_ip(&add_ok(OURS, "ours-1", &c));
    let d = first_ip(&add_ok(REFERENCE, "ref-2", &c));
    assert_eq!([a.as_str(), b.as_str(), d.as_str()], ["10.7.0.2/24", "10.7.0.3/24", "10.7.0.4/24"]);
    assert_eq!(fs::read_to_string(dir.net().join("10.7.0.3")).unwrap(), "ours-1\r\neth0");
    assert_eq!(fs::read_to_string(dir.net().join("10.7.0.2")).unwrap(), "ref-1\r\neth0");

    // Each sees the other's leases: CHECK and duplicate detection.
    assert!(run(OURS, "CHECK", "ref-1", "eth0", "", &c).ok);
    assert!(run(REFERENCE, "CHECK", "ours-1", "eth0", "", &c).ok);
    assert!(run(OURS, "ADD", "ref-2", "eth0", "", &c).msg().contains("duplicate allocation"));
    // A requested IP the reference holds is refused by us, and the reverse.
    assert!(!run(OURS, "ADD", "x", "eth0", "IP=10.7.0.2", &c).ok);
    assert!(!run(REFERENCE, "ADD", "y", "eth0", "IP=10.7.0.3", &c).ok);

    // Ours releases the reference's lease, the reference releases ours.
    assert!(run(OURS, "DEL", "ref-1", "eth0", "", &c).ok);
    assert!(run(REFERENCE, "DEL", "ours-1", "eth0", "", &c).ok);
    assert_eq!(leases(&dir.net()), ["10.7.0.4"]);
    // The reference releases an old-format lease we would also read.
    fs::write(dir.net().join("10.7.0.9"), "old").unwrap();
    assert!(run(REFERENCE, "DEL", "old", "eth0", "", &c).ok);
    assert_eq!(leases(&dir.net()), ["10.7.0.4"]);
}

#[test]
fn reference_and_ours_in_parallel_never_collide() {
    if !reference_present() {
        return;
    }
    let dir = TempDir::new("compat-par");
    let c = ref_conf(&dir);
    let children: Vec<Child> = (0..24)
        .map(|i| {
            let bin = if i % 2 == 0 { REFERENCE } else { OURS };
            spawn(bin, "ADD", &format!("m{i}"), "eth0", "", &c)
        })
        .collect();
    let ips: HashSet<String> = children
        .into_iter()
        .map(|ch| {
            let out = finish(ch);
            assert!(out.ok, "{}", out.stdout);
            first_ip(&out.json)
        })
        .collect();
    assert_eq!(ips.len(), 24);
    assert_eq!(leases(&dir.net()).len(), 24);
    // Everything is released whichever binary runs the DEL.
    for i in 0..24 {
        let bin = if i % 2 == 0 { OURS } else { REFERENCE };
        assert!(run(bin, "DEL", &format!("m{i}"), "eth0", "", &c).ok);
    }
    assert!(leases(&dir.net()).is_empty());
}

#[test]
fn exhaustion_across_both_binaries() {
    if !reference_present() {
        return;
    }
    let dir = TempDir::new("compat-full");
    let c = conf("1.0.0", json!({"dataDir": dir.s(), "ranges": [[{"subnet": "10.8.0.0/29"}]]}));
    // .2 to .6: five addresses, alternately taken by each binary.
    for i in 0..5 {
        add_ok(if i % 2 == 0 { OURS } else { REFERENCE }, &format!("f{i}"), &c);
    }
    assert!(!run(OURS, "ADD", "late", "eth0", "", &c).ok);
    let r = run(REFERENCE, "ADD", "late", "eth0", "", &c);
    assert!(!r.ok && r.msg().contains("no IP addresses available"), "{}", r.stdout);
    assert_eq!(leases(&dir.net()).len(), 5);
}

#[test]
fn long_container_ids_across_both_binaries() {
    if !reference_present() {
        return;
    }
    let dir = TempDir::new("compat-long");
    let c = ref_conf(&dir);
    for len in LONG_IDS {
        let id = "r".repeat(len);
        add_ok(REFERENCE, &id, &c);
        assert!(run(OURS, "CHECK", &id, "eth0", "", &c).ok, "id of {len}");
        assert!(run(OURS, "ADD", &id, "eth0", "", &c).msg().contains("duplicate allocation"), "id of {len}");
        assert!(run(OURS, "DEL", &id, "eth0", "", &c).ok, "id of {len}");
        assert!(leases(&dir.net()).is_empty(), "ours left the reference's lease of an id of {len}");
        add_ok(OURS, &id, &c);
        assert!(run(REFERENCE, "DEL", &id, "eth0", "", &c).ok, "id of {len}");
        assert!(leases(&dir.net()).is_empty(), "the reference left our lease of an id of {len}");
    }
}
