//! Our bridge + host-local + portmap as flannel's delegates (root).
//!
//! kube-flannel's node list is `cbr0`: `flannel` (with `"delegate":
//! {"hairpinMode": true, "isDefaultGateway": true}`) then `portmap`. The
//! flannel CNI plugin (flannel-io/cni-plugin, flannel.go / flannel_linux.go)
//! reads /run/flannel/subnet.env and execs `bridge` with a generated config:
//! the delegate map plus `name`, `type: bridge`, `ipMasq: !FLANNEL_IPMASQ`,
//! `mtu: FLANNEL_MTU`, `isGateway: true`, `cniVersion` of the list, `ipam`
//! {type host-local, ranges from FLANNEL_SUBNET, routes: FLANNEL_NETWORK with
//! no gateway} and its own `runtimeConfig` passed through; Go's encoder writes
//! the map's keys sorted. It saves those bytes and on DEL execs `bridge` with
//! exactly them again, with no prevResult. libcni chains `portmap` after it.
//!
//! The plugins run with the test's "node" netns as their own and in a private
//! mount namespace whose /var/lib is a tmpfs, so that host-local's default
//! dataDir (flannel sets none) stays off the machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::exec::run_captured;
use test_harness::*;

/// subnet.env as flanneld writes it for node 1 of 10.244.0.0/16 (VXLAN on a
/// 1500-byte underlay): FLANNEL_NETWORK, FLANNEL_SUBNET=10.244.1.1/24,
/// FLANNEL_MTU=1450, FLANNEL_IPMASQ=true (so the delegate gets ipMasq false).
/// What flannel execs `bridge` with, byte for byte (runtimeConfig: whatever
/// the runtime gave flannel; containerd's capitalized portMappings here).
const DELEGATE: &str = r#"{"cniVersion":"0.3.1","hairpinMode":true,"ipMasq":false,"ipam":{"ranges":[[{"subnet":"10.244.1.0/24"}]],"routes":[{"dst":"10.244.0.0/16"}],"type":"host-local"},"isDefaultGateway":true,"isGateway":true,"mtu":1450,"name":"cbr0","runtimeConfig":{"portMappings":[{"HostPort":30080,"ContainerPort":80,"Protocol":"tcp","HostIP":""}]},"type":"bridge"}"#;

/// libcni's config for the list's second plugin (prevResult added per call).
fn portmap_conf(host_port: Option<u16>, prev: Option<&Value>) -> Vec<u8> {
    let maps: Vec<Value> =
        host_port.iter().map(|p| json!({"hostPort": p, "containerPort": 80, "protocol": "tcp"})).collect();
    let mut c = json!({"cniVersion": "0.3.1", "name": "cbr0", "type": "portmap",
        "capabilities": {"portMappings": true}, "runtimeConfig": {"portMappings": maps}});
    if let Some(p) = prev {
        c["prevResult"] = p.clone();
    }
    serde_json::to_vec(&c).unwrap()
}

/// A mount namespace with a tmpfs on /var/lib, held by a sleeping process;
/// a slave of the machine's, so the pods' netns files made later appear in it.
struct PrivateVarLib {
    holder: Child,
}

impl PrivateVarLib {
    fn new() -> PrivateVarLib {
        let mut holder = Command::new("unshare")
            .args(["--mount", "--propagation", "slave", "sh", "-c"])
            .arg("mount -t tmpfs cni-test-varlib /var/lib && echo ready && exec sleep 600")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(holder.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "private /var/lib");
        PrivateVarLib { holder }
    }

    fn mnt(&self) -> String {
        format!("--mount=/proc/{}/ns/mnt", self.holder.id())
    }

