//! Choosing addresses: one per range set, requested ones first, otherwise
//! round robin from the set's cursor — the reference's order exactly, so a
//! data dir shared with it keeps cycling the same way.

use std::net::IpAddr;

use common::ipnet::{from_bits, to_bits, IpNet};
use common::spec::{Attachment, IpConfig};
use common::{CniError, Result};

use crate::config::{Range, RangeSet};
use crate::store::{Lease, Store};

/// Take one address from every range set for (id, ifname). All or nothing:
/// on any failure the addresses taken so far are released again.
pub fn allocate(
    store: &mut dyn Store,
    sets: &[RangeSet],
    requested: &[IpAddr],
    id: &str,
    ifname: &str,
) -> Result<Vec<IpConfig>> {
    let wanted = match_requests(sets, requested)?;
    let held = store.known_leases_of(id, ifname, sets.len())?;
    let mut taken: Vec<IpConfig> = Vec::new();
    for (i, set) in sets.iter().enumerate() {
        match allocate_one(store, &held, i, set, wanted[i], id, ifname) {
            Ok(ip) => taken.push(ip),
            Err(e) => {
                for ip in &taken {
                    let _ = store.release(ip.address.addr); // best effort; the error below matters more
                }
                return Err(e);
            }
        }
    }
    Ok(taken)
}

/// Give each requested IP the range set containing it; refuse up front (before
/// anything is taken) an IP no set contains or a second one for the same set.
fn match_requests(sets: &[RangeSet], requested: &[IpAddr]) -> Result<Vec<Option<IpAddr>>> {
    let mut wanted = vec![None; sets.len()];
    let mut problems = Vec::new();
    for ip in requested {
        match sets.iter().position(|s| s.contains(ip)) {
            Some(i) if wanted[i].is_none() => wanted[i] = Some(*ip),
            Some(i) => problems.push(format!("{ip} (range set {i} already gives {})", wanted[i].unwrap())),
            None => problems.push(format!("{ip} (not in any range set)")),
        }
    }
    if problems.is_empty() {
        Ok(wanted)
    } else {
        Err(CniError::invalid_config(format!(
            "failed to allocate all requested IPs: {}",
            problems.join(", ")
        )))
    }
}

fn allocate_one(
    store: &mut dyn Store,
    held: &[Lease],
    i: usize,
    set: &RangeSet,
    wanted: Option<IpAddr>,
    id: &str,
    ifname: &str,
) -> Result<IpConfig> {
    // The spec forbids a second ADD for the same attachment without a DEL;
    // handing out a second address would leak the first.
    if let Some(l) = held.iter().find(|l| set.contains(&l.ip)) {
        return Err(CniError::internal(format!(
            "{} has been allocated to {id} ({ifname}), duplicate allocation is not allowed",
            l.ip
        )));
    }
    if let Some(ip) = wanted {
        let range = set.range_for(&ip).expect("matched to this set");
        if ip == range.gateway {
            return Err(CniError::invalid_config(format!(
                "requested IP {ip} is the gateway of range {range}"
            )));
        }
        if !store.reserve(ip, id, ifname, i)? {
            // 999 as in the reference: the request is valid, someone else holds the address.
            let to = store.holder(ip).map(|l| format!(" to {}", l.owner())).unwrap_or_default();
            return Err(CniError::internal(format!(
                "requested IP address {ip} is not available in range set {set}: it is already allocated{to}"
            )));
        }
        return Ok(ip_config(ip, range));
    }
    // reserve() (O_EXCL on disk) refuses whatever is taken; from the cursor
    // the next address is almost always free.
    for (range, ip) in candidates(set, store.last_reserved(i)) {
        if store.reserve(ip, id, ifname, i)? {
            return Ok(ip_config(ip, range));
        }
    }
    Err(CniError::internal(format!("no IP addresses available in range set {set}")))
}

