//! `lkb run qemu`: boots what a build wrote in QEMU, watching its serial console.
//!
//! The image is found from the path LinuxKit's `run qemu` takes: a prefix (`out/sshd` →
//! `sshd-kernel`, `sshd-initrd.img`, `sshd-cmdline`; or `sshd-kernel` with
//! `sshd-squashfs.img`, the root file system as the first disk), or an image file by its
//! extension: an ISO (`.iso`, as a CD-ROM), a disk (`.img`, `.raw`, `.qcow2`, `.vhd`, `.vmdk`,
//! as the first hard disk through QEMU's driver for it) or a unified kernel image (`.efi`,
//! loaded by the UEFI firmware). EFI images boot with OVMF. QEMU runs with `-nographic
//! -no-reboot`, so the serial console is its stdout and a guest power-off (or reboot) ends it.
//! lkb copies the console to its own stdout and, with `--console-log`, to a file; `--until`
//! ends the run at the first console line that matches, `--timeout` bounds it.
//!
//! A run keeps its files in a state directory ([`StateDir`]): `qemu.pid`, `mac-addr`,
//! `data.iso` (`--data`), the disks `--disk size=…` creates, and `console.log` when detached.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lkb_store::{Categorized, ErrorCategory};

mod image;
mod state;

pub use image::*;
pub use state::*;

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
    #[error("{path} is a {kind}, which `lkb run qemu` cannot boot; boot {instead} instead")]
    NotBootable {
        path: String,
        kind: &'static str,
        instead: &'static str,
    },
    #[error("no UEFI firmware at {path} (install the Debian package ovmf, or pass --fw)")]
    NoFirmware { path: String },
    #[error("cannot run {qemu}: {source} (install the Debian package {package})")]
    NoQemu {
        qemu: String,
        package: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid --arch {text:?}: expected amd64 (x86_64) or arm64 (aarch64)")]
    BadArch { text: String },
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
    #[error(
        "invalid --networking {text:?}: expected default, user, tap[,NAME], bridge[,NAME] or none"
    )]
    BadNetworking { text: String },
    #[error("cannot create disk {path}: qemu-img said: {stderr}")]
    DiskCreate { path: String, stderr: String },
    #[error("no --data-file at {path}")]
    NoDataFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the data ISO {path}")]
    DataIso {
        path: String,
        #[source]
        source: lkb_disk::DiskError,
    },
    #[error("{path} holds no MAC address ({text:?}); remove it to have a new one made")]
    BadMac { path: String, text: String },
    #[error("{qemu} did not start in the background; it said: {stderr}")]
    DetachFailed { qemu: String, stderr: String },
    #[error("interrupted by {signal}: QEMU was stopped")]
    Interrupted { signal: &'static str },
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
            | RunError::Write { .. }
            | RunError::DataIso { .. }
            | RunError::BadMac { .. }
            | RunError::DetachFailed { .. }
            | RunError::QemuFailed { .. }
            | RunError::DiskCreate { .. } => ErrorCategory::Environment,
            _ => ErrorCategory::User,
        }
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

/// Guest networking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Networking {
    /// QEMU's user-mode network, with `--publish` port forwards.
    User {
        publish: Vec<String>,
    },
    /// An existing host tap interface (`tap0` unless named); needs the rights to open it.
    Tap {
        ifname: String,
    },
    /// A host bridge through qemu-bridge-helper (`virbr0` unless named).
    Bridge {
        name: String,
    },
    None,
}

impl Networking {
    /// Whether the guest gets a NIC (and so a MAC address).
    pub fn has_nic(&self) -> bool {
        !matches!(self, Networking::None)
    }
}

/// The guest architecture of `lkb run` (`--arch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Amd64,
    Arm64,
}

