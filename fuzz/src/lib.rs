//! What the fuzz targets share: turning fuzz input into what a plugin gets
//! from its runtime, and the "parse, serialize, parse again" check.

use common::args::CniArgs;
use common::skel::{CmdArgs, Command};
use common::spec::NetConf;
use common::CniError;

/// A plugin invocation from fuzz input: the network config (stdin),
/// optionally followed by a NUL byte and the `CNI_ARGS` string. None when
/// the skel would refuse it before the plugin sees it (bad JSON, bad
/// `CNI_ARGS`): those refusals are fuzzed in `netconf` and `cni_args`.
pub fn invocation(data: &[u8]) -> Option<CmdArgs> {
    let (stdin, args) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], std::str::from_utf8(&data[i + 1..]).ok()?),
        None => (data, ""),
    };
    with_stdin(stdin, CniArgs::parse(args).ok()?)
}

pub fn with_stdin(stdin: &[u8], args: CniArgs) -> Option<CmdArgs> {
    let conf = NetConf::parse(stdin).ok()?;
    Some(CmdArgs {
        command: Command::Add,
        container_id: "3f2a9c51e7d04b8a".into(),
        netns: "/run/netns/fuzz".into(),
        ifname: "eth0".into(),
        args,
        path: Vec::new(),
        stdin: stdin.to_vec(),
        conf,
        env: Vec::new(),
    })
}

/// The same invocation with stdin re-serialized by serde_json (keys
/// reordered, whitespace and escapes normalized, duplicates merged).
pub fn reserialized(a: &CmdArgs) -> CmdArgs {
    let stdin = serde_json::to_vec(&a.conf.raw).expect("a parsed Value serializes");
    with_stdin(&stdin, a.args.clone()).expect("a re-serialized config parses again")
}

/// Both loads must agree: the same value, or errors of the same code (a
/// config's meaning cannot depend on its spelling).
pub fn same_outcome<T: std::fmt::Debug>(what: &str, a: &Result<T, CniError>, b: &Result<T, CniError>) {
    match (a, b) {
        (Ok(x), Ok(y)) => assert_eq!(
            format!("{x:?}"),
            format!("{y:?}"),
            "{what}: parse of the re-serialized config differs"
        ),
        (Err(x), Err(y)) => assert_eq!(x.code, y.code, "{what}: {x:?} vs {y:?}"),
        _ => panic!("{what}: the re-serialized config is judged differently: {a:?} vs {b:?}"),
    }
}

/// Every error a parser returns must be a CNI error a person can read.
pub fn readable(e: &CniError) {
    assert!(!e.msg.is_empty(), "an error without a message: {e:?}");
    assert!(e.code != 0, "code 0 is success: {e:?}");
}
