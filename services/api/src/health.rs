//! The status rule of `/health` and `/systems` (until the health evaluator owns it): from the age
//! of the last heartbeat and the errors of the last 24 hours.

use chrono::{DateTime, Utc};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
pub struct HealthConfig {
    pub amber_after_s: i64,
    pub red_after_s: i64,
}

pub use ct_core::health::Status;

/// unknown: never sent a heartbeat; red: heartbeat older than `red_after_s`; amber: older than
/// `amber_after_s` or any error in the last 24 h; green otherwise.
pub fn status(now: DateTime<Utc>, heartbeat: Option<DateTime<Utc>>, errors_24h: i64, config: &HealthConfig) -> Status {
    let Some(heartbeat) = heartbeat else { return Status::Unknown };
    let age = (now - heartbeat).num_seconds();
    if age > config.red_after_s {
        Status::Red
    } else if age > config.amber_after_s || errors_24h > 0 {
        Status::Amber
    } else {
        Status::Green
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn status_follows_heartbeat_age_and_errors() {
        let config = HealthConfig { amber_after_s: 300, red_after_s: 900 };
        let now = Utc::now();
        let ago = |s| Some(now - Duration::seconds(s));
        let cases = [
            (None, 0, Status::Unknown),
            (ago(10), 0, Status::Green),
            (ago(10), 2, Status::Amber),
            (ago(400), 0, Status::Amber),
            (ago(1000), 0, Status::Red),
        ];
        for (heartbeat, errors, expected) in cases {
            assert_eq!(status(now, heartbeat, errors, &config), expected, "{heartbeat:?} {errors}");
        }
        assert_eq!(Status::overall([Status::Green, Status::Red, Status::Amber]), Status::Red);
        assert_eq!(Status::overall([Status::Unknown, Status::Green]), Status::Green);
        assert_eq!(Status::overall([Status::Unknown]), Status::Unknown);
        assert_eq!(Status::overall([]), Status::Unknown);
    }
}
