//! cni-rs-install: puts the plugins into a node's plugin directory, as a
//! DaemonSet's init container does for a cluster network.
//!
//! - Atomic per file: each binary is written under a temporary name in the
//!   destination directory, fsync'ed, then renamed over the old one. A runtime
//!   exec'ing a plugin at that moment runs either the old file or the new one,
//!   never a half-written one (and never hits ETXTBSY: no running file is
//!   written to).
//! - Never downgrades silently: the version of an installed binary is read from
//!   the file (the marker every plugin carries; the init container cannot exec
//!   a host binary). A newer cni-rs binary in place stops the whole install
//!   before anything changes, unless `--force`.
//! - Idempotent: a file whose bytes are already in place is not touched.
//! - The node's network list is written only when asked (`--conflist`).
//!
//! Runs in a minimal image (FROM scratch): std only, linked statically.

mod version;

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use version::Version;

const USAGE: &str =
    "usage: cni-rs-install [--from DIR] [--to DIR] [--force] [--conflist FILE [--conf-dir DIR]]
  --from DIR       the plugins to install (default /opt/cni-rs/bin, where the image keeps them)
  --to DIR         the node's plugin directory, mounted from the host (default /host/opt/cni/bin)
  --force          also replace newer cni-rs plugins (a deliberate downgrade)
  --conflist FILE  also install this network list into --conf-dir (default /host/etc/cni/net.d)";

/// Temporary files carry this in their name (after a leading dot): never a
/// plugin type, and left-overs of an interrupted run are recognised.
const TMP_TAG: &str = ".cni-rs-install-tmp-";

struct Opts {
    from: PathBuf,
    to: PathBuf,
    force: bool,
    conflist: Option<PathBuf>,
    conf_dir: PathBuf,
}

fn main() -> ExitCode {
    let opts = match parse_args(std::env::args().skip(1)) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("cni-rs-install: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match install(&opts) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cni-rs-install: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One plugin of the source and what is in its place at the destination.
struct Plugin {
    name: String,
    bytes: Vec<u8>,
    version: Version,
    installed: Installed,
}

enum Installed {
    Missing,
    Same,
    Ours(Version),
    Foreign,
}

fn install(o: &Opts) -> Result<(), String> {
    let plugins = plan(&o.from, &o.to)?;
    let newer: Vec<String> = plugins
        .iter()
        .filter_map(|p| match &p.installed {
            Installed::Ours(v) if *v > p.version => Some(format!("{} {v} (ours: {})", p.name, p.version)),
            _ => None,
        })
        .collect();
    if !newer.is_empty() && !o.force {
        return Err(format!(
            "refusing to downgrade {}: newer plugins installed there: {}; nothing changed (--force to downgrade)",
            o.to.display(),
            newer.join(", ")
        ));
    }
    fs::create_dir_all(&o.to).map_err(|e| format!("{}: {e}", o.to.display()))?;
    remove_leftovers(&o.to);
    let (mut changed, mut same) = (0, 0);
    for p in &plugins {
        let was = match &p.installed {
            Installed::Same => {
                same += 1;
                println!("{}: unchanged ({})", p.name, p.version);
                continue;
            }
            Installed::Missing => String::new(),
            Installed::Ours(v) => format!(" (was {v})"),
            Installed::Foreign => " (replaced a binary that is not cni-rs)".to_owned(),
        };
        write_atomic(&o.to, &p.name, &p.bytes, 0o755)?;
        changed += 1;
        println!("{}: installed {}{was}", p.name, p.version);
    }
    sync_dir(&o.to)?;
    println!("{}: {changed} installed, {same} unchanged", o.to.display());
    if let Some(list) = &o.conflist {
        install_conflist(list, &o.conf_dir)?;
    }
    Ok(())
}

/// Every executable of `from` (sorted), with what `to` holds under its name.
fn plan(from: &Path, to: &Path) -> Result<Vec<Plugin>, String> {
    let entries = fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?;
    let mut plugins = Vec::new();
    for e in entries {
        let e = e.map_err(|e| format!("{}: {e}", from.display()))?;
        let path = e.path();
        let meta = fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        // LICENSE and README.md ride along in the release tarball.
        if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 {
            continue;
        }
        let name = e.file_name().into_string().map_err(|n| format!("{n:?}: not a plugin name"))?;
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let version = version::of_binary(&bytes)
            .ok_or_else(|| format!("{}: not a cni-rs plugin (no version marker)", path.display()))?;
        let installed = match fs::read(to.join(&name)) {
            Ok(old) if old == bytes => Installed::Same,
            Ok(old) => version::of_binary(&old).map_or(Installed::Foreign, Installed::Ours),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Installed::Missing,
            Err(e) => return Err(format!("{}: {e}", to.join(&name).display())),
        };
        plugins.push(Plugin { name, bytes, version, installed });
    }
    if plugins.is_empty() {
        return Err(format!("{}: no plugins to install", from.display()));
    }
    plugins.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(plugins)
}

/// Temp name in the same directory (same filesystem, so the rename is atomic),
/// data fsync'ed before the rename makes it visible under the real name.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8], mode: u32) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}{TMP_TAG}{}", std::process::id()));
    let err = |e: std::io::Error| format!("{}: {e}", tmp.display());
    let write = || -> Result<(), String> {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(mode).open(&tmp).map_err(err)?;
        f.write_all(bytes).map_err(err)?;
        f.set_permissions(fs::Permissions::from_mode(mode)).map_err(err)?; // not narrowed by the umask
        f.sync_all().map_err(err)?;
        // Closed before it has its name: a file open for writing cannot be
        // exec'd (ETXTBSY), which a runtime would hit right after the rename.
        drop(f);
        fs::rename(&tmp, dir.join(name)).map_err(|e| format!("{} -> {name}: {e}", tmp.display()))
    };
    write().inspect_err(|_| {
        let _ = fs::remove_file(&tmp);
    })
}

/// The renames themselves reach the disk.
fn sync_dir(dir: &Path) -> Result<(), String> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| format!("{}: {e}", dir.display()))
}

