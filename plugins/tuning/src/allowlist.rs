//! The node's sysctl allowlist (`/etc/cni/tuning/allowlist.conf`), applied as
//! the reference applies it: every non-empty line, trimmed, is a Go (RE2)
//! regular expression, and a key (as written in the config, before `IFNAME`
//! is replaced) is allowed when one of them matches anywhere in it
//! (`regexp.MatchString`: unanchored).
//!
//! regex-lite matches in time linear in the key, with RE2's meaning where keys
//! need it: `\d \w \s \b` and `[[:alpha:]]` are ASCII, `.` and `[^…]` take one
//! character. Where the two syntaxes part, `go_to_lite` rewrites Go's meaning
//! (`\<`, `\>` and a `{` that is no repeat count are literals in Go; under
//! `(?i)` a class holds both cases of its letters) or
//! refuses the line; case folding is ASCII-only here, so a case-insensitive
//! pattern is refused for non-ASCII text. Go syntax regex-lite lacks (`\pL`,
//! `\Q…\E`, octal escapes) is refused naming the line. Every refusal fails
//! closed: a pattern Go accepts never allows a key that Go's reading refuses.

use std::path::Path;

use common::{CniError, Result};
use regex_lite::Regex;

pub const DEFAULT_PATH: &str = "/etc/cni/tuning/allowlist.conf";
/// Overrides the allowlist path (for packaging and tests). It comes from the
/// runtime's environment, never from a network config, so a config cannot
/// escape the node's allowlist.
pub const PATH_ENV: &str = "CNI_TUNING_ALLOWLIST";

/// Refuse keys that the allowlist (absent = allow all) does not cover. The
/// file is read and compiled only when there is a key to check.
pub fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    let mut keys = keys.into_iter().peekable();
    if keys.peek().is_none() {
        return Ok(());
    }
    let path = std::env::var(PATH_ENV).unwrap_or_else(|_| DEFAULT_PATH.to_string());
    let Some(list) = Allowlist::load(Path::new(&path))? else { return Ok(()) };
    keys.try_for_each(|key| list.check(key))
}

struct Entry {
    line: usize,
    pattern: String,
    re: Regex,
    folds_case: bool,
}

/// The compiled allowlist.
pub struct Allowlist {
    path: String,
    entries: Vec<Entry>,
}

impl Allowlist {
    fn load(path: &Path) -> Result<Option<Allowlist>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CniError::io(format!(
                    "reading the node's sysctl allowlist {}: {e}",
                    path.display()
                )))
            }
        };
        Allowlist::parse(&text, &path.display().to_string()).map(Some)
    }

    /// The allowlist in `text`, read from `path` (named in errors).
    pub fn parse(text: &str, path: &str) -> Result<Allowlist> {
        let path = path.to_string();
        let mut entries = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let compiled = go_to_lite(pattern).and_then(|(lite, folds_case)| {
                let re = Regex::new(&lite).map_err(|e| e.to_string())?;
                Ok((re, folds_case))
            });
            let (re, folds_case) = compiled.map_err(|why| invalid_allowlist(&path, n + 1, pattern, &why))?;
            entries.push(Entry { line: n + 1, pattern: pattern.to_string(), re, folds_case });
        }
        Ok(Allowlist { path, entries })
    }

    /// Ok when a line matches `key` (code 7 otherwise).
    pub fn check(&self, key: &str) -> Result<()> {
        for e in &self.entries {
            if e.folds_case && !key.is_ascii() {
                return Err(CniError::invalid_config(format!(
                    "sysctl {key} cannot be checked against line {} ({:?}) of the node's allowlist {}: \
                     case-insensitive matching of non-ASCII keys is not supported",
                    e.line, e.pattern, self.path
                )));
            }
            if e.re.is_match(key) {
                return Ok(());
            }
        }
        let pats: Vec<&str> = self.entries.iter().map(|e| e.pattern.as_str()).collect();
        Err(CniError::invalid_config(format!(
            "sysctl {key} is not allowed; only sysctls matching {pats:?} (from {}) are allowed",
            self.path
        )))
    }
}

/// A broken allowlist is the node's problem, not the network config's: a
/// generic failure (the reference's code too) that tells the operator which
/// file and line to fix.
fn invalid_allowlist(path: &str, line: usize, pattern: &str, why: &str) -> CniError {
    CniError::internal(format!(
        "the node's sysctl allowlist {path} is invalid at line {line} ({pattern:?}): no sysctl can be \
         set until it is fixed"
    ))
    .with_details(why)
}

