//! `lkb config`: print the merged, checked configuration of targets, as LinuxKit would write
//! it into a `metadata:` file (yaml.v2 YAML, or 4-space-indented JSON).
//!
//! One target prints one document. Several targets (a pattern, or several labels) print a
//! YAML stream with a `--- # <label>` line before each document, or one JSON value per
//! target, each on its own lines.

use lkb_rules::config::MetadataFormat;

use crate::args::{ConfigArgs, ConfigOutput, GlobalArgs};
use crate::commands::build::runtime;
use crate::ops::config::{ConfigRequest, config};
use crate::printer;
use crate::settings::Settings;

pub(crate) fn run(
    global: &GlobalArgs,
    args: &ConfigArgs,
    settings: &Settings,
) -> crate::errors::Result<()> {
    let req = ConfigRequest {
        targets: args.targets.clone(),
        resolved: args.resolved,
        format: match args.output {
            ConfigOutput::Yaml => MetadataFormat::Yaml,
            ConfigOutput::Json => MetadataFormat::Json,
        },
    };
    let notify = |line: &str| {
        if !global.quiet {
            printer::err(line);
        }
    };
    let configs = runtime()?.block_on(config(settings, &req, &notify))?;
    let several = configs.len() > 1;
    for target in configs {
        if several && args.output == ConfigOutput::Yaml {
            printer::out(&format!("--- # {}", target.label));
        }
        // `out` ends each text with a newline; YAML already has one.
        printer::out(target.text.strip_suffix('\n').unwrap_or(&target.text));
    }
    Ok(())
}
