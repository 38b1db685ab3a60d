//! A copy in memory of the short ready queues, so that the shop loops read their next batch
//! without going to sled.
//!
//! A shop's copy holds, for every place of its ready queue (`q/` key), the [`ReadyItem`] a
//! read of sled would produce there: the place's entry's pending version. It is all or
//! nothing: a shop either has a complete copy, and its reads are answered from it, or none,
//! and its reads go to sled as before.
//!
//! Only the writer thread changes a copy, after a group commit is on disk and before it
//! answers the callers, from the keys the commit wrote ([`ReadyMirror::apply`]). So a read
//! of a copy sees committed, durable state, and a trade settled by a call is out of the copy
//! before the call's shop loop hears that it finished. When a commit fails, every copy is
//! dropped: sled's state is then whatever the failed commit left.
//!
//! Copies are bounded. A shop gets one when a commit touches it while its ready queue is
//! short ([`LOAD_BELOW`]); a copy that outgrows [`SHOP_LIMIT`], or would take all copies past
//! [`TOTAL_LIMIT`], is dropped. A backlog is therefore read from sled, and its shop gets a
//! copy again once it has drained.

use super::ready::{parse_queue_key, queued_tid};
use super::{ReadyItem, Result, StoreError};
use crate::keys::{self, TradeKey};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Mutex;

/// Queue places one shop's copy holds at most.
const SHOP_LIMIT: usize = 1_024;
/// Queue places all copies hold at most (each holds an encoded trade, ~0.5–2 KB).
const TOTAL_LIMIT: usize = 4_096;
/// A shop without a copy gets one when its ready queue is at most this long.
const LOAD_BELOW: i64 = 256;

/// The writes of one group commit: key → new value, `None` for a removal.
pub(super) type Writes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// The copies of the shops' ready queues.
#[derive(Default)]
pub(super) struct ReadyMirror {
    inner: Mutex<Copies>,
}

#[derive(Default)]
struct Copies {
    shops: HashMap<String, ShopCopy>,
    /// Queue places held by all copies.
    places: usize,
    /// Shops whose queue could not be copied (a tid in two places): read from sled.
    refused: HashSet<String>,
}

#[derive(Default)]
struct ShopCopy {
    places: BTreeMap<u64, ReadyItem>,
    /// The place of each tid in `places`.
    by_tid: HashMap<String, u64>,
}

/// Why a copy is dropped.
enum Dropped {
    /// Too many places: read from sled until the queue is short again.
    TooLong,
    /// A tid in two places of one queue: read from sled from now on.
    Refused,
}

impl ReadyMirror {
    /// Up to `limit` items at the head of the shop's queue, in order, passing over the places
    /// in `skip`; `None` when the shop has no copy (read sled).
    pub(super) fn read(
        &self,
        shop_no: &str,
        limit: usize,
        skip: &HashSet<u64>,
    ) -> Option<Vec<ReadyItem>> {
        let copies = self.lock();
        let copy = copies.shops.get(shop_no)?;
        Some(
            copy.places
                .iter()
                .filter(|(place, _)| !skip.contains(place))
                .take(limit)
                .map(|(_, item)| item.clone())
                .collect(),
        )
    }

    /// Shops whose reads are answered from memory.
    pub(super) fn shops(&self) -> BTreeSet<String> {
        self.lock().shops.keys().cloned().collect()
    }

    /// Drops every copy (after a failed commit).
    pub(super) fn clear(&self) {
        self.lock().clear();
    }

