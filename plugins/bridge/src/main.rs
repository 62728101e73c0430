#![cfg_attr(not(test), no_main)]
//! bridge: each container gets a veth pair, one end inside as `CNI_IFNAME`,
//! the other plugged into a Linux bridge on the host that may carry the
//! gateway address, masquerade outgoing traffic and guard source MACs.
//!
//! ADD either completes or undoes everything it made; DEL removes every
//! host-side trace even when the container's netns is already gone.

mod links;
mod spoofcheck;
#[cfg(test)]
mod tests;

use common::ipam::{self, Ipam};
use common::ipnet::IpNet;
use common::links::link_error;
use common::masq::Masquerade;
use common::net::NetStack;
use common::netlink::rtnl::{Link, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface, Route};
use common::undo::{Side, Undo};
use common::{ifconfig, CniError, Errors, Result};

use bridge::config::{self, Config};

/// Masquerade (`ipMasq`) lives in `table inet cnirs_bridge`.
const MASQ: Masquerade = Masquerade::new("cnirs_bridge");

struct Bridge;

impl Plugin for Bridge {
    fn about(&self) -> String {
        format!("CNI bridge plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    /// The reference loads CNI_ARGS into `MacEnvArgs{MAC}`: other keys need IgnoreUnknown.
    fn known_args(&self) -> &'static [&'static str] {
        &["MAC"]
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let mac = args.requested_mac()?;
        // Validate the container netns before anything is created.
        let ns = Netns::open_container(&args.netns)?;
        add(args, &conf, mac, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?, &mut ipam::Exec)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let mut errors = Errors::new();
        let mut ctr = common::net::container_for_del(&args.netns, &mut errors)?;
        errors.note(del(args, &mut Rtnl::open()?, ctr.as_mut(), &mut ipam::Exec));
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // A bad CNI_NETNS is the first thing to report, before any state.
        let ns = Netns::open_container(&args.netns)?;
        if let Some(plugin) = args.conf.ipam_type() {
            ipam::check(plugin, args)?;
        }
        let prev = args
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::invalid_config("bridge CHECK needs prevResult"))?;
        let mut host = Rtnl::open()?;
        let bridge = host
            .link_by_name(&conf.bridge)
            .map_err(|e| CniError::internal(format!("bridge {:?} is missing: {e}", conf.bridge)))?;
        if bridge.kind.as_deref() != Some("bridge") {
            return Err(CniError::internal(format!("{:?} is not a bridge", conf.bridge)));
        }
        if conf.promisc_mode != bridge.is_promisc() {
            return Err(CniError::internal(format!(
                "bridge {:?} promiscuous mode differs from the config",
                conf.bridge
            )));
        }
        let mut ctr = Rtnl::in_netns(&ns)?;
        let ips = prev.ips_of(&args.ifname);
        let routes: Vec<Route> = prev.routes.clone();
        if !conf.disable_container_interface {
            let link = ifconfig::verify(&mut ctr, &args.ifname, &ips, &routes)?;
            // The host end must be the container end's peer and a port of the bridge.
            let peer =
                link.link.ok_or_else(|| CniError::internal(format!("{} is not a veth", args.ifname)))?;
            let host_end = host
                .link_by_index(peer)
                .map_err(|_| CniError::internal(format!("the host end of {} is missing", args.ifname)))?;
            if host_end.master != Some(bridge.index) {
                return Err(CniError::internal(format!(
                    "{} is not plugged into {:?}",
                    host_end.name, conf.bridge
                )));
            }
            if conf.uses_vlans() {
                links::check_port_vlans(&mut host, &conf, &host_end)?;
            }
        }
        if conf.is_gateway && conf.vlan > 0 && !ips.is_empty() {
            let gateways: Vec<IpNet> = ips
                .iter()
                .filter_map(|ip| Some(IpNet { addr: ip.gateway?, prefix: ip.address.prefix }))
                .collect();
            links::check_vlan_gateway(&mut host, &conf, &bridge, &gateways)?;
        }
        if conf.ip_masq {
            let nets: Vec<IpNet> = ips.iter().map(|ip| ip.address).collect();
            MASQ.check(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname, &nets)?;
        }
        if conf.macspoofchk {
            spoofcheck::check(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname)?;
        }
        Ok(())
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        ipam::status_if_configured(args)
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let valid = args.conf.valid_attachments()?;
        let mut errors = Errors::new();
        let mut host = Rtnl::open()?;
        errors.note(
            host.nft().map_err(Into::into).and_then(|mut nft| MASQ.gc(&mut nft, &args.conf.name, &valid)),
        );
        errors.note(spoofcheck::gc(&mut host, &args.conf.name, &valid));
        if let Some(plugin) = args.conf.ipam_type() {
            errors.note(ipam::gc(plugin, args));
        }
        errors.into_result()
    }
}

