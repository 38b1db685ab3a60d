//! The outbox's disk: how much room is left, whether writes succeed, and what the outbox
//! does when they do not.
//!
//! - Below `min_free` bytes free, new batches are refused ([`Outbox::admit`]), so that
//!   settling, replay, re-map and the sweep keep room. They stop only at the reserve (a
//!   quarter of `min_free`, at least 4 MiB), below which the writer writes nothing at all:
//!   once a write of sled's fails with ENOSPC it fails every later one until reopened, and
//!   it can even hang in `flush`. The reserve is what keeps it from getting there.
//! - A commit that fails anyway fails only the writes in it. The writer reopens sled and
//!   tries again with the next write, or by itself every second; the first commit that
//!   succeeds ends the failure. Readers keep reading meanwhile (between the close and the
//!   reopen they are told to retry).
//! - A commit that has not returned after [`STALL_AFTER`] is a stuck sled: the health says
//!   so, and only a restart recovers it (what was acknowledged is on disk).

use super::{Outbox, Result, StoreError};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use wdtpipe_common::now_ms;

/// The smallest reserve the writer keeps free when `min_free` is set.
const MIN_RESERVE: u64 = 4 * 1024 * 1024;
/// How long a reading of the free space is reused.
const FREE_SPACE_TTL: Duration = Duration::from_millis(250);
/// A commit running longer than this is stuck.
pub const STALL_AFTER: Duration = Duration::from_secs(20);

/// The disk under the outbox and the writer's luck with it; shared by the writer and the
/// readers.
#[derive(Debug)]
pub(super) struct Storage {
    dir: PathBuf,
    min_free: u64,
    failure: Mutex<Option<Failure>>,
    failed_commits: AtomicU64,
    /// When the commit under way started (Unix ms), 0 when none is.
    commit_started_ms: AtomicI64,
    /// The last reading of the free space, and when it was taken.
    free: Mutex<Option<(Instant, u64)>>,
    /// Fault injection: the next commit fails as a failed sled write would.
    fail_next: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Clone)]
struct Failure {
    reason: String,
    since_ms: i64,
}

/// Whether the outbox can write now, and why not (for `Stats`, `/metrics`, health).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageHealth {
    /// Why writes fail, while they do.
    pub failing: Option<String>,
    /// Since when they fail (Unix ms), 0 when they do not.
    pub failing_since_ms: i64,
    /// How long the commit under way has been running, when past [`STALL_AFTER`].
    pub stalled_for: Option<Duration>,
    /// Bytes free for the outbox's directory, when the system says.
    pub free_bytes: Option<u64>,
    /// `DELIVER_MIN_FREE_BYTES` (0 = no watermark).
    pub min_free_bytes: u64,
    /// Commits that failed since the outbox was opened.
    pub failed_commits: u64,
}

impl StorageHealth {
    /// Writes succeed and none is stuck.
    pub fn writable(&self) -> bool {
        self.failing.is_none() && self.stalled_for.is_none()
    }

    /// Why the outbox cannot take writes, for a status line.
    pub fn problem(&self) -> Option<String> {
        match (&self.stalled_for, &self.failing) {
            (Some(stalled), _) => Some(format!(
                "an outbox write has not returned for {} s (the storage is stuck; restart deliver)",
                stalled.as_secs()
            )),
            (None, Some(reason)) => Some(reason.clone()),
            (None, None) => None,
        }
    }
}

