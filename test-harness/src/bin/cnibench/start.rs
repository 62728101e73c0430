//! Scenario 4: process start, peak RSS, size on disk.

use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use test_harness::{run_with_usage, TempDir, TestNs};

use crate::ctx::{ms, Ctx};
use crate::report::{Section, Table};
use crate::setup::{container_id, order, rt_conf, Net, PLUGINS};
use crate::stats::{fmt_ms, fmt_ratio, median, paired_ratios, percentile};

/// The reference's five plugins (issue 7: 12.5 MiB together).
const FIVE: &[&str] = &["loopback", "bridge", "host-local", "portmap", "macvlan"];
/// Every plugin binary name of ours that counts for the size target.
const ALL: &[&str] = &[
    "loopback",
    "bridge",
    "host-local",
    "portmap",
    "macvlan",
    "dns-sidecar",
    "dnsname",
    "firewall",
    "tuning",
    "bandwidth",
    "tap",
    "dummy",
    "ptp",
    "ipvlan",
    "vlan",
];

/// One exec of `bin` with `CNI_COMMAND=VERSION` and nothing else: ms.
pub fn version_exec(bin: &Path) -> Option<f64> {
    let mut cmd = Command::new(bin);
    cmd.env_clear().env("CNI_COMMAND", "VERSION");
    let t = Instant::now();
    let (out, _) = run_with_usage(cmd, None, br#"{"cniVersion":"1.0.0"}"#).ok()?;
    let d = t.elapsed();
    out.success().then(|| ms(d))
}

pub fn start(ctx: &mut Ctx) {
    let mut sec = Section::new("4. Process start, peak RSS, size on disk");
    let runs = ctx.opts.start_runs;
    println!("== process start ({runs} VERSION execs per plugin)");
    sec.text(format!(
        "Process start: `CNI_COMMAND=VERSION` exec'd {runs} times per plugin (spawn, read stdout, reap), the \
         implementations interleaved exec by exec{}.",
        if ctx.noop.is_some() { ", together with a static C no-op (the floor)" } else { "" }
    ));
    let mut t = Table::new(&[
        "plugin",
        "impl",
        "median ms",
        "p95 ms",
        &format!("paired ratio / {}", ctx.base_name()),
    ]);
    let mut noop = Vec::new();
    for plugin in PLUGINS {
        let have: Vec<usize> =
            (0..ctx.impls.len()).filter(|&k| ctx.impls[k].missing(&[plugin]).is_empty()).collect();
        if have.is_empty() {
            continue;
        }
        let mut s: Vec<Vec<Option<f64>>> = vec![Vec::new(); have.len()];
        for i in 0..runs {
            for a in order(have.len(), i) {
                s[a].push(version_exec(&ctx.impls[have[a]].dir.join(plugin)));
            }
            if let Some(n) = &ctx.noop {
                noop.extend(version_exec(n));
            }
        }
        let base = have.iter().position(|&k| k == ctx.base);
        for (a, &k) in have.iter().enumerate() {
            let v: Vec<f64> = s[a].iter().flatten().copied().collect();
            let r = match base {
                Some(b) if b != a => fmt_ratio(median(&paired_ratios(&s[a], &s[b]))),
                _ => String::new(),
            };
            t.row(vec![
                plugin.to_string(),
                ctx.impls[k].name.clone(),
                fmt_ms(median(&v)),
                fmt_ms(percentile(&v, 95.0)),
                r,
            ]);
            if k != ctx.base {
                ctx.report.target(
                    format!("process start {plugin} ({})", ctx.impls[k].name),
                    median(&v),
                    1.0,
                    "ms",
                    "",
                );
            }
        }
    }
    if !noop.is_empty() {
        t.row(vec![
            "static C no-op".into(),
            "floor".into(),
            fmt_ms(median(&noop)),
            fmt_ms(percentile(&noop, 95.0)),
            String::new(),
        ]);
        ctx.noop_ms = noop;
    }
    sec.table(t);
    rss(ctx, &mut sec);
    sizes(ctx, &mut sec);
    ctx.report.push(sec);
}

/// Peak RSS of every plugin process during ADD, including a delegated IPAM
/// plugin: each binary is reached through the static wrapper (see
/// floors::RSSWRAP_C), which records the real plugin's own rusage.
fn rss(ctx: &mut Ctx, sec: &mut Section) {
    let Some(wrap) = ctx.rsswrap.clone() else {
        sec.text("Peak RSS: skipped (the static exec wrapper could not be built with gcc -static).");
        return;
    };
    let nets = [
        Net::Loopback,
        Net::Bridge { name: "bench-rss", bridge: "cnirss0", subnet: "10.77.5.0/24", portmap: true },
        Net::Bridge { name: "bench-rssbr", bridge: "cnirss1", subnet: "10.77.7.0/24", portmap: false },
        Net::Macvlan { name: "bench-rssmv", subnet: "10.77.6.0/24" },
        Net::Ptp { name: "bench-rssptp", subnet: "10.77.13.0/24" },
    ];
    let k_runs = if ctx.opts.tiny { 2 } else { 5 };
    let mut t =
        Table::new(&["impl", "plugin", "peak RSS KiB (max over ADDs)", "median CPU ms (ADD)", "≤ 2.5 MiB"]);
    for k in 0..ctx.impls.len() {
        let imp = &ctx.impls[k];
        let dirs = TempDir::new().expect("temp dir");
        let (wdir, udir) = (dirs.join("bin"), dirs.join("usage"));
        std::fs::create_dir_all(&wdir).and_then(|_| std::fs::create_dir_all(&udir)).expect("temp dirs");
        for p in PLUGINS {
            if imp.dir.join(p).is_file() {
                std::os::unix::fs::symlink(&wrap, wdir.join(p)).expect("symlink");
            }
        }
        let mut rt = imp.runtime();
        rt.exec_log = None;
        rt.bin_dirs = vec![wdir.clone()];
        rt.env = vec![
            ("CNIBENCH_REAL_DIR".into(), imp.dir.to_string_lossy().into_owned()),
            ("CNIBENCH_USAGE_DIR".into(), udir.to_string_lossy().into_owned()),
        ];
        for (j, net) in nets.iter().enumerate() {
            if !imp.missing(&net.plugins()).is_empty() {
                continue;
            }
            let list = net.list(&imp.ipam_dir());
            let ifname = if matches!(net, Net::Loopback) { "lo" } else { "eth0" };
            for i in 0..k_runs {
                let ctr = TestNs::new().expect("netns");
                let caps =
                    if j == 1 { crate::setup::port_mappings(30000, i) } else { serde_json::Value::Null };
                let conf = rt_conf(&container_id(40 + j as u32, i), &ctr, ifname, i, caps);
                imp.in_host(|| {
                    let _ = rt.add_rt(&list, &conf);
                    let _ = rt.del_rt(&list, &conf);
                });
            }
        }
        // <plugin>.<command>.<pid>: "maxrss_kib user_us sys_us"
        let mut by: std::collections::BTreeMap<String, (u64, Vec<f64>)> = Default::default();
        for e in std::fs::read_dir(&udir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let mut parts = name.split('.');
            let (Some(plugin), Some("ADD")) = (parts.next(), parts.next()) else { continue };
            let text = std::fs::read_to_string(e.path()).unwrap_or_default();
            let v: Vec<u64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
            if let [rss, user, sys] = v[..] {
                let ent = by.entry(plugin.to_string()).or_default();
                ent.0 = ent.0.max(rss);
                ent.1.push((user + sys) as f64 / 1000.0);
            }
        }
        for (p, (peak, cpu)) in by {
            let note = if matches!(p.as_str(), "bridge" | "macvlan" | "ptp") {
                " (max with its host-local child)"
            } else {
                ""
            };
            let ok = if peak as f64 <= 2.5 * 1024.0 { "yes" } else { "no" };
            t.row(vec![
                ctx.impls[k].name.clone(),
                format!("{p}{note}"),
                peak.to_string(),
                fmt_ms(median(&cpu)),
                ok.into(),
            ]);
            if k != ctx.base {
                ctx.report.target(
                    format!("peak RSS {p} ({})", ctx.impls[k].name),
                    peak as f64 / 1024.0,
                    2.5,
                    "MiB",
                    "",
                );
            }
        }
    }
    if let Some(noop) = &ctx.noop {
        // The floor of this measurement: a static C no-op through the same wrapper.
        let dir = noop.parent().expect("dir");
        let udir = TempDir::new().expect("temp dir");
        let link = udir.join("noop");
        let _ = std::os::unix::fs::symlink(&wrap, &link);
        let out = Command::new(&link)
            .env("CNIBENCH_REAL_DIR", dir)
            .env("CNIBENCH_USAGE_DIR", udir.path())
            .env("CNI_COMMAND", "ADD")
            .output();
        let rss = std::fs::read_dir(udir.path())
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("noop.ADD."))
            .find_map(|e| {
                std::fs::read_to_string(e.path()).ok()?.split_whitespace().next()?.parse::<u64>().ok()
            });
        if let (Ok(_), Some(rss)) = (out, rss) {
            t.row(vec![
                "floor".into(),
                "static C no-op".into(),
                rss.to_string(),
                String::new(),
                String::new(),
            ]);
        }
    }
    sec.text(format!(
        "Peak RSS during ADD: `wait4` ru_maxrss of each plugin process, IPAM included, over {k_runs} ADDs of each chain \
         (loopback, bridge, bridge + portmap, macvlan, ptp). Each plugin is reached through a static wrapper that forks it \
         afresh: a process spawned with vfork (as runtimes and plugins spawn) otherwise inherits its parent's high \
         water mark at exec."
    ));
    sec.table(t);
}

