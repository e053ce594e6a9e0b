//! `zos.perf.history`: an extension of ours, not in the seed-era contract.
//!
//! Payload `{"Name": "<task name>", "Limit": N}` (keys in any case, `Limit`
//! optional: every record held). Answer: the JSON array of that task's
//! stored records, newest first, each the same object `zos.perf.get` gives.
//! Errors are those of `get`: 5 for a payload that is not this JSON (or a
//! `Limit` that is not an integer from 1 to the history's upper bound), 6 for
//! a name that is no task, 7 when the task has no history, 8 when every
//! record there is not JSON. Readers that only know `get` and `get_all`
//! never see this list: the peer routes by command.

use serde_json::Value;

use super::commands::task_name;
use super::error::{BusError, ErrorCode};
use crate::store::history::MAX_DEPTH;
use crate::util::text::clip;

const EXPECTED: &str = r#"payload is not the expected JSON {"Name": "<task name>", "Limit": N}"#;

/// What a history request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HistoryQuery {
    pub name: &'static str,
    pub limit: usize,
}

/// Reads a `zos.perf.history` payload.
pub fn parse(payload: &[u8]) -> Result<HistoryQuery, BusError> {
    let invalid = |what: String| BusError::new(ErrorCode::InvalidPayload, what);
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| invalid(format!("payload is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid(format!("{EXPECTED}: not an object")));
    };
    let one = |want: &str| -> Result<Option<&Value>, BusError> {
        let mut keys = map.iter().filter(|(k, _)| k.eq_ignore_ascii_case(want));
        let first = keys.next();
        if let (Some((a, _)), Some((b, _))) = (first, keys.next()) {
            return Err(invalid(format!("{EXPECTED}: both {a:?} and {b:?} given")));
        }
        Ok(first.map(|(_, v)| v))
    };
    let Some(name) = one("name")? else {
        return Err(invalid(format!("{EXPECTED}: no \"Name\" key")));
    };
    let Some(name) = name.as_str() else {
        return Err(invalid(format!("{EXPECTED}: \"Name\" is not a string")));
    };
    let limit = match one("limit")? {
        None | Some(Value::Null) => MAX_DEPTH,
        Some(v) => match v.as_u64() {
            Some(n) if (1..=MAX_DEPTH as u64).contains(&n) => n as usize,
            _ => {
                return Err(invalid(format!(
                    "{EXPECTED}: \"Limit\" {} is not an integer from 1 to {MAX_DEPTH}",
                    clip(&v.to_string(), 40)
                )))
            }
        },
    };
    Ok(HistoryQuery {
        name: task_name(name)?,
        limit,
    })
}

/// The answer's JSON from the records as read (newest first): records
/// that are not JSON are left out and logged.
pub fn answer(query: HistoryQuery, records: &[String]) -> Result<String, BusError> {
    if records.is_empty() {
        return Err(BusError::result_not_found());
    }
    let good: Vec<&str> = records
        .iter()
        .filter(|r| serde_json::from_str::<serde::de::IgnoredAny>(r).is_ok())
        .map(String::as_str)
        .collect();
    if good.len() < records.len() {
        tracing::warn!(key = %crate::redis::keys::history(query.name), bad = records.len() - good.len(),
            "history records that are not JSON; not serving them");
    }
    if good.is_empty() {
        return Err(BusError::new(
            ErrorCode::StoredResultInvalid,
            format!(
                "stored records of {} are not JSON",
                crate::redis::keys::history(query.name)
            ),
        ));
    }
    Ok(format!("[{}]", good.join(",")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_like_get_with_an_optional_limit() {
        let q = parse(br#"{"Name":"iperf","Limit":5}"#).expect("valid");
        assert_eq!((q.name, q.limit), ("iperf", 5));
        let q = parse(br#"{"name":"healthcheck"}"#).expect("valid");
        assert_eq!(q.limit, MAX_DEPTH);
        for bad in [
            &br#"{"Name":"iperf","Limit":0}"#[..],
            br#"{"Name":"iperf","Limit":-1}"#,
            br#"{"Name":"iperf","Limit":"5"}"#,
            br#"{"Name":"iperf","Limit":1e9}"#,
            br#"{"Limit":5}"#,
            br#"{"Name":"iperf","name":"iperf"}"#,
            b"[]",
            b"nope",
        ] {
            let e = parse(bad).expect_err("invalid");
            assert_eq!(e.code, 5, "{}: {e}", String::from_utf8_lossy(bad));
        }
        assert_eq!(parse(br#"{"Name":"bogus"}"#).expect_err("unknown").code, 6);
    }

    #[test]
    fn answers_keep_order_and_skip_junk() {
        let q = HistoryQuery {
            name: "iperf",
            limit: 3,
        };
        let recs = vec!["{\"t\":2}".to_string(), "junk".into(), "{\"t\":1}".into()];
        assert_eq!(answer(q, &recs).expect("ok"), r#"[{"t":2},{"t":1}]"#);
        assert_eq!(answer(q, &[]).expect_err("none").code, 7);
        assert_eq!(answer(q, &["junk".into()]).expect_err("bad").code, 8);
    }
}
