//! What macvlan, ipvlan and vlan share: the container's interface is a link
//! made on a master device of the host (or, with `linkInContainer`, of the
//! container itself), so the container sits on the master's network.
//!
//! The story of each of them: find the master ([`find`]) and check the MTU
//! against it ([`check_mtu`]); make the link in the container under a
//! temporary name and give it `CNI_IFNAME` ([`create`]); IPAM; configure it
//! and build the result ([`finish`]). DEL is [`del`]; CHECK is
//! [`check_link`] and [`check_parent`] around what only the kind has.

use crate::error::shown;
use crate::ipam::Ipam;
use crate::links::{self, link_error};
use crate::net::NetStack;
use crate::netlink::rtnl::{Link, NewLink};
use crate::netlink::NlError;
use crate::skel::CmdArgs;
use crate::spec::{CniResult, Interface};
use crate::undo::{Side, Undo};
use crate::{ifconfig, CniError, Errors, Result};

/// A config's `mtu`: 0 (the master's) or 68 (IPv4's minimum, below it the
/// kernel refuses) and up; whether it fits the master is [`check_mtu`]'s.
pub fn parse_mtu(mtu: i64) -> Result<u32> {
    if mtu != 0 && !(68..=i64::from(u32::MAX)).contains(&mtu) {
        return Err(CniError::invalid_config(format!(
            "invalid MTU {mtu} (must be 68 up to the master's MTU, or 0 for the master's)"
        )));
    }
    Ok(mtu as u32)
}

/// A config's `master`: empty, or a valid interface name (code 7).
pub fn parse_master(name: &str) -> Result<()> {
    if !name.is_empty() {
        crate::skel::validate_ifname(name)
            .map_err(|_| CniError::invalid_config(format!("invalid master name {}", shown(name))))?;
    }
    Ok(())
}

/// The master as `nl` (the plugin's netns, or the container's with
/// `in_container`) sees it: `name`, or the default route's interface when
/// empty. A loopback device is refused: `child` ("a macvlan") names what
/// needs an Ethernet master. Errors are config errors (code 7).
pub fn find(nl: &mut impl NetStack, name: &str, in_container: bool, child: &str) -> Result<Link> {
    let where_ = if in_container { " in the container netns" } else { "" };
    let name = if name.is_empty() {
        links::default_route_interface(nl)?.ok_or_else(|| {
            CniError::invalid_config(format!("no master given and no default route interface found{where_}"))
        })?
    } else {
        name.to_string()
    };
    let master = nl.link_by_name(&name).map_err(|e| {
        let why = if e.not_found() { "no such interface".to_string() } else { e.to_string() };
        CniError::invalid_config(format!("failed to look up master {name:?}{where_}: {why}"))
    })?;
    // The kernel refuses with a bare EINVAL or EOPNOTSUPP.
    if master.flags & libc::IFF_LOOPBACK as u32 != 0 {
        return Err(CniError::invalid_config(format!(
            "master {name:?}{where_} is a loopback device: {child} needs an Ethernet master"
        )));
    }
    Ok(master)
}

/// `mtu` (0: the master's) is at most the master's, as the reference checks.
pub fn check_mtu(mtu: u32, master: &Link) -> Result<()> {
    if mtu > master.mtu {
        return Err(CniError::invalid_config(format!(
            "invalid MTU {mtu}, must be [0, master MTU({})]",
            master.mtu
        )));
    }
    Ok(())
}

