//! Actions that turn merged images and yml sections into the trees of the final filesystem:
//! the kernel section, init images, container bundles and the `files` section.

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ExecCtx, KeyHasher};
use lkb_store::{ActionResult, Artifact, BlobRef, Store};

use super::image::limits_key;
use super::{DEFAULT_MTIME, artifact, load_tree, save_tree, single};
use crate::layer::{Limits, unpack_layer};
use crate::tree::{Entry, Meta, Tree, TreeError};

/// `/etc/hosts` as LinuxKit writes it into every image.
const HOSTS: &str = "127.0.0.1       localhost\n::1     localhost ip6-localhost ip6-loopback\nfe00::0 ip6-localnet\nff00::0 ip6-mcastprefix\nff02::1 ip6-allnodes\nff02::2 ip6-allrouters\n";
/// `/etc/resolv.conf` of container images.
const NO_RESOLV: &str = "\n# no resolv.conf configured\n";
/// Where init and volume images' resolv.conf points.
const RESOLV_LINK: &str = "/run/resolvconf/resolv.conf";
/// Image entries LinuxKit drops.
const EXCLUDED: &[&str] = &[
    ".dockerenv",
    "Dockerfile",
    "dev/console",
    "dev/pts",
    "dev/shm",
    "etc/hostname",
];
/// Directories LinuxKit (re-)emits after every image.
const TOUCH_DIRS: &[&str] = &["dev", "dev/pts", "dev/shm", "etc", "proc", "sys"];

const GENERATED_DIR: Meta = Meta::new(0o755, 0, 0, DEFAULT_MTIME);
const GENERATED_FILE: Meta = Meta::new(0o644, 0, 0, DEFAULT_MTIME);

/// How LinuxKit post-processes an image's filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootFilter {
    /// Init and volume images: `etc/resolv.conf` becomes a symlink.
    Init,
    /// Container images: `etc/resolv.conf` becomes a placeholder file.
    Container,
}

/// Applies LinuxKit's exclusions, replacements and "touch" entries (reference §2.2).
///
/// A change here changes the output of `init-root`, `bundle` and `volume`: bump their
/// `version()`.
///
/// LinuxKit re-emits the touch directories after the image, so in the unpacked result they
/// always have mode 0755, root ownership and the default mtime; the merged tree says so directly.
pub(crate) fn linuxkit_root(
    store: &Store,
    image: &Tree,
    filter: RootFilter,
) -> Result<Tree, ActionError> {
    let mut tree = image.clone();
    for path in EXCLUDED {
        tree.remove(path);
    }
    let hosts = store.put_bytes(HOSTS.as_bytes())?;
    match tree.get("etc/hosts").map(Entry::meta) {
        Some(meta) => insert(
            &mut tree,
            Entry::file(
                "etc/hosts",
                hosts,
                Meta {
                    mtime: DEFAULT_MTIME,
                    ..meta
                },
            ),
        )?,
        None => insert(&mut tree, Entry::file("etc/hosts", hosts, GENERATED_FILE))?,
    }
    let resolv_meta = tree
        .get("etc/resolv.conf")
        .map(|e| Meta {
            mtime: DEFAULT_MTIME,
            ..e.meta()
        })
        .unwrap_or(GENERATED_FILE);
    let resolv = match filter {
        RootFilter::Init => Entry::symlink("etc/resolv.conf", RESOLV_LINK, resolv_meta),
        RootFilter::Container => Entry::file(
            "etc/resolv.conf",
            store.put_bytes(NO_RESOLV.as_bytes())?,
            resolv_meta,
        ),
    };
    insert(&mut tree, resolv)?;
    if !tree.contains("etc/mtab") {
        insert(
            &mut tree,
            Entry::symlink(
                "etc/mtab",
                "/proc/mounts",
                Meta {
                    mode: 0o755,
                    ..GENERATED_FILE
                },
            ),
        )?;
    }
    for dir in TOUCH_DIRS {
        match tree.get(dir) {
            Some(e) if !e.is_dir() => {}
            _ => insert(&mut tree, Entry::dir(*dir, GENERATED_DIR))?,
        }
    }
    Ok(tree)
}

