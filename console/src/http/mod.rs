//! The console's HTTP side: the router, the shared state, the security headers, logins and
//! the language switch. Page handlers are in `views`, the live updates in `live`, the
//! actions in `act`; they are thin: read the request, ask the services, call a page.

mod act;
mod live;
mod views;

use crate::actions::Plans;
use crate::alert::Alerter;
use crate::audit::{AuditLog, Entry};
use crate::error::PageError;
use crate::html::{Frame, esc, page};
use crate::i18n::Lang;
use crate::sampler::Snapshot;
use crate::session::{Operator, Sessions};
use crate::upstream::Upstream;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::sync::watch;
use wdtpipe_common::config::Secret;

/// What every handler shares.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    pub(crate) upstream: Upstream,
    pub(crate) snapshot: watch::Receiver<Arc<Snapshot>>,
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) plans: Arc<Plans>,
    pub(crate) audit: Arc<AuditLog>,
    pub(crate) alerter: Alerter,
    pub(crate) registry: Arc<Registry>,
    /// The tokens an operator may log in with.
    pub(crate) logins: Arc<Vec<Secret>>,
    /// The refresh period, for the pages' polling fallback.
    pub(crate) refresh_ms: u64,
    /// Operators reach the console over HTTPS (`CONSOLE_PUBLIC_URL`): cookies are `Secure`.
    pub(crate) secure_cookies: bool,
}

impl AppState {
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.borrow().clone()
    }

    /// The operator, for an action: logged in, and the request from the console's pages.
    pub(crate) fn actor(&self, headers: &HeaderMap) -> Result<Operator, PageError> {
        if !crate::session::same_origin(headers) {
            return Err(PageError::CrossSite);
        }
        self.sessions
            .operator(headers)
            .ok_or(PageError::LoginRequired)
    }

    pub(crate) fn record(&self, entry: Entry) -> Result<(), PageError> {
        self.audit.append(&entry).map_err(PageError::Audit)
    }
}

/// A page's frame from the request.
pub(crate) struct Req {
    pub(crate) lang: Lang,
    pub(crate) operator: Option<Operator>,
}

impl Req {
    pub(crate) fn of(state: &AppState, headers: &HeaderMap) -> Self {
        Self {
            lang: Lang::of(headers),
            operator: state.sessions.operator(headers),
        }
    }

    /// The whole page.
    pub(crate) fn page(
        &self,
        here: &str,
        nav: &'static str,
        title: &str,
        body: &str,
    ) -> Html<String> {
        let frame = Frame {
            lang: self.lang,
            operator: self.operator.as_ref().map(|o| o.name.as_str()),
            here,
            nav,
        };
        Html(page(&frame, title, body))
    }
}

/// The console's routes.
pub(crate) fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(views::overview))
        .route("/shops", get(views::shops))
        .route("/orders/{tid}", get(views::order))
        .route("/search", get(views::search))
        .route("/dead-letters", get(views::dead_letters))
        .route("/schemes", get(views::schemes))
        .route("/schemes/preview", post(views::preview))
        .route("/audit", get(views::audit))
        .route("/events", get(live::events))
        .route("/api/live", get(live::poll))
        .route("/dead-letters/plan", post(act::plan))
        .route("/dead-letters/apply", post(act::apply))
        .route("/shops/resume", post(act::resume))
        .route("/login", get(login_form).post(login))
        .route("/logout", post(logout))
        .route("/lang/{code}", get(switch_lang))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/healthz", get(|| async { "ok" }))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(state)
}

/// Pages never load anything from elsewhere, run no inline script and cannot be framed.
async fn security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/console.css"),
    )
}

async fn js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=3600"),
        ],
        include_str!("../../assets/console.js"),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, wdtpipe_common::metrics::CONTENT_TYPE)],
        wdtpipe_common::metrics::render(&state.registry),
    )
}

/// Where to go after a login or a language switch: a path of this console only.
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(path) if path.starts_with('/') && !path.starts_with("//") && !path.contains('\\') => {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

#[derive(Debug, serde::Deserialize)]
struct Next {
    next: Option<String>,
}

async fn switch_lang(Path(code): Path<String>, Query(next): Query<Next>) -> Response {
    let lang = Lang::parse(&code).unwrap_or(Lang::Zh);
    let mut response = Redirect::to(&local_path(next.next.as_deref())).into_response();
    if let Ok(value) = HeaderValue::from_str(&format!(
        "lang={}; Path=/; SameSite=Strict; Max-Age=31536000",
        lang.code()
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

fn login_page(req: &Req, next: &str, problem: Option<&str>) -> Html<String> {
    let lang = req.lang;
    let problem = problem
        .map(|p| format!("<p class=\"bad\" id=\"login-error\">{}</p>", esc(p)))
        .unwrap_or_default();
    let body = format!(
        "{problem}<form method=\"post\" action=\"/login\" class=\"login\"><input type=\"hidden\" name=\"next\" value=\"{}\"><label>{} <input name=\"name\" id=\"login-name\" required maxlength=\"64\" autocomplete=\"username\"></label><label>{} <input type=\"password\" name=\"token\" id=\"login-token\" required autocomplete=\"current-password\"></label><button id=\"login-submit\">{}</button></form>",
        esc(next),
        lang.t("name"),
        lang.t("token"),
        lang.t("login"),
    );
    req.page("/login", "", lang.t("login"), &body)
}

async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(next): Query<Next>,
) -> Html<String> {
    let req = Req::of(&state, &headers);
    login_page(&req, &local_path(next.next.as_deref()), None)
}

#[derive(Debug, serde::Deserialize)]
struct LoginForm {
    name: String,
    token: String,
    next: Option<String>,
}

async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Result<Response, PageError> {
    if !crate::session::same_origin(&headers) {
        return Err(PageError::CrossSite);
    }
    let req = Req::of(&state, &headers);
    let next = local_path(form.next.as_deref());
    let name: String = form.name.trim().chars().take(64).collect();
    if state.logins.is_empty() {
        let problem = "no operator token is configured: set CONSOLE_TOKEN (or ADMIN_TOKEN) to act from the console";
        return Ok((
            StatusCode::UNAUTHORIZED,
            login_page(&req, &next, Some(problem)),
        )
            .into_response());
    }
    let token = form.token.trim();
    if name.is_empty() || !state.logins.iter().any(|t| t.matches(token)) {
        state.record(Entry {
            at_ms: wdtpipe_common::now_ms(),
            who: name,
            action: "login refused".into(),
            what: String::new(),
            planned: 0,
            result: "wrong token".into(),
        })?;
        let problem = match req.lang {
            Lang::Zh => "名字或令牌不对。",
            Lang::En => "Wrong name or token.",
        };
        return Ok((
            StatusCode::UNAUTHORIZED,
            login_page(&req, &next, Some(problem)),
        )
            .into_response());
    }
    let id = state.sessions.open(&name);
    state.record(Entry {
        at_ms: wdtpipe_common::now_ms(),
        who: name,
        action: "login".into(),
        what: String::new(),
        planned: 0,
        result: "ok".into(),
    })?;
    let mut response = Redirect::to(&next).into_response();
    if let Ok(value) =
        HeaderValue::from_str(&crate::session::session_cookie(&id, state.secure_cookies))
    {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

async fn logout(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, PageError> {
    if !crate::session::same_origin(&headers) {
        return Err(PageError::CrossSite);
    }
    state.sessions.close(&headers);
    let mut response = Redirect::to("/").into_response();
    if let Ok(value) = HeaderValue::from_str(&crate::session::cleared_cookie()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}
