//! Command-line pieces every service binary shares, declared once.
//!
//! Each stage declares its settings in one `clap::Args` struct (`ingest::cli::Settings`,
//! `transform::cli::Settings`, `deliver::cli::Settings`) that both its own binary and
//! `wdtpipe up` flatten, so a setting has the same flag, environment variable and config-file
//! key wherever it is taken. Flags that would collide in `up` carry the stage's prefix
//! (`--deliver-grpc-addr`); a stage's binary also takes the short name it had alone
//! (`--grpc-addr`, `--config`), added by [`crate::service::command`].

use crate::grpc::GrpcTls;
use crate::telemetry::LogFormat;

/// Settings every service takes: gRPC TLS and the log format.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "shared_settings")]
pub struct SharedArgs {
    #[command(flatten)]
    pub tls: GrpcTls,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The WDT accounts file, taken by transform (the names schemes may use) and deliver (the
/// accounts it pushes with): declared once, so `wdtpipe up` takes it once for both.
#[derive(Debug, Clone, Default, clap::Args)]
#[group(id = "connectors_settings")]
pub struct ConnectorsArg {
    /// TOML file of WDT accounts (connectors) besides `default`, which the WDT_* settings
    /// define [default: none].
    #[arg(long, env = "CONNECTORS_FILE")]
    pub connectors_file: Option<std::path::PathBuf>,
}

/// `(long flag, environment variable)` of every argument of a command, its subcommands'
/// excluded: what the settings comparison between the stages and `wdtpipe up` reads.
pub fn flags_and_envs(command: &clap::Command) -> Vec<(String, String)> {
    command
        .get_arguments()
        .filter(|arg| !matches!(arg.get_id().as_str(), "help" | "version"))
        .filter_map(|arg| {
            let long = arg.get_long()?;
            let env = arg
                .get_env()
                .map(|e| e.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some((long.to_owned(), env))
        })
        .collect()
}
