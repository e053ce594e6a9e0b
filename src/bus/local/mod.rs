//! The local transport: the RMB peer on the node pushes requests onto
//! Redis lists and waits for replies on lists; this module pops them and
//! pushes the replies, and leaves everything else to the bus core
//! ([`super::batch`]). The local client behind `zos-perf call` is in
//! [`client`].
//!
//! Longer than most files (about 460 lines before its tests): the popper,
//! the batch server and their reconnect sessions share the at-most-once
//! rules below, which hold only when read together.
//!
//! ```text
//!  popper (own connection), one round trip each:     batch tasks (shared ConnectionManager)
//!  BRPOP get get_all 1s + MGET perf.<5 names>  ─┐    triage each request, answer it
//!  RPOP get n + RPOP get_all m + MGET ...       ┼──> from the batch's snapshot,
//!  (again while there is more)                 ─┘    one LPUSH per ret list, pipelined
//! ```
//!
//! - **Bounded work**: every popped request holds a permit of a semaphore of
//!   `max_in_flight` until its reply is pushed; the popper never pops more
//!   than it holds permits for. Bytes are bounded too: replies are made and
//!   pushed in chunks within a budget, history one task at a time
//!   ([`reply`]); a message over [`MAX_MESSAGE`] never leaves Redis, only
//!   its short envelope does ([`fetch`]).
//! - **Batching**: after a BRPOP wakes it, the popper drains with
//!   `RPOP <list> <count>` (Redis ≥ 6.2; older ones get one request per
//!   BRPOP) until both lists are empty, then blocks again. Each pop carries
//!   an MGET of the five result keys in the same pipeline (it runs right
//!   after the pop, even after a BRPOP that blocked), so a batch is answered
//!   from the store as it was when its requests were taken, at no extra
//!   round trip. Each batch is served by its own task while the popper
//!   fetches the next.
//! - **At most once**: a popped request is answered once or not at all.
//!   A reply push that failed to connect (nothing was sent) is retried with
//!   backoff until the request expires; a push whose fate is unknown (the
//!   connection broke under it) is not retried but counted as lost. The
//!   BRPOP itself is never abandoned half-way: shutdown waits for it (≤ 1 s)
//!   rather than drop a request Redis may already have handed over.
//! - **Redis going away**: the popper, always waiting on Redis, is the first
//!   to notice; it reconnects with capped backoff and starts a new session
//!   with a new reply connection too. Batches of the old session finish on
//!   theirs (which heals itself) or give up, as above.
//! - **A thread of its own**: the handler runs on a dedicated thread with a
//!   single-threaded runtime. Its work is short and I/O bound, so one thread
//!   keeps up with Redis, and with no hops between worker threads both the
//!   drain rate and the round trip are better (BENCHMARKS.md, section bus);
//!   it also keeps answering while the daemon's own runtime is busy.
//!
//! Longer than most files (about 620 lines, its tests in `local/tests.rs`):
//! the pop side and the reply side share the in-flight permits, the
//! session's connections and the rule that a popped request is answered
//! or counted, never lost; they are read together to check that rule.

pub mod client;
pub mod fetch;
mod reply;

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::AsyncConnectionConfig;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::batch;
use super::commands::Command;
use super::stats::{BusStats, CODE_SLOTS};
use super::BusConfig;
use crate::node_redis::{CONNECT_TIMEOUT, RESPONSE_TIMEOUT};
use crate::util::backoff::Backoff;
use crate::util::unix_time::unix_now;

/// How long one BRPOP blocks: also how long shutdown may wait for it.
const BRPOP_TIMEOUT: Duration = Duration::from_secs(1);
/// A sane ceiling for `max_in_flight`, whatever the configuration says.
const MAX_IN_FLIGHT: usize = 1 << 16;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// A session that lasted this long was working: its end starts backoff afresh.
const SESSION_OK: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Serves `zos.perf.get` and `zos.perf.get_all` from the Redis of `client`
/// until `shutdown`, then waits for the replies in flight.
pub async fn serve(client: redis::Client, config: BusConfig, shutdown: CancellationToken) {
    Bus::new(client, config).serve(shutdown).await
}

