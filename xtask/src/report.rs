//! Figures in one place: each benchmark task owns one section of `BENCHMARKS.md`, between
//! `<!-- xtask:NAME:begin -->` and `<!-- xtask:NAME:end -->`, generated from the results it
//! writes under `target/bench/NAME/`. The prose around the sections (what was decided and
//! why) is written by hand and never touched.
//!
//! A task writes its section after a run; with `--check` it re-renders the section from the
//! last recorded results and fails if the document says something else (a hand-edited or
//! stale table), like `cargo fmt --check`.
//!
//! The page opens with the table of current figures (section `figures`): one row per budget
//! or headline figure, declared in [`ROWS`]. Each benchmark task rewrites its own rows after a
//! run ([`record`]); `cargo xtask bench-report --check` fails when the table's rows, budgets
//! or commands are not the declared ones, without running any benchmark.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use serde_json::Value;

/// `BENCHMARKS.md` at the repository root.
pub fn benchmarks_md() -> PathBuf {
    crate::env::root().join("BENCHMARKS.md")
}

/// Where a bench task keeps its results and logs: `target/bench/NAME/` in the repository
/// (gitignored; independent of `CARGO_TARGET_DIR`, so `--check` finds the last run).
pub fn out_dir(name: &str) -> PathBuf {
    crate::env::root().join("target").join("bench").join(name)
}

fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- xtask:{name}:begin -->"),
        format!("<!-- xtask:{name}:end -->"),
    )
}

/// Replaces the body of section `name` in `text` with `body`; an error if the markers are
/// missing, repeated or out of order.
pub fn replace_section(text: &str, name: &str, body: &str) -> anyhow::Result<String> {
    let (begin, end) = markers(name);
    let (start, stop) = locate(text, &begin, &end)?;
    let body = body.trim_matches('\n');
    Ok(format!(
        "{}\n{body}\n{}",
        &text[..start + begin.len()],
        &text[stop..]
    ))
}

/// The current body of section `name` in `text`.
pub fn section<'a>(text: &'a str, name: &str) -> anyhow::Result<&'a str> {
    let (begin, end) = markers(name);
    let (start, stop) = locate(text, &begin, &end)?;
    Ok(text[start + begin.len()..stop].trim_matches('\n'))
}

fn locate(text: &str, begin: &str, end: &str) -> anyhow::Result<(usize, usize)> {
    let (Some(start), Some(stop)) = (text.find(begin), text.find(end)) else {
        bail!("no section {begin} ... {end}; add the two markers where the generated figures go");
    };
    if text.matches(begin).count() != 1 || text.matches(end).count() != 1 || stop < start {
        bail!("the markers {begin} / {end} must appear once each, in that order");
    }
    Ok((start, stop))
}

/// Writes (`check == false`) or compares (`check == true`) section `name` of `file`.
/// Comparing prints the lines that differ and fails if any do.
pub fn update(file: &Path, name: &str, body: &str, check: bool) -> anyhow::Result<()> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    if check {
        let current = section(&text, name)?;
        let wanted = body.trim_matches('\n');
        if current == wanted {
            println!("{}: section {name} is up to date", file.display());
            return Ok(());
        }
        let (a, b): (Vec<_>, Vec<_>) = (current.lines().collect(), wanted.lines().collect());
        for i in 0..a.len().max(b.len()) {
            let (x, y) = (a.get(i), b.get(i));
            if x != y {
                if let Some(x) = x {
                    println!("- {x}");
                }
                if let Some(y) = y {
                    println!("+ {y}");
                }
            }
        }
        bail!(
            "{}: section {name} differs from the last recorded run (- document, + results); \
             run the task without --check to regenerate it",
            file.display()
        );
    }
    let new = replace_section(&text, name, body)?;
    if new != text {
        std::fs::write(file, new).with_context(|| format!("writing {}", file.display()))?;
        println!("{}: section {name} written", file.display());
    } else {
        println!("{}: section {name} unchanged", file.display());
    }
    Ok(())
}

