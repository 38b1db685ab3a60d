//! `ALERT_WEBHOOKS`: which work-chat robots and JSON endpoints alerts go to.
//!
//! The value is a comma-separated list of `KIND=URL` entries, KIND one of `wecom`,
//! `dingtalk`, `feishu` or `json`. A robot's signing secret (DingTalk "加签", Feishu
//! "签名校验") goes in the URL's fragment, which is never sent:
//!
//! ```text
//! wecom=https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K,
//! dingtalk=https://oapi.dingtalk.com/robot/send?access_token=T#SECxxxx,
//! feishu=https://open.feishu.cn/open-apis/bot/v2/hook/H#secret,
//! json=https://alerts.example.com/hook
//! ```
//!
//! A robot configured with keywords or an IP allow-list instead of signing takes no
//! fragment: its messages then carry no signature. A URL holding a comma must write it
//! `%2C`. The URLs' query strings and paths carry access tokens, so nothing here prints
//! more than a webhook's kind and host.

use std::fmt;

/// Which kind of endpoint a webhook is, and so which payload, signature and limits it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookKind {
    /// WeCom (企业微信) group robot: markdown, at most 20 messages a minute.
    WeCom,
    /// DingTalk (钉钉) custom robot: markdown, optionally signed, at most 20 messages a minute.
    DingTalk,
    /// Feishu/Lark (飞书) custom bot: an interactive card, optionally signed, at most 100
    /// messages a minute and 5 a second.
    Feishu,
    /// Any endpoint taking this crate's own JSON shape (see the `message` module's docs).
    Json,
}

impl WebhookKind {
    /// The name used in `ALERT_WEBHOOKS`, metrics and pages.
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookKind::WeCom => "wecom",
            WebhookKind::DingTalk => "dingtalk",
            WebhookKind::Feishu => "feishu",
            WebhookKind::Json => "json",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "wecom" => Some(WebhookKind::WeCom),
            "dingtalk" => Some(WebhookKind::DingTalk),
            "feishu" | "lark" => Some(WebhookKind::Feishu),
            "json" => Some(WebhookKind::Json),
            _ => None,
        }
    }

    /// Whether this kind of robot can check a signature (and so takes a secret).
    pub fn signs(self) -> bool {
        matches!(self, WebhookKind::DingTalk | WebhookKind::Feishu)
    }
}

impl fmt::Display for WebhookKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One webhook target parsed from `ALERT_WEBHOOKS`.
///
/// Its URL (whose query or path holds the robot's access token) and signing secret are
/// private and never shown by `Debug`: that prints the kind and host only.
#[derive(Clone)]
pub struct Webhook {
    /// Which payload, signature and limits this target gets.
    pub kind: WebhookKind,
    /// The URL requests go to, fragment removed.
    url: String,
    /// Host (and port when not the default), the only part of the URL ever shown.
    host: String,
    /// Signing secret, from the URL's fragment.
    secret: Option<String>,
}

impl Webhook {
    /// A webhook of `kind` at `url` (the fragment, if any, is the signing secret).
    pub fn new(kind: WebhookKind, url: &str) -> Result<Self, AlertConfigError> {
        Self::parse_entry(1, kind, url)
    }

    fn parse_entry(entry: usize, kind: WebhookKind, raw: &str) -> Result<Self, AlertConfigError> {
        let raw = raw.trim();
        // Split on the raw text rather than through the URL parser: the secret must stay
        // byte for byte as the robot's settings page showed it, not percent-encoded.
        let (address, secret) = match raw.split_once('#') {
            Some((address, secret)) => (address, Some(secret.trim())),
            None => (raw, None),
        };
        let bad = |reason: &str| AlertConfigError::BadUrl {
            entry,
            reason: reason.to_owned(),
        };
        if address.is_empty() {
            return Err(bad("empty URL"));
        }
        // The parser's errors never echo the URL, so they are safe to show.
        let parsed = reqwest::Url::parse(address).map_err(|e| bad(&e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("scheme must be http or https"));
        }
        let Some(host) = parsed.host_str().filter(|h| !h.is_empty()) else {
            return Err(bad("no host"));
        };
        let host = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let secret = match secret {
            None => None,
            Some("") => return Err(AlertConfigError::EmptySecret { entry }),
            Some(_) if !kind.signs() => {
                return Err(AlertConfigError::UnexpectedSecret {
                    entry,
                    kind: kind.as_str(),
                });
            }
            Some(secret) => Some(secret.to_owned()),
        };
        Ok(Webhook {
            kind,
            url: parsed.to_string(),
            host,
            secret,
        })
    }

