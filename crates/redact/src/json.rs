//! Redacting JSON: every string and object key, so that a secret written with JSON escapes is
//! found too and the result stays JSON.

use serde_json::Value;

use crate::redacted::Redacted;
use crate::redactor::Redactor;

impl Redactor {
    /// Redacts every string (and object key) inside a JSON value, in place. Returns whether
    /// anything changed.
    pub fn redact_json(&self, value: &mut Value) -> bool {
        match value {
            Value::String(text) => match self.replaced(text) {
                Some(redacted) => {
                    *text = redacted;
                    true
                }
                None => false,
            },
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |changed, item| self.redact_json(item) | changed),
            Value::Object(map) => {
                let mut changed = false;
                if map.keys().any(|key| self.has_secret(key)) {
                    let entries = std::mem::take(map);
                    for (key, value) in entries {
                        map.insert(self.redact_owned(key).into_string(), value);
                    }
                    changed = true;
                }
                map.values_mut()
                    .fold(changed, |changed, item| self.redact_json(item) | changed)
            }
            Value::Null | Value::Bool(_) | Value::Number(_) => false,
        }
    }

    /// A JSON value as compact JSON text, with every string and key in it redacted: for a
    /// detail composed of fields, which is redacted once, whole, instead of field by field.
    pub fn redact_json_value(&self, mut value: Value) -> Redacted {
        self.redact_json(&mut value);
        Redacted::by_redactor(value.to_string())
    }

    /// Redacts text that may be JSON: a JSON document has its strings redacted (so a secret
    /// written with JSON escapes is found too, and the result stays JSON, written compactly),
    /// anything else is redacted as plain text. Text with nothing to redact comes back as it
    /// was, its layout included.
    pub fn redact_json_text(&self, text: &str) -> Redacted {
        // Without a backslash the JSON text holds every string verbatim, so a plain search
        // that finds nothing proves there is nothing to do.
        if !text.contains('\\') && !self.has_secret(text) {
            return Redacted::by_redactor(text.to_owned());
        }
        let Ok(mut value) = serde_json::from_str::<Value>(text) else {
            return self.redact(text);
        };
        if self.redact_json(&mut value) {
            Redacted::by_redactor(value.to_string())
        } else {
            Redacted::by_redactor(text.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_and_keys_are_redacted_even_when_escaped() {
        let redactor = Redactor::new().with_value("WEIRD_TOKEN", "quote\"d-secret-value");
        assert_eq!(redactor.names().collect::<Vec<_>>(), ["WEIRD_TOKEN"]);
        let text = serde_json::json!({
            "reason": "printed quote\"d-secret-value and ghp_FAKE0123456789abcdefghijklmnopqrstu",
            "nested": [{ "quote\"d-secret-value": 1 }],
            "count": 3,
        })
        .to_string();
        assert!(!text.contains("quote\"d-secret-value"), "escaped in JSON");
        let redacted = redactor.redact_json_text(&text);
        assert!(!redacted.as_str().contains("secret-value"), "{redacted}");
        assert!(!redacted.as_str().contains("ghp_FAKE"), "{redacted}");
        let value: Value = serde_json::from_str(redacted.as_str()).unwrap();
        assert_eq!(
            value["reason"],
            "printed [redacted WEIRD_TOKEN] and [redacted]"
        );
        assert_eq!(value["nested"][0]["[redacted WEIRD_TOKEN]"], 1);
        assert_eq!(value["count"], 3);
        // Plain text, and JSON with nothing to redact, come back as they were.
        assert_eq!(
            redactor.redact_json_text(r#"{"a": "b\n"}"#),
            r#"{"a": "b\n"}"#
        );
        assert_eq!(
            redactor.redact_json_text("not json: quote\"d-secret-value"),
            "not json: [redacted WEIRD_TOKEN]"
        );
    }

    #[test]
    fn a_json_value_is_redacted_in_place_and_says_whether_it_changed() {
        let redactor = Redactor::new().with_value("DB_PASSWORD", "pa\"ss-word-FAKE-0042");
        let mut value = serde_json::json!({
            "outer": { "list": ["fine", "uses pa\"ss-word-FAKE-0042", 7, null, true] },
            "pa\"ss-word-FAKE-0042": { "Bearer eyJFAKE.fake0123456789.sig": "x" },
        });
        assert!(redactor.redact_json(&mut value));
        assert_eq!(
            value,
            serde_json::json!({
                "outer": { "list": ["fine", "uses [redacted DB_PASSWORD]", 7, null, true] },
                "[redacted DB_PASSWORD]": { "Bearer [redacted]": "x" },
            })
        );
        // A second pass over redacted JSON finds nothing more.
        assert!(!redactor.redact_json(&mut value));
        let mut plain = serde_json::json!({ "n": 1, "s": ["a", "b"] });
        assert!(!redactor.redact_json(&mut plain));
    }

    #[test]
    fn a_composed_json_value_becomes_redacted_json_text() {
        let redactor = Redactor::new().with_value("DB_PASSWORD", "pa\"ss-word-FAKE-0042");
        let detail = serde_json::json!({
            "from": "running",
            "reason": "the check printed pa\"ss-word-FAKE-0042",
            "runner": { "pid": 42 },
        });
        let text = redactor.redact_json_value(detail);
        let value: Value = serde_json::from_str(text.as_str()).unwrap();
        assert_eq!(value["reason"], "the check printed [redacted DB_PASSWORD]");
        assert_eq!(value["runner"]["pid"], 42);
        assert_eq!(
            redactor.redact_json_value(serde_json::json!({ "n": [1, null] })),
            r#"{"n":[1,null]}"#
        );
    }

    #[test]
    fn a_secret_split_by_a_json_escape_is_found_in_the_document_but_not_in_its_text() {
        // The escape `\u0041` is `A`: the raw text never holds the value, its string does.
        let redactor = Redactor::new().with_value("SERVICE_TOKEN", "FAKE-Atoken-0001");
        let text = r#"{"said":"FAKE-\u0041token-0001"}"#;
        assert_eq!(redactor.redact(text), text);
        assert_eq!(
            redactor.redact_json_text(text),
            r#"{"said":"[redacted SERVICE_TOKEN]"}"#
        );
    }
}
