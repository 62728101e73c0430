//! Netlink replies as the kernel could send them (one received datagram):
//! message framing, ACK/error decoding, and every rtnetlink, nf_tables and
//! conntrack listing decoder the plugins use. Never a panic, and what the
//! decoders report comes from inside the datagram.
#![no_main]

use common::conntrack;
use common::netlink::rtnl::{parse_bridge_vlans, Addr, Fdb, Link, Neigh, Route};
use common::netlink::{split_messages, Attrs, Socket, NLMSG_HDRLEN};
use common::nft::tag::{Legacy, Owner};
use common::nft::{self, Family, Table};
use libfuzzer_sys::fuzz_target;

/// Walk every attribute, nested ones too, as far as they look nested.
fn walk(a: Attrs<'_>, depth: usize) -> usize {
    let mut n = 0;
    for attr in a {
        n += 1;
        let _ = (attr.u8(), attr.u16(), attr.u32(), attr.u16_be(), attr.u32_be(), attr.u64_be(), attr.str());
        if depth < 4 {
            n += walk(attr.nested(), depth + 1);
        }
    }
    n
}

fuzz_target!(|data: &[u8]| {
    let msgs = split_messages(data);
    let framed: usize = msgs.iter().map(|(_, r)| NLMSG_HDRLEN + r.payload.len()).sum();
    assert!(framed <= data.len());
    let replies: Vec<_> = msgs.into_iter().map(|(_, r)| r).collect();
    for r in &replies {
        if r.ty == 2 {
            if let Err(e) = Socket::ack_result(r) {
                let _ = e.to_string();
            }
        }
        walk(r.attrs(0), 0);
        walk(r.attrs(4), 0);
        if let Some(l) = Link::parse(r) {
            assert!(l.name.len() < r.payload.len().max(1));
            let _ = (l.is_up(), l.is_promisc(), l.is_allmulti());
        }
        let _ = Addr::parse(r);
        let _ = Route::parse(r).map(|rt| rt.is_default());
        let _ = Neigh::parse(r);
        let _ = Fdb::parse(r).map(|f| (f.is_vxlan_remote(), f.is_bridge_static()));
        let _ = parse_bridge_vlans(r);
        if let Some(e) = conntrack::parse_entry(r.attrs(4)) {
            let _ = e;
        }
    }
    let t = Table::new(Family::Inet, "cnirs_portmap");
    for table in nft::parse_tables(&replies) {
        assert!(!table.name.contains('\0'));
    }
    let _ = nft::parse_chains(&replies, &t);
    for rule in nft::parse_rules(&replies, &t, "forward") {
        if let Some(c) = rule.comment {
            let _ = Owner::parse(&c, Legacy::Attachment);
        }
    }
    let _ = nft::parse_sets(&replies, &t);
    for e in nft::parse_elements(&replies) {
        if let Some(c) = &e.comment {
            for legacy in [Legacy::Attachment, Legacy::NetworkFirst, Legacy::NetworkLast] {
                if let Some(o) = Owner::parse(c, legacy) {
                    let _ = (o.container_id(), o.ifname(), o.network(), o.in_network("podman"));
                }
            }
        }
    }
});
