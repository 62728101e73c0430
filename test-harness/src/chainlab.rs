//! One network of the full chain — bridge (host-local, ipMasq, spoof check),
//! portmap, firewall, tuning, dnsname — in a host netns of its own, with every
//! plugin's state in a temp dir, and the oracles the chaos and soak runs judge
//! it by: a snapshot of everything the chain leaves on the node, and the
//! per-container facts (leases, DNS records, daemons, addresses).
//!
//! Where each plugin's state goes (all under the lab's temp dir):
//! `ipam/` host-local's `dataDir`, `tuning/` tuning's `dataDir`, `dns/`
//! `DNS_SIDECAR_RUN_DIR`, `cache/` the runtime's result cache. The runtime
//! locks (`common::lock::RUNTIME_LOCK_DIR`, `/run/cni-rs/locks`) cannot be
//! redirected; the lab's bridge name is fixed so that it adds one lock file
//! there at most.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::ipnet::IpNet;
use serde_json::{json, Value};

use crate::dnsload::{build_query, reply_facts};
use crate::exec::InvokeError;
use crate::ns::TestNs;
use crate::procs;
use crate::runtime::{Runtime, RuntimeConf};
use crate::tmp::{unique_suffix, TempDir};
use crate::{conflist_value, target_bin_dir, CniResult, NetConfList};

/// The plugin binaries the chain needs, by file name in the build dir.
pub const PLUGINS: &[&str] = &["bridge", "host-local", "portmap", "firewall", "tuning", "dns-sidecar"];

/// What to build.
#[derive(Clone, Debug)]
pub struct LabSpec {
    /// Prefix of the network name (a unique suffix is added).
    pub tag: String,
    /// The bridge (fixed per caller: its runtime lock file is machine-wide).
    pub bridge: String,
    /// Second octet of the lab's IPv4 subnet `10.<n>.0.0/24` (and `fd00:<n>::/64`).
    pub subnet: u8,
    /// Where the plugin binaries are (`target/<profile>`).
    pub bin_dir: PathBuf,
}

impl LabSpec {
    pub fn new(tag: &str, bridge: &str, subnet: u8) -> LabSpec {
        LabSpec { tag: tag.into(), bridge: bridge.into(), subnet, bin_dir: target_bin_dir() }
    }
}

/// A container of the lab: its netns and, while attached, its identity.
#[derive(Debug)]
pub struct Member {
    pub ns: TestNs,
    /// Fresh for every attachment (a 64-hex ID, as Podman and containerd make).
    pub id: String,
    /// Its DNS name (`K8S_POD_NAME`); the alias is `a-<name>`.
    pub name: String,
    /// Its published host port (TCP and UDP).
    pub port: u16,
    /// The addresses of its last successful ADD.
    pub ips: Vec<IpNet>,
}

pub struct ChainLab {
    pub host: TestNs,
    pub dir: TempDir,
    /// Where the lab's runtime finds plugins: links to the real binaries (and
    /// `dnsname` → `dns-sidecar`).
    pub bin: PathBuf,
    /// The real binaries.
    pub real_bin: PathBuf,
    pub net: String,
    pub bridge: String,
    pub list: NetConfList,
    /// The runtime without faults.
    pub rt: Runtime,
    pub gateway4: IpAddr,
    serial: u64,
}

