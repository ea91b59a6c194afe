//! `ct send`: events to the edge through the Rust client (`ct-client`), with its signing and
//! retry rules: from flags, from a file (one envelope or an array), or JSON lines from stdin sent
//! in batches. `--dry-run` prints the signed request as a curl command instead of sending it.

use std::io::BufRead;

use ct_client::{Client, Event, InvalidEvent, Prepared, Receipt, SendError};
use serde_json::Value;

/// An envelope as producers write it (`eventId`, `type`, `ts`, `source`, `correlationId`,
/// `payload`), checked against the taxonomy.
pub fn event_of(document: &Value) -> Result<Event, InvalidEvent> {
    let text = |key: &str| document.get(key).and_then(Value::as_str);
    let event_type =
        text("type").ok_or_else(|| InvalidEvent { field: "type".into(), message: "is required".into() })?;
    let mut event =
        Event::new(event_type, document.get("payload").cloned().unwrap_or(Value::Object(Default::default())))?;
    if let Some(id) = text("eventId").or(text("event_id")) {
        event = event.with_id(id);
    }
    if let Some(ts) = text("ts") {
        event = event.with_ts(ts);
    }
    if let Some(source) = text("source") {
        event = event.with_source(source);
    }
    if let Some(id) = text("correlationId").or(text("correlation_id")) {
        event = event.with_correlation_id(id);
    }
    Ok(event)
}

/// Events of a file: one envelope, or an array of them.
pub fn events_of_file(text: &str) -> Result<Vec<Event>, String> {
    let document: Value = serde_json::from_str(text).map_err(|e| format!("the file is not JSON: {e}"))?;
    let documents = match document {
        Value::Array(items) => items,
        one => vec![one],
    };
    documents.iter().enumerate().map(|(i, d)| event_of(d).map_err(|e| format!("event {i}: {e}"))).collect()
}

/// JSON lines (blank lines skipped), each an envelope.
pub fn events_of_lines(reader: impl BufRead) -> Result<Vec<Event>, String> {
    let mut events = Vec::new();
    for (n, line) in reader.lines().enumerate() {
        let line = line.map_err(|e| format!("reading line {}: {e}", n + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let document: Value = serde_json::from_str(&line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        events.push(event_of(&document).map_err(|e| format!("line {}: {e}", n + 1))?);
    }
    Ok(events)
}

/// The request as a curl command; the token stays in `$CT_TOKEN`.
pub fn curl(prepared: &Prepared) -> String {
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let mut command = format!("curl -sS -X POST {}", quote(&prepared.url));
    for (name, value) in &prepared.headers {
        let value = if *name == "Authorization" { "Bearer $CT_TOKEN".to_owned() } else { value.clone() };
        let header = format!("{name}: {value}");
        if *name == "Authorization" {
            command.push_str(&format!(" \\\n  -H \"{header}\""));
        } else {
            command.push_str(&format!(" \\\n  -H {}", quote(&header)));
        }
    }
    command.push_str(&format!(" \\\n  --data-binary {}", quote(&String::from_utf8_lossy(&prepared.body))));
    command
}

/// Sends `events` one by one (one event) or in batches of `batch`; the receipts in order.
pub async fn send(client: &Client, events: &[Event], batch: usize) -> Result<Vec<Receipt>, SendError> {
    if events.len() == 1 {
        return Ok(vec![client.send(&events[0]).await?]);
    }
    let mut receipts = Vec::with_capacity(events.len());
    for chunk in events.chunks(batch.max(1)) {
        receipts.extend(client.send_batch(chunk).await?);
    }
    Ok(receipts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_lines_become_checked_events() {
        let one = r#"{"eventId":"e1","type":"system.heartbeat","ts":"2026-03-03T11:00:00Z","payload":{"system_id":"finance"}}"#;
        let events = events_of_file(one).unwrap();
        assert_eq!((events[0].event_id.as_str(), events[0].ts.as_str()), ("e1", "2026-03-03T11:00:00Z"));
        assert_eq!(events[0].payload["systemId"], "finance");
        let lines = format!("{one}\n\n{}\n", one.replace("e1", "e2"));
        assert_eq!(events_of_lines(lines.as_bytes()).unwrap().len(), 2);
        let bad = r#"{"type":"backend.fn.error","payload":{"severity":"high"}}"#;
        assert_eq!(events_of_lines(bad.as_bytes()).unwrap_err(), "line 1: payload.fnName: is required");
    }

    #[test]
    fn a_dry_run_is_a_curl_command_without_the_token() {
        let client = Client::new("http://127.0.0.1:8080", "secret-token", "s3cret", "finance");
        let event = Event::new("system.heartbeat", serde_json::json!({"systemId": "finance"})).unwrap().with_id("e1");
        let command = curl(&client.prepare(&event));
        assert!(command.starts_with("curl -sS -X POST 'http://127.0.0.1:8080/events'"), "{command}");
        assert!(command.contains("-H \"Authorization: Bearer $CT_TOKEN\""), "{command}");
        assert!(command.contains("-H 'X-CT-Signature: sha256="), "{command}");
        assert!(!command.contains("secret-token") && !command.contains("s3cret"), "{command}");
    }
}
