//! An HTTP proxy in front of a real server (the Prefect API), for tests and benchmarks: it
//! counts requests by method and path (ids folded: `GET /api/flow_runs/{id}`), slows the ones
//! a rule names, and can refuse everything (an outage) without stopping the server behind it.
//! Websockets (Prefect's event stream) are passed through and counted as one request each.

use axum::body::Bytes;
use axum::extract::ws::{Message as ServerMessage, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message as ClientMessage;

/// Requests matching `method` (any when `None`) and containing `path` wait `delay` first.
#[derive(Debug, Clone)]
pub struct Slow {
    pub method: Option<Method>,
    pub path: String,
    pub delay: Duration,
}

#[derive(Default)]
struct Shared {
    upstream: String,
    /// Values seen of `x-…` headers, by name.
    custom_headers: Mutex<BTreeMap<String, String>>,
    counts: Mutex<BTreeMap<String, u64>>,
    /// Answers by HTTP status.
    statuses: Mutex<BTreeMap<u16, u64>>,
    slow: Mutex<Vec<Slow>>,
    down: AtomicBool,
    http: reqwest::Client,
}

/// A running proxy; it stops with the runtime it was started on.
pub struct Proxy {
    pub address: SocketAddr,
    shared: Arc<Shared>,
    tls: bool,
}

fn app(upstream: &str) -> (Arc<Shared>, axum::Router) {
    let shared = Arc::new(Shared {
        upstream: upstream.trim_end_matches('/').to_string(),
        ..Shared::default()
    });
    let app = axum::Router::new()
        .fallback(forward)
        .with_state(shared.clone());
    (shared, app)
}

impl Proxy {
    /// A proxy on a free loopback port to `upstream` (`http://host:port`).
    pub async fn start(upstream: &str) -> Proxy {
        let (shared, app) = app(upstream);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy {
            address,
            shared,
            tls: false,
        }
    }

    /// The same over TLS, with a certificate for `localhost` from a certificate authority
    /// made here; the authority's PEM is returned for clients to trust.
    pub async fn start_tls(upstream: &str) -> (Proxy, String) {
        let (shared, app) = app(upstream);
        let authority = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "agent tests CA");
        let ca = ca_params.self_signed(&authority).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, authority);
        let key = rcgen::KeyPair::generate().unwrap();
        let server = rcgen::CertificateParams::new(vec!["localhost".into()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![server.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |request| {
                        tower::ServiceExt::oneshot(app.clone(), request)
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        let proxy = Proxy {
            address,
            shared,
            tls: true,
        };
        (proxy, ca.pem())
    }

    /// The proxy's URL for `path` of the upstream (`/api`).
    pub fn url(&self, path: &str) -> String {
        if self.tls {
            format!("https://localhost:{}{path}", self.address.port())
        } else {
            format!("http://{}{path}", self.address)
        }
    }

    /// The last value seen of each `x-…` header.
    pub fn custom_headers(&self) -> BTreeMap<String, String> {
        self.shared.custom_headers.lock().unwrap().clone()
    }

    pub fn slow_down(&self, rule: Slow) {
        self.shared.slow.lock().unwrap().push(rule);
    }

    pub fn speed_up(&self) {
        self.shared.slow.lock().unwrap().clear();
    }

    /// While down, every request is answered 503, as a server that is restarting.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Requests so far, by `METHOD /path` with ids folded.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        self.shared.counts.lock().unwrap().clone()
    }

    /// The server's answers so far, by HTTP status (`503`: a database that could not keep up).
    pub fn statuses(&self) -> BTreeMap<u16, u64> {
        self.shared.statuses.lock().unwrap().clone()
    }

    pub fn reset_counts(&self) {
        self.shared.statuses.lock().unwrap().clear();
        self.shared.counts.lock().unwrap().clear();
    }

    /// All requests so far.
    pub fn total(&self) -> u64 {
        self.counts().values().sum()
    }
}

/// `/api/flow_runs/5f3c…/set_state` → `/api/flow_runs/{id}/set_state`.
pub fn fold_ids(path: &str) -> String {
    path.split('/')
        .map(|segment| {
            let hex = segment.chars().filter(|c| c.is_ascii_hexdigit()).count();
            if segment.len() >= 32 && hex >= 30 {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let query = request
        .uri()
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    *shared
        .counts
        .lock()
        .unwrap()
        .entry(format!("{method} {}", fold_ids(&path)))
        .or_default() += 1;
    for (name, value) in request.headers() {
        if name.as_str().starts_with("x-") {
            shared.custom_headers.lock().unwrap().insert(
                name.to_string(),
                value.to_str().unwrap_or_default().to_string(),
            );
        }
    }
    if shared.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, "proxy: the server is down").into_response();
    }
    let delay = shared
        .slow
        .lock()
        .unwrap()
        .iter()
        .find(|rule| rule.method.as_ref().is_none_or(|m| *m == method) && path.contains(&rule.path))
        .map(|rule| rule.delay);
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let (mut parts, body) = request.into_parts();
    if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        let target = format!("{}{path}{query}", shared.upstream.replacen("http", "ws", 1));
        // The subprotocols the client asks for (Prefect's is `prefect`) are asked of the
        // server and granted to the client.
        let protocols: Vec<String> = parts
            .headers
            .get_all("sec-websocket-protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect();
        return upgrade
            .protocols(protocols.clone())
            .on_upgrade(move |socket| bridge(socket, target, protocols));
    }
    let body = match axum::body::to_bytes(body, 64 << 20).await {
        Ok(body) => body,
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let mut outgoing = shared
        .http
        .request(method, format!("{}{path}{query}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if name != "host" && name != "content-length" {
            outgoing = outgoing.header(name, value);
        }
    }
    match outgoing.send().await {
        Ok(answer) => {
            let status = answer.status();
            *shared
                .statuses
                .lock()
                .unwrap()
                .entry(status.as_u16())
                .or_default() += 1;
            let mut headers = HeaderMap::new();
            for (name, value) in answer.headers() {
                if name != "content-length" && name != "transfer-encoding" {
                    headers.insert(name, value.clone());
                }
            }
            let body: Bytes = answer.bytes().await.unwrap_or_default();
            (status, headers, body).into_response()
        }
        Err(_) => (StatusCode::BAD_GATEWAY, "proxy: the server did not answer").into_response(),
    }
}

/// Passes messages both ways between the client's socket and the server's.
async fn bridge(client: axum::extract::ws::WebSocket, target: String, protocols: Vec<String>) {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let Ok(mut request) = target.as_str().into_client_request() else {
        return;
    };
    if !protocols.is_empty()
        && let Ok(value) = protocols.join(", ").parse()
    {
        request
            .headers_mut()
            .insert("sec-websocket-protocol", value);
    }
    let Ok((server, _)) = tokio_tungstenite::connect_async(request).await else {
        return;
    };
    let (mut to_server, mut from_server) = server.split();
    let (mut to_client, mut from_client) = client.split();
    let upstream = async {
        while let Some(Ok(message)) = from_client.next().await {
            let message = match message {
                ServerMessage::Text(text) => ClientMessage::Text(text.as_str().into()),
                ServerMessage::Binary(bytes) => ClientMessage::Binary(bytes),
                ServerMessage::Ping(bytes) => ClientMessage::Ping(bytes),
                ServerMessage::Pong(bytes) => ClientMessage::Pong(bytes),
                ServerMessage::Close(_) => break,
            };
            if to_server.send(message).await.is_err() {
                break;
            }
        }
    };
    let downstream = async {
        while let Some(Ok(message)) = from_server.next().await {
            let message = match message {
                ClientMessage::Text(text) => ServerMessage::Text(text.as_str().into()),
                ClientMessage::Binary(bytes) => ServerMessage::Binary(bytes),
                ClientMessage::Ping(bytes) => ServerMessage::Ping(bytes),
                ClientMessage::Pong(bytes) => ServerMessage::Pong(bytes),
                ClientMessage::Close(_) | ClientMessage::Frame(_) => break,
            };
            if to_client.send(message).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

#[cfg(test)]
mod tests {
    use super::fold_ids;

    #[test]
    fn ids_fold_so_that_requests_count_by_kind() {
        assert_eq!(
            fold_ids("/api/flow_runs/5f3c2a9e-2b1d-4c3e-9f8a-0123456789ab/set_state"),
            "/api/flow_runs/{id}/set_state"
        );
        assert_eq!(
            fold_ids("/api/work_pools/bench/get_scheduled_flow_runs"),
            "/api/work_pools/bench/get_scheduled_flow_runs"
        );
    }
}
