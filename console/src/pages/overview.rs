//! `/`: per WDT account and shop, the queue, deliveries and dead letters; per scheme, the
//! records per minute; the health of every stage and shard; the alerts firing. Its `live`
//! section is what the event stream re-renders on every tick.

use crate::html::{age, clock, esc, sparkline, url_part};
use crate::i18n::Lang;
use crate::sampler::Snapshot;
use std::fmt::Write as _;

/// The live part of the overview, narrowed to one shop when `shop` is set.
pub(crate) fn live(lang: Lang, snapshot: &Snapshot, alerts: &str, shop: Option<&str>) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<p class=\"stamp\">#{} · {}</p>",
        snapshot.seq,
        clock(snapshot.at_ms)
    );
    out.push_str(alerts);
    out.push_str(&lanes(lang, snapshot, shop));
    out.push_str(&schemes(lang, snapshot));
    out.push_str(&health(lang, snapshot));
    out
}

fn lanes(lang: Lang, snapshot: &Snapshot, shop: Option<&str>) -> String {
    let t = |k| lang.t(k);
    let mut rows = String::new();
    let mut totals = [0u64; 4];
    for lane in snapshot
        .lanes
        .iter()
        .filter(|l| shop.is_none_or(|s| l.stats.shop_no == s))
    {
        let s = &lane.stats;
        totals[0] += s.queued;
        totals[1] += s.in_flight;
        totals[2] += s.retrying;
        totals[3] += s.dead_letters;
        let paused = if s.paused_reason.is_empty() {
            String::new()
        } else {
            format!(
                "<span class=\"bad\">{}</span> {}<br><small>{} {} · {} {}</small>",
                t("paused"),
                esc(&s.paused_reason),
                t("since"),
                clock(s.paused_since_ms),
                t("next_probe"),
                clock(s.next_probe_at_ms)
            )
        };
        let dead = if s.dead_letters > 0 {
            format!(
                "<a class=\"bad\" href=\"/dead-letters?shop={}&amp;connector={}\">{}</a>",
                url_part(&s.shop_no),
                url_part(lane.connector()),
                s.dead_letters
            )
        } else {
            "0".to_owned()
        };
        let _ = write!(
            rows,
            "<tr data-shop=\"{shop}\"><td>{connector}</td><td>{shop}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{dead}</td><td>{paused}</td><td>{}</td></tr>",
            s.queued,
            s.in_flight,
            s.retrying,
            if s.oldest_age_ms > 0 {
                age(s.oldest_age_ms)
            } else {
                "-".into()
            },
            s.delivered_last_minute,
            sparkline(&lane.delivered_by_minute),
            esc(&lane.shard),
            connector = esc(lane.connector()),
            shop = esc(&s.shop_no),
        );
    }
    if rows.is_empty() {
        return format!(
            "<h2>{}</h2><p class=\"empty\">{}</p>",
            t("shops"),
            t("no_shops")
        );
    }
    let head: String = [
        "connector",
        "shop",
        "queued",
        "in_flight",
        "retrying",
        "oldest",
        "delivered_min",
        "last_hour",
        "dead_letters",
        "paused",
        "shard",
    ]
    .iter()
    .map(|key| format!("<th>{}</th>", t(key)))
    .collect();
    format!(
        "<h2>{}</h2><table class=\"lanes\"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody><tfoot><tr><td colspan=\"2\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td colspan=\"3\"></td><td class=\"num\">{}</td><td colspan=\"2\"></td></tr></tfoot></table>",
        t("shops"),
        t("total"),
        totals[0],
        totals[1],
        totals[2],
        totals[3],
    )
}

