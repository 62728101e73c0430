#![cfg_attr(not(test), no_main)]
//! sbr: a chained plugin that routes a container's traffic by its source
//! address, as the reference does. For each address prevResult gives the
//! interface, ADD picks the first routing table from 100 up that no rule
//! names and no route is in, adds the rule `from <address> lookup <table>`
//! (the kernel picks its priority: just above the main table's rule), and
//! moves the interface's routes of the main table there, with a default
//! route through the address's gateway. A reply then leaves through the
//! interface its source address belongs to, whatever the main table says.
//!
//! With `table` set, ADD only adds the rules to that table (the operator
//! fills it). DEL finds its rules as the reference does, by the source
//! addresses of the interface, so each removes what the other made; it also
//! empties the tables those rules named. Every step runs under the flock on
//! the container's netns the reference takes, so two plugins never pick one
//! table. ADD either completes or puts everything back.

mod config;
#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::ipam;
use common::ipnet::IpNet;
use common::links::link_error;
use common::net::NetStack;
use common::netlink::rtnl::{Family, Link, Route, Rtnl, Rule};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, IpConfig};
use common::undo::{Side, Undo};
use common::{CniError, Errors, Result};

use config::Conf;

/// The reference's first table; ADD never picks a lower one.
const FIRST_TABLE: u32 = 100;
const MAIN: u32 = libc::RT_TABLE_MAIN as u32;

