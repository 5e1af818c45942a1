//! Canonical key material: [`KeyHasher`] and the derivation of an [`ActionKey`].

use lkb_store::{ActionKey, ActionResult, Digest};

/// Bump when the encoding below changes, so old cache entries stop matching.
pub const KEY_SCHEMA_VERSION: u64 = 1;

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

/// A BLAKE3 hasher with typed, length-prefixed writes.
///
/// Every write starts with a one-byte type tag, and variable-length values carry their length,
/// so the byte stream decodes to exactly one sequence of values: `str("ab"); str("c")` and
/// `str("a"); str("bc")` hash differently. There is deliberately no `std::hash::Hash` support:
/// its output is not stable across Rust versions or platforms.
#[derive(Debug, Clone, Default)]
pub struct KeyHasher {
    hasher: blake3::Hasher,
}

impl KeyHasher {
    /// An empty hasher.
    pub fn new() -> Self {
        Self::default()
    }

    fn raw_len(&mut self, len: usize) {
        self.hasher.update(&(len as u64).to_le_bytes());
    }

    /// A UTF-8 string.
    pub fn str(&mut self, value: &str) -> &mut Self {
        self.hasher.update(&[tag::STR]);
        self.raw_len(value.len());
        self.hasher.update(value.as_bytes());
        self
    }

    /// Raw bytes.
    pub fn bytes(&mut self, value: &[u8]) -> &mut Self {
        self.hasher.update(&[tag::BYTES]);
        self.raw_len(value.len());
        self.hasher.update(value);
        self
    }

    /// An unsigned integer (little-endian, fixed width).
    pub fn u64(&mut self, value: u64) -> &mut Self {
        self.hasher.update(&[tag::U64]);
        self.hasher.update(&value.to_le_bytes());
        self
    }

    /// A boolean.
    pub fn bool(&mut self, value: bool) -> &mut Self {
        self.hasher.update(&[tag::BOOL, u8::from(value)]);
        self
    }

    /// An optional string; `None` and `Some("")` differ.
    pub fn opt_str(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            None => {
                self.hasher.update(&[tag::NONE]);
            }
            Some(text) => {
                self.hasher.update(&[tag::SOME]);
                self.str(text);
            }
        }
        self
    }

    /// A sha256 digest of any kind.
    pub fn digest<K>(&mut self, value: &Digest<K>) -> &mut Self {
        self.hasher.update(&[tag::DIGEST]);
        self.hasher.update(value.as_bytes());
        self
    }

    /// A named group of writes, e.g. one struct field or one map entry.
    pub fn field(&mut self, name: &str, write: impl FnOnce(&mut KeyHasher)) -> &mut Self {
        self.hasher.update(&[tag::FIELD]);
        self.str(name);
        write(self);
        self.hasher.update(&[tag::FIELD_END]);
        self
    }

    /// A sequence: its length, then each item as written by `write`. Iterate maps in a defined
    /// order (e.g. a `BTreeMap`), never a `HashMap`.
    pub fn list<T>(
        &mut self,
        items: impl ExactSizeIterator<Item = T>,
        mut write: impl FnMut(&mut KeyHasher, T),
    ) -> &mut Self {
        self.hasher.update(&[tag::LIST]);
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
}

/// The hash of an action's [`params`](crate::Action::params), as stored in the history.
pub fn params_hash(action: &dyn crate::Action) -> [u8; 32] {
    let mut hasher = KeyHasher::new();
    action.params(&mut hasher);
    hasher.finish()
}

/// Derives an action key; see the table in the [crate docs](crate#action-keys).
pub fn action_key<'a>(
    kind: &str,
    version: u32,
    params_hash: &[u8; 32],
    inputs: impl ExactSizeIterator<Item = &'a ActionResult>,
) -> ActionKey {
    let mut hasher = KeyHasher::new();
    hasher
        .u64(KEY_SCHEMA_VERSION)
        .str(kind)
        .u64(u64::from(version))
        .bytes(params_hash)
        .list(inputs, |hasher, input| {
            hasher.list(input.outputs.iter(), |hasher, artifact| {
                hasher
                    .str(&artifact.name)
                    .digest(&artifact.blob.digest)
                    .u64(artifact.blob.size);
            });
        });
    ActionKey::from_bytes(hasher.finish())
}

#[cfg(test)]
mod tests {
    use lkb_store::{ActionResult, BlobDigest, BlobRef};

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

    #[test]
    fn golden_action_key() {
        let mut params = KeyHasher::new();
        params.str("layer").u64(7);
        let inputs = [
            ActionResult::new().with("blob", blob(b"layer bytes")),
            ActionResult::new()
                .with("tree", blob(b"tree"))
                .with("meta", blob(b"{}")),
        ];
        let key = action_key("unpack", 1, &params.finish(), inputs.iter());
        assert_eq!(
            key.to_string(),
            "85de242ca27b7087e85968c0d77c0c153900efbd6c506b1310259c3af68a7685"
        );
        let no_inputs: [ActionResult; 0] = [];
        let key = action_key("fetch", 1, &KeyHasher::new().finish(), no_inputs.iter());
        assert_eq!(
            key.to_string(),
            "f05a1c30270bc36f572b54206cd24a9d9abaf4c028cf3fa66334e9fb932bf4c9"
        );
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
        let input = [ActionResult::new().with("out", blob(b"a"))];
        let base = action_key("k", 1, &params, input.iter());
        assert_ne!(base, action_key("j", 1, &params, input.iter()));
        assert_ne!(base, action_key("k", 2, &params, input.iter()));
        assert_ne!(base, action_key("k", 1, &[1; 32], input.iter()));
        let renamed = [ActionResult::new().with("other", blob(b"a"))];
        assert_ne!(base, action_key("k", 1, &params, renamed.iter()));
        let changed = [ActionResult::new().with("out", blob(b"b"))];
        assert_ne!(base, action_key("k", 1, &params, changed.iter()));
        let resized = [ActionResult::new().with(
            "out",
            BlobRef {
                size: 9,
                ..blob(b"a")
            },
        )];
        assert_ne!(base, action_key("k", 1, &params, resized.iter()));
        // Splitting the same artifacts across inputs differently changes the key.
        let two = [
            ActionResult::new().with("out", blob(b"a")),
            ActionResult::new(),
        ];
        assert_ne!(base, action_key("k", 1, &params, two.iter()));
        assert_eq!(base, action_key("k", 1, &params, input.iter()));
    }
}
