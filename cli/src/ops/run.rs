//! `lkb run qemu`: boots what a build wrote in QEMU, watching its serial console.
//!
//! The image is found from the path LinuxKit's `run qemu` takes: a prefix (`out/sshd` →
//! `sshd-kernel`, `sshd-initrd.img`, `sshd-cmdline`), or an image file by its extension: an
//! ISO (`.iso`, as a CD-ROM), a raw disk (`.img`, `.raw`, as the first hard disk) or a unified
//! kernel image (`.efi`, loaded by the UEFI firmware). EFI images boot with OVMF. QEMU runs with `-nographic
//! -no-reboot`, so the serial console is its stdout and a guest power-off (or reboot) ends it.
//! lkb copies the console to its own stdout and, with `--console-log`, to a file; `--until`
//! ends the run at the first console line that matches, `--timeout` bounds it.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lkb_store::{Categorized, ErrorCategory};

/// How many console lines a failure shows.
pub const TAIL_LINES: usize = 40;

/// What `lkb run` cannot do, and why.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("no bootable image at {path}: looked for {}", .looked_for.join(", "))]
    NoImage {
        path: String,
        looked_for: Vec<String>,
    },
    #[error(
        "{path} is a {kind} image, which `lkb run qemu` cannot boot yet (kernel+initrd, ISO, raw disk and UKI only)"
    )]
    NotYet { path: String, kind: &'static str },
    #[error("no UEFI firmware at {path} (install the Debian package ovmf, or pass --fw)")]
    NoFirmware { path: String },
    #[error("cannot run {qemu}: {source} (install the Debian package {package})")]
    NoQemu {
        qemu: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid --until pattern: {0}")]
    BadPattern(#[from] regex::Error),
    #[error("invalid --disk {text:?}: {reason}")]
    BadDisk { text: String, reason: String },
    #[error("invalid --publish {text:?}: expected HOST:GUEST[/tcp|/udp]")]
    BadPublish { text: String },
    #[error("invalid --networking {text:?}: expected default, user or none")]
    BadNetworking { text: String },
    #[error("cannot create disk {path}: qemu-img said: {stderr}")]
    DiskCreate { path: String, stderr: String },
    #[error("invalid --timeout {text:?}: expected a number with an optional s, m or h suffix")]
    BadDuration { text: String },
    #[error("no console line matched --until within {timeout:?}; the last lines:\n{tail}")]
    TimedOut { timeout: Duration, tail: String },
    #[error("the guest stopped before a console line matched --until; the last lines:\n{tail}")]
    NoMatch { tail: String },
    #[error("{qemu} failed ({status}); the last lines:\n{tail}")]
    QemuFailed {
        qemu: String,
        status: String,
        tail: String,
    },
}

impl Categorized for RunError {
    fn category(&self) -> ErrorCategory {
        match self {
            RunError::NoQemu { .. }
            | RunError::NoFirmware { .. }
            | RunError::Read { .. }
            | RunError::QemuFailed { .. }
            | RunError::DiskCreate { .. } => ErrorCategory::Environment,
            _ => ErrorCategory::User,
        }
    }
}

/// A kernel+initrd build on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelInitrd {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    /// The command line (empty when the build wrote no `-cmdline` file).
    pub cmdline: String,
}

/// What `lkb run` boots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bootable {
    KernelInitrd(KernelInitrd),
    /// An ISO (`iso-bios`, `iso-efi`, …), as a CD-ROM.
    Iso(PathBuf),
    /// A raw disk (`raw-bios`, `raw-efi`), as the first hard disk.
    Disk(PathBuf),
    /// A unified kernel image, which the UEFI firmware loads as its kernel.
    Uki(PathBuf),
}

