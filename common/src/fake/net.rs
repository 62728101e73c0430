//! [`FakeNet`]: one netns of the fake kernel as a [`NetStack`].

use std::cell::RefCell;
use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;
use std::rc::Rc;

use super::{on_link, FLink, Space, World, FD_BASE};
use crate::ipnet::{is_link_local, IpNet};
use crate::net::NetStack;
use crate::netlink::rtnl::tc::{Filter, Mirred, Qdisc, Redirect, TCA_EGRESS_REDIR, TC_ACT_STOLEN};
use crate::netlink::rtnl::{
    Addr, AddrOpts, BridgePort, BridgePortOpts, BridgeVlan, Family, Link, LinkKind, MacvlanMode, Neigh,
    NewLink, Route, Rule, IF_OPER_UP,
};
use crate::netlink::{NlError, NlResult};
use crate::tap::{NewTap, TunInfo};

const IF_OPER_DOWN: u8 = 2;
const IF_OPER_LOWERLAYERDOWN: u8 = 5;
const IFA_F_PERMANENT: u32 = 0x80;

/// A handle on one netns of a [`FakeKernel`](super::FakeKernel).
#[derive(Clone)]
pub struct FakeNet {
    w: Rc<RefCell<World>>,
    ns: usize,
    /// Set for a scratch netns, which goes with its last handle.
    _scratch: Option<Rc<Scratch>>,
}

/// Removes a scratch netns (`NetStack::scratch_netns`) when dropped.
struct Scratch {
    w: Rc<RefCell<World>>,
    ns: usize,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Ok(mut w) = self.w.try_borrow_mut() {
            w.remove_space(self.ns);
        }
    }
}

fn err<T>(errno: i32) -> NlResult<T> {
    Err(NlError { errno, ext: None })
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace())
}

impl FakeNet {
    pub(super) fn new(w: Rc<RefCell<World>>, ns: usize) -> FakeNet {
        FakeNet { w, ns, _scratch: None }
    }

    pub(super) fn ns(&self) -> usize {
        self.ns
    }

    /// The netns' name.
    pub fn name(&self) -> String {
        self.w.borrow().spaces[self.ns].name.clone()
    }

    /// Record the call and run `f` on the model, unless a fault hits it.
    fn act<T>(
        &self,
        op: &str,
        args: std::fmt::Arguments<'_>,
        f: impl FnOnce(&mut World, usize) -> NlResult<T>,
    ) -> NlResult<T> {
        let mut w = self.w.borrow_mut();
        w.call(self.ns, op, args)?;
        f(&mut w, self.ns)
    }
}

impl World {
    fn space_of_fd(&self, fd: RawFd) -> NlResult<usize> {
        let ns = fd.checked_sub(FD_BASE).and_then(|n| usize::try_from(n).ok());
        match ns {
            Some(ns) if ns < self.spaces.len() && !self.spaces[ns].name.starts_with("(deleted") => Ok(ns),
            _ => err(libc::EBADF),
        }
    }

    fn pos(&self, ns: usize, index: u32) -> NlResult<usize> {
        self.spaces[ns].links.iter().position(|l| l.index == index).map_or(err(libc::ENODEV), Ok)
    }

    fn pos_by_name(&self, ns: usize, name: &str) -> NlResult<usize> {
        self.spaces[ns].links.iter().position(|l| l.name == name).map_or(err(libc::ENODEV), Ok)
    }

    fn view(&self, ns: usize, i: usize) -> Link {
        let l = &self.spaces[ns].links[i];
        let lower = l.lower.and_then(|id| self.find(id));
        let oper_state = match (l.is_up(), lower) {
            (false, _) => IF_OPER_DOWN,
            (true, Some((lns, li))) if !self.spaces[lns].links[li].is_up() => IF_OPER_LOWERLAYERDOWN,
            (true, _) => IF_OPER_UP,
        };
        Link {
            index: l.index,
            name: l.name.clone(),
            kind: l.kind.clone(),
            mac: Some(l.mac),
            mtu: l.mtu,
            flags: l.flags,
            oper_state,
            master: l.master,
            txqlen: l.txqlen,
            link: lower.map(|(lns, li)| self.spaces[lns].links[li].index),
            link_netnsid: lower.filter(|(lns, _)| *lns != ns).map(|(lns, _)| lns as i32),
            macvlan_mode: l.macvlan_mode,
            vlan_filtering: l.vlan_filtering,
            vlan_id: l.vlan_id,
            vlan_protocol: l.vlan_protocol,
            ipvlan_mode: l.ipvlan.map(|(m, _)| m),
            ipvlan_flags: l.ipvlan.map(|(_, f)| f),
            bridge_port: l.port,
            alias: l.alias.clone(),
            tun: l.tun,
            vrf_table: l.vrf_table,
        }
    }

