//! The WDT `trade_push.php` client: builds the signed form, POSTs it, reads the answer.

use crate::config::WdtConfig;
use std::time::Duration;
use wdtpipe_common::trade_json::trade_list_json;
use wdtpipe_common::{form, sign};
use wdtpipe_proto::v1::TradeOrder;

/// What came back from one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// No HTTP answer: connect error, timeout, dropped connection.
    Transport(String),
    /// An HTTP answer.
    Http {
        status: u16,
        retry_after: Option<Duration>,
        /// The parsed WDT answer, or why the body could not be read.
        answer: Result<Answer, String>,
    },
}

impl Reply {
    /// An HTTP 200 carrying WDT's answer `code` with `message` (no counts, no
    /// `Retry-After`): how scripted WDTs in tests answer.
    pub fn answer(code: i64, message: impl Into<String>) -> Self {
        Reply::Http {
            status: 200,
            retry_after: None,
            answer: Ok(Answer {
                code,
                message: message.into(),
                new_count: 0,
                chg_count: 0,
            }),
        }
    }
}

/// WDT's JSON answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub code: i64,
    pub message: String,
    pub new_count: i32,
    pub chg_count: i32,
}

/// A future returned by [`WdtApi`].
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// One `trade_push` call as [`WdtApi`] takes it: the trades of one lane.
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// The lane pushed: a shop within a WDT account (see
    /// [`wdtpipe_common::connectors::lane`]). A single [`WdtClient`] takes it as the shop.
    pub lane: &'a str,
    pub trades: &'a [&'a TradeOrder],
}

/// The part of WDT deliver talks to. [`Accounts`] (or one [`WdtClient`]) is the real thing;
/// tests may script replies to watch the retry schedule under a paused clock.
pub trait WdtApi: Send + Sync + 'static {
    /// Pushes trades of one lane in one call.
    fn trade_push<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Reply>;
    /// Where calls go, for logs.
    fn endpoint(&self) -> &str;
}

impl WdtApi for WdtClient {
    fn trade_push<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Reply> {
        Box::pin(WdtClient::trade_push(self, call.lane, call.trades))
    }

    fn endpoint(&self) -> &str {
        &self.endpoint
    }
}

/// Signs and sends `trade_push` calls.
#[derive(Clone)]
pub struct WdtClient {
    http: reqwest::Client,
    endpoint: String,
    config: WdtConfig,
}

impl std::fmt::Debug for WdtClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WdtClient")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl WdtClient {
    pub fn new(config: WdtConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_secs(5))
            .pool_max_idle_per_host(16)
            .tcp_nodelay(true)
            .user_agent(concat!("wdt-pipeline/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let endpoint = format!("{}/trade_push.php", config.url.trim_end_matches('/'));
        Ok(Self {
            http,
            endpoint,
            config,
        })
    }

    /// The URL calls go to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The seller account calls are made for.
    pub fn sid(&self) -> &str {
        &self.config.sid
    }

    /// The signed form fields of a `trade_push` call at `timestamp` (Unix seconds).
    pub fn form(
        &self,
        shop_no: &str,
        trades: &[&TradeOrder],
        timestamp: i64,
    ) -> Vec<(&'static str, String)> {
        let mut fields: Vec<(&'static str, String)> = vec![
            ("sid", self.config.sid.clone()),
            ("appkey", self.config.appkey.clone()),
            ("timestamp", timestamp.to_string()),
            ("shop_no", shop_no.to_owned()),
            ("switch", self.config.switch.to_string()),
            ("trade_list", trade_list_json(trades.iter().copied())),
        ];
        let signature = sign::sign(
            fields.iter().map(|(k, v)| (*k, v.as_str())),
            self.config.appsecret.expose(),
        );
        fields.push(("sign", signature));
        fields
    }

    /// Pushes trades of one shop in one call.
    pub async fn trade_push(&self, shop_no: &str, trades: &[&TradeOrder]) -> Reply {
        let timestamp = jiff::Timestamp::now().as_second();
        let form = self.form(shop_no, trades, timestamp);
        let body = form::encode(form.iter().map(|(k, v)| (*k, v.as_str())));
        let response = self
            .http
            .post(&self.endpoint)
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(body)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return Reply::Transport(describe(&e)),
        };
        let status = response.status().as_u16();
        let retry_after = wdtpipe_common::request::retry_after(response.headers());
        let answer = match read_capped(response).await {
            Ok(Some(bytes)) => parse_answer(&bytes),
            Ok(None) => Err(format!(
                "answer longer than {MAX_ANSWER_BYTES} bytes; not read"
            )),
            Err(e) => return Reply::Transport(describe(&e)),
        };
        Reply::Http {
            status,
            retry_after,
            answer,
        }
    }
}

