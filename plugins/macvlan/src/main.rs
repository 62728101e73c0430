#![cfg_attr(not(test), no_main)]
//! macvlan: the container gets a macvlan device on a master interface, so it
//! appears on the master's network as its own host with its own MAC.
//!
//! The device is created under a random temporary name directly inside the
//! container netns and renamed to `CNI_IFNAME` there. ADD either completes or
//! undoes everything it made; DEL succeeds even when the netns is gone.

mod config;

use common::netlink::rtnl::{format_mac, Link, MacvlanMode, MacvlanOpts, Rtnl};
use common::netlink::NlError;
use common::netns::Netns;
use common::skel::{CmdArgs, Plugin};
use common::spec::{CniResult, Interface};
use common::{ifconfig, ipam, sysctl};
use common::{CniError, Errors, Result};

use config::Config;

struct Macvlan;

impl Plugin for Macvlan {
    fn about(&self) -> String {
        format!("CNI macvlan plugin v{}", env!("CARGO_PKG_VERSION"))
    }

    fn known_args(&self) -> &'static [&'static str] {
        &["MAC"]
    }

    fn add(&self, args: &CmdArgs) -> Result<CniResult> {
        let conf = Config::load(args)?;
        let ns = Netns::open_container(&args.netns)?;
        let mut cnl = Rtnl::in_netns(&ns)?;
        if cnl.link_by_name(&args.ifname).is_ok() {
            return Err(CniError::internal(format!(
                "container already has an interface named {:?}",
                args.ifname
            )));
        }
        // Master and MTU are validated before anything is made.
        let master = if conf.link_in_container {
            conf.master_link(&mut cnl, true)?
        } else {
            conf.master_link(&mut Rtnl::open()?, true)?
        };
        let mut undo = Undo { args, link: None, ipam: None };
        let res = add_attachment(args, &conf, &master, &ns, &mut cnl, &mut undo);
        if res.is_err() {
            undo.run(&mut cnl);
        }
        res
    }

    fn del(&self, args: &CmdArgs) -> Result<()> {
        // No master lookup here: DEL must work after the master is gone.
        let mut errors = Errors::new();
        if let Some(ns) = Netns::open_if_exists(&args.netns)? {
            errors.note(ifconfig::delete_link(&ns, &args.ifname));
        }
        if let Some(plugin) = args.conf.ipam_type() {
            errors.note(ipam::del(plugin, args));
        }
        errors.into_result()
    }

    fn check(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // A bad CNI_NETNS is the first thing to report, before any state.
        let ns = Netns::open_container(&args.netns)?;
        if let Some(plugin) = args.conf.ipam_type() {
            ipam::check(plugin, args)?;
        }
        let prev = args
            .conf
            .prev_result
            .as_ref()
            .ok_or_else(|| CniError::invalid_config("macvlan CHECK needs prevResult"))?;
        let iface =
            prev.interfaces.iter().find(|i| i.name == args.ifname && !i.sandbox.is_empty()).ok_or_else(
                || CniError::internal(format!("prevResult has no container interface {:?}", args.ifname)),
            )?;
        if iface.sandbox != args.netns {
            return Err(CniError::internal(format!(
                "interface {} is in netns {:?}, not {:?}",
                args.ifname, iface.sandbox, args.netns
            )));
        }
        let mut cnl = Rtnl::in_netns(&ns)?;
        let ips = prev.ips_of(&args.ifname);
        let link = ifconfig::verify(&mut cnl, &args.ifname, &ips, &prev.routes)?;
        if link.kind.as_deref() != Some("macvlan") {
            return Err(CniError::internal(format!("{} is not a macvlan", args.ifname)));
        }
        if link.macvlan_mode != Some(conf.mode) {
            return Err(CniError::internal(format!(
                "{} has macvlan mode {:?}, the config says {:?}",
                args.ifname, link.macvlan_mode, conf.mode
            )));
        }
        if !iface.mac.is_empty() && link.mac.map(|m| format_mac(&m)) != Some(iface.mac.to_lowercase()) {
            return Err(CniError::internal(format!(
                "{} has MAC {}, prevResult says {}",
                args.ifname,
                mac_of(&link.mac),
                iface.mac
            )));
        }
        if conf.mtu > 0 && link.mtu != conf.mtu {
            return Err(CniError::internal(format!(
                "{} has MTU {}, the config says {}",
                args.ifname, link.mtu, conf.mtu
            )));
        }
        // The parent: in the container it must be the master itself; from the
        // host it must be the master's index in another netns.
        let master = if conf.link_in_container {
            conf.master_link(&mut cnl, false)?
        } else {
            conf.master_link(&mut Rtnl::open()?, false)?
        };
        let parent_ok =
            link.link == Some(master.index) && (conf.link_in_container != link.link_netnsid.is_some());
        if !parent_ok {
            return Err(CniError::internal(format!(
                "{} is not a macvlan of master {:?}",
                args.ifname, master.name
            )));
        }
        Ok(())
    }

    fn status(&self, args: &CmdArgs) -> Result<()> {
        let conf = Config::load(args)?;
        // With linkInContainer there is no container to look into.
        if !conf.link_in_container {
            conf.master_link(&mut Rtnl::open()?, false).map_err(|e| CniError::not_available(e.msg))?;
        }
        match args.conf.ipam_type() {
            Some(plugin) => ipam::status(plugin, args),
            None => Ok(()),
        }
    }

    fn gc(&self, args: &CmdArgs) -> Result<()> {
        match args.conf.ipam_type() {
            Some(plugin) => ipam::gc(plugin, args),
            None => Ok(()),
        }
    }
}

