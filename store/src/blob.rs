//! Writing blobs (temp file, hash while writing, rename into `cas/`) and listing/removing them.

use std::fs::Permissions; // a plain type: fs_err has no Permissions of its own
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use crate::store::HashingSink;
use crate::{BlobDigest, BlobRef, Store, StoreError};

const WRITE_BUFFER_BYTES: usize = 256 * 1024;

/// A blob being written. Bytes go to a temporary file under `store-v1/tmp/` and are hashed as
/// they pass; [`BlobWriter::finish`] renames the file into `cas/`. Dropping the writer without
/// finishing deletes the temporary file.
pub struct BlobWriter {
    store: Store,
    file: BufWriter<tempfile::NamedTempFile>,
    hashing: HashingSink,
}

impl std::fmt::Debug for BlobWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobWriter")
            .field("temp", &self.file.get_ref().path())
            .finish_non_exhaustive()
    }
}

impl BlobWriter {
    pub(crate) fn new(store: Store) -> Result<Self, StoreError> {
        let tmp = store.tmp_dir();
        let temp = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&tmp)
            .map_err(|source| StoreError::WriteBlob { path: tmp, source })?;
        Ok(BlobWriter {
            store,
            file: BufWriter::with_capacity(WRITE_BUFFER_BYTES, temp),
            hashing: HashingSink::default(),
        })
    }

    /// The number of bytes written so far.
    pub fn size(&self) -> u64 {
        self.hashing.size_so_far()
    }

    /// Appends `n` zero bytes as a hole: they are hashed, but the temporary file is only
    /// seeked past, so a mostly-empty disk image costs no disk space or writes. The blob file
    /// keeps the holes when it is published.
    pub fn zeros(&mut self, n: u64) -> io::Result<()> {
        use std::io::{Seek, SeekFrom};
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        self.file.flush()?;
        let mut left = n;
        while left > 0 {
            let chunk = left.min(ZEROS.len() as u64) as usize;
            self.hashing.update(&ZEROS[..chunk]);
            left -= chunk as u64;
        }
        let n = i64::try_from(n).map_err(|_| io::Error::other("hole too large"))?;
        self.file
            .get_mut()
            .as_file_mut()
            .seek(SeekFrom::Current(n))?;
        Ok(())
    }

    /// Wraps an error from writing into this blob with the temporary file's path.
    pub fn write_error(&self, source: io::Error) -> StoreError {
        StoreError::WriteBlob {
            path: self.file.get_ref().path().to_owned(),
            source,
        }
    }

    /// Publishes the blob under its digest. If the store already has it intact, the new copy is
    /// dropped; a damaged file of that name (other content, even of the same size) is replaced.
    pub fn finish(self) -> Result<BlobRef, StoreError> {
        let (store, temp, blob) = self.complete()?;
        publish(&store, temp, blob)
    }

    /// Like [`BlobWriter::finish`], but the content must hash to `expected`; otherwise the
    /// temporary file is deleted, nothing is published, and the result is
    /// [`StoreError::DigestMismatch`].
    pub fn finish_expect(self, expected: &BlobDigest) -> Result<BlobRef, StoreError> {
        let (store, temp, blob) = self.complete()?;
        if blob.digest != *expected {
            drop(temp);
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual: blob.digest,
            });
        }
        publish(&store, temp, blob)
    }

    fn complete(self) -> Result<(Store, tempfile::NamedTempFile, BlobRef), StoreError> {
        let path = self.file.get_ref().path().to_owned();
        let temp = self.file.into_inner().map_err(|e| StoreError::WriteBlob {
            path: path.clone(),
            source: e.into_error(),
        })?;
        let blob = self.hashing.finish();
        // A trailing hole is only a seek: the length makes it part of the file.
        temp.as_file()
            .set_len(blob.size)
            .map_err(|source| StoreError::WriteBlob { path, source })?;
        Ok((self.store, temp, blob))
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hashing.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn publish(
    store: &Store,
    temp: tempfile::NamedTempFile,
    blob: BlobRef,
) -> Result<BlobRef, StoreError> {
    let path = store.blob_path(&blob.digest);
    if existing_is_intact(store, &blob) {
        return Ok(blob);
    }
    let publish_error = |source| StoreError::Publish {
        digest: blob.digest,
        path: path.clone(),
        source,
    };
    if let Some(parent) = path.parent() {
        fs_err::create_dir_all(parent).map_err(publish_error)?;
    }
    temp.as_file()
        .set_permissions(Permissions::from_mode(0o444))
        .map_err(publish_error)?;
    temp.persist(&path).map_err(|e| publish_error(e.error))?;
    store.written(path);
    Ok(blob)
}

/// Whether the store already has `blob` with the right content. A file of the right size is
/// re-hashed: the caller has just computed the content, so a damaged file (a flipped byte, a
/// swapped blob) is found and replaced now, at the cost of reading a file that is usually in
/// the page cache, rather than served to every later reader.
fn existing_is_intact(store: &Store, blob: &BlobRef) -> bool {
    if !store.has_blob(blob) {
        return false;
    }
    match store.verify_blob(&blob.digest) {
        Ok(_) => true,
        Err(error) => {
            tracing::warn!(
                digest = %blob.digest,
                error = %error,
                "replacing a damaged blob file with new content"
            );
            false
        }
    }
}

impl Store {
    /// Every blob in the store, files in `cas/` and packed blobs, in no particular order.
    /// Files whose names are not digests are skipped.
    pub fn list_blobs(&self) -> Result<BlobIter, StoreError> {
        let cas = self.cas_dir();
        let fanout = fs_err::read_dir(&cas).map_err(|source| StoreError::Scan {
            path: cas.clone(),
            source,
        })?;
        let mut packed: Vec<BlobRef> = self
            .packed_rows()?
            .into_iter()
            .chain(self.inner.packs.pending_rows())
            .map(|(digest, location)| BlobRef {
                digest,
                size: location.len,
            })
            .collect();
        packed.sort();
        packed.dedup();
        Ok(BlobIter {
            cas,
            fanout,
            current: None,
            packed: packed.into_iter(),
        })
    }

    /// Deletes a blob (its file, or its pack row); returns whether it existed. The caller
    /// (garbage collection) must make sure no action record still names it.
    /// Packs are not compacted here (see [`Store::remove_blobs`]).
    pub fn remove_blob(&self, d: &BlobDigest) -> Result<bool, StoreError> {
        Ok(self.remove_blob_list(std::slice::from_ref(d))?[0])
    }

    /// [`Store::remove_blob`] for many blobs, the pack rows in one transaction; then packs
    /// left empty are deleted and mostly-dead ones compacted.
    pub fn remove_blobs(&self, digests: &[BlobDigest]) -> Result<Vec<bool>, StoreError> {
        let removed = self.remove_blob_list(digests)?;
        if !digests.is_empty() {
            self.compact_packs()?;
        }
        Ok(removed)
    }

    fn remove_blob_list(&self, digests: &[BlobDigest]) -> Result<Vec<bool>, StoreError> {
        let mut removed = self.remove_packed(digests)?;
        let discarded = self.inner.packs.discard_pending(digests);
        for ((d, removed), discarded) in digests.iter().zip(&mut removed).zip(discarded) {
            *removed |= discarded;
            let path = self.blob_path(d);
            match fs_err::remove_file(&path) {
                Ok(()) => *removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Scan { path, source }),
            }
        }
        Ok(removed)
    }

    /// Deletes packs no row points into, and rewrites packs whose live bytes are under half
    /// of their size: their live blobs are appended to a new pack, synced, re-pointed in one
    /// transaction, and only then is the old pack deleted. The pack this process is appending
    /// to is left alone.
    pub(crate) fn compact_packs(&self) -> Result<(), StoreError> {
        let packs = &self.inner.packs;
        let scan_error = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| StoreError::Scan { path, source }
        };
        let mut live: std::collections::HashMap<u64, Vec<(BlobDigest, crate::pack::Location)>> =
            std::collections::HashMap::new();
        for (digest, location) in self.packed_rows()? {
            live.entry(location.pack)
                .or_default()
                .push((digest, location));
        }
        let active = packs.active_id();
        for entry in fs_err::read_dir(packs.dir()).map_err(scan_error(packs.dir()))? {
            let entry = entry.map_err(scan_error(packs.dir()))?;
            let Some(id) = entry.file_name().to_str().and_then(crate::pack::pack_id_of) else {
                continue;
            };
            if Some(id) == active {
                continue;
            }
            let path = entry.path();
            let size = entry.metadata().map_err(scan_error(&path))?.len();
            let rows = live.remove(&id).unwrap_or_default();
            let live_bytes: u64 = rows.iter().map(|(_, location)| location.len).sum();
            if !rows.is_empty() && live_bytes * 2 >= size {
                continue;
            }
            if !rows.is_empty() {
                let old = packs.reader(id).map_err(scan_error(&path))?;
                let mut moved = Vec::with_capacity(rows.len());
                for (digest, location) in rows {
                    let mut bytes = vec![0u8; location.len as usize];
                    std::os::unix::fs::FileExt::read_exact_at(&*old, &mut bytes, location.offset)
                        .map_err(scan_error(&path))?;
                    let (new, new_pack) = packs.append(&bytes).map_err(scan_error(packs.dir()))?;
                    if new_pack {
                        self.dir_changed(packs.dir().to_owned());
                    }
                    moved.push((digest, new));
                }
                self.sync_blobs()?;
                self.put_packed(moved)?;
            }
            packs.forget(id);
            match fs_err::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::Remove { path, source }),
            }
        }
        Ok(())
    }
}

