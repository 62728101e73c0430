//! DHCP on the wire before the interface has an address: an `AF_PACKET`
//! datagram socket bound to the container's interface (the kernel adds the
//! Ethernet header), IPv4 and UDP headers written and read here. A kernel
//! filter lets only UDP to port 68 through, so a busy LAN costs nothing.
//!
//! The socket is opened inside the container's netns and keeps working from
//! any thread afterwards: no thread of ours stays in that netns.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::event::{self, Event};

pub const CLIENT_PORT: u16 = 68;
pub const SERVER_PORT: u16 = 67;
const ETH_P_IP: u16 = 0x0800;
const PACKET_OUTGOING: u8 = 4;
pub const BROADCAST_MAC: [u8; 6] = [0xff; 6];

/// A UDP datagram to port 68 as it arrived.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub payload: Vec<u8>,
    pub src_ip: Ipv4Addr,
    /// The link-layer sender: the server, or the relay in front of it.
    pub src_mac: [u8; 6],
}

/// Why no datagram came.
#[derive(Debug)]
pub enum RecvError {
    /// The stop event was set.
    Stopped,
    Io(io::Error),
}

pub struct PacketSocket {
    fd: OwnedFd,
    ifindex: u32,
}

/// Classic BPF over the IPv4 header (a datagram packet socket's filter sees
/// the packet from the network header): UDP, not a later fragment,
/// destination port 68.
const FILTER: [libc::sock_filter; 9] = [
    bpf(0x30, 0, 0, 9),                  // ldb [9]            ip protocol
    bpf(0x15, 0, 6, 17),                 // jeq #17, next, drop
    bpf(0x28, 0, 0, 6),                  // ldh [6]            flags + fragment offset
    bpf(0x45, 4, 0, 0x1fff),             // jset #0x1fff, drop, next
    bpf(0xb1, 0, 0, 0),                  // ldxb 4*([0]&0xf)   header length
    bpf(0x48, 0, 0, 2),                  // ldh [x+2]          UDP destination port
    bpf(0x15, 0, 1, CLIENT_PORT as u32), // jeq #68, accept, drop
    bpf(0x06, 0, 0, 0x0004_0000),        // ret #262144   accept
    bpf(0x06, 0, 0, 0),                  // ret #0             drop
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn link_addr(ifindex: u32, mac: [u8; 6]) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain data; zero is valid.
    let mut sa: libc::sockaddr_ll = unsafe { zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_IP.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&mac);
    sa
}

impl PacketSocket {
    /// A socket on interface `ifindex` of the calling thread's netns.
    pub fn open(ifindex: u32) -> io::Result<PacketSocket> {
        // Protocol 0 receives nothing until bind, so nothing unfiltered queues up.
        // SAFETY: plain syscall; the fd is owned below.
        let fd = check(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
        // SAFETY: a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let prog = libc::sock_fprog { len: FILTER.len() as u16, filter: FILTER.as_ptr() as *mut _ };
        // SAFETY: a valid fd and a valid program that outlives the call (the kernel copies it).
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                &prog as *const _ as *const libc::c_void,
                size_of::<libc::sock_fprog>() as libc::socklen_t,
            )
        })?;
        let sa = link_addr(ifindex, [0; 6]);
        // SAFETY: a valid fd and address of the stated length.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        })?;
        Ok(PacketSocket { fd, ifindex })
    }

    /// Send `payload` from `src` (port 68) to `dst` (port 67) at link address `dst_mac`.
    pub fn send(&self, payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr, dst_mac: [u8; 6]) -> io::Result<()> {
        let pkt = udp_packet(payload, src, dst);
        let sa = link_addr(self.ifindex, dst_mac);
        // SAFETY: valid buffer and address of the stated lengths.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                pkt.as_ptr() as *const libc::c_void,
                pkt.len(),
                0,
                &sa as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The next datagram to port 68 before `deadline` (`Ok(None)` when it
    /// passes), or `Stopped` as soon as `stop` is set.
    pub fn recv(&self, deadline: Instant, stop: &Event) -> Result<Option<Received>, RecvError> {
        let mut buf = vec![0u8; 65536];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let ready = event::wait(
                &[(stop.fd(), libc::POLLIN), (self.fd.as_raw_fd(), libc::POLLIN)],
                Some(left.max(Duration::from_millis(1))),
            )
            .map_err(RecvError::Io)?;
            match ready {
                Some(0) => return Err(RecvError::Stopped),
                Some(_) => {}
                None if Instant::now() >= deadline => return Ok(None),
                None => continue,
            }
            // SAFETY: sockaddr_ll is plain data; zero is valid.
            let mut sa: libc::sockaddr_ll = unsafe { zeroed() };
            let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
            // SAFETY: valid buffer and address out-pointers of the stated lengths.
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr() as *mut libc::c_void,
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut sa as *mut _ as *mut libc::sockaddr,
                    &mut len,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => continue,
                    _ => return Err(RecvError::Io(e)),
                }
            }
            if sa.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            if let Some((payload, src_ip)) = parse_udp(&buf[..n as usize]) {
                let mut src_mac = [0u8; 6];
                src_mac.copy_from_slice(&sa.sll_addr[..6]);
                return Ok(Some(Received { payload: payload.to_vec(), src_ip, src_mac }));
            }
        }
    }
}