/// One row of the table of current figures.
pub struct Row {
    /// How the benchmark tasks name the row.
    pub id: &'static str,
    /// The first cell: what is measured.
    pub what: &'static str,
    pub budget: &'static str,
    /// The command that measures it; the row's command cell holds it, with the arguments of
    /// the run that produced the figure.
    pub command: &'static str,
    /// Who writes the row: a task, or "by hand" from the command's output.
    pub writer: &'static str,
}

/// Every row of the table of current figures, in the order of the page.
pub const ROWS: &[Row] = &[
    Row {
        id: "package",
        what: "arm64 package (`bootstrap.zip`)",
        budget: "≤ 4 MB (4,194,304 B)",
        command: "make build",
        writer: "`make build` (`cargo xtask bench-report --package ZIP`)",
    },
    Row {
        id: "detector-package",
        what: "arm64 package of the detector function (`detector/bootstrap.zip`)",
        budget: "≤ 4 MB (4,194,304 B)",
        command: "make build",
        writer: "`make build` (`cargo xtask bench-report --detector-package ZIP`)",
    },
    Row {
        id: "init",
        what: "init, bootstrap / hello-world `lambda_runtime` (medians)",
        budget: "≤ 1.3×",
        command: "cargo xtask bench-coldstart",
        writer: "`cargo xtask bench-coldstart`",
    },
    Row {
        id: "rss",
        what: "peak RSS after one event (max over the runs)",
        budget: "≤ 25 MiB",
        command: "cargo xtask bench-coldstart",
        writer: "`cargo xtask bench-coldstart` (a run with the scenarios)",
    },
    Row {
        id: "cpu",
        what: "policy CPU of one event, 32 KB policy (slowest case, median)",
        budget: "≤ 1 ms",
        command: "cargo bench -p krg-engine --bench policy",
        writer: "`make bench` (`cargo xtask bench-report --criterion`)",
    },
    Row {
        id: "calls",
        what: "KMS calls per event on one replica",
        budget: "≤ 2 in sync, ≤ 4 with a fix",
        command: "make test",
        writer: "by hand: `tests/integration/calls.rs` asserts the counts",
    },
    Row {
        id: "sweep",
        what: "sweep of 2,000 replicas, release CLI on the emulator",
        budget: "finds exactly the drifted replicas",
        command: "cargo xtask bench-sweep",
        writer: "`cargo xtask bench-sweep`",
    },
    Row {
        id: "org-planner",
        what: "organisation sweep: planning 17,017 work items (1,001 accounts × 17 Regions)",
        budget: "one invocation (300 s)",
        command: "cargo run --example plan_sweep",
        writer: "by hand",
    },
    Row {
        id: "org-worker",
        what: "organisation sweep: one work item, 50 drifted replicas healed",
        budget: "—",
        command: "cargo run --example plan_sweep",
        writer: "by hand",
    },
    Row {
        id: "fuzz",
        what: "fuzzing: event parser, policy canonicaliser",
        budget: "no crash",
        command: "cargo xtask fuzz",
        writer: "by hand",
    },
    Row {
        id: "first-demo",
        what: "first run on a fresh clone: `make demo`",
        budget: "≤ 6 min",
        command: "make demo",
        writer: "by hand",
    },
    Row {
        id: "first-all",
        what: "first run on a fresh clone: `make demo`, `make infra-setup`, `make test`",
        budget: "demo + test ≤ 15 min",
        command: "make demo; make infra-setup; make test",
        writer: "by hand",
    },
];

const FIGURES: &str = "figures";
const HEADER: &str =
    "| Figure | Budget | Current | Commit | Command | Date |\n|---|---|---|---|---|---|";

/// The cells of each row of the figures table in `text` (header and rule left out).
fn table(text: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let body = section(text, FIGURES)?;
    let mut lines = body.lines();
    let head: Vec<&str> = lines.by_ref().take(2).collect();
    ensure!(
        head.join("\n") == HEADER,
        "the figures table must start with\n{HEADER}"
    );
    lines
        .map(|line| {
            let line = line.trim();
            ensure!(
                line.starts_with('|') && line.ends_with('|') && line.len() > 1,
                "not a table row: {line:?}"
            );
            let cells: Vec<String> = line[1..line.len() - 1]
                .split('|')
                .map(|c| c.trim().to_owned())
                .collect();
            ensure!(cells.len() == 6, "a row has 6 cells: {line:?}");
            Ok(cells)
        })
        .collect()
}

