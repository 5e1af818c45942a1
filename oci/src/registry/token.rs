//! Authenticated requests: what to send up front, how to answer a 401 (the token dance, or
//! basic auth), bearer tokens cached per (registry, scope), and credentials looked up once
//! per registry.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{Duration, Instant};

use reqwest::header;
use reqwest::{Response, StatusCode};
use serde::Deserialize;

use super::retry::Attempts;
use super::{RegistryClient, read_limited};
use crate::auth::{Challenge, Credential, parse_www_authenticate, registry_key};
use crate::{ImageRef, OciError};

/// What a request needs the registry to allow on a repository (the token scope's actions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Access {
    Pull,
    Push,
}

impl Access {
    fn scope(self, repository: &str) -> String {
        match self {
            Access::Pull => format!("repository:{repository}:pull"),
            Access::Push => format!("repository:{repository}:pull,push"),
        }
    }
}

/// Whether `url` is on `host` (`name[:port]`, as in an image reference).
fn same_host(url: &str, host: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    let Some(name) = url.host_str() else {
        return false;
    };
    let authority = match url.port() {
        Some(port) => format!("{name}:{port}"),
        None => name.to_string(),
    };
    authority.eq_ignore_ascii_case(host)
}

#[derive(Default)]
pub(super) struct AuthState {
    /// Bearer tokens per (registry, scope).
    tokens: HashMap<(String, String), (String, Instant)>,
    /// The last challenge each registry sent, so later requests can authenticate up front.
    schemes: HashMap<String, Challenge>,
    /// Credentials per registry once looked up (`None`: there are none).
    creds: HashMap<String, Option<Credential>>,
}

#[derive(Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    /// Seconds; anything but a non-negative integer (a float, a string, a negative number)
    /// counts as absent rather than failing the pull.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// The largest token reply we read: tokens are JWTs of a few KiB.
const MAX_TOKEN_BYTES: u64 = 1024 * 1024;

/// The longest we keep a token, whatever the server says: a registry answers an expired token
/// with 401 and the dance starts again, so a short cap costs one request an hour at most.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// How long to use a token the server says lives `expires_in` seconds: the token spec's
/// default of 60 s when absent, renewed 10 s early, at least 1 s, at most
/// [`MAX_TOKEN_LIFETIME`]. Never overflows, whatever the reply holds.
fn token_lifetime(expires_in: Option<&serde_json::Value>) -> Duration {
    let secs = expires_in.and_then(serde_json::Value::as_u64).unwrap_or(60);
    let renew_early = secs.saturating_sub(10).max(1);
    Duration::from_secs(renew_early).min(MAX_TOKEN_LIFETIME)
}

/// When a token obtained now with lifetime `ttl` stops being used.
fn token_deadline(now: Instant, ttl: Duration) -> Instant {
    now.checked_add(ttl).unwrap_or(now)
}

/// Why a token request did not produce a token.
enum TokenFailure {
    Denied(StatusCode),
    Error(OciError),
}

impl RegistryClient {
    fn state(&self) -> MutexGuard<'_, AuthState> {
        // A panic while holding this lock cannot leave the maps inconsistent: keep going.
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An authenticated GET for pulling.
    pub(super) async fn get(
        &self,
        r: &ImageRef,
        url: &str,
        accept: Option<&str>,
        attempts: &mut Attempts,
    ) -> Result<Response, OciError> {
        let request = |http: &reqwest::Client| {
            let b = http.get(url);
            match accept {
                Some(a) => b.header(header::ACCEPT, a),
                None => b,
            }
        };
        self.send(r, Access::Pull, url, &request, attempts).await
    }

