//! A write-once FAT12/16/32 file system.
//!
//! [`plan`] takes the whole file list up front and decides everything from sizes alone: the FAT
//! type and cluster size, the directory tree with its long and short names, and where every
//! file's clusters go. [`FatPlan::write`] then emits the volume front to back in one pass.
//!
//! Layout choices, all deterministic:
//! - Clusters are allocated contiguously from cluster 2: directories first (the FAT32 root,
//!   then the others depth first in name order), then files in the order they were given. A
//!   file is one run of clusters, so its sectors are known before writing (SYSLINUX needs
//!   that, see [`FatPlan::file_location`]).
//! - Directory entries are sorted by name (bytewise). A name that is not already a valid
//!   upper-case 8.3 name gets VFAT long-name entries and a short alias: the upper-cased name
//!   when it fits 8.3, else a `BASIS~N` name, unique within its directory.
//! - The type follows from the size: FAT12 while about 4000 clusters of up to 4 KiB do,
//!   FAT16 while about 65000 clusters of up to 4 KiB do, FAT32 beyond (4 KiB clusters up to
//!   8 GiB, then larger). Cluster counts always fall in the range Microsoft's specification
//!   gives each type (which is how readers tell the types apart), with a margin from its
//!   thresholds (see [`FatType`]'s limits).

use std::collections::BTreeMap;

use crate::{Data, DiskError, Sink, write_data};

/// Bytes per sector. Only 512 is supported.
pub const SECTOR_SIZE: u64 = 512;

/// Directory entry attribute bits.
pub mod attr {
    pub const READ_ONLY: u8 = 0x01;
    pub const HIDDEN: u8 = 0x02;
    pub const SYSTEM: u8 = 0x04;
    pub const VOLUME_ID: u8 = 0x08;
    pub const DIRECTORY: u8 = 0x10;
    pub const ARCHIVE: u8 = 0x20;
    /// The attribute value that marks a long-name entry.
    pub const LONG_NAME: u8 = 0x0F;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FatType {
    Fat12,
    Fat16,
    Fat32,
}

impl FatType {
    fn bits(self) -> u64 {
        match self {
            FatType::Fat12 => 12,
            FatType::Fat16 => 16,
            FatType::Fat32 => 32,
        }
    }

    /// The fewest clusters this writer gives a volume of this type: the specification's
    /// threshold (4085 for FAT16, 65525 for FAT32) plus a margin of 16, as Microsoft's
    /// specification advises against counts near the thresholds.
    fn min_clusters(self) -> u64 {
        match self {
            FatType::Fat12 => 1,
            FatType::Fat16 => 4085 + 16,
            FatType::Fat32 => 65525 + 16,
        }
    }

    /// The most clusters this writer gives a volume of this type: the specification's limit
    /// (4084 for FAT12, 65524 for FAT16) less a margin of 64. Besides the advice above,
    /// SYSLINUX's installer counts a FAT12/16 root directory of 512 entries as one sector
    /// instead of 32, so it sees up to 31 more clusters and refuses volumes that are valid
    /// but close to the limit.
    fn max_clusters(self) -> u64 {
        match self {
            FatType::Fat12 => 4084 - 64,
            FatType::Fat16 => 65524 - 64,
            FatType::Fat32 => 0x0FFF_FFF4,
        }
    }

    /// The end-of-chain marker.
    fn end_of_chain(self) -> u32 {
        match self {
            FatType::Fat12 => 0xFFF,
            FatType::Fat16 => 0xFFFF,
            FatType::Fat32 => 0x0FFF_FFFF,
        }
    }

    fn reserved_sectors(self) -> u64 {
        match self {
            FatType::Fat32 => 32,
            _ => 1,
        }
    }

    fn label(self) -> &'static [u8; 8] {
        match self {
            FatType::Fat12 => b"FAT12   ",
            FatType::Fat16 => b"FAT16   ",
            FatType::Fat32 => b"FAT32   ",
        }
    }
}

impl std::fmt::Display for FatType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FatType::Fat12 => "FAT12",
            FatType::Fat16 => "FAT16",
            FatType::Fat32 => "FAT32",
        })
    }
}

/// A local date and time as FAT stores it (two-second resolution, years 1980 to 2107).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Default for Timestamp {
    /// 2017-04-18 16:30:00, the fixed time LinuxKit's reproducible outputs use.
    fn default() -> Self {
        Timestamp {
            year: 2017,
            month: 4,
            day: 18,
            hour: 16,
            minute: 30,
            second: 0,
        }
    }
}

impl Timestamp {
    /// `(date, time)` in FAT encoding.
    fn encode(&self) -> Result<(u16, u16), DiskError> {
        let valid = (1980..=2107).contains(&self.year)
            && (1..=12).contains(&self.month)
            && (1..=31).contains(&self.day)
            && self.hour < 24
            && self.minute < 60
            && self.second < 60;
        if !valid {
            return Err(DiskError::Invalid(format!(
                "FAT cannot store the timestamp {self:?}"
            )));
        }
        let date = ((self.year - 1980) << 9) | (u16::from(self.month) << 5) | u16::from(self.day);
        let time = (u16::from(self.hour) << 11)
            | (u16::from(self.minute) << 5)
            | u16::from(self.second / 2);
        Ok((date, time))
    }
}

/// A file to put in the file system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FatFile {
    /// `/`-separated path from the root, e.g. `EFI/BOOT/BOOTX64.EFI`; parent directories are
    /// implied.
    pub path: String,
    pub data: Data,
    /// [`attr`] bits; [`FatFile::new`] sets [`attr::ARCHIVE`] as tools do for new files.
    pub attributes: u8,
}

impl FatFile {
    pub fn new(path: impl Into<String>, data: Data) -> Self {
        FatFile {
            path: path.into(),
            data,
            attributes: attr::ARCHIVE,
        }
    }
}

/// Volume-wide settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FatOptions {
    /// The volume serial number (callers derive it from content).
    pub volume_id: u32,
    /// Up to 11 characters of A-Z, 0-9, space and `$%'-_@~`!(){}^#&` (lower case is
    /// upper-cased). `None` leaves the volume unlabelled (`NO NAME`).
    pub label: Option<String>,
    /// Every entry's creation, access and modification time.
    pub timestamp: Timestamp,
    /// The exact size of the volume in bytes (a multiple of 512). `None` makes it as small as
    /// the content allows.
    pub size: Option<u64>,
    /// Forces the FAT type; `None` picks it from the size.
    pub fat_type: Option<FatType>,
    /// Sectors before the volume on its disk (the partition's start), stored in the BPB.
    pub hidden_sectors: u32,
}

/// Everything that goes into a volume.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FatSpec {
    /// Files, allocated in this order.
    pub files: Vec<FatFile>,
    /// Directories to create even when empty (`/`-separated paths).
    pub dirs: Vec<String>,
    pub options: FatOptions,
}

/// Where a file's data lies inside the volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLocation {
    /// Byte offset of the first byte from the start of the volume.
    pub offset: u64,
    /// The file's length in bytes.
    pub len: u64,
    /// First sector, counted from the start of the volume (not the disk).
    pub first_sector: u64,
    /// Sectors the file's clusters span (whole clusters; zero for an empty file).
    pub sectors: u64,
}

