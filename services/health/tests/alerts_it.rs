//! Alerts reach real receivers: a Slack-style HTTP receiver and an SMTP server (`aiosmtpd`,
//! installed by the test command), driven by clock records. One incident is one alert: three
//! high-severity errors in 10 minutes send one Slack message and one email, a fourth adds nothing;
//! an unacknowledged alert escalates to the second route; an SMTP server that is down delays the
//! resolved email, which still arrives once.

mod common;

use std::time::Duration;

use common::Scenario;
use ct_platform::notify::ChannelConfig;
use ct_testkit::eventually;
use ct_testkit::receivers::{SlackReceiver, SmtpServer};
use serde_json::json;

fn error(id: &str, ts: &str) -> serde_json::Value {
    json!({"eventId": id, "type": "backend.fn.error", "ts": ts, "source": "backend",
           "payload": {"fnName": "parse", "severity": "high"}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_incident_is_one_message_per_channel_escalates_and_survives_a_receiver_outage() {
    let slack = SlackReceiver::start().await;
    let mut smtp = SmtpServer::start();
    let (slack_url, smtp_url) = (slack.url(), smtp.url());
    let s = Scenario::start_with(move |config| {
        config.alerts.enabled = true;
        config.alerts.policy.escalate_after_s = 300;
        config.alerts.primary = vec!["slack".into(), "email".into()];
        config.alerts.escalation = vec!["oncall".into()];
        config.notify.enabled = true;
        config.notify.poll_interval_ms = 100;
        config.notify.backoff_base_ms = 200;
        config.notify.backoff_max_ms = 1000;
        config.notify.channels = [
            ("slack".to_owned(), ChannelConfig::Slack { webhook_url: slack_url.into() }),
            (
                "email".to_owned(),
                ChannelConfig::Email {
                    smtp_url: smtp_url.clone().into(),
                    from: "Control Tower <ct@example.test>".into(),
                    to: vec!["ops@example.test".into()],
                },
            ),
            (
                "oncall".to_owned(),
                ChannelConfig::Email {
                    smtp_url: smtp_url.into(),
                    from: "Control Tower <ct@example.test>".into(),
                    to: vec!["oncall@example.test".into()],
                },
            ),
        ]
        .into();
    })
    .await;
    s.heartbeat("backend", "2026-03-03T11:00:00Z").await;
    for (i, ts) in ["2026-03-03T11:01:00Z", "2026-03-03T11:02:00Z", "2026-03-03T11:03:00Z"].iter().enumerate() {
        s.log(error(&format!("e{i}"), ts), 1).await;
    }
    s.tick("2026-03-03T11:04:00Z").await;
    let fired = eventually(Duration::from_secs(30), || async {
        (slack.messages().len() == 1 && smtp.messages().len() == 1).then_some(())
    })
    .await;
    assert!(fired.is_some(), "slack {:?}, email {:?}", slack.messages(), smtp.messages());
    assert!(slack.messages()[0].contains("[FIRING] fn-errors:backend"), "{:?}", slack.messages());
    let email = &smtp.messages()[0];
    assert!(email.contains("Subject: [FIRING] fn-errors:backend"), "{email}");
    assert!(email.contains("To: ops@example.test"), "{email}");
    assert!(email.contains("3 high-severity function errors of backend in the last 10m"), "{email}");

    // A fourth error inside the window is the same incident.
    s.log(error("e3", "2026-03-03T11:05:00Z"), 1).await;
    s.heartbeat("backend", "2026-03-03T11:06:00Z").await;
    s.tick("2026-03-03T11:06:00Z").await;
    // Unacknowledged 5 minutes after firing, still holding (4 errors since 10:59): escalated.
    s.tick("2026-03-03T11:09:00Z").await;
    let escalated = eventually(Duration::from_secs(30), || async {
        smtp.messages().iter().any(|m| m.contains("To: oncall@example.test")).then_some(())
    })
    .await;
    assert!(escalated.is_some(), "no escalation email: {:?}", smtp.messages());
    assert_eq!(slack.messages().len(), 1, "the fourth error and the escalation add no Slack message");

    // The SMTP server goes away; the alert resolves (one error left in the window).
    smtp.stop();
    s.tick("2026-03-03T11:14:00Z").await;
    let resolved_in_slack = eventually(Duration::from_secs(30), || async {
        slack.messages().iter().any(|m| m.contains("[RESOLVED] fn-errors:backend")).then_some(())
    })
    .await;
    assert!(resolved_in_slack.is_some(), "{:?}", slack.messages());
    let retried = eventually(Duration::from_secs(30), || async {
        let attempts: i32 =
            sqlx::query_scalar("SELECT attempts FROM notifications WHERE channel = 'email' AND kind = 'resolved'")
                .fetch_one(&s.pool)
                .await
                .ok()?;
        (attempts >= 2).then_some(())
    })
    .await;
    assert!(retried.is_some(), "the email was not retried while SMTP was down");
    smtp.restart();
    let resolved = eventually(Duration::from_secs(30), || async {
        smtp.messages().iter().any(|m| m.contains("Subject: [RESOLVED] fn-errors:backend")).then_some(())
    })
    .await;
    assert!(resolved.is_some(), "the resolved email never arrived: {:?}", smtp.messages());
    tokio::time::sleep(Duration::from_secs(1)).await;

    let subjects: Vec<String> = smtp
        .messages()
        .iter()
        .map(|m| m.lines().find(|l| l.starts_with("Subject:")).unwrap_or_default().to_owned())
        .collect();
    let mut subjects_sorted = subjects.clone();
    subjects_sorted.sort();
    assert_eq!(
        subjects_sorted,
        [
            "Subject: [ESCALATED] fn-errors:backend",
            "Subject: [FIRING] fn-errors:backend",
            "Subject: [RESOLVED] fn-errors:backend"
        ],
        "each transition once per channel"
    );
    assert_eq!(slack.messages().len(), 2, "{:?}", slack.messages());
    for message in slack.messages().iter().chain(smtp.messages().iter()) {
        assert!(!message.contains("dev-webhook-secret") && !message.contains("password"), "{message}");
    }
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT key, state FROM alerts ORDER BY fired_at").fetch_all(&s.pool).await.unwrap();
    assert_eq!(states, [("fn-errors:backend".to_owned(), "resolved".to_owned())]);
    s.stop.cancel();
}

/// The notifier SIGKILLed after an alert was decided and before its email could be delivered (the
/// SMTP server is down): once the server is up and the service restarted, the email arrives, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_decided_before_a_crash_is_delivered_once_after_the_restart() {
    let mut smtp = SmtpServer::start();
    smtp.stop();
    let s = Scenario::prepare(|_| {}).await;
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
dlq_topic = "{dlq}"
batch_wait_ms = 10
[ticker]
enabled = false
[outbox]
health_topic = "{health}"
[alerts]
primary = ["email"]
[notify]
poll_interval_ms = 100
backoff_base_ms = 200
backoff_max_ms = 500
[notify.channels.email]
kind = "email"
smtp_url = "{smtp}"
from = "ct@example.test"
to = ["ops@example.test"]
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
        dlq = c.consumer.dlq_topic,
        health = c.outbox.health_topic,
        smtp = smtp.url(),
        registry = s.registry_url,
        postgres = c.postgres.url,
        schema = c.postgres.schema,
    );
    let dir = std::env::temp_dir().join(format!("ct-health-kill-{}", s.ctx.id));
    let binary = std::path::Path::new(env!("CARGO_BIN_EXE_ct-health"));
    let mut service = ct_testkit::ServiceProcess::start(binary, "ct-health", &config, &dir);
    assert!(service.healthy(port, "/healthz", Duration::from_secs(60)).await, "{}", service.logs());

    for (i, ts) in ["2026-03-03T11:01:00Z", "2026-03-03T11:02:00Z", "2026-03-03T11:03:00Z"].iter().enumerate() {
        s.log(error(&format!("k{i}"), ts), 1).await;
    }
    s.tick("2026-03-03T11:04:00Z").await;
    let failing = eventually(Duration::from_secs(30), || async {
        let attempts: i32 = sqlx::query_scalar("SELECT attempts FROM notifications WHERE state = 'pending'")
            .fetch_one(&s.pool)
            .await
            .ok()?;
        (attempts >= 1).then_some(())
    })
    .await;
    assert!(failing.is_some(), "the notification was not attempted: {}", service.logs());
    service.stop(); // SIGKILL

    smtp.restart();
    let mut service = ct_testkit::ServiceProcess::start(binary, "ct-health-2", &config, &dir);
    assert!(service.healthy(port, "/healthz", Duration::from_secs(60)).await, "{}", service.logs());
    let delivered = eventually(Duration::from_secs(30), || async { (!smtp.messages().is_empty()).then_some(()) }).await;
    assert!(delivered.is_some(), "the email never arrived: {}", service.logs());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let messages = smtp.messages();
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages[0].contains("Subject: [FIRING] fn-errors:backend"), "{}", messages[0]);
    let state: String = sqlx::query_scalar("SELECT state FROM notifications").fetch_one(&s.pool).await.unwrap();
    assert_eq!(state, "delivered");
    service.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An acknowledged alert neither repeats nor escalates, and still resolves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledging_stops_escalation() {
    let slack = SlackReceiver::start().await;
    let slack_url = slack.url();
    let s = Scenario::start_with(move |config| {
        config.alerts.policy.escalate_after_s = 300;
        config.alerts.primary = vec!["slack".into()];
        config.alerts.escalation = vec!["slack".into()];
        config.notify.channels = [("slack".to_owned(), ChannelConfig::Slack { webhook_url: slack_url.into() })].into();
    })
    .await;
    for (i, ts) in ["2026-03-03T11:01:00Z", "2026-03-03T11:02:00Z", "2026-03-03T11:03:00Z"].iter().enumerate() {
        s.log(error(&format!("a{i}"), ts), 1).await;
    }
    s.tick("2026-03-03T11:04:00Z").await;
    s.acknowledge("fn-errors:backend@20260303T1104Z").await;
    s.tick("2026-03-03T11:05:00Z").await;
    s.log(error("a3", "2026-03-03T11:06:00Z"), 1).await;
    s.tick("2026-03-03T11:09:00Z").await;
    s.tick("2026-03-03T11:13:00Z").await;
    s.tick("2026-03-03T11:17:00Z").await;
    let row: (String, Option<chrono::DateTime<chrono::Utc>>, Option<chrono::DateTime<chrono::Utc>>) =
        sqlx::query_as("SELECT state, acknowledged_at, escalated_at FROM alerts").fetch_one(&s.pool).await.unwrap();
    assert_eq!(row.0, "resolved");
    assert_eq!(row.1, Some(common::at("2026-03-03T11:05:00Z")), "acknowledged at the tick after the action");
    assert_eq!(row.2, None, "never escalated");
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM alert_actions").fetch_one(&s.pool).await.unwrap();
    assert_eq!(outcome, "acknowledged");
    let delivered = eventually(Duration::from_secs(30), || async { (slack.messages().len() == 2).then_some(()) }).await;
    assert!(delivered.is_some(), "{:?}", slack.messages());
    let messages = slack.messages();
    assert!(messages[0].contains("[FIRING]") && messages[1].contains("[RESOLVED]"), "{messages:?}");
    s.stop.cancel();
}

/// A silenced alert still fires and resolves; nobody is told while the silence lasts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silence_keeps_the_alert_and_sends_nothing() {
    let slack = SlackReceiver::start().await;
    let slack_url = slack.url();
    let s = Scenario::start_with(move |config| {
        config.alerts.primary = vec!["slack".into()];
        config.notify.channels = [("slack".to_owned(), ChannelConfig::Slack { webhook_url: slack_url.into() })].into();
    })
    .await;
    s.silence("fn_errors", "2026-03-03T10:00:00Z", "2026-03-03T11:10:00Z").await;
    for (i, ts) in ["2026-03-03T11:01:00Z", "2026-03-03T11:02:00Z", "2026-03-03T11:03:00Z"].iter().enumerate() {
        s.log(error(&format!("s{i}"), ts), 1).await;
    }
    s.tick("2026-03-03T11:04:00Z").await;
    // After the silence ends, the resolution is told.
    s.tick("2026-03-03T11:14:00Z").await;
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, state FROM notifications ORDER BY at").fetch_all(&s.pool).await.unwrap();
    assert_eq!(states[0], ("firing".to_owned(), "silenced".to_owned()), "{states:?}");
    assert_eq!(states[1].0, "resolved");
    let told = eventually(Duration::from_secs(30), || async { (slack.messages().len() == 1).then_some(()) }).await;
    assert!(told.is_some(), "{:?}", slack.messages());
    assert!(slack.messages()[0].contains("[RESOLVED] fn-errors:backend"), "{:?}", slack.messages());
    let outcome: String = sqlx::query_scalar("SELECT outcome FROM alert_actions").fetch_one(&s.pool).await.unwrap();
    assert_eq!(outcome, "silence created");
    s.stop.cancel();
}

