//! Canonical key material: [`KeyHasher`] and the derivation of an [`ActionKey`].

use std::collections::{HashMap, HashSet};

use lkb_store::{ActionKey, Artifact, Digest};

use crate::OutputDecl;

/// Bump when the encoding below changes, so old cache entries stop matching.
pub const KEY_SCHEMA_VERSION: u64 = 2;

/// The name under which writes outside any [`KeyHasher::field`] are described.
pub const UNNAMED_FIELD: &str = "(unnamed)";

/// Tags that open every write, so values of different types can never collide.
mod tag {
    pub(super) const STR: u8 = b's';
    pub(super) const BYTES: u8 = b'b';
    pub(super) const U64: u8 = b'u';
    pub(super) const BOOL: u8 = b'?';
    pub(super) const NONE: u8 = b'0';
    pub(super) const SOME: u8 = b'1';
    pub(super) const FIELD: u8 = b'{';
    pub(super) const FIELD_END: u8 = b'}';
    pub(super) const LIST: u8 = b'[';
    pub(super) const DIGEST: u8 = b'#';
}

/// A field being written: where its entry is in `fields`, and the hash of its writes so far.
#[derive(Debug, Clone)]
struct OpenField {
    index: usize,
    hasher: blake3::Hasher,
}

/// A BLAKE3 hasher with typed, length-prefixed writes.
///
/// Every write starts with a one-byte type tag, and variable-length values carry their length,
/// so the byte stream decodes to exactly one sequence of values: `str("ab"); str("c")` and
/// `str("a"); str("bc")` hash differently. There is deliberately no `std::hash::Hash` support:
/// its output is not stable across Rust versions or platforms.
///
/// Besides the key, the hasher keeps a digest per [`field`](KeyHasher::field) (nested fields
/// by path, e.g. `files[3].contents`), so a changed key can say *which* parameter changed
/// ([`ParamsDigest::changed_fields`]). Those digests are a by-product: the key's bytes are
/// the same whether or not they are looked at.
#[derive(Debug, Clone, Default)]
pub struct KeyHasher {
    hasher: blake3::Hasher,
    /// Every field opened so far (path, digest of its writes), in opening order.
    fields: Vec<(String, [u8; 32])>,
    /// The fields being written, innermost last.
    open: Vec<OpenField>,
    /// Writes outside any field, if there were any.
    loose: Option<blake3::Hasher>,
}

