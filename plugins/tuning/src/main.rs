#![cfg_attr(not(test), no_main)]
//! tuning: a chained plugin that sets network sysctls inside the container
//! netns and attributes (MAC, MTU, promisc, allmulti, txqueuelen) of the
//! container interface. Previous link attributes are saved in
//! `<dataDir>/<containerID>:<ifname>.json` (the reference's format; see
//! state.rs for the name) and restored on DEL.
//!
//! ADD validates everything before it changes anything, and takes back what
//! it changed when a later step fails.

mod state;

use std::path::{Path, PathBuf};

use common::error::shown;
use common::netlink::rtnl::{format_mac, parse_mac, Link, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::CniResult;
use common::{CniError, Result};

use state::{Found, Saved};
use tuning::config::{self, Settings};

/// The current values of what `s` is about to change.
fn snapshot(link: &Link, s: &Settings) -> Saved {
    Saved {
        mac: if s.mac.is_some() {
            link.mac.as_ref().map(format_mac).unwrap_or_default()
        } else {
            String::new()
        },
        promisc: s.promisc.then(|| link.is_promisc()),
        mtu: if s.mtu.is_some() { link.mtu } else { 0 },
        allmulti: s.allmulti.map(|_| link.is_allmulti()),
        txqlen: s.txqlen.map(|_| link.txqlen),
        ..Default::default()
    }
}

fn link_err<'a>(what: &'a str, ifname: &'a str) -> impl Fn(common::netlink::NlError) -> CniError + 'a {
    move |e| CniError::internal(format!("{what} of {ifname}: {e}"))
}

/// Apply the link attributes of `s`, in the reference's order.
fn apply_link(nl: &mut Rtnl, index: u32, ifname: &str, s: &Settings) -> Result<()> {
    if let Some(mac) = s.mac {
        set_mac(nl, index, mac).map_err(link_err("setting the MAC address", ifname))?;
    }
    if s.promisc {
        nl.set_promisc(index, true).map_err(link_err("setting promiscuous mode", ifname))?;
    }
    if let Some(mtu) = s.mtu {
        nl.set_mtu(index, mtu).map_err(link_err("setting the MTU", ifname))?;
    }
    if let Some(on) = s.allmulti {
        nl.set_allmulti(index, on).map_err(link_err("setting all-multicast mode", ifname))?;
    }
    if let Some(q) = s.txqlen {
        nl.set_txqlen(index, q).map_err(link_err("setting txqueuelen", ifname))?;
    }
    Ok(())
}

/// Some drivers refuse a MAC change while up (EBUSY): then down, set, up.
fn set_mac(nl: &mut Rtnl, index: u32, mac: [u8; 6]) -> common::netlink::NlResult<()> {
    match nl.set_mac(index, mac) {
        Err(e) if e.is(EBUSY) => {
            nl.set_down(index)?;
            let r = nl.set_mac(index, mac);
            nl.set_up(index)?;
            r
        }
        r => r,
    }
}

const EBUSY: i32 = 16;

/// Put back what `saved` recorded; every attribute is tried.
fn restore_link(nl: &mut Rtnl, link: &Link, saved: &Saved) -> Vec<String> {
    let mut errs = Vec::new();
    let ifname = &link.name;
    if saved.mtu != 0 {
        if let Err(e) = nl.set_mtu(link.index, saved.mtu) {
            errs.push(format!("restoring the MTU of {ifname}: {e}"));
        }
    }
    if !saved.mac.is_empty() {
        match parse_mac(&saved.mac) {
            Some(mac) => {
                if let Err(e) = set_mac(nl, link.index, mac) {
                    errs.push(format!("restoring the MAC address of {ifname}: {e}"));
                }
            }
            None => errs.push(format!("saved MAC address {:?} is invalid", saved.mac)),
        }
    }
    if let Some(on) = saved.promisc {
        if let Err(e) = nl.set_promisc(link.index, on) {
            errs.push(format!("restoring promiscuous mode of {ifname}: {e}"));
        }
    }
    if let Some(on) = saved.allmulti {
        if let Err(e) = nl.set_allmulti(link.index, on) {
            errs.push(format!("restoring all-multicast mode of {ifname}: {e}"));
        }
    }
    if let Some(q) = saved.txqlen {
        if let Err(e) = nl.set_txqlen(link.index, q) {
            errs.push(format!("restoring txqueuelen of {ifname}: {e}"));
        }
    }
    errs
}

fn sysctl_error(key: &str, value: &str, e: std::io::Error) -> CniError {
    if e.kind() == std::io::ErrorKind::NotFound {
        CniError::invalid_config(format!(
            "sysctl {key} does not exist in the container's network namespace \
             (only per-namespace net.* sysctls can be set)"
        ))
    } else if e.kind() == std::io::ErrorKind::InvalidInput {
        // EINVAL: the kernel's word for a value out of the sysctl's range or form.
        CniError::invalid_config(format!(
            "invalid value {} for sysctl {key}: the kernel refused it",
            shown(value)
        ))
    } else {
        CniError::internal(format!("setting sysctl {key}: {e}"))
    }
}

/// Write the sysctls inside `ns`; on failure the ones written are put back.
fn apply_sysctls(ns: &Netns, s: &Settings) -> Result<Vec<(String, String)>> {
    let list: Vec<(String, String, String)> =
        s.sysctl.iter().map(|(k, (p, v))| (k.clone(), p.clone(), v.clone())).collect();
    ns.run(move || {
        let mut undo: Vec<(String, String)> = Vec::new();
        for (key, path, value) in &list {
            let res = common::sysctl::read(path).and_then(|old| {
                common::sysctl::write(path, value)?;
                Ok(old)
            });
            match res {
                Ok(old) => undo.push((path.clone(), old)),
                Err(e) => {
                    for (p, old) in undo.iter().rev() {
                        let _ = common::sysctl::write(p, old);
                    }
                    return Err(sysctl_error(key, value, e));
                }
            }
        }
        Ok(undo)
    })
    .map_err(|e| CniError::internal(format!("entering the container netns: {e}")))?
}

fn undo_sysctls(ns: &Netns, undo: Vec<(String, String)>) {
    let _ = ns.run(move || {
        for (p, old) in undo.iter().rev() {
            let _ = common::sysctl::write(p, old);
        }
    });
}

/// What an earlier ADD of this attachment saved (the original values), and where.
fn saved_earlier(dir: &Path, args: &CmdArgs) -> Result<Option<(PathBuf, Saved)>> {
    match state::find(dir, &args.container_id, &args.ifname) {
        Found::Ours(file, saved) => Ok(Some((file, saved))),
        Found::Nothing | Found::Unreadable(_) => Ok(None),
        Found::Foreign(file, other) => Err(CniError::internal(format!(
            "{} holds the saved attributes of container {:?} interface {:?}; refusing to overwrite them",
            file.display(),
            other.container_id,
            other.ifname
        ))),
    }
}

fn prev_result(args: &CmdArgs) -> Result<CniResult> {
    args.conf.prev_result.clone().ok_or_else(|| {
        CniError::invalid_config("tuning must be called as a chained plugin: prevResult is missing")
    })
}

struct Tuning;

impl Plugin for Tuning {
    fn about(&self) -> String {
        format!("CNI tuning plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    /// The reference loads CNI_ARGS into `MacEnvArgs{MAC}`: other keys need IgnoreUnknown.
    fn known_args(&self) -> &'static [&'static str] {
        &["MAC"]
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let s = config::load(args)?;
        let mut res = prev_result(args)?;
        if s.sysctl.is_empty() && !s.touches_link() {
            return Ok(res); // Podman's `{"type": "tuning"}`: pass through
        }
        let ns = Netns::open_container(&args.netns)?;
        let mut nl = Rtnl::in_netns(&ns).map_err(|e| CniError::internal(format!("netlink: {e}")))?;
        let link = if s.touches_link() {
            Some(nl.link_by_name(&args.ifname).map_err(|e| {
                CniError::internal(format!("container interface {:?} not found: {e}", args.ifname))
            })?)
        } else {
            None
        };
        let earlier = if link.is_some() { saved_earlier(&s.data_dir, args)? } else { None };
        let undo = apply_sysctls(&ns, &s)?;
        if let Some(link) = link {
            let path = state::path(&s.data_dir, &args.container_id, &args.ifname);
            let before = snapshot(&link, &s);
            let mut saved = match &earlier {
                Some((_, old)) => old.clone().merged_over(before.clone()),
                None => before.clone(),
            };
            saved.container_id = args.container_id.clone();
            saved.ifname = args.ifname.clone();
            saved.network = args.conf.name.clone();
            let res_link =
                state::write(&path, &saved).and_then(|_| apply_link(&mut nl, link.index, &args.ifname, &s));
            if let Err(e) = res_link {
                let _ = restore_link(&mut nl, &link, &before);
                match &earlier {
                    Some((file, old)) if *file == path => {
                        let _ = state::write(&path, old);
                    }
                    _ => {
                        let _ = std::fs::remove_file(&path);
                    }
                }
                undo_sysctls(&ns, undo);
                return Err(e);
            }
            // Saved by the previous version under its name: now under ours.
            if let Some((file, _)) = earlier.filter(|(file, _)| *file != path) {
                let _ = std::fs::remove_file(file);
            }
            if let Some(mac) = s.mac {
                update_result_mac(&mut res, &args.ifname, &format_mac(&mac));
            }
        }
        Ok(res)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        let dir = config::data_dir(args);
        // Left by an ADD killed mid-write (unlink follows no link).
        let _ = std::fs::remove_file(state::temp_path(&state::path(&dir, &args.container_id, &args.ifname)));
        let (path, saved) = match state::find(&dir, &args.container_id, &args.ifname) {
            Found::Ours(path, saved) => (path, saved),
            Found::Unreadable(path) => {
                let _ = std::fs::remove_file(&path); // nothing to restore
                return Ok(());
            }
            Found::Nothing | Found::Foreign(..) => return Ok(()),
        };
        let mut errs = Vec::new();
        if let Some(ns) = Netns::open_if_exists(&args.netns)? {
            match Rtnl::in_netns(&ns) {
                Ok(mut nl) => {
                    if let Ok(link) = nl.link_by_name(&args.ifname) {
                        errs = restore_link(&mut nl, &link, &saved);
                    }
                }
                Err(e) => errs.push(format!("netlink in the container netns: {e}")),
            }
        }
        // Removed either way: a retried DEL has nothing more it could do.
        if let Err(e) = std::fs::remove_file(&path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errs.push(format!("removing {}: {e}", path.display()));
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(CniError::internal(errs.join("; ")))
        }
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let s = config::load(args)?;
        prev_result(args)?;
        let ns = Netns::open_container(&args.netns)?;
        let list: Vec<(String, String, String)> =
            s.sysctl.iter().map(|(k, (p, v))| (k.clone(), p.clone(), v.clone())).collect();
        ns.run(move || -> Result<()> {
            for (key, path, want) in &list {
                let cur = common::sysctl::read(path).map_err(|e| sysctl_error(key, want, e))?;
                if cur.trim() != want.trim() {
                    return Err(CniError::internal(format!(
                        "sysctl {key} is {cur:?}, the config wants {want:?}"
                    )));
                }
            }
            Ok(())
        })
        .map_err(|e| CniError::internal(format!("entering the container netns: {e}")))??;
        let mut nl = Rtnl::in_netns(&ns).map_err(|e| CniError::internal(format!("netlink: {e}")))?;
        let link = nl
            .link_by_name(&args.ifname)
            .map_err(|_| CniError::internal(format!("cannot find container link {}", args.ifname)))?;
        let differs = |what: &str, want: String, cur: String| {
            Err(CniError::internal(format!("{what} of {} is {cur}, the config wants {want}", args.ifname)))
        };
        if let Some(mac) = s.mac {
            if link.mac != Some(mac) {
                let cur = link.mac.as_ref().map(format_mac).unwrap_or_default();
                return differs("the MAC address", format_mac(&mac), cur);
            }
        }
        if s.promisc != link.is_promisc() {
            return differs("promiscuous mode", s.promisc.to_string(), link.is_promisc().to_string());
        }
        if let Some(mtu) = s.mtu.filter(|m| *m != link.mtu) {
            return differs("the MTU", mtu.to_string(), link.mtu.to_string());
        }
        if let Some(on) = s.allmulti.filter(|on| *on != link.is_allmulti()) {
            return differs("all-multicast mode", on.to_string(), link.is_allmulti().to_string());
        }
        if let Some(q) = s.txqlen.filter(|q| *q != link.txqlen) {
            return differs("txqueuelen", q.to_string(), link.txqlen.to_string());
        }
        Ok(())
    }

    fn status(&self, _args: &CmdArgs) -> Result<()> {
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        let dir = config::data_dir(args);
        let valid = args.conf.valid_attachments()?;
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(CniError::io(format!("reading {}: {e}", dir.display()))),
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            // Only files that say they belong to this network (the reference's
            // files carry no owner and are left alone).
            let Some(saved) = state::read(&path) else { continue };
            if saved.network != args.conf.name || saved.container_id.is_empty() {
                continue;
            }
            let live = valid.iter().any(|a| a.container_id == saved.container_id && a.ifname == saved.ifname);
            if !live {
                let _ = std::fs::remove_file(&path);
            }
        }
        Ok(())
    }
}

/// The container's entry for `ifname` gets the new MAC (entries inside a
/// sandbox first; a result without sandboxes is matched by name alone).
fn update_result_mac(res: &mut CniResult, ifname: &str, mac: &str) {
    let sandboxed = res.interfaces.iter().any(|i| i.name == ifname && !i.sandbox.is_empty());
    for i in res.interfaces.iter_mut().filter(|i| i.name == ifname && (!sandboxed || !i.sandbox.is_empty())) {
        i.mac = mac.to_string();
    }
}

common::plugin_main!(Tuning);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_mac_goes_to_the_container_entry() {
        let mut r: CniResult = serde_json::from_value(serde_json::json!({
            "interfaces": [{"name": "eth0", "mac": "01:01:01:01:01:01"},
                           {"name": "eth0", "mac": "02:02:02:02:02:02", "sandbox": "/x"}]
        }))
        .unwrap();
        update_result_mac(&mut r, "eth0", "0a:0b:0c:0d:0e:0f");
        assert_eq!(r.interfaces[0].mac, "01:01:01:01:01:01");
        assert_eq!(r.interfaces[1].mac, "0a:0b:0c:0d:0e:0f");
    }
}
