//! Network configuration as a plugin receives it, and network lists as a
//! runtime reads them.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::result::{CniResult, Dns};
use super::version;
use crate::error::{shown, CniError, Result};

/// `^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$` — network names and container IDs.
pub fn valid_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// The longest file name (NAME_MAX): a network name used as a directory
/// name can be no longer.
pub const MAX_FILE_NAME: usize = 255;

/// Deserialize a plugin's fields from a config object. serde's messages do
/// not say which field is wrong (`invalid type: string "1500", expected
/// u32`), so on an error the field is found: the one whose removal makes
/// the rest deserialize. The message is cut when a huge value is quoted in it.
pub fn from_fields<T: DeserializeOwned>(obj: &Value) -> std::result::Result<T, String> {
    let err = match T::deserialize(obj) {
        Ok(t) => return Ok(t),
        Err(e) => e.to_string(),
    };
    let err = match err.char_indices().nth(200) {
        Some((cut, _)) => format!("{}… ({} bytes)", &err[..cut], err.len()),
        None => err,
    };
    let culprit = obj.as_object().and_then(|map| {
        map.keys().find(|k| {
            let mut rest = map.clone();
            rest.remove(*k);
            T::deserialize(&Value::Object(rest)).is_ok()
        })
    });
    match culprit {
        Some(k) => Err(format!("{}: {err}", shown(k))),
        None => Err(err),
    }
}

/// Rename keys of `obj` that match a canonical name ignoring ASCII case, the
/// way Go's JSON decoding matches fields (containerd's CRI sends `HostPort`).
pub fn fold_keys(obj: &mut Value, canonical: &[&str]) {
    let Some(map) = obj.as_object_mut() else { return };
    let renames: Vec<(String, &str)> = map
        .keys()
        .filter_map(|k| {
            canonical.iter().find(|c| c.eq_ignore_ascii_case(k) && *c != k).map(|c| (k.clone(), *c))
        })
        .collect();
    for (from, to) in renames {
        if let Some(v) = map.remove(&from) {
            map.entry(to.to_string()).or_insert(v);
        }
    }
}

/// An attachment named in GC's `cni.dev/valid-attachments`.
#[derive(Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
}

/// The configuration one plugin receives on stdin.
#[derive(Clone, Debug)]
pub struct NetConf {
    pub cni_version: String,
    pub name: String,
    pub plugin_type: String,
    pub dns: Option<Dns>,
    pub prev_result: Option<CniResult>,
    /// The whole object, for the plugin's own fields.
    pub raw: Value,
}

impl NetConf {
    /// Parse stdin: 6 for malformed JSON, 7 for a config that is not valid.
    pub fn parse(stdin: &[u8]) -> Result<NetConf> {
        let raw: Value = serde_json::from_slice(stdin)
            .map_err(|e| CniError::decode(format!("failed to parse network config: {e}")))?;
        if !raw.is_object() {
            return Err(CniError::decode("failed to parse network config: not a JSON object"));
        }
        let text = |k: &str| -> Result<String> {
            match raw.get(k) {
                None | Some(Value::Null) => Ok(String::new()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(_) => {
                    Err(CniError::decode(format!("failed to parse network config: {k:?} must be a string")))
                }
            }
        };
        let mut cni_version = text("cniVersion")?;
        if cni_version.is_empty() {
            cni_version = "0.1.0".into();
        }
        if version::parse(&cni_version).is_none() {
            return Err(CniError::decode(format!(
                "invalid cniVersion {}: not a semantic version",
                shown(&cni_version)
            )));
        }
        let name = text("name")?;
        if name.is_empty() {
            return Err(CniError::invalid_config("missing network name"));
        }
        if !valid_name(&name) {
            return Err(CniError::invalid_config(format!(
                "invalid network name {}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
                shown(&name)
            )));
        }
        let plugin_type = text("type")?;
        let dns = match raw.get("dns") {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone())
                    .map_err(|e| CniError::invalid_config(format!("invalid \"dns\": {e}")))?,
            ),
        };
        // The delegation a plugin does with it must not guess: `{}` (no
        // IPAM) or an object naming a plugin.
        match raw.get("ipam") {
            None | Some(Value::Null) | Some(Value::Object(_)) => {}
            Some(_) => return Err(CniError::invalid_config("invalid \"ipam\": must be an object")),
        }
        match raw.get("ipam").and_then(|i| i.get("type")) {
            None | Some(Value::Null) | Some(Value::String(_)) => {}
            Some(_) => return Err(CniError::invalid_config("invalid \"ipam\": \"type\" must be a string")),
        }
        let prev_result = match raw.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v) => Some(CniResult::parse(v, &cni_version).map_err(|e| e.context("invalid prevResult"))?),
        };
        Ok(NetConf { cni_version, name, plugin_type, dns, prev_result, raw })
    }

    /// The plugin's own fields, deserialized from the whole object (code 7
    /// on error, naming the field: see [`from_fields`]).
    pub fn fields<T: DeserializeOwned>(&self) -> Result<T> {
        from_fields(&self.raw)
            .map_err(|e| CniError::invalid_config(format!("invalid {} config: {e}", self.type_name())))
    }

    /// The network name as the name of a state directory of `plugin`: code 7
    /// when it is longer than a file name can be (the spec sets no limit,
    /// the file system does).
    pub fn name_as_dir(&self, plugin: &str) -> Result<&str> {
        if self.name.len() > MAX_FILE_NAME {
            return Err(CniError::invalid_config(format!(
                "network name {} is too long for {plugin}, which keeps its state in a directory named \
                 after the network: a file name has at most {MAX_FILE_NAME} bytes",
                shown(&self.name)
            )));
        }
        Ok(&self.name)
    }

    fn type_name(&self) -> &str {
        if self.plugin_type.is_empty() {
            "plugin"
        } else {
            &self.plugin_type
        }
    }

    pub fn runtime_config(&self) -> Option<&Map<String, Value>> {
        self.raw.get("runtimeConfig").and_then(Value::as_object)
    }

    /// A `runtimeConfig` entry, key matched ignoring case.
    pub fn runtime(&self, key: &str) -> Option<&Value> {
        let rc = self.runtime_config()?;
        rc.get(key).or_else(|| rc.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
    }

    /// `args.cni.<key>` (CONVENTIONS.md).
    pub fn cni_arg(&self, key: &str) -> Option<&Value> {
        self.raw.get("args")?.get("cni")?.get(key)
    }

    pub fn ipam(&self) -> Option<&Value> {
        self.raw.get("ipam").filter(|v| !v.is_null())
    }

    /// `ipam.type`, or None for an absent or empty (`{}`) ipam section.
    pub fn ipam_type(&self) -> Option<&str> {
        self.ipam()?.get("type").and_then(Value::as_str).filter(|s| !s.is_empty())
    }

    /// GC's attachment list (also the misspelled legacy key libcni sends).
    pub fn valid_attachments(&self) -> Result<Vec<Attachment>> {
        let v = self.raw.get("cni.dev/valid-attachments").or_else(|| self.raw.get("cni.dev/attachments"));
        match v {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(v) => serde_json::from_value(v.clone())
                .map_err(|e| CniError::invalid_config(format!("invalid cni.dev/valid-attachments: {e}"))),
        }
    }
}

