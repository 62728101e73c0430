//! A recording fake of the kernel and the IPAM delegate, for unit tests of a
//! plugin's decisions without root (cargo feature `fake`; never in a shipped
//! binary).
//!
//! [`FakeKernel`] keeps an in-memory model of network namespaces — links
//! with names, per-netns indexes, kinds, parents and veth peers, masters,
//! MTU, MAC, up/down; addresses, routes, rules, neighbours and `net`
//! sysctls — and of IPAM leases. Handles on it implement the seams:
//! [`FakeNet`] is a [`NetStack`](crate::net::NetStack) (one netns), its
//! `nft()` a [`FakeNft`] ([`Nftables`](crate::nft::Nftables), with tables,
//! chains, rules, sets and elements) and [`FakeIpam`] an
//! [`Ipam`](crate::ipam::Ipam). Every call is recorded as
//! text (`"c1: rename 5 eth0"`), and any call can be made to fail:
//! [`FakeKernel::fail_at`] fails the n-th call from now, [`FakeKernel::fail_on`]
//! the next call of one operation. [`FakeKernel::state`] describes the whole
//! model, so "a failed ADD leaves nothing" is `assert_eq!(kernel.state(), before)`.
//!
//! The model refuses what the kernel refuses where a plugin's decisions
//! depend on it: taken names (`EEXIST`), missing links (`ENODEV`), a multicast
//! MAC (`EADDRNOTAVAIL`), a macvlan MTU above its parent's or a second passthru
//! macvlan (`EINVAL`), a device route through a down link (`ENETDOWN`), a
//! gateway no address of an up link covers (`ENETUNREACH`; IPv6
//! `EHOSTUNREACH`; a `noprefixroute` address covers nothing), enslaving to a
//! non-master (`EOPNOTSUPP`), a tap whose name is taken (`EBUSY`); of ipvlans
//! and VLANs (scripts of their own, run on a kernel that has them): an ipvlan
//! beside a macvlan or on a bridge port (`EBUSY`), a second VLAN of one id on
//! a parent (`EEXIST`), an id past 4094 (`ERANGE`), a loopback parent. An
//! ipvlan has its master's MAC (its own cannot be set) and its master's mode,
//! which a new ipvlan changes for all. A root test runs each script against the fake
//! and the kernel and compares every outcome. Where kernels differ it refuses
//! what the oldest supported one refuses: renaming an up link (`EBUSY` before
//! Linux 6.x). Deleting a link takes its veth
//! peer, its macvlan/ipvlan/vlan children, its addresses, routes and neighbours
//! along; a link moved to another netns loses its addresses and routes and
//! keeps its index when that is free there; loopback, bridges and VRFs
//! refuse to move (`EINVAL`). A netns that dies ([`FakeKernel::delete_netns`],
//! or a scratch netns whose last handle goes) destroys its links but returns
//! physical devices ([`FakeKernel::add_device`]) to the host netns, which
//! stands for the initial one, as `dev<ifindex>` when their name is taken. An up link enslaved to or
//! released from a VRF is cycled (down and up) as the kernel does: it loses
//! its routes and, unless `keep_addr_on_down`, its IPv6 addresses; a VRF
//! port's addresses have their local routes in the VRF's table. Not
//! modelled: prefix routes, local routes (but a VRF port's) and IPv6
//! link-local addresses the kernel adds by itself, DAD (addresses are
//! never tentative), operational state beyond "up and its lower link up".
//!
//! ```
//! use common::fake::FakeKernel;
//! use common::net::NetStack;
//! use common::netlink::rtnl::{LinkKind, NewLink};
//!
//! let kernel = FakeKernel::new();
//! let (mut host, mut ctr) = (kernel.host(), kernel.netns("c1"));
//! let fd = ctr.netns_fd().unwrap();
//! host.add_link(&NewLink { netns_fd: Some(fd), ..NewLink::new("eth0", LinkKind::Dummy) }).unwrap();
//! assert!(host.link_by_name("eth0").is_err());
//! assert_eq!(ctr.link_by_name("eth0").unwrap().kind.as_deref(), Some("dummy"));
//! assert_eq!(kernel.calls()[..2], ["c1: netns_fd", "host: add_link dummy eth0 netns=c1"]);
//!
//! kernel.fail_on("del_link_by_name", libc::EPERM);
//! assert!(ctr.del_link_by_name("eth0").is_err());
//! assert!(ctr.link_by_name("eth0").is_ok(), "a failed call changes nothing");
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::rc::Rc;

