//! What is queued, in total and per shop, and the dead letters per shop: kept by the
//! writer after each commit, so that admission, `Stats` (read by the console every few
//! seconds) and `/metrics` never scan the outbox.

use super::{Result, decode};
use crate::keys;
use prost::Message;
use std::collections::BTreeMap;
use wdtpipe_proto::v1::{DeadLetter, DeliveryState, OutboxEntry};

/// Trades waiting to be delivered and the bytes their payloads take.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Queued {
    pub trades: i64,
    pub bytes: i64,
}

/// Waiting trades of one shop, by where they wait.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShopQueue {
    /// In the ready queue.
    pub ready: i64,
    /// Waiting for a retry.
    pub retrying: i64,
}

/// What is queued, in total and per shop, and the dead letters per shop (or a change of
/// it).
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    pub(super) queued: Queued,
    pub(super) shops: BTreeMap<String, ShopQueue>,
    /// Dead letters by lane.
    pub(super) dead: BTreeMap<String, i64>,
}

impl Tally {
    /// Adds (`sign` 1) or removes (`sign` -1) one entry's share.
    pub(super) fn count(&mut self, shop_no: &str, share: Option<Share>, sign: i64) {
        let Some(share) = share else { return };
        self.queued.trades += sign;
        self.queued.bytes += sign * share.bytes;
        let shop = match self.shops.get_mut(shop_no) {
            Some(shop) => shop,
            None => self.shops.entry(shop_no.to_owned()).or_default(),
        };
        if share.retrying {
            shop.retrying += sign;
        } else {
            shop.ready += sign;
        }
    }

    pub(super) fn merge(&mut self, change: &Tally) {
        self.queued.trades += change.queued.trades;
        self.queued.bytes += change.queued.bytes;
        for (shop, delta) in &change.shops {
            let counts = self.shops.entry(shop.clone()).or_default();
            counts.ready += delta.ready;
            counts.retrying += delta.retrying;
        }
        self.shops.retain(|_, c| c.ready != 0 || c.retrying != 0);
        for (lane, delta) in &change.dead {
            *self.dead.entry(lane.clone()).or_default() += delta;
        }
        self.dead.retain(|_, n| *n != 0);
    }

    /// A dead letter of `lane` stored (`sign` 1) or removed (`sign` -1).
    pub(super) fn count_dead(&mut self, lane: &str, sign: i64) {
        *self.dead.entry(lane.to_owned()).or_default() += sign;
    }
}

/// What one entry adds to the queued totals: nothing unless a version waits.
#[derive(Debug, Clone, Copy)]
pub(super) struct Share {
    bytes: i64,
    retrying: bool,
}

impl Share {
    pub(super) fn of(entry: &OutboxEntry) -> Option<Self> {
        let pending = entry.pending.as_ref()?;
        Some(Self {
            bytes: i64::try_from(pending.encoded_len()).unwrap_or(i64::MAX),
            retrying: entry.state == DeliveryState::Retrying as i32,
        })
    }
}

/// Counts the waiting versions and the dead letters on disk (at open; afterwards the writer
/// keeps the totals).
pub(super) fn count_queued(tree: &sled::Tree) -> Result<Tally> {
    let mut tally = Tally::default();
    for item in tree.scan_prefix(keys::ENTRY) {
        let entry: OutboxEntry = decode(&item?.1)?;
        tally.count(&entry.shop_no, Share::of(&entry), 1);
    }
    for item in tree.scan_prefix(keys::DEAD) {
        let letter: DeadLetter = decode(&item?.1)?;
        tally.count_dead(&letter.shop_no, 1);
    }
    Ok(tally)
}
