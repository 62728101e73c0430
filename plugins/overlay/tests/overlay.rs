//! Root tests of the overlay with three simulated nodes: three "node"
//! namespaces on an underlay (one L2 bridge, or a router with no shared L2),
//! a three-member etcd cluster (one member per node, started inside its
//! node's netns), plugins exec'd by the harness' libcni-like runtime with
//! each node's netns as their own. Every assertion reads kernel state, etcd
//! or real packets. `cargo build --workspace --bins` first; each test skips
//! itself when not root or when etcd is not installed (scripts/deps).

#![allow(clippy::result_large_err)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::nodes::etcdctl;
use test_harness::*;

const NET: &str = "ovtest";
const VNI: u32 = 4242;
const SUBNET: &str = "10.90.0.0/16";
/// Short, so node death is seen quickly.
const TTL: u32 = 3;

macro_rules! require_env {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        if std::process::Command::new("etcd").arg("--version").output().is_err() {
            eprintln!("skipped: etcd is not installed (scripts/deps installs etcd-server)");
            return;
        }
    };
}

/// One test's world: the nodes, etcd, and a runtime per node.
struct Lab {
    cluster: Cluster,
    rts: Vec<Runtime>,
}

impl Lab {
    fn new(routed: bool) -> Lab {
        let mut cluster = if routed { Cluster::routed(3) } else { Cluster::bridged(3) }.expect("nodes");
        cluster.start_etcd().expect("etcd cluster");
        let rts = cluster.nodes.iter().map(|n| n.runtime(vec![target_bin_dir()])).collect();
        Lab { cluster, rts }
    }

    fn overlay(&self, net: &str, vni: u32, subnet: &str) -> Value {
        json!({"type": "overlay", "vni": vni, "subnet": subnet, "leaseTTL": TTL,
            "etcd": {"endpoints": self.cluster.endpoints(), "timeoutMs": 1500}, "capabilities": {"aliases": true},
            "_net": net})
    }

    /// The conflist: overlay, portmap, dnsname.
    fn list(&self) -> NetConfList {
        self.list_for(NET, VNI, SUBNET)
    }

    fn list_for(&self, net: &str, vni: u32, subnet: &str) -> NetConfList {
        let mut ov = self.overlay(net, vni, subnet);
        ov.as_object_mut().unwrap().remove("_net");
        conflist_value(&json!({"cniVersion": "1.0.0", "name": net, "plugins": [ov,
            {"type": "portmap", "capabilities": {"portMappings": true}},
            {"type": "dns-sidecar", "domainName": "app.overlay", "capabilities": {"aliases": true}}]}))
    }

    fn add(&self, node: usize, list: &NetConfList, cid: &str, ctr: &ContainerNs, name: &str) -> CniResult {
        self.rts[node]
            .add(list, cid, ctr.path(), "eth0", &format!("IgnoreUnknown=1;K8S_POD_NAME={name}"), json!({}))
            .unwrap_or_else(|e| panic!("ADD {cid} on node{node}: {e}"))
    }

    fn del(&self, node: usize, list: &NetConfList, cid: &str, ctr: &str) {
        self.rts[node]
            .del(list, cid, ctr, "eth0", "", json!({}))
            .unwrap_or_else(|e| panic!("DEL {cid}: {e}"));
    }

    fn etcd_keys(&self, from: usize, prefix: &str) -> Vec<String> {
        let out = etcdctl(
            &self.cluster.nodes[from],
            &self.cluster.endpoints(),
            &["get", "--prefix", "--keys-only", prefix],
        )
        .expect("etcdctl");
        out.lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    }
}

fn ip_of(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

/// `bridge -j fdb show dev <dev>` in a netns.
fn fdb_json(ns: &TestNs, dev: &str) -> Vec<Value> {
    let out = std::process::Command::new("bridge")
        .args(["-n", ns.name(), "-j", "fdb", "show", "dev", dev])
        .output();
    out.ok()
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
        .and_then(|v| v.as_array().cloned())
        .unwrap_or_default()
}

/// The remote MACs programmed on a node's VXLAN device: (mac, dst).
fn vxlan_fdb(node: &Node, dev: &str) -> BTreeSet<(String, String)> {
    fdb_json(&node.ns, dev)
        .iter()
        .filter_map(|e| Some((e["mac"].as_str()?.to_string(), e.get("dst")?.as_str()?.to_string())))
        .collect()
}

/// The static bridge entries pointing at a node's VXLAN port.
fn bridge_statics(node: &Node, dev: &str) -> BTreeSet<String> {
    fdb_json(&node.ns, dev)
        .iter()
        .filter(|e| e["state"] == "static" && e.get("master").is_some())
        .filter_map(|e| Some(e["mac"].as_str()?.to_string()))
        .collect()
}

fn tcp_echo_server(ns: &TestNs, port: u16) -> std::thread::JoinHandle<()> {
    let l = ns.run(move || TcpListener::bind(("0.0.0.0", port))).unwrap().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let mut buf = vec![0u8; 65536];
            let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 || s.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    })
}

/// Send `payload` to an echo server and read it back, writing and reading
/// at once (a large payload would otherwise fill both socket buffers).
fn tcp_roundtrip(from: &TestNs, to: SocketAddr, payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let payload = payload.to_vec();
    from.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.set_write_timeout(Some(Duration::from_secs(10)))?;
        let mut w = s.try_clone()?;
        std::thread::scope(|sc| {
            let writer = sc.spawn(|| w.write_all(&payload));
            let mut got = vec![0u8; payload.len()];
            let read = s.read_exact(&mut got);
            writer.join().unwrap()?;
            read.map(|_| got)
        })
    })
    .unwrap()
}

