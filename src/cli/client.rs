//! The CLI's client of the daemon's API: `reelbox::client::ApiClient` with anyhow errors
//! worded as the CLI always printed them.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, anyhow};
use futures::StreamExt;
use reelbox::client::upload::LocalFile;
use reelbox::client::{ApiClient, ClientError};
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use super::Global;

/// The daemon URL this box's config gives (`bind`, and https with `[tls]`), when it is not
/// the default one: a daemon bound to one LAN address is reached there, one bound to every
/// address (`0.0.0.0`) through loopback. A config that cannot be read is an error: guessing
/// the default URL instead sent people to start a daemon that ran on its configured port.
pub fn url_of_config(path: Option<&Path>) -> Result<Option<String>, reelbox::config::ConfigError> {
    let url = serve_url(&reelbox::config::Config::load(path)?);
    Ok(url.filter(|u| u != super::DEFAULT_URL))
}

/// The daemon URL a client command talks to: refused, with the config's error, when the
/// config that would name it cannot be read.
pub fn daemon_url(g: &Global) -> anyhow::Result<&str> {
    match &g.config_error {
        Some(why) => Err(anyhow!(
            "the config is invalid, so the daemon's address is not known: {why} (fix it, or pass --url URL)"
        )),
        None => Ok(&g.url),
    }
}

/// The URL `reelbox serve` answers at on this box with `config` (see [`url_of_config`]);
/// `None` for port 0, which picks a free port at start.
pub fn serve_url(config: &reelbox::config::Config) -> Option<String> {
    // Port 0 picks a free port at start: nothing here can know it.
    let bind = Some(config.bind).filter(|b| b.port() != 0)?;
    let ip = match bind.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    Some(format!("{}://{}", config.tls.scheme(), std::net::SocketAddr::new(ip, bind.port())))
}

/// A call the box did not answer: nothing listened at the URL, the connection broke, or it
/// timed out (as opposed to an answer refusing it). Someone following a job waits this out.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NoAnswer(String);

/// True when `e` is a call the box did not answer ([`NoAnswer`]).
pub fn no_answer(e: &anyhow::Error) -> bool {
    e.is::<NoAnswer>()
}

/// A client bound to one daemon URL and key: the library's [`ApiClient`] with errors
/// worded for the terminal.
#[derive(Clone)]
pub struct Client {
    api: ApiClient,
    /// Whether a key goes with each call: a 401 then means that key was refused, not that
    /// one is missing.
    keyed: bool,
    /// The daemon is one this command started in its own process: its URL is a loopback
    /// port that is gone when the command ends, so it is never shown as a place to go.
    in_process: bool,
    /// How a command printed for the user to run next reaches the daemon the user meant.
    hint: super::hint::Hint,
}

impl Client {
    /// Builds a client from the global options.
    pub fn new(g: &Global) -> anyhow::Result<Self> {
        let api = ApiClient::new(daemon_url(g)?, g.key.clone(), g.cacert.as_deref(), None)?;
        Ok(Self { api, keyed: g.key.is_some(), in_process: false, hint: g.hint.clone() })
    }

    /// `reelbox ARGS` as a message prints it for the user to run next: with the global
    /// options that reach the daemon the user meant (see [`super::hint::Hint`]).
    pub fn command(&self, args: &str) -> String {
        self.hint.command(args)
    }

    /// The options commands printed for the user repeat.
    pub fn hint(&self) -> &super::hint::Hint {
        &self.hint
    }

    /// This client, for a daemon this command started in its own process.
    pub fn in_this_process(self) -> Self {
        Self { in_process: true, ..self }
    }

    /// True when the daemon is one this command started in its own process.
    pub fn is_in_process(&self) -> bool {
        self.in_process
    }

    /// The daemon as a line to the user names it: its URL, or for one in this process what
    /// it is (its URL would be opened after it is gone).
    pub fn place(&self) -> String {
        if self.in_process { "a daemon this command runs until it ends".into() } else { self.base().to_string() }
    }

