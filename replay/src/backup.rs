//! `ct export` and `ct import`: the log, written to a folder and back.
//!
//! The log is the only state that cannot be rebuilt (every read model is a function of it), so
//! it is what a backup holds. An export folder has one `manifest.json` (format, topics, their
//! partition counts and non-default configs) and, per topic and partition, gzip-compressed JSON
//! lines in segments (`<topic>/<partition>/<first offset>.jsonl.gz`) plus `progress.json`: the
//! next offset to read and each segment's record count and SHA-256. A record keeps its offset,
//! key, value, headers, timestamp and the schema id of its Confluent wire header.
//!
//! - **Resumable**: a segment becomes visible by a rename and only then is it entered in
//!   `progress.json`, so an interrupted export goes on from the last complete segment; a second
//!   export into the same folder adds what the log gained since (an incremental backup).
//! - **Checksums**: each partition's *content digest* is a SHA-256 over its records' keys,
//!   values, headers and timestamps in order (offsets left out: a restored log starts again at
//!   its first offset). Import recomputes it while writing, and an export of the restored log
//!   gives the same digests.
//! - **Import** writes each partition back into the same partition of an empty topic (created
//!   with the exported partition count and configs), in order, through the idempotent producer.
//!   It refuses a topic that already holds records, unless the folder's `import.json` says this
//!   import started it: then it resumes after the records the topic already has.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader, BufWriter, Write},
    path::{Path, PathBuf},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ct_platform::{config::KafkaConfig, kafka, topics::TopicSpec};
use flate2::{Compression, read::GzDecoder, write::GzEncoder};
use rdkafka::{
    Message, Offset, Timestamp, TopicPartitionList,
    admin::{AdminOptions, ConfigSource, ResourceSpecifier},
    consumer::{BaseConsumer, Consumer},
    message::{Header, Headers, OwnedHeaders},
    producer::{FutureProducer, FutureRecord, Producer},
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

/// The format an export folder declares; import refuses any other.
pub const FORMAT: &str = "ct-export/1";
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("creating topics: {0}")]
    Topics(#[from] kafka::KafkaSetupError),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "topic {topic} partition {partition} is not empty (it ends at offset {end}); import writes only into new, empty topics"
    )]
    NotEmpty { topic: String, partition: i32, end: i64 },
    #[error("topic {topic} has {actual} partitions in the cluster, {expected} in the export")]
    PartitionMismatch { topic: String, expected: i32, actual: i32 },
    #[error("topic {0} is not in the export")]
    UnknownTopic(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io { path: path.to_owned(), source }
}

/// `manifest.json`: what the folder holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub topics: BTreeMap<String, TopicEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TopicEntry {
    pub partitions: i32,
    /// The topic's configs that differ from the broker's defaults (`retention.ms`, ...).
    pub config: BTreeMap<String, String>,
}

/// `<topic>/<partition>/progress.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PartitionProgress {
    /// The next offset to read.
    pub next_offset: i64,
    pub records: u64,
    pub segments: Vec<Segment>,
    /// SHA-256 over the content of every record so far, carried across segments.
    pub content_state: ContentDigest,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Segment {
    pub file: String,
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: u64,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
}

/// A running digest over record contents, kept as the hex of the digest chain: each record
/// extends `previous` by `sha256(previous || record)`, so it can be stored and resumed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(transparent)]
pub struct ContentDigest(pub String);

impl Default for ContentDigest {
    fn default() -> Self {
        ContentDigest(hex::encode(Sha256::digest(b"")))
    }
}

impl ContentDigest {
    fn extend(&mut self, record: &Record) {
        let mut hasher = Sha256::new();
        hasher.update(self.0.as_bytes());
        for part in [record.key.as_deref(), record.value.as_deref()] {
            match part {
                None => hasher.update([0u8]),
                Some(text) => {
                    hasher.update([1u8]);
                    hasher.update((text.len() as u64).to_be_bytes());
                    hasher.update(text.as_bytes());
                }
            }
        }
        hasher.update(record.timestamp.unwrap_or(-1).to_be_bytes());
        for (name, value) in &record.headers {
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
            hasher.update(value.as_deref().unwrap_or("\u{0}").as_bytes());
        }
        self.0 = hex::encode(hasher.finalize());
    }
}

