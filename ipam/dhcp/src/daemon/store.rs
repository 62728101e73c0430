//! Leases kept across daemon restarts: one file per lease in the state
//! directory (default `/run/cni/dhcp.leases`, beside the socket, so a reboot
//! clears it with the containers), holding the attachment and the ACK the
//! lease was bound with. A restarted daemon resumes every lease whose
//! interface is still there, so containers keep their address through a
//! daemon upgrade and DEL still releases.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::protocol::Provided;

/// A saved lease; field names are the file format.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub network: String,
    pub ifname: String,
    /// As the plugin sent it (without `-hostprefix`).
    pub netns: String,
    pub netns_dev: u64,
    pub netns_ino: u64,
    pub mac: [u8; 6],
    pub request: Vec<u8>,
    pub provide: Vec<Provided>,
    pub priority: u32,
    /// The DHCPACK, hex.
    pub ack: String,
    pub ack_src_ip: std::net::Ipv4Addr,
    pub ack_src_mac: [u8; 6],
    /// Unix seconds.
    pub bound_at: u64,
}

/// Saved files are small; anything larger is not ours.
const MAX_FILE: u64 = 1 << 20;

#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    pub fn open(dir: &Path) -> std::io::Result<Store> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
        Ok(Store { dir: dir.to_path_buf() })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// `<sha256 of the key, 32 hex digits>.json`: any key length, no path tricks.
    fn path(&self, key: &str) -> PathBuf {
        let digest = Sha256::digest(key.as_bytes());
        let name: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
        self.dir.join(format!("{name}.json"))
    }

    /// Write atomically: a fresh temporary file (O_EXCL follows no link)
    /// renamed over the lease's file.
    pub fn save(&self, key: &str, s: &Saved) -> std::io::Result<()> {
        let path = self.path(key);
        let tmp = path.with_extension("tmp");
        let data = serde_json::to_vec(s).map_err(std::io::Error::other)?;
        let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp);
        let file = match create() {
            Err(e) if e.kind() == ErrorKind::AlreadyExists => fs::remove_file(&tmp).and_then(|_| create()),
            r => r,
        };
        let res = file.and_then(|mut f| f.write_all(&data)).and_then(|_| fs::rename(&tmp, &path));
        if res.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        res
    }

    pub fn remove(&self, key: &str) {
        let _ = fs::remove_file(self.path(key));
    }

    /// Every saved lease; files that cannot be read as one are removed.
    pub fn load_all(&self) -> Vec<Saved> {
        let Ok(entries) = fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            match read(&path) {
                Some(s) => out.push(s),
                None => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        out
    }
}

fn read(path: &Path) -> Option<Saved> {
    if path.extension().is_none_or(|e| e != "json") {
        return None;
    }
    let mut data = Vec::new();
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path).ok()?;
    if !file.metadata().ok()?.is_file() {
        return None;
    }
    file.take(MAX_FILE).read_to_end(&mut data).ok()?;
    serde_json::from_slice(&data).ok()
}

pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(id: &str) -> Saved {
        Saved {
            container_id: id.into(),
            network: "lan".into(),
            ifname: "eth0".into(),
            netns: "/run/netns/x".into(),
            netns_dev: 4,
            netns_ino: 4026532000,
            mac: [2, 0, 0, 0, 0, 1],
            request: vec![3, 1],
            provide: vec![Provided { code: 12, value: "web".into() }],
            priority: 0,
            ack: to_hex(b"\x02\x01"),
            ack_src_ip: "10.0.0.1".parse().unwrap(),
            ack_src_mac: [2, 0, 0, 0, 0, 2],
            bound_at: 1_700_000_000,
        }
    }

    #[test]
    fn leases_round_trip_and_garbage_is_dropped() {
        let dir = std::env::temp_dir().join(format!("dhcp-store-{}", std::process::id()));
        let store = Store::open(&dir).unwrap();
        let long = "c".repeat(5000);
        store.save("a/lan/eth0", &saved("a")).unwrap();
        store.save(&format!("{long}/lan/eth0"), &saved(&long)).unwrap();
        store.save("a/lan/eth0", &saved("a")).unwrap(); // replaced, not doubled
        fs::write(dir.join("junk.json"), b"{not a lease").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("link.json")).unwrap();
        let mut all = store.load_all();
        all.sort_by_key(|s| s.container_id.len());
        assert_eq!(all, [saved("a"), saved(&long)]);
        assert!(!dir.join("junk.json").exists() && dir.join("link.json").symlink_metadata().is_err());
        store.remove("a/lan/eth0");
        assert_eq!(store.load_all().len(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn hex() {
        assert_eq!(to_hex(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(from_hex("00ab10"), Some(vec![0, 0xab, 0x10]));
        assert_eq!(from_hex("0g"), None);
        assert_eq!(from_hex("abc"), None);
    }
}
