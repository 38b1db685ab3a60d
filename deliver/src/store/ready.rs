//! Reading ready queues: the trades a shop loop pushes next, from sled or from the copy
//! of short queues the writer keeps in memory (the `mirror` module).

use super::writer::InFlight;
use super::{Outbox, Result, StoreError, decode};
use crate::keys::{self, TradeKey};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use wdtpipe_proto::v1::TradeOrder;

/// How long a reading of the oldest waiting trades serves ([`Outbox::oldest_waiting_recent`]).
pub(super) const OLDEST_FRESH: std::time::Duration = std::time::Duration::from_millis(1_500);

/// A trade ready to push: the pending version of one entry.
#[derive(Debug, Clone)]
pub struct Ready {
    pub key: TradeKey,
    /// Sequence number of the version read (compared again when settling).
    pub seq: u64,
    pub trade: TradeOrder,
    pub record_id: String,
    pub received_at_ms: i64,
    /// When the current run of failures began (0 = none).
    pub first_attempt_at_ms: i64,
    pub attempts: u32,
}

/// A trade as the shop loop reads it from the ready queue: its trade still encoded, because
/// decoding is the costliest part of a read and the loop's reads follow one another. The
/// call that pushes the trade opens it ([`ReadyItem::open`]), alongside other calls.
#[derive(Debug, Clone)]
pub struct ReadyItem {
    pub key: TradeKey,
    /// Where the trade sits in its shop's ready queue (the `q/` key): a tid has one place
    /// while it waits, so the loop passes over the trades of its calls in flight by it.
    pub queue_seq: u64,
    /// Sequence number of the version read (compared again when settling).
    pub seq: u64,
    /// `PendingVersion.trade`: an encoded `TradeOrder`.
    pub encoded_trade: Vec<u8>,
    pub record_id: String,
    pub received_at_ms: i64,
    pub first_attempt_at_ms: i64,
    pub attempts: u32,
}

impl ReadyItem {
    /// What the queue place `queue_seq` holding `key` offers, given the key's encoded
    /// entry: its pending version, or `None` when no version waits (a read passes over it).
    pub(super) fn of_entry(key: TradeKey, queue_seq: u64, entry: &[u8]) -> Result<Option<Self>> {
        let entry: EntryHead = decode(entry)?;
        Ok(entry.pending.map(|pending| Self {
            key,
            queue_seq,
            seq: pending.seq,
            encoded_trade: pending.trade,
            record_id: pending.record_id,
            received_at_ms: pending.received_at_ms,
            first_attempt_at_ms: entry.first_attempt_at_ms,
            attempts: entry.attempts,
        }))
    }

    /// Decodes the trade.
    pub fn open(self) -> Result<Ready> {
        Ok(Ready {
            trade: decode(&self.encoded_trade)?,
            key: self.key,
            seq: self.seq,
            record_id: self.record_id,
            received_at_ms: self.received_at_ms,
            first_attempt_at_ms: self.first_attempt_at_ms,
            attempts: self.attempts,
        })
    }
}

/// The fields of an [`OutboxEntry`] a ready read uses, under the same tags: decoding it
/// passes over the rest (the attempt history, the texts) without allocating them.
#[derive(Clone, PartialEq, prost::Message)]
struct EntryHead {
    #[prost(message, optional, tag = "3")]
    pending: Option<PendingHead>,
    #[prost(uint32, tag = "6")]
    attempts: u32,
    #[prost(int64, tag = "17")]
    first_attempt_at_ms: i64,
}

/// The fields of a [`PendingVersion`] a ready read uses, under the same tags.
#[derive(Clone, PartialEq, prost::Message)]
struct PendingHead {
    #[prost(uint64, tag = "1")]
    seq: u64,
    #[prost(string, tag = "2")]
    record_id: String,
    #[prost(int64, tag = "3")]
    received_at_ms: i64,
    #[prost(bytes = "vec", tag = "4")]
    trade: Vec<u8>,
}

/// A ready-queue read ([`Outbox::ready_async`]): answered from memory, or under way on a
/// blocking thread.
#[derive(Debug)]
pub struct ReadyRead(ReadyReadInner);

#[derive(Debug)]
enum ReadyReadInner {
    Copied(Option<Vec<ReadyItem>>),
    Reading(tokio::task::JoinHandle<Result<Vec<ReadyItem>>>),
}

