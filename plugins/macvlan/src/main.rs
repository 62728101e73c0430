#![cfg_attr(not(test), no_main)]
//! macvlan: the container gets a macvlan device on a master interface, so it
//! appears on the master's network as its own host with its own MAC.
//!
//! The device is created under a random temporary name directly inside the
//! container netns and renamed to `CNI_IFNAME` there. ADD either completes or
//! undoes everything it made; DEL succeeds even when the netns is gone.

#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::links::{self, link_error};
use common::net::NetStack;
use common::netlink::rtnl::{Link, LinkKind, MacvlanMode, NewLink, Rtnl};
use common::netlink::NlError;
use common::netns::Netns;
use common::on_master;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::undo::Undo;
use common::{CniError, Errors, Result};

use macvlan::config::Config;

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
    // 1. The device, born inside the container under a temporary name, then named.
    let bc_queue_len = (conf.bc_queue_len > 0).then_some(conf.bc_queue_len);
    let new = NewLink {
        parent: Some(master.index),
        mtu: (conf.mtu > 0).then_some(conf.mtu),
        mac: conf.mac,
        ..NewLink::new("", LinkKind::Macvlan { mode: conf.mode, bc_queue_len })
    };
    let refused = |e: NlError| {
        let mode_name = format!("{:?}", conf.mode).to_lowercase();
        let mut err = link_error(&format!("creating a {mode_name} macvlan on {:?}", master.name), e.clone());
        if e.is(libc::EINVAL) && conf.mode == MacvlanMode::Passthru {
            err.msg += " (a passthru macvlan must be its master's only macvlan)";
        }
        err
    };
    let link = on_master::create(args, "mv", new, conf.link_in_container, host, ctr, undo, refused)?;
    // 2. Addresses, then the container side and the result.
    let res = ipam::allocate(ipam, args, undo)?;
    on_master::finish(args, ctr, &link, res)
}

/// DEL: the lease, then the link (see `on_master::del`).
fn del<N: NetStack>(args: &CmdArgs, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    on_master::del(args, ctr, ipam)
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
    let link = on_master::check_link(args, ctr, "macvlan", conf.mtu)?;
    if link.macvlan_mode != Some(conf.mode) {
        return Err(CniError::internal(format!(
            "{} has macvlan mode {:?}, the config says {:?}",
            args.ifname, link.macvlan_mode, conf.mode
        )));
    }
    let master =
        if conf.link_in_container { conf.master_link(ctr, false)? } else { conf.master_link(host, false)? };
    on_master::check_parent(&link, &master, conf.link_in_container)
}

common::plugin_main!(Macvlan);
