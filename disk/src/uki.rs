//! Unified kernel images (the UAPI group's "UKI"): an EFI stub with the kernel, the initrd, the
//! kernel command line and os-release appended as PE sections, the way `ukify build` lays them
//! out. The firmware (or systemd-boot) starts the stub; the stub finds its own sections by name
//! and boots the kernel with that initrd and command line.
//!
//! The stub is small and is patched in memory; the kernel, initrd and microcode are streamed
//! from [`Data`] when the image is written.
//!
//! Layout, following ukify:
//! - the stub's headers, with room made for the new section headers: `SizeOfHeaders` is rounded
//!   up to `FileAlignment` and, if that is not enough, grown further (by moving the stub's section
//!   data back; its virtual addresses do not change), as long as the headers still end before
//!   the stub's first section in memory;
//! - the stub's section data, each section's raw size a multiple of `FileAlignment`; anything
//!   after the last section (old stubs carry a COFF symbol table there) is dropped and the
//!   symbol table pointer cleared;
//! - the new sections, in ukify's order `.osrel`, `.cmdline`, `.uname`, `.initrd`, `.ucode`,
//!   `.linux`: file offsets aligned to `FileAlignment`; virtual addresses aligned to
//!   `SectionAlignment`, the first one after everything the stub maps (its `SizeOfImage` and,
//!   for each of its sections, the address plus the larger of virtual and raw size; ukify uses
//!   only the last section's virtual size, which can place the first new section inside the
//!   stub's last raw page); `VirtualSize` is the exact content length (the stub reads that many
//!   bytes, so the command line needs no NUL; ukify adds none). `.linux` is marked code, the
//!   others initialized data, all read-only. systemd 252's stub finds sections by name, so the
//!   order does not matter to it; `.linux` goes last as in ukify.
//!
//! `SizeOfImage`, `SizeOfCode`, `SizeOfInitializedData` and `NumberOfSections` are updated and
//! `CheckSum` is set to 0, as ukify does (UEFI does not check it). Empty optional sections are
//! left out. A signed stub is refused: the signature would not cover the new sections.

use crate::{Data, DiskError, Sink, write_data};

/// What goes into a unified kernel image.
#[derive(Debug, Clone)]
pub struct Uki {
    /// The EFI stub, e.g. systemd's `linuxx64.efi.stub`: a PE32+ x86-64 EFI application.
    pub stub: Data,
    /// `.osrel`: os-release text; systemd-boot shows an entry's name and version from it.
    pub osrel: Vec<u8>,
    /// `.cmdline`: the kernel command line, written as given.
    pub cmdline: Vec<u8>,
    /// `.uname`: the kernel release (`uname -r`), if known.
    pub uname: Option<Vec<u8>>,
    /// `.linux`: the kernel (a bzImage with the EFI stub).
    pub linux: Data,
    /// `.initrd`: the initial ramdisk.
    pub initrd: Data,
    /// `.ucode`: early microcode (a cpio archive), which newer stubs load before the initrd.
    pub ucode: Option<Data>,
}

/// One section appended to the stub, as it is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UkiSection {
    pub name: &'static str,
    /// Relative virtual address (from the image base).
    pub virtual_address: u32,
    /// Where the content starts in the image file.
    pub file_offset: u64,
    /// Content length (`VirtualSize`); the raw data is padded to `FileAlignment`.
    pub size: u64,
}

/// A planned unified kernel image: every offset is known, nothing large is read yet.
#[derive(Debug)]
pub struct UkiPlan {
    stub: Vec<u8>,
    headers: Vec<u8>,
    copied: Vec<CopiedSection>,
    added: Vec<(UkiSection, Data)>,
    file_alignment: u64,
    size: u64,
}

/// A stub section's data: `len` bytes from `from` in the stub, then zeros up to `raw_size`.
#[derive(Debug)]
struct CopiedSection {
    from: usize,
    len: usize,
    raw_size: u64,
}

const SECTION_HEADER: usize = 40;
const MACHINE_X86_64: u16 = 0x8664;
const PE32_PLUS: u16 = 0x20b;
const SUBSYSTEM_EFI_APPLICATION: u16 = 10;
const FILE_LOCAL_SYMS_STRIPPED: u16 = 0x0008;
const SCN_CNT_CODE: u32 = 0x0000_0020;
const SCN_CNT_INITIALIZED_DATA: u32 = 0x0000_0040;
const SCN_MEM_READ: u32 = 0x4000_0000;
const DIR_SECURITY: usize = 4;
const DIR_DEBUG: usize = 6;

