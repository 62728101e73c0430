//! static's configuration: the `ipam` section, then what the runtime asks
//! for, in the reference's order:
//!
//! 1. `addresses` from the config, plus `CNI_ARGS IP=` (comma-separated
//!    CIDRs) after them; `CNI_ARGS GATEWAY=` sets the gateway of those
//!    `IP=` addresses whose subnet holds it;
//! 2. `args.cni.ips`, when not empty, replaces all of that;
//! 3. `runtimeConfig.ips` (capability `ips`), when not empty, replaces it again.

use std::net::IpAddr;

use common::args::CniArgs;
use common::error::shown;
use common::ipnet::IpNet;
use common::spec::{fold_keys, version, Dns, NetConf, Route};
use common::{CniError, Result};
use serde::Deserialize;
use serde_json::Value;

/// One address of the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub address: IpNet,
    pub gateway: Option<IpAddr>,
}

/// Everything ADD and CHECK need.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Config {
    pub addresses: Vec<Address>,
    pub routes: Vec<Route>,
    pub dns: Dns,
}

#[derive(Deserialize, Default)]
struct RawIpam {
    addresses: Option<Vec<RawAddress>>,
    routes: Option<Vec<Route>>,
    dns: Option<Dns>,
}

#[derive(Deserialize)]
struct RawAddress {
    #[serde(default)]
    address: String,
    #[serde(default)]
    gateway: Option<String>,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::invalid_config(msg)
}

/// A key of `obj` matched ignoring case, as Go's JSON decoding matches fields.
fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// The `ipam` object with its keys (and those of its addresses, routes and
/// dns) in our spelling.
fn raw_ipam(conf: &NetConf) -> Result<RawIpam> {
    let mut ipam = match field(&conf.raw, "ipam") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => return Err(bad("IPAM config missing 'ipam' key")),
        Some(_) => return Err(bad("invalid ipam config: \"ipam\" must be an object")),
    };
    fold_keys(&mut ipam, &["addresses", "routes", "dns"]);
    let nested: [(&str, &[&str]); 3] = [
        ("addresses", &["address", "gateway"]),
        ("routes", &["dst", "gw", "mtu", "advmss", "priority", "table", "scope"]),
        ("dns", &["nameservers", "domain", "search", "options"]),
    ];
    for (key, names) in nested {
        match ipam.get_mut(key) {
            Some(Value::Array(items)) => items.iter_mut().for_each(|i| fold_keys(i, names)),
            Some(obj @ Value::Object(_)) => fold_keys(obj, names),
            _ => {}
        }
    }
    common::spec::from_fields(&ipam).map_err(|e| bad(format!("invalid static ipam config: {e}")))
}

/// `10.1.2.3/24` as Go's `net.ParseCIDR` reads it: the address keeps its
/// host bits, and an IPv4-mapped IPv6 address is the IPv4 address it maps.
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    let net: IpNet = s.parse().ok()?;
    if let IpAddr::V6(v6) = net.addr {
        if let (Some(v4), true) = (v6.to_ipv4_mapped(), net.prefix >= 96) {
            return IpNet::new(IpAddr::V4(v4), net.prefix - 96);
        }
    }
    Some(net)
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    match s.parse::<IpAddr>().ok()? {
        IpAddr::V6(v6) => Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)),
        v4 => Some(v4),
    }
}

/// A list of CIDR strings from `args.cni.ips` or `runtimeConfig.ips`;
/// None when absent or empty (it then replaces nothing).
fn ips_list(v: Option<&Value>, src: &str) -> Result<Option<Vec<Address>>> {
    let items = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Array(items)) if items.is_empty() => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(other) => {
            // A string is shown as itself, so a huge one is cut where it is long.
            let shown = other.as_str().map_or_else(|| shown(&other.to_string()), shown);
            return Err(bad(format!("invalid {src}: {shown} is not a list of strings")));
        }
    };
    let mut out = Vec::new();
    for item in items {
        let s = item
            .as_str()
            .ok_or_else(|| bad(format!("invalid {src}: {} is not a string", shown(&item.to_string()))))?;
        let address = parse_cidr(s).ok_or_else(|| {
            bad(format!("an entry in the 'ips' field ({src}) is NOT in CIDR notation, got: {}", shown(s)))
        })?;
        out.push(Address { address, gateway: None });
    }
    Ok(Some(out))
}

