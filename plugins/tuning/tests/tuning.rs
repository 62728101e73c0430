//! tuning against the real kernel, each test in namespaces and a data dir
//! it creates: chained after bridge + host-local by a libcni-like runtime,
//! and invoked directly on a veth for the input checks.

use serde_json::{json, Value};
use test_harness::*;

fn bin() -> std::path::PathBuf {
    target_bin_dir().join("tuning")
}

/// Run tuning directly inside `host` with CNI env (plus `extra`).
fn invoke(
    host: &HostNs,
    cmd: &str,
    netns: &str,
    cid: &str,
    conf: &Value,
    extra: &[(&str, &str)],
) -> PluginOutput {
    let mut env = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    for (k, v) in extra {
        env.retain(|(e, _)| e != k);
        env.push((k, v));
    }
    run_plugin(&bin(), Some(host.path()), &env, conf.to_string().as_bytes()).unwrap()
}

fn code(out: &PluginOutput) -> u64 {
    assert!(!out.success(), "expected an error: {}", out.stdout);
    serde_json::from_str::<Value>(&out.stdout).unwrap()["code"].as_u64().unwrap()
}

/// A container netns with an `eth0` (a veth whose peer stays inside).
fn ctr_with_eth0() -> ContainerNs {
    let ctr = ContainerNs::with_lo().unwrap();
    ctr.ip(&["link", "add", "eth0", "type", "veth", "peer", "name", "p0"]).unwrap();
    ctr.ip(&["link", "set", "eth0", "address", "02:00:00:00:00:01", "up"]).unwrap();
    ctr
}

/// That container and the prevResult naming its `eth0`.
fn dummy_ctr() -> (ContainerNs, Value) {
    let ctr = ctr_with_eth0();
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": "eth0", "mac": "02:00:00:00:00:01", "sandbox": ctr.path_str()}],
        "ips": [{"address": "10.5.0.2/24", "interface": 0}]});
    (ctr, prev)
}

fn conf(data_dir: &TempDir, prev: &Value, extra: Value) -> Value {
    let mut c = json!({"cniVersion": "1.0.0", "name": "tun", "type": "tuning",
                       "dataDir": data_dir.path(), "prevResult": prev});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    c
}

fn link_attr(ns: &TestNs, key: &str) -> Value {
    link(ns, "eth0").unwrap()[key].clone()
}

fn flags(ns: &TestNs) -> Vec<String> {
    link_attr(ns, "flags").as_array().unwrap().iter().map(|f| f.as_str().unwrap().to_string()).collect()
}

