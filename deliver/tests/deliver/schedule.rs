//! The retry schedule under a paused tokio clock: a scripted WDT answers, the test advances
//! virtual time in small steps and checks when each push happened.
//!
//! A task that only yields keeps the runtime busy, so tokio never jumps the paused clock by
//! itself; time moves only when the test advances it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use wdtpipe_deliver::clock::Clock;
use wdtpipe_deliver::config::RetryPolicy;
use wdtpipe_deliver::delivery::Delivery;
use wdtpipe_deliver::keys::TradeKey;
use wdtpipe_deliver::store::Outbox;
use wdtpipe_deliver::wdt::{Answer, BoxFuture, Reply, WdtApi};
use wdtpipe_proto::v1::{DeliveryState, EnqueueRecord, OutboxEntry, TradeOrder};

const STEP: Duration = Duration::from_millis(10);

/// Answers from a script (the last answer repeats) and remembers when each call came.
struct Scripted {
    script: Mutex<VecDeque<Reply>>,
    calls: Mutex<Vec<Instant>>,
    /// The first tid of every call.
    heads: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(script: Vec<Reply>) -> Arc<Self> {
        Arc::new(Self {
            script: Mutex::new(script.into()),
            calls: Mutex::new(Vec::new()),
            heads: Mutex::new(Vec::new()),
        })
    }

    fn calls(&self) -> Vec<Instant> {
        self.calls.lock().unwrap().clone()
    }
}

impl WdtApi for Scripted {
    fn trade_push<'a>(
        &'a self,
        _shop: &'a str,
        trades: &'a [&'a TradeOrder],
    ) -> BoxFuture<'a, Reply> {
        self.calls.lock().unwrap().push(Instant::now());
        self.heads
            .lock()
            .unwrap()
            .push(trades.first().map(|t| t.tid.clone()).unwrap_or_default());
        let mut script = self.script.lock().unwrap();
        let reply = if script.len() > 1 {
            script.pop_front().unwrap()
        } else {
            script.front().cloned().unwrap()
        };
        Box::pin(async move { reply })
    }

    fn endpoint(&self) -> &str {
        "scripted"
    }
}

fn http(status: u16, retry_after: Option<Duration>) -> Reply {
    Reply::Http {
        status,
        retry_after,
        answer: Err("scripted".into()),
    }
}

fn answer(code: i64, message: &str) -> Reply {
    Reply::Http {
        status: 200,
        retry_after: None,
        answer: Ok(Answer {
            code,
            message: message.into(),
            new_count: 1,
            chg_count: 0,
        }),
    }
}

struct Setup {
    api: Arc<Scripted>,
    outbox: Arc<Outbox>,
    delivery: Arc<Delivery>,
    _dir: tempfile::TempDir,
}

async fn setup(script: Vec<Reply>, policy: RetryPolicy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
    let api = Scripted::new(script);
    let clock = Clock::new();
    let delivery = Delivery::start(
        outbox.clone(),
        api.clone(),
        clock,
        super::settings(policy, 4, vec![1040]),
    )
    .unwrap();
    let done = outbox
        .enqueue(
            vec![EnqueueRecord {
                record_id: "r1".into(),
                received_at_ms: clock.now_ms(),
                source: "test".into(),
                trades: vec![TradeOrder {
                    tid: "T1".into(),
                    shop_no: "S".into(),
                    ..TradeOrder::default()
                }],
                ..EnqueueRecord::default()
            }],
            String::new(),
            clock.now_ms(),
        )
        .await
        .unwrap();
    delivery.notify(done.ready_shops);
    Setup {
        api,
        outbox,
        delivery,
        _dir: dir,
    }
}

impl Setup {
    /// Lets every task run until none waits on the store, which works in real time.
    async fn settle_down(&self) {
        let mut quiet_rounds = 0;
        while quiet_rounds < 3 {
            tokio::task::yield_now().await;
            if self.outbox.operations_in_flight() == 0 {
                quiet_rounds += 1;
            } else {
                quiet_rounds = 0;
                tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_micros(200)))
                    .await
                    .unwrap();
            }
        }
    }

    fn entry(&self) -> OutboxEntry {
        self.outbox
            .entry(&TradeKey::new("T1", "S"))
            .unwrap()
            .unwrap()
    }

    /// Advances virtual time in small steps until `done` holds or `limit` has passed.
    async fn run_until(&self, limit: Duration, mut done: impl FnMut(&Self) -> bool) {
        let start = Instant::now();
        while !done(self) {
            assert!(
                start.elapsed() < limit,
                "condition not reached within {limit:?} of virtual time"
            );
            self.settle_down().await;
            tokio::time::advance(STEP).await;
        }
    }

    /// Advances virtual time by `span` in small steps.
    async fn run_for(&self, span: Duration) {
        let start = Instant::now();
        while start.elapsed() < span {
            self.settle_down().await;
            tokio::time::advance(STEP).await;
        }
    }
}

