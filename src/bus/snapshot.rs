//! The store as one batch of requests sees it: read once for the batch
//! ([`Snapshot::read`]: only the keys asked for, each bounded), each value
//! checked and base64-encoded at most once, whatever the number of requests
//! asking for it.

use base64::Engine;

use super::commands::Query;
use super::error::{BusError, ErrorCode};
use super::history::{self, HistoryQuery};
use super::message::BASE64;
use crate::redis::keys;
use crate::store::fetch::Fetched;
use crate::store::MAX_STORED;
use crate::tasks::NAMES;

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
    Unchecked(Fetched),
    /// Checked to be JSON; its base64 made on first use.
    Json {
        json: String,
        b64: Option<String>,
    },
    /// The key holds something that cannot be served, and why.
    Corrupt(String),
}

impl Stored {
    /// Checks an unchecked value once: the store writes JSON, but Redis is
    /// open to anyone on the node.
    fn check(&mut self, name: &str) -> &mut Stored {
        if let Stored::Unchecked(fetched) = self {
            let fetched = std::mem::replace(fetched, Fetched::Absent);
            let key = keys::result(name);
            *self = match crate::store::checked(&key, fetched) {
                Ok(None) => Stored::Absent,
                Ok(Some(json)) => Stored::Json { json, b64: None },
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::warn!(key = %key, error = %crate::logging::Escaped(&why), "stored result cannot be served");
                    Stored::Corrupt(why)
                }
            };
        }
        self
    }
}

impl Snapshot {
    /// From `(name, stored JSON)` pairs of the known tasks, as read with
    /// one MGET of their keys.
    pub fn new(raw: Vec<(&'static str, Option<String>)>) -> Snapshot {
        Self::fetched(
            raw.into_iter()
                .map(|(name, v)| {
                    (
                        name,
                        v.map_or(Fetched::Absent, |v| Fetched::Bytes(v.into_bytes())),
                    )
                })
                .collect(),
        )
    }

    /// From the values of the known tasks as the transport fetched them
    /// (bytes, checked here on first use).
    pub fn fetched(raw: Vec<(&'static str, Fetched)>) -> Snapshot {
        let results = raw
            .into_iter()
            .map(|(name, f)| (name, Stored::Unchecked(f)))
            .collect();
        Snapshot {
            results,
            all: None,
            histories: Vec::new(),
        }
    }

    /// Reads what `queries` ask for, and nothing else: the results, each
    /// bounded ([`MAX_STORED`]: a longer value is never transferred), and the
    /// history lists. What the local and relay transports answer from.
    pub async fn read(
        conn: &mut impl redis::aio::ConnectionLike,
        queries: &[Query],
    ) -> redis::RedisResult<Snapshot> {
        let mut wanted: Vec<&'static str> = Vec::new();
        for q in queries {
            match q {
                Query::All => {
                    wanted = NAMES.to_vec();
                    break;
                }
                Query::One(name) if !wanted.contains(name) => wanted.push(name),
                _ => {}
            }
        }
        let keys: Vec<String> = wanted.iter().map(|n| keys::result(n)).collect();
        let fetched = crate::store::fetch::fetch(conn, &keys, MAX_STORED).await?;
        let mut snapshot = Snapshot::fetched(wanted.into_iter().zip(fetched).collect());
        snapshot.read_histories(conn, queries).await?;
        Ok(snapshot)
    }

    /// Reads, in one pipeline, the history lists the `zos.perf.history`
    /// queries among `asked` ask for.
    async fn read_histories(
        &mut self,
        conn: &mut impl redis::aio::ConnectionLike,
        asked: &[Query],
    ) -> redis::RedisResult<()> {
        let mut queries: Vec<HistoryQuery> = Vec::new();
        for a in asked {
            if let Query::History(q) = *a {
                if !queries.contains(&q) {
                    queries.push(q);
                }
            }
        }
        if queries.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for q in &queries {
            pipe.lrange(keys::history(q.name), 0, q.limit as isize - 1);
        }
        let lists: Vec<Vec<String>> = match pipe.query_async(conn).await {
            Ok(lists) => lists,
            // A key of another type (Redis is open to anyone on the node):
            // those requests get an error, the rest of the batch its answers.
            Err(e) if !e.is_io_error() && !e.is_timeout() && !e.is_connection_dropped() => {
                let why = crate::util::text::clip(&format!("reading history lists: {e}"), 200);
                tracing::warn!(error = %crate::logging::Escaped(&why), "history cannot be served");
                for q in queries {
                    let err = BusError::new(ErrorCode::StoredResultInvalid, why.clone());
                    self.histories.push((q, Err(err)));
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        for (q, records) in queries.into_iter().zip(lists) {
            self.add_history(q, &records);
        }
        Ok(())
    }

    /// Adds the records read for a history query (newest first).
    pub(crate) fn add_history(&mut self, query: HistoryQuery, records: &[String]) {
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
                    Stored::Corrupt(why) => Err(BusError::new(
                        ErrorCode::StoredResultInvalid,
                        crate::util::text::clip(why, 200),
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
    fn a_value_that_cannot_be_served_is_error_8_naming_key_and_reason() {
        let mut s = Snapshot::fetched(vec![
            ("healthcheck", Fetched::Bytes(b"\xff\xfe{}".to_vec())),
            ("iperf", Fetched::TooLarge(100 << 20)),
            ("cpu-benchmark", Fetched::WrongType("hash".into())),
            (
                "public-ip-validation",
                Fetched::Bytes(br#"{"ok":1}"#.to_vec()),
            ),
        ]);
        for (name, why) in [
            ("healthcheck", "not UTF-8"),
            ("iperf", "the limit is"),
            ("cpu-benchmark", "holds a hash"),
        ] {
            let e = s.answer(Query::One(name)).expect_err(name);
            assert_eq!(e.code, 8, "{e}");
            assert!(e.message.contains(&format!("perf.{name}")), "{e}");
            assert!(e.message.contains(why), "{e}");
        }
        assert!(s.answer(Query::One("public-ip-validation")).is_ok());
        let decode = |b: &str| String::from_utf8(BASE64.decode(b).expect("b64")).expect("utf8");
        assert_eq!(decode(s.answer(Query::All).expect("all")), r#"[{"ok":1}]"#);
    }
}