impl ChainLab {
    pub fn new(spec: &LabSpec) -> io::Result<ChainLab> {
        for p in PLUGINS {
            if !spec.bin_dir.join(p).is_file() {
                return Err(io::Error::other(format!(
                    "{} missing: build the plugins first (cargo build --workspace --bins)",
                    spec.bin_dir.join(p).display()
                )));
            }
        }
        let host = TestNs::with_lo()?;
        // A Docker host: the forward policy drops. Firewall must hook into
        // this chain on the first ADD and leave it as it was with the last DEL.
        let docker = "table ip filter {\n chain FORWARD { type filter hook forward priority filter; policy drop; }\n}\n";
        let out = host.spawn(&["nft", "-f", "-"], docker.as_bytes())?;
        if !out.success() {
            return Err(io::Error::other(format!("nft -f: {}", out.stderr)));
        }
        let dir = TempDir::new()?;
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin)?;
        let real_bin = spec.bin_dir.canonicalize()?;
        link_plugins(&real_bin, &bin)?;
        for d in ["cache", "ipam", "tuning", "dns"] {
            std::fs::create_dir_all(dir.join(d))?;
        }
        std::fs::write(dir.join("resolv.conf"), "nameserver 127.0.0.1\n")?;
        let net = format!("{}-{}", spec.tag, unique_suffix());
        let n = spec.subnet;
        let list = conflist_value(&json!({
            "cniVersion": "1.1.0",
            "name": net,
            "plugins": [
                {"type": "bridge", "bridge": spec.bridge, "isGateway": true, "ipMasq": true,
                 "hairpinMode": true, "macspoofchk": true,
                 "ipam": {"type": "host-local", "dataDir": dir.join("ipam"),
                          "ranges": [[{"subnet": format!("10.{n}.0.0/24")}], [{"subnet": format!("fd00:{n}::/64")}]],
                          "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "firewall", "backend": "", "ingressPolicy": "same-bridge"},
                {"type": "tuning", "dataDir": dir.join("tuning"), "mtu": 1400, "promisc": true,
                 "allmulti": true, "txQLen": 500, "sysctl": {"net.ipv4.conf.IFNAME.arp_notify": "1"}},
                {"type": "dnsname", "domainName": "chaos.test", "capabilities": {"aliases": true}}
            ]
        }));
        let mut rt = Runtime::new(vec![bin.clone()], Some(host.path().to_path_buf()), dir.join("cache"));
        rt.env = vec![
            ("DNS_SIDECAR_RUN_DIR".into(), path_str(&dir.join("dns"))),
            ("DNS_SIDECAR_RESOLV_CONF".into(), path_str(&dir.join("resolv.conf"))),
            // No node allowlist of this machine applies to the lab.
            ("CNI_TUNING_ALLOWLIST".into(), path_str(&dir.join("no-allowlist"))),
        ];
        let gateway4 = format!("10.{n}.0.1").parse().expect("address");
        Ok(ChainLab {
            host,
            dir,
            bin,
            real_bin,
            net,
            bridge: spec.bridge.clone(),
            list,
            rt,
            gateway4,
            serial: 0,
        })
    }

    /// A new container netns (lo up), not attached yet.
    pub fn member(&mut self, port: u16) -> io::Result<Member> {
        let ns = TestNs::with_lo()?;
        let mut m = Member { ns, id: String::new(), name: String::new(), port, ips: Vec::new() };
        self.fresh_identity(&mut m);
        Ok(m)
    }

    /// A new container ID and name for `m` (a new container in the same netns).
    pub fn fresh_identity(&mut self, m: &mut Member) {
        self.serial += 1;
        let s = self.serial;
        let pid = std::process::id() as u64;
        m.id = format!("{:016x}{:016x}{:016x}{:016x}", pid, s, s.wrapping_mul(0x9e37_79b9_7f4a_7c15), !s);
        m.name = format!("c{s}");
        m.ips.clear();
    }

    pub fn rt_conf(&self, m: &Member) -> RuntimeConf {
        let port = m.port;
        RuntimeConf::new(&m.id, m.ns.path(), "eth0")
            .cni_args(&format!("IgnoreUnknown=1;K8S_POD_NAME={}", m.name))
            .cap_args(json!({
                "portMappings": [
                    {"hostPort": port, "containerPort": 80, "protocol": "tcp"},
                    {"hostPort": port, "containerPort": 53, "protocol": "udp"}
                ],
                "aliases": {self.net.clone(): [format!("a-{}", m.name)]}
            }))
    }

    /// ADD through `rt`; on success the member's addresses are recorded.
    pub fn add(&self, rt: &Runtime, m: &mut Member) -> Result<CniResult, InvokeError> {
        let res = rt.add_rt(&self.list, &self.rt_conf(m))?;
        m.ips = res.ips.iter().map(|i| i.address).collect();
        Ok(res)
    }

    pub fn del(&self, rt: &Runtime, m: &Member) -> Result<(), InvokeError> {
        rt.del_rt(&self.list, &self.rt_conf(m))
    }

    /// Forget the runtime's cached result of `m` (its next DEL gets no prevResult).
    pub fn drop_cache(&self, m: &Member) {
        let _ = std::fs::remove_file(self.rt.cache_path(&self.net, &m.id, "eth0"));
    }

    pub fn ipam_dir(&self) -> PathBuf {
        self.dir.join("ipam").join(&self.net)
    }

    pub fn dns_dir(&self) -> PathBuf {
        self.dir.join("dns").join(&self.net)
    }

    /// host-local's leases: address → container ID (files named by an IP).
    pub fn leases(&self) -> BTreeMap<IpAddr, String> {
        let mut out = BTreeMap::new();
        let Ok(dir) = std::fs::read_dir(self.ipam_dir()) else { return out };
        for e in dir.flatten() {
            let Some(ip) = e.file_name().to_str().and_then(|n| n.parse::<IpAddr>().ok()) else { continue };
            let content = std::fs::read_to_string(e.path()).unwrap_or_default();
            out.insert(ip, content.lines().next().unwrap_or("").trim().to_string());
        }
        out
    }

    /// The attachments in dns-sidecar's records: (container ID, ifname).
    pub fn dns_records(&self) -> Result<BTreeSet<(String, String)>, String> {
        let path = self.dns_dir().join("records.json");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(v["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (c["id"].as_str().unwrap_or("").to_string(), c["ifname"].as_str().unwrap_or("").to_string())
            })
            .collect())
    }

