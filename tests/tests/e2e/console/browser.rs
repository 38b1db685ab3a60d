//! The console in a real headless Chromium through WebDriver (Debian's `chromium` and
//! `chromium-driver`): the operator's way through it, from the overview to a replayed dead
//! letter, the refusals, and a screenshot of each page in `docs/console/`. Ignored where
//! Chromium is not installed (`.ci/run` installs it and runs them); run them with
//! `cargo test -p wdtpipe-tests --test e2e -- --ignored browser`.

use super::{ADMIN_TOKEN, DEADLINE, Setup, rejecting};
use fantoccini::{Client, ClientBuilder, Locator};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use wdtpipe_sandbox::Faults;
use wdtpipe_tests::{CONSOLE_TOKEN, eventually, fixture, record_with_tid};

const NEEDS_CHROMIUM: &str = "needs Debian chromium + chromium-driver";

/// A chromedriver process (killed on drop) and a headless Chromium session through it.
struct Browser {
    client: Client,
    _driver: tokio::process::Child,
}

/// Starts chromedriver on a port it picks (`--port=0`) and reads the port from what it
/// prints; tried three times (a driver that fails to start says why in the panic).
async fn start_driver() -> (tokio::process::Child, u16) {
    let driver_path =
        std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "/usr/bin/chromedriver".into());
    let mut said = Vec::new();
    for _ in 0..3 {
        let mut driver = tokio::process::Command::new(&driver_path)
            .arg("--port=0")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("{NEEDS_CHROMIUM}: cannot start {driver_path}: {e}"));
        let mut stderr = BufReader::new(driver.stderr.take().expect("stderr")).lines();
        tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
        // "ChromeDriver was started successfully on port 41234."
        let mut lines = BufReader::new(driver.stdout.take().expect("stdout")).lines();
        let found = tokio::time::timeout(DEADLINE, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(rest) = line.split("started successfully on port ").nth(1) {
                    return rest.trim_end_matches('.').trim().parse::<u16>().ok();
                }
                said.push(line);
            }
            None
        })
        .await;
        if let Ok(Some(port)) = found {
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            return (driver, port);
        }
        said.push(format!("(exit: {:?})", driver.try_wait()));
    }
    panic!("chromedriver did not print its port: {said:?}")
}

impl Browser {
    async fn start() -> Self {
        let (driver, port) = start_driver().await;
        let binary = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "binary": binary,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1440,1000", "--lang=zh-CN"],
            }
        });
        let serde_json::Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a Chromium session");
        Self {
            client,
            _driver: driver,
        }
    }

    /// Waits for an element by CSS selector.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let found = self
            .client
            .wait()
            .at_most(DEADLINE)
            .for_element(Locator::Css(css))
            .await;
        match found {
            Ok(element) => element,
            Err(e) => {
                let url = self.client.current_url().await;
                let page = self.client.source().await.unwrap_or_default();
                panic!("{css} not found on {url:?}: {e}\n{page}")
            }
        }
    }

    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// Waits until the element's text contains `part`.
    async fn text_contains(&self, css: &str, part: &str) -> String {
        eventually(&format!("{css} to show {part:?}"), DEADLINE, || async {
            let text = self
                .client
                .find(Locator::Css(css))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            text.contains(part).then_some(text)
        })
        .await
    }

    /// A screenshot of the page into `docs/console/{name}.png`.
    async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
        std::fs::create_dir_all(&dir).expect("docs/console");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// POSTs a form from the page's own script (a same-origin request); the status.
    async fn fetch_post(&self, path: &str, form: &str) -> u16 {
        let script = format!(
            "const done = arguments[0]; fetch({path:?}, {{method: 'POST', headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: {form:?}}}).then(r => done(r.status)).catch(e => done(0));"
        );
        self.client
            .execute_async(&script, Vec::new())
            .await
            .expect("script")
            .as_u64()
            .expect("a status") as u16
    }
}

