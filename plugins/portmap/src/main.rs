#![cfg_attr(not(test), no_main)]
//! portmap: publishes container ports on the host (`docker run -p` for CNI;
//! containerd's hostPort, Podman's `-p`). A chained plugin: it reads the
//! container addresses of `CNI_IFNAME` from prevResult and passes the result
//! through unchanged.
//!
//! State lives in one nf_tables table, `inet cnirs_portmap`, as map elements
//! tagged `"<network>/<containerID>/<ifname>"` (`common::nft::tag`; layout in [`nat`]): ADD is one
//! transaction adding elements, the packet path is a map lookup, DEL finds
//! the elements by tag (no netns or prevResult needed) and the table goes
//! with the last one.
//!
//! Fields: `snat` (default true), `masqAll`, `backend` (accepted; always
//! nf_tables), `markMasqBit`/`externalSetMarkChain` (validated, no effect: no
//! packet marks are used), `conditionsV4/V6` (unsupported: code 2 when not
//! empty). See README.md.

mod nat;

use std::net::IpAddr;

use common::ipnet::IpNet;
use common::netlink::rtnl::{Family as RtFamily, Rtnl};
use common::nft::tag::Owner;
use common::nft::Nft;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::{conntrack, sysctl, CniError, Result};

use nat::Attachment;
use portmap::config::{self, Config};

struct Portmap;

/// The first IPv4 and IPv6 address of the container interface.
fn container_addrs(prev: &CniResult, ifname: &str) -> (Option<IpNet>, Option<IpNet>) {
    let ips = prev.ips_of(ifname);
    let first = |v4: bool| ips.iter().find(|ip| ip.address.is_ipv4() == v4).map(|ip| ip.address);
    (first(true), first(false))
}

fn localnet_key(ifname: &str) -> String {
    format!("net/ipv4/conf/{ifname}/route_localnet")
}

/// The host interface that routes to `addr` (longest prefix in the main
/// table), if its route_localnet is still off.
fn localnet_to_enable(addr: IpAddr) -> Result<Option<String>> {
    let mut nl = Rtnl::open()?;
    let routes = nl
        .routes(RtFamily::V4, libc::RT_TABLE_MAIN as u32)
        .map_err(|e| CniError::internal(format!("listing routes: {e}")))?;
    let best = routes
        .iter()
        .filter(|r| r.oif.is_some() && r.gateway.is_none())
        .filter(|r| IpNet { addr: r.dst, prefix: r.prefix }.contains(&addr))
        .max_by_key(|r| r.prefix);
    let Some(index) = best.and_then(|r| r.oif) else { return Ok(None) };
    let link = nl.link_by_index(index).map_err(|e| CniError::internal(format!("interface {index}: {e}")))?;
    match sysctl::read(&localnet_key(&link.name)) {
        Ok(v) if v == "1" => Ok(None),
        _ => Ok(Some(link.name)),
    }
}

/// Delete UDP conntrack entries to the given host ports (at a local address,
/// or at the given host address), so datagrams follow the new mapping.
/// Best effort: a failure only leaves what the reference leaves.
fn flush_udp(ports: &[(u16, Option<IpAddr>)]) {
    if ports.is_empty() {
        return;
    }
    let local: Vec<IpAddr> = Rtnl::open()
        .and_then(|mut nl| nl.addrs(None, RtFamily::Any))
        .map(|a| a.into_iter().map(|a| a.addr).collect())
        .unwrap_or_default();
    let Ok(mut sock) = common::netlink::Socket::open(libc::NETLINK_NETFILTER) else { return };
    let Ok(entries) = conntrack::list(&mut sock, 0) else { return };
    // sorted by port: thousands of ports against thousands of entries
    let mut ports = ports.to_vec();
    ports.sort();
    for e in entries.iter().filter(|e| e.proto == conntrack::PROTO_UDP) {
        let from = ports.partition_point(|(port, _)| *port < e.dport);
        let hit = ports[from..].iter().take_while(|(port, _)| *port == e.dport).any(|(_, ip)| match ip {
            Some(ip) => *ip == e.dst,
            None => e.dst.is_loopback() || local.contains(&e.dst),
        });
        if hit {
            let _ = conntrack::delete(&mut sock, e);
        }
    }
}

