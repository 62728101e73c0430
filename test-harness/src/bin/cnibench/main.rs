//! cnibench: the suite's plugins side by side with the reference plugins (or
//! any plugin directories), invoked exactly as a runtime does, in network
//! namespaces it creates and removes. See README.md "Benchmark" and
//! `cnibench --help`.
//!
//! Drift-proofing: implementations are interleaved operation by operation
//! (A B, then B A, …) and compared by paired ratios (per-iteration ratio,
//! then the median), so a machine that slows down mid-run slows both sides.

// InvokeError is large; irrelevant for a benchmark tool.
#![allow(clippy::result_large_err)]

mod ctx;
mod dns;
mod floors;
mod latency;
mod overlay;
mod parallel;
mod report;
mod setup;
mod start;
mod stats;

use std::path::PathBuf;
use std::time::Instant;

use ctx::{Ctx, Opts};
use report::Report;
use setup::Impl;

const USAGE: &str = "usage: cnibench [--dirs NAME=DIR,...] [--n N] [--scale N] [--parallel N] [--rounds N]
                [--start-runs N] [--tiny] [--out FILE] [--only SCENARIO,...]

  --dirs        plugin directories to compare (default ours=target/release,ref=/usr/lib/cni);
                ratios are against the one named `ref` (else the last)
  --n           containers per latency scenario (default 30)
  --scale       containers in the scaling scenario (default 250, at most 250)
  --parallel    parallel ADDs per burst (default 32); --rounds bursts each cold and warm (default 3)
  --start-runs  VERSION execs per plugin (default 200)
  --tiny        CI configuration: --n 3 --scale 12 --rounds 1 --start-runs 20
  --out         write the markdown results page there
  --only        scenarios: loopback,bridge,portmap,macvlan,ptp,ipvlan,parallel,scaling,start,dns,
                overlay,floors (ipvlan is skipped, with a note, on a kernel without ipvlan)

Exit status 1 when anything measured went wrong (a failed or unverified ADD, leftovers of a
non-baseline implementation); timings never fail the run.";

const SCENARIOS: &[&str] = &[
    "loopback", "bridge", "portmap", "macvlan", "ptp", "ipvlan", "parallel", "scaling", "start", "dns",
    "overlay", "floors",
];

const WHERE_TIME_GOES: &str = include_str!("where_time_goes.md");

fn parse_args() -> Result<Opts, String> {
    let mut o = Opts {
        dirs: vec![("ours".into(), "target/release".into()), ("ref".into(), "/usr/lib/cni".into())],
        n: 30,
        scale: 250,
        parallel: 32,
        rounds: 3,
        start_runs: 200,
        tiny: false,
        out: None,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    let mut explicit = Vec::new();
    while let Some(a) = args.next() {
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (a.clone(), None),
        };
        let mut val = || inline.clone().or_else(|| args.next()).ok_or(format!("{flag} needs a value"));
        let num = |v: String| v.parse::<usize>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            "--tiny" => o.tiny = true,
            "--dirs" => {
                o.dirs = val()?
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|d| match d.split_once('=') {
                        Some((n, p)) => (n.to_string(), PathBuf::from(p)),
                        None => (d.rsplit('/').next().unwrap_or(d).to_string(), PathBuf::from(d)),
                    })
                    .collect()
            }
            "--n" => o.n = num(val()?)?,
            "--scale" => o.scale = num(val()?)?,
            "--parallel" => o.parallel = num(val()?)?,
            "--rounds" => o.rounds = num(val()?)?,
            "--start-runs" => o.start_runs = num(val()?)?,
            "--out" => o.out = Some(PathBuf::from(val()?)),
            "--only" => {
                let only: Vec<String> = val()?.split(',').map(str::to_string).collect();
                if let Some(bad) = only.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
                    return Err(format!("unknown scenario {bad:?} (known: {})", SCENARIOS.join(",")));
                }
                o.only = Some(only);
            }
            _ => return Err(format!("unknown argument {a:?}\n{USAGE}")),
        }
        explicit.push(flag);
    }
    if o.tiny {
        let set = |f: &str| explicit.iter().any(|e| e == f);
        if !set("--n") {
            o.n = 3;
        }
        if !set("--scale") {
            o.scale = 12;
        }
        if !set("--rounds") {
            o.rounds = 1;
        }
        if !set("--start-runs") {
            o.start_runs = 20;
        }
    }
    if o.dirs.is_empty() || o.n == 0 || o.scale < 2 || o.parallel == 0 {
        return Err("need at least one dir, --n ≥ 1, --scale ≥ 2, --parallel ≥ 1".into());
    }
    Ok(o)
}

