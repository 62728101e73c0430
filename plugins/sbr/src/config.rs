//! sbr's fields, read as the reference reads them (names match ignoring
//! case, as Go's decoder does), and which of prevResult's addresses it
//! routes by source.

use std::net::IpAddr;

use common::error::shown;
use common::spec::{fold_keys, from_fields, CniResult, IpConfig, NetConf};
use common::{CniError, Result};
use serde::Deserialize;
use serde_json::Value;

const KEYS: [&str; 3] = ["table", "gateways", "addSourceHints"];

/// What ADD, CHECK and DEL need.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Conf {
    /// The operator's table: only the source rules point to it, no route is
    /// moved (the reference's `table`). None: a table per address.
    pub table: Option<u32>,
    /// Default-route gateways that replace prevResult's, one per family at most.
    pub gateways: Vec<IpAddr>,
    /// Keep the interface's subnet routes in the main table with the
    /// address as preferred source, so traffic that picks no source still
    /// finds them.
    pub add_source_hints: bool,
}

impl Conf {
    /// The default route's gateway for `ip`: the configured one of its
    /// family, else prevResult's.
    pub fn gateway_for(&self, ip: &IpConfig) -> Option<IpAddr> {
        let family = ip.address.addr.is_ipv4();
        self.gateways.iter().copied().find(|g| g.is_ipv4() == family).or(ip.gateway)
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Fields {
    table: Option<i64>,
    gateways: Option<Vec<String>>,
    add_source_hints: Option<bool>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::invalid_config(msg)
}

fn fields(conf: &NetConf) -> Result<Fields> {
    let mut raw = conf.raw.clone();
    fold_keys(&mut raw, &KEYS);
    let ours: serde_json::Map<String, Value> = raw
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| KEYS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    from_fields(&Value::Object(ours)).map_err(|e| bad(format!("invalid sbr config: {e}")))
}

fn table(t: Option<i64>) -> Result<Option<u32>> {
    match t {
        None => Ok(None),
        Some(t) if t >= 1 && t <= u32::MAX as i64 => Ok(Some(t as u32)),
        Some(t) => Err(bad(format!("table must be a routing table number from 1 to {}, not {t}", u32::MAX))),
    }
}

/// The whole config (code 7 naming what is wrong).
pub fn load(conf: &NetConf) -> Result<Conf> {
    let f = fields(conf)?;
    let mut gateways: Vec<IpAddr> = Vec::new();
    let list = f.gateways.unwrap_or_default();
    if list.len() > 2 {
        return Err(bad("gateways list cannot contain more than 2 entries (one IPv4, one IPv6)"));
    }
    for text in &list {
        let gw: IpAddr =
            text.parse().map_err(|_| bad(format!("invalid static gateway IP address: {}", shown(text))))?;
        if let Some(other) = gateways.iter().find(|g| g.is_ipv4() == gw.is_ipv4()) {
            let family = if gw.is_ipv4() { "IPv4" } else { "IPv6" };
            return Err(bad(format!("gateways list contains multiple {family} addresses: {other} and {gw}")));
        }
        gateways.push(gw);
    }
    Ok(Conf { table: table(f.table)?, gateways, add_source_hints: f.add_source_hints.unwrap_or(false) })
}

/// DEL's view: only the table matters, and one it cannot use is no table
/// (DEL then looks at every rule), so that a config ADD refused never
/// makes DEL fail.
pub fn table_for_del(conf: &NetConf) -> Option<u32> {
    fields(conf).ok().and_then(|f| table(f.table).ok()).flatten()
}

/// prevResult, which sbr needs (code 7 without it).
pub fn prev_result(conf: &NetConf) -> Result<&CniResult> {
    conf.prev_result
        .as_ref()
        .ok_or_else(|| bad("sbr must be called as a chained plugin: prevResult is missing"))
}

/// prevResult's addresses of `ifname`, picked as the reference picks them:
/// those whose interface index names it, those without an index, and those
/// whose index points nowhere.
pub fn source_ips(prev: &CniResult, ifname: &str) -> Result<Vec<IpConfig>> {
    let mine: Vec<IpConfig> = prev
        .ips
        .iter()
        .filter(|ip| ip.interface.and_then(|i| prev.interfaces.get(i)).is_none_or(|i| i.name == ifname))
        .cloned()
        .collect();
    if mine.is_empty() {
        // The reference goes on without addresses and deletes every route
        // of the interface; there is nothing to route by source.
        return Err(CniError::internal(format!("no IP addresses supplied on interface: {ifname}")));
    }
    Ok(mine)
}
