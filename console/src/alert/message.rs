//! Rendering a batch of alert events as each kind of webhook wants it.
//!
//! - WeCom group robot: `{"msgtype":"markdown","markdown":{"content":…}}`, content at most
//!   4096 bytes.
//! - DingTalk custom robot: `{"msgtype":"markdown","markdown":{"title":…,"text":…}}`; its
//!   docs give no size limit for markdown, so the WeCom one (4096 bytes) is used.
//! - Feishu custom bot: `{"msg_type":"interactive","card":{header, elements: [markdown]}}`
//!   (a card's markdown element renders links), the whole body at most 20 KB; the sender
//!   adds `timestamp` and `sign` when signing.
//! - Generic JSON: `{"source":"wdtpipe","sent_at_ms":…,"events":[{"state":"firing"|
//!   "resolved","kind":"dead_letters"|"shop_paused"|"oldest_waiting","connector":…,
//!   "shop_no":…,"summary":…,"url":…,"since_ms":…,"at_ms":…,"lasted_ms":…(resolved),
//!   "reason":…,"count":…,"sample_tids":[…](dead letters),"age_ms":…,"threshold_ms":…
//!   (oldest waiting)}]}`.
//!
//! Text is Chinese and English side by side (operators are Chinese teams), every event links
//! to its console page, and a message over its robot's limit ends with "…and N more",
//! always cut on a UTF-8 boundary.

use super::AlertKind;
use super::WebhookKind;
use super::rules::{AlertEvent, Detail, EventState};
use serde_json::{Value, json};

/// WeCom: "markdown内容,最长不超过4096个字节".
pub(crate) const WECOM_CONTENT_BYTES: usize = 4096;
/// DingTalk: no documented limit for markdown text; the same as WeCom, to be safe.
pub(crate) const DINGTALK_TEXT_BYTES: usize = 4096;
/// Feishu: a request body of at most 20 KB; room is left for `timestamp` and `sign`.
pub(crate) const FEISHU_BODY_BYTES: usize = 20 * 1024 - 256;
/// A reason quoted in a message is cut to this many bytes (WDT's are a line or two).
const REASON_BYTES: usize = 300;
/// Room kept for the "…and N more" line.
const MORE_RESERVE: usize = 64;

/// A rendered message: the JSON body to post, before any signature is added.
#[derive(Debug, Clone)]
pub(crate) struct Rendered {
    pub(crate) body: Value,
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(crate) fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `text` cut to at most `max` bytes, ending in "…" when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut out = truncate_utf8(text, max.saturating_sub('…'.len_utf8())).to_owned();
    out.push('…');
    out
}

/// One line of untrusted text (a WDT reason, a shop number): no line breaks, bounded.
fn one_line(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    clip(flat.trim(), max)
}

/// `1h 2m`, `5m 3s`, `42s`.
pub(crate) fn duration_text(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) if s == 0 => format!("{m}m"),
        (0, _) => format!("{m}m {s}s"),
        _ if m == 0 => format!("{h}h"),
        _ => format!("{h}h {m}m"),
    }
}