    /// The one place an API error becomes the CLI's message. A 401 is said in the CLI's
    /// terms (`--key`, `REELBOX_KEY`) with the daemon's reason for a refused key; the status
    /// stays a typed [`ClientError::Status`] so a caller can tell it apart without reading
    /// words. The rest is one line: the message already names its cause, so the chain is not
    /// printed again under it.
    fn worded(&self, e: ClientError) -> anyhow::Error {
        match e {
            ClientError::Status { status: StatusCode::UNAUTHORIZED, message } => {
                let message = if self.keyed {
                    format!(
                        "the box at {} refused the key given with --key or REELBOX_KEY: {message} (whoever runs \
                         the box makes a new one with `reelbox keys create NAME`)",
                        self.base()
                    )
                } else {
                    // On the box itself people expect no key is needed; say that it is, once one exists.
                    let here = if reelbox::client::is_this_machine(self.base()) {
                        " (on this box too: once a key exists, every reelbox command needs one)"
                    } else {
                        ""
                    };
                    format!(
                        "the box at {} needs a key: pass --key KEY or set REELBOX_KEY{here}; whoever runs the box \
                         makes one with `reelbox keys create NAME`",
                        self.base()
                    )
                };
                anyhow::Error::new(ClientError::Status { status: StatusCode::UNAUTHORIZED, message })
            }
            status @ ClientError::Status { .. } => anyhow::Error::new(status),
            e @ (ClientError::Unreachable { .. } | ClientError::Request { .. } | ClientError::Body { .. }) => {
                anyhow::Error::new(NoAnswer(e.to_string()))
            }
            e => anyhow!("{e}"),
        }
    }

    /// A request to `path` (starting with `/`).
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.api.request(method, path)
    }

    /// As [`Client::send`], with `None` when the daemon answers `refusal`: a refusal the
    /// caller handles (409 for a name already taken).
    pub async fn send_unless<T: DeserializeOwned>(
        &self,
        req: RequestBuilder,
        refusal: StatusCode,
    ) -> anyhow::Result<Option<T>> {
        match self.api.send(req).await {
            Ok(resp) => resp.json().await.map(Some).context("the daemon sent an unreadable answer"),
            Err(ClientError::Status { status, .. }) if status == refusal => Ok(None),
            Err(e) => Err(self.worded(e)),
        }
    }

    /// Sends and decodes a JSON answer, turning API errors into readable ones.
    pub async fn send<T: DeserializeOwned>(&self, req: RequestBuilder) -> anyhow::Result<T> {
        let resp = self.send_raw(req).await?;
        resp.json().await.context("the daemon sent an unreadable answer")
    }

    /// Sends and checks the status, returning the raw response.
    pub async fn send_raw(&self, req: RequestBuilder) -> anyhow::Result<Response> {
        self.api.send(req).await.map_err(|e| self.worded(e))
    }

    /// Reads `path`, given as `what` (the flag typed), to be uploaded: refused, naming the
    /// file and the box's limit, when it is larger than the box takes.
    pub async fn local_file(&self, path: &Path, what: &str) -> anyhow::Result<LocalFile> {
        // One line: the message names the file and why.
        self.api.local_file(path, what).await.map_err(|e| anyhow!("{e}"))
    }

    /// GET a JSON document.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        self.send(self.request(Method::GET, path)).await
    }

    /// POST a JSON body.
    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &serde_json::Value) -> anyhow::Result<T> {
        self.send(self.request(Method::POST, path).json(body)).await
    }

    /// The daemon URL this client talks to.
    pub fn base(&self) -> &str {
        self.api.base()
    }

    /// True when a reelbox daemon answers `/healthz` within `wait`.
    pub async fn answers(&self, wait: Duration) -> bool {
        self.api.answers(wait).await
    }

    /// Streams `path` into `dest` through a temporary file beside it; returns the bytes written.
    pub async fn download(&self, path: &str, dest: &Path) -> anyhow::Result<u64> {
        let resp = self.send_raw(self.request(Method::GET, path)).await?;
        let tmp = dest.with_file_name(format!(
            ".{}.part",
            dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
        ));
        let mut file =
            tokio::fs::File::create(&tmp).await.with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut stream = resp.bytes_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("download of {path} from {} broke off", self.base()))?;
            file.write_all(&chunk).await.with_context(|| format!("cannot write {}", tmp.display()))?;
            written += chunk.len() as u64;
        }
        file.flush().await.with_context(|| format!("cannot write {}", tmp.display()))?;
        drop(file);
        tokio::fs::rename(&tmp, dest).await.with_context(|| format!("cannot write {}", dest.display()))?;
        Ok(written)
    }
}
