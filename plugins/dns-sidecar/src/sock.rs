//! Sockets the way the server needs them: bound with `IP_FREEBIND` (a
//! gateway address may still be tentative, or appear a moment later),
//! `SO_REUSEADDR` for TCP only, IPv6 sockets IPv6-only; and batched UDP I/O with
//! `recvmmsg`/`sendmmsg`, one system call for up to [`BATCH`] queries.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const SO_RCVBUFFORCE: libc::c_int = 33;

fn setopt(fd: RawFd, level: libc::c_int, opt: libc::c_int, val: libc::c_int) -> io::Result<()> {
    // SAFETY: valid fd, a c_int option value of the right size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            &val as *const _ as *const libc::c_void,
            size_of::<libc::c_int>() as _,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub use common::sockaddr::{from_raw, to_raw};

fn bound_socket(addr: &SocketAddr, ty: libc::c_int) -> io::Result<OwnedFd> {
    let family = if addr.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(family, ty | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let raw = fd.as_raw_fd();
    // TCP: rebind at once over TIME_WAIT after a restart. Not UDP: there it
    // would let a second server bind the same address and silently take
    // its queries; a clash must fail loudly instead.
    if ty == libc::SOCK_STREAM {
        setopt(raw, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
    }
    if addr.is_ipv4() {
        setopt(raw, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)?;
    } else {
        setopt(raw, libc::IPPROTO_IPV6, libc::IPV6_V6ONLY, 1)?;
        // IPV6_FREEBIND needs Linux 4.15; IP_FREEBIND covers older kernels.
        if setopt(raw, libc::IPPROTO_IPV6, libc::IPV6_FREEBIND, 1).is_err() {
            setopt(raw, libc::IPPROTO_IP, libc::IP_FREEBIND, 1)?;
        }
    }
    let (ss, len) = to_raw(addr);
    // SAFETY: valid fd and a sockaddr of the stated length.
    if unsafe { libc::bind(raw, &ss as *const _ as *const libc::sockaddr, len) } < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(e.kind(), format!("bind {addr}: {e}")));
    }
    Ok(fd)
}

/// A UDP socket bound to `addr` with a large receive buffer.
pub fn bind_udp(addr: SocketAddr) -> io::Result<UdpSocket> {
    let fd = bound_socket(&addr, libc::SOCK_DGRAM)?;
    let raw = fd.as_raw_fd();
    if setopt(raw, libc::SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20).is_err() {
        let _ = setopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, 4 << 20);
    }
    Ok(UdpSocket::from(fd))
}

/// A listening TCP socket bound to `addr`.
pub fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    let fd = bound_socket(&addr, libc::SOCK_STREAM)?;
    // SAFETY: valid fd.
    if unsafe { libc::listen(fd.as_raw_fd(), 128) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(TcpListener::from(fd))
}