fn insert(tree: &mut Tree, entry: Entry) -> Result<(), ActionError> {
    tree.insert(entry).map(drop).map_err(tree_error)
}

fn tree_error(e: TreeError) -> ActionError {
    ActionError::new(e.category(), e)
}

/// Sets LinuxKit's provenance PAX records on every entry.
pub(crate) fn tag(tree: &mut Tree, source: &str, location: &str) {
    tree.set_pax_all("LINUXKIT.source", source);
    tree.set_pax_all("LINUXKIT.location", location);
}

/// Adds `path` and each of its ancestors as generated directories (if missing).
fn add_dirs(tree: &mut Tree, path: &str) -> Result<(), ActionError> {
    let mut at = 0;
    loop {
        let end = path[at..].find('/').map_or(path.len(), |i| at + i);
        let dir = &path[..end];
        if !tree.contains(dir) {
            insert(tree, Entry::dir(dir, GENERATED_DIR))?;
        }
        if end == path.len() {
            return Ok(());
        }
        at = end + 1;
    }
}

/// An `init:` image unpacked at `/`.
#[derive(Debug)]
pub struct InitRootAction {
    pub source: String,
    pub location: String,
}

#[async_trait]
impl Action for InitRootAction {
    fn kind(&self) -> &'static str {
        "init-root"
    }
    fn label(&self) -> String {
        format!("{} {}", self.location, self.source)
    }
    fn identity(&self) -> String {
        format!("init-root {}", self.location)
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("image", |key| {
            key.str(&self.source);
        })
        .field("location", |key| {
            key.str(&self.location);
        });
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let image = *artifact(ctx.input(0)?, "tree")?;
        let store = ctx.store().clone();
        let (source, location) = (self.source.clone(), self.location.clone());
        ctx.blocking(move || {
            let mut tree = linuxkit_root(&store, &load_tree(&store, &image)?, RootFilter::Init)?;
            tag(&mut tree, &source, &location);
            Ok(single("tree", save_tree(&store, &tree)?))
        })
        .await
    }
}

/// One container bundle: `containers/<section>/<dir>/{lower|rootfs, config.json, runtime.json, …}`.
#[derive(Debug)]
pub struct BundleAction {
    /// `containers/onboot/000-name`.
    pub bundle: String,
    /// `lower` or `rootfs` when this bundle carries the image filesystem; `None` when an
    /// earlier bundle of the same image does (LinuxKit's de-duplication).
    pub root: Option<String>,
    pub readonly: bool,
    pub config_json: Vec<u8>,
    pub runtime_json: Vec<u8>,
    pub source: String,
    pub location: String,
}

#[async_trait]
impl Action for BundleAction {
    fn kind(&self) -> &'static str {
        "bundle"
    }
    fn label(&self) -> String {
        format!("bundle {} ({})", self.bundle, self.source)
    }
    fn identity(&self) -> String {
        format!("bundle {}", self.bundle)
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("path", |key| {
            key.str(&self.bundle);
        })
        .field("root", |key| {
            key.opt_str(self.root.as_deref());
        })
        .field("readonly", |key| {
            key.bool(self.readonly);
        })
        .field("config.json", |key| {
            key.bytes(&self.config_json);
        })
        .field("runtime.json", |key| {
            key.bytes(&self.runtime_json);
        })
        .field("image", |key| {
            key.str(&self.source);
        })
        .field("location", |key| {
            key.str(&self.location);
        });
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let image = match &self.root {
            Some(_) => Some(*artifact(ctx.input(0)?, "tree")?),
            None => None,
        };
        let store = ctx.store().clone();
        let spec = BundleSpec {
            bundle: self.bundle.clone(),
            root: self.root.clone(),
            readonly: self.readonly,
            config_json: self.config_json.clone(),
            runtime_json: self.runtime_json.clone(),
            source: self.source.clone(),
            location: self.location.clone(),
        };
        ctx.blocking(move || {
            let tree = spec.tree(&store, image)?;
            Ok(single("tree", save_tree(&store, &tree)?))
        })
        .await
    }
}

