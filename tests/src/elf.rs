//! The shared libraries a dynamically linked x86-64 program needs, read from its ELF headers:
//! `PT_INTERP` (the dynamic loader) and the `DT_NEEDED` entries of `PT_DYNAMIC`, followed
//! transitively through the libraries found in an unpacked Debian tree. The example images use
//! it to ship Debian's `runc`, `jq` and `dropbear` with exactly the libraries they load, and to
//! fail the fixture build naming the library when a package is missing from the list.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail, ensure};

/// Where Debian's amd64 packages put shared libraries, relative to the tree root.
pub const LIBRARY_DIRS: &[&str] = &["lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu"];

const PT_LOAD: u32 = 1;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// What one ELF file asks of the dynamic loader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dynamic {
    /// `PT_INTERP`, e.g. `/lib64/ld-linux-x86-64.so.2`; `None` for libraries and static
    /// programs.
    pub interpreter: Option<String>,
    /// `DT_NEEDED` sonames, in file order.
    pub needed: Vec<String>,
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn bytes(&self, at: u64, len: usize) -> anyhow::Result<&[u8]> {
        let start = usize::try_from(at)?;
        self.0
            .get(start..start.checked_add(len).context("offset overflow")?)
            .with_context(|| format!("truncated ELF: {len} bytes at {at}"))
    }
    fn u16(&self, at: u64) -> anyhow::Result<u16> {
        Ok(u16::from_le_bytes(self.bytes(at, 2)?.try_into()?))
    }
    fn u32(&self, at: u64) -> anyhow::Result<u32> {
        Ok(u32::from_le_bytes(self.bytes(at, 4)?.try_into()?))
    }
    fn u64(&self, at: u64) -> anyhow::Result<u64> {
        Ok(u64::from_le_bytes(self.bytes(at, 8)?.try_into()?))
    }
    /// The NUL-terminated string at `at`.
    fn c_string(&self, at: u64) -> anyhow::Result<String> {
        let rest = self
            .0
            .get(usize::try_from(at)?..)
            .with_context(|| format!("truncated ELF: string at {at}"))?;
        let end = rest
            .iter()
            .position(|b| *b == 0)
            .context("unterminated string in ELF")?;
        Ok(String::from_utf8_lossy(&rest[..end]).into_owned())
    }
}

struct Segment {
    kind: u32,
    offset: u64,
    vaddr: u64,
    filesz: u64,
}

/// Reads `PT_INTERP` and `DT_NEEDED` from a 64-bit little-endian ELF file.
pub fn parse(data: &[u8]) -> anyhow::Result<Dynamic> {
    ensure!(data.starts_with(b"\x7fELF"), "not an ELF file");
    let elf = Reader(data);
    ensure!(
        elf.bytes(4, 2)? == [2, 1],
        "not a 64-bit little-endian ELF file"
    );
    let phoff = elf.u64(0x20)?;
    let phentsize = u64::from(elf.u16(0x36)?);
    let phnum = u64::from(elf.u16(0x38)?);
    let mut segments = Vec::new();
    for index in 0..phnum {
        let at = phoff + index * phentsize;
        segments.push(Segment {
            kind: elf.u32(at)?,
            offset: elf.u64(at + 8)?,
            vaddr: elf.u64(at + 16)?,
            filesz: elf.u64(at + 32)?,
        });
    }
    let mut out = Dynamic::default();
    if let Some(interp) = segments.iter().find(|s| s.kind == PT_INTERP) {
        out.interpreter = Some(elf.c_string(interp.offset)?);
    }
    let Some(dynamic) = segments.iter().find(|s| s.kind == PT_DYNAMIC) else {
        return Ok(out);
    };
    let mut strtab = None;
    let mut needed_offsets = Vec::new();
    for index in 0..dynamic.filesz / 16 {
        let at = dynamic.offset + index * 16;
        let (tag, value) = (elf.u64(at)?, elf.u64(at + 8)?);
        match tag {
            DT_NULL => break,
            DT_NEEDED => needed_offsets.push(value),
            DT_STRTAB => strtab = Some(value),
            _ => {}
        }
    }
    if needed_offsets.is_empty() {
        return Ok(out);
    }
    let strtab = strtab.context("DT_NEEDED without DT_STRTAB")?;
    // DT_STRTAB is an address: map it to a file offset through the PT_LOAD that holds it.
    let load = segments
        .iter()
        .find(|s| s.kind == PT_LOAD && s.vaddr <= strtab && strtab < s.vaddr + s.filesz)
        .context("DT_STRTAB outside every PT_LOAD")?;
    let strtab = strtab - load.vaddr + load.offset;
    for name in needed_offsets {
        out.needed.push(elf.c_string(strtab + name)?);
    }
    Ok(out)
}

