//! host-local's configuration (ranges, legacy range, runtime ipRanges and
//! ips, routes, dataDir, resolvConf, CNI_ARGS IP): never a panic; parse →
//! serialize → parse gives the same config; every range is well formed; and
//! the allocator, run on the config against an in-memory store, hands out
//! addresses inside the ranges, never a gateway, never one address twice.
#![no_main]

use std::collections::HashMap;
use std::net::IpAddr;

use common::Result;
use host_local::allocator;
use host_local::config::{self, Config};
use host_local::store::{Lease, Store};
use libfuzzer_sys::fuzz_target;

#[derive(Default)]
struct Mem {
    leases: HashMap<IpAddr, Lease>,
    cursors: HashMap<usize, IpAddr>,
}

impl Store for Mem {
    fn reserve(&mut self, ip: IpAddr, id: &str, ifname: &str, set: usize) -> Result<bool> {
        if self.leases.contains_key(&ip) {
            return Ok(false);
        }
        self.leases.insert(ip, Lease { ip, container_id: id.into(), ifname: Some(ifname.into()) });
        self.cursors.insert(set, ip);
        Ok(true)
    }
    fn last_reserved(&self, set: usize) -> Option<IpAddr> {
        self.cursors.get(&set).copied()
    }
    fn leases(&self) -> Result<Vec<Lease>> {
        Ok(self.leases.values().cloned().collect())
    }
    fn release(&mut self, ip: IpAddr) -> Result<()> {
        self.leases.remove(&ip);
        Ok(())
    }
}

fn well_formed(cfg: &Config) {
    for set in &cfg.ranges {
        assert!(!set.0.is_empty());
        for r in &set.0 {
            assert!(r.subnet.contains(&r.start) && r.subnet.contains(&r.end), "{r:?}");
            assert!(r.contains(&r.start) && r.contains(&r.end), "{r:?}");
            // The gateway may lie outside the subnet, as the reference allows.
            assert_eq!(r.gateway.is_ipv4(), r.subnet.is_ipv4(), "{r:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let loaded = config::load(&inv.conf, &inv.args);
    let again = config::load(&cni_rs_fuzz::reserialized(&inv).conf, &inv.args);
    cni_rs_fuzz::same_outcome("host-local", &loaded, &again);
    let _ = config::network_dir(&inv.conf);
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    well_formed(&cfg);
    // Two attachments, then the first again (refused: it already holds one).
    let mut store = Mem::default();
    if let Some(pre) = cfg.ranges.first().and_then(|s| s.0.first()) {
        // Someone else's lease at the start, and the cursor at the end: the
        // search has to wrap.
        store.leases.insert(pre.start, Lease { ip: pre.start, container_id: "other".into(), ifname: None });
        store.cursors.insert(0, pre.end);
    }
    let mut given: Vec<IpAddr> = store.leases.keys().copied().collect();
    for (id, requested) in [("c1", &cfg.requested[..]), ("c2", &[][..])] {
        let Ok(ips) = allocator::allocate(&mut store, &cfg.ranges, requested, id, "eth0") else { continue };
        assert_eq!(ips.len(), cfg.ranges.len());
        for (ip, set) in ips.iter().zip(&cfg.ranges) {
            let a = ip.address.addr;
            let r = set.range_for(&a).unwrap_or_else(|| panic!("{a} outside {set:?}"));
            assert_ne!(a, r.gateway, "gateway handed out");
            assert_eq!(ip.gateway, Some(r.gateway));
            assert!(!given.contains(&a), "{a} handed out twice");
            given.push(a);
        }
    }
    if store.leases.values().any(|l| l.container_id == "c1") {
        assert!(allocator::allocate(&mut store, &cfg.ranges, &[], "c1", "eth0").is_err());
        assert!(allocator::release(&mut store, "c1", "eth0").unwrap() >= 1);
        assert!(!allocator::holds_any(&store, "c1", "eth0").unwrap());
    }
});
