//! What `ct-load` and the edge benchmark send: the same realistic mix of signed events.

pub mod workload {
    //! Six sources, one event type each, payloads of varying size; some carry PII to redact.

    use rand::{Rng, rngs::StdRng};
    use serde_json::{Value, json};

    /// `(source, event type)`; the producer token of a source is `dev-token-<source>`.
    pub const SOURCES: [(&str, &str); 6] = [
        ("finance", "finance.invoice.generated"),
        ("portal", "portal.upload.received"),
        ("backend", "backend.fn.error"),
        ("website", "website.form.submitted"),
        ("github", "ci.workflow.failed"),
        ("desktop", "desktop.trigger.contract"),
    ];

    /// The payload of the `n`-th event of `event_type`.
    pub fn payload(event_type: &str, n: u64, rng: &mut StdRng) -> Value {
        match event_type {
            "finance.invoice.generated" => {
                json!({"invoiceId": format!("INV-{n}"), "period": "2025-09", "total": rng.random_range(100..900_000) as f64 / 100.0})
            }
            "portal.upload.received" => {
                json!({"contractorId": format!("C{}", n % 500), "fileRef": format!("gs://u/{n}.pdf"),
                                               "sizeBytes": rng.random_range(1_000..4_000_000)})
            }
            "backend.fn.error" => {
                json!({"fnName": "timesheetParse", "severity": "high", "stackRef": format!("gs://l/{n}.txt"),
                                         "message": "failed for someone@example.com"})
            }
            "website.form.submitted" => json!({"formId": format!("lead-{n}"), "captchaScore": 0.9, "email": "x@y.io",
                                               "notes": "x".repeat(rng.random_range(0..2_000))}),
            "ci.workflow.failed" => json!({"repo": "swan-portal", "runId": n, "job": "build", "url": "https://ci/1"}),
            _ => json!({"contractorId": format!("C{}", n % 500), "contractId": format!("K{n}")}),
        }
    }

    /// The `n`-th event of the mix as `(producer token, JSON body)`, with `event_id` as its id.
    pub fn event_body(event_id: &str, n: u64, rng: &mut StdRng) -> (String, String) {
        let (source, event_type) = SOURCES[(n % SOURCES.len() as u64) as usize];
        let body = json!({"eventId": event_id, "type": event_type, "ts": chrono::Utc::now().to_rfc3339(),
                          "source": source, "payload": payload(event_type, n, rng)});
        (format!("dev-token-{source}"), body.to_string())
    }
}
