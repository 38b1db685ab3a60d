//! Operator sessions and the guard on actions.
//!
//! Reading is open (on loopback; off loopback the console needs `CONSOLE_TOKEN` to start).
//! Acting needs a login with `CONSOLE_TOKEN` or `ADMIN_TOKEN`: the console then sets an
//! HttpOnly, SameSite=Strict cookie holding a random session id, never the token. Every
//! POST must come from the console's own pages: `Sec-Fetch-Site` (when the browser sends
//! it) must be `same-origin`, and `Origin` must be the console's own; a POST with neither
//! header is refused too.

use axum::http::{HeaderMap, header};
use rand::Rng;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The session cookie's name.
pub(crate) const COOKIE: &str = "wdtpipe_session";
/// How long a login lasts.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A logged-in operator.
#[derive(Debug, Clone)]
pub(crate) struct Operator {
    pub(crate) name: String,
    expires: Instant,
}

/// The sessions of this console process (a restart logs everyone out).
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    by_id: Mutex<HashMap<String, Operator>>,
}

impl Sessions {
    /// Starts a session for `name`: its id, for the cookie.
    pub(crate) fn open(&self, name: &str) -> String {
        let bytes: [u8; 32] = rand::rng().random();
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let mut sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        sessions.retain(|_, op| op.expires > now);
        sessions.insert(
            id.clone(),
            Operator {
                name: name.to_owned(),
                expires: now + LIFETIME,
            },
        );
        id
    }

    /// The operator of the request's session cookie, if it is valid.
    pub(crate) fn operator(&self, headers: &HeaderMap) -> Option<Operator> {
        let id = cookie(headers, COOKIE)?;
        let sessions = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(&id)
            .filter(|op| op.expires > Instant::now())
            .cloned()
    }

    pub(crate) fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, COOKIE) {
            self.by_id
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

/// The `Set-Cookie` value of a new session; `secure` (operators reach the console over
/// HTTPS) keeps the browser from ever sending it in clear.
pub(crate) fn session_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        LIFETIME.as_secs(),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends a session.
pub(crate) fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// A cookie's value.
pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// True when a POST comes from the console's own pages (see the module).
pub(crate) fn same_origin(headers: &HeaderMap) -> bool {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let fetch_site = text("sec-fetch-site");
    let origin = text(header::ORIGIN.as_str());
    if fetch_site.is_none() && origin.is_none() {
        return false;
    }
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return false;
    }
    match (origin, text(header::HOST.as_str())) {
        (Some(origin), Some(host)) => {
            let origin = origin.trim_end_matches('/');
            origin == format!("http://{host}") || origin == format!("https://{host}")
        }
        (Some(_), None) => false,
        (None, _) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    /// Only POSTs the console's own pages make pass; a cross-site or header-less one does not.
    #[test]
    fn cross_site_posts_are_refused() {
        let host = ("host", "127.0.0.1:8081");
        assert!(same_origin(&headers(&[
            host,
            ("origin", "http://127.0.0.1:8081")
        ])));
        assert!(same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-origin")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("origin", "http://evil.example")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "cross-site")
        ])));
        assert!(!same_origin(&headers(&[
            host,
            ("sec-fetch-site", "same-site")
        ])));
        assert!(!same_origin(&headers(&[host])));
    }

    /// A session is found by its cookie until it is closed.
    #[test]
    fn sessions() {
        let sessions = Sessions::default();
        let id = sessions.open("li");
        let h = headers(&[("cookie", &format!("lang=en; {COOKIE}={id}"))]);
        assert_eq!(sessions.operator(&h).map(|o| o.name), Some("li".into()));
        sessions.close(&h);
        assert!(sessions.operator(&h).is_none());
        assert!(session_cookie(&id, false).contains("HttpOnly; SameSite=Strict"));
        assert!(session_cookie(&id, true).ends_with("; Secure"));
    }
}
