//! resolv.conf as the two readers see it: host-local's `resolvConf` (copied
//! into the result's `dns`) and the DNS server's upstream list. Never a
//! panic; host-local's reading written back as resolv.conf reads the same;
//! the upstreams are at most three, distinct, on port 53, never an
//! unspecified or excluded (our own) address.
#![no_main]

use std::net::IpAddr;

use common::spec::Dns;
use dns_sidecar::resolv;
use libfuzzer_sys::fuzz_target;

fn render(d: &Dns) -> String {
    let mut s = String::new();
    for n in &d.nameservers {
        s += &format!("nameserver {n}\n");
    }
    if !d.domain.is_empty() {
        s += &format!("domain {}\n", d.domain);
    }
    if !d.search.is_empty() {
        s += &format!("search {}\n", d.search.join(" "));
    }
    if !d.options.is_empty() {
        s += &format!("options {}\n", d.options.join(" "));
    }
    s
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let dns = host_local::dns::parse_resolv_conf(&text);
    let words =
        dns.nameservers.iter().chain(&dns.search).chain(&dns.options).chain(std::iter::once(&dns.domain));
    for w in words.filter(|w| !w.is_empty()) {
        assert!(!w.contains(char::is_whitespace), "{w:?}");
    }
    assert_eq!(host_local::dns::parse_resolv_conf(&render(&dns)), dns);

    let own: IpAddr = "10.89.0.1".parse().unwrap();
    let ups = resolv::parse(&text, &[own]);
    assert!(ups.len() <= resolv::MAX_UPSTREAMS);
    for (i, u) in ups.iter().enumerate() {
        assert_eq!(u.port(), 53);
        assert!(!u.ip().is_unspecified() && u.ip() != own, "{u}");
        assert!(!ups[..i].contains(u), "{u} twice");
    }
});
