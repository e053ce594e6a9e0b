//! Leases in Redis: what every zos-perf process on one Redis honours.
//!
//! Two leases exist, each one key holding who has it (pid, host, what for,
//! since when, a random token) with an expiry:
//!
//! - [`DAEMON_KEY`]: one daemon per Redis. A second daemon started on the
//!   same Redis refuses to run and names the first, unless the first's lease
//!   has expired (it died without releasing it).
//! - [`EXCLUSIVE_KEY`]: the exclusive measurements (cpu-benchmark, iperf,
//!   public-ip-validation) of every process on this Redis, daemons and
//!   `run-task` alike, run one at a time, so none distorts another's figures.
//!
//! A holder renews its lease every third of [`TTL`]; one that stops (killed,
//! frozen, cut off from Redis) loses it after at most [`TTL`]. Renewal and
//! release only touch a lease whose token is still ours (compare-and-set in
//! a Lua script), so a holder that lost its lease can never cut short the
//! next holder's.
//!
//! A value no zos-perf wrote is not a lease, whoever put it there: another
//! type, no expiry, an expiry longer than [`TTL`] (no holder ever sets
//! one), or anything but a holder record (other JSON such as `{}` or `"x"`,
//! or not JSON at all). Such a value is replaced at once, and the warning
//! shows what was found (escaped, at most [`SAMPLE`] bytes), so that no
//! stray write can block a daemon or a measurement for a long expiry.
//!
//! A little over 400 lines with its tests: both leases share the scripts,
//! the holder record and the renewal loop.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::aio::ConnectionLike;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::node_redis::RedisLink;

/// One daemon per Redis.
pub const DAEMON_KEY: &str = "perf:lease:daemon";
/// The exclusive measurements, one at a time across processes.
pub const EXCLUSIVE_KEY: &str = "perf:lease:exclusive";
/// A lease not renewed within this time is free again.
pub const TTL: Duration = Duration::from_secs(30);

/// Who holds a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// What the lease is held for (`daemon`, `cpu-benchmark`, ...).
    pub what: String,
    /// Unix seconds when it was taken.
    pub since: i64,
    /// Tells this holder from any other, even with the same pid and host.
    pub token: String,
}

impl Holder {
    /// This process, holding a lease for `what`.
    pub fn me(what: &str) -> Holder {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown host".into());
        Holder {
            pid: std::process::id(),
            host,
            what: what.to_string(),
            since: chrono::Utc::now().timestamp(),
            token: format!("{:016x}", rand::random::<u64>()),
        }
    }

    fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let since = chrono::DateTime::from_timestamp(self.since, 0)
            .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
            .unwrap_or_else(|| "?".into());
        write!(
            f,
            "pid {} on {} ({}, since {since})",
            self.pid,
            crate::logging::Escaped(&self.host),
            crate::logging::Escaped(&self.what)
        )
    }
}

/// The outcome of one attempt to take a lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Mine,
    /// Someone else has it (and who, when that can be read).
    HeldBy(Option<Holder>),
}

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     return redis.call('DEL', KEYS[1]) else return 0 end";
/// How much of a value that is not a lease the warning shows.
pub const SAMPLE: usize = 120;
/// The longest value a holder writes (its host name is at most 64 bytes):
/// a longer one is not read whole to be judged.
const MAX_HOLDER: usize = 1024;

/// Removes `KEYS[1]` unless it is a lease a holder wrote: a string with an
/// expiry of at most `ARGV[1]` ms holding a holder record (the fields of
/// [`Holder`], with their types, in at most `ARGV[3]` bytes). Returns
/// nothing when it is a lease (or absent), else why it was removed and the
/// first `ARGV[2]` bytes found.
const REPAIR: &str = "local t = redis.call('TYPE', KEYS[1]).ok \
     if t == 'none' then return false end \
     local why = nil \
     local sample = '' \
     if t ~= 'string' then why = 'a ' .. t else \
       sample = redis.call('GETRANGE', KEYS[1], 0, tonumber(ARGV[2]) - 1) \
       local ttl = redis.call('PTTL', KEYS[1]) \
       if ttl < 0 then why = 'no expiry' \
       elseif ttl > tonumber(ARGV[1]) then why = 'an expiry of ' .. ttl .. ' ms' \
       elseif redis.call('STRLEN', KEYS[1]) > tonumber(ARGV[3]) then why = 'not a holder' \
       else \
         local ok, h = pcall(cjson.decode, redis.call('GET', KEYS[1])) \
         local function whole(n) return type(n) == 'number' and n == math.floor(n) end \
         if not ok or type(h) ~= 'table' or not whole(h.pid) or h.pid < 0 \
           or h.pid > 4294967295 or type(h.host) ~= 'string' \
           or type(h.what) ~= 'string' or not whole(h.since) \
           or math.abs(h.since) > 1e15 or type(h.token) ~= 'string' then \
           why = 'not a holder' end \
       end \
     end \
     if why == nil then return false end \
     redis.call('DEL', KEYS[1]) \
     return {why, sample}";

/// `EVAL <script> 1 <key>`: the scripts are a few lines, sent whole.
fn eval(script: &str, key: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(script).arg(1).arg(key);
    cmd
}

