//! `CNI_ARGS`: `K=V;K=V` pairs, as libcni's `LoadArgs` reads them.

use crate::error::{shown, CniError, Result};

/// The `known_args` of a plugin that accepts every key (the default), as
/// the reference plugins that never call libcni's `LoadArgs` do.
pub const ANY: &[&str] = &["*"];

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniArgs {
    pairs: Vec<(String, String)>,
}

fn truthy(v: &str) -> bool {
    v == "1" || v.eq_ignore_ascii_case("true")
}

impl CniArgs {
    pub fn parse(s: &str) -> Result<CniArgs> {
        let mut pairs = Vec::new();
        for item in s.split(';').filter(|p| !p.is_empty()) {
            let mut kv = item.split('=');
            match (kv.next(), kv.next(), kv.next()) {
                (Some(k), Some(v), None) if !k.is_empty() => pairs.push((k.to_string(), v.to_string())),
                _ => {
                    return Err(CniError::invalid_env(format!(
                        "invalid CNI_ARGS pair {}: expected KEY=VALUE",
                        shown(item)
                    )))
                }
            }
        }
        Ok(CniArgs { pairs })
    }

    /// The value of `key` (exact, case-sensitive, as libcni matches struct fields).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    pub fn ignore_unknown(&self) -> bool {
        self.get("IgnoreUnknown").is_some_and(truthy)
    }

    /// Fail on keys the plugin does not know, unless `IgnoreUnknown` is set.
    pub fn check_known(&self, known: &[&str]) -> Result<()> {
        if self.ignore_unknown() || known == ANY {
            return Ok(());
        }
        match self.pairs.iter().find(|(k, _)| k != "IgnoreUnknown" && !known.contains(&k.as_str())) {
            Some((k, _)) => Err(CniError::invalid_env(format!(
                "CNI_ARGS: unknown key {} (set IgnoreUnknown=1 to ignore unknown keys)",
                shown(k)
            ))),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pairs_and_rejects_malformed_ones() {
        let a = CniArgs::parse("IgnoreUnknown=1;K8S_POD_NAME=web;IP=10.0.0.5").unwrap();
        assert_eq!(a.get("K8S_POD_NAME"), Some("web"));
        assert_eq!(a.get("ip"), None, "keys are case-sensitive");
        assert!(a.ignore_unknown());
        assert_eq!(CniArgs::parse("").unwrap(), CniArgs::default());
        for bad in ["IP", "A=b=c", "=x"] {
            assert_eq!(CniArgs::parse(bad).unwrap_err().code, 4, "{bad}");
        }
    }

    #[test]
    fn unknown_keys_need_ignore_unknown() {
        let a = CniArgs::parse("FOO=bar").unwrap();
        assert_eq!(a.check_known(&["IP"]).unwrap_err().code, 4);
        for on in ["1", "true", "True"] {
            assert!(CniArgs::parse(&format!("FOO=bar;IgnoreUnknown={on}"))
                .unwrap()
                .check_known(&["IP"])
                .is_ok());
        }
        assert!(CniArgs::parse("IgnoreUnknown=0;FOO=1").unwrap().check_known(&[]).is_err());
        assert!(CniArgs::parse("IP=1.2.3.4").unwrap().check_known(&["IP"]).is_ok());
        assert!(CniArgs::parse("K8S_POD_NAME=web;FOO=1").unwrap().check_known(ANY).is_ok());
    }
}
