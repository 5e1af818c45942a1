//! No-panic fuzzing of what the registry client parses from the network: manifests, indexes,
//! `WWW-Authenticate` headers and token replies, with [`lkb_tests::mutate`]'s deterministic
//! mutations of real documents. The parsers are driven directly, then the whole client against a
//! fault registry serving the mutated documents; every outcome must be a value or an error that
//! is not an internal one, never a panic.

use std::panic::{AssertUnwindSafe, catch_unwind};

use lkb_rules::oci::{
    ImageRef, Manifest, OciError, Platform, RegistryClient, RegistryConfig, parse_manifest,
    parse_www_authenticate, select_manifest,
};
use lkb_store::{ErrorCategory, Store};
use lkb_tests::fault_registry::{FaultRegistry, TokenReply};
use lkb_tests::mutate::{Rng, mutate, show};
use lkb_tests::oci::{Blob, Flavor, Image, ImageBuilder, IndexBuilder, Layer, Platform as P};

fn image(platform: P, flavor: Flavor) -> Image {
    ImageBuilder::new()
        .platform(platform.clone())
        .flavor(flavor)
        .layer(Layer::new().file("etc/platform", platform.to_string()))
        .build()
        .unwrap()
}

/// Real documents to mutate: OCI and Docker manifests and indexes.
fn documents() -> Vec<Blob> {
    let mut out = Vec::new();
    for flavor in [Flavor::Oci, Flavor::Docker] {
        let amd = image(P::linux_amd64(), flavor);
        let arm = image(P::linux_arm64(), flavor);
        let index = IndexBuilder::new()
            .flavor(flavor)
            .image(amd.clone())
            .image(arm)
            .attestation_for(&amd)
            .unwrap()
            .build()
            .unwrap();
        out.push(amd.manifest.clone());
        out.push(index.index.clone());
    }
    out
}

/// Runs `f` on `input`, turning a panic into a test failure that shows the input.
fn no_panic(what: &str, case: usize, input: &[u8], f: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("{what} case {case} panicked on input {}", show(input));
    }
}

#[test]
fn manifest_parsing_never_panics() {
    let hints = [
        None,
        Some("application/vnd.oci.image.index.v1+json"),
        Some("application/vnd.docker.distribution.manifest.v2+json; charset=utf-8"),
        Some("text/plain"),
        Some(";"),
    ];
    let want = Platform::linux("amd64");
    let mut rng = Rng::new(13);
    let mut parsed = 0usize;
    for (d, doc) in documents().iter().enumerate() {
        for case in 0..3000 {
            let input = mutate(&mut rng, &doc.data);
            let hint = *rng.pick(&hints);
            no_panic(
                "manifest",
                d * 10_000 + case,
                &input,
                || match parse_manifest(&input, hint) {
                    Ok(Manifest::Index(index)) => {
                        parsed += 1;
                        let _ = select_manifest(&index.manifests, &want);
                        for m in &index.manifests {
                            let _ = (m.sha256(), m.is_attestation(), m.is_index());
                        }
                    }
                    Ok(Manifest::Image(m)) => {
                        parsed += 1;
                        let _ = m.config.sha256();
                        for l in &m.layers {
                            let _ = l.sha256();
                        }
                    }
                    Err(_) => {}
                },
            );
        }
    }
    // The mutations are not all fatal: some documents still parse and reach the later steps.
    assert!(parsed > 500, "{parsed}");
}

#[test]
fn www_authenticate_parsing_never_panics() {
    let seeds = [
        r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        r#"Basic realm="Registry Realm", Bearer realm="http://127.0.0.1:1/token",scope="repository:a/b:pull,push""#,
        r#"Bearer realm=unquoted,error="invalid_token",error_description="a \"quoted\" word""#,
        "Negotiate, NTLM",
    ];
    let mut rng = Rng::new(7235);
    for (s, seed) in seeds.iter().enumerate() {
        for case in 0..5000 {
            let input = mutate(&mut rng, seed.as_bytes());
            no_panic("www-authenticate", s * 10_000 + case, &input, || {
                let _ = parse_www_authenticate(&String::from_utf8_lossy(&input));
            });
        }
    }
}

fn client() -> RegistryClient {
    RegistryClient::new(RegistryConfig {
        retries: 0,
        connect_timeout: std::time::Duration::from_secs(2),
        read_timeout: std::time::Duration::from_secs(2),
        ..RegistryConfig::default()
    })
    .unwrap()
}

/// Resolves `fuzz/app:1` from `reg` on a task of its own, so a panic shows `input`.
async fn resolve_survives(
    c: &RegistryClient,
    reg: &FaultRegistry,
    what: &str,
    case: usize,
    input: &[u8],
) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let r = ImageRef::parse(&format!("{}/fuzz/app:1", reg.addr())).unwrap();
    let c = c.clone();
    let outcome = tokio::spawn(async move {
        c.resolve(&r, &Platform::linux("amd64"), &store)
            .await
            .map(|_| ())
    })
    .await;
    match outcome {
        Err(e) if e.is_panic() => panic!("{what} case {case} panicked on input {}", show(input)),
        Err(e) => panic!("{what} case {case}: {e}"),
        Ok(Err(e @ OciError::Internal(_))) => {
            panic!(
                "{what} case {case}: internal error {e} on input {}",
                show(input)
            )
        }
        Ok(Err(e)) => assert_ne!(e.category(), ErrorCategory::Internal, "{e}"),
        Ok(Ok(())) => {}
    }
}

#[tokio::test]
async fn client_survives_mutated_manifests() {
    let c = client();
    let amd = image(P::linux_amd64(), Flavor::Oci);
    let arm = image(P::linux_arm64(), Flavor::Oci);
    let docs = documents();
    let mut rng = Rng::new(4096);
    for case in 0..120 {
        let doc = rng.pick(&docs);
        let input = mutate(&mut rng, &doc.data);
        let reg = FaultRegistry::builder()
            .image("fuzz/app", "amd", &amd)
            .image("fuzz/app", "arm", &arm)
            .raw_manifest(
                "fuzz/app",
                "1",
                &Blob::new(doc.media_type.clone(), input.clone()),
            )
            .start()
            .unwrap();
        resolve_survives(&c, &reg, "served manifest", case, &input).await;
    }
}

#[tokio::test]
async fn client_survives_mutated_token_replies() {
    let c = client();
    let amd = image(P::linux_amd64(), Flavor::Oci);
    let seed = format!(
        r#"{{"token":"{}","access_token":"x","expires_in":300,"issued_at":"2026-01-01T00:00:00Z"}}"#,
        lkb_tests::fault_registry::TOKEN
    );
    let mut rng = Rng::new(6750);
    for case in 0..120 {
        let input = mutate(&mut rng, seed.as_bytes());
        let reg = FaultRegistry::builder()
            .image("fuzz/app", "1", &amd)
            .token(TokenReply::Raw(input.clone()))
            .start()
            .unwrap();
        resolve_survives(&c, &reg, "token reply", case, &input).await;
    }
}
