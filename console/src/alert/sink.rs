//! Sending to one webhook: its pending events, batching, rate limit, signing, retries.
//!
//! Each webhook has its own task, so a robot that is down or slow delays nobody else. Events
//! wait in a bounded buffer (the oldest are dropped, and counted, when it overflows); the
//! task sends everything pending as one message once the batch window after the first one
//! has passed and the robot's rate limit allows. A failed request is retried with
//! exponential backoff and jitter; a robot that says "too fast" gets the events back in
//! its buffer and a cool-down; an answer that no retry can fix (bad signature, keyword,
//! address) is counted and dropped.
//!
//! Signatures, verified against the robots' docs:
//! - DingTalk: `sign = urlencode(base64(HMAC-SHA256(key = secret, msg = timestamp_ms + "\n"
//!   + secret)))`, sent as `&timestamp=…&sign=…` on the URL.
//! - Feishu: `sign = base64(HMAC-SHA256(key = timestamp_s + "\n" + secret, msg = ""))`, sent
//!   as `"timestamp"` and `"sign"` in the JSON body.

use super::config::{Webhook, WebhookKind};
use super::lock;
use super::message::{self, Rendered};
use super::rules::AlertEvent;
use super::{Tuning, WebhookStatus};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures_util::future::BoxFuture;
use hmac::{Hmac, KeyInit, Mac};
use rand::Rng;
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use wdtpipe_common::metrics::Counter;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of an answer read at most: robots answer a few dozen.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Longest cool-down after "too fast": DingTalk throttles a robot for 10 minutes.
const MAX_COOLDOWN: Duration = Duration::from_secs(600);

/// One HTTP request to a webhook.
#[derive(Clone)]
pub(crate) struct Outgoing {
    /// The full URL, token and signature included: never logged.
    pub(crate) url: String,
    pub(crate) body: Vec<u8>,
}

/// What a webhook answered.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Vec<u8>,
    pub(crate) retry_after: Option<Duration>,
}

/// Sends a request; the error text never holds the URL.
pub(crate) type Transport =
    Arc<dyn Fn(Outgoing) -> BoxFuture<'static, Result<Answer, String>> + Send + Sync>;

/// The real transport: HTTP(S) with a timeout per request and no redirects (a redirect
/// would carry the token to another host).
pub(crate) fn http_transport(timeout: Duration) -> Transport {
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("wdt-pipeline-console/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client without custom TLS or proxies builds");
    Arc::new(move |outgoing: Outgoing| {
        let client = client.clone();
        Box::pin(async move {
            let response = client
                .post(&outgoing.url)
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/json; charset=utf-8",
                )
                .body(outgoing.body)
                .send()
                .await
                .map_err(describe)?;
            let status = response.status().as_u16();
            let retry_after = wdtpipe_common::request::retry_after(response.headers());
            let mut response = response;
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
                let room = MAX_ANSWER_BYTES.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(Answer {
                status,
                body,
                retry_after,
            })
        })
    })
}

/// A transport error and its causes, the URL (and its token) stripped.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = if error.is_timeout() {
        "request timed out".to_owned()
    } else if error.is_connect() {
        "could not connect".to_owned()
    } else {
        error.to_string()
    };
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    message::truncate_utf8(&text, 300).to_owned()
}

/// DingTalk's signature before URL encoding: base64 HMAC-SHA256 under the secret of
/// `"{timestamp_ms}\n{secret}"`.
pub(crate) fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Feishu's signature: base64 HMAC-SHA256 keyed with `"{timestamp_s}\n{secret}"` over an
/// empty message.
pub(crate) fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = HmacSha256::new_from_slice(key.as_bytes()).expect("HMAC takes any key");
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The request for `rendered`, signed at `now_ms` when the webhook has a secret.
pub(crate) fn request(webhook: &Webhook, rendered: &Rendered, now_ms: i64) -> Outgoing {
    let mut url = webhook.url().to_owned();
    let mut body = rendered.body.clone();
    match (webhook.kind, webhook.secret()) {
        (WebhookKind::DingTalk, Some(secret)) => {
            let sign = dingtalk_sign(secret, now_ms);
            let timestamp = now_ms.to_string();
            let query = serde_urlencoded::to_string([("timestamp", &timestamp), ("sign", &sign)])
                .expect("strings encode");
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&query);
        }
        (WebhookKind::Feishu, Some(secret)) => {
            let timestamp = now_ms.div_euclid(1000);
            if let Some(object) = body.as_object_mut() {
                object.insert("timestamp".into(), timestamp.to_string().into());
                object.insert("sign".into(), feishu_sign(secret, timestamp).into());
            }
        }
        _ => {}
    }
    Outgoing {
        url,
        body: body.to_string().into_bytes(),
    }
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Sent,
    /// Worth another try after a backoff.
    Retry(String),
    /// The robot's rate limit: hold the events, cool down.
    Limited(String, Option<Duration>),
    /// No retry can fix it (signature, keyword, address): count and drop.
    Permanent(String),
}

