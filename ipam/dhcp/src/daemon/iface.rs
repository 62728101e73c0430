//! A lease's interface inside its container: found by netns path and name
//! each time it is needed, and only if it is still the same netns (the
//! container may be gone and the path reused) and, once the lease is bound,
//! the same link (by MAC). Nothing holds the netns open between exchanges,
//! so a container that vanished without DEL is not kept alive by us.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use common::netlink::rtnl::Rtnl;
use common::netns::Netns;

use super::dhcp4::{Dest, Wire};
use super::event::Event;
use super::packet::{PacketSocket, Received, RecvError, BROADCAST_MAC};

/// A netns file's identity (device, inode).
pub type NetnsId = (u64, u64);

/// Why the interface cannot be reached.
#[derive(Debug)]
pub enum Unreachable {
    /// The netns or the interface is gone, or is another one now: the
    /// attachment ended without a DEL.
    Gone(String),
    /// Something else failed; trying again later may work.
    Failed(String),
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unreachable::Gone(m) | Unreachable::Failed(m) => f.write_str(m),
        }
    }
}

/// Where the interface is: `path` is the netns path as the daemon sees it
/// (with `-hostprefix`).
#[derive(Clone, Debug)]
pub struct Place<'a> {
    pub path: &'a str,
    pub netns_id: NetnsId,
    pub ifname: &'a str,
    /// The link's MAC, once known.
    pub mac: Option<[u8; 6]>,
}

/// The identity of the netns at `path`; an error when it is no netns.
pub fn netns_id(path: &str) -> io::Result<NetnsId> {
    Netns::open(path)?; // it must be a network namespace
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

/// Open the netns and find the link: (netns, rtnl socket in it, index, MAC, up).
fn find(place: &Place) -> Result<(Netns, Rtnl, u32, [u8; 6], bool), Unreachable> {
    let ns = Netns::open(place.path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Unreachable::Gone(format!("netns {} is gone", place.path)),
        _ => Unreachable::Gone(format!("netns {}: {e}", place.path)),
    })?;
    match netns_id(place.path) {
        Ok(id) if id == place.netns_id => {}
        _ => return Err(Unreachable::Gone(format!("{} is another netns now", place.path))),
    }
    let mut nl =
        Rtnl::in_netns(&ns).map_err(|e| Unreachable::Failed(format!("netlink in {}: {e}", place.path)))?;
    let link = match nl.link_by_name(place.ifname) {
        Ok(l) => l,
        Err(e) if e.not_found() => {
            return Err(Unreachable::Gone(format!(
                "there is no interface {} in netns {}",
                place.ifname, place.path
            )))
        }
        Err(e) => {
            return Err(Unreachable::Failed(format!("interface {} in {}: {e}", place.ifname, place.path)))
        }
    };
    let mac = link.mac.unwrap_or([0; 6]);
    if place.mac.is_some_and(|m| m != mac) {
        return Err(Unreachable::Gone(format!(
            "interface {} in {} is another link now",
            place.ifname, place.path
        )));
    }
    let up = link.is_up();
    Ok((ns, nl, link.index, mac, up))
}

/// The DHCP wire on the interface: its packet socket and the lease's stop event.
pub struct PacketWire<'a> {
    sock: PacketSocket,
    stop: &'a Event,
    pub mac: [u8; 6],
}

/// Open the wire on the interface, setting the link up first when `set_up`
/// (the main plugin hands it over down; the reference sets it up too).
pub fn open<'a>(place: &Place, set_up: bool, stop: &'a Event) -> Result<PacketWire<'a>, Unreachable> {
    let (ns, mut nl, index, mac, up) = find(place)?;
    if set_up && !up {
        nl.set_up(index).map_err(|e| Unreachable::Failed(format!("setting {} up: {e}", place.ifname)))?;
    }
    let sock = ns.visit(|| PacketSocket::open(index)).and_then(|r| r).map_err(|e| {
        Unreachable::Failed(format!("packet socket on {} in {}: {e}", place.ifname, place.path))
    })?;
    Ok(PacketWire { sock, stop, mac })
}

/// True when the interface is still there (same netns, same link).
pub fn exists(place: &Place) -> Result<(), Unreachable> {
    find(place).map(drop)
}

/// Set the link down: a lost lease's address must not be used any more.
pub fn set_down(place: &Place) -> Result<(), Unreachable> {
    let (_ns, mut nl, index, _, _) = find(place)?;
    nl.set_down(index).map_err(|e| Unreachable::Failed(format!("setting {} down: {e}", place.ifname)))
}

impl Wire for PacketWire<'_> {
    fn send(&mut self, msg: &[u8], to: Dest) -> io::Result<()> {
        match to {
            Dest::Broadcast { from } => {
                self.sock.send(msg, from, std::net::Ipv4Addr::BROADCAST, BROADCAST_MAC)
            }
            Dest::Unicast { from, to, mac } => self.sock.send(msg, from, to, mac),
        }
    }

    fn recv(&mut self, deadline: Instant) -> Result<Option<Received>, RecvError> {
        self.sock.recv(deadline, self.stop)
    }
}
