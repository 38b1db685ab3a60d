//! `/audit`: every operator action, newest first: who, when, what and how many.

use crate::audit::Entry;
use crate::html::{esc, when};
use crate::i18n::Lang;
use std::fmt::Write as _;

pub(crate) fn render(lang: Lang, entries: &[Entry]) -> String {
    let t = |k| lang.t(k);
    let mut rows = String::new();
    for e in entries {
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{}</td></tr>",
            when(e.at_ms),
            esc(&e.who),
            esc(&e.action),
            esc(&e.what),
            e.planned,
            esc(&e.result)
        );
    }
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", t("none"));
    }
    format!(
        "<table class=\"audit\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr></thead><tbody>{rows}</tbody></table>",
        t("at"),
        t("who"),
        t("action"),
        t("what"),
        t("count"),
        t("result")
    )
}
