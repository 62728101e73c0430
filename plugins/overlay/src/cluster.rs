//! The cluster's view of a network, in etcd. Key layout (`<prefix>` is
//! `etcd.prefix`, default `/cni-rs/overlay`):
//!
//! ```text
//! <prefix>/vni/<vni>                  "<network>"            one network per VNI (first agent claims it)
//! <prefix>/net/<network>/config       {"vni","subnet","gateway"}  what every node must agree on (first agent)
//! <prefix>/net/<network>/nodes/<node> {"vtep"}               a live node; under its agent's lease
//! <prefix>/net/<network>/ips/<ip>     {"node","containerID","ifname","mac","names"}
//!                                                            one key per address in use
//! ```
//!
//! An address is claimed by a transaction that succeeds only if its key does
//! not exist (create_revision == 0), so two ADDs anywhere in the cluster can
//! never both get it; it is released by a transaction that deletes it only
//! if it is still the claim we made (same create_revision), so a late retry
//! never frees somebody else's address. Address keys carry no lease: a node
//! that dies keeps its addresses until GC releases them (its own GC, or an
//! operator's GC naming it), because a partitioned node's containers may
//! still be running.
//!
//! Agents watch `<prefix>/net/<network>/` and program, for every address of
//! another *live* node (one with a `nodes/` key), its MAC → that node's VTEP.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};

use common::ipnet;
use common::{CniError, Result};
use serde::{Deserialize, Serialize};

use crate::config::{Config, Shared};
use crate::etcd::{Created, Etcd, EtcdResult, Kv};

/// Who holds an address.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct IpRecord {
    pub node: String,
    #[serde(rename = "containerID")]
    pub container_id: String,
    pub ifname: String,
    pub mac: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// A live node.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    pub vtep: IpAddr,
}

pub struct Keys {
    root: String,
    net: String,
}

impl Keys {
    pub fn new(conf: &Config) -> Keys {
        let root = conf.etcd.prefix.clone();
        Keys { net: format!("{root}/net/{}/", conf.network), root }
    }
    /// Everything of the network: what agents watch.
    pub fn network(&self) -> &str {
        &self.net
    }
    pub fn vni(&self, vni: u32) -> String {
        format!("{}/vni/{vni}", self.root)
    }
    pub fn config(&self) -> String {
        format!("{}config", self.net)
    }
    pub fn nodes(&self) -> String {
        format!("{}nodes/", self.net)
    }
    pub fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.net)
    }
    pub fn ips(&self) -> String {
        format!("{}ips/", self.net)
    }
    pub fn ip(&self, ip: IpAddr) -> String {
        format!("{}ips/{ip}", self.net)
    }
}

/// The network's state as one read (or a watch) shows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct View {
    pub nodes: BTreeMap<String, NodeRecord>,
    pub ips: BTreeMap<Ipv4Addr, IpRecord>,
}

impl View {
    /// Apply one key's new value (None: deleted). Keys outside nodes/ and
    /// ips/ and undecodable values are ignored.
    pub fn apply(&mut self, keys: &Keys, key: &str, value: Option<&[u8]>) {
        if let Some(node) = key.strip_prefix(&keys.nodes()) {
            match value.and_then(|v| serde_json::from_slice(v).ok()) {
                Some(rec) => {
                    self.nodes.insert(node.to_string(), rec);
                }
                None => {
                    self.nodes.remove(node);
                }
            }
        } else if let Some(ip) = key.strip_prefix(&keys.ips()).and_then(|s| s.parse().ok()) {
            match value.and_then(|v| serde_json::from_slice(v).ok()) {
                Some(rec) => {
                    self.ips.insert(ip, rec);
                }
                None => {
                    self.ips.remove(&ip);
                }
            }
        }
    }

    pub fn from_kvs(keys: &Keys, kvs: &[Kv]) -> View {
        let mut v = View::default();
        for kv in kvs {
            v.apply(keys, &kv.key, Some(&kv.value));
        }
        v
    }

