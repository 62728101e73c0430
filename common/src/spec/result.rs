//! The CNI Result in every spec version, held internally in the 1.1.0 shape
//! and converted on the way in and out the way libcni does it.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::version::{self, Era};
use crate::error::{CniError, Result};
use crate::ipnet::IpNet;

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(default, rename = "socketPath", skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct IpConfig {
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, rename = "advmss", skip_serializing_if = "Option::is_none")]
    pub adv_mss: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u8>,
}

impl Route {
    pub fn new(dst: IpNet, gw: Option<IpAddr>) -> Route {
        Route { dst, gw, mtu: None, adv_mss: None, priority: None, table: None, scope: None }
    }
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

impl Dns {
    pub fn is_empty(&self) -> bool {
        self.nameservers.is_empty()
            && self.domain.is_empty()
            && self.search.is_empty()
            && self.options.is_empty()
    }
}

/// A result in the 1.1.0 shape, whatever version it came in or goes out in.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct CniResult {
    #[serde(rename = "cniVersion", default)]
    pub cni_version: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interfaces: Vec<Interface>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ips: Vec<IpConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<Route>,
    #[serde(default, skip_serializing_if = "Dns::is_empty")]
    pub dns: Dns,
}

/// The 0.1.0/0.2.0 per-family block.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct LegacyIp {
    ip: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gateway: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    routes: Vec<LegacyRoute>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct LegacyRoute {
    dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gw: Option<IpAddr>,
}

impl CniResult {
    /// Parse a result in its own `cniVersion` (or `fallback` when it has none).
    pub fn parse(value: &Value, fallback: &str) -> Result<CniResult> {
        let ver =
            value.get("cniVersion").and_then(Value::as_str).filter(|v| !v.is_empty()).unwrap_or(fallback);
        let era =
            version::era(ver).ok_or_else(|| CniError::decode(format!("unknown result version {ver:?}")))?;
        let bad = |e: serde_json::Error| CniError::decode(format!("failed to parse {ver} result: {e}"));
        let mut res = match era {
            Era::Legacy => {
                let mut res = CniResult::default();
                for key in ["ip4", "ip6"] {
                    if let Some(block) = value.get(key).filter(|v| !v.is_null()) {
                        let block: LegacyIp = serde_json::from_value(block.clone()).map_err(bad)?;
                        res.ips.push(IpConfig { address: block.ip, gateway: block.gateway, interface: None });
                        res.routes.extend(block.routes.into_iter().map(|r| Route::new(r.dst, r.gw)));
                    }
                }
                if let Some(dns) = value.get("dns").filter(|v| !v.is_null()) {
                    res.dns = serde_json::from_value(dns.clone()).map_err(bad)?;
                }
                res
            }
            // The `version` key of 0.3.x/0.4.0 IPs is derived from the address; ignore it.
            Era::V03 | Era::V1 => serde_json::from_value(value.clone()).map_err(bad)?,
        };
        res.cni_version = ver.to_string();
        Ok(res)
    }

    /// The result as JSON for `ver`, or an error when it cannot be expressed
    /// there (0.1.0/0.2.0 need at least one IP).
    pub fn to_value(&self, ver: &str) -> Result<Value> {
        let era = version::era(ver).ok_or_else(|| {
            CniError::incompatible_version(format!("cannot convert result to version {ver:?}"))
        })?;
        match era {
            Era::Legacy => self.to_legacy(ver),
            Era::V03 | Era::V1 => {
                let mut out = self.clone();
                out.cni_version = ver.to_string();
                if ver != "1.1.0" {
                    for i in &mut out.interfaces {
                        i.mtu = None;
                        i.socket_path.clear();
                        i.pci_id.clear();
                    }
                }
                let mut v = serde_json::to_value(&out).map_err(|e| CniError::internal(e.to_string()))?;
                if era == Era::V03 {
                    if let Some(ips) = v.get_mut("ips").and_then(Value::as_array_mut) {
                        for (ip, cfg) in ips.iter_mut().zip(&self.ips) {
                            let fam = if cfg.address.is_ipv4() { "4" } else { "6" };
                            ip.as_object_mut().unwrap().insert("version".into(), fam.into());
                        }
                    }
                }
                Ok(v)
            }
        }
    }

    fn to_legacy(&self, ver: &str) -> Result<Value> {
        let mut out = Map::new();
        out.insert("cniVersion".into(), ver.into());
        let mut any = false;
        for (key, v4) in [("ip4", true), ("ip6", false)] {
            let Some(ip) = self.ips.iter().find(|i| i.address.is_ipv4() == v4) else { continue };
            any = true;
            let routes = self
                .routes
                .iter()
                .filter(|r| r.dst.is_ipv4() == v4)
                .map(|r| LegacyRoute { dst: r.dst, gw: r.gw })
                .collect();
            let block = LegacyIp { ip: ip.address, gateway: ip.gateway, routes };
            out.insert(
                key.into(),
                serde_json::to_value(block).map_err(|e| CniError::internal(e.to_string()))?,
            );
        }
        if !any {
            return Err(CniError::incompatible_version(format!(
                "cannot convert result to version {ver}: no valid IP addresses"
            )));
        }
        if !self.dns.is_empty() {
            out.insert("dns".into(), json!(self.dns));
        }
        Ok(Value::Object(out))
    }

    /// Serialized in version `ver`.
    pub fn to_json(&self, ver: &str) -> Result<String> {
        Ok(self.to_value(ver)?.to_string())
    }

    /// Index of the interface named `name` inside `sandbox`-ed interfaces (or any).
    pub fn interface_index(&self, name: &str) -> Option<usize> {
        self.interfaces.iter().position(|i| i.name == name && !i.sandbox.is_empty())
    }

