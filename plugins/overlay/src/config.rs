//! The overlay's configuration: what every node of the network shares (VNI,
//! subnet, etcd) and what each node may set for itself (`vtepIP`, `node`,
//! `mtu`, its own address range).

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use common::error::shown;
use common::ipnet::{self, IpNet};
use common::skel::CmdArgs;
use common::{CniError, Result};
use serde::{Deserialize, Serialize};

pub const DEFAULT_PREFIX: &str = "/cni-rs/overlay";
pub const DEFAULT_LEASE_TTL: u32 = 20;
pub const DEFAULT_TIMEOUT_MS: u64 = 3000;
/// VXLAN over IPv4 adds 50 bytes: outer Ethernet 14 is not counted in the
/// MTU, so outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14.
pub const VXLAN_OVERHEAD_V4: u32 = 50;
pub const VXLAN_OVERHEAD_V6: u32 = 70;

#[derive(Deserialize, Serialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EtcdConf {
    pub endpoints: Vec<String>,
    #[serde(default, rename = "caFile", skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(default, rename = "certFile", skip_serializing_if = "Option::is_none")]
    pub cert_file: Option<PathBuf>,
    #[serde(default, rename = "keyFile", skip_serializing_if = "Option::is_none")]
    pub key_file: Option<PathBuf>,
    /// Root of our keys in etcd.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Per request (connect included), per endpoint.
    #[serde(default = "default_timeout", rename = "timeoutMs")]
    pub timeout_ms: u64,
}

fn default_prefix() -> String {
    DEFAULT_PREFIX.into()
}
fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_MS
}

/// The plugin's fields as written in the conflist.
#[derive(Deserialize, Clone, Debug)]
struct Raw {
    vni: Option<u64>,
    subnet: Option<String>,
    gateway: Option<IpAddr>,
    #[serde(rename = "rangeStart")]
    range_start: Option<IpAddr>,
    #[serde(rename = "rangeEnd")]
    range_end: Option<IpAddr>,
    mtu: Option<u32>,
    #[serde(rename = "vtepIP")]
    vtep_ip: Option<IpAddr>,
    node: Option<String>,
    etcd: Option<EtcdConf>,
    #[serde(rename = "leaseTTL")]
    lease_ttl: Option<u32>,
    #[serde(rename = "ipMasq")]
    ip_masq: Option<bool>,
}

/// A validated configuration. `vtep`, `node` and `mtu` are resolved on the
/// node (see `dataplane::underlay`), so the agent and DEL see the same values.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub network: String,
    pub vni: u32,
    pub subnet: IpNet,
    pub gateway: IpAddr,
    pub range_start: IpAddr,
    pub range_end: IpAddr,
    pub mtu: Option<u32>,
    pub vtep: Option<IpAddr>,
    pub node: Option<String>,
    pub etcd: EtcdConf,
    pub lease_ttl: u32,
    pub ip_masq: bool,
}

/// What every node must agree on; stored once per network in etcd.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Shared {
    pub vni: u32,
    pub subnet: IpNet,
    pub gateway: IpAddr,
}

impl Config {
    pub fn load(args: &CmdArgs) -> Result<Config> {
        let raw: Raw = args.conf.fields()?;
        Config::from_raw(&args.conf.name, raw)
    }

