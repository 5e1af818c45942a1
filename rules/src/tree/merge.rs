//! Hard-link normalisation and the OCI layer merge.
//!
//! Merge rules (OCI image spec, "Applying Changesets"), applied layer by layer, bottom first:
//! 1. Whiteouts of the layer act on the lower layers only: `dir/.wh.x` removes `dir/x` and its
//!    subtree; `dir/.wh..wh..opq` removes every lower entry below `dir` (not `dir` itself).
//!    Entries of the same layer are never hidden by its own markers.
//! 2. Each other entry of the layer replaces the lower entry at its path. A directory over a
//!    directory only replaces the metadata (lower children stay); anything else over a
//!    directory, or a directory over a non-directory, replaces it with its whole subtree.
//! 3. A layer entry below a path that is a non-directory in the lower layers (and that the
//!    layer does not redeclare) replaces it with a directory; missing ancestors are created.
//!    Such directories get [`Meta::IMPLICIT_DIR`].
//! 4. Hard links keep inode semantics: a link created in a layer refers to the inode at its
//!    target *at the time the layer is applied*. When a later layer removes or replaces that
//!    target, the surviving links keep the old content: the first surviving link (archive
//!    order) is promoted to a copy of the old primary (content, mode, owner, mtime, xattrs)
//!    and the others point to it. So links never silently change content and never dangle.
//!    A link whose target exists in no layer is an error ([`TreeError::DanglingHardlink`]).
//! 5. The root entry ([`Tree::root`]) of a layer that has one replaces the lower one, like a
//!    directory over a directory: the topmost layer with a `./` entry decides (go-containerregistry's
//!    flattening, which LinuxKit uses, keeps the first `.` it meets walking from the top).

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Entry, EntryKind, Meta, PathKey, Tree, TreeError, ancestors, cmp_paths};

/// True for kinds that can be the primary (content holder) of a hard-link group.
pub(super) fn is_content(kind: &EntryKind) -> bool {
    !matches!(
        kind,
        EntryKind::Dir | EntryKind::Hardlink { .. } | EntryKind::Whiteout | EntryKind::Opaque
    )
}

impl Tree {
    /// Makes every hard link point directly to the primary of its group, the member that comes
    /// first in archive order (moving content and inode metadata there if needed). Links get
    /// the primary's mode, owner and mtime (they are the same inode) and no xattrs of their
    /// own. Errors on a link to a missing path, to a directory or marker, or on a link cycle.
    pub fn normalize_hardlinks(&mut self) -> Result<(), TreeError> {
        normalize(self, false)
    }

    /// Like [`Tree::normalize_hardlinks`] for a per-layer tree: links whose target is not in
    /// this layer (it may be in a lower one) are kept as they are.
    pub fn normalize_layer_hardlinks(&mut self) -> Result<(), TreeError> {
        normalize(self, true)
    }

    /// Merges image layers (bottom first) into one tree per the OCI rules in the module docs.
    /// The result has no whiteouts, every parent exists as a directory, and hard links are
    /// normalised.
    pub fn merge_layers(layers: &[Tree]) -> Result<Tree, TreeError> {
        let mut acc = Tree::new();
        for layer in layers {
            apply_layer(&mut acc, layer)?;
            if layer.root.is_some() {
                acc.root.clone_from(&layer.root);
            }
        }
        normalize(&mut acc, false)?;
        Ok(acc)
    }
}

fn bad_target(path: &str, target: &str, kind: &'static str) -> TreeError {
    TreeError::BadHardlinkTarget {
        path: path.to_string(),
        target: target.to_string(),
        kind,
    }
}

