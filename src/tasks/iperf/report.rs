//! What one iperf3 run leaves in the result: its JSON report read into an
//! [`Entry`] (docs/tasks/iperf.md).
//!
//! iperf3 3.12 with `-R --json` prints one JSON object. The figures used:
//! - `end.sum_sent.bits_per_second`: the sending side's rate. With `-R` the
//!   remote server sends, so this is the rate the server put on the wire
//!   towards us. Stored as `upload_speed`, as the grid always has.
//! - `end.sum_received.bits_per_second`: what we received. Stored as
//!   `download_speed` for TCP.
//! - UDP: `end.streams[0].udp.bits_per_second` is stored as `download_speed`
//!   (docs/tasks/iperf.md). In 3.12 that stream figure is computed from the bytes the
//!   server sent over our elapsed time (the stream's `bytes` equal
//!   `sum_sent.bytes`), with our receiver-side `lost_packets`/`jitter_ms`
//!   beside it; `sum_received` holds the bytes that actually arrived. So
//!   with 3.12 a UDP entry's download equals its upload (both the server's
//!   send rate); the loss is not in the entry.
//! - `end.cpu_utilization_percent`: `host_*` is this node, `remote_*` the
//!   server, in percent.
//! - `error`: iperf3's own error text (`unable to connect to server: ...`,
//!   `the server is busy running a test. try again later`), with `end`
//!   empty.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// iperf3's answer when its server is already running a test.
pub const BUSY: &str = "the server is busy running a test. try again later";

/// TCP or UDP, as written in `test_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

/// CPU use during a run, in percent, as iperf3 measures it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CpuReport {
    pub host_total: f64,
    pub host_user: f64,
    pub host_system: f64,
    pub remote_total: f64,
    pub remote_user: f64,
    pub remote_system: f64,
}

/// One element of the iperf result array (docs/tasks/iperf.md); the field names are
/// wire facts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Bits per second.
    pub upload_speed: f64,
    /// Bits per second.
    pub download_speed: f64,
    pub node_id: u32,
    /// The address tested.
    pub node_ip: String,
    /// `tcp` or `udp`.
    pub test_type: String,
    /// Empty when the run succeeded.
    pub error: String,
    pub cpu_report: CpuReport,
}

/// The figures of one run, before the node and address are attached.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Measure {
    pub upload: f64,
    pub download: f64,
    pub cpu: CpuReport,
    /// Empty when the run succeeded.
    pub error: String,
}

impl Measure {
    /// A run that produced no figures.
    pub fn failed(error: impl Into<String>) -> Measure {
        Measure {
            error: error.into(),
            ..Measure::default()
        }
    }

    pub(crate) fn is_busy(&self) -> bool {
        self.error.trim() == BUSY
    }

    pub(crate) fn into_entry(self, node_id: u32, node_ip: String, protocol: Protocol) -> Entry {
        Entry {
            upload_speed: self.upload,
            download_speed: self.download,
            node_id,
            node_ip,
            test_type: protocol.as_str().to_string(),
            error: self.error,
            cpu_report: self.cpu,
        }
    }
}

/// Which figure of the report is the download speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reading {
    /// The seed era's (`-R`): `sum_received` for TCP, the UDP stream's
    /// figure for UDP.
    Seed(Protocol),
    /// zos 2026's (no `-R`, the client sends): `sum_received` for both.
    Sums(Protocol),
}

/// iperf3 output that is not a report ([`parse`]); the run's entry
/// carries this text as its `error`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ReportError {
    /// The output does not parse: serde's reason and the start of the
    /// output (clipped, quoted).
    #[error("iperf3 output is not a JSON report ({reason}): {output:?}")]
    NotJson { reason: String, output: String },
    #[error("iperf3 output is not a JSON object")]
    NotAnObject,
    /// No `sum_sent` or download figure for this protocol in `end`.
    #[error("iperf3 report has no {} figures in \"end\"", .0.as_str())]
    NoFigures(Protocol),
}

