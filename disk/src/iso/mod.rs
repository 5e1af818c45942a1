//! ISO 9660 images with Rock Ridge, optional Joliet, El Torito boot entries and an optional
//! isohybrid MBR: LinuxKit's `iso-bios`, `iso-efi`, `iso-efi-initrd` and `kernel+iso` outputs.
//!
//! # Input
//!
//! The tree is a list of [`FsEntry`], one per path (`"etc/passwd"`; `""` is the root). Order
//! does not matter: the image depends only on the set of entries. Directories missing from the
//! list are made with mode 0755, owner 0:0 and the volume timestamp. Entries that share a
//! [`FsEntry::link_group`] are hard links: they must all be files with the same [`Data`],
//! and they share one extent and report the group size as link count.
//!
//! # What is written
//!
//! - Sectors 0–15: zeros, or the isohybrid MBR ([`HybridMbr`]).
//! - Primary volume descriptor, El Torito boot record, Joliet supplementary volume descriptor,
//!   terminator; then the boot catalog, path tables (L and M for each tree), the ISO 9660
//!   directories, the Rock Ridge continuation areas, the Joliet directories, and the file
//!   contents (boot images first, so BIOS code finds them near the start of the medium).
//! - ISO 9660 names are interchange level 2 (upper case, at most 30 characters plus `;1`);
//!   the real names, modes, owners, link counts, serial numbers, times, device numbers and
//!   symlink targets are in Rock Ridge 1.12 entries (`SP`, `ER`, `CE`, `PX`, `TF`, `NM`, `SL`,
//!   `PN`), long ones spilling into continuation areas.
//! - Joliet names are UCS-2 up to 103 characters (as `mkisofs -joliet-long`). The Joliet tree
//!   holds directories and regular files only (symlinks, devices, fifos and sockets have no
//!   Joliet form), sharing the files' extents.
//! - Directories deeper than the 8 levels of ECMA-119 are written as they are, without Rock
//!   Ridge relocation (`RE`/`CL`/`PL`): Linux, libisofs and the BSDs read them, and relocation
//!   would make the tree differ for readers without Rock Ridge anyway.
//! - Files of 4 GiB or more are refused: they need multi-extent records, which are not written.
//!
//! # Readers
//!
//! Checked against libisofs (xorriso/osirrox), genisoimage's isoinfo, GRUB's iso9660 driver and
//! Linux 6.1's isofs (in QEMU). Known reader limits, not worked around:
//! - Linux cuts Rock Ridge names longer than 253 bytes (libisofs reads all 255).
//! - Linux gives hard links distinct inode numbers (it ignores the `PX` serial number); they
//!   still share the extent and report the group's link count.
//! - libisofs refuses symlink targets over 1024 bytes; Linux reads up to a page.
//! - Device numbers: see `susp::pn` (majors ≥ 4096 or minors ≥ 256 are written as Linux reads
//!   them, which libisofs misreads).
//!
//! Nothing comes from the clock or the environment: the volume id and timestamp are options,
//! file times come from the entries, and names and layout from sorted input.

mod names;
mod susp;

use std::collections::{HashMap, VecDeque};

use crate::{Data, DiskError, FsEntry, FsKind, Sink, write_data};
use susp::Su;

const SECTOR: usize = 2048;
const SECTOR64: u64 = SECTOR as u64;
/// Sectors before the first volume descriptor.
const SYSTEM_AREA: u32 = 16;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsoOptions {
    /// Volume identifier, printable ASCII, at most 32 bytes (LinuxKit uses `LinuxKit` for
    /// BIOS images and xorriso's default `ISOIMAGE` for EFI ones).
    pub volume_id: String,
    /// Volume creation/modification time and the time of directories made for missing parents.
    pub timestamp: i64,
    /// Write a Joliet tree as well (LinuxKit's `iso-bios` does, its EFI images do not).
    pub joliet: bool,
    pub boot: Option<ElTorito>,
    /// Make the image bootable as a hard disk too (needs a BIOS boot entry with an isolinux
    /// image).
    pub hybrid: Option<HybridMbr>,
}

/// El Torito boot entries. With both, BIOS is the default entry and EFI a second section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElTorito {
    /// Path of the boot catalog as a file in the tree (`isolinux/boot.cat`), or `None` to hide
    /// it (as `xorriso -hide boot.catalog`).
    pub catalog: Option<String>,
    /// Platform 0 (x86 BIOS) entry.
    pub bios: Option<BootEntry>,
    /// Platform 0xEF (UEFI) entry; its image is a FAT file system holding `EFI/BOOT/BOOT*.EFI`.
    pub efi: Option<BootEntry>,
}

/// One no-emulation boot entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootEntry {
    pub image: BootImage,
    /// 512-byte sectors the firmware loads (4 for isolinux). `None`: the whole image, or 0
    /// ("to the end") when that does not fit 16 bits, as xorriso does for EFI images.
    pub load_sectors: Option<u16>,
    /// Patch a boot information table (ECMA-119 locations and checksum, bytes 8–63) into the
    /// image, as isolinux needs (`-boot-info-table`).
    pub boot_info_table: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BootImage {
    /// A regular file of the tree (`isolinux/isolinux.bin`).
    Path(String),
    /// Content stored in the image but not visible in any directory (as `xorriso -hide`).
    Hidden(Data),
}

/// An isohybrid MBR, as syslinux's `isohybrid` writes it: the MBR code (`isohdpfx.bin`, first
/// 432 bytes used), the isolinux image's address in 512-byte sectors, a disk signature, and
/// one active partition of type 0x17 from sector 0 over the whole image, padded to whole
/// cylinders of 64 heads × 32 sectors (1 MiB).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HybridMbr {
    pub code: Vec<u8>,
    pub disk_id: u32,
}

const MBR_CODE: usize = 432;
const HYBRID_HEADS: u64 = 64;
const HYBRID_SECTORS: u64 = 32;
const CYLINDER: u64 = HYBRID_HEADS * HYBRID_SECTORS * 512;
/// isolinux.bin's mark of hybrid support, at offset 0x40.
const ISOLINUX_HYBRID_MAGIC: [u8; 4] = [0xfb, 0xc0, 0x78, 0x70];

