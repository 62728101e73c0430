//! The undo log of an ADD: what a failing ADD must take back, newest first.
//!
//! Each step that makes something registers its undo right after it
//! succeeded; when a later step fails the plugin runs the log, so a failed
//! ADD leaves nothing behind. Undo is best effort (the ADD error is what the
//! runtime sees): a step that finds its object gone, or fails, does not stop
//! the others.
//!
//! ```ignore
//! let mut undo = Undo::new(args);
//! let res = add_attachment(args, &conf, host, ctr, ipam, &mut undo);
//! if res.is_err() {
//!     undo.run(host, ctr, ipam);
//! }
//! res
//! ```
//! and inside `add_attachment`:
//! ```ignore
//! ctr.add_link(&new).map_err(|e| links::link_error("creating the macvlan", e))?;
//! undo.delete_link(Side::Container, &new.name);
//! ```

use std::fmt;

use crate::ipam::Ipam;
use crate::ipnet::IpNet;
use crate::net::NetStack;
use crate::netlink::rtnl::{Route, Rule};
use crate::skel::CmdArgs;
use crate::Result;

/// Which namespace a step acts in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The plugin's own netns.
    Host,
    /// `CNI_NETNS`.
    Container,
}

/// A plugin's own undo step, given the host and the container netns.
type Action<'a, N> = Box<dyn FnOnce(&mut N, &mut N) -> Result<()> + 'a>;

enum Step<'a, N> {
    DeleteLink(Side, String),
    ReleaseIpam(String),
    DeleteAddr(Side, String, IpNet),
    DeleteRoute(Side, Route),
    DeleteRule(Side, Rule),
    ReturnLink { name: String, host_name: String },
    Other(&'static str, Action<'a, N>),
}

/// What a failing ADD must take back (see the module doc).
pub struct Undo<'a, N> {
    args: &'a CmdArgs,
    steps: Vec<Step<'a, N>>,
}

impl<'a, N: NetStack> Undo<'a, N> {
    pub fn new(args: &'a CmdArgs) -> Self {
        Undo { args, steps: Vec::new() }
    }

    /// Delete the link `name` (a veth takes its peer along).
    pub fn delete_link(&mut self, side: Side, name: &str) {
        self.steps.push(Step::DeleteLink(side, name.to_string()));
    }

    /// A link registered with [`Undo::delete_link`] was renamed.
    pub fn link_renamed(&mut self, side: Side, from: &str, to: &str) {
        for step in &mut self.steps {
            if let Step::DeleteLink(s, name) = step {
                if *s == side && name == from {
                    *name = to.to_string();
                }
            }
        }
    }

    /// IPAM DEL for the delegate `plugin`.
    pub fn release_ipam(&mut self, plugin: &str) {
        self.steps.push(Step::ReleaseIpam(plugin.to_string()));
    }

    /// Remove an address from the link `link`.
    pub fn delete_addr(&mut self, side: Side, link: &str, addr: IpNet) {
        self.steps.push(Step::DeleteAddr(side, link.to_string(), addr));
    }

    /// Delete a route (one through a link this ADD made goes with the link).
    pub fn delete_route(&mut self, side: Side, route: Route) {
        self.steps.push(Step::DeleteRoute(side, route));
    }

    /// Delete a routing rule.
    pub fn delete_rule(&mut self, side: Side, rule: Rule) {
        self.steps.push(Step::DeleteRule(side, rule));
    }

    /// Move the container's link `name` back to the host as `host_name`.
    pub fn return_link(&mut self, name: &str, host_name: &str) {
        self.steps.push(Step::ReturnLink { name: name.to_string(), host_name: host_name.to_string() });
    }

    /// Anything else, given the host and the container netns; `what` names
    /// it in [`Undo::steps`].
    pub fn push(&mut self, what: &'static str, f: impl FnOnce(&mut N, &mut N) -> Result<()> + 'a) {
        self.steps.push(Step::Other(what, Box::new(f)));
    }

    /// The registered steps, oldest first, as text (for tests and messages).
    pub fn steps(&self) -> Vec<String> {
        self.steps.iter().map(ToString::to_string).collect()
    }

    /// Take everything back, newest first, through `host`, `ctr` and `ipam`.
    pub fn run(self, host: &mut N, ctr: &mut N, ipam: &mut impl Ipam) {
        let args = self.args;
        for step in self.steps.into_iter().rev() {
            let _ = step.run(args, host, ctr, ipam);
        }
    }
}