/// One record as a JSON line. Bytes are base64.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    pub offset: i64,
    /// Milliseconds since the epoch (the record's CreateTime or LogAppendTime).
    pub timestamp: Option<i64>,
    pub key: Option<String>,
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, Option<String>)>,
    /// The schema id of the value's Confluent wire header, when it has one (for reading; the
    /// value keeps the header itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_id: Option<u32>,
}

impl Record {
    fn of(message: &rdkafka::message::BorrowedMessage<'_>) -> Record {
        let headers = message
            .headers()
            .map(|headers| {
                headers.iter().map(|h| (h.key.to_owned(), h.value.map(|v| B64.encode(v)))).collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let timestamp = match message.timestamp() {
            Timestamp::CreateTime(ms) | Timestamp::LogAppendTime(ms) => Some(ms),
            Timestamp::NotAvailable => None,
        };
        let payload = message.payload();
        let schema_id = payload
            .filter(|bytes| bytes.len() >= 5 && bytes[0] == 0)
            .map(|bytes| u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]));
        Record {
            offset: message.offset(),
            timestamp,
            key: message.key().map(|k| B64.encode(k)),
            value: payload.map(|v| B64.encode(v)),
            headers,
            schema_id,
        }
    }
}

/// What an export or import did, per topic.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub topics: BTreeMap<String, TopicReport>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct TopicReport {
    /// Records written by this run.
    pub records: u64,
    /// Records the folder (export) or topic (import) holds now.
    pub total: u64,
    /// Partition -> content digest of everything held.
    pub digests: BTreeMap<i32, String>,
    /// Import: partitions where a record did not land on its original offset (see the module
    /// documentation); empty when the restored log has the source's offsets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offsets_shifted: Vec<i32>,
}

/// Progress: called with (topic, partition, records done) as segments complete.
pub type OnSegment = Box<dyn Fn(&str, i32, u64) + Send + Sync>;

pub struct ExportOptions {
    /// Topics to export; empty: every topic of the cluster except Kafka's internal ones
    /// (`__consumer_offsets`, ...), including the schema registry's.
    pub topics: Vec<String>,
    /// Only topics whose name starts with this.
    pub prefix: Option<String>,
    /// Records per segment file.
    pub segment_records: u64,
    /// Stops between segments (Ctrl-C): what is done stays, the next run goes on from there.
    pub stop: CancellationToken,
    /// Called after each segment with (topic, partition, records in the folder).
    pub on_segment: OnSegment,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            topics: Vec::new(),
            prefix: None,
            segment_records: 100_000,
            stop: CancellationToken::new(),
            on_segment: Box::new(|_, _, _| {}),
        }
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, BackupError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| BackupError::Corrupt { path: path.to_owned(), message: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(BackupError::Io { path: path.to_owned(), source: e }),
    }
}

/// Writes `value` as JSON to `path` by a rename, so a reader sees the old file or the new one.
fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), BackupError> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec_pretty(value).expect("serialisable");
    std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn partition_dir(dir: &Path, topic: &str, partition: i32) -> PathBuf {
    dir.join(topic).join(partition.to_string())
}

/// The topics an export covers, with their partition counts.
fn topics_to_export(consumer: &BaseConsumer, options: &ExportOptions) -> Result<BTreeMap<String, i32>, BackupError> {
    let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
    let all: BTreeMap<String, i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none() && !t.name().starts_with("__"))
        .map(|t| (t.name().to_owned(), i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)))
        .collect();
    let mut chosen = BTreeMap::new();
    if options.topics.is_empty() {
        chosen.extend(all.into_iter().filter(|(name, _)| options.prefix.as_ref().is_none_or(|p| name.starts_with(p))));
    } else {
        for topic in &options.topics {
            let partitions = all.get(topic).ok_or_else(|| BackupError::UnknownTopic(topic.clone()))?;
            chosen.insert(topic.clone(), *partitions);
        }
    }
    Ok(chosen)
}

