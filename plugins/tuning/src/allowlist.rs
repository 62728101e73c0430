//! The node's sysctl allowlist (`/etc/cni/tuning/allowlist.conf`): one
//! regular expression per line; when the file exists every sysctl key of a
//! config must match one of them (unanchored, as Go's `regexp.MatchString`).
//!
//! To avoid a regex dependency this is a small backtracking matcher for the
//! RE2 subset allowlists use: literals, `.`, `[...]` classes with ranges and
//! negation, `\d \w \s` (and negations) and escaped punctuation, groups
//! `(...)`/`(?:...)` with `|`, quantifiers `* + ? {n} {n,} {n,m}` (a lazy `?`
//! suffix is accepted: it does not change whether a key matches), anchors
//! `^ $`. Anything else (flags, `\b`, Unicode classes, ...) is refused with a
//! clear error naming the line, so an allowlist never silently allows more.

use std::path::Path;

use common::{CniError, Result};

pub const DEFAULT_PATH: &str = "/etc/cni/tuning/allowlist.conf";
/// Overrides the allowlist path (for packaging and tests). It comes from the
/// runtime's environment, never from a network config, so a config cannot
/// escape the node's allowlist.
pub const PATH_ENV: &str = "CNI_TUNING_ALLOWLIST";

/// Refuse keys that the allowlist at `path` (absent = allow all) does not cover.
pub fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    let path = std::env::var(PATH_ENV).unwrap_or_else(|_| DEFAULT_PATH.to_string());
    let Some(list) = load(Path::new(&path))? else { return Ok(()) };
    for key in keys {
        if !list.iter().any(|(_, re)| re.is_match(key)) {
            let pats: Vec<&str> = list.iter().map(|(p, _)| p.as_str()).collect();
            return Err(CniError::invalid_config(format!(
                "sysctl {key} is not allowed; only sysctls matching {pats:?} (from {path}) are allowed"
            )));
        }
    }
    Ok(())
}

fn load(path: &Path) -> Result<Option<Vec<(String, Regex)>>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(CniError::io(format!("reading the sysctl allowlist {}: {e}", path.display()))),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let re = Regex::new(line).map_err(|e| {
            CniError::invalid_config(format!("{}:{}: allowlist pattern {line:?}: {e}", path.display(), n + 1))
        })?;
        out.push((line.to_string(), re));
    }
    Ok(Some(out))
}

#[derive(Debug, Clone)]
enum Node {
    Char(char),
    Any,
    Class { negated: bool, items: Vec<(char, char)> },
    Start,
    End,
    Alt(Vec<Vec<Node>>),
    Repeat { node: Box<Node>, min: usize, max: usize },
}

#[derive(Debug, Clone)]
pub struct Regex {
    seq: Vec<Node>,
}

const DIGIT: &[(char, char)] = &[('0', '9')];
const WORD: &[(char, char)] = &[('0', '9'), ('A', 'Z'), ('a', 'z'), ('_', '_')];
const SPACE: &[(char, char)] = &[('\t', '\n'), ('\x0c', '\r'), (' ', ' ')];