impl Bootable {
    /// Whether it needs UEFI firmware unless told: a UKI, and the images LinuxKit names
    /// `-efi` (`NAME-efi.img`, `NAME-efi.iso`, `NAME-efi-initrd.iso`).
    pub fn wants_uefi(&self) -> bool {
        let efi_name = |path: &Path| {
            path.file_stem()
                .and_then(|s| s.to_str())
                .is_some_and(|stem| stem.ends_with("-efi") || stem.ends_with("-efi-initrd"))
        };
        match self {
            Bootable::KernelInitrd(_) => false,
            Bootable::Uki(_) => true,
            Bootable::Iso(path) | Bootable::Disk(path) => efi_name(path),
        }
    }
}

/// How `path` is to be read: by its name, or as the flags force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ImageKind {
    #[default]
    Detect,
    /// `--kernel`: a kernel+initrd prefix.
    KernelInitrd,
    /// `--iso`.
    Iso,
}

/// Finds the image at `path`: a prefix of `-kernel`, `-initrd.img` and (optionally)
/// `-cmdline` files, the `-kernel` file itself, or an image file by its extension.
pub fn find_image(path: &Path, kind: ImageKind) -> Result<Bootable, RunError> {
    let text = path.display().to_string();
    let prefix = text.strip_suffix("-kernel").unwrap_or(&text).to_owned();
    let kernel = PathBuf::from(format!("{prefix}-kernel"));
    let initrd = PathBuf::from(format!("{prefix}-initrd.img"));
    if kind == ImageKind::Iso {
        return match path.is_file() {
            true => Ok(Bootable::Iso(path.to_path_buf())),
            false => Err(RunError::NoImage {
                path: text.clone(),
                looked_for: vec![text],
            }),
        };
    }
    if kernel.is_file() && initrd.is_file() {
        let cmdline_path = PathBuf::from(format!("{prefix}-cmdline"));
        let cmdline = match fs_err::read_to_string(&cmdline_path) {
            Ok(text) => text.trim().to_owned(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(RunError::Read {
                    path: cmdline_path.display().to_string(),
                    source,
                });
            }
        };
        return Ok(Bootable::KernelInitrd(KernelInitrd {
            kernel,
            initrd,
            cmdline,
        }));
    }
    let no_image = || RunError::NoImage {
        path: text.clone(),
        looked_for: vec![kernel.display().to_string(), initrd.display().to_string()],
    };
    if kind == ImageKind::KernelInitrd || !path.is_file() {
        return Err(no_image());
    }
    let file = path.to_path_buf();
    match path.extension().and_then(|e| e.to_str()) {
        Some("iso") => Ok(Bootable::Iso(file)),
        Some("img" | "raw") => Ok(Bootable::Disk(file)),
        Some("efi") => Ok(Bootable::Uki(file)),
        Some("qcow2") => Err(RunError::NotYet {
            path: text,
            kind: "qcow2",
        }),
        Some("vhd") => Err(RunError::NotYet {
            path: text,
            kind: "VHD",
        }),
        Some("vmdk") => Err(RunError::NotYet {
            path: text,
            kind: "VMDK",
        }),
        _ => Err(no_image()),
    }
}

/// Parses `90`, `90s`, `5m`, `1h`.
pub fn parse_duration(text: &str) -> Result<Duration, RunError> {
    let bad = || RunError::BadDuration {
        text: text.to_owned(),
    };
    let trimmed = text.trim();
    let (number, unit) = match trimmed.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(at) => trimmed.split_at(at),
        None => (trimmed, "s"),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let seconds = match unit {
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(bad()),
    };
    if !seconds.is_finite() || !(0.0..=1e9).contains(&seconds) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// A `--disk`: a file, its size when it has to be created, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    pub path: PathBuf,
    /// `qemu-img` size (`1G`, `512M`); LinuxKit's default is 1G.
    pub size: String,
    /// `qcow2` or `raw`.
    pub format: String,
}

