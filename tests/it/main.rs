//! The integration tests: one test binary (one link of the library) with one
//! module per area. They talk to real processes (redis-server, iperf3,
//! network namespaces, Prometheus, Chromium, qemu, the TypeScript RMB
//! client) and the stand-ins of `tests/common`; see docs/architecture.md.

#[path = "../common/mod.rs"]
mod common;
#[path = "../pubnet/mod.rs"]
mod pubnet;

mod alert_rules;
mod bus;
mod bus_cli;
mod caps;
mod chain;
mod cli;
mod clock_check;
mod collect;
mod cpu_benchmark;
mod docs_drift;
mod docs_links;
mod faults;
mod fleet;
mod frame_guard;
mod fuzz_regressions;
mod graphql;
mod hardening;
mod healthcheck;
mod healthcheck_services;
mod herd;
mod history;
mod instances;
mod iperf;
mod iperf_public;
mod layout;
mod metrics;
mod monitor;
mod operator;
mod package;
mod ping;
mod provisiontest;
mod public_ip;
mod remote_text;
mod rmb_e2e;
mod rmb_interop;
mod rmb_relay_bounds;
mod rmb_serve;
mod rmb_serve_bad;
mod rmb_vectors;
mod service;
mod startup;
mod store_sync;
mod stun;
mod systemd;
