use std::net::IpAddr;

use super::expr::*;
use super::testns::TestNs;
use super::*;

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
// decoded from its dump.
#[test]
fn golden_bytes_match_nft() {
    let b = masq_batch(&Table::new(Family::Inet, "cni_x"));
    assert_eq!(payload(&b, 0), "010000000a000100636e695f780000000800020000000000");
    assert_eq!(
        payload(&b, 1),
        "010000000a000100636e695f780000000a0002006e65745f7900000008000300000000000800040000000007\
         080005000000000408000a00000000010a000d000004020000000000"
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
    let msgs = b.messages();
    assert_eq!(msgs.len(), b.len() + 2);
    assert_eq!(msgs[0].msg_type(), 0x10);
    assert_eq!(msgs.last().unwrap().msg_type(), 0x11);
    assert_eq!(&msgs[0].clone().bytes(0)[16..], &[0, 0, 0, 10]);
    // one ACK, for the last command: refusals are answered anyway
    let acked: Vec<bool> = msgs.iter().map(|m| m.flags() & NLM_F_ACK != 0).collect();
    assert_eq!(acked, [vec![false; b.len()], vec![true, false]].concat());
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
    assert_eq!(DataType::concat(&[DataType::INET_PROTO, DataType::INET_SERVICE]), (0x30d, 8, 0));
    assert_eq!(DataType::concat(&[DataType::IPV4_ADDR, DataType::INET_SERVICE]), (0x1cd, 8, 0));
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

#[test]
fn portmap_and_ipv6_state_matches_nft() {
    let t = Table::new(Family::Inet, "cni_pm");
    let (proto_port, v4a, v6a) = (DataType::INET_PROTO, DataType::IPV4_ADDR, DataType::IPV6_ADDR);
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&t, &SetSpec::set("net_y", &[v4a]))
        .add_set(&t, &SetSpec::set("net6_y", &[v6a]))
        .add_set(
            &t,
            &SetSpec::map("ports", &[proto_port, DataType::INET_SERVICE], &[v4a, DataType::INET_SERVICE]),
        )
        .add_set(
            &t,
            &SetSpec::map("ports6", &[proto_port, DataType::INET_SERVICE], &[v6a, DataType::INET_SERVICE]),
        )
        .add_chain(&t, "prerouting", Some(BaseChain::nat(Hook::Prerouting, -100)))
        .add_chain(&t, "output", Some(BaseChain::nat(Hook::Output, -100)))
        .add_chain(&t, "postrouting", Some(BaseChain::nat(Hook::Postrouting, 100)));
    for (chain, v6) in [("prerouting", false), ("prerouting", true), ("output", false)] {
        let map = if v6 { "ports6" } else { "ports" };
        b.add_rule(&t, chain, &Rule::new([fib_daddr_local(), dnat_via_map(map, v6)].concat()));
    }
    let hairpin = [
        ct_status(CT_STATUS_DST_NAT),
        nfproto(false),
        addr_in_set(Addr::Src, false, "net_y", false),
        addr_in_set(Addr::Dst, false, "net_y", false),
        masquerade(0),
    ];
    let net6: IpAddr = "fd00:10::".parse().unwrap();
    let masq6 = [
        nfproto(true),
        addr_in_set(Addr::Src, true, "net6_y", false),
        addr_in_prefix(Addr::Dst, net6, 64, CmpOp::Neq),
        masquerade(0),
    ];
    let nat20 = [
        nfproto(false),
        addr_in_prefix(Addr::Src, v4("10.88.0.0"), 20, CmpOp::Eq),
        addr_in_prefix(Addr::Dst, v4("10.88.0.0"), 20, CmpOp::Neq),
        counter(),
        masquerade(NAT_F_FULLY_RANDOM),
    ];
    let est = [
        ifname(false, "eth0", CmpOp::Eq),
        ct_state(CT_STATE_ESTABLISHED | CT_STATE_RELATED),
        verdict(Verdict::Accept),
    ];
    let local = [
        mark_set(0x2000),
        ifname(true, "lo", CmpOp::Neq),
        nfproto(false),
        addr_in_prefix(Addr::Dst, v4("127.0.0.0"), 8, CmpOp::Eq),
        nat_to(false, v4("10.1.1.1"), None),
    ];
    let to6 = [nfproto(true), l4proto(6), nat_to(true, "fd00::1".parse().unwrap(), Some(8080))];
    for (i, r) in [&hairpin[..], &masq6, &nat20, &est, &local].into_iter().enumerate() {
        b.add_rule(&t, "postrouting", &Rule::new(r.concat()).comment(format!("r{i}")));
    }
    b.add_rule(&t, "output", &Rule::new(to6.concat()).comment("r5"));
    let tcp8080 = key::concat(&[&[6], &key::port(8080)]);
    let udp53 = key::concat(&[&[17], &key::port(53)]);
    b.add_elements(
        &t,
        "ports",
        &[Elem::new(tcp8080.clone()).value(key::concat(&[&[10, 88, 0, 5], &key::port(80)])).comment("id")],
    );
    let fd5 = key::ip("fd00:10::5".parse().unwrap());
    b.add_elements(&t, "ports6", &[Elem::new(udp53.clone()).value(key::concat(&[&fd5, &key::port(5353)]))]);
    let text = r#"table inet cni_pm {
        set net_y { type ipv4_addr; }
        set net6_y { type ipv6_addr; }
        map ports { type inet_proto . inet_service : ipv4_addr . inet_service;
            elements = { tcp . 8080 comment "id" : 10.88.0.5 . 80 } }
        map ports6 { type inet_proto . inet_service : ipv6_addr . inet_service;
            elements = { udp . 53 : fd00:10::5 . 5353 } }
        chain prerouting { type nat hook prerouting priority -100; policy accept;
            fib daddr type local dnat ip to meta l4proto . th dport map @ports
            fib daddr type local dnat ip6 to meta l4proto . th dport map @ports6
        }
        chain output { type nat hook output priority -100; policy accept;
            fib daddr type local dnat ip to meta l4proto . th dport map @ports
            meta nfproto ipv6 meta l4proto tcp dnat ip6 to [fd00::1]:8080 comment "r5"
        }
        chain postrouting { type nat hook postrouting priority 100; policy accept;
            ct status dnat ip saddr @net_y ip daddr @net_y masquerade comment "r0"
            ip6 saddr @net6_y ip6 daddr != fd00:10::/64 masquerade comment "r1"
            ip saddr 10.88.0.0/20 ip daddr != 10.88.0.0/20 counter masquerade fully-random comment "r2"
            oifname "eth0" ct state established,related accept comment "r3"
            meta mark set 0x2000 iifname != "lo" ip daddr 127.0.0.0/8 snat ip to 10.1.1.1 comment "r4"
        }
    }"#;
    let Some(ns) = same_as_nft(&b, text) else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let el = nft.list_elements(&t, "ports").unwrap();
    assert_eq!(el, vec![Elem::new(tcp8080.clone()).value(vec![10, 88, 0, 5, 0, 80, 0, 0]).comment("id")]);
    let comments: Vec<_> =
        nft.list_rules(&t, "postrouting").unwrap().into_iter().map(|r| r.comment.unwrap()).collect();
    assert_eq!(comments, ["r0", "r1", "r2", "r3", "r4"]);

    // a port already mapped elsewhere is refused, naming the map
    let mut c = Batch::new();
    c.add_elements(
        &t,
        "ports",
        &[Elem::new(tcp8080.clone()).value(key::concat(&[&[10, 88, 0, 9], &key::port(80)]))],
    );
    let e = nft.commit(&c).unwrap_err();
    assert_eq!(e.to_string(), "nf_tables: adding element to set inet cni_pm/ports: File exists");
    // the failed batch changed nothing
    assert_eq!(nft.list_elements(&t, "ports").unwrap().len(), 1);

    let mut d = Batch::new();
    d.destroy_elements(&t, "ports", &[tcp8080, udp53.clone()]).destroy_elements(&t, "ports6", &[udp53]);
    nft.commit(&d).unwrap();
    assert!(nft.list_elements(&t, "ports").unwrap().is_empty());
    assert!(nft.list_elements(&t, "ports6").unwrap().is_empty());
    nft.commit(Batch::new().destroy_table(&t).destroy_table(&t)).unwrap();
    assert_eq!(ns.run(&["nft", "list", "ruleset"]), "");
}

