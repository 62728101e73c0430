//! The tap plugin's configuration: every field of the reference plugin,
//! validated before anything is made.

use serde::Deserialize;

use common::error::shown;
use common::skel::CmdArgs;
use common::spec::{fold_keys, from_fields};
use common::tap::MAX_MTU;
use common::{CniError, Result};

/// The reference's fields; Go matches them ignoring case (`selinuxcontext`).
const FIELDS: &[&str] = &["multiQueue", "mtu", "mac", "owner", "group", "selinuxContext", "bridge"];

#[derive(Deserialize, Debug, Default)]
#[serde(rename_all = "camelCase", default)]
struct Raw {
    multi_queue: bool,
    mtu: i64,
    mac: String,
    owner: Option<u32>,
    group: Option<u32>,
    selinux_context: String,
    bridge: String,
}

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub multi_queue: bool,
    /// None: the kernel's (1500).
    pub mtu: Option<u32>,
    /// runtimeConfig.mac > args.cni.mac > CNI_ARGS MAC > the config's `mac`.
    pub mac: Option<[u8; 6]>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub selinux_context: Option<String>,
    /// A bridge in the container netns the tap becomes a port of.
    pub bridge: Option<String>,
}

impl Config {
    /// Parse and validate everything that needs no kernel lookup (code 7).
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let mut obj = args.conf.raw.clone();
        fold_keys(&mut obj, FIELDS);
        let raw: Raw =
            from_fields(&obj).map_err(|e| CniError::invalid_config(format!("invalid tap config: {e}")))?;
        // The tap driver's limits (68 is also IPv4's minimum).
        if raw.mtu != 0 && !(68..=i64::from(MAX_MTU)).contains(&raw.mtu) {
            return Err(CniError::invalid_config(format!(
                "invalid MTU {} (must be 68-{MAX_MTU}, or 0 for the kernel's 1500)",
                raw.mtu
            )));
        }
        // (uid_t)-1 and (gid_t)-1 are "no one": the kernel refuses them.
        for (what, id) in [("owner", raw.owner), ("group", raw.group)] {
            if id == Some(u32::MAX) {
                return Err(CniError::invalid_config(format!(
                    "invalid {what} {}: (uid_t)-1 names no one",
                    u32::MAX
                )));
            }
        }
        if raw.selinux_context.contains('\0') {
            return Err(CniError::invalid_config(format!(
                "invalid selinuxContext {}: contains a NUL byte",
                shown(&raw.selinux_context)
            )));
        }
        if !raw.bridge.is_empty() {
            common::skel::validate_ifname(&raw.bridge).map_err(|_| {
                CniError::invalid_config(format!("invalid bridge name {}", shown(&raw.bridge)))
            })?;
        }
        let mac = match args.requested_mac()? {
            Some(m) => Some(m),
            None if raw.mac.is_empty() => None,
            None => Some(common::skel::parse_unicast_mac(&raw.mac)?),
        };
        Ok(Config {
            multi_queue: raw.multi_queue,
            mtu: (raw.mtu != 0).then_some(raw.mtu as u32),
            mac,
            owner: raw.owner,
            group: raw.group,
            selinux_context: Some(raw.selinux_context).filter(|c| !c.is_empty()),
            bridge: Some(raw.bridge).filter(|b| !b.is_empty()),
        })
    }
}
