//! The plugin skeleton: environment and stdin in, one verb dispatched, the
//! result or the error out — exactly as libcni's `pkg/skel` behaves, so
//! runtimes see the same codes and messages.
//!
//! `dispatch` takes the environment and stdin as arguments so unit tests need
//! no process environment; `run` is the `main` of every plugin.

use std::io::{Read, Write};
use std::path::PathBuf;

use crate::args::CniArgs;
use crate::error::{shown, CniError, Result};
use crate::netns::Netns;
use crate::spec::{version, CniResult, NetConf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Add,
    Del,
    Check,
    Status,
    Gc,
}

impl Command {
    pub fn as_str(self) -> &'static str {
        match self {
            Command::Add => "ADD",
            Command::Del => "DEL",
            Command::Check => "CHECK",
            Command::Status => "STATUS",
            Command::Gc => "GC",
        }
    }
}

/// Everything a verb needs: the validated environment and the parsed config.
#[derive(Clone, Debug)]
pub struct CmdArgs {
    pub command: Command,
    pub container_id: String,
    /// `CNI_NETNS`; empty when the runtime gave none (DEL may).
    pub netns: String,
    pub ifname: String,
    pub args: CniArgs,
    pub path: Vec<PathBuf>,
    pub stdin: Vec<u8>,
    pub conf: NetConf,
    /// The `CNI_*` environment, passed unchanged to delegated plugins.
    pub env: Vec<(String, String)>,
}

impl CmdArgs {
    /// The interface MAC requested by the runtime: `runtimeConfig.mac` over
    /// `args.cni.mac` over `CNI_ARGS` `MAC` (the reference's precedence);
    /// code 7 when it is not a unicast MAC address.
    pub fn requested_mac(&self) -> Result<Option<[u8; 6]>> {
        let from_rc = self.conf.runtime("mac").and_then(|v| v.as_str()).map(str::to_string);
        let from_args = self.conf.cni_arg("mac").and_then(|v| v.as_str()).map(str::to_string);
        let from_env = self.args.get("MAC").map(str::to_string);
        match from_rc.or(from_args).or(from_env).filter(|m| !m.is_empty()) {
            None => Ok(None),
            Some(m) => parse_unicast_mac(&m).map(Some),
        }
    }
}

/// A MAC address an interface can have (code 7 otherwise, before any
/// kernel call): `aa:bb:cc:dd:ee:ff`, not multicast (the low bit of the
/// first byte, which the kernel refuses with EADDRNOTAVAIL) and not all zero.
pub fn parse_unicast_mac(text: &str) -> Result<[u8; 6]> {
    let bad = |why: &str| Err(CniError::invalid_config(format!("invalid MAC address {}{why}", shown(text))));
    match crate::netlink::rtnl::parse_mac(text) {
        None => bad(""),
        Some(m) if m[0] & 1 == 1 => bad(": a multicast address cannot be an interface's"),
        Some([0, 0, 0, 0, 0, 0]) => bad(": all zero"),
        Some(m) => Ok(m),
    }
}

/// A CNI plugin: one method per verb. VERSION is answered by the skel.
pub trait Plugin {
    /// One line for humans who run the binary without CNI_COMMAND.
    fn about(&self) -> String;
    /// `CNI_ARGS` keys this plugin reads. The default, [`crate::args::ANY`],
    /// accepts every key, as the reference plugins that never call libcni's
    /// `LoadArgs` do. A plugin whose reference loads CNI_ARGS into a struct
    /// lists that struct's keys: ADD and CHECK then refuse any other key
    /// unless `IgnoreUnknown` is set (DEL never fails over a key).
    fn known_args(&self) -> &'static [&'static str] {
        crate::args::ANY
    }
    fn add(&self, args: &CmdArgs) -> Result<CniResult>;
    fn del(&self, args: &CmdArgs) -> Result<()>;
    fn check(&self, args: &CmdArgs) -> Result<()>;
    fn status(&self, args: &CmdArgs) -> Result<()>;
    fn gc(&self, args: &CmdArgs) -> Result<()>;
}

