//! Compression codecs: deterministic writers for outputs, sniffing readers for inputs.
//!
//! Output bytes depend on the codec, its level, the backend and its version, and the thread
//! mode; [`Codec::params`] spells all of them out for action keys. The backends are pinned:
//! gzip output is libdeflate (bundled by `libdeflater`, compiled from source), one gzip member
//! per [`Codec::compress`] call, compressed from a whole buffer; zstd is the zstd crate's
//! bundled libzstd, single-threaded. Reading gzip goes through flate2 with the zlib-rs backend
//! (the workspace disables flate2's default features).
//!
//! Why libdeflate: at level [`GZIP_DEFAULT_LEVEL`] it compresses 1.7× faster than zlib(-rs)
//! at level 6 and its output is slightly *smaller* than GNU `gzip -6`'s (measured in
//! docs/performance.md on the bench image and on a tar of /usr). It has no streaming API, so
//! a gzip member is compressed from memory: callers keep members bounded (an initrd segment
//! is cut into members of about [`crate::actions::SEGMENT_MEMBER_BYTES`]).

use std::io::{self, Read, Write};

pub mod pieces;

/// Version of this module's byte-affecting choices; part of [`Codec::params`]. (The move of
/// gzip from zlib-rs to libdeflate changed the gzip params' `backend=`, so it needed no bump.)
pub const COMPRESS_VERSION: u32 = 1;

/// The gzip level lkb uses: libdeflate's level 5, whose output is about the size of
/// `gzip -6`'s (LinuxKit's default), 0.6% smaller on a tar of /usr.
pub const GZIP_DEFAULT_LEVEL: u32 = 5;
/// libdeflate's highest level.
const GZIP_MAX_LEVEL: u32 = 12;

/// An output compression codec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(tag = "codec", rename_all = "lowercase")]
pub enum Codec {
    /// gzip, one member per [`Codec::compress`] (or per [`Codec::writer`] until finished), by
    /// libdeflate at `level` (0..=12), header `1f 8b 08 00 00000000 XFL ff` (mtime 0, no
    /// name, OS 255); XFL is 4 for levels 0 and 1, 2 for 8 and up, else 0.
    Gzip {
        level: u32,
    },
    /// zstd frame with a content checksum, single-threaded (nbWorkers = 0).
    Zstd {
        level: i32,
    },
    None,
}

/// gzip at [`GZIP_DEFAULT_LEVEL`], about LinuxKit's default size.
impl Default for Codec {
    fn default() -> Codec {
        Codec::Gzip {
            level: GZIP_DEFAULT_LEVEL,
        }
    }
}

impl Codec {
    /// A canonical description of everything that affects the output bytes, for action keys.
    pub fn params(&self) -> String {
        match self {
            Codec::Gzip { level } => format!(
                "compress-v{COMPRESS_VERSION};codec=gzip;level={level};backend=libdeflate-{};\
                 mtime=0;os=255;members=1;threads=1",
                env!("LKB_LIBDEFLATE_VERSION"),
            ),
            Codec::Zstd { level } => format!(
                "compress-v{COMPRESS_VERSION};codec=zstd;level={level};backend=libzstd-{};\
                 checksum=1;content-size=0;threads=0",
                zstd::zstd_safe::version_string()
            ),
            Codec::None => format!("compress-v{COMPRESS_VERSION};codec=none"),
        }
    }

    /// Conventional file-name suffix (`.gz`, `.zst`, ``).
    pub fn extension(&self) -> &'static str {
        match self {
            Codec::Gzip { .. } => ".gz",
            Codec::Zstd { .. } => ".zst",
            Codec::None => "",
        }
    }

    /// Wraps `out` in a compressing writer. Call [`Encoder::finish`] to write the trailer.
    /// A gzip writer keeps what it is given in memory and compresses it at the finish.
    pub fn writer<W: Write>(&self, out: W) -> io::Result<Encoder<W>> {
        Ok(match *self {
            Codec::Gzip { level } => {
                gzip_compressor(level)?;
                Encoder::Gzip {
                    level,
                    input: Vec::new(),
                    out,
                }
            }
            Codec::Zstd { level } => {
                let range = zstd::compression_level_range();
                if !range.contains(&level) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("zstd level {level} out of range {range:?}"),
                    ));
                }
                let mut enc = zstd::stream::write::Encoder::new(out, level)?;
                enc.include_checksum(true)?;
                enc.include_contentsize(false)?;
                Encoder::Zstd(enc)
            }
            Codec::None => Encoder::None(out),
        })
    }

    /// Compresses a byte slice in one go (one gzip member).
    pub fn compress(&self, data: &[u8]) -> io::Result<Vec<u8>> {
        match *self {
            Codec::Gzip { level } => gzip(level, data),
            _ => {
                let mut w = self.writer(Vec::new())?;
                w.write_all(data)?;
                w.finish()
            }
        }
    }
}

/// A libdeflate compressor at `level`, or an error naming the range.
fn gzip_compressor(level: u32) -> io::Result<libdeflater::Compressor> {
    let out_of_range = || {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("gzip level {level} out of range 0..={GZIP_MAX_LEVEL}"),
        )
    };
    let level = i32::try_from(level).map_err(|_| out_of_range())?;
    let level = libdeflater::CompressionLvl::new(level).map_err(|_| out_of_range())?;
    Ok(libdeflater::Compressor::new(level))
}

