//! Scenario 1 (ADD and DEL latency per container) and 3 (scaling: one /24
//! filled up): containers each in their own netns, implementations
//! interleaved container by container.

// Containers are indexed across implementations: index loops read best.
#![allow(clippy::needless_range_loop)]

use std::collections::BTreeMap;

use serde_json::Value;
use test_harness::{ExecRecord, TestNs};

use crate::ctx::{ms, Ctx};
use crate::report::{Section, Table};
use crate::setup::{container_id, left_over, order, port_mappings, result_ip, rt_conf, state, verify, Net};
use crate::stats::{fmt_ms, fmt_ratio, median, paired_ratios, present};

pub struct Case {
    pub key: &'static str,
    pub title: &'static str,
    pub net: Net<'static>,
    pub ifname: &'static str,
    /// Port mappings per container (capability args).
    pub ports: bool,
    /// Targets (ADD, DEL) of the paired ratio.
    pub targets: (f64, f64),
    /// Distinguishes container IDs between scenarios.
    pub code: u32,
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            key: "loopback",
            title: "loopback",
            net: Net::Loopback,
            ifname: "lo",
            ports: false,
            targets: (0.35, 0.45),
            code: 1,
        },
        Case {
            key: "bridge",
            title: "bridge + host-local + ipMasq",
            net: Net::Bridge { name: "bench-br", bridge: "cnibr0", subnet: "10.77.1.0/24", portmap: false },
            ifname: "eth0",
            ports: false,
            targets: (0.25, 0.5),
            code: 2,
        },
        Case {
            key: "portmap",
            title: "bridge + host-local + ipMasq + portmap (2 mappings)",
            net: Net::Bridge { name: "bench-pm", bridge: "cnipm0", subnet: "10.77.2.0/24", portmap: true },
            ifname: "eth0",
            ports: true,
            targets: (0.15, 0.3),
            code: 3,
        },
        Case {
            key: "macvlan",
            title: "macvlan + host-local",
            net: Net::Macvlan { name: "bench-mv", subnet: "10.77.3.0/24" },
            ifname: "eth0",
            ports: false,
            targets: (0.5, 0.8),
            code: 4,
        },
        Case {
            key: "ptp",
            title: "ptp + host-local + ipMasq",
            net: Net::Ptp { name: "bench-ptp", subnet: "10.77.12.0/24" },
            ifname: "eth0",
            ports: false,
            targets: (0.25, 0.5),
            code: 12,
        },
        Case {
            key: "ipvlan",
            title: "ipvlan (l2) + host-local",
            net: Net::Ipvlan { name: "bench-iv", subnet: "10.77.8.0/24" },
            ifname: "eth0",
            ports: false,
            targets: (0.5, 0.8),
            code: 5,
        },
    ]
}

/// Samples of one run over `n` containers: `[impl][container]` in ms.
struct Run {
    add: Vec<Vec<Option<f64>>>,
    del: Vec<Vec<Option<f64>>>,
    /// Exec records per implementation.
    log: Vec<Vec<ExecRecord>>,
}