    /// An authenticated request for `access` to `r`'s repository: sends what we know works for
    /// the registry, answers one 401 with the token dance (or basic auth) and tries again.
    /// `request` builds the request afresh for every attempt, body included. Credentials go
    /// only to the registry's own host: an upload `Location` elsewhere gets none.
    pub(super) async fn send(
        &self,
        r: &ImageRef,
        access: Access,
        url: &str,
        request: &(dyn Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync),
        attempts: &mut Attempts,
    ) -> Result<Response, OciError> {
        let registry = r.registry();
        let scope = access.scope(r.repository());
        let own_host = same_host(url, r.api_host());
        let mut challenged = false;
        loop {
            let auth = if own_host {
                self.authorization(r, &scope, attempts).await?
            } else {
                None
            };
            let http = &self.inner.http;
            let make = || {
                let b = request(http);
                match &auth {
                    Some(a) => b.header(header::AUTHORIZATION, a.as_str()),
                    None => b,
                }
            };
            let resp = self.send_retrying(registry, url, &make, attempts).await?;
            if resp.status() != StatusCode::UNAUTHORIZED {
                return Ok(resp);
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(header::WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(parse_www_authenticate)
                .collect();
            if challenged {
                let had_creds = self.credentials(registry).await?.is_some();
                let detail = self.error_summary(resp).await;
                return Err(if had_creds {
                    OciError::AuthFailed {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                        detail: format!("credentials were rejected (401): {detail}"),
                    }
                } else {
                    OciError::AuthRequired {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                    }
                });
            }
            challenged = true;
            let chosen = challenges
                .iter()
                .find(|c| matches!(c, Challenge::Bearer { realm, .. } if !realm.is_empty()))
                .or_else(|| {
                    challenges
                        .iter()
                        .find(|c| matches!(c, Challenge::Basic { .. }))
                })
                .cloned();
            match chosen {
                Some(Challenge::Bearer {
                    realm,
                    service,
                    scope: asked,
                }) => {
                    {
                        let mut st = self.state();
                        st.tokens.remove(&(registry.to_string(), scope.clone()));
                        st.schemes.insert(
                            registry.to_string(),
                            Challenge::Bearer {
                                realm: realm.clone(),
                                service: service.clone(),
                                scope: None,
                            },
                        );
                    }
                    let want = asked.unwrap_or_else(|| scope.clone());
                    self.obtain_token(r, &realm, service.as_deref(), &want, &scope, attempts)
                        .await?;
                }
                Some(c @ Challenge::Basic { .. }) => {
                    if self.credentials(registry).await?.is_none() {
                        return Err(OciError::AuthRequired {
                            registry: registry.to_string(),
                            reference: r.original().to_string(),
                        });
                    }
                    self.state().schemes.insert(registry.to_string(), c);
                }
                _ => {
                    if self.credentials(registry).await?.is_none() {
                        return Err(OciError::AuthRequired {
                            registry: registry.to_string(),
                            reference: r.original().to_string(),
                        });
                    }
                    return Err(OciError::AuthFailed {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                        detail: "401 without a Bearer or Basic challenge".to_string(),
                    });
                }
            }
        }
    }

    /// The Authorization header to send up front, if we know how this registry authenticates.
    async fn authorization(
        &self,
        r: &ImageRef,
        scope: &str,
        attempts: &mut Attempts,
    ) -> Result<Option<String>, OciError> {
        let registry = r.registry();
        let (token, scheme) = {
            let st = self.state();
            let key = (registry.to_string(), scope.to_string());
            let token = st
                .tokens
                .get(&key)
                .filter(|(_, until)| *until > Instant::now())
                .map(|(t, _)| t.clone());
            (token, st.schemes.get(registry).cloned())
        };
        if let Some(t) = token {
            return Ok(Some(format!("Bearer {t}")));
        }
        match scheme {
            Some(Challenge::Bearer { realm, service, .. }) => {
                // A new scope (or an expired token) on a registry known to want tokens.
                let t = self
                    .obtain_token(r, &realm, service.as_deref(), scope, scope, attempts)
                    .await?;
                Ok(Some(format!("Bearer {t}")))
            }
            Some(Challenge::Basic { .. }) => match self.credentials(registry).await? {
                Some(Credential::Basic { username, password }) => {
                    Ok(Some(basic_header(&username, &password)))
                }
                Some(Credential::IdentityToken(_)) => Err(OciError::AuthFailed {
                    registry: registry.to_string(),
                    reference: r.original().to_string(),
                    detail:
                        "the registry wants basic auth but only an identity token is configured"
                            .to_string(),
                }),
                None => Ok(None),
            },
            _ => Ok(None),
        }
    }

    /// Credentials for a registry: explicit ones first, then docker config (looked up once).
    async fn credentials(&self, registry: &str) -> Result<Option<Credential>, OciError> {
        let key = registry_key(registry);
        if let Some(c) = self
            .inner
            .config
            .credentials
            .iter()
            .find(|(k, _)| registry_key(k) == key)
        {
            return Ok(Some(c.1.clone()));
        }
        if let Some(c) = self.state().creds.get(&key) {
            return Ok(c.clone());
        }
        let cfg = self.inner.config.docker_config.clone();
        let k2 = key.clone();
        let found = tokio::task::spawn_blocking(move || cfg.lookup(&k2))
            .await
            .map_err(|e| OciError::Internal(format!("credential lookup task failed: {e}")))??;
        self.state().creds.insert(key, found.clone());
        Ok(found)
    }

    /// Runs the token dance and caches the token under (registry, `cache_scope`).
    async fn obtain_token(
        &self,
        r: &ImageRef,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        cache_scope: &str,
        attempts: &mut Attempts,
    ) -> Result<String, OciError> {
        let registry = r.registry();
        let creds = self.credentials(registry).await?;
        let result = match self
            .request_token(registry, realm, service, scope, creds.as_ref(), attempts)
            .await
        {
            Ok(t) => Ok(t),
            Err(TokenFailure::Denied(status)) if creds.is_some() => {
                // Stale credentials should not break public pulls: try anonymously.
                match self
                    .request_token(registry, realm, service, scope, None, attempts)
                    .await
                {
                    Ok(t) => {
                        tracing::warn!(
                            registry,
                            "token request with configured credentials was refused ({status}); \
                             continuing anonymously"
                        );
                        Ok(t)
                    }
                    Err(_) => Err(OciError::AuthFailed {
                        registry: registry.to_string(),
                        reference: r.original().to_string(),
                        detail: format!("token server {realm} rejected the credentials ({status})"),
                    }),
                }
            }
            Err(TokenFailure::Denied(_)) => Err(OciError::AuthRequired {
                registry: registry.to_string(),
                reference: r.original().to_string(),
            }),
            Err(TokenFailure::Error(e)) => Err(e),
        };
        let (token, ttl) = result?;
        self.state().tokens.insert(
            (registry.to_string(), cache_scope.to_string()),
            (token.clone(), token_deadline(Instant::now(), ttl)),
        );
        Ok(token)
    }

    async fn request_token(
        &self,
        registry: &str,
        realm: &str,
        service: Option<&str>,
        scope: &str,
        creds: Option<&Credential>,
        attempts: &mut Attempts,
    ) -> Result<(String, Duration), TokenFailure> {
        let mut url = reqwest::Url::parse(realm).map_err(|e| {
            TokenFailure::Error(OciError::Registry {
                registry: registry.to_string(),
                url: realm.to_string(),
                status: 401,
                detail: format!("unusable token realm {realm:?}: {e}"),
            })
        })?;
        let http = &self.inner.http;
        let make: Box<dyn Fn() -> reqwest::RequestBuilder + Send + Sync> = match creds {
            Some(Credential::IdentityToken(refresh)) => {
                let mut form = reqwest::Url::parse("http://form.invalid/")
                    .map_err(|e| TokenFailure::Error(OciError::Internal(e.to_string())))?;
                {
                    let mut q = form.query_pairs_mut();
                    q.append_pair("grant_type", "refresh_token");
                    q.append_pair("refresh_token", refresh);
                    q.append_pair("client_id", "lkb");
                    q.append_pair("scope", scope);
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                }
                let body = form.query().unwrap_or_default().to_string();
                let u = url.clone();
                Box::new(move || {
                    http.post(u.clone())
                        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                        .body(body.clone())
                })
            }
            other => {
                {
                    let mut q = url.query_pairs_mut();
                    if let Some(s) = service {
                        q.append_pair("service", s);
                    }
                    q.append_pair("scope", scope);
                }
                let basic = match other {
                    Some(Credential::Basic { username, password }) => {
                        Some(basic_header(username, password))
                    }
                    _ => None,
                };
                let u = url.clone();
                Box::new(move || {
                    let b = http.get(u.clone());
                    match &basic {
                        Some(h) => b.header(header::AUTHORIZATION, h.as_str()),
                        None => b,
                    }
                })
            }
        };
        let resp = self
            .send_retrying(registry, url.as_str(), &*make, attempts)
            .await
            .map_err(TokenFailure::Error)?;
        let status = resp.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(TokenFailure::Denied(status));
        }
        if !status.is_success() {
            let detail = self.error_summary(resp).await;
            return Err(TokenFailure::Error(OciError::Registry {
                registry: registry.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                detail: format!("token request failed: {detail}"),
            }));
        }
        let what = format!("token reply for registry {registry}");
        let body = read_limited(self, registry, url.as_str(), resp, MAX_TOKEN_BYTES, &what)
            .await
            .map_err(TokenFailure::Error)?;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
            TokenFailure::Error(OciError::Registry {
                registry: registry.to_string(),
                url: url.to_string(),
                status: status.as_u16(),
                detail: format!("unparseable token reply: {e}"),
            })
        })?;
        let token = reply
            .token
            .or(reply.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                TokenFailure::Error(OciError::Registry {
                    registry: registry.to_string(),
                    url: url.to_string(),
                    status: status.as_u16(),
                    detail: "token reply has no token".to_string(),
                })
            })?;
        Ok((token, token_lifetime(reply.expires_in.as_ref())))
    }
}