/// The handler, for callers that want its counters.
pub struct Bus {
    client: redis::Client,
    config: BusConfig,
    stats: Arc<BusStats>,
}

impl Bus {
    pub fn new(client: redis::Client, config: BusConfig) -> Bus {
        Bus {
            client,
            config,
            stats: Arc::default(),
        }
    }

    pub fn stats(&self) -> Arc<BusStats> {
        self.stats.clone()
    }

    /// Serves until `shutdown` on a thread of its own; completes when that
    /// thread is done (every reply in flight pushed or given up). Dropping
    /// the future does not stop the thread: `shutdown` does.
    pub async fn serve(self, shutdown: CancellationToken) {
        let (done, finished) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("zos-perf-bus".into())
            .spawn(move || {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt.block_on(self.run(shutdown)),
                    Err(e) => tracing::error!(error = %e, "bus handler: cannot start its runtime"),
                }
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => {
                let _ = finished.await;
            }
            Err(e) => tracing::error!(error = %e, "bus handler: cannot start its thread"),
        }
    }

    async fn run(self, shutdown: CancellationToken) {
        let max = self.config.max_in_flight.clamp(1, MAX_IN_FLIGHT);
        let permits = Arc::new(Semaphore::new(max));
        let mut delay = Backoff::new(BACKOFF_MIN, BACKOFF_MAX).full_jitter();
        let mut failures: u64 = 0;
        let logs = Arc::new(batch::Logs::default());
        let budget = Arc::new(Semaphore::new(reply::BUDGET));
        let lane = Arc::new(tokio::sync::Mutex::new(()));
        tracing::info!(
            lists = ?Command::ALL.map(Command::list),
            max_in_flight = max,
            "bus handler starting"
        );
        while !shutdown.is_cancelled() {
            match self.connect().await {
                Ok((pop, conn)) => {
                    if failures > 0 {
                        tracing::info!(failures, "bus handler reconnected to redis; serving again");
                    }
                    let started = std::time::Instant::now();
                    let server = Arc::new(Server {
                        conn,
                        stats: self.stats.clone(),
                        shutdown: shutdown.clone(),
                        skew: self.config.clock_skew.as_secs(),
                        logs: logs.clone(),
                        budget: budget.clone(),
                        lane: lane.clone(),
                    });
                    let popper = Popper {
                        conn: pop,
                        broken: std::array::from_fn(|_| None),
                        server,
                        permits: permits.clone(),
                        batch_max: batch_size(max),
                        shutdown: shutdown.clone(),
                        over: Oversized::default(),
                    };
                    match popper.run().await {
                        Ok(()) => break,
                        Err(e) => {
                            // A session that served a while ends a run of
                            // failures; one that fails at once (Redis refusing
                            // BRPOP itself) must not spin.
                            if started.elapsed() >= SESSION_OK {
                                delay.reset();
                                failures = 0;
                            }
                            failures += 1;
                            if failures == 1 || failures.is_multiple_of(12) {
                                tracing::warn!(error = %e, retry_in = ?delay.peek(), failures,
                                    "bus handler lost redis; reconnecting");
                            }
                        }
                    }
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 || failures.is_multiple_of(12) {
                        tracing::warn!(error = %e, retry_in = ?delay.peek(), failures,
                            "bus handler cannot reach redis; requests wait in redis until it can");
                    }
                }
            }
            // Cancelled: the loop's condition sees it.
            let _ = delay.sleep(&shutdown).await;
        }
        // Every permit back means every batch has pushed its replies (or
        // given up on them).
        let _ = permits.acquire_many(max as u32).await;
        let s = self.stats.snapshot();
        tracing::info!(
            received = s.received,
            replied = s.replied,
            errors = s.errors,
            expired = s.expired,
            dropped = s.dropped,
            lost = s.lost,
            peak_in_flight = self.stats.peak_in_flight(),
            "bus handler stopped"
        );
    }

