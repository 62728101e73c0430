//! The DHCPv4 client (RFC 2131): the exchanges of one lease — DISCOVER/
//! OFFER/REQUEST/ACK, RENEWING (unicast to the server), REBINDING
//! (broadcast), RELEASE — and what a lease's ACK means for the CNI result.
//! Messages are encoded and decoded by `dhcproto`; the wire is a [`Wire`], a
//! packet socket in the daemon and a scripted server in the tests.

use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant, SystemTime};

use common::ipnet::IpNet;
use common::spec::{version, CniResult, Dns, IpConfig, Route};
use dhcproto::v4::{DhcpOption, Flags, Message, MessageType, Opcode, OptionCode, UnknownOption};
use dhcproto::{Decodable, Decoder, Encodable, Encoder};

use super::packet::{Received, RecvError, BROADCAST_MAC};
use crate::protocol::Provided;

/// Lease time when the server names none (the reference's default).
const DEFAULT_LEASE_SECS: u32 = 3600;
/// BOOTP's minimum message size; some relays drop shorter ones.
const MIN_MESSAGE: usize = 300;
const RT_SCOPE_LINK: u8 = 253;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// To 255.255.255.255 and every station, from `from` (0.0.0.0 before we have an address).
    Broadcast { from: Ipv4Addr },
    /// To the server at `to`, through the link-layer address `mac` its ACK came from.
    Unicast { from: Ipv4Addr, to: Ipv4Addr, mac: [u8; 6] },
}

/// Sending and receiving DHCP messages on one interface.
pub trait Wire {
    fn send(&mut self, msg: &[u8], to: Dest) -> io::Result<()>;
    /// The next datagram to the client port before `deadline`; `None` when it passes.
    fn recv(&mut self, deadline: Instant) -> Result<Option<Received>, RecvError>;
}

