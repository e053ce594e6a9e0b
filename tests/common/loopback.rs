//! A TCP server on 127.0.0.1 (a fresh port each) for the stand-ins that
//! speak a protocol over real sockets (the chain's JSON-RPC, the relay).
//!
//! It runs on a thread of its own with its own runtime, so it serves
//! synchronous and async tests alike. Dropping it stops the accept loop,
//! tells every open connection to end (through the `stopped` receiver each
//! handler gets), waits for them and joins the thread: nothing outlives the
//! test that started it.

use std::future::Future;
use std::net::SocketAddr;
use std::thread::JoinHandle;

use tokio::net::TcpStream;
use tokio::sync::watch;

/// The running server; stopped when dropped.
pub struct LoopbackServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl LoopbackServer {
    /// Binds 127.0.0.1:0 and hands each accepted connection to `handle`
    /// on a runtime of `workers` threads (0: one current-thread runtime).
    /// `what` names the server in a failure to start.
    pub fn start<H, F>(what: &'static str, workers: usize, handle: H) -> LoopbackServer
    where
        H: FnMut(TcpStream, watch::Receiver<bool>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let addr = SocketAddr::from(([127, 0, 0, 1], 0));
        LoopbackServer::start_on(what, addr, workers, handle)
    }

    /// [`LoopbackServer::start`] on `addr`: the port of a server stopped
    /// before, to start it again where its clients look for it.
    pub fn start_on<H, F>(
        what: &'static str,
        addr: SocketAddr,
        workers: usize,
        mut handle: H,
    ) -> LoopbackServer
    where
        H: FnMut(TcpStream, watch::Receiver<bool>) -> F + Send + 'static,
        F: Future<Output = ()> + Send + 'static,
    {
        let listener =
            std::net::TcpListener::bind(addr).unwrap_or_else(|e| panic!("bind the {what}: {e}"));
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("listener address");
        let (stop, mut stopped) = watch::channel(false);
        let thread = std::thread::spawn(move || {
            let rt = if workers == 0 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .enable_all()
                    .build()
            }
            .unwrap_or_else(|e| panic!("{what} runtime: {e}"));
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                let mut conns = tokio::task::JoinSet::new();
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        accepted = listener.accept() => {
                            let Ok((tcp, _)) = accepted else { continue };
                            conns.spawn(handle(tcp, stopped.clone()));
                        }
                    }
                }
                conns.shutdown().await;
            });
        });
        LoopbackServer {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for LoopbackServer {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers every HTTP request on `listener` with `status`, the header
/// lines in `head` (each ending in CRLF), a JSON content type and `body`
/// (left out for a HEAD request); one request a connection. Spawned on the
/// calling runtime, so the listener may live in a test namespace; it
/// serves as long as that runtime runs.
pub fn serve_http(listener: tokio::net::TcpListener, status: u16, head: String, body: String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            let (head, body) = (head.clone(), body.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                let head_only = got.starts_with(b"HEAD");
                let head = format!(
                    "HTTP/1.1 {status} X\r\n{head}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = conn.write_all(head.as_bytes()).await;
                if !head_only {
                    let _ = conn.write_all(body.as_bytes()).await;
                }
            });
        }
    });
}
