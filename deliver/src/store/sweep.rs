//! The retention sweep: dedupe records, idempotency keys, skip notes and finished entries
//! whose retention ran out go, one bounded step at a time.

use super::txn::Txn;
use super::writer::WriterState;
use super::{Outbox, Result, decode};
use crate::keys;
use wdtpipe_proto::v1::{OutboxEntry, RecordMeta, TrackingIndex};

/// Expiry index keys looked at in one sweep step (keeps each commit small).
const EXPIRE_LIMIT: usize = 1_000;

/// What one sweep step removed.
#[derive(Debug, Default)]
pub struct Expired {
    /// Dedupe records, idempotency keys and finished entries removed.
    pub removed: usize,
    /// True when more expired keys remain (sweep again).
    pub more: bool,
}

impl Outbox {
    /// Removes one batch of expired dedupe records and finished entries.
    pub async fn expire(&self, now_ms: i64) -> Result<Expired> {
        self.write(move |txn, state| expire(txn, state, now_ms))
            .await
    }
}

/// Where the retention sweep stands in each keyspace it walks.
#[derive(Debug, Default)]
pub(super) struct SweepCursors {
    /// Per prefix (`r/`, `k/`, `t/`, `s/`): the key to resume from.
    next: [Option<Vec<u8>>; SWEPT.len()],
}

/// The keyspaces the sweep walks.
const SWEPT: [&[u8]; 5] = [
    keys::RECORD,
    keys::IDEMPOTENCY,
    keys::ENTRY,
    keys::SKIPPED,
    keys::TRACKING,
];

/// Removes dedupe records and finished entries whose retention ran out: one bounded step
/// of a walk over `r/`, `k/` and `t/` that resumes where the last step stopped (no index is
/// kept, so a trade costs no extra writes for its expiry). `more` is false once the walk
/// has reached the end of every keyspace; the next step starts over.
fn expire(txn: &mut Txn<'_>, state: &mut WriterState, now_ms: i64) -> Result<Expired> {
    let WriterState {
        cursors, retention, ..
    } = state;
    let mut done = Expired::default();
    let mut budget = EXPIRE_LIMIT;
    for (slot, prefix) in SWEPT.iter().enumerate() {
        let start = cursors.next[slot]
            .clone()
            .unwrap_or_else(|| prefix.to_vec());
        let mut finished = true;
        for item in txn.tree.range(start..) {
            let (key, value) = item?;
            if !key.starts_with(prefix) {
                break;
            }
            if budget == 0 {
                cursors.next[slot] = Some(key.to_vec());
                finished = false;
                break;
            }
            budget -= 1;
            let expired = if *prefix == keys::ENTRY {
                let entry: OutboxEntry = decode(&value)?;
                entry.pending.is_none()
                    && entry.finished_at_ms > 0
                    && entry.finished_at_ms + retention.status_ms() <= now_ms
            } else if *prefix == keys::TRACKING {
                // The index serves kuaidi100 pushes as long as the trade's status is kept.
                let index: TrackingIndex = decode(&value)?;
                index.accepted_at_ms + retention.status_ms() <= now_ms
            } else if *prefix == keys::SKIPPED {
                // A skip is status: kept as long as a finished trade's status.
                let meta: RecordMeta = decode(&value)?;
                meta.accepted_at_ms + retention.status_ms() <= now_ms
            } else {
                let meta: RecordMeta = decode(&value)?;
                meta.accepted_at_ms + retention.dedupe_ms() <= now_ms
            };
            // The group's own writes may have renewed the key since it was committed.
            if expired
                && !txn.own.0.contains_key(key.as_ref())
                && !txn.group.0.contains_key(key.as_ref())
            {
                txn.del(key.to_vec());
                done.removed += 1;
            }
        }
        if finished {
            cursors.next[slot] = None;
        } else {
            done.more = true;
        }
    }
    Ok(done)
}