/// A planned volume: every offset is fixed; [`FatPlan::write`] emits it.
#[derive(Debug, Clone)]
pub struct FatPlan {
    geometry: Geometry,
    boot_sector: [u8; 512],
    label: Option<[u8; 11]>,
    date: u16,
    time: u16,
    dirs: Vec<DirPlan>,
    files: Vec<FilePlan>,
    /// Clusters `2..2 + used` are allocated, all others free.
    used_clusters: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Geometry {
    fat_type: FatType,
    sectors_per_cluster: u64,
    reserved_sectors: u64,
    fat_sectors: u64,
    /// Root directory entries (FAT12/16 only; 0 for FAT32).
    root_entries: u64,
    total_sectors: u64,
    clusters: u64,
}

impl Geometry {
    /// The volume's layout for `total` sectors, or `None` when they hold no data clusters.
    fn new(
        fat_type: FatType,
        sectors_per_cluster: u64,
        total: u64,
        root_entries: u64,
    ) -> Option<Geometry> {
        let reserved = fat_type.reserved_sectors();
        let root_sectors = (root_entries * 32).div_ceil(SECTOR_SIZE);
        let available = total.checked_sub(reserved + root_sectors)?;
        // The FAT must describe every cluster the rest of the space holds; more FAT sectors
        // mean fewer clusters, so settle on the first size that covers them.
        let mut fat = 1;
        loop {
            let clusters = available.checked_sub(2 * fat)? / sectors_per_cluster;
            let needed = ((clusters + 2) * fat_type.bits())
                .div_ceil(8)
                .div_ceil(SECTOR_SIZE);
            if needed <= fat {
                break;
            }
            fat = needed;
        }
        let clusters = (available - 2 * fat) / sectors_per_cluster;
        (clusters > 0).then_some(Geometry {
            fat_type,
            sectors_per_cluster,
            reserved_sectors: reserved,
            fat_sectors: fat,
            root_entries,
            total_sectors: total,
            clusters,
        })
    }

    /// Whether the BPB can describe it and readers will take it for `fat_type`.
    fn is_valid(&self, content_clusters: u64, max_clusters: u64) -> bool {
        let t = self.fat_type;
        self.clusters >= t.min_clusters().max(content_clusters)
            && self.clusters <= max_clusters.min(t.max_clusters())
            && self.total_sectors <= u64::from(u32::MAX)
            && (t == FatType::Fat32 || self.fat_sectors <= u64::from(u16::MAX))
    }

    fn cluster_bytes(&self) -> u64 {
        self.sectors_per_cluster * SECTOR_SIZE
    }

    fn root_sectors(&self) -> u64 {
        (self.root_entries * 32).div_ceil(SECTOR_SIZE)
    }

    fn data_start(&self) -> u64 {
        self.reserved_sectors + 2 * self.fat_sectors + self.root_sectors()
    }

    fn cluster_sector(&self, cluster: u64) -> u64 {
        self.data_start() + (cluster - 2) * self.sectors_per_cluster
    }

    fn clusters_for(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.cluster_bytes())
    }
}

#[derive(Debug, Clone)]
struct DirPlan {
    /// Index of the parent directory (the root is its own parent).
    parent: usize,
    entries: Vec<Entry>,
    /// 0 for the FAT12/16 root, which lives in its fixed region.
    first_cluster: u64,
    clusters: u64,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    short: [u8; 11],
    long_name: bool,
    target: Target,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Dir(usize),
    File(usize),
}

#[derive(Debug, Clone)]
struct FilePlan {
    path: String,
    data: Data,
    attributes: u8,
    first_cluster: u64,
    clusters: u64,
}

/// The candidate (type, sectors per cluster, most clusters) pairs, in order of preference.
fn candidates(forced: Option<FatType>) -> Vec<(FatType, u64, u64)> {
    match forced {
        Some(t) => [1, 2, 4, 8, 16, 32, 64]
            .into_iter()
            .map(|spc| (t, spc, t.max_clusters()))
            .collect(),
        None => vec![
            (FatType::Fat12, 1, FatType::Fat12.max_clusters()),
            (FatType::Fat12, 2, FatType::Fat12.max_clusters()),
            (FatType::Fat12, 4, FatType::Fat12.max_clusters()),
            (FatType::Fat12, 8, FatType::Fat12.max_clusters()),
            (FatType::Fat16, 2, FatType::Fat16.max_clusters()),
            (FatType::Fat16, 4, FatType::Fat16.max_clusters()),
            (FatType::Fat16, 8, FatType::Fat16.max_clusters()),
            // 4 KiB clusters up to 8 GiB, then larger ones keep the FATs small.
            (FatType::Fat32, 8, 1 << 21),
            (FatType::Fat32, 16, 1 << 21),
            (FatType::Fat32, 32, 1 << 21),
            (FatType::Fat32, 64, FatType::Fat32.max_clusters()),
        ],
    }
}

/// Plans a volume holding `spec`.
pub fn plan(spec: FatSpec) -> Result<FatPlan, DiskError> {
    let FatSpec {
        files,
        dirs: extra_dirs,
        options,
    } = spec;
    let (date, time) = options.timestamp.encode()?;
    let label = options.label.as_deref().map(volume_label).transpose()?;
    let mut tree = Tree::default();
    for dir in &extra_dirs {
        let parts = split_path(dir)?;
        tree.dir(&parts)?;
    }
    let mut file_plans = Vec::with_capacity(files.len());
    for (index, file) in files.into_iter().enumerate() {
        let parts = split_path(&file.path)?;
        if file.data.len() > u64::from(u32::MAX) {
            return Err(DiskError::Invalid(format!(
                "{:?} is {} bytes; a FAT file holds at most 4 GiB - 1",
                file.path,
                file.data.len()
            )));
        }
        let (name, parents) = parts.split_last().expect("split_path returns components");
        let parent = tree.dir(parents)?;
        tree.add(parent, name, Target::File(index))?;
        file_plans.push(FilePlan {
            path: file.path,
            data: file.data,
            attributes: file.attributes & !(attr::DIRECTORY | attr::VOLUME_ID),
            first_cluster: 0,
            clusters: 0,
        });
    }
    let mut dirs = tree.finish()?;

    // Directory sizes in entries: `.` and `..`, then each child's long-name entries and its
    // short entry; the root has the volume label instead of the dots.
    let dir_entries: Vec<u64> = dirs
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let own = if i == 0 {
                u64::from(label.is_some())
            } else {
                2
            };
            own + d.entries.iter().map(Entry::slots).sum::<u64>()
        })
        .collect();
    let root_entries_fixed = dir_entries[0].div_ceil(16).max(32) * 16;

    let content_clusters = |g: &Geometry| -> u64 {
        let files: u64 = file_plans
            .iter()
            .map(|f| g.clusters_for(f.data.len()))
            .sum();
        let dirs: u64 = dir_entries
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 0 || g.fat_type == FatType::Fat32)
            .map(|(_, n)| g.clusters_for(n * 32).max(1))
            .sum();
        files + dirs
    };

    let choose = |requested: Option<u64>| -> Option<(Geometry, u64)> {
        candidates(options.fat_type)
            .into_iter()
            .find_map(|(t, spc, max)| {
                let root_entries = if t == FatType::Fat32 {
                    0
                } else {
                    root_entries_fixed
                };
                // The content's needs depend only on the cluster size: measure them on any
                // geometry with this cluster size.
                let probe = Geometry {
                    fat_type: t,
                    sectors_per_cluster: spc,
                    reserved_sectors: 0,
                    fat_sectors: 0,
                    root_entries,
                    total_sectors: 0,
                    clusters: 0,
                };
                let need = content_clusters(&probe);
                let total = match requested {
                    Some(sectors) => sectors,
                    None => smallest_total(t, spc, root_entries, need.max(t.min_clusters()))?,
                };
                let g = Geometry::new(t, spc, total, root_entries)?;
                g.is_valid(need, max).then_some((g, need))
            })
    };

    let (geometry, _) = match options.size {
        None => choose(None).ok_or_else(|| {
            DiskError::Invalid(format!(
                "no {} volume can hold this content",
                options
                    .fat_type
                    .map_or_else(|| "FAT".to_owned(), |t| t.to_string())
            ))
        })?,
        Some(size) => {
            if !size.is_multiple_of(SECTOR_SIZE) {
                return Err(DiskError::Invalid(format!(
                    "a FAT volume is a whole number of 512-byte sectors, not {size} bytes"
                )));
            }
            match choose(Some(size / SECTOR_SIZE)) {
                Some(found) => found,
                None => {
                    let smallest = choose(None).map(|(g, _)| g.total_sectors * SECTOR_SIZE);
                    return Err(match smallest {
                        Some(needed) if needed > size => DiskError::TooSmall {
                            what: "the FAT file system".to_owned(),
                            needed,
                            requested: size,
                        },
                        _ => DiskError::Invalid(format!(
                            "no {} volume of {size} bytes can hold this content",
                            options
                                .fat_type
                                .map_or_else(|| "FAT".to_owned(), |t| t.to_string())
                        )),
                    });
                }
            }
        }
    };

    // Allocate: the FAT32 root, the other directories, then the files in order.
    let mut next = 2;
    for (i, dir) in dirs.iter_mut().enumerate() {
        if i == 0 && geometry.fat_type != FatType::Fat32 {
            continue;
        }
        dir.first_cluster = next;
        dir.clusters = geometry.clusters_for(dir_entries[i] * 32).max(1);
        next += dir.clusters;
    }
    for file in &mut file_plans {
        file.clusters = geometry.clusters_for(file.data.len());
        if file.clusters > 0 {
            file.first_cluster = next;
            next += file.clusters;
        }
    }
    let used_clusters = next - 2;
    debug_assert!(used_clusters <= geometry.clusters);

    let mut plan = FatPlan {
        geometry,
        boot_sector: [0; 512],
        label,
        date,
        time,
        dirs,
        files: file_plans,
        used_clusters,
    };
    plan.boot_sector = plan.make_boot_sector(options.volume_id, options.hidden_sectors);
    Ok(plan)
}

