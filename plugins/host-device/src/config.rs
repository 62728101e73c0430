//! The host-device plugin's configuration: which device to take, named the
//! reference plugin's ways (`device`, `hwaddr`, `kernelpath`, `pciBusID`,
//! or the runtime's `deviceID`), checked without looking at the host.

use std::path::{Component, Path};

use serde::Deserialize;

use common::error::shown;
use common::skel::CmdArgs;
use common::spec::{fold_keys, from_fields};
use common::{CniError, Result};

const SELECTORS: [&str; 4] = ["device", "hwaddr", "kernelpath", "pciBusID"];

#[derive(Deserialize, Debug, Default)]
#[serde(default)]
struct Raw {
    device: String,
    hwaddr: String,
    kernelpath: String,
    #[serde(rename = "pciBusID")]
    pci_bus_id: String,
}

/// How the config names the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `device`: its name in the host netns.
    Name(String),
    /// `hwaddr`: its MAC address.
    Mac([u8; 6]),
    /// `kernelpath`: a kernel device under /sys/devices (its net devices), or
    /// a net device's own directory there.
    KernelPath(String),
    /// `pciBusID`: a PCI function, e.g. `0000:3b:00.1`.
    Pci(String),
    /// `runtimeConfig.deviceID` (capability `deviceID`, what Multus and the
    /// SR-IOV device plugin pass): a PCI function or an auxiliary device.
    DeviceId(String),
}

#[derive(Debug, Clone)]
pub struct Config {
    pub selector: Selector,
}

impl Config {
    /// Parse and validate (code 7). Exactly one selector; the runtime's
    /// `deviceID` takes the place of `pciBusID`, as in the reference.
    pub fn load(args: &CmdArgs) -> Result<Config> {
        // Go's decoder matches field names ignoring case: so do we.
        let mut obj = args.conf.raw.clone();
        fold_keys(&mut obj, &SELECTORS);
        let raw: Raw = from_fields(&obj)
            .map_err(|e| CniError::invalid_config(format!("invalid host-device config: {e}")))?;
        let device_id = match args.conf.runtime("deviceID") {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(other) => {
                return Err(CniError::invalid_config(format!(
                    "runtimeConfig.deviceID must be a string, got {}",
                    shown(&other.to_string())
                )))
            }
        };
        let given: Vec<&str> = [&raw.device, &raw.hwaddr, &raw.kernelpath, &raw.pci_bus_id]
            .iter()
            .zip(SELECTORS)
            .filter(|(v, _)| !v.is_empty())
            .map(|(_, k)| k)
            .collect();
        if given.len() > 1 {
            return Err(CniError::invalid_config(format!(
                "specify only one of \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\" (got \"{}\")",
                given.join("\" and \"")
            )));
        }
        let selector = match (given.first().copied(), device_id.is_empty()) {
            (None, true) => {
                return Err(CniError::invalid_config(
                    "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"",
                ))
            }
            (None | Some("pciBusID"), false) => {
                Selector::DeviceId(bus_id(&device_id, "runtimeConfig.deviceID")?)
            }
            (Some(other), false) => {
                return Err(CniError::invalid_config(format!(
                    "runtimeConfig.deviceID {} and \"{other}\" both name a device: the runtime's \
                     deviceID replaces only \"pciBusID\"",
                    shown(&device_id)
                )))
            }
            (Some("device"), true) => {
                common::skel::validate_ifname(&raw.device).map_err(|_| {
                    CniError::invalid_config(format!("invalid device name {}", shown(&raw.device)))
                })?;
                Selector::Name(raw.device)
            }
            (Some("hwaddr"), true) => Selector::Mac(parse_hwaddr(&raw.hwaddr).ok_or_else(|| {
                CniError::invalid_config(format!(
                    "invalid hwaddr {}: expected a MAC address such as 0a:58:0a:00:00:05",
                    shown(&raw.hwaddr)
                ))
            })?),
            (Some("kernelpath"), true) => Selector::KernelPath(kernel_path(&raw.kernelpath)?),
            (Some(_), true) => Selector::Pci(bus_id(&raw.pci_bus_id, "pciBusID")?),
        };
        Ok(Config { selector })
    }
}

/// A MAC in any of the forms Go's `net.ParseMAC` reads for Ethernet:
/// `0a:58:0a:00:00:05`, `0a-58-0a-00-00-05`, `0a58.0a00.0005`.
pub fn parse_hwaddr(s: &str) -> Option<[u8; 6]> {
    let (sep, width) = match () {
        _ if s.contains('.') => ('.', 4),
        _ if s.contains('-') => ('-', 2),
        _ => (':', 2),
    };
    let groups: Vec<&str> = s.split(sep).collect();
    if groups.len() * width != 12 || groups.iter().any(|g| g.len() != width) {
        return None;
    }
    let hex = groups.concat();
    let mut mac = [0u8; 6];
    for (i, b) in mac.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(mac)
}