#[test]
fn bridge_mac_spoof_check_matches_nft() {
    let t = Table::new(Family::Bridge, "cni_br");
    let mac = [0x02, 0x42, 0xac, 0x11, 0x00, 0x02];
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&t, &SetSpec::vmap("spoof", &[DataType::IFNAME]))
        .add_chain(&t, "prerouting", Some(BaseChain::filter(Hook::Prerouting, -300)))
        .add_chain(&t, "mac_veth0", None)
        .add_rule(&t, "prerouting", &Rule::new(iifname_vmap("spoof")))
        .add_rule(
            &t,
            "mac_veth0",
            &Rule::new([ether_saddr(mac, CmpOp::Neq), verdict(Verdict::Drop)].concat()),
        )
        .add_rule(&t, "mac_veth0", &Rule::new(verdict(Verdict::Return)).comment("ok"))
        .add_elements(
            &t,
            "spoof",
            &[Elem::new(key::ifname("veth0")).verdict(Verdict::Jump("mac_veth0".into())).comment("c1")],
        );
    let text = r#"table bridge cni_br {
        map spoof { type ifname : verdict; elements = { "veth0" comment "c1" : jump mac_veth0 } }
        chain prerouting { type filter hook prerouting priority -300; policy accept;
            iifname vmap @spoof
        }
        chain mac_veth0 {
            ether saddr != 02:42:ac:11:00:02 drop
            return comment "ok"
        }
    }"#;
    let Some(ns) = same_as_nft(&b, text) else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let el = nft.list_elements(&t, "spoof").unwrap();
    assert_eq!(el[0].data, Some(ElemData::Verdict(Verdict::Jump("mac_veth0".into()))));
    assert_eq!(el[0].comment.as_deref(), Some("c1"));

    // insert a rule before the first one by handle, and at the start
    let rules = nft.list_rules(&t, "mac_veth0").unwrap();
    let first = rules[0].handle;
    nft.commit(Batch::new().add_rule(
        &t,
        "mac_veth0",
        &Rule::new(counter()).comment("before").at(Position::Before(first)),
    ))
    .unwrap();
    nft.commit(Batch::new().add_rule(
        &t,
        "mac_veth0",
        &Rule::new(counter()).comment("start").at(Position::Start),
    ))
    .unwrap();
    nft.commit(Batch::new().add_rule(
        &t,
        "mac_veth0",
        &Rule::new(counter()).comment("after").at(Position::After(first)),
    ))
    .unwrap();
    let order: Vec<_> = nft.list_rules(&t, "mac_veth0").unwrap().into_iter().map(|r| r.comment).collect();
    let want = [Some("start"), Some("before"), None, Some("after"), Some("ok")];
    assert_eq!(order, want.map(|c| c.map(String::from)));

    // a chain still referenced by the map cannot go; after the element it can
    let e = nft.commit(Batch::new().delete_chain(&t, "mac_veth0")).unwrap_err();
    assert!(e.to_string().starts_with("nf_tables: deleting chain bridge cni_br/mac_veth0: "), "{e}");
    let mut d = Batch::new();
    d.destroy_elements(&t, "spoof", &[key::ifname("veth0")]).delete_chain(&t, "mac_veth0");
    nft.commit(&d).unwrap();
    assert_eq!(nft.list_chains(&t).unwrap().len(), 1);
    nft.commit(Batch::new().delete_table(&t)).unwrap();
    assert_eq!(ns.run(&["nft", "list", "ruleset"]), "");
}