/// Reads a webhook's answer. WeCom and DingTalk answer `{"errcode":0,…}`, Feishu
/// `{"code":0,…}` (older versions `{"StatusCode":0,…}`); any 2xx is success for JSON.
pub(crate) fn classify(kind: WebhookKind, answer: Result<Answer, String>) -> Outcome {
    let answer = match answer {
        Ok(answer) => answer,
        Err(error) => return Outcome::Retry(error),
    };
    let status = answer.status;
    if status == 429 {
        return Outcome::Limited("HTTP 429".into(), answer.retry_after);
    }
    if !(200..300).contains(&status) {
        let text = format!("HTTP {status}");
        return if status == 408 || status >= 500 {
            Outcome::Retry(text)
        } else {
            Outcome::Permanent(text)
        };
    }
    if kind == WebhookKind::Json {
        return Outcome::Sent;
    }
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(&answer.body) else {
        return Outcome::Retry(format!("HTTP {status}, answer is not JSON"));
    };
    let field = |name: &str| value.get(name).and_then(serde_json::Value::as_i64);
    let code = match kind {
        WebhookKind::Feishu => field("code").or_else(|| field("StatusCode")),
        _ => field("errcode"),
    };
    let Some(code) = code else {
        return Outcome::Retry(format!("HTTP {status}, answer holds no code"));
    };
    if code == 0 {
        return Outcome::Sent;
    }
    let said = ["errmsg", "msg", "StatusMessage"]
        .iter()
        .find_map(|k| value.get(*k).and_then(serde_json::Value::as_str))
        .unwrap_or("");
    let text = format!("code {code}: {}", message::truncate_utf8(said, 200));
    match (kind, code) {
        // WeCom 45009 "api freq out of limit"; DingTalk 130101 / 410100 "send too fast";
        // Feishu 9499 / 11232 "too many requests" / "frequency limited".
        (WebhookKind::WeCom, 45009)
        | (WebhookKind::DingTalk, 130101 | 410100)
        | (WebhookKind::Feishu, 9499 | 11232) => Outcome::Limited(text, answer.retry_after),
        // WeCom 93000 invalid webhook URL; DingTalk 310000 keyword / signature / IP check
        // failed, 300001 token unknown; Feishu 19021 bad signature, 19022 IP not allowed,
        // 19024 keyword not found.
        (WebhookKind::WeCom, 93000)
        | (WebhookKind::DingTalk, 310000 | 300001)
        | (WebhookKind::Feishu, 19021 | 19022 | 19024) => Outcome::Permanent(text),
        _ => Outcome::Retry(text),
    }
}

/// At most `n` requests in any rolling `window`, for each (n, window).
#[derive(Debug, Clone)]
pub(crate) struct RateLimiter {
    limits: Vec<(usize, Duration)>,
    sent: VecDeque<Instant>,
}

impl RateLimiter {
    pub(crate) fn new(limits: Vec<(usize, Duration)>) -> Self {
        RateLimiter {
            limits,
            sent: VecDeque::new(),
        }
    }

    /// The documented limits of each kind.
    pub(crate) fn limits_of(kind: WebhookKind) -> Vec<(usize, Duration)> {
        let minute = Duration::from_secs(60);
        match kind {
            WebhookKind::WeCom | WebhookKind::DingTalk => vec![(20, minute)],
            WebhookKind::Feishu => vec![(100, minute), (5, Duration::from_secs(1))],
            WebhookKind::Json => Vec::new(),
        }
    }

    /// When the next request may go: `None` for now.
    pub(crate) fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        let longest = self.limits.iter().map(|(_, w)| *w).max()?;
        while self.sent.front().is_some_and(|t| *t + longest <= now) {
            self.sent.pop_front();
        }
        let mut ready: Option<Instant> = None;
        for (n, window) in &self.limits {
            let in_window = self.sent.iter().filter(|t| **t + *window > now).count();
            if *n == 0 {
                continue;
            }
            if in_window >= *n {
                // The request n back must leave the window first.
                let at = self.sent[self.sent.len() - n] + *window;
                ready = Some(ready.map_or(at, |r| r.max(at)));
            }
        }
        ready
    }

    pub(crate) fn record(&mut self, at: Instant) {
        if !self.limits.is_empty() {
            self.sent.push_back(at);
        }
    }
}