fn ip_config(ip: IpAddr, range: &Range) -> IpConfig {
    IpConfig {
        address: IpNet { addr: ip, prefix: range.subnet.prefix },
        gateway: Some(range.gateway),
        interface: None,
    }
}

/// Every allocatable address of the set once, in the reference's order:
/// from the address after the cursor to the end of its range, through the
/// following ranges (wrapping), back to the cursor itself; gateways skipped.
/// Without a usable cursor, from the first range's start.
fn candidates(set: &RangeSet, cursor: Option<IpAddr>) -> impl Iterator<Item = (&Range, IpAddr)> {
    let ranges = &set.0;
    let n = ranges.len();
    let bits = |ip: &IpAddr| to_bits(ip);
    let (first, from) = match cursor.and_then(|c| ranges.iter().position(|r| r.contains(&c)).map(|i| (i, c)))
    {
        Some((i, c)) if c == ranges[i].end => ((i + 1) % n, bits(&ranges[(i + 1) % n].start)),
        Some((i, c)) => (i, bits(&c) + 1),
        None => (0, bits(&ranges[0].start)),
    };
    // (range index, first, last) stretches in visiting order.
    let mut stretches = vec![(first, from, bits(&ranges[first].end))];
    stretches
        .extend((1..n).map(|k| (first + k) % n).map(|j| (j, bits(&ranges[j].start), bits(&ranges[j].end))));
    if from > bits(&ranges[first].start) {
        stretches.push((first, bits(&ranges[first].start), from - 1));
    }
    stretches
        .into_iter()
        .flat_map(move |(j, a, b)| (a..=b).map(move |x| (&ranges[j], from_bits(&ranges[j].start, x))))
        .filter(|(r, ip)| *ip != r.gateway)
}

/// Release what (id, ifname) holds. Like the reference, old leases naming
/// only the container are released when no current-format lease matched.
/// Returns how many were released; keeps going past errors and reports them.
pub fn release(store: &mut dyn Store, id: &str, ifname: &str) -> Result<usize> {
    let leases = store.leases_of(id, ifname)?;
    let mut mine: Vec<&Lease> = leases.iter().filter(|l| l.is(id, ifname)).collect();
    if mine.is_empty() {
        mine = leases.iter().filter(|l| l.is_legacy_of(id)).collect();
    }
    release_all(store, &mine)
}

/// CHECK: does (id, ifname) hold anything (old leases of the container count)?
pub fn holds_any(store: &dyn Store, id: &str, ifname: &str) -> Result<bool> {
    Ok(!store.leases_of(id, ifname)?.is_empty())
}

/// GC: release every lease whose attachment is not in `valid`. An old lease
/// without an interface stays while its container has any valid attachment.
pub fn gc(store: &mut dyn Store, valid: &[Attachment]) -> Result<usize> {
    let leases = store.leases()?;
    let stale: Vec<&Lease> = leases
        .iter()
        .filter(|l| {
            !valid.iter().any(|a| {
                a.container_id.trim() == l.container_id && l.ifname.as_ref().is_none_or(|i| *i == a.ifname)
            })
        })
        .collect();
    release_all(store, &stale)
}