/// The fewest sectors that give `clusters` clusters of `spc` sectors.
fn smallest_total(t: FatType, spc: u64, root_entries: u64, clusters: u64) -> Option<u64> {
    let fat = ((clusters + 2) * t.bits())
        .div_ceil(8)
        .div_ceil(SECTOR_SIZE);
    let mut total =
        t.reserved_sectors() + (root_entries * 32).div_ceil(SECTOR_SIZE) + 2 * fat + clusters * spc;
    // The estimate can fall a little short where FAT sizes round; step up until it holds.
    loop {
        if total > u64::from(u32::MAX) {
            return None;
        }
        match Geometry::new(t, spc, total, root_entries) {
            Some(g) if g.clusters >= clusters => return Some(total),
            _ => total += 1,
        }
    }
}

impl Entry {
    /// Directory slots: long-name entries plus the short entry.
    fn slots(&self) -> u64 {
        1 + if self.long_name {
            (self.name.encode_utf16().count() as u64).div_ceil(13)
        } else {
            0
        }
    }
}

/// A directory's children by folded (upper-cased) name: the name as given and what it is.
type Children = BTreeMap<String, (String, Target)>;

/// The directory tree while it is being collected.
#[derive(Default)]
struct Tree {
    /// Per directory: parent, and children by folded (upper-cased) name.
    dirs: Vec<(usize, Children)>,
}

impl Tree {
    /// The index of the directory at `parts`, creating it and its parents.
    fn dir(&mut self, parts: &[&str]) -> Result<usize, DiskError> {
        if self.dirs.is_empty() {
            self.dirs.push((0, BTreeMap::new()));
        }
        let mut current = 0;
        for part in parts {
            let folded = fold(part);
            current = match self.dirs[current].1.get(&folded) {
                Some((name, Target::Dir(d))) if name == part => *d,
                Some((name, _)) => {
                    return Err(DiskError::Invalid(format!(
                        "{part:?} clashes with {name:?}: FAT names ignore case, and one is a \
                         file or they differ in case"
                    )));
                }
                None => {
                    let index = self.dirs.len();
                    self.dirs.push((current, BTreeMap::new()));
                    self.dirs[current]
                        .1
                        .insert(folded, ((*part).to_owned(), Target::Dir(index)));
                    index
                }
            };
        }
        Ok(current)
    }

    fn add(&mut self, parent: usize, name: &str, target: Target) -> Result<(), DiskError> {
        let folded = fold(name);
        if let Some((existing, _)) = self.dirs[parent].1.get(&folded) {
            return Err(DiskError::Invalid(format!(
                "{name:?} is given twice (as {existing:?}; FAT names ignore case)"
            )));
        }
        self.dirs[parent]
            .1
            .insert(folded, (name.to_owned(), target));
        Ok(())
    }

    /// Directories in allocation order (root first, then depth first by name) with sorted
    /// entries and short names.
    fn finish(mut self) -> Result<Vec<DirPlan>, DiskError> {
        if self.dirs.is_empty() {
            self.dirs.push((0, BTreeMap::new()));
        }
        // Depth-first order, children by name.
        let mut order = Vec::with_capacity(self.dirs.len());
        let mut stack = vec![0];
        while let Some(d) = stack.pop() {
            order.push(d);
            let mut children: Vec<(&String, usize)> = self.dirs[d]
                .1
                .values()
                .filter_map(|(name, t)| match t {
                    Target::Dir(c) => Some((name, *c)),
                    Target::File(_) => None,
                })
                .collect();
            children.sort();
            stack.extend(children.into_iter().rev().map(|(_, c)| c));
        }
        let mut new_index = vec![0; self.dirs.len()];
        for (new, old) in order.iter().enumerate() {
            new_index[*old] = new;
        }
        order
            .iter()
            .map(|&old| {
                let (parent, children) = &self.dirs[old];
                let mut named: Vec<(String, Target)> = children
                    .values()
                    .map(|(name, t)| {
                        let t = match t {
                            Target::Dir(c) => Target::Dir(new_index[*c]),
                            file => *file,
                        };
                        (name.clone(), t)
                    })
                    .collect();
                named.sort_by(|a, b| a.0.cmp(&b.0));
                Ok(DirPlan {
                    parent: new_index[*parent],
                    entries: short_names(named)?,
                    first_cluster: 0,
                    clusters: 0,
                })
            })
            .collect()
    }
}

fn fold(name: &str) -> String {
    name.to_uppercase()
}

fn split_path(path: &str) -> Result<Vec<&str>, DiskError> {
    let parts: Vec<&str> = path.split('/').collect();
    for part in &parts {
        check_long_name(part)
            .map_err(|why| DiskError::Invalid(format!("{path:?} cannot be a FAT path: {why}")))?;
    }
    Ok(parts)
}