// ----- tests ---------------------------------------------------------------------

#[test]
fn containers_on_different_nodes_talk_and_del_leaves_nothing() {
    require_env!();
    let lab = Lab::new(false);
    let list = lab.list();
    let (c0, c1) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let r0 = lab.add(0, &list, "ctr0", &c0, "web");
    let r1 = lab.add(1, &list, "ctr1", &c1, "db");
    let (ip0, ip1) = (ip_of(&r0), ip_of(&r1));
    assert_ne!(ip0, ip1);

    // Kernel state on node0: the bridge with the gateway, the VXLAN device
    // as the issue specifies, node1's container programmed statically.
    let n0 = &lab.cluster.nodes[0];
    let vx = link(&n0.ns, "vxlan4242").expect("vxlan device");
    let info = &vx["linkinfo"]["info_data"];
    assert_eq!(info["id"], VNI);
    assert_eq!(info["port"], 4789);
    assert_eq!(info["learning"], false);
    assert_eq!(info["proxy"], true);
    assert_eq!(info["local"], "192.0.2.1");
    assert_eq!(vx["mtu"], 1450, "underlay 1500 - 50");
    assert_eq!(vx["master"], "ovbr4242");
    assert!(addrs(&n0.ns, "ovbr4242").contains(&"10.90.0.1/16".to_string()));
    let mac1 = r1.interfaces[2].mac.clone();
    let programmed = wait_until(Duration::from_secs(5), || {
        vxlan_fdb(n0, "vxlan4242").contains(&(mac1.clone(), "192.0.2.2".into()))
    });
    assert!(
        programmed,
        "{mac1} -> 192.0.2.2 missing: {:?} {} agent log: {}",
        vxlan_fdb(n0, "vxlan4242"),
        n0.ns.ip(&["-d", "neigh", "show"]).unwrap_or_default(),
        std::fs::read_to_string(n0.dir.join("overlay").join(NET).join("agent.log")).unwrap_or_default()
    );

    assert!(bridge_statics(n0, "vxlan4242").contains(&mac1), "no flooding: a static bridge entry");

    // Traffic both ways, ICMP and TCP.
    assert!(ping(&c0, &ip1), "node0 -> node1");
    assert!(ping(&c1, &ip0), "node1 -> node0");
    let srv = tcp_echo_server(&c1, 7000);
    let got = tcp_roundtrip(&c0, format!("{ip1}:7000").parse().unwrap(), b"hello over vxlan").unwrap();
    assert_eq!(got, b"hello over vxlan");
    srv.join().unwrap();

    // The claims in etcd, one key per address.
    let keys = lab.etcd_keys(2, "/cni-rs/overlay/net/ovtest/ips/");
    assert_eq!(keys.len(), 2, "{keys:?}");

    lab.del(0, &list, "ctr0", &c0.path_str());
    lab.del(1, &list, "ctr1", &c1.path_str());
    for n in &lab.cluster.nodes[..2] {
        assert!(!link_exists(&n.ns, "vxlan4242") && !link_exists(&n.ns, "ovbr4242"), "{}", n.name);
        assert!(n.daemon_pids().is_empty(), "{}: daemons left", n.name);
        assert!(!n.dir.join("overlay").join(NET).exists(), "{}: state left", n.name);
        let tables = nft_text(&n.ns);
        assert!(!tables.contains("cnirs_overlay"), "{tables}");
    }
    assert!(lab.etcd_keys(2, "/cni-rs/overlay/net/ovtest/ips/").is_empty());
    assert!(lab.etcd_keys(2, "/cni-rs/overlay/net/ovtest/nodes/").is_empty());
}

/// Ask the DNS server at `server` (UDP 53) for `name`'s A record from
/// inside `from`, optionally from a given source address. Returns the
/// rcode and the address of the answer (one A record).
fn dns_a(
    from: &TestNs,
    server: &str,
    name: &str,
    src: Option<&str>,
) -> Option<(u8, Option<std::net::Ipv4Addr>)> {
    let q = test_harness::dnsload::build_query(name, 1)?;
    let server: SocketAddr = format!("{server}:53").parse().unwrap();
    let bind: SocketAddr = format!("{}:0", src.unwrap_or("0.0.0.0")).parse().unwrap();
    from.run(move || {
        let s = std::net::UdpSocket::bind(bind).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.send_to(&q, server).ok()?;
        let mut buf = [0u8; 512];
        let n = s.recv(&mut buf).ok()?;
        let (_, rcode, answers) = test_harness::dnsload::reply_facts(&buf[..n])?;
        let ip = (answers > 0 && n >= 4)
            .then(|| std::net::Ipv4Addr::new(buf[n - 4], buf[n - 3], buf[n - 2], buf[n - 1]));
        Some((rcode, ip))
    })
    .ok()
    .flatten()
}