// Offsets in the PE32+ optional header.
const OPT_SIZE_OF_CODE: usize = 4;
const OPT_SIZE_OF_INITIALIZED_DATA: usize = 8;
const OPT_SECTION_ALIGNMENT: usize = 32;
const OPT_FILE_ALIGNMENT: usize = 36;
const OPT_SIZE_OF_IMAGE: usize = 56;
const OPT_SIZE_OF_HEADERS: usize = 60;
const OPT_CHECKSUM: usize = 64;
const OPT_SUBSYSTEM: usize = 68;
const OPT_NUMBER_OF_RVA_AND_SIZES: usize = 108;
const OPT_DATA_DIRECTORIES: usize = 112;

/// The stub's headers as parsed.
struct Stub {
    coff: usize,
    opt: usize,
    section_table: usize,
    sections: Vec<StubSection>,
    section_alignment: u32,
    file_alignment: u32,
    size_of_headers: u32,
    size_of_image: u32,
    /// A debug directory holds file offsets, so the section data must not move.
    debug_directory: bool,
}

struct StubSection {
    virtual_address: u32,
    virtual_size: u32,
    raw_offset: u32,
    raw_size: u32,
}

fn invalid(what: impl std::fmt::Display) -> DiskError {
    DiskError::Invalid(format!("EFI stub: {what}"))
}

fn u16_at(bytes: &[u8], at: usize) -> Result<u16, DiskError> {
    bytes
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .ok_or_else(|| {
            invalid(format!(
                "truncated ({} bytes, needs {})",
                bytes.len(),
                at + 2
            ))
        })
}

fn u32_at(bytes: &[u8], at: usize) -> Result<u32, DiskError> {
    bytes
        .get(at..at + 4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| {
            invalid(format!(
                "truncated ({} bytes, needs {})",
                bytes.len(),
                at + 4
            ))
        })
}

