//! Alerts to work chat: WeCom, DingTalk and Feishu robots and a generic JSON webhook.
//!
//! The console samples every deliver shard about every 2 s and hands what it saw to
//! [`Alerter::observe`], which never waits: the observation goes into a one-slot inbox
//! (newer lanes replace older ones, new dead letters add up, grouped). One engine task
//! turns observations into alert events with the rules (new dead letters grouped per
//! shop and reason, a paused shop, the oldest waiting trade past `oldest_secs`, and each
//! one's resolution), and hands the events to one task per webhook, which batches,
//! rate-limits, signs, sends and retries. So a robot that is down slows neither delivery
//! (which never sees it) nor the other robots.
//!
//! Metrics: `wdtpipe_console_alert_messages_total{webhook, result}` (result `sent`,
//! `failed`, `retried` count messages and attempts; `dropped` counts events thrown away
//! unsent) and `wdtpipe_console_alerts_firing`.

mod config;
mod message;
mod rules;
mod sink;
#[cfg(test)]
mod tests;

pub use config::{AlertConfigError, Webhook, WebhookKind, parse_webhooks};

use rules::{AlertEvent, Batch, EventState, Rules};
use sink::{Counters, SinkShared, Stop, Transport};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use wdtpipe_common::metrics::{Counter, Family, Gauge, Labels, MetricsRegistry};

/// `ALERT_OLDEST_SECS` when unset: alert when a trade has waited 10 minutes.
pub const DEFAULT_OLDEST_SECS: u64 = 600;

/// Events within this window of the first go in one message.
pub const DEFAULT_BATCH_WINDOW: Duration = Duration::from_secs(5);

/// What the alerter needs to know.
#[derive(Debug, Clone)]
pub struct AlertSettings {
    /// Where alerts go (`ALERT_WEBHOOKS`); none turns alerting off.
    pub webhooks: Vec<Webhook>,
    /// Alert when the oldest waiting trade of a shop is older than this (`ALERT_OLDEST_SECS`,
    /// default 600).
    pub oldest_secs: u64,
    /// Base URL of the console for the links in messages, e.g. `http://127.0.0.1:8081`.
    pub console_url: String,
    /// Events within this window of the first go in one message (default 5 s).
    pub batch_window: Duration,
}

impl AlertSettings {
    /// Settings with the defaults for `oldest_secs` and `batch_window`.
    pub fn new(webhooks: Vec<Webhook>, console_url: impl Into<String>) -> Self {
        AlertSettings {
            webhooks,
            oldest_secs: DEFAULT_OLDEST_SECS,
            console_url: console_url.into(),
            batch_window: DEFAULT_BATCH_WINDOW,
        }
    }
}

/// What the console saw on one tick (it samples every deliver shard's Stats every ~2 s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observation {
    /// When it was seen (Unix ms).
    pub at_ms: i64,
    /// Every lane of every shard; a lane left out counts as no longer paused or waiting.
    pub lanes: Vec<LaneObservation>,
    /// Dead letters that appeared since the previous observation.
    pub new_dead_letters: Vec<DeadNote>,
}

/// One lane (connector, shop) as a deliver shard reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneObservation {
    /// Connector name; empty for the default connector.
    pub connector: String,
    /// The WDT shop number.
    pub shop_no: String,
    /// Dead letters the lane holds now.
    pub dead_letters: u64,
    /// WDT's reason the shop is paused, verbatim; empty when it is not paused.
    pub paused_reason: String,
    /// Age of the oldest trade waiting to be delivered (ms); 0 when none waits.
    pub oldest_age_ms: i64,
}

/// One new dead letter.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeadNote {
    /// Connector name; empty for the default connector.
    pub connector: String,
    /// The WDT shop number.
    pub shop_no: String,
    /// The trade id.
    pub tid: String,
    /// Why it was given up (WDT's message or deliver's).
    pub reason: String,
    /// When it was given up (Unix ms).
    pub dead_at_ms: i64,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// New dead letters; resolved when the lane holds none.
    DeadLetters,
    /// WDT paused the shop; resolved when it delivers again.
    ShopPaused,
    /// The oldest waiting trade is older than `oldest_secs`; resolved when it is not.
    OldestWaiting,
}

impl AlertKind {
    /// `dead_letters`, `shop_paused` or `oldest_waiting`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::DeadLetters => "dead_letters",
            AlertKind::ShopPaused => "shop_paused",
            AlertKind::OldestWaiting => "oldest_waiting",
        }
    }
}

/// An alert firing now.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FiringAlert {
    /// What it is about.
    pub kind: AlertKind,
    /// Connector name; empty for the default connector.
    pub connector: String,
    /// The WDT shop number.
    pub shop_no: String,
    /// One line, Chinese and English, as in the messages.
    pub summary: String,
    /// When it started firing (Unix ms).
    pub since_ms: i64,
}

