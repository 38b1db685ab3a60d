//! `wdtpipe status TID`: where one tid stands in deliver.

use crate::target::DeliverTarget;
use anyhow::Context;
use wdtpipe_common::format_ms;
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_proto::v1::{DeliveryState, GetStatusRequest, TradeStatus};

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The WDT tid (raw order number).
    pub tid: String,
    #[command(flatten)]
    pub target: DeliverTarget,
    /// Print the answer as JSON.
    #[arg(long)]
    pub json: bool,
}

pub async fn run(args: StatusArgs) -> anyhow::Result<()> {
    let answer = args
        .target
        .client()?
        .get_status(GetStatusRequest {
            tid: args.tid.clone(),
        })
        .await
        .with_context(|| format!("cannot ask deliver at {}", args.target.deliver))?
        .into_inner();
    if args.json {
        let trades: Vec<serde_json::Value> = answer.trades.iter().map(status_json).collect();
        println!("{}", serde_json::to_string_pretty(&trades)?);
    } else if answer.trades.is_empty() {
        println!(
            "tid {}: unknown to deliver at {}",
            args.tid, args.target.deliver
        );
    } else {
        for trade in &answer.trades {
            print!("{}", render(trade));
        }
    }
    Ok(())
}

fn state_name(state: i32) -> &'static str {
    match DeliveryState::try_from(state).unwrap_or(DeliveryState::Unspecified) {
        DeliveryState::Queued => "queued",
        DeliveryState::Retrying => "retrying",
        DeliveryState::Delivered => "delivered",
        DeliveryState::Dead => "dead",
        DeliveryState::Unspecified => "unknown",
    }
}

fn when(ms: i64) -> String {
    if ms > 0 {
        format_ms(ms)
    } else {
        "-".to_owned()
    }
}

/// A human-readable block for one tid in one shop.
pub fn render(t: &TradeStatus) -> String {
    let mut out = format!(
        "tid {}  shop {}  state {}\n  record    {}\n  received  {}\n  versions  {}\n",
        t.tid,
        t.shop_no,
        state_name(t.state),
        t.record_id,
        when(t.received_at_ms),
        t.versions,
    );
    if t.delivered_at_ms > 0 {
        out.push_str(&format!(
            "  delivered {} (new_count {}, chg_count {})\n",
            when(t.delivered_at_ms),
            t.new_count,
            t.chg_count
        ));
    }
    if t.next_attempt_at_ms > 0 {
        out.push_str(&format!("  next try  {}\n", when(t.next_attempt_at_ms)));
    }
    if !t.last_error.is_empty() {
        out.push_str(&format!("  error     {}\n", t.last_error));
    }
    if !t.shop_paused.is_empty() {
        out.push_str(&format!("  PAUSED    {}\n", t.shop_paused));
    }
    if !t.history.is_empty() {
        out.push_str(&format!("  attempts ({} since last success)\n", t.attempts));
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

fn status_json(t: &TradeStatus) -> serde_json::Value {
    serde_json::json!({
        "tid": t.tid,
        "shop_no": t.shop_no,
        "state": state_name(t.state),
        "record_id": t.record_id,
        "received_at_ms": t.received_at_ms,
        "versions": t.versions,
        "attempts": t.attempts,
        "last_error": t.last_error,
        "next_attempt_at_ms": t.next_attempt_at_ms,
        "delivered_at_ms": t.delivered_at_ms,
        "new_count": t.new_count,
        "chg_count": t.chg_count,
        "shop_paused": t.shop_paused,
        "history": t.history.iter().map(|a| serde_json::json!({
            "at_ms": a.at_ms, "outcome": a.outcome, "http_status": a.http_status,
            "code": a.code, "message": a.message,
        })).collect::<Vec<_>>(),
        "pending_trade": t.trade.as_ref().map(trade_value),
    })
}
