//! One typed payload per event type, parsed from producer JSON (camelCase or snake_case keys).
//!
//! Parsing keeps only the fields of the type's schema ("IDs only, pointers not bytes"); keys that
//! name PII or bulk content are dropped and counted, and every kept string is scrubbed by the
//! [`Redactor`]. Struct field order is the Avro field order of the matching `schemas-avro/` record.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::{
    error::{FieldError, Rule},
    event_type::EventType,
    money::{DEFAULT_CURRENCY, parse_currency, parse_money},
    redact::{PiiKind, RedactionReport, Redactor, is_content_key, is_pii_key},
};

/// Longest string accepted in any payload field.
pub const MAX_STRING_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DesktopTriggerContract {
    pub contractor_id: String,
    pub contract_id: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExcelTimesheetIngested {
    pub contractor_id: String,
    pub period: String,
    pub item_count: i32,
    pub total_hours_centi: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinanceInvoiceGenerated {
    pub invoice_id: String,
    pub period: String,
    pub total_minor: i64,
    pub vat_minor: Option<i64>,
    pub currency: String,
    pub document_ref: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinancePaymentWebhook {
    pub invoice_id: String,
    pub status_from: String,
    pub status_to: String,
    pub amount_minor: Option<i64>,
    pub currency: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendFnError {
    pub fn_name: String,
    pub severity: Severity,
    pub stack_ref: Option<String>,
    pub message: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortalUploadReceived {
    pub contractor_id: String,
    pub file_ref: String,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebsiteFormSubmitted {
    pub form_id: String,
    pub captcha_score: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CiWorkflowFailed {
    pub repo: String,
    pub run_id: i64,
    pub job: String,
    pub url: String,
    pub branch: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendParsed {
    pub input_ref: String,
    pub parser: String,
    pub record_count: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackendTransformApplied {
    pub transform: String,
    pub input_ref: String,
    pub output_ref: String,
    pub record_count: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ArtifactPointerWritten {
    pub artifact_id: String,
    pub uri: String,
    pub content_type: Option<String>,
    pub size_bytes: Option<i64>,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunStarted {
    pub run_id: String,
    pub trigger: String,
    pub initiator: String,
    pub inputs: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Success,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunCompleted {
    pub run_id: String,
    pub status: RunStatus,
    pub duration_ms: Option<i64>,
    pub metrics: BTreeMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SystemHeartbeat {
    pub system_id: String,
    pub version: Option<String>,
    pub uptime_s: Option<i64>,
}

/// The payload union. Variant order is the branch order of `ct.v1.Event.payload` and of
/// [`EventType::ALL`]; `tests/avro_roundtrip.rs` checks both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Payload {
    DesktopTriggerContract(DesktopTriggerContract),
    ExcelTimesheetIngested(ExcelTimesheetIngested),
    FinanceInvoiceGenerated(FinanceInvoiceGenerated),
    FinancePaymentWebhook(FinancePaymentWebhook),
    BackendFnError(BackendFnError),
    PortalUploadReceived(PortalUploadReceived),
    WebsiteFormSubmitted(WebsiteFormSubmitted),
    CiWorkflowFailed(CiWorkflowFailed),
    BackendParsed(BackendParsed),
    BackendTransformApplied(BackendTransformApplied),
    ArtifactPointerWritten(ArtifactPointerWritten),
    RunStarted(RunStarted),
    RunCompleted(RunCompleted),
    SystemHeartbeat(SystemHeartbeat),
}

impl Payload {
    pub fn event_type(&self) -> EventType {
        match self {
            Payload::DesktopTriggerContract(_) => EventType::DesktopTriggerContract,
            Payload::ExcelTimesheetIngested(_) => EventType::ExcelTimesheetIngested,
            Payload::FinanceInvoiceGenerated(_) => EventType::FinanceInvoiceGenerated,
            Payload::FinancePaymentWebhook(_) => EventType::FinancePaymentWebhook,
            Payload::BackendFnError(_) => EventType::BackendFnError,
            Payload::PortalUploadReceived(_) => EventType::PortalUploadReceived,
            Payload::WebsiteFormSubmitted(_) => EventType::WebsiteFormSubmitted,
            Payload::CiWorkflowFailed(_) => EventType::CiWorkflowFailed,
            Payload::BackendParsed(_) => EventType::BackendParsed,
            Payload::BackendTransformApplied(_) => EventType::BackendTransformApplied,
            Payload::ArtifactPointerWritten(_) => EventType::ArtifactPointerWritten,
            Payload::RunStarted(_) => EventType::RunStarted,
            Payload::RunCompleted(_) => EventType::RunCompleted,
            Payload::SystemHeartbeat(_) => EventType::SystemHeartbeat,
        }
    }

    /// Parses the `payload` object of an incoming event of type `event_type`.
    pub fn parse(
        event_type: EventType,
        value: &Value,
        redactor: &Redactor,
        report: &mut RedactionReport,
    ) -> Result<Payload, FieldError> {
        let map = value.as_object().ok_or_else(|| FieldError::wrong_type("payload", "a JSON object"))?;
        let mut f = Fields::new(map, redactor, report);
        let payload = match event_type {
            EventType::DesktopTriggerContract => Payload::DesktopTriggerContract(DesktopTriggerContract {
                contractor_id: f.id("contractor_id")?,
                contract_id: f.id("contract_id")?,
            }),
            EventType::ExcelTimesheetIngested => {
                let item_count = match f.raw("items") {
                    Some(Value::Array(items)) => i32::try_from(items.len()).unwrap_or(i32::MAX),
                    Some(_) => return Err(FieldError::wrong_type("payload.items", "an array")),
                    None => f.opt_non_negative("item_count")?.map_or(0, |n| i32::try_from(n).unwrap_or(i32::MAX)),
                };
                Payload::ExcelTimesheetIngested(ExcelTimesheetIngested {
                    contractor_id: f.id("contractor_id")?,
                    period: f.text("period")?,
                    item_count,
                    total_hours_centi: f.opt_centi("total_hours")?,
                })
            }
            EventType::FinanceInvoiceGenerated => {
                let currency = f.currency()?.unwrap_or_else(|| DEFAULT_CURRENCY.to_owned());
                let total = f.money("total", &currency)?.ok_or_else(|| FieldError::required("payload.total"))?;
                let vat = f.money("vat", &currency)?;
                for other in vat.iter().map(|m| &m.currency) {
                    if *other != total.currency {
                        return Err(FieldError::new(
                            "payload.vat.currency",
                            Rule::UnknownValue,
                            "`payload.vat` must be in the currency of `payload.total`",
                        ));
                    }
                }
                Payload::FinanceInvoiceGenerated(FinanceInvoiceGenerated {
                    invoice_id: f.id("invoice_id")?,
                    period: f.text("period")?,
                    total_minor: total.amount_minor,
                    vat_minor: vat.map(|m| m.amount_minor),
                    currency: total.currency,
                    document_ref: f.opt_text("document_ref")?,
                })
            }
            EventType::FinancePaymentWebhook => {
                let currency = f.currency()?;
                let amount = f.money("amount", currency.as_deref().unwrap_or(DEFAULT_CURRENCY))?;
                Payload::FinancePaymentWebhook(FinancePaymentWebhook {
                    invoice_id: f.id("invoice_id")?,
                    status_from: f.text("status_from")?,
                    status_to: f.text("status_to")?,
                    currency: amount.as_ref().map(|m| m.currency.clone()).or(currency),
                    amount_minor: amount.map(|m| m.amount_minor),
                })
            }
            EventType::BackendFnError => Payload::BackendFnError(BackendFnError {
                fn_name: f.id("fn_name")?,
                severity: f.symbol(
                    "severity",
                    &[
                        ("low", Severity::Low),
                        ("medium", Severity::Medium),
                        ("high", Severity::High),
                        ("critical", Severity::Critical),
                    ],
                )?,
                stack_ref: f.opt_text("stack_ref")?,
                message: f.opt_text("message")?,
            }),
            EventType::PortalUploadReceived => Payload::PortalUploadReceived(PortalUploadReceived {
                contractor_id: f.id("contractor_id")?,
                file_ref: f.text("file_ref")?,
                content_type: f.opt_text("content_type")?,
                size_bytes: f.opt_non_negative("size_bytes")?,
            }),
            EventType::WebsiteFormSubmitted => Payload::WebsiteFormSubmitted(WebsiteFormSubmitted {
                form_id: f.id("form_id")?,
                captcha_score: f.opt_unit_interval("captcha_score")?,
            }),
            EventType::CiWorkflowFailed => Payload::CiWorkflowFailed(CiWorkflowFailed {
                repo: f.id("repo")?,
                run_id: f.int("run_id")?,
                job: f.text("job")?,
                url: f.text("url")?,
                branch: f.opt_text("branch")?,
            }),
            EventType::BackendParsed => Payload::BackendParsed(BackendParsed {
                input_ref: f.text("input_ref")?,
                parser: f.id("parser")?,
                record_count: f.non_negative("record_count")?,
            }),
            EventType::BackendTransformApplied => Payload::BackendTransformApplied(BackendTransformApplied {
                transform: f.id("transform")?,
                input_ref: f.text("input_ref")?,
                output_ref: f.text("output_ref")?,
                record_count: f.opt_non_negative("record_count")?,
            }),
            EventType::ArtifactPointerWritten => Payload::ArtifactPointerWritten(ArtifactPointerWritten {
                artifact_id: f.id("artifact_id")?,
                uri: f.text("uri")?,
                content_type: f.opt_text("content_type")?,
                size_bytes: f.opt_non_negative("size_bytes")?,
                sha256: f.opt_text("sha256")?,
            }),
            EventType::RunStarted => Payload::RunStarted(RunStarted {
                run_id: f.id("run_id")?,
                trigger: f.id("trigger")?,
                initiator: f.text("initiator")?,
                inputs: f.string_map("inputs")?,
            }),
            EventType::RunCompleted => Payload::RunCompleted(RunCompleted {
                run_id: f.id("run_id")?,
                status: f.symbol(
                    "status",
                    &[
                        ("success", RunStatus::Success),
                        ("failed", RunStatus::Failed),
                        ("cancelled", RunStatus::Cancelled),
                    ],
                )?,
                duration_ms: f.opt_non_negative("duration_ms")?,
                metrics: f.int_map("metrics")?,
            }),
            EventType::SystemHeartbeat => Payload::SystemHeartbeat(SystemHeartbeat {
                system_id: f.id("system_id")?,
                version: f.opt_text("version")?,
                uptime_s: f.opt_non_negative("uptime_s")?,
            }),
        };
        f.finish()?;
        Ok(payload)
    }
}

/// [`camel_case`] of a schema field name, computed once per name: field names are a small fixed
/// set, and every payload field of every event looks its spelling up here.
fn camel_spelling(snake: &'static str) -> &'static str {
    // Only `&'static str` names (the schema's) come here, so the table cannot grow with input.
    static SPELLINGS: std::sync::RwLock<Vec<(&'static str, &'static str)>> = std::sync::RwLock::new(Vec::new());
    let known = |all: &[(&'static str, &'static str)]| all.iter().find(|(s, _)| *s == snake).map(|(_, c)| *c);
    if let Some(camel) = known(&SPELLINGS.read().unwrap_or_else(|p| p.into_inner())) {
        return camel;
    }
    let mut all = SPELLINGS.write().unwrap_or_else(|p| p.into_inner());
    known(&all).unwrap_or_else(|| {
        let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
        let pair = (snake, leak(camel_case(snake)));
        all.push(pair);
        pair.1
    })
}

/// `fn_name` → `fnName`: the camelCase spelling producers may use for a snake_case key.
pub fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads typed fields from a payload object, remembering which keys were used so the rest can be
/// dropped (and PII-named ones counted).
struct Fields<'a> {
    map: &'a Map<String, Value>,
    used: HashSet<&'a str>,
    redactor: &'a Redactor,
    report: &'a mut RedactionReport,
    /// The first field given under both spellings with different values (refused in `finish`).
    conflict: Option<FieldError>,
}

impl<'a> Fields<'a> {
    fn new(map: &'a Map<String, Value>, redactor: &'a Redactor, report: &'a mut RedactionReport) -> Self {
        Self { map, used: HashSet::new(), redactor, report, conflict: None }
    }

    fn path(name: &str) -> String {
        format!("payload.{name}")
    }

    /// The value under the snake_case name or its camelCase spelling.
    /// Both spellings with different values are a contradiction (refused in `finish`), so a
    /// `null` under one never hides a value under the other.
    fn raw(&mut self, name: &'static str) -> Option<&'a Value> {
        let camel = camel_spelling(name);
        let snake_entry = self.map.get_key_value(name);
        let camel_entry = if camel == name { None } else { self.map.get_key_value(camel) };
        for (key, _) in snake_entry.iter().chain(&camel_entry) {
            self.used.insert(key.as_str());
        }
        let value = match (snake_entry, camel_entry) {
            (Some((_, a)), Some((_, b))) if a != b => {
                if self.conflict.is_none() {
                    self.conflict = Some(FieldError::conflicting_spellings(
                        &Self::path(name),
                        &Self::path(name),
                        &Self::path(camel),
                    ));
                }
                a
            }
            (a, b) => a.or(b)?.1,
        };
        if value.is_null() { None } else { Some(value) }
    }

    /// Text as the read models will store it: no U+0000 (refused, naming the field), PII scrubbed.
    fn storable(&mut self, path: impl FnOnce() -> String, text: &str) -> Result<String, FieldError> {
        if text.contains('\0') {
            return Err(FieldError::nul_character(&path()));
        }
        Ok(self.redactor.scrub(text, self.report).into_owned())
    }

    fn opt_string(&mut self, name: &'static str) -> Result<Option<String>, FieldError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::String(s)) => {
                if s.chars().count() > MAX_STRING_LEN {
                    return Err(FieldError::new(
                        Self::path(name),
                        Rule::MaxLength,
                        format!("`payload.{name}` is longer than {MAX_STRING_LEN} characters"),
                    ));
                }
                self.storable(|| Self::path(name), s).map(Some)
            }
            Some(_) => Err(FieldError::wrong_type(&Self::path(name), "a string")),
        }
    }

    fn opt_text(&mut self, name: &'static str) -> Result<Option<String>, FieldError> {
        self.opt_string(name)
    }

    fn text(&mut self, name: &'static str) -> Result<String, FieldError> {
        let value = self.opt_string(name)?.ok_or_else(|| FieldError::required(&Self::path(name)))?;
        if value.trim().is_empty() {
            return Err(FieldError::new(
                Self::path(name),
                Rule::NotEmpty,
                format!("`payload.{name}` must not be empty"),
            ));
        }
        Ok(value)
    }

    /// An identifier: a non-empty string; numbers are accepted and kept as their decimal text.
    fn id(&mut self, name: &'static str) -> Result<String, FieldError> {
        if let Some(Value::Number(n)) = self.raw(name) {
            return Ok(n.to_string());
        }
        self.text(name)
    }

    fn opt_int(&mut self, name: &'static str) -> Result<Option<i64>, FieldError> {
        match self.raw(name) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| FieldError::wrong_type(&Self::path(name), "an integer")),
        }
    }

    fn int(&mut self, name: &'static str) -> Result<i64, FieldError> {
        self.opt_int(name)?.ok_or_else(|| FieldError::required(&Self::path(name)))
    }

    fn opt_non_negative(&mut self, name: &'static str) -> Result<Option<i64>, FieldError> {
        match self.opt_int(name)? {
            Some(n) if n < 0 => {
                Err(FieldError::new(Self::path(name), Rule::Range, format!("`payload.{name}` must be >= 0")))
            }
            other => Ok(other),
        }
    }

    fn non_negative(&mut self, name: &'static str) -> Result<i64, FieldError> {
        self.opt_non_negative(name)?.ok_or_else(|| FieldError::required(&Self::path(name)))
    }

    /// A decimal number kept as hundredths (37.5 -> 3750), exactly.
    fn opt_centi(&mut self, name: &'static str) -> Result<Option<i64>, FieldError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => {
                crate::money::parse_major_units(&Self::path(name), &n.to_string(), "GBP").map(Some)
            }
            Some(_) => Err(FieldError::wrong_type(&Self::path(name), "a number")),
        }
    }

    fn opt_unit_interval(&mut self, name: &'static str) -> Result<Option<f64>, FieldError> {
        match self.raw(name) {
            None => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if (0.0..=1.0).contains(&x) => Ok(Some(x)),
                _ => Err(FieldError::new(
                    Self::path(name),
                    Rule::Range,
                    format!("`payload.{name}` must be between 0 and 1"),
                )),
            },
            Some(_) => Err(FieldError::wrong_type(&Self::path(name), "a number")),
        }
    }

    fn symbol<T: Copy>(&mut self, name: &'static str, symbols: &[(&str, T)]) -> Result<T, FieldError> {
        let raw = self.text(name)?;
        symbols.iter().find(|(s, _)| s.eq_ignore_ascii_case(&raw)).map(|(_, v)| *v).ok_or_else(|| {
            let allowed: Vec<_> = symbols.iter().map(|(s, _)| *s).collect();
            FieldError::new(
                Self::path(name),
                Rule::UnknownValue,
                format!("`payload.{name}` must be one of {}", allowed.join(", ")),
            )
        })
    }

    fn currency(&mut self) -> Result<Option<String>, FieldError> {
        self.opt_string("currency")?.map(|c| parse_currency("payload.currency", &c)).transpose()
    }

    fn money(&mut self, name: &'static str, currency: &str) -> Result<Option<crate::money::Money>, FieldError> {
        self.raw(name).map(|v| parse_money(&Self::path(name), v, currency)).transpose()
    }

    fn string_map(&mut self, name: &'static str) -> Result<BTreeMap<String, String>, FieldError> {
        let Some(value) = self.raw(name) else { return Ok(BTreeMap::new()) };
        let map = value.as_object().ok_or_else(|| FieldError::wrong_type(&Self::path(name), "an object"))?;
        let mut out = BTreeMap::new();
        for (key, value) in map {
            if is_pii_key(key) || is_content_key(key) {
                self.report.add(if is_pii_key(key) { PiiKind::PiiField } else { PiiKind::Content });
                continue;
            }
            let path = || format!("payload.{name}.{key}");
            // Keys are text the read models store too: scrubbed like values.
            let stored_key = self.storable(path, key)?;
            let text = match value {
                Value::String(s) => self.storable(path, s)?,
                Value::Null => continue,
                other => other.to_string(),
            };
            out.insert(stored_key, text);
        }
        Ok(out)
    }

    fn int_map(&mut self, name: &'static str) -> Result<BTreeMap<String, i64>, FieldError> {
        let Some(value) = self.raw(name) else { return Ok(BTreeMap::new()) };
        let map = value.as_object().ok_or_else(|| FieldError::wrong_type(&Self::path(name), "an object"))?;
        let mut out = BTreeMap::new();
        for (key, value) in map {
            let path = || format!("payload.{name}.{key}");
            let n = value.as_i64().ok_or_else(|| FieldError::wrong_type(&path(), "an integer"))?;
            out.insert(self.storable(path, key)?, n);
        }
        Ok(out)
    }

    /// Counts the keys that were dropped because they name PII or bulk content. Other unknown
    /// keys are dropped silently: the schema is the allow-list. Refuses a field given under both
    /// spellings with different values.
    fn finish(self) -> Result<(), FieldError> {
        if let Some(conflict) = self.conflict {
            return Err(conflict);
        }
        for key in self.map.keys() {
            if self.used.contains(key.as_str()) {
                continue;
            }
            if is_pii_key(key) {
                self.report.add(PiiKind::PiiField);
            } else if is_content_key(key) {
                self.report.add(PiiKind::Content);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(t: EventType, v: Value) -> (Result<Payload, FieldError>, RedactionReport) {
        let mut report = RedactionReport::default();
        (Payload::parse(t, &v, &Redactor::new("s"), &mut report), report)
    }

    #[test]
    fn the_seed_invoice_parses_to_minor_units() {
        let (p, _) = parse(
            EventType::FinanceInvoiceGenerated,
            json!({"invoiceId":"INV-2025-0912","period":"2025-09","total":1234.56,"vat":246.91}),
        );
        assert_eq!(
            p.unwrap(),
            Payload::FinanceInvoiceGenerated(FinanceInvoiceGenerated {
                invoice_id: "INV-2025-0912".into(),
                period: "2025-09".into(),
                total_minor: 123456,
                vat_minor: Some(24691),
                currency: "GBP".into(),
                document_ref: None,
            })
        );
    }

    #[test]
    fn errors_name_the_payload_field() {
        let cases = [
            (EventType::DesktopTriggerContract, json!({"contractorId":"C1"}), "payload.contract_id", Rule::Required),
            (
                EventType::CiWorkflowFailed,
                json!({"repo":"r","runId":"x","job":"j","url":"u"}),
                "payload.run_id",
                Rule::Type,
            ),
            (EventType::BackendFnError, json!({"fnName":"f","severity":"meh"}), "payload.severity", Rule::UnknownValue),
            (
                EventType::WebsiteFormSubmitted,
                json!({"formId":"f","captchaScore":3}),
                "payload.captcha_score",
                Rule::Range,
            ),
            (
                EventType::PortalUploadReceived,
                json!({"contractorId":"C1","fileRef":"  "}),
                "payload.file_ref",
                Rule::NotEmpty,
            ),
            (EventType::SystemHeartbeat, json!([1]), "payload", Rule::Type),
        ];
        for (t, v, field, rule) in cases {
            let err = parse(t, v).0.unwrap_err();
            assert_eq!((err.field.as_str(), err.rule), (field, rule), "{t}");
        }
    }

    #[test]
    fn pii_keys_and_content_are_dropped_and_counted() {
        let (p, report) = parse(
            EventType::BackendFnError,
            json!({"fnName":"timesheetParse","severity":"high","stackRef":"gs://logs/1.txt",
                   "stack":"at foo (bar.js:1)","email":"x@y.com","message":"failed for bob@corp.com"}),
        );
        let Payload::BackendFnError(e) = p.unwrap() else { panic!("wrong variant") };
        assert!(e.message.unwrap().starts_with("failed for [redacted:email:"));
        assert_eq!(report.counts.get(&PiiKind::Email), Some(&1));
        assert_eq!(report.counts.get(&PiiKind::PiiField), Some(&1));
        assert_eq!(report.counts.get(&PiiKind::Content), Some(&1));
    }

    #[test]
    fn timesheet_items_become_a_count() {
        let (p, _) = parse(
            EventType::ExcelTimesheetIngested,
            json!({"contractorId":"C123","period":"2025-W36","items":[{"name":"Bob"},{}],"totalHours":37.5}),
        );
        let Payload::ExcelTimesheetIngested(t) = p.unwrap() else { panic!("wrong variant") };
        assert_eq!((t.item_count, t.total_hours_centi), (2, Some(3750)));
    }
}