/// Parses LinuxKit's `--disk [file=]PATH[,size=1G][,format=qcow2|raw]`.
pub fn parse_disk(text: &str) -> Result<Disk, RunError> {
    let bad = |reason: &str| RunError::BadDisk {
        text: text.to_owned(),
        reason: reason.to_owned(),
    };
    let mut disk = Disk {
        path: PathBuf::new(),
        size: "1G".to_owned(),
        format: String::new(),
    };
    for (i, part) in text.split(',').enumerate() {
        match part.split_once('=') {
            Some(("file", path)) => disk.path = PathBuf::from(path),
            Some(("size", size)) => disk.size = size.to_owned(),
            Some(("format", format)) => disk.format = format.to_owned(),
            Some((key, _)) => return Err(bad(&format!("unknown key `{key}`"))),
            None if i == 0 => disk.path = PathBuf::from(part),
            None => return Err(bad("expected key=value after the path")),
        }
    }
    if disk.path.as_os_str().is_empty() {
        return Err(bad("no file"));
    }
    if disk.format.is_empty() {
        let qcow2 = disk.path.extension().is_some_and(|ext| ext == "qcow2");
        disk.format = if qcow2 { "qcow2" } else { "raw" }.to_owned();
    }
    if !["qcow2", "raw"].contains(&disk.format.as_str()) {
        return Err(bad("format must be qcow2 or raw"));
    }
    Ok(disk)
}

