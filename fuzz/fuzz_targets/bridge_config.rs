//! bridge's configuration (every field of the reference plugin: bridge name,
//! gateway modes, masquerade, MTU, hairpin/promisc, VLAN and trunks, DAD,
//! spoof check, port isolation) with its CNI_ARGS and runtimeConfig: never a
//! panic; parse → serialize → parse gives the same config; an accepted
//! config names a valid bridge, and its trunk VLANs are sorted, distinct and
//! in 1–4094.
#![no_main]

use bridge::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let loaded = Config::load(&inv);
    let again = Config::load(&cni_rs_fuzz::reserialized(&inv));
    cni_rs_fuzz::same_outcome("bridge", &loaded, &again);
    let c = match loaded {
        Ok(c) => c,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    assert!(common::skel::validate_ifname(&c.bridge).is_ok(), "{:?}", c.bridge);
    assert!((0..=4094).contains(&c.vlan) && c.mtu <= 65535);
    let trunks = c.trunk_vlans().expect("an accepted config has valid trunks");
    assert!(trunks.windows(2).all(|w| w[0] < w[1]), "{trunks:?}");
    assert!(trunks.iter().all(|v| (1..=4094).contains(v)));
    assert_eq!(c.uses_vlans(), c.vlan != 0 || !c.vlan_trunk.is_empty());
    let _ = inv.requested_mac();
});
