//! A plugin's network configuration (NetConf) and a runtime's network list
//! (NetConfList): never a panic; code 6 for what is not JSON, 6 or 7 for a
//! bad config; parse → serialize → parse gives the same configuration.
#![no_main]

use common::spec::{NetConf, NetConfList};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match NetConf::parse(data) {
        Err(e) => {
            assert!(e.code == 6 || e.code == 7, "{e:?}");
            cni_rs_fuzz::readable(&e);
        }
        Ok(c) => {
            let again = NetConf::parse(&serde_json::to_vec(&c.raw).unwrap()).expect("re-serialized config");
            assert_eq!(
                (&again.cni_version, &again.name, &again.plugin_type),
                (&c.cni_version, &c.name, &c.plugin_type)
            );
            assert_eq!(again.dns, c.dns);
            assert_eq!(again.prev_result, c.prev_result);
            assert!(common::spec::conf::valid_name(&c.name));
            // What every plugin asks of a parsed config.
            let _ = c.runtime("portMappings");
            let _ = c.cni_arg("ips");
            let _ = c.ipam_type();
            let _ = c.valid_attachments();
            if let Some(prev) = &c.prev_result {
                let _ = prev.ips_of("eth0");
                // A prevResult read in the config's version can be written back in it.
                let _ = prev.to_value(&c.cni_version);
            }
        }
    }
    match NetConfList::parse(data) {
        Err(e) => cni_rs_fuzz::readable(&e),
        Ok(l) => {
            let again = NetConfList::parse(&serde_json::to_vec(&l.raw).unwrap()).expect("re-serialized list");
            assert_eq!(
                (&again.cni_version, &again.name, &again.plugins),
                (&l.cni_version, &l.name, &l.plugins)
            );
            assert!(l
                .plugins
                .iter()
                .all(|p| p.get("type").and_then(|t| t.as_str()).is_some_and(|t| !t.is_empty())));
        }
    }
});
