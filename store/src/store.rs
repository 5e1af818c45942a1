//! [`Store`]: opening a store directory and reading/writing its blobs.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};

use crate::blob::BlobWriter;
use crate::index;
use crate::lock::StoreLock;
use crate::pack::{BlobReader, Location, PACK_MAX_BLOB, Packs};
use crate::{BlobDigest, BlobRef, StoreError};

/// The versioned directory under the store root.
pub(crate) const STORE_DIR: &str = "store-v1";
/// Index cache size: the index is small, and several stores may be open in one test process.
const INDEX_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// The local content-addressed store. Cheap to clone; `Send + Sync`.
///
/// Opening takes an exclusive lock for the store's lifetime, so a second lkb process waits
/// until the first is done. Within one process, opening the same root again returns a handle
/// to the already-open store.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    root: PathBuf,
    dir: PathBuf,
    pub(crate) index_path: PathBuf,
    /// Declared before the lock so the database is closed before the lock is released.
    pub(crate) db: redb::Database,
    /// Small blobs, appended to shared pack files ([`crate::pack`]).
    pub(crate) packs: Packs,
    /// What [`Store::sync_blobs`] must flush, and the lock that makes its callers take turns.
    unsynced: Mutex<Unsynced>,
    sync_lock: Mutex<()>,
    _lock: StoreLock,
}

/// Stores open in this process, by canonical `store-v1` path.
static OPEN_STORES: Mutex<Vec<(PathBuf, Weak<Inner>)>> = Mutex::new(Vec::new());

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.inner.root)
            .finish()
    }
}

fn create_dir(path: &Path) -> Result<(), StoreError> {
    fs_err::create_dir_all(path).map_err(|source| StoreError::CreateDir {
        path: path.to_owned(),
        source,
    })
}

impl Store {
    /// Opens (creating if needed) the store under `root`. If another process holds the store,
    /// logs a warning and waits; use [`Store::open_with`] to show the wait to the user.
    pub fn open(root: &Path) -> Result<Store, StoreError> {
        Self::open_with(root, &|message| tracing::warn!("{message}"))
    }

    /// Opens the store under `root`, calling `notify` once with a human message if another
    /// process holds the store lock, and then blocking until it is released.
    pub fn open_with(root: &Path, notify: &dyn Fn(&str)) -> Result<Store, StoreError> {
        let dir = root.join(STORE_DIR);
        create_dir(&dir)?;
        let canonical = canonical_dir(&dir)?;

        // Held while opening, so two threads of this process cannot both lock the store.
        let mut open = OPEN_STORES
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        open.retain(|(_, weak)| weak.strong_count() > 0);
        if let Some(inner) = open
            .iter()
            .find(|(path, _)| *path == canonical)
            .and_then(|(_, weak)| weak.upgrade())
        {
            return Ok(Store { inner });
        }

        let lock = StoreLock::acquire(&dir.join("lock"), notify)?;
        // Created under the lock: `lkb cache clean` may have removed them while this process
        // waited.
        for sub in ["cas/sha256", "tmp", "packs"] {
            create_dir(&dir.join(sub))?;
        }
        clean_tmp(&dir.join("tmp"))?;
        let index_path = dir.join("index.redb");
        let db = index::guarded(&index_path, || open_index(&dir, &index_path))?;

        let packs = Packs::new(dir.join("packs"));
        let inner = Arc::new(Inner {
            root: root.to_owned(),
            dir,
            index_path,
            packs,
            unsynced: Mutex::new(Unsynced::default()),
            sync_lock: Mutex::new(()),
            db,
            _lock: lock,
        });
        open.push((canonical, Arc::downgrade(&inner)));
        Ok(Store { inner })
    }

    /// The root this store was opened with (the parent of `store-v1/`).
    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    /// The versioned store directory, `<root>/store-v1`.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The versioned store directory of the store under `root`, whether or not it exists.
    pub fn dir_under(root: &Path) -> PathBuf {
        root.join(STORE_DIR)
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.inner.dir.join("tmp")
    }

    pub(crate) fn cas_dir(&self) -> PathBuf {
        self.inner.dir.join("cas").join("sha256")
    }

    /// Where the blob with digest `d` lives (whether or not it is present).
    pub fn blob_path(&self, d: &BlobDigest) -> PathBuf {
        let hex = d.hex();
        self.cas_dir().join(&hex[..2]).join(hex)
    }

