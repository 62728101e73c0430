#![cfg_attr(not(test), no_main)]
//! tap: the container gets a persistent tap device, an Ethernet link whose
//! other end is a file descriptor, for a VM or a userspace network stack in
//! the container to attach to; optionally a port of a bridge in the
//! container, with IPAM's addresses.
//!
//! The tap is made directly inside the container netns under `CNI_IFNAME`
//! (`/dev/net/tun` opened there: `common::tap`). ADD either completes or
//! undoes everything it made; DEL succeeds even when the netns is gone.

mod config;
#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::links::{self, link_error};
use common::net::NetStack;
use common::netlink::rtnl::{Link, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface};
use common::tap::{NewTap, TUN_DEVICE};
use common::undo::{Side, Undo};
use common::{ifconfig, CniError, Errors, Result};

use config::Config;

struct Tap;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Tap {
    fn about(&self) -> String {
        format!("CNI tap plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn known_args(&self) -> &'static [&'static str] {
        &["MAC"]
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        if let Some(context) = &conf.selinux_context {
            if !common::tap::selinux_enabled() {
                return Err(CniError::invalid_config(format!(
                    "selinuxContext {} needs SELinux, which is not enabled on this host \
                     (no selinuxfs at /sys/fs/selinux)",
                    common::error::shown(context)
                )));
            }
        }
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
        let ns = Netns::open_container(&args.netns)?;
        check(args, &conf, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        Config::load(args)?;
        if !std::path::Path::new(TUN_DEVICE).exists() {
            return Err(CniError::not_available(format!(
                "tap devices are made through {TUN_DEVICE}, which this host lacks (kernel module tun)"
            )));
        }
        ipam::status_if_configured(args)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        ipam::gc_if_configured(args)
    }
}

/// ADD: the name and the bridge are checked before anything is made; a
/// failure after that takes back what was made. `host` is only where the
/// undo log may act; a tap touches nothing there.
fn add<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<CniResult> {
    links::literal_ifname(&args.ifname)?;
    links::ensure_name_free(ctr, &args.ifname)?;
    let bridge = match &conf.bridge {
        Some(name) => Some(bridge_link(ctr, name)?),
        None => None,
    };
    let mut undo = Undo::new(args);
    let res = add_attachment(args, conf, bridge.as_ref(), ctr, ipam, &mut undo);
    if res.is_err() {
        undo.run(host, ctr, ipam);
    }
    res
}

/// The ADD story. Every step that makes something registers its undo.
fn add_attachment<'a, N: NetStack>(
    args: &'a CmdArgs,
    conf: &Config,
    bridge: Option<&Link>,
    ctr: &mut N,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    // 1. The tap, born inside the container under its own name.
    let new = NewTap {
        name: args.ifname.clone(),
        multi_queue: conf.multi_queue,
        owner: conf.owner,
        group: conf.group,
        selinux_context: conf.selinux_context.clone(),
    };
    match ctr.add_tap(&new) {
        Ok(()) => undo.delete_link(Side::Container, &args.ifname),
        // Another link took the name since we looked.
        Err(e) if e.is(libc::EBUSY) => return Err(links::name_taken(&args.ifname)),
        Err(e) => return Err(link_error("creating the tap", e)),
    }
    let tap = ctr.link_by_name(&args.ifname).map_err(|e| link_error("the new tap", e))?;

    // 2. Its settings, and its bridge.
    if let Some(mtu) = conf.mtu {
        ctr.set_mtu(tap.index, mtu).map_err(|e| link_error(&format!("setting the tap's MTU to {mtu}"), e))?;
    }
    if let Some(mac) = conf.mac {
        ctr.set_mac(tap.index, mac).map_err(|e| link_error("setting the tap's MAC", e))?;
    }
    if let Some(br) = bridge {
        ctr.set_master(tap.index, br.index)
            .map_err(|e| link_error(&format!("adding the tap to bridge {:?}", br.name), e))?;
    }

    // 3. Addresses.
    let mut res = ipam::allocate(ipam, args, undo)?;

    // 4. Addresses, link up, routes. Without DAD: a tap has no carrier until
    //    something attaches, and its IPv6 addresses would stay tentative.
    let tap = if res.ips.is_empty() {
        ctr.set_up(tap.index).map_err(|e| link_error("setting the tap up", e))?;
        ctr.link_by_index(tap.index).map_err(|e| link_error("the tap", e))?
    } else {
        ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, false)?
    };

    // 5. The result: the one container interface, every IP on it.
    res.interfaces = vec![Interface {
        name: tap.name.clone(),
        mac: tap.mac_string(),
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

/// The configured bridge in the container (code 7 when it is missing or
/// not a bridge).
fn bridge_link(ctr: &mut impl NetStack, name: &str) -> Result<Link> {
    let link = ctr.link_by_name(name).map_err(|e| {
        let why = if e.not_found() { "no such interface".to_string() } else { e.to_string() };
        CniError::invalid_config(format!("bridge {name:?} in the container netns: {why}"))
    })?;
    if link.kind.as_deref() != Some("bridge") {
        return Err(CniError::invalid_config(format!("{name:?} in the container netns is not a bridge")));
    }
    Ok(link)
}

/// DEL: with the netns gone the tap went with it, and only the lease is
/// left to release.
fn del<N: NetStack>(args: &CmdArgs, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    let mut errors = Errors::new();
    // IPAM first, as the reference does: dhcp releases through the interface.
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    if let Some(ctr) = ctr {
        errors.note(links::delete_if_exists(ctr, &args.ifname));
    }
    errors.into_result()
}

/// CHECK: the lease, then the tap against prevResult and the config.
fn check<N: NetStack>(args: &CmdArgs, conf: &Config, ctr: &mut N, ipam: &mut impl Ipam) -> Result<()> {
    if let Some(plugin) = args.conf.ipam_type() {
        ipam.check(plugin, args)?;
    }
    let prev = args
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config("tap CHECK needs prevResult"))?;
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
    let Some(tun) = link.tun.filter(|t| t.tap) else { return drift("is not a tap".into()) };
    if tun.multi_queue != conf.multi_queue {
        return drift(format!("has multi_queue {}, the config says {}", tun.multi_queue, conf.multi_queue));
    }
    if (tun.owner, tun.group) != (conf.owner, conf.group) {
        return drift(format!(
            "has owner {:?} and group {:?}, the config says {:?} and {:?}",
            tun.owner, tun.group, conf.owner, conf.group
        ));
    }
    if !link.is_up() {
        return drift("is down".into());
    }
    if !iface.mac.is_empty() && link.mac_string() != iface.mac.to_lowercase() {
        return drift(format!("has MAC {}, prevResult says {}", link.mac_string(), iface.mac));
    }
    if conf.mtu.is_some_and(|mtu| link.mtu != mtu) {
        return drift(format!("has MTU {}, the config says {}", link.mtu, conf.mtu.unwrap_or_default()));
    }
    if let Some(name) = &conf.bridge {
        let bridge = bridge_link(ctr, name)?;
        if link.master != Some(bridge.index) {
            return drift(format!("is not a port of bridge {name:?}"));
        }
    }
    Ok(())
}

common::plugin_main!(Tap);
