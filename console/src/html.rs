//! Building pages: escaping, the layout every page shares (header, navigation, search,
//! language switch, login state), and small pieces (times, ages, sparklines).

use crate::i18n::Lang;
use std::fmt::Write as _;

/// Text made safe for HTML element content and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A query-string component.
pub(crate) fn url_part(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Unix ms as China time, or `-`.
pub(crate) use wdtpipe_common::format_when as when;

/// `HH:MM:SS` China time of Unix ms, or `-`.
pub(crate) fn clock(ms: i64) -> String {
    let full = when(ms);
    full.get(11..19).map_or(full.clone(), str::to_owned)
}

/// A duration in ms as `3 s`, `4 min 10 s`, `2 h 5 min`.
pub(crate) fn age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    match secs {
        0..60 => format!("{secs} s"),
        60..3600 => format!("{} min {} s", secs / 60, secs % 60),
        _ => format!("{} h {} min", secs / 3600, secs % 3600 / 60),
    }
}

/// An inline SVG sparkline of `values` (oldest first).
pub(crate) fn sparkline(values: &[u64]) -> String {
    let (w, h) = (120.0_f64, 24.0_f64);
    let max = values.iter().copied().max().unwrap_or(0).max(1) as f64;
    let step = if values.len() > 1 {
        w / (values.len() - 1) as f64
    } else {
        w
    };
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            format!(
                "{:.1},{:.1}",
                i as f64 * step,
                h - 1.0 - (*v as f64 / max) * (h - 2.0)
            )
        })
        .collect();
    let total: u64 = values.iter().sum();
    format!(
        "<svg class=\"spark\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"{total}\"><polyline points=\"{}\"/></svg>",
        points.join(" ")
    )
}

/// What the layout needs to know of the request.
#[derive(Debug, Clone)]
pub(crate) struct Frame<'a> {
    pub(crate) lang: Lang,
    /// The logged-in operator, if any.
    pub(crate) operator: Option<&'a str>,
    /// The page's own path and query (the language switch comes back to it).
    pub(crate) here: &'a str,
    /// The navigation entry to mark.
    pub(crate) nav: &'static str,
}

/// A whole page around `body`.
pub(crate) fn page(frame: &Frame<'_>, title: &str, body: &str) -> String {
    let lang = frame.lang;
    let mut nav = String::new();
    for (key, href) in [
        ("overview", "/"),
        ("dead_letters", "/dead-letters"),
        ("shops", "/shops"),
        ("schemes", "/schemes"),
        ("audit", "/audit"),
    ] {
        let current = if key == frame.nav {
            " aria-current=\"page\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{current}>{}</a>", lang.t(key));
    }
    let login = match frame.operator {
        Some(name) => format!(
            "<form method=\"post\" action=\"/logout\" class=\"inline\"><span class=\"who\">{} {}</span> <button>{}</button></form>",
            lang.t("operator"),
            esc(name),
            lang.t("logout")
        ),
        None => format!(
            "<a href=\"/login?next={}\">{}</a>",
            url_part(frame.here),
            lang.t("login")
        ),
    };
    let switch = match lang {
        Lang::Zh => format!(
            "<a href=\"/lang/en?next={}\">English</a>",
            url_part(frame.here)
        ),
        Lang::En => format!(
            "<a href=\"/lang/zh?next={}\">中文</a>",
            url_part(frame.here)
        ),
    };
    format!(
        r#"<!doctype html>
<html lang="{code}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {app}</title>
<link rel="stylesheet" href="/assets/console.css">
<script src="/assets/console.js" defer></script>
</head>
<body data-lang="{code}">
<header>
<a class="brand" href="/">{app}</a>
<nav>{nav}</nav>
<form class="search" method="get" action="/search"><input type="search" name="q" id="search" placeholder="{placeholder}" aria-label="{search}"><button>{search}</button></form>
<span class="lang">{switch}</span>
<span class="login">{login}</span>
</header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        code = lang.code(),
        app = lang.t("title"),
        title = esc(title),
        placeholder = lang.t("search_placeholder"),
        search = lang.t("search"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Markup in data never becomes markup on a page.
    #[test]
    fn escapes() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
        assert_eq!(url_part("a b/签"), "a%20b%2F%E7%AD%BE");
        assert_eq!(age(61_000), "1 min 1 s");
        assert!(sparkline(&[0, 5, 10]).starts_with("<svg"));
    }
}
