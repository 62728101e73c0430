//! The plugin's configuration: the `ipam` section as the reference reads it.
//!
//! | field | meaning |
//! |---|---|
//! | `daemonSocketPath` | the daemon's socket (default `/run/cni/dhcp.sock`) |
//! | `request` | `[{skipDefault?, option?}]`: options asked of the server |
//! | `provide` | `[{option, value?, fromArg?}]`: options sent to the server |
//! | `priority` | metric of the result's routes |

use common::args::CniArgs;
use common::error::shown;
use common::spec::{fold_keys, NetConf};
use common::{CniError, Result};
use serde::Deserialize;
use serde_json::Value;

use crate::options;
use crate::protocol::Provided;

pub const DEFAULT_SOCKET_PATH: &str = "/run/cni/dhcp.sock";

/// Asked for unless `skipDefault`: the reference's routers and subnet mask,
/// and the DNS options the result carries.
pub const DEFAULT_REQUEST: &[u8] = &[
    options::ROUTERS,
    options::SUBNET_MASK,
    options::DOMAIN_NAME_SERVERS,
    options::DOMAIN_NAME,
    options::DOMAIN_SEARCH,
];

#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub socket_path: String,
    pub request: Vec<u8>,
    pub provide: Vec<Provided>,
    pub priority: u32,
}

#[derive(Deserialize, Default)]
struct RawIpam {
    #[serde(rename = "daemonSocketPath")]
    daemon_socket_path: Option<String>,
    request: Option<Vec<RawRequest>>,
    provide: Option<Vec<RawProvide>>,
    priority: Option<i64>,
}

#[derive(Deserialize)]
struct RawRequest {
    #[serde(default, rename = "skipDefault")]
    skip_default: bool,
    #[serde(default)]
    option: String,
}

#[derive(Deserialize)]
struct RawProvide {
    #[serde(default)]
    option: String,
    #[serde(default)]
    value: String,
    #[serde(default, rename = "fromArg")]
    from_arg: String,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::invalid_config(msg)
}

fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

fn raw_ipam(conf: &NetConf) -> Result<RawIpam> {
    let mut ipam = match field(&conf.raw, "ipam") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => return Err(bad("IPAM config missing 'ipam' key")),
        Some(_) => return Err(bad("invalid ipam config: \"ipam\" must be an object")),
    };
    // Go's decoder matches field names ignoring case.
    fold_keys(&mut ipam, &["daemonSocketPath", "request", "provide", "priority"]);
    for (key, names) in
        [("request", &["skipDefault", "option"][..]), ("provide", &["option", "value", "fromArg"])]
    {
        if let Some(Value::Array(items)) = ipam.get_mut(key) {
            items.iter_mut().for_each(|i| fold_keys(i, names));
        }
    }
    common::spec::from_fields(&ipam).map_err(|e| bad(format!("invalid dhcp ipam config: {e}")))
}

/// Only the socket: what DEL, GC and STATUS need, so they work even when the
/// options can no longer be resolved.
pub fn socket_path(conf: &NetConf) -> Result<String> {
    checked_socket_path(raw_ipam(conf)?.daemon_socket_path)
}

/// The longest path the kernel takes (PATH_MAX less its NUL).
const MAX_PATH: usize = 4095;

fn checked_socket_path(path: Option<String>) -> Result<String> {
    let path = path.filter(|p| !p.is_empty()).unwrap_or_else(|| DEFAULT_SOCKET_PATH.into());
    if path.len() > MAX_PATH {
        return Err(bad(format!(
            "invalid daemonSocketPath {}: longer than a path can be ({MAX_PATH} bytes)",
            shown(&path)
        )));
    }
    Ok(path)
}

