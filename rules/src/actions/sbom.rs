//! `sbom.spdx.json` (reference §2.7): the SPDX documents of the images' in-toto attestations,
//! merged into one SPDX 2.3 JSON document at the end of the root filesystem.
//!
//! Merging follows LinuxKit's `SbomGenerator` on top of `spdx/tools-golang`: each image's file
//! names and package file names get the image's extraction prefix (Go `filepath.Join`), and
//! packages, files, extracted licensing infos, relationships, annotations and external
//! document references are concatenated. As `tools-golang` does when it reads a document,
//! `documentDescribes` and a package's `hasFiles` become `DESCRIBES` / `CONTAINS`
//! relationships. Objects are otherwise kept as the images wrote them.
//!
//! Unlike LinuxKit, whose namespace ends in a random UUID (so no two builds are equal,
//! reference §8.7), the namespace here is derived from the sha256 of the document written
//! with an empty namespace: the same inputs give the same bytes.

use std::collections::BTreeSet;

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, BlobRef, Store};
use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use super::{GENERATED_FILE, insert, tree_outputs, tree_result};
use crate::indexes::SPDX_PREDICATE_TYPE;
use crate::tree::{Entry, Tree};

/// Where LinuxKit writes the SBOM (its `--sbom-output` default).
pub const SBOM_PATH: &str = "sbom.spdx.json";
/// Namespace prefix, as LinuxKit writes it.
const NAMESPACE_PREFIX: &str = "https://github.com/linuxkit/linuxkit/sbom-";
/// Bump when the document written for the same inputs changes.
const SBOM_FORMAT_VERSION: u64 = 1;

/// One SPDX document to merge: the in-toto statement in input `input` (artifact `blob`),
/// whose paths get `prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SbomPart {
    /// Where the image was extracted: `""` for the kernel and init images,
    /// `containers/onboot/000-x/lower/` for a container.
    pub prefix: String,
    pub input: usize,
}

/// Merges the SPDX attestations of the images into `sbom.spdx.json`.
#[derive(Debug)]
pub struct SbomAction {
    pub parts: Vec<SbomPart>,
    /// `creationInfo.created`, seconds since the epoch (LinuxKit's default mtime by default).
    pub created: i64,
}