/// `data` as one gzip member.
fn gzip(level: u32, data: &[u8]) -> io::Result<Vec<u8>> {
    let mut compressor = gzip_compressor(level)?;
    let mut out = vec![0u8; compressor.gzip_compress_bound(data.len())];
    let n = compressor
        .gzip_compress(data, &mut out)
        .map_err(|e| io::Error::other(format!("gzip: {e}")))?;
    out.truncate(n);
    Ok(out)
}

/// A compressing writer made by [`Codec::writer`].
pub enum Encoder<W: Write> {
    /// The input so far, compressed into `out` by [`Encoder::finish`].
    Gzip {
        level: u32,
        input: Vec<u8>,
        out: W,
    },
    Zstd(zstd::stream::write::Encoder<'static, W>),
    None(W),
}

impl<W: Write> Encoder<W> {
    /// Flushes the compressor, writes its trailer and returns the inner writer.
    pub fn finish(self) -> io::Result<W> {
        match self {
            Encoder::Gzip {
                level,
                input,
                mut out,
            } => {
                let member = gzip(level, &input)?;
                drop(input);
                out.write_all(&member)?;
                out.flush()?;
                Ok(out)
            }
            Encoder::Zstd(e) => e.finish(),
            Encoder::None(mut w) => {
                w.flush()?;
                Ok(w)
            }
        }
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Encoder::Gzip { input, .. } => input.write(buf),
            Encoder::Zstd(e) => e.write(buf),
            Encoder::None(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            // Nothing is written before the finish.
            Encoder::Gzip { .. } => Ok(()),
            Encoder::Zstd(e) => e.flush(),
            Encoder::None(w) => w.flush(),
        }
    }
}

/// Compression of an input stream, as recognised by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    Gzip,
    Zstd,
    None,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Recognises a compressed stream from its first bytes.
pub fn detect(head: &[u8]) -> Detected {
    if head.starts_with(&GZIP_MAGIC) {
        Detected::Gzip
    } else if head.starts_with(&ZSTD_MAGIC) {
        Detected::Zstd
    } else {
        Detected::None
    }
}

/// Wraps `input` in a decompressor chosen by its magic bytes (gzip, also multi-member;
/// zstd; else passed through). Returns what was detected.
pub fn decompress_reader<'a, R: Read + 'a>(
    mut input: R,
) -> io::Result<(Detected, Box<dyn Read + 'a>)> {
    let mut head = [0u8; 4];
    let mut n = 0;
    while n < head.len() {
        match input.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let detected = detect(&head[..n]);
    let stream = io::Cursor::new(head[..n].to_vec()).chain(input);
    let reader: Box<dyn Read + 'a> = match detected {
        Detected::Gzip => Box::new(flate2::read::MultiGzDecoder::new(stream)),
        Detected::Zstd => Box::new(zstd::stream::read::Decoder::new(stream)?),
        Detected::None => Box::new(io::BufReader::with_capacity(1 << 16, stream)),
    };
    Ok((detected, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(codec: Codec, data: &[u8]) -> Vec<u8> {
        let packed = codec.compress(data).unwrap();
        let (_, mut r) = decompress_reader(&packed[..]).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn gzip_header_is_deterministic_like_linuxkit() {
        let out = Codec::Gzip { level: 6 }.compress(b"hello").unwrap();
        assert_eq!(
            &out[..10],
            &[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0x00, 0xff]
        );
        let best = Codec::Gzip { level: 9 }.compress(b"hello").unwrap();
        assert_eq!(best[8], 2);
        let fastest = Codec::Gzip { level: 1 }.compress(b"hello").unwrap();
        assert_eq!(fastest[8], 4);
    }

    #[test]
    fn codecs_round_trip_and_are_deterministic() {
        let data: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        for codec in [
            Codec::Gzip { level: 1 },
            Codec::Gzip { level: 9 },
            Codec::Zstd { level: 3 },
            Codec::None,
        ] {
            assert_eq!(roundtrip(codec, &data), data, "{codec:?}");
            assert_eq!(
                codec.compress(&data).unwrap(),
                codec.compress(&data).unwrap(),
                "{codec:?}"
            );
        }
        assert_eq!(roundtrip(Codec::Gzip { level: 6 }, b""), b"");
    }

    #[test]
    fn detection_by_magic() {
        let gz = Codec::Gzip { level: 6 }.compress(b"x").unwrap();
        let zst = Codec::Zstd { level: 3 }.compress(b"x").unwrap();
        assert_eq!(detect(&gz), Detected::Gzip);
        assert_eq!(detect(&zst), Detected::Zstd);
        assert_eq!(detect(b"ab"), Detected::None);
        assert_eq!(detect(b""), Detected::None);
        // Short plain input passes through untouched.
        let (d, mut r) = decompress_reader(&b"ab"[..]).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!((d, out.as_slice()), (Detected::None, &b"ab"[..]));
    }

    #[test]
    fn multi_member_gzip_is_read_whole() {
        let mut two = Codec::Gzip { level: 6 }.compress(b"abc").unwrap();
        two.extend(Codec::Gzip { level: 6 }.compress(b"def").unwrap());
        let (_, mut r) = decompress_reader(&two[..]).unwrap();
        let mut out = Vec::new();
        r.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abcdef");
    }

    #[test]
    fn params_name_every_byte_affecting_choice() {
        assert!(Codec::Gzip { level: 6 }.params().contains("level=6"));
        assert_ne!(
            Codec::Gzip { level: 6 }.params(),
            Codec::Gzip { level: 9 }.params()
        );
        assert!(Codec::Zstd { level: 19 }.params().contains("threads=0"));
        assert!(Codec::Gzip { level: 13 }.writer(Vec::new()).is_err());
        assert!(Codec::Gzip { level: 13 }.compress(b"x").is_err());
    }
}
