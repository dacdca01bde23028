//! `cargo xtask setup`: the project venvs.
//! - `.venv`: the pinned emulator (LocalStack, host mode) and the build tooling (cargo-lambda
//!   and its zig), from `requirements/emulator.txt` and `requirements/build.txt`;
//! - `.venv-moto`: moto's standalone server (Security Hub, CloudTrail), from
//!   `requirements/moto.txt`. A venv of its own because LocalStack's `moto-ext` installs the
//!   same `moto` package at another version.
//!
//! Idempotent: the sha256 of a venv's requirement files (concatenated, as `cat a b |
//! sha256sum` computes it) is stamped into `VENV/.requirements.sha256`; a venv whose stamp
//! matches is left as it is. Otherwise the venv is created afresh with a Python >= 3.13
//! (LocalStack's floor), found as `PYTHON313`, `python3.13` on `PATH`, or a pyenv
//! `~/.pyenv/versions/3.1[3-9]*` install, then `pip install` and `pip check`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::env;

/// Arguments of the task.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs the task.
pub async fn run(_args: Args) -> anyhow::Result<()> {
    ensure_venv()?;
    ensure_moto_venv()
}

/// The requirement files `.venv` is built from, in stamp order.
const REQUIREMENTS: [&str; 2] = ["requirements/emulator.txt", "requirements/build.txt"];
/// The requirement file `.venv-moto` is built from.
const MOTO_REQUIREMENTS: [&str; 1] = ["requirements/moto.txt"];

/// The venv's directory.
pub fn venv() -> PathBuf {
    env::root().join(".venv")
}

/// The moto server's venv.
pub fn moto_venv() -> PathBuf {
    env::root().join(".venv-moto")
}

/// Creates or refreshes `.venv` unless its stamp matches the requirement files.
pub fn ensure_venv() -> anyhow::Result<()> {
    ensure(&venv(), &REQUIREMENTS)
}

/// Creates or refreshes `.venv-moto` unless its stamp matches `requirements/moto.txt`.
pub fn ensure_moto_venv() -> anyhow::Result<()> {
    ensure(&moto_venv(), &MOTO_REQUIREMENTS)
}

fn ensure(venv: &Path, requirements: &[&str]) -> anyhow::Result<()> {
    let root = env::root();
    let stamp = venv.join(".requirements.sha256");
    let want = requirements_digest(&root, requirements)?;
    let python = venv.join("bin/python");
    if python.is_file() && std::fs::read_to_string(&stamp).is_ok_and(|s| s.trim() == want) {
        return Ok(());
    }

    let Some(py) = find_python() else {
        bail!(
            "LocalStack needs Python >= 3.13 and none was found (tried $PYTHON313, python3.13, \
             ~/.pyenv/versions/3.1[3-9]*/bin/python3).\n       Install one (e.g. 'pyenv install \
             3.13') or set PYTHON313=/path/to/python3.13."
        );
    };
    let version = output_of(Command::new(&py).arg("--version")).unwrap_or_default();
    println!(
        "==> creating {} with {} ({})",
        venv.display(),
        py.display(),
        version.trim()
    );
    if venv.exists() {
        std::fs::remove_dir_all(venv)
            .with_context(|| format!("removing the old venv {}", venv.display()))?;
    }
    run_cmd(Command::new(&py).args(["-m", "venv"]).arg(venv))?;
    let pip = venv.join("bin/pip");
    let mut install = Command::new(&pip);
    install.args(["install", "--quiet", "--disable-pip-version-check"]);
    for r in requirements {
        install.arg("-r").arg(root.join(r));
    }
    run_cmd(&mut install)?;
    run_cmd(Command::new(&pip).arg("check"))?;
    std::fs::write(&stamp, format!("{want}\n"))
        .with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// sha256 of the requirement files concatenated, lower-case hex (`sha256sum`'s digest).
fn requirements_digest(root: &Path, requirements: &[&str]) -> anyhow::Result<String> {
    let mut hasher = Sha256::new();
    for r in requirements {
        let path = root.join(r);
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        hasher.update(&bytes);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// The first candidate that runs and reports Python >= 3.13, as an absolute path.
fn find_python() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("PYTHON313").filter(|p| !p.is_empty()) {
        candidates.push(p.into());
    }
    candidates.push("python3.13".into());
    if let Some(home) = std::env::var_os("HOME") {
        let versions = PathBuf::from(home).join(".pyenv/versions");
        candidates.push(versions.join("3.13.0/bin/python3"));
        // ~/.pyenv/versions/3.1[3-9]*, in name order as the shell's glob expands it.
        let mut found: Vec<PathBuf> = std::fs::read_dir(&versions)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.strip_prefix("3.1")
                    .and_then(|rest| rest.chars().next())
                    .is_some_and(|c| ('3'..='9').contains(&c))
            })
            .map(|e| e.path().join("bin/python3"))
            .collect();
        found.sort();
        candidates.extend(found);
    }
    candidates.into_iter().find_map(|c| {
        let path = resolve(&c)?;
        let ok = Command::new(&path)
            .args(["-c", "import sys; sys.exit(sys.version_info < (3, 13))"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(path)
    })
}

/// `command -v`: a path with a slash if it is an executable file, else a `PATH` lookup.
fn resolve(candidate: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if candidate.components().count() > 1 {
        return executable(candidate).then(|| candidate.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(candidate))
        .find(|p| executable(p))
}

fn output_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

/// Runs a command with inherited output; an unsuccessful exit is an error naming it.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}
