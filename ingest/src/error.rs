//! Ingest's errors and the one place they become HTTP answers and gRPC statuses.
//!
//! Every HTTP error body is JSON `{"code": <http status>, "message": "..."}`; a rejected
//! record adds `record`, `tid` and `field`.

use crate::auth::AuthError;
use crate::parse::full::CallbackError;
use crate::parse::shape::ShapeError;
use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tonic::{Code, Status};
use wdtpipe_common::rejection;
use wdtpipe_proto::v1::RecordRejection;

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("malformed JSON: {0}")]
    Malformed(String),
    #[error("{0}")]
    NoRecords(&'static str),
    #[error("{}", rejection::message(.0))]
    Invalid(RecordRejection),
    #[error("unsupported content type {0:?}: send application/json")]
    UnsupportedMediaType(String),
    #[error("request body larger than {0} bytes")]
    TooLarge(usize),
    #[error("request holds {count} records; at most {max} per request")]
    TooManyRecords { count: usize, max: usize },
    #[error("{0}")]
    Shape(#[from] ShapeError),
    #[error("unauthorized: {0}")]
    Unauthorized(#[from] AuthError),
    /// Too many requests in flight at once; the sender should retry.
    #[error("too many concurrent requests, retry later")]
    Busy,
    /// The next stage cannot take the request now; the sender should retry.
    #[error("pipeline unavailable, retry later: {0}")]
    Unavailable(String),
    /// Deliver's outbox is full: above its high-water mark, or its disk below the free-space
    /// watermark (a later stage answered RESOURCE_EXHAUSTED). Said in ingest's words; the
    /// stage's are logged.
    #[error("pipeline unavailable, retry later: the outbox is full ({0})")]
    Overloaded(String),
    /// The same, as a later stage said it: its words are logged, never sent to the sender.
    #[error("pipeline unavailable, retry later: {0}")]
    DownstreamUnavailable(String),
    /// A later stage failed in a way retrying will not fix: logged in full, answered with
    /// a generic message.
    #[error("pipeline error: {0}")]
    Downstream(String),
    /// `POST /v1/callback/{scheme}` names no scheme transform serves.
    #[error("{0}")]
    NoScheme(String),
    /// The scheme takes kuaidi100's form pushes, not JSON records.
    #[error("{0}")]
    WrongSource(String),
}

impl From<CallbackError> for IngestError {
    fn from(error: CallbackError) -> Self {
        match error {
            CallbackError::Malformed(m) => IngestError::Malformed(m),
            CallbackError::NoRecords(m) => IngestError::NoRecords(m),
            CallbackError::Invalid(r) => IngestError::Invalid(r),
        }
    }
}

impl IngestError {
    /// Classifies a failure of the call to transform.
    pub fn from_downstream(status: Status) -> Self {
        if let Some(rejection) = rejection::from_status(&status) {
            return IngestError::Invalid(rejection);
        }
        match status.code() {
            Code::ResourceExhausted => IngestError::Overloaded(status.message().to_owned()),
            Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Aborted => {
                IngestError::DownstreamUnavailable(status.message().to_owned())
            }
            Code::NotFound => IngestError::NoScheme(status.message().to_owned()),
            Code::FailedPrecondition => IngestError::WrongSource(status.message().to_owned()),
            _ => IngestError::Downstream(format!("{:?}: {}", status.code(), status.message())),
        }
    }

    pub fn status_code(&self) -> StatusCode {
        match self {
            IngestError::Malformed(_) | IngestError::Shape(_) => StatusCode::BAD_REQUEST,
            IngestError::TooManyRecords { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            IngestError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::NoRecords(_) | IngestError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            IngestError::UnsupportedMediaType(_) | IngestError::WrongSource(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            IngestError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            IngestError::Unavailable(_)
            | IngestError::DownstreamUnavailable(_)
            | IngestError::Overloaded(_) => StatusCode::SERVICE_UNAVAILABLE,
            IngestError::Downstream(_) => StatusCode::BAD_GATEWAY,
            IngestError::NoScheme(_) => StatusCode::NOT_FOUND,
        }
    }
}

impl IngestError {
    /// What a sender is told: the error itself, except a later stage's own words (internal
    /// names, addresses, protocol errors), which only the logs get.
    pub fn public_message(&self) -> String {
        match self {
            IngestError::DownstreamUnavailable(_) => "pipeline unavailable, retry later".to_owned(),
            IngestError::Overloaded(why) if why.contains("disk low") => {
                "pipeline unavailable, retry later: the outbox's disk is nearly full".to_owned()
            }
            IngestError::Overloaded(_) => {
                "pipeline unavailable, retry later: the outbox is above its high-water mark"
                    .to_owned()
            }
            IngestError::Downstream(_) => {
                "internal error: the callback was not accepted (the x-request-id header names it in the logs)".to_owned()
            }
            other => other.to_string(),
        }
    }

    /// The HTTP answer, asking a sender to wait `retry_after_secs` before retrying a 503.
    pub fn into_response_with(self, retry_after_secs: u64) -> Response {
        let status = self.status_code();
        let mut body = json!({"code": status.as_u16(), "message": self.public_message()});
        if let IngestError::Invalid(r) = &self {
            body["record"] = json!(r.position);
            body["tid"] = json!(r.tid);
            body["field"] = json!(r.field);
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
        }
        response
    }
}

impl IntoResponse for IngestError {
    fn into_response(self) -> Response {
        self.into_response_with(1)
    }
}

impl From<IngestError> for Status {
    fn from(error: IngestError) -> Self {
        match &error {
            IngestError::Invalid(r) => rejection::to_status(r),
            IngestError::Malformed(_)
            | IngestError::NoRecords(_)
            | IngestError::UnsupportedMediaType(_)
            | IngestError::Shape(_)
            | IngestError::TooManyRecords { .. } => Status::invalid_argument(error.to_string()),
            IngestError::TooLarge(_) => Status::resource_exhausted(error.to_string()),
            IngestError::Unauthorized(_) => Status::unauthenticated(error.to_string()),
            IngestError::Unavailable(_)
            | IngestError::DownstreamUnavailable(_)
            | IngestError::Overloaded(_)
            | IngestError::Busy => Status::unavailable(error.public_message()),
            IngestError::Downstream(_) => Status::internal(error.public_message()),
            IngestError::NoScheme(_) => Status::not_found(error.to_string()),
            IngestError::WrongSource(_) => Status::failed_precondition(error.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A later stage's own words reach the logs (Display), never the sender (the answer).
    #[tokio::test]
    async fn senders_get_no_internal_text() {
        for (status, code) in [
            (
                Status::internal("deliver: h2 protocol error at 10.0.0.7:50053"),
                502,
            ),
            (
                Status::unavailable("deliver: outbox at /var/lib/wdtpipe is full"),
                503,
            ),
        ] {
            let error = IngestError::from_downstream(status);
            assert!(error.to_string().contains("deliver:"), "{error}");
            let response = error.into_response_with(1);
            assert_eq!(response.status().as_u16(), code);
            let body = axum::body::to_bytes(response.into_body(), 1 << 16)
                .await
                .unwrap();
            let body = String::from_utf8(body.to_vec()).unwrap();
            assert!(
                !body.contains("deliver") && !body.contains("10.0.0.7"),
                "{body}"
            );
        }
    }
}