fn put_u16(bytes: &mut [u8], at: usize, value: u16) {
    bytes[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

fn align(n: u64, to: u64) -> u64 {
    n.div_ceil(to) * to
}

fn parse_stub(bytes: &[u8]) -> Result<Stub, DiskError> {
    if bytes.get(..2) != Some(b"MZ") {
        return Err(invalid("not a PE image (no MZ signature)"));
    }
    let pe = u32_at(bytes, 0x3c)? as usize;
    if bytes.get(pe..pe + 4) != Some(b"PE\0\0") {
        return Err(invalid(format!(
            "not a PE image (no PE signature at {pe:#x})"
        )));
    }
    let coff = pe + 4;
    let machine = u16_at(bytes, coff)?;
    if machine != MACHINE_X86_64 {
        return Err(invalid(format!(
            "machine {machine:#06x}, not x86-64 ({MACHINE_X86_64:#06x})"
        )));
    }
    let count = u16_at(bytes, coff + 2)? as usize;
    let opt_size = u16_at(bytes, coff + 16)? as usize;
    let opt = coff + 20;
    let magic = u16_at(bytes, opt)?;
    if magic != PE32_PLUS {
        return Err(invalid(format!(
            "optional header magic {magic:#x}, not PE32+ ({PE32_PLUS:#x})"
        )));
    }
    if opt_size < OPT_DATA_DIRECTORIES {
        return Err(invalid(format!(
            "optional header of {opt_size} bytes is too short"
        )));
    }
    let subsystem = u16_at(bytes, opt + OPT_SUBSYSTEM)?;
    if subsystem != SUBSYSTEM_EFI_APPLICATION {
        return Err(invalid(format!(
            "subsystem {subsystem}, not an EFI application ({SUBSYSTEM_EFI_APPLICATION})"
        )));
    }
    let directories = u32_at(bytes, opt + OPT_NUMBER_OF_RVA_AND_SIZES)? as usize;
    if OPT_DATA_DIRECTORIES + 8 * directories > opt_size {
        return Err(invalid(format!(
            "{directories} data directories do not fit its {opt_size}-byte optional header"
        )));
    }
    let directory = |index: usize| -> Result<(u32, u32), DiskError> {
        if index >= directories {
            return Ok((0, 0));
        }
        let at = opt + OPT_DATA_DIRECTORIES + 8 * index;
        Ok((u32_at(bytes, at)?, u32_at(bytes, at + 4)?))
    };
    if directory(DIR_SECURITY)? != (0, 0) {
        return Err(invalid(
            "it is signed; a signature would not cover the added sections (sign the UKI instead)",
        ));
    }
    let section_alignment = u32_at(bytes, opt + OPT_SECTION_ALIGNMENT)?;
    let file_alignment = u32_at(bytes, opt + OPT_FILE_ALIGNMENT)?;
    if !file_alignment.is_power_of_two()
        || !section_alignment.is_power_of_two()
        || section_alignment < file_alignment
    {
        return Err(invalid(format!(
            "bad alignment: SectionAlignment {section_alignment:#x}, FileAlignment {file_alignment:#x}"
        )));
    }
    let size_of_headers = u32_at(bytes, opt + OPT_SIZE_OF_HEADERS)?;
    let size_of_image = u32_at(bytes, opt + OPT_SIZE_OF_IMAGE)?;
    if size_of_headers as usize > bytes.len() {
        return Err(invalid(format!(
            "SizeOfHeaders {size_of_headers:#x} is past the end of the file ({:#x})",
            bytes.len()
        )));
    }
    let section_table = opt + opt_size;
    if section_table + SECTION_HEADER * count > size_of_headers as usize {
        return Err(invalid(format!(
            "its section table ends at {:#x}, after SizeOfHeaders {size_of_headers:#x}",
            section_table + SECTION_HEADER * count
        )));
    }
    let mut sections = Vec::with_capacity(count);
    for index in 0..count {
        let at = section_table + SECTION_HEADER * index;
        let section = StubSection {
            virtual_size: u32_at(bytes, at + 8)?,
            virtual_address: u32_at(bytes, at + 12)?,
            raw_size: u32_at(bytes, at + 16)?,
            raw_offset: u32_at(bytes, at + 20)?,
        };
        let end = u64::from(section.raw_offset) + u64::from(section.raw_size);
        if section.raw_size > 0 && end > bytes.len() as u64 {
            return Err(invalid(format!(
                "section {index} data ends at {end:#x}, after the end of the file ({:#x})",
                bytes.len()
            )));
        }
        if section.raw_size > 0 && section.raw_offset < size_of_headers {
            return Err(invalid(format!(
                "section {index} data at {:#x} overlaps the headers ({size_of_headers:#x} bytes)",
                section.raw_offset
            )));
        }
        sections.push(section);
    }
    let debug_directory = directory(DIR_DEBUG)?.1 != 0;
    Ok(Stub {
        coff,
        opt,
        section_table,
        sections,
        section_alignment,
        file_alignment,
        size_of_headers,
        size_of_image,
        debug_directory,
    })
}

/// Lays out the image: parses and checks the stub, places the new sections and patches the
/// headers. Reads only the stub.
pub fn plan(uki: Uki) -> Result<UkiPlan, DiskError> {
    let stub_bytes = uki.stub.read_all()?;
    let stub = parse_stub(&stub_bytes)?;
    if uki.linux.is_empty() {
        return Err(DiskError::Invalid(
            "UKI: the kernel (.linux) is empty".into(),
        ));
    }

    let optional = |name: &'static str, data: Option<Data>| data.map(|data| (name, data));
    let added: Vec<(&'static str, Data)> = [
        Some((".osrel", Data::Bytes(uki.osrel))),
        Some((".cmdline", Data::Bytes(uki.cmdline))),
        optional(".uname", uki.uname.map(Data::Bytes)),
        Some((".initrd", uki.initrd)),
        optional(".ucode", uki.ucode),
        Some((".linux", uki.linux)),
    ]
    .into_iter()
    .flatten()
    .filter(|(_, data)| !data.is_empty())
    .collect();

    let file_alignment = u64::from(stub.file_alignment);
    let section_alignment = u64::from(stub.section_alignment);

    // Headers: room for every section header, rounded up to the file alignment, and still
    // before the first section in memory (the loader maps the headers at the image base).
    let table_end = stub.section_table + SECTION_HEADER * (stub.sections.len() + added.len());
    let header_size = align(
        u64::from(stub.size_of_headers).max(table_end as u64),
        file_alignment,
    );
    let first_address = stub
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address))
        .min()
        .unwrap_or(u64::MAX);
    if header_size > first_address {
        return Err(invalid(format!(
            "no room for {} more section headers: the headers would need {header_size:#x} \
             bytes, and the first section is mapped at {first_address:#x}",
            added.len()
        )));
    }

    // The stub's section data, in file order, each padded to the file alignment.
    let mut order: Vec<usize> = (0..stub.sections.len())
        .filter(|&i| stub.sections[i].raw_size > 0)
        .collect();
    order.sort_by_key(|&i| stub.sections[i].raw_offset);
    let mut new_offsets = vec![0u64; stub.sections.len()];
    let mut new_raw_sizes = vec![0u64; stub.sections.len()];
    let mut copied = Vec::with_capacity(order.len());
    let mut cursor = header_size;
    let mut previous_end = 0u64;
    let mut moved = false;
    for &i in &order {
        let section = &stub.sections[i];
        let from = u64::from(section.raw_offset);
        if from < previous_end {
            return Err(invalid(format!(
                "section {i} data at {from:#x} overlaps the section before it"
            )));
        }
        previous_end = from + u64::from(section.raw_size);
        let raw_size = align(u64::from(section.raw_size), file_alignment);
        moved |= cursor != from || raw_size != u64::from(section.raw_size);
        new_offsets[i] = cursor;
        new_raw_sizes[i] = raw_size;
        copied.push(CopiedSection {
            from: section.raw_offset as usize,
            len: section.raw_size as usize,
            raw_size,
        });
        cursor += raw_size;
    }
    if moved && stub.debug_directory {
        return Err(invalid(
            "its section data has to move to make room, and its debug directory holds file \
             offsets that would then be wrong",
        ));
    }

    // The new sections: after the stub's image in memory, after its data in the file.
    let image_end = stub
        .sections
        .iter()
        .map(|s| u64::from(s.virtual_address) + u64::from(s.virtual_size.max(s.raw_size)))
        .max()
        .unwrap_or(0)
        .max(u64::from(stub.size_of_image));
    let mut address = align(image_end, section_alignment);
    let mut headers = stub_bytes[..stub.size_of_headers as usize].to_vec();
    headers.resize(header_size as usize, 0);
    let mut code_size = u64::from(u32_at(&headers, stub.opt + OPT_SIZE_OF_CODE)?);
    let mut data_size = u64::from(u32_at(&headers, stub.opt + OPT_SIZE_OF_INITIALIZED_DATA)?);
    let mut placed = Vec::with_capacity(added.len());
    let mut image_size = address;
    for (index, (name, data)) in added.into_iter().enumerate() {
        let size = data.len();
        let raw_size = align(size, file_alignment);
        let section = UkiSection {
            name,
            virtual_address: fits_pe(address, name)?,
            file_offset: cursor,
            size,
        };
        let characteristics = if name == ".linux" {
            code_size += raw_size;
            SCN_CNT_CODE | SCN_MEM_READ
        } else {
            data_size += raw_size;
            SCN_CNT_INITIALIZED_DATA | SCN_MEM_READ
        };
        let at = stub.section_table + SECTION_HEADER * (stub.sections.len() + index);
        let header = &mut headers[at..at + SECTION_HEADER];
        header.fill(0);
        header[..name.len()].copy_from_slice(name.as_bytes());
        put_u32(header, 8, fits_pe(size, name)?);
        put_u32(header, 12, section.virtual_address);
        put_u32(header, 16, fits_pe(raw_size, name)?);
        put_u32(header, 20, fits_pe(cursor, name)?);
        put_u32(header, 36, characteristics);
        image_size = align(address + size, section_alignment);
        address = image_size;
        cursor += raw_size;
        placed.push((section, data));
    }
    fits_pe(cursor, "the image file")?;

    for (i, section) in stub.sections.iter().enumerate() {
        let at = stub.section_table + SECTION_HEADER * i;
        if section.raw_size > 0 {
            put_u32(&mut headers, at + 16, new_raw_sizes[i] as u32);
            put_u32(&mut headers, at + 20, new_offsets[i] as u32);
        }
    }
    let count = stub.sections.len() + placed.len();
    put_u16(&mut headers, stub.coff + 2, fits_u16(count)?);
    if u32_at(&headers, stub.coff + 8)? != 0 || u32_at(&headers, stub.coff + 12)? != 0 {
        // The COFF symbol table sat after the sections and is not copied.
        put_u32(&mut headers, stub.coff + 8, 0);
        put_u32(&mut headers, stub.coff + 12, 0);
        let characteristics = u16_at(&headers, stub.coff + 18)?;
        put_u16(
            &mut headers,
            stub.coff + 18,
            characteristics | FILE_LOCAL_SYMS_STRIPPED,
        );
    }
    put_u32(
        &mut headers,
        stub.opt + OPT_SIZE_OF_CODE,
        fits_pe(code_size, "SizeOfCode")?,
    );
    put_u32(
        &mut headers,
        stub.opt + OPT_SIZE_OF_INITIALIZED_DATA,
        fits_pe(data_size, "SizeOfInitializedData")?,
    );
    put_u32(
        &mut headers,
        stub.opt + OPT_SIZE_OF_IMAGE,
        fits_pe(image_size, "SizeOfImage")?,
    );
    put_u32(
        &mut headers,
        stub.opt + OPT_SIZE_OF_HEADERS,
        header_size as u32,
    );
    put_u32(&mut headers, stub.opt + OPT_CHECKSUM, 0);

    Ok(UkiPlan {
        stub: stub_bytes,
        headers,
        copied,
        added: placed,
        file_alignment,
        size: cursor,
    })
}