/// Kernels before 6.3 refuse DESTROY* with EINVAL (unknown message type).
/// Simulate that with a message type no kernel knows: commit must fall back
/// to DEL and count "not found" as success, keeping the other commands.
#[test]
fn destroy_falls_back_to_delete_on_old_kernels() {
    let Some(ns) = TestNs::new("nft") else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let t = Table::new(Family::Inet, "cni_old");
    let gone = Table::new(Family::Inet, "cni_gone");
    let mut b = masq_batch(&t);
    b.destroy_table(&gone);
    b.destroy_elements(&t, "net_y", &[key::ip(v4("10.88.0.5")), key::ip(v4("10.88.0.7"))]);
    for c in b.cmds.iter_mut().filter(|c| !c.fallback.is_empty()) {
        let mut fake = nfgen(99, 0, Family::Inet as u8);
        fake.attr_str(TABLE_NAME, "unused");
        c.msg = fake;
    }
    nft.commit(&b).unwrap();
    assert!(nft.table_exists(&t).unwrap());
    assert!(nft.list_elements(&t, "net_y").unwrap().is_empty());
    assert_eq!(nft.list_rules(&t, "postrouting").unwrap().len(), 1);
    nft.commit(Batch::new().destroy_table(&t)).unwrap();
    assert!(nft.list_tables(None).unwrap().is_empty());
}

