//! Results in every spec version: never a panic; every conversion the
//! converter emits is read back by the parser (in its target version); what
//! the target version can hold survives the trip (A → B → A is exact where B
//! holds all of A); what it cannot hold is left out exactly as libcni does.
#![no_main]

use common::spec::version::{era, Era, ALL};
use common::spec::{CniResult, IpConfig, Route};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The result as `to` can hold it.
fn expected_in(r: &CniResult, to: &str) -> CniResult {
    let mut e = r.clone();
    e.cni_version = to.to_string();
    match era(to).unwrap() {
        Era::Legacy => {
            // The first IP of each family; the routes of the families that have one.
            let first = |v4: bool| r.ips.iter().find(|i| i.address.is_ipv4() == v4);
            e.ips = [first(true), first(false)]
                .into_iter()
                .flatten()
                .map(|i| IpConfig { address: i.address, gateway: i.gateway, interface: None })
                .collect();
            let fams: Vec<bool> = e.ips.iter().map(|i| i.address.is_ipv4()).collect();
            // ip4's routes come first, then ip6's.
            e.routes = [true, false]
                .into_iter()
                .filter(|v4| fams.contains(v4))
                .flat_map(|v4| r.routes.iter().filter(move |rt| rt.dst.is_ipv4() == v4))
                .map(|rt| Route::new(rt.dst, rt.gw))
                .collect();
            e.interfaces.clear();
        }
        _ if to != "1.1.0" => {
            for i in &mut e.interfaces {
                i.mtu = None;
                i.socket_path.clear();
                i.pci_id.clear();
            }
        }
        _ => {}
    }
    e
}

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<Value>(data) else { return };
    let res = match CniResult::parse(&v, "1.0.0") {
        Ok(r) => r,
        Err(e) => {
            assert_eq!(e.code, 6, "{e:?}");
            cni_rs_fuzz::readable(&e);
            return;
        }
    };
    let from = res.cni_version.clone();
    assert!(ALL.contains(&from.as_str()));
    for to in ALL {
        let out = match res.to_value(to) {
            Ok(out) => out,
            Err(e) => {
                // Only the legacy shape can refuse: it needs an IP.
                assert_eq!(e.code, 1, "{from} -> {to}: {e:?}");
                assert!(era(to) == Some(Era::Legacy) && res.ips.is_empty(), "{from} -> {to}: {e:?}");
                continue;
            }
        };
        assert_eq!(out["cniVersion"], to);
        // The text form is the same value.
        let text = res.to_json(to).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), out);
        let back =
            CniResult::parse(&out, to).unwrap_or_else(|e| panic!("{from} -> {to} unreadable: {e:?}\n{out}"));
        assert_eq!(back, expected_in(&res, to), "{from} -> {to}\n{out}");
        // And back to where it came from: exact when `to` lost nothing.
        let Ok(home) = back.to_value(&from) else {
            assert!(era(&from) == Some(Era::Legacy) && back.ips.is_empty(), "{from} -> {to} -> {from}");
            continue;
        };
        let home = CniResult::parse(&home, &from).unwrap();
        if expected_in(&res, to) == (CniResult { cni_version: to.to_string(), ..res.clone() }) {
            assert_eq!(home, res, "{from} -> {to} -> {from}");
        }
    }
});
