//! The REST API of a running instance (issue 11, points 3-5 and 7), served by
//! `ferrovisor run` on `<runtime>/http.sock` and, with `--http ADDR`, on a
//! loopback TCP port.
//!
//! Each request is one exchange with the instance's relay on `api.sock`
//! through [`Client`] (so the REST API and the CLI see the same hypervisor
//! answers); the event stream is one subscription shared by every
//! `GET /v1/events` client.
//!
//! * Auth: `Authorization: Bearer TOKEN`, the instance's `token` (operator:
//!   everything) or `token.ro` (read-only: GETs; actions get 403). Anything
//!   else gets 401 and is logged (stderr and the audit log).
//! * Audit: every request that is not a GET (and every refused token) is a
//!   JSON line in `<runtime>/audit.log`: time, token id, peer, method, path,
//!   action, status, result; `GET /v1/audit` returns them.
//! * Errors: `{"error": {"code", "message", "request"}}` with 400 (bad
//!   request, bad JSON, unknown field, wrong type), 401, 403, 404 (unknown
//!   VM or route), 405, 409 (wrong state), 413 (body over
//!   [`MAX_BODY`]), 503 (hypervisor gone or not connected), 504 (no answer).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::connect_info::{ConnectInfo, Connected};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use utoipa::{OpenApi, ToSchema};

use super::client::{Client, CtlError};
use super::metrics;
use super::records::{self, Record};
use super::runtime::{self, InstanceDir};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY: usize = 16 * 1024;
/// How long a request waits for the hypervisor's answer (504 beyond).
pub const HV_TIMEOUT: Duration = Duration::from_secs(20);

/// Who presented which token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Operator,
    ReadOnly,
}

impl Role {
    fn id(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::ReadOnly => "read-only",
        }
    }
}

/// The peer of a connection, for the audit log.
#[derive(Clone, Debug)]
pub struct Peer(String);

impl Connected<axum::serve::IncomingStream<'_, tokio::net::UnixListener>> for Peer {
    fn connect_info(incoming: axum::serve::IncomingStream<'_, tokio::net::UnixListener>) -> Peer {
        let stream = axum::serve::IncomingStream::io(&incoming);
        Peer(match stream.peer_cred() {
            Ok(c) => format!(
                "unix:uid={},pid={}",
                c.uid(),
                c.pid().map_or_else(|| "?".into(), |p| p.to_string())
            ),
            Err(_) => "unix".into(),
        })
    }
}

impl Connected<axum::serve::IncomingStream<'_, tokio::net::TcpListener>> for Peer {
    fn connect_info(s: axum::serve::IncomingStream<'_, tokio::net::TcpListener>) -> Peer {
        Peer(format!("tcp:{}", s.remote_addr()))
    }
}

#[derive(Debug)]
struct AppState {
    dir: InstanceDir,
    token: String,
    token_ro: String,
    audit: Mutex<Option<File>>,
    events: broadcast::Sender<String>,
}

type St = Arc<AppState>;

/// An error reply.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: String,
    message: String,
    request: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &str, request: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code: code.into(),
            message: message.into(),
            request: request.into(),
        }
    }

    fn from_ctl(request: &str, e: CtlError) -> Self {
        let (status, code) = match &e {
            CtlError::Refused(r) => (
                match r.code.as_str() {
                    "unknown-vm" => StatusCode::NOT_FOUND,
                    "wrong-state" | "no-resources" => StatusCode::CONFLICT,
                    "parse" | "malformed" | "too-long" => StatusCode::BAD_REQUEST,
                    "unavailable" | "gone" => StatusCode::SERVICE_UNAVAILABLE,
                    _ => StatusCode::INTERNAL_SERVER_ERROR,
                },
                r.code.clone(),
            ),
            CtlError::Timeout(..) => (StatusCode::GATEWAY_TIMEOUT, "timeout".into()),
            _ => (StatusCode::SERVICE_UNAVAILABLE, "gone".into()),
        };
        ApiError::new(status, &code, request, e.to_string())
    }
}

/// The error body.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ErrorBody {
    /// `code` (`unknown-vm`, `wrong-state`, `bad-request`, `unauthorized`,
    /// ...), `message` and `request` (`METHOD PATH`).
    #[schema(value_type = Object)]
    error: Value,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body =
            json!({"error": {"code": self.code, "message": self.message, "request": self.request}});
        (self.status, Json(body)).into_response()
    }
}

