//! The delivery engine: one task per shop pushes that shop's ready trades in acceptance
//! order, 50 per call, and writes back what WDT said; a timer moves due retries back into
//! the ready queues.
//!
//! A shop's task keeps up to `calls_per_shop` calls in flight, each with trades no other
//! call holds, so a tid is never pushed twice at once and its versions reach WDT in order.
//! Shops never wait for each other: a paused or failing shop only stalls its own task.

use crate::classify::{Classifier, Verdict};
use crate::clock::Clock;
use crate::config::RetryPolicy;
use crate::metrics::DeliverMetrics;
use crate::store::{Outbox, Outcome, Ready, ReadyItem, ReadyRead, Settlement};
use crate::wdt::{Reply, WdtApi};
use rand::Rng;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;
use wdtpipe_proto::v1::{Attempt, TradeOrder};

/// What one shop's task is doing and has done.
#[derive(Debug, Clone, Default)]
pub struct ShopActivity {
    /// Trades in the call being made now.
    pub in_flight: u64,
    /// Trades delivered since start.
    pub delivered_total: u64,
    /// (time, trades) of the deliveries of the last minute.
    recent: VecDeque<(i64, u64)>,
}

impl ShopActivity {
    /// Trades delivered in the minute before the last `prune`.
    pub fn delivered_last_minute(&self) -> u64 {
        self.recent.iter().map(|(_, n)| n).sum()
    }

    fn prune(&mut self, now_ms: i64) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| *at <= now_ms - 60_000)
        {
            self.recent.pop_front();
        }
    }
}

/// The later of a current hold and a new one (a pause reason, once given, is kept).
fn later(
    current: Option<(tokio::time::Instant, Option<String>)>,
    until: tokio::time::Instant,
    reason: Option<String>,
) -> (tokio::time::Instant, Option<String>) {
    match current {
        Some((at, old_reason)) => (at.max(until), reason.or(old_reason)),
        None => (until, reason),
    }
}

/// Delay before reading the outbox again after a storage error.
const STORE_ERROR_PAUSE: Duration = Duration::from_secs(1);
/// Longest sleep of the retry timer between checks.
const TIMER_TICK: Duration = Duration::from_secs(1);
/// A shop's loop ends after this long with nothing to do (the next work starts another):
/// a deliver that has seen many shops keeps tasks only for the active ones.
pub const SHOP_IDLE: Duration = Duration::from_secs(300);

/// How the engine batches, retries and sweeps.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    pub classifier: Classifier,
    pub metrics: Arc<DeliverMetrics>,
    pub retry: RetryPolicy,
    /// Trades per call (1–50).
    pub batch_size: usize,
    /// Calls one shop may have in flight at once (at least 1).
    pub calls_per_shop: usize,
    /// Pause between two bounded steps of the retention sweep.
    pub sweep_interval: Duration,
}

/// The running delivery engine.
pub struct Delivery {
    outbox: Arc<Outbox>,
    client: Arc<dyn WdtApi>,
    clock: Clock,
    classifier: Classifier,
    policy: RetryPolicy,
    batch_size: usize,
    calls_per_shop: usize,
    /// Wake-up handle of each shop task.
    shops: Mutex<HashMap<String, Arc<Notify>>>,
    /// Shops paused by a configuration error, with the reason.
    paused: Mutex<HashMap<String, String>>,
    /// What each shop's task is doing and has done.
    activity: Mutex<HashMap<String, ShopActivity>>,
    metrics: Arc<DeliverMetrics>,
    tasks: Mutex<JoinSet<()>>,
    timer_wake: Notify,
    stop: watch::Sender<bool>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("endpoint", &self.client.endpoint())
            .finish_non_exhaustive()
    }
}

