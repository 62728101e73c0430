//! `resolvConf`: the host's resolver settings copied into the result's `dns`.

use std::path::Path;

use common::spec::Dns;
use common::{CniError, Result};

/// Read a resolv.conf. The config names the file, so an unreadable one is a
/// configuration error, reported before any address is taken.
pub fn read_resolv_conf(path: &Path) -> Result<Dns> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CniError::invalid_config(format!("cannot read resolvConf {}: {e}", path.display())))?;
    Ok(parse_resolv_conf(&text))
}

/// The keywords the reference understands: every `nameserver`, the last
/// `domain`, and all `search` and `options` words in order. Comments (`#`,
/// `;`) and lines with a keyword but no value are skipped.
pub fn parse_resolv_conf(text: &str) -> Dns {
    let mut dns = Dns::default();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(key), rest) = (words.next(), words.collect::<Vec<_>>()) else { continue };
        let Some(first) = rest.first() else { continue };
        match key {
            "nameserver" => dns.nameservers.push(first.to_string()),
            "domain" => dns.domain = first.to_string(),
            "search" => dns.search.extend(rest.iter().map(|s| s.to_string())),
            "options" => dns.options.extend(rest.iter().map(|s| s.to_string())),
            _ => {}
        }
    }
    dns
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_keyword_and_skips_noise() {
        let dns = parse_resolv_conf(
            "# generated\n; also a comment\n\n  nameserver 10.0.0.1\nnameserver fe80::1%eth0 extra\n\
             domain first.example\ndomain example.com\nsearch a.example b.example\nsearch c.example\n\
             options ndots:5 timeout:2\noptions rotate\nnameserver\nsortlist 10.0.0.0/8\nbogus line here\n",
        );
        assert_eq!(dns.nameservers, ["10.0.0.1", "fe80::1%eth0"]);
        assert_eq!(dns.domain, "example.com");
        assert_eq!(dns.search, ["a.example", "b.example", "c.example"]);
        assert_eq!(dns.options, ["ndots:5", "timeout:2", "rotate"]);
        assert!(parse_resolv_conf("").is_empty());
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let e = read_resolv_conf(Path::new("/nonexistent/resolv.conf")).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.starts_with("cannot read resolvConf /nonexistent/resolv.conf"));
    }
}
