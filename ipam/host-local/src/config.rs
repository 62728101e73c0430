//! host-local's configuration: the `ipam` section of the plugin config, plus
//! what the runtime adds (`runtimeConfig.ipRanges`, requested IPs). Every
//! range comes out of here canonical — defaults filled in, validated — so the
//! allocator never has to doubt it.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use common::args::CniArgs;
use common::error::shown;
use common::ipnet::{from_bits, next_ip, to_bits, IpNet};
use common::spec::{fold_keys, version, NetConf, Route};
use common::{CniError, Result};
use serde::Deserialize;
use serde_json::Value;

pub const DEFAULT_DATA_DIR: &str = "/var/lib/cni/networks";

/// One pool of addresses with every default filled in. `start..=end` is what
/// may be handed out, minus the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    pub subnet: IpNet,
    pub start: IpAddr,
    pub end: IpAddr,
    pub gateway: IpAddr,
}

impl Range {
    /// Inside the allocatable part, as the reference's `Range.Contains`
    /// (an address in the subnet but outside start..end is not ours).
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.subnet.contains(ip) && (to_bits(&self.start)..=to_bits(&self.end)).contains(&to_bits(ip))
    }

    fn overlaps(&self, o: &Range) -> bool {
        self.subnet.is_ipv4() == o.subnet.is_ipv4()
            && to_bits(&self.start) <= to_bits(&o.end)
            && to_bits(&o.start) <= to_bits(&self.end)
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({}-{})", self.subnet, self.start, self.end)
    }
}

/// The pool one address is taken from (the inner list of `ranges`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet(pub Vec<Range>);

impl RangeSet {
    pub fn range_for(&self, ip: &IpAddr) -> Option<&Range> {
        self.0.iter().find(|r| r.contains(ip))
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.range_for(ip).is_some()
    }

    fn is_ipv4(&self) -> bool {
        self.0[0].subnet.is_ipv4()
    }
}

impl fmt::Display for RangeSet {
    /// The ranges, the first few of a long set (messages stay readable).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 3;
        let parts: Vec<String> = self.0.iter().take(SHOWN).map(Range::to_string).collect();
        f.write_str(&parts.join(", "))?;
        if self.0.len() > SHOWN {
            write!(f, ", … ({} ranges)", self.0.len())?;
        }
        Ok(())
    }
}

/// A range and where it came from.
type Keyed<'a, K> = (K, &'a Range);

/// Two overlapping ranges among `ranges` (each with a key saying where it
/// came from), in key order; None when they are disjoint. Sorting and one
/// sweep keep the cost at n log n for any number of ranges: a config of
/// 100,000 ranges must not hold the plugin for minutes.
fn first_overlap<'a, K: Ord + Copy>(ranges: &[Keyed<'a, K>]) -> Option<(Keyed<'a, K>, Keyed<'a, K>)> {
    let mut sorted = ranges.to_vec();
    sorted.sort_by_key(|(_, r)| (!r.subnet.is_ipv4(), to_bits(&r.start)));
    // The range reaching furthest so far: whatever starts before its end overlaps it.
    let mut reach: Option<(K, &Range)> = None;
    for &(k, r) in &sorted {
        if let Some((rk, rr)) = reach.filter(|(_, rr)| rr.overlaps(r)) {
            return Some(if rk <= k { ((rk, rr), (k, r)) } else { ((k, r), (rk, rr)) });
        }
        let further = reach.is_none_or(|(_, rr)| {
            rr.subnet.is_ipv4() != r.subnet.is_ipv4() || to_bits(&r.end) > to_bits(&rr.end)
        });
        if further {
            reach = Some((k, r));
        }
    }
    None
}

/// Everything ADD needs.
#[derive(Clone, Debug)]
pub struct Config {
    pub name: String,
    pub ranges: Vec<RangeSet>,
    pub routes: Vec<Route>,
    pub data_dir: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    /// Requested IPs, in the order CNI_ARGS, args.cni.ips, runtimeConfig.ips.
    pub requested: Vec<IpAddr>,
}

/// A range as written; the reference's legacy top-level form shares it.
#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct RawRange {
    subnet: Option<String>,
    range_start: Option<String>,
    range_end: Option<String>,
    gateway: Option<String>,
}

