//! The messages of the RMB local protocol (docs/bus.md), as serde types.
//!
//! One type serves both ends: the handler reads requests borrowed from the
//! popped bytes (`Request<'_>`), the local client builds owned ones
//! (`Request<'static>`). Field names are wire facts and match rmb-rs's
//! `JsonIncomingRequest` / `JsonOutgoingResponse`.
//!
//! Reading is tolerant where it costs nothing: unknown fields are ignored,
//! `ref`, `tag` and `shm` may be absent (= null), `cmd` and `dat` may be
//! absent (= `""`). `ver`, `src`, `ret`, `exp` and `now` are required.
//! The list a request was popped from decides the command, as it does for
//! the peer that routed it there; `cmd` is carried, not checked.

use std::borrow::Cow;

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::error::BusError;

/// The protocol version this service speaks.
pub const VERSION: u64 = 1;

/// The schema named in successful replies.
pub const JSON_SCHEMA: &str = "application/json";

/// Largest payload accepted, in decoded bytes.
pub(crate) const MAX_PAYLOAD: usize = 64 * 1024;

/// Standard base64 with `=` padding, as the peer writes it.
pub const BASE64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A request as the peer pushes it onto `msgbus.<cmd>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request<'a> {
    pub ver: u64,
    /// The request's id; the reply carries it back unchanged.
    #[serde(rename = "ref", default, borrow, deserialize_with = "borrowed")]
    pub reference: Option<Cow<'a, str>>,
    /// The caller: `"<twin>"` or `"<twin>:<connection>"`; the reply's `dst`.
    #[serde(borrow)]
    pub src: Cow<'a, str>,
    #[serde(borrow, default)]
    pub cmd: Cow<'a, str>,
    /// Time to live in seconds, counted from `now`.
    pub exp: u64,
    /// Base64 of the payload.
    #[serde(borrow, default)]
    pub dat: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub tag: Option<Cow<'a, str>>,
    /// The list the reply goes to.
    #[serde(borrow)]
    pub ret: Cow<'a, str>,
    #[serde(default, borrow, deserialize_with = "borrowed")]
    pub shm: Option<Cow<'a, str>>,
    /// Unix seconds when the request was sent.
    pub now: u64,
}

/// An optional string, borrowed from the input where it has no escapes
/// (serde copies `Option<Cow<str>>` otherwise).
fn borrowed<'de: 'a, 'a, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'a, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'a>>::deserialize(d)?.map(|b| b.0))
}

impl Request<'_> {
    /// Whether the caller has given up: `now + exp` lies before `at`.
    pub(crate) fn expired_at(&self, at: u64) -> bool {
        self.now.saturating_add(self.exp) < at
    }
}

/// A reply as the service pushes it onto the request's `ret`: exactly the
/// fields `ver ref dat dst shm now err`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply<'a> {
    pub ver: u64,
    #[serde(rename = "ref")]
    pub reference: Option<Cow<'a, str>>,
    /// Base64 of the result JSON; `""` on error.
    pub dat: Cow<'a, str>,
    /// The request's `src`.
    pub dst: Cow<'a, str>,
    pub shm: Option<Cow<'a, str>>,
    pub now: u64,
    /// Readers accept it absent too.
    #[serde(default)]
    pub err: Option<BusError>,
}

impl<'a> Reply<'a> {
    /// A successful reply carrying `dat` (already base64).
    pub fn ok(reference: Option<&'a str>, dst: &'a str, dat: &'a str, now: u64) -> Reply<'a> {
        Reply {
            ver: VERSION,
            reference: reference.map(Cow::Borrowed),
            dat: Cow::Borrowed(dat),
            dst: Cow::Borrowed(dst),
            shm: Some(Cow::Borrowed(JSON_SCHEMA)),
            now,
            err: None,
        }
    }

    /// An error reply: empty `dat`, no schema.
    pub fn error(reference: Option<&'a str>, dst: &'a str, err: BusError, now: u64) -> Reply<'a> {
        Reply {
            ver: VERSION,
            reference: reference.map(Cow::Borrowed),
            dat: Cow::Borrowed(""),
            dst: Cow::Borrowed(dst),
            shm: None,
            now,
            err: Some(err),
        }
    }

    /// The reply as JSON, in one allocation.
    pub fn encode(&self) -> serde_json::Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(self.dat.len() + self.dst.len() + 128);
        serde_json::to_writer(&mut buf, self)?;
        Ok(buf)
    }

    /// What `Reply::ok(reference, dst, dat, now).encode()` gives, without
    /// scanning `dat` for characters to escape: `dat` must be our own
    /// base64, whose alphabet (`A-Z a-z 0-9 + / =`) never needs escaping.
    /// The bus writes one of these per request, and `dat` is most of it.
    /// `dat` is given in parts (a shared text and a tail of its own),
    /// written one after the other.
    pub(crate) fn encode_ok_parts(
        reference: Option<&str>,
        dst: &str,
        dat: [&str; 2],
        now: u64,
    ) -> serde_json::Result<Vec<u8>> {
        debug_assert!(dat
            .concat()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b)));
        let dat_len = dat[0].len() + dat[1].len();
        let mut buf = Vec::with_capacity(dat_len + dst.len() + 128);
        buf.extend_from_slice(b"{\"ver\":");
        serde_json::to_writer(&mut buf, &VERSION)?;
        buf.extend_from_slice(b",\"ref\":");
        serde_json::to_writer(&mut buf, &reference)?;
        buf.extend_from_slice(b",\"dat\":\"");
        buf.extend_from_slice(dat[0].as_bytes());
        buf.extend_from_slice(dat[1].as_bytes());
        buf.extend_from_slice(b"\",\"dst\":");
        serde_json::to_writer(&mut buf, dst)?;
        buf.extend_from_slice(b",\"shm\":");
        serde_json::to_writer(&mut buf, JSON_SCHEMA)?;
        buf.extend_from_slice(b",\"now\":");
        serde_json::to_writer(&mut buf, &now)?;
        buf.extend_from_slice(b",\"err\":null}");
        Ok(buf)
    }

    /// The result bytes, or the error the reply carries.
    pub fn result(&self) -> Result<Vec<u8>, ReplyProblem> {
        if let Some(err) = &self.err {
            return Err(ReplyProblem::Error(err.clone()));
        }
        BASE64
            .decode(self.dat.as_bytes())
            .map_err(|e| ReplyProblem::BadData(e.to_string()))
    }
}

/// Why a reply holds no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyProblem {
    #[error("{0}")]
    Error(BusError),
    #[error("reply dat is not valid base64: {0}")]
    BadData(String),
}

/// The decoded size of a base64 text, from its length alone: what the 64
/// KiB limit is checked against before any decoding is done.
pub(crate) fn decoded_len(b64: &str) -> usize {
    let bytes = b64.as_bytes();
    let pad = bytes.iter().rev().take(2).filter(|&&b| b == b'=').count();
    (bytes.len() / 4 * 3 + (bytes.len() % 4) * 3 / 4).saturating_sub(pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_has_exactly_the_protocol_fields() {
        let r = Reply::ok(None, "42:abc", "e30=", 7);
        let v: serde_json::Value = serde_json::to_value(&r).expect("encode");
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(keys, ["dat", "dst", "err", "now", "ref", "shm", "ver"]);
        assert!(v["ref"].is_null() && v["err"].is_null());
    }

    #[test]
    fn fast_encoding_is_the_serde_encoding() {
        for (reference, dst) in [
            (None, "42"),
            (Some("r-1"), "42:abc"),
            (Some("quote\" back\\ slash\n\u{1}"), "émoji ✓"),
        ] {
            let dat = BASE64.encode(br#"{"a": [1, 2, "\u00e9"]}"#);
            let fast =
                Reply::encode_ok_parts(reference, dst, [&dat[..5], &dat[5..]], 1_700_000_000)
                    .expect("fast");
            let slow = Reply::ok(reference, dst, &dat, 1_700_000_000)
                .encode()
                .expect("serde");
            assert_eq!(String::from_utf8(fast), String::from_utf8(slow));
        }
    }

    #[test]
    fn request_tolerates_unknown_and_absent_optional_fields() {
        let raw = r#"{"ver":1,"src":"7","exp":10,"ret":"r","now":1,"extra":[1,2]}"#;
        let r: Request = serde_json::from_str(raw).expect("decode");
        assert_eq!(r.reference, None);
        assert_eq!(r.dat, "");
        assert_eq!(r.ret, "r");
    }

    #[test]
    fn request_borrows_plain_strings() {
        let raw = r#"{"ver":1,"src":"7","exp":10,"ret":"r","now":1,"dat":"e30="}"#;
        let r: Request = serde_json::from_str(raw).expect("decode");
        assert!(matches!(r.dat, Cow::Borrowed(_)));
        let raw = r#"{"ver":1,"ref":"x","src":"7","exp":10,"ret":"r","now":1,"tag":null}"#;
        let r: Request = serde_json::from_str(raw).expect("decode");
        assert!(matches!(r.reference, Some(Cow::Borrowed("x"))));
        assert_eq!(r.tag, None);
        assert!(matches!(r.ret, Cow::Borrowed(_)));
    }

    #[test]
    fn decoded_len_matches_decoding() {
        for n in 0..40 {
            let data = vec![7u8; n];
            let b64 = BASE64.encode(&data);
            assert_eq!(decoded_len(&b64), n, "for {b64}");
        }
    }

    #[test]
    fn expiry_is_now_plus_exp_in_the_past() {
        let raw = r#"{"ver":1,"src":"7","exp":10,"ret":"r","now":100}"#;
        let r: Request = serde_json::from_str(raw).expect("decode");
        assert!(!r.expired_at(110));
        assert!(r.expired_at(111));
    }
}
