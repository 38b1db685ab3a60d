//! The dead-letter store: letters listed page by page, replayed, discarded, purged into,
//! and re-mapped. A letter lives under `x/ len16(tid) tid lane seq` and keeps the record its
//! version was mapped from (when known), so that [`write_remapped`] can take that record
//! mapped again by a fixed scheme.

use super::tally::Share;
use super::txn::Txn;
use super::writer::WriterState;
use super::{Outbox, Result, StoreError, decode, finish, has_newer, pending_trade};
use crate::keys::{self, TradeKey};
use prost::Message;
use std::cmp::Reverse;
use std::collections::BTreeSet;
use wdtpipe_common::connectors::{DEFAULT, split_lane};
use wdtpipe_proto::v1::{
    DeadLetter, DeadLetterFilter, DeliveryState, OutboxEntry, PendingVersion, RemappedLetter,
    TrackWrite,
};

/// What replaying dead letters did.
#[derive(Debug, Default)]
pub struct Replayed {
    pub replayed: u32,
    pub superseded: u32,
    pub tids: Vec<String>,
    pub ready_shops: BTreeSet<String>,
}

/// One page of dead letters.
#[derive(Debug, Default)]
pub struct DeadPage {
    pub letters: Vec<DeadLetter>,
    /// How many letters match in all.
    pub total: usize,
    /// Names where the next page starts; empty on the last page.
    pub next_page_token: String,
    /// Every matching letter's reason and how many have it, most first (at most
    /// `REASONS_LISTED`).
    pub reasons: Vec<(String, usize)>,
}

/// Most reasons a listing counts letters under.
pub(super) const REASONS_LISTED: usize = 50;

/// What writing re-mapped letters did (the fields of `WriteRemappedResponse`).
#[derive(Debug, Default)]
pub struct Remapped {
    pub repaired: u32,
    pub requeued: u32,
    pub superseded: u32,
    pub still_invalid: u32,
    pub gone: u32,
    pub tids: Vec<String>,
    pub ready_shops: BTreeSet<String>,
}

/// A letter's place in the listing order: newest death first, then newest version, then
/// key order. A page token is the place of a page's last letter.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct PagePlace {
    dead_at_ms: Reverse<i64>,
    seq: Reverse<u64>,
    tid: String,
    lane: String,
}

impl PagePlace {
    fn of(letter: &DeadLetter) -> Self {
        Self {
            dead_at_ms: Reverse(letter.dead_at_ms),
            seq: Reverse(letter.seq),
            tid: letter.tid.clone(),
            lane: letter.shop_no.clone(),
        }
    }

    /// `dead_at.seq.len(tid).tid lane`.
    fn token(&self) -> String {
        format!(
            "{}.{}.{}.{}{}",
            self.dead_at_ms.0,
            self.seq.0,
            self.tid.len(),
            self.tid,
            self.lane
        )
    }

    fn parse(token: &str) -> Option<Self> {
        let mut parts = token.splitn(4, '.');
        let dead_at_ms = parts.next()?.parse().ok()?;
        let seq = parts.next()?.parse().ok()?;
        let tid_len: usize = parts.next()?.parse().ok()?;
        let rest = parts.next()?;
        let (tid, lane) = (rest.get(..tid_len)?, rest.get(tid_len..)?);
        Some(Self {
            dead_at_ms: Reverse(dead_at_ms),
            seq: Reverse(seq),
            tid: tid.to_owned(),
            lane: lane.to_owned(),
        })
    }
}

/// Keys one step of a replay, discard or purge looks at: a large one runs as several
/// commits, so acknowledgements never wait long behind it (each step is atomic; the
/// whole is not).
pub const ADMIN_STEP: usize = 500;

/// What one step found, and the key the next step starts after (`None`: it was the last).
type Step<T> = (Vec<T>, Option<Vec<u8>>);

impl Outbox {
    /// Dead letters of a tid, oldest first.
    pub fn dead_letters_for_tid(&self, tid: &str) -> Result<Vec<DeadLetter>> {
        self.tree()?
            .scan_prefix(keys::dead_prefix(tid))
            .map(|item| decode(&item?.1))
            .collect()
    }

