//! The tuning configuration, with the per-attachment overrides merged in
//! the reference's order: config < CNI_ARGS `MAC` < `runtimeConfig.mac` <
//! `args.cni.*` (whose `sysctl` entries are merged key by key).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use common::error::shown;
use common::skel::{parse_unicast_mac, CmdArgs};
use common::{CniError, Result};

pub const DEFAULT_DATA_DIR: &str = "/run/cni/tuning";

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Raw {
    #[serde(rename = "dataDir")]
    data_dir: String,
    sysctl: Option<BTreeMap<String, String>>,
    mac: String,
    promisc: bool,
    mtu: i64,
    allmulti: Option<bool>,
    #[serde(rename = "txQLen")]
    txqlen: Option<i64>,
}

/// What to apply to the container interface.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// Key as written in the config → (path under /proc/sys, value).
    pub sysctl: BTreeMap<String, (String, String)>,
    pub mac: Option<[u8; 6]>,
    pub promisc: bool,
    pub mtu: Option<u32>,
    pub allmulti: Option<bool>,
    pub txqlen: Option<u32>,
}

impl Settings {
    pub fn touches_link(&self) -> bool {
        self.mac.is_some()
            || self.promisc
            || self.mtu.is_some()
            || self.allmulti.is_some()
            || self.txqlen.is_some()
    }
}

/// Only `dataDir` (DEL and GC must work whatever else the config says).
pub fn data_dir(args: &CmdArgs) -> PathBuf {
    match args.conf.raw.get("dataDir").and_then(Value::as_str) {
        Some(d) if !d.is_empty() => PathBuf::from(d),
        _ => PathBuf::from(DEFAULT_DATA_DIR),
    }
}

pub fn load(args: &CmdArgs) -> Result<Settings> {
    reject_duplicate_keys(&args.stdin)?;
    let raw: Raw = args.conf.fields()?;
    let mut sysctl = raw.sysctl.unwrap_or_default();
    let mut mac = Some(raw.mac).filter(|m| !m.is_empty());
    let mut promisc = raw.promisc;
    let mut mtu = raw.mtu;
    let mut allmulti = raw.allmulti;
    let mut txqlen = raw.txqlen;

    if let Some(m) = args.args.get("MAC").filter(|m| !m.is_empty()) {
        mac = Some(m.to_string());
    }
    if let Some(m) = args.conf.runtime("mac").and_then(Value::as_str).filter(|m| !m.is_empty()) {
        mac = Some(m.to_string());
    }
    let bad = |k: &str, want: &str| CniError::invalid_config(format!("args.cni.{k} must be {want}"));
    if let Some(v) = args.conf.cni_arg("sysctl").filter(|v| !v.is_null()) {
        let m: BTreeMap<String, String> =
            serde_json::from_value(v.clone()).map_err(|_| bad("sysctl", "a map of strings"))?;
        sysctl.extend(m);
    }
    if let Some(v) = args.conf.cni_arg("mac").filter(|v| !v.is_null()) {
        mac = Some(v.as_str().ok_or_else(|| bad("mac", "a string"))?.to_string()).filter(|m| !m.is_empty());
    }
    if let Some(v) = args.conf.cni_arg("promisc").filter(|v| !v.is_null()) {
        promisc = v.as_bool().ok_or_else(|| bad("promisc", "a boolean"))?;
    }
    if let Some(v) = args.conf.cni_arg("mtu").filter(|v| !v.is_null()) {
        mtu = v.as_i64().ok_or_else(|| bad("mtu", "an integer"))?;
    }
    if let Some(v) = args.conf.cni_arg("allmulti").filter(|v| !v.is_null()) {
        allmulti = Some(v.as_bool().ok_or_else(|| bad("allmulti", "a boolean"))?);
    }
    if let Some(v) = args.conf.cni_arg("txQLen").filter(|v| !v.is_null()) {
        txqlen = Some(v.as_i64().ok_or_else(|| bad("txQLen", "an integer"))?);
    }

    let mac = match mac {
        None => None,
        Some(m) => Some(parse_unicast_mac(&m)?),
    };
    // 68 is IPv4's minimum and the least any Ethernet-like driver takes.
    let mtu = match mtu {
        0 => None,
        68..=65535 => Some(mtu as u32),
        _ => {
            return Err(CniError::invalid_config(format!(
                "invalid mtu {mtu} (must be 68-65535, or 0 to leave it as it is)"
            )))
        }
    };
    let txqlen = match txqlen {
        None => None,
        Some(q) if (0..=i64::from(u32::MAX)).contains(&q) => Some(q as u32),
        Some(q) => return Err(CniError::invalid_config(format!("invalid txQLen {q}"))),
    };
    // Keys are checked for shape and size before the allowlist sees them.
    let mut resolved = BTreeMap::new();
    for (key, value) in sysctl {
        let path = sysctl_path(&key, &args.ifname)?;
        resolved.insert(key, (path, value));
    }
    crate::allowlist::check_keys(resolved.keys())?;
    // A relative dataDir would put saved state wherever the runtime runs us.
    if !raw.data_dir.is_empty() && !raw.data_dir.starts_with('/') {
        return Err(CniError::invalid_config(format!(
            "invalid dataDir {}: must be an absolute path",
            shown(&raw.data_dir)
        )));
    }
    let data_dir =
        if raw.data_dir.is_empty() { PathBuf::from(DEFAULT_DATA_DIR) } else { raw.data_dir.into() };
    Ok(Settings { data_dir, sysctl: resolved, mac, promisc, mtu, allmulti, txqlen })
}

