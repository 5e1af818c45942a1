//! Registry authentication: `WWW-Authenticate` challenges, credentials, and Docker's
//! `config.json` with its credential helpers.
//!
//! Nothing here reads environment variables: the caller (the CLI) finds the config file
//! (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`) and passes a [`DockerConfig`] in.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde::Deserialize;

use super::OciError;
use super::reference::DOCKER_HUB;

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// User name and password (or personal access token).
    Basic { username: String, password: String },
    /// An OAuth2 refresh token ("identity token"), exchanged at the token endpoint.
    IdentityToken(String),
}

impl Credential {
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credential {
        Credential::Basic {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Basic { username, .. } => {
                write!(
                    f,
                    "Basic {{ username: {username:?}, password: <redacted> }}"
                )
            }
            Credential::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// One authentication challenge from a `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
    Basic {
        realm: Option<String>,
    },
    Other {
        scheme: String,
    },
}

/// Parses a `WWW-Authenticate` header value (RFC 7235): one or more challenges, each a scheme
/// followed by comma-separated `name=value` parameters whose values are tokens or quoted strings
/// (commas inside quotes, as in multi-action scopes, are kept).
pub fn parse_www_authenticate(header: &str) -> Vec<Challenge> {
    let mut p = Cursor {
        s: header.as_bytes(),
        i: 0,
    };
    let mut raw: Vec<(String, BTreeMap<String, String>)> = Vec::new();
    loop {
        p.skip(|c| c == b' ' || c == b'\t' || c == b',');
        if p.done() {
            break;
        }
        let scheme = p.token();
        if scheme.is_empty() {
            // Unparseable junk: skip one byte and try to resynchronise.
            p.i += 1;
            continue;
        }
        let mut params = BTreeMap::new();
        loop {
            p.skip(|c| c == b' ' || c == b'\t');
            let save = p.i;
            let name = p.token();
            if name.is_empty() {
                // token68 (e.g. "Basic abc==") or end of this challenge: skip to next comma.
                p.skip(|c| c != b',');
                if p.done() {
                    break;
                }
                p.i += 1;
                let save2 = p.i;
                p.skip(|c| c == b' ' || c == b'\t');
                let next = p.token();
                p.skip(|c| c == b' ' || c == b'\t');
                let is_param = !next.is_empty() && p.peek() == Some(b'=');
                p.i = save2;
                if is_param {
                    continue;
                }
                break;
            }
            p.skip(|c| c == b' ' || c == b'\t');
            if p.peek() != Some(b'=') {
                // Not a parameter: the start of the next challenge.
                p.i = save;
                break;
            }
            p.i += 1;
            p.skip(|c| c == b' ' || c == b'\t');
            let value = if p.peek() == Some(b'"') {
                p.quoted()
            } else {
                let start = p.i;
                p.skip(|c| c != b',' && c != b' ' && c != b'\t');
                String::from_utf8_lossy(&p.s[start..p.i]).into_owned()
            };
            params.insert(name.to_ascii_lowercase(), value);
            p.skip(|c| c == b' ' || c == b'\t');
            if p.peek() == Some(b',') {
                p.i += 1;
                continue;
            }
            break;
        }
        raw.push((scheme, params));
    }
    raw.into_iter()
        .map(
            |(scheme, mut params)| match scheme.to_ascii_lowercase().as_str() {
                "bearer" => Challenge::Bearer {
                    realm: params.remove("realm").unwrap_or_default(),
                    service: params.remove("service"),
                    scope: params.remove("scope"),
                },
                "basic" => Challenge::Basic {
                    realm: params.remove("realm"),
                },
                _ => Challenge::Other { scheme },
            },
        )
        .collect()
}

struct Cursor<'a> {
    s: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn done(&self) -> bool {
        self.i >= self.s.len()
    }
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }
    fn skip(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek().is_some_and(&f) {
            self.i += 1;
        }
    }
    /// An RFC 7230 token.
    fn token(&mut self) -> String {
        let start = self.i;
        self.skip(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c));
        String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
    }
    /// A quoted string starting at the current '"', with backslash escapes.
    fn quoted(&mut self) -> String {
        let mut out = Vec::new();
        self.i += 1;
        while let Some(c) = self.peek() {
            self.i += 1;
            match c {
                b'"' => break,
                b'\\' => {
                    if let Some(n) = self.peek() {
                        out.push(n);
                        self.i += 1;
                    }
                }
                _ => out.push(c),
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default)]
    creds_store: Option<String>,
    #[serde(default)]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Deserialize, Default, Clone)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default, alias = "identityToken")]
    identitytoken: Option<String>,
}

