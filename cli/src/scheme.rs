//! `wdtpipe scheme …`: the integration schemes.
//! - `list`: what a running transform serves (id, version, source, connector, rules and
//!   load time), over gRPC `Transform.ListSchemes`;
//! - `validate`: every error of every scheme file, with file, line and column;
//! - `test`: the files' `[[tests]]` (see [`crate::scheme_test`]);
//! - `preview`: what a callback would become (see [`crate::scheme_preview`]);
//! - `new`: a commented starting file that validates as written.

use anyhow::Context;
use std::path::PathBuf;
use wdtpipe_common::cli::ConnectorsArg;
use wdtpipe_common::format_ms;
use wdtpipe_common::grpc::{ClientTimeouts, GrpcTls, lazy_channel};
use wdtpipe_proto::v1::transform_client::TransformClient;
use wdtpipe_proto::v1::{ListSchemesRequest, SchemeInfo};
use wdtpipe_transform::scheme::dir::files_in;
use wdtpipe_transform::scheme::{BuiltinOptions, SchemeError, load_dir, load_file};

#[derive(Debug, clap::Args)]
pub struct SchemeArgs {
    #[command(subcommand)]
    pub action: Action,
}

/// The commented starting file `wdtpipe scheme new` writes.
pub const TEMPLATE: &str = include_str!("../templates/scheme.toml");

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Check scheme files (files or directories; default SCHEMES_DIR): every error of every
    /// file with file, line and column. Exits 0 only when all are valid.
    Validate {
        #[command(flatten)]
        files: SchemeFiles,
    },
    /// Run the `[[tests]]` of scheme files (files or directories; default SCHEMES_DIR).
    /// Exits 1 on any failure.
    Test {
        #[command(flatten)]
        files: SchemeFiles,
        /// Also write a JUnit XML report here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// The trades a callback would become with a scheme, each field with what produced it;
    /// nothing is sent or written.
    Preview {
        /// The scheme file.
        #[arg(long)]
        scheme: PathBuf,
        /// The callback body (a JSON file, or - for standard input).
        callback: PathBuf,
        /// Only the fields that differ from the built-in scheme.
        #[arg(long)]
        diff: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        connectors: ConnectorsArg,
    },
    /// Write a commented starting scheme (every rule kind, a table, tests) to PATH.
    New {
        /// Where to write it (refused if it exists).
        #[arg(default_value = "my-scheme.toml")]
        path: PathBuf,
    },
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

/// One scheme file, with the built-in defaults; its errors, one a line, as the error.
pub fn load_scheme(
    path: &std::path::Path,
    connectors: &[String],
) -> anyhow::Result<wdtpipe_transform::scheme::Scheme> {
    load_file(path, &BuiltinOptions::default(), connectors).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("{}", lines.join("\n"))
    })
}

/// Which scheme files a tool reads, and the WDT accounts they may name.
#[derive(Debug, clap::Args)]
pub struct SchemeFiles {
    /// Scheme files or directories of them.
    paths: Vec<PathBuf>,
    /// The schemes directory, when no path is given.
    #[arg(long, env = "SCHEMES_DIR")]
    schemes_dir: Option<PathBuf>,
    #[command(flatten)]
    connectors: ConnectorsArg,
}

impl SchemeFiles {
    /// The paths given, or SCHEMES_DIR; and the connector names.
    fn resolve(self) -> anyhow::Result<(Vec<PathBuf>, Vec<String>)> {
        let paths = if self.paths.is_empty() {
            vec![
                self.schemes_dir
                    .context("name scheme files or directories, or set SCHEMES_DIR")?,
            ]
        } else {
            self.paths
        };
        let names = wdtpipe_common::connectors::names(self.connectors.connectors_file.as_deref())?;
        Ok((paths, names))
    }
}

pub async fn run(args: SchemeArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Validate { files } => {
            let (paths, names) = files.resolve()?;
            let (files, errors) = validate(&paths, &names);
            for error in &errors {
                println!("{error}");
            }
            println!(
                "{files} scheme file(s), {} error(s){}",
                errors.len(),
                if errors.is_empty() { ": all valid" } else { "" }
            );
            if errors.is_empty() {
                Ok(())
            } else {
                std::process::exit(1)
            }
        }
        Action::Test { files, junit } => {
            let (paths, names) = files.resolve()?;
            let files = crate::scheme_test::scheme_files(&paths);
            let outcomes = crate::scheme_test::run_files(&files, &names);
            print!("{}", crate::scheme_test::render(&outcomes));
            if let Some(path) = junit {
                std::fs::write(&path, crate::scheme_test::junit(&outcomes))
                    .with_context(|| format!("cannot write {}", path.display()))?;
            }
            if outcomes.iter().any(|o| !o.failures.is_empty()) {
                std::process::exit(1)
            }
            Ok(())
        }
        Action::Preview {
            scheme,
            callback,
            diff,
            json,
            connectors,
        } => {
            let names = wdtpipe_common::connectors::names(connectors.connectors_file.as_deref())?;
            let scheme = load_scheme(&scheme, &names)?;
            let body = if callback.as_os_str() == "-" {
                let mut body = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut body)?;
                body
            } else {
                std::fs::read(&callback)
                    .with_context(|| format!("cannot read {}", callback.display()))?
            };
            let previews = crate::scheme_preview::preview(&scheme, &body, diff)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&crate::scheme_preview::json(&previews))?
                );
            } else {
                print!("{}", crate::scheme_preview::render(&previews, diff));
            }
            Ok(())
        }
        Action::New { path } => {
            if path.exists() {
                anyhow::bail!("{} exists; choose another path", path.display());
            }
            std::fs::write(&path, TEMPLATE)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!(
                "wrote {}: edit it, then `wdtpipe scheme validate {0}` and `wdtpipe scheme test {0}`",
                path.display()
            );
            Ok(())
        }
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

/// Checks files and directories: how many scheme files were read, and every error.
pub fn validate(paths: &[PathBuf], connectors: &[String]) -> (usize, Vec<SchemeError>) {
    let options = BuiltinOptions::default();
    let (mut files, mut errors) = (0, Vec::new());
    for path in paths {
        if path.is_dir() {
            files += files_in(path).map_or(0, |found| found.len());
            if let Err(mut found) = load_dir(path, &options, connectors) {
                errors.append(&mut found);
            }
        } else {
            files += 1;
            if let Err(mut found) = load_file(path, &options, connectors) {
                errors.append(&mut found);
            }
        }
    }
    (files, errors)
}
