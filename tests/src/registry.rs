//! A real OCI registry for tests: Debian's `docker-registry` (CNCF distribution 2.8) on
//! `127.0.0.1:<free port>`, storing into its own temp dir, optionally behind htpasswd basic
//! auth. The process is killed (by its PID) and reaped when the [`Registry`] is dropped.
//!
//! Storage layout (filesystem driver), useful for tamper tests:
//! `<storage>/docker/registry/v2/blobs/sha256/<hex[..2]>/<hex>/data`.

mod http;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};

use crate::oci::{ArtifactRef, Blob, Digest, OciLayout};

pub use self::http::{BasicAuth, Response, path_of, request};

/// Where Debian installs the registry binary.
pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";

const START_ATTEMPTS: usize = 5;
const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `docker-registry` serving plain HTTP on 127.0.0.1.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    addr: String,
    dir: tempfile::TempDir,
    auth: Option<BasicAuth>,
}

impl Registry {
    /// Starts an anonymous registry and waits until `GET /v2/` answers.
    pub fn start() -> anyhow::Result<Self> {
        Self::launch(None)
    }

    /// Starts a registry that requires basic auth for `user`/`password` (a bcrypt htpasswd
    /// file made by `htpasswd -Bbn`). [`Registry::push_image`] and [`Registry::get`] then send
    /// these credentials; [`Registry::request`] lets a test send others or none.
    pub fn start_with_htpasswd(user: &str, password: &str) -> anyhow::Result<Self> {
        Self::launch(Some(BasicAuth {
            user: user.to_owned(),
            password: password.to_owned(),
        }))
    }