/// One attempt to take the lease at `key` for `ttl`.
pub async fn try_acquire(
    conn: &mut impl ConnectionLike,
    key: &str,
    me: &Holder,
    ttl: Duration,
) -> redis::RedisResult<Taken> {
    let ms = ttl.as_millis().max(1) as u64;
    for _ in 0..2 {
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(me.encode())
            .arg("NX")
            .arg("PX")
            .arg(ms)
            .query_async(conn)
            .await?;
        if set.is_some() {
            return Ok(Taken::Mine);
        }
        // Every holder sets [`TTL`]: a longer expiry is nobody's lease.
        let repaired: Option<(String, Vec<u8>)> = eval(REPAIR, key)
            .arg(TTL.as_millis() as u64)
            .arg(SAMPLE)
            .arg(MAX_HOLDER)
            .query_async(conn)
            .await?;
        let Some((why, sample)) = repaired else { break };
        tracing::warn!(
            key,
            found = %crate::logging::Escaped(&String::from_utf8_lossy(&sample)),
            why = %crate::logging::Escaped(&why),
            "the lease key held something no zos-perf wrote (not a lease); replaced it"
        );
    }
    let raw: Option<Vec<u8>> = redis::cmd("GET").arg(key).query_async(conn).await?;
    let holder = raw.and_then(|r| serde_json::from_slice::<Holder>(&r).ok());
    Ok(Taken::HeldBy(holder))
}

/// Extends our lease; `false` when it is no longer ours.
pub async fn renew(
    conn: &mut impl ConnectionLike,
    key: &str,
    me: &Holder,
    ttl: Duration,
) -> redis::RedisResult<bool> {
    let n: i64 = eval(RENEW, key)
        .arg(me.encode())
        .arg(ttl.as_millis().max(1) as u64)
        .query_async(conn)
        .await?;
    Ok(n == 1)
}

/// Gives our lease back (someone else's is left alone).
pub async fn release(
    conn: &mut impl ConnectionLike,
    key: &str,
    me: &Holder,
) -> redis::RedisResult<bool> {
    let n: i64 = eval(RELEASE, key)
        .arg(me.encode())
        .query_async(conn)
        .await?;
    Ok(n == 1)
}

/// A lease we hold, renewed in the background until [`Held::release`] or
/// drop. A renewal that finds the key gone (Redis flushed or restarted
/// empty) takes the lease again and logs it; one that finds another holder
/// (ours expired while this process was frozen or cut off, and someone
/// took it) fires `lost`, and [`Held::lost_to`] names that holder.
pub struct Held {
    key: &'static str,
    me: Holder,
    link: RedisLink,
    stop: CancellationToken,
    pub lost: CancellationToken,
    lost_to: Arc<Mutex<Option<String>>>,
}

impl Held {
    /// Starts renewing the lease `me` holds at `key`.
    pub fn keep(link: RedisLink, key: &'static str, me: Holder) -> Held {
        Held::spawn(link, key, me, true)
    }

    /// Like [`Held::keep`] for a lease not taken yet because Redis did not
    /// answer: the first renewal that reaches Redis takes it (or finds it
    /// held, and fires `lost`).
    pub fn pending(link: RedisLink, key: &'static str, me: Holder) -> Held {
        Held::spawn(link, key, me, false)
    }

