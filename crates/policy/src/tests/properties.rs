//! Property tests: random valid key policies, rewritten in ways that must not count as
//! drift and mutated in ways that must.

use std::collections::BTreeMap;

use proptest::prelude::*;
use proptest::sample::{select, subsequence};
use serde_json::{Map, Value, json};

use super::super::{CanonicalPolicy, Severity, Trust, diff, explain, guardrails};

const ACTIONS: &[&str] = &[
    "kms:Decrypt",
    "kms:Encrypt",
    "kms:GenerateDataKey*",
    "kms:ReEncrypt*",
    "kms:DescribeKey",
    "kms:CreateGrant",
    "kms:PutKeyPolicy",
    "kms:*",
];
const RESOURCES: &[&str] = &[
    "*",
    "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd",
    "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd",
    "arn:aws:kms:*:111122223333:key/${aws:PrincipalTag/team}",
];
const AWS_PRINCIPALS: &[&str] = &[
    "111122223333",
    "arn:aws:iam::444455556666:root",
    "arn:aws-cn:iam::777788889999:root",
    "arn:aws:iam::111122223333:role/Admin",
    "arn:aws:iam::111122223333:role/team/App",
    "arn:aws:iam::111122223333:user/alice",
    "*",
];
const SERVICES: &[&str] = &[
    "logs.amazonaws.com",
    "s3.amazonaws.com",
    "delivery.logs.amazonaws.com",
];
const OPERATORS: &[&str] = &[
    "StringEquals",
    "StringLike",
    "Bool",
    "NumericLessThan",
    "ForAnyValue:StringEquals",
    "StringEqualsIfExists",
    "ArnLike",
    "ForAllValues:StringEquals",
    "StringNotEquals",
];
const CONDITION_KEYS: &[&str] = &[
    "kms:CallerAccount",
    "kms:ViaService",
    "aws:PrincipalTag/team",
    "kms:GrantIsForAWSResource",
    "aws:MultiFactorAuthAge",
    "kms:EncryptionContext:app",
    "aws:PrincipalAccount",
    "aws:SourceAccount",
    "aws:PrincipalOrgID",
    "aws:SourceArn",
];
const PARTITIONS: &[&str] = &["aws", "aws-cn", "aws-us-gov"];
/// Condition values that pin a caller (or fail to) when under a pinning key.
const PIN_VALUES: &[&str] = &[
    "111122223333",
    "444455556666",
    "o-a1b2c3d4e5",
    "arn:aws:logs:us-east-1:444455556666:log-group:x",
    "arn:aws:iam::111122223333:role/*",
    "arn:aws:s3:::reports",
];

