//! Alerting rules as data, pure: which conditions hold at a tick of the log's clock is the
//! evaluator's job; [`step`] turns the alerts already open and the conditions holding now into
//! transitions (fire, repeat, escalate, resolve), as Alertmanager does with its group's dedup
//! key, repeat interval and an escalation route. The same inputs give the same transitions, so a
//! rebuild repeats every alert and notification.

use std::sync::LazyLock;

use apache_avro::Schema;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::avro::CodecError;

/// How alerts behave once open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Policy {
    /// `backend.fn.error` of severity high or critical: this many within `fn_errors_window_s`
    /// for one system open one alert (key `fn-errors:<system>`).
    pub fn_errors_count: u32,
    pub fn_errors_window_s: i64,
    /// A system turning red opens an alert (key `system-red:<system>`).
    pub system_red: bool,
    /// A run not completed this long after it started opens an alert (key
    /// `run-sla:<system>:<run>`); 0 turns the rule off.
    pub run_sla_s: i64,
    /// More dead letters parked than this, for `dlq_depth_for_s` of clock time, opens an alert
    /// (key `dlq-depth`); 0 turns the rule off.
    pub dlq_depth_max: u32,
    pub dlq_depth_for_s: i64,
    /// A deployment whose commit has differed from the target branch's head for this long opens
    /// an alert (key `drift:<repo>:<environment>`); 0 turns the rule off.
    pub drift_after_s: i64,
    /// While an alert stays open, its notification is sent again this often (Alertmanager's
    /// `repeat_interval`; 4 h).
    pub repeat_interval_s: i64,
    /// An alert still unacknowledged this long after it fired is sent to the escalation route too.
    pub escalate_after_s: i64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            fn_errors_count: 3,
            fn_errors_window_s: 600,
            system_red: true,
            run_sla_s: 3600,
            dlq_depth_max: 100,
            dlq_depth_for_s: 1800,
            drift_after_s: 7 * 86_400,
            repeat_interval_s: 4 * 3600,
            escalate_after_s: 2 * 3600,
        }
    }
}

/// Something that should page while it holds. `key` is the dedup key: one open alert per key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    pub key: String,
    pub rule: &'static str,
    pub system_id: String,
    /// What a person reads, without PII or secrets ("3 high-severity function errors of
    /// backend in 10m").
    pub summary: String,
}

/// An alert not yet resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub key: String,
    pub fired_at: DateTime<Utc>,
    pub last_notified_at: DateTime<Utc>,
    pub acknowledged: bool,
    pub escalated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Fire(Condition),
    /// Still open after the repeat interval: notify again (with the current summary).
    Repeat {
        key: String,
        summary: String,
    },
    Escalate {
        key: String,
        summary: String,
    },
    Resolve {
        key: String,
    },
}

impl Transition {
    pub fn key(&self) -> &str {
        match self {
            Transition::Fire(c) => &c.key,
            Transition::Repeat { key, .. } | Transition::Escalate { key, .. } | Transition::Resolve { key } => key,
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Transition::Fire(_) => "firing",
            Transition::Repeat { .. } => "repeat",
            Transition::Escalate { .. } => "escalated",
            Transition::Resolve { .. } => "resolved",
        }
    }
}

/// The transitions at `at`, in key order: a condition without an open alert fires; an open alert
/// whose condition no longer holds resolves; one that still holds escalates once when
/// unacknowledged past `escalate_after_s`, and repeats every `repeat_interval_s`.
pub fn step(open: &[Open], holding: &[Condition], at: DateTime<Utc>, policy: &Policy) -> Vec<Transition> {
    let mut transitions = Vec::new();
    for condition in holding {
        match open.iter().find(|o| o.key == condition.key) {
            None => transitions.push(Transition::Fire(condition.clone())),
            Some(alert) => {
                if !alert.acknowledged
                    && !alert.escalated
                    && at - alert.fired_at >= Duration::seconds(policy.escalate_after_s)
                {
                    transitions
                        .push(Transition::Escalate { key: alert.key.clone(), summary: condition.summary.clone() });
                }
                if !alert.acknowledged && at - alert.last_notified_at >= Duration::seconds(policy.repeat_interval_s) {
                    transitions.push(Transition::Repeat { key: alert.key.clone(), summary: condition.summary.clone() });
                }
            }
        }
    }
    for alert in open {
        if !holding.iter().any(|c| c.key == alert.key) {
            transitions.push(Transition::Resolve { key: alert.key.clone() });
        }
    }
    transitions.sort_by(|a, b| a.key().cmp(b.key()));
    transitions
}

/// Quiet hours: a daily stretch of local time (e.g. 22:00 to 07:00 in Europe/London) in which
/// alerts are still decided but their notifications are held, then sent as one catch-up summary
/// per channel at the first tick after it ends. Rules in `bypass_rules` page at night anyway.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuietHours {
    pub enabled: bool,
    pub time_zone: String,
    pub starts: String,
    pub ends: String,
    #[serde(default)]
    pub bypass_rules: Vec<String>,
}

