//! The driver of the bad-input table: every row runs in namespaces and
//! directories of its own, next to a neighbour attachment that must come
//! through untouched, and is judged the same way:
//!
//! * a row that must fail: exit status 1, exactly one CNI error object on
//!   stdout and nothing else, the expected code, a message that names what
//!   is wrong (every expected fragment in it) and is short (a huge value is
//!   cut), no panic on stderr, and nothing left behind: the state
//!   fingerprint (links, addresses, routes, nf_tables, sysctls and processes
//!   of the host and container netns; every file of the state directories
//!   and of the directory planted links point into) is what it was before;
//! * a row that must work (a hostile but valid input): ADD and then DEL
//!   succeed, and afterwards the fingerprint is what it was before.
//!
//! Only a plugin's bookkeeping files (host-local's `lock`, cursors and index:
//! state of the network, not of an attachment) may appear or change, and a
//! link a row planted in a state directory may be gone (replaced, never
//! followed). Afterwards the neighbour (and, for DEL/CHECK/GC rows, the
//! row's own attachment made before the row) must DEL cleanly, and no
//! process may be left in the row's namespaces.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use test_harness::*;

/// Far above any normal plugin run: only a hang reaches it.
pub const HANG: Duration = Duration::from_secs(60);
/// The longest message a person should have to read; a huge value in it is cut.
pub const MAX_MSG: usize = 1024;
pub const CID: &str = "5a1e7c0ffee0ddba11ad0be5eedcafe5a1e7c0ffee0ddba11ad0be5eedcafe00";
pub const NEIGHBOUR: &str = "0e1ghb0a0e1ghb0a0e1ghb0a0e1ghb0a0e1ghb0a0e1ghb0a0e1ghb0a0e1ghb0a";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Add,
    Del,
    Check,
    Gc,
    Status,
}

impl Verb {
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Add => "ADD",
            Verb::Del => "DEL",
            Verb::Check => "CHECK",
            Verb::Gc => "GC",
            Verb::Status => "STATUS",
        }
    }
}

/// One row's world: a host netns (the plugins' own), a container netns and
/// a directory holding the state dirs (`state/`), the targets of planted
/// links (`outside/`) and things no plugin should look at (`private/`).
pub struct Fx {
    pub host: TestNs,
    pub ctr: TestNs,
    pub dir: TempDir,
    /// Services the setup started (etcd): part of the world, ended with it.
    pub services: Mutex<Vec<std::process::Child>>,
}

