//! The HTTP/1.1 server around `app()`: our own accept loop over hyper, so
//! that connections are bounded (`axum::serve` has no timeouts and no cap).
//!
//! - At most `max_connections` connections are served at once; above that,
//!   new ones wait in the listen backlog until one closes. While they wait,
//!   every connection with nothing in flight and no byte moved for
//!   `EVICT_AFTER` is closed to make room, so a flood of idle connections
//!   cannot keep `/healthz` from being answered.
//! - A request head must arrive whole within `header_timeout` of its first
//!   byte, and a request body being read may not stall (no byte received)
//!   for longer than `header_timeout`: a client that sends half a request is
//!   cut off. A request body must also arrive whole within `idle_timeout`
//!   of its head (so a body trickled a byte at a time cannot hold a
//!   connection and its handler forever).
//! - A request head is at most `MAX_HEAD_BYTES` with at most 100 fields
//!   (hyper's default); a larger one is answered 431 and the connection
//!   closed. Bodies
//!   are bounded per route (`DefaultBodyLimit`, 413).
//! - A connection with no request in flight and no byte moved for
//!   `idle_timeout` is closed.
//! - Graceful shutdown: when `shutdown` resolves, stop accepting, let every
//!   connection finish its in-flight request (idle ones close at once), and
//!   return once all are closed.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Notify, Semaphore};
use tower::ServiceExt;

/// At the cap, a connection quiet for this long with nothing in flight is
/// closed to make room (a client that just connected has sent its request
/// by then).
const EVICT_AFTER: Duration = Duration::from_millis(250);
/// How often the accept loop asks again for room while at the cap.
const PRESSURE_EVERY: Duration = Duration::from_millis(100);
/// Largest request head (request line + headers): Envoy's default
/// `max_request_headers_kb` (60 KiB) plus room. Unset, hyper's bound is its
/// read buffer (~400 KiB). The field count keeps hyper's default (100):
/// setting it moves the header array to the heap for every request.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Connection limits; see the module comment.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves and every
/// connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let slots = Arc::new(Semaphore::new(max));
    let (stop, stopping) = watch::channel(false);
    let pressure = Arc::new(Notify::new());
    tokio::pin!(shutdown);
    loop {
        // A slot first, then accept: above the cap, connections wait in the
        // backlog rather than being accepted and starved, and quiet
        // connections are asked to make room.
        let slot = match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => loop {
                pressure.notify_waiters();
                tokio::select! {
                    () = &mut shutdown => break None,
                    slot = Arc::clone(&slots).acquire_owned() => break slot.ok(),
                    () = tokio::time::sleep(PRESSURE_EVERY) => {}
                }
            },
        };
        let Some(slot) = slot else { break };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: back off a little.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let stopping = stopping.clone();
        let pressure = Arc::clone(&pressure);
        tokio::spawn(async move {
            serve_connection(stream, router, limits, stopping, &pressure).await;
            tracing::trace!(%peer, "connection closed");
            drop(slot);
        });
    }
    drop(listener);
    // Every connection finishes its request and closes, then gives back its
    // slot: holding all slots means none is left.
    stop.send_replace(true);
    let all = u32::try_from(max).unwrap_or(u32::MAX);
    let drained = slots.acquire_many(all).await;
    drop(drained);
}

/// What one connection is doing, for its watchdog.
struct ConnState {
    /// Last time a byte was read or written.
    last_io: Instant,
    /// Last time a byte was read.
    last_read: Instant,
    /// Requests handed to the router and not answered yet.
    in_flight: usize,
    /// When the first byte of a request head arrived, until the request is
    /// handed to the router.
    head_since: Option<Instant>,
    /// Since when a handler waits for request body bytes that do not come.
    body_waiting_since: Option<Instant>,
    /// When the request in flight was handed to the router (its head read).
    request_since: Option<Instant>,
}

#[derive(Clone)]
struct Watch(Arc<Mutex<ConnState>>);

/// The watchdog's verdict on a connection.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Keep,
    /// Half a request: cut the connection.
    Cut(&'static str),
    /// Nothing to do for too long: close it.
    Idle,
}