/// Why an exchange did not end with an ACK.
#[derive(Debug)]
pub enum Failure {
    /// Nothing (acceptable) arrived in time; what we waited for.
    NoAnswer(&'static str),
    /// The server refused (DHCPNAK), with its message if any.
    Nak(String),
    /// The lease is being stopped.
    Stopped,
    Io(io::Error),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NoAnswer(what) => write!(f, "no {what} from a DHCP server"),
            Failure::Nak(m) if m.is_empty() => write!(f, "the DHCP server refused (DHCPNAK)"),
            Failure::Nak(m) => write!(f, "the DHCP server refused (DHCPNAK: {m})"),
            Failure::Stopped => write!(f, "stopped"),
            Failure::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<RecvError> for Failure {
    fn from(e: RecvError) -> Failure {
        match e {
            RecvError::Stopped => Failure::Stopped,
            RecvError::Io(e) => Failure::Io(e),
        }
    }
}

/// One client identity on one interface.
#[derive(Clone, Debug)]
pub struct Client {
    pub mac: [u8; 6],
    /// Option 61's value (type byte included).
    pub client_id: Vec<u8>,
    /// The parameter request list (option 55).
    pub request: Vec<u8>,
    pub provide: Vec<Provided>,
    /// Ask the server to broadcast its replies (`-broadcast`).
    pub broadcast: bool,
    /// How long to wait for each reply (`-timeout`).
    pub timeout: Duration,
}

/// An ACK as it arrived: what a lease is made of.
#[derive(Clone, Debug, PartialEq)]
pub struct Ack {
    pub bytes: Vec<u8>,
    pub src_ip: Ipv4Addr,
    pub src_mac: [u8; 6],
}

/// The reference's client identifier: `<containerID>/<network>/<ifname>`,
/// cut to 254 bytes, after the type byte 0 (not a hardware address).
pub fn client_id(container_id: &str, network: &str, ifname: &str) -> Vec<u8> {
    let mut id = vec![0u8];
    id.extend(format!("{container_id}/{network}/{ifname}").bytes().take(254));
    id
}

fn new_xid() -> u32 {
    let mut b = [0u8; 4];
    common::random_bytes(&mut b);
    u32::from_ne_bytes(b)
}

impl Client {
    fn message(&self, kind: MessageType, xid: u32, ciaddr: Ipv4Addr) -> Message {
        let mut m = Message::new_with_id(
            xid,
            ciaddr,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            &self.mac,
        );
        m.set_opcode(Opcode::BootRequest);
        // Broadcast replies only help while we have no address.
        if self.broadcast && ciaddr.is_unspecified() {
            m.set_flags(Flags::default().set_broadcast());
        }
        let opts = m.opts_mut();
        opts.insert(DhcpOption::MessageType(kind));
        opts.insert(DhcpOption::ClientIdentifier(self.client_id.clone()));
        if kind != MessageType::Release {
            if !self.request.is_empty() {
                opts.insert(DhcpOption::ParameterRequestList(
                    self.request.iter().map(|c| OptionCode::from(*c)).collect(),
                ));
            }
            // Configured options last: a configured client identifier replaces ours.
            for p in &self.provide {
                opts.remove(OptionCode::from(p.code));
                opts.insert(DhcpOption::Unknown(UnknownOption::new(
                    p.code.into(),
                    p.value.as_bytes().to_vec(),
                )));
            }
        }
        m
    }

    fn send(&self, wire: &mut dyn Wire, m: &Message, to: Dest) -> Result<(), Failure> {
        let mut buf = Vec::with_capacity(MIN_MESSAGE);
        m.encode(&mut Encoder::new(&mut buf))
            .map_err(|e| Failure::Io(io::Error::other(format!("encoding a DHCP message: {e}"))))?;
        if buf.len() < MIN_MESSAGE {
            buf.resize(MIN_MESSAGE, 0); // pad bytes after the end option
        }
        wire.send(&buf, to).map_err(Failure::Io)
    }

    /// Wait for a reply to `xid` that `accept` takes; other traffic is skipped.
    fn await_reply(
        &self,
        wire: &mut dyn Wire,
        xid: u32,
        what: &'static str,
        accept: impl Fn(&Message) -> bool,
    ) -> Result<(Message, Received), Failure> {
        let deadline = Instant::now() + self.timeout;
        loop {
            let Some(got) = wire.recv(deadline)? else { return Err(Failure::NoAnswer(what)) };
            let Some(m) = decode(&got.payload) else { continue };
            let ours = m.opcode() == Opcode::BootReply
                && m.xid() == xid
                && m.chaddr().get(..6) == Some(&self.mac[..]);
            if !ours {
                continue;
            }
            if m.opts().msg_type() == Some(MessageType::Nak) {
                let text = match m.opts().get(OptionCode::Message) {
                    Some(DhcpOption::Message(s)) => s.clone(),
                    _ => String::new(),
                };
                return Err(Failure::Nak(text));
            }
            if accept(&m) {
                return Ok((m, got));
            }
        }
    }

    /// INIT → SELECTING → REQUESTING → BOUND: one attempt (the caller
    /// retries). `requested`: the address we would like back.
    pub fn acquire(&self, wire: &mut dyn Wire, requested: Option<Ipv4Addr>) -> Result<Ack, Failure> {
        let xid = new_xid();
        let mut discover = self.message(MessageType::Discover, xid, Ipv4Addr::UNSPECIFIED);
        if let Some(ip) = requested {
            discover.opts_mut().insert(DhcpOption::RequestedIpAddress(ip));
        }
        let any = Dest::Broadcast { from: Ipv4Addr::UNSPECIFIED };
        self.send(wire, &discover, any)?;
        let (offer, _) = self.await_reply(wire, xid, "DHCPOFFER", |m| {
            m.opts().msg_type() == Some(MessageType::Offer)
                && !m.yiaddr().is_unspecified()
                && server_id(m).is_some()
        })?;
        let server = server_id(&offer).unwrap_or(Ipv4Addr::UNSPECIFIED);

        let mut request = self.message(MessageType::Request, xid, Ipv4Addr::UNSPECIFIED);
        request.opts_mut().insert(DhcpOption::RequestedIpAddress(offer.yiaddr()));
        request.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        self.send(wire, &request, any)?;
        let (_, got) = self.await_reply(wire, xid, "DHCPACK", |m| {
            m.opts().msg_type() == Some(MessageType::Ack)
                && m.yiaddr() == offer.yiaddr()
                && server_id(m).is_none_or(|s| s == server)
        })?;
        Ok(Ack { bytes: got.payload, src_ip: got.src_ip, src_mac: got.src_mac })
    }

    /// RENEWING (unicast to the lease's server) or REBINDING (broadcast to
    /// any server): extend `lease`. One attempt.
    pub fn extend(&self, wire: &mut dyn Wire, lease: &Lease, rebinding: bool) -> Result<Ack, Failure> {
        let xid = new_xid();
        let request = self.message(MessageType::Request, xid, lease.ip);
        let to = if rebinding {
            Dest::Broadcast { from: lease.ip }
        } else {
            Dest::Unicast { from: lease.ip, to: lease.server, mac: lease.server_mac }
        };
        self.send(wire, &request, to)?;
        let (_, got) = self.await_reply(wire, xid, "DHCPACK", |m| {
            m.opts().msg_type() == Some(MessageType::Ack) && m.yiaddr() == lease.ip
        })?;
        Ok(Ack { bytes: got.payload, src_ip: got.src_ip, src_mac: got.src_mac })
    }

    /// Give back what an ACK we cannot use offered (e.g. one without a mask).
    pub fn release_ack(&self, wire: &mut dyn Wire, ack: &Ack) -> Result<(), Failure> {
        let Some(m) = decode(&ack.bytes) else { return Ok(()) };
        let server = server_id(&m).unwrap_or(ack.src_ip);
        let mut rel = self.message(MessageType::Release, new_xid(), m.yiaddr());
        rel.opts_mut().insert(DhcpOption::ServerIdentifier(server));
        self.send(wire, &rel, Dest::Unicast { from: m.yiaddr(), to: server, mac: ack.src_mac })
    }

    /// DHCPRELEASE to the lease's server; no answer is expected.
    pub fn release(&self, wire: &mut dyn Wire, lease: &Lease) -> Result<(), Failure> {
        let mut m = self.message(MessageType::Release, new_xid(), lease.ip);
        m.opts_mut().insert(DhcpOption::ServerIdentifier(lease.server));
        self.send(wire, &m, Dest::Unicast { from: lease.ip, to: lease.server, mac: lease.server_mac })
    }
}

/// Decode a message from the network. dhcproto trusts the length of
/// fixed-size options (and asserts it in debug builds) and stops reading at
/// the first option it cannot decode, so it is handed only the options we
/// read, each checked against its RFC 2132 form first; the rest is dropped.
pub fn decode(bytes: &[u8]) -> Option<Message> {
    const MAGIC: [u8; 4] = [99, 130, 83, 99];
    if bytes.len() < 240 || bytes[236..240] != MAGIC {
        return None;
    }
    let mut clean = bytes[..240].to_vec();
    let mut i = 240;
    while let Some(&code) = bytes.get(i) {
        match code {
            0 => {
                i += 1;
                continue;
            }
            255 => break,
            _ => {}
        }
        let len = usize::from(*bytes.get(i + 1)?);
        let data = bytes.get(i + 2..i + 2 + len)?;
        i += 2 + len;
        if well_formed(code, data) {
            clean.extend_from_slice(&[code, len as u8]);
            clean.extend_from_slice(data);
        }
    }
    clean.push(255);
    Message::decode(&mut Decoder::new(&clean)).ok()
}

/// True for an option we read whose data has the form RFC 2132 (and RFC
/// 3442 for 121) gives it.
fn well_formed(code: u8, data: &[u8]) -> bool {
    match code {
        53 => data.len() == 1,
        1 | 50 | 51 | 54 | 58 | 59 => data.len() == 4,
        3 | 6 => !data.is_empty() && data.len().is_multiple_of(4),
        33 => !data.is_empty() && data.len().is_multiple_of(8),
        12 | 15 | 56 => std::str::from_utf8(data).is_ok(),
        61 | 119 => true,
        121 => {
            let mut rest = data;
            while let Some((&prefix, tail)) = rest.split_first() {
                let need = usize::from(prefix).div_ceil(8) + 4;
                if prefix > 32 || tail.len() < need {
                    return false;
                }
                rest = &tail[need..];
            }
            !data.is_empty()
        }
        _ => false,
    }
}

fn server_id(m: &Message) -> Option<Ipv4Addr> {
    match m.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(ip)) if !ip.is_unspecified() => Some(*ip),
        _ => None,
    }
}