impl KeyHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Key material: goes into the key, every open field, or (outside fields) the loose writes.
    fn update(&mut self, bytes: &[u8]) {
        self.update_structure(bytes);
        if self.open.is_empty() {
            self.loose
                .get_or_insert_with(blake3::Hasher::new)
                .update(bytes);
        }
    }

    /// Field delimiters and names: part of the key and of enclosing fields, never loose.
    fn update_structure(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        for field in &mut self.open {
            field.hasher.update(bytes);
        }
    }

    fn raw_len(&mut self, len: usize) {
        self.update(&(len as u64).to_le_bytes());
    }

    /// A UTF-8 string.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.update(&[tag::STR]);
        self.raw_len(value.len());
        self.update(value.as_bytes());
        self
    }

    /// Raw bytes.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.update(&[tag::BYTES]);
        self.raw_len(value.len());
        self.update(value);
        self
    }

    /// An unsigned integer (little-endian, fixed width).
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.update(&[tag::U64]);
        self.update(&value.to_le_bytes());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.update(&[tag::BOOL, u8::from(value)]);
        self
    }

    /// An optional string; `None` and `Some("")` differ.
    pub fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            None => self.update(&[tag::NONE]),
            Some(text) => {
                self.update(&[tag::SOME]);
                self.str(text);
            }
        }
        self
    }

    /// A sha256 digest of any kind.
    pub fn digest<K>(&mut self, value: &Digest<K>) -> &mut Self {
        self.update(&[tag::DIGEST]);
        self.update(value.as_bytes());
        self
    }

    /// A named group of writes, e.g. one struct field or one map entry.
    ///
    /// The field is also recorded for explanations under its path: `name` at the top level,
    /// `parent.name` inside a field, and `parent[3]` for a `name` that starts with `[` (list
    /// entries). Sibling names should not be a prefix of one another followed by `.` or `[`.
    pub fn field(&mut self, name: &str, write: impl FnOnce(&mut KeyHasher)) -> &mut Self {
        self.update_structure(&[tag::FIELD, tag::STR]);
        self.update_structure(&(name.len() as u64).to_le_bytes());
        self.update_structure(name.as_bytes());
        let path = match self.open.last() {
            Some(parent) => {
                let parent = &self.fields[parent.index].0;
                if name.starts_with('[') {
                    format!("{parent}{name}")
                } else {
                    format!("{parent}.{name}")
                }
            }
            None => name.to_owned(),
        };
        self.fields.push((path, [0; 32]));
        self.open.push(OpenField {
            index: self.fields.len() - 1,
            hasher: blake3::Hasher::new(),
        });
        write(self);
        let field = self
            .open
            .pop()
            .expect("the field opened above is still open");
        self.fields[field.index].1 = *field.hasher.finalize().as_bytes();
        self.update_structure(&[tag::FIELD_END]);
        self
    }

    /// A sequence: its length, then each item as written by `write`. Iterate maps in a defined
    /// order (e.g. a `BTreeMap`), never a `HashMap`.
    pub fn list<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        mut write: impl FnMut(&mut KeyHasher, T),
    ) -> &mut Self {
        self.update(&[tag::LIST]);
        self.raw_len(items.len());
        for item in items {
            write(self, item);
        }
        self
    }

    /// The hash of everything written so far.
    pub fn finish(&self) -> [u8; 32] {
        *self.hasher.finalize().as_bytes()
    }

    /// The hash of everything written so far, and of each field (see [`ParamsDigest`]).
    pub fn finish_fields(&self) -> ParamsDigest {
        let mut fields: Vec<(String, [u8; 32])> = Vec::with_capacity(self.fields.len() + 1);
        let mut position: HashMap<&str, usize> = HashMap::new();
        for (path, digest) in &self.fields {
            match position.get(path.as_str()) {
                // The same path written twice: both writes count, in order.
                Some(&at) => {
                    let mut combined = blake3::Hasher::new();
                    combined.update(&fields[at].1).update(digest);
                    fields[at].1 = *combined.finalize().as_bytes();
                }
                None => {
                    position.insert(path, fields.len());
                    fields.push((path.clone(), *digest));
                }
            }
        }
        if let Some(loose) = &self.loose {
            fields.push((UNNAMED_FIELD.to_owned(), *loose.finalize().as_bytes()));
        }
        ParamsDigest {
            hash: self.finish(),
            fields,
        }
    }
}

/// An action's params, hashed as a whole (this goes into the key) and per field (this
/// explains a change; see [`KeyHasher::field`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamsDigest {
    /// BLAKE3 of every params write.
    pub hash: [u8; 32],
    /// Each field's path and the BLAKE3 of the writes inside it, in the order the fields were
    /// opened; writes outside any field last, as [`UNNAMED_FIELD`].
    pub fields: Vec<(String, [u8; 32])>,
}

impl ParamsDigest {
    /// The paths of the fields that explain the difference between `old` and `new` (each a
    /// field path and its digest, as in [`ParamsDigest::fields`]): the innermost changed
    /// fields, plus fields added or removed as a whole (whose parent exists in both), in the
    /// order of `new` then `old`.
    pub fn changed_fields<'a, D: PartialEq + 'a>(
        old: impl IntoIterator<Item = (&'a str, &'a D)>,
        new: impl IntoIterator<Item = (&'a str, &'a D)>,
    ) -> Vec<String> {
        let old: Vec<(&str, &D)> = old.into_iter().collect();
        let new: Vec<(&str, &D)> = new.into_iter().collect();
        let old_map: HashMap<&str, &D> = old.iter().copied().collect();
        let new_map: HashMap<&str, &D> = new.iter().copied().collect();
        // Every path once: new's order, then paths only in old.
        let mut order: Vec<&str> = Vec::with_capacity(new.len() + old.len());
        let mut seen: HashSet<&str> = HashSet::new();
        for (path, _) in new.iter().chain(&old) {
            if seen.insert(path) {
                order.push(path);
            }
        }
        let in_both = |path: &str| old_map.contains_key(path) && new_map.contains_key(path);
        let changed = |path: &str| old_map.get(path) != new_map.get(path);
        // Recorded ancestors of a path, nearest first.
        let ancestors = |path: &'a str| -> Vec<&'a str> {
            path.char_indices()
                .rev()
                .filter(|&(at, c)| at > 0 && (c == '.' || c == '['))
                .map(|(at, _)| &path[..at])
                .filter(|prefix| seen.contains(prefix))
                .collect()
        };
        // Innermost first, so a field knows whether a descendant already explains it.
        let mut by_depth: Vec<&str> = order.clone();
        by_depth.sort_by_key(|path| std::cmp::Reverse(path.len()));
        let mut reported: HashSet<&str> = HashSet::new();
        let mut explained: HashSet<&str> = HashSet::new();
        for path in by_depth {
            let up = ancestors(path);
            let parent_in_both = up.first().is_none_or(|parent| in_both(parent));
            if changed(path) && parent_in_both && !explained.contains(path) {
                reported.insert(path);
            }
            if reported.contains(path) || explained.contains(path) {
                explained.extend(up);
            }
        }
        order
            .into_iter()
            .filter(|path| reported.contains(path))
            .map(str::to_owned)
            .collect()
    }
}

