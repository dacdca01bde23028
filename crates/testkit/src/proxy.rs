//! A fault-injecting HTTP proxy on 127.0.0.1 between the function's KMS client and the
//! emulator. Tests queue faults per operation (read from `X-Amz-Target`, or from the
//! `Action=` of a query-protocol request such as STS AssumeRole, whose faults are answered
//! in that protocol's XML); requests without a queued fault are forwarded unchanged.
//!
//! On request ([`FaultProxy::record_calls`]) it also keeps a timed record of every request it
//! forwards ([`CallRecord`]): the cold-start benchmark (`cargo xtask bench-coldstart`) splits
//! an event's latency into time waiting on the emulator and the function's own time with it.
//!
//! A routed proxy ([`FaultProxy::start_routed`]) sends a service's requests (told by the
//! SigV4 credential scope) to another emulator: Security Hub to moto's server, the rest to
//! LocalStack. It can keep the bodies of an operation's requests ([`FaultProxy::keep_bodies`])
//! and answer an operation itself ([`Fault::Respond`]), to show the exact request a service
//! the emulators do not serve (Config's PutEvaluations with a real token) would receive.
//!
//! With [`FaultProxy::strict_security_hub`], BatchImportFindings is held to AWS's rule that
//! moto does not check: the caller's account must be the `AwsAccountId` of every finding.
//! The caller's account is its 12-digit access key id (the emulators' convention) or, for
//! credentials an AssumeRole through this proxy returned, the account of the role assumed.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;

use crate::strict::{StrictKms, StrictState, Verdict};

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
    /// Answer 200 with this JSON body, without forwarding.
    Respond(String),
}

type Plan = Arc<Mutex<HashMap<String, VecDeque<Fault>>>>;
type Strict = Arc<Mutex<Option<StrictState>>>;
type Calls = Arc<Mutex<Option<Vec<CallRecord>>>>;

/// One request the proxy forwarded, timed on this process's monotonic clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallRecord {
    /// `kms:DescribeKey`, `cloudwatch:PutMetricData`, ... (from `X-Amz-Target`, or the
    /// operation of an rpc-v2-cbor path); else the method and path.
    pub call: String,
    /// When the request's head reached the proxy.
    pub received: Instant,
    /// When the emulator's whole answer had been read (and was handed back).
    pub answered: Instant,
}

/// Security Hub's account rule, when on: access key id → account, learnt from AssumeRole.
#[derive(Debug, Default)]
struct HubRule {
    keys: HashMap<String, String>,
    refused: usize,
    callers: Vec<String>,
}

type Bodies = Arc<Mutex<HashMap<String, Vec<Bytes>>>>;
type Hub = Arc<Mutex<Option<HubRule>>>;

/// The running proxy.
pub struct FaultProxy {
    pub endpoint: String,
    plan: Plan,
    forwarded: Arc<Mutex<HashMap<String, usize>>>,
    calls: Calls,
    strict: Strict,
    bodies: Bodies,
    hub: Hub,
}

impl FaultProxy {
    /// Starts a proxy in front of `upstream` (e.g. http://127.0.0.1:4566).
    pub async fn start(upstream: String) -> Self {
        Self::start_routed(upstream, Vec::new()).await
    }

    /// Starts a proxy in front of `upstream`, sending the requests of each service named in
    /// `routes` (its SigV4 signing name, `securityhub`) to that service's upstream.
    pub async fn start_routed(upstream: String, routes: Vec<(String, String)>) -> Self {
        let routes = Arc::new(routes);
        let (listener, endpoint) = bind().await;
        let plan: Plan = Arc::default();
        let forwarded: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let calls: Calls = Arc::default();
        let strict: Strict = Arc::default();
        let bodies: Bodies = Arc::default();
        let hub: Hub = Arc::default();
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let (p, f, c, st, bo, hb) = (
            plan.clone(),
            forwarded.clone(),
            calls.clone(),
            strict.clone(),
            bodies.clone(),
            hub.clone(),
        );
        serve(listener, move |req| {
            handle(
                req,
                Shared {
                    plan: p.clone(),
                    forwarded: f.clone(),
                    calls: c.clone(),
                    strict: st.clone(),
                    bodies: bo.clone(),
                    hub: hb.clone(),
                    routes: routes.clone(),
                },
                client.clone(),
                upstream.clone(),
            )
        });
        Self {
            endpoint,
            plan,
            forwarded,
            calls,
            strict,
            bodies,
            hub,
        }
    }

