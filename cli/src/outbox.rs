//! `wdtpipe outbox check|export|import`: an outbox on disk, while no deliver has it open.
//! `check` verifies it (exit 1 on any problem); `export` and `import` move one between
//! machines, e.g. to move a shard: stop its deliver, export, import on the new host, start.

use anyhow::Context;
use std::path::PathBuf;
use wdtpipe_deliver::store::offline::{self, CheckReport};

#[derive(Debug, clap::Args)]
pub struct OutboxArgs {
    #[command(subcommand)]
    pub action: Action,
}

#[derive(Debug, clap::Subcommand)]
pub enum Action {
    /// Verify an outbox: every key decodes, the queues and the entries agree, the counts
    /// match. DIR is the outbox or the data directory holding it.
    Check {
        dir: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write every key of an outbox to FILE (`-`: standard output).
    Export { dir: PathBuf, file: PathBuf },
    /// Build a new outbox in DIR (absent or empty) from an export (`-`: standard input),
    /// then check it.
    Import { file: PathBuf, dir: PathBuf },
}

pub fn run(args: OutboxArgs) -> anyhow::Result<()> {
    match args.action {
        Action::Check { dir, json } => {
            let dir = offline::outbox_dir(&dir);
            let report =
                offline::check(&dir).with_context(|| format!("cannot check {}", dir.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report_json(&report))?);
            } else {
                print!("{}", render(&dir, &report));
            }
            if report.problem_count > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
        Action::Export { dir, file } => {
            let dir = offline::outbox_dir(&dir);
            let count = if file.as_os_str() == "-" {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                offline::export(&dir, &mut out)?
            } else {
                let mut out = std::io::BufWriter::new(
                    std::fs::File::create(&file)
                        .with_context(|| format!("cannot create {}", file.display()))?,
                );
                offline::export(&dir, &mut out)?
            };
            eprintln!("exported {count} keys from {}", dir.display());
            Ok(())
        }
        Action::Import { file, dir } => {
            let count = if file.as_os_str() == "-" {
                let stdin = std::io::stdin();
                let mut input = std::io::BufReader::new(stdin.lock());
                offline::import(&mut input, &dir)?
            } else {
                let mut input = std::io::BufReader::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                );
                offline::import(&mut input, &dir)?
            };
            let report = offline::check(&dir)?;
            print!(
                "imported {count} keys into {}\n{}",
                dir.display(),
                render(&dir, &report)
            );
            if report.problem_count > 0 {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

fn render(dir: &std::path::Path, report: &CheckReport) -> String {
    let keys: Vec<String> = report
        .keys
        .iter()
        .map(|(prefix, n)| format!("{prefix} {n}"))
        .collect();
    let mut out = format!(
        "outbox {} (format {}): {} ready, {} retrying, {} dead letters; keys: {}\n",
        dir.display(),
        report.format,
        report.ready,
        report.retrying,
        report.dead_letters,
        keys.join(", ")
    );
    if report.problem_count == 0 {
        out.push_str("ok\n");
    } else {
        out.push_str(&format!("{} problem(s):\n", report.problem_count));
        for problem in &report.problems {
            out.push_str(&format!("  {problem}\n"));
        }
    }
    out
}

fn report_json(report: &CheckReport) -> serde_json::Value {
    serde_json::json!({
        "format": report.format,
        "keys": report.keys,
        "ready": report.ready,
        "retrying": report.retrying,
        "dead_letters": report.dead_letters,
        "problem_count": report.problem_count,
        "problems": report.problems,
    })
}
