//! The vlan plugin's configuration: every field of the reference plugin.

use serde::Deserialize;

use common::net::NetStack;
use common::netlink::rtnl::Link;
use common::on_master;
use common::skel::CmdArgs;
use common::{CniError, Result};

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    master: String,
    vlan_id: i64,
    mtu: i64,
    link_in_container: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub master: String,
    /// 0–4094 (0 tags frames with priority only, as the kernel allows).
    pub vlan_id: u16,
    /// 0: the master's MTU.
    pub mtu: u32,
    /// The master lives in the container netns.
    pub link_in_container: bool,
}

impl Config {
    /// Parse and validate everything that needs no kernel lookup (code 7).
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let raw: Raw = args.conf.fields()?;
        if raw.master.is_empty() {
            return Err(CniError::invalid_config(
                "\"master\" field is required. It specifies the host interface name to create the VLAN for",
            ));
        }
        on_master::parse_master(&raw.master)?;
        // 4095 is reserved; the kernel refuses it (ERANGE).
        let vlan_id = u16::try_from(raw.vlan_id).ok().filter(|id| *id <= 4094).ok_or_else(|| {
            CniError::invalid_config(format!("invalid VLAN ID {} (must be between 0 and 4094)", raw.vlan_id))
        })?;
        Ok(Config {
            master: raw.master,
            vlan_id,
            mtu: on_master::parse_mtu(raw.mtu)?,
            link_in_container: raw.link_in_container,
        })
    }

    /// The master as `nl` (the plugin's netns, or the container's with
    /// `linkInContainer`) sees it; with `check_mtu`, `mtu` must not exceed
    /// the master's. Errors are config errors (code 7).
    pub fn master_link(&self, nl: &mut impl NetStack, check_mtu: bool) -> Result<Link> {
        let master = on_master::find(nl, &self.master, self.link_in_container, "a VLAN")?;
        if check_mtu {
            on_master::check_mtu(self.mtu, &master)?;
        }
        Ok(master)
    }
}
