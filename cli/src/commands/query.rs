//! `lkb query`: print the action graph of targets without building them.

use crate::args::{GlobalArgs, QueryArgs, QueryOutput};
use crate::commands::build::{codec, parse_formats, runtime};
use crate::ops::plan::PlanRequest;
use crate::ops::query::query;
use crate::printer;
use crate::settings::Settings;

pub(crate) fn run(
    global: &GlobalArgs,
    args: &QueryArgs,
    settings: &Settings,
) -> crate::errors::Result<()> {
    let req = PlanRequest {
        targets: args.targets.clone(),
        formats: parse_formats(&args.formats)?,
        arch: args.arch.clone(),
        offline: args.offline,
        codec: codec(args.initrd_compression),
        no_sbom: args.no_sbom,
        size: args.size,
        ..PlanRequest::default()
    };
    let notify = |line: &str| {
        if !global.quiet {
            printer::err(line);
        }
    };
    let report = runtime()?.block_on(query(settings, &req, &notify))?;
    match args.output {
        QueryOutput::Text => printer::out(&report.text()),
        QueryOutput::Dot => printer::out(&report.dot()),
        QueryOutput::Json => printer::out(&crate::errors::json_text(&report.json())?),
    }
    if !global.quiet && args.output == QueryOutput::Text {
        let (total, cached) = report.counts();
        printer::err(&format!(
            "{total} actions: {cached} cached, {} not cached",
            total - cached
        ));
    }
    Ok(())
}
