//! What the demo and the end-to-end test share: the emulator's KMS and CloudWatch through
//! the SDK, key families with fixed ids, the function's environment, and the function
//! under `cargo lambda watch` (dev profile), invoked over its HTTP endpoint.

use std::fs::File;
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use aws_config::{Region, SdkConfig};
use aws_sdk_cloudwatch::primitives::DateTime;
use aws_sdk_cloudwatch::types::Statistic;
use aws_sdk_kms::types::Tag;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use crate::{emulator, env};

/// The multi-Region key id the sample events name.
pub const SAMPLE_KEY_ID: &str = "mrk-1234abcd12ab34cd56ef1234567890ab";
/// The home Region of every key family (the primary's).
pub const PRIMARY_REGION: &str = "us-east-1";
/// The replica Regions, as the function's `SWEEP_REGIONS` names them.
pub const REPLICA_REGIONS: [&str; 2] = ["us-west-2", "eu-west-1"];

/// The remediator role the function is configured with (the sample events' one).
pub fn remediator_role_arn() -> String {
    format!(
        "arn:aws:iam::{}:role/kms-replica-guard-remediator",
        env::ACCOUNT
    )
}

/// The ARN of key `id` in `region`.
pub fn key_arn(region: &str, id: &str) -> String {
    format!("arn:aws:kms:{region}:{}:key/{id}", env::ACCOUNT)
}

/// The default key policy, as KMS gives a replica created without a policy.
pub fn default_policy() -> String {
    format!(
        r#"{{"Version":"2012-10-17","Id":"key-default-1","Statement":[{{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{{"AWS":"arn:aws:iam::{}:root"}},"Action":"kms:*","Resource":"*"}}]}}"#,
        env::ACCOUNT
    )
}

/// A baseline template rendered for a key of the sample account in `region`.
pub fn render(template: &str, region: &str) -> String {
    template
        .replace("{{Partition}}", "aws")
        .replace("{{AccountId}}", env::ACCOUNT)
        .replace("{{Region}}", region)
}

/// The emulator's KMS (any Region) and CloudWatch, as the sample account.
pub struct Aws {
    config: SdkConfig,
}

impl Aws {
    /// Points this process at the emulator ([`env::use_emulator`]) and loads the SDK config.
    pub async fn connect() -> Self {
        env::use_emulator();
        let config = krg_aws::clients::sdk_defaults().load().await;
        Self { config }
    }

    /// KMS in `region`.
    pub fn kms(&self, region: &str) -> aws_sdk_kms::Client {
        let conf = aws_sdk_kms::config::Builder::from(&self.config)
            .region(Region::new(region.to_owned()))
            .build();
        aws_sdk_kms::Client::from_conf(conf)
    }

