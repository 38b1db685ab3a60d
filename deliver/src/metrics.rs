//! Deliver's Prometheus metrics, served on its metrics address. Counters move with the
//! work; the outbox gauges are read fresh at every scrape.

use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::sync::atomic::AtomicU64;
use wdtpipe_common::metrics::{Counter, Family, Labels, MetricsRegistry, latency_histogram};

#[derive(Debug)]
pub struct DeliverMetrics {
    /// Enqueue calls by outcome (`ok`, `overloaded`, `invalid`, `error`).
    pub enqueues: Family<Labels, Counter>,
    /// Enqueue latency, including the group-commit fsync.
    pub enqueue_seconds: Histogram,
    /// Records acknowledged as duplicates (dedupe hits).
    pub dedupe_hits: Counter,
    /// Calls to WDT by outcome and answer code.
    pub wdt_calls: Family<Labels, Counter>,
    /// WDT call latency.
    pub wdt_seconds: Histogram,
    /// How long a shop's loop waited for its next batch to be read (reads follow one
    /// another, so this bounds how fast calls start).
    pub ready_wait_seconds: Histogram,
    /// How long a call took to write its results back (queue + group commit + fsync).
    pub write_back_seconds: Histogram,
    /// Trades delivered, scheduled for a retry, dead-lettered.
    pub delivered: Counter,
    pub retries: Counter,
    pub dead_letters: Counter,
    /// Outbox state, refreshed at scrape time.
    pub queued_trades: Gauge,
    pub queued_bytes: Gauge,
    pub oldest_queued_age_seconds: Gauge<f64, AtomicU64>,
    pub paused_shops: Gauge,
    pub disk_bytes: Gauge,
    /// Group commits flushed to disk since start (one fsync each).
    pub flushes: Gauge,
    /// Seconds the outbox writer spent committing, and the part in fsync, since start.
    pub writer_busy_seconds: Gauge<f64, AtomicU64>,
    pub writer_flush_seconds: Gauge<f64, AtomicU64>,
    /// 1 while the outbox's writes succeed; 0 while they fail or hang.
    pub outbox_writable: Gauge,
    /// Bytes free for the outbox's directory.
    pub outbox_free_bytes: Gauge,
    /// Group commits that failed since start.
    pub outbox_failed_commits: Gauge,
    /// WDT accounts that do not answer now (probed, their shops waiting).
    pub unreachable_accounts: Gauge,
}

impl DeliverMetrics {
    pub fn new(registry: &mut MetricsRegistry) -> Self {
        let m = Self {
            enqueues: Family::default(),
            enqueue_seconds: latency_histogram(),
            dedupe_hits: Counter::default(),
            wdt_calls: Family::default(),
            wdt_seconds: latency_histogram(),
            ready_wait_seconds: latency_histogram(),
            write_back_seconds: latency_histogram(),
            delivered: Counter::default(),
            retries: Counter::default(),
            dead_letters: Counter::default(),
            queued_trades: Gauge::default(),
            queued_bytes: Gauge::default(),
            oldest_queued_age_seconds: Gauge::default(),
            paused_shops: Gauge::default(),
            disk_bytes: Gauge::default(),
            flushes: Gauge::default(),
            writer_busy_seconds: Gauge::default(),
            writer_flush_seconds: Gauge::default(),
            outbox_writable: Gauge::default(),
            outbox_free_bytes: Gauge::default(),
            outbox_failed_commits: Gauge::default(),
            unreachable_accounts: Gauge::default(),
        };
        registry.register(
            "wdtpipe_deliver_unreachable_accounts",
            "WDT accounts that do not answer now (one probe at a time, their shops waiting)",
            m.unreachable_accounts.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_writable",
            "1 while the outbox's writes succeed, 0 while they fail (disk full) or hang",
            m.outbox_writable.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_free_bytes",
            "Bytes free for the outbox's directory",
            m.outbox_free_bytes.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_failed_commits",
            "Outbox group commits that failed since start",
            m.outbox_failed_commits.clone(),
        );
        registry.register(
            "wdtpipe_deliver_enqueues",
            "Enqueue calls by outcome",
            m.enqueues.clone(),
        );
        registry.register(
            "wdtpipe_deliver_enqueue_seconds",
            "Enqueue latency including the fsync",
            m.enqueue_seconds.clone(),
        );
        registry.register(
            "wdtpipe_deliver_dedupe_hits",
            "Records acknowledged as duplicates",
            m.dedupe_hits.clone(),
        );
        registry.register(
            "wdtpipe_deliver_wdt_calls",
            "trade_push calls by outcome and WDT code",
            m.wdt_calls.clone(),
        );
        registry.register(
            "wdtpipe_deliver_wdt_call_seconds",
            "trade_push call latency",
            m.wdt_seconds.clone(),
        );
        registry.register(
            "wdtpipe_deliver_ready_wait_seconds",
            "Time a shop's loop waited for its next batch to be read from the outbox",
            m.ready_wait_seconds.clone(),
        );
        registry.register(
            "wdtpipe_deliver_write_back_seconds",
            "Time a trade_push call took to write its results back, fsync included",
            m.write_back_seconds.clone(),
        );
        registry.register(
            "wdtpipe_deliver_delivered_trades",
            "Trades WDT accepted",
            m.delivered.clone(),
        );
        registry.register(
            "wdtpipe_deliver_retries",
            "Trades scheduled for another attempt",
            m.retries.clone(),
        );
        registry.register(
            "wdtpipe_deliver_dead_letters",
            "Trades moved to the dead-letter store",
            m.dead_letters.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_queued_trades",
            "Trades waiting",
            m.queued_trades.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_queued_bytes",
            "Payload bytes of the waiting trades",
            m.queued_bytes.clone(),
        );
        registry.register(
            "wdtpipe_deliver_oldest_queued_age_seconds",
            "Age of the oldest waiting trade",
            m.oldest_queued_age_seconds.clone(),
        );
        registry.register(
            "wdtpipe_deliver_paused_shops",
            "Shops paused by a configuration error",
            m.paused_shops.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_disk_bytes",
            "Bytes the outbox takes on disk",
            m.disk_bytes.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_flushes",
            "Group commits flushed to disk since start (one fsync each)",
            m.flushes.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_writer_busy_seconds",
            "Seconds the single outbox writer spent applying and flushing group commits since start; its rate is the writer's load (1 = saturated)",
            m.writer_busy_seconds.clone(),
        );
        registry.register(
            "wdtpipe_deliver_outbox_writer_flush_seconds",
            "Seconds of writer_busy_seconds spent waiting on fsync",
            m.writer_flush_seconds.clone(),
        );
        m
    }

    pub fn enqueue(&self, outcome: &str) {
        self.enqueues
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }

    pub fn wdt_call(&self, outcome: &str, code: Option<i64>) {
        let code = code
            .map(|c| c.to_string())
            .unwrap_or_else(|| "none".to_owned());
        self.wdt_calls
            .get_or_create(&vec![("outcome", outcome.to_owned()), ("code", code)])
            .inc();
    }
}
