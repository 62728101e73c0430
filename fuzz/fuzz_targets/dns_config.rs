//! The DNS plugin's configuration (domainName, runtimeConfig aliases,
//! CNI_ARGS K8S_POD_NAME, prevResult): never a panic; parse → serialize →
//! parse gives the same config; every name the plugin registers is a valid
//! DNS name that the server then resolves — short and in the domain — to the
//! container's addresses, and each address resolves back (PTR) to it.
#![no_main]

use std::net::IpAddr;

use common::dns_names::dns_name;
use dns_sidecar::config::{self, DnsConf};
use dns_sidecar::table::{Answer, Entry, Table};
use dns_sidecar::wire;
use libfuzzer_sys::fuzz_target;

fn lookup<'t>(t: &'t Table, name: &str, qtype: u16) -> Answer<'t> {
    let msg = wire::build_query(1, name, qtype, None).expect("a valid name encodes");
    let q = wire::parse_query(&msg).expect("our query parses");
    // The answer borrows the table only, so the query can go.
    let name = q.name.clone();
    t.lookup(&name, qtype)
}

fuzz_target!(|data: &[u8]| {
    let Some(inv) = cni_rs_fuzz::invocation(data) else { return };
    let parsed = DnsConf::parse(&inv.conf);
    let again = DnsConf::parse(&cni_rs_fuzz::reserialized(&inv).conf);
    cni_rs_fuzz::same_outcome("dns-sidecar", &parsed, &again);
    let conf = match parsed {
        Ok(c) => c,
        Err(e) => return cni_rs_fuzz::readable(&e),
    };
    assert_eq!(dns_name(&conf.domain).as_deref(), Some(conf.domain.as_str()));
    let names = common::dns_names::of(&inv);
    assert!(!names.is_empty(), "the short container ID is always a name");
    for (i, n) in names.iter().enumerate() {
        assert_eq!(dns_name(n).as_deref(), Some(n.as_str()));
        assert!(!names[..i].contains(n));
    }
    let Some(prev) = &inv.conf.prev_result else { return };
    let ips = config::container_ips(prev, &inv.ifname);
    if prev.ips_of(&inv.ifname).iter().any(|ip| ip.gateway.is_some()) {
        let gws = config::gateways(prev, &inv.ifname).expect("prevResult names a gateway");
        let res = config::result(prev, &gws, &conf.domain);
        assert_eq!(res.dns.search[0], conf.domain);
        let _ = res.to_value(&inv.conf.cni_version);
    }
    let t = Table::build(&conf.domain, [Entry { names: &names, ips: &ips }]);
    let v4: Vec<[u8; 4]> = ips
        .iter()
        .filter_map(|n| match n.addr {
            IpAddr::V4(a) => Some(a.octets()),
            _ => None,
        })
        .collect();
    for n in &names {
        for full in [n.clone(), format!("{n}.{}", conf.domain)] {
            if full.len() > 253 {
                continue;
            }
            match lookup(&t, &full, wire::rtype::A) {
                Answer::Addrs(a) => {
                    assert!(v4.iter().all(|ip| a.v4.contains(ip)), "{full}: {a:?} lacks {v4:?}");
                }
                Answer::NoData => assert!(v4.is_empty(), "{full}: no A record for {v4:?}"),
                other => panic!("{full} (domain {}): {other:?}", conf.domain),
            }
        }
    }
});
