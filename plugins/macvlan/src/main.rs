#![cfg_attr(not(test), no_main)]
//! macvlan: the container gets a macvlan device on a master interface, so it
//! appears on the master's network as its own host with its own MAC.
//!
//! The device is created under a random temporary name directly inside the
//! container netns and renamed to `CNI_IFNAME` there. ADD either completes or
//! undoes everything it made; DEL succeeds even when the netns is gone.

mod config;
#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::links::{self, link_error};
use common::net::NetStack;
use common::netlink::rtnl::{Link, LinkKind, MacvlanMode, NewLink, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface};
use common::undo::{Side, Undo};
use common::{ifconfig, CniError, Errors, Result};

use config::Config;

struct Macvlan;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Macvlan {
    fn about(&self) -> String {
        format!("CNI macvlan plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    /// The reference loads CNI_ARGS into `MacEnvArgs{MAC}`: other keys need IgnoreUnknown.
    fn known_args(&self) -> &'static [&'static str] {
        &["MAC"]
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let ns = Netns::open_container(&args.netns)?;
        add(args, &conf, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let mut errors = Errors::new();
        let mut ctr = common::net::container_for_del(&args.netns, &mut errors)?;
        errors.note(del(args, ctr.as_mut(), &mut ipam::Exec));
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // A bad CNI_NETNS is the first thing to report, before any state.
        let ns = Netns::open_container(&args.netns)?;
        check(args, &conf, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // With linkInContainer there is no container to look into.
        if !conf.link_in_container {
            conf.master_link(&mut Rtnl::open()?, false).map_err(|e| CniError::not_available(e.msg))?;
        }
        match args.conf.ipam_type() {
            Some(plugin) => ipam::status(plugin, args),
            None => Ok(()),
        }
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        match args.conf.ipam_type() {
            Some(plugin) => ipam::gc(plugin, args),
            None => Ok(()),
        }
    }
}

/// ADD: master, MTU and the name are checked before anything is made; a
/// failure after that takes back what was made.
fn add<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<CniResult> {
    links::ensure_name_free(ctr, &args.ifname)?;
    let master =
        if conf.link_in_container { conf.master_link(ctr, true)? } else { conf.master_link(host, true)? };
    let mut undo = Undo::new(args);
    let res = add_attachment(args, conf, &master, host, ctr, ipam, &mut undo);
    if res.is_err() {
        undo.run(host, ctr, ipam);
    }
    res
}

/// The ADD story. Every step that makes something registers its undo.
fn add_attachment<'a, N: NetStack>(
    args: &'a CmdArgs,
    conf: &Config,
    master: &Link,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    // 1. The device, born inside the container under a temporary name.
    let tmp = links::temp_name(ctr, "mv")?;
    let bc_queue_len = (conf.bc_queue_len > 0).then_some(conf.bc_queue_len);
    let mut new = NewLink {
        parent: Some(master.index),
        mtu: (conf.mtu > 0).then_some(conf.mtu),
        mac: conf.mac,
        ..NewLink::new(&tmp, LinkKind::Macvlan { mode: conf.mode, bc_queue_len })
    };
    if conf.link_in_container {
        create_macvlan(ctr, &new, master, conf.mode)?;
    } else {
        new.netns_fd = Some(ctr.netns_fd().map_err(|e| link_error("opening the container netns", e))?);
        create_macvlan(host, &new, master, conf.mode)?;
    }
    undo.delete_link(Side::Container, &tmp);
    let link = ctr.link_by_name(&tmp).map_err(|e| link_error("the new macvlan", e))?;

    // 2. Announce address changes from the start, then take the real name.
    ifconfig::announce_changes(ctr, &tmp)?;
    match ctr.rename(link.index, &args.ifname) {
        Ok(()) => undo.link_renamed(Side::Container, &tmp, &args.ifname),
        Err(e) if e.is(libc::EEXIST) => return Err(links::name_taken(&args.ifname)),
        Err(e) => return Err(link_error(&format!("renaming {tmp} to {}", args.ifname), e)),
    }

    // 3. Addresses.
    let mut res = ipam::allocate(ipam, args, undo)?;

    // 4. The container side: addresses, then link up (with arp_notify/ndisc_notify
    //    set the kernel announces them to the LAN as the link comes up), routes.
    let link = if res.ips.is_empty() {
        ctr.set_up(link.index).map_err(|e| link_error("setting the macvlan up", e))?;
        ctr.link_by_index(link.index).map_err(|e| link_error("the macvlan", e))?
    } else {
        ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, true)?
    };
    // 5. The result: the one container interface, every IP on it.
    res.interfaces = vec![Interface {
        name: link.name.clone(),
        mac: link.mac_string(),
        sandbox: args.netns.clone(),
        ..Default::default()
    }];
    for ip in &mut res.ips {
        ip.interface = Some(0);
    }
    if let Some(dns) = args.conf.dns.as_ref().filter(|d| !d.is_empty()) {
        res.dns = dns.clone();
    }
    Ok(res)
}

/// Create the macvlan through `nl` (which sees the master).
fn create_macvlan(nl: &mut impl NetStack, new: &NewLink, master: &Link, mode: MacvlanMode) -> Result<()> {
    nl.add_link(new).map_err(|e| {
        let mode_name = format!("{mode:?}").to_lowercase();
        let mut err = link_error(&format!("creating a {mode_name} macvlan on {:?}", master.name), e.clone());
        if e.is(libc::EINVAL) && mode == MacvlanMode::Passthru {
            err.msg += " (a passthru macvlan must be its master's only macvlan)";
        }
        err
    })
}

/// DEL: no master lookup here, it may be gone; with the netns gone the
/// macvlan went with it, and only the lease is left to release.
fn del<N: NetStack>(args: &CmdArgs, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    let mut errors = Errors::new();
    // IPAM first, as the reference does: dhcp sends its DHCPRELEASE through
    // the container's interface, which must still be there.
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    if let Some(ctr) = ctr {
        errors.note(links::delete_if_exists(ctr, &args.ifname));
    }
    errors.into_result()
}

/// CHECK: the lease, then the container interface against prevResult and
/// the config.
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
        .ok_or_else(|| CniError::invalid_config("macvlan CHECK needs prevResult"))?;
    let iface =
        prev.interfaces.iter().find(|i| i.name == args.ifname && !i.sandbox.is_empty()).ok_or_else(|| {
            CniError::internal(format!("prevResult has no container interface {:?}", args.ifname))
        })?;
    if iface.sandbox != args.netns {
        return Err(CniError::internal(format!(
            "interface {} is in netns {:?}, not {:?}",
            args.ifname, iface.sandbox, args.netns
        )));
    }
    let ips = prev.ips_of(&args.ifname);
    let link = ifconfig::verify(ctr, &args.ifname, &ips, &prev.routes)?;
    if link.kind.as_deref() != Some("macvlan") {
        return Err(CniError::internal(format!("{} is not a macvlan", args.ifname)));
    }
    if link.macvlan_mode != Some(conf.mode) {
        return Err(CniError::internal(format!(
            "{} has macvlan mode {:?}, the config says {:?}",
            args.ifname, link.macvlan_mode, conf.mode
        )));
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
    // The parent: in the container it must be the master itself; from the
    // host it must be the master's index in another netns.
    let master =
        if conf.link_in_container { conf.master_link(ctr, false)? } else { conf.master_link(host, false)? };
    let parent_ok =
        link.link == Some(master.index) && (conf.link_in_container != link.link_netnsid.is_some());
    if !parent_ok {
        return Err(CniError::internal(format!(
            "{} is not a macvlan of master {:?}",
            args.ifname, master.name
        )));
    }
    Ok(())
}

common::plugin_main!(Macvlan);
