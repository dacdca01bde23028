//! Exemptions that expire: the value of the exclude tag (`kms-replica-guard:exclude` by
//! default) read as an end, if it names one.
//!
//! # Grammar
//!
//! A tag value is free text that may contain `until=END` fields:
//!
//! - `until` is matched ASCII case-insensitively as a whole word: at the start of the value
//!   or after a character that is not a letter, digit, `_` or `-` (`ticket=OPS-12;until=...`,
//!   `DR test until=...`, `(until=...)`; but `valid-until=...` and `notuntil=...` are other
//!   words). Spaces may surround the `=`.
//! - `END` runs from the first non-space after `=` to the next space, `;`, `,`, `&`, `|`,
//!   `)`, `]`, `}`, `"`, `'` or the end of the value, and is either
//!   - a date, `YYYY-MM-DD`: the exemption lasts through that whole day in UTC and ends at
//!     the next midnight UTC (`until=2026-12-31` ends at `2027-01-01T00:00:00Z`); or
//!   - an RFC 3339 time with `Z` or an offset (`until=2026-12-31T18:00:00Z`,
//!     `until=2026-12-31T18:00:00+02:00`), which ends the exemption at that instant.
//! - The exemption holds while now is before the end; at the end it has expired.
//! - A value with no `until=` field (empty, `true`, `DR test`, `excluded until the
//!   migration`) excludes the key for good, as before ends existed.
//! - Several `until=` fields must name the same instant.
//!
//! Anything else that looks like an end is [`Exemption::Unreadable`]: an end that is not one
//! of the two forms, an empty `until=`, two different ends, a date and a time separated by a
//! space instead of `T`, and `until` followed by `:` or by a space and a digit instead of
//! `=`. An unreadable value excludes nothing (fail closed: the reconcile stage manages the
//! key and says why) and says what to write.

use std::fmt;
use std::time::SystemTime;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};

use crate::outcome::rfc3339;

/// What the exclude tag's value says about how long a key is excluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    /// No end: excluded for as long as the tag is there.
    Forever,
    /// Excluded until this instant (exclusive).
    Until(SystemTime),
    /// The exemption ended: the key is managed again although it still carries the tag.
    Expired {
        /// When it ended.
        ended: SystemTime,
    },
    /// The value names an end that cannot be read: not honoured (fail closed).
    Unreadable {
        /// The tag value as found.
        value: String,
        /// What is wrong with it and what to write instead.
        problem: String,
    },
}

/// How to write an end, for the problems of unreadable values.
const FORMS: &str = "write until=YYYY-MM-DD (excluded through that day, UTC) or until=<RFC 3339 time> such as until=2026-12-31T18:00:00Z";

impl Exemption {
    /// Whether the key is left alone: while the exemption holds. An expired one, and one
    /// whose value cannot be read (fail closed), let the key be managed.
    pub fn excludes(&self) -> bool {
        matches!(self, Exemption::Forever | Exemption::Until(_))
    }

    /// When the exemption ends or ended, in RFC 3339 (UTC); `None` without an end.
    pub fn ends(&self) -> Option<String> {
        match self {
            Exemption::Until(end) | Exemption::Expired { ended: end } => Some(rfc3339(*end)),
            Exemption::Forever | Exemption::Unreadable { .. } => None,
        }
    }
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Exemption::Forever => f.write_str("excluded with no end"),
            Exemption::Until(end) => write!(f, "excluded until {}", rfc3339(*end)),
            Exemption::Expired { ended } => write!(
                f,
                "the exemption ended at {}; the key is managed again (remove the tag or set a new until=)",
                rfc3339(*ended)
            ),
            Exemption::Unreadable { value, problem } => write!(
                f,
                "not an exemption: the tag value {value:?} cannot be read: {problem}"
            ),
        }
    }
}

/// Reads an exclude tag's value at `now` (see the module documentation for the grammar).
pub fn exemption(tag_value: &str, now: SystemTime) -> Exemption {
    match end_of(tag_value) {
        Ok(None) => Exemption::Forever,
        Ok(Some(end)) if now < end => Exemption::Until(end),
        Ok(Some(end)) => Exemption::Expired { ended: end },
        Err(problem) => Exemption::Unreadable {
            value: tag_value.to_owned(),
            problem,
        },
    }
}