#[test]
fn bridge_chain_applies_everything_and_del_restores_it() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::with_lo().unwrap();
    let (ipam, data) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": "tunnet", "plugins": [
        {"type": "bridge", "bridge": "cntun0", "isGateway": true,
         "ipam": {"type": "host-local", "subnet": "10.78.0.0/24", "dataDir": ipam.path()}},
        {"type": "tuning", "dataDir": data.path(), "mac": "0a:58:0a:4e:00:99", "mtu": 1400,
         "promisc": true, "allmulti": true, "txQLen": 77,
         "sysctl": {"net.ipv4.conf.IFNAME.arp_ignore": "1", "net.core.somaxconn": "1234"}},
    ]}));
    let (rt, _cache) = runtime_in(&host);
    let before_somaxconn = ctr.sysctl("net.core.somaxconn").unwrap();
    let res = rt.add(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap();

    // Applied inside the container netns only.
    assert_eq!(ctr.sysctl("net.ipv4.conf.eth0.arp_ignore").unwrap(), "1");
    assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), "1234");
    assert_ne!(host.sysctl("net.core.somaxconn").unwrap(), "1234");
    assert_eq!(link_attr(&ctr, "address"), "0a:58:0a:4e:00:99");
    assert_eq!(link_attr(&ctr, "mtu"), 1400);
    assert_eq!(link_attr(&ctr, "txqlen"), 77);
    assert!(link_attr(&ctr, "promiscuity").as_u64().unwrap() > 0);
    assert!(flags(&ctr).contains(&"ALLMULTI".to_string()), "{:?}", flags(&ctr));
    // The result carries the new MAC on the container's entry only.
    let c = res.interfaces.iter().find(|i| !i.sandbox.is_empty()).unwrap();
    assert_eq!(c.mac, "0a:58:0a:4e:00:99");
    assert_ne!(res.interfaces[1].mac, "0a:58:0a:4e:00:99");
    // The originals are saved as the reference saves them.
    let saved: Value = serde_json::from_slice(&std::fs::read(data.join("ctr1:eth0.json")).unwrap()).unwrap();
    assert_eq!(saved["mtu"], 1500);
    assert_eq!(saved["promisc"], false);
    assert_eq!(saved["allmulti"], false);
    assert_eq!(saved["txQLen"], 1000);
    let orig_mac = saved["mac"].as_str().unwrap().to_string();
    assert_ne!(orig_mac, "0a:58:0a:4e:00:99");
    rt.check(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap();

    // Tampering is noticed by CHECK.
    ctr.ip(&["link", "set", "eth0", "mtu", "1450"]).unwrap();
    let e = rt.check(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap_err();
    assert!(e.plugin == "tuning" && e.msg().contains("MTU"), "{e:?}");
    ctr.ip(&["link", "set", "eth0", "mtu", "1400"]).unwrap();
    ctr.set_sysctl("net.core.somaxconn", "99").unwrap();
    let e = rt.check(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap_err();
    assert!(e.msg().contains("somaxconn"), "{e:?}");
    ctr.set_sysctl("net.core.somaxconn", "1234").unwrap();
    ctr.ip(&["link", "set", "eth0", "promisc", "off"]).unwrap();
    assert!(rt.check(&list, "ctr1", ctr.path(), "eth0", "", json!({})).is_err());
    ctr.ip(&["link", "set", "eth0", "promisc", "on"]).unwrap();
    rt.check(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap();

    // DEL of tuning alone (as the list's DEL runs it, before bridge's): restored.
    let rc = RuntimeConf::new("ctr1", ctr.path(), "eth0");
    let req = rt.request(&list, 1, Some(&res), &rc).unwrap();
    rt.invoke("DEL", &list, 1, &req, &rc).unwrap();
    assert_eq!(link_attr(&ctr, "address").as_str().unwrap(), orig_mac);
    assert_eq!(link_attr(&ctr, "mtu"), 1500);
    assert_eq!(link_attr(&ctr, "txqlen"), 1000);
    assert_eq!(link_attr(&ctr, "promiscuity"), 0);
    assert!(!flags(&ctr).contains(&"ALLMULTI".to_string()));
    assert!(!data.join("ctr1:eth0.json").exists());
    // Sysctls are not restored (the netns goes away with the container), as the reference.
    let _ = before_somaxconn;
    rt.del(&list, "ctr1", ctr.path(), "eth0", "", json!({})).unwrap();
    assert!(!link_exists(&ctr, "eth0"));
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[test]
fn escape_attempts_are_refused_with_code_7_and_change_nothing() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let somaxconn = ctr.sysctl("net.core.somaxconn").unwrap();
    let host_somaxconn = host.sysctl("net.core.somaxconn").unwrap();
    for bad in [
        json!({"sysctl": {"net.core.somaxconn": "4321", "kernel.hostname": "pwned"}}),
        json!({"sysctl": {"net.core.somaxconn": "4321", "net/../kernel/hostname": "pwned"}}),
        json!({"sysctl": {"net.core.somaxconn": "4321", "../../proc/sys/kernel/hostname": "pwned"}}),
        json!({"sysctl": {"net.core.somaxconn": "4321", "/proc/sys/net/core/somaxconn": "1"}}),
        json!({"sysctl": {"net.core.somaxconn": "4321", "net.ipv4.conf.IFNAME..arp_ignore": "1"}}),
        json!({"sysctl": {"net.core.somaxconn": "4321", "vm.swappiness": "1"}}),
        // A key that does not exist in the netns: somaxconn, written first, is put back.
        json!({"sysctl": {"net.core.somaxconn": "4321", "net.ipv4.zz_no_such_key": "1"}}),
        json!({"sysctl": {"net.core.somaxconn": "4321"}, "mac": "not-a-mac"}),
        json!({"sysctl": {"net.core.somaxconn": "4321"}, "mtu": 70000}),
    ] {
        let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &conf(&data, &prev, bad.clone()), &[]);
        assert_eq!(code(&out), 7, "{bad}: {}", out.stdout);
        assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), somaxconn, "{bad}");
        assert_eq!(link_attr(&ctr, "address"), "02:00:00:00:00:01");
    }
    // Duplicate keys, in the raw text.
    let dup = format!(
        r#"{{"cniVersion":"1.0.0","name":"tun","type":"tuning","dataDir":{:?},"prevResult":{prev},
            "sysctl":{{"net.core.somaxconn":"4321","net.core.somaxconn":"4322"}}}}"#,
        data.path()
    );
    let env = [
        ("CNI_COMMAND", "ADD"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", ctr.path().to_str().unwrap()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/x"),
    ];
    let out = run_plugin(&bin(), Some(host.path()), &env, dup.as_bytes()).unwrap();
    assert_eq!(code(&out), 7, "{}", out.stdout);
    assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), somaxconn);
    assert_eq!(host.sysctl("net.core.somaxconn").unwrap(), host_somaxconn);
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0, "no saved state from failed ADDs");

    // Without prevResult: refused too.
    let mut no_prev = conf(&data, &prev, json!({}));
    no_prev.as_object_mut().unwrap().remove("prevResult");
    assert_eq!(code(&invoke(&host, "ADD", &ctr.path_str(), "c1", &no_prev, &[])), 7);
}

