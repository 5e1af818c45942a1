//! Packs: small blobs appended to shared files instead of one file each.
//!
//! A layer of 20,000 small files used to cost 20,000 new inodes in `cas/` (a temporary file,
//! a `fchmod`, a rename into a fan-out directory), and on ext4 that inode churn was more than
//! half of a cold build's CPU time. A blob of at most [`PACK_MAX_BLOB`] bytes stored with
//! [`Store::put_bytes`] is instead appended to the open pack file (`packs/<id>.pack`), and the
//! index's `packed` table maps its digest to the pack, offset and length. Large blobs and blobs
//! written through a [`crate::BlobWriter`] stay one file each in `cas/`.
//!
//! Consistency follows the store's rule, "a crash can leak bytes, never leave a record naming a
//! missing blob":
//! - bytes are written at a reserved offset *before* their location is known to anyone; a
//!   crash mid-write leaves dead bytes in the pack, never a row pointing at them;
//! - locations are kept in memory ([`Packs::pending`], visible to readers at once) and written
//!   into the index inside the next write transaction, so they reach the index together with
//!   (or before) any record that could name the blob; [`crate::Store::put_action`]'s sync
//!   before that commit covers the pack bytes as well;
//! - each process appends to its own new pack and never writes into an older one, so a torn
//!   tail from a killed process is only dead space.
//!
//! Garbage collection removes rows; a pack with no rows left is deleted, and a pack whose live
//! bytes fall under half its size is compacted (its live blobs appended to a new pack, then the
//! old file deleted).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::BlobDigest;

/// Blobs of at most this many bytes stored with [`crate::Store::put_bytes`] go into packs.
pub const PACK_MAX_BLOB: u64 = 64 * 1024;
/// A pack is closed (and a new one started) once it would grow past this size.
const PACK_MAX_SIZE: u64 = 1 << 30;

/// Where a packed blob's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) pack: u64,
    pub(crate) offset: u64,
    pub(crate) len: u64,
}

impl Location {
    /// The index row's value: pack id, offset and length, little-endian.
    pub(crate) fn encode(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[..8].copy_from_slice(&self.pack.to_le_bytes());
        out[8..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..].copy_from_slice(&self.len.to_le_bytes());
        out
    }

    /// Parses an index row's value; `None` if it is not 24 bytes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Location> {
        let field = |range: std::ops::Range<usize>| {
            bytes
                .get(range)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_le_bytes)
        };
        (bytes.len() == 24).then_some(())?;
        Some(Location {
            pack: field(0..8)?,
            offset: field(8..16)?,
            len: field(16..24)?,
        })
    }
}

/// The file name of pack `id`.
pub(crate) fn pack_file_name(id: u64) -> String {
    format!("{id:016x}.pack")
}

/// The pack id of a file name made by [`pack_file_name`].
pub(crate) fn pack_id_of(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".pack")?;
    (hex.len() == 16)
        .then(|| u64::from_str_radix(hex, 16).ok())
        .flatten()
}

/// The pack being appended to by this process.
struct Active {
    id: u64,
    file: Arc<File>,
    len: u64,
}

