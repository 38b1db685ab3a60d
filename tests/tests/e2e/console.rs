//! The operator console over a real pipeline (ingest, transform, deliver, the WDT sandbox)
//! on ephemeral ports: its pages, live events, actions with their guards (login, same
//! origin, dry run, frozen set), the audit log and alerts to a fake robot; and, in a real
//! headless Chromium through WebDriver, the operator's whole way through it (ignored where
//! Chromium is not installed; `.ci/run` installs it).

use std::time::Duration;
use wdtpipe_sandbox::Faults;
use wdtpipe_tests::{
    CONSOLE_TOKEN, Pipeline, PipelineOptions, RunningConsole, RunningSandbox, eventually, fixture,
};

const DEADLINE: Duration = Duration::from_secs(20);
const ADMIN_TOKEN: &str = "admin-token-for-console-tests";

mod browser;

/// A sandbox, a pipeline delivering to it with an admin token (as `wdtpipe up` has) and
/// a console over the pipeline.
struct Setup {
    sandbox: RunningSandbox,
    pipeline: Pipeline,
    console: RunningConsole,
}

impl Setup {
    /// Starts them with WDT's `faults` and what a test changes in the pipeline and console.
    async fn start(
        faults: Faults,
        pipeline: impl FnOnce(&mut PipelineOptions),
        console: impl FnOnce(&mut wdtpipe_console::config::ConsoleConfig),
    ) -> Self {
        let mut options = PipelineOptions {
            admin_token: wdtpipe_common::config::Secret::new(ADMIN_TOKEN),
            ..PipelineOptions::default()
        };
        pipeline(&mut options);
        let (sandbox, pipeline) = wdtpipe_tests::with_sandbox_faults(faults, options).await;
        let console = pipeline.console(console).await;
        Self {
            sandbox,
            pipeline,
            console,
        }
    }

    fn parts(&self) -> (&RunningSandbox, &Pipeline, &RunningConsole) {
        (&self.sandbox, &self.pipeline, &self.console)
    }

    async fn stop(self) {
        self.console.stop().await;
        self.pipeline.shutdown().await;
        self.sandbox.stop().await;
    }
}

/// WDT rejects the tids that contain `pattern`: their trades become dead letters.
fn rejecting(pattern: &str) -> Faults {
    Faults {
        reject_tid_pattern: Some(pattern.into()),
        ..Faults::default()
    }
}

/// Waits until `tid` is a dead letter.
async fn dead(pipeline: &Pipeline, tid: &str) {
    pipeline
        .status_in(tid, wdtpipe_proto::v1::DeliveryState::Dead, DEADLINE)
        .await;
}

/// The dry run's id on its page.
fn plan_id(body: &str) -> String {
    body.split("name=\"plan\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("a dry run page: {body}"))
        .to_owned()
}

/// An HTTP client of the console as a browser would be: cookies kept by hand, redirects
/// not followed (the tests read them), the console's own `Origin` on POSTs.
struct Browserless {
    client: reqwest::Client,
    base: String,
    cookie: String,
    lang: &'static str,
}

/// A page's answer.
struct Answer {
    status: u16,
    location: String,
    body: String,
}

impl Answer {
    /// Asserts that the page holds `text`, printing the page when it does not.
    #[track_caller]
    fn shows(&self, text: &str) {
        assert!(
            self.body.contains(text),
            "the page lacks {text:?}:\n{}",
            self.body
        );
    }
}

impl Browserless {
    fn new(console: &RunningConsole) -> Self {
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: console.url.clone(),
            cookie: String::new(),
            lang: "en",
        }
    }

    async fn answer(&mut self, request: reqwest::RequestBuilder) -> Answer {
        let response = request
            .header("cookie", &self.cookie)
            .header("accept-language", self.lang)
            .send()
            .await
            .expect("the console answers");
        let status = response.status().as_u16();
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned()
        };
        let location = header("location");
        let set_cookie = header("set-cookie");
        if let Some(pair) = set_cookie
            .split(';')
            .next()
            .filter(|p| p.starts_with("wdtpipe_session="))
        {
            self.cookie = pair.to_owned();
        }
        let body = response.text().await.unwrap_or_default();
        Answer {
            status,
            location,
            body,
        }
    }

    async fn get(&mut self, path: &str) -> Answer {
        let request = self.client.get(format!("{}{path}", self.base));
        self.answer(request).await
    }

    /// A form POST; `origin` is the `Origin` header (`None`: none at all).
    async fn post_from(
        &mut self,
        origin: Option<&str>,
        path: &str,
        form: &[(&str, &str)],
    ) -> Answer {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap());
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        self.answer(request).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Answer {
        let origin = self.base.clone();
        self.post_from(Some(&origin), path, form).await
    }

    async fn login(&mut self, token: &str) -> Answer {
        self.post(
            "/login",
            &[
                ("name", "li.lei"),
                ("token", token),
                ("next", "/dead-letters"),
            ],
        )
        .await
    }
}

