//! System Use Sharing Protocol (SUSP 1.12) and Rock Ridge (RRIP 1.12) entries, and how a
//! directory record's entries are split between the record and continuation areas.

use super::{SECTOR, both32};

/// Longest directory record; records are kept at even lengths, so 254.
const RECORD_MAX: usize = 254;
/// Longest SUSP entry (its length is one byte).
const ENTRY_MAX: usize = 255;
/// Length of a `CE` entry.
pub(super) const CE_LEN: usize = 28;
/// Longest name or symlink component chunk in one `NM` or component record, so that a root
/// component and one chunk always share an `SL` entry.
const CHUNK: usize = 246;

pub(super) const S_IFIFO: u32 = 0o010_000;
pub(super) const S_IFCHR: u32 = 0o020_000;
pub(super) const S_IFDIR: u32 = 0o040_000;
pub(super) const S_IFBLK: u32 = 0o060_000;
pub(super) const S_IFREG: u32 = 0o100_000;
pub(super) const S_IFLNK: u32 = 0o120_000;
pub(super) const S_IFSOCK: u32 = 0o140_000;

fn entry(sig: &[u8; 2], body: &[u8]) -> Vec<u8> {
    let len = 4 + body.len();
    assert!(len <= ENTRY_MAX, "SUSP entry of {len} bytes");
    let mut e = Vec::with_capacity(len);
    e.extend_from_slice(sig);
    e.push(len as u8);
    e.push(1);
    e.extend_from_slice(body);
    e
}

/// `SP`: SUSP is in use; first entry of the root's `.` record.
pub(super) fn sp() -> Vec<u8> {
    entry(b"SP", &[0xbe, 0xef, 0])
}

/// `ER`: the extension in use is Rock Ridge 1.12 (the identifier Linux, libisofs and
/// genisoimage recognise).
pub(super) fn er() -> Vec<u8> {
    const ID: &[u8] = b"IEEE_P1282";
    const DES: &[u8] = b"THE IEEE P1282 PROTOCOL PROVIDES SUPPORT FOR POSIX FILE SYSTEM SEMANTICS.";
    const SRC: &[u8] = b"PLEASE CONTACT THE IEEE STANDARDS DEPARTMENT, PISCATAWAY, NJ, USA FOR THE P1282 SPECIFICATION.";
    let mut body = vec![ID.len() as u8, DES.len() as u8, SRC.len() as u8, 1];
    body.extend_from_slice(ID);
    body.extend_from_slice(DES);
    body.extend_from_slice(SRC);
    entry(b"ER", &body)
}

/// `CE`: the rest of the entries are `len` bytes at `offset` in block `lba`.
pub(super) fn ce(lba: u32, offset: u32, len: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(24);
    body.extend_from_slice(&both32(lba));
    body.extend_from_slice(&both32(offset));
    body.extend_from_slice(&both32(len));
    entry(b"CE", &body)
}

/// `PX`: mode (type and permission bits), link count, owner, group and file serial number.
pub(super) fn px(mode: u32, nlink: u32, uid: u32, gid: u32, ino: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(40);
    for v in [mode, nlink, uid, gid, ino] {
        body.extend_from_slice(&both32(v));
    }
    entry(b"PX", &body)
}

/// `PN`: device number. Readers disagree on the encoding: Linux takes `MKDEV(high, low)`, or
/// the old 16-bit `major << 8 | minor` when `high` is 0; libisofs takes glibc's 64-bit `dev_t`
/// split into halves. Both agree on `high = 0, low = major << 8 | minor` for majors below 4096
/// and minors below 256, which is written then. Larger numbers are written as Linux reads them
/// (`high = major, low = minor`), since Linux is what mounts a LinuxKit ISO; libisofs misreads
/// those.
pub(super) fn pn(major: u32, minor: u32) -> Vec<u8> {
    let (high, low) = if major < 4096 && minor < 256 {
        (0, major << 8 | minor)
    } else {
        (major, minor)
    };
    let mut body = Vec::with_capacity(16);
    body.extend_from_slice(&both32(high));
    body.extend_from_slice(&both32(low));
    entry(b"PN", &body)
}

