//! A shop's loop: keeps up to `calls_per_shop` calls in flight, each with trades no other
//! call holds (so a tid is never pushed twice at once and its versions stay in order),
//! writes back each call's outcome, and after a failure starts no call until the backoff
//! (or the pause) has passed.
//!
//! The window opens only once WDT has answered: a new loop, or one coming back from a
//! failure, sends a single call (the head of its queue) and widens to `calls_per_shop`
//! after it goes through, so a WDT that is down sees one probe per backoff rather than a
//! burst. A loop with nothing to do for [`SHOP_IDLE`] ends; the next work starts another.

use super::{Delivery, SHOP_IDLE, STORE_ERROR_PAUSE, lock};
use crate::store::{Outcome, ReadyItem, ReadyRead, Settlement};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

/// A loop waiting on an unreachable account looks again at least this far apart.
const PROBE_WAIT_MIN_MS: u64 = 250;

/// What a call answers its loop: when to retry after a transient failure, and why the
/// shop pauses.
type CallOutcome = (Option<Instant>, Option<String>);

/// After a failure: no new call before this instant (and why, when the shop is paused).
type Hold = (Instant, Option<String>);

/// One shop's loop and its state.
pub(super) struct ShopLoop {
    engine: Arc<Delivery>,
    shop: String,
    /// The shop's WDT account (`reach`: while it does not answer, only probes go).
    account: String,
    wake: Arc<Notify>,
    stop: watch::Receiver<bool>,
    /// Each call pushes its batch and writes the results back itself, so the loop starts
    /// the next call while earlier ones wait on WDT or on the outbox's group commit.
    calls: JoinSet<CallOutcome>,
    /// The queue places of the trades of the calls in flight, by call.
    held: HashMap<tokio::task::Id, Vec<u64>>,
    /// The same places, shared with the store reads, which skip them; copied only when
    /// changed while a read still holds it.
    busy: Arc<HashSet<u64>>,
    hold: Option<Hold>,
    /// Calls allowed in flight now: 1 after a failure, `calls_per_shop` once one succeeds.
    window: usize,
    /// With a backlog (the last read filled a whole batch) and every call slot taken, the
    /// next batch is read while the calls are out, so a slot that frees up is refilled
    /// without waiting on the store. Dropped after a failure: the retry must take the head
    /// of the queue again.
    ahead: Option<ReadyRead>,
    backlog: bool,
}

/// What the loop does after one turn.
enum Turn {
    Go,
    Stop,
    /// Idle too long: the loop ends (a later wake starts another).
    Retire,
}

impl ShopLoop {
    pub(super) fn new(engine: Arc<Delivery>, shop: String, wake: Arc<Notify>) -> Self {
        let stop = engine.stop.subscribe();
        Self {
            engine,
            account: super::account_of(&shop),
            shop,
            wake,
            stop,
            calls: JoinSet::new(),
            held: HashMap::new(),
            busy: Arc::default(),
            hold: None,
            window: 1,
            ahead: None,
            backlog: false,
        }
    }

    pub(super) async fn run(mut self) {
        tracing::debug!(shop_no = %self.shop, "shop worker started");
        loop {
            if *self.stop.borrow() {
                break;
            }
            match self.turn().await {
                Turn::Go => {}
                Turn::Stop => break,
                Turn::Retire => {
                    tracing::debug!(shop_no = %self.shop, "idle shop worker ended");
                    return;
                }
            }
        }
        // Stopping: the calls in flight finish and write their results back.
        while self.calls.join_next().await.is_some() {}
    }

    async fn turn(&mut self) -> Turn {
        // While the outbox cannot write, results could not be written back: nothing new is
        // pushed (the calls out finish), and the loop looks again in a moment.
        let storage_problem = self.engine.outbox.write_problem();
        // While the account does not answer, the only call is its probe (see `reach`).
        let out = self.engine.next_probe(&self.account);
        if self.hold.is_none() && storage_problem.is_none() {
            match out {
                None => self.start_calls().await,
                Some(_) if self.calls.is_empty() && self.engine.claim_probe(&self.account) => {
                    self.start_probe().await;
                }
                Some(_) => {}
            }
        }
        if self.calls.is_empty() {
            if storage_problem.is_some() {
                return self.sleep(STORE_ERROR_PAUSE).await;
            }
            if let Some(hold) = self.hold.take() {
                return self.wait_out(hold).await;
            }
            if let Some(next_probe) = out {
                // Until the next probe is due (another shop may take it), or the account is
                // back (a wake).
                let floor = Instant::now() + Duration::from_millis(PROBE_WAIT_MIN_MS);
                tokio::select! {
                    () = tokio::time::sleep_until(next_probe.max(floor)) => return Turn::Go,
                    () = self.wake.notified() => return Turn::Go,
                    _ = self.stop.changed() => return Turn::Stop,
                }
            }
            return self.idle().await;
        }
        let room = self.hold.is_none()
            && storage_problem.is_none()
            && out.is_none()
            && self.calls.len() < self.window;
        tokio::select! {
            Some(joined) = self.calls.join_next_with_id() => {
                let (id, outcome) = match joined {
                    Ok((id, outcome)) => (id, Some(outcome)),
                    Err(error) => (error.id(), None),
                };
                self.call_done(id, outcome);
                Turn::Go
            }
            () = self.wake.notified(), if room => Turn::Go,
            _ = self.stop.changed() => Turn::Stop,
        }
    }