/// The longest answer deliver reads from WDT: its answers are a few hundred bytes, and a
/// proxy's error page a few kilobytes; more is not read into memory.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

/// The answer's body, `None` when it is longer than [`MAX_ANSWER_BYTES`].
async fn read_capped(mut response: reqwest::Response) -> Result<Option<Vec<u8>>, reqwest::Error> {
    if response
        .content_length()
        .is_some_and(|len| len > MAX_ANSWER_BYTES as u64)
    {
        return Ok(None);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Ok(None);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Some(body))
}

/// A transport error with its causes, without the URL's query (there is none) or secrets
/// (the form is never part of an error).
fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads WDT's answer; `code` and the counts may be numbers or numeric strings, `message`
/// a string or any JSON (kept as its JSON text).
pub fn parse_answer(body: &[u8]) -> Result<Answer, String> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| format!("answer is not JSON: {e}: {}", snippet(body)))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("answer is not a JSON object: {}", snippet(body)))?;
    let int = |key: &str| -> Option<i64> {
        match object.get(key)? {
            serde_json::Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
            serde_json::Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let code =
        int("code").ok_or_else(|| format!("answer has no numeric code: {}", snippet(body)))?;
    let message = match object.get("message") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    };
    let count = |key: &str| int(key).and_then(|v| i32::try_from(v).ok()).unwrap_or(0);
    Ok(Answer {
        code,
        message,
        new_count: count("new_count"),
        chg_count: count("chg_count"),
    })
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// Every WDT account deliver pushes with: each lane (a shop within an account, see
/// [`wdtpipe_common::connectors::lane`]) is pushed with its account's client, signed with
/// that account's secret.
#[derive(Debug)]
pub struct Accounts {
    default: WdtClient,
    others: std::collections::HashMap<String, WdtClient>,
}

impl Accounts {
    /// A client for every account of `config`.
    pub fn new(config: &crate::config::DeliverConfig) -> Result<Self, reqwest::Error> {
        let mut others = std::collections::HashMap::new();
        for (name, account) in &config.connectors {
            others.insert(name.clone(), WdtClient::new(account.clone())?);
        }
        Ok(Self {
            default: WdtClient::new(config.wdt.clone())?,
            others,
        })
    }

    /// Every account's client, `default` first.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &WdtClient)> {
        std::iter::once((wdtpipe_common::connectors::DEFAULT, &self.default)).chain(
            self.others
                .iter()
                .map(|(name, client)| (name.as_str(), client)),
        )
    }

    fn client(&self, connector: &str) -> Option<&WdtClient> {
        if connector.is_empty() || connector == wdtpipe_common::connectors::DEFAULT {
            Some(&self.default)
        } else {
            self.others.get(connector)
        }
    }
}

