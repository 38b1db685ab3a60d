//! The console's errors: what stops it from starting, and what a request gets. One place
//! maps request errors to HTTP statuses ([`PageError::status`]).

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use std::net::SocketAddr;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "the console listens on {0}, which is not a loopback address: set CONSOLE_TOKEN (operators log in with it) or listen on 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    #[error("ALERT_WEBHOOKS: {0}")]
    Alerts(#[from] crate::alert::AlertConfigError),
    #[error(transparent)]
    Tls(#[from] wdtpipe_common::grpc::TlsError),
    #[error(transparent)]
    Token(#[from] wdtpipe_common::grpc::InvalidToken),
    #[error("no deliver shard is configured (DELIVER_URL)")]
    NoShards,
    #[error("console: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a request was not served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PageError {
    #[error("log in to act (an operator token is needed)")]
    LoginRequired,
    #[error("refused: this request did not come from the console's own pages")]
    CrossSite,
    #[error("{0}")]
    BadRequest(String),
    #[error("cannot write the audit log: {0}")]
    Audit(std::io::Error),
}

impl PageError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::LoginRequired => StatusCode::UNAUTHORIZED,
            Self::CrossSite => StatusCode::FORBIDDEN,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Audit(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.status();
        let login = if matches!(self, Self::LoginRequired) {
            "<p><a href=\"/login\">Log in · 登录</a></p>"
        } else {
            ""
        };
        let body = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>{code}</title><link rel=\"stylesheet\" href=\"/assets/console.css\"></head><body><main><h1>{code}</h1><p class=\"bad\" id=\"error\">{}</p>{login}<p><a href=\"/\">wdtpipe console · 控制台</a></p></main></body></html>",
            crate::html::esc(&self.to_string()),
            code = status.as_u16(),
        );
        (status, Html(body)).into_response()
    }
}
