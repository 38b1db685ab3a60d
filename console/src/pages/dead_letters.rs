//! `/dead-letters`: filter by WDT account, shop, scheme, reason text, tid and time; the
//! matching letters grouped by reason with counts; a page of letters to select from; and
//! **replay**, **remap** or **discard** of the selected letters or of all matching ones,
//! always through a dry run (see [`crate::actions`]).

use crate::actions::{Action, Plan};
use crate::html::{esc, url_part, when};
use crate::i18n::Lang;
use serde::Deserialize;
use std::fmt::Write as _;
use wdtpipe_proto::v1::DeadLetter;

/// The filter as the page's form and links carry it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Query {
    pub(crate) tid: String,
    pub(crate) shop: String,
    pub(crate) connector: String,
    pub(crate) scheme: String,
    pub(crate) reason: String,
    /// `datetime-local` values, China time.
    pub(crate) since: String,
    pub(crate) until: String,
    /// Each shard's page token, `,`-separated, in shard order.
    pub(crate) page: String,
}

impl Query {
    /// The query string of this filter (without the page).
    pub(crate) fn link(&self) -> String {
        let mut parts = Vec::new();
        for (name, value) in [
            ("tid", &self.tid),
            ("shop", &self.shop),
            ("connector", &self.connector),
            ("scheme", &self.scheme),
            ("reason", &self.reason),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.is_empty() {
                parts.push(format!("{name}={}", url_part(value)));
            }
        }
        parts.join("&")
    }
}

/// One page of letters from every shard, merged newest first.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    /// (shard index, letter).
    pub(crate) letters: Vec<(usize, DeadLetter)>,
    pub(crate) total: u64,
    pub(crate) reasons: Vec<(String, u64)>,
    /// The `page` value of the next page; empty on the last.
    pub(crate) next_page: String,
    pub(crate) problems: Vec<String>,
}

/// A letter's checkbox value: shard, tid, shop, account and version.
pub(crate) fn key_value(shard: usize, letter: &DeadLetter) -> String {
    [
        shard.to_string(),
        url_part(&letter.tid),
        url_part(&letter.shop_no),
        url_part(&letter.connector),
        letter.seq.to_string(),
    ]
    .join("|")
}

fn input(name: &str, label: &str, value: &str, kind: &str) -> String {
    format!(
        "<label>{label} <input type=\"{kind}\" name=\"{name}\" value=\"{}\"></label>",
        esc(value)
    )
}