#[test]
fn names_resolve_across_nodes_and_tcp_goes_by_name() {
    require_env!();
    let lab = Lab::new(false);
    let list = lab.list();
    let ctrs: Vec<ContainerNs> = (0..3).map(|_| ContainerNs::with_lo().unwrap()).collect();
    let web = lab.add(0, &list, "ctr-web", &ctrs[0], "web");
    let db = lab.add(1, &list, "ctr-db", &ctrs[1], "db");
    assert_eq!(web.dns.nameservers, vec!["10.90.0.1"], "the DNS server is the node-local gateway");
    let db_ip: std::net::Ipv4Addr = ip_of(&db).parse().unwrap();

    // db (node1) from web (node0), by its full and its bare name.
    let seen = wait_until(Duration::from_secs(5), || {
        dns_a(&ctrs[0], "10.90.0.1", "db.app.overlay", None) == Some((0, Some(db_ip)))
    });
    assert!(seen, "db.app.overlay from node0: {:?}", dns_a(&ctrs[0], "10.90.0.1", "db.app.overlay", None));
    assert_eq!(dns_a(&ctrs[0], "10.90.0.1", "db", None), Some((0, Some(db_ip))));
    let srv = tcp_echo_server(&ctrs[1], 5432);
    let (_, addr) = dns_a(&ctrs[0], "10.90.0.1", "db.app.overlay", None).unwrap();
    let got = tcp_roundtrip(&ctrs[0], SocketAddr::new(addr.unwrap().into(), 5432), b"SELECT 1").unwrap();
    assert_eq!(got, b"SELECT 1");
    srv.join().unwrap();
    assert!(ping(&ctrs[1], &dns_a(&ctrs[1], "10.90.0.1", "web", None).unwrap().1.unwrap().to_string()));

    // A new container on node2: its name is live on node2 when ADD returns,
    // and on node0 within the watch latency.
    let cache = lab.add(2, &list, "ctr-cache", &ctrs[2], "cache");
    let cache_ip: std::net::Ipv4Addr = ip_of(&cache).parse().unwrap();
    assert_eq!(dns_a(&ctrs[2], "10.90.0.1", "cache.app.overlay", None), Some((0, Some(cache_ip))));
    assert!(wait_until(Duration::from_secs(5), || dns_a(&ctrs[0], "10.90.0.1", "cache", None)
        == Some((0, Some(cache_ip)))));

    // Never an open resolver: a client outside the network is refused.
    let n0 = &lab.cluster.nodes[0];
    assert_eq!(
        dns_a(&n0.ns, "10.90.0.1", "db.app.overlay", Some("192.0.2.1")).map(|r| r.0),
        Some(5),
        "REFUSED"
    );

    // A container that leaves is gone from the other nodes' DNS too.
    lab.del(1, &list, "ctr-db", &ctrs[1].path_str());
    assert!(wait_until(Duration::from_secs(5), || dns_a(&ctrs[0], "10.90.0.1", "db.app.overlay", None)
        .is_some_and(|r| r.0 == 3)));
    lab.del(0, &list, "ctr-web", &ctrs[0].path_str());
    lab.del(2, &list, "ctr-cache", &ctrs[2].path_str());
    for n in &lab.cluster.nodes {
        assert!(n.daemon_pids().is_empty(), "{}: daemons left", n.name);
        assert!(!n.dir.join("dns").join(format!("{NET}.remote.json")).exists(), "{}: DNS feed left", n.name);
    }
}

#[test]
fn concurrent_adds_over_three_nodes_never_share_an_address() {
    require_env!();
    let lab = Lab::new(false);
    // 40 addresses for 32 containers: concurrent claims collide and retry.
    let mut ov = lab.overlay(NET, VNI, SUBNET);
    ov["rangeStart"] = json!("10.90.0.10");
    ov["rangeEnd"] = json!("10.90.0.49");
    // What is tested is uniqueness, not latency: 32 plugins at once on a slow
    // machine (Debian's 6.1 under emulation) outlast the lab's short timeout.
    ov["etcd"]["timeoutMs"] = json!(10_000);
    ov.as_object_mut().unwrap().remove("_net");
    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": NET, "plugins": [ov]}));
    let ctrs: Vec<ContainerNs> = (0..32).map(|_| ContainerNs::with_lo().unwrap()).collect();
    let ips: Vec<(usize, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (rt, list) = (&lab.rts[i % 3], &list);
                s.spawn(move || {
                    let r = rt.add(list, &format!("par{i}"), c.path(), "eth0", "", json!({}));
                    (i, ip_of(&r.unwrap_or_else(|e| panic!("ADD par{i}: {e}"))))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let distinct: BTreeSet<&String> = ips.iter().map(|(_, ip)| ip).collect();
    assert_eq!(distinct.len(), 32, "an address was handed out twice: {ips:?}");
    for (_, ip) in &ips {
        let last: u8 = ip.rsplit('.').next().unwrap().parse().unwrap();
        assert!(ip.starts_with("10.90.0.") && (10..=49).contains(&last), "{ip} outside the range");
    }
    assert_eq!(lab.etcd_keys(0, "/cni-rs/overlay/net/ovtest/ips/").len(), 32);
    // Each container reaches one on each other node.
    for (i, _) in ips.iter().take(3) {
        let peer = &ips[(i + 1) % 3].1;
        // Across nodes: within the watch latency of the peer's node.
        assert!(wait_until(Duration::from_secs(10), || ping(&ctrs[*i], peer)), "par{i} -> {peer}");
    }
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let (rt, list) = (&lab.rts[i % 3], &list);
            s.spawn(move || rt.del(list, &format!("par{i}"), c.path(), "eth0", "", json!({})).unwrap());
        }
    });
    assert!(lab.etcd_keys(0, "/cni-rs/overlay/net/ovtest/ips/").is_empty());
}

