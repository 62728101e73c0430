//! firewall against the real kernel: bridge + host-local + firewall chained
//! by a libcni-like runtime, every test in namespaces it creates. The "host"
//! is a test netns whose own firewall the tests set up (nftables-native and
//! iptables-nft), with an "outside" peer netns behind a veth.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

/// A host netns with forwarding, an outside peer at 10.99.0.2 behind `vout`.
struct Lab {
    host: HostNs,
    outside: TestNs,
    ipam_dir: TempDir,
}

impl Lab {
    fn new() -> Lab {
        let host = HostNs::with_lo().unwrap();
        let outside = TestNs::with_lo().unwrap();
        veth(&host, "vout", &outside, "eth0").unwrap();
        host.ip(&["addr", "add", "10.99.0.1/24", "dev", "vout"]).unwrap();
        outside.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"]).unwrap();
        outside.ip(&["route", "add", "10.77.0.0/16", "via", "10.99.0.1"]).unwrap();
        Lab { host, outside, ipam_dir: TempDir::new().unwrap() }
    }

    /// The host's own nftables firewall: forward policy drop.
    fn nft_forward_drop(&self) {
        let rules = "table inet filter {\n chain forward {\n  type filter hook forward priority 0; policy drop;\n }\n}\n";
        let out = self.host.spawn(&["nft", "-f", "-"], rules.as_bytes()).unwrap();
        assert!(out.success(), "{}", out.stderr);
    }

    /// A bridge network `name` on bridge `br` with 10.77.<n>.0/24.
    fn list(&self, name: &str, br: &str, n: u8, firewall: Option<Value>, version: &str) -> NetConfList {
        let mut plugins = vec![json!({
            "type": "bridge", "bridge": br, "isDefaultGateway": true, "ipMasq": false,
            "ipam": {"type": "host-local", "subnet": format!("10.77.{n}.0/24"),
                     "dataDir": self.ipam_dir.path()},
        })];
        if let Some(fw) = firewall {
            plugins.push(fw);
        }
        conflist_value(&json!({"cniVersion": version, "name": name, "plugins": plugins}))
    }

    /// bridge + portmap (+ firewall): a network whose containers publish ports.
    fn list_with_portmap(&self, name: &str, br: &str, n: u8, firewall: Option<Value>) -> NetConfList {
        let mut list = self.list(name, br, n, None, "1.0.0");
        list.plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        list.plugins.extend(firewall);
        list
    }

    fn rt(&self) -> (Runtime, TempDir) {
        runtime_in(&self.host)
    }
}

