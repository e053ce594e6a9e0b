//! The store as one batch of requests sees it: read once for the batch
//! ([`Snapshot::read`]: only the keys asked for, each bounded), each value
//! checked and base64-encoded at most once, whatever the number of requests
//! asking for it.

use base64::Engine;

use super::commands::Query;
use super::error::{BusError, ErrorCode};
use super::history::{Dat, Entry, Shared, MAX_ANSWER};
use super::message::BASE64;
use crate::node_redis::keys;
use crate::store::fetch::Fetched;
use crate::store::MAX_STORED;
use crate::tasks::NAMES;

/// The store as read for one batch, each value checked and encoded at
/// most once, and only when a request of the batch asks for it.
pub struct Snapshot {
    results: Vec<(&'static str, Stored)>,
    all: Option<String>,
    /// History lists read for this batch (one task at a time on the local
    /// transport), each answering every `Limit`.
    histories: Vec<(&'static str, Result<Shared, BusError>)>,
    /// An answer made of a part and a tail, put together for
    /// [`Snapshot::answer`] (the relay's single requests).
    scratch: String,
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
            scratch: String::new(),
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

    /// Reads the history lists the `zos.perf.history` queries among
    /// `asked` ask for, one read per task.
    async fn read_histories(
        &mut self,
        conn: &mut impl redis::aio::ConnectionLike,
        asked: &[Query],
    ) -> redis::RedisResult<()> {
        let mut wanted: Vec<(&'static str, usize)> = Vec::new();
        for a in asked {
            if let Query::History(q) = *a {
                match wanted.iter_mut().find(|(n, _)| *n == q.name) {
                    Some((_, limit)) => *limit = (*limit).max(q.limit),
                    None => wanted.push((q.name, q.limit)),
                }
            }
        }
        for (name, limit) in wanted {
            self.read_history(conn, name, limit).await?;
        }
        Ok(())
    }

    /// Reads the newest `limit` entries of a task's history (at most
    /// [`MAX_ANSWER`] bytes of them, each at most [`MAX_STORED`]), bounded
    /// inside Redis, to answer every `zos.perf.history` request for it.
    pub(crate) async fn read_history(
        &mut self,
        conn: &mut impl redis::aio::ConnectionLike,
        name: &'static str,
        limit: usize,
    ) -> redis::RedisResult<()> {
        let key = keys::history(name);
        let read = read_entries(conn, &key, limit).await?;
        let shared = match read {
            Read::Entries { entries, capped } => {
                if capped {
                    tracing::debug!(key = %key, limit, max_bytes = MAX_ANSWER,
                        "history answer capped: the newest records that fit");
                }
                Ok(Shared::build(name, entries))
            }
            Read::WrongType(kind) => {
                let why = format!(
                    "{key} holds a {}, not a list",
                    crate::util::text::clip(&kind, 40)
                );
                tracing::warn!(error = %crate::logging::Escaped(&why), "history cannot be served");
                Err(BusError::new(ErrorCode::StoredResultInvalid, why))
            }
        };
        self.histories.retain(|(n, _)| *n != name);
        self.histories.push((name, shared));
        Ok(())
    }

    /// Drops the history lists read so far.
    pub(crate) fn forget_histories(&mut self) {
        self.histories.clear();
    }

    /// The base64 answer to `query` as a part and a short tail (a history
    /// answer for fewer records than were read), or the error to reply with.
    pub fn dat(&mut self, query: Query) -> Result<Dat<'_>, BusError> {
        match query {
            Query::History(q) => match self.histories.iter().find(|(n, _)| *n == q.name) {
                Some((_, Ok(shared))) => shared.dat(q.limit),
                Some((_, Err(e))) => Err(e.clone()),
                None => Err(BusError::result_not_found()),
            },
            other => self.answer(other).map(Dat::whole),
        }
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
            Query::History(q) => {
                let (len, tail) = {
                    let dat = self.dat(query)?;
                    (dat.head.len(), dat.tail().to_string())
                };
                let Some((_, Ok(shared))) = self.histories.iter().find(|(n, _)| *n == q.name)
                else {
                    return Err(BusError::result_not_found());
                };
                let head = &shared.text()[..len];
                if tail.is_empty() {
                    return Ok(head);
                }
                self.scratch = format!("{head}{tail}");
                Ok(&self.scratch)
            }
        }
    }
}

/// A history list as read.
enum Read {
    Entries { entries: Vec<Entry>, capped: bool },
    WrongType(String),
}

/// `KEYS[1]` a history list, `ARGV` limit, largest record, most bytes in
/// all: the newest entries, a record over the size limit as its length
/// only, stopping before the byte limit (`capped`). Read in slices of 32,
/// so Redis never builds a table of the whole list.
const READ: &str = r#"
local limit, maxrec, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TYPE', KEYS[1]).ok
if t == 'none' then return {'ok', {}} end
if t ~= 'list' then return {'wrongtype', t} end
local out, total, i = {}, 0, 0
while i < limit do
  local last = math.min(i + 31, limit - 1)
  local slice = redis.call('LRANGE', KEYS[1], i, last)
  for _, v in ipairs(slice) do
    local n = string.len(v)
    if n > maxrec then
      out[#out + 1] = n
    else
      if total + n > budget then return {'capped', out} end
      total = total + n
      out[#out + 1] = v
    end
  end
  if #slice < last - i + 1 then break end
  i = last + 1
end
return {'ok', out}
"#;

async fn read_entries(
    conn: &mut impl redis::aio::ConnectionLike,
    key: &str,
    limit: usize,
) -> redis::RedisResult<Read> {
    use crate::store::fetch::{bad, tagged};
    use redis::Value;
    let reply: Value = redis::cmd("EVAL")
        .arg(READ)
        .arg(1)
        .arg(key)
        .arg(limit)
        .arg(MAX_STORED)
        .arg(MAX_ANSWER)
        .query_async(conn)
        .await?;
    let (tag, mut rest) = tagged(reply)?;
    let items = match (tag.as_str(), rest.pop()) {
        ("wrongtype", Some(t)) => return Ok(Read::WrongType(redis::from_redis_value(t)?)),
        ("ok" | "capped", Some(Value::Array(items))) => items,
        // An empty Lua table may come back as an empty array or as nil.
        ("ok" | "capped", Some(Value::Nil) | None) => Vec::new(),
        _ => return Err(bad(&tag)),
    };
    let entries = items
        .into_iter()
        .map(|v| match v {
            Value::Int(n) => Ok(Entry::TooLarge(usize::try_from(n).unwrap_or(0))),
            Value::BulkString(b) => Ok(Entry::Record(b)),
            _ => Err(bad("history entry")),
        })
        .collect::<redis::RedisResult<_>>()?;
    Ok(Read::Entries {
        entries,
        capped: tag == "capped",
    })
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