fn release_all(store: &mut dyn Store, leases: &[&Lease]) -> Result<usize> {
    let mut errors = Vec::new();
    let mut released = Vec::new();
    for l in leases {
        match store.release(l.ip) {
            Ok(()) => released.push(l.ip),
            Err(e) => errors.push(format!("{}: {}", l.ip, e.msg)),
        }
    }
    store.forget(&released);
    if errors.is_empty() {
        Ok(leases.len())
    } else {
        Err(CniError::io(format!("failed to release {}", errors.join("; "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemStore;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn range(subnet: &str, start: &str, end: &str, gw: &str) -> Range {
        Range { subnet: subnet.parse().unwrap(), start: ip(start), end: ip(end), gateway: ip(gw) }
    }

    /// 10.0.0.0/29: .1 is the gateway, .2–.6 allocatable.
    fn small() -> RangeSet {
        RangeSet(vec![range("10.0.0.0/29", "10.0.0.1", "10.0.0.6", "10.0.0.1")])
    }

    fn add(s: &mut MemStore, sets: &[RangeSet], id: &str) -> Result<Vec<String>> {
        allocate(s, sets, &[], id, "eth0").map(|v| v.iter().map(|c| c.address.to_string()).collect())
    }

    #[test]
    fn round_robin_skips_gateway_and_writes_cursor_and_lease() {
        let mut s = MemStore::default();
        let sets = [small()];
        let r = allocate(&mut s, &sets, &[], "c1", "eth0").unwrap();
        assert_eq!(r[0].address.to_string(), "10.0.0.2/29");
        assert_eq!(r[0].gateway, Some(ip("10.0.0.1")));
        assert_eq!(r[0].interface, None);
        assert_eq!(s.files[&ip("10.0.0.2")], "c1\r\neth0");
        assert_eq!(s.cursors[&0], ip("10.0.0.2"));
        assert_eq!(add(&mut s, &sets, "c2").unwrap(), ["10.0.0.3/29"]);
        // A released address is not reused before the cycle comes round.
        release(&mut s, "c1", "eth0").unwrap();
        assert_eq!(add(&mut s, &sets, "c3").unwrap(), ["10.0.0.4/29"]);
    }

    #[test]
    fn wraps_and_then_reports_exhaustion_naming_the_range() {
        let mut s = MemStore::default();
        let sets = [small()];
        for n in 0..5 {
            add(&mut s, &sets, &format!("c{n}")).unwrap();
        }
        release(&mut s, "c1", "eth0").unwrap(); // frees .3
        assert_eq!(add(&mut s, &sets, "x").unwrap(), ["10.0.0.3/29"], "wrapped past the end");
        let e = add(&mut s, &sets, "y").unwrap_err();
        assert_eq!(e.msg, "no IP addresses available in range set 10.0.0.0/29 (10.0.0.1-10.0.0.6)");
        assert_eq!(s.files.len(), 5, "a failed ADD leaves nothing");
    }

    #[test]
    fn cursor_outside_the_set_restarts_at_the_beginning() {
        let mut s = MemStore::default();
        s.cursors.insert(0, ip("192.168.9.9"));
        assert_eq!(add(&mut s, &[small()], "c").unwrap(), ["10.0.0.2/29"]);
        s.cursors.insert(0, ip("10.0.0.6")); // the last one: wrap to the start
        assert_eq!(add(&mut s, &[small()], "d").unwrap(), ["10.0.0.3/29"]);
    }

    #[test]
    fn iteration_order_across_ranges_of_a_set() {
        let set = RangeSet(vec![
            range("10.0.0.0/29", "10.0.0.5", "10.0.0.6", "10.0.0.1"),
            range("10.0.1.0/29", "10.0.1.1", "10.0.1.3", "10.0.1.2"),
        ]);
        let order = |cursor: Option<&str>| -> Vec<String> {
            candidates(&set, cursor.map(ip)).map(|(_, ip)| ip.to_string()).collect()
        };
        assert_eq!(order(None), ["10.0.0.5", "10.0.0.6", "10.0.1.1", "10.0.1.3"]);
        assert_eq!(order(Some("10.0.0.5")), ["10.0.0.6", "10.0.1.1", "10.0.1.3", "10.0.0.5"]);
        assert_eq!(order(Some("10.0.1.3")), ["10.0.0.5", "10.0.0.6", "10.0.1.1", "10.0.1.3"]);
        assert_eq!(order(Some("10.0.1.1")), ["10.0.1.3", "10.0.0.5", "10.0.0.6", "10.0.1.1"]);
        // A /30 whose gateway is its first address leaves one candidate.
        let tiny = RangeSet(vec![range("10.9.0.0/30", "10.9.0.1", "10.9.0.2", "10.9.0.1")]);
        assert_eq!(candidates(&tiny, None).count(), 1);
        let v6 = RangeSet(vec![range("2001:db8::/126", "2001:db8::1", "2001:db8::3", "2001:db8::1")]);
        let got: Vec<String> = candidates(&v6, Some(ip("2001:db8::2"))).map(|(_, i)| i.to_string()).collect();
        assert_eq!(got, ["2001:db8::3", "2001:db8::2"]);
    }

    #[test]
    fn dual_stack_takes_one_address_per_set_with_its_own_cursor() {
        let mut s = MemStore::default();
        let sets =
            [small(), RangeSet(vec![range("2001:db8::/64", "2001:db8::1", "2001:db8::ff", "2001:db8::1")])];
        assert_eq!(add(&mut s, &sets, "c1").unwrap(), ["10.0.0.2/29", "2001:db8::2/64"]);
        assert_eq!(s.cursors[&1], ip("2001:db8::2"));
        assert_eq!(release(&mut s, "c1", "eth0").unwrap(), 2);
        assert!(s.files.is_empty());
    }

    #[test]
    fn failure_in_a_later_set_releases_the_earlier_ones() {
        let mut s = MemStore::default();
        let full = RangeSet(vec![range("10.9.0.0/30", "10.9.0.2", "10.9.0.2", "10.9.0.1")]);
        s.files.insert(ip("10.9.0.2"), "other\r\neth0".into());
        let e = add(&mut s, &[small(), full], "c1").unwrap_err();
        assert!(e.msg.starts_with("no IP addresses available in range set 10.9.0.0/30"), "{}", e.msg);
        assert_eq!(s.files.len(), 1);
    }

    #[test]
    fn duplicate_allocation_is_refused_per_set() {
        let mut s = MemStore::default();
        add(&mut s, &[small()], "c1").unwrap();
        let e = add(&mut s, &[small()], "c1").unwrap_err();
        assert_eq!(e.msg, "10.0.0.2 has been allocated to c1 (eth0), duplicate allocation is not allowed");
        // Same container, another interface: fine.
        allocate(&mut s, &[small()], &[], "c1", "eth1").unwrap();
        // An old-format lease of the container counts too.
        s.files.insert(ip("10.0.0.6"), "old".into());
        assert!(add(&mut s, &[small()], "old").unwrap_err().msg.contains("duplicate allocation"));
        // Requested addresses are checked the same way.
        let e = allocate(&mut s, &[small()], &[ip("10.0.0.5")], "c1", "eth0").unwrap_err();
        assert!(e.msg.contains("duplicate allocation is not allowed"));
    }

    #[test]
    fn requested_ips() {
        let mut s = MemStore::default();
        let sets = [small(), RangeSet(vec![range("10.0.1.0/24", "10.0.1.10", "10.0.1.20", "10.0.1.1")])];
        let r = allocate(&mut s, &sets, &[ip("10.0.1.15"), ip("10.0.0.5")], "c1", "eth0").unwrap();
        let got: Vec<String> = r.iter().map(|c| c.address.to_string()).collect();
        assert_eq!(got, ["10.0.0.5/29", "10.0.1.15/24"]);
        assert_eq!(s.cursors[&1], ip("10.0.1.15"), "a requested IP moves the cursor too");
        // One requested, one free-running.
        assert_eq!(
            allocate(&mut s, &sets, &[ip("10.0.1.16")], "c2", "eth0").unwrap()[0].address.to_string(),
            "10.0.0.6/29"
        );
        let before = s.files.len();
        let err = |s: &mut MemStore, req: &[&str]| {
            let req: Vec<IpAddr> = req.iter().map(|r| ip(r)).collect();
            allocate(s, &sets, &req, "c9", "eth0").unwrap_err()
        };
        let e = err(&mut s, &["10.0.0.5"]);
        assert_eq!(
            e.msg,
            "requested IP address 10.0.0.5 is not available in range set 10.0.0.0/29 (10.0.0.1-10.0.0.6): it is already allocated to container c1 (eth0)"
        );
        // Kept at 999 as the reference: nothing is wrong with the request itself.
        assert_eq!(e.code, 999);
        let e = err(&mut s, &["10.0.0.1"]);
        assert_eq!(
            (e.code, e.msg.as_str()),
            (7, "requested IP 10.0.0.1 is the gateway of range 10.0.0.0/29 (10.0.0.1-10.0.0.6)")
        );
        let e = err(&mut s, &["10.0.1.30"]);
        assert_eq!(e.msg, "failed to allocate all requested IPs: 10.0.1.30 (not in any range set)");
        let e = err(&mut s, &["10.0.1.17", "10.0.1.18"]);
        assert_eq!(
            e.msg,
            "failed to allocate all requested IPs: 10.0.1.18 (range set 1 already gives 10.0.1.17)"
        );
        // The second set fails after the first succeeded: nothing is kept.
        let e = err(&mut s, &["10.0.1.15"]);
        assert!(e.msg.contains("10.0.1.15 is not available"), "{}", e.msg);
        assert_eq!(s.files.len(), before);
        // A long container ID is shortened as `docker ps` shows it.
        let long = "0123456789abcdef".repeat(4);
        allocate(&mut s, &sets, &[ip("10.0.0.3")], &long, "net1").unwrap();
        let e = err(&mut s, &["10.0.0.3"]);
        assert!(e.msg.ends_with("already allocated to container 0123456789ab… (net1)"), "{}", e.msg);
    }

    #[test]
    fn release_matches_the_attachment_then_old_leases() {
        let mut s = MemStore::default();
        s.files.insert(ip("10.0.0.2"), "c1\r\neth0".into());
        s.files.insert(ip("10.0.0.3"), "c1\r\neth1".into());
        s.files.insert(ip("10.0.0.4"), "c1".into());
        assert_eq!(release(&mut s, "c1", "eth0").unwrap(), 1);
        assert!(!s.files.contains_key(&ip("10.0.0.2")));
        assert_eq!(release(&mut s, "c1", "eth0").unwrap(), 1, "then the old lease");
        assert_eq!(release(&mut s, "c1", "eth0").unwrap(), 0, "and then nothing, without error");
        assert!(holds_any(&s, "c1", "eth1").unwrap());
        assert!(!holds_any(&s, "c1", "eth0").unwrap());
        s.files.insert(ip("10.0.0.9"), "c7".into());
        assert!(holds_any(&s, "c7", "whatever").unwrap());
    }

    #[test]
    fn gc_releases_what_is_not_valid_and_reports_errors() {
        let mut s = MemStore::default();
        for (a, c) in [
            ("10.0.0.2", "a\r\neth0"),
            ("10.0.0.3", "a\r\neth1"),
            ("10.0.0.4", "b\r\neth0"),
            ("10.0.0.5", "a"),
            ("10.0.0.6", "z"),
            ("10.0.0.7", ""),
        ] {
            s.files.insert(ip(a), c.into());
        }
        let valid = [Attachment { container_id: "a".into(), ifname: "eth0".into() }];
        s.fail_release = Some(ip("10.0.0.4"));
        let e = gc(&mut s, &valid).unwrap_err();
        assert_eq!(e.msg, "failed to release 10.0.0.4: cannot remove 10.0.0.4");
        let left: Vec<String> = s.files.keys().map(|i| i.to_string()).collect();
        assert_eq!(left, ["10.0.0.2", "10.0.0.4", "10.0.0.5"], "kept going past the error");
        s.fail_release = None;
        assert_eq!(gc(&mut s, &[]).unwrap(), 3);
    }
}
