//! Routes (RTM_*ROUTE), both families, any table.

use std::net::IpAddr;

use super::{af_of, ip_bytes, ne_u32, parse_ip, payload_of, unspecified, Family, Rtnl};
use crate::netlink::{Msg, NlResult, Reply, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REPLACE};

const RTMSG_LEN: usize = 12;
// linux/rtnetlink.h
const RTAX_MTU: u16 = 2;
const RTAX_ADVMSS: u16 = 8;
const RTNH_F_ONLINK: u32 = 4;

/// A unicast route. Build with [`Route::new`] and set the public fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// Destination network; the default route is the unspecified address with prefix 0.
    pub dst: IpAddr,
    pub prefix: u8,
    pub gateway: Option<IpAddr>,
    pub oif: Option<u32>,
    /// `RT_TABLE_MAIN` (254) unless set.
    pub table: u32,
    /// `RT_SCOPE_*`: universe (0) by default; use link (253) for device routes.
    pub scope: u8,
    /// The metric (`RTA_PRIORITY`).
    pub priority: Option<u32>,
    /// `RTPROT_*`: boot (3) by default, as `ip route add` does.
    pub protocol: u8,
    /// `RTN_*`: unicast by default.
    pub route_type: u8,
    /// `RTAX_MTU` metric.
    pub mtu: Option<u32>,
    /// `RTAX_ADVMSS` metric.
    pub advmss: Option<u32>,
    /// Preferred source address (`RTA_PREFSRC`).
    pub src: Option<IpAddr>,
    /// The gateway is on the link whatever the addresses say (`onlink`,
    /// e.g. Calico's `default via 169.254.1.1 dev eth0 onlink`).
    pub onlink: bool,
}

impl Route {
    /// A route to `dst/prefix` in the main table.
    pub fn new(dst: IpAddr, prefix: u8) -> Route {
        Route {
            dst,
            prefix,
            gateway: None,
            oif: None,
            table: libc::RT_TABLE_MAIN as u32,
            scope: libc::RT_SCOPE_UNIVERSE,
            priority: None,
            protocol: libc::RTPROT_BOOT,
            route_type: libc::RTN_UNICAST,
            mtu: None,
            advmss: None,
            src: None,
            onlink: false,
        }
    }

    /// True for a default route (prefix 0).
    pub fn is_default(&self) -> bool {
        self.prefix == 0
    }

