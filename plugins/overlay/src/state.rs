//! Per-network state on this node, under `$OVERLAY_RUN_DIR` (default
//! `/run/cni/overlay`) `/<network>/`, mode 0700:
//!
//! | file               | written by     | purpose                                                     |
//! |--------------------|----------------|-------------------------------------------------------------|
//! | `lock`             | plugin, agent  | flock serialising changes to the files below                 |
//! | `config.json`      | plugin         | the resolved config the agent runs with                      |
//! | `attachments.json` | plugin         | this node's containers: claim, MAC, host veth                |
//! | `pending.json`     | plugin, agent  | releases etcd did not take yet (retried by the agent and GC) |
//! | `agent.lock`       | agent          | flock held for the agent's whole life: "is it running?"      |
//! | `pid`, `ctl.sock`  | agent          | its pid; its control socket (`ping`, `sync`, `stop`)         |

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use common::lock::FileLock;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cluster::Claim;

pub const RUN_DIR_ENV: &str = "OVERLAY_RUN_DIR";
pub const DEFAULT_RUN_DIR: &str = "/run/cni/overlay";

pub fn run_root() -> PathBuf {
    match std::env::var_os(RUN_DIR_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(DEFAULT_RUN_DIR),
    }
}

/// One container of this node on the network.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub claim: Claim,
    /// The host end, so DEL and GC can remove it without the netns.
    #[serde(default)]
    pub host_veth: String,
}

/// A release etcd has not taken yet.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub claim: Claim,
}

#[derive(Clone, Debug)]
pub struct NetDir {
    pub network: String,
    pub path: PathBuf,
}

impl NetDir {
    pub fn new(network: &str) -> NetDir {
        NetDir { network: network.to_string(), path: run_root().join(network) }
    }

    pub fn config_path(&self) -> PathBuf {
        self.path.join("config.json")
    }
    fn attachments_path(&self) -> PathBuf {
        self.path.join("attachments.json")
    }
    fn pending_path(&self) -> PathBuf {
        self.path.join("pending.json")
    }
    pub fn agent_lock_path(&self) -> PathBuf {
        self.path.join("agent.lock")
    }
    pub fn pid_path(&self) -> PathBuf {
        self.path.join("pid")
    }
    pub fn ctl_path(&self) -> PathBuf {
        self.path.join("ctl.sock")
    }

    pub fn exists(&self) -> bool {
        self.path.is_dir()
    }

    /// Take the network's lock (creating the directory when `create`); None
    /// when there is no directory and `create` is false. A lock on a file
    /// that a concurrent teardown unlinked is dropped and taken again.
    pub fn lock(&self, create: bool) -> io::Result<Option<FileLock>> {
        for _ in 0..1000 {
            if create {
                fs::create_dir_all(self.path.parent().unwrap_or(Path::new("/")))?;
                match DirBuilder::new().mode(0o700).create(&self.path) {
                    Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                    _ => {}
                }
            } else if !self.exists() {
                return Ok(None);
            }
            let lock = match FileLock::exclusive(self.path.join("lock")) {
                Ok(l) => l,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let held = lock.file().metadata()?;
            match fs::metadata(self.path.join("lock")) {
                Ok(m) if m.ino() == held.ino() && m.dev() == held.dev() => return Ok(Some(lock)),
                _ => continue,
            }
        }
        Err(io::Error::other(format!("could not lock {}", self.path.display())))
    }

    pub fn attachments(&self) -> io::Result<Vec<Attachment>> {
        read_json(&self.attachments_path())
    }
    pub fn store_attachments(&self, a: &[Attachment]) -> io::Result<()> {
        write_json(&self.attachments_path(), &a)
    }
    pub fn pending(&self) -> io::Result<Vec<Pending>> {
        read_json(&self.pending_path())
    }
    pub fn store_pending(&self, p: &[Pending]) -> io::Result<()> {
        if p.is_empty() {
            return match fs::remove_file(self.pending_path()) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        write_json(&self.pending_path(), &p)
    }

    /// Is an agent holding `agent.lock`?
    pub fn agent_running(&self) -> bool {
        matches!(FileLock::try_exclusive(self.agent_lock_path()), Ok(None))
    }

    pub fn pid(&self) -> Option<i32> {
        fs::read_to_string(self.pid_path()).ok()?.trim().parse().ok().filter(|p| *p > 0)
    }

    pub fn remove(&self) -> io::Result<()> {
        match fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A JSON list file; missing means empty.
fn read_json<T: DeserializeOwned>(p: &Path) -> io::Result<Vec<T>> {
    match fs::read(p) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Replace a file atomically (temporary file, rename).
pub fn write_json<T: Serialize>(p: &Path, v: &T) -> io::Result<()> {
    let tmp = p.with_extension("tmp");
    let bytes = serde_json::to_vec(v).map_err(io::Error::other)?;
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp)?;
    f.write_all(&bytes)?;
    drop(f);
    fs::rename(&tmp, p)
}
