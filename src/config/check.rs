//! The start-up checks of what the configuration resolved: baseline digests, the
//! guardrails and the lockout check, judged for a sample key of the function's own account
//! and of a member account, so that nothing is written with a baseline that fails them.

use krg_engine::Trusted;
use krg_engine::baseline::{Baseline, RenderContext, Template};
use krg_engine::decide::lockout_guard;
use krg_engine::key::{AccountId, KeyArn, Region, RoleArn};
use krg_engine::tenancy::{Fleet, Members};
use krg_policy::{
    Breach, BreachReason, CanonicalPolicy, Trust, ValidationError, guardrails, validate,
};

use super::*;

/// Each baseline's SHA-256 logged (every cold start says what it holds keys to) and, with
/// `BASELINE_SHA256`, checked: a mismatch, a catalogue entry without a pair, or a pair for
/// no entry is a configuration error, and nothing is written.
pub(super) fn verify_digests(
    baseline: &Baseline,
    pinned: Option<&Digests>,
) -> Result<(), ConfigError> {
    const VAR: &str = "BASELINE_SHA256";
    let mismatch = |t: &Template, expected: &str| {
        format!(
            "{} has SHA-256 {}, but BASELINE_SHA256 pins {expected}: it changed since it was pinned; nothing is written until they agree (if the change is yours, pin the new digest)",
            t.origin(),
            t.sha256()
        )
    };
    match (baseline, pinned) {
        (Baseline::Primary, None) => Ok(()),
        (Baseline::Primary, Some(_)) => Err(err(
            VAR,
            "pins a baseline read from a source, and BASELINE_SOURCE=primary reads none (a mirrored primary is held to the guardrails instead); unset it, or point BASELINE_SOURCE at a baseline",
        )),
        (Baseline::Template(t), pinned) => {
            tracing::info!(baseline = %t.origin(), sha256 = %t.sha256(), "baseline loaded");
            match pinned {
                None => Ok(()),
                Some(Digests::One(expected)) if expected == t.sha256() => Ok(()),
                Some(Digests::One(expected)) => Err(err(VAR, mismatch(t, expected))),
                Some(Digests::Named(_)) => Err(err(
                    VAR,
                    format!(
                        "NAME=HEX pairs pin a catalogue, and {} is a single baseline; set BASELINE_SHA256={}",
                        t.origin(),
                        t.sha256()
                    ),
                )),
            }
        }
        (Baseline::Catalogue(c), pinned) => {
            for (name, t) in c.templates() {
                tracing::info!(baseline = %name, origin = %t.origin(), sha256 = %t.sha256(), "baseline loaded");
            }
            let named = match pinned {
                None => return Ok(()),
                Some(Digests::Named(named)) => named,
                Some(Digests::One(_)) => {
                    return Err(err(
                        VAR,
                        format!(
                            "{} is a catalogue: pin each baseline as NAME=HEX, comma-separated",
                            c.origin()
                        ),
                    ));
                }
            };
            let mut problems = Vec::new();
            for (name, t) in c.templates() {
                match named.get(name) {
                    None => problems.push(format!(
                        "{name} ({}) has no NAME=HEX pair, so it is not trusted (a baseline nobody pinned may have been planted); pin it as {name}={} or remove it",
                        t.origin(),
                        t.sha256()
                    )),
                    Some(expected) if expected != t.sha256() => {
                        problems.push(mismatch(t, expected))
                    }
                    Some(_) => {}
                }
            }
            for name in named.keys() {
                if !c.templates().any(|(n, _)| n == name) {
                    problems.push(format!(
                        "{name} is pinned but the catalogue {} has no baseline of that name",
                        c.origin()
                    ));
                }
            }
            if problems.is_empty() {
                Ok(())
            } else {
                Err(err(VAR, problems.join("\n")))
            }
        }
    }
}

/// The guardrails on a template rendered for `sample`. When the function's account is not
/// known yet (`account_known` false), grants to named accounts wait for the first real key.
pub(super) fn breaches_of(
    t: &Template,
    sample: &KeyArn,
    trusted: &Trusted,
    account_known: bool,
) -> Vec<Breach> {
    let text = t.render(RenderContext {
        key: sample,
        primary_region: sample.region(),
    });
    let Ok(policy) = CanonicalPolicy::parse(&text) else {
        // Grammar is the validation's to report.
        return Vec::new();
    };
    let trust = Trust::new(
        &format!("arn:{}:iam::{}:root", sample.partition(), sample.account()),
        trusted.accounts.iter().map(ToString::to_string),
        trusted.orgs.iter().cloned(),
    );
    guardrails(&policy, &trust)
        .into_iter()
        .filter(|b| {
            account_known
                || !matches!(
                    b.reason,
                    BreachReason::ForeignAccount { .. } | BreachReason::UntrustedLimit
                )
        })
        .collect()
}

