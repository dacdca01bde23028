//! A local Lambda Runtime API (`/2018-06-01/runtime/invocation/next`, `.../response`,
//! `.../error`, `/init/error`) on 127.0.0.1 that hands one process its events and records
//! when every poll and response arrives.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{Notify, watch};

use crate::seed::Rng;

pub const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
pub const FUNCTION_NAME: &str = "kms-replica-guard";

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Rewrites a replica's policy before an event is handed out (the drifted scenario).
pub struct Redrift {
    pub client: aws_sdk_kms::Client,
    pub arn: String,
    pub policy: String,
}

impl Redrift {
    pub async fn apply(&self) -> anyhow::Result<()> {
        self.client
            .put_key_policy()
            .key_id(&self.arn)
            .policy_name("default")
            .policy(&self.policy)
            .bypass_policy_lockout_safety_check(false)
            .send()
            .await
            .map_err(aws_sdk_kms::Error::from)?;
        Ok(())
    }
}

/// One response (or error) the process posted.
pub struct Posted {
    pub at: Instant,
    pub body: Bytes,
}

/// What one process did, as seen by the Runtime API.
#[derive(Default)]
pub struct State {
    pub polls: Vec<Instant>,
    /// When each event was handed out.
    pub served: Vec<Instant>,
    pub responses: Vec<Posted>,
    pub failure: Option<String>,
    /// The process, for its `/proc` high-water mark at the idle poll.
    pub pid: Option<i32>,
    /// `VmHWM` (KiB) when the poll after the last response arrived.
    pub vm_hwm_kib: Option<u64>,
}

/// One process's conversation with the Runtime API.
pub struct Session {
    events: Vec<Bytes>,
    redrift: Option<Arc<Redrift>>,
    pub state: Mutex<State>,
    /// Notified when a poll arrives after the last response, or on a failure.
    pub idle: Notify,
    closed: watch::Sender<bool>,
    function_arn: String,
}

impl Session {
    pub fn new(events: Vec<Bytes>, redrift: Option<Arc<Redrift>>) -> Arc<Self> {
        Arc::new(Self {
            events,
            redrift,
            state: Mutex::default(),
            idle: Notify::new(),
            closed: watch::channel(false).0,
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{FUNCTION_NAME}",
                crate::env::REGION,
                crate::env::ACCOUNT
            ),
        })
    }

    /// Records the first failure and wakes the launcher.
    pub fn fail(&self, message: String) {
        let mut st = self.state.lock().unwrap();
        st.failure.get_or_insert(message);
        drop(st);
        self.idle.notify_one();
    }

    /// Ends the session: polls held open are answered with a closed connection.
    pub fn close(&self) {
        self.closed.send_replace(true);
    }
}

/// The running Runtime API; serves the session set with [`Api::set`].
pub struct Api {
    pub port: u16,
    current: Arc<Mutex<Option<Arc<Session>>>>,
}

impl Api {
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let current: Arc<Mutex<Option<Arc<Session>>>> = Arc::default();
        let c = current.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let _ = stream.set_nodelay(true);
                let c = c.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let session = c.lock().unwrap().clone();
                        handle(req, session)
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { port, current })
    }

    pub fn set(&self, session: Option<Arc<Session>>) {
        *self.current.lock().unwrap() = session;
    }
}

fn respond(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    session: Option<Arc<Session>>,
) -> Result<Response<Full<Bytes>>, BoxError> {
    let t = Instant::now();
    let Some(s) = session else {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"no session"}"#,
        ));
    };
    let path = req.uri().path().to_owned();
    if req.method() == Method::GET {
        if path != NEXT_PATH {
            return Ok(respond(
                StatusCode::NOT_FOUND,
                r#"{"errorMessage":"not found"}"#,
            ));
        }
        return next(&s, t).await;
    }
    let function_error = req
        .headers()
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await?.to_bytes();
    if path == INIT_ERROR_PATH {
        s.fail(format!(
            "init error: {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        ));
        return Ok(respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#));
    }
    let rest = path.strip_prefix(INVOCATION_PREFIX).unwrap_or("");
    let Some((_, kind)) = rest.split_once('/') else {
        return Ok(respond(
            StatusCode::NOT_FOUND,
            r#"{"errorMessage":"not found"}"#,
        ));
    };
    match kind {
        "response" => {
            s.state
                .lock()
                .unwrap()
                .responses
                .push(Posted { at: t, body });
        }
        "error" => s.fail(format!(
            "the function answered an error ({function_error}): {}",
            String::from_utf8_lossy(&body[..body.len().min(2000)])
        )),
        _ => {
            return Ok(respond(
                StatusCode::NOT_FOUND,
                r#"{"errorMessage":"not found"}"#,
            ));
        }
    }
    Ok(respond(StatusCode::ACCEPTED, r#"{"status":"OK"}"#))
}

/// `GET .../next`: the next event, or, after the last response, a poll held open until
/// the session ends (the process is killed meanwhile).
async fn next(s: &Arc<Session>, t: Instant) -> Result<Response<Full<Bytes>>, BoxError> {
    let (index, pending, answered, pid) = {
        let mut st = s.state.lock().unwrap();
        st.polls.push(t);
        let index = st.served.len();
        let answered = st.responses.len();
        (
            index,
            index < s.events.len() && answered == index,
            answered,
            st.pid,
        )
    };
    if !pending {
        if answered < s.events.len() {
            s.fail(format!(
                "poll #{} arrived before the response to event {index}",
                index + 1
            ));
        }
        let hwm = pid.and_then(super::launch::vm_hwm_kib);
        s.state.lock().unwrap().vm_hwm_kib = hwm;
        s.idle.notify_one();
        let mut closed = s.closed.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(120), closed.wait_for(|c| *c)).await;
        return Err("the session is over".into());
    }
    if index > 0
        && let Some(r) = &s.redrift
        && let Err(e) = r.apply().await
    {
        s.fail(format!("preparing event {} failed: {e:#}", index + 1));
        return Err("preparation failed".into());
    }
    let mut rng = Rng::from_entropy();
    let request_id = format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        rng.next() as u32,
        rng.next() as u16,
        rng.next() & 0xfff,
        (rng.next() & 0x3fff) | 0x8000,
        rng.next() & 0xffff_ffff_ffff
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?;
    let trace = format!(
        "Root=1-{:08x}-{:024x};Parent={:016x};Sampled=0",
        now.as_secs(),
        u128::from(rng.next()) << 32 | u128::from(rng.next() as u32),
        rng.next()
    );
    let deadline = now.as_millis() + 900_000;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .header("lambda-runtime-aws-request-id", request_id)
        .header("lambda-runtime-deadline-ms", deadline.to_string())
        .header("lambda-runtime-invoked-function-arn", &s.function_arn)
        .header("lambda-runtime-trace-id", trace)
        .body(Full::new(s.events[index].clone()))?;
    // Taken last: the response (and the function's first AWS call) may follow at once.
    s.state.lock().unwrap().served.push(Instant::now());
    Ok(response)
}