/// The longest path under /proc/sys that open(2) takes (PATH_MAX with its NUL).
const MAX_PATH: usize = 4096 - "/proc/sys/".len() - 1;
/// The longest file name (NAME_MAX): no sysctl has a longer component.
const MAX_NAME: usize = 255;

/// A sysctl key (`net.ipv4.conf.IFNAME.arp_ignore`, or the slash form) as a
/// path under /proc/sys, as the reference builds it (dots become slashes,
/// then the first `IFNAME` becomes CNI_IFNAME) — but refused (code 7) unless
/// it names something strictly inside `net/`: no empty, `.` or `..`
/// component, no control characters, no path or name longer than the kernel
/// takes. Network sysctls are resolved in the netns of the writing thread,
/// so a `net/` path never reaches the host's.
pub fn sysctl_path(key: &str, ifname: &str) -> Result<String> {
    let refuse =
        |why: &str| Err(CniError::invalid_config(format!("invalid net sysctl key {}: {why}", shown(key))));
    if key.len() > MAX_PATH {
        return refuse(&format!("too long (a sysctl path has at most {MAX_PATH} bytes)"));
    }
    let path = key.replace('.', "/").replacen("IFNAME", ifname, 1);
    if path.len() > MAX_PATH {
        return refuse(&format!("too long with IFNAME replaced (at most {MAX_PATH} bytes)"));
    }
    if path.split('/').any(|p| p.len() > MAX_NAME) {
        return refuse(&format!("a component is too long (a sysctl name has at most {MAX_NAME} bytes)"));
    }
    if path.chars().any(|c| c.is_control()) {
        return refuse("control characters");
    }
    let parts: Vec<&str> = path.split('/').collect();
    if parts.iter().any(|p| p.is_empty() || *p == "." || *p == "..") {
        return refuse("empty, \".\" or \"..\" path components would leave /proc/sys/net");
    }
    if parts[0] != "net" || parts.len() < 2 {
        return refuse("only net.* sysctls of the container's network namespace can be set");
    }
    Ok(path)
}