    /// A dedicated connection for the popper (a blocking BRPOP must not
    /// hold up a shared one) and a self-healing one for the replies.
    ///
    /// Both are new for every session: when the popper has lost Redis, the
    /// reply connection is as good as dead too, and a push on a connection
    /// that died unnoticed could not be told apart from one that died under
    /// the push (which must not be retried), so the request would be lost.
    async fn connect(&self) -> redis::RedisResult<(MultiplexedConnection, ConnectionManager)> {
        let pop_config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(BRPOP_TIMEOUT + RESPONSE_TIMEOUT));
        let pop = self
            .client
            .get_multiplexed_async_connection_with_config(&pop_config)
            .await?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        Ok((pop, conn))
    }
}

/// Half the permits per batch, so one batch is being answered while the
/// next is popped.
fn batch_size(max_in_flight: usize) -> usize {
    (max_in_flight / 2).max(1)
}

/// The request lists, one per command of [`Command::ALL`].
const LISTS: usize = Command::ALL.len();

/// What one pop brings.
type Popped = Vec<(Command, Vec<u8>)>;

/// The largest request message taken: a 64 KiB payload in base64 plus a
/// generous envelope. A longer one is dropped inside Redis (see [`fetch`]).
pub const MAX_MESSAGE: usize = 128 * 1024;
/// How often a request list found to hold another type is looked at again.
const BROKEN_RECHECK: Duration = Duration::from_secs(10);

struct Popper {
    conn: MultiplexedConnection,
    /// Per list of [`Command::ALL`]: when it was found not to be a list
    /// (its type then), left out of every pop until looked at again.
    broken: [Option<(Instant, String)>; LISTS],
    server: Arc<Server>,
    permits: Arc<Semaphore>,
    batch_max: usize,
    shutdown: CancellationToken,
    /// Messages over [`MAX_MESSAGE`] taken by the last pop whose envelope
    /// could be read (without `dat`), and their lengths: answered error 3.
    over: Oversized,
}

/// Envelopes of messages over the size limit, and each message's length.
#[derive(Default)]
struct Oversized {
    envelopes: Vec<(Command, Vec<u8>)>,
    lens: Vec<usize>,
}

