//! The names a file gets in the ISO 9660 tree and in the Joliet tree.
//!
//! Rock Ridge `NM` entries carry the real name, so these are what readers without Rock Ridge
//! (or without Joliet) see. Both are derived from the real names of one directory's children,
//! taken in byte order, so the result depends only on the set of names.

use std::collections::BTreeSet;

/// Longest ISO 9660 file name plus extension (interchange level 2: 30, then `.` and `;1`).
const ISO_FILE_MAX: usize = 30;
/// Longest ISO 9660 directory identifier.
const ISO_DIR_MAX: usize = 31;
/// Longest extension kept when a file name is shortened.
const ISO_EXT_MAX: usize = 8;
/// Longest Joliet name in UCS-2 units, as `mkisofs -joliet-long` allows (the 64 of the Joliet
/// specification is too short for many real names, and Linux and Windows read 103).
pub(super) const JOLIET_MAX: usize = 103;
/// Longest extension (in UCS-2 units) kept when a Joliet name is shortened.
const JOLIET_EXT_MAX: usize = 16;

/// ISO 9660 identifiers for the children of one directory, `(name, is_dir)` in byte order of
/// `name`. Files get `NAME.EXT;1`, directories `NAME`; names are upper-cased, characters outside
/// the d-characters become `_`, long names are shortened and clashes get a numeric suffix.
pub(super) fn iso_identifiers(children: &[(&str, bool)]) -> Vec<Vec<u8>> {
    let mut taken = BTreeSet::new();
    children
        .iter()
        .map(|&(name, is_dir)| {
            let (base, ext) = if is_dir {
                (d_chars(name), String::new())
            } else {
                match name.rfind('.') {
                    Some(dot) if dot > 0 => {
                        let mut ext = d_chars(&name[dot + 1..]);
                        ext.truncate(ISO_EXT_MAX);
                        (d_chars(&name[..dot]), ext)
                    }
                    _ => (d_chars(name), String::new()),
                }
            };
            let limit = if is_dir {
                ISO_DIR_MAX
            } else {
                ISO_FILE_MAX - ext.len()
            };
            let base = unique(base.into_bytes(), limit, |b| {
                taken.insert((b.to_vec(), ext.clone().into_bytes()))
            });
            let mut id = base;
            if !is_dir {
                id.push(b'.');
                id.extend_from_slice(ext.as_bytes());
                id.extend_from_slice(b";1");
            }
            id
        })
        .collect()
}

/// The order of records in an ISO 9660 directory (ECMA-119 9.3): by name, then by extension,
/// each compared as if padded with spaces. Every character used sorts above a space, so
/// comparing the parts as byte strings is the same thing.
pub(super) fn iso_order(id: &[u8]) -> (&[u8], &[u8]) {
    let id = id.strip_suffix(b";1").unwrap_or(id);
    match id.iter().position(|&b| b == b'.') {
        Some(dot) => (&id[..dot], &id[dot + 1..]),
        None => (id, &[]),
    }
}

/// Joliet identifiers (UCS-2 big-endian bytes) for the children of one directory, in the same
/// shape as [`iso_identifiers`]: characters Joliet forbids (and ones outside the Basic
/// Multilingual Plane) become `_`, names longer than [`JOLIET_MAX`] are shortened keeping a
/// short extension, and clashes get a numeric suffix. No `;1` version is added, as neither
/// genisoimage nor xorriso add one.
pub(super) fn joliet_identifiers(children: &[(&str, bool)]) -> Vec<Vec<u8>> {
    let mut taken = BTreeSet::new();
    children
        .iter()
        .map(|&(name, is_dir)| {
            let units: Vec<u16> = name.chars().map(joliet_unit).collect();
            let dot = if is_dir {
                None
            } else {
                units.iter().rposition(|&u| u == u16::from(b'.'))
            };
            let (base, ext) = match dot {
                Some(dot) if dot > 0 && units.len() - dot - 1 <= JOLIET_EXT_MAX => {
                    (units[..dot].to_vec(), units[dot..].to_vec())
                }
                _ => (units, Vec::new()),
            };
            let limit = JOLIET_MAX - ext.len();
            let mut id = unique(base, limit, |b| {
                let mut whole = b.to_vec();
                whole.extend_from_slice(&ext);
                taken.insert(whole)
            });
            id.extend_from_slice(&ext);
            id.iter().flat_map(|u| u.to_be_bytes()).collect()
        })
        .collect()
}

/// `s` in UCS-2 big-endian bytes, for volume descriptor fields.
pub(super) fn ucs2(s: &str) -> Vec<u8> {
    s.chars()
        .map(joliet_unit)
        .flat_map(|u| u.to_be_bytes())
        .collect()
}

