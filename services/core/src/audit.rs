//! The record types of the audit topic (`ct.audit.v1`, TopicRecordNameStrategy), told apart by
//! the writer schema's full name: dead-letter audits, alert actions and DLQ depth reports.

use apache_avro::Schema;

use crate::{alerting, avro::CodecError, dlq};

#[derive(Debug, Clone, PartialEq)]
pub enum AuditRecord {
    Dlq(dlq::Audit),
    Alert(alerting::Action),
    Depth(dlq::Depth),
    /// A record type this build does not know (a newer writer's), named.
    Other(String),
}

pub fn decode(writer: &Schema, datum: &[u8]) -> Result<AuditRecord, CodecError> {
    if let Some(action) = alerting::decode_action(writer, datum)? {
        return Ok(AuditRecord::Alert(action));
    }
    if let Some(depth) = dlq::decode_depth(writer, datum)? {
        return Ok(AuditRecord::Depth(depth));
    }
    if let Some(audit) = dlq::decode_dlq_audit(writer, datum)? {
        return Ok(AuditRecord::Dlq(audit));
    }
    Ok(AuditRecord::Other(crate::avro::record_name(writer).unwrap_or_default()))
}
