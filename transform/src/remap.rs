//! Re-mapping dead letters after a scheme fix (`Transform.Remap`, `wdtpipe dlq remap`).
//!
//! Deliver keeps, with every dead letter, the record its version was mapped from and the
//! scheme that mapped it. A re-map:
//! 1. checks the caller's credential with every shard (`WriteRemapped` with no letters), so
//!    nothing is read for a caller who may not write;
//! 2. reads the matching letters from every shard, page by page;
//! 3. maps each letter's record with its scheme's current version (or the one asked for),
//!    oldest version first, with one snapshot of the serving schemes;
//! 4. writes the results back: trades for a shard other than the letter's first, then, on
//!    the letter's shard, its trades and the letter's removal in one atomic write. Deliver
//!    applies latest wins: a tid with a newer version waiting or delivered keeps it.
//!
//! A crash between steps of 4 leaves the letter in place with its trades queued elsewhere;
//! a second re-map queues them again as the same version, which WDT takes as an update.

use crate::error::ProcessError;
use crate::mapping::{Mapped, map_record};
use crate::pipeline::Transformer;
use crate::scheme::Scheme;
use crate::shard::shard_of;
use std::collections::BTreeMap;
use std::sync::Arc;
use wdtpipe_proto::v1::{
    DeadLetter, DeadLetterFilter, DeadLetterKey, ListDeadLettersRequest, RemapProblem,
    RemapResponse, RemappedLetter, TrackWrite, WriteRemappedRequest, WriteRemappedResponse,
};

/// Letters read per `ListDeadLetters` page.
const PAGE: u32 = 200;
/// Letters written per `WriteRemapped` call.
const WRITE_CHUNK: usize = 200;

/// A letter as read: the shard holding it, and the letter (its `shop_no` the shop alone).
struct Held {
    shard: usize,
    letter: DeadLetter,
}

