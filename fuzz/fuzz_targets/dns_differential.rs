//! Our DNS query decoder against hickory-proto's, a well-kept one. Two checks:
//!
//! 1. What hickory reads as a standard query (QR=0, opcode QUERY, one
//!    question, an uncompressed question name) we accept too, with the same
//!    ID, question name (compared in lowercase, label by label), type and
//!    class, and the same EDNS payload size when an OPT record is among the
//!    first 64 records.
//! 2. What we accept, hickory accepts as well — as far as we read it: the
//!    header and question (we never decode the answer, authority and
//!    additional sections of a query beyond finding its OPT record, so their
//!    counts are zeroed for hickory), with the same question.
//!
//! Intentional divergences (not checked, documented in docs/fuzzing.md): a
//! compressed question name is FORMERR for us (the only name of a query has
//! nothing to point at); malformed records after the question do not stop us
//! from answering it.
#![no_main]

use dns_sidecar::wire::{self, Query};
use hickory_proto::op::{Message, MessageType, OpCode};
use libfuzzer_sys::fuzz_target;

fn same_question(ours: &Query, theirs: &Message, data: &[u8]) {
    let q = &theirs.queries[0];
    let labels: Vec<Vec<u8>> = q.name.iter().map(|l| l.to_ascii_lowercase()).collect();
    assert_eq!(ours.name.as_bytes(), &labels.join(&b'.')[..], "question name of {data:?}");
    assert_eq!(ours.qtype, u16::from(q.query_type), "question type of {data:?}");
    assert_eq!(ours.qclass, u16::from(q.query_class), "question class of {data:?}");
    assert_eq!(ours.id, theirs.metadata.id);
}

/// The question name's labels, without following a pointer: None when the
/// name is compressed (or runs off the message).
fn uncompressed_name(data: &[u8]) -> Option<()> {
    let mut at = wire::HEADER_LEN;
    loop {
        let l = *data.get(at)? as usize;
        if l == 0 {
            return Some(());
        }
        if l > 63 {
            return None;
        }
        at += 1 + l;
    }
}

fuzz_target!(|data: &[u8]| {
    let ours = wire::parse_query(data);
    if let Ok(theirs) = Message::from_vec(data) {
        let records = theirs.answers.len() + theirs.authorities.len() + theirs.additionals.len();
        if theirs.metadata.message_type == MessageType::Query
            && theirs.metadata.op_code == OpCode::Query
            && theirs.queries.len() == 1
            && uncompressed_name(data).is_some()
        {
            let q =
                ours.as_ref().unwrap_or_else(|e| panic!("hickory reads a query we refuse ({e:?}): {data:?}"));
            same_question(q, &theirs, data);
            // hickory keeps the OPT record apart from the additionals.
            if theirs.edns.is_some() && records < 64 {
                assert_eq!(q.udp_limit(), theirs.max_payload() as usize, "EDNS size of {data:?}");
            }
        }
    }
    if let Ok(q) = &ours {
        let mut head = data[..q.question_end].to_vec();
        head[6..12].fill(0);
        let theirs = Message::from_vec(&head)
            .unwrap_or_else(|e| panic!("hickory refuses the question we accept ({e}): {data:?}"));
        assert_eq!(theirs.queries.len(), 1);
        same_question(q, &theirs, data);
    }
});
