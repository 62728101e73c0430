//! Root tests of the netns fixtures. Each skips itself when not root.

use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

#[test]
fn netns_is_created_and_removed() {
    require_root!();
    let (name, path) = {
        let ns = TestNs::new().unwrap();
        assert!(ns.name().starts_with(&format!("cni-t-{}-", std::process::id())));
        assert!(netns_names().unwrap().contains(&ns.name().to_string()));
        assert!(ns.path().exists());
        assert_eq!(link_names(&ns), ["lo"]);
        // A veth inside goes with it.
        ns.ip(&["link", "add", "name", "v0", "type", "veth", "peer", "name", "v1"]).unwrap();
        assert!(link_exists(&ns, "v0") && link_exists(&ns, "v1"));
        (ns.name().to_string(), ns.path().to_path_buf())
    };
    assert!(!netns_names().unwrap().contains(&name));
    assert!(!path.exists());
}

#[test]
fn two_fixtures_are_distinct_namespaces() {
    require_root!();
    let (a, b) = (HostNs::new().unwrap(), ContainerNs::new().unwrap());
    assert_ne!(a.name(), b.name());
    assert_ne!(a.inode().unwrap(), b.inode().unwrap());
    assert!(!a.netns().unwrap().same_as(&b.netns().unwrap()).unwrap());
}

#[test]
fn veth_between_two_namespaces_carries_traffic() {
    require_root!();
    let names;
    {
        let host = HostNs::with_lo().unwrap();
        let ctr = ContainerNs::with_lo().unwrap();
        names = [host.name().to_string(), ctr.name().to_string()];
        veth(&host, "veth-h", &ctr, "eth0").unwrap();
        assert!(link_exists(&host, "veth-h") && !link_exists(&host, "eth0"));
        assert!(link_exists(&ctr, "eth0") && !link_exists(&ctr, "veth-h"));
        assert_eq!(link(&ctr, "eth0").unwrap()["linkinfo"]["info_kind"], "veth");

        host.ip(&["addr", "add", "10.99.0.1/24", "dev", "veth-h"]).unwrap();
        ctr.ip(&["addr", "add", "10.99.0.2/24", "dev", "eth0"]).unwrap();
        ctr.ip(&["route", "add", "default", "via", "10.99.0.1"]).unwrap();
        assert_eq!(
            addrs(&ctr, "eth0").iter().filter(|a| a.contains('.')).collect::<Vec<_>>(),
            ["10.99.0.2/24"]
        );
        assert!(addrs(&ctr, "nonexistent").is_empty());
        assert!(has_route(&ctr, "default"));
        assert!(has_route(&ctr, "10.99.0.0/24"));
        assert!(routes(&ctr).as_array().unwrap().iter().any(|r| r["gateway"] == "10.99.0.1"));

        assert!(ping(&ctr, "10.99.0.1"));
        assert!(ping(&host, "10.99.0.2"));
        assert!(ping(&ctr, "127.0.0.1"));
        assert!(!ping_timeout(&ctr, "10.99.0.77", Duration::from_millis(300)));
        assert!(!ping(&host, "192.0.2.1"), "no route: fails fast");

        // IPv6 once DAD is done (nodad to keep the test fast).
        host.ip(&["addr", "add", "fd99::1/64", "dev", "veth-h", "nodad"]).unwrap();
        ctr.ip(&["addr", "add", "fd99::2/64", "dev", "eth0", "nodad"]).unwrap();
        assert!(wait_until(Duration::from_secs(3), || ping(&ctr, "fd99::1")));
    }
    let left = netns_names().unwrap();
    assert!(names.iter().all(|n| !left.contains(n)), "{left:?}");
}