/// The reference refuses a config whose `sysctl` map repeats a key (v1.2.0);
/// serde_json keeps the last one silently, so look at the raw bytes.
fn reject_duplicate_keys(stdin: &[u8]) -> Result<()> {
    #[derive(Deserialize)]
    #[allow(dead_code)] // read only for the duplicate check
    struct Top {
        #[serde(default)]
        sysctl: Option<NoDup>,
        #[serde(default)]
        args: Option<ArgsTop>,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)] // read only for the duplicate check
    struct ArgsTop {
        #[serde(default)]
        cni: Option<CniTop>,
    }
    #[derive(Deserialize)]
    #[allow(dead_code)] // read only for the duplicate check
    struct CniTop {
        #[serde(default)]
        sysctl: Option<NoDup>,
    }
    match serde_json::from_slice::<Top>(stdin) {
        Err(e) if e.to_string().contains(DUP) => Err(CniError::invalid_config(DUP)),
        _ => Ok(()), // other shape problems are reported by the typed parse
    }
}

const DUP: &str = "duplicated sysctl keys are not allowed";

struct NoDup;

impl<'de> Deserialize<'de> for NoDup {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = NoDup;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> std::result::Result<NoDup, A::Error> {
                let mut seen = HashSet::new();
                while let Some(k) = m.next_key::<String>()? {
                    if !seen.insert(k) {
                        return Err(de::Error::custom(DUP));
                    }
                    m.next_value::<IgnoredAny>()?;
                }
                Ok(NoDup)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_net() {
        assert_eq!(
            sysctl_path("net.ipv4.conf.IFNAME.arp_ignore", "eth0").unwrap(),
            "net/ipv4/conf/eth0/arp_ignore"
        );
        assert_eq!(sysctl_path("net.ipv4.conf.IFNAME.x", "eth0.100").unwrap(), "net/ipv4/conf/eth0.100/x");
        assert_eq!(sysctl_path("net/core/somaxconn", "e").unwrap(), "net/core/somaxconn");
        for bad in [
            "kernel.hostname",
            "net",
            "net..ipv4",
            "net/../kernel/hostname",
            "/net/core/somaxconn",
            "net/core/",
            "vm.overcommit_memory",
            "net/./core",
            "fs/../net/core/somaxconn",
            "net\n.core",
        ] {
            let e = sysctl_path(bad, "eth0").unwrap_err();
            assert_eq!(e.code, 7, "{bad}");
        }
    }

    #[test]
    fn keys_stay_within_path_max_and_name_max() {
        let longest_name = format!("net.core.{}", "a".repeat(MAX_NAME));
        assert!(sysctl_path(&longest_name, "eth0").is_ok());
        let longest_path = format!("net{}", ".a".repeat((MAX_PATH - 3) / 2));
        assert!(sysctl_path(&longest_path, "eth0").is_ok());
        let cases = [
            format!("{longest_name}a"),
            format!("{longest_path}.a"),
            format!("{}.IFNAME", &longest_path[..MAX_PATH - 7]), // longer once replaced
            format!("net.{}", "a".repeat(100_000)),
        ];
        for key in cases {
            let e = sysctl_path(&key, "eth0123456789ab").unwrap_err();
            assert!(e.code == 7 && e.msg.contains("too long") && e.msg.len() < 250, "{}", e.msg);
        }
    }

    #[test]
    fn duplicate_keys_are_found_in_the_raw_text() {
        let dup = br#"{"name":"n","sysctl":{"net.core.somaxconn":"1","net.core.somaxconn":"2"}}"#;
        assert_eq!(reject_duplicate_keys(dup).unwrap_err().code, 7);
        let dup = br#"{"args":{"cni":{"sysctl":{"a":"1","a":"2"}}}}"#;
        assert!(reject_duplicate_keys(dup).is_err());
        assert!(reject_duplicate_keys(br#"{"sysctl":{"a":"1","b":"2"}}"#).is_ok());
        assert!(reject_duplicate_keys(br#"{"sysctl":null}"#).is_ok());
    }
}