/// A bound lease: what its ACK says, and when it was bound.
#[derive(Clone, Debug, PartialEq)]
pub struct Lease {
    pub ack: Ack,
    pub bound_at: SystemTime,
    pub ip: Ipv4Addr,
    pub prefix: u8,
    pub server: Ipv4Addr,
    pub server_mac: [u8; 6],
    pub routers: Vec<Ipv4Addr>,
    /// Option 121: (destination, prefix, router; 0.0.0.0 = on-link).
    pub classless_routes: Vec<(Ipv4Addr, u8, Ipv4Addr)>,
    /// Option 33: (classful destination, router).
    pub static_routes: Vec<(Ipv4Addr, Ipv4Addr)>,
    pub dns: Dns,
    pub lease_secs: u32,
    pub t1_secs: u32,
    pub t2_secs: u32,
}

/// When a lease's timers fire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub renew: SystemTime,
    pub rebind: SystemTime,
    pub expire: SystemTime,
}

impl Lease {
    /// Read an ACK. The reference refuses a lease without a subnet mask, and so do we.
    pub fn from_ack(ack: Ack, bound_at: SystemTime) -> Result<Lease, String> {
        let m = decode(&ack.bytes).ok_or("unreadable DHCPACK")?;
        let opts = m.opts();
        let mask = match opts.get(OptionCode::SubnetMask) {
            Some(DhcpOption::SubnetMask(mask)) => u32::from(*mask),
            _ => return Err("DHCP option Subnet Mask not found in DHCPACK".into()),
        };
        let prefix = mask.leading_ones() as u8;
        if mask.checked_shl(u32::from(prefix)).unwrap_or(0) != 0 {
            return Err(format!("DHCPACK has a subnet mask that is not a prefix: {}", Ipv4Addr::from(mask)));
        }
        let ips = |code| match opts.get(code) {
            Some(DhcpOption::Router(v) | DhcpOption::DomainNameServer(v)) => v.clone(),
            _ => Vec::new(),
        };
        let secs = |code| match opts.get(code) {
            Some(DhcpOption::AddressLeaseTime(s) | DhcpOption::Renewal(s) | DhcpOption::Rebinding(s)) => {
                Some(*s)
            }
            _ => None,
        };
        let lease_secs = secs(OptionCode::AddressLeaseTime).unwrap_or(DEFAULT_LEASE_SECS).max(1);
        // T1 < T2 < lease (RFC 2131 4.4.5); defaults 0.5 and 0.875 of the lease.
        let mut t2 = secs(OptionCode::Rebinding).filter(|t| *t < lease_secs).unwrap_or(lease_secs / 8 * 7);
        let t1 = secs(OptionCode::Renewal).filter(|t| *t < t2.max(1)).unwrap_or(lease_secs / 2).min(t2);
        t2 = t2.max(t1);
        let mut dns = Dns {
            nameservers: ips(OptionCode::DomainNameServer).iter().map(|ip| ip.to_string()).collect(),
            ..Dns::default()
        };
        if let Some(DhcpOption::DomainName(d)) = opts.get(OptionCode::DomainName) {
            dns.domain = d.trim_end_matches('\0').to_string();
        }
        if let Some(DhcpOption::DomainSearch(names)) = opts.get(OptionCode::DomainSearch) {
            dns.search = names.iter().map(|n| n.to_string().trim_end_matches('.').to_string()).collect();
        }
        let classless_routes = match opts.get(OptionCode::ClasslessStaticRoute) {
            Some(DhcpOption::ClasslessStaticRoute(r)) => {
                r.iter().map(|(net, gw)| (net.network(), net.prefix_len(), *gw)).collect()
            }
            _ => Vec::new(),
        };
        let static_routes = match opts.get(OptionCode::StaticRoutingTable) {
            Some(DhcpOption::StaticRoutingTable(r)) => r.clone(),
            _ => Vec::new(),
        };
        Ok(Lease {
            ip: m.yiaddr(),
            prefix,
            server: server_id(&m).unwrap_or(ack.src_ip),
            server_mac: if ack.src_mac == [0; 6] { BROADCAST_MAC } else { ack.src_mac },
            routers: ips(OptionCode::Router),
            classless_routes,
            static_routes,
            dns,
            lease_secs,
            t1_secs: t1,
            t2_secs: t2,
            bound_at,
            ack,
        })
    }