    /// Reads batches and starts calls while the window has room and the queue has trades.
    async fn start_calls(&mut self) {
        let engine = Arc::clone(&self.engine);
        while self.calls.len() < self.window {
            let read = match self.ahead.take() {
                Some(read) => read,
                None => {
                    engine
                        .outbox
                        .ready_async(&self.shop, engine.batch_size, Arc::clone(&self.busy))
                }
            };
            let waiting = Instant::now();
            let batch = match read.await {
                Ok(batch) => batch,
                Err(error) => {
                    tracing::error!(shop_no = %self.shop, %error, "cannot read ready trades");
                    tokio::time::sleep(STORE_ERROR_PAUSE).await;
                    break;
                }
            };
            engine
                .metrics
                .ready_wait_seconds
                .observe(waiting.elapsed().as_secs_f64());
            self.backlog = batch.len() >= engine.batch_size;
            if batch.is_empty() {
                break;
            }
            self.spawn_call(batch);
        }
        if self.backlog && self.ahead.is_none() && self.calls.len() >= self.window {
            self.ahead = Some(engine.outbox.ready_async(
                &self.shop,
                engine.batch_size,
                Arc::clone(&self.busy),
            ));
        }
    }

    /// The account's probe: one call with the head trade of this shop (none read: another
    /// shop may probe).
    async fn start_probe(&mut self) {
        let engine = Arc::clone(&self.engine);
        let read = engine
            .outbox
            .ready_async(&self.shop, 1, Arc::clone(&self.busy));
        let batch = match read.await {
            Ok(batch) if !batch.is_empty() => batch,
            Ok(_) => {
                engine.release_probe(&self.account);
                return;
            }
            Err(error) => {
                tracing::error!(shop_no = %self.shop, %error, "cannot read ready trades");
                engine.release_probe(&self.account);
                return;
            }
        };
        tracing::info!(shop_no = %self.shop, account = %self.account, "probing the unreachable WDT account");
        self.spawn_call(batch);
    }

    /// Starts a call with `batch`; its queue places stay busy (passed over by reads) until
    /// it ends.
    fn spawn_call(&mut self, batch: Vec<ReadyItem>) {
        let places: Vec<u64> = batch.iter().map(|r| r.queue_seq).collect();
        Arc::make_mut(&mut self.busy).extend(places.iter().copied());
        let (this, shop) = (Arc::clone(&self.engine), self.shop.clone());
        let handle = self
            .calls
            .spawn(async move { this.call(&shop, batch).await });
        self.held.insert(handle.id(), places);
    }

    /// A call ended: its places are free again, and a failure narrows the window and holds
    /// the shop.
    fn call_done(&mut self, id: tokio::task::Id, outcome: Option<CallOutcome>) {
        if let Some((retry, pause)) = outcome {
            if retry.is_some() || pause.is_some() {
                self.window = 1;
                self.ahead = None;
            } else if self.hold.is_none() {
                self.window = self.engine.calls_per_shop;
                lock(&self.engine.holds).remove(&self.shop);
            }
            if let Some(until) = retry {
                self.hold = Some(later(self.hold.take(), until, None));
            }
            if let Some(reason) = pause {
                let until =
                    Instant::now() + Duration::from_millis(self.engine.policy.pause_probe_ms);
                self.hold = Some(later(self.hold.take(), until, Some(reason)));
            }
        }
        if let Some(places) = self.held.remove(&id) {
            let busy = Arc::make_mut(&mut self.busy);
            for place in places {
                busy.remove(&place);
            }
        }
    }

    /// Every call of the failed round is written back: wait (until the hold ends or an
    /// operator resumes the shop), then retry from the head.
    async fn wait_out(&mut self, (until, reason): Hold) -> Turn {
        let engine = Arc::clone(&self.engine);
        if let Some(reason) = &reason {
            tracing::error!(
                shop_no = %self.shop,
                %reason,
                probe_in_ms = engine.policy.pause_probe_ms,
                "WDT rejects our configuration: shop paused, its trades stay queued"
            );
        }
        let now_ms = engine.clock.now_ms();
        let until_ms = now_ms + until.saturating_duration_since(Instant::now()).as_millis() as i64;
        {
            let mut holds = lock(&engine.holds);
            let hold = holds.entry(self.shop.clone()).or_insert(super::ShopHold {
                reason: None,
                since_ms: now_ms,
                until_ms,
            });
            hold.until_ms = until_ms;
            if reason.is_some() {
                hold.reason = reason;
            }
        }
        loop {
            let resumed = engine.resumed.notified();
            tokio::pin!(resumed);
            resumed.as_mut().enable();
            if engine.take_resume(&self.shop) {
                break;
            }
            tokio::select! {
                () = tokio::time::sleep_until(until) => break,
                () = &mut resumed => {}
                _ = self.stop.changed() => return Turn::Stop,
            }
        }
        // A request that came as the wait ended is spent: it must not cut the next one.
        engine.take_resume(&self.shop);
        // Still held (the status says so) until a call goes through; calling WDT now.
        if let Some(hold) = lock(&engine.holds).get_mut(&self.shop) {
            hold.until_ms = 0;
        }
        // Bring failed trades back before reading, so the retry takes the head of the
        // queue again rather than whatever is behind it.
        match engine.outbox.promote_due(engine.clock.now_ms()).await {
            Ok(promoted) => engine.notify(promoted.ready_shops),
            Err(error) => tracing::error!(%error, "cannot promote due retries"),
        }
        Turn::Go
    }