#[test]
fn allowlist_restricts_keys() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let list = data.join("allowlist.conf");
    std::fs::write(&list, "^net\\.core\\.somaxconn$\n\n^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_]*$\n").unwrap();
    let env = [("CNI_TUNING_ALLOWLIST", list.to_str().unwrap())];
    let ok = conf(
        &data,
        &prev,
        json!({"sysctl": {"net.core.somaxconn": "555", "net.ipv4.conf.IFNAME.arp_ignore": "2"}}),
    );
    let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &ok, &env);
    assert!(out.success(), "{}", out.stdout);
    assert_eq!(ctr.sysctl("net.ipv4.conf.eth0.arp_ignore").unwrap(), "2");
    let bad = conf(&data, &prev, json!({"sysctl": {"net.ipv4.conf.eth0.arp_ignore": "1"}}));
    let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &bad, &env);
    assert_eq!(code(&out), 7);
    assert!(out.stdout.contains("not allowed"), "{}", out.stdout);
    // Go's flags work as in the reference.
    std::fs::write(&list, "(?i)^NET\\.CORE\\.SOMAXCONN$\n").unwrap();
    let only_somaxconn = conf(&data, &prev, json!({"sysctl": {"net.core.somaxconn": "556"}}));
    assert!(invoke(&host, "ADD", &ctr.path_str(), "c1", &only_somaxconn, &env).success());
    assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), "556");
}

/// The single JSON error object a failed call printed (nothing else on stdout).
fn error_of(out: &PluginOutput) -> Value {
    assert_eq!(out.exit_code, Some(1), "stdout {:?} stderr {:?}", out.stdout, out.stderr);
    serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {:?}", out.stdout))
}

#[test]
fn absurdly_long_sysctl_keys_get_a_short_json_error() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let somaxconn = ctr.sysctl("net.core.somaxconn").unwrap();
    let list = data.join("allowlist.conf");
    std::fs::write(&list, "^net\\.core\\.somaxconn$\n^net\\.ipv4\\.conf\\.IFNAME\\.[a-z_.]*$\n").unwrap();
    let long_name = format!("net.ipv4.conf.IFNAME.{}", "a".repeat(100_000));
    let long_path = format!("net.ipv4.conf.IFNAME.{}", "a.".repeat(50_000));
    for key in [long_name, long_path] {
        for env in [vec![("CNI_TUNING_ALLOWLIST", list.to_str().unwrap())], vec![]] {
            let c =
                conf(&data, &prev, json!({"mtu": 1400, "sysctl": {"net.core.somaxconn": "4321", &key: "1"}}));
            let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &env);
            let err = error_of(&out);
            assert_eq!(err["code"], 7, "{err}");
            let msg = err["msg"].as_str().unwrap();
            assert!(msg.contains("too long") && msg.len() < 300, "{msg}");
            assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), somaxconn);
            assert_eq!(link_attr(&ctr, "mtu"), 1500);
        }
    }
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 1, "only the allowlist");
}