/// A laid-out image: every sector's place is known, nothing has been read.
#[derive(Debug)]
pub struct IsoPlan {
    nodes: Vec<Node>,
    /// Directories in path table order (level, then parent, then identifier).
    dirs: Vec<Dir>,
    /// Joliet directories (indices into `dirs`) in Joliet path table order.
    joliet_order: Vec<usize>,
    extents: Vec<Extent>,
    /// Continuation areas in block order: byte position in the image and contents.
    ce_area: Vec<(u64, Vec<u8>)>,
    volume_id: String,
    timestamp: i64,
    joliet: bool,
    boot: Option<BootPlan>,
    hybrid: Option<HybridMbr>,
    layout: Layout,
}

#[derive(Debug)]
struct Node {
    name: String,
    parent: usize,
    /// `st_mode`: file type and permission bits.
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    kind: Kind,
    ino: u32,
    nlink: u32,
    iso_id: Vec<u8>,
    joliet_id: Option<Vec<u8>>,
    /// System use of this node's record in its parent.
    su: Su,
}

#[derive(Debug)]
enum Kind {
    Dir(usize),
    File(usize),
    Symlink(String),
    Device { major: u32, minor: u32 },
    Other,
}

#[derive(Debug)]
struct Dir {
    node: usize,
    /// Children in ISO 9660 record order.
    children: Vec<usize>,
    /// Joliet members (directories and files) in Joliet record order.
    joliet_children: Vec<usize>,
    dot: Su,
    dotdot: Su,
    lba: u32,
    sectors: u32,
    joliet_lba: u32,
    joliet_sectors: u32,
    /// Numbers in the path tables (1-based).
    number: u16,
    joliet_number: u16,
}

#[derive(Debug)]
struct Extent {
    source: Source,
    lba: u32,
    len: u32,
}

#[derive(Debug)]
enum Source {
    Data(Data),
    Catalog,
}

#[derive(Debug)]
struct BootPlan {
    catalog_lba: u32,
    bios: Option<PlannedEntry>,
    efi: Option<PlannedEntry>,
}

#[derive(Debug)]
struct PlannedEntry {
    extent: usize,
    load_sectors: u16,
    boot_info_table: bool,
}

#[derive(Debug, Default)]
struct Layout {
    joliet_vd: u32,
    terminator: u32,
    path_table_size: u32,
    l_table: u32,
    m_table: u32,
    joliet_path_table_size: u32,
    joliet_l_table: u32,
    joliet_m_table: u32,
    /// Sectors of the ISO 9660 volume.
    volume_sectors: u32,
    /// Bytes of the whole image (hybrid images are padded past the volume).
    image_size: u64,
}

fn invalid(msg: impl Into<String>) -> DiskError {
    DiskError::Invalid(msg.into())
}

/// Lays out an image of `entries`. Reads nothing: sizes come from [`Data::len`].
pub fn plan(entries: Vec<FsEntry>, options: IsoOptions) -> Result<IsoPlan, DiskError> {
    let IsoOptions {
        volume_id,
        timestamp,
        joliet,
        boot,
        hybrid,
    } = options;
    if volume_id.len() > 32 || !volume_id.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(invalid(format!(
            "ISO volume id {volume_id:?}: at most 32 printable ASCII characters"
        )));
    }
    if let Some(h) = &hybrid {
        if h.code.len() < MBR_CODE {
            return Err(invalid(format!(
                "isohybrid MBR code is {} bytes, needs {MBR_CODE}",
                h.code.len()
            )));
        }
        if boot.as_ref().and_then(|b| b.bios.as_ref()).is_none() {
            return Err(invalid("an isohybrid MBR needs a BIOS boot entry"));
        }
    }

    let mut tree = Tree::build(entries, timestamp)?;
    if let Some(path) = boot.as_ref().and_then(|b| b.catalog.as_deref()) {
        tree.add_catalog(path, timestamp)?;
    }
    if boot
        .as_ref()
        .is_some_and(|b| b.bios.is_none() && b.efi.is_none())
    {
        return Err(invalid("ISO: El Torito needs a BIOS or an EFI boot entry"));
    }
    let boot = boot.map(|b| tree.plan_boot(b)).transpose()?;
    let Tree {
        mut nodes,
        children,
        mut extents,
        ..
    } = tree;

    let (mut dirs, joliet_order) = order_directories(&mut nodes, children, joliet)?;
    number_inodes(&mut nodes, &dirs);
    rock_ridge(&mut nodes, &mut dirs);

    let mut layout = Layout::default();
    let mut next = SYSTEM_AREA + 1;
    if boot.is_some() {
        next += 1;
    }
    if joliet {
        layout.joliet_vd = next;
        next += 1;
    }
    layout.terminator = next;
    next += 1;
    let boot = boot.map(|mut b| {
        b.catalog_lba = next;
        next += 1;
        b
    });
    let sectors = |bytes: u64| u32::try_from(bytes.div_ceil(SECTOR64)).expect("small");
    layout.path_table_size = path_table_size(dirs.iter().map(|d| &nodes[d.node].iso_id));
    layout.l_table = next;
    next += sectors(layout.path_table_size.into());
    layout.m_table = next;
    next += sectors(layout.path_table_size.into());
    if joliet {
        layout.joliet_path_table_size = path_table_size(
            joliet_order
                .iter()
                .map(|&d| nodes[dirs[d].node].joliet_id.as_ref().expect("in Joliet")),
        );
        layout.joliet_l_table = next;
        next += sectors(layout.joliet_path_table_size.into());
        layout.joliet_m_table = next;
        next += sectors(layout.joliet_path_table_size.into());
    }

    for d in &mut dirs {
        let lens = [record_len(1, &d.dot), record_len(1, &d.dotdot)]
            .into_iter()
            .chain(
                d.children
                    .iter()
                    .map(|&c| record_len(nodes[c].iso_id.len(), &nodes[c].su)),
            );
        let s = pack(lens).1;
        d.lba = next;
        d.sectors = s;
        next = next
            .checked_add(s)
            .ok_or_else(|| invalid("ISO image too large"))?;
    }

    let ce_area = place_continuations(&mut nodes, &mut dirs, &mut next);

    if joliet {
        for &i in &joliet_order {
            let d = &dirs[i];
            let none = Su::default();
            let lens = [34, 34]
                .into_iter()
                .chain(d.joliet_children.iter().map(|&c| {
                    record_len(nodes[c].joliet_id.as_ref().expect("in Joliet").len(), &none)
                }));
            let s = pack(lens).1;
            dirs[i].joliet_lba = next;
            dirs[i].joliet_sectors = s;
            next += s;
        }
    }

    let mut order: Vec<usize> = Vec::with_capacity(extents.len());
    if let Some(b) = &boot {
        order.extend(b.bios.iter().chain(&b.efi).map(|e| e.extent));
    }
    let boot_extents = order.clone();
    order.extend((0..extents.len()).filter(|i| !boot_extents.contains(i)));
    for i in order {
        let e = &mut extents[i];
        match e.source {
            Source::Catalog => {
                e.lba = boot.as_ref().map_or(0, |b| b.catalog_lba);
            }
            Source::Data(_) if e.len == 0 => e.lba = 0,
            Source::Data(_) => {
                e.lba = next;
                next = u32::try_from(u64::from(e.len).div_ceil(SECTOR64))
                    .ok()
                    .and_then(|s| next.checked_add(s))
                    .ok_or_else(|| invalid("ISO image too large: more than 2^32 sectors"))?;
            }
        }
    }
    layout.volume_sectors = next;
    layout.image_size = u64::from(next) * SECTOR64;
    if hybrid.is_some() {
        layout.image_size = layout.image_size.div_ceil(CYLINDER) * CYLINDER;
    }

    Ok(IsoPlan {
        nodes,
        dirs,
        joliet_order,
        extents,
        ce_area,
        volume_id,
        timestamp,
        joliet,
        boot,
        hybrid,
        layout,
    })
}