/// Temp files of a run that was killed half-way.
fn remove_leftovers(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(TMP_TAG) {
            let _ = fs::remove_file(e.path());
        }
    }
}

fn install_conflist(list: &Path, conf_dir: &Path) -> Result<(), String> {
    let bytes = fs::read(list).map_err(|e| format!("{}: {e}", list.display()))?;
    let name = list
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{}: no file name", list.display()))?;
    let dest = conf_dir.join(name);
    if fs::read(&dest).is_ok_and(|old| old == bytes) {
        println!("{}: unchanged", dest.display());
        return Ok(());
    }
    fs::create_dir_all(conf_dir).map_err(|e| format!("{}: {e}", conf_dir.display()))?;
    write_atomic(conf_dir, name, &bytes, 0o644)?;
    sync_dir(conf_dir)?;
    println!("{}: written", dest.display());
    Ok(())
}

/// `Ok(None)`: help was asked for.
fn parse_args(args: impl Iterator<Item = String>) -> Result<Option<Opts>, String> {
    let mut o = Opts {
        from: "/opt/cni-rs/bin".into(),
        to: "/host/opt/cni/bin".into(),
        force: false,
        conflist: None,
        conf_dir: "/host/etc/cni/net.d".into(),
    };
    let mut args = args.peekable();
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
            _ => (a.clone(), None),
        };
        let mut value =
            || inline.clone().or_else(|| args.next()).ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--from" => o.from = value()?.into(),
            "--to" => o.to = value()?.into(),
            "--conflist" => o.conflist = Some(value()?.into()),
            "--conf-dir" => o.conf_dir = value()?.into(),
            "--force" if inline.is_none() => o.force = true,
            "-h" | "--help" => return Ok(None),
            _ => return Err(format!("unknown argument {a:?}")),
        }
    }
    Ok(Some(o))
}