    /// The timers, each `scale` times the server's (1.0 in production).
    pub fn timers(&self, scale: f64) -> Timers {
        let at = |secs: u32| self.bound_at + Duration::from_secs(u64::from(secs)).mul_f64(scale);
        Timers { renew: at(self.t1_secs), rebind: at(self.t2_secs), expire: at(self.lease_secs) }
    }

    /// The CNI result, as the reference builds it: the address with the
    /// first router as gateway; the classless routes (RFC 3442: they replace
    /// the static routes and the router) or else the static routes and a
    /// default route via the router; `priority` as the routes' metric. And,
    /// beyond the reference, the server's DNS settings.
    pub fn result(&self, priority: u32) -> CniResult {
        let gateway = self.routers.first().map(|r| (*r).into());
        let mut routes = Vec::new();
        if !self.classless_routes.is_empty() {
            for &(dst, prefix, gw) in &self.classless_routes {
                let mut r = Route::new(net(dst, prefix), (!gw.is_unspecified()).then_some(gw.into()));
                if gw.is_unspecified() {
                    r.scope = Some(RT_SCOPE_LINK);
                }
                routes.push(r);
            }
        } else {
            for &(dst, gw) in &self.static_routes {
                if let Some(prefix) = classful_prefix(dst) {
                    routes.push(Route::new(net(dst, prefix), Some(gw.into())));
                }
            }
            if let Some(gw) = gateway {
                routes.push(Route::new(net(Ipv4Addr::UNSPECIFIED, 0), Some(gw)));
            }
        }
        if priority != 0 {
            routes.iter_mut().for_each(|r| r.priority = Some(priority));
        }
        CniResult {
            cni_version: version::LATEST.into(),
            interfaces: Vec::new(),
            ips: vec![IpConfig { address: net(self.ip, self.prefix), gateway, interface: None }],
            routes,
            dns: self.dns.clone(),
        }
    }
}

