//! `/orders/{tid}`: an order's whole path as `wdtpipe status` shows it (received, mapped
//! by `scheme@version`, on disk at which shard, every attempt with WDT's answer, delivered
//! or dead), the trade as pushed, and a plain answer to "why is this order not in WDT
//! yet?".

use crate::html::{clock, esc, url_part, when};
use crate::i18n::Lang;
use crate::sampler::Lane;
use std::fmt::Write as _;
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_proto::v1::{DeadLetter, DeliveryState, TradeStatus};

/// Everything found about one tid.
#[derive(Debug, Default)]
pub(crate) struct Found {
    pub(crate) trades: Vec<TradeStatus>,
    pub(crate) letters: Vec<DeadLetter>,
    /// Shards that could not be asked, with why.
    pub(crate) unreachable: Vec<String>,
}

fn state(lang: Lang, state: i32) -> &'static str {
    let (en, zh) = match DeliveryState::try_from(state).unwrap_or(DeliveryState::Unspecified) {
        DeliveryState::Queued => ("queued", "排队中"),
        DeliveryState::Retrying => ("retrying", "重试中"),
        DeliveryState::Delivered => ("delivered", "已送达"),
        DeliveryState::Dead => ("dead", "死信"),
        DeliveryState::Skipped => ("skipped", "已跳过"),
        DeliveryState::Unspecified => ("unknown", "未知"),
    };
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// The plain answer to "why is this order not in WDT yet?" for one trade; `lane` is its
/// shop's line of the overview, when the console has it.
pub(crate) fn why(lang: Lang, t: &TradeStatus, lane: Option<&Lane>) -> String {
    let zh = lang == Lang::Zh;
    let last = t.history.last();
    let answer = last.map(|a| {
        let mut text = if a.http_status > 0 {
            format!("HTTP {}", a.http_status)
        } else {
            String::new()
        };
        if let Some(code) = a.code {
            let _ = write!(text, " code {code}");
        }
        if !a.message.is_empty() {
            let _ = write!(text, " {}", a.message);
        }
        text.trim().to_owned()
    });
    match DeliveryState::try_from(t.state).unwrap_or(DeliveryState::Unspecified) {
        DeliveryState::Delivered if zh => format!(
            "已在旺店通：{} 推送成功（新建 {}，更新 {}）。",
            when(t.delivered_at_ms),
            t.new_count,
            t.chg_count
        ),
        DeliveryState::Delivered => format!(
            "It is in WDT: delivered at {} (new {}, changed {}).",
            when(t.delivered_at_ms),
            t.new_count,
            t.chg_count
        ),
        DeliveryState::Skipped if zh => format!(
            "不会推送：方案 {} 跳过了这条记录（{}）。",
            wdtpipe_common::scheme_label(&t.scheme),
            t.last_error
        ),
        DeliveryState::Skipped => format!(
            "Not pushed: scheme {} skips this record ({}).",
            wdtpipe_common::scheme_label(&t.scheme),
            t.last_error
        ),
        DeliveryState::Dead if zh => {
            format!("死信：{}。修正后可在死信页重放或重新映射。", t.last_error)
        }
        DeliveryState::Dead => format!(
            "Dead: {}. Replay or re-map it from the dead-letters page once the cause is fixed.",
            t.last_error
        ),
        _ if !t.storage_error.is_empty() && zh => format!(
            "等待中：分片 {} 的发件箱无法写入（{}），恢复后自动继续。",
            t.shard, t.storage_error
        ),
        _ if !t.storage_error.is_empty() => format!(
            "waiting: shard {} cannot write its outbox ({}); it goes on by itself once writes succeed.",
            t.shard, t.storage_error
        ),
        _ if !t.shop_paused.is_empty() => {
            let (since, next) = lane.map_or(("-".into(), "-".into()), |l| {
                (
                    clock(l.stats.paused_since_ms),
                    clock(l.stats.next_probe_at_ms),
                )
            });
            if zh {
                format!(
                    "等待中：店铺 {} 自 {since} 起暂停，因为旺店通应答“{}”；下次探测 {next}。",
                    t.shop_no, t.shop_paused
                )
            } else {
                format!(
                    "waiting: shop {} is paused since {since} because WDT answered {}; next probe {next}.",
                    t.shop_no, t.shop_paused
                )
            }
        }
        DeliveryState::Retrying => {
            let answer = answer.unwrap_or_else(|| t.last_error.clone());
            if zh {
                format!(
                    "重试中：第 {} 次尝试在 {}，上次失败：{answer}。",
                    t.attempts + 1,
                    clock(t.next_attempt_at_ms)
                )
            } else {
                format!(
                    "retrying: attempt {} at {} after {answer}.",
                    t.attempts + 1,
                    clock(t.next_attempt_at_ms)
                )
            }
        }
        _ => {
            let (queued, in_flight) = lane.map_or((0, 0), |l| {
                (l.stats.queued + l.stats.retrying, l.stats.in_flight)
            });
            if zh {
                format!(
                    "排队中：店铺 {} 有 {queued} 单等待、{in_flight} 单正在推送，马上轮到它。",
                    t.shop_no
                )
            } else {
                format!(
                    "waiting its turn: shop {} has {queued} trades waiting and {in_flight} being pushed now.",
                    t.shop_no
                )
            }
        }
    }
}