    /// Whether key `id` exists in `region`.
    async fn exists(&self, region: &str, id: &str) -> anyhow::Result<bool> {
        match self.kms(region).describe_key().key_id(id).send().await {
            Ok(_) => Ok(true),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_not_found_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("DescribeKey {id} in {region}"))),
        }
    }

    /// A key family: the primary in [`PRIMARY_REGION`] with id `id` (LocalStack's
    /// `_custom_id_` tag) and `policy`, and replicas in `replicas`; what exists is reused.
    pub async fn create_family(
        &self,
        id: &str,
        policy: &str,
        replicas: &[&str],
    ) -> anyhow::Result<()> {
        let primary = self.kms(PRIMARY_REGION);
        if !self.exists(PRIMARY_REGION, id).await? {
            primary
                .create_key()
                .multi_region(true)
                .description("kms-replica-guard demo key")
                .policy(policy)
                .tags(
                    Tag::builder()
                        .tag_key("_custom_id_")
                        .tag_value(id)
                        .build()?,
                )
                .send()
                .await
                .with_context(|| format!("CreateKey {id} in {PRIMARY_REGION}"))?;
        }
        for r in replicas {
            if !self.exists(r, id).await? {
                primary
                    .replicate_key()
                    .key_id(id)
                    .replica_region(*r)
                    .send()
                    .await
                    .with_context(|| format!("ReplicateKey {id} to {r}"))?;
            }
        }
        Ok(())
    }

    /// PutKeyPolicy (`default`).
    pub async fn put_policy(&self, region: &str, id: &str, policy: &str) -> anyhow::Result<()> {
        self.kms(region)
            .put_key_policy()
            .key_id(id)
            .policy_name("default")
            .policy(policy)
            .send()
            .await
            .with_context(|| format!("PutKeyPolicy {id} in {region}"))?;
        Ok(())
    }

    /// GetKeyPolicy (`default`): the policy text.
    pub async fn get_policy(&self, region: &str, id: &str) -> anyhow::Result<String> {
        let out = self
            .kms(region)
            .get_key_policy()
            .key_id(id)
            .policy_name("default")
            .send()
            .await
            .with_context(|| format!("GetKeyPolicy {id} in {region}"))?;
        Ok(out.policy().unwrap_or_default().to_owned())
    }

    /// The Sids of the key's policy, `(no Sid)` for a statement without one.
    pub async fn sids(&self, region: &str, id: &str) -> anyhow::Result<String> {
        let policy: Value = serde_json::from_str(&self.get_policy(region, id).await?)?;
        let sids: Vec<&str> = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| s["Sid"].as_str().unwrap_or("(no Sid)"))
            .collect();
        Ok(serde_json::to_string(&sids)?)
    }

    /// The Sum of `AutoFixApplied` (fleet-wide, no dimensions) in `namespace` over
    /// `[start, end]`, 60 s periods, in [`env::REGION`].
    pub async fn auto_fix_applied(
        &self,
        namespace: &str,
        start: SystemTime,
        end: SystemTime,
    ) -> anyhow::Result<f64> {
        let cw = aws_sdk_cloudwatch::Client::new(&self.config);
        let out = cw
            .get_metric_statistics()
            .namespace(namespace)
            .metric_name("AutoFixApplied")
            .start_time(DateTime::from(start))
            .end_time(DateTime::from(end))
            .period(60)
            .statistics(Statistic::Sum)
            .send()
            .await
            .with_context(|| format!("GetMetricStatistics {namespace} AutoFixApplied"))?;
        Ok(out.datapoints().iter().filter_map(|d| d.sum()).sum())
    }
}

/// Writes the function's environment for local runs (`cargo lambda watch --env-file`).
pub fn function_env(file: &Path, baseline: &Path, namespace: &str) -> anyhow::Result<()> {
    let mut text = String::new();
    for (k, v) in env::emulator_vars() {
        text.push_str(&format!("{k}={v}\n"));
    }
    text.push_str(&format!(
        "AWS_LAMBDA_LOG_FORMAT=JSON\nREMEDIATION_MODE=enforce\nBASELINE_SOURCE=file:{}\n\
         REMEDIATOR_ROLE_ARN={}\nMETRICS_NAMESPACE={namespace}\nSWEEP_REGIONS={}\n",
        baseline.display(),
        remediator_role_arn(),
        REPLICA_REGIONS.join(",")
    ));
    std::fs::write(file, text).with_context(|| format!("writing {}", file.display()))
}

