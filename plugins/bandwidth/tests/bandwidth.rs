//! bandwidth against the real kernel, each test in namespaces it creates:
//! chained after bridge + host-local by a libcni-like runtime with
//! `runtimeConfig.bandwidth` as Kubernetes sends it, with traffic measured
//! through the shaped link; the qdiscs as `tc -j` shows them, next to what
//! the reference plugin makes; DEL, CHECK, GC and failures.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use test_harness::*;

fn bin() -> std::path::PathBuf {
    target_bin_dir().join("bandwidth")
}

const REFERENCE: &str = "/usr/lib/cni/bandwidth";

/// bridge + host-local + bandwidth with the `bandwidth` capability, as a
/// Kubernetes node's list has it.
fn list(ipam: &TempDir, version: &str) -> NetConfList {
    conflist_value(&json!({"cniVersion": version, "name": "k8s-pods", "plugins": [
        {"type": "bridge", "bridge": "cnibw0", "isGateway": true,
         "ipam": {"type": "host-local", "subnet": "10.77.0.0/24", "dataDir": ipam.path()}},
        {"type": "bandwidth", "capabilities": {"bandwidth": true}},
    ]}))
}

/// The capability args a CRI runtime passes (containerd writes the keys capitalized).
fn limits(ingress: (u64, u64), egress: (u64, u64)) -> Value {
    json!({"bandwidth": {"IngressRate": ingress.0, "IngressBurst": ingress.1,
                         "EgressRate": egress.0, "EgressBurst": egress.1}})
}

fn tc(ns: &TestNs, args: &str) -> Value {
    let mut argv = vec!["tc", "-j", "-raw"];
    argv.extend(args.split_whitespace());
    let out = ns.exec_ok(&argv).unwrap();
    if out.trim().is_empty() {
        return json!([]);
    }
    serde_json::from_str(&out).unwrap()
}

/// The host end of the container's veth: the result's host interface on the bridge.
fn host_veth(res: &CniResult) -> String {
    res.interfaces[1].name.clone()
}

fn ifb_of(res: &CniResult) -> String {
    let last = res.interfaces.last().unwrap();
    assert!(last.name.starts_with("bwp") && last.sandbox.is_empty(), "{last:?}");
    last.name.clone()
}

fn container_ip(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

/// The root qdisc of `dev` as `tc -j -raw` shows it.
fn root_qdisc(ns: &TestNs, dev: &str) -> Value {
    let all = tc(ns, &format!("qdisc show dev {dev}"));
    all.as_array().unwrap().iter().find(|q| q["root"] == true).cloned().unwrap_or(Value::Null)
}

/// rate (bytes/s), limit (bytes) and bucket (ticks, hex) of a tbf from `tc -j -raw`.
fn tbf_params(q: &Value) -> (u64, u64, String) {
    assert_eq!(q["kind"], "tbf", "{q}");
    let o = &q["options"];
    (o["rate"].as_u64().unwrap(), o["limit"].as_u64().unwrap(), o["burst_raw"].as_str().unwrap().to_string())
}

/// The redirecting rule on `dev`'s ingress: (target device, its control action).
fn redirect(ns: &TestNs, dev: &str) -> Option<(String, String)> {
    let all = tc(ns, &format!("filter show dev {dev} ingress"));
    let rule = all.as_array()?.iter().find(|f| f["options"]["actions"].is_array())?.clone();
    let o = &rule["options"];
    assert_eq!((rule["protocol"].as_str(), rule["pref"].as_u64()), (Some("all"), Some(1)), "{rule}");
    assert_eq!((o["match"]["value"].as_str(), o["match"]["mask"].as_str()), (Some("0"), Some("0")), "{rule}");
    let a = &o["actions"][0];
    assert_eq!(
        (a["kind"].as_str(), a["mirred_action"].as_str(), a["direction"].as_str()),
        (Some("mirred"), Some("redirect"), Some("egress")),
        "{rule}"
    );
    Some((a["to_dev"].as_str()?.to_string(), a["control_action"]["type"].as_str()?.to_string()))
}

/// Send `bytes` over TCP from `from` to `ip` in `to`; the rate the receiver
/// saw from the first byte to the last, in bits per second.
fn transfer(from: &TestNs, to: &TestNs, ip: &str, bytes: usize) -> f64 {
    let listener = to.run(|| TcpListener::bind("0.0.0.0:0")).unwrap().unwrap();
    let addr: SocketAddr = format!("{ip}:{}", listener.local_addr().unwrap().port()).parse().unwrap();
    let receiver = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
        let (mut buf, mut got, mut first) = (vec![0u8; 1 << 16], 0, None);
        loop {
            let n = s.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            first.get_or_insert_with(Instant::now);
            got += n;
        }
        (got, first.unwrap().elapsed())
    });
    let mut s =
        from.run(move || TcpStream::connect_timeout(&addr, Duration::from_secs(10))).unwrap().unwrap();
    s.write_all(&vec![0x5a; bytes]).unwrap();
    s.shutdown(Shutdown::Write).unwrap();
    let (got, took) = receiver.join().unwrap();
    assert_eq!(got, bytes);
    got as f64 * 8.0 / took.as_secs_f64()
}

