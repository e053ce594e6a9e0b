//! The namespace thread: the only thread that ever enters the test namespace.
//!
//! A namespace is a property of a thread, not of a process. Entering one on a
//! tokio worker would move every other task that worker later polls into it,
//! so the daemon's runtimes never do: [`validate_in_namespace`] starts a
//! dedicated OS thread that `setns()`s into the namespace once, never leaves,
//! and runs its own current-thread runtime for netlink and the HTTP lookup.
//! Sockets created there (and threads it spawns, like the resolver's) belong
//! to the namespace.
//!
//! Cleanup is a guard on that thread (`LinkGuard`): whatever ends the
//! work (success, error, cancellation, panic), its drop removes every address
//! and route of the link and sets it down. The daemon side holds a
//! `JoinOnDrop`: dropping the run's future (timeout, shutdown) cancels the
//! thread and waits, bounded, until that cleanup is done, so the daemon does
//! not exit with a farm IP still on the link.

use std::fs::File;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::rtnl::Rtnl;
use anyhow::{anyhow, bail, Context};
use nix::mount::{mount, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use tokio_util::sync::CancellationToken;

use super::link;
use super::validate::check_all;
use super::PublicIpConfig;
use super::Report;
use crate::grid::graphql::PublicIp;

/// Where named network namespaces are bind-mounted (as by `ip netns`).
pub(crate) const NETNS_DIR: &str = "/var/run/netns";

/// How long dropping a run waits for the namespace thread to clean up.
const CLEANUP_WAIT: Duration = Duration::from_secs(10);

/// Capability bits (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;

/// Fails, saying what is missing, unless the calling thread may change
/// links (CAP_NET_ADMIN) and enter namespaces (CAP_SYS_ADMIN).
pub fn check_privileges() -> anyhow::Result<()> {
    // thread-self: capabilities are per thread; this is the one that asks.
    let path = "/proc/thread-self/status";
    let status = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let effective =
        effective_caps(&status).ok_or_else(|| anyhow!("{path}: no readable CapEff line"))?;
    let missing: Vec<&str> = [
        (
            CAP_NET_ADMIN,
            "CAP_NET_ADMIN (to change addresses, routes and links)",
        ),
        (
            CAP_SYS_ADMIN,
            "CAP_SYS_ADMIN (to enter the test network namespace)",
        ),
    ]
    .into_iter()
    .filter(|(bit, _)| effective & (1 << bit) == 0)
    .map(|(_, what)| what)
    .collect();
    if !missing.is_empty() {
        bail!(
            "public-ip-validation needs {}; this process does not have it (CapEff {effective:016x})",
            missing.join(" and ")
        );
    }
    Ok(())
}

/// The effective capability set from a `/proc/.../status` text.
pub(crate) fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// Validates `ips` inside the configured namespace, on a dedicated thread.
/// Resolves when the thread has finished, including its cleanup.
pub(crate) async fn validate_in_namespace(
    settings: PublicIpConfig,
    ips: Vec<PublicIp>,
    cancel: CancellationToken,
    progress: crate::tasks::Progress,
) -> anyhow::Result<Report> {
    let (result_tx, result_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let stop = cancel.child_token();
    let job = Job {
        settings,
        ips,
        cancel: stop.clone(),
        progress,
    };
    // The thread logs inside the run's span (it carries the task's name).
    let span = tracing::Span::current();
    std::thread::Builder::new()
        .name("pubip-netns".into())
        .spawn(move || {
            let _span = span.enter();
            // Dropped last: tells JoinOnDrop the cleanup is over.
            let _done = done_tx;
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                .unwrap_or_else(|panic| {
                    Err(anyhow!("namespace thread panicked: {}", panic_text(&panic)))
                });
            let _ = result_tx.send(result);
        })
        .context("starting the namespace thread")?;
    let _join = JoinOnDrop {
        stop,
        done: done_rx,
    };
    result_rx
        .await
        .map_err(|_| anyhow!("the namespace thread ended without a result"))?
}

/// Cancels the namespace thread and waits (bounded) for it to finish.
struct JoinOnDrop {
    stop: CancellationToken,
    done: mpsc::Receiver<()>,
}

impl Drop for JoinOnDrop {
    fn drop(&mut self) {
        self.stop.cancel();
        // Blocks this thread for the few netlink calls of the cleanup; the
        // sender is only dropped when the namespace thread has finished.
        let started = Instant::now();
        if let Err(mpsc::RecvTimeoutError::Timeout) = self.done.recv_timeout(CLEANUP_WAIT) {
            tracing::error!(
                waited = ?started.elapsed(),
                "namespace thread still cleaning up; not waiting longer"
            );
        }
    }
}

/// What the namespace thread is given.
struct Job {
    settings: PublicIpConfig,
    ips: Vec<PublicIp>,
    cancel: CancellationToken,
    progress: crate::tasks::Progress,
}

impl Job {
    /// The whole life of the namespace thread. Runs in the daemon's own
    /// namespace until `setns`, inside the test namespace after it.
    fn run(self) -> anyhow::Result<Report> {
        let s = &self.settings;
        let ns_path = Path::new(NETNS_DIR).join(&s.namespace);
        if !ns_path.exists() {
            match &s.parent_interface {
                Some(_) => create_namespace(&ns_path)
                    .with_context(|| format!("creating network namespace {}", s.namespace))?,
                None => bail!(
                    "network namespace {:?} not found ({}): it must exist with macvlan {:?} inside, \
                     or public_ip.parent_interface must be set to create them",
                    s.namespace,
                    ns_path.display(),
                    s.link
                ),
            }
        }
        let ns_file = File::open(&ns_path)
            .with_context(|| format!("opening network namespace {}", ns_path.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the namespace thread's runtime")?;
        // Opened before setns, so it stays in the daemon's namespace: only
        // needed to create the macvlan over a parent interface there.
        let root = match &s.parent_interface {
            Some(_) => Some(rt.block_on(async { link::connect() })?),
            None => None,
        };
        setns(ns_file.as_fd(), CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace {}", s.namespace))?;

        let handle = rt.block_on(async { link::connect() })?;
        let index = rt.block_on(self.find_or_create_link(&handle, root.as_ref(), &ns_file))?;
        let guard = LinkGuard {
            index,
            link: s.link.clone(),
            namespace: s.namespace.clone(),
            armed: true,
        };
        let outcome = rt.block_on(async {
            tokio::select! {
                r = check_all(&handle, index, &self.ips, s, &self.progress) => r,
                _ = self.cancel.cancelled() => Err(anyhow!("cancelled")),
            }
        });
        let cleaned = guard.close();
        rt.shutdown_background();
        let report = outcome?;
        cleaned?;
        Ok(report)
    }

    async fn find_or_create_link(
        &self,
        handle: &Rtnl,
        root: Option<&Rtnl>,
        ns_file: &File,
    ) -> anyhow::Result<u32> {
        let s = &self.settings;
        if let Some(index) = link::find(handle, &s.link).await? {
            return Ok(index);
        }
        match (root, &s.parent_interface) {
            (Some(root), Some(parent)) => {
                tracing::info!(
                    link = s.link,
                    namespace = s.namespace,
                    parent,
                    "creating the test macvlan"
                );
                link::create_macvlan(root, handle, parent, &s.link, ns_file.as_fd())
                    .await
                    .with_context(|| {
                        format!("creating macvlan {} in namespace {}", s.link, s.namespace)
                    })
            }
            _ => bail!(
                "macvlan {:?} not found in network namespace {:?}: it must exist, \
                 or public_ip.parent_interface must be set to create it",
                s.link,
                s.namespace
            ),
        }
    }
}

/// Leaves the link with no address, no route, and down, when dropped or
/// closed. Lives on the namespace thread, outside any `block_on`, so its
/// drop can run its own small runtime even while a panic unwinds.
struct LinkGuard {
    index: u32,
    link: String,
    namespace: String,
    armed: bool,
}

impl LinkGuard {
    /// Cleans up now and says whether it worked.
    fn close(mut self) -> anyhow::Result<()> {
        self.armed = false;
        self.clean()
    }

    fn clean(&self) -> anyhow::Result<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .context("building the cleanup runtime")?;
        let index = self.index;
        let result = rt.block_on(async move {
            let handle = link::connect()?;
            let flushed = link::flush(&handle, index).await;
            let down = link::set_up(&handle, index, false).await;
            flushed.and(down)
        });
        result.with_context(|| {
            format!(
                "cleaning link {} in namespace {}",
                self.link, self.namespace
            )
        })
    }
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.clean() {
                tracing::error!("{e:#}");
            }
        }
    }
}

/// Creates a named network namespace the way `ip netns add` does: a file in
/// [`NETNS_DIR`] with a new namespace bind-mounted on it, the directory being a
/// shared mount so the name is seen from other mount namespaces too.
fn create_namespace(path: &Path) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new(NETNS_DIR));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    make_shared(dir)?;
    File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    let target = path.to_path_buf();
    // unshare() moves the calling thread: a throw-away thread does it, and
    // the namespace lives on through the bind mount after the thread ends.
    let made = std::thread::Builder::new()
        .name("pubip-mkns".into())
        .spawn(move || -> anyhow::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).context("unshare(CLONE_NEWNET)")?;
            mount(
                Some("/proc/thread-self/ns/net"),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting the new namespace on {}", target.display()))
        })
        .context("starting the namespace-creating thread")?
        .join()
        .unwrap_or_else(|panic| {
            Err(anyhow!(
                "namespace-creating thread panicked: {}",
                panic_text(&panic)
            ))
        });
    if made.is_err() {
        let _ = std::fs::remove_file(path);
    }
    made
}

/// Makes `dir` a shared mount point, bind-mounting it on itself first if it
/// is not a mount point yet (what iproute2 does for /var/run/netns).
fn make_shared(dir: &Path) -> anyhow::Result<()> {
    let shared = MsFlags::MS_SHARED | MsFlags::MS_REC;
    if mount(None::<&str>, dir, None::<&str>, shared, None::<&str>).is_ok() {
        return Ok(());
    }
    let dir_buf: PathBuf = dir.to_path_buf();
    mount(
        Some(&dir_buf),
        dir,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .with_context(|| format!("bind-mounting {} on itself", dir.display()))?;
    mount(None::<&str>, dir, None::<&str>, shared, None::<&str>)
        .with_context(|| format!("making {} a shared mount", dir.display()))
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

#[cfg(test)]
mod tests;
