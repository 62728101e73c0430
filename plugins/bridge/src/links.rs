//! Host-side links: the bridge and the port that plugs a container's veth into it.

use common::ipnet::{is_link_local, IpNet};
use common::links::link_error;
use common::net::NetStack;
use common::netlink::rtnl::{AddrOpts, BridgePortOpts, BridgeVlan, Family, Link, LinkKind, NewLink};
use common::netlink::NlError;
use common::{CniError, Result};

use crate::config::{vlan_gateway_name, Config};

/// Bridge creation and teardown on failure are serialized per bridge, so a
/// failed ADD never deletes a bridge another ADD is plugging into.
pub fn bridge_lock(host: &mut impl NetStack, bridge: &str) -> Result<Option<common::lock::FileLock>> {
    host.lock(&format!("bridge-{bridge}"))
}

/// Find or create the bridge, up and set as the config says. Returns it and
/// whether this call created it; a bridge it created is gone again when it
/// fails.
pub fn ensure_bridge(nl: &mut impl NetStack, conf: &Config) -> Result<(Link, bool)> {
    let (link, created) = find_or_create(nl, conf)?;
    match settle(nl, conf, &link, created) {
        Ok(()) => Ok((link, created)),
        Err(e) => {
            if created {
                let _ = nl.del_link(link.index);
            }
            Err(e)
        }
    }
}

fn find_or_create(nl: &mut impl NetStack, conf: &Config) -> Result<(Link, bool)> {
    let mut created = false;
    let link = match nl.link_by_name(&conf.bridge) {
        Ok(l) => l,
        Err(e) if e.not_found() => {
            // A fixed MAC of our own: the bridge then never takes its ports' MACs,
            // so it cannot change or fall to zero as containers come and go.
            let bridge = NewLink {
                mtu: (conf.mtu > 0).then_some(conf.mtu),
                mac: Some(common::random_mac()),
                ..NewLink::new(
                    &conf.bridge,
                    LinkKind::Bridge { vlan_filtering: conf.uses_vlans().then_some(true) },
                )
            };
            match nl.add_link(&bridge) {
                Ok(()) => created = true,
                Err(e) if e.is(libc::EEXIST) => {} // a parallel ADD won the race
                Err(e) if e.is(libc::EOPNOTSUPP) && conf.uses_vlans() => {
                    return Err(CniError::unsupported_field(
                        "vlan/vlanTrunk: this kernel has no bridge VLAN filtering",
                    ))
                }
                Err(e) => return Err(link_error(&format!("creating bridge {:?}", conf.bridge), e)),
            }
            nl.link_by_name(&conf.bridge).map_err(|e| {
                if created {
                    let _ = nl.del_link_by_name(&conf.bridge);
                }
                link_error(&format!("bridge {:?}", conf.bridge), e)
            })?
        }
        Err(e) => return Err(link_error(&format!("bridge {:?}", conf.bridge), e)),
    };
    Ok((link, created))
}

/// A bridge's settings: kind checked, MAC fixed, promiscuous as configured, up.
fn settle(nl: &mut impl NetStack, conf: &Config, link: &Link, created: bool) -> Result<()> {
    if link.kind.as_deref() != Some("bridge") {
        return Err(CniError::invalid_config(format!(
            "{:?} already exists but is not a bridge",
            conf.bridge
        )));
    }
    if created {
        // Bridges never autoconfigure from router adverts on the container side.
        let _ = nl.set_sysctl(&format!("net/ipv6/conf/{}/accept_ra", conf.bridge), "0");
    } else if link.mac == Some([0; 6]) {
        nl.set_mac(link.index, common::random_mac()).map_err(|e| link_error("setting the bridge MAC", e))?;
    }
    if conf.promisc_mode && !link.is_promisc() {
        nl.set_promisc(link.index, true).map_err(|e| link_error("setting the bridge promiscuous", e))?;
    }
    if !link.is_up() {
        nl.set_up(link.index).map_err(|e| link_error("setting the bridge up", e))?;
    }
    Ok(())
}

/// Delete a bridge this ADD created, if nothing else was plugged in meanwhile.
pub fn remove_bridge_if_unused(nl: &mut impl NetStack, bridge: &Link) -> Result<()> {
    let ports = nl.links()?.iter().filter(|l| l.master == Some(bridge.index)).count();
    if ports == 0 {
        match nl.del_link(bridge.index) {
            Ok(()) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(link_error("removing the bridge", e)),
        }
    }
    Ok(())
}

