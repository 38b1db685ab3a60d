//! `trade_push.php` over real HTTP: a sandbox on `127.0.0.1:0`, signed form requests.

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use wdtpipe_sandbox::{Faults, Sandbox, SandboxConfig, serve};

const SHOP: &str = "shop-1";
/// Where `trade_push.php` is served, and the content type of its form.
const PUSH_PATH: &str = "/openapi2/trade_push.php";
const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";

/// A sandbox served on an ephemeral port, stopped when dropped.
struct Spawned {
    base: String,
    sandbox: Sandbox,
    client: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

async fn spawn(config: SandboxConfig) -> Spawned {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let sandbox = Sandbox::new(config);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(serve(sandbox.clone(), listener, async {
        let _ = stopped.await;
    }));
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    Spawned {
        base,
        sandbox,
        client,
        _stop: stop,
    }
}

/// A sandbox served with `faults` injected from the start.
async fn spawn_faulty(faults: Faults) -> Spawned {
    spawn(SandboxConfig {
        faults,
        ..SandboxConfig::default()
    })
    .await
}

fn now_secs() -> i64 {
    wdtpipe_common::now_ms() / 1000
}

/// The fields of a call for `shop_no` carrying `trades`, signed with `secret`.
fn signed_fields(
    config: &SandboxConfig,
    trades: &[Value],
    timestamp: i64,
    secret: &str,
) -> Vec<(String, String)> {
    let mut fields = vec![
        ("sid".to_owned(), config.sid.clone()),
        ("appkey".to_owned(), config.appkey.clone()),
        ("timestamp".to_owned(), timestamp.to_string()),
        ("shop_no".to_owned(), SHOP.to_owned()),
        ("switch".to_owned(), "1".to_owned()),
        (
            "trade_list".to_owned(),
            serde_json::to_string(trades).unwrap(),
        ),
    ];
    resign(&mut fields, secret);
    fields
}

fn resign(fields: &mut Vec<(String, String)>, secret: &str) {
    fields.retain(|(k, _)| k != "sign");
    let sign =
        wdtpipe_common::sign::sign(fields.iter().map(|(k, v)| (k.as_str(), v.as_str())), secret);
    fields.push(("sign".to_owned(), sign));
}

/// A valid trade whose paid identity holds: 2 × 10.00 − 1 + 5 post = 24.
fn trade(tid: &str) -> Value {
    json!({
        "tid": tid, "trade_status": 30, "pay_status": 2, "delivery_term": 1,
        "trade_time": "2024-05-01 10:00:00", "pay_time": "2024-05-01 10:01:00",
        "buyer_nick": "张三", "receiver_name": "张三", "receiver_province": "浙江省",
        "receiver_address": "西湖区某路1号", "receiver_mobile": "13800000000",
        "logistics_type": -1,
        "post_amount": "5", "cod_amount": "0", "ext_cod_fee": "0", "other_amount": "0",
        "paid": "24.00",
        "order_list": [{
            "oid": format!("{tid}-1"), "num": "2", "price": "10.00", "status": 30,
            "refund_status": 0, "goods_id": "G1", "spec_no": "SKU1", "goods_name": "杯子",
            "adjust_amount": "0", "discount": "0", "share_discount": "1"
        }]
    })
}

impl Spawned {
    fn config(&self) -> &SandboxConfig {
        self.sandbox.config()
    }

    /// Pushes `trades` correctly signed, now.
    async fn push(&self, trades: &[Value]) -> (u16, Value) {
        answer_of(self.send_push(trades).await.unwrap()).await
    }

    /// Pushes `trades` correctly signed, now, and hands back the raw HTTP answer or the
    /// transport error, for tests that look at headers or at a dropped connection.
    async fn send_push(&self, trades: &[Value]) -> reqwest::Result<reqwest::Response> {
        let config = self.config();
        let fields = signed_fields(config, trades, now_secs(), &config.appsecret);
        self.send(
            FORM,
            serde_urlencoded::to_string(fields).unwrap(),
            PUSH_PATH,
        )
        .await
    }