impl Drop for Fx {
    fn drop(&mut self) {
        for mut c in self.services.lock().unwrap().drain(..) {
            // Our own children, by their handles.
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Fx {
    fn new() -> Fx {
        let fx = Fx {
            host: HostNs::with_lo().unwrap(),
            ctr: ContainerNs::new().unwrap(),
            dir: TempDir::new().unwrap(),
            services: Mutex::new(Vec::new()),
        };
        for d in ["state/hl", "state/tuning", "state/dns", "state/overlay", "outside", "private/cache"] {
            std::fs::create_dir_all(fx.dir.join(d)).unwrap();
        }
        std::fs::write(fx.outside("victim"), "not the plugin's: must stay as it is\n").unwrap();
        std::fs::write(fx.dir.join("private/resolv.conf"), "nameserver 192.0.2.53\n").unwrap();
        // No IPv6 duplicate address detection: link-local addresses and
        // their routes appear at once, not a second later in the middle of
        // a row's before/after comparison.
        for ns in [&fx.host, &fx.ctr] {
            for key in ["net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"] {
                ns.set_sysctl(key, "0").unwrap();
            }
        }
        fx
    }

    /// Wait until the world stops changing by itself (addresses and routes
    /// of links that just came up).
    fn settle(&self) -> Fingerprint {
        let spec = self.spec();
        let mut last = spec.take();
        for _ in 0..50 {
            std::thread::sleep(Duration::from_millis(20));
            let now = spec.take();
            if now == last {
                return now;
            }
            last = now;
        }
        panic!("the world of the row does not settle");
    }

    /// host-local's dataDir.
    pub fn hl(&self) -> String {
        self.state("hl")
    }

    pub fn state(&self, rel: &str) -> String {
        self.dir.join("state").join(rel).to_string_lossy().into_owned()
    }

    pub fn outside(&self, rel: &str) -> PathBuf {
        self.dir.join("outside").join(rel)
    }

    pub fn private(&self, rel: &str) -> PathBuf {
        self.dir.join("private").join(rel)
    }

    /// Plant a symlink at `at` (in a state dir) pointing to the victim outside.
    pub fn plant_link(&self, case: &mut Case, at: &str) {
        let at = PathBuf::from(self.state(at));
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        let _ = std::fs::remove_file(&at);
        std::os::unix::fs::symlink(self.outside("victim"), &at).unwrap();
        case.planted.push(at);
    }

    fn spec(&self) -> FingerprintSpec<'_> {
        FingerprintSpec::new()
            .netns("host", &self.host)
            .netns("ctr", &self.ctr)
            .dir("state", self.dir.join("state"))
            .dir("outside", self.dir.join("outside"))
    }

    /// The environment every plugin call of the row gets.
    pub fn env(&self, verb: Verb, ifname: &str, cid: &str) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert("CNI_COMMAND".into(), verb.as_str().into());
        if matches!(verb, Verb::Add | Verb::Del | Verb::Check) {
            env.insert("CNI_CONTAINERID".into(), cid.into());
            env.insert("CNI_NETNS".into(), self.ctr.path_str());
            env.insert("CNI_IFNAME".into(), ifname.into());
        }
        env.insert("CNI_PATH".into(), bin_dir());
        for (k, v) in self.extra_env() {
            env.insert(k, v);
        }
        env
    }

    fn extra_env(&self) -> Vec<(String, String)> {
        vec![
            ("DNS_SIDECAR_RUN_DIR".into(), self.state("dns")),
            ("OVERLAY_RUN_DIR".into(), self.state("overlay")),
            ("DNS_SIDECAR_RESOLV_CONF".into(), self.private("resolv.conf").to_string_lossy().into_owned()),
            ("CNIRS_LOCK_WAIT".into(), "10".into()),
        ]
    }

    fn runtime(&self) -> Runtime {
        let mut rt =
            Runtime::new(vec![target_bin_dir()], Some(self.host.path().to_path_buf()), self.private("cache"));
        rt.env = self.extra_env();
        rt
    }
}

pub fn bin_dir() -> String {
    target_bin_dir().to_string_lossy().into_owned()
}

/// One request: the config on stdin (or raw bytes instead), the environment,
/// and for chains the runtime's capability arguments.
#[derive(Clone, Debug)]
pub struct Case {
    pub conf: Value,
    pub env: BTreeMap<String, String>,
    pub stdin: Option<Vec<u8>>,
    pub cap_args: Value,
    /// Links the row planted in state dirs: they may be gone afterwards.
    pub planted: Vec<PathBuf>,
}

impl Case {
    /// Set a field by dotted path (`ipam.dataDir`), creating objects on the way.
    pub fn set(&mut self, path: &str, v: Value) {
        let mut cur = &mut self.conf;
        let parts: Vec<&str> = path.split('.').collect();
        for p in &parts[..parts.len() - 1] {
            if !cur.get(*p).is_some_and(Value::is_object) {
                cur[*p] = json!({});
            }
            cur = cur.get_mut(*p).unwrap();
        }
        cur[parts[parts.len() - 1]] = v;
    }

    pub fn remove(&mut self, path: &str) {
        let (parent, last) = match path.rsplit_once('.') {
            Some((p, l)) => (p.split('.').try_fold(&mut self.conf, |v, k| v.get_mut(k)), l),
            None => (Some(&mut self.conf), path),
        };
        if let Some(Value::Object(m)) = parent {
            m.remove(last);
        }
    }

    fn stdin(&self) -> Vec<u8> {
        self.stdin.clone().unwrap_or_else(|| self.conf.to_string().into_bytes())
    }
}

pub type Mutation = Box<dyn Fn(&mut Case, &Fx) + Send + Sync>;

#[derive(Clone, Debug)]
pub enum Expect {
    /// Exit 1 with this code, every fragment in the message; in a chain,
    /// `by` is the plugin that must report it.
    Fails { code: u32, msg: Vec<String>, by: Option<&'static str> },
    /// ADD and DEL succeed and leave nothing.
    Works,
}

pub struct Row {
    pub profile: &'static str,
    pub verb: Verb,
    /// What is hostile: a field, a variable, a file.
    pub what: String,
    /// The hostile value, as the docs show it.
    pub input: String,
    pub mutate: Mutation,
    pub expect: Expect,
    /// The row changes its world beyond the request (plants files, adds
    /// links): the next row gets a fresh world.
    pub prepares: bool,
    /// A DEL/CHECK/GC row about an attachment that was never added (no
    /// attachment of its own is made first).
    pub never_added: bool,
}

impl Row {
    pub fn new(profile: &'static str, verb: Verb, what: &str, input: &str) -> Row {
        Row {
            profile,
            verb,
            what: what.into(),
            input: input.into(),
            mutate: Box::new(|_, _| {}),
            expect: Expect::Works,
            prepares: false,
            never_added: false,
        }
    }

