//! The bus's counters, shared by the core and its transports.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::commands::Command;
use super::error::ErrorCode;

/// What the bus has done since it started; for logs, tests and benchmarks.
#[derive(Debug, Default)]
pub struct BusStats {
    pub(crate) received: AtomicU64,
    pub(crate) replied: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) expired: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) lost: AtomicU64,
    /// Requests taken, per command in [`Command::ALL`] order.
    pub(crate) by_command: [AtomicU64; Command::ALL.len()],
    /// Replies pushed: index 0 answers, index `c` error code `c`.
    pub(crate) by_code: [AtomicU64; CODE_SLOTS],
    /// Taken and not yet answered (or dropped).
    pub(crate) in_flight: AtomicU64,
    /// The most ever in flight at once: `max_in_flight` bounds it.
    peak_in_flight: AtomicU64,
    /// Seconds from taking a request to pushing its reply.
    handling: [AtomicU64; HANDLING_BUCKETS.len()],
    handling_sum_micros: AtomicU64,
    handling_count: AtomicU64,
}

/// Slots of [`BusStats::by_code`]: answers, then one per error code.
pub(crate) const CODE_SLOTS: usize = ErrorCode::ALL.len() + 1;

/// Upper bounds (seconds) of the handling-time histogram's buckets: a
/// reply takes about a millisecond when all is well, seconds when Redis
/// struggles.
pub(crate) const HANDLING_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// The handling-time histogram at one moment.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct HandlingSnapshot {
    /// `(upper bound, requests at or below it)`, cumulative, `+Inf` left out.
    pub buckets: Vec<(f64, u64)>,
    pub sum_seconds: f64,
    pub count: u64,
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

    /// Counts requests taken (per command, and in flight).
    pub(crate) fn taken(&self, popped: &[(Command, Vec<u8>)]) {
        Self::add(&self.received, popped.len());
        let n = popped.len() as u64;
        let now = self.in_flight.fetch_add(n, Ordering::Relaxed) + n;
        self.peak_in_flight.fetch_max(now, Ordering::Relaxed);
        for (cmd, _) in popped {
            Self::add(&self.by_command[cmd.index()], 1);
        }
    }

    /// Counts requests done with (answered, dropped or given up).
    pub(crate) fn done(&self, n: usize) {
        self.in_flight.fetch_sub(n as u64, Ordering::Relaxed);
    }

    /// Counts replies pushed, per slot of [`BusStats::by_code`].
    pub(crate) fn pushed(&self, codes: &[u64; CODE_SLOTS]) {
        let total: u64 = codes.iter().sum();
        self.replied.fetch_add(total, Ordering::Relaxed);
        self.errors.fetch_add(total - codes[0], Ordering::Relaxed);
        for (slot, n) in self.by_code.iter().zip(codes) {
            slot.fetch_add(*n, Ordering::Relaxed);
        }
    }

    /// Requests taken per command.
    pub fn by_command(&self) -> [(Command, u64); Command::ALL.len()] {
        Command::ALL.map(|c| (c, self.by_command[c.index()].load(Ordering::Relaxed)))
    }

    /// Replies pushed per outcome: `None` an answer, `Some(code)` an error.
    pub(crate) fn by_code(&self) -> Vec<(Option<ErrorCode>, u64)> {
        std::iter::once(None)
            .chain(ErrorCode::ALL.map(Some))
            .map(|c| {
                let i = c.map_or(0, |c| c.code() as usize);
                (c, self.by_code[i].load(Ordering::Relaxed))
            })
            .collect()
    }

    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The most requests ever in flight at once since the start.
    pub fn peak_in_flight(&self) -> u64 {
        self.peak_in_flight.load(Ordering::Relaxed)
    }

    pub(crate) fn handling(&self) -> HandlingSnapshot {
        let mut total = 0;
        let buckets = HANDLING_BUCKETS
            .iter()
            .zip(&self.handling)
            .map(|(le, n)| {
                total += n.load(Ordering::Relaxed);
                (*le, total)
            })
            .collect();
        HandlingSnapshot {
            buckets,
            sum_seconds: self.handling_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            count: self.handling_count.load(Ordering::Relaxed),
        }
    }

    /// Records `n` requests answered in `took`.
    pub(crate) fn observe(&self, took: Duration, n: usize) {
        let secs = took.as_secs_f64();
        if let Some(i) = HANDLING_BUCKETS.iter().position(|le| secs <= *le) {
            Self::add(&self.handling[i], n);
        }
        Self::add(&self.handling_count, n);
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.handling_sum_micros
            .fetch_add(micros.saturating_mul(n as u64), Ordering::Relaxed);
    }
}
