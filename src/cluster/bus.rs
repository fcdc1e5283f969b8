//! One connection to the NATS server and the JetStream pieces both roles use: the work
//! stream, the results stream, the heartbeat bucket and the artifact object store. Each is
//! created when missing with the same settings from either side, so start order is free.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use futures::StreamExt;

use super::ClusterError;
use super::protocol::{Advert, BOXES_BUCKET, OBJECT_BUCKET, RESULT_STREAM, RESULT_SUBJECTS, WORK_STREAM, inbox_prefix};
use crate::config::ClusterConfig;

/// A connected cluster member's handles.
#[derive(Clone)]
pub struct Bus {
    /// The core client (progress, cancel).
    pub client: async_nats::Client,
    /// JetStream context.
    pub js: jetstream::Context,
    /// Stages waiting for or held by workers.
    pub work: stream::Stream,
    /// Results waiting for the head.
    pub results: stream::Stream,
    /// Worker heartbeats.
    pub boxes: kv::Store,
    /// Artifacts in transit.
    pub objects: object_store::ObjectStore,
    /// This box's name (empty when it has none: a status reader on an odd hostname).
    pub host: String,
}

impl Bus {
    /// Connects with the configured credentials and TLS, and makes sure every stream and
    /// bucket exists. A server that does not answer yet is retried for
    /// [`FIRST_CONNECT_PATIENCE`]; refused credentials or failed TLS end at once.
    pub async fn connect(config: &ClusterConfig, client_name: &str) -> Result<Self, ClusterError> {
        config.check()?;
        let client = first_connection(config, client_name).await?;
        let js = jetstream::new(client.clone());
        let work = js
            .get_or_create_stream(stream::Config {
                name: WORK_STREAM.into(),
                subjects: vec!["reelbox.work.>".into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::js("work stream", e))?;
        let results_config = stream::Config {
            name: RESULT_STREAM.into(),
            subjects: vec![RESULT_SUBJECTS.into()],
            retention: stream::RetentionPolicy::WorkQueue,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        };
        let mut results =
            js.get_or_create_stream(results_config.clone()).await.map_err(|e| ClusterError::js("results stream", e))?;
        if results.cached_info().config.subjects != results_config.subjects {
            // A stream made before results went per box (`reelbox.result`): widen it.
            js.update_stream(results_config).await.map_err(|e| ClusterError::js("results stream", e))?;
            results = js.get_stream(RESULT_STREAM).await.map_err(|e| ClusterError::js("results stream", e))?;
        }
        // The bucket's stream is made here, as `create_key_value` would make it: that call
        // first asks for account info, whose answer a 2.9 server words differently.
        js.get_or_create_stream(stream::Config {
            name: format!("KV_{BOXES_BUCKET}"),
            subjects: vec![format!("$KV.{BOXES_BUCKET}.>")],
            max_messages_per_subject: 1,
            max_age: Duration::from_secs(config.heartbeat_ttl_s),
            // File, not memory: a memory stream does not survive a server restart, and
            // heartbeats would then have nowhere to go.
            storage: stream::StorageType::File,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            ..Default::default()
        })
        .await
        .map_err(|e| ClusterError::js("heartbeat bucket", e))?;
        let boxes = js.get_key_value(BOXES_BUCKET).await.map_err(|e| ClusterError::js("heartbeat bucket", e))?;
        let objects = match js.get_object_store(OBJECT_BUCKET).await {
            Ok(o) => o,
            Err(_) => js
                .create_object_store(object_store::Config {
                    bucket: OBJECT_BUCKET.into(),
                    storage: stream::StorageType::File,
                    // A day: objects of a head that never came back do not stay forever.
                    max_age: Duration::from_secs(24 * 3600),
                    ..Default::default()
                })
                .await
                .map_err(|e| ClusterError::js("artifact object store", e))?,
        };
        let host = super::box_name(config).map(|h| h.to_string()).unwrap_or_default();
        Ok(Self { client, js, work, results, boxes, objects, host })
    }
}

impl Bus {
    /// Every box's latest heartbeat left in the bucket (expired ones are gone), sorted by
    /// name: one stream-info request for the keys, then a direct get per box. Not the KV
    /// `keys()` listing: its consumer ends only on a delivery with nothing pending, and a
    /// heartbeat expiring between the consumer's count and its delivery left that listing
    /// (and the head's view of the boxes) waiting forever.
    pub async fn adverts(&self) -> Result<Vec<Advert>, ClusterError> {
        let prefix = format!("$KV.{BOXES_BUCKET}.");
        let mut subjects = self
            .boxes
            .stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| ClusterError::js("heartbeat bucket", e))?;
        let mut keys = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| ClusterError::js("heartbeat bucket", e))?;
            keys.extend(subject.strip_prefix(&prefix).map(str::to_owned));
        }
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            // None: a box that left (delete marker) or whose entry expired just now.
            let Some(body) = self.boxes.get(&key).await.map_err(|e| ClusterError::js("heartbeat", e))? else {
                continue;
            };
            match serde_json::from_slice::<Advert>(&body) {
                Ok(a) => out.push(a),
                Err(e) => tracing::warn!(box = %key, "unreadable heartbeat: {e}"),
            }
        }
        out.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(out)
    }
}

