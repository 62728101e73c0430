//! The upstream servers: `nameserver` lines of resolv.conf, read the way
//! glibc reads them (first three, comments and junk skipped), plus IPv6
//! `%scope` suffixes (aardvark-dns #535 crashed on those).

use std::net::{IpAddr, SocketAddr, SocketAddrV6};

/// At most this many upstreams are used, as glibc's MAXNS.
pub const MAX_UPSTREAMS: usize = 3;

/// The upstream servers in `text`, skipping `exclude` (our own listen
/// addresses: asking ourselves would loop) and unspecified addresses.
pub fn parse(text: &str, exclude: &[IpAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.split(['#', ';']).next().unwrap_or("");
        let mut words = line.split_whitespace();
        if words.next() != Some("nameserver") {
            continue;
        }
        let Some(addr) = words.next().and_then(parse_addr) else { continue };
        if addr.ip().is_unspecified() || exclude.contains(&addr.ip()) || out.contains(&addr) {
            continue;
        }
        out.push(addr);
        if out.len() == MAX_UPSTREAMS {
            break;
        }
    }
    out
}

fn parse_addr(s: &str) -> Option<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, 53));
    }
    let (ip, scope) = s.split_once('%')?;
    let ip: std::net::Ipv6Addr = ip.parse().ok()?;
    let scope_id = match scope.parse::<u32>() {
        Ok(n) => n,
        Err(_) => {
            let c = std::ffi::CString::new(scope).ok()?;
            // SAFETY: a valid NUL-terminated string.
            let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
            if idx == 0 {
                return None;
            }
            idx
        }
    };
    Some(SocketAddr::V6(SocketAddrV6::new(ip, 53, 0, scope_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers_like_glibc() {
        let text = "# generated\nsearch example.com\nnameserver 192.0.2.1 # main\n\
                    nameserver\nnameserver bogus\n  nameserver   2001:db8::53  \n\
                    nameserver fe80::1%1\nnameserver 192.0.2.9\n";
        let got = parse(text, &[]);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], "192.0.2.1:53".parse().unwrap());
        assert_eq!(got[1], "[2001:db8::53]:53".parse().unwrap());
        let SocketAddr::V6(v6) = got[2] else { panic!() };
        assert_eq!((v6.ip().to_string(), v6.scope_id()), ("fe80::1".to_string(), 1));
    }

    #[test]
    fn skips_ourselves_duplicates_and_unusable_entries() {
        let text = "nameserver 10.1.0.1\nnameserver 0.0.0.0\nnameserver 192.0.2.1\n\
                    nameserver 192.0.2.1\nnameserver fe80::1%no-such-if0\n;nameserver 192.0.2.7\n";
        let got = parse(text, &["10.1.0.1".parse().unwrap()]);
        assert_eq!(got, vec!["192.0.2.1:53".parse::<SocketAddr>().unwrap()]);
        assert!(parse("", &[]).is_empty());
        assert!(parse("\u{0}\u{1}garbage\nnameserver\t127.0.0.53", &[]).len() == 1);
    }
}
