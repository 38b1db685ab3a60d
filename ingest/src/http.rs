//! The HTTP edge: `POST /v1/callback`, `GET /healthz`.

use crate::callback::parse_body;
use crate::error::IngestError;
use crate::forward::Forwarder;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// Limits of the HTTP edge.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Largest accepted body, in bytes.
    pub body_bytes: usize,
    /// Longest a request may take end to end before it is answered 503.
    pub request_timeout: Duration,
}

#[derive(Clone)]
struct AppState {
    forwarder: Forwarder,
    limits: Arc<HttpLimits>,
}

/// The ingest HTTP router.
pub fn router(forwarder: Forwarder, limits: HttpLimits) -> Router {
    Router::new()
        .route("/v1/callback", post(callback))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .with_state(AppState {
            forwarder,
            limits: Arc::new(limits),
        })
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn not_found() -> impl IntoResponse {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"code": 404, "message": "not found: POST /v1/callback, GET /healthz"})),
    )
}

/// Accepts one callback: one record, an array, or `{"stockout_list": [...]}`.
#[tracing::instrument(skip_all, fields(records))]
async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, IngestError> {
    check_content_type(&headers)?;
    let limit = state.limits.body_bytes;
    let work = async {
        let bytes = axum::body::to_bytes(body, limit)
            .await
            .map_err(|_| IngestError::TooLarge(limit))?;
        let records = parse_body(&bytes)?;
        tracing::Span::current().record("records", records.len());
        let key = idempotency_key(&headers);
        let receipts = state.forwarder.submit(records, "http", &key).await?;
        Ok::<_, IngestError>(receipts)
    };
    let receipts = tokio::time::timeout(state.limits.request_timeout, work)
        .await
        .map_err(|_| IngestError::Unavailable("request timed out".into()))??;
    let duplicates = receipts.iter().filter(|r| r.duplicate).count();
    let receipts: Vec<Value> = receipts
        .iter()
        .map(|r| {
            json!({
                "record": r.position,
                "record_id": r.record_id,
                "tid": r.tids.first().cloned().unwrap_or_default(),
                "tids": r.tids,
                "duplicate": r.duplicate,
            })
        })
        .collect();
    tracing::info!(records = receipts.len(), duplicates, "callback accepted");
    Ok(Json(
        json!({"code": 0, "message": "accepted", "receipts": receipts}),
    ))
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
        Err(IngestError::UnsupportedMediaType(text.to_owned()))
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
