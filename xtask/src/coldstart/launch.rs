//! Starting, timing and reaping the measured processes.

use std::io::Read;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use bytes::Bytes;
use krg_testkit::proxy::{CallRecord, FaultProxy};

use super::api::{Api, NEXT_PATH, Redrift, Session};

/// How a process is started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Spawned directly (posix_spawn), timed from just before the spawn.
    Timed,
    /// Started from a forked `/bin/sh` and re-parented here, for its own `ru_maxrss`.
    Memory,
}

/// The figures of one event of one process.
#[derive(Debug, Clone)]
pub struct EventFigures {
    pub latency_ms: f64,
    /// Time with at least one AWS call in flight (calls overlap in a sweep).
    pub emulator_ms: f64,
    pub own_ms: f64,
    pub to_first_call_ms: Option<f64>,
    pub calls: Vec<String>,
}

/// One cold start.
#[derive(Debug)]
pub struct Launched {
    pub init_ms: f64,
    pub first_response_ms: f64,
    pub calls_during_init: usize,
    pub events: Vec<EventFigures>,
    pub ru_maxrss_kib: i64,
    pub vm_hwm_kib: Option<u64>,
    pub responses: Vec<Bytes>,
}

/// Makes this process the reaper of its orphaned descendants, so a binary started from a
/// short-lived `/bin/sh` is re-parented here and `wait4` reads its own `ru_maxrss`.
pub fn set_child_subreaper() -> anyhow::Result<()> {
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error()).context("prctl(PR_SET_CHILD_SUBREAPER)");
    }
    Ok(())
}

/// `VmHWM` of a live process, KiB.
pub fn vm_hwm_kib(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn kill(pid: i32) {
    // SAFETY: a signal to a process this benchmark started and has not reaped yet.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// `wait4(pid)`: the wait status and `ru_maxrss` (KiB), or None if still running (`nohang`).
fn wait4(pid: i32, nohang: bool) -> Option<(i32, i64)> {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 writes into both out-pointers.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let flags = if nohang { libc::WNOHANG } else { 0 };
    // SAFETY: valid pointers to locals.
    let got = unsafe { libc::wait4(pid, &mut status, flags, &mut ru) };
    (got == pid).then_some((status, ru.ru_maxrss))
}

fn command(binary: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(binary);
    cmd.env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null());
    cmd
}

fn spawn_direct(binary: &Path, env: &[(String, String)], log: &Path) -> anyhow::Result<i32> {
    let out = std::fs::File::create(log)?;
    let child = command(binary, env)
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("spawning {}", binary.display()))?;
    Ok(child.id() as i32)
}

/// Starts the binary from a forked `/bin/sh`, so that what it had before `exec` is a copy
/// of a shell, not of this process; it is re-parented here once sh exits.
fn spawn_small_parent(binary: &Path, env: &[(String, String)], log: &Path) -> anyhow::Result<i32> {
    let mut cmd = Command::new("/bin/sh");
    cmd.args([
        "-c",
        r#"log=$1; shift; "$@" >"$log" 2>&1 </dev/null & echo $!"#,
        "sh",
    ])
    .arg(log)
    .arg(binary)
    .env_clear()
    .envs(env.iter().map(|(k, v)| (k, v)))
    .stdin(Stdio::null());
    let out = cmd.output().context("running the /bin/sh launcher")?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    match text.parse() {
        Ok(pid) if out.status.success() => Ok(pid),
        _ => bail!("the launcher failed ({}, output {text:?})", out.status),
    }
}