/// `TF`: modification, access and attribute-change times, all `mtime`, in the 7-byte form.
pub(super) fn tf(mtime: i64) -> Vec<u8> {
    let mut body = vec![0x0e];
    for _ in 0..3 {
        body.extend_from_slice(&super::record_date(mtime));
    }
    entry(b"TF", &body)
}

/// `NM` entries for `name`, split with the CONTINUE flag when it is long.
pub(super) fn nm(name: &[u8]) -> Vec<Vec<u8>> {
    let chunks: Vec<&[u8]> = name.chunks(CHUNK).collect();
    chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let mut body = vec![u8::from(i + 1 < chunks.len())];
            body.extend_from_slice(chunk);
            entry(b"NM", &body)
        })
        .collect()
}

/// `SL` entries for a symlink to `target`: one component record per path component (`ROOT`,
/// `CURRENT`, `PARENT` flags for `/`, `.`, `..`; long components split with the component
/// CONTINUE flag), packed into as few entries as fit, each but the last flagged CONTINUE.
pub(super) fn sl(target: &str) -> Vec<Vec<u8>> {
    let mut records: Vec<Vec<u8>> = Vec::new();
    let (absolute, rest) = match target.strip_prefix('/') {
        Some(rest) => (true, rest),
        None => (false, target),
    };
    if absolute {
        records.push(vec![0x08, 0]);
    }
    for component in rest.split('/').filter(|c| !c.is_empty()) {
        match component {
            "." => records.push(vec![0x02, 0]),
            ".." => records.push(vec![0x04, 0]),
            _ => {
                let chunks: Vec<&[u8]> = component.as_bytes().chunks(CHUNK).collect();
                for (i, chunk) in chunks.iter().enumerate() {
                    let mut r = vec![u8::from(i + 1 < chunks.len()), chunk.len() as u8];
                    r.extend_from_slice(chunk);
                    records.push(r);
                }
            }
        }
    }
    // Room for component records in one entry: the entry header and the SL flags byte.
    let room = ENTRY_MAX - 5;
    let mut bodies: Vec<Vec<u8>> = vec![vec![0]];
    for r in records {
        if bodies.last().is_some_and(|b| b.len() - 1 + r.len() > room) {
            bodies.push(vec![0]);
        }
        bodies.last_mut().expect("one body").extend_from_slice(&r);
    }
    let n = bodies.len();
    for body in &mut bodies[..n - 1] {
        body[0] = 1;
    }
    bodies.iter().map(|b| entry(b"SL", b)).collect()
}

/// A record's system use entries once placed: `inline` goes in the record (followed by a `CE`
/// when `pieces` is not empty); each piece is one continuation area, chained by `CE` entries.
#[derive(Debug, Default)]
pub(super) struct Su {
    pub(super) inline: Vec<u8>,
    pub(super) pieces: Vec<Vec<u8>>,
    /// Where the first piece was placed: block, offset, length (with its trailing `CE`).
    pub(super) ce: Option<(u32, u32, u32)>,
}

impl Su {
    /// Bytes of system use in the record.
    pub(super) fn record_len(&self) -> usize {
        self.inline.len() + if self.pieces.is_empty() { 0 } else { CE_LEN }
    }

    /// Length of piece `i` with the `CE` that chains it to the next.
    pub(super) fn piece_len(&self, i: usize) -> usize {
        self.pieces[i].len() + if i + 1 < self.pieces.len() { CE_LEN } else { 0 }
    }
}

