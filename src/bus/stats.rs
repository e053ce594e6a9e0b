//! The bus's counters, shared by the core and its transports.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the bus has done since it started; for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct BusStats {
    pub(crate) received: AtomicU64,
    pub(crate) replied: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) lost: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Requests popped.
    pub received: u64,
    /// Replies pushed (errors included).
    pub replied: u64,
    /// Of those, error replies.
    pub errors: u64,
    /// Dropped unanswered because `now + exp` had passed.
    pub expired: u64,
    /// Dropped unanswered because there was nobody to answer.
    pub dropped: u64,
    /// Replies that may not have arrived (Redis failed under the push).
    pub lost: u64,
}

impl BusStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            received: get(&self.received),
            replied: get(&self.replied),
            errors: get(&self.errors),
            expired: get(&self.expired),
            dropped: get(&self.dropped),
            lost: get(&self.lost),
        }
    }

    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}
