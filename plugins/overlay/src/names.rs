//! A container's DNS names, recorded with its address in etcd so the DNS
//! servers of the other nodes can answer them. The same rules as
//! dns-sidecar's own: `K8S_POD_NAME`, the aliases for this network
//! (`runtimeConfig.aliases` when the overlay entry declares the `aliases`
//! capability), and the short container ID; lowercased, deduplicated,
//! invalid DNS names left out.

use common::skel::CmdArgs;
use serde_json::Value;

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
    let mut out: Vec<String> = Vec::new();
    for n in raw.iter().filter_map(|n| dns_name(n)) {
        if !out.contains(&n) {
            out.push(n);
        }
    }
    out
}

fn dns_name(s: &str) -> Option<String> {
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
    use common::args::CniArgs;
    use common::skel::Command;
    use common::spec::NetConf;
    use serde_json::json;

    #[test]
    fn pod_name_aliases_and_short_id() {
        let conf = json!({"cniVersion":"1.0.0","name":"app","type":"overlay",
            "runtimeConfig":{"aliases":{"app":["Web","bad name","api.x"],"other":["no"]}}});
        let args = CmdArgs {
            command: Command::Add,
            container_id: "0123456789abcdef".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: CniArgs::parse("K8S_POD_NAME=Front").unwrap(),
            path: vec![],
            stdin: vec![],
            conf: NetConf::parse(conf.to_string().as_bytes()).unwrap(),
            env: vec![],
        };
        assert_eq!(of(&args), vec!["front", "web", "api.x", "0123456789ab"]);
    }
}
