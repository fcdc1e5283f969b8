//! One connection to the NATS server and the JetStream pieces both roles use: the work
//! stream, the results stream, the heartbeat bucket and one artifact object bucket per
//! box. Only the head makes or updates them; a box binds what the head made and waits,
//! saying so, while something is missing or from an older reelbox. So a box's NATS user
//! needs no right to make or change a stream (`reelbox cluster nats-config`), and the head
//! alone decides their settings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use futures::StreamExt;

use super::ClusterError;
use super::protocol::{
    Advert, BOXES_BUCKET, RESULT_STREAM, RESULT_SUBJECTS, SEEN_BUCKET, WORK_STREAM, WORK_SUBJECTS, inbox_prefix,
    object_bucket,
};
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
    /// Boxes' artifact buckets bound so far, by box name.
    buckets: Arc<Mutex<HashMap<String, object_store::ObjectStore>>>,
    /// Whether this member makes what is missing (the head) or only binds (a box).
    makes: bool,
    /// Bytes of artifacts a work or result message may carry inline (`inline_kib`).
    pub inline_bytes: u64,
    /// This box's name (empty when it has none: a status reader on an odd hostname).
    pub host: String,
    /// Whether the server answers now (the connection's events; the head's reads add to it).
    pub reach: Arc<super::reach::Reach>,
}

impl Bus {
    /// The head's connection: connects with the configured credentials and TLS, and makes
    /// every stream and the heartbeat bucket, or updates one an older reelbox made. A
    /// server that does not answer yet is retried for [`FIRST_CONNECT_PATIENCE`]; refused
    /// credentials or failed TLS end at once.
    pub async fn connect(config: &ClusterConfig, client_name: &str) -> Result<Self, ClusterError> {
        config.check()?;
        let meanwhile = "no stage is sent to a worker box meanwhile (stages wait, no attempt is counted)";
        let (client, wrong_user, reach) = first_connection(config, client_name, meanwhile).await?;
        let js = jetstream::new(client.clone());
        let mut made = Vec::new();
        for wanted in streams(config) {
            let what = wanted.name.clone();
            let js_err = |e| match wrong_user.get() {
                Some(said) => ClusterError::WrongUser(said.clone()),
                None => ClusterError::JetStream { what: "make a stream", source: format!("{what}: {e}").into() },
            };
            let mut s = js.get_or_create_stream(wanted.clone()).await.map_err(|e| js_err(e.to_string()))?;
            if s.cached_info().config.subjects != wanted.subjects {
                // Made by an older reelbox (results were one subject, `reelbox.result`).
                tracing::info!(stream = %what, "updating a stream an older reelbox made");
                js.update_stream(wanted).await.map_err(|e| js_err(e.to_string()))?;
                s = js.get_stream(&what).await.map_err(|e| js_err(e.to_string()))?;
            }
            made.push(s);
        }
        Self::bound(client, js, made, config, true, reach).await
    }