    /// Whether the blob is present with the right size.
    pub fn has_blob(&self, b: &BlobRef) -> bool {
        match self.locate(&b.digest) {
            Ok(Some(location)) => {
                location.len == b.size && self.inner.packs.reader(location.pack).is_ok()
            }
            Ok(None) => fs_err::metadata(self.blob_path(&b.digest))
                .map(|meta| meta.is_file() && meta.len() == b.size)
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    /// Where a packed blob is: written by this process and not yet in the index, or in the
    /// index's `packed` table. `None` for a blob that is not packed (it may be a file).
    pub(crate) fn locate(&self, d: &BlobDigest) -> Result<Option<Location>, StoreError> {
        if let Some(location) = self.inner.packs.pending(d) {
            return Ok(Some(location));
        }
        self.packed_location(d)
    }

    /// The file holding a blob's bytes, and the blob's offset and length in it: the blob's
    /// own file in `cas/`, or its pack. For writers that read their inputs by path.
    pub fn blob_file(&self, d: &BlobDigest) -> Result<(PathBuf, u64, u64), StoreError> {
        // One index lookup: the location says both where the bytes are and which file.
        if let Some(location) = self.locate(d)? {
            let path = self.inner.packs.path_of(location.pack);
            if !path.is_file() {
                return Err(StoreError::BlobMissing { digest: *d, path });
            }
            return Ok((path, location.offset, location.len));
        }
        let reader = self.open_blob(d)?;
        Ok((self.blob_path(d), 0, reader.len()))
    }

    /// The file a blob's bytes are in (its pack, or its own file), for messages.
    pub fn blob_file_path(&self, d: &BlobDigest) -> PathBuf {
        match self.locate(d) {
            Ok(Some(location)) => self.inner.packs.path_of(location.pack),
            _ => self.blob_path(d),
        }
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, d: &BlobDigest) -> Result<BlobReader, StoreError> {
        let read_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                StoreError::BlobMissing {
                    digest: *d,
                    path: self.blob_path(d),
                }
            } else {
                StoreError::ReadBlob { digest: *d, source }
            }
        };
        if let Some(location) = self.locate(d)? {
            let file = self.inner.packs.reader(location.pack).map_err(read_error)?;
            return Ok(BlobReader::packed(file, location));
        }
        let file = fs_err::File::open(self.blob_path(d)).map_err(read_error)?;
        let len = file.metadata().map_err(read_error)?.len();
        Ok(BlobReader::file(file, len))
    }

    /// Copies a blob into `dest` (empty, at offset 0), keeping its holes: data ranges go by
    /// `copy_file_range` (a reflink where the file system has them), holes stay holes, and the
    /// length is set at the end. A 1 GiB disk image with 100 MB of content costs 100 MB.
    pub fn copy_blob_to(&self, d: &BlobDigest, dest: &std::fs::File) -> Result<u64, StoreError> {
        self.copy_blob_to_at(d, dest, 0)
    }