type ApiResult = Result<Json<Value>, ApiError>;

/// Runs `line` on the hypervisor through the relay (blocking, off the
/// async workers).
async fn call(st: &St, request: &str, line: String) -> Result<Vec<Record>, ApiError> {
    let dir = st.dir.clone();
    let r = tokio::task::spawn_blocking(move || {
        let mut c = Client::connect_to(dir)?;
        c.set_timeout(HV_TIMEOUT);
        c.request(&line)
    })
    .await;
    match r {
        Ok(r) => r.map_err(|e| ApiError::from_ctl(request, e)),
        // The runtime is shutting down: `run` is ending.
        Err(e) if e.is_cancelled() => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "gone",
            request,
            "the instance is ending",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            request,
            e.to_string(),
        )),
    }
}

fn to_value(recs: &[Record]) -> Value {
    serde_json::from_str(&records::to_json(recs).compact()).unwrap_or(Value::Null)
}

fn vm_name(request: &str, name: &str) -> Result<(), ApiError> {
    if runtime::valid_name(name) {
        return Ok(());
    }
    Err(ApiError::new(
        StatusCode::BAD_REQUEST,
        "bad-request",
        request,
        format!("path parameter `name`: `{name}` is not a VM name (1 to 64 letters, digits, `.`, `_` or `-`)"),
    ))
}

/// The VMs and their states.
#[utoipa::path(get, path = "/v1/vms", responses(
    (status = 200, description = "`{\"vms\": [{index, name, state, vcpus, memory, resident, ...}]}`", body = Object),
    (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
async fn list_vms(State(st): State<St>) -> ApiResult {
    let recs = call(&st, "GET /v1/vms", "vm list".into()).await?;
    let vms: Vec<Value> = recs
        .iter()
        .map(|r| to_value(std::slice::from_ref(r))["vms"][0].clone())
        .collect();
    Ok(Json(json!({ "vms": vms })))
}

/// One VM with its vCPUs and counters.
#[utoipa::path(get, path = "/v1/vms/{name}", params(("name" = String, Path, description = "VM name")),
    responses((status = 200, description = "`{\"host\", \"vms\": [vm], \"vcpus\": [...]}`", body = Object),
    (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
async fn vm_info(State(st): State<St>, Path(name): Path<String>) -> ApiResult {
    let req = format!("GET /v1/vms/{name}");
    vm_name(&req, &name)?;
    let recs = call(&st, &req, format!("vm info {name}")).await?;
    Ok(Json(to_value(&recs)))
}

/// A lifecycle action.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Pause a running VM.
    Pause,
    /// Resume a paused VM.
    Resume,
    /// Stop a VM (its vCPUs end; `start` boots it again).
    Stop,
    /// Reboot a VM.
    Reboot,
    /// Destroy a VM (frees its memory).
    Destroy,
    /// Start a stopped or destroyed VM.
    Start,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Pause => "pause",
            Action::Resume => "resume",
            Action::Stop => "stop",
            Action::Reboot => "reboot",
            Action::Destroy => "destroy",
            Action::Start => "start",
        }
    }
}

/// The body of `POST /v1/vms/{name}/actions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ActionRequest {
    /// What to do.
    pub action: Action,
}

/// Runs a lifecycle action on a VM (operator token only).
#[utoipa::path(post, path = "/v1/vms/{name}/actions", params(("name" = String, Path, description = "VM name")),
    request_body = ActionRequest,
    responses((status = 200, description = "`{\"ok\": true, \"vm\", \"action\"}`", body = Object),
    (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
    (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody),
    (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
async fn vm_action(
    State(st): State<St>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let req = format!("POST /v1/vms/{name}/actions");
    let body = body.map_err(|e| {
        let (status, code) = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            (StatusCode::PAYLOAD_TOO_LARGE, "too-large")
        } else {
            (StatusCode::BAD_REQUEST, "bad-request")
        };
        ApiError::new(
            status,
            code,
            &req,
            format!("body: {e} (at most {MAX_BODY} bytes)"),
        )
    })?;
    let a: ActionRequest = serde_json::from_slice(&body).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "incomplete JSON",
            serde_json::error::Category::Data => "wrong field or type",
            _ => "malformed JSON",
        };
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad-request",
            &req,
            format!("body: {what}: {e} (expected {{\"action\": \"pause|resume|stop|reboot|destroy|start\"}})"),
        )
    })?;
    vm_name(&req, &name)?;
    call(&st, &req, format!("vm {} {name}", a.action.word())).await?;
    Ok(Json(
        json!({"ok": true, "vm": name, "action": a.action.word()}),
    ))
}

