//! Logging that cannot hurt the daemon, and log lines nobody can forge.
//!
//! - **A sink that never blocks or panics.** Log lines go through a bounded
//!   queue to a writer thread of their own. A full queue (a reader that
//!   stopped reading) drops the line; a sink that fails (a closed pipe, as
//!   with `zos-perf run 2>&1 | head`) is dropped for good. Either way the
//!   line is counted ([`dropped_lines`]) and the daemon goes on: a log line
//!   is never worth a stuck or dead process. tracing-subscriber's own
//!   fallback (printing the write error to stderr, which panics on a closed
//!   pipe) is switched off, and no write of ours ever returns an error.
//! - **[`Escaped`]** writes a value taken from outside (a bus message, a
//!   stored value, a remote error) with every control character escaped, so
//!   a raw newline cannot start a forged log line.
//! - **[`RateLimit`]** lets a warning that input can repeat at will through
//!   at most once per period, and says how many were held back meanwhile.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Lines waiting for the writer thread, at most.
const QUEUE_LINES: usize = 1024;

static DROPPED: AtomicU64 = AtomicU64::new(0);
static SINK_DEAD: AtomicBool = AtomicBool::new(false);
static QUEUE: OnceLock<SyncSender<Msg>> = OnceLock::new();

enum Msg {
    Line(Vec<u8>),
    Flush(SyncSender<()>),
}

/// Log lines that never reached stderr (queue full or stderr failing).
pub fn dropped_lines() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Whether stderr has failed and is no longer written to.
#[cfg(test)]
pub(crate) fn sink_dropped() -> bool {
    SINK_DEAD.load(Ordering::Relaxed)
}

/// A writer for a tracing subscriber that hands each line to the queue
/// (started here, once) and never blocks, fails or panics. The subscriber
/// using it should switch off `log_internal_errors`.
pub fn queued_stderr() -> tracing_subscriber::fmt::writer::BoxMakeWriter {
    static STARTED: std::sync::Once = std::sync::Once::new();
    STARTED.call_once(|| {
        let (tx, rx) = sync_channel(QUEUE_LINES);
        let spawned = std::thread::Builder::new()
            .name("zos-perf-log".into())
            .stack_size(64 * 1024)
            .spawn(move || write_lines(rx, std::io::stderr()));
        if spawned.is_err() {
            // No thread, no queue: every line counts as dropped.
            SINK_DEAD.store(true, Ordering::Relaxed);
        } else {
            let _ = QUEUE.set(tx);
        }
    });
    tracing_subscriber::fmt::writer::BoxMakeWriter::new(|| QueueWriter)
}

/// Waits up to `wait` for the lines queued so far to be written.
pub fn flush(wait: Duration) {
    let Some(queue) = QUEUE.get() else { return };
    let (done, finished) = sync_channel(1);
    if queue.try_send(Msg::Flush(done)).is_ok() {
        let _ = finished.recv_timeout(wait);
    }
}

fn write_lines(rx: Receiver<Msg>, mut sink: impl Write) {
    while let Ok(msg) = rx.recv() {
        match msg {
            Msg::Line(line) => {
                if SINK_DEAD.load(Ordering::Relaxed) {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                } else if sink.write_all(&line).is_err() {
                    SINK_DEAD.store(true, Ordering::Relaxed);
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
            Msg::Flush(done) => {
                let _ = sink.flush();
                let _ = done.try_send(());
            }
        }
    }
}

/// What the formatter writes one event into: tracing-subscriber formats the
/// whole line first and hands it over in one `write_all`.
struct QueueWriter;

impl Write for QueueWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let queued = match QUEUE.get() {
            Some(_) if SINK_DEAD.load(Ordering::Relaxed) => false,
            Some(queue) => match queue.try_send(Msg::Line(buf.to_vec())) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        };
        if !queued {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A value from outside, written with its control characters escaped
/// (`\n`, `\r`, `\t`, `\u{1b}`, ...): one log event stays one line.
pub(crate) struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write as _;
        for c in self.0.chars() {
            match c {
                '\n' => f.write_str("\\n")?,
                '\r' => f.write_str("\\r")?,
                '\t' => f.write_str("\\t")?,
                c if c.is_control() => write!(f, "\\u{{{:x}}}", c as u32)?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

/// Lets one event through per `period`; counts the others.
#[derive(Debug)]
pub(crate) struct RateLimit {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RateLimit {
    pub const fn new(period: Duration) -> RateLimit {
        RateLimit {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(suppressed)` when this event may be logged (with how many were
    /// held back since the last one logged), `None` when it is held back.
    pub fn allow(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        match st.0 {
            Some(last) if now.duration_since(last) < self.period => {
                st.1 += 1;
                None
            }
            _ => {
                let suppressed = st.1;
                *st = (Some(now), 0);
                Some(suppressed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped() {
        let forged = "x\n2026-01-01T00:00:00Z  INFO zos_perf: forged\r\t\u{1b}[31m\u{85}é";
        let out = Escaped(forged).to_string();
        assert!(!out.chars().any(char::is_control), "{out:?}");
        assert_eq!(
            out,
            "x\\n2026-01-01T00:00:00Z  INFO zos_perf: forged\\r\\t\\u{1b}[31m\\u{85}é"
        );
    }

    #[test]
    fn a_rate_limit_lets_one_through_per_period_and_counts_the_rest() {
        let limit = RateLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.allow(), Some(0));
        for _ in 0..5 {
            assert_eq!(limit.allow(), None);
        }
        let limit = RateLimit::new(Duration::ZERO);
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), Some(0));
    }

    #[test]
    fn a_failing_sink_is_dropped_and_counted_without_an_error() {
        struct Broken;
        impl Write for Broken {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let before = dropped_lines();
        let (tx, rx) = sync_channel(4);
        tx.send(Msg::Line(b"a\n".to_vec())).expect("send");
        tx.send(Msg::Line(b"b\n".to_vec())).expect("send");
        drop(tx);
        write_lines(rx, Broken);
        assert!(sink_dropped());
        assert!(dropped_lines() >= before + 2);
    }
}
