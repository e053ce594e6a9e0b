//! The registered tasks, one module each. Their names are wire facts
//! (SPEC §2): results are stored under `perf.<name>` and asked for by name.

use std::sync::Arc;

use crate::config::Config;
use crate::task::Task;

pub mod cpu_benchmark;
pub mod healthcheck;
pub mod iperf;
pub mod provisiontest;
pub mod public_ip;

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

/// Builds every task from the configuration, in registration order.
pub fn registry(config: &Config) -> Vec<Arc<dyn Task>> {
    vec![
        Arc::new(public_ip::PublicIpValidation::from_config(config)),
        Arc::new(cpu_benchmark::CpuBenchmark::new(&config.cpu_benchmark)),
        Arc::new(healthcheck::Healthcheck::from_config(config)),
        Arc::new(iperf::Iperf::new(config)),
        Arc::new(provisiontest::ProvisionTest::from_config(config)),
    ]
}

/// The canonical spelling of a task name, if it is one.
pub fn canonical(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}
