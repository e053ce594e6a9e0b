//! The bus core's one entry for a transport: a batch of raw requests in,
//! the replies to deliver out. A transport (today the Redis lists of
//! [`super::local`]) only receives requests with a [`Snapshot`] of the store
//! and delivers what [`replies`] gives; triage, the commands and the error
//! codes stay here.

use std::collections::HashMap;

use super::commands::Command;
use super::snapshot::Snapshot;
use super::stats::BusStats;
use super::triage::{triage, Answer, Incoming};
use crate::util::text::clip;

/// Triages every popped message at unix time `now`: the requests to answer,
/// in order. Expired and unanswerable messages are counted and logged.
pub fn triage_all<'a>(
    popped: &'a [(Command, Vec<u8>)],
    now: u64,
    stats: &BusStats,
) -> Vec<Answer<'a>> {
    let mut answers = Vec::with_capacity(popped.len());
    for (cmd, raw) in popped {
        match triage(*cmd, raw, now) {
            Incoming::Answer(a) => answers.push(a),
            Incoming::Expired => {
                BusStats::add(&stats.expired, 1);
                tracing::debug!(list = cmd.list(), "dropping an expired request");
            }
            Incoming::Dropped(reason) => {
                BusStats::add(&stats.dropped, 1);
                let head = String::from_utf8_lossy(&raw[..raw.len().min(400)]);
                tracing::warn!(list = cmd.list(), reason = %reason, message = %clip(&head, 200),
                    "dropping a message with nobody to answer");
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
}

/// Answers every request from `snapshot` at unix time `now`.
pub fn replies<'a>(
    answers: &'a [Answer<'_>],
    snapshot: &mut Snapshot,
    now: u64,
) -> serde_json::Result<Replies<'a>> {
    let mut errors = 0;
    let mut lists: Vec<(&str, Vec<Vec<u8>>)> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for a in answers {
        let (encoded, is_error) = a.reply(snapshot, now)?;
        errors += usize::from(is_error);
        let i = *index.entry(a.ret.as_ref()).or_insert_with(|| {
            lists.push((a.ret.as_ref(), Vec::new()));
            lists.len() - 1
        });
        lists[i].1.push(encoded);
    }
    Ok(Replies { lists, errors })
}