/// What the process prints and its exit code.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub stdout: String,
    pub stderr: String,
    pub exit: i32,
}

impl Outcome {
    fn error(e: &CniError, cni_version: &str) -> Outcome {
        Outcome { stdout: e.to_json(cni_version), stderr: String::new(), exit: 1 }
    }
}

const ENV_KEYS: [&str; 7] = [
    "CNI_COMMAND",
    "CNI_CONTAINERID",
    "CNI_NETNS",
    "CNI_IFNAME",
    "CNI_ARGS",
    "CNI_PATH",
    "CNI_NETNS_OVERRIDE",
];

/// The most a plugin reads from stdin: 16 MiB. Real requests are far
/// smaller (Podman's largest, a published range of every port for TCP and
/// UDP expanded into 131,070 portmap entries of ~90 bytes, is ~12 MB; a
/// prevResult is a few KiB), yet a stream that never ends stops here within
/// milliseconds instead of growing until the OOM killer.
pub const MAX_STDIN: usize = 16 << 20;

/// The request on stdin, read up to [`MAX_STDIN`]: code 6 when it is larger
/// (we stop reading, so an endless stream cannot hold us) or not UTF-8,
/// which no JSON encoder produces; code 5 when it cannot be read.
fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>> {
    let mut input = Vec::new();
    stdin
        .take(MAX_STDIN as u64 + 1)
        .read_to_end(&mut input)
        .map_err(|e| CniError::io(format!("error reading from stdin: {e}")))?;
    if input.len() > MAX_STDIN {
        return Err(CniError::decode(format!(
            "the network configuration on stdin is larger than {} MiB",
            MAX_STDIN >> 20
        )));
    }
    if let Err(e) = std::str::from_utf8(&input) {
        return Err(CniError::decode(format!(
            "the network configuration on stdin is not valid UTF-8 (byte {})",
            e.valid_up_to()
        )));
    }
    Ok(input)
}

/// Interface names as the kernel and libcni accept them.
pub fn validate_ifname(name: &str) -> Result<()> {
    let bad = |why: &str| Err(CniError::invalid_env(format!("invalid CNI_IFNAME {}: {why}", shown(name))));
    if name.is_empty() {
        return bad("interface name is empty");
    }
    if name.len() > 15 {
        return bad("interface name is longer than 15 bytes");
    }
    if name == "." || name == ".." {
        return bad("interface name cannot be . or ..");
    }
    if name.chars().any(|c| c == '/' || c == ':' || c.is_whitespace()) {
        return bad("interface name contains / or : or whitespace");
    }
    Ok(())
}

/// Run one verb with an injected environment and stdin.
pub fn dispatch<P: Plugin>(
    plugin: &P,
    env: &dyn Fn(&str) -> Option<String>,
    stdin: &mut dyn Read,
) -> Outcome {
    let get = |k: &str| env(k).unwrap_or_default();
    let command = get("CNI_COMMAND");
    if command.is_empty() {
        let e = CniError::invalid_env("required env variables [CNI_COMMAND] missing");
        let mut out = Outcome::error(&e, version::LATEST);
        out.stderr =
            format!("{}\nCNI protocol versions supported: {}\n", plugin.about(), version::ALL.join(", "));
        return out;
    }
    let input = read_stdin(stdin);
    if command == "VERSION" {
        // Only a cniVersion to echo, if stdin has one: nothing to fail on.
        return version_reply(input.as_deref().unwrap_or_default());
    }
    let cmd = match command.as_str() {
        "ADD" => Command::Add,
        "DEL" => Command::Del,
        "CHECK" => Command::Check,
        "STATUS" => Command::Status,
        "GC" => Command::Gc,
        other => {
            return Outcome::error(
                &CniError::invalid_env(format!("unknown CNI_COMMAND: {}", shown(other))),
                version::LATEST,
            )
        }
    };
    let input = match input {
        Ok(input) => input,
        Err(e) => return Outcome::error(&e, version::LATEST),
    };
    // The version for error replies: the config's, once we can read it.
    let reply_version = serde_json::from_slice::<serde_json::Value>(&input)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(|s| s.as_str()).map(str::to_string))
        .filter(|v| version::supported(v))
        .unwrap_or_else(|| version::LATEST.to_string());
    match prepare(plugin, cmd, &get, input) {
        Err(e) => Outcome::error(&e, &reply_version),
        Ok(args) => {
            let ver = args.conf.cni_version.clone();
            let res = match cmd {
                Command::Add => plugin.add(&args).and_then(|r| r.to_json(&ver)),
                Command::Del => plugin.del(&args).map(|_| String::new()),
                Command::Check => plugin.check(&args).map(|_| String::new()),
                Command::Status => plugin.status(&args).map(|_| String::new()),
                Command::Gc => plugin.gc(&args).map(|_| String::new()),
            };
            match res {
                Ok(stdout) => Outcome { stdout, stderr: String::new(), exit: 0 },
                Err(e) => Outcome::error(&e, &ver),
            }
        }
    }
}

