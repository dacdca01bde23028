//! `cargo xtask emulator start|stop|fresh|status`: LocalStack community in host mode
//! (`.venv/bin/python -m localstack.runtime.main`), listening on 127.0.0.1 only, and beside
//! it moto's server for Security Hub and CloudTrail ([`crate::moto`]); each verb acts on both.
//!
//! - Port: [`env::port`] (`LOCALSTACK_PORT`, default 4566). State, log and pid file live in
//!   `.localstack/PORT/`, one directory per port, so a second emulator (the sweep benchmark)
//!   can run beside the first.
//! - `start` is idempotent: an emulator already healthy on the port is used; so is one that
//!   `AWS_ENDPOINT_URL` names and that answers (nothing is started then). Otherwise the venv
//!   is ensured ([`crate::setup`]), LocalStack is started in its own session (`setsid`), so
//!   it outlives this process and a Ctrl-C here, and start waits until KMS, CloudWatch,
//!   EventBridge and STS report running. If it exits or is not healthy within 60 s, the error
//!   carries the last lines of its log.
//! - `stop` ends the process group of the pid in the pid file (LocalStack and anything it
//!   spawned), SIGTERM then, after 10 s, SIGKILL.
//! - `fresh`: stop, forget all state of the port, start (benchmarks).
//! - `status`: exit 0 and `running at URL` when healthy, else `not running` and exit 1.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::env;

/// Arguments of the task.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Start LocalStack on 127.0.0.1:$LOCALSTACK_PORT and moto's server on
    /// 127.0.0.1:$MOTO_PORT, and wait until both are healthy (idempotent).
    Start,
    /// Stop the LocalStack and the moto server this project started on the ports.
    Stop,
    /// Stop, forget all state of the ports, start.
    Fresh,
    /// Exit 0 if both emulators answer healthy, 1 if not.
    Status,
}