    /// [`Store::copy_blob_to`] at offset `at` of `dest` (which is then at least `at` + the
    /// blob's length long): an output made of several blobs one after the other (an initrd
    /// from its segments) is written without joining them in the store first.
    pub fn copy_blob_to_at(
        &self,
        d: &BlobDigest,
        dest: &std::fs::File,
        at: u64,
    ) -> Result<u64, StoreError> {
        let reader = self.open_blob(d)?;
        let (source, start, len) = reader.raw();
        let read_error = |source: io::Error| StoreError::ReadBlob { digest: *d, source };
        let mut pos = 0u64;
        while pos < len {
            // A blob file's holes are skipped; a packed blob (small, never sparse) is one range.
            let (data, end) = if reader.is_own_file() {
                let data = match rustix::fs::seek(source, rustix::fs::SeekFrom::Data(pos)) {
                    Ok(data) => data,
                    // ENXIO: no data after `pos`, the rest is a hole.
                    Err(rustix::io::Errno::NXIO) => break,
                    Err(errno) => return Err(read_error(errno.into())),
                };
                let end = rustix::fs::seek(source, rustix::fs::SeekFrom::Hole(data))
                    .map_err(|errno| read_error(errno.into()))?
                    .min(len);
                (data, end)
            } else {
                (pos, len)
            };
            let (mut from, mut to) = (start + data, at + data);
            while from < start + end {
                let want = usize::try_from(start + end - from)
                    .unwrap_or(usize::MAX)
                    .min(1 << 30);
                let copied =
                    rustix::fs::copy_file_range(source, Some(&mut from), dest, Some(&mut to), want)
                        .map_err(|errno| read_error(errno.into()))?;
                if copied == 0 {
                    return Err(read_error(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "blob shorter than its size while copying",
                    )));
                }
            }
            pos = end;
        }
        let end = at + len;
        let read_error = |source: io::Error| StoreError::ReadBlob { digest: *d, source };
        if dest.metadata().map_err(read_error)?.len() < end {
            dest.set_len(end).map_err(read_error)?;
        }
        Ok(len)
    }

    /// Reads a whole blob into memory. Debug builds re-hash it and report corruption.
    pub fn read_blob(&self, d: &BlobDigest) -> Result<Vec<u8>, StoreError> {
        let mut bytes = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::ReadBlob { digest: *d, source })?;
        if cfg!(debug_assertions) {
            let actual = BlobDigest::of_bytes(&bytes);
            if actual != *d {
                return Err(StoreError::CorruptBlob {
                    digest: *d,
                    actual,
                    path: self.blob_file_path(d),
                });
            }
        }
        Ok(bytes)
    }

    /// Re-hashes a blob file and checks it matches its name; returns its size.
    pub fn verify_blob(&self, d: &BlobDigest) -> Result<BlobRef, StoreError> {
        let mut file = self.open_blob(d)?;
        let mut hashing = HashingSink::default();
        // `io::copy` reads through a small stack buffer: cheap for the many small blobs too.
        io::copy(&mut file, &mut hashing)
            .map_err(|source| StoreError::ReadBlob { digest: *d, source })?;
        let actual = hashing.finish();
        if actual.digest != *d {
            return Err(StoreError::CorruptBlob {
                digest: *d,
                actual: actual.digest,
                path: self.blob_file_path(d),
            });
        }
        Ok(actual)
    }

    /// Starts writing a new blob; see [`BlobWriter`].
    pub fn writer(&self) -> Result<BlobWriter, StoreError> {
        BlobWriter::new(self.clone())
    }

    /// An unnamed scratch file in the store's directory (so on its file system, not a small
    /// `/tmp`), removed when closed: for writers that must seek back before their bytes are
    /// final (a squashfs superblock), whose result [`Store::put_reader`] then stores.
    pub fn scratch_file(&self) -> Result<std::fs::File, StoreError> {
        let tmp = self.tmp_dir();
        tempfile::tempfile_in(&tmp).map_err(|source| StoreError::WriteBlob { path: tmp, source })
    }

    /// Stores `bytes` as a blob. Up to [`PACK_MAX_BLOB`] bytes it is appended to a pack
    /// rather than made a file of its own ([`crate::pack`]).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<BlobRef, StoreError> {
        if bytes.len() as u64 <= PACK_MAX_BLOB {
            let blob = BlobRef {
                digest: BlobDigest::of_bytes(bytes),
                size: bytes.len() as u64,
            };
            if self.has_blob(&blob) {
                return Ok(blob);
            }
            let packs = &self.inner.packs;
            let (location, new_pack) =
                packs
                    .append(bytes)
                    .map_err(|source| StoreError::WriteBlob {
                        path: packs.dir().to_owned(),
                        source,
                    })?;
            if new_pack {
                self.dir_changed(packs.dir().to_owned());
            }
            packs.add_pending(blob.digest, location);
            return Ok(blob);
        }
        let mut writer = self.writer()?;
        writer
            .write_all(bytes)
            .map_err(|source| writer.write_error(source))?;
        writer.finish()
    }

    /// Streams `r` into a blob. With `expected`, the content must hash to it or nothing is
    /// published ([`StoreError::DigestMismatch`]).
    pub fn put_reader(
        &self,
        r: &mut dyn Read,
        expected: Option<&BlobDigest>,
    ) -> Result<BlobRef, StoreError> {
        let mut writer = self.writer()?;
        let mut buffer = vec![0u8; 128 * 1024];
        loop {
            let n = match r.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(StoreError::ReadInput { source }),
            };
            writer
                .write_all(&buffer[..n])
                .map_err(|source| writer.write_error(source))?;
        }
        match expected {
            Some(expected) => writer.finish_expect(expected),
            None => writer.finish(),
        }
    }

    /// Flushes every blob written since the last call to disk: `fdatasync` of each new blob
    /// file and of the packs appended to, then `fsync` of the directories they were added to.
    /// Only this store's writes are waited for (a `syncfs` would also wait for every other
    /// process writing to the same file system). A call that finds another in progress waits
    /// for it, so when it returns, everything written before it is on disk.
    pub fn sync_blobs(&self) -> Result<(), StoreError> {
        let _one_at_a_time = self
            .inner
            .sync_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let batch = std::mem::take(
            &mut *self
                .inner
                .unsynced
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()),
        );
        let sync_error = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Sync { path, source }
        };
        for path in &batch.files {
            match std::fs::File::open(path) {
                Ok(file) => file.sync_data().map_err(sync_error(path))?,
                // Removed since (garbage collection): nothing to sync.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(StoreError::Sync {
                        path: path.clone(),
                        source,
                    });
                }
            }
        }
        for pack in self.inner.packs.take_dirty() {
            pack.sync_data()
                .map_err(sync_error(self.inner.packs.dir()))?;
        }
        for dir in &batch.dirs {
            fs_err::File::open(dir)
                .and_then(|dir| dir.sync_all())
                .map_err(sync_error(dir))?;
        }
        Ok(())
    }

    /// Notes a blob file (and the directory it was added to) for the next
    /// [`Store::sync_blobs`].
    pub(crate) fn written(&self, path: PathBuf) {
        let mut unsynced = self
            .inner
            .unsynced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(dir) = path.parent() {
            unsynced.dirs.insert(dir.to_owned());
        }
        unsynced.files.push(path);
    }

    /// Notes a directory whose entries changed (a new pack) for the next sync.
    pub(crate) fn dir_changed(&self, dir: PathBuf) {
        self.inner
            .unsynced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .dirs
            .insert(dir);
    }
}