/// The tree as first built: nodes in path order, children unsorted.
struct Tree {
    nodes: Vec<Node>,
    children: Vec<Vec<usize>>,
    by_path: HashMap<String, usize>,
    extents: Vec<Extent>,
}

impl Tree {
    fn build(entries: Vec<FsEntry>, timestamp: i64) -> Result<Tree, DiskError> {
        // Missing parents (and the root), as directories with default attributes.
        let by_path_entries = crate::fs_tree::complete(entries, timestamp, "ISO")?;

        let mut tree = Tree {
            nodes: Vec::with_capacity(by_path_entries.len()),
            children: Vec::with_capacity(by_path_entries.len()),
            by_path: HashMap::with_capacity(by_path_entries.len()),
            extents: Vec::new(),
        };
        let mut groups: HashMap<u32, (usize, String)> = HashMap::new();
        // BTreeMap order puts every parent (a prefix) before its children.
        for (path, e) in by_path_entries {
            let (parent, name) = match path.rfind('/') {
                Some(slash) => (&path[..slash], &path[slash + 1..]),
                None if path.is_empty() => ("", ""),
                None => ("", path.as_str()),
            };
            let parent = if path.is_empty() {
                0
            } else {
                let p = tree.by_path[parent];
                if !matches!(tree.nodes[p].kind, Kind::Dir(_)) {
                    return Err(invalid(format!(
                        "ISO: {path:?} is inside {parent:?}, which is not a directory"
                    )));
                }
                p
            };
            if path.is_empty() && !matches!(e.kind, FsKind::Dir) {
                return Err(invalid("ISO: the root entry (\"\") must be a directory"));
            }
            let (type_bits, kind) = match e.kind {
                FsKind::Dir => (susp::S_IFDIR, Kind::Dir(0)),
                FsKind::File(data) => {
                    let len = u32::try_from(data.len()).map_err(|_| {
                        invalid(format!(
                            "ISO: {path:?} is {} bytes; files of 4 GiB or more need \
                             multi-extent records, which this writer does not produce",
                            data.len()
                        ))
                    })?;
                    let extent = match e.link_group.and_then(|g| groups.get(&g)) {
                        Some((extent, first)) => {
                            match &tree.extents[*extent].source {
                                Source::Data(d) if *d == data => {}
                                _ => {
                                    return Err(invalid(format!(
                                        "ISO: {path:?} and {first:?} are hard links \
                                         (link group {}) but have different contents",
                                        e.link_group.unwrap_or_default()
                                    )));
                                }
                            }
                            *extent
                        }
                        None => {
                            tree.extents.push(Extent {
                                source: Source::Data(data),
                                lba: 0,
                                len,
                            });
                            let extent = tree.extents.len() - 1;
                            if let Some(g) = e.link_group {
                                groups.insert(g, (extent, path.clone()));
                            }
                            extent
                        }
                    };
                    (susp::S_IFREG, Kind::File(extent))
                }
                FsKind::Symlink(target) => {
                    if target.is_empty() || target.len() > 4095 || target.contains('\0') {
                        return Err(invalid(format!(
                            "ISO: symlink {path:?} has an empty, NUL-containing or over-long \
                             target"
                        )));
                    }
                    (susp::S_IFLNK, Kind::Symlink(target))
                }
                FsKind::CharDev { major, minor } => (susp::S_IFCHR, Kind::Device { major, minor }),
                FsKind::BlockDev { major, minor } => (susp::S_IFBLK, Kind::Device { major, minor }),
                FsKind::Fifo => (susp::S_IFIFO, Kind::Other),
                FsKind::Socket => (susp::S_IFSOCK, Kind::Other),
            };
            if e.link_group.is_some() && !matches!(kind, Kind::File(_)) {
                return Err(invalid(format!(
                    "ISO: {path:?} has a link group but is not a regular file"
                )));
            }
            let index = tree.nodes.len();
            tree.nodes.push(Node {
                name: name.to_string(),
                parent,
                mode: type_bits | (e.mode & 0o7777),
                uid: e.uid,
                gid: e.gid,
                mtime: e.mtime,
                kind,
                ino: 0,
                nlink: 1,
                iso_id: Vec::new(),
                joliet_id: None,
                su: Su::default(),
            });
            tree.children.push(Vec::new());
            if index != 0 {
                tree.children[parent].push(index);
            }
            tree.by_path.insert(path, index);
        }
        Ok(tree)
    }

