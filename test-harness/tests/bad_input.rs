//! Bad input never panics: every plugin binary answers with one CNI error
//! object on stdout (exit 1), nothing else on stdout, and leaves nothing.

use serde_json::Value;
use test_harness::*;

const PLUGINS: &[&str] =
    &["loopback", "bridge", "host-local", "macvlan", "portmap", "dns-sidecar", "firewall", "tuning"];

fn built() -> Vec<std::path::PathBuf> {
    PLUGINS.iter().map(|p| target_bin_dir().join(p)).filter(|p| p.is_file()).collect()
}

fn env<'a>(cmd: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut e = vec![
        ("CNI_COMMAND", cmd),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/nonexistent/netns"),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/nonexistent"),
    ];
    for (k, v) in extra {
        e.retain(|(x, _)| x != k);
        e.push((k, v));
    }
    e
}

fn assert_error(bin: &std::path::Path, env: &[(&str, &str)], stdin: &str, code: u64) {
    let out = run_plugin(bin, None, env, stdin.as_bytes()).unwrap();
    let name = bin.file_name().unwrap().to_string_lossy();
    assert_eq!(out.exit_code, Some(1), "{name} {env:?} {stdin:?}: {}", out.stdout);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{name}: stdout is not one JSON object ({e}): {:?}", out.stdout));
    assert_eq!(v["code"], code, "{name} {env:?} {stdin:?}: {v}");
    assert!(v["msg"].as_str().is_some_and(|m| !m.is_empty()), "{name}: empty msg");
    assert!(
        !out.stderr.contains("panicked") && !out.stderr.contains("RUST_BACKTRACE"),
        "{name}: {}",
        out.stderr
    );
}

#[test]
fn malformed_input_gets_the_right_code_from_every_plugin() {
    let bins = built();
    assert!(!bins.is_empty(), "build the plugins first (cargo build --workspace --bins)");
    let good =
        r#"{"cniVersion":"1.0.0","name":"n","type":"x","ipam":{"type":"host-local","subnet":"10.9.0.0/24"}}"#;
    for bin in &bins {
        assert_error(bin, &env("ADD", &[]), "{not json", 6);
        assert_error(bin, &env("ADD", &[]), "", 6);
        assert_error(bin, &env("ADD", &[]), r#"{"cniVersion":"1.0.0"}"#, 7);
        assert_error(bin, &env("ADD", &[]), r#"{"cniVersion":"7.7.7","name":"n"}"#, 1);
        assert_error(bin, &env("CHECK", &[]), r#"{"cniVersion":"0.3.1","name":"n"}"#, 1);
        assert_error(bin, &env("FROB", &[]), good, 4);
        assert_error(bin, &env("ADD", &[("CNI_IFNAME", "a/b")]), good, 4);
        assert_error(bin, &env("ADD", &[("CNI_CONTAINERID", "")]), good, 4);
        assert_error(bin, &env("ADD", &[("CNI_ARGS", "garbage")]), good, 4);
        assert_error(bin, &[("CNI_PATH", "/x")], good, 4); // no CNI_COMMAND
    }
}

#[test]
fn no_command_prints_an_about_line() {
    for bin in built() {
        let out = run_plugin(&bin, None, &[], b"").unwrap();
        assert_eq!(out.exit_code, Some(1));
        assert!(out.stderr.contains("CNI protocol versions supported: 0.1.0"), "{}", out.stderr);
    }
}

#[test]
fn version_lists_every_spec_version() {
    for bin in built() {
        let out =
            run_plugin(&bin, None, &[("CNI_COMMAND", "VERSION")], br#"{"cniVersion":"1.0.0"}"#).unwrap();
        assert_eq!(out.exit_code, Some(0));
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let all: Vec<&str> =
            v["supportedVersions"].as_array().unwrap().iter().map(|s| s.as_str().unwrap()).collect();
        assert_eq!(all, common::spec::version::ALL, "{}", bin.display());
    }
}
