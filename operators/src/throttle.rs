//! `Throttle`: lets at most `limit` source events per key through in each interval of
//! event time, and drops (and counts) the rest.
//!
//! Input: the pipeline's on-time source events, in log order. Output: which of them
//! go on. Intervals are fixed, `[n · per, (n + 1) · per)` from the epoch; each key
//! counts the events let through in each interval, first come (in log order) first
//! served, so the outcome depends on the log alone. An interval is forgotten once the
//! watermark passes its end. Options: `throttle_on` (the key, [`crate::admission`];
//! `entity_id` by default) and `throttle` (`'100/1s'`: the limit per interval).

use arrow::array::{BooleanArray, RecordBatch};
use hashbrown::HashMap;

use crate::admission::{self, SourceKey, SourceOperator};
use crate::error::Result;

/// The operator's name in a checkpoint's state.
const NAME: &str = "throttle";

/// Counts per key and interval.
#[derive(Debug)]
pub struct Throttle {
    key: SourceKey,
    limit: u64,
    per_micros: i64,
    counts: HashMap<(String, i64), u64>,
}

impl Throttle {
    /// At most `limit` events per `key` in each `per_micros` of event time.
    pub fn new(key: SourceKey, limit: u64, per_micros: i64) -> Self {
        Self {
            key,
            limit,
            per_micros: per_micros.max(1),
            counts: HashMap::new(),
        }
    }

    /// How many (key, interval) counts it keeps.
    pub fn len(&self) -> usize {
        self.counts.len()
    }

    /// Whether it keeps no count.
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// Its state, for a checkpoint.
    pub fn snapshot(&self) -> Result<RecordBatch> {
        let mut rows: Vec<(String, i64, u64)> = self
            .counts
            .iter()
            .map(|((k, interval), &n)| (k.clone(), *interval, n))
            .collect();
        rows.sort_unstable();
        admission::state_rows(NAME, rows)
    }

    /// Go back to the state in `state` (a checkpoint's source operator state).
    pub fn restore(&mut self, state: &RecordBatch) -> Result<()> {
        self.counts = admission::rows_of(state, NAME)?
            .into_iter()
            .map(|(key, interval, n)| ((key, interval), n))
            .collect();
        Ok(())
    }
}
impl SourceOperator for Throttle {
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
                let count = self
                    .counts
                    .entry((key, time.div_euclid(self.per_micros)))
                    .or_insert(0);
                if *count < self.limit {
                    *count += 1;
                    true
                } else {
                    false
                }
            })
            .collect::<Vec<bool>>();
        Ok(BooleanArray::from(pass))
    }

    /// Forget the intervals the watermark has passed.
    fn forget(&mut self, watermark: i64) {
        let per = self.per_micros;
        self.counts
            .retain(|(_, interval), _| (interval + 1).saturating_mul(per) > watermark);
    }
}