    /// Files under /var/lib/cni/networks/cbr0 as the plugins see them.
    fn leases(&self) -> Vec<String> {
        let out = Command::new("nsenter")
            .args([&self.mnt(), "--", "find", "/var/lib/cni/networks/cbr0", "-type", "f"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for PrivateVarLib {
    fn drop(&mut self) {
        let _ = self.holder.kill();
        let _ = self.holder.wait();
    }
}

struct Node {
    host: HostNs,
    varlib: PrivateVarLib,
}

impl Node {
    /// One plugin exec as flannel/libcni does it, in the node netns.
    fn exec(&self, plugin: &str, cmd: &str, id: &str, pod: &Path, stdin: &[u8]) -> PluginOutput {
        let bin: PathBuf = target_bin_dir().join(plugin);
        let path = target_bin_dir().to_string_lossy().into_owned();
        let netns =
            if cmd == "DEL" && !pod.exists() { String::new() } else { pod.to_string_lossy().into_owned() };
        let args = format!(
            "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME={id};K8S_POD_INFRA_CONTAINER_ID={id}"
        );
        let env = [
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", id),
            ("CNI_NETNS", netns.as_str()),
            ("CNI_IFNAME", "eth0"),
            ("CNI_ARGS", args.as_str()),
            ("CNI_PATH", path.as_str()),
        ];
        let mnt = self.varlib.mnt();
        let out = run_captured(
            || {
                let mut c = Command::new("nsenter");
                c.args([mnt.as_str(), "--"]).arg(&bin).env_clear().envs(env);
                c
            },
            Some(self.host.path()),
            stdin,
        )
        .unwrap();
        eprintln!("{plugin} {cmd} {id}: exit {:?}\n{}{}", out.exit_code, out.stdout, out.stderr);
        out
    }

    /// flannel's ADD: the delegate, then libcni's portmap with its result.
    fn add(&self, id: &str, pod: &ContainerNs, host_port: Option<u16>) -> Value {
        let out = self.exec("bridge", "ADD", id, pod.path(), DELEGATE.as_bytes());
        assert!(out.success(), "bridge ADD");
        let res: Value = serde_json::from_str(&out.stdout).unwrap();
        let pm = self.exec("portmap", "ADD", id, pod.path(), &portmap_conf(host_port, Some(&res)));
        assert!(pm.success(), "portmap ADD");
        serde_json::from_str(&pm.stdout).unwrap()
    }

    /// libcni's DEL: portmap (with the cached result), then flannel replaying
    /// the saved delegate config: no prevResult.
    fn del(&self, id: &str, pod: &Path, host_port: Option<u16>, cached: Option<&Value>) {
        let pm = portmap_conf(host_port, cached);
        assert!(self.exec("portmap", "DEL", id, pod, &pm).success(), "portmap DEL");
        assert!(self.exec("bridge", "DEL", id, pod, DELEGATE.as_bytes()).success(), "bridge DEL");
    }
}

fn pod_ip(res: &Value) -> String {
    res["ips"][0]["address"].as_str().unwrap().split('/').next().unwrap().to_owned()
}

#[test]
fn flannel_delegate_shape_add_del() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let node = Node { host: HostNs::with_lo().unwrap(), varlib: PrivateVarLib::new() };
    // A client outside the node reaches the hostPort on the node's address.
    let client = TestNs::with_lo().unwrap();
    veth(&node.host, "eth0", &client, "eth0").unwrap();
    node.host.ip(&["addr", "add", "192.0.2.1/24", "dev", "eth0"]).unwrap();
    node.host.ip(&["link", "set", "eth0", "up"]).unwrap();
    client.ip(&["addr", "add", "192.0.2.2/24", "dev", "eth0"]).unwrap();
    client.ip(&["link", "set", "eth0", "up"]).unwrap();
    client.ip(&["route", "add", "10.244.0.0/16", "via", "192.0.2.1"]).unwrap();

    let (pod1, pod2) = (ContainerNs::new().unwrap(), ContainerNs::new().unwrap());
    let res1 = node.add("pod1", &pod1, Some(30080));
    // The result is in the list's version, 0.3.1: interfaces, ips with "version".
    assert_eq!(res1["cniVersion"], "0.3.1", "{res1}");
    assert_eq!(res1["ips"][0]["version"], "4", "{res1}");
    assert_eq!(res1["ips"][0]["gateway"], "10.244.1.1", "{res1}");
    let ip1 = pod_ip(&res1);
    assert!(ip1.starts_with("10.244.1."), "{ip1}");
    let res2 = node.add("pod2", &pod2, None);
    let ip2 = pod_ip(&res2);

    // bridge cni0 (the default name: flannel sets none) with the gateway, MTU 1450.
    let br = link(&node.host, "cni0").expect("cni0");
    assert_eq!(br["mtu"], 1450, "{br}");
    assert!(addrs(&node.host, "cni0").contains(&"10.244.1.1/24".to_string()));
    assert_eq!(node.host.sysctl("net.ipv4.ip_forward").unwrap(), "1", "isGateway turns forwarding on");
    // The pod: eth0 at MTU 1450, default route (isDefaultGateway) and the
    // cluster network (ipam.routes, no gateway given: via the bridge's).
    let eth0 = link(&pod1, "eth0").unwrap();
    assert_eq!(eth0["mtu"], 1450, "{eth0}");
    let r = pod1.ip(&["-4", "route", "show"]).unwrap();
    assert!(r.contains("default via 10.244.1.1 dev eth0"), "{r}");
    assert!(r.contains("10.244.0.0/16 via 10.244.1.1 dev eth0"), "{r}");
    // hairpinMode on the pod's bridge port.
    let hostif = res1["interfaces"][1]["name"].as_str().unwrap().to_owned();
    let port = node.host.exec_ok(&["bridge", "-j", "-d", "link", "show", "dev", &hostif]).unwrap();
    assert!(port.contains("\"hairpin\":true"), "{port}");
    // ipMasq false: bridge programs no masquerade (its table cnirs_bridge);
    // only portmap's table, with pod1's hostPort.
    let tables = node.host.exec_ok(&["nft", "list", "tables"]).unwrap();
    assert_eq!(tables.trim(), "table inet cnirs_portmap", "{tables}");
    let tag = common::nft::tag::of("cbr0", "pod1", "eth0");
    assert!(nft_text(&node.host).contains(&format!("tcp . 30080 comment \"{tag}\" : {ip1} . 80")));

    // Pods reach each other; full-size packets go through at 1450, one more byte does not.
    assert!(ping(&pod1, &ip2), "pod1 -> pod2");
    let full = pod1.exec(&["ping", "-c1", "-W2", "-M", "do", "-s", "1422", &ip2]).unwrap();
    assert!(full.status.success(), "1450-byte packet: {}", String::from_utf8_lossy(&full.stdout));
    let over = node.host.exec(&["ping", "-c1", "-W2", "-M", "do", "-s", "1423", &ip1]).unwrap();
    assert!(!over.status.success(), "1451 bytes must not fit");

    // The hostPort (portmap, after flannel in the list): node:30080 -> pod1:80.
    let listener = pod1.run(|| TcpListener::bind("0.0.0.0:80")).unwrap().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.write_all(format!("hello from pod1 to {peer}").as_bytes()).unwrap();
    });
    let got = client
        .run(|| {
            let mut s =
                TcpStream::connect_timeout(&"192.0.2.1:30080".parse().unwrap(), Duration::from_secs(5))?;
            let mut buf = String::new();
            s.read_to_string(&mut buf).map(|_| buf)
        })
        .unwrap()
        .unwrap();
    server.join().unwrap();
    assert!(got.starts_with("hello from pod1 to 192.0.2.2:"), "no NAT of the client: {got}");

    // DEL replays the saved delegate config with no prevResult: everything goes.
    assert_eq!(node.varlib.leases().len(), 2);
    node.del("pod1", pod1.path(), Some(30080), Some(&res1));
    assert!(!link_exists(&pod1, "eth0"));
    assert!(!link_exists(&node.host, &hostif));
    assert_eq!(node.varlib.leases(), vec![ip2.clone()], "pod1's lease released");
    assert!(!nft_text(&node.host).contains("30080"), "pod1's hostPort removed");
    // Again, as the kubelet repeats it, with the pod's netns gone: still succeeds.
    drop(pod1);
    node.del("pod1", Path::new("/run/netns/gone"), Some(30080), None);
    node.del("pod2", pod2.path(), None, Some(&res2));
    assert!(node.varlib.leases().is_empty());
    let ruleset = nft_text(&node.host);
    assert!(!ruleset.contains("10.244.1."), "no element of a pod left: {ruleset}");
}
