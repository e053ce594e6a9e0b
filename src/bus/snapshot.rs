//! The store as one batch of requests sees it: read once with the pop
//! (one MGET of the known keys), each value checked and base64-encoded at
//! most once, whatever the number of requests asking for it.

use base64::Engine;
use serde::de::IgnoredAny;

use super::commands::Query;
use super::error::{BusError, ErrorCode};
use super::message::BASE64;
use crate::redis::keys;

/// The store as read for one batch, each value checked and encoded at
/// most once, and only when a request of the batch asks for it.
pub struct Snapshot {
    results: Vec<(&'static str, Stored)>,
    all: Option<String>,
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
                tracing::warn!(key = %keys::result(name), "stored result is not JSON; not serving it");
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
        Snapshot { results, all: None }
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
                        format!("stored value of {} is not JSON", keys::result(name)),
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
