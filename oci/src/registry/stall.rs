//! Stall detection for response bodies: a body that sends nothing for
//! [`RegistryConfig::read_timeout`], or fewer than [`RegistryConfig::min_transfer_rate`] bytes a
//! second over a window of that length, is stalled. Without this a registry trickling one byte a
//! second would keep a build waiting forever and silently.
//!
//! [`RegistryConfig::read_timeout`]: super::RegistryConfig::read_timeout
//! [`RegistryConfig::min_transfer_rate`]: super::RegistryConfig::min_transfer_rate

use std::time::{Duration, Instant};

use reqwest::Response;

use super::RegistryClient;
use crate::OciError;
use crate::error::chain;

/// Watches one response body.
pub(super) struct BodyWatch {
    window: Duration,
    min_rate: u64,
    window_start: Instant,
    window_bytes: u64,
    /// Bytes of the body received so far.
    pub(super) received: u64,
}

/// Why reading a body stopped early.
pub(super) enum ReadFailure {
    /// Too slow or silent; the text says which.
    Stalled(String),
    /// The connection failed.
    Failed(reqwest::Error),
}

impl ReadFailure {
    /// The error for a body of `what` from `registry` at `url` that failed after `received`
    /// bytes.
    pub(super) fn into_error(
        self,
        what: &str,
        registry: &str,
        url: &str,
        received: u64,
    ) -> OciError {
        match self {
            ReadFailure::Stalled(detail) => OciError::Stalled {
                what: what.to_string(),
                registry: registry.to_string(),
                url: url.to_string(),
                received,
                detail,
            },
            ReadFailure::Failed(e) => OciError::Unreachable {
                registry: registry.to_string(),
                url: url.to_string(),
                detail: format!(
                    "{what}: transfer interrupted after {received} bytes: {}",
                    chain(&e)
                ),
                source: Some(e),
            },
        }
    }
}

impl RegistryClient {
    /// A watch for a body whose response just arrived.
    pub(super) fn body_watch(&self) -> BodyWatch {
        let c = &self.inner.config;
        BodyWatch {
            window: c.read_timeout.max(Duration::from_millis(1)),
            min_rate: c.min_transfer_rate,
            window_start: Instant::now(),
            window_bytes: 0,
            received: 0,
        }
    }
}

impl BodyWatch {
    /// The next chunk of `resp`, or why there is none.
    pub(super) async fn next_chunk(
        &mut self,
        resp: &mut Response,
    ) -> Result<Option<impl AsRef<[u8]> + Send + 'static>, ReadFailure> {
        let silent = || ReadFailure::Stalled(format!("no data for {:?}", self.window));
        let chunk = match tokio::time::timeout(self.window, resp.chunk()).await {
            Err(_) => return Err(silent()),
            Ok(Err(e)) if e.is_timeout() => return Err(silent()),
            Ok(Err(e)) => return Err(ReadFailure::Failed(e)),
            Ok(Ok(None)) => return Ok(None),
            Ok(Ok(Some(c))) => c,
        };
        let n = chunk.len() as u64;
        self.received += n;
        self.window_bytes += n;
        let elapsed = self.window_start.elapsed();
        if elapsed >= self.window {
            let wanted = (self.min_rate as f64 * elapsed.as_secs_f64()) as u64;
            if self.window_bytes < wanted {
                return Err(ReadFailure::Stalled(format!(
                    "only {} bytes in {elapsed:.1?}, below the minimum of {} bytes/s",
                    self.window_bytes, self.min_rate
                )));
            }
            self.window_start = Instant::now();
            self.window_bytes = 0;
        }
        Ok(Some(chunk))
    }
}
