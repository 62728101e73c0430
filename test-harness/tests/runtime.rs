//! The runtime against recording fake plugins (no root needed).

use serde_json::{json, Value};
use test_harness::{conflist_value, FakePlugins, Runtime, TempDir};

fn result(ver: &str, ip: &str) -> Value {
    json!({"cniVersion": ver,
           "interfaces": [{"name": "eth0", "mac": "0a:00:00:00:00:01", "sandbox": "/run/netns/c"}],
           "ips": [{"address": ip, "gateway": "10.1.0.1", "interface": 0}],
           "routes": [{"dst": "0.0.0.0/0"}]})
}

struct Setup {
    fake: FakePlugins,
    _cache: TempDir,
    rt: Runtime,
}

fn setup(plugins: &[(&str, Value)]) -> Setup {
    let fake = FakePlugins::new().unwrap();
    for (name, res) in plugins {
        fake.plugin(name, res.clone()).unwrap();
    }
    let cache = TempDir::new().unwrap();
    let rt = Runtime::new(vec![fake.bin_dir()], None, cache.path());
    Setup { fake, _cache: cache, rt }
}

fn chain(ver: &str) -> Value {
    json!({
        "cniVersion": ver, "name": "testnet",
        "plugins": [
            {"type": "main", "bridge": "br0", "ipam": {"type": "host-local"}},
            {"type": "pm", "capabilities": {"portMappings": true, "aliases": false}},
            {"type": "last"}
        ]
    })
}

fn three() -> Setup {
    setup(&[
        // main answers in 1.0.0 whatever the list says; the runtime converts.
        ("main", result("1.0.0", "10.1.0.2/24")),
        ("pm", result("0.4.0", "10.1.0.2/24")),
        ("last", result("0.4.0", "10.1.0.3/24")),
    ])
}

const CAPS: &str = r#"{"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}], "aliases": {"testnet": ["a"]}}"#;