fn version_reply(input: &[u8]) -> Outcome {
    let asked = serde_json::from_slice::<serde_json::Value>(input)
        .ok()
        .and_then(|v| v.get("cniVersion").and_then(|s| s.as_str()).map(str::to_string))
        .filter(|v| version::supported(v))
        .unwrap_or_else(|| version::LATEST.to_string());
    let v = serde_json::json!({"cniVersion": asked, "supportedVersions": version::ALL});
    Outcome { stdout: v.to_string(), stderr: String::new(), exit: 0 }
}

/// Validate the environment and config for `cmd`, in libcni's order.
fn prepare<P: Plugin>(
    plugin: &P,
    cmd: Command,
    get: &dyn Fn(&str) -> String,
    input: Vec<u8>,
) -> Result<CmdArgs> {
    use Command::*;
    let required: &[(&str, &[Command])] = &[
        ("CNI_CONTAINERID", &[Add, Del, Check]),
        ("CNI_NETNS", &[Add, Check]),
        ("CNI_IFNAME", &[Add, Del, Check]),
        ("CNI_PATH", &[Add, Del, Check, Status, Gc]),
    ];
    let missing: Vec<&str> = required
        .iter()
        .filter(|(k, cmds)| cmds.contains(&cmd) && get(k).is_empty())
        .map(|(k, _)| *k)
        .collect();
    if !missing.is_empty() {
        return Err(CniError::invalid_env(format!("required env variables [{}] missing", missing.join(","))));
    }
    let container_id = get("CNI_CONTAINERID");
    if matches!(cmd, Add | Del | Check) && !crate::spec::valid_name(&container_id) {
        return Err(CniError::invalid_env(format!(
            "invalid characters in CNI_CONTAINERID {}: must match ^[a-zA-Z0-9][a-zA-Z0-9_.-]*$",
            shown(&container_id)
        )));
    }
    let ifname = get("CNI_IFNAME");
    if matches!(cmd, Add | Del | Check) {
        validate_ifname(&ifname)?;
    }
    let args = CniArgs::parse(&get("CNI_ARGS"))?;
    if matches!(cmd, Add | Check) {
        args.check_known(plugin.known_args())?;
    }

    let conf = NetConf::parse(&input)?;
    if !version::supported(&conf.cni_version) {
        return Err(CniError::incompatible_version(format!(
            "incompatible CNI versions: config is {:?}, plugin supports {:?}",
            conf.cni_version,
            version::ALL
        )));
    }
    let min = match cmd {
        Check => Some("0.4.0"),
        Status | Gc => Some("1.1.0"),
        _ => None,
    };
    if let Some(min) = min {
        if !version::at_least(&conf.cni_version, min) {
            return Err(CniError::incompatible_version(format!(
                "config version {} does not allow {} (needs {min} or later)",
                conf.cni_version,
                cmd.as_str()
            )));
        }
    }
    let netns = get("CNI_NETNS");
    if matches!(cmd, Add | Check | Del) && !netns.is_empty() {
        let overridden = matches!(get("CNI_NETNS_OVERRIDE").as_str(), "1" | "true" | "True");
        if !overridden {
            check_not_own_netns(&netns)?;
        }
    }
    let env = ENV_KEYS.iter().map(|k| (k.to_string(), get(k))).filter(|(_, v)| !v.is_empty()).collect();
    let path = std::env::split_paths(&get("CNI_PATH")).filter(|p| !p.as_os_str().is_empty()).collect();
    Ok(CmdArgs { command: cmd, container_id, netns, ifname, args, path, stdin: input, conf, env })
}

