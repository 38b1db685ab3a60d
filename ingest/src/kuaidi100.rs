//! kuaidi100's tracking push on `POST /v1/callback/{scheme}`: a form body with `param` (JSON
//! text) and `sign`, for a scheme with `source = "kuaidi100"`. Transform checks the sign
//! over the raw `param` text and does the rest (`Transform.Track`); the answer is in
//! kuaidi100's format, sent only once the push is on disk:
//! `{"result":true,"returnCode":"200","message":"成功"}`; a refused push (bad sign, bad
//! `param`, a scheme that takes JSON records) `returnCode` "400"; "500" when the pipeline
//! cannot take it now, so that kuaidi100 pushes again.

use crate::http::AppState;
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::Code;
use wdtpipe_common::now_ms;
use wdtpipe_proto::v1::TrackRequest;

/// Whether a callback is a form (a kuaidi100 push) rather than JSON.
pub(crate) fn is_form(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// kuaidi100's answer.
fn answer(status: StatusCode, ok: bool, message: &str) -> Response {
    let code = status.as_u16().to_string();
    (
        status,
        Json(json!({"result": ok, "returnCode": code, "message": message})),
    )
        .into_response()
}

/// The `tid` query parameter of the callback URL (kuaidi100 echoes the subscribed URL's
/// query string).
pub(crate) fn tid_of(query: Option<&str>) -> String {
    query
        .map(|q| wdtpipe_common::form::decode(q.as_bytes()))
        .unwrap_or_default()
        .into_iter()
        .find(|(key, _)| key == "tid")
        .map(|(_, value)| value.trim().to_owned())
        .unwrap_or_default()
}

/// One push: read the form, hand it to transform, answer in kuaidi100's words.
pub(crate) async fn accept_push(
    state: &AppState,
    bytes: &[u8],
    request_id: &str,
    scheme: String,
    tid: String,
) -> Response {
    let fields = wdtpipe_common::form::decode(bytes);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let Some(param) = field("param").filter(|p| !p.is_empty()) else {
        return answer(
            StatusCode::BAD_REQUEST,
            false,
            "the form has no param (kuaidi100's push is param=<JSON>&sign=<sign>)",
        );
    };
    let request = TrackRequest {
        scheme,
        param,
        sign: field("sign").unwrap_or_default(),
        tid,
        request_id: request_id.to_owned(),
        received_at_ms: now_ms(),
    };
    match state.forwarder.track(request).await {
        Ok(done) => {
            tracing::info!(outcome = %done.outcome, tid = %done.tid, message = %done.message, "kuaidi100 push accepted");
            answer(StatusCode::OK, true, "成功")
        }
        Err(status) => match status.code() {
            Code::InvalidArgument
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::NotFound => {
                tracing::info!(code = ?status.code(), message = status.message(), "kuaidi100 push refused");
                answer(StatusCode::BAD_REQUEST, false, status.message())
            }
            code => {
                tracing::warn!(
                    ?code,
                    message = status.message(),
                    "kuaidi100 push not taken"
                );
                answer(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    false,
                    "pipeline unavailable, push again later",
                )
            }
        },
    }
}
