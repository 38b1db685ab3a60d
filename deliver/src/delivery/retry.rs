//! When to try a failed trade again: exponential backoff with full jitter, giving up after
//! the age limit; and the attempt each call leaves in a trade's history.

use crate::classify::Verdict;
use crate::config::RetryPolicy;
use crate::store::{Outcome, Ready};
use crate::wdt::Reply;
use rand::Rng;
use std::time::Duration;
use wdtpipe_proto::v1::Attempt;

/// Retry at `due_ms`, unless the trade has been failing for longer than the age limit.
pub fn retry_or_give_up(
    policy: &RetryPolicy,
    ready: &Ready,
    now: i64,
    reason: &str,
    due_ms: i64,
) -> Outcome {
    let failing_since = if ready.first_attempt_at_ms > 0 {
        ready.first_attempt_at_ms
    } else {
        now
    };
    let max_age_ms = (policy.max_age_secs as i64).saturating_mul(1000);
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

/// The attempt a call leaves in each of its trades' history.
pub fn attempt_of(at_ms: i64, reply: &Reply, verdict: &Verdict) -> Attempt {
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