fn schemes(lang: Lang, snapshot: &Snapshot) -> String {
    let t = |k| lang.t(k);
    let Some(schemes) = &snapshot.schemes else {
        return format!(
            "<h2>{}</h2><p class=\"bad\">{}</p>",
            t("schemes"),
            esc(&snapshot.schemes_error)
        );
    };
    let mut rows = String::new();
    for scheme in &schemes.schemes {
        let rates = snapshot
            .scheme_rates
            .get(&scheme.id)
            .cloned()
            .unwrap_or_default();
        let _ = write!(
            rows,
            "<tr><td><a href=\"/schemes#{id}\">{id}@{version}</a></td><td>{}</td><td class=\"num\">{}</td><td class=\"num{}\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&scheme.source),
            rates.accepted,
            if rates.rejected > 0 { " bad" } else { "" },
            rates.rejected,
            rates.skipped,
            sparkline(&rates.accepted_by_minute),
            id = esc(&scheme.id),
            version = esc(&scheme.version),
        );
    }
    format!(
        "<h2>{}</h2><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
        t("schemes"),
        t("scheme"),
        t("source"),
        t("accepted_min"),
        t("rejected_min"),
        t("skipped_min"),
        t("last_hour"),
    )
}

fn health(lang: Lang, snapshot: &Snapshot) -> String {
    let t = |k| lang.t(k);
    let mut rows = String::new();
    for check in &snapshot.health {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"{}\">{}</td><td></td></tr>",
            esc(&check.name),
            esc(&check.url),
            if check.ok { "ok" } else { "bad" },
            esc(&check.state)
        );
    }
    for shard in &snapshot.shards {
        let (name, state, ok) = match &shard.stats {
            Some(stats) if stats.storage_error.is_empty() => (
                stats.shard.clone(),
                format!(
                    "{} · {} {} MiB · {} {}",
                    t("writable"),
                    t("free"),
                    stats.free_bytes / (1024 * 1024),
                    stats.queued_trades,
                    t("queued")
                ),
                true,
            ),
            Some(stats) => (
                stats.shard.clone(),
                format!(
                    "{} ({} {})",
                    stats.storage_error,
                    t("since"),
                    clock(stats.storage_error_since_ms)
                ),
                false,
            ),
            None => (String::new(), shard.error.clone(), false),
        };
        let _ = write!(
            rows,
            "<tr><td>{} {}</td><td><code>{}</code></td><td class=\"{}\">{}</td><td></td></tr>",
            t("storage"),
            esc(&name),
            esc(&shard.url),
            if ok { "ok" } else { "bad" },
            esc(&state)
        );
    }
    format!(
        "<h2>{}</h2><table><thead><tr><th>{}</th><th>URL</th><th>{}</th><th></th></tr></thead><tbody>{rows}</tbody></table>",
        t("health"),
        t("service"),
        t("state"),
    )
}

/// The alerts firing now and each webhook's counts (nothing when alerts are off).
pub(crate) fn alerts(lang: Lang, status: &crate::alert::AlertStatus) -> String {
    if !status.enabled {
        return String::new();
    }
    let t = |k| lang.t(k);
    let mut out = format!("<h2>{}</h2>", t("alerts"));
    if status.firing.is_empty() {
        let _ = write!(out, "<p class=\"ok\">{}: {}</p>", t("firing"), t("none"));
    } else {
        out.push_str("<ul class=\"firing\">");
        for alert in &status.firing {
            let _ = write!(
                out,
                "<li class=\"bad\">{} · {} · {} <small>({} {})</small></li>",
                esc(alert.kind.as_str()),
                esc(&alert.shop_no),
                esc(&alert.summary),
                t("since"),
                clock(alert.since_ms)
            );
        }
        out.push_str("</ul>");
    }
    let mut rows = String::new();
    for hook in &status.webhooks {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(&hook.name),
            esc(&hook.host),
            hook.sent,
            hook.failed,
            hook.pending,
            esc(hook.last_error.as_deref().unwrap_or("")),
        );
    }
    let _ = write!(
        out,
        "<table class=\"webhooks\"><thead><tr><th>{}</th><th>host</th><th>{}</th><th>{}</th><th>…</th><th></th></tr></thead><tbody>{rows}</tbody></table>",
        t("webhook"),
        t("sent"),
        t("failed"),
    );
    out
}
