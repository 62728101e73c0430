//! sbr's decisions against the fake kernel (no root): which tables ADD
//! picks, what it moves there, that a failure at any step leaves nothing,
//! what DEL and CHECK find. tests/sbr.rs proves the same on the real
//! kernel, with traffic, next to the reference plugin.

use serde_json::{json, Value};

use super::*;
use common::fake::{cmd_args, FakeKernel, FakeNet};
use common::netlink::rtnl::{AddrOpts, LinkKind, NewLink};
use common::skel::Command;

/// A container "c1" with `eth0` (10.1.0.2/24, fd00:1::2/64, default route
/// via 10.1.0.1) and `eth1` (10.2.0.2/24), their subnet routes in the main
/// table as the kernel makes them.
struct World {
    kernel: FakeKernel,
    host: FakeNet,
    ctr: FakeNet,
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

impl World {
    fn new() -> World {
        let kernel = FakeKernel::new();
        let (host, mut ctr) = (kernel.host(), kernel.netns("c1"));
        for (name, addrs) in [("eth0", &["10.1.0.2/24", "fd00:1::2/64"][..]), ("eth1", &["10.2.0.2/24"][..])]
        {
            ctr.add_link(&NewLink::new(name, LinkKind::Dummy)).unwrap();
            let i = ctr.link_by_name(name).unwrap().index;
            ctr.set_up(i).unwrap();
            for a in addrs {
                let net: IpNet = a.parse().unwrap();
                ctr.add_addr(i, net.addr, net.prefix, &AddrOpts::default()).unwrap();
                let sub = net.network();
                let mut r =
                    Route { oif: Some(i), protocol: libc::RTPROT_KERNEL, ..Route::new(sub.addr, sub.prefix) };
                if net.is_ipv4() {
                    (r.scope, r.src) = (libc::RT_SCOPE_LINK, Some(net.addr));
                } else {
                    r.priority = Some(256);
                }
                ctr.add_route(&r).unwrap();
            }
        }
        let eth0 = ctr.link_by_name("eth0").unwrap().index;
        let mut default = Route::new(ip("0.0.0.0"), 0);
        (default.gateway, default.oif) = (Some(ip("10.1.0.1")), Some(eth0));
        ctr.add_route(&default).unwrap();
        kernel.clear_calls();
        World { kernel, host, ctr }
    }

    fn index(&mut self, name: &str) -> u32 {
        self.ctr.link_by_name(name).unwrap().index
    }

    fn args(&self, command: Command, conf: &Value, ifname: &str) -> CmdArgs {
        CmdArgs { ifname: ifname.into(), ..cmd_args(command, conf) }
    }

    fn add_on(&mut self, conf: &Value, ifname: &str) -> Result<()> {
        let args = self.args(Command::Add, conf, ifname);
        let c = config::load(&args.conf)?;
        let ips = config::source_ips(config::prev_result(&args.conf)?, ifname)?;
        add(&args, &c, &ips, &mut self.host, &mut self.ctr)
    }

    fn add(&mut self, conf: &Value) -> Result<()> {
        self.add_on(conf, "eth0")
    }

    fn del_on(&mut self, conf: &Value, ifname: &str) -> Result<()> {
        let args = self.args(Command::Del, conf, ifname);
        del(&args, config::table_for_del(&args.conf), &mut self.ctr)
    }

    fn check(&mut self, conf: &Value) -> Result<()> {
        let args = self.args(Command::Check, conf, "eth0");
        let c = config::load(&args.conf)?;
        let ips = config::source_ips(config::prev_result(&args.conf)?, "eth0")?;
        check(&args, &c, &ips, &mut self.ctr)
    }

    /// Our rules as (source, table, priority).
    fn rules(&mut self) -> Vec<(String, u32, Option<u32>)> {
        let all = self.ctr.rules(Family::Any).unwrap();
        all.iter().filter_map(|r| r.src.map(|s| (s.to_string(), r.table, r.priority))).collect()
    }

    /// The routes of `table` as "dst/prefix [via gw] dev name [src s]", sorted.
    fn table(&mut self, table: u32) -> Vec<String> {
        let links = self.ctr.links().unwrap();
        let name =
            |i: Option<u32>| links.iter().find(|l| Some(l.index) == i).map_or("-", |l| l.name.as_str());
        let mut v: Vec<String> = self
            .ctr
            .routes(Family::Any, table)
            .unwrap()
            .iter()
            .filter(|r| r.route_type == libc::RTN_UNICAST)
            .map(|r| {
                let mut s = format!("{}/{}", r.dst, r.prefix);
                s += &r.gateway.map_or(String::new(), |g| format!(" via {g}"));
                s += &format!(" dev {}", name(r.oif));
                s += &r.src.map_or(String::new(), |g| format!(" src {g}"));
                s
            })
            .collect();
        v.sort();
        v
    }
}

/// bridge's result for eth0 (index 1 of its interfaces), both families.
fn conf() -> Value {
    json!({"cniVersion": "1.0.0", "name": "net1", "type": "sbr",
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "cni0"}, {"name": "eth0", "sandbox": "/run/netns/c1"}],
            "ips": [{"address": "10.1.0.2/24", "gateway": "10.1.0.1", "interface": 1},
                    {"address": "fd00:1::2/64", "gateway": "fd00:1::1", "interface": 1}]}})
}

