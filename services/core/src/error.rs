//! Validation errors that name the field and the rule, so an HTTP 422 can say exactly what is wrong.

use std::fmt;

/// The rule a value broke. Stable strings: clients may match on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    Required,
    Type,
    NotEmpty,
    MaxLength,
    Format,
    UnknownValue,
    Range,
    SourceMismatch,
    FutureTimestamp,
    /// The same field under both spellings (`totalHours` and `total_hours`) with different values.
    ConflictingSpellings,
    /// Text the read models cannot store: Postgres `text` and `jsonb` hold no U+0000.
    NoNulCharacter,
}

impl Rule {
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Required => "required",
            Rule::Type => "type",
            Rule::NotEmpty => "not_empty",
            Rule::MaxLength => "max_length",
            Rule::Format => "format",
            Rule::UnknownValue => "unknown_value",
            Rule::Range => "range",
            Rule::SourceMismatch => "source_mismatch",
            Rule::FutureTimestamp => "future_timestamp",
            Rule::ConflictingSpellings => "conflicting_spellings",
            Rule::NoNulCharacter => "no_nul_character",
        }
    }
}

/// One invalid field: its JSON path (`eventId`, `payload.invoice_id`: payload fields are named in
/// snake_case whichever spelling was sent), the rule and a human message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub rule: Rule,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, rule: Rule, message: impl Into<String>) -> Self {
        Self { field: field.into(), rule, message: message.into() }
    }

    pub(crate) fn required(field: &str) -> Self {
        Self::new(field, Rule::Required, format!("`{field}` is required"))
    }

    pub(crate) fn conflicting_spellings(field: &str, one: &str, other: &str) -> Self {
        Self::new(
            field,
            Rule::ConflictingSpellings,
            format!("`{one}` and `{other}` are both given, with different values; send one spelling"),
        )
    }

    pub(crate) fn nul_character(field: &str) -> Self {
        Self::new(field, Rule::NoNulCharacter, format!("`{field}` contains U+0000, which cannot be stored"))
    }

    pub(crate) fn wrong_type(field: &str, expected: &str) -> Self {
        Self::new(field, Rule::Type, format!("`{field}` must be {expected}"))
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