impl Default for QuietHours {
    fn default() -> Self {
        Self {
            enabled: false,
            time_zone: "Europe/London".into(),
            starts: "22:00".into(),
            ends: "07:00".into(),
            bypass_rules: Vec::new(),
        }
    }
}

/// [`QuietHours`] checked and ready to ask.
#[derive(Debug, Clone)]
pub struct Quiet {
    tz: chrono_tz::Tz,
    starts: chrono::NaiveTime,
    ends: chrono::NaiveTime,
    bypass_rules: Vec<String>,
}

impl QuietHours {
    /// `None` when disabled; an error names the setting that does not parse.
    pub fn compile(&self) -> Result<Option<Quiet>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let tz =
            self.time_zone.parse().map_err(|_| format!("quiet_hours.time_zone `{}` is unknown", self.time_zone))?;
        let time = |field: &str, text: &str| {
            chrono::NaiveTime::parse_from_str(text, "%H:%M")
                .map_err(|_| format!("quiet_hours.{field} must be a time like 22:00, not `{text}`"))
        };
        let (starts, ends) = (time("starts", &self.starts)?, time("ends", &self.ends)?);
        if starts == ends {
            return Err("quiet_hours.starts and ends must differ".into());
        }
        Ok(Some(Quiet { tz, starts, ends, bypass_rules: self.bypass_rules.clone() }))
    }
}

impl Quiet {
    /// Whether a notification of `rule` decided at `at` waits for the end of quiet hours.
    pub fn holds(&self, rule: &str, at: DateTime<Utc>) -> bool {
        self.is_quiet(at) && !self.bypass_rules.iter().any(|r| r == rule)
    }

    /// Whether the local time of `at` is in `[starts, ends)`, across midnight when it ends earlier
    /// than it starts.
    pub fn is_quiet(&self, at: DateTime<Utc>) -> bool {
        let local = at.with_timezone(&self.tz).time();
        if self.starts < self.ends {
            self.starts <= local && local < self.ends
        } else {
            local >= self.starts || local < self.ends
        }
    }

    /// `22:00-07:00 Europe/London`.
    pub fn describe(&self) -> String {
        format!("{}-{} {}", self.starts.format("%H:%M"), self.ends.format("%H:%M"), self.tz)
    }
}

/// What a person did to an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum ActionKind {
    Ack,
    Silence,
    /// End the silence `alert_id` names at the tick that applies it.
    Expire,
}

/// A silence (Alertmanager's): alerts matching it decide their transitions as usual, but the
/// notifications decided while it is active (clock minutes in `[starts_at, ends_at)`) are not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SilenceSpec {
    pub rule: Option<String>,
    pub system_id: Option<String>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub starts_at: DateTime<Utc>,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub ends_at: DateTime<Utc>,
}

impl SilenceSpec {
    pub fn silences(&self, rule: &str, system_id: &str, at: DateTime<Utc>) -> bool {
        self.rule.as_deref().is_none_or(|r| r == rule)
            && self.system_id.as_deref().is_none_or(|s| s == system_id)
            && self.starts_at <= at
            && at < self.ends_at
    }
}

/// An action on an alert, on `ct.audit.v1`. Field order must equal
/// `schemas-avro/ct.v1.AlertAudit.avsc`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub audit_id: String,
    pub alert_id: String,
    pub action: ActionKind,
    pub actor: String,
    #[serde(with = "chrono::serde::ts_microseconds")]
    pub at: DateTime<Utc>,
    pub reason: String,
    /// For [`ActionKind::Silence`].
    #[serde(default)]
    pub silence: Option<SilenceSpec>,
}

pub const ACTION_SCHEMA_JSON: &str = include_str!("../../../schemas-avro/ct.v1.AlertAudit.avsc");
/// Its full name: the audit topic holds several record types (TopicRecordNameStrategy); readers
/// take the ones they know by the writer schema's name.
pub const ACTION_RECORD: &str = "ct.v1.AlertAudit";

static ACTION_SCHEMA: LazyLock<Schema> =
    LazyLock::new(|| Schema::parse_str(ACTION_SCHEMA_JSON).expect("schemas-avro/ct.v1.AlertAudit.avsc is valid Avro"));

pub fn action_schema() -> &'static Schema {
    &ACTION_SCHEMA
}

pub fn encode_action(action: &Action) -> Result<Vec<u8>, CodecError> {
    crate::avro::encode_record(action_schema(), action)
}

