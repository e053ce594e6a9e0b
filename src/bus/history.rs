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

use base64::Engine;
use serde_json::Value;

use super::error::{task_name, BusError, ErrorCode};
use super::message::BASE64;
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

/// The most JSON bytes of records one answer holds: the newest records
/// that fit (a full default history of a big farm, 120 iperf results, is
/// about 5 MiB). Past it, an answer holds fewer records than `Limit` asks.
pub const MAX_ANSWER: usize = 8 << 20;

/// One entry of a history list as read (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Record(Vec<u8>),
    /// Longer than a stored result may be: its length only, never read.
    TooLarge(usize),
}

/// A task's records as read once for a batch, answering every `Limit` of
/// it from one base64 text: the answer for fewer records is a prefix of
/// that text and at most four characters more, so a burst of requests with
/// different limits costs one read, one encoding and no copy but the
/// replies themselves.
pub struct Shared {
    name: &'static str,
    /// Base64 of the JSON array of every good record read.
    b64: String,
    /// Per entry read: how many good records are among it and those before.
    good_upto: Vec<u32>,
    /// Per good record: the length of the array's JSON up to its last byte.
    ends: Vec<usize>,
}

/// The base64 `dat` of an answer: a part of a text held elsewhere and a
/// short tail of its own.
#[derive(Debug, Clone, Copy)]
pub struct Dat<'a> {
    pub head: &'a str,
    tail: [u8; 4],
    tail_len: u8,
}

impl<'a> Dat<'a> {
    /// A whole base64 text.
    pub fn whole(b64: &'a str) -> Dat<'a> {
        Dat {
            head: b64,
            tail: [0; 4],
            tail_len: 0,
        }
    }

    /// The characters after `head` (base64: always ASCII).
    pub fn tail(&self) -> &str {
        std::str::from_utf8(&self.tail[..usize::from(self.tail_len)]).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.head.len() + usize::from(self.tail_len)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn is_json(record: &[u8]) -> bool {
    std::str::from_utf8(record).is_ok()
        && serde_json::from_slice::<serde::de::IgnoredAny>(record).is_ok()
}

impl Shared {
    /// Encodes the entries read (newest first); each record is dropped as
    /// soon as it is encoded. Records that are not JSON are left out and
    /// logged.
    pub fn build(name: &'static str, entries: Vec<Entry>) -> Shared {
        use std::io::Write;
        let mut w = base64::write::EncoderStringWriter::new(&BASE64);
        let mut good_upto = Vec::with_capacity(entries.len());
        let mut ends = Vec::new();
        let mut len = 1;
        // Writing into a String cannot fail.
        let _ = w.write_all(b"[");
        for entry in entries {
            if let Entry::Record(r) = entry {
                if is_json(&r) {
                    if !ends.is_empty() {
                        let _ = w.write_all(b",");
                        len += 1;
                    }
                    let _ = w.write_all(&r);
                    len += r.len();
                    ends.push(len);
                }
            }
            good_upto.push(ends.len() as u32);
        }
        let _ = w.write_all(b"]");
        let bad = good_upto.len() - ends.len();
        if bad > 0 {
            tracing::warn!(key = %crate::node_redis::keys::history(name), bad,
                "history records that are not JSON (or too long); not serving them");
        }
        Shared {
            name,
            b64: w.into_inner(),
            good_upto,
            ends,
        }
    }

    /// The base64 of every good record read.
    pub fn text(&self) -> &str {
        &self.b64
    }

    /// The answer to a request for the newest `limit` entries.
    pub fn dat(&self, limit: usize) -> Result<Dat<'_>, BusError> {
        let read = limit.min(self.good_upto.len());
        if read == 0 {
            return Err(BusError::result_not_found());
        }
        let k = self.good_upto[read - 1] as usize;
        if k == 0 {
            return Err(BusError::new(
                ErrorCode::StoredResultInvalid,
                format!(
                    "stored records of {} are not JSON",
                    crate::node_redis::keys::history(self.name)
                ),
            ));
        }
        if k == self.ends.len() {
            return Ok(Dat::whole(&self.b64));
        }
        // The JSON up to the k-th record, then "]": whole groups of three
        // bytes are the text's own prefix; the rest is encoded here.
        let end = self.ends[k - 1];
        let q = end / 3 * 3;
        let at = q / 3 * 4;
        let group = self.b64.get(at..at + 4).unwrap_or_default();
        let mut bytes = BASE64.decode(group).unwrap_or_default();
        bytes.truncate(end - q);
        bytes.push(b']');
        let mut tail = [0u8; 4];
        let tail_len = BASE64.encode_slice(&bytes, &mut tail).unwrap_or_default();
        Ok(Dat {
            head: &self.b64[..at],
            tail,
            tail_len: tail_len as u8,
        })
    }
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

    fn decoded(d: Dat<'_>) -> String {
        let text = format!("{}{}", d.head, d.tail());
        String::from_utf8(BASE64.decode(text).expect("base64")).expect("utf8")
    }

    #[test]
    fn answers_keep_order_and_skip_junk() {
        let entries = |recs: &[&str]| -> Vec<Entry> {
            recs.iter()
                .map(|r| Entry::Record(r.as_bytes().to_vec()))
                .collect()
        };
        let s = Shared::build("iperf", entries(&["{\"t\":2}", "junk", "{\"t\":1}"]));
        assert_eq!(decoded(s.dat(3).expect("ok")), r#"[{"t":2},{"t":1}]"#);
        let empty = Shared::build("iperf", Vec::new());
        assert_eq!(empty.dat(3).expect_err("none").code, 7);
        let bad = Shared::build(
            "iperf",
            vec![Entry::Record(b"junk".to_vec()), Entry::TooLarge(9)],
        );
        assert_eq!(bad.dat(2).expect_err("bad").code, 8);
    }

    #[test]
    fn every_limit_is_a_prefix_of_one_text_and_a_short_tail() {
        // Records of every length modulo three, junk between them.
        let mut recs = Vec::new();
        for i in 0..40 {
            recs.push(Entry::Record(
                format!("{{\"i\":{i},\"p\":\"{}\"}}", "x".repeat(i % 7)).into_bytes(),
            ));
            if i % 9 == 4 {
                recs.push(Entry::Record(b"not json".to_vec()));
            }
            if i % 13 == 5 {
                recs.push(Entry::TooLarge(1 << 30));
            }
        }
        let s = Shared::build("cpu-benchmark", recs.clone());
        for limit in 1..=recs.len() + 3 {
            let want: Vec<String> = recs
                .iter()
                .take(limit)
                .filter_map(|e| match e {
                    Entry::Record(r) if is_json(r) => {
                        Some(String::from_utf8(r.clone()).expect("utf8"))
                    }
                    _ => None,
                })
                .collect();
            let d = s.dat(limit).expect("answer");
            assert!(d.tail().len() <= 4);
            assert_eq!(decoded(d), format!("[{}]", want.join(",")), "limit {limit}");
        }
    }
}
