//! vrf's fields, read as the reference reads them (names match ignoring
//! case, as Go's decoder does: `vrfname` and `vrfName` are one field).

use common::error::shown;
use common::spec::{fold_keys, from_fields, NetConf};
use common::{CniError, Result};
use serde::Deserialize;
use serde_json::Value;

const KEYS: [&str; 2] = ["vrfname", "table"];

/// What ADD, CHECK and DEL need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conf {
    /// The VRF device in the container, made when missing.
    pub vrf: String,
    /// Its routing table; None: the first no VRF of the container uses.
    pub table: Option<u32>,
}

#[derive(Deserialize)]
struct Fields {
    vrfname: Option<String>,
    table: Option<u32>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::invalid_config(msg)
}

/// The whole config (code 7 naming what is wrong).
pub fn load(conf: &NetConf) -> Result<Conf> {
    let mut raw = conf.raw.clone();
    fold_keys(&mut raw, &KEYS);
    let ours: serde_json::Map<String, Value> = raw
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let f: Fields = from_fields(&Value::Object(ours)).map_err(|e| bad(format!("invalid vrf config: {e}")))?;
    let vrf = f.vrfname.unwrap_or_default();
    if vrf.is_empty() {
        return Err(bad("configuration is expected to have a valid vrf name (vrfname)"));
    }
    if let Err(why) = interface_name(&vrf) {
        return Err(bad(format!("invalid vrfname {}: {why}", shown(&vrf))));
    }
    Ok(Conf { vrf, table: f.table.filter(|t| *t != 0) })
}

/// Why the kernel would refuse `name` for a device, if it would.
fn interface_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.len() > 15 {
        return Err("an interface name has at most 15 bytes");
    }
    if name == "." || name == ".." {
        return Err("an interface name cannot be . or ..");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return Err("an interface name cannot contain / or : or whitespace");
    }
    Ok(())
}
