//! What the collector keeps of one node: its key figures, not its results.
//!
//! A node's `get_all` answer is read once, as it arrives, into a
//! [`NodeState`] of fixed size (plus its last error, cut short): the
//! results themselves are dropped at once. The figures are those of
//! `tasks::view` (the same the daemon's history and dashboard show), so
//! a node's CPU score means the same here as on its own page.

use serde::Serialize;
use serde_json::Value;

use crate::tasks::public_ip::view::public_ip_counts;
use crate::tasks::view::key_figures;
use crate::tasks::NAMES;
use crate::text;

/// Characters kept of a node's error (escaped to one line).
pub const MAX_ERROR_CHARS: usize = 160;

/// The latest of one node, as polled.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeState {
    pub node: u32,
    pub farm: u32,
    /// Its twin, once the chain named it.
    pub twin: Option<u32>,
    /// Whether the last poll got its results.
    pub answered: bool,
    /// Why the last poll did not (escaped, at most [`MAX_ERROR_CHARS`]).
    pub error: Option<Box<str>>,
    /// How long the last poll took, seconds.
    pub took: f64,
    /// When it was last polled (Unix seconds; 0 = not yet).
    pub polled_at: u64,
    /// cpu-benchmark, seconds (lower is better).
    pub cpu_single: Option<f64>,
    pub cpu_multi: Option<f64>,
    /// iperf, best over the targets without error, bits/s.
    pub download: Option<f64>,
    pub upload: Option<f64>,
    /// healthcheck: checks with errors.
    pub health_failing: Option<u32>,
    /// public-ip-validation: the farm's IPs valid, invalid, skipped.
    pub ips: Option<[u32; 3]>,
    /// provisiontest: whether the last one passed.
    pub provision_pass: Option<bool>,
    /// Each task's result timestamp (Unix seconds), by `tasks::NAMES`.
    #[serde(serialize_with = "by_task")]
    pub results: [Option<u64>; 5],
}

fn by_task<S: serde::Serializer>(ts: &[Option<u64>; 5], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(None)?;
    for (name, t) in NAMES.iter().zip(ts) {
        if let Some(t) = t {
            map.serialize_entry(name, t)?;
        }
    }
    map.end()
}

/// Why a poll failed, kept short and on one line.
pub fn short_error(e: &str) -> Box<str> {
    text::clean(e, MAX_ERROR_CHARS).into_boxed_str()
}

impl NodeState {
    pub fn new(node: u32, farm: u32) -> NodeState {
        NodeState {
            node,
            farm,
            ..NodeState::default()
        }
    }

    /// The age of the oldest result, seconds at `now`.
    pub fn oldest_age(&self, now: u64) -> Option<u64> {
        self.results
            .iter()
            .flatten()
            .min()
            .map(|t| now.saturating_sub(*t))
    }

    /// A poll that failed: the figures of the last answer stay (their age
    /// tells how old they are), the node is marked as not answering.
    pub fn failed(&mut self, error: &str, took: f64, at: u64) {
        self.answered = false;
        self.error = Some(short_error(error));
        self.took = took;
        self.polled_at = at;
    }

    /// Reads a `get_all` answer (or one `get` result). Anything that is not
    /// a list of results is a failed poll; results of unknown tasks, and
    /// fields of another shape, are skipped.
    pub fn answered(&mut self, reply: &[u8], took: f64, at: u64) {
        let value: Value = match serde_json::from_slice(reply) {
            Ok(v) => v,
            Err(e) => return self.failed(&format!("the answer is not JSON: {e}"), took, at),
        };
        let items = match &value {
            Value::Array(a) => a.as_slice(),
            Value::Object(_) => std::slice::from_ref(&value),
            _ => return self.failed("the answer is not a list of results", took, at),
        };
        if !items.is_empty()
            && items
                .iter()
                .all(|i| !i.get("name").is_some_and(Value::is_string))
        {
            return self.failed("the answer is not a list of results", took, at);
        }
        self.answered = true;
        self.error = None;
        self.took = took;
        self.polled_at = at;
        for item in items {
            let Some(slot) = item
                .get("name")
                .and_then(Value::as_str)
                .and_then(|n| NAMES.iter().position(|k| *k == n))
            else {
                continue;
            };
            let (name, result) = (NAMES[slot], item.get("result").unwrap_or(&Value::Null));
            self.results[slot] = item.get("timestamp").and_then(Value::as_u64);
            self.read_figures(name, result);
        }
    }

