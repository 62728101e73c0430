//! The kernel side on one node: per network a bridge (`ovbr<vni>`) holding
//! the gateway address and the node's containers, and a VXLAN device
//! (`vxlan<vni>`, port 4789, learning off, ARP/ND proxy on) plugged into it.
//!
//! Remote containers exist only as programmed entries: on the VXLAN device
//! MAC → remote VTEP and IP → MAC (answered locally by the proxy, so ARP
//! never crosses the underlay), and on the bridge a static MAC → VXLAN port
//! entry so unicast to a remote container is never flooded to local ports.
//! Broadcast and unknown unicast have no VXLAN destination at all: nothing
//! floods, nothing is learned from traffic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use common::netlink::rtnl::{
    AddrOpts, BridgeOpts, BridgePortOpts, Family, Link, Rtnl, VxlanOpts, VXLAN_PORT,
};
use common::netlink::NlError;
use common::{ifconfig, sysctl, CniError, Result};

use crate::config::{Config, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6};

fn nl_err(what: &str) -> impl FnOnce(NlError) -> CniError + '_ {
    move |e| CniError::internal(format!("{what}: {e}"))
}

/// This node's underlay: the VTEP address, its device and MTU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlay {
    pub vtep: IpAddr,
    pub dev: u32,
    pub mtu: u32,
}

/// Find the underlay: the device holding `vtepIP`, or the default route's
/// source address and device.
pub fn underlay(nl: &mut Rtnl, vtep: Option<IpAddr>) -> Result<Underlay> {
    let addrs = nl.addrs(None, Family::Any).map_err(nl_err("listing addresses"))?;
    let (vtep, dev) = match vtep {
        Some(ip) => {
            let a = addrs.iter().find(|a| a.addr == ip).ok_or_else(|| {
                CniError::invalid_config(format!("overlay: vtepIP {ip} is not an address of this node"))
            })?;
            (ip, a.index)
        }
        None => {
            let routes =
                nl.routes(Family::V4, libc::RT_TABLE_MAIN as u32).map_err(nl_err("listing routes"))?;
            let def = routes.iter().filter(|r| r.is_default()).min_by_key(|r| r.priority.unwrap_or(0));
            let Some(def) = def else {
                return Err(CniError::invalid_config(
                    "overlay: cannot discover this node's underlay address (no IPv4 default route); set \"vtepIP\"",
                ));
            };
            let dev = def.oif.unwrap_or(0);
            let src = def.src.or_else(|| {
                addrs.iter().find(|a| a.index == dev && a.addr.is_ipv4() && a.scope == 0).map(|a| a.addr)
            });
            let Some(src) = src else {
                return Err(CniError::invalid_config(
                    "overlay: the default route's device has no IPv4 address; set \"vtepIP\"",
                ));
            };
            (src, dev)
        }
    };
    let mtu = nl.link_by_index(dev).map_err(nl_err("underlay device"))?.mtu;
    Ok(Underlay { vtep, dev, mtu })
}

/// Fill in what the node decides: VTEP, node name (default: the VTEP
/// address, unique in the cluster by construction) and MTU.
pub fn resolve(conf: &mut Config, u: &Underlay) {
    conf.vtep = Some(u.vtep);
    if conf.node.is_none() {
        conf.node = Some(u.vtep.to_string());
    }
    if conf.mtu.is_none() {
        let overhead = if u.vtep.is_ipv4() { VXLAN_OVERHEAD_V4 } else { VXLAN_OVERHEAD_V6 };
        conf.mtu = Some(u.mtu.saturating_sub(overhead).max(576));
    }
}

/// The devices of a network on this node.
pub struct Devices {
    pub bridge: Link,
}