/// Creates `disk` with `qemu-img` unless it exists.
pub fn ensure_disk(disk: &Disk) -> Result<(), RunError> {
    if disk.path.exists() {
        return Ok(());
    }
    let output = Command::new("qemu-img")
        .args(["create", "-f", &disk.format])
        .arg(&disk.path)
        .arg(&disk.size)
        .output()
        .map_err(|source| RunError::NoQemu {
            qemu: "qemu-img".to_owned(),
            package: "qemu-utils",
            source,
        })?;
    if !output.status.success() {
        return Err(RunError::DiskCreate {
            path: disk.path.display().to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(())
}

/// Guest networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networking {
    /// QEMU's user-mode network, with `--publish` port forwards.
    User {
        publish: Vec<String>,
    },
    None,
}

/// Parses `--networking` (`default` is `user`) with the `--publish HOST:GUEST[/PROTO]` list.
pub fn parse_networking(text: &str, publish: &[String]) -> Result<Networking, RunError> {
    let forwards = publish
        .iter()
        .map(|spec| {
            let bad = || RunError::BadPublish { text: spec.clone() };
            let (ports, proto) = match spec.split_once('/') {
                Some((ports, proto @ ("tcp" | "udp"))) => (ports, proto),
                Some(_) => return Err(bad()),
                None => (spec.as_str(), "tcp"),
            };
            let (host, guest) = ports.split_once(':').ok_or_else(bad)?;
            let port = |p: &str| p.parse::<u16>().map_err(|_| bad());
            Ok(format!(
                "hostfwd={proto}:127.0.0.1:{}-:{}",
                port(host)?,
                port(guest)?
            ))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match text {
        "default" | "user" => Ok(Networking::User { publish: forwards }),
        "none" if forwards.is_empty() => Ok(Networking::None),
        "none" => Err(RunError::BadPublish {
            text: publish.join(" "),
        }),
        _ => Err(RunError::BadNetworking {
            text: text.to_owned(),
        }),
    }
}

/// How to run QEMU.
#[derive(Debug, Clone)]
pub struct QemuRequest {
    pub image: Bootable,
    /// UEFI firmware (`-bios`), for EFI images; `None` is QEMU's SeaBIOS.
    pub firmware: Option<PathBuf>,
    pub qemu: String,
    pub cpus: u32,
    pub mem_mib: u32,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub until: Option<regex::Regex>,
    pub timeout: Option<Duration>,
    pub console_log: Option<PathBuf>,
    pub disks: Vec<Disk>,
    pub networking: Networking,
    /// Where to copy the console as it comes, if anywhere.
    pub echo: Option<Echo>,
}

/// Where the console goes besides the log file: the caller's stdout writer.
pub type Echo = fn(&[u8]);

/// How a run ended well.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The guest powered off (or rebooted, which `-no-reboot` turns into an exit).
    Stopped,
    /// A console line matched `--until`; QEMU was stopped.
    Matched(String),
}

/// Whether `/dev/kvm` can be used by this process.
pub fn kvm_usable() -> bool {
    fs_err::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// The QEMU command line for `request`.
pub fn qemu_args(request: &QemuRequest) -> Vec<String> {
    let image = &request.image;
    let mut args = vec![
        "-accel".to_owned(),
        request.accel.clone(),
        "-smp".to_owned(),
        request.cpus.to_string(),
        "-m".to_owned(),
        request.mem_mib.to_string(),
        "-nographic".to_owned(),
        "-no-reboot".to_owned(),
    ];
    if let Some(firmware) = &request.firmware {
        args.extend(["-bios".to_owned(), firmware.display().to_string()]);
    }
    // The image's own disk comes first, so the firmware boots it; `--disk`s follow.
    let mut first_disk = 0;
    match image {
        Bootable::KernelInitrd(image) => {
            args.extend(["-kernel".to_owned(), image.kernel.display().to_string()]);
            args.extend(["-initrd".to_owned(), image.initrd.display().to_string()]);
            if !image.cmdline.is_empty() {
                args.push("-append".to_owned());
                args.push(image.cmdline.clone());
            }
        }
        Bootable::Iso(path) => {
            args.extend(["-cdrom".to_owned(), path.display().to_string()]);
        }
        Bootable::Disk(path) => {
            args.push("-drive".to_owned());
            args.push(format!(
                "file={},format=raw,index=0,media=disk",
                path.display()
            ));
            first_disk = 1;
        }
        Bootable::Uki(path) => {
            args.extend(["-kernel".to_owned(), path.display().to_string()]);
        }
    }
    for (index, disk) in request.disks.iter().enumerate() {
        args.push("-drive".to_owned());
        args.push(format!(
            "file={},format={},index={},media=disk",
            disk.path.display(),
            disk.format,
            index + first_disk
        ));
    }
    match &request.networking {
        Networking::None => args.extend(["-nic".to_owned(), "none".to_owned()]),
        Networking::User { publish } => {
            let mut netdev = "user,id=net0".to_owned();
            for forward in publish {
                netdev.push(',');
                netdev.push_str(forward);
            }
            args.extend([
                "-netdev".to_owned(),
                netdev,
                "-device".to_owned(),
                "virtio-net-pci,netdev=net0".to_owned(),
            ]);
        }
    }
    args
}

/// Stops our own QEMU child by its PID and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Boots `request`, copying the console, until the guest stops, `--until` matches or
/// `--timeout` passes.
pub fn run_qemu(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    let mut log_file = match &request.console_log {
        Some(path) => Some(fs_err::File::create(path).map_err(|source| RunError::Read {
            path: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    for disk in &request.disks {
        ensure_disk(disk)?;
    }
    let mut child = Command::new(&request.qemu)
        .args(qemu_args(request))
        .stdin(if request.until.is_some() || request.timeout.is_some() {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| RunError::NoQemu {
            qemu: request.qemu.clone(),
            package: "qemu-system-x86, or pass --qemu",
            source,
        })?;
    // Both pipes feed one channel of lines; the readers end when QEMU closes them.
    let (lines, received) = mpsc::channel::<String>();
    let mut readers = Vec::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for pipe in [stdout, stderr].into_iter().flatten() {
        let lines = lines.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            while matches!(reader.read_until(b'\n', &mut buf), Ok(n) if n > 0) {
                let line = String::from_utf8_lossy(&buf).replace('\r', "");
                if lines.send(line).is_err() {
                    break;
                }
                buf.clear();
            }
        }));
    }
    drop(lines);

    let started = Instant::now();
    let mut tail: Vec<String> = Vec::new();
    let outcome = loop {
        let wait = match request.timeout {
            Some(limit) => match limit.checked_sub(started.elapsed()) {
                Some(left) => left.min(Duration::from_millis(200)),
                None => {
                    stop(&mut child);
                    break Err(RunError::TimedOut {
                        timeout: limit,
                        tail: tail.concat(),
                    });
                }
            },
            None => Duration::from_millis(200),
        };
        match received.recv_timeout(wait) {
            Ok(line) => {
                if let Some(echo) = request.echo {
                    echo(line.as_bytes());
                }
                if let Some(file) = &mut log_file {
                    let _ = file.write_all(line.as_bytes());
                }
                tail.push(line.clone());
                if tail.len() > TAIL_LINES {
                    tail.remove(0);
                }
                if let Some(pattern) = &request.until
                    && pattern.is_match(line.trim_end_matches('\n'))
                {
                    stop(&mut child);
                    break Ok(RunOutcome::Matched(line.trim_end().to_owned()));
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().map_err(|source| RunError::Read {
                    path: request.qemu.clone(),
                    source,
                })?;
                break if !status.success() {
                    Err(RunError::QemuFailed {
                        qemu: request.qemu.clone(),
                        status: status.to_string(),
                        tail: tail.concat(),
                    })
                } else if request.until.is_some() {
                    Err(RunError::NoMatch {
                        tail: tail.concat(),
                    })
                } else {
                    Ok(RunOutcome::Stopped)
                };
            }
        }
    };
    for reader in readers {
        let _ = reader.join();
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("90s").ok(), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2m").ok(), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5h").ok(), Some(Duration::from_secs(5400)));
        for bad in ["", "m", "5d", "-1", "1e99"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    fn kernel_initrd(found: Bootable) -> KernelInitrd {
        match found {
            Bootable::KernelInitrd(image) => image,
            other => panic!("not a kernel+initrd: {other:?}"),
        }
    }

    #[test]
    fn images_are_found_by_prefix_kernel_path_or_extension() {
        let dir = tempfile::tempdir().expect("temp dir");
        let prefix = dir.path().join("sshd");
        let missing = find_image(&prefix, ImageKind::Detect).expect_err("nothing there");
        assert!(matches!(missing, RunError::NoImage { .. }));
        assert!(missing.to_string().contains("sshd-initrd.img"), "{missing}");
        assert_eq!(missing.category(), ErrorCategory::User);

        fs_err::write(dir.path().join("sshd-kernel"), b"k").expect("write");
        fs_err::write(dir.path().join("sshd-initrd.img"), b"i").expect("write");
        let found = kernel_initrd(find_image(&prefix, ImageKind::Detect).expect("kernel+initrd"));
        assert_eq!(found.cmdline, "");
        fs_err::write(dir.path().join("sshd-cmdline"), b"console=ttyS0\n").expect("write");
        let found = find_image(&dir.path().join("sshd-kernel"), ImageKind::KernelInitrd);
        let found = kernel_initrd(found.expect("by kernel path"));
        assert_eq!(found.cmdline, "console=ttyS0");
        assert_eq!(found.initrd, dir.path().join("sshd-initrd.img"));

        for (name, efi) in [
            ("sshd.iso", false),
            ("sshd-efi.iso", true),
            ("sshd-efi-initrd.iso", true),
            ("sshd-bios.img", false),
            ("sshd-efi.img", true),
            ("sshd.efi", true),
        ] {
            let path = dir.path().join(name);
            fs_err::write(&path, b"x").expect("write");
            let found = find_image(&path, ImageKind::Detect).expect(name);
            assert_eq!(found.wants_uefi(), efi, "{name}: {found:?}");
        }
        let forced = find_image(&dir.path().join("sshd-bios.img"), ImageKind::Iso).expect("iso");
        assert_eq!(forced, Bootable::Iso(dir.path().join("sshd-bios.img")));

        fs_err::write(dir.path().join("disk.qcow2"), b"q").expect("write");
        let not_yet = find_image(&dir.path().join("disk.qcow2"), ImageKind::Detect);
        assert!(matches!(
            not_yet,
            Err(RunError::NotYet { kind: "qcow2", .. })
        ));
    }

    #[test]
    fn disks_and_networks_parse_as_linuxkit_spells_them() {
        let disk = parse_disk("data.img").expect("plain path");
        assert_eq!((disk.size.as_str(), disk.format.as_str()), ("1G", "raw"));
        let disk = parse_disk("file=/tmp/d.qcow2,size=512M").expect("keys");
        assert_eq!(
            (disk.size.as_str(), disk.format.as_str()),
            ("512M", "qcow2")
        );
        assert!(parse_disk("d.img,format=vdi").is_err());
        assert!(parse_disk("size=1G").is_err());
        assert!(parse_disk("d.img,bogus").is_err());
        assert_eq!(
            parse_networking("user", &["8080:80/udp".to_owned()]).expect("user"),
            Networking::User {
                publish: vec!["hostfwd=udp:127.0.0.1:8080-:80".to_owned()]
            }
        );
        assert_eq!(
            parse_networking("none", &[]).expect("none"),
            Networking::None
        );
        assert!(parse_networking("none", &["1:2".to_owned()]).is_err());
        assert!(parse_networking("tap", &[]).is_err());
        assert!(parse_networking("user", &["80".to_owned()]).is_err());
        assert!(parse_networking("user", &["1:2/sctp".to_owned()]).is_err());
    }

    #[test]
    fn qemu_arguments() {
        let request = QemuRequest {
            image: Bootable::KernelInitrd(KernelInitrd {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: "console=ttyS0".into(),
            }),
            firmware: None,
            qemu: "qemu-system-x86_64".into(),
            cpus: 2,
            mem_mib: 512,
            accel: "tcg".into(),
            until: None,
            timeout: None,
            console_log: None,
            disks: vec![parse_disk("file=d.qcow2,size=2G").expect("disk")],
            networking: parse_networking("default", &["2222:22".to_owned()]).expect("net"),
            echo: None,
        };
        assert_eq!(
            qemu_args(&request).join(" "),
            "-accel tcg -smp 2 -m 512 -nographic -no-reboot -kernel k -initrd i -append \
             console=ttyS0 -drive file=d.qcow2,format=qcow2,index=0,media=disk -netdev \
             user,id=net0,hostfwd=tcp:127.0.0.1:2222-:22 -device virtio-net-pci,netdev=net0"
        );
        let disk = QemuRequest {
            image: Bootable::Disk("x-efi.img".into()),
            firmware: Some("/ovmf.fd".into()),
            networking: Networking::None,
            ..request
        };
        assert_eq!(
            qemu_args(&disk).join(" "),
            "-accel tcg -smp 2 -m 512 -nographic -no-reboot -bios /ovmf.fd -drive \
             file=x-efi.img,format=raw,index=0,media=disk -drive \
             file=d.qcow2,format=qcow2,index=1,media=disk -nic none"
        );
    }

    #[test]
    fn a_missing_qemu_is_an_environment_error_naming_the_package() {
        let request = QemuRequest {
            image: Bootable::KernelInitrd(KernelInitrd {
                kernel: "k".into(),
                initrd: "i".into(),
                cmdline: String::new(),
            }),
            firmware: None,
            qemu: "/nonexistent/qemu-system-x86_64".into(),
            cpus: 1,
            mem_mib: 256,
            accel: "tcg".into(),
            until: None,
            timeout: Some(Duration::from_secs(1)),
            console_log: None,
            disks: Vec::new(),
            networking: Networking::None,
            echo: None,
        };
        let error = run_qemu(&request).expect_err("no qemu");
        assert_eq!(error.category(), ErrorCategory::Environment);
        assert!(error.to_string().contains("qemu-system-x86"), "{error}");
    }
}
