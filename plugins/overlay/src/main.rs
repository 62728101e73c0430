#![cfg_attr(not(test), no_main)]
//! overlay: one container network across many hosts. Containers on any node
//! get an address of the one subnet, claimed cluster-wide in etcd, and reach
//! each other over the kernel's VXLAN: per network and node a bridge and a
//! VXLAN device; remote containers are static forwarding and neighbour
//! entries that a small per-node agent keeps equal to etcd's view.
//!
//! One binary, two roles:
//! - **CNI plugin** (`CNI_COMMAND` set): ADD claims an address in etcd (a
//!   transaction that succeeds only if nobody holds it), makes sure the
//!   network's devices, rules and agent exist on this node, then plugs the
//!   container into the bridge. DEL undoes it and always succeeds locally:
//!   a release etcd cannot take now is left to the agent (or GC) to retry.
//! - **Agent** (`overlay serve <network>`, started by the first ADD): node
//!   membership under an etcd lease, the watch, the kernel's entries, the
//!   names for the local DNS server (see agent.rs).
//!
//! Design notes: docs/overlay.md. Test knobs (environment):
//! `OVERLAY_RUN_DIR` (state root, default /run/cni/overlay); the agent
//! also honours `DNS_SIDECAR_RUN_DIR` to find the DNS server.

mod agent;
mod cluster;
mod dataplane;
mod dnsfeed;
mod etcd;
mod nat;
mod state;

use common::ipnet::IpNet;
use common::links::delete_if_exists;
use common::netlink::rtnl::{format_mac, Rtnl};
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface, IpConfig};
use common::{ifconfig, veth, CniError, Errors, Result};

use cluster::{Claim, IpRecord, Keys};
use etcd::{Etcd, EtcdError};
use overlay::b64;
use overlay::config::{self, Config};
use state::{Attachment, NetDir, Pending};

#[cfg(not(test))]
#[no_mangle]
pub extern "C" fn main(_argc: i32, _argv: *const *const u8) -> i32 {
    let mut args = std::env::args_os().skip(1);
    if std::env::var_os("CNI_COMMAND").is_none() && args.next().is_some_and(|a| a == "serve") {
        let network = args.next().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        std::process::exit(agent::serve(&network));
    }
    common::skel::run(&Overlay)
}

// Unit-test builds get their main from the test harness; this keeps both
// roles in use there.
#[cfg(test)]
#[allow(dead_code)]
fn entry(serve: bool) -> ! {
    if serve {
        std::process::exit(agent::serve("net"));
    }
    common::skel::run(&Overlay)
}

struct Overlay;

impl Plugin for Overlay {
    fn about(&self) -> String {
        format!("CNI overlay plugin v{}: one network across many hosts, on etcd", env!("CARGO_PKG_VERSION"))
    }

