//! HTTP: the FHIR R4 REST API (`/fhir`), the OAuth2 token endpoint (`/oauth/token`), the operator
//! API (`/operator`), health (`/healthz`, `/readyz`), metrics, and the citizen portal ([`portal`]).
//!
//! Architecture invariants:
//! - Handlers call the store and the FHIR layer; they contain no SQL and no rules.
//! - Every error leaves through [`error::ApiError`] as an `OperationOutcome`; internals go to the log.
//! - Logs name routes (`/fhir/{type}/{id}`), never raw paths or query strings (they can carry HETUs).

mod archivist;
pub mod auth;
pub mod clock;
pub mod error;
mod fhir_api;
pub use fhir_api::bundle_write_request;
mod ops;
pub mod portal;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use kanta_fhir::{ErrorKind, FhirError};
use kanta_store::audit::AuditLog;
use kanta_store::Store;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::sync::{Arc, OnceLock};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

pub use clock::Clock;

/// What the HTTP layer needs to know.
#[derive(Clone, Debug)]
pub struct WebConfig {
    /// The URL clients reach this service at, without a trailing slash (e.g. `http://127.0.0.1:8080`).
    pub public_url: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Whether the built-in demo services are on (reported by /readyz).
    pub demo: bool,
    /// Bounds on what one request may ask of the store.
    pub limits: Limits,
}

/// Bounds on one request's work, each answered with a clear OperationOutcome when passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Entries in one transaction Bundle (413 past it).
    pub max_bundle_entries: usize,
    /// References in one resource (422 past it).
    pub max_references_per_resource: usize,
    /// Characters in one search parameter's value (400 past it): the query goes into the audit log.
    pub max_search_value: usize,
    /// How long a connection may take to send a request's headers before it is closed.
    pub header_read_timeout: std::time::Duration,
    /// How long a request may take to send its whole body (408 past it): a body that trickles in
    /// holds a connection no longer than this.
    pub body_read_timeout: std::time::Duration,
    /// Connections served at once; past it new connections wait in the listen backlog (each held
    /// at most the header and body deadlines).
    pub max_connections: usize,
    /// A search reads on past records the disclosure rule refuses (so that a page is what it would
    /// be without them) at most this many rows…
    pub search_scan_max: usize,
    /// …and for at most this long (a monotonic deadline); then the page ends with a `next` link
    /// after the last record kept.
    pub search_scan_deadline: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bundle_entries: 5_000,
            max_references_per_resource: 1_000,
            max_search_value: 256,
            header_read_timeout: std::time::Duration::from_secs(10),
            body_read_timeout: std::time::Duration::from_secs(30),
            max_connections: 4_096,
            search_scan_max: 10_000,
            search_scan_deadline: std::time::Duration::from_secs(2),
        }
    }
}

impl WebConfig {
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.public_url)
    }
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.public_url)
    }
}

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub audit: AuditLog,
    pub config: Arc<WebConfig>,
    pub clock: Clock,
    pub token_keys: auth::TokenKeys,
    /// The client register as requests read it (each entry cached a few seconds).
    pub clients: auth::ClientCache,
    pub metrics: PrometheusHandle,
    /// The citizen portal: identification, sessions, the test identification service.
    pub portal: Arc<portal::Portal>,
    /// The Prescription Centre's medicines database and settings (none: prescriptions, dispensations
    /// and their tasks are refused with 503).
    pub centre: Option<Arc<kanta_store::centre::Centre>>,
    /// The bearer token `/metrics` asks for; without one it answers loopback peers only.
    pub metrics_token: Option<Arc<str>>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        audit: AuditLog,
        config: WebConfig,
        clock: Clock,
        token_secret: &[u8],
    ) -> Self {
        let portal = Arc::new(portal::Portal::new(store.clone(), &config.public_url));
        AppState {
            store,
            audit,
            portal,
            centre: None,
            config: Arc::new(config),
            clock,
            token_keys: auth::TokenKeys::from_secret(token_secret),
            clients: auth::ClientCache::default(),
            metrics: metrics_handle(),
            metrics_token: None,
        }
    }

    /// `/metrics` then asks for this bearer token (from anywhere); without it, only loopback
    /// peers (a scraper beside the server) read it.
    pub fn with_metrics_token(mut self, token: Option<&str>) -> Self {
        self.metrics_token = token.map(Arc::from);
        self
    }
}

impl AppState {
    /// The same state with this portal set-up (identification, session policy, test service).
    /// Connect the Prescription Centre (its medicines database and settings).
    pub fn with_centre(mut self, centre: kanta_store::centre::Centre) -> Self {
        self.centre = Some(Arc::new(centre));
        self
    }

    pub fn with_portal(mut self, portal: portal::Portal) -> Self {
        self.portal = Arc::new(portal);
        self
    }
}

/// The request id (`x-request-id`, set by the middleware when the client sent none).
pub struct RequestId(pub Option<String>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(RequestId(
            parts
                .headers
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        ))
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every app in the process).
fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; then our metrics are not collected
            // but the service still runs.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

