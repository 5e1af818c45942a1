//! Everything lkb reads from the environment, in one place (the libraries never read env vars).

use std::path::PathBuf;

/// Environment-derived defaults.
#[derive(Debug, Clone)]
pub struct Settings {
    pub store: PathBuf,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub no_color: bool,
    /// Remote cache credentials: `LKB_REMOTE_TOKEN` (bearer), else `LKB_REMOTE_USER` and
    /// `LKB_REMOTE_PASSWORD` (basic).
    pub remote_credentials: Option<lkb_remote::Credentials>,
}

#[expect(
    clippy::disallowed_methods,
    reason = "the CLI is the one place that reads env"
)]
fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Settings {
    /// Whether the user tuned glibc's arena count themselves.
    pub fn malloc_arena_max_set() -> bool {
        var("MALLOC_ARENA_MAX").is_some()
    }

    pub fn from_env(store_flag: Option<PathBuf>) -> Settings {
        let home = var("HOME").map(PathBuf::from);
        let store = store_flag.unwrap_or_else(|| {
            let cache = var("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| home.as_ref().map(|h| h.join(".cache")))
                .unwrap_or_else(|| PathBuf::from(".cache"));
            cache.join("lkb")
        });
        let docker_config = var("DOCKER_CONFIG")
            .map(PathBuf::from)
            .or_else(|| home.as_ref().map(|h| h.join(".docker")))
            .map(|d| d.join("config.json"));
        Settings {
            store,
            docker_config,
            home,
            no_color: var("NO_COLOR").is_some(),
            remote_credentials: remote_credentials(),
        }
    }
}

fn remote_credentials() -> Option<lkb_remote::Credentials> {
    if let Some(token) = var("LKB_REMOTE_TOKEN") {
        return Some(lkb_remote::Credentials::Bearer(token));
    }
    Some(lkb_remote::Credentials::Basic {
        user: var("LKB_REMOTE_USER")?,
        password: var("LKB_REMOTE_PASSWORD").unwrap_or_default(),
    })
}
