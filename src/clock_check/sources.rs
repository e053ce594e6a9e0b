//! Where the clock check learns the time: tfchain, HTTP time services, and
//! the `Date` header of an HTTPS service, in that order of trust.
//!
//! - tfchain: `state_getStorage` of `Timestamp.Now` (the last block's
//!   time, a SCALE `u64` of milliseconds since 1970) over the chain's
//!   WebSocket JSON-RPC. Blocks come every 6 s, so it lags by up to that.
//! - time services: JSON with the time in `datetime` (RFC 3339, as
//!   worldtimeapi), `currentDateTime` (`2006-01-02T15:04Z`, minute precision,
//!   as worldclockapi) or `dateTime` (no zone, read as UTC, as timeapi.io).
//! - `Date` header: HTTP dates have whole seconds; any HTTPS service the
//!   node talks to has one.
//!
//! Every answer is bounded (size, time) and checked: a time that does not
//! parse, or lies before [`EARLIEST`], is a bad answer and the next source
//! is asked.

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use futures::future::BoxFuture;
use serde_json::Value;

use crate::grid::chain::{key, ChainClient, ChainError};
use crate::util::error::with_causes;
use crate::util::http::BodyError;

/// No honest source answers a time before this (2025-01-01T00:00:00Z): a
/// chain or service that does is broken, not the node's clock.
pub(crate) const EARLIEST: i64 = 1_735_689_600;

/// The most of a time service's answer read.
const MAX_BODY: usize = 64 * 1024;

/// Something that tells the time.
pub trait TimeSource: Send + Sync {
    /// How logs and `perf:status` name it.
    fn name(&self) -> String;
    /// The time it says it is now.
    fn time(&self) -> BoxFuture<'_, Result<DateTime<Utc>, TimeError>>;
}

/// Why a source gave no usable time; the check goes on to the next
/// source, and `perf:status` shows this text after the source's name.
#[derive(Debug, thiserror::Error)]
pub enum TimeError {
    #[error(transparent)]
    Chain(#[from] ChainError),
    #[error("Timestamp.Now holds no value")]
    NoMoment,
    #[error("Timestamp.Now is {0} bytes, not 8")]
    MomentLength(usize),
    #[error("Timestamp.Now {0} ms is out of range")]
    MomentRange(u64),
    /// No answer (refused, timed out, TLS), with its causes.
    #[error("{}", with_causes(.0))]
    Http(reqwest::Error),
    #[error("HTTP status {0}")]
    Status(reqwest::StatusCode),
    #[error("{0}")]
    Body(#[from] BodyError),
    #[error("answer is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("answer has no datetime, currentDateTime or dateTime string")]
    NoTimeField,
    #[error("answer has no Date header")]
    NoDateHeader,
    #[error("Date header is not text")]
    DateNotText,
    #[error("Date header {date:?}: {reason}")]
    DateHeader {
        date: String,
        reason: chrono::ParseError,
    },
    /// A time in none of the known formats (its start, quoted).
    #[error("time {0:?} is in no known format")]
    Format(String),
    /// A time before [`EARLIEST`].
    #[error("answered {0}, before 2025: not believable")]
    Implausible(DateTime<Utc>),
}

/// tfchain's `Timestamp.Now`.
pub(crate) struct Tfchain {
    pub client: ChainClient,
}

impl TimeSource for Tfchain {
    fn name(&self) -> String {
        "tfchain".into()
    }

    fn time(&self) -> BoxFuture<'_, Result<DateTime<Utc>, TimeError>> {
        Box::pin(async move {
            let bytes = self
                .client
                .get_storage(&key::plain("Timestamp", "Now"))
                .await?
                .ok_or(TimeError::NoMoment)?;
            let ms = decode_moment(&bytes)?;
            plausible(
                i64::try_from(ms)
                    .ok()
                    .and_then(DateTime::<Utc>::from_timestamp_millis)
                    .ok_or(TimeError::MomentRange(ms))?,
            )
        })
    }
}

/// A SCALE `u64` (little-endian, exactly 8 bytes).
pub(crate) fn decode_moment(bytes: &[u8]) -> Result<u64, TimeError> {
    let arr: [u8; 8] = bytes
        .try_into()
        .map_err(|_| TimeError::MomentLength(bytes.len()))?;
    Ok(u64::from_le_bytes(arr))
}

/// A JSON time service.
pub(crate) struct TimeService {
    pub url: String,
    pub http: reqwest::Client,
}

impl TimeSource for TimeService {
    fn name(&self) -> String {
        self.url.clone()
    }