use crate::args::CniArgs;
use crate::netlink::rtnl::tc::{Filter, Qdisc, QdiscKind, TC_H_INGRESS, TC_H_ROOT};
use crate::netlink::rtnl::{Addr, BridgePort, BridgeVlan, MacvlanMode, Neigh, Route, Rule};
use crate::netlink::rtnl::{IpvlanFlags, IpvlanMode, VlanProtocol};
use crate::netlink::NlError;
use crate::skel::{CmdArgs, Command};
use crate::spec::{CniResult, NetConf};

mod ipam;
mod net;
mod nft;
#[cfg(test)]
mod tests;

pub use ipam::FakeIpam;
pub use net::FakeNet;
pub use nft::FakeNft;

/// What `netns_fd` hands out: far from any real fd a test could hold.
const FD_BASE: i32 = 1 << 24;

/// The fake kernel; cheap to clone (every clone and handle shares the model).
#[derive(Clone, Default)]
pub struct FakeKernel {
    w: Rc<RefCell<World>>,
}

#[derive(Default)]
struct World {
    spaces: Vec<Space>,
    next_id: u64,
    calls: Vec<String>,
    /// Calls since the last `fail_at`/`fail_on`.
    since_armed: usize,
    faults: Vec<Fault>,
    leases: Vec<Lease>,
    ipam_result: Option<CniResult>,
}

enum Fault {
    At(usize, i32),
    On(String, i32),
}

/// One network namespace.
struct Space {
    name: String,
    ipv6: bool,
    next_index: u32,
    links: Vec<FLink>,
    addrs: Vec<Addr>,
    routes: Vec<Route>,
    rules: Vec<Rule>,
    neighs: Vec<Neigh>,
    /// Keys that belong to no link (`net/ipv4/ip_forward`, `…/conf/all/…`).
    sysctls: BTreeMap<String, String>,
    nft: crate::nft::model::Model,
}

/// A link as the model keeps it.
#[derive(Clone)]
struct FLink {
    /// Identity across namespaces (indexes are per netns).
    id: u64,
    index: u32,
    name: String,
    kind: Option<String>,
    mac: [u8; 6],
    mtu: u32,
    flags: u32,
    txqlen: u32,
    /// The master's index in the same netns.
    master: Option<u32>,
    /// The veth peer or the macvlan/vlan parent, by id.
    lower: Option<u64>,
    macvlan_mode: Option<MacvlanMode>,
    vlan_filtering: Option<bool>,
    vlan_id: Option<u16>,
    vlan_protocol: Option<VlanProtocol>,
    /// An ipvlan's mode and flags (kept equal among a master's ipvlans).
    ipvlan: Option<(IpvlanMode, IpvlanFlags)>,
    vrf_table: Option<u32>,
    port: Option<BridgePort>,
    vlans: Vec<BridgeVlan>,
    /// Per-link sysctls by "ipv4/<leaf>" or "ipv6/<leaf>".
    sysctls: BTreeMap<String, String>,
    alias: Option<String>,
    /// Qdiscs added through the seam (not the defaults the kernel attaches).
    qdiscs: Vec<Qdisc>,
    filters: Vec<Filter>,
    /// A tap's settings.
    tun: Option<crate::tap::TunInfo>,
}

struct Lease {
    container_id: String,
    ifname: String,
    result: CniResult,
}

