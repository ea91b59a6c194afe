//! `ct`: the SRE command line. Dead letters (`ct dlq list|show|replay|skip`), read-model
//! rebuilds (`ct rebuild projector|dlq-items|daily-counts|health|runs|digest`) and `ct send` (events to the
//! edge, signed and retried like the client libraries).
#![allow(clippy::print_stdout)]

use std::{io::IsTerminal, num::NonZeroU32, path::PathBuf, process::ExitCode, time::Duration};

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, error::ErrorKind};
use ct_core::dlq::{Action, Category};
use ct_replay::{
    backup,
    dlq::{self, Change, Dlq, Item, Plan, Report, Selection},
    rebuild::{self, rebuild},
};

/// Exit codes besides 0 (success) and 2 (bad arguments, as clap).
const FAILED: u8 = 1;
/// A replay that re-parked some items (they failed re-validation again).
const SOME_REPARKED: u8 = 3;

#[derive(Parser)]
#[command(
    name = "ct",
    version,
    about = "Control Tower SRE command line: inspect, replay and skip dead letters; rebuild read models.",
    long_about = "Control Tower SRE command line.\n\nConfiguration comes from the service configuration \
                  files (--config) and CT_ environment variables, like the services themselves. Commands \
                  that change something print their plan and ask first, unless --yes."
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Dead letters: list, show, replay, skip.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Rebuild a read model from the log.
    Rebuild {
        #[command(subcommand)]
        model: Model,
    },
    /// Send events to the edge, signed, with the clients' retry rules.
    Send(SendArgs),
    /// Write topics (all but Kafka's internal ones by default) to a folder: a backup of the log.
    /// Resumable: run it again to go on after an interruption or to add what the log gained.
    Export(ExportArgs),
    /// Write an export folder back into a cluster: into new, empty topics only.
    Import(ImportArgs),
    /// Erase one producer's event payloads before a time (GDPR requests): an audited erasure
    /// through the log that every rebuild and restore honours.
    Erase(EraseArgs),
    /// The daily digests: show a decided one, or regenerate a day from its counts now.
    #[command(subcommand)]
    Digest(DigestCommand),
    /// Print each table's checksum of a live read model (before and after a restore).
    Checksums {
        /// projector, dlq-items, daily-counts, health, runs or digest.
        model: String,
        /// The live service's configuration file (defaults, then this file, then CT_ variables).
        #[arg(long, env = "CT_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DigestCommand {
    /// Print a decided digest (the latest without --date): its Markdown, or with --json its
    /// SHA-256, publication and JSON content.
    Show {
        /// The local day, YYYY-MM-DD.
        #[arg(long, value_parser = parse_day)]
        date: Option<chrono::NaiveDate>,
        /// ct-digest's configuration file (defaults, then this file, then CT_ variables).
        #[arg(long, env = "CT_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Build a day's digest from its counts now and compare it with the decided one (events that
    /// arrived after it was decided show as a difference). Writes nothing: decided digests stay.
    Regenerate {
        /// The local day, YYYY-MM-DD.
        #[arg(long, value_parser = parse_day)]
        date: chrono::NaiveDate,
        /// ct-digest's configuration file (defaults, then this file, then CT_ variables).
        #[arg(long, env = "CT_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn parse_day(raw: &str) -> Result<chrono::NaiveDate, String> {
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| format!("`{raw}` is not a day like 2026-11-24"))
}

/// Kafka comes from a service configuration file (its `[kafka]`) and CT_KAFKA__ variables.
#[derive(Args)]
struct ExportArgs {
    /// The export folder (created if missing; an earlier export there is continued).
    dir: PathBuf,
    #[arg(long, env = "CT_CONFIG")]
    config: Option<PathBuf>,
    /// Only these topics (repeat or separate with commas).
    #[arg(long = "topic", value_delimiter = ',')]
    topics: Vec<String>,
    /// Only topics whose name starts with this.
    #[arg(long, conflicts_with = "topics")]
    prefix: Option<String>,
    /// Records per segment file.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    segment_records: u64,
}

#[derive(Args)]
struct EraseArgs {
    /// The producer whose events are erased (their source).
    #[arg(long)]
    source: String,
    /// Events whose ts is earlier are erased (RFC 3339).
    #[arg(long, value_parser = parse_time)]
    before: DateTime<Utc>,
    /// Why (required; kept in the audit record).
    #[arg(long)]
    reason: String,
    /// The projector's configuration file (its Postgres, Kafka, registry and audit topic).
    #[arg(long, env = "CT_CONFIG")]
    config: Option<PathBuf>,
    /// Print what would be erased; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask first.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Who is acting, for the audit record (default: $USER).
    #[arg(long, env = "CT_ACTOR")]
    actor: Option<String>,
}

#[derive(Args)]
struct ImportArgs {
    /// The export folder.
    dir: PathBuf,
    #[arg(long, env = "CT_CONFIG")]
    config: Option<PathBuf>,
    /// Only these topics of the export (repeat or separate with commas).
    #[arg(long = "topic", value_delimiter = ',')]
    topics: Vec<String>,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["event_type", "file", "stdin"])))]