fn lane_text(event: &AlertEvent) -> String {
    let shop = one_line(&event.shop_no, 64);
    if event.connector.is_empty() {
        format!("shop {shop}")
    } else {
        format!("shop {shop} (connector {})", one_line(&event.connector, 64))
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    serde_urlencoded::to_string(pairs).unwrap_or_default()
}

/// The console page an event links to.
pub(crate) fn link(console_url: &str, event: &AlertEvent) -> String {
    let base = console_url.trim_end_matches('/');
    let (shop, connector) = (event.shop_no.as_str(), event.connector.as_str());
    match (&event.kind, &event.detail) {
        (AlertKind::DeadLetters, Detail::DeadLetters { reason, .. }) if !reason.is_empty() => {
            let query = encode(&[("shop", shop), ("connector", connector), ("reason", reason)]);
            format!("{base}/dead-letters?{query}")
        }
        (AlertKind::DeadLetters, _) => {
            let query = encode(&[("shop", shop), ("connector", connector)]);
            format!("{base}/dead-letters?{query}")
        }
        (AlertKind::ShopPaused, _) => format!("{base}/shops"),
        (AlertKind::OldestWaiting, _) => {
            let query = if connector.is_empty() {
                encode(&[("shop", shop)])
            } else {
                encode(&[("shop", shop), ("connector", connector)])
            };
            format!("{base}/?{query}")
        }
    }
}

/// A one-line, plain-text summary of an event (status page, JSON webhook).
pub(crate) fn summary(event: &AlertEvent) -> String {
    let lane = lane_text(event);
    match (&event.state, &event.detail) {
        (EventState::Firing, Detail::DeadLetters { reason, count, .. }) => format!(
            "新死信 / new dead letters: {lane}: {count} × {}",
            one_line(reason, REASON_BYTES)
        ),
        (EventState::Resolved { .. }, Detail::DeadLetters { .. }) => {
            format!("死信已清空 / dead letters of {lane} cleared")
        }
        (EventState::Firing, Detail::Paused { reason }) => format!(
            "店铺暂停 / {lane} paused: {}",
            one_line(reason, REASON_BYTES)
        ),
        (EventState::Resolved { .. }, Detail::Paused { .. }) => {
            format!("店铺恢复 / {lane} resumed")
        }
        (
            EventState::Firing,
            Detail::OldestWaiting {
                age_ms,
                threshold_ms,
            },
        ) => format!(
            "积压 / oldest waiting trade of {lane}: {} (> {})",
            duration_text(*age_ms),
            duration_text(*threshold_ms)
        ),
        (EventState::Resolved { .. }, Detail::OldestWaiting { threshold_ms, .. }) => format!(
            "积压消除 / oldest waiting trade of {lane} back under {}",
            duration_text(*threshold_ms)
        ),
    }
}

/// Markdown dialects: DingTalk needs blank lines between lines, Feishu's card has its
/// title in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    WeCom,
    DingTalk,
    Feishu,
}

impl Flavor {
    fn line_break(self) -> &'static str {
        match self {
            Flavor::DingTalk => "\n\n",
            Flavor::WeCom | Flavor::Feishu => "\n",
        }
    }
}

fn counts(events: &[AlertEvent]) -> (usize, usize) {
    let firing = events
        .iter()
        .filter(|e| e.state == EventState::Firing)
        .count();
    (firing, events.len() - firing)
}

/// The title: what the message holds, at a glance.
pub(crate) fn title(events: &[AlertEvent]) -> String {
    match counts(events) {
        (0, resolved) => format!("【wdtpipe】{resolved} 项恢复 / resolved"),
        (firing, 0) => format!("【wdtpipe】{firing} 项告警 / alerts"),
        (firing, resolved) => {
            format!("【wdtpipe】{firing} 项告警 / alerts, {resolved} 项恢复 / resolved")
        }
    }
}

/// One event as a few markdown lines.
fn block(flavor: Flavor, console_url: &str, event: &AlertEvent) -> String {
    let br = flavor.line_break();
    let lane = lane_text(event);
    let url = link(console_url, event);
    let mut lines: Vec<String> = Vec::new();
    match (&event.state, &event.detail) {
        (
            EventState::Firing,
            Detail::DeadLetters {
                reason,
                count,
                sample_tids,
            },
        ) => {
            lines.push(format!(
                "**🔴 新死信 / new dead letters** · {lane} · {count} 条"
            ));
            lines.push(format!("原因 / reason: {}", one_line(reason, REASON_BYTES)));
            if !sample_tids.is_empty() {
                let tids: Vec<String> = sample_tids.iter().map(|t| one_line(t, 64)).collect();
                let more = if *count > tids.len() as u64 {
                    ", …"
                } else {
                    ""
                };
                lines.push(format!("样例 / tids: {}{more}", tids.join(", ")));
            }
        }
        (EventState::Firing, Detail::Paused { reason }) => {
            lines.push(format!("**⏸ 店铺暂停 / shop paused** · {lane}"));
            lines.push(format!("WDT: {}", one_line(reason, REASON_BYTES)));
        }
        (
            EventState::Firing,
            Detail::OldestWaiting {
                age_ms,
                threshold_ms,
            },
        ) => {
            lines.push(format!(
                "**⏳ 积压 / oldest waiting trade** · {lane} · 已等待 / waiting {} (> {})",
                duration_text(*age_ms),
                duration_text(*threshold_ms)
            ));
        }
        (EventState::Resolved { lasted_ms }, _) => {
            lines.push(format!(
                "**✅ 已恢复 / resolved** · {} · 持续 / lasted {}",
                summary(event),
                duration_text(*lasted_ms)
            ));
        }
    }
    lines.push(format!("[打开控制台 / open console]({url})"));
    lines.join(br)
}

