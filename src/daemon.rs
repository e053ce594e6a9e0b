//! The daemon: the one place that wires the parts together and takes them
//! apart again, in order.
//!
//! ```text
//! start:    Redis (given, default, or a private redis-server)
//!           -> link -> store (load what Redis holds) -> sync loop
//!           -> monitor (runs the tasks) -> bus (answers requests)
//! shutdown: monitor (cancels runs) -> sync loop (last pass, so perf:status
//!           shows how the cut-short runs ended) -> bus -> private Redis
//! ```
//!
//! `zos-perf run` is [`Daemon::start`] then [`Daemon::shutdown`] on a
//! signal; tests and benchmarks start it the same way, with their own tasks
//! or clock through [`Daemon::builder`]. `zos-perf run-task` uses
//! [`run_once`], the same wiring without the schedule.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus;
use crate::config::Config;
use crate::monitor::{self, Monitor, Registered};
use crate::redis::{self, server, PrivateRedis, RedisLink};
use crate::schedule::{Clock, SystemClock};
use crate::store::{ResultStore, TaskResult};
use crate::tasks::{self, Task};

/// How long shutdown may take before the daemon stops waiting.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// How long start-up waits for Redis to hand over the stored results.
pub const LOAD_WAIT: Duration = Duration::from_secs(3);

/// A running daemon.
pub struct Daemon {
    url: String,
    store: Arc<ResultStore>,
    loaded: bool,
    shutdown: CancellationToken,
    sync_stop: CancellationToken,
    monitor: JoinHandle<()>,
    sync: JoinHandle<()>,
    bus: Option<JoinHandle<()>>,
    private: Option<PrivateRedis>,
}

/// How a daemon is started: the configuration's tasks and the system clock
/// unless told otherwise.
pub struct Builder {
    config: Config,
    default_redis: String,
    tasks: Option<Vec<Registered>>,
    clock: Arc<dyn Clock>,
    load_wait: Duration,
}

impl Builder {
    /// The address tried when the configuration names no Redis (default
    /// `redis://127.0.0.1:6379`); if nothing answers there either, the
    /// daemon starts a private redis-server.
    pub fn default_redis(mut self, url: impl Into<String>) -> Builder {
        self.default_redis = url.into();
        self
    }

    /// Runs these tasks instead of the registry's, each with the settings
    /// the configuration gives it.
    pub fn tasks(mut self, tasks: Vec<Arc<dyn Task>>) -> anyhow::Result<Builder> {
        self.tasks = Some(monitor::register(&self.config, tasks)?);
        Ok(self)
    }

    /// Runs these tasks with these settings.
    pub fn registered(mut self, tasks: Vec<Registered>) -> Builder {
        self.tasks = Some(tasks);
        self
    }

    /// The clock the monitor schedules by.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Builder {
        self.clock = clock;
        self
    }

    /// How long start-up waits for Redis to hand over the stored results
    /// (default [`LOAD_WAIT`]); Redis answering later is fine, see
    /// [`Daemon::loaded`].
    pub fn load_wait(mut self, wait: Duration) -> Builder {
        self.load_wait = wait;
        self
    }

    /// Starts every part; returns once they run.
    pub async fn start(self) -> anyhow::Result<Daemon> {
        let Builder {
            config,
            default_redis,
            tasks,
            clock,
            load_wait,
        } = self;
        let registered = match tasks {
            Some(t) => t,
            None => monitor::register(
                &config,
                tasks::registry(&config.sections, &config.grid_context()),
            )?,
        };
        let (url, private) = match &config.redis {
            Some(url) => (url.clone(), None),
            None if server::answers(&default_redis).await => (default_redis, None),
            None => {
                let private = PrivateRedis::start(&server::socket_path()).await?;
                tracing::info!(redis = %private.url(), "no redis configured and none on the default address: started a private redis-server");
                (private.url(), Some(private))
            }
        };
        let shown = redis::redacted(&url);
        tracing::info!(redis = %shown, network = %config.network, tasks = registered.len(), "zos-perf starting");

        let shutdown = CancellationToken::new();
        let store = ResultStore::new(RedisLink::start(&url, shutdown.clone())?);
        let loaded = store.load(load_wait).await;
        if !loaded {
            tracing::warn!(redis = %shown, "no stored results could be read; tasks without a result in memory run now");
        }
        // The sync loop stops after the monitor, so that its last pass
        // carries how the runs cut short by shutdown ended.
        let sync_stop = CancellationToken::new();
        let sync = tokio::spawn(store.clone().sync_loop(sync_stop.clone()));
        let monitor = Monitor::new(registered, store.clone(), clock);
        let monitor = tokio::spawn(monitor.run(shutdown.clone()));
        let bus = config.bus.enabled.then(|| {
            let client = store.link().client().clone();
            tokio::spawn(bus::serve(client, config.bus.clone(), shutdown.clone()))
        });
        Ok(Daemon {
            url,
            store,
            loaded,
            shutdown,
            sync_stop,
            monitor,
            sync,
            bus,
            private,
        })
    }
}