#[test]
fn pathological_allowlist_patterns_finish() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let list = data.join("allowlist.conf");
    std::fs::write(&list, "(a*)*b\n^net(\\.(a|a)+)+$\n^net\\.core\\.(.*)*x\n").unwrap();
    let env = [("CNI_TUNING_ALLOWLIST", list.to_str().unwrap())];
    // The longest key that passes the length checks, in runs of `a`.
    let key = format!("net.core{}", format!(".{}", "a".repeat(250)).repeat(15));
    let c = conf(&data, &prev, json!({"sysctl": {&key: "1"}}));
    let err = error_of(&invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &env));
    assert_eq!(err["code"], 7, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("is not allowed"), "{err}");
    // A matching key gets through (and then does not exist in the netns).
    let c = conf(&data, &prev, json!({"sysctl": {format!("net{}", ".aaaa".repeat(20)): "1"}}));
    let err = error_of(&invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &env));
    assert!(err["msg"].as_str().unwrap().contains("does not exist"), "{err}");
}

#[test]
fn a_broken_allowlist_is_reported_as_the_nodes_problem_when_sysctls_are_asked() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let list = data.join("allowlist.conf");
    std::fs::write(&list, "^net\\.core\\.somaxconn$\n(net\\.ipv4\n").unwrap();
    let env = [("CNI_TUNING_ALLOWLIST", list.to_str().unwrap())];
    let somaxconn = ctr.sysctl("net.core.somaxconn").unwrap();
    let c = conf(&data, &prev, json!({"sysctl": {"net.core.somaxconn": "4321"}}));
    let err = error_of(&invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &env));
    assert_eq!(err["code"], 999, "{err}");
    let msg = err["msg"].as_str().unwrap();
    assert!(msg.contains(list.to_str().unwrap()) && msg.contains("line 2"), "{msg}");
    assert!(!err["details"].as_str().unwrap_or_default().is_empty(), "{err}");
    assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), somaxconn);
    // Without sysctls the allowlist is not even read.
    let c = conf(&data, &prev, json!({"mtu": 1400}));
    let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &env);
    assert!(out.success(), "{}", out.stdout);
    assert_eq!(link_attr(&ctr, "mtu"), 1400);
}

#[test]
fn args_override_the_config_in_the_references_order() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let mac_of = |ns: &TestNs| link_attr(ns, "address").as_str().unwrap().to_string();
    let env_mac = [("CNI_ARGS", "IgnoreUnknown=1;MAC=02:00:00:00:00:0b")];
    let cases = [
        (json!({"mac": "02:00:00:00:00:0a"}), "02:00:00:00:00:0b"),
        (
            json!({"mac": "02:00:00:00:00:0a", "runtimeConfig": {"mac": "02:00:00:00:00:0c"}}),
            "02:00:00:00:00:0c",
        ),
        (
            json!({"mac": "02:00:00:00:00:0a", "runtimeConfig": {"mac": "02:00:00:00:00:0c"},
                   "args": {"cni": {"mac": "02:00:00:00:00:0d"}}}),
            "02:00:00:00:00:0d",
        ),
    ];
    for (extra, want) in cases {
        let c = conf(&data, &prev, extra.clone());
        let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &env_mac);
        assert!(out.success(), "{extra}: {}", out.stdout);
        assert_eq!(mac_of(&ctr), want, "{extra}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["interfaces"][0]["mac"], want);
        assert!(invoke(&host, "DEL", &ctr.path_str(), "c1", &c, &env_mac).success());
        assert_eq!(mac_of(&ctr), "02:00:00:00:00:01", "{extra}: restored");
    }
    // args.cni: sysctl entries merge over the config's, scalars override.
    let c = conf(
        &data,
        &prev,
        json!({"mtu": 1400, "sysctl": {"net.core.somaxconn": "100", "net.ipv4.conf.IFNAME.arp_ignore": "1"},
               "args": {"cni": {"mtu": 1300, "txQLen": 5, "allmulti": true,
                                "sysctl": {"net.core.somaxconn": "200"}}}}),
    );
    let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &[]);
    assert!(out.success(), "{}", out.stdout);
    assert_eq!(link_attr(&ctr, "mtu"), 1300);
    assert_eq!(link_attr(&ctr, "txqlen"), 5);
    assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), "200");
    assert_eq!(ctr.sysctl("net.ipv4.conf.eth0.arp_ignore").unwrap(), "1");
    let mut check = c.clone();
    check["cniVersion"] = json!("1.1.0");
    assert!(invoke(&host, "CHECK", &ctr.path_str(), "c1", &check, &[]).success());
    // DEL with the netns gone: nothing to restore, the file goes anyway.
    assert!(invoke(&host, "DEL", "", "c1", &c, &[]).success());
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

