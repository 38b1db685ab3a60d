//! Command-line pieces every service binary shares, declared once.
//!
//! Each stage declares its settings in one `clap::Args` struct (`ingest::cli::Settings`,
//! `transform::cli::Settings`, `deliver::cli::Settings`) that both its own binary and
//! `wdtpipe up` flatten, so a setting has the same flag, environment variable and config-file
//! key wherever it is taken. Flags that would collide in `up` carry the stage's prefix
//! (`--deliver-grpc-addr`); a stage's binary also takes the short name it had alone
//! (`--grpc-addr`, `--config`), added by [`parse_with_aliases`].

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

/// Parses a service binary's command line, adding `aliases` (`(argument id, alias)`) to its
/// prefixed flags so `deliver --grpc-addr …` still works. Exits with clap's message on an
/// error, as `Parser::parse` does.
pub fn parse_with_aliases<T: clap::Parser>(aliases: &[(&'static str, &'static str)]) -> T {
    parse_from_with_aliases(std::env::args_os(), aliases).unwrap_or_else(|e| e.exit())
}

/// [`parse_with_aliases`] over given arguments, for tests.
pub fn parse_from_with_aliases<T: clap::Parser>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
    aliases: &[(&'static str, &'static str)],
) -> Result<T, clap::Error> {
    let mut command = T::command();
    for &(id, alias) in aliases {
        command = command.mut_arg(id, |arg| arg.visible_alias(alias));
    }
    let mut matches = command.try_get_matches_from(args)?;
    T::from_arg_matches_mut(&mut matches)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, clap::Parser)]
    struct Demo {
        #[arg(long, env = "DEMO_GRPC_ADDR_FOR_TEST")]
        demo_grpc_addr: Option<String>,
        #[command(flatten)]
        shared: SharedArgs,
    }

    #[test]
    fn aliases_and_log_format() {
        let demo: Demo = parse_from_with_aliases(
            ["demo", "--grpc-addr", "1.2.3.4:5", "--log-format", "json"],
            &[("demo_grpc_addr", "grpc-addr")],
        )
        .unwrap();
        assert_eq!(demo.demo_grpc_addr.as_deref(), Some("1.2.3.4:5"));
        assert_eq!(demo.shared.log_format, LogFormat::Json);
        let error = parse_from_with_aliases::<Demo>(["demo", "--log-format", "yaml"], &[])
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid value 'yaml'"), "{error}");
        let flags = flags_and_envs(&<Demo as clap::CommandFactory>::command());
        assert!(flags.contains(&("log-format".into(), "LOG_FORMAT".into())));
        assert!(flags.contains(&("grpc-tls-ca".into(), "GRPC_TLS_CA".into())));
    }
}