fn keep_runtime_busy() -> tokio::task::JoinHandle<()> {
    tokio::spawn(async {
        loop {
            tokio::task::yield_now().await;
        }
    })
}

fn gaps(calls: &[Instant]) -> Vec<Duration> {
    calls.windows(2).map(|w| w[1] - w[0]).collect()
}

/// Transient failures of a trade (here an answer WDT sent but that does not read; an
/// account that does not answer at all is probed instead, see below) are retried with
/// exponential backoff and full jitter: each wait is at most `min(cap, base·2^(n−1))`;
/// after the age limit the trade is dead-lettered.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn exponential_backoff_then_give_up() {
    let busy = keep_runtime_busy();
    let policy = RetryPolicy {
        base_ms: 1_000,
        cap_ms: 8_000,
        max_age_secs: 60,
        ..RetryPolicy::default()
    };
    let s = setup(vec![http(200, None)], policy).await;
    s.run_until(Duration::from_secs(120), |s| {
        s.entry().state == DeliveryState::Dead as i32
    })
    .await;
    let calls = s.api.calls();
    let slack = STEP * 3;
    for (n, gap) in gaps(&calls).iter().enumerate() {
        let ceiling = Duration::from_millis((1_000u64 << n.min(20)).min(8_000));
        assert!(
            *gap <= ceiling + slack,
            "wait {} was {gap:?}, above {ceiling:?}",
            n + 1
        );
    }
    let failing_for = *calls.last().unwrap() - calls[0];
    assert!(
        failing_for >= Duration::from_secs(60),
        "gave up only after the age limit: {failing_for:?}"
    );
    assert!(
        failing_for <= Duration::from_secs(68) + slack,
        "gave up soon after it: {failing_for:?}"
    );
    assert!(calls.len() >= 60 / 8, "kept trying: {} calls", calls.len());
    let entry = s.entry();
    assert!(
        entry.dead_reason.starts_with("gave up after"),
        "{}",
        entry.dead_reason
    );
    assert!(
        entry.dead_reason.contains("unreadable answer"),
        "the last error is in the reason: {}",
        entry.dead_reason
    );
    assert_eq!(s.outbox.dead_letters_for_tid("T1").unwrap().len(), 1);
    s.delivery.stop(Duration::from_secs(1)).await;
    busy.abort();
}

/// A `Retry-After` from WDT is a floor on the wait.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn retry_after_is_honoured() {
    let busy = keep_runtime_busy();
    let thirty = Duration::from_secs(30);
    let script = vec![
        http(429, Some(thirty)),
        http(503, Some(thirty)),
        answer(0, ""),
    ];
    let s = setup(script, RetryPolicy::default()).await;
    s.run_until(Duration::from_secs(120), |s| {
        s.entry().state == DeliveryState::Delivered as i32
    })
    .await;
    let calls = s.api.calls();
    assert_eq!(calls.len(), 3);
    for gap in gaps(&calls) {
        assert!(gap >= thirty && gap <= thirty + STEP * 3, "{gap:?}");
    }
    s.delivery.stop(Duration::from_secs(1)).await;
    busy.abort();
}

/// Throttling waits longer: the ceiling is multiplied by the throttle factor.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn throttling_backs_off_longer() {
    let busy = keep_runtime_busy();
    let policy = RetryPolicy {
        base_ms: 1_000,
        cap_ms: 300_000,
        throttle_factor: 4,
        ..RetryPolicy::default()
    };
    let mut script: Vec<Reply> = (0..6)
        .map(|_| answer(1040, "超过每分钟最大调用频率限制,请稍后重试"))
        .collect();
    script.push(answer(0, ""));
    let s = setup(script, policy).await;
    s.run_until(Duration::from_secs(600), |s| {
        s.entry().state == DeliveryState::Delivered as i32
    })
    .await;
    let calls = s.api.calls();
    assert_eq!(calls.len(), 7);
    for (n, gap) in gaps(&calls).iter().enumerate() {
        let ceiling = Duration::from_millis(4 * (1_000u64 << n));
        assert!(
            *gap <= ceiling + STEP * 3,
            "wait {} was {gap:?}, above {ceiling:?}",
            n + 1
        );
    }
    let entry = s.entry();
    assert!(
        entry
            .history
            .iter()
            .filter(|a| a.outcome == "throttled")
            .count()
            == 6
    );
    s.delivery.stop(Duration::from_secs(1)).await;
    busy.abort();
}