    /// Add a change of the baseline request.
    pub fn with(mut self, f: impl Fn(&mut Case, &Fx) + Send + Sync + 'static) -> Row {
        let prev = std::mem::replace(&mut self.mutate, Box::new(|_, _| {}));
        self.mutate = Box::new(move |c, fx| {
            prev(c, fx);
            f(c, fx)
        });
        self
    }

    /// A change of the world the row runs in (a planted file, a link).
    pub fn prepare(mut self, f: impl Fn(&mut Case, &Fx) + Send + Sync + 'static) -> Row {
        self.prepares = true;
        self.with(f)
    }

    pub fn never_added(mut self) -> Row {
        self.never_added = true;
        self
    }

    pub fn set(self, path: &'static str, v: Value) -> Row {
        self.with(move |c, _| c.set(path, v.clone()))
    }

    /// Set a top-level key as it is (`cni.dev/valid-attachments`).
    pub fn set_key(self, key: &'static str, v: Value) -> Row {
        self.with(move |c, _| c.conf[key] = v.clone())
    }

    pub fn remove(self, path: &'static str) -> Row {
        self.with(move |c, _| c.remove(path))
    }

    pub fn env(self, key: &'static str, v: impl Into<String>) -> Row {
        let v = v.into();
        self.with(move |c, _| {
            c.env.insert(key.into(), v.clone());
        })
    }

    pub fn stdin(self, bytes: impl Into<Vec<u8>>) -> Row {
        let bytes = bytes.into();
        self.with(move |c, _| c.stdin = Some(bytes.clone()))
    }

    /// Put the JSON text `make` returns at `path` and send the request as
    /// text from then on: huge inputs never become a tree of `Value`s in
    /// the test process (whose every fork would copy their page tables).
    /// The last change of a row.
    pub fn raw(self, path: &'static str, make: fn() -> String) -> Row {
        self.with(move |c, _| {
            c.set(path, json!("@@raw@@"));
            let text = c.conf.to_string().replacen("\"@@raw@@\"", &make(), 1);
            c.stdin = Some(text.into_bytes());
        })
    }

    pub fn cap(self, key: &'static str, v: Value) -> Row {
        self.with(move |c, _| c.cap_args[key] = v.clone())
    }

    pub fn fails(mut self, code: u32, msg: &[&str]) -> Row {
        self.expect = Expect::Fails { code, msg: msg.iter().map(|s| s.to_string()).collect(), by: None };
        self
    }

    /// In a chain: `plugin` reports the failure.
    pub fn fails_in(mut self, plugin: &'static str, code: u32, msg: &[&str]) -> Row {
        self.expect =
            Expect::Fails { code, msg: msg.iter().map(|s| s.to_string()).collect(), by: Some(plugin) };
        self
    }

    pub fn works(mut self) -> Row {
        self.expect = Expect::Works;
        self
    }

    pub fn title(&self) -> String {
        format!("{} {} {}: {}", self.profile, self.verb.as_str(), self.what, self.input)
    }
}

/// How a plugin (or a chain) is run, in one place per plugin.
pub struct Profile {
    pub name: &'static str,
    /// A chain run through the libcni-like runtime instead of one binary.
    pub chain: bool,
    /// Links, addresses, sysctls the baseline needs, made before anything runs.
    pub setup: fn(&Fx),
    /// A valid request (a plugin config, or a conflist for a chain).
    pub baseline: fn(&Fx) -> Value,
    /// The baseline's capability args (chains).
    pub cap_args: fn(&Fx) -> Value,
    /// ifname of the row's attachment; the neighbour uses `neighbour_ifname`.
    pub ifname: &'static str,
    /// Another attachment present during the row (None: the plugin has no
    /// attachment state of its own, as loopback).
    pub neighbour: Option<Neighbour>,
    /// Fields and their JSON type, for the wrong-type rows.
    pub fields: &'static [(&'static str, Ty)],
    /// File names (prefixes) of network state that may appear or change.
    pub bookkeeping: &'static [&'static str],
    /// How a request on another network than the neighbour's differs
    /// (besides the name), for rows with valid unusual network names.
    pub other_network: fn(&mut Case, &Fx),
}

