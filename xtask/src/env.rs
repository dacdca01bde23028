//! The one set of emulator facts every task uses: where the repository is, where the
//! emulator listens, and the credentials it is called with. LocalStack derives the account
//! from a 12-digit access key id, so the access key id *is* the account the sample events
//! name.

use std::path::PathBuf;

/// The account of the sample events, and the access key id that selects it on LocalStack.
pub const ACCOUNT: &str = "111122223333";
/// The secret LocalStack accepts with any access key id.
pub const SECRET_ACCESS_KEY: &str = "test";
/// The home Region of the demo, the tests and the benchmarks.
pub const REGION: &str = "us-east-1";
/// The emulator's default port.
pub const DEFAULT_PORT: u16 = 4566;
/// The default port of the second emulator, moto's server (Security Hub, CloudTrail).
pub const DEFAULT_MOTO_PORT: u16 = 4570;
/// The services the SDK reaches on moto's server rather than LocalStack, through the
/// per-service endpoint variables (`AWS_ENDPOINT_URL_<SERVICE>` beats `AWS_ENDPOINT_URL`).
pub const MOTO_ENDPOINT_VARS: [&str; 2] = [
    "AWS_ENDPOINT_URL_SECURITYHUB",
    "AWS_ENDPOINT_URL_CLOUDTRAIL",
];

/// The repository root (the parent of `xtask/`). `cargo run` tells the task where its
/// manifest is at run time; the path compiled in is only the fallback, since one shared
/// target dir may hold a binary built from another checkout.
pub fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .expect("xtask/ sits in the repository root")
        .to_path_buf()
}

/// The emulator's port: `LOCALSTACK_PORT`, else 4566.
pub fn port() -> u16 {
    std::env::var("LOCALSTACK_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_PORT)
}

/// moto's server port: `MOTO_PORT`, else 4570.
pub fn moto_port() -> u16 {
    std::env::var("MOTO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(DEFAULT_MOTO_PORT)
}

/// moto's server endpoint: `AWS_ENDPOINT_URL_SECURITYHUB`, else the loopback server.
pub fn moto_endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL_SECURITYHUB")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| format!("http://127.0.0.1:{}", moto_port()))
}

/// The endpoint the tasks talk to: `AWS_ENDPOINT_URL`, else the loopback emulator.
pub fn endpoint() -> String {
    std::env::var("AWS_ENDPOINT_URL").unwrap_or_else(|_| format!("http://127.0.0.1:{}", port()))
}

/// The variables a child process (the function, the AWS CLI, cargo lambda) needs to reach
/// the emulators as the sample account (Security Hub and CloudTrail on moto's server).
pub fn emulator_vars() -> Vec<(&'static str, String)> {
    let moto = moto_endpoint();
    vec![
        ("AWS_ENDPOINT_URL", endpoint()),
        (MOTO_ENDPOINT_VARS[0], moto.clone()),
        (MOTO_ENDPOINT_VARS[1], moto),
        ("MOTO_PORT", moto_port().to_string()),
        ("AWS_ACCESS_KEY_ID", ACCOUNT.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.to_owned()),
        ("AWS_REGION", REGION.to_owned()),
        ("AWS_DEFAULT_REGION", REGION.to_owned()),
    ]
}

/// Sets the emulator variables in this process, before any SDK client reads them.
pub fn use_emulator() {
    for (k, v) in emulator_vars() {
        // SAFETY: called at start-up of a task, before any thread that reads the
        // environment is spawned.
        unsafe { std::env::set_var(k, v) };
    }
}