    fn known_args(&self) -> &'static [&'static str] {
        &["MAC", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID"]
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        args.conf.name_as_dir("overlay")?;
        let mut conf = Config::load(args)?;
        let mac = args.requested_mac()?;
        let ns = Netns::open_container(&args.netns)?;
        let mut cnl = Rtnl::in_netns(&ns)?;
        if cnl.link_by_name(&args.ifname).is_ok() {
            return Err(CniError::internal(format!(
                "container already has an interface named {:?}",
                args.ifname
            )));
        }
        let mut nl = Rtnl::open()?;
        let under = dataplane::underlay(&mut nl, conf.vtep)?;
        dataplane::resolve(&mut conf, &under);
        let etcd = Etcd::new(&conf.etcd)?;
        // 0. The network's VNI and settings are ours before anything is made
        //    (the agent checks again): a VNI another network holds must not
        //    get as far as the devices, which are named by VNI and shared.
        cluster::claim_network(&etcd, &conf)?;

        // 1. The address, cluster-wide. If etcd cannot be reached, nothing
        //    exists yet: code 11, try again later.
        let record = IpRecord {
            node: conf.node_name().to_string(),
            container_id: args.container_id.clone(),
            ifname: args.ifname.clone(),
            mac: mac.as_ref().map(format_mac).unwrap_or_default(),
            names: common::dns_names::of(args),
        };
        let claim = cluster::claim_address(&etcd, &conf, &record)?;
        let mut undo =
            Undo { args, conf: &conf, etcd: &etcd, claim: claim.clone(), recorded: false, link: false };
        let mac = mac.unwrap_or(config::mac_for(claim.ip));
        let res = add_attachment(args, &conf, &under, &claim, mac, &mut cnl, &mut nl, &mut undo);
        if res.is_err() {
            undo.run(&mut cnl);
        }
        res
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        if args.conf.name_as_dir("overlay").is_err() {
            return Ok(()); // no ADD could have made anything under this name
        }
        let mut conf = Config::load(args)?;
        let mut errors = Errors::new();
        if let Some(ns) = Netns::open_if_exists(&args.netns)? {
            match Rtnl::in_netns(&ns) {
                Ok(mut nl) => errors.note(delete_if_exists(&mut nl, &args.ifname)),
                Err(e) => errors.note::<()>(Err(e.into())),
            }
        }
        let dir = NetDir::new(&conf.network);
        let _lock = dir.lock(true).map_err(io_err("locking overlay state"))?.expect("created");
        let mut atts = dir.attachments().unwrap_or_default();
        let mine = atts.iter().position(|a| a.container_id == args.container_id && a.ifname == args.ifname);
        let claim = match mine {
            Some(i) => {
                let a = atts.remove(i);
                errors.note(delete_host_veth(&a.host_veth));
                Some(a.claim)
            }
            // No local record (state lost, or ADD never completed): the
            // address prevResult names, released only if still ours.
            None => claim_from_prev_result(args),
        };
        let mut pending = dir.pending().unwrap_or_default();
        if let Some(claim) = claim {
            resolve_quietly(&mut conf);
            let keys = Keys::new(&conf);
            let released = Etcd::new(&conf.etcd)
                .map_err(|e| EtcdError::Unavailable(e.msg))
                .and_then(|etcd| cluster::release(&etcd, &keys, &claim, &args.container_id, &args.ifname));
            if released.as_ref().is_err_and(EtcdError::is_unreachable) {
                // Retried by the agent (or the next GC): DEL succeeds.
                pending.push(Pending {
                    container_id: args.container_id.clone(),
                    ifname: args.ifname.clone(),
                    claim,
                });
            }
        }
        errors.note(dir.store_attachments(&atts).map_err(io_err("writing overlay state")));
        errors.note(dir.store_pending(&pending).map_err(io_err("writing overlay state")));
        if atts.is_empty() {
            errors.note(teardown(&dir, &conf, !pending.is_empty()));
        }
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        args.conf.name_as_dir("overlay")?;
        let mut conf = Config::load(args)?;
        let dir = NetDir::new(&conf.network);
        let missing = || {
            CniError::internal(format!(
                "container {} is not attached to overlay {}",
                args.container_id, conf.network
            ))
        };
        let att = {
            let _lock = dir.lock(false).map_err(io_err("locking overlay state"))?.ok_or_else(missing)?;
            let atts = dir.attachments().map_err(io_err("reading overlay state"))?;
            atts.into_iter()
                .find(|a| a.container_id == args.container_id && a.ifname == args.ifname)
                .ok_or_else(missing)?
        };
        let mut nl = Rtnl::open()?;
        let under = dataplane::underlay(&mut nl, conf.vtep)?;
        dataplane::resolve(&mut conf, &under);
        let bridge = dataplane::link(&mut nl, &conf.bridge())?;
        let vxlan = dataplane::link(&mut nl, &conf.vxlan())?;
        if vxlan.master != Some(bridge.index) {
            return Err(CniError::internal(format!(
                "{} is not plugged into {}",
                conf.vxlan(),
                conf.bridge()
            )));
        }
        let host = dataplane::link(&mut nl, &att.host_veth)?;
        if host.master != Some(bridge.index) {
            return Err(CniError::internal(format!(
                "{} is not plugged into {}",
                att.host_veth,
                conf.bridge()
            )));
        }
        let ns = Netns::open_container(&args.netns)?;
        let mut cnl = Rtnl::in_netns(&ns)?;
        let ip = IpConfig {
            address: container_net(&conf, &att.claim),
            gateway: Some(conf.gateway),
            interface: None,
        };
        ifconfig::verify(&mut cnl, &args.ifname, &[&ip], &dataplane::container_routes(&conf))?;
        nat::check(&conf)?;
        if !agent::is_member(&dir) {
            return Err(CniError::internal(format!(
                "the overlay agent of network {} is not running",
                conf.network
            )));
        }
        // The claim in etcd (when etcd answers: running containers do not
        // depend on it).
        let etcd = Etcd::new(&conf.etcd)?;
        match etcd.get(&Keys::new(&conf).ip(att.claim.ip.into())) {
            Ok(Some(kv)) if kv.create_revision == att.claim.revision => Ok(()),
            Ok(_) => Err(CniError::internal(format!(
                "the claim on {} in etcd is not this container's",
                att.claim.ip
            ))),
            Err(e) if e.is_unreachable() => Ok(()),
            Err(e) => Err(e.cni("reading the claim")),
        }
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        let etcd = Etcd::new(&conf.etcd)?;
        match etcd.get(&Keys::new(&conf).config()) {
            Ok(_) => Ok(()),
            Err(e) => Err(CniError::not_available(format!("overlay {}: {e}", conf.network))),
        }
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        if args.conf.name_as_dir("overlay").is_err() {
            return Ok(());
        }
        let mut conf = Config::load(args)?;
        let valid = args.conf.valid_attachments()?;
        let is_valid =
            |cid: &str, ifname: &str| valid.iter().any(|v| v.container_id == cid && v.ifname == ifname);
        let mut nl = Rtnl::open()?;
        let under = dataplane::underlay(&mut nl, conf.vtep)?;
        dataplane::resolve(&mut conf, &under);
        let dir = NetDir::new(&conf.network);
        let mut errors = Errors::new();
        let _lock = dir.lock(true).map_err(io_err("locking overlay state"))?.expect("created");
        // This node's own state — unless an operator runs GC here on behalf
        // of another node (`node` set to a dead node's name).
        let local_node = read_local_node(&dir);
        let mut atts = dir.attachments().unwrap_or_default();
        let mut pending = dir.pending().unwrap_or_default();
        if local_node.is_none() || local_node.as_deref() == Some(conf.node_name()) {
            for a in atts.iter().filter(|a| !is_valid(&a.container_id, &a.ifname)) {
                errors.note(delete_host_veth(&a.host_veth));
                pending.push(Pending {
                    container_id: a.container_id.clone(),
                    ifname: a.ifname.clone(),
                    claim: a.claim.clone(),
                });
            }
            atts.retain(|a| is_valid(&a.container_id, &a.ifname));
        }
        // Every claim of this node in etcd that no valid attachment holds,
        // and every pending release.
        let etcd = Etcd::new(&conf.etcd)?;
        let keys = Keys::new(&conf);
        match cluster::claims_of(&etcd, &keys, conf.node_name()) {
            Ok(claims) => {
                for (claim, rec) in claims.into_iter().filter(|(_, r)| !is_valid(&r.container_id, &r.ifname))
                {
                    if !pending.iter().any(|p| p.claim.ip == claim.ip) {
                        pending.push(Pending { container_id: rec.container_id, ifname: rec.ifname, claim });
                    }
                }
            }
            Err(e) => errors.note::<()>(Err(e.cni("listing this node's addresses"))),
        }
        pending.retain(|p| cluster::release(&etcd, &keys, &p.claim, &p.container_id, &p.ifname).is_err());
        if !pending.is_empty() {
            errors.note::<()>(Err(CniError::try_again(format!(
                "overlay {}: {} address release(s) pending until etcd is reachable",
                conf.network,
                pending.len()
            ))));
        }
        errors.note(dir.store_attachments(&atts).map_err(io_err("writing overlay state")));
        errors.note(dir.store_pending(&pending).map_err(io_err("writing overlay state")));
        if atts.is_empty() {
            errors.note(teardown(&dir, &conf, !pending.is_empty()));
        }
        errors.into_result()
    }
}