    fn from_raw(network: &str, raw: Raw) -> Result<Config> {
        let bad = |m: String| Err(CniError::invalid_config(m));
        let vni = match raw.vni {
            None => return bad("overlay: \"vni\" is required (1-16777215)".into()),
            Some(v) if (1..=0xff_ffff).contains(&v) => v as u32,
            Some(v) => return bad(format!("overlay: vni {v} is out of range (1-16777215)")),
        };
        let Some(subnet) = raw.subnet else { return bad("overlay: \"subnet\" is required".into()) };
        let subnet: IpNet = subnet
            .parse()
            .map_err(|_| CniError::invalid_config(format!("overlay: invalid subnet {}", shown(&subnet))))?;
        if !subnet.is_ipv4() {
            return bad(format!("overlay: subnet {subnet} is IPv6; only IPv4 overlay subnets are supported"));
        }
        if subnet.network() != subnet {
            return bad(format!(
                "overlay: subnet {subnet} has host bits set (did you mean {}?)",
                subnet.network()
            ));
        }
        if subnet.prefix > 30 {
            return bad(format!("overlay: subnet {subnet} is too small (at most /30)"));
        }
        let inside = |what: &str, ip: IpAddr| -> Result<IpAddr> {
            if !subnet.contains(&ip) || ip == subnet.first() || ip == subnet.last() {
                return Err(CniError::invalid_config(format!(
                    "overlay: {what} {ip} is not a usable address of {subnet}"
                )));
            }
            Ok(ip)
        };
        let gateway = inside("gateway", raw.gateway.unwrap_or(ipnet::next_ip(&subnet.first())))?;
        let range_start = inside("rangeStart", raw.range_start.unwrap_or(ipnet::next_ip(&subnet.first())))?;
        let range_end = inside("rangeEnd", raw.range_end.unwrap_or(prev_ip(subnet.last())))?;
        if ipnet::to_bits(&range_start) > ipnet::to_bits(&range_end) {
            return bad(format!("overlay: rangeStart {range_start} is after rangeEnd {range_end}"));
        }
        if let Some(mtu) = raw.mtu {
            if !(576..=65535).contains(&mtu) {
                return bad(format!("overlay: mtu {mtu} is out of range (576-65535)"));
            }
        }
        if let Some(ip) = raw.vtep_ip {
            if ip.is_unspecified() || ip.is_multicast() || ip.is_loopback() {
                return bad(format!("overlay: vtepIP {ip} cannot be a tunnel endpoint"));
            }
        }
        if let Some(n) = &raw.node {
            if !common::spec::valid_name(n) {
                return bad(format!(
                    "overlay: invalid node name {}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
                    shown(n)
                ));
            }
        }
        let Some(etcd) = raw.etcd else {
            return bad("overlay: \"etcd\" is required ({\"endpoints\": [\"http://host:2379\"]})".into());
        };
        validate_etcd(&etcd)?;
        let lease_ttl = raw.lease_ttl.unwrap_or(DEFAULT_LEASE_TTL);
        if !(2..=3600).contains(&lease_ttl) {
            return bad(format!("overlay: leaseTTL {lease_ttl} is out of range (2-3600 seconds)"));
        }
        Ok(Config {
            network: network.to_string(),
            vni,
            subnet,
            gateway,
            range_start,
            range_end,
            mtu: raw.mtu,
            vtep: raw.vtep_ip,
            node: raw.node,
            etcd,
            lease_ttl,
            ip_masq: raw.ip_masq.unwrap_or(true),
        })
    }

    pub fn shared(&self) -> Shared {
        Shared { vni: self.vni, subnet: self.subnet, gateway: self.gateway }
    }

    /// The bridge of this network on every node.
    pub fn bridge(&self) -> String {
        format!("ovbr{}", self.vni)
    }

    /// The VXLAN device of this network on every node.
    pub fn vxlan(&self) -> String {
        format!("vxlan{}", self.vni)
    }

    /// The resolved node name (after `dataplane::underlay`).
    pub fn node_name(&self) -> &str {
        self.node.as_deref().unwrap_or("")
    }
}

fn validate_etcd(e: &EtcdConf) -> Result<()> {
    let bad = |m: String| Err(CniError::invalid_config(format!("overlay: etcd: {m}")));
    if e.endpoints.is_empty() {
        return bad("\"endpoints\" must list at least one URL".into());
    }
    for ep in &e.endpoints {
        let rest = ep.strip_prefix("http://").or_else(|| ep.strip_prefix("https://"));
        match rest {
            Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => {}
            _ => return bad(format!("endpoint {ep:?} is not an http:// or https:// URL")),
        }
    }
    if e.cert_file.is_some() != e.key_file.is_some() {
        return bad("\"certFile\" and \"keyFile\" go together".into());
    }
    if !e.prefix.starts_with('/') || e.prefix.len() < 2 || e.prefix.ends_with('/') {
        return bad(format!("prefix {:?} must start with / and not end with /", e.prefix));
    }
    if !(100..=60_000).contains(&e.timeout_ms) {
        return bad(format!("timeoutMs {} is out of range (100-60000)", e.timeout_ms));
    }
    Ok(())
}