#[test]
fn gc_removes_saved_state_of_stale_attachments_of_its_network_only() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let data = TempDir::new().unwrap();
    let mut c = conf(&data, &prev, json!({"mtu": 1400}));
    for cid in ["live", "stale"] {
        assert!(invoke(&host, "ADD", &ctr.path_str(), cid, &c, &[]).success());
    }
    let mut other = c.clone();
    other["name"] = json!("othernet");
    assert!(invoke(&host, "ADD", &ctr.path_str(), "other", &other, &[]).success());
    // A file the reference wrote (no owner): never ours to collect.
    std::fs::write(data.join("legacy_eth0.json"), r#"{"mtu":1500}"#).unwrap();
    c["cniVersion"] = json!("1.1.0");
    c.as_object_mut().unwrap().remove("prevResult");
    c["cni.dev/valid-attachments"] = json!([{"containerID": "live", "ifname": "eth0"}]);
    let out = invoke(&host, "GC", "", "", &c, &[]);
    assert!(out.success(), "{}", out.stdout);
    let mut left: Vec<String> = std::fs::read_dir(data.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["legacy_eth0.json", "live:eth0.json", "other:eth0.json"]);
    assert!(invoke(&host, "STATUS", "", "", &c, &[]).success());
}

#[test]
fn podmans_empty_entry_passes_prev_result_through() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = ctr_with_eth0();
    // As captured from Podman 4 (shared/clients/podman/plugin-calls.txt).
    let prev = json!({"cniVersion":"0.4.0","interfaces":[{"name":"cni-podman1","mac":"56:83:f9:87:d3:dc"},
        {"name":"vethcc29e074","mac":"52:8a:dc:86:6f:af"},
        {"name":"eth0","mac":"b6:72:20:1a:38:b4","sandbox":ctr.path_str()}],
        "ips":[{"version":"4","interface":2,"address":"10.231.1.2/24","gateway":"10.231.1.1"}],
        "routes":[{"dst":"0.0.0.0/0"}],"dns":{}});
    let c = json!({"cniVersion":"0.4.0","name":"br1","prevResult": prev,"type":"tuning"});
    let cid = format!("podman{}", std::process::id());
    let env = [("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAME=c1")];
    let out = invoke(&host, "ADD", &ctr.path_str(), &cid, &c, &env);
    assert!(out.success(), "{}", out.stdout);
    let mut want = prev.clone();
    want.as_object_mut().unwrap().remove("dns");
    let got: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(got["interfaces"], want["interfaces"]);
    assert_eq!(got["ips"], want["ips"]);
    assert_eq!(got["routes"], want["routes"]);
    assert_eq!(got["cniVersion"], "0.4.0");
    assert!(!std::path::Path::new(&format!("/run/cni/tuning/{cid}:eth0.json")).exists());
    assert!(invoke(&host, "CHECK", &ctr.path_str(), &cid, &c, &env).success());
    assert!(invoke(&host, "DEL", &ctr.path_str(), &cid, &c, &env).success());
}

