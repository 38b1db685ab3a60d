//! Live updates: one server-sent-events stream per open page (`/events`), typed by view
//! (`overview`, `shops`) and numbered by the snapshot's sequence, each carrying the view's
//! live section rendered for the page's language; `/api/live` answers the same for the
//! script's polling fallback. Both read the sampler's latest snapshot: a page never makes
//! the services do work of its own.

use super::AppState;
use crate::i18n::Lang;
use crate::pages;
use axum::Json;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use std::convert::Infallible;

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub(super) struct LiveQuery {
    view: String,
    shop: String,
}

/// One update: the snapshot's number and time, and the live section's HTML.
#[derive(Debug, serde::Serialize)]
pub(super) struct Update {
    seq: u64,
    at_ms: i64,
    html: String,
}

fn update(state: &AppState, lang: Lang, logged_in: bool, query: &LiveQuery) -> Update {
    let snapshot = state.snapshot();
    let html = match query.view.as_str() {
        "shops" => pages::shops::live(lang, &snapshot, logged_in),
        _ => {
            let alerts = pages::overview::alerts(lang, &state.alerter.status());
            let shop = Some(query.shop.as_str()).filter(|s| !s.is_empty());
            pages::overview::live(lang, &snapshot, &alerts, shop)
        }
    };
    Update {
        seq: snapshot.seq,
        at_ms: snapshot.at_ms,
        html,
    }
}

fn view_name(query: &LiveQuery) -> &'static str {
    match query.view.as_str() {
        "shops" => "shops",
        _ => "overview",
    }
}

pub(super) async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let lang = Lang::of(&headers);
    let logged_in = state.sessions.operator(&headers).is_some();
    let rx = state.snapshot.clone();
    let stream = futures_util::stream::unfold(
        (state, rx, query, true),
        move |(state, mut rx, query, first)| async move {
            if !first {
                // The sampler stopped (shutdown): the stream ends.
                rx.changed().await.ok()?;
            }
            rx.borrow_and_update();
            let update = update(&state, lang, logged_in, &query);
            let event = Event::default()
                .event(view_name(&query))
                .id(update.seq.to_string())
                .json_data(&update)
                .unwrap_or_default();
            Some((Ok(event), (state, rx, query, false)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::default())
}

pub(super) async fn poll(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<LiveQuery>,
) -> Json<Update> {
    let lang = Lang::of(&headers);
    let logged_in = state.sessions.operator(&headers).is_some();
    Json(update(&state, lang, logged_in, &query))
}
