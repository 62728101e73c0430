//! The macvlan plugin's configuration: every field of the reference plugin,
//! and the master lookup that validates it.

use serde::Deserialize;

use common::error::shown;
use common::net::NetStack;
use common::netlink::rtnl::{Link, MacvlanMode};
use common::on_master;
use common::skel::CmdArgs;
use common::{CniError, Result};

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    master: String,
    mode: String,
    mtu: i64,
    mac: String,
    link_in_container: bool,
    #[serde(rename = "bcqueuelen")]
    bc_queue_len: u32,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The configured master; empty means "the default route's interface".
    pub master: String,
    pub mode: MacvlanMode,
    /// 0: the kernel's choice (the master's MTU).
    pub mtu: u32,
    /// runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC > the config's `mac`.
    pub mac: Option<[u8; 6]>,
    /// The master lives in the container netns.
    pub link_in_container: bool,
    /// 0: the kernel default.
    pub bc_queue_len: u32,
}

impl Config {
    /// Parse and validate everything that needs no kernel lookup (code 7).
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let raw: Raw = args.conf.fields()?;
        let mode = match raw.mode.as_str() {
            "" => MacvlanMode::Bridge,
            m @ ("bridge" | "private" | "vepa" | "passthru") => MacvlanMode::parse(m).unwrap(),
            other => {
                return Err(CniError::invalid_config(format!(
                    "unknown macvlan mode {} (must be bridge, private, vepa or passthru)",
                    shown(other)
                )))
            }
        };
        let mtu = on_master::parse_mtu(raw.mtu)?;
        on_master::parse_master(&raw.master)?;
        let mac = match args.requested_mac()? {
            Some(m) => Some(m),
            None if raw.mac.is_empty() => None,
            None => Some(common::skel::parse_unicast_mac(&raw.mac)?),
        };
        Ok(Config {
            master: raw.master,
            mode,
            mtu,
            mac,
            link_in_container: raw.link_in_container,
            bc_queue_len: raw.bc_queue_len,
        })
    }

    /// The master link as `nl` (the plugin's netns, or the container's with
    /// `linkInContainer`) sees it; with `check_mtu`, `mtu` must not exceed
    /// the master's. Errors are config errors (code 7).
    pub fn master_link(&self, nl: &mut impl NetStack, check_mtu: bool) -> Result<Link> {
        let master = on_master::find(nl, &self.master, self.link_in_container, "a macvlan")?;
        if check_mtu {
            on_master::check_mtu(self.mtu, &master)?;
        }
        Ok(master)
    }
}
