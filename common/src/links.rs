//! Links every main plugin makes, finds and removes the same way: the
//! container interface's name check, temporary names, the veth pair into a
//! container, moving a link between namespaces, the default-route interface,
//! and the one way a kernel refusal becomes a CNI error.

use crate::net::NetStack;
use crate::netlink::rtnl::{Family, Link, LinkKind, NewLink};
use crate::netlink::NlError;
use crate::{CniError, Result};

/// A kernel refusal while doing `what`, as the runtime shows it (code 999):
/// "creating the veth pair: File exists (os error 17)".
pub fn link_error(what: &str, e: NlError) -> CniError {
    CniError::internal(format!("{what}: {e}"))
}

/// The error for a container that already has an interface called `ifname`.
pub fn name_taken(ifname: &str) -> CniError {
    CniError::internal(format!("container already has an interface named {ifname:?}"))
}

/// ADD's first check: `ifname` is free in the container.
pub fn ensure_name_free(net: &mut impl NetStack, ifname: &str) -> Result<()> {
    match net.link_by_name(ifname) {
        Ok(_) => Err(name_taken(ifname)),
        Err(_) => Ok(()),
    }
}

/// A random name `<prefix><8 hex digits>` that is free in `net` (prefix at
/// most 7 bytes, to fit IFNAMSIZ).
pub fn temp_name(net: &mut impl NetStack, prefix: &str) -> Result<String> {
    for _ in 0..8 {
        let name = format!("{prefix}{:08x}", crate::random_u32());
        if net.link_by_name(&name).is_err() {
            return Ok(name);
        }
    }
    Err(CniError::try_again(format!("could not find a free temporary name {prefix}…")))
}

/// Create a veth pair from inside the container, so the container end gets
/// `ifname` (with `mtu` and `mac`) at birth and the host end appears in
/// `host`'s netns under a fresh random name `veth<8 hex>`, down. Returns the
/// host end's name. A taken `ifname` is [`name_taken`].
pub fn create_veth(
    ctr: &mut impl NetStack,
    host: &mut impl NetStack,
    ifname: &str,
    mtu: Option<u32>,
    mac: Option<[u8; 6]>,
) -> Result<String> {
    let host_ns = host.netns_fd().map_err(|e| link_error("opening the host netns", e))?;
    for _ in 0..4 {
        let host_name = format!("veth{:08x}", crate::random_u32());
        let kind = LinkKind::Veth { peer: host_name.clone(), peer_netns_fd: Some(host_ns) };
        match ctr.add_link(&NewLink { mtu, mac, ..NewLink::new(ifname, kind) }) {
            Ok(()) => return Ok(host_name),
            // Either the container already has `ifname` or the random name collided.
            Err(e) if e.is(libc::EEXIST) => ensure_name_free(ctr, ifname)?,
            Err(e) => return Err(link_error("creating the veth pair", e)),
        }
    }
    Err(CniError::try_again("could not find a free name for the host veth"))
}

/// Move the link `name` from `from` into `to` and call it `new_name` there
/// (taken down: the kernel renames only links that are down). The link goes
/// over under a temporary name, so a link called `name` in `to` is no
/// obstacle; a taken `new_name` is [`name_taken`] and leaves the link in
/// `from` under its old name. Returns the link as `to` sees it.
pub fn move_link(
    from: &mut impl NetStack,
    to: &mut impl NetStack,
    name: &str,
    new_name: &str,
) -> Result<Link> {
    let link = from.link_by_name(name).map_err(|e| link_error(&format!("finding {name}"), e))?;
    ensure_name_free(to, new_name)?;
    let tmp = temp_name(to, "cni")?;
    let fd = to.netns_fd().map_err(|e| link_error("opening the target netns", e))?;
    from.set_down(link.index).map_err(|e| link_error(&format!("setting {name} down"), e))?;
    from.rename(link.index, &tmp).map_err(|e| link_error(&format!("renaming {name}"), e))?;
    if let Err(e) = from.set_netns_fd(link.index, fd) {
        let _ = from.rename(link.index, name);
        return Err(link_error(&format!("moving {name} to another netns"), e));
    }
    let moved =
        to.link_by_name(&tmp).map_err(|e| link_error(&format!("finding {name} after the move"), e))?;
    match to.rename(moved.index, new_name) {
        Ok(()) => {}
        Err(e) => {
            // Put it back as it was: the caller's undo knows it under `name` in `from`.
            let back = from.netns_fd().and_then(|fd| to.set_netns_fd(moved.index, fd));
            if back.is_ok() {
                if let Ok(l) = from.link_by_name(&tmp) {
                    let _ = from.rename(l.index, name);
                }
            }
            return Err(if e.is(libc::EEXIST) {
                name_taken(new_name)
            } else {
                link_error(&format!("renaming {name} to {new_name}"), e)
            });
        }
    }
    to.link_by_index(moved.index).map_err(|e| link_error(&format!("finding {new_name}"), e))
}

/// Delete `ifname`; one that is already gone is fine (DEL).
pub fn delete_if_exists(net: &mut impl NetStack, ifname: &str) -> Result<()> {
    match net.del_link_by_name(ifname) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(link_error(&format!("deleting {ifname}"), e)),
    }
}

/// The interface of the first default route of the main table (IPv4
/// first): the master when a config names none (macvlan, ipvlan).
pub fn default_route_interface(net: &mut impl NetStack) -> Result<Option<String>> {
    for family in [Family::V4, Family::V6] {
        let routes = net
            .routes(family, libc::RT_TABLE_MAIN as u32)
            .map_err(|e| CniError::internal(format!("listing routes: {e}")))?;
        for r in routes.iter().filter(|r| r.is_default()) {
            if let Some(oif) = r.oif {
                if let Ok(l) = net.link_by_index(oif) {
                    return Ok(Some(l.name));
                }
            }
        }
    }
    Ok(None)
}