/// What is wrong with the figures table of `text`, measured against [`ROWS`].
pub fn problems(text: &str) -> anyhow::Result<Vec<String>> {
    let rows = table(text)?;
    let mut out = Vec::new();
    let have: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    let want: Vec<&str> = ROWS.iter().map(|r| r.what).collect();
    for w in &want {
        if !have.contains(w) {
            out.push(format!("missing row {w:?}"));
        }
    }
    for h in &have {
        if !want.contains(h) {
            out.push(format!(
                "row {h:?} is not declared in xtask/src/report.rs (ROWS)"
            ));
        }
    }
    if out.is_empty() && have != want {
        out.push(format!("rows out of order: expected {want:?}"));
    }
    for cells in &rows {
        let Some(row) = ROWS.iter().find(|r| r.what == cells[0]) else {
            continue;
        };
        if cells[1] != row.budget {
            out.push(format!(
                "{:?}: budget {:?}, declared {:?}",
                row.what, cells[1], row.budget
            ));
        }
        if !cells[4].contains(row.command) {
            out.push(format!(
                "{:?}: command {:?} is not `{}` (written by {})",
                row.what, cells[4], row.command, row.writer
            ));
        }
        for (i, name) in [(2, "figure"), (3, "commit"), (5, "date")] {
            if cells[i].is_empty() {
                out.push(format!("{:?}: no {name}", row.what));
            }
        }
    }
    Ok(out)
}

/// The figures table with row `id` set to (figure, commit, command, date); the other rows
/// keep their cells, and declared rows missing from `text` appear as not yet measured.
pub fn with_row(
    text: &str,
    id: &str,
    figure: &str,
    commit: &str,
    command: &str,
    date: &str,
) -> anyhow::Result<String> {
    let row = ROWS
        .iter()
        .find(|r| r.id == id)
        .with_context(|| format!("no row {id:?} in ROWS"))?;
    ensure!(
        command.contains(row.command),
        "row {id}: {command:?} is not `{}`",
        row.command
    );
    ensure!(
        ![figure, commit, command, date]
            .iter()
            .any(|c| c.contains('|')),
        "a cell cannot hold '|'"
    );
    let old = table(text).unwrap_or_default();
    let mut body = vec![HEADER.to_owned()];
    for r in ROWS {
        let cells = if r.id == id {
            vec![
                figure.to_owned(),
                commit.to_owned(),
                format!("`{command}`"),
                date.to_owned(),
            ]
        } else if let Some(c) = old.iter().find(|c| c[0] == r.what) {
            vec![c[2].clone(), c[3].clone(), c[4].clone(), c[5].clone()]
        } else {
            vec![
                "not measured yet".into(),
                "—".into(),
                format!("`{}`", r.command),
                "—".into(),
            ]
        };
        body.push(format!(
            "| {} | {} | {} | {} | {} | {} |",
            r.what, r.budget, cells[0], cells[1], cells[2], cells[3]
        ));
    }
    replace_section(text, FIGURES, &body.join("\n"))
}

/// Writes row `id` of the figures table of BENCHMARKS.md, measured now at the work tree's commit.
pub fn record(id: &str, figure: &str, command: &str) -> anyhow::Result<()> {
    let file = benchmarks_md();
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let date: String = crate::bench_sweep::utc_now().chars().take(10).collect();
    let commit = crate::bench_sweep::git_commit();
    let new = with_row(&text, id, figure, &commit, command, &date)?;
    std::fs::write(&file, new).with_context(|| format!("writing {}", file.display()))?;
    println!("{}: row {id} written: {figure}", file.display());
    Ok(())
}