impl Popper {
    /// Pops and hands out batches until shutdown (`Ok`) or a connection
    /// error (`Err`: the caller reconnects).
    async fn run(mut self) -> redis::RedisResult<()> {
        let mut draining = false;
        // Whether each list gave requests when last drained.
        let mut busy = [true; Command::ALL.len()];
        let mut turn = 0usize;
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(());
            }
            let mut held = tokio::select! {
                p = self.permits.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => return Ok(()),
                },
                _ = self.shutdown.cancelled() => return Ok(()),
            };
            let extra = self
                .permits
                .available_permits()
                .min(self.batch_max.saturating_sub(1));
            if extra > 0 {
                if let Ok(more) = self.permits.clone().try_acquire_many_owned(extra as u32) {
                    held.merge(more);
                }
            }
            let room = held.num_permits();
            turn = turn.wrapping_add(1);
            self.recheck_broken();
            let popped = if draining {
                self.drain(room, &mut busy, turn).await?
            } else {
                self.block(turn).await?
            };
            let over = std::mem::take(&mut self.over);
            let taken = popped.len() + over.lens.len();
            if taken == 0 {
                draining = false;
                continue;
            }
            draining = true;
            if taken < room {
                drop(held.split(room - taken));
            }
            let popped_at = Instant::now();
            self.server.stats.taken(&popped);
            self.server.stats.taken(&over.envelopes);
            tokio::spawn(
                self.server
                    .clone()
                    .serve_batch(popped, over, held, popped_at),
            );
        }
    }

    /// Lets a list found broken be tried again after a while.
    fn recheck_broken(&mut self) {
        for slot in &mut self.broken {
            if slot
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() >= BROKEN_RECHECK)
            {
                *slot = None;
            }
        }
    }

    /// Records that list `i` holds `kind`, not a list: its requests cannot
    /// be read, and it is left out so the other commands go on.
    fn mark_broken(&mut self, i: usize, kind: String) {
        if self.broken[i].is_none() {
            tracing::error!(key = Command::ALL[i].list(), holds = %kind,
                "request list holds another type, not a list: its requests cannot be read; the other commands are served as usual");
        }
        self.broken[i] = Some((Instant::now(), kind));
    }

    /// One BRPOP on the lists that are lists, alternating which is looked
    /// at first. A Redis error that is not a broken line (a list of the
    /// wrong type) is diagnosed with a pop of nothing, and the list left out.
    async fn block(&mut self, turn: usize) -> redis::RedisResult<Popped> {
        let n = Command::ALL.len();
        let lists: Vec<&str> = (0..n)
            .map(|k| (turn + k) % n)
            .filter(|i| self.broken[*i].is_none())
            .map(|i| Command::ALL[i].list())
            .collect();
        if lists.is_empty() {
            // Nothing to wait on; look again after a BRPOP's time.
            tokio::select! {
                _ = tokio::time::sleep(BRPOP_TIMEOUT) => {}
                _ = self.shutdown.cancelled() => {}
            }
            return Ok(Vec::new());
        }
        let popped: redis::RedisResult<Option<(String, Vec<u8>)>> = redis::cmd("BRPOP")
            .arg(&lists)
            .arg(BRPOP_TIMEOUT.as_secs())
            .query_async(&mut self.conn)
            .await;
        let popped = match popped {
            Ok(p) => p,
            Err(e) if !e.is_io_error() && !e.is_timeout() => {
                // Nothing was popped: an error reply pops nothing.
                self.drain_counts([0; LISTS]).await?;
                return Ok(Vec::new());
            }
            Err(e) => return Err(e),
        };
        Ok(popped
            .and_then(|(list, raw)| {
                let cmd = Command::from_list(&list)?;
                self.keep(cmd, raw)
            })
            .map(|m| vec![m])
            .unwrap_or_default())
    }

    /// A message from BRPOP, unless it is over [`MAX_MESSAGE`]: then its
    /// envelope is kept aside (to answer error 3), or it is counted and
    /// dropped.
    fn keep(&mut self, cmd: Command, raw: Vec<u8>) -> Option<(Command, Vec<u8>)> {
        if raw.len() > MAX_MESSAGE {
            let envelope = fetch::envelope(&raw, fetch::MAX_ENVELOPE);
            self.over_limit(cmd, raw.len(), envelope);
            return None;
        }
        Some((cmd, raw))
    }

    /// A message over the limit: its envelope kept aside, or dropped.
    fn over_limit(&mut self, cmd: Command, len: usize, envelope: Option<Vec<u8>>) {
        match envelope {
            Some(env) => {
                self.over.envelopes.push((cmd, env));
                self.over.lens.push(len);
            }
            None => self.oversized(cmd, len),
        }
    }

    fn oversized(&self, cmd: Command, len: usize) {
        BusStats::add(&self.server.stats.received, 1);
        BusStats::add(&self.server.stats.dropped, 1);
        if let Some(suppressed) = self.server.logs.oversized() {
            tracing::warn!(
                list = cmd.list(),
                bytes = len,
                limit = MAX_MESSAGE,
                suppressed,
                "dropping a message over the size limit, unread"
            );
        }
    }

    /// Up to `room` requests from the lists in one round trip.
    async fn drain(
        &mut self,
        room: usize,
        busy: &mut [bool; Command::ALL.len()],
        turn: usize,
    ) -> redis::RedisResult<Popped> {
        let mut counts = split_room(room, *busy, turn);
        for (i, n) in counts.iter_mut().enumerate() {
            if self.broken[i].is_some() {
                *n = 0;
            }
        }
        let got = self.drain_counts(counts).await?;
        let mut popped = Vec::new();
        for (i, msgs) in got.into_iter().enumerate() {
            if counts[i] > 0 {
                busy[i] = !msgs.is_empty();
            }
            popped.extend(msgs.into_iter().map(|raw| (Command::ALL[i], raw)));
        }
        Ok(popped)
    }

    /// Pops `counts[i]` from list `i` with the bounded script: per list,
    /// the messages kept. Wrong-typed lists are marked broken.
    async fn drain_counts(
        &mut self,
        counts: [usize; LISTS],
    ) -> redis::RedisResult<[Vec<Vec<u8>>; LISTS]> {
        let lists = Command::ALL.map(Command::list);
        let got = fetch::pop(&mut self.conn, &lists, &counts, MAX_MESSAGE).await?;
        let mut out: [Vec<Vec<u8>>; LISTS] = std::array::from_fn(|_| Vec::new());
        for (i, popped) in got.into_iter().enumerate().take(LISTS) {
            match popped {
                fetch::Popped::WrongType(kind) => self.mark_broken(i, kind),
                fetch::Popped::Messages(msgs) => {
                    for m in msgs {
                        match m {
                            fetch::Message::Raw(raw) => out[i].push(raw),
                            fetch::Message::Oversized { len, envelope } => {
                                self.over_limit(Command::ALL[i], len, envelope)
                            }
                        }
                    }
                }
            }
        }
        Ok(out)
    }
}

