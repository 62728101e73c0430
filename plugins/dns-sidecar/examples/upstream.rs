//! A fake upstream DNS server for benchmarks (not part of the shipped
//! binary): `test_harness::dnsload::Responder` answering names under
//! `example.com` with A 192.0.2.1 (TTL 3600, so the daemon caches them) and
//! everything else NXDOMAIN without a SOA (never cached: every such query
//! is forwarded).
//!
//! ```text
//! upstream <listen ip> [port]
//! ip netns exec <upstream netns> target/release/examples/upstream 10.79.0.2
//! ```

use std::net::{IpAddr, UdpSocket};

use test_harness::dnsload::{Answer, Responder};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    let Some(ip) = a.first().and_then(|s| s.parse::<IpAddr>().ok()) else {
        eprintln!("usage: upstream <listen ip> [port]");
        std::process::exit(2);
    };
    let port: u16 = a.get(1).and_then(|p| p.parse().ok()).unwrap_or(53);
    let sock = UdpSocket::bind((ip, port)).expect("bind");
    let _r = Responder::spawn(sock, Answer::Upstream).expect("responder");
    loop {
        std::thread::park();
    }
}