    /// Containers of other live nodes: (ip, mac, vtep) — what the kernel must hold.
    pub fn remote_entries(&self, me: &str) -> BTreeSet<(Ipv4Addr, [u8; 6], IpAddr)> {
        self.ips
            .iter()
            .filter(|(_, r)| r.node != me)
            .filter_map(|(ip, r)| {
                let vtep = self.nodes.get(&r.node)?.vtep;
                let mac = common::netlink::rtnl::parse_mac(&r.mac)?;
                Some((*ip, mac, vtep))
            })
            .collect()
    }
}

/// Make sure the network's shared settings and VNI are ours (first node
/// writes them); a node configured differently is refused (code 7).
pub fn claim_network(etcd: &Etcd, conf: &Config) -> Result<()> {
    let keys = Keys::new(conf);
    let fail = |e: crate::etcd::EtcdError| e.cni("registering the network in etcd");
    let want = serde_json::to_vec(&conf.shared()).expect("serializable");
    if let Created::Exists(kv) = etcd.create(&keys.config(), &want, 0).map_err(fail)? {
        let theirs: Option<Shared> = serde_json::from_slice(&kv.value).ok();
        if theirs.as_ref() != Some(&conf.shared()) {
            return Err(CniError::invalid_config(format!(
                "overlay: network {} is registered in etcd with {}; this node's config says {}",
                conf.network,
                String::from_utf8_lossy(&kv.value),
                String::from_utf8_lossy(&want)
            )));
        }
    }
    if let Created::Exists(kv) = etcd.create(&keys.vni(conf.vni), conf.network.as_bytes(), 0).map_err(fail)? {
        if kv.value != conf.network.as_bytes() {
            return Err(CniError::invalid_config(format!(
                "overlay: VNI {} is already used by network {:?}",
                conf.vni,
                String::from_utf8_lossy(&kv.value)
            )));
        }
    }
    Ok(())
}

/// A claimed address: the key's create_revision proves the claim is ours.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub ip: Ipv4Addr,
    pub revision: i64,
}

/// Claim a free address of the node's range for `rec`. Candidates start at
/// a random place, so concurrent ADDs across the cluster rarely race for
/// the same key; a lost race just moves on to the next free one.
pub fn claim_address(etcd: &Etcd, conf: &Config, rec: &IpRecord) -> Result<Claim> {
    let keys = Keys::new(conf);
    let fail = |e: crate::etcd::EtcdError| e.cni("claiming an address in etcd");
    let (start, end) = (v4_bits(conf.range_start), v4_bits(conf.range_end));
    let size = (end - start + 1) as u64;
    let mut taken = used_addresses(etcd, &keys).map_err(fail)?;
    taken.insert(ipv4(conf.gateway));
    let mut r = [0u8; 8];
    common::random_bytes(&mut r);
    let mut at = u64::from_ne_bytes(r) % size;
    for _attempt in 0..64 {
        let Some(ip) = (0..size)
            .map(|i| Ipv4Addr::from(start + ((at + i) % size) as u32))
            .find(|ip| !taken.contains(ip))
        else {
            return Err(CniError::internal(format!(
                "overlay: no free address left in {}-{} of network {}",
                conf.range_start, conf.range_end, conf.network
            )));
        };
        let mut rec = rec.clone();
        if rec.mac.is_empty() {
            rec.mac = common::netlink::rtnl::format_mac(&crate::config::mac_for(ip));
        }
        let value = serde_json::to_vec(&rec).expect("serializable");
        match etcd.create(&keys.ip(IpAddr::V4(ip)), &value, 0).map_err(fail)? {
            Created::Done(revision) => return Ok(Claim { ip, revision }),
            Created::Exists(_) => {
                taken.insert(ip);
                at = (u32::from(ip) - start) as u64 + 1;
            }
        }
    }
    Err(CniError::try_again("overlay: too many concurrent claims for the same addresses; try again"))
}

fn used_addresses(etcd: &Etcd, keys: &Keys) -> EtcdResult<BTreeSet<Ipv4Addr>> {
    let (_, kvs) = etcd.range_prefix(&keys.ips(), true)?;
    Ok(kvs.iter().filter_map(|kv| kv.key.strip_prefix(&keys.ips())?.parse().ok()).collect())
}

