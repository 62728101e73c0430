//! `resolvConf`: the host's resolver settings copied into the result's `dns`.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use common::spec::Dns;
use common::{CniError, Result};

/// The largest resolv.conf we read; real ones are a few hundred bytes.
const MAX_RESOLV_CONF: u64 = 1 << 20;

/// Read a resolv.conf. The config names the file, so an unreadable one is a
/// configuration error, reported before any address is taken. Only a
/// regular file (links followed: /etc/resolv.conf often is one) of at most
/// 1 MiB is read: a FIFO would block the plugin, /dev/zero never end.
pub fn read_resolv_conf(path: &Path) -> Result<Dns> {
    let bad =
        |why: String| CniError::invalid_config(format!("cannot read resolvConf {}: {why}", path.display()));
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| bad(e.to_string()))?;
    let meta = file.metadata().map_err(|e| bad(e.to_string()))?;
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    let mut bytes = Vec::new();
    (&mut file).take(MAX_RESOLV_CONF + 1).read_to_end(&mut bytes).map_err(|e| bad(e.to_string()))?;
    if bytes.len() as u64 > MAX_RESOLV_CONF {
        return Err(bad(format!("larger than {} MiB", MAX_RESOLV_CONF >> 20)));
    }
    Ok(parse_resolv_conf(&String::from_utf8_lossy(&bytes)))
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
    fn only_a_regular_file_of_sane_size_is_read() {
        for special in ["/dev/zero", "/dev/null", "/"] {
            let e = read_resolv_conf(Path::new(special)).unwrap_err();
            assert!(e.code == 7 && e.msg.ends_with("not a regular file"), "{special}: {e}");
        }
        let dir = std::env::temp_dir().join(format!("hl-resolv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = read_resolv_conf(&fifo).unwrap_err();
        assert!(e.msg.ends_with("not a regular file"), "{e}");
        let big = dir.join("big");
        std::fs::write(&big, "#".repeat(2 << 20)).unwrap();
        assert!(read_resolv_conf(&big).unwrap_err().msg.ends_with("larger than 1 MiB"));
        std::fs::write(&big, "nameserver 192.0.2.1\n").unwrap();
        std::os::unix::fs::symlink(&big, dir.join("link")).unwrap();
        assert_eq!(read_resolv_conf(&dir.join("link")).unwrap().nameservers, ["192.0.2.1"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn missing_file_is_a_config_error() {
        let e = read_resolv_conf(Path::new("/nonexistent/resolv.conf")).unwrap_err();
        assert_eq!(e.code, 7);
        assert!(e.msg.starts_with("cannot read resolvConf /nonexistent/resolv.conf"));
    }
}
