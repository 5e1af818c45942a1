//! A hostile registry for tests: a small HTTP/1.1 server on `127.0.0.1:<free port>` that serves
//! the distribution API's read side (`/v2/`, manifests, blobs, and optionally a bearer-token
//! endpoint) for images built in code, and misbehaves on request: slow bodies, bodies that stall
//! after some bytes, responses whose headers never come, truncated bodies, wrong bytes, huge or
//! odd token replies.
//!
//! It runs on threads of the test process; dropping the [`FaultRegistry`] stops it (stalled
//! connections are released within a few milliseconds). Every request is logged, so a test can
//! count how often the client tried.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use anyhow::Context as _;

use crate::oci::{Blob, Image};

/// How one response misbehaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Sends the body `bytes_per_second` bytes a second, one byte at a time.
    SlowBody { bytes_per_second: u32 },
    /// Announces the full length, sends this many bytes of the body, then goes silent with the
    /// connection open.
    StallAfter(usize),
    /// Reads the request and never answers.
    StallHeaders,
    /// Announces the full length, sends this many bytes of the body, then closes.
    Truncate(usize),
    /// Sends bytes of the right length that do not hash to the requested digest.
    WrongDigest,
    /// Answers with this status and a long error body trickled at ten bytes a second.
    SlowError(u16),
}

/// What a fault applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// `GET /v2/<repo>/manifests/<anything>`.
    Manifests,
    /// `GET /v2/<repo>/blobs/<digest>`, digest as `sha256:<hex>`.
    Blob(String),
    /// The token endpoint.
    Token,
}

/// The token endpoint's behaviour; with one configured, `/v2/` requests need `Bearer <token>`.
#[derive(Clone, Debug)]
pub enum TokenReply {
    /// `{"token": <token>, "expires_in": <raw JSON text>}`.
    ExpiresIn(String),
    /// A JSON body of about this many bytes (a long token string).
    Huge(usize),
    /// These bytes, as they are.
    Raw(Vec<u8>),
}

/// The token every token reply hands out.
pub const TOKEN: &str = "fault-registry-token";

#[derive(Clone, Debug)]
struct Rule {
    fault: Fault,
    /// Requests this rule still applies to; `None`: all.
    remaining: Option<usize>,
}

#[derive(Default)]
struct Content {
    /// `repo/reference` → (media type, bytes); references are tags and digests.
    manifests: BTreeMap<String, (String, Vec<u8>)>,
    /// `sha256:<hex>` → bytes.
    blobs: BTreeMap<String, Vec<u8>>,
    token: Option<TokenReply>,
    rules: BTreeMap<Target, Rule>,
}

/// Builds a [`FaultRegistry`].
#[derive(Default)]
pub struct FaultRegistryBuilder {
    content: Content,
}

impl FaultRegistryBuilder {
    /// Serves `image` as `repo:tag` (and by digest).
    pub fn image(mut self, repo: &str, tag: &str, image: &Image) -> Self {
        let m = &image.manifest;
        for reference in [tag.to_string(), m.digest.to_string()] {
            self.content.manifests.insert(
                format!("{repo}/{reference}"),
                (m.media_type.clone(), m.data.clone()),
            );
        }
        for b in image.blobs() {
            self.content
                .blobs
                .insert(b.digest.to_string(), b.data.clone());
        }
        self
    }

    /// Serves `manifest` (any bytes) under `repo:tag`.
    pub fn raw_manifest(mut self, repo: &str, tag: &str, manifest: &Blob) -> Self {
        self.content.manifests.insert(
            format!("{repo}/{tag}"),
            (manifest.media_type.clone(), manifest.data.clone()),
        );
        self
    }

    /// Requires bearer tokens, answered by `reply`.
    pub fn token(mut self, reply: TokenReply) -> Self {
        self.content.token = Some(reply);
        self
    }

    /// Applies `fault` to every request for `target`.
    pub fn fault(mut self, target: Target, fault: Fault) -> Self {
        self.content.rules.insert(
            target,
            Rule {
                fault,
                remaining: None,
            },
        );
        self
    }

    /// Applies `fault` to the first `times` requests for `target` only.
    pub fn fault_first(mut self, target: Target, fault: Fault, times: usize) -> Self {
        self.content.rules.insert(
            target,
            Rule {
                fault,
                remaining: Some(times),
            },
        );
        self
    }

