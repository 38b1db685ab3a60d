//! Whole alerters against a fake robot endpoint (an axum server on 127.0.0.1:0), an
//! endpoint that never answers and a closed port.

use super::super::sink::{Answer, Outgoing, Transport};
use super::super::{Alerter, Observation, Tuning};
use super::{FakeRobot, eventually, fast, lane, note, observation, settings};
use base64::Engine as _;
use hmac::{KeyInit, Mac};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;
use wdtpipe_common::metrics::{MetricsRegistry, render};

fn hmac_base64(key: &[u8], message: &[u8]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key");
    mac.update(message);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn content(received: &super::Received) -> String {
    received.body["markdown"]["content"]
        .as_str()
        .expect("wecom markdown content")
        .to_owned()
}

/// A burst of 300 dead letters (2 shops × 3 reasons) over three observations within the
/// batch window reaches the WeCom robot as exactly one message naming every group with its
/// count and link; the metrics count one message sent.
#[tokio::test]
async fn burst_of_dead_letters_is_one_grouped_message() {
    let robot = FakeRobot::spawn().await;
    let hooks = format!("wecom={}/wecom/send?key=K", robot.base);
    let mut registry = MetricsRegistry::default();
    let alerter = Alerter::start_tuned(
        settings(&hooks, Duration::from_millis(400)),
        &mut registry,
        fast(),
    );
    let reasons = ["库存不足 stock short", "商品未匹配", "order closed"];
    let lanes = vec![lane("S1", 150, "", 0), lane("S2", 150, "", 0)];
    for round in 0..3 {
        let mut obs = observation(1_000 + round * 2_000, lanes.clone());
        obs.new_dead_letters = (round * 100..(round + 1) * 100)
            .map(|i| {
                let shop = if i % 2 == 0 { "S1" } else { "S2" };
                note(shop, &format!("T{i}"), reasons[(i as usize / 2) % 3], 900)
            })
            .collect();
        alerter.observe(obs);
    }
    let first = eventually("the message", || robot.at("/wecom").first().cloned()).await;
    alerter.clone().stop().await;
    let all = robot.at("/wecom");
    assert_eq!(all.len(), 1, "one message: {all:#?}");
    assert_eq!(first.body["msgtype"], "markdown");
    let text = content(&first);
    assert!(text.len() <= 4096);
    let blocks: Vec<&str> = text
        .split("\n\n")
        .filter(|b| b.contains("新死信"))
        .collect();
    assert_eq!(blocks.len(), 6, "{text}");
    for shop in ["S1", "S2"] {
        for reason in reasons {
            let block = blocks
                .iter()
                .find(|b| b.contains(&format!("shop {shop} ")) && b.contains(reason))
                .unwrap_or_else(|| panic!("no group {shop}/{reason} in {text}"));
            assert!(block.contains("· 50 条"), "{block}");
            let query = serde_urlencoded::to_string([
                ("shop", shop),
                ("connector", ""),
                ("reason", reason),
            ])
            .expect("encodes");
            assert!(
                block.contains(&format!("(http://console.test/dead-letters?{query})")),
                "{block}"
            );
        }
    }
    let metrics = render(&registry);
    assert!(
        metrics
            .contains(r#"wdtpipe_console_alert_messages_total{webhook="wecom#1",result="sent"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("wdtpipe_console_alerts_firing 2"),
        "{metrics}"
    );
}

/// The DingTalk request carries timestamp and sign that the endpoint, recomputing them
/// from its own copy of the secret, accepts; Feishu's body does the same; a DingTalk robot
/// without a secret gets no signature at all.
#[tokio::test]
async fn signed_dingtalk_and_feishu_payloads_verify() {
    let robot = FakeRobot::spawn().await;
    let hooks = format!(
        "dingtalk={0}/dingtalk/send?access_token=tok1#SECding,\
         feishu={0}/feishu/open-apis/bot/v2/hook/hook1#fsecret,\
         dingtalk={0}/plain/send?access_token=tok2",
        robot.base
    );
    let alerter = Alerter::start_tuned(
        settings(&hooks, Duration::from_millis(20)),
        &mut MetricsRegistry::default(),
        fast(),
    );
    let before_ms = wdtpipe_common::now_ms();
    alerter.observe(observation(1_000, vec![lane("S9", 0, "店铺已停用", 0)]));
    let ding = eventually("dingtalk", || robot.at("/dingtalk/").first().cloned()).await;
    let feishu = eventually("feishu", || robot.at("/feishu/").first().cloned()).await;
    let plain = eventually("plain dingtalk", || robot.at("/plain/").first().cloned()).await;
    let after_ms = wdtpipe_common::now_ms();

    let query: Vec<(String, String)> = serde_urlencoded::from_str(&ding.query).expect("query");
    let get = |key: &str| query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    assert_eq!(get("access_token").as_deref(), Some("tok1"));
    let timestamp = get("timestamp").expect("timestamp");
    let ts: i64 = timestamp.parse().expect("ms");
    assert!((before_ms..=after_ms).contains(&ts), "{ts}");
    let expected = hmac_base64(b"SECding", format!("{timestamp}\nSECding").as_bytes());
    assert_eq!(get("sign"), Some(expected));
    assert_eq!(ding.body["msgtype"], "markdown");
    assert!(
        ding.body["markdown"]["title"]
            .as_str()
            .expect("title")
            .contains("wdtpipe")
    );
    let text = ding.body["markdown"]["text"].as_str().expect("text");
    assert!(text.contains("店铺已停用") && text.contains("(http://console.test/shops)"));

    let seconds = feishu.body["timestamp"].as_str().expect("timestamp string");
    let secs: i64 = seconds.parse().expect("seconds");
    assert!((before_ms / 1000..=after_ms / 1000).contains(&secs));
    let expected = hmac_base64(format!("{seconds}\nfsecret").as_bytes(), b"");
    assert_eq!(feishu.body["sign"].as_str(), Some(expected.as_str()));
    assert_eq!(feishu.body["msg_type"], "interactive");
    let element = &feishu.body["card"]["elements"][0];
    assert_eq!(element["tag"], "markdown");
    assert!(
        element["content"]
            .as_str()
            .expect("md")
            .contains("店铺已停用")
    );

    assert_eq!(plain.query, "access_token=tok2");
    alerter.stop().await;
}

/// A pause then its end give a firing message, then a resolved one saying how long it
/// lasted (JSON and WeCom alike), and the status page follows.
#[tokio::test]
async fn paused_then_resumed_fires_then_resolves() {
    let robot = FakeRobot::spawn().await;
    let hooks = format!("json={0}/json/in,wecom={0}/wecom/send?key=K", robot.base);
    let alerter = Alerter::start_tuned(
        settings(&hooks, Duration::from_millis(20)),
        &mut MetricsRegistry::default(),
        fast(),
    );
    let reason = "接口调用超限 (quota exceeded)";
    alerter.observe(observation(1_000_000, vec![lane("S3", 0, reason, 0)]));
    let fired = eventually("firing", || robot.at("/json").first().cloned()).await;
    let event = &fired.body["events"][0];
    assert_eq!(fired.body["source"], "wdtpipe");
    assert_eq!(event["state"], "firing");
    assert_eq!(event["kind"], "shop_paused");
    assert_eq!(event["shop_no"], "S3");
    assert_eq!(event["reason"], reason);
    assert_eq!(event["url"], "http://console.test/shops");
    assert_eq!(event["since_ms"], 1_000_000);
    let firing = alerter.status().firing;
    assert_eq!(firing.len(), 1);
    assert!(firing[0].summary.contains(reason));

    alerter.observe(observation(1_125_000, vec![lane("S3", 0, "", 0)]));
    let resolved = eventually("resolved", || robot.at("/json").get(1).cloned()).await;
    let event = &resolved.body["events"][0];
    assert_eq!(event["state"], "resolved");
    assert_eq!(event["lasted_ms"], 125_000);
    let wecom = eventually("wecom resolved", || robot.at("/wecom").get(1).cloned()).await;
    let text = content(&wecom);
    assert!(
        text.contains("已恢复 / resolved") && text.contains("2m 5s"),
        "{text}"
    );
    assert!(content(&robot.at("/wecom")[0]).contains(reason));
    eventually("status cleared", || {
        alerter.status().firing.is_empty().then_some(())
    })
    .await;
    alerter.stop().await;
}

/// An in-memory robot that records when each request arrived and which shops it named.
fn recording_transport(log: Arc<Mutex<Vec<(Instant, String)>>>) -> Transport {
    Arc::new(move |outgoing: Outgoing| {
        let body = String::from_utf8_lossy(&outgoing.body).into_owned();
        log.lock().expect("lock").push((Instant::now(), body));
        Box::pin(async {
            Ok(Answer {
                status: 200,
                body: br#"{"errcode":0}"#.to_vec(),
                retry_after: None,
            })
        })
    })
}

/// With a limit of 3 messages per 600 ms, 12 alerts arriving 100 ms apart (12 messages
/// unlimited) never put more than 3 messages in any 600 ms, and every alert still arrives,
/// the held ones merged into later messages.
#[tokio::test]
async fn rate_limit_merges_and_loses_nothing() {
    let log: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
    let window = Duration::from_millis(600);
    let tuning = Tuning {
        limits: Some(vec![(3, window)]),
        transport: Some(recording_transport(log.clone())),
        ..fast()
    };
    let alerter = Alerter::start_tuned(
        settings(
            "wecom=http://robot.test/send?key=K",
            Duration::from_millis(10),
        ),
        &mut MetricsRegistry::default(),
        tuning,
    );
    let shops: Vec<String> = (1..=12).map(|i| format!("P{i:02}")).collect();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for n in 1..=shops.len() {
        tick.tick().await;
        let lanes = shops[..n].iter().map(|s| lane(s, 0, "paused", 0)).collect();
        alerter.observe(observation(n as i64 * 100, lanes));
    }
    eventually("every shop named", || {
        let log = log.lock().expect("lock");
        shops
            .iter()
            .all(|s| {
                log.iter()
                    .any(|(_, body)| body.contains(&format!("shop {s}")))
            })
            .then_some(())
    })
    .await;
    let times: Vec<Instant> = log.lock().expect("lock").iter().map(|(t, _)| *t).collect();
    assert!(
        times.len() < shops.len(),
        "merged: {} messages",
        times.len()
    );
    let slack = Duration::from_millis(30);
    for pair in times.windows(4) {
        assert!(
            pair[3] - pair[0] + slack >= window,
            "4 messages within {window:?}"
        );
    }
    let status = alerter.status();
    assert_eq!(status.webhooks[0].dropped, 0);
    assert_eq!(status.webhooks[0].sent as usize, times.len());
    alerter.stop().await;
}

/// With one robot that accepts connections and never answers and one closed port beside a
/// working robot, observe() returns at once every time, the working robot gets its
/// message while the hung one is still waiting, and the failures are retried and counted
/// without the token in the error.
#[tokio::test]
async fn down_endpoints_delay_neither_observe_nor_other_webhooks() {
    let robot = FakeRobot::spawn().await;
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let silent_addr = silent.local_addr().expect("address");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let closed_addr = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("address")
    };
    let hooks = format!(
        "wecom=http://{silent_addr}/send?key=SECRETKEY,\
         dingtalk=http://{closed_addr}/robot/send?access_token=SECRETTOKEN,\
         wecom={}/wecom/send?key=K",
        robot.base
    );
    let tuning = Tuning {
        request_timeout: Duration::from_secs(1),
        ..fast()
    };
    let alerter = Alerter::start_tuned(
        settings(&hooks, Duration::from_millis(20)),
        &mut MetricsRegistry::default(),
        tuning,
    );
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..500i64 {
        let lanes = (0..50)
            .map(|s| lane(&format!("S{s}"), 0, if i == 0 { "" } else { "paused" }, 0))
            .collect();
        let call = Instant::now();
        alerter.observe(Observation {
            at_ms: i,
            lanes,
            new_dead_letters: vec![note("S0", &format!("T{i}"), "bad sku", i)],
        });
        slowest = slowest.max(call.elapsed());
    }
    assert!(
        slowest < Duration::from_millis(250),
        "slowest observe {slowest:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );

    eventually("the working robot's message", || {
        robot.at("/wecom").first().cloned()
    })
    .await;
    let hung = alerter.status().webhooks[0].clone();
    assert_eq!((hung.sent, hung.failed), (0, 0), "still waiting: {hung:?}");

    let statuses = eventually("both down webhooks to give up", || {
        let status = alerter.status();
        (status.webhooks[0].failed >= 1 && status.webhooks[1].failed >= 1).then_some(status)
    })
    .await;
    for down in &statuses.webhooks[..2] {
        assert_eq!(down.sent, 0);
        assert!(down.retried >= 2, "{down:?}");
        let error = down.last_error.as_deref().expect("an error");
        assert!(!error.contains("SECRET"), "{error}");
        assert!(!format!("{down:?}").contains("SECRET"));
    }
    let error = statuses.webhooks[0]
        .last_error
        .as_deref()
        .unwrap_or_default();
    assert!(error.contains("timed out"), "{error}");
    assert_eq!(statuses.webhooks[2].failed, 0);
    alerter.stop().await;
}

/// Without webhooks nothing starts: observe() is a no-op and the status says disabled.
#[test]
fn no_webhooks_means_no_tasks() {
    let alerter = Alerter::start(
        settings("", Duration::from_millis(20)),
        &mut MetricsRegistry::default(),
    );
    alerter.observe(observation(1, vec![lane("S1", 0, "paused", 0)]));
    let status = alerter.status();
    assert!(!status.enabled && status.firing.is_empty() && status.webhooks.is_empty());
}
