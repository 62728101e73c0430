//! The macvlan plugin's configuration: every field of the reference plugin,
//! and the master lookup that validates it.

use serde::Deserialize;

use common::error::shown;
use common::net::NetStack;
use common::netlink::rtnl::{Link, MacvlanMode};
use common::netlink::NlError;
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
        // 0 is the master's MTU; below 68 (IPv4's minimum) the kernel refuses.
        if raw.mtu != 0 && !(68..=i64::from(u32::MAX)).contains(&raw.mtu) {
            return Err(CniError::invalid_config(format!(
                "invalid MTU {} (must be 68 up to the master's MTU, or 0 for the master's)",
                raw.mtu
            )));
        }
        if !raw.master.is_empty() {
            common::skel::validate_ifname(&raw.master).map_err(|_| {
                CniError::invalid_config(format!("invalid master name {}", shown(&raw.master)))
            })?;
        }
        let mac = match args.requested_mac()? {
            Some(m) => Some(m),
            None if raw.mac.is_empty() => None,
            None => Some(common::skel::parse_unicast_mac(&raw.mac)?),
        };
        Ok(Config {
            master: raw.master,
            mode,
            mtu: raw.mtu as u32,
            mac,
            link_in_container: raw.link_in_container,
            bc_queue_len: raw.bc_queue_len,
        })
    }

    /// The master link as `nl` (the plugin's netns, or the container's with
    /// `linkInContainer`) sees it; with `check_mtu`, `mtu` must not exceed
    /// the master's. Errors are config errors (code 7).
    pub fn master_link(&self, nl: &mut impl NetStack, check_mtu: bool) -> Result<Link> {
        let where_ = if self.link_in_container { " in the container netns" } else { "" };
        let name = if self.master.is_empty() {
            common::links::default_route_interface(nl)?.ok_or_else(|| {
                CniError::invalid_config(format!(
                    "no master given and no default route interface found{where_}"
                ))
            })?
        } else {
            self.master.clone()
        };
        let master = nl.link_by_name(&name).map_err(|e| {
            CniError::invalid_config(format!("failed to look up master {name:?}{where_}: {}", describe(&e)))
        })?;
        // The kernel's own test (macvlan_port_create): a loopback device
        // cannot carry macvlans, it would refuse with a bare EINVAL.
        if master.flags & libc::IFF_LOOPBACK as u32 != 0 {
            return Err(CniError::invalid_config(format!(
                "master {name:?}{where_} is a loopback device: a macvlan needs an Ethernet master"
            )));
        }
        if check_mtu && self.mtu > master.mtu {
            return Err(CniError::invalid_config(format!(
                "invalid MTU {}, must be [0, master MTU({})]",
                self.mtu, master.mtu
            )));
        }
        Ok(master)
    }
}

fn describe(e: &NlError) -> String {
    if e.not_found() {
        "no such interface".into()
    } else {
        e.to_string()
    }
}