    fn launch(auth: Option<BasicAuth>) -> anyhow::Result<Self> {
        ensure!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} not found; install Debian's docker-registry package"
        );
        let dir = tempfile::Builder::new().prefix("lkb-registry-").tempdir()?;
        let htpasswd = match &auth {
            Some(auth) => {
                let path = dir.path().join("htpasswd");
                fs_err::write(&path, make_htpasswd(auth)?)?;
                Some(path)
            }
            None => None,
        };
        let mut last_log = String::new();
        for _ in 0..START_ATTEMPTS {
            let port = free_port()?;
            let addr = format!("127.0.0.1:{port}");
            let config = dir.path().join("config.yml");
            fs_err::write(&config, config_yaml(dir.path(), &addr, htpasswd.as_deref()))?;
            let log_path = dir.path().join("registry.log");
            let log = fs_err::File::create(&log_path)?.into_parts().0;
            let mut child = Command::new(REGISTRY_BINARY)
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()
                .with_context(|| format!("spawning {REGISTRY_BINARY}"))?;
            match wait_ready(&mut child, &addr, &log_path) {
                Ok(true) => {
                    return Ok(Self {
                        child,
                        addr,
                        dir,
                        auth,
                    });
                }
                Ok(false) => {
                    // Exited early, most likely because the port was taken meanwhile.
                    let _ = child.wait();
                    last_log = read_log(&log_path);
                }
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(error);
                }
            }
        }
        bail!(
            "docker-registry did not start after {START_ATTEMPTS} attempts; last log:\n{last_log}"
        )
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The registry process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the registry now (as a crash would); dropping it later does nothing more.
    pub fn kill(&mut self) {
        // Only our own child, by its PID; errors mean it has already exited.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The credentials this registry was started with.
    pub fn credentials(&self) -> Option<&BasicAuth> {
        self.auth.as_ref()
    }

    /// The filesystem driver's root directory.
    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    /// The registry's stdout and stderr so far.
    pub fn log(&self) -> String {
        read_log(&self.dir.path().join("registry.log"))
    }

    /// Sends one request with the given credentials (or none).
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        auth: Option<&BasicAuth>,
    ) -> anyhow::Result<Response> {
        let authorization = auth.map(BasicAuth::header_value);
        let mut all: Vec<(&str, &str)> = headers.to_vec();
        if let Some(value) = &authorization {
            all.push(("Authorization", value));
        }
        request(&self.addr, method, target, &all, body)
    }

    /// `GET target` with this registry's own credentials.
    pub fn get(&self, target: &str) -> anyhow::Result<Response> {
        self.request("GET", target, &[], &[], self.auth.as_ref())
    }

    /// `GET /v2/<repo>/manifests/<reference>` accepting every OCI and Docker manifest type.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> anyhow::Result<Response> {
        let accept = [
            crate::oci::media_type::OCI_INDEX,
            crate::oci::media_type::OCI_MANIFEST,
            crate::oci::media_type::DOCKER_MANIFEST_LIST,
            crate::oci::media_type::DOCKER_MANIFEST,
        ]
        .join(", ");
        self.request(
            "GET",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Accept", &accept)],
            &[],
            self.auth.as_ref(),
        )
    }

    /// Pushes an image or index and tags it, with this registry's own credentials. Returns
    /// the digest the tag points at.
    pub fn push_image<'a>(
        &self,
        repo: &str,
        tag: &str,
        artifact: impl Into<ArtifactRef<'a>>,
    ) -> anyhow::Result<Digest> {
        self.push_with_auth(repo, tag, artifact.into(), self.auth.as_ref())
    }

    /// Pushes the artifact named `ref_name` in an OCI layout (blobs are re-verified).
    pub fn push_layout(
        &self,
        repo: &str,
        tag: &str,
        layout: &OciLayout,
        ref_name: &str,
    ) -> anyhow::Result<Digest> {
        let artifact = layout.load(ref_name)?;
        self.push_with_auth(repo, tag, artifact.as_artifact_ref(), self.auth.as_ref())
    }

    /// Pushes blobs, child manifests (by digest) and the top manifest (by `tag`).
    pub fn push_with_auth(
        &self,
        repo: &str,
        tag: &str,
        artifact: ArtifactRef<'_>,
        auth: Option<&BasicAuth>,
    ) -> anyhow::Result<Digest> {
        let is_index = matches!(artifact, ArtifactRef::Index(_));
        for image in artifact.images() {
            for blob in image.blobs() {
                self.push_blob(repo, blob, auth)?;
            }
            if is_index {
                self.put_manifest(repo, &image.digest().to_string(), &image.manifest, auth)?;
            }
        }
        self.put_manifest(repo, tag, artifact.top(), auth)
    }

    /// Uploads one blob monolithically (POST then PUT `?digest=`), unless already present.
    pub fn push_blob(
        &self,
        repo: &str,
        blob: &Blob,
        auth: Option<&BasicAuth>,
    ) -> anyhow::Result<()> {
        let head = self.request(
            "HEAD",
            &format!("/v2/{repo}/blobs/{}", blob.digest),
            &[],
            &[],
            auth,
        )?;
        if head.status == 200 {
            return Ok(());
        }
        let start = self.request(
            "POST",
            &format!("/v2/{repo}/blobs/uploads/"),
            &[],
            &[],
            auth,
        )?;
        ensure!(
            start.status == 202,
            "starting upload to {repo}: HTTP {} {}",
            start.status,
            start.text()
        );
        let location = start
            .header("Location")
            .context("upload without Location")?;
        let location = path_of(location);
        let separator = if location.contains('?') { '&' } else { '?' };
        let target = format!("{location}{separator}digest={}", blob.digest);
        let done = self.request(
            "PUT",
            &target,
            &[("Content-Type", "application/octet-stream")],
            &blob.data,
            auth,
        )?;
        ensure!(
            done.status == 201,
            "uploading {} to {repo}: HTTP {} {}",
            blob.digest,
            done.status,
            done.text()
        );
        Ok(())
    }

    /// `PUT /v2/<repo>/manifests/<reference>` with the blob's media type as Content-Type.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        manifest: &Blob,
        auth: Option<&BasicAuth>,
    ) -> anyhow::Result<Digest> {
        let response = self.request(
            "PUT",
            &format!("/v2/{repo}/manifests/{reference}"),
            &[("Content-Type", &manifest.media_type)],
            &manifest.data,
            auth,
        )?;
        ensure!(
            response.status == 201,
            "putting manifest {repo}:{reference}: HTTP {} {}",
            response.status,
            response.text()
        );
        if let Some(digest) = response.header("Docker-Content-Digest") {
            let digest: Digest = digest.parse()?;
            ensure!(
                digest == manifest.digest,
                "registry computed {digest}, expected {}",
                manifest.digest
            );
        }
        Ok(manifest.digest.clone())
    }

    /// The data file of a stored blob.
    pub fn blob_data_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hex();
        self.storage_dir()
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Flips one byte in the middle of a stored blob, keeping its size, so the registry serves
    /// the wrong bytes under the old digest and a client must notice.
    pub fn corrupt_blob(&self, digest: &Digest) -> anyhow::Result<()> {
        let path = self.blob_data_path(digest);
        let mut data = fs_err::read(&path)?;
        ensure!(
            !data.is_empty(),
            "blob {digest} is empty; nothing to corrupt"
        );
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
        fs_err::write(&path, data)?;
        Ok(())
    }

    /// Overwrites a stored blob's data file with arbitrary bytes.
    pub fn replace_blob_data(&self, digest: &Digest, data: &[u8]) -> anyhow::Result<()> {
        let path = self.blob_data_path(digest);
        ensure!(path.exists(), "blob {digest} is not stored");
        fs_err::write(&path, data)?;
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Ok(true) when the log says it listens on `addr` and `GET /v2/` answers 200 or 401, Ok(false) when the process exited first,
/// Err after [`READY_TIMEOUT`].
fn wait_ready(child: &mut Child, addr: &str, log_path: &Path) -> anyhow::Result<bool> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if child.try_wait()?.is_some() {
            return Ok(false);
        }
        // The log line proves that *our* process bound the port (another registry that won
        // a race for the same port would answer /v2/ too).
        if read_log(log_path).contains(&format!("listening on {addr}"))
            && let Ok(response) = request(addr, "GET", "/v2/", &[], &[])
            && matches!(response.status, 200 | 401)
        {
            return Ok(true);
        }
        if Instant::now() > deadline {
            bail!(
                "docker-registry on {addr} not ready after {READY_TIMEOUT:?}; log:\n{}",
                read_log(log_path)
            );
        }
        thread::sleep(Duration::from_millis(25));
    }
}