/// How long the first connection waits for a server that is not up yet (boxes may start
/// before NATS); later drops are reconnected forever.
pub const FIRST_CONNECT_PATIENCE: Duration = Duration::from_secs(60);

/// The first connection, tried in the foreground so that refused credentials and TLS
/// failures come back as errors naming the setting, not as an endless background retry.
async fn first_connection(config: &ClusterConfig, client_name: &str) -> Result<async_nats::Client, ClusterError> {
    use async_nats::ConnectErrorKind as Kind;
    let url = config.nats_url.clone();
    let t0 = std::time::Instant::now();
    let mut said = false;
    loop {
        let err = match options(config, client_name).await?.connect(url.as_str()).await {
            Ok(client) => return Ok(client),
            Err(e) => e,
        };
        match err.kind() {
            Kind::Authentication | Kind::AuthorizationViolation => {
                return Err(ClusterError::Refused { url, credential: credential(config), source: err });
            }
            Kind::Tls => return Err(ClusterError::Tls { url, hint: tls_hint(config), source: err }),
            // A certificate the handshake rejects comes back as an I/O error; it will not heal.
            Kind::Io if rejected_by_tls(&err) => {
                return Err(ClusterError::Tls { url, hint: tls_hint(config), source: err });
            }
            Kind::Io | Kind::TimedOut | Kind::Dns if t0.elapsed() < FIRST_CONNECT_PATIENCE => {
                if !said {
                    tracing::warn!("NATS at {url} does not answer yet ({err}); retrying");
                    said = true;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            _ => return Err(ClusterError::Connect { url, source: err }),
        }
    }
}

/// Whether a connect error is a failed TLS handshake (rustls's error inside an I/O error).
fn rejected_by_tls(err: &async_nats::ConnectError) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = next {
        if e.is::<async_nats::rustls::Error>() {
            return true;
        }
        // io::Error's `source` skips the error it wraps; look at that one too.
        let inner = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref());
        if inner.is_some_and(|i| i.is::<async_nats::rustls::Error>()) {
            return true;
        }
        next = e.source();
    }
    false
}

/// The credential this box offers, by its setting, for a refusal's message.
fn credential(config: &ClusterConfig) -> String {
    match (&config.token, &config.nkey, &config.creds) {
        (Some(_), _, _) => "the token (cluster.token)".into(),
        (None, Some(_), _) => "the nkey (cluster.nkey)".into(),
        (None, None, Some(path)) => format!("the credentials file {} (cluster.creds, --creds)", path.display()),
        (None, None, None) => {
            "a connection without credentials: set cluster.token, cluster.nkey or cluster.creds (--creds)".into()
        }
    }
}

/// Where to look when TLS fails.
fn tls_hint(config: &ClusterConfig) -> String {
    match &config.tls_ca {
        Some(ca) => format!("cluster.tls_ca = {}: is it the CA that signed the server's certificate?", ca.display()),
        None => "the server wants TLS: set cluster.tls_ca to the CA that signed its certificate".into(),
    }
}

/// Connection options from `[cluster]`: token or creds file, TLS, reconnect forever.
async fn options(config: &ClusterConfig, client_name: &str) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(token) = &config.token {
        o = o.token(token.clone());
    }
    if let Some(seed) = &config.nkey {
        o = o.nkey(seed.clone());
    }
    if let Ok(host) = super::box_name(config) {
        o = o.custom_inbox_prefix(inbox_prefix(host.as_str()));
    }
    if let Some(creds) = &config.creds {
        o = o.credentials_file(creds).await.map_err(|source| ClusterError::File { path: creds.clone(), source })?;
    }
    if let Some(ca) = &config.tls_ca {
        if !ca.is_file() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
            return Err(ClusterError::File { path: ca.clone(), source });
        }
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(o)
}
