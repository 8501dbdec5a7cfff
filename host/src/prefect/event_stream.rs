//! Prefect's event stream: the websocket `/events/out`, filtered to this pool's flow runs
//! that were scheduled or are cancelling, so that a new run is claimed and a cancelled one
//! stopped at once instead of at the next poll. A best effort, never a single point: polling
//! goes on as the safety net, the socket reconnects with back-off and backfills from the last
//! event seen (minus a margin), events seen twice are dropped by id, and a server with no
//! event stream leaves the agent on polling alone, with one warning.
//!
//! The protocol is Prefect's client's: the `prefect` subprotocol, then `{"type": "auth"}`
//! (the API key, or the auth string of a self-hosted server), then `{"type": "filter"}`.

use super::ClientOptions;
use crate::metrics::Metrics;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// Events of ids seen, kept to drop repeats (a backfill after a reconnect repeats some).
const SEEN: usize = 10_000;
/// How far back a reconnect backfills before the last event seen.
const BACKFILL_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What the stream tells about the pool's runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A run was scheduled (in `queue`, by name).
    Scheduled { run: String, queue: Option<String> },
    /// A run is cancelling.
    Cancelling { run: String },
}

/// Whether the stream is connected now (the watch's cancellation poll relaxes while it is).
#[derive(Debug, Default)]
pub struct Connected(AtomicBool);