/// Counters of one webhook, also exported as `wdtpipe_console_alert_messages_total`.
#[derive(Debug, Clone, Default)]
pub(crate) struct Counters {
    /// Messages the webhook accepted.
    pub(crate) sent: Counter,
    /// Messages given up: after the last try, or at once for a permanent error.
    pub(crate) failed: Counter,
    /// Attempts that failed and were tried again (or held back after "too fast").
    pub(crate) retried: Counter,
    /// Events thrown away unsent: the pending buffer overflowed, or held at shutdown.
    pub(crate) dropped: Counter,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<AlertEvent>,
    /// When the oldest pending event arrived: the batch window runs from here.
    first_at: Option<Instant>,
}

#[derive(Debug, Default)]
struct Last {
    error: Option<String>,
    error_at_ms: Option<i64>,
    sent_at_ms: Option<i64>,
}

/// The state one webhook's task shares with the engine and the status page.
#[derive(Debug)]
pub(crate) struct SinkShared {
    /// `kind#position`, e.g. `dingtalk#2`: the metrics label and the page's name.
    pub(crate) name: String,
    pub(crate) webhook: Webhook,
    pub(crate) counters: Counters,
    pending_cap: usize,
    queue: Mutex<Queue>,
    wake: Notify,
    last: Mutex<Last>,
}

impl SinkShared {
    pub(crate) fn new(name: String, webhook: Webhook, counters: Counters, cap: usize) -> Self {
        SinkShared {
            name,
            webhook,
            counters,
            pending_cap: cap.max(1),
            queue: Mutex::new(Queue::default()),
            wake: Notify::new(),
            last: Mutex::new(Last::default()),
        }
    }

    /// Adds events to the pending buffer, dropping (and counting) the oldest past its cap.
    pub(crate) fn push(&self, events: &[AlertEvent]) {
        if events.is_empty() {
            return;
        }
        let mut queue = lock(&self.queue);
        queue.events.extend(events.iter().cloned());
        self.trim(&mut queue);
        queue.first_at.get_or_insert_with(Instant::now);
        drop(queue);
        self.wake.notify_one();
    }

    /// Puts a message's events back in front of the pending ones.
    fn hold(&self, events: Vec<AlertEvent>) {
        let mut queue = lock(&self.queue);
        for event in events.into_iter().rev() {
            queue.events.push_front(event);
        }
        self.trim(&mut queue);
        queue.first_at = Some(Instant::now());
    }

    fn trim(&self, queue: &mut Queue) {
        let over = queue.events.len().saturating_sub(self.pending_cap);
        if over > 0 {
            queue.events.drain(..over);
            self.counters.dropped.inc_by(over as u64);
        }
    }

    fn first_at(&self) -> Option<Instant> {
        lock(&self.queue).first_at
    }

    fn take(&self) -> Vec<AlertEvent> {
        let mut queue = lock(&self.queue);
        queue.first_at = None;
        queue.events.drain(..).collect()
    }

    fn note_error(&self, error: &str) {
        let mut last = lock(&self.last);
        last.error = Some(error.to_owned());
        last.error_at_ms = Some(wdtpipe_common::now_ms());
    }

    /// What the console's pages show of this webhook.
    pub(crate) fn status(&self) -> WebhookStatus {
        let last = lock(&self.last);
        WebhookStatus {
            name: self.name.clone(),
            kind: self.webhook.kind,
            host: self.webhook.host().to_owned(),
            signed: self.webhook.is_signed(),
            sent: self.counters.sent.get(),
            failed: self.counters.failed.get(),
            retried: self.counters.retried.get(),
            dropped: self.counters.dropped.get(),
            pending: lock(&self.queue).events.len(),
            last_error: last.error.clone(),
            last_error_at_ms: last.error_at_ms,
            last_sent_at_ms: last.sent_at_ms,
        }
    }
}

/// A stop signal: set, or its sender gone.
#[derive(Debug, Clone)]
pub(crate) struct Stop(pub(crate) watch::Receiver<bool>);

