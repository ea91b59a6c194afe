//! The event taxonomy v1 (work order §5, deep dive §2.1, plus runs, artifacts and heartbeats).

use std::{fmt, str::FromStr};

use crate::source::Source;

/// One event type. The declaration order is the branch order of the payload union in
/// `ct.v1.Event`; new types go at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EventType {
    DesktopTriggerContract,
    ExcelTimesheetIngested,
    FinanceInvoiceGenerated,
    FinancePaymentWebhook,
    BackendFnError,
    PortalUploadReceived,
    WebsiteFormSubmitted,
    CiWorkflowFailed,
    BackendParsed,
    BackendTransformApplied,
    ArtifactPointerWritten,
    RunStarted,
    RunCompleted,
    SystemHeartbeat,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::DesktopTriggerContract,
        EventType::ExcelTimesheetIngested,
        EventType::FinanceInvoiceGenerated,
        EventType::FinancePaymentWebhook,
        EventType::BackendFnError,
        EventType::PortalUploadReceived,
        EventType::WebsiteFormSubmitted,
        EventType::CiWorkflowFailed,
        EventType::BackendParsed,
        EventType::BackendTransformApplied,
        EventType::ArtifactPointerWritten,
        EventType::RunStarted,
        EventType::RunCompleted,
        EventType::SystemHeartbeat,
    ];

    /// The dotted name producers send in `type`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::DesktopTriggerContract => "desktop.trigger.contract",
            EventType::ExcelTimesheetIngested => "excel.timesheet.ingested",
            EventType::FinanceInvoiceGenerated => "finance.invoice.generated",
            EventType::FinancePaymentWebhook => "finance.payment.webhook",
            EventType::BackendFnError => "backend.fn.error",
            EventType::PortalUploadReceived => "portal.upload.received",
            EventType::WebsiteFormSubmitted => "website.form.submitted",
            EventType::CiWorkflowFailed => "ci.workflow.failed",
            EventType::BackendParsed => "backend.parsed",
            EventType::BackendTransformApplied => "backend.transform.applied",
            EventType::ArtifactPointerWritten => "artifact.pointer.written",
            EventType::RunStarted => "ct.run.started",
            EventType::RunCompleted => "ct.run.completed",
            EventType::SystemHeartbeat => "system.heartbeat",
        }
    }

    /// The Avro record (in `schemas-avro/`) that carries this type's payload.
    pub fn avro_record(self) -> &'static str {
        match self {
            EventType::DesktopTriggerContract => "ct.v1.DesktopTriggerContract",
            EventType::ExcelTimesheetIngested => "ct.v1.ExcelTimesheetIngested",
            EventType::FinanceInvoiceGenerated => "ct.v1.FinanceInvoiceGenerated",
            EventType::FinancePaymentWebhook => "ct.v1.FinancePaymentWebhook",
            EventType::BackendFnError => "ct.v1.BackendFnError",
            EventType::PortalUploadReceived => "ct.v1.PortalUploadReceived",
            EventType::WebsiteFormSubmitted => "ct.v1.WebsiteFormSubmitted",
            EventType::CiWorkflowFailed => "ct.v1.CiWorkflowFailed",
            EventType::BackendParsed => "ct.v1.BackendParsed",
            EventType::BackendTransformApplied => "ct.v1.BackendTransformApplied",
            EventType::ArtifactPointerWritten => "ct.v1.ArtifactPointerWritten",
            EventType::RunStarted => "ct.v1.RunStarted",
            EventType::RunCompleted => "ct.v1.RunCompleted",
            EventType::SystemHeartbeat => "ct.v1.SystemHeartbeat",
        }
    }

    /// Which sources may emit this type (deep dive §2.1). `None` means any producer.
    pub fn allowed_sources(self) -> Option<&'static [Source]> {
        match self {
            EventType::DesktopTriggerContract => Some(&[Source::Desktop]),
            EventType::ExcelTimesheetIngested
            | EventType::BackendFnError
            | EventType::BackendParsed
            | EventType::BackendTransformApplied => Some(&[Source::Backend]),
            EventType::FinanceInvoiceGenerated | EventType::FinancePaymentWebhook => Some(&[Source::Finance]),
            EventType::PortalUploadReceived => Some(&[Source::Portal]),
            EventType::WebsiteFormSubmitted => Some(&[Source::Website]),
            EventType::CiWorkflowFailed => Some(&[Source::Github]),
            EventType::ArtifactPointerWritten
            | EventType::RunStarted
            | EventType::RunCompleted
            | EventType::SystemHeartbeat => None,
        }
    }

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
