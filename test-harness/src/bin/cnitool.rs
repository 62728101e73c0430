//! A cnitool-compatible CLI (libcni's `cnitool`) on the test harness runtime.
//!
//! ```text
//! cnitool [-i IFNAME] add|check|del NETWORK NETNS
//! cnitool gc NETWORK [NETNS]        # DEL every cached attachment, then GC
//! cnitool status NETWORK [NETNS]
//! cnitool netns add|del NAME        # extras for testing by hand
//! cnitool exec NETNS CMD [ARGS…]
//! ```
//! Environment, as libcni's cnitool: `NETCONFPATH` (default /etc/cni/net.d),
//! `CNI_PATH`, `CNI_IFNAME` (default eth0), `CNI_ARGS`, `CAP_ARGS` (JSON).
//! Extras: `CNI_CONTAINERID` (default, as cnitool: `cnitool-` + hex of the
//! first 10 bytes of SHA-512 of the absolute netns path), `CNI_CACHE_DIR`
//! (default /var/lib/cni), `CNI_VALID_ATTACHMENTS` for gc (JSON
//! `[{"containerID","ifname"}]`; absent = none sent, like cnitool).
//! Plugins run in cnitool's own netns. ADD prints the result as pretty JSON.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use common::spec::NetConfList;
use serde_json::Value;
use test_harness::runtime::parse_cni_args;
use test_harness::sha512::{hex, sha512};
use test_harness::{Runtime, RuntimeConf};

fn usage() -> ExitCode {
    eprintln!(
        "cnitool: add, check, remove, gc or get status of a network attachment\n\
         \x20 cnitool [-i IFNAME] add|check|del <net> <netns>\n\
         \x20 cnitool gc <net> [<netns>]\n\
         \x20 cnitool status <net> [<netns>]\n\
         \x20 cnitool netns add|del <name>\n\
         \x20 cnitool exec <netns> <cmd> [args...]\n\
         env: NETCONFPATH CNI_PATH CNI_IFNAME CNI_ARGS CAP_ARGS CNI_CONTAINERID CNI_CACHE_DIR"
    );
    ExitCode::from(1)
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut ifname_flag = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "-i" | "--ifname" if i + 1 < args.len() => {
                ifname_flag = Some(args.remove(i + 1));
                args.remove(i);
            }
            s if s.starts_with("--ifname=") => {
                ifname_flag = Some(s["--ifname=".len()..].to_string());
                args.remove(i);
            }
            _ => i += 1,
        }
    }
    if args.is_empty() {
        return usage();
    }
    let res = match args[0].as_str() {
        "netns" if args.len() == 3 => netns_cmd(&args[1], &args[2]),
        "exec" if args.len() >= 3 => return exec_cmd(&args[1], &args[2..]),
        "add" | "check" | "del" if args.len() >= 3 => attach_cmd(&args[0], &args[1], &args[2], ifname_flag),
        "gc" | "status" if args.len() >= 2 => list_cmd(&args[0], &args[1]),
        _ => return usage(),
    };
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}

