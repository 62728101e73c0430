//! What ADD reads from its input: the domain, the container's names, its
//! addresses and the network's gateways — and the result it returns.

use std::net::IpAddr;

use common::dns_names::dns_name;
use common::error::shown;
use common::ipnet::{is_link_local, IpNet};
use common::netlink::rtnl::{Family, Rtnl};
use common::netlink::NlResult;
use common::spec::{CniResult, NetConf};
use common::{CniError, Result};
use serde_json::Value;

/// dnsname's default; Podman always sends it anyway.
pub const DEFAULT_DOMAIN: &str = "dns.podman";

/// The plugin's own config fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsConf {
    /// Lowercase, no trailing dot.
    pub domain: String,
}

impl DnsConf {
    pub fn parse(conf: &NetConf) -> Result<DnsConf> {
        let domain = match conf.raw.get("domainName") {
            None | Some(Value::Null) => DEFAULT_DOMAIN.to_string(),
            Some(Value::String(s)) => dns_name(s).ok_or_else(|| {
                CniError::invalid_config(format!("invalid domainName {}: not a DNS name", shown(s)))
            })?,
            Some(_) => return Err(CniError::invalid_config("domainName must be a string")),
        };
        Ok(DnsConf { domain })
    }
}

/// The container's addresses on `ifname`.
pub fn container_ips(prev: &CniResult, ifname: &str) -> Vec<IpNet> {
    prev.ips_of(ifname).into_iter().map(|ip| ip.address).collect()
}

/// The network's gateway addresses for these container IPs: the gateways
/// prevResult names, else the bridge's own addresses in those subnets.
pub fn gateways(prev: &CniResult, ifname: &str) -> Result<Vec<IpAddr>> {
    let mut out: Vec<IpAddr> = Vec::new();
    for ip in prev.ips_of(ifname) {
        if let Some(g) = ip.gateway {
            if !out.contains(&g) {
                out.push(g);
            }
        }
    }
    if !out.is_empty() {
        return Ok(out);
    }
    let Some(bridge) = prev.interfaces.iter().find(|i| i.sandbox.is_empty()) else {
        return Err(CniError::invalid_config(
            "prevResult has no gateway and no host-side interface to listen on",
        ));
    };
    let addrs = interface_addrs(&bridge.name)
        .map_err(|e| CniError::internal(format!("reading addresses of {}: {e}", bridge.name)))?;
    let subnets: Vec<IpNet> = container_ips(prev, ifname).iter().map(IpNet::network).collect();
    out = addrs.iter().filter(|a| subnets.iter().any(|s| s.contains(a))).copied().collect();
    if out.is_empty() {
        out.extend(addrs.first());
    }
    if out.is_empty() {
        return Err(CniError::invalid_config(format!(
            "prevResult has no gateway and interface {} has no address to listen on",
            bridge.name
        )));
    }
    Ok(out)
}

/// Global addresses of interface `name` (link-local ones need a scope and
/// are no use as a nameserver), in the kernel's order.
fn interface_addrs(name: &str) -> NlResult<Vec<IpAddr>> {
    let mut nl = Rtnl::open()?;
    let index = nl.link_by_name(name)?.index;
    let mut out = Vec::new();
    for a in nl.addrs(Some(index), Family::Any)? {
        if !is_link_local(&a.addr) && !out.contains(&a.addr) {
            out.push(a.addr);
        }
    }
    Ok(out)
}