/// The ADD story after the claim. Every step that makes something
/// registers its undo first.
#[allow(clippy::too_many_arguments)]
fn add_attachment(
    args: &CmdArgs,
    conf: &Config,
    under: &dataplane::Underlay,
    claim: &Claim,
    mac: [u8; 6],
    cnl: &mut Rtnl,
    nl: &mut Rtnl,
    undo: &mut Undo,
) -> Result<CniResult> {
    // 2. The network on this node — devices, rules, agent — and our record,
    //    under the network lock: a concurrent last DEL cannot tear down what
    //    we are about to plug into.
    let dir = NetDir::new(&conf.network);
    let devices = {
        let _lock = dir.lock(true).map_err(io_err("locking overlay state"))?.expect("created");
        let mut atts = dir.attachments().map_err(io_err("reading overlay state"))?;
        atts.push(Attachment {
            container_id: args.container_id.clone(),
            ifname: args.ifname.clone(),
            claim: claim.clone(),
            host_veth: String::new(),
        });
        dir.store_attachments(&atts).map_err(io_err("writing overlay state"))?;
        undo.recorded = true;
        state::write_json(&dir.config_path(), conf).map_err(io_err("writing overlay state"))?;
        let devices = dataplane::ensure_devices(nl, conf, under)?;
        nat::ensure(conf)?;
        agent::ensure_running(&dir)?;
        devices
    };

    // 3. The container's end on the bridge, its address and routes.
    let host_name = veth::create_for_container(cnl, nl, &args.ifname, conf.mtu, Some(mac))?;
    undo.link = true;
    let port = nl.link_by_name(&host_name).map_err(|e| CniError::internal(format!("host veth: {e}")))?;
    nl.set_master(port.index, devices.bridge.index)
        .map_err(|e| CniError::internal(format!("plugging the veth into the bridge: {e}")))?;
    nl.set_up(port.index).map_err(|e| CniError::internal(format!("setting the host veth up: {e}")))?;
    let ips = vec![IpConfig {
        address: container_net(conf, claim),
        gateway: Some(conf.gateway),
        interface: Some(2),
    }];
    let routes = dataplane::container_routes(conf);
    let clink = ifconfig::configure(cnl, &args.ifname, &ips, &routes, false)?;
    let port = veth::wait_oper_up(nl, port.index)?;
    ifconfig::announce(cnl, &clink)?;
    {
        let _lock = dir.lock(true).map_err(io_err("locking overlay state"))?.expect("created");
        let mut atts = dir.attachments().map_err(io_err("reading overlay state"))?;
        if let Some(a) =
            atts.iter_mut().find(|a| a.container_id == args.container_id && a.ifname == args.ifname)
        {
            a.host_veth = host_name;
        }
        dir.store_attachments(&atts).map_err(io_err("writing overlay state"))?;
    }

    // 4. The result: bridge, host end, container end.
    let mac_of = |m: &Option<[u8; 6]>| m.as_ref().map(format_mac).unwrap_or_default();
    let bridge = nl.link_by_index(devices.bridge.index).unwrap_or(devices.bridge);
    Ok(CniResult {
        interfaces: vec![
            Interface { name: bridge.name.clone(), mac: mac_of(&bridge.mac), ..Default::default() },
            Interface { name: port.name.clone(), mac: mac_of(&port.mac), ..Default::default() },
            Interface {
                name: clink.name.clone(),
                mac: mac_of(&clink.mac),
                mtu: Some(clink.mtu),
                sandbox: args.netns.clone(),
                ..Default::default()
            },
        ],
        ips,
        routes,
        dns: args.conf.dns.clone().unwrap_or_default(),
        ..Default::default()
    })
}