async fn non_default_configs(
    kafka: &KafkaConfig,
    topics: &[String],
) -> Result<BTreeMap<String, BTreeMap<String, String>>, BackupError> {
    let admin = kafka::admin(kafka)?;
    let specifiers: Vec<ResourceSpecifier<'_>> = topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = admin.describe_configs(&specifiers, &AdminOptions::new().request_timeout(Some(TIMEOUT))).await?;
    let mut configs = BTreeMap::new();
    for (topic, result) in topics.iter().zip(results) {
        // A restore without the configs would give the topics the broker's defaults (a week of
        // retention, no compaction): fail instead.
        let resource = result.map_err(|code| BackupError::Corrupt {
            path: PathBuf::from(topic),
            message: format!("describing the topic's configs failed: {code:?}"),
        })?;
        let entries = resource
            .entries
            .into_iter()
            .filter(|e| e.source == ConfigSource::DynamicTopic && !e.is_sensitive)
            .filter_map(|e| e.value.map(|v| (e.name, v)))
            .collect();
        configs.insert(topic.clone(), entries);
    }
    Ok(configs)
}

/// Exports `options.topics` of the cluster into `dir` (created if missing), resuming what an
/// earlier export there left.
pub async fn export(kafka: &KafkaConfig, dir: &Path, options: ExportOptions) -> Result<Report, BackupError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let consumer: BaseConsumer = export_consumer(kafka)?;
    let (consumer, options, topics) = tokio::task::spawn_blocking(move || {
        let topics = topics_to_export(&consumer, &options);
        (consumer, options, topics)
    })
    .await
    .expect("metadata request panicked");
    let topics = topics?;
    let configs = non_default_configs(kafka, &topics.keys().cloned().collect::<Vec<_>>()).await?;
    let manifest_path = dir.join("manifest.json");
    let mut manifest: Manifest =
        read_json(&manifest_path)?.unwrap_or_else(|| Manifest { format: FORMAT.to_owned(), topics: BTreeMap::new() });
    check_format(&manifest, &manifest_path)?;
    for (topic, partitions) in &topics {
        manifest.topics.insert(
            topic.clone(),
            TopicEntry { partitions: *partitions, config: configs.get(topic).cloned().unwrap_or_default() },
        );
    }
    write_json(&manifest_path, &manifest)?;
    let dir = dir.to_owned();
    tokio::task::spawn_blocking(move || export_blocking(&consumer, &dir, &topics, &options))
        .await
        .expect("export panicked")
}

fn export_consumer(kafka: &KafkaConfig) -> Result<BaseConsumer, BackupError> {
    let mut config = kafka::client_config(kafka);
    config
        .set("group.id", format!("ct-export-{}", uuid::Uuid::new_v4().simple()))
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true");
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    Ok(config.create()?)
}

fn check_format(manifest: &Manifest, path: &Path) -> Result<(), BackupError> {
    if manifest.format != FORMAT {
        return Err(BackupError::Corrupt {
            path: path.to_owned(),
            message: format!("format `{}`, this ct reads `{FORMAT}`", manifest.format),
        });
    }
    Ok(())
}

