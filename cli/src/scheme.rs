//! `wdtpipe scheme list`: the integration schemes a running transform serves (id, version,
//! source, connector, rules and load time), read over gRPC `Transform.ListSchemes`.

use anyhow::Context;
use wdtpipe_common::format_ms;
use wdtpipe_common::grpc::{ClientTimeouts, GrpcTls, lazy_channel};
use wdtpipe_proto::v1::transform_client::TransformClient;
use wdtpipe_proto::v1::{ListSchemesRequest, SchemeInfo};

#[derive(Debug, clap::Args)]
pub struct SchemeArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// The schemes a running transform serves.
    List {
        /// The transform service.
        #[arg(long, env = "TRANSFORM_URL", default_value = "http://127.0.0.1:50052")]
        transform: String,
        #[command(flatten)]
        tls: GrpcTls,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(args: SchemeArgs) -> anyhow::Result<()> {
    match args.action {
        Action::List {
            transform,
            tls,
            json,
        } => {
            let channel = lazy_channel(&transform, ClientTimeouts::default(), &tls)?;
            let answer = TransformClient::new(channel)
                .list_schemes(ListSchemesRequest {})
                .await
                .with_context(|| format!("cannot ask transform at {transform}"))?
                .into_inner();
            if json {
                let list: Vec<serde_json::Value> = answer.schemes.iter().map(scheme_json).collect();
                let out = serde_json::json!({
                    "schemes": list,
                    "last_reload_error": answer.last_reload_error,
                    "last_reload_error_at_ms": answer.last_reload_error_at_ms,
                });
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                print!("{}", render(&answer.schemes));
                if !answer.last_reload_error.is_empty() {
                    println!(
                        "\nthe last reload was refused at {} (the schemes above keep serving):\n{}",
                        format_ms(answer.last_reload_error_at_ms),
                        answer.last_reload_error
                    );
                }
            }
            Ok(())
        }
    }
}

fn scheme_json(s: &SchemeInfo) -> serde_json::Value {
    serde_json::json!({
        "id": s.id, "version": s.version, "source": s.source, "connector": s.connector,
        "loaded_at_ms": s.loaded_at_ms, "path": s.path, "description": s.description,
        "trade_rules": s.trade_rules, "line_rules": s.line_rules, "skip": s.skip,
    })
}

/// One line per scheme.
pub fn render(schemes: &[SchemeInfo]) -> String {
    let mut out = format!(
        "{:<24} {:<12} {:<9} {:<12} {:>5} {:<23} {}\n",
        "SCHEME", "VERSION", "SOURCE", "CONNECTOR", "RULES", "LOADED", "FILE"
    );
    for s in schemes {
        let rules = s.trade_rules + s.line_rules + u32::from(s.skip);
        out.push_str(&format!(
            "{:<24} {:<12} {:<9} {:<12} {:>5} {:<23} {}\n",
            s.id,
            s.version,
            s.source,
            s.connector,
            rules,
            format_ms(s.loaded_at_ms),
            if s.path.is_empty() {
                "(built in)"
            } else {
                &s.path
            },
        ));
    }
    out
}
