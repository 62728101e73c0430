//! Reading kernel state of a test netns as JSON (`ip -j`, `nft -j`: test
//! oracles only), reachability, and polling.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::ns::TestNs;

/// `ip -n NS -j link show` (an array of link objects).
pub fn links(ns: &TestNs) -> Value {
    ns.ip_json(&["link", "show"]).unwrap_or_else(|e| panic!("{e}"))
}

/// The link object of `ifname`, if it exists (`ip -j -d link show dev X`: with details).
pub fn link(ns: &TestNs, ifname: &str) -> Option<Value> {
    let v = ns.ip_json(&["-d", "link", "show", "dev", ifname]).ok()?;
    v.as_array()?.first().cloned()
}

pub fn link_exists(ns: &TestNs, ifname: &str) -> bool {
    link(ns, ifname).is_some()
}

/// Names of every link in the netns.
pub fn link_names(ns: &TestNs) -> Vec<String> {
    links(ns)
        .as_array()
        .map(|a| a.iter().filter_map(|l| l["ifname"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `ip -n NS -j addr show` (every interface).
pub fn addr_show(ns: &TestNs) -> Value {
    ns.ip_json(&["addr", "show"]).unwrap_or_else(|e| panic!("{e}"))
}

/// The addresses of `ifname` as `addr/prefix` strings (both families; an
/// empty list when the interface does not exist).
pub fn addrs(ns: &TestNs, ifname: &str) -> Vec<String> {
    let Ok(v) = ns.ip_json(&["addr", "show", "dev", ifname]) else { return Vec::new() };
    v.as_array()
        .into_iter()
        .flatten()
        .flat_map(|l| l["addr_info"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| Some(format!("{}/{}", a["local"].as_str()?, a["prefixlen"].as_u64()?)))
        .collect()
}

/// IPv4 and IPv6 routes of the main table, concatenated
/// (`ip -j -4 route show` + `ip -j -6 route show`).
pub fn routes(ns: &TestNs) -> Value {
    let mut all = Vec::new();
    for fam in ["-4", "-6"] {
        if let Ok(Value::Array(a)) = ns.ip_json(&[fam, "route", "show"]) {
            all.extend(a);
        }
    }
    Value::Array(all)
}

/// Routes of every table (`ip -j -4/-6 route show table all`).
pub fn routes_all_tables(ns: &TestNs) -> Value {
    let mut all = Vec::new();
    for fam in ["-4", "-6"] {
        if let Ok(Value::Array(a)) = ns.ip_json(&[fam, "route", "show", "table", "all"]) {
            all.extend(a);
        }
    }
    Value::Array(all)
}

/// True when a route with `dst` (as `ip` prints it: `default`, `10.0.0.0/24`,
/// or a host address without prefix) exists in the main table.
pub fn has_route(ns: &TestNs, dst: &str) -> bool {
    routes(ns).as_array().into_iter().flatten().any(|r| r["dst"].as_str() == Some(dst))
}

/// `nft -j list ruleset` inside the netns (the `nftables` array of objects).
pub fn nft_ruleset(ns: &TestNs) -> Value {
    let out = ns.spawn(&["nft", "-j", "list", "ruleset"], b"").unwrap_or_else(|e| panic!("nft: {e}"));
    assert!(out.success(), "nft -j list ruleset in {}: {}", ns.name(), out.stderr);
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("nft -j output: {e}: {}", out.stdout))
}

/// `nft list ruleset` as text, for messages and snapshot-style assertions.
pub fn nft_text(ns: &TestNs) -> String {
    let out = ns.spawn(&["nft", "list", "ruleset"], b"").unwrap_or_else(|e| panic!("nft: {e}"));
    out.stdout
}

/// Objects of one kind (`table`, `chain`, `rule`, `set`, `map`, `element`) in
/// an `nft -j` ruleset.
pub fn nft_objects(ruleset: &Value, kind: &str) -> Vec<Value> {
    ruleset["nftables"].as_array().into_iter().flatten().filter_map(|o| o.get(kind).cloned()).collect()
}

/// True when the ruleset has no tables.
pub fn nft_is_empty(ns: &TestNs) -> bool {
    nft_objects(&nft_ruleset(ns), "table").is_empty()
}

/// One ICMP echo from `from` to `ip` with a 1 s timeout.
pub fn ping(from: &TestNs, ip: &str) -> bool {
    ping_timeout(from, ip, Duration::from_secs(1))
}

/// One ICMP echo (raw socket opened inside `from`; no `ping` binary needed).
pub fn ping_timeout(from: &TestNs, ip: &str, timeout: Duration) -> bool {
    let Ok(addr) = ip.parse::<IpAddr>() else { panic!("ping: not an IP address: {ip:?}") };
    from.run(move || icmp_echo(addr, timeout)).map(|r| r.unwrap_or(false)).unwrap_or(false)
}

/// Poll `f` every 50 ms until it is true or `timeout` passes; returns the last value.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if f() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Send one echo request over a raw ICMP socket in the calling thread's netns
/// and wait for the matching reply.
fn icmp_echo(dst: IpAddr, timeout: Duration) -> io::Result<bool> {
    static SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(1);
    let id = (std::process::id() as u16) ^ 0x5a5a;
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let v6 = dst.is_ipv6();
    let (family, proto, req_type, reply_type) = if v6 {
        (libc::AF_INET6, libc::IPPROTO_ICMPV6, 128u8, 129u8)
    } else {
        (libc::AF_INET, libc::IPPROTO_ICMP, 8u8, 0u8)
    };
    // SAFETY: plain socket creation.
    let fd = unsafe { libc::socket(family, libc::SOCK_RAW | libc::SOCK_CLOEXEC, proto) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    struct Fd(i32);
    impl Drop for Fd {
        fn drop(&mut self) {
            // SAFETY: we own the fd.
            unsafe { libc::close(self.0) };
        }
    }
    let fd = Fd(fd);

    let mut pkt = vec![req_type, 0, 0, 0];
    pkt.extend_from_slice(&id.to_be_bytes());
    pkt.extend_from_slice(&seq.to_be_bytes());
    pkt.extend_from_slice(b"cni-test-harness-ping");
    if !v6 {
        // The kernel fills in the ICMPv6 checksum itself.
        let c = checksum(&pkt);
        pkt[2..4].copy_from_slice(&c.to_be_bytes());
    }
    // SAFETY: zeroed sockaddr_storage is valid; filled below per family.
    let mut ss: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let len = match dst {
        IpAddr::V4(a) => {
            let sin = &mut ss as *mut _ as *mut libc::sockaddr_in;
            // SAFETY: sockaddr_storage is large enough for sockaddr_in.
            unsafe {
                (*sin).sin_family = libc::AF_INET as libc::sa_family_t;
                (*sin).sin_addr.s_addr = u32::from_ne_bytes(a.octets());
            }
            std::mem::size_of::<libc::sockaddr_in>()
        }
        IpAddr::V6(a) => {
            let sin6 = &mut ss as *mut _ as *mut libc::sockaddr_in6;
            // SAFETY: sockaddr_storage is large enough for sockaddr_in6.
            unsafe {
                (*sin6).sin6_family = libc::AF_INET6 as libc::sa_family_t;
                (*sin6).sin6_addr.s6_addr = a.octets();
            }
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: valid buffer and address.
    let n = unsafe {
        libc::sendto(
            fd.0,
            pkt.as_ptr().cast(),
            pkt.len(),
            0,
            &ss as *const _ as *const libc::sockaddr,
            len as u32,
        )
    };
    if n < 0 {
        // e.g. ENETUNREACH: no route.
        return Ok(false);
    }
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 2048];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut pfd = libc::pollfd { fd: fd.0, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().max(1) as i32) };
        if r <= 0 {
            if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Ok(false);
        }
        // SAFETY: valid buffer; we do not need the source address.
        let n = unsafe { libc::recv(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        let mut data = &buf[..n as usize];
        if !v6 {
            // IPv4 raw sockets deliver the IP header too; check the source.
            let ihl = usize::from(data[0] & 0x0f) * 4;
            if data.len() < ihl + 8 {
                continue;
            }
            let IpAddr::V4(d) = dst else { unreachable!() };
            if data[12..16] != d.octets() {
                continue;
            }
            data = &data[ihl..];
        }
        if data.len() >= 8
            && data[0] == reply_type
            && data[4..6] == id.to_be_bytes()
            && data[6..8] == seq.to_be_bytes()
        {
            return Ok(true);
        }
    }
}

// ---- state fingerprints ----------------------------------------------------

/// Everything a plugin run could leave behind, as comparable lines: per
/// netns its links, addresses, routes of every table, routing rules, nf_tables ruleset,
/// IPv4/IPv6 interface sysctls and the processes running in it; per
/// directory every file (type, mode, content hash; symlinks by target,
/// never followed). Take one before and one after a run and
/// [`Fingerprint::diff`] them.
///
/// Left out on purpose, because they change by themselves: link operstate
/// and counters, address flags (DAD), neighbour and FDB entries, route
/// expiry.
///
/// ```no_run
/// use test_harness::*;
/// let host = HostNs::with_lo().unwrap();
/// let data = TempDir::new().unwrap();
/// let spec = FingerprintSpec::new().netns("host", &host).dir("data", data.path());
/// let before = spec.take();
/// // ... run a plugin that must fail ...
/// let diff = before.diff(&spec.take());
/// assert!(diff.is_empty(), "left behind:\n{}", diff.join("\n"));
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fingerprint {
    /// Fact line → how many times it occurs.
    pub lines: std::collections::BTreeMap<String, usize>,
}

/// What a [`Fingerprint`] looks at: namespaces and directories, each under a label.
#[derive(Clone, Debug, Default)]
pub struct FingerprintSpec<'a> {
    netns: Vec<(&'a str, &'a TestNs)>,
    dirs: Vec<(&'a str, std::path::PathBuf)>,
    processes_only: bool,
}

impl<'a> FingerprintSpec<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Watch `ns` (its facts are prefixed with `label`).
    pub fn netns(mut self, label: &'a str, ns: &'a TestNs) -> Self {
        self.netns.push((label, ns));
        self
    }

    /// Watch everything under `dir` (it need not exist yet).
    pub fn dir(mut self, label: &'a str, dir: impl Into<std::path::PathBuf>) -> Self {
        self.dirs.push((label, dir.into()));
        self
    }

    /// Only the processes of the namespaces (cheap: no `ip` or `nft` run).
    pub fn processes_only(mut self) -> Self {
        self.processes_only = true;
        self
    }

    pub fn take(&self) -> Fingerprint {
        let mut fp = Fingerprint::default();
        let mut inodes = Vec::new();
        for (label, ns) in &self.netns {
            if !self.processes_only {
                netns_facts(label, ns, &mut fp);
            }
            if let Ok(ino) = ns.inode() {
                inodes.push((*label, ino));
            }
        }
        process_facts(&inodes, &mut fp);
        for (label, dir) in &self.dirs {
            dir_facts(label, dir, dir, &mut fp);
        }
        fp
    }
}

impl Fingerprint {
    fn add(&mut self, line: String) {
        *self.lines.entry(line).or_default() += 1;
    }

    /// Lines only in `self` ("- ...") and only in `after` ("+ ..."); empty
    /// when nothing changed.
    pub fn diff(&self, after: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        for (line, n) in &self.lines {
            let m = after.lines.get(line).copied().unwrap_or(0);
            out.extend((m..*n).map(|_| format!("- {line}")));
        }
        for (line, m) in &after.lines {
            let n = self.lines.get(line).copied().unwrap_or(0);
            out.extend((n..*m).map(|_| format!("+ {line}")));
        }
        out
    }

    /// The facts about files and directories (lines starting with `file `).
    pub fn files(&self) -> impl Iterator<Item = &str> {
        self.lines.keys().map(String::as_str).filter(|l| l.starts_with("file "))
    }
}

fn netns_facts(label: &str, ns: &TestNs, fp: &mut Fingerprint) {
    let s = |v: &Value| match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // One `ip` for links with their addresses and for the routes of every
    // table and family: two JSON arrays.
    let out = ns
        .spawn(&["ip", "-j", "-d", "-batch", "-"], b"addr show\nroute show table all\n")
        .unwrap_or_else(|e| panic!("ip -batch in {}: {e}", ns.name()));
    assert!(out.success(), "ip -batch in {}: {}", ns.name(), out.stderr);
    let arrays: Vec<Value> = serde_json::Deserializer::from_str(&out.stdout)
        .into_iter()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("ip -batch output: {e}: {}", out.stdout));
    let [links, routes] =
        <[Value; 2]>::try_from(arrays).unwrap_or_else(|a| panic!("ip -batch gave {} arrays", a.len()));
    for l in links.as_array().into_iter().flatten() {
        fp.add(format!(
            "{label} link {} index={} kind={} mac={} mtu={} flags={} master={} qlen={} promisc={} allmulti={} netns={}",
            s(&l["ifname"]),
            s(&l["ifindex"]),
            s(&l["linkinfo"]["info_kind"]),
            s(&l["address"]),
            s(&l["mtu"]),
            s(&l["flags"]),
            s(&l["master"]),
            s(&l["txqlen"]),
            s(&l["promiscuity"]),
            s(&l["allmulti"]),
            s(&l["link_netnsid"]),
        ));
    }
    for l in links.as_array().into_iter().flatten() {
        for a in l["addr_info"].as_array().into_iter().flatten() {
            fp.add(format!(
                "{label} addr {} {}/{} scope {}",
                s(&l["ifname"]),
                s(&a["local"]),
                s(&a["prefixlen"]),
                s(&a["scope"])
            ));
        }
    }
    for r in routes.as_array().into_iter().flatten() {
        fp.add(format!(
            "{label} route table={} type={} dst={} gw={} dev={} proto={} scope={} metric={} src={}",
            s(&r["table"]),
            s(&r["type"]),
            s(&r["dst"]),
            s(&r["gateway"]),
            s(&r["dev"]),
            s(&r["protocol"]),
            s(&r["scope"]),
            s(&r["metric"]),
            s(&r["prefsrc"]),
        ));
    }
    // Routing rules of both families (`ip rule` shows one family per run).
    use common::netlink::rtnl::{Family, Rtnl};
    let nl = |e: common::netlink::NlError| io::Error::other(e.to_string());
    let rules = ns
        .netns()
        .and_then(|n| Rtnl::in_netns(&n).map_err(nl))
        .and_then(|mut r| r.rules(Family::Any).map_err(nl))
        .unwrap_or_else(|e| panic!("rules of {}: {e}", ns.name()));
    for r in rules {
        fp.add(format!("{label} rule {r:?}"));
    }
    // The ruleset as text (no handles), each line under its table and chain/set.
    let (mut table, mut inner) = (String::new(), String::new());
    for line in nft_text(ns).lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("table ") {
            table = line.trim_end_matches(" {").to_string();
            inner.clear();
        } else if ["chain ", "set ", "map ", "flowtable "].iter().any(|p| line.starts_with(p)) {
            inner = line.trim_end_matches(" {").to_string();
        }
        fp.add(format!("{label} nft [{table}] [{inner}] {line}"));
    }
    let sysctls = ns
        .run(|| {
            let mut out = Vec::new();
            for fam in ["ipv4", "ipv6"] {
                let base = format!("/proc/sys/net/{fam}/conf");
                for dev in std::fs::read_dir(&base).into_iter().flatten().flatten() {
                    for key in std::fs::read_dir(dev.path()).into_iter().flatten().flatten() {
                        // Unreadable ones (stable_secret) are skipped.
                        if let Ok(v) = std::fs::read_to_string(key.path()) {
                            out.push(format!(
                                "net.{fam}.conf.{}.{}={}",
                                dev.file_name().to_string_lossy(),
                                key.file_name().to_string_lossy(),
                                v.trim()
                            ));
                        }
                    }
                }
            }
            for key in ["ipv4/ip_forward", "ipv4/ip_local_port_range", "core/somaxconn"] {
                if let Ok(v) = std::fs::read_to_string(format!("/proc/sys/net/{key}")) {
                    out.push(format!("net.{}={}", key.replace('/', "."), v.trim()));
                }
            }
            out
        })
        .unwrap_or_else(|e| panic!("sysctls of {}: {e}", ns.name()));
    for line in sysctls {
        fp.add(format!("{label} sysctl {line}"));
    }
}

/// Processes whose netns is one of `inodes` (by the thread group leader's netns).
fn process_facts(inodes: &[(&str, u64)], fp: &mut Fingerprint) {
    use std::os::unix::fs::MetadataExt;
    let me = std::process::id().to_string();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(meta) = std::fs::metadata(entry.path().join("ns/net")) else { continue };
        let Some((label, _)) = inodes.iter().find(|(_, ino)| *ino == meta.ino()) else { continue };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let argv: Vec<String> = cmdline
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        fp.add(format!("{label} process {pid} {}", argv.join(" ")));
    }
}

fn dir_facts(label: &str, root: &std::path::Path, dir: &std::path::Path, fp: &mut Fingerprint) {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut entries: Vec<_> = entries.flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path.strip_prefix(root).unwrap_or(&path).display().to_string();
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let what = if ft.is_symlink() {
            format!(
                "symlink -> {}",
                std::fs::read_link(&path).map(|t| t.display().to_string()).unwrap_or_default()
            )
        } else if ft.is_dir() {
            format!("dir {mode:o}")
        } else if ft.is_file() {
            let content = std::fs::read(&path).unwrap_or_default();
            format!("file {mode:o} {} bytes, fnv {:016x}", content.len(), fnv1a(&content))
        } else if ft.is_fifo() {
            "fifo".into()
        } else if ft.is_socket() {
            "socket".into()
        } else {
            "other".into()
        };
        fp.add(format!("file {label}/{rel}: {what}"));
        if ft.is_dir() {
            dir_facts(label, root, &path, fp);
        }
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
