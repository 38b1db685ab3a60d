//! kuaidi100 pushes for a `source = "kuaidi100"` scheme (`Transform.Track`): the sign
//! checked over the raw `param` text, `param` read in full, the order found and the push
//! written on its deliver shard (SCHEMES.md, "The kuaidi100 source").
//!
//! The order is the tid the callback URL names; else the shard that indexed the tracking
//! number takes it (each shard is asked in turn, and answers `unknown` without writing when
//! it has no trade for the number); else the push is kept as a dead letter on the
//! number's shard. Once the order has come, `dlq replay` applies it when the order is on
//! that shard, and `dlq remap` (`Transform.Remap`) looks the number up on every shard.

use crate::error::ProcessError;
use crate::pipeline::Transformer;
use crate::scheme::Source;
use crate::shard::shard_of;
use wdtpipe_common::{kuaidi100, now_ms, sign::md5_hex};
use wdtpipe_proto::v1::{TrackRequest, TrackResponse, TrackResult, TrackWrite};

impl Transformer {
    /// One kuaidi100 push (see the module).
    pub(crate) async fn track(&self, request: TrackRequest) -> Result<TrackResponse, ProcessError> {
        let scheme = self.scheme(&request.scheme)?;
        let metrics = self.metrics();
        let refuse = |result: &str, error: ProcessError| {
            metrics.kuaidi100(&scheme.id, result);
            Err(error)
        };
        let Some(options) = scheme
            .kuaidi100
            .as_ref()
            .filter(|_| scheme.source == Source::Kuaidi100)
        else {
            return refuse(
                "refused",
                ProcessError::WrongSource(format!(
                    "scheme {:?} takes JSON stockout records, not kuaidi100 pushes",
                    scheme.id
                )),
            );
        };
        if let Some(salt) = &options.salt
            && !kuaidi100::verify(&request.param, salt.expose(), &request.sign)
        {
            let why = if request.sign.is_empty() {
                "the push is not signed (sign is missing)"
            } else {
                "sign mismatch: sign must be UPPER(md5(param + salt))"
            };
            return refuse("refused_sign", ProcessError::BadSign(why.into()));
        }
        let push = match kuaidi100::parse(&request.param) {
            Ok(push) => push,
            Err(error) => return refuse("refused", ProcessError::BadRequest(error.to_string())),
        };
        let result = push.last_result.unwrap_or_default();
        let tid = request.tid.trim().to_owned();
        if tid.is_empty() && result.nu.is_empty() {
            return refuse(
                "refused",
                ProcessError::BadRequest(
                    "the push names no tracking number (lastResult.nu) and the URL no tid".into(),
                ),
            );
        }
        let newest = result.data.first().cloned().unwrap_or_default();
        let write = TrackWrite {
            push_id: md5_hex(request.param.as_bytes()),
            tid: tid.clone(),
            tracking_number: result.nu.clone(),
            carrier: result.com.clone(),
            sign_off: options.states.contains(&result.state),
            state: result.state,
            event_time: if newest.ftime.is_empty() {
                newest.time
            } else {
                newest.ftime
            },
            event_context: newest.context,
            trade_status: options.trade_status,
            scheme: scheme.label(),
            connector: Transformer::trade_connector(&scheme).to_owned(),
            received_at_ms: if request.received_at_ms > 0 {
                request.received_at_ms
            } else {
                now_ms()
            },
            request_id: request.request_id,
            dead_if_unknown: !tid.is_empty(),
        };
        let answer = match self.write_track(write.clone()).await? {
            Some(answer) => answer,
            None => {
                // No shard knows the number: a dead letter on the number's shard.
                let shards = self.shards();
                let shard = shard_of(&write.tracking_number, shards.count());
                let write = TrackWrite {
                    dead_if_unknown: true,
                    ..write
                };
                shards
                    .track(shard, write)
                    .await
                    .map_err(ProcessError::Deliver)?
            }
        };
        let result = match answer.outcome.as_str() {
            "pushed" => "accepted",
            other => other,
        };
        metrics.kuaidi100(&scheme.id, result);
        Ok(TrackResponse {
            outcome: answer.outcome,
            tid: answer.tid,
            message: answer.message,
        })
    }
    /// Writes a push on the shard of the order it names, or on the shard that indexed its
    /// tracking number; `None` when no shard knows it (nothing written). A push naming a
    /// tid goes to that tid's shard as it is (with `dead_if_unknown`, kept there as a dead
    /// letter if the tid is unknown).
    pub(crate) async fn write_track(
        &self,
        write: TrackWrite,
    ) -> Result<Option<TrackResult>, ProcessError> {
        let shards = self.shards();
        if !write.tid.is_empty() {
            let shard = shard_of(&write.tid, shards.count());
            let answer = shards
                .track(shard, write)
                .await
                .map_err(ProcessError::Deliver)?;
            return Ok((answer.outcome != "unknown").then_some(answer));
        }
        for shard in 0..shards.count() {
            let answer = shards
                .track(shard, write.clone())
                .await
                .map_err(ProcessError::Deliver)?;
            if answer.outcome != "unknown" {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }
}