/// The portmap plugin's per-address maps, port sets, jump and localnet drop,
/// and `create_elements` refusing any existing key.
#[test]
fn hostip_maps_and_create_elements_match_nft() {
    let t = Table::new(Family::Inet, "cni_hp");
    let (proto, port) = (DataType::INET_PROTO, DataType::INET_SERVICE);
    let (a4, a6) = (DataType::IPV4_ADDR, DataType::IPV6_ADDR);
    let mut b = Batch::new();
    b.add_table(&t)
        .add_set(&t, &SetSpec::map("hostip4", &[a4, proto, port], &[a4, port]))
        .add_set(&t, &SetSpec::map("hostip6", &[a6, proto, port], &[a6, port]))
        .add_set(&t, &SetSpec::set("snat4", &[a4, port]))
        .add_set(&t, &SetSpec::set("snat6", &[a6, port]))
        .add_set(&t, &SetSpec::set("localnet", &[DataType::IFNAME]))
        .add_chain(&t, "hostports", None)
        .add_chain(&t, "pre", Some(BaseChain::nat(Hook::Prerouting, -100)))
        .add_chain(&t, "lo", Some(BaseChain::filter(Hook::Prerouting, -300)))
        .add_chain(&t, "post", Some(BaseChain::nat(Hook::Postrouting, 100)));
    for v6 in [false, true] {
        let map = if v6 { "hostip6" } else { "hostip4" };
        b.add_rule(&t, "hostports", &Rule::new([nfproto(v6), dnat_via_addr_map(map, v6)].concat()));
    }
    b.add_rule(
        &t,
        "pre",
        &Rule::new([fib_daddr_local(), verdict(Verdict::Jump("hostports".into()))].concat()),
    );
    let lo = [
        ifname(true, "lo", CmpOp::Neq),
        nfproto(false),
        addr_in_prefix(Addr::Dst, v4("127.0.0.0"), 8, CmpOp::Eq),
        verdict(Verdict::Drop),
    ];
    b.add_rule(&t, "lo", &Rule::new(lo.concat()));
    let net6: IpAddr = "fd00::".parse().unwrap();
    for (v6, net, plen, set) in [(false, v4("10.88.0.0"), 24, "snat4"), (true, net6, 64, "snat6")] {
        let r = [
            ct_status(CT_STATUS_DST_NAT),
            nfproto(v6),
            addr_in_prefix(Addr::Src, net, plen, CmpOp::Eq),
            addr_dport_in_set(Addr::Dst, v6, set, false),
            masquerade(0),
        ];
        b.add_rule(&t, "post", &Rule::new(r.concat()));
    }
    let k4 = key::concat(&[&[192, 168, 1, 5], &[6], &key::port(8080)]);
    let d4 = key::concat(&[&[10, 88, 0, 5], &key::port(80)]);
    let fd5 = key::ip("fd00::5".parse().unwrap());
    let k6 = key::concat(&[&key::ip("fd01::1".parse().unwrap()), &[17], &key::port(53)]);
    let d6 = key::concat(&[&fd5, &key::port(5353)]);
    b.create_elements(&t, "hostip4", &[Elem::new(k4.clone()).value(d4.clone()).comment("c1 eth0")]);
    b.create_elements(&t, "hostip6", &[Elem::new(k6.clone()).value(d6.clone())]);
    b.create_elements(&t, "snat4", &[Elem::new(d4.clone()).comment("c1 eth0")]);
    b.create_elements(&t, "snat6", &[Elem::new(d6.clone())]);
    b.add_elements(&t, "localnet", &[Elem::new(key::ifname("cni0"))]);
    let text = r#"table inet cni_hp {
        map hostip4 { type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service;
            elements = { 192.168.1.5 . tcp . 8080 comment "c1 eth0" : 10.88.0.5 . 80 } }
        map hostip6 { type ipv6_addr . inet_proto . inet_service : ipv6_addr . inet_service;
            elements = { fd01::1 . udp . 53 : fd00::5 . 5353 } }
        set snat4 { type ipv4_addr . inet_service; elements = { 10.88.0.5 . 80 comment "c1 eth0" } }
        set snat6 { type ipv6_addr . inet_service; elements = { fd00::5 . 5353 } }
        set localnet { type ifname; elements = { "cni0" } }
        chain hostports {
            dnat ip to ip daddr . meta l4proto . th dport map @hostip4
            dnat ip6 to ip6 daddr . meta l4proto . th dport map @hostip6
        }
        chain pre { type nat hook prerouting priority -100; policy accept;
            fib daddr type local jump hostports
        }
        chain lo { type filter hook prerouting priority -300; policy accept;
            iifname != "lo" ip daddr 127.0.0.0/8 drop
        }
        chain post { type nat hook postrouting priority 100; policy accept;
            ct status dnat ip saddr 10.88.0.0/24 ip daddr . th dport @snat4 masquerade
            ct status dnat ip6 saddr fd00::/64 ip6 daddr . th dport @snat6 masquerade
        }
    }"#;
    let Some(ns) = same_as_nft(&b, text) else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    assert_eq!(
        nft.list_elements(&t, "hostip4").unwrap(),
        vec![Elem::new(k4.clone()).value(d4.clone()).comment("c1 eth0")]
    );

    // create: even the identical element is refused; add: identical is fine
    let same = [Elem::new(k4.clone()).value(d4.clone()).comment("c1 eth0")];
    let e = nft.commit(Batch::new().create_elements(&t, "hostip4", &same)).unwrap_err();
    assert!(e.err.is(libc::EEXIST), "{e}");
    assert_eq!(e.to_string(), "nf_tables: adding element to set inet cni_hp/hostip4: File exists");
    nft.commit(Batch::new().add_elements(&t, "hostip4", &same)).unwrap();
    let other = [Elem::new(k4).value(key::concat(&[&[10, 88, 0, 6], &key::port(80)]))];
    assert!(nft.commit(Batch::new().add_elements(&t, "hostip4", &other)).unwrap_err().err.is(libc::EEXIST));
    nft.commit(Batch::new().destroy_table(&t)).unwrap();
}

#[test]
fn present_reports_what_exists() {
    let Some(ns) = TestNs::new("nft") else { return };
    let mut nft = Nft::in_netns(&ns.netns()).unwrap();
    let t = Table::new(Family::Inet, "cnirs_present");
    assert_eq!(nft.present(&t).unwrap(), Present::default());
    nft.commit(&masq_batch(&t)).unwrap();
    let p = nft.present(&t).unwrap();
    assert!(p.table && p.chain("postrouting") && p.set("net_y"));
    assert!(!p.chain("other") && !p.set("other"));
}
