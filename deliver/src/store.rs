//! The sled outbox: durable queue, per-tid state, dedupe records and dead letters.
//!
//! Every write goes through one writer thread. It takes all commands waiting in its channel,
//! applies them to one atomic sled batch, flushes (fsync) once, and only then answers each
//! caller: group commit, so concurrent enqueues share one flush, and a caller that got an
//! answer knows its data is on disk. Having one writer also makes each command's
//! read-modify-write free of races. Reads (status, the worker's next batch) go to sled
//! directly and see committed state, except the worker's reads of short ready queues: the
//! writer keeps a copy of those in memory, updated after each commit (the `mirror` module).

mod dead;
mod mirror;

pub use dead::{DeadPage, Remapped, Replayed, matches};

use crate::config::Retention;
use crate::keys::{self, TradeKey};
use mirror::ReadyMirror;
use prost::Message;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use wdtpipe_common::connectors::lane;
use wdtpipe_proto::v1::{
    Attempt, DeadLetter, DeadLetterFilter, DeliveryState, EnqueueRecord, EnqueueResult,
    OutboxEntry, PendingVersion, RecordMeta, RemappedLetter, TradeOrder,
};

/// Attempts kept in an entry's history (older ones are dropped).
pub const HISTORY_LIMIT: usize = 20;
/// Commands applied in one group commit at most.
const GROUP_LIMIT: usize = 4096;
/// sled page cache used when none is configured. sled's own count of cached bytes runs well
/// under what the process holds (at 64 senders deliver peaked at ~80 MB RSS with a 32 MiB
/// cache, 63–67 MB with 16 MiB, 57 MB with 12 MiB, 47 MB with 6 MiB). The small cache is
/// also the faster one: the queue's working set is its recent writes, and draining a large
/// backlog went from ~20,000 to ~24,000–26,000 trades/s going from 12 to 6 MiB
/// (BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: u64 = 6 * 1024 * 1024;
/// Expiry index keys looked at in one sweep step (keeps each commit small).
const EXPIRE_LIMIT: usize = 1_000;

/// Why the outbox could not do something.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("outbox storage error: {0}")]
    Sled(#[from] sled::Error),
    #[error("outbox data is corrupt: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("outbox is closed")]
    Closed,
    #[error(
        "the outbox at {0} is in use: another process (or another outbox in this one) holds its lock"
    )]
    InUse(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    fn of_entry(key: TradeKey, queue_seq: u64, entry: &[u8]) -> Result<Option<Self>> {
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

/// What an enqueue did.
#[derive(Debug, Default)]
pub struct Enqueued {
    pub results: Vec<EnqueueResult>,
    /// Shops that have new ready work.
    pub ready_shops: BTreeSet<String>,
}

/// What a promotion of due retries did.
#[derive(Debug, Default)]
pub struct Promoted {
    pub ready_shops: BTreeSet<String>,
    /// When the next waiting trade falls due, if any waits.
    pub next_due_ms: Option<i64>,
}

/// What one sweep step removed.
#[derive(Debug, Default)]
pub struct Expired {
    /// Dedupe records, idempotency keys and finished entries removed.
    pub removed: usize,
    /// True when more expired keys remain (sweep again).
    pub more: bool,
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
            source_record: match &record.record {
                Some(source) if !record.skipped => source.encode_to_vec(),
                _ => Vec::new(),
            },
        }
    }
}

/// A write the writer thread applies.
enum Op {
    Enqueue {
        records: Vec<RecordToWrite>,
        idempotency_key: String,
        request_id: String,
    },
    Settle(Vec<Settlement>),
    Promote,
    Replay(DeadLetterFilter),
    Discard(DeadLetterFilter),
    Purge {
        shop_no: String,
        tid: String,
    },
    Expire,
    WriteRemapped(Vec<RemappedLetter>),
}

/// What a write did, sent back only once it is on disk.
enum Done {
    Enqueued(Enqueued),
    Settled(BTreeSet<String>),
    Promoted(Promoted),
    Replayed(Replayed),
    Discarded(u32),
    Purged(u32),
    Expired(Expired),
    Remapped(Remapped),
}