/// Release a claim we made; true if it was still ours and is gone now,
/// false if it was already gone (or somebody else's). A claim whose
/// revision we do not know (revision 0: the node lost its state) is
/// released only if the record still names the container.
pub fn release(
    etcd: &Etcd,
    keys: &Keys,
    claim: &Claim,
    container_id: &str,
    ifname: &str,
) -> EtcdResult<bool> {
    let key = keys.ip(IpAddr::V4(claim.ip));
    if claim.revision != 0 {
        return etcd.delete_if(&key, "CREATE", claim.revision);
    }
    let Some(kv) = etcd.get(&key)? else { return Ok(false) };
    match serde_json::from_slice::<IpRecord>(&kv.value) {
        Ok(r) if r.container_id == container_id && r.ifname == ifname => {
            etcd.delete_if(&key, "MOD", kv.mod_revision)
        }
        _ => Ok(false),
    }
}

/// Every address claim of `node` (for GC), with the revision proving it.
pub fn claims_of(etcd: &Etcd, keys: &Keys, node: &str) -> EtcdResult<Vec<(Claim, IpRecord)>> {
    let (_, kvs) = etcd.range_prefix(&keys.ips(), false)?;
    Ok(kvs
        .iter()
        .filter_map(|kv| {
            let ip = kv.key.strip_prefix(&keys.ips())?.parse().ok()?;
            let rec: IpRecord = serde_json::from_slice(&kv.value).ok()?;
            (rec.node == node).then_some((Claim { ip, revision: kv.create_revision }, rec))
        })
        .collect())
}

fn ipv4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

fn v4_bits(ip: IpAddr) -> u32 {
    ipnet::to_bits(&ip) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf() -> Config {
        let raw = serde_json::json!({"cniVersion":"1.0.0","name":"app","type":"overlay","vni":7,"subnet":"10.90.0.0/24",
            "etcd":{"endpoints":["http://192.0.2.1:2379"]}});
        let nc = common::spec::NetConf::parse(raw.to_string().as_bytes()).unwrap();
        let args = common::skel::CmdArgs {
            command: common::skel::Command::Add,
            container_id: "c".into(),
            netns: String::new(),
            ifname: "eth0".into(),
            args: Default::default(),
            path: vec![],
            stdin: vec![],
            conf: nc,
            env: vec![],
        };
        Config::load(&args).unwrap()
    }

    #[test]
    fn layout_and_view_of_remote_entries() {
        let k = Keys::new(&conf());
        assert_eq!(k.network(), "/cni-rs/overlay/net/app/");
        assert_eq!(k.ip("10.90.0.5".parse().unwrap()), "/cni-rs/overlay/net/app/ips/10.90.0.5");
        assert_eq!(k.node("n1"), "/cni-rs/overlay/net/app/nodes/n1");
        assert_eq!(k.vni(7), "/cni-rs/overlay/vni/7");
        let mut v = View::default();
        let rec = |node: &str, mac: &str| {
            serde_json::to_vec(&IpRecord {
                node: node.into(),
                container_id: "c".into(),
                ifname: "eth0".into(),
                mac: mac.into(),
                names: vec![],
            })
            .unwrap()
        };
        v.apply(&k, &k.node("a"), Some(br#"{"vtep":"192.0.2.1"}"#));
        v.apply(&k, &k.node("b"), Some(br#"{"vtep":"192.0.2.2"}"#));
        v.apply(&k, &k.ip("10.90.0.2".parse().unwrap()), Some(&rec("a", "02:42:0a:5a:00:02")));
        v.apply(&k, &k.ip("10.90.0.3".parse().unwrap()), Some(&rec("b", "02:42:0a:5a:00:03")));
        v.apply(&k, &k.ip("10.90.0.4".parse().unwrap()), Some(&rec("gone", "02:42:0a:5a:00:04")));
        v.apply(&k, &k.config(), Some(b"{}"));
        let e = v.remote_entries("a");
        assert_eq!(
            e.into_iter().collect::<Vec<_>>(),
            vec![("10.90.0.3".parse().unwrap(), [2, 0x42, 10, 90, 0, 3], "192.0.2.2".parse().unwrap())]
        );
        v.apply(&k, &k.node("b"), None);
        assert!(v.remote_entries("a").is_empty(), "a dead node's containers are dropped");
        assert_eq!(v.ips.len(), 3, "its addresses stay claimed");
    }
}
