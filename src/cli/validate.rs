//! `validate-baseline [--key KEY]`: render and validate the baseline without touching any
//! key (the configuration already refused an invalid template at start-up); with `--key`,
//! render it for that key (needed to check a `primary` baseline).

use krg_engine::baseline::{Baseline, Template};
use krg_engine::key::KeyArn;
use krg_engine::outcome::Breach;
use serde_json::json;

use super::CliError;
use crate::config::Config;
use crate::wiring::Adapters;

/// Arguments of `validate-baseline`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Render it for this key ARN (needed to check a `primary` baseline).
    #[arg(long)]
    key: Option<KeyArn>,
}

/// `validate-baseline`.
pub async fn run(
    args: Args,
    adapters: Adapters,
    config: &Config,
    json: bool,
) -> Result<u8, CliError> {
    let baseline = &config.settings.baseline;
    let origin = baseline.describe();
    if let (Baseline::Catalogue(c), None) = (baseline, &args.key) {
        // Every baseline was rendered and validated when the configuration was read; the
        // guardrails refuse a breaching one key by key, so they are reported here.
        let names: Vec<(&str, &Template, Vec<Breach>)> = c
            .templates()
            .map(|(n, t)| (n, t, config.breaches(t)))
            .collect();
        let refused = names.iter().filter(|(_, _, b)| !b.is_empty()).count();
        if json {
            let list: Vec<_> = names
                .iter()
                .map(|(name, t, breaches)| json!({"name": name, "origin": t.origin(), "sha256": t.sha256(), "guardrail": breaches}))
                .collect();
            println!(
                "{}",
                json!({"baseline": origin, "valid": refused == 0, "tag": c.tag(), "default": c.default().name(), "baselines": list})
            );
        } else {
            println!(
                "baseline catalogue {}: {} of {} baselines valid (each rendered for a sample key; nothing was called)",
                c.origin(),
                names.len() - refused,
                names.len()
            );
            for (name, t, breaches) in &names {
                println!("  {name:<24} {}  sha256:{}", t.origin(), t.sha256());
                for b in breaches {
                    println!("    refused by the guardrails: {b}");
                }
            }
            println!(
                "keys pick one with the tag {}; untagged keys: {}",
                c.tag(),
                c.default().name()
            );
        }
        return Ok(if refused == 0 { 0 } else { 2 });
    }
    if let (Baseline::Template(t), None) = (baseline, &args.key) {
        let breaches = config.breaches(t);
        if json {
            println!(
                "{}",
                json!({"baseline": origin, "valid": breaches.is_empty(), "sha256": t.sha256(), "guardrail": breaches})
            );
        } else if breaches.is_empty() {
            println!(
                "baseline {origin} is valid (rendered for a sample key; nothing was called); sha256:{}",
                t.sha256()
            );
        } else {
            println!("baseline {origin} is refused by the guardrails:");
            for b in &breaches {
                println!("  {b}");
            }
        }
        return Ok(if breaches.is_empty() { 0 } else { 2 });
    }
    let Some(key) = args.key else {
        let what = if baseline.mirrors_primary() {
            "mirrors each key's primary; pass --key KEY_ARN to render and check it for a key"
                .to_owned()
        } else {
            format!("{origin} is valid (rendered for a sample key; nothing was called)")
        };
        if json {
            println!(
                "{}",
                json!({"baseline": origin, "valid": true, "detail": what})
            );
        } else {
            println!("baseline {what}");
        }
        return Ok(0);
    };
    let policy = adapters.engine(config).baseline_for(&key).await?;
    if json {
        println!(
            "{}",
            json!({"key_arn": key, "baseline": origin, "valid": true, "policy": policy})
        );
    } else {
        println!("{policy}");
        eprintln!("baseline {origin} rendered for {key}: valid");
    }
    Ok(0)
}
