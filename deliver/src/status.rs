//! What `GetStatus` and `GetRecord` say of a tid: an outbox entry (or a skip note) as a
//! `TradeStatus`.

use crate::error::DeliverError;
use crate::store::pending_trade;
use wdtpipe_common::connectors::split_lane;
use wdtpipe_proto::v1::{DeliveryState, OutboxEntry, RecordMeta, TradeOrder, TradeStatus};

/// The status of a tid whose latest record its scheme skipped.
pub(crate) fn skipped_status(tid: &str, note: RecordMeta, shard: &str) -> TradeStatus {
    TradeStatus {
        tid: tid.to_owned(),
        state: DeliveryState::Skipped as i32,
        record_id: note.record_id,
        received_at_ms: note.received_at_ms,
        last_error: format!(
            "skipped by scheme {} (its skip expression was true)",
            note.scheme
        ),
        transformed_at_ms: note.transformed_at_ms,
        enqueued_at_ms: note.accepted_at_ms,
        request_id: note.request_id,
        shard: shard.to_owned(),
        scheme: note.scheme,
        ..TradeStatus::default()
    }
}

pub(crate) fn status_of(
    entry: OutboxEntry,
    shop_paused: String,
    shard: &str,
) -> Result<TradeStatus, DeliverError> {
    let trade = entry.pending.as_ref().map(pending_trade).transpose()?;
    let delivered_trade = match entry.delivered_trade.as_slice() {
        [] => None,
        bytes => Some(crate::store::decode::<TradeOrder>(bytes)?),
    };
    let state = DeliveryState::try_from(entry.state).unwrap_or(DeliveryState::Unspecified);
    let (shop_no, connector) = shop_and_connector(&entry.shop_no);
    Ok(TradeStatus {
        tid: entry.tid,
        shop_no,
        connector,
        storage_error: String::new(),
        tracking: entry.tracking.clone(),
        state: state as i32,
        record_id: entry.record_id,
        received_at_ms: entry.received_at_ms,
        attempts: entry.attempts,
        // Why it died, or else why its last attempt failed.
        last_error: if entry.dead_reason.is_empty() {
            entry.last_error
        } else {
            entry.dead_reason
        },
        next_attempt_at_ms: entry.next_attempt_at_ms,
        delivered_at_ms: entry.delivered_at_ms,
        new_count: entry.new_count,
        chg_count: entry.chg_count,
        history: entry.history,
        versions: entry.versions,
        trade,
        delivered_trade,
        shop_paused,
        transformed_at_ms: entry.transformed_at_ms,
        enqueued_at_ms: entry.enqueued_at_ms,
        request_id: entry.request_id,
        shard: shard.to_owned(),
        scheme: entry.scheme,
    })
}

/// The shop and the account (empty for `default`) of a lane, as the answers name them:
/// the outbox keys each shop per account (`connectors::lane`).
pub(crate) fn shop_and_connector(lane: &str) -> (String, String) {
    let (shop_no, connector) = split_lane(lane);
    (shop_no.to_owned(), connector.to_owned())
}