    /// A box's connection: connects as [`Bus::connect`] does, then binds the streams the
    /// head made. While one is missing or from an older reelbox it says so (once per
    /// change, naming the head) and tries again, never making or changing one itself: a
    /// box may start before the head, also on a server with per-box users.
    pub async fn join(config: &ClusterConfig, client_name: &str) -> Result<Self, ClusterError> {
        config.check()?;
        let meanwhile = "results and heartbeats wait for it";
        let (client, wrong_user, reach) = first_connection(config, client_name, meanwhile).await?;
        let js = jetstream::new(client.clone());
        let mut said = String::new();
        loop {
            let mut found = Vec::new();
            let mut lacking = Vec::new();
            for wanted in streams(config) {
                // The server says at once when this user may not use this box's inbox (another
                // box's seed); the lookup itself would only time out.
                let lookup = tokio::select! {
                    found = js.get_stream(&wanted.name) => found,
                    said = said_wrong_user(&wrong_user) => return Err(ClusterError::WrongUser(said)),
                };
                match lookup {
                    Ok(s) if s.cached_info().config.subjects == wanted.subjects => found.push(s),
                    Ok(s) => lacking.push(format!(
                        "{} is from an older reelbox (subjects {:?})",
                        wanted.name,
                        s.cached_info().config.subjects
                    )),
                    Err(e) if is_not_found(&e) => lacking.push(format!("{} does not exist yet", wanted.name)),
                    Err(e) => {
                        let what = "bind a stream";
                        return Err(ClusterError::JetStream { what, source: format!("{}: {e}", wanted.name).into() });
                    }
                }
            }
            if lacking.is_empty() {
                return Self::bound(client, js, found, config, false, reach).await;
            }
            let now = lacking.join("; ");
            if now != said {
                tracing::warn!(
                    "waiting for the head: {now}. The head (`reelbox serve` with [cluster] nats_url) makes and \
                     updates the cluster's streams when it connects; boxes only bind them"
                );
                said = now;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The handles from the streams in [`streams`]' order.
    async fn bound(
        client: async_nats::Client,
        js: jetstream::Context,
        streams: Vec<stream::Stream>,
        config: &ClusterConfig,
        makes: bool,
        reach: Arc<super::reach::Reach>,
    ) -> Result<Self, ClusterError> {
        let mut it = streams.into_iter();
        let (Some(work), Some(results)) = (it.next(), it.next()) else {
            return Err(ClusterError::js("bind streams", "the work and results streams are missing"));
        };
        let boxes = js.get_key_value(BOXES_BUCKET).await.map_err(|e| ClusterError::js("heartbeat bucket", e))?;
        let host = super::box_name(config).map(|h| h.to_string()).unwrap_or_default();
        let buckets = Arc::new(Mutex::new(HashMap::new()));
        let inline_bytes = config.inline_kib * 1024;
        Ok(Self { client, js, work, results, boxes, buckets, makes, inline_bytes, host, reach })
    }

    /// The artifact bucket of box `host`: its stages' inputs (the head writes them) and
    /// outputs (the box writes them) in transit, readable by no other box. The head makes
    /// it on first use, before it sends the box a stage; a box binds it.
    pub async fn bucket(&self, host: &str) -> Result<object_store::ObjectStore, ClusterError> {
        if let Some(b) = self.buckets.lock().unwrap_or_else(|p| p.into_inner()).get(host) {
            return Ok(b.clone());
        }
        let name = object_bucket(host);
        let store = match self.js.get_object_store(&name).await {
            Ok(s) => s,
            Err(e) if !self.makes => return Err(ClusterError::js("artifact bucket (the head makes it)", e)),
            Err(_) => self
                .js
                .create_object_store(object_store::Config {
                    bucket: name,
                    storage: stream::StorageType::File,
                    // A day: objects of a head that never came back do not stay forever.
                    max_age: Duration::from_secs(24 * 3600),
                    ..Default::default()
                })
                .await
                .map_err(|e| ClusterError::js("artifact bucket", e))?,
        };
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).insert(host.to_string(), store.clone());
        Ok(store)
    }
}

impl Bus {
    /// Drops box `host`'s bucket handle (the head deleted the bucket): the next use binds
    /// or makes it again.
    pub fn forget_bucket(&self, host: &str) {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).remove(host);
    }
}

/// Whether a stream lookup failed because the stream does not exist.
pub(super) fn is_not_found(e: &jetstream::context::GetStreamError) -> bool {
    use jetstream::context::GetStreamErrorKind;
    matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND)
}

/// The streams the head makes, in this order: work, results, the heartbeat bucket's.
fn streams(config: &ClusterConfig) -> [stream::Config; 3] {
    let queue = |name: &str, subjects: &str| stream::Config {
        name: name.into(),
        subjects: vec![subjects.into()],
        retention: stream::RetentionPolicy::WorkQueue,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    };
    [
        queue(WORK_STREAM, WORK_SUBJECTS),
        queue(RESULT_STREAM, RESULT_SUBJECTS),
        kv_stream(BOXES_BUCKET, Duration::from_secs(config.heartbeat_ttl_s)),
    ]
}

