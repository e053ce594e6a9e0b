//! The listener of `[metrics] listen`: `GET /metrics` and `GET /` (the
//! dashboard), nothing else. `zos-perf collect` serves its own pages
//! through the same listener (a [`Site`] of its own).
//!
//! It is reachable by whoever can reach the address, so it gives nothing
//! away for free:
//! - only `GET` and `HEAD` (405 with `Allow` otherwise), unknown paths 404,
//!   a request with a body 413;
//! - a request head is at most [`MAX_HEAD`] bytes, and must arrive within
//!   [`HEADER_TIMEOUT`] (a slow client is cut off, never waited for);
//! - at most [`MAX_CONNECTIONS`] at once, and at most [`MAX_PER_SOURCE`]
//!   of them from one source (an IPv4 address, an IPv6 /64): more are
//!   closed at accept, so one client holding connections open (a slow
//!   drip, reopened as soon as it is cut off) cannot keep Prometheus out;
//!   each is closed after [`CONNECTION_LIFETIME`] whatever it does;
//! - a page takes under a millisecond to render, so a scrape never holds up
//!   the monitor's runtime (and the bus runs on a thread of its own).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::dashboard;
use super::metrics::{Exporter, Format, Sources};

/// Largest request head (request line and headers) read; hyper's minimum.
pub(crate) const MAX_HEAD: usize = 8 * 1024;
/// Time a client has to send a whole request head.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub(crate) const MAX_CONNECTIONS: usize = 16;
/// Connections served at once to one source: a scraper needs one, a
/// browser on the dashboard two; the other slots stay free for others.
pub(crate) const MAX_PER_SOURCE: usize = 4;
/// Longest a connection is kept, keep-alive or not.
pub(crate) const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// What the listener serves.
pub struct App {
    exporter: Exporter,
    sources: Sources,
}

impl App {
    pub fn new(sources: Sources) -> Arc<App> {
        Arc::new(App {
            exporter: Exporter::new(sources.clone()),
            sources,
        })
    }
}

/// What a listener answers to a `GET` (or `HEAD`) once the request passed
/// the checks every listener makes (method, no body): the daemon's [`App`],
/// or the collector's pages (`crate::collect`).
pub(crate) trait Site: Send + Sync + 'static {
    /// The answer to `path`; `query` is what follows `?` (if anything),
    /// `accept` the `Accept` header.
    fn get(&self, path: &str, query: Option<&str>, accept: &str) -> Response<Full<Bytes>>;
}

impl Site for App {
    fn get(&self, path: &str, _query: Option<&str>, accept: &str) -> Response<Full<Bytes>> {
        match path {
            "/metrics" => {
                let format = negotiate(accept);
                // Under a millisecond with a full history (BENCHMARKS.md,
                // section metrics): rendered right here, no pool thread
                // (with an allocator arena of its own) kept around for it.
                metrics_response(format, self.exporter.render(format))
            }
            "/" => {
                let body = dashboard::render(&self.sources);
                let mut r = response(StatusCode::OK, "text/html; charset=utf-8", body);
                // The page loads nothing: say so to the browser too.
                r.headers_mut().insert(
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
                );
                r
            }
            _ => plain(StatusCode::NOT_FOUND, "not found: try /metrics or /"),
        }
    }
}

/// A scrape's answer in `format`.
pub(crate) fn metrics_response(format: Format, body: String) -> Response<Full<Bytes>> {
    let mut r = response(StatusCode::OK, format.content_type(), body);
    r.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    r
}

/// Binds the listener; a taken port or a foreign address is an error that
/// names the setting and the address.
pub async fn bind(addr: SocketAddr) -> anyhow::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .with_context(|| format!("metrics.listen: cannot listen on {addr}"))
}

/// Serves until `shutdown`.
pub(crate) async fn serve<S: Site>(
    listener: TcpListener,
    app: Arc<S>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_source = PerSource::new(MAX_PER_SOURCE);
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "metrics and dashboard listening");
    }
    loop {
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                        _ = shutdown.cancelled() => break,
                    }
                }
            },
            _ = shutdown.cancelled() => break,
        };
        let Some(own) = per_source.take(peer.ip()) else {
            tracing::debug!(%peer, "metrics listener: too many connections from this source; closing this one");
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "metrics listener: too many connections; closing this one");
            continue;
        };
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(&app, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = tokio::time::timeout(CONNECTION_LIFETIME, conn) => match r {
                    Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection ended"),
                    Err(_) => tracing::debug!(%peer, "metrics connection closed after its lifetime"),
                    Ok(Ok(())) => {}
                },
                _ = shutdown.cancelled() => {}
            }
            drop((slot, own));
        });
    }
}

