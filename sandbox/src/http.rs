//! The axum routes: `trade_push.php` and the `/sandbox/*` inspection and control endpoints.

use crate::push::{self, Answer};
use crate::{Faults, Sandbox};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

/// Room for 50 trades of 200 lines each.
const BODY_LIMIT: usize = 32 * 1024 * 1024;

pub(crate) fn router(sandbox: Sandbox) -> Router {
    Router::new()
        .route("/openapi2/trade_push.php", post(trade_push))
        .route("/trade_push.php", post(trade_push))
        .route("/sandbox/trades", get(trades))
        .route("/sandbox/trades/{tid}", get(trade))
        .route("/sandbox/calls", get(calls))
        .route("/sandbox/reset", post(reset))
        .route("/sandbox/faults", get(faults).put(set_faults))
        .route("/healthz", get(|| async { "ok" }))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(sandbox)
}

async fn trade_push(State(sandbox): State<Sandbox>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    match push::trade_push(&sandbox, content_type, &body).await {
        Answer::Wdt(answer) => Json(answer).into_response(),
        Answer::Http {
            status,
            retry_after,
        } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut response =
                (status, status.canonical_reason().unwrap_or("error")).into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            response
        }
        Answer::Drop => dropped(),
    }
}

/// A response whose body fails before its first byte: hyper then closes the connection
/// without writing the head, so the client sees a transport error, not an answer.
fn dropped() -> Response {
    let failing = tokio_stream::once(Err::<Vec<u8>, _>(std::io::Error::new(
        std::io::ErrorKind::ConnectionAborted,
        "sandbox drop fault",
    )));
    Response::new(Body::from_stream(failing))
}

async fn trades(State(sandbox): State<Sandbox>) -> Response {
    Json(sandbox.trades()).into_response()
}

async fn trade(State(sandbox): State<Sandbox>, Path(tid): Path<String>) -> Response {
    match sandbox.trade(&tid) {
        Some(trade) => Json(trade).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "unknown tid", "tid": tid})),
        )
            .into_response(),
    }
}

async fn calls(State(sandbox): State<Sandbox>) -> Response {
    Json(sandbox.calls()).into_response()
}

async fn reset(State(sandbox): State<Sandbox>) -> StatusCode {
    sandbox.reset();
    tracing::info!("sandbox reset");
    StatusCode::NO_CONTENT
}

async fn faults(State(sandbox): State<Sandbox>) -> Json<Faults> {
    Json(sandbox.faults())
}

async fn set_faults(State(sandbox): State<Sandbox>, Json(faults): Json<Faults>) -> Json<Faults> {
    tracing::info!(?faults, "sandbox faults set");
    sandbox.set_faults(faults.clone());
    Json(faults)
}
