//! A validating JSON scanner for payloads and metadata: it checks that text is one
//! JSON value (RFC 8259) without building anything.
//!
//! Appends check every payload, so this sits on the hot path; it walks the bytes once
//! with a small stack of open containers. It accepts exactly what a full parser
//! accepts, including the rule that `\u` escapes form valid UTF-16 (no lone
//! surrogates), and limits nesting to [`MAX_DEPTH`].

/// Deepest nesting of arrays and objects accepted: the limit common JSON parsers
/// apply, so every payload accepted here can be parsed again later.
pub const MAX_DEPTH: usize = 127;

/// Why a text is not JSON: what was wrong, and the byte offset where it was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// What was wrong.
    pub reason: &'static str,
    /// Byte offset in the text.
    pub offset: usize,
}

impl std::fmt::Display for JsonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.reason, self.offset)
    }
}

/// Check that `text` is exactly one JSON value, with optional surrounding whitespace.
pub fn validate(text: &str) -> Result<(), JsonError> {
    let mut scanner = Scanner {
        bytes: text.as_bytes(),
        at: 0,
    };
    scanner.document()
}

/// Bytes that end the fast run inside a string: the quote, the backslash and
/// control characters.
const STRING_STOP: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = true;
        b += 1;
    }
    table[b'"' as usize] = true;
    table[b'\\' as usize] = true;
    table
};

/// The open containers, innermost last: one bit per level (1 = object), so scanning
/// allocates nothing.
#[derive(Default)]
struct Stack {
    bits: u128,
    depth: usize,
}

impl Stack {
    fn push(&mut self, object: bool, scanner: &Scanner<'_>) -> Result<(), JsonError> {
        if self.depth >= MAX_DEPTH {
            return Err(scanner.error("nested too deeply"));
        }
        self.bits = (self.bits << 1) | u128::from(object);
        self.depth += 1;
        Ok(())
    }

    fn pop(&mut self) {
        self.bits >>= 1;
        self.depth -= 1;
    }

    /// Whether the innermost container is an object; `None` at the top level.
    fn in_object(&self) -> Option<bool> {
        (self.depth > 0).then_some(self.bits & 1 == 1)
    }
}

