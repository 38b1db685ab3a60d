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
}

impl TransformMetrics {
    pub fn new(registry: &mut MetricsRegistry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            deliver_seconds: latency_histogram(),
            trades: Counter::default(),
        };
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
        metrics
    }

    pub fn outcome(&self, outcome: &str) {
        self.requests
            .get_or_create(&vec![("outcome", outcome.to_owned())])
            .inc();
    }
}