fn export_blocking(
    consumer: &BaseConsumer,
    dir: &Path,
    topics: &BTreeMap<String, i32>,
    options: &ExportOptions,
) -> Result<Report, BackupError> {
    let mut report = Report::default();
    for (topic, partitions) in topics {
        let entry = report.topics.entry(topic.clone()).or_default();
        for partition in 0..*partitions {
            let folder = partition_dir(dir, topic, partition);
            std::fs::create_dir_all(&folder).map_err(io(&folder))?;
            let progress_path = folder.join("progress.json");
            let mut progress: PartitionProgress = read_json(&progress_path)?.unwrap_or_default();
            let (low, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
            progress.next_offset = progress.next_offset.max(low);
            while progress.next_offset < high && !options.stop.is_cancelled() {
                let written = export_segment(consumer, &folder, topic, partition, high, options, &mut progress)?;
                entry.records += written;
                write_json(&progress_path, &progress)?;
                (options.on_segment)(topic, partition, progress.records);
            }
            entry.total += progress.records;
            entry.digests.insert(partition, progress.content_state.0.clone());
            if options.stop.is_cancelled() {
                return Ok(report);
            }
        }
    }
    Ok(report)
}

/// Reads one segment's worth of records (at most up to `high`) into a new segment file.
fn export_segment(
    consumer: &BaseConsumer,
    folder: &Path,
    topic: &str,
    partition: i32,
    high: i64,
    options: &ExportOptions,
    progress: &mut PartitionProgress,
) -> Result<u64, BackupError> {
    let mut assignment = TopicPartitionList::new();
    assignment.add_partition_offset(topic, partition, Offset::Offset(progress.next_offset))?;
    consumer.assign(&assignment)?;
    let first = progress.next_offset;
    let name = format!("{first:020}.jsonl.gz");
    let tmp = folder.join(format!("{name}.tmp"));
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let mut out = GzEncoder::new(BufWriter::new(file), Compression::default());
    let (mut records, mut last, mut next) = (0u64, first, first);
    let mut digest = progress.content_state.clone();
    let mut idle = 0;
    while next < high && records < options.segment_records {
        match consumer.poll(Duration::from_millis(500)) {
            Some(Ok(message)) => {
                if message.offset() < next {
                    continue;
                }
                let record = Record::of(&message);
                digest.extend(&record);
                serde_json::to_writer(&mut out, &record).expect("serialisable");
                out.write_all(b"\n").map_err(io(&tmp))?;
                (last, next, records) = (record.offset, record.offset + 1, records + 1);
                idle = 0;
            }
            Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) | None => {
                // Offsets without a record (transaction markers, compacted away) end a partition
                // without a message: the consumer's position says how far it got.
                let position = consumer
                    .position()?
                    .find_partition(topic, partition)
                    .and_then(|p| match p.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(next);
                next = next.max(position);
                idle += 1;
                if idle > 60 {
                    return Err(BackupError::Corrupt {
                        path: folder.to_owned(),
                        message: format!("no record at offset {next} of {topic}/{partition} within 30 s (end {high})"),
                    });
                }
            }
            Some(Err(e)) => return Err(e.into()),
        }
    }
    let writer = out.finish().map_err(io(&tmp))?;
    writer
        .into_inner()
        .map_err(|e| BackupError::Io { path: tmp.clone(), source: e.into_error() })?
        .sync_all()
        .map_err(io(&tmp))?;
    let path = folder.join(&name);
    if records > 0 {
        let sha256 = hex::encode(Sha256::digest(std::fs::read(&tmp).map_err(io(&tmp))?));
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        progress.segments.push(Segment { file: name, first_offset: first, last_offset: last, records, sha256 });
    } else {
        std::fs::remove_file(&tmp).map_err(io(&tmp))?;
    }
    progress.next_offset = next;
    progress.records += records;
    progress.content_state = digest;
    Ok(records)
}

/// `import.json`: the partitions this folder's import has started writing, so that a second
/// run resumes them instead of refusing them as not empty.
#[derive(Debug, Default, Serialize, Deserialize)]
struct ImportState {
    started: BTreeMap<String, Vec<i32>>,
}

pub struct ImportOptions {
    /// Topics to import; empty: every topic of the export.
    pub topics: Vec<String>,
    /// Called after each segment with (topic, partition, records in the topic).
    pub on_segment: OnSegment,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions { topics: Vec::new(), on_segment: Box::new(|_, _, _| {}) }
    }
}

/// The export in `dir`, read and checked (its manifest and every partition's progress).
pub fn read_manifest(dir: &Path) -> Result<Manifest, BackupError> {
    let path = dir.join("manifest.json");
    let manifest: Manifest = read_json(&path)?.ok_or_else(|| BackupError::Corrupt {
        path: path.clone(),
        message: "missing: not an export folder".to_owned(),
    })?;
    check_format(&manifest, &path)?;
    Ok(manifest)
}