/// The full configuration for ADD and CHECK.
pub fn load(conf: &NetConf, args: &CniArgs) -> Result<Config> {
    let RawIpam { addresses, routes, dns } = raw_ipam(conf)?;
    let mut list = Vec::new();
    for (i, raw) in addresses.unwrap_or_default().iter().enumerate() {
        let address = parse_cidr(&raw.address).ok_or_else(|| {
            bad(format!(
                "invalid address {i}: the 'address' field is expected to be in CIDR notation, got: {}",
                shown(&raw.address)
            ))
        })?;
        let gateway = match raw.gateway.as_deref().filter(|g| !g.is_empty()) {
            None => None,
            Some(g) => Some(parse_ip(g).ok_or_else(|| {
                bad(format!("invalid address {i}: gateway {} is not an IP address", shown(g)))
            })?),
        };
        list.push(Address { address, gateway });
    }

    // CNI_ARGS: IP= appends; GATEWAY= applies only to those IP= addresses.
    let first_from_env = list.len();
    if let Some(ips) = args.get("IP").filter(|v| !v.is_empty()) {
        for item in ips.split(',').map(str::trim) {
            let address = parse_cidr(item).ok_or_else(|| {
                bad(format!(
                    "the 'ip' field (CNI_ARGS IP) is expected to be in CIDR notation, got: {}",
                    shown(item)
                ))
            })?;
            list.push(Address { address, gateway: None });
        }
    }
    if let Some(gws) = args.get("GATEWAY").filter(|v| !v.is_empty()) {
        for item in gws.split(',').map(str::trim) {
            let gw = parse_ip(item)
                .ok_or_else(|| bad(format!("invalid gateway address (CNI_ARGS GATEWAY): {}", shown(item))))?;
            for a in list[first_from_env..].iter_mut().filter(|a| a.address.network().contains(&gw)) {
                a.gateway = Some(gw);
            }
        }
    }

    let from_args = field(&conf.raw, "args").and_then(|a| field(a, "cni")).and_then(|c| field(c, "ips"));
    if let Some(ips) = ips_list(from_args, "args.cni.ips")? {
        list = ips;
    }
    if let Some(ips) = ips_list(conf.runtime("ips"), "runtimeConfig.ips")? {
        list = ips;
    }

    let v4 = list.iter().filter(|a| a.address.is_ipv4()).count();
    if (v4 > 1 || list.len() - v4 > 1) && !version::at_least(&conf.cni_version, "0.3.0") {
        return Err(bad(format!(
            "CNI version {} does not support more than 1 address per family (needs 0.3.0 or later)",
            conf.cni_version
        )));
    }
    Ok(Config { addresses: list, routes: routes.unwrap_or_default(), dns: dns.unwrap_or_default() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load_with(v: Value, cni_args: &str) -> Result<Config> {
        // (An `ipam` that is no object is refused as the config is parsed.)
        let conf = NetConf::parse(v.to_string().as_bytes())?;
        load(&conf, &CniArgs::parse(cni_args).unwrap())
    }

    fn addrs(c: &Config) -> Vec<String> {
        c.addresses
            .iter()
            .map(|a| match a.gateway {
                Some(g) => format!("{} via {g}", a.address),
                None => a.address.to_string(),
            })
            .collect()
    }

    #[test]
    fn addresses_routes_and_dns_come_from_the_config() {
        let c = load_with(
            json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "static",
                "addresses": [{"address": "10.10.0.1/24", "gateway": "10.10.0.254"},
                              {"address": "3ffe:ffff:0:01ff::1/64", "gateway": "3ffe:ffff:0::1"}],
                "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.10.5.1", "priority": 5}],
                "dns": {"nameservers": ["8.8.8.8"], "domain": "example.com", "search": ["example.com"]}}}),
            "",
        )
        .unwrap();
        assert_eq!(addrs(&c), ["10.10.0.1/24 via 10.10.0.254", "3ffe:ffff:0:1ff::1/64 via 3ffe:ffff::1"]);
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, Some("10.10.5.1".parse().unwrap()));
        assert_eq!(c.routes[1].priority, Some(5));
        assert_eq!(c.dns.nameservers, ["8.8.8.8"]);
        assert_eq!(c.dns.domain, "example.com");
    }

    #[test]
    fn keys_match_ignoring_case_as_go_does() {
        let c = load_with(
            json!({"cniVersion": "1.0.0", "name": "n", "IPAM": {"Addresses": [{"Address": "10.0.0.2/24",
                "GATEWAY": "10.0.0.1"}], "Routes": [{"Dst": "0.0.0.0/0"}], "DNS": {"Nameservers": ["1.1.1.1"]}}}),
            "",
        )
        .unwrap();
        assert_eq!(addrs(&c), ["10.0.0.2/24 via 10.0.0.1"]);
        assert_eq!(c.routes.len(), 1);
        assert_eq!(c.dns.nameservers, ["1.1.1.1"]);
    }

    #[test]
    fn cni_args_ip_appends_and_gateway_applies_to_those_addresses() {
        let c = load_with(
            json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"type": "static",
                "addresses": [{"address": "10.0.0.2/24"}]}}),
            "IP=10.0.0.3/24, 192.168.1.5/16,fd00::5/64;GATEWAY=10.0.0.1,192.168.0.1",
        )
        .unwrap();
        // The config's own address keeps no gateway: the reference applies
        // GATEWAY only to the IP= addresses.
        assert_eq!(
            addrs(&c),
            ["10.0.0.2/24", "10.0.0.3/24 via 10.0.0.1", "192.168.1.5/16 via 192.168.0.1", "fd00::5/64"]
        );
    }

    #[test]
    fn args_then_runtime_config_replace_everything_before() {
        let base = json!({"cniVersion": "1.0.0", "name": "n",
            "ipam": {"type": "static", "addresses": [{"address": "10.0.0.2/24", "gateway": "10.0.0.1"}]},
            "args": {"cni": {"ips": ["10.0.1.2/24"]}}});
        let c = load_with(base.clone(), "IP=10.0.0.9/24").unwrap();
        assert_eq!(addrs(&c), ["10.0.1.2/24"]);
        let mut with_rc = base.clone();
        with_rc["runtimeConfig"] = json!({"ips": ["10.0.2.2/24", "fd00::2/64"]});
        assert_eq!(addrs(&load_with(with_rc, "").unwrap()), ["10.0.2.2/24", "fd00::2/64"]);
        // Empty lists replace nothing.
        let mut empty = base;
        empty["args"] = json!({"cni": {"ips": []}});
        empty["runtimeConfig"] = json!({"ips": []});
        assert_eq!(addrs(&load_with(empty, "").unwrap()), ["10.0.0.2/24 via 10.0.0.1"]);
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4_as_in_go() {
        let c = load_with(
            json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"addresses": [
                {"address": "::ffff:10.0.0.2/120", "gateway": "::ffff:10.0.0.1"}]}}),
            "",
        )
        .unwrap();
        assert_eq!(addrs(&c), ["10.0.0.2/24 via 10.0.0.1"]);
    }

    #[test]
    fn bad_input_is_a_config_error_naming_the_problem() {
        let cases = [
            (json!({"cniVersion": "1.0.0", "name": "n"}), "", "IPAM config missing 'ipam' key"),
            (json!({"cniVersion": "1.0.0", "name": "n", "ipam": "x"}), "", "must be an object"),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.2"}]}}),
                "",
                "invalid address 0: the 'address' field is expected to be in CIDR notation, got: \"10.0.0.2\"",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.2/24",
                    "gateway": "nope"}]}}),
                "",
                "gateway \"nope\" is not an IP address",
            ),
            (json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}}), "IP=10.0.0.2", "CNI_ARGS IP"),
            (json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}}), "IP=10.0.0.2/24;GATEWAY=x", "GATEWAY"),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}, "runtimeConfig": {"ips": ["1.2.3.4"]}}),
                "",
                "NOT in CIDR notation",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {}, "args": {"cni": {"ips": "1.2.3.4/8"}}}),
                "",
                "args.cni.ips",
            ),
            (
                json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"routes": [{"dst": "nowhere"}]}}),
                "",
                "invalid static ipam config",
            ),
            (
                json!({"cniVersion": "0.2.0", "name": "n", "ipam": {"addresses": [{"address": "10.0.0.2/24"},
                    {"address": "10.0.1.2/24"}]}}),
                "",
                "does not support more than 1 address per family",
            ),
        ];
        for (v, cni_args, want) in cases {
            let e = load_with(v.clone(), cni_args).unwrap_err();
            assert_eq!(e.code, 7, "{v}: {e}");
            assert!(e.msg.contains(want), "{v}: {:?} lacks {want:?}", e.msg);
        }
    }
}
