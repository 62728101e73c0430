//! Fake plugins for tests of runtimes and of delegation: `#!/bin/sh` scripts
//! in a temp dir that record every call (stdin, `CNI_*` env, own netns) and
//! answer with canned output per verb.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::tmp::TempDir;

const SCRIPT: &str = r#"#!/bin/sh
# Fake CNI plugin of the test harness: records the call, prints canned output.
D="$(dirname "$0")/../fake"
me="$(basename "$0")"
n=$(cat "$D/seq" 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > "$D/seq"
c="$D/calls/$(printf '%05d' "$n")"
mkdir -p "$c"
echo "$me" > "$c/plugin"
cat > "$c/stdin"
env | grep '^CNI_' > "$c/env"
readlink /proc/self/ns/net > "$c/netns"
if [ "$CNI_COMMAND" = VERSION ]; then
  echo '{"cniVersion":"1.1.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]}'
  exit 0
fi
o="$D/out/$me.$CNI_COMMAND"
[ -f "$o.stdout" ] && cat "$o.stdout"
[ -f "$o.stderr" ] && cat "$o.stderr" >&2
[ -f "$o.rc" ] && exit "$(cat "$o.rc")"
exit 0
"#;

/// One recorded call of a fake plugin.
#[derive(Clone, Debug)]
pub struct FakeCall {
    pub seq: u32,
    pub plugin: String,
    pub command: String,
    /// stdin parsed as JSON (`Null` if it was not JSON).
    pub stdin: Value,
    pub stdin_raw: String,
    /// The `CNI_*` environment.
    pub env: BTreeMap<String, String>,
    /// `readlink /proc/self/ns/net` of the plugin process: `net:[INODE]`.
    pub netns: String,
}

impl FakeCall {
    pub fn env(&self, k: &str) -> &str {
        self.env.get(k).map(String::as_str).unwrap_or("")
    }
}

/// A directory of fake plugins sharing one call log.
#[derive(Debug)]
pub struct FakePlugins {
    dir: TempDir,
}

impl FakePlugins {
    pub fn new() -> io::Result<FakePlugins> {
        let dir = TempDir::new()?;
        for sub in ["bin", "fake/calls", "fake/out"] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        Ok(FakePlugins { dir })
    }

    /// The directory to put on `bin_dirs` / `CNI_PATH`.
    pub fn bin_dir(&self) -> PathBuf {
        self.dir.join("bin")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Install a fake plugin `name` whose ADD prints `add_result` (when not
    /// `Null`); every other verb prints nothing and exits 0.
    pub fn plugin(&self, name: &str, add_result: Value) -> io::Result<()> {
        let path = self.bin_dir().join(name);
        // Write to a temp name and rename, so no writable fd of the script is
        // open when another thread forks (ETXTBSY).
        let tmp = self.dir.join(format!("{name}.tmp"));
        std::fs::write(&tmp, SCRIPT)?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &path)?;
        if !add_result.is_null() {
            self.respond(name, "ADD", &add_result.to_string(), 0)?;
        }
        Ok(())
    }

    /// What plugin `name` prints on stdout and its exit code for `command`.
    pub fn respond(&self, name: &str, command: &str, stdout: &str, rc: i32) -> io::Result<()> {
        std::fs::write(self.out_file(name, command, "stdout"), stdout)?;
        std::fs::write(self.out_file(name, command, "rc"), rc.to_string())
    }

    /// Make `command` of `name` fail with a CNI error object.
    pub fn fail(&self, name: &str, command: &str, code: u32, msg: &str) -> io::Result<()> {
        let err = serde_json::json!({"cniVersion": "1.0.0", "code": code, "msg": msg});
        self.respond(name, command, &err.to_string(), 1)?;
        std::fs::write(self.out_file(name, command, "stderr"), format!("fake {name} failing\n"))
    }

    fn out_file(&self, name: &str, command: &str, what: &str) -> PathBuf {
        self.dir.join("fake/out").join(format!("{name}.{command}.{what}"))
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        let Ok(rd) = std::fs::read_dir(self.dir.join("fake/calls")) else { return Vec::new() };
        let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
        dirs.sort();
        dirs.into_iter()
            .map(|d| {
                let read = |f: &str| std::fs::read_to_string(d.join(f)).unwrap_or_default();
                let env: BTreeMap<String, String> = read("env")
                    .lines()
                    .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
                    .collect();
                let stdin_raw = read("stdin");
                FakeCall {
                    seq: d.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).unwrap_or(0),
                    plugin: read("plugin").trim().to_string(),
                    command: env.get("CNI_COMMAND").cloned().unwrap_or_default(),
                    stdin: serde_json::from_str(&stdin_raw).unwrap_or(Value::Null),
                    stdin_raw,
                    env,
                    netns: read("netns").trim().to_string(),
                }
            })
            .collect()
    }

    /// Forget the calls so far.
    pub fn clear_calls(&self) -> io::Result<()> {
        std::fs::remove_dir_all(self.dir.join("fake/calls"))?;
        std::fs::create_dir_all(self.dir.join("fake/calls"))?;
        let _ = std::fs::remove_file(self.dir.join("fake/seq"));
        Ok(())
    }
}