/// The overview shows each shop's queue and deliveries and each scheme; an order is found
/// by tid, by record id and by tracking number, and its page shows its whole path, the
/// trade as pushed and why it is (or is not) in WDT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overview_search_and_an_orders_path() {
    let setup = Setup::start(Faults::default(), |_| {}, |_| {}).await;
    let (sandbox, pipeline, console) = setup.parts();
    let (status, receipt) = pipeline.post(&fixture("01-").body).await;
    assert_eq!(status, 200, "{receipt}");
    let record_id = receipt["receipts"][0]["record_id"]
        .as_str()
        .unwrap()
        .to_owned();
    eventually("T0001 delivered", DEADLINE, || async {
        sandbox.sandbox.trade("T0001").map(|_| ())
    })
    .await;
    let mut web = Browserless::new(console);
    let overview = eventually("the overview counts the delivery", DEADLINE, || async {
        let page = Browserless::new(console).get("/").await;
        (page.body.contains("SHOP01") && page.body.contains("default@builtin")).then_some(page)
    })
    .await;
    assert_eq!(overview.status, 200);
    assert!(overview.body.contains("Shops") || overview.body.contains("店铺"));

    for query in ["T0001", record_id.as_str(), "SF348882401373"] {
        let found = web.get(&format!("/search?q={query}")).await;
        assert_eq!(
            (found.status, found.location.as_str()),
            (303, "/orders/T0001"),
            "{query}"
        );
    }
    let missing = web.get("/search?q=NO-SUCH-ORDER").await;
    missing.shows("not-found");

    let order = web.get("/orders/T0001").await;
    assert_eq!(order.status, 200);
    for part in [
        "It is in WDT: delivered at",
        "Received by ingest",
        "default@builtin",
        &record_id,
        "delivered",
        "trade-json",
        "SHOP01",
    ] {
        assert!(
            order.body.contains(part),
            "{part} missing from the order page"
        );
    }
    let unknown = web.get("/orders/NEVER-SENT").await;
    assert!(unknown.body.contains("No deliver shard knows this tid"));
    setup.stop().await;
}

