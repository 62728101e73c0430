//! Whether the kernel forwards a family, over netlink (RTM_GETNETCONF), as
//! `ip netconf` reads it: a plugin's first open under /proc/sys/net costs
//! ~0.3 ms in a netns with a few hundred interfaces, this round trip ~10 µs.

use super::{Family, Rtnl};
use crate::netlink::{Msg, NlError, NlResult, Reply};

const RTM_GETNETCONF: u16 = 82;
const NETCONFA_IFINDEX: u16 = 1;
const NETCONFA_FORWARDING: u16 = 2;
/// `NETCONFA_IFINDEX_ALL`: the netns-wide setting (`ip_forward`, `conf/all`).
const IFINDEX_ALL: i32 = -1;
/// `struct netconfmsg` is one byte, the family, padded to 4.
const NETCONFMSG_LEN: usize = 4;

/// The request for `family` on interface `index` (`None`: the netns-wide value).
fn request(family: Family, index: Option<u32>) -> Msg {
    let mut m = Msg::new(RTM_GETNETCONF, 0);
    let ifindex = index.map_or(IFINDEX_ALL, |i| i as i32);
    m.push(&[family.af(), 0, 0, 0]).attr(NETCONFA_IFINDEX, &ifindex.to_ne_bytes());
    m
}

/// NETCONFA_FORWARDING of a reply; `None` when the reply has none.
fn forwarding_of(reply: &Reply) -> Option<bool> {
    if reply.payload.len() < NETCONFMSG_LEN {
        return None;
    }
    let attr = reply.attrs(NETCONFMSG_LEN).get(NETCONFA_FORWARDING)?;
    (attr.data.len() >= 4).then(|| attr.u32() != 0)
}

impl Rtnl {
    /// Whether interface `index` (`None`: the netns as a whole) forwards
    /// `family` (V4 or V6). IPv4 asks the receiving interface; IPv6 only
    /// the netns-wide value.
    pub fn forwarding(&mut self, family: Family, index: Option<u32>) -> NlResult<bool> {
        let reply = self.sock.get(request(family, index))?;
        forwarding_of(&reply)
            .ok_or(NlError { errno: libc::EPROTO, ext: Some("netconf reply without forwarding".into()) })
    }
}

#[cfg(test)]
mod tests {
    use super::super::as_reply;
    use super::*;

    #[test]
    fn request_names_family_and_interface_and_the_reply_is_read() {
        let r = as_reply(request(Family::V4, Some(7)));
        assert_eq!(r.payload[0], libc::AF_INET as u8);
        assert_eq!(r.attrs(NETCONFMSG_LEN).get(NETCONFA_IFINDEX).unwrap().u32(), 7);
        let all = as_reply(request(Family::V6, None));
        assert_eq!(all.attrs(NETCONFMSG_LEN).get(NETCONFA_IFINDEX).unwrap().u32() as i32, IFINDEX_ALL);
        for on in [0u32, 1] {
            let mut m = request(Family::V4, None);
            m.attr_u32(NETCONFA_FORWARDING, on);
            assert_eq!(forwarding_of(&as_reply(m)), Some(on == 1));
        }
        assert_eq!(forwarding_of(&r), None, "no forwarding attribute");
        let short = Reply { ty: 80, flags: 0, payload: vec![2] };
        assert_eq!(forwarding_of(&short), None);
    }

    /// The kernel's answer follows the sysctls, per interface and netns-wide
    /// (including the state two racing writers of ip_forward leave behind).
    #[test]
    fn netconf_agrees_with_the_sysctls() {
        let Some(t) = super::super::tests::TestNs::new() else { return };
        let mut r = t.rtnl();
        r.add_veth("fwa", "fwb", None, None, None).unwrap();
        let (a, b) = (r.link_by_name("fwa").unwrap().index, r.link_by_name("fwb").unwrap().index);
        let state = |r: &mut Rtnl| {
            [
                r.forwarding(Family::V4, None),
                r.forwarding(Family::V4, Some(a)),
                r.forwarding(Family::V4, Some(b)),
            ]
            .map(Result::unwrap)
        };
        assert_eq!(state(&mut r), [false; 3]);
        r.set_sysctls(&[("net/ipv4/ip_forward", "1")]).unwrap();
        assert_eq!(state(&mut r), [true; 3], "ip_forward turns every interface on");
        r.set_sysctls(&[("net/ipv4/conf/fwa/forwarding", "0")]).unwrap();
        assert_eq!(state(&mut r), [true, false, true]);
        assert!(!r.forwarding(Family::V6, None).unwrap());
        r.set_sysctls(&[("net/ipv6/conf/all/forwarding", "1")]).unwrap();
        assert!(r.forwarding(Family::V6, None).unwrap());
        assert!(r.forwarding(Family::V4, Some(9999)).is_err(), "no such interface");
    }
}