/// Statistics of the machine: host, every VM with its vCPUs, the harts.
#[utoipa::path(get, path = "/v1/stats", responses(
    (status = 200, description = "`{\"host\", \"vms\", \"vcpus\", \"harts\"}`", body = Object),
    (status = 401, body = ErrorBody), (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
async fn stats(State(st): State<St>) -> ApiResult {
    let recs = call(&st, "GET /v1/stats", "stats".into()).await?;
    Ok(Json(to_value(&recs)))
}

/// Prometheus metrics (text format 0.0.4); `ferrovisor_up 0` when the
/// hypervisor does not answer.
#[utoipa::path(get, path = "/metrics", responses(
    (status = 200, description = "Prometheus text exposition", content_type = "text/plain", body = String),
    (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn prom(State(st): State<St>) -> Response {
    let (recs, up) = match call(&st, "GET /metrics", "stats".into()).await {
        Ok(r) => (r, true),
        Err(_) => (Vec::new(), false),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        metrics::exposition(&recs, up),
    )
        .into_response()
}

/// The audit log: every mutating or refused request, oldest first.
#[utoipa::path(get, path = "/v1/audit", responses(
    (status = 200, description = "`{\"entries\": [{time, token, peer, method, path, action, status, result}]}`", body = Object),
    (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn audit(State(st): State<St>) -> ApiResult {
    let text = std::fs::read_to_string(st.dir.dir.join("audit.log")).unwrap_or_default();
    let entries: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    Ok(Json(json!({ "entries": entries })))
}

/// VM state changes as server-sent events (`event: state`, data
/// `{"event":"state","vm","state"[,"reason"]}`), until the instance ends.
#[utoipa::path(get, path = "/v1/events", responses(
    (status = 200, description = "text/event-stream", content_type = "text/event-stream", body = String),
    (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
async fn events(State(st): State<St>) -> Response {
    let rx = st.events.subscribe();
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(line) => {
                    let ev = event_json(&line);
                    let name = ev["event"].as_str().unwrap_or("event").to_string();
                    let e = Event::default().event(name).data(ev.to_string());
                    return Some((Ok::<_, std::convert::Infallible>(e), rx));
                }
                // A slow client missed events: it gets the later ones.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn event_json(line: &str) -> Value {
    match records::parse_line(line) {
        Some(r) => {
            let mut v = to_value(std::slice::from_ref(&r))
                .get(format!("{}s", r.kind))
                .and_then(|a| a.get(0))
                .cloned()
                .unwrap_or(json!({}));
            if let Some(o) = v.as_object_mut() {
                o.insert("event".into(), json!(r.kind));
            }
            v
        }
        None => json!({"event": "unknown", "text": line}),
    }
}

/// This document.
#[utoipa::path(get, path = "/v1/openapi.json", responses((status = 200, description = "OpenAPI 3 document", body = Object)),
    security(("bearer" = [])))]
async fn openapi_doc() -> Json<Value> {
    Json(serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
}

struct Bearer;

impl utoipa::Modify for Bearer {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = api.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The OpenAPI document, generated from the handlers above.
#[derive(OpenApi)]
#[openapi(
    info(title = "Ferrovisor instance API", description = "A running `ferrovisor run` instance: its VMs, actions, statistics, metrics, events and audit log."),
    paths(list_vms, vm_info, vm_action, stats, prom, audit, events, openapi_doc),
    components(schemas(ErrorBody, ActionRequest, Action)),
    modifiers(&Bearer)
)]
#[derive(Debug)]
pub struct ApiDoc;

/// The routes the server has: (method, path) in the router's syntax.
pub fn routes() -> Vec<(Method, &'static str)> {
    table().into_iter().map(|(m, p, _)| (m, p)).collect()
}

fn table() -> Vec<(Method, &'static str, MethodRouter<St>)> {
    vec![
        (Method::GET, "/v1/vms", get(list_vms)),
        (Method::GET, "/v1/vms/{name}", get(vm_info)),
        (Method::POST, "/v1/vms/{name}/actions", post(vm_action)),
        (Method::GET, "/v1/stats", get(stats)),
        (Method::GET, "/metrics", get(prom)),
        (Method::GET, "/v1/audit", get(audit)),
        (Method::GET, "/v1/events", get(events)),
        (Method::GET, "/v1/openapi.json", get(openapi_doc)),
    ]
}

fn router(st: St) -> Router {
    let mut r = Router::new();
    for (_, path, h) in table() {
        r = r.route(path, h);
    }
    r.fallback(|m: Method, u: axum::http::Uri| async move {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no-route",
            &format!("{m} {u}"),
            "no such resource (GET /v1/openapi.json lists them)",
        )
    })
    .method_not_allowed_fallback(|m: Method, u: axum::http::Uri| async move {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method-not-allowed",
            &format!("{m} {u}"),
            "method not allowed on this resource",
        )
    })
    .layer(middleware::from_fn_with_state(st.clone(), auth))
    .layer(DefaultBodyLimit::max(MAX_BODY))
    .with_state(st)
}

