//! The HTTPS server: `POST /mutate` (AdmissionReview), `GET /healthz`, `GET /metrics`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info, warn};

use crate::metrics::Metrics;
use crate::review;
use crate::settings::InjectSettings;
use crate::tls::ReloadingCert;
use crate::Error;

/// The API server sends at most 3 MiB objects; a bigger body is not a review.
const MAX_BODY: usize = 4 << 20;
/// A client that does not finish its TLS handshake in this long is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What every connection shares.
#[derive(Debug)]
pub struct Shared {
    /// The mutation's settings.
    pub inject: InjectSettings,
    /// The counters `/metrics` shows.
    pub metrics: Metrics,
    /// The serving certificate.
    pub cert: Arc<ReloadingCert>,
}

/// Binds the webhook's address; the error names it.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    TcpListener::bind(addr).await.map_err(|e| {
        Error::Runtime(format!(
            "cannot listen on {addr} ({e}); free the port or set VAULT_LOGIN_INJECTOR_LISTEN"
        ))
    })
}

/// Serves until `shutdown` completes; connections already open are left to finish.
pub async fn run(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let acceptor = TlsAcceptor::from(Arc::clone(&shared.cert).server_config());
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                tokio::spawn(connection(stream, acceptor.clone(), Arc::clone(&shared)));
            }
            // Out of file descriptors and the like: let the condition pass.
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn connection(stream: TcpStream, acceptor: TlsAcceptor, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return debug!(error = %e, "TLS handshake failed"),
        Err(_) => return debug!("TLS handshake timed out"),
    };
    let service = service_fn(move |req| respond(Arc::clone(&shared), req));
    if let Err(e) = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        debug!(error = %e, "connection ended");
    }
}

async fn respond(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let text = |status: StatusCode, body: String| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r
    };
    Ok(match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n".into()),
        (&Method::GET, "/metrics") => {
            let body = shared.metrics.render(shared.cert.failed_reloads());
            let mut r = text(StatusCode::OK, body);
            r.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            r
        }
        (&Method::POST, "/mutate") => mutate(&shared, req).await,
        (_, "/mutate") => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an AdmissionReview to /mutate\n".into(),
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; the webhook is POST /mutate\n".into(),
        ),
    })
}

async fn mutate(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let reply = |status: StatusCode, content_type: &'static str, body: Vec<u8>| {
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = status;
        r.headers_mut().insert(
            "content-type",
            hyper::header::HeaderValue::from_static(content_type),
        );
        r
    };
    let bad = |message: String| {
        warn!(error = %message, "bad admission request");
        reply(
            StatusCode::BAD_REQUEST,
            "text/plain",
            format!("{message}\n").into_bytes(),
        )
    };
    let json_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|t| t.trim() == "application/json")
        });
    if !json_type {
        shared.metrics.observe("bad_request", Duration::ZERO);
        return bad("the content type is not application/json; send an AdmissionReview".into());
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            shared.metrics.observe("bad_request", Duration::ZERO);
            return bad(format!(
                "cannot read the body ({e}); at most {MAX_BODY} bytes"
            ));
        }
    };
    let started = Instant::now();
    match review::answer(&body, &shared.inject) {
        Ok(answer) => {
            shared.metrics.observe(answer.outcome, started.elapsed());
            let uid = answer
                .body
                .pointer("/response/uid")
                .and_then(|u| u.as_str())
                .unwrap_or("");
            let log =
                |o: &str| info!(outcome = o, detail = %answer.detail, uid, "admission review");
            match answer.outcome {
                "skipped" => {
                    debug!(outcome = "skipped", detail = %answer.detail, uid, "admission review")
                }
                other => log(other),
            }
            let body = serde_json::to_vec(&answer.body).unwrap_or_default();
            reply(StatusCode::OK, "application/json", body)
        }
        Err(message) => {
            shared.metrics.observe("bad_request", started.elapsed());
            bad(message)
        }
    }
}