/// Plug the host end into the bridge with the configured port settings.
pub fn attach_port(nl: &mut impl NetStack, conf: &Config, bridge: &Link, host_veth: &str) -> Result<Link> {
    let port = nl.link_by_name(host_veth).map_err(|e| link_error("host veth", e))?;
    nl.set_master(port.index, bridge.index).map_err(|e| link_error("attaching the veth to the bridge", e))?;
    if conf.hairpin_mode || conf.port_isolation {
        let opts = BridgePortOpts {
            hairpin: conf.hairpin_mode.then_some(true),
            isolated: conf.port_isolation.then_some(true),
            learning: None,
        };
        nl.set_bridge_port(port.index, &opts).map_err(|e| link_error("setting bridge port flags", e))?;
    }
    if conf.uses_vlans() {
        let access = (conf.vlan > 0).then_some(conf.vlan as u16);
        set_port_vlans(nl, port.index, access, &conf.trunk_vlans()?, conf.preserve_default_vlan)?;
    }
    nl.set_up(port.index).map_err(|e| link_error("setting the host veth up", e))?;
    nl.link_by_index(port.index).map_err(|e| link_error("host veth", e))
}

/// A port's VLANs, as the reference (v1.8.0 and later) sets them: the VLANs
/// the kernel gave it go unless `preserve_default`; the trunk VLANs are
/// tagged; the access VLAN, or else VLAN 1 on a trunk, is the untagged
/// native one (PVID).
fn set_port_vlans(
    nl: &mut impl NetStack,
    port: u32,
    access: Option<u16>,
    trunk: &[u16],
    preserve_default: bool,
) -> Result<()> {
    let unsupported = |e: NlError| {
        if e.is(libc::EOPNOTSUPP) {
            CniError::unsupported_field("vlan/vlanTrunk: this kernel has no bridge VLAN filtering")
        } else {
            link_error("configuring bridge port VLANs", e)
        }
    };
    if !preserve_default {
        for v in nl.bridge_vlans(port).map_err(unsupported)? {
            match nl.bridge_vlan_del(port, v.vid, false) {
                Ok(()) => {}
                Err(e) if e.not_found() || e.is(libc::EINVAL) => {}
                Err(e) => return Err(unsupported(e)),
            }
        }
    }
    for &vid in trunk {
        nl.bridge_vlan_add(port, BridgeVlan { vid, pvid: false, untagged: false }, false)
            .map_err(unsupported)?;
    }
    let native = access.or((!trunk.is_empty()).then_some(1));
    if let Some(vid) = native {
        nl.bridge_vlan_add(port, BridgeVlan { vid, pvid: true, untagged: true }, false)
            .map_err(unsupported)?;
    }
    Ok(())
}

/// `vlan` + `isGateway`: the bridge's own port is in VLAN 1, out of reach of
/// the containers of another VLAN, so, as in the reference, the gateway goes
/// on `<bridge>.<vid>`: one end of a veth pair whose other end is a port of
/// the bridge in that VLAN (untagged, PVID). An existing link of that name is
/// used as it is. Returns it and whether this call made it. Call under
/// [`bridge_lock`].
pub fn ensure_vlan_gateway(nl: &mut impl NetStack, conf: &Config, bridge: &Link) -> Result<(Link, bool)> {
    let name = vlan_gateway_name(&conf.bridge, conf.vlan);
    match nl.link_by_name(&name) {
        Ok(l) => return Ok((l, false)),
        Err(e) if e.not_found() => {}
        Err(e) => return Err(link_error(&name, e)),
    }
    let peer = common::veth::create_local(nl, &name, Some(bridge.mtu))?;
    let mut plug = || -> Result<Link> {
        let port = nl.link_by_name(&peer).map_err(|e| link_error("VLAN gateway port", e))?;
        nl.set_master(port.index, bridge.index)
            .map_err(|e| link_error(&format!("attaching {name:?} to the bridge"), e))?;
        set_port_vlans(nl, port.index, Some(conf.vlan as u16), &[], conf.preserve_default_vlan)?;
        nl.set_up(port.index).map_err(|e| link_error("setting the VLAN gateway port up", e))?;
        let gw = nl.link_by_name(&name).map_err(|e| link_error(&name, e))?;
        nl.set_up(gw.index).map_err(|e| link_error(&format!("setting {name:?} up"), e))?;
        nl.link_by_index(gw.index).map_err(|e| link_error(&name, e))
    };
    match plug() {
        Ok(gw) => Ok((gw, true)),
        Err(e) => {
            let _ = nl.del_link_by_name(&name);
            Err(e)
        }
    }
}

/// Take back a VLAN gateway a failed ADD made, unless a port of another
/// container (not `own_port`) is in its VLAN: another ADD may use it already.
/// Call under [`bridge_lock`].
pub fn remove_vlan_gateway_if_unused(
    nl: &mut impl NetStack,
    gw_name: &str,
    vid: u16,
    own_port: &str,
) -> Result<()> {
    let gw = match nl.link_by_name(gw_name) {
        Ok(l) => l,
        Err(e) if e.not_found() => return Ok(()),
        Err(e) => return Err(link_error(gw_name, e)),
    };
    let Some(bridge) = gw.link.and_then(|peer| nl.link_by_index(peer).ok()).and_then(|p| p.master) else {
        return Ok(());
    };
    let others: Vec<Link> = nl
        .links()?
        .into_iter()
        .filter(|l| l.master == Some(bridge) && Some(l.index) != gw.link && l.name != own_port)
        .collect();
    for port in others {
        if nl.bridge_vlans(port.index).unwrap_or_default().iter().any(|v| v.vid == vid) {
            return Ok(());
        }
    }
    match nl.del_link(gw.index) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(link_error(&format!("removing {gw_name:?}"), e)),
    }
}

