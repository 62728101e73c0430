//! Links: lookup, creation (veth, bridge, macvlan, ipvlan, vlan, vrf), settings,
//! bridge ports and bridge VLANs.

use std::os::fd::RawFd;

use super::{ne_u32, payload_of, Rtnl};
use crate::netlink::{Attrs, Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_EXCL};

const IFINFOMSG_LEN: usize = 16;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;

// linux/veth.h, linux/if_link.h, linux/if_bridge.h, linux/rtnetlink.h
const VETH_INFO_PEER: u16 = 1;
const IFLA_IFALIAS: u16 = 20;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BRPORT_MODE: u16 = 4; // hairpin
const IFLA_BRPORT_LEARNING: u16 = 8;
const IFLA_BRPORT_ISOLATED: u16 = 33;
const IFLA_VLAN_ID: u16 = 1;
const IFLA_VLAN_PROTOCOL: u16 = 5;
const IFLA_IPVLAN_MODE: u16 = 1;
const IFLA_IPVLAN_FLAGS: u16 = 2;
const IFLA_MACVLAN_MODE: u16 = 1;
const IFLA_MACVLAN_BC_QUEUE_LEN: u16 = 7;
const IFLA_VRF_TABLE: u16 = 1;
const IFLA_BRIDGE_FLAGS: u16 = 0;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const BRIDGE_FLAGS_SELF: u16 = 2;
const BRIDGE_VLAN_INFO_PVID: u16 = 1 << 1;
const BRIDGE_VLAN_INFO_UNTAGGED: u16 = 1 << 2;
const RTEXT_FILTER_BRVLAN: u32 = 1 << 1;
const RTEXT_FILTER_SKIP_STATS: u32 = 1 << 3;
/// `IFLA_OPERSTATE` value of a running link (linux/if.h).
pub const IF_OPER_UP: u8 = 6;

/// A network interface as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: "veth", "bridge", "macvlan" …; None for plain devices like lo.
    pub kind: Option<String>,
    pub mac: Option<[u8; 6]>,
    pub mtu: u32,
    /// `IFF_*` flags as set by the user (see `is_up`, `is_promisc`, `is_allmulti`).
    pub flags: u32,
    /// `IF_OPER_*` (RFC 2863) state.
    pub oper_state: u8,
    pub master: Option<u32>,
    pub txqlen: u32,
    /// `IFLA_LINK`: the veth peer or macvlan/vlan parent index (maybe in another netns).
    pub link: Option<u32>,
    /// The netns id (as seen from here) that `link` lives in, when not this one.
    pub link_netnsid: Option<i32>,
    pub macvlan_mode: Option<MacvlanMode>,
    /// A bridge's `vlan_filtering` setting.
    pub vlan_filtering: Option<bool>,
    pub vlan_id: Option<u16>,
    /// A VLAN device's tag protocol.
    pub vlan_protocol: Option<VlanProtocol>,
    /// An ipvlan's mode and flags: its master's (all ipvlans of one master share them).
    pub ipvlan_mode: Option<IpvlanMode>,
    pub ipvlan_flags: Option<IpvlanFlags>,
    /// Port settings when this link is enslaved to a bridge.
    pub bridge_port: Option<BridgePort>,
    /// `IFLA_IFALIAS`: a free-text description (`ip link set … alias`).
    pub alias: Option<String>,
    /// A tun/tap device's settings (kind "tun").
    pub tun: Option<crate::tap::TunInfo>,
    /// A VRF device's routing table.
    pub vrf_table: Option<u32>,
}

impl Link {
    /// Administratively up (`IFF_UP`).
    pub fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }
    /// Promiscuous mode requested by the user.
    pub fn is_promisc(&self) -> bool {
        self.flags & libc::IFF_PROMISC as u32 != 0
    }
    /// All-multicast mode requested by the user.
    pub fn is_allmulti(&self) -> bool {
        self.flags & libc::IFF_ALLMULTI as u32 != 0
    }
    /// The MAC as a CNI result writes it ("aa:bb:…", lowercase); empty when
    /// the link has none.
    pub fn mac_string(&self) -> String {
        self.mac.as_ref().map(super::format_mac).unwrap_or_default()
    }

    /// An RTM_NEWLINK reply (None for any other message).
    pub fn parse(r: &Reply) -> Option<Link> {
        let p = payload_of(r, libc::RTM_NEWLINK, IFINFOMSG_LEN)?;
        let mut l = Link { index: ne_u32(p, 4), flags: ne_u32(p, 8), ..Link::default() };
        for a in r.attrs(IFINFOMSG_LEN) {
            match a.ty {
                libc::IFLA_IFNAME => l.name = a.str().to_string(),
                libc::IFLA_ADDRESS => l.mac = a.data.try_into().ok(),
                libc::IFLA_MTU => l.mtu = a.u32(),
                libc::IFLA_OPERSTATE => l.oper_state = a.u8(),
                libc::IFLA_MASTER => l.master = Some(a.u32()).filter(|&m| m != 0),
                libc::IFLA_TXQLEN => l.txqlen = a.u32(),
                libc::IFLA_LINK => l.link = Some(a.u32()).filter(|&i| i != 0),
                libc::IFLA_LINK_NETNSID => l.link_netnsid = Some(a.u32() as i32),
                libc::IFLA_LINKINFO => l.parse_linkinfo(a.nested()),
                IFLA_IFALIAS => l.alias = Some(a.str().to_string()).filter(|s| !s.is_empty()),
                _ => {}
            }
        }
        Some(l)
    }

    fn parse_linkinfo(&mut self, info: Attrs<'_>) {
        let kind = info.get(libc::IFLA_INFO_KIND).map(|a| a.str().to_string());
        let data = info.get(libc::IFLA_INFO_DATA).map(|a| a.nested());
        match (kind.as_deref(), data) {
            (Some("macvlan"), Some(d)) => {
                self.macvlan_mode = d.get(IFLA_MACVLAN_MODE).and_then(|a| MacvlanMode::from_u32(a.u32()))
            }
            (Some("bridge"), Some(d)) => {
                self.vlan_filtering = d.get(IFLA_BR_VLAN_FILTERING).map(|a| a.u8() != 0)
            }
            (Some("vlan"), Some(d)) => {
                self.vlan_id = d.get(IFLA_VLAN_ID).map(|a| a.u16());
                self.vlan_protocol =
                    d.get(IFLA_VLAN_PROTOCOL).and_then(|a| VlanProtocol::from_u16(u16::from_be(a.u16())));
            }
            (Some("ipvlan"), Some(d)) => {
                self.ipvlan_mode = d.get(IFLA_IPVLAN_MODE).and_then(|a| IpvlanMode::from_u16(a.u16()));
                self.ipvlan_flags = d.get(IFLA_IPVLAN_FLAGS).and_then(|a| IpvlanFlags::from_u16(a.u16()));
            }
            (Some("tun"), Some(d)) => self.tun = Some(crate::tap::TunInfo::parse(d)),
            (Some("vrf"), Some(d)) => self.vrf_table = d.get(IFLA_VRF_TABLE).map(|a| a.u32()),
            _ => {}
        }
        self.kind = kind;
        let slave_kind = info.get(libc::IFLA_INFO_SLAVE_KIND).map(|a| a.str());
        if let (Some("bridge"), Some(d)) = (slave_kind, info.get(libc::IFLA_INFO_SLAVE_DATA)) {
            self.bridge_port = Some(BridgePort::parse(d.nested()));
        }
    }
}