/// Writes the export in `dir` into the cluster: topics first created (partitions and configs of
/// the export), the schema registry's topics before the others.
pub async fn import(kafka: &KafkaConfig, dir: &Path, options: ImportOptions) -> Result<Report, BackupError> {
    let manifest = read_manifest(dir)?;
    let mut chosen: Vec<String> = if options.topics.is_empty() {
        manifest.topics.keys().cloned().collect()
    } else {
        for topic in &options.topics {
            if !manifest.topics.contains_key(topic) {
                return Err(BackupError::UnknownTopic(topic.clone()));
            }
        }
        options.topics.clone()
    };
    // The registry's topic first: a service started before the rest is imported can already
    // resolve every schema id.
    chosen.sort_by_key(|topic| (!topic.ends_with("_schemas"), topic.clone()));
    let state_path = dir.join("import.json");
    let mut state: ImportState = read_json(&state_path)?.unwrap_or_default();
    let producer = kafka::idempotent_producer(kafka, TIMEOUT)?;
    let consumer = std::sync::Arc::new(export_consumer(kafka)?);
    let mut report = Report::default();
    for topic in chosen {
        let entry = &manifest.topics[&topic];
        let spec = TopicSpec { name: topic.clone(), partitions: entry.partitions, config: entry.config.clone() };
        match kafka::ensure_topics(kafka, &[spec]).await {
            Err(kafka::KafkaSetupError::PartitionMismatch { topic, expected, actual }) => {
                return Err(BackupError::PartitionMismatch { topic, expected, actual });
            }
            other => {
                other?;
            }
        }
        let mut topic_report = TopicReport::default();
        for partition in 0..entry.partitions {
            let held = {
                let (consumer, name) = (std::sync::Arc::clone(&consumer), topic.clone());
                tokio::task::spawn_blocking(move || watermarks_of_new_topic(&consumer, &name, partition))
                    .await
                    .expect("watermark request panicked")?
            };
            let (_, high) = held;
            let resumed = state.started.get(&topic).is_some_and(|p| p.contains(&partition));
            if high > 0 && !resumed {
                return Err(BackupError::NotEmpty { topic: topic.clone(), partition, end: high });
            }
            if !resumed {
                state.started.entry(topic.clone()).or_default().push(partition);
                write_json(&state_path, &state)?;
            }
            let imported = import_partition(kafka, &producer, dir, &topic, partition, &options).await?;
            // The check: what a consumer reads back, against the export.
            let (held, digest) = read_back(kafka, &topic, partition).await?;
            topic_report.records += imported.written;
            topic_report.total += held;
            topic_report.digests.insert(partition, digest.0);
            if !imported.preserved {
                topic_report.offsets_shifted.push(partition);
            }
        }
        report.topics.insert(topic, topic_report);
    }
    Ok(report)
}

/// The records of one exported partition, in order, each file checked against its SHA-256 first.
fn partition_records(
    dir: &Path,
    topic: &str,
    partition: i32,
) -> Result<(PartitionProgress, impl Iterator<Item = Result<Record, BackupError>>), BackupError> {
    let folder = partition_dir(dir, topic, partition);
    // No progress file: the partition was empty when exported.
    let progress: PartitionProgress = read_json(&folder.join("progress.json"))?.unwrap_or_default();
    let segments = progress.segments.clone();
    let records = segments.into_iter().flat_map(move |segment| {
        let path = folder.join(&segment.file);
        let lines: Box<dyn Iterator<Item = Result<Record, BackupError>>> = match std::fs::read(&path) {
            Err(e) => Box::new(std::iter::once(Err(BackupError::Io { path, source: e }))),
            Ok(bytes) => {
                let sha256 = hex::encode(Sha256::digest(&bytes));
                if sha256 != segment.sha256 {
                    let message = format!("SHA-256 {sha256}, progress.json says {}", segment.sha256);
                    Box::new(std::iter::once(Err(BackupError::Corrupt { path, message })))
                } else {
                    Box::new(BufReader::new(GzDecoder::new(std::io::Cursor::new(bytes))).lines().map(move |line| {
                        let line = line.map_err(|e| BackupError::Io { path: path.clone(), source: e })?;
                        serde_json::from_str(&line)
                            .map_err(|e| BackupError::Corrupt { path: path.clone(), message: e.to_string() })
                    }))
                }
            }
        };
        lines
    });
    Ok((progress, records))
}

