//! Root tests of the nf_tables state that bridge (ipMasq, macspoofchk),
//! portmap and firewall keep per attachment: long network names (the spec
//! allows any length) and 64-hex container IDs through ADD, CHECK, GC and
//! DEL, in a "host" netns of the test's own. Each skips itself when not root.

use serde_json::{json, Value};
use test_harness::*;

/// A valid network name of `len` characters ending in `tail`; two of them
/// share everything but the tail, far beyond the 128 bytes nf_tables keeps
/// of a comment. (With a 64-hex container ID, 185 is what libcni's result
/// cache file name allows.)
fn long_name(len: usize, tail: &str) -> String {
    let mut s = String::from("k8s-pod-network-");
    while s.len() + tail.len() < len {
        s.push(char::from(b'a' + (s.len() % 26) as u8));
    }
    s + tail
}

fn list(name: &str, br: &str, n: u8, ipam_dir: &TempDir) -> NetConfList {
    conflist_value(&json!({
        "cniVersion": "1.1.0", "name": name,
        "plugins": [
            {"type": "bridge", "bridge": br, "isGateway": true, "ipMasq": true, "macspoofchk": true,
             "ipam": {"type": "host-local", "subnet": format!("10.78.{n}.0/24"), "dataDir": ipam_dir.path()}},
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "firewall"}
        ]
    }))
}