/// [`breaches_of`] as a configuration error listing each statement and why.
pub(super) fn refuse_breaches(
    t: &Template,
    sample: &KeyArn,
    trusted: &Trusted,
    account_known: bool,
) -> Result<(), ConfigError> {
    let breaches = breaches_of(t, sample, trusted, account_known);
    if breaches.is_empty() {
        return Ok(());
    }
    Err(err(
        "BASELINE_SOURCE",
        format!(
            "baseline {} grants what the guard never writes (rendered for account {}); fix it, or trust the account or organisation (TRUSTED_ACCOUNTS, TRUSTED_ORGS) if the access is meant:\n{}",
            t.origin(),
            sample.account(),
            breaches
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        ),
    ))
}

/// A key to check a baseline with before any real key is seen: in the function's own
/// account (or `account`), home Region and partition.
pub(super) fn sample_key(
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
    account: Option<&AccountId>,
) -> KeyArn {
    let account = account
        .map(AccountId::as_str)
        .or(remediator.map(|r| r.account().as_str()))
        .unwrap_or("123456789012");
    let region = home.map_or("us-east-1", Region::as_str);
    // The role's partition (else the home Region's): the lockout check compares principal
    // ARNs with their partition, so the sample key must live where the role does.
    let partition = remediator
        .map(RoleArn::partition)
        .or(home.map(Region::partition))
        .unwrap_or("aws");
    format!("arn:{partition}:kms:{region}:{account}:key/mrk-00000000000000000000000000000000")
        .parse()
        .expect("a well-formed sample ARN")
}

/// The sample key of a member account: the first listed, else a stand-in.
pub(super) fn member_sample(
    fleet: &Fleet,
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
) -> KeyArn {
    let account: AccountId = match &fleet.members {
        Members::Listed(ids) => ids.iter().next().cloned(),
        Members::Organization => None,
    }
    .unwrap_or_else(|| "000000000000".parse().expect("12 digits"));
    sample_key(remediator, home, Some(&account))
}

/// The baseline as it renders for a member account's key: the member role must keep
/// `kms:PutKeyPolicy` there (the lockout check of every write in that account).
pub(super) fn check_member_template(
    t: &Template,
    fleet: &Fleet,
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
) -> Result<(), ConfigError> {
    let sample = member_sample(fleet, remediator, home);
    let account = sample.account();
    let text = t.render(RenderContext {
        key: &sample,
        primary_region: sample.region(),
    });
    let role = fleet.role.arn_in(account, sample.partition());
    validate(&text, &lockout_guard(&sample, Some(&role))).map_err(|errors| {
        err(
            "BASELINE_SOURCE",
            format!(
                "baseline {} would lock the member role out of member accounts' keys (rendered for account {account}, role {role}); allow it, or the account root via {{{{AccountId}}}}, kms:PutKeyPolicy:\n{}",
                t.origin(),
                errors
                    .0
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
        )
    })?;
    Ok(())
}

/// Renders the template for a sample key and validates it, so a bad baseline is caught at
/// start-up rather than at the first write. Without a role ARN the real account is not
/// known yet, so the lockout check waits for the first real key.
pub(super) fn check_template(
    t: &Template,
    remediator: Option<&RoleArn>,
    home: Option<&Region>,
) -> Result<(), ConfigError> {
    let sample = sample_key(remediator, home, None);
    let text = t.render(RenderContext {
        key: &sample,
        primary_region: sample.region(),
    });
    let guard = lockout_guard(&sample, remediator);
    match validate(&text, &guard) {
        Ok(_) => Ok(()),
        Err(errors) => {
            let relevant: Vec<String> = errors
                .0
                .iter()
                .filter(|e| {
                    remediator.is_some()
                        || !matches!(
                            e,
                            ValidationError::LockoutNotAllowed { .. }
                                | ValidationError::LockoutDenied { .. }
                        )
                })
                .map(ToString::to_string)
                .collect();
            if relevant.is_empty() {
                Ok(())
            } else {
                Err(err(
                    "BASELINE_SOURCE",
                    format!(
                        "baseline {} is invalid; fix it before anything is written:\n{}",
                        t.origin(),
                        relevant.join("\n")
                    ),
                ))
            }
        }
    }
}
