//! Whether each WDT account (connector) answers at all. Transport errors, timeouts, HTTP
//! 5xx and 429 from any of its shops mark it unreachable; from then on its shops push
//! nothing but one probe at a time, a real call with the head trade of one shop, every
//! `probe_ms` (jittered, never sooner than a `Retry-After`). The first call that gets an
//! answer marks the account back and wakes every shop of it at once, so the backlog goes
//! out as soon as WDT does instead of after each shop's own growing backoff. Throttling
//! answers and what WDT says about a trade stay per shop and per trade.

use rand::Rng;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// One unreachable account.
#[derive(Debug, Clone)]
pub(super) struct Outage {
    /// Since when (Unix ms), for status lines.
    pub(super) since_ms: i64,
    /// Not before this instant does the next probe go.
    pub(super) next_probe: Instant,
    /// And the same, as Unix ms, for status lines.
    pub(super) next_probe_ms: i64,
    /// A probe is in flight.
    pub(super) probing: bool,
    /// Calls that found it unreachable, and probes made, since it went.
    pub(super) failures: u64,
    pub(super) probes: u64,
}

/// The accounts that are unreachable now.
#[derive(Debug, Default)]
pub(super) struct Reach {
    outages: HashMap<String, Outage>,
}

/// The delay before the next probe: `every`, jittered by ±25 %, never below `retry_after`.
fn probe_delay(every: Duration, retry_after: Option<Duration>) -> Duration {
    let millis = every.as_millis() as u64;
    let jitter = rand::rng().random_range(0..=millis / 2);
    let delay = Duration::from_millis(millis - millis / 4 + jitter);
    delay.max(retry_after.unwrap_or_default())
}

impl Reach {
    pub(super) fn outage(&self, account: &str) -> Option<&Outage> {
        self.outages.get(account)
    }

    pub(super) fn outages(&self) -> impl Iterator<Item = (&String, &Outage)> {
        self.outages.iter()
    }

    /// A call found the account unreachable: true when this starts an outage.
    pub(super) fn failed(
        &mut self,
        account: &str,
        every: Duration,
        retry_after: Option<Duration>,
        now_ms: i64,
    ) -> bool {
        let delay = probe_delay(every, retry_after);
        let started = !self.outages.contains_key(account);
        let outage = self.outages.entry(account.to_owned()).or_insert(Outage {
            since_ms: now_ms,
            next_probe: Instant::now(),
            next_probe_ms: now_ms,
            probing: false,
            failures: 0,
            probes: 0,
        });
        outage.failures += 1;
        outage.probing = false;
        let next = Instant::now() + delay;
        if next > outage.next_probe || started {
            outage.next_probe = next;
            outage.next_probe_ms = now_ms + delay.as_millis() as i64;
        }
        started
    }

    /// A call got an answer: the outage (if any) is over; answers it.
    pub(super) fn answered(&mut self, account: &str) -> Option<Outage> {
        self.outages.remove(account)
    }

    /// Takes the account's probe when it is due and none is in flight.
    pub(super) fn claim_probe(&mut self, account: &str) -> bool {
        match self.outages.get_mut(account) {
            Some(outage) if !outage.probing && Instant::now() >= outage.next_probe => {
                outage.probing = true;
                outage.probes += 1;
                true
            }
            _ => false,
        }
    }

    /// An operator wants the account probed now: true when it is unreachable.
    pub(super) fn probe_now(&mut self, account: &str) -> bool {
        match self.outages.get_mut(account) {
            Some(outage) => {
                outage.next_probe = Instant::now();
                outage.next_probe_ms = wdtpipe_common::now_ms();
                true
            }
            None => false,
        }
    }

    /// A probe ended without a verdict on the account (it read nothing, its call failed
    /// for another reason): another shop may probe.
    pub(super) fn release_probe(&mut self, account: &str) {
        if let Some(outage) = self.outages.get_mut(account) {
            outage.probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One probe per interval, whatever asks; a Retry-After is a floor; an answer ends it.
    #[tokio::test(start_paused = true)]
    async fn one_probe_per_interval() {
        let mut reach = Reach::default();
        let every = Duration::from_secs(2);
        assert!(reach.failed("default", every, None, 1_000));
        assert!(!reach.failed("default", every, None, 1_001), "already out");
        assert!(!reach.claim_probe("default"), "not due yet");
        tokio::time::advance(Duration::from_millis(2_600)).await;
        assert!(reach.claim_probe("default"));
        assert!(!reach.claim_probe("default"), "one in flight");
        assert!(!reach.failed("default", every, Some(Duration::from_secs(30)), 4_000));
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!reach.claim_probe("default"), "Retry-After: 30 s");
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(reach.claim_probe("default"));
        let ended = reach.answered("default").unwrap();
        assert_eq!((ended.since_ms, ended.probes), (1_000, 2));
        assert!(reach.outage("default").is_none());
        assert!(!reach.claim_probe("default"), "reachable: nothing to probe");
    }
}
