//! The retry policy: connection failures, 5xx and 429 are sent again after an exponential
//! back-off (or the registry's `Retry-After`), up to [`RegistryConfig::retries`] times.
//!
//! [`RegistryConfig::retries`]: super::RegistryConfig::retries

use std::time::Duration;

use reqwest::header;
use reqwest::{Response, StatusCode};

use super::{RegistryClient, header_str, unreachable};
use crate::oci::OciError;
use crate::oci::error::chain;

impl RegistryClient {
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

    /// Sends a request, retrying connection failures, 5xx and 429 with back-off.
    pub(super) async fn send_retrying(
        &self,
        registry: &str,
        url: &str,
        make: &(dyn Fn() -> reqwest::RequestBuilder + Send + Sync),
    ) -> Result<Response, OciError> {
        let mut attempt = 0u32;
        loop {
            let last = attempt >= self.inner.config.retries;
            match make().send().await {
                Err(e) => {
                    if !last && (e.is_connect() || e.is_timeout() || e.is_request() || e.is_body())
                    {
                        let delay = self.backoff(attempt, None);
                        tracing::debug!(%url, attempt, "request failed, retrying in {delay:?}: {}", chain(&e));
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    return Err(unreachable(registry, url, e));
                }
                Ok(resp) => {
                    let s = resp.status();
                    if !last && (s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS) {
                        let after = header_str(resp.headers(), header::RETRY_AFTER.as_str())
                            .and_then(|v| v.trim().parse::<u64>().ok())
                            .map(Duration::from_secs);
                        let delay = self.backoff(attempt, after);
                        tracing::debug!(%url, attempt, status = s.as_u16(), "retrying in {delay:?}");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                        continue;
                    }
                    return Ok(resp);
                }
            }
        }
    }
}
