//! The stored record of one task run: what `perf.<name>` holds.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The stored form of one run (docs/redis.md): exactly these four fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskResult {
    pub name: String,
    pub description: String,
    /// Unix seconds when the run finished.
    pub timestamp: i64,
    pub result: Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_value_has_exactly_the_four_fields_with_an_integer_timestamp() {
        let r = TaskResult {
            name: "cpu-benchmark".into(),
            description: "d".into(),
            timestamp: 1_700_000_000,
            result: serde_json::json!({"single": 1.0}),
        };
        let v: Value = serde_json::to_value(&r).expect("serialize");
        let obj = v.as_object().expect("object");
        let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
        keys.sort();
        assert_eq!(keys, ["description", "name", "result", "timestamp"]);
        assert!(obj["timestamp"].is_i64());
    }

    #[test]
    fn a_value_with_an_extra_field_is_refused() {
        let bad = r#"{"name":"x","description":"d","timestamp":1,"result":null,"extra":1}"#;
        assert!(serde_json::from_str::<TaskResult>(bad).is_err());
    }
}