    async fn post_form(&self, fields: &[(String, String)]) -> (u16, Value) {
        let body = serde_urlencoded::to_string(fields).unwrap();
        self.post(FORM, body, PUSH_PATH).await
    }

    async fn post(&self, content_type: &str, body: String, path: &str) -> (u16, Value) {
        answer_of(self.send(content_type, body, path).await.unwrap()).await
    }

    async fn send(
        &self,
        content_type: &str,
        body: String,
        path: &str,
    ) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (
            status,
            serde_json::from_str(&response.text().await.unwrap()).unwrap(),
        )
    }
}

/// An answer's status and body: its JSON, or its text when it is not JSON.
async fn answer_of(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// A code 99 message parsed as its `[{tid, error}]` array.
fn tid_errors(answer: &Value) -> Vec<(String, String)> {
    let message = answer["message"].as_str().unwrap();
    let list: Vec<Value> = serde_json::from_str(message).unwrap();
    list.iter()
        .map(|e| {
            (
                e["tid"].as_str().unwrap().to_owned(),
                e["error"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// A valid push is answered code 0 with new_count 1, stored exactly as sent, and visible
/// over `/sandbox/trades`.
#[tokio::test]
async fn valid_push_is_stored() {
    let s = spawn(SandboxConfig::default()).await;
    let sent = trade("T1");
    let (status, answer) = s.push(std::slice::from_ref(&sent)).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"code": 0, "message": "", "new_count": 1, "chg_count": 0})
    );
    let stored = s.sandbox.trade("T1").unwrap();
    assert_eq!((stored.shop_no.as_str(), stored.versions), (SHOP, 1));
    assert_eq!(stored.trade, sent);
    let (status, listed) = s.get("/sandbox/trades").await;
    assert_eq!(status, 200);
    assert_eq!(listed[0]["tid"], "T1");
    assert_eq!(s.get("/sandbox/trades/T1").await.1["trade"], sent);
    assert_eq!(s.get("/sandbox/trades/NOPE").await.0, 404);
    let calls = s.sandbox.calls();
    assert_eq!(calls.len(), 1);
    assert!(calls[0].sign_ok);
    assert_eq!((calls[0].code, calls[0].new_count), (0, 1));
    assert_eq!(calls[0].tids, ["T1"]);
}

/// A second push of the same tid is an update: chg_count 1, versions 2, both in history.
#[tokio::test]
async fn second_push_is_a_change() {
    let s = spawn(SandboxConfig::default()).await;
    s.push(&[trade("T1")]).await;
    let mut updated = trade("T1");
    updated["trade_status"] = json!(70);
    updated["order_list"][0]["status"] = json!(70);
    let (_, answer) = s.push(&[updated.clone(), trade("T2")]).await;
    assert_eq!(
        answer,
        json!({"code": 0, "message": "", "new_count": 1, "chg_count": 1})
    );
    let stored = s.sandbox.trade("T1").unwrap();
    assert_eq!(stored.versions, 2);
    assert_eq!(stored.history, vec![trade("T1"), updated.clone()]);
    assert_eq!(stored.trade, updated);
    let tids: Vec<String> = s.sandbox.trades().into_iter().map(|t| t.tid).collect();
    assert_eq!(tids, ["T1", "T2"]);
}

/// A wrong signature answers 102 and stores nothing; the call is logged as not sign_ok.
#[tokio::test]
async fn bad_sign_is_102() {
    let s = spawn(SandboxConfig::default()).await;
    let fields = signed_fields(s.config(), &[trade("T1")], now_secs(), "wrong-secret");
    let (status, answer) = s.post_form(&fields).await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"code": 102, "message": "签名错误 (sign mismatch)"})
    );
    assert!(s.sandbox.trades().is_empty());
    let calls = s.sandbox.calls();
    assert_eq!((calls[0].code, calls[0].sign_ok), (102, false));
}