/// The end the value names, `None` when it names none.
fn end_of(value: &str) -> Result<Option<SystemTime>, String> {
    let mut found: Option<(&str, DateTime<Utc>)> = None;
    for field in until_fields(value) {
        let (token, rest) = field?;
        let end = parse_end(token, rest)?;
        match found {
            Some((first, seen)) if seen != end => {
                return Err(format!(
                    "two different ends, until={first} and until={token}: keep one until= field"
                ));
            }
            Some(_) => {}
            None => found = Some((token, end)),
        }
    }
    Ok(found.map(|(_, end)| SystemTime::from(end)))
}

/// A character that continues a word, so `until` next to it is part of another word.
fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '-'
}

/// A character that ends an `until=` field's value.
fn ends_token(c: char) -> bool {
    c.is_whitespace() || matches!(c, ';' | ',' | '&' | '|' | ')' | ']' | '}' | '"' | '\'')
}

/// Each `until=` field of the value: its end text and the text after it, or the problem of
/// an `until` that looks meant as a field but is not written as one.
fn until_fields(value: &str) -> impl Iterator<Item = Result<(&str, &str), String>> {
    // ASCII lower-casing keeps every byte offset.
    let lower = value.to_ascii_lowercase();
    let starts: Vec<usize> = lower.match_indices("until").map(|(at, _)| at).collect();
    starts.into_iter().filter_map(move |at| {
        if value[..at].chars().next_back().is_some_and(is_word) {
            return None;
        }
        let after = &value[at + "until".len()..];
        if after.chars().next().is_some_and(is_word) {
            return None;
        }
        let spaced = after.trim_start();
        if let Some(end) = spaced.strip_prefix('=') {
            let end = end.trim_start();
            let len = end.find(ends_token).unwrap_or(end.len());
            return Some(Ok((&end[..len], &end[len..])));
        }
        let word = &value[at..at + "until".len()];
        let colon = spaced.strip_prefix(':').map(str::trim_start);
        if colon.is_some_and(|c| c.starts_with(|c: char| c.is_ascii_digit())) {
            return Some(Err(format!(
                "{word}: is not a field; join the end with =: {FORMS}"
            )));
        }
        if spaced.len() < after.len() && spaced.starts_with(|c: char| c.is_ascii_digit()) {
            let shown = &spaced[..spaced.find(ends_token).unwrap_or(spaced.len())];
            return Some(Err(format!(
                "\"{word} {shown}\" is not a field; join the end with = (until={shown}): {FORMS}"
            )));
        }
        None
    })
}

/// The instant an end text names; `rest` is the text after it (to catch a date and a time
/// separated by a space).
fn parse_end(token: &str, rest: &str) -> Result<DateTime<Utc>, String> {
    if token.is_empty() {
        return Err(format!(
            "until= has no end; {FORMS}, or remove until= to exclude the key with no end"
        ));
    }
    if is_date_shaped(token) {
        let Ok(day) = NaiveDate::parse_from_str(token, "%Y-%m-%d") else {
            return Err(format!(
                "until={token} is not a day of the calendar (month 01-12, a day the month has); {FORMS}"
            ));
        };
        let time = rest.trim_start();
        if rest.len() > time.len() && is_time_shaped(time) {
            let time = &time[..time.find(ends_token).unwrap_or(time.len())];
            return Err(format!(
                "until={token} {time} separates the date and the time with a space; join them with T, as in until={token}T{time}"
            ));
        }
        let next = day.succ_opt().ok_or_else(|| {
            format!("until={token} is past the last date that can be read; {FORMS}")
        })?;
        return Ok(next.and_time(chrono::NaiveTime::MIN).and_utc());
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(token) {
        return Ok(t.with_timezone(&Utc));
    }
    let local = ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(&token.to_ascii_uppercase(), f).is_ok());
    if local {
        return Err(format!(
            "until={token} has no time zone; end it with Z for UTC or an offset such as +02:00, with seconds, as in until=2026-12-31T18:00:00Z"
        ));
    }
    Err(format!(
        "until={token} is neither a date nor an RFC 3339 time; {FORMS}"
    ))
}

