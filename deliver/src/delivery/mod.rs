//! The delivery engine: one loop per shop pushes that shop's ready trades in acceptance
//! order, 50 per call, and writes back what WDT said; a timer moves due retries back into
//! the ready queues, and a sweeper removes what the retention let go.
//!
//! A shop's loop keeps up to `calls_per_shop` calls in flight, each with trades no other
//! call holds, so a tid is never pushed twice at once and its versions reach WDT in order.
//! Shops never wait for each other: a paused or failing shop only stalls its own loop.
//!
//! | module | what it holds |
//! |---|---|
//! | `shop` | a shop's loop ([`shop::ShopLoop`]): calls in flight, holds after failures, idling |
//! | `push` | one call's batch pushed and split when WDT rejects it: a plain state machine |
//! | `retry` | backoff with jitter, giving up after the age limit, the attempt record |
//! | `reach` | whether each WDT account answers at all; one probe at a time while it does not |
//! | `timers` | the retry timer and the retention sweeper |

mod push;
mod reach;
mod retry;
mod shop;
mod timers;

pub use push::Push;
pub use retry::{attempt_of, backoff, retry_or_give_up};

use crate::classify::Classifier;
use crate::clock::Clock;
use crate::config::RetryPolicy;
use crate::metrics::DeliverMetrics;
use crate::store::Outbox;
use crate::wdt::WdtApi;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// What one shop's task is doing and has done.
#[derive(Debug, Clone, Default)]
pub struct ShopActivity {
    /// Trades in the call being made now.
    pub in_flight: u64,
    /// Trades delivered since start.
    pub delivered_total: u64,
    /// (time, trades) of the deliveries of the last minute.
    pub(crate) recent: VecDeque<(i64, u64)>,
}

impl ShopActivity {
    /// Trades delivered in the minute before the last `prune`.
    pub fn delivered_last_minute(&self) -> u64 {
        self.recent.iter().map(|(_, n)| n).sum()
    }

    pub(crate) fn prune(&mut self, now_ms: i64) {
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| *at <= now_ms - 60_000)
        {
            self.recent.pop_front();
        }
    }
}

/// A shop held back after a failure: why (WDT's answer, for a pause; none for a retry
/// backoff), since when, and when its loop calls WDT again (Unix ms; 0 while it does).
#[derive(Debug, Clone, Default)]
pub struct ShopHold {
    pub reason: Option<String>,
    pub since_ms: i64,
    pub until_ms: i64,
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
    /// Shops held back after a failure (paused by a configuration error, or backing off),
    /// until a call of theirs goes through.
    holds: Mutex<HashMap<String, ShopHold>>,
    /// Shops an operator asked to resume now, until their loop takes the request.
    resume_requests: Mutex<HashSet<String>>,
    resumed: Notify,
    /// What each shop's task is doing and has done.
    activity: Mutex<HashMap<String, ShopActivity>>,
    /// The WDT accounts that do not answer now.
    reach: Mutex<reach::Reach>,
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
            holds: Mutex::new(HashMap::new()),
            resume_requests: Mutex::new(HashSet::new()),
            resumed: Notify::new(),
            activity: Mutex::new(HashMap::new()),
            reach: Mutex::new(reach::Reach::default()),
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
                lock(&self.tasks)
                    .spawn(async move { shop::ShopLoop::new(this, shop, task_wake).run().await });
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

    /// Shops currently paused, with the reason: by a configuration error, or because their
    /// WDT account does not answer.
    pub fn paused_shops(&self) -> HashMap<String, String> {
        self.pauses()
            .into_iter()
            .filter_map(|(lane, hold)| Some((lane, hold.reason?)))
            .collect()
    }