const RANGE_KEYS: &[&str] = &["subnet", "rangeStart", "rangeEnd", "gateway"];

#[derive(Deserialize, Default, Debug)]
#[serde(rename_all = "camelCase")]
struct RawIpam {
    ranges: Option<Vec<Option<Vec<RawRange>>>>,
    routes: Option<Vec<Route>>,
    data_dir: Option<String>,
    resolv_conf: Option<String>,
    #[serde(flatten)]
    legacy: RawRange,
}

fn bad(msg: impl Into<String>) -> CniError {
    CniError::invalid_config(msg)
}

/// Go's JSON decoder matches field names ignoring case, and configs in the
/// wild rely on it; rename such keys to ours (recursively into ranges).
fn fold_ranges(v: &mut Value) {
    if let Some(sets) = v.as_array_mut() {
        for set in sets.iter_mut().filter_map(Value::as_array_mut) {
            set.iter_mut().for_each(|r| fold_keys(r, RANGE_KEYS));
        }
    }
}

fn field<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    let map = obj.as_object()?;
    map.get(key).or_else(|| map.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v))
}

/// The `ipam` object; the reference refuses a config without one.
fn raw_ipam(conf: &NetConf) -> Result<RawIpam> {
    let mut ipam = match field(&conf.raw, "ipam") {
        Some(v @ Value::Object(_)) => v.clone(),
        None | Some(Value::Null) => return Err(bad("IPAM config missing 'ipam' key")),
        Some(_) => return Err(bad("invalid ipam config: \"ipam\" must be an object")),
    };
    let mut keys = vec!["ranges", "routes", "dataDir", "resolvConf"];
    keys.extend_from_slice(RANGE_KEYS);
    fold_keys(&mut ipam, &keys);
    if let Some(r) = ipam.get_mut("ranges") {
        fold_ranges(r);
    }
    common::spec::from_fields(&ipam).map_err(|e| bad(format!("invalid ipam config: {e}")))
}

/// Where the leases of this network live: `<dataDir>/<name>`. All DEL,
/// CHECK, GC and STATUS need — they must work even when the ranges come only
/// from the runtime (`ipRanges`), which is not sent on those verbs.
pub fn network_dir(conf: &NetConf) -> Result<PathBuf> {
    let ipam = raw_ipam(conf)?;
    Ok(data_dir(&ipam).join(safe_name(conf)?))
}

/// The longest path open(2) takes (PATH_MAX, with its NUL).
const MAX_PATH: usize = 4095;

/// ADD's own check of `dataDir`: absolute, since a relative one would put
/// leases wherever the runtime happens to run the plugin (the reference
/// takes it as it is), and no longer than a path can be.
fn check_data_dir(ipam: &RawIpam) -> Result<()> {
    let Some(dir) = ipam.data_dir.as_deref().filter(|d| !d.is_empty()) else { return Ok(()) };
    if !dir.starts_with('/') {
        return Err(bad(format!("invalid dataDir {}: must be an absolute path", shown(dir))));
    }
    if dir.len() > MAX_PATH {
        return Err(bad(format!(
            "invalid dataDir {}: longer than a path can be ({MAX_PATH} bytes)",
            shown(dir)
        )));
    }
    Ok(())
}

fn data_dir(ipam: &RawIpam) -> PathBuf {
    PathBuf::from(ipam.data_dir.as_deref().filter(|d| !d.is_empty()).unwrap_or(DEFAULT_DATA_DIR))
}

/// The network name becomes a directory: it must be one path component
/// (skel already enforces the spec's name regex; this keeps the promise
/// local) and no longer than a file name.
pub fn safe_name(conf: &NetConf) -> Result<&str> {
    let name = conf.name_as_dir("host-local")?;
    if common::spec::valid_name(name) && name != "." && name != ".." {
        Ok(name)
    } else {
        Err(bad(format!("invalid network name {}: cannot be used as a directory name", shown(name))))
    }
}

