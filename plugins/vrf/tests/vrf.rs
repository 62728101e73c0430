//! vrf against the real kernel, each test in namespaces it creates. A
//! kernel without the vrf module (this development machine's) skips them
//! with a message; `scripts/vm-test` runs them on Debian 12's 6.1
//! (tests/vm/ci): interfaces enslaved, their routes in the VRF's table and
//! traffic through it, two VRFs keeping two networks with the same
//! addresses apart, containers' VRFs independent, DEL and the empty VRF
//! removed, side by side with the reference, a failed ADD, every version.

use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

fn bin() -> std::path::PathBuf {
    target_bin_dir().join("vrf")
}

const REFERENCE: &str = "/usr/lib/cni/vrf";

/// Root and a kernel with VRFs, or a message saying why the test skips.
fn runnable(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root");
        return false;
    }
    // Probed once per test binary (a netns costs seconds in the VM).
    static HAS_VRF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let has_vrf = *HAS_VRF.get_or_init(|| {
        let probe = TestNs::new().unwrap();
        probe.ip(&["link", "add", "vrfprobe", "type", "vrf", "table", "1"]).is_ok()
    });
    if !has_vrf {
        // Straight to stderr: libtest would hide an eprintln! of a passing test.
        let msg = format!("SKIPPED {test}: this kernel has no vrf module (scripts/vm-test runs it on 6.1)\n");
        let _ = std::io::Write::write_all(&mut std::io::stderr(), msg.as_bytes());
        return false;
    }
    true
}

/// A bridge network whose gateway lives in the runtime's host netns, with
/// vrf chained after it.
fn network(ipam: &TempDir, name: &str, bridge: &str, subnets: &[&str], vrf: &str) -> NetConfList {
    let ranges: Vec<Value> = subnets.iter().map(|s| json!([{"subnet": s}])).collect();
    let mut plugins =
        vec![json!({"type": "bridge", "bridge": bridge, "isGateway": true, "isDefaultGateway": true,
        "ipam": {"type": "host-local", "ranges": ranges, "dataDir": ipam.path()}})];
    if !vrf.is_empty() {
        plugins.push(json!({"type": "vrf", "vrfname": vrf}));
    }
    conflist_value(&json!({"cniVersion": "1.0.0", "name": name, "plugins": plugins}))
}

fn ping_from(from: &TestNs, src: &str, dst: &str) -> bool {
    from.spawn(&["ping", "-n", "-q", "-c", "1", "-W", "2", "-I", src, dst], b"").unwrap().success()
}

/// `ip route show table T`, both families, without the lines of link-local
/// addresses (they differ from one container to the next).
fn table(ns: &TestNs, t: &str) -> Vec<String> {
    let mut v = Vec::new();
    for fam in ["-4", "-6"] {
        let text = ns.ip(&[fam, "route", "show", "table", t]).unwrap_or_else(|e| {
            // A table that never held a route "does not exist": empty.
            assert!(e.to_string().contains("FIB table does not exist"), "{e}");
            String::new()
        });
        v.extend(text.lines().map(|l| l.trim().to_string()).filter(|l| !l.contains("fe80::")));
    }
    v
}

fn vrf_table(ns: &TestNs, vrf: &str) -> Option<u64> {
    link_details(ns, vrf).and_then(|l| l["linkinfo"]["info_data"]["table"].as_u64())
}

fn link_details(ns: &TestNs, name: &str) -> Option<Value> {
    ns.ip_json(&["-d", "link", "show", name]).ok().map(|v| v[0].clone())
}

fn master(ns: &TestNs, name: &str) -> Option<String> {
    link(ns, name).and_then(|l| l["master"].as_str().map(str::to_string))
}

