//! Simulated hosts for multi-node tests: "node" namespaces joined by an
//! underlay, and an etcd cluster with one member per node.
//!
//! ```text
//! bridged:  node0 eth0 192.0.2.1/24 ─┐                       routed:  node0 eth0 198.51.100.2/28  ── r0 .1 ─┐
//!           node1 eth0 192.0.2.2/24 ─┼─ ul0 192.0.2.254          node1 eth0 198.51.100.18/28 ── r1 .17 ─┼ router
//!           node2 eth0 192.0.2.3/24 ─┘  (underlay netns)         node2 eth0 198.51.100.34/28 ── r2 .33 ─┘ (ip_forward)
//! ```
//! Every node has a default route (to 192.0.2.254, or its router link), so
//! plugins discover the node's underlay address as a real host's would. The
//! etcd members (`etcd` from Debian's etcd-server, started inside their
//! node's netns on the node's address, ports 2379/2380, data in a temp dir)
//! are ended by PID, as are the agents and DNS servers that plugins started
//! with this fixture's state directories; the namespaces and the temp dir
//! go last.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::ns::{veth, TestNs};
use crate::runtime::Runtime;
use crate::tmp::{unique_suffix, TempDir};

/// One simulated host.
pub struct Node {
    pub name: String,
    pub ns: TestNs,
    /// Its underlay address (VTEP, etcd member).
    pub ip: Ipv4Addr,
    /// Its own state root (`overlay/`, `dns/`, `etcd/` under it).
    pub dir: PathBuf,
    etcd: Option<Child>,
}

impl Node {
    /// `OVERLAY_RUN_DIR` and `DNS_SIDECAR_RUN_DIR` of this node.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("OVERLAY_RUN_DIR".into(), self.dir.join("overlay").to_string_lossy().into_owned()),
            ("DNS_SIDECAR_RUN_DIR".into(), self.dir.join("dns").to_string_lossy().into_owned()),
        ]
    }

    /// A runtime whose plugins run in this node's netns with its state dirs.
    pub fn runtime(&self, bin_dirs: Vec<PathBuf>) -> Runtime {
        let mut rt = Runtime::new(bin_dirs, Some(self.ns.path().to_path_buf()), self.dir.join("cache"));
        rt.env = self.env();
        rt
    }

    pub fn etcd_url(&self) -> String {
        format!("http://{}:2379", self.ip)
    }

    pub fn etcd_running(&self) -> bool {
        self.etcd.is_some()
    }

    /// Stop this node's etcd member (SIGKILL by PID: a crash, not a goodbye).
    pub fn kill_etcd(&mut self) {
        if let Some(mut c) = self.etcd.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// PIDs of the daemons (overlay agents, DNS servers) started with this
    /// node's state dirs: their pidfiles, checked against /proc.
    pub fn daemon_pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for sub in ["overlay", "dns"] {
            let Ok(rd) = std::fs::read_dir(self.dir.join(sub)) else { continue };
            for e in rd.flatten() {
                let Ok(pid) = std::fs::read_to_string(e.path().join("pid")) else { continue };
                let Ok(pid) = pid.trim().parse::<i32>() else { continue };
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
                if args.len() >= 3 && args[1] == b"serve" && args[2] == e.file_name().as_encoded_bytes() {
                    out.push(pid);
                }
            }
        }
        out
    }

    /// Kill this node's daemons (SIGKILL) and wait until they are gone.
    pub fn kill_daemons(&self) {
        for pid in self.daemon_pids() {
            // SAFETY: a pid we just checked is one of this node's daemons.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let deadline = Instant::now() + Duration::from_secs(5);
            while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_etcd();
        self.kill_daemons();
    }
}

/// Several nodes on one underlay, with or without etcd.
pub struct Cluster {
    pub nodes: Vec<Node>,
    /// The underlay's own netns: the L2 switch (bridged) or the router.
    pub underlay: TestNs,
    /// The address of the underlay netns as the nodes' "outside world".
    pub outside: Ipv4Addr,
    token: String,
    _tmp: TempDir,
}

