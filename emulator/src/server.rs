//! The network edge: accepts connections (optionally TLS), records each request, applies the
//! active fault, and otherwise hands the request to [`vault::handle`]. It runs either on a std
//! thread with its own tokio current-thread runtime ([`Server::start`]) or as a task on the
//! caller's runtime ([`Server::start_in_runtime`]). It can stop listening ([`Fault::Down`]) and
//! re-bind the same port; both happen synchronously in the caller, so neither mode waits for an
//! acknowledgement from the accept loop (which, on the caller's own current-thread runtime,
//! could never come).

use std::convert::Infallible;
use std::fmt;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming};
use hyper::header::{HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use rustls::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::runtime::Handle;
use tokio::task::AbortHandle;
use tokio_rustls::TlsAcceptor;

use crate::reply::{Body, Reply};
use crate::state::{lock, State};
use crate::vault;
use crate::{Fault, Request};

/// Size of the [`Fault::Oversized`] body.
const OVERSIZED_LEN: usize = 8 * 1024 * 1024;

/// The listening socket and the open connections, shared by the accept loop and the control
/// API: the control API closes or re-binds the socket itself, and the accept loop only borrows
/// it for each poll.
struct Listening {
    /// `None` while down.
    listener: Option<TcpListener>,
    /// Bumped when going down, so a connection accepted just before is dropped unserved.
    generation: u64,
    /// Open connections, aborted when going down or stopping.
    connections: Vec<AbortHandle>,
    /// The accept loop's waker, woken after re-binding or when stopping.
    waker: Option<Waker>,
    /// Set when the [`Server`] is dropped: the accept loop ends.
    stopped: bool,
}

type Shared = Arc<Mutex<Listening>>;

fn listening(shared: &Mutex<Listening>) -> MutexGuard<'_, Listening> {
    // A panic elsewhere (a failed test assertion) must not poison the server.
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Where the accept loop runs.
enum Mode {
    /// On its own thread and runtime, joined on drop.
    Thread(Option<JoinHandle<()>>),
    /// As a task on the runtime that started it, aborted on drop.
    Task(tokio::task::JoinHandle<()>),
}

/// Handle to the running server; dropping it stops the server.
pub(crate) struct Server {
    addr: SocketAddr,
    shared: Shared,
    /// The runtime the listener is registered with (needed to re-bind from any thread).
    runtime: Handle,
    mode: Mode,
}

impl Server {
    /// Binds `addr` on a new thread and returns once it listens.
    pub fn start(
        addr: SocketAddr,
        state: Arc<Mutex<State>>,
        tls: Option<Arc<ServerConfig>>,
    ) -> Server {
        let (ready_tx, ready_rx) = std_mpsc::channel::<io::Result<(SocketAddr, Shared, Handle)>>();
        let thread = std::thread::Builder::new()
            .name("vault-emulator".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                let runtime = match runtime {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let (bound, shared) = match listen(addr) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok((bound, shared.clone(), Handle::current())));
                    run(shared, state, tls.map(TlsAcceptor::from)).await;
                });
            })
            .unwrap_or_else(|e| panic!("vault-emulator: cannot spawn the server thread: {e}"));
        let (bound, shared, runtime) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(e)) => panic!("vault-emulator: cannot listen on {addr}: {e}"),
            Err(_) => panic!("vault-emulator: the server thread died while starting"),
        };
        Server {
            addr: bound,
            shared,
            runtime,
            mode: Mode::Thread(Some(thread)),
        }
    }

    /// Binds `addr` and spawns the accept loop on the current tokio runtime.
    ///
    /// # Panics
    /// Outside a tokio runtime, or when `addr` cannot be bound.
    pub fn start_in_runtime(
        addr: SocketAddr,
        state: Arc<Mutex<State>>,
        tls: Option<Arc<ServerConfig>>,
    ) -> Server {
        let runtime = Handle::try_current().unwrap_or_else(|_| {
            panic!("vault-emulator: start_in_runtime must be called inside a tokio runtime")
        });
        let (bound, shared) =
            listen(addr).unwrap_or_else(|e| panic!("vault-emulator: cannot listen on {addr}: {e}"));
        let task = runtime.spawn(run(shared.clone(), state, tls.map(TlsAcceptor::from)));
        Server {
            addr: bound,
            shared,
            runtime,
            mode: Mode::Task(task),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes the listener (connections are refused from now on) and aborts every open
    /// connection.
    pub fn down(&self) {
        let (listener, connections) = {
            let mut l = listening(&self.shared);
            l.generation += 1;
            (l.listener.take(), std::mem::take(&mut l.connections))
        };
        drop(listener);
        for c in connections {
            c.abort();
        }
    }

    /// Re-binds the same port if it is down; returns once listening again.
    pub fn up(&self) {
        // Registering the new socket needs the server's runtime, wherever this is called from.
        let _context = self.runtime.enter();
        let mut l = listening(&self.shared);
        if l.listener.is_some() || l.stopped {
            return;
        }
        l.listener = rebind(self.addr);
        if let Some(waker) = l.waker.take() {
            waker.wake();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let (listener, connections, waker) = {
            let mut l = listening(&self.shared);
            l.stopped = true;
            (
                l.listener.take(),
                std::mem::take(&mut l.connections),
                l.waker.take(),
            )
        };
        drop(listener);
        for c in connections {
            c.abort();
        }
        if let Some(waker) = waker {
            waker.wake();
        }
        match &mut self.mode {
            Mode::Thread(thread) => {
                if let Some(thread) = thread.take() {
                    let _ = thread.join();
                }
            }
            Mode::Task(task) => task.abort(),
        }
    }
}

/// A listener with `SO_REUSEADDR`, so the port can be bound again after [`Fault::Down`] even
/// while its old connections sit in TIME_WAIT.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

fn listen(addr: SocketAddr) -> io::Result<(SocketAddr, Shared)> {
    let listener = bind(addr)?;
    let bound = listener.local_addr()?;
    let shared = Arc::new(Mutex::new(Listening {
        listener: Some(listener),
        generation: 0,
        connections: Vec::new(),
        waker: None,
        stopped: false,
    }));
    Ok((bound, shared))
}

/// Binds the port again; another process may have taken it meanwhile, so retry for a while.
fn rebind(addr: SocketAddr) -> Option<TcpListener> {
    for _ in 0..100 {
        match bind(addr) {
            Ok(listener) => return Some(listener),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    eprintln!("vault-emulator: cannot bind {addr} again; staying down");
    None
}

/// The next accepted connection and the generation it was accepted in; `None` once stopped.
fn poll_accept(shared: &Mutex<Listening>, cx: &mut Context<'_>) -> Poll<Option<Accepted>> {
    let mut l = listening(shared);
    if l.stopped {
        return Poll::Ready(None);
    }
    if !l.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
        l.waker = Some(cx.waker().clone());
    }
    let generation = l.generation;
    match &l.listener {
        Some(listener) => listener
            .poll_accept(cx)
            .map(|r| Some((r.map(|(stream, _)| stream), generation))),
        None => Poll::Pending,
    }
}

type Accepted = (io::Result<TcpStream>, u64);

async fn run(shared: Shared, state: Arc<Mutex<State>>, tls: Option<TlsAcceptor>) {
    while let Some((accepted, generation)) = poll_fn(|cx| poll_accept(&shared, cx)).await {
        match accepted {
            Ok(stream) => {
                let (refuse, log) = {
                    let mut st = lock(&state);
                    st.connections += 1;
                    (st.refuse_connection(), st.log)
                };
                if refuse {
                    if log {
                        eprintln!("(connection closed by Fault::Refuse)");
                    }
                    drop(stream);
                    continue;
                }
                let mut l = listening(&shared);
                if l.generation != generation || l.stopped {
                    // Went down between accepting and here: as if never accepted.
                    continue;
                }
                l.connections.retain(|c| !c.is_finished());
                let task = tokio::spawn(connection(stream, state.clone(), tls.clone()));
                l.connections.push(task.abort_handle());
            }
            // Out of file descriptors and the like: let the condition pass.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn connection(stream: TcpStream, state: Arc<Mutex<State>>, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => serve(stream, state, None).await,
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(stream) => {
                let sni = stream.get_ref().1.server_name().map(str::to_owned);
                serve(stream, state, sni).await
            }
            Err(e) => {
                if lock(&state).log {
                    eprintln!("(TLS handshake failed: {e})");
                }
            }
        },
    }
}

async fn serve<S>(io: S, state: Arc<Mutex<State>>, sni: Option<String>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| respond(state.clone(), sni.clone(), req));
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// Returned by the service to make hyper drop the connection without answering.
#[derive(Debug)]
struct Dropped;

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("connection dropped by an injected fault")
    }
}

impl std::error::Error for Dropped {}

type ResponseBody = BoxBody<Bytes, Infallible>;

async fn respond(
    state: Arc<Mutex<State>>,
    sni: Option<String>,
    req: hyper::Request<Incoming>,
) -> Result<hyper::Response<ResponseBody>, Dropped> {
    let (parts, body) = req.into_parts();
    let target = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let body = body.collect().await.map_err(|_| Dropped)?.to_bytes();
    let record = Request {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().unwrap_or_default().to_string(),
        headers: parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        at: lock(&state).now(),
        sni,
    };
    let (fault, log) = {
        let mut st = lock(&state);
        st.requests.push(record.clone());
        (st.fault_for_request(), st.log)
    };
    let answer = || vault::handle(&mut lock(&state), &record);
    let reply = match fault {
        None => answer(),
        Some(Fault::Slow(delay)) => {
            tokio::time::sleep(delay).await;
            answer()
        }
        Some(Fault::Reset | Fault::Refuse | Fault::Down) => {
            if log {
                eprintln!("{} {} (dropped)", record.method, record.path);
            }
            return Err(Dropped);
        }
        Some(Fault::Sealed) => vault::sealed(&lock(&state), &record),
        Some(Fault::Internal) => Reply::errors(500, &["internal error"]),
        Some(Fault::RateLimited { retry_after }) => {
            let path = record.path.strip_prefix("/v1/").unwrap_or(&record.path);
            let message = format!("request path {path:?}: rate limit quota exceeded");
            let mut reply = Reply::errors(429, &[message]);
            if let Some(secs) = retry_after {
                reply.headers.push(("retry-after", secs.to_string()));
            }
            reply
        }
        Some(Fault::PreconditionFailed) => {
            Reply::errors(412, &["required index state not present"])
        }
        Some(Fault::Status { status, errors }) => Reply::errors(status, &errors),
        Some(Fault::Html { status }) => html_error(status),
        Some(Fault::HtmlOk) => Reply {
            status: 200,
            headers: Vec::new(),
            body: Body::Html(
                "<!DOCTYPE html>\n<html><head><title>Sign in</title></head>\n<body><h1>Network login required</h1>\
                 <form method=\"post\"><input name=\"user\"></form></body></html>\n"
                    .into(),
            ),
        },
        Some(Fault::Redirect { to }) => Reply {
            status: 307,
            headers: vec![("location", format!("{}{target}", to.trim_end_matches('/')))],
            body: Body::Empty,
        },
        Some(Fault::Oversized) => Reply {
            status: 200,
            headers: Vec::new(),
            body: Body::Oversized,
        },
    };
    if log {
        eprintln!("{} {} {}", record.method, record.path, reply.status);
    }
    Ok(into_response(reply))
}

/// A proxy's error page, like nginx answers for a dead upstream.
fn html_error(status: u16) -> Reply {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    Reply {
        status,
        headers: Vec::new(),
        body: Body::Html(format!(
            "<html>\r\n<head><title>{status} {reason}</title></head>\r\n<body>\r\n\
             <center><h1>{status} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n\
             </body>\r\n</html>\r\n"
        )),
    }
}

fn into_response(reply: Reply) -> hyper::Response<ResponseBody> {
    let (content_type, body) = match reply.body {
        Body::Empty => (None, Empty::new().boxed()),
        Body::Json(value) => (
            Some("application/json"),
            Full::new(Bytes::from(value.to_string())).boxed(),
        ),
        Body::Html(page) => (
            Some("text/html; charset=utf-8"),
            Full::new(Bytes::from(page)).boxed(),
        ),
        Body::Oversized => (Some("application/json"), Junk { sent: 0 }.boxed()),
    };
    let mut response = hyper::Response::new(body);
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(content_type) = content_type {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}

/// The [`Fault::Oversized`] body: a JSON-looking prefix, then `x` up to 8 MiB, in 64 KiB
/// chunks without a Content-Length, so a client must enforce its own limit while reading.
struct Junk {
    sent: usize,
}

impl HttpBody for Junk {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        const CHUNK: usize = 64 * 1024;
        if self.sent >= OVERSIZED_LEN {
            return Poll::Ready(None);
        }
        let mut chunk = if self.sent == 0 {
            br#"{"request_id":"00000000-0000-0000-0000-000000000000","data":{"padding":""#.to_vec()
        } else {
            Vec::new()
        };
        chunk.resize(CHUNK.min(OVERSIZED_LEN - self.sent), b'x');
        self.sent += chunk.len();
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= OVERSIZED_LEN
    }
}