    /// Binds a free port on 127.0.0.1 and starts serving.
    pub fn start(self) -> anyhow::Result<FaultRegistry> {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?.to_string();
        let shared = Arc::new(Shared {
            addr: addr.clone(),
            content: Mutex::new(self.content),
            log: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let accept = thread::spawn(move || accept_loop(&listener, &s));
        Ok(FaultRegistry {
            shared,
            accept: Some(accept),
        })
    }
}

struct Shared {
    addr: String,
    content: Mutex<Content>,
    log: Mutex<Vec<String>>,
    stop: AtomicBool,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }
}

/// A running hostile registry; see the module docs.
pub struct FaultRegistry {
    shared: Arc<Shared>,
    accept: Option<thread::JoinHandle<()>>,
}

impl std::fmt::Debug for FaultRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultRegistry")
            .field("addr", &self.shared.addr)
            .finish_non_exhaustive()
    }
}

impl FaultRegistry {
    pub fn builder() -> FaultRegistryBuilder {
        FaultRegistryBuilder::default()
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> &str {
        &self.shared.addr
    }

    /// `"<METHOD> <path>"` of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// How many requests had a path containing `needle`.
    pub fn hits(&self, needle: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.contains(needle))
            .count()
    }
}

impl Drop for FaultRegistry {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: &TcpListener, shared: &Arc<Shared>) {
    while !shared.stopped() {
        match listener.accept() {
            Ok((conn, _)) => {
                let s = shared.clone();
                thread::spawn(move || {
                    let _ = serve(conn, &s);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(_) => thread::sleep(Duration::from_millis(5)),
        }
    }
}

struct Request {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
}

fn read_request(reader: &mut BufReader<TcpStream>) -> std::io::Result<Option<Request>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l)? == 0 {
            return Ok(None);
        }
        let l = l.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    Ok(Some(Request {
        method,
        path,
        headers,
    }))
}

/// A response before faults are applied.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

enum Body {
    Bytes(Vec<u8>),
    /// A JSON token reply of about this many bytes, generated while sending.
    HugeToken(usize),
}

impl Body {
    fn len(&self) -> usize {
        match self {
            Body::Bytes(b) => b.len(),
            Body::HugeToken(n) => huge_token_prefix().len() + n + huge_token_suffix().len(),
        }
    }
}

fn huge_token_prefix() -> &'static [u8] {
    b"{\"token\":\""
}

fn huge_token_suffix() -> &'static [u8] {
    b"\"}"
}

fn json(status: u16, body: &str) -> Response {
    Response {
        status,
        headers: vec![("Content-Type".into(), "application/json".into())],
        body: Body::Bytes(body.as_bytes().to_vec()),
    }
}

fn serve(conn: TcpStream, shared: &Shared) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    while let Some(req) = read_request(&mut reader)? {
        shared
            .log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(format!("{} {}", req.method, req.path));
        let (resp, fault) = route(&req, shared);
        if !send(&mut out, resp, fault.as_ref(), shared)? {
            return Ok(());
        }
    }
    Ok(())
}

