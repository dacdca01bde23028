//! A message on the sweep queue, read as exactly what the planner sends
//! ([`crate::trigger::work_item`]): `{"sweep": {"account": "…", "regions": ["…"]}}`, one
//! account and one Region, nothing else.
//!
//! The queue is an input like any other: a body the general event parser would take — an
//! empty `{"sweep": {}}` (every account of the organisation, inline), a list of Regions, a
//! CloudTrail event — is not a work item and is refused here, so it ends in the queue's DLQ
//! instead of running.

use serde_json::{Map, Value};

use crate::key::{AccountId, IdError, Place, Region};
use crate::tenancy::Tenancy;

/// What a work item looks like, for error messages.
const SHAPE: &str = r#"{"sweep": {"account": "ACCOUNT_ID", "regions": ["REGION"]}}"#;

/// Why a sweep queue message is not a work item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not a sweep work item: {problem}; the sweep queue takes only the planner's items, exactly {shape}",
    shape = SHAPE
)]
pub struct WorkItemError {
    /// What is wrong with the message.
    pub problem: Problem,
}

/// What is wrong with a sweep queue message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// The body does not parse as JSON.
    #[error("the body is not JSON ({0})")]
    NotJson(String),
    /// The body is JSON but not an object whose only field is `sweep`.
    #[error("the body is {0}, not an object whose only field is `sweep`")]
    NotASweep(String),
    /// `sweep` is not an object.
    #[error("`sweep` is {0}, not an object")]
    SweepNotAnObject(String),
    /// A field the planner never writes.
    #[error("unexpected field `{0}`")]
    UnexpectedField(String),
    /// No account, in a function that works in member accounts: the general parser would
    /// read that as "every account".
    #[error(
        "`sweep.account` is missing: a function that works in member accounts takes items of one named account"
    )]
    MissingAccount,
    /// `sweep.account` is not a string.
    #[error("`sweep.account` is {0}, not a string")]
    AccountNotAString(String),
    /// `sweep.account` is not an account id.
    #[error("`sweep.account`: {0}")]
    BadAccount(IdError),
    /// `sweep.regions` is missing, not a list, or not a list of one.
    #[error("`sweep.regions` is {0}, not a list of exactly one Region")]
    NotOneRegion(String),
    /// The Region is not a Region name.
    #[error("`sweep.regions[0]`: {0}")]
    BadRegion(IdError),
}

impl From<Problem> for WorkItemError {
    fn from(problem: Problem) -> Self {
        Self { problem }
    }
}

/// The place a sweep queue message asks to sweep, when it is exactly a planned work item.
/// The account may be left out only by a function that works in its own account alone
/// (whose planner leaves it out when it does not know its account id); whether the account
/// may be entered is still decided by the engine, as for any sweep.
pub fn parse(body: &str, tenancy: &Tenancy) -> Result<Place, WorkItemError> {
    let value: Value = serde_json::from_str(body).map_err(|e| Problem::NotJson(e.to_string()))?;
    let top = value
        .as_object()
        .filter(|o| o.len() == 1 && o.contains_key("sweep"))
        .ok_or_else(|| Problem::NotASweep(describe(&value)))?;
    let sweep = top["sweep"]
        .as_object()
        .ok_or_else(|| Problem::SweepNotAnObject(describe(&top["sweep"])))?;
    if let Some(extra) = sweep
        .keys()
        .find(|k| !matches!(k.as_str(), "account" | "regions"))
    {
        return Err(Problem::UnexpectedField(format!("sweep.{extra}")).into());
    }
    let account = account(sweep, tenancy)?;
    let region = region(sweep)?;
    Ok(Place::new(account, region))
}

fn account(sweep: &Map<String, Value>, tenancy: &Tenancy) -> Result<Option<AccountId>, Problem> {
    match sweep.get("account") {
        None if tenancy.fleet.is_some() => Err(Problem::MissingAccount),
        None => Ok(None),
        Some(Value::String(id)) => id.parse().map(Some).map_err(Problem::BadAccount),
        Some(other) => Err(Problem::AccountNotAString(describe(other))),
    }
}

fn region(sweep: &Map<String, Value>) -> Result<Region, Problem> {
    let regions = sweep
        .get("regions")
        .ok_or_else(|| Problem::NotOneRegion("missing".into()))?;
    match regions.as_array().map(Vec::as_slice) {
        Some([Value::String(name)]) => name.parse().map_err(Problem::BadRegion),
        _ => Err(Problem::NotOneRegion(describe(regions))),
    }
}

