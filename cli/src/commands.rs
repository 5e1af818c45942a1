//! One module per command; each turns arguments into an [`ops`](crate::ops) call and prints.

mod build;
mod cache;
mod config;
mod query;
mod run;

use crate::args::{Cli, Command};
use crate::settings::Settings;

pub(crate) fn run(cli: &Cli, settings: &Settings) -> crate::errors::Result<()> {
    match &cli.command {
        Command::Build(args) => build::run(&cli.global, args, settings, args.explain),
        Command::Explain(args) => build::explain(&cli.global, args, settings),
        Command::Query(args) => query::run(&cli.global, args, settings),
        Command::Config(args) => config::run(&cli.global, args, settings),
        Command::Cache(command) => cache::run(&cli.global, command, settings),
        Command::Run(args) => run::run(&cli.global, args, settings),
    }
}

/// A byte count for people: `12 B`, `1.5 KiB`, … up to TiB, one decimal.
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