/// Connections held per source. Only sources holding one are kept, so the
/// map holds at most [`MAX_CONNECTIONS`] entries (plus those being refused).
#[derive(Clone)]
struct PerSource {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    max: usize,
}

/// One connection of a source, given back when dropped.
struct SourceSlot {
    held: Arc<Mutex<HashMap<IpAddr, usize>>>,
    source: IpAddr,
}

impl PerSource {
    fn new(max: usize) -> PerSource {
        PerSource {
            held: Arc::default(),
            max,
        }
    }

    /// A slot for `peer`'s source, unless it holds `max` already.
    fn take(&self, peer: IpAddr) -> Option<SourceSlot> {
        let source = source_of(peer);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        let n = held.entry(source).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            held: self.held.clone(),
            source,
        })
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = held.get_mut(&self.source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                held.remove(&self.source);
            }
        }
    }
}

/// The source a peer counts against: its IPv4 address (an IPv4-mapped
/// IPv6 one too), or the /64 of an IPv6 address (one host or home network
/// usually holds a whole /64, and can pick any address in it).
fn source_of(peer: IpAddr) -> IpAddr {
    match peer.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

pub(crate) fn response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    r
}

pub(crate) fn plain(status: StatusCode, text: &str) -> Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

async fn handle<S: Site>(app: &Arc<S>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let has_body = req.headers().contains_key(header::TRANSFER_ENCODING)
        || req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body {
        let mut r = plain(StatusCode::PAYLOAD_TOO_LARGE, "requests carry no body here");
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return r;
    }
    let accept = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    app.get(req.uri().path(), req.uri().query(), accept)
}

/// OpenMetrics when the client prefers it (as Prometheus does), the text
/// format otherwise: the `q` of `application/openmetrics-text` against
/// that of `text/plain` (or `*/*`), the named one winning a tie.
pub(crate) fn negotiate(accept: &str) -> Format {
    let (mut om, mut text) = (0.0f32, 0.0f32);
    for range in accept.split(',') {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.strip_prefix("q="))
            .find_map(|q| q.parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        match media.as_str() {
            "application/openmetrics-text" => om = om.max(q),
            "text/plain" | "text/*" | "*/*" => text = text.max(q),
            _ => {}
        }
    }
    if om > 0.0 && om >= text {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_at_most_its_share_and_gives_it_back() {
        let limit = PerSource::new(2);
        let a: IpAddr = "192.0.2.1".parse().expect("ip");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().expect("ip");
        let b: IpAddr = "192.0.2.2".parse().expect("ip");
        let first = limit.take(a).expect("first");
        let _second = limit.take(mapped).expect("second, the same source");
        assert!(limit.take(a).is_none());
        assert!(limit.take(b).is_some(), "another source is not held back");
        drop(first);
        assert!(
            limit.take(a).is_some(),
            "a closed connection gives its slot back"
        );
        // IPv6: one /64 is one source.
        let c: IpAddr = "2001:db8:1:2::1".parse().expect("ip");
        let d: IpAddr = "2001:db8:1:2:ffff::9".parse().expect("ip");
        let e: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
        let (_c, _d) = (limit.take(c).expect("c"), limit.take(d).expect("d"));
        assert!(limit.take(c).is_none());
        assert!(limit.take(e).is_some());
        drop((_c, _d));
        assert!(limit.held.lock().expect("map").get(&source_of(c)).is_none());
    }

    #[test]
    fn content_negotiation_follows_the_q_values() {
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        assert_eq!(negotiate(prometheus), Format::OpenMetrics);
        assert_eq!(negotiate(""), Format::Text);
        assert_eq!(negotiate("*/*"), Format::Text);
        assert_eq!(negotiate("text/plain"), Format::Text);
        assert_eq!(
            negotiate("text/plain;q=0.9, application/openmetrics-text;q=0.5"),
            Format::Text
        );
        assert_eq!(
            negotiate("application/openmetrics-text; version=1.0.0"),
            Format::OpenMetrics
        );
        assert_eq!(negotiate("application/openmetrics-text;q=0"), Format::Text);
    }
}
