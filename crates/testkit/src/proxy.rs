//! A fault-injecting HTTP proxy on 127.0.0.1 between the function's KMS client and the
//! emulator. Tests queue faults per KMS operation (read from `X-Amz-Target`); requests
//! without a queued fault are forwarded unchanged.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

/// One injected behaviour.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Forward unchanged (to let earlier calls of the same operation through).
    Pass,
    /// 400 ThrottlingException.
    Throttle,
    /// 500 with an empty body.
    ServerError,
    /// Forward, but answer only after this long (past the client's attempt timeout).
    Slow(Duration),
    /// Close the connection without an answer.
    Drop,
    /// 400 NotFoundException (a key not visible yet).
    NotFound,
    /// Forward DescribeKey and report the key as `Creating`.
    Creating,
    /// 400 AccessDeniedException.
    AccessDenied,
    /// Forward GetKeyPolicy and replace the returned policy (KMS "normalised" it).
    RewritePolicy(String),
}

type Plan = Arc<Mutex<HashMap<String, VecDeque<Fault>>>>;

/// The running proxy.
pub struct FaultProxy {
    pub endpoint: String,
    plan: Plan,
    forwarded: Arc<Mutex<HashMap<String, usize>>>,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (e.g. http://127.0.0.1:4566).
    pub async fn start(upstream: String) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let plan: Plan = Arc::default();
        let forwarded: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let (p, f) = (plan.clone(), forwarded.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (plan, forwarded, client, upstream) =
                    (p.clone(), f.clone(), client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        handle(
                            req,
                            plan.clone(),
                            forwarded.clone(),
                            client.clone(),
                            upstream.clone(),
                        )
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            endpoint,
            plan,
            forwarded,
        }
    }

    /// Queues `fault` `times` times for `operation` (`GetKeyPolicy`, ...).
    pub fn inject(&self, operation: &str, fault: Fault, times: usize) {
        let mut plan = self.plan.lock().unwrap();
        let queue = plan.entry(operation.to_owned()).or_default();
        queue.extend(std::iter::repeat_n(fault, times));
    }

    /// Injected faults not yet served.
    pub fn pending(&self) -> usize {
        self.plan.lock().unwrap().values().map(VecDeque::len).sum()
    }

    /// Requests that reached the emulator, by operation.
    pub fn forwarded_all(&self) -> std::collections::BTreeMap<String, usize> {
        self.forwarded
            .lock()
            .unwrap()
            .iter()
            .map(|(op, n)| (op.clone(), *n))
            .collect()
    }

    /// How many requests of an operation reached the emulator.
    pub fn forwarded(&self, operation: &str) -> usize {
        self.forwarded
            .lock()
            .unwrap()
            .get(operation)
            .copied()
            .unwrap_or(0)
    }
}

fn error(status: u16, code: &str) -> Response<Full<Bytes>> {
    let body = format!(r#"{{"__type":"{code}","message":"injected by the fault proxy"}}"#);
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-query-error", format!("{code};Sender"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

async fn handle(
    req: Request<Incoming>,
    plan: Plan,
    forwarded: Arc<Mutex<HashMap<String, usize>>>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let operation = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .unwrap_or("")
        .to_owned();
    let fault = plan
        .lock()
        .unwrap()
        .get_mut(&operation)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Fault::Pass);
    match fault {
        Fault::Throttle => return Ok(error(400, "ThrottlingException")),
        Fault::ServerError => {
            return Ok(Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Full::new(Bytes::new()))
                .unwrap());
        }
        Fault::NotFound => return Ok(error(400, "NotFoundException")),
        Fault::AccessDenied => return Ok(error(400, "AccessDeniedException")),
        Fault::Drop => return Err("dropped by the fault proxy".into()),
        Fault::Pass | Fault::Slow(_) | Fault::Creating | Fault::RewritePolicy(_) => {}
    }
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let uri = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let mut upstream_req = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        upstream_req = upstream_req.header(name, value);
    }
    let response = client.request(upstream_req.body(Full::new(body))?).await?;
    *forwarded.lock().unwrap().entry(operation).or_default() += 1;
    let (parts, body) = response.into_parts();
    let mut body = body.collect().await?.to_bytes();
    match fault {
        Fault::Slow(d) => tokio::time::sleep(d).await,
        Fault::Creating => {
            let mut v: Value = serde_json::from_slice(&body)?;
            v["KeyMetadata"]["KeyState"] = Value::String("Creating".into());
            body = Bytes::from(serde_json::to_vec(&v)?);
        }
        Fault::RewritePolicy(policy) => {
            let mut v: Value = serde_json::from_slice(&body)?;
            v["Policy"] = Value::String(policy);
            body = Bytes::from(serde_json::to_vec(&v)?);
        }
        _ => {}
    }
    let mut out = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if name != "content-length" {
            out = out.header(name, value);
        }
    }
    Ok(out.body(Full::new(body))?)
}
