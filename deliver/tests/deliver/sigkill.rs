//! Crash safety: the real `deliver` binary runs as a child process and is killed with
//! SIGKILL again and again while callbacks flow through ingest and transform. Every callback
//! that got a 2xx must end up at WDT (the sandbox) with its latest version, and no tid may
//! ever be pushed with an older version after a newer one.

use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;
use wdtpipe_sandbox::SandboxConfig;
use wdtpipe_testkit::sandbox::RunningSandbox;

const SENDERS: usize = 6;
const TIDS_PER_SENDER: usize = 8;
const KILLS: usize = 5;

/// The deliver child process; killed when dropped, so a failing test leaves nothing behind.
struct DeliverProcess {
    child: Option<Child>,
    config: std::path::PathBuf,
}

impl DeliverProcess {
    fn start(config: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_deliver"))
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("deliver binary starts");
        Self {
            child: Some(child),
            config: config.to_path_buf(),
        }
    }

    /// SIGKILL, reap, start again on the same config and data directory.
    fn kill_and_restart(&mut self) {
        self.kill();
        *self = Self::start(&self.config);
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL delivered");
            child.wait().expect("child reaped");
        }
    }
}

impl Drop for DeliverProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The shared fixture 01 rewritten for `tid`, carrying `version` in buyer_message.
fn callback(tid: &str, version: u32) -> Vec<u8> {
    let mut record = wdtpipe_testkit::record_with_tid(tid);
    record["buyer_message"] = format!("v{version:06}").into();
    serde_json::to_vec(&record).unwrap()
}

fn version_of(trade: &Value) -> u32 {
    trade["buyer_message"].as_str().unwrap()[1..]
        .parse()
        .unwrap()
}

async fn listener() -> tokio::net::TcpListener {
    tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap()
}

/// SIGKILL the deliver process repeatedly under load: nothing acknowledged is lost, and no
/// tid is pushed with an older version after a newer one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_nothing_acknowledged() {
    // WDT sandbox.
    let sandbox = RunningSandbox::start(SandboxConfig::default()).await;
    let sandbox_config = sandbox.config();

    // deliver: a child process configured through a TOML file.
    let dir = tempfile::tempdir().unwrap();
    let deliver_addr: SocketAddr = listener().await.local_addr().unwrap();
    let config_path = dir.path().join("deliver.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
grpc_addr = "{deliver_addr}"
data_dir = "{data}"
drain_timeout_ms = 1000
metrics_addr = "127.0.0.1:0"

[wdt]
url = "{wdt_url}"
sid = "{sid}"
appkey = "{appkey}"
appsecret = "{appsecret}"
timeout_ms = 3000

[retry]
base_ms = 20
cap_ms = 200
pause_probe_ms = 200
"#,
            data = dir.path().join("data").display(),
            wdt_url = sandbox.wdt_url(),
            sid = sandbox_config.sid,
            appkey = sandbox_config.appkey,
            appsecret = sandbox_config.appsecret,
        ),
    )
    .unwrap();
    let mut deliver = DeliverProcess::start(&config_path);

    // transform and ingest, in process.
    let transform_listener = listener().await;
    let transform_addr = transform_listener.local_addr().unwrap();
    let transform = wdtpipe_transform::config::TransformConfig {
        grpc_addr: transform_addr,
        deliver_urls: vec![format!("http://{deliver_addr}")],
        metrics_addr: None,
        deliver_timeout_ms: 3_000,
        ..Default::default()
    };
    let (_stop_transform, transform_stopped) = oneshot::channel::<()>();
    tokio::spawn(wdtpipe_transform::serve(
        transform,
        wdtpipe_transform::Listeners {
            grpc: transform_listener,
            metrics: None,
        },
        async move {
            let _ = transform_stopped.await;
        },
    ));
    let (http, grpc) = (listener().await, listener().await);
    let callback_url = format!("http://{}/v1/callback", http.local_addr().unwrap());
    let ingest = wdtpipe_ingest::config::IngestConfig {
        transform_url: format!("http://{transform_addr}"),
        limits: wdtpipe_ingest::config::Limits {
            request_timeout_ms: 5_000,
            ..Default::default()
        },
        ..Default::default()
    };
    let (_stop_ingest, ingest_stopped) = oneshot::channel::<()>();
    tokio::spawn(wdtpipe_ingest::serve(ingest, http, grpc, async move {
        let _ = ingest_stopped.await;
    }));

    // Senders: each owns its tids and sends their versions in order, so acceptance order
    // is version order. `acked` keeps the newest version answered 2xx per tid.
    let acked: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..SENDERS {
        let (acked, stop, client, url) = (
            acked.clone(),
            stop.clone(),
            client.clone(),
            callback_url.clone(),
        );
        senders.spawn(async move {
            let mut version = 0u32;
            let mut sent_ok = 0u32;
            while !stop.load(Ordering::Relaxed) {
                version += 1;
                for j in 0..TIDS_PER_SENDER {
                    let tid = format!("K{sender}-{j}");
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(callback(&tid, version))
                        .send()
                        .await;
                    if response.is_ok_and(|r| r.status().is_success()) {
                        acked.lock().unwrap().insert(tid, version);
                        sent_ok += 1;
                    }
                }
            }
            sent_ok
        });
    }

    // Kill deliver at staggered moments while the senders run.
    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + 97 * kill as u64)).await;
        deliver.kill_and_restart();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut total_acked = 0;
    while let Some(sent) = senders.join_next().await {
        total_acked += sent.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        total_acked > 0 && !acked.is_empty(),
        "some callbacks were acknowledged"
    );

    // Everything acknowledged arrives, with at least its acknowledged version.
    wdtpipe_testkit::eventually_or(
        "every acknowledged tid at WDT with its version",
        Duration::from_secs(60),
        || async {
            let missing: Vec<(&String, &u32)> = acked
                .iter()
                .filter(|(tid, version)| {
                    sandbox
                        .trade(tid)
                        .is_none_or(|t| version_of(&t.trade) < **version)
                })
                .collect();
            match missing.len() {
                0 => Ok(()),
                n => Err(format!("{n} missing, e.g. {:?}", &missing[..n.min(5)])),
            }
        },
    )
    .await;

    // Per tid, WDT saw versions only in order (a repeat after a crash is allowed).
    for trade in sandbox.trades() {
        let versions: Vec<u32> = trade.history.iter().map(version_of).collect();
        assert!(
            versions.windows(2).all(|w| w[0] <= w[1]),
            "{} was pushed out of order: {versions:?}",
            trade.tid
        );
    }
    assert!(sandbox.calls().iter().all(|c| c.sign_ok));
    eprintln!(
        "acknowledged {total_acked} callbacks for {} tids across {KILLS} SIGKILLs; {} calls reached the sandbox",
        acked.len(),
        sandbox.calls().len()
    );
}
