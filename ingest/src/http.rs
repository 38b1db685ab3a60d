//! The HTTP edge: `POST /v1/callback`, `GET /healthz`.
//!
//! A callback passes, in order: the concurrency limit (503), the content type (415), the
//! body size (413), the sender's signature when secrets are configured (401), the nesting
//! and string limits (400), JSON parsing (400/422), the record count (413); then it is
//! forwarded and answered only once deliver has it on disk. The whole request runs under a
//! timeout (503).

use crate::auth::WebhookVerifier;
use crate::config::Limits;
use crate::error::IngestError;
use crate::forward::{Forwarder, Origin, envelopes};
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::Instrument as _;
use wdtpipe_common::metrics::MetricsRegistry;
use wdtpipe_common::request::{accept_request_id, new_request_id, valid_traceparent};
use wdtpipe_proto::v1::RecordEnvelope;

/// What the HTTP edge enforces.
#[derive(Debug, Clone)]
pub(crate) struct Edge {
    pub limits: Limits,
    /// Sender signature check; `None` when no secret is configured.
    pub verifier: Option<WebhookVerifier>,
    /// `Retry-After` of a 503, in seconds.
    pub retry_after_secs: u64,
}

#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) forwarder: Forwarder,
    edge: Arc<Edge>,
    permits: Arc<Semaphore>,
}

/// The ingest HTTP router: the callback, health and Prometheus metrics.
pub(crate) fn router(forwarder: Forwarder, edge: Edge, registry: Arc<MetricsRegistry>) -> Router {
    let permits = Arc::new(Semaphore::new(edge.limits.concurrent_requests.max(1)));
    Router::new()
        .route("/v1/callback", post(callback))
        .route("/v1/callback/{scheme}", post(callback_for_scheme))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(AppState {
            forwarder,
            edge: Arc::new(edge),
            permits,
        })
        .merge(wdtpipe_common::metrics::router(registry, None))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(
            json!({"code": 404, "message": "not found: POST /v1/callback, POST /v1/callback/{scheme}, GET /healthz"}),
        ),
    )
}

async fn method_not_allowed() -> impl IntoResponse {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(
            json!({"code": 405, "message": "method not allowed: POST /v1/callback, GET /healthz"}),
        ),
    )
}

/// `POST /v1/callback`: the scheme `default`. Only a scheme's own URL takes kuaidi100
/// pushes: a form here is refused (415).
async fn callback(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    accept_callback(state, String::new(), None, headers, body).await
}

/// `POST /v1/callback/{scheme}`: the records are mapped with that integration scheme
/// (transform answers 404 for an id it does not serve).
async fn callback_for_scheme(
    State(state): State<AppState>,
    Path(scheme): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let tid = crate::kuaidi100::tid_of(uri.query());
    accept_callback(state, scheme, Some(tid), headers, body).await
}