struct Command {
    op: Op,
    now_ms: i64,
    reply: oneshot::Sender<Result<Done>>,
}

/// The outbox. Cheap to share behind an `Arc`.
pub struct Outbox {
    db: sled::Db,
    tree: sled::Tree,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Operations started and not yet answered (they run on other threads).
    in_flight: Arc<AtomicUsize>,
    /// What is queued, kept current by the writer after each commit.
    totals: Arc<Mutex<Tally>>,
    /// What the writer has done since open.
    load: Arc<WriterLoad>,
    /// Copies of the short ready queues, kept by the writer.
    mirror: Arc<ReadyMirror>,
}

/// The writer thread's work since the outbox was opened, kept as it goes.
#[derive(Debug, Default)]
struct WriterLoad {
    flushes: AtomicU64,
    busy_nanos: AtomicU64,
    flush_nanos: AtomicU64,
}

/// The writer thread's work since the outbox was opened. The rate of `busy` is how loaded
/// the single writer is (1.0 = never idle); `flushing` is the part spent waiting on fsync.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Group commits flushed to disk (one fsync each).
    pub flushes: u64,
    /// Time spent applying and flushing group commits.
    pub busy: Duration,
    /// The part of `busy` spent in `flush` (fsync).
    pub flushing: Duration,
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