#[test]
fn closures_and_commands_run_inside() {
    require_root!();
    let ns = TestNs::new().unwrap();
    let inode = ns.inode().unwrap();
    let seen = ns
        .run(|| std::fs::read_link("/proc/thread-self/ns/net").unwrap().to_string_lossy().into_owned())
        .unwrap();
    assert_eq!(seen, format!("net:[{inode}]"));
    let out = ns.spawn(&["readlink", "/proc/self/ns/net"], b"").unwrap();
    assert_eq!(out.stdout.trim(), format!("net:[{inode}]"));
    let out = ns.exec_ok(&["readlink", "/proc/self/ns/net"]).unwrap();
    assert_eq!(out.trim(), format!("net:[{inode}]"));
    let out = ns.spawn(&["cat"], b"stdin reaches it").unwrap();
    assert_eq!(out.stdout, "stdin reaches it");
    assert!(ns.exec(&["false"]).map(|o| !o.status.success()).unwrap());
    assert!(ns.exec_ok(&["sh", "-c", "echo oops >&2; exit 3"]).unwrap_err().to_string().contains("oops"));

    assert_eq!(ns.sysctl("net.ipv4.ip_forward").unwrap(), "0");
    ns.set_sysctl("net.ipv4.ip_forward", "1").unwrap();
    assert_eq!(ns.sysctl("net.ipv4.ip_forward").unwrap(), "1");
}

#[test]
fn nft_ruleset_reads_only_the_test_namespace() {
    require_root!();
    let ns = TestNs::new().unwrap();
    assert!(nft_is_empty(&ns));
    let out = ns
        .spawn(&["nft", "-f", "-"], b"table inet cnitest { chain c { type filter hook input priority 0; }; }")
        .unwrap();
    assert!(out.success(), "{}", out.stderr);
    let rs = nft_ruleset(&ns);
    let tables = nft_objects(&rs, "table");
    assert_eq!(tables.len(), 1);
    assert_eq!(tables[0]["name"], "cnitest");
    assert_eq!(nft_objects(&rs, "chain")[0]["hook"], "input");
    assert!(nft_text(&ns).contains("table inet cnitest"));
    // A fresh namespace does not see it.
    let other = TestNs::new().unwrap();
    assert!(nft_is_empty(&other));
}

#[test]
fn plugins_run_with_the_host_netns_as_their_own() {
    require_root!();
    let host = HostNs::new().unwrap();
    let ctr = ContainerNs::new().unwrap();
    let fake = FakePlugins::new().unwrap();
    fake.plugin("p1", json!({"cniVersion": "1.0.0", "ips": [{"address": "10.0.0.2/24"}]})).unwrap();
    let cache = TempDir::new().unwrap();
    let rt = Runtime::new(vec![fake.bin_dir()], Some(host.path().to_path_buf()), cache.path());
    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": "n", "plugins": [{"type": "p1"}]}));
    rt.add(&list, "c1", ctr.path(), "eth0", "", Value::Null).unwrap();
    rt.del(&list, "c1", ctr.path(), "eth0", "", Value::Null).unwrap();
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    for call in fake.calls() {
        assert_eq!(call.netns, format!("net:[{}]", host.inode().unwrap()), "{}", call.command);
        assert_ne!(call.netns, own.to_string_lossy());
        assert_eq!(call.env("CNI_NETNS"), ctr.path_str());
    }
    assert_eq!(fake.calls().len(), 2);

    // Without a host netns the plugin runs in ours.
    let rt = Runtime::new(vec![fake.bin_dir()], None, cache.path());
    fake.clear_calls().unwrap();
    rt.add(&list, "c2", ctr.path(), "eth0", "", Value::Null).unwrap();
    assert_eq!(fake.calls()[0].netns, own.to_string_lossy());
}

