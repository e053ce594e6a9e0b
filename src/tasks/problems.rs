//! How many problems a completed run found, read from its result: a run
//! can finish (outcome `ok`) and still report six unreachable services.
//! `perf:status` carries the count so `zos-perf tasks` shows `ok, 6
//! problems` rather than a bare `ok`.

use serde_json::Value;

use super::{CPU_BENCHMARK, HEALTHCHECK, IPERF, PUBLIC_IP_VALIDATION};

/// The problems in `result`, a result of the task `name`:
///
/// - healthcheck: every error string of every check (`cache`, `network`);
/// - iperf: every entry with a non-empty `error`;
/// - public-ip-validation: every IP whose state is `invalid`;
/// - cpu-benchmark: none (it measures, it does not judge);
/// - any other task whose result is an array of strings (provisiontest's
///   list of errors): its length.
pub fn count(name: &str, result: &Value) -> u64 {
    let n = match name {
        CPU_BENCHMARK => 0,
        HEALTHCHECK => result
            .as_object()
            .map(|checks| {
                checks
                    .values()
                    .filter_map(Value::as_array)
                    .map(Vec::len)
                    .sum()
            })
            .unwrap_or(0),
        IPERF => result
            .as_array()
            .map(|entries| {
                entries
                    .iter()
                    .filter(|e| {
                        e.get("error")
                            .and_then(Value::as_str)
                            .is_some_and(|s| !s.is_empty())
                    })
                    .count()
            })
            .unwrap_or(0),
        PUBLIC_IP_VALIDATION => result
            .as_object()
            .map(|ips| {
                ips.values()
                    .filter(|o| o.get("state").and_then(Value::as_str) == Some("invalid"))
                    .count()
            })
            .unwrap_or(0),
        // provisiontest, and any task whose result is a list of errors.
        _ => result
            .as_array()
            .map(|items| items.iter().filter(|i| i.is_string()).count())
            .unwrap_or(0),
    };
    n as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::PROVISIONTEST;
    use serde_json::json;

    #[test]
    fn each_shape_counts_its_problems() {
        assert_eq!(count(CPU_BENCHMARK, &json!({"single": 1.0})), 0);
        assert_eq!(
            count(HEALTHCHECK, &json!({"cache": ["a"], "network": ["b", "c"]})),
            3
        );
        assert_eq!(count(HEALTHCHECK, &json!({"cache": [], "network": []})), 0);
        assert_eq!(
            count(IPERF, &json!([{"error": ""}, {"error": "unreachable"}])),
            1
        );
        assert_eq!(
            count(
                PUBLIC_IP_VALIDATION,
                &json!({"a": {"state": "valid"}, "b": {"state": "invalid"}, "c": {"state": "skipped"}})
            ),
            1
        );
        assert_eq!(count(PROVISIONTEST, &json!(["boot failed", "no ssh"])), 2);
        assert_eq!(count(PROVISIONTEST, &json!([])), 0);
    }
}
