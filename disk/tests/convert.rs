//! Raw disks converted to qcow2 and VHD, checked with QEMU's `qemu-img` (Debian's
//! qemu-utils): `check`, `info`, `compare` against the raw disk, and `map` for which extents
//! the image stores.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lkb_disk::vhd::{self, Vhd, VhdKind};
use lkb_disk::{Data, DiskError, FileSink, Sink, qcow2};

const MIB: u64 = 1 << 20;

fn qemu_img(args: &[&str]) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running qemu-img (install qemu-utils): {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn qemu_img_ok(args: &[&str]) -> String {
    let (ok, text) = qemu_img(args);
    assert!(ok, "qemu-img {args:?} failed:\n{text}");
    text
}

/// Bytes that are never zero, different at every offset.
fn pattern(seed: u64, n: usize) -> Vec<u8> {
    (0..n as u64)
        .map(|i| ((i.wrapping_mul(31) ^ seed.wrapping_mul(131)) % 255 + 1) as u8)
        .collect()
}

/// A sparse raw disk of `len` bytes: `data` ranges (offset, length) filled with non-zero
/// bytes, `zeros` ranges written as explicit zeros (allocated but zero), holes elsewhere.
struct Raw {
    path: PathBuf,
    len: u64,
    data: Vec<(u64, u64)>,
}

impl Raw {
    fn new(dir: &Path, len: u64, data: &[(u64, u64)], zeros: &[(u64, u64)]) -> Raw {
        let path = dir.join("disk.raw");
        let file = std::fs::File::create(&path).unwrap();
        file.set_len(len).unwrap();
        for &(at, n) in zeros {
            file.write_all_at(&vec![0; n as usize], at).unwrap();
        }
        for (i, &(at, n)) in data.iter().enumerate() {
            file.write_all_at(&pattern(i as u64, n as usize), at)
                .unwrap();
        }
        Raw {
            path,
            len,
            data: data.to_vec(),
        }
    }

    fn data(&self) -> Data {
        Data::File {
            path: self.path.clone(),
            len: self.len,
        }
    }

    /// The ranges of whole `unit`-sized pieces that hold data, merged, clipped to `limit`.
    fn data_units(&self, unit: u64, limit: u64) -> Vec<(u64, u64)> {
        let mut units: Vec<u64> = self
            .data
            .iter()
            .flat_map(|&(at, n)| at / unit..(at + n).div_ceil(unit))
            .collect();
        units.sort();
        units.dedup();
        merge(
            units
                .into_iter()
                .map(|u| (u * unit, ((u + 1) * unit).min(limit) - u * unit)),
        )
    }
}

fn merge(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for (start, len) in ranges {
        match out.last_mut() {
            Some(last) if last.0 + last.1 == start => last.1 += len,
            _ => out.push((start, len)),
        }
    }
    out
}

/// A number field of one line of qemu-img's JSON output.
fn field(line: &str, name: &str) -> u64 {
    let key = format!("\"{name}\": ");
    let at = line
        .find(&key)
        .unwrap_or_else(|| panic!("{name} in {line}"))
        + key.len();
    let digits: String = line[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// The extents `qemu-img map` reports as stored data, merged.
fn mapped_data(path: &Path, format: &str) -> Vec<(u64, u64)> {
    let map = qemu_img_ok(&["map", "--output=json", "-f", format, path.to_str().unwrap()]);
    merge(
        map.lines()
            .filter(|line| line.contains("\"data\": true"))
            .map(|line| (field(line, "start"), field(line, "length"))),
    )
}

fn write_image(path: &Path, size: u64, write: impl FnOnce(&mut dyn Sink)) {
    let mut sink = FileSink::new(std::fs::File::create(path).unwrap());
    write(&mut sink);
    assert_eq!(sink.position(), size, "written bytes vs planned size");
    sink.finish().unwrap();
}

/// 600 MiB and three sectors: a partial last cluster and block, two L2 tables' worth of disk.
/// Data at the start, in the middle, across the 512 MiB L2 boundary and at the very end; 16
/// MiB of allocated zeros; holes everywhere else.
fn sample_raw(dir: &Path) -> Raw {
    let len = 600 * MIB + 3 * 512;
    Raw::new(
        dir,
        len,
        &[
            (0, 300 << 10),
            (200 * MIB + 12345, 100 << 10),
            (512 * MIB - 700, 1400),
            (len - 1000, 1000),
        ],
        &[(64 * MIB, 16 * MIB), (300 * MIB, 3 * MIB)],
    )
}

#[test]
fn qcow2_passes_qemu_img_check_and_compares_identical() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_raw(dir.path());
    let plan = qcow2::plan(raw.data()).unwrap();
    let img = dir.path().join("disk.qcow2");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    let img_s = img.to_str().unwrap();
    let raw_s = raw.path.to_str().unwrap();

    let check = qemu_img_ok(&["check", "-f", "qcow2", img_s]);
    assert!(
        check.contains("No errors were found on the image."),
        "{check}"
    );
    assert!(!check.contains("leaked"), "{check}");

    let info = qemu_img_ok(&["info", "--output=json", "-f", "qcow2", img_s]);
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    assert_eq!(field(&info, "virtual-size"), raw.len, "{info}");
    assert_eq!(field(&info, "cluster-size"), 65536, "{info}");
    assert!(info.contains("\"compat\": \"1.1\""), "{info}");
    assert_eq!(field(&info, "refcount-bits"), 16, "{info}");
    assert!(info.contains("\"corrupt\": false"), "{info}");

    let compare = qemu_img_ok(&["compare", "-f", "raw", raw_s, "-F", "qcow2", img_s]);
    assert!(compare.contains("Images are identical."), "{compare}");

    // Exactly the 64 KiB clusters with data are stored: not the allocated zeros, not holes.
    let expected = raw.data_units(qcow2::CLUSTER_SIZE, raw.len);
    assert_eq!(mapped_data(&img, "qcow2"), expected);
    let stored: u64 = expected.iter().map(|r| r.1.div_ceil(65536)).sum();
    assert_eq!(plan.data_clusters(), stored);
    // Metadata is 1 header + 1 L1 + 1 refcount table + 1 refcount block + 2 L2 clusters.
    assert_eq!(plan.size(), (6 + stored) * 65536);

    // A second write of the same disk is the same bytes.
    let again = dir.path().join("again.qcow2");
    let plan = qcow2::plan(raw.data()).unwrap();
    write_image(&again, plan.size(), |out| plan.write(out).unwrap());
    assert!(std::fs::read(&img).unwrap() == std::fs::read(&again).unwrap());
}

#[test]
fn qcow2_of_a_disk_without_data_is_valid_and_empty() {
    let dir = tempfile::tempdir().unwrap();
    let raw = Raw::new(dir.path(), 100 * MIB, &[], &[(0, 2 * MIB)]);
    let plan = qcow2::plan(raw.data()).unwrap();
    assert_eq!(plan.data_clusters(), 0);
    let img = dir.path().join("empty.qcow2");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    let img_s = img.to_str().unwrap();
    let check = qemu_img_ok(&["check", "-f", "qcow2", img_s]);
    assert!(
        check.contains("No errors were found on the image."),
        "{check}"
    );
    let compare = qemu_img_ok(&[
        "compare",
        "-f",
        "raw",
        raw.path.to_str().unwrap(),
        "-F",
        "qcow2",
        img_s,
    ]);
    assert!(compare.contains("Images are identical."), "{compare}");
    assert_eq!(mapped_data(&img, "qcow2"), vec![]);
}

#[test]
fn a_raw_disk_of_partial_sectors_is_invalid() {
    let dir = tempfile::tempdir().unwrap();
    let raw = Raw::new(dir.path(), MIB + 100, &[(0, 10)], &[]);
    let err = qcow2::plan(raw.data()).unwrap_err();
    assert!(matches!(err, DiskError::Invalid(_)), "{err}");
    for kind in [VhdKind::Fixed, VhdKind::Dynamic] {
        let err = vhd::plan(Vhd {
            raw: raw.data(),
            kind,
            unique_id: [0; 16],
        })
        .unwrap_err();
        assert!(matches!(err, DiskError::Invalid(_)), "{kind:?}: {err}");
    }
}

fn vhd_plan(raw: &Raw, kind: VhdKind) -> vhd::VhdPlan {
    vhd::plan(Vhd {
        raw: raw.data(),
        kind,
        unique_id: *b"lkb-test-disk-id",
    })
    .unwrap()
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

#[test]
fn fixed_vhd_is_read_by_qemu_with_the_padded_size() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_raw(dir.path());
    let plan = vhd_plan(&raw, VhdKind::Fixed);
    let padded = raw.len.div_ceil(MIB) * MIB;
    assert_eq!(plan.virtual_size(), padded);
    let img = dir.path().join("fixed.vhd");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    assert_eq!(std::fs::metadata(&img).unwrap().len(), padded + 512);
    let img_s = img.to_str().unwrap();

    // A fixed VHD starts with the disk, not a header: qemu-img probes it as raw (its own
    // fixed VHDs too), so the format is named.
    let info = qemu_img_ok(&["info", "--output=json", "-f", "vpc", img_s]);
    assert!(info.contains("\"format\": \"vpc\""), "{info}");
    assert_eq!(field(&info, "virtual-size"), padded, "{info}");
    let compare = qemu_img_ok(&[
        "compare",
        "-f",
        "raw",
        raw.path.to_str().unwrap(),
        "-F",
        "vpc",
        img_s,
    ]);
    assert!(compare.contains("Images are identical."), "{compare}");
    // The file keeps the raw disk's holes (64 KiB granularity) and the padding is a hole:
    // qemu's vpc driver maps a fixed disk as all data, so the file is mapped as raw, which
    // shows its holes (the last extent ends at a file system block, hence the clipping).
    let mapped = mapped_data(&img, "raw");
    let clipped = merge(
        mapped
            .iter()
            .filter(|r| r.0 < raw.len)
            .map(|&(start, len)| (start, len.min(raw.len - start))),
    );
    assert_eq!(clipped, raw.data_units(65536, raw.len));
    assert_eq!(mapped.last(), Some(&(padded, 512)), "the footer");
    // vpc has no consistency check; qemu-img says so rather than failing on the image.
    let (_, check) = qemu_img(&["check", "-f", "vpc", img_s]);
    assert!(check.contains("does not support checks"), "{check}");

    let again = dir.path().join("again.vhd");
    let plan = vhd_plan(&raw, VhdKind::Fixed);
    write_image(&again, plan.size(), |out| plan.write(out).unwrap());
    assert!(std::fs::read(&img).unwrap() == std::fs::read(&again).unwrap());
}

#[test]
fn dynamic_vhd_is_read_by_qemu_and_stores_only_blocks_with_data() {
    let dir = tempfile::tempdir().unwrap();
    let raw = sample_raw(dir.path());
    let plan = vhd_plan(&raw, VhdKind::Dynamic);
    assert_eq!(plan.virtual_size(), raw.len);
    let img = dir.path().join("dynamic.vhd");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    let img_s = img.to_str().unwrap();

    let info = qemu_img_ok(&["info", "--output=json", img_s]);
    assert!(info.contains("\"format\": \"vpc\""), "{info}");
    assert_eq!(field(&info, "virtual-size"), raw.len, "{info}");
    assert_eq!(field(&info, "cluster-size"), 2 * MIB, "{info}");
    let compare = qemu_img_ok(&[
        "compare",
        "-f",
        "raw",
        raw.path.to_str().unwrap(),
        "-F",
        "vpc",
        img_s,
    ]);
    assert!(compare.contains("Images are identical."), "{compare}");
    let expected = raw.data_units(vhd::BLOCK_SIZE, raw.len);
    assert_eq!(mapped_data(&img, "vpc"), expected);
    let blocks: u64 = expected.iter().map(|r| r.1.div_ceil(vhd::BLOCK_SIZE)).sum();
    assert_eq!(plan.stored_blocks(), blocks);

    // qemu-img's own conversion of the same disk allocates the same blocks and agrees on the
    // dynamic header's table.
    let theirs = dir.path().join("qemu.vhd");
    qemu_img_ok(&[
        "convert",
        "-f",
        "raw",
        "-O",
        "vpc",
        "-o",
        "subformat=dynamic,force_size",
        raw.path.to_str().unwrap(),
        theirs.to_str().unwrap(),
    ]);
    let ours = std::fs::read(&img).unwrap();
    let theirs = std::fs::read(&theirs).unwrap();
    assert_eq!(ours[512..512 + 40], theirs[512..512 + 40], "dynamic header");
    let entries = be32(&ours, 512 + 28) as usize;
    let allocated = |img: &[u8]| -> Vec<usize> {
        (0..entries)
            .filter(|&b| be32(img, 1536 + 4 * b) != 0xffff_ffff)
            .collect()
    };
    assert_eq!(allocated(&ours), allocated(&theirs));

    let again = dir.path().join("again.vhd");
    let plan = vhd_plan(&raw, VhdKind::Dynamic);
    write_image(&again, plan.size(), |out| plan.write(out).unwrap());
    assert!(ours == std::fs::read(&again).unwrap());
}

/// A 25 GiB disk holding 20 MB, as `--size 25G` gives: the images stay a few MB and are
/// quick to write (timings printed for `cargo test --release -- --nocapture`).
#[test]
#[allow(clippy::print_stderr)]
fn a_large_sparse_disk_converts_quickly_to_a_small_image() {
    let dir = tempfile::tempdir().unwrap();
    let len = 25 << 30;
    let raw = Raw::new(
        dir.path(),
        len,
        &[
            (0, 4 * MIB),
            (MIB * 1024 + 7, 12 * MIB),
            (len - 4 * MIB, 4 * MIB),
        ],
        &[],
    );
    let data_bytes = 20 * MIB;

    let started = Instant::now();
    let plan = qcow2::plan(raw.data()).unwrap();
    let img = dir.path().join("big.qcow2");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    let elapsed = started.elapsed();
    let size = std::fs::metadata(&img).unwrap().len();
    eprintln!("qcow2: 25 GiB raw with 20 MiB of data -> {size} bytes in {elapsed:?}");
    assert!(size < data_bytes + MIB, "{size}");
    let compare = qemu_img_ok(&[
        "compare",
        "-f",
        "raw",
        raw.path.to_str().unwrap(),
        "-F",
        "qcow2",
        img.to_str().unwrap(),
    ]);
    assert!(compare.contains("Images are identical."), "{compare}");
    assert!(std::fs::metadata(&img).unwrap().blocks() * 512 < data_bytes + 2 * MIB);

    let started = Instant::now();
    let plan = vhd_plan(&raw, VhdKind::Dynamic);
    let img = dir.path().join("big.vhd");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    let elapsed = started.elapsed();
    let size = std::fs::metadata(&img).unwrap().len();
    eprintln!("dynamic VHD: 25 GiB raw with 20 MiB of data -> {size} bytes in {elapsed:?}");
    // 20 MiB of data touches 11 blocks (the middle run is not block-aligned: 7 for its
    // 12 MiB), plus the 50 KiB table.
    assert_eq!(plan.stored_blocks(), 11);
    assert!(size < data_bytes + 5 * MIB, "{size}");
    let compare = qemu_img_ok(&[
        "compare",
        "-f",
        "raw",
        raw.path.to_str().unwrap(),
        "-F",
        "vpc",
        img.to_str().unwrap(),
    ]);
    assert!(compare.contains("Images are identical."), "{compare}");

    // A fixed VHD of the same disk is 25 GiB long but holds only the data.
    let started = Instant::now();
    let plan = vhd_plan(&raw, VhdKind::Fixed);
    let img = dir.path().join("big-fixed.vhd");
    write_image(&img, plan.size(), |out| plan.write(out).unwrap());
    let elapsed = started.elapsed();
    let meta = std::fs::metadata(&img).unwrap();
    eprintln!(
        "fixed VHD: 25 GiB raw with 20 MiB of data -> {} bytes ({} allocated) in {elapsed:?}",
        meta.len(),
        meta.blocks() * 512
    );
    assert_eq!(meta.len(), len + 512);
    assert!(meta.blocks() * 512 < data_bytes + MIB);
}