impl Watch {
    fn new() -> Self {
        let now = Instant::now();
        Self(Arc::new(Mutex::new(ConnState {
            last_io: now,
            last_read: now,
            in_flight: 0,
            head_since: None,
            body_waiting_since: None,
            request_since: None,
        })))
    }

    fn state(&self) -> MutexGuard<'_, ConnState> {
        // The state stays consistent whatever panicked while holding it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn read(&self) {
        let now = Instant::now();
        let mut s = self.state();
        s.last_io = now;
        s.last_read = now;
        if s.in_flight == 0 && s.head_since.is_none() {
            s.head_since = Some(now);
        }
    }

    fn wrote(&self) {
        self.state().last_io = Instant::now();
    }

    fn request_started(&self) {
        let mut s = self.state();
        s.in_flight += 1;
        s.head_since = None;
        s.request_since = Some(Instant::now());
    }

    fn request_done(&self) {
        let mut s = self.state();
        s.in_flight = s.in_flight.saturating_sub(1);
        s.body_waiting_since = None;
        s.request_since = None;
        s.last_io = Instant::now();
    }

    fn body_waiting(&self, waiting: bool) {
        let mut s = self.state();
        if !waiting {
            s.body_waiting_since = None;
        } else if s.body_waiting_since.is_none() {
            s.body_waiting_since = Some(Instant::now());
        }
    }

    /// Whether the connection may be closed to make room: nothing in flight,
    /// no request head begun, no byte moved for `EVICT_AFTER`.
    fn evictable(&self, now: Instant) -> bool {
        let s = self.state();
        s.in_flight == 0 && s.head_since.is_none() && now.duration_since(s.last_io) >= EVICT_AFTER
    }

    fn verdict(&self, now: Instant, limits: &Limits) -> Verdict {
        let s = self.state();
        if s.in_flight > 0 {
            if let Some(since) = s.body_waiting_since {
                let progress = since.max(s.last_read);
                if now.duration_since(progress) >= limits.header_timeout {
                    return Verdict::Cut("request body stalled");
                }
                if s.request_since
                    .is_some_and(|head| now.duration_since(head) >= limits.idle_timeout)
                {
                    return Verdict::Cut("request body too slow");
                }
            }
            return Verdict::Keep;
        }
        if let Some(since) = s.head_since {
            if now.duration_since(since) >= limits.header_timeout {
                return Verdict::Cut("request head not received in time");
            }
            return Verdict::Keep;
        }
        if now.duration_since(s.last_io) >= limits.idle_timeout {
            return Verdict::Idle;
        }
        Verdict::Keep
    }
}

/// Ends the request in the watch when dropped (answered or abandoned).
struct InFlight(Watch);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_done();
    }
}

async fn serve_connection(
    stream: TcpStream,
    router: Router,
    limits: Limits,
    mut stopping: watch::Receiver<bool>,
    pressure: &Notify,
) {
    let watch = Watch::new();
    let io = TokioIo::new(Watched {
        inner: stream,
        watch: watch.clone(),
    });
    let on_request = watch.clone();
    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        on_request.request_started();
        let in_flight = InFlight(on_request.clone());
        let watch = on_request.clone();
        let router = router.clone();
        async move {
            let request = request.map(|body| Body::new(WatchedBody { inner: body, watch }));
            let response = router.oneshot(request).await;
            drop(in_flight);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The watchdog below enforces the head timeout from a head's first
    // byte; hyper's own would also cut idle keep-alive connections early.
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(MAX_HEAD_BYTES);
    let connection = builder.serve_connection(io, service);
    tokio::pin!(connection);
    let tick = (limits.header_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(5), Duration::from_secs(1));
    let mut draining = *stopping.borrow();
    if draining {
        connection.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            changed = stopping.changed(), if !draining => {
                draining = true;
                if changed.is_err() || *stopping.borrow() {
                    connection.as_mut().graceful_shutdown();
                }
            }
            () = pressure.notified() => {
                if watch.evictable(Instant::now()) {
                    tracing::trace!("closing a quiet connection to make room");
                    return;
                }
            }
            () = tokio::time::sleep(tick) => match watch.verdict(Instant::now(), &limits) {
                Verdict::Keep => {}
                Verdict::Cut(reason) => {
                    tracing::debug!(reason, "closing a connection that sent half a request");
                    return;
                }
                Verdict::Idle => {
                    tracing::trace!("closing an idle connection");
                    return;
                }
            },
        }
    }
}

