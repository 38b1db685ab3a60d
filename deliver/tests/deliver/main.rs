//! deliver's integration tests, one module per concern, in one test binary (the workspace
//! is linked once for all of them): the outbox on real sled directories (`outbox`, its
//! model-based test `outbox_model`, the ready-queue copies `mirror`), delivery to the WDT
//! sandbox over real HTTP (`delivery`), to a scripted WDT (`pipelining`, `schedule`, both
//! on `scripted`), and the real `deliver` binary (`admin`, `sigkill`).

mod admin;
mod delivery;
mod mirror;
mod outbox;
mod outbox_model;
mod pipelining;
mod schedule;
mod scripted;
mod sigkill;

/// What the engine tests start delivery with: WDT's throttling code 1040 retryable (unless
/// told otherwise), batches of 50, no sweep during a test.
fn settings(
    retry: wdtpipe_deliver::config::RetryPolicy,
    calls_per_shop: usize,
    retryable_codes: Vec<i64>,
) -> wdtpipe_deliver::delivery::DeliverySettings {
    wdtpipe_deliver::delivery::DeliverySettings {
        classifier: wdtpipe_deliver::classify::Classifier {
            retryable_codes,
            config_codes: vec![],
        },
        metrics: std::sync::Arc::new(wdtpipe_deliver::metrics::DeliverMetrics::new(
            &mut Default::default(),
        )),
        retry,
        batch_size: 50,
        calls_per_shop,
        sweep_interval: std::time::Duration::from_secs(3600),
    }
}
