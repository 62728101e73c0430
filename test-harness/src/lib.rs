//! Test harness of the CNI plugin suite.
//!
//! * [`TestNs`] (`HostNs`, `ContainerNs`): a uniquely named netns removed on drop;
//!   [`veth`] between two of them; commands and closures run inside one.
//! * [`Runtime`]: drives a conflist exactly as libcni does (request building,
//!   `prevResult` chaining, DEL in reverse with the cached result, CHECK, GC
//!   with `cni.dev/valid-attachments`, STATUS), plugins exec'ed with a chosen
//!   netns as their own.
//! * [`state`]: kernel state as JSON (`ip -j`, `nft -j`), [`ping`], [`wait_until`];
//!   [`Fingerprint`]s of netns, processes and directories, to prove nothing was left behind.
//! * [`FakePlugins`]: recording shell-script plugins with canned answers.
//! * [`missing_link_kind`]: whether this kernel makes ipvlan, vlan, … links (root
//!   tests of those skip with a message where it does not).
//! * [`dnsload`]: a DNS load generator and a fixed-answer responder (benchmarks).
//! * [`nodes`]: simulated hosts on a bridged or routed underlay, with an etcd
//!   member each (multi-node tests of the overlay).
//!
//! ```no_run
//! use serde_json::json;
//! use test_harness::*;
//!
//! let host = HostNs::with_lo().unwrap(); // plugins run with this as their own netns
//! let ctr = ContainerNs::new().unwrap();
//! let (rt, _cache) = runtime_in(&host); // binaries from target/<profile>, cache in a temp dir
//! let list = conflist(r#"{"cniVersion":"1.0.0","name":"t","plugins":[{"type":"bridge","bridge":"cni0",
//!     "isGateway":true,"ipam":{"type":"host-local","subnet":"10.88.0.0/24"}}]}"#);
//! let res = rt.add(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap();
//! assert!(link_exists(&host, "cni0") && ping(&ctr, "10.88.0.1"));
//! rt.del(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap();
//! assert!(!link_exists(&ctr, "eth0"));
//! ```

// `InvokeError` carries everything a failing test wants to print; its size
// on the error path of a test harness does not matter.
#![allow(clippy::result_large_err)]

pub mod chainlab;
pub mod chaos;
pub mod dnsload;
pub mod exec;
pub mod fake;
pub mod faults;
pub mod kernel_kinds;
pub mod nodes;
pub mod ns;
pub mod procs;
pub mod rng;
pub mod runtime;
pub mod sha512;
pub mod soak;
pub mod state;
pub mod tmp;

use std::path::PathBuf;

pub use common::spec::{CniResult, NetConfList};
pub use exec::{
    find_plugin, run_plugin, run_plugin_feeding, run_plugin_within, run_with_usage, InvokeError,
    PluginOutput, Usage,
};
pub use fake::{FakeCall, FakePlugins};
pub use kernel_kinds::{missing_link_kind, skip_unless_root_and};
pub use nodes::{Cluster, Node};
pub use ns::{is_root, netns_names, veth, ContainerNs, HostNs, TestNs};
pub use runtime::{
    parse_cni_args, runtime_config, CachedAttachment, ExecRecord, Runtime, RuntimeConf, SpawnHook, Spawned,
};
pub use state::{
    addr_show, addrs, has_route, link, link_exists, link_names, links, nft_is_empty, nft_objects,
    nft_ruleset, nft_text, ping, ping_timeout, routes, routes_all_tables, wait_until, Fingerprint,
    FingerprintSpec,
};
pub use tmp::TempDir;

/// Parse a conflist (or single `.conf`) from JSON text; panics on error (tests).
pub fn conflist(json: &str) -> NetConfList {
    NetConfList::parse(json.as_bytes()).unwrap_or_else(|e| panic!("bad conflist: {e}\n{json}"))
}

/// Parse a conflist from a `serde_json::Value`; panics on error (tests).
pub fn conflist_value(v: &serde_json::Value) -> NetConfList {
    conflist(&v.to_string())
}

/// The directory cargo puts the workspace's binaries in (`target/<profile>`),
/// derived from the running test executable (`target/<profile>/deps/x-hash`).
/// `CNI_TEST_BIN_DIR` overrides it. Build the plugins first (`cargo build`).
pub fn target_bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("CNI_TEST_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// A runtime for a test: plugins from [`target_bin_dir`] run in `host`, with
/// its own cache dir (kept alive by the returned [`TempDir`]).
pub fn runtime_in(host: &TestNs) -> (Runtime, TempDir) {
    let cache = TempDir::new().expect("temp dir");
    let rt = Runtime::new(vec![target_bin_dir()], Some(host.path().to_path_buf()), cache.path());
    (rt, cache)
}

/// The trimmed stdout of `cmd args…`, or `?` when it fails (report headers).
pub fn run_text(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".into())
}

/// `nproc …, kernel …, CPU …, load average …` for reports of timed runs.
pub fn machine_info() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "nproc {}, kernel {}, CPU {cpu}, load average {}",
        run_text("nproc", &[]),
        run_text("uname", &["-r"]),
        load_average()
    )
}

/// The three load averages of `/proc/loadavg`.
pub fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
