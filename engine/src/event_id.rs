//! UUID v7 event ids without a system call per id.
//!
//! ```text
//! | unix_ts_ms: 48 | version 0111: 4 | counter: 12 | variant 10: 2 | counter: 62 |
//! ```
//!
//! The 74 counter bits start at a random value each millisecond (top bit clear, so it
//! can count up) and increase by one per id within the millisecond, so ids are unique
//! and sort in creation order. Randomness comes from a SplitMix64 stream seeded once
//! from the operating system; time comes from the store's injected clock.

/// Makes UUID v7 ids. Used under the sequencer's lock.
#[derive(Debug)]
pub(crate) struct IdGenerator {
    state: u64,
    last_ms: u64,
    counter: u128,
}

const COUNTER_BITS: u32 = 74;

impl IdGenerator {
    pub fn new() -> Self {
        let seed = uuid::Uuid::new_v4().as_u128();
        Self {
            state: (seed as u64) ^ ((seed >> 64) as u64),
            last_ms: 0,
            counter: 0,
        }
    }

    /// The next id, as text and as its 128-bit value.
    pub fn next(&mut self, now_micros: i64) -> (String, u128) {
        let ms = (now_micros.max(0) as u64 / 1000).max(self.last_ms);
        if ms > self.last_ms || self.counter >= (1u128 << COUNTER_BITS) - 1 {
            let random = (u128::from(self.random()) << 64) | u128::from(self.random());
            self.counter = random & ((1u128 << (COUNTER_BITS - 1)) - 1);
            self.last_ms = ms.max(self.last_ms + u64::from(ms == self.last_ms));
        } else {
            self.counter += 1;
        }
        let high = self.counter >> 62;
        let low = self.counter & ((1u128 << 62) - 1);
        let value = (u128::from(self.last_ms & 0xFFFF_FFFF_FFFF) << 80)
            | (0x7 << 76)
            | (high << 64)
            | (0b10 << 62)
            | low;
        let uuid = uuid::Uuid::from_u128(value);
        (uuid.hyphenated().to_string(), value)
    }

    fn random(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_version_7_unique_and_ordered() {
        let mut ids = IdGenerator::new();
        let mut previous = 0u128;
        for i in 0..10_000i64 {
            let (text, value) = ids.next(1_700_000_000_000_000 + (i / 100) * 1000);
            let uuid = uuid::Uuid::parse_str(&text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(uuid.as_u128(), value);
            assert!(value > previous, "ids sort in creation order");
            previous = value;
        }
        let (_, value) = ids.next(1_700_000_000_000_000);
        assert!(
            value > previous,
            "a clock going backwards does not reorder ids"
        );
    }
}