/// The event stream sends typed events numbered by the console's snapshots, each with the
/// live section; the polling fallback answers the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_are_typed_and_numbered() {
    let setup = Setup::start(Faults::default(), |_| {}, |_| {}).await;
    let (_, _, console) = setup.parts();
    let mut response = reqwest::get(format!("{}/events?view=overview", console.url))
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut text = String::new();
    let ids: Vec<u64> = tokio::time::timeout(DEADLINE, async {
        loop {
            let bytes = response
                .chunk()
                .await
                .expect("the stream")
                .expect("more events");
            text.push_str(&String::from_utf8_lossy(&bytes));
            let ids: Vec<u64> = text
                .lines()
                .filter_map(|l| l.strip_prefix("id:"))
                .filter_map(|id| id.trim().parse().ok())
                .collect();
            if ids.len() >= 2 {
                return ids;
            }
        }
    })
    .await
    .expect("two events in time");
    assert!(ids[1] > ids[0], "{ids:?}");
    assert!(
        text.contains("event: overview") || text.contains("event:overview"),
        "{text}"
    );
    assert!(text.contains("\"html\""), "{text}");
    let polled: serde_json::Value = serde_json::from_str(
        &reqwest::get(format!("{}/api/live?view=shops", console.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert!(polled["seq"].as_u64().unwrap() >= ids[0]);
    drop(response);
    setup.stop().await;
}

/// Acting needs a login with the operator (or admin) token and a POST from the console's
/// own pages: without a session, with a wrong token, from another origin or with no origin
/// at all, nothing is done; pages never carry a secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn actions_need_a_login_and_the_consoles_own_pages() {
    let setup = Setup::start(Faults::default(), |_| {}, |_| {}).await;
    let (_, _, console) = setup.parts();
    let mut web = Browserless::new(console);
    let plan = [("do", "replay-all"), ("shop", "SHOP01")];
    assert_eq!(web.post("/dead-letters/plan", &plan).await.status, 401);
    assert_eq!(
        web.post("/shops/resume", &[("shop", "SHOP01")])
            .await
            .status,
        401
    );
    let wrong = web.login("not-the-token").await;
    assert_eq!(wrong.status, 401);
    assert!(web.cookie.is_empty());
    let refused_login = web
        .post_from(
            Some("http://evil.example"),
            "/login",
            &[("name", "x"), ("token", CONSOLE_TOKEN)],
        )
        .await;
    assert_eq!(refused_login.status, 403);
    assert!(web.cookie.is_empty());

    let ok = web.login(CONSOLE_TOKEN).await;
    assert_eq!((ok.status, ok.location.as_str()), (303, "/dead-letters"));
    assert!(!web.cookie.is_empty());
    let page = web.get("/dead-letters").await;
    assert!(
        page.body.contains("replay-all"),
        "logged in, the buttons show"
    );
    for secret in [CONSOLE_TOKEN, ADMIN_TOKEN] {
        assert!(!page.body.contains(secret));
    }
    let cross = web
        .post_from(Some("http://evil.example"), "/dead-letters/plan", &plan)
        .await;
    assert_eq!(cross.status, 403, "{}", cross.body);
    let bare = web.post_from(None, "/dead-letters/plan", &plan).await;
    assert_eq!(bare.status, 403);
    let admin = {
        let mut other = Browserless::new(console);
        other.login(ADMIN_TOKEN).await.status
    };
    assert_eq!(admin, 303, "deliver's admin token logs in too");
    let audit = web.get("/audit").await.body;
    assert!(
        audit.contains("login refused") && audit.contains("li.lei"),
        "{audit}"
    );
    setup.stop().await;
}

/// A dead letter is replayed from the console: the dry run shows how many and which and
/// the equivalent command, and freezes the set, so a letter that dies after the dry run
/// is not swept along; the confirm replays, the trade is delivered, the audit log says
/// who did what to how many.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_through_a_dry_run() {
    let setup = Setup::start(rejecting("BAD"), |_| {}, |_| {}).await;
    let (sandbox, pipeline, console) = setup.parts();
    pipeline.accept_tids(["BAD-1"]).await;
    dead(pipeline, "BAD-1").await;
    let mut web = Browserless::new(console);
    let listed = web.get("/dead-letters?reason=sandbox").await;
    assert!(listed.body.contains("BAD-1") && listed.body.contains("rejected by sandbox rule"));
    assert!(
        listed.body.contains("login"),
        "not logged in: no buttons, a login link"
    );
    web.login(CONSOLE_TOKEN).await;
    let plan = web
        .post(
            "/dead-letters/plan",
            &[
                ("do", "replay-all"),
                ("reason", "sandbox rule"),
                ("shop", "SHOP01"),
            ],
        )
        .await;
    assert_eq!(plan.status, 200, "{}", plan.body);
    plan.shows("id=\"plan-count\">1<");
    assert!(
        plan.body
            .contains("wdtpipe dlq replay --shop SHOP01 --reason &#39;sandbox rule&#39; --until "),
        "{}",
        plan.body
    );
    let plan = plan_id(&plan.body);
    // A letter that dies after the dry run is not part of it.
    pipeline.accept_tids(["BAD-2"]).await;
    dead(pipeline, "BAD-2").await;
    sandbox.sandbox.set_faults(Faults::default());
    let done = web.post("/dead-letters/apply", &[("plan", &plan)]).await;
    assert_eq!(done.status, 200, "{}", done.body);
    done.shows("replayed 1 letter(s)");
    eventually("BAD-1 delivered", DEADLINE, || async {
        sandbox.sandbox.trade("BAD-1").map(|_| ())
    })
    .await;
    assert!(sandbox.sandbox.trade("BAD-2").is_none(), "BAD-2 stays dead");
    let again = web.post("/dead-letters/apply", &[("plan", &plan)]).await;
    assert_eq!(again.status, 400, "a dry run is confirmed once");
    let audit = web.get("/audit").await.body;
    assert!(
        audit.contains("replay")
            && audit.contains("replayed 1 letter(s)")
            && audit.contains("li.lei")
    );
    let remaining = web.get("/dead-letters").await.body;
    assert!(remaining.contains("BAD-2") && !remaining.contains("BAD-1<"));
    setup.stop().await;
}

