//! The ceiling `wdtpipe up` is measured against (BENCHMARKS.md): a bare axum server that
//! only parses each callback body as JSON and answers 200, on the same machine, with the
//! same allocator. `cargo run --release -p wdtpipe --example bare_json_server -- 127.0.0.1:8088`
//!
//! It is also a WDT stand-in that answers at once: `POST /openapi2/trade_push.php` answers
//! success without parsing the call, as a remote WDT costs the relay nothing
//! (`WDT_URL=http://127.0.0.1:8088/openapi2` points `wdtpipe up` at it).

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

async fn callback(body: Bytes) -> (StatusCode, &'static str) {
    match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(_) => (StatusCode::OK, r#"{"code":0,"message":"accepted"}"#),
        Err(_) => (StatusCode::BAD_REQUEST, r#"{"code":400}"#),
    }
}

/// WDT's success answer, given to every call without parsing it. The body is still read:
/// answering before a large call is in would break the connection under the client.
async fn trade_push(_call: Bytes) -> &'static str {
    r#"{"code":0,"message":"","new_count":1,"chg_count":0}"#
}

fn main() -> anyhow::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8088".to_owned());
    wdtpipe_common::runtime::build()?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "bare JSON server on http://{}/v1/callback",
            listener.local_addr()?
        );
        let app = axum::Router::new()
            .route("/v1/callback", post(callback))
            .route("/openapi2/trade_push.php", post(trade_push));
        axum::serve(listener, app).await?;
        Ok(())
    })
}
