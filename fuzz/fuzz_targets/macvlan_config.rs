//! macvlan's configuration (master, mode, MTU, MAC from the config,
//! CNI_ARGS, args.cni and runtimeConfig, linkInContainer, bcqueuelen): never
//! a panic; parse → serialize → parse gives the same config; an accepted
//! master is a valid interface name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use macvlan::config::Config;

fuzz_target!(|data: &[u8]| {
    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let loaded = Config::load(&inv);
    let again = Config::load(&cni_rs_fuzz::reserialized(&inv));
    cni_rs_fuzz::same_outcome("macvlan", &loaded, &again);
    let c = match loaded {
        Ok(c) => c,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    if !c.master.is_empty() {
        assert!(common::skel::validate_ifname(&c.master).is_ok(), "{:?}", c.master);
    }
    // The runtime's MAC wins over the config's.
    if let Ok(Some(mac)) = inv.requested_mac() {
        assert_eq!(c.mac, Some(mac));
    }
});
