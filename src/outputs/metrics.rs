//! The Prometheus metrics: rendered at scrape time from what the daemon
//! holds (the store's results and task status, the bus's counters, `/proc`).
//!
//! Nothing is copied into metric objects ahead of time: one collector reads
//! the current state on each scrape, so a task that is disabled or a result
//! that changes shape never leaves a stale series behind.
//!
//! Cardinality is bounded by construction: labels come from fixed sets
//! (task names, the two iperf test types and address families, the three
//! public-IP states, the bus commands and error codes). The two labels that
//! come from a result (healthcheck check names) are capped at
//! [`MAX_CHECKS`](crate::tasks::healthcheck::view::MAX_CHECKS). iperf targets are not labels: they are drawn at random
//! each run, so each would be a new series; they are summed up per test
//! type and family instead (best, median, tested, failed).
//!
//! What a task's result gives is said by the task's view
//! ([`crate::tasks::TaskView::metrics`]); this collector encodes it beside
//! the families of the tasks' status, the bus, the relay and the process.
//! The full list, with types and labels, is in docs/observability.md.

use std::fmt::{self, Write};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use serde_json::Value;

use super::process;
use crate::bus::relay::RelayStats;
use crate::bus::BusStats;
use crate::store::ResultStore;
use crate::store::State;
use crate::tasks::view::{labels, Labels};

/// `Content-Type` of the Prometheus text format.
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// `Content-Type` of OpenMetrics.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The two exposition formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4: what `curl`, promtool and
    /// node_exporter's textfile collector read.
    Text,
    /// OpenMetrics 1.0.0: what Prometheus asks for first.
    OpenMetrics,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Text => TEXT_CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// What the metrics are read from.
#[derive(Clone)]
pub struct Sources {
    pub store: Arc<ResultStore>,
    /// The enabled tasks, in registration order.
    pub tasks: Vec<&'static str>,
    /// The bus's counters, when the bus runs.
    pub bus: Option<Arc<BusStats>>,
    /// The relay transport's counters, when it runs.
    pub relay: Option<Arc<RelayStats>>,
}

impl fmt::Debug for Sources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sources")
            .field("tasks", &self.tasks)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct DaemonCollector {
    sources: Sources,
    /// Whether to add the `process_*` metrics (left out of the textfile:
    /// node_exporter has its own and the names would clash).
    process: bool,
}

/// Renders the metrics on demand.
pub struct Exporter {
    registry: Registry,
}

impl Exporter {
    /// The scrape endpoint's metrics (with `process_*`).
    pub fn new(sources: Sources) -> Exporter {
        Self::build(sources, true)
    }

    /// The textfile's metrics (without `process_*`).
    pub fn for_textfile(sources: Sources) -> Exporter {
        Self::build(sources, false)
    }

    /// The families of `collector` alone (`zos-perf collect`'s).
    pub(crate) fn of(collector: Box<dyn Collector>) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(collector);
        Exporter { registry }
    }

    fn build(sources: Sources, process: bool) -> Exporter {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(DaemonCollector { sources, process }));
        Exporter { registry }
    }

    pub fn render(&self, format: Format) -> String {
        let mut out = String::with_capacity(16 * 1024);
        let done = match format {
            Format::Text => {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            }
            Format::OpenMetrics => {
                prometheus_client::encoding::text::encode(&mut out, &self.registry)
            }
        };
        if let Err(e) = done {
            // Writing into a String fails only if an encoder refuses a
            // value; say so in the output rather than serve half of it.
            tracing::error!(error = %e, "encoding metrics failed");
            out.clear();
            let _ = writeln!(out, "# encoding metrics failed");
        }
        out
    }
}

/// Writes one family of gauges; nothing at all when it has no sample.
pub(crate) fn gauges(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, f64)],
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (l, v) in samples {
        ConstGauge::new(*v).encode(family.encode_family(l)?)?;
    }
    Ok(())
}

/// Writes one family of counters (`name` without `_total`: the encoder
/// adds it).
pub(crate) fn counters(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, u64)],
) -> fmt::Result {
    if samples.is_empty() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (l, v) in samples {
        ConstCounter::new(*v).encode(family.encode_family(l)?)?;
    }
    Ok(())
}

pub(crate) fn one(v: f64) -> Vec<(Labels, f64)> {
    vec![(Vec::new(), v)]
}

/// `zos_perf_build{version}`: the daemon's and the collector's first series.
pub(crate) fn build_info(enc: &mut DescriptorEncoder) -> fmt::Result {
    let mut info = enc.encode_descriptor(
        "zos_perf_build",
        "Version of the running zos-perf.",
        None,
        MetricType::Info,
    )?;
    info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])
}

