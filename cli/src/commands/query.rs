//! `lkb query`.

use crate::args::{QueryArgs, GlobalArgs};
use crate::settings::Settings;

pub(crate) fn run(_global: &GlobalArgs, _args: &QueryArgs, _settings: &Settings) -> anyhow::Result<()> {
    anyhow::bail!(crate::errors::UsageError("`lkb query` is being written".into()))
}
