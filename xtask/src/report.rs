//! Figures in one place: each benchmark task owns one section of `BENCHMARKS.md`, between
//! `<!-- xtask:NAME:begin -->` and `<!-- xtask:NAME:end -->`, generated from the results it
//! writes under `target/bench/NAME/`. The prose around the sections (what was decided and
//! why) is written by hand and never touched.
//!
//! A task writes its section after a run; with `--check` it re-renders the section from the
//! last recorded results and fails if the document says something else (a hand-edited or
//! stale table), like `cargo fmt --check`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

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

    #[test]
    fn thousands_are_separated() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(2898211), "2,898,211");
    }
}