impl Arch {
    /// `amd64`/`x86_64`, `arm64`/`aarch64`; default: the host's.
    pub fn parse(text: Option<&str>) -> Result<Arch, RunError> {
        match text.unwrap_or(std::env::consts::ARCH) {
            "amd64" | "x86_64" => Ok(Arch::Amd64),
            "arm64" | "aarch64" => Ok(Arch::Arm64),
            other => Err(RunError::BadArch {
                text: other.to_owned(),
            }),
        }
    }

    /// The QEMU binary for this architecture.
    pub fn qemu(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86_64",
            Arch::Arm64 => "qemu-system-aarch64",
        }
    }

    /// The Debian package that has [`Arch::qemu`], for the error when it is missing.
    pub fn package(self) -> &'static str {
        match self {
            Arch::Amd64 => "qemu-system-x86, or pass --qemu",
            Arch::Arm64 => "qemu-system-arm, or pass --qemu",
        }
    }
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
    let (mode, name) = match text.split_once(',') {
        Some((mode, name)) if !name.is_empty() => (mode, Some(name)),
        Some(_) => ("", None),
        None => (text, None),
    };
    let networking = match (mode, name) {
        ("default" | "user", None) => return Ok(Networking::User { publish: forwards }),
        ("tap", name) => Networking::Tap {
            ifname: name.unwrap_or("tap0").to_owned(),
        },
        ("bridge", name) => Networking::Bridge {
            name: name.unwrap_or("virbr0").to_owned(),
        },
        ("none", None) => Networking::None,
        _ => {
            return Err(RunError::BadNetworking {
                text: text.to_owned(),
            });
        }
    };
    // Port forwards are a feature of QEMU's user-mode network only.
    if !forwards.is_empty() {
        return Err(RunError::BadPublish {
            text: publish.join(" "),
        });
    }
    Ok(networking)
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
    /// Placed disks (every one has a file).
    pub disks: Vec<Disk>,
    pub networking: Networking,
    /// The NIC's MAC address (from the state directory's `mac-addr`).
    pub mac: Option<String>,
    /// `STATE/data.iso`, attached as one more CD-ROM.
    pub data_iso: Option<PathBuf>,
    /// The state directory: `qemu.pid`, and `console.log` when detached.
    pub state: PathBuf,
    /// Start QEMU in the background and return.
    pub detached: bool,
    /// A display window (the console still goes to the terminal, on the serial port).
    pub gui: bool,
    pub arch: Arch,
    /// Where to copy the console as it comes, if anywhere.
    pub echo: Option<Echo>,
}

impl QemuRequest {
    /// `STATE/qemu.pid`, which QEMU writes (`-pidfile`) and removes when it exits.
    pub fn pid_file(&self) -> PathBuf {
        self.state.join("qemu.pid")
    }