/// Quiet hours: alerts are decided through the night, nobody is woken, and one summary per
/// channel tells what happened when they end; a rebuild decides the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_hours_hold_notifications_and_send_one_summary_when_they_end() {
    let slack = SlackReceiver::start().await;
    let slack_url = slack.url();
    let s = Scenario::start_with(move |config| {
        config.alerts.primary = vec!["slack".into()];
        config.alerts.quiet_hours.enabled = true;
        config.notify.channels = [("slack".to_owned(), ChannelConfig::Slack { webhook_url: slack_url.into() })].into();
    })
    .await;
    // Tuesday 3 March 2026, 23:01 in London: a burst of errors that fires and then resolves.
    for (i, ts) in ["2026-03-03T23:01:00Z", "2026-03-03T23:02:00Z", "2026-03-03T23:03:00Z"].iter().enumerate() {
        s.log(error(&format!("q{i}"), ts), 1).await;
    }
    s.tick("2026-03-03T23:04:00Z").await;
    s.tick("2026-03-03T23:20:00Z").await;
    s.tick("2026-03-04T06:59:00Z").await;
    let states: Vec<(String, String)> =
        sqlx::query_as("SELECT kind, state FROM notifications ORDER BY at").fetch_all(&s.pool).await.unwrap();
    assert_eq!(
        states,
        [("firing".to_owned(), "held".to_owned()), ("resolved".to_owned(), "held".to_owned())],
        "decided, not sent"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(slack.messages().is_empty(), "{:?}", slack.messages());

    s.tick("2026-03-04T07:00:00Z").await;
    let told = eventually(Duration::from_secs(30), || async { (!slack.messages().is_empty()).then_some(()) }).await;
    assert!(told.is_some(), "no summary");
    s.tick("2026-03-04T07:01:00Z").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let messages = slack.messages();
    assert_eq!(messages.len(), 1, "one summary: {messages:?}");
    let summary = &messages[0];
    assert!(summary.contains("[SUMMARY] 2 notifications held during quiet hours"), "{summary}");
    assert!(summary.contains("Quiet hours (22:00-07:00 Europe/London) ended at 2026-03-04 07:00 UTC"), "{summary}");
    assert!(summary.contains("- 2026-03-03 23:04 UTC [FIRING] fn-errors:backend"), "{summary}");
    assert!(summary.contains("- 2026-03-03 23:20 UTC [RESOLVED] fn-errors:backend"), "{summary}");

    let report =
        ct_platform::readmodel::rebuild(&ct_health::HealthModel(s.config.clone()), false, Duration::from_secs(120))
            .await
            .unwrap();
    assert!(report.identical, "{report:#?}");
    s.stop.cancel();
}