    fn add_link(&mut self, ns: usize, new: &NewLink) -> NlResult<()> {
        let target = match new.netns_fd {
            Some(fd) => self.space_of_fd(fd)?,
            None => ns,
        };
        let taken = |w: &World, ns: usize, name: &str| w.spaces[ns].links.iter().any(|l| l.name == name);
        if !valid_name(&new.name) {
            return err(libc::EINVAL);
        }
        if taken(self, target, &new.name) {
            return err(libc::EEXIST);
        }
        if new.mac.is_some_and(|m| m[0] & 1 != 0 || m == [0; 6]) {
            return err(libc::EADDRNOTAVAIL);
        }
        let parent = match (&new.kind, new.parent) {
            (LinkKind::Macvlan { .. } | LinkKind::Vlan { .. } | LinkKind::Ipvlan { .. }, None) => {
                return err(libc::EINVAL)
            }
            (LinkKind::Macvlan { .. } | LinkKind::Vlan { .. } | LinkKind::Ipvlan { .. }, Some(p)) => {
                Some(self.pos(ns, p)?)
            }
            _ => None,
        };
        let mut parent_link = parent.map(|i| self.spaces[ns].links[i].clone());
        if let LinkKind::Ipvlan { .. } = new.kind {
            // An ipvlan of an ipvlan is one more of the same master.
            if let Some(p) = parent_link.as_mut().filter(|p| p.ipvlan.is_some()) {
                *p = match p.lower.and_then(|id| self.link(id)) {
                    Some(master) => master.clone(),
                    None => return err(libc::ENODEV),
                };
            }
        }
        if let Some(p) = &parent_link {
            self.check_child_of(p, &new.kind)?;
        }
        if let (Some(p), Some(mtu)) = (&parent_link, new.mtu) {
            // An ipvlan may be bigger than its master: the kernel lets it.
            if mtu > p.mtu && !matches!(new.kind, LinkKind::Ipvlan { .. }) {
                return err(libc::EINVAL);
            }
        }
        if let (LinkKind::Macvlan { mode, .. }, Some(p)) = (&new.kind, &parent_link) {
            let siblings: Vec<&FLink> =
                self.spaces.iter().flat_map(|s| s.links.iter()).filter(|l| l.lower == Some(p.id)).collect();
            let passthru = |l: &&FLink| l.macvlan_mode == Some(MacvlanMode::Passthru);
            if (*mode == MacvlanMode::Passthru && !siblings.is_empty()) || siblings.iter().any(passthru) {
                return err(libc::EINVAL);
            }
        }
        let peer_target = match &new.kind {
            LinkKind::Veth { peer, peer_netns_fd } => {
                let pns = match peer_netns_fd {
                    Some(fd) => self.space_of_fd(*fd)?,
                    None => ns,
                };
                if !valid_name(peer) || (pns == target && *peer == new.name) {
                    return err(libc::EINVAL);
                }
                if taken(self, pns, peer) {
                    return err(libc::EEXIST);
                }
                Some((pns, peer.clone()))
            }
            _ => None,
        };
        let id = self.new_id();
        let mut link = FLink {
            id,
            name: new.name.clone(),
            kind: Some(new.kind.name().to_string()),
            mac: new.mac.unwrap_or_else(crate::random_mac),
            mtu: new.mtu.or(parent_link.as_ref().map(|p| p.mtu)).unwrap_or(1500),
            lower: parent_link.as_ref().map(|p| p.id),
            ..FLink::blank()
        };
        match &new.kind {
            LinkKind::Macvlan { mode, .. } => link.macvlan_mode = Some(*mode),
            LinkKind::Vlan { id, protocol } => {
                (link.vlan_id, link.vlan_protocol) = (Some(*id), Some(*protocol));
                link.mac = new.mac.or(parent_link.as_ref().map(|p| p.mac)).unwrap_or(link.mac);
            }
            LinkKind::Ipvlan { mode, flags } => {
                let p = parent_link.as_ref().expect("an ipvlan has a parent");
                // The master's MAC whatever was asked; mode and flags are the
                // master's, so its other ipvlans switch to them.
                (link.mac, link.ipvlan) = (p.mac, Some((*mode, *flags)));
                for l in self.spaces.iter_mut().flat_map(|s| s.links.iter_mut()) {
                    if l.lower == Some(p.id) && l.ipvlan.is_some() {
                        l.ipvlan = Some((*mode, *flags));
                    }
                }
            }
            LinkKind::Bridge { vlan_filtering } => {
                link.vlan_filtering = Some(vlan_filtering.unwrap_or(false))
            }
            LinkKind::Vrf { table } => link.vrf_table = Some(*table),
            _ => {}
        }
        if let Some((pns, peer)) = peer_target {
            let peer_id = self.new_id();
            let peer = FLink {
                id: peer_id,
                index: self.spaces[pns].take_index(None),
                name: peer,
                kind: link.kind.clone(),
                mac: crate::random_mac(),
                mtu: link.mtu,
                lower: Some(id),
                ..FLink::blank()
            };
            self.spaces[pns].links.push(peer);
            link.lower = Some(peer_id);
        }
        link.index = self.spaces[target].take_index(None);
        self.spaces[target].links.push(link);
        Ok(())
    }

    /// A tap, as `Rtnl::add_tap` makes it.
    fn add_tap(&mut self, ns: usize, t: &NewTap) -> NlResult<()> {
        crate::tap::check_name(&t.name)?;
        if !valid_name(&t.name) {
            return err(libc::EINVAL);
        }
        if self.spaces[ns].links.iter().any(|l| l.name == t.name) {
            return err(libc::EBUSY);
        }
        // (uid_t)-1 and (gid_t)-1 mean "nobody": TUNSETOWNER/TUNSETGROUP refuse them.
        if t.owner == Some(u32::MAX) || t.group == Some(u32::MAX) {
            return err(libc::EINVAL);
        }
        let link = FLink {
            id: self.new_id(),
            index: self.spaces[ns].take_index(None),
            name: t.name.clone(),
            kind: Some("tun".into()),
            mac: crate::random_mac(),
            tun: Some(TunInfo::of(t)),
            ..FLink::blank()
        };
        self.spaces[ns].links.push(link);
        Ok(())
    }