impl WdtApi for Accounts {
    fn trade_push<'a>(&'a self, call: Call<'a>) -> BoxFuture<'a, Reply> {
        let (shop_no, connector) = wdtpipe_common::connectors::split_lane(call.lane);
        match self.client(connector) {
            Some(client) => Box::pin(client.trade_push(shop_no, call.trades)),
            // Only an outbox written under another CONNECTORS_FILE holds such a lane: its
            // shop pauses (a configuration error) until the account is configured again.
            None => Box::pin(std::future::ready(Reply::Http {
                status: 400,
                retry_after: None,
                answer: Err(format!(
                    "connector {connector:?} is not configured at this deliver (CONNECTORS_FILE)"
                )),
            })),
        }
    }

    fn endpoint(&self) -> &str {
        self.default.endpoint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_with_numbers_or_strings() {
        let a = parse_answer(br#"{"code":0,"message":"","new_count":2,"chg_count":"1"}"#).unwrap();
        assert_eq!((a.code, a.new_count, a.chg_count), (0, 2, 1));
        let a = parse_answer(br#"{"code":"1040","message":"slow down"}"#).unwrap();
        assert_eq!((a.code, a.message.as_str()), (1040, "slow down"));
        let a = parse_answer(br#"{"code":99,"message":[{"tid":"T1","error":"x"}]}"#).unwrap();
        assert_eq!(a.message, r#"[{"error":"x","tid":"T1"}]"#);
        assert!(parse_answer(b"<html>").is_err());
        assert!(parse_answer(br#"{"message":"no code"}"#).is_err());
    }

    #[test]
    fn form_is_signed_over_the_exact_text_sent() {
        let client = WdtClient::new(WdtConfig {
            url: "http://127.0.0.1:1/openapi2/".into(),
            sid: "test2".into(),
            appkey: "test2-xx".into(),
            appsecret: wdtpipe_common::config::Secret::new("12345"),
            ..WdtConfig::default()
        })
        .unwrap();
        assert_eq!(
            client.endpoint(),
            "http://127.0.0.1:1/openapi2/trade_push.php"
        );
        let trade = TradeOrder {
            tid: "T1".into(),
            buyer_nick: "你好".into(),
            ..TradeOrder::default()
        };
        let form = client.form("SHOP", &[&trade], 1_470_042_310);
        let get = |k: &str| {
            form.iter()
                .find(|(key, _)| *key == k)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert!(get("trade_list").contains("\"buyer_nick\":\"你好\""));
        let unsigned: Vec<(&str, &str)> = form
            .iter()
            .filter(|(k, _)| *k != "sign")
            .map(|(k, v)| (*k, v.as_str()))
            .collect();
        assert!(sign::verify(unsigned, "12345", &get("sign")));
        assert_eq!(get("switch"), "1");
    }

    /// An answer longer than MAX_ANSWER_BYTES is not read into memory: the call is an HTTP
    /// answer whose body could not be read.
    #[tokio::test]
    async fn long_answers_are_not_read() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            for chunked in [false, true] {
                let (mut socket, _) = listener.accept().await.unwrap();
                let mut request = vec![0; 64 * 1024];
                let _ = socket.read(&mut request).await;
                let body = vec![b' '; MAX_ANSWER_BYTES + 1];
                let head = if chunked {
                    // No length announced: the body is cut off while it streams.
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                        body.len()
                    )
                } else {
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                };
                let _ = socket.write_all(head.as_bytes()).await;
                let _ = socket.write_all(&body).await;
                if chunked {
                    let _ = socket.write_all(b"\r\n0\r\n\r\n").await;
                }
            }
        });
        let client = WdtClient::new(WdtConfig {
            url: format!("http://{addr}"),
            sid: "s".into(),
            appkey: "k".into(),
            appsecret: "x".to_owned().into(),
            ..WdtConfig::default()
        })
        .unwrap();
        for _ in 0..2 {
            let reply = client.trade_push("S", &[]).await;
            let Reply::Http { status, answer, .. } = reply else {
                panic!("{reply:?}");
            };
            assert_eq!(status, 200);
            assert_eq!(
                answer,
                Err(format!(
                    "answer longer than {MAX_ANSWER_BYTES} bytes; not read"
                ))
            );
        }
    }
}
