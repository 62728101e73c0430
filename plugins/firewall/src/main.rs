#![cfg_attr(not(test), no_main)]
//! firewall: a chained plugin that lets forwarded traffic to and from the
//! container's addresses through the host's filter, and optionally isolates
//! bridge networks from each other (`ingressPolicy`).
//!
//! Everything lives in nf_tables (see [`rules`] for the layout and for how
//! our accepts get past a `policy drop` forward chain of another table).
//! State is tagged per attachment, so DEL needs neither the netns nor the
//! prevResult, and GC works from the kernel alone.

mod rules;

use common::error::shown;
use common::ipnet::IpNet;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::{CniError, Result};

use firewall::config::{Config, Ingress};

/// What one attachment contributes: its addresses and, for isolation, its bridge.
struct Attachment<'a> {
    network: &'a str,
    container_id: &'a str,
    ifname: &'a str,
    ips: Vec<IpNet>,
    bridge: Option<String>,
}

fn prev_result(args: &CmdArgs) -> Result<&CniResult> {
    args.conf.prev_result.as_ref().ok_or_else(|| {
        CniError::invalid_config("firewall must be called as a chained plugin: prevResult is missing")
    })
}

fn attachment<'a>(args: &'a CmdArgs, conf: &Config, prev: &CniResult) -> Result<Attachment<'a>> {
    let ips: Vec<IpNet> = prev.ips_of(&args.ifname).iter().map(|ip| ip.address).collect();
    // The bridge is the first host-side interface (the reference takes
    // interfaces[0]; bridge always puts the bridge there).
    let bridge = prev.interfaces.iter().find(|i| i.sandbox.is_empty()).map(|i| i.name.clone());
    if conf.ingress != Ingress::Open {
        match &bridge {
            None => {
                return Err(CniError::invalid_config(
                    "ingressPolicy needs the bridge in prevResult: chain \"firewall\" after \"bridge\"",
                ))
            }
            Some(b) if common::skel::validate_ifname(b).is_err() => {
                return Err(CniError::invalid_config(format!(
                    "invalid bridge name {} in prevResult",
                    shown(b)
                )))
            }
            Some(_) => {}
        }
    }
    Ok(Attachment {
        network: &args.conf.name,
        container_id: &args.container_id,
        ifname: &args.ifname,
        ips,
        bridge,
    })
}

struct Firewall;

impl Plugin for Firewall {
    fn about(&self) -> String {
        format!("CNI firewall plugin v{} (nf_tables)", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let prev = prev_result(args)?;
        let att = attachment(args, &conf, prev)?;
        // No address (an L2-only network): nothing to let through or isolate.
        if !att.ips.is_empty() {
            rules::add(&att, conf.ingress)?;
        }
        Ok(prev.clone())
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        // The state is found by tag, whatever the config says now: a config
        // ADD would refuse must not make DEL fail forever (a runtime
        // retries DEL until it succeeds, and the pod is wedged meanwhile).
        rules::del(&args.conf.name, &args.container_id, &args.ifname)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let prev = prev_result(args)?;
        let att = attachment(args, &conf, prev)?;
        rules::check(&att, conf.ingress)
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        Config::load(args)?;
        // nf_tables must be usable in our netns.
        common::nft::Nft::open()
            .and_then(|mut n| n.list_tables(Some(common::nft::Family::Inet)))
            .map(drop)
            .map_err(|e| CniError::not_available(format!("nf_tables is not usable: {e}")))
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        Config::load(args)?;
        let valid = args.conf.valid_attachments()?;
        rules::gc(&args.conf.name, &valid)
    }
}

common::plugin_main!(Firewall);