impl Daemon {
    /// Starts the daemon of `config` with the registry's tasks.
    pub async fn start(config: Config) -> anyhow::Result<Daemon> {
        Daemon::builder(config).start().await
    }

    /// A daemon to start with other tasks, clock or default Redis.
    pub fn builder(config: Config) -> Builder {
        Builder {
            config,
            default_redis: server::DEFAULT_REDIS.to_string(),
            tasks: None,
            clock: Arc::new(SystemClock),
            load_wait: LOAD_WAIT,
        }
    }

    /// The Redis the daemon uses.
    pub fn redis_url(&self) -> &str {
        &self.url
    }

    /// The daemon's store (what it holds in memory and mirrors to Redis).
    pub fn store(&self) -> &Arc<ResultStore> {
        &self.store
    }

    /// Whether the stored results could be read at start.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Fires to stop the daemon; [`Daemon::shutdown`] fires it too.
    pub fn stop_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every part in order and waits for them, at most
    /// [`SHUTDOWN_GRACE`]. Returns false if some work had not stopped by
    /// then (the daemon is taken down anyway).
    pub async fn shutdown(self) -> bool {
        self.shutdown.cancel();
        let Daemon {
            sync_stop,
            monitor,
            sync,
            bus,
            private,
            ..
        } = self;
        let in_time = tokio::time::timeout(SHUTDOWN_GRACE, async {
            let _ = monitor.await;
            sync_stop.cancel();
            let _ = sync.await;
            if let Some(bus) = bus {
                let _ = bus.await;
            }
        })
        .await
        .is_ok();
        if !in_time {
            tracing::warn!("some work did not stop within the grace time; exiting anyway");
        }
        if let Some(private) = private {
            private.stop().await;
        }
        tracing::info!("stopped");
        in_time
    }
}

/// Runs the task `name` of `config` once against the Redis at `url`, stores
/// its result there and returns it: the daemon's wiring without schedule or
/// bus. Fails before the run if Redis does not answer. A failed run's
/// status is stored too before its error is returned.
pub async fn run_once(
    config: &Config,
    url: &str,
    name: &'static str,
    cancel: CancellationToken,
) -> anyhow::Result<TaskResult> {
    let registered = monitor::register(
        config,
        tasks::registry(&config.sections, &config.grid_context()),
    )?;
    // Fail before a long run if there is nowhere to store its result.
    redis::connect_once(url).await?;
    let store = ResultStore::new(RedisLink::start(url, cancel.clone())?);
    store.load(LOAD_WAIT).await;
    let monitor = Monitor::new(registered, store.clone(), Arc::new(SystemClock));
    let result = monitor.run_now(name, cancel).await;
    let synced = store.sync_once().await;
    let result = result?;
    if synced?.is_none() {
        anyhow::bail!(
            "{name}: ran, but redis at {} is not connected: result not stored",
            redis::redacted(url)
        );
    }
    Ok(result)
}