#[test]
fn the_interface_is_enslaved_its_routes_move_into_the_table_and_traffic_flows_through_it() {
    if !runnable("the_interface_is_enslaved…") {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    host.ip(&["addr", "add", "203.0.113.1/32", "dev", "lo"]).unwrap();
    let ipam = TempDir::new().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let net = network(&ipam, "blue-net", "vrfbr0", &["10.74.0.0/24", "fd00:74::/64"], "blue");
    let ctr = ContainerNs::with_lo().unwrap();
    let res = rt.add(&net, "c1", ctr.path(), "eth0", "", json!({})).unwrap();
    let (v4, v6) = (res.ips[0].address.addr.to_string(), res.ips[1].address.addr.to_string());

    assert_eq!(master(&ctr, "eth0").as_deref(), Some("blue"));
    assert_eq!(link_details(&ctr, "blue").unwrap()["linkinfo"]["info_kind"], "vrf");
    assert_eq!(vrf_table(&ctr, "blue"), Some(1), "the first table no VRF uses");
    assert!(
        addrs(&ctr, "eth0").contains(&format!("{v6}/64")),
        "the IPv6 address is back: {:?}",
        addrs(&ctr, "eth0")
    );
    let t = table(&ctr, "1");
    for want in ["default via 10.74.0.1 dev eth0", "default via fd00:74::1 dev eth0 metric 1024 pref medium"]
    {
        assert!(t.iter().any(|l| l == want), "{want} not in table 1: {t:#?}");
    }
    assert!(t.iter().any(|l| l.starts_with("10.74.0.0/24 dev eth0 proto kernel")), "{t:#?}");
    let main = table(&ctr, "main");
    assert!(main.iter().all(|l| !l.contains("dev eth0")), "{main:#?}");

    // Replies leave by the VRF's table: the main table has no route back.
    assert!(ping(&host, &v4) && ping(&host, &v6));
    assert!(ping_from(&host, "203.0.113.1", &v4), "the default route works in the VRF");

    rt.check(&net, "c1", ctr.path(), "eth0", "", json!({})).unwrap();
    rt.del(&net, "c1", ctr.path(), "eth0", "", json!({})).unwrap();
    assert!(!link_exists(&ctr, "blue"), "the VRF goes with its last port");
    assert!(table(&ctr, "1").is_empty());
}

#[test]
fn two_vrfs_keep_two_networks_with_the_same_addresses_apart_and_containers_vrfs_are_their_own() {
    if !runnable("two_vrfs_keep_two_networks…") {
        return;
    }
    let (pa, pb) = (HostNs::with_lo().unwrap(), HostNs::with_lo().unwrap());
    let (ipam_a, ipam_b) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let (rta, _ca) = runtime_in(&pa);
    let (rtb, _cb) = runtime_in(&pb);
    // Both networks are 10.75.0.0/24 with the gateway 10.75.0.1.
    let a = network(&ipam_a, "net-a", "vrfbra", &["10.75.0.0/24"], "red");
    let b = network(&ipam_b, "net-b", "vrfbrb", &["10.75.0.0/24"], "blue");
    let (c1, c2) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let r1a = rta.add(&a, "c1", c1.path(), "eth0", "", json!({})).unwrap();
    let r1b = rtb.add(&b, "c1", c1.path(), "eth1", "", json!({})).unwrap();
    let (ip1a, ip1b) = (r1a.ips[0].address.addr.to_string(), r1b.ips[0].address.addr.to_string());
    assert_eq!(ip1a, ip1b, "one address on both networks");
    assert_eq!((vrf_table(&c1, "red"), vrf_table(&c1, "blue")), (Some(1), Some(2)));
    // Each network's peer reaches it, and the answer comes back to it.
    assert!(ping(&pa, &ip1a) && ping(&pb, &ip1b));

    // A second container has its own red VRF, with table 1 as well.
    let r2a = rta.add(&a, "c2", c2.path(), "eth0", "", json!({})).unwrap();
    assert_eq!(vrf_table(&c2, "red"), Some(1));
    assert!(ping(&pa, &r2a.ips[0].address.addr.to_string()));

    rtb.del(&b, "c1", c1.path(), "eth1", "", json!({})).unwrap();
    assert!(!link_exists(&c1, "blue") && link_exists(&c1, "red"));
    assert!(ping(&pa, &ip1a), "red still works");
    rta.del(&a, "c1", c1.path(), "eth0", "", json!({})).unwrap();
    assert!(!link_exists(&c1, "red"));
    assert!(link_exists(&c2, "red") && ping(&pa, &r2a.ips[0].address.addr.to_string()), "c2 is untouched");
    rta.del(&a, "c2", c2.path(), "eth0", "", json!({})).unwrap();
    assert!(!link_exists(&c2, "red"));

    // Without VRFs the two networks' equal addresses cannot both answer.
    let (ipam_a0, ipam_b0) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let a0 = network(&ipam_a0, "net-a0", "vrfbra", &["10.75.0.0/24"], "");
    let b0 = network(&ipam_b0, "net-b0", "vrfbrb", &["10.75.0.0/24"], "");
    let plain = ContainerNs::with_lo().unwrap();
    let pa0 = rta.add(&a0, "c3", plain.path(), "eth0", "", json!({})).unwrap();
    let b0_conf = {
        let mut v = b0.raw.clone();
        v["plugins"][0]["isDefaultGateway"] = json!(false); // one default route is all a table takes
        conflist_value(&v)
    };
    let pb0 = rtb.add(&b0_conf, "c3", plain.path(), "eth1", "", json!({})).unwrap();
    let (x, y) = (pa0.ips[0].address.addr.to_string(), pb0.ips[0].address.addr.to_string());
    assert_eq!(x, y);
    assert!(!(ping(&pa, &x) && ping(&pb, &y)), "one of the answers goes to the wrong peer");
    rtb.del(&b0_conf, "c3", plain.path(), "eth1", "", json!({})).unwrap();
    rta.del(&a0, "c3", plain.path(), "eth0", "", json!({})).unwrap();
}

/// A container whose `eth0` (peer in `host`) has 10.76.0.2/24 and
/// fd00:76::2/64, a default route via 10.76.0.1 and an onlink route, as a
/// main plugin leaves it.
fn prepared(host: &TestNs) -> TestNs {
    let ctr = ContainerNs::with_lo().unwrap();
    for ns in [host, &ctr] {
        ns.set_sysctl("net.ipv6.conf.all.accept_dad", "0").unwrap();
        ns.set_sysctl("net.ipv6.conf.default.accept_dad", "0").unwrap();
    }
    veth(&ctr, "eth0", host, &format!("h{}", &ctr.name()[ctr.name().len() - 6..])).unwrap();
    ctr.ip(&["addr", "add", "10.76.0.2/24", "dev", "eth0"]).unwrap();
    ctr.ip(&["addr", "add", "fd00:76::2/64", "dev", "eth0", "nodad"]).unwrap();
    ctr.ip(&["route", "add", "default", "via", "10.76.0.1", "dev", "eth0"]).unwrap();
    // Calico's kind of route: a gateway on the link whatever the addresses say.
    ctr.ip(&["route", "add", "10.68.0.0/16", "via", "169.254.1.1", "dev", "eth0", "onlink"]).unwrap();
    assert!(wait_until(Duration::from_secs(5), || table(&ctr, "local")
        .iter()
        .any(|r| r.contains("fd00:76::2"))));
    ctr
}

fn request(ctr: &TestNs, version: &str, extra: Value) -> Value {
    let prev = CniResult::parse(
        &json!({"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth0", "sandbox": ctr.path_str()}],
            "ips": [{"address": "10.76.0.2/24", "gateway": "10.76.0.1", "interface": 0}]}),
        "1.0.0",
    )
    .unwrap();
    let mut req = json!({"cniVersion": version, "name": "net1", "type": "vrf", "vrfname": "green",
        "prevResult": prev.to_value(version).unwrap()});
    req.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    req
}