/// Splits `entries` between a record whose fixed part and identifier take `base` bytes and
/// continuation areas (each within one block). Order is kept.
pub(super) fn split(base: usize, entries: Vec<Vec<u8>>) -> Su {
    let total: usize = entries.iter().map(Vec::len).sum();
    let mut su = Su::default();
    if base + total <= RECORD_MAX {
        su.inline = entries.concat();
        return su;
    }
    let mut rest = entries.into_iter().peekable();
    while let Some(e) = rest.next_if(|e| base + su.inline.len() + e.len() + CE_LEN <= RECORD_MAX) {
        su.inline.extend_from_slice(&e);
    }
    let mut piece = Vec::new();
    for e in rest {
        if piece.len() + e.len() + CE_LEN > SECTOR {
            su.pieces.push(std::mem::take(&mut piece));
        }
        piece.extend_from_slice(&e);
    }
    su.pieces.push(piece);
    su
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `SL` entries back the way Linux's `get_symlink_chunk` does.
    fn read_sl(entries: &[Vec<u8>]) -> String {
        let mut out = String::new();
        for e in entries {
            assert_eq!(&e[..2], b"SL");
            assert_eq!(e[2] as usize, e.len());
            let continues = e[4] & 1 != 0;
            let mut rest = &e[5..];
            while !rest.is_empty() {
                let (flags, len) = (rest[0], rest[1] as usize);
                let text = &rest[2..2 + len];
                let root = flags & 0x08 != 0;
                match flags & !1 {
                    0 => out.push_str(std::str::from_utf8(text).unwrap()),
                    2 => out.push('.'),
                    4 => out.push_str(".."),
                    8 => out.push('/'),
                    f => panic!("flags {f}"),
                }
                rest = &rest[2 + len..];
                let last_continued = flags & 1 != 0;
                if rest.is_empty() {
                    if continues && !last_continued {
                        out.push('/');
                    }
                } else if !root && !last_continued {
                    out.push('/');
                }
            }
        }
        out
    }

    #[test]
    fn symlinks_round_trip_through_sl() {
        let long_component = "c".repeat(600);
        let many = (0..80)
            .map(|i| format!("dir{i}"))
            .collect::<Vec<_>>()
            .join("/");
        for target in [
            "/usr/bin/busybox",
            "../lib/x",
            "./a",
            "busybox",
            &format!("/a/{long_component}/b"),
            &many,
        ] {
            let entries = sl(target);
            assert!(entries.iter().all(|e| e.len() <= ENTRY_MAX));
            assert_eq!(read_sl(&entries), target, "{} entries", entries.len());
        }
        assert!(sl(&many).len() > 1);
    }

    #[test]
    fn long_names_split_into_continued_nm_entries() {
        let name = "n".repeat(255);
        let entries = nm(name.as_bytes());
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0][4], 1);
        assert_eq!(entries[1][4], 0);
        let joined: Vec<u8> = entries.iter().flat_map(|e| e[5..].to_vec()).collect();
        assert_eq!(joined, name.as_bytes());
    }

    #[test]
    fn split_keeps_short_entries_inline_and_chains_the_rest() {
        let small = split(40, vec![px(0o100644, 1, 0, 0, 7), tf(0)]);
        assert!(small.pieces.is_empty());
        assert_eq!(small.record_len(), 70);

        let big = split(40, sl(&"x/".repeat(2000)));
        assert!(big.pieces.len() >= 2);
        assert!(40 + big.record_len() <= RECORD_MAX);
        for i in 0..big.pieces.len() {
            assert!(big.piece_len(i) <= SECTOR);
        }
    }

    #[test]
    fn device_numbers_use_the_encoding_both_readers_share_when_they_can() {
        let e = pn(8, 1);
        assert_eq!(&e[4..12], &both32(0));
        assert_eq!(&e[12..20], &both32(0x801));
        let e = pn(4095, 255);
        assert_eq!(&e[12..20], &both32(0x000f_ffff));
        // What Linux's isofs decodes as MKDEV(7, 300).
        let e = pn(7, 300);
        assert_eq!(&e[4..12], &both32(7));
        assert_eq!(&e[12..20], &both32(300));
    }
}
