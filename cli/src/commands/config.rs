//! `lkb config`.

use crate::args::{ConfigArgs, GlobalArgs};
use crate::settings::Settings;

pub(crate) fn run(
    _global: &GlobalArgs,
    _args: &ConfigArgs,
    _settings: &Settings,
) -> anyhow::Result<()> {
    anyhow::bail!(crate::errors::UsageError(
        "`lkb config` is being written".into()
    ))
}
