//! The long chaos and soak campaigns (scripts/chaos, scripts/soak); the short
//! ones run in `cargo test` (test-harness/tests/chaos.rs).

use std::path::PathBuf;
use std::process::ExitCode;

use test_harness::chaos::{self, ChaosOpts};
use test_harness::soak::{self, SoakOpts};

const USAGE: &str = "\
usage: cnichaos chaos [--runs N] [--sweep N|all] [--residents N] [--only PLUGIN] [--seed S] [--bin DIR] [-v]
       cnichaos soak  [--rounds N] [--parallel N] [--crash N] [--bin DIR] [-v]

chaos: N runs killed a random time into a random plugin's ADD or DEL (default 1000), plus
       runs killed at recorded syscalls spread over every plugin's trace (--sweep: how many,
       `all` for every point; default 0). Each is followed by the recovery a runtime does.
       --only kills only that binary (bridge, host-local, portmap, firewall, tuning, dns-sidecar).
soak:  N rounds (default 100) of N parallel ADDs (default 32), GC, containers crashing
       (netns gone, N of them, default 4), parallel DELs, GC.
Both run as root, in network namespaces they create, with every state dir in a temp dir;
the plugins come from --bin (default: this binary's directory). Markdown on stdout;
exit status 1 when anything was left behind or failed.";

extern "C" fn stop(_: libc::c_int) {
    chaos::STOP.store(true, std::sync::atomic::Ordering::Relaxed);
}

fn main() -> ExitCode {
    // Interrupted: finish the current run and remove everything created.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic.
        unsafe { libc::signal(sig, stop as *const () as libc::sighandler_t) };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cnichaos: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, String> {
    it.next().ok_or_else(|| format!("{flag} needs a value"))
}

fn num<T: std::str::FromStr>(s: &str, flag: &str) -> Result<T, String> {
    s.parse().map_err(|_| format!("{flag}: not a number: {s:?}"))
}

/// Where and when a campaign ran, for the figures in docs/reliability.md.
fn header(args: &[String]) {
    println!(
        "`cnichaos {}`: commit {}, {}; machine: {}.\n",
        args.join(" "),
        test_harness::run_text("git", &["rev-parse", "--short", "HEAD"]),
        test_harness::run_text("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
        test_harness::machine_info()
    );
}

fn run(args: &[String]) -> Result<bool, String> {
    let Some((mode, rest)) = args.split_first() else { return Err("which campaign?".into()) };
    let mut bin: Option<PathBuf> = None;
    let mut verbose = false;
    match mode.as_str() {
        "chaos" => {
            let mut o = ChaosOpts::new(1000, Some(0));
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--runs" => o.delay_runs = num(value(&mut it, a)?, a)?,
                    "--sweep" => {
                        let v = value(&mut it, a)?;
                        o.sweep_runs = if v == "all" { None } else { Some(num(v, a)?) };
                    }
                    "--residents" => o.residents = num(value(&mut it, a)?, a)?,
                    "--only" => o.only = Some(value(&mut it, a)?.clone()),
                    "--seed" => o.seed = num(value(&mut it, a)?, a)?,
                    "--bin" => bin = Some(value(&mut it, a)?.into()),
                    "-v" => verbose = true,
                    _ => return Err(format!("unknown option {a}")),
                }
            }
            if let Some(b) = bin {
                o.bin_dir = b;
            }
            o.verbose = verbose;
            header(args);
            let report = chaos::run(&o)?;
            println!("{}\nLoad average at the end: {}.", report.markdown(), test_harness::load_average());
            if !report.ok() {
                eprintln!("{}", report.failures());
            }
            Ok(report.ok())
        }
        "soak" => {
            let mut o = SoakOpts::new(100, 32);
            let mut it = rest.iter();
            while let Some(a) = it.next() {
                match a.as_str() {
                    "--rounds" => o.rounds = num(value(&mut it, a)?, a)?,
                    "--parallel" => o.parallel = num(value(&mut it, a)?, a)?,
                    "--crash" => o.crash = num(value(&mut it, a)?, a)?,
                    "--bin" => bin = Some(value(&mut it, a)?.into()),
                    "-v" => verbose = true,
                    _ => return Err(format!("unknown option {a}")),
                }
            }
            if let Some(b) = bin {
                o.bin_dir = b;
            }
            o.verbose = verbose;
            header(args);
            let report = soak::run(&o)?;
            println!("{}\nLoad average at the end: {}.", report.markdown(), test_harness::load_average());
            if !report.ok() {
                eprintln!("{}", report.failures());
            }
            Ok(report.ok())
        }
        "-h" | "--help" => {
            println!("{USAGE}");
            Ok(true)
        }
        m => Err(format!("unknown campaign {m:?}")),
    }
}