/// A field changed after signing breaks the signature too.
#[tokio::test]
async fn tampered_field_is_102() {
    let s = spawn(SandboxConfig::default()).await;
    let config = s.config().clone();
    let mut fields = signed_fields(&config, &[trade("T1")], now_secs(), &config.appsecret);
    fields[3].1 = "shop-2".to_owned();
    assert_eq!(s.post_form(&fields).await.1["code"], 102);
}

/// A timestamp an hour old (or absurdly far off) answers 103.
#[tokio::test]
async fn stale_timestamp_is_103() {
    let s = spawn(SandboxConfig::default()).await;
    let config = s.config().clone();
    let fields = signed_fields(
        &config,
        &[trade("T1")],
        now_secs() - 3600,
        &config.appsecret,
    );
    let (_, answer) = s.post_form(&fields).await;
    assert_eq!(answer["code"], 103);
    for timestamp in [i64::MIN, i64::MAX] {
        let fields = signed_fields(&config, &[trade("T1")], timestamp, &config.appsecret);
        assert_eq!(s.post_form(&fields).await.1["code"], 103);
    }
    assert!(s.sandbox.trades().is_empty());
}

/// A wrong appkey answers 101 and a wrong sid 100, even when correctly signed.
#[tokio::test]
async fn wrong_account_is_100_or_101() {
    let s = spawn(SandboxConfig::default()).await;
    let mut config = s.config().clone();
    config.appkey = "other-key".to_owned();
    let fields = signed_fields(&config, &[trade("T1")], now_secs(), &config.appsecret);
    assert_eq!(
        s.post_form(&fields).await.1,
        json!({"code": 101, "message": "appkey不存在 (invalid appkey)"})
    );
    let mut config = s.config().clone();
    config.sid = "other".to_owned();
    let fields = signed_fields(&config, &[trade("T1")], now_secs(), &config.appsecret);
    assert_eq!(s.post_form(&fields).await.1["code"], 100);
}

/// The envelope: a non-form body and a missing system field answer 104.
#[tokio::test]
async fn envelope_errors_are_104() {
    let s = spawn(SandboxConfig::default()).await;
    let (status, answer) = s
        .post("application/json", "{}".to_owned(), "/trade_push.php")
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        answer,
        json!({"code": 104, "message": "content type must be application/x-www-form-urlencoded"})
    );
    let config = s.config().clone();
    let mut fields = signed_fields(&config, &[trade("T1")], now_secs(), &config.appsecret);
    fields.retain(|(k, _)| k != "timestamp");
    assert_eq!(
        s.post_form(&fields).await.1,
        json!({"code": 104, "message": "缺少参数: timestamp"})
    );
    let mut fields = signed_fields(&config, &[trade("T1")], now_secs(), &config.appsecret);
    fields[5].1 = "{\"tid\":\"T1\"}".to_owned();
    resign(&mut fields, &config.appsecret);
    assert_eq!(
        s.post_form(&fields).await.1,
        json!({"code": 104, "message": "trade_list 不是合法的JSON数组"})
    );
    assert_eq!(s.sandbox.calls().len(), 3);
}

/// 51 trades in one call answer 105 and store nothing.
#[tokio::test]
async fn more_than_50_trades_is_105() {
    let s = spawn(SandboxConfig::default()).await;
    let trades: Vec<Value> = (0..51).map(|i| trade(&format!("T{i}"))).collect();
    assert_eq!(
        s.push(&trades).await.1,
        json!({"code": 105, "message": "trade_list 超过50条"})
    );
    assert!(s.sandbox.trades().is_empty());
    assert_eq!(s.push(&trades[..50]).await.1["new_count"], 50);
}

