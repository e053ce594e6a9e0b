//! A daemon with its metrics listener on, for the observability tests: its
//! listen address is `127.0.0.1:0`, and the address it got is read from its
//! log, so tests never pick a port themselves.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_zos-perf");

/// Removes terminal colour sequences from a log line.
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// For the log line that says where the listener answers, the address it
/// names (`None` if none parses); `None` for every other line.
pub fn listen_addr(line: &str) -> Option<Option<SocketAddr>> {
    line.contains("metrics and dashboard listening").then(|| {
        line.split("addr=")
            .nth(1)
            .and_then(|a| a.split_whitespace().next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
    })
}

/// A running `zos-perf run`; killed when dropped.
pub struct Observed {
    pub child: Child,
    /// Where its metrics listener answers, if it has one.
    pub addr: Option<SocketAddr>,
    /// Everything it logged so far.
    pub log: Arc<Mutex<String>>,
}

impl Drop for Observed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Observed {
    /// Starts `prefix... zos-perf --config <cfg> --redis <url> run` and, when
    /// `listening`, waits for the listener's address in its log.
    pub fn start(prefix: &[&str], cfg: &str, redis: &str, listening: bool) -> Observed {
        let mut cmd = match prefix.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(BIN);
                c
            }
            None => Command::new(BIN),
        };
        let mut child = cmd
            .args(["--config", cfg, "--redis", redis, "run"])
            .env_remove("ZOS_PERF_REDIS")
            .env_remove("ZOS_PERF_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start daemon");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let line = strip_ansi(&line);
                if let Some(addr) = listen_addr(&line) {
                    let _ = tx.send(addr);
                }
                let mut l = sink.lock().unwrap_or_else(|p| p.into_inner());
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut me = Observed {
            child,
            addr: None,
            log,
        };
        if listening {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(Some(addr)) => me.addr = Some(addr),
                _ => panic!("daemon did not say where it listens:\n{}", me.log()),
            }
        }
        me
    }

    /// Every real task disabled, the listener on `127.0.0.1:0` (config
    /// written into `dir`): the daemon as the listener's tests want it.
    pub fn listening_idle(dir: &std::path::Path, redis: &str) -> Observed {
        let cfg = config(
            dir,
            &format!("{ALL_DISABLED}\n[metrics]\nlisten = \"127.0.0.1:0\"\n"),
        );
        Observed::start(&[], &cfg, redis, true)
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("listening daemon")
    }

    /// Stops it with SIGTERM and waits for its exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        super::wait_for(Duration::from_secs(10), "daemon exit", || {
            self.child.try_wait().expect("wait")
        })
    }
}

/// An HTTP answer as read off the socket.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// Sends `raw` (a whole request) and reads the answer until the server
/// closes the connection (send `Connection: close`).
pub fn exchange(addr: SocketAddr, raw: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(raw).expect("send");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// `GET path` with optional extra header lines.
pub fn get(addr: SocketAddr, path: &str, extra: &str) -> Answer {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n");
    exchange(addr, req.as_bytes())
}

/// Writes a config file into `dir` and returns its path.
pub fn config(dir: &std::path::Path, text: &str) -> String {
    super::daemon::write_config(dir, text).display().to_string()
}

/// Every real task disabled.
pub const ALL_DISABLED: &str =
    "[tasks.cpu-benchmark]\nenabled = false\n[tasks.healthcheck]\nenabled = false\n\
[tasks.iperf]\nenabled = false\n[tasks.public-ip-validation]\nenabled = false\n";

/// The value of the sample `name` (with its labels, as written) in a
/// text-format scrape.
pub fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let rest = l.strip_prefix(name)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}
