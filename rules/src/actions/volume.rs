//! One `volumes:` entry as a tree (reference §1.10, §2.5): `containers/volumes/<name>/lower`
//! holding nothing, the image's filesystem or an OCI image layout of the image's index, then
//! the `tmp` and `merged` directories the init system mounts an overlay on.

use std::collections::BTreeMap;

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, BlobRef, Store};
use serde::Serialize;

use super::sections::{RootFilter, linuxkit_root};
use super::{
    GENERATED_DIR, input_blobs, insert, load_tree, tag, tagged, tree_error, tree_outputs,
    tree_result,
};
use crate::oci::{ANNOTATION_REF_NAME, OCI_INDEX};
use crate::tree::{Entry, Meta, Tree};

/// `LINUXKIT.source` of a volume without an image.
const BLANK_SOURCE: &str = "empty";
/// `LINUXKIT.source` of the `tmp` and `merged` directories.
const VOLUMES_SOURCE: &str = "linuxkit.volumes";
/// LinuxKit's `oci-layout` file, byte for byte (a Go raw string with its source indentation).
const OCI_LAYOUT_FILE: &str = "{\n\t\t\"imageLayoutVersion\": \"1.0.0\"\n\t}";
/// Bump when the layout written for the same blobs changes.
const OCI_LAYOUT_VERSION: u64 = 1;

/// OCI layout entries: LinuxKit leaves their mtime unset, which Go's tar writes as 0.
const LAYOUT_DIR: Meta = Meta::new(0o755, 0, 0, 0);
const LAYOUT_FILE: Meta = Meta::new(0o644, 0, 0, 0);

/// What a volume's `lower` directory holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeContent {
    /// No image: only the directories (source `empty`).
    Blank,
    /// The image's filesystem, filtered like an init image (`etc/resolv.conf` becomes a
    /// symlink). Input 0 is the merged image tree.
    Filesystem { source: String },
    /// An OCI image layout. Every input is a fetched blob (artifact `blob`) to store under
    /// `blobs/sha256/`; the last input is the image index, which `index.json` points at with
    /// the annotation `org.opencontainers.image.ref.name` = `source`.
    Oci { source: String },
}

/// `containers/volumes/<name>/{lower/…, tmp, merged}` of the volume at `location`.
#[derive(Debug)]
pub struct VolumeAction {
    pub name: String,
    /// `volume[i]`.
    pub location: String,
    pub content: VolumeContent,
}

