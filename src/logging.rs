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
//! - **Every field escaped.** A value taken from outside (a bus message, a
//!   stored value, a remote error) is written with every control character
//!   escaped, so a raw newline cannot start a forged log line nor an ESC
//!   drive the terminal: text lines through [`escaped_fields`], whatever
//!   the call site wrote; JSON lines by serde_json (C0) and the sink (DEL
//!   and C1, as `\u` escapes). [`Escaped`] does the same for one value.
//! - **[`RateLimit`]** lets a warning that input can repeat at will through
//!   at most once per period, and says how many were held back meanwhile.

use std::fmt;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing::field::Field;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::format::{debug_fn, Writer};
use tracing_subscriber::fmt::FormatFields;

use crate::util::text::{escape, json_bytes, Keep};

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
            // DEL and C1 as `\u` escapes: JSON lines stay the same JSON
            // (serde_json escapes only C0); text lines have none left.
            Some(queue) => match queue.try_send(Msg::Line(json_bytes(buf).into_owned())) {
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
/// (`\n`, `\r`, `\t`, `\u{1b}`, ...): one log event stays one line. The
/// one escaping of the crate ([`crate::util::text::escape`]).
pub(crate) use crate::util::text::Escaped;

/// The fields of a text log line (the message too) with every control
/// character escaped, whoever logged them and however (`%value`, `?value`,
/// an error): a remote error, a stored value or a GraphQL message in a
/// field cannot forge a line, move the cursor or write the terminal's
/// clipboard. tracing-subscriber's own fields escape only some of those
/// characters in the message, none in a `%value`. Formatted as its default
/// fields are: the message, then `name=value`, separated by spaces.
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(
        |w: &mut Writer<'_>, field: &Field, value: &dyn fmt::Debug| {
            let text = format!("{value:?}");
            let text = escape(&text, Keep::Nothing);
            match field.name() {
                "message" => w.write_str(&text),
                name => write!(w, "{}={text}", name.trim_start_matches("r#")),
            }
        },
    )
    .delimited(" ")
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
    fn text_log_lines_escape_every_field_and_the_message() {
        #[derive(Clone, Default)]
        struct Lines(std::sync::Arc<Mutex<Vec<u8>>>);
        impl Write for Lines {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.lock().expect("lines").extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let lines = Lines::default();
        let sink = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .fmt_fields(escaped_fields())
            .with_ansi(false)
            .finish();
        let hostile = "a\nINFO forged\r\u{1b}]52;c;SGVsbG8=\u{7}\u{9b}2J\u{7f}";
        let error = std::io::Error::other(hostile);
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(url = %hostile, debug = ?hostile, error = &error as &dyn std::error::Error, "said {hostile}");
        });
        let out = String::from_utf8(lines.0.lock().expect("lines").clone()).expect("utf-8");
        let body = out.strip_suffix('\n').expect("one line");
        assert!(!body.chars().any(char::is_control), "{out:?}");
        assert!(body.contains("said a\\nINFO forged\\r\\u{1b}]52;"), "{out}");
        assert!(body.contains(" url=a\\nINFO"), "{out}");
        assert!(body.contains(" error=a\\n"), "{out}");
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
