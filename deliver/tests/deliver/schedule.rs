//! The retry schedule under a paused tokio clock: a scripted WDT answers, the test advances
//! virtual time in small steps and checks when each push happened.
//!
//! A task that only yields keeps the runtime busy, so tokio never jumps the paused clock by
//! itself; time moves only when the test advances it.

use crate::scripted::{Pushed, ScriptedWdt};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use wdtpipe_deliver::clock::Clock;
use wdtpipe_deliver::config::RetryPolicy;
use wdtpipe_deliver::delivery::Delivery;
use wdtpipe_deliver::keys::TradeKey;
use wdtpipe_deliver::store::Outbox;
use wdtpipe_deliver::wdt::Reply;
use wdtpipe_proto::v1::{DeliveryState, EnqueueRecord, OutboxEntry, TradeOrder};

const STEP: Duration = Duration::from_millis(10);

fn http(status: u16, retry_after: Option<Duration>) -> Reply {
    Reply::Http {
        status,
        retry_after,
        answer: Err("scripted".into()),
    }
}

/// A record holding one trade, `tid` at `shop`.
fn record(record_id: impl Into<String>, tid: impl Into<String>, shop: &str) -> EnqueueRecord {
    EnqueueRecord {
        record_id: record_id.into(),
        source: "test".into(),
        trades: vec![TradeOrder {
            tid: tid.into(),
            shop_no: shop.into(),
            ..TradeOrder::default()
        }],
        ..EnqueueRecord::default()
    }
}

struct Setup {
    api: Arc<ScriptedWdt>,
    outbox: Arc<Outbox>,
    delivery: Arc<Delivery>,
    _dir: tempfile::TempDir,
}

/// Delivery on a fresh outbox, pushing to a WDT that answers from `script`.
fn start(script: Vec<Reply>, policy: RetryPolicy) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let outbox = Arc::new(Outbox::open(dir.path()).unwrap());
    let api = ScriptedWdt::new(script);
    let delivery = Delivery::start(
        outbox.clone(),
        api.clone(),
        Clock::new(),
        super::settings(policy, 4, vec![1040]),
    )
    .unwrap();
    Setup {
        api,
        outbox,
        delivery,
        _dir: dir,
    }
}

/// [`start`], with one trade waiting: T1 at shop S.
async fn setup(script: Vec<Reply>, policy: RetryPolicy) -> Setup {
    let s = start(script, policy);
    s.enqueue(vec![record("r1", "T1", "S")]).await;
    s
}

impl Setup {
    /// Enqueues `records` (received now) as one request and wakes their shops.
    async fn enqueue(&self, mut records: Vec<EnqueueRecord>) {
        let now = self.delivery.clock().now_ms();
        for record in &mut records {
            record.received_at_ms = now;
        }
        let done = self
            .outbox
            .enqueue(records, String::new(), now)
            .await
            .unwrap();
        self.delivery.notify(done.ready_shops);
    }

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
    let calls = s.api.times();
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
        Reply::answer(0, ""),
    ];
    let s = setup(script, RetryPolicy::default()).await;
    s.run_until(Duration::from_secs(120), |s| {
        s.entry().state == DeliveryState::Delivered as i32
    })
    .await;
    let calls = s.api.times();
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
        .map(|_| Reply::answer(1040, "超过每分钟最大调用频率限制,请稍后重试"))
        .collect();
    script.push(Reply::answer(0, ""));
    let s = setup(script, policy).await;
    s.run_until(Duration::from_secs(600), |s| {
        s.entry().state == DeliveryState::Delivered as i32
    })
    .await;
    let calls = s.api.times();
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
    let more = (0..120)
        .map(|i| record(format!("more-{i}"), format!("M{i:03}"), "S"))
        .collect();
    s.enqueue(more).await;
    s.run_for(Duration::from_secs(30)).await;
    let heads: Vec<String> = s.api.calls().iter().map(|c| c.head().to_owned()).collect();
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
    let s = setup(vec![Reply::answer(0, "ok")], RetryPolicy::default()).await;
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

    s.enqueue(vec![record("r2", "T2", "S")]).await;
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

/// Issue 18: WDT down with three shops queued. While it is, the account gets one probe at
/// a time (at most one call per probe interval, whatever the number of shops), not a growing
/// backoff per shop; once it is back, the first probe that gets an answer resumes every
/// shop at once and the backlog drains within a few probe intervals. Throttling does not
/// mark the account unreachable.
#[tokio::test(flavor = "current_thread", start_paused = true)]
async fn an_unreachable_account_is_probed_then_every_shop_resumes_at_once() {
    let busy = keep_runtime_busy();
    let policy = RetryPolicy::default();
    let probe = Duration::from_millis(policy.probe_ms);
    // WDT is down (no answer at all) until told otherwise.
    let s = start(vec![Reply::Transport("connection refused".into())], policy);
    let (api, delivery) = (&s.api, &s.delivery);
    let records = (0..30)
        .map(|i| record(format!("r{i}"), format!("T{i:02}"), &format!("S{}", i % 3)))
        .collect();
    s.enqueue(records).await;
    let down = |call: &Pushed| matches!(call.reply, Reply::Transport(_));

    // 90 s of WDT down.
    let outage = Duration::from_secs(90);
    s.run_for(outage).await;
    assert_eq!(delivery.unreachable_accounts(), 1);
    let while_down: Vec<Instant> = api
        .calls()
        .iter()
        .filter(|c| down(c))
        .map(|c| c.at)
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
    api.answer_from(vec![Reply::answer(0, "ok")]);
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
        .calls()
        .iter()
        .filter(|c| !down(c))
        .map(|c| (c.at, c.lane.clone()))
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
        vec![Reply::answer(1040, "超过每分钟最大调用频率限制,请稍后重试")],
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