    /// Live DNS daemons of this lab (their environment names the lab's run dir).
    pub fn daemons(&self) -> Vec<u32> {
        procs::with_env("DNS_SIDECAR_RUN_DIR", &path_str(&self.dir.join("dns")))
    }

    /// Everything the chain leaves on the node, as comparable lines: state
    /// files (by name and kind; contents such as cursors may change), links
    /// and addresses of the host netns, the nf_tables ruleset (handles and
    /// counters left out, set elements sorted) and the number of DNS daemons.
    pub fn snapshot(&self) -> Snapshot {
        let mut s = BTreeSet::new();
        for d in ["cache", "ipam", "tuning", "dns"] {
            walk(&self.dir.path().join(d), &self.dir.path().join(d), d, &mut s);
        }
        match self.host.ip_json(&["addr", "show"]) {
            Ok(links) => {
                for l in links.as_array().into_iter().flatten() {
                    let name = l["ifname"].as_str().unwrap_or("?");
                    let master = l["master"].as_str().unwrap_or("-");
                    s.insert(format!("link {name} master {master}"));
                    for a in l["addr_info"].as_array().into_iter().flatten() {
                        s.insert(format!(
                            "addr {name} {}/{}",
                            a["local"].as_str().unwrap_or("?"),
                            a["prefixlen"]
                        ));
                    }
                }
            }
            Err(e) => {
                s.insert(format!("error ip addr: {e}"));
            }
        }
        match self.host.spawn(&["nft", "-j", "list", "ruleset"], b"") {
            Ok(out) if out.success() => match serde_json::from_str::<Value>(&out.stdout) {
                Ok(v) => s.extend(nft_lines(&v)),
                Err(e) => {
                    s.insert(format!("error nft -j: {e}"));
                }
            },
            Ok(out) => {
                s.insert(format!("error nft: {}", out.stderr.trim()));
            }
            Err(e) => {
                s.insert(format!("error nft: {e}"));
            }
        }
        s.insert(format!("dns daemons {}", self.daemons().len()));
        Snapshot { lines: s }
    }

    /// The facts that must hold with exactly `alive` attached: one lease per
    /// address of each, none other (but the `known` leftovers of earlier
    /// runs, already reported), no address twice; their DNS records and no
    /// other; one DNS daemon while anyone is attached; each container's
    /// `eth0` holds its addresses. Returns what is wrong.
    pub fn check_attached(&self, alive: &[&Member], known: &BTreeSet<IpAddr>) -> Vec<String> {
        let mut bad = Vec::new();
        let mut want: BTreeMap<IpAddr, String> = BTreeMap::new();
        for m in alive {
            if m.ips.len() != 2 {
                bad.push(format!(
                    "{} ({}) has addresses {:?}, want one IPv4 and one IPv6",
                    m.name, m.id, m.ips
                ));
            }
            for ip in &m.ips {
                if let Some(other) = want.insert(ip.addr, m.id.clone()) {
                    bad.push(format!("duplicate address {}: {other} and {}", ip.addr, m.id));
                }
            }
        }
        let mut leases = self.leases();
        leases.retain(|ip, _| !known.contains(ip));
        if leases != want {
            for (ip, id) in &leases {
                if want.get(ip) != Some(id) {
                    bad.push(format!("lease {ip} held by {id:?}: no attached container has it"));
                }
            }
            for (ip, id) in &want {
                if leases.get(ip) != Some(id) {
                    bad.push(format!("{id} has {ip} but holds no lease for it"));
                }
            }
        }
        let want_dns: BTreeSet<(String, String)> =
            alive.iter().map(|m| (m.id.clone(), "eth0".into())).collect();
        match self.dns_records() {
            Ok(have) if have != want_dns => {
                for r in have.difference(&want_dns) {
                    bad.push(format!("DNS record of {} {} that is not attached", r.0, r.1));
                }
                for r in want_dns.difference(&have) {
                    bad.push(format!("no DNS record of attached {} {}", r.0, r.1));
                }
            }
            Ok(_) => {}
            Err(e) => bad.push(format!("DNS records unreadable: {e}")),
        }
        let daemons = self.daemons().len();
        let want_daemons = usize::from(!alive.is_empty());
        if daemons != want_daemons {
            bad.push(format!("{daemons} DNS daemons running, want {want_daemons}"));
        }
        for m in alive {
            let mut have = crate::state::addrs(&m.ns, "eth0");
            have.retain(|a| !a.starts_with("fe80:"));
            let mut wanted: Vec<String> = m.ips.iter().map(|i| i.to_string()).collect();
            have.sort();
            wanted.sort();
            if have != wanted {
                bad.push(format!("{} eth0 has {have:?}, its ADD gave {wanted:?}", m.name));
            }
        }
        bad
    }

