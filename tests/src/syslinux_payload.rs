//! SYSLINUX's boot files, recovered from Debian's installer binary.
//!
//! Debian's `syslinux` package ships no `ldlinux.sys` or `ldlinux.bss` files: the installer
//! (`/usr/bin/syslinux`, the mtools variant) carries them as byte arrays that SYSLINUX's build
//! generated with its `bin2c.pl` (`syslinux_bootsect`, `syslinux_ldlinux`,
//! `syslinux_ldlinuxc32`), each followed in the read-only data by a `const unsigned int`
//! length (`..._len`). The binary is stripped, so [`extract`] finds them by shape instead of by
//! symbol:
//!
//! - `ldlinux.sys` starts with its banner (`"\r\nSYSLINUX 6.04 ...\0\r\n\x1a"`), padded to an
//!   8-byte boundary where `LDLINUX_MAGIC` (0x3eb202fe) and the still-empty patch area
//!   follow. The patch area points at the extended patch area, whose offsets give a lower
//!   bound on the image's length.
//! - Its length is a `_len` value (found stored near the boot sector's length, 512): a
//!   multiple of 512 (`bin2c.pl` pads this array to whole sectors), at least that lower
//!   bound, and ending where the next array, `ldlinux.c32`, begins. Exactly one value must
//!   fit.
//! - `ldlinux.bss` is a 512-byte sector that starts with a short jump and `NOP`, ends with
//!   `0x55AA`, carries `LDLINUX_MAGIC` at byte 504, and holds the unpatched placeholders
//!   `0xdeadbeef`/`0xfeedface` exactly where `ldlinux.sys`'s extended patch area says the
//!   installer patches the first sector's address.
//! - `ldlinux.c32` is that ELF32 object; its length follows from its header (the section
//!   table comes last) and must be a recorded `_len` value too.
//!
//! Nothing here depends on the rest of this crate, so other crates' tests can include the
//! file with `#[path]`.

/// SYSLINUX's `LDLINUX_MAGIC`.
const LDLINUX_MAGIC: u32 = 0x3eb2_02fe;

/// The boot files found in an installer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyslinuxPayload {
    /// `ldlinux.sys` as the installer writes it before patching (padded to whole sectors,
    /// without the two ADV sectors the installer appends).
    pub ldlinux_sys: Vec<u8>,
    /// `ldlinux.bss`, the 512-byte boot sector template.
    pub ldlinux_bss: Vec<u8>,
    /// `ldlinux.c32`, the core module the installer copies next to `ldlinux.sys`.
    pub ldlinux_c32: Vec<u8>,
    /// The banner at the start of `ldlinux.sys`, e.g. `SYSLINUX 6.04 20190226`.
    pub banner: String,
}

