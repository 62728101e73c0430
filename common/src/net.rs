//! The seam between a plugin's decisions and the kernel.
//!
//! [`NetStack`] is one network namespace as a plugin changes it: links,
//! addresses, routes, rules, neighbours and qdiscs (rtnetlink), its `net` sysctls
//! and, through [`NetStack::nft`], its nf_tables ([`Nftables`]). The real one is [`Rtnl`]; unit tests use the recording fake of
//! `common::fake` (cargo feature `fake`), which keeps an in-memory model of
//! every namespace, records each call and fails the call you choose.
//!
//! A plugin writes its verbs as functions generic over `NetStack` (and
//! [`Ipam`](crate::ipam::Ipam) for its IPAM delegate); its `Plugin` impl
//! opens the real handles and passes them in. Shipped binaries know only
//! `Rtnl`, so the generics compile to the same direct calls as before.
//! What an ADD made goes into an [`Undo`](crate::undo::Undo) log, run when a
//! later step fails; [`links`](crate::links), [`veth`](crate::veth) and [`ifconfig`](crate::ifconfig)
//! hold the steps every plugin takes.
//!
//! ```no_run
//! use common::ipam::{self, Ipam};
//! use common::links::{self, link_error};
//! use common::net::NetStack;
//! use common::netlink::rtnl::{LinkKind, NewLink, Rtnl};
//! use common::skel::CmdArgs;
//! use common::spec::CniResult;
//! use common::undo::{Side, Undo};
//! use common::{ifconfig, Result};
//!
//! /// ADD of a plugin that gives the container a dummy device with the IPAM's addresses.
//! fn add<N: NetStack>(args: &CmdArgs, host: &mut N, ctr: &mut N, ipam: &mut impl Ipam) -> Result<CniResult> {
//!     links::ensure_name_free(ctr, &args.ifname)?;
//!     let mut undo = Undo::new(args);
//!     let res = add_attachment(args, ctr, ipam, &mut undo);
//!     if res.is_err() {
//!         undo.run(host, ctr, ipam);
//!     }
//!     res
//! }
//!
//! fn add_attachment<'a, N: NetStack>(
//!     args: &'a CmdArgs, ctr: &mut N, ipam: &mut impl Ipam, undo: &mut Undo<'a, N>,
//! ) -> Result<CniResult> {
//!     let new = NewLink::new(&args.ifname, LinkKind::Dummy);
//!     ctr.add_link(&new).map_err(|e| link_error("creating the dummy", e))?;
//!     undo.delete_link(Side::Container, &args.ifname);
//!     let res = ipam::allocate(ipam, args, undo)?; // registers the release
//!     ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, false)?;
//!     Ok(res)
//! }
//!
//! // The `Plugin` impl hands it the real kernel:
//! # fn main() -> Result<()> {
//! # let args: CmdArgs = todo!();
//! let ns = common::netns::Netns::open_container(&args.netns)?;
//! add(&args, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)?;
//! # Ok(()) }
//! ```
//!
//! and its unit tests the fake (cargo feature `fake` as a dev-dependency):
//!
//! ```ignore
//! let kernel = FakeKernel::new();
//! let (mut host, mut ctr) = (kernel.host(), kernel.netns("c1"));
//! let args = common::fake::cmd_args(Command::Add, &json!({"cniVersion": "1.1.0",
//!     "name": "n", "type": "dummy", "ipam": {"type": "host-local"}}));
//! let before = kernel.state();
//! kernel.fail_on("set_up", libc::EPERM);     // the step after IPAM ADD
//! assert!(add(&args, &mut host, &mut ctr, &mut kernel.ipam()).is_err());
//! assert_eq!(kernel.state(), before);         // no link, no lease
//! ```
//!
//! plugins/macvlan/src/tests.rs is a full example.

use std::io;
use std::net::IpAddr;
use std::os::fd::RawFd;

use crate::netlink::rtnl::tc::{Filter, Qdisc, Redirect};
use crate::netlink::rtnl::{
    Addr, AddrOpts, BridgePortOpts, BridgeVlan, Family, Link, Neigh, NewLink, Route, Rtnl, Rule,
};
use crate::netlink::{NlError, NlResult};
use crate::nft::{Nft, NftResult, Nftables};
use crate::tap::NewTap;