impl Connected {
    pub fn is_connected(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Subscribes to the pool `pool_id`'s events; they arrive on the receiver until the process
/// ends.
pub fn subscribe(
    options: &ClientOptions,
    pool_id: &str,
    metrics: Arc<Metrics>,
) -> (mpsc::Receiver<PoolEvent>, Arc<Connected>) {
    let (sender, receiver) = mpsc::channel(1024);
    let connected = Arc::new(Connected::default());
    let stream = Stream {
        url: events_url(&options.api_url),
        token: options.key.clone().or_else(|| options.auth_string.clone()),
        tls: tls_config(options),
        headers: options.headers.clone(),
        pool_id: pool_id.to_string(),
        metrics,
        connected: connected.clone(),
        seen: HashSet::new(),
        seen_order: VecDeque::new(),
        since: chrono::Utc::now() - BACKFILL_MARGIN,
    };
    tokio::spawn(stream.run(sender));
    (receiver, connected)
}

/// `http://host/api` → `ws://host/api/events/out`.
fn events_url(api: &str) -> String {
    let api = api.trim_end_matches('/');
    let base = api
        .strip_prefix("https://")
        .map(|rest| format!("wss://{rest}"))
        .or_else(|| {
            api.strip_prefix("http://")
                .map(|rest| format!("ws://{rest}"))
        })
        .unwrap_or_else(|| api.to_string());
    format!("{base}/events/out")
}

struct Stream {
    url: String,
    token: Option<String>,
    tls: Option<Arc<rustls::ClientConfig>>,
    headers: Vec<(String, String)>,
    pool_id: String,
    metrics: Arc<Metrics>,
    connected: Arc<Connected>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
    /// Backfill from here at the next connection.
    since: chrono::DateTime<chrono::Utc>,
}

/// Why a connection ended.
enum Ended {
    /// Try again later.
    Lost(String),
    /// This server has no event stream: polling alone.
    NoStream(String),
    /// Nobody listens any more.
    Closed,
}

impl Stream {
    async fn run(mut self, sender: mpsc::Sender<PoolEvent>) {
        let mut backoff = FIRST_BACKOFF;
        let mut warned = false;
        loop {
            let ended = self.connect_and_follow(&sender).await;
            if self.connected.0.swap(false, Ordering::Relaxed) {
                // It was up: the next loss is a new outage, tried again soon and warned of.
                backoff = FIRST_BACKOFF;
                warned = false;
            }
            self.metrics.event_stream_connected.set(0);
            match ended {
                Ended::Closed => return,
                Ended::NoStream(why) => {
                    tracing::warn!(
                        "the Prefect server has no event stream at {} ({why}): runs are claimed and cancelled by polling alone",
                        self.url
                    );
                    return;
                }
                Ended::Lost(why) => {
                    if !warned {
                        tracing::warn!(
                            "Prefect's event stream at {} is not connected ({why}); polling carries on, and the stream is tried again",
                            self.url
                        );
                        warned = true;
                    } else {
                        tracing::debug!("the event stream was lost: {why}");
                    }
                }
            }
            tokio::time::sleep(backoff.mul_f64(0.5 + fastrand::f64() / 2.0)).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    async fn connect_and_follow(&mut self, sender: &mpsc::Sender<PoolEvent>) -> Ended {
        let mut request = match self.url.as_str().into_client_request() {
            Ok(request) => request,
            Err(e) => return Ended::NoStream(e.to_string()),
        };
        let headers = request.headers_mut();
        headers.insert(
            "Sec-WebSocket-Protocol",
            "prefect".parse().expect("a valid header value"),
        );
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                name.parse::<tokio_tungstenite::tungstenite::http::HeaderName>(),
                value.parse(),
            ) {
                headers.insert(name, value);
            }
        }
        let connector = self.tls.clone().map(tokio_tungstenite::Connector::Rustls);
        let connected = tokio::time::timeout(
            Duration::from_secs(30),
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector),
        )
        .await;
        let (mut socket, _) = match connected {
            Ok(Ok(socket)) => socket,
            Ok(Err(tokio_tungstenite::tungstenite::Error::Http(response)))
                if matches!(response.status().as_u16(), 404 | 405) =>
            {
                return Ended::NoStream(format!("it answered {}", response.status()));
            }
            Ok(Err(e)) => return Ended::Lost(e.to_string()),
            Err(_) => return Ended::Lost("no answer in 30 s".into()),
        };
        let auth = json!({"type": "auth", "token": self.token});
        if let Err(e) = socket.send(Message::text(auth.to_string())).await {
            return Ended::Lost(e.to_string());
        }
        match next_json(&mut socket).await {
            Some(answer) if answer["type"] == "auth_success" => {}
            Some(answer) => {
                return Ended::NoStream(format!(
                    "it refused the credentials: {}",
                    answer["reason"].as_str().unwrap_or("no reason given")
                ));
            }
            None => return Ended::Lost("closed during authentication".into()),
        }
        let now = chrono::Utc::now();
        let filter = json!({"type": "filter", "filter": {
            "occurred": {"since": self.since.to_rfc3339(), "until": (now + chrono::TimeDelta::days(365)).to_rfc3339()},
            "event": {"name": ["prefect.flow-run.Scheduled", "prefect.flow-run.Cancelling"]},
            "any_resource": {"id": [format!("prefect.work-pool.{}", self.pool_id)]},
        }});
        if let Err(e) = socket.send(Message::text(filter.to_string())).await {
            return Ended::Lost(e.to_string());
        }
        self.connected.0.store(true, Ordering::Relaxed);
        self.metrics.event_stream_connected.set(1);
        tracing::debug!("following Prefect's event stream at {}", self.url);
        loop {
            let Some(message) = next_json(&mut socket).await else {
                return Ended::Lost("the server closed the stream".into());
            };
            let Some(event) = self.read(&message["event"]) else {
                continue;
            };
            if sender.send(event).await.is_err() {
                return Ended::Closed;
            }
        }
    }

    /// The pool event an event of the stream is, unless it was seen before.
    fn read(&mut self, event: &Value) -> Option<PoolEvent> {
        let id = event["id"].as_str()?.to_string();
        if !self.seen.insert(id.clone()) {
            return None;
        }
        self.seen_order.push_back(id);
        if self.seen_order.len() > SEEN
            && let Some(oldest) = self.seen_order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        if let Some(occurred) = event["occurred"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            self.since = self.since.max(occurred.to_utc() - BACKFILL_MARGIN);
        }
        let run = event["resource"]["prefect.resource.id"]
            .as_str()?
            .strip_prefix("prefect.flow-run.")?
            .to_string();
        match event["event"].as_str()? {
            "prefect.flow-run.Scheduled" => {
                let queue = event["related"].as_array().and_then(|related| {
                    related
                        .iter()
                        .find(|r| r["prefect.resource.role"] == "work-queue")
                        .and_then(|r| r["prefect.resource.name"].as_str())
                        .map(str::to_string)
                });
                Some(PoolEvent::Scheduled { run, queue })
            }
            "prefect.flow-run.Cancelling" => Some(PoolEvent::Cancelling { run }),
            _ => None,
        }
    }
}

/// The next JSON text message; `None` when the socket ends.
async fn next_json<S>(socket: &mut S) -> Option<Value>
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// TLS for `wss://`: the system's roots and the configured CA, or no checking at all when
/// asked (as the HTTP client does).
fn tls_config(options: &ClientOptions) -> Option<Arc<rustls::ClientConfig>> {
    if !options.api_url.starts_with("https://") {
        return None;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?;
    if options.insecure_skip_verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
            .with_no_client_auth();
        return Some(Arc::new(config));
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &options.ca_file
        && let Ok(pem) = std::fs::read(path)
    {
        for certificate in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            let _ = roots.add(certificate);
        }
    }
    Some(Arc::new(
        builder.with_root_certificates(roots).with_no_client_auth(),
    ))
}

/// `PREFECT_API_TLS_INSECURE_SKIP_VERIFY`: any certificate is taken.
#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        certificate: &rustls::pki_types::CertificateDer<'_>,
        signature: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            certificate,
            signature,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream() -> Stream {
        Stream {
            url: events_url("http://prefect:4200/api/"),
            token: None,
            tls: None,
            headers: Vec::new(),
            pool_id: "pool".into(),
            metrics: Arc::new(Metrics::new()),
            connected: Arc::default(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            since: "2026-01-01T00:00:00Z".parse().unwrap(),
        }
    }

    fn event(id: &str, name: &str, occurred: &str) -> Value {
        json!({
            "id": id, "event": name, "occurred": occurred,
            "resource": {"prefect.resource.id": "prefect.flow-run.r1"},
            "related": [{"prefect.resource.id": "prefect.work-queue.q", "prefect.resource.role": "work-queue", "prefect.resource.name": "gpu"}],
        })
    }

    #[test]
    fn events_become_pool_events_once_and_move_the_backfill_on() {
        let mut stream = stream();
        assert_eq!(stream.url, "ws://prefect:4200/api/events/out");
        let scheduled = event("e1", "prefect.flow-run.Scheduled", "2026-01-01T01:00:00Z");
        assert_eq!(
            stream.read(&scheduled),
            Some(PoolEvent::Scheduled {
                run: "r1".into(),
                queue: Some("gpu".into())
            })
        );
        assert_eq!(stream.read(&scheduled), None, "a repeat is dropped");
        assert_eq!(stream.since.to_rfc3339(), "2026-01-01T00:59:00+00:00");
        let cancelling = event("e2", "prefect.flow-run.Cancelling", "2026-01-01T00:30:00Z");
        assert_eq!(
            stream.read(&cancelling),
            Some(PoolEvent::Cancelling { run: "r1".into() })
        );
        assert_eq!(
            stream.since.to_rfc3339(),
            "2026-01-01T00:59:00+00:00",
            "an older event does not move it back"
        );
        assert_eq!(
            events_url("https://api.prefect.cloud/api/accounts/a/workspaces/w"),
            "wss://api.prefect.cloud/api/accounts/a/workspaces/w/events/out"
        );
    }
}