    /// `STATE/console.log`, the console of a detached QEMU.
    pub fn detached_console(&self) -> PathBuf {
        self.state.join("console.log")
    }
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
    /// `--detached`: QEMU runs in the background with this pid.
    Detached { pid: u32 },
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
    ];
    if request.arch == Arch::Arm64 {
        // The generic board; `max` is every feature TCG emulates, `host` under KVM.
        let cpu = if request.accel == "kvm" {
            "host"
        } else {
            "max"
        };
        args.extend(["-machine", "virt", "-cpu", cpu].map(str::to_owned));
    }
    if request.detached {
        // `-nographic` puts the console on stdio, which a daemon does not have.
        args.extend(
            [
                "-display",
                "none",
                "-monitor",
                "none",
                "-serial",
                &format!("file:{}", request.detached_console().display()),
                "-daemonize",
            ]
            .map(str::to_owned),
        );
    } else if request.gui {
        // A window for the display; the serial console (and the monitor) stay on stdio, so
        // --until and --console-log keep working.
        args.extend(["-serial", "mon:stdio"].map(str::to_owned));
    } else {
        args.push("-nographic".to_owned());
    }
    args.push("-no-reboot".to_owned());
    args.extend([
        "-pidfile".to_owned(),
        request.pid_file().display().to_string(),
    ]);
    if let Some(firmware) = &request.firmware {
        args.extend(["-bios".to_owned(), firmware.display().to_string()]);
    }
    // The image's own disk comes first, so the firmware boots it; `--disk`s follow.
    let mut first_disk = 0;
    let first_drive = |path: &Path, format: DriveFormat| {
        format!(
            "file={},format={},index=0,media=disk",
            path.display(),
            format.qemu_name()
        )
    };
    match image {
        Bootable::KernelInitrd(image) => {
            args.extend(["-kernel".to_owned(), image.kernel.display().to_string()]);
            args.extend(["-initrd".to_owned(), image.initrd.display().to_string()]);
            if !image.cmdline.is_empty() {
                args.push("-append".to_owned());
                args.push(image.cmdline.clone());
            }
        }
        Bootable::KernelSquashfs(image) => {
            args.extend(["-kernel".to_owned(), image.kernel.display().to_string()]);
            let cmdline = match image.cmdline.as_str() {
                "" => "root=/dev/sda".to_owned(),
                cmdline => format!("{cmdline} root=/dev/sda"),
            };
            args.extend(["-append".to_owned(), cmdline]);
            args.push("-drive".to_owned());
            args.push(first_drive(&image.squashfs, DriveFormat::Raw));
            first_disk = 1;
        }
        Bootable::Iso(path) => {
            args.extend(["-cdrom".to_owned(), path.display().to_string()]);
        }
        Bootable::Disk(path, format) => {
            args.push("-drive".to_owned());
            args.push(first_drive(path, *format));
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
            disk.file().display(),
            disk.format,
            index + first_disk
        ));
    }
    // After the numbered drives: a CD-ROM without an index takes the first free slot.
    if let Some(data) = &request.data_iso {
        args.push("-drive".to_owned());
        let drive = format!("file={},format=raw,media=cdrom,readonly=on", data.display());
        args.push(drive);
    }
    match &request.networking {
        Networking::None => args.extend(["-nic".to_owned(), "none".to_owned()]),
        Networking::User { publish } => {
            let mut netdev = "user,id=net0".to_owned();
            for forward in publish {
                netdev.push(',');
                netdev.push_str(forward);
            }
            args.extend(nic(netdev, request.mac.as_deref()));
        }
        Networking::Tap { ifname } => {
            let netdev = format!("tap,id=net0,ifname={ifname},script=no,downscript=no");
            args.extend(nic(netdev, request.mac.as_deref()));
        }
        Networking::Bridge { name } => {
            let netdev = format!("bridge,id=net0,br={name}");
            args.extend(nic(netdev, request.mac.as_deref()));
        }
    }
    args
}

/// A virtio NIC on `netdev` (whose id is `net0`).
fn nic(netdev: String, mac: Option<&str>) -> [String; 4] {
    let mut device = "virtio-net-pci,netdev=net0".to_owned();
    if let Some(mac) = mac {
        device.push_str(&format!(",mac={mac}"));
    }
    ["-netdev".to_owned(), netdev, "-device".to_owned(), device]
}

