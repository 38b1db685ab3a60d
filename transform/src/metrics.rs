//! Transform's Prometheus metrics.

use prometheus_client::metrics::histogram::Histogram;
use wdtpipe_common::metrics::{Counter, Family, Labels, MetricsRegistry, latency_histogram};

#[derive(Debug)]
pub struct TransformMetrics {
    /// Process calls by outcome (`ok`, `invalid`, or the gRPC code from deliver).
    pub requests: Family<Labels, Counter>,
    /// Latency of the hop to deliver (all shards of one request).
    pub deliver_seconds: Histogram,
    /// Trades produced and forwarded.
    pub trades: Counter,
    /// Records by scheme and outcome (`accepted`, `rejected`, `skipped`).
    pub records: Family<Labels, Counter>,
    /// Reloads of `SCHEMES_DIR` by result (`ok`, `refused`).
    pub reloads: Family<Labels, Counter>,
    /// kuaidi100 pushes by scheme and result (`accepted`, `no_change`, `no_trade`,
    /// `duplicate`, `refused_sign`, `refused`).
    pub kuaidi100: Family<Labels, Counter>,
}

impl TransformMetrics {
    pub fn new(registry: &mut MetricsRegistry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            deliver_seconds: latency_histogram(),
            trades: Counter::default(),
            records: Family::default(),
            reloads: Family::default(),
            kuaidi100: Family::default(),
        };
        registry.register(
            "wdtpipe_transform_kuaidi100_pushes",
            "kuaidi100 pushes by scheme and result",
            metrics.kuaidi100.clone(),
        );
        registry.register(
            "wdtpipe_transform_requests",
            "Process calls by outcome",
            metrics.requests.clone(),
        );
        registry.register(
            "wdtpipe_transform_deliver_call_seconds",
            "Latency of the call to deliver (enqueue and fsync included)",
            metrics.deliver_seconds.clone(),
        );
        registry.register(
            "wdtpipe_transform_trades",
            "Trades mapped and forwarded to deliver",
            metrics.trades.clone(),
        );
        registry.register(
            "wdtpipe_transform_scheme_reloads",
            "Reloads of SCHEMES_DIR by result (ok, refused)",
            metrics.reloads.clone(),
        );
        registry.register(
            "wdtpipe_transform_scheme_records",
            "Records by integration scheme and outcome (accepted, rejected, skipped)",
            metrics.records.clone(),
        );
        metrics
    }

    /// Counts a reload of the schemes directory.
    pub fn reload(&self, result: &str) {
        self.reloads
            .get_or_create(&vec![("result", result.to_owned())])
            .inc();
    }

    /// Records of `scheme` counted with `outcome` since start.
    pub fn records_of(&self, scheme: &str, outcome: &str) -> u64 {
        self.records
            .get(&vec![
                ("scheme", scheme.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .map_or(0, |counter| counter.get())
    }

    /// Counts `n` records of `scheme` with `outcome`.
    pub fn records(&self, scheme: &str, outcome: &str, n: u64) {
        self.records
            .get_or_create(&vec![
                ("scheme", scheme.to_owned()),
                ("outcome", outcome.to_owned()),
            ])
            .inc_by(n);
    }

    pub fn kuaidi100(&self, scheme: &str, result: &str) {
        self.kuaidi100
            .get_or_create(&vec![
                ("scheme", scheme.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }

    pub fn outcome(&self, outcome: &str) {
        self.requests
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }
}
