//! The alert rules: what the console observed → alert events (firing or resolved).
//!
//! Pure and synchronous: [`Rules::apply`] takes one [`Batch`] (one observation, or several
//! merged when the alert task fell behind) and returns the events to send. It keeps which
//! alerts are firing so that one still firing is not fired again, and so that a resolved
//! event can say how long the alert lasted.

use super::{AlertKind, DeadNote, LaneObservation, Observation};
use std::collections::{BTreeMap, BTreeSet};

/// Sample trade ids kept per dead-letter group.
pub(crate) const SAMPLE_TIDS: usize = 5;

/// Most (connector, shop, reason) groups one batch keeps; notes of further groups are
/// counted under [`OTHER_REASONS`] so that a flood of distinct reasons stays bounded.
pub(crate) const MAX_GROUPS: usize = 200;

/// The reason further groups are counted under once [`MAX_GROUPS`] is reached.
pub(crate) const OTHER_REASONS: &str = "(其他原因 / other reasons)";

/// A lane: (connector, shop_no).
pub(crate) type LaneKey = (String, String);

/// New dead letters of one (connector, shop, reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeadGroup {
    pub(crate) count: u64,
    /// Up to [`SAMPLE_TIDS`] trade ids, first seen first.
    pub(crate) sample_tids: Vec<String>,
    /// The earliest known time of death; `i64::MAX` while none is known.
    pub(crate) first_dead_at_ms: i64,
}

/// What the alert task takes in one go: the newest lanes and every new dead letter since
/// the last batch, grouped.
#[derive(Debug, Clone, Default)]
pub(crate) struct Batch {
    pub(crate) at_ms: i64,
    /// `None` until an observation arrived (a batch holds at least one).
    pub(crate) lanes: Option<Vec<LaneObservation>>,
    /// (connector, shop_no, reason) → group.
    pub(crate) dead: BTreeMap<(String, String, String), DeadGroup>,
}

impl Batch {
    /// Folds a newer observation in: its lanes replace the older ones (the newest wins),
    /// its dead letters add to the groups.
    pub(crate) fn merge(&mut self, observation: Observation) {
        self.at_ms = self.at_ms.max(observation.at_ms);
        self.lanes = Some(observation.lanes);
        for note in observation.new_dead_letters {
            self.add_note(note);
        }
    }

    fn add_note(&mut self, note: DeadNote) {
        let DeadNote {
            connector,
            shop_no,
            tid,
            reason,
            dead_at_ms,
        } = note;
        let mut key = (connector, shop_no, reason);
        if !self.dead.contains_key(&key) && self.dead.len() >= MAX_GROUPS {
            key.2 = OTHER_REASONS.to_owned();
        }
        let group = self.dead.entry(key).or_insert_with(|| DeadGroup {
            count: 0,
            sample_tids: Vec::new(),
            first_dead_at_ms: i64::MAX,
        });
        group.count += 1;
        // Notes standing for letters past the sampler's first page have neither a tid
        // nor a time: they count, and no more.
        if dead_at_ms > 0 {
            group.first_dead_at_ms = group.first_dead_at_ms.min(dead_at_ms);
        }
        if !tid.is_empty()
            && group.sample_tids.len() < SAMPLE_TIDS
            && !group.sample_tids.contains(&tid)
        {
            group.sample_tids.push(tid);
        }
    }
}

/// Whether an event opens or closes an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EventState {
    Firing,
    /// Closed after `lasted_ms`.
    Resolved {
        lasted_ms: i64,
    },
}

/// What an event is about, with what the message shows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Detail {
    /// `count` new dead letters for `reason` (firing), or the lane's dead letters all
    /// cleared (resolved: `reason` empty, `count` 0).
    DeadLetters {
        reason: String,
        count: u64,
        sample_tids: Vec<String>,
    },
    /// Paused with WDT's `reason` verbatim (firing); resumed (resolved, the reason it had).
    Paused { reason: String },
    /// The oldest waiting trade is `age_ms` old, the threshold `threshold_ms`.
    OldestWaiting { age_ms: i64, threshold_ms: i64 },
}

/// One thing to tell the operators.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AlertEvent {
    pub(crate) state: EventState,
    pub(crate) kind: AlertKind,
    pub(crate) connector: String,
    pub(crate) shop_no: String,
    pub(crate) detail: Detail,
    /// When the alert started firing.
    pub(crate) since_ms: i64,
    /// The observation that produced the event.
    pub(crate) at_ms: i64,
}

/// An alert that is firing now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Firing {
    pub(crate) since_ms: i64,
    /// What fired it: the last dead-letter reason, the pause reason, the age.
    pub(crate) detail: Detail,
}

/// The rules' memory: which alerts fire now.
#[derive(Debug, Clone)]
pub(crate) struct Rules {
    oldest_threshold_ms: i64,
    firing: BTreeMap<(AlertKind, LaneKey), Firing>,
}

impl Rules {
    /// Rules that fire "oldest waiting" past `oldest_secs`.
    pub(crate) fn new(oldest_secs: u64) -> Self {
        Rules {
            oldest_threshold_ms: i64::try_from(oldest_secs.saturating_mul(1000))
                .unwrap_or(i64::MAX),
            firing: BTreeMap::new(),
        }
    }

