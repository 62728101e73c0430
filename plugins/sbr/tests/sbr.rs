//! sbr against the real kernel, each test in namespaces it creates: a
//! container on two networks whose every source address answers through
//! its own interface (a peer on each side routes back only through its own
//! link); `ip rule` and the tables next to what the reference makes from
//! the same request; each one's DEL on the other's state; failures, CHECK,
//! DEL without the netns, every result version.

use serde_json::{json, Value};
use test_harness::*;

fn bin() -> std::path::PathBuf {
    target_bin_dir().join("sbr")
}

const REFERENCE: &str = "/usr/lib/cni/sbr";

/// A network whose gateway (a bridge with host-local) lives in `host`; sbr
/// chained after it when `sbr`.
fn network(
    ipam: &TempDir,
    name: &str,
    bridge: &str,
    subnet: &str,
    default_gw: bool,
    sbr: bool,
) -> NetConfList {
    let mut plugins = vec![json!({"type": "bridge", "bridge": bridge, "isGateway": true,
        "isDefaultGateway": default_gw, "ipam": {"type": "host-local", "subnet": subnet, "dataDir": ipam.path()}})];
    if sbr {
        plugins.push(json!({"type": "sbr"}));
    }
    conflist_value(&json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins}))
}

/// A peer: the netns holding a network's gateway, with a "far" address on
/// its `lo` that only it can answer for. It has no route to the other side.
fn peer(far: &str) -> TestNs {
    let ns = HostNs::with_lo().unwrap();
    ns.ip(&["addr", "add", &format!("{far}/32"), "dev", "lo"]).unwrap();
    ns
}

/// One echo from `src` (an address of `from`) to `dst`.
fn ping_from(from: &TestNs, src: &str, dst: &str) -> bool {
    from.spawn(&["ping", "-n", "-q", "-c", "1", "-W", "2", "-I", src, dst], b"").unwrap().success()
}

fn addr_of(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

/// `ip rule` of both families: (source, table) of the rules with a source.
fn source_rules(ns: &TestNs) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for fam in ["-4", "-6"] {
        for r in ns.ip_json(&[fam, "rule", "show"]).unwrap().as_array().unwrap() {
            if let (Some(src), Some(t)) = (r["src"].as_str(), r["table"].as_str()) {
                if src != "all" {
                    v.push((src.to_string(), t.to_string()));
                }
            }
        }
    }
    v
}

/// `ip route show table T` of both families, as text lines (no link-local
/// addresses of their own: those differ between two containers).
fn table(ns: &TestNs, t: &str) -> Vec<String> {
    let mut v = Vec::new();
    for fam in ["-4", "-6"] {
        let text = ns.ip(&[fam, "route", "show", "table", t]).unwrap_or_else(|e| {
            // A table that never held a route "does not exist": empty.
            assert!(e.to_string().contains("FIB table does not exist"), "{e}");
            String::new()
        });
        v.extend(text.lines().map(|l| l.trim().to_string()));
    }
    v
}

