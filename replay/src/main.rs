//! `ct`: the SRE command line. `ct rebuild projector` rebuilds the read models from offset 0 into
//! a fresh schema beside the live one, compares checksums and, with `--swap`, swaps them in.
#![allow(clippy::print_stdout)]

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use ct_replay::rebuild::{RebuildOptions, rebuild};

#[derive(Parser)]
#[command(name = "ct", about = "Control Tower SRE command line", version)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Rebuild a read model from the log.
    Rebuild {
        #[command(subcommand)]
        model: Model,
    },
}

#[derive(Subcommand)]
enum Model {
    /// The projector's tables (events, runs, systems, type_counts): read ct.events.v1 from offset 0
    /// into `<schema>_rebuild_<time>`, wait until it reaches the live projector, compare checksums.
    Projector {
        /// The live projector's configuration file (defaults, then this file, then CT_ variables).
        #[arg(long, env = "CT_CONFIG")]
        config: Option<PathBuf>,
        /// Swap the rebuilt schema in (the old one is kept as `<schema>_old_<time>`).
        #[arg(long)]
        swap: bool,
        /// Do not ask before swapping.
        #[arg(long)]
        yes: bool,
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 3600)]
        timeout_secs: u64,
    },
}

fn confirm(question: &str) -> bool {
    use std::io::{BufRead, Write};
    print!("{question} [y/N] ");
    let _ = std::io::stdout().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let Command::Rebuild { model: Model::Projector { config, swap, yes, timeout_secs } } = cli.command;
    let live = match ct_projector::Config::load(config.as_deref()) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("ct: {error}");
            return ExitCode::from(2);
        }
    };
    if swap && !yes && !confirm(&format!("Swap a rebuilt schema in for `{}`?", live.postgres.schema)) {
        eprintln!("ct: not swapping (pass --yes to skip this question)");
        return ExitCode::from(1);
    }
    let options = RebuildOptions { live, swap, timeout: Duration::from_secs(timeout_secs) };
    match rebuild(options).await {
        Ok(report) => {
            if cli.json {
                println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
            } else {
                println!(
                    "rebuilt {} events into {} in {:.1} s ({:.0} events/s)",
                    report.events, report.rebuild_schema, report.seconds, report.events_per_second
                );
                for (table, sum) in &report.rebuild_checksums {
                    let live = report.live_checksums.get(table).map_or("-", String::as_str);
                    println!(
                        "  {table:<12} rebuild {sum}  live {live}  {}",
                        if live == sum { "equal" } else { "DIFFERENT" }
                    );
                }
                if !report.compared_at_same_offsets {
                    println!(
                        "  (the live projector moved on during the comparison; checksums cover different offsets)"
                    );
                }
                if let Some(old) = &report.swapped_out {
                    println!("swapped: {} now holds the rebuilt tables; the old ones are in {old}", report.live_schema);
                }
            }
            if report.compared_at_same_offsets && !report.identical { ExitCode::FAILURE } else { ExitCode::SUCCESS }
        }
        Err(error) => {
            eprintln!("ct: {error:#}");
            ExitCode::FAILURE
        }
    }
}
