//! Compression and metadata streams: what the data blocks, the inode and directory tables and
//! the lookup tables have in common.

use flate2::{Compress, Compression, FlushCompress, Status};

/// Uncompressed bytes of one metadata block.
pub(super) const METADATA_BLOCK: usize = 8192;
/// Set in a metadata block's 16-bit header when the block is stored as it is.
const METADATA_UNCOMPRESSED: u16 = 0x8000;

/// A zlib stream compressor ("gzip" in squashfs terms: zlib header, no gzip header), reused
/// block after block.
pub(super) struct Compressor {
    zlib: Compress,
}

impl Compressor {
    pub(super) fn new(level: u32) -> Self {
        Compressor {
            zlib: Compress::new(Compression::new(level), true),
        }
    }

    /// `data` as one zlib stream, or `None` when that is not smaller than `data` (the block is
    /// then stored uncompressed, as mksquashfs does). The result depends only on `data` and
    /// the level.
    pub(super) fn compress(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        self.zlib.reset();
        let mut packed = Vec::with_capacity(data.len());
        match self
            .zlib
            .compress_vec(data, &mut packed, FlushCompress::Finish)
        {
            Ok(Status::StreamEnd) if packed.len() < data.len() => Some(packed),
            // The output did not fit in `data.len()` bytes: not worth compressing.
            _ => None,
        }
    }
}

/// A metadata stream (inode table, directory table, xattr key/value pairs, a lookup table):
/// records are appended as one byte stream, cut into 8 KiB blocks, each compressed (or stored
/// when that does not shrink it) behind a 16-bit size header. A record may straddle blocks.
///
/// A position in the stream is a *reference*: the byte offset of its block's header in the
/// packed output, shifted left 16, ORed with the offset inside the uncompressed block. Blocks
/// are packed as soon as they are full, so the reference of the next byte is always known.
pub(super) struct MetadataWriter {
    compressor: Compressor,
    /// The block being filled, under 8 KiB.
    block: Vec<u8>,
    /// Packed blocks, headers included.
    packed: Vec<u8>,
    /// Where each packed block starts in `packed`.
    block_starts: Vec<u64>,
}

impl MetadataWriter {
    pub(super) fn new(level: u32) -> Self {
        MetadataWriter {
            compressor: Compressor::new(level),
            block: Vec::with_capacity(METADATA_BLOCK),
            packed: Vec::new(),
            block_starts: Vec::new(),
        }
    }

    /// The reference of the next byte written.
    pub(super) fn reference(&self) -> u64 {
        (self.packed.len() as u64) << 16 | self.block.len() as u64
    }

    pub(super) fn write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let take = (METADATA_BLOCK - self.block.len()).min(bytes.len());
            self.block.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.block.len() == METADATA_BLOCK {
                self.seal();
            }
        }
    }

    fn seal(&mut self) {
        self.block_starts.push(self.packed.len() as u64);
        match self.compressor.compress(&self.block) {
            Some(packed) => {
                let header = u16::try_from(packed.len()).expect("under 8 KiB");
                self.packed.extend_from_slice(&header.to_le_bytes());
                self.packed.extend_from_slice(&packed);
            }
            None => {
                let header = u16::try_from(self.block.len()).expect("at most 8 KiB");
                self.packed
                    .extend_from_slice(&(header | METADATA_UNCOMPRESSED).to_le_bytes());
                self.packed.extend_from_slice(&self.block);
            }
        }
        self.block.clear();
    }

    /// The packed stream, and where each block starts in it.
    pub(super) fn finish(mut self) -> (Vec<u8>, Vec<u64>) {
        if !self.block.is_empty() {
            self.seal();
        }
        (self.packed, self.block_starts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpack(packed: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < packed.len() {
            let header = u16::from_le_bytes([packed[at], packed[at + 1]]);
            let len = usize::from(header & !METADATA_UNCOMPRESSED);
            let body = &packed[at + 2..at + 2 + len];
            if header & METADATA_UNCOMPRESSED != 0 {
                out.extend_from_slice(body);
            } else {
                let mut z = flate2::Decompress::new(true);
                let mut block = Vec::with_capacity(METADATA_BLOCK);
                z.decompress_vec(body, &mut block, flate2::FlushDecompress::Finish)
                    .unwrap();
                out.extend_from_slice(&block);
            }
            at += 2 + len;
        }
        out
    }

    #[test]
    fn records_straddle_blocks_and_references_name_the_block() {
        let mut m = MetadataWriter::new(9);
        let mut expected = Vec::new();
        let mut refs = Vec::new();
        for i in 0..3000u32 {
            refs.push((m.reference(), expected.len()));
            // Incompressible-ish records of varying length.
            let record: Vec<u8> = (0..(i % 13) + 1)
                .map(|j| (i.wrapping_mul(2_654_435_761).rotate_left(j) >> 7) as u8)
                .collect();
            m.write(&record);
            expected.extend_from_slice(&record);
        }
        let (packed, starts) = m.finish();
        assert_eq!(unpack(&packed), expected);
        assert_eq!(starts.len(), expected.len().div_ceil(METADATA_BLOCK));
        for (reference, at) in refs {
            let block = starts.iter().position(|&s| s == reference >> 16).unwrap();
            assert_eq!(block * METADATA_BLOCK + (reference & 0xffff) as usize, at);
        }
    }

    #[test]
    fn incompressible_blocks_are_stored() {
        let mut c = Compressor::new(9);
        assert!(c.compress(&[0; 4096]).is_some_and(|p| p.len() < 100));
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        assert!(c.compress(&noise).is_none());
    }
}