impl Collector for DaemonCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        build_info(&mut enc)?;
        self.tasks(&mut enc)?;
        self.results(&mut enc)?;
        if let Some(bus) = &self.sources.bus {
            bus_metrics(&mut enc, bus)?;
        }
        if let Some(relay) = &self.sources.relay {
            relay_metrics(&mut enc, relay)?;
        }
        if self.process {
            process_metrics(&mut enc)?;
        }
        Ok(())
    }
}

impl DaemonCollector {
    fn tasks(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let store = &self.sources.store;
        let mut success = Vec::new();
        let mut duration = Vec::new();
        let mut next = Vec::new();
        let mut running = Vec::new();
        let (mut runs, mut failures, mut skipped) = (Vec::new(), Vec::new(), Vec::new());
        let mut history = Vec::new();
        for name in &self.sources.tasks {
            let l = labels(&[("task", name)]);
            if let Some(r) = store.latest(name) {
                success.push((l.clone(), r.timestamp as f64));
            }
            history.push((l.clone(), store.history().len(name) as f64));
            let Some(s) = store.status(name) else {
                continue;
            };
            if let Some(d) = s.last_duration {
                duration.push((l.clone(), d));
            }
            if let Some(t) = s.next_fire {
                next.push((l.clone(), t as f64));
            }
            running.push((l.clone(), f64::from(u8::from(s.state == State::Running))));
            runs.push((l.clone(), s.runs));
            failures.push((l.clone(), s.failures));
            skipped.push((l, s.skipped));
        }
        gauges(
            enc,
            "zos_perf_task_last_success_timestamp_seconds",
            "Unix time of the task's latest stored result.",
            &success,
        )?;
        gauges(
            enc,
            "zos_perf_task_last_run_duration_seconds",
            "How long the task's last run took, whatever its outcome.",
            &duration,
        )?;
        gauges(
            enc,
            "zos_perf_task_next_fire_timestamp_seconds",
            "Unix time the task is next scheduled to fire.",
            &next,
        )?;
        gauges(
            enc,
            "zos_perf_task_running",
            "1 while the task runs, else 0.",
            &running,
        )?;
        counters(
            enc,
            "zos_perf_task_runs",
            "Runs since the daemon started.",
            &runs,
        )?;
        counters(
            enc,
            "zos_perf_task_failures",
            "Runs since the daemon started that failed, timed out or panicked.",
            &failures,
        )?;
        counters(
            enc,
            "zos_perf_task_skipped",
            "Fire times skipped because the previous run was still going.",
            &skipped,
        )?;
        gauges(
            enc,
            "zos_perf_history_records",
            "Results held in the task's history.",
            &history,
        )
    }

    fn result(&self, name: &str) -> Option<Value> {
        self.sources
            .tasks
            .contains(&name)
            .then(|| self.sources.store.latest(name))
            .flatten()
            .map(|r| r.result)
    }

    /// Each enabled task's latest result, as its view reads it
    /// ([`crate::tasks::TaskView::metrics`]), in the order of
    /// [`crate::tasks::VIEWS`].
    fn results(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        for view in crate::tasks::VIEWS {
            let Some(result) = self.result(view.name()) else {
                continue;
            };
            for family in view.metrics(&result) {
                gauges(enc, family.name, family.help, &family.samples)?;
            }
        }
        Ok(())
    }
}

fn bus_metrics(enc: &mut DescriptorEncoder, bus: &BusStats) -> fmt::Result {
    let s = bus.snapshot();
    let by_cmd: Vec<(Labels, u64)> = bus
        .by_command()
        .iter()
        .map(|(c, n)| (labels(&[("command", c.name())]), *n))
        .collect();
    counters(
        enc,
        "zos_perf_bus_requests",
        "Requests taken from the bus, by command.",
        &by_cmd,
    )?;
    let by_code: Vec<(Labels, u64)> = bus
        .by_code()
        .iter()
        .map(|(c, n)| {
            let code = c.map_or_else(|| "ok".to_string(), |c| c.code().to_string());
            (vec![("code", code)], *n)
        })
        .collect();
    counters(
        enc,
        "zos_perf_bus_replies",
        "Replies pushed, by error code (ok = an answer).",
        &by_code,
    )?;
    counters(
        enc,
        "zos_perf_bus_expired_requests",
        "Requests dropped unanswered because their caller had given up.",
        &[(Vec::new(), s.expired)],
    )?;
    counters(
        enc,
        "zos_perf_bus_dropped_requests",
        "Messages dropped because they named nobody to answer.",
        &[(Vec::new(), s.dropped)],
    )?;
    counters(
        enc,
        "zos_perf_bus_lost_replies",
        "Replies that may not have arrived (Redis failed under the push).",
        &[(Vec::new(), s.lost)],
    )?;
    gauges(
        enc,
        "zos_perf_bus_requests_in_flight",
        "Requests taken and not yet answered.",
        &one(bus.in_flight() as f64),
    )?;
    let h = bus.handling();
    let mut buckets = Vec::with_capacity(h.buckets.len() + 1);
    let mut below = 0;
    for (le, cumulative) in &h.buckets {
        buckets.push((*le, cumulative - below));
        below = *cumulative;
    }
    buckets.push((f64::INFINITY, h.count.saturating_sub(below)));
    let mut family = enc.encode_descriptor(
        "zos_perf_bus_request_duration_seconds",
        "Time from taking a request to pushing its reply.",
        None,
        MetricType::Histogram,
    )?;
    family.encode_histogram::<NoLabelSet>(h.sum_seconds, h.count, &buckets, None)
}

