//! A UDP load generator for benchmarking DNS servers (not part of the
//! shipped binary). Keeps a window of queries in flight with
//! `sendmmsg`/`recvmmsg` and reports answers per second.
//!
//! ```text
//! load <server ip> <name> [qtype: A|AAAA|PTR|<number>] [seconds] [window]
//! ip netns exec <client netns> target/release/examples/load 10.0.0.1 web A 5 128
//! ```
//! With several names separated by commas they are asked in turn.

use std::mem::{size_of, zeroed};
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use dns_sidecar::sock::{to_raw, Batch};
use dns_sidecar::wire::{self, rtype};

fn main() {
    let a: Vec<String> = std::env::args().skip(1).collect();
    if a.len() < 2 {
        eprintln!("usage: load <server ip> <name[,name…]> [A|AAAA|PTR|n] [seconds] [window]");
        std::process::exit(2);
    }
    let server = SocketAddr::new(a[0].parse().expect("server ip"), 53);
    let qtype = match a.get(2).map(String::as_str).unwrap_or("A") {
        "A" => rtype::A,
        "AAAA" => rtype::AAAA,
        "PTR" => rtype::PTR,
        n => n.parse().expect("qtype"),
    };
    let secs: u64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let window: usize = a.get(4).and_then(|s| s.parse().ok()).unwrap_or(128).clamp(1, 4096);
    let queries: Vec<Vec<u8>> = a[1]
        .split(',')
        .enumerate()
        .map(|(i, n)| wire::build_query(i as u16, n, qtype, None).unwrap())
        .collect();

    let sock = UdpSocket::bind(dns_sidecar::sock::any_of(&server.ip())).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let fd = sock.as_raw_fd();
    let (dst, dst_len) = to_raw(&server);
    let mut batch = Batch::new();
    let (mut inflight, mut sent, mut answered, mut lost) = (0usize, 0u64, 0u64, 0u64);
    let mut rcodes = [0u64; 16];
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let mut next = 0usize;
    while Instant::now() < end {
        // Refill the window in batches of up to 64.
        while inflight < window {
            let k = (window - inflight).min(64);
            // SAFETY: zeroed C structs, then pointed at live data below.
            let mut iov: [libc::iovec; 64] = unsafe { zeroed() };
            let mut hdr: [libc::mmsghdr; 64] = unsafe { zeroed() };
            for i in 0..k {
                let q = &queries[next % queries.len()];
                next += 1;
                iov[i] = libc::iovec { iov_base: q.as_ptr() as *mut libc::c_void, iov_len: q.len() };
                hdr[i].msg_hdr.msg_name = &dst as *const _ as *mut libc::c_void;
                hdr[i].msg_hdr.msg_namelen = dst_len;
                hdr[i].msg_hdr.msg_iov = &mut iov[i];
                hdr[i].msg_hdr.msg_iovlen = 1;
            }
            // SAFETY: k valid headers.
            let n = unsafe { libc::sendmmsg(fd, hdr.as_mut_ptr(), k as u32, 0) };
            if n <= 0 {
                break;
            }
            inflight += n as usize;
            sent += n as u64;
        }
        match batch.recv(fd) {
            Ok(n) => {
                for i in 0..n {
                    let (msg, _) = batch.received(i);
                    if msg.len() >= 4 {
                        rcodes[(msg[3] & 15) as usize] += 1;
                    }
                }
                answered += n as u64;
                inflight = inflight.saturating_sub(n);
            }
            Err(_) => {
                // Nothing for 50 ms: what is in flight is lost.
                lost += inflight as u64;
                inflight = 0;
            }
        }
    }
    let t = start.elapsed().as_secs_f64();
    let _ = size_of::<u8>();
    println!(
        "{:.0} answers/s ({answered} answers, {sent} sent, {lost} lost, {t:.1} s, window {window}); rcodes {:?}",
        answered as f64 / t,
        rcodes.iter().enumerate().filter(|(_, c)| **c > 0).map(|(r, c)| (r, *c)).collect::<Vec<_>>()
    );
}