/// One invalid trade rejects the whole call with a JSON-array message naming only that
/// tid, and nothing of the call is stored.
#[tokio::test]
async fn invalid_trade_rejects_the_whole_call() {
    let s = spawn(SandboxConfig::default()).await;
    let mut bad = trade("T2");
    bad["buyer_nick"] = json!("");
    let (status, answer) = s.push(&[trade("T1"), bad, trade("T3")]).await;
    assert_eq!(status, 200);
    assert_eq!(answer["code"], 99);
    assert_eq!(
        answer["message"],
        r#"[{"tid":"T2","error":"buyer_nick 不能为空"}]"#
    );
    assert!(s.sandbox.trades().is_empty());
}

/// A tid or an oid twice in one call is an error for that tid.
#[tokio::test]
async fn duplicates_within_a_call_are_rejected() {
    let s = spawn(SandboxConfig::default()).await;
    let (_, answer) = s.push(&[trade("T1"), trade("T1")]).await;
    assert_eq!(
        tid_errors(&answer),
        [("T1".to_owned(), "tid T1 重复".to_owned())]
    );
    let mut clash = trade("T2");
    clash["order_list"][0]["oid"] = json!("T1-1");
    let (_, answer) = s.push(&[trade("T1"), clash]).await;
    assert_eq!(
        tid_errors(&answer),
        [("T2".to_owned(), "oid T1-1 重复".to_owned())]
    );
    assert!(s.sandbox.trades().is_empty());
}

/// Changing the num of an accepted line is rejected; the stored trade keeps its version.
#[tokio::test]
async fn changing_num_after_success_is_rejected() {
    let s = spawn(SandboxConfig::default()).await;
    assert_eq!(s.push(&[trade("T1")]).await.1["code"], 0);
    let mut changed = trade("T1");
    changed["order_list"][0]["num"] = json!("3");
    let (_, answer) = s.push(&[changed, trade("T2")]).await;
    assert_eq!(answer["code"], 99);
    assert_eq!(
        tid_errors(&answer),
        [("T1".to_owned(), "oid T1-1: num/price 不能修改".to_owned())]
    );
    assert_eq!(s.sandbox.trade("T1").unwrap().versions, 1);
    assert!(s.sandbox.trade("T2").is_none());
}

/// With the paid identity checked, a paid that does not add up is rejected.
#[tokio::test]
async fn paid_identity_when_enabled() {
    let s = spawn(SandboxConfig {
        check_paid_identity: true,
        ..SandboxConfig::default()
    })
    .await;
    assert_eq!(s.push(&[trade("T1")]).await.1["code"], 0);
    let mut off = trade("T2");
    off["paid"] = json!("25");
    let (_, answer) = s.push(&[off]).await;
    assert_eq!(
        tid_errors(&answer),
        [(
            "T2".to_owned(),
            "paid 与订单金额不符 (expected 24)".to_owned()
        )]
    );
}

/// reject_tid_pattern answers 99 naming only the matching tids and stores nothing.
#[tokio::test]
async fn reject_tid_pattern_names_the_tids() {
    let s = spawn_faulty(Faults {
        reject_tid_pattern: Some("BAD".to_owned()),
        ..Faults::default()
    })
    .await;
    let (_, answer) = s
        .push(&[trade("T1"), trade("T-BAD-2"), trade("T3"), trade("BAD4")])
        .await;
    assert_eq!(answer["code"], 99);
    let rule = "rejected by sandbox rule".to_owned();
    assert_eq!(
        tid_errors(&answer),
        [
            ("T-BAD-2".to_owned(), rule.clone()),
            ("BAD4".to_owned(), rule)
        ]
    );
    assert!(s.sandbox.trades().is_empty());
    assert_eq!(s.push(&[trade("T1")]).await.1["code"], 0);
}