/// The full configuration for ADD.
pub fn load(conf: &NetConf, args: &CniArgs) -> Result<Config> {
    let ipam = raw_ipam(conf)?;
    check_data_dir(&ipam)?;
    let requested = requested_ips(conf, args)?;
    let dir = data_dir(&ipam);

    // Order of range sets: runtime ipRanges, the legacy top-level range, then `ranges`.
    let mut raw_sets: Vec<Vec<RawRange>> = Vec::new();
    if let Some(v) = conf.runtime("ipRanges").filter(|v| !v.is_null()) {
        let mut v = v.clone();
        fold_ranges(&mut v);
        let sets: Vec<Option<Vec<RawRange>>> =
            serde_json::from_value(v).map_err(|e| bad(format!("invalid runtimeConfig.ipRanges: {e}")))?;
        raw_sets.extend(sets.into_iter().map(Option::unwrap_or_default));
    }
    let RawIpam { ranges, routes, data_dir: _, resolv_conf, legacy } = ipam;
    if legacy.subnet.as_deref().is_some_and(|s| !s.is_empty()) {
        raw_sets.push(vec![legacy]);
    }
    raw_sets.extend(ranges.unwrap_or_default().into_iter().map(Option::unwrap_or_default));
    if raw_sets.is_empty() {
        return Err(bad("no IP ranges specified"));
    }

    let mut ranges = Vec::new();
    for (i, set) in raw_sets.iter().enumerate() {
        ranges.push(range_set(set).map_err(|e| bad(format!("invalid range set {i}: {e}")))?);
    }
    let v4 = ranges.iter().filter(|s| s.is_ipv4()).count();
    if (v4 > 1 || ranges.len() - v4 > 1) && !version::at_least(&conf.cni_version, "0.3.0") {
        return Err(bad(format!(
            "CNI version {} does not support more than 1 address per family (needs 0.3.0 or later)",
            conf.cni_version
        )));
    }
    // No set overlaps itself (range_set checked): an overlap is between two sets.
    let all: Vec<((usize, usize), &Range)> = ranges
        .iter()
        .enumerate()
        .flat_map(|(i, s)| s.0.iter().enumerate().map(move |(k, r)| ((i, k), r)))
        .collect();
    if let Some((((i, _), _), ((j, _), _))) = first_overlap(&all) {
        let (a, b) = (&ranges[i], &ranges[j]);
        return Err(bad(format!("range set {i} ({a}) overlaps with range set {j} ({b})")));
    }

    Ok(Config {
        name: safe_name(conf)?.to_string(),
        ranges,
        routes: routes.unwrap_or_default(),
        data_dir: dir,
        resolv_conf: resolv_conf.filter(|p| !p.is_empty()).map(PathBuf::from),
        requested,
    })
}

fn range_set(raw: &[RawRange]) -> std::result::Result<RangeSet, String> {
    if raw.is_empty() {
        return Err("empty range set".into());
    }
    let set = raw.iter().map(range).collect::<std::result::Result<Vec<_>, _>>()?;
    if set.iter().any(|r| r.subnet.is_ipv4() != set[0].subnet.is_ipv4()) {
        return Err("mixes IPv4 and IPv6 ranges (use one range set per family)".into());
    }
    let keyed: Vec<(usize, &Range)> = set.iter().enumerate().collect();
    if let Some(((_, a), (_, b))) = first_overlap(&keyed) {
        return Err(format!("ranges {a} and {b} overlap"));
    }
    Ok(RangeSet(set))
}

