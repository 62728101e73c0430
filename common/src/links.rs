//! Links every main plugin makes, finds and removes the same way: the
//! container interface's name check, temporary names, moving a link between
//! namespaces, the default-route interface, and the one way a kernel refusal
//! becomes a CNI error. The veth pair into a container is in `common::veth`.

use crate::net::NetStack;
use crate::netlink::rtnl::{Family, Link};
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

/// `CNI_IFNAME` as the name of a link ADD makes: one with `%` is code 4.
/// The kernel takes such a name as a template and picks another ("eth%d"
/// becomes "eth0"), so the link would be made where no one looks for it.
pub fn literal_ifname(ifname: &str) -> Result<()> {
    if ifname.contains('%') {
        return Err(CniError::invalid_env(format!(
            "invalid CNI_IFNAME {}: the kernel takes a name with % as a template and would choose \
             another",
            crate::error::shown(ifname)
        )));
    }
    Ok(())
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

/// Move the link `name` from `from` into `to` and call it `new_name` there.
/// It travels through a scratch netns and is renamed there, so neither side
/// ever sees it under a temporary name (udev and NetworkManager on a host
/// trip over fast renames), and a link called `name` in `to` is no
/// obstacle. It arrives down (a move takes a link down). A taken `new_name`
/// is [`name_taken`]; on any failure the link is back in `from` as `name`.
/// Returns the link as `to` sees it.
pub fn move_link<F: NetStack, T: NetStack>(
    from: &mut F,
    to: &mut T,
    name: &str,
    new_name: &str,
) -> Result<Link> {
    let link = from.link_by_name(name).map_err(|e| link_error(&format!("finding {name}"), e))?;
    ensure_name_free(to, new_name)?;
    let mut scratch = to.scratch_netns().map_err(|e| link_error("making a scratch netns", e))?;
    let scratch_fd = scratch.netns_fd().map_err(|e| link_error("opening the scratch netns", e))?;
    let to_fd = to.netns_fd().map_err(|e| link_error("opening the target netns", e))?;
    let from_fd = from.netns_fd().map_err(|e| link_error("opening the link's netns", e))?;
    from.set_netns_fd(link.index, scratch_fd).map_err(|e| {
        let mut err = link_error(&format!("moving {name} out of its netns"), e.clone());
        if e.is(libc::EINVAL) {
            err.msg += " (the kernel keeps some devices, such as loopback, bridges and VRFs, in their netns)";
        }
        err
    })?;
    // From here on a failure sends the link home under its old name.
    let home = |scratch: &mut T, index: u32| {
        let _ = scratch.rename(index, name);
        let _ = scratch.set_netns_fd(index, from_fd);
    };
    // Its index is free in a fresh netns, so the kernel kept it there.
    let there = match scratch.link_by_name(name) {
        Ok(l) => l,
        Err(e) => {
            home(&mut scratch, link.index);
            return Err(link_error(&format!("finding {name} in transit"), e));
        }
    };
    if let Err(e) = scratch.rename(there.index, new_name) {
        home(&mut scratch, there.index);
        return Err(link_error(&format!("renaming {name} to {new_name}"), e));
    }
    if let Err(e) = scratch.set_netns_fd(there.index, to_fd) {
        home(&mut scratch, there.index);
        return Err(if e.is(libc::EEXIST) {
            name_taken(new_name)
        } else {
            link_error(&format!("moving {name} into the target netns"), e)
        });
    }
    to.link_by_name(new_name).map_err(|e| {
        let _ = move_link(to, from, new_name, name);
        link_error(&format!("finding {new_name}"), e)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;
    use crate::netlink::rtnl::{LinkKind, NewLink};

    fn names(net: &mut impl NetStack) -> Vec<String> {
        let mut v: Vec<String> = net.links().unwrap().into_iter().map(|l| l.name).collect();
        v.sort();
        v
    }

    #[test]
    fn move_link_renames_in_transit_and_puts_the_link_back_on_any_failure() {
        let k = FakeKernel::new();
        let (mut host, mut ctr) = (k.host(), k.netns("c1"));
        host.add_link(&NewLink::new("eth1", LinkKind::Dummy)).unwrap();
        ctr.add_link(&NewLink::new("eth1", LinkKind::Dummy)).unwrap(); // same name there: no obstacle
        let up = host.link_by_name("eth1").unwrap().index;
        host.set_up(up).unwrap();
        let before = k.state();
        k.clear_calls();
        let moved = move_link(&mut host, &mut ctr, "eth1", "net1").unwrap();
        let calls = k.calls();
        assert_eq!(
            (moved.name.as_str(), moved.kind.as_deref(), moved.is_up()),
            ("net1", Some("dummy"), false)
        );
        assert_eq!(names(&mut host), ["lo"]);
        assert_eq!(names(&mut ctr), ["eth1", "lo", "net1"]);
        let renames: Vec<&String> = calls.iter().filter(|c| c.contains(": rename ")).collect();
        assert!(renames.len() == 1 && renames[0].starts_with("scratch"), "renamed out of sight: {calls:?}");
        assert!(!k.state().contains("scratch"), "the scratch netns is gone");

        // Back again, as an undo does it: the host sees its device under its old name.
        move_link(&mut ctr, &mut host, "net1", "eth1").unwrap();
        assert_eq!(names(&mut host), ["eth1", "lo"]);
        let down = |s: String| s.replace(" up ", " down ");
        assert_eq!(down(k.state()), down(before.clone()));

        // Any failing call leaves the link where it was, under its name.
        for n in 1..=calls.len() {
            k.fail_at(n, libc::EIO);
            if move_link(&mut host, &mut ctr, "eth1", "net1").is_ok() {
                move_link(&mut ctr, &mut host, "net1", "eth1").unwrap();
            }
            assert_eq!(down(k.state()), down(before.clone()), "failure at call {n}");
        }
        // The name taken on arrival (by a racing rename): the link goes home.
        let last_move = calls.iter().rposition(|c| c.contains(": set_netns_fd ")).unwrap() + 1;
        k.fail_at(last_move, libc::EEXIST);
        let e = move_link(&mut host, &mut ctr, "eth1", "net1").unwrap_err();
        assert_eq!(e.msg, "container already has an interface named \"net1\"");
        assert_eq!(names(&mut host), ["eth1", "lo"]);
        let e = move_link(&mut host, &mut ctr, "eth1", "eth1").unwrap_err();
        assert!(e.msg.contains("named \"eth1\""), "a taken name is refused before anything moves: {e}");
        assert_eq!(down(k.state()), down(before));

        // What the kernel keeps in its netns.
        let e = move_link(&mut host, &mut ctr, "lo", "lo2").unwrap_err();
        assert!(e.msg.contains("moving lo out of its netns") && e.msg.contains("such as loopback"), "{e}");
    }

    #[test]
    fn the_default_route_interface_is_the_first_ipv4_one() {
        let k = FakeKernel::new();
        let mut n = k.host();
        assert_eq!(default_route_interface(&mut n).unwrap(), None);
        for name in ["a0", "b0"] {
            n.add_link(&NewLink::new(name, LinkKind::Dummy)).unwrap();
            let i = n.link_by_name(name).unwrap().index;
            n.set_up(i).unwrap();
        }
        let (a0, b0) = (n.link_by_name("a0").unwrap().index, n.link_by_name("b0").unwrap().index);
        let mut v6 = crate::netlink::rtnl::Route::new("::".parse().unwrap(), 0);
        v6.oif = Some(a0);
        n.add_route(&v6).unwrap();
        assert_eq!(default_route_interface(&mut n).unwrap().as_deref(), Some("a0"));
        let mut v4 = crate::netlink::rtnl::Route::new("0.0.0.0".parse().unwrap(), 0);
        v4.oif = Some(b0);
        n.add_route(&v4).unwrap();
        assert_eq!(default_route_interface(&mut n).unwrap().as_deref(), Some("b0"));
        delete_if_exists(&mut n, "b0").unwrap();
        delete_if_exists(&mut n, "b0").unwrap();
        assert_eq!(default_route_interface(&mut n).unwrap().as_deref(), Some("a0"));
    }
}