    /// Dead letters matching `filter`, newest first: at most `limit` of them, after the
    /// page `page_token` names (`""` = from the newest).
    pub fn dead_letters(
        &self,
        filter: &DeadLetterFilter,
        limit: usize,
        page_token: &str,
    ) -> Result<DeadPage> {
        let after = match page_token {
            "" => None,
            token => Some(PagePlace::parse(token).ok_or_else(|| {
                StoreError::BadRequest(format!("page token {token:?} is not one this outbox gave"))
            })?),
        };
        let mut letters: Vec<DeadLetter> = Vec::new();
        for item in self.tree()?.scan_prefix(dead_scan_prefix(filter)) {
            let letter: DeadLetter = decode(&item?.1)?;
            if matches(filter, &letter) {
                letters.push(letter);
            }
        }
        let total = letters.len();
        let mut reasons: std::collections::HashMap<&str, usize> = Default::default();
        for letter in &letters {
            *reasons.entry(letter.reason.as_str()).or_default() += 1;
        }
        let mut reasons: Vec<(String, usize)> = reasons
            .into_iter()
            .map(|(r, n)| (r.to_owned(), n))
            .collect();
        reasons.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        reasons.truncate(REASONS_LISTED);
        letters.sort_by_cached_key(PagePlace::of);
        if let Some(after) = after {
            letters.retain(|letter| PagePlace::of(letter) > after);
        }
        let next_page_token = match letters.get(limit) {
            Some(_) => PagePlace::of(&letters[limit - 1]).token(),
            None => String::new(),
        };
        letters.truncate(limit);
        Ok(DeadPage {
            letters,
            total,
            next_page_token,
            reasons,
        })
    }

    /// Puts dead letters matching `filter` back in the queue (latest version wins), in
    /// bounded steps (see [`ADMIN_STEP`]).
    pub async fn replay(&self, filter: DeadLetterFilter) -> Result<Replayed> {
        let mut done = Replayed::default();
        let mut after: Option<Vec<u8>> = None;
        loop {
            let filter = filter.clone();
            let (step, next) = self
                .write(move |txn, state| replay(txn, state, &filter, after))
                .await?;
            done.replayed += step.replayed;
            done.superseded += step.superseded;
            for tid in step.tids {
                if !done.tids.contains(&tid) {
                    done.tids.push(tid);
                }
            }
            done.ready_shops.extend(step.ready_shops);
            match next {
                Some(next) => after = Some(next),
                None => return Ok(done),
            }
        }
    }

    /// Deletes dead letters matching `filter`, in bounded steps; returns how many.
    pub async fn discard(&self, filter: DeadLetterFilter) -> Result<u32> {
        let (mut discarded, mut after) = (0, None);
        loop {
            let filter = filter.clone();
            let (step, next) = self
                .write(move |txn, _| discard(txn, &filter, after))
                .await?;
            discarded += step;
            match next {
                Some(next) => after = Some(next),
                None => return Ok(discarded),
            }
        }
    }

    /// Moves waiting trades of a shop (or a tid) into the dead-letter store, in bounded
    /// steps.
    pub async fn purge(&self, shop_no: String, tid: String, now_ms: i64) -> Result<u32> {
        let (mut purged, mut after) = (0, None);
        loop {
            let (shop_no, tid) = (shop_no.clone(), tid.clone());
            let (step, next) = self
                .write(move |txn, _| purge(txn, &shop_no, &tid, now_ms, after))
                .await?;
            purged += step;
            match next {
                Some(next) => after = Some(next),
                None => return Ok(purged),
            }
        }
    }

    /// Writes re-mapped dead letters ([`super::remap::write_remapped`]).
    pub async fn write_remapped(
        &self,
        letters: Vec<RemappedLetter>,
        now_ms: i64,
    ) -> Result<Remapped> {
        self.write(move |txn, state| super::remap::write_remapped(txn, state, letters, now_ms))
            .await
    }
}

/// The narrowest key prefix holding every letter a filter can match.
fn dead_scan_prefix(filter: &DeadLetterFilter) -> Vec<u8> {
    if filter.tid.is_empty() {
        keys::DEAD.to_vec()
    } else {
        keys::dead_prefix(&filter.tid)
    }
}