#[async_trait]
impl Action for SbomAction {
    fn kind(&self) -> &'static str {
        "sbom"
    }
    fn label(&self) -> String {
        format!("SBOM ({} SPDX documents)", self.parts.len())
    }
    fn identity(&self) -> String {
        "sbom".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("parts", |k| {
            k.list(self.parts.iter(), |k, part| {
                k.str(&part.prefix).u64(part.input as u64);
            });
        })
        .field("created", |k| {
            k.u64(self.created as u64);
        })
        .field("format", |k| {
            k.u64(SBOM_FORMAT_VERSION);
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::each(ArtifactKind::Blob)
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let mut parts: Vec<(String, BlobRef)> = Vec::new();
        for part in &self.parts {
            let blob = *ctx.input(part.input)?;
            parts.push((part.prefix.clone(), blob));
        }
        let store = ctx.store().clone();
        let created = self.created;
        ctx.blocking(move || {
            let mut merger = SbomMerger::default();
            for (prefix, blob) in &parts {
                let statement = store.read_blob(&blob.digest)?;
                merger.add_statement(prefix, &statement).map_err(|e| {
                    ActionError::environment(format!("attestation {}: {e}", blob.digest))
                })?;
            }
            let tree = sbom_tree(&store, &merger.finish(created))?;
            tree_result(&store, &tree)
        })
        .await
    }
}

fn sbom_tree(store: &Store, document: &[u8]) -> Result<Tree, ActionError> {
    let mut tree = Tree::new();
    let entry = Entry::file(SBOM_PATH, store.put_bytes(document)?, GENERATED_FILE);
    insert(&mut tree, entry)?;
    Ok(tree)
}

/// Accumulates SPDX documents; [`SbomMerger::finish`] writes the merged one.
#[derive(Debug, Default)]
pub(crate) struct SbomMerger {
    packages: Vec<Value>,
    files: Vec<Value>,
    other_licenses: Vec<Value>,
    relationships: Vec<Value>,
    annotations: Vec<Value>,
    external_refs: Vec<Value>,
}

impl SbomMerger {
    /// Adds the SPDX predicate of an in-toto statement (the bytes of an attestation layer).
    pub(crate) fn add_statement(&mut self, prefix: &str, statement: &[u8]) -> Result<(), String> {
        let statement: Value = serde_json::from_slice(statement)
            .map_err(|e| format!("in-toto statement is not JSON: {e}"))?;
        let predicate_type = statement["predicateType"].as_str().unwrap_or_default();
        if predicate_type != SPDX_PREDICATE_TYPE {
            return Err(format!("unexpected predicate type {predicate_type:?}"));
        }
        match statement.get("predicate") {
            Some(Value::Object(doc)) => {
                self.add_document(prefix, doc.clone());
                Ok(())
            }
            _ => Err("the statement has no SPDX document as its predicate".into()),
        }
    }

    /// Adds one SPDX document whose paths are relative to `prefix`.
    pub(crate) fn add_document(&mut self, prefix: &str, mut doc: Map<String, Value>) {
        let doc_id = doc
            .get("SPDXID")
            .and_then(Value::as_str)
            .unwrap_or("SPDXRef-DOCUMENT")
            .to_string();
        let mut relationships: Vec<Value> = take_array(&mut doc, "relationships")
            .into_iter()
            .filter(|r| !r.is_null())
            .collect();
        let mut seen: BTreeSet<String> = relationships.iter().map(relationship_key).collect();
        let mut add = |relationships: &mut Vec<Value>, a: &str, b: &str, kind: &str| {
            let r = json!({"spdxElementId": a, "relatedSpdxElement": b, "relationshipType": kind});
            if seen.insert(relationship_key(&r)) {
                relationships.push(r);
            }
        };
        for described in take_array(&mut doc, "documentDescribes") {
            if let Some(id) = described.as_str() {
                add(&mut relationships, &doc_id, id, "DESCRIBES");
            }
        }
        let mut packages = take_array(&mut doc, "packages");
        for package in &mut packages {
            let Some(package) = package.as_object_mut() else {
                continue;
            };
            let id = package
                .get("SPDXID")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if let Some(Value::Array(has_files)) = package.remove("hasFiles") {
                for file in has_files.iter().filter_map(Value::as_str) {
                    add(&mut relationships, &id, file, "CONTAINS");
                }
            }
            let name = package
                .get("packageFileName")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let joined = go_join(prefix, name);
            if joined.is_empty() {
                package.remove("packageFileName");
            } else {
                package.insert("packageFileName".into(), Value::String(joined));
            }
        }
        let mut files = take_array(&mut doc, "files");
        for file in &mut files {
            if let Some(file) = file.as_object_mut() {
                let name = file
                    .get("fileName")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let joined = go_join(prefix, name);
                file.insert("fileName".into(), Value::String(joined));
            }
        }
        self.packages.extend(packages);
        self.files.extend(files);
        self.other_licenses
            .extend(take_array(&mut doc, "hasExtractedLicensingInfos"));
        self.relationships.extend(relationships);
        self.annotations.extend(take_array(&mut doc, "annotations"));
        self.external_refs
            .extend(take_array(&mut doc, "externalDocumentRefs"));
    }

    /// The merged document: compact JSON and a newline, like Go's `json.Encoder`.
    pub(crate) fn finish(self, created: i64) -> Vec<u8> {
        let render = |namespace: &str| -> Vec<u8> {
            let mut doc = Map::new();
            doc.insert("spdxVersion".into(), "SPDX-2.3".into());
            doc.insert("dataLicense".into(), "CC0-1.0".into());
            doc.insert("SPDXID".into(), "SPDXRef-DOCUMENT".into());
            doc.insert("name".into(), "sbom".into());
            doc.insert("documentNamespace".into(), namespace.into());
            put_list(&mut doc, "externalDocumentRefs", &self.external_refs);
            doc.insert(
                "creationInfo".into(),
                json!({
                    "licenseListVersion": "3.20",
                    "creators": ["Organization: LinuxKit", "Tool: linuxkit"],
                    "created": rfc3339(created),
                }),
            );
            put_list(&mut doc, "packages", &self.packages);
            put_list(&mut doc, "files", &self.files);
            put_list(&mut doc, "hasExtractedLicensingInfos", &self.other_licenses);
            put_list(&mut doc, "relationships", &self.relationships);
            put_list(&mut doc, "annotations", &self.annotations);
            let mut out =
                serde_json::to_vec(&Value::Object(doc)).expect("JSON values always serialise");
            out.push(b'\n');
            out
        };
        let digest: [u8; 32] = Sha256::digest(render("")).into();
        render(&format!("{NAMESPACE_PREFIX}{}", uuid_from(&digest)))
    }
}

fn take_array(doc: &mut Map<String, Value>, key: &str) -> Vec<Value> {
    match doc.remove(key) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

/// Go's `omitempty`: an empty list is left out.
fn put_list(doc: &mut Map<String, Value>, key: &str, items: &[Value]) {
    if !items.is_empty() {
        doc.insert(key.into(), Value::Array(items.to_vec()));
    }
}

/// Identifies a relationship for de-duplication the way `tools-golang` does: the inverse
/// kinds `CONTAINED_BY` and `DESCRIBED_BY` are turned around.
fn relationship_key(r: &Value) -> String {
    let a = r["spdxElementId"].as_str().unwrap_or_default();
    let b = r["relatedSpdxElement"].as_str().unwrap_or_default();
    match r["relationshipType"].as_str().unwrap_or_default() {
        "CONTAINED_BY" => format!("{b}-CONTAINS->{a}"),
        "DESCRIBED_BY" => format!("{b}-DESCRIBES->{a}"),
        kind => format!("{a}-{kind}->{b}"),
    }
}

/// Go's `filepath.Join(prefix, name)`: empty parts are skipped, the result is cleaned, and
/// two empty parts give `""`.
pub(crate) fn go_join(prefix: &str, name: &str) -> String {
    let parts: Vec<&str> = [prefix, name]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return String::new();
    }
    go_clean(&parts.join("/"))
}

/// Go's `path.Clean`.
fn go_clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            part => out.push(part),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

/// A UUID (version 8, RFC 9562 "custom") made of the first 16 bytes of a sha256.
fn uuid_from(digest: &[u8; 32]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// `YYYY-MM-DDThh:mm:ssZ` in UTC, as Go formats `2006-01-02T15:04:05Z`.
pub(crate) fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::DEFAULT_MTIME;
    use crate::tree::Meta;

    fn statement(doc: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SPDX_PREDICATE_TYPE,
            "subject": [],
            "predicate": doc,
        }))
        .expect("json")
    }

    fn alpine_doc() -> Value {
        json!({
            "spdxVersion": "SPDX-2.3",
            "SPDXID": "SPDXRef-DOCUMENT",
            "name": "alpine",
            "documentDescribes": ["SPDXRef-Package-alpine"],
            "packages": [
                {"SPDXID": "SPDXRef-Package-alpine", "name": "alpine", "hasFiles": ["SPDXRef-File-sh"]},
                {"SPDXID": "SPDXRef-Package-musl", "name": "musl", "packageFileName": "/lib/apk/db/installed"}
            ],
            "files": [{"SPDXID": "SPDXRef-File-sh", "fileName": "/bin/sh"}, {"SPDXID": "SPDXRef-File-rel", "fileName": "./etc/../etc/motd"}],
            "relationships": [
                {"spdxElementId": "SPDXRef-Package-alpine", "relatedSpdxElement": "SPDXRef-File-sh", "relationshipType": "CONTAINS"},
                null
            ],
            "snippets": [{"ignored": true}]
        })
    }

    #[test]
    fn prefixes_paths_and_concatenates() {
        let mut m = SbomMerger::default();
        m.add_statement("", &statement(alpine_doc())).expect("init");
        m.add_statement("containers/onboot/000-x/lower/", &statement(alpine_doc()))
            .expect("container");
        let doc: Value = serde_json::from_slice(&m.finish(DEFAULT_MTIME)).expect("json");
        let files: Vec<&str> = doc["files"]
            .as_array()
            .expect("files")
            .iter()
            .map(|f| f["fileName"].as_str().expect("name"))
            .collect();
        assert_eq!(
            files,
            [
                "/bin/sh",
                "etc/motd",
                "containers/onboot/000-x/lower/bin/sh",
                "containers/onboot/000-x/lower/etc/motd"
            ]
        );
        let packages = doc["packages"].as_array().expect("packages");
        assert_eq!(packages.len(), 4);
        assert!(packages[0].get("packageFileName").is_none());
        assert!(packages[0].get("hasFiles").is_none());
        assert_eq!(packages[1]["packageFileName"], "/lib/apk/db/installed");
        assert_eq!(
            packages[2]["packageFileName"],
            "containers/onboot/000-x/lower"
        );
        assert_eq!(
            packages[3]["packageFileName"],
            "containers/onboot/000-x/lower/lib/apk/db/installed"
        );
        // Per document: the explicit CONTAINS, then DESCRIBES; hasFiles duplicates CONTAINS.
        let rels = doc["relationships"].as_array().expect("relationships");
        assert_eq!(rels.len(), 4);
        assert_eq!(rels[1]["relationshipType"], "DESCRIBES");
        assert_eq!(rels[1]["spdxElementId"], "SPDXRef-DOCUMENT");
        assert!(doc.get("snippets").is_none());
        assert_eq!(doc["name"], "sbom");
        assert_eq!(doc["creationInfo"]["created"], "2017-04-18T16:30:00Z");
        assert_eq!(
            doc["creationInfo"]["creators"],
            json!(["Organization: LinuxKit", "Tool: linuxkit"])
        );
    }

    #[test]
    fn empty_sbom_is_valid_and_deterministic() {
        let a = SbomMerger::default().finish(DEFAULT_MTIME);
        let b = SbomMerger::default().finish(DEFAULT_MTIME);
        assert_eq!(a, b);
        assert!(a.ends_with(b"}\n"));
        let doc: Value = serde_json::from_slice(&a).expect("json");
        let keys: Vec<&str> = doc
            .as_object()
            .expect("object")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            [
                "spdxVersion",
                "dataLicense",
                "SPDXID",
                "name",
                "documentNamespace",
                "creationInfo"
            ]
        );
        let ns = doc["documentNamespace"].as_str().expect("namespace");
        let uuid = ns.strip_prefix(NAMESPACE_PREFIX).expect("prefix");
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "8", "version 8: {uuid}");
        // Different content, different namespace.
        let mut m = SbomMerger::default();
        m.add_statement("", &statement(alpine_doc())).expect("add");
        let other: Value = serde_json::from_slice(&m.finish(DEFAULT_MTIME)).expect("json");
        assert_ne!(other["documentNamespace"], doc["documentNamespace"]);
        // The creation time is part of the content too.
        let later: Value =
            serde_json::from_slice(&SbomMerger::default().finish(1_700_000_000)).expect("json");
        assert_eq!(later["creationInfo"]["created"], "2023-11-14T22:13:20Z");
        assert_ne!(later["documentNamespace"], doc["documentNamespace"]);
    }

    #[test]
    fn rejects_other_predicates_and_garbage() {
        let mut m = SbomMerger::default();
        let other = serde_json::to_vec(
            &json!({"predicateType": "https://slsa.dev/provenance/v0.2", "predicate": {}}),
        )
        .expect("json");
        assert!(
            m.add_statement("", &other)
                .expect_err("type")
                .contains("predicate type")
        );
        assert!(m.add_statement("", b"not json").is_err());
        let no_doc =
            serde_json::to_vec(&json!({"predicateType": SPDX_PREDICATE_TYPE})).expect("json");
        assert!(m.add_statement("", &no_doc).is_err());
    }

    #[test]
    fn go_path_semantics() {
        assert_eq!(go_join("", ""), "");
        assert_eq!(go_join("", "/bin/sh"), "/bin/sh");
        assert_eq!(go_join("a/b/", "/bin/sh"), "a/b/bin/sh");
        assert_eq!(go_join("a/b/", ""), "a/b");
        assert_eq!(go_join("a/b/", "../../../x"), "../x");
        assert_eq!(go_join("", "./"), ".");
        assert_eq!(go_clean("/../a//b/./c/.."), "/a/b");
    }

    #[test]
    fn formats_times_like_go() {
        assert_eq!(rfc3339(DEFAULT_MTIME), "2017-04-18T16:30:00Z");
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59Z");
    }

    #[test]
    fn sbom_tree_has_one_plain_entry() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        let tree = sbom_tree(&store, b"{}\n").expect("tree");
        let e = tree.get(SBOM_PATH).expect("entry");
        assert_eq!(e.meta(), Meta::new(0o644, 0, 0, DEFAULT_MTIME));
        assert!(e.pax.is_empty());
        assert_eq!(tree.len(), 1);
    }
}
