//! Who owns per-attachment nf_tables state, and the names built from input.
//!
//! Every plugin tags the set and map elements of an attachment with the
//! same comment, so DEL and GC find them without the netns or prevResult:
//!
//! ```text
//! <network>/<containerID>/<ifname>      e.g. "podman/4f3c…e1/eth0"
//! ```
//!
//! Each field is a [`part`]: the value itself when it is short and plain,
//! otherwise a fixed-length stand-in with a digest. So a tag is at most
//! [`COMMENT_MAX`] bytes whatever the input (nf_tables keeps no more of a
//! comment), distinct inputs give distinct tags, and the network field lets
//! GC of one network skip another's elements in a node-wide table. Set names
//! ([`set_name`]) and rule comments ([`rule_comment`]) carry the same network
//! part. Matching always recomputes the parts from the input and compares
//! them whole ([`Owner`], [`rule_of`]): never a cut text.
//!
//! Tags of earlier versions (three layouts, cut at 128 bytes, see [`Legacy`])
//! are still recognised, so DEL and GC after an upgrade remove what the
//! previous version made.

use sha2::{Digest, Sha256};

use super::{Batch, NftResult, Nftables, Table, COMMENT_MAX};

/// Longest network name kept as it is; longer ones become 35 characters.
pub const NETWORK_MAX: usize = 34;
/// Longest container ID kept as it is (64 hex digits, as runtimes make them).
pub const CONTAINER_ID_MAX: usize = 64;
/// Longest ifname kept as it is (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;
/// Characters of a digest: 130 bits of SHA-256 in lower-case base32.
const DIGEST_LEN: usize = 26;
/// Longest name of a table, chain or set (NFT_NAME_MAXLEN less the NUL).
const NAME_MAX: usize = 255;

/// Characters a part may show: those of network names and container IDs
/// (`common::spec::valid_name`); all of them are fine in nft identifiers.
fn plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')
}

fn digest(value: &str) -> String {
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let hash = Sha256::digest(value.as_bytes());
    let mut out = String::with_capacity(DIGEST_LEN);
    let (mut acc, mut bits) = (0u32, 0);
    for &b in &hash[..17] {
        acc = (acc << 8 | u32::from(b)) & 0xffff;
        bits += 8;
        while bits >= 5 && out.len() < DIGEST_LEN {
            bits -= 5;
            out.push(ALPHABET[(acc >> bits) as usize & 31] as char);
        }
    }
    out
}

/// A bounded stand-in for `value`: the value itself when it has at most
/// `max` plain characters; otherwise exactly `max(max + 1, 26)` characters:
/// its first characters (others as `_`), `-` and a digest of all of it — or
/// the digest alone when there is no room. The two forms differ in length,
/// long values in their digest; neither contains a space or `/`.
pub fn part(value: &str, max: usize) -> String {
    if value.len() <= max && value.bytes().all(plain) {
        return value.to_string();
    }
    let len = (max + 1).max(DIGEST_LEN);
    if len == DIGEST_LEN {
        return digest(value);
    }
    let head_len = len - DIGEST_LEN - 1;
    let mut head: String =
        value.bytes().take(head_len).map(|b| if plain(b) { b as char } else { '_' }).collect();
    while head.len() < head_len {
        head.push('_');
    }
    format!("{head}-{}", digest(value))
}

/// The part standing for a network name in tags, set names and rule comments.
pub fn network(name: &str) -> String {
    part(name, NETWORK_MAX)
}

/// The tag of an attachment: at most 128 bytes, no spaces, two `/`.
pub fn of(network_name: &str, container_id: &str, ifname: &str) -> String {
    format!("{}/{}/{}", network(network_name), part(container_id, CONTAINER_ID_MAX), part(ifname, IFNAME_MAX))
}

/// The name of a network's set: `<prefix><network part>`.
pub fn set_name(prefix: &str, network_name: &str) -> String {
    format!("{prefix}{}", network(network_name))
}

