//! JSON merge patches (RFC 7396): applied one by one, or folded newest-first.
//!
//! An entity's state is its payloads merged in version order. Applying them forward
//! parses every payload into a tree, merges it and drops what the next payload
//! overwrites. [`fold_newest_first`] walks them the other way: it keeps the combined
//! effect of the newer patches (`Effect`) and lets an older patch fill only what
//! no newer one has decided, borrowing values from the payload texts. Only the values
//! that survive are parsed, and the walk stops at the first patch that decides the
//! whole state (one that is not an object).
//!
//! ```text
//!   forward:        S0 -> P1 -> P2 -> ... -> Pn          (parse and merge all)
//!   newest-first:   Pn ∘ ... ∘ P2 ∘ P1, then applied to S0 (stop once decided)
//! ```

use std::borrow::Cow;
use std::fmt;

use hashbrown::HashMap;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Apply `patch` to `target` as an RFC 7396 merge patch: objects merge key by key,
/// recursively; a `null` member removes the key; any other value replaces what was
/// there.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(entries) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in entries {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// `start` with every patch of `patches` (oldest first) merged in, in order: the same
/// value as [`merge_patch`] applied to each in turn. Each patch must be JSON text.
pub fn fold_newest_first<'a, I>(start: Value, patches: I) -> serde_json::Result<Value>
where
    I: DoubleEndedIterator<Item = &'a str>,
{
    let mut effect: Option<Effect<'a>> = None;
    for (index, text) in patches.rev().enumerate() {
        let patch = text.trim_ascii();
        effect = Some(match effect {
            None => Effect::of(patch, index)?,
            Some(mut newer) => {
                newer.absorb_older(patch, index)?;
                newer
            }
        });
        if effect.as_ref().is_some_and(|e| !e.reads_older()) {
            break;
        }
    }
    match effect {
        None => Ok(start),
        Some(effect) => effect.apply(start),
    }
}

/// The combined effect of a run of patches on a value.
enum Effect<'a> {
    /// The value becomes this JSON text, whatever it was (in an object, `null`
    /// removes the member). Parsed only if it is part of the result.
    Set(&'a str),
    /// The value becomes an object: the older one, if it was an object and
    /// `keeps_older`, else an empty one, with these members' effects applied.
    Merge {
        keeps_older: bool,
        members: HashMap<Cow<'a, str>, Member<'a>>,
    },
}

/// A member's effect, and the patch that last changed it (counted newest-first).
struct Member<'a> {
    patch: usize,
    effect: Effect<'a>,
}

impl<'a> Effect<'a> {
    /// The effect of one patch, the `index`-th newest.
    fn of(patch: &'a str, index: usize) -> serde_json::Result<Self> {
        if !is_object(patch) {
            return Ok(Effect::Set(patch));
        }
        // Collected in text order, so of a repeated key the last one counts, as when
        // the text is parsed.
        let members = members(patch)?
            .into_iter()
            .map(|(key, value)| {
                let effect = Effect::of(value, index)?;
                Ok((
                    key,
                    Member {
                        patch: index,
                        effect,
                    },
                ))
            })
            .collect::<serde_json::Result<_>>()?;
        Ok(Effect::Merge {
            keeps_older: true,
            members,
        })
    }

    /// Whether the value before this effect still matters.
    fn reads_older(&self) -> bool {
        matches!(
            self,
            Effect::Merge {
                keeps_older: true,
                ..
            }
        )
    }