/// A KV bucket's stream (one value per key, kept `max_age`; zero: for good) as
/// `create_key_value` would make it: that call first asks for account info, whose answer a
/// 2.9 server words differently.
fn kv_stream(bucket: &str, max_age: Duration) -> stream::Config {
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        max_age,
        // File, not memory: a memory stream does not survive a server restart (heartbeats
        // would then have nowhere to go, last-seen times would be lost).
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        ..Default::default()
    }
}

impl Bus {
    /// The head's record of when it last saw each box ([`SEEN_BUCKET`], no TTL), made on
    /// first use. Not among the streams every box binds: boxes never touch it.
    pub async fn seen_bucket(&self) -> Result<kv::Store, ClusterError> {
        let what = "last-seen bucket";
        self.js
            .get_or_create_stream(kv_stream(SEEN_BUCKET, Duration::ZERO))
            .await
            .map_err(|e| ClusterError::js(what, e))?;
        self.js.get_key_value(SEEN_BUCKET).await.map_err(|e| ClusterError::js(what, e))
    }
}

/// The keys in a KV bucket now, from one stream-info request. Not the KV `keys()` listing:
/// its consumer ends only on a delivery with nothing pending, and an entry expiring between
/// the consumer's count and its delivery left that listing waiting forever.
pub async fn kv_keys(store: &kv::Store) -> Result<Vec<String>, ClusterError> {
    let prefix = format!("$KV.{}.", store.name);
    let what = "KV bucket keys";
    let mut subjects =
        store.stream.info_with_subjects(format!("{prefix}>")).await.map_err(|e| ClusterError::js(what, e))?;
    let mut keys = Vec::new();
    while let Some(s) = subjects.next().await {
        let (subject, _) = s.map_err(|e| ClusterError::js(what, e))?;
        keys.extend(subject.strip_prefix(&prefix).map(str::to_owned));
    }
    Ok(keys)
}