/// The whole configuration, with `fromArg` values taken from `CNI_ARGS`.
pub fn load(conf: &NetConf, args: &CniArgs) -> Result<Config> {
    let ipam = raw_ipam(conf)?;
    let socket_path = checked_socket_path(ipam.daemon_socket_path)?;

    // Provided options, in order; a later one with the same code wins, as
    // in the reference (value first, then fromArg when that argument is set).
    let mut provide: Vec<Provided> = Vec::new();
    for p in ipam.provide.unwrap_or_default() {
        let code = options::parse(&p.option)
            .and_then(options::providable)
            .map_err(|e| bad(format!("invalid ipam.provide option: {e}")))?;
        let mut set = |value: &str, source: &str| -> Result<()> {
            if value.len() > 255 {
                return Err(bad(format!(
                    "invalid ipam.provide: value too long for option {} ({source}): {} bytes, at most 255",
                    shown(&p.option),
                    value.len()
                )));
            }
            provide.retain(|o| o.code != code);
            provide.push(Provided { code, value: value.to_string() });
            Ok(())
        };
        if !p.value.is_empty() {
            set(&p.value, "value")?;
        }
        if !p.from_arg.is_empty() {
            if let Some(v) = args.get(&p.from_arg) {
                set(v, &format!("from CNI_ARGS {}", p.from_arg))?;
            }
        }
    }

    let mut request = Vec::new();
    let mut skip_default = false;
    for r in ipam.request.unwrap_or_default() {
        skip_default |= r.skip_default;
        if r.option.is_empty() {
            continue;
        }
        let code = options::parse(&r.option).map_err(|e| bad(format!("invalid ipam.request option: {e}")))?;
        if !request.contains(&code) {
            request.push(code);
        }
    }
    if !skip_default {
        for code in DEFAULT_REQUEST {
            if !request.contains(code) {
                request.push(*code);
            }
        }
    }

    let priority = match ipam.priority.unwrap_or(0) {
        p if (0..=u32::MAX as i64).contains(&p) => p as u32,
        p => return Err(bad(format!("invalid ipam.priority {p}: must be 0 to {}", u32::MAX))),
    };
    Ok(Config { socket_path, request, provide, priority })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn load_with(ipam: Value, cni_args: &str) -> Result<Config> {
        let conf =
            NetConf::parse(json!({"cniVersion": "1.0.0", "name": "n", "ipam": ipam}).to_string().as_bytes())
                .unwrap();
        load(&conf, &CniArgs::parse(cni_args).unwrap())
    }

    #[test]
    fn defaults() {
        let c = load_with(json!({"type": "dhcp"}), "").unwrap();
        assert_eq!(c.socket_path, "/run/cni/dhcp.sock");
        assert_eq!(c.request, [3, 1, 6, 15, 119]);
        assert!(c.provide.is_empty());
        assert_eq!(c.priority, 0);
    }

    #[test]
    fn the_reference_example_sends_the_pod_name_as_host_name() {
        let c = load_with(
            json!({"type": "dhcp", "daemonSocketPath": "/tmp/x.sock", "request": [{"skipDefault": false}],
                   "provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}),
            "IgnoreUnknown=1;K8S_POD_NAME=web-1",
        )
        .unwrap();
        assert_eq!(c.socket_path, "/tmp/x.sock");
        assert_eq!(c.provide, [Provided { code: 12, value: "web-1".into() }]);
        // fromArg naming an argument that is not there sends nothing.
        let c =
            load_with(json!({"provide": [{"option": "host-name", "fromArg": "K8S_POD_NAME"}]}), "").unwrap();
        assert!(c.provide.is_empty());
    }

    #[test]
    fn request_lists_keep_order_and_skip_default_drops_ours() {
        let c = load_with(
            json!({"request": [{"option": "121"}, {"option": "routers"}, {"option": "ntp-servers"}]}),
            "",
        )
        .unwrap();
        assert_eq!(c.request, [121, 3, 42, 1, 6, 15, 119]);
        let c =
            load_with(json!({"request": [{"skipDefault": true}, {"option": "subnet-mask"}]}), "").unwrap();
        assert_eq!(c.request, [1]);
    }

    #[test]
    fn later_provided_values_replace_earlier_ones_of_the_same_option() {
        let c = load_with(
            json!({"PROVIDE": [{"Option": "12", "Value": "fixed"}, {"option": "host-name", "fromArg": "NAME"},
                               {"option": "vendor-class-identifier", "value": "cni"}], "Priority": 7}),
            "NAME=from-args",
        )
        .unwrap();
        assert_eq!(
            c.provide,
            [Provided { code: 12, value: "from-args".into() }, Provided { code: 60, value: "cni".into() }]
        );
        assert_eq!(c.priority, 7);
    }

    #[test]
    fn the_conf_examples_load() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conf-examples");
        for (file, socket, provided) in [
            ("podman/macvlan-dhcp.conflist", DEFAULT_SOCKET_PATH, 0),
            ("cnitool/dhcp-macvlan.conflist", DEFAULT_SOCKET_PATH, 2),
        ] {
            let list: Value = serde_json::from_slice(&std::fs::read(root.join(file)).unwrap()).unwrap();
            let mut plugin = list["plugins"][0].clone();
            plugin["cniVersion"] = list["cniVersion"].clone();
            plugin["name"] = list["name"].clone();
            let conf = NetConf::parse(plugin.to_string().as_bytes()).unwrap();
            let c = load(&conf, &CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web").unwrap()).unwrap();
            assert_eq!((c.socket_path.as_str(), c.provide.len()), (socket, provided), "{file}");
        }
    }

    #[test]
    fn bad_options_are_config_errors() {
        let long = "x".repeat(256);
        let long_arg = format!("N={long}");
        for (ipam, args, want) in [
            (
                json!({"request": [{"option": "bogus"}]}),
                "",
                "invalid ipam.request option: Can not parse option \"bogus\"",
            ),
            (json!({"provide": [{"option": "300", "value": "x"}]}), "", "Can not parse option \"300\""),
            (json!({"provide": [{"option": "", "value": "x"}]}), "", "Can not parse option \"\""),
            (json!({"provide": [{"option": "53", "value": "x"}]}), "", "set by the DHCP client itself"),
            (json!({"provide": [{"option": "host-name", "value": long}]}), "", "value too long"),
            (
                json!({"provide": [{"option": "host-name", "fromArg": "N"}]}),
                long_arg.as_str(),
                "from CNI_ARGS N",
            ),
            (json!({"priority": -1}), "", "invalid ipam.priority -1"),
            (json!({"request": "routers"}), "", "invalid dhcp ipam config"),
        ] {
            let e = load_with(ipam.clone(), args).unwrap_err();
            assert_eq!(e.code, 7, "{ipam}");
            assert!(e.msg.contains(want), "{ipam}: {:?} lacks {want:?}", e.msg);
        }
        let conf = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n"}"#).unwrap();
        assert_eq!(socket_path(&conf).unwrap_err().msg, "IPAM config missing 'ipam' key");
    }
}
