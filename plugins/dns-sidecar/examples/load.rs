//! A UDP load generator for benchmarking DNS servers (not part of the
//! shipped binary): a command-line front end to `test_harness::dnsload`,
//! which cnibench's DNS scenario uses too. Keeps a window of queries in
//! flight with `sendmmsg`/`recvmmsg` and reports answers per second.
//!
//! ```text
//! load <server ip> <name> [qtype: A|AAAA|PTR|<number>] [seconds] [window] [rate/s]
//! ip netns exec <client netns> target/release/examples/load 10.0.0.1 web A 5 128
//! ```
//! With several names separated by commas they are asked in turn. With a
//! rate, queries are sent at that pace (open loop) instead of keeping the
//! window full.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

use test_harness::dnsload::{build_query, qtype, run_load, LoadSpec};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 2 {
        eprintln!("usage: load <server ip> <name[,name…]> [A|AAAA|PTR|n] [seconds] [window] [rate/s]");
        std::process::exit(2);
    }
    let server = SocketAddr::new(a[0].parse().expect("server ip"), 53);
    let qt = match a.get(2).map(String::as_str).unwrap_or("A") {
        "A" => qtype::A,
        "AAAA" => qtype::AAAA,
        "PTR" => qtype::PTR,
        n => n.parse().expect("qtype"),
    };
    let secs: f64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let window: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(128);
    let queries = a[1].split(',').map(|n| build_query(n, qt).expect("name")).collect();
    let any: IpAddr = match server.ip() {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    };
    let sock = UdpSocket::bind((any, 0)).expect("bind");
    let mut spec = LoadSpec::new(server, queries, Duration::from_secs_f64(secs));
    spec.window = window;
    spec.rate = a.get(5).and_then(|s| s.parse().ok());
    let st = run_load(&sock, &spec).expect("load");
    println!("{} (window {window})", st.summary());
}
