//! The two bus commands of SPEC §4, answered from the result store.
//!
//! - `zos.perf.get`, payload `{"Name": "<task name>"}` (the key in any
//!   case): the stored result object of that task, or `result not found`.
//! - `zos.perf.get_all`, payload ignored: the array of every stored result
//!   object, `[]` when there is none.
//! - `zos.perf.history` (an extension, see [`super::history`]): a task's
//!   stored records, newest first.
//!
//! The handler reads the store once per batch of requests ([`Snapshot`]:
//! one MGET of the four known keys) and answers every request of the batch
//! from it, base64-encoding each distinct answer once.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

use super::error::{BusError, ErrorCode};
use super::history::{self, HistoryQuery};
use super::message::BASE64;
use crate::tasks;
use base64::Engine;

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

    pub fn from_list(list: &str) -> Option<Command> {
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
    pub fn reads_payload(self) -> bool {
        self != Command::GetAll
    }

    /// Position in [`Command::ALL`].
    pub fn index(self) -> usize {
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

/// The task asked for, if it is one.
pub(super) fn task_name(name: &str) -> Result<&'static str, BusError> {
    if let Some(name) = tasks::canonical(name) {
        return Ok(name);
    }
    let known = tasks::NAMES.join(", ");
    if name.is_empty() {
        return Err(BusError::new(
            ErrorCode::UnknownTask,
            format!("task name \"\" is empty (known: {known})"),
        ));
    }
    Err(BusError::new(
        ErrorCode::UnknownTask,
        format!("unknown task name {:?} (known: {known})", clip(name, 100)),
    ))
}

/// At most `max` characters of `s`, marked when cut: a caller's junk must
/// not blow up our replies and logs.
pub fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &s[..at]),
        None => s.to_string(),
    }
}

/// The store as read for one batch, each value checked and encoded at
/// most once, and only when a request of the batch asks for it.
pub struct Snapshot {
    results: Vec<(&'static str, Stored)>,
    all: Option<String>,
    /// History lists read for this batch, and their base64 answers.
    histories: Vec<(HistoryQuery, Result<String, BusError>)>,
}

enum Stored {
    Absent,
    /// As read; not looked at yet.
    Unchecked(String),
    /// Checked to be JSON; its base64 made on first use.
    Json {
        json: String,
        b64: Option<String>,
    },
    /// The key holds something that is not JSON.
    Corrupt,
}

impl Stored {
    /// Checks an unchecked value once: the store writes JSON, but Redis is
    /// open to anyone on the node.
    fn check(&mut self, name: &str) -> &mut Stored {
        if let Stored::Unchecked(raw) = self {
            let raw = std::mem::take(raw);
            *self = if serde_json::from_str::<IgnoredAny>(&raw).is_ok() {
                Stored::Json {
                    json: raw,
                    b64: None,
                }
            } else {
                tracing::warn!(key = %format!("perf.{name}"), "stored result is not JSON; not serving it");
                Stored::Corrupt
            };
        }
        self
    }
}

impl Snapshot {
    /// From `(name, stored JSON)` pairs of the known tasks, as read with
    /// one MGET of their keys.
    pub fn new(raw: Vec<(&'static str, Option<String>)>) -> Snapshot {
        let results = raw
            .into_iter()
            .map(|(name, json)| (name, json.map_or(Stored::Absent, Stored::Unchecked)))
            .collect();
        Snapshot {
            results,
            all: None,
            histories: Vec::new(),
        }
    }

    /// Adds the records read for a history query (newest first).
    pub fn add_history(&mut self, query: HistoryQuery, records: &[String]) {
        let answer = history::answer(query, records).map(|json| BASE64.encode(json));
        self.histories.push((query, answer));
    }

    /// The base64 answer to `query`, or the error to reply with.
    pub fn answer(&mut self, query: Query) -> Result<&str, BusError> {
        match query {
            Query::One(name) => {
                let Some((_, stored)) = self.results.iter_mut().find(|(n, _)| *n == name) else {
                    return Err(BusError::result_not_found());
                };
                match stored.check(name) {
                    Stored::Json { json, b64 } => {
                        Ok(b64.get_or_insert_with(|| BASE64.encode(json.as_bytes())))
                    }
                    Stored::Corrupt => Err(BusError::new(
                        ErrorCode::StoredResultInvalid,
                        format!("stored value of perf.{name} is not JSON"),
                    )),
                    _ => Err(BusError::result_not_found()),
                }
            }
            Query::All => {
                if self.all.is_none() {
                    let mut parts: Vec<&str> = Vec::new();
                    for (name, stored) in self.results.iter_mut() {
                        if let Stored::Json { json, .. } = stored.check(name) {
                            parts.push(json);
                        }
                    }
                    self.all = Some(BASE64.encode(format!("[{}]", parts.join(","))));
                }
                Ok(self.all.as_deref().unwrap_or_default())
            }
            Query::History(q) => match self.histories.iter().find(|(h, _)| *h == q) {
                Some((_, Ok(b64))) => Ok(b64),
                Some((_, Err(e))) => Err(e.clone()),
                None => Err(BusError::result_not_found()),
            },
        }
    }
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

    #[test]
    fn snapshot_answers_from_what_is_stored() {
        let mut s = Snapshot::new(vec![
            ("public-ip-validation", None),
            ("cpu-benchmark", Some(r#"{"a":1}"#.into())),
            ("healthcheck", Some("not json".into())),
            ("iperf", Some("[]".into())),
        ]);
        let decode = |b: &str| String::from_utf8(BASE64.decode(b).expect("b64")).expect("utf8");
        let one = s.answer(Query::One("cpu-benchmark")).expect("stored");
        assert_eq!(decode(one), r#"{"a":1}"#);
        assert_eq!(
            s.answer(Query::One("public-ip-validation"))
                .expect_err("absent")
                .message,
            "result not found"
        );
        assert_eq!(
            s.answer(Query::One("healthcheck"))
                .expect_err("corrupt")
                .code,
            8
        );
        let all = s.answer(Query::All).expect("all");
        assert_eq!(decode(all), r#"[{"a":1},[]]"#);
    }

    #[test]
    fn clip_cuts_long_names() {
        assert_eq!(clip("abc", 5), "abc");
        assert_eq!(clip("abcdef", 3), "abc…");
    }
}
