//! One gzip member compressed in pieces, on several threads at once.
//!
//! A file larger than a segment's member (a 36 MiB log, a big binary) has to sit in one gzip
//! member: the kernel requires every compressed member of an initramfs to end at the end of a
//! cpio archive. libdeflate compresses only whole buffers, so such a member used to take one
//! thread for the whole file. Here the member's bytes are cut into pieces of a fixed size;
//! each piece is compressed on its own as raw deflate (no dictionary carried over), and the
//! pieces are joined into one deflate stream, the way pigz joins its blocks:
//!
//! - every piece but the last has its final block's BFINAL bit cleared and is followed by an
//!   empty stored block, which brings the stream back to a byte boundary;
//! - the member's CRC-32 is the pieces' CRCs combined ([`crc32_combine`]).
//!
//! libdeflate does not say where its last block starts or at which bit the stream ends, so
//! [`last_block`] walks the piece's blocks to find out (Huffman symbols are decoded, nothing is
//! written out). The walk must end exactly where libdeflate's output ends, which checks it.
//!
//! The cut points depend only on the member's length and [`PIECE_BYTES`], so the bytes do
//! not depend on the number of threads.

use std::io;

/// Version of the joining rule (cut points, empty stored blocks), for action keys.
pub const PIECES_VERSION: u32 = 1;

/// Uncompressed bytes per piece.
pub const PIECE_BYTES: u64 = 4 << 20;

/// One compressed piece of a member.
pub struct Piece {
    /// Raw deflate; for all but the last piece, ending in an empty stored block.
    pub deflate: Vec<u8>,
    /// CRC-32 of the piece's uncompressed bytes.
    pub crc: u32,
    /// Its uncompressed length.
    pub len: u64,
}

/// Compresses `data` as one piece of a member at libdeflate `level`; `last` says whether it
/// ends the member.
pub fn compress_piece(level: u32, data: &[u8], last: bool) -> io::Result<Piece> {
    let mut compressor = super::gzip_compressor(level)?;
    let mut out = vec![0u8; compressor.deflate_compress_bound(data.len())];
    let n = compressor
        .deflate_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("deflate: {e}")))?;
    out.truncate(n);
    if !last {
        continue_after(&mut out)?;
    }
    Ok(Piece {
        deflate: out,
        crc: libdeflater::crc32(data),
        len: data.len() as u64,
    })
}

/// Turns a complete deflate stream into one that goes on: its last block is no longer final,
/// and an empty stored block after it ends the stream on a byte boundary.
fn continue_after(stream: &mut Vec<u8>) -> io::Result<()> {
    let (header, end) = last_block(stream).map_err(|e| {
        io::Error::other(format!("joining deflate pieces: libdeflate's output {e}"))
    })?;
    if end.div_ceil(8) != stream.len() as u64 {
        return Err(io::Error::other(format!(
            "joining deflate pieces: the last block ends at bit {end}, in a stream of {} bytes",
            stream.len()
        )));
    }
    stream[(header / 8) as usize] &= !(1u8 << (header % 8));
    let used = (end % 8) as u32;
    if let Some(last) = stream.last_mut().filter(|_| used != 0) {
        *last &= (1u8 << used) - 1;
    }
    // The stored block's three header bits (all zero) go right after the last block; when
    // they do not fit in its last byte, they start a new one.
    if used == 0 || used > 5 {
        stream.push(0);
    }
    stream.extend_from_slice(&[0x00, 0x00, 0xff, 0xff]);
    Ok(())
}

/// The gzip header of a member at `level`, as libdeflate writes it (see [`super::Codec::Gzip`]).
pub fn gzip_header(level: u32) -> [u8; 10] {
    let xfl = match level {
        0 | 1 => 4,
        8.. => 2,
        _ => 0,
    };
    [0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, xfl, 0xff]
}

/// The CRC-32 and length of a member's pieces so far, for its trailer.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemberSum {
    crc: u32,
    len: u64,
}

impl MemberSum {
    pub fn add(&mut self, piece: &Piece) {
        self.crc = crc32_combine(self.crc, piece.crc, piece.len);
        self.len += piece.len;
    }

    /// The gzip trailer: CRC-32 and length modulo 2^32, little-endian.
    pub fn trailer(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[..4].copy_from_slice(&self.crc.to_le_bytes());
        out[4..].copy_from_slice(&(self.len as u32).to_le_bytes());
        out
    }
}

/// The reflected CRC-32 polynomial (gzip's).
const CRC_POLY: u32 = 0xedb8_8320;