/// CHECK of a port's VLANs: the native VLAN (PVID) and every trunk VLAN
/// are there as ADD set them.
pub fn check_port_vlans(nl: &mut impl NetStack, conf: &Config, port: &Link) -> Result<()> {
    let vlans = nl.bridge_vlans(port.index).map_err(|e| link_error("reading the port's VLANs", e))?;
    let trunk = conf.trunk_vlans()?;
    let native = if conf.vlan > 0 { conf.vlan as u16 } else { 1 };
    let pvid = vlans.iter().find(|v| v.pvid).map(|v| v.vid);
    if pvid != Some(native) {
        let now = pvid.map_or("none".to_string(), |v| v.to_string());
        return Err(CniError::internal(format!(
            "the native VLAN (PVID) of {:?} is {now}, the config says {native}",
            port.name
        )));
    }
    if let Some(vid) = trunk.iter().find(|t| !vlans.iter().any(|v| v.vid == **t)) {
        return Err(CniError::internal(format!("trunk VLAN {vid} is missing on {:?}", port.name)));
    }
    Ok(())
}

/// CHECK of a VLAN's gateway link: there, up, holding `gateways`, and (when
/// it is a veth, as ADD makes it) its peer a port of `bridge` in that VLAN.
pub fn check_vlan_gateway(
    nl: &mut impl NetStack,
    conf: &Config,
    bridge: &Link,
    gateways: &[IpNet],
) -> Result<()> {
    let name = vlan_gateway_name(&conf.bridge, conf.vlan);
    let gw = nl
        .link_by_name(&name)
        .map_err(|_| CniError::internal(format!("the VLAN gateway {name:?} is missing")))?;
    if !gw.is_up() {
        return Err(CniError::internal(format!("the VLAN gateway {name:?} is down")));
    }
    for want in gateways {
        let held = nl.addrs(Some(gw.index), Family::of(&want.addr))?;
        if !held.iter().any(|a| a.addr == want.addr && a.prefix == want.prefix) {
            return Err(CniError::internal(format!(
                "the VLAN gateway {name:?} lacks the gateway address {want}"
            )));
        }
    }
    if gw.kind.as_deref() == Some("veth") {
        let port = gw.link.and_then(|p| nl.link_by_index(p).ok()).filter(|p| p.master == Some(bridge.index));
        let port = port.ok_or_else(|| {
            CniError::internal(format!(
                "the peer of the VLAN gateway {name:?} is not a port of {:?}",
                conf.bridge
            ))
        })?;
        let pvid =
            nl.bridge_vlans(port.index).unwrap_or_default().into_iter().find(|v| v.pvid).map(|v| v.vid);
        if pvid != Some(conf.vlan as u16) {
            return Err(CniError::internal(format!(
                "the peer of the VLAN gateway {name:?} is not in VLAN {}",
                conf.vlan
            )));
        }
    }
    Ok(())
}

/// Put the gateway address on the bridge or a VLAN's gateway link (once per
/// subnet), as the reference does: IPv4 allows one address unless
/// `forceAddress` replaces it; IPv6 allows one per non-overlapping subnet.
pub fn ensure_gateway_addr(nl: &mut impl NetStack, conf: &Config, link: &Link, gw: &IpNet) -> Result<()> {
    let family = Family::of(&gw.addr);
    for a in nl.addrs(Some(link.index), family)? {
        if a.addr == gw.addr && a.prefix == gw.prefix {
            return Ok(());
        }
        let existing = IpNet { addr: a.addr, prefix: a.prefix };
        if a.addr.is_ipv6() && is_link_local(&a.addr) {
            continue;
        }
        if gw.is_ipv4() || existing.contains(&gw.addr) || gw.contains(&existing.addr) {
            if !conf.force_address {
                return Err(CniError::internal(format!(
                    "{:?} already has an IP address different from {gw}",
                    link.name
                )));
            }
            nl.del_addr(link.index, a.addr, a.prefix)
                .map_err(|e| link_error("removing the old gateway address", e))?;
        }
    }
    // No DAD on the gateway: containers must reach it at once.
    let opts = AddrOpts { nodad: gw.addr.is_ipv6(), ..Default::default() };
    match nl.add_addr(link.index, gw.addr, gw.prefix, &opts) {
        Ok(()) => Ok(()),
        Err(e) if e.is(libc::EEXIST) => Ok(()),
        Err(e) => Err(link_error(&format!("adding {gw} to {:?}", link.name), e)),
    }
}