/// The markdown of `events` in at most `limit` bytes.
fn markdown(flavor: Flavor, console_url: &str, events: &[AlertEvent], limit: usize) -> String {
    let br = flavor.line_break();
    let mut out = String::new();
    if flavor != Flavor::Feishu {
        out.push_str("### ");
        out.push_str(&title(events));
        out.push_str(br);
    }
    let at_ms = events.iter().map(|e| e.at_ms).max().unwrap_or_default();
    out.push_str(&format!("时间 / at: {}", wdtpipe_common::format_ms(at_ms)));
    // An event never takes more than half the room, so the first always fits.
    let block_max = limit.saturating_sub(out.len() + MORE_RESERVE) / 2;
    for (i, event) in events.iter().enumerate() {
        let text = clip(&block(flavor, console_url, event), block_max);
        let left_after = events.len() - i - 1;
        let reserve = if left_after > 0 { MORE_RESERVE } else { 0 };
        if out.len() + 2 * br.len() + text.len() + reserve > limit {
            out.push_str(br);
            out.push_str(br);
            out.push_str(&format!("…还有 {0} 项 / and {0} more", events.len() - i));
            break;
        }
        out.push_str(br);
        out.push_str(br);
        out.push_str(&text);
    }
    truncate_utf8(&out, limit).to_owned()
}

fn json_event(console_url: &str, event: &AlertEvent) -> Value {
    let mut value = json!({
        "state": match event.state {
            EventState::Firing => "firing",
            EventState::Resolved { .. } => "resolved",
        },
        "kind": event.kind.as_str(),
        "connector": event.connector,
        "shop_no": event.shop_no,
        "summary": summary(event),
        "url": link(console_url, event),
        "since_ms": event.since_ms,
        "at_ms": event.at_ms,
    });
    let object = value.as_object_mut().expect("a JSON object");
    if let EventState::Resolved { lasted_ms } = event.state {
        object.insert("lasted_ms".into(), lasted_ms.into());
    }
    match &event.detail {
        Detail::DeadLetters {
            reason,
            count,
            sample_tids,
        } => {
            object.insert("reason".into(), reason.as_str().into());
            object.insert("count".into(), (*count).into());
            object.insert("sample_tids".into(), sample_tids.clone().into());
        }
        Detail::Paused { reason } => {
            object.insert("reason".into(), reason.as_str().into());
        }
        Detail::OldestWaiting {
            age_ms,
            threshold_ms,
        } => {
            object.insert("age_ms".into(), (*age_ms).into());
            object.insert("threshold_ms".into(), (*threshold_ms).into());
        }
    }
    value
}

/// The message for `events` (at least one) to a webhook of `kind`, within its limits.
pub(crate) fn render(
    kind: WebhookKind,
    console_url: &str,
    events: &[AlertEvent],
    sent_at_ms: i64,
) -> Rendered {
    let body = match kind {
        WebhookKind::WeCom => json!({
            "msgtype": "markdown",
            "markdown": {
                "content": markdown(Flavor::WeCom, console_url, events, WECOM_CONTENT_BYTES),
            },
        }),
        WebhookKind::DingTalk => json!({
            "msgtype": "markdown",
            "markdown": {
                "title": title(events),
                "text": markdown(Flavor::DingTalk, console_url, events, DINGTALK_TEXT_BYTES),
            },
        }),
        WebhookKind::Feishu => feishu(console_url, events),
        WebhookKind::Json => json!({
            "source": "wdtpipe",
            "sent_at_ms": sent_at_ms,
            "events": events
                .iter()
                .map(|e| json_event(console_url, e))
                .collect::<Vec<_>>(),
        }),
    };
    Rendered { body }
}

fn feishu(console_url: &str, events: &[AlertEvent]) -> Value {
    let template = if events.iter().any(|e| e.state == EventState::Firing) {
        "red"
    } else {
        "green"
    };
    let card = |content: String| {
        json!({
            "msg_type": "interactive",
            "card": {
                "config": { "wide_screen_mode": true },
                "header": {
                    "template": template,
                    "title": { "tag": "plain_text", "content": title(events) },
                },
                "elements": [ { "tag": "markdown", "content": content } ],
            },
        })
    };
    // JSON escaping can make the body longer than the markdown: shrink until it fits.
    let mut limit = FEISHU_BODY_BYTES - 512;
    loop {
        let body = card(markdown(Flavor::Feishu, console_url, events, limit));
        let size = body.to_string().len();
        if size <= FEISHU_BODY_BYTES || limit < 1024 {
            return body;
        }
        limit = limit.saturating_sub(size - FEISHU_BODY_BYTES + 256);
    }
}