/// A scratch directory, removed when dropped.
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// `$TMPDIR/krg-NAME-PID`, empty.
    pub fn new(name: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("krg-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self(dir))
    }

    /// A path inside it.
    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `.venv/bin` first on `PATH`: `cargo lambda` (and its zig) come from the project venv.
fn path_with_venv() -> std::ffi::OsString {
    let mut dirs = vec![crate::setup::venv().join("bin")];
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    std::env::join_paths(dirs).expect("PATH entries join")
}

/// The functions (`bootstrap`, the remediator, and `detector`; dev profile) under `cargo
/// lambda watch` on 127.0.0.1:PORT. Dropping it ends the watcher and the functions (their
/// process group).
pub struct Watch {
    child: Child,
    port: u16,
    log: PathBuf,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// What the function answered to one invocation.
pub struct Invocation {
    /// The function returned a response (HTTP 200); otherwise it returned an error.
    pub ok: bool,
    /// The response, or the error payload (`errorType`, `errorMessage`), as JSON; a body
    /// that is not JSON is kept as a string.
    pub body: Value,
}

impl Watch {
    /// Builds the functions visibly (`cargo build --bin bootstrap --bin detector`: errors
    /// show, failing fast), then runs them under `cargo lambda watch` and waits until the port
    /// accepts.
    pub async fn start(env_file: &Path, log: &Path, port: u16) -> anyhow::Result<Self> {
        let root = env::root();
        println!("    cargo build --bin bootstrap --bin detector");
        crate::setup::run_cmd(
            Command::new("cargo")
                .args(["build", "--bin", "bootstrap", "--bin", "detector"])
                .current_dir(&root),
        )?;
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            bail!(
                "127.0.0.1:{port} is already in use (another cargo lambda watch?); stop it or \
                 choose another port (WATCH_PORT / E2E_WATCH_PORT)"
            );
        }
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut cmd = Command::new("cargo");
        cmd.args([
            "lambda",
            "watch",
            "--ignore-changes",
            "-A",
            "127.0.0.1",
            "-P",
        ])
        .arg(port.to_string())
        .arg("--env-file")
        .arg(env_file)
        .current_dir(&root)
        .env("PATH", path_with_venv())
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        // Its own process group: the function it starts is in it, so one kill ends both.
        .process_group(0);
        let child = cmd.spawn().context("starting cargo lambda watch")?;
        let mut watch = Self {
            child,
            port,
            log: log.to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        };
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = watch.child.try_wait()? {
                bail!(
                    "cargo lambda watch exited ({status}); last lines of {}:\n{}",
                    log.display(),
                    emulator::tail(log, 30)
                );
            }
            // A TCP connect only: an HTTP request to the server would be taken as an
            // invocation.
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(watch);
            }
            if Instant::now() >= deadline {
                let tail = emulator::tail(log, 30);
                watch.stop();
                bail!(
                    "cargo lambda watch did not listen on 127.0.0.1:{port} within 2 min; last \
                     lines of {}:\n{tail}",
                    log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The watcher's log (its own output and the function's).
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// Invokes the remediator with `payload` through the watcher's invoke endpoint.
    pub async fn invoke(&self, payload: Vec<u8>) -> anyhow::Result<Invocation> {
        self.invoke_function("bootstrap", payload).await
    }

    /// Invokes the function built from the binary `name` with `payload`.
    pub async fn invoke_function(
        &self,
        name: &str,
        payload: Vec<u8>,
    ) -> anyhow::Result<Invocation> {
        let url = format!(
            "http://127.0.0.1:{}/2015-03-31/functions/{name}/invocations",
            self.port
        );
        let req = hyper::Request::post(&url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(payload)))?;
        // The first invocation starts the function (cargo run of the build made above).
        let call = async {
            let resp = self.client.request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        };
        let (status, body) = tokio::time::timeout(Duration::from_secs(600), call)
            .await
            .with_context(|| format!("no answer from {url} within 10 min"))?
            .with_context(|| format!("POST {url}"))?;
        let body = serde_json::from_slice(&body)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
        Ok(Invocation {
            ok: status.is_success(),
            body,
        })
    }

    /// Invokes the function with the contents of `file`.
    pub async fn invoke_file(&self, file: &Path) -> anyhow::Result<Invocation> {
        let payload = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        self.invoke(payload).await
    }

    fn stop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            emulator::terminate(self.child.id() as libc::pid_t, Duration::from_secs(5));
        }
        let _ = self.child.wait();
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The function's per-key log lines (`"key reconciled"`) in the watcher's log.
pub fn key_log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"key reconciled\""))
        .map(str::to_owned)
        .collect()
}

/// Runs `body`; a Ctrl-C ends it as an error, so the guards it holds (the watched
/// function, its scratch directory) are dropped, as the shell scripts' EXIT trap did.
pub async fn interruptible<T>(
    body: impl std::future::Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    tokio::select! {
        r = body => r,
        _ = tokio::signal::ctrl_c() => bail!("interrupted"),
    }
}
