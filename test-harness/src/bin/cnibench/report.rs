//! The results page: sections of markdown tables, a targets summary, and the
//! same tables echoed on stdout as each scenario finishes.

use std::fmt::Write;

#[derive(Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table { header: header.iter().map(|s| s.to_string()).collect(), rows: Vec::new() }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        s += &line(&self.header);
        s += &line(&self.header.iter().map(|_| "---".to_string()).collect::<Vec<_>>());
        for r in &self.rows {
            s += &line(r);
        }
        s
    }
}

#[derive(Default)]
pub struct Section {
    pub title: String,
    /// Markdown paragraphs and tables, in order.
    pub body: Vec<String>,
}

impl Section {
    pub fn new(title: impl Into<String>) -> Section {
        Section { title: title.into(), body: Vec::new() }
    }

    pub fn text(&mut self, t: impl Into<String>) {
        self.body.push(t.into());
    }

    pub fn table(&mut self, t: Table) {
        self.body.push(t.markdown());
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("## {}\n\n", self.title);
        for b in &self.body {
            s += b.trim_end();
            s += "\n\n";
        }
        s
    }
}

/// One line of the targets summary: a measured value against a limit.
pub struct Target {
    pub what: String,
    pub value: f64,
    pub limit: f64,
    /// How the value is shown (`ratio`, `ms`, `MiB`).
    pub unit: &'static str,
    pub note: String,
    /// The value must be at least the limit (else at most).
    pub at_least: bool,
}

#[derive(Default)]
pub struct Report {
    pub sections: Vec<Section>,
    pub targets: Vec<Target>,
    /// Errors that make the run fail (wrong results, leftovers of ours).
    pub errors: Vec<String>,
}

impl Report {
    /// Add a finished section and echo it on stdout.
    pub fn push(&mut self, s: Section) {
        println!("\n{}", s.markdown().trim_end());
        self.sections.push(s);
    }

    pub fn target(
        &mut self,
        what: impl Into<String>,
        value: f64,
        limit: f64,
        unit: &'static str,
        note: &str,
    ) {
        self.targets.push(Target {
            what: what.into(),
            value,
            limit,
            unit,
            note: note.into(),
            at_least: false,
        });
    }

    /// A target the value must reach (value ≥ limit).
    pub fn target_min(
        &mut self,
        what: impl Into<String>,
        value: f64,
        limit: f64,
        unit: &'static str,
        note: &str,
    ) {
        self.targets.push(Target {
            what: what.into(),
            value,
            limit,
            unit,
            note: note.into(),
            at_least: true,
        });
    }

    pub fn error(&mut self, e: impl Into<String>) {
        let e = e.into();
        eprintln!("ERROR: {e}");
        self.errors.push(e);
    }

    pub fn targets_table(&self) -> Table {
        let mut t = Table::new(&["target", "measured", "limit", "met"]);
        for x in &self.targets {
            let show = |v: f64| match x.unit {
                "ratio" => crate::stats::fmt_ratio(v),
                "count" => format!("{v:.0}"),
                u => format!("{} {u}", crate::stats::fmt_ms(v)),
            };
            let met = if !x.value.is_finite() {
                "not measured".to_string()
            } else if (x.at_least && x.value >= x.limit) || (!x.at_least && x.value <= x.limit) {
                "yes".to_string()
            } else {
                "**no**".to_string()
            };
            let met = if x.note.is_empty() { met } else { format!("{met} ({})", x.note) };
            let cmp = if x.at_least { "≥" } else { "≤" };
            t.row(vec![x.what.clone(), show(x.value), format!("{cmp} {}", show(x.limit)), met]);
        }
        t
    }

    /// The whole page: header, targets, sections, then the static parts.
    pub fn page(&self, header: &str, trailer: &[&str]) -> String {
        let mut s = String::from(header);
        s += "\n";
        let mut targets = Section::new("Targets (issue 7; DNS: issue 6)");
        targets.table(self.targets_table());
        if !self.errors.is_empty() {
            let mut e = String::from("**Errors in this run:**\n\n");
            for x in &self.errors {
                let _ = writeln!(e, "- {x}");
            }
            targets.text(e);
        }
        s += &targets.markdown();
        for sec in &self.sections {
            s += &sec.markdown();
        }
        for t in trailer {
            s += t.trim_end();
            s += "\n\n";
        }
        s.trim_end().to_string() + "\n"
    }
}
