//! The sled outbox: durable queue, per-tid state, dedupe records and dead letters.
//!
//! Every write goes through one writer thread. It takes all commands waiting in its channel,
//! applies them to one atomic sled batch, flushes (fsync) once, and only then answers each
//! caller: group commit, so concurrent enqueues share one flush, and a caller that got an
//! answer knows its data is on disk. Having one writer also makes each command's
//! read-modify-write free of races. Reads (status, the worker's next batch) go to sled
//! directly and see committed state, except the worker's reads of short ready queues: the
//! writer keeps a copy of those in memory, updated after each commit (the `mirror` module).

//!
//! | module | what it holds |
//! |---|---|
//! | `open` | opening sled, reading the counters back, starting the writer |
//! | `writer` | the writer thread, its group commit, typed answers |
//! | `txn` | a write's view (its writes over the group's over sled) |
//! | `tally` | what is queued, kept by the writer |
//! | `storage` | free space, the reserve, failed and stuck writes |
//! | `ready`, `mirror` | ready-queue reads, and the in-memory copy of short queues |
//! | `enqueue`, `settle`, `dead`, `remap`, `track`, `sweep` | the writes, one file per kind |
//! | `offline` | check, export and import an outbox no deliver has open |

mod dead;
mod enqueue;
mod mirror;
pub mod offline;
mod open;
mod ready;
mod remap;
mod settle;
mod storage;
mod sweep;
mod tally;
mod track;
mod txn;
mod writer;

pub use dead::{ADMIN_STEP, DeadPage, Remapped, Replayed, matches};
pub use enqueue::Enqueued;
pub use open::OutboxOptions;
pub use ready::{Ready, ReadyItem, ReadyRead};
pub use settle::{Outcome, Promoted, Settlement};
pub use storage::{STALL_AFTER, StorageHealth};
pub use sweep::Expired;
pub use tally::{Queued, ShopQueue};
pub use track::Tracked;
pub use writer::WriterStats;

use crate::keys::{self, TradeKey};
use prost::Message;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tally::Tally;
use wdtpipe_proto::v1::{OutboxEntry, PendingVersion, RecordMeta, TradeOrder};

/// Attempts kept in an entry's history (older ones are dropped).
pub const HISTORY_LIMIT: usize = 20;
/// sled page cache used when none is configured. sled's own count of cached bytes runs well
/// under what the process holds (at 64 senders deliver peaked at ~80 MB RSS with a 32 MiB
/// cache, 63–67 MB with 16 MiB, 57 MB with 12 MiB, 47 MB with 6 MiB). The small cache is
/// also the faster one: the queue's working set is its recent writes, and draining a large
/// backlog went from ~20,000 to ~24,000–26,000 trades/s going from 12 to 6 MiB
/// (BENCHMARKS.md).
pub const DEFAULT_CACHE_BYTES: u64 = 6 * 1024 * 1024;

/// The outbox format this code writes, kept under `m/format`:
/// 1. (no `m/format` key) everything before format versions were recorded;
/// 2. waiting versions and dead letters keep their source record and scheme (re-map);
/// 3. kuaidi100: the tracking-number index (`n/`), delivered versions kept for the status
///    retention, the status a sign-off moved a tid to (later versions keep it).
///
/// All are read as they are: 2 and 3 only added optional fields and keys. A newer binary
/// upgrades an older outbox when it opens it; an outbox of a later format than this is
/// refused (an older binary would ignore what it does not know, e.g. push a signed-off
/// order below its status).
pub const FORMAT_VERSION: u64 = 3;

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
    /// The disk under the outbox is full (or below its reserve): nothing was written.
    #[error("outbox disk full: {0}")]
    DiskFull(String),
    /// Writing to disk failed: nothing of the write is acknowledged.
    #[error("outbox write failed: {0}")]
    WriteFailed(String),
    /// Below `DELIVER_MIN_FREE_BYTES` free: new batches wait, settling goes on.
    #[error("outbox disk low: {0}")]
    DiskLow(String),
    /// The outbox is being reopened after a failed write: try again in a moment.
    #[error("outbox reopening after a failed write; retry")]
    Reopening,
    /// Written by a later version of wdtpipe: reading it could misread it.
    #[error(
        "the outbox at {dir} has format {found}, newer than this binary understands ({supported}): run the wdtpipe release that wrote it, or a later one"
    )]
    NewerFormat {
        dir: String,
        found: u64,
        supported: u64,
    },
}

impl StoreError {
    /// What a failed sled write means: the disk is full, or another I/O failure.
    pub(crate) fn of_write(error: sled::Error) -> Self {
        match &error {
            sled::Error::Io(io) if is_disk_full(io) => Self::DiskFull(io.to_string()),
            _ => Self::WriteFailed(error.to_string()),
        }
    }

    /// The same failure, for one more of the callers whose writes it failed.
    pub(crate) fn for_caller(&self) -> Self {
        match self {
            Self::DiskFull(why) => Self::DiskFull(why.clone()),
            Self::WriteFailed(why) => Self::WriteFailed(why.clone()),
            Self::Closed => Self::Closed,
            other => Self::WriteFailed(other.to_string()),
        }
    }
}