/// Counts one operation as in flight until dropped.
struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` with the default retention.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, Retention::default(), DEFAULT_CACHE_BYTES)
    }

    /// Opens (or creates) the outbox in `dir` and starts its writer thread.
    /// `cache_bytes` bounds sled's page cache (its default, 1 GiB, is more than a service
    /// should hold in memory).
    pub fn open_with(dir: &Path, retention: Retention, cache_bytes: u64) -> Result<Self> {
        let db = open_db(dir, cache_bytes)?;
        let tree = db.open_tree("outbox")?;
        let next_seq = match tree.get(keys::SEQ)? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| StoreError::Corrupt("sequence counter".into()))?,
            ),
            None => 1,
        };
        let (tx, rx) = mpsc::channel();
        let totals = Arc::new(Mutex::new(count_queued(&tree)?));
        let load = Arc::new(WriterLoad::default());
        let mirror = Arc::new(ReadyMirror::default());
        let writer = Writer {
            mirror: Arc::clone(&mirror),
            recent: RecentEntries::default(),
            db: db.clone(),
            tree: tree.clone(),
            next_seq,
            retention,
            totals: Arc::clone(&totals),
            load: Arc::clone(&load),
            cursors: SweepCursors::default(),
        };
        let handle = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::Corrupt(format!("cannot start writer thread: {e}")))?;
        Ok(Self {
            db,
            tree,
            commands: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(handle)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            load,
            totals,
            mirror,
        })
    }

    /// Hands a write to the writer thread and waits until it is on disk.
    async fn call(&self, op: Op, now_ms: i64) -> Result<Done> {
        let _in_flight = InFlight::new(&self.in_flight);
        let (reply, answer) = oneshot::channel();
        {
            let guard = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(Command { op, now_ms, reply })
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }

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
        let op = Op::Enqueue {
            records: records.into_iter().map(RecordToWrite::from).collect(),
            idempotency_key,
            request_id,
        };
        match self.call(op, now_ms).await? {
            Done::Enqueued(done) => Ok(done),
            _ => unreachable!("enqueue answers Enqueued"),
        }
    }

    /// Writes back what pushing some trades did. Returns shops with ready work.
    pub async fn settle(
        &self,
        settlements: Vec<Settlement>,
        now_ms: i64,
    ) -> Result<BTreeSet<String>> {
        match self.call(Op::Settle(settlements), now_ms).await? {
            Done::Settled(shops) => Ok(shops),
            _ => unreachable!("settle answers Settled"),
        }
    }

    /// Moves retries that are due back into their shops' ready queues.
    pub async fn promote_due(&self, now_ms: i64) -> Result<Promoted> {
        match self.call(Op::Promote, now_ms).await? {
            Done::Promoted(promoted) => Ok(promoted),
            _ => unreachable!("promote answers Promoted"),
        }
    }

    /// Puts dead letters matching `filter` back in the queue (latest version wins).
    pub async fn replay(&self, filter: DeadLetterFilter, now_ms: i64) -> Result<Replayed> {
        match self.call(Op::Replay(filter), now_ms).await? {
            Done::Replayed(replayed) => Ok(replayed),
            _ => unreachable!("replay answers Replayed"),
        }
    }

    /// Deletes dead letters matching `filter`; returns how many.
    pub async fn discard(&self, filter: DeadLetterFilter, now_ms: i64) -> Result<u32> {
        match self.call(Op::Discard(filter), now_ms).await? {
            Done::Discarded(n) => Ok(n),
            _ => unreachable!("discard answers Discarded"),
        }
    }

    /// Moves waiting trades of a shop (or a tid) into the dead-letter store.
    pub async fn purge(&self, shop_no: String, tid: String, now_ms: i64) -> Result<u32> {
        match self.call(Op::Purge { shop_no, tid }, now_ms).await? {
            Done::Purged(n) => Ok(n),
            _ => unreachable!("purge answers Purged"),
        }
    }

    /// Removes one batch of expired dedupe records and finished entries.
    pub async fn expire(&self, now_ms: i64) -> Result<Expired> {
        match self.call(Op::Expire, now_ms).await? {
            Done::Expired(expired) => Ok(expired),
            _ => unreachable!("expire answers Expired"),
        }
    }

    /// Number of keys under each prefix (`t/`, `q/`, ...): what the outbox holds.
    pub fn key_counts(&self) -> Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for item in self.tree.iter() {
            let (key, _) = item?;
            let prefix = String::from_utf8_lossy(&key[..key.len().min(2)]).into_owned();
            *counts.entry(prefix).or_insert(0) += 1;
        }
        Ok(counts)
    }

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
        for item in self.tree.scan_prefix(&prefix) {
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
            let Some(entry) = self.tree.get(key.entry_key())? else {
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
        match self.tree.scan_prefix(keys::WAITING).next().transpose()? {
            Some((key, _)) => Ok(keys::parse_waiting_key(&key).map(|(due, _)| due)),
            None => Ok(None),
        }
    }

    /// Shops that have trades in their ready queues.
    pub fn shops_with_ready_work(&self) -> Result<Vec<String>> {
        let mut shops = Vec::new();
        let mut from = keys::READY.to_vec();
        while let Some((key, _)) = self.tree.range(from.clone()..).next().transpose()? {
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

    /// The entry of a tid in a shop.
    pub fn entry(&self, key: &TradeKey) -> Result<Option<OutboxEntry>> {
        self.tree
            .get(key.entry_key())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every entry for a tid (one per shop that holds it).
    pub fn entries_for_tid(&self, tid: &str) -> Result<Vec<OutboxEntry>> {
        self.tree
            .scan_prefix(keys::entry_prefix(tid))
            .map(|item| decode(&item?.1))
            .collect()
    }

    /// The latest record a scheme skipped for this tid, while its status is kept.
    pub fn skip_note(&self, tid: &str) -> Result<Option<RecordMeta>> {
        self.tree
            .get(keys::skipped_key(tid))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// What deliver remembers of a record id.
    pub fn record(&self, record_id: &str) -> Result<Option<RecordMeta>> {
        self.tree
            .get(keys::record_key(record_id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Number of trades waiting (ready or retrying), counted from the queues' keys.
    pub fn queued_len(&self) -> usize {
        self.tree.scan_prefix(keys::READY).count() + self.tree.scan_prefix(keys::WAITING).count()
    }

    /// Trades waiting to be delivered and their payload bytes, from the running totals.
    pub fn queued(&self) -> Queued {
        self.totals.lock().unwrap_or_else(|e| e.into_inner()).queued
    }

    /// Waiting trades per shop, from the running totals.
    pub fn shop_queues(&self) -> BTreeMap<String, ShopQueue> {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .shops
            .clone()
    }

    /// When the oldest waiting trade of each shop was received (ready queue heads and every
    /// retrying trade).
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
        for item in self.tree.scan_prefix(keys::WAITING) {
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

    /// Dead letters per shop.
    pub fn dead_letter_counts(&self) -> Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for item in self.tree.scan_prefix(keys::DEAD) {
            let letter: DeadLetter = decode(&item?.1)?;
            *counts.entry(letter.shop_no).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// What the writer thread has done since the outbox was opened.
    pub fn writer_stats(&self) -> WriterStats {
        let nanos = |n: &AtomicU64| Duration::from_nanos(n.load(Ordering::Relaxed));
        WriterStats {
            flushes: self.load.flushes.load(Ordering::Relaxed),
            busy: nanos(&self.load.busy_nanos),
            flushing: nanos(&self.load.flush_nanos),
        }
    }

    /// Bytes sled takes on disk.
    pub fn disk_bytes(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }

    /// Stops the writer after it applied everything already sent, then flushes.
    pub fn close(&self) -> Result<()> {
        drop(
            self.commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        self.db.flush()?;
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// How long opening waits for the directory's lock before saying the outbox is in use.
const LOCK_WAIT: Duration = Duration::from_secs(3);

/// Opens sled in `dir`, waiting up to [`LOCK_WAIT`] for its lock.
///
/// sled releases the lock when the last of its threads lets go of the database file, which
/// can be a moment after the `Db` is dropped (its I/O pool may still be finishing a write).
/// Reopening at once in the same process (a restart, a test) would fail without the wait.
/// A lock held longer than that belongs to a live outbox, and opening says so.
fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
    let config = sled::Config::new()
        .path(dir)
        .mode(sled::Mode::HighThroughput)
        .cache_capacity(cache_bytes);
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        match config.open() {
            Err(sled::Error::Io(e)) if is_lock_held(&e) => {
                if Instant::now() >= deadline {
                    return Err(StoreError::InUse(dir.display().to_string()));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return Ok(opened?),
        }
    }
}

/// sled reports a held lock only as an `Other` I/O error with this text.
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().starts_with("could not acquire lock")
}

fn add_nanos(total: &AtomicU64, elapsed: Duration) {
    total.fetch_add(
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// Counts the waiting versions on disk (at open; afterwards the writer keeps the totals).
fn count_queued(tree: &sled::Tree) -> Result<Tally> {
    let mut tally = Tally::default();
    for item in tree.scan_prefix(keys::ENTRY) {
        let entry: OutboxEntry = decode(&item?.1)?;
        tally.count(&entry.shop_no, Share::of(&entry), 1);
    }
    Ok(tally)
}

/// The trade of a waiting version (stored encoded, see `PendingVersion.trade`).
pub fn pending_trade(pending: &PendingVersion) -> Result<TradeOrder> {
    decode(&pending.trade)
}

/// `(shop, queue place)` of a ready-queue (`q/`) key.
fn parse_queue_key(key: &[u8]) -> Result<(&str, u64)> {
    keys::parse_ready_key(key).ok_or_else(|| StoreError::Corrupt("ready queue key".into()))
}

/// The tid a ready-queue place holds (the `q/` key's value).
fn queued_tid(value: &[u8]) -> Result<&str> {
    std::str::from_utf8(value).map_err(|_| StoreError::Corrupt("queued tid".into()))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Pending writes of a group commit, read through before sled, and how they change what
/// is queued.
#[derive(Default)]
struct Overlay(mirror::Writes, Tally);

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

/// What is queued, in total and per shop (or a change of it).
#[derive(Debug, Default, Clone)]
struct Tally {
    queued: Queued,
    shops: BTreeMap<String, ShopQueue>,
}

impl Tally {
    /// Adds (`sign` 1) or removes (`sign` -1) one entry's share.
    fn count(&mut self, shop_no: &str, share: Option<Share>, sign: i64) {
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

    fn merge(&mut self, change: &Tally) {
        self.queued.trades += change.queued.trades;
        self.queued.bytes += change.queued.bytes;
        for (shop, delta) in &change.shops {
            let counts = self.shops.entry(shop.clone()).or_default();
            counts.ready += delta.ready;
            counts.retrying += delta.retrying;
        }
        self.shops.retain(|_, c| c.ready != 0 || c.retrying != 0);
    }
}

/// What one entry adds to the queued totals: nothing unless a version waits.
#[derive(Debug, Clone, Copy)]
struct Share {
    bytes: i64,
    retrying: bool,
}

impl Share {
    fn of(entry: &OutboxEntry) -> Option<Self> {
        let pending = entry.pending.as_ref()?;
        Some(Self {
            bytes: i64::try_from(pending.encoded_len()).unwrap_or(i64::MAX),
            retrying: entry.state == DeliveryState::Retrying as i32,
        })
    }
}

/// One command's view: its own writes over the group's, over the tree (the entries the
/// writer wrote last read from [`RecentEntries`], which holds them as committed). Dropped
/// without merging when the command fails, so a failed command leaves nothing behind.
struct Txn<'a> {
    tree: &'a sled::Tree,
    recent: &'a RecentEntries,
    group: &'a Overlay,
    own: Overlay,
}

impl Txn<'_> {
    fn get_msg<M: Message + Default>(&self, key: &[u8]) -> Result<Option<M>> {
        if let Some(v) = self.own.0.get(key).or_else(|| self.group.0.get(key)) {
            return v.as_deref().map(decode).transpose();
        }
        if let Some(v) = self.recent.get(key) {
            return decode(v).map(Some);
        }
        self.tree.get(key)?.map(|v| decode(&v)).transpose()
    }

    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.own.0.insert(key, Some(value));
    }

    fn put_msg<M: Message>(&mut self, key: Vec<u8>, value: &M) {
        self.put(key, value.encode_to_vec());
    }

    fn del(&mut self, key: Vec<u8>) {
        self.own.0.insert(key, None);
    }

    /// Writes an entry, accounting for the change in what is queued: `before` is the share
    /// of the entry as it was read ([`Share::of`], `None` when it was absent or finished).
    fn put_entry(&mut self, key: Vec<u8>, before: Option<Share>, entry: &OutboxEntry) {
        self.own.1.count(&entry.shop_no, before, -1);
        self.own.1.count(&entry.shop_no, Share::of(entry), 1);
        self.put_msg(key, entry);
    }
}

/// The entries (`t/` keys) the writer wrote last, as committed: a settlement reads back the
/// entry its enqueue wrote moments before, and finds it here instead of in sled. Shares the
/// values' memory with the batch handed to sled.
#[derive(Default)]
struct RecentEntries {
    /// Each key's value and when it was written (a count of writes).
    values: std::collections::HashMap<Vec<u8>, (sled::IVec, u64)>,
    /// Keys in the order written, with when.
    order: std::collections::VecDeque<(Vec<u8>, u64)>,
    writes: u64,
}

impl RecentEntries {
    /// Entries kept at most (each ~0.3–2 KB).
    const LIMIT: usize = 1_024;

    fn get(&self, key: &[u8]) -> Option<&sled::IVec> {
        self.values.get(key).map(|(value, _)| value)
    }

    fn put(&mut self, key: &[u8], value: sled::IVec) {
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

    fn remove(&mut self, key: &[u8]) {
        self.values.remove(key);
    }

    fn clear(&mut self) {
        self.values.clear();
        self.order.clear();
    }
}

struct Writer {
    db: sled::Db,
    tree: sled::Tree,
    recent: RecentEntries,
    next_seq: u64,
    retention: Retention,
    totals: Arc<Mutex<Tally>>,
    load: Arc<WriterLoad>,
    cursors: SweepCursors,
    mirror: Arc<ReadyMirror>,
}

impl Writer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        while let Ok(first) = commands.recv() {
            let mut group = vec![first];
            while group.len() < GROUP_LIMIT {
                match commands.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            self.commit(group);
            add_nanos(&self.load.busy_nanos, started.elapsed());
        }
        tracing::debug!("outbox writer stopped");
    }

    fn commit(&mut self, group: Vec<Command>) {
        let mut overlay = Overlay::default();
        let seq_before = self.next_seq;
        let answers: Vec<(oneshot::Sender<Result<Done>>, Result<Done>)> = group
            .into_iter()
            .map(|command| {
                let result = self.apply(command.op, command.now_ms, &mut overlay);
                (command.reply, result)
            })
            .collect();
        let failure = if !overlay.0.is_empty() || self.next_seq != seq_before {
            self.write(&overlay, seq_before)
                .err()
                .map(|e| e.to_string())
        } else {
            None
        };
        if failure.is_none() {
            self.totals
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .merge(&overlay.1);
            self.mirror.apply(&self.tree, &overlay.0, |shop| {
                let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
                totals.shops.get(shop).map_or(0, |queue| queue.ready)
            });
        }
        if let Some(message) = &failure {
            tracing::error!(error = %message, "outbox commit failed");
            // What sled holds after a failed commit is not known here: read it again.
            self.mirror.clear();
            self.recent.clear();
        }
        for (reply, result) in answers {
            let result = match &failure {
                Some(message) => Err(StoreError::Corrupt(format!("commit failed: {message}"))),
                None => result,
            };
            let _ = reply.send(result);
        }
    }

    fn write(&mut self, overlay: &Overlay, seq_before: u64) -> Result<()> {
        let mut batch = sled::Batch::default();
        for (key, value) in &overlay.0 {
            let entry = key.starts_with(keys::ENTRY);
            match value {
                Some(value) => {
                    let value = sled::IVec::from(value.as_slice());
                    if entry {
                        self.recent.put(key, value.clone());
                    }
                    batch.insert(key.as_slice(), value);
                }
                None => {
                    if entry {
                        self.recent.remove(key);
                    }
                    batch.remove(key.as_slice());
                }
            }
        }
        if self.next_seq != seq_before {
            batch.insert(keys::SEQ, &self.next_seq.to_be_bytes());
        }
        self.tree.apply_batch(batch)?;
        let flushing = Instant::now();
        self.db.flush()?;
        add_nanos(&self.load.flush_nanos, flushing.elapsed());
        self.load.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies one write on top of the group's; merged only if it succeeds, so a failed
    /// write leaves nothing behind.
    fn apply(&mut self, op: Op, now_ms: i64, group: &mut Overlay) -> Result<Done> {
        let mut txn = Txn {
            tree: &self.tree,
            recent: &self.recent,
            group,
            own: Overlay::default(),
        };
        let next_seq = &mut self.next_seq;
        let retention = &self.retention;
        let result = match op {
            Op::Enqueue {
                records,
                idempotency_key,
                request_id,
            } => enqueue(
                &mut txn,
                next_seq,
                records,
                &idempotency_key,
                &request_id,
                now_ms,
                retention,
            )
            .map(Done::Enqueued),
            Op::Settle(settlements) => settle(&mut txn, settlements, now_ms).map(Done::Settled),
            Op::Expire => expire(&mut txn, &mut self.cursors, now_ms, retention).map(Done::Expired),
            Op::Promote => promote(&mut txn, now_ms).map(Done::Promoted),
            Op::WriteRemapped(letters) => {
                dead::write_remapped(&mut txn, next_seq, letters, now_ms).map(Done::Remapped)
            }
            Op::Replay(filter) => dead::replay(&mut txn, next_seq, &filter).map(Done::Replayed),
            Op::Discard(filter) => dead::discard(&mut txn, &filter).map(Done::Discarded),
            Op::Purge { shop_no, tid } => {
                dead::purge(&mut txn, &shop_no, &tid, now_ms).map(Done::Purged)
            }
        };
        let own = txn.own;
        if result.is_ok() {
            group.0.extend(own.0);
            group.1.merge(&own.1);
        }
        result
    }
}

fn enqueue(
    txn: &mut Txn<'_>,
    next_seq: &mut u64,
    records: Vec<RecordToWrite>,
    idempotency_key: &str,
    request_id: &str,
    now_ms: i64,
    retention: &Retention,
) -> Result<Enqueued> {
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
        for TradeToWrite { key, encoded } in record.trades {
            let seq = *next_seq;
            *next_seq += 1;
            let entry_key = key.entry_key();
            let mut entry: OutboxEntry = txn.get_msg(&entry_key)?.unwrap_or_else(|| OutboxEntry {
                tid: key.tid.clone(),
                shop_no: key.shop_no.clone(),
                ..OutboxEntry::default()
            });
            let before = Share::of(&entry);
            let waiting = entry.pending.is_some();
            entry.pending = Some(PendingVersion {
                seq,
                record_id: record.record_id.clone(),
                received_at_ms: record.received_at_ms,
                trade: encoded,
                transformed_at_ms: record.transformed_at_ms,
                enqueued_at_ms: now_ms,
                request_id: request_id.to_owned(),
                record: record.source_record.clone(),
                scheme: record.scheme.clone(),
            });
            entry.transformed_at_ms = record.transformed_at_ms;
            entry.enqueued_at_ms = now_ms;
            entry.request_id = request_id.to_owned();
            entry.scheme.clone_from(&record.scheme);
            entry.versions += 1;
            entry.record_id.clone_from(&record.record_id);
            entry.received_at_ms = record.received_at_ms;
            entry.dead_reason.clear();
            entry.finished_at_ms = 0;
            if !waiting {
                // A newer version of a waiting tid takes the older one's place (latest wins);
                // otherwise it joins the back of its shop's queue.
                entry.queue_seq = seq;
                entry.state = DeliveryState::Queued as i32;
                entry.next_attempt_at_ms = 0;
                txn.put(
                    keys::ready_key(&key.shop_no, seq),
                    key.tid.clone().into_bytes(),
                );
                done.ready_shops.insert(key.shop_no.clone());
            }
            txn.put_entry(entry_key, before, &entry);
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
                    entry.pending = None;
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
                txn.put_msg(keys::dead_key(&ready.key, ready.seq), &letter);
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

/// Marks an entry as holding no waiting version: from now on it only serves status, until
/// the status retention runs out.
fn finish(entry: &mut OutboxEntry, now_ms: i64) {
    entry.finished_at_ms = now_ms;
}

/// Where the retention sweep stands in each keyspace it walks.
#[derive(Debug, Default)]
struct SweepCursors {
    /// Per prefix (`r/`, `k/`, `t/`, `s/`): the key to resume from.
    next: [Option<Vec<u8>>; SWEPT.len()],
}

/// The keyspaces the sweep walks.
const SWEPT: [&[u8]; 4] = [keys::RECORD, keys::IDEMPOTENCY, keys::ENTRY, keys::SKIPPED];

/// Removes dedupe records and finished entries whose retention ran out: one bounded step
/// of a walk over `r/`, `k/` and `t/` that resumes where the last step stopped (no index is
/// kept, so a trade costs no extra writes for its expiry). `more` is false once the walk
/// has reached the end of every keyspace; the next step starts over.
fn expire(
    txn: &mut Txn<'_>,
    cursors: &mut SweepCursors,
    now_ms: i64,
    retention: &Retention,
) -> Result<Expired> {
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

fn push_history(history: &mut Vec<Attempt>, attempt: Attempt) {
    history.push(attempt);
    if history.len() > HISTORY_LIMIT {
        let excess = history.len() - HISTORY_LIMIT;
        history.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wdtpipe_proto::v1::Attempt;

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
