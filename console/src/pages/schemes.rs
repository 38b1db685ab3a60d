//! `/schemes`: each serving scheme with version, source, WDT account, load time and rules,
//! the last refused reload, and a preview box: a pasted callback mapped by
//! `Transform.Preview`, each trade with the rule that wrote each field.

use crate::html::{esc, when};
use crate::i18n::Lang;
use crate::sampler::SchemeRates;
use std::collections::HashMap;
use std::fmt::Write as _;
use wdtpipe_common::trade_json::trade_value;
use wdtpipe_proto::v1::{ListSchemesResponse, PreviewResponse};

/// What the preview form sent back, to fill it again.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub(crate) struct PreviewForm {
    pub(crate) scheme: String,
    pub(crate) callback: String,
    pub(crate) scheme_text: String,
}

/// The schemes table and the preview box (with its result, if any).
pub(crate) fn render(
    lang: Lang,
    schemes: Result<&ListSchemesResponse, &str>,
    rates: &HashMap<String, SchemeRates>,
    form: &PreviewForm,
    result: Option<Result<&PreviewResponse, &str>>,
) -> String {
    let t = |k| lang.t(k);
    let mut out = String::new();
    let mut options = String::new();
    match schemes {
        Err(error) => {
            let _ = write!(out, "<p class=\"bad\">{}</p>", esc(error));
        }
        Ok(list) => {
            if !list.last_reload_error.is_empty() {
                let _ = write!(
                    out,
                    "<div class=\"bad box\"><strong>{}</strong> ({})<pre>{}</pre></div>",
                    t("reload_error"),
                    when(list.last_reload_error_at_ms),
                    esc(&list.last_reload_error)
                );
            }
            let mut rows = String::new();
            for s in &list.schemes {
                let rate = rates.get(&s.id).cloned().unwrap_or_default();
                let _ = write!(
                    rows,
                    "<tr id=\"{id}\"><td><strong>{id}</strong><br><small>{}</small></td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td><td>[trade] {} · [line] {}{}</td><td class=\"num\">{} / {} / {}</td><td class=\"num\">{} / {} / {}</td></tr>",
                    esc(&s.description),
                    esc(&s.version),
                    esc(&s.source),
                    esc(if s.connector.is_empty() {
                        "default"
                    } else {
                        &s.connector
                    }),
                    when(s.loaded_at_ms),
                    esc(&s.path),
                    s.trade_rules,
                    s.line_rules,
                    if s.skip { " · skip" } else { "" },
                    rate.accepted,
                    rate.rejected,
                    rate.skipped,
                    s.accepted_total,
                    s.rejected_total,
                    s.skipped_total,
                    id = esc(&s.id),
                );
                let selected = if s.id == form.scheme { " selected" } else { "" };
                let _ = write!(
                    options,
                    "<option value=\"{id}\"{selected}>{id}@{}</option>",
                    esc(&s.version),
                    id = esc(&s.id)
                );
            }
            let _ = write!(
                out,
                "<table class=\"schemes\"><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>file</th><th>{}</th><th>{} / {} / {}</th><th>{} ({} / {} / {})</th></tr></thead><tbody>{rows}</tbody></table>",
                t("scheme"),
                t("version"),
                t("source"),
                t("connector"),
                t("loaded_at"),
                t("rules"),
                t("accepted_min"),
                t("rejected_min"),
                t("skipped_min"),
                t("total"),
                t("accepted_min"),
                t("rejected_min"),
                t("skipped_min"),
            );
        }
    }
    let _ = write!(
        out,
        "<h2>{}</h2><p>{}</p><form method=\"post\" action=\"/schemes/preview\" class=\"preview\"><label>{} <select name=\"scheme\" id=\"preview-scheme\">{options}</select></label><label>{}<textarea name=\"callback\" id=\"preview-callback\" rows=\"10\">{}</textarea></label><label>{}<textarea name=\"scheme_text\" rows=\"6\">{}</textarea></label><button id=\"preview-run\">{}</button></form>",
        t("preview"),
        t("preview_help"),
        t("scheme"),
        t("callback_json"),
        esc(&form.callback),
        t("scheme_text"),
        esc(&form.scheme_text),
        t("preview"),
    );
    match result {
        None => {}
        Some(Err(error)) => {
            let _ = write!(
                out,
                "<p class=\"bad\" id=\"preview-error\">{}</p>",
                esc(error)
            );
        }
        Some(Ok(preview)) => out.push_str(&previewed(lang, preview)),
    }
    out
}

fn previewed(lang: Lang, preview: &PreviewResponse) -> String {
    let mut out = format!(
        "<section id=\"preview-result\"><p>{} <code>{}</code></p>",
        lang.t("scheme"),
        esc(&preview.scheme)
    );
    for (i, record) in preview.records.iter().enumerate() {
        let _ = write!(out, "<h3>#{}</h3>", i + 1);
        if !record.error.is_empty() {
            let _ = write!(out, "<p class=\"bad\">422: {}</p>", esc(&record.error));
            continue;
        }
        if record.skipped {
            let _ = write!(
                out,
                "<p>{}</p>",
                lang.t("skipped_min").trim_end_matches(" / min")
            );
            continue;
        }
        for (n, trade) in record.trades.iter().enumerate() {
            let mut rules = String::new();
            for field in record.fields.iter().filter(|f| f.trade as usize == n) {
                let place = if field.line > 0 {
                    format!("order_list[{}].{}", field.line, field.field)
                } else {
                    field.field.clone()
                };
                let _ = write!(
                    rules,
                    "<tr><td><code>{}</code></td><td><code>{}</code></td></tr>",
                    esc(&place),
                    esc(&field.rule)
                );
            }
            let json = serde_json::to_string_pretty(&trade_value(trade)).unwrap_or_default();
            let _ = write!(
                out,
                "<div class=\"cols\"><pre class=\"trade-json\">{}</pre><table class=\"rules\"><thead><tr><th>field</th><th>rule</th></tr></thead><tbody>{}</tbody></table></div>",
                esc(&json),
                if rules.is_empty() {
                    "<tr><td colspan=\"2\">built-in mapping (MAPPING.md)</td></tr>".to_owned()
                } else {
                    rules
                }
            );
        }
    }
    out.push_str("</section>");
    out
}
