//! `wdtpipe up` as a user runs it, a child process:
//! - shutdown under load: SIGTERM while callbacks flow exits 0 within a bounded time, and
//!   after a restart on the same data directory every acknowledged callback reaches WDT;
//! - admin calls: with `ADMIN_TOKEN` set, `wdtpipe dlq replay|discard` and `wdtpipe purge`
//!   are refused without the token and with a wrong one, and work with the right one;
//! - the stages' settings: a non-loopback deliver without a token refuses to start, and
//!   `TRANSFORM_METRICS_ADDR=off` serves no transform metrics.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wdtpipe_sandbox::{Faults, SandboxConfig};
use wdtpipe_testkit::sandbox::RunningSandbox;
use wdtpipe_testkit::{eventually, eventually_blocking, eventually_or};

const STARTUP: Duration = Duration::from_secs(30);

/// `wdtpipe up` as a child process; killed if still running when dropped.
struct Up {
    child: Child,
    /// What `up` printed about itself, up to its "Ctrl-C" line.
    banner: Vec<String>,
    callback_url: String,
}

/// Every address on loopback port 0, the outbox in `data_dir`, WDT at `wdt_url` with the
/// sandbox's account; `extra` is added last.
fn up_env<'a>(data_dir: &'a Path, wdt_url: &'a str) -> Vec<(&'static str, String)> {
    let config = SandboxConfig::default();
    vec![
        ("DATA_DIR", data_dir.display().to_string()),
        ("WDT_URL", wdt_url.to_owned()),
        ("WDT_SID", config.sid),
        ("WDT_APPKEY", config.appkey),
        ("WDT_APPSECRET", config.appsecret),
        ("INGEST_HTTP_ADDR", "127.0.0.1:0".into()),
        ("INGEST_GRPC_ADDR", "127.0.0.1:0".into()),
        ("TRANSFORM_GRPC_ADDR", "127.0.0.1:0".into()),
        ("DELIVER_GRPC_ADDR", "127.0.0.1:0".into()),
        ("TRANSFORM_METRICS_ADDR", "127.0.0.1:0".into()),
        ("DELIVER_METRICS_ADDR", "127.0.0.1:0".into()),
        ("CONSOLE_ADDR", "127.0.0.1:0".into()),
        ("RUST_LOG", "warn".into()),
    ]
}