fn container_net(conf: &Config, claim: &Claim) -> IpNet {
    IpNet { addr: claim.ip.into(), prefix: conf.subnet.prefix }
}

/// What a failing ADD must take back, in reverse order of making.
struct Undo<'a> {
    args: &'a CmdArgs,
    conf: &'a Config,
    etcd: &'a Etcd,
    claim: Claim,
    recorded: bool,
    link: bool,
}

impl Undo<'_> {
    /// Best effort: the ADD error is what the runtime sees.
    fn run(self, cnl: &mut Rtnl) {
        let a = self.args;
        if self.link {
            let _ = cnl.del_link_by_name(&a.ifname);
        }
        let keys = Keys::new(self.conf);
        let released = cluster::release(self.etcd, &keys, &self.claim, &a.container_id, &a.ifname);
        let dir = NetDir::new(&self.conf.network);
        let Ok(Some(_lock)) = dir.lock(true) else { return };
        let mut pending = dir.pending().unwrap_or_default();
        if released.is_err() {
            pending.push(Pending {
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
                claim: self.claim,
            });
            let _ = dir.store_pending(&pending);
        }
        let mut atts = dir.attachments().unwrap_or_default();
        if self.recorded {
            atts.retain(|x| !(x.container_id == a.container_id && x.ifname == a.ifname));
            let _ = dir.store_attachments(&atts);
        }
        if atts.is_empty() {
            let _ = teardown(&dir, self.conf, !pending.is_empty());
        }
    }
}

