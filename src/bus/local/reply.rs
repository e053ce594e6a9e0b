//! Answering a batch within a budget of bytes, whatever the requests.
//!
//! A reply can be megabytes (a history of big iperf results, `get_all`
//! over big results), and a batch holds hundreds of requests: made all at
//! once, the replies of one burst took gigabytes. So:
//!
//! - **Replies in chunks.** A batch's replies are made and pushed a chunk
//!   at a time, about [`CHUNK`] bytes each (one reply at least), and each
//!   chunk first takes its size from [`BUDGET`], the bytes of replies in
//!   flight for the whole handler; the Redis client copies a pipeline twice
//!   on its way out, so a chunk counts three times its size.
//! - **History one task at a time.** The `zos.perf.history` requests of a
//!   batch are served task by task, each task's list read once (the largest
//!   `Limit` asked) and every request for it answered from that one read
//!   ([`Shared`](crate::bus::history::Shared)). One such list is held at a
//!   time in the whole handler (the lane), however many batches wait.
//! - **At most once, per chunk.** A chunk whose push certainly did not
//!   reach Redis is retried while its callers wait; one whose fate is
//!   unknown is counted as lost and not retried. The chunks after it are
//!   pushed as usual.

use redis::aio::ConnectionManager;

use super::{Failure, Pushed, Server, BACKOFF_MAX, BACKOFF_MIN, PUSH};
use crate::bus::batch;
use crate::bus::commands::Query;
use crate::bus::snapshot::Snapshot;
use crate::bus::stats::{BusStats, CODE_SLOTS};
use crate::bus::triage::Answer;
use crate::logging::Escaped;
use crate::util::backoff::Backoff;
use crate::util::unix_time::unix_now;

/// Bytes of replies in flight for the whole handler (counted three times,
/// see the module's comment): the largest part of the handler's memory
/// under a burst (BENCHMARKS.md, "Under hostile input").
pub(super) const BUDGET: usize = 24 << 20;
/// Bytes of replies per pushed chunk, about.
const CHUNK: usize = 1 << 20;
/// What a chunk of `bytes` takes from [`BUDGET`].
fn reserve(bytes: usize) -> u32 {
    bytes.saturating_mul(3).min(BUDGET) as u32
}

/// A batch's answers as they are served: those answered from the results
/// (and every error), then the history requests of each task.
struct Groups<'a, 'b> {
    plain: Vec<&'a Answer<'b>>,
    /// Per task: the largest `Limit` asked and its requests.
    history: Vec<(&'static str, usize, Vec<&'a Answer<'b>>)>,
}

fn groups<'a, 'b>(answers: &'a [Answer<'b>]) -> Groups<'a, 'b> {
    let mut g = Groups {
        plain: Vec::new(),
        history: Vec::new(),
    };
    for a in answers {
        match a.outcome {
            Ok(Query::History(q)) => match g.history.iter_mut().find(|(n, _, _)| *n == q.name) {
                Some((_, limit, list)) => {
                    *limit = (*limit).max(q.limit);
                    list.push(a);
                }
                None => g.history.push((q.name, q.limit, vec![a])),
            },
            _ => g.plain.push(a),
        }
    }
    g
}