    /// The alerts firing now, keyed by kind and lane.
    pub(crate) fn firing(&self) -> &BTreeMap<(AlertKind, LaneKey), Firing> {
        &self.firing
    }

    /// The events `batch` gives rise to, firing ones first in lane order, then resolved.
    pub(crate) fn apply(&mut self, batch: Batch) -> Vec<AlertEvent> {
        let at_ms = batch.at_ms;
        let mut events = Vec::new();
        let mut resolved = Vec::new();

        // New dead letters always make an event: each is news, even while the lane's
        // dead-letter alert already fires (that alert then keeps its start).
        let mut lanes_with_new = BTreeSet::new();
        for ((connector, shop_no, reason), group) in batch.dead {
            let lane = (connector.clone(), shop_no.clone());
            let detail = Detail::DeadLetters {
                reason,
                count: group.count,
                sample_tids: group.sample_tids,
            };
            let since_ms = match self.firing.get_mut(&(AlertKind::DeadLetters, lane.clone())) {
                Some(firing) => {
                    firing.detail = detail.clone();
                    firing.since_ms
                }
                None => {
                    let since_ms = group.first_dead_at_ms.min(at_ms);
                    self.firing.insert(
                        (AlertKind::DeadLetters, lane.clone()),
                        Firing {
                            since_ms,
                            detail: detail.clone(),
                        },
                    );
                    since_ms
                }
            };
            events.push(AlertEvent {
                state: EventState::Firing,
                kind: AlertKind::DeadLetters,
                connector,
                shop_no,
                detail,
                since_ms,
                at_ms,
            });
            lanes_with_new.insert(lane);
        }

        let Some(lanes) = batch.lanes else {
            return events;
        };
        let mut seen: BTreeMap<LaneKey, &LaneObservation> = BTreeMap::new();
        for lane in &lanes {
            seen.insert((lane.connector.clone(), lane.shop_no.clone()), lane);
        }
        for (key, lane) in &seen {
            if !lane.paused_reason.is_empty() {
                let detail = Detail::Paused {
                    reason: lane.paused_reason.clone(),
                };
                self.fire(AlertKind::ShopPaused, key, detail, at_ms, &mut events);
            }
            if lane.oldest_age_ms > self.oldest_threshold_ms {
                let detail = Detail::OldestWaiting {
                    age_ms: lane.oldest_age_ms,
                    threshold_ms: self.oldest_threshold_ms,
                };
                self.fire(AlertKind::OldestWaiting, key, detail, at_ms, &mut events);
            }
        }

        // Resolutions. A lane missing from the observation is no longer paused or waiting;
        // its dead letters stay until a count of 0 is seen, and a lane that got new dead
        // letters in this very batch is not called cleared in the same message.
        let threshold = self.oldest_threshold_ms;
        self.firing.retain(|(kind, lane), firing| {
            let observed = seen.get(lane);
            let over = match kind {
                AlertKind::ShopPaused => observed.is_none_or(|l| l.paused_reason.is_empty()),
                AlertKind::OldestWaiting => observed.is_none_or(|l| l.oldest_age_ms <= threshold),
                AlertKind::DeadLetters => {
                    observed.is_some_and(|l| l.dead_letters == 0) && !lanes_with_new.contains(lane)
                }
            };
            if over {
                let detail = match (kind, &firing.detail) {
                    (AlertKind::DeadLetters, _) => Detail::DeadLetters {
                        reason: String::new(),
                        count: 0,
                        sample_tids: Vec::new(),
                    },
                    (AlertKind::OldestWaiting, Detail::OldestWaiting { threshold_ms, .. }) => {
                        Detail::OldestWaiting {
                            age_ms: observed.map_or(0, |l| l.oldest_age_ms),
                            threshold_ms: *threshold_ms,
                        }
                    }
                    (_, detail) => detail.clone(),
                };
                resolved.push(AlertEvent {
                    state: EventState::Resolved {
                        lasted_ms: (at_ms - firing.since_ms).max(0),
                    },
                    kind: *kind,
                    connector: lane.0.clone(),
                    shop_no: lane.1.clone(),
                    detail,
                    since_ms: firing.since_ms,
                    at_ms,
                });
            }
            !over
        });
        events.extend(resolved);
        events
    }

    /// Fires `kind` for `lane` unless it already fires (then only its detail is refreshed,
    /// for the status page).
    fn fire(
        &mut self,
        kind: AlertKind,
        lane: &LaneKey,
        detail: Detail,
        at_ms: i64,
        events: &mut Vec<AlertEvent>,
    ) {
        if let Some(firing) = self.firing.get_mut(&(kind, lane.clone())) {
            firing.detail = detail;
            return;
        }
        self.firing.insert(
            (kind, lane.clone()),
            Firing {
                since_ms: at_ms,
                detail: detail.clone(),
            },
        );
        events.push(AlertEvent {
            state: EventState::Firing,
            kind,
            connector: lane.0.clone(),
            shop_no: lane.1.clone(),
            detail,
            since_ms: at_ms,
            at_ms,
        });
    }
}