/// A UDP socket for one exchange with `server`: non-blocking, on a fresh
/// source port the kernel picks at random (connect binds it), and connected,
/// so the kernel hands it only datagrams from that very address and port and
/// reports the server's ICMP errors (port unreachable: `ECONNREFUSED`) on it.
pub fn query_socket(server: &SocketAddr) -> io::Result<UdpSocket> {
    let family = if server.is_ipv4() { libc::AF_INET } else { libc::AF_INET6 };
    // SAFETY: plain socket(2); the fd is owned right away.
    let fd = unsafe { libc::socket(family, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let (ss, len) = to_raw(server);
    // SAFETY: valid fd and a sockaddr of the stated length.
    if unsafe { libc::connect(fd.as_raw_fd(), &ss as *const _ as *const libc::sockaddr, len) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(UdpSocket::from(fd))
}

/// Wait until `fd` is readable (or has an error to report), at most `wait`.
/// False when the time ran out.
pub fn wait_readable(fd: RawFd, wait: std::time::Duration) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let ms = wait.as_millis().clamp(1, i32::MAX as u128) as libc::c_int;
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// An epoll instance: which of many sockets are readable, each known by a token.
pub struct Epoll(OwnedFd);

impl Epoll {
    pub fn new() -> io::Result<Epoll> {
        // SAFETY: plain epoll_create1; the fd is owned right away.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh descriptor nothing else owns.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// Watch `fd` for input (errors are always reported) under `token`.
    /// Closing `fd` stops the watch.
    pub fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events: libc::EPOLLIN as u32, u64: token };
        // SAFETY: valid epoll fd and descriptor, a valid event.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait up to `ms` milliseconds; the tokens of the ready sockets go into `tokens`.
    pub fn wait(&self, events: &mut [libc::epoll_event], ms: i32, tokens: &mut Vec<u64>) {
        tokens.clear();
        // SAFETY: events is a valid, writable array of its length.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), events.len() as _, ms) };
        for ev in &events[..n.max(0) as usize] {
            let token = ev.u64;
            tokens.push(token);
        }
    }
}

/// The unspecified address of `ip`'s family, port 0 (for upstream sockets).
pub fn any_of(ip: &IpAddr) -> SocketAddr {
    match ip {
        IpAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
    }
}

pub const BATCH: usize = 32;
/// Room for one received query (EDNS queries are small; bigger ones are cut and FORMERR).
pub const RECV_SIZE: usize = 1536;
/// Room for one answer: our answers stay within the client's UDP limit, capped here.
pub const SEND_SIZE: usize = 4096;

/// Buffers for one thread's batched UDP I/O.
pub struct Batch {
    pub recv: Vec<u8>,
    pub send: Vec<u8>,
    recv_len: [usize; BATCH],
    recv_addr: [libc::sockaddr_storage; BATCH],
    recv_addr_len: [libc::socklen_t; BATCH],
    send_len: [usize; BATCH],
    send_addr: [libc::sockaddr_storage; BATCH],
    send_addr_len: [libc::socklen_t; BATCH],
    iov: [libc::iovec; BATCH],
    hdr: [libc::mmsghdr; BATCH],
    queued: usize,
}

impl Default for Batch {
    fn default() -> Self {
        Self::new()
    }
}

impl Batch {
    pub fn new() -> Batch {
        // SAFETY: all-zero is a valid value for these plain C structs.
        unsafe {
            Batch {
                recv: vec![0; BATCH * RECV_SIZE],
                send: vec![0; BATCH * SEND_SIZE],
                recv_len: [0; BATCH],
                recv_addr: zeroed(),
                recv_addr_len: [0; BATCH],
                send_len: [0; BATCH],
                send_addr: zeroed(),
                send_addr_len: [0; BATCH],
                iov: zeroed(),
                hdr: zeroed(),
                queued: 0,
            }
        }
    }

    /// Wait for at least one datagram and take up to BATCH. Returns how many.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iov[i] = libc::iovec {
                iov_base: self.recv[i * RECV_SIZE..].as_mut_ptr() as *mut libc::c_void,
                iov_len: RECV_SIZE,
            };
            let h = &mut self.hdr[i];
            h.msg_hdr.msg_name = &mut self.recv_addr[i] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as _;
            h.msg_hdr.msg_iov = &mut self.iov[i];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
        loop {
            // SAFETY: every header points at live buffers of the stated sizes.
            let n = unsafe {
                libc::recvmmsg(
                    fd,
                    self.hdr.as_mut_ptr(),
                    BATCH as _,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let n = n as usize;
            for i in 0..n {
                let truncated = self.hdr[i].msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                // A cut-off datagram is answered FORMERR from its header (parse fails).
                self.recv_len[i] = if truncated { RECV_SIZE.min(12) } else { self.hdr[i].msg_len as usize };
                self.recv_addr_len[i] = self.hdr[i].msg_hdr.msg_namelen;
            }
            self.queued = 0;
            return Ok(n);
        }
    }

    /// Datagram `i` of the last `recv` and its sender.
    #[inline]
    pub fn received(&self, i: usize) -> (&[u8], Option<SocketAddr>) {
        (&self.recv[i * RECV_SIZE..i * RECV_SIZE + self.recv_len[i]], from_raw(&self.recv_addr[i]))
    }

    /// Datagram `i` and a free send slot to write its answer into.
    #[inline]
    pub fn slot(&mut self, i: usize) -> (&[u8], &mut [u8]) {
        let k = self.queued;
        (
            &self.recv[i * RECV_SIZE..i * RECV_SIZE + self.recv_len[i]],
            &mut self.send[k * SEND_SIZE..(k + 1) * SEND_SIZE],
        )
    }

    /// Queue the answer just written into the free slot, to the sender of datagram `i`.
    #[inline]
    pub fn queue(&mut self, i: usize, len: usize) {
        let k = self.queued;
        self.send_len[k] = len;
        self.send_addr[k] = self.recv_addr[i];
        self.send_addr_len[k] = self.recv_addr_len[i];
        self.queued += 1;
    }

    /// Send every queued answer. Datagrams the kernel refuses are dropped
    /// (the client retries, as with any lost datagram).
    pub fn flush(&mut self, fd: RawFd) {
        let total = self.queued;
        for k in 0..total {
            self.iov[k] = libc::iovec {
                iov_base: self.send[k * SEND_SIZE..].as_mut_ptr() as *mut libc::c_void,
                iov_len: self.send_len[k],
            };
            let h = &mut self.hdr[k];
            h.msg_hdr.msg_name = &mut self.send_addr[k] as *mut _ as *mut libc::c_void;
            h.msg_hdr.msg_namelen = self.send_addr_len[k];
            h.msg_hdr.msg_iov = &mut self.iov[k];
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = std::ptr::null_mut();
            h.msg_hdr.msg_controllen = 0;
            h.msg_hdr.msg_flags = 0;
        }
        let mut done = 0;
        while done < total {
            // SAFETY: headers done..total point at live buffers.
            let n = unsafe { libc::sendmmsg(fd, self.hdr[done..].as_mut_ptr(), (total - done) as _, 0) };
            if n < 0 {
                if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                done += 1; // skip the one that failed
            } else {
                done += n.max(1) as usize;
            }
        }
        self.queued = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batched_udp_echo_on_loopback() {
        let server = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = server.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for i in 0..5u8 {
            client.send_to(&[i; 20], addr).unwrap();
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
        let mut b = Batch::new();
        let n = b.recv(server.as_raw_fd()).unwrap();
        assert_eq!(n, 5);
        for i in 0..n {
            let (msg, from) = b.received(i);
            assert_eq!(msg.len(), 20);
            assert_eq!(from, Some(client.local_addr().unwrap()));
            let (msg, out) = b.slot(i);
            let first = msg[0];
            out[0] = first + 100;
            b.queue(i, 1);
        }
        b.flush(server.as_raw_fd());
        let mut got = Vec::new();
        let mut buf = [0u8; 16];
        for _ in 0..5 {
            let (n, _) = client.recv_from(&mut buf).unwrap();
            assert_eq!(n, 1);
            got.push(buf[0]);
        }
        assert_eq!(got, vec![100, 101, 102, 103, 104]);
    }

    #[test]
    fn a_second_udp_server_on_the_same_address_is_refused() {
        let a = bind_udp("127.0.0.1:0".parse().unwrap()).unwrap();
        let e = bind_udp(a.local_addr().unwrap()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        let t = bind_tcp("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(bind_tcp(t.local_addr().unwrap()).is_err());
    }

    #[test]
    fn query_sockets_take_fresh_ports_and_hear_only_their_server() {
        let server = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        let a = query_socket(&to).unwrap();
        let b = query_socket(&to).unwrap();
        assert_ne!(a.local_addr().unwrap().port(), b.local_addr().unwrap().port());
        a.send(b"query").unwrap();
        let mut buf = [0u8; 64];
        let (_, from) = server.recv_from(&mut buf).unwrap();
        assert_eq!(from, a.local_addr().unwrap());
        // Another sender to the same port is not heard; the server is.
        stranger.send_to(b"forged", from).unwrap();
        server.send_to(b"answer", from).unwrap();
        assert!(wait_readable(a.as_raw_fd(), std::time::Duration::from_secs(2)));
        let n = a.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"answer");
        assert_eq!(a.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        // A server where nothing listens: its ICMP error comes back on the socket.
        // Sent again until it does: the kernel rate-limits port-unreachable
        // errors, and a busy test run can spend the budget (a CI run did).
        let gone = stranger.local_addr().unwrap();
        drop(stranger);
        let c = query_socket(&gone).unwrap();
        let heard = (0..20).any(|_| {
            c.send(b"query").unwrap();
            wait_readable(c.as_raw_fd(), std::time::Duration::from_millis(100))
        });
        assert!(heard, "no ICMP error in 2 s");
        assert_eq!(c.recv(&mut buf).unwrap_err().kind(), io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn freebind_allows_an_address_not_yet_present() {
        // 192.0.2.77 (TEST-NET-1) is on no interface here.
        let s = bind_udp("192.0.2.77:0".parse().unwrap());
        assert!(s.is_ok(), "{s:?}");
    }
}