/// A short description of a JSON value for an error (never the whole value: a body may be
/// large, and it is in the DLQ for whoever wants to read it).
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => "a boolean".into(),
        Value::Number(_) => "a number".into(),
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("a list of {}", a.len()),
        Value::Object(o) if o.contains_key("detail-type") => {
            "an EventBridge event (it has `detail-type`)".into()
        }
        Value::Object(o) => {
            let mut fields: Vec<&str> = o.keys().map(String::as_str).take(5).collect();
            if o.len() > fields.len() {
                fields.push("…");
            }
            format!("an object with fields [{}]", fields.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenancy::{Fleet, MemberRole, Members};
    use crate::trigger::work_item;

    fn fleet() -> Tenancy {
        Tenancy {
            home: Some("999988887777".parse().unwrap()),
            fleet: Some(Fleet {
                role: MemberRole::new("kms-replica-guard-member", None).unwrap(),
                members: Members::Organization,
            }),
        }
    }

    fn problem(body: &str, tenancy: &Tenancy) -> Problem {
        parse(body, tenancy).unwrap_err().problem
    }

    #[test]
    fn a_planned_item_reads_back_as_its_place_with_or_without_members() {
        let place = Place::new(
            Some("111122223333".parse().unwrap()),
            "eu-west-1".parse().unwrap(),
        );
        let body = work_item(&place).to_string();
        assert_eq!(parse(&body, &fleet()), Ok(place.clone()));
        assert_eq!(parse(&body, &Tenancy::default()), Ok(place));
        // A single-account function whose account id is unknown plans items without one.
        let own = Place::own("us-west-2".parse().unwrap());
        assert_eq!(
            parse(&work_item(&own).to_string(), &Tenancy::default()),
            Ok(own)
        );
    }

    #[test]
    fn a_forged_empty_sweep_is_not_a_sweep_of_the_organisation() {
        assert_eq!(
            problem(r#"{"sweep": {}}"#, &fleet()),
            Problem::MissingAccount
        );
        // Without members, an empty sweep still names no Region: not a planned item either.
        assert_eq!(
            problem(r#"{"sweep": {}}"#, &Tenancy::default()),
            Problem::NotOneRegion("missing".into())
        );
        let e = parse(r#"{"sweep": {}}"#, &fleet()).unwrap_err().to_string();
        assert!(
            e.contains("`sweep.account` is missing")
                && e.contains(r#"{"sweep": {"account": "ACCOUNT_ID", "regions": ["REGION"]}}"#),
            "says what is wrong and what an item looks like: {e}"
        );
    }

    #[test]
    fn a_forged_item_with_extra_fields_is_refused_by_name() {
        for (body, field) in [
            (
                r#"{"sweep": {"account": "111122223333", "regions": ["us-east-1"], "accounts": ["444455556666"]}}"#,
                "sweep.accounts",
            ),
            (
                r#"{"sweep": {"account": "111122223333", "regions": ["us-east-1"], "apply": true}}"#,
                "sweep.apply",
            ),
        ] {
            assert_eq!(
                problem(body, &fleet()),
                Problem::UnexpectedField(field.into()),
                "{body}"
            );
        }
        let top =
            r#"{"sweep": {"account": "111122223333", "regions": ["us-east-1"]}, "detail": {}}"#;
        assert!(matches!(problem(top, &fleet()), Problem::NotASweep(_)));
    }

    #[test]
    fn a_forged_item_of_several_regions_or_none_is_refused() {
        for regions in [
            r#"["us-east-1", "eu-west-1"]"#,
            "[]",
            r#""us-east-1""#,
            "null",
        ] {
            let body =
                format!(r#"{{"sweep": {{"account": "111122223333", "regions": {regions}}}}}"#);
            assert!(
                matches!(problem(&body, &fleet()), Problem::NotOneRegion(_)),
                "{body}"
            );
        }
        let bad = r#"{"sweep": {"account": "111122223333", "regions": ["us-east-1\n"]}}"#;
        assert!(matches!(problem(bad, &fleet()), Problem::BadRegion(_)));
    }

    #[test]
    fn a_forged_account_that_is_not_an_account_id_is_refused() {
        let body = r#"{"sweep": {"account": "../111122223333", "regions": ["us-east-1"]}}"#;
        assert!(matches!(problem(body, &fleet()), Problem::BadAccount(_)));
        let body = r#"{"sweep": {"account": 111122223333, "regions": ["us-east-1"]}}"#;
        assert_eq!(
            problem(body, &fleet()),
            Problem::AccountNotAString("a number".into())
        );
    }

    #[test]
    fn an_eventbridge_event_on_the_queue_is_not_a_work_item() {
        for name in ["scheduled-sweep.json", "put-key-policy-replica-id.json"] {
            let path = format!("{}/../../events/{name}", env!("CARGO_MANIFEST_DIR"));
            let body = std::fs::read_to_string(&path).unwrap();
            assert_eq!(
                problem(&body, &fleet()),
                Problem::NotASweep("an EventBridge event (it has `detail-type`)".into()),
                "{name}"
            );
        }
    }

    #[test]
    fn garbage_on_the_queue_is_not_a_work_item() {
        assert!(matches!(problem("", &fleet()), Problem::NotJson(_)));
        assert!(matches!(
            problem("{\"sweep\"", &fleet()),
            Problem::NotJson(_)
        ));
        assert_eq!(
            problem("[1, 2]", &fleet()),
            Problem::NotASweep("a list of 2".into())
        );
        assert_eq!(
            problem(r#""sweep""#, &fleet()),
            Problem::NotASweep("a string".into())
        );
        assert_eq!(
            problem(r#"{"sweep": ["us-east-1"]}"#, &fleet()),
            Problem::SweepNotAnObject("a list of 1".into())
        );
    }
}