/// reject_without_tid answers 99 with plain text that is no JSON array and names no tid.
#[tokio::test]
async fn reject_without_tid_names_nothing() {
    let s = spawn_faulty(Faults {
        reject_without_tid: Some("BAD".to_owned()),
        ..Faults::default()
    })
    .await;
    let (_, answer) = s.push(&[trade("T1"), trade("T-BAD-2")]).await;
    assert_eq!(answer["code"], 99);
    let message = answer["message"].as_str().unwrap();
    assert!(serde_json::from_str::<Vec<Value>>(message).is_err());
    assert!(!message.contains("T1") && !message.contains("BAD-2"));
    assert!(s.sandbox.trades().is_empty());
}

/// throttle_rate 1.0 answers code 1040 with the throttling text, over HTTP 200.
#[tokio::test]
async fn throttle_is_1040() {
    let s = spawn_faulty(Faults {
        throttle_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let (status, answer) = s.push(&[trade("T1")]).await;
    assert_eq!(status, 200);
    assert_eq!(answer["code"], 1040);
    assert!(answer["message"].as_str().unwrap().contains("稍后重试"));
    assert!(s.sandbox.trades().is_empty());
}

/// error_rate 1.0 answers HTTP 500 (with Retry-After when configured); http_429_rate
/// 1.0 answers 429; both are logged.
#[tokio::test]
async fn error_rate_is_http_500() {
    let s = spawn_faulty(Faults {
        error_rate: 1.0,
        retry_after_secs: Some(7),
        ..Faults::default()
    })
    .await;
    let response = s.send_push(&[trade("T1")]).await.unwrap();
    assert_eq!(response.status().as_u16(), 500);
    assert_eq!(response.headers()["retry-after"], "7");
    s.sandbox.set_faults(Faults {
        http_429_rate: 1.0,
        ..Faults::default()
    });
    assert_eq!(s.push(&[trade("T1")]).await.0, 429);
    let statuses: Vec<u16> = s.sandbox.calls().iter().map(|c| c.http_status).collect();
    assert_eq!(statuses, [500, 429]);
    assert!(s.sandbox.trades().is_empty());
}

/// drop_rate 1.0 closes the connection: the client sees a transport error, not an answer.
#[tokio::test]
async fn drop_is_a_transport_error() {
    let s = spawn_faulty(Faults {
        drop_rate: 1.0,
        ..Faults::default()
    })
    .await;
    let result = s.send_push(&[trade("T1")]).await;
    assert!(
        result.is_err(),
        "expected a transport error, got {result:?}"
    );
    assert!(s.sandbox.trades().is_empty());
    assert_eq!(s.sandbox.calls()[0].http_status, 0);
}

/// Shops listed in sign_error_shops answer 102 although correctly signed.
#[tokio::test]
async fn sign_error_shop_is_102() {
    let s = spawn_faulty(Faults {
        sign_error_shops: vec![SHOP.to_owned()],
        ..Faults::default()
    })
    .await;
    assert_eq!(s.push(&[trade("T1")]).await.1["code"], 102);
}

/// Faults can be read and replaced over HTTP, and reset forgets trades and calls.
#[tokio::test]
async fn control_endpoints() {
    let s = spawn(SandboxConfig::default()).await;
    let health = s
        .client
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok");
    let response = s
        .client
        .put(format!("{}/sandbox/faults", s.base))
        .header("content-type", "application/json")
        .body(json!({"throttle_rate": 1.0, "latency_ms": 0}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(s.sandbox.faults().throttle_rate, 1.0);
    assert_eq!(s.get("/sandbox/faults").await.1["throttle_rate"], 1.0);
    assert_eq!(s.push(&[trade("T1")]).await.1["code"], 1040);
    s.sandbox.set_faults(Faults::default());
    assert_eq!(s.push(&[trade("T1")]).await.1["code"], 0);
    assert_eq!(s.get("/sandbox/calls").await.1.as_array().unwrap().len(), 2);
    let response = s
        .client
        .post(format!("{}/sandbox/reset", s.base))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    assert!(s.sandbox.trades().is_empty());
    assert!(s.sandbox.calls().is_empty());
}
