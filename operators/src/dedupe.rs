//! `Dedupe`: drops a source event whose key was let through less than a time bound
//! before (or after) it, in event time.
//!
//! Input: the pipeline's on-time source events, in log order. Output: which of them
//! go on. The first event of a key goes on and is remembered with its time `t`; an
//! event of the same key with a time within `(t − within, t + within)` is dropped
//! and counted; the first one outside that bound goes on and is remembered in its
//! place. A key is forgotten once the watermark passes `t + within`: no on-time event
//! can fall within its bound after that, so the state holds the keys of the last
//! `within` of event time. Options: `dedupe_on` (the key, [`crate::admission`]) and
//! `dedupe_within` (a duration).

use arrow::array::{BooleanArray, RecordBatch};
use hashbrown::HashMap;

use crate::admission::{self, SourceKey, SourceOperator};
use crate::error::Result;

/// The operator's name in a checkpoint's state.
const NAME: &str = "dedupe";

/// Keys let through, with their times.
#[derive(Debug)]
pub struct Dedupe {
    key: SourceKey,
    within_micros: i64,
    admitted: HashMap<String, i64>,
}

impl Dedupe {
    /// Dedupe on `key` within `within_micros` of event time.
    pub fn new(key: SourceKey, within_micros: i64) -> Self {
        Self {
            key,
            within_micros,
            admitted: HashMap::new(),
        }
    }

    /// How many keys it remembers.
    pub fn len(&self) -> usize {
        self.admitted.len()
    }

    /// Whether it remembers no key.
    pub fn is_empty(&self) -> bool {
        self.admitted.is_empty()
    }

    /// Its state, for a checkpoint.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let mut rows: Vec<(String, i64, u64)> = self
            .admitted
            .iter()
            .map(|(k, &t)| (k.clone(), t, 0))
            .collect();
        rows.sort_unstable();
        admission::state_rows(NAME, rows)
    }

    /// Go back to the state in `state` (a checkpoint's source operator state).
    pub fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        self.admitted = admission::rows_of(state, NAME)?
            .into_iter()
            .map(|(key, time, _)| (key, time))
            .collect();
        Ok(())
    }
}

impl SourceOperator for Dedupe {
    /// Which of `events` (times in `times`) go on.
    fn admit(&mut self, events: &RecordBatch, times: &[i64]) -> Result<BooleanArray> {
        let keys = self.key.values(events)?;
        let pass = keys
            .into_iter()
            .zip(times)
            .map(|(key, &time)| {
                let Some(key) = key else {
                    return true;
                };
                match self.admitted.get(&key) {
                    Some(&seen) if (time - seen).abs() < self.within_micros => false,
                    _ => {
                        self.admitted.insert(key, time);
                        true
                    }
                }
            })
            .collect::<Vec<bool>>();
        Ok(BooleanArray::from(pass))
    }

    /// Forget the keys whose bound the watermark has passed.
    fn forget(&mut self, watermark: i64) {
        let within = self.within_micros;
        self.admitted
            .retain(|_, seen| seen.saturating_add(within) > watermark);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use allsource_engine::{RecordedEvent, event_schema, events_to_batch};

    fn events(payloads: &[&str]) -> RecordBatch {
        let events: Vec<RecordedEvent> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| RecordedEvent {
                tenant: "t".into(),
                entity_id: "e".into(),
                event_type: "k".into(),
                version: i as u64 + 1,
                partition: 0,
                offset: i as u64,
                position: i as u64,
                event_id: format!("{i:032}").into(),
                timestamp_micros: 0,
                ingested_at_micros: 0,
                payload: (*p).into(),
                metadata: None,
            })
            .collect();
        let refs: Vec<&RecordedEvent> = events.iter().collect();
        events_to_batch(&event_schema(), &refs).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn drops_repeats_within_the_bound_and_survives_a_restore() -> Result<()> {
        let mut dedupe = Dedupe::new(SourceKey::parse("order")?, 10);
        let batch = events(&[
            r#"{"order":"a"}"#,
            r#"{"order":"a"}"#,
            r#"{"order":"b"}"#,
            r#"{}"#,
            r#"{"order":"a"}"#,
            r#"{"order":"a"}"#,
        ]);
        let pass = dedupe.admit(&batch, &[0, 9, 5, 5, 10, 15])?;
        let pass: Vec<bool> = pass.iter().map(|p| p == Some(true)).collect();
        assert_eq!(pass, [true, false, true, true, true, false]);
        let saved = dedupe.snapshot()?;
        let mut restored = Dedupe::new(SourceKey::parse("order")?, 10);
        restored.restore(&saved)?;
        let again = restored.admit(&events(&[r#"{"order":"a"}"#]), &[19])?;
        assert!(!again.value(0));
        restored.forget(20);
        assert_eq!(restored.len(), 0);
        Ok(())
    }
}
