//! Shared test support: real redis-server processes and real network
//! namespaces, each unique to the test that made it and removed when it is
//! dropped, so tests run in parallel without fixed ports or names.

#![allow(dead_code)]

pub mod browser;
pub mod burst;
pub mod chain;
pub mod clock;
pub mod daemon;
pub mod flood;
pub mod graphql;
pub mod guest;
pub mod herd;
pub mod interop;
pub mod kv;
pub mod logged;
pub mod loopback;
pub mod observe;
pub mod output;
pub mod relay;
pub mod rmbgrid;
pub mod rss;
pub mod served;
pub mod task;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A redis-server on a unix socket in a private temporary directory.
pub struct RedisServer {
    child: Option<Child>,
    dir: tempfile::TempDir,
    socket: PathBuf,
    /// Extra redis-server arguments, kept for restarts.
    extra: Vec<String>,
}

impl RedisServer {
    /// Starts a fresh, empty server and waits until it answers.
    pub fn start() -> RedisServer {
        RedisServer::start_with(&[])
    }

    /// Starts one with extra redis-server arguments (benchmarks enable
    /// `DEBUG`, for example).
    pub fn start_with(extra: &[&str]) -> RedisServer {
        let mut me = RedisServer::not_started();
        me.extra = extra.iter().map(|a| a.to_string()).collect();
        me.spawn();
        me
    }

    /// A server whose socket path is known but which is not running yet
    /// (for a daemon that must start before Redis); `restart_empty` starts it.
    pub fn not_started() -> RedisServer {
        let dir = tempfile::Builder::new()
            .prefix("zos-perf-redis-")
            .tempdir()
            .expect("temp dir for redis");
        let socket = dir.path().join("redis.sock");
        RedisServer {
            child: None,
            dir,
            socket,
            extra: Vec::new(),
        }
    }

    fn spawn(&mut self) {
        let child = die_with_parent(
            &mut Command::new("redis-server"),
            nix::sys::signal::Signal::SIGKILL,
        )
        .args(["--port", "0", "--unixsocket"])
        .arg(&self.socket)
        .args(["--save", "", "--appendonly", "no", "--dir"])
        .arg(self.dir.path())
        .args(&self.extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (scripts/setup)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on {} did not answer", self.socket.display());
    }

    pub fn url(&self) -> String {
        format!("unix://{}", self.socket.display())
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// A blocking client connection.
    pub fn conn(&self) -> redis::Connection {
        redis::Client::open(self.url())
            .expect("client")
            .get_connection()
            .expect("connect to test redis")
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }

    /// Kills the server (SIGKILL: nothing is saved).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts it again on the same socket, empty.
    pub fn restart_empty(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
pub fn wait_for<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A name unique to this test process and call: `<prefix><pid>x<n>`, at
/// most 15 characters so it also fits an interface name.
pub fn unique_name(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    // The pid in full (base 36) and a per-process counter: two live test
    // processes never share a pid, so their names cannot collide.
    let name = format!("{prefix}-{}-{n}", base36(std::process::id()));
    assert!(name.len() <= 15, "name {name} too long for an interface");
    name
}

/// Ties a child to the test that starts it: when the thread that spawned it
/// ends (the test finished, failed or the test binary was killed), the
/// kernel sends the child `signal` (PR_SET_PDEATHSIG), so no redis-server
/// or iperf3 outlives a killed test. Spawn from the test's own thread.
pub fn die_with_parent(cmd: &mut Command, signal: nix::sys::signal::Signal) -> &mut Command {
    use std::os::unix::process::CommandExt;
    let parent = std::process::id();
    // SAFETY: the closure only makes async-signal-safe calls (prctl,
    // getppid, kill) between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(signal).map_err(std::io::Error::from)?;
            // The parent may have died before the prctl took effect.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                let _ = nix::sys::signal::raise(signal);
            }
            Ok(())
        })
    }
}

