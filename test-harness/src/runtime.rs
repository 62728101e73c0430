//! A runtime that drives a network configuration list exactly as libcni
//! (`AddNetworkList`, `DelNetworkList`, `CheckNetworkList`, `GCNetworkList`,
//! `GetStatusNetworkList`) does, with libcni's result cache on disk.
//!
//! Request building, per plugin object (libcni `buildOneConfig`):
//! * `cniVersion` and `name` of the list are injected;
//! * `runtimeConfig` holds the capability args the runtime supplied whose
//!   capability the plugin declares `true` (absent when none);
//! * `prevResult` is the previous plugin's result (ADD) or the cached final
//!   result (CHECK, DEL), in the list's version;
//! * `capabilities` is **kept**, as libcni keeps it (the captured calls in
//!   shared/clients show it on stdin); set [`Runtime::strip_capabilities`] to
//!   send the form the spec text describes.

use std::collections::HashSet;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::spec::version;
use common::spec::{CniResult, NetConfList};
use serde_json::{json, Map, Value};

use crate::exec::{
    find_plugin, run_captured, run_captured_observed, run_with_usage, InvokeError, PluginOutput, Usage,
};

/// libcni's cache entry kind.
pub const CACHE_KIND: &str = "cniCacheV1";

/// The arguments of one attachment (libcni `RuntimeConf`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// `CNI_NETNS`; may be empty (DEL).
    pub netns: String,
    pub ifname: String,
    /// `CNI_ARGS` pairs, joined as `K=V;K=V`.
    pub args: Vec<(String, String)>,
    /// Capability args (`{"portMappings": [...], ...}`); `Null` for none.
    pub cap_args: Value,
}

impl RuntimeConf {
    pub fn new(container_id: &str, netns: impl AsRef<Path>, ifname: &str) -> RuntimeConf {
        RuntimeConf {
            container_id: container_id.into(),
            netns: netns.as_ref().to_string_lossy().into_owned(),
            ifname: ifname.into(),
            args: Vec::new(),
            cap_args: Value::Null,
        }
    }

    /// Set `CNI_ARGS` from `K=V;K=V` text (empty items are skipped).
    pub fn cni_args(mut self, s: &str) -> RuntimeConf {
        self.args = parse_cni_args(s);
        self
    }

    pub fn cap_args(mut self, v: Value) -> RuntimeConf {
        self.cap_args = v;
        self
    }

    pub fn cni_args_string(&self) -> String {
        self.args.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(";")
    }
}

/// `K=V;K=V` into pairs, keeping anything after the first `=` in the value.
pub fn parse_cni_args(s: &str) -> Vec<(String, String)> {
    s.split(';')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// A libcni-like runtime.
#[derive(Clone, Debug)]
pub struct Runtime {
    /// Where plugin binaries are looked up by `type`; also `CNI_PATH`.
    pub bin_dirs: Vec<PathBuf>,
    /// The netns plugins run in (their own netns); `None` = ours.
    pub host: Option<PathBuf>,
    /// libcni's cache dir (`/var/lib/cni`): results go to `<cache_dir>/results/`.
    pub cache_dir: PathBuf,
    /// Remove `capabilities` from each plugin object (libcni does not).
    pub strip_capabilities: bool,
    /// Also inject the misspelled `cni.dev/attachments` key on GC, as older
    /// libcni did (cni #1101). Default true.
    pub gc_legacy_key: bool,
    /// Extra environment for every plugin (e.g. `CNI_NETNS_OVERRIDE`).
    pub env: Vec<(String, String)>,
    /// When set, every plugin exec is reaped with `wait4` and recorded here
    /// (wall time, peak RSS, CPU time): the benchmark's view of a chain.
    pub exec_log: Option<Arc<Mutex<Vec<ExecRecord>>>>,
    /// When set, every plugin the runtime execs starts in a process group of
    /// its own (so whatever it spawns can be found after it was killed) and
    /// the hook is told its pid right after the spawn (fault injection).
    pub spawn_hook: Option<SpawnHook>,
}

/// A plugin process the runtime just started.
#[derive(Clone, Debug)]
pub struct Spawned {
    /// The plugin's `type`.
    pub plugin: String,
    /// `CNI_COMMAND`.
    pub command: String,
    /// Position of the plugin in the list.
    pub index: usize,
    /// Also its process group id.
    pub pid: u32,
    /// Taken just before the spawn (where [`ExecRecord::wall`] starts too).
    pub started: Instant,
}

/// See [`Runtime::spawn_hook`].
#[derive(Clone)]
pub struct SpawnHook(pub Arc<dyn Fn(&Spawned) + Send + Sync>);

impl std::fmt::Debug for SpawnHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpawnHook")
    }
}

