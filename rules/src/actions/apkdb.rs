//! The APK installed-database union of the init images (reference §2.4).
//!
//! Every init image is unpacked at `/`, so an image that carries `lib/apk/db/installed` hides
//! the packages of the images before it. LinuxKit therefore captures each such database as it
//! passes through its tar writer and, when it saw more than one, appends one more
//! `lib/apk/db/installed` after the init images: all of them concatenated, each followed by a
//! blank line.

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, Store};

use super::{input_blobs, insert, load_tree, tagged, tree_outputs, tree_result};
use crate::tree::{Entry, EntryKind, Meta, Tree};

/// Where APK keeps its database of installed packages.
pub const APK_INSTALLED: &str = "lib/apk/db/installed";
/// LinuxKit sets no mtime on the union (Go's tar writes 0).
const UNION_META: Meta = Meta::new(0o644, 0, 0, 0);

/// `lib/apk/db/installed` of every input tree (the init images' trees, in order), united.
/// The output tree is empty unless at least two inputs carry a database.
#[derive(Debug)]
pub struct ApkDbAction;

#[async_trait]
impl Action for ApkDbAction {
    fn kind(&self) -> &'static str {
        "apk-db"
    }
    fn label(&self) -> String {
        "APK database union of the init images".into()
    }
    fn identity(&self) -> String {
        "apk-db".into()
    }
    fn params(&self, _key: &mut KeyHasher) {}
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::each(ArtifactKind::Tree)
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let trees = input_blobs(ctx);
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let trees = trees
                .iter()
                .map(|b| load_tree(&store, b))
                .collect::<Result<Vec<_>, _>>()?;
            let union = union_tree(&store, &trees)?;
            tree_result(&store, &union)
        })
        .await
    }
}

/// The union as a tree of (at most) one entry.
fn union_tree(store: &Store, trees: &[Tree]) -> Result<Tree, ActionError> {
    let mut dbs = Vec::new();
    for tree in trees {
        let Some(entry) = tree.get(APK_INSTALLED) else {
            continue;
        };
        // LinuxKit captures the bytes written after the header: a link or any other
        // non-file entry contributes an empty database.
        let bytes = match &entry.kind {
            EntryKind::File { blob } => store.read_blob(&blob.digest)?,
            _ => Vec::new(),
        };
        dbs.push(bytes);
    }
    let mut tree = Tree::new();
    if dbs.len() < 2 {
        return Ok(tree);
    }
    let mut content = Vec::with_capacity(dbs.iter().map(|d| d.len() + 2).sum());
    for db in &dbs {
        content.extend_from_slice(db);
        content.extend_from_slice(b"\n\n");
    }
    let entry = Entry::file(APK_INSTALLED, store.put_bytes(&content)?, UNION_META);
    insert(&mut tree, tagged(entry, "LINUXKIT.apkinit", "init"))?;
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::testutil::store;

    fn with_db(store: &Store, db: Option<&str>) -> Tree {
        let mut tree = Tree::new();
        let meta = Meta::new(0o644, 0, 0, 9);
        let other = store.put_bytes(b"x").expect("put");
        tree.insert(Entry::file("etc/motd", other, meta))
            .expect("insert");
        if let Some(db) = db {
            let blob = store.put_bytes(db.as_bytes()).expect("put");
            tree.insert(Entry::file(APK_INSTALLED, blob, meta))
                .expect("insert");
        }
        tree
    }

    #[test]
    fn two_databases_are_concatenated_with_blank_lines() {
        let (_d, store) = store();
        let trees = [
            with_db(&store, Some("P:busybox\nV:1\n")),
            with_db(&store, None),
            with_db(&store, Some("P:musl\nV:2\n")),
        ];
        let tree = union_tree(&store, &trees).expect("union");
        assert_eq!(tree.len(), 1);
        assert_eq!(
            tree.read_file(&store, APK_INSTALLED).expect("db"),
            b"P:busybox\nV:1\n\n\nP:musl\nV:2\n\n\n"
        );
        let e = tree.get(APK_INSTALLED).expect("entry");
        assert_eq!(e.meta(), UNION_META);
        assert_eq!(e.pax["LINUXKIT.source"], "LINUXKIT.apkinit");
        assert_eq!(e.pax["LINUXKIT.location"], "init");
    }

    #[test]
    fn one_database_needs_no_union() {
        let (_d, store) = store();
        let trees = [with_db(&store, Some("P:a\n")), with_db(&store, None)];
        assert!(union_tree(&store, &trees).expect("union").is_empty());
        assert!(union_tree(&store, &[]).expect("union").is_empty());
    }

    #[test]
    fn a_non_file_database_counts_as_empty() {
        let (_d, store) = store();
        let mut link = Tree::new();
        link.insert(Entry::symlink(
            APK_INSTALLED,
            "/elsewhere",
            Meta::new(0o777, 0, 0, 0),
        ))
        .expect("insert");
        let trees = [link, with_db(&store, Some("P:b\n"))];
        let tree = union_tree(&store, &trees).expect("union");
        assert_eq!(
            tree.read_file(&store, APK_INSTALLED).expect("db"),
            b"\n\nP:b\n\n\n"
        );
    }
}