struct Scanner<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Scanner<'_> {
    fn error(&self, reason: &'static str) -> JsonError {
        JsonError {
            reason,
            offset: self.at,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.at += 1;
        }
    }

    /// The whole text: one value, then only whitespace.
    fn document(&mut self) -> Result<(), JsonError> {
        let mut stack = Stack::default();
        self.skip_whitespace();
        loop {
            // Expecting a value.
            match self.peek() {
                Some(b'{') => {
                    stack.push(true, self)?;
                    self.at += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b'}') {
                        self.at += 1;
                        stack.pop();
                    } else {
                        self.key()?;
                        continue;
                    }
                }
                Some(b'[') => {
                    stack.push(false, self)?;
                    self.at += 1;
                    self.skip_whitespace();
                    if self.peek() == Some(b']') {
                        self.at += 1;
                        stack.pop();
                    } else {
                        continue;
                    }
                }
                Some(b'"') => self.string()?,
                Some(b'-' | b'0'..=b'9') => self.number()?,
                Some(b't') => self.literal(b"true")?,
                Some(b'f') => self.literal(b"false")?,
                Some(b'n') => self.literal(b"null")?,
                Some(_) => return Err(self.error("expected a value")),
                None => return Err(self.error("unexpected end, expected a value")),
            }
            // After a value: close containers or move to the next element.
            loop {
                self.skip_whitespace();
                let Some(object) = stack.in_object() else {
                    return match self.peek() {
                        None => Ok(()),
                        Some(_) => Err(self.error("trailing characters after the value")),
                    };
                };
                match (object, self.peek()) {
                    (_, Some(b',')) => {
                        self.at += 1;
                        self.skip_whitespace();
                        if object {
                            self.key()?;
                        }
                        break;
                    }
                    (false, Some(b']')) | (true, Some(b'}')) => {
                        self.at += 1;
                        stack.pop();
                    }
                    (false, _) => return Err(self.error("expected ',' or ']'")),
                    (true, _) => return Err(self.error("expected ',' or '}'")),
                }
            }
        }
    }

    /// An object member's key and colon, leaving the scanner at its value.
    fn key(&mut self) -> Result<(), JsonError> {
        if self.peek() != Some(b'"') {
            return Err(self.error("expected a string key"));
        }
        self.string()?;
        self.skip_whitespace();
        if self.peek() != Some(b':') {
            return Err(self.error("expected ':'"));
        }
        self.at += 1;
        self.skip_whitespace();
        Ok(())
    }

    /// A string, from its opening quote. The text is UTF-8 already (it is a `str`), so
    /// only control characters and escapes need checking.
    fn string(&mut self) -> Result<(), JsonError> {
        self.at += 1;
        loop {
            self.skip_plain_string_bytes();
            match self.peek() {
                Some(b'"') => {
                    self.at += 1;
                    return Ok(());
                }
                Some(b'\\') => self.escape()?,
                Some(_) => return Err(self.error("control character in a string")),
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// Move past bytes that need no attention inside a string, eight at a time while
    /// eight are left, then one at a time.
    fn skip_plain_string_bytes(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        while let Some(chunk) = self.bytes.get(self.at..self.at + 8) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let x = u64::from_le_bytes(word);
            // High bit set in each byte that is zero after the xor: a quote or a
            // backslash; and in each byte below 0x20 (`has_less` on bytes < 0x80).
            let quote = x ^ (ONES * u64::from(b'"'));
            let backslash = x ^ (ONES * u64::from(b'\\'));
            let found = (quote.wrapping_sub(ONES) & !quote)
                | (backslash.wrapping_sub(ONES) & !backslash)
                | (x.wrapping_sub(ONES * 0x20) & !x);
            let found = found & HIGHS;
            if found != 0 {
                self.at += (found.trailing_zeros() / 8) as usize;
                return;
            }
            self.at += 8;
        }
        while self
            .bytes
            .get(self.at)
            .is_some_and(|b| !STRING_STOP[usize::from(*b)])
        {
            self.at += 1;
        }
    }

    /// An escape, from its backslash.
    fn escape(&mut self) -> Result<(), JsonError> {
        self.at += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.at += 1;
                Ok(())
            }
            Some(b'u') => {
                self.at += 1;
                let unit = self.hex4()?;
                match unit {
                    0xD800..=0xDBFF => {
                        if self.bytes.get(self.at..self.at + 2) != Some(b"\\u") {
                            return Err(self.error("lone leading surrogate in a \\u escape"));
                        }
                        self.at += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(self.error("a leading surrogate without a trailing one")),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.error("lone trailing surrogate in a \\u escape")),
                    _ => Ok(()),
                }
            }
            _ => Err(self.error("invalid escape")),
        }
    }

    fn hex4(&mut self) -> Result<u16, JsonError> {
        let mut value = 0u16;
        for _ in 0..4 {
            let digit = match self.peek() {
                Some(b @ b'0'..=b'9') => b - b'0',
                Some(b @ b'a'..=b'f') => b - b'a' + 10,
                Some(b @ b'A'..=b'F') => b - b'A' + 10,
                _ => return Err(self.error("expected four hex digits in a \\u escape")),
            };
            value = (value << 4) | u16::from(digit);
            self.at += 1;
        }
        Ok(value)
    }

    /// `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`
    fn number(&mut self) -> Result<(), JsonError> {
        if self.peek() == Some(b'-') {
            self.at += 1;
        }
        match self.peek() {
            Some(b'0') => self.at += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("expected a digit")),
        }
        if self.peek() == Some(b'.') {
            self.at += 1;
            self.required_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.at += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.at += 1;
            }
            self.required_digits()?;
        }
        Ok(())
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.at += 1;
        }
    }

    fn required_digits(&mut self) -> Result<(), JsonError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error("expected a digit"));
        }
        self.digits();
        Ok(())
    }

    fn literal(&mut self, word: &'static [u8]) -> Result<(), JsonError> {
        if self.bytes.get(self.at..self.at + word.len()) != Some(word) {
            return Err(self.error("invalid literal"));
        }
        self.at += word.len();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn full_parser_accepts(text: &str) -> bool {
        serde_json::from_str::<serde_json::Value>(text).is_ok()
    }

    #[test]
    fn accepts_json_and_rejects_the_rest() {
        let good = [
            "{}",
            "[]",
            " 0 ",
            "-0.5e+10",
            "1E5",
            r#""a\u00e9\ud83d\ude00\n""#,
            r#"{"a":[1,{"b":null}],"c":true,"d":false}"#,
            "\t[ 1 , 2 ]\r\n",
            "\"é—ü\"",
        ];
        for text in good {
            assert_eq!(validate(text), Ok(()), "{text}");
        }
        let bad = [
            "",
            " ",
            "{",
            "{\"a\"}",
            "{\"a\":}",
            "{\"a\":1,}",
            "[1,]",
            "[1 2]",
            "01",
            "1.",
            "1e",
            "-",
            ".5",
            "+1",
            "tru",
            "nul",
            "\"abc",
            "\"a\u{1}\"",
            r#""\x""#,
            r#""\ud800""#,
            r#""\udc00""#,
            r#""\ud800\u0041""#,
            "{} {}",
            "{'a':1}",
            "NaN",
        ];
        for text in bad {
            assert!(validate(text).is_err(), "{text:?} accepted");
            assert!(!full_parser_accepts(text), "reference accepts {text:?}");
        }
    }

    #[test]
    fn depth_is_limited() {
        let ok = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(validate(&ok), Ok(()));
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert_eq!(
            validate(&deep).map_err(|e| e.reason),
            Err("nested too deeply")
        );
        assert_eq!(full_parser_accepts(&ok), validate(&ok).is_ok());
        assert_eq!(full_parser_accepts(&deep), validate(&deep).is_ok());
    }

    /// Short texts over an alphabet of JSON's structural characters.
    fn jsonish() -> impl Strategy<Value = String> {
        let pieces = prop::sample::select(vec![
            "{", "}", "[", "]", ",", ":", "\"", "\"k\"", "\\", "\\u", "d83d", "de00", "0", "1",
            "-", ".", "e", "+", "true", "null", "fals", " ", "\n", "é", "\u{1}", "a",
        ]);
        prop::collection::vec(pieces, 0..24).prop_map(|p| p.concat())
    }

    /// A random JSON value, printed.
    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just("null".to_string()),
            any::<bool>().prop_map(|b| b.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| format!("{f:e}")),
            any::<String>().prop_map(|s| serde_json::Value::String(s).to_string()),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6)
                    .prop_map(|v| format!("[{}]", v.join(","))),
                prop::collection::vec((any::<String>(), inner), 0..6).prop_map(|members| {
                    let members: Vec<String> = members
                        .into_iter()
                        .map(|(k, v)| format!("{}: {v}", serde_json::Value::String(k)))
                        .collect();
                    format!("{{ {} }}", members.join(" ,"))
                }),
            ]
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4000))]

        #[test]
        fn agrees_with_a_full_parser_on_noise(text in jsonish()) {
            prop_assert_eq!(validate(&text).is_ok(), full_parser_accepts(&text), "{:?}", text);
        }

        #[test]
        fn accepts_every_value_and_rejects_every_strict_prefix(text in value()) {
            prop_assert_eq!(validate(&text), Ok(()));
            for cut in (0..text.len()).filter(|c| text.is_char_boundary(*c)) {
                let prefix = &text[..cut];
                prop_assert_eq!(validate(prefix).is_ok(), full_parser_accepts(prefix), "{:?}", prefix);
            }
        }
    }
}
