//! Enqueue: a request's records become versions of their trades, each joining its shop's
//! queue or replacing the waiting version of its tid (latest wins); records and
//! idempotency keys seen within the dedupe window are answered as duplicates.

use super::tally::Share;
use super::txn::Txn;
use super::writer::WriterState;
use super::{Outbox, Result};
use crate::keys::{self, TradeKey};
use prost::Message;
use std::collections::BTreeSet;
use wdtpipe_common::connectors::lane;
use wdtpipe_proto::v1::{
    EnqueueRecord, EnqueueResult, PendingVersion, RecordMeta, TrackingIndex, TradeOrder,
};

/// What an enqueue did.
#[derive(Debug, Default)]
pub struct Enqueued {
    pub results: Vec<EnqueueResult>,
    /// Shops that have new ready work.
    pub ready_shops: BTreeSet<String>,
}

/// A record as the writer takes it: its trades already encoded, on the caller's thread, so
/// that the single writer, which every enqueue and settlement waits on, neither encodes
/// them nor frees the decoded request.
struct RecordToWrite {
    record_id: String,
    received_at_ms: i64,
    source: String,
    transformed_at_ms: i64,
    traceparent: String,
    /// The integration scheme that mapped it, `id@version`.
    scheme: String,
    /// Its scheme skipped it (no trades): the tid it would have had.
    skipped_tid: Option<String>,
    trades: Vec<TradeToWrite>,
    /// The `StockoutRecord` it came from, encoded (empty when the caller sent none): kept
    /// with each of its trades' pending versions, for a dead letter to keep.
    source_record: Vec<u8>,
    /// Its tracking numbers, indexed to its trades for kuaidi100 pushes.
    tracking_numbers: Vec<String>,
}

struct TradeToWrite {
    key: TradeKey,
    /// The `TradeOrder`, encoded.
    encoded: Vec<u8>,
}

impl From<EnqueueRecord> for RecordToWrite {
    fn from(record: EnqueueRecord) -> Self {
        Self {
            trades: record
                .trades
                .iter()
                .map(|trade| TradeToWrite {
                    // A shop is queued apart in each WDT account (its lane).
                    key: TradeKey::new(&trade.tid, &lane(&trade.shop_no, &trade.connector)),
                    encoded: trade.encode_to_vec(),
                })
                .collect(),
            record_id: record.record_id,
            received_at_ms: record.received_at_ms,
            source: record.source,
            transformed_at_ms: record.transformed_at_ms,
            traceparent: record.traceparent,
            scheme: record.scheme,
            skipped_tid: record.skipped.then_some(record.skipped_tid),
            tracking_numbers: record.tracking_numbers,
            source_record: match &record.record {
                Some(source) if !record.skipped => source.encode_to_vec(),
                _ => Vec::new(),
            },
        }
    }
}

impl Outbox {
    /// Writes every record's trades atomically and durably. Records (or a request
    /// idempotency key) seen before are reported as duplicates and not queued again.
    pub async fn enqueue(
        &self,
        records: Vec<EnqueueRecord>,
        idempotency_key: String,
        now_ms: i64,
    ) -> Result<Enqueued> {
        self.enqueue_request(records, idempotency_key, String::new(), now_ms)
            .await
    }

    /// [`Outbox::enqueue`], remembering the ingest request id for status.
    pub async fn enqueue_request(
        &self,
        records: Vec<EnqueueRecord>,
        idempotency_key: String,
        request_id: String,
        now_ms: i64,
    ) -> Result<Enqueued> {
        // Encoded here, on the caller's thread (see `RecordToWrite`).
        let records: Vec<RecordToWrite> = records.into_iter().map(RecordToWrite::from).collect();
        self.write(move |txn, state| {
            enqueue(txn, state, records, &idempotency_key, &request_id, now_ms)
        })
        .await
    }
}

