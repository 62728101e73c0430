//! What every scenario shares: the options, the implementations under test,
//! the baseline, and the report being built.

use std::path::PathBuf;

use crate::report::{Report, Section, Table};
use crate::setup::Impl;
use crate::stats::{fmt_ms, fmt_ratio, median, paired_ratios, percentile, present};

pub struct Opts {
    pub dirs: Vec<(String, PathBuf)>,
    /// Containers per latency scenario.
    pub n: usize,
    /// Containers in the scaling scenario.
    pub scale: usize,
    /// Parallel ADDs per round and rounds (each cold and warm).
    pub parallel: usize,
    pub rounds: usize,
    /// VERSION execs per plugin.
    pub start_runs: usize,
    pub tiny: bool,
    pub out: Option<PathBuf>,
    pub only: Option<Vec<String>>,
}

impl Opts {
    pub fn wants(&self, key: &str) -> bool {
        self.only.as_ref().is_none_or(|o| o.iter().any(|k| k == key))
    }
}

pub struct Ctx {
    pub opts: Opts,
    pub impls: Vec<Impl>,
    /// Index of the baseline (the dir named `ref`, else the last).
    pub base: usize,
    pub report: Report,
    /// A static no-op binary, when gcc could build one.
    pub noop: Option<PathBuf>,
    /// The RSS-measuring exec wrapper, when gcc could build it.
    pub rsswrap: Option<PathBuf>,
    /// Its exec times (ms), once measured.
    pub noop_ms: Vec<f64>,
}

impl Ctx {
    /// The implementations that have every plugin of `plugins`; the others
    /// are named in `sec` as skipped.
    pub fn active(&self, plugins: &[&str], sec: &mut Section) -> Vec<usize> {
        let mut ok = Vec::new();
        for (k, imp) in self.impls.iter().enumerate() {
            let missing = imp.missing(plugins);
            if missing.is_empty() {
                ok.push(k);
            } else {
                let msg = format!(
                    "skipped for `{}`: {} missing in {}",
                    imp.name,
                    missing.join(", "),
                    imp.dir.display()
                );
                println!("{msg}");
                sec.text(msg);
            }
        }
        ok
    }

    /// Names of the active implementations.
    pub fn names(&self, active: &[usize]) -> Vec<String> {
        active.iter().map(|&k| self.impls[k].name.clone()).collect()
    }

    /// The position of the baseline in `active`, if it ran.
    pub fn base_in(&self, active: &[usize]) -> Option<usize> {
        active.iter().position(|&k| k == self.base)
    }

    pub fn base_name(&self) -> &str {
        &self.impls[self.base].name
    }

    /// A table of samples per (operation, implementation): n, median, p95 and
    /// the median of paired ratios against the baseline. `samples[op][a][i]`.
    /// Returns the table and, per op and non-baseline implementation, that ratio.
    pub fn latency_table(
        &self,
        active: &[usize],
        ops: &[(&str, &[Vec<Option<f64>>])],
    ) -> (Table, Vec<(String, String, f64)>) {
        let base = self.base_in(active);
        let mut t = Table::new(&[
            "op",
            "impl",
            "ok",
            "median ms",
            "p95 ms",
            &format!("paired ratio / {} (median)", self.base_name()),
        ]);
        let mut ratios = Vec::new();
        for (op, samples) in ops {
            for (a, &k) in active.iter().enumerate() {
                let v = present(&samples[a]);
                let r = match base {
                    Some(b) if b != a => {
                        let r = median(&paired_ratios(&samples[a], &samples[b]));
                        ratios.push((op.to_string(), self.impls[k].name.clone(), r));
                        fmt_ratio(r)
                    }
                    _ => String::new(),
                };
                t.row(vec![
                    op.to_string(),
                    self.impls[k].name.clone(),
                    format!("{}/{}", v.len(), samples[a].len()),
                    fmt_ms(median(&v)),
                    fmt_ms(percentile(&v, 95.0)),
                    r,
                ]);
            }
        }
        (t, ratios)
    }

    /// Whether leftovers of implementation `k` are errors (ours) or only
    /// reported (the baseline).
    pub fn leftover(&mut self, k: usize, what: &str, left: &[String], sec: &mut Section) {
        if left.is_empty() {
            return;
        }
        let msg = format!("{} left after {what}: {}", self.impls[k].name, left.join(", "));
        if k == self.base {
            sec.text(format!("Note: {msg} (baseline: reported, not failed)"));
        } else {
            sec.text(format!("**{msg}**"));
            self.report.error(msg);
        }
    }
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
