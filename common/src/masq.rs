//! Masquerade of container traffic leaving its subnet (`ipMasq` of bridge,
//! ptp …), in a table of the plugin's own:
//!
//! ```text
//! table inet cnirs_bridge {
//!   set m4_<net> { type ipv4_addr }      # container IPs, comment "<net>/<cid>/<ifname>"
//!   set m6_<net> { type ipv6_addr }
//!   chain postrouting { type nat hook postrouting priority srcnat
//!     # one rule per (network, subnet), comment "<net> <subnet>":
//!     ip saddr @m4_<net> ip saddr 10.88.0.0/16 ip daddr != 10.88.0.0/16 ip daddr != 224.0.0.0/4 masquerade
//!   }
//! }
//! ```
//! Adding a container adds one set element; the rule count depends on the
//! number of networks, not containers, so ADD and the packet path stay flat.
//! `<net>` is the network's bounded part and the comments are tags
//! (`common::nft::tag`): found again by recomputing them, whatever the name's length.
//! Every function acts through [`Nftables`], so plugins unit-test their
//! masquerade decisions against the fake kernel.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::ipnet::IpNet;
use crate::nft::expr::{self, Addr, CmpOp};
use crate::nft::tag::{self, Legacy, Owner};
use crate::nft::{BaseChain, Batch, DataType, Elem, Family, Hook, Nftables, Rule, SetSpec, Table};
use crate::spec::Attachment;
use crate::{CniError, Result};

const CHAIN: &str = "postrouting";

/// The masquerade of one plugin: its table, and the runtime lock that
/// serializes changes to it.
pub struct Masquerade {
    table: &'static str,
}

impl Masquerade {
    /// Masquerade kept in `table inet <table>`.
    pub const fn new(table: &'static str) -> Masquerade {
        Masquerade { table }
    }

    fn table(&self) -> Table {
        Table::new(Family::Inet, self.table)
    }

    fn lock(&self, nft: &mut impl Nftables) -> Result<Option<crate::lock::FileLock>> {
        nft.lock(&format!("nft-{}", self.table))
    }

    /// Masquerade traffic from `ips` leaving their subnets.
    pub fn add(
        &self,
        nft: &mut impl Nftables,
        network: &str,
        container_id: &str,
        ifname: &str,
        ips: &[IpNet],
    ) -> Result<()> {
        // The caller's socket outlives the lock, so the lock is released
        // first: closing the socket may wait for the kernel, and parallel
        // ADDs must not queue on that.
        let _lock = self.lock(nft)?;
        let t = self.table();
        let present = nft.present(&t)?;
        let existing: BTreeSet<String> = match nft.list_rules(&t, CHAIN) {
            Ok(rules) => rules.into_iter().filter_map(|r| r.comment).collect(),
            Err(e) if e.not_found() => BTreeSet::new(),
            Err(e) => return Err(e.into()),
        };
        let mut b = Batch::new();
        if !present.table {
            b.add_table(&t);
        }
        if !present.chain(CHAIN) {
            b.add_chain(&t, CHAIN, Some(BaseChain::nat(Hook::Postrouting, 100)));
        }
        for v6 in [false, true] {
            let mine: Vec<&IpNet> = ips.iter().filter(|ip| ip.is_ipv4() != v6).collect();
            if mine.is_empty() {
                continue;
            }
            let kind = if v6 { DataType::IPV6_ADDR } else { DataType::IPV4_ADDR };
            let set = set_name(network, v6);
            if !present.set(&set) {
                b.add_set(&t, &SetSpec::set(&set, &[kind]));
            }
            let elems: Vec<Elem> = mine
                .iter()
                .map(|ip| {
                    Elem::new(crate::nft::key::ip(ip.addr)).comment(tag::of(network, container_id, ifname))
                })
                .collect();
            b.add_elements(&t, &set, &elems);
            for ip in mine {
                if !existing.contains(&rule_comment(network, ip)) {
                    b.add_rule(&t, CHAIN, &masq_rule(network, ip));
                }
            }
        }
        nft.commit(&b).map_err(|e| CniError::internal(format!("setting up masquerade: {e}")))
    }