impl std::future::Future for ReadyRead {
    type Output = Result<Vec<ReadyItem>>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        match &mut self.0 {
            ReadyReadInner::Copied(items) => {
                std::task::Poll::Ready(items.take().ok_or_else(|| {
                    StoreError::Corrupt("ready read polled after it answered".into())
                }))
            }
            ReadyReadInner::Reading(handle) => std::pin::Pin::new(handle).poll(cx).map(|joined| {
                joined.map_err(|e| StoreError::Corrupt(format!("ready read task failed: {e}")))?
            }),
        }
    }
}

impl Outbox {
    /// [`Outbox::ready_skipping`] without waiting on disk: answered at once from the copy of
    /// the shop's queue in memory when it has one (see the `mirror` module), otherwise read
    /// on a blocking thread. The read starts at once; awaiting the answer gets its batch,
    /// dropping it lets the read finish unheard.
    pub fn ready_async(
        self: &Arc<Self>,
        shop_no: &str,
        limit: usize,
        skip: Arc<HashSet<u64>>,
    ) -> ReadyRead {
        if let Some(items) = self.mirror.read(shop_no, limit, &skip) {
            return ReadyRead(ReadyReadInner::Copied(Some(items)));
        }
        let in_flight = InFlight::new(&self.in_flight);
        let (outbox, shop_no) = (Arc::clone(self), shop_no.to_owned());
        ReadyRead(ReadyReadInner::Reading(tokio::task::spawn_blocking(
            move || {
                let _in_flight = in_flight;
                outbox.ready_skipping(&shop_no, limit, &skip)
            },
        )))
    }

    /// Shops whose ready queue [`Outbox::ready_async`] answers from memory.
    pub fn mirrored_shops(&self) -> BTreeSet<String> {
        self.mirror.shops()
    }

    /// Store operations started and not yet finished. Tests that drive a paused clock wait
    /// for this to reach 0 before moving time, because the store works in real time.
    pub fn operations_in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Up to `limit` trades at the head of a shop's ready queue, oldest first.
    pub fn ready(&self, shop_no: &str, limit: usize) -> Result<Vec<Ready>> {
        self.ready_skipping(shop_no, limit, &HashSet::new())?
            .into_iter()
            .map(ReadyItem::open)
            .collect()
    }

    /// Up to `limit` trades at the head of a shop's ready queue, oldest first, passing over
    /// the queue places in `skip` (trades already being pushed); trades left encoded.
    pub fn ready_skipping(
        &self,
        shop_no: &str,
        limit: usize,
        skip: &HashSet<u64>,
    ) -> Result<Vec<ReadyItem>> {
        let prefix = keys::ready_prefix(shop_no);
        let mut out = Vec::with_capacity(limit.min(64));
        let tree = self.tree()?;
        for item in tree.scan_prefix(&prefix) {
            if out.len() >= limit {
                break;
            }
            let (queue_key, tid) = item?;
            let (_, queue_seq) = parse_queue_key(&queue_key)?;
            if skip.contains(&queue_seq) {
                continue;
            }
            let tid = queued_tid(&tid)?;
            let key = TradeKey::new(tid, shop_no);
            let Some(entry) = tree.get(key.entry_key())? else {
                tracing::warn!(tid, shop_no, "queue item without entry; skipped");
                continue;
            };
            match ReadyItem::of_entry(key, queue_seq, &entry)? {
                Some(item) => out.push(item),
                None => {
                    tracing::warn!(tid, shop_no, "queue item without pending version; skipped");
                }
            }
        }
        Ok(out)
    }

    /// When the earliest waiting retry falls due, if any waits.
    pub fn next_due(&self) -> Result<Option<i64>> {
        match self.tree()?.scan_prefix(keys::WAITING).next().transpose()? {
            Some((key, _)) => Ok(keys::parse_waiting_key(&key).map(|(due, _)| due)),
            None => Ok(None),
        }
    }

    /// Shops that have trades in their ready queues.
    pub fn shops_with_ready_work(&self) -> Result<Vec<String>> {
        let mut shops = Vec::new();
        let mut from = keys::READY.to_vec();
        let tree = self.tree()?;
        while let Some((key, _)) = tree.range(from.clone()..).next().transpose()? {
            if !key.starts_with(keys::READY) {
                break;
            }
            let shop = keys::shop_of_ready_key(&key)
                .ok_or_else(|| StoreError::Corrupt("ready key".into()))?;
            // Jump past every key of this shop.
            from = keys::ready_key(&shop, u64::MAX);
            from.push(0);
            shops.push(shop);
        }
        Ok(shops)
    }