fn check_long_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is reserved"));
    }
    if name.ends_with('.') || name.ends_with(' ') {
        return Err(format!("{name:?} ends with a dot or space"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| u32::from(*c) < 0x20 || *c == '\u{7f}' || "\"*/:<>?\\|".contains(*c))
    {
        return Err(format!("{name:?} contains {c:?}"));
    }
    if name.encode_utf16().count() > 255 {
        return Err(format!("{name:?} is longer than 255 UTF-16 units"));
    }
    Ok(())
}

/// Characters a short name may hold besides A-Z and 0-9.
const SHORT_SPECIALS: &str = "$%'-_@~`!(){}^#&";

fn short_char(c: char) -> Option<u8> {
    if c.is_ascii_alphanumeric() || SHORT_SPECIALS.contains(c) {
        Some(c.to_ascii_uppercase() as u8)
    } else {
        None
    }
}

/// The 8.3 form of `name` if it is one (in either case): one dot at most, 1-8 + 0-3 valid
/// characters.
fn exact_short(name: &str) -> Option<[u8; 11]> {
    let (base, ext) = match name.rsplit_once('.') {
        Some((base, ext)) => (base, ext),
        None => (name, ""),
    };
    let base: Vec<u8> = base.chars().map(short_char).collect::<Option<_>>()?;
    let ext: Vec<u8> = ext.chars().map(short_char).collect::<Option<_>>()?;
    if base.is_empty() || base.len() > 8 || ext.len() > 3 {
        return None;
    }
    let mut short = [b' '; 11];
    short[..base.len()].copy_from_slice(&base);
    short[8..8 + ext.len()].copy_from_slice(&ext);
    Some(short)
}

/// `BASE.EXT` as a person would type the short name.
fn short_display(short: &[u8; 11]) -> String {
    let base = String::from_utf8_lossy(&short[..8]).trim_end().to_owned();
    let ext = String::from_utf8_lossy(&short[8..]).trim_end().to_owned();
    if ext.is_empty() {
        base
    } else {
        format!("{base}.{ext}")
    }
}

/// The basis of a generated short name (Microsoft's steps): upper case, spaces and leading
/// dots dropped, other unfit characters as `_`, base from before the last dot.
fn short_basis(name: &str) -> (Vec<u8>, Vec<u8>) {
    let trimmed = name.trim_start_matches('.');
    let (base, ext) = match trimmed.rsplit_once('.') {
        Some((base, ext)) => (base, ext),
        None => (trimmed, ""),
    };
    let convert = |s: &str, max: usize| -> Vec<u8> {
        s.chars()
            .filter(|c| *c != ' ' && *c != '.')
            .map(|c| short_char(c).unwrap_or(b'_'))
            .take(max)
            .collect()
    };
    let mut base = convert(base, 8);
    if base.is_empty() {
        base.push(b'_');
    }
    (base, convert(ext, 3))
}

/// Short names for one directory's sorted entries: exact 8.3 names first (they cannot clash,
/// names being unique ignoring case), then `BASIS~N` aliases in order, skipping taken ones.
fn short_names(named: Vec<(String, Target)>) -> Result<Vec<Entry>, DiskError> {
    let mut taken = std::collections::BTreeSet::new();
    let mut entries: Vec<Entry> = named
        .into_iter()
        .map(|(name, target)| {
            let exact = exact_short(&name);
            if let Some(short) = exact {
                taken.insert(short);
            }
            Entry {
                long_name: exact.is_none_or(|s| short_display(&s) != name),
                short: exact.unwrap_or([0; 11]),
                name,
                target,
            }
        })
        .collect();
    for entry in &mut entries {
        if entry.short != [0; 11] {
            continue;
        }
        let (base, ext) = short_basis(&entry.name);
        let mut n = 1u32;
        entry.short = loop {
            let tail = format!("~{n}");
            let keep = base.len().min(8 - tail.len());
            let mut short = [b' '; 11];
            short[..keep].copy_from_slice(&base[..keep]);
            short[keep..keep + tail.len()].copy_from_slice(tail.as_bytes());
            short[8..8 + ext.len()].copy_from_slice(&ext);
            if taken.insert(short) {
                break short;
            }
            n += 1;
            if n > 999_999 {
                return Err(DiskError::Invalid(format!(
                    "no free short name for {:?}",
                    entry.name
                )));
            }
        };
    }
    Ok(entries)
}

fn volume_label(label: &str) -> Result<[u8; 11], DiskError> {
    let bytes: Option<Vec<u8>> = label
        .chars()
        .map(|c| if c == ' ' { Some(b' ') } else { short_char(c) })
        .collect();
    match bytes {
        Some(bytes) if !bytes.is_empty() && bytes.len() <= 11 && bytes[0] != b' ' => {
            let mut out = [b' '; 11];
            out[..bytes.len()].copy_from_slice(&bytes);
            Ok(out)
        }
        _ => Err(DiskError::Invalid(format!(
            "{label:?} cannot be a FAT volume label (1-11 of A-Z, 0-9, space, {SHORT_SPECIALS})"
        ))),
    }
}

/// The VFAT checksum of a short name, stored in each of its long-name entries.
pub fn lfn_checksum(short: &[u8; 11]) -> u8 {
    short
        .iter()
        .fold(0u8, |sum, &b| sum.rotate_right(1).wrapping_add(b))
}

/// Boot code for a volume nobody made bootable: ask the BIOS to try the next device
/// (INT 18h), else halt.
const NO_BOOT_CODE: [u8; 5] = [0xCD, 0x18, 0xF4, 0xEB, 0xFD];

impl FatPlan {
    /// The volume's size in bytes.
    pub fn size(&self) -> u64 {
        self.geometry.total_sectors * SECTOR_SIZE
    }

    pub fn fat_type(&self) -> FatType {
        self.geometry.fat_type
    }

    pub fn cluster_size(&self) -> u64 {
        self.geometry.cluster_bytes()
    }

    /// Data clusters in the volume.
    pub fn clusters(&self) -> u64 {
        self.geometry.clusters
    }

    /// Where the file given as `path` lies; `None` if no file has that path.
    pub fn file_location(&self, path: &str) -> Option<FileLocation> {
        let file = self.files.iter().find(|f| f.path == path)?;
        let first_sector = if file.clusters == 0 {
            0
        } else {
            self.geometry.cluster_sector(file.first_cluster)
        };
        Some(FileLocation {
            offset: first_sector * SECTOR_SIZE,
            len: file.data.len(),
            first_sector,
            sectors: file.clusters * self.geometry.sectors_per_cluster,
        })
    }

    /// Replaces the content of the file given as `path` with data of the same length (a
    /// boot file patched with its own location).
    pub fn replace_data(&mut self, path: &str, data: Data) -> Result<(), DiskError> {
        let file = self
            .files
            .iter_mut()
            .find(|f| f.path == path)
            .ok_or_else(|| DiskError::Invalid(format!("no file {path:?} in the volume")))?;
        if file.data.len() != data.len() {
            return Err(DiskError::Invalid(format!(
                "{path:?} is planned as {} bytes; its replacement has {}",
                file.data.len(),
                data.len()
            )));
        }
        file.data = data;
        Ok(())
    }

    /// The boot sector as planned: jump, OEM name, BIOS parameter block, boot code, 0x55AA.
    pub fn boot_sector(&self) -> [u8; 512] {
        self.boot_sector
    }

    /// The range of boot-sector bytes that describe the file system (the BPB and extended
    /// BPB): 11..62 for FAT12/16, 11..90 for FAT32. Boot code goes around it.
    pub fn bpb_range(&self) -> std::ops::Range<usize> {
        match self.geometry.fat_type {
            FatType::Fat32 => 11..90,
            _ => 11..62,
        }
    }

    /// Replaces the boot sector (a boot loader's code merged around the BPB). The BPB bytes
    /// and the 0x55AA signature must be unchanged. FAT32's backup boot sector gets the same
    /// bytes.
    pub fn set_boot_sector(&mut self, sector: [u8; 512]) -> Result<(), DiskError> {
        let bpb = self.bpb_range();
        if sector[bpb.clone()] != self.boot_sector[bpb] {
            return Err(DiskError::Invalid(
                "the new boot sector changes the file system's parameter block".into(),
            ));
        }
        if sector[510..] != [0x55, 0xAA] {
            return Err(DiskError::Invalid(
                "the new boot sector lacks the 0x55AA signature".into(),
            ));
        }
        self.boot_sector = sector;
        Ok(())
    }

    fn make_boot_sector(&self, volume_id: u32, hidden_sectors: u32) -> [u8; 512] {
        let g = &self.geometry;
        let fat32 = g.fat_type == FatType::Fat32;
        let mut s = [0u8; 512];
        let code_at: usize = if fat32 { 0x5A } else { 0x3E };
        s[0] = 0xEB;
        s[1] = (code_at - 2) as u8;
        s[2] = 0x90;
        s[3..11].copy_from_slice(b"MSWIN4.1");
        put16(&mut s, 11, SECTOR_SIZE as u16);
        s[13] = g.sectors_per_cluster as u8;
        put16(&mut s, 14, g.reserved_sectors as u16);
        s[16] = 2;
        put16(&mut s, 17, g.root_entries as u16);
        if !fat32 && g.total_sectors < 0x10000 {
            put16(&mut s, 19, g.total_sectors as u16);
        } else {
            put32(&mut s, 32, g.total_sectors as u32);
        }
        s[21] = 0xF8;
        if !fat32 {
            put16(&mut s, 22, g.fat_sectors as u16);
        }
        put16(&mut s, 24, 63);
        put16(&mut s, 26, 255);
        put32(&mut s, 28, hidden_sectors);
        let ext = if fat32 {
            put32(&mut s, 36, g.fat_sectors as u32);
            put32(&mut s, 44, self.dirs[0].first_cluster as u32);
            put16(&mut s, 48, 1);
            put16(&mut s, 50, 6);
            64
        } else {
            36
        };
        s[ext] = 0x80;
        s[ext + 2] = 0x29;
        put32(&mut s, ext + 3, volume_id);
        s[ext + 7..ext + 18].copy_from_slice(self.label.as_ref().unwrap_or(b"NO NAME    "));
        s[ext + 18..ext + 26].copy_from_slice(g.fat_type.label());
        s[code_at..code_at + NO_BOOT_CODE.len()].copy_from_slice(&NO_BOOT_CODE);
        s[510] = 0x55;
        s[511] = 0xAA;
        s
    }

    fn fs_info(&self) -> [u8; 512] {
        let mut s = [0u8; 512];
        put32(&mut s, 0, 0x4161_5252);
        put32(&mut s, 484, 0x6141_7272);
        let free = self.geometry.clusters - self.used_clusters;
        put32(&mut s, 488, free as u32);
        // The "next free" hint is the last allocated cluster: Linux and mtools start looking
        // after it, and mkfs.fat writes it so (2, the root's cluster, on an empty volume).
        put32(&mut s, 492, (1 + self.used_clusters) as u32);
        put32(&mut s, 508, 0xAA55_0000);
        s
    }

    /// The last cluster of every allocated chain, ascending.
    fn chain_ends(&self) -> Vec<u64> {
        let dirs = self
            .dirs
            .iter()
            .filter(|d| d.first_cluster != 0)
            .map(|d| (d.first_cluster, d.clusters));
        let files = self
            .files
            .iter()
            .filter(|f| f.clusters != 0)
            .map(|f| (f.first_cluster, f.clusters));
        let mut ends: Vec<u64> = dirs.chain(files).map(|(s, n)| s + n - 1).collect();
        ends.sort_unstable();
        ends
    }

    fn write_fat(&self, out: &mut Tracked<'_>, ends: &[u64]) -> Result<(), DiskError> {
        let t = self.geometry.fat_type;
        let eoc = t.end_of_chain();
        let media = match t {
            FatType::Fat12 => 0xFF8,
            FatType::Fat16 => 0xFFF8,
            FatType::Fat32 => 0x0FFF_FFF8,
        };
        let count = 2 + self.used_clusters;
        let mut ends = ends.iter().peekable();
        let mut entry = |k: u64| -> u32 {
            match k {
                0 => media,
                1 => eoc,
                _ if ends.peek() == Some(&&k) => {
                    ends.next();
                    eoc
                }
                _ => (k + 1) as u32,
            }
        };
        const CHUNK: usize = 64 << 10;
        let mut buf = Vec::with_capacity(CHUNK + 4);
        let mut written = 0u64;
        match t {
            FatType::Fat12 => {
                // Two entries share three bytes; FAT12 tables are at most 6 KiB.
                let mut k = 0;
                while k < count {
                    let a = entry(k);
                    let b = if k + 1 < count { entry(k + 1) } else { 0 };
                    buf.push(a as u8);
                    buf.push(((a >> 8) & 0x0F) as u8 | ((b & 0x0F) << 4) as u8);
                    if k + 1 < count {
                        buf.push((b >> 4) as u8);
                    }
                    k += 2;
                }
            }
            FatType::Fat16 | FatType::Fat32 => {
                for k in 0..count {
                    let v = entry(k);
                    if t == FatType::Fat16 {
                        buf.extend_from_slice(&(v as u16).to_le_bytes());
                    } else {
                        buf.extend_from_slice(&v.to_le_bytes());
                    }
                    if buf.len() >= CHUNK {
                        out.write(&buf)?;
                        written += buf.len() as u64;
                        buf.clear();
                    }
                }
            }
        }
        out.write(&buf)?;
        written += buf.len() as u64;
        out.zeros(self.geometry.fat_sectors * SECTOR_SIZE - written)
    }

    /// A directory's entries, unpadded.
    fn dir_bytes(&self, index: usize) -> Vec<u8> {
        let dir = &self.dirs[index];
        let mut out = Vec::new();
        if index == 0 {
            if let Some(label) = &self.label {
                out.extend_from_slice(&self.short_entry(label, attr::VOLUME_ID, 0, 0));
            }
        } else {
            let parent = &self.dirs[dir.parent];
            let parent_cluster = if dir.parent == 0 {
                0
            } else {
                parent.first_cluster
            };
            out.extend_from_slice(&self.short_entry(
                b".          ",
                attr::DIRECTORY,
                dir.first_cluster,
                0,
            ));
            out.extend_from_slice(&self.short_entry(
                b"..         ",
                attr::DIRECTORY,
                parent_cluster,
                0,
            ));
        }
        for entry in &dir.entries {
            if entry.long_name {
                long_name_entries(&entry.name, &entry.short, &mut out);
            }
            let (attributes, cluster, size) = match entry.target {
                Target::Dir(d) => (attr::DIRECTORY, self.dirs[d].first_cluster, 0),
                Target::File(f) => {
                    let file = &self.files[f];
                    (file.attributes, file.first_cluster, file.data.len() as u32)
                }
            };
            out.extend_from_slice(&self.short_entry(&entry.short, attributes, cluster, size));
        }
        out
    }

    fn short_entry(&self, name: &[u8; 11], attributes: u8, cluster: u64, size: u32) -> [u8; 32] {
        let mut e = [0u8; 32];
        e[..11].copy_from_slice(name);
        e[11] = attributes;
        put16(&mut e, 14, self.time);
        put16(&mut e, 16, self.date);
        put16(&mut e, 18, self.date);
        put16(&mut e, 20, (cluster >> 16) as u16);
        put16(&mut e, 22, self.time);
        put16(&mut e, 24, self.date);
        put16(&mut e, 26, cluster as u16);
        put32(&mut e, 28, size);
        e
    }

    /// Writes the volume front to back. Free space goes through [`Sink::zeros`].
    pub fn write(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        let g = &self.geometry;
        let mut out = Tracked { out, pos: 0 };
        out.write(&self.boot_sector)?;
        if g.fat_type == FatType::Fat32 {
            let info = self.fs_info();
            out.write(&info)?;
            out.zeros(4 * SECTOR_SIZE)?;
            out.write(&self.boot_sector)?;
            out.write(&info)?;
            out.zeros((g.reserved_sectors - 8) * SECTOR_SIZE)?;
        } else {
            out.zeros((g.reserved_sectors - 1) * SECTOR_SIZE)?;
        }
        let ends = self.chain_ends();
        for _ in 0..2 {
            self.write_fat(&mut out, &ends)?;
        }
        if g.fat_type != FatType::Fat32 {
            let root = self.dir_bytes(0);
            out.write(&root)?;
            out.zeros(g.root_sectors() * SECTOR_SIZE - root.len() as u64)?;
        }
        debug_assert_eq!(out.pos, g.data_start() * SECTOR_SIZE);
        for (i, dir) in self.dirs.iter().enumerate() {
            if dir.first_cluster == 0 {
                continue;
            }
            debug_assert_eq!(out.pos, g.cluster_sector(dir.first_cluster) * SECTOR_SIZE);
            let bytes = self.dir_bytes(i);
            out.write(&bytes)?;
            out.zeros(dir.clusters * g.cluster_bytes() - bytes.len() as u64)?;
        }
        for file in &self.files {
            if file.clusters == 0 {
                continue;
            }
            debug_assert_eq!(out.pos, g.cluster_sector(file.first_cluster) * SECTOR_SIZE);
            write_data(&mut *out.out, &file.data)?;
            out.pos += file.data.len();
            out.zeros(file.clusters * g.cluster_bytes() - file.data.len())?;
        }
        out.zeros(self.size() - out.pos)
    }
}

/// The long-name entries for `name`, last part first as they are stored.
fn long_name_entries(name: &str, short: &[u8; 11], out: &mut Vec<u8>) {
    let units: Vec<u16> = name.encode_utf16().collect();
    let count = units.len().div_ceil(13);
    let checksum = lfn_checksum(short);
    for ordinal in (1..=count).rev() {
        let mut e = [0u8; 32];
        e[0] = ordinal as u8 | if ordinal == count { 0x40 } else { 0 };
        e[11] = attr::LONG_NAME;
        e[13] = checksum;
        // 13 characters at these offsets; after the name a 0x0000, then 0xFFFF padding.
        let offsets = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30];
        for (j, at) in offsets.into_iter().enumerate() {
            let i = (ordinal - 1) * 13 + j;
            let unit = match i.cmp(&units.len()) {
                std::cmp::Ordering::Less => units[i],
                std::cmp::Ordering::Equal => 0,
                std::cmp::Ordering::Greater => 0xFFFF,
            };
            put16(&mut e, at, unit);
        }
        out.extend_from_slice(&e);
    }
}

