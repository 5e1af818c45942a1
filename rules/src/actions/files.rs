//! The `files:` section as one tree: every entry with its implicit parent directories, tagged
//! with its position in the merged list (`files[N]`).

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, BlobRef, ErrorCategory, Store, StoreError};
use std::path::Path;

use super::{DEFAULT_MTIME, insert, tagged, tree_outputs, tree_result};
use crate::config::{
    Config, ConfigError, FileContent, IdMap, IdValue, Span, Spanned, render_metadata,
};
use crate::tree::{Entry, Meta, Tree};

/// The largest `source:` file: a newc cpio header stores a file's size in 32 bits.
const MAX_SOURCE_BYTES: u64 = u32::MAX as u64;

/// `LINUXKIT.source` of every entry.
const FILES_SOURCE: &str = "linuxkit.files";

/// What a `files:` entry holds, resolved at load time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileData {
    Directory,
    Symlink(String),
    /// Inline contents (`contents:`, `metadata:`).
    Inline(Vec<u8>),
    /// A host file (`source:`), already in the store.
    Blob(BlobRef),
}

/// One resolved `files:` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileItem {
    /// Archive path (no leading `/`).
    pub path: String,
    pub data: FileData,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Mode of implicit parent directories (LinuxKit derives it from the file's mode).
    pub parent_mode: u32,
    /// Index in the merged `files:` list (`files[N]`).
    pub index: usize,
}

/// A `files:` entry that cannot be resolved.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{span}: files[{index}]: cannot read source {source_path}")]
    Source {
        span: Span,
        index: usize,
        source_path: String,
        #[source]
        error: std::io::Error,
    },
    /// A `source:` that is a device, FIFO, socket or directory (reading `/dev/zero` would
    /// fill the disk), or too large for the initrd.
    #[error("{span}: files[{index}]: source {source_path} is {reason}")]
    NotRegular {
        span: Span,
        index: usize,
        source_path: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FilesError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            FilesError::Source { .. } | FilesError::NotRegular { .. } | FilesError::Config(_) => {
                ErrorCategory::User
            }
            FilesError::Store(e) => e.category(),
        }
    }
}

/// Resolves the `files:` entries of `config` as LinuxKit does at build time: `source:` paths
/// relative to `base` (the directory of the last yml) or, with `~/`, to `home`, read into the
/// store (an `optional` source that cannot be read is left out); `metadata:` rendered from
/// the config; owners resolved to numbers; modes and implicit parent modes as LinuxKit sets
/// them.
pub fn file_items(
    config: &Config,
    base: &Path,
    home: Option<&Path>,
    store: &Store,
) -> Result<Vec<FileItem>, FilesError> {
    let ids = IdMap::from_config(config);
    let mut items = Vec::new();
    for (index, spec) in config.files.iter().enumerate() {
        let data = match spec.content() {
            FileContent::Directory => FileData::Directory,
            FileContent::Symlink(t) => FileData::Symlink(t.to_string()),
            FileContent::Contents(c) => FileData::Inline(c.as_bytes().to_vec()),
            FileContent::Metadata(format) => FileData::Inline(render_metadata(config, format)),
            FileContent::Source(source) => {
                let path = match (source.strip_prefix("~/"), home) {
                    (Some(rest), Some(home)) => home.join(rest),
                    _ => base.join(source),
                };
                let file = fs_err::File::open(&path).and_then(|file| {
                    let meta = file.metadata()?;
                    Ok((file, meta))
                });
                match file {
                    Ok((file, meta)) => {
                        // fstat of the opened file, so what is checked is what is read.
                        let not = if !meta.file_type().is_file() {
                            Some("not a regular file")
                        } else if meta.len() > MAX_SOURCE_BYTES {
                            Some("larger than 4 GiB, the most an initrd entry can hold")
                        } else {
                            None
                        };
                        if let Some(reason) = not {
                            return Err(FilesError::NotRegular {
                                span: spec.span.clone(),
                                index,
                                source_path: source.to_string(),
                                reason,
                            });
                        }
                        // A file that grows while it is read stops at the limit too.
                        let mut reader = std::io::Read::take(file, MAX_SOURCE_BYTES);
                        FileData::Blob(store.put_reader(&mut reader, None)?)
                    }
                    Err(_) if spec.optional => continue,
                    Err(error) => {
                        return Err(FilesError::Source {
                            span: spec.span.clone(),
                            index,
                            source_path: source.to_string(),
                            error,
                        });
                    }
                }
            }
        };
        let id = |value: &Option<Spanned<IdValue>>| -> Result<u32, ConfigError> {
            value
                .as_ref()
                .map(|v| ids.resolve_id(v))
                .transpose()
                .map(|id| id.unwrap_or(0))
        };
        items.push(FileItem {
            path: spec.archive_path().to_string(),
            data,
            mode: spec.effective_mode(),
            uid: id(&spec.uid)?,
            gid: id(&spec.gid)?,
            parent_mode: spec.parent_dir_mode(),
            index,
        });
    }
    Ok(items)
}

