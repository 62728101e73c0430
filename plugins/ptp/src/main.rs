#![cfg_attr(not(test), no_main)]
//! ptp: each container gets a veth pair whose host end is not plugged into
//! anything: the host routes the container's addresses to it and answers as
//! the container's gateway on it (see `routes` for the addresses and routes
//! of both ends). Containers reach each other, and the world, through the
//! host's routing table; `ipMasq` masquerades what leaves their subnet.
//!
//! ADD either completes or undoes everything it made; DEL removes every
//! host-side trace even when the container's netns is gone or not given.

mod config;
mod routes;
#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::ipnet::{max_prefix, IpNet};
use common::links::{self, link_error};
use common::masq::Masquerade;
use common::net::NetStack;
use common::netlink::rtnl::{Family, Link, Rtnl};
use common::netns::Netns;
use common::nft::tag;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface};
use common::undo::{Side, Undo};
use common::{ifconfig, veth, CniError, Errors, Result};

use config::Config;

/// Masquerade (`ipMasq`) lives in `table inet cnirs_ptp`.
const MASQ: Masquerade = Masquerade::new("cnirs_ptp");

/// The host veth's alias names its attachment, so that DEL without the
/// container's netns, and GC, find it: `cni-rs ptp <net>/<cid>/<ifname>`.
const ALIAS_PREFIX: &str = "cni-rs ptp ";

struct Ptp;