struct SendArgs {
    /// The event type (with --payload), e.g. system.heartbeat.
    #[arg(long = "type")]
    event_type: Option<String>,
    /// The payload as JSON (camelCase or snake_case keys).
    #[arg(long, requires = "event_type", default_value = "{}")]
    payload: String,
    /// The eventId (default: a new one). Sending the same id and body again is a duplicate.
    #[arg(long, requires = "event_type")]
    event_id: Option<String>,
    #[arg(long, requires = "event_type")]
    correlation_id: Option<String>,
    /// The event's time (RFC 3339; default now). A repeat is a duplicate only with the same ts.
    #[arg(long, requires = "event_type")]
    ts: Option<String>,
    /// A file with one envelope or an array of them.
    #[arg(long)]
    file: Option<PathBuf>,
    /// JSON lines on stdin, one envelope each, sent in batches.
    #[arg(long)]
    stdin: bool,
    /// Events per batch (--file with an array, --stdin).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=500))]
    batch: u16,
    /// The producer source the token belongs to (events that name none get it).
    #[arg(long, env = "CT_SOURCE")]
    source: String,
    #[arg(long, env = "CT_EDGE_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// The producer token (from the environment only).
    #[arg(long, env = "CT_TOKEN", hide_env_values = true)]
    token: String,
    /// The webhook secret (from the environment only).
    #[arg(long, env = "CT_WEBHOOK_SECRET", hide_env_values = true)]
    secret: String,
    /// ct, ct-timestamp or standard-webhooks.
    #[arg(long, default_value = "ct-timestamp")]
    scheme: ct_client::Scheme,
    #[arg(long, default_value_t = 8)]
    max_attempts: u32,
    /// Print the signed request as a curl command; send nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Args, Clone)]
struct DlqConfig {
    /// The categoriser's configuration file (defaults, then this file, then CT_ variables).
    #[arg(long, env = "CT_CONFIG", global = true)]
    config: Option<PathBuf>,
}

#[derive(Args, Clone, Default)]
struct Filters {
    /// Only this category.
    #[arg(long, value_parser = parse_category)]
    category: Option<Category>,
    /// Only items of this stage (consumer), e.g. ct-projector.
    #[arg(long)]
    stage: Option<String>,
    /// Only items whose original record key (the source system) is this.
    #[arg(long)]
    source: Option<String>,
    /// Only items whose last failure is at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    from: Option<DateTime<Utc>>,
    /// Only items whose last failure is before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    to: Option<DateTime<Utc>>,
    /// Only these items (repeat the flag or separate with commas).
    #[arg(long = "id", value_delimiter = ',')]
    ids: Vec<String>,
    /// At most this many items (oldest failure first).
    #[arg(long, value_parser = clap::value_parser!(i64).range(1..))]
    limit: Option<i64>,
}

#[derive(Args, Clone)]
struct ChangeArgs {
    /// Print the plan (how many, which, where they go) and change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Do not ask before changing anything.
    #[arg(long, short = 'y')]
    yes: bool,
    /// Items per second at most.
    #[arg(long, default_value = "100", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: u32,
    /// Who is acting, for the audit record (default: $USER).
    #[arg(long, env = "CT_ACTOR")]
    actor: Option<String>,
}

#[derive(Subcommand)]
enum DlqCommand {
    /// List dead letters, newest failure first (all states unless --state).
    List {
        #[command(flatten)]
        config: DlqConfig,
        #[command(flatten)]
        filters: Filters,
        /// parked, replayed or skipped.
        #[arg(long, value_parser = ["parked", "replayed", "skipped"])]
        state: Option<String>,
    },
    /// Show one dead letter: context, headers, the record decoded with the current schema, audit trail.
    Show {
        #[command(flatten)]
        config: DlqConfig,
        /// The item id, as `ct dlq list` prints it (<stage>:<topic>:<partition>:<offset>).
        id: String,
    },
    /// Hand parked items back to their stage (through the retry topic). Each record is first
    /// re-validated against the current schema; those that fail again stay parked (re-parked)
    /// with the reason, instead of looping. Exit code 3 when some were re-parked.
    Replay {
        #[command(flatten)]
        config: DlqConfig,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        change: ChangeArgs,
        /// Why, for the audit record.
        #[arg(long, default_value = "manual replay")]
        reason: String,
    },
    /// Mark parked items skipped: a tombstone with a reason on the audit topic; the record is
    /// not processed.
    Skip {
        #[command(flatten)]
        config: DlqConfig,
        #[command(flatten)]
        filters: Filters,
        #[command(flatten)]
        change: ChangeArgs,
        /// Why (required), for the audit record.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum Model {
    /// The projector's tables (events, runs, systems, type_counts).
    Projector(RebuildArgs),
    /// The dead-letter items (dlq_items, dlq_handbacks, dlq_audit).
    DlqItems(RebuildArgs),
    /// Events per source per day (daily_counts), when the projector runs it.
    DailyCounts(RebuildArgs),
    /// The health evaluator's statuses, history and rule windows (ct.events.v1 + ct.clock.v1).
    Health(RebuildArgs),
    /// Triggered runs and their records (trigger_runs, run_transitions; ct.runs.v1).
    Runs(RebuildArgs),
    /// The daily digests and the day counts they are built from (ct.events.v1 + ct.clock.v1).
    Digest(RebuildArgs),
    /// Deployments and branch heads per repository (the projector's versions model).
    Versions(RebuildArgs),
}

/// Reads the model's topics from offset 0 into `<schema>_rebuild_<time>` beside the live schema,
/// waits until it reaches the live model, and compares every table's checksum.
#[derive(Args)]
struct RebuildArgs {
    /// The live service's configuration file (defaults, then this file, then CT_ variables).
    #[arg(long, env = "CT_CONFIG")]
    config: Option<PathBuf>,
    /// Swap the rebuilt schema in, only if every table is identical at the same offsets (the old
    /// one is kept as `<schema>_old_<time>`). Otherwise nothing changes and the command fails.
    #[arg(long)]
    swap: bool,
    /// The model is empty (its service stopped, after `ct import`): build it in its live schema
    /// up to the end of its topics, without side effects; start the service afterwards.
    #[arg(long, conflicts_with = "swap")]
    fresh: bool,
    /// Do not ask before swapping.
    #[arg(long)]
    yes: bool,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    timeout_secs: u64,
}

fn parse_category(raw: &str) -> Result<Category, String> {
    raw.parse().map_err(|e: ct_core::dlq::UnknownCategory| e.to_string())
}

fn parse_time(raw: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(raw)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("`{raw}` is not an RFC 3339 time like 2026-11-24T08:00:00Z"))
}

/// Parses the command line; a bad argument is one line on stderr and exit code 2.
fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|error| match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(if error.use_stderr() { 2 } else { 0 })
        }
        _ => {
            // clap's first paragraph, on one line ("required arguments were not provided: --reason").
            let rendered = error.render().to_string();
            let first = rendered.split("\n\n").next().unwrap_or("bad arguments");
            let line: Vec<&str> = first.split_whitespace().collect();
            eprintln!("ct: {} (see --help)", line.join(" ").trim_start_matches("error: "));
            ExitCode::from(2)
        }
    })
}