/// The selected letters alone are re-mapped (through `Transform.Remap`, which maps their
/// records again and queues the trades) or discarded, each after its dry run; the letters
/// not selected stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selected_letters_are_remapped_or_discarded() {
    let setup = Setup::start(rejecting("SEL"), |_| {}, |_| {}).await;
    let (sandbox, pipeline, console) = setup.parts();
    pipeline.accept_tids(["SEL-A", "SEL-B", "SEL-C"]).await;
    let mut web = Browserless::new(console);
    web.login(CONSOLE_TOKEN).await;
    let page = eventually("three letters listed", DEADLINE, || async {
        let page = Browserless::new(console)
            .get("/dead-letters?reason=sandbox")
            .await
            .body;
        page.contains("<strong>3</strong>").then_some(page)
    })
    .await;
    let key = |tid: &str| {
        page.split("name=\"key\" value=\"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .find(|value| value.split('|').nth(1) == Some(tid))
            .unwrap_or_else(|| panic!("{tid} has a checkbox"))
            .replace("&#39;", "'")
    };
    let (a, b) = (key("SEL-A"), key("SEL-B"));
    sandbox.sandbox.set_faults(Faults::default());
    let remap = web
        .post(
            "/dead-letters/plan",
            &[("do", "remap-selected"), ("key", &a)],
        )
        .await;
    remap.shows("id=\"plan-count\">1<");
    remap.shows("wdtpipe dlq remap SEL-A");
    let done = web
        .post("/dead-letters/apply", &[("plan", &plan_id(&remap.body))])
        .await;
    done.shows("re-mapped 1 letter(s); queued 1 trade(s)");
    eventually("SEL-A delivered after the re-map", DEADLINE, || async {
        sandbox.sandbox.trade("SEL-A").map(|_| ())
    })
    .await;
    let discard = web
        .post(
            "/dead-letters/plan",
            &[("do", "discard-selected"), ("key", &b)],
        )
        .await;
    let done = web
        .post("/dead-letters/apply", &[("plan", &plan_id(&discard.body))])
        .await;
    done.shows("discarded 1 letter(s)");
    let left = web.get("/dead-letters").await.body;
    assert!(
        left.contains("SEL-C") && !left.contains(">SEL-B<") && !left.contains(">SEL-A<"),
        "{left}"
    );
    assert!(sandbox.sandbox.trade("SEL-B").is_none() && sandbox.sandbox.trade("SEL-C").is_none());
    let none = web
        .post("/dead-letters/plan", &[("do", "replay-selected")])
        .await;
    assert_eq!(none.status, 400, "nothing selected");
    setup.stop().await;
}

/// A shop paused by WDT's sign error shows on the shops page with WDT's answer verbatim;
/// once the cause is fixed, "resume now" makes it call WDT at once instead of after the
/// (here: one hour) pause, and the order is delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_now_cuts_a_pause_short() {
    let paused = Faults {
        sign_error_shops: vec!["SHOP01".into()],
        ..Faults::default()
    };
    let pause_an_hour = |options: &mut PipelineOptions| options.retry.pause_probe_ms = 3_600_000;
    let setup = Setup::start(paused, pause_an_hour, |_| {}).await;
    let (sandbox, pipeline, console) = setup.parts();
    assert_eq!(pipeline.post(&fixture("01-").body).await.0, 200);
    let mut web = Browserless::new(console);
    let shops = eventually("SHOP01 paused on the shops page", DEADLINE, || async {
        let page = Browserless::new(console).get("/api/live?view=shops").await;
        page.body
            .contains("class=\\\"paused\\\"")
            .then_some(page.body)
    })
    .await;
    assert!(shops.contains("签名") || shops.contains("sign"), "{shops}");
    let order = web.get("/orders/T0001").await.body;
    assert!(
        order.contains("waiting: shop SHOP01 is paused since"),
        "{order}"
    );
    sandbox.sandbox.set_faults(Faults::default());
    web.login(CONSOLE_TOKEN).await;
    let resumed = web
        .post(
            "/shops/resume",
            &[("shop", "SHOP01"), ("connector", "default")],
        )
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.body);
    resumed.shows("calls WDT now");
    eventually("T0001 delivered after the resume", DEADLINE, || async {
        sandbox.sandbox.trade("T0001").map(|_| ())
    })
    .await;
    assert!(web.get("/audit").await.body.contains("resume"));
    setup.stop().await;
}