/// One plugin exec as [`Runtime::exec_log`] records it.
#[derive(Clone, Debug)]
pub struct ExecRecord {
    /// The binary's file name.
    pub plugin: String,
    /// `CNI_COMMAND`.
    pub command: String,
    /// From spawn to reaped.
    pub wall: Duration,
    pub usage: Usage,
}

impl Runtime {
    pub fn new(bin_dirs: Vec<PathBuf>, host: Option<PathBuf>, cache_dir: impl Into<PathBuf>) -> Runtime {
        Runtime {
            bin_dirs,
            host,
            cache_dir: cache_dir.into(),
            strip_capabilities: false,
            gc_legacy_key: true,
            env: Vec::new(),
            exec_log: None,
            spawn_hook: None,
        }
    }

    /// `<cache_dir>/results/<net>-<cid>-<ifname>`.
    pub fn cache_path(&self, net: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.cache_dir.join("results").join(format!("{net}-{container_id}-{ifname}"))
    }

    // ----- the positional API --------------------------------------------------

    /// ADD the whole list in order; returns the final result (in the list's version).
    pub fn add(
        &self,
        list: &NetConfList,
        container_id: &str,
        netns: impl AsRef<Path>,
        ifname: &str,
        cni_args: &str,
        cap_args: Value,
    ) -> Result<CniResult, InvokeError> {
        self.add_rt(
            list,
            &RuntimeConf::new(container_id, netns, ifname).cni_args(cni_args).cap_args(cap_args),
        )
    }

    /// DEL the whole list in reverse order with the cached result.
    pub fn del(
        &self,
        list: &NetConfList,
        container_id: &str,
        netns: impl AsRef<Path>,
        ifname: &str,
        cni_args: &str,
        cap_args: Value,
    ) -> Result<(), InvokeError> {
        self.del_rt(
            list,
            &RuntimeConf::new(container_id, netns, ifname).cni_args(cni_args).cap_args(cap_args),
        )
    }

    /// CHECK the whole list in order with the cached result.
    pub fn check(
        &self,
        list: &NetConfList,
        container_id: &str,
        netns: impl AsRef<Path>,
        ifname: &str,
        cni_args: &str,
        cap_args: Value,
    ) -> Result<(), InvokeError> {
        self.check_rt(
            list,
            &RuntimeConf::new(container_id, netns, ifname).cni_args(cni_args).cap_args(cap_args),
        )
    }

    // ----- libcni's operations -------------------------------------------------

