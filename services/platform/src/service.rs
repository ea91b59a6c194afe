//! The shared `main` of every service: parse `--config`, load the layered config, start
//! telemetry, run until SIGTERM/Ctrl-C, and map the outcome to an exit code (64 = bad config).

use std::{future::Future, path::PathBuf, process::ExitCode};

use clap::{CommandFactory, FromArgMatches, Parser};
use tokio_util::sync::CancellationToken;

use crate::config::{ConfigError, TelemetryConfig};

/// `EX_USAGE`: the configuration or the command line is wrong.
const EXIT_USAGE: u8 = 64;

#[derive(Parser)]
struct ServiceArgs {
    /// Configuration file layered over the defaults (then CT_ environment variables).
    #[arg(long, env = "CT_CONFIG")]
    config: Option<PathBuf>,
}

pub async fn main<C, Fut>(
    service: &'static str,
    about: &'static str,
    load: impl FnOnce(Option<&std::path::Path>) -> Result<C, ConfigError>,
    telemetry: impl FnOnce(&C) -> &TelemetryConfig,
    run: impl FnOnce(C, CancellationToken) -> Fut,
) -> ExitCode
where
    Fut: Future<Output = anyhow::Result<()>>,
{
    let matches = ServiceArgs::command().name(service).about(about).get_matches();
    let args = ServiceArgs::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let config = match load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let _telemetry = match crate::telemetry::init(service, telemetry(&config)) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("{service}: {error}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match run(config, crate::shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "{service} failed.");
            ExitCode::FAILURE
        }
    }
}
