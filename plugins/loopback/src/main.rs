#![cfg_attr(not(test), no_main)]
//! loopback: bring `lo` up inside the container and report its addresses.
//!
//! containerd runs it for every pod with cniVersion 0.3.1 and ifname `lo`;
//! `CNI_IFNAME` is ignored, the plugin always acts on `lo`.

use common::netlink::rtnl::{Family, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface, IpConfig};
use common::{CniError, Result};

struct Loopback;

/// The kernel gives `lo` this index in every network namespace
/// (LOOPBACK_IFINDEX), so no lookup by name is needed.
const LO_INDEX: u32 = 1;

impl Plugin for Loopback {
    fn about(&self) -> String {
        format!("CNI loopback plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let ns = Netns::open_container(&args.netns)?;
        let mut nl = Rtnl::in_netns(&ns)?;
        nl.set_up(LO_INDEX).map_err(|e| CniError::internal(format!("setting lo up: {e}")))?;
        let addrs = nl.addrs(Some(LO_INDEX), Family::Any)?;
        if let Some(odd) = addrs.iter().find(|a| !a.addr.is_loopback()) {
            return Err(CniError::internal(format!(
                "lo carries a non-loopback address {}/{}",
                odd.addr, odd.prefix
            )));
        }
        // A chained loopback passes the previous result through unchanged.
        if let Some(prev) = &args.conf.prev_result {
            return Ok(prev.clone());
        }
        let mut ips: Vec<IpConfig> = addrs
            .iter()
            .map(|a| IpConfig {
                address: common::ipnet::IpNet { addr: a.addr, prefix: a.prefix },
                gateway: None,
                interface: Some(0),
            })
            .collect();
        ips.sort_by_key(|ip| !ip.address.is_ipv4());
        Ok(CniResult {
            interfaces: vec![Interface {
                name: "lo".into(),
                mac: "00:00:00:00:00:00".into(),
                sandbox: args.netns.clone(),
                ..Default::default()
            }],
            ips,
            ..Default::default()
        })
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        // Nothing to undo once the namespace is gone.
        let Some(ns) = Netns::open_if_exists(&args.netns)? else { return Ok(()) };
        let mut nl = Rtnl::in_netns(&ns)?;
        match nl.set_down(LO_INDEX) {
            Ok(()) => Ok(()),
            Err(e) if e.not_found() => Ok(()),
            Err(e) => Err(CniError::internal(format!("setting lo down: {e}"))),
        }
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let ns = Netns::open_container(&args.netns)?;
        let lo = Rtnl::in_netns(&ns)?
            .link_by_index(LO_INDEX)
            .map_err(|e| CniError::internal(format!("lo: {e}")))?;
        if !lo.is_up() {
            return Err(CniError::internal("lo is down"));
        }
        Ok(())
    }

    fn status(&self, _: &CmdArgs) -> Result<()> {
        Ok(())
    }

    fn gc(&self, _: &CmdArgs) -> Result<()> {
        Ok(()) // loopback keeps no state outside the container
    }
}

common::plugin_main!(Loopback);