/// Runs the task.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let port = env::port();
    match args.action {
        Action::Start => {
            ensure_running().await?;
            crate::moto::ensure_running().await
        }
        Action::Stop => {
            crate::moto::stop(env::moto_port())?;
            stop(port)
        }
        Action::Fresh => {
            crate::moto::stop(env::moto_port())?;
            stop(port)?;
            let dir = state_dir(port);
            if dir.exists() {
                std::fs::remove_dir_all(&dir)
                    .with_context(|| format!("removing {}", dir.display()))?;
            }
            start(port, false).await?;
            crate::moto::ensure_running().await
        }
        Action::Status => {
            let url = env::endpoint();
            let moto = env::moto_endpoint();
            let (localstack_up, moto_up) = (healthy(&url).await, crate::moto::healthy(&moto).await);
            let say = |up: bool, what: &str, url: &str| {
                if up {
                    println!("{what} running at {url}");
                } else {
                    println!("{what} not running");
                }
            };
            say(localstack_up, "LocalStack", &url);
            say(moto_up, "moto server", &moto);
            if !(localstack_up && moto_up) {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// The services started, and those that must report running before start returns.
const SERVICES: &str = "kms,cloudwatch,events,sqs,s3,ssm,sts,sns";
const NEEDED: [&str; 4] = ["kms", "cloudwatch", "events", "sts"];
/// How long start waits for health.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Log lines shown when start fails.
const LOG_TAIL: usize = 30;

/// Makes sure an emulator answers at [`env::endpoint`]: the one `AWS_ENDPOINT_URL` names,
/// or one on 127.0.0.1:[`env::port`], started if needed.
pub async fn ensure_running() -> anyhow::Result<()> {
    start(env::port(), true).await
}

/// `.localstack/PORT`: state, log and pid file of the emulator on that port.
pub fn state_dir(port: u16) -> PathBuf {
    env::root().join(".localstack").join(port.to_string())
}

fn pid_file(port: u16) -> PathBuf {
    state_dir(port).join("localstack.pid")
}

fn log_file(port: u16) -> PathBuf {
    state_dir(port).join("localstack.log")
}

fn loopback(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

async fn start(port: u16, honour_endpoint_url: bool) -> anyhow::Result<()> {
    let own = loopback(port);
    if honour_endpoint_url
        && let Ok(url) = std::env::var("AWS_ENDPOINT_URL")
        && !url.is_empty()
        && url.trim_end_matches('/') != own
    {
        if healthy(&url).await {
            println!("using the emulator already running at {url}");
            return Ok(());
        }
        bail!(
            "AWS_ENDPOINT_URL={url} does not answer as LocalStack.\n       Start it, or unset \
             AWS_ENDPOINT_URL to let `cargo xtask emulator start` start one on {own}."
        );
    }
    if healthy(&own).await {
        println!("LocalStack already running at {own}");
        return Ok(());
    }

    crate::setup::ensure_venv()?;
    let dir = state_dir(port);
    std::fs::create_dir_all(dir.join("fs"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let log_path = log_file(port);
    let log =
        File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    println!(
        "==> starting LocalStack on {own} (log: {})",
        log_path.display()
    );
    let listen = format!("127.0.0.1:{port}");
    let mut cmd = Command::new(crate::setup::venv().join("bin/python"));
    cmd.args(["-m", "localstack.runtime.main"])
        .current_dir(env::root())
        .env("OVERRIDE_IN_DOCKER", "0")
        .env("FILESYSTEM_ROOT", dir.join("fs"))
        .env("GATEWAY_SERVER", "hypercorn")
        .env("GATEWAY_LISTEN", &listen)
        .env("DNS_ADDRESS", "0")
        .env("DISABLE_EVENTS", "1")
        .env("SKIP_SSL_CERT_DOWNLOAD", "1")
        .env("SERVICES", SERVICES)
        .env("EAGER_SERVICE_LOADING", "1")
        .env("LOCALSTACK_HOST", &listen)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let polls = Duration::from_millis(500);
    let ready = |url: String| async move { healthy(&url).await };
    start_detached(
        "LocalStack",
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

/// Starts a server of this project's in the background (detached, its pid recorded) and
/// waits until `ready` says it answers at `url`. An exit during start-up or no answer
/// within `timeout` fails with the last lines of its log (the timed-out one left running
/// for `cargo xtask emulator stop`). LocalStack and moto's server both start through here.
#[allow(clippy::too_many_arguments)]
pub async fn start_detached<F, Fut>(
    name: &str,
    mut cmd: Command,
    pid_path: &std::path::Path,
    log_path: &std::path::Path,
    url: &str,
    timeout: Duration,
    polls: Duration,
    ready: F,
) -> anyhow::Result<()>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    detach(&mut cmd);
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    let pid = child.id();
    std::fs::write(pid_path, format!("{pid}\n"))?;
    let deadline = Instant::now() + timeout;
    loop {
        // try_wait, not kill(pid, 0): this process is the parent, so an exited child stays
        // a zombie that kill(2) still finds.
        if let Some(status) = child.try_wait()? {
            let _ = std::fs::remove_file(pid_path);
            bail!(
                "{name} exited during start-up ({status}); last lines of {}:\n{}",
                log_path.display(),
                tail(log_path, LOG_TAIL)
            );
        }
        if ready(url.to_owned()).await {
            println!("{name} ready at {url}");
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{name} did not become healthy within {} s (pid {pid} left running; \
                 `cargo xtask emulator stop` ends it); last lines of {}:\n{}",
                timeout.as_secs(),
                log_path.display(),
                tail(log_path, LOG_TAIL)
            );
        }
        tokio::time::sleep(polls).await;
    }
}

/// Runs the command in a new session (and process group) of its own: no controlling
/// terminal, no SIGINT/SIGHUP from this one, and `kill(-pid)` reaches everything it spawns.
pub fn detach(cmd: &mut Command) {
    // SAFETY: setsid is async-signal-safe and touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Stops the emulator this project started on the port (a no-op when none runs).
pub fn stop(port: u16) -> anyhow::Result<()> {
    let pid_path = pid_file(port);
    let pid = std::fs::read_to_string(&pid_path)
        .ok()
        .and_then(|s| s.trim().parse::<libc::pid_t>().ok())
        .filter(|&p| p > 1);
    if let Some(pid) = pid
        && alive(pid)
    {
        terminate(pid, Duration::from_secs(10));
        println!("LocalStack stopped");
    }
    let _ = std::fs::remove_file(&pid_path);
    Ok(())
}

fn alive(pid: libc::pid_t) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// SIGTERM, then SIGKILL after `grace`, to the process group the pid leads (it was started
/// with [`detach`]), or to the pid alone if it leads none (a pid file from elsewhere).
pub fn terminate(pid: libc::pid_t, grace: Duration) {
    // SAFETY: getpgid and kill only read their arguments.
    let target = if unsafe { libc::getpgid(pid) } == pid {
        -pid
    } else {
        pid
    };
    let signal = |sig| unsafe { libc::kill(target, sig) };
    signal(libc::SIGTERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && unsafe { libc::kill(target, 0) } == 0 {
        // Reap it if it is a child of this process (no-op otherwise).
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        std::thread::sleep(Duration::from_millis(250));
    }
    signal(libc::SIGKILL);
}

/// The last `n` lines of a file.
pub fn tail(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// LocalStack's `/_localstack/health` says KMS, CloudWatch, EventBridge and STS are running
/// (or available), within 2 s.
pub async fn healthy(url: &str) -> bool {
    let url = format!("{}/_localstack/health", url.trim_end_matches('/'));
    let Ok(body) = tokio::time::timeout(Duration::from_secs(2), get(&url)).await else {
        return false;
    };
    let Ok(body) = body else { return false };
    let Ok(health) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return false;
    };
    NEEDED.iter().all(|s| {
        matches!(
            health["services"][s].as_str(),
            Some("running" | "available")
        )
    })
}

/// A plain-HTTP GET; the body when the status is 2xx.
pub async fn get(url: &str) -> anyhow::Result<Bytes> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let resp = client.get(url.parse()?).await?;
    if !resp.status().is_success() {
        bail!("{url}: {}", resp.status());
    }
    Ok(resp.into_body().collect().await?.to_bytes())
}
