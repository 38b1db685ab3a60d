//! Pure parts: parsing ALERT_WEBHOOKS, the rules, rendering, signing, answers, rate limit.

use super::super::config::{AlertConfigError, WebhookKind, parse_webhooks};
use super::super::message::{self, WECOM_CONTENT_BYTES};
use super::super::rules::{AlertEvent, Batch, Detail, EventState, MAX_GROUPS, Rules};
use super::super::sink::{self, Answer, Outcome, RateLimiter};
use super::super::{AlertKind, Observation};
use super::{CONSOLE, lane, note, observation};
use std::time::Duration;
use tokio::time::Instant;

fn batch(observation: Observation) -> Batch {
    let mut batch = Batch::default();
    batch.merge(observation);
    batch
}

/// A list of every kind parses, with whitespace, a trailing comma and secrets taken from
/// the fragments; DingTalk without a secret (keyword security) is allowed.
#[test]
fn parses_a_good_list() {
    let hooks = parse_webhooks(
        " wecom=https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K1 ,\
         DingTalk=https://oapi.dingtalk.com/robot/send?access_token=T1#SECabc,\
         dingtalk=https://oapi.dingtalk.com/robot/send?access_token=T2,\
         feishu=https://open.feishu.cn/open-apis/bot/v2/hook/H1#fsecret,\
         json=http://127.0.0.1:9000/alerts,",
    )
    .expect("parses");
    let kinds: Vec<WebhookKind> = hooks.iter().map(|h| h.kind).collect();
    assert_eq!(
        kinds,
        [
            WebhookKind::WeCom,
            WebhookKind::DingTalk,
            WebhookKind::DingTalk,
            WebhookKind::Feishu,
            WebhookKind::Json
        ]
    );
    assert_eq!(hooks[1].secret(), Some("SECabc"));
    assert_eq!(
        hooks[1].url(),
        "https://oapi.dingtalk.com/robot/send?access_token=T1"
    );
    assert!(!hooks[2].is_signed());
    assert_eq!(hooks[3].secret(), Some("fsecret"));
    assert_eq!(hooks[4].host(), "127.0.0.1:9000");
    assert!(parse_webhooks("  ").expect("empty is fine").is_empty());
}

/// Bad entries are reported by 1-based position and cause, without quoting the URL.
#[test]
fn rejects_bad_entries_by_position() {
    let err = parse_webhooks("wecom=https://a.example/x?key=K,slack=https://b.example/")
        .expect_err("unknown kind");
    assert_eq!(
        err,
        AlertConfigError::UnknownKind {
            entry: 2,
            kind: "slack".into()
        }
    );
    let err =
        parse_webhooks("json=https://a.example/,wecom=not a url?key=TOKEN").expect_err("bad url");
    assert!(
        matches!(err, AlertConfigError::BadUrl { entry: 2, .. }),
        "{err:?}"
    );
    assert!(!err.to_string().contains("TOKEN"), "{err}");
    let err = parse_webhooks("ftp=x,wecom=ftp://a.example/").expect_err("bad kind first");
    assert!(matches!(
        err,
        AlertConfigError::UnknownKind { entry: 1, .. }
    ));
    let err = parse_webhooks("wecom=ftp://a.example/").expect_err("scheme");
    assert!(err.to_string().contains("http or https"), "{err}");
    let err = parse_webhooks("https://qyapi.weixin.qq.com/send?key=TOKEN").expect_err("no kind");
    assert_eq!(err, AlertConfigError::MissingKind { entry: 1 });
    assert!(!err.to_string().contains("TOKEN"));
    let err = parse_webhooks("wecom=https://a.example/?key=K#SEC").expect_err("wecom signs not");
    assert!(matches!(
        err,
        AlertConfigError::UnexpectedSecret { entry: 1, .. }
    ));
    let err = parse_webhooks("feishu=https://a.example/hook/H#").expect_err("empty secret");
    assert_eq!(err, AlertConfigError::EmptySecret { entry: 1 });
}

/// Debug output of webhooks and settings shows kind and host, never secrets or tokens.
#[test]
fn debug_hides_secrets_and_tokens() {
    let hooks = parse_webhooks(
        "dingtalk=https://oapi.dingtalk.com/robot/send?access_token=TOKEN1#SECsecret,\
         feishu=https://open.feishu.cn/open-apis/bot/v2/hook/HOOKTOKEN#fsecret",
    )
    .expect("parses");
    let settings = super::super::AlertSettings::new(hooks, CONSOLE);
    let text = format!("{settings:?} {settings:#?}");
    for secret in [
        "TOKEN1",
        "SECsecret",
        "HOOKTOKEN",
        "fsecret",
        "access_token",
    ] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(text.contains("oapi.dingtalk.com") && text.contains("DingTalk"));
}