    /// A visible boot catalog: a 2048-byte file.
    fn add_catalog(&mut self, path: &str, timestamp: i64) -> Result<(), DiskError> {
        crate::fs_tree::check_path(path, "ISO")?;
        if path.is_empty() || self.by_path.contains_key(path) {
            return Err(invalid(format!(
                "ISO: boot catalog path {path:?} is the root or an existing entry"
            )));
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        let parent = match self.by_path.get(parent) {
            Some(&p) if matches!(self.nodes[p].kind, Kind::Dir(_)) => p,
            _ => {
                return Err(invalid(format!(
                    "ISO: boot catalog {path:?}: {parent:?} is not a directory of the tree"
                )));
            }
        };
        self.extents.push(Extent {
            source: Source::Catalog,
            lba: 0,
            len: SECTOR as u32,
        });
        let index = self.nodes.len();
        self.nodes.push(Node {
            name: name.to_string(),
            parent,
            mode: susp::S_IFREG | 0o644,
            uid: 0,
            gid: 0,
            mtime: timestamp,
            kind: Kind::File(self.extents.len() - 1),
            ino: 0,
            nlink: 1,
            iso_id: Vec::new(),
            joliet_id: None,
            su: Su::default(),
        });
        self.children.push(Vec::new());
        self.children[parent].push(index);
        self.by_path.insert(path.to_string(), index);
        Ok(())
    }

    fn plan_boot(&mut self, boot: ElTorito) -> Result<BootPlan, DiskError> {
        let mut entry = |e: Option<BootEntry>, what: &str| -> Result<_, DiskError> {
            let Some(e) = e else { return Ok(None) };
            let extent = match e.image {
                BootImage::Path(path) => {
                    match self.by_path.get(&path).map(|&n| &self.nodes[n].kind) {
                        Some(Kind::File(x))
                            if matches!(self.extents[*x].source, Source::Data(_)) =>
                        {
                            *x
                        }
                        _ => {
                            return Err(invalid(format!(
                                "ISO: {what} boot image {path:?} is not a regular file of the tree"
                            )));
                        }
                    }
                }
                BootImage::Hidden(data) => {
                    let len = u32::try_from(data.len())
                        .map_err(|_| invalid(format!("ISO: {what} boot image over 4 GiB")))?;
                    self.extents.push(Extent {
                        source: Source::Data(data),
                        lba: 0,
                        len,
                    });
                    self.extents.len() - 1
                }
            };
            let len = self.extents[extent].len;
            if len == 0 || (e.boot_info_table && len < 64) {
                return Err(invalid(format!(
                    "ISO: {what} boot image is {len} bytes, too small{}",
                    if e.boot_info_table {
                        " for a boot information table"
                    } else {
                        ""
                    }
                )));
            }
            let load_sectors = e
                .load_sectors
                .unwrap_or_else(|| u16::try_from(u64::from(len).div_ceil(512)).unwrap_or(0));
            Ok(Some(PlannedEntry {
                extent,
                load_sectors,
                boot_info_table: e.boot_info_table,
            }))
        };
        let bios = entry(boot.bios, "BIOS")?;
        let efi = entry(boot.efi, "EFI")?;
        Ok(BootPlan {
            catalog_lba: 0,
            bios,
            efi,
        })
    }
}

/// Assigns names in both trees and orders directories breadth first (path table order).
fn order_directories(
    nodes: &mut [Node],
    mut children: Vec<Vec<usize>>,
    joliet: bool,
) -> Result<(Vec<Dir>, Vec<usize>), DiskError> {
    for kids in &mut children {
        if kids.is_empty() {
            continue;
        }
        kids.sort_by(|&a, &b| nodes[a].name.cmp(&nodes[b].name));
        let named: Vec<(&str, bool)> = kids
            .iter()
            .map(|&c| {
                (
                    nodes[c].name.as_str(),
                    matches!(nodes[c].kind, Kind::Dir(_)),
                )
            })
            .collect();
        let iso = names::iso_identifiers(&named);
        let jol = joliet.then(|| {
            let members: Vec<(&str, bool)> = named
                .iter()
                .zip(kids.iter())
                .filter(|(_, c)| joliet_member(&nodes[**c]))
                .map(|(n, _)| *n)
                .collect();
            names::joliet_identifiers(&members)
        });
        let mut jol = jol.map(Vec::into_iter);
        for (&c, id) in kids.iter().zip(iso) {
            nodes[c].iso_id = id;
            if joliet_member(&nodes[c])
                && let Some(j) = jol.as_mut()
            {
                nodes[c].joliet_id = j.next();
            }
        }
        kids.sort_by(|&a, &b| {
            names::iso_order(&nodes[a].iso_id).cmp(&names::iso_order(&nodes[b].iso_id))
        });
    }
    nodes[0].iso_id = vec![0];
    if joliet {
        nodes[0].joliet_id = Some(vec![0]);
    }

    let mut dirs = Vec::new();
    let mut queue = VecDeque::from([0usize]);
    while let Some(n) = queue.pop_front() {
        let index = dirs.len();
        let number = u16::try_from(index + 1)
            .map_err(|_| invalid("ISO: more than 65535 directories (path table limit)"))?;
        nodes[n].kind = Kind::Dir(index);
        let kids = std::mem::take(&mut children[n]);
        queue.extend(
            kids.iter()
                .copied()
                .filter(|&c| matches!(nodes[c].kind, Kind::Dir(_))),
        );
        let mut joliet_children: Vec<usize> = kids
            .iter()
            .copied()
            .filter(|&c| nodes[c].joliet_id.is_some())
            .collect();
        joliet_children.sort_by(|&a, &b| nodes[a].joliet_id.cmp(&nodes[b].joliet_id));
        dirs.push(Dir {
            node: n,
            children: kids,
            joliet_children,
            dot: Su::default(),
            dotdot: Su::default(),
            lba: 0,
            sectors: 0,
            joliet_lba: 0,
            joliet_sectors: 0,
            number,
            joliet_number: 0,
        });
    }

    let mut joliet_order = Vec::new();
    if joliet {
        let mut queue = VecDeque::from([0usize]);
        while let Some(d) = queue.pop_front() {
            joliet_order.push(d);
            dirs[d].joliet_number = joliet_order.len() as u16;
            for &c in &dirs[d].joliet_children {
                if let Kind::Dir(cd) = nodes[c].kind {
                    queue.push_back(cd);
                }
            }
        }
    }
    Ok((dirs, joliet_order))
}

fn joliet_member(node: &Node) -> bool {
    matches!(node.kind, Kind::Dir(_) | Kind::File(_))
}

/// Rock Ridge serial numbers (hard links share their group's) and link counts.
fn number_inodes(nodes: &mut [Node], dirs: &[Dir]) {
    let mut by_extent: HashMap<usize, (u32, u32)> = HashMap::new();
    for n in nodes.iter() {
        if let Kind::File(x) = n.kind {
            by_extent.entry(x).or_insert((0, 0)).1 += 1;
        }
    }
    let subdirs: Vec<u32> = dirs
        .iter()
        .map(|d| {
            d.children
                .iter()
                .filter(|&&c| matches!(nodes[c].kind, Kind::Dir(_)))
                .count() as u32
        })
        .collect();
    let mut next = 1u32;
    for n in nodes.iter_mut() {
        match n.kind {
            Kind::File(x) => {
                let (ino, count) = by_extent.get_mut(&x).expect("counted");
                if *ino == 0 {
                    *ino = next;
                    next += 1;
                }
                n.ino = *ino;
                n.nlink = *count;
            }
            Kind::Dir(d) => {
                n.ino = next;
                next += 1;
                n.nlink = 2 + subdirs[d];
            }
            _ => {
                n.ino = next;
                next += 1;
            }
        }
    }
}

/// The Rock Ridge entries of every record.
fn rock_ridge(nodes: &mut [Node], dirs: &mut [Dir]) {
    let px = |n: &Node| susp::px(n.mode, n.nlink, n.uid, n.gid, n.ino);
    for n in nodes.iter_mut() {
        let mut entries = vec![px(n), susp::tf(n.mtime)];
        entries.extend(susp::nm(n.name.as_bytes()));
        match &n.kind {
            Kind::Symlink(target) => entries.extend(susp::sl(target)),
            Kind::Device { major, minor } => entries.push(susp::pn(*major, *minor)),
            _ => {}
        }
        let base = 33 + n.iso_id.len() + 1 - n.iso_id.len() % 2;
        n.su = susp::split(base, entries);
    }
    nodes[0].su = Su::default();
    for d in dirs.iter_mut() {
        let n = &nodes[d.node];
        let p = &nodes[n.parent];
        let mut dot = vec![px(n), susp::tf(n.mtime)];
        if d.node == 0 {
            dot.insert(0, susp::sp());
            dot.push(susp::er());
        }
        d.dot = susp::split(34, dot);
        d.dotdot = susp::split(34, vec![px(p), susp::tf(p.mtime)]);
    }
}

/// Bytes of a directory record with an identifier of `id_len` bytes and system use `su`.
fn record_len(id_len: usize, su: &Su) -> usize {
    let len = 33 + id_len + 1 - id_len % 2 + su.record_len();
    len + len % 2
}

/// Packs records into sectors (a record never crosses a sector boundary): the offset of each
/// record and the number of sectors.
fn pack(lens: impl Iterator<Item = usize>) -> (Vec<usize>, u32) {
    let mut offsets = Vec::new();
    let mut pos = 0usize;
    for len in lens {
        if pos % SECTOR + len > SECTOR {
            pos = pos.next_multiple_of(SECTOR);
        }
        offsets.push(pos);
        pos += len;
    }
    (offsets, pos.div_ceil(SECTOR) as u32)
}

fn path_table_size<'a>(ids: impl Iterator<Item = &'a Vec<u8>>) -> u32 {
    ids.map(|id| 8 + id.len() + id.len() % 2).sum::<usize>() as u32
}