/// The hash of an action's [`params`](crate::Action::params), as stored in the history.
pub fn params_hash(action: &dyn crate::Action) -> [u8; 32] {
    params_digest(action).hash
}

/// The hash of an action's [`params`](crate::Action::params), whole and per field.
pub fn params_digest(action: &dyn crate::Action) -> ParamsDigest {
    let mut hasher = KeyHasher::new();
    action.params(&mut hasher);
    hasher.finish_fields()
}

/// Derives an action key; see the table in the [crate docs](crate#action-keys).
pub fn action_key<'a>(
    kind: &str,
    version: u32,
    params_hash: &[u8; 32],
    outputs: &[OutputDecl],
    inputs: impl ExactSizeIterator<Item = &'a Artifact>,
) -> ActionKey {
    let mut hasher = KeyHasher::new();
    hasher
        .u64(KEY_SCHEMA_VERSION)
        .str(kind)
        .u64(u64::from(version))
        .bytes(params_hash)
        .list(outputs.iter(), |hasher, output| {
            hasher.str(output.name).str(output.kind.name());
            match &output.codec {
                None => hasher.opt_str(None),
                Some(codec) => hasher.opt_str(Some(codec.name)).str(&codec.version),
            };
        })
        .list(inputs, |hasher, input| {
            hasher
                .str(input.kind.name())
                .digest(&input.blob.digest)
                .u64(input.blob.size);
        });
    ActionKey::from_bytes(hasher.finish())
}

#[cfg(test)]
mod tests {
    use lkb_store::{ArtifactKind, BlobDigest, BlobRef};

    use super::*;

    fn blob(content: &[u8]) -> BlobRef {
        BlobRef {
            digest: BlobDigest::of_bytes(content),
            size: content.len() as u64,
        }
    }

    fn hex(bytes: [u8; 32]) -> String {
        ActionKey::from_bytes(bytes).to_string()
    }

    #[test]
    fn golden_key_hasher_encoding() {
        let mut hasher = KeyHasher::new();
        hasher
            .str("unpack")
            .bytes(b"\x00\x01")
            .u64(42)
            .bool(true)
            .opt_str(None)
            .opt_str(Some(""))
            .digest(&BlobDigest::of_bytes(b"x"))
            .field("nested", |h| {
                h.str("inner");
            })
            .list(["a", "b"].into_iter(), |h, item| {
                h.str(item);
            });
        assert_eq!(
            hex(hasher.finish()),
            "37f8a4a885bbd5f975f020aeb6d0a653554ffb9af2087bca9d825d767970ff41"
        );
    }

    fn artifact(name: &str, kind: ArtifactKind, content: &[u8]) -> Artifact {
        Artifact {
            name: name.to_owned(),
            kind,
            blob: blob(content),
        }
    }

    #[test]
    fn golden_action_key() {
        let mut params = KeyHasher::new();
        params.str("layer").u64(7);
        let outputs = [OutputDecl::new("tree", ArtifactKind::Tree).codec("lkb-tree", "1")];
        let inputs = [
            artifact("blob", ArtifactKind::Blob, b"layer bytes"),
            artifact("tree", ArtifactKind::Tree, b"tree"),
        ];
        let key = action_key("unpack", 1, &params.finish(), &outputs, inputs.iter());
        assert_eq!(
            key.to_string(),
            "018947fb21a40dd04cfc74a5b446f92ef813a9e85fe60f81d8b9af817c222ce9"
        );
        let key = action_key("fetch", 1, &KeyHasher::new().finish(), &[], [].iter());
        assert_eq!(
            key.to_string(),
            "b67ea927559fad07b1065aa390f56b4313a54da7bf0a138e7d434f0304d06851"
        );
    }