/// The page body.
pub(crate) fn render(lang: Lang, query: &Query, listing: &Listing, logged_in: bool) -> String {
    let t = |k| lang.t(k);
    let mut out = String::new();
    let _ = write!(
        out,
        "<form class=\"filter\" method=\"get\" action=\"/dead-letters\">{}{}{}{}{}{}{}<button>{}</button></form>",
        input("connector", t("connector"), &query.connector, "text"),
        input("shop", t("shop"), &query.shop, "text"),
        input("scheme", t("scheme"), &query.scheme, "text"),
        input("reason", t("reason"), &query.reason, "text"),
        input("tid", t("tid"), &query.tid, "text"),
        input("since", t("since"), &query.since, "datetime-local"),
        input("until", t("until"), &query.until, "datetime-local"),
        t("filter"),
    );
    for problem in &listing.problems {
        let _ = write!(out, "<p class=\"bad\">{}</p>", esc(problem));
    }
    let _ = write!(
        out,
        "<p class=\"count\" id=\"dead-total\">{}: <strong>{}</strong></p>",
        t("total"),
        listing.total
    );
    if !listing.reasons.is_empty() {
        let mut rows = String::new();
        for (reason, count) in &listing.reasons {
            let narrowed = Query {
                reason: reason.clone(),
                page: String::new(),
                ..query.clone()
            };
            let _ = write!(
                rows,
                "<tr><td><a href=\"/dead-letters?{}\">{}</a></td><td class=\"num\">{count}</td></tr>",
                esc(&narrowed.link()),
                esc(reason)
            );
        }
        let _ = write!(
            out,
            "<h2>{}</h2><table class=\"reasons\"><thead><tr><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
            t("by_reason"),
            t("reason"),
            t("count")
        );
    }
    let mut rows = String::new();
    for (shard, letter) in &listing.letters {
        let _ = write!(
            rows,
            "<tr><td><input type=\"checkbox\" name=\"key\" value=\"{}\" aria-label=\"{}\"></td><td>{}</td><td><a href=\"/orders/{}\">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
            esc(&key_value(*shard, letter)),
            esc(&letter.tid),
            when(letter.dead_at_ms),
            url_part(&letter.tid),
            esc(&letter.tid),
            esc(&letter.shop_no),
            esc(if letter.connector.is_empty() {
                "default"
            } else {
                &letter.connector
            }),
            esc(&letter.scheme),
            esc(&letter.reason),
            letter.history.len(),
        );
    }
    let hidden: String = [
        ("tid", &query.tid),
        ("shop", &query.shop),
        ("connector", &query.connector),
        ("scheme", &query.scheme),
        ("reason", &query.reason),
        ("since", &query.since),
        ("until", &query.until),
    ]
    .iter()
    .map(|(name, value)| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            esc(value)
        )
    })
    .collect();
    let buttons = if logged_in {
        let mut buttons = String::new();
        for action in [Action::Replay, Action::Remap, Action::Discard] {
            let _ = write!(
                buttons,
                "<button name=\"do\" value=\"{a}-selected\" id=\"{a}-selected\">{} ({})</button> <button name=\"do\" value=\"{a}-all\" id=\"{a}-all\">{} ({})</button> ",
                action.label(lang),
                t("selected"),
                action.label(lang),
                t("all_matching"),
                a = action.name(),
            );
        }
        format!(
            "<p class=\"actions\">{buttons}<small>{}</small></p>",
            t("dry_run")
        )
    } else {
        format!(
            "<p class=\"actions\"><a href=\"/login?next=/dead-letters\">{}</a></p>",
            t("login_needed")
        )
    };
    let _ = write!(
        out,
        "<form method=\"post\" action=\"/dead-letters/plan\">{hidden}{buttons}<table class=\"letters\"><thead><tr><th></th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table></form>",
        t("dead_at"),
        t("tid"),
        t("shop"),
        t("connector"),
        t("scheme"),
        t("reason"),
        t("attempts"),
    );
    if !listing.next_page.is_empty() {
        let _ = write!(
            out,
            "<p><a href=\"/dead-letters?{}&amp;page={}\">{} →</a></p>",
            esc(&query.link()),
            url_part(&listing.next_page),
            t("next_page")
        );
    }
    out
}

/// The dry run's page: how many and which, the equivalent command, and confirm.
pub(crate) fn plan(lang: Lang, plan: &Plan) -> String {
    let t = |k| lang.t(k);
    let mut rows = String::new();
    for letter in &plan.sample {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            when(letter.dead_at_ms),
            esc(&letter.tid),
            esc(&letter.shop_no),
            esc(&letter.reason)
        );
    }
    let more = plan.count.saturating_sub(plan.sample.len() as u64);
    let heading = match lang {
        Lang::Zh => format!(
            "预演：将{}以下 <strong id=\"plan-count\">{}</strong> 条死信（之后新产生的死信不会包含在内）。",
            plan.action.label(lang),
            plan.count
        ),
        Lang::En => format!(
            "Dry run: this will {} the <strong id=\"plan-count\">{}</strong> dead letters below (letters that die after now are not included).",
            plan.action.name(),
            plan.count
        ),
    };
    format!(
        "<p class=\"plan\">{heading}</p><table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>{}<p>{}: <code id=\"equivalent\">{}</code></p><form method=\"post\" action=\"/dead-letters/apply\" class=\"inline\"><input type=\"hidden\" name=\"plan\" value=\"{}\"><button id=\"confirm\" class=\"danger\">{} · {}</button></form> <a href=\"/dead-letters?{}\">{}</a>",
        t("dead_at"),
        t("tid"),
        t("shop"),
        t("reason"),
        if more > 0 {
            format!("<p>… +{more}</p>")
        } else {
            String::new()
        },
        t("equivalent"),
        esc(&plan.equivalent),
        esc(&plan.id),
        t("confirm"),
        plan.action.label(lang),
        esc(&plan.back),
        t("cancel"),
    )
}
