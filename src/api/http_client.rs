//! The HTTP client every reelbox client of the daemon builds on (the CLI and `reelbox top`):
//! one place that trusts an extra CA certificate (`--cacert`, for a daemon serving HTTPS
//! with its own certificate), so no client can forget it.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    #[error("cannot read --cacert {path}: {source}")]
    ReadCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("--cacert {path} is not a PEM certificate: {source}")]
    BadCa {
        path: PathBuf,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("--url {url:?} is not a daemon URL: {reason} (e.g. http://127.0.0.1:8470)")]
    BadUrl { url: String, reason: String },
}

/// Checks a daemon URL before any request (reqwest says only "builder error"): an absolute
/// `http://` or `https://` URL.
pub fn check_daemon_url(url: &str) -> Result<(), HttpClientError> {
    let bad = |reason: String| HttpClientError::BadUrl { url: url.to_string(), reason };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(e.to_string()))?;
    match parsed.scheme() {
        "http" | "https" if parsed.host_str().is_some() => Ok(()),
        "http" | "https" => Err(bad("it names no host".into())),
        other => Err(bad(format!("the scheme is {other:?}, not http or https"))),
    }
}

/// A client trusting `cacert` besides the system roots, giving up on connecting after
/// `connect_timeout` when one is given.
pub fn http_client(
    cacert: Option<&Path>,
    connect_timeout: Option<Duration>,
) -> Result<reqwest::Client, HttpClientError> {
    let mut builder = reqwest::Client::builder();
    if let Some(path) = cacert {
        let pem = std::fs::read(path).map_err(|source| HttpClientError::ReadCa { path: path.to_path_buf(), source })?;
        let cert = reqwest::Certificate::from_pem(&pem)
            .map_err(|source| HttpClientError::BadCa { path: path.to_path_buf(), source })?;
        builder = builder.add_root_certificate(cert);
    }
    if let Some(t) = connect_timeout {
        builder = builder.connect_timeout(t);
    }
    builder.build().map_err(HttpClientError::Build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_bad_ca_file_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("none.pem");
        let err = http_client(Some(&missing), None).expect_err("missing");
        assert!(err.to_string().contains("none.pem"), "{err}");
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, b"-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n").expect("write");
        assert!(matches!(
            http_client(Some(&bad), None),
            Err(HttpClientError::BadCa { .. }) | Err(HttpClientError::Build(_))
        ));
        assert!(http_client(None, Some(Duration::from_secs(2))).is_ok());
    }
}