/// How many of `room` requests to ask of each list: a list that was empty
/// last time is still asked for one, so it is never starved; the busy ones
/// share the rest, the odd ones out turning with `turn`. With less room
/// than lists, the lists take turns for it.
fn split_room<const N: usize>(room: usize, busy: [bool; N], turn: usize) -> [usize; N] {
    let mut counts = [0; N];
    if room < N {
        for i in 0..room {
            counts[(turn + i) % N] += 1;
        }
        return counts;
    }
    let busy_n = busy.iter().filter(|b| **b).count();
    // All idle is treated as all busy: share evenly.
    let sharing: Vec<usize> = (0..N).filter(|i| busy_n == 0 || busy[*i]).collect();
    let mut left = room;
    for (i, c) in counts.iter_mut().enumerate() {
        if !sharing.contains(&i) {
            *c = 1;
            left -= 1;
        }
    }
    let (each, extra) = (left / sharing.len(), left % sharing.len());
    for (k, i) in sharing.iter().enumerate() {
        let rank = (k + sharing.len() - turn % sharing.len()) % sharing.len();
        counts[*i] = each + usize::from(rank < extra);
    }
    counts
}

/// Answers batches; shared by the batch tasks.
struct Server {
    conn: ConnectionManager,
    stats: Arc<BusStats>,
    shutdown: CancellationToken,
    /// Seconds a sender's clock may be behind ours.
    skew: u64,
    logs: Arc<batch::Logs>,
    /// Bytes of replies in flight, for the whole handler ([`reply`]).
    budget: Arc<Semaphore>,
    /// One history list held at a time, for the whole handler ([`reply`]).
    lane: Arc<tokio::sync::Mutex<()>>,
}

/// A failed attempt to answer a batch.
struct Failure {
    error: String,
    /// Whether Redis certainly received none of the replies.
    nothing_sent: bool,
}

impl Server {
    async fn serve_batch(
        self: Arc<Self>,
        popped: Vec<(Command, Vec<u8>)>,
        over: Oversized,
        permits: OwnedSemaphorePermit,
        popped_at: Instant,
    ) {
        let now = unix_now();
        let mut answers = batch::triage_all(&popped, now, self.skew, &self.stats, &self.logs);
        answers.extend(batch::triage_oversized(
            &over.envelopes,
            &over.lens,
            MAX_MESSAGE,
            now,
            self.skew,
            &self.stats,
            &self.logs,
        ));
        if !answers.is_empty() && self.answer_all(&answers).await {
            self.stats.observe(popped_at.elapsed(), answers.len());
        }
        self.stats.done(popped.len() + over.lens.len());
        drop(permits);
    }
}

/// `LPUSH KEYS[1] ARGV...`, or -1 when the key holds another type.
const PUSH: &str = "if redis.call('TYPE', KEYS[1]).ok ~= 'list' and redis.call('EXISTS', KEYS[1]) == 1 then return -1 end \
     return redis.call('LPUSH', KEYS[1], unpack(ARGV))";

/// What one push did.
struct Pushed {
    /// Replies delivered: answers (slot 0) and errors of each code.
    codes: [u64; CODE_SLOTS],
    /// Lists (`ret`) that hold another type, and their replies not pushed.
    refused: Vec<(String, usize)>,
}

#[cfg(test)]
mod tests;