#[test]
fn each_source_address_answers_through_its_own_interface() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let (pa, pb) = (peer("203.0.113.1"), peer("203.0.113.2"));
    let ipam = TempDir::new().unwrap();
    let (rta, _ca) = runtime_in(&pa);
    let (rtb, _cb) = runtime_in(&pb);
    let a = network(&ipam, "side-a", "sbra0", "10.71.0.0/24", true, true);
    let b = network(&ipam, "side-b", "sbrb0", "10.72.0.0/24", false, true);
    let ctr = ContainerNs::with_lo().unwrap();
    let ra = rta.add(&a, "c1", ctr.path(), "eth0", "", json!({})).unwrap();
    let rb = rtb.add(&b, "c1", ctr.path(), "eth1", "", json!({})).unwrap();
    let (ip_a, ip_b) = (addr_of(&ra), addr_of(&rb));

    // Each far client reaches the container's address on its own side: the
    // reply from that address goes back out of the interface it came in on.
    assert!(ping_from(&pa, "203.0.113.1", &ip_a));
    assert!(ping_from(&pb, "203.0.113.2", &ip_b));
    assert_eq!(source_rules(&ctr), [(ip_b.clone(), "101".into()), (ip_a.clone(), "100".into())]);
    assert_eq!(table(&ctr, "100")[0], "default via 10.71.0.1 dev eth0");
    assert_eq!(table(&ctr, "101")[0], "default via 10.72.0.1 dev eth1");
    assert!(table(&ctr, "main").iter().all(|r| !r.contains("dev eth")), "{:?}", table(&ctr, "main"));

    // The same two networks without sbr: a reply from side B's address
    // follows the main table's default route out of eth0, to a peer that
    // cannot deliver it.
    let a0 = network(&ipam, "side-a", "sbra0", "10.71.0.0/24", true, false);
    let b0 = network(&ipam, "side-b", "sbrb0", "10.72.0.0/24", false, false);
    let plain = ContainerNs::with_lo().unwrap();
    let pa_res = rta.add(&a0, "c2", plain.path(), "eth0", "", json!({})).unwrap();
    let pb_res = rtb.add(&b0, "c2", plain.path(), "eth1", "", json!({})).unwrap();
    assert!(ping_from(&pa, "203.0.113.1", &addr_of(&pa_res)));
    assert!(!ping_from(&pb, "203.0.113.2", &addr_of(&pb_res)), "without sbr the reply leaves through eth0");
    rtb.del(&b0, "c2", plain.path(), "eth1", "", json!({})).unwrap();
    rta.del(&a0, "c2", plain.path(), "eth0", "", json!({})).unwrap();

    rtb.check(&b, "c1", ctr.path(), "eth1", "", json!({})).unwrap();
    rtb.del(&b, "c1", ctr.path(), "eth1", "", json!({})).unwrap();
    assert_eq!(source_rules(&ctr), [(ip_a.clone(), "100".into())]);
    rta.del(&a, "c1", ctr.path(), "eth0", "", json!({})).unwrap();
    assert!(source_rules(&ctr).is_empty());
    assert!(table(&ctr, "100").is_empty() && table(&ctr, "101").is_empty());
}

/// A container whose `eth0` (peer `h0` in `host`) has 10.73.0.2/24 and
/// fd00:73::2/64 and a default route via 10.73.0.1, as a main plugin
/// leaves it.
fn prepared(host: &TestNs) -> TestNs {
    let ctr = ContainerNs::with_lo().unwrap();
    for ns in [host, &ctr] {
        ns.set_sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        ns.set_sysctl("net.ipv6.conf.default.accept_dad", "0").unwrap();
    }
    veth(&ctr, "eth0", host, &format!("h{}", &ctr.name()[ctr.name().len() - 6..])).unwrap();
    ctr.ip(&["addr", "add", "10.73.0.2/24", "dev", "eth0"]).unwrap();
    ctr.ip(&["addr", "add", "fd00:73::2/64", "dev", "eth0", "nodad"]).unwrap();
    ctr.ip(&["route", "add", "default", "via", "10.73.0.1", "dev", "eth0"]).unwrap();
    assert!(wait_until(std::time::Duration::from_secs(5), || table(&ctr, "main")
        .iter()
        .any(|r| r.starts_with("fe80::/64"))));
    ctr
}

fn request(ctr: &TestNs, version: &str, extra: Value) -> Value {
    let prev = CniResult::parse(
        &json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": ctr.path_str()}],
            "ips": [{"address": "10.73.0.2/24", "gateway": "10.73.0.1", "interface": 0},
                    {"address": "fd00:73::2/64", "gateway": "fd00:73::1", "interface": 0}]}),
        "1.0.0",
    )
    .unwrap();
    let mut req = json!({"cniVersion": version, "name": "net1", "type": "sbr",
        "prevResult": prev.to_value(version).unwrap()});
    req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    req
}