/// The ADD story. Every step that makes something registers its undo first.
fn add_attachment(
    args: &CmdArgs,
    conf: &Config,
    master: &Link,
    ns: &Netns,
    cnl: &mut Rtnl,
    undo: &mut Undo,
) -> Result<CniResult> {
    // 1. The device, born inside the container under a temporary name.
    let opts = MacvlanOpts {
        mode: conf.mode,
        mtu: (conf.mtu > 0).then_some(conf.mtu),
        mac: conf.mac,
        bc_queue_len: (conf.bc_queue_len > 0).then_some(conf.bc_queue_len),
        netns_fd: (!conf.link_in_container).then(|| ns.fd()),
    };
    let tmp = temp_name(cnl)?;
    if conf.link_in_container {
        create_macvlan(cnl, &tmp, master, &opts)?;
    } else {
        create_macvlan(&mut Rtnl::open()?, &tmp, master, &opts)?;
    }
    undo.link = Some(tmp.clone());
    let link = cnl.link_by_name(&tmp).map_err(|e| link_error("the new macvlan", e))?;

    // 2. Announce address changes from the start, then take the real name.
    ns.visit(|| notify_sysctls(&tmp))??;
    match cnl.rename(link.index, &args.ifname) {
        Ok(()) => undo.link = Some(args.ifname.clone()),
        Err(e) if e.is(libc::EEXIST) => {
            return Err(CniError::internal(format!(
                "container already has an interface named {:?}",
                args.ifname
            )))
        }
        Err(e) => return Err(link_error(&format!("renaming {tmp} to {}", args.ifname), e)),
    }

    // 3. Addresses.
    let mut res = match args.conf.ipam_type() {
        Some(plugin) => {
            undo.ipam = Some(plugin.to_string());
            let r = ipam::add(plugin, args)?;
            if r.ips.is_empty() {
                return Err(CniError::internal("IPAM plugin returned no IP addresses"));
            }
            r
        }
        None => CniResult::default(),
    };

    // 4. The container side: addresses, then link up (with arp_notify/ndisc_notify
    //    set the kernel announces them to the LAN as the link comes up), routes.
    let link = if res.ips.is_empty() {
        cnl.set_up(link.index).map_err(|e| link_error("setting the macvlan up", e))?;
        cnl.link_by_index(link.index).map_err(|e| link_error("the macvlan", e))?
    } else {
        ifconfig::configure(ns, cnl, &args.ifname, &res.ips, &res.routes, true)?
    };
    // 5. The result: the one container interface, every IP on it.
    res.interfaces = vec![Interface {
        name: link.name.clone(),
        mac: mac_of(&link.mac),
        sandbox: args.netns.clone(),
        ..Default::default()
    }];
    for ip in &mut res.ips {
        ip.interface = Some(0);
    }
    if let Some(dns) = args.conf.dns.as_ref().filter(|d| !d.is_empty()) {
        res.dns = dns.clone();
    }
    Ok(res)
}

/// A random temporary name free in the container netns.
fn temp_name(cnl: &mut Rtnl) -> Result<String> {
    for _ in 0..8 {
        let mut b = [0u8; 4];
        common::random_bytes(&mut b);
        let name = format!("mv{:08x}", u32::from_ne_bytes(b));
        if cnl.link_by_name(&name).is_err() {
            return Ok(name);
        }
    }
    Err(CniError::try_again("could not find a free temporary name for the macvlan"))
}

/// Create the macvlan `name` with `nl` (which sees the master); `opts.netns_fd`
/// places it in the container.
fn create_macvlan(nl: &mut Rtnl, name: &str, master: &Link, opts: &MacvlanOpts) -> Result<()> {
    nl.add_macvlan(name, master.index, opts).map_err(|e| {
        let mode = format!("{:?}", opts.mode).to_lowercase();
        let mut err = link_error(&format!("creating a {mode} macvlan on {:?}", master.name), e.clone());
        if e.is(libc::EINVAL) && opts.mode == MacvlanMode::Passthru {
            err.msg += " (a passthru macvlan must be its master's only macvlan)";
        }
        err
    })
}

fn notify_sysctls(ifname: &str) -> Result<()> {
    sysctl::write(&format!("net/ipv4/conf/{ifname}/arp_notify"), "1")?;
    // Absent when IPv6 is disabled in the netns: nothing to announce then.
    let key = format!("net/ipv6/conf/{ifname}/ndisc_notify");
    if std::path::Path::new("/proc/sys").join(&key).exists() {
        sysctl::write(&key, "1")?;
    }
    Ok(())
}

fn link_error(what: &str, e: NlError) -> CniError {
    CniError::internal(format!("{what}: {e}"))
}

fn mac_of(mac: &Option<[u8; 6]>) -> String {
    mac.as_ref().map(format_mac).unwrap_or_default()
}

/// What a failing ADD must take back, in reverse order of making.
struct Undo<'a> {
    args: &'a CmdArgs,
    /// The macvlan's current name in the container netns.
    link: Option<String>,
    ipam: Option<String>,
}

impl Undo<'_> {
    /// Best effort: the ADD error is what the runtime sees.
    fn run(self, cnl: &mut Rtnl) {
        if let Some(name) = &self.link {
            let _ = cnl.del_link_by_name(name);
        }
        if let Some(plugin) = &self.ipam {
            let _ = ipam::del(plugin, self.args);
        }
    }
}

common::plugin_main!(Macvlan);
