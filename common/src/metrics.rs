//! Prometheus metrics plumbing: a registry per service, label helpers, the latency buckets
//! every hop uses, and the `/metrics` endpoint (on ingest's HTTP address; on a metrics
//! address for transform and deliver).

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

pub use prometheus_client::metrics::counter::Counter;
pub use prometheus_client::metrics::family::Family;
pub use prometheus_client::metrics::gauge::Gauge;
pub use prometheus_client::registry::Registry as MetricsRegistry;

/// Label pairs of a metric family.
pub type Labels = Vec<(&'static str, String)>;

/// A latency histogram in seconds, 0.5 ms to about 16 s.
pub fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Something that brings gauges up to date right before a scrape.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// The content type of `/metrics`.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The registry rendered as Prometheus (OpenMetrics) text.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    encode(&mut out, registry).expect("writing to a String cannot fail");
    out
}

/// A router serving `GET /metrics`.
pub fn router(registry: Arc<Registry>, refresh: Option<Refresh>) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let (registry, refresh) = (registry.clone(), refresh.clone());
            async move {
                if let Some(refresh) = refresh {
                    refresh();
                }
                ([(header::CONTENT_TYPE, CONTENT_TYPE)], render(&registry)).into_response()
            }
        }),
    )
}

/// Serves `GET /metrics` on its own listener until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Arc<Registry>,
    refresh: Option<Refresh>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(registry, refresh))
        .with_graceful_shutdown(shutdown)
        .await
}
