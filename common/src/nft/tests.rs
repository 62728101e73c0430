use std::net::IpAddr;

use super::expr::*;
use super::*;
use super::testns::TestNs;

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The payload (nfgenmsg + attributes) of command `i` of a batch.
fn payload(b: &Batch, i: usize) -> String {
    hex(&b.cmds[i].msg.clone().bytes(0)[16..])
}

fn v4(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn masq_batch(t: &Table) -> Batch {
    let mut b = Batch::new();
    b.add_table(t);
    b.add_set(t, &SetSpec::set("net_y", &[DataType::IPV4_ADDR]));
    b.add_chain(t, "postrouting", Some(BaseChain::nat(Hook::Postrouting, 100)));
    let exprs = [
        nfproto(false),
        addr_in_set(Addr::Src, false, "net_y", false),
        addr_in_prefix(Addr::Dst, v4("10.88.0.0"), 16, CmpOp::Neq),
        masquerade(0),
    ]
    .concat();
    b.add_rule(t, "postrouting", &Rule::new(exprs).comment("hi"));
    b.add_elements(t, "net_y", &[Elem::new(key::ip(v4("10.88.0.5"))).comment("abc123")]);
    b
}

// Golden payloads: `nft --debug=mnl -f` of the same state (nftables 1.0.6),
// decoded from its dump. The set message omits nft's own NFTA_SET_USERDATA.
#[test]
fn golden_bytes_match_nft() {
    let b = masq_batch(&Table::new(Family::Inet, "cni_x"));
    assert_eq!(payload(&b, 0), "010000000a000100636e695f780000000800020000000000");
    assert_eq!(
        payload(&b, 1),
        "010000000a000100636e695f780000000a0002006e65745f7900000008000300000000000800040000000007\
         080005000000000408000a0000000001"
    );
    assert_eq!(
        payload(&b, 2),
        "010000000a000100636e695f7800000010000300706f7374726f7574696e6700080007006e61740008000500\
         000000011400048008000100000000040800020000000064"
    );
    assert_eq!(
        payload(&b, 3),
        "010000000a000100636e695f7800000010000200706f7374726f7574696e67002c01048024000180090001\
         006d6574610000000014000280080002000000000f08000100000000012c00018008000100636d700020000280\
         080001000000000108000200000000000c0003800500010002000000340001800c0001007061796c6f6164002400\
         028008000100000000010800020000000001080003000000000c0800040000000004300001800b0001006c6f6f6b\
         757000002000028008000200000000010a0001006e65745f790000000800040000000001340001800c000100706179\
         6c6f6164002400028008000100000000010800020000000001080003000000001008000400000000022c0001800800\
         0100636d700020000280080001000000000108000200000000010c000380060001000a58000014000180090001006d\
         6173710000000004000280090007000003686900000000"
    );
    assert_eq!(
        payload(&b, 4),
        "010000000a000100636e695f780000000a0002006e65745f79000000080004000000000124000380200001800c00\
         0180080001000a5800050d000600000761626331323300000000"
    );
}

#[test]
fn batch_is_framed_with_begin_and_end() {
    let b = masq_batch(&Table::new(Family::Inet, "cni_x"));
    let msgs = b.messages(false);
    assert_eq!(msgs.len(), b.len() + 2);
    assert_eq!(msgs[0].msg_type(), 0x10);
    assert_eq!(msgs.last().unwrap().msg_type(), 0x11);
    assert_eq!(&msgs[0].clone().bytes(0)[16..], &[0, 0, 0, 10]);
    assert!(msgs[1..msgs.len() - 1].iter().all(|m| m.flags() & NLM_F_ACK != 0));
    assert_eq!(msgs[2].msg_type(), (10 << 8) | MSG_NEWSET);
}

#[test]
fn comment_udata_roundtrip() {
    assert_eq!(comment_udata("abc123"), b"\x00\x07abc123\x00");
    assert_eq!(parse_comment(b"\x00\x07abc123\x00").as_deref(), Some("abc123"));
    // another TLV first, then the comment
    assert_eq!(parse_comment(b"\x01\x01\x02\x00\x03hi\x00").as_deref(), Some("hi"));
    assert_eq!(parse_comment(b"\x00\x09short"), None);
    let long = "é".repeat(100);
    let u = comment_udata(&long);
    assert_eq!(u[1] as usize, u.len() - 2);
    assert_eq!(parse_comment(&u).unwrap().len(), COMMENT_MAX);
}

#[test]
fn prefixes_and_types_encode_like_nft() {
    // a /20 needs a mask; a /8 loads one byte
    let e = addr_in_prefix(Addr::Src, v4("10.88.3.4"), 20, CmpOp::Eq);
    assert_eq!(e[1], Expr::Bitwise { sreg: 1, dreg: 1, mask: vec![255, 255, 240, 0], xor: vec![0; 4] });
    assert_eq!(e[2], Expr::Cmp { sreg: 1, op: CmpOp::Eq, data: vec![10, 88, 0, 0] });
    let e = addr_in_prefix(Addr::Dst, v4("127.0.0.0"), 8, CmpOp::Eq);
    assert_eq!(e[0], Expr::Payload { base: Base::Network, offset: 16, len: 1, dreg: 1 });
    assert_eq!(DataType::concat(&[DataType::INET_PROTO, DataType::INET_SERVICE]), (0x30d, 8));
    assert_eq!(DataType::concat(&[DataType::IPV4_ADDR, DataType::INET_SERVICE]), (0x1cd, 8));
    assert_eq!(key::concat(&[&[6], &key::port(8080)]), vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0]);
}