    /// Holds BatchImportFindings to AWS's rule: every finding's `AwsAccountId` is the
    /// caller's account, else 403 AccessDeniedException and nothing is imported.
    pub fn strict_security_hub(&self) {
        *self.hub.lock().unwrap() = Some(HubRule::default());
    }

    /// BatchImportFindings requests refused by that rule.
    pub fn security_hub_refused(&self) -> usize {
        self.hub.lock().unwrap().as_ref().map_or(0, |h| h.refused)
    }

    /// The caller's account of each BatchImportFindings the rule let through, in order.
    pub fn security_hub_callers(&self) -> Vec<String> {
        self.hub
            .lock()
            .unwrap()
            .as_ref()
            .map(|h| h.callers.clone())
            .unwrap_or_default()
    }

    /// Keeps the body of every request of `operation` from now on.
    pub fn keep_bodies(&self, operation: &str) {
        self.bodies
            .lock()
            .unwrap()
            .entry(operation.to_owned())
            .or_default();
    }

    /// The bodies kept of `operation`'s requests, as JSON, in order; a body that is not JSON
    /// (a query-protocol request such as AssumeRole's form) as a JSON string of its text.
    pub fn bodies(&self, operation: &str) -> Vec<Value> {
        self.bodies
            .lock()
            .unwrap()
            .get(operation)
            .map(|v| {
                v.iter()
                    .map(|b| {
                        serde_json::from_slice(b).unwrap_or_else(|_| {
                            Value::String(String::from_utf8_lossy(b).into_owned())
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes KMS's answers as strict as AWS's (see [`crate::strict`]) from now on.
    pub fn strict(&self, config: StrictKms) {
        *self.strict.lock().unwrap() = Some(StrictState::new(config));
    }

    /// PutKeyPolicy requests the strict layer refused with `message`.
    pub fn refused(&self, message: &str) -> usize {
        self.strict
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.refused.get(message).copied())
            .unwrap_or(0)
    }

    /// Starts (or restarts, empty) a timed record of every forwarded request; off until
    /// called.
    pub fn record_calls(&self) {
        *self.calls.lock().unwrap() = Some(Vec::new());
    }

    /// The requests recorded since [`FaultProxy::record_calls`] or the last take, in the
    /// order they were answered; recording goes on.
    pub fn take_calls(&self) -> Vec<CallRecord> {
        self.calls
            .lock()
            .unwrap()
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
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

/// A listener on a free port of 127.0.0.1 and its `http://` endpoint.
pub(crate) async fn bind() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

type Answer = Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>>;

/// Serves HTTP/1 on `listener` until the runtime ends, each request answered by `answer`
/// (the proxy's and the KMS simulator's one server).
pub(crate) fn serve<F, Fut>(listener: tokio::net::TcpListener, answer: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Answer> + Send + 'static,
{
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(answer))
                    .await;
            });
        }
    });
}

/// The `Action` of a query-protocol (form-encoded) request body, e.g. `AssumeRole`.
fn query_action(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .find_map(|pair| pair.strip_prefix("Action="))
        .map(str::to_owned)
}

/// A query-protocol error (STS, ...), as AWS answers one.
fn query_error(status: u16, code: &str) -> Response<Full<Bytes>> {
    let body = format!(
        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type><Code>{code}</Code><Message>injected by the fault proxy</Message></Error><RequestId>00000000-0000-0000-0000-000000000000</RequestId></ErrorResponse>"
    );
    Response::builder()
        .status(status)
        .header("content-type", "text/xml")
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn error(status: u16, code: &str) -> Response<Full<Bytes>> {
    error_with(status, code, "injected by the fault proxy")
}

fn error_with(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({"__type": code, "message": message}).to_string();
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-query-error", format!("{code};Sender"))
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

/// What every connection of the proxy shares.
struct Shared {
    plan: Plan,
    forwarded: Arc<Mutex<HashMap<String, usize>>>,
    calls: Calls,
    strict: Strict,
    bodies: Bodies,
    hub: Hub,
    routes: Arc<Vec<(String, String)>>,
}

/// The access key id and signing service of a SigV4 `Authorization` header
/// (`... Credential=AKID/DATE/REGION/SERVICE/aws4_request, ...`).
fn credential_scope(parts: &hyper::http::request::Parts) -> Option<(String, String)> {
    let auth = parts.headers.get("authorization")?.to_str().ok()?;
    let scope = auth.split("Credential=").nth(1)?.split(',').next()?;
    let fields: Vec<&str> = scope.split('/').collect();
    match fields[..] {
        [key, _, _, service, _] => Some((key.to_owned(), service.to_owned())),
        _ => None,
    }
}

/// A REST-JSON operation named by its path (Security Hub).
fn rest_operation(parts: &hyper::http::request::Parts) -> Option<String> {
    let op = match (parts.method.as_str(), parts.uri.path()) {
        ("POST", "/findings/import") => "BatchImportFindings",
        ("POST", "/findings") => "GetFindings",
        ("POST", "/accounts") => "EnableSecurityHub",
        _ => return None,
    };
    Some(op.to_owned())
}

/// The account of a query-protocol AssumeRole's `RoleArn` parameter.
fn assumed_account(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let arn = text.split('&').find_map(|p| p.strip_prefix("RoleArn="))?;
    let arn = arn.replace("%3A", ":").replace("%2F", "/");
    arn.split(':').nth(4).map(str::to_owned)
}

/// The `<AccessKeyId>` of an AssumeRole answer.
fn issued_key(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let start = text.find("<AccessKeyId>")? + "<AccessKeyId>".len();
    let end = start + text[start..].find("</AccessKeyId>")?;
    Some(text[start..end].to_owned())
}

async fn handle(
    req: Request<Incoming>,
    shared: Shared,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: String,
) -> Answer {
    let Shared {
        plan,
        forwarded,
        calls,
        strict,
        bodies,
        hub,
        routes,
    } = shared;
    let received = Instant::now();
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let target = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.rsplit('.').next())
        .map(str::to_owned);
    let query_action = query_action(&body);
    let query = target.is_none() && query_action.is_some();
    // rpc-v2-cbor (CloudWatch) names the operation in the path.
    let rpc_v2 = || {
        parts
            .uri
            .path()
            .split_once("/operation/")
            .map(|(_, op)| op.to_owned())
    };
    let operation = target
        .or(query_action)
        .or_else(rpc_v2)
        .or_else(|| rest_operation(&parts))
        .unwrap_or_default();
    let scope = credential_scope(&parts);
    if let Some(kept) = bodies.lock().unwrap().get_mut(&operation) {
        kept.push(body.clone());
    }
    let fault = plan
        .lock()
        .unwrap()
        .get_mut(&operation)
        .and_then(VecDeque::pop_front)
        .unwrap_or(Fault::Pass);
    let refuse = |status: u16, code: &str| {
        if query {
            query_error(status, code)
        } else {
            error(status, code)
        }
    };
    match fault {
        Fault::Throttle if query => return Ok(refuse(400, "Throttling")),
        Fault::Throttle => return Ok(refuse(400, "ThrottlingException")),
        Fault::ServerError => {
            return Ok(Response::builder()
                .status(StatusCode::INTERNAL_SERVER_ERROR)
                .body(Full::new(Bytes::new()))
                .unwrap());
        }
        Fault::NotFound => return Ok(refuse(400, "NotFoundException")),
        Fault::AccessDenied if query => return Ok(refuse(403, "AccessDenied")),
        Fault::AccessDenied => return Ok(refuse(400, "AccessDeniedException")),
        Fault::Drop => return Err("dropped by the fault proxy".into()),
        Fault::Respond(answer) => {
            return Ok(Response::builder()
                .status(StatusCode::OK)
                .header("content-type", "application/x-amz-json-1.1")
                .body(Full::new(Bytes::from(answer)))
                .unwrap());
        }
        Fault::Pass | Fault::Slow(_) | Fault::Creating | Fault::RewritePolicy(_) => {}
    }
    if operation == "BatchImportFindings"
        && let Some(rule) = hub.lock().unwrap().as_mut()
    {
        let key = scope.as_ref().map(|(k, _)| k.clone()).unwrap_or_default();
        let caller = if key.len() == 12 && key.bytes().all(|b| b.is_ascii_digit()) {
            Some(key.clone())
        } else {
            rule.keys.get(&key).cloned()
        };
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let named: Vec<&str> = request["Findings"]
            .as_array()
            .map(|f| {
                f.iter()
                    .filter_map(|f| f["AwsAccountId"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        if let Some(other) = named.iter().find(|a| Some(**a) != caller.as_deref()) {
            rule.refused += 1;
            return Ok(error_with(
                403,
                "AccessDeniedException",
                &format!(
                    "the caller's account ({}) is not the finding's AwsAccountId ({other}): BatchImportFindings imports only into the caller's own account",
                    caller.as_deref().unwrap_or("unknown")
                ),
            ));
        }
        rule.callers.push(caller.unwrap_or_default());
    }
    let call = calls.lock().unwrap().is_some().then(|| match query {
        true => operation.clone(),
        false => call_name(&parts),
    });
    let strict_on = strict.lock().unwrap().is_some();
    let request: Value = if strict_on {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        Value::Null
    };
    if strict_on && operation == "PutKeyPolicy" {
        let verdict = strict
            .lock()
            .unwrap()
            .as_mut()
            .map_or(Verdict::Forward, |s| s.put(&request));
        if let Verdict::Refuse(message) = verdict {
            return Ok(error_with(400, "MalformedPolicyDocumentException", message));
        }
    }
    let upstream = scope
        .as_ref()
        .and_then(|(_, service)| routes.iter().find(|(s, _)| s == service))
        .map_or(upstream.as_str(), |(_, u)| u.as_str());
    let uri = format!(
        "{upstream}{}",
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let assumed = (operation == "AssumeRole")
        .then(|| assumed_account(&body))
        .flatten();
    let mut upstream_req = Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        upstream_req = upstream_req.header(name, value);
    }
    let response = client.request(upstream_req.body(Full::new(body))?).await?;
    *forwarded
        .lock()
        .unwrap()
        .entry(operation.clone())
        .or_default() += 1;
    let (parts, body) = response.into_parts();
    let mut body = body.collect().await?.to_bytes();
    if let (Some(account), Some(key)) = (assumed, issued_key(&body))
        && let Some(rule) = hub.lock().unwrap().as_mut()
    {
        rule.keys.insert(key, account);
    }
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
    if strict_on && operation == "GetKeyPolicy" && parts.status.is_success() {
        let mut v: Value = serde_json::from_slice(&body)?;
        if let Some(s) = strict.lock().unwrap().as_mut() {
            s.get(&request, &mut v);
        }
        body = Bytes::from(serde_json::to_vec(&v)?);
    }
    if let (Some(call), Some(record)) = (call, calls.lock().unwrap().as_mut()) {
        record.push(CallRecord {
            call,
            received,
            answered: Instant::now(),
        });
    }
    let mut out = Response::builder().status(parts.status);
    for (name, value) in &parts.headers {
        if name != "content-length" {
            out = out.header(name, value);
        }
    }
    Ok(out.body(Full::new(body))?)
}

/// `kms:DescribeKey` (awsJson: `X-Amz-Target: TrentService.DescribeKey`),
/// `cloudwatch:PutMetricData` (rpc-v2-cbor: `POST /service/GraniteServiceVersion20100801/operation/PutMetricData`).
fn call_name(parts: &hyper::http::request::Parts) -> String {
    if let Some(target) = parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        let op = target.rsplit('.').next().unwrap_or(target);
        return if target.starts_with("TrentService.") {
            format!("kms:{op}")
        } else {
            op.to_owned()
        };
    }
    let path = parts.uri.path();
    match path.split_once("/operation/") {
        Some((service, op)) if service.contains("Granite") => format!("cloudwatch:{op}"),
        Some((_, op)) => op.to_owned(),
        None => format!("{} {path}", parts.method),
    }
}