struct BundleSpec {
    bundle: String,
    root: Option<String>,
    readonly: bool,
    config_json: Vec<u8>,
    runtime_json: Vec<u8>,
    source: String,
    location: String,
}

impl BundleSpec {
    fn tree(&self, store: &Store, image: Option<BlobRef>) -> Result<Tree, ActionError> {
        let b = &self.bundle;
        let mut tree = match (&self.root, image) {
            (Some(root), Some(image)) => {
                let fs = linuxkit_root(store, &load_tree(store, &image)?, RootFilter::Container)?;
                let dir = format!("{b}/{root}");
                let mut tree = fs.prefixed(&dir).map_err(tree_error)?;
                add_dirs(&mut tree, &dir)?;
                tree
            }
            _ => {
                let mut tree = Tree::new();
                add_dirs(&mut tree, b)?;
                tree
            }
        };
        insert(
            &mut tree,
            Entry::file(
                format!("{b}/config.json"),
                store.put_bytes(&self.config_json)?,
                GENERATED_FILE,
            ),
        )?;
        if !self.readonly {
            insert(&mut tree, Entry::dir(format!("{b}/tmp"), GENERATED_DIR))?;
        }
        if !self.readonly || self.root.is_none() {
            insert(&mut tree, Entry::dir(format!("{b}/rootfs"), GENERATED_DIR))?;
        }
        insert(
            &mut tree,
            Entry::file(
                format!("{b}/runtime.json"),
                store.put_bytes(&self.runtime_json)?,
                GENERATED_FILE,
            ),
        )?;
        tag(&mut tree, &self.source, &self.location);
        Ok(tree)
    }
}

/// Splits a kernel image into the kernel, its command line, microcode and modules.
#[derive(Debug)]
pub struct KernelAction {
    pub source: String,
    pub binary: String,
    pub tar: Option<String>,
    pub ucode: Option<String>,
    pub cmdline: String,
    pub limits: Limits,
}

#[async_trait]
impl Action for KernelAction {
    fn kind(&self) -> &'static str {
        "kernel"
    }
    fn label(&self) -> String {
        format!("kernel {}", self.source)
    }
    fn identity(&self) -> String {
        "kernel".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("image", |key| {
            key.str(&self.source);
        })
        .field("binary", |key| {
            key.str(&self.binary);
        })
        .field("tar", |key| {
            key.opt_str(self.tar.as_deref());
        })
        .field("ucode", |key| {
            key.opt_str(self.ucode.as_deref());
        })
        .field("cmdline", |key| {
            key.str(&self.cmdline);
        })
        .field("limits", |key| limits_key(&self.limits, key));
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let image = *artifact(ctx.input(0)?, "tree")?;
        let store = ctx.store().clone();
        let this = KernelAction {
            source: self.source.clone(),
            binary: self.binary.clone(),
            tar: self.tar.clone(),
            ucode: self.ucode.clone(),
            cmdline: self.cmdline.clone(),
            limits: self.limits,
        };
        ctx.blocking(move || this.split(&store, &load_tree(&store, &image)?))
            .await
    }
}

