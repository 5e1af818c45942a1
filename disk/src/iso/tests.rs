use super::*;

#[test]
fn dates_match_the_calendar() {
    assert_eq!(civil(0), (1970, 1, 1, 0, 0, 0));
    // 2000-02-29 12:34:56, a leap day in a 400-year leap year.
    assert_eq!(civil(951_827_696), (2000, 2, 29, 12, 34, 56));
    assert_eq!(civil(-1), (1969, 12, 31, 23, 59, 59));
    assert_eq!(year_start(1970), 0);
    assert_eq!(year_start(2001), 978_307_200);
    assert_eq!(civil(year_start(1900)), (1900, 1, 1, 0, 0, 0));
    assert_eq!(record_date(951_827_696), [100, 2, 29, 12, 34, 56, 0]);
    assert_eq!(record_date(i64::MIN), [0, 1, 1, 0, 0, 0, 0]);
    assert_eq!(record_date(i64::MAX), [255, 12, 31, 23, 59, 59, 0]);
    assert_eq!(&volume_date(951_827_696)[..16], b"2000022912345600");
    assert_eq!(volume_date(0)[16], 0);
}

fn file(path: &str, bytes: &[u8]) -> FsEntry {
    FsEntry {
        path: path.into(),
        kind: FsKind::File(Data::Bytes(bytes.to_vec())),
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 0,
        link_group: None,
        xattrs: Vec::new(),
    }
}

fn options() -> IsoOptions {
    IsoOptions {
        volume_id: "TEST".into(),
        timestamp: 0,
        joliet: true,
        boot: None,
        hybrid: None,
    }
}

#[test]
fn layout_is_planned_and_written_to_size() {
    let entries = vec![file("a/b/c.txt", b"hello"), file("z", &[7; 5000])];
    let plan = plan(entries, options()).unwrap();
    let mut image = Vec::new();
    plan.write(&mut image).unwrap();
    assert_eq!(image.len() as u64, plan.size());
    assert_eq!(plan.size() % SECTOR64, 0);
    assert_eq!(&image[16 * SECTOR + 1..16 * SECTOR + 6], b"CD001");
    assert_eq!(image[17 * SECTOR], 2, "Joliet descriptor follows");
    assert_eq!(image[18 * SECTOR], 255, "then the terminator");
    let root = &image[16 * SECTOR + 156..16 * SECTOR + 190];
    let root_lba = u32::from_le_bytes(root[2..6].try_into().unwrap()) as usize;
    let dot = &image[root_lba * SECTOR..];
    assert_eq!(&dot[34..41], &[b'S', b'P', 7, 1, 0xbe, 0xef, 0], "SP first");
}

#[test]
fn refusals_name_the_problem() {
    let err = |entries: Vec<FsEntry>, options: IsoOptions| {
        plan(entries, options).unwrap_err().to_string()
    };
    assert!(err(vec![file("a", b""), file("a", b"")], options()).contains("listed twice"));
    assert!(err(vec![file("a/../b", b"")], options()).contains("bad path"));
    assert!(err(vec![file("a", b""), file("a/b", b"")], options()).contains("not a directory"));
    let mut a = file("a", b"x");
    let mut b = file("b", b"y");
    a.link_group = Some(1);
    b.link_group = Some(1);
    assert!(err(vec![a, b], options()).contains("different contents"));
    let mut o = options();
    o.volume_id = "x".repeat(33);
    assert!(err(vec![], o).contains("volume id"));
    let mut o = options();
    o.hybrid = Some(HybridMbr {
        code: vec![0; 432],
        disk_id: 1,
    });
    assert!(err(vec![], o).contains("BIOS boot entry"));
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes(b[..4].try_into().unwrap())
}

/// Every path table record points at a directory whose `.` is itself and whose `..` is the
/// directory its parent number names, in both byte orders and both trees (no oracle reads
/// path tables, so they are checked here).
#[test]
fn path_tables_agree_with_the_directories() {
    let mut entries = vec![file("a/b/c/d.txt", b"x"), file("b/x", b"y")];
    for i in 0..40 {
        entries.push(file(&format!("many/dir-{i:02}/f"), b"z"));
    }
    let plan = plan(entries, options()).unwrap();
    let mut image = Vec::new();
    plan.write(&mut image).unwrap();
    for vd in [16, 17] {
        let d = &image[vd * SECTOR..(vd + 1) * SECTOR];
        let size = le32(&d[132..]) as usize;
        let l = le32(&d[140..]) as usize * SECTOR;
        let m = u32::from_be_bytes(d[148..152].try_into().unwrap()) as usize * SECTOR;
        let mut records = Vec::new();
        let mut at = 0;
        while at < size {
            let len = image[l + at] as usize;
            let lba = le32(&image[l + at + 2..]);
            let parent = u16::from_le_bytes([image[l + at + 6], image[l + at + 7]]);
            assert_eq!(
                u32::from_be_bytes(image[m + at + 2..m + at + 6].try_into().unwrap()),
                lba
            );
            assert_eq!(
                u16::from_be_bytes([image[m + at + 6], image[m + at + 7]]),
                parent
            );
            records.push((lba, parent));
            at += 8 + len + len % 2;
        }
        assert_eq!(
            records.len(),
            1 + 3 + 1 + 1 + 40,
            "directories in tree {vd}"
        );
        for &(lba, parent) in &records {
            let dir = &image[lba as usize * SECTOR..];
            assert_eq!(le32(&dir[2..]), lba, "`.` of {lba}");
            let dotdot = &dir[dir[0] as usize..];
            assert_eq!(dotdot[33], 1);
            assert_eq!(le32(&dotdot[2..]), records[parent as usize - 1].0);
        }
    }
}