pub fn router(state: AppState) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/oauth/token", post(auth::token))
        .route(
            "/.well-known/smart-configuration",
            get(auth::smart_configuration),
        )
        .route(
            "/fhir/.well-known/smart-configuration",
            get(auth::smart_configuration),
        )
        .route("/operator/population/import", post(ops::population_import))
        .route("/operator/audit/export", post(ops::audit_export))
        .route(
            "/archivist/documents/{rtype}/{id}",
            get(archivist::document),
        )
        .merge(fhir_api::routes())
        .merge(portal::routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), body_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), portal::guard))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(bound_request_id))
        .with_state(state)
}

/// Issue 30: a request's whole body within `Limits::body_read_timeout` (408), at most one byte over
/// `max_body_bytes` (413; the extractors' own limit then answers as before) — read here, once, so
/// that a body trickling in cannot hold a connection and a task for ever.
async fn body_deadline(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    use axum::body::HttpBody as _;
    let (parts, mut body) = req.into_parts();
    if body.is_end_stream() {
        return next
            .run(axum::extract::Request::from_parts(parts, body))
            .await;
    }
    let limit = state.config.max_body_bytes.saturating_add(1);
    let deadline = state.config.limits.body_read_timeout;
    let read = async {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
        {
            let Ok(frame) = frame else {
                return Err(FhirError::bad_request("the request body could not be read"));
            };
            if let Ok(data) = frame.into_data() {
                if buf.len() + data.len() > limit {
                    return Err(FhirError::new(
                        ErrorKind::PayloadTooLarge,
                        "the request body is larger than this server accepts",
                    ));
                }
                buf.extend_from_slice(&data);
            }
        }
        Ok(buf)
    };
    match tokio::time::timeout(deadline, read).await {
        Ok(Ok(buf)) => {
            next.run(axum::extract::Request::from_parts(
                parts,
                axum::body::Body::from(buf),
            ))
            .await
        }
        Ok(Err(e)) => error::ApiError(e).into_response(),
        Err(_) => error::ApiError(FhirError::new(
            ErrorKind::RequestTimeout,
            format!(
                "the request body did not arrive within {} seconds",
                deadline.as_secs()
            ),
        ))
        .into_response(),
    }
}

/// The longest request id kept from a client.
pub const MAX_REQUEST_ID: usize = 64;

/// Whether a client's `x-request-id` may be kept: at most 64 characters of `[A-Za-z0-9._-]`.
pub fn acceptable_request_id(v: &[u8]) -> bool {
    !v.is_empty()
        && v.len() <= MAX_REQUEST_ID
        && v.iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A client's request id is echoed, logged and kept in the append-only audit log: one that is too
/// long or carries other characters is replaced by a fresh one (before the id layer sets it).
async fn bound_request_id(mut req: Request, next: Next) -> Response {
    let bad = req
        .headers()
        .get_all("x-request-id")
        .iter()
        .any(|v| !acceptable_request_id(v.as_bytes()))
        || req.headers().get_all("x-request-id").iter().count() > 1;
    if bad {
        req.headers_mut().remove("x-request-id");
    }
    next.run(req).await
}

/// Unknown paths: an OperationOutcome under the API prefixes, a translated page elsewhere.
async fn not_found(req: Request) -> Response {
    let path = req.uri().path();
    if path.starts_with("/fhir")
        || path.starts_with("/oauth")
        || path.starts_with("/operator")
        || path.starts_with("/archivist")
    {
        fhir_api::not_found().await.into_response()
    } else {
        portal::error_page(
            portal::lang_of(req.headers()),
            axum::http::StatusCode::NOT_FOUND,
            "error-not-found",
        )
    }
}

/// Count and time every request by route and status, and log it without its path parameters or
/// query string.
async fn observe(State(_state): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let method = req.method().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let started = std::time::Instant::now();
    let res = next.run(req).await;
    let elapsed = started.elapsed();
    let status = res.status().as_u16().to_string();
    metrics::counter!("kanta_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("kanta_http_request_duration_seconds", "route" => route.clone(), "method" => method.clone())
        .record(elapsed.as_secs_f64());
    tracing::info!(%method, %route, %status, request_id, ms = elapsed.as_secs_f64() * 1000.0, "request");
    res
}

/// Serve until `shutdown` resolves, then finish the requests under way. Each connection gets
/// `limits.header_read_timeout` to send a request's headers (a half-sent request is closed, not
/// kept open indefinitely); `ConnectInfo<SocketAddr>` carries the peer's address.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use tower::ServiceExt as _;
    let header_timeout = state.config.limits.header_read_timeout;
    let state_limits_max_connections = state.config.limits.max_connections;
    let app = router(state);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    // Every connection task holds a receiver; the server returns when all are gone.
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let mut stop = stop_rx.clone();
    // At most `max_connections` served at once (issue 30: 300 slow connections silenced a
    // server); the next accept waits for a permit.
    let permits = Arc::new(tokio::sync::Semaphore::new(
        state_limits_max_connections.max(1),
    ));
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = stop.changed() => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: wait a moment rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(
                move |mut req: hyper::Request<hyper::body::Incoming>| {
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(peer));
                    app.clone().oneshot(req.map(axum::body::Body::new))
                },
            );
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let mut closing = false;
            loop {
                tokio::select! {
                    result = conn.as_mut() => {
                        if let Err(e) = result {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !closing => {
                        closing = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
            drop(permit);
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
    Ok(())
}