impl Delivery {
    /// Starts the timer and a task for every shop that already has queued trades.
    pub fn start(
        outbox: Arc<Outbox>,
        client: Arc<dyn WdtApi>,
        clock: Clock,
        settings: DeliverySettings,
    ) -> Result<Arc<Self>, crate::store::StoreError> {
        let DeliverySettings {
            classifier,
            metrics,
            retry: policy,
            batch_size,
            calls_per_shop,
            sweep_interval,
        } = settings;
        let delivery = Arc::new(Self {
            outbox,
            client,
            clock,
            classifier,
            policy,
            batch_size: batch_size.clamp(1, 50),
            calls_per_shop: calls_per_shop.max(1),
            shops: Mutex::new(HashMap::new()),
            paused: Mutex::new(HashMap::new()),
            activity: Mutex::new(HashMap::new()),
            metrics,
            tasks: Mutex::new(JoinSet::new()),
            timer_wake: Notify::new(),
            stop: watch::channel(false).0,
        });
        let timer = Arc::clone(&delivery);
        lock(&delivery.tasks).spawn(async move { timer.run_timer().await });
        let sweeper = Arc::clone(&delivery);
        lock(&delivery.tasks).spawn(async move { sweeper.run_sweeper(sweep_interval).await });
        let shops = delivery.outbox.shops_with_ready_work()?;
        tracing::info!(shops = shops.len(), "delivery started");
        delivery.notify(shops);
        Ok(delivery)
    }

    /// Wakes (or starts) the tasks of shops that have new ready work.
    pub fn notify(self: &Arc<Self>, shops: impl IntoIterator<Item = String>) {
        if *self.stop.borrow() {
            return;
        }
        let mut known = lock(&self.shops);
        // Reap the loops that ended (idle shops).
        while lock(&self.tasks).try_join_next().is_some() {}
        for shop in shops {
            let wake = known.entry(shop.clone()).or_insert_with(|| {
                let wake = Arc::new(Notify::new());
                let this = Arc::clone(self);
                let task_wake = Arc::clone(&wake);
                lock(&self.tasks).spawn(async move { this.run_shop(shop, task_wake).await });
                wake
            });
            wake.notify_one();
        }
    }

    /// The clock due times and attempts are measured with.
    pub fn clock(&self) -> Clock {
        self.clock
    }

    /// What each shop's task is doing and has done, as of now.
    pub fn activity(&self) -> HashMap<String, ShopActivity> {
        let now = self.clock.now_ms();
        let mut activity = lock(&self.activity);
        for shop in activity.values_mut() {
            shop.prune(now);
        }
        activity.clone()
    }

    pub fn metrics(&self) -> &Arc<DeliverMetrics> {
        &self.metrics
    }

    /// Shops currently paused, with the reason.
    pub fn paused_shops(&self) -> HashMap<String, String> {
        lock(&self.paused).clone()
    }

    /// Stops taking new batches, lets calls in flight finish (up to `timeout`), then returns.
    pub async fn stop(&self, timeout: Duration) {
        let _ = self.stop.send(true);
        let mut tasks = std::mem::take(&mut *lock(&self.tasks));
        let drained = tokio::time::timeout(timeout, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!("delivery tasks did not finish in time; aborting them");
            tasks.abort_all();
        }
    }

