//! How long a public-ip-validation run takes: its fixed cost, the cost of
//! each farm IP that works, of each IP whose gateway does not answer, and of
//! the election (one lower-id node that answers ping, one that does not).
//!
//! Runs in the namespaces of `tests/pubnet` (root needed): the lookup
//! service is a plain-HTTP stand-in one router away, so the per-IP figure is
//! the task's own cost (netlink, link up, TCP + HTTP through the gateway);
//! on a node, add the round trip to the real lookup service and its TLS.
//!
//! Run: `cargo bench --bench figures -- public_ip`.

use crate::{pubnet, support};
use std::time::{Duration, Instant};

use pubnet::*;
use zos_perf::grid::graphql::PublicIp;

fn valid_ips(n: u8) -> Vec<PublicIp> {
    (0..n)
        .map(|i| ip(&format!("203.0.113.{}/24", 10 + i), GATEWAY, 0))
        .collect()
}

/// Times one run and checks every IP ended in `state`.
fn timed(
    net: &Net,
    nodes: Vec<zos_perf::grid::graphql::Node>,
    ips: Vec<PublicIp>,
    state: &str,
) -> Duration {
    let n = ips.len();
    let started = Instant::now();
    let result = run_task(net, net.config("/"), farm(nodes, ips)).expect("run");
    let took = started.elapsed();
    let map = result.as_object().expect("object");
    assert_eq!(map.len(), n, "{result}");
    assert!(
        map.values().all(|v| v["state"] == state),
        "expected all {state}: {result}"
    );
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    support::percentile(&v, 50.0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn main() {
    let net = Net::new();
    let me = node(ME, "192.0.2.1");

    let empty: Vec<Duration> = (0..20)
        .map(|_| timed(&net, vec![me.clone()], vec![], "valid"))
        .collect();
    let fixed = median(empty);

    const N: u8 = 10;
    let full: Vec<Duration> = (0..5)
        .map(|_| timed(&net, vec![me.clone()], valid_ips(N), "valid"))
        .collect();
    let full = median(full);
    let per_valid = full.saturating_sub(fixed) / N as u32;

    let wrong: Vec<PublicIp> = (0..2)
        .map(|i| ip(&format!("203.0.113.{}/24", 40 + i), "203.0.113.99", 0))
        .collect();
    let wrong_total = timed(&net, vec![me.clone()], wrong, "invalid");
    let per_wrong = wrong_total.saturating_sub(fixed) / 2;

    let answering = timed(
        &net,
        vec![node(5, ELDER_UP), me.clone()],
        valid_ips(1),
        "skipped",
    );
    let silent = timed(
        &net,
        vec![node(5, ELDER_SILENT), me.clone()],
        valid_ips(1),
        "valid",
    );

    let body = format!(
        "| what | time |\n|---|---|\n\
         | fixed cost of a run (no farm IP, no lower node; median of 20) | {} |\n\
         | each farm IP that works (median run of {N} IPs, less the fixed cost) | {} |\n\
         | each IP whose gateway does not answer (ARP gives up) | {} |\n\
         | election, a lower-id node answers (`ping -c 3`), node stands down | {} |\n\
         | election, a lower-id node is silent, then 1 IP validated | {} |\n\n\
         Lookup stand-in: plain HTTP one router away, in namespaces; on a node add \
         the round trip and TLS handshake to the real service. Machine shared with \
         parallel builds of other work when measured.\n",
        ms(fixed),
        ms(per_valid),
        ms(per_wrong),
        ms(answering),
        ms(silent),
    );
    support::write_section(
        "public-ip-validation",
        "public-ip-validation: time per run and per farm IP",
        &body,
    );
}
