//! A client of any Confluent-compatible schema registry: registers the schemas a service writes
//! (TopicNameStrategy: subject `<topic>-value`) and resolves writer schemas by id, cached.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use apache_avro::Schema;
use ct_core::{Envelope, avro};
use serde::Deserialize;
use serde_json::json;

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("schema registry at {url} is unreachable: {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("schema registry refused the schema for subject `{subject}` as incompatible: {message}")]
    Incompatible { subject: String, message: String },
    #[error("schema registry answered {status} (error_code {code}): {message}")]
    Api { status: u16, code: u32, message: String },
    #[error("schema id {0} is not a valid Avro schema: {1}")]
    BadSchema(u32, String),
    #[error(transparent)]
    Codec(#[from] avro::CodecError),
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    error_code: u32,
    #[serde(default)]
    message: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: u32,
}

#[derive(Deserialize)]
struct SchemaBody {
    schema: String,
}

pub struct RegistryClient {
    base_url: String,
    http: reqwest::Client,
    by_id: RwLock<HashMap<u32, Arc<Schema>>>,
    /// Per schema id: is it the current event schema (decode without resolution)?
    current_event_schema: RwLock<HashMap<u32, bool>>,
}

impl RegistryClient {
    pub fn new(base_url: impl Into<String>) -> Self {
        let http =
            reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("a plain HTTP client builds");
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http,
            by_id: RwLock::new(HashMap::new()),
            current_event_schema: RwLock::new(HashMap::new()),
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, RegistryError> {
        let response =
            request.send().await.map_err(|source| RegistryError::Unreachable { url: self.base_url.clone(), source })?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status().as_u16();
        let body: ErrorBody =
            response.json().await.unwrap_or(ErrorBody { error_code: u32::from(status), message: String::new() });
        Err(RegistryError::Api { status, code: body.error_code, message: body.message })
    }

    /// The registry answers a request (not served from the cache).
    pub async fn ping(&self) -> Result<(), RegistryError> {
        self.send(self.http.get(format!("{}/schemas/types", self.base_url))).await.map(|_| ())
    }

    /// Registers `schema` under `subject` and returns its id (the same id again for a schema
    /// already registered).
    pub async fn register(&self, subject: &str, schema: &str) -> Result<u32, RegistryError> {
        let url = format!("{}/subjects/{}/versions", self.base_url, encode_segment(subject));
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(json!({"schema": schema, "schemaType": "AVRO"}).to_string());
        match self.send(request).await {
            Ok(response) => Ok(response
                .json::<IdBody>()
                .await
                .map_err(|source| RegistryError::Unreachable { url: self.base_url.clone(), source })?
                .id),
            Err(RegistryError::Api { status: 409, message, .. }) => {
                Err(RegistryError::Incompatible { subject: subject.to_owned(), message })
            }
            Err(other) => Err(other),
        }
    }

    /// The writer schema with `id`, fetched once and cached.
    pub async fn schema(&self, id: u32) -> Result<Arc<Schema>, RegistryError> {
        if let Some(schema) = self.by_id.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            return Ok(Arc::clone(schema));
        }
        let url = format!("{}/schemas/ids/{id}", self.base_url);
        let body: SchemaBody = self
            .send(self.http.get(url))
            .await?
            .json()
            .await
            .map_err(|source| RegistryError::Unreachable { url: self.base_url.clone(), source })?;
        let schema =
            Arc::new(Schema::parse_str(&body.schema).map_err(|e| RegistryError::BadSchema(id, e.to_string()))?);
        self.by_id.write().unwrap_or_else(|p| p.into_inner()).insert(id, Arc::clone(&schema));
        Ok(schema)
    }

    /// Decodes a `ct.events.v1` record value in the Confluent wire format.
    pub async fn decode_event(&self, value: &[u8]) -> Result<Envelope, RegistryError> {
        let (id, datum) = avro::wire::split(value)?;
        let writer = self.schema(id).await?;
        let known = self.current_event_schema.read().unwrap_or_else(|p| p.into_inner()).get(&id).copied();
        let is_current = match known {
            Some(is_current) => is_current,
            None => {
                let is_current = *writer == *avro::event_schema();
                self.current_event_schema.write().unwrap_or_else(|p| p.into_inner()).insert(id, is_current);
                is_current
            }
        };
        Ok(avro::decode_event_from(&writer, is_current, datum)?)
    }

    /// Decodes a `ct.audit.v1` record value in the Confluent wire format.
    pub async fn decode_audit(&self, value: &[u8]) -> Result<ct_core::dlq::Audit, RegistryError> {
        self.decode_with(value, ct_core::dlq::decode_audit).await
    }

    /// Decodes a record value in the Confluent wire format with `decode(writer schema, datum)`.
    /// Decodes an events-topic record for a reader that does not own its dead letters (the
    /// projector does): `None` for a record that is not a decodable event, which the caller
    /// counts; an unreachable registry is still an error, which pauses the consumer.
    pub async fn decode_event_or_skip(
        &self,
        record: &crate::consumer::Incoming,
    ) -> Result<Option<ct_core::Envelope>, crate::consumer::ProcessError> {
        use crate::consumer::ProcessError;
        let Some(value) = record.value.as_deref() else { return Ok(None) };
        match self.decode_event(value).await.map_err(ProcessError::from) {
            Ok(event) => Ok(Some(event)),
            Err(ProcessError::Record(_)) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// Decodes a consumed record's value with `decode(writer schema, datum)`; a record without a
    /// value is the record's fault, an unreachable registry a dependency's.
    pub async fn decode_record_with<T>(
        &self,
        record: &crate::consumer::Incoming,
        decode: impl FnOnce(&Schema, &[u8]) -> Result<T, avro::CodecError>,
    ) -> Result<T, crate::consumer::ProcessError> {
        let value = record
            .value
            .as_deref()
            .ok_or_else(|| crate::consumer::ProcessError::Record("the record has no value".into()))?;
        Ok(self.decode_with(value, decode).await?)
    }

    pub async fn decode_with<T>(
        &self,
        value: &[u8],
        decode: impl FnOnce(&Schema, &[u8]) -> Result<T, avro::CodecError>,
    ) -> Result<T, RegistryError> {
        let (id, datum) = avro::wire::split(value)?;
        let writer = self.schema(id).await?;
        Ok(decode(&writer, datum)?)
    }
}

/// A registry that cannot be reached, or answers 5xx or 429, is a dependency fault (the consumer
/// pauses, even when the schema id is unknown to its cache); any other answer (unknown id, a
/// schema that does not parse, bytes that do not decode) is the record's fault.
impl From<RegistryError> for crate::consumer::ProcessError {
    fn from(error: RegistryError) -> Self {
        match &error {
            RegistryError::Unreachable { .. } => Self::dependency("registry", &error),
            RegistryError::Api { status, .. } if *status >= 500 || *status == 429 => {
                Self::dependency("registry", &error)
            }
            _ => Self::Record(error.to_string()),
        }
    }
}

/// Percent-encodes a URL path segment or query value (everything but RFC 3986 unreserved bytes).
pub fn encode_segment(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// The subject of a topic's record values under TopicNameStrategy.
pub fn value_subject(topic: &str) -> String {
    format!("{topic}-value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_percent_encoded() {
        assert_eq!(encode_segment("ct.events.v1-value"), "ct.events.v1-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
        assert_eq!(value_subject("ct.events.v1"), "ct.events.v1-value");
    }
}