/// The `files:` section as one tree.
#[derive(Debug)]
pub struct FilesAction {
    pub items: Vec<FileItem>,
}

#[async_trait]
impl Action for FilesAction {
    fn kind(&self) -> &'static str {
        "files"
    }
    fn label(&self) -> String {
        format!("files ({} entries)", self.items.len())
    }
    fn identity(&self) -> String {
        "files".into()
    }
    /// One field per entry, named as in the yml (`files[3]`, so the index is part of the
    /// key), with one field per attribute: `files[3].contents`, `files[3].mode`, …
    fn params(&self, key: &mut KeyHasher) {
        key.field("files", |key| {
            key.u64(self.items.len() as u64);
            for item in &self.items {
                key.field(&format!("[{}]", item.index), |key| file_item_key(item, key));
            }
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::none()
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let store = ctx.store().clone();
        let items = self.items.clone();
        ctx.blocking(move || {
            let tree = files_tree(&store, &items)?;
            tree_result(&store, &tree)
        })
        .await
    }
}

fn file_item_key(item: &FileItem, key: &mut KeyHasher) {
    key.field("path", |key| {
        key.str(&item.path);
    });
    let kind = match &item.data {
        FileData::Directory => "directory",
        FileData::Symlink(_) => "symlink",
        FileData::Inline(_) => "inline",
        FileData::Blob(_) => "source",
    };
    key.field("kind", |key| {
        key.str(kind);
    });
    match &item.data {
        FileData::Directory => {}
        FileData::Symlink(target) => {
            key.field("target", |key| {
                key.str(target);
            });
        }
        FileData::Inline(bytes) => {
            key.field("contents", |key| {
                key.bytes(bytes);
            });
        }
        FileData::Blob(blob) => {
            key.field("contents", |key| {
                key.digest(&blob.digest).u64(blob.size);
            });
        }
    }
    key.field("mode", |key| {
        key.u64(item.mode.into());
    })
    .field("uid", |key| {
        key.u64(item.uid.into());
    })
    .field("gid", |key| {
        key.u64(item.gid.into());
    })
    .field("parent_mode", |key| {
        key.u64(item.parent_mode.into());
    });
}

fn files_tree(store: &Store, items: &[FileItem]) -> Result<Tree, ActionError> {
    let mut tree = Tree::new();
    for item in items {
        let location = format!("files[{}]", item.index);
        let mut parents = Vec::new();
        let mut rest = item.path.as_str();
        while let Some((parent, _)) = rest.rsplit_once('/') {
            parents.push(parent);
            rest = parent;
        }
        for parent in parents.into_iter().rev() {
            if !tree.contains(parent) {
                let meta = Meta::new(item.parent_mode, item.uid, item.gid, DEFAULT_MTIME);
                let entry = tagged(Entry::dir(parent, meta), FILES_SOURCE, &location);
                insert(&mut tree, entry)?;
            }
        }
        let meta = Meta::new(item.mode, item.uid, item.gid, DEFAULT_MTIME);
        let entry = match &item.data {
            FileData::Directory => Entry::dir(item.path.as_str(), meta),
            FileData::Symlink(target) => Entry::symlink(item.path.as_str(), target.as_str(), meta),
            FileData::Inline(bytes) => {
                Entry::file(item.path.as_str(), store.put_bytes(bytes)?, meta)
            }
            FileData::Blob(blob) => {
                if !store.has_blob(blob) {
                    return Err(ActionError::internal(format!(
                        "source of {} ({}) is not in the store",
                        item.path, blob.digest
                    )));
                }
                Entry::file(item.path.as_str(), *blob, meta)
            }
        };
        insert(&mut tree, tagged(entry, FILES_SOURCE, &location))?;
    }
    Ok(tree)
}

/// The `Dockerfile` the `docker` format adds after the `files:` entries, as LinuxKit writes
/// it: `docker build` of the tar then makes an image whose entrypoint is the init.
pub const DOCKERFILE: &[u8] = b"\nFROM scratch\n\nCOPY . ./\n\nENTRYPOINT [\"/bin/rc.init\"]\n";

/// A tree holding [`DOCKERFILE`] at `Dockerfile`: 0644, root, LinuxKit's time, and no
/// provenance records (LinuxKit writes none for it).
#[derive(Debug)]
pub struct DockerfileAction;

#[async_trait]
impl Action for DockerfileAction {
    fn kind(&self) -> &'static str {
        "dockerfile"
    }
    fn label(&self) -> String {
        "Dockerfile".into()
    }
    fn identity(&self) -> String {
        "dockerfile".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("contents", |key| {
            key.bytes(DOCKERFILE);
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::none()
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let blob = store.put_bytes(DOCKERFILE)?;
            let mut tree = Tree::new();
            insert(
                &mut tree,
                Entry::file("Dockerfile", blob, super::GENERATED_FILE),
            )?;
            tree_result(&store, &tree)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::changed_params as changed;
    use crate::tree::testutil::store;

    fn file(index: usize, path: &str, data: FileData) -> FileItem {
        FileItem {
            path: path.into(),
            data,
            mode: 0o644,
            uid: 0,
            gid: 0,
            parent_mode: 0o755,
            index,
        }
    }

    fn files(contents: &[&str]) -> FilesAction {
        FilesAction {
            items: contents
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    file(
                        i,
                        &format!("etc/f{i}"),
                        FileData::Inline(c.as_bytes().into()),
                    )
                })
                .collect(),
        }
    }

    #[test]
    fn files_params_name_the_entry_and_attribute() {
        let base = files(&["a", "b", "c", "d"]);
        assert!(changed(&base, &files(&["a", "b", "c", "d"])).is_empty());
        assert_eq!(
            changed(&base, &files(&["a", "b", "c", "D"])),
            ["files[3].contents"]
        );
        let mut moded = files(&["a", "b", "c", "d"]);
        moded.items[1].mode = 0o600;
        moded.items[2].uid = 1000;
        assert_eq!(changed(&base, &moded), ["files[1].mode", "files[2].uid"]);
        let mut linked = files(&["a", "b", "c", "d"]);
        linked.items[0].data = FileData::Symlink("/etc/f1".into());
        assert_eq!(
            changed(&base, &linked),
            ["files[0].kind", "files[0].target", "files[0].contents"]
        );
        assert_eq!(
            changed(&base, &files(&["a", "b", "c", "d", "e"])),
            ["files[4]"]
        );
        // The index is part of the key: the same entry at another position differs.
        let first = FilesAction {
            items: vec![file(0, "etc/x", FileData::Directory)],
        };
        let second = FilesAction {
            items: vec![file(1, "etc/x", FileData::Directory)],
        };
        assert_ne!(
            lkb_engine::params_hash(&first),
            lkb_engine::params_hash(&second)
        );
        assert_eq!(changed(&first, &second), ["files[1]", "files[0]"]);
    }

    #[test]
    fn files_get_implicit_parents_with_derived_modes() {
        let (_d, store) = store();
        let items = vec![FileItem {
            path: "etc/ssh/key".into(),
            data: FileData::Inline(b"k".to_vec()),
            mode: 0o640,
            uid: 100,
            gid: 0,
            parent_mode: 0o750,
            index: 3,
        }];
        let tree = files_tree(&store, &items).expect("tree");
        let paths: Vec<_> = tree
            .iter()
            .map(|e| (e.path.as_str(), e.mode, e.uid))
            .collect();
        assert_eq!(
            paths,
            [
                ("etc", 0o750, 100),
                ("etc/ssh", 0o750, 100),
                ("etc/ssh/key", 0o640, 100)
            ]
        );
        assert_eq!(
            tree.get("etc").expect("etc").pax["LINUXKIT.location"],
            "files[3]"
        );
    }

    #[test]
    fn a_source_that_is_not_a_regular_file_is_refused() {
        let (dir, store) = store();
        fs_err::create_dir(dir.path().join("adir")).expect("mkdir");
        for source in ["/dev/zero", "adir"] {
            let text = format!("files:\n- path: etc/x\n  source: {source}\n");
            let config = crate::config::parse_config(&text, Path::new("t.yml")).expect("valid");
            let error = file_items(&config, dir.path(), None, &store).expect_err(source);
            assert!(
                matches!(error, FilesError::NotRegular { index: 0, .. }),
                "{error:?}"
            );
            assert_eq!(error.category(), ErrorCategory::User);
            let message = error.to_string();
            assert!(
                message.contains("files[0]") && message.contains(source),
                "{message}"
            );
            assert!(message.contains("not a regular file"), "{message}");
        }
    }
}
