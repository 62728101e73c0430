//! Tests of the static IPAM plugin: exec'd directly (no root: static never
//! touches the kernel) for results and errors, and as the IPAM of bridge and
//! macvlan in network namespaces (root), driven as libcni drives a conflist.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use serde_json::{json, Value};
use test_harness::*;

fn bin() -> std::path::PathBuf {
    let b = target_bin_dir().join("static");
    assert!(b.is_file(), "build the plugins first (cargo build --workspace --bins)");
    b
}

/// Run static directly for `cmd` with `conf`; (exit code, stdout as JSON or Null).
fn run(cmd: &str, conf: &Value, cni_args: &str) -> (Option<i32>, Value) {
    let stdin = conf.to_string();
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/nonexistent/netns"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
        ("CNI_ARGS", cni_args),
    ];
    let out = run_plugin(&bin(), None, &env, stdin.as_bytes()).unwrap();
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    (out.exit_code, serde_json::from_str(&out.stdout).unwrap_or(Value::Null))
}

fn ipam_conf(ver: &str) -> Value {
    json!({"cniVersion": ver, "name": "st", "type": "bridge", "ipam": {"type": "static",
        "addresses": [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                      {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0::1"}],
        "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1"},
                   {"dst": "3ffe:ffff:0:01ff::1/64"}],
        "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}}})
}

// ----- the plugin alone ------------------------------------------------------------------

#[test]
fn add_returns_the_configured_addresses_routes_and_dns_in_every_version() {
    for ver in ["1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"] {
        let (code, v) = run("ADD", &ipam_conf(ver), "");
        assert_eq!(code, Some(0), "{ver}: {v}");
        assert_eq!(v["cniVersion"], ver);
        assert_eq!(v["ips"][0]["address"], "10.10.0.1/24");
        assert_eq!(v["ips"][0]["gateway"], "10.10.0.254");
        assert_eq!(v["ips"][1]["address"], "3ffe:ffff:0:1ff::1/64");
        assert!(v["ips"][0].get("interface").is_none(), "IPAM results name no interface: {v}");
        assert_eq!(v["ips"][0].get("version").is_some(), ver.starts_with("0."), "{ver}: {v}");
        assert_eq!(v["routes"][1], json!({"dst": "192.168.0.0/16", "gw": "10.10.5.1"}));
        assert_eq!(
            v["dns"],
            json!({"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]})
        );
    }
    // 0.2.0: one address per family, routes split by family.
    let mut conf = ipam_conf("0.2.0");
    let (code, v) = run("ADD", &conf, "");
    assert_eq!(code, Some(0), "{v}");
    assert_eq!(v["ip4"]["ip"], "10.10.0.1/24");
    assert_eq!(v["ip4"]["gateway"], "10.10.0.254");
    assert_eq!(v["ip4"]["routes"].as_array().unwrap().len(), 2);
    assert_eq!(v["ip6"]["ip"], "3ffe:ffff:0:1ff::1/64");
    // Two IPv4 addresses do not fit 0.2.0: code 7 naming the reason.
    conf["ipam"]["addresses"][1]["address"] = json!("10.10.1.1/24");
    let (code, v) = run("ADD", &conf, "");
    assert_eq!((code, v["code"].as_u64()), (Some(1), Some(7)), "{v}");
    assert!(v["msg"].as_str().unwrap().contains("more than 1 address per family"), "{v}");
}

#[test]
fn runtime_ips_win_over_args_which_win_over_cni_args() {
    let mut conf = ipam_conf("1.0.0");
    let (_, v) = run("ADD", &conf, "IP=10.10.0.7/24;GATEWAY=10.10.0.1");
    let got: Vec<&Value> = v["ips"].as_array().unwrap().iter().map(|i| &i["address"]).collect();
    assert_eq!(got, ["10.10.0.1/24", "3ffe:ffff:0:1ff::1/64", "10.10.0.7/24"], "{v}");
    assert_eq!(v["ips"][2]["gateway"], "10.10.0.1");

    conf["args"] = json!({"cni": {"ips": ["10.20.0.2/16"]}});
    let (_, v) = run("ADD", &conf, "IP=10.10.0.7/24");
    assert_eq!(v["ips"], json!([{"address": "10.20.0.2/16"}]));

    conf["runtimeConfig"] = json!({"ips": ["10.30.0.3/24", "fd30::3/64"]});
    let (_, v) = run("ADD", &conf, "IP=10.10.0.7/24");
    assert_eq!(v["ips"], json!([{"address": "10.30.0.3/24"}, {"address": "fd30::3/64"}]));
}

#[test]
fn bad_input_is_code_7_or_4_and_unknown_cni_args_need_ignore_unknown() {
    let conf = ipam_conf("1.0.0");
    for (args, code) in [("IP=10.0.0.1", 7), ("IP=10.0.0.1/24;GATEWAY=nope", 7), ("FOO=1", 4), ("IP", 4)] {
        let (exit, v) = run("ADD", &conf, args);
        assert_eq!((exit, v["code"].as_u64()), (Some(1), Some(code)), "{args}: {v}");
    }
    let (exit, _) = run("ADD", &conf, "FOO=1;IgnoreUnknown=1");
    assert_eq!(exit, Some(0));
    let (exit, v) = run("ADD", &json!({"cniVersion": "1.0.0", "name": "st", "type": "bridge"}), "");
    assert_eq!((exit, v["code"].as_u64()), (Some(1), Some(7)));
    assert_eq!(v["msg"], "IPAM config missing 'ipam' key");
}

#[test]
fn check_compares_addresses_and_gateways_with_prev_result() {
    let mut conf = ipam_conf("1.0.0");
    let (exit, v) = run("CHECK", &conf, "");
    assert_eq!((exit, v["msg"].as_str()), (Some(1), Some("Required prevResult missing")));

    conf["prevResult"] = json!({"cniVersion": "1.0.0", "ips": [
        {"address": "10.10.0.1/24", "gateway": "10.10.0.254", "interface": 0},
        {"address": "3ffe:ffff:0:1ff::1/64", "gateway": "3ffe:ffff::1", "interface": 0}]});
    assert_eq!(run("CHECK", &conf, "").0, Some(0));

    conf["prevResult"]["ips"][0]["gateway"] = json!("10.10.0.1");
    let (exit, v) = run("CHECK", &conf, "");
    assert_eq!(exit, Some(1));
    assert!(v["msg"].as_str().unwrap().contains("has gateway 10.10.0.1 in prevResult"), "{v}");

    conf["prevResult"]["ips"].as_array_mut().unwrap().remove(0);
    let (exit, v) = run("CHECK", &conf, "");
    assert_eq!(exit, Some(1));
    assert!(
        v["msg"].as_str().unwrap().contains("10.10.0.1/24 of interface eth0 is not in prevResult"),
        "{v}"
    );
}

#[test]
fn del_gc_and_status_succeed_without_state_or_netns() {
    let conf = ipam_conf("1.1.0");
    assert_eq!(run("DEL", &conf, "").0, Some(0));
    let mut gc = conf.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    assert_eq!(run("GC", &gc, "").0, Some(0));
    assert_eq!(run("STATUS", &conf, "").0, Some(0));
    let (exit, v) = run("VERSION", &conf, "");
    assert_eq!(exit, Some(0));
    assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 7);
}

// ----- chained after bridge and macvlan (root) --------------------------------------------

fn bridge_list(ver: &str) -> NetConfList {
    conflist_value(&json!({"cniVersion": ver, "name": "stbr", "plugins": [{
        "type": "bridge", "bridge": "stbr0", "isGateway": true,
        "ipam": {"type": "static",
            "addresses": [{"address": "10.66.0.5/24", "gateway": "10.66.0.1"},
                          {"address": "fd66::5/64", "gateway": "fd66::1"}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "10.67.0.0/16", "gw": "10.66.0.9"}],
            "dns": {"nameservers": ["10.66.0.1"], "search": ["st.example"]}}}]}))
}

#[test]
fn bridge_with_static_addresses_routes_and_dns() {
    require_root!();
    let host = HostNs::with_lo().unwrap();
    let c = ContainerNs::with_lo().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let list = bridge_list("1.1.0");
    let res = rt.add(&list, "s1", c.path(), "eth0", "", json!({})).unwrap();

    assert_eq!(res.dns.nameservers, ["10.66.0.1"]);
    assert_eq!(res.dns.search, ["st.example"]);
    assert_eq!(res.ips.len(), 2);
    assert_eq!(res.ips[0].interface, Some(2), "bridge puts IPAM's addresses on the container interface");
    let mut have = addrs(&c, "eth0");
    have.retain(|a| !a.starts_with("fe80"));
    assert_eq!(have, ["10.66.0.5/24", "fd66::5/64"]);
    assert!(has_route(&c, "default"));
    assert!(has_route(&c, "10.67.0.0/16"));
    // isGateway: the configured gateway is on the bridge, and reachable.
    assert!(addrs(&host, "stbr0").contains(&"10.66.0.1/24".to_string()), "{:?}", addrs(&host, "stbr0"));
    assert!(ping(&c, "10.66.0.1"), "the container reaches its gateway");
    rt.check(&list, "s1", c.path(), "eth0", "", json!({})).unwrap();

    rt.del(&list, "s1", c.path(), "eth0", "", json!({})).unwrap();
    assert!(!link_exists(&c, "eth0"));
    // Again, and without a netns: nothing to release, still success.
    rt.del(&list, "s1", c.path(), "eth0", "", json!({})).unwrap();
    rt.del(&list, "s1", "", "eth0", "", json!({})).unwrap();
}

/// A host whose `m0` is a veth into a LAN peer at 10.77.0.1/24.
fn lan() -> (HostNs, TestNs) {
    let host = HostNs::with_lo().unwrap();
    let peer = TestNs::with_lo().unwrap();
    veth(&host, "m0", &peer, "lan0").unwrap();
    peer.ip(&["addr", "add", "10.77.0.1/24", "dev", "lan0"]).unwrap();
    (host, peer)
}

fn macvlan_list(ipam: Value) -> NetConfList {
    conflist_value(&json!({"cniVersion": "1.0.0", "name": "stmv", "plugins": [{
        "type": "macvlan", "master": "m0", "ipam": ipam, "capabilities": {"ips": true}}]}))
}

#[test]
fn macvlan_with_the_ips_capability_and_cni_args() {
    require_root!();
    let (host, peer) = lan();
    let (rt, _cache) = runtime_in(&host);
    let list = macvlan_list(json!({"type": "static", "routes": [{"dst": "0.0.0.0/0"}]}));

    // Capability `ips` (what Podman sends for --ip): runtimeConfig.ips.
    let c1 = ContainerNs::with_lo().unwrap();
    let rc = RuntimeConf::new("s1", c1.path(), "eth0").cap_args(json!({"ips": ["10.77.0.20/24"]}));
    let res = rt.add_rt(&list, &rc).unwrap();
    assert_eq!(res.ips[0].address.to_string(), "10.77.0.20/24");
    assert_eq!(
        addrs(&c1, "eth0").iter().filter(|a| a.starts_with("10.")).collect::<Vec<_>>(),
        ["10.77.0.20/24"]
    );
    assert!(ping(&c1, "10.77.0.1"), "the container is on the LAN");

    // CNI_ARGS IP/GATEWAY: the default route goes via GATEWAY.
    let c2 = ContainerNs::with_lo().unwrap();
    let rc2 = RuntimeConf::new("s2", c2.path(), "eth0")
        .cni_args("IgnoreUnknown=1;IP=10.77.0.21/24;GATEWAY=10.77.0.1");
    let res = rt.add_rt(&list, &rc2).unwrap();
    assert_eq!(res.ips[0].gateway, Some("10.77.0.1".parse().unwrap()));
    let default: Vec<Value> =
        routes(&c2).as_array().unwrap().iter().filter(|r| r["dst"] == "default").cloned().collect();
    assert_eq!(default.len(), 1, "{default:?}");
    assert_eq!(default[0]["gateway"], "10.77.0.1");
    assert!(ping(&peer, "10.77.0.21"));
    rt.check_rt(&list, &rc2).unwrap();

    rt.del_rt(&list, &rc).unwrap();
    rt.del_rt(&list, &rc2).unwrap();
    assert!(!link_exists(&c1, "eth0") && !link_exists(&c2, "eth0"));
}

#[test]
fn a_failed_add_leaves_nothing_in_the_container() {
    require_root!();
    let (host, _peer) = lan();
    let (rt, _cache) = runtime_in(&host);
    let c = ContainerNs::with_lo().unwrap();

    // Bad input to static: macvlan reports static's code 7 and removes its link.
    let list = macvlan_list(json!({"type": "static", "addresses": [{"address": "10.77.0.30"}]}));
    let e = rt.add(&list, "s3", c.path(), "eth0", "", json!({})).unwrap_err();
    assert_eq!(e.code(), Some(7), "{e}");
    assert!(e.msg().contains("CIDR notation"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);

    // A route the kernel refuses (its gateway is on no subnet): undone too.
    let list = macvlan_list(json!({"type": "static", "addresses": [{"address": "10.77.0.31/24"}],
        "routes": [{"dst": "10.99.0.0/16", "gw": "10.200.0.1"}]}));
    let e = rt.add(&list, "s4", c.path(), "eth0", "", json!({})).unwrap_err();
    assert!(e.msg().contains("10.99.0.0/16"), "{e}");
    assert_eq!(link_names(&c), ["lo"]);
    assert_eq!(link_names(&host), ["lo", "m0"]);
}