impl Storage {
    pub(super) fn new(dir: PathBuf, min_free: u64) -> Self {
        Self {
            dir,
            min_free,
            failure: Mutex::new(None),
            failed_commits: AtomicU64::new(0),
            commit_started_ms: AtomicI64::new(0),
            free: Mutex::new(None),
            fail_next: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Whether an injected failure is due (and clears it).
    pub(super) fn take_injected_failure(&self) -> bool {
        self.fail_next.swap(false, Ordering::SeqCst)
    }

    /// Bytes the writer never writes into.
    fn reserve(&self) -> u64 {
        if self.min_free == 0 {
            0
        } else {
            (self.min_free / 4).max(MIN_RESERVE).min(self.min_free)
        }
    }

    /// Bytes free for the outbox's directory, read now.
    fn free_now(&self) -> Option<u64> {
        let free = fs2::available_space(&self.dir).ok()?;
        *self.free.lock().unwrap_or_else(|e| e.into_inner()) = Some((Instant::now(), free));
        Some(free)
    }

    /// Bytes free, from a reading at most [`FREE_SPACE_TTL`] old.
    fn free(&self) -> Option<u64> {
        let cached = *self.free.lock().unwrap_or_else(|e| e.into_inner());
        match cached {
            Some((at, free)) if at.elapsed() < FREE_SPACE_TTL => Some(free),
            _ => self.free_now(),
        }
    }

    /// For the writer, before it hands sled a batch: the reserve is still free.
    pub(super) fn check_reserve(&self) -> Result<()> {
        let reserve = self.reserve();
        if reserve == 0 {
            return Ok(());
        }
        match self.free_now() {
            Some(free) if free < reserve => Err(StoreError::DiskFull(format!(
                "{free} bytes free under {}, below the writer's reserve of {reserve} bytes \
                 (a quarter of DELIVER_MIN_FREE_BYTES): free some space",
                self.dir.display()
            ))),
            _ => Ok(()),
        }
    }

    pub(super) fn failing(&self) -> bool {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// A commit failed with `error`.
    pub(super) fn failed(&self, error: &StoreError) {
        self.failed_commits.fetch_add(1, Ordering::Relaxed);
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        let since_ms = failure.as_ref().map_or_else(now_ms, |f| f.since_ms);
        *failure = Some(Failure {
            reason: error.to_string(),
            since_ms,
        });
    }

    /// A commit succeeded: writes work again.
    pub(super) fn succeeded(&self) {
        let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ended) = failure.take() {
            tracing::warn!(
                failed_for_ms = now_ms() - ended.since_ms,
                "outbox writes succeed again"
            );
        }
    }

    pub(super) fn commit_started(&self) {
        self.commit_started_ms.store(now_ms(), Ordering::Relaxed);
    }

    pub(super) fn commit_ended(&self) {
        self.commit_started_ms.store(0, Ordering::Relaxed);
    }

    /// True while a commit has been running for longer than [`STALL_AFTER`].
    pub(super) fn stalled(&self) -> Option<Duration> {
        let started = self.commit_started_ms.load(Ordering::Relaxed);
        if started == 0 {
            return None;
        }
        let running = Duration::from_millis(u64::try_from(now_ms() - started).unwrap_or(0));
        (running > STALL_AFTER).then_some(running)
    }

    pub(super) fn health(&self) -> StorageHealth {
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        StorageHealth {
            failing_since_ms: failure.as_ref().map_or(0, |f| f.since_ms),
            failing: failure.map(|f| f.reason),
            stalled_for: self.stalled(),
            free_bytes: self.free(),
            min_free_bytes: self.min_free,
            failed_commits: self.failed_commits.load(Ordering::Relaxed),
        }
    }
}

impl Outbox {
    /// Whether a new batch may come in: refused below `min_free` bytes free
    /// ([`StoreError::DiskLow`]) and while writes fail or hang.
    pub fn admit(&self) -> Result<()> {
        if let Some(problem) = self.storage.health_problem() {
            return Err(StoreError::WriteFailed(problem));
        }
        let min_free = self.storage.min_free;
        match self.storage.free() {
            Some(free) if min_free > 0 && free < min_free => Err(StoreError::DiskLow(format!(
                "{free} bytes free under {}, below DELIVER_MIN_FREE_BYTES ({min_free})",
                self.storage.dir.display()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether writes succeed, and the disk's free space.
    pub fn storage_health(&self) -> StorageHealth {
        self.storage.health()
    }

    /// Fault injection for tests: the next commit fails as if sled's write had failed
    /// (so the writer reopens sled before the one after). Only with the `test-hooks` feature.
    #[cfg(feature = "test-hooks")]
    pub fn fail_next_commit(&self) {
        self.storage.fail_next.store(true, Ordering::SeqCst);
    }

    /// Why writes fail or hang now, if they do (cheap: reads no free space).
    pub fn write_problem(&self) -> Option<String> {
        self.storage.health_problem()
    }
}

impl Storage {
    /// Why writes cannot be taken now, if they cannot (cheap: no free-space reading).
    fn health_problem(&self) -> Option<String> {
        if let Some(stalled) = self.stalled() {
            return Some(format!(
                "an outbox write has not returned for {} s (the storage is stuck; restart deliver)",
                stalled.as_secs()
            ));
        }
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|f| f.reason.clone())
    }
}
