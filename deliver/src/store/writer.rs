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
use super::sweep::SweepCursors;
use super::tally::Tally;
use super::txn::{Overlay, RecentEntries, Txn};
use super::{Outbox, Result, StoreError};
use crate::config::Retention;
use crate::keys;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Writes applied in one group commit at most.
const GROUP_LIMIT: usize = 4096;

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

/// The writer thread's state.
pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) tree: sled::Tree,
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
        let seq_before = self.state.next_seq;
        let answers: Vec<Box<dyn Answer>> = group
            .into_iter()
            .map(|write| self.apply(write, &mut overlay))
            .collect();
        let failure = if !overlay.0.is_empty() || self.state.next_seq != seq_before {
            self.write(&overlay, seq_before).err()
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
        if let Some(error) = &failure {
            tracing::error!(%error, "outbox commit failed");
            // What sled holds after a failed commit is not known here: read it again.
            self.mirror.clear();
            self.recent.clear();
        }
        for answer in answers {
            answer.send(failure.as_ref());
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
        if self.state.next_seq != seq_before {
            batch.insert(keys::SEQ, &self.state.next_seq.to_be_bytes());
        }
        self.tree.apply_batch(batch).map_err(StoreError::of_write)?;
        let flushing = Instant::now();
        self.db.flush().map_err(StoreError::of_write)?;
        add_nanos(&self.load.flush_nanos, flushing.elapsed());
        self.load.flushes.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Applies one write on top of the group's; merged only if it succeeds, so a failed
    /// write leaves nothing behind.
    fn apply(&mut self, write: Box<dyn Write>, group: &mut Overlay) -> Box<dyn Answer> {
        let mut txn = Txn {
            tree: &self.tree,
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
