//! The bridge plugin's configuration: every field of the reference plugin.

use serde::Deserialize;

use common::error::shown;
use common::skel::CmdArgs;
use common::{CniError, Result};

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Config {
    pub bridge: String,
    pub is_gateway: bool,
    pub is_default_gateway: bool,
    pub force_address: bool,
    pub ip_masq: bool,
    /// Accepted for compatibility; masquerade is always programmed in nf_tables.
    pub ip_masq_backend: Option<String>,
    pub mtu: u32,
    pub hairpin_mode: bool,
    pub promisc_mode: bool,
    pub vlan: i64,
    pub vlan_trunk: Vec<Trunk>,
    pub preserve_default_vlan: bool,
    #[serde(rename = "enabledad")]
    pub enable_dad: bool,
    pub macspoofchk: bool,
    pub disable_container_interface: bool,
    pub port_isolation: bool,
}

#[derive(Deserialize, Debug, Clone, Default)]
pub struct Trunk {
    pub id: Option<i64>,
    #[serde(rename = "minID")]
    pub min_id: Option<i64>,
    #[serde(rename = "maxID")]
    pub max_id: Option<i64>,
}

pub const DEFAULT_BRIDGE: &str = "cni0";
const MIN_MTU: u32 = 68;
const MAX_MTU: u32 = 65535;

impl Config {
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let mut c: Config = args.conf.fields()?;
        if c.bridge.is_empty() {
            c.bridge = DEFAULT_BRIDGE.into();
        }
        common::skel::validate_ifname(&c.bridge)
            .map_err(|_| CniError::invalid_config(format!("invalid bridge name {}", shown(&c.bridge))))?;
        if c.is_default_gateway {
            c.is_gateway = true;
        }
        if c.hairpin_mode && c.promisc_mode {
            return Err(CniError::invalid_config(
                "cannot set hairpin mode and promiscuous mode at the same time",
            ));
        }
        if !(0..=4094).contains(&c.vlan) {
            return Err(CniError::invalid_config(format!(
                "invalid VLAN ID {} (must be between 0 and 4094)",
                c.vlan
            )));
        }
        c.trunk_vlans()?;
        if c.is_gateway && c.vlan > 0 && args.conf.ipam_type().is_some() {
            let gw = vlan_gateway_name(&c.bridge, c.vlan);
            common::skel::validate_ifname(&gw).map_err(|_| {
                CniError::invalid_config(format!(
                    "the gateway of VLAN {} would be the interface {}, longer than 15 bytes: use a shorter bridge name",
                    c.vlan,
                    shown(&gw)
                ))
            })?;
        }
        if let Some(b) = &c.ip_masq_backend {
            if !matches!(b.as_str(), "" | "iptables" | "nftables") {
                return Err(CniError::invalid_config(format!(
                    "invalid ipMasqBackend {} (must be \"iptables\" or \"nftables\")",
                    shown(b)
                )));
            }
        }
        if c.disable_container_interface && args.conf.ipam_type().is_some() {
            return Err(CniError::invalid_config(
                "disableContainerInterface cannot be used with an ipam plugin: addresses need a running interface",
            ));
        }
        // 68 is the least the kernel takes for a veth or bridge (IPv4's
        // minimum), 65535 the most; 0 is the kernel's default.
        if c.mtu != 0 && !(MIN_MTU..=MAX_MTU).contains(&c.mtu) {
            return Err(CniError::invalid_config(format!(
                "invalid mtu {} (must be {MIN_MTU}-{MAX_MTU}, or 0 for the kernel's default)",
                c.mtu
            )));
        }
        Ok(c)
    }

    /// The trunk VLAN ids, validated (1–4094, both bounds of a range given).
    pub fn trunk_vlans(&self) -> Result<Vec<u16>> {
        let mut ids = Vec::new();
        let check = |v: i64| -> Result<u16> {
            if (1..=4094).contains(&v) {
                Ok(v as u16)
            } else {
                Err(CniError::invalid_config(format!(
                    "invalid vlanTrunk ID {v} (must be between 1 and 4094)"
                )))
            }
        };
        for t in &self.vlan_trunk {
            match (t.id, t.min_id, t.max_id) {
                (Some(id), None, None) => ids.push(check(id)?),
                (None, Some(lo), Some(hi)) => {
                    let (lo, hi) = (check(lo)?, check(hi)?);
                    if lo > hi {
                        return Err(CniError::invalid_config(format!("invalid vlanTrunk range {lo}-{hi}")));
                    }
                    ids.extend(lo..=hi);
                }
                (None, Some(_), None) | (None, None, Some(_)) => {
                    return Err(CniError::invalid_config("vlanTrunk ranges need both minID and maxID"))
                }
                _ => {
                    return Err(CniError::invalid_config(
                        "each vlanTrunk entry needs either id or minID/maxID",
                    ))
                }
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    pub fn uses_vlans(&self) -> bool {
        self.vlan != 0 || !self.vlan_trunk.is_empty()
    }
}

/// The link that carries the gateway of VLAN `vid` on `bridge`.
pub fn vlan_gateway_name(bridge: &str, vid: i64) -> String {
    format!("{bridge}.{vid}")
}
