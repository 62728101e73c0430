//! portmap's configuration and `runtimeConfig.portMappings` (any key case, as
//! containerd's CRI sends them): never a panic; parse → serialize → parse
//! gives the same config; and the mappings kept publish exactly what the
//! runtime asked for — every (family, host address, protocol, host port)
//! of the input leads to its container port, and nothing else is published.
#![no_main]

use std::collections::BTreeMap;
use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use portmap::config::{Config, Mapping, Proto};
use serde_json::Value;

type Key = (bool, Option<IpAddr>, Proto, u16);

fn keys(host_ip: Option<IpAddr>) -> Vec<(bool, Option<IpAddr>)> {
    match host_ip {
        None => vec![(false, None), (true, None)],
        Some(ip) => vec![(ip.is_ipv6(), Some(ip).filter(|ip| !ip.is_unspecified()))],
    }
}

/// What the mappings publish.
fn published(ms: &[Mapping]) -> BTreeMap<Key, u16> {
    let mut out = BTreeMap::new();
    for m in ms {
        for (v6, ip) in keys(m.host_ip) {
            if let Some(old) = out.insert((v6, ip, m.proto, m.host_port), m.container_port) {
                assert_eq!(old, m.container_port, "two mappings kept for one host port: {ms:?}");
            }
        }
    }
    out
}

/// What the runtime asked for, read from the JSON independently of the plugin.
fn asked(list: &[Value]) -> BTreeMap<Key, u16> {
    let mut out = BTreeMap::new();
    for e in list {
        let get =
            |k: &str| e.as_object().unwrap().iter().find(|(n, _)| n.eq_ignore_ascii_case(k)).map(|(_, v)| v);
        let port = |k: &str| get(k).and_then(Value::as_i64).unwrap() as u16;
        let proto = match get("protocol").and_then(Value::as_str).unwrap_or("").to_ascii_lowercase().as_str()
        {
            "" | "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            _ => Proto::Sctp,
        };
        let host_ip =
            get("hostIP").and_then(Value::as_str).filter(|s| !s.is_empty()).map(|s| s.parse().unwrap());
        for (v6, ip) in keys(host_ip) {
            let (key, to) = ((v6, ip, proto, port("hostPort")), port("containerPort"));
            if let Some(old) = out.insert(key, to) {
                assert_eq!(old, to, "a host port mapped to two container ports was accepted: {list:?}");
            }
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let loaded = Config::load(&inv.conf);
    let again = Config::load(&cni_rs_fuzz::reserialized(&inv).conf);
    cni_rs_fuzz::same_outcome("portmap", &loaded, &again);
    let cfg = match loaded {
        Ok(c) => c,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    for m in &cfg.mappings {
        assert!(m.host_port > 0 && m.container_port > 0);
        let _ = (m.to_string(), m.applies_to(true), m.applies_to(false), m.proto.number());
    }
    let list = match inv.conf.runtime("portMappings") {
        Some(Value::Array(l)) => l.clone(),
        _ => Vec::new(),
    };
    // Keys fold only when the canonical spelling is absent: skip such inputs.
    let ambiguous = list.iter().any(|e| {
        let ks: Vec<String> = e.as_object().unwrap().keys().map(|k| k.to_ascii_lowercase()).collect();
        (1..ks.len()).any(|i| ks[..i].contains(&ks[i]))
    });
    if !ambiguous {
        assert_eq!(published(&cfg.mappings), asked(&list), "{list:?}");
    }
});
