//! Remote cache backends for lkb.
//!
//! Each backend implements [`lkb_store::RemoteCache`]; the engine's scheduler holds the policy
//! (when to ask, what to fetch, what a failure means). [`connect`] picks the backend from the
//! URL:
//!
//! | URL | backend |
//! |---|---|
//! | `grpc://host:port[/instance]` | Remote Execution API v2 over plain gRPC ([`reapi`]) |
//! | `grpcs://host:port[/instance]` | the same over TLS (system roots, plus `ca_cert`) |
//!
//! The backend is created without talking to the server; the first call does, and every call
//! is bounded by [`Timeouts`].

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use lkb_store::RemoteCache;

pub mod reapi;

/// A remote cache URL that lkb cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "remote cache URL {url:?}: {problem} (expected grpc://HOST:PORT[/INSTANCE] or grpcs://HOST:PORT[/INSTANCE])"
    )]
    BadUrl { url: String, problem: String },
    #[error("cannot read the remote cache CA certificate {path}")]
    CaCert {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("remote cache {url}: {message}")]
    Transport { url: String, message: String },
}

/// Every remote-cache setting comes from the user (a flag, `lkb.toml`, a file they named).
impl lkb_store::Categorized for ConfigError {
    fn category(&self) -> lkb_store::ErrorCategory {
        lkb_store::ErrorCategory::User
    }
}

/// Credentials sent with every request. Never printed: `Debug` shows only the scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `authorization: Bearer TOKEN`.
    Bearer(String),
    /// `authorization: Basic base64(USER:PASSWORD)`.
    Basic { user: String, password: String },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credentials::Basic { user, .. } => write!(f, "Basic({user}, <redacted>)"),
        }
    }
}

impl Credentials {
    /// The value of the `authorization` header.
    pub fn header(&self) -> String {
        match self {
            Credentials::Bearer(token) => format!("Bearer {token}"),
            Credentials::Basic { user, password } => {
                format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
            }
        }
    }
}

/// How long one conversation with the cache may take before it counts as unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Establishing the connection.
    pub connect: Duration,
    /// One unary request, or the wait for the next message of a stream (so a large blob may
    /// take as long as it takes while bytes keep coming).
    pub request: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(5),
            request: Duration::from_secs(30),
        }
    }
}

/// How to reach a remote cache.
#[derive(Debug, Clone, Default)]
pub struct RemoteOptions {
    /// Extra CA certificate (PEM) trusted for `grpcs://`, besides the system roots.
    pub ca_cert: Option<PathBuf>,
    pub credentials: Option<Credentials>,
    pub timeouts: Timeouts,
}

/// The backend for `url`. Does not contact the server.
pub fn connect(url: &str, options: &RemoteOptions) -> Result<Arc<dyn RemoteCache>, ConfigError> {
    let bad = |problem: &str| ConfigError::BadUrl {
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    match scheme {
        "grpc" | "grpcs" => {
            let (authority, instance) = match rest.split_once('/') {
                Some((authority, instance)) => (authority, instance.trim_end_matches('/')),
                None => (rest, ""),
            };
            if authority.is_empty() {
                return Err(bad("no host"));
            }
            if !authority.contains(':') {
                return Err(bad("no port"));
            }
            let endpoint = reapi::Endpoint {
                url: url.to_owned(),
                tls: scheme == "grpcs",
                authority: authority.to_owned(),
                instance: instance.to_owned(),
            };
            Ok(Arc::new(reapi::ReapiCache::new(endpoint, options)?))
        }
        other => Err(bad(&format!("unknown scheme {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_pick_the_backend_or_say_what_is_wrong() {
        let options = RemoteOptions::default();
        let cache = connect("grpc://127.0.0.1:9/main", &options).expect("grpc url");
        assert_eq!(cache.describe(), "grpc://127.0.0.1:9/main");
        for (url, problem) in [
            ("127.0.0.1:9", "no scheme"),
            ("grpc://", "no host"),
            ("grpc://localhost", "no port"),
            ("http://localhost:9", "unknown scheme"),
        ] {
            let error = connect(url, &options).expect_err(url).to_string();
            assert!(error.contains(problem), "{url}: {error}");
        }
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let basic = Credentials::Basic {
            user: "ci".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{basic:?}").contains("hunter2"));
        assert_eq!(basic.header(), "Basic Y2k6aHVudGVyMg==");
        assert!(!format!("{:?}", Credentials::Bearer("s3cret".into())).contains("s3cret"));
    }
}