impl<N: NetStack> Step<'_, N> {
    fn run(self, args: &CmdArgs, host: &mut N, ctr: &mut N, ipam: &mut impl Ipam) -> Result<()> {
        fn net<'x, N>(side: Side, host: &'x mut N, ctr: &'x mut N) -> &'x mut N {
            match side {
                Side::Host => host,
                Side::Container => ctr,
            }
        }
        match self {
            Step::DeleteLink(side, name) => crate::links::delete_if_exists(net(side, host, ctr), &name),
            Step::ReleaseIpam(plugin) => ipam.del(&plugin, args),
            Step::DeleteAddr(side, link, a) => {
                let net = net(side, host, ctr);
                let index = net.link_by_name(&link)?.index;
                Ok(net.del_addr(index, a.addr, a.prefix)?)
            }
            Step::DeleteRoute(side, route) => Ok(net(side, host, ctr).del_route(&route)?),
            Step::DeleteRule(side, rule) => Ok(net(side, host, ctr).del_rule(&rule)?),
            Step::ReturnLink { name, host_name } => {
                crate::links::move_link(ctr, host, &name, &host_name).map(drop)
            }
            Step::Other(_, f) => f(host, ctr),
        }
    }
}

impl<N> fmt::Display for Step<'_, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::DeleteLink(side, name) => write!(f, "delete link {name} ({side:?})"),
            Step::ReleaseIpam(plugin) => write!(f, "release IPAM ({plugin})"),
            Step::DeleteAddr(side, link, a) => write!(f, "delete address {a} of {link} ({side:?})"),
            Step::DeleteRoute(side, r) => write!(f, "delete route {}/{} ({side:?})", r.dst, r.prefix),
            Step::DeleteRule(side, r) => write!(f, "delete rule to table {} ({side:?})", r.table),
            Step::ReturnLink { name, host_name } => {
                write!(f, "return link {name} to the host as {host_name}")
            }
            Step::Other(what, _) => write!(f, "{what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::{cmd_args, FakeKernel};
    use crate::ipam::Ipam;
    use crate::netlink::rtnl::{Family, LinkKind, NewLink};
    use crate::skel::Command;

    #[test]
    fn every_kind_of_step_is_taken_back_newest_first() {
        let k = FakeKernel::new();
        let (mut host, mut ctr, mut ipam) = (k.host(), k.netns("c1"), k.ipam());
        host.add_link(&NewLink::new("dev0", LinkKind::Dummy)).unwrap();
        let before = k.state();
        let conf = serde_json::json!({"cniVersion": "1.1.0", "name": "n", "type": "t"});
        let args = cmd_args(Command::Add, &conf);
        let mut undo: Undo<'_, crate::fake::FakeNet> = Undo::new(&args);

        // What an ADD could have made: a lease, a moved and renamed device, a
        // link with an address, a route and a rule, and something of its own.
        ipam.add("host-local", &args).unwrap();
        undo.release_ipam("host-local");
        crate::links::move_link(&mut host, &mut ctr, "dev0", "net0").unwrap();
        undo.return_link("net0", "dev0");
        ctr.add_link(&NewLink::new("tmp0", LinkKind::Dummy)).unwrap();
        undo.delete_link(Side::Container, "tmp0");
        let i = ctr.link_by_name("tmp0").unwrap().index;
        ctr.rename(i, "eth0").unwrap();
        undo.link_renamed(Side::Container, "tmp0", "eth0");
        let addr: IpNet = "10.1.0.2/24".parse().unwrap();
        ctr.add_addr(i, addr.addr, addr.prefix, &Default::default()).unwrap();
        undo.delete_addr(Side::Container, "eth0", addr);
        ctr.set_up(i).unwrap();
        let mut route = Route::new("10.9.0.0".parse().unwrap(), 16);
        (route.gateway, route.oif) = (Some("10.1.0.1".parse().unwrap()), Some(i));
        ctr.add_route(&route).unwrap();
        undo.delete_route(Side::Container, route);
        let rule = Rule { src: Some(addr), priority: Some(100), ..Rule::new(Family::V4, 100) };
        host.add_rule(&rule).unwrap();
        undo.delete_rule(Side::Host, rule);
        host.set_sysctl("net/ipv4/conf/all/forwarding", "1").unwrap();
        undo.push("forwarding off", |host, _| Ok(host.set_sysctl("net/ipv4/conf/all/forwarding", "0")?));

        assert_eq!(
            undo.steps(),
            [
                "release IPAM (host-local)",
                "return link net0 to the host as dev0",
                "delete link eth0 (Container)",
                "delete address 10.1.0.2/24 of eth0 (Container)",
                "delete route 10.9.0.0/16 (Container)",
                "delete rule to table 100 (Host)",
                "forwarding off",
            ]
        );
        k.clear_calls();
        undo.run(&mut host, &mut ctr, &mut ipam);
        let after = k.state().replace("\n  sysctl net/ipv4/conf/all/forwarding=0", "");
        assert_eq!(after, before);
        let order: Vec<String> =
            k.calls().iter().map(|c| c.split_whitespace().nth(1).unwrap().into()).collect();
        let first = |op: &str| order.iter().position(|o| o == op).unwrap();
        assert!(first("set_sysctls") < first("del_rule") && first("del_rule") < first("del_route"));
        assert!(first("del_addr") < first("del_link_by_name") && first("set_netns_fd") < first("ipam_del"));
    }
}
