//! Event ids: [`EventId`], and UUID v7 ids made without a system call per id.
//!
//! ```text
//! | unix_ts_ms: 48 | version 0111: 4 | counter: 12 | variant 10: 2 | counter: 62 |
//! ```
//!
//! The 74 counter bits start at a random value each millisecond (top bit clear, so it
//! can count up) and increase by one per id within the millisecond, so ids are unique
//! and sort in creation order. Randomness comes from a SplitMix64 stream seeded once
//! from the operating system; time comes from the store's injected clock.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An event's id, as the client gave it or as the store generated it (a UUID v7).
///
/// It reads and compares as its text. A UUID in canonical form (lowercase, hyphenated)
/// is held as its 128-bit value, so acknowledging generated ids allocates nothing.
///
/// ```
/// # use allsource_engine::EventId;
/// let id = EventId::from("payment-42");
/// assert_eq!(id, "payment-42");
/// assert_eq!(id.to_string(), "payment-42");
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EventId(IdRepr);

#[derive(Clone, PartialEq, Eq, Hash)]
enum IdRepr {
    Uuid(u128),
    Text(Arc<str>),
}

impl EventId {
    /// The id of a generated (or canonical) UUID.
    pub fn from_uuid(value: u128) -> Self {
        Self(IdRepr::Uuid(value))
    }

    /// The UUID, when the id is one in canonical form.
    pub fn as_uuid(&self) -> Option<uuid::Uuid> {
        match &self.0 {
            IdRepr::Uuid(value) => Some(uuid::Uuid::from_u128(*value)),
            IdRepr::Text(_) => None,
        }
    }

    /// The UUID's value, when the id is one in canonical form.
    pub(crate) fn uuid_value(&self) -> Option<u128> {
        match &self.0 {
            IdRepr::Uuid(value) => Some(*value),
            IdRepr::Text(_) => None,
        }
    }

    /// Call `f` with the id's text, without allocating.
    pub(crate) fn with_text<R>(&self, f: impl FnOnce(&str) -> R) -> R {
        match &self.0 {
            IdRepr::Uuid(value) => f(CanonicalUuid::default().format(*value)),
            IdRepr::Text(text) => f(text),
        }
    }
}

impl From<&str> for EventId {
    fn from(text: &str) -> Self {
        match canonical_uuid(text) {
            Some(value) => Self::from_uuid(value),
            None => Self(IdRepr::Text(Arc::from(text))),
        }
    }
}

impl From<String> for EventId {
    fn from(text: String) -> Self {
        match canonical_uuid(&text) {
            Some(value) => Self::from_uuid(value),
            None => Self(IdRepr::Text(Arc::from(text))),
        }
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| write!(f, "{text:?}"))
    }
}

impl PartialEq<str> for EventId {
    fn eq(&self, other: &str) -> bool {
        self.with_text(|text| text == other)
    }
}

impl PartialEq<&str> for EventId {
    fn eq(&self, other: &&str) -> bool {
        self == *other
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(EventId::from)
    }
}

/// The UUID's value when `text` is exactly its canonical form (36 characters,
/// lowercase, hyphenated); `None` for any other text, so the text can be rebuilt.
///
/// One pass over the bytes: hyphens at 8, 13, 18 and 23, lowercase hex digits
/// elsewhere. Reading events decodes every id, so this avoids a parse and a print.
pub(crate) fn canonical_uuid(text: &str) -> Option<u128> {
    let bytes = text.as_bytes();
    if bytes.len() != uuid::fmt::Hyphenated::LENGTH
        || [8, 13, 18, 23].iter().any(|i| bytes[*i] != b'-')
    {
        return None;
    }
    let mut halves = [0u64; 2];
    for (half, digits) in halves.iter_mut().zip([HIGH_DIGITS, LOW_DIGITS]) {
        for i in digits {
            let digit = HEX_DIGIT[usize::from(bytes[i])];
            if digit == NOT_HEX {
                return None;
            }
            *half = (*half << 4) | u64::from(digit);
        }
    }
    Some((u128::from(halves[0]) << 64) | u128::from(halves[1]))
}

/// Where the 16 high and the 16 low hex digits of a canonical UUID are.
const HIGH_DIGITS: [usize; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15, 16, 17];
const LOW_DIGITS: [usize; 16] = [
    19, 20, 21, 22, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35,
];

/// The value of each lowercase hex digit; [`NOT_HEX`] for every other byte.
const HEX_DIGIT: [u8; 256] = {
    let mut table = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};
const NOT_HEX: u8 = 0xFF;

/// A stack buffer to print a UUID's canonical text into.
#[derive(Debug)]
pub(crate) struct CanonicalUuid([u8; uuid::fmt::Hyphenated::LENGTH]);

impl Default for CanonicalUuid {
    fn default() -> Self {
        Self([0; uuid::fmt::Hyphenated::LENGTH])
    }
}

impl CanonicalUuid {
    pub fn format(&mut self, value: u128) -> &str {
        uuid::Uuid::from_u128(value)
            .hyphenated()
            .encode_lower(&mut self.0)
    }
}

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

    /// The next id's 128-bit value.
    pub fn next(&mut self, now_micros: i64) -> u128 {
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
        (u128::from(self.last_ms & 0xFFFF_FFFF_FFFF) << 80)
            | (0x7 << 76)
            | (high << 64)
            | (0b10 << 62)
            | low
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
            let value = ids.next(1_700_000_000_000_000 + (i / 100) * 1000);
            let id = EventId::from_uuid(value);
            let uuid = uuid::Uuid::parse_str(&id.to_string()).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(uuid.get_version_num(), 7);
            assert_eq!(uuid.as_u128(), value);
            assert_eq!(id.as_uuid(), Some(uuid));
            assert!(value > previous, "ids sort in creation order");
            previous = value;
        }
        let value = ids.next(1_700_000_000_000_000);
        assert!(
            value > previous,
            "a clock going backwards does not reorder ids"
        );
    }

    #[test]
    fn ids_read_back_as_the_exact_text_given() {
        for text in [
            "0192f0c1-0000-7000-8000-00000000000a",
            "0192F0C1-0000-7000-8000-00000000000A",
            "{0192f0c1-0000-7000-8000-00000000000a}",
            "0192f0c100007000800000000000000a",
            "payment-42",
        ] {
            let id = EventId::from(text);
            assert_eq!(id.to_string(), text);
            assert_eq!(id, text);
            assert_eq!(
                id.as_uuid().is_some(),
                text.starts_with("0192f0c1-"),
                "{text}"
            );
        }
    }

    #[test]
    fn canonical_text_parses_to_its_value_and_nothing_else_does() {
        let mut ids = IdGenerator::new();
        for _ in 0..1000 {
            let value = (u128::from(ids.random()) << 64) | u128::from(ids.random());
            let text = uuid::Uuid::from_u128(value).hyphenated().to_string();
            assert_eq!(canonical_uuid(&text), Some(value), "{text}");
            assert_eq!(
                canonical_uuid(&text.to_uppercase()).is_some(),
                text == text.to_uppercase()
            );
            let moved = format!("{}-{}", &text[..7], text[7..].replacen('-', "", 1));
            assert_eq!(canonical_uuid(&moved), None, "{moved}");
            assert_eq!(canonical_uuid(&text[1..]), None);
            assert_eq!(canonical_uuid(&format!("{}g", &text[1..])), None);
        }
    }
}
