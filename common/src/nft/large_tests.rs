//! Batches too big for one message or for the socket's default buffers.

use super::testns::TestNs;
use super::*;
use crate::netlink::{Attrs, NLA_MAX_LEN, NLMSG_HDRLEN};

/// `n` elements of a port map (`ipv4_addr . inet_proto . inet_service :
/// ipv4_addr . inet_service`) with a comment as long as portmap's tags get.
fn port_elems(n: u32, first_port: u32) -> Vec<Elem> {
    let tag = format!("{} eth0 {}", "c".repeat(64), "n".repeat(40));
    (first_port..first_port + n)
        .map(|i| {
            let host = (0x0a00_0000u32 + i / 65536).to_be_bytes();
            let k = key::concat(&[&host, &[6], &key::port((i % 65536) as u16)]);
            Elem::new(k).value(key::concat(&[&[10, 88, 0, 5], &key::port(80)])).comment(&tag)
        })
        .collect()
}

fn port_map(t: &Table) -> Batch {
    let (proto, port, a4) = (DataType::INET_PROTO, DataType::INET_SERVICE, DataType::IPV4_ADDR);
    let mut b = Batch::new();
    b.add_table(t).add_set(t, &SetSpec::map("m", &[a4, proto, port], &[a4, port]));
    b
}

/// The element keys each command message carries, checking that every
/// message names table and set and fits the 16-bit attribute lengths.
fn keys_per_message(b: &Batch) -> Vec<Vec<Vec<u8>>> {
    b.cmds
        .iter()
        .map(|c| {
            assert_eq!(c.msg.check(), Ok(()));
            let bytes = c.msg.clone().bytes(0);
            let attrs = Attrs::new(&bytes[NLMSG_HDRLEN + 4..]);
            assert_eq!(attrs.get(ELEM_LIST_TABLE).unwrap().str(), "cni_big");
            assert_eq!(attrs.get(ELEM_LIST_SET).unwrap().str(), "m");
            let list = attrs.get(ELEM_LIST_ELEMENTS).unwrap();
            assert!(list.data.len() + 4 <= NLA_MAX_LEN);
            list.nested()
                .map(|e| e.nested().get(ELEM_KEY).unwrap().nested().get(DATA_VALUE).unwrap().data.to_vec())
                .collect()
        })
        .collect()
}

#[test]
fn long_element_lists_are_split_over_messages_of_one_batch() {
    let t = Table::new(Family::Inet, "cni_big");
    let elems = port_elems(1000, 0);
    let keys: Vec<Vec<u8>> = elems.iter().map(|e| e.key.clone()).collect();
    let mut b = Batch::new();
    b.create_elements(&t, "m", &elems);
    let per_msg = keys_per_message(&b);
    // ~150 bytes an element: 1000 need three messages (one would wrap the
    // list's 16-bit length and lose most of them)
    assert_eq!(per_msg.len(), 3, "{:?}", per_msg.iter().map(Vec::len).collect::<Vec<_>>());
    assert_eq!(per_msg.concat(), keys);
    assert!(b.cmds.iter().all(|c| c.msg.flags() & NLM_F_EXCL != 0));
    // one batch: begin, the three commands, end; the last command is ACKed
    let msgs = b.messages();
    assert_eq!(msgs.len(), 5);
    assert_eq!(msgs.iter().filter(|m| m.flags() & NLM_F_ACK != 0).count(), 1);
    assert!(msgs[3].flags() & NLM_F_ACK != 0);

    // keys alone are small: one DESTROY message, with a DEL per key for old kernels
    let mut d = Batch::new();
    d.destroy_elements(&t, "m", &keys);
    assert_eq!(keys_per_message(&d).concat(), keys);
    assert_eq!(d.len(), 1);
    assert_eq!(d.cmds[0].fallback.len(), 1000);
    let old = d.for_old_kernels();
    assert_eq!(keys_per_message(&old), keys.iter().map(|k| vec![k.clone()]).collect::<Vec<_>>());
    assert!(old.cmds.iter().all(|c| c.missing_ok && c.msg.msg_type() & 0xff == MSG_DELSETELEM));
}

fn elem_count(ns: &TestNs) -> usize {
    let out = ns.run(&["nft", "-j", "list", "map", "inet", "cni_big", "m"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|o| o["map"]["elem"].as_array().map(|a| a.len()))
        .unwrap_or(0)
}

/// 5000 elements: a batch of about 800 KB, four times the default send
/// buffer, in 17 messages. All or nothing.
#[test]
fn a_big_batch_applies_whole_or_not_at_all() {
    let Some(ns) = TestNs::new("nft") else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let t = Table::new(Family::Inet, "cni_big");
    let mut b = port_map(&t);
    b.create_elements(&t, "m", &port_elems(5000, 0));
    nft.commit(&b).unwrap();
    assert_eq!(elem_count(&ns), 5000);

    // 5000 more, one of which is taken: refused, nothing of it applied
    let mut more = port_elems(5000, 5000);
    more.push(port_elems(1, 4999).remove(0));
    let e = nft.commit(Batch::new().create_elements(&t, "m", &more)).unwrap_err();
    assert!(e.err.is(libc::EEXIST), "{e}");
    assert_eq!(e.what, "adding element to set inet cni_big/m");
    assert_eq!(elem_count(&ns), 5000);

    let keys: Vec<Vec<u8>> = port_elems(5000, 0).into_iter().map(|e| e.key).collect();
    nft.commit(Batch::new().destroy_elements(&t, "m", &keys)).unwrap();
    assert_eq!(elem_count(&ns), 0);
}

/// Every refused command is answered; a thousand answers overflow the
/// receive buffer. The refusal still comes back, nothing hangs, and the
/// socket stays usable.
#[test]
fn a_thousand_refusals_neither_hang_nor_hide_the_error() {
    let Some(ns) = TestNs::new("nft") else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let t = Table::new(Family::Inet, "cni_big");
    nft.commit(&port_map(&t)).unwrap();
    let mut b = Batch::new();
    for e in port_elems(1000, 0) {
        b.delete_elements(&t, "m", &[e.key]);
    }
    assert_eq!(b.len(), 1000);
    let e = nft.commit(&b).unwrap_err();
    assert!(e.not_found(), "{e}");
    assert_eq!(e.what, "deleting element from set inet cni_big/m");
    nft.commit(Batch::new().add_elements(&t, "m", &port_elems(3, 0))).unwrap();
    assert_eq!(elem_count(&ns), 3);
}

/// On kernels before 6.3 (simulated: DESTROY made unknown), DESTROY of a
/// thousand keys becomes a DEL per key; the missing half is refused in
/// numbers that overflow the receive buffer, and still all go.
#[test]
fn destroying_a_thousand_elements_on_old_kernels() {
    let Some(ns) = TestNs::new("nft") else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let t = Table::new(Family::Inet, "cni_big");
    let mut b = port_map(&t);
    b.add_elements(&t, "m", &port_elems(500, 0));
    nft.commit(&b).unwrap();
    let keys: Vec<Vec<u8>> = port_elems(1000, 0).into_iter().map(|e| e.key).collect();
    let mut d = Batch::new();
    d.destroy_elements(&t, "m", &keys);
    for c in d.cmds.iter_mut() {
        let mut fake = nfgen(99, 0, Family::Inet as u8);
        fake.attr_str(TABLE_NAME, "unused");
        c.msg = fake;
    }
    nft.commit(&d).unwrap();
    assert_eq!(elem_count(&ns), 0);
}
