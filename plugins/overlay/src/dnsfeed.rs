//! Names of the other nodes' containers for the local DNS server.
//!
//! dns-sidecar (`dnsname`) serves the containers it registered itself plus
//! the records of `<DNS_SIDECAR_RUN_DIR>/<network>.remote.json`, which the
//! agent writes here from the same etcd records it programs the kernel from
//! (`names` of each address of a live node), then asks the running server to
//! `reload`. The file sits beside the server's own state directory, so a
//! server started later (the node's first container) loads it at once. Only
//! the agent writes it (atomically); only the server reads it; the server's
//! own answers path is untouched.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use crate::cluster::View;

const DNS_RUN_DIR_ENV: &str = "DNS_SIDECAR_RUN_DIR";
const DNS_DEFAULT_RUN_DIR: &str = "/run/cni/dns-sidecar";

pub struct Feed {
    file: PathBuf,
    ctl: PathBuf,
    last: Option<Vec<u8>>,
    /// Written but not yet taken by a running server.
    unsent: bool,
}

fn dns_root() -> PathBuf {
    match std::env::var_os(DNS_RUN_DIR_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DNS_DEFAULT_RUN_DIR),
    }
}

impl Feed {
    pub fn new(network: &str) -> Feed {
        let root = dns_root();
        Feed {
            file: root.join(format!("{network}.remote.json")),
            ctl: root.join(network).join("ctl.sock"),
            last: None,
            unsent: false,
        }
    }

    /// The records of the other live nodes' containers, as dns-sidecar reads them.
    pub fn records(view: &View, me: &str, prefix: u8) -> serde_json::Value {
        let containers: Vec<_> = view
            .ips
            .iter()
            .filter(|(_, r)| r.node != me && view.nodes.contains_key(&r.node) && !r.names.is_empty())
            .map(|(ip, r)| {
                json!({"id": r.container_id, "ifname": r.ifname, "names": r.names,
                    "ips": [format!("{}/{prefix}", IpAddr::V4(*ip))]})
            })
            .collect();
        json!({ "containers": containers })
    }

    /// Write the records when they changed and tell a running server.
    pub fn update(&mut self, view: &View, me: &str, prefix: u8) {
        let bytes = Feed::records(view, me, prefix).to_string().into_bytes();
        if self.last.as_ref() != Some(&bytes) {
            if let Some(dir) = self.file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            if crate::state::write_json(
                &self.file,
                &serde_json::from_slice::<serde_json::Value>(&bytes).unwrap(),
            )
            .is_ok()
            {
                self.last = Some(bytes);
                self.unsent = true;
            }
        }
        self.retry();
    }

    /// Push an update the server has not taken yet (it may have been starting).
    pub fn retry(&mut self) {
        if self.unsent && (!self.ctl.exists() || reload(&self.ctl)) {
            self.unsent = false;
        }
    }

    /// The agent leaves: its records go.
    pub fn remove(&mut self) {
        if std::fs::remove_file(&self.file).is_ok() && self.ctl.exists() {
            let _ = reload(&self.ctl);
        }
        self.last = None;
    }
}

fn reload(ctl: &PathBuf) -> bool {
    let Ok(mut s) = UnixStream::connect(ctl) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"reload\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(&s).read_line(&mut line).is_ok() && line.starts_with("ok")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{IpRecord, NodeRecord};

    #[test]
    fn only_named_containers_of_other_live_nodes() {
        let mut v = View::default();
        v.nodes.insert("a".into(), NodeRecord { vtep: "192.0.2.1".parse().unwrap() });
        v.nodes.insert("b".into(), NodeRecord { vtep: "192.0.2.2".parse().unwrap() });
        let rec = |node: &str, id: &str, names: &[&str]| IpRecord {
            node: node.into(),
            container_id: id.into(),
            ifname: "eth0".into(),
            mac: String::new(),
            names: names.iter().map(|s| s.to_string()).collect(),
        };
        v.ips.insert("10.90.0.2".parse().unwrap(), rec("a", "c1", &["web"]));
        v.ips.insert("10.90.0.3".parse().unwrap(), rec("b", "c2", &["db", "c2"]));
        v.ips.insert("10.90.0.4".parse().unwrap(), rec("dead", "c3", &["old"]));
        v.ips.insert("10.90.0.5".parse().unwrap(), rec("b", "c4", &[]));
        let r = Feed::records(&v, "a", 16);
        assert_eq!(
            r,
            json!({"containers": [{"id": "c2", "ifname": "eth0", "names": ["db", "c2"], "ips": ["10.90.0.3/16"]}]})
        );
    }
}
