//! The shape of each task's stored record, checked against the task's own
//! types: a result decodes into them, carries no field they lack, and the
//! description is the one the code stores. The samples in docs/tasks/ are
//! held to it (tests/docs_drift.rs), so a changed result type cannot leave
//! its page behind.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CPU_BENCHMARK, HEALTHCHECK, IPERF, PROVISIONTEST, PUBLIC_IP_VALIDATION};

/// cpu-benchmark's result (built with `json!` in the task).
#[derive(Serialize, Deserialize)]
struct CpuResult {
    single: f64,
    multi: f64,
    threads: u64,
    workloads: u64,
}

/// The descriptions the code stores for `name`: one per mode.
pub fn descriptions(name: &str) -> Vec<&'static str> {
    match name {
        CPU_BENCHMARK => vec![super::cpu_benchmark::DESCRIPTION],
        HEALTHCHECK => vec![super::healthcheck::DESCRIPTION],
        IPERF => vec![
            super::iperf::Iperf::description_of(super::iperf::IperfMode::PublicServers),
            super::iperf::Iperf::description_of(super::iperf::IperfMode::GridNodes),
        ],
        PUBLIC_IP_VALIDATION => vec![super::public_ip::DESCRIPTION],
        PROVISIONTEST => vec![super::provisiontest::DESCRIPTION],
        _ => Vec::new(),
    }
}

/// How a record or result differs from what the code stores.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShapeError {
    #[error("a record is a JSON object")]
    NotAnObject,
    /// The record's fields, when they are not exactly the four.
    #[error("record fields {0:?}")]
    RecordFields(Vec<String>),
    #[error("name {found} in the record of {task}")]
    Name { found: Value, task: String },
    #[error("timestamp is not an integer")]
    Timestamp,
    #[error("description {found:?} is not the code's ({expected:?})")]
    Description {
        found: String,
        expected: Vec<&'static str>,
    },
    #[error("check labels {found:?}, not {expected:?}")]
    Labels {
        found: Vec<String>,
        expected: Vec<&'static str>,
    },
    #[error("no task {0:?}")]
    UnknownTask(String),
    /// The result does not decode into the task's type (serde's reason).
    #[error("{0}")]
    Decode(String),
    /// At `at`, the fields differ from those the type writes back.
    #[error("{at}: fields {found:?}, the type has {typed:?}")]
    Fields {
        at: String,
        found: Vec<String>,
        typed: Vec<String>,
    },
}

/// Checks a stored record `{"name", "description", "timestamp", "result"}`
/// of task `name`: its fields, its description, and its result (read as
/// the result of the mode the description names).
pub fn check_record(name: &str, record: &Value) -> Result<(), ShapeError> {
    let obj = record.as_object().ok_or(ShapeError::NotAnObject)?;
    let mut keys: Vec<String> = obj.keys().cloned().collect();
    keys.sort_unstable();
    if keys != ["description", "name", "result", "timestamp"] {
        return Err(ShapeError::RecordFields(keys));
    }
    if obj["name"] != name {
        return Err(ShapeError::Name {
            found: obj["name"].clone(),
            task: name.to_string(),
        });
    }
    if !obj["timestamp"].is_i64() {
        return Err(ShapeError::Timestamp);
    }
    let description = obj["description"].as_str().unwrap_or_default();
    if !descriptions(name).contains(&description) {
        return Err(ShapeError::Description {
            found: description.to_string(),
            expected: descriptions(name),
        });
    }
    check_result(name, Some(description), &obj["result"])
}

/// Checks a result of task `name`. For iperf, `description` (when known)
/// says the mode; without it either mode's shape passes.
pub fn check_result(
    name: &str,
    description: Option<&str>,
    result: &Value,
) -> Result<(), ShapeError> {
    use super::iperf::{public::PublicEntry, report::Entry};
    match name {
        CPU_BENCHMARK => same_shape::<CpuResult>(result),
        HEALTHCHECK => {
            same_shape::<BTreeMap<String, Vec<String>>>(result)?;
            let labels: Vec<&str> = super::healthcheck::Check::ALL
                .iter()
                .map(|c| c.label())
                .collect();
            let keys: Vec<String> = result
                .as_object()
                .map(|o| o.keys().cloned().collect())
                .unwrap_or_default();
            if keys != labels {
                return Err(ShapeError::Labels {
                    found: keys,
                    expected: labels,
                });
            }
            Ok(())
        }
        IPERF => {
            let public = super::iperf::public::DESCRIPTION;
            match description {
                Some(d) if d == public => same_shape::<Vec<PublicEntry>>(result),
                Some(_) => same_shape::<Vec<Entry>>(result),
                None => same_shape::<Vec<PublicEntry>>(result)
                    .or_else(|_| same_shape::<Vec<Entry>>(result)),
            }
        }
        PUBLIC_IP_VALIDATION => same_shape::<super::public_ip::Report>(result),
        PROVISIONTEST => same_shape::<Vec<String>>(result),
        other => Err(ShapeError::UnknownTask(other.to_string())),
    }
}

/// `value` decodes into `T`, and `T` written back has the same fields
/// (none dropped, none filled in by a default).
fn same_shape<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), ShapeError> {
    let decode = |e: serde_json::Error| ShapeError::Decode(e.to_string());
    let typed: T = serde_json::from_value(value.clone()).map_err(decode)?;
    let back = serde_json::to_value(&typed).map_err(decode)?;
    fields_match(value, &back, "result")
}

fn fields_match(a: &Value, b: &Value, at: &str) -> Result<(), ShapeError> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let kx: Vec<String> = x.keys().cloned().collect();
            let ky: Vec<String> = y.keys().cloned().collect();
            if kx != ky {
                return Err(ShapeError::Fields {
                    at: at.to_string(),
                    found: kx,
                    typed: ky,
                });
            }
            for (k, v) in x {
                fields_match(v, &y[k], &format!("{at}.{k}"))?;
            }
            Ok(())
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (v, w)) in x.iter().zip(y).enumerate() {
                fields_match(v, w, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_field_the_type_lacks_or_a_foreign_description_is_refused() {
        let record = |description: &str, result: Value| json!({"name": "healthcheck", "description": description, "timestamp": 1, "result": result});
        let d = super::super::healthcheck::DESCRIPTION;
        assert_eq!(
            check_record(
                "healthcheck",
                &record(d, json!({"cache": [], "network": []}))
            ),
            Ok(())
        );
        assert!(matches!(
            check_record(
                "healthcheck",
                &record("old", json!({"cache": [], "network": []}))
            ),
            Err(ShapeError::Description { .. })
        ));
        assert!(check_record("healthcheck", &record(d, json!({"cache": []}))).is_err());
        let entry = json!({"upload_speed": 1.0, "download_speed": 2.0, "server_host": "h",
            "server_ip": "198.51.100.1", "server_port": 5201, "test_type": "tcp", "error": "",
            "cpu_report": {"host_total": 0.0, "host_user": 0.0, "host_system": 0.0,
                           "remote_total": 0.0, "remote_user": 0.0, "remote_system": 0.0}});
        assert_eq!(check_result("iperf", None, &json!([entry.clone()])), Ok(()));
        let mut extra = entry.clone();
        extra["node_id"] = json!(3);
        assert!(check_result("iperf", None, &json!([extra])).is_err());
        let mut short = entry;
        short["cpu_report"]
            .as_object_mut()
            .map(|o| o.remove("host_user"));
        assert!(check_result("iperf", None, &json!([short])).is_err());
    }
}
