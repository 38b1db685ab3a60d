//! kuaidi100 pushes (`Deliver.Track`): the parcel's latest state kept with its tid, and a
//! sign-off queued as the tid's newest version with the scheme's `trade_status` (70,
//! completed) — its latest version, waiting or delivered, with that status and its lines'
//! (refunded lines, at 80, kept). WDT does not move an order back, so the tid's later
//! versions keep that status (see `enqueue::keep_signed_status`), and an order at 80 or 90
//! is not moved: that is recorded, not pushed.
//!
//! The tid is the one the push names, else the latest trade whose record carried the
//! tracking number (the `n/` index). A push for a number no trade carried is kept as a dead
//! letter; replay applies it again once the trade is known.

use super::enqueue::with_status;
use super::tally::Share;
use super::txn::Txn;
use super::writer::WriterState;
use super::{Outbox, Result, decode};
use crate::keys::{self, TradeKey};
use prost::Message;
use std::collections::BTreeSet;
use wdtpipe_common::connectors::{DEFAULT, split_lane};
use wdtpipe_proto::v1::{
    DeadLetter, OutboxEntry, PendingVersion, RecordMeta, TrackResult, TrackWrite, TrackingIndex,
    TrackingNote, TradeOrder,
};

/// What a push did, and the shops that got work.
#[derive(Debug, Default)]
pub struct Tracked {
    pub result: TrackResult,
    pub ready_shops: BTreeSet<String>,
}

impl Outbox {
    /// Applies a kuaidi100 push (see the module).
    pub async fn track(&self, write: TrackWrite, now_ms: i64) -> Result<Tracked> {
        self.write(move |txn, state| track(txn, state, &write, now_ms))
            .await
    }
}

/// The entry a push is for: the tid it names (in the scheme's account, the latest if the
/// tid is in several shops), else the trade indexed under its tracking number.
fn find(txn: &Txn<'_>, write: &TrackWrite) -> Result<Option<(Vec<u8>, OutboxEntry)>> {
    let tid = if write.tid.is_empty() {
        if write.tracking_number.is_empty() {
            return Ok(None);
        }
        match txn.get_msg::<TrackingIndex>(&keys::tracking_key(&write.tracking_number))? {
            Some(index) => {
                let key = TradeKey::new(&index.tid, &index.lane).entry_key();
                return Ok(txn.get_msg::<OutboxEntry>(&key)?.map(|entry| (key, entry)));
            }
            None => return Ok(None),
        }
    } else {
        write.tid.clone()
    };
    let connector = match write.connector.as_str() {
        DEFAULT => "",
        other => other,
    };
    let mut best: Option<(Vec<u8>, OutboxEntry)> = None;
    for item in txn.tree.scan_prefix(keys::entry_prefix(&tid)) {
        let (key, _) = item?;
        let Some(entry) = txn.get_msg::<OutboxEntry>(&key)? else {
            continue;
        };
        if split_lane(&entry.shop_no).1 != connector {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(_, b)| entry.received_at_ms > b.received_at_ms)
        {
            best = Some((key.to_vec(), entry));
        }
    }
    Ok(best)
}

