//! Re-mapped dead letters written back (`Deliver.WriteRemapped`): each letter's record as
//! transform mapped it again with the fixed scheme becomes its tids' newest versions, latest
//! wins, and the repaired letters go.

use super::dead::Remapped;
use super::tally::Share;
use super::txn::Txn;
use super::writer::WriterState;
use super::{Result, finish, has_newer};
use crate::keys::{self, TradeKey};
use prost::Message;
use wdtpipe_common::connectors::lane;
use wdtpipe_proto::v1::{
    DeadLetter, DeliveryState, OutboxEntry, PendingVersion, RecordMeta, RemappedLetter,
};

/// Writes letters' records as transform mapped them again, oldest version first so that
/// re-queued trades keep their order:
/// - still invalid (`error`): the letter stays, with the new reason and scheme;
/// - trades: each becomes its (tid, lane)'s pending version under the letter's sequence
///   number, unless a newer version waits or was delivered there (superseded: latest wins);
///   then the letter goes, and so does the dead entry it left when the trades now live
///   under another key (a tid re-mapped to another shop), unless that key ever delivered;
/// - skipped: the letter goes; the tid's status says its scheme skipped it.
///
/// A letter no longer in the store (replayed, discarded, re-mapped meanwhile) is `gone`,
/// and its trades are not written.
pub(super) fn write_remapped(
    txn: &mut Txn<'_>,
    state: &mut WriterState,
    mut letters: Vec<RemappedLetter>,
    now_ms: i64,
) -> Result<Remapped> {
    let mut done = Remapped::default();
    letters.sort_by_key(|letter| letter.seq);
    for item in letters {
        let held = match &item.letter {
            Some(at) => {
                let key = TradeKey::new(&at.tid, &lane(&at.shop_no, &at.connector));
                let letter_key = keys::dead_key(&key, at.seq);
                match txn.get_msg::<DeadLetter>(&letter_key)? {
                    Some(letter) => Some((key, letter_key, letter)),
                    None => {
                        done.gone += 1;
                        continue;
                    }
                }
            }
            None => None,
        };
        if !item.error.is_empty() {
            if let Some((_, letter_key, mut letter)) = held {
                letter.reason.clone_from(&item.error);
                letter.scheme.clone_from(&item.scheme);
                txn.put_dead(letter_key, &letter)?;
                done.still_invalid += 1;
            }
            continue;
        }
        let reason = held
            .as_ref()
            .map(|(_, _, l)| l.reason.as_str())
            .unwrap_or("");
        let note = format!("re-mapped by {} after: {reason}", item.scheme);
        let record = item
            .record
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let mut written = Vec::with_capacity(item.trades.len());
        for trade in &item.trades {
            let key = TradeKey::new(&trade.tid, &lane(&trade.shop_no, &trade.connector));
            written.push(key.clone());
            let mut entry = txn.entry_or_new(&key)?;
            if has_newer(&entry, item.seq) {
                done.superseded += 1;
                continue;
            }
            let before = Share::of(&entry);
            let version = PendingVersion {
                seq: item.seq,
                record_id: item.record_id.clone(),
                received_at_ms: item.received_at_ms,
                trade: trade.encode_to_vec(),
                transformed_at_ms: now_ms,
                enqueued_at_ms: now_ms,
                request_id: String::new(),
                record: record.clone(),
                scheme: item.scheme.clone(),
            };
            if txn.queue_version(&mut entry, version, || state.take_seq()) {
                done.ready_shops.insert(key.shop_no.clone());
            }
            entry.transformed_at_ms = now_ms;
            entry.enqueued_at_ms = now_ms;
            entry.request_id.clear();
            entry.scheme.clone_from(&item.scheme);
            entry.versions += 1;
            entry.record_id.clone_from(&item.record_id);
            entry.received_at_ms = item.received_at_ms;
            entry.attempts = 0;
            entry.first_attempt_at_ms = 0;
            entry.last_error.clone_from(&note);
            txn.put_entry(key.entry_key(), before, &entry);
            done.requeued += 1;
            if !done.tids.contains(&key.tid) {
                done.tids.push(key.tid);
            }
        }
        if item.skipped && !item.skipped_tid.is_empty() {
            let meta = RecordMeta {
                accepted_at_ms: now_ms,
                tids: vec![item.skipped_tid.clone()],
                received_at_ms: item.received_at_ms,
                transformed_at_ms: now_ms,
                scheme: item.scheme.clone(),
                record_id: item.record_id.clone(),
                skipped: true,
                ..RecordMeta::default()
            };
            txn.put_msg(keys::skipped_key(&item.skipped_tid), &meta);
        }
        let Some((old_key, letter_key, _)) = held else {
            continue;
        };
        txn.del_dead(letter_key)?;
        done.repaired += 1;
        if !written.contains(&old_key) {
            // The tid lives under another key now: the dead entry it left would only say
            // "dead" in its status. Kept when that key delivered a version (latest wins
            // there still needs it).
            let entry_key = old_key.entry_key();
            if let Some(mut entry) = txn.get_msg::<OutboxEntry>(&entry_key)?
                && entry.pending.is_none()
            {
                if entry.delivered_seq == 0 {
                    txn.del(entry_key);
                } else {
                    entry.dead_reason.clear();
                    entry.last_error.clone_from(&note);
                    entry.state = DeliveryState::Delivered as i32;
                    finish(&mut entry, now_ms);
                    txn.put_entry(entry_key, None, &entry);
                }
            }
        }
    }
    Ok(done)
}
