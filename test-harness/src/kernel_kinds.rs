//! Which link kinds this kernel makes: root tests of a plugin whose link kind
//! the kernel lacks (this development machine's 6.18 has no ipvlan, 8021q,
//! vrf or dummy) skip with a message, and run under `scripts/vm-test` on
//! Debian 12's 6.1, which has them all.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::ns::TestNs;

static ANSWERS: Mutex<BTreeMap<String, Option<String>>> = Mutex::new(BTreeMap::new());

/// Why this kernel cannot make a link of `kind` ("ipvlan", "vlan", "vrf",
/// "dummy", …), or `None` when it can. Tried once per process, in a scratch
/// netns: `ip link add` of one on a veth.
pub fn missing_link_kind(kind: &str) -> Option<String> {
    let mut answers = ANSWERS.lock().unwrap_or_else(|e| e.into_inner());
    answers.entry(kind.to_string()).or_insert_with(|| try_kind(kind)).clone()
}

/// A root test's opening: `Some(reason)` to print and skip when not root or
/// when the kernel lacks `kind`.
pub fn skip_unless_root_and(kind: &str) -> Option<String> {
    if !crate::ns::is_root() {
        return Some("skipped: needs root".into());
    }
    missing_link_kind(kind).map(|why| format!("skipped: {why}; scripts/vm-test runs it on Debian 12's 6.1"))
}

fn try_kind(kind: &str) -> Option<String> {
    let ns = match TestNs::new() {
        Ok(ns) => ns,
        Err(e) => return Some(format!("no scratch netns to try {kind} in: {e}")),
    };
    if let Err(e) = ns.ip(&["link", "add", "p0", "type", "veth", "peer", "name", "p1"]) {
        return Some(format!("no veth to try {kind} on: {e}"));
    }
    let extra: &[&str] = match kind {
        "vlan" => &["id", "1"],
        "vrf" => &["table", "10"],
        _ => &[],
    };
    let parent: &[&str] = if matches!(kind, "ipvlan" | "macvlan" | "vlan") { &["link", "p0"] } else { &[] };
    let mut args = vec!["link", "add", "probe0"];
    args.extend(parent);
    args.extend(["type", kind]);
    args.extend(extra);
    match ns.ip(&args) {
        Ok(_) => None,
        Err(e) => {
            let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
            Some(format!("this kernel ({}) makes no {kind} links ({e})", release.trim()))
        }
    }
}
