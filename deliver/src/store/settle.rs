//! Settling pushed trades (delivered, retry, dead, kept) and promoting due retries back
//! into their shops' ready queues.

use super::ready::Ready;
use super::tally::Share;
use super::txn::Txn;
use super::{HISTORY_LIMIT, Outbox, Result, StoreError, dead, finish};
use crate::keys::{self, TradeKey};
use std::collections::BTreeSet;
use wdtpipe_proto::v1::{Attempt, DeadLetter, DeliveryState, OutboxEntry};

/// What became of one pushed trade.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// WDT accepted it.
    Delivered { new_count: i32, chg_count: i32 },
    /// Try again at `due_ms`.
    Retry { due_ms: i64 },
    /// Give up: into the dead-letter store.
    Dead { reason: String },
    /// Nothing changes but the history (e.g. the shop is paused); it stays at the head.
    Keep,
}

/// The result of pushing one trade, to be written back.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub ready: Ready,
    pub attempt: Attempt,
    pub outcome: Outcome,
}

/// What a promotion of due retries did.
#[derive(Debug, Default)]
pub struct Promoted {
    pub ready_shops: BTreeSet<String>,
    /// When the next waiting trade falls due, if any waits.
    pub next_due_ms: Option<i64>,
}

impl Outbox {
    /// Writes back what pushing some trades did. Returns shops with ready work.
    pub async fn settle(
        &self,
        settlements: Vec<Settlement>,
        now_ms: i64,
    ) -> Result<BTreeSet<String>> {
        self.write(move |txn, _| settle(txn, settlements, now_ms))
            .await
    }

    /// Moves retries that are due back into their shops' ready queues.
    pub async fn promote_due(&self, now_ms: i64) -> Result<Promoted> {
        self.write(move |txn, _| promote(txn, now_ms)).await
    }
}

fn settle(
    txn: &mut Txn<'_>,
    settlements: Vec<Settlement>,
    now_ms: i64,
) -> Result<BTreeSet<String>> {
    let mut ready_shops = BTreeSet::new();
    for Settlement {
        ready,
        attempt,
        outcome,
    } in settlements
    {
        let entry_key = ready.key.entry_key();
        let Some(mut entry) = txn.get_msg::<OutboxEntry>(&entry_key)? else {
            tracing::warn!(tid = %ready.key.tid, "settled trade has no entry");
            continue;
        };
        let Some(pending_seq) = entry.pending.as_ref().map(|p| p.seq) else {
            continue;
        };
        let before = Share::of(&entry);
        // A newer version arrived while this one was in flight: it keeps the queue slot.
        let superseded = pending_seq != ready.seq;
        let ready_key = keys::ready_key(&ready.key.shop_no, entry.queue_seq);
        push_history(&mut entry.history, attempt.clone());
        match outcome {
            Outcome::Keep => {
                entry.attempts += 1;
                if entry.first_attempt_at_ms == 0 {
                    entry.first_attempt_at_ms = attempt.at_ms;
                }
                entry.last_error.clone_from(&attempt.message);
            }
            Outcome::Delivered {
                new_count,
                chg_count,
            } => {
                entry.delivered_at_ms = now_ms;
                entry.delivered_seq = ready.seq;
                entry.new_count = new_count;
                entry.chg_count = chg_count;
                entry.attempts = 0;
                entry.first_attempt_at_ms = 0;
                entry.last_error.clear();
                entry.next_attempt_at_ms = 0;
                if superseded {
                    entry.state = DeliveryState::Queued as i32;
                    ready_shops.insert(ready.key.shop_no.clone());
                } else {
                    // Kept while the status is: a kuaidi100 sign-off re-pushes it.
                    entry.delivered_trade =
                        entry.pending.take().map(|p| p.trade).unwrap_or_default();
                    entry.state = DeliveryState::Delivered as i32;
                    txn.del(ready_key);
                    finish(&mut entry, now_ms);
                }
            }
            Outcome::Retry { due_ms } => {
                entry.attempts += 1;
                if entry.first_attempt_at_ms == 0 {
                    entry.first_attempt_at_ms = attempt.at_ms;
                }
                entry.last_error.clone_from(&attempt.message);
                entry.state = DeliveryState::Retrying as i32;
                entry.next_attempt_at_ms = due_ms;
                txn.del(ready_key);
                txn.put(
                    keys::waiting_key(due_ms, entry.queue_seq),
                    ready.key.encode_pair(),
                );
            }
            Outcome::Dead { reason } => {
                let mut letter = DeadLetter {
                    // In the store a letter's shop_no is its lane (shop and account).
                    connector: String::new(),
                    tid: ready.key.tid.clone(),
                    shop_no: ready.key.shop_no.clone(),
                    seq: ready.seq,
                    record_id: ready.record_id.clone(),
                    received_at_ms: ready.received_at_ms,
                    dead_at_ms: now_ms,
                    reason: reason.clone(),
                    trade: Some(ready.trade.clone()),
                    history: entry.history.clone(),
                    ..DeadLetter::default()
                };
                // The record stays with the pending version; a version that died while a
                // newer one waits has none left (the newer one is pushed anyway).
                if let Some(pending) = entry.pending.as_ref().filter(|_| !superseded) {
                    dead::keep_source(&mut letter, pending);
                }
                txn.put_dead(keys::dead_key(&ready.key, ready.seq), &letter)?;
                entry.last_error.clone_from(&reason);
                entry.attempts = 0;
                entry.first_attempt_at_ms = 0;
                entry.next_attempt_at_ms = 0;
                if superseded {
                    entry.state = DeliveryState::Queued as i32;
                    ready_shops.insert(ready.key.shop_no.clone());
                } else {
                    entry.pending = None;
                    entry.state = DeliveryState::Dead as i32;
                    entry.dead_reason = reason;
                    txn.del(ready_key);
                    finish(&mut entry, now_ms);
                }
            }
        }
        txn.put_entry(entry_key, before, &entry);
    }
    Ok(ready_shops)
}

fn promote(txn: &mut Txn<'_>, now_ms: i64) -> Result<Promoted> {
    let mut promoted = Promoted::default();
    let due: Vec<(Vec<u8>, Vec<u8>)> = {
        let mut due = Vec::new();
        for item in txn.tree.scan_prefix(keys::WAITING) {
            let (key, value) = item?;
            let (due_ms, _) = keys::parse_waiting_key(&key)
                .ok_or_else(|| StoreError::Corrupt("waiting key".into()))?;
            if due_ms > now_ms {
                promoted.next_due_ms = Some(due_ms);
                break;
            }
            due.push((key.to_vec(), value.to_vec()));
        }
        due
    };
    for (waiting_key, pair) in due {
        txn.del(waiting_key);
        let key = TradeKey::decode_pair(&pair)
            .ok_or_else(|| StoreError::Corrupt("waiting value".into()))?;
        let entry_key = key.entry_key();
        let Some(mut entry) = txn.get_msg::<OutboxEntry>(&entry_key)? else {
            continue;
        };
        let before = Share::of(&entry);
        if before.is_none() {
            continue;
        }
        entry.state = DeliveryState::Queued as i32;
        txn.put(
            keys::ready_key(&key.shop_no, entry.queue_seq),
            key.tid.clone().into_bytes(),
        );
        txn.put_entry(entry_key, before, &entry);
        promoted.ready_shops.insert(key.shop_no);
    }
    Ok(promoted)
}

fn push_history(history: &mut Vec<Attempt>, attempt: Attempt) {
    history.push(attempt);
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
}