/// ADD: nothing is made for a container that already has the interface; a
/// failure later takes back what was made.
fn add<N: NetStack>(
    args: &CmdArgs,
    conf: &Config,
    mac: Option<[u8; 6]>,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
) -> Result<CniResult> {
    common::links::ensure_name_free(ctr, &args.ifname)?;
    let mut undo = Undo::new(args);
    let res = add_attachment(args, conf, mac, host, ctr, ipam, &mut undo);
    if res.is_err() {
        undo.run(host, ctr, ipam);
    }
    res
}

/// The ADD story. Every step that makes something registers its undo.
fn add_attachment<'a, N: NetStack>(
    args: &'a CmdArgs,
    conf: &Config,
    mac: Option<[u8; 6]>,
    host: &mut N,
    ctr: &mut N,
    ipam: &mut impl Ipam,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    // 1. The bridge and the veth pair, under the bridge lock.
    let (bridge, host_veth) = {
        let _lock = links::bridge_lock(host, &conf.bridge)?;
        let (bridge, created) = links::ensure_bridge(host, conf)?;
        if created {
            let b = bridge.clone();
            undo.push("remove the bridge if unused", move |host, _| {
                let _lock = links::bridge_lock(host, &b.name)?;
                links::remove_bridge_if_unused(host, &b)
            });
        }
        let mtu = (conf.mtu > 0).then_some(conf.mtu);
        let host_name = common::veth::create_for_container(ctr, host, &args.ifname, mtu, mac)?;
        undo.delete_link(Side::Container, &args.ifname);
        let port = links::attach_port(host, conf, &bridge, &host_name)?;
        (bridge, port)
    };

    // 2. MAC spoof check before the container can send anything.
    let container_mac = ctr.link_by_name(&args.ifname).ok().and_then(|l| l.mac).unwrap_or_default();
    if conf.macspoofchk {
        undo.push("remove the MAC spoof check", |host, _| {
            spoofcheck::del(host, &args.conf.name, &args.container_id, &args.ifname)
        });
        let (name, id, ifname) = (&args.conf.name, &args.container_id, &args.ifname);
        spoofcheck::add(&mut host.nft()?, name, id, ifname, &host_veth.name, container_mac)?;
    }

    // 3. Addresses, once the interface exists (as in the reference: dhcp
    //    runs its DHCP exchange on it; the undo releases them before the
    //    link goes).
    let mut res = ipam::allocate(ipam, args, undo)?;
    if conf.is_gateway {
        fill_gateways(&mut res);
    }

    // 4. The container side: addresses, link up, routes.
    if conf.is_default_gateway {
        add_default_routes(&mut res);
    }
    let clink = if conf.disable_container_interface {
        ctr.link_by_name(&args.ifname).map_err(|e| link_error("container interface", e))?
    } else {
        ifconfig::configure(ctr, &args.ifname, &res.ips, &res.routes, conf.enable_dad)?
    };

    // 5. The gateway on the bridge (in a VLAN: on `<bridge>.<vid>`),
    //    forwarding, masquerade.
    let mut vlan_gateway = None;
    if conf.is_gateway {
        let gw_link = if conf.vlan > 0 {
            let l = ensure_vlan_gateway(conf, host, &bridge, &host_veth.name, undo)?;
            vlan_gateway = Some(l.clone());
            l
        } else {
            bridge.clone()
        };
        for ip in res.ips.iter().filter(|ip| ip.gateway.is_some()) {
            let gw = IpNet { addr: ip.gateway.unwrap(), prefix: ip.address.prefix };
            links::ensure_gateway_addr(host, conf, &gw_link, &gw)?;
        }
        let v4 = res.ips.iter().any(|ip| ip.address.is_ipv4());
        let v6 = res.ips.iter().any(|ip| !ip.address.is_ipv4());
        ifconfig::enable_forwarding(host, &gw_link, v4, v6)?;
    }
    if conf.ip_masq && !res.ips.is_empty() {
        undo.push("remove the masquerade", |host, _| {
            MASQ.del(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname)
        });
        let nets: Vec<IpNet> = res.ips.iter().map(|ip| ip.address).collect();
        MASQ.add(&mut host.nft()?, &args.conf.name, &args.container_id, &args.ifname, &nets)?;
    }

    // 6. The result: bridge, host end, container end; every IP on the container end.
    let host_veth = if conf.disable_container_interface {
        host_veth
    } else {
        let port = common::veth::wait_oper_up(host, host_veth.index)?;
        // The kernel's announcement when the container end came up was lost:
        // the bridge port was not forwarding yet. Repeat it now, so a neighbour
        // holding a stale MAC for a reused address learns the new one at once.
        ifconfig::announce(ctr, &clink)?;
        port
    };
    let bridge = host.link_by_index(bridge.index).unwrap_or(bridge);
    res.interfaces = vec![
        Interface { name: bridge.name.clone(), mac: bridge.mac_string(), ..Default::default() },
        Interface { name: host_veth.name.clone(), mac: host_veth.mac_string(), ..Default::default() },
        Interface {
            name: clink.name.clone(),
            mac: clink.mac_string(),
            sandbox: args.netns.clone(),
            ..Default::default()
        },
    ];
    if let Some(gw) = vlan_gateway {
        res.interfaces.push(Interface { name: gw.name.clone(), mac: gw.mac_string(), ..Default::default() });
    }
    for ip in &mut res.ips {
        ip.interface = Some(2);
    }
    if let Some(dns) = args.conf.dns.as_ref().filter(|d| !d.is_empty()) {
        res.dns = dns.clone();
    }
    Ok(res)
}

