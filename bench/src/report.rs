//! The results table: one row per figure, printed as Markdown so it can go into BENCHMARKS.md
//! as is.

/// Whether a figure met its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Target met.
    Met,
    /// Target missed.
    Missed,
    /// No target for this figure.
    Info,
}

impl Verdict {
    /// `Met` when `ok`, else `Missed`.
    pub fn of(ok: bool) -> Verdict {
        if ok {
            Verdict::Met
        } else {
            Verdict::Missed
        }
    }

    fn label(self) -> &'static str {
        match self {
            Verdict::Met => "met",
            Verdict::Missed => "**missed**",
            Verdict::Info => "",
        }
    }
}

/// One figure: what was measured, for vault-login and for the baseline, against which target.
#[derive(Clone, Debug)]
pub struct Row {
    /// The section (e.g. "1 cold start").
    pub section: String,
    /// What the figure is.
    pub metric: String,
    /// vault-login's value.
    pub ours: String,
    /// The baseline's value, or empty.
    pub baseline: String,
    /// The target, or empty.
    pub target: String,
    /// Met, missed, or no target.
    pub verdict: Verdict,
}

/// Every row so far.
#[derive(Default)]
pub struct Report {
    rows: Vec<Row>,
}

impl Report {
    /// Adds a row.
    pub fn add(
        &mut self,
        section: &str,
        metric: &str,
        ours: impl Into<String>,
        baseline: impl Into<String>,
        target: &str,
        verdict: Verdict,
    ) {
        self.rows.push(Row {
            section: section.into(),
            metric: metric.into(),
            ours: ours.into(),
            baseline: baseline.into(),
            target: target.into(),
            verdict,
        });
    }

    /// Adds a row that records a failure to measure.
    pub fn failed(&mut self, section: &str, why: &str) {
        self.add(section, "could not measure", why, "", "", Verdict::Missed);
    }

    /// The Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| section | figure | vault-login | baseline | target | |\n|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.section,
                r.metric,
                r.ours,
                r.baseline,
                r.target,
                r.verdict.label()
            ));
        }
        out
    }

    /// How many targets were missed.
    pub fn missed(&self) -> usize {
        self.rows
            .iter()
            .filter(|r| r.verdict == Verdict::Missed)
            .count()
    }
}
