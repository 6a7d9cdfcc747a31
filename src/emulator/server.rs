//! The HTTP server: the shared state, the gate every API request passes (authentication,
//! faults, quota, statistics), the router, and the connection loop.
//!
//! Connections are served with hyper directly (not `axum::serve`) so that fault injection can
//! close a connection without any response: a handler marks its response with
//! [`DropConnection`], and the connection's service turns that into an error, which makes
//! hyper close the socket.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::clock::{Clock, Moment};
use super::faults::{Fault, Faults};
use super::operation::{Api, Operation};
use super::quota::Quotas;
use super::state::State;
use super::stats::{Recorder, Stats};
use super::wire::{self, ApiError};
use super::{connect, customer_profiles, genesys, sts};

/// The state every handler shares.
pub type App = Arc<Shared>;

/// Everything behind the routes; each part has its own lock, held only briefly.
#[derive(Debug)]
pub struct Shared {
    state: Mutex<State>,
    quotas: Mutex<Quotas>,
    faults: Mutex<Faults>,
    stats: Mutex<Recorder>,
    ids: Mutex<StdRng>,
    started: Instant,
    clock: Clock,
    policy: Policy,
}

/// How the gate answers before a handler runs: authentication, permissions, `Retry-After`.
#[derive(Debug, Default)]
pub struct Policy {
    /// The expected Genesys `Authorization` header; `None` turns authentication off.
    pub genesys_auth: Option<String>,
    /// Sends `Retry-After` / `x-amz-retry-after` with every 429.
    pub retry_after: bool,
    /// Operations answered with 403 `AccessDeniedException`.
    pub denied: BTreeSet<Operation>,
}

/// Marks a response whose connection must be closed without sending it.
#[derive(Debug, Clone, Copy)]
pub struct DropConnection;

/// The error a connection's service returns to make hyper close it.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct Dropped;

/// Why a request did not reach its handler.
enum Refusal {
    Drop,
    Answer(ApiError),
}

/// Locks a mutex; a panic in another handler does not make the data unusable here.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Builds the shared part of a server.
    pub fn new(
        state: State,
        quotas: Quotas,
        faults: Faults,
        policy: Policy,
        started: Instant,
        clock: Clock,
    ) -> Shared {
        let id_seed = faults_seed_for_ids(&faults);
        Shared {
            state: Mutex::new(state),
            quotas: Mutex::new(quotas),
            faults: Mutex::new(faults),
            stats: Mutex::new(Recorder::default()),
            ids: Mutex::new(StdRng::seed_from_u64(id_seed)),
            started,
            clock,
            policy,
        }
    }

    /// Runs `f` on the stored data.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut lock(&self.state))
    }

    /// The stored data as JSON, in the seed's shape (expired profiles removed first).
    pub fn state_json(&self) -> serde_json::Value {
        let at = self.clock.moment();
        let mut state = lock(&self.state);
        state.remove_expired(at);
        state.to_json()
    }

    /// The emulator's clock now, with its start.
    pub fn moment(&self) -> Moment {
        self.clock.moment()
    }

    /// The emulator's clock now, in milliseconds since the epoch.
    pub fn now_millis(&self) -> i64 {
        self.clock.now_millis()
    }

    /// The clock's offset from the system clock, in days.
    pub fn clock_offset_days(&self) -> i64 {
        self.clock.offset_days()
    }

    /// Moves the clock to `offset_days` from the system clock, then removes the profiles
    /// that expired by then.
    pub fn set_clock_offset_days(&self, offset_days: i64) -> Result<(), String> {
        let mut state = lock(&self.state);
        self.clock.set_offset_days(offset_days)?;
        state.remove_expired(self.clock.moment());
        Ok(())
    }

    /// A snapshot of the statistics.
    pub fn stats(&self) -> Stats {
        lock(&self.stats).snapshot()
    }

    /// Forgets the statistics gathered so far.
    pub fn reset_stats(&self) {
        lock(&self.stats).clear();
    }

    /// A new 32-hex id, from a generator seeded like the faults (so runs repeat).
    pub fn new_hex_id(&self) -> String {
        let value: u128 = lock(&self.ids).random();
        format!("{value:032x}")
    }

    /// Whether fault injection answers `id` with an error entry in BatchGetProfile.
    pub fn batch_error(&self, id: &str) -> bool {
        lock(&self.faults).batch_error(id)
    }

    /// Serves one API request: authentication, faults, quota, then `handler`; records the
    /// outcome in the statistics.
    pub async fn serve<F>(&self, op: Operation, headers: &HeaderMap, handler: F) -> Response
    where
        F: FnOnce(&Shared) -> Result<Response, ApiError>,
    {
        let api = op.api();
        let response = match self.admit(op, headers).await {
            Ok(Fault::LoseAnswer) => {
                let _applied = handler(self);
                lock(&self.stats).dropped(op);
                let mut response = Response::default();
                response.extensions_mut().insert(DropConnection);
                return response;
            }
            Ok(_) => handler(self).unwrap_or_else(|e| e.render(api)),
            Err(Refusal::Answer(e)) => e.render(api),
            Err(Refusal::Drop) => {
                lock(&self.stats).dropped(op);
                let mut response = Response::default();
                response.extensions_mut().insert(DropConnection);
                return response;
            }
        };
        lock(&self.stats).response(op, response.status().as_u16());
        let mut response = response;
        if let Some(date) = http_date(self.clock.now()) {
            response
                .headers_mut()
                .insert(axum::http::header::DATE, date);
        }
        response
    }

    /// Lets a request through (returning the fault still to apply after it is handled) or
    /// refuses it.
    async fn admit(&self, op: Operation, headers: &HeaderMap) -> Result<Fault, Refusal> {
        let api = op.api();
        self.authenticate(api, headers).map_err(Refusal::Answer)?;
        if self.policy.denied.contains(&op) {
            return Err(Refusal::Answer(wire::denied(op)));
        }
        let (fault, latency) = {
            let mut faults = lock(&self.faults);
            (faults.roll(), faults.latency())
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        match fault {
            Fault::Drop => return Err(Refusal::Drop),
            Fault::Error => return Err(Refusal::Answer(ApiError::internal(api))),
            Fault::None | Fault::LoseAnswer => {}
        }
        self.take_token(op).map(|()| fault)
    }

    fn authenticate(&self, api: Api, headers: &HeaderMap) -> Result<(), ApiError> {
        match api {
            Api::CustomerProfiles | Api::Connect | Api::Sts => wire::check_sigv4(headers),
            Api::Genesys => wire::check_basic(headers, self.policy.genesys_auth.as_deref()),
        }
    }

    fn take_token(&self, op: Operation) -> Result<(), Refusal> {
        let now = Instant::now();
        let taken = lock(&self.quotas).try_take(op, now);
        match taken {
            Ok(()) => {
                let since_start = now.saturating_duration_since(self.started);
                lock(&self.stats).accepted(op, since_start);
                Ok(())
            }
            Err(wait) => {
                let wait = self.policy.retry_after.then_some(wait);
                Err(Refusal::Answer(ApiError::throttled(op.api(), wait)))
            }
        }
    }
}