#[test]
fn errors_name_the_command() {
    let e = NftError {
        what: "adding element to set inet cni_x/net_y".into(),
        err: NlError { errno: libc::EEXIST, ext: None },
    };
    assert_eq!(e.to_string(), "nf_tables: adding element to set inet cni_x/net_y: File exists");
}

// ---- root tests: each in its own netns, compared with `nft` as the oracle ----

/// Build `ours` with our encoder in one netns and `text` with `nft -f` in
/// another; their `nft list ruleset` must be identical. Returns our netns.
fn same_as_nft(ours: &Batch, text: &str) -> Option<TestNs> {
    let (a, b) = (TestNs::new("nft")?, TestNs::new("nft")?);
    Nft::in_netns(&a.netns()).unwrap().commit(ours).unwrap();
    b.run_stdin(&["nft", "-f", "-"], text);
    let (got, want) = (a.run(&["nft", "list", "ruleset"]), b.run(&["nft", "list", "ruleset"]));
    assert_eq!(got, want, "ours:\n{got}\nnft -f:\n{want}");
    assert!(!got.is_empty());
    Some(a)
}

#[test]
fn masquerade_state_matches_nft() {
    let t = Table::new(Family::Inet, "cni_x");
    let mut b = masq_batch(&t);
    b.add_elements(&t, "net_y", &[Elem::new(key::ip(v4("10.88.0.6"))).comment("def456")]);
    let text = r#"table inet cni_x {
        set net_y { type ipv4_addr; elements = { 10.88.0.5 comment "abc123", 10.88.0.6 comment "def456" } }
        chain postrouting { type nat hook postrouting priority 100; policy accept;
            ip saddr @net_y ip daddr != 10.88.0.0/16 masquerade comment "hi"
        }
    }"#;
    let Some(ns) = same_as_nft(&b, text) else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();

    let mut elems = nft.list_elements(&t, "net_y").unwrap();
    elems.sort_by(|a, b| a.key.cmp(&b.key));
    assert_eq!(elems[0], Elem::new(vec![10, 88, 0, 5]).comment("abc123"));
    assert_eq!(elems[1], Elem::new(vec![10, 88, 0, 6]).comment("def456"));
    let rules = nft.list_rules(&t, "postrouting").unwrap();
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].comment.as_deref(), Some("hi"));
    assert_eq!(nft.list_tables(None).unwrap(), vec![t.clone()]);
    let chains = nft.list_chains(&t).unwrap();
    assert_eq!(chains[0].name, "postrouting");
    assert_eq!(chains[0].hook, Some((Hook::Postrouting as u32, 100)));
    assert_eq!(nft.list_sets(&t).unwrap()[0].name, "net_y");

    // re-adding the same state succeeds; rules are appended again, not deduplicated
    nft.commit(&masq_batch(&t)).unwrap();
    assert_eq!(nft.list_rules(&t, "postrouting").unwrap().len(), 2);

    // destroy: existing and missing elements, no error
    let mut d = Batch::new();
    d.destroy_elements(&t, "net_y", &[key::ip(v4("10.88.0.5")), key::ip(v4("10.88.0.99"))]);
    nft.commit(&d).unwrap();
    assert_eq!(nft.list_elements(&t, "net_y").unwrap().len(), 1);
    // strict delete of a missing element names the command
    let mut d = Batch::new();
    d.delete_elements(&t, "net_y", &[key::ip(v4("10.88.0.99"))]);
    let e = nft.commit(&d).unwrap_err();
    assert!(e.not_found(), "{e}");
    assert!(e.to_string().starts_with("nf_tables: deleting element from set inet cni_x/net_y: "), "{e}");

    // delete a rule by handle, flush, delete the table, destroy it again
    let h = nft.list_rules(&t, "postrouting").unwrap()[0].handle;
    nft.commit(Batch::new().delete_rule(&t, "postrouting", h)).unwrap();
    assert_eq!(nft.list_rules(&t, "postrouting").unwrap().len(), 1);
    nft.commit(Batch::new().flush_chain(&t, "postrouting")).unwrap();
    assert!(nft.list_rules(&t, "postrouting").unwrap().is_empty());
    nft.commit(Batch::new().delete_table(&t)).unwrap();
    nft.commit(Batch::new().destroy_table(&t)).unwrap();
    assert!(nft.commit(Batch::new().delete_table(&t)).unwrap_err().not_found());
    assert!(!nft.table_exists(&t).unwrap());
    assert_eq!(ns.run(&["nft", "list", "ruleset"]), "");
}
