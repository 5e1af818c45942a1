//! `lkb run qemu IMAGE`: boot a build (or a label, built first) in QEMU.

use std::path::PathBuf;

use crate::args::{BuildArgs, Compression, GlobalArgs, RemoteArgs, RunArgs};
use crate::commands::build::build_with;
use crate::errors::{Error, UsageError};
use crate::ops::run::{
    Arch, ImageKind, QemuRequest, RunError, RunOutcome, StateDir, find_image, kvm_usable,
    parse_disk, parse_duration, parse_networking, qemu_args, run_qemu, shell_line,
};
use crate::printer;
use crate::reporter::Explain;
use crate::settings::Settings;

pub(crate) fn run(
    global: &GlobalArgs,
    args: &RunArgs,
    settings: &Settings,
) -> crate::errors::Result<()> {
    let image = match args.image.as_slice() {
        [backend, image] if backend == "qemu" => image,
        [backend, _] => {
            return Err(UsageError(format!(
                "unknown backend `{backend}`: lkb runs images in qemu only (`lkb run qemu IMAGE`)"
            ))
            .into());
        }
        [image] if image != "qemu" => image,
        _ => return Err(UsageError("`lkb run qemu` needs an IMAGE to boot".into()).into()),
    };
    let until = args.until.as_deref().map(regex::Regex::new).transpose();
    let until = until.map_err(crate::ops::run::RunError::from)?;
    let timeout = args.timeout.as_deref().map(parse_duration).transpose()?;
    let label = image.starts_with("//");
    let path = match label {
        true => {
            let format = match args.squashfs {
                true => "kernel+squashfs",
                false => "kernel+initrd",
            };
            built_prefix(global, image, format, settings, &args.remote)?
        }
        false => PathBuf::from(image),
    };
    let kind = match (args.iso, args.kernel, args.squashfs) {
        (true, _, _) => ImageKind::Iso,
        (_, true, _) => ImageKind::KernelInitrd,
        (_, _, true) => ImageKind::KernelSquashfs,
        // What the build just wrote, even if an earlier one left a squashfs beside it.
        _ if label => ImageKind::KernelInitrd,
        _ => ImageKind::Detect,
    };
    let mut disks = args
        .disk
        .iter()
        .map(|disk| parse_disk(disk))
        .collect::<Result<Vec<_>, _>>()?;
    let networking = parse_networking(&args.networking, &args.publish)?;
    let arch = Arch::parse(args.arch.as_deref())?;
    let data = match (&args.data, &args.data_file) {
        (Some(data), _) => Some(data.clone().into_bytes()),
        (None, Some(path)) => Some(fs_err::read(path).map_err(|source| RunError::NoDataFile {
            path: path.display().to_string(),
            source,
        })?),
        (None, None) => None,
    };
    let image = find_image(&path, kind)?;
    let firmware = if args.uefi || image.wants_uefi() {
        if !args.fw.is_file() {
            return Err(RunError::NoFirmware {
                path: args.fw.display().to_string(),
            }
            .into());
        }
        Some(args.fw.clone())
    } else {
        None
    };
    let accel = match &args.accel {
        Some(accel) => accel.clone(),
        None if kvm_usable() => "kvm".to_owned(),
        None => {
            if !global.quiet {
                printer::err("note: /dev/kvm is not usable; running with -accel tcg (slower)");
            }
            "tcg".to_owned()
        }
    };
    // The state directory last, so bad input leaves nothing behind.
    let mut state = StateDir::open(args.state.as_deref())?;
    for (index, disk) in disks.iter_mut().enumerate() {
        disk.place(index, state.path());
    }
    let mac = match networking.has_nic() {
        true => Some(state.mac_address()?),
        false => None,
    };
    let data_iso = data.map(|data| state.write_data_iso(&data)).transpose()?;
    let request = QemuRequest {
        image,
        firmware,
        qemu: args.qemu.clone().unwrap_or_else(|| arch.qemu().to_owned()),
        cpus: args.cpus.max(1),
        mem_mib: args.mem.max(64),
        accel,
        until,
        timeout,
        console_log: args.console_log.clone(),
        disks,
        networking,
        mac,
        data_iso,
        state: state.path().to_path_buf(),
        detached: args.detached,
        gui: args.gui,
        arch,
        echo: Some(printer::raw),
    };
    if args.dry_run {
        printer::out(&shell_line(&request.qemu, &qemu_args(&request)));
        return Ok(());
    }
    match run_qemu(&request)? {
        RunOutcome::Stopped => {}
        RunOutcome::Matched(line) => {
            if !global.quiet {
                printer::err(&format!("matched --until: {line}"));
            }
        }
        RunOutcome::Detached { pid } => {
            state.keep();
            printer::out(&format!("pid: {pid}"));
            printer::out(&format!("state: {}", state.path().display()));
            if !global.quiet {
                printer::err(&format!(
                    "QEMU runs in the background, its console in {}; stop it with: kill $(cat {})",
                    request.detached_console().display(),
                    request.pid_file().display()
                ));
            }
        }
    }
    Ok(())
}

/// Builds `label` as `format` (kernel+initrd or kernel+squashfs) and returns the path prefix
/// of what it wrote.
fn built_prefix(
    global: &GlobalArgs,
    label: &str,
    format: &str,
    settings: &Settings,
    remote: &RemoteArgs,
) -> crate::errors::Result<PathBuf> {
    let build = BuildArgs {
        targets: vec![label.to_owned()],
        formats: vec![format.to_owned()],
        dir: None,
        name: None,
        jobs: None,
        arch: None,
        locked: false,
        offline: false,
        pull: false,
        rebuild: false,
        explain: false,
        check: false,
        initrd_compression: Compression::Gzip,
        no_sbom: false,
        size: None,
        remote: remote.clone(),
    };
    let report = build_with(global, &build, settings, Explain::Off)?;
    if report.targets.len() != 1 {
        return Err(UsageError(format!(
            "`lkb run` boots one target; {label} is {} targets",
            report.targets.len()
        ))
        .into());
    }
    let kernel = report.outputs.iter().find_map(|path| {
        path.display()
            .to_string()
            .strip_suffix("-kernel")
            .map(PathBuf::from)
    });
    kernel.ok_or_else(|| Error::user(format!("{label} has no kernel to boot")))
}