    async fn run_timer(self: Arc<Self>) {
        let mut stop = self.stop.subscribe();
        loop {
            if *stop.borrow() {
                return;
            }
            let now = self.clock.now_ms();
            let wait = match self.outbox.next_due() {
                Ok(Some(due)) if due <= now => match self.outbox.promote_due(now).await {
                    Ok(promoted) => {
                        self.notify(promoted.ready_shops);
                        continue;
                    }
                    Err(error) => {
                        tracing::error!(%error, "cannot promote due retries");
                        STORE_ERROR_PAUSE
                    }
                },
                Ok(Some(due)) => Duration::from_millis((due - now) as u64).min(TIMER_TICK),
                Ok(None) => TIMER_TICK,
                Err(error) => {
                    tracing::error!(%error, "cannot read the retry queue");
                    STORE_ERROR_PAUSE
                }
            };
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.timer_wake.notified() => {}
                _ = stop.changed() => return,
            }
        }
    }

    /// Removes expired dedupe records and finished entries: one bounded step of the walk
    /// every `every`, so the sweep takes a small, steady share of the writer (a full walk of
    /// a million keys takes minutes, against a retention of days).
    async fn run_sweeper(self: Arc<Self>, every: Duration) {
        let mut stop = self.stop.subscribe();
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = stop.changed() => return,
            }
            match self.outbox.expire(self.clock.now_ms()).await {
                Ok(expired) if expired.removed > 0 => {
                    tracing::debug!(removed = expired.removed, "expired records swept");
                }
                Ok(_) => {}
                Err(error) => tracing::error!(%error, "cannot sweep expired records"),
            }
        }
    }

    /// One shop's loop: keeps up to `calls_per_shop` calls in flight, each with trades no
    /// other call holds (so a tid is never pushed twice at once and its versions stay in
    /// order), writes back each call's outcome, and after a failure stops starting calls
    /// until the backoff (or the pause) has passed.
    ///
    /// The window opens only once WDT has answered: a new worker, or one coming back from
    /// a failure, sends a single call (the head of its queue) and widens to
    /// `calls_per_shop` after it goes through, so a WDT that is down sees one probe per
    /// backoff rather than a burst.
    async fn run_shop(self: Arc<Self>, shop: String, wake: Arc<Notify>) {
        let mut stop = self.stop.subscribe();
        tracing::debug!(shop_no = %shop, "shop worker started");
        // Each call pushes its batch and writes the results back itself, so the loop starts
        // the next call while earlier ones wait on WDT or on the outbox's group commit. It
        // answers when to retry after a transient failure, and why the shop is paused.
        let mut calls: JoinSet<(Option<tokio::time::Instant>, Option<String>)> = JoinSet::new();
        // The queue places of the trades of the calls in flight, by call.
        let mut held: HashMap<tokio::task::Id, Vec<u64>> = HashMap::new();
        // Shared with the store reads, which skip these; copied only when changed while a
        // read still holds it.
        let mut busy: Arc<HashSet<u64>> = Arc::default();
        // After a failure: no new call before this instant (and why, when paused).
        let mut hold: Option<(tokio::time::Instant, Option<String>)> = None;
        let mut window = 1;
        // With a backlog (the last read filled a whole batch) and every call slot taken,
        // the next batch is read while the calls are out, so a slot that frees up is
        // refilled without waiting on the store. Dropped after a failure: the retry must
        // take the head of the queue again.
        let mut ahead: Option<ReadyRead> = None;
        let mut backlog = false;
        loop {
            if *stop.borrow() {
                break;
            }
            // While the outbox cannot write, results could not be written back: nothing new
            // is pushed (the calls out finish), and the loop looks again in a moment.
            let storage_problem = self.outbox.write_problem();
            if hold.is_none() && storage_problem.is_none() {
                while calls.len() < window {
                    let read = match ahead.take() {
                        Some(read) => read,
                        None => self
                            .outbox
                            .ready_async(&shop, self.batch_size, Arc::clone(&busy)),
                    };
                    let waiting = tokio::time::Instant::now();
                    let batch = match read.await {
                        Ok(batch) => batch,
                        Err(error) => {
                            tracing::error!(shop_no = %shop, %error, "cannot read ready trades");
                            tokio::time::sleep(STORE_ERROR_PAUSE).await;
                            break;
                        }
                    };
                    self.metrics
                        .ready_wait_seconds
                        .observe(waiting.elapsed().as_secs_f64());
                    backlog = batch.len() >= self.batch_size;
                    if batch.is_empty() {
                        break;
                    }
                    let places: Vec<u64> = batch.iter().map(|r| r.queue_seq).collect();
                    Arc::make_mut(&mut busy).extend(places.iter().copied());
                    let (this, call_shop) = (Arc::clone(&self), shop.clone());
                    let handle = calls.spawn(async move {
                        let batch = match batch.into_iter().map(ReadyItem::open).collect() {
                            Ok(batch) => batch,
                            Err(error) => {
                                tracing::error!(shop_no = %call_shop, %error, "cannot read ready trades");
                                tokio::time::sleep(STORE_ERROR_PAUSE).await;
                                return (None, None);
                            }
                        };
                        let (settlements, pause) = this.push(&call_shop, batch).await;
                        (this.write_back(&call_shop, settlements).await, pause)
                    });
                    held.insert(handle.id(), places);
                }
                if backlog && ahead.is_none() && calls.len() >= window {
                    ahead = Some(self.outbox.ready_async(
                        &shop,
                        self.batch_size,
                        Arc::clone(&busy),
                    ));
                }
            }
            if calls.is_empty() {
                if storage_problem.is_some() {
                    tokio::select! {
                        () = tokio::time::sleep(STORE_ERROR_PAUSE) => continue,
                        _ = stop.changed() => break,
                    }
                }
                if let Some((until, reason)) = hold.take() {
                    // Every call of the failed round is written back: wait, then retry.
                    if let Some(reason) = &reason {
                        tracing::error!(
                            shop_no = %shop,
                            %reason,
                            probe_in_ms = self.policy.pause_probe_ms,
                            "WDT rejects our configuration: shop paused, its trades stay queued"
                        );
                        lock(&self.paused).insert(shop.clone(), reason.clone());
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(until) => {}
                        _ = stop.changed() => break,
                    }
                    lock(&self.paused).remove(&shop);
                    // Bring failed trades back before reading, so the retry takes the head of
                    // the queue again rather than whatever is behind it.
                    match self.outbox.promote_due(self.clock.now_ms()).await {
                        Ok(promoted) => self.notify(promoted.ready_shops),
                        Err(error) => tracing::error!(%error, "cannot promote due retries"),
                    }
                    continue;
                }
                tokio::select! {
                    () = wake.notified() => continue,
                    () = tokio::time::sleep(SHOP_IDLE) => {
                        if self.retire(&shop, &wake) {
                            tracing::debug!(shop_no = %shop, "idle shop worker ended");
                            return;
                        }
                        continue;
                    }
                    _ = stop.changed() => break,
                }
            }
            let room = hold.is_none() && storage_problem.is_none() && calls.len() < window;
            tokio::select! {
                Some(joined) = calls.join_next_with_id() => {
                    let (id, outcome) = match joined {
                        Ok((id, outcome)) => (id, Some(outcome)),
                        Err(error) => (error.id(), None),
                    };
                    if let Some((retry, pause)) = outcome {
                        if retry.is_some() || pause.is_some() {
                            window = 1;
                            ahead = None;
                        } else if hold.is_none() {
                            window = self.calls_per_shop;
                        }
                        if let Some(until) = retry {
                            hold = Some(later(hold, until, None));
                        }
                        if let Some(reason) = pause {
                            let until = tokio::time::Instant::now() + Duration::from_millis(self.policy.pause_probe_ms);
                            hold = Some(later(hold, until, Some(reason)));
                        }
                    }
                    if let Some(places) = held.remove(&id) {
                        let busy = Arc::make_mut(&mut busy);
                        for place in places {
                            busy.remove(&place);
                        }
                    }
                }
                () = wake.notified(), if room => {}
                _ = stop.changed() => break,
            }
        }
        // Stopping: the calls in flight finish and write their results back.
        while calls.join_next().await.is_some() {}
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

    /// Shops with a loop running now.
    pub fn shop_loops(&self) -> usize {
        lock(&self.shops).len()
    }

    /// Records what became of one call's trades; answers when to retry after a transient
    /// failure (the whole shop waits: WDT being down or throttling affects every call).
    async fn write_back(
        &self,
        shop: &str,
        settlements: Vec<Settlement>,
    ) -> Option<tokio::time::Instant> {
        self.account(shop, &settlements);
        let retry_at = settlements
            .iter()
            .filter_map(|s| match s.outcome {
                Outcome::Retry { due_ms } => Some(due_ms),
                _ => None,
            })
            .min();
        let writing = tokio::time::Instant::now();
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
            tokio::time::Instant::now()
                + Duration::from_millis((due_ms - self.clock.now_ms()).max(0) as u64)
        })
    }

    /// Pushes one batch (splitting it when WDT rejects it without naming a tid) and says
    /// what became of each trade, plus a pause reason when WDT refused our configuration.
    async fn push(&self, shop: &str, batch: Vec<Ready>) -> (Vec<Settlement>, Option<String>) {
        let mut settlements = Vec::with_capacity(batch.len());
        let mut parts = VecDeque::from([batch]);
        while let Some(part) = parts.pop_front() {
            let trades: Vec<&TradeOrder> = part.iter().map(|r| &r.trade).collect();
            self.add_in_flight(shop, trades.len() as i64);
            let started = tokio::time::Instant::now();
            let reply = self.client.trade_push(shop, &trades).await;
            self.metrics
                .wdt_seconds
                .observe(started.elapsed().as_secs_f64());
            self.add_in_flight(shop, -(trades.len() as i64));
            let verdict = self.classifier.classify(&reply);
            let now = self.clock.now_ms();
            let attempt = attempt_of(now, &reply, &verdict);
            self.metrics.wdt_call(&attempt.outcome, attempt.code);
            // Only a dead letter keeps the trade: the others are freed here, not on the
            // outbox writer, which every enqueue and settlement waits on.
            let settle = |mut ready: Ready, outcome: Outcome| {
                if !matches!(outcome, Outcome::Dead { .. }) {
                    ready.trade = TradeOrder::default();
                }
                Settlement {
                    ready,
                    attempt: attempt.clone(),
                    outcome,
                }
            };
            match verdict {
                Verdict::Delivered {
                    new_count,
                    chg_count,
                } => {
                    tracing::info!(
                        shop_no = shop,
                        trades = part.len(),
                        new_count,
                        chg_count,
                        "delivered"
                    );
                    settlements.extend(part.into_iter().map(|r| {
                        settle(
                            r,
                            Outcome::Delivered {
                                new_count,
                                chg_count,
                            },
                        )
                    }));
                }
                Verdict::Transient {
                    reason,
                    retry_after,
                    throttled,
                } => {
                    tracing::warn!(shop_no = shop, trades = part.len(), %reason, throttled, "push failed; will retry");
                    // One delay for the whole part, so its trades come back as one call.
                    let attempts = part.iter().map(|r| r.attempts).max().unwrap_or_default() + 1;
                    let delay = backoff(
                        &self.policy,
                        attempts,
                        throttled,
                        retry_after,
                        &mut rand::rng(),
                    );
                    let due_ms = now + delay.as_millis() as i64;
                    for ready in part {
                        let outcome = self.retry_or_give_up(&ready, now, &reason, due_ms);
                        settlements.push(settle(ready, outcome));
                    }
                    // The rest of the batch was not tried; it stays at the head of the queue.
                    return (settlements, None);
                }
                Verdict::Config { reason } => {
                    settlements.extend(part.into_iter().map(|r| settle(r, Outcome::Keep)));
                    return (settlements, Some(reason));
                }
                Verdict::RejectedTids { rejected } => {
                    let named: HashMap<&str, &str> = rejected
                        .iter()
                        .map(|(tid, error)| (tid.as_str(), error.as_str()))
                        .collect();
                    if part.iter().any(|r| named.contains_key(r.key.tid.as_str())) {
                        for ready in part {
                            if let Some(error) = named.get(ready.key.tid.as_str()) {
                                let reason = format!("rejected by WDT: {error}");
                                tracing::warn!(shop_no = shop, tid = %ready.key.tid, %reason, "dead-lettered");
                                settlements.push(settle(ready, Outcome::Dead { reason }));
                            }
                            // The others are pushed again from the queue head on the next round.
                        }
                    } else {
                        // WDT named tids this call did not hold: treat as an unnamed rejection.
                        self.reject_part(part, &attempt, &mut parts, &mut settlements, shop);
                    }
                }
                Verdict::Rejected { reason } => {
                    tracing::warn!(shop_no = shop, trades = part.len(), %reason, "call rejected");
                    self.reject_part(part, &attempt, &mut parts, &mut settlements, shop);
                }
            }
        }
        (settlements, None)
    }

    /// Adjusts the count of a shop's trades in calls to WDT right now.
    fn add_in_flight(&self, shop: &str, trades: i64) {
        let mut activity = lock(&self.activity);
        let entry = &mut activity.entry(shop.to_owned()).or_default().in_flight;
        *entry = entry.saturating_add_signed(trades);
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

    /// A rejection that names no tid: a single trade is the culprit; a larger part is split
    /// in two and each half is pushed on its own.
    fn reject_part(
        &self,
        mut part: Vec<Ready>,
        attempt: &Attempt,
        parts: &mut VecDeque<Vec<Ready>>,
        settlements: &mut Vec<Settlement>,
        shop: &str,
    ) {
        if part.len() == 1 {
            let ready = part.remove(0);
            let reason = format!("rejected by WDT: {}", attempt.message);
            tracing::warn!(shop_no = shop, tid = %ready.key.tid, %reason, "dead-lettered");
            settlements.push(Settlement {
                ready,
                attempt: attempt.clone(),
                outcome: Outcome::Dead { reason },
            });
        } else {
            let second = part.split_off(part.len() / 2);
            parts.push_front(second);
            parts.push_front(part);
        }
    }

    /// Retry at `due_ms`, unless the trade has been failing for longer than the age limit.
    fn retry_or_give_up(&self, ready: &Ready, now: i64, reason: &str, due_ms: i64) -> Outcome {
        let failing_since = if ready.first_attempt_at_ms > 0 {
            ready.first_attempt_at_ms
        } else {
            now
        };
        let max_age_ms = (self.policy.max_age_secs as i64).saturating_mul(1000);
        if now - failing_since >= max_age_ms {
            return Outcome::Dead {
                reason: format!(
                    "gave up after {} attempts over {} s; last error: {reason}",
                    ready.attempts + 1,
                    (now - failing_since) / 1000
                ),
            };
        }
        Outcome::Retry { due_ms }
    }
}