/// The Internet checksum (RFC 1071) of `parts` concatenated.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + UDP packet from port 68 to port 67 carrying `payload`.
pub fn udp_packet(payload: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
    let udp_len = (8 + payload.len()) as u16;
    let total = 20 + udp_len;
    let mut ip = [0u8; 20];
    ip[0] = 0x45; // IPv4, 5 words of header
    ip[1] = 0x10; // low delay, as DHCP clients mark it
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[8] = 64; // TTL
    ip[9] = 17; // UDP
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());

    let mut udp = [0u8; 8];
    udp[0..2].copy_from_slice(&CLIENT_PORT.to_be_bytes());
    udp[2..4].copy_from_slice(&SERVER_PORT.to_be_bytes());
    udp[4..6].copy_from_slice(&udp_len.to_be_bytes());
    let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, 17], &udp_len.to_be_bytes()[..]].concat();
    let c = match checksum(&[&pseudo, &udp, payload]) {
        0 => 0xffff, // 0 means "no checksum" in UDP over IPv4
        c => c,
    };
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    [&ip[..], &udp[..], payload].concat()
}

/// The payload and source of a UDP datagram to port 68 in an IPv4 packet.
/// Checksums are not verified: on a veth or macvlan the sender's kernel may
/// leave the UDP checksum to offload, and the packet socket sees it unfinished.
pub fn parse_udp(pkt: &[u8]) -> Option<(&[u8], Ipv4Addr)> {
    let first = *pkt.first()?;
    let ihl = usize::from(first & 0x0f) * 4;
    if first >> 4 != 4 || ihl < 20 || pkt.len() < ihl + 8 {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
    let fragment = u16::from_be_bytes([pkt[6], pkt[7]]) & 0x3fff; // MF flag or an offset
    if pkt[9] != 17 || fragment != 0 || total < ihl + 8 || total > pkt.len() {
        return None;
    }
    let udp = &pkt[ihl..total];
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    let len = usize::from(u16::from_be_bytes([udp[4], udp[5]]));
    if dport != CLIENT_PORT || len < 8 || len > udp.len() {
        return None;
    }
    let src = Ipv4Addr::new(pkt[12], pkt[13], pkt[14], pkt[15]);
    Some((&udp[8..len], src))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_are_rfc_1071() {
        // The example header of RFC 1071's successor errata / Wikipedia's IPv4 header checksum.
        let hdr = [
            0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00, 0x01,
            0xc0, 0xa8, 0x00, 0xc7,
        ];
        assert_eq!(checksum(&[&hdr]), 0xb861);
        // Split anywhere, even at odd offsets: the same sum.
        assert_eq!(checksum(&[&hdr[..3], &hdr[3..11], &hdr[11..]]), 0xb861);
    }

    #[test]
    fn packets_we_build_parse_back_and_verify() {
        let payload = b"a DHCP message, odd length";
        let src = Ipv4Addr::new(10, 0, 0, 5);
        let dst = Ipv4Addr::BROADCAST;
        let mut pkt = udp_packet(payload, src, dst);
        assert_eq!(pkt.len(), 28 + payload.len());
        assert_eq!(checksum(&[&pkt[..20]]), 0, "a valid header sums to zero");
        let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, 17], &pkt[24..26]].concat();
        assert_eq!(checksum(&[&pseudo, &pkt[20..]]), 0, "a valid UDP checksum sums to zero");
        // Sent to port 67: not ours to receive. Turned around to port 68: ours.
        assert_eq!(parse_udp(&pkt), None);
        pkt[22..24].copy_from_slice(&68u16.to_be_bytes());
        assert_eq!(parse_udp(&pkt), Some((&payload[..], src)));
    }

    #[test]
    fn malformed_packets_are_ignored() {
        let mut good = udp_packet(b"xyz", Ipv4Addr::LOCALHOST, Ipv4Addr::BROADCAST);
        good[22..24].copy_from_slice(&68u16.to_be_bytes());
        assert!(parse_udp(&good).is_some());
        type Spoil = Box<dyn Fn(&mut Vec<u8>)>;
        let variants: Vec<Spoil> = vec![
            Box::new(|p| p.truncate(27)),                                  // cut inside UDP
            Box::new(|p| p[0] = 0x65),                                     // not IPv4
            Box::new(|p| p[0] = 0x44),                                     // header too short
            Box::new(|p| p[9] = 6),                                        // TCP
            Box::new(|p| p[6] = 0x20),                                     // more fragments
            Box::new(|p| p[7] = 0x01),                                     // a later fragment
            Box::new(|p| p[2..4].copy_from_slice(&900u16.to_be_bytes())),  // longer than received
            Box::new(|p| p[24..26].copy_from_slice(&4u16.to_be_bytes())),  // UDP length < 8
            Box::new(|p| p[24..26].copy_from_slice(&99u16.to_be_bytes())), // UDP past the packet
            Box::new(|p| p.clear()),
        ];
        for (i, spoil) in variants.iter().enumerate() {
            let mut p = good.clone();
            spoil(&mut p);
            assert_eq!(parse_udp(&p), None, "variant {i}");
        }
    }
}
