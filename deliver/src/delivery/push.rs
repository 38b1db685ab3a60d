//! One call's batch: pushed to WDT, and split in halves while WDT rejects it without
//! naming a tid, until the culprit is alone. [`Push`] is the plan as a plain state machine
//! (no I/O, no clock of its own), so each answer's effect is tested without tokio;
//! [`Delivery::push`] drives it against WDT.

use super::retry::{attempt_of, backoff, retry_or_give_up};
use super::{Delivery, account_of, lock};
use crate::classify::Verdict;
use crate::config::RetryPolicy;
use crate::store::{Outcome, Ready, Settlement};
use crate::wdt::Call;
use rand::Rng;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use wdtpipe_proto::v1::{Attempt, TradeOrder};

/// What is left to push of one batch, and what became of the trades already answered.
#[derive(Debug)]
pub struct Push {
    shop: String,
    /// Parts still to push, the next first.
    parts: VecDeque<Vec<Ready>>,
    settlements: Vec<Settlement>,
    /// Why the shop pauses (WDT refused our configuration).
    pause: Option<String>,
    /// A transient failure or a pause ended the batch: the rest stays at the queue head.
    stopped: bool,
    /// WDT answered at least one part (the account is reachable).
    answered: bool,
    /// A part got no answer from WDT (transport error, 5xx, 429), with its `Retry-After`.
    unreachable: Option<Option<std::time::Duration>>,
}

impl Push {
    pub fn new(shop: &str, batch: Vec<Ready>) -> Self {
        Self {
            shop: shop.to_owned(),
            parts: VecDeque::from([batch]),
            settlements: Vec::new(),
            pause: None,
            stopped: false,
            answered: false,
            unreachable: None,
        }
    }

    /// What the batch told of its account: whether WDT answered, and whether a part found it
    /// unreachable (with the `Retry-After` it gave).
    pub fn reach(&self) -> (bool, Option<Option<std::time::Duration>>) {
        (self.answered, self.unreachable)
    }

    /// The next part to push, or `None` when the batch is done.
    pub fn next_part(&mut self) -> Option<Vec<Ready>> {
        if self.stopped {
            return None;
        }
        self.parts.pop_front().filter(|part| !part.is_empty())
    }

    /// What WDT answered for `part` (taken from [`Push::next_part`]), at `now_ms`.
    pub fn answered(
        &mut self,
        part: Vec<Ready>,
        verdict: Verdict,
        attempt: Attempt,
        now_ms: i64,
        policy: &RetryPolicy,
        rng: &mut impl Rng,
    ) {
        let shop = self.shop.clone();
        if !matches!(
            verdict,
            Verdict::Transient {
                unreachable: true,
                ..
            }
        ) {
            self.answered = true;
        }
        match verdict {
            Verdict::Delivered {
                new_count,
                chg_count,
            } => {
                tracing::info!(
                    shop_no = %shop,
                    trades = part.len(),
                    new_count,
                    chg_count,
                    "delivered"
                );
                for ready in part {
                    self.settle(
                        ready,
                        &attempt,
                        Outcome::Delivered {
                            new_count,
                            chg_count,
                        },
                    );
                }
            }
            Verdict::Transient {
                reason,
                retry_after,
                throttled,
                unreachable,
            } => {
                tracing::warn!(shop_no = %shop, trades = part.len(), %reason, throttled, unreachable, "push failed; will retry");
                let due_ms = if unreachable {
                    // The account is out, not these trades: they wait for its probes (see
                    // `reach`), ready again as soon as a `Retry-After` allows.
                    self.unreachable = Some(retry_after);
                    now_ms + retry_after.map_or(0, |d| d.as_millis() as i64)
                } else {
                    // One delay for the whole part, so its trades come back as one call.
                    let attempts = part.iter().map(|r| r.attempts).max().unwrap_or_default() + 1;
                    let delay = backoff(policy, attempts, throttled, retry_after, rng);
                    now_ms + delay.as_millis() as i64
                };
                for ready in part {
                    let outcome = retry_or_give_up(policy, &ready, now_ms, &reason, due_ms);
                    self.settle(ready, &attempt, outcome);
                }
                // The rest of the batch was not tried; it stays at the head of the queue.
                self.stopped = true;
            }
            Verdict::Config { reason } => {
                for ready in part {
                    self.settle(ready, &attempt, Outcome::Keep);
                }
                self.pause = Some(reason);
                self.stopped = true;
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
                            tracing::warn!(shop_no = %shop, tid = %ready.key.tid, %reason, "dead-lettered");
                            self.settle(ready, &attempt, Outcome::Dead { reason });
                        }
                        // The others are pushed again from the queue head on the next round.
                    }
                } else {
                    // WDT named tids this call did not hold: treat as an unnamed rejection.
                    self.split(part, &attempt);
                }
            }
            Verdict::Rejected { reason } => {
                tracing::warn!(shop_no = %shop, trades = part.len(), %reason, "call rejected");
                self.split(part, &attempt);
            }
        }
    }

    /// A rejection that names no tid: a single trade is the culprit; a larger part is split
    /// in two and each half is pushed on its own, the first half first.
    fn split(&mut self, mut part: Vec<Ready>, attempt: &Attempt) {
        if part.len() == 1 {
            let ready = part.remove(0);
            let reason = format!("rejected by WDT: {}", attempt.message);
            tracing::warn!(shop_no = %self.shop, tid = %ready.key.tid, %reason, "dead-lettered");
            self.settle(ready, attempt, Outcome::Dead { reason });
        } else {
            let second = part.split_off(part.len() / 2);
            self.parts.push_front(second);
            self.parts.push_front(part);
        }
    }

    /// Records one trade's outcome. Only a dead letter keeps the trade: the others are
    /// freed here, not on the outbox writer, which every enqueue and settlement waits on.
    fn settle(&mut self, mut ready: Ready, attempt: &Attempt, outcome: Outcome) {
        if !matches!(outcome, Outcome::Dead { .. }) {
            ready.trade = TradeOrder::default();
        }
        self.settlements.push(Settlement {
            ready,
            attempt: attempt.clone(),
            outcome,
        });
    }

    /// What became of each trade answered, and why the shop pauses (if it does).
    pub fn finish(self) -> (Vec<Settlement>, Option<String>) {
        (self.settlements, self.pause)
    }
}