/// macvlan modes (linux/if_link.h `MACVLAN_MODE_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MacvlanMode {
    Private = 1,
    Vepa = 2,
    #[default]
    Bridge = 4,
    Passthru = 8,
    Source = 16,
}

impl MacvlanMode {
    /// The CNI config spelling: "bridge", "private", "vepa", "passthru", "source".
    pub fn parse(s: &str) -> Option<MacvlanMode> {
        Some(match s {
            "bridge" => MacvlanMode::Bridge,
            "private" => MacvlanMode::Private,
            "vepa" => MacvlanMode::Vepa,
            "passthru" => MacvlanMode::Passthru,
            "source" => MacvlanMode::Source,
            _ => return None,
        })
    }
    fn from_u32(v: u32) -> Option<MacvlanMode> {
        [Self::Private, Self::Vepa, Self::Bridge, Self::Passthru, Self::Source]
            .into_iter()
            .find(|m| *m as u32 == v)
    }
}

/// ipvlan modes (linux/if_link.h `IPVLAN_MODE_*`): where the master's
/// traffic is demultiplexed to its ipvlans.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpvlanMode {
    /// By MAC and IP; the ipvlans answer ARP/NDP themselves.
    #[default]
    L2 = 0,
    /// By IP only; outgoing packets are routed in the master's netns (no ARP).
    L3 = 1,
    /// L3 through the master netns' netfilter (conntrack sees the traffic).
    L3s = 2,
}

impl IpvlanMode {
    /// The CNI config spelling: "l2", "l3", "l3s".
    pub fn parse(s: &str) -> Option<IpvlanMode> {
        [Self::L2, Self::L3, Self::L3s].into_iter().find(|m| m.name() == s)
    }
    pub fn name(self) -> &'static str {
        match self {
            IpvlanMode::L2 => "l2",
            IpvlanMode::L3 => "l3",
            IpvlanMode::L3s => "l3s",
        }
    }
    fn from_u16(v: u16) -> Option<IpvlanMode> {
        [Self::L2, Self::L3, Self::L3s].into_iter().find(|m| *m as u16 == v)
    }
}

/// ipvlan flags (`IPVLAN_F_*`): whether ipvlans of one master reach each other.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IpvlanFlags {
    /// Switched between them inside the kernel.
    #[default]
    Bridge = 0,
    /// Not at all.
    Private = 1,
    /// Only through the external switch (hairpin).
    Vepa = 2,
}

impl IpvlanFlags {
    fn from_u16(v: u16) -> Option<IpvlanFlags> {
        [Self::Bridge, Self::Private, Self::Vepa].into_iter().find(|f| *f as u16 == v)
    }
}

/// The tag protocol of a VLAN device (`IFLA_VLAN_PROTOCOL`, an ethertype).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum VlanProtocol {
    /// IEEE 802.1Q, the usual VLAN tag.
    #[default]
    Dot1Q = 0x8100,
    /// IEEE 802.1ad, the outer (service) tag of QinQ.
    Dot1Ad = 0x88a8,
}

impl VlanProtocol {
    fn from_u16(v: u16) -> Option<VlanProtocol> {
        [Self::Dot1Q, Self::Dot1Ad].into_iter().find(|p| *p as u16 == v)
    }
}