/// The kernel release (`uname -r`) of an x86 bzImage, from the start of the file (the first
/// 64 KiB are plenty), for the `.uname` section; what ukify finds in the same place. The boot
/// protocol header (magic `HdrS` at 0x202) points, at 0x20E, to a version string such as
/// `6.1.0-57-amd64 (debian-kernel@lists.debian.org) #1 SMP …`; the release is its first word.
/// `None` if there is no header or the string does not have that shape.
pub fn bzimage_release(head: &[u8]) -> Option<String> {
    if head.get(0x202..0x206)? != b"HdrS" {
        return None;
    }
    let start = 0x200 + usize::from(u16_at(head, 0x20e).ok()?);
    let text = head.get(start..)?;
    let text = &text[..text.iter().position(|&b| b == 0)?];
    let text = std::str::from_utf8(text).ok()?;
    let (release, rest) = text.split_once(' ')?;
    let release_chars = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    let builder_ok = rest.starts_with('(') && rest.contains(") #");
    (!release.is_empty() && release.chars().all(release_chars) && builder_ok)
        .then(|| release.to_string())
}

/// PE offsets, sizes and addresses are 32-bit.
fn fits_pe(n: u64, what: &str) -> Result<u32, DiskError> {
    u32::try_from(n).map_err(|_| {
        DiskError::Invalid(format!(
            "UKI: {what} reaches {n:#x}, past the 4 GiB a PE image can address"
        ))
    })
}