/// A network configuration list (`.conflist`) or a single legacy `.conf`
/// wrapped into a one-plugin list, as libcni loads them.
#[derive(Clone, Debug)]
pub struct NetConfList {
    pub cni_version: String,
    pub name: String,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<Value>,
    pub raw: Value,
}

impl NetConfList {
    pub fn parse(bytes: &[u8]) -> Result<NetConfList> {
        let raw: Value = serde_json::from_slice(bytes)
            .map_err(|e| CniError::decode(format!("failed to parse network configuration: {e}")))?;
        let s = |k: &str| raw.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let flag = |k: &str| match raw.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        };
        let mut cni_version = s("cniVersion");
        // 1.1.0 `cniVersions`: pick the highest we support.
        if let Some(list) = raw.get("cniVersions").and_then(Value::as_array) {
            let best = list
                .iter()
                .filter_map(Value::as_str)
                .chain(std::iter::once(cni_version.as_str()))
                .filter(|v| version::supported(v))
                .max_by_key(|v| version::parse(v));
            if let Some(b) = best {
                cni_version = b.to_string();
            }
        }
        let plugins = match raw.get("plugins") {
            Some(Value::Array(p)) => p.clone(),
            Some(_) => return Err(CniError::invalid_config("\"plugins\" must be a list")),
            None if raw.get("type").is_some() => {
                // A single-plugin .conf: the whole object is the plugin.
                let mut p = raw.clone();
                if let Some(m) = p.as_object_mut() {
                    m.remove("cniVersion");
                    m.remove("name");
                }
                vec![p]
            }
            None => return Err(CniError::invalid_config("network configuration has no \"plugins\"")),
        };
        if plugins.iter().any(|p| p.get("type").and_then(Value::as_str).unwrap_or("").is_empty()) {
            return Err(CniError::invalid_config("every plugin needs a \"type\""));
        }
        Ok(NetConfList {
            cni_version,
            name: s("name"),
            disable_check: flag("disableCheck"),
            disable_gc: flag("disableGC"),
            plugins,
            raw,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_follow_the_spec_regex() {
        for ok in ["a", "net1", "my-net_2.x", "0abc"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "-a", ".", "..", "a/b", "a b", "_x", "a:b", "ü"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn parse_defaults_version_and_checks_name() {
        let c = NetConf::parse(br#"{"name":"n","type":"bridge"}"#).unwrap();
        assert_eq!(c.cni_version, "0.1.0");
        assert_eq!(NetConf::parse(b"{bad").unwrap_err().code, 6);
        assert_eq!(NetConf::parse(br#"[1]"#).unwrap_err().code, 6);
        assert_eq!(NetConf::parse(br#"{"cniVersion":"1.0.0"}"#).unwrap_err().code, 7);
        assert_eq!(NetConf::parse(br#"{"cniVersion":"1.0.0","name":"../x"}"#).unwrap_err().code, 7);
        assert_eq!(NetConf::parse(br#"{"cniVersion":"one","name":"x"}"#).unwrap_err().code, 6);
    }

    #[test]
    fn field_errors_name_the_field() {
        #[derive(serde::Deserialize, Debug, Default)]
        #[serde(default, rename_all = "camelCase")]
        #[allow(dead_code)]
        struct F {
            mtu: u32,
            is_gateway: bool,
            name: String,
        }
        let e = from_fields::<F>(&json!({"name": "n", "mtu": "1500"})).unwrap_err();
        assert_eq!(e, "\"mtu\": invalid type: string \"1500\", expected u32");
        let e = from_fields::<F>(&json!({"isGateway": "x".repeat(100_000)})).unwrap_err();
        assert!(e.starts_with("\"isGateway\": invalid type: string") && e.len() < 300, "{e}");
        // Two bad fields: no single culprit, serde's message as it is.
        let e = from_fields::<F>(&json!({"mtu": -1, "isGateway": 1})).unwrap_err();
        assert!(e.starts_with("invalid "), "{e}");
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","type":"t","mtu":true}"#).unwrap();
        let e = c.fields::<F>().unwrap_err();
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "invalid t config: \"mtu\": invalid type: boolean `true`, expected u32")
        );
    }

    #[test]
    fn ipam_must_be_an_object_naming_a_plugin() {
        for bad in [json!(["a"]), json!("host-local"), json!({"type": 5})] {
            let v = json!({"cniVersion": "1.0.0", "name": "n", "ipam": bad});
            let e = NetConf::parse(v.to_string().as_bytes()).unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
            assert!(e.msg.contains("\"ipam\""), "{e}");
        }
        for ok in [json!({}), json!(null), json!({"type": "host-local"})] {
            NetConf::parse(json!({"cniVersion": "1.0.0", "name": "n", "ipam": ok}).to_string().as_bytes())
                .unwrap();
        }
    }

    #[test]
    fn long_names_are_cut_in_messages_and_refused_as_directories() {
        let name = "n".repeat(100_000);
        let c = NetConf::parse(json!({"cniVersion": "1.0.0", "name": name}).to_string().as_bytes()).unwrap();
        let e = c.name_as_dir("host-local").unwrap_err();
        assert!(e.code == 7 && e.msg.contains("(100000 bytes)") && e.msg.len() < 300, "{e}");
        let c =
            NetConf::parse(json!({"cniVersion": "1.0.0", "name": "n".repeat(255)}).to_string().as_bytes())
                .unwrap();
        assert_eq!(c.name_as_dir("x").unwrap().len(), 255);
        let e =
            NetConf::parse(json!({"cniVersion": "1.0.0", "name": format!("{name}/")}).to_string().as_bytes())
                .unwrap_err();
        assert!(e.msg.contains("(100001 bytes)") && e.msg.len() < 300, "{e}");
    }

    #[test]
    fn prev_result_is_read_in_the_config_version() {
        let c = NetConf::parse(
            br#"{"cniVersion":"0.4.0","name":"n","prevResult":{"ips":[{"version":"4","address":"10.0.0.2/24"}]}}"#,
        )
        .unwrap();
        assert_eq!(c.prev_result.unwrap().ips[0].address.to_string(), "10.0.0.2/24");
    }

    #[test]
    fn runtime_config_keys_match_ignoring_case() {
        let c = NetConf::parse(br#"{"cniVersion":"1.0.0","name":"n","runtimeConfig":{"PortMappings":[]}}"#)
            .unwrap();
        assert!(c.runtime("portMappings").is_some());
        let mut m = json!({"HostPort": 1, "containerPort": 2, "PROTOCOL": "tcp"});
        fold_keys(&mut m, &["hostPort", "containerPort", "protocol", "hostIP"]);
        assert_eq!(m, json!({"hostPort": 1, "containerPort": 2, "protocol": "tcp"}));
    }

    #[test]
    fn gc_attachments_accept_both_keys() {
        for key in ["cni.dev/valid-attachments", "cni.dev/attachments"] {
            let c = NetConf::parse(
                json!({"cniVersion":"1.1.0","name":"n", key: [{"containerID":"c1","ifname":"eth0"}]})
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
            assert_eq!(c.valid_attachments().unwrap()[0].container_id, "c1");
        }
    }

    #[test]
    fn conflist_and_single_conf() {
        let l = NetConfList::parse(br#"{"cniVersion":"1.0.0","cniVersions":["0.4.0","1.1.0","9.0.0"],"name":"n","disableCheck":"true","plugins":[{"type":"bridge"}]}"#).unwrap();
        assert_eq!(l.cni_version, "1.1.0");
        assert!(l.disable_check);
        let l = NetConfList::parse(br#"{"cniVersion":"0.3.1","name":"n","type":"loopback"}"#).unwrap();
        assert_eq!(l.plugins, vec![json!({"type":"loopback"})]);
        assert!(NetConfList::parse(br#"{"name":"n","plugins":[{}]}"#).is_err());
    }
}