struct Parser<'a> {
    s: &'a [char],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.s.get(self.i).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        self.i += 1;
        c
    }

    fn alt(&mut self) -> Result<Node, String> {
        let mut branches = vec![self.concat()?];
        while self.peek() == Some('|') {
            self.i += 1;
            branches.push(self.concat()?);
        }
        Ok(Node::Alt(branches))
    }

    fn concat(&mut self) -> Result<Vec<Node>, String> {
        let mut seq = Vec::new();
        while let Some(c) = self.peek() {
            if c == '|' || c == ')' {
                break;
            }
            let atom = self.atom()?;
            seq.push(self.quantified(atom)?);
        }
        Ok(seq)
    }

    fn quantified(&mut self, mut atom: Node) -> Result<Node, String> {
        loop {
            let (min, max) = match self.peek() {
                Some('*') => (0, usize::MAX),
                Some('+') => (1, usize::MAX),
                Some('?') => (0, 1),
                Some('{') if self.s[self.i..].contains(&'}') => {
                    self.i += 1;
                    let body: String = self.s[self.i..].iter().take_while(|c| **c != '}').collect();
                    self.i += body.len();
                    let num =
                        |t: &str| t.trim().parse::<usize>().map_err(|_| format!("bad repeat {{{body}}}"));
                    let (lo, hi) = match body.split_once(',') {
                        None => (num(&body)?, num(&body)?),
                        Some((lo, "")) => (num(lo)?, usize::MAX),
                        Some((lo, hi)) => (num(lo)?, num(hi)?),
                    };
                    if lo > hi || lo > 1000 {
                        return Err(format!("bad repeat {{{body}}}"));
                    }
                    (lo, hi)
                }
                _ => return Ok(atom),
            };
            self.i += 1;
            if matches!(atom, Node::Start | Node::End | Node::Repeat { .. }) {
                return Err("nothing to repeat".into());
            }
            if self.peek() == Some('?') {
                self.i += 1; // lazy: same set of matching keys
            }
            atom = Node::Repeat { node: Box::new(atom), min, max };
        }
    }

    fn atom(&mut self) -> Result<Node, String> {
        match self.next().ok_or("unexpected end")? {
            '(' => {
                if self.peek() == Some('?') {
                    if self.s.get(self.i + 1) == Some(&':') {
                        self.i += 2;
                    } else {
                        return Err("group flags and named groups are not supported".into());
                    }
                }
                let inner = self.alt()?;
                if self.next() != Some(')') {
                    return Err("missing )".into());
                }
                Ok(inner)
            }
            '[' => self.class(),
            '.' => Ok(Node::Any),
            '^' => Ok(Node::Start),
            '$' => Ok(Node::End),
            '\\' => self.escape(false).map(|items| match items {
                Esc::Char(c) => Node::Char(c),
                Esc::Class(negated, items) => Node::Class { negated, items },
            }),
            c @ ('*' | '+' | '?') => Err(format!("nothing to repeat before {c}")),
            ')' => Err("unexpected )".into()),
            c => Ok(Node::Char(c)),
        }
    }

    fn escape(&mut self, in_class: bool) -> Result<Esc, String> {
        let c = self.next().ok_or("trailing backslash")?;
        Ok(match c {
            'd' => Esc::Class(false, DIGIT.to_vec()),
            'D' => Esc::Class(true, DIGIT.to_vec()),
            'w' => Esc::Class(false, WORD.to_vec()),
            'W' => Esc::Class(true, WORD.to_vec()),
            's' => Esc::Class(false, SPACE.to_vec()),
            'S' => Esc::Class(true, SPACE.to_vec()),
            't' => Esc::Char('\t'),
            'n' => Esc::Char('\n'),
            c if c.is_ascii_punctuation() => Esc::Char(c),
            c => {
                let _ = in_class;
                return Err(format!("escape \\{c} is not supported"));
            }
        })
    }

    fn class(&mut self) -> Result<Node, String> {
        let negated = self.peek() == Some('^');
        if negated {
            self.i += 1;
        }
        let mut items = Vec::new();
        let mut first = true;
        loop {
            let c = self.next().ok_or("missing ]")?;
            if c == ']' && !first {
                break;
            }
            first = false;
            let lo = match c {
                '\\' => match self.escape(true)? {
                    Esc::Char(c) => c,
                    Esc::Class(false, its) => {
                        items.extend(its);
                        continue;
                    }
                    Esc::Class(true, _) => return Err("negated escapes inside [] are not supported".into()),
                },
                '[' if self.peek() == Some(':') => return Err("[:classes:] are not supported".into()),
                c => c,
            };
            if self.peek() == Some('-') && self.s.get(self.i + 1).is_some_and(|c| *c != ']') {
                self.i += 1;
                let hi = match self.next().ok_or("missing ]")? {
                    '\\' => match self.escape(true)? {
                        Esc::Char(c) => c,
                        Esc::Class(..) => return Err("bad range".into()),
                    },
                    c => c,
                };
                if hi < lo {
                    return Err(format!("bad range {lo}-{hi}"));
                }
                items.push((lo, hi));
            } else {
                items.push((lo, lo));
            }
        }
        Ok(Node::Class { negated, items })
    }
}

enum Esc {
    Char(char),
    Class(bool, Vec<(char, char)>),
}

impl Regex {
    pub fn new(pattern: &str) -> Result<Regex, String> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut p = Parser { s: &chars, i: 0 };
        let node = p.alt()?;
        if p.i < chars.len() {
            return Err("unexpected )".into());
        }
        Ok(Regex { seq: vec![node] })
    }

    /// True when the pattern matches anywhere in `text`.
    pub fn is_match(&self, text: &str) -> bool {
        let s: Vec<char> = text.chars().collect();
        (0..=s.len()).any(|start| seq(&self.seq, start, &s, &mut |_| true))
    }
}