    /// libcni `AddNetworkList`: stop at the first error; cache the final result.
    pub fn add_rt(&self, list: &NetConfList, rt: &RuntimeConf) -> Result<CniResult, InvokeError> {
        let mut prev: Option<CniResult> = None;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let req = self.request(list, i, prev.as_ref(), rt).map_err(|e| rt_err("ADD", plugin, i, e))?;
            let out = self.invoke("ADD", list, i, &req, rt)?;
            let value: Value = serde_json::from_str(out.stdout.trim()).map_err(|e| {
                let mut err = InvokeError::from_output("ADD", plugin_type(plugin), i, out.clone());
                err.message =
                    format!("plugin type={:?} failed (add): decoding its result: {e}", plugin_type(plugin));
                err
            })?;
            let res = CniResult::parse(&value, &list.cni_version).map_err(|e| {
                let mut err = InvokeError::from_output("ADD", plugin_type(plugin), i, out.clone());
                err.message = format!("plugin type={:?} failed (add): {e}", plugin_type(plugin));
                err
            })?;
            prev = Some(res);
        }
        let mut result = prev.unwrap_or_default();
        result.cni_version = list.cni_version.clone();
        self.cache_add(list, rt, &result)?;
        Ok(result)
    }

    /// libcni `DelNetworkList`: reverse order, each plugin gets the cached
    /// result (from 0.4.0 on); stop at the first error; remove the cache after.
    pub fn del_rt(&self, list: &NetConfList, rt: &RuntimeConf) -> Result<(), InvokeError> {
        let mut cached = None;
        if version::at_least(&list.cni_version, "0.4.0") {
            match self.cached_result(list, rt) {
                Ok(r) => cached = r,
                Err(_) => {
                    let _ = std::fs::remove_file(self.cache_path(&list.name, &rt.container_id, &rt.ifname));
                }
            }
        }
        for i in (0..list.plugins.len()).rev() {
            let plugin = &list.plugins[i];
            let req = self.request(list, i, cached.as_ref(), rt).map_err(|e| rt_err("DEL", plugin, i, e))?;
            self.invoke("DEL", list, i, &req, rt)?;
        }
        if cached.is_some() {
            let _ = std::fs::remove_file(self.cache_path(&list.name, &rt.container_id, &rt.ifname));
        }
        Ok(())
    }

    /// libcni `CheckNetworkList`: needs 0.4.0+, nothing when `disableCheck`.
    pub fn check_rt(&self, list: &NetConfList, rt: &RuntimeConf) -> Result<(), InvokeError> {
        if !version::at_least(&list.cni_version, "0.4.0") {
            return Err(InvokeError::runtime(
                "CHECK",
                format!("configuration version {:?} does not support the CHECK command", list.cni_version),
            ));
        }
        if list.disable_check {
            return Ok(());
        }
        let cached = self.cached_result(list, rt).map_err(|e| {
            InvokeError::runtime("CHECK", format!("failed to get network {:?} cached result: {e}", list.name))
        })?;
        for (i, plugin) in list.plugins.iter().enumerate() {
            let req =
                self.request(list, i, cached.as_ref(), rt).map_err(|e| rt_err("CHECK", plugin, i, e))?;
            self.invoke("CHECK", list, i, &req, rt)?;
        }
        Ok(())
    }

    /// libcni `GCNetworkList`: DEL every cached attachment of this network that
    /// is not valid, then (1.1.0+) GC each plugin with the valid list. Keeps
    /// going and returns every error.
    pub fn gc(&self, list: &NetConfList, valid: &[(&str, &str)]) -> Result<(), Vec<InvokeError>> {
        let valid: Vec<(String, String)> =
            valid.iter().map(|(c, i)| (c.to_string(), i.to_string())).collect();
        self.gc_opt(list, Some(&valid))
    }

    /// GC with `None` = no attachment list at all (cnitool's `gc`): every
    /// cached attachment is deleted and no `cni.dev/valid-attachments` is sent.
    pub fn gc_opt(
        &self,
        list: &NetConfList,
        valid: Option<&[(String, String)]>,
    ) -> Result<(), Vec<InvokeError>> {
        let mut errs = Vec::new();
        let keep: HashSet<(String, String)> = valid.unwrap_or(&[]).iter().cloned().collect();
        for att in self.cached_attachments() {
            if att.network != list.name
                || keep.contains(&(att.rt.container_id.clone(), att.rt.ifname.clone()))
            {
                continue;
            }
            if let Err(mut e) = self.del_rt(list, &att.rt) {
                e.message = format!(
                    "failed to delete stale attachment {} {}: {}",
                    att.rt.container_id, att.rt.ifname, e.message
                );
                errs.push(e);
            }
        }
        if version::at_least(&list.cni_version, "1.1.0") {
            let atts: Option<Value> = valid.map(|v| {
                v.iter().map(|(c, i)| json!({"containerID": c, "ifname": i})).collect::<Vec<_>>().into()
            });
            for (i, plugin) in list.plugins.iter().enumerate() {
                let mut req = self.base_request(list, i);
                if let (Some(a), Some(m)) = (&atts, req.as_object_mut()) {
                    m.insert("cni.dev/valid-attachments".into(), a.clone());
                    if self.gc_legacy_key {
                        m.insert("cni.dev/attachments".into(), a.clone());
                    }
                }
                let _ = plugin;
                if let Err(e) = self.invoke("GC", list, i, &req, &RuntimeConf::default()) {
                    errs.push(e);
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }

    /// libcni `GetStatusNetworkList`: nothing below 1.1.0; stop at the first error.
    pub fn status(&self, list: &NetConfList) -> Result<(), InvokeError> {
        if !version::at_least(&list.cni_version, "1.1.0") {
            return Ok(());
        }
        for i in 0..list.plugins.len() {
            let req = self.base_request(list, i);
            self.invoke("STATUS", list, i, &req, &RuntimeConf::default())?;
        }
        Ok(())
    }

    // ----- request building ----------------------------------------------------

    /// The plugin object with `name` and `cniVersion` of the list (what GC and
    /// STATUS send, before their own keys).
    pub fn base_request(&self, list: &NetConfList, index: usize) -> Value {
        let mut obj = list.plugins[index].as_object().cloned().unwrap_or_default();
        obj.insert("name".into(), list.name.clone().into());
        obj.insert("cniVersion".into(), list.cni_version.clone().into());
        if self.strip_capabilities {
            obj.remove("capabilities");
        }
        Value::Object(obj)
    }

    /// The stdin of plugin `index` for ADD/CHECK/DEL (libcni `buildOneConfig`).
    pub fn request(
        &self,
        list: &NetConfList,
        index: usize,
        prev: Option<&CniResult>,
        rt: &RuntimeConf,
    ) -> Result<Value, String> {
        let plugin = &list.plugins[index];
        let mut req = self.base_request(list, index);
        let obj = req.as_object_mut().expect("object");
        if let Some(prev) = prev {
            let v = prev.to_value(&list.cni_version).map_err(|e| format!("converting prevResult: {e}"))?;
            obj.insert("prevResult".into(), v);
        }
        let rc = runtime_config(plugin, &rt.cap_args);
        if !rc.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(rc));
        }
        Ok(req)
    }

    // ----- exec ----------------------------------------------------------------

    fn env(&self, command: &str, rt: &RuntimeConf) -> Vec<(String, String)> {
        let path = std::env::join_paths(&self.bin_dirs)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut env = vec![
            ("CNI_COMMAND".to_string(), command.to_string()),
            ("CNI_CONTAINERID".into(), rt.container_id.clone()),
            ("CNI_NETNS".into(), rt.netns.clone()),
            ("CNI_ARGS".into(), rt.cni_args_string()),
            ("CNI_IFNAME".into(), rt.ifname.clone()),
            ("CNI_PATH".into(), path),
        ];
        env.extend(self.env.iter().cloned());
        env
    }

    /// Run plugin `index` of `list` with `req` on stdin; error unless exit 0.
    pub fn invoke(
        &self,
        command: &str,
        list: &NetConfList,
        index: usize,
        req: &Value,
        rt: &RuntimeConf,
    ) -> Result<PluginOutput, InvokeError> {
        let ty = plugin_type(&list.plugins[index]);
        let Some(bin) = find_plugin(ty, &self.bin_dirs) else {
            let mut e = InvokeError::runtime(
                command,
                format!("failed to find plugin {ty:?} in path {:?}", self.bin_dirs),
            );
            e.plugin = ty.into();
            e.index = Some(index);
            return Err(e);
        };
        let stdin = req.to_string();
        let env = self.env(command, rt);
        let out = match &self.spawn_hook {
            None => self.exec(&bin, &env, stdin.as_bytes()),
            Some(hook) => {
                let started = Instant::now();
                let mut spawned = |pid| {
                    let s = Spawned { plugin: ty.into(), command: command.into(), index, pid, started };
                    (hook.0)(&s)
                };
                let make = || {
                    let mut c = Command::new(&bin);
                    c.envs(env.iter().map(|(k, v)| (k, v))).process_group(0);
                    c
                };
                run_captured_observed(make, self.host.as_deref(), stdin.as_bytes(), &mut spawned)
            }
        };
        let out = out.map_err(|e| {
            let mut err = InvokeError::runtime(command, format!("exec {}: {e}", bin.display()));
            err.plugin = ty.into();
            err.index = Some(index);
            err
        })?;
        if out.success() {
            Ok(out)
        } else {
            Err(InvokeError::from_output(command, ty, index, out))
        }
    }

    /// Exec one binary in the runtime's host netns with `env` and `stdin`.
    pub fn exec(&self, bin: &Path, env: &[(String, String)], stdin: &[u8]) -> std::io::Result<PluginOutput> {
        if let Some(log) = &self.exec_log {
            let mut cmd = Command::new(bin);
            cmd.envs(env.iter().map(|(k, v)| (k, v)));
            let start = Instant::now();
            let (out, usage) = run_with_usage(cmd, self.host.as_deref(), stdin)?;
            let command = env.iter().find(|(k, _)| k == "CNI_COMMAND").map(|(_, v)| v.clone());
            log.lock().unwrap_or_else(|e| e.into_inner()).push(ExecRecord {
                plugin: bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                command: command.unwrap_or_default(),
                wall: start.elapsed(),
                usage,
            });
            return Ok(out);
        }
        run_captured(
            || {
                let mut c = Command::new(bin);
                c.envs(env.iter().map(|(k, v)| (k, v)));
                c
            },
            self.host.as_deref(),
            stdin,
        )
    }

    // ----- the result cache ----------------------------------------------------

    fn cache_add(&self, list: &NetConfList, rt: &RuntimeConf, result: &CniResult) -> Result<(), InvokeError> {
        let fail = |e: String| {
            InvokeError::runtime("ADD", format!("failed to set network {:?} cached result: {e}", list.name))
        };
        let result = result.to_value(&list.cni_version).map_err(|e| fail(e.to_string()))?;
        let mut entry = Map::new();
        entry.insert("kind".into(), CACHE_KIND.into());
        entry.insert("containerId".into(), rt.container_id.clone().into());
        // Go marshals []byte as base64.
        entry.insert("config".into(), base64(list.raw.to_string().as_bytes()).into());
        entry.insert("ifName".into(), rt.ifname.clone().into());
        entry.insert("networkName".into(), list.name.clone().into());
        if !rt.netns.is_empty() {
            entry.insert("netns".into(), rt.netns.clone().into());
        }
        if !rt.args.is_empty() {
            entry.insert("cniArgs".into(), rt.args.iter().map(|(k, v)| json!([k, v])).collect());
        }
        if rt.cap_args.as_object().is_some_and(|m| !m.is_empty()) {
            entry.insert("capabilityArgs".into(), rt.cap_args.clone());
        }
        entry.insert("result".into(), result);
        let path = self.cache_path(&list.name, &rt.container_id, &rt.ifname);
        std::fs::create_dir_all(path.parent().unwrap()).map_err(|e| fail(e.to_string()))?;
        std::fs::write(&path, Value::Object(entry).to_string()).map_err(|e| fail(e.to_string()))
    }

    /// The cached ADD result in the list's version; `Ok(None)` when there is none.
    pub fn cached_result(&self, list: &NetConfList, rt: &RuntimeConf) -> Result<Option<CniResult>, String> {
        let path = self.cache_path(&list.name, &rt.container_id, &rt.ifname);
        let Ok(bytes) = std::fs::read(&path) else { return Ok(None) };
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
        // A cniCacheV1 entry, or a bare result (libcni's legacy cache).
        let raw = match v.get("kind").and_then(Value::as_str) {
            Some(CACHE_KIND) => v.get("result").cloned().unwrap_or(Value::Null),
            _ => v,
        };
        let res = CniResult::parse(&raw, &list.cni_version).map_err(|e| e.to_string())?;
        // Round-trip through the list version, as libcni's GetAsVersion does.
        let conv = res.to_value(&list.cni_version).map_err(|e| {
            format!("failed to convert cached result to config version {:?}: {e}", list.cni_version)
        })?;
        CniResult::parse(&conv, &list.cni_version).map(Some).map_err(|e| e.to_string())
    }

    /// Every well-formed cached attachment (libcni `GetCachedAttachments("")`).
    pub fn cached_attachments(&self) -> Vec<CachedAttachment> {
        let Ok(dir) = std::fs::read_dir(self.cache_dir.join("results")) else { return Vec::new() };
        let mut names: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        names.sort();
        names
            .into_iter()
            .filter_map(|p| {
                let v: Value = serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                if v.get("kind")?.as_str()? != CACHE_KIND {
                    return None;
                }
                let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
                let (network, ifname) = (s("networkName"), s("ifName"));
                if network.is_empty() || ifname.is_empty() {
                    return None;
                }
                let args = v
                    .get("cniArgs")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|kv| {
                                Some((kv.get(0)?.as_str()?.to_string(), kv.get(1)?.as_str()?.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Some(CachedAttachment {
                    network,
                    rt: RuntimeConf {
                        container_id: s("containerId"),
                        netns: s("netns"),
                        ifname,
                        args,
                        cap_args: v.get("capabilityArgs").cloned().unwrap_or(Value::Null),
                    },
                })
            })
            .collect()
    }
}

/// One entry of the result cache.
#[derive(Clone, Debug, PartialEq)]
pub struct CachedAttachment {
    pub network: String,
    pub rt: RuntimeConf,
}

fn plugin_type(plugin: &Value) -> &str {
    plugin.get("type").and_then(Value::as_str).unwrap_or("")
}

fn rt_err(command: &str, plugin: &Value, index: usize, msg: String) -> InvokeError {
    let mut e = InvokeError::runtime(command, format!("plugin type={:?}: {msg}", plugin_type(plugin)));
    e.plugin = plugin_type(plugin).into();
    e.index = Some(index);
    e
}

/// libcni `injectRuntimeConfig`: the supplied capability args whose
/// capability the plugin declares `true`.
pub fn runtime_config(plugin: &Value, cap_args: &Value) -> Map<String, Value> {
    let mut rc = Map::new();
    let (Some(caps), Some(args)) =
        (plugin.get("capabilities").and_then(Value::as_object), cap_args.as_object())
    else {
        return rc;
    };
    for (cap, on) in caps {
        if on.as_bool() == Some(true) {
            if let Some(v) = args.get(cap) {
                rc.insert(cap.clone(), v.clone());
            }
        }
    }
    rc
}

/// Standard base64 with padding (Go's encoding of `[]byte` in JSON).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: Value) -> NetConfList {
        NetConfList::parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn runtime_config_has_only_declared_and_supplied_capabilities() {
        let plugin =
            json!({"type": "p", "capabilities": {"portMappings": true, "bandwidth": false, "ips": true}});
        let caps =
            json!({"portMappings": [{"hostPort": 8080}], "bandwidth": {"x": 1}, "aliases": {"n": ["a"]}});
        let rc = runtime_config(&plugin, &caps);
        assert_eq!(Value::Object(rc), json!({"portMappings": [{"hostPort": 8080}]}));
        assert!(runtime_config(&json!({"type": "p"}), &caps).is_empty());
        assert!(runtime_config(&plugin, &Value::Null).is_empty());
    }

    #[test]
    fn request_injects_name_version_prev_result_and_runtime_config() {
        let l = list(json!({
            "cniVersion": "0.4.0", "name": "net1",
            "plugins": [
                {"type": "a", "cniVersion": "9.9.9", "name": "other", "x": 1},
                {"type": "b", "capabilities": {"portMappings": true}}
            ]
        }));
        let rt = Runtime::new(vec![], None, "/nonexistent");
        let conf = RuntimeConf::new("c1", "/run/netns/x", "eth0").cap_args(json!({"portMappings": [1]}));
        let first = rt.request(&l, 0, None, &conf).unwrap();
        assert_eq!(first, json!({"type": "a", "cniVersion": "0.4.0", "name": "net1", "x": 1}));

        let prev = CniResult::parse(
            &json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/run/netns/x"}],
                    "ips": [{"address": "10.0.0.2/24", "interface": 0}]}),
            "1.0.0",
        )
        .unwrap();
        let second = rt.request(&l, 1, Some(&prev), &conf).unwrap();
        assert_eq!(second["capabilities"], json!({"portMappings": true}), "libcni keeps capabilities");
        assert_eq!(second["runtimeConfig"], json!({"portMappings": [1]}));
        // prevResult is in the list's version: 0.4.0 IPs carry `version`.
        assert_eq!(second["prevResult"]["cniVersion"], "0.4.0");
        assert_eq!(second["prevResult"]["ips"][0]["version"], "4");

        let mut strip = rt.clone();
        strip.strip_capabilities = true;
        let s = strip.request(&l, 1, None, &conf).unwrap();
        assert!(s.get("capabilities").is_none());
        assert!(s.get("prevResult").is_none());
    }

    #[test]
    fn prev_result_that_cannot_be_converted_is_an_error() {
        let l = list(json!({"cniVersion": "0.2.0", "name": "n", "plugins": [{"type": "a"}]}));
        let rt = Runtime::new(vec![], None, "/nonexistent");
        let prev = CniResult { cni_version: "1.0.0".into(), ..Default::default() };
        let e = rt.request(&l, 0, Some(&prev), &RuntimeConf::default()).unwrap_err();
        assert!(e.contains("no valid IP"), "{e}");
    }

    #[test]
    fn cni_args_round_trip() {
        let a = parse_cni_args("IgnoreUnknown=1;K8S_POD_NAME=x=y;;");
        assert_eq!(a, vec![("IgnoreUnknown".into(), "1".into()), ("K8S_POD_NAME".into(), "x=y".into())]);
        let rc = RuntimeConf::new("c", "", "eth0").cni_args("A=1;B=2");
        assert_eq!(rc.cni_args_string(), "A=1;B=2");
    }

    #[test]
    fn base64_matches_go() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(&[0xff, 0xfe]), "//4=");
    }
}