/// `DDDD-DD-DD`.
fn is_date_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 10
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            _ => c.is_ascii_digit(),
        })
}

/// Starts with `DD:DD`.
fn is_time_shaped(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 5
        && b[0].is_ascii_digit()
        && b[1].is_ascii_digit()
        && b[2] == b':'
        && b[3].is_ascii_digit()
        && b[4].is_ascii_digit()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: &str) -> SystemTime {
        DateTime::parse_from_rfc3339(t).unwrap().into()
    }

    fn now() -> SystemTime {
        at("2026-06-01T12:00:00Z")
    }

    fn problem(value: &str) -> String {
        match exemption(value, now()) {
            e @ Exemption::Unreadable { .. } => {
                assert!(!e.excludes(), "an unreadable value excludes nothing");
                assert_eq!(e.ends(), None);
                let Exemption::Unreadable {
                    value: kept,
                    problem,
                } = e
                else {
                    unreachable!()
                };
                assert_eq!(kept, value);
                problem
            }
            other => panic!("{value:?} read as {other:?}"),
        }
    }

    #[test]
    fn a_value_without_until_excludes_forever() {
        for value in [
            "",
            "true",
            "yes",
            "DR test",
            "ticket=OPS-12",
            "excluded until the migration is done",
            "valid-until=2020-01-01",
            "notuntil=2020-01-01",
            "until_done=2020-01-01",
        ] {
            let e = exemption(value, now());
            assert_eq!(e, Exemption::Forever, "{value:?}");
            assert!(e.excludes());
            assert_eq!(e.ends(), None);
        }
    }

    #[test]
    fn a_date_lasts_through_that_whole_day_utc() {
        let end = at("2027-01-01T00:00:00Z");
        for (now, expected) in [
            ("2026-12-31T00:00:00Z", Exemption::Until(end)),
            ("2026-12-31T23:59:59.999999999Z", Exemption::Until(end)),
            ("2027-01-01T00:00:00Z", Exemption::Expired { ended: end }),
            (
                "2027-01-01T00:00:00.000000001Z",
                Exemption::Expired { ended: end },
            ),
            ("2027-03-01T00:00:00Z", Exemption::Expired { ended: end }),
        ] {
            assert_eq!(exemption("until=2026-12-31", at(now)), expected, "at {now}");
        }
        // Midnight UTC, whatever the zone the operator lives in.
        assert!(!exemption("until=2026-12-31", at("2026-12-31T23:30:00-05:00")).excludes());
        let e = exemption("until=2026-12-31", now());
        assert_eq!(e.ends().as_deref(), Some("2027-01-01T00:00:00+00:00"));
        assert!(e.excludes());
    }

    #[test]
    fn a_time_ends_the_exemption_at_that_instant_in_any_zone() {
        for (value, end) in [
            ("until=2026-12-31T18:00:00Z", "2026-12-31T18:00:00Z"),
            ("until=2026-12-31t18:00:00z", "2026-12-31T18:00:00Z"),
            ("until=2026-12-31T18:00:00+02:00", "2026-12-31T16:00:00Z"),
            ("until=2026-12-31T18:00:00-05:30", "2026-12-31T23:30:00Z"),
            ("until=2026-12-31T18:00:00.250Z", "2026-12-31T18:00:00.250Z"),
            ("until=2026-12-31T23:00:00-02:00", "2027-01-01T01:00:00Z"),
        ] {
            let end = at(end);
            let nanos = std::time::Duration::from_nanos(1);
            assert_eq!(
                exemption(value, end - nanos),
                Exemption::Until(end),
                "{value}"
            );
            assert_eq!(
                exemption(value, end),
                Exemption::Expired { ended: end },
                "{value}"
            );
            assert_eq!(
                exemption(value, end + nanos),
                Exemption::Expired { ended: end },
                "{value}"
            );
        }
        assert_eq!(
            exemption("until=2026-12-31T18:00:00+02:00", now())
                .ends()
                .as_deref(),
            Some("2026-12-31T16:00:00+00:00")
        );
    }

    #[test]
    fn an_end_may_sit_in_other_text() {
        let end = Exemption::Until(at("2027-01-01T00:00:00Z"));
        for value in [
            "DR test until=2026-12-31",
            "ticket=OPS-12;until=2026-12-31",
            "until=2026-12-31, ticket OPS-12",
            "Until = 2026-12-31 by ops",
            "UNTIL=2026-12-31&owner=ops",
            "DR test (until=2026-12-31)",
            "until=2026-12-31 until=2027-01-01T00:00:00Z",
            "until=2026-12-31;until=2026-12-31",
            "note until: the migration; until=2026-12-31",
            "ops/until=2026-12-31",
        ] {
            assert_eq!(exemption(value, now()), end, "{value:?}");
        }
    }

    #[test]
    fn an_expired_exemption_no_longer_excludes() {
        let e = exemption("until=2026-01-31", now());
        assert_eq!(
            e,
            Exemption::Expired {
                ended: at("2026-02-01T00:00:00Z")
            }
        );
        assert!(!e.excludes());
        assert_eq!(e.ends().as_deref(), Some("2026-02-01T00:00:00+00:00"));
        assert!(e.to_string().contains("managed again"), "{e}");
    }

    #[test]
    fn a_day_month_year_date_is_unreadable_and_names_the_forms() {
        let p = problem("until=31/12/2026");
        assert!(
            p.contains("until=31/12/2026") && p.contains("until=YYYY-MM-DD"),
            "{p}"
        );
        assert!(p.contains("RFC 3339"), "{p}");
    }

    #[test]
    fn a_day_the_calendar_lacks_is_unreadable() {
        for value in ["until=2026-13-01", "until=2026-02-29", "until=2026-04-31"] {
            let p = problem(value);
            assert!(
                p.contains("calendar") && p.contains("until=YYYY-MM-DD"),
                "{p}"
            );
        }
        assert_eq!(
            exemption("until=2028-02-29", now()),
            Exemption::Until(at("2028-03-01T00:00:00Z")),
            "a leap day is a day"
        );
    }

    #[test]
    fn an_empty_until_is_unreadable() {
        for value in ["until=", "until= ;ticket=OPS-12", "DR until =  "] {
            let p = problem(value);
            assert!(
                p.contains("no end") && p.contains("until=YYYY-MM-DD"),
                "{p}"
            );
        }
    }

    #[test]
    fn two_different_ends_are_unreadable() {
        let p = problem("until=2026-12-31 until=2027-01-31");
        assert!(
            p.contains("until=2026-12-31")
                && p.contains("until=2027-01-31")
                && p.contains("keep one"),
            "{p}"
        );
        let p = problem("until=2026-12-31 until=2027-99-01");
        assert!(p.contains("calendar"), "the unreadable one is named: {p}");
    }

    #[test]
    fn a_time_without_a_zone_is_unreadable() {
        for value in ["until=2026-12-31T18:00:00", "until=2026-12-31T18:00"] {
            let p = problem(value);
            assert!(p.contains("no time zone") && p.contains("Z"), "{p}");
        }
    }

    #[test]
    fn a_date_and_time_separated_by_a_space_is_unreadable() {
        let p = problem("until=2026-12-31 18:00:00Z");
        assert!(p.contains("until=2026-12-31T18:00:00Z"), "{p}");
    }

    #[test]
    fn an_until_without_equals_before_an_end_is_unreadable() {
        for value in ["DR test until 2026-12-31", "until:2026-12-31"] {
            let p = problem(value);
            assert!(p.contains("join the end with ="), "{p}");
        }
    }

    #[test]
    fn other_malformed_ends_are_unreadable() {
        for value in [
            "until=tomorrow",
            "until=2026-12-31Z",
            "until=2026-12-31+02:00",
            "until=2026-1-5",
            "until=20261231",
        ] {
            let p = problem(value);
            assert!(p.contains("until=YYYY-MM-DD"), "{value}: {p}");
        }
    }

    #[test]
    fn the_display_says_what_the_exemption_is() {
        assert_eq!(exemption("", now()).to_string(), "excluded with no end");
        assert_eq!(
            exemption("until=2026-12-31", now()).to_string(),
            "excluded until 2027-01-01T00:00:00+00:00"
        );
        let unreadable = exemption("until=31/12/2026", now()).to_string();
        assert!(
            unreadable.contains("\"until=31/12/2026\" cannot be read"),
            "{unreadable}"
        );
    }
}
