//! Netfilter state of the overlay on one node, per network (nf_tables):
//!
//! ```text
//! table inet cnirs_overlay {
//!   chain postrouting { type nat hook postrouting priority srcnat
//!     ip saddr 10.90.0.0/16 ip daddr != 10.90.0.0/16 ip daddr != 224.0.0.0/4 masquerade   # "<net> masq"
//!   }
//!   chain forward { type filter hook forward priority filter
//!     oifname "ovbr4242" iifname != "ovbr4242" ct state established,related accept        # "<net> in"
//!     oifname "ovbr4242" iifname != "ovbr4242" ct status dnat accept                     # "<net> in"
//!     oifname "ovbr4242" iifname != "ovbr4242" drop                                      # "<net> in"
//!   }
//! }
//! ```
//! Outbound: containers reach the world through their node's gateway,
//! masqueraded to the node's address. Inbound: an overlay network is
//! private, as Docker's is — nothing routed from outside it (another overlay,
//! a bridge network, the underlay) reaches its containers, except replies
//! and published ports (portmap's DNAT). Traffic inside the network is
//! switched, never routed, so these rules never see it. The rules depend on
//! the number of networks, not containers: they come with the network's
//! first container on the node and go with its last.

use common::nft::expr::{self, Addr, CmpOp, Verdict};
use common::nft::{tag, BaseChain, Batch, Family, Hook, Nft, Rule, Table};
use common::{CniError, Result};

use crate::config::Config;

fn table() -> Table {
    Table::new(Family::Inet, "cnirs_overlay")
}

fn lock() -> Result<common::lock::FileLock> {
    common::lock::runtime_lock("nft-cnirs_overlay")
}

fn masq_rule(conf: &Config) -> Rule {
    let net = conf.subnet;
    Rule::new(
        [
            expr::nfproto(false),
            expr::addr_in_prefix(Addr::Src, net.addr, net.prefix, CmpOp::Eq),
            expr::addr_in_prefix(Addr::Dst, net.addr, net.prefix, CmpOp::Neq),
            expr::addr_in_prefix(Addr::Dst, "224.0.0.0".parse().unwrap(), 4, CmpOp::Neq),
            expr::masquerade(0),
        ]
        .concat(),
    )
    .comment(masq_rule_comment(&conf.network))
}

/// Rule comments carry the network's bounded tag part (common::nft::tag), so
/// any name fits what nf_tables keeps and is matched whole.
fn masq_rule_comment(network: &str) -> String {
    tag::rule_comment(network, "masq")
}

fn inbound_comment(network: &str) -> String {
    tag::rule_comment(network, "in")
}

fn inbound_rules(conf: &Config) -> Vec<Rule> {
    let br = conf.bridge();
    let routed_in = || [expr::ifname(false, &br, CmpOp::Eq), expr::ifname(true, &br, CmpOp::Neq)].concat();
    let comment = inbound_comment(&conf.network);
    vec![
        Rule::new(
            [
                routed_in(),
                expr::ct_state(expr::CT_STATE_ESTABLISHED | expr::CT_STATE_RELATED),
                expr::verdict(Verdict::Accept),
            ]
            .concat(),
        )
        .comment(comment.clone()),
        Rule::new(
            [routed_in(), expr::ct_status(expr::CT_STATUS_DST_NAT), expr::verdict(Verdict::Accept)].concat(),
        )
        .comment(comment.clone()),
        Rule::new([routed_in(), expr::verdict(Verdict::Drop)].concat()).comment(comment),
    ]
}

fn is_ours(comment: &Option<String>, network: &str) -> bool {
    comment.as_deref().is_some_and(|c| tag::rule_of(c, network))
}

/// Install the network's rules unless present.
pub fn ensure(conf: &Config) -> Result<()> {
    let mut nft = Nft::open()?;
    let _lock = lock()?;
    let t = table();
    let present = nft.present(&t)?;
    let mut b = Batch::new();
    if !present.table {
        b.add_table(&t);
    }
    let chains = [
        ("postrouting", BaseChain::nat(Hook::Postrouting, 100)),
        ("forward", BaseChain::filter(Hook::Forward, 0)),
    ];
    for (chain, base) in chains {
        if !present.chain(chain) {
            b.add_chain(&t, chain, Some(base));
        }
        let have = if present.chain(chain) { nft.list_rules(&t, chain)? } else { Vec::new() };
        if have.iter().any(|r| is_ours(&r.comment, &conf.network)) {
            continue;
        }
        let rules = match chain {
            "postrouting" if conf.ip_masq => vec![masq_rule(conf)],
            "postrouting" => vec![],
            _ => inbound_rules(conf),
        };
        for r in &rules {
            b.add_rule(&t, chain, r);
        }
    }
    nft.commit(&b).map_err(|e| CniError::internal(format!("setting up the overlay's nf_tables rules: {e}")))
}

/// Remove the network's rules; the table goes with the last network.
pub fn remove(network: &str) -> Result<()> {
    let t = table();
    let mut nft = Nft::open()?;
    if !nft.table_exists(&t)? {
        return Ok(());
    }
    let _lock = lock()?;
    let mut b = Batch::new();
    let mut others = 0;
    for chain in ["postrouting", "forward"] {
        let rules = match nft.list_rules(&t, chain) {
            Ok(r) => r,
            Err(e) if e.not_found() => continue,
            Err(e) => return Err(e.into()),
        };
        for r in rules {
            if is_ours(&r.comment, network) {
                b.delete_rule(&t, chain, r.handle);
            } else {
                others += 1;
            }
        }
    }
    if others == 0 {
        b = Batch::new();
        b.destroy_table(&t);
    }
    nft.commit(&b).map_err(|e| CniError::internal(format!("removing the overlay's nf_tables rules: {e}")))
}

/// The network's rules are in place (CHECK).
pub fn check(conf: &Config) -> Result<()> {
    let t = table();
    let mut nft = Nft::open()?;
    for chain in ["forward", "postrouting"] {
        if chain == "postrouting" && !conf.ip_masq {
            continue;
        }
        let rules = nft
            .list_rules(&t, chain)
            .map_err(|e| CniError::internal(format!("the overlay's {chain} rules are missing: {e}")))?;
        if !rules.iter().any(|r| is_ours(&r.comment, &conf.network)) {
            return Err(CniError::internal(format!(
                "the {chain} rules of network {} are missing",
                conf.network
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_name_the_network_exactly() {
        assert!(is_ours(&Some("app masq".into()), "app"));
        assert!(is_ours(&Some("my app in".into()), "my app"));
        assert!(!is_ours(&Some("app2 in".into()), "app"));
        assert!(!is_ours(&None, "app"));
    }

    #[test]
    fn long_network_names_give_bounded_comments_that_still_match() {
        // nf_tables keeps 128 bytes of a comment: two long names sharing
        // their first 128 bytes must still be told apart.
        let a = format!("{}a", "n".repeat(200));
        let b = format!("{}b", "n".repeat(200));
        for rule in [masq_rule_comment(&a), inbound_comment(&a)] {
            assert!(rule.len() < 128, "{rule}");
            assert!(is_ours(&Some(rule.clone()), &a));
            assert!(!is_ours(&Some(rule), &b));
        }
    }
}