#[test]
fn kubernetes_limits_hold_traffic_to_their_rates_in_both_directions() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let (shaped, control) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let ipam = TempDir::new().unwrap();
    let list = list(&ipam, "1.0.0");
    let (rt, _cache) = runtime_in(&host);
    // 8 Mbit/s in, 16 Mbit/s out, 32 kB buckets: a few MB take seconds.
    let (ingress, egress) = (8_000_000u64, 16_000_000u64);
    let res = rt
        .add(&list, "shaped", shaped.path(), "eth0", "", limits((ingress, 256_000), (egress, 256_000)))
        .unwrap();
    let free = rt.add(&list, "control", control.path(), "eth0", "", json!({})).unwrap();
    assert_eq!(free.interfaces.len(), 3, "nothing to shape: prevResult passes through");
    let gateway = "10.77.0.1";

    let to_shaped = transfer(&host, &shaped, &container_ip(&res), 2 << 20);
    let from_shaped = transfer(&shaped, &host, gateway, 4 << 20);
    let to_control = transfer(&host, &control, &container_ip(&free), 4 << 20);
    let from_control = transfer(&control, &host, gateway, 4 << 20);
    let mbit = |r: f64| format!("{:.1} Mbit/s", r / 1e6);
    let seen = format!(
        "to shaped {}, from shaped {}, to control {}, from control {}",
        mbit(to_shaped),
        mbit(from_shaped),
        mbit(to_control),
        mbit(from_control)
    );
    eprintln!("{seen}");
    // A shaped link is never faster than its rate (a loaded machine only makes it slower) …
    assert!(to_shaped < 1.3 * ingress as f64, "{seen}");
    assert!(from_shaped < 1.3 * egress as f64, "{seen}");
    // … and the same bridge without limits is far faster.
    assert!(to_control > 3.0 * ingress as f64, "{seen}");
    assert!(from_control > 3.0 * egress as f64, "{seen}");

    rt.check(&list, "shaped", shaped.path(), "eth0", "", limits((ingress, 256_000), (egress, 256_000)))
        .unwrap();
    let ifb = ifb_of(&res);
    rt.del(&list, "shaped", shaped.path(), "eth0", "", json!({})).unwrap();
    assert!(!link_exists(&host, &ifb));
    rt.del(&list, "control", control.path(), "eth0", "", json!({})).unwrap();
}

