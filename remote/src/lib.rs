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
//! | `oci://host[:port]/repository` | a repository of an OCI registry ([`oci`]), spoken to as pulls are: HTTPS, or plain HTTP for the registries [`RemoteOptions::registry`] lists as insecure (and localhost) |
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

pub mod oci;
pub mod reapi;

/// A remote cache URL that lkb cannot use.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "remote cache URL {url:?}: {problem} (expected grpc://HOST:PORT[/INSTANCE], grpcs://HOST:PORT[/INSTANCE] or oci://HOST[:PORT]/REPOSITORY)"
    )]
    BadUrl { url: String, problem: String },
    /// Credentials or trust settings the cache's backend cannot use.
    #[error("remote cache {url}: {message}")]
    Credentials { url: String, message: String },
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
    /// Credentials for the cache: REAPI sends them with every call; for `oci://`, basic ones
    /// win over what `registry` finds for that registry (a bearer token is refused there).
    pub credentials: Option<Credentials>,
    pub timeouts: Timeouts,
    /// How pulls reach registries (plain-HTTP registries, Docker's config.json): an `oci://`
    /// cache uses the same settings, with its own timeouts.
    pub registry: lkb_oci::RegistryConfig,
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
        "oci" => {
            let rest = rest.trim_end_matches('/');
            let (host, repository) = rest.split_once('/').ok_or_else(|| bad("no repository"))?;
            if host.is_empty() {
                return Err(bad("no host"));
            }
            let repository = lkb_oci::ImageRef::repository_in(host, repository).map_err(
                |error| match error {
                    lkb_oci::OciError::InvalidReference { reason, .. } => bad(&reason),
                    other => bad(&other.to_string()),
                },
            )?;
            Ok(Arc::new(oci::OciCache::new(url, repository, options)?))
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
        for url in [
            "oci://registry.lan/lkb",
            "oci://cache/lkb/",
            "oci://127.0.0.1:5000/team/lkb/cache",
        ] {
            assert_eq!(connect(url, &options).expect(url).describe(), url);
        }
        for (url, problem) in [
            ("127.0.0.1:9", "no scheme"),
            ("grpc://", "no host"),
            ("grpc://localhost", "no port"),
            ("http://localhost:9", "unknown scheme"),
            ("oci://", "no repository"),
            ("oci://registry.lan", "no repository"),
            ("oci:///lkb", "no host"),
            ("oci://registry.lan/Team", "lowercase"),
            ("oci://registry.lan/a//b", "repository component \"\""),
            ("oci://bad_host/lkb", "invalid host name"),
        ] {
            let error = connect(url, &options).expect_err(url).to_string();
            assert!(error.contains(problem), "{url}: {error}");
        }
    }

    #[tokio::test]
    async fn an_oci_cache_refuses_what_it_cannot_use() {
        let token = RemoteOptions {
            credentials: Some(Credentials::Bearer("s3cret".into())),
            ..RemoteOptions::default()
        };
        let error = connect("oci://registry.lan/lkb", &token).expect_err("token");
        assert!(error.to_string().contains("LKB_REMOTE_USER"), "{error}");
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let ca = RemoteOptions {
            ca_cert: Some("/ca.pem".into()),
            ..RemoteOptions::default()
        };
        let error = connect("oci://registry.lan/lkb", &ca).expect_err("ca");
        assert!(error.to_string().contains("grpcs://"), "{error}");
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
