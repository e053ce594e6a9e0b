//! The daemon: the one place that wires the parts together and takes them
//! apart again, in order.
//!
//! ```text
//! check:    tasks, the relay's secret and chain settings, the metrics
//!           address (a bad one stops the start here, nothing started)
//! start:    runtime directory -> metrics listener bound (a taken port
//!           stops the start here) -> Redis (given, default, or a private
//!           redis-server)
//!           -> link -> store (load what Redis holds) -> daemon lease
//!           (a second daemon on one Redis stops here) -> sync loop
//!           -> monitor (runs the tasks) -> bus (answers requests)
//!           -> relay transport (when enabled)
//!           -> outputs (metrics and dashboard listener, textfile)
//!           -> clock check (when enabled)
//!           -> READY=1 to systemd (crate::service; nothing without it)
//! shutdown: monitor (cancels runs) -> sync loop (last pass, so perf:status
//!           shows how the cut-short runs ended) -> bus -> outputs (the
//!           textfile is removed) -> clock check -> daemon lease released
//!           -> private Redis
//! ```
//!
//! A step of the start that fails undoes those before it, in reverse
//! order; past the daemon lease nothing can fail.
//!
//! Shutdown has one deadline, [`SHUTDOWN_BOUND`] after it begins, less
//! what the process needs to exit ([`EXIT_RESERVE`]): the parts get what is
//! left once the private Redis's share ([`PRIVATE_STOP`]) is set aside, and
//! the private Redis is stopped (SIGTERM, then SIGKILL) by the deadline,
//! however slow or hung it is. `zos-perf run` also holds its runtime
//! directory ([`Builder::runtime_dir`], [`crate::node_redis::instance`]).
//!
//! `zos-perf run` is [`Daemon::start`] then [`Daemon::shutdown`] on a
//! signal (on SIGHUP, [`Daemon::shutdown_for_reload`] and a start with the
//! new configuration: src/cli/run.rs); tests and benchmarks start it the same way, with their own tasks
//! or clock through [`Daemon::builder`]. `zos-perf run-task` uses
//! [`run_once`], the same wiring without the schedule.
//!
//! Longer than most files (about 540 lines) on purpose: it is the one
//! place that wires every part and the one place that stops them, and the
//! start order, the stop order and the shutdown budget read best side by
//! side, top to bottom.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus;
use crate::config::Config;
use crate::monitor::{self, Monitor, Registered};
use crate::node_redis::{self, server, PrivateRedis, RedisLink};
use crate::outputs;
use crate::schedule::{SystemClock, Timekeeper};
use crate::service::{self, Service};
use crate::store::{ResultStore, TaskResult};
use crate::tasks::{self, Progress, Task};

/// The documented bound: SIGTERM to exit, at most this long.
pub const SHUTDOWN_BOUND: Duration = Duration::from_secs(5);
/// Kept of [`SHUTDOWN_BOUND`] for what follows [`Daemon::shutdown`] in the
/// process (the runtime's and the log's last 200 ms each, in main.rs).
pub const EXIT_RESERVE: Duration = Duration::from_millis(600);
/// Kept of the daemon's share for stopping the private Redis.
pub const PRIVATE_STOP: Duration = Duration::from_secs(1);
/// How long the parts may take to stop when there is no private Redis.
pub const SHUTDOWN_GRACE: Duration = SHUTDOWN_BOUND.saturating_sub(EXIT_RESERVE);

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
    /// The metrics listener and the textfile writer.
    outputs: Vec<JoinHandle<()>>,
    metrics_addr: Option<std::net::SocketAddr>,
    clock_check: Option<JoinHandle<()>>,
    relay: Option<JoinHandle<()>>,
    private: Option<PrivateRedis>,
    /// The runtime directory's lock and records, held until the end.
    instance: Option<crate::node_redis::instance::Instance>,
    /// One daemon per Redis ([`node_redis::lease::DAEMON_KEY`]).
    lease: node_redis::lease::Held,
    /// The service manager's view (systemd's READY=1, watchdog, STOPPING=1).
    service: Service,
}

