#![cfg_attr(not(test), no_main)]
//! bandwidth: a chained plugin that limits the rate of a container's
//! traffic, shaped as the reference shapes it, on the host end of the
//! container's veth:
//! - ingress (traffic to the container) leaves the host through that veth,
//!   so a token bucket (tbf) as its root qdisc limits it;
//! - egress (traffic from the container) arrives on it, where nothing can
//!   queue it, so its ingress qdisc redirects every packet into an ifb
//!   device whose root qdisc is the second token bucket.
//!
//! The ifb is named as the reference names it, `bwp` + 12 hex digits of
//! SHA-512(network name + container ID), so a node that switches between
//! the two finds and removes the same device. DEL removes the ifb; the
//! veth's qdiscs go with the veth. ADD either completes or undoes what it
//! made.

mod config;
#[cfg(test)]
mod tests;

use common::ipam;
use common::links::link_error;
use common::net::NetStack;
use common::netlink::rtnl::tc::{
    handle, Clock, Qdisc, QdiscKind, Redirect, Tbf, INGRESS_HANDLE, TC_H_INGRESS, TC_H_ROOT,
};
use common::netlink::rtnl::{Link, LinkKind, NewLink, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{version, CniResult, Interface};
use common::undo::{Side, Undo};
use common::{CniError, Errors, Result};
use sha2::{Digest, Sha512};

use config::Buckets;

struct Bandwidth;

/// The verbs below act through the kernel seam, so that unit tests can run
/// them against `common::fake`; here they get the real kernel.
impl Plugin for Bandwidth {
    fn about(&self) -> String {
        format!("CNI bandwidth plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let limits = config::load(&args.conf)?;
        let buckets = limits.map(|l| l.buckets(&clock()?)).transpose()?;
        let prev = prev_result(args)?;
        let Some(buckets) = buckets else { return Ok(prev) }; // nothing to shape: pass through
        let ns = Netns::open_container(&args.netns)?;
        add(args, &buckets, prev, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?)
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        del(args, &mut Rtnl::open()?)
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let limits = config::load(&args.conf)?;
        let buckets = limits.map(|l| l.buckets(&clock()?)).transpose()?;
        let prev = prev_result(args)?;
        let ns = Netns::open_container(&args.netns)?;
        check(args, buckets.as_ref(), &prev, &mut Rtnl::open()?, &mut Rtnl::in_netns(&ns)?)
    }

    fn status(&self, _args: &CmdArgs) -> Result<()> {
        Ok(())
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        gc(args, &mut Rtnl::open()?)
    }
}

fn clock() -> Result<Clock> {
    Clock::read().map_err(|e| CniError::internal(format!("reading the packet scheduler's clock: {e}")))
}

fn prev_result(args: &CmdArgs) -> Result<CniResult> {
    args.conf.prev_result.clone().ok_or_else(|| {
        CniError::invalid_config("bandwidth must be called as a chained plugin: prevResult is missing")
    })
}

/// The reference's ifb name for an attachment: `bwp` and the first 12 hex
/// digits of SHA-512(network name + container ID).
pub fn ifb_name(network: &str, container_id: &str) -> String {
    let digest = Sha512::new().chain_update(network).chain_update(container_id).finalize();
    let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("bwp{hex}")
}

/// The alias our ifbs carry, so GC can tell a network's ifbs from others'
/// (the name's hash cannot be undone): "cni-rs bandwidth <network> <container ID>",
/// without the ID when that is too long, none when even the network is.
fn ifb_alias(network: &str, container_id: &str) -> Option<String> {
    let full = format!("{ALIAS_PREFIX}{network} {container_id}");
    let short = format!("{ALIAS_PREFIX}{network}");
    [full, short].into_iter().find(|a| a.len() <= MAX_ALIAS)
}

const ALIAS_PREFIX: &str = "cni-rs bandwidth ";
/// IFALIASZ less the terminating NUL.
const MAX_ALIAS: usize = 255;

/// The host end of the container's veth, found as the reference finds it:
/// the peer of `CNI_IFNAME`, which must be here and among prevResult's host
/// interfaces (results before 0.3.0 list none: then the peer alone decides).
fn host_veth<N: NetStack>(args: &CmdArgs, prev: &CniResult, host: &mut N, ctr: &mut N) -> Result<Link> {
    let ifname = &args.ifname;
    let listed = version::at_least(&args.conf.cni_version, "0.3.0");
    if listed && prev.interfaces.is_empty() {
        return Err(CniError::internal(
            "prevResult lists no interfaces: bandwidth needs the host end of the container's veth",
        ));
    }
    let c =
        ctr.link_by_name(ifname).map_err(|e| link_error(&format!("finding {ifname} in the container"), e))?;
    let Some(peer) = c.link.filter(|_| c.kind.as_deref() == Some("veth")) else {
        return Err(CniError::internal(format!(
            "container interface {ifname} has no veth peer: bandwidth shapes the host end of a veth pair"
        )));
    };
    let h = host
        .link_by_index(peer)
        .ok()
        .filter(|h| h.kind.as_deref() == Some("veth") && h.link == Some(c.index));
    let Some(h) = h else {
        return Err(CniError::internal(format!(
            "the veth peer of {ifname} (index {peer}) is not in the host's network namespace"
        )));
    };
    if listed && !prev.interfaces.iter().any(|i| i.sandbox.is_empty() && i.name == h.name) {
        return Err(CniError::internal(format!(
            "{ifname}'s host end {} is not among prevResult's host interfaces",
            h.name
        )));
    }
    Ok(h)
}

/// ADD: find the host veth, then shape; a failure takes back what was made.
fn add<N: NetStack>(
    args: &CmdArgs,
    buckets: &Buckets,
    prev: CniResult,
    host: &mut N,
    ctr: &mut N,
) -> Result<CniResult> {
    let veth = host_veth(args, &prev, host, ctr)?;
    let mut undo = Undo::new(args);
    let res = shape(args, buckets, &veth, prev, host, &mut undo);
    if res.is_err() {
        undo.run(host, ctr, &mut ipam::Exec); // (no IPAM step to take back)
    }
    res
}

/// The ADD story. Every step that makes something registers its undo.
fn shape<'a, N: NetStack>(
    args: &'a CmdArgs,
    buckets: &Buckets,
    veth: &Link,
    mut res: CniResult,
    host: &mut N,
    undo: &mut Undo<'a, N>,
) -> Result<CniResult> {
    let index = veth.index;
    // 1. Ingress: a token bucket where the veth sends to the container.
    if let Some(tbf) = buckets.ingress {
        host.add_qdisc(&Qdisc::root_tbf(index, tbf))
            .map_err(|e| link_error(&format!("limiting ingress on {} (tbf)", veth.name), e))?;
        undo.push("delete the ingress tbf", move |host, _| Ok(host.del_qdisc(index, TC_H_ROOT)?));
    }
    let Some(tbf) = buckets.egress else { return Ok(res) };

    // 2. Egress: the ifb, as the reference makes it (the veth's MTU, no
    //    transmit queue, up), plus our alias for GC.
    let name = ifb_name(&args.conf.name, &args.container_id);
    let new = NewLink { mtu: Some(veth.mtu), ..NewLink::new(&name, LinkKind::Ifb) };
    host.add_link(&new).map_err(|e| {
        let mut err = link_error(&format!("creating the ifb device {name}"), e.clone());
        if e.is(libc::EEXIST) {
            err.msg += &format!(
                " (left by an earlier ADD of container {} on network {}?)",
                args.container_id, args.conf.name
            );
        }
        err
    })?;
    undo.delete_link(Side::Host, &name);
    let ifb = host.link_by_name(&name).map_err(|e| link_error(&format!("finding {name}"), e))?;
    host.set_txqlen(ifb.index, 0).map_err(|e| link_error(&format!("setting txqueuelen of {name}"), e))?;
    if let Some(alias) = ifb_alias(&args.conf.name, &args.container_id) {
        host.set_alias(ifb.index, &alias)
            .map_err(|e| link_error(&format!("naming the owner of {name}"), e))?;
    }
    host.set_up(ifb.index).map_err(|e| link_error(&format!("setting {name} up"), e))?;

    // 3. Everything arriving on the veth goes through the ifb, whose root
    //    qdisc is the egress bucket.
    host.add_qdisc(&Qdisc::ingress(index))
        .map_err(|e| link_error(&format!("adding the ingress qdisc of {}", veth.name), e))?;
    undo.push("delete the ingress qdisc", move |host, _| Ok(host.del_qdisc(index, TC_H_INGRESS)?));
    host.add_redirect(&redirect(index, ifb.index))
        .map_err(|e| link_error(&format!("redirecting {}'s traffic to {name}", veth.name), e))?;
    host.add_qdisc(&Qdisc::root_tbf(ifb.index, tbf))
        .map_err(|e| link_error(&format!("limiting egress on {name} (tbf)"), e))?;

    // 4. The result: prevResult and the ifb, as a host interface.
    res.interfaces.push(Interface { name, mac: ifb.mac_string(), ..Default::default() });
    Ok(res)
}

/// The reference's filter: prio 1, every protocol, flowid 1:1, into the ifb.
fn redirect(veth: u32, ifb: u32) -> Redirect {
    Redirect {
        index: veth,
        parent: INGRESS_HANDLE,
        prio: 1,
        protocol: libc::ETH_P_ALL as u16,
        classid: handle(1, 1),
        target: ifb,
    }
}

/// DEL: the ifb goes (whether or not the netns is still there); the veth's
/// qdiscs go with the veth. A device of another kind under that name is
/// not ours and stays.
fn del<N: NetStack>(args: &CmdArgs, host: &mut N) -> Result<()> {
    let name = ifb_name(&args.conf.name, &args.container_id);
    match host.link_by_name(&name) {
        Ok(l) if l.kind.as_deref() == Some("ifb") => match host.del_link(l.index) {
            Err(e) if !e.not_found() => Err(link_error(&format!("deleting {name}"), e)),
            _ => Ok(()),
        },
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(link_error(&format!("finding {name}"), e)),
    }
}

/// CHECK: the veth as ADD finds it, then each configured bucket where ADD
/// put it, with the values ADD gave it, and the redirect into the ifb.
fn check<N: NetStack>(
    args: &CmdArgs,
    buckets: Option<&Buckets>,
    prev: &CniResult,
    host: &mut N,
    ctr: &mut N,
) -> Result<()> {
    let veth = host_veth(args, prev, host, ctr)?;
    let Some(buckets) = buckets else { return Ok(()) };
    if let Some(want) = buckets.ingress {
        expect_tbf(host, &veth, want, "ingress")?;
    }
    if let Some(want) = buckets.egress {
        let name = ifb_name(&args.conf.name, &args.container_id);
        let ifb = host
            .link_by_name(&name)
            .map_err(|e| CniError::internal(format!("the ifb device {name} of the egress limit: {e}")))?;
        expect_tbf(host, &ifb, want, "egress")?;
        let filters = host
            .filters(veth.index, INGRESS_HANDLE)
            .map_err(|e| link_error(&format!("filters of {}", veth.name), e))?;
        if !filters.iter().any(|f| f.redirects_all_to() == Some(ifb.index)) {
            return Err(CniError::internal(format!("{}'s traffic is not redirected to {name}", veth.name)));
        }
    }
    Ok(())
}

fn expect_tbf<N: NetStack>(host: &mut N, link: &Link, want: Tbf, dir: &str) -> Result<()> {
    let qdiscs =
        host.qdiscs(Some(link.index)).map_err(|e| link_error(&format!("qdiscs of {}", link.name), e))?;
    match qdiscs.into_iter().find(|q| q.parent == TC_H_ROOT).map(|q| q.kind) {
        Some(QdiscKind::Tbf(got)) if got == want => Ok(()),
        Some(QdiscKind::Tbf(got)) => Err(CniError::internal(format!(
            "the {dir} limit on {} is {}; the config wants {}",
            link.name,
            describe(&got),
            describe(&want)
        ))),
        _ => Err(CniError::internal(format!("{} has no token bucket (tbf) for the {dir} limit", link.name))),
    }
}

fn describe(t: &Tbf) -> String {
    format!("{} bytes/s, a bucket of {} ticks and a queue of {} bytes", t.rate, t.buffer, t.limit)
}

/// GC: remove our ifbs of this network whose attachment is not in the
/// valid list (the reference's carry no alias and are left alone).
fn gc<N: NetStack>(args: &CmdArgs, host: &mut N) -> Result<()> {
    let network = &args.conf.name;
    let valid = args.conf.valid_attachments()?;
    let keep: Vec<String> = valid.iter().map(|a| ifb_name(network, &a.container_id)).collect();
    let ours = format!("{ALIAS_PREFIX}{network}");
    let links = host.links().map_err(|e| link_error("listing links", e))?;
    let mut errors = Errors::new();
    for l in links {
        let owned = l.alias.as_deref().is_some_and(|a| a == ours || a.starts_with(&format!("{ours} ")));
        if l.kind.as_deref() == Some("ifb") && owned && !keep.contains(&l.name) {
            match host.del_link(l.index) {
                Err(e) if !e.not_found() => {
                    errors.note::<()>(Err(link_error(&format!("deleting {}", l.name), e)))
                }
                _ => {}
            }
        }
    }
    errors.into_result()
}

common::plugin_main!(Bandwidth);
