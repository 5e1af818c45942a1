//! A real Remote Execution API cache for tests: BuildGrid (`bgd` from PyPI, installed into a
//! venv by `scripts/install-deps`) serving ActionCache, CAS and ByteStream on
//! `127.0.0.1:<free port>`, with disk storage in its own temp dir and no authorization. The
//! process is killed (by its PID) and reaped when the [`BuildGrid`] is dropped.
//!
//! Disk storage layout, for tamper tests: `<cas>/cas/objects/<hex[..2]>/<hex[2..]>`.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::registry::free_port;

/// Where `scripts/install-deps` installs BuildGrid's command; `LKB_BGD` overrides it.
pub const DEFAULT_BGD: &str = "/opt/lkb-buildgrid/bin/bgd";

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The `bgd` command to run.
#[expect(
    clippy::disallowed_methods,
    reason = "test support finds its tools the way cli settings would"
)]
pub fn bgd() -> PathBuf {
    std::env::var_os("LKB_BGD").map_or_else(|| PathBuf::from(DEFAULT_BGD), PathBuf::from)
}

/// A running BuildGrid server.
#[derive(Debug)]
pub struct BuildGrid {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl BuildGrid {
    /// Starts a server with an empty cache and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let bgd = bgd();
        ensure!(
            bgd.exists(),
            "{} not found; run scripts/install-deps (it installs BuildGrid into a venv)",
            bgd.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("lkb-buildgrid-")
            .tempdir()?;
        let port = free_port()?;
        let config = dir.path().join("buildgrid.yml");
        fs_err::write(&config, config_yaml(&dir.path().join("cas"), port))?;
        let log = fs_err::File::create(dir.path().join("bgd.log"))?
            .into_parts()
            .0;
        let child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", bgd.display()))?;
        let mut server = BuildGrid { child, port, dir };
        server.wait_ready()?;
        Ok(server)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("bgd exited with {status} before serving:\n{}", self.log());
            }
            // The log line comes just before the port is bound; the connection proves it.
            if self.log().contains("Starting BuildGrid server")
                && TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "bgd did not serve within {READY_TIMEOUT:?}:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file holding blob `hex` in the server's storage.
    pub fn blob_path(&self, hex: &str) -> PathBuf {
        self.dir
            .path()
            .join("cas/cas/objects")
            .join(&hex[..2])
            .join(&hex[2..])
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        fs_err::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    /// Kills the server now (as a crash would).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A cache-only server: ActionCache (in memory, updates allowed), CAS and ByteStream over one
/// disk storage, on 127.0.0.1 without TLS or authorization. `thread-pool-size` is also
/// BuildGrid's limit on concurrent RPCs (10 on two cores by default): raised, so that tests
/// running side by side on a loaded machine are not refused.
fn config_yaml(storage: &Path, port: u16) -> String {
    format!(
        r#"thread-pool-size: 40
server:
  - !channel
    address: "127.0.0.1:{port}"
    insecure-mode: true
authorization:
  method: none
storages:
  - !disk-storage &cas
    path: {storage}
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
instances:
  - name: ""
    services:
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
"#,
        storage = storage.display()
    )
}