/// `a * b` modulo the CRC polynomial, both in the reflected bit order (bit 31 is x^0).
fn mul_mod_poly(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut bit = 1u32 << 31;
    while bit != 0 {
        if a & bit != 0 {
            product ^= b;
        }
        bit >>= 1;
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC_POLY
        } else {
            b >> 1
        };
    }
    product
}

/// The CRC-32 of `A ++ B` from `crc(A)`, `crc(B)` and `B`'s length.
pub fn crc32_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    // crc(A ++ B) = crc(A) * x^(8 len_b) + crc(B), modulo the polynomial.
    let mut power = 1u32 << 31; // x^0
    let mut square = 1u32 << (31 - 8); // x^8
    let mut n = len_b;
    while n != 0 {
        if n & 1 != 0 {
            power = mul_mod_poly(square, power);
        }
        square = mul_mod_poly(square, square);
        n >>= 1;
    }
    mul_mod_poly(power, crc_a) ^ crc_b
}

/// Why a deflate stream could not be walked.
#[derive(Debug, PartialEq, Eq)]
pub struct WalkError(&'static str);

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Reads a deflate stream bit by bit, least significant first.
struct Bits<'a> {
    data: &'a [u8],
    /// Position in bits.
    pos: u64,
}

impl Bits<'_> {
    /// The next `n` (≤ 32) bits, without taking them; zeros past the end.
    fn peek(&self, n: u32) -> u32 {
        let byte = (self.pos / 8) as usize;
        let word = match self.data.get(byte..byte + 8) {
            Some(eight) => u64::from_le_bytes(eight.try_into().expect("eight bytes")),
            None => {
                let mut eight = [0u8; 8];
                let tail = self.data.get(byte..).unwrap_or(&[]);
                eight[..tail.len()].copy_from_slice(tail);
                u64::from_le_bytes(eight)
            }
        };
        ((word >> (self.pos % 8)) & ((1u64 << n) - 1)) as u32
    }

    fn skip(&mut self, n: u64) -> Result<(), WalkError> {
        self.pos += n;
        if self.pos > self.data.len() as u64 * 8 {
            return Err(WalkError("ends in the middle of a block"));
        }
        Ok(())
    }

    fn take(&mut self, n: u32) -> Result<u32, WalkError> {
        let value = self.peek(n);
        self.skip(u64::from(n))?;
        Ok(value)
    }
}

/// Bits the first-level decoding table covers; longer codes are decoded bit by bit.
const FAST_BITS: u32 = 10;

/// A canonical Huffman code (RFC 1951 §3.2.2), for decoding.
struct Huffman {
    /// By the next [`FAST_BITS`] bits: `symbol << 4 | length`, or 0 for a longer code.
    fast: Vec<u16>,
    /// Codes per length, 0..=15.
    counts: [u16; 16],
    /// Symbols ordered by code.
    symbols: Vec<u16>,
}

impl Huffman {
    fn new(lengths: &[u8]) -> Result<Huffman, WalkError> {
        let mut counts = [0u16; 16];
        for &len in lengths {
            counts[usize::from(len)] += 1;
        }
        counts[0] = 0;
        let mut left: i32 = 1;
        for &count in &counts[1..] {
            left = (left << 1) - i32::from(count);
            if left < 0 {
                return Err(WalkError("has an over-subscribed Huffman code"));
            }
        }
        let mut offsets = [0u16; 16];
        for len in 1..15 {
            offsets[len + 1] = offsets[len] + counts[len];
        }
        let mut symbols = vec![0u16; lengths.len()];
        for (symbol, &len) in lengths.iter().enumerate() {
            if len != 0 {
                symbols[usize::from(offsets[usize::from(len)])] = symbol as u16;
                offsets[usize::from(len)] += 1;
            }
        }
        let mut fast = vec![0u16; 1 << FAST_BITS];
        let mut code = 0u32;
        let mut index = 0usize;
        for len in 1..=15u32 {
            for _ in 0..counts[len as usize] {
                if len <= FAST_BITS {
                    let reversed = code.reverse_bits() >> (32 - len);
                    let entry = symbols[index] << 4 | len as u16;
                    for slot in (reversed as usize..fast.len()).step_by(1 << len) {
                        fast[slot] = entry;
                    }
                }
                code += 1;
                index += 1;
            }
            code <<= 1;
        }
        Ok(Huffman {
            fast,
            counts,
            symbols,
        })
    }

