//! Root tests of the dhcp IPAM plugin and its daemon against a real DHCP
//! server: dnsmasq (Debian's `dnsmasq-base`, see scripts/deps).
//!
//! Each test builds its own world: a "LAN" netns with a bridge `br0`
//! (10.78.0.1/24) and dnsmasq serving 10.78.0.100–150 on it (2-minute
//! leases, the shortest dnsmasq gives); a "host" netns whose `m0` is an
//! uplink into that bridge and where the daemon and the plugins run; and
//! container netns with a macvlan on `m0` and `ipam: dhcp`. Every dnsmasq and
//! daemon is started here, with its files in a temp dir (never
//! /run/cni/dhcp.sock), and stopped by its PID. The daemon's lease timers run
//! at [`SCALE`] of the server's (`CNIRS_DHCP_TIMER_SCALE`) so that a renewal
//! comes within seconds; nothing here asserts how long anything takes.
//!
//! Build the plugins first: `cargo build --workspace --bins`.

// `InvokeError` carries everything a failing test prints; its size does not matter here.
#![allow(clippy::result_large_err)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

macro_rules! require_root {
    () => {
        if !is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        if which("dnsmasq").is_none() {
            panic!("dnsmasq is missing: run scripts/deps (Debian package dnsmasq-base)");
        }
    };
}

const NET: &str = "dhcplan";
const SCALE: &str = "0.05";
const WAIT: Duration = Duration::from_secs(60);

fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(prog)).find(|p| p.is_file())
}

/// A process of ours, stopped by its PID (SIGTERM, then SIGKILL) when dropped.
struct Proc {
    child: Child,
}

impl Proc {
    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: a signal to our own child, which we have not reaped yet.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// SIGTERM and wait for the exit; its exit code.
    fn terminate(mut self) -> Option<i32> {
        self.signal(libc::SIGTERM);
        let exited = wait_until(WAIT, || matches!(self.child.try_wait(), Ok(Some(_))));
        assert!(exited, "pid {} did not stop on SIGTERM", self.pid());
        self.child.wait().ok()?.code()
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.signal(libc::SIGTERM);
            if !wait_until(Duration::from_secs(5), || matches!(self.child.try_wait(), Ok(Some(_)))) {
                let _ = self.child.kill();
            }
            let _ = self.child.wait();
        }
    }
}

/// A dnsmasq lease: `<expiry> <mac> <ip> <hostname> <client-id>`.
#[derive(Clone, Debug, PartialEq)]
struct ServerLease {
    expiry: u64,
    mac: String,
    ip: String,
    hostname: String,
    client_id: String,
}

struct Lan {
    // Dropped in this order: the daemon and dnsmasq before their netns.
    daemon: Option<Proc>,
    dnsmasq: Option<Proc>,
    host: HostNs,
    lan: TestNs,
    dir: TempDir,
    rt: Runtime,
    _cache: TempDir,
}

impl Lan {
    fn new() -> Lan {
        Lan::with_server(true)
    }

    fn with_server(serve: bool) -> Lan {
        let lan = TestNs::with_lo().unwrap();
        let host = HostNs::with_lo().unwrap();
        lan.ip(&["link", "add", "br0", "type", "bridge"]).unwrap();
        lan.ip(&["addr", "add", "10.78.0.1/24", "dev", "br0"]).unwrap();
        lan.ip(&["link", "set", "br0", "up"]).unwrap();
        veth(&host, "m0", &lan, "up0").unwrap();
        lan.ip(&["link", "set", "up0", "master", "br0"]).unwrap();
        let dir = TempDir::new().unwrap();
        let (rt, cache) = runtime_in(&host);
        let mut me = Lan { daemon: None, dnsmasq: None, host, lan, dir, rt, _cache: cache };
        if serve {
            me.start_dnsmasq();
        }
        me
    }

