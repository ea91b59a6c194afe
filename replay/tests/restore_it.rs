//! The restore drill: a pipeline with every read model fed (events, garbage that is
//! dead-lettered, clock ticks, triggered runs) is checksummed, its log exported (interrupted
//! once and resumed), then wiped (topics deleted, read-model schemas dropped), imported into the
//! empty cluster and every read model built again from the restored log with
//! `ct rebuild <model> --fresh`. Every table's checksum equals the one taken before the wipe, the
//! restored log's content digests equal the export's, and a projector started afterwards resumes
//! (one new event, no history replayed).

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use ct_core::runs::{self, RecordKind, RunRecord};
use ct_health::ticker::Ticker;
use ct_platform::{
    kafka,
    readmodel::{Checksums, ReadModel},
    registry::{RegistryClient, value_subject},
};
use ct_replay::backup::{self, BackupError, ExportOptions, ImportOptions};
use ct_testkit::{PipelineTopics, TestContext, eventually, sample_event, wire_event};
use rdkafka::{admin::AdminOptions, producer::FutureRecord};
use tokio_util::sync::CancellationToken;

const VALID: usize = 240;
const GARBAGE: usize = 4;
const RUNS: usize = 3;

struct Models {
    projector: ct_projector::Config,
    categoriser: ct_dlq_categoriser::Config,
    health: ct_health::Config,
    runner: ct_runner::Config,
}

impl Models {
    fn of(ctx: &TestContext, topics: &PipelineTopics, registry_url: &str) -> Models {
        let slice = ctx.slice(topics, registry_url);
        let mut runner = ct_runner::Config::for_slice(&slice);
        runner.executor.enabled = false;
        Models {
            projector: ct_projector::Config::for_slice(&slice),
            categoriser: ct_dlq_categoriser::Config::for_slice(&slice),
            health: ct_health::Config::for_slice(&slice),
            runner,
        }
    }

    fn read_models(&self) -> Vec<Box<dyn ReadModel>> {
        vec![
            Box::new(ct_projector::ProjectorModel(self.projector.clone())),
            Box::new(ct_dlq_categoriser::DlqItemsModel(self.categoriser.clone())),
            Box::new(ct_health::HealthModel(self.health.clone())),
            Box::new(ct_runner::model::RunsModel(self.runner.clone())),
        ]
    }

    fn start(&self, stop: &CancellationToken) {
        tokio::spawn(ct_projector::run(self.projector.clone(), stop.clone()));
        tokio::spawn(ct_dlq_categoriser::run(self.categoriser.clone(), stop.clone()));
        tokio::spawn(ct_health::run(self.health.clone(), stop.clone()));
        tokio::spawn(ct_runner::run(self.runner.clone(), stop.clone()));
    }
}

async fn checksums(models: &[Box<dyn ReadModel>]) -> BTreeMap<String, Checksums> {
    let mut all = BTreeMap::new();
    for model in models {
        all.insert(model.name().to_owned(), ct_replay::rebuild::checksums(model.as_ref()).await.unwrap());
    }
    all
}

async fn scalar(pool: &sqlx::PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap_or(-1)
}

