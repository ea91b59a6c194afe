//! The log's clock as time-dependent read models read it (design invariant 10): a tick is applied
//! only once the events it names are stored, so the same ticks over the same log give the same
//! state however the topics interleave when read. Shared by the health evaluator and the digest.

use std::collections::HashMap;

use ct_core::clock::Tick;

use crate::{
    consumer::{Incoming, ProcessError},
    registry::RegistryClient,
};

/// Are the records below `ends` (end offset per partition, by partition number) all stored, by
/// `progress` (partition -> next offset)? An empty partition at the tick needs nothing.
pub fn covered(ends: &[i64], progress: &HashMap<i32, i64>) -> bool {
    ends.iter().enumerate().all(|(partition, end)| {
        *end <= 0 || i32::try_from(partition).ok().and_then(|p| progress.get(&p)).is_some_and(|next| next >= end)
    })
}

/// Decodes a clock record and checks it names the topics this reader reads (`audit_topic`:
/// `None` when the reader follows no audit topic). A tick for other topics is the record's fault.
pub async fn decode_tick(
    registry: &RegistryClient,
    record: &Incoming,
    events_topic: &str,
    audit_topic: Option<&str>,
) -> Result<Tick, ProcessError> {
    let value = record.value.as_deref().ok_or_else(|| ProcessError::Record("the record has no value".into()))?;
    let tick = registry.decode_with(value, ct_core::clock::decode_tick).await?;
    if let Some(audit) = audit_topic
        && !tick.audit_topic.is_empty()
        && tick.audit_topic != audit
    {
        return Err(ProcessError::Record(format!(
            "a tick for audit topic `{}`; this reader reads `{audit}`",
            tick.audit_topic
        )));
    }
    if tick.events_topic != events_topic {
        return Err(ProcessError::Record(format!(
            "a tick for events topic `{}`; this reader reads `{events_topic}`",
            tick.events_topic
        )));
    }
    Ok(tick)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tick_waits_for_every_partition_it_names() {
        let progress: HashMap<i32, i64> = [(0, 10), (2, 4)].into();
        assert!(covered(&[10, 0, 4], &progress), "partition 1 was empty at the tick");
        assert!(!covered(&[11, 0, 4], &progress), "partition 0 is one record short");
        assert!(!covered(&[10, 1, 4], &progress), "partition 1 has a record not stored yet");
        assert!(covered(&[], &progress));
    }
}
