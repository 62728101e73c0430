//! The DNS server's whole answer path (`server::answer`: decode the query,
//! check the client, look the name up, encode the answer) on arbitrary
//! messages, over UDP and TCP, from inside and outside the network.
//! Input: one byte of options (bit 0: TCP, bit 1: a client outside the
//! network), then the message. Never a panic; every reply fits the
//! transport, is read back by our decoder and by hickory-proto, carries the
//! query's ID and question, and holds exactly the records the table has.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use common::ipnet::IpNet;
use dns_sidecar::server::{answer, Action};
use dns_sidecar::table::{Entry, Table};
use dns_sidecar::wire::{self, rcode, Rdata};
use hickory_proto::op::Message;
use libfuzzer_sys::fuzz_target;

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let web = ["web".to_string(), "www".to_string()];
        let db = ["db".to_string()];
        let web_ips: Vec<IpNet> =
            ["10.89.0.5/24", "fd00:89::5/64"].iter().map(|s| s.parse().unwrap()).collect();
        let db_ips: Vec<IpNet> = ["10.89.0.6/24"].iter().map(|s| s.parse().unwrap()).collect();
        Table::build("dns.podman", [Entry { names: &web, ips: &web_ips }, Entry { names: &db, ips: &db_ips }])
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&opts, msg)) = data.split_first() else { return };
    let tcp = opts & 1 != 0;
    let src: IpAddr = if opts & 2 != 0 { "192.0.2.1".parse().unwrap() } else { "10.89.0.9".parse().unwrap() };
    let mut out = vec![0u8; if tcp { 65535 } else { 4096 }];
    let parsed = wire::parse_query(msg);
    let n = match answer(table(), msg, src, &mut out, tcp) {
        Action::Reply(n) => n,
        Action::Forward(q) => {
            let p = parsed.expect("only parsed queries are forwarded");
            assert_eq!(q.name.as_bytes(), p.name.as_bytes());
            assert!(opts & 2 == 0, "a query from outside the network was forwarded");
            return;
        }
        Action::Drop => {
            assert!(matches!(parsed, Err(wire::Bad::Drop)));
            return;
        }
    };
    let reply = &out[..n];
    assert!(n >= wire::HEADER_LEN && n <= out.len());
    let resp =
        wire::parse_response(reply).unwrap_or_else(|| panic!("we cannot read our own reply {reply:?}"));
    let theirs =
        Message::from_vec(reply).unwrap_or_else(|e| panic!("hickory cannot read our reply ({e}): {reply:?}"));
    assert_eq!(resp.id, wire::id_of(msg));
    assert_eq!(theirs.metadata.id, resp.id);
    assert_eq!(theirs.answers.len(), resp.answers.len());
    match &parsed {
        Ok(q) => {
            assert!(wire::answers_question(reply, q), "reply does not answer {msg:?}");
            if !tcp {
                assert!(n <= q.udp_limit(), "{n} bytes over UDP to a client that takes {}", q.udp_limit());
            }
            assert_eq!(resp.has_opt, q.edns.is_some());
            if opts & 2 != 0 {
                assert_eq!(resp.rcode, rcode::REFUSED);
            }
            // Every record is the table's answer for the name asked.
            for (rd, _) in &resp.answers {
                let name = String::from_utf8_lossy(q.name.as_bytes()).into_owned();
                let short = name.strip_suffix(".dns.podman").unwrap_or(&name);
                match rd {
                    Rdata::A(a) => assert!(
                        matches!(
                            (short, a.to_string().as_str()),
                            ("web" | "www", "10.89.0.5") | ("db", "10.89.0.6")
                        ),
                        "{name} A {a}"
                    ),
                    Rdata::Aaaa(a) => assert!(
                        matches!(short, "web" | "www") && a.to_string() == "fd00:89::5",
                        "{name} AAAA {a}"
                    ),
                    Rdata::Ptr(p) => assert!(p == "web.dns.podman" || p == "db.dns.podman", "{name} PTR {p}"),
                    Rdata::Other(t, _) => panic!("{name}: an answer of type {t}"),
                }
            }
        }
        Err(wire::Bad::Rcode { rcode, .. }) => assert_eq!(resp.rcode, *rcode),
        Err(wire::Bad::Drop) => panic!("a dropped message got a reply"),
    }
});
