//! One connection to the NATS server and the JetStream pieces both roles use: the work
//! stream, the results stream, the heartbeat bucket and the artifact object store. Each is
//! created when missing with the same settings from either side, so start order is free.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};

use super::ClusterError;
use super::protocol::{BOXES_BUCKET, OBJECT_BUCKET, RESULT_STREAM, RESULT_SUBJECT, WORK_STREAM};
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
}

impl Bus {
    /// Connects with the configured credentials and TLS, and makes sure every stream and
    /// bucket exists. Retries the first connection until `patience` runs out.
    pub async fn connect(config: &ClusterConfig, client_name: &str) -> Result<Self, ClusterError> {
        config.check()?;
        let client = options(config, client_name)
            .await?
            .connect(config.nats_url.as_str())
            .await
            .map_err(|source| ClusterError::Connect { url: config.nats_url.clone(), source })?;
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
        let results = js
            .get_or_create_stream(stream::Config {
                name: RESULT_STREAM.into(),
                subjects: vec![RESULT_SUBJECT.into()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| ClusterError::js("results stream", e))?;
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
        Ok(Self { client, js, work, results, boxes, objects })
    }
}

/// Connection options from `[cluster]`: token or creds file, TLS, reconnect forever.
async fn options(config: &ClusterConfig, client_name: &str) -> Result<async_nats::ConnectOptions, ClusterError> {
    let mut o = async_nats::ConnectOptions::new()
        .name(client_name)
        .retry_on_initial_connect()
        .connection_timeout(Duration::from_secs(5))
        .max_reconnects(None);
    if let Some(token) = &config.token {
        o = o.token(token.clone());
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