impl Stop {
    pub(crate) fn is_set(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Completes once stopped.
    pub(crate) async fn wait(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// The delay before try `attempt + 1`: exponential from the base, capped, with jitter
/// (between half and all of it) so that webhooks do not retry in step.
fn backoff(tuning: &Tuning, attempt: u32) -> Duration {
    let exp = tuning
        .backoff_base
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let millis = exp.min(tuning.backoff_cap).as_millis() as u64;
    Duration::from_millis(millis / 2 + rand::rng().random_range(0..=millis - millis / 2))
}

/// Runs one webhook until stopped; on stop, sends what is pending with one try.
pub(crate) async fn run(
    shared: Arc<SinkShared>,
    console_url: String,
    batch_window: Duration,
    tuning: Tuning,
    transport: Transport,
    mut stop: Stop,
) {
    let limits = tuning
        .limits
        .clone()
        .unwrap_or_else(|| RateLimiter::limits_of(shared.webhook.kind));
    let mut limiter = RateLimiter::new(limits);
    let mut cooldown_until: Option<Instant> = None;
    let mut limited_streak: u32 = 0;
    loop {
        let first_at = loop {
            if let Some(at) = shared.first_at() {
                break at;
            }
            if stop.is_set() {
                return;
            }
            tokio::select! {
                () = shared.wake.notified() => {}
                () = stop.wait() => {}
            }
        };
        let mut ready = first_at + batch_window;
        if let Some(until) = cooldown_until {
            ready = ready.max(until);
        }
        if let Some(at) = limiter.ready_at(Instant::now()) {
            ready = ready.max(at);
        }
        if !stop.is_set() {
            tokio::select! {
                () = tokio::time::sleep_until(ready) => {}
                () = stop.wait() => {}
            }
        }
        let stopping = stop.is_set();
        let now = Instant::now();
        let held_back =
            cooldown_until.is_some_and(|until| until > now) || limiter.ready_at(now).is_some();
        let events = shared.take();
        if events.is_empty() {
            continue;
        }
        if stopping && held_back {
            shared.counters.dropped.inc_by(events.len() as u64);
            return;
        }
        let rendered = message::render(
            shared.webhook.kind,
            &console_url,
            &events,
            wdtpipe_common::now_ms(),
        );
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            if let Some(at) = limiter.ready_at(Instant::now()) {
                tokio::select! {
                    () = tokio::time::sleep_until(at) => {}
                    () = stop.wait() => {}
                }
            }
            let outgoing = request(&shared.webhook, &rendered, wdtpipe_common::now_ms());
            limiter.record(Instant::now());
            let outcome = classify(shared.webhook.kind, transport(outgoing).await);
            match outcome {
                Outcome::Sent => {
                    shared.counters.sent.inc();
                    lock(&shared.last).sent_at_ms = Some(wdtpipe_common::now_ms());
                    limited_streak = 0;
                    cooldown_until = None;
                    break;
                }
                Outcome::Limited(error, retry_after) => {
                    shared.note_error(&error);
                    if stop.is_set() {
                        shared.counters.failed.inc();
                        shared.counters.dropped.inc_by(events.len() as u64);
                        break;
                    }
                    shared.counters.retried.inc();
                    tracing::warn!(webhook = %shared.name, host = %shared.webhook.host(), %error,
                        "alert webhook says too fast; holding its events");
                    limited_streak += 1;
                    let pause = tuning
                        .limited_cooldown
                        .saturating_mul(1u32 << (limited_streak - 1).min(10))
                        .min(MAX_COOLDOWN.max(tuning.limited_cooldown))
                        .max(retry_after.unwrap_or_default());
                    cooldown_until = Some(Instant::now() + pause);
                    shared.hold(events);
                    break;
                }
                Outcome::Permanent(error) => {
                    shared.note_error(&error);
                    shared.counters.failed.inc();
                    tracing::warn!(webhook = %shared.name, host = %shared.webhook.host(), %error,
                        "alert webhook refused the message; dropped");
                    break;
                }
                Outcome::Retry(error) => {
                    shared.note_error(&error);
                    if attempt >= tuning.max_tries || stop.is_set() {
                        shared.counters.failed.inc();
                        tracing::warn!(webhook = %shared.name, host = %shared.webhook.host(),
                            %error, attempt, "alert message failed; giving up");
                        break;
                    }
                    shared.counters.retried.inc();
                    tracing::info!(webhook = %shared.name, host = %shared.webhook.host(),
                        %error, attempt, "alert message failed; will retry");
                    tokio::select! {
                        () = tokio::time::sleep(backoff(&tuning, attempt)) => {}
                        () = stop.wait() => {}
                    }
                }
            }
        }
    }
}