/// A pause fires once, is not fired again while it lasts, and resolves saying how long.
#[test]
fn pause_fires_once_and_resolves_with_duration() {
    let mut rules = Rules::new(600);
    let first = rules.apply(batch(observation(
        1_000,
        vec![lane("S1", 0, "权限不足", 0)],
    )));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].state, EventState::Firing);
    assert_eq!(
        first[0].detail,
        Detail::Paused {
            reason: "权限不足".into()
        }
    );
    let again = rules.apply(batch(observation(
        3_000,
        vec![lane("S1", 0, "权限不足", 0)],
    )));
    assert!(again.is_empty(), "{again:?}");
    let done = rules.apply(batch(observation(61_000, vec![lane("S1", 0, "", 0)])));
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].state, EventState::Resolved { lasted_ms: 60_000 });
    assert!(rules.firing().is_empty());
}

/// Oldest waiting fires only above the threshold, resolves at or below it, and a lane
/// missing from a later observation resolves both pause and oldest waiting.
#[test]
fn oldest_waiting_threshold_and_absent_lane() {
    let mut rules = Rules::new(600);
    assert!(
        rules
            .apply(batch(observation(0, vec![lane("S1", 0, "", 600_000)])))
            .is_empty()
    );
    let fired = rules.apply(batch(observation(1, vec![lane("S1", 0, "p", 600_001)])));
    let kinds: Vec<AlertKind> = fired.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [AlertKind::ShopPaused, AlertKind::OldestWaiting]);
    let gone = rules.apply(batch(observation(5_001, vec![])));
    assert_eq!(gone.len(), 2);
    assert!(
        gone.iter()
            .all(|e| e.state == EventState::Resolved { lasted_ms: 5_000 })
    );
}

/// Dead-letter groups make an event each (notes without tid or time count but are no
/// sample and no start); the lane's alert resolves when its count is 0, but not in the
/// batch that brought new dead letters.
#[test]
fn dead_letters_group_and_clear() {
    let mut rules = Rules::new(600);
    let mut obs = observation(10, vec![lane("S1", 3, "", 0)]);
    obs.new_dead_letters = vec![
        note("S1", "T1", "a", 5),
        note("S1", "T2", "a", 6),
        note("S1", "", "a", 0),
        note("S1", "T3", "b", 7),
    ];
    let events = rules.apply(batch(obs));
    assert_eq!(events.len(), 2);
    assert_eq!(
        events[0].detail,
        Detail::DeadLetters {
            reason: "a".into(),
            count: 3,
            sample_tids: vec!["T1".into(), "T2".into()]
        }
    );
    assert_eq!(events[0].since_ms, 5);
    let mut same = observation(20, vec![lane("S1", 0, "", 0)]);
    same.new_dead_letters = vec![note("S1", "T4", "a", 19)];
    let events = rules.apply(batch(same));
    assert_eq!(
        events.len(),
        1,
        "no 'cleared' along with new ones: {events:?}"
    );
    let events = rules.apply(batch(observation(30, vec![])));
    assert!(events.is_empty(), "absent lane keeps dead letters firing");
    let events = rules.apply(batch(observation(40, vec![lane("S1", 0, "", 0)])));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].state, EventState::Resolved { lasted_ms: 35 });
}

/// A flood of distinct reasons stays within MAX_GROUPS groups, the surplus counted.
#[test]
fn dead_letter_groups_are_bounded() {
    let mut obs = observation(0, vec![]);
    obs.new_dead_letters = (0..MAX_GROUPS + 50)
        .map(|i| note("S1", &format!("T{i}"), &format!("reason {i}"), 0))
        .collect();
    let batch = batch(obs);
    assert_eq!(batch.dead.len(), MAX_GROUPS + 1);
    let total: u64 = batch.dead.values().map(|g| g.count).sum();
    assert_eq!(total, (MAX_GROUPS + 50) as u64);
}

fn dead_event(shop: &str, reason: &str) -> AlertEvent {
    AlertEvent {
        state: EventState::Firing,
        kind: AlertKind::DeadLetters,
        connector: "erp2".into(),
        shop_no: shop.into(),
        detail: Detail::DeadLetters {
            reason: reason.into(),
            count: 7,
            sample_tids: vec!["T1".into()],
        },
        since_ms: 0,
        at_ms: 0,
    }
}

/// Truncation never splits a character, keeps each robot's limit and says how many
/// events were left out.
#[test]
fn long_messages_are_cut_on_char_boundaries_with_a_count() {
    assert_eq!(message::truncate_utf8("死信ab", 4), "死");
    let reason = "库存不足，".repeat(100);
    let events: Vec<AlertEvent> = (0..200)
        .map(|i| dead_event(&format!("S{i:03}"), &reason))
        .collect();
    let body = message::render(WebhookKind::WeCom, CONSOLE, &events, 0).body;
    let content = body["markdown"]["content"].as_str().expect("content");
    assert!(content.len() <= WECOM_CONTENT_BYTES, "{}", content.len());
    let shown = content.matches("新死信 / new dead letters**").count();
    let more = format!("…还有 {0} 项 / and {0} more", 200 - shown);
    assert!(shown > 0 && content.ends_with(&more), "{shown}: {content}");
    let feishu = message::render(WebhookKind::Feishu, CONSOLE, &events, 0).body;
    assert!(feishu.to_string().len() <= 20 * 1024);
    assert_eq!(feishu["card"]["elements"][0]["tag"], "markdown");
}