    /// Make this effect (of newer patches) the effect of `older`, the `index`-th
    /// newest patch, followed by them.
    fn absorb_older(&mut self, older: &'a str, index: usize) -> serde_json::Result<()> {
        let Effect::Merge {
            keeps_older: keeps_older @ true,
            members,
        } = self
        else {
            return Ok(());
        };
        if !is_object(older) {
            // `older` replaced the value with a non-object, which the newer patches
            // then replaced with an object of their own.
            *keeps_older = false;
            return Ok(());
        }
        // Last to first, so of a repeated key only the last one (the one a parser
        // keeps) is taken.
        for (key, value) in self::members(older)?.into_iter().rev() {
            match members.get_mut(&key) {
                Some(member) if member.patch == index => {}
                Some(member) => {
                    member.effect.absorb_older(value, index)?;
                    member.patch = index;
                }
                None => {
                    let effect = Effect::of(value, index)?;
                    members.insert(
                        key,
                        Member {
                            patch: index,
                            effect,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// The value `older` becomes.
    fn apply(self, older: Value) -> serde_json::Result<Value> {
        match self {
            Effect::Set(text) => serde_json::from_str(text),
            Effect::Merge {
                keeps_older,
                members,
            } => {
                let mut map = match older {
                    Value::Object(map) if keeps_older => map,
                    _ => Map::new(),
                };
                for (key, Member { effect, .. }) in members {
                    match effect {
                        Effect::Set("null") => {
                            map.remove(key.as_ref());
                        }
                        effect => {
                            let before = map.remove(key.as_ref()).unwrap_or(Value::Null);
                            map.insert(key.into_owned(), effect.apply(before)?);
                        }
                    }
                }
                Ok(Value::Object(map))
            }
        }
    }
}

/// Whether a value's text (without surrounding whitespace) is an object.
fn is_object(value: &str) -> bool {
    value.starts_with('{')
}

/// The members of an object's text, borrowed from it (keys with escapes are decoded),
/// values without surrounding whitespace.
fn members(object: &str) -> serde_json::Result<Vec<(Cow<'_, str>, &str)>> {
    let mut deserializer = serde_json::Deserializer::from_str(object);
    let members = deserializer.deserialize_map(MembersVisitor)?;
    deserializer.end()?;
    Ok(members)
}

struct MembersVisitor;

impl<'de> Visitor<'de> for MembersVisitor {
    type Value = Vec<(Cow<'de, str>, &'de str)>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            out.push((key.0, value.get()));
        }
        Ok(out)
    }
}

/// An object key, borrowed from the text unless it had to be unescaped.
struct Key<'de>(Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(KeyVisitor)
    }
}

struct KeyVisitor;

impl<'de> Visitor<'de> for KeyVisitor {
    type Value = Key<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Borrowed(value)))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Key(Cow::Owned(value.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn forward(start: &Value, patches: &[String]) -> Value {
        let mut state = start.clone();
        for patch in patches {
            let patch: Value = serde_json::from_str(patch).unwrap_or_default();
            merge_patch(&mut state, &patch);
        }
        state
    }

    fn folded(start: &Value, patches: &[String]) -> Value {
        fold_newest_first(start.clone(), patches.iter().map(String::as_str))
            .unwrap_or_else(|e| panic!("fold failed: {e}"))
    }

    #[test]
    fn merge_patch_follows_rfc_7396() {
        let mut state = Value::Null;
        for patch in [
            r#"{"status":"placed","items":{"a":1,"b":2},"note":"x"}"#,
            r#"{"status":"paid","items":{"b":null,"c":3},"note":null}"#,
        ] {
            let patch: Value = serde_json::from_str(patch).unwrap_or_default();
            merge_patch(&mut state, &patch);
        }
        assert_eq!(
            state,
            serde_json::json!({"status":"paid","items":{"a":1,"c":3}})
        );
        merge_patch(&mut state, &serde_json::json!([1, 2]));
        assert_eq!(state, serde_json::json!([1, 2]));
    }

    #[test]
    fn newest_first_fold_matches_forward_merges() {
        let patches: Vec<String> = [
            r#"{"status":"placed","items":{"a":1,"b":2},"note":"x","tags":[1]}"#,
            r#"{"items":5}"#,
            r#"{"status":"paid","items":{"b":null,"c":3},"note":null}"#,
            r#"{"items":{"d":{"e":1}}, "t\u00e9":"escaped key"}"#,
            r#"{"items":{"d":null}, "status":null}"#,
        ]
        .map(String::from)
        .to_vec();
        let start = serde_json::json!({"status":"new","kept":true,"items":{"z":0}});
        for n in 0..=patches.len() {
            assert_eq!(
                folded(&start, &patches[..n]),
                forward(&start, &patches[..n]),
                "after {n} patches"
            );
            assert_eq!(
                folded(&Value::Null, &patches[..n]),
                forward(&Value::Null, &patches[..n])
            );
        }
    }

    #[test]
    fn a_non_object_patch_ends_the_walk_and_older_text_is_not_read() {
        // The older text is not JSON: the fold must stop before it.
        let patches = ["not json", r#"[1,2]"#, r#"{"a":1}"#];
        let state = fold_newest_first(Value::Null, patches.into_iter());
        assert_eq!(state.ok(), Some(serde_json::json!({"a":1})));
    }

    #[test]
    fn of_a_repeated_key_the_last_counts() {
        let patches: Vec<String> = [
            r#"{"a":{"x":1},"a":{"y":2},"b":1,"b":{"c":1}}"#,
            r#"{"a":{"z":3},"b":{"d":2},"b":null}"#,
            r#"{"a":{"x":5},"a":{"w":4}}"#,
        ]
        .map(String::from)
        .to_vec();
        for n in 0..=patches.len() {
            assert_eq!(
                folded(&Value::Null, &patches[..n]),
                forward(&Value::Null, &patches[..n])
            );
        }
    }

    #[test]
    fn a_bad_patch_is_an_error() {
        let patches = [r#"{"a":1}"#, r#"{"a":"#];
        assert!(fold_newest_first(Value::Null, patches.into_iter()).is_err());
    }

    /// A random JSON value over few keys, so patches collide often.
    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (0i64..5).prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
                prop::collection::btree_map("[a-d]", inner, 0..4)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// A patch's text: a random value, or an object whose keys may repeat.
    fn patch_text() -> impl Strategy<Value = String> {
        prop_oneof![
            value().prop_map(|v| v.to_string()),
            value().prop_map(|v| serde_json::to_string_pretty(&v).unwrap_or_default()),
            prop::collection::vec(("[a-d]", value()), 0..5).prop_map(|members| {
                let members: Vec<String> = members
                    .iter()
                    .map(|(key, value)| format!("{}:{value}", Value::from(key.as_str())))
                    .collect();
                format!("{{{}}}", members.join(","))
            }),
        ]
    }

    proptest! {
        #[test]
        fn newest_first_fold_equals_forward_merges(
            start in value(),
            patches in prop::collection::vec(patch_text(), 0..8),
        ) {
            prop_assert_eq!(folded(&start, &patches), forward(&start, &patches));
        }
    }
}
