//! DHCP options by name, as `ipam.request` and `ipam.provide` name them: a
//! name from dhcp-options(5) or the option's number.

/// The names the reference accepts, and the other options of dhcp-options(5)
/// a container network plausibly asks for or sends.
const NAMES: &[(&str, u8)] = &[
    ("subnet-mask", 1),
    ("time-offset", 2),
    ("routers", 3),
    ("time-servers", 4),
    ("domain-name-servers", 6),
    ("log-servers", 7),
    ("host-name", 12),
    ("domain-name", 15),
    ("interface-mtu", 26),
    ("broadcast-address", 28),
    ("static-routes", 33),
    ("ntp-servers", 42),
    ("vendor-encapsulated-options", 43),
    ("netbios-name-servers", 44),
    ("dhcp-requested-address", 50),
    ("dhcp-lease-time", 51),
    ("dhcp-message-type", 53),
    ("dhcp-server-identifier", 54),
    ("dhcp-parameter-request-list", 55),
    ("dhcp-message", 56),
    ("dhcp-max-message-size", 57),
    ("dhcp-renewal-time", 58),
    ("dhcp-rebinding-time", 59),
    ("vendor-class-identifier", 60),
    ("dhcp-client-identifier", 61),
    ("user-class", 77),
    ("fqdn", 81),
    ("domain-search", 119),
    ("classless-static-routes", 121),
    ("rfc3442-classless-static-routes", 121),
];

pub const SUBNET_MASK: u8 = 1;
pub const ROUTERS: u8 = 3;
pub const DOMAIN_NAME_SERVERS: u8 = 6;
pub const DOMAIN_NAME: u8 = 15;
pub const DOMAIN_SEARCH: u8 = 119;

/// Options the client itself sets in every message; a configured value
/// would break the exchange.
const CLIENT_OWNED: &[u8] = &[0, 50, 53, 54, 55, 255];

/// `"routers"` or `"3"` → 3.
pub fn parse(option: &str) -> Result<u8, String> {
    let s = option.trim();
    if let Some((_, code)) = NAMES.iter().find(|(n, _)| n.eq_ignore_ascii_case(s)) {
        return Ok(*code);
    }
    s.parse::<u8>().map_err(|_| {
        format!(
            "Can not parse option {}: not a dhcp-options(5) name this plugin knows nor a number 0-255",
            common::error::shown(option)
        )
    })
}

/// A code that `provide` may set, or why not.
pub fn providable(code: u8) -> Result<u8, String> {
    match code {
        55 => Err("option 55 (dhcp-parameter-request-list) is set from \"request\", not \"provide\"".into()),
        c if CLIENT_OWNED.contains(&c) => Err(format!("option {c} is set by the DHCP client itself")),
        c => Ok(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("routers"), Ok(3));
        assert_eq!(parse("Host-Name"), Ok(12));
        assert_eq!(parse("121"), Ok(121));
        assert_eq!(parse("classless-static-routes"), Ok(121));
        assert!(parse("256").is_err());
        assert!(parse("").is_err());
        assert!(parse("no-such-option").unwrap_err().contains("\"no-such-option\""));
    }

    #[test]
    fn the_client_owns_the_exchange_options() {
        assert_eq!(providable(12), Ok(12));
        assert_eq!(providable(61), Ok(61), "a configured client identifier replaces ours");
        for c in [0, 50, 53, 54, 55, 255] {
            assert!(providable(c).is_err(), "{c}");
        }
    }
}