    /// Remove this attachment's addresses; a network's rules and sets go with
    /// its last container, and the table with the last network.
    pub fn del(
        &self,
        nft: &mut impl Nftables,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<()> {
        self.prune(nft, network, |o| o.is_some_and(|o| o.is(container_id, ifname)))
    }

    /// Remove addresses of attachments that are not in `valid`.
    pub fn gc(&self, nft: &mut impl Nftables, network: &str, valid: &[Attachment]) -> Result<()> {
        self.prune(nft, network, |o| {
            o.is_none_or(|o| !valid.iter().any(|a| o.is(&a.container_id, &a.ifname)))
        })
    }

    fn prune(
        &self,
        nft: &mut impl Nftables,
        network: &str,
        doomed: impl Fn(Option<&Owner>) -> bool,
    ) -> Result<()> {
        let t = self.table();
        if !nft.table_exists(&t)? {
            return Ok(()); // nothing was ever masqueraded here
        }
        let _lock = self.lock(nft)?;
        let mut remaining = 0;
        for set in all_set_names(network) {
            remaining += tag::delete_where(nft, &t, &set, Legacy::Attachment, &doomed)?.1;
        }
        if remaining == 0 {
            remove_network(nft, &t, network)?;
        }
        Ok(())
    }

    /// Every address of the attachment is masqueraded (CHECK).
    pub fn check(
        &self,
        nft: &mut impl Nftables,
        network: &str,
        container_id: &str,
        ifname: &str,
        ips: &[IpNet],
    ) -> Result<()> {
        let t = self.table();
        let rules: BTreeSet<String> = nft
            .list_rules(&t, CHAIN)
            .map_err(|e| CniError::internal(format!("masquerade state is missing: {e}")))?
            .into_iter()
            .filter_map(|r| r.comment)
            .collect();
        let mine = |c: &str| Owner::parse(c, Legacy::Attachment).is_some_and(|o| o.is(container_id, ifname));
        for ip in ips {
            let set = set_name(network, !ip.is_ipv4());
            let elems = nft
                .list_elements(&t, &set)
                .map_err(|e| CniError::internal(format!("masquerade set is missing: {e}")))?;
            let key = crate::nft::key::ip(ip.addr);
            if !elems.iter().any(|e| e.key == key && e.comment.as_deref().is_some_and(mine)) {
                return Err(CniError::internal(format!("{} is not masqueraded", ip.addr)));
            }
            if !rules.contains(&rule_comment(network, ip)) {
                return Err(CniError::internal(format!(
                    "the masquerade rule for {} is missing",
                    ip.network()
                )));
            }
        }
        Ok(())
    }
}

fn set_prefix(v6: bool) -> &'static str {
    if v6 {
        "m6_"
    } else {
        "m4_"
    }
}

fn set_name(network: &str, v6: bool) -> String {
    tag::set_name(set_prefix(v6), network)
}

fn rule_comment(network: &str, subnet: &IpNet) -> String {
    tag::rule_comment(network, &subnet.network().to_string())
}

fn masq_rule(network: &str, subnet: &IpNet) -> Rule {
    let v6 = !subnet.is_ipv4();
    let net = subnet.network();
    let multicast: (IpAddr, u8) =
        if v6 { ("ff00::".parse().unwrap(), 8) } else { ("224.0.0.0".parse().unwrap(), 4) };
    Rule::new(
        [
            expr::nfproto(v6),
            expr::addr_in_set(Addr::Src, v6, &set_name(network, v6), false),
            expr::addr_in_prefix(Addr::Src, net.addr, net.prefix, CmpOp::Eq),
            expr::addr_in_prefix(Addr::Dst, net.addr, net.prefix, CmpOp::Neq),
            expr::addr_in_prefix(Addr::Dst, multicast.0, multicast.1, CmpOp::Neq),
            expr::masquerade(0),
        ]
        .concat(),
    )
    .comment(rule_comment(network, subnet))
}

/// The network's sets under every name they may have (see `tag::set_names`).
fn all_set_names(network: &str) -> Vec<String> {
    [false, true].into_iter().flat_map(|v6| tag::set_names(set_prefix(v6), network)).collect()
}