/// Go's RE2 syntax in regex-lite's, and whether the pattern folds case.
pub fn go_to_lite(go: &str) -> std::result::Result<(String, bool), String> {
    let s: Vec<char> = go.chars().collect();
    let mut out = String::with_capacity(go.len() + 8);
    let mut folds_case = false;
    // Whether (?i) is on here, and what it was outside each open group.
    let (mut ci, mut outer_ci) = (false, Vec::new());
    let mut in_class = false;
    let mut class_body = 0;
    let mut i = 0;
    while i < s.len() {
        let c = s[i];
        i += 1;
        match c {
            '\\' => match s.get(i) {
                // Escaped punctuation is the character itself in Go; regex-lite
                // reads `\<` and `\>` as word boundaries.
                Some(e @ ('<' | '>')) => {
                    out.push(*e);
                    i += 1;
                }
                Some(e) if e.is_ascii_alphanumeric() && !"aftnrvxAbBzdDsSwWpPQE01234567".contains(*e) => {
                    return Err(format!("\\{e} is not RE2 syntax"));
                }
                Some(e) => {
                    out.push('\\');
                    out.push(*e);
                    i += 1;
                }
                None => out.push('\\'),
            },
            '[' if !in_class => {
                in_class = true;
                out.push('[');
                if s.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                class_body = out.len();
                if s.get(i) == Some(&']') {
                    out.push(']'); // first: a literal, as in Go
                    i += 1;
                }
            }
            ']' if in_class => {
                in_class = false;
                if ci {
                    let other_case = other_case_letters(&out[class_body..]);
                    // Before a trailing literal `-`, which would otherwise start a range.
                    let at =
                        if ends_with_bare_hyphen(&out[class_body..]) { out.len() - 1 } else { out.len() };
                    out.insert_str(at, &other_case);
                }
                out.push(']');
            }
            // Go classes do not nest: `[` is a literal unless it opens `[:name:]`.
            '[' => match named_class_len(&s[i..]) {
                Some(len) => {
                    out.push('[');
                    out.extend(&s[i..i + len]);
                    i += len;
                }
                None => out.push_str("\\["),
            },
            // Literals in Go; regex-lite would read `&&` and `~~` as set operations.
            '&' | '~' if in_class => {
                out.push('\\');
                out.push(c);
            }
            '{' if !in_class => match repeat_count(&s[i..]) {
                Some((len, counts)) if counts.iter().all(|n| *n <= 1000) => {
                    out.push('{');
                    out.extend(&s[i..i + len]);
                    i += len;
                }
                Some(_) => return Err("repeat counts above 1000 are not RE2 syntax".into()),
                None => out.push_str("\\{"), // no repeat count: a literal in Go
            },
            '(' if !in_class => {
                let flags: String = match s.get(i) {
                    Some('?') => {
                        s[i + 1..].iter().take_while(|c| c.is_ascii_alphabetic() || **c == '-').collect()
                    }
                    _ => String::new(),
                };
                let after_flags = s.get(i + 1 + flags.len());
                let sets_flags = s.get(i) == Some(&'?') && matches!(after_flags, Some(':' | ')'));
                // `(?flags)` changes the enclosing group; anything else opens a group.
                if !(sets_flags && after_flags == Some(&')')) {
                    outer_ci.push(ci);
                }
                if sets_flags {
                    if let Some(f) = flags.chars().find(|f| !"imsU-".contains(*f)) {
                        return Err(format!("flag {f} is not RE2 syntax"));
                    }
                    let (on, off) = flags.split_once('-').unwrap_or((&flags, ""));
                    if on.contains('i') {
                        ci = true;
                    }
                    if off.contains('i') {
                        ci = false;
                    }
                    folds_case |= on.contains('i');
                    // Copied whole: the `)` of `(?i)` closes no group.
                    out.push_str("(?");
                    out.push_str(&flags);
                    out.extend(after_flags);
                    i += 2 + flags.len();
                } else {
                    out.push('(');
                }
            }
            ')' if !in_class => {
                ci = outer_ci.pop().unwrap_or(ci);
                out.push(')');
            }
            c => out.push(c),
        }
    }
    if folds_case && !go.is_ascii() {
        return Err("case-insensitive matching of non-ASCII characters is not supported".into());
    }
    Ok((out, folds_case))
}

/// The ASCII letters whose other case is missing from the class `body`
/// (translated, without its brackets and `^`). Under `(?i)` they are added
/// to the class: regex-lite 0.1.9 folds a range only on one side of the
/// alphabet (`[E-a]` gains `A` but not `e-z`), Go folds every letter.
fn other_case_letters(body: &str) -> String {
    // A literal `^` first in the body would negate the test class.
    let escape = if body.starts_with('^') { "\\" } else { "" };
    let Ok(class) = Regex::new(&format!("^[{escape}{body}]$")) else { return String::new() };
    let has = |c: u8| class.is_match(std::str::from_utf8(&[c]).unwrap_or_default());
    (b'A'..=b'Z')
        .chain(b'a'..=b'z')
        .filter(|&c| has(c) && !has(c ^ 0x20))
        .map(|c| char::from(c ^ 0x20))
        .collect()
}