    /// Brings the copies up to date with a commit that is on disk: `writes` are its keys,
    /// `tree` the state after it, and `ready` says how long a shop's ready queue now is.
    /// Runs on the writer thread, the only one that changes sled.
    pub(super) fn apply(&self, tree: &sled::Tree, writes: &Writes, ready: impl Fn(&str) -> i64) {
        let mut copies = self.lock();
        if let Err(error) = copies.apply(tree, writes, ready) {
            tracing::warn!(%error, "ready queues are read from the outbox again");
            copies.clear();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Copies> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Copies {
    fn clear(&mut self) {
        self.shops.clear();
        self.places = 0;
    }

    fn apply(
        &mut self,
        tree: &sled::Tree,
        writes: &Writes,
        ready: impl Fn(&str) -> i64,
    ) -> Result<()> {
        let mut touched = BTreeSet::new();
        let mut placed = Vec::new();
        // Places leaving a queue.
        for (key, value) in prefixed(writes, keys::READY) {
            let (shop, place) = parse_queue_key(key)?;
            touched.insert(shop);
            match value {
                None => self.remove(shop, place),
                Some(tid) => placed.push((shop, place, tid)),
            }
        }
        // Entries that changed: a place that holds one offers its new pending version.
        for (key, value) in prefixed(writes, keys::ENTRY) {
            let trade = TradeKey::from_entry_key(key)
                .ok_or_else(|| StoreError::Corrupt("entry key".into()))?;
            let Some(copy) = self.shops.get(&trade.shop_no) else {
                continue;
            };
            let Some(&place) = copy.by_tid.get(&trade.tid) else {
                continue;
            };
            let shop = trade.shop_no.clone();
            let item = match value {
                Some(entry) => ReadyItem::of_entry(trade, place, entry)?,
                None => None,
            };
            match item {
                Some(item) => self.put(item),
                None => self.remove(&shop, place),
            }
        }
        // Places joining a queue.
        for (shop, place, tid) in placed {
            if !self.shops.contains_key(shop) {
                continue;
            }
            let trade = TradeKey::new(queued_tid(tid)?, shop);
            let entry_key = trade.entry_key();
            let item = match writes.get(&entry_key) {
                Some(Some(entry)) => ReadyItem::of_entry(trade, place, entry)?,
                Some(None) => None,
                None => match tree.get(&entry_key)? {
                    Some(entry) => ReadyItem::of_entry(trade, place, &entry)?,
                    None => None,
                },
            };
            match item {
                Some(item) => self.put(item),
                None => self.remove(shop, place),
            }
        }
        // Shops without a copy whose queue is short now get one.
        for shop in touched {
            if self.shops.contains_key(shop) || self.refused.contains(shop) {
                continue;
            }
            let length = ready(shop);
            if length <= LOAD_BELOW && self.places + length.max(0) as usize <= TOTAL_LIMIT {
                self.load(tree, shop)?;
            }
        }
        Ok(())
    }

    /// Copies a shop's queue from sled (the writer's own, committed state).
    fn load(&mut self, tree: &sled::Tree, shop: &str) -> Result<()> {
        let prefix = keys::ready_prefix(shop);
        let mut copy = ShopCopy::default();
        for item in tree.scan_prefix(&prefix) {
            let (key, tid) = item?;
            let (_, place) = parse_queue_key(&key)?;
            let tid = queued_tid(&tid)?;
            let trade = TradeKey::new(tid, shop);
            let Some(entry) = tree.get(trade.entry_key())? else {
                continue;
            };
            let Some(item) = ReadyItem::of_entry(trade, place, &entry)? else {
                continue;
            };
            if copy.places.len() >= SHOP_LIMIT || self.places + copy.places.len() >= TOTAL_LIMIT {
                return Ok(());
            }
            if copy.by_tid.insert(tid.to_owned(), place).is_some() {
                self.refused.insert(shop.to_owned());
                return Ok(());
            }
            copy.places.insert(place, item);
        }
        self.places += copy.places.len();
        self.shops.insert(shop.to_owned(), copy);
        Ok(())
    }

    /// Sets what a place of a copied queue offers.
    fn put(&mut self, item: ReadyItem) {
        let shop = item.key.shop_no.clone();
        let Some(copy) = self.shops.get_mut(&shop) else {
            return;
        };
        let place = item.queue_seq;
        match copy.by_tid.get(&item.key.tid) {
            Some(&held) if held != place => return self.drop_copy(&shop, Dropped::Refused),
            Some(_) => {}
            None => {
                copy.by_tid.insert(item.key.tid.clone(), place);
            }
        }
        if let Some(old) = copy.places.insert(place, item) {
            if old.key.tid != copy.places[&place].key.tid {
                // Another tid held this place: not a queue a read of sled would give.
                return self.drop_copy(&shop, Dropped::Refused);
            }
        } else {
            self.places += 1;
        }
        let copy_len = copy.places.len();
        if copy_len > SHOP_LIMIT || self.places > TOTAL_LIMIT {
            self.drop_copy(&shop, Dropped::TooLong);
        }
    }

    /// Takes a place out of a copied queue.
    fn remove(&mut self, shop: &str, place: u64) {
        let Some(copy) = self.shops.get_mut(shop) else {
            return;
        };
        if let Some(item) = copy.places.remove(&place) {
            copy.by_tid.remove(&item.key.tid);
            self.places -= 1;
        }
    }

    fn drop_copy(&mut self, shop: &str, why: Dropped) {
        if let Some(copy) = self.shops.remove(shop) {
            self.places -= copy.places.len();
        }
        if let Dropped::Refused = why {
            self.refused.insert(shop.to_owned());
        }
    }
}

/// The writes under one key prefix.
fn prefixed<'a>(
    writes: &'a Writes,
    prefix: &'static [u8],
) -> impl Iterator<Item = (&'a [u8], Option<&'a [u8]>)> {
    writes
        .range(prefix.to_vec()..)
        .take_while(move |(key, _)| key.starts_with(prefix))
        .map(|(key, value)| (key.as_slice(), value.as_deref()))
}
