#![cfg_attr(not(test), no_main)]
//! static: an IPAM plugin that allocates nothing. The addresses, routes and
//! DNS of the result come straight from the configuration, `CNI_ARGS` or the
//! runtime (`args.cni.ips`, capability `ips`), as the reference plugin does —
//! useful for fixed addresses, e.g. the same address in several VLANs.
//!
//! It keeps no state: DEL and GC have nothing to release.

mod config;

use common::skel::{CmdArgs, Plugin};
use common::spec::{version, CniResult, IpConfig};
use common::{CniError, Result};

struct Static;

impl Plugin for Static {
    fn about(&self) -> String {
        format!("CNI static IPAM plugin {}", env!("CARGO_PKG_VERSION"))
    }

    /// The reference loads CNI_ARGS into `IPAMEnvArgs{IP, GATEWAY}`: other keys need IgnoreUnknown.
    fn known_args(&self) -> &'static [&'static str] {
        &["IP", "GATEWAY"]
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let cfg = config::load(&a.conf, &a.args)?;
        // Built in the 1.1.0 shape; skel converts to the config's cniVersion.
        Ok(CniResult {
            cni_version: version::LATEST.into(),
            interfaces: Vec::new(),
            ips: cfg
                .addresses
                .into_iter()
                .map(|a| IpConfig { address: a.address, gateway: a.gateway, interface: None })
                .collect(),
            routes: cfg.routes,
            dns: cfg.dns,
        })
    }

    /// Nothing was allocated, so nothing is released.
    fn del(&self, _: &CmdArgs) -> Result<()> {
        Ok(())
    }

    /// Every configured address must be in `prevResult`, with the configured
    /// gateway when one is set.
    fn check(&self, a: &CmdArgs) -> Result<()> {
        let cfg = config::load(&a.conf, &a.args)?;
        let prev = a
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::invalid_config("Required prevResult missing"))?;
        for want in &cfg.addresses {
            let Some(got) = prev.ips.iter().find(|ip| ip.address.addr == want.address.addr) else {
                return Err(CniError::internal(format!(
                    "static: address {} of interface {} is not in prevResult",
                    want.address, a.ifname
                )));
            };
            if want.gateway.is_some() && got.gateway != want.gateway {
                return Err(CniError::internal(format!(
                    "static: address {} of interface {} has gateway {} in prevResult, the config says {}",
                    want.address.addr,
                    a.ifname,
                    got.gateway.map_or("none".to_string(), |g| g.to_string()),
                    want.gateway.map_or("none".to_string(), |g| g.to_string()),
                )));
            }
        }
        Ok(())
    }

    /// Ready whenever the configuration is readable.
    fn status(&self, a: &CmdArgs) -> Result<()> {
        config::load(&a.conf, &a.args).map(drop)
    }

    fn gc(&self, _: &CmdArgs) -> Result<()> {
        Ok(())
    }
}

common::plugin_main!(Static);