/// One webhook's counts and last error. Shows kind and host only: URLs hold tokens.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WebhookStatus {
    /// `kind#position` in `ALERT_WEBHOOKS`, e.g. `dingtalk#2`; the metrics' label.
    pub name: String,
    /// Its kind.
    pub kind: WebhookKind,
    /// Host (and port) it sends to.
    pub host: String,
    /// Whether its requests are signed.
    pub signed: bool,
    /// Messages accepted.
    pub sent: u64,
    /// Messages given up (after the last try, or at once when refused for good).
    pub failed: u64,
    /// Failed attempts that were tried again.
    pub retried: u64,
    /// Events thrown away unsent (the pending buffer overflowed, or at shutdown).
    pub dropped: u64,
    /// Events waiting for the next message.
    pub pending: usize,
    /// The last failure, without URL or token.
    pub last_error: Option<String>,
    /// When it happened (Unix ms).
    pub last_error_at_ms: Option<i64>,
    /// When a message was last accepted (Unix ms).
    pub last_sent_at_ms: Option<i64>,
}

/// Counters and the current firing alerts, for the console's pages.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AlertStatus {
    /// Whether any webhook is configured.
    pub enabled: bool,
    /// Alerts firing now, by kind then lane.
    pub firing: Vec<FiringAlert>,
    /// One entry per configured webhook, in `ALERT_WEBHOOKS` order.
    pub webhooks: Vec<WebhookStatus>,
}

/// Knobs the tests turn; [`Tuning::default`] is production.
#[derive(Clone)]
pub(crate) struct Tuning {
    pub(crate) request_timeout: Duration,
    pub(crate) backoff_base: Duration,
    pub(crate) backoff_cap: Duration,
    /// Tries per message, the first included.
    pub(crate) max_tries: u32,
    /// First cool-down after a robot said "too fast"; doubles while it keeps saying so.
    pub(crate) limited_cooldown: Duration,
    /// Events a webhook holds at most while it cannot send.
    pub(crate) pending_cap: usize,
    /// How long [`Alerter::stop`] waits for the last messages.
    pub(crate) drain_timeout: Duration,
    /// Rate limits for every webhook instead of each kind's documented ones.
    pub(crate) limits: Option<Vec<(usize, Duration)>>,
    /// Instead of HTTP.
    pub(crate) transport: Option<Transport>,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            request_timeout: Duration::from_secs(10),
            backoff_base: Duration::from_secs(1),
            backoff_cap: Duration::from_secs(60),
            max_tries: 6,
            limited_cooldown: Duration::from_secs(60),
            pending_cap: 1000,
            drain_timeout: Duration::from_secs(5),
            limits: None,
            transport: None,
        }
    }
}

/// Observations waiting for the engine: one merged batch at most.
#[derive(Debug, Default)]
struct Inbox {
    batch: Mutex<Option<Batch>>,
    wake: Notify,
}

struct Inner {
    enabled: bool,
    inbox: Arc<Inbox>,
    firing: Arc<Mutex<Vec<FiringAlert>>>,
    sinks: Vec<Arc<SinkShared>>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    drain_timeout: Duration,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // The last handle gone without stop(): let the tasks finish on their own.
        let _ = self.stop.send(true);
    }
}

