//! VXLAN devices and the forwarding entries that steer them: remote MACs in
//! the VXLAN device's own table (MAC → remote VTEP, `bridge fdb … self`) and
//! static entries in the bridge above it (MAC → the VXLAN port, `bridge fdb
//! … master static`), so a frame for a remote container goes straight to the
//! right node and is never flooded.

use std::net::IpAddr;

use super::link::{create_msg, linkinfo};
use super::{ip_bytes, ne_u32, parse_ip, payload_of, Rtnl};
use crate::netlink::{Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_REPLACE};

// linux/if_link.h IFLA_VXLAN_*
const IFLA_VXLAN_ID: u16 = 1;
const IFLA_VXLAN_LINK: u16 = 3;
const IFLA_VXLAN_LOCAL: u16 = 4;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PROXY: u16 = 11;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_VXLAN_LOCAL6: u16 = 17;

const NDMSG_LEN: usize = 12;
const AF_BRIDGE: u8 = libc::AF_BRIDGE as u8;
const NDA_MASTER: u16 = 9;

/// The IANA VXLAN port.
pub const VXLAN_PORT: u16 = 4789;

/// Options of a new VXLAN device.
#[derive(Clone, Debug)]
pub struct VxlanOpts {
    pub vni: u32,
    /// Source address of the encapsulated packets (this node's VTEP).
    pub local: IpAddr,
    /// UDP destination port.
    pub port: u16,
    /// The underlay device, when known.
    pub underlay: Option<u32>,
    /// Learn remote MACs from received packets (off: only programmed entries).
    pub learning: bool,
    /// Answer ARP/ND from the device's neighbour table instead of sending them.
    pub proxy: bool,
    pub mtu: Option<u32>,
    pub mac: Option<[u8; 6]>,
}

fn vxlan_msg(name: &str, o: &VxlanOpts) -> Msg {
    let mut m = create_msg(name, o.mtu, o.mac, None, None);
    linkinfo(&mut m, "vxlan", |d| {
        d.attr_u32(IFLA_VXLAN_ID, o.vni);
        match o.local {
            IpAddr::V4(a) => d.attr(IFLA_VXLAN_LOCAL, &a.octets()),
            IpAddr::V6(a) => d.attr(IFLA_VXLAN_LOCAL6, &a.octets()),
        };
        if let Some(dev) = o.underlay {
            d.attr_u32(IFLA_VXLAN_LINK, dev);
        }
        d.attr_u8(IFLA_VXLAN_LEARNING, o.learning as u8);
        d.attr_u8(IFLA_VXLAN_PROXY, o.proxy as u8);
        d.attr_u16_be(IFLA_VXLAN_PORT, o.port);
    });
    m
}

/// One entry of the bridge forwarding database (`bridge fdb`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fdb {
    /// The device (port) the entry belongs to.
    pub index: u32,
    pub mac: [u8; 6],
    /// A VXLAN entry's remote VTEP.
    pub dst: Option<IpAddr>,
    /// Set on entries of the bridge a port belongs to (`master`).
    pub master: Option<u32>,
    /// `NUD_*`: `NUD_NOARP` static, `NUD_PERMANENT` local or VXLAN-permanent.
    pub state: u16,
    /// `NTF_*`: `NTF_SELF` for the device's own table.
    pub flags: u8,
}

impl Fdb {
    /// An RTM_NEWNEIGH reply of family AF_BRIDGE (None for any other message).
    pub fn parse(r: &Reply) -> Option<Fdb> {
        let p = payload_of(r, libc::RTM_NEWNEIGH, NDMSG_LEN)?;
        if p[0] != AF_BRIDGE {
            return None;
        }
        let attrs = r.attrs(NDMSG_LEN);
        Some(Fdb {
            index: ne_u32(p, 4),
            mac: attrs.get(libc::NDA_LLADDR)?.data.try_into().ok()?,
            dst: attrs.get(libc::NDA_DST).and_then(|a| parse_ip(a.data)),
            master: attrs.get(NDA_MASTER).map(|a| a.u32()).filter(|&m| m != 0),
            state: u16::from_ne_bytes([p[8], p[9]]),
            flags: p[10],
        })
    }

    /// A remote entry of a VXLAN device's own table.
    pub fn is_vxlan_remote(&self) -> bool {
        self.flags & libc::NTF_SELF != 0 && self.dst.is_some()
    }

    /// A static (user-added, non-local) entry of the bridge.
    pub fn is_bridge_static(&self) -> bool {
        self.master.is_some() && self.state & libc::NUD_NOARP != 0 && self.state & libc::NUD_PERMANENT == 0
    }
}

fn fdb_msg(ty: u16, flags: u16, index: u32, mac: [u8; 6], state: u16, ntf: u8, dst: Option<IpAddr>) -> Msg {
    let mut h = [0u8; NDMSG_LEN];
    h[0] = AF_BRIDGE;
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..10].copy_from_slice(&state.to_ne_bytes());
    h[10] = ntf;
    let mut m = Msg::new(ty, flags);
    m.push(&h).attr(libc::NDA_LLADDR, &mac);
    if let Some(dst) = dst {
        m.attr(libc::NDA_DST, &ip_bytes(&dst));
    }
    m
}