/// A store's packs: the one this process appends to, read handles, and locations not yet in
/// the index.
pub(crate) struct Packs {
    dir: PathBuf,
    active: Mutex<Option<Active>>,
    readers: Mutex<HashMap<u64, Arc<File>>>,
    /// Blobs written to a pack whose rows are not yet committed to the index.
    pending: Mutex<HashMap<BlobDigest, Location>>,
    /// Packs written to since the last sync.
    dirty: Mutex<HashMap<u64, Arc<File>>>,
}

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Packs {
    pub(crate) fn new(dir: PathBuf) -> Packs {
        Packs {
            dir,
            active: Mutex::new(None),
            readers: Mutex::new(HashMap::new()),
            pending: Mutex::new(HashMap::new()),
            dirty: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn path_of(&self, id: u64) -> PathBuf {
        self.dir.join(pack_file_name(id))
    }

    /// The id of the pack this process appends to, if it has started one.
    pub(crate) fn active_id(&self) -> Option<u64> {
        locked(&self.active).as_ref().map(|active| active.id)
    }

    /// Appends `bytes` to the active pack (starting one if needed) and returns where they
    /// are, and whether a new pack file was made. The location is not published; see
    /// [`Packs::add_pending`].
    pub(crate) fn append(&self, bytes: &[u8]) -> io::Result<(Location, bool)> {
        let len = bytes.len() as u64;
        let mut new_pack = false;
        let (file, pack, offset) = {
            let mut active = locked(&self.active);
            if active
                .as_ref()
                .is_none_or(|a| a.len > 0 && a.len + len > PACK_MAX_SIZE)
            {
                *active = Some(self.create()?);
                new_pack = true;
            }
            let Some(active) = active.as_mut() else {
                unreachable!("an active pack was just made");
            };
            let offset = active.len;
            active.len += len;
            (active.file.clone(), active.id, offset)
        };
        file.write_all_at(bytes, offset)?;
        locked(&self.dirty).insert(pack, file);
        Ok((Location { pack, offset, len }, new_pack))
    }

    /// The packs appended to since the last call, to be synced.
    pub(crate) fn take_dirty(&self) -> Vec<Arc<File>> {
        std::mem::take(&mut *locked(&self.dirty))
            .into_values()
            .collect()
    }

    /// Creates a new, empty pack file with a fresh id.
    fn create(&self) -> io::Result<Active> {
        loop {
            let id = fresh_id();
            let path = self.path_of(id);
            match File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => {
                    let file = Arc::new(file);
                    locked(&self.readers).insert(id, file.clone());
                    return Ok(Active { id, file, len: 0 });
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn add_pending(&self, digest: BlobDigest, location: Location) {
        locked(&self.pending).insert(digest, location);
    }

    pub(crate) fn pending(&self, digest: &BlobDigest) -> Option<Location> {
        locked(&self.pending).get(digest).copied()
    }

    /// Drops pending locations (blobs removed before their rows were committed); returns which
    /// of `digests` had one.
    pub(crate) fn discard_pending(&self, digests: &[BlobDigest]) -> Vec<bool> {
        let mut pending = locked(&self.pending);
        digests
            .iter()
            .map(|d| pending.remove(d).is_some())
            .collect()
    }

    /// The pending locations, for a write transaction to insert.
    pub(crate) fn pending_rows(&self) -> Vec<(BlobDigest, Location)> {
        locked(&self.pending)
            .iter()
            .map(|(digest, location)| (*digest, *location))
            .collect()
    }

    /// Forgets pending locations once their rows are committed (unless rewritten meanwhile).
    pub(crate) fn committed(&self, rows: &[(BlobDigest, Location)]) {
        let mut pending = locked(&self.pending);
        for (digest, location) in rows {
            if pending.get(digest) == Some(location) {
                pending.remove(digest);
            }
        }
    }

    /// A read handle on pack `id`, opened once per process.
    pub(crate) fn reader(&self, id: u64) -> io::Result<Arc<File>> {
        let mut readers = locked(&self.readers);
        if let Some(file) = readers.get(&id) {
            return Ok(file.clone());
        }
        let file = Arc::new(File::open(self.path_of(id))?);
        readers.insert(id, file.clone());
        Ok(file)
    }

    /// Closes the read handle of a pack about to be deleted.
    pub(crate) fn forget(&self, id: u64) {
        locked(&self.readers).remove(&id);
    }
}

/// A pack id no other pack of this store is likely to have: hashed from the process, the
/// clock and a counter (a collision only means another try).
fn fresh_id() -> u64 {
    use sha2::Digest as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = sha2::Sha256::new();
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(nanos.to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let digest = hasher.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(id)
}

/// A blob opened for reading: its own file in `cas/`, or a range of a pack.
#[derive(Debug)]
pub struct BlobReader {
    source: Source,
    /// Where the blob's bytes start in the file.
    start: u64,
    len: u64,
    /// Read position within the blob.
    pos: u64,
}

#[derive(Debug)]
enum Source {
    File(fs_err::File),
    Pack(Arc<File>),
}

impl BlobReader {
    pub(crate) fn file(file: fs_err::File, len: u64) -> BlobReader {
        BlobReader {
            source: Source::File(file),
            start: 0,
            len,
            pos: 0,
        }
    }

    pub(crate) fn packed(file: Arc<File>, location: Location) -> BlobReader {
        BlobReader {
            source: Source::Pack(file),
            start: location.offset,
            len: location.len,
            pos: 0,
        }
    }

    /// The blob's length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The underlying file and the blob's range in it, for `copy_file_range`.
    pub(crate) fn raw(&self) -> (&File, u64, u64) {
        let file = match &self.source {
            Source::File(file) => file.file(),
            Source::Pack(file) => file,
        };
        (file, self.start, self.len)
    }

    /// Whether the blob is its own file (whose holes are worth keeping when copied).
    pub(crate) fn is_own_file(&self) -> bool {
        matches!(self.source, Source::File(_))
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(self.pos);
        let want = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let n = match &mut self.source {
            // A blob file is read sequentially: its own offset is the blob's.
            Source::File(file) => file.read(&mut buf[..want])?,
            Source::Pack(file) => file.read_at(&mut buf[..want], self.start + self.pos)?,
        };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for BlobReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(n) => self.len.checked_add_signed(n),
            SeekFrom::Current(n) => self.pos.checked_add_signed(n),
        }
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "seek before the blob"))?;
        if let Source::File(file) = &mut self.source {
            file.seek(SeekFrom::Start(target))?;
        }
        self.pos = target;
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_and_pack_names_round_trip() {
        let location = Location {
            pack: 0xdead_beef_0123_4567,
            offset: 1 << 33,
            len: 4097,
        };
        assert_eq!(Location::decode(&location.encode()), Some(location));
        assert_eq!(Location::decode(&[0; 23]), None);
        let name = pack_file_name(location.pack);
        assert_eq!(name, "deadbeef01234567.pack");
        assert_eq!(pack_id_of(&name), Some(location.pack));
        assert_eq!(pack_id_of("deadbeef.pack"), None);
        assert_eq!(pack_id_of("deadbeef01234567.tmp"), None);
    }
}
