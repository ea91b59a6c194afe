//! What a service's `/healthz` reports: `ok`, or `degraded` with the reason of each consumer that
//! is paused because a dependency it needs is unreachable.
//!
//! One registry per process (like the metrics recorder): consumers report state *changes* here,
//! the operations server reads it.

use std::{
    collections::BTreeMap,
    sync::{Mutex, OnceLock},
};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// Why a consumer is paused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outage {
    /// `postgres`, `redis`, `registry` or `kafka`.
    pub dependency: String,
    /// The last error seen, without credentials (the dependency's own message).
    pub reason: String,
    pub since: DateTime<Utc>,
}

/// A process's health as `/healthz` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `ok` or `degraded`.
    pub status: &'static str,
    /// Paused consumers by name.
    pub paused: BTreeMap<String, Outage>,
}

fn outages() -> &'static Mutex<BTreeMap<String, Outage>> {
    static OUTAGES: OnceLock<Mutex<BTreeMap<String, Outage>>> = OnceLock::new();
    OUTAGES.get_or_init(Mutex::default)
}

/// Records that `consumer` is paused on `dependency`. Returns `true` when this is a change (the
/// caller logs state changes, not attempts).
pub fn paused(consumer: &str, dependency: &str, reason: &str) -> bool {
    let mut outages = outages().lock().unwrap_or_else(|p| p.into_inner());
    let changed = outages.get(consumer).is_none_or(|o| o.dependency != dependency);
    let since = outages.get(consumer).filter(|_| !changed).map_or_else(Utc::now, |o| o.since);
    outages.insert(consumer.to_owned(), Outage { dependency: dependency.to_owned(), reason: reason.to_owned(), since });
    metrics::gauge!("ct_consumer_paused", "consumer" => consumer.to_owned()).set(1.0);
    changed
}

/// Records that `consumer` runs again; returns the outage it recovered from, if any.
pub fn resumed(consumer: &str) -> Option<Outage> {
    let outage = outages().lock().unwrap_or_else(|p| p.into_inner()).remove(consumer);
    if outage.is_some() {
        metrics::gauge!("ct_consumer_paused", "consumer" => consumer.to_owned()).set(0.0);
    }
    outage
}

/// The current report.
pub fn report() -> Report {
    let paused = outages().lock().unwrap_or_else(|p| p.into_inner()).clone();
    Report { status: if paused.is_empty() { "ok" } else { "degraded" }, paused }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pause_is_reported_once_per_change_and_cleared_on_resume() {
        let name = "health-test-consumer";
        assert!(paused(name, "postgres", "connection refused"));
        assert!(!paused(name, "postgres", "connection refused again"), "same dependency: no change");
        let report = report();
        assert_eq!(report.status, "degraded");
        assert_eq!(report.paused[name].reason, "connection refused again");
        assert!(paused(name, "redis", "timed out"), "another dependency is a change");
        assert_eq!(resumed(name).map(|o| o.dependency), Some("redis".to_owned()));
        assert!(resumed(name).is_none());
        assert!(!super::report().paused.contains_key(name));
    }
}