/// Exponential backoff with full jitter: a uniform delay between 0 and
/// `min(cap, base·2^(attempt−1))` (times `throttle_factor` after throttling, still capped),
/// and never less than the server's `Retry-After`.
pub fn backoff(
    policy: &RetryPolicy,
    attempt: u32,
    throttled: bool,
    retry_after: Option<Duration>,
    rng: &mut impl Rng,
) -> Duration {
    let exponent = attempt.saturating_sub(1).min(32);
    let mut ceiling = policy.base_ms.saturating_mul(1u64 << exponent);
    if throttled {
        ceiling = ceiling.saturating_mul(policy.throttle_factor.max(1));
    }
    let ceiling = ceiling.min(policy.cap_ms);
    let jittered = Duration::from_millis(rng.random_range(0..=ceiling));
    jittered.max(retry_after.unwrap_or_default())
}

fn attempt_of(at_ms: i64, reply: &Reply, verdict: &Verdict) -> Attempt {
    let (http_status, code, message) = match reply {
        Reply::Transport(error) => (0, None, format!("transport error: {error}")),
        Reply::Http { status, answer, .. } => match answer {
            Ok(a) => (u32::from(*status), Some(a.code), a.message.clone()),
            Err(e) => (u32::from(*status), None, e.clone()),
        },
    };
    let outcome = match verdict {
        Verdict::Delivered { .. } => "delivered",
        Verdict::Transient {
            throttled: true, ..
        } => "throttled",
        Verdict::Transient { .. } => "transient",
        Verdict::Config { .. } => "config",
        Verdict::RejectedTids { .. } | Verdict::Rejected { .. } => "rejected",
    };
    Attempt {
        at_ms,
        outcome: outcome.to_owned(),
        http_status,
        code,
        message,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// The backoff ceiling doubles per attempt up to the cap, throttling raises it, and a
    /// `Retry-After` is a floor.
    #[test]
    fn backoff_schedule() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 1..20u32 {
            let ceiling = (1000u64 << (attempt - 1).min(32)).min(300_000);
            for _ in 0..50 {
                let d = backoff(&policy, attempt, false, None, &mut rng);
                assert!(
                    d <= Duration::from_millis(ceiling),
                    "attempt {attempt}: {d:?}"
                );
            }
        }
        let throttled_max = (0..200)
            .map(|_| backoff(&policy, 1, true, None, &mut rng))
            .max()
            .unwrap();
        assert!(
            throttled_max > Duration::from_millis(1000)
                && throttled_max <= Duration::from_millis(4000)
        );
        let floor = backoff(&policy, 1, false, Some(Duration::from_secs(90)), &mut rng);
        assert!(floor >= Duration::from_secs(90));
    }
}
