//! The plugin's fields and `runtimeConfig.portMappings`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use common::error::shown;
use common::spec::fold_keys;
use common::{CniError, Result};
use serde::Deserialize;
use serde_json::Value;

/// A transport protocol a mapping can publish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
    Sctp,
}

impl Proto {
    pub fn parse(s: &str) -> Option<Proto> {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            "sctp" => Some(Proto::Sctp),
            _ => None,
        }
    }
    /// The IP protocol number (`meta l4proto`).
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Sctp => 132,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
            Proto::Sctp => "sctp",
        }
    }
}

/// One published port. `host_ip` None means every local address of the
/// container's families; an unspecified address (`0.0.0.0`, `::`) means every
/// local address of that family only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
    pub host_ip: Option<IpAddr>,
}

impl Mapping {
    /// Whether the mapping applies to a container address of this family.
    pub fn applies_to(&self, v6: bool) -> bool {
        self.host_ip.is_none_or(|ip| ip.is_ipv6() == v6)
    }
    /// A specific host address (None for any).
    pub fn specific_ip(&self) -> Option<IpAddr> {
        self.host_ip.filter(|ip| !ip.is_unspecified())
    }
}

impl fmt::Display for Mapping {
    /// How errors name the host side: `8080/tcp`, `192.0.2.1:8080/tcp`, `[2001:db8::1]:8080/tcp`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.specific_ip() {
            Some(IpAddr::V6(ip)) => write!(f, "[{ip}]:{}/{}", self.host_port, self.proto.name()),
            Some(ip) => write!(f, "{ip}:{}/{}", self.host_port, self.proto.name()),
            None => write!(f, "{}/{}", self.host_port, self.proto.name()),
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Fields {
    snat: Option<bool>,
    masq_all: Option<bool>,
    backend: Option<String>,
    mark_masq_bit: Option<i64>,
    external_set_mark_chain: Option<String>,
    #[serde(rename = "conditionsV4")]
    conditions_v4: Option<Vec<String>>,
    #[serde(rename = "conditionsV6")]
    conditions_v6: Option<Vec<String>>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Masquerade hairpin and localhost-originated connections (default true).
    pub snat: bool,
    /// Masquerade every connection to a published port.
    pub masq_all: bool,
    pub mappings: Vec<Mapping>,
}

impl Config {
    pub fn load(conf: &common::spec::NetConf) -> Result<Config> {
        let f: Fields = conf.fields()?;
        match f.backend.as_deref() {
            None | Some("") | Some("nftables") | Some("iptables") => {}
            Some(b) => {
                return Err(CniError::invalid_config(format!(
                    "unknown backend {}: expected \"iptables\" or \"nftables\"",
                    shown(b)
                )))
            }
        }
        // iptables-only knobs: validated as the reference does, then unused
        // (masquerade is decided by set lookups, no packet marks).
        if let Some(bit) = f.mark_masq_bit {
            if !(0..=31).contains(&bit) {
                return Err(CniError::invalid_config(format!("invalid markMasqBit {bit}: must be 0-31")));
            }
            if f.external_set_mark_chain.as_deref().is_some_and(|c| !c.is_empty()) {
                return Err(CniError::invalid_config(
                    "markMasqBit and externalSetMarkChain cannot both be set",
                ));
            }
        }
        for (name, c) in [("conditionsV4", &f.conditions_v4), ("conditionsV6", &f.conditions_v6)] {
            if c.as_ref().is_some_and(|c| !c.is_empty()) {
                return Err(CniError::unsupported_field(format!(
                    "{name} is not supported by this portmap (published ports cannot be restricted by extra matches)"
                )));
            }
        }
        Ok(Config {
            snat: f.snat.unwrap_or(true),
            masq_all: f.masq_all.unwrap_or(false),
            mappings: parse_mappings(conf.runtime("portMappings"))?,
        })
    }
}

/// A JSON value for a message, cut when huge (a string as `shown` quotes it).
fn brief(v: &Value) -> String {
    match v {
        Value::String(s) => shown(s),
        other => {
            let text = other.to_string();
            match text.char_indices().nth(64) {
                Some((cut, _)) => format!("{}… ({} bytes)", &text[..cut], text.len()),
                None => text,
            }
        }
    }
}

fn port_of(entry: &Value, key: &str, i: usize) -> Result<u16> {
    let bad = |what: &str| CniError::invalid_config(format!("portMappings[{i}]: {key} {what}"));
    match entry.get(key) {
        None | Some(Value::Null) => Err(bad("is missing")),
        Some(v) => match v.as_i64() {
            Some(p) if (1..=65535).contains(&p) => Ok(p as u16),
            Some(p) => Err(bad(&format!("{p} is out of range 1-65535"))),
            None => Err(bad(&format!("{} is not a port number", brief(v)))),
        },
    }
}

/// `runtimeConfig.portMappings`, keys matched ignoring case (containerd's CRI
/// sends `HostPort`, `ContainerPort`, `Protocol`, `HostIP`). Identical
/// entries collapse; two entries for the same host side are an error.
pub fn parse_mappings(v: Option<&Value>) -> Result<Vec<Mapping>> {
    let list = match v {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(CniError::invalid_config("runtimeConfig.portMappings must be a list")),
    };
    let mut out: Vec<Mapping> = Vec::new();
    let mut seen: BTreeMap<(Option<IpAddr>, bool, Proto, u16), usize> = BTreeMap::new();
    for (i, entry) in list.iter().enumerate() {
        let mut entry = entry.clone();
        if !entry.is_object() {
            return Err(CniError::invalid_config(format!("portMappings[{i}] is not an object")));
        }
        fold_keys(&mut entry, &["hostPort", "containerPort", "protocol", "hostIP"]);
        let host_port = port_of(&entry, "hostPort", i)?;
        let container_port = port_of(&entry, "containerPort", i)?;
        let proto = match entry.get("protocol") {
            None | Some(Value::Null) => Proto::Tcp,
            Some(Value::String(s)) if s.is_empty() => Proto::Tcp,
            Some(Value::String(s)) => Proto::parse(s).ok_or_else(|| {
                CniError::invalid_config(format!(
                    "portMappings[{i}]: unknown protocol {}: expected tcp, udp or sctp",
                    shown(s)
                ))
            })?,
            Some(v) => {
                return Err(CniError::invalid_config(format!(
                    "portMappings[{i}]: protocol {} is not a string",
                    brief(v)
                )))
            }
        };
        let host_ip = match entry.get("hostIP") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.is_empty() => None,
            Some(Value::String(s)) => Some(s.parse::<IpAddr>().map_err(|_| {
                CniError::invalid_config(format!(
                    "portMappings[{i}]: hostIP {} is not an IP address",
                    shown(s)
                ))
            })?),
            Some(v) => {
                return Err(CniError::invalid_config(format!(
                    "portMappings[{i}]: hostIP {} is not a string",
                    brief(v)
                )))
            }
        };
        let m = Mapping { host_port, container_port, proto, host_ip };
        // The host side as the kernel keys it: an unspecified address is "any" of its family.
        let families: Vec<bool> = match host_ip {
            None => vec![false, true],
            Some(ip) => vec![ip.is_ipv6()],
        };
        let mut new_families = Vec::new();
        for v6 in families {
            match seen.get(&(m.specific_ip(), v6, proto, host_port)) {
                Some(&j) if out[j].container_port == container_port => {}
                Some(&j) => {
                    return Err(CniError::invalid_config(format!(
                        "portMappings[{i}]: host port {m} is mapped twice (to {} and {container_port})",
                        out[j].container_port
                    )))
                }
                None => new_families.push(v6),
            }
        }
        // Keep what is not published yet: all of it, or (an "any" mapping
        // whose other family an earlier entry covers) the one family left.
        let kept = match new_families[..] {
            [] => continue,
            [v6] if host_ip.is_none() => Mapping { host_ip: Some(any_address(v6)), ..m },
            _ => m,
        };
        for v6 in new_families {
            seen.insert((kept.specific_ip(), v6, proto, host_port), out.len());
        }
        out.push(kept);
    }
    Ok(out)
}