    fn start_dnsmasq(&mut self) {
        let d = self.dir.path();
        let (mut cmd, _guard) = self.lan.command("dnsmasq").unwrap();
        cmd.args([
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--port=0", // no DNS service; DHCP only
            "--user=root",
            "--interface=br0",
            "--bind-interfaces",
            "--no-ping", // offer at once instead of probing the address for 3 s
            "--dhcp-authoritative",
            "--dhcp-range=10.78.0.100,10.78.0.150,255.255.255.0,2m",
            "--dhcp-option=option:dns-server,10.78.0.53",
            "--domain=lan.test",
            "--log-dhcp",
        ]);
        cmd.arg(format!("--dhcp-leasefile={}", d.join("leases").display()));
        cmd.arg(format!("--log-facility={}", d.join("dnsmasq.log").display()));
        cmd.arg(format!("--pid-file={}", d.join("dnsmasq.pid").display()));
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let p = Proc { child: cmd.spawn().expect("start dnsmasq") };
        assert!(
            wait_until(WAIT, || self.server_log().contains("DHCP, sockets bound")),
            "dnsmasq did not start"
        );
        self.dnsmasq = Some(p);
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("run/dhcp.sock")
    }

    fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("daemon.log")).unwrap_or_default()
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("dnsmasq.log")).unwrap_or_default()
    }

    /// Start `dhcp daemon` in the host netns, with `extra` flags; wait for its socket.
    fn start_daemon(&mut self, extra: &[&str]) {
        let bin = target_bin_dir().join("dhcp");
        assert!(bin.is_file(), "build the plugins first (cargo build --workspace --bins)");
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let (mut cmd, _guard) = self.host.command(&bin).unwrap();
        cmd.arg("daemon")
            .arg("-socketpath")
            .arg(self.socket())
            .arg(format!("-pidfile={}", self.dir.join("daemon.pid").display()))
            .args(["-timeout", "1s"])
            .args(extra)
            .env("CNIRS_DHCP_TIMER_SCALE", SCALE)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let p = Proc { child: cmd.spawn().expect("start the daemon") };
        let sock = self.socket();
        assert!(
            wait_until(WAIT, || UnixStream::connect(&sock).is_ok()),
            "the daemon did not listen:\n{}",
            self.daemon_log()
        );
        self.daemon = Some(p);
    }

    /// The daemon as systemd starts it from `cni-dhcp.socket`: the socket
    /// made by `systemd-socket-activate` and passed as fd 3 (LISTEN_FDS).
    fn start_activated_daemon(&mut self) {
        let tool =
            which("systemd-socket-activate").expect("systemd-socket-activate (Debian package systemd)");
        let bin = target_bin_dir().join("dhcp");
        std::fs::create_dir_all(self.dir.join("run")).unwrap();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("daemon.log")).unwrap();
        let (mut cmd, _guard) = self.host.command(tool).unwrap();
        cmd.arg(format!("--listen={}", self.socket().display()))
            .arg(format!("--setenv=CNIRS_DHCP_TIMER_SCALE={SCALE}"))
            .arg(&bin)
            .args(["daemon", "-timeout", "1s"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let p = Proc { child: cmd.spawn().expect("start systemd-socket-activate") };
        let sock = self.socket();
        assert!(wait_until(WAIT, || UnixStream::connect(&sock).is_ok()), "no socket:\n{}", self.daemon_log());
        self.daemon = Some(p);
    }

    /// macvlan on m0 with the dhcp IPAM, sending the pod name as host name.
    fn list(&self, ver: &str) -> NetConfList {
        conflist_value(&json!({"cniVersion": ver, "name": NET, "plugins": [{
            "type": "macvlan", "master": "m0",
            "ipam": {"type": "dhcp", "daemonSocketPath": self.socket(),
                     "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}}]}))
    }

    fn add(&self, list: &NetConfList, id: &str, ctr: &TestNs) -> Result<CniResult, InvokeError> {
        self.rt.add(
            list,
            id,
            ctr.path(),
            "eth0",
            &format!("IgnoreUnknown=1;K8S_POD_NAME=pod-{id}"),
            json!({}),
        )
    }

    fn del(&self, list: &NetConfList, id: &str, ctr: &TestNs) {
        self.rt.del(list, id, ctr.path(), "eth0", "IgnoreUnknown=1", json!({})).unwrap();
    }

    /// dnsmasq's lease file.
    fn server_leases(&self) -> Vec<ServerLease> {
        let text = std::fs::read_to_string(self.dir.join("leases")).unwrap_or_default();
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                Some(ServerLease {
                    expiry: f.first()?.parse().ok()?,
                    mac: f.get(1)?.to_string(),
                    ip: f.get(2)?.to_string(),
                    hostname: f.get(3)?.to_string(),
                    client_id: f.get(4)?.to_string(),
                })
            })
            .collect()
    }

    fn server_lease_of(&self, ip: &str) -> Option<ServerLease> {
        self.server_leases().into_iter().find(|l| l.ip == ip)
    }

    /// The daemon's state files.
    fn saved(&self) -> usize {
        std::fs::read_dir(self.dir.join("run/dhcp.leases")).map_or(0, |d| d.count())
    }
}

fn ctr() -> ContainerNs {
    ContainerNs::with_lo().unwrap()
}

fn ip_of(res: &CniResult) -> String {
    res.ips[0].address.addr.to_string()
}

fn mac_of(res: &CniResult) -> String {
    res.interfaces[0].mac.clone()
}

/// dnsmasq's lines about `mac` that contain `what` (e.g. `DHCPACK`).
fn count(log: &str, what: &str, mac: &str) -> usize {
    log.lines().filter(|l| l.contains(what) && l.contains(mac)).count()
}

fn in_range(ip: &str) -> bool {
    let last: u32 = ip.strip_prefix("10.78.0.").and_then(|s| s.parse().ok()).unwrap_or(0);
    (100..=150).contains(&last)
}

// ----- ADD, the result, DEL ---------------------------------------------------------------

#[test]
fn add_takes_a_lease_from_the_lan_server_and_del_releases_it() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let list = lan.list("1.0.0");
    let c = ctr();
    let res = lan.add(&list, "c1", &c).unwrap();

    // The result: an address of dnsmasq's range, the router as gateway and
    // default route, and dnsmasq's DNS settings.
    let ip = ip_of(&res);
    assert!(in_range(&ip), "{ip}");
    assert_eq!(res.ips[0].address.prefix, 24);
    assert_eq!(res.ips[0].gateway, Some("10.78.0.1".parse().unwrap()));
    assert_eq!(res.routes.len(), 1);
    assert_eq!(res.routes[0].dst.to_string(), "0.0.0.0/0");
    assert_eq!(res.routes[0].gw, Some("10.78.0.1".parse().unwrap()));
    assert_eq!(res.dns.nameservers, ["10.78.0.53"]);
    assert_eq!(res.dns.domain, "lan.test");

    // The container: the address on eth0, the default route, and the LAN reachable.
    assert_eq!(
        addrs(&c, "eth0").iter().filter(|a| a.starts_with("10.")).collect::<Vec<_>>(),
        [&format!("{ip}/24")]
    );
    assert!(has_route(&c, "default"));
    assert!(ping(&c, "10.78.0.1"), "the container reaches the LAN");
    assert!(ping(&lan.lan, &ip), "the LAN reaches the container");

    // The server's view: that address for the container's MAC, with the
    // pod name as host name and the reference's client id (0, "c1/dhcplan/eth0").
    let sl = lan.server_lease_of(&ip).expect("dnsmasq has the lease");
    assert_eq!(sl.mac, mac_of(&res));
    assert_eq!(sl.hostname, "pod-c1");
    let want_id: Vec<String> =
        std::iter::once(0u8).chain(b"c1/dhcplan/eth0".iter().copied()).map(|b| format!("{b:02x}")).collect();
    assert_eq!(sl.client_id, want_id.join(":"));
    assert_eq!(lan.saved(), 1, "the lease is kept for a daemon restart");
    lan.rt.check(&list, "c1", c.path(), "eth0", "IgnoreUnknown=1", json!({})).unwrap();

    lan.del(&list, "c1", &c);
    assert!(!link_exists(&c, "eth0"));
    assert!(
        wait_until(WAIT, || lan.server_lease_of(&ip).is_none()),
        "dnsmasq still has {ip}: {:?}",
        lan.server_leases()
    );
    assert_eq!(count(&lan.server_log(), "DHCPRELEASE", &mac_of(&res)), 1);
    assert_eq!(lan.saved(), 0);
    // Again, and without a netns: nothing held, success.
    lan.del(&list, "c1", &c);
    lan.rt.del(&list, "c1", "", "eth0", "", json!({})).unwrap();
    assert_eq!(lan.daemon.take().unwrap().terminate(), Some(0));
    assert!(!lan.socket().exists(), "the socket is removed on a clean stop");
    assert!(!lan.dir.join("daemon.pid").exists(), "so is the pidfile");
}

#[test]
fn bridge_with_dhcp_leases_through_the_bridge_and_del_releases() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    // A host bridge with the uplink as a port: containers on it are on the LAN.
    lan.host.ip(&["link", "add", "cnidh0", "type", "bridge"]).unwrap();
    lan.host.ip(&["link", "set", "m0", "master", "cnidh0"]).unwrap();
    lan.host.ip(&["link", "set", "cnidh0", "up"]).unwrap();
    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": NET, "plugins": [{
        "type": "bridge", "bridge": "cnidh0",
        "ipam": {"type": "dhcp", "daemonSocketPath": lan.socket()}}]}));
    let c = ctr();
    let res = lan.add(&list, "b1", &c).unwrap();
    let ip = ip_of(&res);
    assert!(in_range(&ip), "{ip}");
    assert!(ping(&c, "10.78.0.1"), "the container reaches the LAN through the bridge");
    lan.del(&list, "b1", &c);
    assert!(wait_until(WAIT, || lan.server_lease_of(&ip).is_none()), "{:?}", lan.server_leases());
}

