//! The errors a bus reply can carry, each with a stable numeric code.
//!
//! Callers across the grid match on `err.code`, so a code, once given, keeps
//! its meaning forever: new errors get new numbers, none is reused.
//!
//! | code | name | when | message (example) |
//! |---:|---|---|---|
//! | 1 | invalid request | the request's envelope lacks a field or has one of the wrong type (`src`, `ref`, `exp`, `now`, `dat`, `cmd`, `tag`, `shm`) | `invalid request: field "exp" must be a non-negative integer` |
//! | 2 | unsupported version | `ver` is not the integer `1` (or is absent) | `unsupported protocol version 2: this service speaks version 1` |
//! | 3 | payload too large | `dat` would decode to more than 64 KiB (checked without decoding) | `payload too large: 70000 bytes, the limit is 65536` |
//! | 4 | invalid base64 | `dat` is not standard padded base64 | `dat is not valid base64: Invalid symbol 33, offset 3.` |
//! | 5 | invalid payload | the payload is not JSON, or not the JSON the command expects | `payload is not JSON: expected value at line 1 column 1`, `payload is not the expected JSON {"Name": "<task name>"}: no "Name" key` |
//! | 6 | unknown task | the name asked for is empty or not a task | `unknown task name "foo" (known: public-ip-validation, cpu-benchmark, healthcheck, iperf, provisiontest)`, `task name "" is empty (known: ...)` |
//! | 7 | result not found | the task has no stored result | `result not found` |
//! | 8 | stored result invalid | the stored result asked for is not JSON (something else wrote the key) | `stored value of perf.iperf is not JSON` |
//!
//! Requests that get no reply at all (nothing to send it to, or nobody
//! waiting for it): a message that is not a JSON object, or has no usable
//! `ret`, is dropped and logged at warn; an expired one (`now + exp` in the
//! past) is dropped without work, counted, and logged at debug.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::tasks;
use crate::util::text::clip;

/// The stable codes; see the module table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ErrorCode {
    InvalidRequest = 1,
    UnsupportedVersion = 2,
    PayloadTooLarge = 3,
    InvalidBase64 = 4,
    InvalidPayload = 5,
    UnknownTask = 6,
    ResultNotFound = 7,
    StoredResultInvalid = 8,
}

impl ErrorCode {
    /// Every code, in table order.
    pub const ALL: [ErrorCode; 8] = [
        ErrorCode::InvalidRequest,
        ErrorCode::UnsupportedVersion,
        ErrorCode::PayloadTooLarge,
        ErrorCode::InvalidBase64,
        ErrorCode::InvalidPayload,
        ErrorCode::UnknownTask,
        ErrorCode::ResultNotFound,
        ErrorCode::StoredResultInvalid,
    ];

    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn from_code(code: u32) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.code() == code)
    }

    /// A short name, for logs and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid request",
            ErrorCode::UnsupportedVersion => "unsupported version",
            ErrorCode::PayloadTooLarge => "payload too large",
            ErrorCode::InvalidBase64 => "invalid base64",
            ErrorCode::InvalidPayload => "invalid payload",
            ErrorCode::UnknownTask => "unknown task",
            ErrorCode::ResultNotFound => "result not found",
            ErrorCode::StoredResultInvalid => "stored result invalid",
        }
    }
}

/// An error as it travels in a reply's `err`: `{"code": <u32>, "message": <string>}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusError {
    pub code: u32,
    pub message: String,
}

impl BusError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> BusError {
        BusError {
            code: code.code(),
            message: message.into(),
        }
    }

    pub(crate) fn invalid_request(field: &str, what: &str) -> BusError {
        Self::new(
            ErrorCode::InvalidRequest,
            format!("invalid request: field {field:?} {what}"),
        )
    }

    pub(crate) fn result_not_found() -> BusError {
        Self::new(ErrorCode::ResultNotFound, "result not found")
    }

    /// The code, if it is one of ours.
    pub fn kind(&self) -> Option<ErrorCode> {
        ErrorCode::from_code(self.code)
    }
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind() {
            Some(kind) => write!(f, "error {} ({}): {}", self.code, kind.name(), self.message),
            None => write!(f, "error {}: {}", self.code, self.message),
        }
    }
}

impl std::error::Error for BusError {}

/// The task a request names (`get` and `history`), if it is one; else
/// error 6 saying which names are known.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_and_distinct() {
        let codes: Vec<u32> = ErrorCode::ALL.iter().map(|c| c.code()).collect();
        assert_eq!(codes, vec![1, 2, 3, 4, 5, 6, 7, 8]);
        for c in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
        }
        assert_eq!(ErrorCode::from_code(0), None);
    }

    #[test]
    fn error_serializes_as_code_and_message() {
        let e = BusError::result_not_found();
        assert_eq!(
            serde_json::to_string(&e).expect("encode"),
            r#"{"code":7,"message":"result not found"}"#
        );
    }
}
