//! What every service binary does around its stage, written once: the async runtime, the
//! command line (the stage's flags, the shared ones, and the short aliases), tracing, and the
//! shutdown signal. A binary's `main.rs` is one [`service_main!`](crate::service_main) line
//! naming its [`Binary`].

use crate::cli::SharedArgs;
use crate::config::ConfigError;
use std::future::Future;
use std::pin::Pin;

/// The future a stage serves until: SIGINT or SIGTERM in a binary.
pub type Shutdown = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A stage's binary: the flags it takes besides the shared ones ([`SharedArgs`]), and how it
/// runs once they are parsed.
pub trait Binary: clap::Args + Sized {
    /// The binary's name (`deliver`); its prefixed settings start with it (`deliver_grpc_addr`).
    const NAME: &'static str;
    /// What the binary does, in one line for `--help`.
    const ABOUT: &'static str;
    /// Settings that carry the stage's prefix so they do not collide in `wdtpipe up`
    /// (`--deliver-grpc-addr`), which the binary also takes by the short name it had alone
    /// (`--grpc-addr`).
    const SHORT_NAMES: &'static [&'static str];
    /// The checked settings the stage runs with.
    type Config;

    /// The settings (file, environment, flags), checked.
    fn config(self, shared: SharedArgs) -> Result<Self::Config, ConfigError>;

    /// Binds what the settings name, then serves until `shutdown` completes.
    fn serve(config: Self::Config, shutdown: Shutdown) -> impl Future<Output = anyhow::Result<()>>;
}

/// A binary's whole command line.
#[derive(Debug, clap::Parser)]
#[command(version)]
struct CommandLine<B: Binary> {
    #[command(flatten)]
    binary: B,
    #[command(flatten)]
    shared: SharedArgs,
}

/// The binary's command (for `--help`, and for comparing its settings with `wdtpipe up`'s).
pub fn command<B: Binary>() -> clap::Command {
    let command = <CommandLine<B> as clap::CommandFactory>::command()
        .name(B::NAME)
        .about(B::ABOUT);
    B::SHORT_NAMES.iter().fold(command, |command, &short| {
        let id = format!("{}_{}", B::NAME, short.replace('-', "_"));
        command.mut_arg(id, |arg| arg.visible_alias(short))
    })
}

/// Parses a binary's command line (the program name first).
pub fn parse_from<B: Binary>(
    args: impl IntoIterator<Item = impl Into<std::ffi::OsString> + Clone>,
) -> Result<(B, SharedArgs), clap::Error> {
    let mut matches = command::<B>().try_get_matches_from(args)?;
    let line = <CommandLine<B> as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)?;
    Ok((line.binary, line.shared))
}

/// A service binary's `main`: the runtime ([`crate::runtime::build`]), the command line
/// (exiting with clap's message when it is wrong), tracing in the chosen format, then the
/// stage until SIGINT or SIGTERM.
pub fn main<B: Binary>() -> anyhow::Result<()> {
    crate::runtime::build()?.block_on(async {
        let (binary, shared) = parse_from::<B>(std::env::args_os()).unwrap_or_else(|e| e.exit());
        crate::telemetry::init(shared.log_format);
        let config = binary.config(shared)?;
        B::serve(config, Box::pin(crate::shutdown::shutdown_signal())).await
    })
}

/// A service binary's whole `main.rs` body: mimalloc as the allocator, and
/// [`main`](crate::service::main) for the given [`Binary`].
///
/// Under load glibc's malloc took about a quarter of the CPU of the stages (perf:
/// `_int_malloc`, `malloc_consolidate`, `unlink_chunk`; in deliver sled copies and frees tree
/// nodes on every write); mimalloc's per-thread free lists avoid that, for a few MB more
/// resident memory. BENCHMARKS.md has the alternated runs. The binary's crate depends on
/// `mimalloc` and `anyhow`.
#[macro_export]
macro_rules! service_main {
    ($binary:ty) => {
        #[global_allocator]
        static GLOBAL: ::mimalloc::MiMalloc = ::mimalloc::MiMalloc;

        fn main() -> ::anyhow::Result<()> {
            $crate::service::main::<$binary>()
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::LogFormat;

    /// A stage with one prefixed setting.
    #[derive(Debug, clap::Args)]
    struct Demo {
        #[arg(long, env = "DEMO_GRPC_ADDR_FOR_TEST")]
        demo_grpc_addr: Option<String>,
    }

    impl Binary for Demo {
        const NAME: &'static str = "demo";
        const ABOUT: &'static str = "a demonstration";
        const SHORT_NAMES: &'static [&'static str] = &["grpc-addr"];
        type Config = ();

        fn config(self, _shared: SharedArgs) -> Result<(), ConfigError> {
            Ok(())
        }

        async fn serve(_config: (), _shutdown: Shutdown) -> anyhow::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_names_and_shared_flags() {
        let (demo, shared) =
            parse_from::<Demo>(["demo", "--grpc-addr", "1.2.3.4:5", "--log-format", "json"])
                .unwrap();
        assert_eq!(demo.demo_grpc_addr.as_deref(), Some("1.2.3.4:5"));
        assert_eq!(shared.log_format, LogFormat::Json);
        let error = parse_from::<Demo>(["demo", "--log-format", "yaml"])
            .unwrap_err()
            .to_string();
        assert!(error.contains("invalid value 'yaml'"), "{error}");
        let command = command::<Demo>();
        assert_eq!(command.get_name(), "demo");
        let flags = crate::cli::flags_and_envs(&command);
        assert!(flags.contains(&("demo-grpc-addr".into(), "DEMO_GRPC_ADDR_FOR_TEST".into())));
        assert!(flags.contains(&("log-format".into(), "LOG_FORMAT".into())));
        assert!(flags.contains(&("grpc-tls-ca".into(), "GRPC_TLS_CA".into())));
    }
}