/// ADD `n` containers (interleaved across implementations, verifying each),
/// then DEL them in the same order; then check nothing is left.
fn run(ctx: &mut Ctx, active: &[usize], case: &Case, n: usize, sec: &mut Section) -> Run {
    let (net, ifname, ports, code) = (&case.net, case.ifname, case.ports, case.code);
    let m = active.len();
    let mut add = vec![vec![None; n]; m];
    let mut del = vec![vec![None; n]; m];
    let lists: Vec<_> = active.iter().map(|&k| net.list(&ctx.impls[k].ipam_dir())).collect();
    let mut before = Vec::new();
    for &k in active {
        ctx.impls[k].take_log();
        before.push(state(&ctx.impls[k], net.name()));
    }
    let mut ctrs: Vec<Vec<TestNs>> = (0..m).map(|_| Vec::new()).collect();
    let mut ips: Vec<Vec<Option<std::net::IpAddr>>> = vec![Vec::new(); m];
    let mut errors = Vec::new();
    for i in 0..n {
        for a in order(m, i) {
            let imp = &ctx.impls[active[a]];
            let ctr = TestNs::new().expect("container netns");
            let caps = if ports { port_mappings(20000, i) } else { Value::Null };
            let conf = rt_conf(&container_id(code, i), &ctr, ifname, i, caps);
            let (t, r) = imp.add(&lists[a], &conf);
            match r {
                Ok(res) => {
                    add[a][i] = Some(ms(t));
                    if let Err(e) = verify(&ctr, ifname, &res) {
                        errors.push(format!("{} ADD #{i} ({}): {e}", imp.name, net.name()));
                    }
                    ips[a].push(result_ip(&res));
                }
                Err(e) => errors.push(format!("{} ADD #{i} ({}) failed: {e}", imp.name, net.name())),
            }
            ctrs[a].push(ctr);
        }
        if (i + 1) % 50 == 0 {
            println!("  {}: {} containers added", net.name(), i + 1);
        }
    }
    for (a, v) in ips.iter().enumerate().filter(|_| ifname != "lo") {
        let mut seen: Vec<_> = v.iter().flatten().collect();
        seen.sort();
        let before = seen.len();
        seen.dedup();
        if seen.len() != before {
            errors.push(format!(
                "{}: {} duplicate addresses",
                ctx.impls[active[a]].name,
                before - seen.len()
            ));
        }
    }
    for i in 0..n {
        for a in order(m, i) {
            let imp = &ctx.impls[active[a]];
            let caps = if ports { port_mappings(20000, i) } else { Value::Null };
            let conf = rt_conf(&container_id(code, i), &ctrs[a][i], ifname, i, caps);
            let (t, r) = imp.del(&lists[a], &conf);
            match r {
                Ok(()) => del[a][i] = Some(ms(t)),
                Err(e) => errors.push(format!("{} DEL #{i} ({}) failed: {e}", imp.name, net.name())),
            }
        }
    }
    drop(ctrs);
    for e in errors {
        sec.text(format!("**{e}**"));
        ctx.report.error(e);
    }
    let mut log = Vec::new();
    for (a, &k) in active.iter().enumerate() {
        let left = left_over(&before[a], &state(&ctx.impls[k], net.name()));
        ctx.leftover(k, &format!("the DELs of {}", net.name()), &left, sec);
        log.push(ctx.impls[k].take_log());
    }
    Run { add, del, log }
}

/// Per plugin exec of a chain: median wall and CPU; with `window`, also the
/// median wall of its first and last `window` execs of each command (in the
/// scaling scenario: which plugin grows as the network fills).
fn exec_table(ctx: &Ctx, active: &[usize], logs: &[Vec<ExecRecord>], window: Option<usize>) -> Table {
    let mut header = vec!["impl", "plugin", "command", "execs", "median wall ms", "median CPU ms"];
    let (first, last) = window.map(|w| (format!("first {w} ms"), format!("last {w} ms"))).unwrap_or_default();
    if window.is_some() {
        header.extend([first.as_str(), last.as_str()]);
    }
    let mut t = Table::new(&header);
    for (a, log) in logs.iter().enumerate() {
        let mut by: BTreeMap<(String, String), Vec<&ExecRecord>> = BTreeMap::new();
        for r in log {
            by.entry((r.command.clone(), r.plugin.clone())).or_default().push(r);
        }
        for ((cmd, plugin), rs) in by {
            let wall: Vec<f64> = rs.iter().map(|r| ms(r.wall)).collect();
            let cpu: Vec<f64> =
                rs.iter().map(|r| (r.usage.user_us + r.usage.sys_us) as f64 / 1000.0).collect();
            let mut row = vec![
                ctx.impls[active[a]].name.clone(),
                plugin,
                cmd,
                rs.len().to_string(),
                fmt_ms(median(&wall)),
                fmt_ms(median(&cpu)),
            ];
            if let Some(w) = window {
                let w = w.min(wall.len());
                row.push(fmt_ms(median(&wall[..w])));
                row.push(fmt_ms(median(&wall[wall.len() - w..])));
            }
            t.row(row);
        }
    }
    t
}

pub fn latency(ctx: &mut Ctx, case: &Case) {
    let mut sec = Section::new(format!("1. {}: ADD and DEL latency", case.title));
    if let Some(why) = case.net.link_kind().and_then(test_harness::missing_link_kind) {
        let msg = format!("skipped: {why} (scripts/vm-test runs it on Debian 12's 6.1, see docs/kernels.md)");
        println!("== {}: {msg}", case.title);
        sec.text(msg);
        ctx.report.push(sec);
        return;
    }
    let active = ctx.active(&case.net.plugins(), &mut sec);
    if active.is_empty() {
        ctx.report.push(sec);
        return;
    }
    let n = ctx.opts.n;
    println!("== {} ({n} containers each, interleaved: {})", case.title, ctx.names(&active).join(", "));
    sec.text(format!(
        "{n} containers per implementation, each in its own netns, ADDed one after another (implementations \
         alternating container by container), every ADD verified (address and default route in the container), \
         then DELed in the same order. Latency is the whole chain as the runtime sees it."
    ));
    let r = run(ctx, &active, case, n, &mut sec);
    let (t, ratios) = ctx.latency_table(&active, &[("ADD", &r.add), ("DEL", &r.del)]);
    sec.table(t);
    for (op, name, ratio) in ratios {
        let limit = if op == "ADD" { case.targets.0 } else { case.targets.1 };
        ctx.report.target(
            format!("{} {op} {name}/{}", case.title, ctx.base_name()),
            ratio,
            limit,
            "ratio",
            "",
        );
    }
    sec.text(
        "Each plugin exec of the chain (wall from spawn to reaped; CPU = user + system of the plugin and \
              the IPAM plugin it waited for):",
    );
    sec.table(exec_table(ctx, &active, &r.log, None));
    ctx.report.push(sec);
}