    /// Nothing to do: wait for work, or end after [`SHOP_IDLE`].
    async fn idle(&mut self) -> Turn {
        // No trade waits: nothing is held back any more.
        lock(&self.engine.holds).remove(&self.shop);
        tokio::select! {
            () = self.wake.notified() => Turn::Go,
            () = tokio::time::sleep(SHOP_IDLE) => {
                if self.engine.retire(&self.shop, &self.wake) {
                    Turn::Retire
                } else {
                    Turn::Go
                }
            }
            _ = self.stop.changed() => Turn::Stop,
        }
    }

    async fn sleep(&mut self, pause: Duration) -> Turn {
        tokio::select! {
            () = tokio::time::sleep(pause) => Turn::Go,
            _ = self.stop.changed() => Turn::Stop,
        }
    }
}

/// The later of a current hold and a new one (a pause reason, once given, is kept).
fn later(current: Option<Hold>, until: Instant, reason: Option<String>) -> Hold {
    match current {
        Some((at, old_reason)) => (at.max(until), reason.or(old_reason)),
        None => (until, reason),
    }
}

impl Delivery {
    /// One call: opens its trades, pushes them, writes back what WDT said.
    async fn call(self: &Arc<Self>, shop: &str, batch: Vec<ReadyItem>) -> CallOutcome {
        let batch = match batch.into_iter().map(ReadyItem::open).collect() {
            Ok(batch) => batch,
            Err(error) => {
                tracing::error!(shop_no = %shop, %error, "cannot read ready trades");
                tokio::time::sleep(STORE_ERROR_PAUSE).await;
                return (None, None);
            }
        };
        let (settlements, pause) = self.push(shop, batch).await;
        (self.write_back(shop, settlements).await, pause)
    }

    /// Ends an idle shop's loop unless it was woken meanwhile: true when it may end. Under
    /// the lock `notify` takes, so a wake either reached this loop (which then goes on) or
    /// comes after, and starts a new one.
    fn retire(&self, shop: &str, wake: &Arc<Notify>) -> bool {
        use futures_util::FutureExt as _;
        let mut known = lock(&self.shops);
        if wake.notified().now_or_never().is_some() {
            return false;
        }
        if known.get(shop).is_some_and(|w| Arc::ptr_eq(w, wake)) {
            known.remove(shop);
        }
        true
    }

    /// Records what became of one call's trades; answers when to retry after a transient
    /// failure (the whole shop waits: WDT being down or throttling affects every call).
    async fn write_back(&self, shop: &str, settlements: Vec<Settlement>) -> Option<Instant> {
        self.account(shop, &settlements);
        let retry_at = settlements
            .iter()
            .filter_map(|s| match s.outcome {
                Outcome::Retry { due_ms } => Some(due_ms),
                _ => None,
            })
            .min();
        let writing = Instant::now();
        let settled = self.outbox.settle(settlements, self.clock.now_ms()).await;
        self.metrics
            .write_back_seconds
            .observe(writing.elapsed().as_secs_f64());
        if let Err(error) = settled {
            tracing::error!(shop_no = %shop, %error, "cannot record delivery results; the trades will be pushed again");
            tokio::time::sleep(STORE_ERROR_PAUSE).await;
        }
        retry_at.map(|due_ms| {
            self.timer_wake.notify_one();
            Instant::now() + Duration::from_millis((due_ms - self.clock.now_ms()).max(0) as u64)
        })
    }

    /// Counts what became of a batch, for metrics and `Stats`.
    fn account(&self, shop: &str, settlements: &[Settlement]) {
        let mut delivered = 0u64;
        for settlement in settlements {
            match settlement.outcome {
                Outcome::Delivered { .. } => delivered += 1,
                Outcome::Retry { .. } => {
                    self.metrics.retries.inc();
                }
                Outcome::Dead { .. } => {
                    self.metrics.dead_letters.inc();
                }
                Outcome::Keep => {}
            }
        }
        if delivered > 0 {
            self.metrics.delivered.inc_by(delivered);
            let now = self.clock.now_ms();
            let mut activity = lock(&self.activity);
            let shop = activity.entry(shop.to_owned()).or_default();
            shop.delivered_total += delivered;
            shop.recent.push_back((now, delivered));
            shop.prune(now);
        }
    }
}