fn ip_of(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

fn fw(policy: &str) -> Option<Value> {
    Some(json!({"type": "firewall", "backend": "", "ingressPolicy": policy}))
}

/// Rules of the host's own `inet filter forward` chain, as nft prints them.
fn host_forward_rules(host: &HostNs) -> Vec<Value> {
    nft_objects(&nft_ruleset(host), "rule")
        .into_iter()
        .filter(|r| r["table"] == "filter" && r["chain"] == "forward")
        .collect()
}

fn our_table_exists(host: &HostNs) -> bool {
    nft_objects(&nft_ruleset(host), "table").iter().any(|t| t["name"] == "cnirs_firewall")
}

#[test]
fn forward_policy_drop_is_passed_only_with_the_firewall() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let lab = Lab::new();
    lab.nft_forward_drop();
    let (rt, _cache) = lab.rt();
    let (c1, c2) = (ContainerNs::new().unwrap(), ContainerNs::new().unwrap());

    // Without the firewall the host's drop policy wins.
    let bare = lab.list("neta", "cnfw0", 1, None, "1.0.0");
    let r = rt.add(&bare, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    assert!(ping(&c1, "10.77.1.1"), "the gateway is local, not forwarded");
    assert!(!ping(&c1, "10.99.0.2"), "forwarding should be dropped by the host");
    rt.del(&bare, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    let _ = r;

    // With it, both containers get out, and replies come back.
    let list = lab.list("neta", "cnfw0", 1, fw("open"), "1.0.0");
    let r1 = rt.add(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    let r2 = rt.add(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();
    assert!(ping(&c1, "10.99.0.2"), "{}", nft_text(&lab.host));
    assert!(ping(&c2, "10.99.0.2"));
    // As the reference: new connections from outside are not opened up.
    assert!(!ping(&lab.outside, &ip_of(&r1)));
    // The hook-in rule sits in the host's chain, once.
    let hooks = host_forward_rules(&lab.host);
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    assert_eq!(hooks[0]["comment"], "cnirs_firewall");
    rt.check(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    rt.check(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();

    // DEL without a netns removes ctr1's address by its tag; ctr2 keeps working.
    rt.del(&list, "ctr1", "", "eth0", "", json!({})).unwrap();
    let text = nft_text(&lab.host);
    assert!(!text.contains(&ip_of(&r1)), "{text}");
    assert!(text.contains(&ip_of(&r2)), "{text}");
    assert!(ping(&c2, "10.99.0.2"));
    // A second DEL is fine.
    rt.del(&list, "ctr1", "", "eth0", "", json!({})).unwrap();

    // The last DEL leaves nothing: no table of ours, no rule in the host's chain.
    rt.del(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();
    assert!(!our_table_exists(&lab.host), "{}", nft_text(&lab.host));
    assert!(host_forward_rules(&lab.host).is_empty(), "{}", nft_text(&lab.host));
    let tables = nft_objects(&nft_ruleset(&lab.host), "table");
    assert_eq!(tables.len(), 1, "only the host's own table is left: {tables:?}");
}

#[test]
fn iptables_nft_forward_drop_is_passed_and_stays_readable() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    if std::process::Command::new("iptables-nft").arg("--version").output().is_err() {
        return eprintln!("skipping: no iptables-nft");
    }
    let lab = Lab::new();
    lab.host.exec_ok(&["iptables-nft", "-P", "FORWARD", "DROP"]).unwrap();
    let (rt, _cache) = lab.rt();
    let c1 = ContainerNs::new().unwrap();
    let list = lab.list("netb", "cnfw1", 2, fw(""), "0.4.0");
    rt.add(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    assert!(ping(&c1, "10.99.0.2"), "{}", nft_text(&lab.host));
    // iptables-nft still understands its chain: our rule reads as a mark match.
    let saved = lab.host.exec_ok(&["iptables-nft", "-S", "FORWARD"]).unwrap();
    assert!(
        saved.contains(
            "-A FORWARD -m mark --mark 0x1000000/0x1000000 -m comment --comment cnirs_firewall -j ACCEPT"
        ),
        "{saved}"
    );
    rt.check(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    rt.del(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    let saved = lab.host.exec_ok(&["iptables-nft", "-S", "FORWARD"]).unwrap();
    assert_eq!(saved.trim(), "-P FORWARD DROP");
    assert!(!our_table_exists(&lab.host));
}

#[test]
fn same_bridge_isolates_isolated_networks_from_each_other() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let lab = Lab::new();
    lab.nft_forward_drop();
    let (rt, _cache) = lab.rt();
    let (ca, cb, cc) =
        (ContainerNs::new().unwrap(), ContainerNs::new().unwrap(), ContainerNs::new().unwrap());

    for (policy, isolated) in [("open", false), ("same-bridge", true)] {
        let a = lab.list("isoa", "cnisoa", 3, fw(policy), "1.1.0");
        let b = lab.list("isob", "cnisob", 4, fw(policy), "1.1.0");
        let c = lab.list("open", "cnopen", 5, fw("open"), "1.1.0");
        let ra = rt.add(&a, "ca", ca.path(), "eth0", "", json!({})).unwrap();
        let rb = rt.add(&b, "cb", cb.path(), "eth0", "", json!({})).unwrap();
        rt.add(&c, "cc", cc.path(), "eth0", "", json!({})).unwrap();
        let (ipa, ipb) = (ip_of(&ra), ip_of(&rb));
        assert_eq!(ping(&cb, &ipa), !isolated, "{policy}: b -> a\n{}", nft_text(&lab.host));
        assert_eq!(ping(&ca, &ipb), !isolated, "{policy}: a -> b");
        // Isolated or not, both still reach the outside.
        assert!(ping(&ca, "10.99.0.2") && ping(&cb, "10.99.0.2"), "{policy}");
        // As the reference (and Podman's `isolate`): only traffic between
        // isolated networks is dropped; an open network still reaches them.
        assert!(ping(&cc, &ipa), "{policy}: open -> a");
        rt.check(&a, "ca", ca.path(), "eth0", "", json!({})).unwrap();
        if isolated {
            let text = nft_text(&lab.host);
            assert!(text.contains("isoa isolate cnisoa") && text.contains("isob isolate cnisob"), "{text}");
        }
        // Removing network a drops its rules and its bridge from the isolated set.
        rt.del(&a, "ca", ca.path(), "eth0", "", json!({})).unwrap();
        let text = nft_text(&lab.host);
        assert!(!text.contains("isoa ") && !text.contains("\"cnisoa\""), "{text}");
        rt.del(&b, "cb", cb.path(), "eth0", "", json!({})).unwrap();
        rt.del(&c, "cc", cc.path(), "eth0", "", json!({})).unwrap();
        assert!(!our_table_exists(&lab.host), "{}", nft_text(&lab.host));
        assert!(host_forward_rules(&lab.host).is_empty());
    }
}

/// A TCP server in `ns` on `port` that sends `reply` to every client.
fn serve(ns: &TestNs, port: u16, reply: &'static str) {
    let listener = ns.run(move || TcpListener::bind(("0.0.0.0", port))).unwrap().unwrap();
    std::thread::spawn(move || {
        for mut c in listener.incoming().map_while(|c| c.ok()) {
            let _ = c.write_all(reply.as_bytes());
        }
    });
}

/// What a TCP client in `ns` reads from `addr` (None: unreachable).
fn fetch(ns: &TestNs, addr: &str) -> Option<String> {
    let addr: SocketAddr = addr.parse().unwrap();
    ns.run(move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        let mut got = String::new();
        s.read_to_string(&mut got).ok()?;
        Some(got)
    })
    .unwrap()
}

/// Docker's `iptables -P FORWARD DROP` host: a port published by portmap is
/// reached from outside only with the firewall in the list, which accepts the
/// DNATed connection (`ct status dnat`), as Docker and netavark do.
#[test]
fn published_port_passes_a_forward_drop_policy_only_with_the_firewall() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let iptables = std::process::Command::new("iptables-nft").arg("--version").output().is_ok();
    for docker_like in [false, true] {
        if docker_like && !iptables {
            eprintln!("skipping the iptables-nft variant: no iptables-nft");
            continue;
        }
        let lab = Lab::new();
        if docker_like {
            lab.host.exec_ok(&["iptables-nft", "-P", "FORWARD", "DROP"]).unwrap();
        } else {
            lab.nft_forward_drop();
        }
        published_port_scenario(&lab);
    }
}

fn published_port_scenario(lab: &Lab) {
    let (rt, _cache) = lab.rt();
    let ctr = ContainerNs::with_lo().unwrap();
    serve(&ctr, 8080, "served by the container");
    let maps = json!({"portMappings": [{"hostPort": 18080, "containerPort": 8080, "protocol": "tcp"}]});

    // Control: bridge + portmap alone; the host's drop policy wins.
    let bare = lab.list_with_portmap("pubnet", "cnpub0", 7, None);
    rt.add(&bare, "ctr1", ctr.path(), "eth0", "", maps.clone()).unwrap();
    assert_eq!(fetch(&lab.outside, "10.99.0.1:18080"), None, "{}", nft_text(&lab.host));
    rt.del(&bare, "ctr1", ctr.path(), "eth0", "", maps.clone()).unwrap();

    // With the firewall the published port serves; unpublished ones stay closed.
    let list = lab.list_with_portmap("pubnet", "cnpub0", 7, fw("open"));
    let r = rt.add(&list, "ctr1", ctr.path(), "eth0", "", maps.clone()).unwrap();
    assert_eq!(
        fetch(&lab.outside, "10.99.0.1:18080").as_deref(),
        Some("served by the container"),
        "{}",
        nft_text(&lab.host)
    );
    assert_eq!(fetch(&lab.outside, &format!("{}:8080", ip_of(&r))), None, "not published: not reachable");
    rt.check(&list, "ctr1", ctr.path(), "eth0", "", maps.clone()).unwrap();
    rt.del(&list, "ctr1", ctr.path(), "eth0", "", maps).unwrap();
    assert!(!our_table_exists(&lab.host), "{}", nft_text(&lab.host));
    assert_eq!(fetch(&lab.outside, "10.99.0.1:18080"), None);
}

/// The cached result of an attachment (what libcni gives chained plugins).
fn r1_for(rt: &Runtime, list: &NetConfList, cid: &str) -> CniResult {
    let path = rt.cache_path(&list.name, cid, "eth0");
    let v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    CniResult::parse(&v["result"], &list.cni_version).unwrap()
}

fn invoke(lab: &Lab, cmd: &str, netns: &str, conf: &Value) -> PluginOutput {
    let bin = target_bin_dir().join("firewall");
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    run_plugin(&bin, Some(lab.host.path()), &env, conf.to_string().as_bytes()).unwrap()
}

#[test]
fn check_notices_missing_state_and_gc_removes_stale_attachments() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let lab = Lab::new();
    lab.nft_forward_drop();
    let (rt, _cache) = lab.rt();
    let (c1, c2) = (ContainerNs::new().unwrap(), ContainerNs::new().unwrap());
    let list = lab.list("netc", "cnfw2", 6, fw("same-bridge"), "1.1.0");
    let r1 = rt.add(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    rt.add(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();
    rt.check(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    rt.status(&list).unwrap();

    // An element deleted behind our back: CHECK of ctr1 fails, ctr2 passes.
    let elem = format!("delete element inet cnirs_firewall c4_netc {{ {} }}", ip_of(&r1));
    lab.host.exec_ok(&["nft", &elem]).unwrap();
    let e = rt.check(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap_err();
    assert_eq!(e.plugin, "firewall", "{e:?}");
    assert!(e.msg().contains("not in the firewall set"), "{}", e.msg());
    rt.check(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();
    // ADD of the firewall again (as a runtime re-adding the list would) repairs it.
    let fw_add = |cid: &str, ctr: &TestNs| {
        let req =
            rt.request(&list, 1, Some(&r1_for(&rt, &list, cid)), &RuntimeConf::new(cid, ctr.path(), "eth0"));
        let out = rt.invoke("ADD", &list, 1, &req.unwrap(), &RuntimeConf::new(cid, ctr.path(), "eth0"));
        out.unwrap_or_else(|e| panic!("{e:?}"));
    };
    fw_add("ctr1", &c1);
    rt.check(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();

    // The host's ruleset reloaded without our hook-in: CHECK says so, ADD repairs.
    let handle = host_forward_rules(&lab.host)[0]["handle"].as_u64().unwrap().to_string();
    lab.host.exec_ok(&["nft", "delete", "rule", "inet", "filter", "forward", "handle", &handle]).unwrap();
    let e = rt.check(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap_err();
    assert!(e.msg().contains("lacks our accept rule"), "{}", e.msg());
    assert!(!ping(&c2, "10.99.0.2"));
    fw_add("ctr2", &c2);
    assert!(ping(&c2, "10.99.0.2"));
    rt.check(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();

    // Plugin GC (direct, as libcni sends it): only ctr2 is valid.
    let mut gc = list.plugins[1].clone();
    gc["name"] = json!("netc");
    gc["cniVersion"] = json!("1.1.0");
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "ctr2", "ifname": "eth0"}]);
    let out = invoke(&lab, "GC", "", &gc);
    assert!(out.success(), "{}", out.stdout);
    let text = nft_text(&lab.host);
    assert!(!text.contains(&ip_of(&r1)) && text.contains("netc/ctr2/eth0"), "{text}");
    assert!(ping(&c2, "10.99.0.2"));
    // Nothing valid: everything goes, the host's chain is clean again.
    gc["cni.dev/valid-attachments"] = json!([]);
    assert!(invoke(&lab, "GC", "", &gc).success());
    assert!(!our_table_exists(&lab.host));
    assert!(host_forward_rules(&lab.host).is_empty());
    rt.del(&list, "ctr1", c1.path(), "eth0", "", json!({})).unwrap();
    rt.del(&list, "ctr2", c2.path(), "eth0", "", json!({})).unwrap();
}

#[test]
fn config_is_validated_like_the_reference() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let lab = Lab::new();
    let ctr = ContainerNs::new().unwrap();
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "cni0"}, {"name": "veth1"}, {"name": "eth0", "sandbox": ctr.path_str()}],
        "ips": [{"address": "10.5.0.2/24", "interface": 2}]});
    let conf = |extra: Value| {
        let mut c = json!({"cniVersion": "1.0.0", "name": "n", "type": "firewall", "prevResult": prev});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        c
    };
    let code = |out: &PluginOutput| serde_json::from_str::<Value>(&out.stdout).unwrap()["code"].clone();
    let out = invoke(&lab, "ADD", &ctr.path_str(), &conf(json!({"backend": "firewalld"})));
    assert_eq!(code(&out), 2, "{}", out.stdout);
    let out = invoke(&lab, "ADD", &ctr.path_str(), &conf(json!({"backend": "ebtables"})));
    assert_eq!(code(&out), 7, "{}", out.stdout);
    let out = invoke(&lab, "ADD", &ctr.path_str(), &conf(json!({"ingressPolicy": "closed"})));
    assert_eq!(code(&out), 7, "{}", out.stdout);
    let mut no_prev = conf(json!({}));
    no_prev.as_object_mut().unwrap().remove("prevResult");
    let out = invoke(&lab, "ADD", &ctr.path_str(), &no_prev);
    assert_eq!(code(&out), 7, "{}", out.stdout);

    // Accepted knobs; the result is prevResult, unchanged.
    let ok = conf(json!({"backend": "iptables", "iptablesAdminChainName": "MY-ADMIN"}));
    let out = invoke(&lab, "ADD", &ctr.path_str(), &ok);
    assert!(out.success(), "{}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ips"], prev["ips"]);
    assert_eq!(v["interfaces"], prev["interfaces"]);
    assert!(invoke(&lab, "DEL", "", &ok).success());
    assert!(nft_is_empty(&lab.host), "{}", nft_text(&lab.host));
    let mut status = ok.clone();
    status["cniVersion"] = json!("1.1.0");
    assert!(invoke(&lab, "STATUS", "", &status).success());
    // isolated: the same-bridge rule plus the intra-bridge drop; CHECK; DEL leaves nothing.
    let iso = conf(json!({"ingressPolicy": "isolated", "cniVersion": "1.1.0"}));
    assert!(invoke(&lab, "ADD", &ctr.path_str(), &iso).success());
    let text = nft_text(&lab.host);
    assert!(text.contains("n isolate cni0") && text.contains("n intra cni0"), "{text}");
    let out = invoke(&lab, "CHECK", &ctr.path_str(), &iso);
    assert!(out.success(), "{}", out.stdout);
    assert!(invoke(&lab, "DEL", "", &iso).success());
    assert!(nft_is_empty(&lab.host), "{}", nft_text(&lab.host));
    // same-bridge without a host-side interface in prevResult: clear error.
    let mut lone = conf(json!({"ingressPolicy": "same-bridge"}));
    lone["prevResult"]["interfaces"] = json!([{"name": "eth0", "sandbox": ctr.path_str()}]);
    lone["prevResult"]["ips"][0]["interface"] = json!(0);
    let out = invoke(&lab, "ADD", &ctr.path_str(), &lone);
    assert_eq!(code(&out), 7, "{}", out.stdout);
    assert!(nft_is_empty(&lab.host));
}