/// Accepts one callback: one record, an array, or `{"stockout_list": [...]}`. The answer
/// carries the request id (`x-request-id`) that logs and status use.
async fn accept_callback(
    state: AppState,
    scheme: String,
    tid: Option<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let started = Instant::now();
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .and_then(accept_request_id)
        .unwrap_or_else(new_request_id);
    let span = tracing::info_span!("callback", request_id = %request_id, scheme = %scheme, records = tracing::field::Empty);
    let mut response = handle(&state, &headers, body, &request_id, scheme, tid)
        .instrument(span)
        .await;
    let metrics = state.forwarder.metrics();
    metrics.status(response.status().as_u16());
    metrics
        .request_seconds
        .observe(started.elapsed().as_secs_f64());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

async fn handle(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    scheme: String,
    // `Some` on a scheme's URL (`/v1/callback/{scheme}`): a form there is a kuaidi100 push,
    // with the URL's `tid` query parameter.
    tid: Option<String>,
) -> Response {
    let retry_after = state.edge.retry_after_secs;
    let Ok(_permit) = state.permits.clone().try_acquire_owned() else {
        tracing::warn!("concurrent request limit reached");
        return IngestError::Busy.into_response_with(retry_after);
    };
    let timeout = Duration::from_millis(state.edge.limits.request_timeout_ms);
    if let Some(tid) = tid.filter(|_| crate::kuaidi100::is_form(headers)) {
        // A kuaidi100 push: its own sign (checked by transform) and its own answers.
        let push = async {
            match axum::body::to_bytes(body, state.edge.limits.body_bytes).await {
                Ok(bytes) => {
                    crate::kuaidi100::accept_push(state, &bytes, request_id, scheme, tid).await
                }
                Err(_) => IngestError::TooLarge(state.edge.limits.body_bytes)
                    .into_response_with(retry_after),
            }
        };
        return match tokio::time::timeout(timeout, push).await {
            Ok(response) => response,
            Err(_) => {
                IngestError::Unavailable("request timed out".into()).into_response_with(retry_after)
            }
        };
    }
    let answer =
        match tokio::time::timeout(timeout, accept(state, headers, body, request_id, scheme)).await
        {
            Ok(answer) => answer,
            Err(_) => Err(IngestError::Unavailable("request timed out".into())),
        };
    match answer {
        Ok(body) => Json(body).into_response(),
        Err(error) => {
            if error.status_code().is_server_error() {
                tracing::warn!(%error, "callback not accepted");
            } else {
                tracing::info!(%error, "callback refused");
            }
            error.into_response_with(retry_after)
        }
    }
}

async fn accept(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    scheme: String,
) -> Result<Value, IngestError> {
    let limits = &state.edge.limits;
    check_content_type(headers)?;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limits.body_bytes) {
        return Err(IngestError::TooLarge(limits.body_bytes));
    }
    let bytes = axum::body::to_bytes(body, limits.body_bytes)
        .await
        .map_err(|_| IngestError::TooLarge(limits.body_bytes))?;
    let origin = Origin {
        source: "http".to_owned(),
        idempotency_key: idempotency_key(headers),
        request_id: request_id.to_owned(),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .filter(|t| valid_traceparent(t))
            .map(str::to_owned)
            .unwrap_or_default(),
        scheme,
    };
    // Checking the signature, parsing and hashing a body is CPU work proportional to its
    // size: a big body does it on a blocking thread, so the runtime's threads keep serving.
    let envelopes = if bytes.len() > OFF_THREAD_BYTES {
        let (edge, headers, origin) = (Arc::clone(&state.edge), headers.clone(), origin.clone());
        tokio::task::spawn_blocking(move || read_body(&edge, &headers, &bytes, &origin))
            .await
            .map_err(|e| IngestError::Unavailable(format!("parsing was interrupted: {e}")))??
    } else {
        read_body(&state.edge, headers, &bytes, &origin)?
    };
    tracing::Span::current().record("records", envelopes.len());
    let receipts = state.forwarder.submit_envelopes(envelopes, &origin).await?;
    let duplicates = receipts.iter().filter(|r| r.duplicate).count();
    tracing::info!(records = receipts.len(), duplicates, "callback accepted");
    let receipts: Vec<Value> = receipts
        .iter()
        .map(|r| {
            json!({
                "record": r.position,
                "record_id": r.record_id,
                "tid": r.tids.first().cloned().unwrap_or_default(),
                "tids": r.tids,
                "duplicate": r.duplicate,
                "skipped": r.skipped,
                "scheme": r.scheme,
            })
        })
        .collect();
    Ok(json!({"code": 0, "message": "accepted", "receipts": receipts}))
}

/// Bodies larger than this are checked, parsed and hashed on a blocking thread.
const OFF_THREAD_BYTES: usize = 256 * 1024;

/// The CPU part of a callback: the sender's signature, the records, their ids.
fn read_body(
    edge: &Edge,
    headers: &HeaderMap,
    bytes: &[u8],
    origin: &Origin,
) -> Result<Vec<RecordEnvelope>, IngestError> {
    let limits = &edge.limits;
    if let Some(verifier) = &edge.verifier {
        verifier.verify(headers, bytes, jiff::Timestamp::now().as_second())?;
    }
    envelopes(crate::parse::parse(bytes, limits)?, origin)
}

/// JSON, with or without a charset; a missing content type is taken as JSON.
fn check_content_type(headers: &HeaderMap) -> Result<(), IngestError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let text = value.to_str().unwrap_or_default();
    let essence = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
    {
        Ok(())
    } else {
        Err(IngestError::UnsupportedMediaType(
            text.chars().take(100).collect(),
        ))
    }
}

/// The sender's idempotency id: `webhook-id` (Standard Webhooks) or `Idempotency-Key`.
fn idempotency_key(headers: &HeaderMap) -> String {
    ["webhook-id", "idempotency-key"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
        .map(|v| v.trim().chars().take(256).collect())
        .unwrap_or_default()
}