fn put16(buf: &mut [u8], at: usize, v: u16) {
    buf[at..at + 2].copy_from_slice(&v.to_le_bytes());
}

fn put32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A sink that counts what went through it, to check the layout as it is written.
struct Tracked<'a> {
    out: &'a mut dyn Sink,
    pos: u64,
}

impl Tracked<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), DiskError> {
        self.out.write_all(bytes).map_err(DiskError::Io)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    fn zeros(&mut self, n: u64) -> Result<(), DiskError> {
        self.out.zeros(n).map_err(DiskError::Io)?;
        self.pos += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::path::{Path, PathBuf};
    use std::process::Command;

    use super::*;
    use crate::FileSink;

    fn bytes(path: &str, content: &[u8]) -> FatFile {
        FatFile::new(path, Data::Bytes(content.to_vec()))
    }

    /// A sparse file of `len` bytes with a marker at each end, so reading it back checks
    /// offsets, not just zeros.
    fn sparse(dir: &Path, name: &str, len: u64) -> Data {
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        file.set_len(len).unwrap();
        file.write_all(b"HEAD-OF-FILE").unwrap();
        file.seek(SeekFrom::Start(len - 12)).unwrap();
        file.write_all(b"TAIL-OF-FILE").unwrap();
        Data::File { path, len }
    }

    fn write_image(plan: &FatPlan, path: &Path) {
        let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
        plan.write(&mut sink).unwrap();
        assert_eq!(sink.position(), plan.size());
        sink.finish().unwrap();
    }

    use crate::test_tools::run;

    /// `fsck.vfat -n` finds nothing to say beyond its banner and summary.
    fn assert_fsck_clean(image: &Path) {
        let out = run(Command::new("fsck.vfat").arg("-n").arg(image));
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "fsck.vfat had remarks:\n{out}");
        assert!(lines[1].contains(" clusters"), "{out}");
    }

