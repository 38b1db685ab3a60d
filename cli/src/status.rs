//! `wdtpipe status TID` (or `--record RECORD_ID`, `--tracking NUMBER`): one order's whole
//! path, asked of every deliver shard: received by ingest, mapped by transform, written to
//! which shard's outbox, every attempt with WDT's answer, delivered or dead.

use crate::target::DeliverTarget;
use anyhow::Context;
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_common::{format_ms, format_when as when};
use wdtpipe_proto::v1::{
    DeliveryState, GetRecordRequest, GetStatusRequest, RecordInfo, TradeStatus,
};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The WDT tid (raw order number).
    #[arg(required_unless_present_any = ["record", "tracking"])]
    pub tid: Option<String>,
    /// Look up a source record by its record id instead (from the callback's receipt).
    #[arg(long, conflicts_with_all = ["tid", "tracking"])]
    pub record: Option<String>,
    /// Look up the order whose record carried this tracking number instead.
    #[arg(long, conflicts_with = "tid")]
    pub tracking: Option<String>,
    #[command(flatten)]
    pub target: DeliverTarget,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let mut trades: Vec<TradeStatus> = Vec::new();
    let mut records: Vec<RecordInfo> = Vec::new();
    for (url, mut client) in args.target.clients()? {
        let context = || format!("cannot ask deliver at {url}");
        if let Some(record_id) = &args.record {
            let answer = client
                .get_record(GetRecordRequest {
                    record_id: record_id.clone(),
                })
                .await
                .with_context(context)?
                .into_inner();
            records.extend(answer.record);
            trades.extend(answer.trades);
        } else {
            let answer = client
                .get_status(GetStatusRequest {
                    tid: args.tid.clone().unwrap_or_default(),
                    tracking_number: args.tracking.clone().unwrap_or_default(),
                })
                .await
                .with_context(context)?
                .into_inner();
            trades.extend(answer.trades);
        }
    }
    if args.json {
        let out = serde_json::json!({
            "records": records.iter().map(record_json).collect::<Vec<_>>(),
            "trades": trades.iter().map(status_json).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    if trades.is_empty() && records.is_empty() {
        let what = match (args.record, args.tracking) {
            (Some(record), _) => format!("record {record}"),
            (None, Some(number)) => format!("tracking number {number}"),
            (None, None) => format!("tid {}", args.tid.unwrap_or_default()),
        };
        println!(
            "{what}: unknown to deliver at {}",
            args.target.deliver.join(", ")
        );
        return Ok(());
    }
    for record in &records {
        print!("{}", render_record(record));
    }
    for trade in &trades {
        print!("{}", render(trade));
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match DeliveryState::try_from(state).unwrap_or(DeliveryState::Unspecified) {
        DeliveryState::Queued => "queued",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Dead => "dead",
        DeliveryState::Skipped => "skipped",
        DeliveryState::Unspecified => "unknown",
    }
}

/// A source record's path.
pub fn render_record(r: &RecordInfo) -> String {
    format!(
        "record {}\n  received by ingest  {}   (source {}, request {})\n  mapped by transform {}   (scheme {})\n  on disk at deliver  {}   (shard {})\n  trades              {}\n{}\n",
        r.record_id,
        when(r.received_at_ms),
        r.source,
        r.request_id,
        when(r.transformed_at_ms),
        wdtpipe_common::scheme_label(&r.scheme),
        when(r.enqueued_at_ms),
        r.shard,
        r.tids.join(", "),
        if r.traceparent.is_empty() {
            String::new()
        } else {
            format!("  traceparent         {}\n", r.traceparent)
        },
    )
}

/// A human-readable block for one tid in one shop: its path, then every attempt.
pub fn render(t: &TradeStatus) -> String {
    let mut out = format!(
        "tid {}  shop {}  state {}  (shard {})\n  path of the latest version (of {})\n    received by ingest  {}   (record {}, request {})\n    mapped by transform {}   (scheme {})\n    on disk at deliver  {}\n",
        t.tid,
        t.shop_no,
        state_name(t.state),
        t.shard,
        t.versions,
        when(t.received_at_ms),
        t.record_id,
        if t.request_id.is_empty() {
            "-"
        } else {
            &t.request_id
        },
        when(t.transformed_at_ms),
        wdtpipe_common::scheme_label(&t.scheme),
        when(t.enqueued_at_ms),
    );
    if t.delivered_at_ms > 0 {
        out.push_str(&format!(
            "    delivered           {}   (call's new_count {}, chg_count {})\n",
            when(t.delivered_at_ms),
            t.new_count,
            t.chg_count
        ));
    }
    if t.next_attempt_at_ms > 0 && t.state == DeliveryState::Retrying as i32 {
        out.push_str(&format!(
            "    next attempt        {}\n",
            when(t.next_attempt_at_ms)
        ));
    }
    if !t.last_error.is_empty() {
        let label = if t.state == DeliveryState::Dead as i32 {
            "dead because"
        } else if t.state == DeliveryState::Skipped as i32 {
            "not pushed"
        } else {
            "last error"
        };
        out.push_str(&format!("    {label:<19} {}\n", t.last_error));
    }
    if !t.storage_error.is_empty() {
        out.push_str(&format!("    OUTBOX CANNOT WRITE {}\n", t.storage_error));
    }
    if let Some(parcel) = &t.tracking {
        out.push_str(&format!(
            "    parcel              {} ({}): state {} at {}: {}\n    kuaidi100 push      {}: {}\n",
            parcel.number,
            parcel.carrier,
            parcel.state,
            parcel.event_time,
            parcel.event_context,
            format_ms(parcel.at_ms),
            parcel.outcome
        ));
    }
    if !t.shop_paused.is_empty() {
        out.push_str(&format!("    SHOP PAUSED         {}\n", t.shop_paused));
    }
    if !t.history.is_empty() {
        out.push_str(&format!(
            "  attempts ({} failed since the last success)\n",
            t.attempts
        ));
        for a in &t.history {
            let code = a.code.map(|c| format!(" code {c}")).unwrap_or_default();
            out.push_str(&format!(
                "    {}  {:<10} HTTP {}{}  {}\n",
                when(a.at_ms),
                a.outcome,
                a.http_status,
                code,
                a.message
            ));
        }
    }
    out
}

fn record_json(r: &RecordInfo) -> serde_json::Value {
    serde_json::json!({
        "record_id": r.record_id, "source": r.source, "request_id": r.request_id,
        "traceparent": r.traceparent, "received_at_ms": r.received_at_ms,
        "transformed_at_ms": r.transformed_at_ms, "enqueued_at_ms": r.enqueued_at_ms,
        "tids": r.tids, "shard": r.shard, "scheme": wdtpipe_common::scheme_label(&r.scheme),
    })
}

fn status_json(t: &TradeStatus) -> serde_json::Value {
    serde_json::json!({
        "tid": t.tid,
        "shop_no": t.shop_no,
        "shard": t.shard,
        "state": state_name(t.state),
        "record_id": t.record_id,
        "scheme": wdtpipe_common::scheme_label(&t.scheme),
        "request_id": t.request_id,
        "received_at_ms": t.received_at_ms,
        "transformed_at_ms": t.transformed_at_ms,
        "enqueued_at_ms": t.enqueued_at_ms,
        "versions": t.versions,
        "attempts": t.attempts,
        "last_error": t.last_error,
        "next_attempt_at_ms": t.next_attempt_at_ms,
        "delivered_at_ms": t.delivered_at_ms,
        "new_count": t.new_count,
        "chg_count": t.chg_count,
        "shop_paused": t.shop_paused,
        "storage_error": t.storage_error,
        "tracking": t.tracking.as_ref().map(|p| serde_json::json!({
            "number": p.number, "carrier": p.carrier, "state": p.state,
            "event_time": p.event_time, "event_context": p.event_context,
            "at_ms": p.at_ms, "outcome": p.outcome,
        })),
        "history": t.history.iter().map(|a| serde_json::json!({
            "at_ms": a.at_ms, "outcome": a.outcome, "http_status": a.http_status,
            "code": a.code, "message": a.message,
        })).collect::<Vec<_>>(),
        "pending_trade": t.trade.as_ref().map(trade_value),
    })
}