/// True when a dead letter matches a filter (empty fields match everything). A letter's
/// `shop_no` in the store is its lane: the shop, and its account unless `default`.
pub fn matches(filter: &DeadLetterFilter, letter: &DeadLetter) -> bool {
    let (shop, connector) = split_lane(&letter.shop_no);
    // An account named empty is `default`, in the lane and in a filter's key alike.
    fn account(name: &str) -> &str {
        if name.is_empty() { DEFAULT } else { name }
    }
    let same_account = |named: &str| account(named) == account(connector);
    (filter.tid.is_empty() || letter.tid == filter.tid)
        && (filter.shop_no.is_empty() || shop == filter.shop_no)
        && (filter.connector.is_empty() || same_account(&filter.connector))
        && (filter.since_ms == 0 || letter.dead_at_ms >= filter.since_ms)
        && (filter.until_ms == 0 || letter.dead_at_ms < filter.until_ms)
        && (filter.scheme.is_empty() || scheme_id(&letter.scheme) == filter.scheme)
        && (filter.reason.is_empty() || contains_folded(&letter.reason, &filter.reason))
        && (filter.keys.is_empty()
            || filter.keys.iter().any(|key| {
                key.tid == letter.tid
                    && key.seq == letter.seq
                    && key.shop_no == shop
                    && same_account(&key.connector)
            }))
}

/// The scheme id of an `id@version` label; letters from before schemes are `default`'s.
fn scheme_id(label: &str) -> &str {
    match label.split_once('@') {
        Some((id, _)) => id,
        None if label.is_empty() => "default",
        None => label,
    }
}

/// `text` contains `part`, ignoring case.
fn contains_folded(text: &str, part: &str) -> bool {
    text.to_lowercase().contains(&part.to_lowercase())
}

/// Letters matching `filter` as `txn` sees them (deleted ones skipped), in key order: per
/// tid and shop, oldest version first.
///
/// One step: at most [`ADMIN_STEP`] keys after `after`; the second value is where the next
/// step starts, `None` once the scan is through.
fn matching_letters(
    txn: &Txn<'_>,
    filter: &DeadLetterFilter,
    after: Option<Vec<u8>>,
) -> Result<Step<(Vec<u8>, DeadLetter)>> {
    let mut found = Vec::new();
    let (keys, next) = step_keys(txn, &dead_scan_prefix(filter), after)?;
    for key in keys {
        let Some(letter) = txn.get_msg::<DeadLetter>(&key)? else {
            continue;
        };
        if matches(filter, &letter) {
            found.push((key, letter));
        }
    }
    Ok((found, next))
}

/// Keys under `prefix` after `after` (or from the start), at most [`ADMIN_STEP`] of them,
/// and the last of them when more may follow.
fn step_keys(txn: &Txn<'_>, prefix: &[u8], after: Option<Vec<u8>>) -> Result<Step<Vec<u8>>> {
    use std::ops::Bound;
    let start = match after {
        Some(after) => Bound::Excluded(after),
        None => Bound::Included(prefix.to_vec()),
    };
    let mut keys = Vec::new();
    for item in txn.tree.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
        let (key, _) = item?;
        if !key.starts_with(prefix) {
            return Ok((keys, None));
        }
        keys.push(key.to_vec());
        if keys.len() == ADMIN_STEP {
            let last = keys.last().cloned();
            return Ok((keys, last));
        }
    }
    Ok((keys, None))
}

/// Puts letters back in their shops' queues. A letter older than a version of its tid that
/// waits or was delivered is superseded: latest wins, so it is only removed.
fn replay(
    txn: &mut Txn<'_>,
    state: &mut WriterState,
    filter: &DeadLetterFilter,
    after: Option<Vec<u8>>,
) -> Result<(Replayed, Option<Vec<u8>>)> {
    let mut done = Replayed::default();
    let (letters, next) = matching_letters(txn, filter, after)?;
    for (letter_key, letter) in letters {
        if let Some(write) = &letter.track {
            // A kuaidi100 push that found no trade: applied now if the trade is known.
            let write = TrackWrite {
                dead_if_unknown: false,
                ..write.clone()
            };
            let now_ms = wdtpipe_common::now_ms();
            let tracked = super::track::track(txn, state, &write, now_ms)?;
            if tracked.result.outcome != "unknown" {
                txn.del_dead(letter_key)?;
                done.replayed += 1;
                done.tids.push(tracked.result.tid);
                done.ready_shops.extend(tracked.ready_shops);
            }
            continue;
        }
        txn.del_dead(letter_key)?;
        let key = TradeKey::new(&letter.tid, &letter.shop_no);
        let mut entry = txn.entry_or_new(&key)?;
        if has_newer(&entry, letter.seq) {
            done.superseded += 1;
            continue;
        }
        let before = Share::of(&entry);
        let version = PendingVersion {
            seq: letter.seq,
            record_id: letter.record_id.clone(),
            received_at_ms: letter.received_at_ms,
            trade: letter
                .trade
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            record: letter
                .record
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            scheme: letter.scheme.clone(),
            ..PendingVersion::default()
        };
        if txn.queue_version(&mut entry, version, || state.take_seq()) {
            done.ready_shops.insert(key.shop_no.clone());
        }
        entry.attempts = 0;
        entry.first_attempt_at_ms = 0;
        entry.last_error = format!("replayed after: {}", letter.reason);
        txn.put_entry(key.entry_key(), before, &entry);
        done.replayed += 1;
        if done.tids.last() != Some(&key.tid) {
            done.tids.push(key.tid);
        }
    }
    Ok((done, next))
}