    /// Every path `mdir` sees, directories with a trailing `/`.
    fn mdir_paths(image: &Path) -> BTreeSet<String> {
        run(Command::new("mdir")
            .args(["-/", "-b", "-i"])
            .arg(image)
            .arg("::"))
        .lines()
        .map(|l| l.strip_prefix("::/").unwrap_or(l).to_owned())
        .collect()
    }

    /// File sizes from `mdir`'s long listing, keyed by path.
    fn mdir_sizes(image: &Path) -> BTreeMap<String, u64> {
        let listing = run(Command::new("mdir").args(["-/", "-i"]).arg(image).arg("::"));
        let mut dir = String::new();
        let mut sizes = BTreeMap::new();
        for line in listing.lines() {
            if let Some(d) = line.strip_prefix("Directory for ::/") {
                dir = if d.is_empty() {
                    String::new()
                } else {
                    format!("{d}/")
                };
                continue;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            let Some(date_at) = words
                .iter()
                .position(|w| w.len() == 10 && w.as_bytes()[4] == b'-' && w.as_bytes()[7] == b'-')
            else {
                continue;
            };
            if words.contains(&"<DIR>") {
                continue;
            }
            let size: u64 = words[date_at - 1].parse().unwrap();
            // The long name follows the time; without one, the short name is the first
            // 12 columns.
            let time = words[date_at + 1];
            let after_time = line.find(&format!(" {time}")).unwrap() + 1 + time.len();
            let long = line[after_time..].trim();
            let name = if long.is_empty() {
                let base = line[..8].trim_end();
                let ext = line[9..12].trim_end();
                if ext.is_empty() {
                    base.to_owned()
                } else {
                    format!("{base}.{ext}")
                }
            } else {
                long.to_owned()
            };
            sizes.insert(format!("{dir}{name}"), size);
        }
        sizes
    }

    /// A file's bytes as mtools reads them.
    fn mcopy_out(image: &Path, path: &str, to: &Path) -> PathBuf {
        run(Command::new("mcopy")
            .args(["-n", "-i"])
            .arg(image)
            .arg(format!("::/{path}"))
            .arg(to));
        to.to_owned()
    }

    fn same_file_content(a: &Path, b: &Path) -> bool {
        let (mut a, mut b) = (
            std::fs::File::open(a).unwrap(),
            std::fs::File::open(b).unwrap(),
        );
        let (mut x, mut y) = (vec![0u8; 1 << 20], vec![0u8; 1 << 20]);
        loop {
            let n = a.read(&mut x).unwrap();
            let mut filled = 0;
            while filled < n {
                let m = b.read(&mut y[filled..n]).unwrap();
                if m == 0 {
                    return false;
                }
                filled += m;
            }
            if n == 0 {
                return b.read(&mut y).unwrap() == 0;
            }
            if x[..n] != y[..n] {
                return false;
            }
        }
    }

    /// Checks the volume with fsck, lists it with mdir and reads every file back with mcopy.
    fn check_with_oracles(spec: &FatSpec, plan: &FatPlan, dir: &Path) {
        let image = dir.join("fat.img");
        write_image(plan, &image);
        assert_fsck_clean(&image);

        let mut expected_paths = BTreeSet::new();
        for path in spec.files.iter().map(|f| &f.path).chain(&spec.dirs) {
            let parts: Vec<&str> = path.split('/').collect();
            for i in 1..parts.len() {
                expected_paths.insert(format!("{}/", parts[..i].join("/")));
            }
        }
        expected_paths.extend(spec.dirs.iter().map(|d| format!("{d}/")));
        expected_paths.extend(spec.files.iter().map(|f| f.path.clone()));
        if expected_paths.is_empty() {
            // `mdir -b` fails on an empty volume; the long listing says so.
            let listing = run(Command::new("mdir").arg("-i").arg(&image).arg("::"));
            assert!(listing.contains("No files"), "{listing}");
            return;
        }
        assert_eq!(mdir_paths(&image), expected_paths);

        let expected_sizes: BTreeMap<String, u64> = spec
            .files
            .iter()
            .map(|f| (f.path.clone(), f.data.len()))
            .collect();
        assert_eq!(mdir_sizes(&image), expected_sizes);

        for (i, file) in spec.files.iter().enumerate() {
            let out = mcopy_out(&image, &file.path, &dir.join(format!("out{i}")));
            let input = match &file.data {
                Data::File { path, .. } => path.clone(),
                other => {
                    let p = dir.join(format!("in{i}"));
                    std::fs::write(&p, other.read_all().unwrap()).unwrap();
                    p
                }
            };
            assert!(
                same_file_content(&input, &out),
                "{} reads back different bytes",
                file.path
            );
            std::fs::remove_file(out).unwrap();
        }
    }

    fn assorted_files() -> Vec<FatFile> {
        vec![
            bytes("syslinux.cfg", b"DEFAULT linux\n"),
            bytes("README", b"upper-case 8.3, no long name"),
            bytes("EFI/BOOT/BOOTX64.EFI", b"MZ not really"),
            bytes("EFI/BOOT/grubx64.efi", b"lower case in a sub directory"),
            bytes("a long name with spaces.txt", b"long"),
            bytes("MixedCase.Name", b"mixed"),
            // mtools shows characters outside the BMP as `_`, so the oracle names stay in it.
            bytes(
                "\u{e9}t\u{e9} \u{fc}n\u{ef}c\u{f6}d\u{e9}.txt",
                b"not ASCII",
            ),
            bytes("x.tar.gz", b"two dots"),
            bytes(".hidden", b"leading dot"),
            bytes("verylongbasename.json", b"1"),
            bytes("verylongbasename2.json", b"2"),
            bytes("verylongbasename3.json", b"3"),
            bytes(
                "a name of exactly twenty-six.txt and then a good deal more to need several \
                 long-name entries",
                b"many slots",
            ),
            bytes("empty", b""),
            bytes(
                "kernel",
                &(0..200_000u32)
                    .map(|i| (i * 7 % 251) as u8)
                    .collect::<Vec<_>>(),
            ),
        ]
    }

    #[test]
    fn a_small_volume_is_fat12_and_reads_back_with_long_and_short_names() {
        let dir = tempfile::tempdir().unwrap();
        let spec = FatSpec {
            files: assorted_files(),
            dirs: vec!["boot/grub".into(), "EFI".into()],
            options: FatOptions {
                volume_id: 0x1234_ABCD,
                label: Some("lkb boot".into()),
                ..FatOptions::default()
            },
        };
        let plan = plan(spec.clone()).unwrap();
        assert_eq!(plan.fat_type(), FatType::Fat12);
        check_with_oracles(&spec, &plan, dir.path());
        let info = run(Command::new("minfo")
            .arg("-i")
            .arg(dir.path().join("fat.img"))
            .arg("::"));
        assert!(info.contains("serial number: 1234ABCD"), "{info}");
        assert!(info.contains("disk type=\"FAT12   \""), "{info}");
        let listing = run(Command::new("mdir")
            .arg("-i")
            .arg(dir.path().join("fat.img"))
            .arg("::"));
        assert!(
            listing.contains("Volume in drive : is LKB BOOT"),
            "{listing}"
        );
    }

    #[test]
    fn short_names_are_unique_and_plain_names_need_no_long_entry() {
        let plan = plan(FatSpec {
            files: assorted_files(),
            ..FatSpec::default()
        })
        .unwrap();
        let root = &plan.dirs[0];
        let by_name: BTreeMap<&str, (&[u8; 11], bool)> = root
            .entries
            .iter()
            .map(|e| (e.name.as_str(), (&e.short, e.long_name)))
            .collect();
        assert_eq!(by_name["README"], (b"README     ", false));
        assert_eq!(by_name["kernel"], (b"KERNEL     ", true));
        assert_eq!(by_name["syslinux.cfg"], (b"SYSLINUXCFG", true));
        assert_eq!(by_name["x.tar.gz"], (b"XTAR~1  GZ ", true));
        assert_eq!(by_name[".hidden"], (b"HIDDEN~1   ", true));
        assert_eq!(by_name["verylongbasename.json"].0, b"VERYLO~1JSO");
        assert_eq!(by_name["verylongbasename2.json"].0, b"VERYLO~2JSO");
        assert_eq!(by_name["verylongbasename3.json"].0, b"VERYLO~3JSO");
        let shorts: BTreeSet<_> = root.entries.iter().map(|e| e.short).collect();
        assert_eq!(shorts.len(), root.entries.len());
        let names: Vec<&str> = root.entries.iter().map(|e| e.name.as_str()).collect();
        let mut sorted = names.clone();
        sorted.sort();
        assert_eq!(names, sorted);
    }

    #[test]
    fn forty_megabytes_is_fat16() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = assorted_files();
        files.push(FatFile::new(
            "initrd.img",
            sparse(dir.path(), "initrd", 40_000_000),
        ));
        let spec = FatSpec {
            files,
            ..FatSpec::default()
        };
        let plan = plan(spec.clone()).unwrap();
        assert_eq!(plan.fat_type(), FatType::Fat16);
        assert!((4085 + 16..=65524 - 64).contains(&plan.clusters()));
        check_with_oracles(&spec, &plan, dir.path());
    }