fn prev_ip(ip: IpAddr) -> IpAddr {
    ipnet::from_bits(&ip, ipnet::to_bits(&ip) - 1)
}

/// The MAC of a container address: `02:42` and the IPv4 address, as Docker's
/// overlay does. An address keeps its MAC on every node and across reuse, so
/// no neighbour cache ever holds a stale pairing.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<Config> {
        let raw: Raw = serde_json::from_value(v).map_err(|e| CniError::invalid_config(e.to_string()))?;
        Config::from_raw("app", raw)
    }

    fn base() -> serde_json::Value {
        json!({"vni": 4242, "subnet": "10.90.0.0/16", "etcd": {"endpoints": ["http://10.0.0.1:2379"]}})
    }

    #[test]
    fn the_issue_example_gets_its_defaults() {
        let c = parse(base()).unwrap();
        assert_eq!((c.vni, c.subnet.to_string().as_str()), (4242, "10.90.0.0/16"));
        assert_eq!(c.gateway, "10.90.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.range_start, "10.90.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(c.range_end, "10.90.255.254".parse::<IpAddr>().unwrap());
        assert_eq!(c.etcd.prefix, DEFAULT_PREFIX);
        assert_eq!((c.lease_ttl, c.ip_masq, c.mtu), (DEFAULT_LEASE_TTL, true, None));
        assert_eq!((c.bridge().as_str(), c.vxlan().as_str()), ("ovbr4242", "vxlan4242"));
    }

    #[test]
    fn bad_fields_are_code_7_with_a_reason() {
        let cases = [
            ("vni", json!(0), "out of range"),
            ("vni", json!(16777216), "out of range"),
            ("subnet", json!("10.90.0.1/16"), "host bits"),
            ("subnet", json!("fd00::/64"), "IPv6"),
            ("subnet", json!("10.90.0.0/31"), "too small"),
            ("gateway", json!("10.91.0.1"), "not a usable address"),
            ("rangeStart", json!("10.90.0.0"), "not a usable address"),
            ("mtu", json!(100), "out of range"),
            ("vtepIP", json!("127.0.0.1"), "tunnel endpoint"),
            ("node", json!("a/b"), "invalid node name"),
            ("leaseTTL", json!(1), "leaseTTL"),
            ("etcd", json!({"endpoints": []}), "at least one"),
            ("etcd", json!({"endpoints": ["10.0.0.1:2379"]}), "http://"),
            ("etcd", json!({"endpoints": ["http://a"], "certFile": "/x"}), "go together"),
            ("etcd", json!({"endpoints": ["http://a"], "prefix": "x"}), "prefix"),
        ];
        for (k, v, want) in cases {
            let mut c = base();
            c[k] = v;
            let e = parse(c).unwrap_err();
            assert_eq!(e.code, 7, "{k}");
            assert!(e.msg.contains(want), "{k}: {}", e.msg);
        }
        let mut c = base();
        c["rangeStart"] = json!("10.90.9.9");
        c["rangeEnd"] = json!("10.90.1.1");
        assert!(parse(c).unwrap_err().msg.contains("after rangeEnd"));
        for missing in ["vni", "subnet", "etcd"] {
            let mut c = base();
            c.as_object_mut().unwrap().remove(missing);
            assert!(parse(c).unwrap_err().msg.contains(missing));
        }
    }

    #[test]
    fn the_conf_examples_are_valid_overlay_configs() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf-examples/overlay");
        for f in ["app.conflist", "app-tls.conflist"] {
            let list: serde_json::Value =
                serde_json::from_slice(&std::fs::read(dir.join(f)).unwrap()).unwrap();
            let c = parse(list["plugins"][0].clone()).unwrap_or_else(|e| panic!("{f}: {e}"));
            assert_eq!((c.vni, c.subnet.to_string().as_str()), (4242, "10.90.0.0/16"), "{f}");
        }
    }

    #[test]
    fn macs_follow_the_address() {
        assert_eq!(mac_for("10.90.0.5".parse().unwrap()), [2, 0x42, 10, 90, 0, 5]);
    }
}
