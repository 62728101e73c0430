#![cfg_attr(not(test), no_main)]
//! vrf: a chained plugin that puts the container interface into a VRF (an
//! L3 master device of the container's netns with a routing table of its
//! own), as the reference does. ADD makes the VRF when it is missing — with
//! the configured table, or the first table no VRF of the container uses —
//! and enslaves the interface. The kernel cycles the interface for that:
//! its routes are flushed and, unless `keep_addr_on_down`, its IPv6
//! addresses go; so ADD puts those addresses back, waits until each is
//! usable again, and moves the interface's routes of the main table into
//! the VRF's table. Several interfaces may share a VRF; each VRF's routes
//! are its own, so two networks may even give the container one address.
//!
//! DEL releases the interface and deletes the VRF with its last port. Every
//! step runs under the flock on the container's netns that sbr takes, so
//! two ADDs never pick one table. ADD either completes or puts the
//! interface back as it was and removes a VRF it made.

mod config;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::time::Duration;

use common::ipam;
use common::links::link_error;
use common::net::NetStack;
use common::netlink::rtnl::{Addr, AddrOpts, Family, Link, LinkKind, NewLink, Route, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::undo::{Side, Undo};
use common::{CniError, Errors, Result};

use config::Conf;

const MAIN: u32 = libc::RT_TABLE_MAIN as u32;

struct Vrf;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Vrf {
    fn about(&self) -> String {
        format!("CNI vrf plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = config::load(&args.conf)?;
        let prev = prev_result(args)?;
        let ns = Netns::open_container(&args.netns)?;
        let _turn = ns.lock()?;
        add(args, &conf, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?)?;
        Ok(prev.clone())
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        // A config ADD refuses made nothing: nothing to do.
        let Ok(conf) = config::load(&args.conf) else { return Ok(()) };
        let Some(ns) = Netns::open_if_exists(&args.netns)? else { return Ok(()) };
        let _turn = ns.lock()?;
        del(args, &conf, &mut Rtnl::in_netns(&ns)?)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = config::load(&args.conf)?;
        prev_result(args)?;
        let ns = Netns::open_container(&args.netns)?;
        check(args, &conf, &mut Rtnl::in_netns(&ns)?)
    }

    fn status(&self, _args: &CmdArgs) -> Result<()> {
        Ok(())
    }

    /// Everything vrf makes lives in the container's netns and goes with it.
    fn gc(&self, _args: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

fn prev_result(args: &CmdArgs) -> Result<&CniResult> {
    args.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::invalid_config(
            "vrf must be called as a chained plugin: missing prevResult from earlier plugin",
        )
    })
}

/// ADD: the VRF, then the interface in it; a failure takes back what was done.
fn add<N: NetStack>(args: &CmdArgs, conf: &Conf, host: &mut N, ctr: &mut N) -> Result<()> {
    let ifname = &args.ifname;
    let link =
        ctr.link_by_name(ifname).map_err(|e| link_error(&format!("could not get link {ifname}"), e))?;
    if let Some(m) = link.master {
        let master = ctr.link_by_index(m).map_or_else(|_| format!("index {m}"), |l| l.name);
        return Err(CniError::internal(format!("interface {ifname} has already a master set: {master}")));
    }
    let mut undo = Undo::new(args);
    let res = vrf(conf, ctr, &mut undo).and_then(|vrf| enslave(&link, &vrf, ctr, &mut undo));
    if res.is_err() {
        undo.run(host, ctr, &mut ipam::Exec); // (no IPAM step to take back)
    }
    res
}

/// The VRF `conf.vrf`: the one there (with the configured table, if one is
/// configured), or a new one, up.
fn vrf<N: NetStack>(conf: &Conf, ctr: &mut N, undo: &mut Undo<'_, N>) -> Result<Link> {
    let name = &conf.vrf;
    match ctr.link_by_name(name) {
        Ok(l) if l.kind.as_deref() != Some("vrf") => {
            let kind = l.kind.as_deref().unwrap_or("device");
            return Err(CniError::invalid_config(format!("{name} is a {kind} in the container, not a VRF")));
        }
        Ok(l) => match (conf.table, l.vrf_table) {
            (Some(want), Some(has)) if want != has => {
                return Err(CniError::invalid_config(format!(
                    "VRF {name} already exist with different routing table {has} (the config says {want})"
                )))
            }
            _ => return Ok(l),
        },
        Err(e) if e.not_found() => {}
        Err(e) => return Err(link_error(&format!("finding {name}"), e)),
    }
    let links = ctr.links().map_err(|e| link_error("listing links", e))?;
    let vrfs: Vec<&Link> = links.iter().filter(|l| l.kind.as_deref() == Some("vrf")).collect();
    let taken: BTreeSet<u32> = vrfs.iter().filter_map(|l| l.vrf_table).collect();
    let table = match conf.table {
        Some(t) if taken.contains(&t) => {
            let other =
                vrfs.iter().find(|l| l.vrf_table == Some(t)).map_or("another VRF", |l| l.name.as_str());
            return Err(CniError::invalid_config(format!(
                "table {t} is the table of VRF {other} in the container: two VRFs sharing a table share their routes"
            )));
        }
        Some(t) => t,
        None => free_table(&taken),
    };
    ctr.add_link(&NewLink::new(name, LinkKind::Vrf { table })).map_err(|e| {
        let hint = if e.is(libc::EOPNOTSUPP) { " (this kernel has no VRF support: module vrf)" } else { "" };
        link_error(&format!("creating VRF {name} with table {table}{hint}"), e)
    })?;
    undo.delete_link(Side::Container, name);
    let l = ctr.link_by_name(name).map_err(|e| link_error(&format!("finding {name}"), e))?;
    ctr.set_up(l.index).map_err(|e| link_error(&format!("setting VRF {name} up"), e))?;
    Ok(l)
}

/// The reference's choice: the lowest table from 1 no VRF uses; ours also
/// never takes the kernel's own tables (default, main, local).
fn free_table(taken: &BTreeSet<u32>) -> u32 {
    const RESERVED: [u32; 3] = [253, 254, 255];
    (1..).find(|t| !taken.contains(t) && !RESERVED.contains(t)).unwrap_or(1)
}

/// What enslaving takes from the interface, saved before.
#[derive(Clone)]
struct Before {
    /// Its global IPv6 addresses.
    v6: Vec<Addr>,
    /// Its routes of the main table, device routes first.
    routes: Vec<Route>,
}

impl Before {
    /// The routes to move into the VRF: those the kernel does not make
    /// again by itself for the addresses. (The reference moves only routes
    /// of universe scope: device routes an IPAM configured are lost there.)
    fn to_move(&self) -> impl Iterator<Item = &Route> {
        self.routes.iter().filter(|r| r.protocol != libc::RTPROT_KERNEL)
    }
}

/// Enslave `link` to `vrf`, then give it back what the kernel took.
fn enslave<'a, N: NetStack>(link: &Link, vrf: &Link, ctr: &mut N, undo: &mut Undo<'a, N>) -> Result<()> {
    let (ifname, index) = (&link.name, link.index);
    let table = vrf.vrf_table.unwrap_or_default();
    let before = Before { v6: global_v6(ctr, index)?, routes: main_routes_of(ctr, index)? };
    ctr.set_master(index, vrf.index)
        .map_err(|e| link_error(&format!("could not set VRF {} as master of {ifname}", vrf.name), e))?;
    let saved = before.clone();
    undo.push("release the interface and put back its addresses and routes", move |_, ctr| {
        ctr.set_nomaster(index)?;
        restore(ctr, index, &saved);
        Ok(())
    });
    let now = global_v6(ctr, index)?;
    for a in before.v6.iter().filter(|a| !now.iter().any(|n| n.addr == a.addr)) {
        ctr.add_addr(index, a.addr, a.prefix, &opts_of(a)).map_err(|e| {
            link_error(
                &format!("could not restore address {}/{} to {ifname} in VRF {}", a.addr, a.prefix, vrf.name),
                e,
            )
        })?;
        wait_until_usable(ctr, a, table, ifname)?;
    }
    for r in before.to_move() {
        let moved = Route { table, ..r.clone() };
        ctr.replace_route(&moved).map_err(|e| {
            link_error(&format!("could not add the route to {}/{} to VRF table {table}", r.dst, r.prefix), e)
        })?;
    }
    Ok(())
}

/// The interface's global IPv6 addresses.
fn global_v6<N: NetStack>(ctr: &mut N, index: u32) -> Result<Vec<Addr>> {
    let all = ctr.addrs(Some(index), Family::V6).map_err(|e| link_error("listing addresses", e))?;
    Ok(all.into_iter().filter(|a| a.scope == libc::RT_SCOPE_UNIVERSE).collect())
}

/// The main table's routes through the interface, device routes first so
/// that gateways behind them resolve.
fn main_routes_of<N: NetStack>(ctr: &mut N, index: u32) -> Result<Vec<Route>> {
    let all = ctr.routes(Family::Any, MAIN).map_err(|e| link_error("listing the main table's routes", e))?;
    let mut mine: Vec<Route> = all.into_iter().filter(|r| r.oif == Some(index)).collect();
    mine.sort_by_key(|r| r.gateway.is_some());
    Ok(mine)
}

/// The routes through the interface in the VRF's table that ADD moved
/// there (not the kernel's own), as main-table routes, device routes first.
fn vrf_routes_of<N: NetStack>(ctr: &mut N, table: u32, index: u32) -> Result<Vec<Route>> {
    let all = ctr.routes(Family::Any, table).map_err(|e| link_error(&format!("listing table {table}"), e))?;
    let mut mine: Vec<Route> = all
        .into_iter()
        .filter(|r| r.oif == Some(index) && r.route_type == libc::RTN_UNICAST)
        .filter(|r| r.protocol != libc::RTPROT_KERNEL)
        .map(|r| Route { table: MAIN, ..r })
        .collect();
    mine.sort_by_key(|r| r.gateway.is_some());
    Ok(mine)
}

fn opts_of(a: &Addr) -> AddrOpts {
    AddrOpts {
        nodad: a.flags & libc::IFA_F_NODAD != 0,
        noprefixroute: a.flags & libc::IFA_F_NOPREFIXROUTE != 0,
        broadcast: None,
    }
}

/// Wait (as the reference does, up to ~2.5 s) until the kernel has made the
/// restored address an address of the VRF: its local route appears in the
/// VRF's table once duplicate address detection is done.
fn wait_until_usable<N: NetStack>(ctr: &mut N, a: &Addr, table: u32, ifname: &str) -> Result<()> {
    for attempt in 0..=8 {
        let routes =
            ctr.routes(Family::V6, table).map_err(|e| link_error(&format!("listing table {table}"), e))?;
        if routes.iter().any(|r| r.route_type == libc::RTN_LOCAL && r.dst == a.addr && r.oif == Some(a.index))
        {
            return Ok(());
        }
        if attempt < 8 {
            std::thread::sleep(Duration::from_millis(10 << attempt)); // 10 ms … 1.28 s
        }
    }
    Err(CniError::internal(format!(
        "address {}/{} of {ifname} did not become usable in VRF table {table} (duplicate address detection failed?)",
        a.addr, a.prefix
    )))
}

/// Put back addresses and routes the interface lost (best effort: each one
/// is tried; those still there, as the kernel's own, refuse).
fn restore<N: NetStack>(ctr: &mut N, index: u32, before: &Before) {
    let now = global_v6(ctr, index).unwrap_or_default();
    for a in before.v6.iter().filter(|a| !now.iter().any(|n| n.addr == a.addr)) {
        let _ = ctr.add_addr(index, a.addr, a.prefix, &opts_of(a));
    }
    for r in &before.routes {
        let _ = ctr.add_route(r);
    }
}

/// DEL: release the interface from the VRF (not from another master) and
/// give it back what releasing takes (IPv6 addresses, the routes ADD moved,
/// now in the main table again: the reference loses them); the VRF goes
/// with its last port. A VRF or interface already gone is fine.
fn del<N: NetStack>(args: &CmdArgs, conf: &Conf, ctr: &mut N) -> Result<()> {
    let name = &conf.vrf;
    let vrf = match ctr.link_by_name(name) {
        Ok(l) if l.kind.as_deref() == Some("vrf") => l,
        Ok(_) => return Ok(()), // not a VRF: not ours
        Err(e) if e.not_found() => return Ok(()),
        Err(e) => return Err(link_error(&format!("finding {name}"), e)),
    };
    let mut errors = Errors::new();
    match ctr.link_by_name(&args.ifname) {
        Ok(l) if l.master == Some(vrf.index) => {
            let table = vrf.vrf_table.unwrap_or_default();
            let before = Before { v6: global_v6(ctr, l.index)?, routes: vrf_routes_of(ctr, table, l.index)? };
            match ctr.set_nomaster(l.index) {
                Err(e) if !e.not_found() => errors
                    .note::<()>(Err(link_error(&format!("releasing {} from VRF {name}", args.ifname), e))),
                _ => restore(ctr, l.index, &before),
            }
        }
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => errors.note::<()>(Err(link_error(&format!("finding {}", args.ifname), e))),
    }
    let links = ctr.links().map_err(|e| link_error("listing links", e))?;
    if !links.iter().any(|l| l.master == Some(vrf.index)) {
        match ctr.del_link(vrf.index) {
            Err(e) if !e.not_found() => {
                errors.note::<()>(Err(link_error(&format!("deleting VRF {name}"), e)))
            }
            _ => {}
        }
    }
    errors.into_result()
}

/// CHECK: the VRF is there (with the configured table) and holds the interface.
fn check<N: NetStack>(args: &CmdArgs, conf: &Conf, ctr: &mut N) -> Result<()> {
    let name = &conf.vrf;
    let vrf = ctr.link_by_name(name).map_err(|e| link_error(&format!("finding VRF {name}"), e))?;
    if vrf.kind.as_deref() != Some("vrf") {
        return Err(CniError::internal(format!("{name} is not a VRF")));
    }
    if let (Some(want), Some(has)) = (conf.table, vrf.vrf_table) {
        if want != has {
            return Err(CniError::internal(format!(
                "VRF {name} has routing table {has}; the config says {want}"
            )));
        }
    }
    let ifname = &args.ifname;
    let link = ctr.link_by_name(ifname).map_err(|e| link_error(&format!("finding {ifname}"), e))?;
    if link.master != Some(vrf.index) {
        return Err(CniError::internal(format!("failed to find {ifname} associated to vrf {name}")));
    }
    Ok(())
}

common::plugin_main!(Vrf);