/// Places every record's continuation pieces in blocks from `next` on, in directory order,
/// and returns the areas' contents with their `CE` chains filled in.
fn place_continuations(
    nodes: &mut [Node],
    dirs: &mut [Dir],
    next: &mut u32,
) -> Vec<(u64, Vec<u8>)> {
    let start = *next;
    let mut block = 0u32;
    let mut offset = 0usize;
    let mut used = false;
    let mut area = Vec::new();
    let mut place = |su: &mut Su| {
        let mut locations = Vec::with_capacity(su.pieces.len());
        for i in 0..su.pieces.len() {
            let len = su.piece_len(i);
            if offset + len > SECTOR {
                block += 1;
                offset = 0;
            }
            locations.push((start + block, offset as u32, len as u32));
            offset += len;
            used = true;
        }
        for (i, piece) in su.pieces.iter().enumerate() {
            let mut bytes = piece.clone();
            if let Some(&(lba, off, len)) = locations.get(i + 1) {
                bytes.extend(susp::ce(lba, off, len));
            }
            let (lba, off, _) = locations[i];
            area.push((u64::from(lba) * SECTOR64 + u64::from(off), bytes));
        }
        su.ce = locations.first().copied();
    };
    for d in dirs.iter_mut() {
        place(&mut d.dot);
        place(&mut d.dotdot);
        for &c in &d.children {
            place(&mut nodes[c].su);
        }
    }
    if used {
        *next += block + 1;
    }
    area
}

