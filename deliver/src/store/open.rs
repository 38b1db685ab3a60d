//! Opening an outbox: sled in its directory (waiting for the lock a moment), the sequence
//! counter and the queued totals read back, and the writer thread started.

use super::mirror::ReadyMirror;
use super::storage::Storage;
use super::sweep::SweepCursors;
use super::tally::count_queued;
use super::txn::RecentEntries;
use super::writer::{QUEUE_LIMIT, Writer, WriterLoad, WriterState};
use super::{
    DEFAULT_CACHE_BYTES, FORMAT_VERSION, Handles, Outbox, Result, SharedHandles, StoreError,
};
use crate::config::Retention;
use crate::keys;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

/// How an outbox is opened.
#[derive(Debug, Clone)]
pub struct OutboxOptions {
    pub retention: Retention,
    /// sled's page cache (its default, 1 GiB, is more than a service should hold).
    pub cache_bytes: u64,
    /// Refuse new batches below this many free bytes (0 = no watermark); the writer keeps a
    /// reserve of a quarter of it (see the `storage` module).
    pub min_free_bytes: u64,
}

impl Default for OutboxOptions {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
            min_free_bytes: 0,
        }
    }
}

impl Outbox {
    /// Opens (or creates) the outbox in `dir` with the default options.
    pub fn open(dir: &Path) -> Result<Self> {
        Self::open_with(dir, OutboxOptions::default())
    }

    /// Opens (or creates) the outbox in `dir` and starts its writer thread.
    pub fn open_with(dir: &Path, options: OutboxOptions) -> Result<Self> {
        let handles = open_handles(dir, options.cache_bytes)?;
        upgrade(dir, &handles)?;
        let next_seq = stored_seq(&handles.tree)?;
        let (tx, rx) = mpsc::channel();
        let totals = Arc::new(Mutex::new(count_queued(&handles.tree)?));
        let load = Arc::new(WriterLoad::default());
        let mirror = Arc::new(ReadyMirror::default());
        let storage = Arc::new(Storage::new(dir.to_path_buf(), options.min_free_bytes));
        let shared: SharedHandles = Arc::new(RwLock::new(Some(handles.clone())));
        let writer = Writer {
            mirror: Arc::clone(&mirror),
            recent: RecentEntries::default(),
            handles: Some(handles),
            shared: Arc::clone(&shared),
            storage: Arc::clone(&storage),
            dir: dir.to_path_buf(),
            cache_bytes: options.cache_bytes,
            poisoned: false,
            state: WriterState {
                next_seq,
                retention: options.retention,
                cursors: SweepCursors::default(),
            },
            totals: Arc::clone(&totals),
            load: Arc::clone(&load),
        };
        let handle = std::thread::Builder::new()
            .name("outbox-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| StoreError::WriteFailed(format!("cannot start the writer thread: {e}")))?;
        Ok(Self {
            handles: shared,
            storage,
            commands: Mutex::new(Some(tx)),
            queue_room: tokio::sync::Semaphore::new(QUEUE_LIMIT),
            writer: Mutex::new(Some(handle)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            load,
            totals,
            mirror,
            oldest: Mutex::new(None),
        })
    }
}

/// Opens sled in `dir` and the outbox's tree in it.
pub(super) fn open_handles(dir: &Path, cache_bytes: u64) -> Result<Handles> {
    let db = open_db(dir, cache_bytes)?;
    let tree = db.open_tree("outbox")?;
    Ok(Handles { db, tree })
}

/// The format version an outbox records: `None` for format 1 (before versions were
/// recorded) and for a new, empty outbox.
pub(super) fn stored_format(tree: &sled::Tree) -> Result<Option<u64>> {
    tree.get(keys::FORMAT)?
        .map(|v| {
            v.as_ref()
                .try_into()
                .map(u64::from_be_bytes)
                .map_err(|_| StoreError::Corrupt("the format version is not 8 bytes".into()))
        })
        .transpose()
}

/// Brings an outbox to [`FORMAT_VERSION`], or refuses one of a later format. Format 1 needs
/// no rewriting (format 2 only added optional fields); the version is recorded and flushed.
fn upgrade(dir: &Path, handles: &Handles) -> Result<()> {
    let found = stored_format(&handles.tree)?;
    match found {
        Some(FORMAT_VERSION) => return Ok(()),
        Some(found) if found > FORMAT_VERSION => {
            return Err(StoreError::NewerFormat {
                dir: dir.display().to_string(),
                found,
                supported: FORMAT_VERSION,
            });
        }
        Some(found) => tracing::info!(from = found, to = FORMAT_VERSION, "outbox format upgraded"),
        None if handles.tree.is_empty() => {}
        None => tracing::info!(from = 1, to = FORMAT_VERSION, "outbox format upgraded"),
    }
    handles
        .tree
        .insert(keys::FORMAT, &FORMAT_VERSION.to_be_bytes())?;
    handles.db.flush()?;
    Ok(())
}

/// The sequence counter as last committed (1 in a new outbox).
pub(super) fn stored_seq(tree: &sled::Tree) -> Result<u64> {
    match tree.get(keys::SEQ)? {
        Some(v) => Ok(u64::from_be_bytes(v.as_ref().try_into().map_err(|_| {
            StoreError::Corrupt("the sequence counter is not 8 bytes".into())
        })?)),
        None => Ok(1),
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
pub(super) fn open_db(dir: &Path, cache_bytes: u64) -> Result<sled::Db> {
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