/// `relative` below `root`, following symlinks inside `root` (absolute targets are taken
/// relative to `root`, not to the host's `/`).
pub fn resolve_in(root: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    let mut path = root.join(relative.trim_start_matches('/'));
    for _ in 0..16 {
        let meta = fs_err::symlink_metadata(&path)?;
        if !meta.file_type().is_symlink() {
            return Ok(path);
        }
        let target = fs_err::read_link(&path)?;
        path = match target.strip_prefix("/") {
            Ok(inside) => root.join(inside),
            Err(_) => path
                .parent()
                .context("a symlink has a parent directory")?
                .join(target),
        };
    }
    bail!(
        "too many symlinks resolving {relative} below {}",
        root.display()
    )
}

/// Every library `programs` (paths relative to `root`) load, transitively: a map from the
/// path the loader looks for (`lib/x86_64-linux-gnu/<soname>`, and the interpreter's own path
/// such as `lib64/ld-linux-x86-64.so.2`) to the real file below `root`. Fails naming the
/// soname when no [`LIBRARY_DIRS`] entry holds it.
pub fn library_closure(
    root: &Path,
    programs: &[&str],
) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let mut found = BTreeMap::new();
    let mut queue: Vec<(String, PathBuf)> = Vec::new();
    for program in programs {
        let path = resolve_in(root, program)?;
        queue.push(((*program).to_owned(), path));
    }
    while let Some((name, path)) = queue.pop() {
        let data = fs_err::read(&path)?;
        let dynamic = parse(&data).with_context(|| format!("reading {name}"))?;
        if let Some(interpreter) = dynamic.interpreter {
            let relative = interpreter.trim_start_matches('/').to_owned();
            if let std::collections::btree_map::Entry::Vacant(slot) = found.entry(relative) {
                let real = resolve_in(root, slot.key())
                    .with_context(|| format!("{name} wants the loader {interpreter}"))?;
                slot.insert(real);
            }
        }
        for soname in dynamic.needed {
            let relative = format!("{}/{soname}", LIBRARY_DIRS[0]);
            if found.contains_key(&relative) {
                continue;
            }
            let real = LIBRARY_DIRS
                .iter()
                .find_map(|dir| resolve_in(root, &format!("{dir}/{soname}")).ok())
                .with_context(|| {
                    format!(
                        "{name} needs {soname}, which no unpacked package holds (in {})",
                        LIBRARY_DIRS.join(" or ")
                    )
                })?;
            found.insert(relative.clone(), real.clone());
            queue.push((soname, real));
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with PT_INTERP, one PT_LOAD and a PT_DYNAMIC naming two libraries.
    fn tiny_elf() -> Vec<u8> {
        let mut elf = vec![0u8; 0x400];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        let put16 = |elf: &mut Vec<u8>, at: usize, v: u16| {
            elf[at..at + 2].copy_from_slice(&v.to_le_bytes())
        };
        let put32 = |elf: &mut Vec<u8>, at: usize, v: u32| {
            elf[at..at + 4].copy_from_slice(&v.to_le_bytes())
        };
        let put64 = |elf: &mut Vec<u8>, at: usize, v: u64| {
            elf[at..at + 8].copy_from_slice(&v.to_le_bytes())
        };
        put64(&mut elf, 0x20, 0x40);
        put16(&mut elf, 0x36, 56);
        put16(&mut elf, 0x38, 3);
        // PT_INTERP at file 0x200.
        put32(&mut elf, 0x40, PT_INTERP);
        put64(&mut elf, 0x48, 0x200);
        elf[0x200..0x20c].copy_from_slice(b"/lib64/ld.so");
        // PT_LOAD: file 0 at address 0x10000, whole file.
        put32(&mut elf, 0x78, PT_LOAD);
        put64(&mut elf, 0x80, 0);
        put64(&mut elf, 0x88, 0x10000);
        put64(&mut elf, 0x98, 0x400);
        // PT_DYNAMIC at file 0x300: NEEDED 1, NEEDED 7, STRTAB 0x10280, NULL.
        put32(&mut elf, 0xb0, PT_DYNAMIC);
        put64(&mut elf, 0xb8, 0x300);
        put64(&mut elf, 0xd0, 0x80);
        for (i, (tag, value)) in [(1, 1), (1, 9), (5, 0x10280), (0, 0)].iter().enumerate() {
            put64(&mut elf, 0x300 + 16 * i, *tag);
            put64(&mut elf, 0x308 + 16 * i, *value);
        }
        elf[0x280..0x28e].copy_from_slice(b"\0libA.so\0libB\0");
        elf
    }

    #[test]
    fn reads_interpreter_and_needed() {
        let dynamic = parse(&tiny_elf()).unwrap();
        assert_eq!(dynamic.interpreter.as_deref(), Some("/lib64/ld.so"));
        assert_eq!(dynamic.needed, ["libA.so", "libB"]);
        assert!(parse(b"#!/bin/sh\n").is_err());
        assert!(parse(&tiny_elf()[..0x90]).is_err());
    }

    #[test]
    fn closure_follows_links_inside_the_tree_and_names_what_is_missing() {
        let root = tempfile::tempdir().unwrap();
        let at = |p: &str| root.path().join(p);
        for dir in ["bin", "lib64", "lib/x86_64-linux-gnu"] {
            fs_err::create_dir_all(at(dir)).unwrap();
        }
        fs_err::write(at("bin/prog"), tiny_elf()).unwrap();
        // The loader is an absolute link, as in Debian's libc6: it must resolve in the tree.
        fs_err::write(at("lib/x86_64-linux-gnu/ld.so"), b"\x7fELF\x02\x01").unwrap();
        std::os::unix::fs::symlink("/lib/x86_64-linux-gnu/ld.so", at("lib64/ld.so")).unwrap();
        let empty_elf = {
            let mut e = vec![0u8; 64];
            e[..6].copy_from_slice(b"\x7fELF\x02\x01");
            e
        };
        fs_err::write(at("lib/x86_64-linux-gnu/libA.so"), &empty_elf).unwrap();
        let missing = library_closure(root.path(), &["bin/prog"]).unwrap_err();
        assert!(format!("{missing:#}").contains("needs libB"), "{missing:#}");
        fs_err::write(at("lib/x86_64-linux-gnu/libB.real"), &empty_elf).unwrap();
        std::os::unix::fs::symlink("libB.real", at("lib/x86_64-linux-gnu/libB")).unwrap();
        let closure = library_closure(root.path(), &["bin/prog"]).unwrap();
        let keys: Vec<&str> = closure.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            [
                "lib/x86_64-linux-gnu/libA.so",
                "lib/x86_64-linux-gnu/libB",
                "lib64/ld.so"
            ]
        );
        assert_eq!(
            closure["lib64/ld.so"],
            at("lib/x86_64-linux-gnu/ld.so"),
            "resolved inside the tree"
        );
        assert_eq!(
            closure["lib/x86_64-linux-gnu/libB"],
            at("lib/x86_64-linux-gnu/libB.real")
        );
    }
}