impl Server {
    /// Pushes one reply per answer, within the budget. Returns whether
    /// every reply was pushed.
    pub(super) async fn answer_all(&self, answers: &[Answer<'_>]) -> bool {
        let mut delay = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).full_jitter();
        let Groups { plain, history } = groups(answers);
        let queries: Vec<Query> = plain
            .iter()
            .filter_map(|a| a.outcome.as_ref().ok().copied())
            .collect();
        let every: Vec<&Answer<'_>> = answers.iter().collect();
        let mut snapshot = loop {
            let mut conn = self.conn.clone();
            match Snapshot::read(&mut conn, &queries).await {
                Ok(s) => break s,
                Err(e) => {
                    let failure = Failure {
                        nothing_sent: true,
                        error: format!("reading the results asked for: {e}"),
                    };
                    if !self.retry(&failure, &every, &mut delay).await {
                        return false;
                    }
                }
            }
        };
        let mut all = self.push_group(&plain, &mut snapshot, &mut delay).await;
        'tasks: for (name, limit, group) in history {
            let _lane = self.lane.lock().await;
            loop {
                let mut conn: ConnectionManager = self.conn.clone();
                match snapshot.read_history(&mut conn, name, limit).await {
                    Ok(()) => break,
                    Err(e) => {
                        let failure = Failure {
                            nothing_sent: true,
                            error: format!("reading the history of {name}: {e}"),
                        };
                        if !self.retry(&failure, &group, &mut delay).await {
                            all = false;
                            continue 'tasks;
                        }
                    }
                }
            }
            all &= self.push_group(&group, &mut snapshot, &mut delay).await;
            snapshot.forget_histories();
        }
        all
    }

    /// After a failure: waits and says to try again if nothing was sent
    /// and someone still waits for `group`; else counts its replies as lost.
    async fn retry(&self, failure: &Failure, group: &[&Answer<'_>], delay: &mut Backoff) -> bool {
        let now = unix_now();
        let awaited = group.iter().any(|a| a.deadline >= now);
        if failure.nothing_sent && awaited && !self.shutdown.is_cancelled() {
            tracing::debug!(error = %failure.error, retry_in = ?delay.peek(), replies = group.len(),
                "redis unreachable; replies wait");
            // Cancelled: the next pass sees the shutdown and gives up.
            let _ = delay.sleep(&self.shutdown).await;
            return true;
        }
        BusStats::add(&self.stats.lost, group.len());
        tracing::warn!(error = %failure.error, replies = group.len(), certainly_unsent = failure.nothing_sent,
            "bus replies may not have been delivered; not retrying, so none is answered twice");
        false
    }

    /// Pushes the replies of `group` a chunk at a time, each within the
    /// budget. Returns whether all were pushed.
    async fn push_group(
        &self,
        group: &[&Answer<'_>],
        snapshot: &mut Snapshot,
        delay: &mut Backoff,
    ) -> bool {
        let mut all = true;
        let mut start = 0;
        while start < group.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < group.len() {
                let more = group[end].reply_estimate(snapshot);
                if end > start && bytes + more > CHUNK {
                    break;
                }
                bytes += more;
                end += 1;
            }
            let chunk = &group[start..end];
            start = end;
            // Never closed: the handler owns it.
            let Ok(_permit) = self.budget.acquire_many(reserve(bytes)).await else {
                return false;
            };
            loop {
                match self.push_chunk(chunk, snapshot).await {
                    Ok(pushed) => {
                        self.pushed(pushed);
                        break;
                    }
                    Err(f) => {
                        if !self.retry(&f, chunk, delay).await {
                            all = false;
                            break;
                        }
                    }
                }
            }
        }
        all
    }

    fn pushed(&self, Pushed { codes, refused }: Pushed) {
        self.stats.pushed(&codes);
        if !refused.is_empty() {
            let n: usize = refused.iter().map(|(_, n)| n).sum();
            BusStats::add(&self.stats.lost, n);
            let lists: Vec<String> = refused
                .iter()
                .map(|(l, _)| Escaped(l).to_string())
                .collect();
            tracing::warn!(replies = n, lists = ?lists,
                "replies not delivered: their ret list holds another type, not a list");
        }
    }

    /// One attempt: makes the chunk's replies and pushes them in one
    /// pipeline, each list's push isolated from the others.
    async fn push_chunk(
        &self,
        chunk: &[&Answer<'_>],
        snapshot: &mut Snapshot,
    ) -> Result<Pushed, Failure> {
        let (pipe, lists) = {
            let batch::Replies {
                lists, list_codes, ..
            } = batch::replies(chunk, snapshot, unix_now()).map_err(|e| Failure {
                error: format!("encoding a reply: {e}"),
                nothing_sent: false,
            })?;
            // LPUSH of several values keeps their order for a BRPOP reader;
            // each in a script that reports a list of the wrong type instead
            // of failing the pipeline, so one bad `ret` costs only its
            // replies. The replies themselves are dropped once copied into
            // the pipeline.
            let mut pipe = redis::pipe();
            for (ret, replies) in &lists {
                pipe.cmd("EVAL").arg(PUSH).arg(1).arg(*ret).arg(replies);
            }
            let lists: Vec<(&str, usize, [u64; CODE_SLOTS])> = lists
                .iter()
                .zip(list_codes)
                .map(|((ret, replies), codes)| (*ret, replies.len(), codes))
                .collect();
            (pipe, lists)
        };
        let mut conn = self.conn.clone();
        let pushed: Vec<i64> = pipe.query_async(&mut conn).await.map_err(|e| Failure {
            nothing_sent: e.is_connection_refusal(),
            error: format!("pushing {} replies: {e}", chunk.len()),
        })?;
        let mut out = Pushed {
            codes: [0; CODE_SLOTS],
            refused: Vec::new(),
        };
        for ((ret, n, codes), pushed) in lists.iter().zip(pushed) {
            if pushed < 0 {
                out.refused.push((ret.to_string(), *n));
            } else {
                for (total, c) in out.codes.iter_mut().zip(codes) {
                    *total += c;
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_takes_three_times_its_size_and_never_more_than_the_budget() {
        assert_eq!(reserve(1000), 3000);
        assert_eq!(reserve(usize::MAX), BUDGET as u32);
    }
}