/// `wdtpipe` with exactly these environment variables: nothing inherited (an operator's
/// ADMIN_TOKEN or DELIVER_URL must not leak into a test).
fn wdtpipe(env: &[(&'static str, String)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wdtpipe"));
    command
        .env_clear()
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    command
}

impl Up {
    fn start(data_dir: &Path, wdt_url: &str) -> Self {
        Self::start_with(&up_env(data_dir, wdt_url))
    }

    fn start_with(env: &[(&'static str, String)]) -> Self {
        let mut child = wdtpipe(env)
            .arg("up")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("wdtpipe starts");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (found, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = found.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP;
        let mut banner = Vec::new();
        while !banner
            .last()
            .is_some_and(|l: &String| l.starts_with("Ctrl-C"))
        {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = lines
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("up did not print its addresses: {banner:?}"));
            banner.push(line);
        }
        let mut up = Self {
            child,
            banner,
            callback_url: String::new(),
        };
        up.callback_url = up.printed("callbacks    POST ");
        up
    }

    /// The first word after `label` on the banner line that starts with it.
    fn printed(&self, label: &str) -> String {
        self.banner
            .iter()
            .find_map(|line| line.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {label:?} line in {:?}", self.banner))
            .to_owned()
    }

    /// The banner line that starts with `label`.
    fn line(&self, label: &str) -> &str {
        self.banner
            .iter()
            .map(|line| line.trim())
            .find(|line| line.starts_with(label))
            .unwrap_or_else(|| panic!("no {label:?} line in {:?}", self.banner))
    }

    fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }

    /// Waits for the exit, at most `limit`.
    fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        wait_for_exit(&mut self.child, limit)
    }
}

/// Waits for `child` to exit, at most `limit`.
fn wait_for_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    eventually_blocking("wdtpipe to exit", limit, || {
        child.try_wait().expect("child status")
    })
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shared fixture 01's record.
fn fixture_record() -> serde_json::Value {
    serde_json::from_slice(&wdtpipe_testkit::fixture("01-").body).unwrap()
}

/// SIGTERM during load: exit code 0, and no acknowledged callback is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_exits_cleanly_and_loses_nothing() {
    let sandbox = RunningSandbox::start(SandboxConfig::default()).await;
    let wdt_url = sandbox.wdt_url();
    let data = tempfile::tempdir().unwrap();
    let mut up = Up::start(data.path(), &wdt_url);

    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let client = reqwest::Client::new();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..4 {
        let (acked, stop, client, url) = (
            acked.clone(),
            stop.clone(),
            client.clone(),
            up.callback_url.clone(),
        );
        senders.spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let tid = format!("TERM{sender}-{n}");
                let sent = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .body(serde_json::to_vec(&wdtpipe_testkit::record_with_tid(&tid)).unwrap())
                    .send()
                    .await;
                match sent {
                    Ok(response) if response.status().is_success() => {
                        acked.lock().unwrap().push(tid)
                    }
                    Ok(_) => {}
                    // The server has stopped accepting.
                    Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
                }
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    up.sigterm();
    let status = tokio::task::block_in_place(|| up.wait(Duration::from_secs(30)));
    stop.store(true, Ordering::Relaxed);
    while senders.join_next().await.is_some() {}
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    let acked = acked.lock().unwrap().clone();
    assert!(
        !acked.is_empty(),
        "callbacks were acknowledged before the signal"
    );

    let _restarted = Up::start(data.path(), &wdt_url);
    eventually_or(
        "every acknowledged tid at WDT after the restart",
        Duration::from_secs(60),
        || async {
            let missing: Vec<&String> = acked
                .iter()
                .filter(|t| sandbox.trade(t).is_none())
                .collect();
            match missing.len() {
                0 => Ok(()),
                n => Err(format!("{n} lost, e.g. {:?}", &missing[..n.min(5)])),
            }
        },
    )
    .await;
    eprintln!(
        "{} callbacks acknowledged before SIGTERM; all delivered after the restart",
        acked.len()
    );
}

const TOKEN: &str = "up-admin-token-51c2";

/// Runs a `wdtpipe` command to its end with `env`; its output.
fn run(env: &[(&'static str, String)], args: &[&str]) -> Output {
    let child = wdtpipe(env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("wdtpipe runs");
    child.wait_with_output().expect("wdtpipe's output")
}

/// Asserts that `output` is the CLI's refusal for a missing or wrong admin token.
fn assert_refused(output: &Output, what: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{what} was accepted: {output:?}");
    assert!(
        stderr.contains("admin token missing or wrong"),
        "{what}: {stderr}"
    );
}

fn assert_ok(output: &Output, what: &str) -> String {
    assert!(output.status.success(), "{what} failed: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Trades waiting at deliver and whether `shop` is paused, read over gRPC (no token).
async fn waiting(deliver: &str, shop: &str) -> (u64, bool, u64) {
    let mut client = wdtpipe_proto::v1::deliver_client::DeliverClient::connect(deliver.to_owned())
        .await
        .expect("connect to deliver");
    let shops = client
        .stats(wdtpipe_proto::v1::StatsRequest::default())
        .await
        .expect("stats need no token")
        .into_inner()
        .shops;
    let (backlog, paused) = wdtpipe_testkit::stats::backlog_and_paused(&shops, shop);
    (backlog, paused, shops.iter().map(|s| s.dead_letters).sum())
}

/// `ADMIN_TOKEN=… wdtpipe up`: `wdtpipe purge`, `dlq replay`, `dlq remap` and `dlq discard`
/// are refused without the token and with a wrong one (changing nothing), and work with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_protects_admin_calls_with_the_token() {
    let record = fixture_record();
    let shop = record["shop_no"].as_str().unwrap().to_owned();
    // WDT answers this shop's calls with a sign error: its trades stay queued, paused.
    let sandbox = RunningSandbox::start(SandboxConfig {
        faults: Faults {
            sign_error_shops: vec![shop.clone()],
            ..Faults::default()
        },
        ..SandboxConfig::default()
    })
    .await;
    let wdt_url = sandbox.wdt_url();
    let data = tempfile::tempdir().unwrap();
    let mut env = up_env(data.path(), &wdt_url);
    env.push(("ADMIN_TOKEN", TOKEN.into()));
    let up = Up::start_with(&env);
    assert!(
        up.line("admin calls").contains("ADMIN_TOKEN required"),
        "{:?}",
        up.banner
    );
    let deliver = format!("http://{}", up.printed("deliver      "));
    // The console runs in the same process, over the stages it was wired to, and lets an
    // operator act once logged in with the admin token.
    assert!(
        up.line("console").contains("actions after a login"),
        "{:?}",
        up.banner
    );
    let console = up.printed("console      ");
    let overview = reqwest::get(&console).await.unwrap();
    assert_eq!(overview.status(), 200);
    let page = overview.text().await.unwrap();
    assert!(page.contains("id=\"live\""), "the overview: {page}");
    let answer = reqwest::Client::new()
        .post(&up.callback_url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&record).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    eventually("the shop to pause", STARTUP, || async {
        (waiting(&deliver, &shop).await == (1, true, 0)).then_some(())
    })
    .await;

    let no_token = vec![("DELIVER_URL", deliver.clone())];
    let mut right = no_token.clone();
    right.push(("ADMIN_TOKEN", TOKEN.to_owned()));
    let wrong = ["--token", "not-the-token"];
    let cli = |env: &[(&'static str, String)], args: &[&str], extra: &[&str]| {
        let args: Vec<&str> = args.iter().chain(extra).copied().collect();
        tokio::task::block_in_place(|| run(env, &args))
    };

    // The shop is paused: resuming it needs the token too (it calls WDT again at once,
    // which still answers with the sign error, so it pauses again).
    let resume = ["resume", shop.as_str()];
    assert_refused(&cli(&no_token, &resume, &[]), "resume without a token");
    assert_refused(&cli(&right, &resume, &wrong), "resume with a wrong token");
    let out = assert_ok(&cli(&right, &resume, &[]), "resume with the token");
    assert!(out.contains("calls WDT now: cut short its pause"), "{out}");

    let purge = ["purge", "--shop", shop.as_str()];
    assert_refused(&cli(&no_token, &purge, &[]), "purge without a token");
    assert_refused(&cli(&right, &purge, &wrong), "purge with a wrong token");
    assert_eq!(
        waiting(&deliver, &shop).await,
        (1, true, 0),
        "nothing purged"
    );
    let out = assert_ok(&cli(&right, &purge, &[]), "purge with the token");
    assert!(out.contains("purged 1 waiting trade(s)"), "{out}");
    assert_eq!(waiting(&deliver, &shop).await.2, 1);

    // A tid as a positional argument, as with `wdtpipe status TID`.
    let replay = ["dlq", "replay", "T0001"];
    assert_refused(&cli(&no_token, &replay, &[]), "replay without a token");
    assert_refused(&cli(&right, &replay, &wrong), "replay with a wrong token");
    assert_eq!(waiting(&deliver, &shop).await.2, 1, "nothing replayed");
    assert_ok(&cli(&right, &replay, &[]), "replay with the token");
    assert_eq!(waiting(&deliver, &shop).await, (1, true, 0));

    // Re-map goes through transform, which passes the token on to deliver.
    assert_ok(&cli(&right, &purge, &[]), "purge with the token");
    let transform = format!("http://{}", up.printed("transform    "));
    let remap = ["dlq", "remap", "T0001", "--transform", transform.as_str()];
    assert_refused(&cli(&no_token, &remap, &[]), "remap without a token");
    assert_refused(&cli(&right, &remap, &wrong), "remap with a wrong token");
    assert_eq!(waiting(&deliver, &shop).await.2, 1, "nothing re-mapped");
    let out = assert_ok(&cli(&right, &remap, &[]), "remap with the token");
    assert!(
        out.contains("re-mapped 1 dead letter(s); queued 1 trade(s)"),
        "{out}"
    );
    assert_eq!(waiting(&deliver, &shop).await, (1, true, 0));

    assert_ok(&cli(&right, &purge, &[]), "purge with the token");
    let discard = ["dlq", "discard", "--all"];
    assert_refused(&cli(&no_token, &discard, &[]), "discard without a token");
    assert_refused(&cli(&right, &discard, &wrong), "discard with a wrong token");
    assert_eq!(waiting(&deliver, &shop).await.2, 1, "nothing discarded");
    assert_ok(&cli(&right, &discard, &[]), "discard with the token");
    assert_eq!(waiting(&deliver, &shop).await, (0, true, 0));
}

/// `up` with deliver on a non-loopback address and no ADMIN_TOKEN refuses to start, and
/// says why; `TRANSFORM_METRICS_ADDR=off` (as the README says) serves no transform metrics.
#[test]
fn up_refuses_an_open_admin_port_and_takes_metrics_off() {
    let data = tempfile::tempdir().unwrap();
    // WDT is never called: no callback is sent.
    let wdt_url = "http://127.0.0.1:9/openapi2";
    let mut env = up_env(data.path(), wdt_url);
    env.retain(|(k, _)| *k != "DELIVER_GRPC_ADDR");
    env.push(("DELIVER_GRPC_ADDR", "0.0.0.0:0".into()));
    let mut child = wdtpipe(&env)
        .arg("up")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for_exit(&mut child, STARTUP);
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "up started with an open admin port");
    assert!(
        stderr.contains("ADMIN_TOKEN: must be set because deliver's gRPC address")
            && stderr.contains("is not loopback"),
        "{stderr}"
    );

    let mut env = up_env(data.path(), wdt_url);
    env.retain(|(k, _)| *k != "TRANSFORM_METRICS_ADDR");
    env.push(("TRANSFORM_METRICS_ADDR", "off".into()));
    let up = Up::start_with(&env);
    assert!(
        up.line("transform").ends_with("(metrics: off)"),
        "{:?}",
        up.banner
    );
}

/// `kill -HUP` reloads `SCHEMES_DIR` at once: with the directory poll set to ten minutes in
/// the transform config file (`TRANSFORM_CONFIG`), an edited scheme serves right after the
/// signal.
#[test]
fn up_reloads_schemes_on_sighup() {
    let data = tempfile::tempdir().unwrap();
    let schemes = tempfile::tempdir().unwrap();
    let file = schemes.path().join("mall.toml");
    std::fs::write(&file, "id = \"mall\"\n").unwrap();
    let config = data.path().join("transform.toml");
    std::fs::write(&config, "schemes_poll_ms = 600000\n").unwrap();
    let mut env = up_env(data.path(), "http://127.0.0.1:9/openapi2");
    env.push(("SCHEMES_DIR", schemes.path().display().to_string()));
    env.push(("TRANSFORM_CONFIG", config.display().to_string()));
    let up = Up::start_with(&env);
    let transform = format!("http://{}", up.printed("transform    "));
    let list = || {
        assert_ok(
            &run(
                &[],
                &["scheme", "list", "--transform", &transform, "--json"],
            ),
            "scheme list",
        )
    };
    let rules = |out: &str| -> u64 {
        let answer: serde_json::Value = serde_json::from_str(out).unwrap();
        answer["schemes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == "mall")
            .map(|s| s["trade_rules"].as_u64().unwrap())
            .unwrap()
    };
    assert_eq!(rules(&list()), 0);
    std::fs::write(
        &file,
        "id = \"mall\"\n[trade]\nseller_memo = { value = \"m\" }\n",
    )
    .unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &up.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + STARTUP;
    while rules(&list()) != 1 {
        assert!(
            Instant::now() < deadline,
            "SIGHUP did not reload the schemes"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `up` with the gRPC TLS settings speaks TLS between its stages: a callback is
/// acknowledged (ingest → transform → deliver over TLS) and reaches WDT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_over_grpc_tls_delivers() {
    let sandbox = RunningSandbox::start(SandboxConfig::default()).await;
    let wdt_url = sandbox.wdt_url();
    let data = tempfile::tempdir().unwrap();
    let tls = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/tls");
    let mut env = up_env(data.path(), &wdt_url);
    for (name, file) in [
        ("GRPC_TLS_CERT", "server.pem"),
        ("GRPC_TLS_KEY", "server.key"),
        ("GRPC_TLS_CA", "ca.pem"),
    ] {
        env.push((name, tls.join(file).display().to_string()));
    }
    env.push(("GRPC_TLS_DOMAIN", "localhost".into()));
    let up = Up::start_with(&env);
    let answer = reqwest::Client::new()
        .post(&up.callback_url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&fixture_record()).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "{:?}", answer.text().await);
    eventually("the trade at WDT", STARTUP, || async {
        sandbox.trade("T0001")
    })
    .await;
    // deliver's port speaks only TLS: a plaintext client cannot list its dead letters.
    let plaintext = run(
        &[(
            "DELIVER_URL",
            format!("http://{}", up.printed("deliver      ")),
        )],
        &["dlq", "list"],
    );
    assert!(!plaintext.status.success(), "{plaintext:?}");
}

/// `up` without `WDT_URL` runs the sandbox with an account for every connector of
/// `CONNECTORS_FILE`: a scheme's trades reach its own account, the built-in scheme's the
/// default one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_gives_every_connector_a_sandbox_account() {
    let data = tempfile::tempdir().unwrap();
    let files = tempfile::tempdir().unwrap();
    // The account's URL is WDT's own: `up` without WDT_URL replaces it with its sandbox.
    let (connectors, schemes) =
        wdtpipe_testkit::accounts::brand_b(files.path(), "https://api.wangdian.cn/openapi2");
    let mut env = up_env(data.path(), "");
    env.retain(|(k, _)| !k.starts_with("WDT_"));
    env.push(("SANDBOX_ADDR", "127.0.0.1:0".into()));
    env.push(("CONNECTORS_FILE", connectors.display().to_string()));
    env.push(("SCHEMES_DIR", schemes.display().to_string()));
    let up = Up::start_with(&env);
    assert!(
        up.line("WDT").contains("accounts brand-b too"),
        "{:?}",
        up.banner
    );
    let sandbox_trades = up
        .line("WDT")
        .rsplit("accepted at ")
        .next()
        .unwrap()
        .trim_end_matches(')')
        .to_owned();
    let client = reqwest::Client::new();
    let base = up.callback_url.clone();
    let mut second = fixture_record();
    second["tid"] = "T0001-B".into();
    for (url, body) in [
        (format!("{base}/b"), second),
        (base.clone(), fixture_record()),
    ] {
        let answer = client
            .post(url)
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }
    let trades = eventually("both trades at the sandbox", STARTUP, || async {
        let text = client
            .get(&sandbox_trades)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let trades: serde_json::Value = serde_json::from_str(&text).unwrap();
        trades
            .as_array()
            .is_some_and(|t| t.len() == 2)
            .then_some(trades)
    })
    .await;
    let sid_of = |tid: &str| {
        trades
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tid"] == tid)
            .map(|t| t["sid"].as_str().unwrap().to_owned())
    };
    assert_eq!(sid_of("T0001-B").as_deref(), Some("brandb"));
    assert_eq!(sid_of("T0001").as_deref(), Some("sandbox"));
}

/// `wdtpipe outbox check|export|import` on the committed format-3 outbox: check says what
/// it holds and exits 0; export then import builds an outbox that checks the same; a
/// data directory is taken for the outbox inside it; a broken outbox exits 1.
#[test]
fn outbox_check_export_import_through_the_cli() {
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/outbox/format-3");
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data");
    let outbox = data.join("outbox");
    std::fs::create_dir_all(&outbox).unwrap();
    for file in std::fs::read_dir(&fixture).unwrap() {
        let file = file.unwrap();
        std::fs::copy(file.path(), outbox.join(file.file_name())).unwrap();
    }
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let check = run(&[], &["outbox", "check", &path(&data)]);
    let out = assert_ok(&check, "check");
    assert!(
        out.contains("(format 3): 1 ready, 1 retrying, 1 dead letters") && out.ends_with("ok\n"),
        "{out}"
    );
    let file = work.path().join("outbox.export");
    assert_ok(
        &run(&[], &["outbox", "export", &path(&data), &path(&file)]),
        "export",
    );
    let moved = work.path().join("moved");
    let out = assert_ok(
        &run(&[], &["outbox", "import", &path(&file), &path(&moved)]),
        "import",
    );
    assert!(
        out.starts_with("imported ") && out.contains("1 ready, 1 retrying"),
        "{out}"
    );
    let json = assert_ok(
        &run(&[], &["outbox", "check", &path(&moved), "--json"]),
        "check --json",
    );
    let report: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["problem_count"], 0);
    assert_eq!(report["dead_letters"], 1);

    let empty = work.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let refused = run(&[], &["outbox", "check", &path(&empty)]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("holds no outbox"),
        "{refused:?}"
    );
}

/// A kuaidi100 scheme with `salt_env` under `wdtpipe up`: a push signed with the salt is
/// accepted (kuaidi100's answer), one with a wrong or no sign is refused with
/// `returnCode` "400", and a scheme naming a variable that is not set does not load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_checks_kuaidi100_signs() {
    const PARAM: &str = include_str!("../../../tests/fixtures/kuaidi100/jd-signed.param.json");
    let sandbox = RunningSandbox::start(SandboxConfig::default()).await;
    let wdt_url = sandbox.wdt_url();
    let data = tempfile::tempdir().unwrap();
    let schemes = tempfile::tempdir().unwrap();
    std::fs::write(
        schemes.path().join("k100.toml"),
        "id = \"k100\"\nsource = \"kuaidi100\"\nsalt_env = \"K100_SALT\"\n",
    )
    .unwrap();
    let mut env = up_env(data.path(), &wdt_url);
    env.push(("SCHEMES_DIR", schemes.path().display().to_string()));
    env.push(("K100_SALT", "123".into()));
    let up = Up::start_with(&env);
    let url = format!("{}/k100", up.callback_url);
    let push = |sign: &'static str| {
        let url = url.clone();
        async move {
            let answer = reqwest::Client::new()
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(wdtpipe_common::form::encode([
                    ("param", PARAM),
                    ("sign", sign),
                ]))
                .send()
                .await
                .unwrap();
            let status = answer.status().as_u16();
            let body: serde_json::Value =
                serde_json::from_slice(&answer.bytes().await.unwrap()).unwrap();
            (status, body)
        }
    };
    let (status, body) = push("315EDA9CDABADA878C643EBFE3DBCF1B").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        serde_json::json!({"result": true, "returnCode": "200", "message": "成功"})
    );
    for sign in ["315EDA9CDABADA878C643EBFE3DBCF1C", ""] {
        let (status, body) = push(sign).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(
            (&body["result"], &body["returnCode"]),
            (&false.into(), &"400".into())
        );
        assert!(body["message"].as_str().unwrap().contains("sign"), "{body}");
    }
    drop(up);

    // Without the variable the scheme does not load, and `up` says why.
    let without: Vec<(&'static str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "K100_SALT")
        .cloned()
        .collect();
    let output = run(
        &without,
        &["scheme", "validate", &schemes.path().display().to_string()],
    );
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("K100_SALT")
            || String::from_utf8_lossy(&output.stderr).contains("K100_SALT"),
        "{output:?}"
    );
}
