//! `lkb run qemu IMAGE`: boot a build (or a label, built first) in QEMU.

use std::path::PathBuf;

use crate::args::{BuildArgs, Compression, GlobalArgs, RunArgs};
use crate::commands::build::build_with;
use crate::errors::{Error, UsageError};
use crate::ops::run::{
    ImageKind, QemuRequest, RunError, RunOutcome, find_image, kvm_usable, parse_disk,
    parse_duration, parse_networking, run_qemu,
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
    let path = if image.starts_with("//") {
        built_prefix(global, image, settings)?
    } else {
        PathBuf::from(image)
    };
    let kind = match (args.iso, args.kernel) {
        (true, _) => ImageKind::Iso,
        (_, true) => ImageKind::KernelInitrd,
        _ => ImageKind::Detect,
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
    let request = QemuRequest {
        image,
        firmware,
        qemu: args.qemu.clone(),
        cpus: args.cpus.max(1),
        mem_mib: args.mem.max(64),
        accel,
        until,
        timeout,
        console_log: args.console_log.clone(),
        disks: args
            .disk
            .iter()
            .map(|disk| parse_disk(disk))
            .collect::<Result<_, _>>()?,
        networking: parse_networking(&args.networking, &args.publish)?,
        echo: Some(printer::raw),
    };
    match run_qemu(&request)? {
        RunOutcome::Stopped => {}
        RunOutcome::Matched(line) => {
            if !global.quiet {
                printer::err(&format!("matched --until: {line}"));
            }
        }
    }
    Ok(())
}

/// Builds `label` (kernel+initrd) and returns the path prefix of what it wrote.
fn built_prefix(
    global: &GlobalArgs,
    label: &str,
    settings: &Settings,
) -> crate::errors::Result<PathBuf> {
    let build = BuildArgs {
        targets: vec![label.to_owned()],
        formats: vec!["kernel+initrd".to_owned()],
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