impl Transformer {
    /// Re-maps the dead letters `filter` matches on every shard; `scheme_id` (non-empty)
    /// maps them all with that scheme instead of each letter's own. `authorization` is the
    /// caller's, passed on to deliver.
    pub(crate) async fn remap(
        &self,
        filter: DeadLetterFilter,
        scheme_id: &str,
        authorization: String,
    ) -> Result<RemapResponse, ProcessError> {
        if !wdtpipe_common::dead_letters::scoped(&filter) {
            return Err(ProcessError::BadRequest(
                wdtpipe_common::dead_letters::UNSCOPED.into(),
            ));
        }
        let schemes = self.catalog().current();
        let forced = match scheme_id {
            "" => None,
            id => Some(self.scheme(id)?),
        };
        let shards = self.shards();
        for shard in 0..shards.count() {
            shards
                .write_remapped(
                    shard,
                    WriteRemappedRequest::default(),
                    authorization.clone(),
                )
                .await
                .map_err(ProcessError::DeliverAdmin)?;
        }
        let mut held = self.read_letters(&filter).await?;
        held.sort_by_key(|h| h.letter.seq);

        let mut done = RemapResponse::default();
        // Per shard: letters held elsewhere whose trades go here, and letters held here.
        let mut elsewhere: BTreeMap<usize, Vec<RemappedLetter>> = BTreeMap::new();
        let mut local: BTreeMap<usize, Vec<RemappedLetter>> = BTreeMap::new();
        for Held { shard, letter } in held {
            let problem = |reason: String| RemapProblem {
                tid: letter.tid.clone(),
                shop_no: letter.shop_no.clone(),
                connector: letter.connector.clone(),
                reason,
            };
            if let Some(push) = &letter.track {
                // A kuaidi100 push whose tracking number no trade carried when it came:
                // looked up again on every shard (`dlq replay` looks on the letter's only).
                let write = TrackWrite {
                    dead_if_unknown: false,
                    ..push.clone()
                };
                match self.write_track(write).await? {
                    Some(applied) => {
                        if !done.tids.contains(&applied.tid) {
                            done.tids.push(applied.tid);
                        }
                        local.entry(shard).or_default().push(RemappedLetter {
                            letter: Some(key_of(&letter)),
                            seq: letter.seq,
                            trades_elsewhere: true,
                            ..RemappedLetter::default()
                        });
                    }
                    None => done.problems.push(problem(format!(
                        "kuaidi100: still no trade for tracking number {:?}",
                        push.tracking_number
                    ))),
                }
                continue;
            }
            let Some(record) = letter.record.as_ref() else {
                done.problems.push(problem(
                    "the letter keeps no record (it died before records were kept, or while a \
                     newer version of its tid was in flight): replay or discard it"
                        .into(),
                ));
                continue;
            };
            let own_id = letter.scheme.split('@').next().unwrap_or_default();
            let scheme: Arc<Scheme> = match &forced {
                Some(scheme) => Arc::clone(scheme),
                None => match schemes.set.get(own_id) {
                    Some(scheme) => Arc::clone(scheme),
                    None => {
                        done.problems.push(problem(format!(
                            "its scheme {own_id:?} is not serving now: pass --scheme"
                        )));
                        continue;
                    }
                },
            };
            let mut item = RemappedLetter {
                letter: Some(key_of(&letter)),
                seq: letter.seq,
                record_id: letter.record_id.clone(),
                received_at_ms: letter.received_at_ms,
                record: letter.record.clone(),
                scheme: scheme.label(),
                ..RemappedLetter::default()
            };
            match map_record(record, 1, &scheme) {
                Err(r) => {
                    item.error = format!(
                        "re-mapped by {}: still invalid: {}: {}",
                        item.scheme, r.field, r.rule
                    );
                    done.problems.push(problem(item.error.clone()));
                }
                Ok(Mapped::Skipped { tid }) => {
                    let there = shard_of(&tid, shards.count());
                    if there != shard {
                        elsewhere.entry(there).or_default().push(RemappedLetter {
                            letter: None,
                            skipped: true,
                            skipped_tid: tid,
                            ..item.clone()
                        });
                        item.trades_elsewhere = true;
                    } else {
                        item.skipped = true;
                        item.skipped_tid = tid;
                    }
                }
                Ok(Mapped::Trades(mut trades)) => {
                    let connector = Transformer::trade_connector(&scheme);
                    for trade in &mut trades {
                        trade.connector = connector.to_owned();
                    }
                    let mut parts: BTreeMap<usize, Vec<_>> = BTreeMap::new();
                    for trade in trades {
                        parts
                            .entry(shard_of(&trade.tid, shards.count()))
                            .or_default()
                            .push(trade);
                    }
                    for (there, trades) in parts {
                        if there == shard {
                            item.trades = trades;
                        } else {
                            elsewhere.entry(there).or_default().push(RemappedLetter {
                                letter: None,
                                trades,
                                ..item.clone()
                            });
                            item.trades_elsewhere = true;
                        }
                    }
                }
            }
            local.entry(shard).or_default().push(item);
        }
        for (shard, items) in elsewhere.into_iter().chain(local) {
            for chunk in items.chunks(WRITE_CHUNK) {
                let answer = shards
                    .write_remapped(
                        shard,
                        WriteRemappedRequest {
                            letters: chunk.to_vec(),
                        },
                        authorization.clone(),
                    )
                    .await
                    .map_err(ProcessError::DeliverAdmin)?;
                add(&mut done, answer);
            }
        }
        tracing::info!(
            repaired = done.repaired,
            requeued = done.requeued,
            superseded = done.superseded,
            still_invalid = done.still_invalid,
            left = done.problems.len(),
            "dead letters re-mapped"
        );
        Ok(done)
    }

    /// Every letter `filter` matches, on every shard.
    async fn read_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<Held>, ProcessError> {
        let shards = self.shards();
        let mut held = Vec::new();
        for shard in 0..shards.count() {
            let mut page_token = String::new();
            loop {
                let page = shards
                    .list_dead_letters(
                        shard,
                        ListDeadLettersRequest {
                            filter: Some(filter.clone()),
                            limit: PAGE,
                            page_token,
                        },
                    )
                    .await
                    .map_err(ProcessError::DeliverAdmin)?;
                held.extend(
                    page.letters
                        .into_iter()
                        .map(|letter| Held { shard, letter }),
                );
                if page.next_page_token.is_empty() {
                    break;
                }
                page_token = page.next_page_token;
            }
        }
        Ok(held)
    }
}

/// Where a listed letter is, for `WriteRemapped`.
fn key_of(letter: &DeadLetter) -> DeadLetterKey {
    DeadLetterKey {
        tid: letter.tid.clone(),
        shop_no: letter.shop_no.clone(),
        connector: letter.connector.clone(),
        seq: letter.seq,
    }
}

/// Adds one shard's answer to the totals.
fn add(done: &mut RemapResponse, answer: WriteRemappedResponse) {
    done.repaired += answer.repaired;
    done.requeued += answer.requeued;
    done.superseded += answer.superseded;
    done.still_invalid += answer.still_invalid;
    done.gone += answer.gone;
    for tid in answer.tids {
        if !done.tids.contains(&tid) {
            done.tids.push(tid);
        }
    }
}