#[test]
fn results_in_every_version_podman_and_cri_use() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    for (ver, id) in [("0.4.0", "v040"), ("0.3.1", "v031"), ("1.1.0", "v110")] {
        let c = ctr();
        let list = lan.list(ver);
        let rtc = RuntimeConf::new(id, c.path(), "eth0");
        let req = lan.rt.request(&list, 0, None, &rtc).unwrap();
        let out = lan.rt.invoke("ADD", &list, 0, &req, &rtc).unwrap();
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], ver);
        assert_eq!(v["ips"][0]["gateway"], "10.78.0.1");
        assert_eq!(v["ips"][0].get("version").is_some(), ver.starts_with("0."), "{v}");
        lan.rt.del_rt(&list, &rtc).unwrap();
    }
    assert!(wait_until(WAIT, || lan.server_leases().is_empty()), "{:?}", lan.server_leases());
}

#[test]
fn containers_get_different_leases_and_renewals_reach_the_server() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let list = lan.list("1.0.0");
    let (c1, c2) = (ctr(), ctr());
    let r1 = lan.add(&list, "c1", &c1).unwrap();
    let r2 = lan.add(&list, "c2", &c2).unwrap();
    let (ip1, ip2) = (ip_of(&r1), ip_of(&r2));
    assert_ne!(ip1, ip2);
    assert!(in_range(&ip1) && in_range(&ip2));
    assert!(ping(&c1, &ip2), "the two containers reach each other over the LAN");
    let first = lan.server_lease_of(&ip1).unwrap();

    // Renewal: more DHCPACKs for c1 than the one of the ADD, and the
    // server's expiry for it moved on.
    let mac1 = mac_of(&r1);
    assert!(
        wait_until(WAIT, || count(&lan.server_log(), "DHCPACK", &mac1) >= 3
            && lan.server_lease_of(&ip1).is_some_and(|l| l.expiry > first.expiry)),
        "no renewal reached dnsmasq:\n{}\ndaemon:\n{}",
        lan.server_log(),
        lan.daemon_log()
    );
    assert!(
        lan.daemon_log().contains(&format!("c1/{NET}/eth0: lease renewed: {ip1}")),
        "{}",
        lan.daemon_log()
    );
    // Still the same addresses, still up.
    assert_eq!(lan.server_lease_of(&ip2).map(|l| l.mac), Some(mac_of(&r2)));
    assert!(ping(&c1, "10.78.0.1"));

    lan.del(&list, "c1", &c1);
    lan.del(&list, "c2", &c2);
    assert!(wait_until(WAIT, || lan.server_leases().is_empty()), "{:?}", lan.server_leases());
}

