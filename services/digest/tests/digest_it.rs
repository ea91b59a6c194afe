//! The digest builder on the real broker, registry and Postgres, driven by clock records written
//! with the real ticker: the golden dataset's week gives the committed digests byte for byte,
//! the days around the clock changes cover 23 and 25 hours and are decided at 08:00 local, and a
//! rebuild swaps in identical digests; the service SIGKILLed a second before a digest is due and
//! restarted after it publishes it once, late, and delivers it once to Slack and email.

use std::{path::PathBuf, time::Duration};

use chrono::{DateTime, Timelike, Utc};
use ct_core::{Envelope, envelope::ParseOptions, redact::Redactor};
use ct_digest::{Config, DigestModel};
use ct_health::ticker::{ClockTopics, Ticker};
use ct_platform::{kafka, registry::RegistryClient};
use ct_testkit::{
    TestContext, eventually,
    receivers::{SlackReceiver, SmtpServer},
    wire_event,
};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

struct Scenario {
    ctx: TestContext,
    config: Config,
    schema_id: u32,
    producer: FutureProducer,
    ticker: Ticker,
    pool: PgPool,
    stop: CancellationToken,
    events_topic: String,
    archive: PathBuf,
    slice: ct_platform::topics::Slice,
    _registry: CancellationToken,
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("a literal time")
}

impl Scenario {
    async fn start() -> Scenario {
        let scenario = Scenario::prepare().await;
        tokio::spawn(ct_digest::run(scenario.config.clone(), scenario.stop.clone()));
        scenario
    }

    /// The test's slice and the digest's configuration, without starting it.
    async fn prepare() -> Scenario {
        let ctx = TestContext::new();
        let topics = ctx.pipeline_topics().await;
        let digests = ctx.create_topics(&[("ct.digests.v1", 1)]).await.remove(0);
        let (registry_url, schema_id, registry) =
            ct_registry::spawn_with_event_schema(ctx.kafka.clone(), &ctx.topic("_schemas"), &topics.events)
                .await
                .expect("registry");
        let slice = ctx.slice(&topics, &registry_url);
        let mut config = Config::for_slice(&slice);
        let archive = std::env::temp_dir().join(format!("ct-digest-{}", ctx.id));
        config.publisher.archive_dir = archive.display().to_string();
        config.publisher.digests_topic = digests;
        let ticker = Ticker::connect(
            &ctx.kafka,
            RegistryClient::new(&registry_url),
            &ClockTopics {
                clock: topics.clock.clone(),
                events: topics.events.clone(),
                audit: topics.audit.clone(),
                health: topics.health.clone(),
            },
        )
        .await
        .expect("ticker");
        let pool = ct_platform::postgres::connect(&config.postgres).await.expect("postgres");
        let producer = kafka::idempotent_producer(&ctx.kafka, Duration::from_secs(30)).expect("producer");
        let stop = CancellationToken::new();
        Scenario {
            ctx,
            config,
            schema_id,
            producer,
            ticker,
            pool,
            stop,
            events_topic: topics.events,
            archive,
            slice,
            _registry: registry,
        }
    }