    /// Ask the network's DNS server, from `from`, for `name`: its rcode and
    /// the number of answers (None when no answer came).
    pub fn resolve(&self, from: &TestNs, name: &str) -> Option<(u8, u16)> {
        let server = SocketAddr::new(self.gateway4, 53);
        let query = build_query(&format!("{name}.chaos.test"), 1)?;
        from.run(move || -> Option<(u8, u16)> {
            let s = UdpSocket::bind("0.0.0.0:0").ok()?;
            s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
            let mut buf = [0u8; 1500];
            for _ in 0..3 {
                s.send_to(&query, server).ok()?;
                if let Ok(n) = s.recv(&mut buf) {
                    let (_, rcode, answers) = reply_facts(&buf[..n])?;
                    return Some((rcode, answers));
                }
            }
            None
        })
        .ok()
        .flatten()
    }

    /// Stop what the lab's runs left running: its DNS daemons and tracers
    /// (found by the lab's own paths, so never anyone else's).
    pub fn stop_processes(&self) {
        for _ in 0..3 {
            let mut pids = self.daemons();
            pids.extend(procs::with_arg(&self.strace_log()));
            if pids.is_empty() {
                return;
            }
            procs::signal_all(&pids, libc::SIGKILL);
            procs::wait_gone(&pids, Duration::from_secs(2));
        }
    }

    /// The log path every fault tracer of this lab writes (its mark in argv).
    pub fn strace_log(&self) -> String {
        path_str(&self.dir.join("strace.log"))
    }
}

impl Drop for ChainLab {
    fn drop(&mut self) {
        self.stop_processes();
    }
}

/// `dst/<plugin>` → `src/<plugin>` for the chain's plugins, plus `dnsname`.
pub fn link_plugins(src: &Path, dst: &Path) -> io::Result<()> {
    for p in PLUGINS {
        let link = dst.join(p);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(src.join(p), &link)?;
    }
    let link = dst.join("dnsname");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(src.join("dns-sidecar"), link)
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn walk(root: &Path, dir: &Path, label: &str, out: &mut BTreeSet<String>) {
    let Ok(rd) = std::fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let rel = p.strip_prefix(root).unwrap_or(&p).to_string_lossy().into_owned();
        let kind = match e.file_type() {
            Ok(t) if t.is_dir() => "dir",
            Ok(t) if t.is_symlink() => "symlink",
            Ok(t) if t.is_socket() => "socket",
            Ok(t) if t.is_fifo() => "fifo",
            Ok(_) => "file",
            Err(_) => "?",
        };
        out.insert(format!("{kind} {label}/{rel}"));
        if kind == "dir" {
            walk(root, &p, label, out);
        }
    }
}

/// `nft -j` objects as lines: handles and counter values dropped, set
/// elements sorted, each rule with its position in its chain.
pub fn nft_lines(ruleset: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut pos: BTreeMap<String, usize> = BTreeMap::new();
    for obj in ruleset["nftables"].as_array().into_iter().flatten() {
        let Some((kind, body)) = obj.as_object().and_then(|o| o.iter().next()) else { continue };
        if kind == "metainfo" {
            continue;
        }
        let mut body = body.clone();
        if let Some(m) = body.as_object_mut() {
            m.remove("handle");
            if let Some(Value::Array(elems)) = m.get_mut("elem") {
                elems.sort_by_key(|e| e.to_string());
            }
        }
        strip_counters(&mut body);
        if kind == "rule" {
            let chain = format!("{} {} {}", body["family"], body["table"], body["chain"]);
            let n = pos.entry(chain).or_default();
            *n += 1;
            out.push(format!("nft rule#{n} {body}"));
        } else {
            out.push(format!("nft {kind} {body}"));
        }
    }
    out
}

fn strip_counters(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if let Some(c) = m.get_mut("counter") {
                if c.is_object() {
                    *c = Value::Null;
                }
            }
            m.values_mut().for_each(strip_counters);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_counters),
        _ => {}
    }
}

/// See [`ChainLab::snapshot`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    pub lines: BTreeSet<String>,
}

impl Snapshot {
    /// What `self` (after) has that `before` had not (`left: …`) and the
    /// reverse (`gone: …`); empty when equal.
    pub fn diff(&self, before: &Snapshot) -> Vec<String> {
        let mut out: Vec<String> =
            self.lines.difference(&before.lines).map(|l| format!("left: {l}")).collect();
        out.extend(before.lines.difference(&self.lines).map(|l| format!("gone: {l}")));
        out
    }
}