/// Docker's client configuration (`config.json`): inline `auths`, `credsStore`, `credHelpers`.
///
/// Credential helpers are run as `docker-credential-<name> get`. By default the program is
/// looked up on the process's `PATH`; [`DockerConfig::with_helper_dirs`] restricts the lookup to
/// given directories instead (tests use this; so can a hermetic CLI).
#[derive(Clone, Default)]
pub struct DockerConfig {
    path: Option<PathBuf>,
    auths: BTreeMap<String, AuthEntry>,
    creds_store: Option<String>,
    cred_helpers: BTreeMap<String, String>,
    helper_dirs: Option<Vec<PathBuf>>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &self.auths.keys().collect::<Vec<_>>())
            .field("creds_store", &self.creds_store)
            .field("cred_helpers", &self.cred_helpers)
            .field("helper_dirs", &self.helper_dirs)
            .finish()
    }
}

impl DockerConfig {
    /// No credentials at all.
    pub fn empty() -> DockerConfig {
        DockerConfig::default()
    }

    /// Loads `config.json` from `path`. A missing file is an empty config; a malformed one is an
    /// error naming the file.
    pub fn load(path: &Path) -> Result<DockerConfig, OciError> {
        match fs_err::read(path) {
            Ok(bytes) => DockerConfig::from_json(&bytes, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DockerConfig {
                path: Some(path.to_path_buf()),
                ..DockerConfig::default()
            }),
            Err(e) => Err(OciError::DockerConfig {
                path: path.to_path_buf(),
                detail: e.to_string(),
            }),
        }
    }

    /// Loads `<dir>/config.json` (the meaning of `$DOCKER_CONFIG`).
    pub fn load_dir(dir: &Path) -> Result<DockerConfig, OciError> {
        DockerConfig::load(&dir.join("config.json"))
    }

    /// Parses config JSON; `origin` only names the file in errors.
    pub fn from_json(bytes: &[u8], origin: &Path) -> Result<DockerConfig, OciError> {
        let file: ConfigFile = if bytes.iter().all(u8::is_ascii_whitespace) {
            ConfigFile::default()
        } else {
            serde_json::from_slice(bytes).map_err(|e| OciError::DockerConfig {
                path: origin.to_path_buf(),
                detail: format!("invalid JSON: {e}"),
            })?
        };
        let mut auths = BTreeMap::new();
        for (k, v) in file.auths {
            auths.insert(registry_key(&k), v);
        }
        let cred_helpers = file
            .cred_helpers
            .into_iter()
            .map(|(k, v)| (registry_key(&k), v))
            .collect();
        Ok(DockerConfig {
            path: Some(origin.to_path_buf()),
            auths,
            creds_store: file.creds_store.filter(|s| !s.is_empty()),
            cred_helpers,
            helper_dirs: None,
        })
    }

    /// Look for `docker-credential-*` programs only in these directories.
    pub fn with_helper_dirs(mut self, dirs: Vec<PathBuf>) -> DockerConfig {
        self.helper_dirs = Some(dirs);
        self
    }

    /// Where this config came from, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The credentials for `registry` (as in a canonical reference: `docker.io`, `host:port`).
    ///
    /// Order: a `credHelpers` entry for the registry, then inline `auths` credentials, then the
    /// `credsStore`. This may run a helper program, so it blocks; call it from a blocking
    /// context.
    pub fn lookup(&self, registry: &str) -> Result<Option<Credential>, OciError> {
        let key = registry_key(registry);
        if let Some(helper) = self.cred_helpers.get(&key) {
            return self.run_helper(helper, &key);
        }
        if let Some(entry) = self.auths.get(&key)
            && let Some(c) = self.inline(entry, &key)?
        {
            return Ok(Some(c));
        }
        if let Some(store) = &self.creds_store {
            return self.run_helper(store, &key);
        }
        Ok(None)
    }