impl FakeKernel {
    /// A kernel with one netns, "host", holding `lo`.
    pub fn new() -> FakeKernel {
        let k = FakeKernel::default();
        k.w.borrow_mut().add_space("host");
        k
    }

    /// A handle on the host netns.
    pub fn host(&self) -> FakeNet {
        FakeNet::new(self.w.clone(), 0)
    }

    /// A handle on the netns `name`, made (with `lo`) if it does not exist.
    pub fn netns(&self, name: &str) -> FakeNet {
        let mut w = self.w.borrow_mut();
        let ns = match w.spaces.iter().position(|s| s.name == name) {
            Some(i) => i,
            None => w.add_space(name),
        };
        FakeNet::new(self.w.clone(), ns)
    }

    /// Remove the netns `name` as the kernel does when its last user goes:
    /// its links are destroyed, and veth peers elsewhere with them; a
    /// physical device ([`FakeKernel::add_device`]) goes back to the host
    /// netns, which stands for the initial one.
    pub fn delete_netns(&self, name: &str) {
        let mut w = self.w.borrow_mut();
        let Some(ns) = w.spaces.iter().position(|s| s.name == name) else { return };
        w.remove_space(ns);
    }

    /// A physical network device in the netns `netns` (made if needed), down,
    /// with no link kind, as a NIC is: a netns that dies returns it to the
    /// host netns instead of destroying it.
    pub fn add_device(&self, netns: &str, name: &str, mac: [u8; 6]) {
        let ns = self.netns(netns).ns();
        let mut w = self.w.borrow_mut();
        let id = w.new_id();
        let s = &mut w.spaces[ns];
        let index = s.take_index(None);
        s.links.push(FLink { id, index, name: name.into(), mac, ..FLink::blank() });
    }

    /// A netns without IPv6 (its `net/ipv6` sysctls do not exist).
    pub fn disable_ipv6(&self, netns: &str) {
        let mut w = self.w.borrow_mut();
        if let Some(s) = w.spaces.iter_mut().find(|s| s.name == netns) {
            s.ipv6 = false;
        }
    }

    /// The IPAM delegate.
    pub fn ipam(&self) -> FakeIpam {
        FakeIpam::new(self.w.clone())
    }

    /// What IPAM ADD returns from now on (by default one address from
    /// 10.88.0.0/16, gateway 10.88.0.1, a new one per lease).
    pub fn set_ipam_result(&self, res: CniResult) {
        self.w.borrow_mut().ipam_result = Some(res);
    }

    /// Held leases as "<container id>/<ifname> <addresses>".
    pub fn leases(&self) -> Vec<String> {
        self.w.borrow().leases.iter().map(Lease::describe).collect()
    }

    /// Every call so far, as "<netns>: <operation> <arguments>".
    pub fn calls(&self) -> Vec<String> {
        self.w.borrow().calls.clone()
    }

    /// The calls that change something, as "<netns>: <operation>" (reads
    /// and their arguments left out): what a plugin did, in order.
    pub fn changes(&self) -> Vec<String> {
        const READS: [&str; 12] = [
            "addrs",
            "bridge_vlans",
            "filters",
            "link_by_index",
            "link_by_name",
            "links",
            "neighbours",
            "netns_fd",
            "qdiscs",
            "routes",
            "rules",
            "sysctl",
        ];
        let op = |c: &String| c.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
        let calls = self.calls();
        calls.iter().map(op).filter(|c| !READS.iter().any(|r| c.ends_with(&format!(": {r}")))).collect()
    }

    /// Forget the calls so far (e.g. those that set a test up).
    pub fn clear_calls(&self) {
        self.w.borrow_mut().calls.clear();
    }

    /// The `n`-th call from now (1 = the next one) fails with `errno` and
    /// changes nothing.
    pub fn fail_at(&self, n: usize, errno: i32) {
        let mut w = self.w.borrow_mut();
        w.since_armed = 0;
        w.faults.push(Fault::At(n, errno));
    }