/// How a daemon is started: the configuration's tasks and the system clock
/// unless told otherwise.
pub struct Builder {
    config: Config,
    default_redis: String,
    tasks: Option<Vec<Registered>>,
    clock: Arc<dyn Timekeeper>,
    load_wait: Duration,
    runtime_dir: Option<std::path::PathBuf>,
    interrupt: CancellationToken,
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
    pub fn clock(mut self, clock: Arc<dyn Timekeeper>) -> Builder {
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

    /// Holds this runtime directory for the daemon's life: its lock (a
    /// second daemon there is refused), the record of the Redis used (for
    /// the CLI) and the private Redis, if one is needed. `zos-perf run`
    /// gives it; without it, nothing is locked or recorded.
    pub fn runtime_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Builder {
        self.runtime_dir = Some(dir.into());
        self
    }

    /// Fired (a signal), cuts start-up's waits short: the wait for the
    /// default Redis (start then fails, having started nothing) and the
    /// wait for the stored results.
    pub fn interrupt(mut self, token: CancellationToken) -> Builder {
        self.interrupt = token;
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
            runtime_dir,
            interrupt,
        } = self;
        // Checked before anything starts: what the configuration and the
        // secret can get wrong stops the start here, with nothing to undo.
        let registered = match tasks {
            Some(t) => t,
            None => monitor::register(
                &config,
                tasks::registry(&config.sections, &config.grid_context()),
            )?,
        };
        let relay_plan = match config.bus.relay.enabled {
            true => Some(RelayPlan::check(&config)?),
            false => None,
        };
        let listen_addr = config.metrics.listen_addr()?;
        // Then started in order; a step that fails undoes the ones before
        // it. First: a second daemon in this directory stops here.
        let instance = match &runtime_dir {
            Some(dir) => Some(crate::node_redis::instance::Instance::acquire(dir)?),
            None => None,
        };
        // Before anything runs: a port that is taken stops the start here.
        let listener = match listen_addr {
            Some(addr) => Some(outputs::http::bind(addr).await?),
            None => None,
        };
        let metrics_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let (url, private) = match &config.redis {
            Some(url) => (url.clone(), None),
            None if server::answers_within(&default_redis, config.redis_wait, &interrupt).await => {
                (default_redis, None)
            }
            None if interrupt.is_cancelled() => {
                anyhow::bail!("interrupted while waiting for redis on the default address")
            }
            None => {
                let dir = runtime_dir.unwrap_or_else(node_redis::instance::runtime_dir);
                let private = PrivateRedis::start(&dir).await?;
                tracing::info!(redis = %private.url(), waited = ?config.redis_wait, "no redis configured and none on the default address: using a private redis-server");
                (private.url(), Some(private))
            }
        };
        let shown = node_redis::redacted(&url);
        tracing::info!(redis = %shown, network = %config.network, tasks = registered.len(), "zos-perf starting");

        let shutdown = CancellationToken::new();
        let taken = async {
            if let Some(instance) = &instance {
                instance.record_redis(&url)?;
            }
            let link = RedisLink::start(&url, shutdown.clone())?;
            let store = ResultStore::with_history(link, &config.history);
            let loaded = tokio::select! {
                loaded = store.load(load_wait) => loaded,
                _ = interrupt.cancelled() => false,
            };
            // One daemon per Redis: refused here, before anything is written.
            let lease = node_redis::lease::take_daemon(store.link()).await?;
            anyhow::Ok((store, loaded, lease))
        }
        .await;
        let (store, loaded, lease) = match taken {
            Ok(taken) => taken,
            Err(e) => {
                // Undone in reverse order: the link, the private Redis,
                // the listener and the runtime directory.
                shutdown.cancel();
                if let Some(private) = private {
                    private
                        .stop(tokio::time::Instant::now() + PRIVATE_STOP)
                        .await;
                }
                drop(listener);
                drop(instance);
                return Err(e);
            }
        };
        // From here on nothing fails: what could was checked or done
        // above, and the rest only spawns the parts.
        if !loaded {
            tracing::warn!(redis = %shown, "no stored results could be read; tasks without a result in memory run now");
        }
        // Another daemon took the lease (ours expired while we were frozen
        // or cut off): it runs the tasks now, this one stops.
        let lost = lease.lost.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = lost.cancelled() => {
                    tracing::error!("another daemon took over this redis; stopping");
                    stop.cancel();
                }
                _ = stop.cancelled() => {}
            }
        });
        // The sync loop stops after the monitor, so that its last pass
        // carries how the runs cut short by shutdown ended.
        let sync_stop = CancellationToken::new();
        let sync = tokio::spawn(store.clone().sync_loop(sync_stop.clone()));
        let enabled: Vec<&'static str> = registered
            .iter()
            .filter(|r| r.settings.enabled)
            .map(|r| r.task.name())
            .collect();
        let clock_check = crate::clock_check::spawn(
            &config.clock,
            &config.grid_context(),
            clock.clone(),
            store.link().clone(),
            shutdown.clone(),
        );
        let monitor = Monitor::new(registered, store.clone(), clock);
        let monitor = tokio::spawn(monitor.run(shutdown.clone()));
        let mut bus_stats = None;
        let bus = config.bus.enabled.then(|| {
            let handler = bus::Bus::new(store.link().client().clone(), config.bus.clone());
            bus_stats = Some(handler.stats());
            tokio::spawn(handler.serve(shutdown.clone()))
        });
        let relay_stats = relay_plan
            .is_some()
            .then(|| Arc::new(bus::relay::RelayStats::default()));
        let relay = match (relay_plan, &relay_stats) {
            (Some(plan), Some(stats)) => Some(plan.spawn(
                store.link().client().clone(),
                stats.clone(),
                shutdown.clone(),
            )),
            _ => None,
        };
        let sources = outputs::metrics::Sources {
            store: store.clone(),
            tasks: enabled,
            bus: bus_stats,
            relay: relay_stats,
        };
        let mut outputs = Vec::new();
        if let Some(listener) = listener {
            let app = outputs::http::App::new(sources.clone());
            outputs.push(tokio::spawn(outputs::http::serve(
                listener,
                app,
                shutdown.clone(),
            )));
        }
        if let Some(dir) = config.metrics.textfile_dir.clone() {
            outputs.push(tokio::spawn(outputs::textfile::run(
                dir,
                config.metrics.textfile_interval,
                outputs::metrics::Exporter::for_textfile(sources),
                shutdown.clone(),
            )));
        }
        // Store loaded (or given up on) and bus serving: ready.
        let service = service::ready(shutdown.clone());
        Ok(Daemon {
            url,
            store,
            loaded,
            shutdown,
            sync_stop,
            monitor,
            sync,
            bus,
            outputs,
            metrics_addr,
            clock_check,
            relay,
            private,
            instance,
            lease,
            service,
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
            runtime_dir: None,
            interrupt: CancellationToken::new(),
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

    /// Where the metrics and dashboard listener answers, when it runs.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_addr
    }

    /// Whether the stored results could be read at start.
    pub fn loaded(&self) -> bool {
        self.loaded
    }

    /// Who took the daemon lease from this daemon (which then stops), if
    /// that happened.
    pub fn lease_lost_to(&self) -> Option<String> {
        self.lease.lost_to()
    }

    /// Fires to stop the daemon; [`Daemon::shutdown`] fires it too.
    pub fn stop_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Stops every part in order and waits for them, all within
    /// [`SHUTDOWN_GRACE`] (the private Redis included). Returns false if
    /// some work had not stopped by then, or a part had panicked (the
    /// daemon is taken down anyway).
    pub async fn shutdown(self) -> bool {
        self.shutdown_by(tokio::time::Instant::now() + SHUTDOWN_GRACE)
            .await
    }

    /// [`Daemon::shutdown`] with every step done by `deadline`.
    pub async fn shutdown_by(self, deadline: tokio::time::Instant) -> bool {
        self.stop_parts(deadline, Why::Stop).await
    }

    /// Stops every part as [`Daemon::shutdown`] does, but tells the service
    /// manager `RELOADING=1` rather than `STOPPING=1`: the caller starts a
    /// daemon again at once (with a new configuration, on SIGHUP), and that
    /// start's `READY=1` ends the reload.
    pub async fn shutdown_for_reload(self) -> bool {
        self.stop_parts(tokio::time::Instant::now() + SHUTDOWN_GRACE, Why::Reload)
            .await
    }

    async fn stop_parts(self, deadline: tokio::time::Instant, why: Why) -> bool {
        self.shutdown.cancel();
        let Daemon {
            sync_stop,
            monitor,
            sync,
            bus,
            outputs,
            clock_check,
            relay,
            private,
            instance,
            lease,
            service,
            ..
        } = self;
        // The parts' share: the private Redis's is set aside first.
        let parts_deadline = match &private {
            Some(_) => deadline
                .checked_sub(PRIVATE_STOP)
                .unwrap_or(deadline)
                .max(tokio::time::Instant::now()),
            None => deadline,
        };
        match why {
            Why::Stop => service.stopping(),
            Why::Reload => service.reloading(),
        }
        // A part that panicked is reported, not taken for a clean stop.
        let ended = |part: &str, joined: Result<(), tokio::task::JoinError>| match joined {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(part, error = %e, "ended abnormally");
                false
            }
        };
        let stopped = tokio::time::timeout_at(parts_deadline, async {
            let mut clean = ended("monitor", monitor.await);
            sync_stop.cancel();
            clean &= ended("sync loop", sync.await);
            if let Some(bus) = bus {
                clean &= ended("bus", bus.await);
            }
            for output in outputs {
                clean &= ended("output", output.await);
            }
            if let Some(c) = clock_check {
                clean &= ended("clock check", c.await);
            }
            if let Some(relay) = relay {
                clean &= ended("relay", relay.await);
            }
            clean
        })
        .await;
        let in_time = matches!(stopped, Ok(true));
        // After the last sync pass: the next daemon may start at once.
        let _ = tokio::time::timeout(Duration::from_secs(1), lease.release()).await;
        if stopped.is_err() {
            tracing::warn!("some work did not stop within the grace time; exiting anyway");
        }
        if let Some(private) = private {
            private.stop(deadline).await;
        }
        drop(instance);
        match why {
            Why::Stop => tracing::info!("stopped"),
            Why::Reload => tracing::info!("stopped, to start again with the new configuration"),
        }
        in_time
    }
}

