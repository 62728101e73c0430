//! The link attributes saved before ADD changed them, one file per
//! attachment in the data dir, so DEL can put them back.

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use common::{CniError, Result};

/// The saved attributes: the reference's `configToRestore`, plus who it
/// belongs to (so GC of one network never touches another's files).
#[derive(Serialize, Deserialize, Debug, Default, Clone, PartialEq)]
pub struct Saved {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub promisc: Option<bool>,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mtu: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allmulti: Option<bool>,
    #[serde(default, rename = "txQLen", skip_serializing_if = "Option::is_none")]
    pub txqlen: Option<u32>,
    #[serde(default, rename = "containerID", skip_serializing_if = "String::is_empty")]
    pub container_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ifname: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Saved {
    pub fn belongs_to(&self, container_id: &str, ifname: &str) -> bool {
        self.container_id == container_id && self.ifname == ifname
    }

    /// Values already saved win over `current` ones (they are the originals).
    pub fn merged_over(self, current: Saved) -> Saved {
        Saved {
            mac: if self.mac.is_empty() { current.mac } else { self.mac },
            promisc: self.promisc.or(current.promisc),
            mtu: if self.mtu == 0 { current.mtu } else { self.mtu },
            allmulti: self.allmulti.or(current.allmulti),
            txqlen: self.txqlen.or(current.txqlen),
            ..Default::default()
        }
    }
}

/// The longest container ID kept whole in a file name: with `:`, an interface
/// name (15), `.json` and `.tmp` the name stays within NAME_MAX (255).
const MAX_ID: usize = 200;

/// `<containerID>:<ifname>.json`: neither part can hold a `:` (container IDs
/// are `[A-Za-z0-9][A-Za-z0-9_.-]*`, interface names exclude it), so no two
/// attachments share a name. (The reference's `_` is in both: ("a", "b_eth0")
/// and ("a_b", "eth0") were one file.) A longer ID keeps its start, then `~`
/// (not in any ID) and a hash of the whole; the file itself says whose it is,
/// and `find` takes no file that names another attachment.
pub fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    if container_id.len() <= MAX_ID {
        return dir.join(format!("{container_id}:{ifname}.json"));
    }
    let mut cut = MAX_ID - 17;
    while !container_id.is_char_boundary(cut) {
        cut -= 1;
    }
    dir.join(format!("{}~{:016x}:{ifname}.json", &container_id[..cut], fnv1a(container_id.as_bytes())))
}

/// FNV-1a, 64 bits: it names files on disk, so it must never change.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// What the data dir holds for one attachment.
pub enum Found {
    Nothing,
    /// Its values, and the file they are in (this name or the previous one).
    Ours(PathBuf, Saved),
    /// A file at its name that cannot be read (or is a symlink).
    Unreadable(PathBuf),
    /// A file at its name that says it is another attachment's.
    Foreign(PathBuf, Saved),
}

pub fn find(dir: &Path, container_id: &str, ifname: &str) -> Found {
    let path = path(dir, container_id, ifname);
    match load(&path) {
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Ok(Some(s)) if s.container_id.is_empty() || s.belongs_to(container_id, ifname) => {
            return Found::Ours(path, s)
        }
        Ok(Some(s)) => return Found::Foreign(path, s),
        Ok(None) | Err(_) => return Found::Unreadable(path),
    }
    // The previous version's `<containerID>_<ifname>.json` (state from before
    // an upgrade), when it can only be this attachment's: it says so, or it
    // names no owner (the reference's) and the name has no other `_` to split at.
    let legacy = dir.join(format!("{container_id}_{ifname}.json"));
    match read(&legacy) {
        Some(s) if s.belongs_to(container_id, ifname) => Found::Ours(legacy, s),
        Some(s) if s.container_id.is_empty() && !container_id.contains('_') && !ifname.contains('_') => {
            Found::Ours(legacy, s)
        }
        _ => Found::Nothing,
    }
}