/// Big-endian and little-endian halves of an ECMA-119 "both-byte orders" 32-bit field.
fn both32(v: u32) -> [u8; 8] {
    let mut b = [0; 8];
    b[..4].copy_from_slice(&v.to_le_bytes());
    b[4..].copy_from_slice(&v.to_be_bytes());
    b
}

fn both16(v: u16) -> [u8; 4] {
    let mut b = [0; 4];
    b[..2].copy_from_slice(&v.to_le_bytes());
    b[2..].copy_from_slice(&v.to_be_bytes());
    b
}

/// Calendar date and time of `t` (seconds since 1970-01-01 UTC): year, month, day, hour,
/// minute, second.
fn civil(t: i64) -> (i64, u8, u8, u8, u8, u8) {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    // Shift the epoch to 0000-03-01 so leap days end each 4/100/400-year cycle.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (
        year,
        month as u8,
        day as u8,
        (secs / 3600) as u8,
        (secs / 60 % 60) as u8,
        (secs % 60) as u8,
    )
}

/// Seconds since the epoch of `year`-01-01.
fn year_start(year: i64) -> i64 {
    let y = year - 1;
    (365 * (year - 1970) + (y / 4 - 1969 / 4) - (y / 100 - 1969 / 100) + (y / 400 - 1969 / 400))
        * 86_400
}

/// ECMA-119 9.1.5 recording date (years 1900–2155, UTC), clamped to that range.
fn record_date(t: i64) -> [u8; 7] {
    let t = t.clamp(year_start(1900), year_start(2156) - 1);
    let (y, mo, d, h, mi, s) = civil(t);
    [(y - 1900) as u8, mo, d, h, mi, s, 0]
}

/// ECMA-119 8.4.26.1 volume date (`YYYYMMDDHHMMSScc` and a zone offset), years 1–9999.
fn volume_date(t: i64) -> [u8; 17] {
    let t = t.clamp(year_start(1), year_start(10_000) - 1);
    let (y, mo, d, h, mi, s) = civil(t);
    let text = format!("{y:04}{mo:02}{d:02}{h:02}{mi:02}{s:02}00");
    let mut b = [0; 17];
    b[..16].copy_from_slice(text.as_bytes());
    b
}

/// A directory record.
fn record(id: &[u8], lba: u32, len: u32, dir: bool, mtime: i64, su: &Su) -> Vec<u8> {
    let total = record_len(id.len(), su);
    let mut r = Vec::with_capacity(total);
    r.push(total as u8);
    r.push(0);
    r.extend_from_slice(&both32(lba));
    r.extend_from_slice(&both32(len));
    r.extend_from_slice(&record_date(mtime));
    r.push(if dir { 2 } else { 0 });
    r.extend_from_slice(&[0, 0]);
    r.extend_from_slice(&both16(1));
    r.push(id.len() as u8);
    r.extend_from_slice(id);
    if id.len().is_multiple_of(2) {
        r.push(0);
    }
    r.extend_from_slice(&su.inline);
    if let Some((lba, off, len)) = su.ce {
        r.extend(susp::ce(lba, off, len));
    }
    r.resize(total, 0);
    r
}

impl IsoPlan {
    /// Bytes of the image.
    pub fn size(&self) -> u64 {
        self.layout.image_size
    }

    /// Writes the image front to back. Boot images that get a boot information table or are
    /// checked for isohybrid support are read into memory; everything else is streamed.
    pub fn write(&self, sink: &mut dyn Sink) -> Result<(), DiskError> {
        let mut out = Out { sink, pos: 0 };
        let bios_image = self.patched_bios_image()?;

        if let Some(h) = &self.hybrid {
            out.bytes(&self.hybrid_mbr(h))?;
        }
        out.seek(u64::from(SYSTEM_AREA) * SECTOR64)?;
        out.bytes(&self.volume_descriptor(false))?;
        if let Some(b) = &self.boot {
            let mut vd = [0u8; SECTOR];
            vd[1..6].copy_from_slice(b"CD001");
            vd[6] = 1;
            vd[7..7 + 23].copy_from_slice(b"EL TORITO SPECIFICATION");
            vd[71..75].copy_from_slice(&b.catalog_lba.to_le_bytes());
            out.bytes(&vd)?;
        }
        if self.joliet {
            out.bytes(&self.volume_descriptor(true))?;
        }
        let mut term = [0u8; SECTOR];
        term[0] = 255;
        term[1..6].copy_from_slice(b"CD001");
        term[6] = 1;
        out.bytes(&term)?;
        if let Some(b) = &self.boot {
            out.bytes(&self.catalog(b))?;
        }
        out.sector(&self.path_table(false, false), self.layout.l_table)?;
        out.sector(&self.path_table(false, true), self.layout.m_table)?;
        if self.joliet {
            out.sector(&self.path_table(true, false), self.layout.joliet_l_table)?;
            out.sector(&self.path_table(true, true), self.layout.joliet_m_table)?;
        }
        for d in &self.dirs {
            out.seek(u64::from(d.lba) * SECTOR64)?;
            self.write_dir(&mut out, d, false)?;
        }
        for (pos, bytes) in &self.ce_area {
            out.seek(*pos)?;
            out.bytes(bytes)?;
        }
        if self.joliet {
            for &i in &self.joliet_order {
                let d = &self.dirs[i];
                out.seek(u64::from(d.joliet_lba) * SECTOR64)?;
                self.write_dir(&mut out, d, true)?;
            }
        }
        let bios_extent = self
            .boot
            .as_ref()
            .and_then(|b| b.bios.as_ref())
            .map(|e| e.extent);
        let mut extents: Vec<usize> = (0..self.extents.len())
            .filter(|&i| self.extents[i].len > 0)
            .collect();
        extents.sort_by_key(|&i| self.extents[i].lba);
        for i in extents {
            let e = &self.extents[i];
            let Source::Data(data) = &e.source else {
                continue;
            };
            out.seek(u64::from(e.lba) * SECTOR64)?;
            match bios_image.as_ref().filter(|_| bios_extent == Some(i)) {
                Some(bytes) => out.bytes(bytes)?,
                None => out.data(data)?,
            }
        }
        out.seek(self.layout.image_size)?;
        Ok(())
    }

