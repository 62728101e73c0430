//! Host-side links: the bridge and the port that plugs a container's veth into it.

use common::ipnet::{is_link_local, IpNet};
use common::links::link_error;
use common::net::NetStack;
use common::netlink::rtnl::{AddrOpts, BridgePortOpts, BridgeVlan, Family, Link, LinkKind, NewLink};
use common::netlink::NlError;
use common::{CniError, Result};

use crate::config::Config;

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
        configure_vlans(nl, conf, port.index)?;
    }
    nl.set_up(port.index).map_err(|e| link_error("setting the host veth up", e))?;
    nl.link_by_index(port.index).map_err(|e| link_error("host veth", e))
}

fn configure_vlans(nl: &mut impl NetStack, conf: &Config, port: u32) -> Result<()> {
    let unsupported = |e: NlError| {
        if e.is(libc::EOPNOTSUPP) {
            CniError::unsupported_field("vlan/vlanTrunk: this kernel has no bridge VLAN filtering")
        } else {
            link_error("configuring bridge port VLANs", e)
        }
    };
    if !conf.preserve_default_vlan {
        match nl.bridge_vlan_del(port, 1, false) {
            Ok(()) => {}
            Err(e) if e.not_found() || e.is(libc::EINVAL) => {}
            Err(e) => return Err(unsupported(e)),
        }
    }
    for vid in conf.trunk_vlans()? {
        nl.bridge_vlan_add(port, BridgeVlan { vid, pvid: false, untagged: false }, false)
            .map_err(unsupported)?;
    }
    if conf.vlan > 0 {
        let vid = conf.vlan as u16;
        nl.bridge_vlan_add(port, BridgeVlan { vid, pvid: true, untagged: true }, false)
            .map_err(unsupported)?;
    }
    Ok(())
}

/// Put the gateway address on the bridge (once per subnet), as the reference
/// does: IPv4 allows one address unless `forceAddress` replaces it; IPv6 allows
/// one per non-overlapping subnet.
pub fn ensure_gateway_addr(nl: &mut impl NetStack, conf: &Config, bridge: &Link, gw: &IpNet) -> Result<()> {
    let family = Family::of(&gw.addr);
    for a in nl.addrs(Some(bridge.index), family)? {
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
                    conf.bridge
                )));
            }
            nl.del_addr(bridge.index, a.addr, a.prefix)
                .map_err(|e| link_error("removing the old bridge address", e))?;
        }
    }
    // No DAD on the gateway: containers must reach it at once.
    let opts = AddrOpts { nodad: gw.addr.is_ipv6(), ..Default::default() };
    match nl.add_addr(bridge.index, gw.addr, gw.prefix, &opts) {
        Ok(()) => Ok(()),
        Err(e) if e.is(libc::EEXIST) => Ok(()),
        Err(e) => Err(link_error(&format!("adding {gw} to {:?}", conf.bridge), e)),
    }
}