/// The gateway link of the VLAN, made under the bridge lock; one this ADD
/// made goes again when the ADD fails, unless another container's port is
/// in that VLAN by then.
fn ensure_vlan_gateway<N: NetStack>(
    conf: &Config,
    host: &mut N,
    bridge: &Link,
    own_port: &str,
    undo: &mut Undo<'_, N>,
) -> Result<Link> {
    let _lock = links::bridge_lock(host, &conf.bridge)?;
    let (gw, created) = links::ensure_vlan_gateway(host, conf, bridge)?;
    if created {
        let (bridge, name, vid, own) =
            (conf.bridge.clone(), gw.name.clone(), conf.vlan as u16, own_port.to_string());
        undo.push("remove the VLAN gateway if unused", move |host, _| {
            let _lock = links::bridge_lock(host, &bridge)?;
            links::remove_vlan_gateway_if_unused(host, &name, vid, &own)
        });
    }
    Ok(gw)
}

/// DEL: the container end takes the host end with it; tagged state is found
/// by container ID, whatever the config says now, also without the netns.
fn del<N: NetStack>(args: &CmdArgs, host: &mut N, ctr: Option<&mut N>, ipam: &mut impl Ipam) -> Result<()> {
    let mut errors = Errors::new();
    // IPAM first, as the reference does: dhcp sends its DHCPRELEASE through
    // the container's interface, which must still be there.
    if let Some(plugin) = args.conf.ipam_type() {
        errors.note(ipam.del(plugin, args));
    }
    if let Some(ctr) = ctr {
        errors.note(common::links::delete_if_exists(ctr, &args.ifname));
    }
    let (name, id, ifname) = (&args.conf.name, &args.container_id, &args.ifname);
    errors.note(host.nft().map_err(Into::into).and_then(|mut nft| MASQ.del(&mut nft, name, id, ifname)));
    errors.note(spoofcheck::del(host, name, id, ifname));
    errors.into_result()
}

/// Gateways the IPAM result left out: the first address of each subnet.
fn fill_gateways(res: &mut CniResult) {
    for ip in &mut res.ips {
        if ip.gateway.is_none() {
            ip.gateway = Some(common::ipnet::next_ip(&ip.address.network().addr));
        }
    }
}

/// isDefaultGateway: a default route per family through its gateway, unless
/// IPAM already gave one.
fn add_default_routes(res: &mut CniResult) {
    for v4 in [true, false] {
        let Some(gw) = res.ips.iter().find(|ip| ip.address.is_ipv4() == v4).and_then(|ip| ip.gateway) else {
            continue;
        };
        if res.routes.iter().any(|r| r.dst.is_ipv4() == v4 && r.dst.prefix == 0) {
            continue;
        }
        let any = if v4 { "0.0.0.0/0" } else { "::/0" };
        res.routes.push(Route::new(any.parse().unwrap(), Some(gw)));
    }
}

common::plugin_main!(Bridge);
