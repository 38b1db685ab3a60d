//! Who may call the real `deliver` binary's admin RPCs: with `ADMIN_TOKEN` set, Replay,
//! Discard and Purge are refused without the bearer token and with a wrong one, and do their
//! work with the right one; read-only calls need none. A deliver listening on a non-loopback
//! address without a token refuses to start and says why, unless told
//! `--insecure-no-admin-token`.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tonic::Code;
use tonic::metadata::MetadataValue;
use wdtpipe_proto::v1::deliver_client::DeliverClient;
use wdtpipe_proto::v1::{
    DeadLetterFilter, DiscardRequest, EnqueueRecord, EnqueueRequest, ListDeadLettersRequest,
    PurgeRequest, ReplayRequest, StatsRequest, TradeOrder,
};
use wdtpipe_sandbox::{Faults, SandboxConfig};
use wdtpipe_testkit::eventually;
use wdtpipe_testkit::sandbox::RunningSandbox;
use wdtpipe_testkit::stats::backlog_and_paused;

const TOKEN: &str = "admin-token-7f3a9c";
const SHOP: &str = "PAUSED-SHOP";
const STARTUP: Duration = Duration::from_secs(30);

/// The deliver binary as a child process with its stderr read line by line; killed when
/// dropped.
struct Deliver {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr: Vec<String>,
}

impl Deliver {
    /// Starts `deliver` with exactly these environment variables (nothing inherited), logging
    /// JSON lines.
    fn start(env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deliver"));
        command
            .env_clear()
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the deliver binary starts");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            stderr: Vec::new(),
        }
    }

    /// The gRPC address deliver logged it listens on (the one it bound, port 0 resolved).
    fn listening(&mut self) -> String {
        let deadline = Instant::now() + STARTUP;
        while let Some(line) = self.next_line(deadline) {
            if let Ok(event) = serde_json::from_str::<Value>(&line)
                && event["message"] == "deliver listening"
            {
                return event["addr"].as_str().expect("addr logged").to_owned();
            }
        }
        panic!(
            "deliver did not log that it listens; stderr:\n{}",
            self.stderr.join("\n")
        );
    }

    /// Waits for the process to exit on its own; its status and everything it logged.
    fn exit(&mut self) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + STARTUP;
        while self.next_line(deadline).is_some() {}
        let left = deadline.saturating_duration_since(Instant::now());
        let status = wdtpipe_testkit::eventually_blocking("deliver to exit", left, || {
            self.child.try_wait().unwrap()
        });
        (status, self.stderr.join("\n"))
    }

    /// The next stderr line, `None` once stderr is closed or the deadline passed.
    fn next_line(&mut self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = self.lines.recv_timeout(left).ok()?;
        self.stderr.push(line.clone());
        Some(line)
    }
}

impl Drop for Deliver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request carrying `authorization: Bearer <token>` when a token is given.
fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", value);
    }
    request
}

fn all() -> Option<DeadLetterFilter> {
    Some(DeadLetterFilter {
        all: true,
        ..DeadLetterFilter::default()
    })
}

async fn dead_letters(client: &mut DeliverClient<tonic::transport::Channel>) -> u32 {
    client
        .list_dead_letters(ListDeadLettersRequest {
            filter: all(),
            limit: 0,
            ..ListDeadLettersRequest::default()
        })
        .await
        .expect("listing needs no token")
        .into_inner()
        .total
}

/// Trades waiting in the outbox (queued, retrying or in a call), and whether SHOP is
/// paused.
async fn waiting(client: &mut DeliverClient<tonic::transport::Channel>) -> (u64, bool) {
    let shops = client
        .stats(StatsRequest::default())
        .await
        .expect("stats need no token")
        .into_inner()
        .shops;
    backlog_and_paused(&shops, SHOP)
}

async fn queued(client: &mut DeliverClient<tonic::transport::Channel>) -> u64 {
    waiting(client).await.0
}

