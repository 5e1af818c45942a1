//! `lkb cache`.

use crate::args::{CacheCommand, GlobalArgs};
use crate::settings::Settings;

pub(crate) fn run(_global: &GlobalArgs, _command: &CacheCommand, _settings: &Settings) -> anyhow::Result<()> {
    anyhow::bail!(crate::errors::UsageError("`lkb cache` is being written".into()))
}