/// Reads iperf3's `--json` output. A report carrying an `error` keeps the
/// error and zero speeds, whatever partial figures it may hold.
pub fn parse(stdout: &[u8], protocol: Protocol) -> Result<Measure, ReportError> {
    parse_as(stdout, Reading::Seed(protocol))
}

/// [`parse`], with the download figure chosen by `reading`.
pub(crate) fn parse_as(stdout: &[u8], reading: Reading) -> Result<Measure, ReportError> {
    let (protocol, download_at) = match reading {
        Reading::Seed(Protocol::Udp) => (Protocol::Udp, "/streams/0/udp/bits_per_second"),
        Reading::Seed(p) | Reading::Sums(p) => (p, "/sum_received/bits_per_second"),
    };
    let v: Value = serde_json::from_slice(stdout).map_err(|e| {
        let text = String::from_utf8_lossy(stdout);
        ReportError::NotJson {
            reason: e.to_string(),
            output: crate::util::text::clip(text.trim(), 200),
        }
    })?;
    let Some(report) = v.as_object() else {
        return Err(ReportError::NotAnObject);
    };
    let error = report
        .get("error")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim()
        .to_string();
    let end = report.get("end").cloned().unwrap_or(Value::Null);
    let cpu = end
        .get("cpu_utilization_percent")
        .and_then(|c| serde_json::from_value::<CpuReport>(c.clone()).ok())
        .unwrap_or_default();
    if !error.is_empty() {
        return Ok(Measure {
            cpu,
            ..Measure::failed(error)
        });
    }
    let rate = |pointer: &str| end.pointer(pointer).and_then(Value::as_f64);
    let upload = rate("/sum_sent/bits_per_second");
    let download = rate(download_at);
    match (upload, download) {
        (Some(upload), Some(download)) => Ok(Measure {
            upload,
            download,
            cpu,
            error: String::new(),
        }),
        _ => Err(ReportError::NoFigures(protocol)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real iperf3 3.12 reports on loopback, trimmed to `start.version`,
    /// `start.test_start` and `end` (`-R --json --udp --length 16B --time 1`
    /// and `-R --json --time 1`).
    const UDP: &str = include_str!("testdata/udp-reverse-3.12.json");
    const TCP: &str = include_str!("testdata/tcp-reverse-3.12.json");

    /// serde_json reads a float to within an ulp or so of what was written.
    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want.abs() * 1e-12
    }

    fn set(report: &mut Value, pointer: &str, bps: f64) {
        *report
            .pointer_mut(&format!("/end/{pointer}/bits_per_second"))
            .unwrap_or_else(|| panic!("{pointer} in the fixture")) = bps.into();
    }

    #[test]
    fn udp_download_is_the_stream_figure_and_cpu_is_mapped() {
        // As recorded: 3.12 gives the stream, `sum` and `sum_sent` the same
        // rate (the server's send rate), `sum_received` a lower one.
        let m = parse(UDP.as_bytes(), Protocol::Udp).expect("udp report");
        assert!(close(m.upload, 8968950.31934652), "{m:?}");
        assert!(close(m.download, 8968950.31934652), "{m:?}");
        assert!(close(m.cpu.host_total, 13.567027606518439), "{m:?}");
        assert!(close(m.cpu.remote_system, 26.906682010881326), "{m:?}");
        assert_eq!(m.error, "");
        // Each candidate field given its own figure: only the right ones
        // are read.
        let mut report: Value = serde_json::from_str(UDP).expect("fixture");
        set(&mut report, "streams/0/udp", 1.0);
        set(&mut report, "sum", 2.0);
        set(&mut report, "sum_sent", 3.0);
        set(&mut report, "sum_received", 4.0);
        let bytes = serde_json::to_vec(&report).expect("json");
        let m = parse(&bytes, Protocol::Udp).expect("udp report");
        assert_eq!(m.download, 1.0, "download is streams[0].udp");
        assert_eq!(m.upload, 3.0, "upload is sum_sent");
    }

    #[test]
    fn tcp_download_is_sum_received_and_upload_sum_sent() {
        let m = parse(TCP.as_bytes(), Protocol::Tcp).expect("tcp report");
        assert!(close(m.upload, 2102261006.9935818), "{m:?}");
        assert!(close(m.download, 2099433224.82024), "{m:?}");
        assert!(close(m.cpu.host_system, 4.705519470106722), "{m:?}");
        assert!(close(m.cpu.remote_total, 7.01002717792593), "{m:?}");
        // A TCP report has no UDP stream figure.
        let err = parse(TCP.as_bytes(), Protocol::Udp).expect_err("no udp stream");
        assert_eq!(err, ReportError::NoFigures(Protocol::Udp));
        assert_eq!(
            err.to_string(),
            "iperf3 report has no udp figures in \"end\""
        );
    }

    #[test]
    fn the_2026_reading_takes_the_sums_for_udp_too() {
        // Distinct figures in every field, so reading the wrong one fails.
        let mut report: Value = serde_json::from_str(UDP).expect("fixture");
        set(&mut report, "streams/0/udp", 1.0);
        set(&mut report, "sum", 2.0);
        set(&mut report, "sum_sent", 3.0);
        set(&mut report, "sum_received", 4.0);
        let bytes = serde_json::to_vec(&report).expect("json");
        let m = parse_as(&bytes, Reading::Sums(Protocol::Udp)).expect("report");
        assert_eq!(m.upload, 3.0, "upload is sum_sent");
        assert_eq!(m.download, 4.0, "download is sum_received, not the stream");
    }

    #[test]
    fn an_error_report_keeps_the_error_with_zero_speeds() {
        let busy = r#"{"start": {"connected": []}, "intervals": [], "end": {},
                       "error": "the server is busy running a test. try again later"}"#;
        let m = parse(busy.as_bytes(), Protocol::Tcp).expect("busy report");
        assert!(m.is_busy());
        assert_eq!((m.upload, m.download), (0.0, 0.0));
        let refused = r#"{"end": {}, "error": "unable to connect to server: Connection refused"}"#;
        let m = parse(refused.as_bytes(), Protocol::Udp).expect("report");
        assert!(!m.is_busy());
        assert_eq!(m.error, "unable to connect to server: Connection refused");
    }

    #[test]
    fn bad_output_is_an_error_that_shows_it() {
        let err = parse(b"iperf3: parameter error", Protocol::Tcp)
            .expect_err("not json")
            .to_string();
        assert!(err.contains("parameter error"), "{err}");
        assert!(
            err.starts_with("iperf3 output is not a JSON report ("),
            "{err}"
        );
        let err = parse(b"{\"end\": {}}", Protocol::Tcp).expect_err("no figures");
        assert!(err.to_string().contains("no tcp figures"), "{err}");
        assert_eq!(
            parse(b"[1]", Protocol::Tcp).expect_err("an array"),
            ReportError::NotAnObject
        );
    }

    #[test]
    fn entry_has_exactly_the_wire_fields() {
        let e = Measure::failed("x").into_entry(7, "198.51.100.2".into(), Protocol::Udp);
        let v = serde_json::to_value(&e).expect("entry json");
        let mut keys: Vec<&str> = v
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "cpu_report",
                "download_speed",
                "error",
                "node_id",
                "node_ip",
                "test_type",
                "upload_speed"
            ]
        );
        let mut cpu: Vec<&str> = v["cpu_report"]
            .as_object()
            .expect("cpu")
            .keys()
            .map(String::as_str)
            .collect();
        cpu.sort();
        assert_eq!(
            cpu,
            [
                "host_system",
                "host_total",
                "host_user",
                "remote_system",
                "remote_total",
                "remote_user"
            ]
        );
        assert_eq!(v["test_type"], "udp");
        assert_eq!(v["node_id"], 7);
    }
}