#[test]
fn qdiscs_and_the_ifb_are_what_the_reference_makes() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::with_lo().unwrap();
    let ipam = TempDir::new().unwrap();
    let list = list(&ipam, "1.0.0");
    let (rt, _cache) = runtime_in(&host);
    // 8 Mbit/s = 1 MB/s with a 32 kB bucket (32 ms = 500000 ticks, queue 25 ms + 32 kB);
    // 20 Mbit/s with Kubernetes' default burst (4294967295 bits).
    let caps = limits((8_000_000, 256_000), (20_000_000, 4_294_967_295));
    let res = rt.add(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap();
    let (veth, ifb) = (host_veth(&res), ifb_of(&res));
    // The reference's name: "bwp" + SHA-512("k8s-pods" + "ctr1")[..12 hex].
    let h = test_harness::sha512::sha512(b"k8s-podsctr1");
    assert_eq!(ifb, format!("bwp{}", &test_harness::sha512::hex(&h)[..12]));

    assert_eq!(tbf_params(&root_qdisc(&host, &veth)), (1_000_000, 57_000, "7a120".into()));
    // 536870911 bytes at 2.5 MB/s: 214748364 µs, 3355443187 ticks; queue 62500 bytes more.
    assert_eq!(
        tbf_params(&root_qdisc(&host, &ifb)),
        (2_500_000, 536_933_411, format!("{:x}", 3_355_443_187u32))
    );
    let ingress = tc(&host, &format!("qdisc show dev {veth} ingress"));
    assert_eq!(
        (ingress[0]["kind"].as_str(), ingress[0]["handle"].as_str()),
        (Some("ingress"), Some("ffff:"))
    );
    assert_eq!(redirect(&host, &veth), Some((ifb.clone(), "stolen".to_string())));
    let l = link(&host, &ifb).unwrap();
    let v = link(&host, &veth).unwrap();
    assert_eq!((l["mtu"].clone(), l["operstate"].as_str()), (v["mtu"].clone(), Some("UNKNOWN")));
    assert!(l["flags"].as_array().unwrap().iter().any(|f| f == "UP"), "{l}");
    assert_eq!(l["txqlen"].as_u64().unwrap_or(0), 0, "{l}");
    let d = host.ip_json(&["-d", "link", "show", &ifb]).unwrap();
    assert_eq!(d[0]["linkinfo"]["info_kind"], "ifb");
    assert_eq!(d[0]["ifalias"], "cni-rs bandwidth k8s-pods ctr1");
    assert_eq!(res.interfaces.last().unwrap().mac, l["address"].as_str().unwrap());

    // The reference, given the same request on a veth of its own, makes the same.
    let other = ContainerNs::with_lo().unwrap();
    veth_pair(&host, "vref0", &other);
    let req = direct_request(&caps["bandwidth"], "vref0", &other);
    let out = run(REFERENCE, &host, "ADD", "ctr1-ref", &other, &req);
    assert!(out.success(), "{out:?}");
    let theirs: Value = serde_json::from_str(&out.stdout).unwrap();
    let their_ifb = theirs["interfaces"][2]["name"].as_str().unwrap().to_string();
    assert_eq!(tbf_params(&root_qdisc(&host, "vref0")), tbf_params(&root_qdisc(&host, &veth)));
    assert_eq!(tbf_params(&root_qdisc(&host, &their_ifb)), tbf_params(&root_qdisc(&host, &ifb)));
    assert_eq!(redirect(&host, "vref0"), Some((their_ifb.clone(), "stolen".to_string())));
    let theirs_l = link(&host, &their_ifb).unwrap();
    assert_eq!((theirs_l["mtu"].clone(), theirs_l["txqlen"].as_u64().unwrap_or(0)), (l["mtu"].clone(), 0));
    run(REFERENCE, &host, "DEL", "ctr1-ref", &other, &req);

    rt.del(&list, "ctr1", ctr.path(), "eth0", "", caps).unwrap();
    assert!(!link_exists(&host, &ifb));
    assert!(link_names(&host).iter().all(|n| !n.starts_with("bwp")), "{:?}", link_names(&host));
}

