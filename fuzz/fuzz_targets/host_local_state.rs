//! host-local's files in a network's state dir, as any process could have
//! left them: a lease (`<containerID>\r\n<ifname>`), the index
//! (`<ip> <containerID> <ifname>` and `@ <set> <ip>` lines) and a cursor
//! (`last_reserved_ip.N`). Never a panic; what the plugin writes it reads
//! back exactly; the index parser keeps only well-formed entries.
//! Input: three fields separated by NUL bytes.
#![no_main]

use std::net::IpAddr;

use common::skel::validate_ifname;
use common::spec::valid_name;
use host_local::disk::{parse_cursor, Index};
use host_local::store::{lease_content, Lease};
use libfuzzer_sys::fuzz_target;

/// What a plugin could have written: the skel only passes such IDs and ifnames.
fn writable(id: &str, ifname: &str) -> bool {
    valid_name(id) && validate_ifname(ifname).is_ok()
}

fuzz_target!(|data: &[u8]| {
    let mut fields = data.split(|&b| b == 0);
    let lease = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let index = String::from_utf8_lossy(fields.next().unwrap_or_default());
    let cursor = fields.next().unwrap_or_default();
    let ip: IpAddr = "10.88.0.7".parse().unwrap();

    // A lease file's content.
    let l = Lease::parse(ip, &lease);
    if let Some(ifname) = l.ifname.clone() {
        if writable(&l.container_id, &ifname) {
            assert!(l.is(&l.container_id, &ifname));
            assert_eq!(Lease::parse(ip, &lease_content(&l.container_id, &ifname)), l);
        }
    }
    // What we write for an ID and ifname (the fuzz text split at its first space).
    if let Some((id, ifname)) = lease.split_once(' ') {
        if writable(id, ifname) {
            let back = Lease::parse(ip, &lease_content(id, ifname));
            assert!(back.is(id, ifname) && !back.is_legacy_of(id), "{back:?}");
        }
    }

    // The index: entries of leases a plugin could write survive render → parse.
    let parsed = Index::parse(&index);
    let ours = Index {
        cursors: parsed.cursors.clone(),
        leases: parsed
            .leases
            .iter()
            .filter(|l| l.ifname.as_deref().is_some_and(|i| writable(&l.container_id, i)))
            .cloned()
            .collect(),
    };
    assert_eq!(Index::parse(&ours.render()), ours);

    // A cursor file.
    if let Some(c) = parse_cursor(cursor) {
        assert_eq!(parse_cursor(c.to_string().as_bytes()), Some(c));
    }
});
