//! Drift as access: per principal, what one policy grants that another does not, under
//! which conditions, and how serious the difference is (DESIGN.md, "Explaining a drift").
//!
//! A statement is read as units: one principal, one action pattern, one resource pattern,
//! under the statement's conditions. A unit of an Allow in `to` is a gain unless an Allow
//! of `from` covers it (principal, action and resource covered, conditions no stricter) or
//! a Deny of `to` cancels it; the units of `from` that `to` does not cover are losses. A
//! Deny works the other way round: one added in `to` is a loss, one removed a gain.
//! Coverage is checked one covering statement at a time, so the explanation may report
//! access that several statements together already granted, never the reverse: when access
//! changed, the explanation is never empty.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;

use super::arn::Arn;
use super::canonical::{
    CanonicalPolicy, Conditions, Effect, Folded, Operator, Principal, Statement, is_account_id,
};
use super::guardrail::BreachReason;
use super::pattern;
use super::trust::Trust;

/// How serious a drift is, ordered from harmless to worst.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Severity {
    /// The documents differ but nobody gains or loses anything (a Sid, an Id, a statement
    /// split differently).
    Cosmetic,
    /// Access was only taken away.
    Narrowing,
    /// Someone gained access that is neither public, cross-account nor administration.
    Access,
    /// Someone gained key administration (policy, grants, deletion, state, aliases...).
    Admin,
    /// A principal outside the trusted accounts and organisations ([`Trust`]) gained
    /// access: an account or organisation not trusted, or a service principal that no
    /// condition ties to a trusted one.
    CrossAccount,
    /// Everyone gained access, with no condition that limits the caller to an account or
    /// an organisation.
    Public,
}

impl Severity {
    /// Every severity, from the lowest to the highest.
    pub const ALL: [Severity; 6] = [
        Severity::Cosmetic,
        Severity::Narrowing,
        Severity::Access,
        Severity::Admin,
        Severity::CrossAccount,
        Severity::Public,
    ];