#[test]
fn state_files_are_neither_written_nor_read_through_symlinks() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (ctr, prev) = dummy_ctr();
    let (data, elsewhere) = (TempDir::new().unwrap(), TempDir::new().unwrap());
    let victim = elsewhere.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    let state = data.join("c1:eth0.json");
    for planted in [state.with_extension("json.tmp"), state.clone()] {
        std::os::unix::fs::symlink(&victim, &planted).unwrap();
        let c = conf(&data, &prev, json!({"mtu": 1400}));
        let out = invoke(&host, "ADD", &ctr.path_str(), "c1", &c, &[]);
        assert!(out.success(), "{}", out.stdout);
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        assert!(std::fs::symlink_metadata(&state).unwrap().is_file());
        assert!(invoke(&host, "DEL", &ctr.path_str(), "c1", &c, &[]).success());
        assert_eq!(link_attr(&ctr, "mtu"), 1500);
        let _ = std::fs::remove_file(&planted);
    }
    // A planted state file is not read: DEL restores nothing from it and removes the link only.
    let fake = elsewhere.join("fake.json");
    std::fs::write(&fake, r#"{"mtu": 1280, "containerID": "c1", "ifname": "eth0"}"#).unwrap();
    std::os::unix::fs::symlink(&fake, &state).unwrap();
    assert!(invoke(&host, "DEL", &ctr.path_str(), "c1", &conf(&data, &prev, json!({})), &[]).success());
    assert_eq!(link_attr(&ctr, "mtu"), 1500);
    assert!(std::fs::symlink_metadata(&state).is_err());
    assert!(fake.exists());
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

/// A container netns whose interface `ifname` (a veth, peer inside) has this MAC and MTU.
fn ctr_with(ifname: &str, mac: &str, mtu: u32) -> (ContainerNs, Value) {
    let ctr = ContainerNs::with_lo().unwrap();
    ctr.ip(&["link", "add", ifname, "type", "veth", "peer", "name", "p0"]).unwrap();
    ctr.ip(&["link", "set", ifname, "address", mac, "mtu", &mtu.to_string(), "up"]).unwrap();
    let prev = json!({"cniVersion": "1.0.0",
        "interfaces": [{"name": ifname, "mac": mac, "sandbox": ctr.path_str()}],
        "ips": [{"address": "10.5.0.2/24", "interface": 0}]});
    (ctr, prev)
}

fn mac_mtu(ns: &TestNs, ifname: &str) -> (String, u64) {
    let l = link(ns, ifname).unwrap();
    (l["address"].as_str().unwrap().to_string(), l["mtu"].as_u64().unwrap())
}

fn files_in(dir: &TempDir) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn attachments_whose_old_file_names_collide_keep_their_own_state() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let data = TempDir::new().unwrap();
    // ("a", "b_eth0") and ("a_b", "eth0"): both were `a_b_eth0.json`.
    let (ctr_a, prev_a) = ctr_with("b_eth0", "02:00:00:00:0a:01", 1450);
    let (ctr_b, prev_b) = ctr_with("eth0", "02:00:00:00:0b:01", 1480);
    let conf_a = conf(&data, &prev_a, json!({"mac": "02:00:00:00:0a:99", "mtu": 1400}));
    let conf_b = conf(&data, &prev_b, json!({"mac": "02:00:00:00:0b:99", "mtu": 1300}));
    let env_a = [("CNI_IFNAME", "b_eth0")];
    for order in [["a", "a_b"], ["a_b", "a"]] {
        assert!(invoke(&host, "ADD", &ctr_a.path_str(), "a", &conf_a, &env_a).success());
        assert!(invoke(&host, "ADD", &ctr_b.path_str(), "a_b", &conf_b, &[]).success());
        assert_eq!(mac_mtu(&ctr_a, "b_eth0"), ("02:00:00:00:0a:99".into(), 1400));
        assert_eq!(mac_mtu(&ctr_b, "eth0"), ("02:00:00:00:0b:99".into(), 1300));
        for cid in order {
            if cid == "a" {
                assert!(invoke(&host, "DEL", &ctr_a.path_str(), "a", &conf_a, &env_a).success());
                assert_eq!(mac_mtu(&ctr_a, "b_eth0"), ("02:00:00:00:0a:01".into(), 1450), "{order:?}");
            } else {
                assert!(invoke(&host, "DEL", &ctr_b.path_str(), "a_b", &conf_b, &[]).success());
                assert_eq!(mac_mtu(&ctr_b, "eth0"), ("02:00:00:00:0b:01".into(), 1480), "{order:?}");
            }
        }
        assert!(files_in(&data).is_empty(), "{:?}", files_in(&data));
    }
}

