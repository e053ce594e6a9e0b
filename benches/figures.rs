//! Every benchmark, in one binary: `cargo bench --bench figures -- NAME
//! [ARGS]` runs the one named, which rewrites its own section of
//! BENCHMARKS.md with the machine and the date (`scripts/bench` runs them
//! all, or those named). Each is a module of its own here, with its `main`.
//!
//! One binary rather than one per benchmark: every benchmark uses the test
//! fixtures of tests/common, and sixteen binaries compiled those fixtures
//! sixteen times (173 s of CPU on 2 cores, against ~30 s once), which the
//! test command pays as it lints and builds every target.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/pubnet/mod.rs"]
mod pubnet;
mod support;

mod bus;
mod collect;
mod cpu;
mod healthcheck;
mod herd;
mod history_burst;
mod idle;
mod iperf;
mod metrics;
mod provisiontest;
mod public_ip;
mod relay_flood;
mod rmb;
mod rmb_serve;
mod scheduler;
mod soak;
mod store;

/// The benchmarks by name, each its module's `main`.
const BENCHES: &[(&str, fn())] = &[
    ("bus", bus::main),
    ("collect", collect::main),
    ("cpu", cpu::main),
    ("healthcheck", healthcheck::main),
    ("herd", herd::main),
    ("history_burst", history_burst::main),
    ("idle", idle::main),
    ("iperf", iperf::main),
    ("metrics", metrics::main),
    ("provisiontest", provisiontest::main),
    ("public_ip", public_ip::main),
    ("relay_flood", relay_flood::main),
    ("rmb", rmb::main),
    ("rmb_serve", rmb_serve::main),
    ("scheduler", scheduler::main),
    ("soak", soak::main),
    ("store", store::main),
];

fn main() {
    // The first argument that is not a flag names the benchmark; the rest
    // are its own (`soak --seconds 600`, `metrics flood`), and `cargo
    // bench` adds `--bench`, which every benchmark ignores.
    let name = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    match BENCHES.iter().find(|(n, _)| Some(*n) == name.as_deref()) {
        Some((_, run)) => run(),
        None => {
            let names: Vec<&str> = BENCHES.iter().map(|(n, _)| *n).collect();
            eprintln!(
                "usage: cargo bench --bench figures -- NAME [ARGS]\n\
                 NAME: one of {}\n\
                 (scripts/bench runs them all, or those named)",
                names.join(", ")
            );
            std::process::exit(2);
        }
    }
}