/// Replay, Discard and Purge: refused without the token and with a wrong one (and nothing
/// changes), done with the right one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_calls_need_the_token() {
    // WDT answers every call for SHOP with a sign error, so its trade stays queued (paused).
    let sandbox = RunningSandbox::start(SandboxConfig {
        faults: Faults {
            sign_error_shops: vec![SHOP.to_owned()],
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let (sandbox_config, wdt_url) = (sandbox.config(), sandbox.wdt_url());
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let mut deliver = Deliver::start(&[
        ("DELIVER_GRPC_ADDR", "127.0.0.1:0"),
        ("DELIVER_METRICS_ADDR", "off"),
        ("DATA_DIR", data_dir),
        ("WDT_URL", &wdt_url),
        ("WDT_SID", &sandbox_config.sid),
        ("WDT_APPKEY", &sandbox_config.appkey),
        ("WDT_APPSECRET", &sandbox_config.appsecret),
        ("ADMIN_TOKEN", TOKEN),
    ]);
    let addr = tokio::task::block_in_place(|| deliver.listening());
    let mut client = DeliverClient::connect(format!("http://{addr}"))
        .await
        .expect("connect to deliver");
    client
        .enqueue(EnqueueRequest {
            records: vec![EnqueueRecord {
                record_id: "record-1".into(),
                received_at_ms: 1,
                trades: vec![TradeOrder {
                    tid: "T-ADMIN-1".into(),
                    shop_no: SHOP.into(),
                    ..TradeOrder::default()
                }],
                ..EnqueueRecord::default()
            }],
            ..EnqueueRequest::default()
        })
        .await
        .expect("enqueue needs no admin token");
    // Its first push is answered with a sign error: the shop pauses, the trade waits.
    eventually("the shop paused with its trade waiting", STARTUP, || {
        let mut client = client.clone();
        async move { (waiting(&mut client).await == (1, true)).then_some(()) }
    })
    .await;

    let refused = |status: tonic::Status| {
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        assert_eq!(status.message(), "admin token missing or wrong");
    };
    let purge = || PurgeRequest {
        shop_no: SHOP.into(),
        tid: String::new(),
    };
    for token in [None, Some("wrong-token"), Some("")] {
        refused(client.purge(with_token(purge(), token)).await.unwrap_err());
    }
    assert_eq!(
        queued(&mut client).await,
        1,
        "a refused purge purges nothing"
    );
    let purged = client
        .purge(with_token(purge(), Some(TOKEN)))
        .await
        .expect("purge with the token")
        .into_inner()
        .purged;
    assert_eq!(purged, 1);
    assert_eq!(dead_letters(&mut client).await, 1);

    for token in [None, Some("wrong-token")] {
        let request = ReplayRequest { filter: all() };
        refused(client.replay(with_token(request, token)).await.unwrap_err());
    }
    assert_eq!(
        dead_letters(&mut client).await,
        1,
        "a refused replay replays nothing"
    );
    let replayed = client
        .replay(with_token(ReplayRequest { filter: all() }, Some(TOKEN)))
        .await
        .expect("replay with the token")
        .into_inner()
        .replayed;
    assert_eq!(replayed, 1);
    assert_eq!(dead_letters(&mut client).await, 0);
    assert_eq!(queued(&mut client).await, 1);

    client
        .purge(with_token(purge(), Some(TOKEN)))
        .await
        .expect("purge with the token");
    for token in [None, Some("wrong-token")] {
        let request = DiscardRequest { filter: all() };
        refused(
            client
                .discard(with_token(request, token))
                .await
                .unwrap_err(),
        );
    }
    assert_eq!(
        dead_letters(&mut client).await,
        1,
        "a refused discard keeps the letter"
    );
    let discarded = client
        .discard(with_token(DiscardRequest { filter: all() }, Some(TOKEN)))
        .await
        .expect("discard with the token")
        .into_inner()
        .discarded;
    assert_eq!(discarded, 1);
    assert_eq!(dead_letters(&mut client).await, 0);
}

/// On a non-loopback address, deliver without ADMIN_TOKEN refuses to start and says why;
/// `DELIVER_INSECURE_NO_ADMIN_TOKEN=true` starts it anyway.
#[test]
fn a_non_loopback_deliver_needs_a_token() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let env = [
        ("DELIVER_GRPC_ADDR", "0.0.0.0:0"),
        ("DELIVER_METRICS_ADDR", "off"),
        ("DATA_DIR", data_dir),
        // Never called: deliver is stopped before it has anything to push.
        ("WDT_URL", "http://127.0.0.1:9/openapi2"),
        ("WDT_SID", "sid"),
        ("WDT_APPKEY", "key"),
        ("WDT_APPSECRET", "secret"),
    ];
    let (status, stderr) = Deliver::start(&env).exit();
    assert!(!status.success(), "deliver started without a token");
    assert!(
        stderr.contains("invalid setting ADMIN_TOKEN: must be set because deliver's gRPC address 0.0.0.0:0 is not loopback"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure-no-admin-token"), "{stderr}");

    let mut insecure = env.to_vec();
    insecure.push(("DELIVER_INSECURE_NO_ADMIN_TOKEN", "true"));
    let addr = Deliver::start(&insecure).listening();
    assert!(addr.starts_with("0.0.0.0:"), "{addr}");

    let mut with_token = env.to_vec();
    with_token.push(("ADMIN_TOKEN", TOKEN));
    Deliver::start(&with_token).listening();
}

/// `CONNECTORS_FILE`: each account's secret comes from the environment variable the file
/// names; deliver refuses to start without it, and names the connector and the variable.
#[test]
fn connector_secrets_come_from_the_environment() {
    let data = tempfile::tempdir().unwrap();
    let file = data.path().join("connectors.toml");
    std::fs::write(
        &file,
        "[brand-b]\nurl = \"http://127.0.0.1:9/openapi2\"\nsid = \"brandb\"\nappkey = \"k\"\nappsecret_env = \"WDT_APPSECRET_BRAND_B\"\n",
    )
    .unwrap();
    let (data_dir, file) = (
        data.path().to_str().unwrap().to_owned(),
        file.to_str().unwrap().to_owned(),
    );
    let env = vec![
        ("DELIVER_GRPC_ADDR", "127.0.0.1:0"),
        ("DELIVER_METRICS_ADDR", "off"),
        ("DATA_DIR", data_dir.as_str()),
        ("WDT_URL", "http://127.0.0.1:9/openapi2"),
        ("WDT_SID", "sid"),
        ("WDT_APPKEY", "key"),
        ("WDT_APPSECRET", "secret"),
        ("CONNECTORS_FILE", file.as_str()),
    ];
    let (status, stderr) = Deliver::start(&env).exit();
    assert!(!status.success());
    assert!(
        stderr.contains(
            "connector \"brand-b\": the environment variable WDT_APPSECRET_BRAND_B (its appsecret_env) is not set"
        ),
        "{stderr}"
    );
    let mut with_secret = env.clone();
    with_secret.push(("WDT_APPSECRET_BRAND_B", "brand-secret"));
    let mut deliver = Deliver::start(&with_secret);
    deliver.listening();
    let logged = deliver.stderr.join("\n");
    assert!(
        logged.contains("\"connector\":\"brand-b\"") && !logged.contains("brand-secret"),
        "{logged}"
    );
}