    fn decode(&self, bits: &mut Bits<'_>) -> Result<u16, WalkError> {
        let entry = self.fast[bits.peek(FAST_BITS) as usize];
        if entry != 0 {
            bits.skip(u64::from(entry & 15))?;
            return Ok(entry >> 4);
        }
        // A code longer than the table: one bit at a time, codes of each length in turn.
        let (mut code, mut first, mut index) = (0i32, 0i32, 0i32);
        for len in 1..16 {
            code |= bits.take(1)? as i32;
            let count = i32::from(self.counts[len]);
            if code - first < count {
                return Ok(self.symbols[(index + code - first) as usize]);
            }
            index += count;
            first = (first + count) << 1;
            code <<= 1;
        }
        Err(WalkError("has a code that is not in its Huffman table"))
    }
}

/// Extra bits of length symbols 257..=285.
const LENGTH_EXTRA: [u8; 29] = [
    0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
];
/// Extra bits of distance symbols 0..=29.
const DISTANCE_EXTRA: [u8; 30] = [
    0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13,
    13,
];
/// The order in which a dynamic block lists its code-length code's lengths.
const CODE_LENGTH_ORDER: [usize; 19] = [
    16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
];

/// Where the final block of the deflate stream `data` starts and where it ends, in bits from
/// the start.
pub fn last_block(data: &[u8]) -> Result<(u64, u64), WalkError> {
    let mut bits = Bits { data, pos: 0 };
    loop {
        let header = bits.pos;
        let last = bits.take(1)? == 1;
        match bits.take(2)? {
            0 => {
                bits.pos = bits.pos.div_ceil(8) * 8;
                let len = bits.take(16)?;
                if bits.take(16)? != !len & 0xffff {
                    return Err(WalkError("has a stored block whose length does not check"));
                }
                bits.skip(u64::from(len) * 8)?;
            }
            1 => {
                let mut lengths = [8u8; 288];
                lengths[144..256].fill(9);
                lengths[256..280].fill(7);
                symbols(
                    &mut bits,
                    &Huffman::new(&lengths)?,
                    &Huffman::new(&[5; 30])?,
                )?;
            }
            2 => {
                let (literals, distances) = dynamic_codes(&mut bits)?;
                symbols(&mut bits, &literals, &distances)?;
            }
            _ => return Err(WalkError("has a block of the reserved type 3")),
        }
        if last {
            return Ok((header, bits.pos));
        }
    }
}

/// Reads a dynamic block's code definitions.
fn dynamic_codes(bits: &mut Bits<'_>) -> Result<(Huffman, Huffman), WalkError> {
    let literal_count = bits.take(5)? as usize + 257;
    let distance_count = bits.take(5)? as usize + 1;
    let code_length_count = bits.take(4)? as usize + 4;
    let mut code_lengths = [0u8; 19];
    for &symbol in &CODE_LENGTH_ORDER[..code_length_count] {
        code_lengths[symbol] = bits.take(3)? as u8;
    }
    let code_lengths = Huffman::new(&code_lengths)?;
    let mut lengths = vec![0u8; literal_count + distance_count];
    let mut at = 0;
    while at < lengths.len() {
        let (value, repeat) = match code_lengths.decode(bits)? {
            symbol @ 0..=15 => (symbol as u8, 1),
            16 => {
                let previous = *at
                    .checked_sub(1)
                    .and_then(|p| lengths.get(p))
                    .ok_or(WalkError("repeats a code length before the first"))?;
                (previous, 3 + bits.take(2)? as usize)
            }
            17 => (0, 3 + bits.take(3)? as usize),
            _ => (0, 11 + bits.take(7)? as usize),
        };
        let run = lengths
            .get_mut(at..at + repeat)
            .ok_or(WalkError("repeats code lengths past the end"))?;
        run.fill(value);
        at += repeat;
    }
    if lengths[256] == 0 {
        return Err(WalkError("has a block without an end-of-block code"));
    }
    Ok((
        Huffman::new(&lengths[..literal_count])?,
        Huffman::new(&lengths[literal_count..])?,
    ))
}