impl Plugin for Ptp {
    fn about(&self) -> String {
        format!("CNI ptp plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        // Validate the container netns before anything is created.
        let ns = Netns::open_container(&args.netns)?;
        add(args, &conf, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let mut errors = Errors::new();
        let mut ctr = common::net::container_for_del(&args.netns, &mut errors)?;
        errors.note(del(args, &mut Rtnl::open()?, ctr.as_mut(), &mut ipam::Exec));
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // A bad CNI_NETNS is the first thing to report, before any state.
        let ns = Netns::open_container(&args.netns)?;
        check(args, &conf, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        Config::load(args)?;
        ipam::status_if_configured(args)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let mut errors = Errors::new();
        errors.note(gc(args, &mut Rtnl::open()?));
        if let Some(plugin) = args.conf.ipam_type() {
            errors.note(ipam::gc(plugin, args));
        }
        errors.into_result()
    }
}

/// ADD: nothing is made for a container that already has the interface; a
/// failure later takes back what was made.
fn add<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<CniResult> {
    links::ensure_name_free(ctr, &args.ifname)?;
    let mut undo = Undo::new(args);
    let res = add_attachment(args, conf, host, ctr, ipam, &mut undo);
    if res.is_err() {
        undo.run(host, ctr, ipam);
    }
    res
}

/// The ADD story. Every step that makes something registers its undo; the
/// host end, with its addresses and routes, goes with the container end.
fn add_attachment<'a, N: NetStack>(
    args: &'a CmdArgs,
    conf: &Config,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    // 1. The veth pair, its host end named after its attachment, and up.
    let mtu = (conf.mtu > 0).then_some(conf.mtu);
    let host_name = veth::create_for_container(ctr, host, &args.ifname, mtu, None)?;
    undo.delete_link(Side::Container, &args.ifname);
    let host_veth = host.link_by_name(&host_name).map_err(|e| link_error("host veth", e))?;
    host.set_alias(host_veth.index, &alias(args))
        .map_err(|e| link_error(&format!("naming the owner of {host_name}"), e))?;
    routes::host_end_up(host, &host_veth)?;

    // 2. Addresses, once the interface exists; each needs a gateway, every
    //    route goes through one.
    let mut res = ipam::allocate(ipam, args, undo)?;
    for ip in &res.ips {
        routes::gateway(ip)?;
    }
    routes::check_routes(&res.ips, &res.routes)?;
    let v6 = res.ips.iter().any(|ip| !ip.address.is_ipv4());
    ifconfig::enable_forwarding(host, &host_veth, res.ips.iter().any(|ip| ip.address.is_ipv4()), v6)?;

    // 3. Both ends: the container's routes through the gateway (its end
    //    coming up brings the pair's carrier), the host's to the container.
    let clink = routes::configure_container(ctr, &args.ifname, &res.ips, &res.routes)?;
    routes::configure_host(host, &host_veth, &res.ips)?;

    // 4. Masquerade.
    if conf.ip_masq {
        undo.push("remove the masquerade", |host, _| {
            MASQ.del(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname)
        });
        let nets: Vec<IpNet> = res.ips.iter().map(|ip| ip.address).collect();
        MASQ.add(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname, &nets)?;
    }

    // 5. Not before both ends pass packets (the link watch runs after the
    //    carrier came on), or the container's first ones are lost.
    let host_veth = veth::wait_oper_up(host, host_veth.index)?;
    let clink = veth::wait_oper_up(ctr, clink.index)?;
    if v6 {
        routes::await_link_local(host, &host_veth)?;
    }

    // 6. The result: host end, container end; every IP on the container end.
    res.interfaces = vec![
        Interface { name: host_veth.name.clone(), mac: host_veth.mac_string(), ..Default::default() },
        Interface {
            name: clink.name.clone(),
            mac: clink.mac_string(),
            sandbox: args.netns.clone(),
            ..Default::default()
        },
    ];
    for ip in &mut res.ips {
        ip.interface = Some(1);
    }
    if let Some(dns) = args.conf.dns.as_ref().filter(|d| !d.is_empty()) {
        res.dns = dns.clone();
    }
    Ok(res)
}

/// DEL: the container end takes the host end, its addresses and routes
/// along; without the netns the host end is found by its alias. Masquerade
/// is found by its tag, whatever the config says now.
fn del<N: NetStack>(args: &CmdArgs, host: &mut N, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    let mut errors = Errors::new();
    // IPAM first, as the reference does: dhcp sends its DHCPRELEASE through
    // the container's interface, which must still be there.
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    match ctr {
        Some(ctr) => errors.note(links::delete_if_exists(ctr, &args.ifname)),
        None => errors.note(delete_host_veths(host, |a| a == alias(args))),
    }
    let (name, id, ifname) = (&args.conf.name, &args.container_id, &args.ifname);
    errors.note(host.nft().map_err(Into::into).and_then(|mut nft| MASQ.del(&mut nft, name, id, ifname)));
    errors.into_result()
}

/// CHECK: the lease; the container end as prevResult has it; the host end
/// with the gateways and the routes to the container; the masquerade.
fn check<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<()> {
    if let Some(plugin) = args.conf.ipam_type() {
        ipam.check(plugin, args)?;
    }
    let prev = args
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("ptp CHECK needs prevResult"))?;
    let iface = prev.interfaces.iter().find(|i| i.name == args.ifname && i.sandbox == args.netns);
    let iface = iface.ok_or_else(|| {
        CniError::internal(format!("prevResult has no interface {:?} in netns {:?}", args.ifname, args.netns))
    })?;
    let ips = prev.ips_of(&args.ifname);
    let link = ifconfig::verify(ctr, &args.ifname, &ips, &prev.routes)?;
    if link.kind.as_deref() != Some("veth") {
        return Err(CniError::internal(format!("{} is not a veth", args.ifname)));
    }
    if !iface.mac.is_empty() && link.mac_string() != iface.mac.to_lowercase() {
        return Err(CniError::internal(format!(
            "{} has MAC {}, prevResult says {}",
            args.ifname,
            link.mac_string(),
            iface.mac
        )));
    }
    if conf.mtu > 0 && link.mtu != conf.mtu {
        return Err(CniError::internal(format!(
            "{} has MTU {}, the config says {}",
            args.ifname, link.mtu, conf.mtu
        )));
    }
    let host_veth = host_end(host, &link, &args.ifname)?;
    check_host_end(host, &host_veth, &ips)?;
    if conf.ip_masq {
        let nets: Vec<IpNet> = ips.iter().map(|ip| ip.address).collect();
        MASQ.check(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname, &nets)?;
    }
    Ok(())
}

/// The container end's peer in the host netns.
fn host_end<N: NetStack>(host: &mut N, ctr_link: &Link, ifname: &str) -> Result<Link> {
    let missing = || CniError::internal(format!("the host end of {ifname} is missing"));
    let peer = ctr_link.link.ok_or_else(missing)?;
    let l = host.link_by_index(peer).map_err(|_| missing())?;
    if l.kind.as_deref() != Some("veth") || l.link != Some(ctr_link.index) {
        return Err(missing());
    }
    Ok(l)
}

/// The host end holds each gateway, and the host routes each container
/// address through it.
fn check_host_end<N: NetStack>(host: &mut N, veth: &Link, ips: &[&common::spec::IpConfig]) -> Result<()> {
    let addrs = host.addrs(Some(veth.index), Family::Any)?;
    let routes = host.routes(Family::Any, libc::RT_TABLE_MAIN as u32)?;
    for ip in ips {
        let gw = routes::gateway(ip)?;
        if !addrs.iter().any(|a| a.addr == gw && a.prefix == max_prefix(&gw)) {
            return Err(CniError::internal(format!("the host veth {} lacks the gateway {gw}", veth.name)));
        }
        let to_ctr = |r: &&common::netlink::rtnl::Route| {
            r.dst == ip.address.addr && r.prefix == max_prefix(&r.dst) && r.oif == Some(veth.index)
        };
        if !routes.iter().any(|r| to_ctr(&r)) {
            return Err(CniError::internal(format!(
                "the host has no route to {} through {}",
                ip.address.addr, veth.name
            )));
        }
    }
    Ok(())
}

/// GC: masquerade and host veths of this network's attachments that are
/// not in the valid list (the reference has no GC).
fn gc<N: NetStack>(args: &CmdArgs, host: &mut N) -> Result<()> {
    let valid = args.conf.valid_attachments()?;
    let network = &args.conf.name;
    let mut errors = Errors::new();
    errors.note(host.nft().map_err(Into::into).and_then(|mut nft| MASQ.gc(&mut nft, network, &valid)));
    let keep: Vec<String> = valid
        .iter()
        .map(|a| format!("{ALIAS_PREFIX}{}", tag::of(network, &a.container_id, &a.ifname)))
        .collect();
    let ours = format!("{ALIAS_PREFIX}{}/", tag::network(network));
    errors.note(delete_host_veths(host, |a| a.starts_with(&ours) && !keep.iter().any(|k| k == a)));
    errors.into_result()
}

/// Delete the host veths whose alias `doomed` picks (their peers and routes go along).
fn delete_host_veths<N: NetStack>(host: &mut N, doomed: impl Fn(&str) -> bool) -> Result<()> {
    let mut errors = Errors::new();
    for l in host.links().map_err(|e| link_error("listing links", e))? {
        let picked = l.alias.as_deref().is_some_and(&doomed);
        if l.kind.as_deref() == Some("veth") && picked {
            match host.del_link(l.index) {
                Err(e) if !e.not_found() => {
                    errors.note::<()>(Err(link_error(&format!("deleting {}", l.name), e)))
                }
                _ => {}
            }
        }
    }
    errors.into_result()
}

fn alias(args: &CmdArgs) -> String {
    format!("{ALIAS_PREFIX}{}", tag::of(&args.conf.name, &args.container_id, &args.ifname))
}

common::plugin_main!(Ptp);
