//! Tests of alerting: pure rules, rendering and signing (`unit`), and whole alerters
//! against a fake robot endpoint (`e2e`).

mod e2e;
mod unit;

use super::{AlertSettings, DeadNote, LaneObservation, Observation, Tuning, parse_webhooks};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The console base URL messages link to in tests.
pub(super) const CONSOLE: &str = "http://console.test";

/// One request the fake robot received.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub(super) path: String,
    pub(super) query: String,
    pub(super) body: serde_json::Value,
}

/// A fake robot endpoint on 127.0.0.1: records every request and answers success the way
/// its path's robot does (`/feishu…` with `code`, everything else with `errcode`).
pub(super) struct FakeRobot {
    pub(super) base: String,
    pub(super) received: Arc<Mutex<Vec<Received>>>,
}

impl FakeRobot {
    pub(super) async fn spawn() -> FakeRobot {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let app = axum::Router::new()
            .fallback(record)
            .with_state(received.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRobot { base, received }
    }

    /// Requests so far whose path starts with `prefix`.
    pub(super) fn at(&self, prefix: &str) -> Vec<Received> {
        self.received
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.path.starts_with(prefix))
            .cloned()
            .collect()
    }
}

async fn record(
    State(received): State<Arc<Mutex<Vec<Received>>>>,
    uri: Uri,
    body: Bytes,
) -> axum::response::Response {
    let path = uri.path().to_owned();
    let body = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
    let answer = if path.starts_with("/feishu") {
        r#"{"code":0,"msg":"success","data":{}}"#
    } else {
        r#"{"errcode":0,"errmsg":"ok"}"#
    };
    received.lock().expect("lock").push(Received {
        query: uri.query().unwrap_or_default().to_owned(),
        path,
        body,
    });
    axum::response::IntoResponse::into_response((
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        answer,
    ))
}

/// Polls `probe` until it gives a value, failing the test after 15 s.
pub(super) async fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Settings for `webhooks` (ALERT_WEBHOOKS text) with a short batch window.
pub(super) fn settings(webhooks: &str, window: Duration) -> AlertSettings {
    let mut settings = AlertSettings::new(parse_webhooks(webhooks).expect("webhooks"), CONSOLE);
    settings.batch_window = window;
    settings
}

/// Production behaviour on a test's time scale.
pub(super) fn fast() -> Tuning {
    Tuning {
        request_timeout: Duration::from_millis(500),
        backoff_base: Duration::from_millis(20),
        backoff_cap: Duration::from_millis(100),
        max_tries: 3,
        limited_cooldown: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(3),
        ..Tuning::default()
    }
}

pub(super) fn lane(shop: &str, dead: u64, paused: &str, oldest_ms: i64) -> LaneObservation {
    LaneObservation {
        connector: String::new(),
        shop_no: shop.to_owned(),
        dead_letters: dead,
        paused_reason: paused.to_owned(),
        oldest_age_ms: oldest_ms,
    }
}

pub(super) fn note(shop: &str, tid: &str, reason: &str, at_ms: i64) -> DeadNote {
    DeadNote {
        connector: String::new(),
        shop_no: shop.to_owned(),
        tid: tid.to_owned(),
        reason: reason.to_owned(),
        dead_at_ms: at_ms,
    }
}

pub(super) fn observation(at_ms: i64, lanes: Vec<LaneObservation>) -> Observation {
    Observation {
        at_ms,
        lanes,
        new_dead_letters: Vec::new(),
    }
}