/// prevResult with `dns` pointing at the sidecar: the gateways are the only
/// nameservers (a second one would answer container names differently),
/// the domain is ours and leads the search list.
pub fn result(prev: &CniResult, gateways: &[IpAddr], domain: &str) -> CniResult {
    let mut r = prev.clone();
    r.dns.nameservers = gateways.iter().map(IpAddr::to_string).collect();
    r.dns.domain = domain.to_string();
    let mut search = vec![domain.to_string()];
    for s in &prev.dns.search {
        if !search.iter().any(|x| x.eq_ignore_ascii_case(s.trim_end_matches('.'))) {
            search.push(s.clone());
        }
    }
    r.dns.search = search;
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::args::CniArgs;
    use common::skel::{CmdArgs, Command};
    use serde_json::json;

    fn args(conf: Value, cni_args: &str) -> CmdArgs {
        CmdArgs {
            command: Command::Add,
            container_id: "367b353c50a091eef1a6315373820b3c490e3c2cbb6d486d1bfe93d44f1f2095".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: CniArgs::parse(cni_args).unwrap(),
            path: vec![],
            stdin: vec![],
            conf: NetConf::parse(conf.to_string().as_bytes()).unwrap(),
            env: vec![],
        }
    }

    /// Exactly what Podman sends (plugin-calls.txt).
    fn podman() -> Value {
        json!({"capabilities":{"aliases":true},"cniVersion":"0.4.0","domainName":"dns.podman","name":"br1",
            "prevResult":{"cniVersion":"0.4.0","dns":{},"interfaces":[{"mac":"56:83:f9:87:d3:dc","name":"cni-podman1"},
            {"mac":"52:8a:dc:86:6f:af","name":"vethcc29e074"},{"mac":"b6:72:20:1a:38:b4","name":"eth0","sandbox":"/run/netns/x"}],
            "ips":[{"address":"10.231.1.2/24","gateway":"10.231.1.1","interface":2,"version":"4"}],"routes":[{"dst":"0.0.0.0/0"}]},
            "runtimeConfig":{"aliases":{"br1":["367b353c50a0"]}},"type":"dnsname"})
    }

    #[test]
    fn podman_input_gives_name_short_id_and_gateway() {
        let a = args(podman(), "IgnoreUnknown=1;K8S_POD_NAME=c1");
        assert_eq!(DnsConf::parse(&a.conf).unwrap().domain, "dns.podman");
        assert_eq!(common::dns_names::of(&a), vec!["c1", "367b353c50a0"]);
        let prev = a.conf.prev_result.as_ref().unwrap();
        assert_eq!(container_ips(prev, "eth0"), vec!["10.231.1.2/24".parse().unwrap()]);
        assert_eq!(gateways(prev, "eth0").unwrap(), vec!["10.231.1.1".parse::<IpAddr>().unwrap()]);
        let r = result(prev, &gateways(prev, "eth0").unwrap(), "dns.podman");
        assert_eq!(r.dns.nameservers, vec!["10.231.1.1"]);
        assert_eq!(r.dns.domain, "dns.podman");
        assert_eq!(r.dns.search, vec!["dns.podman"]);
        assert_eq!(r.ips, prev.ips);
        assert_eq!(r.interfaces, prev.interfaces);
    }

    #[test]
    fn domain_is_validated() {
        let mut c = podman();
        c["domainName"] = json!("Example.Test.");
        assert_eq!(DnsConf::parse(&args(c.clone(), "").conf).unwrap().domain, "example.test");
        c["domainName"] = json!("bad domain");
        assert_eq!(DnsConf::parse(&args(c.clone(), "").conf).unwrap_err().code, 7);
        c.as_object_mut().unwrap().remove("domainName");
        assert_eq!(DnsConf::parse(&args(c, "").conf).unwrap().domain, DEFAULT_DOMAIN);
    }

    #[test]
    fn search_keeps_existing_entries_after_ours() {
        let mut prev = CniResult::default();
        prev.dns.search = vec!["corp.example".into(), "DNS.podman.".into()];
        prev.dns.nameservers = vec!["192.0.2.53".into()];
        let r = result(&prev, &["10.0.0.1".parse().unwrap(), "fd00::1".parse().unwrap()], "dns.podman");
        assert_eq!(r.dns.search, vec!["dns.podman", "corp.example"]);
        assert_eq!(r.dns.nameservers, vec!["10.0.0.1", "fd00::1"]);
    }

    #[test]
    fn dual_stack_gateways_and_ips_of_the_sandbox_interface() {
        let mut c = podman();
        c["cniVersion"] = json!("1.0.0");
        c["prevResult"] = json!({"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":"/x"},{"name":"net1","sandbox":"/x"}],
            "ips":[{"address":"10.1.0.2/24","gateway":"10.1.0.1","interface":1},
                   {"address":"fd00:1::2/64","gateway":"fd00:1::1","interface":1},
                   {"address":"10.9.0.2/24","gateway":"10.9.0.1","interface":2}]});
        let a = args(c, "");
        let prev = a.conf.prev_result.as_ref().unwrap();
        assert_eq!(container_ips(prev, "eth0").len(), 2);
        let g = gateways(prev, "eth0").unwrap();
        assert_eq!(g, vec!["10.1.0.1".parse::<IpAddr>().unwrap(), "fd00:1::1".parse().unwrap()]);
    }

    #[test]
    fn no_gateway_and_no_bridge_is_a_config_error() {
        let mut c = podman();
        c["prevResult"] = json!({"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.1.0.2/24"}]});
        let a = args(c, "");
        assert_eq!(gateways(a.conf.prev_result.as_ref().unwrap(), "eth0").unwrap_err().code, 7);
    }

    #[test]
    fn bridge_addresses_are_read_from_the_kernel() {
        // "lo" always exists; its 127.0.0.1 is global scope for this purpose.
        let addrs = interface_addrs("lo").unwrap();
        assert!(addrs.contains(&"127.0.0.1".parse().unwrap()), "{addrs:?}");
        assert!(interface_addrs("no-such-if0").is_err());
    }

    #[test]
    fn link_local_bridge_addresses_are_not_nameservers() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root for a netns");
            return;
        }
        let name = format!("cni-dnscfg-test-{}", std::process::id());
        let ip =
            |args: &[&str]| assert!(std::process::Command::new("ip").args(args).status().unwrap().success());
        ip(&["netns", "add", &name]);
        struct Gone<'a>(&'a str);
        impl Drop for Gone<'_> {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip").args(["netns", "del", self.0]).status();
            }
        }
        let _gone = Gone(&name);
        let n = |args: &str| {
            let mut v = vec!["-n", &name];
            v.extend(args.split_whitespace());
            ip(&v);
        };
        n("link add br0 type bridge");
        for a in ["10.9.0.1/24", "169.254.1.1/16", "fd00::1/64 nodad", "fe80::1/64 nodad"] {
            n(&format!("addr add {a} dev br0"));
        }
        let ns = common::netns::Netns::open(format!("/run/netns/{name}")).unwrap();
        let addrs = ns.run(|| interface_addrs("br0")).unwrap().unwrap();
        let want: Vec<IpAddr> = vec!["10.9.0.1".parse().unwrap(), "fd00::1".parse().unwrap()];
        assert_eq!(addrs, want);
    }
}