fn ports(host_port: u16) -> Value {
    json!({"portMappings": [{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]})
}

/// Objects of `kind` in one of our tables.
fn objects(host: &HostNs, kind: &str, table: &str) -> Vec<Value> {
    nft_objects(&nft_ruleset(host), kind).into_iter().filter(|o| o["table"] == table).collect()
}

fn names(objs: &[Value]) -> Vec<String> {
    let mut v: Vec<String> =
        objs.iter().map(|o| o["name"].as_str().unwrap_or_default().to_string()).collect();
    v.sort();
    v
}

/// Rule comments of a chain, in order.
fn rule_comments(host: &HostNs, table: &str, chain: &str) -> Vec<String> {
    objects(host, "rule", table)
        .iter()
        .filter(|r| r["chain"] == chain)
        .map(|r| r["comment"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// Element comments of a set or map (`nft -j` puts them on `{"elem": …}` values).
fn elem_comments(host: &HostNs, table: &str, set: &str) -> Vec<String> {
    let mut out = Vec::new();
    for s in objects(host, "set", table).into_iter().chain(objects(host, "map", table)) {
        if s["name"] != set {
            continue;
        }
        for e in s["elem"].as_array().into_iter().flatten() {
            let e = if e.is_array() { &e[0] } else { e };
            out.push(e["elem"]["comment"].as_str().unwrap_or_default().to_string());
        }
    }
    out
}

/// The masquerade and firewall address sets: one per network and family in use.
fn addr_sets(host: &HostNs, table: &str, prefix: &str) -> Vec<String> {
    names(&objects(host, "set", table)).into_iter().filter(|n| n.starts_with(prefix)).collect()
}

fn assert_distinct(v: &[String], what: &str, text: &str) {
    let mut d = v.to_vec();
    d.sort();
    d.dedup();
    assert_eq!(d.len(), v.len(), "{what}: duplicate comments {v:?}\n{text}");
}

#[test]
fn long_network_names_and_container_ids_add_check_gc_del_cleanly() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let ipam_dir = TempDir::new().unwrap();
    let (rt, cache) = runtime_in(&host);
    let (net_a, net_b) = (long_name(180, "-a"), long_name(180, "-b"));
    assert!(common::spec::valid_name(&net_a) && net_a[..170] == net_b[..170]);
    let a = list(&net_a, "cnlong0", 1, &ipam_dir);
    let b = list(&net_b, "cnlong1", 2, &ipam_dir);
    // 64-hex IDs that differ only at the end, as truncation would hide.
    let cid = |n: u8| format!("{}{n:02x}", "0123456789abcdef".repeat(4).get(..62).unwrap());
    let (c1, c2, c3) = (cid(1), cid(2), cid(3));
    let (n1, n2, n3) =
        (ContainerNs::new().unwrap(), ContainerNs::new().unwrap(), ContainerNs::new().unwrap());

    let r1 = rt.add(&a, &c1, n1.path(), "eth0", "", ports(18091)).unwrap();
    let r2 = rt.add(&a, &c2, n2.path(), "eth0", "", ports(18092)).unwrap();
    let r3 = rt.add(&b, &c3, n3.path(), "eth0", "", ports(18093)).unwrap();
    let ip = |r: &CniResult| r.ips[0].address.addr.to_string();
    let veth = |r: &CniResult| r.interfaces[1].name.clone();
    for (l, c, n, port) in [(&a, &c1, &n1, 18091), (&a, &c2, &n2, 18092), (&b, &c3, &n3, 18093)] {
        rt.check(l, c, n.path(), "eth0", "", ports(port))
            .unwrap_or_else(|e| panic!("CHECK {c}: {e:?}\n{}", nft_text(&host)));
    }

    // One masquerade rule per network, however many containers; one set of
    // rules per network in the firewall; one distinct tag per attachment.
    let text = nft_text(&host);
    assert_eq!(rule_comments(&host, "cnirs_bridge", "postrouting").len(), 2, "{text}");
    assert_eq!(addr_sets(&host, "cnirs_bridge", "m4_").len(), 2, "{text}");
    let fw_rules = rule_comments(&host, "cnirs_firewall", "forward");
    assert_eq!(fw_rules.len(), 1 + 2 * 3, "clear-mark, then in/dnat/out per network: {text}");
    assert_distinct(&fw_rules, "firewall rules", &text);
    assert_eq!(addr_sets(&host, "cnirs_firewall", "c4_").len(), 2, "{text}");
    let spoof = elem_comments(&host, "cnirs_bridge_mac", "ports");
    assert_eq!(spoof.len(), 3, "{text}");
    assert_distinct(&spoof, "spoof check", &text);
    let published = elem_comments(&host, "cnirs_portmap", "ports4");
    assert_eq!(published.len(), 3, "{text}");
    assert_distinct(&published, "published ports", &text);
    for comment in spoof.iter().chain(&published).chain(&fw_rules) {
        assert!(comment.len() <= 128, "{comment:?}");
    }
    // Names nft can read back: `nft list ruleset` output loads again.
    let out = host.spawn(&["nft", "-c", "-f", "-"], text.as_bytes()).unwrap();
    assert!(out.success(), "{}\n{text}", out.stderr);

    // GC of network a, c2 forgotten by the runtime (no cached result, so no
    // DEL): c2's state goes, c1's and the other network's stay.
    std::fs::remove_file(rt.cache_path(&net_a, &c2, "eth0")).unwrap();
    rt.gc(&a, &[(&c1, "eth0")]).unwrap_or_else(|e| panic!("GC: {e:?}\n{}", nft_text(&host)));
    let text = nft_text(&host);
    assert!(!text.contains(&format!("{} ", ip(&r2))) && !text.contains("18092"), "{text}");
    assert!(!text.contains(&veth(&r2)), "{text}");
    for s in [ip(&r1), ip(&r3), veth(&r1), veth(&r3), "18091".into(), "18093".into()] {
        assert!(text.contains(&s), "{s} is gone:\n{text}");
    }
    rt.check(&a, &c1, n1.path(), "eth0", "", ports(18091)).unwrap();
    rt.check(&b, &c3, n3.path(), "eth0", "", ports(18093)).unwrap();

    // DEL of the last container of a: the network's sets, rules, spoof-check
    // element and chain go; b keeps exactly its own.
    rt.del(&a, &c1, n1.path(), "eth0", "", ports(18091))
        .unwrap_or_else(|e| panic!("DEL: {e:?}\n{}", nft_text(&host)));
    rt.del(&a, &c2, n2.path(), "eth0", "", ports(18092)).unwrap();
    let text = nft_text(&host);
    assert_eq!(rule_comments(&host, "cnirs_bridge", "postrouting").len(), 1, "{text}");
    assert_eq!(addr_sets(&host, "cnirs_bridge", "m").len(), 1, "{text}");
    assert_eq!(rule_comments(&host, "cnirs_firewall", "forward").len(), 1 + 3, "{text}");
    assert_eq!(addr_sets(&host, "cnirs_firewall", "c").len(), 1, "{text}");
    assert_eq!(elem_comments(&host, "cnirs_bridge_mac", "ports").len(), 1, "{text}");
    let mac_chains = names(&objects(&host, "chain", "cnirs_bridge_mac"));
    assert_eq!(mac_chains, [format!("mac_{}", veth(&r3)), "prerouting".into()], "{text}");
    assert_eq!(elem_comments(&host, "cnirs_portmap", "ports4").len(), 1, "{text}");
    assert!(!text.contains(&ip(&r1)) && !text.contains("18091"), "{text}");
    rt.check(&b, &c3, n3.path(), "eth0", "", ports(18093)).unwrap();

    // The last DEL, without the netns, leaves nothing; a repeated DEL is fine.
    rt.del(&b, &c3, "", "eth0", "", ports(18093)).unwrap();
    rt.del(&b, &c3, "", "eth0", "", ports(18093)).unwrap();
    assert!(nft_is_empty(&host), "{}", nft_text(&host));
    drop(cache);
}

/// What the previous version left on a node (tags `<cid> <ifname>`,
/// `<net> <cid> <ifname>` and `<cid> <ifname> <net>`, raw long set names,
/// comments cut at 128 bytes, the duplicate masquerade rule a second ADD
/// made) is removed by this version's DEL and GC, network by network.
#[test]
fn state_of_the_previous_version_is_removed_by_del_and_gc() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let ipam_dir = TempDir::new().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let long = long_name(180, "-a");
    let cid = |n: u8| format!("{}{n:02x}", "fedcba9876543210".repeat(4).get(..62).unwrap());
    let (c1, c2, c3) = (cid(1), cid(2), cid(3));
    let cut = |s: String| s[..128].to_string();
    let old = format!(
        r#"
table inet cnirs_bridge {{
  set m4_{long} {{ type ipv4_addr; elements = {{ 10.78.1.2 comment "{c1} eth0", 10.78.1.4 comment "{c3} eth0" }} }}
  set m4_podman {{ type ipv4_addr; elements = {{ 10.88.0.2 comment "{c2} eth0" }} }}
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr @m4_{long} ip saddr 10.78.1.0/24 masquerade comment "{masq_cut}"
    ip saddr @m4_{long} ip saddr 10.78.1.0/24 masquerade comment "{masq_cut}"
    ip saddr @m4_podman ip saddr 10.88.0.0/16 masquerade comment "podman 10.88.0.0/16"
  }}
}}
table bridge cnirs_bridge_mac {{
  map ports {{ type ifname : verdict; }}
  chain prerouting {{ type filter hook prerouting priority -300; policy accept; iifname vmap @ports; }}
  chain mac_vethold1 {{ ether saddr != 02:00:00:00:00:01 drop; }}
  chain mac_vethold2 {{ ether saddr != 02:00:00:00:00:02 drop; }}
}}
add element bridge cnirs_bridge_mac ports {{ "vethold1" comment "{spoof_cut}" : jump mac_vethold1, "vethold2" comment "podman {c2} eth0" : jump mac_vethold2 }}
table inet cnirs_portmap {{
  map ports4 {{ type inet_proto . inet_service : ipv4_addr . inet_service;
    elements = {{ tcp . 18091 comment "{pm_cut}" : 10.78.1.2 . 80, tcp . 18092 comment "{c2} eth0 podman" : 10.88.0.2 . 80 }} }}
}}
table inet cnirs_firewall {{
  set c4_{long} {{ type ipv4_addr; elements = {{ 10.78.1.2 comment "{c1} eth0", 10.78.1.4 comment "{c3} eth0" }} }}
  set c4_podman {{ type ipv4_addr; elements = {{ 10.88.0.2 comment "{c2} eth0" }} }}
  chain forward {{ type filter hook forward priority filter - 10; policy accept;
    meta mark set meta mark & 0xfeffffff comment "clear-mark"
    ip daddr @c4_{long} ct state established,related accept comment "{fw_in_cut}"
    ip saddr @c4_{long} accept comment "{fw_out_cut}"
    ip daddr @c4_podman ct state established,related accept comment "podman in4"
    ip saddr @c4_podman accept comment "podman out4"
  }}
}}
"#,
        masq_cut = cut(format!("{long} 10.78.1.0/24")),
        spoof_cut = cut(format!("{long} {c1} eth0")),
        pm_cut = cut(format!("{c1} eth0 {long}")),
        fw_in_cut = cut(format!("{long} in4")),
        fw_out_cut = cut(format!("{long} out4")),
    );
    let out = host.spawn(&["nft", "-f", "-"], old.as_bytes()).unwrap();
    assert!(out.success(), "{}", out.stderr);
    let l = list(&long, "cnold0", 1, &ipam_dir);
    let p = list("podman", "cnold1", 88, &ipam_dir);

    // DEL of c1 (its netns long gone): its elements go, the spoof check whose
    // cut tag names no attachment goes with its port; c3 keeps the network's rules.
    rt.del(&l, &c1, "", "eth0", "", ports(18091)).unwrap_or_else(|e| panic!("{e:?}\n{}", nft_text(&host)));
    let text = nft_text(&host);
    assert!(!text.contains("10.78.1.2") && !text.contains("18091") && !text.contains("vethold1"), "{text}");
    assert!(text.contains("10.78.1.4") && text.contains(&cut(format!("{long} in4"))), "{text}");

    // GC of the long network, nothing valid: its sets and every rule of it
    // (the duplicate too) go; the other network's state stays whole.
    rt.gc(&l, &[]).unwrap_or_else(|e| panic!("{e:?}\n{}", nft_text(&host)));
    let text = nft_text(&host);
    assert!(!text.contains(&long[..40]), "{text}");
    assert_eq!(rule_comments(&host, "cnirs_bridge", "postrouting"), ["podman 10.88.0.0/16"], "{text}");
    assert_eq!(addr_sets(&host, "cnirs_firewall", "c4_"), ["c4_podman"], "{text}");
    for s in ["vethold2", "18092", "podman in4"] {
        assert!(text.contains(s), "{s} is gone:\n{text}");
    }

    // DEL of the short network's container: nothing is left.
    rt.del(&p, &c2, "", "eth0", "", ports(18092)).unwrap_or_else(|e| panic!("{e:?}\n{}", nft_text(&host)));
    let tables = names(&nft_objects(&nft_ruleset(&host), "table"));
    assert!(tables.is_empty(), "{tables:?}\n{}", nft_text(&host));
}
