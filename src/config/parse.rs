//! The parsers of the settings' values: each turns the text of a variable (or a flag) into its
//! type, or says what was wrong and what to write instead. Ranges are refused, never clamped.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;
use std::time::Duration;

use krg_engine::key::{AccountId, Region, RoleArn};

/// `BASELINE_SHA256` as given: one digest (a single baseline), or one per catalogue name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Digests {
    /// 64 hex digits, lower case.
    One(String),
    /// `NAME=HEX` pairs.
    Named(BTreeMap<String, String>),
}

/// A value of a type that parses itself with a readable error (`Mode`, `BaselineMatch`,
/// `Members`, `BaselineSource`).
pub fn parse_from_str<T: FromStr<Err = String>>(v: &str) -> Result<T, String> {
    v.parse()
}

/// A Region name (`AWS_REGION`, `--region`).
pub fn parse_region(v: &str) -> Result<Region, String> {
    v.parse::<Region>().map_err(|e| e.to_string())
}

/// An IAM role ARN (`REMEDIATOR_ROLE_ARN`).
pub fn parse_role(v: &str) -> Result<RoleArn, String> {
    v.parse::<RoleArn>()
        .map_err(|e| format!("{e}; set it to the function's execution role ARN"))
}

/// Any text (names, URLs, tags: their own checks happen where they are used).
pub fn parse_text(v: &str) -> Result<String, String> {
    Ok(v.to_owned())
}

/// A whole number from `MIN` to `MAX`; anything else is refused with the range.
pub fn parse_number<const MIN: u64, const MAX: u64>(v: &str) -> Result<u64, String> {
    match v.trim().parse::<u64>() {
        Ok(n) if (MIN..=MAX).contains(&n) => Ok(n),
        Ok(n) => Err(format!(
            "{n} is out of range; use a whole number from {MIN} to {MAX}"
        )),
        Err(_) => Err(format!(
            "{v:?} is not a whole number; use one from {MIN} to {MAX}"
        )),
    }
}

/// A CloudWatch namespace (`METRICS_NAMESPACE`): not `AWS/...`, at most 255 characters.
pub fn parse_namespace(v: &str) -> Result<String, String> {
    if v.starts_with("AWS/") || v.is_empty() || v.len() > 255 {
        return Err("must not start with AWS/ and must be 1 to 255 characters".to_owned());
    }
    Ok(v.to_owned())
}

/// `EVENT_BUS`: an event bus name as EventBridge allows it, an event bus ARN, or `off`.
pub fn parse_event_bus(v: &str) -> Result<String, String> {
    let bus = v.trim();
    let valid = if bus.eq_ignore_ascii_case(EVENT_BUS_OFF) {
        true
    } else if bus.starts_with("arn:") {
        bus.contains(":event-bus/") && bus.len() <= 1600
    } else {
        (1..=256).contains(&bus.len())
            && bus
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'/'))
    };
    if valid {
        Ok(bus.to_owned())
    } else {
        Err("must be an event bus name (letters, digits, . - _ /, at most 256 characters), an event bus ARN, or off".to_owned())
    }
}

/// `EVENT_BUS=off`: no notifications.
pub const EVENT_BUS_OFF: &str = "off";

/// A comma-separated list of 12-digit account ids (`TRUSTED_ACCOUNTS`).
pub fn parse_accounts(list: &str) -> Result<BTreeSet<AccountId>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(|a| {
            a.parse::<AccountId>()
                .map_err(|e| format!("{e}; use a comma-separated list of 12-digit account ids"))
        })
        .collect()
}

/// A comma-separated list of organisation ids, `o-` and 10 to 32 lower-case letters or
/// digits (`TRUSTED_ORGS`).
pub fn parse_orgs(list: &str) -> Result<BTreeSet<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(|o| {
            let id = o.strip_prefix("o-").unwrap_or_default();
            let ok = (10..=32).contains(&id.len())
                && id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
            if ok {
                Ok(o.to_owned())
            } else {
                Err(format!(
                    "{o:?} is not an organisation id; use o- and 10 to 32 lower-case letters or digits, as Organizations shows it (o-a1b2c3d4e5)"
                ))
            }
        })
        .collect()
}

/// A whole number of days from 1 to 3,650 (`EXEMPTION_MAX_DAYS`).
pub fn parse_days(days: &str) -> Result<u64, String> {
    match days.trim().parse::<u64>() {
        Ok(n @ 1..=3650) => Ok(n),
        _ => Err(format!(
            "{days:?} is not a number of days from 1 to 3650; unset it to honour exemptions of any length"
        )),
    }
}

/// 64 hex digits (a single baseline) or comma-separated `NAME=HEX` pairs (a catalogue)
/// (`BASELINE_SHA256`).
pub fn parse_digests(given: &str) -> Result<Digests, String> {
    fn hex(h: &str) -> Result<String, String> {
        let h = h.trim();
        if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) {
            Ok(h.to_ascii_lowercase())
        } else {
            Err(format!(
                "{h:?} is not a SHA-256 digest (64 hex digits, as `sha256sum FILE` prints it)"
            ))
        }
    }
    if !given.contains('=') {
        return hex(given).map(Digests::One);
    }
    let mut named = BTreeMap::new();
    for pair in given.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, digest) = pair.split_once('=').ok_or_else(|| {
            format!(
                "{pair:?} is not NAME=HEX; a catalogue's digests are comma-separated NAME=HEX pairs"
            )
        })?;
        if named.insert(name.trim().to_owned(), hex(digest)?).is_some() {
            return Err(format!("{name:?} has two digests; keep one"));
        }
    }
    Ok(Digests::Named(named))
}

/// Comma-separated `NAME=ACCOUNT|ACCOUNT...` (`BASELINE_SCOPE`): the accounts whose keys may
/// select the catalogue baseline NAME by tag.
pub fn parse_scope(given: &str) -> Result<BTreeMap<String, BTreeSet<AccountId>>, String> {
    let mut scope = BTreeMap::new();
    for pair in given.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, accounts) = pair.split_once('=').ok_or_else(|| {
            format!(
                "{pair:?} is not NAME=ACCOUNT|ACCOUNT; e.g. partner-share=111122223333|444455556666"
            )
        })?;
        let accounts = accounts
            .split('|')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(|a| a.parse::<AccountId>().map_err(|e| format!("{name}: {e}")))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if scope.insert(name.trim().to_owned(), accounts).is_some() {
            return Err(format!("{name:?} is scoped twice; keep one"));
        }
    }
    Ok(scope)
}

/// `on`/`off` (also `true`/`false`), for switches such as `MIRROR_REWRITE`.
pub fn parse_switch(v: &str) -> Result<bool, String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(format!("{other:?} is not a switch; use on or off")),
    }
}

/// A comma-separated list of Regions (`SWEEP_REGIONS`, `--regions`).
pub fn parse_regions(list: &str) -> Result<Vec<Region>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::parse::<Region>)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{e}; use a comma-separated list such as us-east-1,eu-west-1"))
}

/// `3600`, `3600s`, `90m`, `1h`, `2d` (`FLAP_WINDOW`, `--flap-window`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; use e.g. 3600, 90m or 1h");
    let t = s.trim();
    let (number, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
}