#[test]
fn many_containers_at_once() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let list = lan.list("1.0.0");
    let ctrs: Vec<ContainerNs> = (0..8).map(|_| ctr()).collect();
    let ips: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = ctrs
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let (lan, list) = (&lan, &list);
                s.spawn(move || ip_of(&lan.add(list, &format!("m{i}"), c).unwrap()))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut unique = ips.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 8, "{ips:?}");
    assert_eq!(lan.server_leases().len(), 8);
    std::thread::scope(|s| {
        for (i, c) in ctrs.iter().enumerate() {
            let (lan, list) = (&lan, &list);
            s.spawn(move || lan.del(list, &format!("m{i}"), c));
        }
    });
    assert!(wait_until(WAIT, || lan.server_leases().is_empty()), "{:?}", lan.server_leases());
    assert_eq!(lan.saved(), 0);
}

// ----- the daemon's life --------------------------------------------------------------------

#[test]
fn a_restarted_daemon_resumes_the_leases_and_del_still_releases() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let list = lan.list("1.0.0");
    let c = ctr();
    let res = lan.add(&list, "c1", &c).unwrap();
    let ip = ip_of(&res);

    assert_eq!(lan.daemon.take().unwrap().terminate(), Some(0));
    assert!(!lan.socket().exists());
    assert_eq!(lan.saved(), 1, "a clean stop keeps the lease for the next daemon");
    assert!(lan.server_lease_of(&ip).is_some(), "and does not release it on the server");

    lan.start_daemon(&[]);
    // Requests wait in the socket's backlog until the saved leases are resumed.
    let resumed = format!("c1/{NET}/eth0: resumed lease {ip}/24");
    assert!(wait_until(WAIT, || lan.daemon_log().contains(&resumed)), "{}", lan.daemon_log());
    lan.rt.check(&list, "c1", c.path(), "eth0", "IgnoreUnknown=1", json!({})).unwrap();
    // The new daemon renews it.
    let renewals = |log: &str| log.matches(&format!("lease renewed: {ip}")).count();
    let before = renewals(&lan.daemon_log());
    assert!(wait_until(WAIT, || renewals(&lan.daemon_log()) > before), "{}", lan.daemon_log());

    lan.del(&list, "c1", &c);
    assert!(wait_until(WAIT, || lan.server_lease_of(&ip).is_none()), "{:?}", lan.server_leases());
}