/// A link to create (see [`Rtnl::add_link`]). Start from a constructor and
/// set the rest with struct update syntax:
/// `NewLink { mtu: Some(1400), netns_fd: Some(fd), ..NewLink::macvlan("mv0", parent, mode) }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLink {
    pub name: String,
    pub kind: LinkKind,
    /// For a veth both ends; `None`: the kernel's (a macvlan's or vlan's: its parent's).
    pub mtu: Option<u32>,
    /// For a veth the first end; `None`: a random one (a vlan's: its parent's).
    pub mac: Option<[u8; 6]>,
    /// The parent (macvlan, ipvlan, vlan): an ifindex in the netns that creates the link.
    pub parent: Option<u32>,
    /// Create the link in this netns (see `NetStack::netns_fd`) instead of
    /// the creating one; a parent stays where it is.
    pub netns_fd: Option<RawFd>,
}

/// The kind of a new link and what only that kind has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkKind {
    /// A veth pair; the peer goes into `peer_netns_fd` when given.
    Veth { peer: String, peer_netns_fd: Option<RawFd> },
    /// A bridge; `vlan_filtering` is sent only when set (kernels without
    /// bridge VLAN support refuse it).
    Bridge { vlan_filtering: Option<bool> },
    /// A macvlan on `parent`; `bc_queue_len` is `IFLA_MACVLAN_BC_QUEUE_LEN`.
    Macvlan { mode: MacvlanMode, bc_queue_len: Option<u32> },
    /// A VLAN device on `parent`: its frames leave `parent` tagged with `id`.
    Vlan { id: u16, protocol: VlanProtocol },
    /// An ipvlan on `parent`: it shares the parent's MAC; `mode` and `flags`
    /// are the parent's, so they change those of its other ipvlans too.
    Ipvlan { mode: IpvlanMode, flags: IpvlanFlags },
    /// A dummy device: a link that goes nowhere.
    Dummy,
    /// An intermediate functional block: traffic redirected to it (tc
    /// mirred) passes its qdiscs and goes on where it was going.
    Ifb,
    /// A VRF device (an L3 master): its ports are routed by `table`.
    Vrf { table: u32 },
}

impl LinkKind {
    /// `IFLA_INFO_KIND`, as `Link::kind` reports it back.
    pub fn name(&self) -> &'static str {
        match self {
            LinkKind::Veth { .. } => "veth",
            LinkKind::Bridge { .. } => "bridge",
            LinkKind::Macvlan { .. } => "macvlan",
            LinkKind::Vlan { .. } => "vlan",
            LinkKind::Ipvlan { .. } => "ipvlan",
            LinkKind::Dummy => "dummy",
            LinkKind::Ifb => "ifb",
            LinkKind::Vrf { .. } => "vrf",
        }
    }
}

impl NewLink {
    /// A link of `kind` with every option at the kernel's default.
    pub fn new(name: &str, kind: LinkKind) -> NewLink {
        NewLink { name: name.to_string(), kind, mtu: None, mac: None, parent: None, netns_fd: None }
    }
    /// A veth pair `name` ↔ `peer`, both ends here.
    pub fn veth(name: &str, peer: &str) -> NewLink {
        NewLink::new(name, LinkKind::Veth { peer: peer.to_string(), peer_netns_fd: None })
    }
    /// A bridge.
    pub fn bridge(name: &str) -> NewLink {
        NewLink::new(name, LinkKind::Bridge { vlan_filtering: None })
    }
    /// A macvlan of `mode` on the link `parent`.
    pub fn macvlan(name: &str, parent: u32, mode: MacvlanMode) -> NewLink {
        let kind = LinkKind::Macvlan { mode, bc_queue_len: None };
        NewLink { parent: Some(parent), ..NewLink::new(name, kind) }
    }
    /// 802.1Q VLAN `id` on the link `parent`.
    pub fn vlan(name: &str, parent: u32, id: u16) -> NewLink {
        let kind = LinkKind::Vlan { id, protocol: VlanProtocol::Dot1Q };
        NewLink { parent: Some(parent), ..NewLink::new(name, kind) }
    }
    /// An ipvlan of `mode` (flags: bridge) on the link `parent`.
    pub fn ipvlan(name: &str, parent: u32, mode: IpvlanMode) -> NewLink {
        let kind = LinkKind::Ipvlan { mode, flags: IpvlanFlags::Bridge };
        NewLink { parent: Some(parent), ..NewLink::new(name, kind) }
    }
}

/// Options of a new bridge (see [`Rtnl::add_bridge`]).
#[derive(Clone, Debug, Default)]
pub struct BridgeOpts {
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// Sent only when set: kernels without bridge VLAN support refuse it.
    pub vlan_filtering: Option<bool>,
}

/// Options of a new macvlan (see [`Rtnl::add_macvlan`]).
#[derive(Clone, Debug, Default)]
pub struct MacvlanOpts {
    pub mode: MacvlanMode,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
    /// `IFLA_MACVLAN_BC_QUEUE_LEN`: broadcast/multicast queue length.
    pub bc_queue_len: Option<u32>,
    /// Create the device directly in this netns (the parent stays here).
    pub netns_fd: Option<RawFd>,
}

/// Bridge port state read back from the kernel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgePort {
    pub hairpin: bool,
    pub isolated: bool,
    pub learning: bool,
}

impl BridgePort {
    fn parse(a: Attrs<'_>) -> BridgePort {
        let flag = |ty| a.get(ty).is_some_and(|x| x.u8() != 0);
        BridgePort {
            hairpin: flag(IFLA_BRPORT_MODE),
            isolated: flag(IFLA_BRPORT_ISOLATED),
            learning: flag(IFLA_BRPORT_LEARNING),
        }
    }
}

