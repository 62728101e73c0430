//! MAC spoof check: frames entering the bridge from a container's port must
//! carry the container's MAC.
//!
//! ```text
//! table bridge cnirs_bridge_mac {
//!   map ports { type ifname : verdict }   # "<host veth>" : jump mac_<host veth>, comment "<net>/<cid>/<ifname>"
//!   chain prerouting { type filter hook prerouting priority -300; iifname vmap @ports }
//!   chain mac_<host veth> { ether saddr != <container mac> drop }
//! }
//! ```
//! A packet costs one map lookup and one comparison whatever the number of ports.
//! The comment is the attachment's tag (`common::nft::tag`); the chain name is
//! bounded by the veth's (IFNAMSIZ) and unique with it.

use std::collections::HashSet;

use common::net::NetStack;
use common::nft::expr::{self, CmpOp, Verdict};
use common::nft::tag::{self, Legacy, Owner};
use common::nft::{
    key, BaseChain, Batch, DataType, Elem, ElemData, Family, Hook, Nftables, Rule, SetSpec, Table,
};
use common::spec::Attachment;
use common::{CniError, Result};

const MAP: &str = "ports";
const CHAIN: &str = "prerouting";

fn table() -> Table {
    Table::new(Family::Bridge, "cnirs_bridge_mac")
}

fn port_chain(host_veth: &str) -> String {
    format!("mac_{host_veth}")
}

fn lock(nft: &mut impl Nftables) -> Result<Option<common::lock::FileLock>> {
    nft.lock("nft-cnirs_bridge_mac")
}

pub fn add(
    nft: &mut impl Nftables,
    network: &str,
    container_id: &str,
    ifname: &str,
    host_veth: &str,
    mac: [u8; 6],
) -> Result<()> {
    // The lock goes before the caller's socket closes (see common::masq).
    let _lock = lock(nft)?;
    let t = table();
    let present = nft.present(&t)?;
    let chain = port_chain(host_veth);
    let mut b = Batch::new();
    if !present.table {
        b.add_table(&t);
    }
    if !present.set(MAP) {
        b.add_set(&t, &SetSpec::vmap(MAP, &[DataType::IFNAME]));
    }
    if !present.chain(CHAIN) {
        b.add_chain(&t, CHAIN, Some(BaseChain::filter(Hook::Prerouting, -300)));
        b.add_rule(&t, CHAIN, &Rule::new(expr::iifname_vmap(MAP)));
    }
    // The host veth name is fresh, so is its chain; a stale one left by a
    // crash is emptied first.
    b.add_chain(&t, &chain, None);
    if present.chain(&chain) {
        b.flush_chain(&t, &chain);
    }
    b.add_rule(
        &t,
        &chain,
        &Rule::new([expr::ether_saddr(mac, CmpOp::Neq), expr::verdict(Verdict::Drop)].concat()),
    );
    let elem = Elem::new(key::ifname(host_veth)).verdict(Verdict::Jump(chain)).comment(tag::of(
        network,
        container_id,
        ifname,
    ));
    b.add_elements(&t, MAP, &[elem]);
    nft.commit(&b).map_err(|e| CniError::internal(format!("setting up the MAC spoof check: {e}")))
}

fn owner(e: &Elem) -> Option<Owner> {
    Owner::parse(e.comment.as_deref()?, Legacy::NetworkFirst)
}

fn is(o: &Owner, network: &str, container_id: &str, ifname: &str) -> bool {
    o.in_network(network) && o.is(container_id, ifname)
}

/// Remove this attachment's check; `host` lists the ports (see `prune`).
pub fn del(host: &mut impl NetStack, network: &str, container_id: &str, ifname: &str) -> Result<()> {
    prune(host, |o| is(o, network, container_id, ifname))
}

pub fn gc(host: &mut impl NetStack, network: &str, valid: &[Attachment]) -> Result<()> {
    prune(host, |o| o.in_network(network) && !valid.iter().any(|a| o.is(&a.container_id, &a.ifname)))
}

/// Remove the map elements whose owner is doomed, those that name no owner
/// (an earlier version's tag cut at 128 bytes) once their port is gone, and
/// every port chain no remaining element jumps to (theirs, and any orphaned
/// by a lost element); the table goes with the last port.
fn prune(host: &mut impl NetStack, doomed: impl Fn(&Owner) -> bool) -> Result<()> {
    let t = table();
    let mut nft = host.nft()?;
    if !nft.table_exists(&t)? {
        return Ok(());
    }
    let _lock = lock(&mut nft)?;
    let elems = match nft.list_elements(&t, MAP) {
        Ok(e) => e,
        Err(e) if e.not_found() => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let ports: HashSet<Vec<u8>> = if elems.iter().any(|e| owner(e).is_none()) {
        let links = host.links().map_err(|e| CniError::internal(format!("listing links: {e}")))?;
        links.iter().map(|l| key::ifname(&l.name)).collect()
    } else {
        HashSet::new()
    };
    let (gone, kept): (Vec<Elem>, Vec<Elem>) = elems.into_iter().partition(|e| match owner(e) {
        Some(o) => doomed(&o),
        None => !ports.contains(&e.key),
    });
    let jumped_to = |e: &Elem| match &e.data {
        Some(ElemData::Verdict(Verdict::Jump(chain))) => Some(chain.clone()),
        _ => None,
    };
    let live: std::collections::HashSet<String> = kept.iter().filter_map(jumped_to).collect();
    // Port chains are added with their element in one batch, so a chain that no
    // element references is garbage (e.g. its element was deleted by hand).
    let unused: Vec<String> = nft
        .list_chains(&t)?
        .into_iter()
        .map(|c| c.name)
        .filter(|c| c.starts_with("mac_") && !live.contains(c))
        .collect();
    if gone.is_empty() && unused.is_empty() {
        return Ok(());
    }
    let mut b = Batch::new();
    if kept.is_empty() {
        b.destroy_table(&t);
    } else {
        let keys: Vec<Vec<u8>> = gone.iter().map(|e| e.key.clone()).collect();
        if !keys.is_empty() {
            b.destroy_elements(&t, MAP, &keys);
        }
        for chain in &unused {
            b.flush_chain(&t, chain).delete_chain(&t, chain);
        }
    }
    nft.commit(&b).map_err(|e| CniError::internal(format!("removing the MAC spoof check: {e}")))
}

pub fn check(nft: &mut impl Nftables, network: &str, container_id: &str, ifname: &str) -> Result<()> {
    let elems = nft
        .list_elements(&table(), MAP)
        .map_err(|e| CniError::internal(format!("MAC spoof check state is missing: {e}")))?;
    let elem = elems
        .iter()
        .find(|e| owner(e).is_some_and(|o| is(&o, network, container_id, ifname)))
        .ok_or_else(|| CniError::internal(format!("no MAC spoof check for {ifname} of {container_id}")))?;
    if let Some(ElemData::Verdict(Verdict::Jump(chain))) = &elem.data {
        if nft.list_rules(&table(), chain).map(|r| r.is_empty()).unwrap_or(true) {
            return Err(CniError::internal(format!("MAC spoof check chain {chain} is empty or missing")));
        }
    }
    Ok(())
}