#[test]
fn add_runs_in_order_chaining_prev_result_in_the_list_version() {
    let s = three();
    let list = conflist_value(&chain("0.4.0"));
    let caps: Value = serde_json::from_str(CAPS).unwrap();
    let res =
        s.rt.add(&list, "ctr1", "/run/netns/c", "eth0", "IgnoreUnknown=1;K8S_POD_NAME=p", caps).unwrap();
    assert_eq!(res.cni_version, "0.4.0");
    assert_eq!(res.ips[0].address.to_string(), "10.1.0.3/24", "the final result is the last plugin's");

    let calls = s.fake.calls();
    let order: Vec<_> = calls.iter().map(|c| (c.plugin.as_str(), c.command.as_str())).collect();
    assert_eq!(order, [("main", "ADD"), ("pm", "ADD"), ("last", "ADD")]);
    for c in &calls {
        assert_eq!(c.env("CNI_CONTAINERID"), "ctr1");
        assert_eq!(c.env("CNI_NETNS"), "/run/netns/c");
        assert_eq!(c.env("CNI_IFNAME"), "eth0");
        assert_eq!(c.env("CNI_ARGS"), "IgnoreUnknown=1;K8S_POD_NAME=p");
        assert_eq!(c.env("CNI_PATH"), s.fake.bin_dir().to_str().unwrap());
        assert_eq!(c.stdin["name"], "testnet");
        assert_eq!(c.stdin["cniVersion"], "0.4.0");
    }
    assert!(calls[0].stdin.get("prevResult").is_none());
    assert!(calls[0].stdin.get("runtimeConfig").is_none());
    assert_eq!(calls[0].stdin["ipam"], json!({"type": "host-local"}));
    // pm: prevResult = main's 1.0.0 result as 0.4.0; only the declared-true capability.
    let prev = &calls[1].stdin["prevResult"];
    assert_eq!(prev["cniVersion"], "0.4.0");
    assert_eq!(
        prev["ips"][0],
        json!({"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 0, "version": "4"})
    );
    assert_eq!(
        calls[1].stdin["runtimeConfig"],
        json!({"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]})
    );
    assert_eq!(calls[1].stdin["capabilities"], json!({"portMappings": true, "aliases": false}));
    assert!(calls[2].stdin.get("runtimeConfig").is_none());
    assert_eq!(calls[2].stdin["prevResult"]["ips"][0]["address"], "10.1.0.2/24");

    // libcni's cache entry.
    let cache: Value =
        serde_json::from_slice(&std::fs::read(s.rt.cache_path("testnet", "ctr1", "eth0")).unwrap()).unwrap();
    assert_eq!(cache["kind"], "cniCacheV1");
    assert_eq!(cache["containerId"], "ctr1");
    assert_eq!(cache["ifName"], "eth0");
    assert_eq!(cache["networkName"], "testnet");
    assert_eq!(cache["netns"], "/run/netns/c");
    assert_eq!(cache["cniArgs"], json!([["IgnoreUnknown", "1"], ["K8S_POD_NAME", "p"]]));
    assert_eq!(cache["capabilityArgs"]["aliases"], json!({"testnet": ["a"]}));
    assert_eq!(cache["result"]["ips"][0]["address"], "10.1.0.3/24");
    assert!(cache["config"].as_str().unwrap().len() > 10);
}

#[test]
fn del_runs_in_reverse_with_the_cached_result_and_drops_the_cache() {
    let s = three();
    let list = conflist_value(&chain("1.0.0"));
    let caps: Value = serde_json::from_str(CAPS).unwrap();
    s.rt.add(&list, "ctr1", "/run/netns/c", "eth0", "", caps.clone()).unwrap();
    s.fake.clear_calls().unwrap();
    s.rt.del(&list, "ctr1", "/run/netns/c", "eth0", "", caps.clone()).unwrap();
    let calls = s.fake.calls();
    let order: Vec<_> = calls.iter().map(|c| (c.plugin.as_str(), c.command.as_str())).collect();
    assert_eq!(order, [("last", "DEL"), ("pm", "DEL"), ("main", "DEL")]);
    for c in &calls {
        assert_eq!(c.stdin["prevResult"]["ips"][0]["address"], "10.1.0.3/24", "{}", c.plugin);
        assert_eq!(c.stdin["prevResult"]["cniVersion"], "1.0.0");
        assert!(c.stdin["prevResult"]["ips"][0].get("version").is_none());
    }
    assert!(calls[1].stdin.get("runtimeConfig").is_some());
    assert!(!s.rt.cache_path("testnet", "ctr1", "eth0").exists());

    // A second DEL: no cache, no prevResult, still succeeds; empty netns allowed.
    s.fake.clear_calls().unwrap();
    s.rt.del(&list, "ctr1", "", "eth0", "", Value::Null).unwrap();
    let calls = s.fake.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.stdin.get("prevResult").is_none() && c.env("CNI_NETNS").is_empty()));
}

#[test]
fn del_before_0_4_0_sends_no_prev_result() {
    let s = three();
    let list = conflist_value(&chain("0.3.1"));
    s.rt.add(&list, "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap();
    s.fake.clear_calls().unwrap();
    s.rt.del(&list, "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap();
    assert!(s.fake.calls().iter().all(|c| c.stdin.get("prevResult").is_none()));
}

#[test]
fn add_stops_at_the_first_failing_plugin_and_reports_it() {
    let s = three();
    s.fake.fail("pm", "ADD", 11, "try again").unwrap();
    let list = conflist_value(&chain("1.1.0"));
    let e = s.rt.add(&list, "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap_err();
    assert_eq!(e.command, "ADD");
    assert_eq!(e.plugin, "pm");
    assert_eq!(e.index, Some(1));
    assert_eq!(e.exit_code, Some(1));
    assert_eq!(e.code(), Some(11));
    assert_eq!(e.msg(), "try again");
    assert!(e.stderr.contains("fake pm failing"));
    assert!(e.stdout.contains("\"code\":11"));
    assert_eq!(s.fake.calls().len(), 2, "last is never called");
    assert!(!s.rt.cache_path("testnet", "ctr1", "eth0").exists());
}

#[test]
fn add_with_garbage_output_or_missing_plugin_fails() {
    let s = three();
    s.fake.respond("last", "ADD", "not json", 0).unwrap();
    let list = conflist_value(&chain("1.0.0"));
    let e = s.rt.add(&list, "c", "/x", "eth0", "", Value::Null).unwrap_err();
    assert_eq!((e.plugin.as_str(), e.index), ("last", Some(2)));
    assert!(e.message.contains("decoding its result"), "{e}");

    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "nope"}]}));
    let e = s.rt.add(&list, "c", "/x", "eth0", "", Value::Null).unwrap_err();
    assert_eq!(e.plugin, "nope");
    assert!(e.exit_code.is_none());
    assert!(e.message.contains("failed to find plugin"), "{e}");

    // An error on stderr only, stdout empty: libcni wraps the stderr text.
    s.fake.respond("main", "ADD", "", 3).unwrap();
    let list = conflist_value(&chain("1.0.0"));
    let e = s.rt.add(&list, "c", "/x", "eth0", "", Value::Null).unwrap_err();
    assert_eq!(e.exit_code, Some(3));
    assert!(e.error.is_none());
}