    fn spawn(link: RedisLink, key: &'static str, me: Holder, mut have: bool) -> Held {
        let stop = CancellationToken::new();
        let lost = CancellationToken::new();
        let lost_to = Arc::new(Mutex::new(None));
        let (l, m, s, lo, to) = (
            link.clone(),
            me.clone(),
            stop.clone(),
            lost.clone(),
            lost_to.clone(),
        );
        tokio::spawn(async move {
            loop {
                let wait = if have { TTL / 3 } else { RETRY };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = s.cancelled() => return,
                }
                let Some(mut conn) = l.get() else { continue };
                match keep_once(&mut conn, key, &m, have).await {
                    Ok(Kept::Yes) => have = true,
                    Ok(Kept::Retaken) => {
                        tracing::warn!(key, holder = %m,
                            "the lease was gone from redis (flushed or restarted empty?); took it again");
                        have = true;
                    }
                    Ok(Kept::Lost(by)) => {
                        let by = by.map(|h| h.to_string()).unwrap_or_else(|| "?".into());
                        tracing::error!(key, holder = %m, held_by = %by,
                            "lost the lease: another process holds it");
                        *to.lock().unwrap_or_else(|p| p.into_inner()) = Some(by);
                        lo.cancel();
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(key, error = %e, "cannot renew the lease; trying again")
                    }
                }
            }
        });
        Held {
            key,
            me,
            link,
            stop,
            lost,
            lost_to,
        }
    }

    pub fn holder(&self) -> &Holder {
        &self.me
    }

    /// Who took the lease, once `lost` has fired.
    pub fn lost_to(&self) -> Option<String> {
        self.lost_to
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops renewing and gives the lease back.
    pub async fn release(self) {
        self.stop.cancel();
        if let Some(mut conn) = self.link.get() {
            let done = release(&mut conn, self.key, &self.me);
            let _ = tokio::time::timeout(Duration::from_secs(1), done).await;
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // Renewal stops; the lease then expires by itself within TTL.
        self.stop.cancel();
    }
}

/// How often a lease not taken yet (Redis away) is tried.
const RETRY: Duration = Duration::from_secs(1);

enum Kept {
    Yes,
    Retaken,
    Lost(Option<Holder>),
}

/// One renewal; when it fails, one attempt to take the lease back.
async fn keep_once(
    conn: &mut impl ConnectionLike,
    key: &str,
    me: &Holder,
    have: bool,
) -> redis::RedisResult<Kept> {
    if have && renew(conn, key, me, TTL).await? {
        return Ok(Kept::Yes);
    }
    Ok(match try_acquire(conn, key, me, TTL).await? {
        Taken::Mine if have => Kept::Retaken,
        Taken::Mine => Kept::Yes,
        Taken::HeldBy(by) => Kept::Lost(by),
    })
}

/// The daemon's lease on the Redis behind `link` ([`DAEMON_KEY`]): taken
/// for this process, or an error naming the daemon that holds it. A holder
/// on this host whose process is gone (killed before it could release the
/// lease) is taken over at once rather than after [`TTL`]. Without an
/// answer from Redis the lease is taken as soon as it answers (a holder
/// found then fires `lost`). Call again with the new link when the daemon
/// moves to another Redis, after releasing the old lease.
pub async fn take_daemon(link: &RedisLink) -> anyhow::Result<Held> {
    let me = Holder::me("daemon");
    let Some(mut conn) = link.get() else {
        return Ok(Held::pending(link.clone(), DAEMON_KEY, me));
    };
    for _ in 0..2 {
        match try_acquire(&mut conn, DAEMON_KEY, &me, TTL).await? {
            Taken::Mine => return Ok(Held::keep(link.clone(), DAEMON_KEY, me)),
            Taken::HeldBy(Some(h)) if h.host == me.host && (h.pid == me.pid || !alive(h.pid)) => {
                tracing::warn!(key = DAEMON_KEY, held_by = %h,
                    "the daemon lease is held by a process of this host that is gone; taking it over");
                release(&mut conn, DAEMON_KEY, &h).await?;
            }
            Taken::HeldBy(by) => {
                let by = by
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "an unreadable holder".into());
                anyhow::bail!(
                    "another zos-perf daemon uses redis at {}: {by} holds {DAEMON_KEY}; \
                     refusing to run a second one (its lease expires {}s after it stops renewing it)",
                    crate::node_redis::redacted(link.url()),
                    TTL.as_secs()
                );
            }
        }
    }
    anyhow::bail!("{DAEMON_KEY}: could not take the daemon lease")
}

/// Whether a process `pid` exists on this host (in our pid namespace).
fn alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(nix::errno::Errno::ESRCH)
    )
}

/// How a wait for a lease ended.
pub enum Waited {
    /// Ours (`None`: no Redis to hold it in, so nobody can hold it: the
    /// caller goes on without, as it cannot store anything that another
    /// process could distort either).
    Taken(Option<Box<Held>>),
    /// `cancel` fired.
    Cancelled,
    /// The deadline passed first; who held the lease then (`?` when the
    /// holder's record could not be read).
    TimedOut(String),
}

/// Waits until the lease at `key` is ours, `cancel` fires or `deadline`
/// (if any) passes, saying once who holds it meanwhile.
pub async fn wait_for(
    link: &RedisLink,
    key: &'static str,
    what: &str,
    cancel: &CancellationToken,
    deadline: Option<tokio::time::Instant>,
) -> Waited {
    let me = Holder::me(what);
    let mut told = false;
    loop {
        let Some(mut conn) = link.get() else {
            return Waited::Taken(None);
        };
        let held_by = match try_acquire(&mut conn, key, &me, TTL).await {
            Ok(Taken::Mine) => {
                return Waited::Taken(Some(Box::new(Held::keep(link.clone(), key, me))))
            }
            Ok(Taken::HeldBy(holder)) => {
                let by = holder.map(|h| h.to_string()).unwrap_or_else(|| "?".into());
                if !told {
                    tracing::info!(key, what, held_by = %by, "waiting for the lease");
                    told = true;
                }
                by
            }
            Err(e) => {
                tracing::warn!(key, error = %e, "cannot take the lease; going on without it");
                return Waited::Taken(None);
            }
        };
        let pause = tokio::time::sleep(Duration::from_millis(500));
        let until = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = pause => {}
            _ = until => return Waited::TimedOut(held_by),
            _ = cancel.cancelled() => return Waited::Cancelled,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_is_named_by_pid_host_and_purpose() {
        let h = Holder {
            pid: 42,
            host: "node\n1".into(),
            what: "daemon".into(),
            since: 0,
            token: "t".into(),
        };
        assert_eq!(
            h.to_string(),
            "pid 42 on node\\n1 (daemon, since 1970-01-01 00:00:00 UTC)"
        );
        assert_ne!(Holder::me("x").token, Holder::me("x").token);
    }
}