/// Does the class body end in a `-` that is not escaped?
fn ends_with_bare_hyphen(body: &str) -> bool {
    let Some(rest) = body.strip_suffix('-') else { return false };
    rest.bytes().rev().take_while(|&b| b == b'\\').count() % 2 == 0
}

/// `:name:]` after a `[` inside a class: its length.
fn named_class_len(s: &[char]) -> Option<usize> {
    if s.first() != Some(&':') {
        return None;
    }
    s[1..].windows(2).position(|w| w == [':', ']']).map(|close| close + 3)
}

/// After a `{`: Go's `n}`, `n,}` or `n,m}` (decimal, no leading zeros), as
/// (length up to and with `}`, the counts).
fn repeat_count(s: &[char]) -> Option<(usize, Vec<u32>)> {
    let end = s.iter().position(|c| *c == '}')?;
    let body: String = s[..end].iter().collect();
    let (lo, hi) = match body.split_once(',') {
        None => (body.as_str(), None),
        Some((lo, hi)) => (lo, Some(hi)),
    };
    let num = |t: &str| {
        let ok = !t.is_empty() && t.len() <= 8 && t.bytes().all(|b| b.is_ascii_digit());
        (ok && !(t.len() > 1 && t.starts_with('0'))).then(|| t.parse::<u32>().ok()).flatten()
    };
    let mut counts = vec![num(lo)?];
    match hi {
        Some("") | None => {}
        Some(hi) => counts.push(num(hi)?),
    }
    Some((end + 1, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(text: &str) -> std::result::Result<Allowlist, CniError> {
        let dir = std::env::temp_dir().join(format!("tuning-allowlist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file =
            dir.join(format!("{:x}.conf", text.len() * 31 + text.bytes().map(usize::from).sum::<usize>()));
        std::fs::write(&file, text).unwrap();
        let r = Allowlist::load(&file).map(Option::unwrap);
        let _ = std::fs::remove_file(&file);
        r
    }

    fn allows(pattern: &str, key: &str) -> bool {
        let l = list(pattern).unwrap_or_else(|e| panic!("{pattern}: {} ({})", e.msg, e.details));
        match l.check(key) {
            Ok(()) => true,
            Err(e) if e.code == 7 => false,
            Err(e) => panic!("{pattern} on {key:?}: {e:?}"),
        }
    }

    /// Each (pattern, key, what Go 1.19's `regexp.MatchString` answers).
    #[test]
    fn matches_like_gos_match_string() {
        let cases: &[(&str, &str, bool)] = &[
            // Unanchored unless anchored; `.` is any character.
            (r"ipv6", "net.ipv6.conf.all.disable_ipv6", true),
            (r"^net", "xnet.core", false),
            (r"somaxconn$", "net.core.somaxconnx", false),
            (r"net.ipv4", "net/ipv4", true),
            (r"^net\.core\.somaxconn$", "net.core.somaxconn", true),
            (r"^net\.ipv4\.conf\.IFNAME\.[a-z_]*$", "net.ipv4.conf.IFNAME.arp_ignore", true),
            (r"^net\.ipv4\.conf\.IFNAME\.[a-z_]*$", "net.ipv4.conf.eth0.arp_ignore", false),
            (r"^net\.ipv4\.conf\.IFNAME\.[a-z_]*$", "net.ipv4.conf.IFNAME.arp_ignore2", false),
            // Perl and POSIX classes are ASCII; `.` and `[^…]` take a whole character.
            (r"^net\.\d$", "net.٣", false),
            (r"^net\.\w$", "net.é", false),
            (r"^net\.\W$", "net.é", true),
            (r"^net\.[[:alpha:]]+$", "net.é", false),
            (r"^net\..$", "net.é", true),
            (r"^net\.[^a]$", "net.é", true),
            (r"\bé", "é", false),
            // Escaped punctuation is a literal in Go (word boundaries in regex-lite).
            (r"\<net", "net.core", false),
            (r"\<net", "<net.core", true),
            (r"net\>", "net>", true),
            (r"^[\<]$", "<", true),
            // A `{` that is no repeat count is a literal in Go.
            (r"\b{start}net", "net", false),
            (r"^x{ 2}$", "xx", false),
            (r"^x{ 2}$", "x{ 2}", true),
            (r"^x{01}$", "x", false),
            (r"^x{01}$", "x{01}", true),
            (r"^x{,3}$", "x{,3}", true),
            (r"^x{2,3}$", "xxx", true),
            (r"^x{2,}$", "xxxxx", true),
            (r"^\b{2}net", "net", true),
            // Go classes do not nest and know no set operations.
            (r"^[a&&b]$", "&", true),
            (r"^[a~~b]$", "~", true),
            (r"^[]a]+$", "]a", true),
            (r"^[a[:digit:]]$", "5", true),
            (r"^[[:^alpha:]]$", "1", true),
            // Flags Go knows.
            (r"(?i)^NET\.CORE", "net.core.x", true),
            (r"(?-i)net", "NET", false),
            (r"(?i:net)\.core", "NET.core", true),
            (r"^abc$", "abc\n", false),
            (r"(?m)^b$", "a\nb", true),
            // Case folding of a class whose range runs from capitals into small
            // letters (regex-lite 0.1.9 folds only one side of such a range).
            (r"(?i)^[E-a]$", "e", true),
            (r"(?i)^[TE-a]$", "t", true),
            (r"(?i)^[^E-a]$", "e", false),
            (r"(?i)^[^E-a]$", "b", true),
            (r"(?i)^net\.[A-Z_a]+$", "net.core", true),
            // … and only where the flag is on.
            (r"(?i:x)[E-a]", "xe", false),
            (r"(?i)(?-i:[E-a])", "e", false),
            (r"(?i:[E-a])", "e", true),
            (r"(?i)(x)[E-a]", "xe", true),
            (r"((?i)x)[E-a]", "xe", false),
            (r"((?i)[E-a])", "e", true),
            (r"(?i)(?:a|(?-i)b)[E-a]", "ae", true),
            (r"(?i)^[TE-]+$", "net", false),
            (r"(?i)^[^^[TE-a]+$", "net", false),
            (r"(?i)^[^^[TE-a]+$", "x!", false),
            (r"(?i)^[^^[TE-a]+$", "1!", true),
            (r"(?i)^[^^[TE-a]+$", "b", true),
            (r"(?i)^[^T]+$", "t", false),
            (r"(?i)^[TE-]+$", "e-T", true),
            (r"(?i)^[TE\-]+$", "e-T", true),
            (r"(?i)^[TE\\-]+$", "e\\T-", true),
            (r"^(a*)*b$", "aaab", true),
        ];
        for (p, k, want) in cases {
            assert_eq!(allows(p, k), *want, "{p} on {k:?}");
        }
    }

    #[test]
    fn nested_quantifiers_take_linear_time() {
        let a = "a".repeat(10_000);
        assert!(!allows(r"(a*)*b", &a));
        assert!(!allows(r"^(a+)+$", &format!("{a}!")));
        assert!(!allows(r"^(a|a)*$", &format!("{a}!")));
        assert!(!allows(r"(.*)*(.*)*x", &a));
    }

    #[test]
    fn any_line_allows_and_blank_lines_do_not() {
        let l = list("  ^net\\.core\\.somaxconn$  \n\n\t\n^net\\.ipv4\\.ip_forward$\n").unwrap();
        assert!(l.check("net.core.somaxconn").is_ok() && l.check("net.ipv4.ip_forward").is_ok());
        let e = l.check("net.ipv4.tcp_syncookies").unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.contains("not allowed"), "{}", e.msg);
        // A file without patterns allows nothing (as the reference's).
        assert_eq!(list("\n  \n").unwrap().check("net.core.somaxconn").unwrap_err().code, 7);
    }

    #[test]
    fn syntax_go_has_and_regex_lite_lacks_is_refused_naming_the_line() {
        for bad in
            [r"\pL", r"\p{Greek}", r"\Q.\E", r"\101", r"(?x)net", r"(?u)net", r"\u0041", r"x{1001}", r"(net"]
        {
            let e = list(&format!("^net\\.core\\.somaxconn$\n\n{bad}\n"))
                .err()
                .unwrap_or_else(|| panic!("{bad}"));
            assert_eq!(e.code, 999, "{bad}");
            assert!(e.msg.contains("line 3") && e.msg.contains("no sysctl"), "{bad}: {}", e.msg);
            assert!(!e.details.is_empty(), "{bad}");
        }
    }

    #[test]
    fn case_folding_beyond_ascii_is_refused() {
        assert!(list("(?i)^net\\.é$").is_err());
        let l = list("(?i)^net\\.ipv4\\.conf\\.[^k]+\\.arp_ignore$\n").unwrap();
        assert!(l.check("net.ipv4.conf.ETH0.arp_ignore").is_ok());
        // Go folds the Kelvin sign into `k`: [^k] refuses it there; ASCII folding would not.
        let e = l.check("net.ipv4.conf.\u{212a}.arp_ignore").unwrap_err();
        assert!(e.code == 7 && e.msg.contains("cannot be checked against line 1"), "{}", e.msg);
        // Without (?i) non-ASCII keys are matched as Go matches them.
        assert!(allows(r"^net\.ipv4\.conf\.[^.]+\.arp_ignore$", "net.ipv4.conf.é.arp_ignore"));
    }
}