/// The page body for `tid`.
pub(crate) fn render(lang: Lang, tid: &str, found: &Found, lanes: &[Lane]) -> String {
    let t = |k| lang.t(k);
    let mut out = String::new();
    for problem in &found.unreachable {
        let _ = write!(out, "<p class=\"bad\">{}</p>", esc(problem));
    }
    if found.trades.is_empty() && found.letters.is_empty() {
        let text = match lang {
            Lang::Zh => {
                "没有任何 deliver 分片知道这个订单号：回调可能被 ingest 拒绝（422），或从未到达。"
            }
            Lang::En => {
                "No deliver shard knows this tid: ingest may have refused its callback (422), or it never arrived."
            }
        };
        let _ = write!(out, "<p class=\"why\">{}</p>", text);
        return out;
    }
    for trade in &found.trades {
        let lane = lanes
            .iter()
            .find(|l| l.stats.shop_no == trade.shop_no && l.stats.connector == trade.connector);
        let _ = write!(
            out,
            "<section class=\"trade\"><h2>{} <code>{}</code> · {} <code>{}</code> · <span class=\"state s{}\">{}</span></h2>",
            t("tid"),
            esc(&trade.tid),
            t("shop"),
            esc(&trade.shop_no),
            trade.state,
            state(lang, trade.state)
        );
        let _ = write!(
            out,
            "<p class=\"why\"><strong>{}</strong> {}</p>",
            t("why"),
            esc(&why(lang, trade, lane))
        );
        let _ = write!(
            out,
            "<h3>{}</h3><table class=\"path\"><tr><th>{}</th><td>{}</td><td>record <code>{}</code>, request <code>{}</code></td></tr><tr><th>{}</th><td>{}</td><td>{} <code>{}</code></td></tr><tr><th>{}</th><td>{}</td><td>{} <code>{}</code>, {} {}</td></tr>",
            t("path"),
            t("received"),
            when(trade.received_at_ms),
            esc(&trade.record_id),
            esc(&trade.request_id),
            t("mapped"),
            when(trade.transformed_at_ms),
            t("scheme"),
            esc(wdtpipe_common::scheme_label(&trade.scheme)),
            t("on_disk"),
            when(trade.enqueued_at_ms),
            t("shard"),
            esc(&trade.shard),
            t("connector"),
            esc(if trade.connector.is_empty() {
                "default"
            } else {
                &trade.connector
            }),
        );
        if trade.delivered_at_ms > 0 {
            let _ = write!(
                out,
                "<tr><th>{}</th><td>{}</td><td>new_count {}, chg_count {}</td></tr>",
                state(lang, DeliveryState::Delivered as i32),
                when(trade.delivered_at_ms),
                trade.new_count,
                trade.chg_count
            );
        }
        out.push_str("</table>");
        if let Some(parcel) = &trade.tracking {
            let _ = write!(
                out,
                "<h3>{}</h3><p>{} ({}) · state {} · {} · {}<br><small>{} · {}</small></p>",
                t("tracking"),
                esc(&parcel.number),
                esc(&parcel.carrier),
                esc(&parcel.state),
                esc(&parcel.event_time),
                esc(&parcel.event_context),
                when(parcel.at_ms),
                esc(&parcel.outcome)
            );
        }
        out.push_str(&attempts(lang, &trade.history));
        if let Some(pushed) = trade.trade.as_ref().or(trade.delivered_trade.as_ref()) {
            out.push_str(&trade_block(lang, pushed));
        }
        out.push_str("</section>");
    }
    for letter in &found.letters {
        let _ = write!(
            out,
            "<section class=\"letter\"><h2>{} · {} <code>{}</code> · {}</h2><p class=\"bad\">{}</p><p><a href=\"/dead-letters?tid={}\">{} →</a></p>",
            t("dead_letters"),
            t("shop"),
            esc(&letter.shop_no),
            when(letter.dead_at_ms),
            esc(&letter.reason),
            url_part(&letter.tid),
            t("dead_letters"),
        );
        out.push_str(&attempts(lang, &letter.history));
        if let Some(pushed) = &letter.trade {
            out.push_str(&trade_block(lang, pushed));
        }
        out.push_str("</section>");
    }
    let _ = tid;
    out
}

fn attempts(lang: Lang, history: &[wdtpipe_proto::v1::Attempt]) -> String {
    if history.is_empty() {
        return String::new();
    }
    let t = |k| lang.t(k);
    let mut rows = String::new();
    for a in history {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(a.at_ms),
            esc(&a.outcome),
            if a.http_status > 0 {
                a.http_status.to_string()
            } else {
                "-".into()
            },
            a.code.map_or("-".into(), |c| c.to_string()),
            esc(&a.message)
        );
    }
    format!(
        "<h3>{}</h3><table class=\"attempts\"><thead><tr><th>{}</th><th>{}</th><th>HTTP</th><th>code</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
        t("attempts"),
        t("at"),
        t("outcome"),
        t("answer")
    )
}

fn trade_block(lang: Lang, trade: &wdtpipe_proto::v1::TradeOrder) -> String {
    let json = serde_json::to_string_pretty(&trade_value(trade)).unwrap_or_default();
    format!(
        "<details open><summary>{}</summary><pre class=\"trade-json\">{}</pre></details>",
        lang.t("trade_pushed"),
        esc(&json)
    )
}
