//! Page handlers: read the request, ask the services (or the latest snapshot), render.

use super::{AppState, Req};
use crate::actions::{PAGE_SIZE, filter_of, list};
use crate::error::PageError;
use crate::html::{esc, url_part};
use crate::pages;
use crate::pages::dead_letters::Query as DeadQuery;
use crate::pages::order::Found;
use crate::pages::schemes::PreviewForm;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{Html, IntoResponse, Redirect, Response};
use wdtpipe_proto::v1::{
    DeadLetterFilter, GetRecordRequest, GetStatusRequest, ListDeadLettersRequest,
    ListSchemesRequest, PreviewRequest,
};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct ShopQuery {
    pub(super) shop: Option<String>,
}

/// The live section a page's script keeps fresh (see `live`).
fn live_section(view: &str, shop: Option<&str>, refresh_ms: u64, inner: &str) -> String {
    format!(
        "<p class=\"live-state\"><span id=\"live-state\" data-refresh-ms=\"{refresh_ms}\"></span></p><section id=\"live\" data-view=\"{view}\" data-shop=\"{}\">{inner}</section>",
        esc(shop.unwrap_or_default())
    )
}

pub(super) async fn overview(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<ShopQuery>,
) -> Html<String> {
    let req = Req::of(&state, &headers);
    let snapshot = state.snapshot();
    let alerts = pages::overview::alerts(req.lang, &state.alerter.status());
    let shop = query.shop.as_deref().filter(|s| !s.is_empty());
    let inner = pages::overview::live(req.lang, &snapshot, &alerts, shop);
    let body = live_section("overview", shop, state.refresh_ms, &inner);
    req.page("/", "overview", req.lang.t("overview"), &body)
}

pub(super) async fn shops(State(state): State<AppState>, headers: HeaderMap) -> Html<String> {
    let req = Req::of(&state, &headers);
    let inner = pages::shops::live(req.lang, &state.snapshot(), req.operator.is_some());
    let body = live_section("shops", None, state.refresh_ms, &inner);
    req.page("/shops", "shops", req.lang.t("shops"), &body)
}

/// Everything every shard knows of `tid`.
async fn find(state: &AppState, tid: &str) -> Found {
    let mut found = Found::default();
    for shard in &state.upstream.shards {
        let mut client = shard.client.clone();
        let status = client
            .get_status(GetStatusRequest {
                tid: tid.to_owned(),
                ..Default::default()
            })
            .await;
        let letters = client
            .list_dead_letters(ListDeadLettersRequest {
                filter: Some(DeadLetterFilter {
                    tid: tid.to_owned(),
                    ..Default::default()
                }),
                limit: 20,
                page_token: String::new(),
            })
            .await;
        match (status, letters) {
            (Ok(status), Ok(letters)) => {
                found.trades.extend(status.into_inner().trades);
                found.letters.extend(letters.into_inner().letters);
            }
            (Err(e), _) | (_, Err(e)) => {
                found
                    .unreachable
                    .push(format!("deliver {}: {}", shard.url, e.message()))
            }
        }
    }
    found
}