/// While WDT fails transiently the whole shop waits out the backoff: it retries its head
/// batch instead of working through (and failing) the rest of its queue.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn a_failing_shop_retries_its_head_instead_of_churning_the_queue() {
    let busy = keep_runtime_busy();
    let policy = RetryPolicy {
        base_ms: 1_000,
        cap_ms: 4_000,
        ..RetryPolicy::default()
    };
    let s = setup(vec![http(503, None)], policy).await;
    let clock = Clock::new();
    let more: Vec<EnqueueRecord> = (0..120)
        .map(|i| EnqueueRecord {
            record_id: format!("more-{i}"),
            trades: vec![TradeOrder {
                tid: format!("M{i:03}"),
                shop_no: "S".into(),
                ..TradeOrder::default()
            }],
            ..EnqueueRecord::default()
        })
        .collect();
    let done = s
        .outbox
        .enqueue(more, String::new(), clock.now_ms())
        .await
        .unwrap();
    s.delivery.notify(done.ready_shops);
    s.run_for(Duration::from_secs(30)).await;
    let heads = s.api.heads.lock().unwrap().clone();
    assert!(heads.len() >= 5, "it kept retrying: {} calls", heads.len());
    assert!(
        heads.iter().all(|h| h == "T1"),
        "every call retried the head of the queue: {heads:?}"
    );
    s.delivery.stop(Duration::from_secs(1)).await;
    busy.abort();
}

/// A shop's loop ends after `SHOP_IDLE` with nothing to do, and the next trade for the shop
/// starts a new one that delivers it.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn idle_shop_loops_end_and_come_back() {
    use wdtpipe_deliver::delivery::SHOP_IDLE;
    let busy = keep_runtime_busy();
    let s = setup(vec![answer(0, "ok")], RetryPolicy::default()).await;
    s.run_until(Duration::from_secs(5), |s| {
        s.entry().state == DeliveryState::Delivered as i32
    })
    .await;
    assert_eq!(s.delivery.shop_loops(), 1);
    let idle_since = Instant::now();
    while idle_since.elapsed() < SHOP_IDLE + Duration::from_secs(2) {
        s.settle_down().await;
        tokio::time::advance(Duration::from_millis(500)).await;
    }
    s.settle_down().await;
    assert_eq!(s.delivery.shop_loops(), 0, "the idle loop ended");

    let clock = s.delivery.clock();
    let done = s
        .outbox
        .enqueue(
            vec![EnqueueRecord {
                record_id: "r2".into(),
                received_at_ms: clock.now_ms(),
                trades: vec![TradeOrder {
                    tid: "T2".into(),
                    shop_no: "S".into(),
                    ..TradeOrder::default()
                }],
                ..EnqueueRecord::default()
            }],
            String::new(),
            clock.now_ms(),
        )
        .await
        .unwrap();
    s.delivery.notify(done.ready_shops);
    s.run_until(Duration::from_secs(5), |s| {
        s.outbox
            .entry(&TradeKey::new("T2", "S"))
            .unwrap()
            .is_some_and(|e| e.state == DeliveryState::Delivered as i32)
    })
    .await;
    assert_eq!(s.delivery.shop_loops(), 1);
    assert_eq!(s.api.calls().len(), 2);
    busy.abort();
}

/// A WDT that is down (no answer at all) until told otherwise, counting calls.
struct Switchable {
    down: std::sync::atomic::AtomicBool,
    /// (when, shop, trades, whether WDT was down)
    calls: Mutex<Vec<(Instant, String, usize, bool)>>,
}

impl WdtApi for Switchable {
    fn trade_push<'a>(
        &'a self,
        shop: &'a str,
        trades: &'a [&'a TradeOrder],
    ) -> BoxFuture<'a, Reply> {
        let down = self.down.load(std::sync::atomic::Ordering::SeqCst);
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), shop.to_owned(), trades.len(), down));
        let reply = if down {
            Reply::Transport("connection refused".into())
        } else {
            answer(0, "ok")
        };
        Box::pin(async move { reply })
    }

    fn endpoint(&self) -> &str {
        "switchable"
    }
}