fn basic_header(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::json;

    use super::{MAX_TOKEN_LIFETIME, TokenReply, token_deadline, token_lifetime};

    fn lifetime_of(reply: &str) -> Duration {
        let reply: TokenReply = serde_json::from_str(reply).unwrap();
        token_lifetime(reply.expires_in.as_ref())
    }

    #[test]
    fn huge_expires_in_is_capped_and_does_not_overflow() {
        let max = format!(r#"{{"token":"t","expires_in":{}}}"#, u64::MAX);
        assert_eq!(lifetime_of(&max), MAX_TOKEN_LIFETIME);
        // The deadline computation itself cannot panic either.
        let now = Instant::now();
        assert!(token_deadline(now, lifetime_of(&max)) > now);
        assert_eq!(token_deadline(now, Duration::MAX), now);
    }

    #[test]
    fn ordinary_and_odd_expires_in() {
        assert_eq!(lifetime_of(r#"{"token":"t"}"#), Duration::from_secs(50));
        assert_eq!(
            lifetime_of(r#"{"token":"t","expires_in":300}"#),
            Duration::from_secs(290)
        );
        for tiny in ["0", "5", "10", "11"] {
            let l = lifetime_of(&format!(r#"{{"token":"t","expires_in":{tiny}}}"#));
            assert_eq!(l, Duration::from_secs(1), "{tiny}");
        }
        for odd in ["-5", "1.5e300", "\"300\"", "null", "1e400"] {
            let reply = format!(r#"{{"token":"t","expires_in":{odd}}}"#);
            if let Ok(r) = serde_json::from_str::<TokenReply>(&reply) {
                assert_eq!(
                    token_lifetime(r.expires_in.as_ref()),
                    Duration::from_secs(50),
                    "{odd}"
                );
            }
        }
        assert_eq!(token_lifetime(Some(&json!(u64::MAX))), MAX_TOKEN_LIFETIME);
    }
}