/// The TCP stream, noting every byte moved in the connection's watch.
struct Watched {
    inner: TcpStream,
    watch: Watch,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.watch.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.watch.wrote();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body that tells the watch while a handler waits for bytes, so
/// a stalled body is told apart from a request queued or being processed.
struct WatchedBody {
    inner: Incoming,
    watch: Watch,
}

impl HttpBody for WatchedBody {
    type Data = hyper::body::Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let result = Pin::new(&mut self.inner).poll_frame(cx);
        self.watch.body_waiting(result.is_pending());
        result
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1,
        }
    }

    #[test]
    fn half_a_head_is_cut_after_the_header_timeout() {
        let w = Watch::new();
        let start = Instant::now();
        w.read();
        assert_eq!(
            w.verdict(start + Duration::from_secs(9), &limits()),
            Verdict::Keep
        );
        assert!(matches!(
            w.verdict(start + Duration::from_secs(11), &limits()),
            Verdict::Cut(_)
        ));
    }

    #[test]
    fn a_request_in_flight_is_kept_unless_its_body_stalls() {
        let w = Watch::new();
        let start = Instant::now();
        w.read();
        w.request_started();
        // Queued or processing (the body is not being waited for): kept.
        assert_eq!(
            w.verdict(start + Duration::from_secs(120), &limits()),
            Verdict::Keep
        );
        w.body_waiting(true);
        assert!(matches!(
            w.verdict(start + Duration::from_secs(11), &limits()),
            Verdict::Cut(_)
        ));
        w.body_waiting(false);
        w.request_done();
        assert_eq!(w.verdict(Instant::now(), &limits()), Verdict::Keep);
    }

    #[test]
    fn a_body_trickled_past_the_idle_timeout_is_cut() {
        let w = Watch::new();
        let start = Instant::now();
        w.read();
        w.request_started();
        w.body_waiting(true);
        // A byte arrives every few seconds: never stalled for the header
        // timeout, but the whole body is not in after the idle timeout.
        for secs in [5, 30, 59] {
            let now = start + Duration::from_secs(secs);
            w.state().last_read = now;
            assert_eq!(w.verdict(now, &limits()), Verdict::Keep, "{secs}s");
        }
        let now = start + Duration::from_secs(61);
        w.state().last_read = now;
        assert_eq!(
            w.verdict(now, &limits()),
            Verdict::Cut("request body too slow")
        );
        // A handler busy past the idle timeout (not waiting for the body) is kept.
        w.body_waiting(false);
        assert_eq!(w.verdict(now, &limits()), Verdict::Keep);
    }

    #[test]
    fn only_quiet_connections_with_nothing_in_flight_make_room() {
        let w = Watch::new();
        let start = Instant::now();
        assert!(!w.evictable(start), "just connected");
        assert!(w.evictable(start + EVICT_AFTER));
        w.read();
        assert!(!w.evictable(Instant::now() + EVICT_AFTER), "a head begun");
        w.request_started();
        assert!(!w.evictable(Instant::now() + EVICT_AFTER), "in flight");
        w.request_done();
        assert!(w.evictable(Instant::now() + EVICT_AFTER));
    }

    #[test]
    fn a_quiet_connection_is_idle_after_the_idle_timeout() {
        let w = Watch::new();
        let start = Instant::now();
        assert_eq!(
            w.verdict(start + Duration::from_secs(59), &limits()),
            Verdict::Keep
        );
        assert_eq!(
            w.verdict(start + Duration::from_secs(61), &limits()),
            Verdict::Idle
        );
    }
}
