#![cfg_attr(not(test), no_main)]
//! ipvlan: the container gets an ipvlan device on a master interface. It
//! shares the master's MAC; the master tells its ipvlans apart by IP address
//! (l2: also answering ARP for them; l3/l3s: routing in the master's netns).
//!
//! The device is created under a random temporary name directly inside the
//! container netns and renamed to `CNI_IFNAME` there. Chained after a plugin
//! that named the master and the addresses (prevResult), it needs no IPAM.
//! ADD either completes or undoes everything it made; DEL succeeds even when
//! the netns is gone.

mod config;
#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::links::{self, link_error};
use common::net::NetStack;
use common::netlink::rtnl::{IpvlanFlags, Link, LinkKind, NewLink, Rtnl};
use common::netlink::NlError;
use common::netns::Netns;
use common::on_master;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::undo::Undo;
use common::{CniError, Errors, Result};

use config::Config;

struct Ipvlan;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Ipvlan {
    fn about(&self) -> String {
        format!("CNI ipvlan plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let ns = Netns::open_container(&args.netns)?;
        add(args, &conf, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let mut errors = Errors::new();
        let mut ctr = common::net::container_for_del(&args.netns, &mut errors)?;
        errors.note(on_master::del(args, ctr.as_mut(), &mut ipam::Exec));
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
            conf.configured_master(&mut Rtnl::open()?).map_err(|e| CniError::not_available(e.msg))?;
        }
        ipam::status_if_configured(args)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        ipam::gc_if_configured(args)
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
    let master = if conf.link_in_container {
        conf.master_for_add(args, ctr)?
    } else {
        conf.master_for_add(args, host)?
    };
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
    // 1. The device, born inside the container under a temporary name, then named.
    let new = NewLink {
        parent: Some(master.index),
        mtu: (conf.mtu > 0).then_some(conf.mtu),
        ..NewLink::new("", LinkKind::Ipvlan { mode: conf.mode, flags: IpvlanFlags::Bridge })
    };
    let refused = |e: NlError| {
        let mut err =
            link_error(&format!("creating an {} ipvlan on {:?}", conf.mode.name(), master.name), e.clone());
        if e.is(libc::EBUSY) {
            err.msg += " (a bridge port, or a master of macvlans, cannot carry ipvlans)";
        }
        err
    };
    let link = on_master::create(args, "ipv", new, conf.link_in_container, host, ctr, undo, refused)?;

    // 2. Addresses: from IPAM; chained without one, prevResult's (the reference's rule).
    let res = match (&args.conf.prev_result, args.conf.ipam_type()) {
        (Some(prev), None) => prev.clone(),
        _ => ipam::allocate(ipam, args, undo)?,
    };
    // 3. The container side and the result: its one interface, with the master's MAC.
    on_master::finish(args, ctr, &link, res)
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
    let link = on_master::check_link(args, ctr, "ipvlan", conf.mtu)?;
    if link.ipvlan_mode != Some(conf.mode) {
        let have = link.ipvlan_mode.map_or("unknown", |m| m.name());
        return Err(CniError::internal(format!(
            "{} has ipvlan mode {have}, the config says {} (a master's ipvlans share one mode: \
             the last one made on it sets it for all)",
            args.ifname,
            conf.mode.name()
        )));
    }
    let master =
        if conf.link_in_container { conf.configured_master(ctr)? } else { conf.configured_master(host)? };
    match master {
        Some(master) => on_master::check_parent(&link, &master, conf.link_in_container),
        // Chained, the master was prevResult's: the kernel keeps an ipvlan
        // only while its master exists.
        None => Ok(()),
    }
}

common::plugin_main!(Ipvlan);