/// Bridge port settings to change; `None` leaves a setting alone.
#[derive(Clone, Copy, Debug, Default)]
pub struct BridgePortOpts {
    pub hairpin: Option<bool>,
    pub isolated: Option<bool>,
    pub learning: Option<bool>,
}

/// A VLAN on a bridge or bridge port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeVlan {
    pub vid: u16,
    /// Untagged ingress frames are put in this VLAN.
    pub pvid: bool,
    /// Egress frames of this VLAN leave untagged.
    pub untagged: bool,
}

pub(super) fn ifinfomsg(family: u8, index: u32, flags: u32, change: u32) -> [u8; IFINFOMSG_LEN] {
    let mut h = [0u8; IFINFOMSG_LEN];
    h[0] = family;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..12].copy_from_slice(&flags.to_ne_bytes());
    h[12..16].copy_from_slice(&change.to_ne_bytes());
    h
}

/// Common head of RTM_NEWLINK create requests: name, mtu, mac, target netns, parent.
pub(super) fn create_msg(
    name: &str,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
    ns: Option<RawFd>,
    parent: Option<u32>,
) -> Msg {
    let mut m = Msg::new(libc::RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
    m.push(&ifinfomsg(0, 0, 0, 0)).attr_str(libc::IFLA_IFNAME, name);
    if let Some(mtu) = mtu {
        m.attr_u32(libc::IFLA_MTU, mtu);
    }
    if let Some(mac) = mac {
        m.attr(libc::IFLA_ADDRESS, &mac);
    }
    if let Some(fd) = ns {
        m.attr_u32(libc::IFLA_NET_NS_FD, fd as u32);
    }
    if let Some(parent) = parent {
        m.attr_u32(libc::IFLA_LINK, parent);
    }
    m
}

/// IFLA_LINKINFO { KIND, DATA { … } }.
pub(super) fn linkinfo(m: &mut Msg, kind: &str, data: impl FnOnce(&mut Msg)) {
    m.nest(libc::IFLA_LINKINFO, |li| {
        li.attr_str(libc::IFLA_INFO_KIND, kind).nest(libc::IFLA_INFO_DATA, data);
    });
}

fn new_link_msg(l: &NewLink) -> Msg {
    let mut m = create_msg(&l.name, l.mtu, l.mac, l.netns_fd, l.parent);
    let data = |d: &mut Msg| match &l.kind {
        LinkKind::Veth { peer, peer_netns_fd } => {
            // The peer is a full ifinfomsg + attributes, created in its own netns.
            d.nest(VETH_INFO_PEER, |p| {
                p.push(&ifinfomsg(0, 0, 0, 0)).attr_str(libc::IFLA_IFNAME, peer);
                if let Some(mtu) = l.mtu {
                    p.attr_u32(libc::IFLA_MTU, mtu);
                }
                if let Some(fd) = peer_netns_fd {
                    p.attr_u32(libc::IFLA_NET_NS_FD, *fd as u32);
                }
            });
        }
        LinkKind::Bridge { vlan_filtering } => {
            if let Some(on) = vlan_filtering {
                d.attr_u8(IFLA_BR_VLAN_FILTERING, *on as u8);
            }
        }
        LinkKind::Macvlan { mode, bc_queue_len } => {
            d.attr_u32(IFLA_MACVLAN_MODE, *mode as u32);
            if let Some(n) = bc_queue_len {
                d.attr_u32(IFLA_MACVLAN_BC_QUEUE_LEN, *n);
            }
        }
        LinkKind::Vlan { id, protocol } => {
            d.attr_u16(IFLA_VLAN_ID, *id).attr_u16_be(IFLA_VLAN_PROTOCOL, *protocol as u16);
        }
        LinkKind::Ipvlan { mode, flags } => {
            d.attr_u16(IFLA_IPVLAN_MODE, *mode as u16).attr_u16(IFLA_IPVLAN_FLAGS, *flags as u16);
        }
        LinkKind::Vrf { table } => {
            d.attr_u32(IFLA_VRF_TABLE, *table);
        }
        LinkKind::Dummy | LinkKind::Ifb => {}
    };
    if matches!(l.kind, LinkKind::Dummy | LinkKind::Ifb) {
        // A kind without data: no IFLA_INFO_DATA at all.
        m.nest(libc::IFLA_LINKINFO, |li| {
            li.attr_str(libc::IFLA_INFO_KIND, l.kind.name());
        });
    } else {
        linkinfo(&mut m, l.kind.name(), data);
    }
    m
}

fn veth_msg(name: &str, peer: &str, peer_ns: Option<RawFd>, mtu: Option<u32>, mac: Option<[u8; 6]>) -> Msg {
    let kind = LinkKind::Veth { peer: peer.to_string(), peer_netns_fd: peer_ns };
    new_link_msg(&NewLink { mtu, mac, ..NewLink::new(name, kind) })
}

fn bridge_msg(name: &str, o: &BridgeOpts) -> Msg {
    let kind = LinkKind::Bridge { vlan_filtering: o.vlan_filtering };
    new_link_msg(&NewLink { mtu: o.mtu, mac: o.mac, ..NewLink::new(name, kind) })
}

fn macvlan_msg(name: &str, parent: u32, o: &MacvlanOpts) -> Msg {
    let kind = LinkKind::Macvlan { mode: o.mode, bc_queue_len: o.bc_queue_len };
    let new = NewLink {
        mtu: o.mtu,
        mac: o.mac,
        netns_fd: o.netns_fd,
        parent: Some(parent),
        ..NewLink::new(name, kind)
    };
    new_link_msg(&new)
}

fn set_msg(family: u8, index: u32, flags: u32, change: u32) -> Msg {
    let mut m = Msg::new(libc::RTM_SETLINK, 0);
    m.push(&ifinfomsg(family, index, flags, change));
    m
}

fn bridge_port_msg(index: u32, o: &BridgePortOpts) -> Msg {
    // AF_BRIDGE SETLINK on a port reaches the bridge's br_setlink; the kernel
    // takes IFLA_PROTINFO as per-port attributes only when NLA_F_NESTED is set.
    let mut m = set_msg(AF_BRIDGE, index, 0, 0);
    m.nest(libc::IFLA_PROTINFO, |p| {
        for (ty, v) in [
            (IFLA_BRPORT_MODE, o.hairpin),
            (IFLA_BRPORT_ISOLATED, o.isolated),
            (IFLA_BRPORT_LEARNING, o.learning),
        ] {
            if let Some(on) = v {
                p.attr_u8(ty, on as u8);
            }
        }
    });
    m
}

fn bridge_vlan_msg(ty: u16, index: u32, v: BridgeVlan, on_self: bool) -> Msg {
    let mut m = Msg::new(ty, 0);
    m.push(&ifinfomsg(AF_BRIDGE, index, 0, 0));
    m.nest(libc::IFLA_AF_SPEC, |s| {
        if on_self {
            s.attr_u16(IFLA_BRIDGE_FLAGS, BRIDGE_FLAGS_SELF);
        }
        let flags = if v.pvid { BRIDGE_VLAN_INFO_PVID } else { 0 }
            | if v.untagged { BRIDGE_VLAN_INFO_UNTAGGED } else { 0 };
        let mut info = flags.to_ne_bytes().to_vec();
        info.extend_from_slice(&v.vid.to_ne_bytes());
        s.attr(IFLA_BRIDGE_VLAN_INFO, &info);
    });
    m
}

/// The VLANs of a bridge port in an RTM_NEWLINK reply of family AF_BRIDGE.
pub fn parse_bridge_vlans(r: &Reply) -> Vec<BridgeVlan> {
    let Some(spec) = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_AF_SPEC) else { return Vec::new() };
    spec.nested()
        .filter(|a| a.ty == IFLA_BRIDGE_VLAN_INFO && a.data.len() >= 4)
        .map(|a| {
            let flags = a.u16();
            BridgeVlan {
                vid: u16::from_ne_bytes([a.data[2], a.data[3]]),
                pvid: flags & BRIDGE_VLAN_INFO_PVID != 0,
                untagged: flags & BRIDGE_VLAN_INFO_UNTAGGED != 0,
            }
        })
        .collect()
}

