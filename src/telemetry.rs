//! Logging set-up shared by the binaries. Honours Lambda's log controls
//! (`AWS_LAMBDA_LOG_FORMAT=JSON`, `AWS_LAMBDA_LOG_LEVEL`) and `RUST_LOG`. In JSON, event
//! fields are top-level keys, so each per-key line is queryable in Logs Insights as is.
//!
//! Levels are `level` or `target=level` lists (`info,aws_smithy_runtime=debug`), read with
//! `tracing_subscriber`'s `Targets`: the regex-based `EnvFilter` would add its regex engine
//! to the Lambda package for span and field filters nobody sets on a function.

use tracing::level_filters::LevelFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// The filter `spec` describes, or `fallback` and why `spec` was not used. A directive is
/// a level or `target=level`; `FATAL` (a Lambda log level) means `error`. A bare word that
/// is not a level is refused rather than read as a target name, which would silence
/// every other line.
fn targets(spec: Option<String>, fallback: &str) -> (Targets, Option<String>) {
    let default = || fallback.parse().expect("a plain level parses");
    let Some(spec) = spec else {
        return (default(), None);
    };
    let level = |l: &str| {
        let l = l.trim().to_lowercase();
        let l = if l == "fatal" { "error".to_owned() } else { l };
        LEVELS.contains(&l.as_str()).then_some(l)
    };
    let directives: Option<Vec<String>> = spec
        .split(',')
        .filter(|d| !d.trim().is_empty())
        .map(|d| match d.rsplit_once('=') {
            Some((target, l)) => level(l).map(|l| format!("{}={l}", target.trim())),
            None => level(d),
        })
        .collect();
    let most_detailed = directives
        .iter()
        .flatten()
        .filter_map(|d| d.rsplit('=').next()?.parse::<LevelFilter>().ok())
        .max();
    match directives.map(|d| d.join(",").parse::<Targets>()) {
        Some(Ok(t)) => (
            t,
            most_detailed.and_then(|l| compiled_out(l, tracing::level_filters::STATIC_MAX_LEVEL)),
        ),
        _ => (
            default(),
            Some(format!(
                "log level {spec:?} is not valid; using {fallback:?}: use one of error, warn, info, debug, trace, off, or target=level pairs separated by commas"
            )),
        ),
    }
}

/// Why lines of `asked` will not appear, when this build compiled them out (`kept` is its
/// static maximum, set by a `tracing` `max_level_*` feature; the function's builds compile
/// every level in, so this speaks only for a build made with one).
fn compiled_out(asked: LevelFilter, kept: LevelFilter) -> Option<String> {
    (asked > kept).then(|| {
        format!(
            "{asked} lines are compiled out of this build (it keeps {kept} as its most detailed level); {kept} is logged"
        )
    })
}

const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];

/// Installs the global subscriber; call once at start-up.
pub fn init() {
    let spec = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .ok();
    let (filter, problem) = targets(spec, "info");
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    if json {
        let format = format.json().flatten_event(true).with_current_span(false);
        tracing_subscriber::registry()
            .with(format.with_filter(filter))
            .init();
    } else {
        tracing_subscriber::registry()
            .with(format.with_ansi(false).with_filter(filter))
            .init();
    }
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

/// Logging for the CLI: warnings and errors on stderr (`RUST_LOG` for more), so stdout
/// carries only the command's output. Every overwritten policy is logged at warn level:
/// without a backup bucket, that line is the only copy.
pub fn init_cli() {
    use std::io::IsTerminal;
    let (filter, problem) = targets(std::env::var("RUST_LOG").ok(), "warn");
    let format = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    tracing_subscriber::registry()
        .with(format.with_filter(filter))
        .init();
    if let Some(problem) = problem {
        tracing::warn!("{problem}");
    }
}

#[cfg(test)]
mod tests {
    use super::{LevelFilter, compiled_out, targets};
    use tracing::Level;

    #[test]
    fn levels_and_target_lists_are_read_and_a_bad_one_is_explained() {
        let (t, problem) = targets(Some("INFO,aws_smithy_runtime=debug".into()), "warn");
        assert!(problem.is_none());
        assert!(t.would_enable("kms_replica_guard", &Level::INFO));
        assert!(!t.would_enable("kms_replica_guard", &Level::DEBUG));
        assert!(t.would_enable("aws_smithy_runtime::client", &Level::DEBUG));

        let (t, problem) = targets(Some("FATAL".into()), "warn");
        assert!(problem.is_none());
        assert!(t.would_enable("x", &Level::ERROR) && !t.would_enable("x", &Level::WARN));

        for bad in ["loud", "info,x=loud"] {
            let (t, problem) = targets(Some(bad.into()), "warn");
            assert!(t.would_enable("x", &Level::WARN) && !t.would_enable("x", &Level::INFO));
            assert!(problem.unwrap().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn asking_for_lines_a_build_compiled_out_is_explained() {
        let note = compiled_out(LevelFilter::DEBUG, LevelFilter::INFO).unwrap();
        assert!(note.starts_with("debug lines are compiled out"), "{note}");
        assert_eq!(compiled_out(LevelFilter::INFO, LevelFilter::INFO), None);
        assert_eq!(compiled_out(LevelFilter::TRACE, LevelFilter::TRACE), None);
    }
}