fn confirm(question: &str) -> bool {
    use std::io::{BufRead, Write};
    if !std::io::stdin().is_terminal() {
        return false;
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer).is_ok() && matches!(answer.trim(), "y" | "Y" | "yes")
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Command::Dlq(command) => run_dlq(command, cli.json).await,
        Command::Rebuild { model: Model::Projector(args) } => run_rebuild("projector", args, cli.json).await,
        Command::Rebuild { model: Model::DlqItems(args) } => run_rebuild("dlq-items", args, cli.json).await,
        Command::Rebuild { model: Model::DailyCounts(args) } => run_rebuild("daily-counts", args, cli.json).await,
        Command::Rebuild { model: Model::Health(args) } => run_rebuild("health", args, cli.json).await,
        Command::Rebuild { model: Model::Runs(args) } => run_rebuild("runs", args, cli.json).await,
        Command::Rebuild { model: Model::Digest(args) } => run_rebuild("digest", args, cli.json).await,
        Command::Rebuild { model: Model::Versions(args) } => run_rebuild("versions", args, cli.json).await,
        Command::Send(args) => run_send(args).await,
        Command::Export(args) => run_export(args, cli.json).await,
        Command::Import(args) => run_import(args, cli.json).await,
        Command::Erase(args) => run_erase(args, cli.json).await,
        Command::Digest(command) => run_digest(command, cli.json).await,
        Command::Checksums { model, config } => run_checksums(&model, config.as_deref(), cli.json).await,
    };
    result.unwrap_or_else(|error| {
        eprintln!("ct: {error:#}");
        ExitCode::from(FAILED)
    })
}