#[test]
fn a_killed_daemon_fails_add_clearly_and_del_still_succeeds() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let list = lan.list("1.0.0");
    let c1 = ctr();
    let r1 = lan.add(&list, "c1", &c1).unwrap();
    lan.daemon.take().unwrap().kill();
    assert!(lan.socket().exists(), "SIGKILL leaves the socket behind");

    // ADD: code 11 saying what is wrong; macvlan undoes its link.
    let c2 = ctr();
    let e = lan.add(&list, "c2", &c2).unwrap_err();
    assert_eq!(e.code(), Some(11), "{e}");
    assert!(
        e.msg().contains("cannot reach the DHCP daemon at") && e.msg().contains("Connection refused"),
        "{e}"
    );
    assert_eq!(link_names(&c2), ["lo"]);
    // STATUS says it too (code 50); DEL succeeds.
    let status = lan.rt.status(&lan.list("1.1.0")).unwrap_err();
    assert_eq!(status.code(), Some(50), "{status}");
    lan.del(&list, "c1", &c1);
    assert!(!link_exists(&c1, "eth0"));

    // A new daemon replaces the stale socket and forgets the lease whose interface is gone.
    lan.start_daemon(&[]);
    let dropped = format!("dropping the saved lease of c1/{NET}/eth0");
    assert!(wait_until(WAIT, || lan.daemon_log().contains(&dropped)), "{}", lan.daemon_log());
    assert_eq!(lan.saved(), 0);
    let r3 = lan.add(&list, "c3", &c2).unwrap();
    assert!(in_range(&ip_of(&r3)));
    lan.del(&list, "c3", &c2);
    let _ = r1;
}

