//! Our encoders against our decoders: a message built from arbitrary
//! attributes and nests either fails to encode (too long for a length field:
//! an error, never a wrapped length) or is framed and decoded back to exactly
//! what was put in; nf_tables comments and attachment tags likewise.
#![no_main]

use arbitrary::Arbitrary;
use common::netlink::{split_messages, Attrs, Msg};
use common::nft::tag::{self, Legacy, Owner};
use common::nft::{comment_udata, parse_comment, COMMENT_MAX};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug, Clone)]
enum Node {
    Leaf(u16, Vec<u8>),
    /// A long attribute: (type, byte, length) so that u16 limits are reached.
    Long(u16, u8, u32),
    Nest(u16, Vec<Node>),
}

#[derive(Arbitrary, Debug)]
struct Input {
    ty: u16,
    flags: u16,
    header: Vec<u8>,
    nodes: Vec<Node>,
    comment: String,
    network: String,
    container_id: String,
    ifname: String,
}

const TYPE_MASK: u16 = 0x3fff;

fn long_len(len: u32) -> usize {
    (len % 70_000) as usize
}

fn put(m: &mut Msg, n: &Node) {
    match n {
        Node::Leaf(ty, data) => {
            m.attr(ty & TYPE_MASK, data);
        }
        Node::Long(ty, b, len) => {
            m.attr(ty & TYPE_MASK, &vec![*b; long_len(*len)]);
        }
        Node::Nest(ty, kids) => {
            m.nest(ty & TYPE_MASK, |m| kids.iter().for_each(|k| put(m, k)));
        }
    }
}

/// The encoded size of a node (header, payload, padding).
fn size(n: &Node) -> usize {
    let payload = match n {
        Node::Leaf(_, d) => d.len(),
        Node::Long(_, _, len) => long_len(*len),
        Node::Nest(_, kids) => kids.iter().map(size).sum(),
    };
    (4 + payload + 3) & !3
}

fn same(nodes: &[Node], attrs: Attrs<'_>) {
    let got: Vec<_> = attrs.collect();
    assert_eq!(got.len(), nodes.len());
    for (n, a) in nodes.iter().zip(got) {
        match n {
            Node::Leaf(ty, data) => assert_eq!((a.ty, a.data), (ty & TYPE_MASK, &data[..])),
            Node::Long(ty, b, len) => {
                assert_eq!((a.ty, a.data.len()), (ty & TYPE_MASK, long_len(*len)));
                assert!(a.data.iter().all(|x| x == b));
            }
            Node::Nest(ty, kids) => {
                assert_eq!(a.ty, ty & TYPE_MASK);
                same(kids, a.nested());
            }
        }
    }
}

fuzz_target!(|input: Input| {
    let header: Vec<u8> = input.header.iter().copied().take(16).collect();
    let mut m = Msg::new(input.ty, input.flags);
    m.push(&header);
    input.nodes.iter().for_each(|n| put(&mut m, n));
    // Every attribute and nest must fit its u16 length.
    fn fits(n: &Node) -> bool {
        match n {
            Node::Leaf(_, d) => 4 + d.len() <= 0xffff,
            Node::Long(_, _, l) => 4 + long_len(*l) <= 0xffff,
            Node::Nest(_, k) => 4 + k.iter().map(size).sum::<usize>() <= 0xffff && k.iter().all(fits),
        }
    }
    let encodable = input.nodes.iter().all(fits);
    assert_eq!(m.check().is_ok(), encodable, "{:?}", m.check());
    if encodable {
        let bytes = m.bytes(7);
        let msgs = split_messages(&bytes);
        assert_eq!(msgs.len(), 1);
        let (seq, r) = &msgs[0];
        // Every message we build is a request.
        assert_eq!((*seq, r.ty, r.flags), (7, input.ty, input.flags | common::netlink::NLM_F_REQUEST));
        assert_eq!(&r.payload[..header.len()], &header[..]);
        same(&input.nodes, r.attrs(header.len()));
    }

    // nf_tables comments: what we write, we read back (cut to what nf_tables keeps).
    let back = parse_comment(&comment_udata(&input.comment)).expect("our user data has a comment");
    assert!(input.comment.starts_with(&back) && back.len() <= COMMENT_MAX);
    if input.comment.len() <= COMMENT_MAX && !input.comment.contains('\0') {
        assert_eq!(back, input.comment);
    }

    // Attachment tags: bounded, and found again by the attachment that made them.
    let t = tag::of(&input.network, &input.container_id, &input.ifname);
    assert!(t.len() <= COMMENT_MAX && !t.contains(' '), "{t:?}");
    assert_eq!(parse_comment(&comment_udata(&t)).as_deref(), Some(t.as_str()));
    for legacy in [Legacy::Attachment, Legacy::NetworkFirst, Legacy::NetworkLast] {
        let o = Owner::parse(&t, legacy).expect("our own tag parses");
        assert!(o.is(&input.container_id, &input.ifname), "{t:?} {o:?}");
        assert!(o.in_network(&input.network), "{t:?} {o:?}");
    }
});