fn seq(nodes: &[Node], pos: usize, s: &[char], k: &mut dyn FnMut(usize) -> bool) -> bool {
    match nodes.split_first() {
        None => k(pos),
        Some((n, rest)) => node(n, pos, s, &mut |p| seq(rest, p, s, k)),
    }
}

fn node(n: &Node, pos: usize, s: &[char], k: &mut dyn FnMut(usize) -> bool) -> bool {
    match n {
        Node::Char(c) => s.get(pos) == Some(c) && k(pos + 1),
        Node::Any => s.get(pos).is_some_and(|c| *c != '\n') && k(pos + 1),
        Node::Class { negated, items } => {
            s.get(pos).is_some_and(|c| items.iter().any(|(lo, hi)| lo <= c && c <= hi) != *negated)
                && k(pos + 1)
        }
        Node::Start => pos == 0 && k(pos),
        Node::End => pos == s.len() && k(pos),
        Node::Alt(branches) => branches.iter().any(|b| seq(b, pos, s, k)),
        Node::Repeat { node: inner, min, max } => repeat(inner, *min, *max, 0, pos, s, k),
    }
}

fn repeat(
    n: &Node,
    min: usize,
    max: usize,
    count: usize,
    pos: usize,
    s: &[char],
    k: &mut dyn FnMut(usize) -> bool,
) -> bool {
    if count < max
        && node(n, pos, s, &mut |p| {
            // An empty iteration once the minimum is met cannot lead anywhere new.
            !(p == pos && count >= min) && repeat(n, min, max, count + 1, p, s, k)
        })
    {
        return true;
    }
    count >= min && k(pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Regex::new(p).unwrap_or_else(|e| panic!("{p}: {e}")).is_match(t)
    }

    #[test]
    fn reference_style_allowlists() {
        let p = r"^net\.ipv4\.conf\.IFNAME\.[a-z_]*$";
        assert!(m(p, "net.ipv4.conf.IFNAME.arp_ignore"));
        assert!(!m(p, "net.ipv4.conf.IFNAME.arp_ignore2"));
        assert!(!m(p, "net.ipv4.conf.eth0.arp_ignore"));
        assert!(!m(p, "xnet.ipv4.conf.IFNAME.a"));
        assert!(m(r"^net\.core\.somaxconn$", "net.core.somaxconn"));
        assert!(!m(r"^net\.core\.somaxconn$", "net.core.somaxconnx"));
        // Unanchored, like Go's MatchString.
        assert!(m(r"ipv6", "net.ipv6.conf.all.disable_ipv6"));
        assert!(m(r"net.ipv4", "net/ipv4"));
    }

    #[test]
    fn operators() {
        assert!(m(r"^a(b|cd)+e$", "abcdbe"));
        assert!(!m(r"^a(b|cd)+e$", "ae"));
        assert!(m(r"^a(?:b|c)?e$", "ae"));
        assert!(m(r"^x{2,3}$", "xxx") && !m(r"^x{2,3}$", "xxxx") && !m(r"^x{2}$", "x"));
        assert!(m(r"^x{2,}$", "xxxxx"));
        assert!(m(r"^\d+\.\w+$", "12.ab_c") && !m(r"^\d+$", "1a"));
        assert!(m(r"^[^.]+$", "abc") && !m(r"^[^.]+$", "a.c"));
        assert!(m(r"^[-a-c]+$", "a-b") && m(r"^[a-c-]+$", "c-"));
        assert!(m(r"^(a*)*b$", "aaab") && !m(r"^(a*)*b$", "aaac"));
        assert!(m(r"^.*?x$", "abx"));
        assert!(m(r"", "anything"));
        assert!(m(r"^$", "") && !m(r"^$", "a"));
    }

    #[test]
    fn unsupported_syntax_is_refused() {
        for bad in [r"(?i)net", r"\bnet", r"\pL", r"[[:alpha:]]", r"a)", r"(a", r"*a", r"[a", r"a{3,1}", r"\"]
        {
            assert!(Regex::new(bad).is_err(), "{bad}");
        }
    }
}
