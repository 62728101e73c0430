//! CNI spec versions and what each era of them looks like.

/// Every version we read and write, oldest first.
pub const ALL: [&str; 7] = ["0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];
pub const LATEST: &str = "1.1.0";

/// Result shapes: `ip4`/`ip6` (0.1–0.2), `ips` with `version` (0.3–0.4), `ips` (1.x).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Era {
    Legacy,
    V03,
    V1,
}

pub fn era(ver: &str) -> Option<Era> {
    match ver {
        "0.1.0" | "0.2.0" => Some(Era::Legacy),
        "0.3.0" | "0.3.1" | "0.4.0" => Some(Era::V03),
        "1.0.0" | "1.1.0" => Some(Era::V1),
        _ => None,
    }
}

/// `major.minor.patch` as numbers; None for anything else.
pub fn parse(ver: &str) -> Option<(u32, u32, u32)> {
    let mut it = ver.split('.').map(|p| p.parse::<u32>().ok());
    let v = (it.next()??, it.next()??, it.next()??);
    it.next().is_none().then_some(v)
}

/// `ver >= min` for well-formed versions.
pub fn at_least(ver: &str, min: &str) -> bool {
    matches!((parse(ver), parse(min)), (Some(a), Some(b)) if a >= b)
}

pub fn supported(ver: &str) -> bool {
    ALL.contains(&ver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_ordering() {
        assert!(at_least("0.4.0", "0.4.0"));
        assert!(at_least("1.0.0", "0.4.0"));
        assert!(!at_least("0.3.1", "0.4.0"));
        assert!(!at_least("1.0.0", "1.1.0"));
        assert!(!at_least("x", "0.1.0"));
        assert_eq!(parse("1.0"), None);
        assert_eq!(parse("1.0.0.0"), None);
        assert!(ALL.iter().all(|v| era(v).is_some()));
    }
}
