//! A container's DNS names on a network, as dns-sidecar serves them and the
//! overlay records them in etcd for the other nodes: `K8S_POD_NAME`, the
//! aliases for this network (Podman's map keyed by network name, or a plain
//! list, in `runtimeConfig.aliases`), and the short container ID.
//! Lowercased, deduplicated; names that are not valid DNS names are left out.

use std::collections::HashSet;

use serde_json::Value;

use crate::skel::CmdArgs;

/// The container's names, first the one PTR answers with.
pub fn of(args: &CmdArgs) -> Vec<String> {
    let mut raw: Vec<String> = Vec::new();
    if let Some(n) = args.args.get("K8S_POD_NAME") {
        raw.push(n.to_string());
    }
    match args.conf.runtime("aliases") {
        Some(Value::Object(map)) => {
            if let Some(Value::Array(list)) = map.get(&args.conf.name) {
                raw.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
            }
        }
        Some(Value::Array(list)) => raw.extend(list.iter().filter_map(Value::as_str).map(str::to_string)),
        _ => {}
    }
    raw.push(args.container_id.chars().take(12).collect());
    // Deduplicated in linear time: a runtime may send thousands of aliases.
    let mut seen = HashSet::new();
    raw.iter().filter_map(|n| dns_name(n)).filter(|n| seen.insert(n.clone())).collect()
}

/// A name as we store and compare it: lowercase, no trailing dot, labels of
/// letters, digits, `-` and `_`, 1–63 bytes each, 253 in all. None otherwise.
pub fn dns_name(s: &str) -> Option<String> {
    let s = s.strip_suffix('.').unwrap_or(s).to_ascii_lowercase();
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        });
    ok.then_some(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::CniArgs;
    use crate::skel::Command;
    use serde_json::json;

    fn args(conf: Value, cni_args: &str) -> CmdArgs {
        let mut a = crate::fake::cmd_args(Command::Add, &conf);
        a.container_id = "0123456789abcdef".into();
        a.args = CniArgs::parse(cni_args).unwrap();
        a
    }

    #[test]
    fn pod_name_then_this_networks_aliases_then_short_id() {
        let conf = json!({"cniVersion":"1.0.0","name":"app","type":"overlay",
            "runtimeConfig":{"aliases":{"app":["Web","bad name","api.x","web"],"other":["no"]}}});
        assert_eq!(of(&args(conf, "K8S_POD_NAME=Front")), vec!["front", "web", "api.x", "0123456789ab"]);
    }

    #[test]
    fn aliases_as_a_plain_list_or_none() {
        let conf =
            json!({"cniVersion":"1.0.0","name":"app","type":"x","runtimeConfig":{"aliases":["one","two"]}});
        assert_eq!(of(&args(conf, "")), vec!["one", "two", "0123456789ab"]);
        let conf = json!({"cniVersion":"1.0.0","name":"app","type":"x"});
        assert_eq!(of(&args(conf, "")), vec!["0123456789ab"]);
    }

    #[test]
    fn thousands_of_aliases_are_deduplicated() {
        let many: Vec<String> = (0..50_000).map(|i| format!("n{}", i % 1000)).collect();
        let conf = json!({"cniVersion":"1.0.0","name":"app","type":"x","runtimeConfig":{"aliases":many}});
        let names = of(&args(conf, ""));
        assert_eq!(names.len(), 1001);
        assert_eq!((names[0].as_str(), names[999].as_str()), ("n0", "n999"));
    }

    #[test]
    fn names_are_validated_and_lowercased() {
        assert_eq!(dns_name("Web.").as_deref(), Some("web"));
        assert_eq!(dns_name("my_app-1.x").as_deref(), Some("my_app-1.x"));
        for bad in ["", ".", "a..b", "a b", "ü", &"x".repeat(64), &format!("{}xy", "a.".repeat(126))] {
            assert_eq!(dns_name(bad), None, "{bad}");
        }
    }
}
