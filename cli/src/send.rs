//! `wdtpipe send FILE`: POST a callback body to ingest and print the answer.

use anyhow::Context;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SendArgs {
    /// JSON file holding one record, an array, or {"stockout_list": [...]}.
    pub file: PathBuf,
    /// Ingest's HTTP base URL.
    #[arg(long, env = "INGEST_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

pub async fn run(args: SendArgs) -> anyhow::Result<()> {
    let body = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let url = format!("{}/v1/callback", args.url.trim_end_matches('/'));
    let response = reqwest::Client::new()
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .with_context(|| format!("cannot reach ingest at {url}"))?;
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    let pretty = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or(text);
    println!("HTTP {}\n{pretty}", status.as_u16());
    if status.is_success() {
        Ok(())
    } else {
        anyhow::bail!("callback not accepted (HTTP {})", status.as_u16())
    }
}
