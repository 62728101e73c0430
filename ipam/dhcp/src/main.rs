#![cfg_attr(not(test), no_main)]
//! dhcp: an IPAM plugin whose addresses come from a DHCP server on the
//! container's network, as with the reference plugin. A lease must be
//! renewed for as long as the container lives, so a long-lived daemon holds
//! the leases: `dhcp daemon [-socketpath …] [-pidfile …] …` is this same
//! binary. The plugin is only its client: ADD asks it to acquire a lease on
//! the interface the main plugin (macvlan, ipvlan, bridge) just made, DEL to
//! release it, CHECK whether it is held; GC and STATUS pass through too.

mod client;
mod config;
mod daemon;
mod options;
mod protocol;

use std::path::Path;

use common::skel::{CmdArgs, Plugin};
use common::spec::{version, CniResult};
use common::{CniError, Result};

use client::CallError;
use protocol::{Reply, Request};

struct Dhcp;

impl Plugin for Dhcp {
    fn about(&self) -> String {
        format!("CNI dhcp IPAM plugin {} (run `dhcp daemon -h` for the daemon)", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, a: &CmdArgs) -> Result<CniResult> {
        let cfg = config::load(&a.conf, &a.args)?;
        let mut req = request(a, "ADD");
        req.request = cfg.request;
        req.provide = cfg.provide;
        req.priority = cfg.priority;
        let mut res = answer(client::call(&cfg.socket_path, &req).map_err(CallError::into_cni)?)?
            .ok_or_else(|| CniError::internal("the DHCP daemon answered ADD without a result"))?;
        res.cni_version = version::LATEST.into();
        Ok(res)
    }

    /// Release the lease. A daemon that is not running holds no lease, so
    /// there is nothing to release: success, as DEL must be repeatable.
    fn del(&self, a: &CmdArgs) -> Result<()> {
        let socket = config::socket_path(&a.conf)?;
        match client::call(&socket, &request(a, "DEL")) {
            Ok(reply) => answer(reply).map(drop),
            Err(CallError::NotRunning(_) | CallError::Vanished) => Ok(()),
            Err(e) => Err(e.into_cni()),
        }
    }

    /// The daemon must hold a live lease, and its address must be the one
    /// in prevResult (when there is one).
    fn check(&self, a: &CmdArgs) -> Result<()> {
        let cfg = config::load(&a.conf, &a.args)?;
        let held =
            answer(client::call(&cfg.socket_path, &request(a, "CHECK")).map_err(CallError::into_cni)?)?
                .ok_or_else(|| CniError::internal("the DHCP daemon answered CHECK without a result"))?;
        if let (Some(prev), Some(ip)) = (&a.conf.prev_result, held.ips.first()) {
            if !prev.ips.iter().any(|p| p.address.addr == ip.address.addr) {
                return Err(CniError::internal(format!(
                    "dhcp: the lease of {} is {}, which prevResult does not hold",
                    a.ifname, ip.address
                )));
            }
        }
        Ok(())
    }

    /// Ready when the daemon answers.
    fn status(&self, a: &CmdArgs) -> Result<()> {
        let socket = config::socket_path(&a.conf)?;
        match client::call(&socket, &request(a, "STATUS")) {
            Ok(reply) => answer(reply).map(drop),
            Err(e) => Err(CniError::not_available(e.into_cni().msg)),
        }
    }

    /// The daemon releases this network's leases of attachments not listed.
    fn gc(&self, a: &CmdArgs) -> Result<()> {
        let socket = config::socket_path(&a.conf)?;
        let mut req = request(a, "GC");
        req.valid_attachments = a
            .conf
            .valid_attachments()?
            .into_iter()
            .map(|v| protocol::Attachment { container_id: v.container_id, ifname: v.ifname })
            .collect();
        match client::call(&socket, &req) {
            Ok(reply) => answer(reply).map(drop),
            Err(CallError::NotRunning(_) | CallError::Vanished) => Ok(()),
            Err(e) => Err(e.into_cni()),
        }
    }
}

/// The request for `command` with the attachment's identity. The daemon may
/// run in another directory, so the netns path is made absolute here.
fn request(a: &CmdArgs, command: &str) -> Request {
    let netns = match Path::new(&a.netns) {
        p if a.netns.is_empty() || p.is_absolute() => a.netns.clone(),
        p => std::env::current_dir().map(|d| d.join(p).to_string_lossy().into_owned()).unwrap_or_default(),
    };
    Request {
        version: protocol::VERSION,
        command: command.into(),
        container_id: a.container_id.clone(),
        netns,
        ifname: a.ifname.clone(),
        network: a.conf.name.clone(),
        ..Default::default()
    }
}

/// The daemon's reply: its result, or its error as ours.
fn answer(reply: Reply) -> Result<Option<CniResult>> {
    match reply.error {
        Some(e) => Err(CniError::new(e.code, e.msg)),
        None => Ok(reply.result),
    }
}

// Unit-test builds get their main from the test harness; this keeps the
// plugin and the daemon in use there.
#[cfg(test)]
#[allow(dead_code)]
fn entry(daemon: bool) -> i32 {
    if daemon {
        return daemon::main(&[]);
    }
    common::skel::run(&Dhcp)
}

/// `dhcp daemon …` runs the daemon; anything else is the CNI plugin.
#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|a| a == "daemon") {
        let rest: Vec<String> = args.map(|a| a.to_string_lossy().into_owned()).collect();
        std::process::exit(daemon::main(&rest));
    }
    common::skel::run(&Dhcp)
}