/// Every name the set may have: [`set_name`], and the one earlier versions
/// gave it (`<prefix><network>`) when that differs and nf_tables took it.
pub fn set_names(prefix: &str, network_name: &str) -> Vec<String> {
    let old = format!("{prefix}{network_name}");
    let now = set_name(prefix, network_name);
    if old == now || old.len() > NAME_MAX {
        vec![now]
    } else {
        vec![now, old]
    }
}

/// A rule comment naming a network: `<network part> <what>` (`what` short,
/// e.g. a subnet).
pub fn rule_comment(network_name: &str, what: &str) -> String {
    format!("{} {what}", network(network_name))
}

/// True when a rule comment names `network_name`: made by [`rule_comment`],
/// or by an earlier version (`<network> <what>`, cut at 128 bytes; two
/// networks whose names share their first 128 bytes cannot be told apart there).
pub fn rule_of(comment: &str, network_name: &str) -> bool {
    let names = |n: &str| comment.strip_prefix(n).is_some_and(|rest| rest.starts_with(' '));
    names(&network(network_name))
        || names(network_name)
        || (comment.len() >= COMMENT_MAX && network_name.starts_with(comment))
}

/// Tag layouts of earlier versions, by where they were used (the values raw,
/// the whole cut at 128 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Legacy {
    /// `<containerID> <ifname>`: bridge masquerade and firewall address
    /// sets, one set per network.
    Attachment,
    /// `<network> <containerID> <ifname>`: bridge MAC spoof check.
    NetworkFirst,
    /// `<containerID> <ifname> <network>`: portmap.
    NetworkLast,
}

/// Whose an element is, as far as its comment tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// None: the comment does not say (a per-network set does).
    network: Option<String>,
    container_id: String,
    ifname: String,
    form: Form,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    /// Fields are parts.
    Current,
    /// Fields are raw values.
    Legacy,
    /// Raw values, the network cut short.
    LegacyCut,
}

impl Owner {
    /// The owner a comment names: a tag made by [`of`], or one of an earlier
    /// version in the `legacy` layout of the caller's table. None when the
    /// comment names nobody, or an old one was cut before its attachment's end.
    pub fn parse(comment: &str, legacy: Legacy) -> Option<Owner> {
        if !comment.contains(' ') {
            let mut f = comment.split('/');
            let (n, c, i) = (f.next()?, f.next()?, f.next()?);
            return f.next().is_none().then(|| Owner::new(Some(n), c, i, Form::Current));
        }
        let cut = comment.len() >= COMMENT_MAX;
        let f: Vec<&str> = comment.split(' ').collect();
        match (legacy, f.as_slice()) {
            (Legacy::Attachment, [c, i]) if !cut => Some(Owner::new(None, c, i, Form::Legacy)),
            (Legacy::NetworkFirst, [n, c, i]) if !cut => Some(Owner::new(Some(n), c, i, Form::Legacy)),
            (Legacy::NetworkLast, [c, i, n]) => {
                Some(Owner::new(Some(n), c, i, if cut { Form::LegacyCut } else { Form::Legacy }))
            }
            _ => None,
        }
    }

    fn new(network: Option<&str>, container_id: &str, ifname: &str, form: Form) -> Owner {
        Owner {
            network: network.map(str::to_string),
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            form,
        }
    }

    /// True when this is the attachment `(container_id, ifname)`.
    pub fn is(&self, container_id: &str, ifname: &str) -> bool {
        match self.form {
            Form::Current => {
                self.container_id == part(container_id, CONTAINER_ID_MAX)
                    && self.ifname == part(ifname, IFNAME_MAX)
            }
            Form::Legacy | Form::LegacyCut => self.container_id == container_id && self.ifname == ifname,
        }
    }