struct Sbr;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Sbr {
    fn about(&self) -> String {
        format!("CNI sbr plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = config::load(&args.conf)?;
        let prev = config::prev_result(&args.conf)?;
        let ips = config::source_ips(prev, &args.ifname)?;
        let ns = Netns::open_container(&args.netns)?;
        let _turn = ns.lock()?;
        add(args, &conf, &ips, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?)?;
        Ok(prev.clone())
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let Some(ns) = Netns::open_if_exists(&args.netns)? else { return Ok(()) };
        let _turn = ns.lock()?;
        let table = config::table_for_del(&args.conf);
        del(args, table, &mut Rtnl::in_netns(&ns)?)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = config::load(&args.conf)?;
        let ips = config::source_ips(config::prev_result(&args.conf)?, &args.ifname)?;
        let ns = Netns::open_container(&args.netns)?;
        check(args, &conf, &ips, &mut Rtnl::in_netns(&ns)?)
    }

    fn status(&self, _args: &CmdArgs) -> Result<()> {
        Ok(())
    }

    /// Everything sbr makes lives in the container's netns and goes with it.
    fn gc(&self, _args: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

/// ADD: route every address by source; a failure takes back what was done.
fn add<N: NetStack>(args: &CmdArgs, conf: &Conf, ips: &[IpConfig], host: &mut N, ctr: &mut N) -> Result<()> {
    let mut undo = Undo::new(args);
    let res = match conf.table {
        Some(table) => ips.iter().try_for_each(|ip| add_source_rule(ctr, ip.address.addr, table, &mut undo)),
        None => tables_per_address(&args.ifname, conf, ips, ctr, &mut undo),
    };
    if res.is_err() {
        undo.run(host, ctr, &mut ipam::Exec); // (no IPAM step to take back)
    }
    res
}

/// The reference's way: a table of its own per address, holding the
/// interface's routes, and the main table without them.
fn tables_per_address<'a, N: NetStack>(
    ifname: &str,
    conf: &Conf,
    ips: &[IpConfig],
    ctr: &mut N,
    undo: &mut Undo<'a, N>,
) -> Result<()> {
    let link = ctr.link_by_name(ifname).map_err(|e| link_error(&format!("finding {ifname}"), e))?;
    let mut tables = FreeTables::of(ctr)?;
    let mine: Vec<Route> = main_routes_of(ctr, &link)?;
    for ip in ips {
        let table = tables.next();
        add_source_rule(ctr, ip.address.addr, table, undo)?;
        if let Some(gw) = conf.gateway_for(ip) {
            let mut default = Route::new(unspecified(&ip.address.addr), 0);
            (default.gateway, default.oif, default.table) = (Some(gw), Some(link.index), table);
            // A gateway the main table reaches "onlink" (Calico's 169.254.1.1) needs it here too.
            default.onlink = mine.iter().any(|r| r.gateway == Some(gw) && r.onlink);
            ctr.add_route(&default)
                .map_err(|e| link_error(&format!("adding the default route via {gw} to table {table}"), e))?;
            undo.delete_route(Side::Container, default);
        }
        // The interface's routes that serve this address, copied (the
        // default route above is replaced by the main table's, if any).
        for r in mine.iter().filter(|r| serves(r, &ip.address)) {
            let copy = Route { table, ..r.clone() };
            ctr.replace_route(&copy).map_err(|e| {
                link_error(&format!("copying the route to {}/{} into table {table}", r.dst, r.prefix), e)
            })?;
            undo.delete_route(Side::Container, copy);
        }
    }
    let originals = mine.clone();
    undo.push("restore the main table", move |_, ctr| {
        for r in &originals {
            let _ = ctr.add_route(r); // those still there refuse, EEXIST
        }
        Ok(())
    });
    if conf.add_source_hints {
        keep_subnets_with_hints(ips, &link, &mine, ctr, undo);
        return Ok(());
    }
    for r in &mine {
        match ctr.del_route(r) {
            Err(e) if !e.not_found() => {
                return Err(link_error(
                    &format!("deleting the route to {}/{} from the main table", r.dst, r.prefix),
                    e,
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// `addSourceHints`: each address's subnet stays in the main table with the
/// address as preferred source; only the other routes leave it. Best effort,
/// as in the reference: source routing works without the hints.
fn keep_subnets_with_hints<'a, N: NetStack>(
    ips: &[IpConfig],
    link: &Link,
    mine: &[Route],
    ctr: &mut N,
    undo: &mut Undo<'a, N>,
) {
    for ip in ips {
        let net = ip.address.network();
        let hint = Route {
            oif: Some(link.index),
            src: Some(ip.address.addr),
            scope: libc::RT_SCOPE_LINK,
            ..Route::new(net.addr, net.prefix)
        };
        if ctr.replace_route(&hint).is_ok() {
            undo.delete_route(Side::Container, hint);
        }
    }
    for r in mine.iter().filter(|r| r.scope != libc::RT_SCOPE_LINK) {
        let _ = ctr.del_route(r);
    }
}

/// The rule `from <addr>/32 (or /128) lookup <table>`, at the priority the kernel picks.
fn source_rule(addr: IpAddr, table: u32) -> Rule {
    Rule { src: Some(IpNet::host(addr)), ..Rule::new(Family::of(&addr), table) }
}

fn add_source_rule<'a, N: NetStack>(
    ctr: &mut N,
    addr: IpAddr,
    table: u32,
    undo: &mut Undo<'a, N>,
) -> Result<()> {
    let rule = source_rule(addr, table);
    ctr.add_rule(&rule).map_err(|e| link_error(&format!("adding the rule from {addr} lookup {table}"), e))?;
    undo.delete_rule(Side::Container, rule);
    Ok(())
}

/// A route of the interface serves an address when its preferred source or
/// gateway is in the address's subnet, or it has neither (a plain device
/// route, e.g. an IPv6 prefix): the reference's test.
fn serves(r: &Route, subnet: &IpNet) -> bool {
    let inside = |ip: &Option<IpAddr>| ip.is_some_and(|ip| subnet.contains(&ip));
    inside(&r.src) || inside(&r.gateway) || (r.src.is_none() && r.gateway.is_none())
}

/// The main table's routes through `link`, both families.
fn main_routes_of<N: NetStack>(ctr: &mut N, link: &Link) -> Result<Vec<Route>> {
    let all = ctr.routes(Family::Any, MAIN).map_err(|e| link_error("listing the main table's routes", e))?;
    Ok(all.into_iter().filter(|r| r.oif == Some(link.index)).collect())
}

fn unspecified(like: &IpAddr) -> IpAddr {
    match like {
        IpAddr::V4(_) => Ipv4Addr::UNSPECIFIED.into(),
        IpAddr::V6(_) => Ipv6Addr::UNSPECIFIED.into(),
    }
}

/// The container's routing tables in use: named by a rule (the reference's
/// test) or holding a route (ours besides: a table someone filled without a
/// rule yet is not mixed into).
struct FreeTables {
    taken: BTreeSet<u32>,
    next: u32,
}

impl FreeTables {
    fn of<N: NetStack>(ctr: &mut N) -> Result<FreeTables> {
        let rules = ctr.rules(Family::Any).map_err(|e| link_error("listing the routing rules", e))?;
        let routes = ctr.routes(Family::Any, 0).map_err(|e| link_error("listing the routes", e))?;
        let taken = rules.iter().map(|r| r.table).chain(routes.iter().map(|r| r.table)).collect();
        Ok(FreeTables { taken, next: FIRST_TABLE })
    }

    /// The first free table after the last one handed out.
    fn next(&mut self) -> u32 {
        while self.taken.contains(&self.next) {
            self.next += 1;
        }
        self.next += 1;
        self.next - 1
    }
}

/// DEL: the rules whose source is an address of the interface (of `table`
/// only, when configured), as the reference finds them; then the routes
/// through the interface in the tables those rules named, unless another
/// rule still uses the table. Once the interface is gone its routes are
/// too, and prevResult's addresses find the rules left over. Keeps going
/// past errors and reports them all.
fn del<N: NetStack>(args: &CmdArgs, table: Option<u32>, ctr: &mut N) -> Result<()> {
    let ifname = &args.ifname;
    let link = match ctr.link_by_name(ifname) {
        Ok(l) => Some(l),
        Err(e) if e.not_found() => None,
        Err(e) => return Err(link_error(&format!("finding {ifname}"), e)),
    };
    let addrs: Vec<IpAddr> = match &link {
        Some(l) => {
            let a = ctr.addrs(Some(l.index), Family::Any).map_err(|e| link_error("listing addresses", e))?;
            a.into_iter().map(|a| a.addr).collect()
        }
        None => args
            .conf
            .prev_result
            .as_ref()
            .and_then(|p| config::source_ips(p, ifname).ok())
            .unwrap_or_default()
            .iter()
            .map(|ip| ip.address.addr)
            .collect(),
    };
    let rules = ctr.rules(Family::Any).map_err(|e| link_error("listing the routing rules", e))?;
    let ours =
        |r: &&Rule| table.is_none_or(|t| r.table == t) && r.src.is_some_and(|s| addrs.contains(&s.addr));
    let mut errors = Errors::new();
    let mut emptied = BTreeSet::new();
    for rule in rules.iter().filter(ours) {
        match ctr.del_rule(rule) {
            Err(e) if !e.not_found() => errors.note::<()>(Err(link_error(
                &format!(
                    "deleting the rule from {} lookup {}",
                    rule.src.map_or(String::new(), |s| s.to_string()),
                    rule.table
                ),
                e,
            ))),
            _ => {
                emptied.insert(rule.table);
            }
        }
    }
    if let (None, Some(link)) = (table, &link) {
        let still_used: BTreeSet<u32> = rules.iter().filter(|r| !ours(r)).map(|r| r.table).collect();
        for t in emptied.into_iter().filter(|t| *t >= FIRST_TABLE && !still_used.contains(t)) {
            errors.note(flush_table(ctr, t, link));
        }
    }
    errors.into_result()
}

/// Delete the routes through `link` in table `t`.
fn flush_table<N: NetStack>(ctr: &mut N, t: u32, link: &Link) -> Result<()> {
    let routes = ctr.routes(Family::Any, t).map_err(|e| link_error(&format!("listing table {t}"), e))?;
    for r in routes.iter().filter(|r| r.oif == Some(link.index)) {
        match ctr.del_route(r) {
            Err(e) if !e.not_found() => {
                return Err(link_error(
                    &format!("deleting the route to {}/{} from table {t}", r.dst, r.prefix),
                    e,
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// CHECK: each address has its rule (to the configured table, or to one
/// holding a route through the interface). The reference checks nothing.
fn check<N: NetStack>(args: &CmdArgs, conf: &Conf, ips: &[IpConfig], ctr: &mut N) -> Result<()> {
    let ifname = &args.ifname;
    let link = ctr.link_by_name(ifname).map_err(|e| link_error(&format!("finding {ifname}"), e))?;
    let rules = ctr.rules(Family::Any).map_err(|e| link_error("listing the routing rules", e))?;
    for ip in ips {
        let addr = ip.address.addr;
        let to = |r: &&Rule| r.src == Some(IpNet::host(addr)) && conf.table.is_none_or(|t| r.table == t);
        let Some(rule) = rules.iter().find(to) else {
            let table = conf.table.map_or(String::new(), |t| format!(" lookup {t}"));
            return Err(CniError::internal(format!("the rule from {addr}{table} is missing")));
        };
        if conf.table.is_none() {
            let t = rule.table;
            let routes =
                ctr.routes(Family::Any, t).map_err(|e| link_error(&format!("listing table {t}"), e))?;
            if !routes.iter().any(|r| r.oif == Some(link.index)) {
                return Err(CniError::internal(format!(
                    "table {t}, where the rule from {addr} leads, has no route through {ifname}"
                )));
            }
        }
    }
    Ok(())
}

common::plugin_main!(Sbr);