/// Size on disk of each plugin binary and the totals (hard links and
/// symlinks to one file count once).
fn sizes(ctx: &mut Ctx, sec: &mut Section) {
    let names: Vec<String> = ctx.impls.iter().map(|i| i.name.clone()).collect();
    let mut header = vec!["binary".to_string()];
    header.extend(names.iter().map(|n| format!("{n} KiB")));
    let mut t = Table { header, rows: Vec::new() };
    let size =
        |dir: &Path, p: &str| std::fs::metadata(dir.join(p)).ok().map(|m| (m.len(), (m.dev(), m.ino())));
    for p in ALL {
        if ctx.impls.iter().all(|i| size(&i.dir, p).is_none()) {
            continue;
        }
        let mut row = vec![p.to_string()];
        for imp in &ctx.impls {
            row.push(size(&imp.dir, p).map(|(s, _)| (s / 1024).to_string()).unwrap_or_else(|| "–".into()));
        }
        t.row(row);
    }
    for (label, set) in [("total of the five", FIVE), ("total of all present", ALL)] {
        let mut row = vec![format!("**{label}**")];
        for (k, imp) in ctx.impls.iter().enumerate() {
            let mut seen = BTreeSet::new();
            let total: u64 = set
                .iter()
                .filter_map(|p| size(&imp.dir, p))
                .filter(|(_, id)| seen.insert(*id))
                .map(|(s, _)| s)
                .sum();
            row.push(format!("{} ({:.2} MiB)", total / 1024, total as f64 / 1048576.0));
            if k != ctx.base && set == ALL {
                ctx.report.target(
                    format!("all plugin binaries on disk ({})", imp.name),
                    total as f64 / 1048576.0,
                    6.0,
                    "MiB",
                    "",
                );
            }
        }
        t.row(row);
    }
    sec.text("Size on disk:");
    sec.table(t);
}
