//! The firewall's own fields: `backend` and `ingressPolicy`.

use serde::Deserialize;

use common::error::shown;
use common::skel::CmdArgs;
use common::{CniError, Result};

/// `ingressPolicy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ingress {
    /// Every forwarded connection to the container is allowed (default).
    Open,
    /// Traffic entering from another isolated bridge is dropped (Podman `isolate=true`).
    SameBridge,
    /// SameBridge, and traffic between ports of the same bridge is dropped as well.
    Isolated,
}

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct RawConfig {
    backend: String,
    /// Accepted and ignored: we keep no iptables admin chain.
    #[allow(dead_code)]
    iptables_admin_chain_name: String,
    #[allow(dead_code)]
    firewalld_zone: String,
    ingress_policy: String,
}

#[derive(Debug)]
pub struct Config {
    pub ingress: Ingress,
}

impl Config {
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let raw: RawConfig = args.conf.fields()?;
        match raw.backend.as_str() {
            "" | "iptables" | "nftables" => {}
            "firewalld" => {
                return Err(CniError::unsupported_field(
                    "backend \"firewalld\" is not supported: this plugin programs nf_tables directly \
                     (use \"iptables\", \"nftables\" or leave it empty)",
                ))
            }
            other => {
                return Err(CniError::invalid_config(format!(
                    "unknown firewall backend {} (must be \"iptables\", \"nftables\" or \"firewalld\")",
                    shown(other)
                )))
            }
        }
        let ingress = match raw.ingress_policy.as_str() {
            "" | "open" => Ingress::Open,
            "same-bridge" => Ingress::SameBridge,
            "isolated" => Ingress::Isolated,
            other => {
                return Err(CniError::invalid_config(format!(
                    "unknown ingressPolicy {} (must be \"open\", \"same-bridge\" or \"isolated\")",
                    shown(other)
                )))
            }
        };
        Ok(Config { ingress })
    }
}
