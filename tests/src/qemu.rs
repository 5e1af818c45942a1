//! Boots a kernel and initrd in `qemu-system-x86_64 -accel tcg` and watches the serial
//! console for a marker.
//!
//! The VM runs with `-nographic -no-reboot`, so the serial port is QEMU's stdout, and a
//! `poweroff -f` (or a panic, thanks to `panic=-1`) ends the process. The kernel command line
//! is the caller's followed by `console=ttyS0 panic=-1 lkb.example.poweroff`; the last
//! `console=` wins, so `/dev/console` is the serial port even when the caller lists
//! `console=tty0` and others, and the example init powers off once its services have started
//! ([`crate::examples::POWEROFF_FLAG`]).

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::examples::POWEROFF_FLAG;

/// The QEMU binary from Debian's `qemu-system-x86`.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// What to boot and how long to wait.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// bzImage.
    pub kernel: PathBuf,
    /// initrd (any compression the kernel understands, or concatenated cpio segments).
    pub initrd: PathBuf,
    /// Caller's command line; see [`full_cmdline`].
    pub cmdline: String,
    /// Text to wait for on the console.
    pub marker: String,
    /// Overall limit; the VM is killed when it is reached.
    pub timeout: Duration,
    /// `-m`, in MiB.
    pub memory_mib: u32,
    /// `-accel`, default `tcg` (no KVM needed).
    pub accel: String,
    /// Extra QEMU arguments.
    pub extra_args: Vec<String>,
}

impl BootOptions {
    /// TCG, 512 MiB, no extra arguments.
    pub fn new(
        kernel: &Path,
        initrd: &Path,
        cmdline: &str,
        marker: &str,
        timeout: Duration,
    ) -> Self {
        Self {
            kernel: kernel.to_owned(),
            initrd: initrd.to_owned(),
            cmdline: cmdline.to_owned(),
            marker: marker.to_owned(),
            timeout,
            memory_mib: 512,
            accel: "tcg".to_owned(),
            extra_args: Vec::new(),
        }
    }
}

/// What happened during a boot.
#[derive(Clone, Debug)]
pub struct BootReport {
    /// Serial console output (QEMU's stdout and stderr), `\r` removed.
    pub log: String,
    /// Time from spawn to the marker, if it appeared.
    pub marker_after: Option<Duration>,
    /// True when QEMU exited by itself (power off or reboot); false when it was killed.
    pub exited: bool,
    /// Time from spawn to exit or kill.
    pub elapsed: Duration,
}