/// `qemu ARGS` as one line a shell reads back as the same words (`--dry-run`).
pub fn shell_line(qemu: &str, args: &[String]) -> String {
    std::iter::once(qemu)
        .chain(args.iter().map(String::as_str))
        .map(|word| {
            let plain = !word.is_empty()
                && word
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_./,=:+@%".contains(&b));
            if plain {
                word.to_owned()
            } else {
                format!("'{}'", word.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Stops our own QEMU child by its PID and reaps it.
fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The spawn error for a QEMU that cannot be started.
fn no_qemu(request: &QemuRequest) -> impl FnOnce(std::io::Error) -> RunError + '_ {
    |source| RunError::NoQemu {
        qemu: request.qemu.clone(),
        package: request.arch.package(),
        source,
    }
}

/// Prepares what QEMU reads and writes: the disks `--disk` names (created when missing).
fn prepare(request: &QemuRequest) -> Result<(), RunError> {
    for disk in &request.disks {
        ensure_disk(disk)?;
    }
    Ok(())
}

/// Starts QEMU in the background (`-daemonize`: QEMU returns once the VM is set up, so a
/// bad argument is still reported here) and returns its pid from `STATE/qemu.pid`.
fn run_detached(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    prepare(request)?;
    let output = Command::new(&request.qemu)
        .args(qemu_args(request))
        .stdin(Stdio::null())
        .output()
        .map_err(no_qemu(request))?;
    let failed = |detail: &str| RunError::DetachFailed {
        qemu: request.qemu.clone(),
        stderr: format!("{detail}{}", String::from_utf8_lossy(&output.stderr).trim()),
    };
    if !output.status.success() {
        return Err(failed(""));
    }
    let pid_file = request.pid_file();
    let pid = fs_err::read_to_string(&pid_file)
        .ok()
        .and_then(|text| text.trim().parse::<u32>().ok())
        .ok_or_else(|| failed(&format!("no pid in {}. ", pid_file.display())))?;
    Ok(RunOutcome::Detached { pid })
}

/// Set by SIGINT or SIGTERM while QEMU runs in the foreground.
#[derive(Debug, Clone, Default)]
struct Interrupt(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl Interrupt {
    const INT: u8 = 1;
    const TERM: u8 = 2;

    /// Starts watching for SIGINT and SIGTERM (which no longer end lkb at once) on a thread
    /// of its own, with a one-thread tokio runtime.
    fn watch() -> Interrupt {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = Interrupt::default();
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
        else {
            return interrupt;
        };
        let signals = {
            let _entered = runtime.enter();
            signal(SignalKind::interrupt())
                .and_then(|int| Ok((int, signal(SignalKind::terminate())?)))
        };
        let Ok((mut int, mut term)) = signals else {
            return interrupt;
        };
        let flag = interrupt.clone();
        std::thread::spawn(move || {
            runtime.block_on(async move {
                let which = tokio::select! {
                    _ = int.recv() => Interrupt::INT,
                    _ = term.recv() => Interrupt::TERM,
                };
                flag.0.store(which, std::sync::atomic::Ordering::SeqCst);
                // Later signals are swallowed here: the run is already stopping.
                loop {
                    tokio::select! {
                        _ = int.recv() => {},
                        _ = term.recv() => {},
                    }
                }
            });
        });
        interrupt
    }

    /// The signal that came, if one did.
    fn received(&self) -> Option<&'static str> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            Interrupt::INT => Some("SIGINT"),
            Interrupt::TERM => Some("SIGTERM"),
            _ => None,
        }
    }
}

/// Boots `request`, copying the console, until the guest stops, `--until` matches,
/// `--timeout` passes or lkb gets SIGINT/SIGTERM (QEMU is stopped in every case); with
/// `detached`, starts it in the background instead.
pub fn run_qemu(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    if request.detached {
        return run_detached(request);
    }
    let outcome = run_foreground(request);
    // QEMU removes its pid file when it exits by itself, not when it is killed.
    let _ = fs_err::remove_file(request.pid_file());
    outcome
}

fn run_foreground(request: &QemuRequest) -> Result<RunOutcome, RunError> {
    let mut log_file = match &request.console_log {
        Some(path) => Some(fs_err::File::create(path).map_err(|source| RunError::Read {
            path: path.display().to_string(),
            source,
        })?),
        None => None,
    };
    prepare(request)?;
    let interrupt = Interrupt::watch();
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
        .map_err(no_qemu(request))?;
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
        if let Some(signal) = interrupt.received() {
            stop(&mut child);
            break Err(RunError::Interrupted { signal });
        }
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
mod tests;