/// A second network's result on eth1.
fn conf_eth1() -> Value {
    json!({"cniVersion": "1.0.0", "name": "net2", "type": "sbr",
        "prevResult": {"cniVersion": "1.0.0",
            "interfaces": [{"name": "eth1", "sandbox": "/run/netns/c1"}],
            "ips": [{"address": "10.2.0.2/24", "gateway": "10.2.0.1", "interface": 0}]}})
}

#[test]
fn each_address_gets_a_table_of_its_own_holding_the_interfaces_routes() {
    let mut w = World::new();
    w.add(&conf()).unwrap();
    // The kernel picks the priorities: just above the main table's rule.
    assert_eq!(
        w.rules(),
        [("10.1.0.2/32".into(), 100, Some(32765)), ("fd00:1::2/128".into(), 101, Some(32765))]
    );
    assert_eq!(
        w.table(100),
        [
            "0.0.0.0/0 via 10.1.0.1 dev eth0",
            "10.1.0.0/24 dev eth0 src 10.1.0.2",
            "fd00:1::/64 dev eth0" // a route with neither source nor gateway serves every address
        ]
    );
    assert_eq!(w.table(101), ["::/0 via fd00:1::1 dev eth0", "fd00:1::/64 dev eth0"]);
    assert_eq!(w.table(MAIN), ["10.2.0.0/24 dev eth1 src 10.2.0.2"], "eth0's routes left the main table");
    // What was copied is the route itself: protocol, scope and metric kept.
    let copied = w.ctr.routes(Family::V6, 101).unwrap().into_iter().find(|r| r.prefix == 64).unwrap();
    assert_eq!((copied.protocol, copied.priority), (libc::RTPROT_KERNEL, Some(256)));
}

#[test]
fn an_onlink_route_keeps_its_flag_in_the_table() {
    // Calico's default route: the gateway is on the link whatever the addresses say.
    let mut w = World::new();
    let eth0 = w.index("eth0");
    w.ctr.del_route(&Route { oif: Some(eth0), ..Route::new(ip("0.0.0.0"), 0) }).unwrap();
    let mut calico = Route::new(ip("0.0.0.0"), 0);
    (calico.gateway, calico.oif, calico.onlink) = (Some(ip("169.254.1.1")), Some(eth0), true);
    w.ctr.add_route(&calico).unwrap();
    let mut c = conf();
    c["prevResult"]["ips"][0]["gateway"] = json!("169.254.1.1");
    c["prevResult"]["ips"].as_array_mut().unwrap().pop();
    w.add(&c).unwrap();
    let moved = w.ctr.routes(Family::V4, 100).unwrap().into_iter().find(|r| r.is_default()).unwrap();
    assert_eq!((moved.gateway, moved.onlink), (Some(ip("169.254.1.1")), true));
}

#[test]
fn tables_named_by_a_rule_or_holding_routes_are_skipped_and_a_second_interface_gets_the_next() {
    let mut w = World::new();
    let eth1 = w.index("eth1");
    w.ctr.add_rule(&Rule { fwmark: Some(7), ..Rule::new(Family::V4, 100) }).unwrap();
    let mut r = Route::new(ip("10.9.0.0"), 16);
    (r.oif, r.table, r.scope) = (Some(eth1), 102, libc::RT_SCOPE_LINK);
    w.ctr.add_route(&r).unwrap();
    w.add(&conf()).unwrap();
    w.add_on(&conf_eth1(), "eth1").unwrap();
    let tables: Vec<(String, u32)> = w.rules().into_iter().map(|(s, t, _)| (s, t)).collect();
    assert_eq!(
        tables,
        [("10.2.0.2/32".into(), 104), ("10.1.0.2/32".into(), 101), ("fd00:1::2/128".into(), 103)],
        "100 has a rule, 102 a route; the newest rule comes first"
    );
    assert_eq!(w.table(104), ["0.0.0.0/0 via 10.2.0.1 dev eth1", "10.2.0.0/24 dev eth1 src 10.2.0.2"]);
    assert!(w.table(MAIN).is_empty());
}

