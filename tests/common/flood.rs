//! One hostile HTTP client, as seen from a listener: `n` connections from
//! one source address, each sending a request head one byte a second (so
//! it is never complete and the server waits for it until its header
//! timeout), reopened as soon as the server closes it. The source is any
//! loopback address (127.0.0.2, ...): the client binds it, so a test can
//! tell the flood apart from the legitimate client on 127.0.0.1.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The running flood; stopped (every connection closed) when dropped.
pub struct Drip {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
    opened: Arc<AtomicU64>,
}

impl Drip {
    /// Starts `n` dripping connections from `source` to `target`.
    pub fn start(target: SocketAddr, source: IpAddr, n: usize) -> Drip {
        let (stop, stopped) = watch::channel(false);
        let opened = Arc::new(AtomicU64::new(0));
        let count = opened.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("flood runtime");
            rt.block_on(async move {
                let tasks: Vec<_> = (0..n)
                    .map(|_| tokio::spawn(drip(target, source, count.clone(), stopped.clone())))
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
            });
        });
        Drip {
            stop,
            thread: Some(thread),
            opened,
        }
    }

    /// Connections opened so far (the server closing one makes another).
    pub fn opened(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }
}

impl Drop for Drip {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One connection slot of the flood, reopened until stopped.
async fn drip(
    target: SocketAddr,
    source: IpAddr,
    opened: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
) {
    let head = b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Drip: ";
    while !*stopped.borrow() {
        let socket = match source {
            IpAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
            IpAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
        }
        .expect("socket");
        socket
            .bind(SocketAddr::new(source, 0))
            .expect("bind the flood's source");
        let Ok(mut conn) = socket.connect(target).await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let _ = conn.write_all(head).await;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut buf = [0u8; 512];
        loop {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tick.tick() => {
                    if conn.write_all(b"a").await.is_err() {
                        break;
                    }
                }
                r = conn.read(&mut buf) => {
                    if matches!(r, Ok(0) | Err(_)) {
                        break; // closed by the server: open another
                    }
                }
            }
        }
        // As a real flooder would, at once; a pause keeps the loop of
        // connections the server closes at accept from eating a core.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What `scrape` measured: how many of the scrapes got a whole `/metrics`
/// page, and how long each took (the failed ones included).
pub struct Scrapes {
    pub answered: usize,
    pub took: Vec<Duration>,
}

/// `n` scrapes of `http://target/metrics`, one every `every`, each on a
/// new connection (as after a Prometheus restart or a lost connection),
/// each given Prometheus's default scrape timeout (10 s): a real HTTP
/// client (reqwest), from 127.0.0.1.
pub fn scrape(target: SocketAddr, n: usize, every: Duration) -> Scrapes {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("scraper runtime");
    rt.block_on(async move {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .local_address(IpAddr::from([127, 0, 0, 1]))
            .build()
            .expect("HTTP client");
        let url = format!("http://{target}/metrics");
        let mut done = Scrapes {
            answered: 0,
            took: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let started = std::time::Instant::now();
            let page = match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => r.text().await.ok(),
                _ => None,
            };
            done.took.push(started.elapsed());
            if page.is_some_and(|p| p.contains("zos_perf_")) {
                done.answered += 1;
            }
            tokio::time::sleep(every).await;
        }
        done
    })
}