    /// The BIOS boot image, read when it needs a boot information table or an isohybrid check.
    fn patched_bios_image(&self) -> Result<Option<Vec<u8>>, DiskError> {
        let Some(entry) = self.boot.as_ref().and_then(|b| b.bios.as_ref()) else {
            return Ok(None);
        };
        if !entry.boot_info_table && self.hybrid.is_none() {
            return Ok(None);
        }
        let extent = &self.extents[entry.extent];
        let Source::Data(data) = &extent.source else {
            unreachable!("boot images are data")
        };
        let mut bytes = data.read_all()?;
        if self.hybrid.is_some() && bytes.get(0x40..0x44) != Some(&ISOLINUX_HYBRID_MAGIC[..]) {
            return Err(invalid(
                "ISO: the BIOS boot image lacks isolinux's hybrid signature at offset 0x40 \
                 (isolinux-debug.bin and non-isolinux loaders cannot boot from an isohybrid MBR)",
            ));
        }
        if entry.boot_info_table {
            let mut padded = bytes[64..].to_vec();
            padded.resize(padded.len().next_multiple_of(4), 0);
            let sum = padded
                .chunks(4)
                .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
                .fold(0u32, u32::wrapping_add);
            bytes[8..64].fill(0);
            bytes[8..12].copy_from_slice(&SYSTEM_AREA.to_le_bytes());
            bytes[12..16].copy_from_slice(&extent.lba.to_le_bytes());
            bytes[16..20].copy_from_slice(&extent.len.to_le_bytes());
            bytes[20..24].copy_from_slice(&sum.to_le_bytes());
        }
        Ok(Some(bytes))
    }

    fn hybrid_mbr(&self, h: &HybridMbr) -> [u8; 512] {
        let entry = self
            .boot
            .as_ref()
            .and_then(|b| b.bios.as_ref())
            .expect("checked in plan");
        let boot_lba = self.extents[entry.extent].lba;
        let mut mbr = [0u8; 512];
        mbr[..MBR_CODE].copy_from_slice(&h.code[..MBR_CODE]);
        mbr[432..436].copy_from_slice(&(boot_lba * 4).to_le_bytes());
        mbr[440..444].copy_from_slice(&h.disk_id.to_le_bytes());
        let cylinders = self.layout.image_size / CYLINDER;
        let chs_cylinders = cylinders.min(1024);
        let last = chs_cylinders - 1;
        let p = &mut mbr[446..462];
        p[0] = 0x80;
        p[1] = 0; // start head
        p[2] = 1; // start sector (cylinder 0)
        p[3] = 0;
        p[4] = 0x17;
        p[5] = (HYBRID_HEADS - 1) as u8;
        p[6] = HYBRID_SECTORS as u8 | ((last >> 2) & 0xc0) as u8;
        p[7] = last as u8;
        p[8..12].copy_from_slice(&0u32.to_le_bytes());
        let sectors = u32::try_from(cylinders * HYBRID_HEADS * HYBRID_SECTORS).unwrap_or(u32::MAX);
        p[12..16].copy_from_slice(&sectors.to_le_bytes());
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        mbr
    }

    fn volume_descriptor(&self, joliet: bool) -> [u8; SECTOR] {
        let mut vd = [0u8; SECTOR];
        vd[0] = if joliet { 2 } else { 1 };
        vd[1..6].copy_from_slice(b"CD001");
        vd[6] = 1;
        let text = |vd: &mut [u8; SECTOR], at: usize, len: usize, s: &str| {
            let field = &mut vd[at..at + len];
            if joliet {
                for pair in field.chunks_mut(2) {
                    pair[0] = 0;
                    if pair.len() == 2 {
                        pair[1] = b' ';
                    }
                }
                let u = names::ucs2(s);
                field[..u.len().min(len)].copy_from_slice(&u[..u.len().min(len)]);
            } else {
                field.fill(b' ');
                field[..s.len()].copy_from_slice(s.as_bytes());
            }
        };
        text(&mut vd, 8, 32, "");
        text(&mut vd, 40, 32, &self.volume_id);
        vd[80..88].copy_from_slice(&both32(self.layout.volume_sectors));
        if joliet {
            vd[88..91].copy_from_slice(b"%/E");
        }
        vd[120..124].copy_from_slice(&both16(1));
        vd[124..128].copy_from_slice(&both16(1));
        vd[128..132].copy_from_slice(&both16(SECTOR as u16));
        let (size, l, m) = if joliet {
            (
                self.layout.joliet_path_table_size,
                self.layout.joliet_l_table,
                self.layout.joliet_m_table,
            )
        } else {
            (
                self.layout.path_table_size,
                self.layout.l_table,
                self.layout.m_table,
            )
        };
        vd[132..140].copy_from_slice(&both32(size));
        vd[140..144].copy_from_slice(&l.to_le_bytes());
        vd[148..152].copy_from_slice(&m.to_be_bytes());
        let root = &self.dirs[0];
        let (lba, sectors) = if joliet {
            (root.joliet_lba, root.joliet_sectors)
        } else {
            (root.lba, root.sectors)
        };
        let r = record(
            &[0],
            lba,
            sectors * SECTOR as u32,
            true,
            self.nodes[0].mtime,
            &Su::default(),
        );
        vd[156..156 + 34].copy_from_slice(&r);
        for (at, len) in [(190, 128), (318, 128), (446, 128), (574, 128)] {
            text(&mut vd, at, len, "");
        }
        for (at, len) in [(702, 37), (739, 37), (776, 37)] {
            text(&mut vd, at, len, "");
        }
        let date = volume_date(self.timestamp);
        vd[813..830].copy_from_slice(&date);
        vd[830..847].copy_from_slice(&date);
        vd[847..863].fill(b'0');
        vd[864..880].fill(b'0');
        vd[881] = 1;
        vd
    }