#[test]
fn a_published_port_on_node_b_reaches_its_container_from_node_a() {
    require_env!();
    let lab = Lab::new(false);
    let list = lab.list();
    let c1 = ContainerNs::with_lo().unwrap();
    let maps = json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]);
    lab.rts[1]
        .add(&list, "pub1", c1.path(), "eth0", "IgnoreUnknown=1", json!({"portMappings": maps}))
        .unwrap();
    let srv = tcp_echo_server(&c1, 80);
    // From node A's own address space, to node B's underlay address.
    let got = tcp_roundtrip(&lab.cluster.nodes[0].ns, "192.0.2.2:8080".parse().unwrap(), b"GET / HTTP/1.0")
        .unwrap();
    assert_eq!(got, b"GET / HTTP/1.0");
    srv.join().unwrap();
    lab.rts[1]
        .del(&list, "pub1", c1.path(), "eth0", "IgnoreUnknown=1", json!({"portMappings": maps}))
        .unwrap();
}

/// The subnet-list with a range of exactly `n` addresses from .2 on.
fn small_range_list(lab: &Lab, n: u8, version: &str) -> NetConfList {
    let mut ov = lab.overlay(NET, VNI, SUBNET);
    ov["rangeStart"] = json!("10.90.0.2");
    ov["rangeEnd"] = json!(format!("10.90.0.{}", 1 + n));
    ov.as_object_mut().unwrap().remove("_net");
    conflist_value(&json!({"cniVersion": version, "name": NET, "plugins": [ov]}))
}

#[test]
fn a_dead_node_leaves_every_view_within_the_ttl_and_gc_reclaims_its_addresses() {
    require_env!();
    let mut lab = Lab::new(false);
    let list = small_range_list(&lab, 3, "1.1.0");
    let ctrs: Vec<ContainerNs> = (0..3).map(|_| ContainerNs::with_lo().unwrap()).collect();
    let res: Vec<CniResult> =
        (0..3).map(|i| lab.add(i, &list, &format!("k{i}"), &ctrs[i], &format!("k{i}"))).collect();
    let mac2 = res[2].interfaces[2].mac.clone();
    let ip2 = ip_of(&res[2]);
    for n in &lab.cluster.nodes[..2] {
        assert!(wait_until(Duration::from_secs(5), || vxlan_fdb(n, "vxlan4242")
            .iter()
            .any(|(m, _)| *m == mac2)));
    }
    // The range is full.
    let extra = ContainerNs::with_lo().unwrap();
    let e = lab.rts[0].add(&list, "extra", extra.path(), "eth0", "", json!({})).unwrap_err();
    assert!(e.message.contains("no free address"), "{e}");

    // node2 dies: its agent, its etcd member, its netns.
    let dead = lab.cluster.kill_node(2);
    lab.rts.remove(2);
    drop(dead);
    let t0 = std::time::Instant::now();
    for n in &lab.cluster.nodes {
        let gone = wait_until(Duration::from_secs(TTL as u64 + 10), || {
            !vxlan_fdb(n, "vxlan4242").iter().any(|(m, _)| *m == mac2)
                && !bridge_statics(n, "vxlan4242").contains(&mac2)
        });
        assert!(gone, "{} still forwards to the dead node", n.name);
    }
    eprintln!("dead node dropped everywhere after {:?} (TTL {TTL}s)", t0.elapsed());
    assert!(ping(&ctrs[0], &ip_of(&res[1])), "the living still talk");
    // Its address stays claimed (its containers might still run behind a
    // partition) until GC releases it: an operator's GC on its behalf.
    assert!(lab
        .etcd_keys(0, "/cni-rs/overlay/net/ovtest/ips/")
        .contains(&format!("/cni-rs/overlay/net/ovtest/ips/{ip2}")));
    let cache = TempDir::new().unwrap();
    let mut op = Runtime::new(
        vec![target_bin_dir()],
        Some(lab.cluster.nodes[0].ns.path().to_path_buf()),
        cache.path(),
    );
    op.env = lab.cluster.nodes[0].env();
    let mut on_behalf = list.clone();
    on_behalf.plugins[0]["node"] = json!("192.0.2.3");
    op.gc(&on_behalf, &[]).unwrap_or_else(|e| panic!("GC: {e:?}"));
    assert!(ping(&ctrs[0], &ip_of(&res[1])), "GC on behalf of node2 leaves node0's containers alone");
    let r =
        lab.rts[0].add(&list, "extra", extra.path(), "eth0", "", json!({})).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(ip_of(&r), ip2, "the dead node's address is claimable again");
}

