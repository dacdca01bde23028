//! The second emulator: moto's standalone server (`.venv-moto/bin/moto_server`), for the
//! services LocalStack community does not serve — Security Hub (EnableSecurityHub,
//! BatchImportFindings, GetFindings) and CloudTrail (DescribeTrails, GetEventSelectors).
//! Clients reach it through `AWS_ENDPOINT_URL_SECURITYHUB` / `AWS_ENDPOINT_URL_CLOUDTRAIL`
//! ([`env::emulator_vars`]), never through `AWS_ENDPOINT_URL`.
//!
//! Started and stopped with LocalStack by `cargo xtask emulator start|stop|fresh|status`, on
//! 127.0.0.1:[`env::moto_port`] (`MOTO_PORT`, default 4570); log and pid file in
//! `.moto/PORT/`. Healthy when `GET /moto-api/proxy/passthrough` answers with moto's JSON
//! (`http_urls`): a light endpoint of moto's own (`/moto-api/data.json` walks every backend
//! and fails once some hold state). A server that
//! exits or is not healthy within 30 s fails the start with the last lines of its log (a port
//! already taken by something else ends that way).

use std::fs::File;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::emulator::{get, start_detached, terminate};
use crate::env;

/// How long start waits for health.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// `.moto/PORT`: log and pid file of the server on that port.
fn state_dir(port: u16) -> PathBuf {
    env::root().join(".moto").join(port.to_string())
}

fn pid_file(port: u16) -> PathBuf {
    state_dir(port).join("moto.pid")
}

fn log_file(port: u16) -> PathBuf {
    state_dir(port).join("moto.log")
}

/// Makes sure moto's server answers: the one `AWS_ENDPOINT_URL_SECURITYHUB` names (never
/// started here), or one on 127.0.0.1:[`env::moto_port`], started if needed.
pub async fn ensure_running() -> anyhow::Result<()> {
    let port = env::moto_port();
    let own = format!("http://127.0.0.1:{port}");
    let url = env::moto_endpoint();
    if url.trim_end_matches('/') != own {
        if healthy(&url).await {
            println!("using the moto server already running at {url}");
            return Ok(());
        }
        bail!(
            "AWS_ENDPOINT_URL_SECURITYHUB={url} does not answer as moto's server.\n       Start \
             it, or unset AWS_ENDPOINT_URL_SECURITYHUB to let `cargo xtask emulator start` \
             start one on {own}."
        );
    }
    if healthy(&own).await {
        println!("moto server already running at {own}");
        return Ok(());
    }

    crate::setup::ensure_moto_venv()?;
    let dir = state_dir(port);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log_path = log_file(port);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    println!(
        "==> starting moto server on {own} (log: {})",
        log_path.display()
    );
    let mut cmd = Command::new(crate::setup::moto_venv().join("bin/moto_server"));
    cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let polls = Duration::from_millis(250);
    let ready = |url: String| async move { healthy(&url).await };
    start_detached(
        "moto server",
        cmd,
        &pid_file(port),
        &log_path,
        &own,
        START_TIMEOUT,
        polls,
        ready,
    )
    .await
}

/// Stops the moto server this project started on the port (a no-op when none runs).
pub fn stop(port: u16) -> anyhow::Result<()> {
    let pid_path = pid_file(port);
    let pid = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse::<libc::pid_t>().ok())
        .filter(|&p| p > 1);
    // SAFETY: signal 0 only checks that the process exists.
    if let Some(pid) = pid
        && unsafe { libc::kill(pid, 0) } == 0
    {
        terminate(pid, Duration::from_secs(5));
        println!("moto server stopped");
    }
    let _ = std::fs::remove_file(&pid_path);
    Ok(())
}

/// moto's server answers `GET /moto-api/proxy/passthrough` with its JSON within 2 s.
pub async fn healthy(url: &str) -> bool {
    let url = format!("{}/moto-api/proxy/passthrough", url.trim_end_matches('/'));
    let Ok(Ok(body)) = tokio::time::timeout(Duration::from_secs(2), get(&url)).await else {
        return false;
    };
    serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.get("http_urls").is_some())
}