/// A deployment drifting from `main` longer than `drift_after_s` of clock time is an alert, which
/// resolves when the head's commit is deployed; a rebuild decides the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_drifting_from_main_too_long_alerts_until_the_head_is_deployed() {
    let s = Scenario::start_with(|config| {
        config.alerts.enabled = true;
        config.alerts.policy.drift_after_s = 3600;
    })
    .await;
    let deploy = |id: &str, commit: &str, ts: &str| {
        json!({"eventId": id, "type": "ci.deploy.completed", "ts": ts, "source": "github",
               "payload": {"repo": "swan-portal", "environment": "production", "commit": commit}})
    };
    let head = |id: &str, commit: &str, ts: &str| {
        json!({"eventId": id, "type": "ci.branch.updated", "ts": ts, "source": "github",
               "payload": {"repo": "swan-portal", "branch": "main", "commit": commit}})
    };
    let drift = || async {
        let rows: Vec<(String, String, Option<chrono::DateTime<chrono::Utc>>)> =
            sqlx::query_as("SELECT deployed_commit, coalesce(head_commit, ''), drift_since FROM drift_deployments")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        rows
    };
    let alerts = || async {
        let rows: Vec<(String, String, String)> =
            sqlx::query_as("SELECT key, state, summary FROM alerts WHERE rule = 'drift' ORDER BY fired_at")
                .fetch_all(&s.pool)
                .await
                .unwrap();
        rows
    };
    s.log(deploy("d1", "aaa1111", "2026-03-03T10:00:00Z"), 1).await;
    s.log(head("h1", "aaa1111", "2026-03-03T10:00:00Z"), 1).await;
    // A feature branch moving is not the target branch.
    s.log(
        json!({"eventId": "h0", "type": "ci.branch.updated", "ts": "2026-03-03T10:10:00Z", "source": "github",
               "payload": {"repo": "swan-portal", "branch": "feature-x", "commit": "fff0000"}}),
        1,
    )
    .await;
    s.tick("2026-03-03T10:15:00Z").await;
    assert_eq!(drift().await, [("aaa1111".into(), "aaa1111".into(), None)]);

    s.log(head("h2", "bbb2222", "2026-03-03T10:30:00Z"), 1).await;
    s.tick("2026-03-03T10:31:00Z").await;
    assert_eq!(drift().await, [("aaa1111".into(), "bbb2222".into(), Some(common::at("2026-03-03T10:30:00Z")))]);
    s.log(head("h3", "ccc3333", "2026-03-03T11:00:00Z"), 1).await;
    s.tick("2026-03-03T11:29:00Z").await;
    assert_eq!(drift().await[0].2, Some(common::at("2026-03-03T10:30:00Z")), "still drifting since the first change");
    assert!(alerts().await.is_empty(), "59 minutes of drift is within the hour");
    s.tick("2026-03-03T11:30:00Z").await;
    let fired = alerts().await;
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!((fired[0].0.as_str(), fired[0].1.as_str()), ("drift:swan-portal:production", "firing"));
    assert!(fired[0].2.contains("runs aaa1111 while main is at ccc3333, since"), "{}", fired[0].2);

    s.log(deploy("d2", "ccc3333", "2026-03-03T12:00:00Z"), 1).await;
    s.tick("2026-03-03T12:01:00Z").await;
    assert_eq!(drift().await, [("ccc3333".into(), "ccc3333".into(), None)]);
    assert_eq!(alerts().await[0].1, "resolved");

    let report =
        ct_platform::readmodel::rebuild(&ct_health::HealthModel(s.config.clone()), false, Duration::from_secs(120))
            .await
            .expect("rebuild");
    assert!(report.identical, "{:?}", report.differing_tables);
    s.stop.cancel();
}
