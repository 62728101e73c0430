//! Every file in conf-examples/ is a valid network configuration for our
//! plugins: it parses as libcni would load it, names a supported version and
//! a valid network name, and every plugin type is one this suite ships.

use std::path::{Path, PathBuf};

use common::spec::{valid_name, version, NetConfList};

const OUR_PLUGINS: &[&str] = &[
    "bridge",
    "host-local",
    "loopback",
    "macvlan",
    "ipvlan",
    "vlan",
    "portmap",
    "dns-sidecar",
    "dnsname",
    "firewall",
    "tuning",
    "overlay",
    "static",
    "dhcp",
    "bandwidth",
    "host-device",
    "tap",
    "dummy",
    "ptp",
    "sbr",
    "vrf",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("conflist" | "conf" | "json"))
            // Podman's own (TOML) configuration, not a network configuration.
            && p.file_name().and_then(|n| n.to_str()) != Some("containers.conf")
        {
            out.push(p);
        }
    }
}

#[test]
fn every_example_is_a_valid_network_configuration() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf-examples");
    let mut all = Vec::new();
    files(&root, &mut all);
    assert!(all.len() >= 3, "expected examples in {}", root.display());
    for path in all {
        let bytes = std::fs::read(&path).unwrap();
        let list = NetConfList::parse(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(version::supported(&list.cni_version), "{}: version {}", path.display(), list.cni_version);
        assert!(valid_name(&list.name), "{}: network name {:?}", path.display(), list.name);
        for p in &list.plugins {
            let ty = p["type"].as_str().unwrap();
            assert!(OUR_PLUGINS.contains(&ty), "{}: unknown plugin type {ty}", path.display());
            if let Some(ipam) = p.get("ipam").and_then(|i| i.get("type")).and_then(|t| t.as_str()) {
                assert!(OUR_PLUGINS.contains(&ipam), "{}: unknown ipam type {ipam}", path.display());
            }
        }
    }
}