/// One network namespace: what a plugin reads and changes in it.
///
/// Indexes are those of this namespace. Errors are the kernel's (`EEXIST`,
/// `ENODEV`, …) so callers decide what "already there" and "already gone"
/// mean; sysctl errors are I/O errors (`NotFound` when the key does not exist,
/// e.g. IPv6 keys in a netns without IPv6).
pub trait NetStack {
    /// nf_tables of this netns.
    type Nft: Nftables;
    /// A connection to nf_tables of this netns.
    fn nft(&mut self) -> NftResult<Self::Nft>;

    /// The link called `name`; `ENODEV` if there is none.
    fn link_by_name(&mut self, name: &str) -> NlResult<Link>;
    /// The link with ifindex `index`; `ENODEV` if there is none.
    fn link_by_index(&mut self, index: u32) -> NlResult<Link>;
    /// Every link.
    fn links(&mut self) -> NlResult<Vec<Link>>;
    /// Create a link (here, or where `link.netns_fd` says).
    fn add_link(&mut self, link: &NewLink) -> NlResult<()>;
    /// Create a persistent tap device here (see [`crate::tap`]); `EBUSY`
    /// when a link of its name exists.
    fn add_tap(&mut self, tap: &NewTap) -> NlResult<()>;
    /// Delete a link (a veth takes its peer along).
    fn del_link(&mut self, index: u32) -> NlResult<()>;
    /// Delete a link by name; `ENODEV` if there is none.
    fn del_link_by_name(&mut self, name: &str) -> NlResult<()>;
    fn set_up(&mut self, index: u32) -> NlResult<()>;
    fn set_down(&mut self, index: u32) -> NlResult<()>;
    fn set_promisc(&mut self, index: u32, on: bool) -> NlResult<()>;
    fn set_allmulti(&mut self, index: u32, on: bool) -> NlResult<()>;
    fn set_mtu(&mut self, index: u32, mtu: u32) -> NlResult<()>;
    fn set_txqlen(&mut self, index: u32, qlen: u32) -> NlResult<()>;
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> NlResult<()>;
    /// Rename a link; it must be down (`EBUSY`).
    fn rename(&mut self, index: u32, name: &str) -> NlResult<()>;
    /// Enslave to a bridge (or other master device).
    fn set_master(&mut self, index: u32, master: u32) -> NlResult<()>;
    fn set_nomaster(&mut self, index: u32) -> NlResult<()>;
    /// Move a link into the netns `netns_fd` (see [`NetStack::netns_fd`]).
    fn set_netns_fd(&mut self, index: u32, netns_fd: RawFd) -> NlResult<()>;
    fn set_bridge_port(&mut self, index: u32, opts: &BridgePortOpts) -> NlResult<()>;
    fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan, on_self: bool) -> NlResult<()>;
    fn bridge_vlan_del(&mut self, index: u32, vid: u16, on_self: bool) -> NlResult<()>;
    fn bridge_vlans(&mut self, index: u32) -> NlResult<Vec<BridgeVlan>>;

    /// Add `addr/prefix` to a link; `EEXIST` if it is there.
    fn add_addr(&mut self, index: u32, addr: IpAddr, prefix: u8, opts: &AddrOpts) -> NlResult<()>;
    /// Remove `addr/prefix` from a link; `EADDRNOTAVAIL` if absent.
    fn del_addr(&mut self, index: u32, addr: IpAddr, prefix: u8) -> NlResult<()>;
    /// Addresses of one link (or all with `None`) of a family.
    fn addrs(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Addr>>;

    /// Add a route; `EEXIST` if an equal one exists.
    fn add_route(&mut self, route: &Route) -> NlResult<()>;
    /// Add a route or replace the one with its destination, table and metric.
    fn replace_route(&mut self, route: &Route) -> NlResult<()>;
    /// Delete the route matching `route`'s set fields; `ESRCH` if none.
    fn del_route(&mut self, route: &Route) -> NlResult<()>;
    /// Routes of a family in `table` (0: every table).
    fn routes(&mut self, family: Family, table: u32) -> NlResult<Vec<Route>>;

    /// Add a rule; `EEXIST` if an equal one exists.
    fn add_rule(&mut self, rule: &Rule) -> NlResult<()>;
    /// Delete the first rule matching `rule`'s set fields; `ENOENT` if none.
    fn del_rule(&mut self, rule: &Rule) -> NlResult<()>;
    /// The rules of a family (both with `Any`).
    fn rules(&mut self, family: Family) -> NlResult<Vec<Rule>>;

    /// Neighbour entries of one link (or all) of a family.
    fn neighbours(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Neigh>>;
    /// Add or replace a permanent entry `ip` → `mac`.
    fn set_neigh(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> NlResult<()>;
    /// Delete the entry for `ip`; `ENOENT` if there is none.
    fn del_neigh(&mut self, index: u32, ip: IpAddr) -> NlResult<()>;

    /// Set a link's alias (`IFLA_IFALIAS`); "" removes it.
    fn set_alias(&mut self, index: u32, alias: &str) -> NlResult<()>;

    /// Add a qdisc (traffic control); `EEXIST` if the link has one at that parent.
    fn add_qdisc(&mut self, q: &Qdisc) -> NlResult<()>;
    /// Delete the qdisc at `parent` of a link, its filters with it; `ENOENT` if there is none.
    fn del_qdisc(&mut self, index: u32, parent: u32) -> NlResult<()>;
    /// The qdiscs of one link (or all with `None`).
    fn qdiscs(&mut self, index: Option<u32>) -> NlResult<Vec<Qdisc>>;
    /// Add a filter that sends every packet at `f.parent` of a link out of
    /// `f.target`; `EINVAL` without a qdisc there, `ENODEV` without the target.
    fn add_redirect(&mut self, f: &Redirect) -> NlResult<()>;
    /// The filters at `parent` of a link (none when it has no such qdisc).
    fn filters(&mut self, index: u32, parent: u32) -> NlResult<Vec<Filter>>;

    /// This netns as the target of another handle's `add_link` or
    /// `set_netns_fd`. Valid while this handle lives.
    fn netns_fd(&mut self) -> NlResult<RawFd>;
    /// A new, empty netns (a link in transit between two others changes
    /// its name there, out of sight of both: see `links::move_link`). It
    /// goes with the returned handle: links left in it are destroyed, a
    /// physical device goes back to the initial netns.
    fn scratch_netns(&mut self) -> NlResult<Self>
    where
        Self: Sized;
    /// Read a sysctl of this netns, key as a path: `net/ipv4/conf/eth0/arp_notify`.
    fn sysctl(&mut self, key: &str) -> io::Result<String>;
    /// Write sysctls of this netns, in order; stops at the first failure.
    fn set_sysctls(&mut self, settings: &[(&str, &str)]) -> io::Result<()>;

    /// Hold the runtime lock `name` (see `lock::runtime_lock`) that
    /// serializes plugin runs sharing state of this host (a bridge, a
    /// table); the fake needs none.
    fn lock(&mut self, name: &str) -> crate::Result<Option<crate::lock::FileLock>>;

    /// Write one sysctl.
    fn set_sysctl(&mut self, key: &str, value: &str) -> io::Result<()> {
        self.set_sysctls(&[(key, value)])
    }
    /// Whether interface `index` (`None`: the netns as a whole) forwards
    /// `family`, read from the sysctls (the kernel answers over netlink).
    fn forwarding(&mut self, family: Family, index: Option<u32>) -> NlResult<bool> {
        let v = if family == Family::V6 { "ipv6" } else { "ipv4" };
        let key = match index {
            Some(i) => format!("net/{v}/conf/{}/forwarding", self.link_by_index(i)?.name),
            None if family == Family::V6 => "net/ipv6/conf/all/forwarding".to_string(),
            None => "net/ipv4/ip_forward".to_string(),
        };
        let value = self
            .sysctl(&key)
            .map_err(|e| NlError { errno: e.raw_os_error().unwrap_or(libc::EIO), ext: None })?;
        Ok(value == "1")
    }
    /// Write a sysctl only when it differs (works where the file is
    /// read-only but already right).
    fn ensure_sysctl(&mut self, key: &str, value: &str) -> io::Result<()> {
        match self.sysctl(key) {
            Ok(v) if v == value => Ok(()),
            _ => self.set_sysctl(key, value),
        }
    }
}

/// DEL's handle on the container: `None` when its netns is gone (or was
/// never given). One that exists but cannot be reached is noted in
/// `errors`, so that DEL still cleans up everything else.
pub fn container_for_del(netns: &str, errors: &mut crate::Errors) -> crate::Result<Option<Rtnl>> {
    let Some(ns) = crate::netns::Netns::open_if_exists(netns)? else { return Ok(None) };
    match Rtnl::in_netns(&ns) {
        Ok(nl) => Ok(Some(nl)),
        Err(e) => {
            errors.note::<()>(Err(e.into()));
            Ok(None)
        }
    }
}

impl NetStack for Rtnl {
    type Nft = Nft;
    fn nft(&mut self) -> NftResult<Nft> {
        Rtnl::nft(self)
    }
    fn link_by_name(&mut self, name: &str) -> NlResult<Link> {
        Rtnl::link_by_name(self, name)
    }
    fn link_by_index(&mut self, index: u32) -> NlResult<Link> {
        Rtnl::link_by_index(self, index)
    }
    fn links(&mut self) -> NlResult<Vec<Link>> {
        Rtnl::links(self)
    }
    fn add_link(&mut self, link: &NewLink) -> NlResult<()> {
        Rtnl::add_link(self, link)
    }
    fn add_tap(&mut self, tap: &NewTap) -> NlResult<()> {
        Rtnl::add_tap(self, tap)
    }
    fn del_link(&mut self, index: u32) -> NlResult<()> {
        Rtnl::del_link(self, index)
    }
    fn del_link_by_name(&mut self, name: &str) -> NlResult<()> {
        Rtnl::del_link_by_name(self, name)
    }
    fn set_up(&mut self, index: u32) -> NlResult<()> {
        Rtnl::set_up(self, index)
    }
    fn set_down(&mut self, index: u32) -> NlResult<()> {
        Rtnl::set_down(self, index)
    }
    fn set_promisc(&mut self, index: u32, on: bool) -> NlResult<()> {
        Rtnl::set_promisc(self, index, on)
    }
    fn set_allmulti(&mut self, index: u32, on: bool) -> NlResult<()> {
        Rtnl::set_allmulti(self, index, on)
    }
    fn set_mtu(&mut self, index: u32, mtu: u32) -> NlResult<()> {
        Rtnl::set_mtu(self, index, mtu)
    }
    fn set_txqlen(&mut self, index: u32, qlen: u32) -> NlResult<()> {
        Rtnl::set_txqlen(self, index, qlen)
    }
    fn set_mac(&mut self, index: u32, mac: [u8; 6]) -> NlResult<()> {
        Rtnl::set_mac(self, index, mac)
    }
    fn rename(&mut self, index: u32, name: &str) -> NlResult<()> {
        Rtnl::rename(self, index, name)
    }
    fn set_master(&mut self, index: u32, master: u32) -> NlResult<()> {
        Rtnl::set_master(self, index, master)
    }
    fn set_nomaster(&mut self, index: u32) -> NlResult<()> {
        Rtnl::set_nomaster(self, index)
    }
    fn set_netns_fd(&mut self, index: u32, netns_fd: RawFd) -> NlResult<()> {
        Rtnl::set_netns_fd(self, index, netns_fd)
    }
    fn set_bridge_port(&mut self, index: u32, opts: &BridgePortOpts) -> NlResult<()> {
        Rtnl::set_bridge_port(self, index, opts)
    }
    fn bridge_vlan_add(&mut self, index: u32, vlan: BridgeVlan, on_self: bool) -> NlResult<()> {
        Rtnl::bridge_vlan_add(self, index, vlan, on_self)
    }
    fn bridge_vlan_del(&mut self, index: u32, vid: u16, on_self: bool) -> NlResult<()> {
        Rtnl::bridge_vlan_del(self, index, vid, on_self)
    }
    fn bridge_vlans(&mut self, index: u32) -> NlResult<Vec<BridgeVlan>> {
        Rtnl::bridge_vlans(self, index)
    }
    fn add_addr(&mut self, index: u32, addr: IpAddr, prefix: u8, opts: &AddrOpts) -> NlResult<()> {
        Rtnl::add_addr(self, index, addr, prefix, opts)
    }
    fn del_addr(&mut self, index: u32, addr: IpAddr, prefix: u8) -> NlResult<()> {
        Rtnl::del_addr(self, index, addr, prefix)
    }
    fn addrs(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Addr>> {
        Rtnl::addrs(self, index, family)
    }
    fn add_route(&mut self, route: &Route) -> NlResult<()> {
        Rtnl::add_route(self, route)
    }
    fn replace_route(&mut self, route: &Route) -> NlResult<()> {
        Rtnl::replace_route(self, route)
    }
    fn del_route(&mut self, route: &Route) -> NlResult<()> {
        Rtnl::del_route(self, route)
    }
    fn routes(&mut self, family: Family, table: u32) -> NlResult<Vec<Route>> {
        Rtnl::routes(self, family, table)
    }
    fn add_rule(&mut self, rule: &Rule) -> NlResult<()> {
        Rtnl::add_rule(self, rule)
    }
    fn del_rule(&mut self, rule: &Rule) -> NlResult<()> {
        Rtnl::del_rule(self, rule)
    }
    fn rules(&mut self, family: Family) -> NlResult<Vec<Rule>> {
        Rtnl::rules(self, family)
    }
    fn neighbours(&mut self, index: Option<u32>, family: Family) -> NlResult<Vec<Neigh>> {
        Rtnl::neighbours(self, index, family)
    }
    fn set_neigh(&mut self, index: u32, ip: IpAddr, mac: [u8; 6]) -> NlResult<()> {
        Rtnl::set_neigh(self, index, ip, mac)
    }
    fn del_neigh(&mut self, index: u32, ip: IpAddr) -> NlResult<()> {
        Rtnl::del_neigh(self, index, ip)
    }
    fn set_alias(&mut self, index: u32, alias: &str) -> NlResult<()> {
        Rtnl::set_alias(self, index, alias)
    }
    fn add_qdisc(&mut self, q: &Qdisc) -> NlResult<()> {
        Rtnl::add_qdisc(self, q)
    }
    fn del_qdisc(&mut self, index: u32, parent: u32) -> NlResult<()> {
        Rtnl::del_qdisc(self, index, parent)
    }
    fn qdiscs(&mut self, index: Option<u32>) -> NlResult<Vec<Qdisc>> {
        Rtnl::qdiscs(self, index)
    }
    fn add_redirect(&mut self, f: &Redirect) -> NlResult<()> {
        Rtnl::add_redirect(self, f)
    }
    fn filters(&mut self, index: u32, parent: u32) -> NlResult<Vec<Filter>> {
        Rtnl::filters(self, index, parent)
    }
    fn netns_fd(&mut self) -> NlResult<RawFd> {
        Rtnl::netns_fd(self)
    }
    fn scratch_netns(&mut self) -> NlResult<Rtnl> {
        Rtnl::in_netns(&crate::netns::Netns::scratch()?)
    }
    fn sysctl(&mut self, key: &str) -> io::Result<String> {
        Rtnl::sysctl(self, key)
    }
    fn forwarding(&mut self, family: Family, index: Option<u32>) -> NlResult<bool> {
        Rtnl::forwarding(self, family, index)
    }
    fn set_sysctls(&mut self, settings: &[(&str, &str)]) -> io::Result<()> {
        Rtnl::set_sysctls(self, settings)
    }
    fn lock(&mut self, name: &str) -> crate::Result<Option<crate::lock::FileLock>> {
        crate::lock::runtime_lock(name).map(Some)
    }
}
