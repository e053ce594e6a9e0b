//! The bus core's one entry for a transport: a batch of raw requests in,
//! the replies to deliver out. A transport (today the Redis lists of
//! [`super::local`]) only receives requests with a [`Snapshot`] of the store
//! and delivers what [`replies`] gives; triage, the commands and the error
//! codes stay here.

use std::collections::HashMap;
use std::time::Duration;

use super::commands::Command;
use super::error::{BusError, ErrorCode};
use super::snapshot::Snapshot;
use super::stats::{BusStats, CODE_SLOTS};
use super::triage::{triage, Answer, Incoming};
use crate::logging::{Escaped, RateLimit};
use crate::util::text::clip;

/// How often what any sender can cause at will is logged, at most.
const LOG_PERIOD: Duration = Duration::from_secs(10);

/// Rate limits of the log lines that input can repeat at will: one line
/// per period, with the count of those held back.
pub struct Logs {
    dropped: RateLimit,
    expired: RateLimit,
    oversized: RateLimit,
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            dropped: RateLimit::new(LOG_PERIOD),
            expired: RateLimit::new(LOG_PERIOD),
            oversized: RateLimit::new(LOG_PERIOD),
        }
    }
}

impl Logs {
    /// Whether a message dropped for its size may be logged now, and how
    /// many were held back since the last one.
    pub fn oversized(&self) -> Option<u64> {
        self.oversized.allow()
    }
}

/// Triages every popped message at unix time `now`, tolerating senders'
/// clocks `skew` seconds behind: the requests to answer, in order. Expired
/// and unanswerable messages are counted and logged (rate-limited, their
/// bytes escaped: a caller can neither flood the log nor forge a line).
pub(crate) fn triage_all<'a>(
    popped: &'a [(Command, Vec<u8>)],
    now: u64,
    skew: u64,
    stats: &BusStats,
    logs: &Logs,
) -> Vec<Answer<'a>> {
    let mut answers = Vec::with_capacity(popped.len());
    for (cmd, raw) in popped {
        match triage(*cmd, raw, now, skew) {
            Incoming::Answer(a) => answers.push(a),
            Incoming::Expired => {
                BusStats::add(&stats.expired, 1);
                if let Some(suppressed) = logs.expired.allow() {
                    tracing::info!(
                        list = cmd.list(),
                        suppressed,
                        skew_s = skew,
                        "dropping an expired request (its sender gave up; is a clock wrong?)"
                    );
                }
            }
            Incoming::Dropped(reason) => {
                BusStats::add(&stats.dropped, 1);
                if let Some(suppressed) = logs.dropped.allow() {
                    let head = String::from_utf8_lossy(&raw[..raw.len().min(400)]);
                    tracing::warn!(list = cmd.list(), reason = %Escaped(&reason),
                        message = %Escaped(&clip(&head, 200)), suppressed,
                        "dropping a message with nobody to answer");
                }
            }
        }
    }
    answers
}

/// Triages the envelopes (without `dat`) of messages over the size limit
/// `limit`, each `lens[i]` bytes long: those with someone to answer get
/// error 3, the others are counted and logged like any message dropped.
pub(crate) fn triage_oversized<'a>(
    envelopes: &'a [(Command, Vec<u8>)],
    lens: &[usize],
    limit: usize,
    now: u64,
    skew: u64,
    stats: &BusStats,
    logs: &Logs,
) -> Vec<Answer<'a>> {
    let mut answers = Vec::new();
    for ((cmd, env), len) in envelopes.iter().zip(lens) {
        match triage(*cmd, env, now, skew) {
            Incoming::Answer(mut a) => {
                a.outcome = Err(BusError::new(
                    ErrorCode::PayloadTooLarge,
                    format!("payload too large: the request message is {len} bytes, the limit is {limit}"),
                ));
                answers.push(a);
            }
            Incoming::Expired => BusStats::add(&stats.expired, 1),
            Incoming::Dropped(reason) => {
                BusStats::add(&stats.dropped, 1);
                if let Some(suppressed) = logs.oversized() {
                    tracing::warn!(list = cmd.list(), bytes = len, limit, reason = %Escaped(&reason),
                        suppressed, "dropping a message over the size limit: nobody to answer");
                }
            }
        }
    }
    answers
}

/// The encoded replies of a batch, grouped by the list (`ret`) each goes
/// to, in the order the requests came.
pub struct Replies<'a> {
    pub lists: Vec<(&'a str, Vec<Vec<u8>>)>,
    /// How many of them are error replies.
    pub errors: usize,
    /// How many are answers (slot 0) and errors of each code.
    pub codes: [u64; CODE_SLOTS],
    /// The same, per list of `lists`.
    pub list_codes: Vec<[u64; CODE_SLOTS]>,
}

/// Answers every request from `snapshot` at unix time `now`.
pub fn replies<'a>(
    answers: &[&'a Answer<'_>],
    snapshot: &mut Snapshot,
    now: u64,
) -> serde_json::Result<Replies<'a>> {
    let mut errors = 0;
    let mut codes = [0u64; CODE_SLOTS];
    let mut lists: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let mut list_codes: Vec<[u64; CODE_SLOTS]> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for a in answers {
        let (encoded, code) = a.reply_coded(snapshot, now)?;
        errors += usize::from(code.is_some());
        let i = *index.entry(a.ret.as_ref()).or_insert_with(|| {
            lists.push((a.ret.as_ref(), Vec::new()));
            list_codes.push([0; CODE_SLOTS]);
            lists.len() - 1
        });
        lists[i].1.push(encoded);
        // A code of ours counts in its slot; a foreign one in none.
        let slot = code.map_or(0, |c| c as usize);
        if slot < CODE_SLOTS {
            codes[slot] += 1;
            list_codes[i][slot] += 1;
        }
    }
    Ok(Replies {
        lists,
        errors,
        codes,
        list_codes,
    })
}