    /// What the kernel refuses of a macvlan, ipvlan or vlan on `parent`:
    /// VLANs and ipvlans need an Ethernet parent, one VLAN id per parent, and
    /// a device hands its traffic to one of bridge, macvlans or ipvlans.
    fn check_child_of(&self, parent: &FLink, kind: &LinkKind) -> NlResult<()> {
        let loopback = parent.flags & libc::IFF_LOOPBACK as u32 != 0;
        let children =
            || self.spaces.iter().flat_map(|s| s.links.iter()).filter(|l| l.lower == Some(parent.id));
        let is_port = parent.master.is_some();
        match kind {
            LinkKind::Vlan { id, protocol } => {
                if *id >= 4095 {
                    return err(libc::ERANGE);
                }
                if loopback {
                    return err(libc::EOPNOTSUPP);
                }
                if children().any(|l| l.vlan_id == Some(*id) && l.vlan_protocol == Some(*protocol)) {
                    return err(libc::EEXIST);
                }
            }
            LinkKind::Ipvlan { .. } => {
                if loopback {
                    return err(libc::EINVAL);
                }
                if is_port || children().any(|l| l.macvlan_mode.is_some()) {
                    return err(libc::EBUSY);
                }
            }
            LinkKind::Macvlan { .. } if children().any(|l| l.ipvlan.is_some()) => return err(libc::EBUSY),
            _ => {}
        }
        Ok(())
    }

    fn set_flag(&mut self, ns: usize, index: u32, flag: i32, on: bool) -> NlResult<()> {
        let i = self.pos(ns, index)?;
        let s = &mut self.spaces[ns];
        let l = &mut s.links[i];
        if on {
            l.flags |= flag as u32;
        } else {
            l.flags &= !(flag as u32);
        }
        if flag == libc::IFF_UP && !on {
            // IPv4 routes through a link that goes down are flushed.
            s.routes.retain(|r| r.oif != Some(index) || !r.dst.is_ipv4());
        }
        Ok(())
    }

    fn move_link(&mut self, ns: usize, index: u32, target: usize) -> NlResult<()> {
        let i = self.pos(ns, index)?;
        // The kernel keeps these in their netns (`netns_local`).
        let l = &self.spaces[ns].links[i];
        if l.flags & libc::IFF_LOOPBACK as u32 != 0 || matches!(l.kind.as_deref(), Some("bridge" | "vrf")) {
            return err(libc::EINVAL);
        }
        if target == ns {
            return Ok(());
        }
        if self.spaces[target].links.iter().any(|l| l.name == self.spaces[ns].links[i].name) {
            return err(libc::EEXIST);
        }
        let s = &mut self.spaces[ns];
        let mut link = s.links.remove(i);
        s.addrs.retain(|a| a.index != index);
        s.routes.retain(|r| r.oif != Some(index));
        s.neighs.retain(|n| n.index != index);
        for port in s.links.iter_mut().filter(|l| l.master == Some(index)) {
            (port.master, port.port, port.vlans) = (None, None, Vec::new());
        }
        (link.master, link.port, link.vlans) = (None, None, Vec::new());
        // The kernel shuts the device down in its old netns: its qdiscs go,
        // and its IP settings are made anew from the new netns' defaults.
        (link.qdiscs, link.filters) = (Vec::new(), Vec::new());
        link.sysctls.clear();
        link.flags &= !(libc::IFF_UP as u32);
        link.index = self.spaces[target].take_index(Some(index));
        self.spaces[target].links.push(link);
        Ok(())
    }

    /// A netns dies: physical devices (no kind, not loopback) go to the
    /// first netns, the initial one, under their name or, when it is taken
    /// there, `dev<ifindex>` (the kernel's fallback); every other link is
    /// destroyed, veth peers elsewhere with it.
    pub(super) fn remove_space(&mut self, ns: usize) {
        let physical = |l: &FLink| l.kind.is_none() && l.flags & libc::IFF_LOOPBACK as u32 == 0;
        let returning: Vec<u32> =
            self.spaces[ns].links.iter().filter(|l| physical(l)).map(|l| l.index).collect();
        for index in returning.into_iter().filter(|_| ns != 0) {
            let Ok(i) = self.pos(ns, index) else { continue };
            let taken = |w: &World, name: &str| w.spaces[0].links.iter().any(|l| l.name == name);
            if taken(self, &self.spaces[ns].links[i].name) {
                let mut name = format!("dev{index}");
                let mut n = 0;
                while taken(self, &name) {
                    name = format!("dev{n}");
                    n += 1;
                }
                self.spaces[ns].links[i].name = name;
            }
            let _ = self.move_link(ns, index, 0);
        }
        let ids: Vec<u64> = self.spaces[ns].links.iter().map(|l| l.id).collect();
        for id in ids {
            self.destroy(id);
        }
        let s = &mut self.spaces[ns];
        s.nft = Default::default();
        s.name = format!("(deleted {})", s.name);
        s.addrs.clear();
        s.routes.clear();
    }

    /// The table of the VRF that link `index` is a port of.
    fn vrf_table_of(&self, ns: usize, index: u32) -> Option<u32> {
        let s = &self.spaces[ns];
        let master = s.links.iter().find(|l| l.index == index)?.master?;
        s.links.iter().find(|l| l.index == master)?.vrf_table
    }