#[test]
fn etcd_quorum_lost_add_fails_clearly_traffic_flows_del_succeeds_nothing_leaks() {
    require_env!();
    let mut lab = Lab::new(false);
    let list = lab.list();
    let ctrs: Vec<ContainerNs> = (0..3).map(|_| ContainerNs::with_lo().unwrap()).collect();
    let r0 = lab.add(0, &list, "q0", &ctrs[0], "q0");
    let r1 = lab.add(1, &list, "q1", &ctrs[1], "q1");
    // q1 reaches node0's kernel through node0's etcd watch: within the watch
    // latency, not when node1's ADD returns.
    assert!(wait_until(Duration::from_secs(10), || ping(&ctrs[0], &ip_of(&r1))));

    // Two of three members down: no quorum.
    lab.cluster.nodes[1].kill_etcd();
    lab.cluster.nodes[2].kill_etcd();
    let e = lab.rts[0].add(&list, "q2", ctrs[2].path(), "eth0", "IgnoreUnknown=1", json!({})).unwrap_err();
    assert_eq!(e.code(), Some(11), "{e}");
    assert!(e.message.contains("etcd is unavailable"), "{e}");
    assert!(!link_exists(&ctrs[2], "eth0"), "a failed ADD leaves nothing");
    let atts =
        std::fs::read_to_string(lab.cluster.nodes[0].dir.join("overlay").join(NET).join("attachments.json"))
            .unwrap();
    assert!(!atts.contains("q2"), "{atts}");

    // Running containers keep talking, longer than a lease lives.
    std::thread::sleep(Duration::from_secs(TTL as u64 + 1));
    assert!(ping(&ctrs[0], &ip_of(&r1)) && ping(&ctrs[1], &ip_of(&r0)), "traffic while etcd is down");
    let srv = tcp_echo_server(&ctrs[1], 9000);
    assert_eq!(
        tcp_roundtrip(&ctrs[0], format!("{}:9000", ip_of(&r1)).parse().unwrap(), b"still here").unwrap(),
        b"still here"
    );
    srv.join().unwrap();

    // DEL succeeds; its release waits for etcd.
    lab.del(1, &list, "q1", &ctrs[1].path_str());
    assert!(!link_exists(&ctrs[1], "eth0"));

    // etcd back: the pending release goes through, node1's agent leaves,
    // and nothing of q1 is left anywhere.
    lab.cluster.start_member(1).unwrap();
    lab.cluster.start_member(2).unwrap();
    lab.cluster.wait_healthy(&[0, 1, 2], Duration::from_secs(30)).unwrap();
    let ip1 = ip_of(&r1);
    let released = wait_until(Duration::from_secs(15), || {
        !lab.etcd_keys(0, "/cni-rs/overlay/net/ovtest/ips/").iter().any(|k| k.ends_with(&format!("/{ip1}")))
    });
    assert!(released, "q1's address leaked: {:?}", lab.etcd_keys(0, "/cni-rs/overlay/net/ovtest/ips/"));
    let n1 = &lab.cluster.nodes[1];
    assert!(
        wait_until(Duration::from_secs(10), || n1.daemon_pids().is_empty()),
        "node1's agent did not leave"
    );
    assert!(wait_until(Duration::from_secs(10), || !n1.dir.join("overlay").join(NET).exists()));
    let only_node0 = || {
        lab.etcd_keys(0, "/cni-rs/overlay/net/ovtest/nodes/")
            == ["/cni-rs/overlay/net/ovtest/nodes/192.0.2.1"]
    };
    assert!(wait_until(Duration::from_secs(TTL as u64 + 5), only_node0), "node1 left the cluster");
    // ADD works again.
    let r2 = lab.add(0, &list, "q2", &ctrs[2], "q2");
    assert!(ping(&ctrs[2], &ip_of(&r0)));
    lab.del(0, &list, "q2", &ctrs[2].path_str());
    lab.del(0, &list, "q0", &ctrs[0].path_str());
    let _ = r2;
    assert!(lab
        .etcd_keys(0, "/cni-rs/overlay/net/ovtest/")
        .iter()
        .all(|k| !k.contains("/ips/") && !k.contains("/nodes/")));
}

/// `Ip: FragCreates` and `Ip: ReasmReqds` of a netns (/proc/net/snmp).
fn frag_counters(ns: &TestNs) -> (u64, u64) {
    let snmp = ns.run(|| std::fs::read_to_string("/proc/net/snmp")).unwrap().unwrap();
    let mut lines = snmp.lines().filter(|l| l.starts_with("Ip:"));
    let (names, values) = (lines.next().unwrap(), lines.next().unwrap());
    let get = |k: &str| {
        let i = names.split_whitespace().position(|n| n == k).unwrap();
        values.split_whitespace().nth(i).unwrap().parse::<u64>().unwrap()
    };
    (get("FragCreates"), get("ReasmReqds"))
}