/// Links go to the console's pages with their parameters URL-encoded.
#[test]
fn links_are_encoded() {
    let event = dead_event("S 1&x", "库存 不足");
    assert_eq!(
        message::link("http://c.test/", &event),
        "http://c.test/dead-letters?shop=S+1%26x&connector=erp2&reason=%E5%BA%93%E5%AD%98+%E4%B8%8D%E8%B6%B3"
    );
}

/// The signatures equal vectors computed with Python's hmac (DingTalk's also matches a
/// published one), and the DingTalk one is URL-encoded on the query string.
#[test]
fn signatures_match_reference_vectors() {
    assert_eq!(
        sink::dingtalk_sign("secret", 1_700_000_000_000),
        "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
    );
    assert_eq!(
        sink::feishu_sign("feishu-secret", 1_700_000_000),
        "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="
    );
    let hooks =
        parse_webhooks("dingtalk=https://d.test/robot/send?access_token=T#secret").expect("parses");
    let rendered = message::render(WebhookKind::DingTalk, CONSOLE, &[dead_event("S", "r")], 0);
    let out = sink::request(&hooks[0], &rendered, 1_700_000_000_000);
    assert_eq!(
        out.url,
        "https://d.test/robot/send?access_token=T&timestamp=1700000000000\
         &sign=OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D"
    );
}

fn answer(status: u16, body: &str) -> Result<Answer, String> {
    Ok(Answer {
        status,
        body: body.as_bytes().to_vec(),
        retry_after: None,
    })
}

/// Answers: success codes, rate-limit codes, permanent refusals and retryable failures.
#[test]
fn answers_are_classified() {
    use WebhookKind::*;
    assert_eq!(
        sink::classify(WeCom, answer(200, r#"{"errcode":0}"#)),
        Outcome::Sent
    );
    assert_eq!(
        sink::classify(Feishu, answer(200, r#"{"StatusCode":0}"#)),
        Outcome::Sent
    );
    assert_eq!(sink::classify(Json, answer(204, "")), Outcome::Sent);
    assert!(matches!(
        sink::classify(WeCom, answer(200, r#"{"errcode":45009,"errmsg":"freq"}"#)),
        Outcome::Limited(..)
    ));
    assert!(matches!(
        sink::classify(DingTalk, answer(200, r#"{"errcode":410100}"#)),
        Outcome::Limited(..)
    ));
    assert!(matches!(
        sink::classify(Json, answer(429, "")),
        Outcome::Limited(..)
    ));
    assert!(matches!(
        sink::classify(DingTalk, answer(200, r#"{"errcode":310000,"errmsg":"sign not match"}"#)),
        Outcome::Permanent(e) if e.contains("310000") && e.contains("sign not match")
    ));
    assert!(matches!(
        sink::classify(
            Feishu,
            answer(200, r#"{"code":19021,"msg":"sign match fail"}"#)
        ),
        Outcome::Permanent(..)
    ));
    assert!(matches!(
        sink::classify(Json, answer(404, "")),
        Outcome::Permanent(..)
    ));
    assert!(matches!(
        sink::classify(WeCom, answer(502, "")),
        Outcome::Retry(..)
    ));
    assert!(matches!(
        sink::classify(WeCom, answer(200, "<html>")),
        Outcome::Retry(..)
    ));
    assert!(matches!(
        sink::classify(WeCom, Err("could not connect".into())),
        Outcome::Retry(..)
    ));
}

/// With the documented 20 a minute, a sender that goes as soon as allowed sends 20 at
/// once, then waits for the minute to roll: no 60 s window ever holds more than 20.
#[test]
fn rate_limiter_allows_twenty_a_rolling_minute() {
    let mut limiter = RateLimiter::new(RateLimiter::limits_of(WebhookKind::DingTalk));
    let base = Instant::now();
    let mut now = base;
    let mut times = Vec::new();
    for _ in 0..45 {
        if let Some(at) = limiter.ready_at(now) {
            assert!(at > now);
            now = at;
        }
        limiter.record(now);
        times.push(now);
        now += Duration::from_millis(500);
    }
    assert_eq!(times[19], base + Duration::from_millis(9_500));
    assert_eq!(times[20], base + Duration::from_secs(60));
    for (i, t) in times.iter().enumerate() {
        let in_minute = times[i..]
            .iter()
            .filter(|u| **u < *t + Duration::from_secs(60))
            .count();
        assert!(in_minute <= 20, "{in_minute} within a minute from #{i}");
    }
    let mut feishu = RateLimiter::new(RateLimiter::limits_of(WebhookKind::Feishu));
    for _ in 0..5 {
        assert!(feishu.ready_at(base).is_none());
        feishu.record(base);
    }
    assert_eq!(feishu.ready_at(base), Some(base + Duration::from_secs(1)));
}
