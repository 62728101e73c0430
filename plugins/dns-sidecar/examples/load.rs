//! A UDP load generator for benchmarking DNS servers (not part of the
//! shipped binary). Keeps a window of queries in flight with
//! `sendmmsg`/`recvmmsg` and reports answers per second.
//!
//! ```text
//! load <server ip> <name> [qtype: A|AAAA|PTR|<number>] [seconds] [window]
//! ip netns exec <client netns> target/release/examples/load 10.0.0.1 web A 5 128
//! ```
//! With several names separated by commas they are asked in turn.

use std::mem::zeroed;
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
    let mut bufs: Vec<Vec<u8>> = (0..64).map(|_| Vec::with_capacity(512)).collect();
    let mut sent_at: Vec<Option<Instant>> = vec![None; 65536];
    let mut rtts: Vec<u32> = Vec::new();
    while Instant::now() < end {
        // Refill the window in batches of up to 64, each query with its own ID.
        while inflight < window {
            let k = (window - inflight).min(64);
            // SAFETY: zeroed C structs, then pointed at live data below.
            let mut iov: [libc::iovec; 64] = unsafe { zeroed() };
            let mut hdr: [libc::mmsghdr; 64] = unsafe { zeroed() };
            let now = Instant::now();
            for i in 0..k {
                let q = &mut bufs[i];
                q.clear();
                q.extend_from_slice(&queries[next % queries.len()]);
                let id = (next % 65536) as u16;
                wire::set_id(q, id);
                sent_at[id as usize] = Some(now);
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
                        if let Some(t) = sent_at[wire::id_of(msg) as usize].take() {
                            if rtts.len() < 2_000_000 {
                                rtts.push(t.elapsed().as_micros() as u32);
                            }
                        }
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
    rtts.sort_unstable();
    let pct =
        |p: f64| rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1))).copied();
    println!(
        "{:.0} answers/s ({answered} answers, {sent} sent, {lost} lost, {t:.1} s, window {window}); \
         rtt p50 {:?} us p99 {:?} us; rcodes {:?}",
        answered as f64 / t,
        pct(0.50).unwrap_or(0),
        pct(0.99).unwrap_or(0),
        rcodes.iter().enumerate().filter(|(_, c)| **c > 0).map(|(r, c)| (r, *c)).collect::<Vec<_>>()
    );
}