/// `cargo xtask bench-report`: the table of current figures in BENCHMARKS.md.
#[derive(Debug, Parser)]
pub struct Args {
    /// Fail when the table's rows, budgets or commands are not the ones declared in
    /// xtask/src/report.rs (runs no benchmark).
    #[arg(long)]
    check: bool,
    /// Write the per-event CPU row from criterion's results of the last `make bench`.
    #[arg(long)]
    criterion: bool,
    /// Write the package row from this zip (what `make build` just built).
    #[arg(long, value_name = "ZIP")]
    package: Option<PathBuf>,
    /// Write the detector's package row from this zip.
    #[arg(long, value_name = "ZIP")]
    detector_package: Option<PathBuf>,
}

/// The criterion benches of one whole event; the CPU row reports the slowest.
const EVENT_BENCHES: [&str; 5] = [
    "one event, in sync: render + validate + compare",
    "one event, drifted: render + validate + assess (compare + diff + explanation)",
    "one event, drifted, enforce: render + validate + assess + drift name",
    "one event, contains, in sync: render + validate + contain + validate extras + assess (4 extras kept)",
    "one event, contains, drifted: render + validate + contain + validate extras + assess",
];

/// Runs `cargo xtask bench-report`.
pub fn run(args: Args) -> anyhow::Result<()> {
    for (row, zip) in [
        ("package", &args.package),
        ("detector-package", &args.detector_package),
    ] {
        if let Some(zip) = zip {
            let bytes = std::fs::metadata(zip)
                .with_context(|| format!("{} (run `make build`)", zip.display()))?
                .len();
            record(row, &format!("{} B", thousands(bytes)), "make build")?;
        }
    }
    if args.criterion {
        let dir = crate::bench_sweep::target_dir()?.join("criterion");
        let (name, ns) = slowest_event(&dir)?;
        let short = name.split(':').next().unwrap_or(&name);
        record(
            "cpu",
            &format!("{} ({short})", duration(ns)),
            "cargo bench -p krg-engine --bench policy",
        )?;
    }
    let file = benchmarks_md();
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))?;
    let problems = problems(&text)?;
    if problems.is_empty() {
        println!(
            "{}: the figures table has the {} declared rows",
            file.display(),
            ROWS.len()
        );
        return Ok(());
    }
    for p in &problems {
        println!("- {p}");
    }
    ensure!(
        !args.check,
        "{}: the figures table is not the one declared in xtask/src/report.rs (ROWS); \
         fix the table or the declaration",
        file.display()
    );
    Ok(())
}

/// The slowest of [`EVENT_BENCHES`] in criterion's last results: its name and median, ns.
fn slowest_event(dir: &Path) -> anyhow::Result<(String, f64)> {
    let mut found = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{} (run `make bench`)", dir.display()))?
    {
        let new = entry?.path().join("new");
        let Ok(meta) = std::fs::read_to_string(new.join("benchmark.json")) else {
            continue;
        };
        let meta: Value = serde_json::from_str(&meta)?;
        let Some(id) = meta["full_id"].as_str() else {
            continue;
        };
        if EVENT_BENCHES.contains(&id) {
            let est: Value =
                serde_json::from_str(&std::fs::read_to_string(new.join("estimates.json"))?)?;
            let ns = est["median"]["point_estimate"]
                .as_f64()
                .with_context(|| format!("{}: no median", new.display()))?;
            found.push((id.to_owned(), ns));
        }
    }
    ensure!(
        found.len() == EVENT_BENCHES.len(),
        "criterion results for {} of the {} one-event benches in {}: run `make bench`",
        found.len(),
        EVENT_BENCHES.len(),
        dir.display()
    );
    Ok(found
        .into_iter()
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .expect("five results"))
}

/// A time in ns as criterion shows it: µs below a millisecond, else ms.
fn duration(ns: f64) -> String {
    if ns < 1e6 {
        format!("{:.0} µs", ns / 1e3)
    } else {
        format!("{:.3} ms", ns / 1e6)
    }
}