fn net(ip: Ipv4Addr, prefix: u8) -> IpNet {
    IpNet { addr: ip.into(), prefix: prefix.min(32) }
}

/// Option 33 destinations are classful (class A /8, B /16, C /24).
fn classful_prefix(ip: Ipv4Addr) -> Option<u8> {
    match ip.octets()[0] {
        0..=127 => Some(8),
        128..=191 => Some(16),
        192..=223 => Some(24),
        _ => None,
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::collections::VecDeque;

    pub const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
    pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
    pub const SERVER_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

    pub fn client() -> Client {
        Client {
            mac: MAC,
            client_id: client_id("c1", "net", "eth0"),
            request: vec![3, 1, 6],
            provide: vec![Provided { code: 12, value: "web".into() }],
            broadcast: false,
            timeout: Duration::from_millis(50),
        }
    }

    /// A scripted server: answers each message we send with what `respond`
    /// makes of it, and records what was sent and where.
    pub struct FakeServer<F: FnMut(&Message) -> Vec<Message>> {
        pub respond: F,
        pub sent: Vec<(Message, Dest)>,
        queue: VecDeque<Received>,
    }

    impl<F: FnMut(&Message) -> Vec<Message>> FakeServer<F> {
        pub fn new(respond: F) -> Self {
            FakeServer { respond, sent: Vec::new(), queue: VecDeque::new() }
        }
    }

    impl<F: FnMut(&Message) -> Vec<Message>> Wire for FakeServer<F> {
        fn send(&mut self, msg: &[u8], to: Dest) -> io::Result<()> {
            assert!(msg.len() >= MIN_MESSAGE, "messages are padded to BOOTP's minimum");
            let m = Message::decode(&mut Decoder::new(msg)).unwrap();
            for reply in (self.respond)(&m) {
                let mut payload = Vec::new();
                reply.encode(&mut Encoder::new(&mut payload)).unwrap();
                self.queue.push_back(Received { payload, src_ip: SERVER, src_mac: SERVER_MAC });
            }
            self.sent.push((m, to));
            Ok(())
        }
        fn recv(&mut self, _deadline: Instant) -> Result<Option<Received>, RecvError> {
            Ok(self.queue.pop_front())
        }
    }

    /// A server's reply of `kind` to `req`, offering `ip` with `opts`.
    pub fn reply(req: &Message, kind: MessageType, ip: Ipv4Addr, opts: Vec<DhcpOption>) -> Message {
        let mut m = Message::new_with_id(
            req.xid(),
            Ipv4Addr::UNSPECIFIED,
            ip,
            SERVER,
            Ipv4Addr::UNSPECIFIED,
            &req.chaddr()[..6],
        );
        m.set_opcode(Opcode::BootReply);
        m.opts_mut().insert(DhcpOption::MessageType(kind));
        m.opts_mut().insert(DhcpOption::ServerIdentifier(SERVER));
        for o in opts {
            m.opts_mut().insert(o);
        }
        m
    }

    pub fn lan_options() -> Vec<DhcpOption> {
        vec![
            DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)),
            DhcpOption::Router(vec![SERVER]),
            DhcpOption::DomainNameServer(vec![SERVER, Ipv4Addr::new(10, 9, 0, 2)]),
            DhcpOption::DomainName("lan.example".into()),
            DhcpOption::AddressLeaseTime(120),
            DhcpOption::Renewal(60),
            DhcpOption::Rebinding(105),
        ]
    }

    /// A well-behaved server handing out 10.9.0.50.
    pub fn good_server(req: &Message) -> Vec<Message> {
        let ip = Ipv4Addr::new(10, 9, 0, 50);
        match req.opts().msg_type() {
            Some(MessageType::Discover) => vec![reply(req, MessageType::Offer, ip, lan_options())],
            Some(MessageType::Request) => vec![reply(req, MessageType::Ack, ip, lan_options())],
            _ => vec![],
        }
    }

    #[test]
    fn acquire_discovers_requests_and_binds() {
        let c = client();
        let mut wire = FakeServer::new(good_server);
        let ack = c.acquire(&mut wire, None).unwrap();
        let lease = Lease::from_ack(ack, SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            (lease.ip, lease.prefix, lease.server, lease.server_mac),
            (Ipv4Addr::new(10, 9, 0, 50), 24, SERVER, SERVER_MAC)
        );
        assert_eq!((lease.lease_secs, lease.t1_secs, lease.t2_secs), (120, 60, 105));

        let [(discover, d1), (request, d2)] = &wire.sent[..] else { panic!("{:?}", wire.sent) };
        assert_eq!(*d1, Dest::Broadcast { from: Ipv4Addr::UNSPECIFIED });
        assert_eq!(*d2, Dest::Broadcast { from: Ipv4Addr::UNSPECIFIED });
        assert_eq!(discover.opts().msg_type(), Some(MessageType::Discover));
        assert_eq!(discover.chaddr()[..6], MAC);
        assert_eq!(discover.xid(), request.xid());
        let id = [&[0u8][..], b"c1/net/eth0"].concat();
        assert_eq!(
            discover.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(id))
        );
        assert_eq!(
            discover.opts().get(OptionCode::ParameterRequestList),
            Some(&DhcpOption::ParameterRequestList(vec![
                OptionCode::Router,
                OptionCode::SubnetMask,
                OptionCode::DomainNameServer
            ]))
        );
        assert_eq!(discover.opts().get(OptionCode::Hostname), Some(&DhcpOption::Hostname("web".into())));
        assert_eq!(
            request.opts().get(OptionCode::RequestedIpAddress),
            Some(&DhcpOption::RequestedIpAddress(lease.ip))
        );
        assert_eq!(
            request.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
        assert_eq!(request.ciaddr(), Ipv4Addr::UNSPECIFIED);
        assert!(!discover.flags().broadcast());
    }

    #[test]
    fn replies_for_other_clients_or_transactions_are_ignored() {
        let c = client();
        let mut wire = FakeServer::new(|req: &Message| {
            let ip = Ipv4Addr::new(10, 9, 0, 51);
            let kind = if req.opts().msg_type() == Some(MessageType::Discover) {
                MessageType::Offer
            } else {
                MessageType::Ack
            };
            let mut wrong_xid = reply(req, kind, Ipv4Addr::new(10, 9, 0, 66), lan_options());
            wrong_xid.set_xid(req.xid().wrapping_add(1));
            let mut wrong_mac = reply(req, kind, Ipv4Addr::new(10, 9, 0, 67), lan_options());
            wrong_mac.set_chaddr(&[9, 9, 9, 9, 9, 9]);
            let mut request_not_reply = reply(req, kind, Ipv4Addr::new(10, 9, 0, 68), lan_options());
            request_not_reply.set_opcode(Opcode::BootRequest);
            vec![wrong_xid, wrong_mac, request_not_reply, reply(req, kind, ip, lan_options())]
        });
        let ack = c.acquire(&mut wire, None).unwrap();
        assert_eq!(Lease::from_ack(ack, SystemTime::UNIX_EPOCH).unwrap().ip, Ipv4Addr::new(10, 9, 0, 51));
    }

    #[test]
    fn silence_and_refusal_are_failures_naming_what_was_missing() {
        let c = client();
        let e = c.acquire(&mut FakeServer::new(|_: &Message| vec![]), None).unwrap_err();
        assert_eq!(e.to_string(), "no DHCPOFFER from a DHCP server");
        let e = c
            .acquire(
                &mut FakeServer::new(|req: &Message| match req.opts().msg_type() {
                    Some(MessageType::Discover) => good_server(req),
                    _ => {
                        let mut nak = reply(req, MessageType::Nak, Ipv4Addr::UNSPECIFIED, vec![]);
                        nak.opts_mut().insert(DhcpOption::Message("address taken".into()));
                        vec![nak]
                    }
                }),
                None,
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "the DHCP server refused (DHCPNAK: address taken)");
    }

    #[test]
    fn renewing_is_unicast_rebinding_broadcast_and_release_unicast() {
        let c = Client { broadcast: true, ..client() };
        let mut wire = FakeServer::new(good_server);
        let lease = Lease::from_ack(c.acquire(&mut wire, None).unwrap(), SystemTime::UNIX_EPOCH).unwrap();
        assert!(wire.sent[0].0.flags().broadcast(), "-broadcast sets the flag while we have no address");
        wire.sent.clear();
        c.extend(&mut wire, &lease, false).unwrap();
        c.extend(&mut wire, &lease, true).unwrap();
        c.release(&mut wire, &lease).unwrap();
        let to = |i: usize| wire.sent[i].1;
        let ip = lease.ip;
        assert_eq!(to(0), Dest::Unicast { from: ip, to: SERVER, mac: SERVER_MAC });
        assert_eq!(to(1), Dest::Broadcast { from: ip });
        assert_eq!(to(2), Dest::Unicast { from: ip, to: SERVER, mac: SERVER_MAC });
        for (m, _) in &wire.sent {
            assert_eq!(m.ciaddr(), ip);
            assert!(!m.flags().broadcast(), "we have an address: no broadcast flag");
            assert!(m.opts().get(OptionCode::RequestedIpAddress).is_none());
        }
        assert!(
            wire.sent[0].0.opts().get(OptionCode::ServerIdentifier).is_none(),
            "RFC 2131: no server id when renewing"
        );
        let release = &wire.sent[2].0;
        assert_eq!(release.opts().msg_type(), Some(MessageType::Release));
        assert_eq!(
            release.opts().get(OptionCode::ServerIdentifier),
            Some(&DhcpOption::ServerIdentifier(SERVER))
        );
    }

    #[test]
    fn a_configured_client_identifier_replaces_ours() {
        let c = Client { provide: vec![Provided { code: 61, value: "mine".into() }], ..client() };
        let mut wire = FakeServer::new(good_server);
        c.acquire(&mut wire, None).unwrap();
        let sent = &wire.sent[0].0;
        let mut bytes = Vec::new();
        sent.encode(&mut Encoder::new(&mut bytes)).unwrap();
        assert_eq!(
            sent.opts().get(OptionCode::ClientIdentifier),
            Some(&DhcpOption::ClientIdentifier(b"mine".to_vec()))
        );
        assert_eq!(bytes.windows(6).filter(|w| *w == [61, 4, b'm', b'i', b'n', b'e']).count(), 1);
        assert!(!bytes.windows(3).any(|w| w == [61, 12, 0]), "our own identifier is not sent too");
    }

    #[test]
    fn the_result_follows_the_references_route_rules() {
        let ack = |opts: Vec<DhcpOption>| {
            let req = client().message(MessageType::Request, 7, Ipv4Addr::UNSPECIFIED);
            let mut bytes = Vec::new();
            reply(&req, MessageType::Ack, Ipv4Addr::new(10, 9, 0, 50), opts)
                .encode(&mut Encoder::new(&mut bytes))
                .unwrap();
            Lease::from_ack(Ack { bytes, src_ip: SERVER, src_mac: SERVER_MAC }, SystemTime::UNIX_EPOCH)
        };
        // Router and static routes: classful destinations, then the default route.
        let mut opts = lan_options();
        opts.push(DhcpOption::StaticRoutingTable(vec![
            (Ipv4Addr::new(172, 16, 0, 0), Ipv4Addr::new(10, 9, 0, 7)),
            (Ipv4Addr::new(192, 168, 5, 0), Ipv4Addr::new(10, 9, 0, 8)),
        ]));
        opts.push(DhcpOption::DomainSearch(vec![
            "a.example.".parse().unwrap(),
            "b.example".parse().unwrap(),
        ]));
        let r = serde_json::to_value(ack(opts).unwrap().result(0)).unwrap();
        assert_eq!(r["ips"], serde_json::json!([{"address": "10.9.0.50/24", "gateway": "10.9.0.1"}]));
        assert_eq!(
            r["routes"],
            serde_json::json!([{"dst": "172.16.0.0/16", "gw": "10.9.0.7"}, {"dst": "192.168.5.0/24", "gw": "10.9.0.8"},
                               {"dst": "0.0.0.0/0", "gw": "10.9.0.1"}])
        );
        assert_eq!(
            r["dns"],
            serde_json::json!({"nameservers": ["10.9.0.1", "10.9.0.2"], "domain": "lan.example", "search": ["a.example", "b.example"]})
        );
        // Classless routes replace both; an on-link one has scope link; priority applies to all.
        let mut opts = lan_options();
        opts.push(DhcpOption::ClasslessStaticRoute(vec![
            ("10.20.0.0/16".parse().unwrap(), Ipv4Addr::new(10, 9, 0, 9)),
            ("10.30.0.0/24".parse().unwrap(), Ipv4Addr::UNSPECIFIED),
        ]));
        let r = serde_json::to_value(ack(opts).unwrap().result(100)).unwrap();
        assert_eq!(
            r["routes"],
            serde_json::json!([{"dst": "10.20.0.0/16", "gw": "10.9.0.9", "priority": 100},
                               {"dst": "10.30.0.0/24", "priority": 100, "scope": 253}])
        );
        // No mask: refused as by the reference.
        let e = ack(vec![DhcpOption::Router(vec![SERVER])]).unwrap_err();
        assert_eq!(e, "DHCP option Subnet Mask not found in DHCPACK");
        let e = ack(vec![DhcpOption::SubnetMask(Ipv4Addr::new(255, 0, 255, 0))]).unwrap_err();
        assert!(e.contains("not a prefix"), "{e}");
    }

    #[test]
    fn timers_default_and_scale() {
        let mut opts = lan_options();
        opts.retain(|o| !matches!(o, DhcpOption::Renewal(_) | DhcpOption::Rebinding(_)));
        let req = client().message(MessageType::Request, 7, Ipv4Addr::UNSPECIFIED);
        let mut bytes = Vec::new();
        reply(&req, MessageType::Ack, Ipv4Addr::new(10, 9, 0, 50), opts)
            .encode(&mut Encoder::new(&mut bytes))
            .unwrap();
        let lease =
            Lease::from_ack(Ack { bytes, src_ip: SERVER, src_mac: SERVER_MAC }, SystemTime::UNIX_EPOCH)
                .unwrap();
        assert_eq!((lease.t1_secs, lease.t2_secs), (60, 105));
        let t = lease.timers(0.5);
        let secs = |s: SystemTime| s.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs_f64();
        assert_eq!((secs(t.renew), secs(t.rebind), secs(t.expire)), (30.0, 52.5, 60.0));
    }

    #[test]
    fn malformed_options_are_dropped_and_the_rest_still_read() {
        let req = client().message(MessageType::Request, 7, Ipv4Addr::UNSPECIFIED);
        let mut good = Vec::new();
        reply(&req, MessageType::Ack, Ipv4Addr::new(10, 9, 0, 50), vec![])
            .encode(&mut Encoder::new(&mut good))
            .unwrap();
        good.pop(); // the end option: we append our own
        let opts: &[&[u8]] = &[
            &[51, 2, 0, 60],               // lease time of 2 bytes: dropped (dhcproto would read 4)
            &[121, 5, 24, 10, 20, 30, 10], // a classless route cut short: dropped
            &[80, 1, 0],                   // rapid commit with data (dhcproto asserts it empty)
            &[15, 2, 0xff, 0xfe],          // a domain name that is not UTF-8
            &[1, 4, 255, 255, 255, 0],     // and after all that, the mask
            &[3, 4, 10, 9, 0, 1],
            &[255],
        ];
        let bytes: Vec<u8> =
            [good.as_slice()].into_iter().chain(opts.iter().copied()).flatten().copied().collect();
        let m = decode(&bytes).expect("still a message");
        assert_eq!(
            m.opts().get(OptionCode::SubnetMask),
            Some(&DhcpOption::SubnetMask(Ipv4Addr::new(255, 255, 255, 0)))
        );
        assert_eq!(m.opts().get(OptionCode::Router), Some(&DhcpOption::Router(vec![SERVER])));
        for gone in [OptionCode::AddressLeaseTime, OptionCode::ClasslessStaticRoute, OptionCode::DomainName] {
            assert!(m.opts().get(gone).is_none(), "{gone:?}");
        }
        let lease =
            Lease::from_ack(Ack { bytes, src_ip: SERVER, src_mac: SERVER_MAC }, SystemTime::UNIX_EPOCH)
                .unwrap();
        assert_eq!(lease.lease_secs, 3600, "no usable lease time: the default");
        // Not a DHCP message at all.
        assert!(decode(&good[..239]).is_none());
        let mut bad_magic = good.clone();
        bad_magic[236] = 0;
        assert!(decode(&bad_magic).is_none());
    }

    /// dhcproto decodes what servers send: it must never panic on what
    /// arrives from the network, however mangled (the daemon is built with
    /// panic=abort). Mutate real messages byte by byte and at random.
    #[test]
    fn decoding_mangled_messages_never_panics() {
        let req = client().message(MessageType::Request, 7, Ipv4Addr::UNSPECIFIED);
        let mut opts = lan_options();
        opts.push(DhcpOption::ClasslessStaticRoute(vec![("10.20.0.0/16".parse().unwrap(), SERVER)]));
        opts.push(DhcpOption::DomainSearch(vec!["a.example".parse().unwrap()]));
        opts.push(DhcpOption::StaticRoutingTable(vec![(Ipv4Addr::new(172, 16, 0, 0), SERVER)]));
        let mut good = Vec::new();
        reply(&req, MessageType::Ack, Ipv4Addr::new(10, 9, 0, 50), opts)
            .encode(&mut Encoder::new(&mut good))
            .unwrap();
        let try_all = |bytes: &[u8]| {
            if let Ok(ack) = Lease::from_ack(
                Ack { bytes: bytes.to_vec(), src_ip: SERVER, src_mac: SERVER_MAC },
                SystemTime::UNIX_EPOCH,
            ) {
                let _ = ack.result(1);
            }
        };
        let mut seed = 0x9e3779b97f4a7c15u64;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for i in 236..good.len() {
            for v in [0u8, 1, 2, 3, 4, 5, 32, 33, 0x7f, 0x80, 0xff] {
                let mut b = good.clone();
                b[i] = v;
                try_all(&b);
                try_all(&b[..i]);
            }
        }
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(rnd() % 8 + 1) {
                let at = 236 + (rnd() as usize) % (b.len() - 236);
                b[at] = rnd() as u8;
            }
            b.truncate(236 + (rnd() as usize) % (b.len() - 235));
            try_all(&b);
        }
    }
}
