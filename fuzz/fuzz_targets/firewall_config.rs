//! firewall's configuration (backend, ingressPolicy, the iptables-only
//! fields) with the prevResult it works from: never a panic; parse →
//! serialize → parse gives the same config; the container addresses it
//! would allow are those prevResult gives the interface.
#![no_main]

use firewall::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let loaded = Config::load(&inv);
    let again = Config::load(&cni_rs_fuzz::reserialized(&inv));
    cni_rs_fuzz::same_outcome("firewall", &loaded, &again);
    if let Err(e) = &loaded {
        return cni_rs_fuzz::readable(e);
    }
    if let Some(prev) = &inv.conf.prev_result {
        let ips = prev.ips_of(&inv.ifname);
        assert!(ips.len() <= prev.ips.len());
        let _ = prev
            .interfaces
            .iter()
            .find(|i| i.sandbox.is_empty())
            .map(|b| common::skel::validate_ifname(&b.name));
    }
});