    /// Writes an event straight to the log, as the edge would have, received a second after its `ts`.
    async fn log(&self, body: &serde_json::Value) {
        let ts: DateTime<Utc> = body["ts"].as_str().unwrap().parse().unwrap();
        let redactor = Redactor::new("t");
        let options = ParseOptions {
            redactor: &redactor,
            received_at: ts + chrono::Duration::seconds(1),
            max_future_skew: chrono::Duration::minutes(5),
        };
        let event: Envelope = Envelope::parse(body, &options).expect("a valid event").0;
        self.producer
            .send(
                FutureRecord::to(&self.events_topic)
                    .key(event.source().as_str())
                    .payload(&wire_event(self.schema_id, &event)),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("the broker takes the event");
    }

    /// Writes the tick of `minute` and waits until the builder has applied it.
    async fn tick(&self, minute: &str) {
        self.tick_at(at(minute)).await;
    }

    async fn tick_at(&self, minute: DateTime<Utc>) {
        self.ticker.tick(minute).await.expect("tick written");
        let applied = eventually(Duration::from_secs(60), || async {
            let last: Option<DateTime<Utc>> =
                sqlx::query_scalar("SELECT minute FROM clock").fetch_optional(&self.pool).await.ok().flatten();
            (last == Some(minute)).then_some(())
        })
        .await;
        assert!(applied.is_some(), "the tick of {minute} was not applied within a minute");
    }

    /// Day -> (json, markdown, sha256) of every decided digest.
    async fn digests(&self) -> Vec<(String, String, String, String)> {
        sqlx::query_as("SELECT day::text, json, markdown, sha256 FROM digests ORDER BY day")
            .fetch_all(&self.pool)
            .await
            .expect("digests")
    }
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// The accepted requests of the golden dataset, duplicates included.
fn golden_events() -> Vec<serde_json::Value> {
    let path = ct_testkit::repo_root().join("testdata/golden/requests.jsonl");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON line"))
        .filter(|request| request["expect"] == 202)
        .map(|request| request["body"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_golden_week_gives_the_committed_digests_and_a_rebuild_the_same_bytes() {
    let s = Scenario::start().await;
    // The first tick: the first digest due is the previous day's (21 September, empty).
    s.tick("2025-09-22T00:00:00Z").await;
    let events = golden_events();
    assert!(events.len() > 900, "the golden dataset has {} accepted requests", events.len());
    for body in &events {
        s.log(body).await;
    }
    // 07:59 BST on the 29th: the 28th's digest is not due yet, every earlier day's is.
    s.tick("2025-09-29T06:59:00Z").await;
    assert_eq!(s.digests().await.last().map(|d| d.0.clone()), Some("2025-09-27".to_owned()));
    s.tick("2025-09-29T07:00:00Z").await;
    let digests = s.digests().await;
    let days: Vec<&str> = digests.iter().map(|d| d.0.as_str()).collect();
    assert_eq!(
        days,
        [
            "2025-09-21",
            "2025-09-22",
            "2025-09-23",
            "2025-09-24",
            "2025-09-25",
            "2025-09-26",
            "2025-09-27",
            "2025-09-28"
        ]
    );
    assert!(digests[0].2.contains("No events were received for this day."), "{}", digests[0].2);

    let update = std::env::var_os("CT_GOLDEN_UPDATE").is_some();
    std::fs::create_dir_all(golden_dir()).unwrap();
    for (day, json, markdown, _) in &digests {
        for (extension, content) in [("json", json), ("md", markdown)] {
            let path = golden_dir().join(format!("{day}.{extension}"));
            if update {
                std::fs::write(&path, content).unwrap();
            }
            let expected = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (CT_GOLDEN_UPDATE=1 writes it)", path.display()));
            assert_eq!(
                content,
                &expected,
                "{} differs (CT_GOLDEN_UPDATE=1 rewrites it; review the diff)",
                path.display()
            );
        }
    }
    // Every event counted once: the duplicates in the dataset are copies of one event id.
    let unique: std::collections::BTreeSet<&str> = events.iter().map(|b| b["eventId"].as_str().unwrap()).collect();
    let counted: i64 = sqlx::query_scalar("SELECT count(*) FROM counted").fetch_one(&s.pool).await.unwrap();
    assert_eq!(counted, unique.len() as i64);

    // Published: one record per digest on the topic, the files in the archive, late (these days
    // are long past).
    let published = eventually(Duration::from_secs(30), || async {
        let rows: Vec<(String, bool, String)> =
            sqlx::query_as("SELECT day::text, late, archived FROM digests WHERE published_at IS NOT NULL ORDER BY day")
                .fetch_all(&s.pool)
                .await
                .ok()?;
        (rows.len() == digests.len()).then_some(rows)
    })
    .await
    .expect("every digest published");
    for ((day, late, archived), (_, _, markdown, sha256)) in published.iter().zip(&digests) {
        assert!(late, "{day}");
        assert_eq!(archived, &s.archive.join(format!("{day}-{}.md", &sha256[..16])).display().to_string());
        assert_eq!(&std::fs::read_to_string(archived).unwrap(), markdown);
    }
    let (kafka, topic) = (s.ctx.kafka.clone(), s.config.publisher.digests_topic.clone());
    let last = tokio::task::spawn_blocking(move || kafka::last_record(&kafka, &topic, 0, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap()
        .expect("a digest record");
    let registry = RegistryClient::new(&s.config.registry.url);
    let record = registry
        .decode_with(rdkafka::Message::payload(&last).unwrap(), ct_core::digest::decode_published)
        .await
        .expect("a ct.v1.Digest record");
    assert_eq!((record.day.as_str(), record.sha256.as_str()), ("2025-09-28", digests[7].3.as_str()));
    assert_eq!(rdkafka::Message::key(&last), Some(&b"2025-09-28"[..]));

    // A late event for a published day changes its counts, never its digest.
    s.log(&serde_json::json!({"eventId": "late_1", "type": "system.heartbeat", "ts": "2025-09-25T12:00:00Z",
                              "source": "portal", "payload": {"systemId": "portal"}}))
        .await;
    s.tick("2025-09-29T07:01:00Z").await;
    assert_eq!(s.digests().await, digests);

    let report = ct_platform::readmodel::rebuild(&DigestModel(s.config.clone()), true, Duration::from_secs(120))
        .await
        .expect("rebuild");
    assert!(report.identical, "{:?}", report.differing_tables);
    assert!(report.swapped_out.is_some(), "{:?}", report.refused);
    assert_eq!(s.digests().await, digests, "the swapped-in digests are the same bytes");
    s.stop.cancel();
    let _ = std::fs::remove_dir_all(&s.archive);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_days_around_the_clock_changes_cover_their_local_hours_and_are_due_at_eight_local() {
    let s = Scenario::start().await;
    s.tick("2026-03-27T12:00:00Z").await;
    let heartbeat = |id: &str, ts: &str| {
        serde_json::json!({"eventId": id, "type": "system.heartbeat", "ts": ts, "source": "portal",
                           "payload": {"systemId": "portal"}})
    };
    // 23:30 UTC on 28 March is still the 28th in London (GMT); 23:30 UTC on 29 March is already
    // 00:30 BST on the 30th. 23:30 UTC on 25 October is the 25th's last half hour (GMT again).
    for (id, ts) in [
        ("a", "2026-03-28T23:30:00Z"),
        ("b", "2026-03-29T00:30:00Z"),
        ("c", "2026-03-29T22:59:00Z"),
        ("d", "2026-03-29T23:30:00Z"),
        ("e", "2026-10-24T23:30:00Z"),
        ("f", "2026-10-25T23:30:00Z"),
    ] {
        s.log(&heartbeat(id, ts)).await;
    }
    // Before the change, 08:00 GMT is 08:00 UTC; after it, 07:00 UTC.
    s.tick("2026-03-28T07:59:00Z").await;
    assert!(s.digests().await.iter().all(|d| d.0 != "2026-03-27"));
    s.tick("2026-03-28T08:00:00Z").await;
    assert_eq!(s.digests().await.last().unwrap().0, "2026-03-27");
    s.tick("2026-03-29T06:59:00Z").await;
    assert_eq!(s.digests().await.last().unwrap().0, "2026-03-27", "08:00 BST on the 29th is 07:00 UTC");
    s.tick("2026-03-29T07:00:00Z").await;
    s.tick("2026-03-30T07:00:00Z").await;
    s.tick("2026-10-25T07:59:00Z").await;
    let before_autumn = s.digests().await.last().unwrap().0.clone();
    assert_eq!(before_autumn, "2026-10-23", "the 24th is due at 08:00 GMT on the 25th, 08:00 UTC");
    s.tick("2026-10-25T08:00:00Z").await;
    s.tick("2026-10-26T08:00:00Z").await;
    let digests = s.digests().await;
    let digest = |day: &str| -> serde_json::Value {
        let json = &digests.iter().find(|d| d.0 == day).unwrap_or_else(|| panic!("no digest of {day}")).1;
        serde_json::from_str(json).unwrap()
    };
    let expect = [
        ("2026-03-28", 24, 1, "2026-03-28T00:00:00Z"),
        ("2026-03-29", 23, 2, "2026-03-29T00:00:00Z"),
        ("2026-03-30", 24, 1, "2026-03-29T23:00:00Z"),
        ("2026-10-24", 24, 0, "2026-10-23T23:00:00Z"),
        ("2026-10-25", 25, 2, "2026-10-24T23:00:00Z"),
    ];
    for (day, hours, events, from) in expect {
        let d = digest(day);
        assert_eq!((d["hours"].as_i64(), d["events"]["total"].as_i64()), (Some(hours), Some(events)), "{day}: {d}");
        assert_eq!(d["from"].as_str().map(at), Some(at(from)), "{day}");
    }
    assert_eq!(digest("2026-03-29")["due_at"].as_str().map(at), Some(at("2026-03-30T07:00:00Z")));
    assert_eq!(digest("2026-10-25")["due_at"].as_str().map(at), Some(at("2026-10-26T08:00:00Z")));
    s.stop.cancel();
    let _ = std::fs::remove_dir_all(&s.archive);
}

/// The done-when of the digest's delivery, on the wall clock (lateness is a wall-clock fact):
/// the digest is due at the next whole minute T; the service is SIGKILLed at T - 1 s, the tick of
/// T is written while it is down, and it is restarted at T + 8 s (`late_after_s` = 5, the
/// "07:59:59 and 08:03" of a real morning, scaled down). It publishes the day's digest once,
/// marked late, and Slack and email each receive it once, also after one more restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_digest_missed_while_the_service_was_down_is_published_late_and_delivered_once() {
    let slack = SlackReceiver::start().await;
    let smtp = SmtpServer::start();
    let s = Scenario::prepare().await;
    let london = chrono_tz::Europe::London;
    let minute = |t: DateTime<Utc>| t.with_second(0).and_then(|t| t.with_nanosecond(0)).unwrap();
    let mut due = minute(Utc::now() + chrono::Duration::seconds(90));
    if due.with_timezone(&london).time() == chrono::NaiveTime::MIN {
        due += chrono::Duration::minutes(1); // keep "the day before the due date" simple
    }
    let local_due = due.with_timezone(&london);
    let day = local_due.date_naive().pred_opt().unwrap();

    let port = ct_testkit::free_port();
    let c = &s.config;
    let config = format!(
        r#"
[kafka]
bootstrap_servers = "{bootstrap}"
[consumer]
name = "{name}"
events_topic = "{events}"
clock_topic = "{clock}"
audit_topic = "{audit}"
health_topic = "{health}"
dlq_topic = "{dlq}"
batch_wait_ms = 10
[digest]
time_zone = "Europe/London"
publish_at = "{publish_at}"
[publisher]
digests_topic = "{digests}"
archive_dir = ""
late_after_s = 5
poll_interval_ms = 100
deliver_to = ["slack", "email"]
[notify]
poll_interval_ms = 100
backoff_base_ms = 200
backoff_max_ms = 1000
[notify.channels.slack]
kind = "slack"
webhook_url = "{slack}"
[notify.channels.email]
kind = "email"
smtp_url = "{smtp}"
from = "ct@example.test"
to = ["admins@example.test"]
[registry]
url = "{registry}"
[postgres]
url = "{postgres}"
schema = "{schema}"
[http]
listen = "127.0.0.1:{port}"
"#,
        bootstrap = c.kafka.bootstrap_servers,
        name = c.consumer.name,
        events = c.consumer.events_topic,
        clock = c.consumer.clock_topic,
        audit = c.consumer.audit_topic,
        health = c.consumer.health_topic,
        dlq = c.consumer.dlq_topic,
        publish_at = local_due.format("%H:%M"),
        digests = c.publisher.digests_topic,
        slack = slack.url(),
        smtp = smtp.url(),
        registry = c.registry.url,
        postgres = c.postgres.url,
        schema = c.postgres.schema,
    );
    let dir = std::env::temp_dir().join(format!("ct-digest-kill-{}", s.ctx.id));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_ct-digest"));
    let mut service = ct_testkit::ServiceProcess::start(binary, "ct-digest", &config, &dir);
    assert!(service.healthy(port, "/healthz", Duration::from_secs(60)).await, "{}", service.logs());

    let noon = day.and_hms_opt(12, 0, 0).unwrap().and_local_timezone(london).unwrap().with_timezone(&Utc);
    s.log(&serde_json::json!({"eventId": "before_the_crash", "type": "system.heartbeat",
                              "ts": noon.to_rfc3339(), "source": "portal", "payload": {"systemId": "portal"}}))
        .await;
    s.tick_at(due - chrono::Duration::minutes(1)).await;
    assert!(s.digests().await.is_empty(), "nothing is due before {due}");

    let until = |t: DateTime<Utc>| (t - Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(until(due - chrono::Duration::seconds(1))).await;
    service.stop(); // SIGKILL, one second before the digest is due
    s.ticker.tick(due).await.expect("the ticker keeps writing while the digest is down");
    tokio::time::sleep(until(due + chrono::Duration::seconds(8))).await;
    let mut service = ct_testkit::ServiceProcess::start(binary, "ct-digest-2", &config, &dir);
    assert!(service.healthy(port, "/healthz", Duration::from_secs(60)).await, "{}", service.logs());

    let delivered = eventually(Duration::from_secs(60), || async {
        (!slack.messages().is_empty() && !smtp.messages().is_empty()).then_some(())
    })
    .await;
    assert!(delivered.is_some(), "not delivered to both: {}", service.logs());
    service.stop();
    let mut service = ct_testkit::ServiceProcess::start(binary, "ct-digest-3", &config, &dir);
    assert!(service.healthy(port, "/healthz", Duration::from_secs(60)).await, "{}", service.logs());
    tokio::time::sleep(Duration::from_secs(3)).await;

    let title = format!("[LATE] Daily digest for {day}");
    let (texts, mails) = (slack.messages(), smtp.messages());
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with(&format!("*{title}")), "{}", texts[0]);
    assert!(texts[0].contains("system.heartbeat"), "the digest's Markdown: {}", texts[0]);
    assert_eq!(mails.len(), 1, "{mails:?}");
    assert!(mails[0].contains(&format!("Subject: {title}")), "{}", mails[0]);
    assert!(mails[0].contains(&format!("Message-ID: <digest-{day}.daily.email@control-tower>")), "{}", mails[0]);
    let rows: Vec<(String, bool)> =
        sqlx::query_as("SELECT day::text, late FROM digests WHERE published_at IS NOT NULL")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(rows, [(day.to_string(), true)]);
    let sent: Vec<(String, String, i32)> =
        sqlx::query_as("SELECT channel, state, attempts FROM notifications ORDER BY channel")
            .fetch_all(&s.pool)
            .await
            .unwrap();
    assert_eq!(sent, [("email".into(), "delivered".into(), 1), ("slack".into(), "delivered".into(), 1)]);
    let (kafka, topic) = (s.ctx.kafka.clone(), s.config.publisher.digests_topic.clone());
    let records = tokio::task::spawn_blocking(move || kafka::last_record(&kafka, &topic, 0, Duration::from_secs(10)))
        .await
        .unwrap()
        .unwrap()
        .expect("the digest record");
    assert_eq!(rdkafka::Message::offset(&records), 0, "one record on the digests topic");
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The timesheet gate: at the first tick at or after Monday 10:00 London, the past week's gate
/// blocks when an expected contractor's timesheet is missing (one `timesheet.gate.blocked` event
/// through the real edge, one Slack message to the admins), and not when every one arrived.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_timesheet_gate_fires_at_monday_ten_with_missing_timesheets_and_not_otherwise() {
    let slack = SlackReceiver::start().await;
    let mut s = Scenario::prepare().await;
    let edge = ct_edge::Application::build(ct_edge::Config::for_slice(&s.slice)).await.expect("edge");
    s.config.edge.url = format!("http://{}", edge.local_addr());
    tokio::spawn(edge.run_until_stopped(s.stop.clone()));
    s.config.timesheets.expected = vec!["C1".into(), "C2".into(), "C3".into()];
    s.config.timesheets.notify_to = vec!["admins".into()];
    s.config
        .notify
        .channels
        .insert("admins".into(), ct_platform::notify::ChannelConfig::Slack { webhook_url: slack.url().into() });
    tokio::spawn(ct_digest::run(s.config.clone(), s.stop.clone()));
    let timesheet = |id: &str, contractor: &str, period: &str, ts: &str| {
        serde_json::json!({"eventId": id, "type": "excel.timesheet.ingested", "ts": ts, "source": "backend",
                           "payload": {"contractorId": contractor, "period": period, "items": [{}], "totalHours": 37.5}})
    };
    let gates = || async {
        let rows: Vec<(String, i32, Vec<String>, bool)> =
            sqlx::query_as("SELECT period, received, missing, blocked FROM timesheet_gates ORDER BY period")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        rows
    };

    // Friday of week 47: its deadline, Monday 23 November 10:00 GMT, is the first one to come.
    s.tick("2026-11-20T12:00:00Z").await;
    s.log(&timesheet("t1", "C1", "2026-W47", "2026-11-20T12:30:00Z")).await;
    s.log(&timesheet("t2", "C2", "2026-w47", "2026-11-22T18:00:00Z")).await;
    s.log(&timesheet("t3", "C3", "2026-W46", "2026-11-22T18:05:00Z")).await; // the wrong week
    s.log(&timesheet("t4", "C9", "2026-W47", "2026-11-22T18:10:00Z")).await; // nobody expects C9
    s.tick("2026-11-23T09:59:00Z").await;
    assert!(gates().await.is_empty(), "nothing is decided before the deadline");
    s.tick("2026-11-23T10:00:00Z").await;
    assert_eq!(gates().await, [("2026-W47".to_owned(), 2, vec!["C3".to_owned()], true)]);

    let told = eventually(Duration::from_secs(30), || async { (!slack.messages().is_empty()).then_some(()) }).await;
    assert!(told.is_some(), "the admins were not told");
    let message = slack.messages().remove(0);
    assert!(message.starts_with("*[GATE] Timesheets for 2026-W47: 1 of 3 missing at the deadline*"), "{message}");
    assert!(message.contains("C3"), "{message}");

    // The gate event went through the edge onto the log: the digest counts it at the next tick.
    let gate_events = || async {
        let count: Option<i64> = sqlx::query_scalar(
            "SELECT sum(count)::bigint FROM day_counts WHERE metric = 'events.type' AND dimension = 'timesheet.gate.blocked'",
        )
        .fetch_one(&s.pool)
        .await
        .unwrap();
        count.unwrap_or(0)
    };
    let mut minute = at("2026-11-23T10:00:00Z");
    let scenario = &s;
    let logged = eventually(Duration::from_secs(30), || {
        minute += chrono::Duration::minutes(1);
        let tick = minute;
        async move {
            scenario.tick_at(tick).await;
            (gate_events().await == 1).then_some(())
        }
    })
    .await;
    assert!(logged.is_some(), "no timesheet.gate.blocked event reached the log");

    // Week 48 complete by its deadline (C3 late for week 47 changes nothing there): no gate fires.
    s.log(&timesheet("t5", "C3", "2026-W47", "2026-11-24T09:00:00Z")).await;
    for (id, contractor) in [("t6", "C1"), ("t7", "C2"), ("t8", "C3")] {
        s.log(&timesheet(id, contractor, "2026-W48", "2026-11-27T16:00:00Z")).await;
    }
    s.tick("2026-11-30T09:59:00Z").await;
    s.tick("2026-11-30T10:00:00Z").await;
    assert_eq!(
        gates().await,
        [("2026-W47".to_owned(), 2, vec!["C3".to_owned()], true), ("2026-W48".to_owned(), 3, vec![], false)]
    );
    s.tick("2026-11-30T10:01:00Z").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(slack.messages().len(), 1, "{:?}", slack.messages());
    assert_eq!(gate_events().await, 1);

    let report = ct_platform::readmodel::rebuild(&DigestModel(s.config.clone()), false, Duration::from_secs(120))
        .await
        .expect("rebuild");
    assert!(report.identical, "the rebuilt gates differ: {:?}", report.differing_tables);
    s.stop.cancel();
}

/// Dead letters in the digest: the categoriser's last depth report of the day (carried to a day
/// without one) and the items people resolved that day, each audit once, from the audit topic
/// the ticks bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_parked_and_resolved_reach_the_digest() {
    let s = Scenario::start().await;
    let registry = || RegistryClient::new(&s.config.registry.url);
    let audit_topic = &s.config.consumer.audit_topic;
    let timeout = Duration::from_secs(30);
    let depths = ct_platform::audit::RecordWriter::new(
        &s.ctx.kafka,
        registry(),
        audit_topic,
        ct_core::dlq::DEPTH_RECORD,
        ct_core::dlq::DEPTH_SCHEMA_JSON,
        timeout,
    )
    .unwrap();
    let audits = ct_platform::audit::RecordWriter::new(
        &s.ctx.kafka,
        registry(),
        audit_topic,
        "ct.v1.DlqAudit",
        ct_core::dlq::AUDIT_SCHEMA_JSON,
        timeout,
    )
    .unwrap();
    s.tick("2026-05-04T12:00:00Z").await;
    let depth = |written: &str, schema: i64, transient: i64| ct_core::dlq::Depth {
        written_at: at(written),
        parked: schema + transient,
        by_category: [("schema".to_owned(), schema), ("transient".to_owned(), transient)].into(),
    };
    for report in [depth("2026-05-04T09:00:00Z", 5, 0), depth("2026-05-04T20:00:00Z", 2, 1)] {
        depths.write("depth", &ct_core::dlq::encode_depth(&report).unwrap()).await.unwrap();
    }
    let audit = |id: &str, outcome: ct_core::dlq::Outcome| ct_core::dlq::Audit {
        audit_id: id.into(),
        item_id: "projector:ct.events.v1:0:7".into(),
        action: ct_core::dlq::Action::Replay,
        outcome,
        actor: "sre:test".into(),
        at: at("2026-05-04T15:00:00Z"),
        reason: "fixed the schema".into(),
        detail: None,
        attempt: 3,
    };
    for record in [
        audit("a1", ct_core::dlq::Outcome::Replayed),
        audit("a1", ct_core::dlq::Outcome::Replayed), // the same audit written twice
        audit("a2", ct_core::dlq::Outcome::Skipped),
    ] {
        audits.write(&record.item_id, &ct_core::dlq::encode_audit(&record).unwrap()).await.unwrap();
    }
    // 08:00 BST on the 5th decides the 4th; 08:00 BST on the 6th the 5th, which had no report.
    s.tick("2026-05-05T07:00:00Z").await;
    s.tick("2026-05-06T07:00:00Z").await;
    let digests = s.digests().await;
    let digest = |day: &str| -> serde_json::Value {
        let json = &digests.iter().find(|d| d.0 == day).unwrap_or_else(|| panic!("no digest of {day}")).1;
        serde_json::from_str(json).unwrap()
    };
    assert_eq!(
        digest("2026-05-04")["dead_letters"],
        serde_json::json!({"parked": 3, "parked_by_category": {"schema": 2, "transient": 1},
                           "resolved_by_outcome": {"replayed": 1, "skipped": 1}})
    );
    assert_eq!(
        digest("2026-05-05")["dead_letters"],
        serde_json::json!({"parked": 3, "parked_by_category": {"schema": 2, "transient": 1}, "resolved_by_outcome": {}})
    );
    assert_eq!(digest("2026-05-03")["dead_letters"]["parked"], serde_json::Value::Null, "no report before the 4th");
    let markdown = &digests.iter().find(|d| d.0 == "2026-05-04").unwrap().2;
    assert!(markdown.contains("Parked at the end of the day: 3 (schema 2, transient 1)."), "{markdown}");
    assert!(markdown.contains("Resolved: replayed 1, skipped 1."), "{markdown}");

    let report = ct_platform::readmodel::rebuild(&DigestModel(s.config.clone()), false, Duration::from_secs(120))
        .await
        .expect("rebuild");
    assert!(report.identical, "{:?}", report.differing_tables);
    s.stop.cancel();
    let _ = std::fs::remove_dir_all(&s.archive);
}

/// Status changes in the digest: per system, its changes that local day (an outbox copy counted
/// once) and the time in each status, from the status in force when the day began (`unknown`
/// before the first), read from `ct.health.v1` below the deciding tick's health offsets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_systems_status_changes_and_time_in_each_status_reach_the_digest() {
    let s = Scenario::start().await;
    let topic = s.config.consumer.health_topic.clone();
    let schema_id = RegistryClient::new(&s.config.registry.url)
        .register(&ct_platform::registry::value_subject(&topic), ct_core::health::CHANGE_SCHEMA_JSON)
        .await
        .unwrap();
    s.tick("2026-06-01T12:00:00Z").await;
    use ct_core::health::StatusSymbol::{Amber, Green, Red};
    for (system, status, at_) in [
        ("portal", Green, "2026-05-31T20:00:00Z"),
        ("portal", Amber, "2026-06-01T10:00:00Z"),
        ("portal", Amber, "2026-06-01T10:00:00Z"), // the outbox delivered it twice
        ("portal", Green, "2026-06-01T11:00:00Z"),
        ("finance", Red, "2026-06-01T17:00:00Z"),
    ] {
        let change = ct_core::health::Change {
            system_id: system.into(),
            status,
            previous: None,
            statuspage: "operational".into(),
            reason: "heartbeat".into(),
            message: "test".into(),
            last_transition_time: at(at_),
        };
        let mut value = Vec::new();
        ct_core::avro::wire::write_header(schema_id, &mut value);
        value.extend(ct_core::health::encode_change(&change).unwrap());
        s.producer
            .send(FutureRecord::to(&topic).key(system).payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // 08:00 BST on 2 June decides 1 June (23:00 UTC on 31 May to 23:00 UTC on 1 June).
    s.tick("2026-06-02T07:00:00Z").await;
    let digests = s.digests().await;
    let (_, json, markdown, _) = digests.iter().find(|d| d.0 == "2026-06-01").expect("the 1st decided");
    let digest: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        digest["systems"],
        serde_json::json!({
            "finance": {"changes": 1, "seconds": {"red": 6 * 3600, "unknown": 18 * 3600}},
            "portal": {"changes": 2, "seconds": {"amber": 3600, "green": 23 * 3600}},
        })
    );
    assert!(markdown.contains("| portal | 2 | amber 1h, green 23h |"), "{markdown}");
    let report = ct_platform::readmodel::rebuild(&DigestModel(s.config.clone()), false, Duration::from_secs(120))
        .await
        .expect("rebuild");
    assert!(report.identical, "{:?}", report.differing_tables);
    s.stop.cancel();
    let _ = std::fs::remove_dir_all(&s.archive);
}

/// Facts stored by the version before migration 8, one row per fact in `pending_facts`, are
/// carried into `pending_events`: one row per event, its facts in (metric, dimension) order (the
/// order `counting.rs` writes them in; the golden test's rebuild compares what it writes), and the
/// per-fact table is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pending_facts_of_the_earlier_version_become_one_row_per_event() {
    let ctx = TestContext::new();
    let pool = ct_platform::postgres::connect(&ctx.digest_postgres()).await.expect("postgres");
    let earlier: Vec<_> = ct_digest::MIGRATIONS.iter().filter(|m| m.version < 8).copied().collect();
    ct_platform::postgres::migrate(&pool, "digest", &earlier).await.expect("earlier migrations");
    sqlx::query(
        "INSERT INTO pending_facts (\"partition\", \"offset\", event_id, day, metric, dimension, amount) VALUES
             (1, 2, 'e2', '2026-06-02', 'invoices.currency', 'GBP', 1250),
             (0, 5, 'e1', '2026-06-01', 'events.type', 'portal.user.signup', 0),
             (1, 2, 'e2', '2026-06-02', 'events.source', 'finance', 0),
             (0, 5, 'e1', '2026-06-01', 'events.source', 'portal', 0)",
    )
    .execute(&pool)
    .await
    .expect("facts of the earlier version");
    ct_platform::postgres::migrate(&pool, "digest", ct_digest::MIGRATIONS).await.expect("every migration");
    type Row = (i32, i64, String, Vec<String>, Vec<String>, Vec<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT \"partition\", \"offset\", day::text, metrics, dimensions, amounts FROM pending_events
         ORDER BY \"partition\", \"offset\"",
    )
    .fetch_all(&pool)
    .await
    .expect("pending events");
    let texts = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        rows,
        vec![
            (
                0,
                5,
                "2026-06-01".to_owned(),
                texts(&["events.source", "events.type"]),
                texts(&["portal", "portal.user.signup"]),
                vec![0, 0]
            ),
            (
                1,
                2,
                "2026-06-02".to_owned(),
                texts(&["events.source", "invoices.currency"]),
                texts(&["finance", "GBP"]),
                vec![0, 1250]
            ),
        ]
    );
    let old_table: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('pending_facts')::text").fetch_one(&pool).await.expect("catalogue");
    assert_eq!(old_table, None, "the per-fact table is dropped");
}