    /// True when the element belongs to network `name` (always, when the
    /// comment does not name one: then its set does).
    pub fn in_network(&self, name: &str) -> bool {
        match (&self.network, self.form) {
            (None, _) => true,
            (Some(n), Form::Current) => *n == network(name),
            (Some(n), Form::Legacy) => n == name,
            (Some(n), Form::LegacyCut) => name.starts_with(n.as_str()),
        }
    }

    /// The container ID as the comment shows it (a [`part`] in current tags).
    pub fn container_id(&self) -> &str {
        &self.container_id
    }
    pub fn ifname(&self) -> &str {
        &self.ifname
    }
    pub fn network(&self) -> Option<&str> {
        self.network.as_deref()
    }
}

/// Delete the elements of `set` whose owner (comments read with `legacy`)
/// satisfies `doomed`. Returns how many were deleted and how many remain.
/// A missing table or set holds nothing.
pub fn delete_where(
    nft: &mut impl Nftables,
    table: &Table,
    set: &str,
    legacy: Legacy,
    doomed: impl Fn(Option<&Owner>) -> bool,
) -> NftResult<(usize, usize)> {
    let elems = match nft.list_elements(table, set) {
        Ok(e) => e,
        Err(e) if e.not_found() => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let total = elems.len();
    let keys: Vec<Vec<u8>> = elems
        .into_iter()
        .filter(|e| doomed(e.comment.as_deref().and_then(|c| Owner::parse(c, legacy)).as_ref()))
        .map(|e| e.key)
        .collect();
    if !keys.is_empty() {
        let mut b = Batch::new();
        b.destroy_elements(table, set, &keys);
        nft.commit(&b)?;
    }
    Ok((keys.len(), total - keys.len()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    /// Values that stress the encoding: empty, separators, non-plain and
    /// non-ASCII characters, every length around each limit, long values
    /// sharing a prefix, and values that look like another value's part.
    fn tricky() -> Vec<String> {
        let mut v: Vec<String> = [
            "",
            "a",
            "A",
            "a b",
            "a/b",
            "a/",
            "/b",
            "/",
            " ",
            "a~b",
            "a_b",
            "a-b",
            "é",
            "e\u{301}",
            "eth0",
            "eth0 ",
            "Eth0",
            "net1@x",
            "k8s-pod-network",
            "a\0b",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for len in [14, 15, 16, 25, 26, 27, 33, 34, 35, 36, 63, 64, 65, 66, 127, 128, 129, 200, 300] {
            v.push("x".repeat(len));
            v.push(format!("{}y", "x".repeat(len - 1)));
            v.push(format!("{}/", "x".repeat(len - 1)));
        }
        // A long value's part is plain but too long to pass as itself.
        v.push(network(&"n".repeat(100)));
        v.push(part(&"c".repeat(100), CONTAINER_ID_MAX));
        v.push(part("a b", IFNAME_MAX));
        v
    }

    /// A few of them for the cubic tests: separators, limits, long values.
    fn tricky_few() -> Vec<String> {
        let few = |v: &String| v.len() < 4 || [15, 16, 34, 35, 64, 65, 129].contains(&v.len());
        tricky().into_iter().filter(few).step_by(2).collect()
    }

    #[test]
    fn digest_is_base32_of_sha256() {
        // Independent oracle: Python's base64.b32encode(sha256(v).digest()[:17]).lower()[:26].
        assert_eq!(digest("abc"), "xj4bnp4pahh6uqkbidpf3lrceo");
        assert_eq!(digest(""), "4oymiquy7qobjgx36tejs35zeq");
    }

    #[test]
    fn parts_keep_short_plain_values_and_bound_the_rest() {
        assert_eq!(network("k8s-pod-network"), "k8s-pod-network");
        assert_eq!(part(&"f".repeat(64), CONTAINER_ID_MAX), "f".repeat(64));
        assert_eq!(part("eth0", IFNAME_MAX), "eth0");
        assert_eq!(network("podman net"), format!("podman_n-{}", digest("podman net")));
        assert_eq!(part("eth@0", IFNAME_MAX), digest("eth@0"));
        let long = "k8s-pod-network-".to_string() + &"q".repeat(200);
        assert_eq!(network(&long), format!("k8s-pod--{}", digest(&long)));
        for v in tricky() {
            for max in [IFNAME_MAX, NETWORK_MAX, CONTAINER_ID_MAX] {
                let p = part(&v, max);
                assert!(p.bytes().all(plain), "{v:?} -> {p:?}");
                assert!(p.len() <= max || p.len() == (max + 1).max(DIGEST_LEN), "{v:?} -> {p:?}");
            }
        }
    }

    #[test]
    fn tags_are_bounded_and_split_back_into_three_fields() {
        let values = tricky();
        let longest = "x".repeat(300);
        for v in &values {
            for t in
                [of(v, &longest, &longest), of(&longest, v, &longest), of(&longest, &longest, v), of(v, v, v)]
            {
                assert!(t.len() <= COMMENT_MAX, "{} bytes: {t}", t.len());
                assert!(!t.contains(' ') && t.matches('/').count() == 2, "{t}");
            }
            assert!(set_name("m4_", v).len() <= 3 + NETWORK_MAX + 1);
            assert!(rule_comment(v, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128").len() <= COMMENT_MAX);
        }
    }

    #[test]
    fn random_inputs_give_bounded_tags_that_name_them() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let alphabet: Vec<char> = "ab-_./ ~@é\0".chars().collect();
        let mut value = |max_len: u64| -> String {
            let len = next() % max_len;
            (0..len).map(|_| alphabet[(next() % alphabet.len() as u64) as usize]).collect()
        };
        for _ in 0..2000 {
            let (n, c, i) = (value(260), value(140), value(20));
            let t = of(&n, &c, &i);
            assert!(t.len() <= COMMENT_MAX && !t.contains(' '), "{t}");
            let o = Owner::parse(&t, Legacy::NetworkLast).unwrap();
            assert!(o.in_network(&n) && o.is(&c, &i), "{n:?} {c:?} {i:?} -> {t}");
            assert!(!o.is(&format!("{c}x"), &i) && !o.in_network(&format!("{n}x")), "{t}");
        }
    }

    #[test]
    fn distinct_inputs_give_distinct_tags() {
        let values = tricky();
        let distinct: HashSet<&String> = values.iter().collect();
        assert_eq!(distinct.len(), values.len(), "the test values themselves repeat");
        for max in [IFNAME_MAX, NETWORK_MAX, CONTAINER_ID_MAX] {
            let parts: HashSet<String> = values.iter().map(|v| part(v, max)).collect();
            assert_eq!(parts.len(), values.len(), "max {max}");
        }
        let few = tricky_few();
        assert!(few.len() > 10 && few.iter().any(|v| v.contains('/')) && few.iter().any(|v| v.len() > 64));
        let mut tags = HashSet::new();
        for n in &few {
            for c in &few {
                for i in &few {
                    assert!(tags.insert(of(n, c, i)), "{n:?} {c:?} {i:?}");
                }
            }
        }
        // Splits that a plain join would confuse.
        assert_ne!(of("a/b", "c", "d"), of("a", "b/c", "d"));
        assert_ne!(of("a", "b c", "d"), of("a b", "c", "d"));
    }

    #[test]
    fn owners_match_by_recomputing_parts() {
        let net = "k8s-pod-network-".to_string() + &"n".repeat(180);
        let other = "k8s-pod-network-".to_string() + &"n".repeat(179) + "m";
        let cid = "0123456789abcdef".repeat(4);
        for (n, c, i) in [
            ("podman", "abc", "eth0"),
            (net.as_str(), cid.as_str(), "eth0"),
            ("n", "x".repeat(99).as_str(), "é"),
        ] {
            let o = Owner::parse(&of(n, c, i), Legacy::NetworkLast).unwrap();
            assert!(o.is(c, i) && o.in_network(n), "{o:?}");
            assert!(!o.is(c, "eth1") && !o.is("abd", i) && !o.in_network(&other) && !o.in_network("podman2"));
        }
        let o = Owner::parse(&of("podman", &cid, "eth0"), Legacy::Attachment).unwrap();
        assert_eq!((o.network(), o.container_id(), o.ifname()), (Some("podman"), cid.as_str(), "eth0"));
        for junk in ["", "a/b", "a/b/c/d", "cnirs_firewall", "masqAll"] {
            assert_eq!(Owner::parse(junk, Legacy::Attachment), None, "{junk}");
        }
    }

    #[test]
    fn earlier_tags_are_recognised_unless_cut_before_the_attachment() {
        let cid = "0123456789abcdef".repeat(4);
        let o = Owner::parse(&format!("{cid} eth0"), Legacy::Attachment).unwrap();
        assert!(o.is(&cid, "eth0") && !o.is(&cid, "eth1") && o.in_network("anything"));
        let o = Owner::parse(&format!("podman {cid} eth0"), Legacy::NetworkFirst).unwrap();
        assert!(o.is(&cid, "eth0") && o.in_network("podman") && !o.in_network("podman2"));
        let o = Owner::parse(&format!("{cid} eth0 podman"), Legacy::NetworkLast).unwrap();
        assert!(o.is(&cid, "eth0") && o.in_network("podman") && !o.in_network("podma"));
        // Cut at 128 bytes: portmap's network is compared by what is left;
        // the spoof check's cut tag no longer names its attachment.
        let net = "n".repeat(100);
        let cut = |s: String| s[..COMMENT_MAX].to_string();
        let o = Owner::parse(&cut(format!("{cid} eth0 {net}")), Legacy::NetworkLast).unwrap();
        assert!(o.is(&cid, "eth0") && o.in_network(&net) && !o.in_network("m"));
        assert_eq!(Owner::parse(&cut(format!("{net} {cid} eth0")), Legacy::NetworkFirst), None);
        assert_eq!(Owner::parse(&cut(format!("{} eth0", "c".repeat(130))), Legacy::Attachment), None);
        // A layout is read only where it was used.
        assert_eq!(Owner::parse(&format!("{cid} eth0"), Legacy::NetworkFirst), None);
    }

    #[test]
    fn rule_comments_name_their_network_only() {
        let long = "k8s-pod-network-".to_string() + &"n".repeat(180);
        for net in ["podman", "k8s-pod-network", long.as_str()] {
            let c = rule_comment(net, "10.88.0.0/16");
            assert!(rule_of(&c, net), "{c}");
            assert!(!rule_of(&c, &format!("{net}2")) && !rule_of(&c, "podma"), "{c}");
        }
        assert_eq!(rule_comment("podman", "in4"), "podman in4");
        // Earlier versions: the raw name, cut at 128 bytes.
        let old = format!("{long} 10.88.0.0/16");
        assert!(rule_of(&old[..COMMENT_MAX], &long));
        assert!(!rule_of(&old[..COMMENT_MAX], "k8s-pod-network"));
        assert!(rule_of("podman in4", "podman") && !rule_of("podman in4", "podman2"));
        assert!(!rule_of("clear-mark", "clear-mark2") && !rule_of("masqAll", "masqAll"));
    }

    #[test]
    fn set_names_include_the_earlier_name_while_nf_tables_took_it() {
        assert_eq!(set_names("m4_", "podman"), ["m4_podman"]);
        let long = "n".repeat(200);
        assert_eq!(set_names("m4_", &long), [set_name("m4_", &long), format!("m4_{long}")]);
        assert_eq!(set_names("m4_", &"n".repeat(253)), [set_name("m4_", &"n".repeat(253))]);
    }
}
