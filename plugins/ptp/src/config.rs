//! The ptp plugin's configuration: every field of the reference plugin.

use serde::Deserialize;

use common::error::shown;
use common::skel::CmdArgs;
use common::{CniError, Result};

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    /// Masquerade the container's traffic leaving its subnet.
    pub ip_masq: bool,
    /// Accepted for compatibility; masquerade is always programmed in nf_tables.
    pub ip_masq_backend: Option<String>,
    /// Both ends of the veth; 0 is the kernel's default.
    pub mtu: u32,
}

const MIN_MTU: u32 = 68;
const MAX_MTU: u32 = 65535;

impl Config {
    /// Parse and validate everything that needs no kernel lookup (code 7).
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let c: Config = args.conf.fields()?;
        if let Some(b) = &c.ip_masq_backend {
            if !matches!(b.as_str(), "" | "iptables" | "nftables") {
                return Err(CniError::invalid_config(format!(
                    "invalid ipMasqBackend {} (must be \"iptables\" or \"nftables\")",
                    shown(b)
                )));
            }
        }
        // 68 is the least the kernel takes for a veth (IPv4's minimum).
        if c.mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&c.mtu) {
            return Err(CniError::invalid_config(format!(
                "invalid mtu {} (must be {MIN_MTU}-{MAX_MTU}, or 0 for the kernel's default)",
                c.mtu
            )));
        }
        // The container's addresses and the gateway the host end takes come from IPAM.
        if args.conf.ipam_type().is_none() {
            return Err(CniError::invalid_config(
                "ptp needs an \"ipam\" section with a type: the container's addresses and gateways come from it",
            ));
        }
        Ok(c)
    }
}