#[test]
fn check_runs_in_order_with_the_cached_result() {
    let s = three();
    let list = conflist_value(&chain("1.0.0"));
    s.rt.add(&list, "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap();
    s.fake.clear_calls().unwrap();
    s.rt.check(&list, "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap();
    let calls = s.fake.calls();
    let order: Vec<_> = calls.iter().map(|c| (c.plugin.as_str(), c.command.as_str())).collect();
    assert_eq!(order, [("main", "CHECK"), ("pm", "CHECK"), ("last", "CHECK")]);
    assert!(calls.iter().all(|c| c.stdin["prevResult"]["ips"][0]["address"] == "10.1.0.3/24"));

    s.fake.fail("pm", "CHECK", 999, "gone").unwrap();
    s.fake.clear_calls().unwrap();
    let e = s.rt.check(&list, "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap_err();
    assert_eq!((e.plugin.as_str(), e.code()), ("pm", Some(999)));
    assert_eq!(s.fake.calls().len(), 2);

    // disableCheck: nothing runs. Below 0.4.0: an error, nothing runs.
    let mut v = chain("1.0.0");
    v["disableCheck"] = true.into();
    s.fake.clear_calls().unwrap();
    s.rt.check(&conflist_value(&v), "ctr1", "/run/netns/c", "eth0", "", Value::Null).unwrap();
    let e = s.rt.check(&conflist_value(&chain("0.3.1")), "ctr1", "/x", "eth0", "", Value::Null).unwrap_err();
    assert!(e.message.contains("does not support the CHECK command"));
    assert!(s.fake.calls().is_empty());
}

#[test]
fn gc_deletes_stale_cached_attachments_then_sends_valid_attachments() {
    let s = three();
    let list = conflist_value(&chain("1.1.0"));
    let caps: Value = serde_json::from_str(CAPS).unwrap();
    s.rt.add(&list, "keep", "/run/netns/k", "eth0", "", Value::Null).unwrap();
    s.rt.add(&list, "stale", "/run/netns/s", "eth1", "A=1", caps).unwrap();
    // An attachment of another network is not touched.
    let other =
        conflist_value(&json!({"cniVersion": "1.1.0", "name": "other", "plugins": [{"type": "main"}]}));
    s.rt.add(&other, "stale", "/run/netns/s", "eth0", "", Value::Null).unwrap();
    s.fake.clear_calls().unwrap();

    s.rt.gc(&list, &[("keep", "eth0")]).unwrap();
    let calls = s.fake.calls();
    let order: Vec<_> = calls.iter().map(|c| (c.plugin.as_str(), c.command.as_str())).collect();
    assert_eq!(
        order,
        [("last", "DEL"), ("pm", "DEL"), ("main", "DEL"), ("main", "GC"), ("pm", "GC"), ("last", "GC")]
    );
    // The synthesized DEL uses the cached attachment's parameters.
    let del = &calls[1];
    assert_eq!(del.env("CNI_CONTAINERID"), "stale");
    assert_eq!(del.env("CNI_NETNS"), "/run/netns/s");
    assert_eq!(del.env("CNI_IFNAME"), "eth1");
    assert_eq!(del.env("CNI_ARGS"), "A=1");
    assert!(del.stdin["runtimeConfig"]["portMappings"].is_array());
    assert_eq!(del.stdin["prevResult"]["ips"][0]["address"], "10.1.0.3/24");
    for gc in &calls[3..] {
        let want = json!([{"containerID": "keep", "ifname": "eth0"}]);
        assert_eq!(gc.stdin["cni.dev/valid-attachments"], want);
        assert_eq!(gc.stdin["cni.dev/attachments"], want);
        assert_eq!(gc.stdin["name"], "testnet");
        assert!(gc.stdin.get("prevResult").is_none() && gc.stdin.get("runtimeConfig").is_none());
        assert_eq!(gc.env("CNI_CONTAINERID"), "");
        assert_eq!(gc.env("CNI_COMMAND"), "GC");
    }
    assert!(s.rt.cache_path("testnet", "keep", "eth0").exists());
    assert!(!s.rt.cache_path("testnet", "stale", "eth1").exists());
    assert!(s.rt.cache_path("other", "stale", "eth0").exists());

    // GC errors are collected, every plugin still gets its GC.
    s.fake.fail("main", "GC", 999, "boom").unwrap();
    s.fake.clear_calls().unwrap();
    let errs = s.rt.gc(&list, &[("keep", "eth0")]).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!(s.fake.calls().len(), 3);
}

#[test]
fn gc_before_1_1_0_only_deletes_and_none_sends_no_key() {
    let s = three();
    let old = conflist_value(&chain("1.0.0"));
    s.rt.add(&old, "c1", "/run/netns/k", "eth0", "", Value::Null).unwrap();
    s.fake.clear_calls().unwrap();
    s.rt.gc(&old, &[]).unwrap();
    assert!(s.fake.calls().iter().all(|c| c.command == "DEL"));
    assert_eq!(s.fake.calls().len(), 3);

    let new = conflist_value(&chain("1.1.0"));
    s.fake.clear_calls().unwrap();
    s.rt.gc_opt(&new, None).unwrap();
    let calls = s.fake.calls();
    assert_eq!(calls.len(), 3);
    assert!(calls.iter().all(|c| c.stdin.get("cni.dev/valid-attachments").is_none()));
}

#[test]
fn status_runs_each_plugin_until_one_fails() {
    let s = three();
    let list = conflist_value(&chain("1.1.0"));
    s.rt.status(&list).unwrap();
    let calls = s.fake.calls();
    assert_eq!(calls.iter().map(|c| c.plugin.as_str()).collect::<Vec<_>>(), ["main", "pm", "last"]);
    assert!(calls.iter().all(|c| c.command == "STATUS" && c.stdin["cniVersion"] == "1.1.0"));

    s.fake.fail("pm", "STATUS", 50, "not ready").unwrap();
    s.fake.clear_calls().unwrap();
    let e = s.rt.status(&list).unwrap_err();
    assert_eq!(e.code(), Some(50));
    assert_eq!(s.fake.calls().len(), 2);

    s.fake.clear_calls().unwrap();
    s.rt.status(&conflist_value(&chain("1.0.0"))).unwrap();
    assert!(s.fake.calls().is_empty());
}

#[test]
fn single_conf_files_run_as_a_one_plugin_list() {
    let s = setup(&[(
        "loopback",
        json!({"cniVersion": "0.3.1", "interfaces": [{"name": "lo", "sandbox": "/x"}]}),
    )]);
    let list = conflist_value(&json!({"cniVersion": "0.3.1", "name": "lo", "type": "loopback"}));
    s.rt.add(&list, "c", "/x", "lo", "", Value::Null).unwrap();
    let c = &s.fake.calls()[0];
    assert_eq!(c.stdin, json!({"cniVersion": "0.3.1", "name": "lo", "type": "loopback"}));
}
