//! The bus commands (docs/bus.md), answered from the result store.
//!
//! - `zos.perf.get`, payload `{"Name": "<task name>"}` (the key in any
//!   case): the stored result object of that task, or `result not found`.
//! - `zos.perf.get_all`, payload ignored: the array of every stored result
//!   object, `[]` when there is none.
//! - `zos.perf.history` (an extension, see [`super::history`]): a task's
//!   stored records, newest first.
//!
//! Each batch of requests is answered from one read of the store
//! ([`super::snapshot::Snapshot`]).

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::Value;

use super::error::{task_name, BusError, ErrorCode};
use super::history::{self, HistoryQuery};

/// A command this service answers, and the list its requests arrive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Command {
    Get,
    GetAll,
    History,
}

impl Command {
    pub const ALL: [Command; 3] = [Command::Get, Command::GetAll, Command::History];

    /// The command's wire name.
    pub fn name(self) -> &'static str {
        match self {
            Command::Get => "zos.perf.get",
            Command::GetAll => "zos.perf.get_all",
            Command::History => "zos.perf.history",
        }
    }

    /// The list the peer pushes its requests onto: `msgbus.<command>`.
    pub fn list(self) -> &'static str {
        match self {
            Command::Get => "msgbus.zos.perf.get",
            Command::GetAll => "msgbus.zos.perf.get_all",
            Command::History => "msgbus.zos.perf.history",
        }
    }

    pub(crate) fn from_list(list: &str) -> Option<Command> {
        Self::ALL.into_iter().find(|c| c.list() == list)
    }

    /// What a request asks for, from its decoded payload.
    pub fn query(self, payload: &[u8]) -> Result<Query, BusError> {
        match self {
            Command::Get => parse_get(payload).map(Query::One),
            Command::GetAll => Ok(Query::All),
            Command::History => history::parse(payload).map(Query::History),
        }
    }

    /// Whether the payload matters (and so must be decoded) at all.
    pub(crate) fn reads_payload(self) -> bool {
        self != Command::GetAll
    }

    /// Position in [`Command::ALL`].
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

/// What one request asks of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Query {
    One(&'static str),
    All,
    History(HistoryQuery),
}

const EXPECTED_GET: &str = r#"payload is not the expected JSON {"Name": "<task name>"}"#;

/// The payload as the peer's callers write it, exactly: `{"Name": ...}` or
/// `{"name": ...}` and nothing else. Read without building a JSON tree;
/// anything else takes the general path.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlainGet<'a> {
    #[serde(rename = "Name", alias = "name", borrow)]
    name: Cow<'a, str>,
}

/// `{"Name": "<task name>"}`, the key matched case-insensitively.
fn parse_get(payload: &[u8]) -> Result<&'static str, BusError> {
    // A derived struct would also take `["iperf"]`: objects only.
    if payload.trim_ascii_start().starts_with(b"{") {
        if let Ok(plain) = serde_json::from_slice::<PlainGet>(payload) {
            return task_name(&plain.name);
        }
    }
    let invalid = |what: String| BusError::new(ErrorCode::InvalidPayload, what);
    let value: Value = serde_json::from_slice(payload)
        .map_err(|e| invalid(format!("payload is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(invalid(format!("{EXPECTED_GET}: not an object")));
    };
    let mut keys = map.iter().filter(|(k, _)| k.eq_ignore_ascii_case("name"));
    let Some((key, name)) = keys.next() else {
        return Err(invalid(format!("{EXPECTED_GET}: no \"Name\" key")));
    };
    if let Some((other, _)) = keys.next() {
        return Err(invalid(format!(
            "{EXPECTED_GET}: both {key:?} and {other:?} given"
        )));
    }
    let Some(name) = name.as_str() else {
        return Err(invalid(format!("{EXPECTED_GET}: {key:?} is not a string")));
    };
    task_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<&'static str, BusError>) -> u32 {
        r.expect_err("should fail").code
    }

    #[test]
    fn name_key_is_case_insensitive() {
        for p in [
            r#"{"Name":"iperf"}"#,
            r#"{"name":"iperf"}"#,
            r#"{"NAME":"iperf","other":1}"#,
        ] {
            assert_eq!(parse_get(p.as_bytes()).expect(p), "iperf");
        }
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        assert_eq!(code(parse_get(b"nope")), 5);
        assert_eq!(code(parse_get(b"[]")), 5);
        assert_eq!(code(parse_get(br#"["iperf"]"#)), 5);
        assert_eq!(
            code(parse_get(br#"{"Name":"iperf","x":1,"name":"iperf"}"#)),
            5
        );
        assert_eq!(code(parse_get(b"{}")), 5);
        assert_eq!(code(parse_get(br#"{"Name":1}"#)), 5);
        assert_eq!(code(parse_get(br#"{"Name":"iperf","name":"iperf"}"#)), 5);
        let e = parse_get(br#"{"Name":"bogus"}"#).expect_err("unknown");
        assert_eq!(e.code, 6);
        assert!(e.message.contains("\"bogus\""), "{}", e.message);
        let e = parse_get(br#"{"Name":""}"#).expect_err("empty");
        assert_eq!(e.code, 6);
        assert!(e.message.contains("\"\" is empty"), "{}", e.message);
    }
}