impl KernelAction {
    fn split(&self, store: &Store, image: &Tree) -> Result<ActionResult, ActionError> {
        let find = |name: &str, what: &str| -> Result<(BlobRef, Meta), ActionError> {
            let path = name.trim_start_matches('/');
            match image.resolve(path) {
                Some(e) => match e.blob() {
                    Some(b) => Ok((*b, e.meta())),
                    None => Err(ActionError::user(format!(
                        "{what} `{name}` in kernel image {} is a {}, not a file",
                        self.source,
                        e.kind.name()
                    ))),
                },
                None => Err(ActionError::user(format!(
                    "did not find {what} `{name}` in kernel image {}",
                    self.source
                ))),
            }
        };
        let (kernel, kernel_meta) = find(&self.binary, "kernel")?;
        let cmdline = store.put_bytes(self.cmdline.as_bytes())?;
        let mut outputs = vec![
            Artifact {
                name: "kernel".into(),
                blob: kernel,
            },
            Artifact {
                name: "cmdline".into(),
                blob: cmdline,
            },
        ];
        let mut rootfs = Tree::new();
        let mut initrd = Tree::new();
        for t in [&mut rootfs, &mut initrd] {
            insert(t, Entry::dir("boot", GENERATED_DIR))?;
        }
        insert(
            &mut rootfs,
            Entry::file("boot/cmdline", cmdline, GENERATED_FILE),
        )?;
        insert(&mut rootfs, Entry::file("boot/kernel", kernel, kernel_meta))?;
        if let Some(tar) = &self.tar {
            let (blob, _) = find(tar, "kernel tar")?;
            let file = store.open_blob(&blob.digest)?;
            let layer = unpack_layer(
                store,
                std::io::BufReader::new(file),
                "application/vnd.oci.image.layer.v1.tar",
                &self.limits,
            )
            .map_err(|e| ActionError::new(e.category(), e))?;
            let modules = Tree::merge_layers(&[layer]).map_err(tree_error)?;
            for entry in modules.iter() {
                insert(&mut rootfs, entry.clone())?;
                insert(&mut initrd, entry.clone())?;
            }
        }
        if let Some(ucode) = &self.ucode {
            let (blob, meta) = find(ucode, "ucode")?;
            insert(&mut rootfs, Entry::file("boot/ucode.cpio", blob, meta))?;
            outputs.push(Artifact {
                name: "ucode".into(),
                blob,
            });
        }
        for t in [&mut rootfs, &mut initrd] {
            tag(t, &self.source, "kernel");
        }
        outputs.push(Artifact {
            name: "rootfs".into(),
            blob: save_tree(store, &rootfs)?,
        });
        outputs.push(Artifact {
            name: "initrd".into(),
            blob: save_tree(store, &initrd)?,
        });
        Ok(ActionResult { outputs })
    }
}

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
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let store = ctx.store().clone();
        let items = self.items.clone();
        ctx.blocking(move || {
            let tree = files_tree(&store, &items)?;
            Ok(single("tree", save_tree(&store, &tree)?))
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
                insert(&mut tree, with_tag(Entry::dir(parent, meta), &location))?;
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
        insert(&mut tree, with_tag(entry, &location))?;
    }
    Ok(tree)
}