    /// An RTM_NEWROUTE reply (None for any other message and for cache entries).
    pub fn parse(r: &Reply) -> Option<Route> {
        let p = payload_of(r, libc::RTM_NEWROUTE, RTMSG_LEN)?;
        let (af, prefix, table8, flags) = (p[0], p[1], p[4], ne_u32(p, 8));
        if flags & libc::RTM_F_CLONED != 0 {
            return None; // a cache entry, not a configured route
        }
        let mut rt = Route::new(unspecified(af), prefix);
        rt.onlink = flags & RTNH_F_ONLINK != 0;
        (rt.protocol, rt.scope, rt.route_type, rt.table) = (p[5], p[6], p[7], table8 as u32);
        for a in r.attrs(RTMSG_LEN) {
            match a.ty {
                libc::RTA_DST => rt.dst = parse_ip(a.data)?,
                libc::RTA_GATEWAY => rt.gateway = parse_ip(a.data),
                libc::RTA_PREFSRC => rt.src = parse_ip(a.data),
                libc::RTA_OIF => rt.oif = Some(a.u32()),
                libc::RTA_PRIORITY => rt.priority = Some(a.u32()),
                libc::RTA_TABLE => rt.table = a.u32(),
                libc::RTA_METRICS => {
                    for m in a.nested() {
                        match m.ty {
                            RTAX_MTU => rt.mtu = Some(m.u32()),
                            RTAX_ADVMSS => rt.advmss = Some(m.u32()),
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Some(rt)
    }
}

fn route_msg(ty: u16, flags: u16, r: &Route) -> Msg {
    let del = ty == libc::RTM_DELROUTE;
    // On delete, scope NOWHERE and protocol 0 are the kernel's wildcards, so a
    // route is found whoever installed it.
    let (scope, protocol) = if del { (libc::RT_SCOPE_NOWHERE, 0) } else { (r.scope, r.protocol) };
    // rtm_table is only 8 bits; RTA_TABLE carries the full id.
    let table8 = if r.table < 256 { r.table as u8 } else { libc::RT_TABLE_UNSPEC };
    let mut h = [af_of(&r.dst), r.prefix, 0, 0, table8, protocol, scope, r.route_type, 0, 0, 0, 0];
    if r.onlink && !del {
        h[8..12].copy_from_slice(&RTNH_F_ONLINK.to_ne_bytes());
    }
    let mut m = Msg::new(ty, flags);
    m.push(&h).attr_u32(libc::RTA_TABLE, r.table);
    if r.prefix > 0 {
        m.attr(libc::RTA_DST, &ip_bytes(&r.dst));
    }
    if let Some(gw) = &r.gateway {
        m.attr(libc::RTA_GATEWAY, &ip_bytes(gw));
    }
    if let Some(src) = &r.src {
        m.attr(libc::RTA_PREFSRC, &ip_bytes(src));
    }
    if let Some(oif) = r.oif {
        m.attr_u32(libc::RTA_OIF, oif);
    }
    if let Some(prio) = r.priority {
        m.attr_u32(libc::RTA_PRIORITY, prio);
    }
    if !del && (r.mtu.is_some() || r.advmss.is_some()) {
        m.nest(libc::RTA_METRICS, |n| {
            for (ty, v) in [(RTAX_MTU, r.mtu), (RTAX_ADVMSS, r.advmss)] {
                if let Some(v) = v {
                    n.attr_u32(ty, v);
                }
            }
        });
    }
    m
}

impl Rtnl {
    /// Add a route; `EEXIST` if an equal one exists.
    pub fn add_route(&mut self, route: &Route) -> NlResult<()> {
        self.sock.request(route_msg(libc::RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL, route))
    }

    /// Add a route or replace the one with the same destination, table and metric.
    pub fn replace_route(&mut self, route: &Route) -> NlResult<()> {
        self.sock.request(route_msg(libc::RTM_NEWROUTE, NLM_F_CREATE | NLM_F_REPLACE, route))
    }

    /// Delete the route matching `route` (set fields narrow the match); `ESRCH` if none.
    pub fn del_route(&mut self, route: &Route) -> NlResult<()> {
        self.sock.request(route_msg(libc::RTM_DELROUTE, 0, route))
    }

    /// Routes of `family` in `table` (`RT_TABLE_MAIN` usually; 0 for every table).
    pub fn routes(&mut self, family: Family, table: u32) -> NlResult<Vec<Route>> {
        let mut m = Msg::new(libc::RTM_GETROUTE, 0);
        m.push(&[family.af(), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        let all = self.sock.dump(m)?.iter().filter_map(Route::parse).collect::<Vec<_>>();
        Ok(all
            .into_iter()
            .filter(|r| (table == 0 || r.table == table) && family.matches(af_of(&r.dst)))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    #[test]
    fn v4_route_with_everything_roundtrips() {
        let mut r = Route::new("10.20.0.0".parse().unwrap(), 16);
        r.gateway = Some("10.9.0.254".parse().unwrap());
        r.src = Some("10.9.0.1".parse().unwrap());
        (r.oif, r.priority, r.mtu, r.advmss, r.table) = (Some(3), Some(50), Some(1300), Some(1260), 1000);
        r.onlink = true;
        let reply = as_reply(route_msg(libc::RTM_NEWROUTE, 0, &r));
        assert_eq!(reply.payload[4], libc::RT_TABLE_UNSPEC, "table 1000 does not fit rtm_table");
        assert_eq!(Route::parse(&reply).unwrap(), r);
        let metrics = reply.attrs(RTMSG_LEN).get(libc::RTA_METRICS).unwrap().nested();
        assert_eq!(metrics.get(RTAX_MTU).unwrap().u32(), 1300);
        assert_eq!(metrics.get(RTAX_ADVMSS).unwrap().u32(), 1260);
    }

    #[test]
    fn v6_default_route_has_no_dst_and_delete_uses_wildcards() {
        let mut r = Route::new("::".parse().unwrap(), 0);
        r.gateway = Some("fd00::1".parse().unwrap());
        r.mtu = Some(1400);
        let reply = as_reply(route_msg(libc::RTM_NEWROUTE, 0, &r));
        assert_eq!(reply.payload[0], libc::AF_INET6 as u8);
        assert!(reply.attrs(RTMSG_LEN).get(libc::RTA_DST).is_none());
        let back = Route::parse(&reply).unwrap();
        assert!(back.is_default());
        assert_eq!(back, r);
        let mut del = route_msg(libc::RTM_DELROUTE, 0, &r).bytes(1);
        let hdr = &mut del[crate::netlink::NLMSG_HDRLEN..];
        assert_eq!((hdr[5], hdr[6]), (0, libc::RT_SCOPE_NOWHERE));
        assert!(crate::netlink::Attrs::new(&hdr[RTMSG_LEN..]).get(libc::RTA_METRICS).is_none());
    }
}