/// A veth `name` in `host` whose peer `eth0` is in `ctr`, both up.
fn veth_pair(host: &TestNs, name: &str, ctr: &TestNs) {
    veth(host, name, ctr, "eth0").unwrap();
}

/// A request for bandwidth alone, on the veth `host_if` ↔ `ctr`'s eth0.
fn direct_request(bandwidth: &Value, host_if: &str, ctr: &TestNs) -> Value {
    json!({"cniVersion": "1.0.0", "name": "k8s-pods", "type": "bandwidth",
           "runtimeConfig": {"bandwidth": bandwidth},
           "prevResult": {"cniVersion": "1.0.0",
               "interfaces": [{"name": host_if}, {"name": "eth0", "sandbox": ctr.path_str()}],
               "ips": [{"address": "10.9.0.2/24", "interface": 1}]}})
}

fn run(
    bin: impl AsRef<std::path::Path>,
    host: &TestNs,
    cmd: &str,
    cid: &str,
    ctr: &TestNs,
    conf: &Value,
) -> PluginOutput {
    let netns = ctr.path_str();
    let env = [
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", cid),
        ("CNI_NETNS", netns.as_str()),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    run_plugin(bin.as_ref(), Some(host.path()), &env, conf.to_string().as_bytes()).unwrap()
}

fn code(out: &PluginOutput) -> (u64, String) {
    assert!(!out.success(), "expected an error: {}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    (v["code"].as_u64().unwrap(), v["msg"].as_str().unwrap().to_string())
}

#[test]
fn a_node_can_switch_between_the_reference_and_us() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::with_lo().unwrap();
    veth_pair(&host, "vsw0", &ctr);
    let bw = json!({"ingressRate": 8_000_000, "ingressBurst": 256_000, "egressRate": 16_000_000, "egressBurst": 512_000});
    let req = direct_request(&bw, "vsw0", &ctr);
    // The reference's ADD: our CHECK accepts it, our DEL removes its ifb.
    let out = run(REFERENCE, &host, "ADD", "sw1", &ctr, &req);
    assert!(out.success(), "{out:?}");
    let made: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut checked = req.clone();
    checked["prevResult"] = made.clone();
    let out = run(bin(), &host, "CHECK", "sw1", &ctr, &checked);
    assert!(out.success(), "our CHECK of the reference's qdiscs: {out:?}");
    let ifb = made["interfaces"][2]["name"].as_str().unwrap().to_string();
    assert!(run(bin(), &host, "DEL", "sw1", &ctr, &checked).success());
    assert!(!link_exists(&host, &ifb));
    host.exec_ok(&["tc", "qdisc", "del", "dev", "vsw0", "root"]).unwrap();
    host.exec_ok(&["tc", "qdisc", "del", "dev", "vsw0", "ingress"]).unwrap();

    // Ours: the reference's CHECK accepts it, its DEL removes our ifb.
    let out = run(bin(), &host, "ADD", "sw1", &ctr, &req);
    assert!(out.success(), "{out:?}");
    let made: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(made["interfaces"][2]["name"], ifb.as_str(), "the same name");
    checked["prevResult"] = made;
    let out = run(REFERENCE, &host, "CHECK", "sw1", &ctr, &checked);
    assert!(out.success(), "the reference's CHECK of ours: {out:?}");
    assert!(run(REFERENCE, &host, "DEL", "sw1", &ctr, &checked).success());
    assert!(!link_exists(&host, &ifb));
}

#[test]
fn check_sees_a_bucket_changed_or_gone() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::with_lo().unwrap();
    let ipam = TempDir::new().unwrap();
    let list = list(&ipam, "1.1.0");
    let (rt, _cache) = runtime_in(&host);
    let caps = limits((8_000_000, 256_000), (16_000_000, 256_000));
    let res = rt.add(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap();
    rt.check(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap();
    let (veth, ifb) = (host_veth(&res), ifb_of(&res));
    host.exec_ok(&[
        "tc", "qdisc", "change", "dev", &ifb, "root", "tbf", "rate", "1mbit", "burst", "32k", "limit", "64k",
    ])
    .unwrap();
    let e = rt.check(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap_err();
    assert!(
        e.plugin == "bandwidth" && e.msg().contains(&format!("the egress limit on {ifb} is 125000 bytes/s")),
        "{e:?}"
    );
    // Put back by tc as ADD made it (2 MB/s, 32000 bytes: 16 ms, queue 50000 + 32000 bytes): fine again.
    host.exec_ok(&[
        "tc", "qdisc", "replace", "dev", &ifb, "root", "tbf", "rate", "16mbit", "burst", "32000", "limit",
        "82000",
    ])
    .unwrap();
    rt.check(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap();
    host.exec_ok(&["tc", "qdisc", "del", "dev", &veth, "ingress"]).unwrap();
    let e = rt.check(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap_err();
    assert!(e.msg().contains(&format!("{veth}'s traffic is not redirected to {ifb}")), "{e:?}");
    host.exec_ok(&["tc", "qdisc", "del", "dev", &veth, "root"]).unwrap();
    let e = rt.check(&list, "ctr1", ctr.path(), "eth0", "", caps.clone()).unwrap_err();
    assert!(e.msg().contains(&format!("{veth} has no token bucket (tbf) for the ingress limit")), "{e:?}");
    rt.del(&list, "ctr1", ctr.path(), "eth0", "", caps).unwrap();
}

#[test]
fn del_without_the_netns_removes_the_ifb_and_gc_removes_stale_ones() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ipam = TempDir::new().unwrap();
    let list = list(&ipam, "1.1.0");
    let (rt, _cache) = runtime_in(&host);
    let caps = limits((8_000_000, 256_000), (16_000_000, 256_000));
    let (a, b) = (ContainerNs::with_lo().unwrap(), ContainerNs::with_lo().unwrap());
    let ifb_a = ifb_of(&rt.add(&list, "a", a.path(), "eth0", "", caps.clone()).unwrap());
    let ifb_b = ifb_of(&rt.add(&list, "b", b.path(), "eth0", "", caps.clone()).unwrap());
    assert_ne!(ifb_a, ifb_b);
    // The container is gone (and its veth with it); the runtime's DEL has no netns.
    let gone = a.path().to_path_buf();
    drop(a);
    assert!(!gone.exists());
    rt.del(&list, "a", "", "eth0", "", caps.clone()).unwrap();
    assert!(!link_exists(&host, &ifb_a));
    rt.del(&list, "a", "", "eth0", "", caps.clone()).unwrap();
    // GC: b's ifb stays while b is valid, goes when it is not; the bridge's DEL
    // that GC makes for a stale cached attachment is not what removes it here.
    std::fs::remove_dir_all(rt.cache_dir.join("results")).unwrap();
    rt.gc(&list, &[("b", "eth0")]).unwrap();
    assert!(link_exists(&host, &ifb_b));
    rt.gc(&list, &[]).unwrap();
    assert!(!link_exists(&host, &ifb_b));
    rt.status(&list).unwrap();
}

#[test]
fn a_failed_add_leaves_nothing_and_bad_limits_are_code_7() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ctr = ContainerNs::with_lo().unwrap();
    veth_pair(&host, "vfail0", &ctr);
    // Something else holds the veth's ingress hook: ADD fails after making
    // the ingress bucket and the ifb, and takes both back.
    host.exec_ok(&["tc", "qdisc", "add", "dev", "vfail0", "clsact"]).unwrap();
    let before = (tc(&host, "qdisc show"), link_names(&host));
    let bw = json!({"IngressRate": 8_000_000, "IngressBurst": 256_000, "EgressRate": 16_000_000, "EgressBurst": 256_000});
    let out = run(bin(), &host, "ADD", "f1", &ctr, &direct_request(&bw, "vfail0", &ctr));
    let (c, msg) = code(&out);
    assert_eq!(c, 999);
    assert!(msg.contains("adding the ingress qdisc of vfail0"), "{msg}");
    assert_eq!((tc(&host, "qdisc show"), link_names(&host)), before);

    for (bw, want) in [
        (json!({"IngressRate": 1_000_000}), "ingressRate is set, so ingressBurst must be set too"),
        (json!({"EgressBurst": 8000}), "egressBurst is set, so egressRate must be set too"),
        (
            json!({"EgressRate": "10M", "EgressBurst": 8000}),
            "egressRate must be a whole number of bits per second",
        ),
        (
            json!({"IngressRate": 1_000_000, "IngressBurst": 40_000_000_000u64}),
            "ingressBurst cannot be more than 4GB",
        ),
        (json!({"IngressRate": 1_000_000_000, "IngressBurst": 8}), "ingressBurst of 8 bits is too small"),
    ] {
        let (c, msg) = code(&run(bin(), &host, "ADD", "f1", &ctr, &direct_request(&bw, "vfail0", &ctr)));
        assert_eq!(c, 7, "{bw}: {msg}");
        assert!(msg.contains(want), "{bw}: {msg}");
        assert_eq!((tc(&host, "qdisc show"), link_names(&host)), before);
    }
    // Not chained: no prevResult.
    let mut bare = direct_request(&json!({"IngressRate": 8000, "IngressBurst": 80000}), "vfail0", &ctr);
    bare.as_object_mut().unwrap().remove("prevResult");
    let (c, msg) = code(&run(bin(), &host, "ADD", "f1", &ctr, &bare));
    assert_eq!((c, msg.as_str()), (7, "bandwidth must be called as a chained plugin: prevResult is missing"));
    // A container interface that is not a veth.
    ctr.ip(&["link", "add", "dummy0", "type", "bridge"]).unwrap();
    let mut env_if = direct_request(&json!({"IngressRate": 8000, "IngressBurst": 80000}), "vfail0", &ctr);
    env_if["prevResult"]["interfaces"][1]["name"] = json!("dummy0");
    let out = run_plugin(
        &bin(),
        Some(host.path()),
        &[
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "f1"),
            ("CNI_NETNS", &ctr.path_str()),
            ("CNI_IFNAME", "dummy0"),
            ("CNI_PATH", "/nonexistent"),
        ],
        env_if.to_string().as_bytes(),
    )
    .unwrap();
    assert!(code(&out).1.contains("container interface dummy0 has no veth peer"), "{out:?}");
    assert_eq!((tc(&host, "qdisc show"), link_names(&host)), before);
}

#[test]
fn every_result_version() {
    if !is_root() {
        return eprintln!("skipping: needs root");
    }
    let host = HostNs::with_lo().unwrap();
    let ipam = TempDir::new().unwrap();
    let (rt, _cache) = runtime_in(&host);
    let caps = limits((8_000_000, 256_000), (16_000_000, 256_000));
    for (n, version) in ["0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"].into_iter().enumerate() {
        let ctr = ContainerNs::with_lo().unwrap();
        let list = list(&ipam, version);
        let cid = format!("v{n}");
        let res = rt.add(&list, &cid, ctr.path(), "eth0", "", caps.clone()).unwrap();
        let name = format!(
            "bwp{}",
            &test_harness::sha512::hex(&test_harness::sha512::sha512(format!("k8s-pods{cid}").as_bytes()))
                [..12]
        );
        assert!(link_exists(&host, &name), "{version}");
        if version != "0.2.0" {
            assert_eq!(ifb_of(&res), name, "{version}");
        }
        if version >= "0.4.0" {
            rt.check(&list, &cid, ctr.path(), "eth0", "", caps.clone()).unwrap();
        }
        rt.del(&list, &cid, ctr.path(), "eth0", "", caps.clone()).unwrap();
        assert!(!link_exists(&host, &name), "{version}");
    }
}