    /// Enslaving to or releasing from a VRF: the kernel cycles an up link
    /// (down, up), which flushes its routes and, unless `keep_addr_on_down`,
    /// its IPv6 addresses; the local routes of the addresses it keeps go to
    /// the table of its VRF, if it now has one.
    fn cycle_vrf_port(&mut self, ns: usize, index: u32) {
        let table = self.vrf_table_of(ns, index);
        let s = &mut self.spaces[ns];
        let Some(l) = s.links.iter().find(|l| l.index == index) else { return };
        if !l.is_up() {
            return;
        }
        let on = |v: Option<&String>| v.is_some_and(|v| v == "1");
        let keep_v6 = on(l.sysctls.get("ipv6/keep_addr_on_down"))
            || on(s.sysctls.get("net/ipv6/conf/all/keep_addr_on_down"));
        s.routes.retain(|r| r.oif != Some(index));
        s.addrs.retain(|a| a.index != index || a.addr.is_ipv4() || keep_v6);
        if let Some(table) = table {
            let kept: Vec<IpAddr> = s.addrs.iter().filter(|a| a.index == index).map(|a| a.addr).collect();
            s.routes.extend(kept.into_iter().map(|a| local_route(index, a, table)));
        }
    }

    fn add_route(&mut self, ns: usize, r: &Route, replace: bool) -> NlResult<()> {
        let s = &self.spaces[ns];
        if r.gateway.is_some_and(|g| g.is_ipv4() != r.dst.is_ipv4()) {
            return err(libc::EINVAL);
        }
        match r.oif.map(|i| self.pos(ns, i)).transpose()? {
            // A gateway is unreachable through a down link, a device route refused.
            Some(i) if !s.links[i].is_up() && r.gateway.is_some() => return err(libc::ENETUNREACH),
            Some(i) if !s.links[i].is_up() => return err(libc::ENETDOWN),
            None if r.gateway.is_none() => return err(libc::ENODEV),
            _ => {}
        }
        if let Some(gw) = &r.gateway {
            let via_route = s.routes.iter().any(|x| {
                x.gateway.is_none()
                    && x.oif.is_some()
                    && r.oif.is_none_or(|o| x.oif == Some(o))
                    && IpNet { addr: x.dst, prefix: x.prefix }.contains(gw)
            });
            // An IPv6 link-local gateway is on any link (an IPv4 one is not).
            let link_local = gw.is_ipv6() && is_link_local(gw) && r.oif.is_some();
            let onlink = r.onlink && r.oif.is_some();
            if !link_local && !onlink && !via_route && !on_link(s, r.oif, gw) {
                return err(if gw.is_ipv4() { libc::ENETUNREACH } else { libc::EHOSTUNREACH });
            }
        }
        let same = |x: &Route| {
            x.dst == r.dst
                && x.prefix == r.prefix
                && x.table == r.table
                && x.priority.unwrap_or(0) == r.priority.unwrap_or(0)
        };
        let s = &mut self.spaces[ns];
        match s.routes.iter().position(same) {
            Some(_) if !replace => err(libc::EEXIST),
            Some(i) => {
                s.routes[i] = r.clone();
                Ok(())
            }
            None => {
                s.routes.push(r.clone());
                Ok(())
            }
        }
    }
}

/// The kernel's route that makes `addr` an address of this host (`local
/// <addr> dev <index> table <table> proto kernel`, scope host for IPv4;
/// IPv6 routes have no scope).
fn local_route(index: u32, addr: IpAddr, table: u32) -> Route {
    Route {
        oif: Some(index),
        table,
        scope: if addr.is_ipv4() { libc::RT_SCOPE_HOST } else { libc::RT_SCOPE_UNIVERSE },
        protocol: libc::RTPROT_KERNEL,
        route_type: libc::RTN_LOCAL,
        ..Route::new(addr, crate::ipnet::max_prefix(&addr))
    }
}

fn route_matches(want: &Route, r: &Route) -> bool {
    r.dst == want.dst
        && r.prefix == want.prefix
        && r.table == want.table
        && want.gateway.is_none_or(|g| r.gateway == Some(g))
        && want.oif.is_none_or(|o| r.oif == Some(o))
        && want.priority.is_none_or(|p| r.priority.unwrap_or(0) == p)
}

fn rule_matches(want: &Rule, r: &Rule) -> bool {
    r.family == want.family
        && want.priority.is_none_or(|p| r.priority == Some(p))
        && (want.src.is_none() || r.src == want.src)
        && (want.dst.is_none() || r.dst == want.dst)
        && (want.table == 0 || r.table == want.table)
        && (want.iif.is_none() || r.iif == want.iif)
        && (want.oif.is_none() || r.oif == want.oif)
        && (want.fwmark.is_none() || r.fwmark == want.fwmark)
        && (!want.l3mdev || r.l3mdev)
}

/// "net/ipv4/conf/<ifname>/<leaf>" → ("ipv4", ifname, leaf).
fn conf_key(key: &str) -> Option<(&str, &str, &str)> {
    let mut p = key.split('/');
    match (p.next(), p.next(), p.next(), p.next(), p.next(), p.next()) {
        (Some("net"), Some(fam @ ("ipv4" | "ipv6")), Some("conf"), Some(ifname), Some(leaf), None)
            if ifname != "all" && ifname != "default" =>
        {
            Some((fam, ifname, leaf))
        }
        _ => None,
    }
}

fn not_found(key: &str) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no sysctl {key}"))
}

impl Space {
    /// Where a sysctl lives: a link's map or the netns' own.
    fn sysctl_slot(
        &mut self,
        key: &str,
    ) -> io::Result<(&mut std::collections::BTreeMap<String, String>, String)> {
        if key.starts_with("net/ipv6/") && !self.ipv6 {
            return Err(not_found(key));
        }
        match conf_key(key) {
            Some((fam, ifname, leaf)) => {
                let l = self.links.iter_mut().find(|l| l.name == ifname).ok_or_else(|| not_found(key))?;
                Ok((&mut l.sysctls, format!("{fam}/{leaf}")))
            }
            None => Ok((&mut self.sysctls, key.to_string())),
        }
    }
}

fn io_err(e: NlError) -> io::Error {
    io::Error::from_raw_os_error(e.errno)
}

