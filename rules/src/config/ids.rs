//! Build-wide uid/gid names: every container name stands for an id from 100 up.

use std::collections::BTreeMap;

use super::error::{ConfigError, Spanned};
use super::types::{Config, IdValue};

/// Container names usable as `uid`, `gid` and `additionalGids` values.
///
/// `onboot`, then `onshutdown`, then `services`, in order, get 100, 101, … A repeated name
/// keeps the later id but still uses up one number, as in LinuxKit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    ids: BTreeMap<String, u32>,
}

impl IdMap {
    /// The map for a (merged) configuration.
    pub fn from_config(config: &Config) -> IdMap {
        let containers = config
            .onboot
            .iter()
            .chain(&config.onshutdown)
            .chain(&config.services);
        IdMap::from_names(containers.map(|image| image.name.value.as_str()))
    }

    /// The map for container names in build order (100, 101, …).
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>) -> IdMap {
        let mut ids = BTreeMap::new();
        for (id, name) in (100u32..).zip(names) {
            ids.insert(name.to_owned(), id);
        }
        IdMap { ids }
    }

    /// The id of a container name.
    pub fn get(&self, name: &str) -> Option<u32> {
        self.ids.get(name).copied()
    }

    /// All names and ids, sorted by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.ids.iter().map(|(name, id)| (name.as_str(), *id))
    }

    /// Resolves a uid/gid value: a number, `""` or `root` (0), or a container name.
    pub fn resolve_id(&self, value: &Spanned<IdValue>) -> Result<u32, ConfigError> {
        match &value.value {
            IdValue::Number(n) => u32::try_from(*n).map_err(|_| {
                ConfigError::new(
                    value.span.clone(),
                    format!("id {n} is out of range (expected 0 to 4294967295)"),
                )
            }),
            IdValue::Name(name) if name.is_empty() || name == "root" => Ok(0),
            IdValue::Name(name) => self.get(name).ok_or_else(|| {
                let err = ConfigError::new(value.span.clone(), format!("cannot find id `{name}`"));
                let names: Vec<&str> = self.ids.keys().map(String::as_str).collect();
                match super::error::did_you_mean(name, names) {
                    Some(hint) => err.with_hint(hint),
                    None => err.with_hint(
                        "a uid/gid is a number, `root`, or the name of an onboot, onshutdown or \
                         service container",
                    ),
                }
            }),
        }
    }
}