impl Delivery {
    /// Pushes one batch (splitting it when WDT rejects it without naming a tid) and says
    /// what became of each trade, plus a pause reason when WDT refused our configuration.
    pub(super) async fn push(
        self: &Arc<Self>,
        shop: &str,
        batch: Vec<Ready>,
    ) -> (Vec<Settlement>, Option<String>) {
        let mut plan = Push::new(shop, batch);
        while let Some(part) = plan.next_part() {
            let trades: Vec<&TradeOrder> = part.iter().map(|r| &r.trade).collect();
            self.add_in_flight(shop, trades.len() as i64);
            let started = tokio::time::Instant::now();
            let call = Call {
                lane: shop,
                trades: &trades,
            };
            let reply = self.client.trade_push(call).await;
            self.metrics
                .wdt_seconds
                .observe(started.elapsed().as_secs_f64());
            self.add_in_flight(shop, -(trades.len() as i64));
            let verdict = self.classifier.classify(&reply);
            let now = self.clock.now_ms();
            let attempt = attempt_of(now, &reply, &verdict);
            self.metrics.wdt_call(&attempt.outcome, attempt.code);
            plan.answered(part, verdict, attempt, now, &self.policy, &mut rand::rng());
        }
        let account = account_of(shop);
        match plan.reach() {
            (_, Some(retry_after)) => self.account_unreachable(&account, retry_after),
            (true, None) => self.account_answered(&account),
            (false, None) => self.release_probe(&account),
        }
        plan.finish()
    }

    /// Adjusts the count of a shop's trades in calls to WDT right now.
    fn add_in_flight(&self, shop: &str, trades: i64) {
        let mut activity = lock(&self.activity);
        let entry = &mut activity.entry(shop.to_owned()).or_default().in_flight;
        *entry = entry.saturating_add_signed(trades);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::TradeKey;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn batch(tids: &[&str]) -> Vec<Ready> {
        tids.iter()
            .enumerate()
            .map(|(n, tid)| Ready {
                key: TradeKey::new(tid, "S1"),
                seq: n as u64 + 1,
                trade: TradeOrder {
                    tid: (*tid).into(),
                    ..TradeOrder::default()
                },
                record_id: format!("r-{tid}"),
                received_at_ms: 1,
                first_attempt_at_ms: 0,
                attempts: 0,
            })
            .collect()
    }

    fn attempt(message: &str) -> Attempt {
        Attempt {
            at_ms: 1_000,
            message: message.into(),
            ..Attempt::default()
        }
    }

    fn tids(part: &[Ready]) -> Vec<&str> {
        part.iter().map(|r| r.key.tid.as_str()).collect()
    }

    fn outcomes(settlements: &[Settlement]) -> Vec<(String, &'static str)> {
        settlements
            .iter()
            .map(|s| {
                let kind = match s.outcome {
                    Outcome::Delivered { .. } => "delivered",
                    Outcome::Retry { .. } => "retry",
                    Outcome::Dead { .. } => "dead",
                    Outcome::Keep => "keep",
                };
                (s.ready.key.tid.clone(), kind)
            })
            .collect()
    }

    /// A rejection naming no tid splits the call in halves, first half first, until the
    /// culprit is alone; the rest is delivered.
    #[test]
    fn an_unnamed_rejection_is_bisected_to_the_culprit() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(1);
        let mut plan = Push::new("S1", batch(&["A", "B", "C", "D", "E"]));
        let mut pushed = Vec::new();
        while let Some(part) = plan.next_part() {
            pushed.push(tids(&part).join(""));
            let verdict = if part.iter().any(|r| r.key.tid == "D") {
                Verdict::Rejected {
                    reason: "bad D".into(),
                }
            } else {
                Verdict::Delivered {
                    new_count: part.len() as i32,
                    chg_count: 0,
                }
            };
            plan.answered(part, verdict, attempt("bad D"), 1_000, &policy, &mut rng);
        }
        assert_eq!(pushed, ["ABCDE", "AB", "CDE", "C", "DE", "D", "E"]);
        let (settlements, pause) = plan.finish();
        assert_eq!(pause, None);
        let mut got = outcomes(&settlements);
        got.sort();
        assert_eq!(
            got,
            [
                ("A".into(), "delivered"),
                ("B".into(), "delivered"),
                ("C".into(), "delivered"),
                ("D".into(), "dead"),
                ("E".into(), "delivered"),
            ]
        );
        let dead = settlements.iter().find(|s| s.ready.key.tid == "D").unwrap();
        assert_eq!(dead.ready.trade.tid, "D", "a dead letter keeps its trade");
        assert!(
            settlements
                .iter()
                .filter(|s| s.ready.key.tid != "D")
                .all(|s| s.ready.trade.tid.is_empty()),
            "the others' trades are freed"
        );
    }