fn remove_network(nft: &mut impl Nftables, t: &Table, network: &str) -> Result<()> {
    let rules = match nft.list_rules(t, CHAIN) {
        Ok(r) => r,
        Err(e) if e.not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (theirs, others): (Vec<_>, Vec<_>) =
        rules.into_iter().partition(|r| r.comment.as_deref().is_some_and(|c| tag::rule_of(c, network)));
    let mine = all_set_names(network);
    let (my_sets, other_sets): (Vec<_>, Vec<_>) =
        nft.list_sets(t)?.into_iter().partition(|s| mine.contains(&s.name));
    let mut b = Batch::new();
    if others.is_empty() && other_sets.is_empty() {
        b.destroy_table(t);
    } else {
        for r in theirs {
            b.delete_rule(t, CHAIN, r.handle);
        }
        for s in my_sets {
            b.delete_set(t, &s.name);
        }
    }
    nft.commit(&b).map_err(|e| CniError::internal(format!("removing masquerade of {network}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake::FakeKernel;
    use crate::net::NetStack;

    const M: Masquerade = Masquerade::new("cnirs_test");

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn lines(k: &FakeKernel, what: &str) -> usize {
        k.state().lines().filter(|l| l.contains(what)).count()
    }

    #[test]
    fn one_rule_per_subnet_and_the_table_goes_with_the_last_network() {
        let k = FakeKernel::new();
        let mut nft = k.host().nft().unwrap();
        let before = k.state();
        M.add(&mut nft, "a", "c1", "eth0", &[net("10.1.0.2/24"), net("fd01::2/64")]).unwrap();
        M.add(&mut nft, "a", "c2", "eth0", &[net("10.1.0.3/24")]).unwrap();
        M.add(&mut nft, "b", "c3", "eth0", &[net("10.2.0.2/24")]).unwrap();
        assert_eq!(lines(&k, "nft rule"), 3, "{}", k.state());
        assert_eq!(lines(&k, "nft element"), 4);
        M.check(&mut nft, "a", "c1", "eth0", &[net("10.1.0.2/24"), net("fd01::2/64")]).unwrap();

        M.del(&mut nft, "a", "c1", "eth0").unwrap();
        assert!(M.check(&mut nft, "a", "c1", "eth0", &[net("10.1.0.2/24")]).is_err());
        M.check(&mut nft, "a", "c2", "eth0", &[net("10.1.0.3/24")]).unwrap();
        M.del(&mut nft, "a", "c2", "eth0").unwrap();
        assert_eq!(lines(&k, "nft rule"), 1, "network a's rules went with its last container");
        assert!(!k.state().contains("_a"), "and its sets: {}", k.state());
        M.del(&mut nft, "b", "c3", "eth0").unwrap();
        assert_eq!(k.state(), before, "the table went with the last network");
        M.del(&mut nft, "b", "c3", "eth0").unwrap();
    }

    #[test]
    fn gc_keeps_the_valid_attachments_only() {
        let k = FakeKernel::new();
        let mut nft = k.host().nft().unwrap();
        for c in ["c1", "c2", "c3"] {
            M.add(&mut nft, "a", c, "eth0", &[net(&format!("10.1.0.{}/24", &c[1..]))]).unwrap();
        }
        let valid = [Attachment { container_id: "c2".into(), ifname: "eth0".into() }];
        M.gc(&mut nft, "a", &valid).unwrap();
        let elems =
            k.state().lines().filter(|l| l.contains("nft element")).map(String::from).collect::<Vec<_>>();
        assert_eq!(elems.len(), 1, "{elems:?}");
        assert!(elems[0].contains("0a010002"), "{elems:?}");
    }

    #[test]
    fn a_refused_batch_leaves_nothing_and_the_lock_is_taken_first() {
        let k = FakeKernel::new();
        let mut nft = k.host().nft().unwrap();
        let before = k.state();
        k.fail_on("nft_commit", libc::ENOBUFS);
        let e = M.add(&mut nft, "a", "c1", "eth0", &[net("10.1.0.2/24")]).unwrap_err();
        assert!(e.msg.starts_with("setting up masquerade"), "{e}");
        assert_eq!(k.state(), before);
        let ops: Vec<String> =
            k.calls().iter().map(|c| c.split_whitespace().nth(1).unwrap().to_string()).collect();
        assert_eq!(ops.iter().position(|o| o == "nft_lock"), Some(1), "{ops:?}");
    }
}