/// Remove the elements `doomed` selects, then flush their UDP conntrack
/// entries and turn route_localnet back off when the table went.
fn prune(doomed: impl Fn(Option<&Owner>) -> bool) -> Result<()> {
    let mut nft = Nft::open()?;
    let pruned = {
        let _lock = nat::lock()?;
        let pruned = nat::prune(&mut nft, doomed)?;
        for ifname in &pruned.localnet {
            // the interface may be gone; nothing to turn off then
            let _ = sysctl::write(&localnet_key(ifname), "0");
        }
        pruned
    };
    flush_udp(&pruned.udp_ports);
    Ok(())
}

impl Plugin for Portmap {
    fn about(&self) -> String {
        format!("CNI portmap plugin v{} (nf_tables)", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let prev = args.conf.prev_result.clone().ok_or_else(|| {
            CniError::invalid_config("portmap must be called as a chained plugin (no prevResult)")
        })?;
        let cfg = Config::load(&args.conf)?;
        if cfg.mappings.is_empty() {
            return Ok(prev);
        }
        let (c4, c6) = container_addrs(&prev, &args.ifname);
        let att = Attachment::new(&args.container_id, &args.ifname, &args.conf.name);
        let want = nat::wanted(&cfg, c4, c6, &att);
        if want.entries.is_empty() {
            return Ok(prev);
        }
        let mut nft = Nft::open()?;
        {
            let _lock = nat::lock()?;
            let localnet = match (want.wants_localhost(), c4) {
                (true, Some(c4)) => localnet_to_enable(c4.addr)?,
                _ => None,
            };
            nat::add(&mut nft, &want, localnet.as_deref())?;
            if let Some(ifname) = &localnet {
                // 127.0.0.1 -> container: the DNATed packet leaves with a
                // loopback source and the reply comes back to one.
                if let Err(e) = sysctl::write(&localnet_key(ifname), "1") {
                    let _ = nat::prune(&mut nft, |o| o.is_some_and(|o| att.owns(o)));
                    return Err(CniError::internal(e.to_string()));
                }
            }
        }
        flush_udp(&want.udp_ports());
        Ok(prev)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        // No mappings, no netfilter work (plugins #510/#464): GC covers
        // leftovers. Config errors do not stop a DEL: whatever an ADD left
        // is found by its tag.
        if config::parse_mappings(args.conf.runtime("portMappings")).is_ok_and(|m| m.is_empty()) {
            return Ok(());
        }
        // By container ID and ifname: the pair is attached once per node.
        let (cid, ifname) = (args.container_id.as_str(), args.ifname.as_str());
        prune(|o| o.is_some_and(|o| o.is(cid, ifname)))
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let cfg = Config::load(&args.conf)?;
        if cfg.mappings.is_empty() {
            return Ok(());
        }
        let prev = args
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::invalid_config("portmap CHECK needs prevResult"))?;
        let (c4, c6) = container_addrs(prev, &args.ifname);
        let att = Attachment::new(&args.container_id, &args.ifname, &args.conf.name);
        let want = nat::wanted(&cfg, c4, c6, &att);
        if want.entries.is_empty() {
            return Ok(());
        }
        nat::check(&mut Nft::open()?, &want)
    }

    fn status(&self, _args: &CmdArgs) -> Result<()> {
        let mut nft = Nft::open().map_err(|e| CniError::not_available(e.to_string()))?;
        nft.list_tables(Some(common::nft::Family::Inet))
            .map_err(|e| CniError::not_available(e.to_string()))?;
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        // This network's elements of attachments not in the list (and
        // untagged ones, which only a foreign hand could have added).
        let valid = args.conf.valid_attachments()?;
        let network = args.conf.name.as_str();
        prune(|o| match o {
            None => true,
            Some(o) => o.in_network(network) && !valid.iter().any(|a| o.is(&a.container_id, &a.ifname)),
        })
    }
}

common::plugin_main!(Portmap);