/// A number with thousands separators: 12,345.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str =
        "# T\n\nprose\n<!-- xtask:x:begin -->\nold\n<!-- xtask:x:end -->\nmore prose\n";

    #[test]
    fn a_section_is_replaced_and_the_prose_kept() {
        let new = replace_section(DOC, "x", "new\nlines\n").unwrap();
        assert_eq!(
            new,
            "# T\n\nprose\n<!-- xtask:x:begin -->\nnew\nlines\n<!-- xtask:x:end -->\nmore prose\n"
        );
        assert_eq!(section(&new, "x").unwrap(), "new\nlines");
        assert_eq!(replace_section(&new, "x", "new\nlines").unwrap(), new);
    }

    #[test]
    fn missing_or_repeated_markers_are_refused() {
        assert!(replace_section(DOC, "y", "b").is_err());
        let twice = format!("{DOC}<!-- xtask:x:begin -->\n");
        assert!(replace_section(&twice, "x", "b").is_err());
    }

    fn page() -> String {
        let mut body = vec![HEADER.to_owned()];
        for r in ROWS {
            body.push(format!(
                "| {} | {} | 1 | abc | `{} --x` | 2026-12-07 |",
                r.what, r.budget, r.command
            ));
        }
        format!(
            "# B\n<!-- xtask:figures:begin -->\n{}\n<!-- xtask:figures:end -->\n",
            body.join("\n")
        )
    }

    #[test]
    fn the_declared_table_has_no_problem() {
        assert_eq!(problems(&page()).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn a_missing_undeclared_or_changed_row_is_a_problem() {
        let first = ROWS[0].what;
        let without: String = page()
            .lines()
            .filter(|l| !l.starts_with(&format!("| {first} |")))
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(problems(&without).unwrap()[0].starts_with("missing row"));
        let extra = page().replace(
            "<!-- xtask:figures:end -->",
            "| old | — | 1 | abc | `x` | 2026-01-01 |\n<!-- xtask:figures:end -->",
        );
        assert!(problems(&extra).unwrap()[0].contains("not declared"));
        let other_command = page().replace(&format!("`{} --x`", ROWS[0].command), "`true`");
        assert!(problems(&other_command).unwrap()[0].contains("command"));
        let other_budget = page().replace(ROWS[0].budget, "≤ 9 MB");
        assert!(problems(&other_budget).unwrap()[0].contains("budget"));
    }

    #[test]
    fn a_task_rewrites_its_row_only() {
        let new = with_row(
            &page(),
            "sweep",
            "2 s",
            "def",
            "cargo xtask bench-sweep --y",
            "2026-12-08",
        )
        .unwrap();
        assert!(new.contains("| finds exactly the drifted replicas | 2 s | def | `cargo xtask bench-sweep --y` | 2026-12-08 |"));
        assert_eq!(new.matches("| 1 | abc |").count(), ROWS.len() - 1);
        assert_eq!(problems(&new).unwrap(), Vec::<String>::new());
        assert!(with_row(&page(), "sweep", "2 s", "def", "true", "2026-12-08").is_err());
    }

    #[test]
    fn the_page_in_the_repository_has_the_declared_rows() {
        let text = std::fs::read_to_string(benchmarks_md()).unwrap();
        assert_eq!(problems(&text).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn the_cpu_row_takes_the_slowest_one_event_bench() {
        let dir = std::env::temp_dir().join(format!("xtask-criterion-{}", std::process::id()));
        for (i, name) in EVENT_BENCHES.iter().enumerate() {
            let new = dir.join(format!("b{i}")).join("new");
            std::fs::create_dir_all(&new).unwrap();
            let meta = serde_json::json!({ "full_id": name });
            let est = serde_json::json!({ "median": { "point_estimate": 500_000.0 + 1_000.0 * i as f64 } });
            std::fs::write(new.join("benchmark.json"), meta.to_string()).unwrap();
            std::fs::write(new.join("estimates.json"), est.to_string()).unwrap();
        }
        let (name, ns) = slowest_event(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            (name.as_str(), duration(ns)),
            (EVENT_BENCHES[4], "504 µs".to_owned())
        );
        assert_eq!(duration(1_234_567.0), "1.235 ms");
    }

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(2898211), "2,898,211");
    }
}