/// The runs of consecutive offsets in an exported partition and how many offsets follow each
/// without a record (transaction markers: one each; aborted or compacted records): run start
/// -> (run end, gap after it). `end` is the partition's end when it was exported. Memory grows
/// with the number of runs, not of records.
fn runs(
    records: impl Iterator<Item = Result<Record, BackupError>>,
    end: i64,
) -> Result<Vec<(i64, i64, i64)>, BackupError> {
    let mut runs = Vec::new();
    let mut current: Option<(i64, i64)> = None;
    for record in records {
        let offset = record?.offset;
        current = match current {
            Some((first, last)) if offset == last + 1 => Some((first, offset)),
            Some((first, last)) => {
                runs.push((first, last, offset - last - 1));
                Some((offset, offset))
            }
            None => Some((offset, offset)),
        };
    }
    if let Some((first, last)) = current {
        runs.push((first, last, (end - last - 1).max(0)));
    }
    Ok(runs)
}

const FILLER_KEY: &[u8] = b"ct-import-filler";

fn block<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// The records a `read_committed` consumer sees in a partition of the cluster: how many, and
/// their content digest (the export's, computed the same way).
pub async fn read_back(kafka: &KafkaConfig, topic: &str, partition: i32) -> Result<(u64, ContentDigest), BackupError> {
    let consumer = export_consumer(kafka)?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let (low, high) = consumer.fetch_watermarks(&topic, partition, TIMEOUT)?;
        let mut digest = ContentDigest::default();
        let mut count = 0u64;
        if high <= low {
            return Ok((0, digest));
        }
        let mut assignment = TopicPartitionList::new();
        assignment.add_partition_offset(&topic, partition, Offset::Offset(low))?;
        consumer.assign(&assignment)?;
        let mut idle = 0;
        loop {
            match consumer.poll(Duration::from_millis(500)) {
                Some(Ok(message)) => {
                    digest.extend(&Record::of(&message));
                    count += 1;
                    idle = 0;
                }
                Some(Err(rdkafka::error::KafkaError::PartitionEOF(_))) => return Ok((count, digest)),
                Some(Err(e)) => return Err(e.into()),
                None => {
                    idle += 1;
                    if idle > 60 {
                        return Err(BackupError::Corrupt {
                            path: PathBuf::from(format!("{topic}/{partition}")),
                            message: "reading the restored partition back stalled for 30 s".to_owned(),
                        });
                    }
                }
            }
        }
    })
    .await
    .expect("read-back panicked")
}

/// The watermarks of a partition whose topic may have just been created: until the broker has
/// elected its leader it answers "not leader" or "leader not available", which is a wait, not an
/// error (seen right after topics were deleted and created again). Other errors, and the same
/// ones after 30 s, are returned.
fn watermarks_of_new_topic(consumer: &BaseConsumer, topic: &str, partition: i32) -> Result<(i64, i64), BackupError> {
    use rdkafka::{error::KafkaError, types::RDKafkaErrorCode};
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let leader_pending = |code: &RDKafkaErrorCode| {
            use RDKafkaErrorCode::{LeaderNotAvailable, NotLeaderForPartition, UnknownTopicOrPartition};
            matches!(code, NotLeaderForPartition | LeaderNotAvailable | UnknownTopicOrPartition)
        };
        match consumer.fetch_watermarks(topic, partition, TIMEOUT) {
            Err(KafkaError::MetadataFetch(code) | KafkaError::OffsetFetch(code))
                if leader_pending(&code) && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(200));
            }
            other => return Ok(other?),
        }
    }
}

