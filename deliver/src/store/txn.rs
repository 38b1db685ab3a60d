//! A write's view of the outbox while its group commit is being built: its own writes over
//! the group's, over what the writer wrote last, over sled.

use super::tally::{Share, Tally};
use super::{Result, decode, mirror};
use crate::keys::{self, TradeKey};
use prost::Message;
use wdtpipe_proto::v1::{DeadLetter, DeliveryState, OutboxEntry, PendingVersion};

/// Pending writes of a group commit, read through before sled, and how they change what
/// is queued.
#[derive(Default)]
pub(super) struct Overlay(pub(super) mirror::Writes, pub(super) Tally);

/// One command's view: its own writes over the group's, over the tree (the entries the
/// writer wrote last read from [`RecentEntries`], which holds them as committed). Dropped
/// without merging when the command fails, so a failed command leaves nothing behind.
pub(super) struct Txn<'a> {
    pub(super) tree: &'a sled::Tree,
    pub(super) recent: &'a RecentEntries,
    pub(super) group: &'a Overlay,
    pub(super) own: Overlay,
}

impl Txn<'_> {
    pub(super) fn get_msg<M: Message + Default>(&self, key: &[u8]) -> Result<Option<M>> {
        if let Some(v) = self.own.0.get(key).or_else(|| self.group.0.get(key)) {
            return v.as_deref().map(decode).transpose();
        }
        if let Some(v) = self.recent.get(key) {
            return decode(v).map(Some);
        }
        self.tree.get(key)?.map(|v| decode(&v)).transpose()
    }

    pub(super) fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.0.insert(key, Some(value));
    }

    pub(super) fn put_msg<M: Message>(&mut self, key: Vec<u8>, value: &M) {
        self.put(key, value.encode_to_vec());
    }

    pub(super) fn del(&mut self, key: Vec<u8>) {
        self.own.0.insert(key, None);
    }

    /// Stores a dead letter, counting it for its shop when it is new.
    pub(super) fn put_dead(&mut self, key: Vec<u8>, letter: &DeadLetter) -> Result<()> {
        if self.get_msg::<DeadLetter>(&key)?.is_none() {
            self.own.1.count_dead(&letter.shop_no, 1);
        }
        self.put_msg(key, letter);
        Ok(())
    }

    /// Removes a dead letter (if it is there), uncounting it.
    pub(super) fn del_dead(&mut self, key: Vec<u8>) -> Result<()> {
        if let Some(letter) = self.get_msg::<DeadLetter>(&key)? {
            self.own.1.count_dead(&letter.shop_no, -1);
            self.del(key);
        }
        Ok(())
    }

    /// The entry of `key` as this write sees it, or a new one.
    pub(super) fn entry_or_new(&self, key: &TradeKey) -> Result<OutboxEntry> {
        Ok(self
            .get_msg(&key.entry_key())?
            .unwrap_or_else(|| OutboxEntry {
                tid: key.tid.clone(),
                shop_no: key.shop_no.clone(),
                ..OutboxEntry::default()
            }))
    }

    /// Makes `version` the entry's waiting version: one already waiting is replaced in its
    /// queue place (latest wins); otherwise the entry joins the back of its shop's ready
    /// queue at the place `place` gives. True when it joined (its shop has new work).
    pub(super) fn queue_version(
        &mut self,
        entry: &mut OutboxEntry,
        version: PendingVersion,
        place: impl FnOnce() -> u64,
    ) -> bool {
        let waiting = entry.pending.is_some();
        entry.pending = Some(version);
        entry.finished_at_ms = 0;
        entry.dead_reason.clear();
        if waiting {
            return false;
        }
        let place = place();
        entry.queue_seq = place;
        entry.state = DeliveryState::Queued as i32;
        entry.next_attempt_at_ms = 0;
        self.put(
            keys::ready_key(&entry.shop_no, place),
            entry.tid.clone().into_bytes(),
        );
        true
    }

    /// Writes an entry, accounting for the change in what is queued: `before` is the share
    /// of the entry as it was read ([`Share::of`], `None` when it was absent or finished).
    pub(super) fn put_entry(&mut self, key: Vec<u8>, before: Option<Share>, entry: &OutboxEntry) {
        self.own.1.count(&entry.shop_no, before, -1);
        self.own.1.count(&entry.shop_no, Share::of(entry), 1);
        self.put_msg(key, entry);
    }
}

/// The entries (`t/` keys) the writer wrote last, as committed: a settlement reads back the
/// entry its enqueue wrote moments before, and finds it here instead of in sled. Shares the
/// values' memory with the batch handed to sled.
#[derive(Default)]
pub(super) struct RecentEntries {
    /// Each key's value and when it was written (a count of writes).
    values: std::collections::HashMap<Vec<u8>, (sled::IVec, u64)>,
    /// Keys in the order written, with when.
    order: std::collections::VecDeque<(Vec<u8>, u64)>,
    writes: u64,
}

impl RecentEntries {
    /// Entries kept at most (each ~0.3–2 KB).
    const LIMIT: usize = 1_024;

    pub(super) fn get(&self, key: &[u8]) -> Option<&sled::IVec> {
        self.values.get(key).map(|(value, _)| value)
    }

    pub(super) fn put(&mut self, key: &[u8], value: sled::IVec) {
        self.writes += 1;
        self.values.insert(key.to_vec(), (value, self.writes));
        self.order.push_back((key.to_vec(), self.writes));
        while self.order.len() > Self::LIMIT {
            let Some((oldest, written)) = self.order.pop_front() else {
                break;
            };
            // Dropped unless written again since.
            if self
                .values
                .get(&oldest)
                .is_some_and(|(_, at)| *at == written)
            {
                self.values.remove(&oldest);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &[u8]) {
        self.values.remove(key);
    }

    pub(super) fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's recent entries keep the last `LIMIT` written, the latest value of each,
    /// and forget a removed one.
    #[test]
    fn recent_entries_keep_the_latest_writes() {
        let mut recent = RecentEntries::default();
        let key = |n: usize| format!("t/{n}").into_bytes();
        recent.put(&key(0), sled::IVec::from(&b"old"[..]));
        for n in 1..RecentEntries::LIMIT {
            recent.put(&key(n), sled::IVec::from(&b"v"[..]));
        }
        // Written again: survives the eviction of its first write.
        recent.put(&key(0), sled::IVec::from(&b"new"[..]));
        recent.put(&key(RecentEntries::LIMIT), sled::IVec::from(&b"v"[..]));
        assert_eq!(
            recent.get(&key(0)).map(|v| v.to_vec()),
            Some(b"new".to_vec())
        );
        assert!(recent.get(&key(1)).is_none(), "the oldest write is evicted");
        assert!(recent.get(&key(RecentEntries::LIMIT)).is_some());
        assert!(recent.values.len() <= RecentEntries::LIMIT);
        recent.remove(&key(0));
        assert!(recent.get(&key(0)).is_none());
        recent.clear();
        assert!(recent.get(&key(2)).is_none());
    }
}
