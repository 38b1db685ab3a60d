//! Reading deliver's `Stats` answer in tests.

use wdtpipe_proto::v1::ShopStats;

/// The trades waiting at deliver over every shop of a `Stats` answer (queued, retrying or
/// in a call right now), and whether `shop` is paused.
pub fn backlog_and_paused(shops: &[ShopStats], shop: &str) -> (u64, bool) {
    let backlog = shops
        .iter()
        .map(|s| s.queued + s.retrying + s.in_flight)
        .sum();
    let paused = shops
        .iter()
        .any(|s| s.shop_no == shop && !s.paused_reason.is_empty());
    (backlog, paused)
}