fn read_log(path: &Path) -> String {
    fs_err::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// A Docker `config.json` holding `user`/`password` for the registry at `addr`, as
/// `docker login` writes it: what lkb reads for pulls and for an `oci://` remote cache.
pub fn docker_config_json(addr: &str, user: &str, password: &str) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    serde_json::json!({ "auths": { addr: { "auth": auth } } }).to_string()
}

/// A port that was free a moment ago (bind 127.0.0.1:0, read it, release it).
pub fn free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn make_htpasswd(auth: &BasicAuth) -> anyhow::Result<Vec<u8>> {
    let output = Command::new("htpasswd")
        .args(["-Bbn", &auth.user, &auth.password])
        .stdin(Stdio::null())
        .output()
        .context("running htpasswd (Debian package apache2-utils)")?;
    ensure!(
        output.status.success(),
        "htpasswd failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout)?;
    Ok(format!("{}\n", text.trim()).into_bytes())
}

fn config_yaml(dir: &Path, addr: &str, htpasswd: Option<&Path>) -> String {
    let mut yaml = format!(
        "version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  secret: lkb-tests-not-a-secret
health:
  storagedriver:
    enabled: false
",
        storage = dir.join("storage").display(),
    );
    if let Some(path) = htpasswd {
        yaml.push_str(&format!(
            "auth:\n  htpasswd:\n    realm: lkb-tests\n    path: {}\n",
            path.display()
        ));
    }
    yaml
}
