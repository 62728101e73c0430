//! The short chaos and soak campaigns (the long ones: scripts/chaos and
//! scripts/soak; docs/reliability.md has their figures). Root tests in
//! network namespaces of their own, with every state dir in a temp dir; each
//! skips itself when not root. The seed of a failing chaos run is printed:
//! `scripts/chaos --seed S` replays its kill points.

use test_harness::chaos::{self, ChaosOpts};
use test_harness::soak::{self, SoakOpts};
use test_harness::*;

/// 60 runs (kept to about two minutes on a loaded 2-core machine; the long
/// campaign has the numbers): 36 killed a random time into a random plugin's
/// ADD or DEL, 24 at recorded syscalls spread over every plugin's ADD and DEL
/// trace; each followed by DEL without prevResult, a fresh ADD and a normal
/// DEL, with and without other containers attached.
#[test]
fn killed_plugins_leave_nothing_behind_after_the_runtime_recovers() {
    require_root!();
    let mut opts = ChaosOpts::new(36, Some(24));
    if let Some(seed) = std::env::var("CHAOS_SEED").ok().and_then(|s| s.parse().ok()) {
        opts.seed = seed;
    }
    let report = chaos::run(&opts).unwrap_or_else(|e| panic!("chaos set-up: {e}"));
    eprintln!("{}", report.markdown());
    assert!(report.runs.len() >= 57, "only {} runs", report.runs.len());
    assert!(report.ok(), "chaos found problems:\n{}", report.failures());
}

/// 5 rounds of 32 parallel ADDs, GC, 4 containers crashing, parallel DELs, GC.
#[test]
fn parallel_rounds_with_gc_fail_nothing_duplicate_nothing_leave_nothing() {
    require_root!();
    let report = soak::run(&SoakOpts::new(5, 32)).unwrap_or_else(|e| panic!("soak set-up: {e}"));
    eprintln!("{}", report.markdown());
    assert_eq!(report.rounds.len(), 5);
    assert!(report.ok(), "soak found problems:\n{}", report.failures());
}