impl Rtnl {
    fn get_link(&mut self, mut m: Msg) -> NlResult<Link> {
        m.attr_u32(libc::IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        let r = self.sock.get(m)?;
        Link::parse(&r)
            .ok_or(crate::netlink::NlError { errno: libc::EPROTO, ext: Some("bad link reply".into()) })
    }

    /// The link called `name`; `ENODEV` if there is none.
    pub fn link_by_name(&mut self, name: &str) -> NlResult<Link> {
        let mut m = Msg::new(libc::RTM_GETLINK, 0);
        m.push(&ifinfomsg(0, 0, 0, 0)).attr_str(libc::IFLA_IFNAME, name);
        self.get_link(m)
    }

    /// The link with ifindex `index`; `ENODEV` if there is none.
    pub fn link_by_index(&mut self, index: u32) -> NlResult<Link> {
        let mut m = Msg::new(libc::RTM_GETLINK, 0);
        m.push(&ifinfomsg(0, index, 0, 0));
        self.get_link(m)
    }

    /// Every link in the netns.
    pub fn links(&mut self) -> NlResult<Vec<Link>> {
        let mut m = Msg::new(libc::RTM_GETLINK, 0);
        m.push(&ifinfomsg(0, 0, 0, 0)).attr_u32(libc::IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
        Ok(self.sock.dump(m)?.iter().filter_map(Link::parse).collect())
    }

    /// Create a link (`EEXIST` if the name is taken where it is created).
    pub fn add_link(&mut self, link: &NewLink) -> NlResult<()> {
        self.sock.request(new_link_msg(link))
    }

    /// Create a veth pair here; the peer goes straight into `peer_netns_fd`
    /// when given. `mtu` applies to both ends, `mac` to the first.
    pub fn add_veth(
        &mut self,
        name: &str,
        peer: &str,
        peer_netns_fd: Option<RawFd>,
        mtu: Option<u32>,
        mac: Option<[u8; 6]>,
    ) -> NlResult<()> {
        self.sock.request(veth_msg(name, peer, peer_netns_fd, mtu, mac))
    }

    /// Create a bridge.
    pub fn add_bridge(&mut self, name: &str, opts: &BridgeOpts) -> NlResult<()> {
        self.sock.request(bridge_msg(name, opts))
    }

    /// Create a macvlan on `parent` (an ifindex in this netns), optionally
    /// directly inside another netns.
    pub fn add_macvlan(&mut self, name: &str, parent: u32, opts: &MacvlanOpts) -> NlResult<()> {
        self.sock.request(macvlan_msg(name, parent, opts))
    }

    /// Create an 802.1Q VLAN device on `parent`, optionally inside another netns.
    pub fn add_vlan(
        &mut self,
        name: &str,
        parent: u32,
        vid: u16,
        mtu: Option<u32>,
        netns_fd: Option<RawFd>,
    ) -> NlResult<()> {
        self.add_link(&NewLink { mtu, netns_fd, ..NewLink::vlan(name, parent, vid) })
    }

    fn set_flag(&mut self, index: u32, flag: i32, on: bool) -> NlResult<()> {
        let flag = flag as u32;
        self.sock.request(set_msg(0, index, if on { flag } else { 0 }, flag))
    }

    /// Bring a link up.
    pub fn set_up(&mut self, index: u32) -> NlResult<()> {
        self.set_flag(index, libc::IFF_UP, true)
    }
    /// Bring a link down.
    pub fn set_down(&mut self, index: u32) -> NlResult<()> {
        self.set_flag(index, libc::IFF_UP, false)
    }
    /// Turn promiscuous mode on or off.
    pub fn set_promisc(&mut self, index: u32, on: bool) -> NlResult<()> {
        self.set_flag(index, libc::IFF_PROMISC, on)
    }
    /// Turn all-multicast reception on or off.
    pub fn set_allmulti(&mut self, index: u32, on: bool) -> NlResult<()> {
        self.set_flag(index, libc::IFF_ALLMULTI, on)
    }

    fn set_u32(&mut self, index: u32, ty: u16, v: u32) -> NlResult<()> {
        let mut m = set_msg(0, index, 0, 0);
        m.attr_u32(ty, v);
        self.sock.request(m)
    }

    /// Set the MTU.
    pub fn set_mtu(&mut self, index: u32, mtu: u32) -> NlResult<()> {
        self.set_u32(index, libc::IFLA_MTU, mtu)
    }
    /// Set the alias (`IFLA_IFALIAS`, at most 255 bytes); "" removes it.
    pub fn set_alias(&mut self, index: u32, alias: &str) -> NlResult<()> {
        let mut m = set_msg(0, index, 0, 0);
        m.attr(IFLA_IFALIAS, alias.as_bytes());
        self.sock.request(m)
    }
    /// Set the transmit queue length.
    pub fn set_txqlen(&mut self, index: u32, qlen: u32) -> NlResult<()> {
        self.set_u32(index, libc::IFLA_TXQLEN, qlen)
    }
    /// Enslave to the bridge (or bond) `master`.
    pub fn set_master(&mut self, index: u32, master: u32) -> NlResult<()> {
        self.set_u32(index, libc::IFLA_MASTER, master)
    }
    /// Release from its master.
    pub fn set_nomaster(&mut self, index: u32) -> NlResult<()> {
        self.set_u32(index, libc::IFLA_MASTER, 0)
    }
    /// Move into the netns open at `netns_fd`; the ifindex may change there.
    pub fn set_netns_fd(&mut self, index: u32, netns_fd: RawFd) -> NlResult<()> {
        self.set_u32(index, libc::IFLA_NET_NS_FD, netns_fd as u32)
    }

    /// Set the hardware address.
    pub fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> NlResult<()> {
        let mut m = set_msg(0, index, 0, 0);
        m.attr(libc::IFLA_ADDRESS, &mac);
        self.sock.request(m)
    }

    /// Rename a link (the kernel wants it down: `EBUSY` otherwise).
    pub fn rename(&mut self, index: u32, name: &str) -> NlResult<()> {
        let mut m = set_msg(0, index, 0, 0);
        m.attr_str(libc::IFLA_IFNAME, name);
        self.sock.request(m)
    }

    /// Delete a link (a veth takes its peer along).
    pub fn del_link(&mut self, index: u32) -> NlResult<()> {
        let mut m = Msg::new(libc::RTM_DELLINK, 0);
        m.push(&ifinfomsg(0, index, 0, 0));
        self.sock.request(m)
    }

    /// Delete a link by name; `ENODEV` if there is none.
    pub fn del_link_by_name(&mut self, name: &str) -> NlResult<()> {
        let mut m = Msg::new(libc::RTM_DELLINK, 0);
        m.push(&ifinfomsg(0, 0, 0, 0)).attr_str(libc::IFLA_IFNAME, name);
        self.sock.request(m)
    }

    /// Change bridge port settings of an enslaved link (`EOPNOTSUPP` if it is not a port).
    pub fn set_bridge_port(&mut self, index: u32, opts: &BridgePortOpts) -> NlResult<()> {
        self.sock.request(bridge_port_msg(index, opts))
    }

    /// Add a VLAN to a bridge port, or with `on_self` to the bridge device itself.
    /// `EOPNOTSUPP` on kernels built without bridge VLAN filtering.
    pub fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan, on_self: bool) -> NlResult<()> {
        self.sock.request(bridge_vlan_msg(libc::RTM_SETLINK, index, vlan, on_self))
    }

    /// Remove a VLAN from a bridge port (or the bridge itself with `on_self`).
    pub fn bridge_vlan_del(&mut self, index: u32, vid: u16, on_self: bool) -> NlResult<()> {
        let v = BridgeVlan { vid, ..BridgeVlan::default() };
        self.sock.request(bridge_vlan_msg(libc::RTM_DELLINK, index, v, on_self))
    }

    /// The VLANs configured on a bridge or bridge port.
    pub fn bridge_vlans(&mut self, index: u32) -> NlResult<Vec<BridgeVlan>> {
        let mut m = Msg::new(libc::RTM_GETLINK, 0);
        m.push(&ifinfomsg(AF_BRIDGE, 0, 0, 0)).attr_u32(libc::IFLA_EXT_MASK, RTEXT_FILTER_BRVLAN);
        let replies = self.sock.dump(m)?;
        let mine =
            replies.iter().filter(|r| r.payload.len() >= IFINFOMSG_LEN && ne_u32(&r.payload, 4) == index);
        Ok(mine.flat_map(parse_bridge_vlans).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    fn attrs_of(r: &Reply) -> Vec<(u16, Vec<u8>)> {
        r.attrs(IFINFOMSG_LEN).map(|a| (a.ty, a.data.to_vec())).collect()
    }

    #[test]
    fn veth_request_nests_peer_with_its_netns() {
        let r = as_reply(veth_msg("v0", "v1", Some(7), Some(1400), Some([2, 0, 0, 0, 0, 1])));
        let l = Link::parse(&r).unwrap();
        assert_eq!((l.name.as_str(), l.mtu, l.mac), ("v0", 1400, Some([2, 0, 0, 0, 0, 1])));
        assert_eq!(l.kind.as_deref(), Some("veth"));
        let info = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_LINKINFO).unwrap();
        let data = info.nested().get(libc::IFLA_INFO_DATA).unwrap();
        let peer = data.nested().get(VETH_INFO_PEER).unwrap();
        assert_eq!(&peer.data[..IFINFOMSG_LEN], &[0u8; IFINFOMSG_LEN]);
        let pa = Attrs::new(&peer.data[IFINFOMSG_LEN..]);
        assert_eq!(pa.get(libc::IFLA_IFNAME).unwrap().str(), "v1");
        assert_eq!(pa.get(libc::IFLA_MTU).unwrap().u32(), 1400);
        assert_eq!(pa.get(libc::IFLA_NET_NS_FD).unwrap().u32(), 7);
        // The first end stays here: no netns attribute at the top level.
        assert!(r.attrs(IFINFOMSG_LEN).get(libc::IFLA_NET_NS_FD).is_none());
    }

    #[test]
    fn macvlan_request_carries_parent_mode_queue_and_netns() {
        let o = MacvlanOpts {
            mode: MacvlanMode::Vepa,
            mtu: None,
            mac: None,
            bc_queue_len: Some(500),
            netns_fd: Some(9),
        };
        let r = as_reply(macvlan_msg("mv0", 3, &o));
        let l = Link::parse(&r).unwrap();
        assert_eq!(
            (l.link, l.macvlan_mode, l.kind.as_deref()),
            (Some(3), Some(MacvlanMode::Vepa), Some("macvlan"))
        );
        assert!(attrs_of(&r).contains(&(libc::IFLA_NET_NS_FD, 9u32.to_ne_bytes().to_vec())));
        let info = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_LINKINFO).unwrap();
        let data = info.nested().get(libc::IFLA_INFO_DATA).unwrap().nested();
        assert_eq!(data.get(IFLA_MACVLAN_BC_QUEUE_LEN).unwrap().u32(), 500);
    }

    #[test]
    fn dummy_request_has_a_kind_and_no_data() {
        let r = as_reply(new_link_msg(&NewLink { mtu: Some(1280), ..NewLink::new("d0", LinkKind::Dummy) }));
        let l = Link::parse(&r).unwrap();
        assert_eq!((l.name.as_str(), l.kind.as_deref(), l.mtu), ("d0", Some("dummy"), 1280));
        let info = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_LINKINFO).unwrap().nested();
        assert!(info.get(libc::IFLA_INFO_DATA).is_none());
    }

