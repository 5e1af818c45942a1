//! One module per command; each turns arguments into an [`ops`](crate::ops) call and prints.

mod build;
mod cache;
mod config;
mod query;

use crate::args::{Cli, Command};
use crate::settings::Settings;

pub(crate) fn run(cli: &Cli, settings: &Settings) -> anyhow::Result<()> {
    match &cli.command {
        Command::Build(args) => build::run(&cli.global, args, settings, args.explain),
        Command::Explain(args) => build::explain(&cli.global, args, settings),
        Command::Query(args) => query::run(&cli.global, args, settings),
        Command::Config(args) => config::run(&cli.global, args, settings),
        Command::Cache(command) => cache::run(&cli.global, command, settings),
    }
}