#[test]
fn the_operators_table_gets_the_rules_and_nothing_is_moved() {
    let mut w = World::new();
    let main_before = w.table(MAIN);
    let mut c = conf();
    c["Table"] = json!(5000); // Go's decoder matches the key ignoring case
    w.add(&c).unwrap();
    assert_eq!(
        w.rules(),
        [("10.1.0.2/32".into(), 5000, Some(32765)), ("fd00:1::2/128".into(), 5000, Some(32765))]
    );
    assert!(w.table(5000).is_empty());
    assert_eq!(w.table(MAIN), main_before);
    w.check(&c).unwrap();
    w.del_on(&c, "eth0").unwrap();
    assert!(w.rules().is_empty());
}

#[test]
fn configured_gateways_replace_prev_results_per_family() {
    let mut w = World::new();
    let mut c = conf();
    c["gateways"] = json!(["10.1.0.254"]);
    w.add(&c).unwrap();
    // The main table's default route (via 10.1.0.1) is copied over ours: same destination.
    let defaults: Vec<String> = w.table(100).into_iter().filter(|r| r.starts_with("0.0.0.0/0")).collect();
    assert_eq!(defaults, ["0.0.0.0/0 via 10.1.0.1 dev eth0"]);
    assert_eq!(w.table(101)[0], "::/0 via fd00:1::1 dev eth0", "no IPv6 gateway configured");

    let mut w = World::new();
    let eth0 = w.index("eth0");
    w.ctr.del_route(&Route { oif: Some(eth0), ..Route::new(ip("0.0.0.0"), 0) }).unwrap();
    w.add(&c).unwrap();
    assert_eq!(w.table(100)[0], "0.0.0.0/0 via 10.1.0.254 dev eth0");
}

#[test]
fn source_hints_keep_each_subnet_in_the_main_table_with_its_address_as_source() {
    let mut w = World::new();
    let mut c = conf();
    c["addSourceHints"] = json!(true);
    w.add(&c).unwrap();
    assert_eq!(
        w.table(MAIN),
        [
            "10.1.0.0/24 dev eth0 src 10.1.0.2",
            "10.2.0.0/24 dev eth1 src 10.2.0.2",
            "fd00:1::/64 dev eth0 src fd00:1::2"
        ],
        "the default route left, the subnets stayed (IPv6 routes have no link scope: the hint \
         replaces the kernel's prefix route)"
    );
    assert_eq!(w.table(100).len(), 3);
}

#[test]
fn a_failure_at_any_step_leaves_everything_as_it_was() {
    for c in [conf(), json!({"table": 5000}), json!({"addSourceHints": true})] {
        let mut c2 = conf();
        c2.as_object_mut().unwrap().extend(c.as_object().unwrap().clone());
        let mut ok = World::new();
        ok.add(&c2).unwrap();
        let calls = ok.kernel.calls().len();
        for n in 1..=calls {
            let mut w = World::new();
            let before = w.kernel.state();
            w.kernel.fail_at(n, libc::EIO);
            if let Err(e) = w.add(&c2) {
                assert_eq!(w.kernel.state(), before, "failure at call {n} ({e}): {:#?}", w.kernel.calls());
            }
        }
    }
}

#[test]
fn del_removes_its_rules_and_empties_their_tables_and_leaves_the_rest() {
    let mut w = World::new();
    w.add(&conf()).unwrap();
    w.add_on(&conf_eth1(), "eth1").unwrap();
    let eth1_rule = w.rules().into_iter().find(|r| r.0 == "10.2.0.2/32").unwrap();
    w.del_on(&conf(), "eth0").unwrap();
    assert_eq!(w.rules(), [eth1_rule], "eth1's rule stays");
    assert!(w.table(100).is_empty() && w.table(101).is_empty());
    assert_eq!(w.table(102).len(), 2, "eth1's table stays");
    w.del_on(&conf(), "eth0").unwrap();
    w.del_on(&conf_eth1(), "eth1").unwrap();
    assert!(w.rules().is_empty() && w.table(102).is_empty());
}

#[test]
fn del_finds_the_rules_by_prev_result_once_the_interface_is_gone() {
    let mut w = World::new();
    w.add(&conf()).unwrap();
    let eth0 = w.index("eth0");
    w.ctr.del_link(eth0).unwrap();
    assert_eq!(w.rules().len(), 2, "the rules outlive the interface");
    w.del_on(&conf(), "eth0").unwrap();
    assert!(w.rules().is_empty());
    let mut bare = conf();
    bare.as_object_mut().unwrap().remove("prevResult");
    w.del_on(&bare, "eth0").unwrap();
}