    /// The next call of `operation` fails with `errno`: a `NetStack` method
    /// name ("add_link", "set_sysctls", "lock", …), IPAM's "ipam_add",
    /// "ipam_del", "ipam_check", nf_tables' "nft_commit", "nft_list_rules", ….
    pub fn fail_on(&self, operation: &str, errno: i32) {
        self.w.borrow_mut().faults.push(Fault::On(operation.to_string(), errno));
    }

    /// The whole model as text, one line per object, without ifindexes (a
    /// link made again gets another): equal before an ADD and after its
    /// failure when the undo left nothing behind.
    pub fn state(&self) -> String {
        self.w.borrow().describe()
    }
}

impl World {
    fn add_space(&mut self, name: &str) -> usize {
        let v4 =
            |pref, table| Rule { priority: Some(pref), ..Rule::new(crate::netlink::rtnl::Family::V4, table) };
        let v6 =
            |pref, table| Rule { priority: Some(pref), ..Rule::new(crate::netlink::rtnl::Family::V6, table) };
        let mut s = Space {
            name: name.to_string(),
            ipv6: true,
            next_index: 1,
            links: Vec::new(),
            addrs: Vec::new(),
            routes: Vec::new(),
            rules: vec![v4(0, 255), v4(32766, 254), v4(32767, 253), v6(0, 255), v6(32766, 254)],
            neighs: Vec::new(),
            sysctls: BTreeMap::new(),
            nft: Default::default(),
        };
        let lo = FLink {
            id: self.new_id(),
            index: s.take_index(None),
            name: "lo".into(),
            kind: None,
            mac: [0; 6],
            mtu: 65536,
            flags: (libc::IFF_UP | libc::IFF_LOOPBACK) as u32,
            ..FLink::blank()
        };
        s.links.push(lo);
        s.addrs.push(Addr {
            index: 1,
            addr: "127.0.0.1".parse().unwrap(),
            prefix: 8,
            flags: 0x80,
            scope: libc::RT_SCOPE_HOST,
            broadcast: None,
            label: Some("lo".into()),
        });
        self.spaces.push(s);
        self.spaces.len() - 1
    }

    fn new_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Record a call; the error of an armed fault that hits it.
    fn call(&mut self, ns: usize, op: &str, args: std::fmt::Arguments<'_>) -> Result<(), NlError> {
        let who = if ns == usize::MAX { "ipam".to_string() } else { self.spaces[ns].name.clone() };
        let mut text = format!("{who}: {op}");
        let args = args.to_string();
        if !args.is_empty() {
            text = format!("{text} {args}");
        }
        self.since_armed += 1;
        let n = self.since_armed;
        let hit = self.faults.iter().position(|f| match f {
            Fault::At(at, _) => *at == n,
            Fault::On(o, _) => o == op,
        });
        let res = match hit.map(|i| self.faults.remove(i)) {
            Some(Fault::At(_, errno) | Fault::On(_, errno)) => {
                text += &format!(" → injected errno {errno}");
                Err(NlError { errno, ext: Some("injected by the fake kernel".into()) })
            }
            None => Ok(()),
        };
        self.calls.push(text);
        res
    }

    /// (netns, position) of the link with identity `id`.
    fn find(&self, id: u64) -> Option<(usize, usize)> {
        self.spaces
            .iter()
            .enumerate()
            .find_map(|(ns, s)| s.links.iter().position(|l| l.id == id).map(|i| (ns, i)))
    }

    fn link(&self, id: u64) -> Option<&FLink> {
        self.find(id).map(|(ns, i)| &self.spaces[ns].links[i])
    }