/// Make `new` (its kind and parent set) in the container under a free
/// temporary name `<tmp_prefix>…`: from the host, which sees the master, or
/// inside with `in_container`. It announces address changes from the start
/// and then takes `args.ifname`; its removal is registered in `undo`.
/// `refused` turns the kernel's refusal to create it into the CNI error.
/// Returns the link as the container sees it.
#[allow(clippy::too_many_arguments)]
pub fn create<'a, N: NetStack>(
    args: &'a CmdArgs,
    tmp_prefix: &str,
    mut new: NewLink,
    in_container: bool,
    host: &mut N,
    ctr: &mut N,
    undo: &mut Undo<'a, N>,
    refused: impl FnOnce(NlError) -> CniError,
) -> Result<Link> {
    let tmp = links::temp_name(ctr, tmp_prefix)?;
    new.name = tmp.clone();
    if in_container {
        ctr.add_link(&new).map_err(refused)?;
    } else {
        new.netns_fd = Some(ctr.netns_fd().map_err(|e| link_error("opening the container netns", e))?);
        host.add_link(&new).map_err(refused)?;
    }
    undo.delete_link(Side::Container, &tmp);
    let link = ctr.link_by_name(&tmp).map_err(|e| link_error(&format!("the new {}", new.kind.name()), e))?;

    ifconfig::announce_changes(ctr, &tmp)?;
    match ctr.rename(link.index, &args.ifname) {
        Ok(()) => undo.link_renamed(Side::Container, &tmp, &args.ifname),
        Err(e) if e.is(libc::EEXIST) => return Err(links::name_taken(&args.ifname)),
        Err(e) => return Err(link_error(&format!("renaming {tmp} to {}", args.ifname), e)),
    }
    Ok(Link { name: args.ifname.clone(), ..link })
}

/// The container side of `res` on `link`: addresses, then link up (with
/// arp_notify/ndisc_notify set the kernel announces them to the LAN as the
/// link comes up), then routes; just up when there are no addresses. Then
/// the result: this one interface, every IP on it, the config's DNS.
pub fn finish(args: &CmdArgs, ctr: &mut impl NetStack, link: &Link, mut res: CniResult) -> Result<CniResult> {
    let link = if res.ips.is_empty() {
        ctr.set_up(link.index).map_err(|e| link_error("setting the container interface up", e))?;
        ctr.link_by_index(link.index).map_err(|e| link_error("the container interface", e))?
    } else {
        ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, true)?
    };
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

/// DEL: IPAM first, as the reference does (dhcp sends its DHCPRELEASE
/// through the container's interface, which must still be there), then the
/// link. No master lookup: it may be gone. With the netns gone (`ctr` None)
/// the link went with it, and only the lease is left to release.
pub fn del<N: NetStack>(args: &CmdArgs, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    let mut errors = Errors::new();
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    if let Some(ctr) = ctr {
        errors.note(links::delete_if_exists(ctr, &args.ifname));
    }
    errors.into_result()
}

/// CHECK of the container's link against prevResult (required: code 7
/// without): prevResult names it in this sandbox, it has the addresses and
/// routes prevResult lists, it is a `kind` link with the MAC prevResult
/// says and, when `mtu` is set, that MTU. What only the kind has is the
/// plugin's to check, and then [`check_parent`].
pub fn check_link(args: &CmdArgs, ctr: &mut impl NetStack, kind: &str, mtu: u32) -> Result<Link> {
    let prev = args
        .conf
        .prev_result
        .as_ref()
        .ok_or_else(|| CniError::invalid_config(format!("{kind} CHECK needs prevResult")))?;
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
    if link.kind.as_deref() != Some(kind) {
        return Err(CniError::internal(format!("{} is not a {kind} link", args.ifname)));
    }
    if !iface.mac.is_empty() && link.mac_string() != iface.mac.to_lowercase() {
        return Err(CniError::internal(format!(
            "{} has MAC {}, prevResult says {}",
            args.ifname,
            link.mac_string(),
            iface.mac
        )));
    }
    if mtu > 0 && link.mtu != mtu {
        return Err(CniError::internal(format!(
            "{} has MTU {}, the config says {mtu}",
            args.ifname, link.mtu
        )));
    }
    Ok(link)
}

/// CHECK: `link`'s parent is `master`, which lives in the container with
/// `in_container` and elsewhere (the host) without.
pub fn check_parent(link: &Link, master: &Link, in_container: bool) -> Result<()> {
    if link.link != Some(master.index) || in_container == link.link_netnsid.is_some() {
        return Err(CniError::internal(format!("{} is not on master {:?}", link.name, master.name)));
    }
    Ok(())
}
