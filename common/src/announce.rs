//! Neighbour announcements: a gratuitous ARP (IPv4) and an unsolicited
//! neighbour advertisement (IPv6), so hosts on the link learn a new
//! address-to-MAC binding at once instead of after their cache times out.
//!
//! The sockets live in the netns of the calling thread: call these inside
//! `Netns::run` (or use [`announce_in`]) for a container's interface.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{FromRawFd, OwnedFd};

use crate::netns::Netns;

const ETH_P_ARP: u16 = 0x0806;
const ARPOP_REQUEST: u16 = 1;
const BROADCAST: [u8; 6] = [0xff; 6];
const ICMPV6_NA: u8 = 136;
const NA_FLAG_OVERRIDE: u8 = 0x20;
const ND_OPT_TARGET_LL_ADDR: u8 = 2;

/// The 28-byte ARP payload of a gratuitous request: sender and target
/// protocol address are both `ip`, the target hardware address is zero.
pub fn garp_packet(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 28] {
    let mut p = [0u8; 28];
    p[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    p[2..4].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    p[4] = 6;
    p[5] = 4;
    p[6..8].copy_from_slice(&ARPOP_REQUEST.to_be_bytes());
    p[8..14].copy_from_slice(&mac);
    p[14..18].copy_from_slice(&ip.octets());
    p[24..28].copy_from_slice(&ip.octets());
    p
}

/// The ICMPv6 neighbour advertisement for `ip` (override flag, target
/// link-layer address option). The kernel fills the checksum.
pub fn na_packet(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 32] {
    let mut p = [0u8; 32];
    p[0] = ICMPV6_NA;
    p[4] = NA_FLAG_OVERRIDE;
    p[8..24].copy_from_slice(&ip.octets());
    p[24] = ND_OPT_TARGET_LL_ADDR;
    p[25] = 1; // in units of 8 bytes
    p[26..32].copy_from_slice(&mac);
    p
}

fn socket(domain: i32, ty: i32, proto: i32) -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(domain, ty | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh, valid descriptor nobody else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Broadcast a gratuitous ARP request for `ip` from `mac` on `ifindex`.
pub fn gratuitous_arp(ifindex: u32, mac: [u8; 6], ip: Ipv4Addr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SOCK_DGRAM: the kernel builds the Ethernet header from the address below.
    // Protocol 0: this socket sends only and never queues received frames.
    let fd = socket(libc::AF_PACKET, libc::SOCK_DGRAM, 0)?;
    // SAFETY: sockaddr_ll is plain data.
    let mut sa: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sa.sll_family = libc::AF_PACKET as u16;
    sa.sll_protocol = ETH_P_ARP.to_be();
    sa.sll_ifindex = ifindex as i32;
    sa.sll_halen = 6;
    sa.sll_addr[..6].copy_from_slice(&BROADCAST);
    let pkt = garp_packet(mac, ip);
    // SAFETY: valid fd, buffer and address of the stated lengths.
    let n = unsafe {
        libc::sendto(
            fd.as_raw_fd(),
            pkt.as_ptr() as *const libc::c_void,
            pkt.len(),
            0,
            &sa as *const libc::sockaddr_ll as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Send an unsolicited neighbour advertisement for `ip` (which must be
/// assigned to `ifindex` and no longer tentative) to all nodes (ff02::1).
pub fn unsolicited_na(ifindex: u32, mac: [u8; 6], ip: Ipv6Addr) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = socket(libc::AF_INET6, libc::SOCK_RAW, libc::IPPROTO_ICMPV6)?;
    let raw = fd.as_raw_fd();
    let set = |opt: libc::c_int, v: libc::c_int| {
        // SAFETY: valid fd and an int option value.
        check(unsafe {
            libc::setsockopt(
                raw,
                libc::IPPROTO_IPV6,
                opt,
                &v as *const libc::c_int as *const libc::c_void,
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        })
    };
    // Receivers drop neighbour discovery that did not come with hop limit 255.
    set(libc::IPV6_MULTICAST_HOPS, 255)?;
    set(libc::IPV6_MULTICAST_IF, ifindex as libc::c_int)?;
    let scope = if ip.segments()[0] & 0xffc0 == 0xfe80 { ifindex } else { 0 };
    // The advertised address is the source, as the kernel's own NA has it.
    let src = sockaddr_in6(ip, scope);
    // SAFETY: valid fd and sockaddr_in6.
    check(unsafe {
        libc::bind(
            raw,
            &src as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    })?;
    let dst = sockaddr_in6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1), ifindex);
    let pkt = na_packet(mac, ip);
    // SAFETY: valid fd, buffer and address of the stated lengths.
    let n = unsafe {
        libc::sendto(
            raw,
            pkt.as_ptr() as *const libc::c_void,
            pkt.len(),
            0,
            &dst as *const libc::sockaddr_in6 as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr_in6(ip: Ipv6Addr, scope: u32) -> libc::sockaddr_in6 {
    // SAFETY: sockaddr_in6 is plain data.
    let mut sa: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
    sa.sin6_family = libc::AF_INET6 as u16;
    sa.sin6_addr.s6_addr = ip.octets();
    sa.sin6_scope_id = scope;
    sa
}

/// Announce each of `ips` on `ifindex` of the calling thread's netns: a
/// gratuitous ARP per IPv4 address, an unsolicited NA per IPv6 address.
/// Keeps going on errors and returns the first.
pub fn announce(ifindex: u32, mac: [u8; 6], ips: &[IpAddr]) -> io::Result<()> {
    let mut first = None;
    for ip in ips {
        let r = match ip {
            IpAddr::V4(v4) => gratuitous_arp(ifindex, mac, *v4),
            IpAddr::V6(v6) => unsolicited_na(ifindex, mac, *v6),
        };
        if let Err(e) = r {
            first.get_or_insert(io::Error::new(e.kind(), format!("announcing {ip}: {e}")));
        }
    }
    first.map_or(Ok(()), Err)
}

/// [`announce`] from inside `ns`.
pub fn announce_in(ns: &Netns, ifindex: u32, mac: [u8; 6], ips: &[IpAddr]) -> io::Result<()> {
    ns.run(|| announce(ifindex, mac, ips))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garp_layout() {
        let p = garp_packet([2, 1, 2, 3, 4, 5], Ipv4Addr::new(10, 0, 0, 7));
        assert_eq!(
            p.to_vec(),
            [
                &[0, 1, 8, 0, 6, 4, 0, 1][..],
                &[2, 1, 2, 3, 4, 5, 10, 0, 0, 7],
                &[0, 0, 0, 0, 0, 0, 10, 0, 0, 7],
            ]
            .concat()
        );
    }

    #[test]
    fn na_layout() {
        let ip: Ipv6Addr = "2001:db8::5".parse().unwrap();
        let p = na_packet([2, 1, 2, 3, 4, 5], ip);
        assert_eq!((p[0], p[1], p[4]), (136, 0, 0x20));
        assert_eq!(&p[8..24], &ip.octets());
        assert_eq!(&p[24..32], &[2, 1, 2, 1, 2, 3, 4, 5]);
    }
}