fn env(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

fn runtime() -> Runtime {
    let bin_dirs = env("CNI_PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    let cache = env("CNI_CACHE_DIR").unwrap_or_else(|| "/var/lib/cni".into());
    Runtime::new(bin_dirs, None, cache)
}

/// libcni `LoadNetworkConf`-like: the `.conflist`/`.conf`/`.json` in the dir
/// whose `name` matches (files in lexical order, conflists first).
fn load_network(name: &str) -> Result<NetConfList, String> {
    let dir = PathBuf::from(env("NETCONFPATH").unwrap_or_else(|| "/etc/cni/net.d".into()));
    let rd = std::fs::read_dir(&dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let ext = |p: &Path| p.extension().and_then(|e| e.to_str()).unwrap_or("").to_string();
    for want in [&["conflist"][..], &["conf", "json"][..]] {
        for f in files.iter().filter(|f| want.contains(&ext(f).as_str())) {
            let Ok(bytes) = std::fs::read(f) else { continue };
            match NetConfList::parse(&bytes) {
                Ok(l) if l.name == name => return Ok(l),
                Ok(_) => {}
                Err(e) => eprintln!("cnitool: skipping {}: {e}", f.display()),
            }
        }
    }
    Err(format!("no net configuration with name {name:?} in {}", dir.display()))
}

fn attach_cmd(cmd: &str, net: &str, netns: &str, ifname_flag: Option<String>) -> Result<(), String> {
    let list = load_network(net)?;
    let netns = std::path::absolute(netns).map_err(|e| e.to_string())?;
    let netns_s = netns.to_string_lossy().into_owned();
    let container_id = env("CNI_CONTAINERID")
        .unwrap_or_else(|| format!("cnitool-{}", hex(&sha512(netns_s.as_bytes())[..10])));
    let ifname = ifname_flag.or_else(|| env("CNI_IFNAME")).unwrap_or_else(|| "eth0".into());
    let mut rt = RuntimeConf::new(&container_id, &netns, &ifname);
    if let Some(a) = env("CNI_ARGS") {
        rt.args = parse_cni_args(&a);
        if rt.args.iter().any(|(k, v)| k.is_empty() || v.is_empty()) {
            return Err(format!("invalid CNI_ARGS {a:?}"));
        }
    }
    if let Some(c) = env("CAP_ARGS") {
        rt.cap_args = serde_json::from_str(&c).map_err(|e| format!("CAP_ARGS: {e}"))?;
    }
    let runtime = runtime();
    match cmd {
        "add" => {
            let res = runtime.add_rt(&list, &rt).map_err(|e| e.to_string())?;
            let v = res.to_value(&list.cni_version).map_err(|e| e.to_string())?;
            println!("{}", serde_json::to_string_pretty(&v).unwrap());
            Ok(())
        }
        "check" => runtime.check_rt(&list, &rt).map_err(|e| e.to_string()),
        _ => runtime.del_rt(&list, &rt).map_err(|e| e.to_string()),
    }
}

fn list_cmd(cmd: &str, net: &str) -> Result<(), String> {
    let list = load_network(net)?;
    let runtime = runtime();
    if cmd == "status" {
        return runtime.status(&list).map_err(|e| e.to_string());
    }
    let valid: Option<Vec<(String, String)>> = match env("CNI_VALID_ATTACHMENTS") {
        None => None,
        Some(s) => {
            let v: Value = serde_json::from_str(&s).map_err(|e| format!("CNI_VALID_ATTACHMENTS: {e}"))?;
            Some(
                v.as_array()
                    .ok_or("CNI_VALID_ATTACHMENTS must be a list")?
                    .iter()
                    .map(|a| {
                        let s = |k: &str| a.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                        (s("containerID"), s("ifname"))
                    })
                    .collect(),
            )
        }
    };
    runtime
        .gc_opt(&list, valid.as_deref())
        .map_err(|errs| errs.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
}

fn netns_cmd(op: &str, name: &str) -> Result<(), String> {
    let op = match op {
        "add" => "add",
        "del" | "delete" | "rm" => "del",
        _ => return Err(format!("unknown netns operation {op:?} (add|del)")),
    };
    let st = std::process::Command::new("ip")
        .args(["netns", op, name])
        .status()
        .map_err(|e| format!("ip netns {op}: {e}"))?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("ip netns {op} {name} failed"))
    }
}

/// Run a command inside a netns given by name (`/run/netns/NAME`) or path.
fn exec_cmd(netns: &str, argv: &[String]) -> ExitCode {
    let path = if netns.contains('/') { PathBuf::from(netns) } else { Path::new("/run/netns").join(netns) };
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..]);
    let _guard = match test_harness::exec::enter_netns_on_spawn(&mut cmd, &path) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cnitool exec: {e}");
            return ExitCode::from(1);
        }
    };
    match cmd.status() {
        Ok(st) => ExitCode::from(st.code().unwrap_or(1) as u8),
        Err(e) => {
            eprintln!("cnitool exec {}: {e}", argv[0]);
            ExitCode::from(127)
        }
    }
}
