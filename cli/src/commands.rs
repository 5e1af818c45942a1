//! One module per command; each turns arguments into an [`ops`](crate::ops) call and prints.

mod build;

use crate::args::{Cli, Command};
use crate::settings::Settings;

pub(crate) fn run(cli: &Cli, settings: &Settings) -> anyhow::Result<()> {
    match &cli.command {
        Command::Build(args) => build::run(&cli.global, args, settings),
    }
}