    #[test]
    fn vrf_request_carries_its_table() {
        let r = as_reply(new_link_msg(&NewLink::new("vrf0", LinkKind::Vrf { table: 1001 })));
        let l = Link::parse(&r).unwrap();
        assert_eq!((l.name.as_str(), l.kind.as_deref(), l.vrf_table), ("vrf0", Some("vrf"), Some(1001)));
    }

    #[test]
    fn bridge_request_sends_vlan_filtering_only_when_asked() {
        let l = Link::parse(&as_reply(bridge_msg("br0", &BridgeOpts::default()))).unwrap();
        assert_eq!((l.kind.as_deref(), l.vlan_filtering), (Some("bridge"), None));
        let o = BridgeOpts { vlan_filtering: Some(true), mtu: Some(9000), ..BridgeOpts::default() };
        let l = Link::parse(&as_reply(bridge_msg("br0", &o))).unwrap();
        assert_eq!((l.vlan_filtering, l.mtu), (Some(true), 9000));
    }

    #[test]
    fn bridge_port_settings_are_nested_protinfo_for_af_bridge() {
        let o = BridgePortOpts { hairpin: Some(true), isolated: Some(false), learning: None };
        let mut m = bridge_port_msg(5, &o);
        let bytes = m.bytes(1);
        assert_eq!(u16::from_ne_bytes([bytes[4], bytes[5]]), libc::RTM_SETLINK);
        let r = as_reply(m);
        assert_eq!(r.payload[0], AF_BRIDGE);
        assert_eq!(ne_u32(&r.payload, 4), 5);
        // NLA_F_NESTED must be on the wire, or br_setlink reads the old u8 state format.
        let raw_ty = u16::from_ne_bytes([r.payload[IFINFOMSG_LEN + 2], r.payload[IFINFOMSG_LEN + 3]]);
        assert_eq!(raw_ty, libc::IFLA_PROTINFO | crate::netlink::NLA_F_NESTED);
        let p = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_PROTINFO).unwrap().nested();
        assert_eq!(
            BridgePort::parse(p.clone()),
            BridgePort { hairpin: true, isolated: false, learning: false }
        );
        assert_eq!(p.count(), 2);
    }

    #[test]
    fn bridge_vlan_info_encoding() {
        let v = BridgeVlan { vid: 100, pvid: true, untagged: true };
        let r = as_reply(bridge_vlan_msg(libc::RTM_SETLINK, 4, v, false));
        let spec = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_AF_SPEC).unwrap();
        let info = spec.nested().get(IFLA_BRIDGE_VLAN_INFO).unwrap();
        assert_eq!(info.data, &[6u16.to_ne_bytes(), 100u16.to_ne_bytes()].concat()[..]);
        assert!(spec.nested().get(IFLA_BRIDGE_FLAGS).is_none());
        assert_eq!(parse_bridge_vlans(&r), vec![v]);
        let r = as_reply(bridge_vlan_msg(libc::RTM_DELLINK, 4, BridgeVlan { vid: 7, ..v }, true));
        let spec = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_AF_SPEC).unwrap().nested();
        assert_eq!(spec.get(IFLA_BRIDGE_FLAGS).unwrap().u16(), BRIDGE_FLAGS_SELF);
    }

    #[test]
    fn flags_and_bridge_port_parse() {
        let mut m = set_msg(0, 3, (libc::IFF_UP | libc::IFF_PROMISC) as u32, 0);
        m.attr_u32(libc::IFLA_MASTER, 9).nest(libc::IFLA_LINKINFO, |li| {
            li.attr_str(libc::IFLA_INFO_SLAVE_KIND, "bridge").nest(libc::IFLA_INFO_SLAVE_DATA, |d| {
                d.attr_u8(IFLA_BRPORT_ISOLATED, 1).attr_u8(IFLA_BRPORT_LEARNING, 1);
            });
        });
        let mut r = as_reply(m);
        r.ty = libc::RTM_NEWLINK;
        let l = Link::parse(&r).unwrap();
        assert!(l.is_up() && l.is_promisc() && !l.is_allmulti());
        assert_eq!(l.master, Some(9));
        assert_eq!(l.bridge_port, Some(BridgePort { hairpin: false, isolated: true, learning: true }));
    }

    #[test]
    fn ipvlan_request_carries_parent_mode_and_flags() {
        let kind = LinkKind::Ipvlan { mode: IpvlanMode::L3s, flags: IpvlanFlags::Vepa };
        let new =
            NewLink { parent: Some(4), netns_fd: Some(8), mtu: Some(1400), ..NewLink::new("ipv0", kind) };
        let r = as_reply(new_link_msg(&new));
        let l = Link::parse(&r).unwrap();
        assert_eq!((l.kind.as_deref(), l.link, l.mtu), (Some("ipvlan"), Some(4), 1400));
        assert_eq!((l.ipvlan_mode, l.ipvlan_flags), (Some(IpvlanMode::L3s), Some(IpvlanFlags::Vepa)));
        let data = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_LINKINFO).unwrap().nested();
        let data = data.get(libc::IFLA_INFO_DATA).unwrap().nested();
        assert_eq!(data.get(IFLA_IPVLAN_MODE).unwrap().data, 2u16.to_ne_bytes());
        assert_eq!(data.get(IFLA_IPVLAN_FLAGS).unwrap().data, 2u16.to_ne_bytes());
        let l2 = Link::parse(&as_reply(new_link_msg(&NewLink::ipvlan("ipv1", 4, IpvlanMode::L2)))).unwrap();
        assert_eq!((l2.ipvlan_mode, l2.ipvlan_flags), (Some(IpvlanMode::L2), Some(IpvlanFlags::Bridge)));
    }

    #[test]
    fn vlan_request_carries_id_and_the_tag_protocol_in_network_order() {
        let r = as_reply(new_link_msg(&NewLink::vlan("m0.100", 3, 100)));
        let l = Link::parse(&r).unwrap();
        assert_eq!((l.kind.as_deref(), l.link), (Some("vlan"), Some(3)));
        assert_eq!((l.vlan_id, l.vlan_protocol), (Some(100), Some(VlanProtocol::Dot1Q)));
        let data = r.attrs(IFINFOMSG_LEN).get(libc::IFLA_LINKINFO).unwrap().nested();
        let data = data.get(libc::IFLA_INFO_DATA).unwrap().nested();
        assert_eq!(data.get(IFLA_VLAN_PROTOCOL).unwrap().data, [0x81, 0x00]);
        let qinq = LinkKind::Vlan { id: 7, protocol: VlanProtocol::Dot1Ad };
        let l =
            Link::parse(&as_reply(new_link_msg(&NewLink { parent: Some(3), ..NewLink::new("s0", qinq) })));
        assert_eq!(l.unwrap().vlan_protocol, Some(VlanProtocol::Dot1Ad));
    }

    #[test]
    fn ipvlan_modes_parse() {
        assert_eq!(IpvlanMode::parse("l3s"), Some(IpvlanMode::L3s));
        assert_eq!(IpvlanMode::parse("L2"), None, "the reference matches exactly");
        assert_eq!(IpvlanMode::from_u16(1), Some(IpvlanMode::L3));
        assert_eq!(IpvlanMode::from_u16(3), None);
        assert_eq!(IpvlanMode::default().name(), "l2");
    }

    #[test]
    fn macvlan_modes_parse() {
        assert_eq!(MacvlanMode::parse("passthru"), Some(MacvlanMode::Passthru));
        assert_eq!(MacvlanMode::parse("nope"), None);
        assert_eq!(MacvlanMode::from_u32(16), Some(MacvlanMode::Source));
        assert_eq!(MacvlanMode::default() as u32, 4);
    }
}