#[test]
fn hostprefix_puts_the_socket_state_and_netns_paths_under_it() {
    require_root!();
    let mut lan = Lan::new();
    // A daemon in a container would see the host's / under the prefix; here
    // the prefix holds the host's netns directory through a symlink.
    let prefix = lan.dir.join("host");
    std::fs::create_dir_all(prefix.join("run")).unwrap();
    std::os::unix::fs::symlink("/run/netns", prefix.join("run/netns")).unwrap();
    let bin = target_bin_dir().join("dhcp");
    let log = std::fs::File::create(lan.dir.join("daemon.log")).unwrap();
    let (mut cmd, _guard) = lan.host.command(&bin).unwrap();
    cmd.args(["daemon", "-socketpath", "/cni/dhcp.sock", "-timeout", "1s"])
        .arg(format!("-hostprefix={}", prefix.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    lan.daemon = Some(Proc { child: cmd.spawn().unwrap() });
    let sock = prefix.join("cni/dhcp.sock");
    assert!(wait_until(WAIT, || UnixStream::connect(&sock).is_ok()), "{}", lan.daemon_log());

    let list = conflist_value(&json!({"cniVersion": "1.0.0", "name": NET, "plugins": [{
        "type": "macvlan", "master": "m0", "ipam": {"type": "dhcp", "daemonSocketPath": sock}}]}));
    let c = ctr();
    let ip = ip_of(&lan.add(&list, "p1", &c).unwrap());
    assert!(in_range(&ip));
    assert_eq!(
        std::fs::read_dir(prefix.join("cni/dhcp.leases")).unwrap().count(),
        1,
        "state under the prefix"
    );
    lan.del(&list, "p1", &c);
    assert!(wait_until(WAIT, || lan.server_lease_of(&ip).is_none()), "{:?}", lan.server_leases());
}

#[test]
fn socket_activation_as_the_reference_units_do_it() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_activated_daemon();
    let list = lan.list("1.0.0");
    let c = ctr();
    let res = lan.add(&list, "c1", &c).unwrap();
    assert!(in_range(&ip_of(&res)));
    assert!(
        wait_until(WAIT, || lan.daemon_log().contains("listening (socket activation) on")),
        "{}",
        lan.daemon_log()
    );
    lan.del(&list, "c1", &c);
    assert!(wait_until(WAIT, || lan.server_leases().is_empty()), "{:?}", lan.server_leases());
    assert_eq!(lan.daemon.take().unwrap().terminate(), Some(0));
    assert!(lan.socket().exists(), "the socket is systemd's: the daemon leaves it alone");
}

#[test]
fn without_a_server_add_fails_after_resendtimeout_and_leaves_nothing() {
    require_root!();
    let mut lan = Lan::with_server(false);
    lan.start_daemon(&["-resendtimeout", "3s"]);
    let list = lan.list("1.0.0");
    let c = ctr();
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert_eq!(e.code(), Some(11), "{e}");
    assert!(e.msg().contains("no DHCP lease on eth0") && e.msg().contains("no DHCPOFFER"), "{e}");
    assert_eq!(link_names(&c), ["lo"], "macvlan removed its link");
    assert_eq!(lan.saved(), 0);
    // The daemon holds nothing for it: a repeated ADD starts afresh (and fails the same way).
    let e = lan.add(&list, "c1", &c).unwrap_err();
    assert_eq!(e.code(), Some(11), "{e}");
}

#[test]
fn gc_releases_the_leases_of_attachments_the_runtime_no_longer_has() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let list = lan.list("1.1.0");
    let (c1, c2) = (ctr(), ctr());
    let r1 = lan.add(&list, "c1", &c1).unwrap();
    let r2 = lan.add(&list, "c2", &c2).unwrap();
    // The runtime lost c2 (a crash): only the plugins' GC can reclaim it.
    std::fs::remove_file(lan.rt.cache_path(NET, "c2", "eth0")).unwrap();
    lan.rt.gc(&list, &[("c1", "eth0")]).unwrap();
    let ip2 = ip_of(&r2);
    // dnsmasq rewrites its lease file in place: judge it once a read shows
    // the released lease gone and the kept one there.
    let ip1 = ip_of(&r1);
    let settled =
        wait_until(WAIT, || lan.server_lease_of(&ip2).is_none() && lan.server_lease_of(&ip1).is_some());
    assert!(settled, "c2's lease released, c1's kept (a valid attachment): {:?}", lan.server_leases());
    assert!(lan.daemon_log().contains("not a valid attachment any more (GC)"));
    lan.rt.status(&list).unwrap();
    lan.del(&list, "c1", &c1);
}

// ----- the socket -----------------------------------------------------------------------------

/// Send `line` on a fresh connection to the daemon, from a thread running
/// as `uid` when given; the reply line (or the connect error).
fn raw_call(sock: &std::path::Path, line: &[u8], uid: Option<u32>) -> Result<String, std::io::Error> {
    let sock = sock.to_path_buf();
    let line = line.to_vec();
    std::thread::spawn(move || {
        if let Some(uid) = uid {
            // Only this thread (a raw syscall, not glibc's process-wide setresuid).
            // SAFETY: changes this thread's credentials; it ends right after.
            let r = unsafe { libc::syscall(libc::SYS_setresuid, uid, uid, uid) };
            assert_eq!(r, 0, "setresuid: {}", std::io::Error::last_os_error());
        }
        let mut s = UnixStream::connect(&sock)?;
        s.write_all(&line)?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out)
    })
    .join()
    .unwrap()
}

#[test]
fn only_root_may_use_the_socket() {
    require_root!();
    let mut lan = Lan::with_server(false);
    lan.start_daemon(&[]);
    let sock = lan.socket();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sock), 0o600);
    assert_eq!(mode(&lan.dir.join("run")), 0o700);
    let status = br#"{"version":1,"command":"STATUS"}