fn log_tail(log: &Path) -> String {
    let text = std::fs::read(log).unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let start = text.len().saturating_sub(3000);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

fn ms(from: Instant, to: Instant) -> f64 {
    to.saturating_duration_since(from).as_secs_f64() * 1e3
}

/// One cold start: spawn, serve `events`, wait for the next poll, SIGKILL, wait4.
#[allow(clippy::too_many_arguments)]
pub async fn launch(
    api: &Api,
    proxy: &FaultProxy,
    binary: &Path,
    env: &[(String, String)],
    events: Vec<Bytes>,
    mode: Mode,
    log: &Path,
    timeout: Duration,
    redrift: Option<Arc<Redrift>>,
) -> anyhow::Result<Launched> {
    let n_events = events.len();
    let s = Session::new(events, redrift);
    api.set(Some(s.clone()));
    proxy.record_calls();
    let t0 = Instant::now();
    let spawned = match mode {
        Mode::Timed => spawn_direct(binary, env, log),
        Mode::Memory => spawn_small_parent(binary, env, log),
    };
    let pid = match spawned {
        Ok(pid) => pid,
        Err(e) => {
            api.set(None);
            return Err(e);
        }
    };
    s.state.lock().unwrap().pid = Some(pid);
    let deadline = t0 + timeout;
    let mut exited = None;
    loop {
        tokio::select! {
            _ = s.idle.notified() => break,
            _ = tokio::time::sleep(Duration::from_millis(50)) => {
                if let Some(x) = wait4(pid, true) {
                    exited = Some(x);
                    break;
                }
                if Instant::now() > deadline {
                    s.fail(format!("no idle poll within {} s", timeout.as_secs()));
                    break;
                }
            }
        }
    }
    let ru_maxrss = match exited {
        None => {
            {
                let mut st = s.state.lock().unwrap();
                if st.vm_hwm_kib.is_none() {
                    st.vm_hwm_kib = vm_hwm_kib(pid);
                }
            }
            kill(pid);
            wait4(pid, false).map_or(0, |(_, ru)| ru)
        }
        Some((status, ru)) => {
            s.fail(format!(
                "the process exited by itself (wait status {status})"
            ));
            ru
        }
    };
    s.close();
    api.set(None);
    let mut calls: Vec<CallRecord> = proxy.take_calls();
    calls.sort_by_key(|c| c.received);

    let st = std::mem::take(&mut *s.state.lock().unwrap());
    let name = binary.file_name().unwrap_or_default().to_string_lossy();
    if let Some(f) = st.failure {
        bail!(
            "{name} ({mode:?}): {f}\n--- last lines of {}:\n{}",
            log.display(),
            log_tail(log)
        );
    }
    if st.responses.len() != n_events || st.served.len() != n_events || st.polls.is_empty() {
        bail!(
            "{name} ({mode:?}): {} events served, {} responses, {} polls\n--- last lines of {}:\n{}",
            st.served.len(),
            st.responses.len(),
            st.polls.len(),
            log.display(),
            log_tail(log)
        );
    }
    let mut events = Vec::new();
    for (&a, r) in st.served.iter().zip(&st.responses) {
        let b = r.at;
        let mine: Vec<&CallRecord> = calls
            .iter()
            .filter(|c| a <= c.received && c.received < b)
            .collect();
        let mut waiting = Duration::ZERO;
        let mut cursor = a;
        for c in &mine {
            let (lo, hi) = (c.received.max(cursor), c.answered.min(b));
            if hi > lo {
                waiting += hi - lo;
                cursor = hi;
            }
        }
        let latency = ms(a, b);
        events.push(EventFigures {
            latency_ms: latency,
            emulator_ms: waiting.as_secs_f64() * 1e3,
            own_ms: latency - waiting.as_secs_f64() * 1e3,
            to_first_call_ms: mine.first().map(|c| ms(a, c.received)),
            calls: mine.iter().map(|c| c.call.clone()).collect(),
        });
    }
    Ok(Launched {
        init_ms: ms(t0, st.polls[0]),
        first_response_ms: ms(t0, st.responses[0].at),
        calls_during_init: calls.iter().filter(|c| c.received < st.polls[0]).count(),
        events,
        ru_maxrss_kib: ru_maxrss,
        vm_hwm_kib: st.vm_hwm_kib,
        responses: st.responses.into_iter().map(|r| r.body).collect(),
    })
}

/// Init alone: each binary started `runs` times in random order against a bare listening
/// socket standing in for the Runtime API; the time is taken when the first bytes of the
/// first poll arrive (checked to be `GET .../invocation/next`), then the process is killed.
/// No HTTP server, no event and no emulator traffic between the spawn and the poll.
/// Blocking: run it on a blocking thread.
pub fn measure_init(
    binaries: &[(String, std::path::PathBuf)],
    env: &[(String, String)],
    runs: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let mut env = env.to_vec();
    env.retain(|(k, _)| k != "AWS_LAMBDA_RUNTIME_API");
    env.push(("AWS_LAMBDA_RUNTIME_API".into(), format!("127.0.0.1:{port}")));
    let mut out = vec![Vec::with_capacity(runs); binaries.len()];
    let mut rng = crate::seed::Rng::new(0x1A17);
    for i in 0..runs {
        let mut order: Vec<usize> = (0..binaries.len()).collect();
        rng.shuffle(&mut order);
        for &b in &order {
            let (name, path) = &binaries[b];
            let mut cmd = command(path, &env);
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
            let t0 = Instant::now();
            let child = cmd
                .spawn()
                .with_context(|| format!("spawning {}", path.display()))?;
            let pid = child.id() as i32;
            let got = first_poll(&listener, timeout);
            kill(pid);
            wait4(pid, false);
            let (t1, head) = got.with_context(|| format!("{name}: waiting for its first poll"))?;
            if !head.starts_with(format!("GET {NEXT_PATH} ").as_bytes()) {
                bail!(
                    "{name}: the first request was not a poll: {:?}",
                    String::from_utf8_lossy(&head[..head.len().min(120)])
                );
            }
            out[b].push(ms(t0, t1));
        }
        if (i + 1).is_multiple_of(50) || i + 1 == runs {
            println!("    {}/{runs} rounds", i + 1);
        }
    }
    Ok(out)
}

/// Accepts one connection and reads the first line of its request; the time is that of
/// the first bytes.
fn first_poll(listener: &TcpListener, timeout: Duration) -> anyhow::Result<(Instant, Vec<u8>)> {
    let mut fds = libc::pollfd {
        fd: listener.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let ready = unsafe { libc::poll(&mut fds, 1, timeout.as_millis() as libc::c_int) };
    if ready != 1 {
        return Err(anyhow!(
            "no connection within {} s of the start",
            timeout.as_secs()
        ));
    }
    let (mut conn, _) = listener.accept()?;
    conn.set_read_timeout(Some(timeout))?;
    let mut head = vec![0; 4096];
    let n = conn.read(&mut head)?;
    let t1 = Instant::now();
    head.truncate(n);
    while !head.windows(2).any(|w| w == b"\r\n") && head.len() < 4096 {
        let mut more = [0; 4096];
        let n = conn.read(&mut more)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&more[..n]);
    }
    Ok((t1, head))
}