/// Fill in the defaults of one range and check it the way the reference does
/// (`Range.Canonicalize`), with messages that say what to fix.
fn range(raw: &RawRange) -> std::result::Result<Range, String> {
    let text = raw.subnet.as_deref().filter(|s| !s.is_empty()).ok_or("a range has no \"subnet\"")?;
    let subnet: IpNet = text.parse()?;
    let why = |m: String| format!("invalid range {text}: {m}");
    let net = subnet.network();
    if net != subnet {
        return Err(why(format!("host bits are set (the network of a /{} is {net})", subnet.prefix)));
    }
    if subnet.prefix + 2 > subnet.max_prefix() {
        return Err(why(format!(
            "too small to allocate from (a /{} is the smallest)",
            subnet.max_prefix() - 2
        )));
    }
    // Empty strings mean "not set", as Go's net.IP decoding treats them.
    let ip = |key: &str, v: &Option<String>| -> std::result::Result<Option<IpAddr>, String> {
        let Some(s) = v.as_deref().filter(|s| !s.is_empty()) else { return Ok(None) };
        let ip: IpAddr = s.parse().map_err(|_| why(format!("{key} {s:?} is not an IP address")))?;
        if ip.is_ipv4() != subnet.is_ipv4() {
            return Err(why(format!("{key} {ip} is not of the subnet's address family")));
        }
        Ok(Some(ip))
    };
    let inside = |key: &str, ip: IpAddr| {
        if subnet.contains(&ip) {
            Ok(ip)
        } else {
            Err(why(format!("{key} {ip} is outside the subnet")))
        }
    };
    let gateway = ip("gateway", &raw.gateway)?.unwrap_or_else(|| next_ip(&net.addr));
    let start = match ip("rangeStart", &raw.range_start)? {
        Some(s) => inside("rangeStart", s)?,
        None => next_ip(&net.addr),
    };
    let end = match ip("rangeEnd", &raw.range_end)? {
        Some(e) => inside("rangeEnd", e)?,
        // IPv4 keeps the broadcast address out; IPv6 has none.
        None if subnet.is_ipv4() => from_bits(&net.addr, to_bits(&subnet.last()) - 1),
        None => subnet.last(),
    };
    if to_bits(&start) > to_bits(&end) {
        return Err(why(format!("rangeStart {start} is after rangeEnd {end}")));
    }
    Ok(Range { subnet, start, end, gateway })
}

/// `10.1.2.3` or `10.1.2.3/24` (the prefix is ignored), as the reference's `ip.IP`.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    s.parse().ok().or_else(|| s.parse::<IpNet>().ok().map(|n| n.addr))
}