    /// The key figures of one result, by the labels its task's view gives
    /// them (the view, not this file, knows which task has which).
    fn read_figures(&mut self, name: &str, result: &Value) {
        let figures = key_figures(name, result);
        for f in &figures {
            match f.label {
                "single" => self.cpu_single = Some(f.value),
                "multi" => self.cpu_multi = Some(f.value),
                "best download" => self.download = Some(f.value),
                "best upload" => self.upload = Some(f.value),
                "failing checks" => self.health_failing = Some(f.value as u32),
                "pass" => self.provision_pass = Some(f.value > 0.5),
                _ => {}
            }
        }
        if name == crate::tasks::public_ip::NAME && !figures.is_empty() {
            self.ips = Some(public_ip_counts(result).map(|n| u32::try_from(n).unwrap_or(u32::MAX)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_becomes_its_key_figures_and_junk_a_failure() {
        let mut n = NodeState::new(7, 1);
        let reply = json!([
            {"name": "cpu-benchmark", "timestamp": 100, "result": {"single": 1.5, "multi": 0.5}},
            {"name": "iperf", "timestamp": 90, "result": [
                {"test_type": "tcp", "node_ip": "198.51.100.2", "error": "",
                 "download_speed": 9e8, "upload_speed": 4e8}]},
            {"name": "healthcheck", "timestamp": 110, "result": {"a": ["x"], "b": []}},
            {"name": "public-ip-validation", "timestamp": 120, "result":
                {"203.0.113.1": {"state": "valid"}, "203.0.113.2": {"state": "skipped"}}},
            {"name": "provisiontest", "timestamp": 130, "result": ["boot failed"]},
            {"name": "someday", "timestamp": 1, "result": {}}
        ]);
        n.answered(reply.to_string().as_bytes(), 0.25, 200);
        assert!(n.answered && n.error.is_none());
        assert_eq!((n.cpu_single, n.cpu_multi), (Some(1.5), Some(0.5)));
        assert_eq!((n.download, n.upload), (Some(9e8), Some(4e8)));
        assert_eq!(n.health_failing, Some(1));
        assert_eq!(n.ips, Some([1, 0, 1]));
        assert_eq!(n.provision_pass, Some(false));
        assert_eq!(n.oldest_age(200), Some(110));
        let json = serde_json::to_value(&n).expect("json");
        assert_eq!(json["results"]["iperf"], 90);

        // Junk keeps the last figures and says why.
        n.answered(b"<html>", 1.0, 300);
        assert!(!n.answered);
        assert!(n.error.as_deref().is_some_and(|e| e.contains("not JSON")));
        assert_eq!(n.cpu_single, Some(1.5));
        n.answered(br#"{"weird": 1}"#, 1.0, 300);
        assert!(!n.answered, "an object without a name is no result");
        n.answered(b"\"text\"", 1.0, 300);
        assert!(!n.answered);
        n.failed(&format!("bad\n\x1b[31m{}", "x".repeat(1000)), 2.0, 400);
        let e = n.error.as_deref().unwrap_or_default();
        assert!(e.chars().count() <= MAX_ERROR_CHARS + 20, "{e}");
        assert!(!e.contains(['\n', '\x1b']), "{e}");
    }

    #[test]
    fn a_node_costs_a_bounded_number_of_bytes() {
        // The record itself, whatever a node sends...
        assert!(std::mem::size_of::<NodeState>() <= 256);
        // ...and its error, the worst text escaped.
        let mut n = NodeState::new(1, 1);
        n.failed(&"\u{1b}\u{9b}\u{7f}".repeat(10_000), 0.0, 1);
        assert!(n.error.as_deref().map_or(0, str::len) <= 2048);
    }
}