    /// Named rejections dead-letter exactly those tids; the others are left for the next
    /// round. A transient failure retries the part and stops the batch; a configuration
    /// error keeps the part and pauses the shop.
    #[test]
    fn named_rejections_transient_failures_and_pauses() {
        let policy = RetryPolicy::default();
        let mut rng = StdRng::seed_from_u64(2);
        let mut plan = Push::new("S1", batch(&["A", "B", "C"]));
        let part = plan.next_part().unwrap();
        plan.answered(
            part,
            Verdict::RejectedTids {
                rejected: vec![("B".into(), "no such goods".into())],
            },
            attempt("[…]"),
            1_000,
            &policy,
            &mut rng,
        );
        assert!(plan.next_part().is_none());
        let (settlements, _) = plan.finish();
        assert_eq!(outcomes(&settlements), [("B".into(), "dead")]);
        assert!(
            matches!(&settlements[0].outcome, Outcome::Dead { reason } if reason.contains("no such goods"))
        );

        let mut plan = Push::new("S1", batch(&["A", "B", "C", "D"]));
        let part = plan.next_part().unwrap();
        plan.answered(
            part,
            Verdict::Rejected { reason: "?".into() },
            attempt("?"),
            1_000,
            &policy,
            &mut rng,
        );
        let part = plan.next_part().unwrap();
        assert_eq!(tids(&part), ["A", "B"]);
        plan.answered(
            part,
            Verdict::Transient {
                reason: "HTTP 503".into(),
                retry_after: Some(std::time::Duration::from_secs(7)),
                throttled: false,
                unreachable: true,
            },
            attempt("HTTP 503"),
            1_000,
            &policy,
            &mut rng,
        );
        assert!(plan.next_part().is_none(), "C and D stay at the queue head");
        assert_eq!(
            plan.reach(),
            (true, Some(Some(std::time::Duration::from_secs(7)))),
            "the first part got an answer; the second found the account out"
        );
        let (settlements, pause) = plan.finish();
        assert_eq!(
            outcomes(&settlements),
            [("A".into(), "retry"), ("B".into(), "retry")]
        );
        assert!(
            settlements
                .iter()
                .all(|s| matches!(s.outcome, Outcome::Retry { due_ms } if due_ms >= 1_000 + 7_000))
        );
        assert_eq!(pause, None);

        let mut plan = Push::new("S1", batch(&["A"]));
        let part = plan.next_part().unwrap();
        plan.answered(
            part,
            Verdict::Config {
                reason: "sign error".into(),
            },
            attempt("sign error"),
            1_000,
            &policy,
            &mut rng,
        );
        let (settlements, pause) = plan.finish();
        assert_eq!(outcomes(&settlements), [("A".into(), "keep")]);
        assert_eq!(pause.as_deref(), Some("sign error"));
    }

    /// A trade failing for longer than the age limit is given up on instead of retried.
    #[test]
    fn past_the_age_limit_a_failure_is_final() {
        let policy = RetryPolicy {
            max_age_secs: 60,
            ..RetryPolicy::default()
        };
        let mut rng = StdRng::seed_from_u64(3);
        let mut old = batch(&["A"]);
        old[0].first_attempt_at_ms = 1_000;
        old[0].attempts = 9;
        let mut plan = Push::new("S1", old);
        let part = plan.next_part().unwrap();
        plan.answered(
            part,
            Verdict::Transient {
                reason: "timeout".into(),
                retry_after: None,
                throttled: false,
                unreachable: false,
            },
            attempt("timeout"),
            61_000,
            &policy,
            &mut rng,
        );
        let (settlements, _) = plan.finish();
        assert!(
            matches!(&settlements[0].outcome, Outcome::Dead { reason } if reason.contains("gave up after 10 attempts over 60 s")),
            "{:?}",
            settlements[0].outcome
        );
    }
}
