//! Each implementation under test gets its own "host" netns, temp dirs and a
//! runtime; containers get a netns each. Verification of what an ADD made and
//! of what a DEL left behind lives here too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netlink::rtnl::{Family, Rtnl};
use serde_json::{json, Value};
use test_harness::{
    conflist, CniResult, ExecRecord, InvokeError, NetConfList, Runtime, RuntimeConf, TempDir, TestNs,
};

/// The plugin binaries the benchmark knows (size on disk, process start).
pub const PLUGINS: &[&str] =
    &["loopback", "bridge", "host-local", "portmap", "macvlan", "dns-sidecar", "ptp"];

/// The parent link of the macvlan scenario: one end of a veth pair in the host netns.
pub const MACVLAN_MASTER: &str = "cnibmv0";
const MACVLAN_PEER: &str = "cnibmv1";
/// The ipvlan scenario's (a master carries macvlans or ipvlans, not both).
pub const IPVLAN_MASTER: &str = "cnibiv0";
const IPVLAN_PEER: &str = "cnibiv1";

/// One plugin directory under test.
pub struct Impl {
    pub name: String,
    pub dir: PathBuf,
    pub host: TestNs,
    pub tmp: TempDir,
    pub log: Arc<Mutex<Vec<ExecRecord>>>,
}

pub type Timed<T> = (Duration, Result<T, InvokeError>);

impl Impl {
    pub fn new(name: &str, dir: &Path) -> std::io::Result<Impl> {
        let host = TestNs::with_lo()?;
        // The macvlan and ipvlan parents: veth pairs, both ends up, inside this host netns.
        for (master, peer) in [(MACVLAN_MASTER, MACVLAN_PEER), (IPVLAN_MASTER, IPVLAN_PEER)] {
            host.ip(&["link", "add", master, "type", "veth", "peer", "name", peer])?;
            host.ip(&["link", "set", master, "up"])?;
            host.ip(&["link", "set", peer, "up"])?;
        }
        Ok(Impl {
            name: name.into(),
            dir: dir.to_path_buf(),
            host,
            tmp: TempDir::new()?,
            log: Arc::default(),
        })
    }

    /// A runtime that execs from the calling thread, which must be inside
    /// `host` (see [`Impl::in_host`]): plugins are `posix_spawn`ed as by a
    /// runtime living in the host netns, and every exec is logged.
    pub fn runtime(&self) -> Runtime {
        let mut rt = Runtime::new(vec![self.dir.clone()], None, self.tmp.join("cache"));
        rt.exec_log = Some(self.log.clone());
        rt
    }

    /// The plugins of `names` this directory lacks.
    pub fn missing(&self, names: &[&str]) -> Vec<String> {
        names.iter().filter(|n| !self.dir.join(n).is_file()).map(|n| n.to_string()).collect()
    }

    /// host-local's dataDir for this implementation.
    pub fn ipam_dir(&self) -> PathBuf {
        self.tmp.join("ipam")
    }