/// The response to a request and the fault to apply to it, if any.
fn route(req: &Request, shared: &Shared) -> (Response, Option<Fault>) {
    let mut content = shared.content.lock().unwrap_or_else(|p| p.into_inner());
    let path = req.path.split('?').next().unwrap_or_default();
    if path == "/token" {
        let fault = take_fault(&mut content, &Target::Token);
        let resp = match &content.token {
            Some(TokenReply::ExpiresIn(raw)) => {
                json(200, &format!(r#"{{"token":"{TOKEN}","expires_in":{raw}}}"#))
            }
            Some(TokenReply::Raw(bytes)) => Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: Body::Bytes(bytes.clone()),
            },
            Some(TokenReply::Huge(n)) => Response {
                status: 200,
                headers: vec![("Content-Type".into(), "application/json".into())],
                body: Body::HugeToken(*n),
            },
            None => json(404, "{}"),
        };
        return (resp, fault);
    }
    if content.token.is_some()
        && req.headers.get("authorization").map(String::as_str)
            != Some(format!("Bearer {TOKEN}").as_str())
    {
        let mut resp = json(
            401,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
        );
        resp.headers.push((
            "WWW-Authenticate".into(),
            format!(
                r#"Bearer realm="http://{}/token",service="fault-registry""#,
                shared.addr
            ),
        ));
        return (resp, None);
    }
    if path == "/v2/" || path == "/v2" {
        return (json(200, "{}"), None);
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return (json(404, "{}"), None);
    };
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let fault = take_fault(&mut content, &Target::Manifests);
        return match content.manifests.get(&format!("{repo}/{reference}")) {
            Some((media_type, bytes)) => (
                Response {
                    status: 200,
                    headers: vec![("Content-Type".into(), media_type.clone())],
                    body: Body::Bytes(bytes.clone()),
                },
                fault,
            ),
            None => (
                json(
                    404,
                    r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#,
                ),
                None,
            ),
        };
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let fault = take_fault(&mut content, &Target::Blob(digest.to_string()));
        return match content.blobs.get(digest) {
            Some(bytes) => (
                Response {
                    status: 200,
                    headers: vec![("Content-Type".into(), "application/octet-stream".into())],
                    body: Body::Bytes(bytes.clone()),
                },
                fault,
            ),
            None => (json(404, r#"{"errors":[{"code":"BLOB_UNKNOWN"}]}"#), None),
        };
    }
    (json(404, "{}"), None)
}

fn take_fault(content: &mut Content, target: &Target) -> Option<Fault> {
    let rule = content.rules.get_mut(target)?;
    match &mut rule.remaining {
        None => Some(rule.fault.clone()),
        Some(0) => None,
        Some(n) => {
            *n -= 1;
            Some(rule.fault.clone())
        }
    }
}

/// Writes a response with its fault; `Ok(false)`: the connection is done.
fn send(
    out: &mut TcpStream,
    resp: Response,
    fault: Option<&Fault>,
    shared: &Shared,
) -> std::io::Result<bool> {
    if fault == Some(&Fault::StallHeaders) {
        hold_open(shared);
        return Ok(false);
    }
    let (resp, fault) = match fault {
        Some(Fault::SlowError(status)) => {
            let message = "x".repeat(64 * 1024);
            let body = format!(r#"{{"errors":[{{"code":"SLOW","message":"{message}"}}]}}"#);
            let mut r = json(*status, &body);
            r.status = *status;
            (
                r,
                Some(&Fault::SlowBody {
                    bytes_per_second: 10,
                }),
            )
        }
        other => (resp, other),
    };
    let mut head = format!(
        "HTTP/1.1 {} Fault\r\nContent-Length: {}\r\n",
        resp.status,
        resp.body.len()
    );
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    let body = match resp.body {
        Body::Bytes(b) => b,
        Body::HugeToken(n) => {
            out.write_all(huge_token_prefix())?;
            let piece = vec![b'a'; 64 * 1024];
            let mut left = n;
            while left > 0 && !shared.stopped() {
                let k = left.min(piece.len());
                out.write_all(&piece[..k])?;
                left -= k;
            }
            out.write_all(huge_token_suffix())?;
            return Ok(true);
        }
    };
    match fault {
        None | Some(Fault::StallHeaders | Fault::SlowError(_)) => out.write_all(&body)?,
        Some(Fault::WrongDigest) => {
            let mut wrong = body;
            match wrong.first_mut() {
                Some(b) => *b ^= 0xff,
                None => wrong.push(0),
            }
            out.write_all(&wrong)?;
        }
        Some(Fault::Truncate(n)) => {
            out.write_all(&body[..(*n).min(body.len())])?;
            out.flush()?;
            return Ok(false);
        }
        Some(Fault::StallAfter(n)) => {
            out.write_all(&body[..(*n).min(body.len())])?;
            out.flush()?;
            hold_open(shared);
            return Ok(false);
        }
        Some(Fault::SlowBody { bytes_per_second }) => {
            let pause = Duration::from_secs(1) / (*bytes_per_second).max(1);
            for b in &body {
                if shared.stopped() {
                    return Ok(false);
                }
                out.write_all(std::slice::from_ref(b))?;
                out.flush()?;
                thread::sleep(pause);
            }
        }
    }
    out.flush()?;
    Ok(true)
}

/// Keeps a connection open and silent until the registry is dropped.
fn hold_open(shared: &Shared) {
    while !shared.stopped() {
        thread::sleep(Duration::from_millis(10));
    }
}