/// The node's last container of the network is gone (caller holds the
/// lock): the agent leaves, the devices and rules go. With releases still
/// pending the agent drains them and the state stays until then.
fn teardown(dir: &NetDir, conf: &Config, pending: bool) -> Result<()> {
    agent::stop(dir, pending);
    let mut errors = Errors::new();
    let mut nl = Rtnl::open()?;
    errors.note(dataplane::remove_devices(&mut nl, conf));
    errors.note(nat::remove(&conf.network));
    if !pending {
        errors.note(dir.remove().map_err(io_err("removing overlay state")));
    }
    errors.into_result()
}

fn delete_host_veth(name: &str) -> Result<()> {
    if name.is_empty() {
        return Ok(());
    }
    match Rtnl::open()?.del_link_by_name(name) {
        Ok(()) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(CniError::internal(format!("deleting {name}: {e}"))),
    }
}

/// The overlay address prevResult gave this interface (revision unknown).
fn claim_from_prev_result(args: &CmdArgs) -> Option<Claim> {
    let prev = args.conf.prev_result.as_ref()?;
    let mine = prev.ips_of(&args.ifname);
    let ips: Vec<&IpConfig> = if mine.is_empty() { prev.ips.iter().collect() } else { mine };
    ips.iter().find_map(|ip| match ip.address.addr {
        std::net::IpAddr::V4(v4) => Some(Claim { ip: v4, revision: 0 }),
        std::net::IpAddr::V6(_) => None,
    })
}

/// DEL resolves the node as ADD did, but never fails on it.
fn resolve_quietly(conf: &mut Config) {
    if let Ok(under) =
        Rtnl::open().map_err(CniError::from).and_then(|mut nl| dataplane::underlay(&mut nl, conf.vtep))
    {
        dataplane::resolve(conf, &under);
    }
}

/// The node the local state was made for.
fn read_local_node(dir: &NetDir) -> Option<String> {
    let c: Config = serde_json::from_slice(&std::fs::read(dir.config_path()).ok()?).ok()?;
    c.node
}

fn io_err(what: &'static str) -> impl FnOnce(std::io::Error) -> CniError {
    move |e| CniError::io(format!("{what}: {e}"))
}
