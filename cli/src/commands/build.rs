//! `lkb build`.

use std::sync::Arc;

use anyhow::Context;
use lkb_engine::CancelToken;
use lkb_rules::formats::Format;

use lkb_rules::compress::Codec;

use crate::args::{BuildArgs, Compression, GlobalArgs};
use crate::ops::build::{BuildReport, BuildRequest, build, outputs_by_dir};
use crate::printer;
use crate::reporter::{CliReporter, JSON_VERSION};
use crate::settings::Settings;

pub(crate) fn run(
    global: &GlobalArgs,
    args: &BuildArgs,
    settings: &Settings,
    explain: bool,
) -> anyhow::Result<()> {
    let mut formats = Vec::new();
    for f in &args.formats {
        let format: Format = f.parse()?;
        if !formats.contains(&format) {
            formats.push(format);
        }
    }
    let req = BuildRequest {
        targets: args.targets.clone(),
        formats,
        dir: args.dir.clone(),
        name: args.name.clone(),
        jobs: args.jobs,
        arch: args.arch.clone(),
        locked: args.locked,
        offline: args.offline,
        pull: args.pull,
        rebuild: args.rebuild,
        codec: match args.initrd_compression {
            Compression::Gzip => Codec::Gzip { level: 6 },
            Compression::Zstd => Codec::Zstd { level: 3 },
            Compression::None => Codec::None,
        },
        check: args.check,
    };
    let reporter = Arc::new(CliReporter::new(global.progress, global.quiet, explain));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let cancel = CancelToken::new();
    let result = runtime.block_on(async {
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
        build(settings, &req, reporter.clone(), &notify, cancel.clone()).await
    });
    reporter.finish();
    let report = result?;
    summarize(&reporter, &report);
    Ok(())
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
    for (dir, names) in outputs_by_dir(&report.outputs) {
        printer::err(&format!("  {}/{{{}}}", dir.display(), names.join(",")));
    }
}

fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