impl Cluster {
    /// `n` nodes on one L2 segment (a bridge in the underlay netns).
    pub fn bridged(n: usize) -> io::Result<Cluster> {
        let underlay = TestNs::with_lo()?;
        underlay.ip(&["link", "add", "ul0", "type", "bridge"])?;
        underlay.ip(&["addr", "add", "192.0.2.254/24", "dev", "ul0"])?;
        underlay.ip(&["link", "set", "ul0", "up"])?;
        let tmp = TempDir::new()?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let ns = TestNs::with_lo()?;
            let ip = Ipv4Addr::new(192, 0, 2, i as u8 + 1);
            veth(&ns, "eth0", &underlay, &format!("ul-n{i}"))?;
            underlay.ip(&["link", "set", &format!("ul-n{i}"), "master", "ul0"])?;
            ns.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"])?;
            ns.ip(&["route", "add", "default", "via", "192.0.2.254"])?;
            nodes.push(Cluster::node(i, ns, ip, &tmp)?);
        }
        Ok(Cluster {
            nodes,
            underlay,
            outside: Ipv4Addr::new(192, 0, 2, 254),
            token: unique_suffix(),
            _tmp: tmp,
        })
    }

    /// `n` nodes each on its own link to a router: no shared L2 at all.
    pub fn routed(n: usize) -> io::Result<Cluster> {
        let underlay = TestNs::with_lo()?;
        underlay.set_sysctl("net.ipv4.ip_forward", "1")?;
        let tmp = TempDir::new()?;
        let mut nodes = Vec::new();
        for i in 0..n {
            let ns = TestNs::with_lo()?;
            let base = 16 * i as u8;
            let (router, ip) = (Ipv4Addr::new(198, 51, 100, base + 1), Ipv4Addr::new(198, 51, 100, base + 2));
            let r = format!("r{i}");
            veth(&ns, "eth0", &underlay, &r)?;
            underlay.ip(&["addr", "add", &format!("{router}/28"), "dev", &r])?;
            ns.ip(&["addr", "add", &format!("{ip}/28"), "dev", "eth0"])?;
            ns.ip(&["route", "add", "default", "via", &router.to_string()])?;
            nodes.push(Cluster::node(i, ns, ip, &tmp)?);
        }
        Ok(Cluster {
            nodes,
            underlay,
            outside: Ipv4Addr::new(198, 51, 100, 1),
            token: unique_suffix(),
            _tmp: tmp,
        })
    }

    fn node(i: usize, ns: TestNs, ip: Ipv4Addr, tmp: &TempDir) -> io::Result<Node> {
        let dir = tmp.join(format!("node{i}"));
        std::fs::create_dir_all(&dir)?;
        Ok(Node { name: format!("node{i}"), ns, ip, dir, etcd: None })
    }

    /// The client URLs of every member.
    pub fn endpoints(&self) -> Vec<String> {
        self.nodes.iter().map(Node::etcd_url).collect()
    }

    /// Start one etcd member per node and wait until the cluster has a leader.
    pub fn start_etcd(&mut self) -> io::Result<()> {
        for i in 0..self.nodes.len() {
            self.start_member(i)?;
        }
        self.wait_healthy(&(0..self.nodes.len()).collect::<Vec<_>>(), Duration::from_secs(30))
    }

    /// (Re)start node `i`'s member (its data dir is kept across restarts).
    pub fn start_member(&mut self, i: usize) -> io::Result<()> {
        let initial: Vec<String> =
            self.nodes.iter().map(|n| format!("{}=http://{}:2380", n.name, n.ip)).collect();
        let node = &self.nodes[i];
        let data = node.dir.join("etcd");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(node.dir.join("etcd.log"))?;
        let (mut cmd, _guard) = node.ns.command("etcd")?;
        cmd.args(["--name", &node.name, "--data-dir", &data.to_string_lossy()])
            .args(["--listen-client-urls", &node.etcd_url(), "--advertise-client-urls", &node.etcd_url()])
            .args(["--listen-peer-urls", &format!("http://{}:2380", node.ip)])
            .args(["--initial-advertise-peer-urls", &format!("http://{}:2380", node.ip)])
            .args(["--initial-cluster", &initial.join(","), "--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new", "--logger", "zap", "--log-outputs", "stderr"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("starting etcd: {e} (scripts/deps installs etcd-server)"))
        })?;
        self.nodes[i].etcd = Some(child);
        Ok(())
    }

    /// Wait until every member in `members` reports itself healthy (it has a leader).
    pub fn wait_healthy(&self, members: &[usize], within: Duration) -> io::Result<()> {
        let deadline = Instant::now() + within;
        for &i in members {
            let n = &self.nodes[i];
            loop {
                let ip = n.ip;
                let body =
                    n.ns.run(move || http_get(SocketAddr::from((ip, 2379)), "/health"))
                        .ok()
                        .and_then(|r| r.ok());
                if body.is_some_and(|b| b.contains("\"health\":\"true\"")) {
                    break;
                }
                if Instant::now() > deadline {
                    let log = std::fs::read_to_string(n.dir.join("etcd.log")).unwrap_or_default();
                    let tail: String = log.lines().rev().take(15).collect::<Vec<_>>().join("\n");
                    return Err(io::Error::other(format!("etcd member {} not healthy: {tail}", n.name)));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// Kill node `i` outright: its daemons, its etcd member, its netns.
    pub fn kill_node(&mut self, i: usize) -> Node {
        let mut node = self.nodes.remove(i);
        node.kill_daemons();
        node.kill_etcd();
        node
    }
}

/// A plain HTTP/1.0 GET (test fixture use only); the response body.
pub fn http_get(to: SocketAddr, path: &str) -> io::Result<String> {
    let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {to}\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default())
}

/// `etcdctl` against the cluster from inside node `from` (test inspection).
pub fn etcdctl(from: &Node, endpoints: &[String], args: &[&str]) -> io::Result<String> {
    let (mut cmd, _guard) = from.ns.command("etcdctl")?;
    let out = cmd
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .args(args)
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "etcdctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
