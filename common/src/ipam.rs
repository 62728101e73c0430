//! IPAM delegation: find the plugin named by `ipam.type` on `CNI_PATH` and run
//! it with our own stdin and `CNI_*` environment, as libcni's `invoke` does.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command as Process, Stdio};

use crate::error::{shown, CniError, Result};
use crate::net::NetStack;
use crate::skel::{CmdArgs, Command};
use crate::spec::CniResult;
use crate::undo::Undo;

/// The delegate's binary: `name` in the first `CNI_PATH` directory holding it.
/// None there is code 7 (the reference says the same with 999): the config
/// names a plugin this node lacks, a typo or a plugin not installed.
pub fn find_plugin(name: &str, path: &[PathBuf]) -> Result<PathBuf> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(CniError::invalid_config(format!("invalid plugin type {}", shown(name))));
    }
    path.iter().map(|dir| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| {
        let dirs: Vec<String> = path.iter().map(|p| p.display().to_string()).collect();
        let dirs = dirs.join(" ");
        CniError::invalid_config(format!("failed to find plugin {} in path [{}]", shown(name), cut(&dirs)))
    })
}

/// `s` itself, or its first 200 characters and its length when longer.
fn cut(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// Run `plugin` for `verb` with the caller's stdin and environment.
/// A failing delegate's CNI error is returned with its own code.
pub fn exec(plugin: &str, verb: Command, args: &CmdArgs) -> Result<Vec<u8>> {
    let bin = find_plugin(plugin, &args.path)?;
    let mut tries = 0;
    let mut child = loop {
        let spawned = Process::new(&bin)
            .envs(args.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("CNI_COMMAND", verb.as_str())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn();
        match spawned {
            Ok(c) => break c,
            // libcni retries while the binary is being replaced.
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 5 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(100 * tries));
            }
            Err(e) => {
                return Err(CniError::internal(format!("failed to run IPAM plugin {}: {e}", bin.display())))
            }
        }
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A delegate that exits without reading stdin is judged by its output below.
        let _ = stdin.write_all(&args.stdin);
    }
    let out = child
        .wait_with_output()
        .map_err(|e| CniError::internal(format!("failed to run IPAM plugin {plugin}: {e}")))?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(delegate_error(plugin, verb, &out.stdout, out.status.code()))
}

fn delegate_error(plugin: &str, verb: Command, stdout: &[u8], status: Option<i32>) -> CniError {
    let parsed: Option<serde_json::Value> = serde_json::from_slice(stdout).ok();
    match parsed.as_ref().and_then(|v| Some((v.get("code")?.as_u64()?, v))) {
        Some((code, v)) => {
            let msg = v.get("msg").and_then(|m| m.as_str()).unwrap_or("");
            let details = v.get("details").and_then(|m| m.as_str()).unwrap_or("");
            CniError::new(code as u32, format!("{plugin} {}: {msg}", verb.as_str())).with_details(details)
        }
        None => CniError::internal(format!(
            "{plugin} {} failed (exit {}) and printed no CNI error: {}",
            verb.as_str(),
            status.map_or("signal".to_string(), |c| c.to_string()),
            shown(String::from_utf8_lossy(stdout).trim())
        )),
    }
}

/// IPAM ADD: the delegate's result, read in whatever version it answered.
pub fn add(plugin: &str, args: &CmdArgs) -> Result<CniResult> {
    let out = exec(plugin, Command::Add, args)?;
    let value: serde_json::Value = serde_json::from_slice(&out)
        .map_err(|e| CniError::decode(format!("failed to parse {plugin} result: {e}")))?;
    CniResult::parse(&value, &args.conf.cni_version)
}

pub fn del(plugin: &str, args: &CmdArgs) -> Result<()> {
    exec(plugin, Command::Del, args).map(drop)
}

pub fn check(plugin: &str, args: &CmdArgs) -> Result<()> {
    exec(plugin, Command::Check, args).map(drop)
}

pub fn status(plugin: &str, args: &CmdArgs) -> Result<()> {
    exec(plugin, Command::Status, args).map(drop)
}

pub fn gc(plugin: &str, args: &CmdArgs) -> Result<()> {
    exec(plugin, Command::Gc, args).map(drop)
}