    /// The IPs that belong to the container interface `ifname`: those whose
    /// index names it, and those without an index (IPAM-style results).
    pub fn ips_of(&self, ifname: &str) -> Vec<&IpConfig> {
        let idx = self.interface_index(ifname);
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => Some(i) == idx,
                None => true,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> CniResult {
        serde_json::from_value(json!({
            "cniVersion": "1.1.0",
            "interfaces": [
                {"name": "cni0", "mac": "aa:bb:cc:dd:ee:01"},
                {"name": "veth1", "mac": "aa:bb:cc:dd:ee:02", "mtu": 1400},
                {"name": "eth0", "mac": "aa:bb:cc:dd:ee:03", "sandbox": "/run/netns/x", "mtu": 1400,
                 "socketPath": "/run/s.sock", "pciID": "0000:00:01.0"}
            ],
            "ips": [
                {"address": "10.1.2.3/24", "gateway": "10.1.2.1", "interface": 2},
                {"address": "2001:db8::3/64", "gateway": "2001:db8::1", "interface": 2}
            ],
            "routes": [
                {"dst": "0.0.0.0/0", "gw": "10.1.2.1", "mtu": 1300, "advmss": 1200, "priority": 5, "table": 100, "scope": 0},
                {"dst": "::/0"}
            ],
            "dns": {"nameservers": ["10.1.2.1"], "search": ["dns.podman"]}
        }))
        .unwrap()
    }

    const ALL: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

    #[test]
    fn v03_and_v04_carry_ip_versions_and_no_interface_extras() {
        for ver in ["0.3.0", "0.3.1", "0.4.0"] {
            let v = full().to_value(ver).unwrap();
            assert_eq!(v["cniVersion"], ver);
            assert_eq!(v["ips"][0]["version"], "4");
            assert_eq!(v["ips"][1]["version"], "6");
            assert!(v["interfaces"][2].get("mtu").is_none());
            assert!(v["interfaces"][2].get("socketPath").is_none());
            assert_eq!(v["routes"][0]["table"], 100, "route attributes survive (shared type)");
        }
    }

    #[test]
    fn v1_has_no_ip_version_and_only_110_has_interface_extras() {
        let v = full().to_value("1.0.0").unwrap();
        assert!(v["ips"][0].get("version").is_none());
        assert!(v["interfaces"][2].get("mtu").is_none());
        let v = full().to_value("1.1.0").unwrap();
        assert_eq!(v["interfaces"][2]["mtu"], 1400);
        assert_eq!(v["interfaces"][2]["pciID"], "0000:00:01.0");
        assert_eq!(v["routes"][0]["advmss"], 1200);
    }

    #[test]
    fn legacy_shape_takes_first_ip_of_each_family_and_splits_routes() {
        let v = full().to_value("0.2.0").unwrap();
        assert_eq!(v["ip4"]["ip"], "10.1.2.3/24");
        assert_eq!(v["ip4"]["gateway"], "10.1.2.1");
        assert_eq!(v["ip4"]["routes"], json!([{"dst": "0.0.0.0/0", "gw": "10.1.2.1"}]));
        assert_eq!(v["ip6"]["routes"], json!([{"dst": "::/0"}]));
        assert_eq!(v["dns"]["nameservers"][0], "10.1.2.1");
        assert!(v.get("interfaces").is_none());
    }

    #[test]
    fn legacy_conversion_fails_without_ips() {
        let mut r = full();
        r.ips.clear();
        let e = r.to_value("0.1.0").unwrap_err();
        assert!(e.msg.contains("no valid IP addresses"), "{}", e.msg);
    }

    #[test]
    fn every_version_pair_round_trips_what_the_target_can_hold() {
        for from in ALL {
            let src = CniResult::parse(&full().to_value(from).unwrap(), from).unwrap();
            for to in ALL {
                let out = src.to_value(to).unwrap();
                assert_eq!(out["cniVersion"], to);
                let back = CniResult::parse(&out, to).unwrap();
                // Addresses, gateways and route destinations survive every hop.
                let addrs = |r: &CniResult| r.ips.iter().map(|i| (i.address, i.gateway)).collect::<Vec<_>>();
                assert_eq!(addrs(&back), addrs(&src), "{from} -> {to}");
                let dsts = |r: &CniResult| r.routes.iter().map(|r| (r.dst, r.gw)).collect::<Vec<_>>();
                assert_eq!(dsts(&back), dsts(&src), "{from} -> {to}");
                assert_eq!(back.dns, src.dns);
                let legacy = |v: &str| v == "0.1.0" || v == "0.2.0";
                if !legacy(from) && !legacy(to) {
                    assert_eq!(back.interfaces.len(), 3);
                    assert_eq!(back.ips[0].interface, Some(2));
                }
            }
        }
    }

    #[test]
    fn ips_of_picks_the_indexed_interface() {
        let r = full();
        assert_eq!(r.ips_of("eth0").len(), 2);
        assert_eq!(r.ips_of("eth1").len(), 0);
        let mut ipam = r.clone();
        ipam.interfaces.clear();
        for ip in &mut ipam.ips {
            ip.interface = None;
        }
        assert_eq!(ipam.ips_of("eth0").len(), 2);
    }

    #[test]
    fn bad_results_are_decode_errors() {
        let e = CniResult::parse(&json!({"cniVersion": "1.0.0", "ips": [{"address": "nope"}]}), "1.0.0")
            .unwrap_err();
        assert_eq!(e.code, 6);
        let e = CniResult::parse(&json!({"cniVersion": "9.9.9"}), "1.0.0").unwrap_err();
        assert_eq!(e.code, 6);
    }
}