/// The operator's way: the overview goes live, a search finds an order and shows its path
/// and why; an action without a login is refused; a dead letter is found, replayed with
/// the button (dry run, confirm) and delivered; the schemes page previews a callback; the
/// shops and audit pages show what happened. Each page is photographed for the docs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian chromium + chromium-driver; .ci/run installs them"]
async fn an_operator_replays_a_dead_letter_from_the_browser() {
    let setup = Setup::start(rejecting("T0010"), |_| {}, |c| c.refresh_ms = 500).await;
    let (sandbox, pipeline, console) = setup.parts();
    assert_eq!(pipeline.post(&fixture("01-").body).await.0, 200);
    assert_eq!(pipeline.post(&fixture("08-").body).await.0, 200);
    eventually("T0001 delivered, T0010 dead", DEADLINE, || async {
        let dead = pipeline
            .status("T0010")
            .await
            .iter()
            .any(|s| s.state == wdtpipe_proto::v1::DeliveryState::Dead as i32);
        (sandbox.sandbox.trade("T0001").is_some() && dead).then_some(())
    })
    .await;
    let browser = Browser::start().await;
    let web = &browser.client;

    // The operators' language (the header's switch sets it), then the overview goes live
    // over the event stream.
    web.goto(&format!("{}/lang/zh?next=/", console.url))
        .await
        .unwrap();
    browser.text_contains("#live-state", "#").await;
    browser.text_contains("#live", "SHOP01").await;
    browser.screenshot("overview").await;

    // Search an order and read its path.
    browser
        .find("#search")
        .await
        .send_keys("T0001")
        .await
        .unwrap();
    browser
        .find("header form.search button")
        .await
        .click()
        .await
        .unwrap();
    let why = browser.text_contains(".why", "旺店通").await;
    assert!(why.contains("推送成功"), "{why}");
    let path = browser.text("table.path").await;
    assert!(path.contains("default@builtin"), "{path}");
    browser.screenshot("order").await;

    // Find the dead letter; without a login an action is refused.
    web.goto(&format!("{}/dead-letters?tid=T0010", console.url))
        .await
        .unwrap();
    browser.text_contains("table.letters", "T0010").await;
    assert_eq!(
        browser
            .fetch_post("/dead-letters/plan", "do=replay-all&tid=T0010")
            .await,
        401
    );

    // Log in, select it, replay it: dry run, then confirm.
    web.goto(&format!(
        "{}/login?next=/dead-letters%3Ftid%3DT0010",
        console.url
    ))
    .await
    .unwrap();
    browser.screenshot("login").await;
    browser
        .find("#login-name")
        .await
        .send_keys("han.meimei")
        .await
        .unwrap();
    browser
        .find("#login-token")
        .await
        .send_keys(CONSOLE_TOKEN)
        .await
        .unwrap();
    browser.find("#login-submit").await.click().await.unwrap();
    browser.find("#replay-selected").await;
    browser.screenshot("dead-letters").await;
    browser
        .find("table.letters input[name=key]")
        .await
        .click()
        .await
        .unwrap();
    browser
        .find("#replay-selected")
        .await
        .click()
        .await
        .unwrap();
    assert_eq!(browser.text("#plan-count").await, "1");
    let command = browser.text("#equivalent").await;
    assert!(
        command.starts_with("wdtpipe dlq replay T0010 --tid T0010 --until "),
        "{command}"
    );
    browser.screenshot("dry-run").await;
    sandbox.sandbox.set_faults(Faults::default());
    browser.find("#confirm").await.click().await.unwrap();
    let result = browser.text("#result").await;
    assert!(result.contains("1"), "{result}");
    eventually("T0010 delivered after the replay", DEADLINE, || async {
        sandbox.sandbox.trade("T0010").map(|_| ())
    })
    .await;
    web.goto(&format!("{}/orders/T0010", console.url))
        .await
        .unwrap();
    browser.text_contains(".why", "推送成功").await;

    // The schemes page previews a pasted callback.
    web.goto(&format!("{}/schemes", console.url)).await.unwrap();
    let callback = serde_json::to_string(&record_with_tid("PREVIEW-1")).unwrap();
    let area = browser.find("#preview-callback").await;
    browser
        .client
        .execute(
            "arguments[0].value = arguments[1];",
            vec![serde_json::to_value(&area).unwrap(), callback.into()],
        )
        .await
        .unwrap();
    browser.find("#preview-run").await.click().await.unwrap();
    browser.text_contains("#preview-result", "PREVIEW-1").await;
    browser.screenshot("schemes").await;

    // The shops and audit pages.
    web.goto(&format!("{}/shops", console.url)).await.unwrap();
    browser.text_contains("#live", "SHOP01").await;
    browser.screenshot("shops").await;
    web.goto(&format!("{}/audit", console.url)).await.unwrap();
    let audit = browser.text_contains("table.audit", "han.meimei").await;
    assert!(audit.contains("replay"), "{audit}");
    browser.screenshot("audit").await;

    browser.client.clone().close().await.unwrap();
    setup.stop().await;
}

/// A form on another site that posts to the console (with the operator logged in in the
/// same browser) is refused: the session cookie is SameSite=Strict and the POST's origin
/// is not the console's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian chromium + chromium-driver; .ci/run installs them"]
async fn a_cross_site_post_is_refused_in_the_browser() {
    let setup = Setup::start(Faults::default(), |_| {}, |_| {}).await;
    let (_, _, console) = setup.parts();
    let browser = Browser::start().await;
    let web = &browser.client;
    web.goto(&format!("{}/login", console.url)).await.unwrap();
    browser
        .find("#login-name")
        .await
        .send_keys("li.lei")
        .await
        .unwrap();
    browser
        .find("#login-token")
        .await
        .send_keys(ADMIN_TOKEN)
        .await
        .unwrap();
    browser.find("#login-submit").await.click().await.unwrap();
    browser.find("form[action='/logout']").await;

    // Another origin (another port) serving a form that posts to the console.
    let target = format!("{}/dead-letters/plan", console.url);
    let page = format!(
        "<!doctype html><form id=f method=post action=\"{target}\"><input name=do value=discard-all><input name=shop value=SHOP01><button id=go>go</button></form>"
    );
    let evil = axum::Router::new().route(
        "/",
        axum::routing::get(move || {
            let page = page.clone();
            async move { axum::response::Html(page) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let evil_url = format!(
        "http://localhost:{}/",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(async move { axum::serve(listener, evil).await });
    web.goto(&evil_url).await.unwrap();
    browser.find("#go").await.click().await.unwrap();
    let refused = browser.text("#error").await;
    assert!(
        refused.contains("refused") || refused.contains("log in"),
        "{refused}"
    );
    let audit = reqwest::get(format!("{}/audit", console.url))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!audit.contains("discard"), "nothing was done");
    browser.client.clone().close().await.unwrap();
    setup.stop().await;
    let _ = Duration::ZERO;
}
