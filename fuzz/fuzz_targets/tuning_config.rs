//! tuning's configuration (sysctl, mac, promisc, mtu, allmulti, txQLen,
//! dataDir, the args.cni and runtimeConfig overrides, CNI_ARGS MAC): never a
//! panic; parse → serialize → parse gives the same settings; every sysctl
//! resolves to a path strictly inside /proc/sys/net.
#![no_main]

use std::path::{Component, Path};

use libfuzzer_sys::fuzz_target;
use tuning::config;

fuzz_target!(|data: &[u8]| {
    // No node allowlist: every key that passes the shape checks is allowed
    // (the allowlist has its own target).
    static INIT: std::sync::Once = std::sync::Once::new();
    INIT.call_once(|| std::env::set_var(tuning::allowlist::PATH_ENV, "/nonexistent/allowlist.conf"));

    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let _ = config::data_dir(&inv);
    let loaded = match config::load(&inv) {
        Ok(s) => s,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    // Re-serializing merges duplicate keys, which only the original bytes can
    // be refused for; an accepted config must read the same.
    let again = config::load(&cni_rs_fuzz::reserialized(&inv));
    cni_rs_fuzz::same_outcome("tuning", &Ok(loaded.clone()), &again);
    for (key, (path, _)) in &loaded.sysctl {
        let full = Path::new("/proc/sys").join(path);
        let comps: Vec<Component> = full.components().collect();
        assert!(
            comps.iter().all(|c| matches!(c, Component::RootDir | Component::Normal(_))),
            "{key:?} -> {path:?}"
        );
        assert!(
            full.starts_with("/proc/sys/net/") && full != Path::new("/proc/sys/net"),
            "{key:?} -> {path:?}"
        );
        assert!(!path.chars().any(char::is_control));
        assert_eq!(config::sysctl_path(key, &inv.ifname).unwrap(), *path);
    }
    if let Some(mtu) = loaded.mtu {
        assert!((1..=65535).contains(&mtu));
    }
    let _ = loaded.touches_link();
});