#[test]
fn long_container_ids_get_their_own_state() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let data = TempDir::new().unwrap();
    // 500 characters, alike but for the last one.
    let ids = [format!("{}1", "c".repeat(499)), format!("{}2", "c".repeat(499))];
    let ctrs = [ctr_with("eth0", "02:00:00:00:0c:01", 1450), ctr_with("eth0", "02:00:00:00:0c:02", 1480)];
    let confs: Vec<Value> = ctrs.iter().map(|(_, prev)| conf(&data, prev, json!({"mtu": 1300}))).collect();
    for ((id, (ctr, _)), c) in ids.iter().zip(&ctrs).zip(&confs) {
        let out = invoke(&host, "ADD", &ctr.path_str(), id, c, &[]);
        assert!(out.success(), "{}", out.stdout);
        assert_eq!(mac_mtu(ctr, "eth0").1, 1300);
    }
    assert_eq!(files_in(&data).len(), 2, "{:?}", files_in(&data));
    assert!(invoke(&host, "DEL", &ctrs[1].0.path_str(), &ids[1], &confs[1], &[]).success());
    assert_eq!(mac_mtu(&ctrs[1].0, "eth0"), ("02:00:00:00:0c:02".into(), 1480));
    assert_eq!(mac_mtu(&ctrs[0].0, "eth0").1, 1300);
    assert!(invoke(&host, "DEL", &ctrs[0].0.path_str(), &ids[0], &confs[0], &[]).success());
    assert_eq!(mac_mtu(&ctrs[0].0, "eth0"), ("02:00:00:00:0c:01".into(), 1450));
    assert!(files_in(&data).is_empty(), "{:?}", files_in(&data));
}

#[test]
fn state_saved_under_the_previous_naming_is_used_when_it_can_only_be_ours() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let data = TempDir::new().unwrap();
    let (ctr, prev) = ctr_with("eth0", "02:00:00:00:00:01", 1400);
    let c = conf(&data, &prev, json!({"mtu": 1300}));
    let put = |name: &str, v: Value| std::fs::write(data.join(name), v.to_string()).unwrap();
    // Written by the previous version (owner inside), and by the reference (no owner, one `_`).
    put("old1_eth0.json", json!({"mtu": 1450, "containerID": "old1", "ifname": "eth0", "network": "tun"}));
    put("ref1_eth0.json", json!({"mtu": 1460}));
    for (cid, mtu) in [("old1", 1450), ("ref1", 1460)] {
        assert!(invoke(&host, "DEL", &ctr.path_str(), cid, &c, &[]).success());
        assert_eq!(mac_mtu(&ctr, "eth0").1, mtu, "{cid}");
        ctr.ip(&["link", "set", "eth0", "mtu", "1400"]).unwrap();
    }
    assert!(files_in(&data).is_empty(), "{:?}", files_in(&data));
    // Without an owner `a_b_eth0.json` may be ("a", "b_eth0")'s: not used, left alone.
    put("a_b_eth0.json", json!({"mtu": 1234}));
    assert!(invoke(&host, "DEL", &ctr.path_str(), "a_b", &c, &[]).success());
    assert_eq!(mac_mtu(&ctr, "eth0").1, 1400);
    // With one, it is that owner's only.
    put("a_b_eth0.json", json!({"mtu": 1234, "containerID": "a", "ifname": "b_eth0"}));
    assert!(invoke(&host, "DEL", &ctr.path_str(), "a_b", &c, &[]).success());
    assert_eq!(mac_mtu(&ctr, "eth0").1, 1400);
    assert_eq!(files_in(&data), ["a_b_eth0.json"]);
    std::fs::remove_file(data.join("a_b_eth0.json")).unwrap();
    // An ADD after the upgrade keeps the originals saved under the old name, in a file of the new name.
    put("old2_eth0.json", json!({"mtu": 1450, "containerID": "old2", "ifname": "eth0", "network": "tun"}));
    assert!(invoke(&host, "ADD", &ctr.path_str(), "old2", &c, &[]).success());
    assert_eq!(mac_mtu(&ctr, "eth0").1, 1300);
    assert_eq!(files_in(&data), ["old2:eth0.json"]);
    assert!(invoke(&host, "DEL", &ctr.path_str(), "old2", &c, &[]).success());
    assert_eq!(mac_mtu(&ctr, "eth0").1, 1450);
    assert!(files_in(&data).is_empty(), "{:?}", files_in(&data));
}