    fn catalog(&self, b: &BootPlan) -> [u8; SECTOR] {
        let mut cat = [0u8; SECTOR];
        let entry = |e: &PlannedEntry| {
            let mut r = [0u8; 32];
            r[0] = 0x88;
            r[6..8].copy_from_slice(&e.load_sectors.to_le_bytes());
            r[8..12].copy_from_slice(&self.extents[e.extent].lba.to_le_bytes());
            r
        };
        let (first, platform, second) = match (&b.bios, &b.efi) {
            (Some(bios), efi) => (bios, 0u8, efi.as_ref()),
            (None, Some(efi)) => (efi, 0xef, None),
            (None, None) => unreachable!("empty boot plans are dropped"),
        };
        cat[0] = 1;
        cat[1] = platform;
        cat[30] = 0x55;
        cat[31] = 0xaa;
        let sum = cat[..32]
            .chunks(2)
            .map(|w| u16::from_le_bytes([w[0], w[1]]))
            .fold(0u16, u16::wrapping_add);
        cat[28..30].copy_from_slice(&0u16.wrapping_sub(sum).to_le_bytes());
        cat[32..64].copy_from_slice(&entry(first));
        if let Some(efi) = second {
            cat[64] = 0x91; // final section header
            cat[65] = 0xef;
            cat[66..68].copy_from_slice(&1u16.to_le_bytes());
            cat[96..128].copy_from_slice(&entry(efi));
        }
        cat
    }

    fn path_table(&self, joliet: bool, big_endian: bool) -> Vec<u8> {
        let mut t = Vec::new();
        let order: Vec<usize> = if joliet {
            self.joliet_order.clone()
        } else {
            (0..self.dirs.len()).collect()
        };
        for i in order {
            let d = &self.dirs[i];
            let n = &self.nodes[d.node];
            let parent_dir = match self.nodes[n.parent].kind {
                Kind::Dir(p) => &self.dirs[p],
                _ => unreachable!("parents are directories"),
            };
            let (id, lba, parent) = if joliet {
                (
                    n.joliet_id.as_deref().expect("in Joliet"),
                    d.joliet_lba,
                    parent_dir.joliet_number,
                )
            } else {
                (n.iso_id.as_slice(), d.lba, parent_dir.number)
            };
            t.push(id.len() as u8);
            t.push(0);
            if big_endian {
                t.extend_from_slice(&lba.to_be_bytes());
                t.extend_from_slice(&parent.to_be_bytes());
            } else {
                t.extend_from_slice(&lba.to_le_bytes());
                t.extend_from_slice(&parent.to_le_bytes());
            }
            t.extend_from_slice(id);
            if id.len() % 2 == 1 {
                t.push(0);
            }
        }
        t
    }

    /// Location and length of what a record for `node` points at, in the ISO or Joliet tree.
    fn target(&self, node: usize, joliet: bool) -> (u32, u32, bool) {
        match self.nodes[node].kind {
            Kind::Dir(d) => {
                let d = &self.dirs[d];
                if joliet {
                    (d.joliet_lba, d.joliet_sectors * SECTOR as u32, true)
                } else {
                    (d.lba, d.sectors * SECTOR as u32, true)
                }
            }
            Kind::File(x) => (self.extents[x].lba, self.extents[x].len, false),
            _ => (0, 0, false),
        }
    }

    fn write_dir(&self, out: &mut Out<'_>, d: &Dir, joliet: bool) -> Result<(), DiskError> {
        let none = Su::default();
        let (dot_su, dotdot_su) = if joliet {
            (&none, &none)
        } else {
            (&d.dot, &d.dotdot)
        };
        let n = &self.nodes[d.node];
        let (lba, len, _) = self.target(d.node, joliet);
        let (plba, plen, _) = self.target(n.parent, joliet);
        let mut records = vec![
            record(&[0], lba, len, true, n.mtime, dot_su),
            record(
                &[1],
                plba,
                plen,
                true,
                self.nodes[n.parent].mtime,
                dotdot_su,
            ),
        ];
        let children = if joliet {
            &d.joliet_children
        } else {
            &d.children
        };
        for &c in children {
            let child = &self.nodes[c];
            let (clba, clen, is_dir) = self.target(c, joliet);
            let (id, su) = if joliet {
                (child.joliet_id.as_deref().expect("in Joliet"), &none)
            } else {
                (child.iso_id.as_slice(), &child.su)
            };
            records.push(record(id, clba, clen, is_dir, child.mtime, su));
        }
        let (offsets, sectors) = pack(records.iter().map(Vec::len));
        let start = out.pos;
        for (r, off) in records.iter().zip(offsets) {
            out.seek(start + off as u64)?;
            out.bytes(r)?;
        }
        let planned = if joliet { d.joliet_sectors } else { d.sectors };
        assert_eq!(
            sectors, planned,
            "directory size changed between plan and write"
        );
        out.seek(start + u64::from(sectors) * SECTOR64)
    }
}

/// The sink with the position, so every area can be checked to start where it was planned.
struct Out<'a> {
    sink: &'a mut dyn Sink,
    pos: u64,
}

impl Out<'_> {
    fn bytes(&mut self, b: &[u8]) -> Result<(), DiskError> {
        self.sink.write_all(b).map_err(DiskError::Io)?;
        self.pos += b.len() as u64;
        Ok(())
    }

    fn data(&mut self, d: &Data) -> Result<(), DiskError> {
        write_data(self.sink, d)?;
        self.pos += d.len();
        Ok(())
    }

    /// Zeros up to `to`, which must not be behind.
    fn seek(&mut self, to: u64) -> Result<(), DiskError> {
        assert!(
            to >= self.pos,
            "layout overlap: at {} asked for {to}",
            self.pos
        );
        if to > self.pos {
            self.sink.zeros(to - self.pos).map_err(DiskError::Io)?;
            self.pos = to;
        }
        Ok(())
    }

    /// `b` at sector `lba`.
    fn sector(&mut self, b: &[u8], lba: u32) -> Result<(), DiskError> {
        self.seek(u64::from(lba) * SECTOR64)?;
        self.bytes(b)
    }
}

#[cfg(test)]
mod tests;