impl Bus {
    /// Every box's latest heartbeat left in the bucket (expired ones are gone), sorted by
    /// name: the keys from [`kv_keys`] (whose listing cannot hang on a heartbeat expiring
    /// meanwhile, and the head's view of the boxes with it), then a direct get per box.
    pub async fn adverts(&self) -> Result<Vec<Advert>, ClusterError> {
        let keys = kv_keys(&self.boxes).await?;
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

/// How long a connection attempt may wait for the server's greeting (NATS sends its INFO at
/// once; only something that is not a NATS server stays silent this long).
const GREETING_PATIENCE: Duration = Duration::from_secs(10);

/// The first connection, tried in the foreground so that refused credentials and TLS
/// failures come back as errors naming the setting, not as an endless background retry.
async fn first_connection(
    config: &ClusterConfig,
    client_name: &str,
    meanwhile: &'static str,
) -> Result<(async_nats::Client, WrongUser, Arc<super::reach::Reach>), ClusterError> {
    use async_nats::ConnectErrorKind as Kind;
    let wrong_user = WrongUser::default();
    let reach = Arc::new(super::reach::Reach::new(&config.nats_url, meanwhile));
    let url = config.nats_url.clone();
    let t0 = std::time::Instant::now();
    let mut said = false;
    loop {
        // The client's own timeout covers the TCP connect only: a port that accepts and says
        // nothing (an HTTP server) kept a box waiting for the server's INFO forever, silently.
        let connect = options(config, client_name, &wrong_user, &reach).await?.connect(url.as_str());
        let err = match tokio::time::timeout(GREETING_PATIENCE, connect).await {
            Ok(Ok(client)) => return Ok((client, wrong_user, reach)),
            Ok(Err(e)) => e,
            Err(_) => return Err(ClusterError::NotNats { url, secs: GREETING_PATIENCE.as_secs() }),
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

/// What the server said when it would not let this connection's user subscribe to this
/// box's own reply inbox, once it did: every request (binding a stream) then goes unanswered.
type WrongUser = Arc<std::sync::OnceLock<String>>;

/// What the server said once it refused this user this box's inbox (never returns before).
async fn said_wrong_user(wrong_user: &WrongUser) -> String {
    loop {
        if let Some(said) = wrong_user.get() {
            return said.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Says which credential a server refused after the connection was first made, and the
/// likely cause, once per run of refusals: the client dials again forever, and async-nats
/// alone logs only "authorization violation" at each try. Also notes (in `wrong_user`) a
/// user that may not use this box's inbox: a seed made for another box. Tells `reach`
/// when the connection goes and comes back.
fn refused_later(
    config: &ClusterConfig,
    wrong_user: &WrongUser,
    reach: &Arc<super::reach::Reach>,
) -> impl Fn(async_nats::Event) -> std::future::Ready<()> + Send + Sync + use<> {
    use async_nats::{ClientError, ConnectErrorKind, Event, ServerError};
    let (url, credential) = (config.nats_url.clone(), credential(config));
    let said = std::sync::atomic::AtomicBool::new(false);
    let host = super::box_name(config).map(|h| h.to_string()).unwrap_or_default();
    let (inbox, wrong_user, reach) = (inbox_prefix(&host), wrong_user.clone(), reach.clone());
    move |event| {
        if let Event::ServerError(ServerError::Other(e)) = &event
            && e.contains("Permissions Violation for Subscription to")
            && e.contains(&format!("\"{inbox}."))
        {
            let why = format!(
                "NATS at {url} does not let {credential} use box {host}'s own inbox ({inbox}.>): that seed is \
                 another box's. Put the `nkey = ...` line `reelbox cluster nats-config` printed for {host:?} under \
                 this box's [cluster], or set [cluster] name (--name) to the box this seed was made for"
            );
            if wrong_user.set(why.clone()).is_ok() {
                tracing::error!("{why}");
            }
        }
        let refused = match &event {
            Event::ServerError(ServerError::AuthorizationViolation) => true,
            Event::ClientError(ClientError::Other(kind)) => {
                *kind == ConnectErrorKind::AuthorizationViolation.to_string()
                    || *kind == ConnectErrorKind::Authentication.to_string()
            }
            Event::Connected => {
                said.store(false, std::sync::atomic::Ordering::Relaxed);
                reach.answered();
                false
            }
            Event::Disconnected => {
                reach.unanswered();
                false
            }
            _ => false,
        };
        if refused && !said.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::error!(
                "NATS at {url} no longer takes {credential}: was this box taken out of the server's config \
                 (`reelbox cluster nats-config --remove`)? It keeps trying; stop it, or give it a seed again \
                 (`nats-config --boxes NAME --add-to FILE`)"
            );
        }
        std::future::ready(())
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
async fn options(
    config: &ClusterConfig,
    client_name: &str,
    wrong_user: &WrongUser,
    reach: &Arc<super::reach::Reach>,
) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        // A PING per heartbeat TTL (not the client's 60 s): after three unanswered the client
        // drops a connection whose network went away and dials again. Without it a box cut
        // off for 30 s waited on TCP's retransmission backoff and came back ~25 s after its
        // network did (the cut test, once results carried their bytes inline).
        .ping_interval(Duration::from_secs(config.heartbeat_ttl_s.max(1)))
        .max_reconnects(None)
        .event_callback(refused_later(config, wrong_user, reach));
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
        o = o.credentials_file(creds).await.map_err(|source| ClusterError::File {
            path: creds.clone(),
            setting: "cluster.creds, --creds",
            source,
        })?;
    }
    if let Some(ca) = &config.tls_ca {
        if !ca.is_file() {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
            return Err(ClusterError::File { path: ca.clone(), setting: "cluster.tls_ca", source });
        }
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        o = o.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(o)
}
