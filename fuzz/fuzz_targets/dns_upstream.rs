//! Answers from upstream servers, as the forwarder and the cache read them
//! (anyone on the path can send these): matching to the pending question,
//! cache lifetime and TTL positions, TTL aging, and the full response
//! decoder CHECK uses. Never a panic; every TTL position lies inside the
//! message; aging a positive answer by less than its lifetime shortens the
//! lifetime by exactly that much and keeps the positions; hickory-proto
//! reads the same number of answers as we do in what both accept.
#![no_main]

use dns_sidecar::wire;
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let q =
        wire::parse_query(&wire::build_query(7, "example.com", wire::rtype::A, Some(1232)).unwrap()).unwrap();
    let _ = wire::answers_question(data, &q);
    if let Some(r) = wire::parse_response(data) {
        if let Ok(m) = Message::from_vec(data) {
            if m.queries.len() == usize::from(u16::from_be_bytes([data[4], data[5]])) {
                assert_eq!(m.answers.len(), r.answers.len(), "{data:?}");
            }
        }
    }
    let Some((ttl, offsets)) = wire::cache_facts(data) else { return };
    assert!(ttl > 0);
    for &o in &offsets {
        assert!(o as usize + 4 <= data.len(), "TTL at {o} of a {}-byte answer", data.len());
    }
    let positive = u16::from_be_bytes([data[6], data[7]]) > 0 && data[3] & 0x0f == wire::rcode::NOERROR;
    let age = ttl / 2;
    let mut aged = data.to_vec();
    wire::age_ttls(&mut aged, &offsets, age);
    if positive {
        assert_eq!(wire::cache_facts(&aged), Some((ttl - age, offsets)), "{data:?}");
    }
});