fn joliet_unit(c: char) -> u16 {
    match c {
        '\0'..='\u{1f}' | '*' | '/' | ':' | ';' | '?' | '\\' => u16::from(b'_'),
        c => u16::try_from(u32::from(c)).unwrap_or(u16::from(b'_')),
    }
}

/// `name` in ISO 9660 d-characters: `A`–`Z`, `0`–`9` and `_`.
fn d_chars(name: &str) -> String {
    let mapped: String = name
        .chars()
        .map(|c| match c {
            'a'..='z' => c.to_ascii_uppercase(),
            'A'..='Z' | '0'..='9' | '_' => c,
            _ => '_',
        })
        .collect();
    if mapped.is_empty() {
        "_".to_string()
    } else {
        mapped
    }
}

/// `base` cut to `limit` units, with the tail replaced by `1`, `2`, … until `claim` accepts it.
fn unique<T: Copy + From<u8>>(
    mut base: Vec<T>,
    limit: usize,
    mut claim: impl FnMut(&[T]) -> bool,
) -> Vec<T> {
    base.truncate(limit);
    if claim(&base) {
        return base;
    }
    for n in 1u64.. {
        let digits = n.to_string();
        let mut candidate = base.clone();
        candidate.truncate(limit.saturating_sub(digits.len()));
        candidate.extend(digits.bytes().map(T::from));
        if claim(&candidate) {
            return candidate;
        }
    }
    unreachable!("a directory has fewer than 2^64 children")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iso(children: &[(&str, bool)]) -> Vec<String> {
        iso_identifiers(children)
            .into_iter()
            .map(|id| String::from_utf8(id).unwrap())
            .collect()
    }

    #[test]
    fn iso_names_are_d_characters_with_versions() {
        assert_eq!(
            iso(&[
                (".profile", false),
                ("etc", true),
                ("initrd.img", false),
                ("README", false),
                ("x-y.tar.gz", false),
            ]),
            [
                "_PROFILE.;1",
                "ETC",
                "INITRD.IMG;1",
                "README.;1",
                "X_Y_TAR.GZ;1"
            ]
        );
    }

    #[test]
    fn iso_clashes_and_long_names_get_suffixes() {
        let long = "a".repeat(40);
        let long_file = format!("{long}.conf");
        let ids = iso(&[
            ("A.txt", false),
            ("a.txt", false),
            ("a_txt", true),
            ("a+txt", true),
            (&long, true),
            (&long_file, false),
        ]);
        assert_eq!(ids[0], "A.TXT;1");
        assert_eq!(ids[1], "A1.TXT;1");
        assert_eq!(ids[2], "A_TXT");
        assert_eq!(ids[3], "A_TXT1");
        assert_eq!(ids[4], "A".repeat(31));
        assert_eq!(ids[5], format!("{}.CONF;1", "A".repeat(26)));
        // A file without extension and a directory of the same name clash for readers that
        // drop the version and the empty extension.
        assert_eq!(iso(&[("x", true), ("x", false)]), ["X", "X1.;1"]);
    }

    #[test]
    fn iso_order_compares_name_then_extension() {
        let mut ids = vec![&b"AB.C;1"[..], b"A.CD;1", b"A", b"A.B;1"];
        ids.sort_by(|a, b| iso_order(a).cmp(&iso_order(b)));
        assert_eq!(ids, [&b"A"[..], b"A.B;1", b"A.CD;1", b"AB.C;1"]);
    }

    fn joliet(children: &[(&str, bool)]) -> Vec<String> {
        joliet_identifiers(children)
            .into_iter()
            .map(|id| {
                let units: Vec<u16> = id
                    .chunks(2)
                    .map(|p| u16::from_be_bytes([p[0], p[1]]))
                    .collect();
                String::from_utf16(&units).unwrap()
            })
            .collect()
    }

    #[test]
    fn joliet_names_keep_case_and_unicode() {
        assert_eq!(
            joliet(&[("Grüße.txt", false), ("a:b", true), ("emoji😀", false)]),
            ["Grüße.txt", "a_b", "emoji_"]
        );
    }

    #[test]
    fn joliet_long_names_are_cut_keeping_the_extension() {
        let a = format!("{}.conf", "x".repeat(200));
        let b = format!("{}y.conf", "x".repeat(200));
        let ids = joliet(&[(&a, false), (&b, false)]);
        assert_eq!(ids[0], format!("{}.conf", "x".repeat(98)));
        assert_eq!(ids[1], format!("{}1.conf", "x".repeat(97)));
        assert!(ids.iter().all(|id| id.len() == JOLIET_MAX));
        assert_eq!(joliet(&[("x", true), ("x", false)]), ["x", "x1"]);
    }
}