    /// The host (and port) requests go to: the only part of the URL that may be shown.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether requests are signed (a secret was configured).
    pub fn is_signed(&self) -> bool {
        self.secret.is_some()
    }

    /// The full URL, access token included: for the sender only, never for logs.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// The signing secret: for the sender only, never for logs.
    pub(crate) fn secret(&self) -> Option<&str> {
        self.secret.as_deref()
    }
}

impl fmt::Debug for Webhook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Webhook")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("signed", &self.secret.is_some())
            .finish_non_exhaustive()
    }
}

/// Why `ALERT_WEBHOOKS` could not be read. Entries are numbered from 1; no message quotes
/// a URL, since URLs carry access tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlertConfigError {
    /// The entry has no `=` between kind and URL.
    #[error(
        "ALERT_WEBHOOKS entry {entry}: expected KIND=URL (KIND: wecom, dingtalk, feishu or json)"
    )]
    MissingKind {
        /// 1-based position in the list.
        entry: usize,
    },
    /// The kind is not one of the known ones.
    #[error(
        "ALERT_WEBHOOKS entry {entry}: unknown kind `{kind}` (expected wecom, dingtalk, feishu or json)"
    )]
    UnknownKind {
        /// 1-based position in the list.
        entry: usize,
        /// The kind as written (at most 32 characters of it).
        kind: String,
    },
    /// The URL does not parse or is not http(s) with a host.
    #[error("ALERT_WEBHOOKS entry {entry}: bad URL: {reason}")]
    BadUrl {
        /// 1-based position in the list.
        entry: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL ends in `#` with nothing after it.
    #[error("ALERT_WEBHOOKS entry {entry}: empty signing secret after `#`")]
    EmptySecret {
        /// 1-based position in the list.
        entry: usize,
    },
    /// A secret was given to a kind that does not sign.
    #[error(
        "ALERT_WEBHOOKS entry {entry}: {kind} does not sign requests; only dingtalk and feishu take a secret after `#`"
    )]
    UnexpectedSecret {
        /// 1-based position in the list.
        entry: usize,
        /// The entry's kind.
        kind: &'static str,
    },
}

/// Parses `ALERT_WEBHOOKS`: a comma-separated list of `KIND=URL` where KIND is
/// wecom|dingtalk|feishu|json (`lark` is taken for feishu); a signing secret for dingtalk/feishu goes in the URL fragment:
/// `dingtalk=https://oapi.dingtalk.com/robot/send?access_token=X#SECabc` (the fragment is
/// never sent). Blank entries (a trailing comma) are skipped; an empty text gives no
/// webhooks. Errors name the entry (1-based) and what is wrong.
pub fn parse_webhooks(text: &str) -> Result<Vec<Webhook>, AlertConfigError> {
    let mut webhooks = Vec::new();
    for (index, entry) in text.split(',').enumerate() {
        let entry_no = index + 1;
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let Some((kind, url)) = entry.split_once('=') else {
            return Err(AlertConfigError::MissingKind { entry: entry_no });
        };
        let kind_text = kind.trim();
        let Some(kind) = WebhookKind::parse(kind_text) else {
            // A kind that looks like a URL means the `KIND=` was forgotten: say so rather
            // than echo a URL, whose query string may hold a token.
            if kind_text.contains(':') || kind_text.contains('/') {
                return Err(AlertConfigError::MissingKind { entry: entry_no });
            }
            return Err(AlertConfigError::UnknownKind {
                entry: entry_no,
                kind: kind_text.chars().take(32).collect(),
            });
        };
        webhooks.push(Webhook::parse_entry(entry_no, kind, url)?);
    }
    Ok(webhooks)
}