/// Checks the token; audits every request that is not a GET and every
/// refused one.
async fn auth(State(st): State<St>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map_or_else(|| "?".into(), |c| c.0 .0.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let what = format!("{method} {path}");
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let role = match presented {
        Some(t) if same_secret(t, &st.token) => Some(Role::Operator),
        Some(t) if same_secret(t, &st.token_ro) => Some(Role::ReadOnly),
        _ => None,
    };
    let vm = path
        .strip_prefix("/v1/vms/")
        .and_then(|r| r.strip_suffix("/actions"))
        .map(str::to_string);
    let Some(role) = role else {
        let why = if presented.is_some() {
            "wrong token"
        } else {
            "no bearer token"
        };
        eprintln!("ferrovisor: http: {what} from {peer}: 401 ({why})");
        write_audit(&st, "none", &peer, &what, vm.as_deref(), 401, why);
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            &what,
            format!("{why}: send `Authorization: Bearer TOKEN` with the instance's token"),
        )
        .into_response();
    };
    if method != Method::GET && role == Role::ReadOnly {
        write_audit(
            &st,
            role.id(),
            &peer,
            &what,
            vm.as_deref(),
            403,
            "read-only token",
        );
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            &what,
            "the read-only token allows GET requests only",
        )
        .into_response();
    }
    if method == Method::GET {
        return next.run(req).await;
    }
    // A mutating request runs to its end and is audited even when its
    // client goes away meanwhile (which drops this future).
    let task = tokio::spawn(async move {
        let resp = next.run(req).await;
        let status = resp.status().as_u16();
        if resp.status().is_success() {
            write_audit(&st, role.id(), &peer, &what, vm.as_deref(), status, "ok");
            return resp;
        }
        // The error's message, for the log.
        let (parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024)
            .await
            .unwrap_or_default();
        let msg = serde_json::from_slice::<Value>(&bytes)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or_else(|| "error".into());
        write_audit(&st, role.id(), &peer, &what, vm.as_deref(), status, &msg);
        Response::from_parts(parts, axum::body::Body::from(bytes))
    });
    match task.await {
        Ok(resp) => resp,
        Err(e) if e.is_cancelled() => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "gone",
            "the request",
            "the instance is ending",
        )
        .into_response(),
        Err(e) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request",
            e.to_string(),
        )
        .into_response(),
    }
}