    /// Shops currently paused, with the reason, since when and the next call or probe.
    pub fn pauses(&self) -> HashMap<String, ShopHold> {
        let mut paused: HashMap<String, ShopHold> = lock(&self.holds)
            .iter()
            .filter(|(_, hold)| hold.reason.is_some())
            .map(|(lane, hold)| (lane.clone(), hold.clone()))
            .collect();
        let reach = lock(&self.reach);
        let now = self.clock.now_ms();
        for (account, outage) in reach.outages() {
            let lanes: Vec<String> = lock(&self.shops)
                .keys()
                .chain(lock(&self.activity).keys())
                .filter(|lane| account_of(lane) == *account)
                .cloned()
                .collect();
            for lane in lanes {
                paused.entry(lane).or_insert_with(|| ShopHold {
                    reason: Some(format!(
                        "WDT account {account} unreachable since {}, next probe in {} s",
                        wdtpipe_common::format_ms(outage.since_ms),
                        ((outage.next_probe_ms - now).max(0) + 999) / 1000
                    )),
                    since_ms: outage.since_ms,
                    until_ms: outage.next_probe_ms,
                });
            }
        }
        paused
    }

    /// An operator's "resume now" for a lane: its pause or backoff ends at once, and when
    /// its account is unreachable the next probe goes at once. What was cut short, or
    /// `None` when the lane was not waiting.
    pub fn resume(self: &Arc<Self>, lane: &str) -> Option<String> {
        let mut cut = Vec::new();
        // Only a loop waiting out its hold takes a request (one calling WDT already would
        // carry it into its next wait).
        if let Some(hold) = lock(&self.holds).get(lane).filter(|h| h.until_ms > 0) {
            lock(&self.resume_requests).insert(lane.to_owned());
            cut.push(match &hold.reason {
                Some(reason) => format!("pause ({reason})"),
                None => "retry backoff".to_owned(),
            });
        }
        let account = account_of(lane);
        if lock(&self.reach).probe_now(&account) {
            cut.push(format!("wait for the next probe of WDT account {account}"));
        }
        if cut.is_empty() {
            return None;
        }
        tracing::warn!(lane, cut = ?cut, "resumed by an operator");
        self.resumed.notify_waiters();
        self.timer_wake.notify_one();
        self.notify([lane.to_owned()]);
        Some(cut.join("; "))
    }

    /// Takes an operator's resume request for a lane.
    fn take_resume(&self, lane: &str) -> bool {
        lock(&self.resume_requests).remove(lane)
    }

    /// WDT accounts that do not answer now.
    pub fn unreachable_accounts(&self) -> usize {
        lock(&self.reach).outages().count()
    }

    /// When the next probe of an unreachable account may go; `None` when it answers.
    fn next_probe(&self, account: &str) -> Option<tokio::time::Instant> {
        lock(&self.reach).outage(account).map(|o| o.next_probe)
    }

    fn claim_probe(&self, account: &str) -> bool {
        lock(&self.reach).claim_probe(account)
    }

    fn release_probe(&self, account: &str) {
        lock(&self.reach).release_probe(account);
    }

    /// A call found the account unreachable (logged once per outage).
    fn account_unreachable(&self, account: &str, retry_after: Option<Duration>) {
        let every = Duration::from_millis(self.policy.probe_ms.max(1));
        let now = self.clock.now_ms();
        if lock(&self.reach).failed(account, every, retry_after, now) {
            tracing::error!(
                account,
                probe_every_ms = self.policy.probe_ms,
                "WDT account unreachable: its shops wait, one probe at a time"
            );
        }
    }

    /// A call got an answer: if the account was out, it is back, and every shop of it goes
    /// again at once.
    fn account_answered(self: &Arc<Self>, account: &str) {
        let Some(outage) = lock(&self.reach).answered(account) else {
            return;
        };
        tracing::warn!(
            account,
            down_for_ms = self.clock.now_ms() - outage.since_ms,
            failed_calls = outage.failures,
            probes = outage.probes,
            "WDT account reachable again: its shops resume"
        );
        let lanes: Vec<String> = lock(&self.shops)
            .keys()
            .filter(|lane| account_of(lane) == account)
            .cloned()
            .collect();
        self.timer_wake.notify_one();
        self.notify(lanes);
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

    /// Shops with a loop running now.
    pub fn shop_loops(&self) -> usize {
        lock(&self.shops).len()
    }
}

/// The WDT account of a lane (its connector, `default` for none).
pub(crate) fn account_of(lane: &str) -> String {
    match wdtpipe_common::connectors::split_lane(lane).1 {
        "" => wdtpipe_common::connectors::DEFAULT.to_owned(),
        connector => connector.to_owned(),
    }
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}
