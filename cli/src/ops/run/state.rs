//! `--disk` and the run's state directory: `qemu.pid`, `mac-addr`, `data.iso`, created disks.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::RunError;

/// A `--disk`: a file, its size when it has to be created, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `None` for `--disk size=…`: the file is made in the state directory
    /// ([`Disk::place`]).
    pub path: Option<PathBuf>,
    /// `qemu-img` size (`1G`, `512M`) when the disk is created; LinuxKit's default is 1G.
    pub size: Option<String>,
    /// `qcow2` or `raw`.
    pub format: String,
}

impl Disk {
    /// The file, once placed.
    pub(super) fn file(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new(""))
    }

    /// Gives a disk with no file LinuxKit's name in `state`: `disk.img`, then `disk1.img`,
    /// `disk2.img`, … by its place among the `--disk` flags.
    pub fn place(&mut self, index: usize, state: &Path) {
        if self.path.is_none() {
            let id = if index == 0 {
                String::new()
            } else {
                index.to_string()
            };
            self.path = Some(state.join(format!("disk{id}.img")));
        }
    }
}

/// Parses LinuxKit's `--disk [file=]PATH[,size=1G][,format=qcow2|raw]`; with a size, the
/// file may be left out (it is then made in the state directory, as qcow2 by default).
pub fn parse_disk(text: &str) -> Result<Disk, RunError> {
    let bad = |reason: &str| RunError::BadDisk {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut disk = Disk {
        path: None,
        size: None,
        format: String::new(),
    };
    for (i, part) in text.split(',').enumerate() {
        match part.split_once('=') {
            Some(("file", path)) if !path.is_empty() => disk.path = Some(PathBuf::from(path)),
            Some(("size", size)) if !size.is_empty() => disk.size = Some(size.to_owned()),
            Some(("format", format)) => disk.format = format.to_owned(),
            Some((key @ ("file" | "size"), _)) => return Err(bad(&format!("empty `{key}`"))),
            Some((key, _)) => return Err(bad(&format!("unknown key `{key}`"))),
            None if i == 0 && !part.is_empty() => disk.path = Some(PathBuf::from(part)),
            None => return Err(bad("expected key=value after the path")),
        }
    }
    if disk.path.is_none() && disk.size.is_none() {
        return Err(bad("no file and no size"));
    }
    if disk.format.is_empty() {
        let qcow2 = match &disk.path {
            Some(path) => path.extension().is_some_and(|ext| ext == "qcow2"),
            None => true,
        };
        disk.format = if qcow2 { "qcow2" } else { "raw" }.to_owned();
    }
    if !["qcow2", "raw"].contains(&disk.format.as_str()) {
        return Err(bad("format must be qcow2 or raw"));
    }
    Ok(disk)
}

/// Creates `disk` with `qemu-img` unless it exists.
pub fn ensure_disk(disk: &Disk) -> Result<(), RunError> {
    let path = disk.file();
    if path.exists() {
        return Ok(());
    }
    let output = Command::new("qemu-img")
        .args(["create", "-f", &disk.format])
        .arg(path)
        .arg(disk.size.as_deref().unwrap_or("1G"))
        .output()
        .map_err(|source| RunError::NoQemu {
            qemu: "qemu-img".to_owned(),
            package: "qemu-utils",
            source,
        })?;
    if !output.status.success() {
        return Err(RunError::DiskCreate {
            path: path.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Where a run keeps its files: the `--state` directory (kept), or a temporary one removed
/// when this value is dropped, unless [`StateDir::keep`] was called.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    temporary: Option<tempfile::TempDir>,
}

impl StateDir {
    /// `given` (created if missing), or a new temporary directory.
    pub fn open(given: Option<&Path>) -> Result<StateDir, RunError> {
        match given {
            Some(path) => {
                let error = |source| RunError::Write {
                    path: path.display().to_string(),
                    source,
                };
                fs_err::create_dir_all(path).map_err(error)?;
                // Absolute: a detached QEMU runs from `/`, and the printed path must work
                // from anywhere.
                Ok(StateDir {
                    path: std::path::absolute(path).map_err(error)?,
                    temporary: None,
                })
            }
            None => {
                let dir = tempfile::Builder::new()
                    .prefix("lkb-run-")
                    .tempdir()
                    .map_err(|source| RunError::Write {
                        path: std::env::temp_dir().display().to_string(),
                        source,
                    })?;
                Ok(StateDir {
                    path: dir.path().to_path_buf(),
                    temporary: Some(dir),
                })
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory is removed when the run ends.
    pub fn is_temporary(&self) -> bool {
        self.temporary.is_some()
    }

    /// Keeps a temporary directory after the run (`--detached`).
    pub fn keep(&mut self) {
        if let Some(dir) = self.temporary.take() {
            // Leaves the directory in place: the detached QEMU writes its console there.
            let _ = dir.keep();
        }
    }

    /// The guest NIC's MAC address from `mac-addr`, made on first use: random bytes from the
    /// kernel, locally administered and unicast, as LinuxKit's (`02:…` style, lower case).
    pub fn mac_address(&self) -> Result<String, RunError> {
        let path = self.path.join("mac-addr");
        match fs_err::read_to_string(&path) {
            Ok(text) => {
                let mac = text.trim();
                let valid = mac.len() == 17
                    && mac.split(':').count() == 6
                    && mac
                        .split(':')
                        .all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit()));
                return match valid {
                    true => Ok(mac.to_ascii_lowercase()),
                    false => Err(RunError::BadMac {
                        path: path.display().to_string(),
                        text: mac.to_owned(),
                    }),
                };
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RunError::Read {
                    path: path.display().to_string(),
                    source,
                });
            }
        }
        let mut bytes = [0u8; 6];
        let random = "/dev/urandom";
        std::io::Read::read_exact(
            &mut fs_err::File::open(random).map_err(|source| RunError::Read {
                path: random.to_owned(),
                source,
            })?,
            &mut bytes,
        )
        .map_err(|source| RunError::Read {
            path: random.to_owned(),
            source,
        })?;
        bytes[0] = (bytes[0] & 0xfe) | 0x02;
        let mac = bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        fs_err::write(&path, format!("{mac}\n")).map_err(|source| RunError::Write {
            path: path.display().to_string(),
            source,
        })?;
        Ok(mac)
    }

    /// Writes `STATE/data.iso`: ISO 9660 with Rock Ridge holding one file, `config`, with
    /// `data` (LinuxKit's metadata CD, which its `metadata` package reads). Reproducible:
    /// LinuxKit's fixed time for every timestamp.
    pub fn write_data_iso(&self, data: &[u8]) -> Result<PathBuf, RunError> {
        let path = self.path.join("data.iso");
        let iso_error = |source| RunError::DataIso {
            path: path.display().to_string(),
            source,
        };
        let entry = |path: &str, kind, mode| lkb_disk::FsEntry {
            path: path.to_owned(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: DATA_ISO_TIME,
            link_group: None,
            xattrs: Vec::new(),
        };
        let entries = vec![
            entry("", lkb_disk::FsKind::Dir, 0o755),
            entry(
                "config",
                lkb_disk::FsKind::File(lkb_disk::Data::Bytes(data.to_vec())),
                0o644,
            ),
        ];
        let plan = lkb_disk::iso::plan(
            entries,
            lkb_disk::iso::IsoOptions {
                volume_id: "CIDATA".to_owned(),
                timestamp: DATA_ISO_TIME,
                joliet: false,
                boot: None,
                hybrid: None,
            },
        )
        .map_err(iso_error)?;
        let write_error = |source| RunError::Write {
            path: path.display().to_string(),
            source,
        };
        let file = fs_err::File::create(&path).map_err(write_error)?;
        let mut sink = lkb_disk::FileSink::new(file.into_parts().0);
        plan.write(&mut sink).map_err(iso_error)?;
        sink.finish().map_err(write_error)?;
        Ok(path)
    }
}

/// The data ISO's time: LinuxKit's image time, 2017-04-18T16:30:00Z.
const DATA_ISO_TIME: i64 = 1_492_533_000;