/// `kernelpath` as the reference wants it: absolute, under /sys/devices/;
/// and never leaving it (no `.` or `..`).
fn kernel_path(p: &str) -> Result<String> {
    let path = Path::new(p);
    let plain = p.split('/').skip(1).all(|c| c != "." && c != "..")
        && path.components().skip(1).all(|c| matches!(c, Component::Normal(_)));
    if !path.is_absolute() || !p.starts_with("/sys/devices/") || !plain || p.contains('\0') {
        return Err(CniError::invalid_config(format!(
            "kernel device path {} must be absolute and begin with /sys/devices/ (no . or ..)",
            shown(p)
        )));
    }
    Ok(p.to_string())
}

/// A PCI address or auxiliary device name: one directory name under /sys/bus.
fn bus_id(id: &str, field: &str) -> Result<String> {
    if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\0']) || id.len() > 255 {
        return Err(CniError::invalid_config(format!(
            "invalid {field} {}: expected a PCI address such as 0000:3b:00.1",
            shown(id)
        )));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::fake::cmd_args;
    use common::skel::Command;
    use serde_json::{json, Value};

    fn load(extra: Value) -> Result<Config> {
        let mut c = json!({"cniVersion": "1.1.0", "name": "n", "type": "host-device"});
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        Config::load(&cmd_args(Command::Add, &c))
    }

    fn sel(extra: Value) -> Selector {
        load(extra).unwrap().selector
    }

    fn msg(extra: Value) -> String {
        let e = load(extra).unwrap_err();
        assert_eq!(e.code, 7, "{e}");
        e.msg
    }

    #[test]
    fn each_selector_and_the_runtimes_device_id() {
        assert_eq!(sel(json!({"device": "eth1"})), Selector::Name("eth1".into()));
        assert_eq!(sel(json!({"Device": "eth1"})), Selector::Name("eth1".into()), "case as Go ignores it");
        let mac = [0x0a, 0x58, 0x0a, 0, 0, 5];
        for form in ["0a:58:0a:00:00:05", "0A-58-0A-00-00-05", "0a58.0a00.0005"] {
            assert_eq!(sel(json!({"hwaddr": form})), Selector::Mac(mac), "{form}");
        }
        assert_eq!(
            sel(json!({"kernelpath": "/sys/devices/pci0000:00/0000:00:1f.6"})),
            Selector::KernelPath("/sys/devices/pci0000:00/0000:00:1f.6".into())
        );
        assert_eq!(sel(json!({"pciBusID": "0000:3b:00.1"})), Selector::Pci("0000:3b:00.1".into()));
        assert_eq!(sel(json!({"pcibusid": "0000:3b:00.1"})), Selector::Pci("0000:3b:00.1".into()));
        let rc = json!({"runtimeConfig": {"deviceID": "0000:3b:00.2"}});
        assert_eq!(sel(rc.clone()), Selector::DeviceId("0000:3b:00.2".into()));
        let both = json!({"pciBusID": "0000:3b:00.1", "runtimeConfig": {"deviceID": "0000:3b:00.2"}});
        assert_eq!(sel(both), Selector::DeviceId("0000:3b:00.2".into()), "deviceID replaces pciBusID");
        let empty = json!({"device": "eth1", "runtimeConfig": {"deviceID": ""}});
        assert_eq!(sel(empty), Selector::Name("eth1".into()));
    }

    #[test]
    fn none_two_or_a_bad_selector_is_code_7() {
        assert_eq!(msg(json!({})), "specify either \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\"");
        assert!(msg(json!({"device": "eth1", "hwaddr": "0a:58:0a:00:00:05"}))
            .contains("only one of \"device\", \"hwaddr\", \"kernelpath\" or \"pciBusID\" (got \"device\" and \"hwaddr\")"));
        let m = msg(json!({"device": "eth1", "runtimeConfig": {"deviceID": "0000:3b:00.2"}}));
        assert!(m.contains("deviceID \"0000:3b:00.2\" and \"device\" both name a device"), "{m}");
        assert!(msg(json!({"device": "a/b"})).contains("invalid device name \"a/b\""));
        assert!(msg(json!({"device": "abcdefghijklmnop"})).contains("invalid device name"));
        assert!(msg(json!({"hwaddr": "zz"})).contains("invalid hwaddr \"zz\""));
        assert!(msg(json!({"hwaddr": "0a:58:0a:00:00"})).contains("invalid hwaddr"));
        assert!(
            msg(json!({"hwaddr": "0a:58:0a:00:00:05:06:07"})).contains("invalid hwaddr"),
            "Ethernet only"
        );
        for p in
            ["sys/devices/x", "/etc/x", "/sys/devices/../../etc", "/sys/devices/./x", "/sys/class/net/eth0"]
        {
            assert!(
                msg(json!({"kernelpath": p})).contains("must be absolute and begin with /sys/devices/"),
                "{p}"
            );
        }
        for id in ["..", "0000:00/../x", "."] {
            assert!(msg(json!({"pciBusID": id})).contains("invalid pciBusID"), "{id}");
        }
        assert!(
            msg(json!({"runtimeConfig": {"deviceID": "../x"}})).contains("invalid runtimeConfig.deviceID")
        );
        assert!(msg(json!({"runtimeConfig": {"deviceID": 5}})).contains("deviceID must be a string"));
        assert!(msg(json!({"device": 5})).contains("\"device\""), "the field is named");
    }
}