fn fits_u16(count: usize) -> Result<u16, DiskError> {
    u16::try_from(count)
        .map_err(|_| DiskError::Invalid(format!("UKI: {count} sections do not fit a PE image")))
}

impl UkiPlan {
    /// The size of the image file in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The appended sections, in image order.
    pub fn sections(&self) -> impl Iterator<Item = &UkiSection> {
        self.added.iter().map(|(section, _)| section)
    }

    /// Writes the image front to back, streaming the kernel, initrd and microcode.
    pub fn write(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        out.write_all(&self.headers).map_err(DiskError::Io)?;
        for section in &self.copied {
            out.write_all(&self.stub[section.from..section.from + section.len])
                .map_err(DiskError::Io)?;
            out.zeros(section.raw_size - section.len as u64)
                .map_err(DiskError::Io)?;
        }
        for (section, data) in &self.added {
            write_data(out, data)?;
            out.zeros(align(section.size, self.file_alignment) - section.size)
                .map_err(DiskError::Io)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileSink;
    use std::path::Path;
    use std::process::Command;

    /// systemd's stub from Debian 12's `systemd-boot-efi`, fetched once per test process with
    /// `apt-get download` and unpacked with `dpkg -x` (the package is not installed).
    fn real_stub() -> Data {
        static STUB: std::sync::OnceLock<(tempfile::TempDir, std::path::PathBuf)> =
            std::sync::OnceLock::new();
        let (_, path) = STUB.get_or_init(|| {
            let dir = tempfile::tempdir().unwrap();
            let run = |cmd: &mut Command| {
                let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
                assert!(
                    out.status.success(),
                    "{cmd:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            run(Command::new("apt-get")
                .args(["download", "-q", "systemd-boot-efi"])
                .current_dir(dir.path()));
            let deb = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.extension().is_some_and(|e| e == "deb"))
                .expect("apt-get download wrote a .deb");
            let root = dir.path().join("root");
            run(Command::new("dpkg").arg("-x").arg(&deb).arg(&root));
            let path = root.join("usr/lib/systemd/boot/efi/linuxx64.efi.stub");
            (dir, path)
        });
        let len = std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .len();
        Data::File {
            path: path.clone(),
            len,
        }
    }

    /// Deterministic filler that differs from offset to offset.
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3] ^ seed)
            .collect()
    }

    fn file(dir: &Path, name: &str, bytes: &[u8]) -> Data {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        Data::File {
            path,
            len: bytes.len() as u64,
        }
    }

    fn write_file(plan: &UkiPlan, path: &Path) -> Vec<u8> {
        let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
        plan.write(&mut sink).unwrap();
        assert_eq!(sink.position(), plan.size());
        sink.finish().unwrap();
        std::fs::read(path).unwrap()
    }

    #[derive(Debug, PartialEq)]
    struct Dumped {
        name: String,
        size: u64,
        vma: u64,
        offset: u64,
    }

    /// The section table as `objdump -h` reads it.
    fn objdump_sections(path: &Path) -> Vec<Dumped> {
        let out = Command::new("objdump")
            .arg("-h")
            .arg(path)
            .output()
            .expect("objdump");
        assert!(
            out.status.success(),
            "objdump -h: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        text.lines()
            .filter_map(|line| {
                let f: Vec<&str> = line.split_whitespace().collect();
                let numbered = f.first()?.parse::<u32>().is_ok() && f.len() >= 7;
                numbered.then(|| Dumped {
                    name: f[1].to_string(),
                    size: u64::from_str_radix(f[2], 16).unwrap(),
                    vma: u64::from_str_radix(f[3], 16).unwrap(),
                    offset: u64::from_str_radix(f[5], 16).unwrap(),
                })
            })
            .collect()
    }

    /// One header field as `objdump -p` prints it (hex).
    fn objdump_field(path: &Path, field: &str) -> u64 {
        let out = Command::new("objdump")
            .arg("-p")
            .arg(path)
            .output()
            .expect("objdump");
        assert!(out.status.success());
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(field))
            .unwrap_or_else(|| panic!("objdump -p prints no {field}:\n{text}"));
        u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
    }

    #[test]
    fn objdump_reads_a_uki_made_from_the_systemd_stub() {
        let dir = tempfile::tempdir().unwrap();
        let osrel = b"ID=lkb\nPRETTY_NAME=\"lkb test\"\n".to_vec();
        let cmdline = b"console=ttyS0 quiet".to_vec();
        let linux = pattern(1_234_567, 1);
        let initrd = pattern(700_001, 2);
        let ucode = pattern(3000, 3);
        let stub_data = real_stub();
        let Data::File {
            path: stub_path, ..
        } = &stub_data
        else {
            unreachable!("the real stub is a file")
        };
        let stub = std::fs::read(stub_path).unwrap();
        let before = objdump_sections(stub_path);
        let plan = plan(Uki {
            stub: stub_data.clone(),
            osrel: osrel.clone(),
            cmdline: cmdline.clone(),
            uname: Some(b"6.1.0-test".to_vec()),
            linux: file(dir.path(), "linux", &linux),
            initrd: file(dir.path(), "initrd", &initrd),
            ucode: Some(file(dir.path(), "ucode", &ucode)),
        })
        .unwrap();
        let path = dir.path().join("uki.efi");
        let image = write_file(&plan, &path);
        assert_eq!(image.len() as u64, plan.size());

        let after = objdump_sections(&path);
        assert_eq!(before.len(), 8, "{before:?}");
        // The stub's sections keep their addresses, sizes, offsets and bytes.
        assert_eq!(after[..8], before[..]);
        assert_eq!(image[0x400..0x11400], stub[0x400..0x11400]);

        let expected: [(&str, &[u8]); 6] = [
            (".osrel", &osrel),
            (".cmdline", &cmdline),
            (".uname", b"6.1.0-test"),
            (".initrd", &initrd),
            (".ucode", &ucode),
            (".linux", &linux),
        ];
        let added = &after[8..];
        assert_eq!(added.len(), expected.len(), "{after:?}");
        // The stub's image ends at 0x19300 (its last section, .sdmagic, is mapped at 0x19100
        // with 0x200 bytes of raw data), so the first new section goes at the next multiple of
        // the 0x200 section alignment, 0x19400. Its data ends at 0x11400; the symbol table
        // after it is dropped.
        let (mut vma, mut offset) = (0x19400, 0x11400);
        for (section, (name, content)) in added.iter().zip(expected) {
            assert_eq!(section.name, name);
            assert_eq!(section.size, content.len() as u64, "{name}");
            assert_eq!((section.vma, section.offset), (vma, offset), "{name}");
            let at = section.offset as usize;
            assert!(
                image[at..at + content.len()] == *content,
                "{name} reads back"
            );
            vma = (section.vma + section.size).div_ceil(0x200) * 0x200;
            offset += (section.size).div_ceil(0x200) * 0x200;
        }
        assert_eq!(offset, plan.size());
        assert_eq!(objdump_field(&path, "SizeOfImage"), vma);
        assert_eq!(objdump_field(&path, "SizeOfHeaders"), 0x400);
        assert_eq!(objdump_field(&path, "CheckSum"), 0);
        let planned: Vec<(&str, u32, u64, u64)> = plan
            .sections()
            .map(|s| (s.name, s.virtual_address, s.file_offset, s.size))
            .collect();
        let dumped: Vec<(&str, u32, u64, u64)> = added
            .iter()
            .map(|s| (s.name.as_str(), s.vma as u32, s.offset, s.size))
            .collect();
        assert_eq!(planned, dumped);

        // The same inputs give the same bytes, into a file or into memory.
        assert!(write_file(&plan, &dir.path().join("again.efi")) == image);
        let mut memory = Vec::new();
        plan.write(&mut memory).unwrap();
        assert!(memory == image);
    }

    #[test]
    fn the_kernel_release_comes_from_the_bzimage_header() {
        let mut fake = vec![0u8; 0x400];
        fake[0x202..0x206].copy_from_slice(b"HdrS");
        put_u16(&mut fake, 0x20e, 0x100);
        let version = b"5.10.7-lkb (builder@host) #3 SMP\0";
        fake[0x300..0x300 + version.len()].copy_from_slice(version);
        assert_eq!(bzimage_release(&fake).as_deref(), Some("5.10.7-lkb"));
        fake[0x300] = b'X';
        assert_eq!(bzimage_release(&fake), None, "upper case is not a release");
        fake[0x202] = b'h';
        assert_eq!(bzimage_release(&fake), None, "no boot protocol header");
        assert_eq!(bzimage_release(&pattern(0x1000, 8)), None);
    }

    #[test]
    fn empty_optional_sections_are_left_out() {
        let plan = plan(Uki {
            stub: real_stub(),
            osrel: b"ID=lkb\n".to_vec(),
            cmdline: Vec::new(),
            uname: None,
            linux: Data::Bytes(pattern(5000, 4)),
            initrd: Data::Bytes(Vec::new()),
            ucode: Some(Data::Bytes(Vec::new())),
        })
        .unwrap();
        let names: Vec<&str> = plan.sections().map(|s| s.name).collect();
        assert_eq!(names, [".osrel", ".linux"]);
    }

    /// A PE32+ EFI application with two sections whose section table leaves room for only two
    /// more headers in its 0x200 bytes of headers, and a COFF symbol table after its data.
    fn tight_stub(first_address: u32) -> Vec<u8> {
        let mut pe = vec![0u8; 0x200];
        pe[..2].copy_from_slice(b"MZ");
        put_u32(&mut pe, 0x3c, 0x40);
        pe[0x40..0x44].copy_from_slice(b"PE\0\0");
        let coff = 0x44;
        put_u16(&mut pe, coff, MACHINE_X86_64);
        put_u16(&mut pe, coff + 2, 2);
        put_u32(&mut pe, coff + 8, 0x600); // symbol table
        put_u32(&mut pe, coff + 12, 1);
        put_u16(&mut pe, coff + 16, 0xf0);
        put_u16(&mut pe, coff + 18, 0x0206);
        let opt = coff + 20;
        put_u16(&mut pe, opt, PE32_PLUS);
        put_u32(&mut pe, opt + OPT_SIZE_OF_CODE, 0x200);
        put_u32(&mut pe, opt + OPT_SIZE_OF_INITIALIZED_DATA, 0x200);
        put_u32(&mut pe, opt + 16, first_address); // entry point
        put_u32(&mut pe, opt + OPT_SECTION_ALIGNMENT, 0x200);
        put_u32(&mut pe, opt + OPT_FILE_ALIGNMENT, 0x200);
        put_u32(&mut pe, opt + OPT_SIZE_OF_IMAGE, first_address + 0x400);
        put_u32(&mut pe, opt + OPT_SIZE_OF_HEADERS, 0x200);
        put_u16(&mut pe, opt + OPT_SUBSYSTEM, SUBSYSTEM_EFI_APPLICATION);
        put_u32(&mut pe, opt + OPT_NUMBER_OF_RVA_AND_SIZES, 16);
        let table = opt + 0xf0;
        for (i, (name, flags)) in [(b".text", 0x6000_0020u32), (b".data", 0xc000_0040)]
            .into_iter()
            .enumerate()
        {
            let at = table + SECTION_HEADER * i;
            pe[at..at + 5].copy_from_slice(name);
            put_u32(&mut pe, at + 8, 0x100);
            put_u32(&mut pe, at + 12, first_address + 0x200 * i as u32);
            put_u32(&mut pe, at + 16, 0x200);
            put_u32(&mut pe, at + 20, 0x200 + 0x200 * i as u32);
            put_u32(&mut pe, at + 36, flags);
        }
        pe.extend(pattern(0x400, 9)); // .text and .data
        pe.extend(pattern(18 + 4, 7)); // one symbol and a string table length
        pe
    }

    #[test]
    fn headers_grow_when_the_stub_has_no_room_for_the_new_section_headers() {
        let dir = tempfile::tempdir().unwrap();
        let stub = tight_stub(0x1000);
        let plan = plan(Uki {
            stub: Data::Bytes(stub.clone()),
            osrel: b"ID=lkb\n".to_vec(),
            cmdline: b"console=ttyS0".to_vec(),
            uname: None,
            linux: Data::Bytes(pattern(0x321, 5)),
            initrd: Data::Bytes(pattern(0x123, 6)),
            ucode: None,
        })
        .unwrap();
        let path = dir.path().join("uki.efi");
        let image = write_file(&plan, &path);
        let sections = objdump_sections(&path);
        let summary: Vec<(&str, u64, u64, u64)> = sections
            .iter()
            .map(|s| (s.name.as_str(), s.size, s.vma, s.offset))
            .collect();
        // Four new headers need 0x198 + 4 * 40 = 0x238 bytes: the headers grow to 0x400 and
        // the stub's data moves back by 0x200. The symbol table is gone.
        assert_eq!(
            summary,
            [
                (".text", 0x100, 0x1000, 0x400),
                (".data", 0x100, 0x1200, 0x600),
                (".osrel", 7, 0x1400, 0x800),
                (".cmdline", 13, 0x1600, 0xa00),
                (".initrd", 0x123, 0x1800, 0xc00),
                (".linux", 0x321, 0x1a00, 0xe00),
            ]
        );
        assert_eq!(objdump_field(&path, "SizeOfHeaders"), 0x400);
        assert_eq!(objdump_field(&path, "SizeOfImage"), 0x1e00);
        assert_eq!(plan.size(), 0x1200);
        assert!(image[0x400..0x800] == stub[0x200..0x600]);
        assert_eq!(
            u32_at(&image, 0x44 + 8).unwrap(),
            0,
            "no symbol table pointer"
        );
        assert_eq!(u32_at(&image, 0x44 + 12).unwrap(), 0, "no symbols");
        assert!(image[0xe00..0xe00 + 0x321] == pattern(0x321, 5)[..]);
    }

    fn plan_with_stub(stub: Vec<u8>) -> Result<UkiPlan, DiskError> {
        plan(Uki {
            stub: Data::Bytes(stub),
            osrel: b"ID=lkb\n".to_vec(),
            cmdline: b"console=ttyS0".to_vec(),
            uname: None,
            linux: Data::Bytes(vec![1; 100]),
            initrd: Data::Bytes(vec![2; 100]),
            ucode: None,
        })
    }

    fn refusal(stub: Vec<u8>) -> String {
        match plan_with_stub(stub) {
            Err(DiskError::Invalid(message)) => message,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn stubs_that_are_not_x86_64_efi_applications_are_refused() {
        let good = tight_stub(0x1000);
        plan_with_stub(good.clone()).unwrap();
        let opt = 0x44 + 20;

        let mut elf = good.clone();
        elf[..4].copy_from_slice(b"\x7fELF");
        assert!(refusal(elf).contains("no MZ signature"));

        let mut arm = good.clone();
        put_u16(&mut arm, 0x44, 0xaa64);
        assert!(refusal(arm).contains("machine 0xaa64, not x86-64"));

        let mut pe32 = good.clone();
        put_u16(&mut pe32, opt, 0x10b);
        assert!(refusal(pe32).contains("not PE32+"));

        let mut console = good.clone();
        put_u16(&mut console, opt + OPT_SUBSYSTEM, 3);
        assert!(refusal(console).contains("subsystem 3, not an EFI application"));

        let mut signed = good.clone();
        put_u32(
            &mut signed,
            opt + OPT_DATA_DIRECTORIES + 8 * DIR_SECURITY,
            0x800,
        );
        put_u32(
            &mut signed,
            opt + OPT_DATA_DIRECTORIES + 8 * DIR_SECURITY + 4,
            0x10,
        );
        assert!(refusal(signed).contains("signed"));

        let mut huge_headers = good.clone();
        put_u32(&mut huge_headers, opt + OPT_SIZE_OF_HEADERS, 0x10000);
        assert!(refusal(huge_headers).contains("SizeOfHeaders 0x10000 is past the end"));

        let truncated = good[..0x300].to_vec();
        assert!(refusal(truncated).contains("after the end of the file"));

        // Sections mapped right after 0x200 bytes of headers leave no room to grow them.
        let crowded = tight_stub(0x200);
        assert!(refusal(crowded).contains("no room for 4 more section headers"));

        let mut empty_kernel = plan(Uki {
            stub: Data::Bytes(good),
            osrel: Vec::new(),
            cmdline: Vec::new(),
            uname: None,
            linux: Data::Bytes(Vec::new()),
            initrd: Data::Bytes(Vec::new()),
            ucode: None,
        });
        assert!(matches!(&mut empty_kernel, Err(DiskError::Invalid(m)) if m.contains(".linux")));
    }
}
