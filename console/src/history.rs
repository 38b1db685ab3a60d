//! An hour of a counter, by minute, kept from the totals the services report: the
//! sparklines and "per minute" figures of the overview. Built from successive samples of a
//! total (a restart of the service, which zeroes its total, counts as a fresh start).

use std::collections::VecDeque;

/// Minutes kept (the sparkline's width).
pub(crate) const MINUTES: usize = 60;
const MINUTE_MS: i64 = 60_000;

/// One counter's last hour.
#[derive(Debug, Clone, Default)]
pub(crate) struct Series {
    last_total: Option<u64>,
    /// (minute since the epoch, count in it), oldest first.
    minutes: VecDeque<(i64, u64)>,
    /// (time, increase) of the samples of the last 60 seconds.
    recent: VecDeque<(i64, u64)>,
}

impl Series {
    /// A counter that appeared after the console started: its whole total is new.
    pub(crate) fn from_zero() -> Self {
        Self {
            last_total: Some(0),
            ..Self::default()
        }
    }

    /// Takes a sample of the total at `at_ms`.
    pub(crate) fn add(&mut self, total: u64, at_ms: i64) {
        let delta = match self.last_total {
            Some(last) if total >= last => total - last,
            // The service restarted: its total starts again from zero.
            Some(_) => total,
            // The first sample only sets the baseline.
            None => 0,
        };
        self.last_total = Some(total);
        let minute = at_ms.div_euclid(MINUTE_MS);
        match self.minutes.back_mut() {
            Some((m, n)) if *m == minute => *n += delta,
            _ => self.minutes.push_back((minute, delta)),
        }
        while self
            .minutes
            .front()
            .is_some_and(|(m, _)| *m <= minute - MINUTES as i64)
        {
            self.minutes.pop_front();
        }
        self.recent.push_back((at_ms, delta));
        while self
            .recent
            .front()
            .is_some_and(|(at, _)| *at <= at_ms - MINUTE_MS)
        {
            self.recent.pop_front();
        }
    }

    /// The increase over the last 60 seconds.
    pub(crate) fn last_minute(&self) -> u64 {
        self.recent.iter().map(|(_, n)| n).sum()
    }

    /// The count of each of the last [`MINUTES`] minutes up to `now_ms`, oldest first.
    pub(crate) fn by_minute(&self, now_ms: i64) -> Vec<u64> {
        let now = now_ms.div_euclid(MINUTE_MS);
        (0..MINUTES as i64)
            .rev()
            .map(|back| {
                let minute = now - back;
                self.minutes
                    .iter()
                    .find(|(m, _)| *m == minute)
                    .map_or(0, |(_, n)| *n)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Increases land in their minute, the first sample is only a baseline, a restart
    /// counts from zero, and minutes older than an hour go.
    #[test]
    fn counts_increases_by_minute() {
        let mut series = Series::default();
        let t0 = 1_000 * MINUTE_MS;
        series.add(100, t0);
        series.add(130, t0 + 10_000);
        series.add(150, t0 + 70_000);
        assert_eq!(series.last_minute(), 20);
        let minutes = series.by_minute(t0 + 70_000);
        assert_eq!(minutes.len(), MINUTES);
        assert_eq!(&minutes[MINUTES - 2..], &[30, 20]);
        series.add(5, t0 + 80_000);
        assert_eq!(series.by_minute(t0 + 80_000)[MINUTES - 1], 25);
        series.add(5, t0 + 200 * MINUTE_MS);
        assert!(
            series
                .by_minute(t0 + 200 * MINUTE_MS)
                .iter()
                .all(|n| *n == 0)
        );
    }
}