    /// Destroy a link and what cannot live without it: its veth peer, its
    /// macvlan/vlan children; its ports lose their master.
    fn destroy(&mut self, id: u64) {
        let Some((ns, i)) = self.find(id) else { return };
        let link = self.spaces[ns].links.remove(i);
        let s = &mut self.spaces[ns];
        s.addrs.retain(|a| a.index != link.index);
        s.routes.retain(|r| r.oif != Some(link.index));
        s.neighs.retain(|n| n.index != link.index);
        for port in s.links.iter_mut().filter(|l| l.master == Some(link.index)) {
            (port.master, port.port, port.vlans) = (None, None, Vec::new());
        }
        // A redirect to a device that is gone stays, pointing nowhere (ifindex 0).
        for m in s.links.iter_mut().flat_map(|l| l.filters.iter_mut()).flat_map(|f| f.mirred.iter_mut()) {
            if m.ifindex == link.index {
                m.ifindex = 0;
            }
        }
        let dependents: Vec<u64> = self
            .spaces
            .iter()
            .flat_map(|s| s.links.iter())
            .filter(|l| {
                l.lower == Some(id) || (link.kind.as_deref() == Some("veth") && link.lower == Some(l.id))
            })
            .map(|l| l.id)
            .collect();
        for d in dependents {
            self.destroy(d);
        }
    }

    fn describe(&self) -> String {
        let mut out = String::new();
        for s in self.spaces.iter().filter(|s| !s.name.starts_with("(deleted")) {
            let _ = writeln!(out, "netns {}:", s.name);
            let name_of = |index: u32| s.links.iter().find(|l| l.index == index).map_or("?", |l| &l.name);
            let mut lines = Vec::new();
            for l in &s.links {
                let lower = l.lower.and_then(|id| self.link(id)).map(|x| x.name.as_str()).unwrap_or("-");
                let master = l.master.map_or("-", name_of);
                let kind_data = match (l.ipvlan, l.vlan_id) {
                    (Some((mode, flags)), _) => format!(" {} {flags:?}", mode.name()),
                    (None, Some(id)) => format!(" id {id} {:?}", l.vlan_protocol),
                    (None, None) => String::new(),
                };
                lines.push(format!(
                    "link {} {}{kind_data} {} mtu {} mac {} lower {lower} master {master}{}{}{}",
                    l.name,
                    l.kind.as_deref().unwrap_or("device"),
                    if l.flags & libc::IFF_UP as u32 != 0 { "up" } else { "down" },
                    l.mtu,
                    crate::netlink::rtnl::format_mac(&l.mac),
                    l.port.map_or(String::new(), |p| format!(" port {p:?} vlans {:?}", l.vlans)),
                    l.sysctls.iter().map(|(k, v)| format!(" {k}={v}")).collect::<String>(),
                    l.alias.as_ref().map_or(String::new(), |a| format!(" alias {a:?}")),
                ));
                if let Some(t) = &l.tun {
                    lines.push(format!("tap {} {t:?}", l.name));
                }
                for q in &l.qdiscs {
                    let at = match q.parent {
                        TC_H_ROOT => "root".to_string(),
                        TC_H_INGRESS => "ingress".to_string(),
                        p => format!("{p:#x}"),
                    };
                    let what = match &q.kind {
                        QdiscKind::Tbf(t) => {
                            format!("tbf rate {} buffer {} limit {}", t.rate, t.buffer, t.limit)
                        }
                        k => k.name().to_string(),
                    };
                    lines.push(format!("qdisc {} {at} handle {:#x} {what}", l.name, q.handle));
                }
                for f in &l.filters {
                    let to: Vec<&str> = f.mirred.iter().map(|m| name_of(m.ifindex)).collect();
                    lines.push(format!(
                        "filter {} parent {:#x} prio {} protocol {:#x} {} classid {:?} redirect {to:?}",
                        l.name, f.parent, f.prio, f.protocol, f.kind, f.classid
                    ));
                }
            }
            for a in &s.addrs {
                lines.push(format!("addr {} {}/{} flags {:#x}", name_of(a.index), a.addr, a.prefix, a.flags));
            }
            for r in &s.routes {
                lines.push(format!(
                    "route {}/{} via {:?} dev {} table {} metric {:?} scope {}",
                    r.dst,
                    r.prefix,
                    r.gateway,
                    r.oif.map_or("-", name_of),
                    r.table,
                    r.priority,
                    r.scope
                ));
            }
            for r in &s.rules {
                let mut line = format!("rule {:?} pref {:?} table {}", r.family, r.priority, r.table);
                for (what, v) in
                    [("from", r.src.map(|n| n.to_string())), ("to", r.dst.map(|n| n.to_string()))]
                {
                    line += &v.map_or(String::new(), |v| format!(" {what} {v}"));
                }
                for (what, v) in [("iif", &r.iif), ("oif", &r.oif)] {
                    line += &v.as_ref().map_or(String::new(), |v| format!(" {what} {v}"));
                }
                line += &r.fwmark.map_or(String::new(), |m| format!(" fwmark {m}/{:?}", r.fwmask));
                line += if r.l3mdev { " l3mdev" } else { "" };
                lines.push(line);
            }
            for n in &s.neighs {
                lines.push(format!("neigh {} {} {:?}", name_of(n.index), n.ip, n.mac));
            }
            lines.extend(s.sysctls.iter().map(|(k, v)| format!("sysctl {k}={v}")));
            lines.extend(s.nft.describe());
            lines.sort();
            for l in lines {
                let _ = writeln!(out, "  {l}");
            }
        }
        for l in &self.leases {
            let _ = writeln!(out, "lease {}", l.describe());
        }
        out
    }
}

