//! Outcomes for a terminal: coloured actions and diffs, the sweep table, the progress bar.
//! Reasons become text here, at the edge.

use console::style;
use indicatif::{ProgressBar, ProgressStyle};
use krg_engine::Progress;
use krg_engine::outcome::{Action, Outcome, Report};

/// Prints a report as JSON or as one line per key (with its diff when `with_diff`).
pub fn print_report(report: &Report, json: bool, with_diff: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(report).expect("a report serialises")
        );
        return;
    }
    for o in &report.outcomes {
        println!(
            "{:<16} {}  {}",
            paint_action(o),
            o.key_arn,
            o.reason().as_deref().unwrap_or("")
        );
        if let (true, Some(d)) = (with_diff, &o.diff) {
            for line in explanation(o) {
                println!("{line}");
            }
            println!("{}", paint(d));
        }
    }
    for e in &report.errors {
        eprintln!("{} {}", style("error:").red().bold(), e.0);
    }
}

/// One row per key that was not in sync.
pub fn print_table(report: &Report) {
    if report.outcomes.is_empty() {
        return;
    }
    println!("{:<16} {:<16} {:<40} REASON", "ACTION", "REGION", "KEY ID");
    for o in &report.outcomes {
        let mut reason = o.reason().unwrap_or_default().replace('\n', " ");
        if reason.chars().count() > 100 {
            reason = reason.chars().take(99).collect::<String>() + "…";
        }
        println!(
            "{:<16} {:<16} {:<40} {reason}",
            paint_action(o),
            o.region.as_str(),
            o.key_arn.key_id()
        );
    }
}

fn paint_action(o: &Outcome) -> String {
    let text = format!("{:<16}", o.action().as_str());
    match o.action() {
        Action::Remediated | Action::InSync => style(text).green().to_string(),
        Action::DriftDetected => style(text).yellow().to_string(),
        Action::Skipped => style(text).dim().to_string(),
        Action::Failed => style(text).red().bold().to_string(),
    }
}

/// Colours a statement-level diff: `+` baseline only, `-` live only, `~` changed.
pub fn paint(diff: &str) -> String {
    diff.lines()
        .map(|l| {
            let t = l.trim_start();
            if t.starts_with('+') {
                style(l).green().to_string()
            } else if t.starts_with('-') {
                style(l).red().to_string()
            } else if t.starts_with('~') || t.starts_with("@@") {
                style(l).cyan().to_string()
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A progress bar on stderr (hidden when stderr is not a terminal or output is JSON).
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar, hidden for JSON output or when stderr is not a terminal.
    pub fn new(json: bool) -> Self {
        let bar = if json || !console::Term::stderr().is_term() {
            ProgressBar::hidden()
        } else {
            ProgressBar::new(0)
        };
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} key copies  {msg}",
            )
            .expect("a valid template"),
        );
        Self(bar)
    }

    /// Clears the bar.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

impl Progress for Bar {
    fn planned(&self, copies: usize) {
        self.0.set_length(copies as u64);
    }
    fn advanced(&self, outcome: Option<&Outcome>) {
        self.0.inc(1);
        if let Some(o) = outcome.filter(|o| o.action() != Action::InSync) {
            self.0
                .set_message(format!("{} {}", o.action().as_str(), o.key_arn.key_id()));
        }
    }
}

/// The drift in sentences, each prefixed with the key's Region
/// (`eu-west-1: * gains kms:Decrypt (no condition) — public`); with several, the severity
/// line last; `eu-west-1: nobody gains or loses access — cosmetic` when the documents
/// differ without changing access; nothing when the live policy did not parse.
pub fn explanation(o: &Outcome) -> Vec<String> {
    let region = o.region.as_str();
    match &o.exposure {
        None => Vec::new(),
        Some(e) if e.is_empty() => vec![format!(
            "{region}: nobody gains or loses access — {}",
            e.severity
        )],
        Some(e) => e
            .sentences()
            .into_iter()
            .map(|s| format!("{region}: {s}"))
            .collect(),
    }
}
