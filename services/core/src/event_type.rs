//! The event taxonomy v1 (work order §5, deep dive §2.1, plus runs, artifacts and heartbeats).
//!
//! The enum and its tables are generated from `schemas-avro/` by `build.rs`: a type's name is
//! its record's `doc` prefix, its sources the record's `ct.sources`.

use std::{fmt, str::FromStr};

use crate::source::Source;

include!(concat!(env!("OUT_DIR"), "/event_type.rs"));

impl EventType {
    pub fn accepts_source(self, source: Source) -> bool {
        self.allowed_sources().is_none_or(|allowed| allowed.contains(&source))
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event type `{0}`")]
pub struct UnknownEventType(pub String);

impl FromStr for EventType {
    type Err = UnknownEventType;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s).ok_or_else(|| UnknownEventType(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_unique() {
        let mut names: Vec<_> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        for t in EventType::ALL {
            assert_eq!(t.as_str().parse::<EventType>(), Ok(t));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventType::ALL.len());
    }

    #[test]
    fn source_binding_follows_the_taxonomy() {
        assert!(EventType::FinanceInvoiceGenerated.accepts_source(Source::Finance));
        assert!(!EventType::FinanceInvoiceGenerated.accepts_source(Source::Portal));
        assert!(EventType::SystemHeartbeat.accepts_source(Source::Website));
        assert!(!EventType::CiWorkflowFailed.accepts_source(Source::Backend));
    }
}
