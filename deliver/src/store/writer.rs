//! The single writer thread and its group commit.
//!
//! Every write to the outbox is a closure over a [`Txn`]: [`Outbox::write`] sends it here
//! with a reply channel typed by what the write returns. The writer takes every write
//! waiting in its channel, applies each on top of the group's writes (a write that fails
//! leaves nothing behind), hands the group to sled as one atomic batch, flushes (fsync)
//! once, and only then answers each caller: concurrent enqueues share one flush, and an
//! answer means the data is on disk. Having one writer also makes each write's
//! read-modify-write free of races.

use super::mirror::ReadyMirror;
use super::open::{open_handles, stored_seq};
use super::storage::Storage;
use super::sweep::SweepCursors;
use super::tally::{Tally, count_queued};
use super::txn::{Overlay, RecentEntries, Txn};
use super::{Handles, Outbox, Result, SharedHandles, StoreError};
use crate::config::Retention;
use crate::keys;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Writes applied in one group commit at most.
const GROUP_LIMIT: usize = 4096;
/// Writes waiting for the writer at most: more wait for room (the channel itself is
/// unbounded, so the callers take a permit first).
pub(super) const QUEUE_LIMIT: usize = 4 * GROUP_LIMIT;

/// What the writer carries from one write to the next, for the writes to use.
#[derive(Debug)]
pub(super) struct WriterState {
    /// The next acceptance sequence number (strictly increasing; saved with each commit).
    pub(super) next_seq: u64,
    pub(super) retention: Retention,
    pub(super) cursors: SweepCursors,
}

impl WriterState {
    /// Takes the next sequence number.
    pub(super) fn take_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }
}

/// One write: applied to the group's transaction, answered after the commit.
pub(super) trait Write: Send {
    /// Applies the write; `false` when it failed (its own writes are then dropped).
    fn apply(
        self: Box<Self>,
        txn: &mut Txn<'_>,
        state: &mut WriterState,
    ) -> (bool, Box<dyn Answer>);
    /// Gives the write up without applying it (its group cannot be written).
    fn refuse(self: Box<Self>) -> (bool, Box<dyn Answer>);
}

/// A write's answer, held until its group is committed.
pub(super) trait Answer: Send {
    /// Sends the answer; `failed` is why the group's commit failed, if it did.
    fn send(self: Box<Self>, failed: Option<&StoreError>);
}

/// A write as a closure, with the channel its typed answer goes back on.
struct Op<F, T> {
    f: F,
    reply: oneshot::Sender<Result<T>>,
}