/// The file at `path`, unless it is missing, unreadable or a symlink.
pub fn read(path: &Path) -> Option<Saved> {
    load(path).ok().flatten()
}

/// Its values (None: not ours to parse). A symlink is never followed:
/// whatever it points to is not ours.
fn load(path: &Path) -> std::io::Result<Option<Saved>> {
    let mut data = Vec::new();
    OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW).open(path)?.read_to_end(&mut data)?;
    Ok(serde_json::from_slice(&data).ok())
}

/// The temporary file [`write`] renames to `path`: an ADD killed before the
/// rename leaves it, and DEL removes it.
pub fn temp_path(path: &Path) -> PathBuf {
    path.with_extension("json.tmp")
}

/// Write atomically (a temporary file renamed over `path`). The temporary
/// file is created anew (O_EXCL, which follows no symlink), and rename
/// replaces a symlink at `path` rather than writing through it.
pub fn write(path: &Path, s: &Saved) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| {
            // mkdir's EEXIST for a file in the way says nothing useful.
            match fs::metadata(dir) {
                Ok(m) if !m.is_dir() => CniError::io(format!("dataDir {} is not a directory", dir.display())),
                _ => CniError::io(format!("creating {}: {e}", dir.display())),
            }
        })?;
    }
    let tmp = temp_path(path);
    let data = serde_json::to_vec_pretty(s).map_err(|e| CniError::internal(e.to_string()))?;
    let create = || OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp);
    let file = match create() {
        // Left by an interrupted ADD, or planted: removed (unlink follows no link), not reused.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => fs::remove_file(&tmp).and_then(|_| create()),
        r => r,
    };
    let res = file.and_then(|mut f| f.write_all(&data)).and_then(|_| fs::rename(&tmp, path));
    if res.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    res.map_err(|e| CniError::io(format!("saving {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_file_is_the_references_format() {
        let s =
            Saved { mac: "aa:bb:cc:dd:ee:ff".into(), mtu: 1500, promisc: Some(false), ..Default::default() };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v, serde_json::json!({"mac": "aa:bb:cc:dd:ee:ff", "mtu": 1500, "promisc": false}));
        // A file the reference wrote reads back.
        let r: Saved =
            serde_json::from_str(r#"{"mac":"aa:bb:cc:dd:ee:ff","allmulti":true,"txQLen":5}"#).unwrap();
        assert_eq!((r.allmulti, r.txqlen), (Some(true), Some(5)));
    }

    #[test]
    fn file_names_are_one_attachments_and_fit_name_max() {
        let dir = Path::new("/d");
        let name =
            |id: &str, ifname: &str| path(dir, id, ifname).file_name().unwrap().to_str().unwrap().to_string();
        assert_eq!(name("ctr1", "eth0"), "ctr1:eth0.json");
        assert_ne!(name("a", "b_eth0"), name("a_b", "eth0"));
        let long = |last: char| format!("{}{last}", "c".repeat(499));
        let (one, two) = (name(&long('1'), "eth0"), name(&long('2'), "eth0"));
        assert_ne!(one, two);
        assert!(one.starts_with(&"c".repeat(183)) && one.contains('~'), "{one}");
        assert_eq!(name(&"c".repeat(200), "eth0123456789ab").len() + ".tmp".len(), 225);
        assert!(one.len() <= 255 && name(&"x".repeat(100_000), "eth0123456789ab").len() <= 255);
        // The hash is part of the on-disk format.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn earlier_saved_values_win() {
        let old = Saved { mtu: 1500, ..Default::default() };
        let cur = Saved { mtu: 9000, mac: "aa:bb:cc:dd:ee:ff".into(), ..Default::default() };
        let m = old.merged_over(cur);
        assert_eq!((m.mtu, m.mac.as_str()), (1500, "aa:bb:cc:dd:ee:ff"));
    }
}
