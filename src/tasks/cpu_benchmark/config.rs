//! `[cpu_benchmark]`: the cpu-benchmark task's section of the configuration.

use anyhow::bail;
use serde::Deserialize;

/// `[cpu_benchmark]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CpuBenchmarkConfig {
    /// A command (program and arguments, no shell) that prints the number of
    /// workloads on the node; none means 0.
    pub workloads_command: Option<Vec<String>>,
}

impl CpuBenchmarkConfig {
    /// Checks what types alone cannot; errors name the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(cmd) = &self.workloads_command {
            if cmd.is_empty() || cmd[0].is_empty() {
                bail!("cpu_benchmark.workloads_command: must name a program");
            }
        }
        Ok(())
    }
}