impl NetStack for FakeNet {
    type Nft = super::FakeNft;
    fn nft(&mut self) -> crate::nft::NftResult<super::FakeNft> {
        let mut w = self.w.borrow_mut();
        let what = || "opening nf_tables".to_string();
        w.call(self.ns, "nft", format_args!("")).map_err(|err| crate::nft::NftError { what: what(), err })?;
        Ok(super::FakeNft::new(self.w.clone(), self.ns))
    }
    fn link_by_name(&mut self, name: &str) -> NlResult<Link> {
        self.act("link_by_name", format_args!("{name}"), |w, ns| {
            let i = w.pos_by_name(ns, name)?;
            Ok(w.view(ns, i))
        })
    }
    fn link_by_index(&mut self, index: u32) -> NlResult<Link> {
        self.act("link_by_index", format_args!("{index}"), |w, ns| {
            let i = w.pos(ns, index)?;
            Ok(w.view(ns, i))
        })
    }
    fn links(&mut self) -> NlResult<Vec<Link>> {
        self.act("links", format_args!(""), |w, ns| {
            Ok((0..w.spaces[ns].links.len()).map(|i| w.view(ns, i)).collect())
        })
    }
    fn add_link(&mut self, link: &NewLink) -> NlResult<()> {
        let w = self.w.borrow();
        let mut args = format!("{} {}", link.kind.name(), link.name);
        if let LinkKind::Veth { peer, peer_netns_fd } = &link.kind {
            args += &format!(" peer {peer}");
            if let Some(ns) = peer_netns_fd.and_then(|fd| w.space_of_fd(fd).ok()) {
                args += &format!(" peer_netns={}", w.spaces[ns].name);
            }
        }
        if let Some(p) = link.parent {
            let name = w.pos(self.ns, p).map(|i| w.spaces[self.ns].links[i].name.clone());
            args += &format!(" parent={}", name.unwrap_or_else(|_| p.to_string()));
        }
        if let Some(ns) = link.netns_fd.and_then(|fd| w.space_of_fd(fd).ok()) {
            args += &format!(" netns={}", w.spaces[ns].name);
        }
        if let Some(mtu) = link.mtu {
            args += &format!(" mtu={mtu}");
        }
        drop(w);
        self.act("add_link", format_args!("{args}"), |w, ns| w.add_link(ns, link))
    }
    fn add_tap(&mut self, t: &NewTap) -> NlResult<()> {
        let mut args = t.name.clone();
        for (what, v) in [("owner", t.owner), ("group", t.group)] {
            args += &v.map_or(String::new(), |v| format!(" {what}={v}"));
        }
        args += if t.multi_queue { " multi_queue" } else { "" };
        args += &t.selinux_context.as_ref().map_or(String::new(), |c| format!(" selinux={c}"));
        self.act("add_tap", format_args!("{args}"), |w, ns| w.add_tap(ns, t))
    }
    fn del_link(&mut self, index: u32) -> NlResult<()> {
        self.act("del_link", format_args!("{index}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let id = w.spaces[ns].links[i].id;
            w.destroy(id);
            Ok(())
        })
    }
    fn del_link_by_name(&mut self, name: &str) -> NlResult<()> {
        self.act("del_link_by_name", format_args!("{name}"), |w, ns| {
            let i = w.pos_by_name(ns, name)?;
            let id = w.spaces[ns].links[i].id;
            w.destroy(id);
            Ok(())
        })
    }
    fn set_up(&mut self, index: u32) -> NlResult<()> {
        self.act("set_up", format_args!("{index}"), |w, ns| w.set_flag(ns, index, libc::IFF_UP, true))
    }
    fn set_down(&mut self, index: u32) -> NlResult<()> {
        self.act("set_down", format_args!("{index}"), |w, ns| w.set_flag(ns, index, libc::IFF_UP, false))
    }
    fn set_promisc(&mut self, index: u32, on: bool) -> NlResult<()> {
        self.act("set_promisc", format_args!("{index} {on}"), |w, ns| {
            w.set_flag(ns, index, libc::IFF_PROMISC, on)
        })
    }
    fn set_allmulti(&mut self, index: u32, on: bool) -> NlResult<()> {
        self.act("set_allmulti", format_args!("{index} {on}"), |w, ns| {
            w.set_flag(ns, index, libc::IFF_ALLMULTI, on)
        })
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> NlResult<()> {
        self.act("set_mtu", format_args!("{index} {mtu}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let lower_mtu = w.spaces[ns].links[i].lower.and_then(|id| w.link(id)).map(|l| l.mtu);
            let is_veth = w.spaces[ns].links[i].kind.as_deref() == Some("veth");
            // A tap's largest MTU leaves room for its Ethernet header in 64 KiB.
            let max = if w.spaces[ns].links[i].tun.is_some() { crate::tap::MAX_MTU } else { 65535 };
            if !(68..=max).contains(&mtu) || (!is_veth && lower_mtu.is_some_and(|m| mtu > m)) {
                return err(libc::EINVAL);
            }
            w.spaces[ns].links[i].mtu = mtu;
            Ok(())
        })
    }
    fn set_txqlen(&mut self, index: u32, qlen: u32) -> NlResult<()> {
        self.act("set_txqlen", format_args!("{index} {qlen}"), |w, ns| {
            let i = w.pos(ns, index)?;
            w.spaces[ns].links[i].txqlen = qlen;
            Ok(())
        })
    }
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> NlResult<()> {
        let text = crate::netlink::rtnl::format_mac(&mac);
        self.act("set_mac", format_args!("{index} {text}"), |w, ns| {
            let i = w.pos(ns, index)?;
            if mac[0] & 1 != 0 || mac == [0; 6] {
                return err(libc::EADDRNOTAVAIL);
            }
            if w.spaces[ns].links[i].ipvlan.is_some() {
                return err(libc::EOPNOTSUPP); // it is its master's
            }
            w.spaces[ns].links[i].mac = mac;
            Ok(())
        })
    }
    fn rename(&mut self, index: u32, name: &str) -> NlResult<()> {
        self.act("rename", format_args!("{index} {name}"), |w, ns| {
            let i = w.pos(ns, index)?;
            if !valid_name(name) {
                return err(libc::EINVAL);
            }
            if w.spaces[ns].links.iter().any(|l| l.name == name && l.index != index) {
                return err(libc::EEXIST);
            }
            if w.spaces[ns].links[i].is_up() {
                return err(libc::EBUSY);
            }
            w.spaces[ns].links[i].name = name.to_string();
            Ok(())
        })
    }
    fn set_master(&mut self, index: u32, master: u32) -> NlResult<()> {
        self.act("set_master", format_args!("{index} {master}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let m = w.pos(ns, master)?;
            let kind = w.spaces[ns].links[m].kind.clone();
            let l = &mut w.spaces[ns].links[i];
            match kind.as_deref() {
                _ if index == master => err(libc::ELOOP),
                Some("bridge") => {
                    l.master = Some(master);
                    l.port = Some(BridgePort { hairpin: false, isolated: false, learning: true });
                    l.vlans = vec![BridgeVlan { vid: 1, pvid: true, untagged: true }];
                    Ok(())
                }
                Some("vrf") => {
                    l.master = Some(master);
                    w.cycle_vrf_port(ns, index);
                    Ok(())
                }
                Some("bond") => {
                    l.master = Some(master);
                    Ok(())
                }
                _ => err(libc::EOPNOTSUPP),
            }
        })
    }
    fn set_nomaster(&mut self, index: u32) -> NlResult<()> {
        self.act("set_nomaster", format_args!("{index}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let in_vrf = w.vrf_table_of(ns, index).is_some();
            let l = &mut w.spaces[ns].links[i];
            (l.master, l.port, l.vlans) = (None, None, Vec::new());
            if in_vrf {
                w.cycle_vrf_port(ns, index);
            }
            Ok(())
        })
    }
    fn set_netns_fd(&mut self, index: u32, netns_fd: RawFd) -> NlResult<()> {
        let target = self.w.borrow().space_of_fd(netns_fd).map(|ns| self.w.borrow().spaces[ns].name.clone());
        let target = target.unwrap_or_else(|_| format!("fd {netns_fd}"));
        self.act("set_netns_fd", format_args!("{index} {target}"), |w, ns| {
            let target = w.space_of_fd(netns_fd)?;
            w.move_link(ns, index, target)
        })
    }
    fn set_bridge_port(&mut self, index: u32, opts: &BridgePortOpts) -> NlResult<()> {
        self.act("set_bridge_port", format_args!("{index} {opts:?}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let Some(port) = w.spaces[ns].links[i].port.as_mut() else { return err(libc::EOPNOTSUPP) };
            port.hairpin = opts.hairpin.unwrap_or(port.hairpin);
            port.isolated = opts.isolated.unwrap_or(port.isolated);
            port.learning = opts.learning.unwrap_or(port.learning);
            Ok(())
        })
    }
    fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan, on_self: bool) -> NlResult<()> {
        self.act("bridge_vlan_add", format_args!("{index} {vlan:?} self={on_self}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let l = &mut w.spaces[ns].links[i];
            if !on_self && l.port.is_none() {
                return err(libc::EOPNOTSUPP);
            }
            if vlan.pvid {
                l.vlans.iter_mut().for_each(|v| v.pvid = false);
            }
            l.vlans.retain(|v| v.vid != vlan.vid);
            l.vlans.push(vlan);
            Ok(())
        })
    }
    fn bridge_vlan_del(&mut self, index: u32, vid: u16, on_self: bool) -> NlResult<()> {
        self.act("bridge_vlan_del", format_args!("{index} {vid} self={on_self}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let l = &mut w.spaces[ns].links[i];
            let before = l.vlans.len();
            l.vlans.retain(|v| v.vid != vid);
            if l.vlans.len() == before {
                return err(libc::ENOENT);
            }
            Ok(())
        })
    }
    fn bridge_vlans(&mut self, index: u32) -> NlResult<Vec<BridgeVlan>> {
        self.act("bridge_vlans", format_args!("{index}"), |w, ns| {
            let i = w.pos(ns, index)?;
            Ok(w.spaces[ns].links[i].vlans.clone())
        })
    }

