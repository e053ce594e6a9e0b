//! A task whose run is a closure, for daemon tests that need a behaviour no
//! task of the shipped binary has (one that panics, one deaf to
//! cancellation). Scheduled by `cron`, no jitter, not exclusive.

use std::time::Duration;

use zos_perf::tasks::{RunContext, RunFuture, Task, TaskDefaults};

pub struct FnTask<F> {
    pub name: &'static str,
    pub description: &'static str,
    pub cron: &'static str,
    pub timeout: Duration,
    pub run: F,
}

impl<F> Task for FnTask<F>
where
    F: Fn() -> RunFuture<'static> + Send + Sync + 'static,
{
    fn name(&self) -> &'static str {
        self.name
    }
    fn description(&self) -> &'static str {
        self.description
    }
    fn defaults(&self) -> TaskDefaults {
        TaskDefaults {
            cron: self.cron,
            jitter: Duration::ZERO,
            timeout: self.timeout,
            exclusive: false,
        }
    }
    fn run<'a>(&'a self, _ctx: &'a RunContext) -> RunFuture<'a> {
        (self.run)()
    }
}