/// Why the daemon stops: for good, or to start again (a reload).
#[derive(Clone, Copy)]
enum Why {
    Stop,
    Reload,
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
    run_once_with_progress(config, url, name, cancel, Progress::default(), None).await
}

/// [`run_once`], the run telling its steps to `progress`, and all of it
/// (the wait for its turn included) over by `deadline` when one is given
/// ([`Monitor::run_now_by`]).
pub async fn run_once_with_progress(
    config: &Config,
    url: &str,
    name: &'static str,
    cancel: CancellationToken,
    progress: Progress,
    deadline: Option<tokio::time::Instant>,
) -> anyhow::Result<TaskResult> {
    let registered = monitor::register(
        config,
        tasks::registry(&config.sections, &config.grid_context()),
    )?;
    // Fail before a long run if there is nowhere to store its result.
    node_redis::connect_once(url).await?;
    // Writes only the last run's fields of perf:status: a daemon beside
    // keeps its schedule and counters (crate::store::status).
    let store =
        ResultStore::for_manual_run(RedisLink::start(url, cancel.clone())?, &config.history);
    let load_wait = match deadline {
        Some(d) => LOAD_WAIT.min(d.saturating_duration_since(tokio::time::Instant::now())),
        None => LOAD_WAIT,
    };
    store.load(load_wait).await;
    if let Some(r) = registered.iter().find(|r| r.task.name() == name) {
        // Used only where no daemon has written the entry yet.
        store.update_status(name, |s| {
            s.cron = r.settings.schedule.as_str().to_string();
            s.jitter = r.settings.jitter.as_secs();
            s.exclusive = r.settings.exclusive;
        });
    }
    let monitor = Monitor::new(registered, store.clone(), Arc::new(SystemClock));
    let result = monitor.run_now_by(name, cancel, progress, deadline).await;
    let synced = store.sync_once().await;
    let result = result?;
    if synced?.is_none() {
        anyhow::bail!(
            "{name}: ran, but redis at {} is not connected: result not stored",
            node_redis::redacted(url)
        );
    }
    Ok(result)
}

