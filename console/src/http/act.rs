//! Action handlers: each needs a logged-in operator and a same-origin POST
//! ([`AppState::actor`]), goes through a dry run when it touches many letters, and is
//! written to the audit log.

use super::{AppState, Req};
use crate::actions::{self, Action};
use crate::audit::Entry;
use crate::error::PageError;
use crate::html::esc;
use crate::pages;
use crate::pages::dead_letters::Query as DeadQuery;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Html;

/// The form's fields (the selected letters come as repeated `key`s).
fn fields(body: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    serde_urlencoded::from_bytes(body).map_err(|e| PageError::BadRequest(format!("bad form: {e}")))
}

/// A form's fields, in order (the selected letters come as repeated `key`s).
type Form = Vec<(String, String)>;

/// An action's request: its operator (logged in, same origin), page frame and form.
fn acting(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(crate::session::Operator, Req, Form), PageError> {
    let operator = state.actor(headers)?;
    Ok((operator, Req::of(state, headers), fields(body)?))
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map_or("", |(_, v)| v.as_str())
}

/// The dry run: how many and which letters, and the confirm button.
pub(super) async fn plan(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Html<String>, PageError> {
    let (operator, req, form) = acting(&state, &headers, &body)?;
    let (action, scope) = field(&form, "do")
        .split_once('-')
        .ok_or_else(|| PageError::BadRequest("no action chosen".into()))?;
    let action = Action::parse(action)
        .ok_or_else(|| PageError::BadRequest(format!("unknown action {action:?}")))?;
    let query = DeadQuery {
        tid: field(&form, "tid").into(),
        shop: field(&form, "shop").into(),
        connector: field(&form, "connector").into(),
        scheme: field(&form, "scheme").into(),
        reason: field(&form, "reason").into(),
        since: field(&form, "since").into(),
        until: field(&form, "until").into(),
        page: String::new(),
    };
    let keys: Vec<String> = form
        .iter()
        .filter(|(k, _)| k == "key")
        .map(|(_, v)| v.clone())
        .collect();
    let plan = actions::plan(
        &state.upstream,
        &state.plans,
        &operator.name,
        action,
        &query,
        &keys,
        scope == "all",
    )
    .await
    .map_err(PageError::BadRequest)?;
    let body = pages::dead_letters::plan(req.lang, &plan);
    Ok(req.page(
        "/dead-letters",
        "dead_letters",
        req.lang.t("dry_run"),
        &body,
    ))
}

/// The confirm of a dry run.
pub(super) async fn apply(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Html<String>, PageError> {
    let (operator, req, form) = acting(&state, &headers, &body)?;
    let plan = state
        .plans
        .take(field(&form, "plan"), &operator.name)
        .ok_or_else(|| {
            PageError::BadRequest(
                "this dry run is unknown, expired, already confirmed or someone else's: make it again".into(),
            )
        })?;
    let outcome = actions::apply(&state.upstream, &plan).await;
    let done = Done {
        action: plan.action.name(),
        what: plan.equivalent.clone(),
        planned: plan.count,
        back: format!("/dead-letters?{}", plan.back),
        back_label: req.lang.t("dead_letters"),
        title: plan.action.label(req.lang),
    };
    done.record(&state, &req, operator.name, outcome)
}

/// "Resume now" on the shops page.
pub(super) async fn resume(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Html<String>, PageError> {
    let (operator, req, form) = acting(&state, &headers, &body)?;
    let (shop, connector) = (field(&form, "shop"), field(&form, "connector"));
    if shop.is_empty() {
        return Err(PageError::BadRequest("name the shop to resume".into()));
    }
    let outcome = actions::resume(&state.upstream, shop, connector).await;
    let done = Done {
        action: "resume",
        what: format!("wdtpipe resume {shop} --connector {connector}"),
        planned: 1,
        back: "/shops".into(),
        back_label: req.lang.t("shops"),
        title: req.lang.t("resume"),
    };
    done.record(&state, &req, operator.name, outcome)
}

/// An action done: what goes to the audit log and the page that says how it went.
struct Done {
    action: &'static str,
    /// As the equivalent command's arguments.
    what: String,
    planned: u64,
    back: String,
    back_label: &'static str,
    title: &'static str,
}

impl Done {
    /// Writes the audit entry (before answering), then the result page.
    fn record(
        self,
        state: &AppState,
        req: &Req,
        who: String,
        outcome: Result<String, String>,
    ) -> Result<Html<String>, PageError> {
        let (class, result) = match outcome {
            Ok(text) => ("ok", text),
            Err(text) => ("bad", text),
        };
        state.record(Entry {
            at_ms: wdtpipe_common::now_ms(),
            who,
            action: self.action.into(),
            what: self.what.clone(),
            planned: self.planned,
            result: result.clone(),
        })?;
        let body = format!(
            "<p class=\"{class}\" id=\"result\">{}</p><p><code>{}</code></p><p><a href=\"{}\">{} →</a></p>",
            esc(&result),
            esc(&self.what),
            esc(&self.back),
            self.back_label,
        );
        Ok(req.page(&self.back, "", self.title, &body))
    }
}
