//! Which cni-rs version a binary on disk is, read from the file itself (the
//! marker `common::skel::BUILD_MARKER` puts in every plugin), and semver order.

use std::cmp::Ordering;

/// What precedes the version in the marker; the version ends at the next NUL.
pub const MARKER_PREFIX: &[u8] = b"\0cni-rs-plugins version ";

/// The version a binary carries, or None when it is not one of ours.
pub fn of_binary(bytes: &[u8]) -> Option<Version> {
    let at = bytes.windows(MARKER_PREFIX.len()).position(|w| w == MARKER_PREFIX)?;
    let rest = &bytes[at + MARKER_PREFIX.len()..];
    let end = rest.iter().take(64).position(|&b| b == 0)?;
    Version::parse(std::str::from_utf8(&rest[..end]).ok()?)
}

/// `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, ordered as semver orders it (build
/// metadata ignored; a pre-release sorts before its release).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    text: String,
    core: [u64; 3],
    pre: Vec<String>,
}

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let no_build = s.split('+').next()?;
        let (core, pre) = match no_build.split_once('-') {
            Some((c, p)) => (c, p.split('.').map(str::to_owned).collect()),
            None => (no_build, Vec::new()),
        };
        let nums: Vec<u64> = core.split('.').map(|n| n.parse().ok()).collect::<Option<_>>()?;
        let core: [u64; 3] = nums.try_into().ok()?;
        let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+');
        if !s.chars().all(ok) || pre.iter().any(String::is_empty) {
            return None;
        }
        Some(Version { text: s.to_owned(), core, pre })
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.core.cmp(&other.core).then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => {
                for (a, b) in self.pre.iter().zip(&other.pre) {
                    let o = match (a.parse::<u64>(), b.parse::<u64>()) {
                        (Ok(x), Ok(y)) => x.cmp(&y),
                        (Ok(_), Err(_)) => Ordering::Less,
                        (Err(_), Ok(_)) => Ordering::Greater,
                        (Err(_), Err(_)) => a.cmp(b),
                    };
                    if o != Ordering::Equal {
                        return o;
                    }
                }
                self.pre.len().cmp(&other.pre.len())
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap_or_else(|| panic!("{s}"))
    }

    #[test]
    fn semver_order() {
        let sorted = [
            "0.0.9",
            "0.1.0-alpha",
            "0.1.0-alpha.1",
            "0.1.0-alpha.beta",
            "0.1.0-beta.2",
            "0.1.0-beta.11",
            "0.1.0-rc.1",
            "0.1.0",
            "0.1.1",
            "0.2.0",
            "0.10.0",
            "1.0.0",
        ];
        for w in sorted.windows(2) {
            assert!(v(w[0]) < v(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(v("1.2.3+build.7").cmp(&v("1.2.3")), Ordering::Equal);
    }

    #[test]
    fn rejects_what_is_not_a_version() {
        for bad in ["", "1", "1.2", "1.2.3.4", "a.b.c", "1.2.3-", "1.2.3-a..b", "1.2.3 x", "-1.2.3"] {
            assert!(Version::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn marker_is_found_in_the_bytes_and_ends_at_nul() {
        let mut bin = b"\x7fELF junk".to_vec();
        bin.extend_from_slice(MARKER_PREFIX);
        bin.extend_from_slice(b"1.4.0\0more");
        assert_eq!(of_binary(&bin), Some(v("1.4.0")));
        assert_eq!(of_binary(b"\x7fELF nothing of ours"), None);
        // Unterminated or garbage after the prefix: not ours.
        let mut cut = MARKER_PREFIX.to_vec();
        cut.extend_from_slice(b"1.4.0");
        assert_eq!(of_binary(&cut), None);
    }

    #[test]
    fn the_plugins_marker_is_the_one_we_scan_for() {
        let m = common::skel::BUILD_MARKER.as_bytes();
        assert!(m.starts_with(MARKER_PREFIX));
        assert_eq!(of_binary(m), Some(v(env!("CARGO_PKG_VERSION"))));
    }
}