fn with_tag(mut entry: Entry, location: &str) -> Entry {
    entry
        .pax
        .insert("LINUXKIT.source".into(), "linuxkit.files".into());
    entry
        .pax
        .insert("LINUXKIT.location".into(), location.into());
    entry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::EntryKind;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("store");
        (dir, store)
    }

    #[test]
    fn linuxkit_filters_images() {
        let (_d, store) = store();
        let mut image = Tree::new();
        let blob = store.put_bytes(b"x").expect("put");
        image
            .insert(Entry::dir("etc", Meta::new(0o700, 5, 5, 7)))
            .expect("insert");
        image
            .insert(Entry::file("etc/hostname", blob, Meta::new(0o644, 0, 0, 7)))
            .expect("insert");
        image
            .insert(Entry::file(
                "etc/resolv.conf",
                blob,
                Meta::new(0o600, 0, 0, 7),
            ))
            .expect("insert");
        image
            .insert(Entry::file(".dockerenv", blob, Meta::new(0o644, 0, 0, 7)))
            .expect("insert");
        let init = linuxkit_root(&store, &image, RootFilter::Init).expect("filter");
        assert!(!init.contains("etc/hostname") && !init.contains(".dockerenv"));
        assert_eq!(init.get("etc").expect("etc").meta(), GENERATED_DIR);
        match &init.get("etc/resolv.conf").expect("resolv").kind {
            EntryKind::Symlink { target } => assert_eq!(target, RESOLV_LINK),
            other => panic!("resolv.conf is {other:?}"),
        }
        assert_eq!(init.get("etc/resolv.conf").expect("resolv").mode, 0o600);
        assert_eq!(
            init.read_file(&store, "etc/hosts").expect("hosts"),
            HOSTS.as_bytes()
        );
        for dir in TOUCH_DIRS {
            assert!(init.get(dir).expect("touched").is_dir(), "{dir}");
        }
        let container = linuxkit_root(&store, &image, RootFilter::Container).expect("filter");
        assert_eq!(
            container
                .read_file(&store, "etc/resolv.conf")
                .expect("resolv"),
            NO_RESOLV.as_bytes()
        );
    }

    /// The fields `--explain` names when an action's params go from `old` to `new`.
    fn changed(old: &dyn Action, new: &dyn Action) -> Vec<String> {
        let (old, new) = (
            lkb_engine::params_digest(old),
            lkb_engine::params_digest(new),
        );
        lkb_engine::ParamsDigest::changed_fields(
            old.fields.iter().map(|(p, d)| (p.as_str(), d)),
            new.fields.iter().map(|(p, d)| (p.as_str(), d)),
        )
    }

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

    fn kernel() -> KernelAction {
        KernelAction {
            source: "localhost/kernel:1".into(),
            binary: "/kernel".into(),
            tar: Some("/kernel.tar".into()),
            ucode: None,
            cmdline: "console=ttyS0".into(),
            limits: Limits::default(),
        }
    }

    #[test]
    fn kernel_params_name_each_setting() {
        let base = kernel();
        let cmdline = KernelAction {
            cmdline: "console=ttyS0 quiet".into(),
            ..kernel()
        };
        assert_eq!(changed(&base, &cmdline), ["cmdline"]);
        let parts = KernelAction {
            binary: "/bzImage".into(),
            tar: None,
            ucode: Some("/ucode.cpio".into()),
            ..kernel()
        };
        assert_eq!(changed(&base, &parts), ["binary", "tar", "ucode"]);
        let image = KernelAction {
            source: "localhost/kernel:2".into(),
            ..kernel()
        };
        assert_eq!(changed(&base, &image), ["image"]);
        let limits = KernelAction {
            limits: Limits {
                max_entries: 7,
                ..Limits::default()
            },
            ..kernel()
        };
        assert_eq!(changed(&base, &limits), ["limits"]);
    }

    fn bundle() -> BundleAction {
        BundleAction {
            bundle: "containers/onboot/000-dhcpcd".into(),
            root: Some("lower".into()),
            readonly: true,
            config_json: b"{}".to_vec(),
            runtime_json: b"{}".to_vec(),
            source: "localhost/dhcpcd:1".into(),
            location: "onboot[0]".into(),
        }
    }

    #[test]
    fn bundle_params_name_the_json_documents() {
        let base = bundle();
        let config = BundleAction {
            config_json: br#"{"env":["A=1"]}"#.to_vec(),
            ..bundle()
        };
        assert_eq!(changed(&base, &config), ["config.json"]);
        let runtime = BundleAction {
            runtime_json: br#"{"mounts":[]}"#.to_vec(),
            readonly: false,
            ..bundle()
        };
        assert_eq!(changed(&base, &runtime), ["readonly", "runtime.json"]);
        let moved = BundleAction {
            bundle: "containers/onboot/001-dhcpcd".into(),
            location: "onboot[1]".into(),
            ..bundle()
        };
        assert_eq!(changed(&base, &moved), ["path", "location"]);
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
}