#[derive(Clone, Copy)]
pub struct Neighbour {
    pub ifname: &'static str,
    /// How its request differs from the baseline (other address, other port).
    pub adjust: fn(&mut Case, &Fx),
}

#[derive(Clone, Copy, Debug)]
pub enum Ty {
    Bool,
    Int,
    Str,
    List,
    Map,
}

impl Ty {
    /// A value of another JSON type.
    pub fn wrong(self) -> (Value, &'static str) {
        match self {
            Ty::Bool => (json!("true"), "\"true\" (a string)"),
            Ty::Int => (json!("1500"), "\"1500\" (a string)"),
            Ty::Str => (json!(5), "5 (a number)"),
            Ty::List => (json!({"a": 1}), "{\"a\":1} (an object)"),
            Ty::Map => (json!(["a"]), "[\"a\"] (a list)"),
        }
    }
}

/// The result of a step: the output of one plugin process (or of the one
/// that failed in a chain).
struct Step {
    ok: bool,
    /// The plugin's stdout (for a chain: of the failing plugin), its stderr.
    stdout: String,
    stderr: String,
    exit: Option<i32>,
    /// For chains: which plugin failed.
    plugin: String,
    result: Option<Value>,
}

fn run_case(profile: &Profile, fx: &Fx, verb: Verb, case: &Case) -> Step {
    if profile.chain {
        return run_chain(fx, verb, case);
    }
    run_binary(&target_bin_dir(), profile, fx, verb, case)
}

/// The profile's plugin from `dir` (ours, or the reference's).
fn run_binary(dir: &std::path::Path, profile: &Profile, fx: &Fx, verb: Verb, case: &Case) -> Step {
    let env: Vec<(&str, &str)> = case.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let bin = dir.join(profile.name);
    assert!(bin.is_file(), "build the plugins first (cargo build --workspace --bins): {}", bin.display());
    let out = run_plugin_within(&bin, Some(fx.host.path()), &env, &case.stdin(), HANG)
        .unwrap_or_else(|e| panic!("{} {}: {e}", profile.name, verb.as_str()));
    let result = if out.success() { serde_json::from_str(&out.stdout).ok() } else { None };
    Step {
        ok: out.success(),
        stdout: out.stdout,
        stderr: out.stderr,
        exit: out.exit_code,
        plugin: profile.name.into(),
        result,
    }
}

fn run_chain(fx: &Fx, verb: Verb, case: &Case) -> Step {
    let rt = fx.runtime();
    let list = conflist_value(&case.conf);
    let e = |k: &str| case.env.get(k).cloned().unwrap_or_default();
    let conf = RuntimeConf::new(&e("CNI_CONTAINERID"), e("CNI_NETNS"), &e("CNI_IFNAME"))
        .cni_args(&e("CNI_ARGS"))
        .cap_args(case.cap_args.clone());
    let res = match verb {
        Verb::Add => rt.add_rt(&list, &conf).map(|r| Some(serde_json::to_value(&r).unwrap())),
        Verb::Del => rt.del_rt(&list, &conf).map(|_| None),
        Verb::Check => rt.check_rt(&list, &conf).map(|_| None),
        Verb::Status => rt.status(&list).map(|_| None),
        Verb::Gc => panic!("chain GC rows are not supported"),
    };
    match res {
        Ok(result) => Step {
            ok: true,
            stdout: String::new(),
            stderr: String::new(),
            exit: Some(0),
            plugin: String::new(),
            result,
        },
        Err(e) => Step {
            ok: false,
            stdout: e.stdout.clone(),
            stderr: e.stderr.clone(),
            exit: e.exit_code,
            plugin: e.plugin.clone(),
            result: None,
        },
    }
}

/// The request of `verb` for the attachment `(cid, ifname)` on the baseline.
fn baseline_case(profile: &Profile, fx: &Fx, verb: Verb, ifname: &str, cid: &str) -> Case {
    Case {
        conf: (profile.baseline)(fx),
        env: fx.env(verb, ifname, cid),
        stdin: None,
        cap_args: (profile.cap_args)(fx),
        planted: Vec::new(),
    }
}

