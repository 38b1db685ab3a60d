//! Ingest's Prometheus metrics, served at `GET /metrics` on the callback address.

use prometheus_client::metrics::histogram::Histogram;
use wdtpipe_common::metrics::{Counter, Family, Labels, MetricsRegistry, latency_histogram};

#[derive(Debug)]
pub(crate) struct IngestMetrics {
    /// Callbacks by HTTP status.
    pub requests: Family<Labels, Counter>,
    /// Callback latency, end to end (on disk at deliver when 200).
    pub request_seconds: Histogram,
    /// Latency of the hop to transform (and on through deliver).
    pub transform_seconds: Histogram,
    /// Records accepted, and those acknowledged as duplicates.
    pub records: Counter,
    pub duplicates: Counter,
    /// HMACs computed over callback bodies to check sender signatures (at most one per
    /// configured secret per callback, whatever the sender puts in its header).
    pub signature_macs: Counter,
}

impl IngestMetrics {
    pub(crate) fn new(registry: &mut MetricsRegistry) -> Self {
        let m = Self {
            requests: Family::default(),
            request_seconds: latency_histogram(),
            transform_seconds: latency_histogram(),
            records: Counter::default(),
            duplicates: Counter::default(),
            signature_macs: Counter::default(),
        };
        registry.register(
            "wdtpipe_ingest_requests",
            "Callbacks by HTTP status",
            m.requests.clone(),
        );
        registry.register(
            "wdtpipe_ingest_request_seconds",
            "Callback latency, end to end",
            m.request_seconds.clone(),
        );
        registry.register(
            "wdtpipe_ingest_transform_call_seconds",
            "Latency of the call to transform (through deliver's fsync)",
            m.transform_seconds.clone(),
        );
        registry.register(
            "wdtpipe_ingest_records",
            "Records accepted",
            m.records.clone(),
        );
        registry.register(
            "wdtpipe_ingest_duplicate_records",
            "Records acknowledged as duplicates (dedupe hits)",
            m.duplicates.clone(),
        );
        registry.register(
            "wdtpipe_ingest_signature_macs",
            "HMACs computed over callback bodies to check sender signatures",
            m.signature_macs.clone(),
        );
        m
    }

    pub(crate) fn status(&self, status: u16) {
        self.requests
            .get_or_create(&vec![("status", status.to_string())])
            .inc();
    }
}
