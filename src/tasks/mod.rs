//! The tasks, one folder each, and the registry that builds them.
//!
//! A task folder holds everything of one task: what it measures, its
//! section of the configuration (`config.rs`: struct, defaults, validation),
//! its defaults of schedule and limits, and what its result means
//! (`view.rs`: key figures, problems, human lines, metrics; [`TaskView`]). Every task is built the same
//! way, `new(&section, &grid)`, from its own section and the shared
//! [`GridContext`]; it never sees the whole configuration.
//!
//! Task names are wire facts (docs/redis.md): results are stored under
//! `perf.<name>` and asked for by name over the bus. Adding a task is one
//! folder here (with its `view.rs`, what its result means), one line in
//! [`registry`], [`NAMES`] and [`VIEWS`], and its section in [`Sections`]
//! (see docs/architecture.md).

use std::sync::Arc;

use crate::grid::GridContext;

pub mod child;
pub mod cpu_benchmark;
pub mod healthcheck;
pub mod iperf;
pub mod provisiontest;
pub mod public_ip;
pub mod retry;
pub mod shape;
mod task;
pub mod view;

pub use task::{Progress, RunContext, RunFuture, Task, TaskDefaults};
pub use view::TaskView;

pub const PUBLIC_IP_VALIDATION: &str = "public-ip-validation";
pub const CPU_BENCHMARK: &str = "cpu-benchmark";
pub const HEALTHCHECK: &str = "healthcheck";
pub const IPERF: &str = "iperf";
pub const PROVISIONTEST: &str = "provisiontest";

/// Every task name the daemon knows, registered or not. The store reads
/// exactly these keys for `get_all`, so its cost never depends on what else
/// lives in Redis.
pub const NAMES: [&str; 5] = [
    PUBLIC_IP_VALIDATION,
    CPU_BENCHMARK,
    HEALTHCHECK,
    IPERF,
    PROVISIONTEST,
];

/// What every task's result means ([`TaskView`]), one per name of
/// [`NAMES`]. The readers of results (history, dashboard, metrics,
/// `get --human`, the problem count) go through these and never name a
/// task. The order is the order of the result families on `/metrics`.
pub static VIEWS: [&dyn TaskView; 5] = [
    &cpu_benchmark::view::View,
    &iperf::view::View,
    &healthcheck::view::View,
    &public_ip::view::View,
    &provisiontest::view::View,
];

/// The tasks' sections of the configuration, one per task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sections {
    pub cpu_benchmark: cpu_benchmark::CpuBenchmarkConfig,
    pub healthcheck: healthcheck::HealthcheckConfig,
    pub iperf: iperf::IperfConfig,
    pub public_ip: public_ip::PublicIpConfig,
    pub provisiontest: provisiontest::ProvisionTestConfig,
}

impl Sections {
    /// Checks every section; an error names the field (`iperf.port`).
    pub fn validate(&self) -> anyhow::Result<()> {
        self.cpu_benchmark.validate()?;
        self.healthcheck.validate()?;
        self.iperf.validate()?;
        self.public_ip.validate()?;
        self.provisiontest.validate()
    }
}

/// Builds every task from its section and the grid, in registration order.
pub fn registry(sections: &Sections, grid: &GridContext) -> Vec<Arc<dyn Task>> {
    vec![
        Arc::new(public_ip::PublicIpValidation::new(
            &sections.public_ip,
            grid,
        )),
        Arc::new(cpu_benchmark::CpuBenchmark::new(
            &sections.cpu_benchmark,
            grid,
        )),
        Arc::new(healthcheck::Healthcheck::new(&sections.healthcheck, grid)),
        Arc::new(iperf::Iperf::new(&sections.iperf, grid)),
        Arc::new(provisiontest::ProvisionTest::new(
            &sections.provisiontest,
            grid,
        )),
    ]
}

/// The canonical spelling of a task name, if it is one.
pub fn canonical(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}