/// Walks a compressed block's symbols up to its end-of-block code.
fn symbols(bits: &mut Bits<'_>, literals: &Huffman, distances: &Huffman) -> Result<(), WalkError> {
    loop {
        let symbol = literals.decode(bits)?;
        match symbol {
            0..=255 => {}
            256 => return Ok(()),
            _ => {
                let extra = LENGTH_EXTRA
                    .get(usize::from(symbol - 257))
                    .ok_or(WalkError("has an invalid length symbol"))?;
                bits.skip(u64::from(*extra))?;
                let distance = distances.decode(bits)?;
                let extra = DISTANCE_EXTRA
                    .get(usize::from(distance))
                    .ok_or(WalkError("has an invalid distance symbol"))?;
                bits.skip(u64::from(*extra))?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// Text-like, binary-like, random and all-zero data, and mixtures.
    fn samples() -> Vec<Vec<u8>> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let noise: Vec<u8> = (0..300_000).map(|_| random() as u8).collect();
        let text: Vec<u8> = (0..400_000u32)
            .flat_map(|i| format!("line {} of the log: value={}\n", i, i % 977).into_bytes())
            .take(700_000)
            .collect();
        let skewed: Vec<u8> = (0..200_000).map(|_| (random() % 7) as u8 * 37).collect();
        let mut mixed = text[..100_000].to_vec();
        mixed.extend_from_slice(&noise[..50_000]);
        mixed.extend(std::iter::repeat_n(0u8, 70_000));
        mixed.extend_from_slice(&skewed[..60_000]);
        vec![
            Vec::new(),
            b"a".to_vec(),
            noise,
            text,
            vec![0u8; 1 << 20],
            skewed,
            mixed,
        ]
    }

    fn gunzip(member: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(member)
            .read_to_end(&mut out)
            .expect("a valid gzip member");
        out
    }

    /// A member of `data` in pieces of `piece` bytes, as the segment writer joins them.
    fn pieced(level: u32, data: &[u8], piece: usize) -> Vec<u8> {
        let mut member = gzip_header(level).to_vec();
        let mut sum = MemberSum::default();
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![data]
        } else {
            data.chunks(piece).collect()
        };
        for (i, chunk) in chunks.iter().enumerate() {
            let piece = compress_piece(level, chunk, i + 1 == chunks.len()).unwrap();
            sum.add(&piece);
            member.extend_from_slice(&piece.deflate);
        }
        member.extend_from_slice(&sum.trailer());
        member
    }

    #[test]
    fn the_walk_ends_where_libdeflate_ends() {
        for level in [0, 1, 5, 9, 12] {
            for data in samples() {
                let mut compressor = crate::compress::gzip_compressor(level).unwrap();
                let mut out = vec![0u8; compressor.deflate_compress_bound(data.len())];
                let n = compressor.deflate_compress(&data, &mut out).unwrap();
                let (header, end) = last_block(&out[..n]).unwrap();
                assert_eq!(
                    end.div_ceil(8),
                    n as u64,
                    "level {level}, {} bytes",
                    data.len()
                );
                assert!(header < end);
                assert_eq!(out[(header / 8) as usize] >> (header % 8) & 1, 1, "BFINAL");
            }
        }
    }

    #[test]
    fn joined_pieces_are_one_member_that_gunzips_to_the_input() {
        for level in [1, 5, 12] {
            for data in samples() {
                for piece in [1000, 65_536, 333_333] {
                    let member = pieced(level, &data, piece);
                    assert_eq!(gunzip(&member), data, "level {level}, pieces of {piece}");
                    // One member: a multi-member reader sees the same bytes, and GNU gzip's
                    // framing (header, trailer) matches libdeflate's for one piece.
                    assert_eq!(&member[..10], &gzip_header(level));
                }
            }
        }
        let data = samples().swap_remove(3);
        assert_eq!(
            pieced(5, &data, data.len()),
            crate::compress::Codec::Gzip { level: 5 }
                .compress(&data)
                .unwrap(),
            "one piece is exactly libdeflate's own gzip member"
        );
    }

    #[test]
    fn crc_combination_matches_the_crc_of_the_whole() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        for cut in [0, 1, 7, 4096, 99_999, 100_000] {
            let (a, b) = data.split_at(cut);
            assert_eq!(
                crc32_combine(libdeflater::crc32(a), libdeflater::crc32(b), b.len() as u64),
                libdeflater::crc32(&data),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn damaged_streams_are_refused_not_misread() {
        assert!(last_block(&[]).is_err());
        // Reserved block type.
        assert!(last_block(&[0b111]).is_err());
        // A stored block whose NLEN does not check.
        assert!(last_block(&[1, 5, 0, 0, 0]).is_err());
        // A truncated stream.
        let data = samples().swap_remove(3);
        let mut compressor = crate::compress::gzip_compressor(5).unwrap();
        let mut out = vec![0u8; compressor.deflate_compress_bound(data.len())];
        let n = compressor.deflate_compress(&data, &mut out).unwrap();
        assert!(last_block(&out[..n / 2]).is_err());
    }
}