/// Refuse to treat our own netns as the container's (skel's ErrInvalidNetNS):
/// a DEL there would delete the host's interface.
fn check_not_own_netns(path: &str) -> Result<()> {
    let (Ok(target), Ok(own)) = (Netns::open(path), Netns::current()) else {
        return Ok(()); // unopenable paths are the verb's to judge (DEL tolerates them)
    };
    if target.same_as(&own).unwrap_or(false) {
        return Err(CniError::invalid_netns(format!(
            "CNI_NETNS {path:?} is the plugin's own network namespace (set CNI_NETNS_OVERRIDE=1 if intended)"
        )));
    }
    Ok(())
}

/// The process entry of a plugin binary: `plugin_main!(MyPlugin);` in a
/// crate marked `#![cfg_attr(not(test), no_main)]`.
///
/// Plugins are exec'd once per operation, so they skip Rust's runtime set-up
/// before `main` (probing the main thread's stack through /proc/self/maps,
/// installing stack-overflow signal handlers): measured ~0.15 ms of a ~1 ms
/// start. Nothing here needs it: panics abort through our hook, and SIGPIPE
/// is ignored by `run` itself.
#[macro_export]
macro_rules! plugin_main {
    ($plugin:expr) => {
        #[cfg(not(test))]
        #[no_mangle]
        pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
            $crate::skel::run(&$plugin)
        }
        // Unit-test builds get their main from the test harness; this keeps
        // the plugin in use there.
        #[cfg(test)]
        #[allow(dead_code)]
        fn plugin_entry() -> ! {
            $crate::skel::run(&$plugin)
        }
    };
}

/// Names a binary as ours, with its version, in the file itself: an installer
/// finds it by reading the file (`cni-rs-install` refuses silent downgrades),
/// since an init container cannot exec a host binary built for the host's libc.
/// NUL-delimited so that a scan of the bytes finds exactly this.
pub const BUILD_MARKER: &str = concat!("\0cni-rs-plugins version ", env!("CARGO_PKG_VERSION"), "\0");