pub fn scaling(ctx: &mut Ctx) {
    let case = Case {
        key: "scaling",
        title: "scaling",
        net: Net::Bridge { name: "bench-scale", bridge: "cnisc0", subnet: "10.77.9.0/24", portmap: true },
        ifname: "eth0",
        ports: true,
        targets: (f64::NAN, f64::NAN),
        code: 9,
    };
    let net = &case.net;
    let mut sec = Section::new("3. Scaling: one /24 filled with bridge + host-local + ipMasq + portmap");
    let active = ctx.active(&net.plugins(), &mut sec);
    if active.is_empty() {
        ctx.report.push(sec);
        return;
    }
    let s = ctx.opts.scale.min(250);
    let w = 10.min(s / 2).max(1);
    println!("== scaling to {s} containers ({})", ctx.names(&active).join(", "));
    sec.text(format!(
        "{s} containers on one network (two port mappings each), ADDed interleaved, then DELed in ADD order: \
         the first DELs run on a full network, the last on a nearly empty one. Windows of {w} containers."
    ));
    let r = run(ctx, &active, &case, s, &mut sec);
    let win = |v: &Vec<Option<f64>>, late: bool| -> Vec<Option<f64>> {
        if late {
            v[s - w..].to_vec()
        } else {
            v[..w].to_vec()
        }
    };
    let early_add: Vec<_> = r.add.iter().map(|v| win(v, false)).collect();
    let late_add: Vec<_> = r.add.iter().map(|v| win(v, true)).collect();
    let full_del: Vec<_> = r.del.iter().map(|v| win(v, false)).collect();
    let empty_del: Vec<_> = r.del.iter().map(|v| win(v, true)).collect();
    let add_early = format!("ADD 1–{w}");
    let add_late = format!("ADD {}–{s}", s - w + 1);
    let (t, _) = ctx.latency_table(
        &active,
        &[
            (&add_early, &early_add),
            (&add_late, &late_add),
            ("DEL (full)", &full_del),
            ("DEL (nearly empty)", &empty_del),
            ("ADD all", &r.add),
            ("DEL all", &r.del),
        ],
    );
    sec.table(t);
    let mut growth = Table::new(&["impl", "ADD late / early", "DEL full / nearly empty"]);
    for (a, &k) in active.iter().enumerate() {
        let g_add = median(&present(&late_add[a])) / median(&present(&early_add[a]));
        let g_del = median(&present(&full_del[a])) / median(&present(&empty_del[a]));
        growth.row(vec![ctx.impls[k].name.clone(), fmt_ratio(g_add), fmt_ratio(g_del)]);
        if k != ctx.base {
            ctx.report.target(
                format!("scaling: ADD at {}–{s} / ADD at 1–{w}, {}", s - w + 1, ctx.impls[k].name),
                g_add,
                1.2,
                "ratio",
                if s < 250 { "fewer than 250 containers" } else { "" },
            );
        } else {
            sec.text(format!(
                "Baseline growth of ADD: {}× (issue 7 measured 3.3× at 250).",
                fmt_ratio(g_add)
            ));
        }
    }
    sec.table(growth);
    if let Some(b) = ctx.base_in(&active) {
        for (a, &k) in active.iter().enumerate() {
            if a != b {
                let r = median(&paired_ratios(&late_add[a], &late_add[b]));
                sec.text(format!(
                    "At {}–{s} containers `{}` ADDs in {} of the baseline's time.",
                    s - w + 1,
                    ctx.impls[k].name,
                    fmt_ratio(r)
                ));
            }
        }
    }
    sec.table(exec_table(ctx, &active, &r.log, Some(w)));
    ctx.report.push(sec);
}