fn run(
    bin: impl AsRef<std::path::Path>,
    host: &TestNs,
    cmd: &str,
    ctr: &TestNs,
    conf: &Value,
) -> PluginOutput {
    let netns = ctr.path_str();
    run_with_netns(bin, host, cmd, &netns, conf)
}

fn run_with_netns(
    bin: impl AsRef<std::path::Path>,
    host: &TestNs,
    cmd: &str,
    netns: &str,
    conf: &Value,
) -> PluginOutput {
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    run_plugin(bin.as_ref(), Some(host.path()), &env, conf.to_string().as_bytes()).unwrap()
}

/// The state sbr makes: the source rules and the tables from 100 up, and
/// the main table's routes through eth0.
fn sbr_state(ctr: &TestNs) -> Vec<String> {
    let mut v: Vec<String> =
        source_rules(ctr).into_iter().map(|(s, t)| format!("rule from {s} lookup {t}")).collect();
    for t in ["100", "101", "102"] {
        v.extend(table(ctr, t).into_iter().map(|r| format!("table {t}: {r}")));
    }
    v.extend(table(ctr, "main").into_iter().filter(|r| r.contains("dev eth0")).map(|r| format!("main: {r}")));
    v
}

#[test]
fn ours_and_the_references_state_are_the_same_and_each_deletes_the_others() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (theirs, ours) = (prepared(&host), prepared(&host));
    let out = run(REFERENCE, &host, "ADD", &theirs, &request(&theirs, "1.0.0", json!({})));
    assert!(out.success(), "{out:?}");
    let out = run(bin(), &host, "ADD", &ours, &request(&ours, "1.0.0", json!({})));
    assert!(out.success(), "{out:?}");
    let state = sbr_state(&ours);
    assert_eq!(state, sbr_state(&theirs));
    for line in [
        "rule from 10.73.0.2 lookup 100",
        "rule from fd00:73::2 lookup 101",
        "table 100: default via 10.73.0.1 dev eth0",
        "table 100: 10.73.0.0/24 dev eth0 proto kernel scope link src 10.73.0.2",
        "table 101: default via fd00:73::1 dev eth0 metric 1024 pref medium",
        "table 101: fd00:73::/64 dev eth0 proto kernel metric 256 pref medium",
    ] {
        assert!(state.contains(&line.to_string()), "{line} not in {state:#?}");
    }
    assert!(!state.iter().any(|l| l.starts_with("main:")), "{state:#?}");

    // Our DEL on the reference's state: its rules and tables go.
    let out = run(bin(), &host, "DEL", &theirs, &request(&theirs, "1.0.0", json!({})));
    assert!(out.success(), "{out:?}");
    assert_eq!(sbr_state(&theirs), Vec::<String>::new());
    // The reference's DEL on ours: the rules go (it leaves the tables to go
    // with the interface).
    let out = run(REFERENCE, &host, "DEL", &ours, &request(&ours, "1.0.0", json!({})));
    assert!(out.success(), "{out:?}");
    assert!(source_rules(&ours).is_empty());
}

#[test]
fn every_result_version_passes_prev_result_through() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    for version in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let ctr = prepared(&host);
        let req = request(&ctr, version, json!({}));
        let out = run(bin(), &host, "ADD", &ctr, &req);
        assert!(out.success(), "{version}: {out:?}");
        let got: Value = serde_json::from_str(&out.stdout).unwrap();
        let mut want = req["prevResult"].clone();
        want["cniVersion"] = json!(version);
        assert_eq!(got, want, "{version}");
        assert_eq!(source_rules(&ctr).len(), 2, "{version}");
        assert!(run(bin(), &host, "DEL", &ctr, &req).success(), "{version}");
        assert!(source_rules(&ctr).is_empty(), "{version}");
    }
}