fn relay_metrics(enc: &mut DescriptorEncoder, relay: &RelayStats) -> fmt::Result {
    let get = RelayStats::get;
    counters(
        enc,
        "zos_perf_relay_replies",
        "Replies sent over the relay: ok = an answer, error = the command's error (refusals are counted apart).",
        &[
            (labels(&[("outcome", "ok")]), get(&relay.answered)),
            (labels(&[("outcome", "error")]), get(&relay.errors)),
        ],
    )?;
    let refused: Vec<(Labels, u64)> = relay
        .refused()
        .iter()
        .map(|(r, n)| (labels(&[("reason", r.label())]), *n))
        .collect();
    counters(
        enc,
        "zos_perf_relay_refused_requests",
        "Requests refused with an error reply before their command ran, by reason.",
        &refused,
    )?;
    let dropped: Vec<(Labels, u64)> = relay
        .dropped()
        .iter()
        .map(|(d, n)| (labels(&[("reason", d.label())]), *n))
        .collect();
    counters(
        enc,
        "zos_perf_relay_dropped_frames",
        "Frames dropped unanswered (nobody or nothing to answer), by reason.",
        &dropped,
    )?;
    counters(
        enc,
        "zos_perf_relay_lost_replies",
        "Replies not sent: the relay connection went away first.",
        &[(Vec::new(), get(&relay.lost))],
    )?;
    counters(
        enc,
        "zos_perf_relay_connections",
        "Connections opened to a relay (the first, then each reconnect).",
        &[(Vec::new(), get(&relay.connects))],
    )?;
    gauges(
        enc,
        "zos_perf_relay_connected",
        "1 while connected to a relay, else 0.",
        &one(get(&relay.connected) as f64),
    )?;
    counters(
        enc,
        "zos_perf_relay_quick_closes",
        "Connections the relay closed within 10 s of connecting.",
        &[(Vec::new(), get(&relay.quick_closes))],
    )?;
    gauges(
        enc,
        "zos_perf_relay_twin_contested",
        "1 while the relay closes every connection right after connecting (3 in a row): most likely another connection holds this twin.",
        &one(get(&relay.contested) as f64),
    )
}

pub(crate) fn process_metrics(enc: &mut DescriptorEncoder) -> fmt::Result {
    let Some(p) = process::read() else {
        return Ok(());
    };
    gauges(
        enc,
        "process_resident_memory_bytes",
        "Resident memory size in bytes.",
        &one(p.resident_memory_bytes as f64),
    )?;
    gauges(
        enc,
        "process_virtual_memory_bytes",
        "Virtual memory size in bytes.",
        &one(p.virtual_memory_bytes as f64),
    )?;
    let mut cpu = enc.encode_descriptor(
        "process_cpu_seconds",
        "Total user and system CPU time spent in seconds.",
        None,
        MetricType::Counter,
    )?;
    ConstCounter::new(p.cpu_seconds).encode(cpu.encode_family(&Vec::<(&str, String)>::new())?)?;
    gauges(
        enc,
        "process_open_fds",
        "Number of open file descriptors.",
        &one(p.open_fds as f64),
    )?;
    if let Some(max) = p.max_fds {
        gauges(
            enc,
            "process_max_fds",
            "Maximum number of open file descriptors.",
            &one(max as f64),
        )?;
    }
    gauges(
        enc,
        "process_start_time_seconds",
        "Start time of the process since unix epoch in seconds.",
        &one(p.start_time_seconds),
    )
}