impl Space {
    /// `want` when it is free here, else the next free index.
    fn take_index(&mut self, want: Option<u32>) -> u32 {
        if let Some(i) = want.filter(|i| !self.links.iter().any(|l| l.index == *i)) {
            return i;
        }
        while self.links.iter().any(|l| l.index == self.next_index) {
            self.next_index += 1;
        }
        self.next_index += 1;
        self.next_index - 1
    }
}

impl FLink {
    fn blank() -> FLink {
        FLink {
            id: 0,
            index: 0,
            name: String::new(),
            kind: None,
            mac: [0; 6],
            mtu: 1500,
            flags: 0,
            txqlen: 1000,
            master: None,
            lower: None,
            macvlan_mode: None,
            vlan_filtering: None,
            vlan_id: None,
            vlan_protocol: None,
            ipvlan: None,
            vrf_table: None,
            port: None,
            vlans: Vec::new(),
            sysctls: BTreeMap::new(),
            alias: None,
            qdiscs: Vec::new(),
            filters: Vec::new(),
            tun: None,
        }
    }

    fn is_up(&self) -> bool {
        self.flags & libc::IFF_UP as u32 != 0
    }
}

impl Lease {
    fn describe(&self) -> String {
        let ips: Vec<String> = self.result.ips.iter().map(|ip| ip.address.to_string()).collect();
        format!("{}/{} {}", self.container_id, self.ifname, ips.join(","))
    }
}

/// Arguments of a verb as the skel would build them, for unit tests:
/// container "c1", netns "/run/netns/c1", ifname "eth0", CNI_PATH empty.
/// Panics on a config the skel would refuse.
pub fn cmd_args(command: Command, conf: &serde_json::Value) -> CmdArgs {
    CmdArgs {
        command,
        container_id: "c1".into(),
        netns: "/run/netns/c1".into(),
        ifname: "eth0".into(),
        args: CniArgs::parse("").expect("empty CNI_ARGS"),
        path: vec![],
        stdin: conf.to_string().into_bytes(),
        conf: NetConf::parse(conf.to_string().as_bytes()).expect("a valid network config"),
        env: vec![],
    }
}

/// Whether `ip` is in a subnet of an address of link `index` (any link with
/// `None`): the subnet route the kernel adds with the address (none for a
/// `noprefixroute` one).
fn on_link(s: &Space, index: Option<u32>, ip: &IpAddr) -> bool {
    s.addrs
        .iter()
        .filter(|a| index.is_none_or(|i| a.index == i) && a.flags & libc::IFA_F_NOPREFIXROUTE == 0)
        .any(|a| crate::ipnet::IpNet { addr: a.addr, prefix: a.prefix }.contains(ip))
}