/// Create (or find) the bridge and VXLAN device, gateway on the bridge,
/// forwarding on. Callers hold the network lock.
pub fn ensure_devices(nl: &mut Rtnl, conf: &Config, u: &Underlay) -> Result<Devices> {
    let mtu = conf.mtu;
    let (br, vx) = (conf.bridge(), conf.vxlan());
    let bridge = match nl.link_by_name(&br) {
        Ok(l) => l,
        Err(e) if e.not_found() => {
            let opts = BridgeOpts { mtu, mac: Some(common::random_mac()), vlan_filtering: None };
            nl.add_bridge(&br, &opts).map_err(nl_err("creating the overlay bridge"))?;
            let _ = sysctl::write(&format!("net/ipv6/conf/{br}/accept_ra"), "0");
            nl.link_by_name(&br).map_err(nl_err("overlay bridge"))?
        }
        Err(e) => return Err(nl_err("overlay bridge")(e)),
    };
    if bridge.kind.as_deref() != Some("bridge") {
        return Err(CniError::invalid_config(format!("overlay: {br:?} exists but is not a bridge")));
    }
    let vxlan = match nl.link_by_name(&vx) {
        Ok(l) => l,
        Err(e) if e.not_found() => {
            let opts = VxlanOpts {
                vni: conf.vni,
                local: u.vtep,
                port: VXLAN_PORT,
                underlay: Some(u.dev),
                learning: false,
                proxy: true,
                mtu,
                mac: Some(common::random_mac()),
            };
            nl.add_vxlan(&vx, &opts).map_err(|e| {
                let hint =
                    if e.is(libc::EEXIST) { " (another VXLAN device uses this VNI and port)" } else { "" };
                CniError::internal(format!("creating {vx}: {e}{hint}"))
            })?;
            nl.link_by_name(&vx).map_err(nl_err("overlay VXLAN device"))?
        }
        Err(e) => return Err(nl_err("overlay VXLAN device")(e)),
    };
    if vxlan.kind.as_deref() != Some("vxlan") {
        return Err(CniError::invalid_config(format!("overlay: {vx:?} exists but is not a VXLAN device")));
    }
    if vxlan.master != Some(bridge.index) {
        nl.set_master(vxlan.index, bridge.index)
            .map_err(nl_err("plugging the VXLAN device into the bridge"))?;
        let no_learning = BridgePortOpts { learning: Some(false), ..Default::default() };
        nl.set_bridge_port(vxlan.index, &no_learning)
            .map_err(nl_err("turning off learning on the VXLAN port"))?;
    }
    for l in [&bridge, &vxlan] {
        if !l.is_up() {
            nl.set_up(l.index).map_err(nl_err("setting the overlay devices up"))?;
        }
    }
    let gw = conf.gateway;
    let has_gw = nl
        .addrs(Some(bridge.index), Family::V4)
        .map_err(nl_err("bridge addresses"))?
        .iter()
        .any(|a| a.addr == gw);
    if !has_gw {
        match nl.add_addr(bridge.index, gw, conf.subnet.prefix, &AddrOpts::default()) {
            Ok(()) => {}
            Err(e) if e.is(libc::EEXIST) => {}
            Err(e) => return Err(nl_err("adding the gateway to the overlay bridge")(e)),
        }
    }
    ifconfig::enable_forwarding(nl, &bridge, true, false)?;
    Ok(Devices { bridge })
}

/// Remove the network's devices (entries go with them). Absent is fine.
pub fn remove_devices(nl: &mut Rtnl, conf: &Config) -> Result<()> {
    for name in [conf.vxlan(), conf.bridge()] {
        match nl.del_link_by_name(&name) {
            Ok(()) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(nl_err(&format!("removing {name}"))(e)),
        }
    }
    Ok(())
}

/// One remote container as the kernel must know it.
pub type Entry = (Ipv4Addr, [u8; 6], IpAddr);