#[test]
fn full_size_tcp_crosses_nodes_without_fragmentation() {
    require_env!();
    let lab = Lab::new(false);
    let list = lab.list();
    let (c0, c1) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let _r0 = lab.add(0, &list, "m0", &c0, "m0");
    let r1 = lab.add(1, &list, "m1", &c1, "m1");
    assert_eq!(link(&c0, "eth0").unwrap()["mtu"], 1450);
    let before: Vec<_> = lab.cluster.nodes[..2].iter().map(|n| frag_counters(&n.ns)).collect();
    let tx = |n: &Node| {
        let s = &link_stats(n, "vxlan4242");
        (s["bytes"].as_u64().unwrap(), s["packets"].as_u64().unwrap())
    };
    let (b0, p0) = tx(&lab.cluster.nodes[0]);
    let srv = tcp_echo_server(&c1, 7001);
    let payload: Vec<u8> = (0..4_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let got = tcp_roundtrip(&c0, format!("{}:7001", ip_of(&r1)).parse().unwrap(), &payload).unwrap();
    assert!(got == payload, "4 MB echoed intact");
    srv.join().unwrap();
    let after: Vec<_> = lab.cluster.nodes[..2].iter().map(|n| frag_counters(&n.ns)).collect();
    assert_eq!(before, after, "no fragments created or reassembled on the underlay");
    // Full-size frames went through the tunnel (1450-byte packets + 14 of Ethernet).
    let (b1, p1) = tx(&lab.cluster.nodes[0]);
    let avg = (b1 - b0) / (p1 - p0);
    assert!(avg > 1300, "average frame through the tunnel {avg} bytes: not full size");
}

/// `ip -s link` TX counters of a device.
fn link_stats(n: &Node, dev: &str) -> Value {
    n.ns.ip_json(&["-s", "link", "show", dev]).unwrap()[0]["stats64"]["tx"].clone()
}

#[test]
fn overlays_are_isolated_from_each_other_and_from_bridge_networks() {
    require_env!();
    let lab = Lab::new(false);
    let a = lab.list();
    let b = lab.list_for("ovother", 4343, "10.91.0.0/16");
    let ctr = |_: usize| ContainerNs::with_lo().unwrap();
    let (a0, a1, b0, b1, br0) = (ctr(0), ctr(1), ctr(2), ctr(3), ctr(4));
    let ra0 = lab.add(0, &a, "a0", &a0, "a0");
    let ra1 = lab.add(1, &a, "a1", &a1, "a1");
    let rb0 = lab.add(0, &b, "b0", &b0, "b0");
    let rb1 = lab.add(1, &b, "b1", &b1, "b1");
    let bridge = conflist_value(
        &json!({"cniVersion": "1.0.0", "name": "brnet", "plugins": [{"type": "bridge",
        "bridge": "cnibr0", "isGateway": true, "isDefaultGateway": true, "ipMasq": true,
        "ipam": {"type": "host-local", "subnet": "10.88.0.0/24", "dataDir": lab.cluster.nodes[0].dir.join("ipam")}}]}),
    );
    let rbr = lab.rts[0].add(&bridge, "br0", br0.path(), "eth0", "", json!({})).unwrap();
    // Inside one overlay, across nodes: yes.
    // (across nodes: within the watch latency)
    assert!(wait_until(Duration::from_secs(10), || ping(&a0, &ip_of(&ra1)) && ping(&b0, &ip_of(&rb1))));
    // Between overlays, same node and across nodes: no.
    assert!(!ping(&a0, &ip_of(&rb0)), "overlay A -> overlay B on the same node");
    assert!(!ping(&a0, &ip_of(&rb1)), "overlay A -> overlay B on another node");
    assert!(!ping(&b1, &ip_of(&ra1)), "overlay B -> overlay A on the same node");
    // From a bridge network into an overlay: no.
    assert!(!ping(&br0, &ip_of(&ra0)), "bridge network -> overlay");
    // The other VNI's devices hold none of the first overlay's containers.
    let n0 = &lab.cluster.nodes[0];
    let mac_a1 = ra1.interfaces[2].mac.clone();
    assert!(vxlan_fdb(n0, "vxlan4242").iter().any(|(m, _)| *m == mac_a1));
    assert!(!vxlan_fdb(n0, "vxlan4343").iter().any(|(m, _)| *m == mac_a1));
    lab.rts[0].del(&bridge, "br0", br0.path(), "eth0", "", json!({})).unwrap();
    let _ = rbr;
}

#[test]
fn a_routed_underlay_carries_the_overlay() {
    require_env!();
    let lab = Lab::new(true);
    let list = lab.list();
    let (c0, c2) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let r0 = lab.add(0, &list, "r0", &c0, "r0");
    let r2 = lab.add(2, &list, "r2", &c2, "r2");
    assert!(wait_until(Duration::from_secs(5), || ping(&c0, &ip_of(&r2))), "node0 -> node2 over the router");
    assert!(ping(&c2, &ip_of(&r0)));
    let n0 = &lab.cluster.nodes[0];
    assert_eq!(
        link(&n0.ns, "vxlan4242").unwrap()["linkinfo"]["info_data"]["local"],
        "198.51.100.2",
        "VTEP from the default route"
    );
    assert!(vxlan_fdb(n0, "vxlan4242").contains(&(r2.interfaces[2].mac.clone(), "198.51.100.34".into())));
    lab.del(0, &list, "r0", &c0.path_str());
    lab.del(2, &list, "r2", &c2.path_str());
}

#[test]
fn a_restarted_agent_reconciles_the_kernel_from_scratch() {
    require_env!();
    let lab = Lab::new(false);
    let list = lab.list();
    let ctrs: Vec<ContainerNs> = (0..3).map(|_| ContainerNs::with_lo().unwrap()).collect();
    let _r0 = lab.add(0, &list, "s0", &ctrs[0], "s0");
    let r1 = lab.add(1, &list, "s1", &ctrs[1], "s1");
    let n0 = &lab.cluster.nodes[0];
    let mac1 = r1.interfaces[2].mac.clone();
    assert!(wait_until(Duration::from_secs(5), || vxlan_fdb(n0, "vxlan4242")
        .iter()
        .any(|(m, _)| *m == mac1)));
    // The agent dies; the kernel drifts: an entry lost, a stranger added.
    n0.kill_daemons();
    let bridge = |args: &[&str]| {
        let out =
            std::process::Command::new("bridge").args(["-n", n0.ns.name()]).args(args).output().unwrap();
        assert!(out.status.success(), "bridge {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    bridge(&["fdb", "del", &mac1, "dev", "vxlan4242", "self"]);
    bridge(&[
        "fdb",
        "add",
        "02:42:0a:5a:99:99",
        "dev",
        "vxlan4242",
        "dst",
        "192.0.2.77",
        "self",
        "permanent",
    ]);
    n0.ns
        .ip(&[
            "neigh",
            "add",
            "10.90.99.99",
            "lladdr",
            "02:42:0a:5a:99:99",
            "dev",
            "vxlan4242",
            "nud",
            "permanent",
        ])
        .unwrap();
    // The next ADD starts a new agent, which reconciles before ADD returns.
    lab.add(0, &list, "s2", &ctrs[2], "s2");
    let fdb = vxlan_fdb(n0, "vxlan4242");
    assert!(fdb.contains(&(mac1.clone(), "192.0.2.2".into())), "{fdb:?}");
    assert!(!fdb.iter().any(|(m, _)| m == "02:42:0a:5a:99:99"), "{fdb:?}");
    let neigh = n0.ns.ip(&["neigh", "show", "dev", "vxlan4242"]).unwrap();
    assert!(!neigh.contains("10.90.99.99") && neigh.contains(&ip_of(&r1)), "{neigh}");
    assert!(ping(&ctrs[2], &ip_of(&r1)));
}

// ----- etcd over TLS -----------------------------------------------------------------

const EC_KEY: &str = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1";

/// Certificates made with `openssl` in a temp dir: `ca` (etcd's CA), a
/// server certificate for etcd at one IP, a client certificate of `ca`, and
/// `other-ca`, a CA etcd does not trust, with a client certificate of its own.
struct Pki {
    dir: TempDir,
}

impl Pki {
    fn new(server_ip: &str) -> Pki {
        let pki = Pki { dir: TempDir::new().unwrap() };
        pki.ca("ca");
        pki.ca("other-ca");
        // etcd 3.4's JSON gateway connects to etcd's gRPC with the server
        // certificate, so with --client-cert-auth it must be a client
        // certificate too.
        let server = format!("extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:{server_ip}");
        pki.cert("ca", "server", &server);
        pki.cert("ca", "client", "extendedKeyUsage=clientAuth");
        pki.cert("other-ca", "stranger", "extendedKeyUsage=clientAuth");
        pki
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// `openssl <args>` in the directory (arguments split at spaces).
    fn openssl(&self, args: &str) {
        let out = std::process::Command::new("openssl")
            .current_dir(self.dir.path())
            .args(args.split_whitespace())
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args}: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// `<name>.pem`, `<name>-key.pem`: a self-signed CA.
    fn ca(&self, name: &str) {
        self.openssl(&format!(
            "req -x509 -nodes -config /dev/null -days 2 {EC_KEY} -keyout {name}-key.pem -out {name}.pem \
             -subj /CN={name} -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign"
        ));
    }

    /// `<name>.pem`, `<name>-key.pem`: signed by `ca`, with `extensions`.
    fn cert(&self, ca: &str, name: &str, extensions: &str) {
        self.openssl(&format!(
            "req -new -nodes -config /dev/null {EC_KEY} -keyout {name}-key.pem -out {name}.csr -subj /CN={name}"
        ));
        let ext =
            format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n{extensions}\n");
        std::fs::write(self.dir.join(format!("{name}.ext")), ext).unwrap();
        self.openssl(&format!(
            "x509 -req -in {name}.csr -CA {ca}.pem -CAkey {ca}-key.pem -CAcreateserial -days 2 \
             -extfile {name}.ext -out {name}.pem"
        ));
    }

    /// etcdctl's TLS flags with the client certificate.
    fn etcdctl_flags(&self) -> [String; 3] {
        [
            format!("--cacert={}", self.path("ca.pem")),
            format!("--cert={}", self.path("client.pem")),
            format!("--key={}", self.path("client-key.pem")),
        ]
    }
}

/// A one-member etcd in `node`'s netns serving clients over https only,
/// requiring a client certificate of the test CA. Ended by PID on drop.
struct TlsEtcd {
    child: std::process::Child,
}

impl TlsEtcd {
    fn start(node: &Node, pki: &Pki) -> TlsEtcd {
        let (client, peer) = (format!("https://{}:2379", node.ip), format!("http://{}:2380", node.ip));
        let log = std::fs::File::create(node.dir.join("etcd.log")).unwrap();
        let (mut cmd, _guard) = node.ns.command("etcd").unwrap();
        cmd.args(["--name", "tls0", "--data-dir", &node.dir.join("etcd").to_string_lossy()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args([
                "--initial-cluster",
                &format!("tls0={peer}"),
                "--logger",
                "zap",
                "--log-outputs",
                "stderr",
            ])
            .args(["--cert-file", &pki.path("server.pem"), "--key-file", &pki.path("server-key.pem")])
            .args(["--client-cert-auth", "--trusted-ca-file", &pki.path("ca.pem")])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log);
        let etcd = TlsEtcd { child: cmd.spawn().expect("etcd") };
        let flags = pki.etcdctl_flags();
        let healthy = wait_until(Duration::from_secs(30), || {
            let args = [flags[0].as_str(), &flags[1], &flags[2], "endpoint", "health"];
            etcdctl(node, std::slice::from_ref(&client), &args).is_ok()
        });
        let log = std::fs::read_to_string(node.dir.join("etcd.log")).unwrap_or_default();
        assert!(healthy, "etcd over TLS did not come up: {log}");
        etcd
    }
}

impl Drop for TlsEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn etcd_over_tls_with_client_certificates() {
    require_env!();
    if std::process::Command::new("openssl").arg("version").output().is_err() {
        eprintln!("skipped: openssl is not installed (scripts/deps installs it)");
        return;
    }
    let cluster = Cluster::bridged(2).expect("nodes");
    let pki = Pki::new("192.0.2.1");
    let _etcd = TlsEtcd::start(&cluster.nodes[0], &pki);
    let (n0, n1) = (&cluster.nodes[0], &cluster.nodes[1]);
    let rts: Vec<Runtime> = cluster.nodes.iter().map(|n| n.runtime(vec![target_bin_dir()])).collect();
    let endpoint = "https://192.0.2.1:2379";
    let list = |etcd: Value| {
        conflist_value(&json!({"cniVersion": "1.0.0", "name": NET, "plugins": [{"type": "overlay",
            "vni": VNI, "subnet": SUBNET, "leaseTTL": TTL, "etcd": etcd}]}))
    };
    // What is in etcd, read through the same TLS.
    let flags = pki.etcdctl_flags();
    let etcd_get = |args: &[&str]| {
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.extend(["get", "--prefix"]);
        all.extend(args);
        etcdctl(n1, &[endpoint.to_string()], &all).expect("etcdctl over TLS")
    };
    let keys = |prefix: &str| -> Vec<String> {
        etcd_get(&["--keys-only", prefix]).lines().filter(|l| !l.is_empty()).map(str::to_string).collect()
    };
    let (c0, c1) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());

    // Refused by etcd (no client certificate, or one of a CA it does not
    // trust) or by us (etcd's certificate is not of the CA we trust): code 7
    // naming the problem, and nothing made anywhere.
    let refused = [
        (
            "no client certificate",
            json!({"endpoints": [endpoint], "caFile": pki.path("ca.pem")}),
            "etcd requires a client certificate: set etcd.certFile and etcd.keyFile",
        ),
        (
            "another CA",
            json!({"endpoints": [endpoint], "caFile": pki.path("other-ca.pem"),
                "certFile": pki.path("client.pem"), "keyFile": pki.path("client-key.pem")}),
            "etcd's certificate is not accepted (UnknownIssuer): etcd.caFile must hold the CA that signed it",
        ),
        (
            "a client certificate of another CA",
            json!({"endpoints": [endpoint], "caFile": pki.path("ca.pem"),
                "certFile": pki.path("stranger.pem"), "keyFile": pki.path("stranger-key.pem")}),
            "etcd refused our client certificate (BadCertificate)",
        ),
    ];
    for (what, etcd, why) in refused {
        let e = rts[0].add(&list(etcd), "refused", c0.path(), "eth0", "", json!({})).unwrap_err();
        eprintln!("{what}: {}", e.msg());
        assert_eq!(e.code(), Some(7), "{what}: {e}");
        assert!(e.msg().contains(&format!("TLS with etcd failed: {endpoint}: {why}")), "{what}: {e}");
        assert!(!link_exists(&c0, "eth0"), "{what}: container link left");
        assert!(
            !link_exists(&n0.ns, "vxlan4242") && !link_exists(&n0.ns, "ovbr4242"),
            "{what}: devices left"
        );
        assert!(n0.daemon_pids().is_empty(), "{what}: agent left");
        assert!(!n0.dir.join("overlay").join(NET).exists(), "{what}: state left");
        assert_eq!(keys("/cni-rs/"), Vec::<String>::new(), "{what}: keys left");
    }

    // With the client certificate: ADD on both nodes, each node's agent
    // registered under a lease and programming the other's container.
    let tls = json!({"endpoints": [endpoint], "caFile": pki.path("ca.pem"), "certFile": pki.path("client.pem"),
        "keyFile": pki.path("client-key.pem"), "timeoutMs": 1500});
    let list = list(tls);
    let add = |node: usize, cid: &str, ctr: &ContainerNs| {
        rts[node]
            .add(&list, cid, ctr.path(), "eth0", "", json!({}))
            .unwrap_or_else(|e| panic!("ADD {cid}: {e}"))
    };
    let (r0, r1) = (add(0, "tls0", &c0), add(1, "tls1", &c1));
    let (ip0, ip1) = (ip_of(&r0), ip_of(&r1));
    assert!(addrs(&c0, "eth0").contains(&format!("{ip0}/16")), "{:?}", addrs(&c0, "eth0"));
    assert!(addrs(&c1, "eth0").contains(&format!("{ip1}/16")), "{:?}", addrs(&c1, "eth0"));
    let ips = "/cni-rs/overlay/net/ovtest/ips/";
    let mut want = vec![format!("{ips}{ip0}"), format!("{ips}{ip1}")];
    want.sort();
    assert_eq!(keys(ips), want, "one key per address");
    assert!(etcd_get(&["--print-value-only", &format!("{ips}{ip0}")]).contains("\"containerID\":\"tls0\""));
    let nodes = "/cni-rs/overlay/net/ovtest/nodes/";
    assert_eq!(keys(nodes), [format!("{nodes}192.0.2.1"), format!("{nodes}192.0.2.2")]);
    let listed: Value = serde_json::from_str(&etcd_get(&["-w", "json", nodes])).unwrap();
    let leased = listed["kvs"].as_array().unwrap().iter().filter(|kv| kv["lease"].as_i64().unwrap_or(0) != 0);
    assert_eq!(leased.count(), 2, "both nodes under a lease: {listed}");
    assert!(wait_until(Duration::from_secs(10), || ping(&c0, &ip1)), "node0 -> node1 over the overlay");
    assert!(ping(&c1, &ip0), "node1 -> node0");

    // DEL releases the addresses; the last DEL on a node revokes its lease.
    rts[0].del(&list, "tls0", c0.path(), "eth0", "", json!({})).unwrap();
    rts[1].del(&list, "tls1", c1.path(), "eth0", "", json!({})).unwrap();
    assert_eq!(keys(ips), Vec::<String>::new());
    assert_eq!(keys(nodes), Vec::<String>::new());
    for n in [n0, n1] {
        assert!(!link_exists(&n.ns, "vxlan4242") && n.daemon_pids().is_empty(), "{}", n.name);
    }
}