impl Rtnl {
    /// Create a VXLAN device.
    pub fn add_vxlan(&mut self, name: &str, opts: &VxlanOpts) -> NlResult<()> {
        self.sock.request(vxlan_msg(name, opts))
    }

    /// Every bridge FDB entry in the netns (bridges' and VXLAN devices').
    pub fn fdb_entries(&mut self) -> NlResult<Vec<Fdb>> {
        let mut m = Msg::new(libc::RTM_GETNEIGH, 0);
        m.push(&[AF_BRIDGE, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        Ok(self.sock.dump(m)?.iter().filter_map(Fdb::parse).collect())
    }

    /// `bridge fdb replace MAC dev VXLAN dst VTEP self permanent`.
    pub fn set_vxlan_fdb(&mut self, vxlan: u32, mac: [u8; 6], vtep: IpAddr) -> NlResult<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        let m =
            fdb_msg(libc::RTM_NEWNEIGH, flags, vxlan, mac, libc::NUD_PERMANENT, libc::NTF_SELF, Some(vtep));
        self.sock.request(m)
    }

    /// Remove a MAC from a VXLAN device's table; `ENOENT` if absent.
    pub fn del_vxlan_fdb(&mut self, vxlan: u32, mac: [u8; 6]) -> NlResult<()> {
        self.sock.request(fdb_msg(libc::RTM_DELNEIGH, 0, vxlan, mac, 0, libc::NTF_SELF, None))
    }

    /// `bridge fdb replace MAC dev PORT master static`: the bridge sends
    /// frames for MAC to PORT without flooding or learning.
    pub fn set_bridge_fdb(&mut self, port: u32, mac: [u8; 6]) -> NlResult<()> {
        let flags = NLM_F_CREATE | NLM_F_REPLACE;
        self.sock.request(fdb_msg(
            libc::RTM_NEWNEIGH,
            flags,
            port,
            mac,
            libc::NUD_NOARP,
            libc::NTF_MASTER,
            None,
        ))
    }

    /// Remove a static bridge entry of PORT; `ENOENT` if absent.
    pub fn del_bridge_fdb(&mut self, port: u32, mac: [u8; 6]) -> NlResult<()> {
        self.sock.request(fdb_msg(libc::RTM_DELNEIGH, 0, port, mac, 0, libc::NTF_MASTER, None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;
    use crate::netlink::Attrs;

    #[test]
    fn vxlan_request_carries_vni_local_port_and_no_learning() {
        let o = VxlanOpts {
            vni: 4242,
            local: "192.0.2.1".parse().unwrap(),
            port: VXLAN_PORT,
            underlay: Some(3),
            learning: false,
            proxy: true,
            mtu: Some(1450),
            mac: None,
        };
        let r = as_reply(vxlan_msg("vxlan4242", &o));
        let info = r.attrs(16).get(libc::IFLA_LINKINFO).unwrap().nested();
        assert_eq!(info.get(libc::IFLA_INFO_KIND).unwrap().str(), "vxlan");
        let d: Attrs = info.get(libc::IFLA_INFO_DATA).unwrap().nested();
        assert_eq!(d.get(IFLA_VXLAN_ID).unwrap().u32(), 4242);
        assert_eq!(d.get(IFLA_VXLAN_LOCAL).unwrap().data, &[192, 0, 2, 1]);
        assert_eq!(d.get(IFLA_VXLAN_LINK).unwrap().u32(), 3);
        assert_eq!(d.get(IFLA_VXLAN_LEARNING).unwrap().u8(), 0);
        assert_eq!(d.get(IFLA_VXLAN_PROXY).unwrap().u8(), 1);
        assert_eq!(d.get(IFLA_VXLAN_PORT).unwrap().data, &4789u16.to_be_bytes());
        assert_eq!(r.attrs(16).get(libc::IFLA_MTU).unwrap().u32(), 1450);
    }

    #[test]
    fn fdb_entries_roundtrip_and_classify() {
        let mac = [2, 0x42, 10, 90, 0, 5];
        let mut r = as_reply(fdb_msg(
            libc::RTM_NEWNEIGH,
            0,
            7,
            mac,
            libc::NUD_PERMANENT,
            libc::NTF_SELF,
            Some("192.0.2.9".parse().unwrap()),
        ));
        let f = Fdb::parse(&r).unwrap();
        assert_eq!((f.index, f.mac, f.dst), (7, mac, Some("192.0.2.9".parse().unwrap())));
        assert!(f.is_vxlan_remote() && !f.is_bridge_static());
        r = as_reply(fdb_msg(libc::RTM_NEWNEIGH, 0, 7, mac, libc::NUD_NOARP, 0, None));
        r.payload.extend_from_slice(&[8, 0, NDA_MASTER as u8, 0, 4, 0, 0, 0]);
        let f = Fdb::parse(&r).unwrap();
        assert_eq!(f.master, Some(4));
        assert!(f.is_bridge_static() && !f.is_vxlan_remote());
    }
}
