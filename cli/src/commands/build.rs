//! `lkb build` and `lkb explain` (a build that prints why each executed action ran).

use std::sync::Arc;

use crate::errors::Context;
use lkb_engine::{BuildError, CancelToken};
use lkb_rules::formats::Format;

use lkb_rules::compress::Codec;

use super::human_bytes;
use crate::args::{BuildArgs, Compression, GlobalArgs, RemoteDownload};
use crate::ops::build::{BuildReport, BuildRequest, RemoteRequest, execute, outputs_by_dir};
use crate::ops::plan::{PlanRequest, plan};
use crate::printer;
use crate::reporter::{CliReporter, Explain, JSON_VERSION};
use crate::settings::Settings;

/// Output formats from `-f`, in order, without repeats.
pub(crate) fn parse_formats(args: &[String]) -> crate::errors::Result<Vec<Format>> {
    let mut formats = Vec::new();
    for f in args {
        let format: Format = f.parse()?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    Ok(formats)
}

/// The segment codec of `--initrd-compression`.
pub(crate) fn codec(compression: Compression) -> Codec {
    match compression {
        Compression::Gzip => Codec::default(),
        Compression::Zstd => Codec::Zstd { level: 3 },
        Compression::None => Codec::None,
    }
}

/// The async runtime commands run their operation on.
///
/// The blocking pool is not capped: blob writers block waiting for data that async readers
/// produce, and those readers (`tokio::fs`) need blocking threads too, so a small cap can
/// deadlock. Memory per thread is bounded by capping malloc arenas instead (`lib.rs`).
pub(crate) fn runtime() -> crate::errors::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// `lkb build`; with `--explain` (`explain`) each executed action's line says why it ran.
pub(crate) fn run(
    global: &GlobalArgs,
    args: &BuildArgs,
    settings: &Settings,
    explain: bool,
) -> crate::errors::Result<()> {
    let explain = if explain {
        Explain::Progress
    } else {
        Explain::Off
    };
    build_with(global, args, settings, explain).map(drop)
}

/// `lkb explain`: a build whose result is one line per executed action on stdout.
pub(crate) fn explain(
    global: &GlobalArgs,
    args: &BuildArgs,
    settings: &Settings,
) -> crate::errors::Result<()> {
    build_with(global, args, settings, Explain::Only).map(drop)
}

/// Builds as `lkb build` does and returns what it wrote.
pub(crate) fn build_with(
    global: &GlobalArgs,
    args: &BuildArgs,
    settings: &Settings,
    explain: Explain,
) -> crate::errors::Result<BuildReport> {
    let req = BuildRequest {
        plan: PlanRequest {
            targets: args.targets.clone(),
            formats: parse_formats(&args.formats)?,
            dir: args.dir.clone(),
            name: args.name.clone(),
            arch: args.arch.clone(),
            locked: args.locked,
            offline: args.offline,
            pull: args.pull,
            codec: codec(args.initrd_compression),
            no_sbom: args.no_sbom,
            size: args.size,
        },
        jobs: args.jobs,
        rebuild: args.rebuild,
        check: args.check,
        remote: RemoteRequest {
            url: args.remote.remote_cache.clone(),
            upload: args.remote.remote_upload,
            download: match args.remote.remote_download {
                RemoteDownload::Outputs => lkb_engine::Download::Outputs,
                RemoteDownload::All => lkb_engine::Download::All,
            },
            ca_cert: args.remote.remote_ca_cert.clone(),
            credentials: settings.remote_credentials.clone(),
            timeout: std::time::Duration::from_secs(args.remote.remote_timeout.max(1)),
        },
    };
    let reporter = Arc::new(CliReporter::new(global.progress, global.quiet, explain));
    let runtime = runtime()?;
    let cancel = CancelToken::new();
    let result: crate::errors::Result<BuildReport> = runtime.block_on(async {
        let on_ctrl_c = cancel.clone();
        let notifier = Arc::clone(&reporter);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                notifier.line(
                    "interrupted: finishing running actions, then stopping (Ctrl-C again to abort)",
                );
                on_ctrl_c.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::abort();
                }
            }
        });
        let notify = |line: &str| reporter.line(line);
        // Planning (store lock wait, registry requests) stops at Ctrl-C too; execution stops
        // through the scheduler, which lets running actions finish.
        let plan = tokio::select! {
            plan = plan(settings, &req.plan, &notify) => plan?,
            () = cancel.cancelled() => return Err(BuildError::Cancelled.into()),
        };
        reporter.images_moved(&plan.moved);
        let report = execute(plan, &req, reporter.clone(), cancel.clone()).await?;
        if cancel.is_cancelled() {
            // Interrupted after the last action finished (while writing outputs).
            return Err(BuildError::Cancelled.into());
        }
        Ok(report)
    });
    // Do not wait for a blocking thread still waiting for the store lock.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    reporter.finish();
    let report = result?;
    summarize(&reporter, &report);
    Ok(report)
}

fn summarize(reporter: &CliReporter, report: &BuildReport) {
    let s = &report.stats;
    let fetched = s.counters.get("bytes_fetched").copied().unwrap_or(0);
    if reporter.is_json() {
        let summary = serde_json::json!({
            "v": JSON_VERSION,
            "event": "summary",
            "ok": true,
            "targets": report.targets,
            "actions": { "total": s.total, "cached": s.cached, "executed": s.executed },
            "bytes_fetched": fetched,
            "remote_hits": s.remote.as_ref().map_or(0, |r| r.hits),
            "remote_misses": s.remote.as_ref().map_or(0, |r| r.misses),
            "bytes_downloaded": s.remote.as_ref().map_or(0, |r| r.bytes_downloaded),
            "bytes_uploaded": s.remote.as_ref().map_or(0, |r| r.bytes_uploaded),
            "wall_ms": s.wall.as_millis() as u64,
            "outputs": report.outputs,
        });
        printer::err(&summary.to_string());
        return;
    }
    if reporter.is_silent() {
        return;
    }
    printer::err(&format!(
        "Built {} in {:.2}s: {} actions, {} cached, {} executed, {} fetched",
        report.targets.join(" "),
        s.wall.as_secs_f64(),
        s.total,
        s.cached,
        s.executed,
        human_bytes(fetched)
    ));
    if let Some(remote) = &s.remote {
        printer::err(&format!(
            "  remote cache: {} hits, {} misses, {} results uploaded, {} down, {} up{}",
            remote.hits,
            remote.misses,
            remote.uploads,
            human_bytes(remote.bytes_downloaded),
            human_bytes(remote.bytes_uploaded),
            if remote.disabled {
                " (given up on: see the warning)"
            } else {
                ""
            }
        ));
    }
    for (dir, names) in outputs_by_dir(&report.outputs) {
        printer::err(&format!("  {}/{{{}}}", dir.display(), names.join(",")));
    }
}