/// The unspecified address of a family: "every local address of it".
fn any_address(v6: bool) -> IpAddr {
    if v6 {
        std::net::Ipv6Addr::UNSPECIFIED.into()
    } else {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::spec::NetConf;
    use serde_json::json;

    fn conf(extra: Value) -> NetConf {
        let mut v = json!({"cniVersion": "1.0.0", "name": "n", "type": "portmap"});
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    fn maps(v: Value) -> Result<Vec<Mapping>> {
        parse_mappings(Some(&v))
    }

    #[test]
    fn defaults_and_fields() {
        let c = Config::load(&conf(json!({}))).unwrap();
        assert_eq!(c, Config { snat: true, masq_all: false, mappings: vec![] });
        let c = Config::load(&conf(json!({"snat": false, "masqAll": true, "backend": "iptables",
            "markMasqBit": 13, "conditionsV4": []})))
        .unwrap();
        assert!(!c.snat && c.masq_all);
        let e = Config::load(&conf(json!({"backend": "ebtables"}))).unwrap_err();
        assert_eq!(e.code, 7);
        let e = Config::load(&conf(json!({"markMasqBit": 32}))).unwrap_err();
        assert_eq!(e.code, 7);
        let e = Config::load(&conf(json!({"markMasqBit": 1, "externalSetMarkChain": "KUBE-MARK-MASQ"})))
            .unwrap_err();
        assert_eq!(e.code, 7);
        assert!(Config::load(&conf(json!({"externalSetMarkChain": "KUBE-MARK-MASQ"}))).is_ok());
        let e = Config::load(&conf(json!({"conditionsV6": ["ip6 saddr ::1"]}))).unwrap_err();
        assert_eq!(e.code, 2, "{e}");
        assert!(e.msg.contains("conditionsV6"));
    }

    #[test]
    fn runtime_config_mappings_with_any_key_case() {
        let c = conf(json!({"runtimeConfig": {"PortMappings": [
            {"HostPort": 30080, "ContainerPort": 80, "Protocol": "TCP", "HostIP": ""},
            {"hostPort": 53, "containerPort": 5353, "protocol": "udp", "hostIP": "192.0.2.1"},
            {"hostport": 9, "containerport": 9, "protocol": "Sctp", "hostip": "2001:db8::1"}
        ]}}));
        let m = Config::load(&c).unwrap().mappings;
        assert_eq!(m[0], Mapping { host_port: 30080, container_port: 80, proto: Proto::Tcp, host_ip: None });
        assert_eq!(m[1].host_ip, Some("192.0.2.1".parse().unwrap()));
        assert_eq!(m[1].to_string(), "192.0.2.1:53/udp");
        assert_eq!(m[2].proto, Proto::Sctp);
        assert_eq!(m[2].to_string(), "[2001:db8::1]:9/sctp");
        assert!(m[1].applies_to(false) && !m[1].applies_to(true));
        assert!(m[0].applies_to(false) && m[0].applies_to(true));
    }

    #[test]
    fn bad_mappings_are_code_7() {
        for bad in [
            json!([{"hostPort": 0, "containerPort": 80}]),
            json!([{"hostPort": 65536, "containerPort": 80}]),
            json!([{"hostPort": 80, "containerPort": -1}]),
            json!([{"hostPort": "80", "containerPort": 80}]),
            json!([{"containerPort": 80}]),
            json!([{"hostPort": 80, "containerPort": 80, "protocol": "icmp"}]),
            json!([{"hostPort": 80, "containerPort": 80, "hostIP": "localhost"}]),
            json!([{"hostPort": 80, "containerPort": 80}, {"hostPort": 80, "containerPort": 81}]),
            json!({"hostPort": 80}),
            json!([1]),
        ] {
            let e = maps(bad.clone()).unwrap_err();
            assert_eq!(e.code, 7, "{bad}: {e}");
        }
    }

    #[test]
    fn duplicates_collapse_and_families_are_separate() {
        let m = maps(json!([
            {"hostPort": 80, "containerPort": 8080},
            {"hostPort": 80, "containerPort": 8080, "protocol": "tcp"},
            {"hostPort": 80, "containerPort": 8080, "protocol": "udp"},
            {"hostPort": 81, "containerPort": 1, "hostIP": "0.0.0.0"},
            {"hostPort": 81, "containerPort": 2, "hostIP": "::"},
            {"hostPort": 81, "containerPort": 3, "hostIP": "192.0.2.1"}
        ]))
        .unwrap();
        assert_eq!(m.len(), 5);
        // "any" and 0.0.0.0 are the same host side
        let e = maps(json!([{"hostPort": 80, "containerPort": 1}, {"hostPort": 80, "containerPort": 2, "hostIP": "0.0.0.0"}]))
            .unwrap_err();
        assert!(e.msg.contains("mapped twice"), "{e}");
    }

    #[test]
    fn a_mapping_half_covered_by_an_earlier_one_keeps_its_other_family() {
        // Seen while writing fuzz/portmap_config (whose check fails on it): the
        // second mapping was dropped as a duplicate of the first, so port 80 was
        // never published over IPv6.
        let m = maps(json!([
            {"hostPort": 80, "containerPort": 8080, "hostIP": "0.0.0.0"},
            {"hostPort": 80, "containerPort": 8080}
        ]))
        .unwrap();
        let any6 = Some("::".parse().unwrap());
        assert_eq!(m.len(), 2, "{m:?}");
        assert_eq!(m[1], Mapping { host_port: 80, container_port: 8080, proto: Proto::Tcp, host_ip: any6 });
        // And a later conflict with the kept half is still refused, naming the right port.
        let e = maps(json!([
            {"hostPort": 80, "containerPort": 8080, "hostIP": "0.0.0.0"},
            {"hostPort": 80, "containerPort": 8080},
            {"hostPort": 81, "containerPort": 9090},
            {"hostPort": 80, "containerPort": 9090, "hostIP": "::"}
        ]))
        .unwrap_err();
        assert!(e.msg.contains("to 8080 and 9090"), "{e}");
    }
}