fn discard(
    txn: &mut Txn<'_>,
    filter: &DeadLetterFilter,
    after: Option<Vec<u8>>,
) -> Result<(u32, Option<Vec<u8>>)> {
    let (letters, next) = matching_letters(txn, filter, after)?;
    let count = u32::try_from(letters.len()).unwrap_or(u32::MAX);
    for (key, _) in letters {
        txn.del_dead(key)?;
    }
    Ok((count, next))
}

/// Takes waiting versions out of their queues into the dead-letter store. A version in
/// flight is settled later against an entry with nothing waiting, which changes nothing.
fn purge(
    txn: &mut Txn<'_>,
    shop_no: &str,
    tid: &str,
    now_ms: i64,
    after: Option<Vec<u8>>,
) -> Result<(u32, Option<Vec<u8>>)> {
    let prefix = if tid.is_empty() {
        keys::ENTRY.to_vec()
    } else {
        keys::entry_prefix(tid)
    };
    let mut purged = 0;
    let (found, next) = step_keys(txn, &prefix, after)?;
    for entry_key in found {
        let Some(mut entry) = txn.get_msg::<OutboxEntry>(&entry_key)? else {
            continue;
        };
        if !shop_no.is_empty() && split_lane(&entry.shop_no).0 != shop_no {
            continue;
        }
        let before = Share::of(&entry);
        let Some(pending) = entry.pending.take() else {
            continue;
        };
        let key = TradeKey::new(&entry.tid, &entry.shop_no);
        txn.del(keys::ready_key(&key.shop_no, entry.queue_seq));
        txn.del(keys::waiting_key(entry.next_attempt_at_ms, entry.queue_seq));
        let reason = "purged by operator".to_owned();
        let trade = pending_trade(&pending)?;
        let mut letter = DeadLetter {
            // In the store a letter's shop_no is its lane (shop and account).
            connector: String::new(),
            tid: key.tid.clone(),
            shop_no: key.shop_no.clone(),
            seq: pending.seq,
            record_id: pending.record_id.clone(),
            received_at_ms: pending.received_at_ms,
            dead_at_ms: now_ms,
            reason: reason.clone(),
            trade: Some(trade),
            history: entry.history.clone(),
            ..DeadLetter::default()
        };
        keep_source(&mut letter, &pending);
        txn.put_dead(keys::dead_key(&key, pending.seq), &letter)?;
        entry.state = DeliveryState::Dead as i32;
        entry.dead_reason = reason;
        entry.next_attempt_at_ms = 0;
        entry.attempts = 0;
        entry.first_attempt_at_ms = 0;
        finish(&mut entry, now_ms);
        txn.put_entry(entry_key, before, &entry);
        purged += 1;
    }
    Ok((purged, next))
}

/// Gives a letter the record and scheme its version was mapped from, as the pending version
/// kept them. A record that does not decode is left out (the letter can still be replayed).
pub(super) fn keep_source(letter: &mut DeadLetter, pending: &PendingVersion) {
    letter.scheme.clone_from(&pending.scheme);
    if pending.record.is_empty() {
        return;
    }
    match decode(&pending.record) {
        Ok(record) => letter.record = Some(record),
        Err(error) => {
            tracing::warn!(tid = %letter.tid, %error, "dead letter's record does not decode; kept without it");
        }
    }
}