/// Make the VXLAN device's and bridge's entries exactly `want`: add what is
/// missing or different, remove what etcd no longer has. Returns how many
/// changes were made. Absent devices (network torn down) are nothing to do.
pub fn sync_entries(nl: &mut Rtnl, conf: &Config, want: &BTreeSet<Entry>) -> Result<usize> {
    let vxlan = match nl.link_by_name(&conf.vxlan()) {
        Ok(l) => l,
        Err(e) if e.not_found() => return Ok(0),
        Err(e) => return Err(nl_err("overlay VXLAN device")(e)),
    };
    let fdb = nl.fdb_entries().map_err(nl_err("listing forwarding entries"))?;
    let remote: BTreeMap<[u8; 6], IpAddr> = fdb
        .iter()
        .filter(|f| f.index == vxlan.index && f.is_vxlan_remote())
        .filter_map(|f| Some((f.mac, f.dst?)))
        .collect();
    let statics: BTreeSet<[u8; 6]> =
        fdb.iter().filter(|f| f.index == vxlan.index && f.is_bridge_static()).map(|f| f.mac).collect();
    let neigh: BTreeMap<Ipv4Addr, Option<[u8; 6]>> = nl
        .neighbours(Some(vxlan.index), Family::V4)
        .map_err(nl_err("listing neighbours"))?
        .into_iter()
        .filter_map(|n| match n.ip {
            IpAddr::V4(ip) => Some((ip, n.mac)),
            IpAddr::V6(_) => None,
        })
        .collect();

    let want_macs: BTreeMap<[u8; 6], IpAddr> = want.iter().map(|(_, mac, vtep)| (*mac, *vtep)).collect();
    let want_ips: BTreeMap<Ipv4Addr, [u8; 6]> = want.iter().map(|(ip, mac, _)| (*ip, *mac)).collect();
    let mut changes = 0;
    let idx = vxlan.index;
    // Remove first: a reused address must not keep its old pairing.
    for ip in neigh.keys().filter(|ip| !want_ips.contains_key(ip)) {
        ok_if_gone(nl.del_neigh(idx, IpAddr::V4(*ip)), "removing a neighbour entry")?;
        changes += 1;
    }
    for mac in remote.keys().filter(|m| !want_macs.contains_key(*m)) {
        ok_if_gone(nl.del_vxlan_fdb(idx, *mac), "removing a VXLAN forwarding entry")?;
        changes += 1;
    }
    for mac in statics.iter().filter(|m| !want_macs.contains_key(*m)) {
        ok_if_gone(nl.del_bridge_fdb(idx, *mac), "removing a bridge forwarding entry")?;
        changes += 1;
    }
    for (mac, vtep) in &want_macs {
        if remote.get(mac) != Some(vtep) {
            nl.set_vxlan_fdb(idx, *mac, *vtep).map_err(nl_err("adding a VXLAN forwarding entry"))?;
            changes += 1;
        }
        if !statics.contains(mac) {
            nl.set_bridge_fdb(idx, *mac).map_err(nl_err("adding a bridge forwarding entry"))?;
            changes += 1;
        }
    }
    for (ip, mac) in &want_ips {
        if neigh.get(ip) != Some(&Some(*mac)) {
            nl.set_neigh(idx, IpAddr::V4(*ip), *mac).map_err(nl_err("adding a neighbour entry"))?;
            changes += 1;
        }
    }
    Ok(changes)
}

fn ok_if_gone(r: std::result::Result<(), NlError>, what: &str) -> Result<()> {
    match r {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(nl_err(what)(e)),
    }
}

/// The container's routes: the default route through the gateway (the
/// subnet route comes with its address).
pub fn container_routes(conf: &Config) -> Vec<common::spec::Route> {
    vec![common::spec::Route::new("0.0.0.0/0".parse().unwrap(), Some(conf.gateway))]
}

/// Is `name` a link of this netns? (CHECK)
pub fn link(nl: &mut Rtnl, name: &str) -> Result<Link> {
    nl.link_by_name(name).map_err(|e| CniError::internal(format!("{name} is missing: {e}")))
}