    /// [`Outbox::oldest_waiting`] read at most once per `OLDEST_FRESH`, whoever asks
    /// (`Stats` for every console and `wdtpipe queue`, the metrics): callers more often get
    /// the last reading. Call it off the runtime threads.
    pub fn oldest_waiting_recent(&self) -> Result<BTreeMap<String, i64>> {
        let mut cache = self.oldest.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, oldest)) = cache.as_ref()
            && at.elapsed() < OLDEST_FRESH
        {
            return Ok(oldest.clone());
        }
        let oldest = self.oldest_waiting()?;
        *cache = Some((std::time::Instant::now(), oldest.clone()));
        Ok(oldest)
    }

    /// When the oldest waiting trade of each shop was received (ready queue heads and every
    /// retrying trade): reads every retrying entry.
    pub fn oldest_waiting(&self) -> Result<BTreeMap<String, i64>> {
        let mut oldest: BTreeMap<String, i64> = BTreeMap::new();
        let mut note = |shop_no: String, received_at_ms: i64| {
            let at = oldest.entry(shop_no).or_insert(received_at_ms);
            *at = (*at).min(received_at_ms);
        };
        // A shop's queue head is its oldest ready trade; the read carries when it came.
        for shop in self.shops_with_ready_work()? {
            if let Some(head) = self.ready_skipping(&shop, 1, &HashSet::new())?.pop() {
                note(shop, head.received_at_ms);
            }
        }
        for item in self.tree()?.scan_prefix(keys::WAITING) {
            let (_, pair) = item?;
            if let Some(key) = TradeKey::decode_pair(&pair)
                && let Some(entry) = self.entry(&key)?
                && let Some(pending) = entry.pending
            {
                note(entry.shop_no, pending.received_at_ms);
            }
        }
        Ok(oldest)
    }
}

/// `(shop, queue place)` of a ready-queue (`q/`) key.
pub(super) fn parse_queue_key(key: &[u8]) -> Result<(&str, u64)> {
    keys::parse_ready_key(key).ok_or_else(|| StoreError::Corrupt("ready queue key".into()))
}

/// The tid a ready-queue place holds (the `q/` key's value).
pub(super) fn queued_tid(value: &[u8]) -> Result<&str> {
    std::str::from_utf8(value).map_err(|_| StoreError::Corrupt("queued tid".into()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;
    use wdtpipe_proto::v1::{Attempt, OutboxEntry, PendingVersion, TradeOrder};

    /// The ready read's partial view reads the same tags as the full entry.
    #[test]
    fn entry_head_reads_what_the_entry_holds() {
        let trade = TradeOrder {
            tid: "T1".into(),
            shop_no: "S1".into(),
            paid: "12.5".into(),
            ..TradeOrder::default()
        };
        let entry = OutboxEntry {
            tid: "T1".into(),
            shop_no: "S1".into(),
            pending: Some(PendingVersion {
                seq: 42,
                record_id: "r1".into(),
                received_at_ms: 1_700,
                trade: trade.encode_to_vec(),
                transformed_at_ms: 1_701,
                enqueued_at_ms: 1_702,
                request_id: "req".into(),
                record: vec![1, 2, 3],
                scheme: "mall@0123456789ab".into(),
            }),
            queue_seq: 40,
            attempts: 3,
            last_error: "HTTP 503".into(),
            history: vec![Attempt::default(); 2],
            record_id: "r1".into(),
            first_attempt_at_ms: 1_800,
            ..OutboxEntry::default()
        };
        let head: EntryHead = decode(&entry.encode_to_vec()).unwrap();
        assert_eq!((head.attempts, head.first_attempt_at_ms), (3, 1_800));
        let pending = head.pending.unwrap();
        assert_eq!(
            (
                pending.seq,
                pending.record_id.as_str(),
                pending.received_at_ms
            ),
            (42, "r1", 1_700)
        );
        assert_eq!(decode::<TradeOrder>(&pending.trade).unwrap(), trade);
    }
}