#[test]
fn cnitool_add_check_del_gc_status() {
    require_root!();
    let bin = env!("CARGO_BIN_EXE_cnitool");
    let fake = FakePlugins::new().unwrap();
    fake.plugin("p1", json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}]})).unwrap();
    fake.plugin("p2", json!({"cniVersion": "1.1.0", "ips": [{"address": "10.0.0.2/24"}]})).unwrap();
    let dir = TempDir::new().unwrap();
    let confdir = dir.join("net.d");
    std::fs::create_dir_all(&confdir).unwrap();
    std::fs::write(confdir.join("05-other.conf"), r#"{"cniVersion":"1.0.0","name":"other","type":"p1"}"#)
        .unwrap();
    std::fs::write(
        confdir.join("10-tn.conflist"),
        json!({"cniVersion": "1.1.0", "name": "tn", "plugins": [
            {"type": "p1"}, {"type": "p2", "capabilities": {"portMappings": true}}]})
        .to_string(),
    )
    .unwrap();
    let ctr = ContainerNs::new().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .args(args)
            .env("NETCONFPATH", &confdir)
            .env("CNI_PATH", fake.bin_dir())
            .env("CNI_CACHE_DIR", dir.join("cache"))
            .env("CNI_ARGS", "IgnoreUnknown=1")
            .env("CAP_ARGS", r#"{"portMappings":[{"hostPort":1,"containerPort":2,"protocol":"tcp"}]}"#)
            .env_remove("CNI_IFNAME")
            .env_remove("CNI_CONTAINERID")
            .output()
            .unwrap()
    };
    let out = run(&["add", "tn", &ctr.path_str()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ips"][0]["address"], "10.0.0.2/24");
    let calls = fake.calls();
    // cnitool's container ID: "cnitool-" + hex(sha512(abs netns path)[..10]).
    let h = test_harness::sha512::sha512(ctr.path_str().as_bytes());
    let cid = format!("cnitool-{}", test_harness::sha512::hex(&h[..10]));
    assert_eq!(calls[0].env("CNI_CONTAINERID"), cid);
    assert_eq!(calls[0].env("CNI_IFNAME"), "eth0");
    assert_eq!(calls[0].env("CNI_ARGS"), "IgnoreUnknown=1");
    assert_eq!(calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"], 1);
    assert!(dir.join("cache/results").join(format!("tn-{cid}-eth0")).exists());

    assert!(run(&["check", "tn", &ctr.path_str()]).status.success());
    assert!(run(&["status", "tn"]).status.success());
    assert!(run(&["-i", "eth1", "add", "other", &ctr.path_str()]).status.success());
    assert_eq!(fake.calls().last().unwrap().env("CNI_IFNAME"), "eth1");
    assert!(run(&["del", "tn", &ctr.path_str()]).status.success());
    assert!(!dir.join("cache/results").join(format!("tn-{cid}-eth0")).exists());
    assert!(run(&["gc", "tn"]).status.success());
    let cmds: Vec<_> = fake.calls().iter().map(|c| format!("{}:{}", c.plugin, c.command)).collect();
    assert_eq!(
        cmds,
        [
            "p1:ADD",
            "p2:ADD",
            "p1:CHECK",
            "p2:CHECK",
            "p1:STATUS",
            "p2:STATUS",
            "p1:ADD",
            "p2:DEL",
            "p1:DEL",
            "p1:GC",
            "p2:GC"
        ]
    );

    fake.fail("p2", "ADD", 7, "bad config").unwrap();
    let out = run(&["add", "tn", &ctr.path_str()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bad config"));
    assert!(!run(&["add", "missing", &ctr.path_str()]).status.success());
    assert!(!run(&["bogus"]).status.success());

    // The hand-testing extras.
    let name = format!("cni-t-{}-tool", std::process::id());
    assert!(run(&["netns", "add", &name]).status.success());
    let out = run(&["exec", &name, "readlink", "/proc/self/ns/net"]);
    let ino =
        std::fs::metadata(format!("/run/netns/{name}")).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), format!("net:[{}]", ino.unwrap()));
    assert!(run(&["netns", "del", &name]).status.success());
    assert!(!netns_names().unwrap().contains(&name));
}