    /// The name used in outcomes, logs, metrics and events: `public`, `cross-account`,
    /// `admin`, `access`, `narrowing`, `cosmetic`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Cosmetic => "cosmetic",
            Severity::Narrowing => "narrowing",
            Severity::Access => "access",
            Severity::Admin => "admin",
            Severity::CrossAccount => "cross-account",
            Severity::Public => "public",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A severity name that is not one of [`Severity::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown severity {0:?}; expected one of public, cross-account, admin, access, narrowing, cosmetic"
)]
pub struct UnknownSeverity(pub String);

impl FromStr for Severity {
    type Err = UnknownSeverity;

    /// Reads a name as [`Severity::as_str`] writes it (ignoring ASCII case).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Severity::ALL
            .into_iter()
            .find(|v| v.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownSeverity(s.to_owned()))
    }
}

/// What one principal gains or loses under one set of conditions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    /// `*` for everyone (`"*"` or `{"AWS": "*"}`), an account as its root ARN, an IAM ARN,
    /// a service principal as its service name, or `everyone except ...` for NotPrincipal.
    pub principal: String,
    /// Action names as written, wildcards kept, sorted case-insensitively and
    /// de-duplicated; `every action except ...` for NotAction.
    pub actions: Vec<String>,
    /// The conditions under which it holds, compact (`kms:ViaService = s3.eu-west-1.amazonaws.com`);
    /// `None` when unconditional.
    pub when: Option<String>,
}

impl Access {
    /// One line: `* gains kms:Decrypt (no condition)`, or
    /// `arn:aws:iam::444455556666:root loses kms:Encrypt, kms:Decrypt when kms:ViaService = s3.eu-west-1.amazonaws.com`.
    pub fn sentence(&self, gains: bool) -> String {
        let verb = if gains { "gains" } else { "loses" };
        let when = match &self.when {
            Some(w) => format!("when {w}"),
            None => "(no condition)".to_owned(),
        };
        format!(
            "{} {verb} {} {when}",
            self.principal,
            self.actions.join(", ")
        )
    }
}

/// The access difference between two policies and its severity.
///
/// Equivalent policies have no gains and no losses (and severity `cosmetic`, the lowest);
/// documents that differ without changing access have the same, so the caller, which knows
/// whether the documents differ, tells the two apart.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Exposure {
    /// The highest severity over the gains; `narrowing` with losses only; `cosmetic`
    /// when nothing is gained or lost.
    pub severity: Severity,
    /// Access `to` grants that `from` did not, sorted by principal then condition.
    pub gains: Vec<Access>,
    /// Access `from` granted that `to` does not, sorted the same way.
    pub losses: Vec<Access>,
}

impl Exposure {
    /// True when nobody gains or loses anything.
    pub fn is_empty(&self) -> bool {
        self.gains.is_empty() && self.losses.is_empty()
    }

    /// The explanation as lines: every gain sentence, then every loss sentence
    /// ([`Access::sentence`]). A single line ends in ` — SEVERITY`
    /// (`* gains kms:Decrypt (no condition) — public`); with several, a last line
    /// `severity: SEVERITY` follows them. Nothing gained or lost: no lines.
    pub fn sentences(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .gains
            .iter()
            .map(|a| a.sentence(true))
            .chain(self.losses.iter().map(|a| a.sentence(false)))
            .collect();
        match lines.len() {
            0 => {}
            1 => lines[0].push_str(&format!(" — {}", self.severity)),
            _ => lines.push(format!("severity: {}", self.severity)),
        }
        lines
    }
}

/// What `to` grants that `from` does not (gains) and the reverse (losses), per principal
/// and conditions, with a severity judged against `trust` (the key's own account and the
/// trusted accounts and organisations). In use `from` is the baseline and `to` the live
/// policy, or the live policy and what is about to be written.
pub fn explain(from: &CanonicalPolicy, to: &CanonicalPolicy, trust: &Trust) -> Exposure {
    let partition = trust.partition();
    // Statements both have cancel out (each covers its twin); only the others can gain or
    // lose anything, and only statements naming their principals (or anyone) can cover them.
    let from_only: Vec<&Statement> = from.statements.difference(&to.statements).collect();
    let to_only: Vec<&Statement> = to.statements.difference(&from.statements).collect();
    let wanted: BTreeSet<(&str, &str)> = from_only
        .iter()
        .chain(&to_only)
        .flat_map(|s| principal_pairs(s))
        .collect();
    let (from_allow, from_deny) = rules(from, &from_only, &wanted);
    let (to_allow, to_deny) = rules(to, &to_only, &wanted);

    let mut gains = Grouped::new(partition);
    let mut losses = Grouped::new(partition);
    let mut severity = None::<Severity>;
    // A Deny that `to` no longer has gives its principals its actions back.
    let gained = uncovered(&to_allow, &from_allow, &to_deny)
        .into_iter()
        .chain(uncovered(&from_deny, &to_deny, &[]));
    for hit in gained {
        let pins = pins(hit.rule.conditions, trust);
        for &(p, a) in &hit.units {
            let (s, _) = rate(&hit.rule.who[p], &pins, &hit.rule.action_items[a], trust);
            severity = severity.max(Some(s));
        }
        gains.add(&hit);
    }
    let lost = uncovered(&from_allow, &to_allow, &from_deny)
        .into_iter()
        .chain(uncovered(&to_deny, &from_deny, &[]));
    for hit in lost {
        losses.add(&hit);
    }
    let (gains, losses) = (gains.finish(), losses.finish());
    let severity = match severity {
        Some(s) => s,
        None if !losses.is_empty() => Severity::Narrowing,
        None => Severity::Cosmetic,
    };
    Exposure {
        severity,
        gains,
        losses,
    }
}

// ---------------------------------------------------------------------------------------
// Statements as rules.

/// One principal as the explanation sees it; `*` and `{"AWS": "*"}` are both `Everyone`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Atom {
    Everyone,
    /// A bare account id (an account root, in any form).
    Account(String),
    /// Any other AWS principal value (role, user, assumed role, unique id).
    Arn(String),
    Service(String),
    /// Another principal type (`Federated`, `CanonicalUser`) and its value.
    Other(String, String),
}

/// A statement's principal element.
#[derive(Debug)]
enum Whom {
    /// `Principal`.
    Listed(BTreeSet<Atom>),
    /// `NotPrincipal`: everyone except these.
    AllBut(BTreeSet<Atom>),
}

/// The principal of one unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Who {
    One(Atom),
    AllBut(BTreeSet<Atom>),
}

/// A statement's actions or resources.
#[derive(Debug)]
enum Set<'a> {
    Listed(Vec<&'a str>),
    AllBut(Vec<&'a str>),
}

/// One action or resource of a unit.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Item<'a> {
    One(&'a str),
    AllBut(Vec<&'a str>),
}

static NO_CONDITIONS: Conditions = Conditions::new();

/// An effective Allow or Deny statement, compiled for coverage checks.
pub(super) struct Rule<'a> {
    /// The statement it was compiled from.
    pub(super) statement: &'a Statement,
    /// The other policy has the same statement: none of its units is a gain or a loss
    /// (its twin covers each of them), so it is only checked against, never checked.
    shared: bool,
    whom: Whom,
    actions: Set<'a>,
    resources: Set<'a>,
    pub(super) conditions: &'a Conditions,
    pub(super) who: Vec<Who>,
    pub(super) action_items: Vec<Item<'a>>,
    resource_items: Vec<Item<'a>>,
}

/// The effective Allow and Deny statements of a policy. A statement without an Effect
/// KMS knows, or without a principal, action or resource element, grants and denies
/// nothing, as KMS evaluates it.
fn rules<'a>(
    p: &'a CanonicalPolicy,
    changed: &[&Statement],
    wanted: &BTreeSet<(&str, &str)>,
) -> (Vec<Rule<'a>>, Vec<Rule<'a>>) {
    let (mut allow, mut deny) = (Vec::new(), Vec::new());
    for s in &p.statements {
        let shared = !changed.iter().any(|c| std::ptr::eq(*c, s));
        // A shared statement matters only as a cover, and only for the principals of the
        // changed ones: most of a large policy is never compiled.
        if shared && !may_cover(s, wanted) {
            continue;
        }
        let Some(mut rule) = compile(s) else { continue };
        rule.shared = shared;
        match s.effect {
            Some(Effect::Allow) => allow.push(rule),
            Some(Effect::Deny) => deny.push(rule),
            _ => {}
        }
    }
    (allow, deny)
}

/// The (type, value) pairs a statement's `Principal` lists.
fn principal_pairs(s: &Statement) -> impl Iterator<Item = (&str, &str)> {
    let typed = match &s.principal {
        Some(Principal::Typed(types)) => Some(types),
        _ => None,
    };
    typed
        .into_iter()
        .flatten()
        .flat_map(|(kind, values)| values.iter().map(move |v| (kind.as_str(), v.as_str())))
}

/// Whether a statement's principal element could cover one of `wanted` (or anyone: `*`,
/// `{"AWS": "*"}`, a NotPrincipal).
fn may_cover(s: &Statement, wanted: &BTreeSet<(&str, &str)>) -> bool {
    match &s.principal {
        Some(Principal::Everyone) => true,
        Some(Principal::Typed(_)) => principal_pairs(s)
            .any(|(kind, v)| (kind == "AWS" && v == "*") || wanted.contains(&(kind, v))),
        None => s.not_principal.is_some(),
    }
}

pub(super) fn compile(s: &Statement) -> Option<Rule<'_>> {
    let whom = match (&s.principal, &s.not_principal) {
        (Some(p), _) => Whom::Listed(atoms(p)),
        (None, Some(p)) => Whom::AllBut(atoms(p)),
        (None, None) => return None,
    };
    let actions = set(&s.action, &s.not_action, Folded::as_written)?;
    let resources = set(&s.resource, &s.not_resource, String::as_str)?;
    let who = match &whom {
        Whom::Listed(atoms) => atoms.iter().cloned().map(Who::One).collect(),
        // NotPrincipal "*" exempts everyone: nobody is left.
        Whom::AllBut(atoms) if atoms.contains(&Atom::Everyone) => Vec::new(),
        Whom::AllBut(atoms) => vec![Who::AllBut(atoms.clone())],
    };
    let (action_items, resource_items) = (items(&actions), items(&resources));
    Some(Rule {
        statement: s,
        shared: false,
        whom,
        actions,
        resources,
        conditions: s.condition.as_ref().unwrap_or(&NO_CONDITIONS),
        who,
        action_items,
        resource_items,
    })
}

fn set<'a, T>(
    listed: &'a Option<BTreeSet<T>>,
    not: &'a Option<BTreeSet<T>>,
    name: fn(&T) -> &str,
) -> Option<Set<'a>> {
    match (listed, not) {
        (Some(l), _) => Some(Set::Listed(l.iter().map(name).collect())),
        (None, Some(n)) => Some(Set::AllBut(n.iter().map(name).collect())),
        (None, None) => None,
    }
}

fn items<'a>(set: &Set<'a>) -> Vec<Item<'a>> {
    match set {
        Set::Listed(l) => l.iter().map(|x| Item::One(x)).collect(),
        Set::AllBut(n) => vec![Item::AllBut(n.clone())],
    }
}

fn atoms(p: &Principal) -> BTreeSet<Atom> {
    match p {
        Principal::Everyone => BTreeSet::from([Atom::Everyone]),
        Principal::Typed(types) => types
            .iter()
            .flat_map(|(kind, values)| {
                values.iter().map(move |v| match kind.as_str() {
                    "AWS" if v == "*" => Atom::Everyone,
                    "AWS" if is_account_id(v) => Atom::Account(v.clone()),
                    "AWS" => Atom::Arn(v.clone()),
                    "Service" => Atom::Service(v.clone()),
                    _ => Atom::Other(kind.clone(), v.clone()),
                })
            })
            .collect(),
    }
}

// ---------------------------------------------------------------------------------------
// Coverage.

/// The units of one rule that no rule of `covering` covers and no rule of `cancelling`
/// cancels, as (principal, action) indexes into the rule's `who` and `action_items`.
pub(super) struct Hit<'a> {
    pub(super) rule: &'a Rule<'a>,
    pub(super) units: Vec<(usize, usize)>,
}

/// The units of `subject` (principal × action, over every resource) that are not covered.
/// A unit is covered when one rule of `covering` covers its principal, action and
/// resource under conditions no stricter than its own; cancelled likewise by a rule of
/// `cancelling` (a Deny that applies whenever the unit's Allow does).
pub(super) fn uncovered<'a>(
    subject: &'a [Rule<'a>],
    covering: &[Rule<'_>],
    cancelling: &[Rule<'_>],
) -> Vec<Hit<'a>> {
    let mut out = Vec::new();
    for r in subject.iter().filter(|r| !r.shared) {
        let (np, na, nr) = (r.who.len(), r.action_items.len(), r.resource_items.len());
        if np == 0 || na == 0 || nr == 0 {
            continue;
        }
        // open[(p * na + a) * nr + res]: the unit is not yet covered.
        let mut open = vec![true; np * na * nr];
        let mut left = open.len();
        for t in covering.iter().chain(cancelling) {
            if left == 0 {
                break;
            }
            if !implies(r.conditions, t.conditions) {
                continue;
            }
            let cp: Vec<bool> = r.who.iter().map(|w| whom_covers(&t.whom, w)).collect();
            if !cp.contains(&true) {
                continue;
            }
            let ca: Vec<bool> = r
                .action_items
                .iter()
                .map(|a| set_covers(&t.actions, a, true))
                .collect();
            if !ca.contains(&true) {
                continue;
            }
            let cr: Vec<bool> = r
                .resource_items
                .iter()
                .map(|x| set_covers(&t.resources, x, false))
                .collect();
            for (p, _) in cp.iter().enumerate().filter(|(_, c)| **c) {
                for (a, _) in ca.iter().enumerate().filter(|(_, c)| **c) {
                    for (x, _) in cr.iter().enumerate().filter(|(_, c)| **c) {
                        let at = (p * na + a) * nr + x;
                        if open[at] {
                            open[at] = false;
                            left -= 1;
                        }
                    }
                }
            }
        }
        if left == 0 {
            continue;
        }
        let mut units = Vec::new();
        for p in 0..np {
            for a in 0..na {
                let base = (p * na + a) * nr;
                if open[base..base + nr].contains(&true) {
                    units.push((p, a));
                }
            }
        }
        out.push(Hit { rule: r, units });
    }
    out
}

fn whom_covers(whom: &Whom, who: &Who) -> bool {
    match (whom, who) {
        (Whom::Listed(s), Who::One(a)) => s.contains(&Atom::Everyone) || s.contains(a),
        (Whom::Listed(s), Who::AllBut(_)) => s.contains(&Atom::Everyone),
        (Whom::AllBut(x), Who::One(a)) => {
            *a != Atom::Everyone && !x.contains(a) && !x.contains(&Atom::Everyone)
        }
        (Whom::AllBut(x), Who::AllBut(y)) => x.is_subset(y),
    }
}

/// Whether a statement's actions (or resources) cover one item; `fold`: case-insensitive.
fn set_covers(set: &Set<'_>, item: &Item<'_>, fold: bool) -> bool {
    match (set, item) {
        (Set::Listed(p), Item::One(a)) => p.iter().any(|p| pattern::covers(p, a, fold)),
        (Set::AllBut(n), Item::One(a)) => !n.iter().any(|n| pattern::intersects(n, a, fold)),
        (Set::Listed(p), Item::AllBut(_)) => p.iter().any(|p| pattern::is_universal(p)),
        (Set::AllBut(n), Item::AllBut(m)) => n
            .iter()
            .all(|n| m.iter().any(|m| pattern::covers(m, n, fold))),
    }
}

/// Whether `covered`'s conditions imply `covering`'s: every block of `covering` is implied
/// by a block of `covered` on the same key. No conditions are implied by anything.
fn implies(covered: &Conditions, covering: &Conditions) -> bool {
    covering.iter().all(|(op2, keys2)| {
        keys2.iter().all(|(key, v2)| {
            covered.iter().any(|(op1, keys1)| {
                keys1
                    .get(key)
                    .is_some_and(|v1| block_implies(op1, v1, op2, v2))
            })
        })
    })
}

fn block_implies(op1: &str, v1: &BTreeSet<String>, op2: &str, v2: &BTreeSet<String>) -> bool {
    let (o1, o2) = (Operator::read(op1), Operator::read(op2));
    if o1.if_exists && !o2.if_exists {
        // The covered one also holds when the key is absent; the covering one does not.
        return false;
    }
    let negated = o1.is_negated();
    let like_covers = || {
        v1.iter()
            .all(|x| v2.iter().any(|y| pattern::covers(y, x, false)))
    };
    if !o1.same_qualifier(&o2) {
        return false;
    }
    if o1.base == o2.base {
        if negated {
            v1.is_superset(v2)
        } else if is_like(&o1) {
            like_covers()
        } else {
            v1.is_subset(v2)
        }
    } else {
        // An exact match implies the pattern match of a pattern that covers the value.
        !negated
            && matches!(
                (o1.base, o2.base),
                ("StringEquals", "StringLike")
                    | ("ArnEquals", "ArnLike")
                    | ("ArnLike", "ArnEquals")
            )
            && like_covers()
    }
}

fn is_like(op: &Operator<'_>) -> bool {
    matches!(op.base, "StringLike" | "ArnLike" | "ArnEquals")
}

// ---------------------------------------------------------------------------------------
// Severity.

/// The actions that administer a key rather than use it.
const ADMIN_ACTIONS: &[&str] = &[
    "kms:PutKeyPolicy",
    "kms:CreateGrant",
    "kms:ScheduleKeyDeletion",
    "kms:CancelKeyDeletion",
    "kms:DisableKey",
    "kms:EnableKey",
    "kms:DisableKeyRotation",
    "kms:EnableKeyRotation",
    "kms:RevokeGrant",
    "kms:RetireGrant",
    "kms:UpdateKeyDescription",
    "kms:TagResource",
    "kms:UntagResource",
    "kms:CreateAlias",
    "kms:DeleteAlias",
    "kms:UpdateAlias",
    "kms:ReplicateKey",
    "kms:UpdatePrimaryRegion",
    "kms:ImportKeyMaterial",
    "kms:DeleteImportedKeyMaterial",
    "kms:RotateKeyOnDemand",
];

fn is_admin(act: &Item<'_>) -> bool {
    match act {
        // A literal action (the usual case) covers only itself: no pattern matching, and the
        // wildcard scan is made once rather than once per administrative action.
        Item::One(p) if !p.contains(['*', '?']) => ADMIN_ACTIONS
            .iter()
            .any(|admin| admin.eq_ignore_ascii_case(p)),
        // A literal prefix and one trailing `*` (`kms:GenerateDataKey*`): a prefix test.
        Item::One(p)
            if p.strip_suffix('*')
                .is_some_and(|prefix| !prefix.contains(['*', '?'])) =>
        {
            let prefix = &p.as_bytes()[..p.len() - 1];
            ADMIN_ACTIONS.iter().any(|admin| {
                admin
                    .as_bytes()
                    .get(..prefix.len())
                    .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
            })
        }
        Item::One(p) => ADMIN_ACTIONS
            .iter()
            .any(|admin| pattern::covers(p, admin, true)),
        Item::AllBut(n) => ADMIN_ACTIONS
            .iter()
            .any(|admin| !n.iter().any(|n| pattern::covers(n, admin, true))),
    }
}

/// Whom a condition limits the caller to.
#[derive(Debug)]
pub(super) enum Pin {
    /// A caller of one of these accounts.
    Accounts(BTreeSet<String>),
    /// A caller of one of these organisations.
    Orgs(BTreeSet<String>),
    /// A request whose encryption context names a resource of one of these accounts. The
    /// caller chooses the encryption context, so this ties only a service principal (which
    /// sets it from the resource it acts for), never a caller who may be anyone.
    Context(BTreeSet<String>),
    /// An account or organisation this reading cannot name (an S3 bucket ARN, a user id).
    Unknown,
}

impl Pin {
    /// Whether the pin ties the caller (`service`: a service principal) to the trust.
    fn ties(&self, trust: &Trust, service: bool) -> bool {
        let all = |set: &BTreeSet<String>, f: &dyn Fn(&str) -> bool| {
            !set.is_empty() && set.iter().all(|x| f(x))
        };
        match self {
            Pin::Accounts(a) => all(a, &|x| trust.trusts_account(x)),
            Pin::Orgs(o) => all(o, &|x| trust.trusts_org(x)),
            Pin::Context(a) => service && all(a, &|x| trust.trusts_account(x)),
            Pin::Unknown => false,
        }
    }
}

/// The severity of one unit (principal, action) under its statement's pins, and why it is
/// public or cross-account: [`outside`], then [`severity`]. The one set of rules both the
/// explanation's severity and the guardrail ([`guardrails`](crate::guardrails), through
/// the same two functions) apply: conditions are ANDed, so one pin that ties the caller to
/// the trust is enough.
pub(super) fn rate(
    who: &Who,
    pins: &[Pin],
    act: &Item<'_>,
    trust: &Trust,
) -> (Severity, Option<BreachReason>) {
    let foreign = outside(who, pins, trust);
    (severity(foreign.as_ref(), act), foreign)
}

/// The severity of a unit whose principal is `foreign` (or inside the trust: `None`).
pub(super) fn severity(foreign: Option<&BreachReason>, act: &Item<'_>) -> Severity {
    match foreign {
        Some(BreachReason::Unlimited) => Severity::Public,
        Some(_) => Severity::CrossAccount,
        None if is_admin(act) => Severity::Admin,
        None => Severity::Access,
    }
}

/// Why a principal under these pins is outside the trust; `None` when inside. What
/// [`rate`] judges first, and all the guardrail needs.
pub(super) fn outside(who: &Who, pins: &[Pin], trust: &Trust) -> Option<BreachReason> {
    let service = matches!(who, Who::One(Atom::Service(_)));
    if pins.iter().any(|p| p.ties(trust, service)) {
        None
    } else {
        match who {
            Who::One(Atom::Everyone) | Who::AllBut(_) => {
                // An encryption context limits nothing when the caller is anyone.
                let limited = pins.iter().any(|p| !matches!(p, Pin::Context(_)));
                Some(if limited {
                    BreachReason::UntrustedLimit
                } else {
                    BreachReason::Unlimited
                })
            }
            Who::One(Atom::Account(id)) => {
                (!trust.trusts_account(id)).then(|| BreachReason::ForeignAccount {
                    account: id.clone(),
                })
            }
            Who::One(Atom::Arn(arn)) => foreign_arn(arn, trust),
            Who::One(Atom::Service(name)) => Some(BreachReason::UnpinnedService {
                service: name.clone(),
            }),
            Who::One(Atom::Other(kind, value)) => match arn_account(value) {
                Some(_) => foreign_arn(value, trust),
                None => Some(BreachReason::UnpinnedFederation {
                    principal: format!("{kind}:{value}"),
                }),
            },
        }
    }
}

/// Why an ARN principal is foreign: its account is not trusted, or it names none.
fn foreign_arn(arn: &str, trust: &Trust) -> Option<BreachReason> {
    match arn_account(arn) {
        Some(account) if trust.trusts_account(account) => None,
        Some(account) => Some(BreachReason::ForeignAccount {
            account: account.to_owned(),
        }),
        None => Some(BreachReason::NoAccount {
            principal: arn.to_owned(),
        }),
    }
}

/// The account of an ARN (`arn:aws:iam::111122223333:role/App`); `None` for a value
/// that names none (a unique id of a deleted principal, an S3 bucket ARN).
fn arn_account(arn: &str) -> Option<&str> {
    Arn::parse(arn)?.account()
}

/// The positive conditions that limit the caller to an account or an organisation. Not
/// the `...IfExists` forms nor `ForAllValues:` (they hold when the key is absent), not
/// the negated operators, not values with wildcards.
pub(super) fn pins(conditions: &Conditions, trust: &Trust) -> Vec<Pin> {
    let mut out = Vec::new();
    for (op, keys) in conditions {
        let op = Operator::read(op);
        let positive = !op.if_exists && (op.is_plain() || op.is_for_any_value());
        if !positive
            || !matches!(
                op.base,
                "StringEquals" | "StringEqualsIgnoreCase" | "StringLike" | "ArnEquals" | "ArnLike"
            )
        {
            continue;
        }
        let arn_operator = op.base.starts_with("Arn");
        for (key, values) in keys {
            if let Some(pin) = pin(&key.folded(), values, arn_operator, trust) {
                out.push(pin);
            }
        }
    }
    out
}

fn literal(v: &str) -> bool {
    !v.is_empty() && !v.contains(['*', '?'])
}

/// The account an ARN value pins: its account field, when no wildcard can make it match
/// another account. The ARN operators match each of the six fields on its own, so only the
/// account field must be literal; under a string operator a `*` before it could span
/// colons, so the fields before it must be literal too. `None` when it pins no account.
fn pinned_account(v: &str, arn_operator: bool) -> Option<&str> {
    let fields: Vec<&str> = v.splitn(6, ':').collect();
    let [head @ .., account, _] = fields.as_slice() else {
        return None;
    };
    let fixed = if arn_operator { &[][..] } else { head };
    (fields.len() == 6
        && fields[0] == "arn"
        && literal(account)
        && fixed.iter().all(|f| !f.contains(['*', '?'])))
    .then_some(*account)
}

/// The organisation of an organisation path (`o-a1b2c3d4e5/r-ab12/ou-ab12-11111111/`).
fn org_of_path(path: &str) -> &str {
    path.split('/').next().unwrap_or_default()
}

fn pin(key: &str, values: &BTreeSet<String>, arn_operator: bool, trust: &Trust) -> Option<Pin> {
    if values.is_empty() {
        return None;
    }
    let all = |f: &dyn Fn(&str) -> bool| values.iter().all(|v| f(v));
    match key {
        "aws:principalaccount" | "aws:sourceaccount" | "kms:calleraccount" | "aws:sourceowner" => {
            all(&literal).then(|| {
                Pin::Accounts(
                    values
                        .iter()
                        .map(|v| {
                            if v.eq_ignore_ascii_case("${aws:ResourceAccount}") {
                                trust.own_account().to_owned()
                            } else {
                                v.clone()
                            }
                        })
                        .collect(),
                )
            })
        }
        "aws:principalorgid" | "aws:sourceorgid" => {
            all(&literal).then(|| Pin::Orgs(values.iter().cloned().collect()))
        }
        "aws:principalorgpaths" | "aws:sourceorgpaths" => all(&|v: &str| literal(org_of_path(v)))
            .then(|| Pin::Orgs(values.iter().map(|v| org_of_path(v).to_owned()).collect())),
        "aws:principalarn" | "aws:sourcearn" => {
            let mut accounts = BTreeSet::new();
            let mut unknown = false;
            for v in values {
                match pinned_account(v, arn_operator) {
                    Some(a) => {
                        accounts.insert(a.to_owned());
                    }
                    // A literal that names no account (an S3 bucket ARN): some caller.
                    None if literal(v) => unknown = true,
                    None => return None,
                }
            }
            Some(if unknown {
                Pin::Unknown
            } else {
                Pin::Accounts(accounts)
            })
        }
        "aws:userid" | "aws:username" => {
            all(&|v: &str| !v.is_empty() && !v.starts_with(['*', '?'])).then_some(Pin::Unknown)
        }
        _ if key.starts_with("kms:encryptioncontext:") => {
            let accounts: Option<BTreeSet<String>> = values
                .iter()
                .map(|v| pinned_account(v, arn_operator).map(str::to_owned))
                .collect();
            accounts.map(Pin::Context)
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Display.

/// The principal as shown, and folded action -> action as shown.
type Group = (String, BTreeMap<String, String>);

/// Uncovered units grouped per (principal, conditions).
struct Grouped<'p> {
    /// The partition account roots are shown in.
    partition: &'p str,
    /// (principal, when) -> (principal as shown, folded action -> action as shown).
    groups: BTreeMap<(Who, Option<String>), Group>,
}

impl<'p> Grouped<'p> {
    fn new(partition: &'p str) -> Self {
        Self {
            partition,
            groups: BTreeMap::new(),
        }
    }

    fn add(&mut self, hit: &Hit<'_>) {
        if hit.units.is_empty() {
            return;
        }
        let rule = hit.rule;
        let when = render_when(rule.conditions);
        let mut shown_who: Vec<Option<String>> = vec![None; rule.who.len()];
        for &(p, a) in &hit.units {
            let who = &rule.who[p];
            let principal = shown_who[p].get_or_insert_with(|| show_who(who, self.partition));
            let entry = self
                .groups
                .entry((who.clone(), when.clone()))
                .or_insert_with(|| (principal.clone(), BTreeMap::new()));
            let (folded, shown) = shown_action(&rule.action_items[a]);
            entry.1.entry(folded).or_insert(shown);
        }
    }

    fn finish(self) -> Vec<Access> {
        let mut out: Vec<Access> = self
            .groups
            .into_iter()
            .map(|((_, when), (principal, actions))| Access {
                principal,
                actions: actions.into_values().collect(),
                when,
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.principal, &a.when, &a.actions).cmp(&(&b.principal, &b.when, &b.actions))
        });
        out
    }
}

/// An action as shown (`kms:Decrypt`, `every action except kms:Decrypt`) and its key for
/// de-duplication (case-folded).
pub(super) fn shown_action(item: &Item<'_>) -> (String, String) {
    match item {
        Item::One(a) => (a.to_ascii_lowercase(), (*a).to_owned()),
        Item::AllBut(n) => (
            format!("~{}", n.join(", ").to_ascii_lowercase()),
            format!("every action except {}", n.join(", ")),
        ),
    }
}

fn show_atom(a: &Atom, partition: &str) -> String {
    match a {
        Atom::Everyone => "*".to_owned(),
        Atom::Account(id) => format!("arn:{partition}:iam::{id}:root"),
        Atom::Arn(arn) => arn.clone(),
        Atom::Service(s) => s.clone(),
        Atom::Other(kind, v) => format!("{kind}:{v}"),
    }
}

pub(super) fn show_who(who: &Who, partition: &str) -> String {
    match who {
        Who::One(a) => show_atom(a, partition),
        Who::AllBut(x) => {
            let names: Vec<String> = x.iter().map(|a| show_atom(a, partition)).collect();
            format!("everyone except {}", names.join(", "))
        }
    }
}

/// `kms:ViaService = s3.eu-west-1.amazonaws.com`, `kms:ViaService in [a, b]`,
/// `aws:SecureTransport = false`, `kms:EncryptionContext:app like app-*`,
/// `aws:SourceIp IpAddress 10.0.0.0/8`; several joined by ` and `.
pub(super) fn render_when(conditions: &Conditions) -> Option<String> {
    let mut clauses = Vec::new();
    for (op, keys) in conditions {
        for (key, values) in keys {
            let key = key.as_written();
            let vals: Vec<&str> = values.iter().map(String::as_str).collect();
            let one = vals.len() == 1;
            let list = || format!("[{}]", vals.join(", "));
            let read = Operator::read(op);
            let plain = read.is_plain().then_some(read.base);
            let clause = match plain {
                Some("StringEquals" | "Bool") if one => format!("{key} = {}", vals[0]),
                Some("StringEquals" | "Bool") => format!("{key} in {}", list()),
                Some("StringLike") if one => format!("{key} like {}", vals[0]),
                Some("StringLike") => format!("{key} like {}", list()),
                _ if one => format!("{key} {op} {}", vals[0]),
                _ => format!("{key} {op} {}", list()),
            };
            clauses.push(clause);
        }
    }
    (!clauses.is_empty()).then(|| clauses.join(" and "))
}
