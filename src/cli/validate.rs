//! `validate-baseline [--key KEY]`: render and validate the baseline without touching any
//! key (the configuration already refused an invalid template at start-up); with `--key`,
//! render it for that key (needed to check a `primary` baseline).

use krg_engine::baseline::Baseline;
use krg_engine::key::KeyArn;
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
        // Every baseline was rendered and validated when the configuration was read.
        let names: Vec<(&str, &str)> = c.templates().map(|(n, t)| (n, t.origin())).collect();
        if json {
            let list: Vec<_> = names
                .iter()
                .map(|(name, from)| json!({"name": name, "origin": from}))
                .collect();
            println!(
                "{}",
                json!({"baseline": origin, "valid": true, "tag": c.tag(), "default": c.default().name(), "baselines": list})
            );
        } else {
            println!(
                "baseline catalogue {}: {} baselines valid (each rendered for a sample key; nothing was called)",
                c.origin(),
                names.len()
            );
            for (name, from) in &names {
                println!("  {name:<24} {from}");
            }
            println!(
                "keys pick one with the tag {}; untagged keys: {}",
                c.tag(),
                c.default().name()
            );
        }
        return Ok(0);
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