/// A loopback TCP port on which connections are refused, and stay refused:
/// the port is bound by a socket that never listens, and that socket is kept
/// open until the test binary exits, so no other test's stand-in can take
/// the port in the meantime (as one could after a bind-and-release).
pub fn closed_port() -> u16 {
    use nix::sys::socket::{
        bind, getsockname, socket, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let fd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket");
    let any = SockaddrIn::new(127, 0, 0, 1, 0);
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &any).expect("bind a loopback port");
    let bound: SockaddrIn = getsockname(std::os::fd::AsRawFd::as_raw_fd(&fd)).expect("getsockname");
    // Kept for the life of the process: the port must never be reused.
    std::mem::forget(fd);
    bound.port()
}

fn base36(mut n: u32) -> String {
    let mut out = Vec::new();
    loop {
        out.push(b"0123456789abcdefghijklmnopqrstuvwxyz"[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Configuration lines that disable the measurement tasks but `enabled`
/// (all four when it names none of them), whose jitter they set to zero;
/// `enabled`'s section comes last, so a caller may add keys to it.
pub fn only_task(enabled: &str) -> String {
    const TASKS: [&str; 4] = [
        "cpu-benchmark",
        "healthcheck",
        "iperf",
        "public-ip-validation",
    ];
    let mut text: String = TASKS
        .iter()
        .filter(|n| **n != enabled)
        .map(|n| format!("[tasks.{n}]\nenabled = false\n"))
        .collect();
    if TASKS.contains(&enabled) {
        // Its start-up run at once: no jitter (zos's would delay it). Last,
        // so that a caller can add keys of the same section after it.
        text.push_str(&format!("[tasks.{enabled}]\njitter = 0\n"));
    }
    text
}

/// Runs a command, panicking with its output if it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("running {args:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace made with `ip netns add`, deleted when dropped
/// (which also removes every interface inside it).
pub struct NetNs {
    pub name: String,
}

impl NetNs {
    pub fn new(prefix: &str) -> NetNs {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(sweep_stale_namespaces);
        let name = unique_name(prefix);
        sh(&["ip", "netns", "add", &name]);
        let ns = NetNs { name };
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// Runs a command inside the namespace and returns its stdout.
    pub fn exec(&self, args: &[&str]) -> String {
        let mut full = vec!["ip", "netns", "exec", &self.name];
        full.extend_from_slice(args);
        sh(&full)
    }

    /// Starts a long-running command inside the namespace.
    pub fn spawn(&self, args: &[&str]) -> KillOnDrop {
        let child = die_with_parent(&mut Command::new("ip"), nix::sys::signal::Signal::SIGKILL)
            .args(["netns", "exec", &self.name])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {args:?} in {}: {e}", self.name));
        KillOnDrop(child)
    }
}

/// Deletes the namespaces that test processes no longer running left
/// behind (a killed test binary runs no Drop): names made by
/// [`unique_name`], `<prefix>-<pid in base 36>-<n>`, whose pid is gone.
fn sweep_stale_namespaces() {
    let Ok(list) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&list.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let parts: Vec<&str> = name.split('-').collect();
        let [prefix, pid, n] = parts[..] else {
            continue;
        };
        let ours = !prefix.is_empty()
            && prefix.bytes().all(|b| b.is_ascii_lowercase())
            && n.bytes().all(|b| b.is_ascii_digit())
            && !n.is_empty();
        let Ok(pid) = u32::from_str_radix(pid, 36) else {
            continue;
        };
        if ours && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `cmd` with `input` on its stdin, its stdout and stderr collected;
/// `what` names it in a failure to start (e.g. the setup that installs it).
pub fn pipe_into(cmd: &mut Command, input: &[u8], what: &str) -> std::process::Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input)
        .unwrap_or_else(|e| panic!("feeding {what}: {e}"));
    child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// `zos-perf --config <cfg> --redis <redis> run`, its output discarded.
pub fn spawn_quiet_daemon(cfg: &Path, redis: &str) -> Child {
    spawn_quiet_binary(Path::new(env!("CARGO_BIN_EXE_zos-perf")), cfg, redis)
}

/// [`spawn_quiet_daemon`] with another build of the binary (the idle bench
/// also measures the shipped `dist` build).
#[allow(dead_code)]
pub fn spawn_quiet_binary(bin: &Path, cfg: &Path, redis: &str) -> Child {
    Command::new(bin)
        .arg("--config")
        .arg(cfg)
        .args(["--redis", redis, "run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the daemon")
}

/// A child process killed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A server namespace joined to a client namespace by a veth pair, the
/// `k`-th server of that client: the client's end has
/// 198.51.100.(4k+1)/30 and 2001:db8:(k+1)::1/64, the server's .(4k+2) and
/// ::2 (its addresses here), and `iperf3 -s -p 300` listens in it.
pub struct IperfServer {
    pub ns: NetNs,
    pub v4: std::net::IpAddr,
    pub v6: std::net::IpAddr,
    _iperf: KillOnDrop,
}

impl IperfServer {
    pub fn start(client: &NetNs, prefix: &str, k: usize) -> IperfServer {
        let ns = NetNs::new(prefix);
        let (a, b) = (unique_name("vc"), unique_name("vs"));
        sh(&[
            "ip",
            "link",
            "add",
            &a,
            "netns",
            &client.name,
            "type",
            "veth",
            "peer",
            "name",
            &b,
            "netns",
            &ns.name,
        ]);
        let base = 4 * k + 1;
        let (v4, v6) = (
            format!("198.51.100.{}", base + 1),
            format!("2001:db8:{}::2", k + 1),
        );
        for (side, dev, v4, v6) in [
            (
                client,
                &a,
                format!("198.51.100.{base}/30"),
                format!("2001:db8:{}::1/64", k + 1),
            ),
            (&ns, &b, format!("{v4}/30"), format!("{v6}/64")),
        ] {
            side.exec(&["ip", "addr", "add", &v4, "dev", dev]);
            side.exec(&["ip", "-6", "addr", "add", &v6, "dev", dev, "nodad"]);
            side.exec(&["ip", "link", "set", dev, "up"]);
        }
        let iperf = ns.spawn(&["iperf3", "-s", "-p", "300"]);
        wait_for(Duration::from_secs(10), "iperf3 server listening", || {
            let out = ns.exec(&["ss", "-Hltn", "sport = :300"]);
            (!out.trim().is_empty()).then_some(())
        });
        IperfServer {
            ns,
            v4: v4.parse().expect("v4"),
            v6: v6.parse().expect("v6"),
            _iperf: iperf,
        }
    }
}

/// A client namespace and one [`IperfServer`] (`k` = 0): the client has
/// 198.51.100.1/30 and 2001:db8:1::1/64, the server .2 and ::2.
pub struct IperfPair {
    pub client: NetNs,
    pub server: NetNs,
    _iperf: KillOnDrop,
}

impl IperfPair {
    pub fn start(client_prefix: &str, server_prefix: &str) -> IperfPair {
        let client = NetNs::new(client_prefix);
        let IperfServer { ns, _iperf, .. } = IperfServer::start(&client, server_prefix, 0);
        IperfPair {
            client,
            server: ns,
            _iperf,
        }
    }
}

/// Runs `f` on a fresh thread that entered the network namespace `ns`, with
/// a current-thread runtime of its own, so every socket and child it makes
/// lives there; no other thread changes namespace. Panics propagate.
pub fn in_netns<T, Fut>(ns: &str, f: impl FnOnce() -> Fut + Send + 'static) -> T
where
    T: Send + 'static,
    Fut: std::future::Future<Output = T>,
{
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(f())
    })
    .join()
    .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A namespace where every address of 203.0.113.0/24 drops packets: the
/// route leads through a veth to a gateway whose (permanent, made-up) MAC
/// no interface has, so SYNs leave `v0`, reach `v1` in the same namespace
/// and are discarded there. Connections time out; nothing answers, not even
/// with an error, and nothing leaves the namespace.
pub fn dropping_ns(prefix: &str) -> NetNs {
    let ns = NetNs::new(prefix);
    for cmd in [
        "ip link add v0 type veth peer name v1",
        "ip link set v0 up",
        "ip link set v1 up",
        "ip addr add 192.0.2.1/24 dev v0",
        "ip neigh replace 192.0.2.254 lladdr 02:00:00:00:02:54 dev v0 nud permanent",
        "ip route add 203.0.113.0/24 via 192.0.2.254 dev v0",
    ] {
        ns.exec(&cmd.split(' ').collect::<Vec<_>>());
    }
    ns
}