"#;
    assert_eq!(raw_call(&sock, status, None).unwrap().trim(), "{}");
    let e = raw_call(&sock, status, Some(65534)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied);
    // Even through a socket others may open (a careless unit file), the
    // daemon answers only root.
    std::fs::set_permissions(lan.dir.join("run"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let reply: Value = serde_json::from_str(&raw_call(&sock, status, Some(65534)).unwrap()).unwrap();
    assert_eq!(reply["error"]["code"], 4, "{reply}");
    assert!(
        reply["error"]["msg"].as_str().unwrap().contains("uid 65534 may not use the DHCP daemon"),
        "{reply}"
    );
}

#[test]
fn the_daemon_survives_bad_and_vanishing_clients() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let sock = lan.socket();
    let reply =
        |line: &[u8]| -> Value { serde_json::from_str(&raw_call(&sock, line, None).unwrap()).unwrap() };
    assert_eq!(reply(b"{not json\n")["error"]["code"], 6);
    assert_eq!(reply(b"{\"version\":9,\"command\":\"ADD\"}\n")["error"]["code"], 1);
    assert_eq!(reply(b"{\"version\":1,\"command\":\"FROB\"}\n")["error"]["code"], 4);
    assert_eq!(reply(&[b'x'; 100_000])["error"]["code"], 6, "an endless line is cut off");
    // A client that connects and says nothing, and one that sends half a request.
    let idle = UnixStream::connect(&sock).unwrap();
    let mut half = UnixStream::connect(&sock).unwrap();
    half.write_all(b"{\"version\":1,").unwrap();
    drop(half);

    // A client that dies right after asking for a lease: the lease is given back.
    let c = ctr();
    lan.host.ip(&["link", "add", "mvx", "link", "m0", "type", "macvlan", "mode", "bridge"]).unwrap();
    lan.host.ip(&["link", "set", "mvx", "netns", c.name()]).unwrap();
    c.ip(&["link", "set", "mvx", "name", "eth0"]).unwrap();
    let mac = link(&c, "eth0").unwrap()["address"].as_str().unwrap().to_string();
    let add = json!({"version": 1, "command": "ADD", "containerID": "gone", "netns": c.path(),
                     "ifname": "eth0", "network": NET, "request": [3, 1]});
    let mut s = UnixStream::connect(&sock).unwrap();
    s.write_all(format!("{add}\n").as_bytes()).unwrap();
    drop(s);
    assert!(
        wait_until(WAIT, || lan.daemon_log().contains(&format!("gone/{NET}/eth0: its ADD's caller"))),
        "{}",
        lan.daemon_log()
    );
    assert!(
        wait_until(WAIT, || !lan.server_leases().iter().any(|l| l.mac == mac)),
        "{:?}",
        lan.server_leases()
    );
    assert!(wait_until(WAIT, || lan.saved() == 0), "the lease is not kept either");

    // Still serving, with the idle client still connected.
    assert_eq!(reply(b"{\"version\":1,\"command\":\"STATUS\"}\n"), json!({}));
    drop(idle);
    let list = lan.list("1.0.0");
    let c2 = ctr();
    lan.add(&list, "c2", &c2).unwrap();
    lan.del(&list, "c2", &c2);
}

#[test]
fn the_podman_example_runs_unchanged_but_for_master_and_socket() {
    require_root!();
    let mut lan = Lan::new();
    lan.start_daemon(&[]);
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../conf-examples/podman/macvlan-dhcp.conflist");
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    v["plugins"][0]["master"] = json!("m0");
    v["plugins"][0]["ipam"]["daemonSocketPath"] = json!(lan.socket());
    let list = conflist_value(&v);
    let c = ctr();
    // Podman's CNI_ARGS.
    let res =
        lan.rt.add(&list, "podctr", c.path(), "eth0", "IgnoreUnknown=1;K8S_POD_NAME=web", json!({})).unwrap();
    assert!(in_range(&ip_of(&res)));
    lan.rt.check(&list, "podctr", c.path(), "eth0", "IgnoreUnknown=1;K8S_POD_NAME=web", json!({})).unwrap();
    lan.rt.del(&list, "podctr", c.path(), "eth0", "IgnoreUnknown=1;K8S_POD_NAME=web", json!({})).unwrap();
    assert!(wait_until(WAIT, || lan.server_leases().is_empty()), "{:?}", lan.server_leases());
}