/// A folder of this test's own, emptied first.
fn scratch(ctx: &TestContext, name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ct-restore-{}-{name}", ctx.id));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn at(minute: u32) -> DateTime<Utc> {
    format!("2025-09-27T00:{minute:02}:00Z").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_restored_into_an_empty_cluster_rebuilds_every_read_model_identically() {
    let ctx = TestContext::new();
    let t = ctx.pipeline_topics().await;
    let schemas_topic = ctx.topic("_schemas");
    let (registry_url, schema_id, registry) =
        ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &schemas_topic, &t.events).await.unwrap();
    let models = Models::of(&ctx, &t, &registry_url);
    let stop = CancellationToken::new();
    models.start(&stop);

    // The history: valid events, garbage (dead-lettered by the projector, filed by the
    // categoriser), clock ticks for the evaluator, and triggered runs' records.
    let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).unwrap();
    for i in 0..VALID {
        let event = sample_event(i);
        let value = wire_event(schema_id, &event);
        producer
            .send(FutureRecord::to(&t.events).key(event.source().as_str()).payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    for n in 0..GARBAGE {
        let value = format!("\x00\x00\x00\x00\x09garbage {n}").into_bytes();
        producer
            .send(FutureRecord::to(&t.events).key("finance").payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    let runs_schema =
        RegistryClient::new(&registry_url).register(&value_subject(&t.runs), runs::RECORD_SCHEMA_JSON).await.unwrap();
    for r in 0..RUNS {
        let run_id = format!("run_restore_{r}");
        let end = if r == 0 { RecordKind::Failed } else { RecordKind::Succeeded };
        for (k, kind) in [RecordKind::Requested, RecordKind::AttemptStarted, end].into_iter().enumerate() {
            let record = RunRecord::new(&run_id, kind, at(k as u32 + 1), "restore-drill", "contract.regenerate");
            let mut value = Vec::new();
            ct_core::avro::wire::write_header(runs_schema, &mut value);
            value.extend(runs::encode_record(&record).unwrap());
            producer
                .send(FutureRecord::to(&t.runs).key(&run_id).payload(&value), Duration::from_secs(30))
                .await
                .map_err(|(e, _)| e)
                .unwrap();
        }
    }
    let ticker =
        Ticker::connect(&ctx.kafka, RegistryClient::new(&registry_url), &models.health.clock_topics()).await.unwrap();
    for minute in 1..=5 {
        ticker.tick(at(minute)).await.unwrap();
    }

    let pool = ct_platform::postgres::connect(&ctx.postgres()).await.unwrap();
    let settled = eventually(Duration::from_secs(120), || async {
        let events = scalar(&pool, "SELECT count(*) FROM events").await;
        let parked = scalar(&pool, &format!("SELECT count(*) FROM \"{}\".dlq_items", ctx.dlq_postgres().schema)).await;
        let runs =
            scalar(&pool, &format!("SELECT count(*) FROM \"{}\".trigger_runs", ctx.runs_postgres().schema)).await;
        let ticks = scalar(&pool, &format!("SELECT count(*) FROM \"{}\".clock", ctx.health_postgres().schema)).await;
        (events == VALID as i64 && parked == GARBAGE as i64 && runs == RUNS as i64 && ticks >= 1).then_some(())
    })
    .await;
    assert!(settled.is_some(), "the pipeline did not take in the history within two minutes");
    // Quiet: two equal looks a second apart.
    let mut before = checksums(&models.read_models()).await;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let again = checksums(&models.read_models()).await;
        if again == before {
            break;
        }
        before = again;
    }
    stop.cancel();
    registry.cancel();
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Export, interrupted after its first segment, then resumed.
    let dir = scratch(&ctx, "export");
    let prefix = ctx.topic("");
    let interrupt = CancellationToken::new();
    let first = {
        let interrupt = interrupt.clone();
        backup::export(
            &ctx.kafka,
            dir.as_path(),
            ExportOptions {
                prefix: Some(prefix.clone()),
                segment_records: 50,
                stop: interrupt.clone(),
                on_segment: Box::new(move |_, _, _| interrupt.cancel()),
                ..ExportOptions::default()
            },
        )
        .await
        .unwrap()
    };
    let first_records: u64 = first.topics.values().map(|t| t.records).sum();
    assert!((1..=50).contains(&first_records), "the interrupted export wrote one segment, not {first_records} records");
    let resumed = backup::export(
        &ctx.kafka,
        dir.as_path(),
        ExportOptions { prefix: Some(prefix.clone()), segment_records: 50, ..ExportOptions::default() },
    )
    .await
    .unwrap();
    let resumed_records: u64 = resumed.topics.values().map(|t| t.records).sum();
    let held: u64 = resumed.topics.values().map(|t| t.total).sum();
    assert_eq!(first_records + resumed_records, held, "the resumed export went on where the first stopped");
    let events_total = resumed.topics[&t.events].total;
    assert_eq!(events_total, (VALID + GARBAGE) as u64, "the resumed export holds every event once");
    assert!(resumed.topics.contains_key(&schemas_topic), "the registry's topic is exported");
    let exported = backup::digests(dir.as_path()).unwrap();

    // Wipe: the test's topics and the read models' schemas.
    let names: Vec<String> = exported.keys().cloned().collect();
    let admin = kafka::admin(&ctx.kafka).unwrap();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for result in admin.delete_topics(&refs, &AdminOptions::new()).await.unwrap() {
        result.unwrap();
    }
    for model in models.read_models() {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", model.postgres().schema))
            .execute(&pool)
            .await
            .unwrap();
    }
    let gone = eventually(Duration::from_secs(60), || async {
        let kafka = ctx.kafka.clone();
        let names = names.clone();
        let left = tokio::task::spawn_blocking(move || {
            names
                .iter()
                .filter(|n| kafka::partition_count(&kafka, n, Duration::from_secs(5)).ok().flatten().is_some())
                .count()
        })
        .await
        .unwrap();
        (left == 0).then_some(())
    })
    .await;
    assert!(gone.is_some(), "the deleted topics are still listed after a minute");

    // Import into the empty cluster; a second import into the now non-empty topics is refused.
    let imported = backup::import(&ctx.kafka, dir.as_path(), ImportOptions::default()).await.unwrap();
    for (topic, partitions) in &exported {
        assert_eq!(&imported.topics[topic].digests, partitions, "{topic}: the imported content equals the export");
        assert!(imported.topics[topic].offsets_shifted.is_empty(), "{topic}: every record is back on its offset");
    }
    // The same import again resumes: what the topics hold is checked to be the export's
    // beginning, and nothing is written twice.
    let resumed = backup::import(&ctx.kafka, dir.as_path(), ImportOptions::default()).await.unwrap();
    for (topic, partitions) in &exported {
        assert_eq!(resumed.topics[topic].records, 0, "{topic}: a resumed import writes nothing twice");
        assert_eq!(&resumed.topics[topic].digests, partitions, "{topic}: still the export's content");
    }
    std::fs::remove_file(dir.as_path().join("import.json")).unwrap();
    let refused = backup::import(&ctx.kafka, dir.as_path(), ImportOptions::default()).await;
    assert!(matches!(refused, Err(BackupError::NotEmpty { .. })), "a non-empty topic is refused: {refused:?}");
    let again = scratch(&ctx, "export-again");
    backup::export(&ctx.kafka, again.as_path(), ExportOptions { prefix: Some(prefix), ..ExportOptions::default() })
        .await
        .unwrap();
    assert_eq!(backup::digests(again.as_path()).unwrap(), exported, "an export of the restored log equals the backup");

    // Every read model built from the restored log, services stopped; then compared.
    let (registry_url, _registry) = ct_registry::spawn_local(ctx.kafka.clone(), &schemas_topic).await.unwrap();
    let models = Models::of(&ctx, &t, &registry_url);
    for model in models.read_models() {
        let report = ct_replay::rebuild::build_fresh(model.as_ref(), Duration::from_secs(120)).await.unwrap();
        assert!(report.records > 0, "{}: built from nothing", report.model);
    }
    let after = checksums(&models.read_models()).await;
    for (model, tables) in &before {
        assert_eq!(&after[model], tables, "{model}: every table equals its checksum from before the wipe");
    }
    let second = ct_replay::rebuild::build_fresh(models.read_models()[0].as_ref(), Duration::from_secs(10)).await;
    assert!(second.is_err(), "a fresh build refuses a model that already holds progress");

    // The services resume from where the fresh build stopped.
    let stop = CancellationToken::new();
    models.start(&stop);
    let value = wire_event(schema_id, &sample_event(VALID));
    producer
        .send(FutureRecord::to(&t.events).key("portal").payload(&value), Duration::from_secs(30))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    let resumed = eventually(Duration::from_secs(60), || async {
        (scalar(&pool, "SELECT count(*) FROM events").await == VALID as i64 + 1).then_some(())
    })
    .await;
    assert!(resumed.is_some(), "the restarted projector did not take in the new event");
    let parked = scalar(&pool, &format!("SELECT count(*) FROM \"{}\".dlq_items", ctx.dlq_postgres().schema)).await;
    assert_eq!(parked, GARBAGE as i64, "no dead letter twice after the restore");
    stop.cancel();
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&again);
}