pub(super) async fn order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(tid): Path<String>,
) -> Html<String> {
    let req = Req::of(&state, &headers);
    let found = find(&state, &tid).await;
    let body = pages::order::render(req.lang, &tid, &found, &state.snapshot().lanes);
    let title = format!("{} {tid}", req.lang.t("tid"));
    req.page(&format!("/orders/{}", url_part(&tid)), "", &title, &body)
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct SearchQuery {
    q: String,
}

/// A tid, else a record id, else a tracking number: the order's page.
pub(super) async fn search(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<SearchQuery>,
) -> Response {
    let q = query.q.trim();
    let to_order = |tid: &str| Redirect::to(&format!("/orders/{}", url_part(tid))).into_response();
    if q.is_empty() {
        return Redirect::to("/").into_response();
    }
    let mut problems = Vec::new();
    for shard in &state.upstream.shards {
        let mut client = shard.client.clone();
        let by_tid = client
            .get_status(GetStatusRequest {
                tid: q.to_owned(),
                ..Default::default()
            })
            .await;
        match by_tid {
            Ok(a) if !a.get_ref().trades.is_empty() => return to_order(q),
            Ok(_) => {}
            Err(e) => problems.push(format!("deliver {}: {}", shard.url, e.message())),
        }
        let record = client
            .get_record(GetRecordRequest {
                record_id: q.to_owned(),
            })
            .await;
        if let Ok(record) = record
            && let Some(tid) = record
                .into_inner()
                .record
                .and_then(|r| r.tids.into_iter().next())
        {
            return to_order(&tid);
        }
        let by_number = client
            .get_status(GetStatusRequest {
                tracking_number: q.to_owned(),
                ..Default::default()
            })
            .await;
        if let Ok(by_number) = by_number
            && let Some(trade) = by_number.into_inner().trades.into_iter().next()
        {
            return to_order(&trade.tid);
        }
    }
    // A dead letter of a tid no shard holds an entry for.
    let letters = DeadLetterFilter {
        tid: q.to_owned(),
        ..Default::default()
    };
    if list(&state.upstream, &letters, "", 1).await.total > 0 {
        return to_order(q);
    }
    let req = Req::of(&state, &headers);
    let mut body = format!(
        "<p id=\"not-found\">{}: <code>{}</code></p>",
        req.lang.t("not_found"),
        esc(q)
    );
    for problem in problems {
        body.push_str(&format!("<p class=\"bad\">{}</p>", esc(&problem)));
    }
    req.page("/search", "", req.lang.t("search"), &body)
        .into_response()
}

pub(super) async fn dead_letters(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<DeadQuery>,
) -> Result<Html<String>, PageError> {
    let req = Req::of(&state, &headers);
    let filter = filter_of(&query).map_err(PageError::BadRequest)?;
    let listing = list(&state.upstream, &filter, &query.page, PAGE_SIZE).await;
    let body = pages::dead_letters::render(req.lang, &query, &listing, req.operator.is_some());
    let here = format!("/dead-letters?{}", query.link());
    Ok(req.page(&here, "dead_letters", req.lang.t("dead_letters"), &body))
}

async fn schemes_page(
    state: &AppState,
    req: &Req,
    form: &PreviewForm,
    result: Option<Result<wdtpipe_proto::v1::PreviewResponse, String>>,
) -> Html<String> {
    let listed = state
        .upstream
        .transform
        .clone()
        .list_schemes(ListSchemesRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|s| {
            format!(
                "transform {}: {}",
                state.upstream.transform_url,
                s.message()
            )
        });
    let rates = state.snapshot().scheme_rates.clone();
    let body = pages::schemes::render(
        req.lang,
        listed.as_ref().map_err(String::as_str),
        &rates,
        form,
        result.as_ref().map(|r| r.as_ref().map_err(String::as_str)),
    );
    req.page("/schemes", "schemes", req.lang.t("schemes"), &body)
}

pub(super) async fn schemes(State(state): State<AppState>, headers: HeaderMap) -> Html<String> {
    let req = Req::of(&state, &headers);
    schemes_page(&state, &req, &PreviewForm::default(), None).await
}

/// The preview box: parse the pasted callback as ingest would, map it with
/// `Transform.Preview`. Reads only, so no login; the same-origin check still applies.
pub(super) async fn preview(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<PreviewForm>,
) -> Result<Html<String>, PageError> {
    if !crate::session::same_origin(&headers) {
        return Err(PageError::CrossSite);
    }
    let req = Req::of(&state, &headers);
    let result = match wdtpipe_ingest::parse::parse(
        form.callback.as_bytes(),
        &wdtpipe_ingest::config::Limits::default(),
    ) {
        Err(error) => Err(format!("the callback does not parse: {error}")),
        Ok(records) => state
            .upstream
            .transform
            .clone()
            .preview(PreviewRequest {
                records,
                scheme: form.scheme.clone(),
                scheme_text: form.scheme_text.clone(),
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| s.message().to_owned()),
    };
    Ok(schemes_page(&state, &req, &form, Some(result)).await)
}

pub(super) async fn audit(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Html<String>, PageError> {
    let req = Req::of(&state, &headers);
    let audit = state.audit.clone();
    let entries = tokio::task::spawn_blocking(move || audit.latest(500))
        .await
        .map_err(|e| PageError::Audit(std::io::Error::other(e)))?
        .map_err(PageError::Audit)?;
    let body = pages::audit::render(req.lang, &entries);
    Ok(req.page("/audit", "audit", req.lang.t("audit"), &body))
}
