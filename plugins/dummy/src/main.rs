#![cfg_attr(not(test), no_main)]
//! dummy: the container gets a dummy device holding IPAM's addresses: a
//! link that transmits nothing, like `lo`, but with any address, so that a
//! service can own an address of its own beside the container's real
//! interfaces (which another plugin gives it).
//!
//! The device is made directly inside the container netns under
//! `CNI_IFNAME`. ADD either completes or undoes everything it made; DEL
//! succeeds even when the netns is gone.

#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::links::{self, link_error};
use common::net::NetStack;
use common::netlink::rtnl::{LinkKind, NewLink, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface};
use common::undo::{Side, Undo};
use common::{ifconfig, CniError, Errors, Result};

struct Dummy;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Dummy {
    fn about(&self) -> String {
        format!("CNI dummy plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        ipam_plugin(args)?;
        let ns = Netns::open_container(&args.netns)?;
        add(args, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let mut errors = Errors::new();
        let mut ctr = common::net::container_for_del(&args.netns, &mut errors)?;
        errors.note(del(args, ctr.as_mut(), &mut ipam::Exec));
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        ipam_plugin(args)?;
        let ns = Netns::open_container(&args.netns)?;
        check(args, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        ipam::status(ipam_plugin(args)?, args)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        ipam::gc_if_configured(args)
    }
}

/// The IPAM plugin: a dummy without addresses would be useless (code 7).
fn ipam_plugin(args: &CmdArgs) -> Result<&str> {
    args.conf
        .ipam_type()
        .ok_or_else(|| CniError::invalid_config("dummy interface requires an IPAM configuration"))
}

/// ADD: the name is checked before anything is made; a failure after that
/// takes back what was made. `host` is only where the undo log may act.
fn add<N: NetStack>(args: &CmdArgs, host: &mut N, ctr: &mut N, ipam: &mut impl Ipam) -> Result<CniResult> {
    links::literal_ifname(&args.ifname)?;
    links::ensure_name_free(ctr, &args.ifname)?;
    let mut undo = Undo::new(args);
    let res = add_attachment(args, ctr, ipam, &mut undo);
    if res.is_err() {
        undo.run(host, ctr, ipam);
    }
    res
}

/// The ADD story. Every step that makes something registers its undo.
fn add_attachment<'a, N: NetStack>(
    args: &'a CmdArgs,
    ctr: &mut N,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    // 1. The device, born inside the container under its own name.
    match ctr.add_link(&NewLink::new(&args.ifname, LinkKind::Dummy)) {
        Ok(()) => undo.delete_link(Side::Container, &args.ifname),
        Err(e) if e.is(libc::EEXIST) => return Err(links::name_taken(&args.ifname)),
        Err(e) if e.is(libc::EOPNOTSUPP) => {
            return Err(link_error(
                "creating the dummy (this kernel has no dummy link type: module dummy)",
                e,
            ))
        }
        Err(e) => return Err(link_error("creating the dummy", e)),
    }

    // 2. Addresses, link up, routes.
    let mut res = ipam::allocate(ipam, args, undo)?;
    let link = ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, false)?;

    // 3. The result: the one container interface, every IP on it.
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

/// DEL: with the netns gone the dummy went with it, and only the lease is
/// left to release.
fn del<N: NetStack>(args: &CmdArgs, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    let mut errors = Errors::new();
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    if let Some(ctr) = ctr {
        errors.note(links::delete_if_exists(ctr, &args.ifname));
    }
    errors.into_result()
}

/// CHECK: the lease, then the dummy against prevResult.
fn check<N: NetStack>(args: &CmdArgs, ctr: &mut N, ipam: &mut impl Ipam) -> Result<()> {
    ipam.check(ipam_plugin(args)?, args)?;
    let prev = args
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("dummy CHECK needs prevResult"))?;
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
    let link = ifconfig::verify(ctr, &args.ifname, &prev.ips_of(&args.ifname), &prev.routes)?;
    let drift = |what: String| Err(CniError::internal(format!("{} {what}", args.ifname)));
    if link.kind.as_deref() != Some("dummy") {
        return drift("is not a dummy".into());
    }
    if !link.is_up() {
        return drift("is down".into());
    }
    if !iface.mac.is_empty() && link.mac_string() != iface.mac.to_lowercase() {
        return drift(format!("has MAC {}, prevResult says {}", link.mac_string(), iface.mac));
    }
    Ok(())
}

common::plugin_main!(Dummy);