/// Iterator over the blobs in a store, from [`Store::list_blobs`].
#[derive(Debug)]
pub struct BlobIter {
    cas: PathBuf,
    fanout: fs_err::ReadDir,
    current: Option<(PathBuf, fs_err::ReadDir)>,
    /// The packed blobs, listed after the files.
    packed: std::vec::IntoIter<BlobRef>,
}

impl Iterator for BlobIter {
    type Item = Result<BlobRef, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((dir, entries)) = &mut self.current {
                let scan_error = |source| StoreError::Scan {
                    path: dir.clone(),
                    source,
                };
                match entries.next() {
                    Some(Ok(entry)) => {
                        let Some(digest) = entry
                            .file_name()
                            .to_str()
                            .and_then(|hex| format!("sha256:{hex}").parse::<BlobDigest>().ok())
                        else {
                            continue;
                        };
                        return Some(
                            entry
                                .metadata()
                                .map(|meta| BlobRef {
                                    digest,
                                    size: meta.len(),
                                })
                                .map_err(scan_error),
                        );
                    }
                    Some(Err(source)) => return Some(Err(scan_error(source))),
                    None => self.current = None,
                }
            }
            let Some(entry) = self.fanout.next() else {
                return self.packed.next().map(Ok);
            };
            let entry = match entry {
                Ok(entry) => entry,
                Err(source) => {
                    return Some(Err(StoreError::Scan {
                        path: self.cas.clone(),
                        source,
                    }));
                }
            };
            let dir = entry.path();
            if !dir.is_dir() {
                continue;
            }
            match fs_err::read_dir(&dir) {
                Ok(entries) => self.current = Some((dir, entries)),
                Err(source) => return Some(Err(StoreError::Scan { path: dir, source })),
            }
        }
    }
}
