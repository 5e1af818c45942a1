//! The retry policy: connection failures, stalls, 5xx and 429 are sent again after an
//! exponential back-off (or the registry's `Retry-After`), up to [`RegistryConfig::retries`]
//! times per operation.
//!
//! An operation (one manifest, one blob, with the token requests it needs) has one
//! [`Attempts`] budget that every retry spends from, whether the request is re-sent here or the
//! body read is restarted by the caller, so nested loops cannot multiply the attempts.
//!
//! [`RegistryConfig::retries`]: super::RegistryConfig::retries

use std::time::Duration;

use reqwest::header;
use reqwest::{Response, StatusCode};

use super::{RegistryClient, header_str, unreachable};
use crate::OciError;
use crate::error::chain;

/// The retries one operation may still make; see the module docs.
#[derive(Debug)]
pub(super) struct Attempts {
    retries_left: u32,
    made: u32,
}

impl Attempts {
    /// Whether another attempt is allowed.
    pub(super) fn can_retry(&self) -> bool {
        self.retries_left > 0
    }

    /// A budget of one attempt: for requests that must not be re-sent as they are, such as
    /// one chunk of an upload (the caller restarts the whole upload instead).
    pub(super) fn once() -> Attempts {
        Attempts {
            retries_left: 0,
            made: 0,
        }
    }

    /// Spends one retry; returns its number (0 for the first), for the back-off.
    fn spend(&mut self) -> u32 {
        self.retries_left = self.retries_left.saturating_sub(1);
        self.made += 1;
        self.made - 1
    }

    /// Attempts made so far, counting the first.
    pub(super) fn made(&self) -> u32 {
        self.made + 1
    }
}

impl RegistryClient {
    /// A fresh budget for one operation.
    pub(super) fn attempts(&self) -> Attempts {
        Attempts {
            retries_left: self.inner.config.retries,
            made: 0,
        }
    }

    /// Spends a retry from `attempts` and waits out its back-off.
    pub(super) async fn pause_before_retry(
        &self,
        attempts: &mut Attempts,
        what: &str,
        e: &OciError,
    ) {
        let delay = self.backoff(attempts.spend(), None);
        tracing::warn!(
            "{what}: attempt {} failed, retrying in {delay:?}: {e}",
            attempts.made() - 1
        );
        tokio::time::sleep(delay).await;
    }

    pub(super) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(Duration::from_secs(30)),
            None => self
                .inner
                .config
                .retry_base_delay
                .saturating_mul(1u32 << attempt.min(16))
                .min(Duration::from_secs(10)),
        }
    }

    /// Sends a request, retrying connection failures, missing responses, 5xx and 429 with
    /// back-off while `attempts` allows. Response headers must arrive within the connect timeout
    /// plus the read timeout.
    pub(super) async fn send_retrying(
        &self,
        registry: &str,
        url: &str,
        make: &(dyn Fn() -> reqwest::RequestBuilder + Send + Sync),
        attempts: &mut Attempts,
    ) -> Result<Response, OciError> {
        let config = &self.inner.config;
        let patience = config.connect_timeout.saturating_add(config.read_timeout);
        loop {
            let last = !attempts.can_retry();
            let sent = tokio::time::timeout(patience, make().send()).await;
            match sent {
                Err(_) => {
                    if !last {
                        let delay = self.backoff(attempts.spend(), None);
                        tracing::warn!(%url, "no response within {patience:?}, retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Err(OciError::Unreachable {
                        registry: registry.to_string(),
                        url: url.to_string(),
                        detail: format!("no response within {patience:?}"),
                        source: None,
                    });
                }
                Ok(Err(e)) => {
                    if !last && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                    {
                        let delay = self.backoff(attempts.spend(), None);
                        tracing::warn!(%url, "request failed, retrying in {delay:?}: {}", chain(&e));
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    if e.is_timeout() {
                        return Err(OciError::Unreachable {
                            registry: registry.to_string(),
                            url: url.to_string(),
                            detail: format!(
                                "no response within {:?}: {}",
                                config.read_timeout,
                                chain(&e)
                            ),
                            source: Some(e),
                        });
                    }
                    return Err(unreachable(registry, url, e));
                }
                Ok(Ok(resp)) => {
                    let s = resp.status();
                    if !last && (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) {
                        let after = header_str(resp.headers(), header::RETRY_AFTER.as_str())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        let delay = self.backoff(attempts.spend(), after);
                        tracing::debug!(%url, status = s.as_u16(), "retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }
}