pub(super) fn track(
    txn: &mut Txn<'_>,
    state: &mut WriterState,
    write: &TrackWrite,
    now_ms: i64,
) -> Result<Tracked> {
    let mut done = Tracked::default();
    let seen = keys::record_key(&write.push_id);
    if !write.push_id.is_empty() && txn.get_msg::<RecordMeta>(&seen)?.is_some() {
        done.result.outcome = "duplicate".into();
        done.result.tid.clone_from(&write.tid);
        return Ok(done);
    }
    let Some((entry_key, mut entry)) = find(txn, write)? else {
        if !write.dead_if_unknown {
            done.result.outcome = "unknown".into();
            return Ok(done);
        }
        let reason = format!(
            "kuaidi100: no trade known for tracking number {:?}{}; replay once the order has come",
            write.tracking_number,
            if write.tid.is_empty() {
                String::new()
            } else {
                format!(" (tid {})", write.tid)
            }
        );
        let tid = if write.tid.is_empty() {
            format!("kuaidi100:{}", write.tracking_number)
        } else {
            write.tid.clone()
        };
        let seq = state.take_seq();
        let letter = DeadLetter {
            tid: tid.clone(),
            seq,
            record_id: write.push_id.clone(),
            received_at_ms: write.received_at_ms,
            dead_at_ms: now_ms,
            reason: reason.clone(),
            scheme: write.scheme.clone(),
            track: Some(write.clone()),
            ..DeadLetter::default()
        };
        txn.put_dead(keys::dead_key(&TradeKey::new(&tid, ""), seq), &letter)?;
        done.result = TrackResult {
            outcome: "no_trade".into(),
            tid,
            shop_no: String::new(),
            message: reason,
        };
        return Ok(done);
    };
    done.result.tid.clone_from(&entry.tid);
    done.result.shop_no = split_lane(&entry.shop_no).0.to_owned();
    let before = Share::of(&entry);
    let (outcome, message) = if write.sign_off {
        sign_off(txn, state, write, &mut entry, now_ms, &mut done)?
    } else {
        (
            "no_change",
            format!(
                "state {} is not one of the scheme's sign-off states",
                write.state
            ),
        )
    };
    entry.tracking = Some(TrackingNote {
        number: write.tracking_number.clone(),
        carrier: write.carrier.clone(),
        state: write.state.clone(),
        event_time: write.event_time.clone(),
        event_context: write.event_context.clone(),
        at_ms: now_ms,
        outcome: if outcome == "pushed" {
            format!("pushed with trade_status {}", write.trade_status)
        } else {
            message.clone()
        },
    });
    txn.put_entry(entry_key, before, &entry);
    let meta = RecordMeta {
        accepted_at_ms: now_ms,
        tids: vec![entry.tid.clone()],
        source: "kuaidi100".into(),
        request_id: write.request_id.clone(),
        received_at_ms: write.received_at_ms,
        scheme: write.scheme.clone(),
        record_id: write.push_id.clone(),
        ..RecordMeta::default()
    };
    if !write.push_id.is_empty() {
        txn.put_msg(seen, &meta);
    }
    done.result.outcome = outcome.into();
    done.result.message = message;
    Ok(done)
}

/// A sign-off: the latest version with the new status, queued as the newest version; or
/// why nothing is pushed.
fn sign_off(
    txn: &mut Txn<'_>,
    state: &mut WriterState,
    write: &TrackWrite,
    entry: &mut OutboxEntry,
    now_ms: i64,
    done: &mut Tracked,
) -> Result<(&'static str, String)> {
    let latest = match &entry.pending {
        Some(pending) => Some(pending.trade.clone()),
        None if !entry.delivered_trade.is_empty() => Some(entry.delivered_trade.clone()),
        None => None,
    };
    let Some(latest) = latest else {
        return Ok((
            "no_change",
            "no version of the trade is kept (it died, or was delivered before this version kept delivered trades)".into(),
        ));
    };
    let trade: TradeOrder = decode(&latest)?;
    let current = trade.trade_status;
    let Some(moved) = with_status(trade, write.trade_status) else {
        let why = if current == write.trade_status {
            format!("already at trade_status {current}")
        } else {
            format!(
                "WDT does not move an order from trade_status {current} to {}: recorded, not pushed",
                write.trade_status
            )
        };
        return Ok(("no_change", why));
    };
    let seq = state.take_seq();
    let record = entry
        .pending
        .as_ref()
        .map(|p| p.record.clone())
        .unwrap_or_default();
    let version = PendingVersion {
        seq,
        record_id: write.push_id.clone(),
        received_at_ms: write.received_at_ms,
        trade: moved.encode_to_vec(),
        transformed_at_ms: now_ms,
        enqueued_at_ms: now_ms,
        request_id: write.request_id.clone(),
        record,
        scheme: write.scheme.clone(),
    };
    if txn.queue_version(entry, version, || seq) {
        entry.attempts = 0;
        entry.first_attempt_at_ms = 0;
        done.ready_shops.insert(entry.shop_no.clone());
    }
    entry.signed_status = write.trade_status;
    entry.versions += 1;
    entry.record_id.clone_from(&write.push_id);
    entry.received_at_ms = write.received_at_ms;
    entry.transformed_at_ms = now_ms;
    entry.enqueued_at_ms = now_ms;
    entry.request_id.clone_from(&write.request_id);
    entry.scheme.clone_from(&write.scheme);
    Ok((
        "pushed",
        format!("queued with trade_status {}", write.trade_status),
    ))
}
