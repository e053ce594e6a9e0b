//! `GET /metrics` of the collector: one series per node and figure, with
//! `node_id`, `farm_id` and `twin_id` labels, rendered at scrape time from
//! what the collector holds (docs/observability.md lists them).
//!
//! Cardinality is the number of nodes held (bounded by `--max-nodes`)
//! times a fixed set per node: labels come from ids and fixed sets (task
//! names, public-IP states), never from text a node sent.

use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::node::NodeState;
use super::Collected;
use crate::outputs::metrics::{counters, gauges, one, process_metrics, Exporter, Format};
use crate::tasks::public_ip::view::IP_STATES;
use crate::tasks::NAMES;

/// The families of `state`, in `format`: the collector's own rendered
/// now, the per-node ones (the bulk: about 17 series per node) rendered
/// once per change of what is held and served from that copy until the
/// next, so a scrape between rounds costs a copy.
pub fn render(state: &Arc<Collected>, format: Format) -> String {
    let mut out = Exporter::of(Box::new(Head(state.clone()))).render(format);
    // One exposition: the OpenMetrics end marker only once, at the end.
    if let Some(head) = out.strip_suffix("# EOF\n") {
        out.truncate(head.len());
    }
    let nodes = state.cached(format, || {
        Exporter::of(Box::new(Nodes(state.clone()))).render(format)
    });
    out.push_str(&nodes);
    out
}

/// The build, the rounds and the process.
#[derive(Debug)]
struct Head(Arc<Collected>);

/// One series per node and figure.
#[derive(Debug)]
struct Nodes(Arc<Collected>);

/// A node's labels, and one more (`task`, `state`) where a family has it.
fn node_labels(n: &NodeState) -> impl EncodeLabelSet + '_ {
    (
        [("node_id", n.node), ("farm_id", n.farm)],
        [("twin_id", n.twin)],
    )
}

/// One gauge family over every node that has the figure.
fn per_node(
    enc: &mut DescriptorEncoder,
    nodes: &[&NodeState],
    name: &str,
    help: &str,
    figure: impl Fn(&NodeState) -> Option<f64>,
) -> fmt::Result {
    if !nodes.iter().any(|n| figure(n).is_some()) {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for n in nodes {
        if let Some(v) = figure(n) {
            let labels = node_labels(n);
            ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// One gauge family with one more label, its values `keys`.
fn per_node_and(
    enc: &mut DescriptorEncoder,
    nodes: &[&NodeState],
    (name, help, key): (&str, &str, &'static str),
    keys: &[&'static str],
    figure: impl Fn(&NodeState, usize) -> Option<f64>,
) -> fmt::Result {
    let any = nodes
        .iter()
        .any(|n| (0..keys.len()).any(|i| figure(n, i).is_some()));
    if !any {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for n in nodes {
        for (i, k) in keys.iter().enumerate() {
            if let Some(v) = figure(n, i) {
                let labels = (node_labels(n), [(key, *k)]);
                ConstGauge::new(v).encode(family.encode_family(&labels)?)?;
            }
        }
    }
    Ok(())
}

fn flag(b: bool) -> f64 {
    f64::from(u8::from(b))
}

impl Collector for Head {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        crate::outputs::metrics::build_info(&mut enc)?;
        let round = self.0.round();
        let e = &mut enc;
        gauges(
            e,
            "zos_perf_collect_nodes_listed",
            "Up nodes the last listing gave (those held).",
            &one(round.listed as f64),
        )?;
        gauges(
            e,
            "zos_perf_collect_nodes_answered",
            "Nodes that answered with their results in the last round.",
            &one(round.answered as f64),
        )?;
        gauges(
            e,
            "zos_perf_collect_nodes_over_limit",
            "1 when the listing had more nodes than --max-nodes (the lowest ids are held).",
            &one(flag(round.over_limit)),
        )?;
        if round.rounds > 0 {
            gauges(
                e,
                "zos_perf_collect_round_duration_seconds",
                "How long the last round took, listing included.",
                &one(round.duration),
            )?;
            gauges(
                e,
                "zos_perf_collect_last_round_timestamp_seconds",
                "Unix time the last round ended.",
                &one(round.ended_at as f64),
            )?;
        }
        counters(
            e,
            "zos_perf_collect_rounds",
            "Rounds done since the collector started.",
            &[(Vec::new(), round.rounds)],
        )?;
        counters(
            e,
            "zos_perf_collect_listing_failures",
            "Listings of the up nodes that failed (the previous list was used).",
            &[(Vec::new(), round.listing_failures)],
        )?;
        process_metrics(&mut enc)
    }
}

impl Collector for Nodes {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let e = &mut enc;
        let held = self.0.nodes();
        let nodes: Vec<&NodeState> = held.values().collect();
        per_node(
            e,
            &nodes,
            "zos_perf_collect_node_up",
            "1 when the node answered the last poll with its results.",
            |n| (n.polled_at > 0).then(|| flag(n.answered)),
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_node_poll_duration_seconds",
            "How long the node's last poll took (until its answer, error or timeout).",
            |n| (n.polled_at > 0).then_some(n.took),
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_node_last_poll_timestamp_seconds",
            "Unix time the node was last polled.",
            |n| (n.polled_at > 0).then_some(n.polled_at as f64),
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_cpu_single_seconds",
            "Single-threaded CPU benchmark time (lower is faster).",
            |n| n.cpu_single,
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_cpu_multi_seconds",
            "Multi-threaded CPU benchmark time (lower is faster).",
            |n| n.cpu_multi,
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_iperf_best_download_bytes_per_second",
            "Best iperf download over the targets without error.",
            |n| n.download.map(|b| b / 8.0),
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_iperf_best_upload_bytes_per_second",
            "Best iperf upload over the targets without error.",
            |n| n.upload.map(|b| b / 8.0),
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_health_failing_checks",
            "Health checks with problems (0 = healthy).",
            |n| n.health_failing.map(f64::from),
        )?;
        per_node_and(
            e,
            &nodes,
            (
                "zos_perf_collect_public_ips",
                "The farm's public IPs by validation state, as the node found them.",
                "state",
            ),
            &IP_STATES,
            |n, i| n.ips.map(|c| f64::from(c[i])),
        )?;
        per_node(
            e,
            &nodes,
            "zos_perf_collect_provisiontest_pass",
            "1 when the node's latest VM boot test passed.",
            |n| n.provision_pass.map(flag),
        )?;
        per_node_and(
            e,
            &nodes,
            (
                "zos_perf_collect_result_timestamp_seconds",
                "Unix time of the node's latest result of the task (its age: time() minus this).",
                "task",
            ),
            &NAMES,
            |n, i| n.results[i].map(|t| t as f64),
        )
    }
}