/// STATUS of the config's IPAM plugin; Ok when there is none.
pub fn status_if_configured(args: &CmdArgs) -> Result<()> {
    args.conf.ipam_type().map_or(Ok(()), |plugin| status(plugin, args))
}

/// GC through the config's IPAM plugin; Ok when there is none.
pub fn gc_if_configured(args: &CmdArgs) -> Result<()> {
    args.conf.ipam_type().map_or(Ok(()), |plugin| gc(plugin, args))
}

/// The IPAM delegate as a main plugin's ADD, DEL and CHECK call it: [`Exec`]
/// runs the real one; unit tests use the fake of `common::fake`.
pub trait Ipam {
    fn add(&mut self, plugin: &str, args: &CmdArgs) -> Result<CniResult>;
    fn del(&mut self, plugin: &str, args: &CmdArgs) -> Result<()>;
    fn check(&mut self, plugin: &str, args: &CmdArgs) -> Result<()>;
}

/// The delegate found on `CNI_PATH`, run as a process (see [`exec`]).
pub struct Exec;

impl Ipam for Exec {
    fn add(&mut self, plugin: &str, args: &CmdArgs) -> Result<CniResult> {
        add(plugin, args)
    }
    fn del(&mut self, plugin: &str, args: &CmdArgs) -> Result<()> {
        del(plugin, args)
    }
    fn check(&mut self, plugin: &str, args: &CmdArgs) -> Result<()> {
        check(plugin, args)
    }
}

/// ADD's addresses from the delegate named by `ipam.type`, its release
/// registered in `undo`; an empty result when the config has no `ipam`. A
/// delegate that hands out no address is an error.
pub fn allocate<N: NetStack>(
    ipam: &mut impl Ipam,
    args: &CmdArgs,
    undo: &mut Undo<'_, N>,
) -> Result<CniResult> {
    let Some(plugin) = args.conf.ipam_type() else { return Ok(CniResult::default()) };
    let res = ipam.add(plugin, args)?;
    undo.release_ipam(plugin);
    if res.ips.is_empty() {
        return Err(CniError::internal("IPAM plugin returned no IP addresses"));
    }
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_names_cannot_be_paths() {
        for bad in ["", "../x", "a/b", ".."] {
            assert_eq!(find_plugin(bad, &[PathBuf::from("/bin")]).unwrap_err().code, 7, "{bad}");
        }
        // The config names a plugin CNI_PATH does not hold: a person's mistake (a
        // typo in the type, or a plugin not installed), code 7 naming both.
        let e =
            find_plugin("no-such-plugin", &[PathBuf::from("/bin"), PathBuf::from("/usr/bin")]).unwrap_err();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "failed to find plugin \"no-such-plugin\" in path [/bin /usr/bin]");
        let e = find_plugin(&"x".repeat(100_000), &[PathBuf::from("/bin")]).unwrap_err();
        assert!(e.msg.contains("(100000 bytes)") && e.msg.len() < 200, "{}", e.msg.len());
        assert_eq!(
            find_plugin("sh", &[PathBuf::from("/nonexistent"), PathBuf::from("/bin")]).unwrap(),
            PathBuf::from("/bin/sh")
        );
    }

    #[test]
    fn delegate_errors_keep_their_code() {
        let e =
            delegate_error("host-local", Command::Add, br#"{"code":11,"msg":"busy","details":"d"}"#, Some(1));
        assert_eq!((e.code, e.msg.as_str(), e.details.as_str()), (11, "host-local ADD: busy", "d"));
        let e = delegate_error("host-local", Command::Del, b"garbage", Some(2));
        assert_eq!(e.code, 999);
        assert!(e.msg.contains("exit 2") && e.msg.contains("garbage"));
        // Whatever it printed is shown cut, as every value in a message.
        let e = delegate_error("host-local", Command::Add, "g".repeat(100_000).as_bytes(), Some(1));
        assert!(e.msg.contains("\"ggg") && e.msg.ends_with("(100000 bytes)"), "{}", e.msg.len());
        assert!(e.msg.len() < 200, "{}", e.msg.len());
    }
}