/// Compares a presented token with a secret in time that does not depend
/// on where they first differ.
fn same_secret(presented: &str, secret: &str) -> bool {
    presented.len() == secret.len()
        && presented
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn write_audit(
    st: &AppState,
    token: &str,
    peer: &str,
    what: &str,
    vm: Option<&str>,
    status: u16,
    result: &str,
) {
    let line = json!({
        "time": runtime::now_secs(),
        "token": token,
        "peer": peer,
        "request": what,
        "vm": vm,
        "status": status,
        "result": result,
    });
    if let Ok(mut f) = st.audit.lock() {
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// The event relay: one subscription to the instance's events, fanned out
/// to the SSE clients; reconnects until `stop`.
fn event_pump(dir: InstanceDir, tx: broadcast::Sender<String>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Acquire) {
        let Ok(mut c) = Client::connect_to(dir.clone()) else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        if c.subscribe("events").is_err() {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        loop {
            match c.next_frame(Some(Duration::from_millis(500))) {
                Ok(Some(f)) if f.kind == fv_ctrl::Kind::Event => {
                    let _ = tx.send(String::from_utf8_lossy(&f.payload).into_owned());
                }
                Ok(Some(_)) => {}
                Err(CtlError::Timeout(..)) if !stop.load(Ordering::Acquire) => {}
                _ => break,
            }
        }
    }
}

/// A running REST server; [`Rest::shutdown`] ends it.
#[derive(Debug)]
pub struct Rest {
    rt: Option<tokio::runtime::Runtime>,
    stop: Arc<AtomicBool>,
    /// The loopback TCP address actually bound (`--http`), if any.
    pub tcp: Option<SocketAddr>,
}

/// Why the REST server could not start.
pub fn check_http_addr(addr: &str) -> Result<SocketAddr, String> {
    let a: SocketAddr = addr
        .parse()
        .map_err(|e| format!("--http `{addr}`: {e} (expected IP:PORT, e.g. 127.0.0.1:8080)"))?;
    if !a.ip().is_loopback() {
        return Err(format!(
            "--http `{addr}`: {} is not a loopback address; the REST API listens on 127.0.0.1 or ::1 only",
            a.ip()
        ));
    }
    Ok(a)
}

impl Rest {
    /// Writes `token.ro` (0600), opens `audit.log`, binds `http.sock` (and
    /// `tcp`, a loopback address) and serves them on a small tokio runtime.
    pub fn start(dir: InstanceDir, token: String, tcp: Option<SocketAddr>) -> io::Result<Rest> {
        let token_ro = runtime::random_token()?;
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(dir.token_ro_file())?;
        writeln!(f, "{token_ro}")?;
        let audit = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.audit_log())?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(64)
            .thread_name("fv-http")
            .enable_all()
            .build()?;
        let (tx, _) = broadcast::channel(256);
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::new(AppState {
            dir: dir.clone(),
            token,
            token_ro,
            audit: Mutex::new(Some(audit)),
            events: tx.clone(),
        });
        let app = router(st);
        let _ = std::fs::remove_file(dir.http_socket());
        let unix = {
            let _g = rt.enter();
            tokio::net::UnixListener::bind(dir.http_socket())?
        };
        let app2 = app.clone();
        rt.spawn(async move {
            let _ = axum::serve(unix, app2.into_make_service_with_connect_info::<Peer>()).await;
        });
        let mut bound = None;
        if let Some(addr) = tcp {
            let l = rt.block_on(tokio::net::TcpListener::bind(addr))?;
            let a = l.local_addr()?;
            // Clients (and tests) find the port here when it was 0.
            std::fs::write(dir.http_addr_file(), format!("{a}\n"))?;
            bound = Some(a);
            rt.spawn(async move {
                let _ = axum::serve(l, app.into_make_service_with_connect_info::<Peer>()).await;
            });
        }
        let s = stop.clone();
        std::thread::spawn(move || event_pump(dir, tx, s));
        Ok(Rest {
            rt: Some(rt),
            stop,
            tcp: bound,
        })
    }

    /// Stops serving.
    pub fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_openapi_document_lists_every_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let mut documented: Vec<String> = Vec::new();
        for (path, ops) in doc["paths"].as_object().unwrap() {
            for m in ops.as_object().unwrap().keys() {
                documented.push(format!("{} {path}", m.to_uppercase()));
            }
        }
        let mut routed: Vec<String> = routes().iter().map(|(m, p)| format!("{m} {p}")).collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed);
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abd", "abc"));
        assert!(!same_secret("ab", "abc"));
        assert!(!same_secret("", "abc"));
    }

    #[test]
    fn only_loopback_addresses() {
        assert!(check_http_addr("127.0.0.1:8080").is_ok());
        assert!(check_http_addr("[::1]:0").is_ok());
        let e = check_http_addr("0.0.0.0:8080").unwrap_err();
        assert!(e.contains("not a loopback address"), "{e}");
        assert!(check_http_addr("localhost").is_err());
    }

    #[test]
    fn events_become_json() {
        let v = event_json("state vm=a state=stopped reason=operator");
        assert_eq!(
            v,
            json!({"event": "state", "vm": "a", "state": "stopped", "reason": "operator"})
        );
    }
}
