//! What the relay transport counts, for the metrics (docs/observability.md)
//! and the tests. Every label value comes from a fixed list here, so the
//! series are few whatever arrives.

use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused: answered with an error before its command
/// ran. Each is answered with its code (the rmb-rs codes, and the bus's
/// own "payload too large").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 102: `timestamp + expiration` (and the skew allowance) has passed.
    Expired,
    /// 103: the chain knows no such source twin.
    UnknownTwin,
    /// 104: the signature does not verify (wrong key, wrong type byte).
    BadSignature,
    /// 105: an encrypted payload from a twin without `pk`.
    NoPublicKey,
    /// 106: the payload does not decrypt.
    Undecryptable,
    /// 3: the payload is over the bus's limit.
    TooLarge,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::Expired,
        Refusal::UnknownTwin,
        Refusal::BadSignature,
        Refusal::NoPublicKey,
        Refusal::Undecryptable,
        Refusal::TooLarge,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Expired => "expired",
            Refusal::UnknownTwin => "unknown_twin",
            Refusal::BadSignature => "bad_signature",
            Refusal::NoPublicKey => "no_public_key",
            Refusal::Undecryptable => "undecryptable",
            Refusal::TooLarge => "too_large",
        }
    }

    /// The error code of the reply.
    pub fn code(self) -> u32 {
        match self {
            Refusal::Expired => 102,
            Refusal::UnknownTwin => 103,
            Refusal::BadSignature => 104,
            Refusal::NoPublicKey => 105,
            Refusal::Undecryptable => 106,
            Refusal::TooLarge => super::super::ErrorCode::PayloadTooLarge.code(),
        }
    }
}

/// Why a frame was dropped unanswered: there is nobody to answer, or
/// nothing to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Not a protobuf envelope (or a text frame).
    NotEnvelope,
    /// Over the frame limit: skipped unread.
    Oversized,
    /// An envelope that is not a request with a source (a stray response,
    /// an error, a ping).
    NotRequest,
}

impl Dropped {
    pub const ALL: [Dropped; 3] = [
        Dropped::NotEnvelope,
        Dropped::Oversized,
        Dropped::NotRequest,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Dropped::NotEnvelope => "not_envelope",
            Dropped::Oversized => "oversized",
            Dropped::NotRequest => "not_request",
        }
    }
}

/// The relay transport's counters since the daemon started.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Requests answered with their command's result.
    pub answered: AtomicU64,
    /// Requests answered with their command's error (unknown command, bad
    /// payload, result not found...).
    pub errors: AtomicU64,
    refused: [AtomicU64; Refusal::ALL.len()],
    dropped: [AtomicU64; Dropped::ALL.len()],
    /// Replies that could not be queued: the connection went away.
    pub lost: AtomicU64,
    /// Connections opened to a relay (the first, then each reconnect).
    pub connects: AtomicU64,
    /// 1 while a connection is open.
    pub connected: AtomicU64,
    /// Connections the relay closed within `reconnect::QUICK` of the
    /// upgrade.
    pub quick_closes: AtomicU64,
    /// 1 after `CONTESTED_AFTER` such closes in a row (another connection
    /// most likely holds our twin), until a connection lasts.
    pub contested: AtomicU64,
}

impl RelayStats {
    pub fn refuse(&self, why: Refusal) {
        self.refused[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn drop_frame(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn refused(&self) -> [(Refusal, u64); Refusal::ALL.len()] {
        Refusal::ALL.map(|r| (r, self.refused[r as usize].load(Ordering::Relaxed)))
    }

    pub fn dropped(&self) -> [(Dropped, u64); Dropped::ALL.len()] {
        Dropped::ALL.map(|d| (d, self.dropped[d as usize].load(Ordering::Relaxed)))
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_its_own_slot_and_label() {
        let s = RelayStats::default();
        s.refuse(Refusal::TooLarge);
        s.refuse(Refusal::TooLarge);
        s.drop_frame(Dropped::Oversized);
        assert_eq!(s.refused()[5], (Refusal::TooLarge, 2));
        assert_eq!(s.refused()[0], (Refusal::Expired, 0));
        assert_eq!(s.dropped()[1], (Dropped::Oversized, 1));
        let labels: std::collections::HashSet<_> = Refusal::ALL.map(Refusal::label).into();
        assert_eq!(labels.len(), Refusal::ALL.len());
        assert_eq!(Refusal::TooLarge.code(), 3);
    }
}