    #[test]
    fn three_hundred_megabytes_is_fat32_with_partition_offset() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = assorted_files();
        files.insert(
            0,
            FatFile::new("initrd.img", sparse(dir.path(), "initrd", 300_000_000)),
        );
        let spec = FatSpec {
            files,
            dirs: vec!["empty-dir".into()],
            options: FatOptions {
                hidden_sectors: 2048,
                ..FatOptions::default()
            },
        };
        let plan = plan(spec.clone()).unwrap();
        assert_eq!(plan.fat_type(), FatType::Fat32);
        assert!(plan.clusters() >= 65525);
        assert_eq!(&plan.boot_sector()[28..32], &2048u32.to_le_bytes());
        check_with_oracles(&spec, &plan, dir.path());
    }

    #[test]
    fn large_initrds_get_cluster_counts_valid_for_their_type() {
        let dir = tempfile::tempdir().unwrap();
        for (len, expected) in [
            (150_000_000, FatType::Fat16),
            (2_000_000_000, FatType::Fat32),
            (u64::from(u32::MAX), FatType::Fat32),
        ] {
            let plan = plan(FatSpec {
                files: vec![
                    bytes("syslinux.cfg", b"x"),
                    FatFile::new("kernel", sparse(dir.path(), "k", 9_000_000)),
                    FatFile::new("initrd.img", sparse(dir.path(), "i", len)),
                ],
                ..FatSpec::default()
            })
            .unwrap();
            let t = plan.fat_type();
            assert_eq!(t, expected, "{len}");
            assert!(
                (t.min_clusters()..=t.max_clusters()).contains(&plan.clusters()),
                "{len}: {t} with {} clusters",
                plan.clusters()
            );
            let needed = 9_000_000 + len;
            assert!(
                plan.size() > needed && plan.size() < needed + needed / 50,
                "{len}"
            );
        }
        let err = plan(FatSpec {
            files: vec![FatFile::new(
                "huge",
                sparse(dir.path(), "h", u64::from(u32::MAX) + 1),
            )],
            ..FatSpec::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("at most 4 GiB"), "{err}");
    }

    #[test]
    fn a_forced_type_is_kept_even_for_small_content() {
        let dir = tempfile::tempdir().unwrap();
        for t in [FatType::Fat12, FatType::Fat16, FatType::Fat32] {
            let spec = FatSpec {
                files: vec![
                    bytes("EFI/BOOT/BOOTX64.EFI", b"MZ"),
                    bytes("startup.nsh", b"x"),
                ],
                options: FatOptions {
                    fat_type: Some(t),
                    ..FatOptions::default()
                },
                ..FatSpec::default()
            };
            let plan = plan(spec.clone()).unwrap();
            assert_eq!(plan.fat_type(), t);
            check_with_oracles(&spec, &plan, dir.path());
        }
    }

    #[test]
    fn empty_volumes_and_deep_or_wide_trees_are_clean() {
        let dir = tempfile::tempdir().unwrap();
        for t in [None, Some(FatType::Fat16), Some(FatType::Fat32)] {
            let spec = FatSpec {
                options: FatOptions {
                    fat_type: t,
                    ..FatOptions::default()
                },
                ..FatSpec::default()
            };
            check_with_oracles(&spec, &plan(spec.clone()).unwrap(), dir.path());
        }
        // Twelve levels deep, and one directory with enough long names to span clusters
        // (and, in the FAT12/16 root, more than the default 512 entries).
        let deep = (0..12)
            .map(|i| format!("level {i}"))
            .collect::<Vec<_>>()
            .join("/");
        let mut files = vec![bytes(&format!("{deep}/leaf.txt"), b"deep")];
        for i in 0..600 {
            files.push(bytes(
                &format!("wide/a rather long file name {i:04}.txt"),
                b"w",
            ));
            files.push(bytes(&format!("Root File Number {i:04}"), b"r"));
        }
        for t in [FatType::Fat12, FatType::Fat32] {
            let spec = FatSpec {
                files: files.clone(),
                options: FatOptions {
                    fat_type: Some(t),
                    ..FatOptions::default()
                },
                ..FatSpec::default()
            };
            let plan = plan(spec.clone()).unwrap();
            assert!(plan.dirs.iter().any(|d| d.clusters > 1));
            check_with_oracles(&spec, &plan, dir.path());
        }
    }

    #[test]
    fn writes_are_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let spec = FatSpec {
            files: {
                let mut f = assorted_files();
                f.push(FatFile::new("big", sparse(dir.path(), "big", 5_000_000)));
                f
            },
            dirs: vec!["a/b/c".into()],
            ..FatSpec::default()
        };
        let image = |spec: &FatSpec| {
            let mut out = Vec::new();
            let p = plan(spec.clone()).unwrap();
            p.write(&mut out).unwrap();
            assert_eq!(out.len() as u64, p.size());
            out
        };
        let first = image(&spec);
        assert_eq!(first, image(&spec));
        // The directory order does not depend on the order of the input.
        let mut reordered = spec.clone();
        reordered.dirs.push("a/b".into());
        let p1 = plan(spec).unwrap();
        let p2 = plan(reordered).unwrap();
        let names = |p: &FatPlan| -> Vec<Vec<String>> {
            p.dirs
                .iter()
                .map(|d| d.entries.iter().map(|e| e.name.clone()).collect())
                .collect()
        };
        assert_eq!(names(&p1), names(&p2));
    }

    #[test]
    fn a_requested_size_is_exact_and_too_small_names_the_needed_size() {
        let dir = tempfile::tempdir().unwrap();
        let files = vec![FatFile::new(
            "initrd.img",
            sparse(dir.path(), "i", 3_000_000),
        )];
        let natural = plan(FatSpec {
            files: files.clone(),
            ..FatSpec::default()
        })
        .unwrap()
        .size();
        let err = plan(FatSpec {
            files: files.clone(),
            options: FatOptions {
                size: Some(1 << 20),
                ..FatOptions::default()
            },
            ..FatSpec::default()
        })
        .unwrap_err();
        match err {
            DiskError::TooSmall {
                needed, requested, ..
            } => {
                assert_eq!(needed, natural);
                assert_eq!(requested, 1 << 20);
            }
            other => panic!("{other}"),
        }
        // Exactly the needed size works, and so does a larger one (sparse on disk).
        for size in [natural, 64 << 20] {
            let spec = FatSpec {
                files: files.clone(),
                options: FatOptions {
                    size: Some(size),
                    ..FatOptions::default()
                },
                ..FatSpec::default()
            };
            let plan = plan(spec.clone()).unwrap();
            assert_eq!(plan.size(), size);
            check_with_oracles(&spec, &plan, dir.path());
        }
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir.path().join("fat.img")).unwrap();
        assert_eq!(meta.len(), 64 << 20);
        assert!(meta.blocks() * 512 < 8 << 20, "free space is holes");
        let err = plan(FatSpec {
            files,
            options: FatOptions {
                size: Some(natural + 1),
                ..FatOptions::default()
            },
            ..FatSpec::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("512-byte sectors"), "{err}");
    }

    #[test]
    fn names_fat_cannot_hold_or_tell_apart_are_rejected() {
        for files in [
            vec![bytes("Kernel", b""), bytes("KERNEL", b"")],
            vec![bytes("EFI/a", b""), bytes("efi/b", b"")],
            vec![bytes("a", b""), bytes("a/b", b"")],
            vec![bytes("a/b", b""), bytes("a", b"")],
            vec![bytes("/abs", b"")],
            vec![bytes("a//b", b"")],
            vec![bytes("a/../b", b"")],
            vec![bytes("what?", b"")],
            vec![bytes("trailing.", b"")],
            vec![bytes(&"n".repeat(256), b"")],
        ] {
            let err = plan(FatSpec {
                files: files.clone(),
                ..FatSpec::default()
            })
            .unwrap_err();
            assert!(matches!(err, DiskError::Invalid(_)), "{files:?}: {err}");
        }
        let err = plan(FatSpec {
            options: FatOptions {
                label: Some("far too long a label".into()),
                ..FatOptions::default()
            },
            ..FatSpec::default()
        })
        .unwrap_err();
        assert!(err.to_string().contains("volume label"), "{err}");
    }

    #[test]
    fn file_locations_point_at_the_data_and_replacements_keep_the_length() {
        let dir = tempfile::tempdir().unwrap();
        let mut plan = plan(FatSpec {
            files: assorted_files(),
            ..FatSpec::default()
        })
        .unwrap();
        let loc = plan.file_location("kernel").unwrap();
        assert_eq!(loc.offset, loc.first_sector * 512);
        assert_eq!(loc.len, 200_000);
        assert_eq!(
            loc.sectors,
            200_000u64.div_ceil(plan.cluster_size()) * plan.cluster_size() / 512
        );
        assert!(plan.file_location("nope").is_none());

        let patched: Vec<u8> = vec![0x5A; 200_000];
        assert!(
            plan.replace_data("kernel", Data::Bytes(vec![1; 3]))
                .is_err()
        );
        plan.replace_data("kernel", Data::Bytes(patched.clone()))
            .unwrap();
        let image = dir.path().join("fat.img");
        write_image(&plan, &image);
        let bytes = std::fs::read(&image).unwrap();
        let at = loc.offset as usize;
        assert_eq!(&bytes[at..at + 200_000], &patched[..]);
        assert_eq!(
            std::fs::read(mcopy_out(&image, "kernel", &dir.path().join("k"))).unwrap(),
            patched
        );
    }

    #[test]
    fn a_new_boot_sector_must_keep_the_parameter_block() {
        let mut plan = plan(FatSpec::default()).unwrap();
        let mut sector = plan.boot_sector();
        sector[0x3E..0x50].copy_from_slice(&[0x90; 18]);
        plan.set_boot_sector(sector).unwrap();
        assert_eq!(plan.boot_sector(), sector);
        let mut bad = sector;
        bad[13] = 64;
        assert!(plan.set_boot_sector(bad).is_err());
        let mut unsigned = sector;
        unsigned[511] = 0;
        assert!(plan.set_boot_sector(unsigned).is_err());
    }

    #[test]
    fn long_name_entries_hold_utf16_with_terminator_and_padding() {
        let short = *b"A_~1    TXT";
        let mut out = Vec::new();
        long_name_entries("a\u{1F600}.txt", &short, &mut out);
        assert_eq!(out.len(), 32);
        assert_eq!(out[0], 0x41, "first and last entry, ordinal 1");
        assert_eq!(out[11], attr::LONG_NAME);
        assert_eq!(out[13], lfn_checksum(&short));
        let units: Vec<u16> = [1, 3, 5, 7, 9, 14, 16, 18, 20, 22, 24, 28, 30]
            .iter()
            .map(|&at| u16::from_le_bytes([out[at], out[at + 1]]))
            .collect();
        let mut expected: Vec<u16> = "a\u{1F600}.txt".encode_utf16().collect();
        assert_eq!(expected[1..3], [0xD83D, 0xDE00]);
        expected.push(0);
        expected.resize(13, 0xFFFF);
        assert_eq!(units, expected);
    }

    #[test]
    fn lfn_checksum_matches_the_specification_formula() {
        // Worked by hand from the rotate-right-and-add definition.
        let mut expected = 0u8;
        for b in *b"KERNEL     " {
            expected = (if expected & 1 == 1 { 0x80u8 } else { 0 })
                .wrapping_add(expected >> 1)
                .wrapping_add(b);
        }
        assert_eq!(lfn_checksum(b"KERNEL     "), expected);
    }
}
