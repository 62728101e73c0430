//! loopback against the real kernel, each test in namespaces it creates.

use serde_json::{json, Value};
use test_harness::*;

fn lo_list(version: &str) -> NetConfList {
    conflist(&format!(
        r#"{{"cniVersion":"{version}","name":"cni-loopback","plugins":[{{"type":"loopback"}}]}}"#
    ))
}

fn lo_is_up(ns: &TestNs) -> bool {
    link(ns, "lo").and_then(|l| l["flags"].as_array().cloned()).is_some_and(|f| f.contains(&json!("UP")))
}

/// Run the plugin directly with `stdin` and CNI env (as containerd does).
fn invoke(host: &HostNs, cmd: &str, netns: &str, stdin: &Value) -> PluginOutput {
    let bin = target_bin_dir().join("loopback");
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "ctr1"),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "lo"),
        ("CNI_PATH", "/nonexistent"),
    ];
    run_plugin(&bin, Some(host.path()), &env, stdin.to_string().as_bytes()).unwrap()
}

#[test]
fn add_brings_lo_up_and_reports_it_in_every_version() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::new().unwrap();
    for version in ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] {
        let ctr = ContainerNs::new().unwrap();
        assert!(!lo_is_up(&ctr));
        let (rt, _cache) = runtime_in(&host);
        let res = rt.add(&lo_list(version), "ctr1", ctr.path(), "lo", "", json!({})).unwrap();
        assert!(lo_is_up(&ctr), "{version}: lo is not up");
        let raw = res.to_value(version).unwrap();
        assert_eq!(raw["cniVersion"], version);
        match version {
            "0.1.0" | "0.2.0" => {
                assert_eq!(raw["ip4"]["ip"], "127.0.0.1/8");
                assert_eq!(raw["ip6"]["ip"], "::1/128");
            }
            _ => {
                assert_eq!(raw["interfaces"][0]["name"], "lo");
                assert_eq!(raw["interfaces"][0]["sandbox"], ctr.path_str());
                assert_eq!(raw["ips"][0]["address"], "127.0.0.1/8");
                assert_eq!(raw["ips"][0]["interface"], 0);
                let has_version = raw["ips"][0].get("version").is_some();
                assert_eq!(has_version, matches!(version, "0.3.0" | "0.3.1" | "0.4.0"), "{version}");
            }
        }
        rt.del(&lo_list(version), "ctr1", ctr.path(), "lo", "", json!({})).unwrap();
        assert!(!lo_is_up(&ctr), "{version}: DEL leaves lo down");
    }
}

#[test]
fn containerd_call_with_031_and_check() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::new().unwrap();
    let ctr = ContainerNs::new().unwrap();
    // containerd's built-in network, exactly as it sends it.
    let conf = json!({"cniVersion":"0.3.1","name":"cni-loopback","type":"loopback"});
    let out = invoke(&host, "ADD", &ctr.path_str(), &conf);
    assert_eq!(out.exit_code, Some(0), "{}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ips"][0]["version"], "4");

    let (rt, _cache) = runtime_in(&host);
    let list = lo_list("1.1.0");
    rt.add(&list, "c2", ctr.path(), "lo", "", json!({})).unwrap();
    rt.check(&list, "c2", ctr.path(), "lo", "", json!({})).unwrap();
    ctr.ip(&["link", "set", "lo", "down"]).unwrap();
    let e = rt.check(&list, "c2", ctr.path(), "lo", "", json!({})).unwrap_err();
    assert!(e.msg().contains("lo is down"), "{}", e.msg());
    rt.status(&list).unwrap();
    rt.gc(&list, &[]).unwrap();
}

#[test]
fn del_succeeds_when_the_netns_is_gone() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::new().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let path = ctr.path_str();
    let conf = json!({"cniVersion":"1.0.0","name":"cni-loopback","type":"loopback"});
    assert_eq!(invoke(&host, "ADD", &path, &conf).exit_code, Some(0));
    drop(ctr);
    for netns in [path.as_str(), ""] {
        let out = invoke(&host, "DEL", netns, &conf);
        assert_eq!(out.exit_code, Some(0), "DEL with netns {netns:?}: {}", out.stdout);
        assert!(out.stdout.is_empty());
    }
    // ADD into a missing netns is a clear error, not a panic.
    let out = invoke(&host, "ADD", &path, &conf);
    assert_eq!(out.exit_code, Some(1));
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert!(v["msg"].as_str().unwrap().contains("does not exist"), "{v}");
}

#[test]
fn chained_loopback_passes_prev_result_through() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::new().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let prev = json!({"cniVersion":"1.0.0","ips":[{"address":"10.1.2.3/24"}]});
    let conf = json!({"cniVersion":"1.0.0","name":"n","type":"loopback","prevResult": prev});
    let out = invoke(&host, "ADD", &ctr.path_str(), &conf);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["ips"], prev["ips"]);
    assert!(lo_is_up(&ctr));
}