/// Off loopback, the console does not start without an operator token.
#[tokio::test]
async fn off_loopback_the_console_needs_a_token() {
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let config = wdtpipe_console::config::ConsoleConfig::default();
    let error = wdtpipe_console::serve(config, listener, std::future::pending())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("set CONSOLE_TOKEN"), "{error}");
}

/// A fake work-chat robot: records every message it is sent.
async fn fake_robot() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = got.clone();
    let app = axum::Router::new().route(
        "/send",
        axum::routing::post(move |body: String| {
            let sink = sink.clone();
            async move {
                sink.lock().unwrap().push(body);
                r#"{"errcode":0,"errmsg":"ok"}"#
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/send?key=robot-key",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, got)
}

/// A burst of dead letters reaches the WeCom robot as one grouped message naming the shop,
/// the reason and the count, with a link to the console's dead-letter page.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_dead_letters_is_one_grouped_alert() {
    let (robot, got) = fake_robot().await;
    let webhook = |c: &mut wdtpipe_console::config::ConsoleConfig| {
        c.alert_webhooks = format!("wecom={robot}").into();
    };
    let setup = Setup::start(rejecting("BURST"), |_| {}, webhook).await;
    let (_, pipeline, console) = setup.parts();
    // Let the console take its baseline before the burst.
    eventually("the console's first look", DEADLINE, || async {
        reqwest::get(format!("{}/api/live", console.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?
            .contains("\"seq\":")
            .then_some(())
    })
    .await;
    pipeline
        .accept_tids((0..30).map(|i| format!("BURST-{i:02}")))
        .await;
    let message = eventually("the robot's message", DEADLINE, || async {
        got.lock().unwrap().first().cloned()
    })
    .await;
    assert!(
        message.contains("SHOP01") && message.contains("30"),
        "{message}"
    );
    assert!(message.contains("rejected by sandbox rule"), "{message}");
    assert!(
        message.contains(&format!("{}/dead-letters?shop=SHOP01", console.url)),
        "{message}"
    );
    assert_eq!(got.lock().unwrap().len(), 1, "one message for the burst");
    setup.stop().await;
}

/// A robot endpoint that accepts connections and never answers holds only the alerts:
/// callbacks keep being acknowledged and delivered, and the console keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_robot_does_not_slow_delivery() {
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hung_url = format!("http://{}/hook", hung.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = hung.accept().await {
            open.push(socket);
        }
    });
    let webhook = |c: &mut wdtpipe_console::config::ConsoleConfig| {
        c.alert_webhooks = format!("json={hung_url}").into();
    };
    let setup = Setup::start(rejecting("DOWN"), |_| {}, webhook).await;
    let (sandbox, pipeline, console) = setup.parts();
    for i in 0..20 {
        let tid = match i % 4 {
            0 => format!("DOWN-{i}"),
            _ => format!("UP-{i}"),
        };
        pipeline.accept_tids([tid]).await;
    }
    eventually("every good trade delivered", DEADLINE, || async {
        (0..20)
            .filter(|i| i % 4 != 0)
            .all(|i| sandbox.sandbox.trade(&format!("UP-{i}")).is_some())
            .then_some(())
    })
    .await;
    let metrics = eventually("the alert waits on the hung robot", DEADLINE, || async {
        let text = reqwest::get(format!("{}/metrics", console.url))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let firing: u64 = text
            .lines()
            .find_map(|l| l.strip_prefix("wdtpipe_console_alerts_firing "))?
            .trim()
            .parse()
            .ok()?;
        (firing > 0).then_some(text)
    })
    .await;
    assert!(
        metrics.contains("wdtpipe_console_alert_messages_total"),
        "{metrics}"
    );
    assert_eq!(Browserless::new(console).get("/").await.status, 200);
    setup.stop().await;
    held.abort();
}
