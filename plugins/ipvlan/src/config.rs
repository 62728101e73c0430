//! The ipvlan plugin's configuration: every field of the reference plugin,
//! and where the master comes from.

use serde::Deserialize;

use common::error::shown;
use common::net::NetStack;
use common::netlink::rtnl::{IpvlanMode, Link};
use common::on_master;
use common::skel::CmdArgs;
use common::{CniError, Result};

#[derive(Deserialize, Debug, Clone, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    master: String,
    mode: String,
    mtu: i64,
    link_in_container: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// The configured master; empty means "prevResult's one interface" in a
    /// chain, else "the default route's interface".
    pub master: String,
    pub mode: IpvlanMode,
    /// 0: the master's MTU.
    pub mtu: u32,
    /// The master lives in the container netns.
    pub link_in_container: bool,
}

impl Config {
    /// Parse and validate everything that needs no kernel lookup (code 7).
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let raw: Raw = args.conf.fields()?;
        let mode = match raw.mode.as_str() {
            "" => IpvlanMode::L2,
            m => IpvlanMode::parse(m).ok_or_else(|| {
                CniError::invalid_config(format!("unknown ipvlan mode {} (must be l2, l3 or l3s)", shown(m)))
            })?,
        };
        on_master::parse_master(&raw.master)?;
        Ok(Config {
            master: raw.master,
            mode,
            mtu: on_master::parse_mtu(raw.mtu)?,
            link_in_container: raw.link_in_container,
        })
    }

    /// ADD's master as `nl` (the plugin's netns, or the container's with
    /// `linkInContainer`) sees it, the MTU checked against it. Without a
    /// configured one, in a chain it is the one interface prevResult names,
    /// as with the reference; alone, the default route's interface.
    pub fn master_for_add(&self, args: &CmdArgs, nl: &mut impl NetStack) -> Result<Link> {
        let name = match (&args.conf.prev_result, self.master.as_str()) {
            (Some(prev), "") => match prev.interfaces.as_slice() {
                [one] if !one.name.is_empty() => one.name.as_str(),
                _ => return Err(CniError::invalid_config(
                    "chained master failure: no master given, and prevResult lacks a single named interface",
                )),
            },
            (_, name) => name,
        };
        let master = on_master::find(nl, name, self.link_in_container, "an ipvlan")?;
        // The kernel would make an ipvlan bigger than its master, whose
        // packets the master then drops.
        on_master::check_mtu(self.mtu, &master)?;
        Ok(master)
    }

    /// The configured master, if any (CHECK and STATUS: in a chain the
    /// master came from a prevResult they do not have).
    pub fn configured_master(&self, nl: &mut impl NetStack) -> Result<Option<Link>> {
        if self.master.is_empty() {
            return Ok(None);
        }
        on_master::find(nl, &self.master, self.link_in_container, "an ipvlan").map(Some)
    }
}
