//! Neighbour (ARP / NDP) entries (RTM_*NEIGH).

use std::net::IpAddr;

use super::{af_of, ip_bytes, ne_u32, parse_ip, payload_of, Family, Rtnl};
use crate::netlink::{Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_REPLACE};

const NDMSG_LEN: usize = 12;

/// A neighbour entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Neigh {
    pub index: u32,
    pub ip: IpAddr,
    pub mac: Option<[u8; 6]>,
    /// `NUD_*` state (`NUD_PERMANENT` for static entries).
    pub state: u16,
    /// `NTF_*` flags.
    pub flags: u8,
}

impl Neigh {
    /// An RTM_NEWNEIGH reply (None for any other message).
    pub fn parse(r: &Reply) -> Option<Neigh> {
        let p = payload_of(r, libc::RTM_NEWNEIGH, NDMSG_LEN)?;
        let attrs = r.attrs(NDMSG_LEN);
        Some(Neigh {
            index: ne_u32(p, 4),
            ip: parse_ip(attrs.get(libc::NDA_DST)?.data)?,
            mac: attrs.get(libc::NDA_LLADDR).and_then(|a| a.data.try_into().ok()),
            state: u16::from_ne_bytes([p[8], p[9]]),
            flags: p[10],
        })
    }
}

fn neigh_msg(ty: u16, flags: u16, index: u32, ip: &IpAddr, mac: Option<[u8; 6]>) -> Msg {
    let mut h = [0u8; NDMSG_LEN];
    h[0] = af_of(ip);
    h[4..8].copy_from_slice(&index.to_ne_bytes());
    h[8..10].copy_from_slice(&libc::NUD_PERMANENT.to_ne_bytes());
    let mut m = Msg::new(ty, flags);
    m.push(&h).attr(libc::NDA_DST, &ip_bytes(ip));
    if let Some(mac) = mac {
        m.attr(libc::NDA_LLADDR, &mac);
    }
    m
}

impl Rtnl {
    /// Neighbour entries of one link (or all with `None`) of the given family.
    pub fn neighbours(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Neigh>> {
        let mut m = Msg::new(libc::RTM_GETNEIGH, 0);
        m.push(&[family.af(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let all = self.sock.dump(m)?.iter().filter_map(Neigh::parse).collect::<Vec<_>>();
        Ok(all
            .into_iter()
            .filter(|n| !matches!(index, Some(i) if i != n.index) && family.matches(af_of(&n.ip)))
            .collect())
    }

    /// Add or replace a permanent entry `ip` → `mac` on a link.
    pub fn set_neigh(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> NlResult<()> {
        self.sock.request(neigh_msg(libc::RTM_NEWNEIGH, NLM_F_CREATE | NLM_F_REPLACE, index, &ip, Some(mac)))
    }

    /// Delete the entry for `ip` on a link; `ENOENT` if there is none.
    pub fn del_neigh(&mut self, index: u32, ip: IpAddr) -> NlResult<()> {
        self.sock.request(neigh_msg(libc::RTM_DELNEIGH, 0, index, &ip, None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    #[test]
    fn permanent_entry_roundtrips() {
        let ip: IpAddr = "fd00::7".parse().unwrap();
        let r = as_reply(neigh_msg(libc::RTM_NEWNEIGH, 0, 3, &ip, Some([2, 1, 2, 3, 4, 5])));
        let n = Neigh::parse(&r).unwrap();
        assert_eq!(
            n,
            Neigh { index: 3, ip, mac: Some([2, 1, 2, 3, 4, 5]), state: libc::NUD_PERMANENT, flags: 0 }
        );
        assert_eq!(r.payload[0], libc::AF_INET6 as u8);
    }
}
