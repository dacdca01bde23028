//! A short, stable, statement-level description of how two policies differ.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;
use similar::TextDiff;

use super::canonical::{CanonicalPolicy, Statement};

/// How a live policy differs from the desired one; empty when they are equivalent.
///
/// `+` is what a write of `desired` would add, `-` what it would remove, `~` a change.
/// Statements without a Sid are labelled `#N`, their 1-based position in canonical
/// order (sorted), since the original document order is not part of the meaning.
/// Action names are shown as written (a name only re-cased between a paired statement's
/// two sides is shown in the desired spelling on both, so it is no line of the diff).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyDiff {
    entries: Vec<Entry>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// `Version` or an unknown top-level element, as compact JSON.
    Element {
        name: String,
        live: Option<String>,
        desired: Option<String>,
    },
    Changed {
        sid: String,
        unified: String,
    },
    Removed {
        label: String,
        json: String,
    },
    Added {
        label: String,
        json: String,
    },
}

impl PolicyDiff {
    /// True when the two policies are equivalent.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Statement-level diff of `live` against `desired`.
pub fn diff(live: &CanonicalPolicy, desired: &CanonicalPolicy) -> PolicyDiff {
    let mut entries = Vec::new();

    let version = |p: &CanonicalPolicy| p.version.as_ref().map(|v| Value::String(v.clone()));
    push_element(&mut entries, "Version", version(live), version(desired));
    let names: std::collections::BTreeSet<&String> =
        live.other.keys().chain(desired.other.keys()).collect();
    for name in names {
        let get = |p: &CanonicalPolicy| p.other.get(name).map(|v| v.to_value());
        push_element(&mut entries, name, get(live), get(desired));
    }

    let only = |a: &CanonicalPolicy, b: &CanonicalPolicy| -> Vec<(usize, Statement)> {
        a.statements
            .iter()
            .enumerate()
            .filter(|(_, s)| !b.statements.contains(s))
            .map(|(i, s)| (i, s.clone()))
            .collect()
    };
    let mut removed = only(live, desired);
    let mut added = only(desired, live);

    // Pairing is only unambiguous for a Sid that occurs once on each side.
    let sid_counts = |list: &[(usize, Statement)]| {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for sid in list.iter().filter_map(|(_, s)| s.sid.clone()) {
            *counts.entry(sid).or_default() += 1;
        }
        counts
    };
    let (live_sids, desired_sids) = (sid_counts(&removed), sid_counts(&added));
    let paired: Vec<String> = live_sids
        .iter()
        .filter(|(sid, n)| **n == 1 && desired_sids.get(*sid) == Some(&1))
        .map(|(sid, _)| sid.clone())
        .collect();
    for sid in paired {
        let take = |list: &mut Vec<(usize, Statement)>| {
            let at = list
                .iter()
                .position(|(_, s)| s.sid.as_deref() == Some(sid.as_str()));
            at.map(|at| list.remove(at).1)
        };
        if let (Some(old), Some(new)) = (take(&mut removed), take(&mut added)) {
            entries.push(Entry::Changed {
                unified: unified(&old, &new),
                sid,
            });
        }
    }
    for (i, s) in removed {
        entries.push(Entry::Removed {
            label: label(i, &s),
            json: pretty(&s),
        });
    }
    for (i, s) in added {
        entries.push(Entry::Added {
            label: label(i, &s),
            json: pretty(&s),
        });
    }
    PolicyDiff { entries }
}

fn push_element(entries: &mut Vec<Entry>, name: &str, live: Option<Value>, desired: Option<Value>) {
    if live != desired {
        entries.push(Entry::Element {
            name: name.to_owned(),
            live: live.map(|v| v.to_string()),
            desired: desired.map(|v| v.to_string()),
        });
    }
}

fn label(index: usize, s: &Statement) -> String {
    match &s.sid {
        Some(sid) => quoted(sid),
        None => format!("#{}", index + 1),
    }
}

fn quoted(s: &str) -> String {
    Value::String(s.to_owned()).to_string()
}

/// A statement as pretty JSON with its action names as written; where `prefer` (the other
/// side of a pair) spells an action too, its spelling, so that case is never a difference.
fn pretty_as(s: &Statement, prefer: Option<&Statement>) -> String {
    // A trailing newline on both sides keeps "no newline at end" noise out of the diff.
    format!("{:#}\n", s.display_value(prefer))
}

fn pretty(s: &Statement) -> String {
    pretty_as(s, None)
}

fn unified(old: &Statement, new: &Statement) -> String {
    let (old, new) = (pretty_as(old, Some(new)), pretty(new));
    let text = TextDiff::from_lines(&old, &new);
    let mut udiff = text.unified_diff();
    udiff.context_radius(2).missing_newline_hint(false);
    udiff.to_string()
}

impl fmt::Display for PolicyDiff {
    /// One header line per difference, statement bodies indented below it; an empty
    /// diff renders as nothing.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut lines: Vec<String> = Vec::new();
        let body = |lines: &mut Vec<String>, text: &str| {
            lines.extend(text.lines().map(|l| format!("    {l}")));
        };
        for entry in &self.entries {
            match entry {
                Entry::Element {
                    name,
                    live: Some(l),
                    desired: Some(d),
                } => lines.push(format!("~ {name}: {l} -> {d}")),
                Entry::Element {
                    name,
                    live: Some(l),
                    desired: None,
                } => lines.push(format!("- {name}: {l}")),
                Entry::Element {
                    name,
                    live: None,
                    desired: Some(d),
                } => lines.push(format!("+ {name}: {d}")),
                Entry::Element { name, .. } => lines.push(format!("~ {name}")),
                Entry::Changed { sid, unified } => {
                    lines.push(format!("~ statement {}", quoted(sid)));
                    body(&mut lines, unified);
                }
                Entry::Removed { label, json } => {
                    lines.push(format!("- statement {label}"));
                    body(&mut lines, json);
                }
                Entry::Added { label, json } => {
                    lines.push(format!("+ statement {label}"));
                    body(&mut lines, json);
                }
            }
        }
        f.write_str(&lines.join("\n"))
    }
}