/// ENOSPC or EDQUOT.
fn is_disk_full(error: &std::io::Error) -> bool {
    error.kind() == std::io::ErrorKind::StorageFull
        || error.kind() == std::io::ErrorKind::QuotaExceeded
        || matches!(error.raw_os_error(), Some(28 | 122))
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The open sled database and the outbox's tree in it. The writer replaces them when it
/// reopens sled after a failed write.
#[derive(Clone)]
pub(super) struct Handles {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
}

/// Where readers find the current [`Handles`] (`None` while the writer reopens sled).
pub(super) type SharedHandles = Arc<RwLock<Option<Handles>>>;

/// The outbox. Cheap to share behind an `Arc`.
pub struct Outbox {
    handles: SharedHandles,
    /// The disk: free space, failed and stuck writes.
    storage: Arc<storage::Storage>,
    commands: Mutex<Option<mpsc::Sender<writer::Command>>>,
    /// Room in the writer's queue: a write holds a permit until it is answered.
    queue_room: tokio::sync::Semaphore,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Operations started and not yet answered (they run on other threads).
    in_flight: Arc<AtomicUsize>,
    /// What is queued, kept current by the writer after each commit.
    totals: Arc<Mutex<Tally>>,
    /// What the writer has done since open.
    load: Arc<writer::WriterLoad>,
    /// Copies of the short ready queues, kept by the writer.
    mirror: Arc<mirror::ReadyMirror>,
    /// The oldest waiting trade of each shop as last read, and when (`OLDEST_FRESH`).
    oldest: Mutex<Option<(std::time::Instant, BTreeMap<String, i64>)>>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").finish_non_exhaustive()
    }
}

impl Outbox {
    /// The outbox's tree, as readers see it now.
    fn tree(&self) -> Result<sled::Tree> {
        self.handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|h| h.tree.clone())
            .ok_or(StoreError::Reopening)
    }

    /// Number of keys under each prefix (`t/`, `q/`, ...): what the outbox holds.
    pub fn key_counts(&self) -> Result<BTreeMap<String, usize>> {
        let mut counts = BTreeMap::new();
        for item in self.tree()?.iter() {
            let (key, _) = item?;
            let prefix = String::from_utf8_lossy(&key[..key.len().min(2)]).into_owned();
            *counts.entry(prefix).or_insert(0) += 1;
        }
        Ok(counts)
    }

    /// The entry of a tid in a shop.
    pub fn entry(&self, key: &TradeKey) -> Result<Option<OutboxEntry>> {
        self.tree()?
            .get(key.entry_key())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every entry for a tid (one per shop that holds it).
    pub fn entries_for_tid(&self, tid: &str) -> Result<Vec<OutboxEntry>> {
        self.tree()?
            .scan_prefix(keys::entry_prefix(tid))
            .map(|item| decode(&item?.1))
            .collect()
    }

    /// The tid whose record last carried this tracking number (the `n/` index).
    pub fn tid_for_tracking(&self, number: &str) -> Result<Option<String>> {
        Ok(self
            .tree()?
            .get(keys::tracking_key(number))?
            .map(|v| decode::<wdtpipe_proto::v1::TrackingIndex>(&v))
            .transpose()?
            .map(|index| index.tid))
    }

    /// The latest record a scheme skipped for this tid, while its status is kept.
    pub fn skip_note(&self, tid: &str) -> Result<Option<RecordMeta>> {
        self.tree()?
            .get(keys::skipped_key(tid))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// What deliver remembers of a record id.
    pub fn record(&self, record_id: &str) -> Result<Option<RecordMeta>> {
        self.tree()?
            .get(keys::record_key(record_id))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Number of trades waiting (ready or retrying), counted from the queues' keys.
    pub fn queued_len(&self) -> Result<usize> {
        let tree = self.tree()?;
        Ok(tree.scan_prefix(keys::READY).count() + tree.scan_prefix(keys::WAITING).count())
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

    /// Dead letters per lane (a count the writer keeps; no scan).
    pub fn dead_letter_counts(&self) -> BTreeMap<String, u64> {
        self.totals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .dead
            .iter()
            .map(|(lane, n)| (lane.clone(), u64::try_from(*n).unwrap_or(0)))
            .collect()
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
        let handles = self.handles.read().unwrap_or_else(|e| e.into_inner());
        handles
            .as_ref()
            .and_then(|h| h.db.size_on_disk().ok())
            .unwrap_or(0)
    }

    /// Stops the writer after it applied everything already sent, then flushes. A writer
    /// stuck in a commit is left behind (joining it would never return): what was
    /// acknowledged is on disk, and the process should restart.
    pub fn close(&self) -> Result<()> {
        drop(
            self.commands
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if let Some(stalled) = self.storage.stalled() {
            return Err(StoreError::WriteFailed(format!(
                "an outbox write has not returned for {} s; closing without waiting for it",
                stalled.as_secs()
            )));
        }
        if let Some(handle) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = handle.join();
        }
        let handles = self
            .handles
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(handles) = handles {
            handles.db.flush()?;
        }
        Ok(())
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// The trade of a waiting version (stored encoded, see `PendingVersion.trade`).
pub fn pending_trade(pending: &PendingVersion) -> Result<TradeOrder> {
    decode(&pending.trade)
}

pub(crate) fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M> {
    M::decode(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// True when the entry holds a version newer than `seq`, waiting or delivered: an older
/// one (a replayed or re-mapped letter) is superseded there (latest wins).
pub(super) fn has_newer(entry: &OutboxEntry, seq: u64) -> bool {
    entry.pending.as_ref().is_some_and(|p| p.seq > seq) || entry.delivered_seq > seq
}

/// Marks an entry as holding no waiting version: from now on it only serves status, until
/// the status retention runs out.
pub(super) fn finish(entry: &mut OutboxEntry, now_ms: i64) {
    entry.finished_at_ms = now_ms;
}
