//! Reading a field leniently: a value of another shape than expected reads as absent.
//!
//! The CLI renames and retypes fields from version to version. A field read through these
//! helpers that changed shape costs that field, not its whole line: a `result` line whose
//! `num_turns` became a string still reports its cost and its outcome.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// A value that is `None` when it had a shape other than `T`'s (a list element or a map value
/// that did not fit, say), instead of an error.
#[derive(Debug)]
pub(crate) struct Lenient<T>(pub(crate) Option<T>);

impl<'de, T: DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Lenient<T>, D::Error> {
        // Buffered first, so that a misfit can be let go of. The buffer takes over the strings
        // the line's parse already holds rather than copying them again, and reading `T` from
        // it moves them on: a huge text block is in memory once.
        let value = Value::deserialize(deserializer)?;
        Ok(Lenient(T::deserialize(value).ok()))
    }
}

/// For `#[serde(default, deserialize_with = "lenient::optional")]`: `None` when the field is
/// absent, null or of another shape.
pub(crate) fn optional<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    Lenient::deserialize(deserializer).map(|lenient| lenient.0)
}

/// For `#[serde(default, deserialize_with = "lenient::or_default")]`: the default when the
/// field is absent, null or of another shape.
pub(crate) fn or_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned + Default,
{
    optional(deserializer).map(Option::unwrap_or_default)
}

/// For a list whose elements may not all fit: the ones that do, in order.
pub(crate) fn list<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let elements: Vec<Lenient<T>> = or_default(deserializer)?;
    Ok(elements
        .into_iter()
        .filter_map(|element| element.0)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Line {
        #[serde(default, deserialize_with = "optional")]
        count: Option<u32>,
        #[serde(default, deserialize_with = "or_default")]
        flag: bool,
        #[serde(default, deserialize_with = "list")]
        names: Vec<String>,
    }

    fn read(text: &str) -> Line {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn fields_of_the_expected_shape_are_read() {
        assert_eq!(
            read(r#"{"count": 3, "flag": true, "names": ["a", "b"]}"#),
            Line {
                count: Some(3),
                flag: true,
                names: vec!["a".into(), "b".into()]
            }
        );
    }

    #[test]
    fn fields_of_another_shape_read_as_absent() {
        let absent = Line {
            count: None,
            flag: false,
            names: Vec::new(),
        };
        assert_eq!(read("{}"), absent);
        assert_eq!(
            read(r#"{"count": null, "flag": null, "names": null}"#),
            absent
        );
        assert_eq!(
            read(r#"{"count": "3", "flag": "yes", "names": {"a": 1}}"#),
            absent
        );
        assert_eq!(read(r#"{"count": -1}"#), absent);
        assert_eq!(read(r#"{"count": 5000000000}"#), absent);
        assert_eq!(read(r#"{"names": ["a", 2, null, "b"]}"#).names, ["a", "b"]);
    }
}
