use std::{path::PathBuf, process::ExitCode};

use clap::Parser;

/// Edge ingestor: signed webhooks in, Avro records on ct.events.v1 out.
#[derive(Parser)]
struct Args {
    /// Configuration file layered over the defaults (then CT_ environment variables).
    #[arg(long, env = "CT_CONFIG")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = match ct_edge::Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ct-edge: {error}");
            return ExitCode::from(64);
        }
    };
    let _telemetry = match ct_platform::telemetry::init("ct-edge", &config.telemetry) {
        Ok(guard) => guard,
        Err(error) => {
            eprintln!("ct-edge: {error}");
            return ExitCode::from(64);
        }
    };
    match ct_edge::run(config, ct_platform::shutdown::on_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ct-edge failed.");
            ExitCode::FAILURE
        }
    }
}