fn run(
    bin: impl AsRef<std::path::Path>,
    host: &TestNs,
    cmd: &str,
    netns: &str,
    conf: &Value,
) -> PluginOutput {
    run_on(bin, host, cmd, netns, "eth0", conf)
}

fn run_on(
    bin: impl AsRef<std::path::Path>,
    host: &TestNs,
    cmd: &str,
    netns: &str,
    ifname: &str,
    conf: &Value,
) -> PluginOutput {
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", ifname),
        ("CNI_PATH", "/nonexistent"),
    ];
    run_plugin(bin.as_ref(), Some(host.path()), &env, conf.to_string().as_bytes()).unwrap()
}

#[test]
fn ours_and_the_references_vrf_are_the_same_and_each_deletes_the_others() {
    if !runnable("ours_and_the_references_vrf…") {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    let (theirs, ours) = (prepared(&host), prepared(&host));
    let req = |ctr: &TestNs| request(ctr, "1.0.0", json!({"table": 1001}));
    let out = run(REFERENCE, &host, "ADD", &theirs.path_str(), &req(&theirs));
    assert!(out.success(), "{out:?}");
    let out = run(bin(), &host, "ADD", &ours.path_str(), &req(&ours));
    assert!(out.success(), "{out:?}");
    for ctr in [&theirs, &ours] {
        assert_eq!((master(ctr, "eth0").as_deref(), vrf_table(ctr, "green")), (Some("green"), Some(1001)));
        assert!(addrs(ctr, "eth0").contains(&"fd00:76::2/64".to_string()));
    }
    // Debian's reference (1.1.1) leaves the interface's routes behind;
    // upstream's (1.4+) moves them as we do: all else is the same.
    let moved = ["default via 10.76.0.1 dev eth0", "10.68.0.0/16 via 169.254.1.1 dev eth0 onlink"];
    let t = table(&ours, "1001");
    for line in moved {
        assert!(t.iter().any(|l| l == line), "{line} not in {t:#?}");
    }
    let rest: Vec<String> = t.into_iter().filter(|l| !moved.contains(&l.as_str())).collect();
    assert_eq!(rest, table(&theirs, "1001"));

    // Each one's CHECK and DEL on the other's VRF.
    assert!(run(bin(), &host, "CHECK", &theirs.path_str(), &req(&theirs)).success());
    assert!(run(REFERENCE, &host, "CHECK", &ours.path_str(), &req(&ours)).success());
    assert!(run(bin(), &host, "DEL", &theirs.path_str(), &req(&theirs)).success());
    assert!(run(REFERENCE, &host, "DEL", &ours.path_str(), &req(&ours)).success());
    for ctr in [&theirs, &ours] {
        assert_eq!((master(ctr, "eth0"), link_exists(ctr, "green")), (None, false));
    }
}

#[test]
fn a_failed_add_puts_the_interface_back_and_del_needs_no_netns() {
    if !runnable("a_failed_add_puts_the_interface_back…") {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = prepared(&host);
    // The kernel refuses to enslave a VRF to a VRF: the VRF made for it goes.
    ctr.ip(&["link", "add", "vrf9", "type", "vrf", "table", "9"]).unwrap();
    let spec = FingerprintSpec::new().netns("ctr", &ctr);
    let before = spec.take();
    let out = run_on(bin(), &host, "ADD", &ctr.path_str(), "vrf9", &request(&ctr, "1.0.0", json!({})));
    assert!(!out.success(), "{out:?}");
    let e: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(e["msg"].as_str().unwrap().contains("could not set VRF green as master of vrf9"), "{e}");
    let diff = before.diff(&spec.take());
    assert!(diff.is_empty(), "left behind:\n{}", diff.join("\n"));

    let req = request(&ctr, "1.0.0", json!({}));
    assert!(run(bin(), &host, "ADD", &ctr.path_str(), &req).success());
    for netns in ["", "/run/netns/cni-vrf-gone"] {
        let out = run(bin(), &host, "DEL", netns, &req);
        assert!(out.success() && out.stdout.is_empty(), "{netns:?}: {out:?}");
    }
    assert!(run(bin(), &host, "DEL", &ctr.path_str(), &req).success());
    assert!(run(bin(), &host, "DEL", &ctr.path_str(), &req).success());
    assert!(!link_exists(&ctr, "green"));
}

#[test]
fn every_result_version_passes_prev_result_through() {
    if !runnable("every_result_version…") {
        return;
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = prepared(&host);
    for version in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let req = request(&ctr, version, json!({}));
        let out = run(bin(), &host, "ADD", &ctr.path_str(), &req);
        assert!(out.success(), "{version}: {out:?}");
        let got: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(got, req["prevResult"], "{version}");
        assert_eq!(master(&ctr, "eth0").as_deref(), Some("green"), "{version}");
        assert!(run(bin(), &host, "DEL", &ctr.path_str(), &req).success(), "{version}");
        assert_eq!(master(&ctr, "eth0"), None, "{version}");
    }
}
