//! Opening an outbox: sled in its directory (waiting for the lock a moment), the sequence
//! counter and the queued totals read back, and the writer thread started.

use super::mirror::ReadyMirror;
use super::sweep::SweepCursors;
use super::tally::count_queued;
use super::txn::RecentEntries;
use super::writer::{Writer, WriterLoad, WriterState};
use super::{DEFAULT_CACHE_BYTES, Outbox, Result, StoreError};
use crate::config::Retention;
use crate::keys;
use std::path::Path;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
            state: WriterState {
                next_seq,
                retention,
                cursors: SweepCursors::default(),
            },
            totals: Arc::clone(&totals),
            load: Arc::clone(&load),
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