    fn time(&self) -> BoxFuture<'_, Result<DateTime<Utc>, TimeError>> {
        Box::pin(async move {
            let response = self
                .http
                .get(&self.url)
                .send()
                .await
                .map_err(TimeError::Http)?;
            let status = response.status();
            if !status.is_success() {
                return Err(TimeError::Status(status));
            }
            let body = crate::util::http::read_capped(response, MAX_BODY).await?;
            let v: Value = serde_json::from_slice(&body).map_err(TimeError::NotJson)?;
            let text = ["datetime", "currentDateTime", "dateTime"]
                .iter()
                .find_map(|f| v.get(*f).and_then(Value::as_str))
                .ok_or(TimeError::NoTimeField)?;
            plausible(parse_time(text)?)
        })
    }
}

/// The `Date` header of a web service.
pub(crate) struct DateHeader {
    pub url: String,
    pub http: reqwest::Client,
}

impl TimeSource for DateHeader {
    fn name(&self) -> String {
        format!("Date header of {}", self.url)
    }

    fn time(&self) -> BoxFuture<'_, Result<DateTime<Utc>, TimeError>> {
        Box::pin(async move {
            // Any answer has the header, whatever its status; the body is
            // not read.
            let response = self
                .http
                .head(&self.url)
                .send()
                .await
                .map_err(TimeError::Http)?;
            let date = response
                .headers()
                .get(reqwest::header::DATE)
                .ok_or(TimeError::NoDateHeader)?
                .to_str()
                .map_err(|_| TimeError::DateNotText)?;
            let t = DateTime::parse_from_rfc2822(date).map_err(|reason| TimeError::DateHeader {
                date: date.to_string(),
                reason,
            })?;
            plausible(t.with_timezone(&Utc))
        })
    }
}

/// Reads the time formats of the known services: RFC 3339, minute
/// precision with `Z`, or no zone (UTC).
pub(crate) fn parse_time(text: &str) -> Result<DateTime<Utc>, TimeError> {
    let t = text.trim();
    if let Ok(d) = DateTime::parse_from_rfc3339(t) {
        return Ok(d.with_timezone(&Utc));
    }
    if let Some(minutes) = t.strip_suffix('Z') {
        if let Ok(n) = NaiveDateTime::parse_from_str(minutes, "%Y-%m-%dT%H:%M") {
            return Ok(Utc.from_utc_datetime(&n));
        }
    }
    NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|n| Utc.from_utc_datetime(&n))
        .map_err(|_| TimeError::Format(t.chars().take(60).collect()))
}

/// Refuses times no honest source gives.
fn plausible(t: DateTime<Utc>) -> Result<DateTime<Utc>, TimeError> {
    if t.timestamp() < EARLIEST {
        return Err(TimeError::Implausible(t));
    }
    Ok(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_three_services_formats_parse() {
        let t = |s: &str| parse_time(s).expect(s).to_rfc3339();
        assert_eq!(
            t("2026-11-30T19:20:05.123456+00:00"),
            "2026-11-30T19:20:05.123456+00:00"
        );
        assert_eq!(t("2026-11-30T20:20:05+01:00"), "2026-11-30T19:20:05+00:00");
        assert_eq!(t("2026-11-30T19:20Z"), "2026-11-30T19:20:00+00:00");
        assert_eq!(
            t("2026-11-30T19:20:05.1234567"),
            "2026-11-30T19:20:05.123456700+00:00"
        );
        assert_eq!(t("2026-11-30T19:20:05"), "2026-11-30T19:20:05+00:00");
    }

    #[test]
    fn garbage_times_are_refused_with_the_text() {
        for bad in [
            "",
            "yesterday",
            "2026-13-40T99:99:99",
            "1700000000",
            "30/11/2026 19:20",
        ] {
            let err = parse_time(bad).expect_err(bad);
            assert!(matches!(err, TimeError::Format(_)), "{err:?}");
            assert!(err.to_string().contains("no known format"), "{err}");
        }
        let old = plausible(parse_time("1999-01-01T00:00:00Z").expect("parses"));
        assert_eq!(
            old.expect_err("before 2025").to_string(),
            "answered 1999-01-01 00:00:00 UTC, before 2025: not believable"
        );
    }

    #[test]
    fn a_moment_is_eight_little_endian_bytes() {
        assert_eq!(
            decode_moment(&1_764_530_405_123u64.to_le_bytes()).expect("8 bytes"),
            1_764_530_405_123
        );
        assert!(matches!(
            decode_moment(&[1, 2, 3]),
            Err(TimeError::MomentLength(3))
        ));
        assert!(decode_moment(&[0; 9]).is_err());
    }
}