/// Blob files and directories written since the last [`Store::sync_blobs`].
#[derive(Default)]
pub(crate) struct Unsynced {
    files: Vec<PathBuf>,
    dirs: std::collections::BTreeSet<PathBuf>,
}

/// Opens the index, creating it first if it does not exist. A new index is created under a
/// temporary name, given its tables, and renamed into place, so a process killed while
/// creating it never leaves a half-written `index.redb` behind (redb would refuse it: "not a
/// redb database").
fn open_index(dir: &Path, index_path: &Path) -> Result<redb::Database, StoreError> {
    let index_error = |source: redb::Error| index::index_error(index_path, source);
    if !index_path.exists() {
        let fresh = dir.join("tmp").join("index.redb.new");
        let db = redb::Builder::new()
            .set_cache_size(INDEX_CACHE_BYTES)
            .create(&fresh)
            .map_err(|e| index_error(e.into()))?;
        index::create_tables(&db).map_err(index_error)?;
        drop(db);
        fs_err::rename(&fresh, index_path).map_err(|source| StoreError::CreateIndex {
            path: index_path.to_owned(),
            source,
        })?;
    }
    let db = redb::Builder::new()
        .set_cache_size(INDEX_CACHE_BYTES)
        .create(index_path)
        .map_err(|e| index_error(e.into()))?;
    index::create_tables(&db).map_err(index_error)?;
    Ok(db)
}

fn canonical_dir(dir: &Path) -> Result<PathBuf, StoreError> {
    fs_err::canonicalize(dir).map_err(|source| StoreError::CreateDir {
        path: dir.to_owned(),
        source,
    })
}

/// Whether this process has the store directory `dir` (canonical) open.
pub(crate) fn is_open_in_process(canonical: &Path) -> bool {
    OPEN_STORES
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .iter()
        .any(|(path, weak)| path == canonical && weak.strong_count() > 0)
}

/// Removes temporary files left by a process that died while writing. Only called while
/// holding the store lock, so no live writer owns them.
fn clean_tmp(tmp: &Path) -> Result<(), StoreError> {
    let scan_error = |source| StoreError::Scan {
        path: tmp.to_owned(),
        source,
    };
    for entry in fs_err::read_dir(tmp).map_err(scan_error)? {
        let path = entry.map_err(scan_error)?.path();
        match fs_err::remove_file(&path) {
            Ok(()) => tracing::debug!(path = %path.display(), "removed stale temporary file"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(scan_error(source)),
        }
    }
    Ok(())
}

/// A `Write` sink that only hashes and counts.
#[derive(Default)]
pub(crate) struct HashingSink {
    hasher: sha2::Sha256,
    size: u64,
}

impl HashingSink {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.hasher, bytes);
        self.size += bytes.len() as u64;
    }

    pub(crate) fn size_so_far(&self) -> u64 {
        self.size
    }

    pub(crate) fn finish(self) -> BlobRef {
        let digest = BlobDigest::from_bytes(sha2::Digest::finalize(self.hasher).into());
        BlobRef {
            digest,
            size: self.size,
        }
    }
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