/// The trust sets the severity properties are checked under.
fn trusts() -> [Trust; 4] {
    let own = "111122223333";
    [
        Trust::own(own),
        Trust::new(own, ["444455556666".to_owned()], []),
        Trust::new(
            "arn:aws:iam::111122223333:root",
            [],
            ["o-a1b2c3d4e5".to_owned()],
        ),
        Trust::new(
            own,
            ["444455556666".to_owned(), "777788889999".to_owned()],
            ["o-a1b2c3d4e5".to_owned()],
        ),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum CondValue {
    Str(String),
    Bool(bool),
    Num(i64),
}

impl CondValue {
    fn canonical(&self) -> String {
        match self {
            CondValue::Str(s) => s.clone(),
            CondValue::Bool(b) => b.to_string(),
            CondValue::Num(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone)]
enum Principal {
    Everyone,
    Typed(BTreeMap<String, Vec<String>>),
}

type Conditions = BTreeMap<String, BTreeMap<String, Vec<CondValue>>>;

#[derive(Debug, Clone)]
struct Statement {
    sid: String,
    allow: bool,
    principal: Principal,
    actions: Vec<String>,
    resources: Vec<String>,
    conditions: Conditions,
}

#[derive(Debug, Clone)]
struct Policy {
    version: Option<String>,
    statements: Vec<Statement>,
}

fn strings(pool: &'static [&'static str], max: usize) -> impl Strategy<Value = Vec<String>> {
    subsequence(pool, 1..=max).prop_map(|v| v.into_iter().map(str::to_owned).collect())
}

fn cond_value() -> impl Strategy<Value = CondValue> {
    prop_oneof![
        "[a-z0-9.:/-]{1,10}".prop_map(CondValue::Str),
        Just(CondValue::Str("${aws:PrincipalTag/team}".into())),
        select(PIN_VALUES).prop_map(|v| CondValue::Str(v.to_owned())),
        any::<bool>().prop_map(CondValue::Bool),
        (0i64..100_000).prop_map(CondValue::Num),
    ]
}

fn cond_values() -> impl Strategy<Value = Vec<CondValue>> {
    // Distinct after normalisation, so that a list's entries are really distinct.
    prop::collection::vec(cond_value(), 1..=3).prop_map(|mut v| {
        let mut seen = Vec::new();
        v.retain(|x| {
            let c = x.canonical();
            let fresh = !seen.contains(&c);
            seen.push(c);
            fresh
        });
        v
    })
}

fn conditions() -> impl Strategy<Value = Conditions> {
    let keys = prop::collection::btree_map(
        select(CONDITION_KEYS).prop_map(str::to_owned),
        cond_values(),
        1..=2,
    );
    prop::collection::btree_map(select(OPERATORS).prop_map(str::to_owned), keys, 0..=2)
}

fn principal() -> impl Strategy<Value = Principal> {
    let typed = (
        strings(AWS_PRINCIPALS, 3),
        prop::option::of(strings(SERVICES, 2)),
    )
        .prop_map(|(aws, svc)| {
            let mut m = BTreeMap::from([("AWS".to_owned(), aws)]);
            if let Some(svc) = svc {
                m.insert("Service".to_owned(), svc);
            }
            Principal::Typed(m)
        });
    prop_oneof![1 => Just(Principal::Everyone), 4 => typed]
}

fn statement() -> impl Strategy<Value = Statement> {
    (
        "[A-Za-z]{1,6}",
        any::<bool>(),
        principal(),
        strings(ACTIONS, 4),
        strings(RESOURCES, 2),
        conditions(),
    )
        .prop_map(
            |(sid, allow, principal, actions, resources, conditions)| Statement {
                sid,
                allow,
                principal,
                actions,
                resources,
                conditions,
            },
        )
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        prop::option::of(select(&["2012-10-17", "2008-10-17"][..])),
        prop::collection::vec(statement(), 1..=5),
        prop::collection::btree_set("[a-z]{3,8}", 1..=2),
    )
        .prop_map(|(version, mut statements, teams)| {
            // Sids end in the index, so they are unique and no mutation can collide.
            for (i, s) in statements.iter_mut().enumerate() {
                s.sid = format!("{}{i}", s.sid);
            }
            // Guarantees a case-sensitive StringEquals value to mutate.
            let teams = teams.into_iter().map(CondValue::Str).collect();
            statements[0]
                .conditions
                .entry("StringEquals".to_owned())
                .or_default()
                .insert("aws:ResourceTag/team".to_owned(), teams);
            Policy {
                version: version.map(str::to_owned),
                statements,
            }
        })
}

/// Tiny deterministic generator for the choices a rewrite makes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*; the seed is forced odd so it is never zero.
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }

    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            v.swap(i, self.below(i + 1));
        }
    }

    /// Shuffles, sometimes duplicates an entry, and writes a one-element list as a scalar.
    fn list(&mut self, mut items: Vec<Value>) -> Value {
        self.shuffle(&mut items);
        if self.chance() {
            let dup = items[self.below(items.len())].clone();
            items.insert(self.below(items.len() + 1), dup);
        }
        if items.len() == 1 && self.chance() {
            return items.remove(0);
        }
        Value::Array(items)
    }

    fn recase(&mut self, s: &str) -> String {
        s.chars()
            .map(|c| {
                if self.chance() {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    }
}

/// Renders a policy as JSON. Without an `Rng` the rendering is plain; with one it is
/// rewritten in every way that must not count as drift.
fn render(p: &Policy, mut rng: Option<&mut Rng>) -> Value {
    let mut statements: Vec<Value> = p
        .statements
        .iter()
        .map(|s| render_statement(s, rng.as_deref_mut()))
        .collect();
    let mut doc = Map::new();
    if let Some(v) = &p.version {
        doc.insert("Version".into(), json!(v));
    }
    let statement = match rng {
        None => Value::Array(statements),
        Some(rng) => {
            if rng.chance() {
                let dup = statements[rng.below(statements.len())].clone();
                statements.push(dup);
            }
            rng.shuffle(&mut statements);
            if statements.len() == 1 && rng.chance() {
                statements.remove(0)
            } else {
                Value::Array(statements)
            }
        }
    };
    doc.insert("Statement".into(), statement);
    Value::Object(doc)
}

/// A list, rewritten when there is an `Rng`.
fn list(items: Vec<Value>, rng: &mut Option<&mut Rng>) -> Value {
    match rng {
        Some(r) => r.list(items),
        None => Value::Array(items),
    }
}

/// A case-insensitive name, randomly re-cased when there is an `Rng`.
fn text(s: &str, rng: &mut Option<&mut Rng>) -> Value {
    match rng {
        Some(r) => json!(r.recase(s)),
        None => json!(s),
    }
}

fn render_statement(s: &Statement, mut rng: Option<&mut Rng>) -> Value {
    let mut out = Map::new();
    out.insert("Sid".into(), json!(s.sid));
    let effect = if s.allow { "Allow" } else { "Deny" };
    out.insert("Effect".into(), text(effect, &mut rng));
    let principal = match &s.principal {
        Principal::Everyone => json!("*"),
        Principal::Typed(m) => {
            let mut obj = Map::new();
            for (kind, values) in m {
                let values = values
                    .iter()
                    .map(|v| match rng.as_deref_mut() {
                        Some(r) if kind == "AWS" => json!(swap_account_form(v, r)),
                        _ => json!(v),
                    })
                    .collect();
                obj.insert(kind.clone(), list(values, &mut rng));
            }
            let add_empty = rng.as_deref_mut().is_some_and(Rng::chance);
            if add_empty && !obj.contains_key("Federated") {
                obj.insert("Federated".into(), json!([]));
            }
            Value::Object(obj)
        }
    };
    out.insert("Principal".into(), principal);
    let actions = s.actions.iter().map(|a| text(a, &mut rng)).collect();
    out.insert("Action".into(), list(actions, &mut rng));
    let resources = s.resources.iter().map(|r| json!(r)).collect();
    out.insert("Resource".into(), list(resources, &mut rng));
    if !s.conditions.is_empty() {
        let mut ops = Map::new();
        for (op, keys) in &s.conditions {
            let mut obj = Map::new();
            for (key, values) in keys {
                let values = values
                    .iter()
                    .map(|v| {
                        let as_string = rng.as_deref_mut().is_some_and(Rng::chance);
                        match v {
                            CondValue::Str(x) => json!(x),
                            v if as_string => json!(v.canonical()),
                            CondValue::Bool(b) => json!(b),
                            CondValue::Num(n) => json!(n),
                        }
                    })
                    .collect();
                let key = text(key, &mut rng).as_str().unwrap_or_default().to_owned();
                obj.insert(key, list(values, &mut rng));
            }
            ops.insert(op.clone(), Value::Object(obj));
        }
        out.insert("Condition".into(), Value::Object(ops));
    }
    Value::Object(out)
}

/// `ID` <-> `arn:PARTITION:iam::ID:root`, the partition picked at random.
fn swap_account_form(v: &str, r: &mut Rng) -> String {
    if !r.chance() {
        return v.to_owned();
    }
    if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
        let partition = PARTITIONS[r.below(PARTITIONS.len())];
        return format!("arn:{partition}:iam::{v}:root");
    }
    match v.strip_suffix(":root").and_then(|x| x.rsplit_once("::")) {
        Some((_, id)) => id.to_owned(),
        None => v.to_owned(),
    }
}

#[derive(Debug, Clone, Copy)]
enum Mutation {
    Action,
    Resource,
    Principal,
    Sid,
    Effect,
    ConditionOperator,
    ConditionValue,
    ConditionValueCase,
    Version,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    select(
        &[
            Mutation::Action,
            Mutation::Resource,
            Mutation::Principal,
            Mutation::Sid,
            Mutation::Effect,
            Mutation::ConditionOperator,
            Mutation::ConditionValue,
            Mutation::ConditionValueCase,
            Mutation::Version,
        ][..],
    )
}

/// Applies one semantic change to one statement (the one `pick` selects).
fn mutate(p: &mut Policy, m: Mutation, pick: usize) {
    let n = p.statements.len();
    let s = &mut p.statements[pick % n];
    match m {
        Mutation::Action => {
            let i = pick % s.actions.len();
            s.actions[i] = "kms:MutatedAction".into();
        }
        Mutation::Resource => {
            let i = pick % s.resources.len();
            s.resources[i].push_str("-mutated");
        }
        Mutation::Principal => match &mut s.principal {
            Principal::Everyone => {
                s.principal = Principal::Typed(BTreeMap::from([("AWS".into(), vec!["*".into()])]));
            }
            Principal::Typed(m) => {
                let aws = m.get_mut("AWS").expect("generated with AWS");
                let i = pick % aws.len();
                aws[i] = "arn:aws:iam::999999999999:role/Mutated".into();
            }
        },
        Mutation::Sid => s.sid.push('X'),
        Mutation::Effect => s.allow = !s.allow,
        Mutation::ConditionOperator => {
            let s = &mut p.statements[0];
            let fresh = [
                "stringequals",
                "StringNotEquals",
                "StringEqualsIgnoreCase",
                "ArnLike",
            ]
            .into_iter()
            .find(|op| !s.conditions.contains_key(*op))
            .expect("at most three operators");
            let old = s
                .conditions
                .keys()
                .nth(pick % s.conditions.len())
                .cloned()
                .expect("non-empty");
            let keys = s.conditions.remove(&old).expect("present");
            s.conditions.insert(fresh.into(), keys);
        }
        Mutation::ConditionValue => {
            let s = &mut p.statements[0];
            let nth = pick % s.conditions.len();
            let keys = s.conditions.values_mut().nth(nth).expect("non-empty");
            let len = keys.len();
            let values = keys.values_mut().nth(pick % len).expect("non-empty");
            let i = pick % values.len();
            values[i] = CondValue::Str("mutated-value".into());
        }
        Mutation::ConditionValueCase => {
            let values = p.statements[0]
                .conditions
                .get_mut("StringEquals")
                .and_then(|k| k.get_mut("aws:ResourceTag/team"))
                .expect("generated");
            if let CondValue::Str(v) = &mut values[0] {
                *v = v.to_ascii_uppercase();
            }
        }
        Mutation::Version => {
            p.version = match p.version.as_deref() {
                None => Some("2012-10-17".into()),
                Some("2012-10-17") => None,
                Some(_) => Some("2012-10-17".into()),
            };
        }
    }
}

fn canonical(v: &Value) -> CanonicalPolicy {
    CanonicalPolicy::from_value(v)
        .unwrap_or_else(|e| panic!("generated policy does not parse: {e}\n{v:#}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn rewriting_a_policy_without_changing_its_meaning_is_never_drift(p in policy(), seed in any::<u64>()) {
        let plain = render(&p, None);
        let rewritten = render(&p, Some(&mut Rng(seed | 1)));
        let (a, b) = (canonical(&plain), canonical(&rewritten));
        prop_assert_eq!(&a, &b, "{:#}\nvs\n{:#}", plain, rewritten);
        prop_assert!(diff(&a, &b).is_empty());
        // Through text too, as the Lambda sees it.
        prop_assert!(super::same(&plain.to_string(), &serde_json::to_string_pretty(&rewritten).expect("serialisable")));
    }

    #[test]
    fn changing_any_semantic_field_is_always_drift(
        p in policy(),
        m in mutation(),
        pick in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let mut changed = p.clone();
        mutate(&mut changed, m, pick);
        let before = canonical(&render(&p, None));
        let after_value = render(&changed, Some(&mut Rng(seed | 1)));
        let after = canonical(&after_value);
        prop_assert_ne!(&before, &after, "{:?} made no difference:\n{:#}", m, after_value);
        let d = diff(&before, &after);
        prop_assert!(!d.is_empty());
        prop_assert!(!d.to_string().is_empty());
    }

    #[test]
    fn canonical_json_parses_back_to_an_equal_policy(p in policy(), seed in any::<u64>()) {
        let original = canonical(&render(&p, Some(&mut Rng(seed | 1))));
        let text = original.to_value().to_string();
        let again = CanonicalPolicy::parse(&text).expect("canonical JSON parses");
        prop_assert_eq!(&again, &original);
        prop_assert_eq!(again.to_value(), original.to_value());
    }

    #[test]
    fn a_rewrite_that_keeps_the_meaning_explains_as_no_access_change(p in policy(), seed in any::<u64>()) {
        let plain = canonical(&render(&p, None));
        let rewritten = canonical(&render(&p, Some(&mut Rng(seed | 1))));
        for trust in &trusts() {
            for (from, to) in [(&plain, &rewritten), (&rewritten, &plain), (&plain, &plain)] {
                let e = explain(from, to, trust);
                prop_assert!(e.is_empty(), "{:?}", e);
                prop_assert_eq!(e.severity, Severity::Cosmetic);
            }
        }
    }

    #[test]
    fn swapping_the_policies_swaps_gains_and_losses(a in policy(), b in policy(), seed in any::<u64>()) {
        let allow_only = |mut p: Policy| {
            p.statements.iter_mut().for_each(|s| s.allow = true);
            p
        };
        let a = canonical(&render(&allow_only(a), None));
        let b = canonical(&render(&allow_only(b), Some(&mut Rng(seed | 1))));
        let trust = Trust::own("111122223333");
        let (ab, ba) = (explain(&a, &b, &trust), explain(&b, &a, &trust));
        prop_assert_eq!(&ab.gains, &ba.losses);
        prop_assert_eq!(&ab.losses, &ba.gains);
    }

    #[test]
    fn the_guardrail_breaches_exactly_when_the_severity_is_public_or_cross_account(
        p in policy(),
        pick in any::<usize>(),
        seed in any::<u64>(),
    ) {
        let empty = canonical(&json!({"Version": "2012-10-17", "Statement": []}));
        let single = Policy {
            version: p.version.clone(),
            statements: vec![p.statements[pick % p.statements.len()].clone()],
        };
        let policies = [
            canonical(&render(&single, None)),
            canonical(&render(&p, Some(&mut Rng(seed | 1)))),
        ];
        for written in &policies {
            for trust in &trusts() {
                let breaches = guardrails(written, trust);
                let severity = explain(&empty, written, trust).severity;
                prop_assert_eq!(
                    !breaches.is_empty(),
                    matches!(severity, Severity::Public | Severity::CrossAccount),
                    "{:?} under {:?}: {:?}", severity, trust, breaches
                );
                if let Some(worst) = breaches.iter().map(|b| b.severity).max() {
                    prop_assert_eq!(worst, severity);
                }
            }
        }
    }
}