#[test]
fn a_state_file_naming_another_attachment_is_never_taken_as_ours() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let data = TempDir::new().unwrap();
    let (ctr, prev) = ctr_with("eth0", "02:00:00:00:00:01", 1400);
    let somaxconn = ctr.sysctl("net.core.somaxconn").unwrap();
    let theirs = json!({"mtu": 1234, "containerID": "other", "ifname": "eth0"});
    std::fs::write(data.join("c9:eth0.json"), theirs.to_string()).unwrap();
    let c = conf(&data, &prev, json!({"mtu": 1300, "sysctl": {"net.core.somaxconn": "4321"}}));
    let err = error_of(&invoke(&host, "ADD", &ctr.path_str(), "c9", &c, &[]));
    assert_eq!(err["code"], 999, "{err}");
    assert!(err["msg"].as_str().unwrap().contains("\"other\""), "{err}");
    assert_eq!(mac_mtu(&ctr, "eth0").1, 1400);
    assert_eq!(ctr.sysctl("net.core.somaxconn").unwrap(), somaxconn);
    assert!(invoke(&host, "DEL", &ctr.path_str(), "c9", &c, &[]).success());
    assert_eq!(mac_mtu(&ctr, "eth0").1, 1400);
    let left: Value = serde_json::from_slice(&std::fs::read(data.join("c9:eth0.json")).unwrap()).unwrap();
    assert_eq!(left, theirs);
}

/// An ADD killed between creating its temporary state file and renaming it
/// (found by the chaos campaign) leaves `<name>.json.tmp`; the runtime's DEL
/// of that container must remove it, as it removes the state file itself,
/// whether or not a saved state is there too.
#[test]
fn del_removes_the_temporary_state_file_of_an_interrupted_add() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let data = TempDir::new().unwrap();
    let (ctr, prev) = dummy_ctr();
    let c = conf(&data, &prev, json!({"mtu": 1400}));
    let netns = ctr.path_str();
    for cid in ["c1".to_string(), "d".repeat(300)] {
        // The state file's name, from a clean ADD.
        assert!(invoke(&host, "ADD", &netns, &cid, &c, &[]).success());
        let state = files_in(&data).pop().unwrap();
        assert!(invoke(&host, "DEL", &netns, &cid, &c, &[]).success());
        // As the killed ADD left it: a partial write never renamed into place.
        std::fs::write(data.join(format!("{state}.tmp")), "{\"mtu\": 15").unwrap();
        let out = invoke(&host, "DEL", &netns, &cid, &c, &[]);
        assert!(out.success(), "{}", out.stdout);
        assert!(files_in(&data).is_empty(), "{cid:.10}…: {:?}", files_in(&data));
        // Beside the saved state of a later ADD: both go, the link is restored.
        assert!(invoke(&host, "ADD", &netns, &cid, &c, &[]).success());
        std::fs::write(data.join(format!("{state}.tmp")), "{").unwrap();
        assert!(invoke(&host, "DEL", &netns, &cid, &c, &[]).success());
        assert!(files_in(&data).is_empty(), "{cid:.10}…: {:?}", files_in(&data));
        assert_eq!(link_attr(&ctr, "mtu"), 1500);
    }
}