async fn run_send(args: SendArgs) -> anyhow::Result<ExitCode> {
    use ct_replay::send;
    let events = if let Some(event_type) = &args.event_type {
        let payload: serde_json::Value =
            serde_json::from_str(&args.payload).map_err(|e| anyhow::anyhow!("--payload is not JSON: {e}"))?;
        let mut event = ct_client::Event::new(event_type, payload)?;
        if let Some(id) = &args.event_id {
            event = event.with_id(id);
        }
        if let Some(id) = &args.correlation_id {
            event = event.with_correlation_id(id);
        }
        if let Some(ts) = &args.ts {
            event = event.with_ts(ts);
        }
        vec![event]
    } else if let Some(file) = &args.file {
        let text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        send::events_of_file(&text).map_err(anyhow::Error::msg)?
    } else {
        send::events_of_lines(std::io::stdin().lock()).map_err(anyhow::Error::msg)?
    };
    anyhow::ensure!(!events.is_empty(), "no event to send");
    let mut client =
        ct_client::Client::new(&args.url, &args.token, &args.secret, &args.source).with_scheme(args.scheme);
    client.policy.max_attempts = args.max_attempts.max(1);
    if args.dry_run {
        for chunk in events.chunks(usize::from(args.batch)) {
            let prepared = if events.len() == 1 { client.prepare(&chunk[0]) } else { client.prepare_batch(chunk) };
            println!("{}", send::curl(&prepared));
        }
        return Ok(ExitCode::SUCCESS);
    }
    match send::send(&client, &events, usize::from(args.batch)).await {
        Ok(receipts) => {
            for receipt in receipts {
                println!(
                    "{}",
                    serde_json::json!({"eventId": receipt.event_id, "topic": receipt.topic, "partition": receipt.partition,
                                       "offset": receipt.offset, "duplicate": receipt.duplicate})
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ct_client::SendError::Refused { status, code, field, message }) => {
            eprintln!(
                "ct: refused: {status} {}: {message}{}",
                code.as_deref().unwrap_or("-"),
                field.map(|f| format!(" (field {f})")).unwrap_or_default()
            );
            Ok(ExitCode::from(FAILED))
        }
        Err(other) => Err(other.into()),
    }
}

fn load(config: &DlqConfig) -> anyhow::Result<ct_dlq_categoriser::Config> {
    Ok(ct_dlq_categoriser::Config::load(config.config.as_deref())?)
}

fn selection(filters: Filters, state: Option<String>) -> Selection {
    Selection {
        ids: filters.ids,
        category: filters.category,
        stage: filters.stage,
        source: filters.source,
        from: filters.from,
        to: filters.to,
        state,
        limit: filters.limit,
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).unwrap_or_default());
}

fn print_items(items: &[Item]) {
    println!("{:<58} {:<9} {:<8} {:>3} {:<24} {:<8} ERROR", "ID", "CATEGORY", "STATE", "ATT", "LAST FAILURE", "SOURCE");
    for item in items {
        let error: String = item.error.chars().take(60).collect();
        println!(
            "{:<58} {:<9} {:<8} {:>3} {:<24} {:<8} {}",
            item.id,
            item.category,
            item.state,
            item.attempts,
            item.last_failure_at,
            item.source.as_deref().unwrap_or("-"),
            error
        );
    }
}

fn print_plan(plan: &Plan) {
    for line in plan.lines() {
        println!("{line}");
    }
}

fn print_report(report: &Report) {
    println!(
        "replayed {}, re-parked {}, skipped {} in {:.1} s ({:.0}/s)",
        report.replayed, report.reparked, report.skipped, report.seconds, report.per_second
    );
    for (id, reason) in report.reparked_items.iter().take(20) {
        println!("  re-parked {id}: {reason}");
    }
}

async fn run_dlq(command: DlqCommand, json: bool) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List { config, filters, state } => {
            let dlq = Dlq::connect(load(&config)?).await?;
            let mut items = dlq.select(&selection(filters, state)).await?;
            items.reverse();
            if json {
                print_json(&items)
            } else {
                print_items(&items)
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { config, id } => {
            let dlq = Dlq::connect(load(&config)?).await?;
            let shown = dlq.show(&id).await?;
            if json {
                print_json(&shown);
            } else {
                println!("{}", serde_json::to_string_pretty(&shown)?);
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay { config, filters, change, reason } => {
            change_items(Action::Replay, load(&config)?, filters, change, reason, json).await
        }
        DlqCommand::Skip { config, filters, change, reason } => {
            if reason.trim().is_empty() {
                anyhow::bail!("--reason must say why the items are skipped");
            }
            change_items(Action::Skip, load(&config)?, filters, change, reason, json).await
        }
    }
}

async fn change_items(
    action: Action,
    config: ct_dlq_categoriser::Config,
    filters: Filters,
    args: ChangeArgs,
    reason: String,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let dlq = Dlq::connect(config).await?;
    let items = dlq.select(&selection(filters, Some("parked".to_owned()))).await?;
    let plan = dlq::plan(&dlq, action, &items, args.dry_run);
    if args.dry_run || items.is_empty() {
        if json {
            print_json(&plan)
        } else {
            print_plan(&plan)
        }
        return Ok(ExitCode::SUCCESS);
    }
    if !json {
        print_plan(&plan);
    }
    if !args.yes && !confirm(&format!("{} {} item(s)?", action.as_str().to_lowercase(), items.len())) {
        eprintln!("ct: nothing changed (answer y, or pass --yes)");
        return Ok(ExitCode::from(FAILED));
    }
    let actor = args.actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".to_owned());
    let change = Change {
        actor: &actor,
        reason: &reason,
        rate: NonZeroU32::new(args.rate).unwrap_or(NonZeroU32::MIN),
        show_progress: !json && std::io::stderr().is_terminal(),
    };
    let report = dlq::apply(&dlq, action, &items, &change).await?;
    if json {
        print_json(&report)
    } else {
        print_report(&report)
    }
    Ok(if report.reparked > 0 { ExitCode::from(SOME_REPARKED) } else { ExitCode::SUCCESS })
}

async fn run_rebuild(name: &str, args: RebuildArgs, json: bool) -> anyhow::Result<ExitCode> {
    let model = rebuild::model(name, args.config.as_deref())?;
    if args.fresh {
        let report = rebuild::build_fresh(model.as_ref(), Duration::from_secs(args.timeout_secs)).await?;
        if json {
            print_json(&report);
        } else {
            println!(
                "built {} in {} from {} records in {:.1} s",
                report.model, report.schema, report.records, report.seconds
            );
            for (table, sum) in &report.checksums {
                println!("  {table:<16} {sum}");
            }
        }
        return Ok(ExitCode::SUCCESS);
    }
    let schema = model.postgres().schema.clone();
    if args.swap && !args.yes && !confirm(&format!("Swap a rebuilt schema in for `{schema}`?")) {
        eprintln!("ct: not swapping (pass --yes to skip this question)");
        return Ok(ExitCode::from(FAILED));
    }
    let report = rebuild(model.as_ref(), args.swap, Duration::from_secs(args.timeout_secs)).await?;
    if json {
        print_json(&report);
    } else {
        println!(
            "rebuilt {} from {} records into {} in {:.1} s ({:.0} records/s)",
            report.model, report.records, report.rebuild_schema, report.seconds, report.records_per_second
        );
        for (table, sum) in &report.rebuild_checksums {
            let live = report.live_checksums.get(table).map_or("-", String::as_str);
            println!("  {table:<14} rebuild {sum}  live {live}  {}", if live == sum { "equal" } else { "DIFFERENT" });
        }
        if let Some(reason) = &report.refused {
            println!("not swapped: {reason}");
        }
        if let Some(old) = &report.swapped_out {
            println!("swapped: {} now holds the rebuilt tables; the old ones are in {old}", report.live_schema);
        }
    }
    Ok(if report.identical && report.refused.is_none() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn kafka_config(config: Option<&std::path::Path>) -> anyhow::Result<ct_platform::config::KafkaConfig> {
    Ok(ct_projector::Config::load(config)?.kafka)
}

fn print_backup(verb: &str, report: &backup::Report) {
    for (topic, t) in &report.topics {
        println!("{verb} {:>9} record(s) of {topic} (now {})", t.records, t.total);
        for (partition, digest) in &t.digests {
            println!("  {partition:>3}  {digest}");
        }
    }
}

fn segment_progress(show: bool) -> backup::OnSegment {
    if !show {
        return Box::new(|_, _, _| {});
    }
    let bar = indicatif::ProgressBar::new_spinner();
    Box::new(move |topic, partition, records| {
        bar.set_message(format!("{topic}/{partition}: {records} records"));
        bar.tick();
    })
}

async fn run_export(args: ExportArgs, json: bool) -> anyhow::Result<ExitCode> {
    let kafka = kafka_config(args.config.as_deref())?;
    let stop = tokio_util::sync::CancellationToken::new();
    let on_ctrl_c = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("ct: stopping after the current segment; run the same export again to go on");
            on_ctrl_c.cancel();
        }
    });
    let options = backup::ExportOptions {
        topics: args.topics,
        prefix: args.prefix,
        segment_records: args.segment_records,
        stop: stop.clone(),
        on_segment: segment_progress(!json && std::io::stderr().is_terminal()),
    };
    let report = backup::export(&kafka, &args.dir, options).await?;
    if json {
        print_json(&report);
    } else {
        print_backup("exported", &report);
    }
    Ok(if stop.is_cancelled() { ExitCode::from(FAILED) } else { ExitCode::SUCCESS })
}

async fn run_import(args: ImportArgs, json: bool) -> anyhow::Result<ExitCode> {
    let kafka = kafka_config(args.config.as_deref())?;
    let options = backup::ImportOptions {
        topics: args.topics,
        on_segment: segment_progress(!json && std::io::stderr().is_terminal()),
    };
    let report = backup::import(&kafka, &args.dir, options).await?;
    let exported = backup::digests(&args.dir)?;
    let differing: Vec<String> = report
        .topics
        .iter()
        .flat_map(|(topic, t)| t.digests.iter().map(move |(p, d)| (topic, p, d)))
        .filter(|(topic, p, d)| exported.get(*topic).and_then(|ps| ps.get(p)) != Some(*d))
        .map(|(topic, p, _)| format!("{topic}/{p}"))
        .collect();
    if json {
        print_json(&report);
    } else {
        print_backup("imported", &report);
    }
    if !differing.is_empty() {
        anyhow::bail!("content digests differ from the export's for {}", differing.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_digest(command: DigestCommand, json: bool) -> anyhow::Result<ExitCode> {
    use ct_replay::digest;
    match command {
        DigestCommand::Show { date, config } => {
            let config = ct_digest::Config::load(config.as_deref())?;
            let Some(decided) = digest::show(&config, date).await? else {
                match date {
                    Some(day) => eprintln!("ct: no digest of {day} was decided"),
                    None => eprintln!("ct: no digest was decided yet"),
                }
                return Ok(ExitCode::from(1));
            };
            if json {
                print_json(&decided);
            } else {
                print!("{}", decided.markdown);
            }
        }
        DigestCommand::Regenerate { date, config } => {
            let config = ct_digest::Config::load(config.as_deref())?;
            let regenerated = digest::regenerate(&config, date).await?;
            if json {
                print_json(&regenerated);
            } else {
                print!("{}", regenerated.rendered.markdown);
                match &regenerated.decided_sha256 {
                    None => eprintln!("ct: {date} has no decided digest yet"),
                    Some(decided) if regenerated.differs => eprintln!(
                        "ct: differs from the decided digest ({decided}): events of {date} arrived after it was decided"
                    ),
                    Some(_) => eprintln!("ct: identical to the decided digest"),
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_checksums(name: &str, config: Option<&std::path::Path>, json: bool) -> anyhow::Result<ExitCode> {
    let model = rebuild::model(name, config)?;
    let sums = rebuild::checksums(model.as_ref()).await?;
    if json {
        print_json(&sums);
    } else {
        for (table, sum) in &sums {
            println!("{table:<16} {sum}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_erase(args: EraseArgs, json: bool) -> anyhow::Result<ExitCode> {
    use ct_replay::erase;
    let config = ct_projector::Config::load(args.config.as_deref())?;
    let plan = match erase::plan(&config, &args.source, args.before, &args.reason).await {
        Ok(plan) => plan,
        Err(
            error @ (erase::EraseError::UnknownSource(..)
            | erase::EraseError::NoReason
            | erase::EraseError::FutureBefore(_)),
        ) => {
            eprintln!("ct: {error}");
            return Ok(ExitCode::from(2));
        }
        Err(error) => return Err(error.into()),
    };
    if json && args.dry_run {
        print_json(&plan);
    } else if !json {
        println!(
            "erase the payloads of {} event(s) of {} before {} ({} already erased){}",
            plan.events,
            plan.source,
            plan.before.to_rfc3339(),
            plan.already_erased,
            if args.dry_run { " (dry run)" } else { "" }
        );
    }
    if args.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm(&format!("Erase {} event payload(s) of {}?", plan.events, plan.source)) {
        eprintln!("ct: nothing changed (answer y, or pass --yes)");
        return Ok(ExitCode::from(FAILED));
    }
    let actor = args.actor.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "unknown".to_owned());
    let outcome = erase::erase(&config, &plan, &actor, &args.reason, Duration::from_secs(120)).await?;
    if json {
        print_json(&outcome);
    } else {
        println!("erasure {}: {} event payload(s) of {} erased", outcome.erasure_id, outcome.erased, outcome.source);
    }
    Ok(ExitCode::SUCCESS)
}