/// Polls the partition's end until it reaches `at_least` (a transaction marker is written after
/// the broker answers the commit; the next record must not overtake it). Gives up after 30 s:
/// the delivered offsets then tell whether the source's offsets were kept.
fn wait_for_end(consumer: &BaseConsumer, topic: &str, partition: i32, at_least: i64) -> Result<(), BackupError> {
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::time::Instant::now() < deadline {
        let (_, high) = consumer.fetch_watermarks(topic, partition, TIMEOUT)?;
        if high >= at_least {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// What [`import_partition`] did.
struct Imported {
    written: u64,
    preserved: bool,
}

/// Writes one partition into the topic after the records it already holds (a resumed import:
/// they must be the export's first ones, checked by their digest). Offsets are reproduced: a run
/// of records that one transaction marker followed in the source ends with its last record in a
/// committed transaction (that record and a marker); a longer gap is filled by an aborted
/// transaction of filler records (invisible to `read_committed` consumers, as the aborted or
/// compacted records were). `preserved` is whether every record landed on its original offset.
async fn import_partition(
    kafka: &KafkaConfig,
    producer: &FutureProducer,
    dir: &Path,
    topic: &str,
    partition: i32,
    options: &ImportOptions,
) -> Result<Imported, BackupError> {
    let (progress, _) = partition_records(dir, topic, partition)?;
    let runs = runs(partition_records(dir, topic, partition)?.1, progress.next_offset)?;
    let needs_transactions = runs.iter().any(|(_, _, gap)| *gap > 0) || runs.first().is_some_and(|r| r.0 > 1);
    let transactional = if needs_transactions {
        let mut config = kafka::client_config(kafka);
        config
            .set("transactional.id", format!("ct-import.{topic}.{partition}"))
            .set("enable.idempotence", "true")
            .set("acks", "all");
        for (key, value) in &kafka.properties {
            config.set(key, value);
        }
        let producer: FutureProducer = config.create()?;
        // Fences an earlier, interrupted run of this import and aborts its open transaction.
        block(|| producer.init_transactions(TIMEOUT))?;
        Some(producer)
    } else {
        None
    };
    let (held, held_digest) = read_back(kafka, topic, partition).await?;
    let ends: BaseConsumer = export_consumer(kafka)?;
    let fill = |count: i64| -> Result<(), BackupError> {
        // `count` offsets: count - 1 filler records and the abort marker.
        let Some(producer) = transactional.as_ref() else { return Ok(()) };
        block(|| producer.begin_transaction())?;
        for sent in 0..count - 1 {
            producer
                .send_result(FutureRecord::<[u8], [u8]>::to(topic).partition(partition).key(FILLER_KEY))
                .map_err(|(e, _)| e)?;
            if sent % 10_000 == 9_999 {
                block(|| producer.flush(TIMEOUT))?;
            }
        }
        block(|| producer.flush(TIMEOUT))?;
        block(|| producer.abort_transaction(TIMEOUT))?;
        Ok(())
    };
    let mut preserved = true;
    if held == 0 {
        // Offsets before the first record (aborted, compacted or deleted by retention).
        let leading = runs.first().map_or(0, |r| r.0);
        if (2..=10_000).contains(&leading) {
            fill(leading)?;
            block(|| wait_for_end(&ends, topic, partition, leading))?;
        }
    }
    let mut runs = runs.into_iter().peekable();
    let mut digest = ContentDigest::default();
    let (mut written, mut seen) = (0u64, 0u64);
    let mut pending = Vec::new();
    let mut last_delivered = None;
    for record in partition_records(dir, topic, partition)?.1 {
        let record = record?;
        digest.extend(&record);
        seen += 1;
        if seen == held && digest != held_digest {
            return Err(BackupError::Corrupt {
                path: partition_dir(dir, topic, partition),
                message: format!("the topic holds {held} records that are not this export's first {held}"),
            });
        }
        let run = *runs.peek().expect("every record is in a run");
        let last_of_run = record.offset == run.1;
        if seen > held {
            let corrupt = |e: base64::DecodeError| BackupError::Corrupt {
                path: partition_dir(dir, topic, partition),
                message: format!("offset {}: {e}", record.offset),
            };
            let key = record.key.as_deref().map(|k| B64.decode(k)).transpose().map_err(corrupt)?;
            let value = record.value.as_deref().map(|v| B64.decode(v)).transpose().map_err(corrupt)?;
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for (name, value) in &record.headers {
                let value = value.as_deref().map(|v| B64.decode(v)).transpose().map_err(corrupt)?;
                headers = headers.insert(Header { key: name, value: value.as_ref() });
            }
            let mut out = FutureRecord::<Vec<u8>, Vec<u8>>::to(topic).partition(partition).headers(headers);
            if let Some(key) = key.as_ref() {
                out = out.key(key);
            }
            if let Some(value) = value.as_ref() {
                out = out.payload(value);
            }
            if let Some(ms) = record.timestamp {
                out = out.timestamp(ms);
            }
            match (&transactional, last_of_run && run.2 == 1) {
                // The run's last record and the marker after it: a transaction of one record,
                // so a long run never makes a long transaction.
                (Some(tx), true) => {
                    let (ok, _) = wait_all(&mut pending).await?;
                    preserved &= ok;
                    block(|| tx.begin_transaction())?;
                    pending.push((record.offset, tx.send_result(out).map_err(|(e, _)| e)?));
                    block(|| tx.flush(TIMEOUT))?;
                    block(|| tx.commit_transaction(TIMEOUT))?;
                    let (ok, delivered) = wait_all(&mut pending).await?;
                    preserved &= ok;
                    if let Some(at) = delivered {
                        block(|| wait_for_end(&ends, topic, partition, at + 2))?;
                    }
                }
                _ => {
                    pending.push((record.offset, producer.send_result(out).map_err(|(e, _)| e)?));
                    if pending.len() >= 10_000 {
                        let (ok, delivered) = wait_all(&mut pending).await?;
                        preserved &= ok;
                        last_delivered = delivered.or(last_delivered);
                    }
                }
            }
            written += 1;
            if last_of_run && run.2 >= 2 {
                let (ok, delivered) = wait_all(&mut pending).await?;
                preserved &= ok;
                fill(run.2)?;
                if let Some(at) = delivered.or(last_delivered) {
                    block(|| wait_for_end(&ends, topic, partition, at + 1 + run.2))?;
                }
            }
        }
        if last_of_run {
            runs.next();
        }
        if seen % 100_000 == 0 {
            (options.on_segment)(topic, partition, seen);
        }
    }
    if seen < held {
        return Err(BackupError::Corrupt {
            path: partition_dir(dir, topic, partition),
            message: format!("the topic holds {held} records, the export only {seen}: not this export's import"),
        });
    }
    let (ok, _) = wait_all(&mut pending).await?;
    preserved &= ok;
    (options.on_segment)(topic, partition, seen);
    Ok(Imported { written, preserved: preserved && held == 0 })
}

/// Waits for every delivery: whether each landed on its original offset, and the last one's offset.
async fn wait_all(
    pending: &mut Vec<(i64, rdkafka::producer::DeliveryFuture)>,
) -> Result<(bool, Option<i64>), BackupError> {
    let mut preserved = true;
    let mut last = None;
    for (original, delivery) in pending.drain(..) {
        match delivery.await {
            Ok(Ok(delivered)) => {
                preserved &= delivered.offset == original;
                last = Some(delivered.offset);
            }
            Ok(Err((e, _))) => return Err(e.into()),
            Err(_) => return Err(rdkafka::error::KafkaError::Canceled.into()),
        }
    }
    Ok((preserved, last))
}

/// The content digest of every exported partition (topic -> partition -> digest).
pub fn digests(dir: &Path) -> Result<BTreeMap<String, BTreeMap<i32, String>>, BackupError> {
    let manifest = read_manifest(dir)?;
    let mut all = BTreeMap::new();
    for (topic, entry) in &manifest.topics {
        let mut partitions = BTreeMap::new();
        for partition in 0..entry.partitions {
            let path = partition_dir(dir, topic, partition).join("progress.json");
            let progress: PartitionProgress = read_json(&path)?.unwrap_or_default();
            partitions.insert(partition, progress.content_state.0);
        }
        all.insert(topic.clone(), partitions);
    }
    Ok(all)
}
