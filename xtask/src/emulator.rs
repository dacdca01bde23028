//! Not written yet: the task of this module is being ported from its shell/Python original.

/// Arguments of the task.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the task.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("not ported yet")
}
