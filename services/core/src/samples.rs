//! One valid JSON body per event type, with every optional field that type has: shared by the
//! schema round-trip tests and the codec benchmark so both exercise the whole taxonomy.

use serde_json::{Value, json};

use crate::EventType;

/// A valid body of type `t` (id `evt_<type>`), as a producer would send it.
pub fn sample(t: EventType) -> Value {
    let (source, payload) = match t {
        EventType::DesktopTriggerContract => ("desktop", json!({"contractorId":"C123","contractId":"K456"})),
        EventType::ExcelTimesheetIngested => {
            ("backend", json!({"contractorId":"C123","period":"2025-W36","items":[{},{}],"totalHours":37.5}))
        }
        EventType::FinanceInvoiceGenerated => (
            "finance",
            json!({"invoiceId":"INV-1","period":"2025-09","total":1234.56,"vat":246.91,"documentRef":"gs://d/1.pdf"}),
        ),
        EventType::FinancePaymentWebhook => (
            "finance",
            json!({"invoiceId":"INV-1","statusFrom":"pending","statusTo":"paid","amount":{"amount_minor":100,"currency":"EUR"}}),
        ),
        EventType::BackendFnError => {
            ("backend", json!({"fnName":"timesheetParse","severity":"high","stackRef":"gs://l/1.txt","message":"boom"}))
        }
        EventType::PortalUploadReceived => (
            "portal",
            json!({"contractorId":"C123","fileRef":"gs://u/1.pdf","contentType":"application/pdf","sizeBytes":1024}),
        ),
        EventType::WebsiteFormSubmitted => ("website", json!({"formId":"lead-123","captchaScore":0.91})),
        EventType::CiWorkflowFailed => {
            ("github", json!({"repo":"swan-portal","runId":1234567,"job":"build","url":"https://ci/1","branch":"main"}))
        }
        EventType::BackendParsed => ("backend", json!({"inputRef":"gs://i/1.xlsx","parser":"excel","recordCount":42})),
        EventType::BackendTransformApplied => {
            ("backend", json!({"transform":"normalise","inputRef":"gs://i/1","outputRef":"gs://o/1","recordCount":41}))
        }
        EventType::ArtifactPointerWritten => (
            "backend",
            json!({"artifactId":"a1","uri":"gs://a/1","contentType":"text/csv","sizeBytes":10,"sha256":"ab"}),
        ),
        EventType::RunStarted => (
            "desktop",
            json!({"runId":"run_1","trigger":"desktop.trigger.contract","initiator":"svc-desktop","inputs":{"contractId":"K456"}}),
        ),
        EventType::RunCompleted => (
            "desktop",
            json!({"runId":"run_1","status":"success","durationMs":1200,"metrics":{"documentsGenerated":3}}),
        ),
        EventType::SystemHeartbeat => ("portal", json!({"systemId":"portal","version":"1.2.3","uptimeS":3600})),
    };
    json!({"eventId": format!("evt_{}", t.as_str()), "type": t.as_str(), "ts": "2025-09-27T10:00:00.123456Z",
           "source": source, "correlationId": "run_1", "payload": payload})
}