impl BootReport {
    /// The last `lines` lines of the log.
    pub fn tail(&self, lines: usize) -> String {
        let all: Vec<&str> = self.log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// `"<cmdline> console=ttyS0 panic=-1 lkb.example.poweroff"` (no leading space when
/// `cmdline` is blank).
pub fn full_cmdline(cmdline: &str) -> String {
    let tail = format!("console=ttyS0 panic=-1 {POWEROFF_FLAG}");
    let cmdline = cmdline.trim();
    if cmdline.is_empty() {
        tail
    } else {
        format!("{cmdline} {tail}")
    }
}

/// Boots and returns the console log once `marker` has been seen and the VM has powered off.
/// If the VM is still running at `timeout` it is killed; that is only an error when the
/// marker never appeared.
pub fn boot_kernel_initrd(
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    marker: &str,
    timeout: Duration,
) -> anyhow::Result<String> {
    let report = boot(&BootOptions::new(kernel, initrd, cmdline, marker, timeout))?;
    if report.marker_after.is_none() {
        bail!(
            "marker {marker:?} not seen on the console ({}after {:.1?}); last lines:\n{}",
            if report.exited {
                "VM exited "
            } else {
                "VM killed "
            },
            report.elapsed,
            report.tail(40)
        );
    }
    Ok(report.log)
}

/// Boots and reports; never fails because of what the guest does, only when QEMU cannot run.
pub fn boot(options: &BootOptions) -> anyhow::Result<BootReport> {
    for (what, path) in [("kernel", &options.kernel), ("initrd", &options.initrd)] {
        if !path.is_file() {
            bail!("{what} {} does not exist", path.display());
        }
    }
    let mut args: Vec<OsString> = vec!["-kernel".into(), options.kernel.clone().into()];
    args.extend(["-initrd".into(), options.initrd.clone().into()]);
    args.extend(["-append".into(), full_cmdline(&options.cmdline).into()]);
    args.extend(options.extra_args.iter().map(OsString::from));
    run_vm(
        &VmOptions {
            memory_mib: options.memory_mib,
            accel: options.accel.clone(),
            marker: options.marker.clone(),
            timeout: options.timeout,
            stop_at_marker: false,
        },
        &args,
    )
}

/// UEFI firmware for x86-64 guests, from Debian's `ovmf`.
pub const OVMF: &str = "/usr/share/ovmf/OVMF.fd";

/// How a VM runs, whatever it boots.
#[derive(Clone, Debug)]
pub struct VmOptions {
    /// `-m`, in MiB.
    pub memory_mib: u32,
    /// `-accel`.
    pub accel: String,
    /// Text to wait for on the console.
    pub marker: String,
    /// Overall limit; the VM is killed when it is reached.
    pub timeout: Duration,
    /// Kill the VM as soon as the marker appears (for guests that never power off, such as a
    /// kernel that cannot mount its root file system).
    pub stop_at_marker: bool,
}

impl VmOptions {
    /// TCG with `memory_mib` MiB; waits for the guest to power off.
    pub fn tcg(memory_mib: u32, marker: &str, timeout: Duration) -> Self {
        VmOptions {
            memory_mib,
            accel: "tcg".to_owned(),
            marker: marker.to_owned(),
            timeout,
            stop_at_marker: false,
        }
    }
}

/// Boots what `args` describe (a disk, an ISO, firmware) with `-nographic -no-reboot`, the
/// serial console on stdout, and reports.
pub fn run_vm(options: &VmOptions, args: &[OsString]) -> anyhow::Result<BootReport> {
    let started = Instant::now();
    let mut child = Command::new(QEMU_BINARY)
        .args(["-accel", &options.accel])
        .args(["-m", &options.memory_mib.to_string()])
        .args(["-nographic", "-no-reboot"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {QEMU_BINARY} (Debian package qemu-system-x86)"))?;
    let log = Arc::new(Mutex::new(Vec::<u8>::new()));
    let mut readers = Vec::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for mut pipe in [stdout, stderr].into_iter().flatten() {
        let log = Arc::clone(&log);
        readers.push(thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock().expect("log lock").extend_from_slice(&buf[..n]);
            }
        }));
    }

    let marker = options.marker.as_bytes();
    let mut marker_after = None;
    let mut scanned: usize = 0;
    let exited = loop {
        if marker_after.is_none() {
            let log = log.lock().expect("log lock");
            // Re-scan a marker-sized overlap so a marker split across reads is found.
            let from = scanned.saturating_sub(marker.len());
            if !marker.is_empty() && log[from..].windows(marker.len()).any(|w| w == marker) {
                marker_after = Some(started.elapsed());
            }
            scanned = log.len();
        }
        if child.try_wait()?.is_some() {
            break true;
        }
        if options.stop_at_marker && marker_after.is_some() {
            // Give the console a moment to flush the rest of the line, then stop our child.
            thread::sleep(Duration::from_millis(500));
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        if started.elapsed() >= options.timeout {
            // Our own child, by its PID.
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    for reader in readers {
        let _ = reader.join();
    }
    let bytes = log.lock().expect("log lock").clone();
    if marker_after.is_none()
        && !marker.is_empty()
        && bytes.windows(marker.len()).any(|w| w == marker)
    {
        marker_after = Some(elapsed);
    }
    Ok(BootReport {
        log: String::from_utf8_lossy(&bytes).replace('\r', ""),
        marker_after,
        exited,
        elapsed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_gets_serial_console_last() {
        assert_eq!(
            full_cmdline(""),
            "console=ttyS0 panic=-1 lkb.example.poweroff"
        );
        assert_eq!(
            full_cmdline(" console=tty0 console=ttyS0 console=ttyAMA0 "),
            "console=tty0 console=ttyS0 console=ttyAMA0 console=ttyS0 panic=-1 \
             lkb.example.poweroff"
        );
    }
}