    fn inline(&self, e: &AuthEntry, key: &str) -> Result<Option<Credential>, OciError> {
        if let Some(t) = e.identitytoken.as_deref().filter(|t| !t.is_empty()) {
            return Ok(Some(Credential::IdentityToken(t.to_string())));
        }
        if let Some(auth) = e.auth.as_deref().map(str::trim).filter(|a| !a.is_empty()) {
            let bad = |detail: String| OciError::DockerConfig {
                path: self.path.clone().unwrap_or_default(),
                detail: format!("auths entry for {key}: {detail}"),
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .map_err(|e| bad(format!("\"auth\" is not base64: {e}")))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| bad("\"auth\" is not UTF-8 user:password".into()))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad("\"auth\" does not decode to user:password".into()))?;
            return Ok(Some(Credential::basic(u, p)));
        }
        match (&e.username, &e.password) {
            (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credential::basic(u, p))),
            _ => Ok(None),
        }
    }

    fn helper_program(&self, name: &str) -> Option<PathBuf> {
        let file = format!("docker-credential-{name}");
        match &self.helper_dirs {
            None => Some(PathBuf::from(file)),
            Some(dirs) => dirs.iter().map(|d| d.join(&file)).find(|p| p.is_file()),
        }
    }

    fn run_helper(&self, name: &str, key: &str) -> Result<Option<Credential>, OciError> {
        let server = helper_server_url(key);
        let fail = |detail: String| OciError::CredentialHelper {
            helper: name.to_string(),
            server: server.clone(),
            detail,
        };
        if name.is_empty() || name.contains('/') || name.contains('\\') {
            return Err(fail(format!("invalid helper name {name:?}")));
        }
        let Some(program) = self.helper_program(name) else {
            tracing::warn!(
                helper = name,
                registry = key,
                "credential helper docker-credential-{name} not found; continuing without credentials"
            );
            return Ok(None);
        };
        let child = Command::new(&program)
            .arg("get")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    helper = name,
                    registry = key,
                    "credential helper docker-credential-{name} not found; continuing without credentials"
                );
                return Ok(None);
            }
            Err(e) => return Err(fail(format!("cannot run {}: {e}", program.display()))),
        };
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading gives EPIPE here; its exit status tells more.
            let _ = stdin.write_all(server.as_bytes());
        }
        let out = child
            .wait_with_output()
            .map_err(|e| fail(format!("waiting for {}: {e}", program.display())))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let msg = format!(
                "{} {}",
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            if msg.to_ascii_lowercase().contains("credentials not found") {
                return Ok(None);
            }
            return Err(fail(format!("exited with {}: {}", out.status, msg.trim())));
        }
        #[derive(Deserialize)]
        struct HelperReply {
            #[serde(rename = "Username", default)]
            username: String,
            #[serde(rename = "Secret", default)]
            secret: String,
        }
        let reply: HelperReply = serde_json::from_str(stdout.trim())
            .map_err(|e| fail(format!("unparseable reply: {e}")))?;
        if reply.secret.is_empty() {
            return Ok(None);
        }
        if reply.username == "<token>" {
            return Ok(Some(Credential::IdentityToken(reply.secret)));
        }
        Ok(Some(Credential::basic(reply.username, reply.secret)))
    }
}

/// Normalises a config key or registry name: drops a URL scheme and path, lower-cases, and maps
/// every Docker Hub alias to `docker.io`.
pub(crate) fn registry_key(s: &str) -> String {
    let s = s.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let host = s.split('/').next().unwrap_or(s).to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" | "docker.io" => {
            DOCKER_HUB.to_string()
        }
        _ => host,
    }
}