/// An attachment made for the row (the neighbour, or the row's own for
/// DEL/CHECK/GC): its DEL request, with the ADD's result as prevResult.
struct Attached {
    del: Case,
    what: &'static str,
}

fn attach(
    profile: &Profile,
    fx: &Fx,
    ifname: &str,
    cid: &str,
    adjust: fn(&mut Case, &Fx),
    what: &'static str,
) -> Result<Attached, String> {
    let mut add = baseline_case(profile, fx, Verb::Add, ifname, cid);
    adjust(&mut add, fx);
    let step = run_case(profile, fx, Verb::Add, &add);
    if !step.ok {
        return Err(format!("setting up the {what} failed: {} {}", step.stdout, step.stderr));
    }
    let mut del = add.clone();
    del.env.insert("CNI_COMMAND".into(), "DEL".into());
    if !profile.chain {
        if let Some(r) = step.result {
            del.conf["prevResult"] = r;
        }
    }
    Ok(Attached { del, what })
}

fn detach(profile: &Profile, fx: &Fx, a: &Attached) -> Result<(), String> {
    let step = run_case(profile, fx, Verb::Del, &a.del);
    if step.ok {
        Ok(())
    } else {
        Err(format!("DEL of the {} failed afterwards: {} {}", a.what, step.stdout, step.stderr))
    }
}