    /// Run `f` on a thread inside the host netns.
    pub fn in_host<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.host.run(f).expect("entering the host netns")
    }

    pub fn add(&self, list: &NetConfList, conf: &RuntimeConf) -> Timed<CniResult> {
        let rt = self.runtime();
        self.in_host(|| {
            let t = Instant::now();
            let r = rt.add_rt(list, conf);
            (t.elapsed(), r)
        })
    }

    pub fn del(&self, list: &NetConfList, conf: &RuntimeConf) -> Timed<()> {
        let rt = self.runtime();
        self.in_host(|| {
            let t = Instant::now();
            let r = rt.del_rt(list, conf);
            (t.elapsed(), r)
        })
    }

    /// Take the exec records gathered so far.
    pub fn take_log(&self) -> Vec<ExecRecord> {
        std::mem::take(&mut *self.log.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Rotate `n` implementations by `i`: A B, then B A, … so neither always goes first.
pub fn order(n: usize, i: usize) -> impl Iterator<Item = usize> {
    (0..n).map(move |k| (k + i) % n)
}

/// A container ID like Podman's (64 hex digits), unique per scenario and index.
pub fn container_id(scenario: u32, i: usize) -> String {
    format!("{scenario:08x}{i:056x}")
}

/// The runtime arguments of container `i`, with Podman's CNI_ARGS.
pub fn rt_conf(cid: &str, ctr: &TestNs, ifname: &str, i: usize, cap_args: Value) -> RuntimeConf {
    RuntimeConf::new(cid, ctr.path(), ifname)
        .cni_args(&format!("IgnoreUnknown=1;K8S_POD_NAME=bench-{i}"))
        .cap_args(cap_args)
}

/// Two port mappings (tcp and udp) per container, distinct host ports.
pub fn port_mappings(base: u16, i: usize) -> Value {
    let p = base + 2 * i as u16;
    json!({"portMappings": [
        {"hostPort": p, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": p + 1, "containerPort": 53, "protocol": "udp"}
    ]})
}

/// The network configurations of the scenarios (cniVersion 1.0.0: the
/// reference 1.1.1 supports up to 1.0.0).
pub enum Net<'a> {
    Loopback,
    /// bridge + host-local + ipMasq, optionally + portmap.
    Bridge {
        name: &'a str,
        bridge: &'a str,
        subnet: &'a str,
        portmap: bool,
    },
    Macvlan {
        name: &'a str,
        subnet: &'a str,
    },
    /// ptp + host-local + ipMasq.
    Ptp {
        name: &'a str,
        subnet: &'a str,
    },
    /// ipvlan (l2) + host-local.
    Ipvlan {
        name: &'a str,
        subnet: &'a str,
    },
}

impl Net<'_> {
    pub fn name(&self) -> &str {
        match self {
            Net::Loopback => "bench-lo",
            Net::Bridge { name, .. }
            | Net::Macvlan { name, .. }
            | Net::Ptp { name, .. }
            | Net::Ipvlan { name, .. } => name,
        }
    }

    pub fn plugins(&self) -> Vec<&'static str> {
        match self {
            Net::Loopback => vec!["loopback"],
            Net::Bridge { portmap: false, .. } => vec!["bridge", "host-local"],
            Net::Bridge { portmap: true, .. } => vec!["bridge", "host-local", "portmap"],
            Net::Macvlan { .. } => vec!["macvlan", "host-local"],
            Net::Ptp { .. } => vec!["ptp", "host-local"],
            Net::Ipvlan { .. } => vec!["ipvlan", "host-local"],
        }
    }

    /// The link kind the kernel must offer (this development machine's has no ipvlan).
    pub fn link_kind(&self) -> Option<&'static str> {
        match self {
            Net::Ipvlan { .. } => Some("ipvlan"),
            _ => None,
        }
    }

    pub fn list(&self, data_dir: &Path) -> NetConfList {
        let ipam = |subnet: &str| {
            json!({"type": "host-local", "dataDir": data_dir, "ranges": [[{"subnet": subnet}]],
                   "routes": [{"dst": "0.0.0.0/0"}]})
        };
        let plugins = match self {
            Net::Loopback => json!([{"type": "loopback"}]),
            Net::Bridge { bridge, subnet, portmap, .. } => {
                let mut p = vec![json!({"type": "bridge", "bridge": bridge, "isGateway": true,
                    "ipMasq": true, "hairpinMode": true, "ipam": ipam(subnet)})];
                if *portmap {
                    p.push(json!({"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}));
                }
                Value::Array(p)
            }
            Net::Macvlan { subnet, .. } => json!([{"type": "macvlan", "master": MACVLAN_MASTER,
                "mode": "bridge", "ipam": ipam(subnet)}]),
            Net::Ptp { subnet, .. } => json!([{"type": "ptp", "ipMasq": true, "ipam": ipam(subnet)}]),
            Net::Ipvlan { subnet, .. } => json!([{"type": "ipvlan", "master": IPVLAN_MASTER,
                "mode": "l2", "ipam": ipam(subnet)}]),
        };
        conflist_value(json!({"cniVersion": "1.0.0", "name": self.name(), "plugins": plugins}))
    }
}

fn conflist_value(v: Value) -> NetConfList {
    conflist(&v.to_string())
}

/// The container really has what the result says: its interface up with
/// the result's addresses and, unless loopback, a default route.
pub fn verify(ctr: &TestNs, ifname: &str, res: &CniResult) -> Result<(), String> {
    let ns = ctr.netns().map_err(|e| format!("open netns: {e}"))?;
    let mut nl = Rtnl::in_netns(&ns).map_err(|e| format!("netlink: {e}"))?;
    let link = nl.link_by_name(ifname).map_err(|e| format!("{ifname} missing: {e}"))?;
    if !link.is_up() {
        return Err(format!("{ifname} is down"));
    }
    let have: Vec<(IpAddr, u8)> = nl
        .addrs(Some(link.index), Family::Any)
        .map_err(|e| format!("addrs: {e}"))?
        .into_iter()
        .map(|a| (a.addr, a.prefix))
        .collect();
    if ifname == "lo" {
        if !have.iter().any(|(a, _)| a.is_loopback()) {
            return Err("lo has no loopback address".into());
        }
        return Ok(());
    }
    if res.ips.is_empty() {
        return Err("the result has no IP".into());
    }
    for ip in &res.ips {
        if !have.contains(&(ip.address.addr, ip.address.prefix)) {
            return Err(format!("{ifname} lacks {}", ip.address));
        }
    }
    let routes = nl.routes(Family::V4, libc::RT_TABLE_MAIN as u32).map_err(|e| format!("routes: {e}"))?;
    if !routes.iter().any(|r| r.is_default() && r.oif == Some(link.index)) {
        return Err(format!("no default route through {ifname}"));
    }
    Ok(())
}

/// The IPv4 address a result gives the container.
pub fn result_ip(res: &CniResult) -> Option<IpAddr> {
    res.ips.first().map(|ip| ip.address.addr)
}

/// Per-container state in a host netns and data dir, one item per thing:
/// links other than bridges (and the macvlan and ipvlan parents), lease files of
/// `network`, nf_tables set/map elements, iptables rules. Diff a snapshot
/// taken before a scenario against one after its DELs: what is new is left over.
pub fn state(imp: &Impl, network: &str) -> BTreeSet<String> {
    let mut items = BTreeSet::new();
    let links = imp.in_host(|| Rtnl::open().and_then(|mut nl| nl.links())).unwrap_or_default();
    for l in links {
        let parent = [MACVLAN_MASTER, MACVLAN_PEER, IPVLAN_MASTER, IPVLAN_PEER].contains(&l.name.as_str());
        if l.name != "lo" && !parent && l.kind.as_deref() != Some("bridge") {
            items.insert(format!("link {}", l.name));
        }
    }
    if let Ok(dir) = std::fs::read_dir(imp.ipam_dir().join(network)) {
        for e in dir.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Leases are the files named by an IP (lock, cursors and our index are not).
            if n.parse::<std::net::IpAddr>().is_ok() {
                items.insert(format!("lease {n}"));
            }
        }
    }
    if let Ok(out) = imp.host.spawn(&["nft", "-j", "list", "ruleset"], b"") {
        let v: Value = serde_json::from_str(&out.stdout).unwrap_or(Value::Null);
        for o in v["nftables"].as_array().into_iter().flatten() {
            for kind in ["set", "map"] {
                let Some(set) = o.get(kind) else { continue };
                for e in set.get("elem").and_then(Value::as_array).into_iter().flatten() {
                    items.insert(format!(
                        "nft element {}/{}: {e}",
                        set["table"].as_str().unwrap_or(""),
                        set["name"].as_str().unwrap_or("")
                    ));
                }
            }
        }
    }
    for tool in ["iptables-save", "ip6tables-save"] {
        if let Ok(out) = imp.host.spawn(&[tool], b"") {
            for l in out.stdout.lines().filter(|l| l.starts_with("-A")) {
                items.insert(format!("{} {l}", tool.trim_end_matches("-save")));
            }
        }
    }
    items
}

/// What `after` has that `before` had not, summarized by kind
/// (`3 link: vethab…, vethcd…, …`); empty when nothing is left.
pub fn left_over(before: &BTreeSet<String>, after: &BTreeSet<String>) -> Vec<String> {
    let mut by: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for item in after.difference(before) {
        let (kind, rest) = item.split_once(' ').unwrap_or((item, ""));
        by.entry(kind).or_default().push(rest);
    }
    by.into_iter()
        .map(|(kind, v)| {
            let shown: Vec<&str> = v.iter().take(2).copied().collect();
            let more = if v.len() > 2 { ", …" } else { "" };
            format!("{} {kind}: {}{more}", v.len(), shown.join("; "))
        })
        .collect()
}
