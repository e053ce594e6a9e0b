//! How long the iperf task takes per target node: the 4 runs (TCP and UDP
//! over IPv4 and IPv6) against a real `iperf3 -s` in a namespace, over a
//! veth pair, with a 1 s run duration and with iperf3's default (10 s).
//!
//! Run with `cargo bench --bench figures -- iperf` (as root: it makes namespaces).
//! The speeds are those of a veth pair on this machine, not of a network;
//! they show what the task reports, and how much CPU the runs take.

use crate::{common, support};
use std::path::PathBuf;
use std::time::Instant;

use common::graphql::{node, GraphQlServer, Grid};
use common::IperfPair;
use tokio_util::sync::CancellationToken;
use zos_perf::config::Config;
use zos_perf::tasks::iperf::report::Entry;
use zos_perf::tasks::iperf::Iperf;
use zos_perf::tasks::{RunContext, Task};

pub fn main() {
    // Busy retries and failed runs show up here (RUST_LOG=debug for more).
    let level = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse::<tracing::Level>().ok())
        .unwrap_or(tracing::Level::INFO);
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .init();
    let pair = IperfPair::start("ibc", "ibs");
    let client = &pair.client;

    let path = PathBuf::from("/var/run/netns").join(&client.name);
    let rows = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open namespace");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let mut grid = Grid::default();
        grid.nodes.push(node(
            10,
            1,
            Some("198.51.100.2/30"),
            Some("2001:db8:1::2/64"),
            "",
        ));
        let gql = GraphQlServer::grid(grid);
        let mut rows = Vec::new();
        for (label, duration, repeats) in
            [("1s", "duration = \"1s\"\n", 3), ("default (10 s)", "", 1)]
        {
            let cfg = Config::from_toml(&format!(
                "node_id = 1\n[grid]\ngraphql_urls = [{:?}]\n[iperf]\nmode = \"grid-nodes\"\n{duration}",
                gql.url()
            ))
            .expect("config");
            let task = Iperf::new(&cfg.sections.iperf, &cfg.grid_context());
            let mut times = Vec::new();
            let mut last = Vec::new();
            for _ in 0..repeats {
                let started = Instant::now();
                let ctx = RunContext::new(CancellationToken::new());
                let value = rt.block_on(task.run(&ctx)).expect("iperf run");
                times.push(started.elapsed());
                last = serde_json::from_value::<Vec<Entry>>(value).expect("entries");
            }
            times.sort();
            rows.push((label, times, last));
        }
        rows
    })
    .join()
    .expect("bench thread");

    let mut body = String::from(
        "One target node = 4 iperf3 runs (TCP v4, TCP v6, UDP v4, UDP v6), one after the other,\n\
         against `iperf3 -s` in a namespace over a veth pair, with the 1 s settle pause\n\
         between runs against the same server (3 per target).\n\n\
         | run duration | runs | wall time per target (median) | min | max |\n|---|---|---|---|---|\n",
    );
    for (label, times, _) in &rows {
        let _ = std::fmt::Write::write_fmt(
            &mut body,
            format_args!(
                "| {label} | {} | {:.2} s | {:.2} s | {:.2} s |\n",
                times.len(),
                support::percentile(times, 50.0).as_secs_f64(),
                times[0].as_secs_f64(),
                times[times.len() - 1].as_secs_f64()
            ),
        );
    }
    body.push_str("\nFigures of the last default-duration run (veth pair, not a network):\n\n| test | address | upload (Mbit/s) | download (Mbit/s) | host CPU % | remote CPU % |\n|---|---|---|---|---|---|\n");
    if let Some((_, _, entries)) = rows.last() {
        for e in entries {
            let _ = std::fmt::Write::write_fmt(
                &mut body,
                format_args!(
                    "| {} | {} | {:.0} | {:.0} | {:.1} | {:.1} |\n",
                    e.test_type,
                    e.node_ip,
                    e.upload_speed / 1e6,
                    e.download_speed / 1e6,
                    e.cpu_report.host_total,
                    e.cpu_report.remote_total
                ),
            );
        }
    }
    support::write_section("iperf", "iperf: time per target node", &body);
}