/// An HTTP `Date` value (`Sun, 06 Nov 1994 08:49:37 GMT`) for `epoch` seconds: API answers
/// carry the emulator's clock, as a service's carry its own (hyper adds the system time only
/// to answers that have none).
fn http_date(epoch: i64) -> Option<axum::http::HeaderValue> {
    let time = chrono::DateTime::from_timestamp(epoch, 0)?;
    let text = time.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    axum::http::HeaderValue::from_str(&text).ok()
}

fn faults_seed_for_ids(faults: &Faults) -> u64 {
    faults.seed().wrapping_add(0x9e37_79b9_7f4a_7c15)
}

/// The whole router: the three APIs, STS, and the `/_emulator` read-back and clock routes.
pub fn router(app: App) -> Router {
    Router::new()
        .route("/_emulator/state", get(read_state))
        .route("/_emulator/stats", get(read_stats).delete(clear_stats))
        .route("/_emulator/clock", get(read_clock).post(move_clock))
        .merge(customer_profiles::routes())
        .merge(connect::routes())
        .merge(genesys::routes())
        .merge(sts::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(wrong_method)
        .with_state(app)
}

async fn read_state(Extract(app): Extract<App>) -> Response {
    wire::json_response(StatusCode::OK, &app.state_json())
}

async fn read_stats(Extract(app): Extract<App>) -> Response {
    let body = serde_json::to_value(app.stats()).unwrap_or_default();
    wire::json_response(StatusCode::OK, &body)
}

async fn clear_stats(Extract(app): Extract<App>) -> Response {
    app.reset_stats();
    wire::json_response(StatusCode::OK, &json!({}))
}

fn clock_json(app: &Shared) -> serde_json::Value {
    json!({"offset_days": app.clock_offset_days(), "now": app.moment().now})
}

async fn read_clock(Extract(app): Extract<App>) -> Response {
    wire::json_response(StatusCode::OK, &clock_json(&app))
}

/// `POST /_emulator/clock` with `{"offset_days": N}`: sets the offset (not adds to it).
async fn move_clock(Extract(app): Extract<App>, body: Bytes) -> Response {
    let offset = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|body| body.get("offset_days").and_then(serde_json::Value::as_i64))
        .ok_or_else(|| "expected {\"offset_days\": N}, N a whole number".to_string())
        .and_then(|offset| app.set_clock_offset_days(offset));
    match offset {
        Ok(()) => wire::json_response(StatusCode::OK, &clock_json(&app)),
        Err(message) => {
            wire::json_response(StatusCode::BAD_REQUEST, &json!({ "message": message }))
        }
    }
}

fn is_genesys_path(uri: &Uri) -> bool {
    let path = uri.path();
    path == "/profiles" || path.starts_with("/profiles/")
}

async fn no_route(method: Method, uri: Uri) -> Response {
    let message = format!("No resource at {method} {}", uri.path());
    if is_genesys_path(&uri) {
        return ApiError::new(StatusCode::NOT_FOUND, "ResourceNotFoundException", message)
            .render(Api::Genesys);
    }
    ApiError::new(StatusCode::NOT_FOUND, "UnknownOperationException", message)
        .render(Api::CustomerProfiles)
}

async fn wrong_method(method: Method, uri: Uri) -> Response {
    let message = format!("Method {method} is not supported on {}", uri.path());
    let api = if is_genesys_path(&uri) {
        Api::Genesys
    } else {
        Api::CustomerProfiles
    };
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "MethodNotAllowedException",
        message,
    )
    .render(api)
}

/// Accepts connections until `stop` turns true, then closes every open connection.
pub async fn run(listener: TcpListener, router: Router, mut stop: watch::Receiver<bool>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, router.clone()));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    connections.abort_all();
}

async fn serve_connection(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        let router = router.clone();
        async move {
            let response = match router.oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            };
            if response.extensions().get::<DropConnection>().is_some() {
                return Err(Dropped);
            }
            Ok(response)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Binds 127.0.0.1 on `port` (0 picks a free one).
pub async fn bind(port: u16) -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port)).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_http_dates() {
        let date = http_date(784_111_777).expect("a valid time");
        assert_eq!(date, "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