#[async_trait]
impl Action for VolumeAction {
    fn kind(&self) -> &'static str {
        "volume"
    }
    fn label(&self) -> String {
        match &self.content {
            VolumeContent::Blank => format!("{} {} (blank)", self.location, self.name),
            VolumeContent::Filesystem { source } => {
                format!("{} {} ({source})", self.location, self.name)
            }
            VolumeContent::Oci { source } => {
                format!("{} {} (OCI layout of {source})", self.location, self.name)
            }
        }
    }
    fn identity(&self) -> String {
        format!("volume {}", self.location)
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("name", |k| {
            k.str(&self.name);
        })
        .field("location", |k| {
            k.str(&self.location);
        })
        .field("content", |k| {
            match &self.content {
                VolumeContent::Blank => k.str("blank"),
                VolumeContent::Filesystem { source } => k.str("filesystem").str(source),
                VolumeContent::Oci { source } => k.str("oci").str(source).u64(OCI_LAYOUT_VERSION),
            };
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        match self.content {
            VolumeContent::Blank => InputKinds::none(),
            VolumeContent::Filesystem { .. } => InputKinds::exactly([ArtifactKind::Tree]),
            VolumeContent::Oci { .. } => InputKinds::each(ArtifactKind::Blob),
        }
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let inputs = match &self.content {
            VolumeContent::Blank => Vec::new(),
            VolumeContent::Filesystem { .. } => vec![*ctx.input(0)?],
            VolumeContent::Oci { .. } => input_blobs(ctx),
        };
        let store = ctx.store().clone();
        let spec = VolumeSpec {
            base: format!("containers/volumes/{}", self.name),
            location: self.location.clone(),
            content: self.content.clone(),
        };
        ctx.blocking(move || {
            let tree = spec.tree(&store, &inputs)?;
            tree_result(&store, &tree)
        })
        .await
    }
}

struct VolumeSpec {
    /// `containers/volumes/<name>`.
    base: String,
    location: String,
    content: VolumeContent,
}

impl VolumeSpec {
    fn tree(&self, store: &Store, inputs: &[BlobRef]) -> Result<Tree, ActionError> {
        let lower = format!("{}/lower", self.base);
        let (mut tree, source) = match &self.content {
            VolumeContent::Blank => (Tree::new(), BLANK_SOURCE),
            VolumeContent::Filesystem { source } => {
                let image = inputs
                    .first()
                    .ok_or_else(|| ActionError::internal("filesystem volume without its image"))?;
                let fs = linuxkit_root(store, &load_tree(store, image)?, RootFilter::Init)?;
                (fs.prefixed(&lower).map_err(tree_error)?, source.as_str())
            }
            VolumeContent::Oci { source } => {
                (oci_layout(store, &lower, source, inputs)?, source.as_str())
            }
        };
        tree.ensure_dir(&lower, GENERATED_DIR).map_err(tree_error)?;
        tag(&mut tree, source, &self.location);
        for dir in ["tmp", "merged"] {
            let entry = Entry::dir(format!("{}/{dir}", self.base), GENERATED_DIR);
            insert(&mut tree, tagged(entry, VOLUMES_SOURCE, &self.location))?;
        }
        Ok(tree)
    }
}

/// The OCI image layout LinuxKit's `IndexSource.OCITarReader` writes, under `lower`: the
/// `oci-layout` marker, `blobs/sha256/` with every blob (the index is the last of `blobs`), and
/// `index.json` naming the index. Blobs that occur twice (a layer shared by two platforms) are
/// stored once.
fn oci_layout(
    store: &Store,
    lower: &str,
    source: &str,
    blobs: &[BlobRef],
) -> Result<Tree, ActionError> {
    let index = blobs
        .last()
        .ok_or_else(|| ActionError::internal("OCI volume without its index blob"))?;
    let mut tree = Tree::new();
    let marker = store.put_bytes(OCI_LAYOUT_FILE.as_bytes())?;
    let mut entries = vec![
        Entry::file(format!("{lower}/oci-layout"), marker, LAYOUT_FILE),
        Entry::dir(format!("{lower}/blobs"), LAYOUT_DIR),
        Entry::dir(format!("{lower}/blobs/sha256"), LAYOUT_DIR),
    ];
    for blob in blobs {
        if !store.has_blob(blob) {
            return Err(ActionError::internal(format!(
                "blob {} of the OCI layout is not in the store",
                blob.digest
            )));
        }
        entries.push(Entry::file(
            format!("{lower}/blobs/sha256/{}", blob.digest.hex()),
            *blob,
            LAYOUT_FILE,
        ));
    }
    let json = index_json(index, source);
    entries.push(Entry::file(
        format!("{lower}/index.json"),
        store.put_bytes(&json)?,
        LAYOUT_FILE,
    ));
    for entry in entries {
        insert(&mut tree, entry)?;
    }
    Ok(tree)
}

/// `index.json` as go-containerregistry writes it for LinuxKit: an empty OCI index plus one
/// descriptor (always typed as an OCI index), `json.MarshalIndent` with three spaces.
fn index_json(index: &BlobRef, ref_name: &str) -> Vec<u8> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Layout<'a> {
        schema_version: u32,
        media_type: &'a str,
        manifests: [Desc<'a>; 1],
    }
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Desc<'a> {
        media_type: &'a str,
        size: u64,
        digest: String,
        annotations: BTreeMap<&'a str, &'a str>,
    }
    let layout = Layout {
        schema_version: 2,
        media_type: OCI_INDEX,
        manifests: [Desc {
            media_type: OCI_INDEX,
            size: index.size,
            digest: index.digest.to_string(),
            annotations: BTreeMap::from([(ANNOTATION_REF_NAME, ref_name)]),
        }],
    };
    let mut out = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"   ");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, formatter);
    layout
        .serialize(&mut ser)
        .expect("serialising plain structs to memory cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::EntryKind;
    use crate::tree::testutil::store;

    fn spec(content: VolumeContent) -> VolumeSpec {
        VolumeSpec {
            base: "containers/volumes/data".into(),
            location: "volume[1]".into(),
            content,
        }
    }

    fn pax<'a>(tree: &'a Tree, path: &str) -> (&'a str, &'a str) {
        let e = tree.get(path).unwrap_or_else(|| panic!("{path} missing"));
        (
            e.pax["LINUXKIT.source"].as_str(),
            e.pax["LINUXKIT.location"].as_str(),
        )
    }

    #[test]
    fn blank_volume_is_directories_only() {
        let (_d, store) = store();
        let tree = spec(VolumeContent::Blank).tree(&store, &[]).expect("tree");
        let paths: Vec<_> = tree.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "containers",
                "containers/volumes",
                "containers/volumes/data",
                "containers/volumes/data/lower",
                "containers/volumes/data/merged",
                "containers/volumes/data/tmp",
            ]
        );
        assert!(tree.iter().all(|e| e.is_dir() && e.meta() == GENERATED_DIR));
        assert_eq!(pax(&tree, "containers"), ("empty", "volume[1]"));
        assert_eq!(
            pax(&tree, "containers/volumes/data/lower"),
            ("empty", "volume[1]")
        );
        for dir in ["tmp", "merged"] {
            assert_eq!(
                pax(&tree, &format!("containers/volumes/data/{dir}")),
                ("linuxkit.volumes", "volume[1]")
            );
        }
    }

    #[test]
    fn filesystem_volume_holds_the_filtered_image_under_lower() {
        let (_d, store) = store();
        let mut image = Tree::new();
        let blob = store.put_bytes(b"data").expect("put");
        image
            .insert(Entry::dir("srv", Meta::new(0o750, 7, 7, 5)))
            .expect("insert");
        image
            .insert(Entry::file("srv/a", blob, Meta::new(0o600, 7, 7, 5)))
            .expect("insert");
        image
            .insert(Entry::hardlink("srv/b", "srv/a", Meta::new(0o600, 7, 7, 5)))
            .expect("insert");
        image
            .insert(Entry::file("etc/hostname", blob, Meta::new(0o644, 0, 0, 5)))
            .expect("insert");
        let image = crate::actions::save_tree(&store, &image).expect("save");
        let source = "docker.io/library/data:1";
        let tree = spec(VolumeContent::Filesystem {
            source: source.into(),
        })
        .tree(&store, &[image])
        .expect("tree");
        let lower = "containers/volumes/data/lower";
        let a = tree.get(&format!("{lower}/srv/a")).expect("file");
        assert_eq!((a.mode, a.uid, a.mtime), (0o600, 7, 5));
        match &tree.get(&format!("{lower}/srv/b")).expect("link").kind {
            EntryKind::Hardlink { target } => assert_eq!(target, &format!("{lower}/srv/a")),
            other => panic!("{other:?}"),
        }
        match &tree
            .get(&format!("{lower}/etc/resolv.conf"))
            .expect("resolv")
            .kind
        {
            EntryKind::Symlink { target } => assert_eq!(target, "/run/resolvconf/resolv.conf"),
            other => panic!("{other:?}"),
        }
        assert!(!tree.contains(&format!("{lower}/etc/hostname")));
        assert_eq!(pax(&tree, "containers"), (source, "volume[1]"));
        assert_eq!(pax(&tree, &format!("{lower}/srv/a")), (source, "volume[1]"));
        assert_eq!(tree.get(lower).expect("lower").meta(), GENERATED_DIR);
        assert_eq!(
            pax(&tree, "containers/volumes/data/merged"),
            ("linuxkit.volumes", "volume[1]")
        );
        tree.check_complete().expect("complete");
    }

    #[test]
    fn oci_volume_is_a_layout_with_one_index_descriptor() {
        let (_d, store) = store();
        let config = store.put_bytes(b"{}").expect("put");
        let layer = store.put_bytes(b"layer bytes").expect("put");
        let index = store.put_bytes(br#"{"schemaVersion":2}"#).expect("put");
        let source = "example.com/lkb/multi:1";
        // The layer occurs twice (two platforms share it): stored once.
        let blobs = [config, layer, layer, index];
        let tree = spec(VolumeContent::Oci {
            source: source.into(),
        })
        .tree(&store, &blobs)
        .expect("tree");
        let lower = "containers/volumes/data/lower";
        assert_eq!(
            tree.read_file(&store, &format!("{lower}/oci-layout"))
                .expect("marker"),
            OCI_LAYOUT_FILE.as_bytes()
        );
        for blob in [config, layer, index] {
            let path = format!("{lower}/blobs/sha256/{}", blob.digest.hex());
            let e = tree.get(&path).expect("blob");
            assert_eq!(e.blob(), Some(&blob));
            assert_eq!(e.meta(), LAYOUT_FILE);
        }
        assert_eq!(
            tree.get(&format!("{lower}/blobs/sha256"))
                .expect("dir")
                .meta(),
            LAYOUT_DIR
        );
        let json = tree
            .read_file(&store, &format!("{lower}/index.json"))
            .expect("index.json");
        let expected = format!(
            "{{\n   \"schemaVersion\": 2,\n   \"mediaType\": \"{OCI_INDEX}\",\n   \"manifests\": [\n      {{\n         \"mediaType\": \"{OCI_INDEX}\",\n         \"size\": {},\n         \"digest\": \"{}\",\n         \"annotations\": {{\n            \"org.opencontainers.image.ref.name\": \"{source}\"\n         }}\n      }}\n   ]\n}}",
            index.size, index.digest
        );
        assert_eq!(String::from_utf8(json).expect("utf-8"), expected);
        assert_eq!(
            pax(&tree, &format!("{lower}/index.json")),
            (source, "volume[1]")
        );
        assert_eq!(pax(&tree, "containers/volumes"), (source, "volume[1]"));
        tree.check_complete().expect("complete");
    }

    #[test]
    fn oci_volume_without_blobs_is_an_internal_error() {
        let (_d, store) = store();
        let err = spec(VolumeContent::Oci { source: "x".into() })
            .tree(&store, &[])
            .expect_err("no index");
        assert_eq!(err.category(), lkb_store::ErrorCategory::Internal);
    }
}
