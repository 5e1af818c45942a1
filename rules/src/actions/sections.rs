//! Images placed into the final filesystem: `init:` images unpacked at `/` and container
//! bundles (`onboot`, `onshutdown`, `services`), both after LinuxKit's root filter, which
//! `volume` applies too.

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, BlobRef, Store};

use super::{
    DEFAULT_MTIME, GENERATED_DIR, GENERATED_FILE, insert, load_tree, tag, tree_error, tree_outputs,
    tree_result,
};
use crate::tree::{Entry, Meta, Tree};

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
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::exactly([ArtifactKind::Tree])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let image = *ctx.input(0)?;
        let store = ctx.store().clone();
        let (source, location) = (self.source.clone(), self.location.clone());
        ctx.blocking(move || {
            let mut tree = linuxkit_root(&store, &load_tree(&store, &image)?, RootFilter::Init)?;
            tag(&mut tree, &source, &location);
            tree_result(&store, &tree)
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
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        match self.root {
            // The bundle extracts the image's filesystem as its rootfs.
            Some(_) => InputKinds::exactly([ArtifactKind::Tree]),
            // It shares an earlier container's rootfs: nothing to read.
            None => InputKinds::none(),
        }
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let image = match &self.root {
            Some(_) => Some(*ctx.input(0)?),
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
            tree_result(&store, &tree)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::changed_params as changed;
    use crate::tree::EntryKind;
    use crate::tree::testutil::store;

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
}