/// The action in `datum`, or `None` when `writer` is another record type of the audit topic.
pub fn decode_action(writer: &Schema, datum: &[u8]) -> Result<Option<Action>, CodecError> {
    if crate::avro::record_name(writer).as_deref() != Some(ACTION_RECORD) {
        return Ok(None);
    }
    crate::avro::decode_record(writer, action_schema(), datum).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_cross_midnight_in_local_time() {
        let quiet = QuietHours { enabled: true, bypass_rules: vec!["system_red".into()], ..QuietHours::default() }
            .compile()
            .unwrap()
            .unwrap();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        assert!(quiet.is_quiet(at("2026-03-03T23:10:00Z")), "23:10 in winter");
        assert!(quiet.is_quiet(at("2026-03-04T06:59:00Z")));
        assert!(!quiet.is_quiet(at("2026-03-04T07:00:00Z")), "the end is not quiet");
        assert!(quiet.is_quiet(at("2026-07-01T21:30:00Z")), "21:30 UTC is 22:30 in summer");
        assert!(!quiet.is_quiet(at("2026-07-01T06:30:00Z")), "06:30 UTC is 07:30 in summer");
        assert!(quiet.holds("fn_errors", at("2026-03-03T23:10:00Z")));
        assert!(!quiet.holds("system_red", at("2026-03-03T23:10:00Z")), "bypassed");
        assert_eq!(quiet.describe(), "22:00-07:00 Europe/London");
        assert_eq!(QuietHours::default().compile().unwrap().map(|q| q.describe()), None, "off by default");
        let bad = QuietHours { enabled: true, starts: "10pm".into(), ..QuietHours::default() };
        assert!(bad.compile().unwrap_err().contains("quiet_hours.starts"));
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn condition(key: &str) -> Condition {
        Condition { key: key.into(), rule: "fn_errors", system_id: "backend".into(), summary: "3 errors".into() }
    }

    fn open(key: &str, fired: &str) -> Open {
        Open {
            key: key.into(),
            fired_at: at(fired),
            last_notified_at: at(fired),
            acknowledged: false,
            escalated: false,
        }
    }

    #[test]
    fn one_incident_is_one_alert_from_firing_to_resolved() {
        let policy = Policy::default();
        let fired = step(&[], &[condition("fn-errors:backend")], at("2026-03-03T11:00:00Z"), &policy);
        assert_eq!(fired, [Transition::Fire(condition("fn-errors:backend"))]);
        let open = [open("fn-errors:backend", "2026-03-03T11:00:00Z")];
        assert_eq!(step(&open, &[condition("fn-errors:backend")], at("2026-03-03T11:05:00Z"), &policy), []);
        assert_eq!(
            step(&open, &[], at("2026-03-03T11:10:00Z"), &policy),
            [Transition::Resolve { key: "fn-errors:backend".into() }]
        );
    }

    #[test]
    fn actions_round_trip_and_other_audit_records_are_not_actions() {
        let action = Action {
            audit_id: "0190".into(),
            alert_id: "fn-errors:backend@20260303T1104Z".into(),
            action: ActionKind::Ack,
            actor: "operator:1a2b3c4d".into(),
            at: at("2026-03-03T11:05:00Z"),
            reason: "looking".into(),
            silence: None,
        };
        let datum = encode_action(&action).unwrap();
        assert_eq!(decode_action(action_schema(), &datum).unwrap(), Some(action.clone()));
        assert_eq!(decode_action(crate::dlq::audit_schema(), b"").unwrap(), None);
        let silence = Action {
            action: ActionKind::Silence,
            silence: Some(SilenceSpec {
                rule: Some("fn_errors".into()),
                system_id: None,
                starts_at: at("2026-03-03T11:00:00Z"),
                ends_at: at("2026-03-03T12:00:00Z"),
            }),
            ..action
        };
        assert_eq!(decode_action(action_schema(), &encode_action(&silence).unwrap()).unwrap(), Some(silence));
    }

    #[test]
    fn a_silence_matches_its_rule_system_and_minutes() {
        let spec = SilenceSpec {
            rule: Some("fn_errors".into()),
            system_id: None,
            starts_at: at("2026-03-03T11:00:00Z"),
            ends_at: at("2026-03-03T12:00:00Z"),
        };
        assert!(spec.silences("fn_errors", "backend", at("2026-03-03T11:00:00Z")));
        assert!(spec.silences("fn_errors", "portal", at("2026-03-03T11:59:00Z")));
        assert!(!spec.silences("fn_errors", "backend", at("2026-03-03T12:00:00Z")), "the end is excluded");
        assert!(!spec.silences("system_red", "backend", at("2026-03-03T11:30:00Z")));
    }

    #[test]
    fn an_unacknowledged_alert_escalates_once_and_repeats() {
        let policy = Policy { escalate_after_s: 3600, repeat_interval_s: 4 * 3600, ..Policy::default() };
        let holding = [condition("k")];
        let mut alert = open("k", "2026-03-03T11:00:00Z");
        assert_eq!(step(&[alert.clone()], &holding, at("2026-03-03T11:59:00Z"), &policy), []);
        assert_eq!(
            step(&[alert.clone()], &holding, at("2026-03-03T12:00:00Z"), &policy),
            [Transition::Escalate { key: "k".into(), summary: "3 errors".into() }]
        );
        alert.escalated = true;
        assert_eq!(step(&[alert.clone()], &holding, at("2026-03-03T12:01:00Z"), &policy), []);
        assert_eq!(
            step(&[alert.clone()], &holding, at("2026-03-03T15:00:00Z"), &policy),
            [Transition::Repeat { key: "k".into(), summary: "3 errors".into() }]
        );
        let acknowledged = Open { acknowledged: true, escalated: false, ..alert };
        assert_eq!(step(&[acknowledged], &holding, at("2026-03-03T15:00:00Z"), &policy), [], "acknowledged: quiet");
    }
}
