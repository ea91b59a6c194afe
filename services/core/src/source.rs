//! The systems that produce events.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// A producing system. The order and names match the symbols of `ct.v1.Source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    Portal,
    Backend,
    Finance,
    Desktop,
    Github,
    Website,
    /// Control Tower itself (runs, audit records).
    ControlTower,
    /// Default symbol for readers older than a new source; never accepted at the edge.
    Unknown,
}

impl Source {
    /// The sources a producer may name, in a stable order.
    pub const PRODUCERS: [Source; 6] =
        [Source::Portal, Source::Backend, Source::Finance, Source::Desktop, Source::Github, Source::Website];

    /// The sources an event may name at the edge: the producers and Control Tower itself (only
    /// with a token bound to `control_tower`).
    pub const SENDERS: [Source; 7] = [
        Source::Portal,
        Source::Backend,
        Source::Finance,
        Source::Desktop,
        Source::Github,
        Source::Website,
        Source::ControlTower,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Portal => "portal",
            Source::Backend => "backend",
            Source::Finance => "finance",
            Source::Desktop => "desktop",
            Source::Github => "github",
            Source::Website => "website",
            Source::ControlTower => "control_tower",
            Source::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown source `{0}`")]
pub struct UnknownSource(pub String);

impl FromStr for Source {
    type Err = UnknownSource;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Source::SENDERS.into_iter().find(|source| source.as_str() == s).ok_or_else(|| UnknownSource(s.to_owned()))
    }
}