/// The relay transport, checked before anything starts: the `[rmb]`
/// identity made from its secret (`[rmb] mnemonic_file`, the systemd
/// credential or `ZOS_PERF_MNEMONIC`: a daemon has nobody to prompt) and
/// the chain client, so that a bad secret or setting fails the start with
/// nothing running.
struct RelayPlan {
    identity: Arc<crate::rmb::Identity>,
    twins: Arc<crate::rmb::twin::TwinDb>,
    relays: Vec<String>,
    options: bus::relay::ServeOptions,
}

impl RelayPlan {
    fn check(config: &Config) -> anyhow::Result<RelayPlan> {
        use crate::grid::chain::{ChainClient, ChainOptions};
        use crate::rmb::{secret, twin::TwinDb, Identity};
        let rmb = &config.rmb;
        let identity = secret::load_for_daemon(rmb.mnemonic_file.as_deref())
            .and_then(|secret| Identity::from_secret(&secret, rmb.key_type))
            .map_err(|e| {
                anyhow::Error::from(e).context("bus.relay.enabled: the serving twin's secret")
            })?;
        let identity = Arc::new(identity);
        let options = ChainOptions {
            call_timeout: rmb.chain_timeout,
            ..ChainOptions::default()
        };
        let chain = ChainClient::new(rmb.chain_urls(config.network), options)?;
        Ok(RelayPlan {
            identity,
            twins: Arc::new(TwinDb::new(Arc::new(chain), rmb.cache_ttl)),
            relays: rmb.relays(config.network),
            options: bus::relay::ServeOptions {
                clock_skew: config.bus.clock_skew,
                ..Default::default()
            },
        })
    }

    fn spawn(
        self,
        redis: redis::Client,
        stats: Arc<bus::relay::RelayStats>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        tokio::spawn(bus::relay::serve(
            redis,
            self.identity,
            self.twins,
            self.relays,
            stats,
            self.options,
            shutdown,
        ))
    }
}