/// The `main` of a plugin: real environment and stdin, print, exit.
pub fn run<P: Plugin>(plugin: &P) -> ! {
    // Keeps the marker in every binary (nothing else reads it).
    std::hint::black_box(BUILD_MARKER);
    // A delegate (IPAM) that exits without reading its stdin must not kill
    // us with SIGPIPE, silently: the write fails with EPIPE and the
    // delegate's answer is judged. (Children get the default back: std
    // resets SIGPIPE when it spawns.) A closed stdout of our own ends in
    // EPIPE too, and we exit as before.
    // SAFETY: setting a signal disposition before any thread exists.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    // A panic must still end as a CNI error on stdout, never a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let msg = CniError::internal(format!("internal error: {info}"));
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(msg.to_json(version::LATEST).as_bytes());
        let _ = out.flush();
        std::process::exit(1);
    }));
    let out = dispatch(plugin, &|k| std::env::var(k).ok(), &mut std::io::stdin().lock());
    if !out.stderr.is_empty() {
        let _ = std::io::stderr().write_all(out.stderr.as_bytes());
    }
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(out.stdout.as_bytes());
    let _ = stdout.flush();
    std::process::exit(out.exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    struct Fake;
    impl Plugin for Fake {
        fn about(&self) -> String {
            "fake CNI plugin".into()
        }
        fn known_args(&self) -> &'static [&'static str] {
            &["IP"]
        }
        fn add(&self, a: &CmdArgs) -> Result<CniResult> {
            let ip = a.args.get("IP").unwrap_or("10.0.0.2/24");
            Ok(serde_json::from_value(serde_json::json!({"ips": [{"address": ip}]})).unwrap())
        }
        fn del(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &CmdArgs) -> Result<()> {
            Err(CniError::new(100, "check failed"))
        }
        fn status(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn gc(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
    }

    fn run_with(env: &[(&str, &str)], stdin: &str) -> (Outcome, serde_json::Value) {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let out = dispatch(&Fake, &|k| map.get(k).cloned(), &mut stdin.as_bytes());
        let v = serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, v)
    }

    const CONF: &str = r#"{"cniVersion":"1.1.0","name":"net1","type":"fake"}"#;

    fn full_env(cmd: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", cmd),
            ("CNI_CONTAINERID", "abc123"),
            ("CNI_NETNS", "/nonexistent/netns"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_PATH", "/opt/cni/bin"),
        ]
    }

    #[test]
    fn no_command_describes_itself_and_fails_with_code_4() {
        let (out, v) = run_with(&[], "");
        assert_eq!(out.exit, 1);
        assert!(out.stderr.starts_with("fake CNI plugin\n"));
        assert_eq!(v["code"], 4);
    }

    #[test]
    fn version_lists_every_version() {
        let (out, v) = run_with(&[("CNI_COMMAND", "VERSION")], r#"{"cniVersion":"0.3.1"}"#);
        assert_eq!(out.exit, 0);
        assert_eq!(v["cniVersion"], "0.3.1");
        assert_eq!(v["supportedVersions"], serde_json::json!(version::ALL));
        let (_, v) = run_with(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn add_answers_in_the_config_version() {
        for ver in version::ALL {
            let conf = format!(r#"{{"cniVersion":"{ver}","name":"n","type":"fake"}}"#);
            let (out, v) = run_with(&full_env("ADD"), &conf);
            assert_eq!(out.exit, 0, "{ver}: {}", out.stdout);
            assert_eq!(v["cniVersion"], ver);
        }
    }

    #[test]
    fn missing_env_is_code_4_naming_the_variables() {
        let (out, v) = run_with(&[("CNI_COMMAND", "ADD")], CONF);
        assert_eq!(out.exit, 1);
        assert_eq!(v["code"], 4);
        assert_eq!(
            v["msg"],
            "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME,CNI_PATH] missing"
        );
        // DEL needs no netns; GC and STATUS only CNI_PATH.
        let (_, v) = run_with(&[("CNI_COMMAND", "DEL")], CONF);
        assert_eq!(v["msg"], "required env variables [CNI_CONTAINERID,CNI_IFNAME,CNI_PATH] missing");
        let (out, _) = run_with(&[("CNI_COMMAND", "GC"), ("CNI_PATH", "/x")], CONF);
        assert_eq!(out.exit, 0);
        let (out, _) = run_with(&[("CNI_COMMAND", "STATUS"), ("CNI_PATH", "/x")], CONF);
        assert_eq!(out.exit, 0);
    }

    #[test]
    fn env_values_are_validated() {
        let cases: &[(&str, &str)] = &[
            ("CNI_CONTAINERID", "-bad"),
            ("CNI_CONTAINERID", "a/b"),
            ("CNI_IFNAME", "this-name-is-too-long"),
            ("CNI_IFNAME", "eth/0"),
            ("CNI_IFNAME", "eth:0"),
            ("CNI_IFNAME", "eth 0"),
            ("CNI_IFNAME", ".."),
            ("CNI_ARGS", "NOEQUALS"),
            ("CNI_ARGS", "FOO=bar"),
            ("CNI_COMMAND", "FROB"),
        ];
        for (k, val) in cases {
            let mut env = full_env("ADD");
            env.retain(|(e, _)| e != k);
            env.push((k, val));
            let (out, v) = run_with(&env, CONF);
            assert_eq!((out.exit, v["code"].as_u64()), (1, Some(4)), "{k}={val}: {}", out.stdout);
        }
        let mut env = full_env("ADD");
        env.push(("CNI_ARGS", "IgnoreUnknown=1;FOO=bar;IP=10.9.9.9/24"));
        let (out, v) = run_with(&env, CONF);
        assert_eq!(out.exit, 0);
        assert_eq!(v["ips"][0]["address"], "10.9.9.9/24");
    }

    /// A plugin that reads no CNI_ARGS keys (the default), as the reference
    /// plugins that never call libcni's `LoadArgs` (portmap, firewall, …).
    struct Lenient;
    impl Plugin for Lenient {
        fn about(&self) -> String {
            "lenient CNI plugin".into()
        }
        fn add(&self, a: &CmdArgs) -> Result<CniResult> {
            Fake.add(a)
        }
        fn del(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn check(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn status(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
        fn gc(&self, _: &CmdArgs) -> Result<()> {
            Ok(())
        }
    }

    #[test]
    fn unknown_cni_args_keys_are_refused_only_by_plugins_that_list_theirs() {
        fn run(plugin: &impl Plugin, cmd: &'static str, cni_args: &str) -> (i32, serde_json::Value) {
            let mut env = full_env(cmd);
            env.push(("CNI_ARGS", cni_args));
            let map: HashMap<String, String> =
                env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let out = dispatch(plugin, &|k| map.get(k).cloned(), &mut CONF.as_bytes());
            let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap_or_default();
            (out.exit, v)
        }
        // cnitool passes CNI_ARGS as the user typed them, without IgnoreUnknown.
        for cmd in ["ADD", "DEL", "CHECK"] {
            assert_eq!(run(&Lenient, cmd, "K8S_POD_NAME=x").0, 0, "{cmd}");
        }
        // Fake lists its key (as the reference's LoadArgs structs): ADD and
        // CHECK refuse others; DEL never fails over them.
        for cmd in ["ADD", "CHECK"] {
            let (exit, v) = run(&Fake, cmd, "K8S_POD_NAME=x");
            assert_eq!((exit, v["code"].as_u64()), (1, Some(4)), "{cmd}: {v}");
            assert!(v["msg"].as_str().unwrap().contains("unknown key \"K8S_POD_NAME\""), "{v}");
        }
        assert_eq!(run(&Fake, "DEL", "K8S_POD_NAME=x").0, 0);
        assert_eq!(run(&Fake, "ADD", "IgnoreUnknown=1;K8S_POD_NAME=x").0, 0);
        // A pair without `=` is no key at all: refused by every plugin.
        assert_eq!(run(&Lenient, "ADD", "K8S_POD_NAME").1["code"], 4);
    }

    #[test]
    fn interface_macs_are_unicast() {
        assert_eq!(parse_unicast_mac("0a:00:00:00:00:01").unwrap(), [0x0a, 0, 0, 0, 0, 1]);
        for (bad, why) in [
            ("zz", "invalid MAC address \"zz\""),
            ("01:00:5e:00:00:01", "a multicast address cannot be an interface's"),
            ("ff:ff:ff:ff:ff:ff", "multicast"),
            ("00:00:00:00:00:00", "all zero"),
        ] {
            let e = parse_unicast_mac(bad).unwrap_err();
            assert!(e.code == 7 && e.msg.contains(why), "{bad}: {e}");
        }
        let e = parse_unicast_mac(&"f".repeat(100_000)).unwrap_err();
        assert!(e.msg.ends_with("(100000 bytes)"), "{}", e.msg.len());
    }

    #[test]
    fn huge_environment_values_are_cut_in_messages() {
        let long = "c".repeat(100_000);
        for (k, v) in [
            ("CNI_CONTAINERID", format!("{long}/")),
            ("CNI_IFNAME", long.clone()),
            ("CNI_ARGS", long.clone()),
        ] {
            let mut env = full_env("ADD");
            env.retain(|(e, _)| *e != k);
            env.push((k, &v));
            let (out, v) = run_with(&env, CONF);
            assert_eq!(v["code"], 4, "{k}: {}", out.stdout.len());
            assert!(v["msg"].as_str().unwrap().len() < 300, "{k}: {}", out.stdout.len());
        }
    }

    #[test]
    fn config_errors_have_their_codes() {
        let (_, v) = run_with(&full_env("ADD"), "{not json");
        assert_eq!(v["code"], 6);
        let (_, v) = run_with(&full_env("ADD"), r#"{"cniVersion":"1.0.0","name":"bad/name"}"#);
        assert_eq!(v["code"], 7);
        let (_, v) = run_with(&full_env("ADD"), r#"{"cniVersion":"0.9.0","name":"n"}"#);
        assert_eq!(v["code"], 1);
    }

    #[test]
    fn verbs_need_their_minimum_versions() {
        let old = r#"{"cniVersion":"0.3.1","name":"n"}"#;
        let (_, v) = run_with(&full_env("CHECK"), old);
        assert_eq!(v["code"], 1);
        let v1 = r#"{"cniVersion":"1.0.0","name":"n"}"#;
        for cmd in ["GC", "STATUS"] {
            let (_, v) = run_with(&[("CNI_COMMAND", cmd), ("CNI_PATH", "/x")], v1);
            assert_eq!(v["code"], 1, "{cmd}");
        }
        let (_, v) = run_with(&full_env("CHECK"), CONF);
        assert_eq!(v["code"], 100, "plugin errors keep their own code");
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn legacy_result_without_ips_is_an_error_not_garbage() {
        let conf = r#"{"cniVersion":"0.2.0","name":"n"}"#;
        let mut env = full_env("ADD");
        env.push(("CNI_ARGS", "IP=10.0.0.9/8"));
        let (out, v) = run_with(&env, conf);
        assert_eq!(out.exit, 0);
        assert_eq!(v["ip4"]["ip"], "10.0.0.9/8");
    }

    const VERBS: [&str; 5] = ["ADD", "DEL", "CHECK", "STATUS", "GC"];

    fn run_reading(env: &[(&str, &str)], stdin: &mut dyn Read) -> (Outcome, serde_json::Value) {
        let map: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let out = dispatch(&Fake, &|k| map.get(k).cloned(), stdin);
        let v = serde_json::from_str(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out, v)
    }

    /// A stdin that never ends: a valid config, then spaces forever. It
    /// errors out (rather than growing a test's memory without bound) once
    /// read well past the cap, which only a reader without a cap would do.
    struct Endless {
        served: usize,
    }

    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.served > 2 * MAX_STDIN {
                return Err(std::io::Error::other("read far past the stdin cap"));
            }
            let head = CONF.as_bytes();
            let n = buf.len().min(64 * 1024);
            for (i, b) in buf[..n].iter_mut().enumerate() {
                *b = head.get(self.served + i).copied().unwrap_or(b' ');
            }
            self.served += n;
            Ok(n)
        }
    }

    #[test]
    fn endless_stdin_stops_at_the_cap_with_code_6() {
        for verb in VERBS {
            let mut stdin = Endless { served: 0 };
            let (out, v) = run_reading(&full_env(verb), &mut stdin);
            assert_eq!((out.exit, v["code"].as_u64()), (1, Some(6)), "{verb}: {}", out.stdout);
            assert_eq!(
                v["msg"], "the network configuration on stdin is larger than 16 MiB",
                "{verb}: {}",
                out.stdout
            );
            assert!(stdin.served <= MAX_STDIN + 128 * 1024, "{verb}: read {} bytes", stdin.served);
        }
        // VERSION ignores what it cannot use.
        let (out, v) = run_reading(&[("CNI_COMMAND", "VERSION")], &mut Endless { served: 0 });
        assert_eq!((out.exit, &v["cniVersion"]), (0, &serde_json::json!(version::LATEST)));
    }

    #[test]
    fn configs_of_real_size_fit_under_the_cap() {
        // A portmap request for 50,000 published ports (Podman expands a
        // published port range into one entry per port and protocol).
        let ports: Vec<_> = (0..50_000u32)
            .map(|i| {
                serde_json::json!({"hostPort": 10000 + i, "containerPort": 10000 + i,
                    "protocol": "udp", "hostIP": "192.168.100.200"})
            })
            .collect();
        let conf = serde_json::json!({"cniVersion": "1.0.0", "name": "n", "type": "fake",
            "runtimeConfig": {"portMappings": ports}})
        .to_string();
        assert!(conf.len() > 4 << 20, "{}", conf.len());
        let (out, v) = run_with(&full_env("ADD"), &conf);
        assert_eq!(out.exit, 0, "{}", out.stdout);
        assert_eq!(v["cniVersion"], "1.0.0");
    }

    #[test]
    fn empty_stdin_is_code_6_for_every_verb_but_version() {
        for verb in VERBS {
            let (out, v) = run_with(&full_env(verb), "");
            assert_eq!((out.exit, v["code"].as_u64()), (1, Some(6)), "{verb}: {}", out.stdout);
            assert!(v["msg"].as_str().unwrap().contains("EOF"), "{verb}: {}", out.stdout);
        }
        let (out, _) = run_with(&[("CNI_COMMAND", "VERSION")], "");
        assert_eq!(out.exit, 0);
    }

    #[test]
    fn stdin_that_is_not_utf8_is_code_6_naming_the_byte() {
        let mut bad = br#"{"cniVersion":"1.0.0","name":"n","type":"fake","x":""#.to_vec();
        let at = bad.len();
        bad.extend_from_slice(b"\xff\xfe\"}");
        for verb in VERBS {
            let (out, v) = run_reading(&full_env(verb), &mut bad.as_slice());
            assert_eq!((out.exit, v["code"].as_u64()), (1, Some(6)), "{verb}: {}", out.stdout);
            assert_eq!(
                v["msg"],
                format!("the network configuration on stdin is not valid UTF-8 (byte {at})"),
                "{verb}"
            );
        }
        let (out, _) = run_reading(&[("CNI_COMMAND", "VERSION")], &mut bad.as_slice());
        assert_eq!(out.exit, 0);
    }

    #[test]
    fn deeply_nested_json_is_code_6_not_a_stack_overflow() {
        let deep = |open: &str, close: &str| format!("{}{}", open.repeat(200_000), close.repeat(200_000));
        let inside = format!(r#"{{"cniVersion":"1.0.0","name":"n","type":"fake","x":{}}}"#, deep("[", "]"));
        let objects = format!(r#"{{"cniVersion":"1.0.0","name":"n","x":{}}}"#, deep(r#"{"a":"#, "}"));
        for stdin in [deep("[", "]"), inside, objects] {
            for verb in VERBS {
                let (out, v) = run_with(&full_env(verb), &stdin);
                assert_eq!((out.exit, v["code"].as_u64()), (1, Some(6)), "{verb}: {}", out.stdout);
                assert!(v["msg"].as_str().unwrap().contains("recursion limit exceeded"), "{}", out.stdout);
            }
        }
    }

    #[test]
    fn own_netns_is_refused_unless_overridden() {
        let mut env = full_env("ADD");
        env.retain(|(k, _)| *k != "CNI_NETNS");
        env.push(("CNI_NETNS", "/proc/self/ns/net"));
        let (_, v) = run_with(&env, CONF);
        assert_eq!(v["code"], 8);
        env.push(("CNI_NETNS_OVERRIDE", "1"));
        let (out, _) = run_with(&env, CONF);
        assert_eq!(out.exit, 0);
    }
}