/// The baseline ADD of a (single-plugin) profile by the plugin binary in
/// `dir` (CNI_PATH too), with `cni_args`, in a world of its own; a DEL
/// without them follows a success. The error object's code and message
/// when ADD fails.
pub fn baseline_add(profile: &Profile, dir: &std::path::Path, cni_args: &str) -> Result<(), (u64, String)> {
    let fx = Fx::new();
    (profile.setup)(&fx);
    let mut case = baseline_case(profile, &fx, Verb::Add, profile.ifname, CID);
    case.env.insert("CNI_PATH".into(), dir.to_string_lossy().into_owned());
    case.env.insert("CNI_ARGS".into(), cni_args.into());
    // (The reference runs iptables and nft.)
    case.env.insert("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into());
    let step = run_binary(dir, profile, &fx, Verb::Add, &case);
    if !step.ok {
        let v: Value = serde_json::from_str(&step.stdout).unwrap_or_default();
        let msg = v["msg"].as_str().map_or_else(|| cut(&step.stdout), str::to_string);
        return Err((v["code"].as_u64().unwrap_or(0), msg));
    }
    let mut del = case.clone();
    del.env.insert("CNI_COMMAND".into(), "DEL".into());
    del.env.remove("CNI_ARGS");
    if let Some(r) = step.result {
        del.conf["prevResult"] = r;
    }
    let s = run_binary(dir, profile, &fx, Verb::Del, &del);
    assert!(s.ok, "{} DEL after the ADD: {} {}", dir.join(profile.name).display(), s.stdout, s.stderr);
    Ok(())
}

fn no_adjust(_: &mut Case, _: &Fx) {}

/// Differences that are not left-behind state: bookkeeping files of the
/// network, and planted links that are gone.
fn significant(profile: &Profile, fx: &Fx, case: &Case, diff: Vec<String>) -> Vec<String> {
    let state = fx.dir.join("state");
    let planted: Vec<String> = case
        .planted
        .iter()
        .map(|p| format!("- file state/{}: ", p.strip_prefix(&state).unwrap().display()))
        .collect();
    diff.into_iter()
        .filter(|d| !planted.iter().any(|p| d.starts_with(p.as_str())))
        .filter(|d| {
            let Some(rest) = d.strip_prefix("+ file state/").or_else(|| d.strip_prefix("- file state/"))
            else {
                return true;
            };
            let path = rest.split(": ").next().unwrap_or("");
            let name = path.rsplit('/').next().unwrap_or("");
            let file = rest.contains(": file ");
            // host-local's directory of a network is where its bookkeeping lives.
            let network_dir =
                rest.contains(": dir ") && path.starts_with("hl/") && path.matches('/').count() == 1;
            let bookkeeping = !profile.bookkeeping.is_empty();
            !((file && profile.bookkeeping.iter().any(|b| name.starts_with(b)))
                || (network_dir && bookkeeping))
        })
        .collect()
}

/// The one CNI error object on stdout, judged.
fn judge_error(step: &Step, code: u32, frags: &[String], by: Option<&str>) -> Result<(), String> {
    if step.ok {
        return Err(format!("succeeded, expected code {code}"));
    }
    if let Some(by) = by {
        if step.plugin != by {
            return Err(format!("{} failed, expected {by}: {}", step.plugin, step.stdout));
        }
    }
    if step.exit != Some(1) {
        return Err(format!(
            "exit {:?}, expected 1: stdout {:?} stderr {:?}",
            step.exit,
            cut(&step.stdout),
            cut(&step.stderr)
        ));
    }
    if step.stderr.contains("panicked") {
        return Err(format!("panicked: {}", cut(&step.stderr)));
    }
    let v: Value = serde_json::from_str(&step.stdout)
        .map_err(|e| format!("stdout is not exactly one JSON object ({e}): {:?}", cut(&step.stdout)))?;
    let obj = v.as_object().ok_or_else(|| format!("stdout is not an object: {}", cut(&step.stdout)))?;
    if let Some(k) = obj.keys().find(|k| !["cniVersion", "code", "msg", "details"].contains(&k.as_str())) {
        return Err(format!("unexpected key {k:?} in the error object: {}", cut(&step.stdout)));
    }
    let ver = v["cniVersion"].as_str().unwrap_or("");
    if !common::spec::version::supported(ver) {
        return Err(format!("error object has cniVersion {ver:?}"));
    }
    let msg = v["msg"].as_str().ok_or("no msg")?;
    let got = v["code"].as_u64();
    if got != Some(u64::from(code)) {
        return Err(format!("code {got:?}, expected {code}: {}", cut(msg)));
    }
    if msg.len() > MAX_MSG || v["details"].as_str().unwrap_or("").len() > MAX_MSG {
        return Err(format!("message of {} bytes (a huge value should be cut): {}", msg.len(), cut(msg)));
    }
    for f in frags {
        let found = match f.strip_prefix("word:") {
            Some(w) => has_word(msg, w),
            None => msg.contains(f.as_str()),
        };
        if !found {
            return Err(format!("message lacks {f:?}: {msg}"));
        }
    }
    Ok(())
}

/// `w` in `s` as a whole word (not inside a longer name: `mac` is not in `macvlan`).
fn has_word(s: &str, w: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    s.match_indices(w)
        .any(|(i, _)| !word(s[..i].chars().next_back()) && !word(s[i + w.len()..].chars().next()))
}

fn cut(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((i, _)) => format!("{}… ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// A profile's world, reused by its rows one after another while they
/// leave it as they found it: the fixture, its setup and the neighbour.
struct World<'p> {
    profile: &'p Profile,
    fx: Fx,
    neighbour: Option<Attached>,
    /// Its fingerprint after the last row (which left it as it found it):
    /// the next row's "before", one `ip` and `nft` per netns saved.
    now: Mutex<Option<Fingerprint>>,
}

impl<'p> World<'p> {
    fn new(profile: &'p Profile) -> Result<World<'p>, String> {
        let fx = Fx::new();
        (profile.setup)(&fx);
        let neighbour = match profile.neighbour {
            Some(n) => Some(attach(profile, &fx, n.ifname, NEIGHBOUR, n.adjust, "neighbour attachment")?),
            None => None,
        };
        let now = fx.settle();
        Ok(World { profile, fx, neighbour, now: Mutex::new(Some(now)) })
    }

    /// The neighbour leaves cleanly, and no process is left in the world.
    fn end(self) -> Result<(), String> {
        let mut problems = Vec::new();
        if let Some(n) = &self.neighbour {
            if let Err(e) = detach(self.profile, &self.fx, n) {
                problems.push(e);
            }
        }
        let services: Vec<String> =
            self.fx.services.lock().unwrap().iter().map(|c| format!(" process {} ", c.id())).collect();
        let spec =
            FingerprintSpec::new().netns("host", &self.fx.host).netns("ctr", &self.fx.ctr).processes_only();
        let mut procs = Vec::new();
        for _ in 0..20 {
            // (An exiting daemon may linger in /proc a moment.)
            procs = spec
                .take()
                .lines
                .into_keys()
                .filter(|l| !services.iter().any(|s| l.contains(s.as_str())))
                .collect();
            if procs.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        for p in &procs {
            // A process a plugin we ran left behind: ended by its pid.
            if let Some(pid) = p.split_whitespace().nth(2).and_then(|p| p.parse::<i32>().ok()) {
                // SAFETY: plain kill(2) of a pid we just saw in our own netns.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            problems.push(format!("process left running: {p}"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n    "))
        }
    }
}

/// Run one row in `world`; every problem found, as text.
fn run_row(world: &World, row: &Row) -> Result<(), String> {
    let (profile, fx) = (world.profile, &world.fx);
    let mut own = None;
    let cached = world.now.lock().unwrap().take();
    let res = run_row_in(profile, row, fx, &mut own, cached);
    if let (Ok(after), None) = (&res, &own) {
        *world.now.lock().unwrap() = Some(after.clone());
    }
    // The row's own attachment (DEL/CHECK/GC rows) leaves cleanly.
    let mut problems: Vec<String> = res.err().into_iter().collect();
    if let Some(a) = &own {
        if let Err(e) = detach(profile, fx, a) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n    "))
    }
}

/// The row; the world's fingerprint afterwards. `cached` is the world's
/// fingerprint as the last row left it, if known.
fn run_row_in(
    profile: &Profile,
    row: &Row,
    fx: &Fx,
    own: &mut Option<Attached>,
    cached: Option<Fingerprint>,
) -> Result<Fingerprint, String> {
    let spec = fx.spec();
    // A DEL that works takes the row's own attachment away: compare with the world before it.
    let own_attachment = matches!(row.verb, Verb::Del | Verb::Check | Verb::Gc)
        && profile.neighbour.is_some()
        && !row.never_added;
    let before_own =
        (own_attachment && row.verb == Verb::Del && matches!(row.expect, Expect::Works)).then(|| spec.take());
    let mut case = baseline_case(profile, fx, row.verb, profile.ifname, CID);
    if own_attachment {
        // The row's own attachment exists: a refused DEL/CHECK/GC must not touch it.
        let a = attach(profile, fx, profile.ifname, CID, no_adjust, "row's own attachment")?;
        if let Some(prev) = a.del.conf.get("prevResult") {
            case.conf["prevResult"] = prev.clone();
        }
        *own = Some(a);
    }
    if row.verb == Verb::Gc {
        let valid = json!([{"containerID": NEIGHBOUR, "ifname": profile.neighbour.map_or("", |n| n.ifname)},
                           {"containerID": CID, "ifname": profile.ifname}]);
        case.conf["cni.dev/valid-attachments"] = valid;
        case.conf.as_object_mut().unwrap().remove("prevResult");
    }
    (row.mutate)(&mut case, fx);
    // A row that prepared something, or made its own attachment, changed the world.
    let cached = cached.filter(|_| !row.prepares && !own_attachment);
    let before = before_own.or(cached).unwrap_or_else(|| spec.take());
    let step = run_case(profile, fx, row.verb, &case);
    match &row.expect {
        Expect::Fails { code, msg, by } => {
            let judged = judge_error(&step, *code, msg, *by);
            if step.ok && row.verb == Verb::Add {
                // Undo the unexpected success so the row's world can be torn down.
                let mut del = case.clone();
                del.env.insert("CNI_COMMAND".into(), "DEL".into());
                let _ = run_case(profile, fx, Verb::Del, &del);
            }
            judged?;
            if profile.chain && row.verb == Verb::Add {
                // A runtime DELs after a failed ADD; then nothing may be left.
                let mut del = case.clone();
                del.env.insert("CNI_COMMAND".into(), "DEL".into());
                let s = run_case(profile, fx, Verb::Del, &del);
                if !s.ok {
                    return Err(format!("the runtime's DEL after the failed ADD failed: {}", cut(&s.stdout)));
                }
            }
        }
        Expect::Works => {
            if !step.ok {
                return Err(format!("failed, expected to work: {} {}", cut(&step.stdout), cut(&step.stderr)));
            }
            if row.verb == Verb::Add {
                let mut del = case.clone();
                del.env.insert("CNI_COMMAND".into(), "DEL".into());
                if !profile.chain {
                    if let Some(r) = &step.result {
                        del.conf["prevResult"] = r.clone();
                    }
                }
                let s = run_case(profile, fx, Verb::Del, &del);
                if !s.ok {
                    return Err(format!("ADD worked, DEL failed: {} {}", cut(&s.stdout), cut(&s.stderr)));
                }
            }
        }
    }
    // Teardown may finish just after the plugin returns (a daemon told to
    // stop is gone from /proc a moment after it let go of its lock): what
    // is left must be gone within a few seconds, and stay gone.
    let mut left = Vec::new();
    for _ in 0..20 {
        let after = spec.take();
        left = significant(profile, fx, &case, before.diff(&after));
        if left.is_empty() {
            return Ok(after);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Err(format!("left behind / changed:\n      {}", left.join("\n      ")))
}

/// Run every row (in parallel, each in its own namespaces); panic listing
/// every row that did not behave. `BAD_INPUT_FILTER` runs only rows whose
/// title contains it; `BAD_INPUT_THREADS` sets the parallelism.
pub fn run_all(profiles: &[Profile], rows: Vec<Row>) {
    let filter = std::env::var("BAD_INPUT_FILTER").unwrap_or_default();
    let mut rows: Vec<Row> = rows.into_iter().filter(|r| r.title().contains(&filter)).collect();
    // Rows of one profile next to each other, so that worlds are reused.
    rows.sort_by_key(|r| profiles.iter().position(|p| p.name == r.profile));
    let threads: usize = std::env::var("BAD_INPUT_THREADS").ok().and_then(|t| t.parse().ok()).unwrap_or(6);
    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let times = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut world: Option<World> = None;
                let mut last = String::new();
                let fail =
                    |title: &str, e: String| failures.lock().unwrap().push(format!("{title}\n    {e}"));
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let row = rows.get(i);
                    let profile = row.map(|r| {
                        profiles.iter().find(|p| p.name == r.profile).expect("row of an unknown profile")
                    });
                    if world.as_ref().is_some_and(|w| Some(w.profile.name) != profile.map(|p| p.name)) {
                        if let Err(e) = catch(|| world.take().unwrap().end()) {
                            fail(&format!("{last} (then ending its world)"), e);
                        }
                    }
                    let (Some(row), Some(profile)) = (row, profile) else { break };
                    let started = std::time::Instant::now();
                    let mut res = Ok(());
                    if world.is_none() {
                        res = catch(|| World::new(profile).map(|w| world = Some(w)));
                    }
                    if res.is_ok() {
                        res = catch(|| run_row(world.as_ref().unwrap(), row));
                    }
                    last = row.title();
                    if res.is_err() || row.prepares {
                        // Its world may be changed or broken: the next row gets a fresh one.
                        if let Some(w) = world.take() {
                            if let Err(e) = catch(|| w.end()) {
                                res = Err(format!(
                                    "{}\n    (then ending its world) {e}",
                                    res.err().unwrap_or_default()
                                ));
                            }
                        }
                    }
                    times.lock().unwrap().push((started.elapsed(), row.title()));
                    if let Err(e) = res {
                        fail(&row.title(), e);
                    }
                }
            });
        }
    });
    // The slowest rows, for whoever wonders where the time goes.
    let mut times = times.into_inner().unwrap();
    times.sort();
    for (t, title) in times.iter().rev().take(5) {
        eprintln!("slow row: {t:.1?} {}", title.chars().take(120).collect::<String>());
    }
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    assert!(
        failures.is_empty(),
        "{} of {} rows misbehaved:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}

/// `f`, with a panic (a failed assertion in a fixture) as an error.
fn catch(f: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default())
    })
}

/// The rows as the markdown table of docs/bad-input.md.
pub fn markdown(rows: &[Row]) -> String {
    let esc = |s: &str| s.replace('|', "\\|").replace('\n', "\\n");
    let mut out = String::from("| plugin | verb | hostile | input | expected |\n|---|---|---|---|---|\n");
    for r in rows {
        let expected = match &r.expect {
            Expect::Works if r.verb == Verb::Add => "works, nothing left after DEL".to_string(),
            Expect::Works => "works".to_string(),
            Expect::Fails { code, msg, by } => {
                let frags: Vec<String> = msg.iter().map(|m| format!("`{}`", m.replace('`', "'"))).collect();
                let by = by.map(|b| format!("{b}: ")).unwrap_or_default();
                format!("{by}**{code}** {}", frags.join(" "))
            }
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            r.profile,
            r.verb.as_str(),
            esc(&r.what),
            esc(&r.input),
            esc(&expected)
        ));
    }
    out
}