impl<F, T> Write for Op<F, T>
where
    F: FnOnce(&mut Txn<'_>, &mut WriterState) -> Result<T> + Send,
    T: Send + 'static,
{
    fn apply(
        self: Box<Self>,
        txn: &mut Txn<'_>,
        state: &mut WriterState,
    ) -> (bool, Box<dyn Answer>) {
        let Op { f, reply } = *self;
        let result = f(txn, state);
        (result.is_ok(), Box::new(Held { reply, result }))
    }

    fn refuse(self: Box<Self>) -> (bool, Box<dyn Answer>) {
        let result = Err(StoreError::Closed);
        (
            false,
            Box::new(Held {
                reply: self.reply,
                result,
            }),
        )
    }
}

/// A write's result, waiting for the commit.
struct Held<T> {
    reply: oneshot::Sender<Result<T>>,
    result: Result<T>,
}

impl<T: Send> Answer for Held<T> {
    fn send(self: Box<Self>, failed: Option<&StoreError>) {
        let answer = match failed {
            Some(error) => Err(error.for_caller()),
            None => self.result,
        };
        let _ = self.reply.send(answer);
    }
}

/// Counts one operation as in flight until dropped.
pub(super) struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    pub(super) fn new(counter: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Self(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Outbox {
    /// Hands a write to the writer thread and waits until it is on disk.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&mut Txn<'_>, &mut WriterState) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let _in_flight = InFlight::new(&self.in_flight);
        let _room = self
            .queue_room
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        {
            let guard = self.commands.lock().unwrap_or_else(|e| e.into_inner());
            let sender = guard.as_ref().ok_or(StoreError::Closed)?;
            sender
                .send(Box::new(Op { f, reply }))
                .map_err(|_| StoreError::Closed)?;
        }
        answer.await.map_err(|_| StoreError::Closed)?
    }
}

/// The writer thread's work since the outbox was opened, kept as it goes.
#[derive(Debug, Default)]
pub(super) struct WriterLoad {
    pub(super) flushes: AtomicU64,
    pub(super) busy_nanos: AtomicU64,
    pub(super) flush_nanos: AtomicU64,
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

fn add_nanos(total: &AtomicU64, elapsed: Duration) {
    total.fetch_add(
        u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
}

/// How often a writer whose writes fail tries again by itself.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The writer thread's state.
pub(super) struct Writer {
    /// sled, as the writer uses it; `None` after a failed write closed it, until reopened.
    pub(super) handles: Option<Handles>,
    /// The handles readers use, replaced with the writer's own on reopen.
    pub(super) shared: SharedHandles,
    pub(super) storage: Arc<Storage>,
    pub(super) dir: PathBuf,
    pub(super) cache_bytes: u64,
    /// A commit failed inside sled: sled fails every write after that until reopened.
    pub(super) poisoned: bool,
    pub(super) recent: RecentEntries,
    pub(super) state: WriterState,
    pub(super) totals: Arc<Mutex<Tally>>,
    pub(super) load: Arc<WriterLoad>,
    pub(super) mirror: Arc<ReadyMirror>,
}

/// What the writer's channel carries.
pub(super) type Command = Box<dyn Write>;

impl Writer {
    pub(super) fn run(mut self, commands: mpsc::Receiver<Command>) {
        loop {
            let first = if self.storage.failing() {
                // Nobody may write for a while (admission refuses): find out by itself
                // when writes work again.
                match commands.recv_timeout(RETRY_EVERY) {
                    Ok(first) => first,
                    Err(mpsc::RecvTimeoutError::Timeout) => {
                        self.probe();
                        continue;
                    }
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            } else {
                match commands.recv() {
                    Ok(first) => first,
                    Err(_) => break,
                }
            };
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

    /// Applies a group of writes and commits them: one batch, one flush, then the answers.
    fn commit(&mut self, group: Vec<Command>) {
        if let Err(error) = self.ready_to_write() {
            self.storage.failed(&error);
            for write in group {
                // Each write answers as failed without touching sled.
                let (_, answer) = write.refuse();
                answer.send(Some(&error));
            }
            return;
        }
        let Some(handles) = self.handles.clone() else {
            return;
        };
        let mut overlay = Overlay::default();
        let seq_before = self.state.next_seq;
        let answers: Vec<Box<dyn Answer>> = group
            .into_iter()
            .map(|write| self.apply(&handles.tree, write, &mut overlay))
            .collect();
        let failure = if !overlay.0.is_empty() || self.state.next_seq != seq_before {
            self.write(&handles, &overlay, seq_before).err()
        } else {
            None
        };
        match &failure {
            None => {
                self.storage.succeeded();
                self.totals
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .merge(&overlay.1);
                self.mirror.apply(&handles.tree, &overlay.0, |shop| {
                    let totals = self.totals.lock().unwrap_or_else(|e| e.into_inner());
                    totals.shops.get(shop).map_or(0, |queue| queue.ready)
                });
            }
            Some(error) => {
                tracing::error!(%error, "outbox commit failed; its writes are refused");
                self.storage.failed(error);
                // sled fails every write after a failed one: it is reopened first.
                self.poisoned = true;
                self.mirror.clear();
                self.recent.clear();
            }
        }
        for answer in answers {
            answer.send(failure.as_ref());
        }
    }

    /// Checks the reserve and, after a failed write, reopens sled.
    fn ready_to_write(&mut self) -> Result<()> {
        self.storage.check_reserve()?;
        if self.poisoned || self.handles.is_none() {
            self.reopen()?;
        }
        Ok(())
    }

    /// Closes sled and opens it again: the only way past a failed write. What is on disk
    /// is what sled recovers (the failed group all or not at all: a batch is atomic), so
    /// the counters and the totals are read back.
    fn reopen(&mut self) -> Result<()> {
        tracing::warn!(dir = %self.dir.display(), "reopening the outbox after a failed write");
        // Every handle goes first: sled's lock is released with the last of them.
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = None;
        self.handles = None;
        self.mirror.clear();
        self.recent.clear();
        let handles = open_handles(&self.dir, self.cache_bytes)
            .map_err(|e| StoreError::WriteFailed(format!("cannot reopen the outbox: {e}")))?;
        let stored = stored_seq(&handles.tree)?;
        self.state.next_seq = self.state.next_seq.max(stored);
        *self.totals.lock().unwrap_or_else(|e| e.into_inner()) = count_queued(&handles.tree)?;
        *self.shared.write().unwrap_or_else(|e| e.into_inner()) = Some(handles.clone());
        self.handles = Some(handles);
        self.poisoned = false;
        tracing::info!("outbox reopened");
        Ok(())
    }

    /// While writes fail: one small write (the sequence counter), to learn whether they work
    /// again.
    fn probe(&mut self) {
        let result = self.ready_to_write().and_then(|()| {
            let handles = self.handles.clone().ok_or(StoreError::Reopening)?;
            self.write(&handles, &Overlay::default(), 0)
        });
        match result {
            Ok(()) => self.storage.succeeded(),
            Err(error) => {
                if !matches!(error, StoreError::DiskFull(_)) {
                    self.poisoned = true;
                }
                self.storage.failed(&error);
            }
        }
    }

    /// Hands the group's writes (and the sequence counter, when it moved) to sled and
    /// flushes.
    fn write(&mut self, handles: &Handles, overlay: &Overlay, seq_before: u64) -> Result<()> {
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
        if self.state.next_seq != seq_before {
            batch.insert(keys::SEQ, &self.state.next_seq.to_be_bytes());
        }
        if self.storage.take_injected_failure() {
            return Err(StoreError::WriteFailed("injected failure".into()));
        }
        self.storage.commit_started();
        let written = handles
            .tree
            .apply_batch(batch)
            .and_then(|()| {
                let flushing = Instant::now();
                handles.db.flush()?;
                add_nanos(&self.load.flush_nanos, flushing.elapsed());
                Ok(())
            })
            .map_err(StoreError::of_write);
        self.storage.commit_ended();
        written?;
        self.load.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies one write on top of the group's; merged only if it succeeds, so a failed
    /// write leaves nothing behind.
    fn apply(
        &mut self,
        tree: &sled::Tree,
        write: Box<dyn Write>,
        group: &mut Overlay,
    ) -> Box<dyn Answer> {
        let mut txn = Txn {
            tree,
            recent: &self.recent,
            group,
            own: Overlay::default(),
        };
        let (ok, answer) = write.apply(&mut txn, &mut self.state);
        let own = txn.own;
        if ok {
            group.0.extend(own.0);
            group.1.merge(&own.1);
        }
        answer
    }
}