#[test]
fn a_failed_add_leaves_nothing_and_check_sees_drift() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = prepared(&host);
    let before = FingerprintSpec::new().netns("ctr", &ctr).take();
    // The IPv4 rule and table are made, then the IPv6 gateway is unreachable.
    let bad = request(&ctr, "1.0.0", json!({"gateways": ["fd00:99::1"]}));
    let out = run(bin(), &host, "ADD", &ctr, &bad);
    assert!(!out.success(), "{out:?}");
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(
        e["msg"].as_str().unwrap().contains("adding the default route via fd00:99::1 to table 101"),
        "{e}"
    );
    let diff = before.diff(&FingerprintSpec::new().netns("ctr", &ctr).take());
    assert!(diff.is_empty(), "left behind:\n{}", diff.join("\n"));

    let req = request(&ctr, "1.1.0", json!({}));
    assert!(run(bin(), &host, "ADD", &ctr, &req).success());
    assert!(run(bin(), &host, "CHECK", &ctr, &req).success());
    ctr.ip(&["-6", "rule", "del", "from", "fd00:73::2", "lookup", "101"]).unwrap();
    let out = run(bin(), &host, "CHECK", &ctr, &req);
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(e["msg"].as_str().unwrap().contains("the rule from fd00:73::2 is missing"), "{e}");
    ctr.ip(&["-6", "rule", "add", "from", "fd00:73::2", "lookup", "101"]).unwrap();
    ctr.ip(&["-4", "route", "flush", "table", "100"]).unwrap();
    ctr.ip(&["-6", "route", "flush", "table", "100"]).unwrap();
    let out = run(bin(), &host, "CHECK", &ctr, &req);
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(e["msg"].as_str().unwrap().contains("table 100, where the rule from 10.73.0.2 leads"), "{e}");
    assert!(run(bin(), &host, "DEL", &ctr, &req).success());
}

#[test]
fn del_twice_without_the_netns_or_after_the_interface_is_gone_succeeds() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = prepared(&host);
    let req = request(&ctr, "1.0.0", json!({}));
    assert!(run(bin(), &host, "ADD", &ctr, &req).success());
    ctr.ip(&["link", "del", "eth0"]).unwrap();
    assert_eq!(source_rules(&ctr).len(), 2, "the rules outlive the interface");
    assert!(run(bin(), &host, "DEL", &ctr, &req).success());
    assert!(source_rules(&ctr).is_empty(), "found by prevResult's addresses");
    assert!(run(bin(), &host, "DEL", &ctr, &req).success());
    for netns in ["", "/run/netns/cni-sbr-gone"] {
        let out = run_with_netns(bin(), &host, "DEL", netns, &req);
        assert!(out.success() && out.stdout.is_empty(), "{netns:?}: {out:?}");
    }
}

#[test]
fn the_operators_table_gets_only_the_rules() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = prepared(&host);
    let main_before = table(&ctr, "main");
    let req = request(&ctr, "1.0.0", json!({"table": 5000}));
    assert!(run(bin(), &host, "ADD", &ctr, &req).success());
    assert_eq!(
        source_rules(&ctr),
        [("10.73.0.2".into(), "5000".into()), ("fd00:73::2".into(), "5000".into())]
    );
    assert_eq!(table(&ctr, "main"), main_before);
    assert!(run(bin(), &host, "DEL", &ctr, &req).success());
    assert!(source_rules(&ctr).is_empty());
}

#[test]
fn a_gateway_the_main_table_reaches_onlink_keeps_working_in_the_table() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    // Calico's default route: 169.254.1.1 is on the link whatever the addresses say.
    let host = HostNs::with_lo().unwrap();
    let ctr = prepared(&host);
    ctr.ip(&["route", "replace", "default", "via", "169.254.1.1", "dev", "eth0", "onlink"]).unwrap();
    let mut req = request(&ctr, "1.0.0", json!({}));
    req["prevResult"]["ips"] = json!([{"address": "10.73.0.2/24", "gateway": "169.254.1.1", "interface": 0}]);
    let out = run(bin(), &host, "ADD", &ctr, &req);
    assert!(out.success(), "{out:?}");
    assert_eq!(table(&ctr, "100")[0], "default via 169.254.1.1 dev eth0 onlink");
    assert!(run(bin(), &host, "DEL", &ctr, &req).success());
}