fn u16_at(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn u32_at(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Where `ldlinux.sys` starts, given the offset of its `LDLINUX_MAGIC`: the banner
/// `\r\n<text>\0\r\n\x1a` and zero padding up to the magic, which sits 8-byte aligned
/// relative to the start.
fn banner_start(bytes: &[u8], magic_at: usize) -> Option<(usize, String)> {
    (magic_at.saturating_sub(80)..magic_at)
        .filter(|start| (magic_at - start).is_multiple_of(8))
        .find_map(|start| {
            let head = &bytes[start..magic_at];
            let rest = head.strip_prefix(b"\r\n")?;
            let nul = rest.iter().position(|&b| b == 0)?;
            let text = &rest[..nul];
            let tail = rest[nul + 1..].strip_prefix(b"\r\n\x1a")?;
            let printable = !text.is_empty() && text.iter().all(|b| (0x20..0x7f).contains(b));
            (printable && tail.iter().all(|&b| b == 0))
                .then(|| (start, String::from_utf8_lossy(text).into_owned()))
        })
}

/// The parts of `ldlinux.sys`'s patch areas that [`extract`] checks.
struct PatchArea {
    /// The highest offset the extended patch area refers to.
    min_len: usize,
    sect1ptr0: usize,
    sect1ptr1: usize,
}

/// Reads the patch area after the magic at `magic_at` of an image starting at `start`;
/// `None` unless it is the unpatched area of an installable `ldlinux.sys`.
fn patch_area(bytes: &[u8], start: usize, magic_at: usize) -> Option<PatchArea> {
    let area = magic_at + 8;
    let data_sectors = u16_at(bytes, area)?;
    let adv_sectors = u16_at(bytes, area + 2)?;
    let dwords = u32_at(bytes, area + 4)?;
    let checksum = u32_at(bytes, area + 8)?;
    let epa = usize::from(u16_at(bytes, area + 14)?);
    if data_sectors != 0 || adv_sectors != 0 || dwords != 0 || checksum != 0 {
        return None;
    }
    let field = |i: usize| u16_at(bytes, start + epa + 2 * i).map(usize::from);
    let (adv, dir, dir_len, subvol, subvol_len) =
        (field(0)?, field(1)?, field(2)?, field(3)?, field(4)?);
    let (secptr, secptr_count) = (field(5)?, field(6)?);
    let (sect1ptr0, sect1ptr1) = (field(7)?, field(8)?);
    let min_len = [
        epa + 20,
        adv + 16,
        dir + dir_len,
        subvol + subvol_len,
        secptr + 10 * secptr_count,
    ]
    .into_iter()
    .max()?;
    (secptr_count > 0 && sect1ptr0 + 4 <= 508 && sect1ptr1 + 4 <= 508).then_some(PatchArea {
        min_len,
        sect1ptr0,
        sect1ptr1,
    })
}

/// Offsets of every occurrence of `needle`.
fn find_all<'a>(haystack: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    haystack
        .windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

/// The 32-bit values stored within 32 bytes of a 4-byte-aligned 512 (the boot sector's
/// `_len`): where the other `_len` values live.
fn length_neighbours(bytes: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    for at in (0..bytes.len().saturating_sub(3)).step_by(4) {
        if u32_at(bytes, at) != Some(512) {
            continue;
        }
        for near in (at.saturating_sub(32)..=at + 32).step_by(4) {
            if let Some(v) = u32_at(bytes, near) {
                out.push(v);
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The length of the ELF32 object at the start of `bytes`: its section header table is last.
fn elf32_len(bytes: &[u8]) -> Option<usize> {
    if !bytes.starts_with(b"\x7fELF\x01\x01\x01") {
        return None;
    }
    let shoff = u32_at(bytes, 0x20)? as usize;
    let shentsize = usize::from(u16_at(bytes, 0x2E)?);
    let shnum = usize::from(u16_at(bytes, 0x30)?);
    let len = shoff.checked_add(shentsize * shnum)?;
    (len <= bytes.len() && shentsize == 40).then_some(len)
}

/// Finds `ldlinux.sys`, `ldlinux.bss` and `ldlinux.c32` in the bytes of SYSLINUX's mtools
/// installer (Debian's `/usr/bin/syslinux`). Errors say which part was not found or was
/// ambiguous.
pub fn extract(installer: &[u8]) -> Result<SyslinuxPayload, String> {
    if !installer.starts_with(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    let magic = LDLINUX_MAGIC.to_le_bytes();
    let magics: Vec<usize> = find_all(installer, &magic).collect();
    let lengths = length_neighbours(installer);

    // ldlinux.sys: banner, magic, unpatched patch area.
    let mut images = Vec::new();
    for &magic_at in &magics {
        let Some((start, banner)) = banner_start(installer, magic_at) else {
            continue;
        };
        if let Some(area) = patch_area(installer, start, magic_at) {
            images.push((start, banner, area));
        }
    }
    let (start, banner, area) = match images.len() {
        1 => images.remove(0),
        0 => return Err("no ldlinux.sys image (banner, LDLINUX_MAGIC, empty patch area)".into()),
        n => return Err(format!("{n} candidate ldlinux.sys images")),
    };

    // Its length: a recorded length (whole sectors, covering the patch areas) after which
    // the next array, ldlinux.c32, starts (arrays are aligned to at most 64 bytes), with a
    // length of its own that is recorded too.
    let mut fitting = Vec::new();
    for len in lengths.iter().map(|&v| v as usize) {
        if !len.is_multiple_of(512) || len < area.min_len || start + len > installer.len() {
            continue;
        }
        let after = start + len;
        let c32 = (after..(after + 64).min(installer.len()))
            .find(|&at| installer[at..].starts_with(b"\x7fELF\x01\x01\x01"))
            .and_then(|at| Some((at, elf32_len(&installer[at..])?)))
            .filter(|(_, c32_len)| lengths.contains(&(*c32_len as u32)));
        if let Some((c32_at, c32_len)) = c32 {
            fitting.push((len, c32_at, c32_len));
        }
    }
    let (sys_len, c32_at, c32_len) = match fitting[..] {
        [found] => found,
        [] => {
            return Err(
                "no recorded length of ldlinux.sys ends where a recorded ldlinux.c32 starts".into(),
            );
        }
        _ => return Err(format!("ambiguous ldlinux.sys lengths {fitting:?}")),
    };
    let ldlinux_sys = installer[start..start + sys_len].to_vec();
    let ldlinux_c32 = installer[c32_at..c32_at + c32_len].to_vec();

    // ldlinux.bss: the boot sector whose placeholders sit where ldlinux.sys patches.
    let sectors: Vec<usize> = magics
        .iter()
        .filter_map(|&m| m.checked_sub(504))
        .filter(|&at| {
            let s = &installer[at..];
            s.len() >= 512
                && s[0] == 0xEB
                && s[2] == 0x90
                && s[510..512] == [0x55, 0xAA]
                && u32_at(s, area.sect1ptr0) == Some(0xdead_beef)
                && u32_at(s, area.sect1ptr1) == Some(0xfeed_face)
        })
        .collect();
    let bss_at = match sectors[..] {
        [at] => at,
        [] => return Err("no ldlinux.bss boot sector matching ldlinux.sys".into()),
        _ => return Err(format!("{} candidate ldlinux.bss sectors", sectors.len())),
    };
    let ldlinux_bss = installer[bss_at..bss_at + 512].to_vec();

    Ok(SyslinuxPayload {
        ldlinux_sys,
        ldlinux_bss,
        ldlinux_c32,
        banner,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::debs::DebCache;

    /// Debian's installer, from the fixture .deb cache (downloaded when missing).
    fn debian_installer() -> Vec<u8> {
        let cache = DebCache::open_default().unwrap();
        let deb = cache.fetch("syslinux").unwrap();
        let dir = tempfile::tempdir().unwrap();
        cache.unpack(&deb, dir.path()).unwrap();
        fs_err::read(dir.path().join("usr/bin/syslinux")).unwrap()
    }

    #[test]
    fn finds_the_boot_files_in_debians_installer() {
        let installer = debian_installer();
        let payload = extract(&installer).unwrap();
        assert!(
            payload.banner.starts_with("SYSLINUX 6."),
            "{}",
            payload.banner
        );

        let bss = &payload.ldlinux_bss;
        assert_eq!(bss.len(), 512);
        assert_eq!((bss[0], bss[2]), (0xEB, 0x90));
        assert_eq!(&bss[3..11], b"SYSLINUX");
        assert_eq!(&bss[510..], &[0x55, 0xAA]);

        let sys = &payload.ldlinux_sys;
        assert_eq!(sys.len() % 512, 0);
        assert!(
            sys.len() > 32 << 10 && sys.len() < 128 << 10,
            "{}",
            sys.len()
        );
        assert!(sys.starts_with(format!("\r\n{}\0", payload.banner).as_bytes()));
        // The array is followed by ldlinux.c32, not cut short: the image's last non-zero
        // byte lies in its last sector.
        let last = sys.iter().rposition(|&b| b != 0).unwrap();
        assert!(last >= sys.len() - 512, "{last} of {}", sys.len());

        let c32 = &payload.ldlinux_c32;
        assert!(c32.starts_with(b"\x7fELF\x01\x01\x01"));
        assert!(c32.len() > 64 << 10);
        // The three arrays are distinct places in the binary.
        let at = |part: &[u8]| {
            installer
                .windows(part.len())
                .position(|w| w == part)
                .unwrap()
        };
        assert!(at(sys) + sys.len() <= at(c32));
    }

    #[test]
    fn a_damaged_installer_is_an_error_not_a_guess() {
        let installer = debian_installer();
        assert!(extract(b"#!/bin/sh\n").is_err());
        let payload = extract(&installer).unwrap();
        let sys_at = installer
            .windows(64)
            .position(|w| w == &payload.ldlinux_sys[..64])
            .unwrap();

        // Without its banner there is no ldlinux.sys.
        let mut no_banner = installer.clone();
        no_banner[sys_at..sys_at + 2].copy_from_slice(b"XX");
        let err = extract(&no_banner).unwrap_err();
        assert!(err.contains("no ldlinux.sys"), "{err}");

        // A patched (already installed) image is not taken for the template.
        let mut patched = installer.clone();
        let magic_at = sys_at
            + payload
                .ldlinux_sys
                .windows(4)
                .position(|w| w == LDLINUX_MAGIC.to_le_bytes())
                .unwrap();
        patched[magic_at + 8] = 1;
        assert!(extract(&patched).is_err());

        // Without the boot sector's placeholders there is no ldlinux.bss.
        let bss_at = installer
            .windows(512)
            .position(|w| w == &payload.ldlinux_bss[..])
            .unwrap();
        let mut no_bss = installer.clone();
        let deadbeef = payload
            .ldlinux_bss
            .windows(4)
            .position(|w| w == 0xdead_beef_u32.to_le_bytes())
            .unwrap();
        no_bss[bss_at + deadbeef] = 0;
        let err = extract(&no_bss).unwrap_err();
        assert!(err.contains("ldlinux.bss"), "{err}");
    }
}