/// Requested IPs from `CNI_ARGS IP=` (comma-separated), `args.cni.ips` and
/// `runtimeConfig.ips`, duplicates removed.
fn requested_ips(conf: &NetConf, args: &CniArgs) -> Result<Vec<IpAddr>> {
    let mut texts: Vec<(String, &str)> = Vec::new();
    if let Some(v) = args.get("IP") {
        texts.extend(v.split(',').filter(|s| !s.trim().is_empty()).map(|s| (s.to_string(), "CNI_ARGS IP")));
    }
    let lists = [
        (
            field(&conf.raw, "args").and_then(|a| field(a, "cni")).and_then(|c| field(c, "ips")),
            "args.cni.ips",
        ),
        (conf.runtime("ips"), "runtimeConfig.ips"),
    ];
    for (list, src) in lists {
        match list {
            None | Some(Value::Null) => {}
            Some(Value::Array(items)) => {
                for item in items {
                    let s =
                        item.as_str().ok_or_else(|| bad(format!("invalid {src}: {item} is not a string")))?;
                    texts.push((s.to_string(), src));
                }
            }
            Some(other) => return Err(bad(format!("invalid {src}: {other} is not a list"))),
        }
    }
    let mut out = Vec::new();
    for (s, src) in texts {
        let ip = parse_ip(&s).ok_or_else(|| bad(format!("invalid {src}: cannot understand ip {s:?}")))?;
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn conf(v: Value) -> NetConf {
        NetConf::parse(v.to_string().as_bytes()).unwrap()
    }

    fn net(ipam: Value) -> NetConf {
        conf(json!({"cniVersion": "1.0.0", "name": "net1", "type": "bridge", "ipam": ipam}))
    }

    fn load_ok(ipam: Value) -> Config {
        load(&net(ipam), &CniArgs::default()).unwrap()
    }

    fn load_err(c: &NetConf) -> String {
        let e = load(c, &CniArgs::default()).unwrap_err();
        assert_eq!(e.code, 7, "{e}");
        e.msg
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_of_a_v4_range() {
        let c = load_ok(json!({"type": "host-local", "ranges": [[{"subnet": "10.1.2.0/24"}]]}));
        let r = &c.ranges[0].0[0];
        assert_eq!((r.start, r.end, r.gateway), (ip("10.1.2.1"), ip("10.1.2.254"), ip("10.1.2.1")));
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/cni/networks"));
        assert_eq!(c.name, "net1");
        assert!(c.routes.is_empty() && c.resolv_conf.is_none() && c.requested.is_empty());
        assert_eq!(r.to_string(), "10.1.2.0/24 (10.1.2.1-10.1.2.254)");
    }

    #[test]
    fn defaults_of_a_v6_range_include_the_last_address() {
        let c = load_ok(json!({"ranges": [[{"subnet": "2001:db8::/64"}]]}));
        let r = &c.ranges[0].0[0];
        assert_eq!((r.start, r.end), (ip("2001:db8::1"), ip("2001:db8::ffff:ffff:ffff:ffff")));
    }

    #[test]
    fn explicit_fields_are_kept() {
        let c = load_ok(json!({
            "ranges": [[{"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.10", "rangeEnd": "10.1.2.20",
                         "gateway": "10.1.2.254"}]],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "192.168.0.0/16", "gw": "10.1.2.254"}],
            "dataDir": "/tmp/x", "resolvConf": "/etc/resolv.conf"
        }));
        let r = &c.ranges[0].0[0];
        assert_eq!((r.start, r.end, r.gateway), (ip("10.1.2.10"), ip("10.1.2.20"), ip("10.1.2.254")));
        assert_eq!(c.routes.len(), 2);
        assert_eq!(c.routes[1].gw, Some(ip("10.1.2.254")));
        assert_eq!(c.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(c.resolv_conf, Some(PathBuf::from("/etc/resolv.conf")));
    }

    #[test]
    fn keys_match_ignoring_case_like_go() {
        let c = load_ok(json!({"Ranges": [[{"SUBNET": "10.1.2.0/24", "rangestart": "10.1.2.9"}]],
                               "DataDir": "/d"}));
        assert_eq!(c.ranges[0].0[0].start, ip("10.1.2.9"));
        assert_eq!(c.data_dir, PathBuf::from("/d"));
        let c = load(
            &conf(json!({"cniVersion": "1.0.0", "name": "n", "IPAM": {"subnet": "10.0.0.0/24"}})),
            &CniArgs::default(),
        )
        .unwrap();
        assert_eq!(c.ranges.len(), 1);
    }

    #[test]
    fn legacy_range_goes_first_and_runtime_ranges_before_it() {
        let c = load(
            &conf(json!({"cniVersion": "0.4.0", "name": "n", "ipam": {
                "subnet": "10.1.0.0/16", "rangeStart": "10.1.0.5", "gateway": "10.1.0.254",
                "ranges": [[{"subnet": "10.2.0.0/16"}]]},
                "runtimeConfig": {"ipRanges": [[{"subnet": "10.3.0.0/16"}]]}})),
            &CniArgs::default(),
        )
        .unwrap();
        let subnets: Vec<String> = c.ranges.iter().map(|s| s.0[0].subnet.to_string()).collect();
        assert_eq!(subnets, ["10.3.0.0/16", "10.1.0.0/16", "10.2.0.0/16"]);
        assert_eq!(c.ranges[1].0[0].start, ip("10.1.0.5"));
        assert_eq!(c.ranges[1].0[0].gateway, ip("10.1.0.254"));
    }

    #[test]
    fn range_errors_say_what_to_fix() {
        let cases = [
            (
                json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.3.5"}),
                "invalid range set 0: invalid range 10.1.2.0/24: rangeStart 10.1.3.5 is outside the subnet",
            ),
            (
                json!({"subnet": "10.1.2.0/24", "rangeEnd": "10.1.3.5"}),
                "rangeEnd 10.1.3.5 is outside the subnet",
            ),
            (json!({"subnet": "10.1.2.5/24"}), "host bits are set (the network of a /24 is 10.1.2.0/24)"),
            (json!({"subnet": "10.1.2.0/31"}), "too small to allocate from (a /30 is the smallest)"),
            (json!({"subnet": "10.1.2.0/32"}), "too small"),
            (json!({"subnet": "2001:db8::/127"}), "a /126 is the smallest"),
            (json!({"subnet": "10.1.2.0"}), "no prefix length"),
            (json!({"subnet": "bogus/24"}), "bad IP"),
            (json!({"subnet": ""}), "has no \"subnet\""),
            (json!({"rangeStart": "10.0.0.1"}), "has no \"subnet\""),
            (json!({"subnet": "10.1.2.0/24", "gateway": "x"}), "gateway \"x\" is not an IP address"),
            (
                json!({"subnet": "10.1.2.0/24", "gateway": "2001:db8::1"}),
                "not of the subnet's address family",
            ),
            (
                json!({"subnet": "10.1.2.0/24", "rangeStart": "10.1.2.9", "rangeEnd": "10.1.2.8"}),
                "rangeStart 10.1.2.9 is after rangeEnd 10.1.2.8",
            ),
        ];
        for (range, want) in cases {
            let msg = load_err(&net(json!({"ranges": [[range]]})));
            assert!(msg.contains(want), "{range}: {msg}");
        }
    }

    #[test]
    fn set_errors() {
        let err = |ranges: Value| load_err(&net(json!({ "ranges": ranges })));
        assert_eq!(err(json!([])), "no IP ranges specified");
        assert_eq!(load_err(&net(json!({}))), "no IP ranges specified");
        assert_eq!(err(json!([[]])), "invalid range set 0: empty range set");
        assert!(err(json!([[{"subnet": "10.0.0.0/24"}, {"subnet": "2001:db8::/64"}]])).contains("mixes IPv4"));
        assert_eq!(
            err(json!([[{"subnet": "10.0.0.0/24"}, {"subnet": "10.0.0.0/25"}]])),
            "invalid range set 0: ranges 10.0.0.0/24 (10.0.0.1-10.0.0.254) and 10.0.0.0/25 (10.0.0.1-10.0.0.126) overlap"
        );
        assert!(err(json!([[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.0.0.0/16"}]]))
            .starts_with("range set 0 (10.0.0.0/24 (10.0.0.1-10.0.0.254)) overlaps with range set 1"));
        // Two disjoint parts of one subnet are fine, in one set or in two.
        load_ok(json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.100"},
                                   {"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.101"}]]}));
        load_ok(json!({"ranges": [[{"subnet": "10.0.0.0/24", "rangeEnd": "10.0.0.100"}],
                                  [{"subnet": "10.0.0.0/24", "rangeStart": "10.0.0.101"}]]}));
        assert!(err(json!("x")).starts_with("invalid ipam config"));
        assert_eq!(
            load_err(&conf(json!({"cniVersion": "1.0.0", "name": "n"}))),
            "IPAM config missing 'ipam' key"
        );
        assert!(load_err(&net(json!({"routes": [{"gw": "1.2.3.4"}], "subnet": "10.0.0.0/24"})))
            .contains("missing field `dst`"));
    }

    #[test]
    fn overlaps_are_found_among_many_ranges_at_once() {
        let set = |n: u32, skip: u32| -> Vec<Value> {
            (0..n)
                .filter(|i| *i != skip)
                .map(
                    |i| json!({"subnet": format!("10.{}.{}.{}/30", i / 16384, (i / 64) % 256, (i % 64) * 4)}),
                )
                .collect()
        };
        // 100,000 disjoint ranges: n log n, not n².
        let c = load_ok(json!({"ranges": [set(100_000, u32::MAX)]}));
        assert_eq!(c.ranges[0].0.len(), 100_000);
        // One overlap hidden among them, after a range reaching over it.
        let mut s = set(50_000, u32::MAX);
        s.insert(7, json!({"subnet": "10.0.0.0/16", "rangeStart": "10.0.100.1"}));
        let e = load_err(&net(json!({"ranges": [s]})));
        assert!(e.contains("10.0.0.0/16 (10.0.100.1-10.0.255.254) and 10.0.100.0/30"), "{e}");
        // Between sets: the sets named, a long one cut.
        let e = load_err(&net(json!({"ranges": [set(1000, u32::MAX), [{"subnet": "10.0.0.20/30"}]]})));
        assert!(e.starts_with("range set 0 (10.0.0.0/30 (10.0.0.1-10.0.0.2), "), "{e}");
        assert!(e.contains("… (1000 ranges)) overlaps with range set 1 (10.0.0.20/30"), "{e}");
        // Families never overlap each other.
        load_ok(json!({"ranges": [[{"subnet": "10.0.0.0/8"}], [{"subnet": "::/64"}]]}));
    }

    #[test]
    fn more_than_one_set_per_family_needs_0_3_0() {
        let ipam = json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "10.1.0.0/24"}]]});
        let old = conf(json!({"cniVersion": "0.2.0", "name": "n", "ipam": ipam}));
        assert!(load_err(&old).contains("CNI version 0.2.0 does not support more than 1 address per family"));
        let dual = json!({"ranges": [[{"subnet": "10.0.0.0/24"}], [{"subnet": "2001:db8::/64"}]]});
        load(&conf(json!({"cniVersion": "0.2.0", "name": "n", "ipam": dual})), &CniArgs::default()).unwrap();
        load(&conf(json!({"cniVersion": "0.3.0", "name": "n", "ipam": ipam})), &CniArgs::default()).unwrap();
    }

    #[test]
    fn requested_ips_from_every_source() {
        let c = conf(json!({"cniVersion": "1.0.0", "name": "n",
            "ipam": {"ranges": [[{"subnet": "10.0.0.0/24"}]]},
            "args": {"cni": {"ips": ["10.0.0.7", "10.0.0.5"]}},
            "runtimeConfig": {"IPs": ["10.0.0.8/24", "2001:db8::9"]}}));
        let args = CniArgs::parse("IgnoreUnknown=1;IP=10.0.0.5,10.0.0.6/24").unwrap();
        let got = load(&c, &args).unwrap().requested;
        let want: Vec<IpAddr> =
            ["10.0.0.5", "10.0.0.6", "10.0.0.7", "10.0.0.8", "2001:db8::9"].iter().map(|s| ip(s)).collect();
        assert_eq!(got, want);
        let e = load(&c, &CniArgs::parse("IP=10.0.0.300").unwrap()).unwrap_err();
        assert_eq!((e.code, e.msg.as_str()), (7, "invalid CNI_ARGS IP: cannot understand ip \"10.0.0.300\""));
        let c = conf(json!({"cniVersion": "1.0.0", "name": "n", "ipam": {"subnet": "10.0.0.0/24"},
                            "runtimeConfig": {"ips": "10.0.0.1"}}));
        assert!(load_err(&c).contains("runtimeConfig.ips"));
    }

    #[test]
    fn network_dir_needs_only_the_data_dir() {
        let c = net(json!({"dataDir": "/run/x"}));
        assert_eq!(network_dir(&c).unwrap(), PathBuf::from("/run/x/net1"));
        let c = net(json!({}));
        assert_eq!(network_dir(&c).unwrap(), PathBuf::from("/var/lib/cni/networks/net1"));
        let named = |n: &str| {
            let mut c = net(json!({}));
            c.name = n.into();
            c
        };
        assert!(safe_name(&named("..")).is_err() && safe_name(&named("a/b")).is_err());
        assert!(safe_name(&named("ok-1.x")).is_ok() && safe_name(&named(&"n".repeat(255))).is_ok());
        let e = network_dir(&named(&"n".repeat(256))).unwrap_err();
        assert!(e.code == 7 && e.msg.contains("(256 bytes)") && e.msg.contains("at most 255 bytes"), "{e}");
    }

    #[test]
    fn data_dir_must_be_absolute_and_a_path() {
        let e = load_err(&net(json!({"subnet": "10.0.0.0/24", "dataDir": "rel/dir"})));
        assert_eq!(e, "invalid dataDir \"rel/dir\": must be an absolute path");
        let long = format!("/{}", "d".repeat(100_000));
        let e = load_err(&net(json!({"subnet": "10.0.0.0/24", "dataDir": long})));
        assert!(e.contains("(100001 bytes): longer than a path can be"), "{e}");
    }

    #[test]
    fn wrong_types_name_the_field() {
        let e = load_err(&net(json!({"subnet": "10.0.0.0/24", "dataDir": 5})));
        assert!(e.starts_with("invalid ipam config: \"dataDir\": invalid type: integer `5`"), "{e}");
        let e = load_err(&net(json!({"ranges": [[{"subnet": 5}]]})));
        assert!(e.starts_with("invalid ipam config: \"ranges\""), "{e}");
    }
}
