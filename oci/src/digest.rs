//! sha256 helpers: strict parsing of `sha256:<hex>` and hashing into [`BlobDigest`]s.

use lkb_store::BlobDigest;
use sha2::{Digest as _, Sha256};

/// Parses `sha256:<64 lowercase hex>`; anything else (other algorithms, upper case, wrong
/// length) is `None`. Never lets a path separator through, so the result is safe to use in paths.
pub fn parse_sha256(s: &str) -> Option<BlobDigest> {
    let hex = s.strip_prefix("sha256:")?;
    if hex.len() != 64
        || !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    s.parse().ok()
}

/// The hex part of a digest.
pub(crate) fn hex_of(d: &BlobDigest) -> String {
    d.hex()
}

/// sha256 of a byte slice.
pub fn sha256_digest(bytes: &[u8]) -> BlobDigest {
    let mut h = Hasher::new();
    h.update(bytes);
    h.finish()
}

/// Incremental sha256 that yields a [`BlobDigest`].
pub(crate) struct Hasher(Sha256);

impl Hasher {
    pub(crate) fn new() -> Self {
        Hasher(Sha256::new())
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub(crate) fn finish(self) -> BlobDigest {
        BlobDigest::from_bytes(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vector() {
        assert_eq!(
            sha256_digest(b"abc").to_string(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn strict_parse() {
        let ok = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(parse_sha256(ok).is_some());
        assert!(parse_sha256(&ok.to_uppercase()).is_none());
        assert!(parse_sha256("sha512:ab").is_none());
        assert!(parse_sha256("sha256:../../etc/passwd").is_none());
        assert_eq!(hex_of(&parse_sha256(ok).unwrap()), &ok[7..]);
    }
}