    fn add_addr(&mut self, index: u32, addr: IpAddr, prefix: u8, opts: &AddrOpts) -> NlResult<()> {
        self.act("add_addr", format_args!("{index} {addr}/{prefix}"), |w, ns| {
            w.pos(ns, index)?;
            if prefix > crate::ipnet::max_prefix(&addr) || (addr.is_ipv6() && !w.spaces[ns].ipv6) {
                return err(libc::EINVAL);
            }
            let s = &mut w.spaces[ns];
            if s.addrs.iter().any(|a| a.index == index && a.addr == addr && a.prefix == prefix) {
                return err(libc::EEXIST);
            }
            let nodad = if opts.nodad { libc::IFA_F_NODAD } else { 0 };
            let noprefixroute = if opts.noprefixroute { libc::IFA_F_NOPREFIXROUTE } else { 0 };
            s.addrs.push(Addr {
                index,
                addr,
                prefix,
                flags: nodad | noprefixroute | IFA_F_PERMANENT,
                scope: if is_link_local(&addr) { libc::RT_SCOPE_LINK } else { libc::RT_SCOPE_UNIVERSE },
                broadcast: opts.broadcast,
                label: None,
            });
            if let Some(table) = w.vrf_table_of(ns, index) {
                w.spaces[ns].routes.push(local_route(index, addr, table));
            }
            Ok(())
        })
    }
    fn del_addr(&mut self, index: u32, addr: IpAddr, prefix: u8) -> NlResult<()> {
        self.act("del_addr", format_args!("{index} {addr}/{prefix}"), |w, ns| {
            let s = &mut w.spaces[ns];
            match s.addrs.iter().position(|a| a.index == index && a.addr == addr && a.prefix == prefix) {
                Some(i) => {
                    s.addrs.remove(i);
                    let local = |r: &Route| r.route_type == libc::RTN_LOCAL && r.oif == Some(index);
                    s.routes.retain(|r| !(local(r) && r.dst == addr));
                    Ok(())
                }
                None => err(libc::EADDRNOTAVAIL),
            }
        })
    }
    fn addrs(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Addr>> {
        self.act("addrs", format_args!("{index:?} {family:?}"), |w, ns| {
            Ok(w.spaces[ns]
                .addrs
                .iter()
                .filter(|a| index.is_none_or(|i| a.index == i) && family_has(family, &a.addr))
                .cloned()
                .collect())
        })
    }

    fn add_route(&mut self, route: &Route) -> NlResult<()> {
        self.act("add_route", format_args!("{}", describe_route(route)), |w, ns| {
            w.add_route(ns, route, false)
        })
    }
    fn replace_route(&mut self, route: &Route) -> NlResult<()> {
        self.act("replace_route", format_args!("{}", describe_route(route)), |w, ns| {
            w.add_route(ns, route, true)
        })
    }
    fn del_route(&mut self, route: &Route) -> NlResult<()> {
        self.act("del_route", format_args!("{}", describe_route(route)), |w, ns| {
            let s = &mut w.spaces[ns];
            match s.routes.iter().position(|r| route_matches(route, r)) {
                Some(i) => {
                    s.routes.remove(i);
                    Ok(())
                }
                None => err(libc::ESRCH),
            }
        })
    }
    fn routes(&mut self, family: Family, table: u32) -> NlResult<Vec<Route>> {
        self.act("routes", format_args!("{family:?} table {table}"), |w, ns| {
            Ok(w.spaces[ns]
                .routes
                .iter()
                .filter(|r| (table == 0 || r.table == table) && family_has(family, &r.dst))
                .cloned()
                .collect())
        })
    }

    fn add_rule(&mut self, rule: &Rule) -> NlResult<()> {
        self.act("add_rule", format_args!("{rule:?}"), |w, ns| {
            if rule.family == Family::Any {
                return err(libc::EAFNOSUPPORT);
            }
            let s = &mut w.spaces[ns];
            let mut rule = rule.clone();
            if rule.priority.is_none() {
                // The kernel takes one below the first rule after priority 0.
                let first = s.rules.iter().filter(|r| r.family == rule.family).filter_map(|r| r.priority);
                rule.priority = Some(first.filter(|p| *p > 0).min().map_or(0, |p| p - 1));
            }
            if s.rules.contains(&rule) {
                return err(libc::EEXIST);
            }
            s.rules.push(rule);
            s.rules.sort_by_key(|r| r.priority);
            Ok(())
        })
    }
    fn del_rule(&mut self, rule: &Rule) -> NlResult<()> {
        self.act("del_rule", format_args!("{rule:?}"), |w, ns| {
            let s = &mut w.spaces[ns];
            match s.rules.iter().position(|r| rule_matches(rule, r)) {
                Some(i) => {
                    s.rules.remove(i);
                    Ok(())
                }
                None => err(libc::ENOENT),
            }
        })
    }
    fn rules(&mut self, family: Family) -> NlResult<Vec<Rule>> {
        self.act("rules", format_args!("{family:?}"), |w, ns| {
            Ok(w.spaces[ns]
                .rules
                .iter()
                .filter(|r| family == Family::Any || r.family == family)
                .cloned()
                .collect())
        })
    }

    fn neighbours(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Neigh>> {
        self.act("neighbours", format_args!("{index:?} {family:?}"), |w, ns| {
            Ok(w.spaces[ns]
                .neighs
                .iter()
                .filter(|n| index.is_none_or(|i| n.index == i) && family_has(family, &n.ip))
                .cloned()
                .collect())
        })
    }
    fn set_neigh(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> NlResult<()> {
        self.act("set_neigh", format_args!("{index} {ip}"), |w, ns| {
            w.pos(ns, index)?;
            let s = &mut w.spaces[ns];
            s.neighs.retain(|n| !(n.index == index && n.ip == ip));
            s.neighs.push(Neigh { index, ip, mac: Some(mac), state: libc::NUD_PERMANENT, flags: 0 });
            Ok(())
        })
    }
    fn del_neigh(&mut self, index: u32, ip: IpAddr) -> NlResult<()> {
        self.act("del_neigh", format_args!("{index} {ip}"), |w, ns| {
            let s = &mut w.spaces[ns];
            match s.neighs.iter().position(|n| n.index == index && n.ip == ip) {
                Some(i) => {
                    s.neighs.remove(i);
                    Ok(())
                }
                None => err(libc::ENOENT),
            }
        })
    }

    fn set_alias(&mut self, index: u32, alias: &str) -> NlResult<()> {
        self.act("set_alias", format_args!("{index} {alias:?}"), |w, ns| {
            let i = w.pos(ns, index)?;
            if alias.len() > 255 {
                return err(libc::ERANGE);
            }
            w.spaces[ns].links[i].alias = Some(alias.to_string()).filter(|a| !a.is_empty());
            Ok(())
        })
    }

    fn add_qdisc(&mut self, q: &Qdisc) -> NlResult<()> {
        let what = format_args!("{} {} parent {:#x}", q.index, q.kind.name(), q.parent);
        self.act("add_qdisc", what, |w, ns| {
            let i = w.pos(ns, q.index)?;
            let l = &mut w.spaces[ns].links[i];
            if l.qdiscs.iter().any(|x| x.parent == q.parent) {
                return err(libc::EEXIST);
            }
            l.qdiscs.push(q.clone());
            Ok(())
        })
    }
    fn del_qdisc(&mut self, index: u32, parent: u32) -> NlResult<()> {
        self.act("del_qdisc", format_args!("{index} parent {parent:#x}"), |w, ns| {
            let i = w.pos(ns, index)?;
            let l = &mut w.spaces[ns].links[i];
            let q = l.qdiscs.iter().position(|q| q.parent == parent).map_or(err(libc::ENOENT), Ok)?;
            let gone = l.qdiscs.remove(q);
            l.filters.retain(|f| f.parent != gone.handle);
            Ok(())
        })
    }
    fn qdiscs(&mut self, index: Option<u32>) -> NlResult<Vec<Qdisc>> {
        let what = format_args!("{}", index.map_or("all".to_string(), |i| i.to_string()));
        self.act("qdiscs", what, |w, ns| {
            let links = w.spaces[ns].links.iter().filter(|l| index.is_none_or(|i| l.index == i));
            Ok(links.flat_map(|l| l.qdiscs.iter().cloned()).collect())
        })
    }
    fn add_redirect(&mut self, f: &Redirect) -> NlResult<()> {
        let what = format_args!("{} parent {:#x} prio {} to {}", f.index, f.parent, f.prio, f.target);
        self.act("add_redirect", what, |w, ns| {
            let i = w.pos(ns, f.index)?;
            if !w.spaces[ns].links[i].qdiscs.iter().any(|q| q.handle == f.parent) {
                return err(libc::EINVAL);
            }
            w.pos(ns, f.target)?;
            let filter = Filter {
                index: f.index,
                parent: f.parent,
                handle: 0x8000_0800, // u32's first rule: 800::800
                prio: f.prio,
                protocol: f.protocol,
                kind: "u32".into(),
                matches_all: true,
                classid: Some(f.classid),
                mirred: vec![Mirred { eaction: TCA_EGRESS_REDIR, ifindex: f.target, action: TC_ACT_STOLEN }],
            };
            w.spaces[ns].links[i].filters.push(filter);
            Ok(())
        })
    }
    fn filters(&mut self, index: u32, parent: u32) -> NlResult<Vec<Filter>> {
        self.act("filters", format_args!("{index} parent {parent:#x}"), |w, ns| {
            let Ok(i) = w.pos(ns, index) else { return Ok(Vec::new()) };
            Ok(w.spaces[ns].links[i].filters.iter().filter(|f| f.parent == parent).cloned().collect())
        })
    }

    fn netns_fd(&mut self) -> NlResult<RawFd> {
        self.act("netns_fd", format_args!(""), |_, ns| Ok(FD_BASE + ns as i32))
    }
    fn scratch_netns(&mut self) -> NlResult<FakeNet> {
        let ns = self.act("scratch_netns", format_args!(""), |w, _| {
            let name = format!("scratch{}", w.spaces.len());
            Ok(w.add_space(&name))
        })?;
        let guard = Scratch { w: self.w.clone(), ns };
        Ok(FakeNet { w: self.w.clone(), ns, _scratch: Some(Rc::new(guard)) })
    }
    fn lock(&mut self, name: &str) -> crate::Result<Option<crate::lock::FileLock>> {
        let mut w = self.w.borrow_mut();
        w.call(self.ns, "lock", format_args!("{name}"))
            .map_err(|e| crate::links::link_error("locking", e))?;
        Ok(None)
    }
    fn sysctl(&mut self, key: &str) -> io::Result<String> {
        let mut w = self.w.borrow_mut();
        w.call(self.ns, "sysctl", format_args!("{key}")).map_err(io_err)?;
        let (map, k) = w.spaces[self.ns].sysctl_slot(key)?;
        Ok(map.get(&k).cloned().unwrap_or_else(|| "0".into()))
    }
    fn set_sysctls(&mut self, settings: &[(&str, &str)]) -> io::Result<()> {
        let mut w = self.w.borrow_mut();
        let text: Vec<String> = settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
        w.call(self.ns, "set_sysctls", format_args!("{}", text.join(" "))).map_err(io_err)?;
        for (key, value) in settings {
            let (map, k) = w.spaces[self.ns].sysctl_slot(key)?;
            map.insert(k, value.to_string());
        }
        Ok(())
    }
}

fn family_has(family: Family, ip: &IpAddr) -> bool {
    match family {
        Family::Any => true,
        Family::V4 => ip.is_ipv4(),
        Family::V6 => ip.is_ipv6(),
    }
}

fn describe_route(r: &Route) -> String {
    let mut s = format!("{}/{}", r.dst, r.prefix);
    if let Some(gw) = r.gateway {
        s += &format!(" via {gw}");
    }
    if let Some(oif) = r.oif {
        s += &format!(" dev {oif}");
    }
    if r.table != libc::RT_TABLE_MAIN as u32 {
        s += &format!(" table {}", r.table);
    }
    s
}