fn enqueue(
    txn: &mut Txn<'_>,
    state: &mut WriterState,
    records: Vec<RecordToWrite>,
    idempotency_key: &str,
    request_id: &str,
    now_ms: i64,
) -> Result<Enqueued> {
    let retention = &state.retention;
    let mut done = Enqueued::default();
    // Seen within the dedupe window (an expired record not yet swept does not count).
    let seen = |txn: &Txn<'_>, key: &[u8]| -> Result<bool> {
        Ok(txn
            .get_msg::<RecordMeta>(key)?
            .is_some_and(|meta| meta.accepted_at_ms + retention.dedupe_ms() > now_ms))
    };
    let request_seen =
        !idempotency_key.is_empty() && seen(txn, &keys::idempotency_key(idempotency_key))?;
    let mut all_tids = Vec::new();
    for record in records {
        let duplicate = request_seen || seen(txn, &keys::record_key(&record.record_id))?;
        done.results.push(EnqueueResult {
            record_id: record.record_id.clone(),
            duplicate,
        });
        if duplicate {
            continue;
        }
        let mut tids: Vec<String> = record.trades.iter().map(|t| t.key.tid.clone()).collect();
        let meta = |tids: Vec<String>| RecordMeta {
            accepted_at_ms: now_ms,
            tids,
            source: record.source.clone(),
            request_id: request_id.to_owned(),
            traceparent: record.traceparent.clone(),
            received_at_ms: record.received_at_ms,
            transformed_at_ms: record.transformed_at_ms,
            scheme: record.scheme.clone(),
            record_id: record.record_id.clone(),
            skipped: record.skipped_tid.is_some(),
        };
        if let Some(tid) = record.skipped_tid.as_ref().filter(|t| !t.is_empty()) {
            // Nothing to push: remember for the tid's status that its scheme skipped it.
            tids.push(tid.clone());
            txn.put_msg(keys::skipped_key(tid), &meta(vec![tid.clone()]));
        }
        for number in &record.tracking_numbers {
            if let Some(trade) = record.trades.first() {
                let index = TrackingIndex {
                    tid: trade.key.tid.clone(),
                    lane: trade.key.shop_no.clone(),
                    accepted_at_ms: now_ms,
                };
                txn.put_msg(keys::tracking_key(number), &index);
            }
        }
        for TradeToWrite { key, mut encoded } in record.trades {
            let seq = state.next_seq;
            state.next_seq += 1;
            let mut entry = txn.entry_or_new(&key)?;
            let before = Share::of(&entry);
            if entry.signed_status != 0 {
                // A kuaidi100 sign-off moved the order on: WDT does not move it back.
                encoded = keep_signed_status(&encoded, entry.signed_status)?;
            }
            let version = PendingVersion {
                seq,
                record_id: record.record_id.clone(),
                received_at_ms: record.received_at_ms,
                trade: encoded,
                transformed_at_ms: record.transformed_at_ms,
                enqueued_at_ms: now_ms,
                request_id: request_id.to_owned(),
                record: record.source_record.clone(),
                scheme: record.scheme.clone(),
            };
            // A newer version of a waiting tid takes the older one's place (latest wins);
            // otherwise it joins the back of its shop's queue.
            if txn.queue_version(&mut entry, version, || seq) {
                done.ready_shops.insert(key.shop_no.clone());
            }
            entry.transformed_at_ms = record.transformed_at_ms;
            entry.enqueued_at_ms = now_ms;
            entry.request_id = request_id.to_owned();
            entry.scheme.clone_from(&record.scheme);
            entry.versions += 1;
            entry.record_id.clone_from(&record.record_id);
            entry.received_at_ms = record.received_at_ms;
            txn.put_entry(key.entry_key(), before, &entry);
        }
        txn.put_msg(keys::record_key(&record.record_id), &meta(tids.clone()));
        all_tids.extend(tids);
    }
    if !idempotency_key.is_empty() && !request_seen {
        let meta = RecordMeta {
            accepted_at_ms: now_ms,
            tids: all_tids,
            request_id: request_id.to_owned(),
            ..RecordMeta::default()
        };
        txn.put_msg(keys::idempotency_key(idempotency_key), &meta);
    }
    Ok(done)
}

/// A trade with `signed` as its status, and its lines' except those refunded (80); an
/// order already at 80 or 90, or past `signed`, is left as it is.
pub(super) fn with_status(mut trade: TradeOrder, signed: i32) -> Option<TradeOrder> {
    if matches!(trade.trade_status, 80 | 90) || trade.trade_status >= signed {
        return None;
    }
    trade.trade_status = signed;
    for line in &mut trade.order_list {
        if line.status != 80 {
            line.status = signed;
        }
    }
    Some(trade)
}

/// An encoded trade with the status a sign-off gave its tid (see [`with_status`]).
fn keep_signed_status(encoded: &[u8], signed: i32) -> Result<Vec<u8>> {
    let trade: TradeOrder = super::decode(encoded)?;
    Ok(match with_status(trade, signed) {
        Some(moved) => moved.encode_to_vec(),
        None => encoded.to_vec(),
    })
}