/// What credential helpers are asked for: Docker Hub's historic URL, else the host.
fn helper_server_url(key: &str) -> String {
    if key == DOCKER_HUB {
        "https://index.docker.io/v1/".to_string()
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#;
        assert_eq!(
            parse_www_authenticate(h),
            vec![Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/alpine:pull".into()),
            }]
        );
    }

    #[test]
    fn bearer_with_commas_in_scope_spaces_and_escapes() {
        let h = r#"bearer  realm = "http://127.0.0.1:9/t\"x" , scope="repository:a/b:pull,push", service=reg"#;
        assert_eq!(
            parse_www_authenticate(h),
            vec![Challenge::Bearer {
                realm: "http://127.0.0.1:9/t\"x".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            }]
        );
    }

    #[test]
    fn basic_and_multiple_challenges() {
        assert_eq!(
            parse_www_authenticate(r#"Basic realm="Registry Realm""#),
            vec![Challenge::Basic {
                realm: Some("Registry Realm".into())
            }]
        );
        assert_eq!(
            parse_www_authenticate("Basic"),
            vec![Challenge::Basic { realm: None }]
        );
        let both = r#"Negotiate abc==, Basic realm="r", Bearer realm="https://x/t",service="s""#;
        assert_eq!(
            parse_www_authenticate(both),
            vec![
                Challenge::Other {
                    scheme: "Negotiate".into()
                },
                Challenge::Basic {
                    realm: Some("r".into())
                },
                Challenge::Bearer {
                    realm: "https://x/t".into(),
                    service: Some("s".into()),
                    scope: None
                },
            ]
        );
        assert!(parse_www_authenticate("").is_empty());
    }

    #[test]
    fn inline_auths() {
        let json = format!(
            r#"{{"auths":{{
                "https://index.docker.io/v1/":{{"auth":"{}"}},
                "localhost:5000":{{"username":"u","password":"p:w"}},
                "tok.example.com":{{"identitytoken":"refresh"}},
                "empty.example.com":{{}}
            }}}}"#,
            b64("hubuser:hub:pass")
        );
        let c = DockerConfig::from_json(json.as_bytes(), Path::new("/x/config.json")).unwrap();
        assert_eq!(
            c.lookup("docker.io").unwrap(),
            Some(Credential::basic("hubuser", "hub:pass"))
        );
        assert_eq!(
            c.lookup("localhost:5000").unwrap(),
            Some(Credential::basic("u", "p:w"))
        );
        assert_eq!(
            c.lookup("tok.example.com").unwrap(),
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert_eq!(c.lookup("empty.example.com").unwrap(), None);
        assert_eq!(c.lookup("other.example.com").unwrap(), None);
    }

    #[test]
    fn bad_config_names_the_file() {
        let e = DockerConfig::from_json(b"{nope", Path::new("/x/config.json")).unwrap_err();
        assert!(e.to_string().contains("/x/config.json"), "{e}");
        let json = r#"{"auths":{"r.io":{"auth":"!!!"}}}"#;
        let c = DockerConfig::from_json(json.as_bytes(), Path::new("/y/config.json")).unwrap();
        let e = c.lookup("r.io").unwrap_err();
        assert!(
            e.to_string().contains("/y/config.json") && e.to_string().contains("r.io"),
            "{e}"
        );
        assert!(
            DockerConfig::from_json(b"  \n", Path::new("/z"))
                .unwrap()
                .lookup("a.io")
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let c = DockerConfig::load_dir(dir.path()).unwrap();
        assert_eq!(c.lookup("docker.io").unwrap(), None);
    }

    #[cfg(unix)]
    fn write_helper(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let p = dir.join(format!("docker-credential-{name}"));
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn credential_helpers() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("asked");
        // Echoes the server it was asked about into a file, and answers per server.
        write_helper(
            dir.path(),
            "fake",
            &format!(
                r#"[ "$1" = get ] || exit 3
read -r server
echo "$server" >> {log}
case "$server" in
  https://index.docker.io/v1/) echo '{{"ServerURL":"x","Username":"hub","Secret":"s3cret"}}' ;;
  tok.example.com) echo '{{"Username":"<token>","Secret":"refresh"}}' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac"#,
                log = log.display()
            ),
        );
        write_helper(dir.path(), "broken", "echo boom >&2; exit 7");
        let json = r#"{"auths":{"inline.example.com":{"auth":"dTpw"}},
            "credsStore":"fake",
            "credHelpers":{"broken.example.com":"broken","missing.example.com":"nothere"}}"#;
        let c = DockerConfig::from_json(json.as_bytes(), Path::new("/c.json"))
            .unwrap()
            .with_helper_dirs(vec![dir.path().to_path_buf()]);
        assert_eq!(
            c.lookup("docker.io").unwrap(),
            Some(Credential::basic("hub", "s3cret"))
        );
        assert_eq!(
            c.lookup("tok.example.com").unwrap(),
            Some(Credential::IdentityToken("refresh".into()))
        );
        assert_eq!(c.lookup("nope.example.com").unwrap(), None);
        // Inline credentials win over the store (and the helper is not asked).
        assert_eq!(
            c.lookup("inline.example.com").unwrap(),
            Some(Credential::basic("u", "p"))
        );
        let e = c.lookup("broken.example.com").unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("docker-credential-broken") && msg.contains("boom"),
            "{msg}"
        );
        assert!(matches!(
            e.category(),
            lkb_store::ErrorCategory::Environment
        ));
        assert_eq!(c.lookup("missing.example.com").unwrap(), None);
        let asked = std::fs::read_to_string(&log).unwrap();
        assert_eq!(
            asked.lines().collect::<Vec<_>>(),
            vec![
                "https://index.docker.io/v1/",
                "tok.example.com",
                "nope.example.com"
            ]
        );
    }

    #[test]
    fn keys_normalise() {
        assert_eq!(registry_key("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(registry_key("registry-1.docker.io"), "docker.io");
        assert_eq!(registry_key("http://LocalHost:5000/"), "localhost:5000");
        assert_eq!(
            helper_server_url("docker.io"),
            "https://index.docker.io/v1/"
        );
    }

    #[test]
    fn debug_redacts() {
        let s = format!("{:?}", Credential::basic("u", "hunter2"));
        assert!(!s.contains("hunter2"));
    }
}