/// Handle the console holds; cheap to clone.
#[derive(Clone)]
pub struct Alerter {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Alerter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Alerter")
            .field("enabled", &self.inner.enabled)
            .field(
                "webhooks",
                &self.inner.sinks.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Locks `mutex`, going on with its data if a panic elsewhere poisoned it (used by the
/// sinks too).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Alerter {
    /// Starts the background task(s) (on the current tokio runtime) and registers the
    /// metrics; with no webhooks, no task starts and observe() is a no-op.
    pub fn start(settings: AlertSettings, registry: &mut MetricsRegistry) -> Alerter {
        Self::start_tuned(settings, registry, Tuning::default())
    }

    pub(crate) fn start_tuned(
        settings: AlertSettings,
        registry: &mut MetricsRegistry,
        tuning: Tuning,
    ) -> Alerter {
        let messages = Family::<Labels, Counter>::default();
        let firing_gauge = Gauge::<i64>::default();
        registry.register(
            "wdtpipe_console_alert_messages",
            "Alert messages by webhook and result (sent, failed, retried; dropped counts events)",
            messages.clone(),
        );
        registry.register(
            "wdtpipe_console_alerts_firing",
            "Alerts firing now (dead letters, paused shops, old waiting trades)",
            firing_gauge.clone(),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let enabled = !settings.webhooks.is_empty();
        let sinks: Vec<Arc<SinkShared>> = settings
            .webhooks
            .iter()
            .enumerate()
            .map(|(i, webhook)| {
                let name = format!("{}#{}", webhook.kind, i + 1);
                let counter = |result: &str| {
                    let labels: Labels = vec![("webhook", name.clone()), ("result", result.into())];
                    messages.get_or_create(&labels).clone()
                };
                let counters = Counters {
                    sent: counter("sent"),
                    failed: counter("failed"),
                    retried: counter("retried"),
                    dropped: counter("dropped"),
                };
                Arc::new(SinkShared::new(
                    name.clone(),
                    webhook.clone(),
                    counters,
                    tuning.pending_cap,
                ))
            })
            .collect();
        let inner = Inner {
            enabled,
            inbox: Arc::new(Inbox::default()),
            firing: Arc::new(Mutex::new(Vec::new())),
            sinks,
            stop: stop_tx,
            tasks: Mutex::new(Vec::new()),
            drain_timeout: tuning.drain_timeout,
        };
        if enabled {
            let transport = tuning
                .transport
                .clone()
                .unwrap_or_else(|| sink::http_transport(tuning.request_timeout));
            // The webhooks stop once the engine has handed them its last events.
            let (sink_stop_tx, sink_stop_rx) = watch::channel(false);
            let mut tasks = Vec::new();
            for shared in &inner.sinks {
                tasks.push(tokio::spawn(sink::run(
                    shared.clone(),
                    settings.console_url.clone(),
                    settings.batch_window,
                    tuning.clone(),
                    transport.clone(),
                    Stop(sink_stop_rx.clone()),
                )));
            }
            tasks.push(tokio::spawn(engine(
                inner.inbox.clone(),
                Rules::new(settings.oldest_secs),
                inner.sinks.clone(),
                inner.firing.clone(),
                firing_gauge,
                Stop(stop_rx),
                sink_stop_tx,
            )));
            *lock(&inner.tasks) = tasks;
        }
        Alerter {
            inner: Arc::new(inner),
        }
    }

    /// Never blocks or awaits: hands the observation to the alert task. If the task is
    /// behind, the newest observation's lanes win and dead notes are merged (grouped, so
    /// the held state stays bounded).
    pub fn observe(&self, observation: Observation) {
        if !self.inner.enabled {
            return;
        }
        lock(&self.inner.inbox.batch)
            .get_or_insert_with(Batch::default)
            .merge(observation);
        self.inner.inbox.wake.notify_one();
    }

    /// Counters and the current firing alerts, for the console's pages.
    pub fn status(&self) -> AlertStatus {
        AlertStatus {
            enabled: self.inner.enabled,
            firing: lock(&self.inner.firing).clone(),
            webhooks: self.inner.sinks.iter().map(|s| s.status()).collect(),
        }
    }

    /// Stops sending: the last observation is evaluated and what is pending goes out with
    /// one try each, within a short timeout; then the tasks are ended.
    pub async fn stop(self) {
        let _ = self.inner.stop.send(true);
        let tasks = std::mem::take(&mut *lock(&self.inner.tasks));
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = futures_util::future::join_all(tasks);
        if tokio::time::timeout(self.inner.drain_timeout, all)
            .await
            .is_err()
        {
            tracing::warn!("alert webhooks did not finish in time; pending alerts dropped");
            for abort in aborts {
                abort.abort();
            }
        }
    }
}

/// The engine: takes batches from the inbox, applies the rules, fans events out.
async fn engine(
    inbox: Arc<Inbox>,
    mut rules: Rules,
    sinks: Vec<Arc<SinkShared>>,
    firing_out: Arc<Mutex<Vec<FiringAlert>>>,
    firing_gauge: Gauge,
    mut stop: Stop,
    sinks_stop: watch::Sender<bool>,
) {
    loop {
        let stopping = tokio::select! {
            () = inbox.wake.notified() => false,
            () = stop.wait() => true,
        };
        let batch = lock(&inbox.batch).take();
        if let Some(batch) = batch {
            let events = rules.apply(batch);
            let firing = firing_alerts(&rules);
            firing_gauge.set(firing.len() as i64);
            *lock(&firing_out) = firing;
            if !events.is_empty() {
                tracing::debug!(events = events.len(), "alert events");
                for sink in &sinks {
                    sink.push(&events);
                }
            }
        }
        if stopping {
            break;
        }
    }
    let _ = sinks_stop.send(true);
}

fn firing_alerts(rules: &Rules) -> Vec<FiringAlert> {
    rules
        .firing()
        .iter()
        .map(|((kind, (connector, shop_no)), firing)| {
            let event = AlertEvent {
                state: EventState::Firing,
                kind: *kind,
                connector: connector.clone(),
                shop_no: shop_no.clone(),
                detail: firing.detail.clone(),
                since_ms: firing.since_ms,
                at_ms: firing.since_ms,
            };
            FiringAlert {
                kind: *kind,
                connector: connector.clone(),
                shop_no: shop_no.clone(),
                summary: message::summary(&event),
                since_ms: firing.since_ms,
            }
        })
        .collect()
}