/// Issue 18: WDT down with three shops queued. While it is, the account gets one probe at
/// a time (at most one call per probe interval, whatever the number of shops), not a growing
/// backoff per shop; once it is back, the first probe that gets an answer resumes every
/// shop at once and the backlog drains within a few probe intervals. Throttling does not
/// mark the account unreachable.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unreachable_account_is_probed_then_every_shop_resumes_at_once() {
    let busy = keep_runtime_busy();
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
    let api = Arc::new(Switchable {
        down: std::sync::atomic::AtomicBool::new(true),
        calls: Mutex::new(Vec::new()),
    });
    let clock = Clock::new();
    let policy = RetryPolicy::default();
    let probe = Duration::from_millis(policy.probe_ms);
    let delivery = Delivery::start(
        outbox.clone(),
        api.clone(),
        clock,
        super::settings(policy, 4, vec![1040]),
    )
    .unwrap();
    let s = Setup {
        api: Scripted::new(vec![answer(0, "ok")]),
        outbox: outbox.clone(),
        delivery: delivery.clone(),
        _dir: dir,
    };
    let records: Vec<EnqueueRecord> = (0..30)
        .map(|i| EnqueueRecord {
            record_id: format!("r{i}"),
            received_at_ms: clock.now_ms(),
            trades: vec![TradeOrder {
                tid: format!("T{i:02}"),
                shop_no: format!("S{}", i % 3),
                ..TradeOrder::default()
            }],
            ..EnqueueRecord::default()
        })
        .collect();
    let done = outbox
        .enqueue(records, String::new(), clock.now_ms())
        .await
        .unwrap();
    delivery.notify(done.ready_shops);

    // 90 s of WDT down.
    let outage = Duration::from_secs(90);
    s.run_for(outage).await;
    assert_eq!(delivery.unreachable_accounts(), 1);
    let while_down: Vec<Instant> = api
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.3)
        .map(|c| c.0)
        .collect();
    // The first round (each shop's first call, before the account was known to be out),
    // then one probe at a time, at least 0.75 of the interval apart.
    let probes = &while_down[3.min(while_down.len())..];
    assert!(
        probes
            .windows(2)
            .all(|w| w[1] - w[0] >= probe * 3 / 4 - STEP),
        "one probe per interval: {:?}",
        gaps(probes)
    );
    assert!(
        while_down.len() as u64
            <= 3 + outage.as_millis() as u64 / (probe.as_millis() as u64 * 3 / 4) + 1,
        "{} calls in {outage:?}",
        while_down.len()
    );
    assert!(
        probes.len() as u128 + 1 >= outage.as_millis() / (probe.as_millis() * 5 / 4),
        "kept probing: {} probes",
        probes.len()
    );
    let paused = delivery.paused_shops();
    assert!(
        paused.values().all(|why| why.contains("unreachable since")),
        "{paused:?}"
    );
    assert_eq!(paused.len(), 3, "every shop of the account says why");

    // Back: every shop resumes within a few probe intervals.
    api.down.store(false, std::sync::atomic::Ordering::SeqCst);
    let back = Instant::now();
    s.run_until(probe * 4, |s| {
        (0..30).all(|i| {
            s.outbox
                .entry(&TradeKey::new(&format!("T{i:02}"), &format!("S{}", i % 3)))
                .unwrap()
                .is_some_and(|e| e.state == DeliveryState::Delivered as i32)
        })
    })
    .await;
    let after: Vec<(Instant, String)> = api
        .calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| !c.3)
        .map(|c| (c.0, c.1.clone()))
        .collect();
    let first = after.first().unwrap().0;
    assert!(
        first - back <= probe * 5 / 4 + STEP * 3,
        "first push {:?} after",
        first - back
    );
    for shop in ["S0", "S1", "S2"] {
        let started = after.iter().find(|(_, s)| s == shop).unwrap().0;
        assert!(
            started - first <= STEP * 10,
            "{shop} resumed with the others"
        );
    }
    assert_eq!(delivery.unreachable_accounts(), 0);
    delivery.stop(Duration::from_secs(1)).await;
    busy.abort();
}

/// Throttling answers are about calls, not about the account: it is not marked
/// unreachable, and the shop backs off on its own.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn throttling_does_not_mark_the_account_unreachable() {
    let busy = keep_runtime_busy();
    let s = setup(
        vec![answer(1040, "超过每分钟最大调用频率限制,请稍后重试")],
        RetryPolicy::default(),
    )
    .await;
    s.run_for(Duration::from_secs(20)).await;
    assert!(s.api.calls().len() >= 2, "retried");
    assert_eq!(s.delivery.unreachable_accounts(), 0);
    assert!(s.delivery.paused_shops().is_empty());
    s.delivery.stop(Duration::from_secs(1)).await;
    busy.abort();
}
