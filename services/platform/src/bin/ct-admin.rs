//! `ct-admin`: the Kafka checks and set-up that `deploy/stack.sh` runs.
#![allow(clippy::print_stdout)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ct_platform::{config::KafkaConfig, kafka, topics};

#[derive(Parser)]
#[command(about = "Checks a Kafka broker and creates Control Tower's topics")]
struct Cli {
    /// Kafka bootstrap servers.
    #[arg(long, env = "CT_KAFKA__BOOTSTRAP_SERVERS", default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Succeeds when the broker answers a metadata request.
    Ping {
        #[arg(long, default_value_t = 5)]
        timeout_secs: u64,
    },
    /// Creates the topics of a topics file that are missing (partition counts and configs).
    EnsureTopics {
        #[arg(long)]
        file: PathBuf,
    },
    /// Produces a record with the idempotent producer and consumes it back.
    Roundtrip {
        #[arg(long, default_value_t = 30)]
        timeout_secs: u64,
    },
    /// Prints a consumer group's lag on a topic: records between its committed offsets (which
    /// Control Tower's consumers commit after each stored batch) and the end of each partition.
    Lag {
        #[arg(long)]
        group: String,
        #[arg(long)]
        topic: String,
    },
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = KafkaConfig { bootstrap_servers: cli.bootstrap.clone(), properties: Default::default() };
    let result: anyhow::Result<()> = async {
        match cli.command {
            Command::Ping { timeout_secs } => {
                let brokers = kafka::ping(&config, Duration::from_secs(timeout_secs))?;
                println!("Kafka at {} answers ({brokers} broker(s))", cli.bootstrap);
            }
            Command::EnsureTopics { file } => {
                let specs = topics::load(&file)?;
                let created = kafka::ensure_topics(&config, &specs).await?;
                println!("topics: {} present, {} created {:?}", specs.len(), created.len(), created);
            }
            Command::Roundtrip { timeout_secs } => {
                let took = kafka::round_trip(&config, Duration::from_secs(timeout_secs)).await?;
                println!("Kafka round trip (idempotent produce, consume) ok in {} ms", took.as_millis());
            }
            Command::Lag { group, topic } => {
                let lag = tokio::task::spawn_blocking(move || kafka::group_lag(&config, &group, &topic)).await??;
                println!("{lag}");
            }
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ct-admin: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