/// Where a hard link's chain of links ends.
#[derive(Clone, Copy)]
enum ChainEnd<'a> {
    /// A content entry of this tree: the group's current primary.
    Primary(&'a str),
    /// A path not in this tree (per-layer trees only: it may be in a lower layer).
    External(&'a str),
}

fn normalize(tree: &mut Tree, allow_external: bool) -> Result<(), TreeError> {
    // primary path -> link paths, and links whose chain ends outside this tree.
    let mut groups: BTreeMap<PathKey, Vec<String>> = BTreeMap::new();
    let mut retarget_external: Vec<(String, String)> = Vec::new();
    // Every link whose chain has been followed once, with where the chain ends: each link is
    // walked over once in all, so long chains (`l2 -> l1 -> f`, …) take linear time.
    let mut ends: HashMap<&str, ChainEnd<'_>> = HashMap::new();
    let mut walked: Vec<&str> = Vec::new();
    let mut on_walk: HashSet<&str> = HashSet::new();
    for e in tree.iter() {
        let EntryKind::Hardlink { target } = &e.kind else {
            continue;
        };
        walked.clear();
        on_walk.clear();
        walked.push(e.path.as_str());
        on_walk.insert(e.path.as_str());
        let mut cur = target.as_str();
        let end = loop {
            if let Some(end) = ends.get(cur) {
                break *end;
            }
            match tree.get(cur) {
                None if allow_external => break ChainEnd::External(cur),
                None => {
                    return Err(TreeError::DanglingHardlink {
                        path: e.path.clone(),
                        target: cur.to_string(),
                    });
                }
                Some(t) => match &t.kind {
                    EntryKind::Hardlink { target: next } => {
                        if !on_walk.insert(t.path.as_str()) {
                            return Err(bad_target(&e.path, target, "hard link cycle"));
                        }
                        walked.push(t.path.as_str());
                        cur = next;
                    }
                    k if is_content(k) => break ChainEnd::Primary(t.path.as_str()),
                    k => return Err(bad_target(&e.path, cur, k.name())),
                },
            }
        };
        for link in walked.drain(..) {
            ends.insert(link, end);
        }
        match end {
            ChainEnd::External(outside) => {
                if outside != target {
                    retarget_external.push((e.path.clone(), outside.to_string()));
                }
            }
            ChainEnd::Primary(primary) => groups
                .entry(PathKey(primary.to_string()))
                .or_default()
                .push(e.path.clone()),
        }
    }
    for (link, target) in retarget_external {
        if let Some(e) = tree.map.get_mut(&PathKey(link)) {
            e.kind = EntryKind::Hardlink { target };
        }
    }
    for (primary, links) in groups {
        let first = links
            .iter()
            .min_by(|a, b| cmp_paths(a, b))
            .filter(|l| cmp_paths(l, &primary.0).is_lt())
            .cloned();
        let new_primary = match first {
            None => primary.0.clone(),
            Some(first) => {
                let old = tree.map.get(&primary).cloned().expect("primary exists");
                let key = PathKey(first.clone());
                let link = tree.map.get_mut(&key).expect("link exists");
                let pax = std::mem::take(&mut link.pax);
                *link = Entry {
                    path: first.clone(),
                    pax,
                    ..old
                };
                let demoted = tree.map.get_mut(&primary).expect("primary exists");
                demoted.kind = EntryKind::Hardlink {
                    target: first.clone(),
                };
                first
            }
        };
        let inode = tree
            .map
            .get(&PathKey(new_primary.clone()))
            .expect("primary exists")
            .meta();
        let members = links.iter().chain(std::iter::once(&primary.0));
        for l in members.filter(|l| **l != new_primary) {
            if let Some(e) = tree.map.get_mut(&PathKey(l.clone())) {
                e.kind = EntryKind::Hardlink {
                    target: new_primary.clone(),
                };
                e.set_meta(inode);
                e.xattrs.clear();
            }
        }
    }
    Ok(())
}

fn apply_layer(acc: &mut Tree, layer: &Tree) -> Result<(), TreeError> {
    // Links of the lower layers, by primary.
    let mut links_of: HashMap<String, Vec<String>> = HashMap::new();
    for e in acc.iter() {
        if let EntryKind::Hardlink { target } = &e.kind {
            links_of
                .entry(target.clone())
                .or_default()
                .push(e.path.clone());
        }
    }
    // Links of this layer to lower inodes, resolved before the layer changes anything.
    let mut external: HashMap<String, String> = HashMap::new();
    for e in layer.iter() {
        let EntryKind::Hardlink { target } = &e.kind else {
            continue;
        };
        match layer.get(target) {
            Some(t) if is_content(&t.kind) || matches!(t.kind, EntryKind::Hardlink { .. }) => {}
            Some(t) => return Err(bad_target(&e.path, target, t.kind.name())),
            None => match acc.resolve(target) {
                Some(p) if is_content(&p.kind) => {
                    external.insert(e.path.clone(), p.path.clone());
                }
                Some(p) => return Err(bad_target(&e.path, target, p.kind.name())),
                None => {
                    return Err(TreeError::DanglingHardlink {
                        path: e.path.clone(),
                        target: target.clone(),
                    });
                }
            },
        }
    }
    // This layer's links to lower inodes, by the primary they resolve to.
    let mut external_of: HashMap<&str, Vec<&str>> = HashMap::new();
    for (link, primary) in &external {
        external_of
            .entry(primary.as_str())
            .or_default()
            .push(link.as_str());
    }

    // Lower link primaries that lose their path in this layer, with their old entry.
    let mut lost: BTreeMap<String, Entry> = BTreeMap::new();
    let mut record = |removed: Vec<Entry>| {
        for e in removed {
            if is_content(&e.kind)
                && (links_of.contains_key(&e.path) || external_of.contains_key(e.path.as_str()))
            {
                lost.insert(e.path.clone(), e);
            }
        }
    };

    for e in layer.iter() {
        match e.kind {
            EntryKind::Whiteout => {
                let hidden = e.whiteout_target().expect("whiteout has a target");
                record(acc.remove_subtree(&hidden));
            }
            EntryKind::Opaque => {
                let dir = e.whiteout_target().expect("opaque marker has a directory");
                record(acc.remove_children(&dir));
            }
            _ => {}
        }
    }

    for e in layer.iter() {
        if matches!(e.kind, EntryKind::Whiteout | EntryKind::Opaque) {
            continue;
        }
        for a in ancestors(&e.path) {
            if let Some(own) = layer.get(a) {
                if !own.is_dir() {
                    return Err(TreeError::NotADirectory {
                        path: a.to_string(),
                        kind: own.kind.name(),
                        child: e.path.clone(),
                    });
                }
                continue; // already applied: parents come first
            }
            match acc.get(a) {
                Some(x) if x.is_dir() => {}
                Some(_) => {
                    record(acc.remove_subtree(a));
                    acc.map
                        .insert(PathKey(a.to_string()), Entry::dir(a, Meta::IMPLICIT_DIR));
                }
                None => {
                    acc.map
                        .insert(PathKey(a.to_string()), Entry::dir(a, Meta::IMPLICIT_DIR));
                }
            }
        }
        match acc.get(&e.path) {
            Some(old) if old.is_dir() && e.is_dir() => {}
            Some(old) if old.is_dir() => record(acc.remove_subtree(&e.path)),
            Some(_) => record(acc.remove(&e.path).into_iter().collect()),
            None => {}
        }
        let mut new = e.clone();
        if let (EntryKind::Hardlink { target }, Some(primary)) =
            (&mut new.kind, external.get(&e.path))
        {
            *target = primary.clone();
        }
        acc.map.insert(PathKey(new.path.clone()), new);
    }

    for (old_path, old) in lost {
        let still_linked = |l: &str| matches!(acc.get(l), Some(Entry { kind: EntryKind::Hardlink { target }, .. }) if *target == old_path);
        let mut survivors: Vec<String> = links_of
            .get(&old_path)
            .into_iter()
            .flatten()
            .filter(|l| !layer.contains(l))
            .map(String::as_str)
            .chain(
                external_of
                    .get(old_path.as_str())
                    .into_iter()
                    .flatten()
                    .copied(),
            )
            .filter(|l| still_linked(l))
            .map(str::to_string)
            .collect();
        survivors.sort_by(|a, b| cmp_paths(a, b));
        survivors.dedup();
        let Some((first, rest)) = survivors.split_first() else {
            continue;
        };
        let link = acc
            .map
            .get_mut(&PathKey(first.clone()))
            .expect("survivor exists");
        let pax = std::mem::take(&mut link.pax);
        *link = Entry {
            path: first.clone(),
            pax,
            ..old
        };
        for l in rest {
            if let Some(e) = acc.map.get_mut(&PathKey(l.clone())) {
                e.kind = EntryKind::Hardlink {
                    target: first.clone(),
                };
            }
        }
    }
    Ok(())
}