#[test]
fn del_leaves_a_table_another_rule_uses_and_only_takes_the_configured_tables_rules() {
    let mut w = World::new();
    w.add(&conf()).unwrap();
    w.ctr.add_rule(&Rule { fwmark: Some(9), ..Rule::new(Family::V4, 100) }).unwrap();
    w.del_on(&conf(), "eth0").unwrap();
    assert_eq!(w.table(100).len(), 3, "the fwmark rule still leads there");
    assert!(w.table(101).is_empty());

    let mut w = World::new();
    w.add(&conf()).unwrap();
    let mut c = conf();
    c["table"] = json!(101);
    w.del_on(&c, "eth0").unwrap();
    assert_eq!(w.rules(), [("10.1.0.2/32".into(), 100, Some(32765))]);
}

#[test]
fn check_finds_a_missing_rule_or_an_empty_table() {
    let mut w = World::new();
    w.add(&conf()).unwrap();
    w.check(&conf()).unwrap();
    w.ctr.del_rule(&source_rule(ip("fd00:1::2"), 101)).unwrap();
    let e = w.check(&conf()).unwrap_err();
    assert!(e.msg.contains("the rule from fd00:1::2 is missing"), "{e}");

    let mut w = World::new();
    w.add(&conf()).unwrap();
    let eth0 = w.index("eth0");
    for r in w.ctr.routes(Family::Any, 100).unwrap() {
        w.ctr.del_route(&r).unwrap();
    }
    let e = w.check(&conf()).unwrap_err();
    assert!(
        e.msg.contains("table 100, where the rule from 10.1.0.2 leads, has no route through eth0"),
        "{e}"
    );
    let _ = eth0;
}

#[test]
fn addresses_are_picked_as_the_reference_picks_them() {
    let prev = |ips: Value| {
        common::spec::CniResult::parse(
            &json!({"cniVersion": "1.0.0", "interfaces": [{"name": "eth0", "sandbox": "/x"}, {"name": "eth1", "sandbox": "/x"}],
                    "ips": ips}),
            "1.0.0",
        )
        .unwrap()
    };
    let picked = |ips: Value| -> Vec<String> {
        config::source_ips(&prev(ips), "eth0")
            .map_or_else(|e| vec![e.msg], |v| v.iter().map(|i| i.address.to_string()).collect())
    };
    assert_eq!(
        picked(
            json!([{"address": "10.1.0.2/24", "interface": 0}, {"address": "10.2.0.2/24", "interface": 1},
                      {"address": "10.3.0.2/24"}])
        ),
        ["10.1.0.2/24", "10.3.0.2/24"],
        "its own and those without an index"
    );
    assert_eq!(
        picked(json!([{"address": "10.2.0.2/24", "interface": 1}])),
        ["no IP addresses supplied on interface: eth0"]
    );
    assert_eq!(picked(json!([])), ["no IP addresses supplied on interface: eth0"]);
}

#[test]
fn bad_fields_are_code_7_with_the_references_words() {
    let load = |extra: Value| {
        let mut c = conf();
        c.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        let args = cmd_args(Command::Add, &c);
        config::load(&args.conf)
    };
    for (extra, msg) in [
        (json!({"gateways": ["10.1.0.1", "fd00::1", "10.1.0.2"]}), "cannot contain more than 2 entries"),
        (json!({"gateways": ["10.1.0.1", "10.1.0.2"]}), "multiple IPv4 addresses: 10.1.0.1 and 10.1.0.2"),
        (json!({"gateways": ["nope"]}), "invalid static gateway IP address: \"nope\""),
        (json!({"gateways": "10.1.0.1"}), "\"gateways\""),
        (json!({"table": 0}), "table must be a routing table number from 1 to 4294967295, not 0"),
        (json!({"table": 4294967296u64}), "not 4294967296"),
        (json!({"table": "100"}), "\"table\""),
        (json!({"addSourceHints": "yes"}), "\"addSourceHints\""),
    ] {
        let e = load(extra.clone()).unwrap_err();
        assert_eq!(e.code, 7, "{extra}: {e}");
        assert!(e.msg.contains(msg), "{extra}: {e}");
    }
    let ok =
        load(json!({"GATEWAYS": ["fd00::9", "10.1.0.9"], "addsourcehints": true, "table": 4294967295u64}))
            .unwrap();
    assert_eq!(ok.gateways, [ip("fd00::9"), ip("10.1.0.9")]);
    assert!(ok.add_source_hints && ok.table == Some(u32::MAX));
    // DEL never fails on the config: a table it cannot use is no table.
    let args =
        cmd_args(Command::Del, &json!({"cniVersion": "1.0.0", "name": "n", "type": "sbr", "table": -1}));
    assert_eq!(config::table_for_del(&args.conf), None);
}