    /// Field paths of a hasher after `write`.
    fn paths(write: impl FnOnce(&mut KeyHasher)) -> Vec<String> {
        let mut hasher = KeyHasher::new();
        write(&mut hasher);
        hasher
            .finish_fields()
            .fields
            .into_iter()
            .map(|(path, _)| path)
            .collect()
    }

    fn digest_of(write: impl FnOnce(&mut KeyHasher)) -> ParamsDigest {
        let mut hasher = KeyHasher::new();
        write(&mut hasher);
        hasher.finish_fields()
    }

    fn changed(old: &ParamsDigest, new: &ParamsDigest) -> Vec<String> {
        ParamsDigest::changed_fields(
            old.fields.iter().map(|(p, d)| (p.as_str(), d)),
            new.fields.iter().map(|(p, d)| (p.as_str(), d)),
        )
    }

    #[test]
    fn fields_are_recorded_by_path_without_changing_the_key() {
        let write = |h: &mut KeyHasher| {
            h.field("cmdline", |h| {
                h.str("console=ttyS0");
            })
            .field("files", |h| {
                h.u64(1).field("[0]", |h| {
                    h.field("path", |h| {
                        h.str("etc/motd");
                    })
                    .field("contents", |h| {
                        h.bytes(b"hi");
                    });
                });
            });
        };
        assert_eq!(
            paths(write),
            [
                "cmdline",
                "files",
                "files[0]",
                "files[0].path",
                "files[0].contents"
            ]
        );
        // The key bytes are exactly the plain encoding of the same writes.
        let mut plain = blake3::Hasher::new();
        let field_open = |h: &mut blake3::Hasher, name: &str| {
            h.update(b"{s");
            h.update(&(name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
        };
        field_open(&mut plain, "cmdline");
        plain.update(b"s");
        plain.update(&13u64.to_le_bytes());
        plain.update(b"console=ttyS0");
        plain.update(b"}");
        field_open(&mut plain, "files");
        plain.update(b"u");
        plain.update(&1u64.to_le_bytes());
        field_open(&mut plain, "[0]");
        field_open(&mut plain, "path");
        plain.update(b"s");
        plain.update(&8u64.to_le_bytes());
        plain.update(b"etc/motd");
        plain.update(b"}");
        field_open(&mut plain, "contents");
        plain.update(b"b");
        plain.update(&2u64.to_le_bytes());
        plain.update(b"hi");
        plain.update(b"}}}");
        assert_eq!(digest_of(write).hash, *plain.finalize().as_bytes());
    }

    #[test]
    fn loose_writes_and_repeated_fields() {
        assert_eq!(
            paths(|h| {
                h.str("loose").field("a", |h| {
                    h.u64(1);
                });
            }),
            ["a", UNNAMED_FIELD]
        );
        assert!(
            paths(|h| {
                h.field("a", |h| {
                    h.u64(1);
                });
            })
            .iter()
            .all(|p| p != UNNAMED_FIELD),
            "field names alone are not loose writes"
        );
        let twice = digest_of(|h| {
            h.field("a", |h| {
                h.u64(1);
            })
            .field("a", |h| {
                h.u64(2);
            });
        });
        assert_eq!(twice.fields.len(), 1);
        let other = digest_of(|h| {
            h.field("a", |h| {
                h.u64(1);
            })
            .field("a", |h| {
                h.u64(3);
            });
        });
        assert_eq!(changed(&twice, &other), ["a"]);
    }

    #[test]
    fn changed_fields_name_the_innermost_change() {
        let files = |contents: &[&str]| {
            digest_of(|h| {
                h.field("cmdline", |h| {
                    h.str("quiet");
                })
                .field("files", |h| {
                    h.u64(contents.len() as u64);
                    for (i, c) in contents.iter().enumerate() {
                        h.field(&format!("[{i}]"), |h| {
                            h.field("path", |h| {
                                h.str("etc/x");
                            })
                            .field("contents", |h| {
                                h.str(c);
                            })
                            .field("mode", |h| {
                                h.u64(0o644);
                            });
                        });
                    }
                });
            })
        };
        let base = files(&["a", "b", "c", "d"]);
        assert!(changed(&base, &base).is_empty());
        assert_eq!(
            changed(&base, &files(&["a", "b", "c", "D"])),
            ["files[3].contents"]
        );
        assert_eq!(
            changed(&base, &files(&["A", "b", "c", "D"])),
            ["files[0].contents", "files[3].contents"]
        );
        // An entry added or removed is named as a whole, not attribute by attribute.
        assert_eq!(
            changed(&base, &files(&["a", "b", "c", "d", "e"])),
            ["files[4]"]
        );
        assert_eq!(changed(&base, &files(&["a", "b", "c"])), ["files[3]"]);
        // A change only in a field's own writes (not in a sub-field) names the field.
        let cmdline = digest_of(|h| {
            h.field("cmdline", |h| {
                h.str("console=ttyS0");
            });
        });
        let quiet = digest_of(|h| {
            h.field("cmdline", |h| {
                h.str("quiet");
            });
        });
        assert_eq!(changed(&quiet, &cmdline), ["cmdline"]);
        let loose = |v: u64| {
            digest_of(|h| {
                h.u64(v).field("cmdline", |h| {
                    h.str("quiet");
                });
            })
        };
        assert_eq!(changed(&loose(1), &loose(2)), [UNNAMED_FIELD]);
        // A field name containing dots is not mistaken for a nested path.
        let json = |v: &str| {
            digest_of(|h| {
                h.field("config.json", |h| {
                    h.str(v);
                })
                .field("runtime.json", |h| {
                    h.str("{}");
                });
            })
        };
        assert_eq!(changed(&json("{}"), &json("{\"a\":1}")), ["config.json"]);
    }

    #[test]
    fn writes_are_unambiguous() {
        let split = |a: &str, b: &str| {
            let mut hasher = KeyHasher::new();
            hasher.str(a).str(b);
            hasher.finish()
        };
        assert_ne!(split("ab", "c"), split("a", "bc"));
        let mut as_str = KeyHasher::new();
        as_str.str("a");
        let mut as_bytes = KeyHasher::new();
        as_bytes.bytes(b"a");
        assert_ne!(as_str.finish(), as_bytes.finish());
        let mut none = KeyHasher::new();
        none.opt_str(None);
        let mut empty = KeyHasher::new();
        empty.opt_str(Some(""));
        assert_ne!(none.finish(), empty.finish());
    }

    #[test]
    fn key_depends_on_every_part() {
        let params = KeyHasher::new().finish();
        let outputs = [OutputDecl::new("out", ArtifactKind::Archive)];
        let input = [artifact("out", ArtifactKind::Blob, b"a")];
        let key = |kind: &str,
                   version,
                   params: &[u8; 32],
                   outputs: &[OutputDecl],
                   inputs: &[Artifact]| {
            action_key(kind, version, params, outputs, inputs.iter())
        };
        let base = key("k", 1, &params, &outputs, &input);
        assert_ne!(base, key("j", 1, &params, &outputs, &input));
        assert_ne!(base, key("k", 2, &params, &outputs, &input));
        assert_ne!(base, key("k", 1, &[1; 32], &outputs, &input));
        // The declared outputs: name, kind, codec and codec version.
        let renamed_output = [OutputDecl::new("other", ArtifactKind::Archive)];
        assert_ne!(base, key("k", 1, &params, &renamed_output, &input));
        let other_kind = [OutputDecl::new("out", ArtifactKind::DiskImage)];
        assert_ne!(base, key("k", 1, &params, &other_kind, &input));
        let gzip_1 = [OutputDecl::new("out", ArtifactKind::Archive).codec("gzip", "1")];
        let gzip_2 = [OutputDecl::new("out", ArtifactKind::Archive).codec("gzip", "2")];
        let with_codec = key("k", 1, &params, &gzip_1, &input);
        assert_ne!(base, with_codec);
        assert_ne!(with_codec, key("k", 1, &params, &gzip_2, &input));
        // The inputs: kind, digest and size, but not the producer's name for them.
        let renamed = [artifact("other", ArtifactKind::Blob, b"a")];
        assert_eq!(base, key("k", 1, &params, &outputs, &renamed));
        let retyped = [artifact("out", ArtifactKind::Tree, b"a")];
        assert_ne!(base, key("k", 1, &params, &outputs, &retyped));
        let changed = [artifact("out", ArtifactKind::Blob, b"b")];
        assert_ne!(base, key("k", 1, &params, &outputs, &changed));
        let mut resized = input.clone();
        resized[0].blob.size = 9;
        assert_ne!(base, key("k", 1, &params, &outputs, &resized));
        let two = [input[0].clone(), input[0].clone()];
        assert_ne!(base, key("k", 1, &params, &outputs, &two));
        assert_eq!(base, key("k", 1, &params, &outputs, &input));
    }
}
