//! What a WDT reply means for the trades of the call (DESIGN.md, "Errors from WDT").

use crate::wdt::Reply;
use std::time::Duration;

/// The verdict on one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// `code` 0: every trade of the call is delivered.
    Delivered { new_count: i32, chg_count: i32 },
    /// Try again later: transport error, 5xx, 429, throttling, a retryable code.
    Transient {
        reason: String,
        retry_after: Option<Duration>,
        throttled: bool,
        /// No answer from WDT itself (transport error, timeout, HTTP 5xx or 429): the
        /// account is unreachable, not this call's trades at fault.
        unreachable: bool,
    },
    /// Our configuration is wrong (sign, timestamp, sid, appkey, endpoint): pause the shop.
    Config { reason: String },
    /// WDT named the rejected tids: dead-letter those, push the rest again.
    RejectedTids { rejected: Vec<(String, String)> },
    /// Rejected without naming a tid: find the culprit by splitting the call.
    Rejected { reason: String },
}

/// Classifies replies with the configured code lists.
#[derive(Debug, Clone, Default)]
pub struct Classifier {
    pub retryable_codes: Vec<i64>,
    pub config_codes: Vec<i64>,
}

/// Phrases of throttling answers ("exceeds the per-minute call frequency", "concurrency",
/// "retry later").
const THROTTLE_PHRASES: &[&str] = &[
    "频率",
    "并发",
    "稍后重试",
    "too many requests",
    "rate limit",
];
/// Phrases that point at our credentials or clock rather than at a trade.
const CONFIG_PHRASES: &[&str] = &[
    "签名",
    "时间戳",
    "卖家账号",
    "接口账号",
    "appkey",
    "appsecret",
];
/// Words (at a word start) that point at our credentials or clock.
const CONFIG_WORDS: &[&str] = &["sign", "timestamp", "sid"];

impl Classifier {
    pub fn classify(&self, reply: &Reply) -> Verdict {
        let (status, retry_after, answer) = match reply {
            Reply::Transport(error) => {
                return Verdict::Transient {
                    reason: format!("transport error: {error}"),
                    retry_after: None,
                    throttled: false,
                    unreachable: true,
                };
            }
            Reply::Http {
                status,
                retry_after,
                answer,
            } => (*status, *retry_after, answer),
        };
        let detail = || match answer {
            Ok(a) => format!("code {}: {}", a.code, a.message),
            Err(e) => e.clone(),
        };
        if status == 429 || status >= 500 {
            return Verdict::Transient {
                reason: format!("HTTP {status}: {}", detail()),
                retry_after,
                throttled: status == 429,
                unreachable: true,
            };
        }
        if !(200..300).contains(&status) {
            return Verdict::Config {
                reason: format!("HTTP {status} from WDT (check WDT_URL): {}", detail()),
            };
        }
        let answer = match answer {
            Ok(answer) => answer,
            Err(e) => {
                return Verdict::Transient {
                    reason: format!("unreadable answer: {e}"),
                    retry_after,
                    throttled: false,
                    unreachable: false,
                };
            }
        };
        if answer.code == 0 {
            return Verdict::Delivered {
                new_count: answer.new_count,
                chg_count: answer.chg_count,
            };
        }
        let reason = format!("code {}: {}", answer.code, answer.message);
        if let Some(rejected) = rejected_tids(&answer.message) {
            return Verdict::RejectedTids { rejected };
        }
        let lower = answer.message.to_lowercase();
        if self.retryable_codes.contains(&answer.code)
            || THROTTLE_PHRASES.iter().any(|p| lower.contains(p))
        {
            return Verdict::Transient {
                reason,
                retry_after,
                throttled: true,
                unreachable: false,
            };
        }
        if self.config_codes.contains(&answer.code)
            || CONFIG_PHRASES.iter().any(|p| lower.contains(p))
            || CONFIG_WORDS.iter().any(|w| has_word_start(&lower, w))
        {
            return Verdict::Config { reason };
        }
        Verdict::Rejected { reason }
    }
}

/// `message` as a JSON array of `{tid, error}`, when it is one naming at least one tid.
fn rejected_tids(message: &str) -> Option<Vec<(String, String)>> {
    let items: Vec<serde_json::Value> = serde_json::from_str(message.trim()).ok()?;
    let rejected: Vec<(String, String)> = items
        .iter()
        .filter_map(|item| {
            let tid = match item.get("tid")? {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let error = match item.get("error") {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            };
            Some((tid, error))
        })
        .collect();
    (!rejected.is_empty()).then_some(rejected)
}

/// True when `word` occurs in `text` not preceded by an ASCII letter, digit or `_`.
fn has_word_start(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let boundary = |c: Option<char>| c.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        // "sign" also covers "signature"; the other words must end too.
        boundary(before) && (word == "sign" || boundary(after))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(reply: &Reply) -> Verdict {
        Classifier {
            retryable_codes: vec![1040],
            config_codes: vec![7],
        }
        .classify(reply)
    }

    #[test]
    fn the_design_table() {
        assert!(matches!(
            classify(&Reply::Transport("refused".into())),
            Verdict::Transient { .. }
        ));
        let http = |status| Reply::Http {
            status,
            retry_after: Some(Duration::from_secs(3)),
            answer: Err("x".into()),
        };
        assert!(matches!(
            classify(&http(503)),
            Verdict::Transient {
                retry_after: Some(_),
                throttled: false,
                ..
            }
        ));
        assert!(matches!(
            classify(&http(429)),
            Verdict::Transient {
                throttled: true,
                ..
            }
        ));
        assert!(matches!(classify(&http(404)), Verdict::Config { .. }));
        assert!(matches!(classify(&http(200)), Verdict::Transient { .. }));
        assert_eq!(
            classify(&Reply::answer(0, "")),
            Verdict::Delivered {
                new_count: 0,
                chg_count: 0
            }
        );
        for throttled in [
            Reply::answer(5, "超过每分钟最大调用频率限制,请稍后重试"),
            Reply::answer(1040, "busy"),
        ] {
            assert!(matches!(
                classify(&throttled),
                Verdict::Transient {
                    throttled: true,
                    ..
                }
            ));
        }
        for config in [
            Reply::answer(102, "签名错误 (sign mismatch)"),
            Reply::answer(1, "invalid signature"),
            Reply::answer(103, "timestamp超出允许范围"),
            Reply::answer(100, "sid不存在"),
            Reply::answer(101, "appkey不存在"),
            Reply::answer(7, "anything"),
        ] {
            assert!(
                matches!(classify(&config), Verdict::Config { .. }),
                "{config:?}"
            );
        }
        assert_eq!(
            classify(&Reply::answer(
                99,
                r#"[{"tid":"T1","error":"bad"},{"tid":2,"error":"worse"}]"#
            )),
            Verdict::RejectedTids {
                rejected: vec![("T1".into(), "bad".into()), ("2".into(), "worse".into())]
            }
        );
        for rejected in [
            Reply::answer(99, "buyer_nick 不能为空"),
            Reply::answer(99, "design fault"),
            Reply::answer(99, "[]"),
        ] {
            assert!(
                matches!(classify(&rejected), Verdict::Rejected { .. }),
                "{rejected:?}"
            );
        }
    }
}
