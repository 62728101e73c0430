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

pub fn path(dir: &Path, container_id: &str, ifname: &str) -> PathBuf {
    dir.join(format!("{container_id}_{ifname}.json"))
}

/// The file at `path`, unless it is missing, unreadable or a symlink (never
/// followed: whatever it points to is not ours).
pub fn read(path: &Path) -> Option<Saved> {
    let mut data = Vec::new();
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .and_then(|mut f| f.read_to_end(&mut data))
        .ok()?;
    serde_json::from_slice(&data).ok()
}

/// Write atomically (a temporary file renamed over `path`). The temporary
/// file is created anew (O_EXCL, which follows no symlink), and rename
/// replaces a symlink at `path` rather than writing through it.
pub fn write(path: &Path, s: &Saved) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CniError::io(format!("creating {}: {e}", dir.display())))?;
    }
    let tmp = path.with_extension("json.tmp");
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
    fn earlier_saved_values_win() {
        let old = Saved { mtu: 1500, ..Default::default() };
        let cur = Saved { mtu: 9000, mac: "aa:bb:cc:dd:ee:ff".into(), ..Default::default() };
        let m = old.merged_over(cur);
        assert_eq!((m.mtu, m.mac.as_str()), (1500, "aa:bb:cc:dd:ee:ff"));
    }
}