fn main() {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("cnibench: {e}");
            std::process::exit(2);
        }
    };
    if !test_harness::is_root() {
        eprintln!("cnibench: must run as root (it creates network namespaces)");
        std::process::exit(2);
    }
    let started = Instant::now();
    let machine_before = test_harness::machine_info();
    // Check every dir before creating any namespace (exit skips destructors).
    let dirs: Vec<(String, PathBuf)> = opts
        .dirs
        .iter()
        .map(|(name, dir)| {
            let dir = std::fs::canonicalize(dir).unwrap_or_else(|e| {
                eprintln!("cnibench: plugin dir {}: {e}", dir.display());
                std::process::exit(2);
            });
            (name.clone(), dir)
        })
        .collect();
    let mut impls = Vec::new();
    for (name, dir) in &dirs {
        impls.push(Impl::new(name, dir).expect("creating the host netns"));
    }
    let base = impls.iter().position(|i| i.name == "ref").unwrap_or(impls.len() - 1);
    let noop_dir = test_harness::TempDir::new().expect("temp dir");
    let (noop, rsswrap) = if opts.wants("start") || opts.wants("floors") {
        floors::build_helpers(&noop_dir)
    } else {
        (None, None)
    };
    println!(
        "cnibench: {} (baseline `{}`)",
        opts.dirs.iter().map(|(n, d)| format!("{n}={}", d.display())).collect::<Vec<_>>().join(", "),
        impls[base].name
    );
    println!("{machine_before}");
    let mut ctx = Ctx { opts, impls, base, report: Report::default(), noop, rsswrap, noop_ms: Vec::new() };

    for case in latency::cases() {
        if ctx.opts.wants(case.key) {
            latency::latency(&mut ctx, &case);
        }
    }
    if ctx.opts.wants("parallel") {
        parallel::parallel(&mut ctx);
    }
    if ctx.opts.wants("scaling") {
        latency::scaling(&mut ctx);
    }
    if ctx.opts.wants("start") {
        start::start(&mut ctx);
    }
    if ctx.opts.wants("dns") {
        dns::dns(&mut ctx);
    }
    if ctx.opts.wants("overlay") {
        overlay::overlay(&mut ctx);
    }
    if ctx.opts.wants("floors") {
        floors::floors(&mut ctx);
    }

    let elapsed = started.elapsed().as_secs();
    let cmdline: Vec<String> = std::env::args().skip(1).collect();
    let dirs = ctx
        .impls
        .iter()
        .map(|i| format!("`{}` = {}", i.name, i.dir.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let header = format!(
        "# Benchmark: cni-rs plugins side by side with the reference plugins\n\n\
         Generated by `scripts/bench{}` (cnibench) in {elapsed} s.\n\n\
         - Implementations: {dirs}; ratios are paired against `{base}` (per-iteration ratio, then the median).\n\
         - Ours: commit {commit}. Reference: containernetworking-plugins {refver} (Debian).\n\
         - Machine: {machine_before}; at the end: load average {load_after}.\n\
         - Timings on a shared 2-core VM are noisy: compare the paired ratios, which interleaving keeps stable, \
         more than absolute milliseconds.\n\n\
         ## How to reproduce\n\n\
         ```sh\nscripts/bench{}            # as root, from a checkout: builds release, runs every scenario\n\
         scripts/bench --tiny      # the CI configuration (seconds, fails only on errors)\n\
         scripts/bench --only bridge,portmap --n 50 --out /tmp/b.md\n```\n\n\
         Every implementation runs in its own \"host\" netns created by the benchmark, every container in its own \
         netns; plugins are exec'd as a runtime does (libcni's conflist chaining, prevResult, DEL in reverse with the \
         cached result, runtimeConfig from capabilities; CNI_ARGS as Podman sends them). All conflists use \
         cniVersion 1.0.0. Nothing outside those namespaces and temp dirs is touched; everything is removed at the end.\n",
        if cmdline.is_empty() { String::new() } else { format!(" {}", cmdline.join(" ")) },
        if cmdline.is_empty() { String::new() } else { format!(" {}", cmdline.join(" ")) },
        base = ctx.base_name(),
        commit = test_harness::run_text("git", &["rev-parse", "--short", "HEAD"]),
        refver = test_harness::run_text("dpkg-query", &["-W", "-f", "${Version}", "containernetworking-plugins"]),
        load_after = test_harness::load_average(),
    );
    let page = ctx.report.page(&header, &[WHERE_TIME_GOES]);
    println!("\n## Targets\n\n{}", ctx.report.targets_table().markdown());
    if let Some(out) = &ctx.opts.out {
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(dir);
        }
        std::fs::write(out, page).unwrap_or_else(|e| eprintln!("writing {}: {e}", out.display()));
        println!("results page: {}", out.display());
    }
    println!("cnibench: done in {elapsed} s");
    let failed = !ctx.report.errors.is_empty();
    if failed {
        eprintln!("cnibench: {} error(s):", ctx.report.errors.len());
        for e in &ctx.report.errors {
            eprintln!("  - {e}");
        }
    }
    // exit() skips destructors: remove the namespaces and temp dirs first.
    drop(ctx);
    drop(noop_dir);
    if failed {
        std::process::exit(1);
    }
}
