//! `/shops`: every shop by WDT account, paused ones first with WDT's answer verbatim,
//! since when and the next probe, and a **resume now** button (an action: login needed).

use crate::html::{age, clock, esc};
use crate::i18n::Lang;
use crate::sampler::Snapshot;
use std::fmt::Write as _;

/// The live part of the shops page.
pub(crate) fn live(lang: Lang, snapshot: &Snapshot, logged_in: bool) -> String {
    let t = |k| lang.t(k);
    let mut lanes: Vec<_> = snapshot.lanes.iter().collect();
    lanes.sort_by_key(|l| {
        (
            l.stats.paused_reason.is_empty(),
            l.connector().to_owned(),
            l.stats.shop_no.clone(),
        )
    });
    let mut rows = String::new();
    for lane in lanes {
        let s = &lane.stats;
        let paused = !s.paused_reason.is_empty();
        let action = if logged_in {
            format!(
                "<form method=\"post\" action=\"/shops/resume\" class=\"inline\"><input type=\"hidden\" name=\"shop\" value=\"{}\"><input type=\"hidden\" name=\"connector\" value=\"{}\"><button class=\"resume\">{}</button></form>",
                esc(&s.shop_no),
                esc(lane.connector()),
                t("resume")
            )
        } else {
            format!("<small>{}</small>", t("login_needed"))
        };
        let _ = write!(
            rows,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            if paused { "paused" } else { "" },
            esc(lane.connector()),
            esc(&s.shop_no),
            if paused {
                esc(&s.paused_reason)
            } else {
                "-".into()
            },
            if paused {
                clock(s.paused_since_ms)
            } else {
                "-".into()
            },
            if paused {
                clock(s.next_probe_at_ms)
            } else {
                "-".into()
            },
            s.queued + s.retrying,
            s.dead_letters,
            if s.oldest_age_ms > 0 {
                age(s.oldest_age_ms)
            } else {
                "-".into()
            },
            if paused || s.retrying > 0 {
                action
            } else {
                String::new()
            },
        );
    }
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", t("no_shops"));
    }
    format!(
        "<p class=\"stamp\">#{} · {}</p><table class=\"shops\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th></th></tr></thead><tbody>{rows}</tbody></table>",
        snapshot.seq,
        clock(snapshot.at_ms),
        t("connector"),
        t("shop"),
        t("paused"),
        t("since"),
        t("next_probe"),
        t("queued"),
        t("dead_letters"),
        t("oldest"),
    )
}
