//! `config`: the merged, checked configuration of each target, as text.
//!
//! Without `resolved` nothing but the yml files (and `git`, for `@pkg:` templates) is read:
//! no store, no network. With `resolved`, images are resolved as `build` resolves them
//! (`lkb.lock` pins, OCI layouts, registries; the lock file is not written) and each
//! container shows the settings it will run with: yml > `org.mobyproject.config` label >
//! image config > defaults ([`config::resolve_image`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use crate::errors::Context;
use lkb_rules::bundle_spec::image_settings;
use lkb_rules::config::{self, Config, MetadataFormat};
use lkb_rules::lock::{LOCK_FILE, LockFile};
use lkb_rules::oci::Platform;
use lkb_rules::resolve::{ImageInfo, Resolver};
use lkb_rules::workspace::Workspace;

use crate::ops::plan::{expand_targets, image_sources, load_configs, open_store};
use crate::settings::Settings;

/// What to print.
#[derive(Debug, Clone)]
pub struct ConfigRequest {
    pub targets: Vec<String>,
    /// Merge image labels and image configs into the containers (resolves images).
    pub resolved: bool,
    pub format: MetadataFormat,
}

/// One target's configuration.
#[derive(Debug)]
pub struct TargetConfig {
    pub label: String,
    /// The rendered text (YAML ends with a newline; JSON does not).
    pub text: String,
}

/// Loads, checks and merges every target of `req` and renders it. Warnings go to `notify`.
pub async fn config(
    settings: &Settings,
    req: &ConfigRequest,
    notify: &(dyn Fn(&str) + Sync),
) -> crate::errors::Result<Vec<TargetConfig>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let (workspace, targets) = expand_targets(&req.targets, &cwd, None)?;
    let mut configs = load_configs(&targets, notify)?;
    if req.resolved {
        let refs: BTreeSet<String> = configs
            .iter()
            .flat_map(lkb_rules::config::image_refs)
            .collect();
        let images = resolve_images(settings, workspace.as_ref(), &refs, notify).await?;
        for config in &mut configs {
            apply_image_settings(config, &images)?;
        }
    }
    Ok(targets
        .into_iter()
        .zip(&configs)
        .map(|(target, config)| TargetConfig {
            label: target.label,
            text: String::from_utf8_lossy(&config::render_metadata(config, req.format))
                .into_owned(),
        })
        .collect())
}

/// Resolves `refs` the way `plan` does, without changing `lkb.lock`.
async fn resolve_images(
    settings: &Settings,
    workspace: Option<&Workspace>,
    refs: &BTreeSet<String>,
    notify: &(dyn Fn(&str) + Sync),
) -> crate::errors::Result<BTreeMap<String, Arc<ImageInfo>>> {
    let store = open_store(settings, notify).await?;
    let sources = image_sources(settings, workspace, false)?;
    let lock = match workspace {
        Some(ws) => LockFile::read(&ws.root.join(LOCK_FILE))?,
        None => LockFile::default(),
    };
    let resolver = Resolver {
        sources: Arc::new(sources),
        store,
        platform: Platform::host(),
        lock,
        pull: false,
        offline: false,
    };
    let (images, _lock) = resolver.resolve_all(refs).await?;
    Ok(images)
}

/// Replaces every container of `config` by its resolved form.
fn apply_image_settings(
    config: &mut Config,
    images: &BTreeMap<String, Arc<ImageInfo>>,
) -> crate::errors::Result<()> {
    for spec in config
        .onboot
        .iter_mut()
        .chain(&mut config.onshutdown)
        .chain(&mut config.services)
    {
        let reference = spec.reference();
        let info = images
            .get(&reference)
            .with_context(|| format!("image {reference} was not resolved"))?;
        let settings = image_settings(&info.config, spec)?;
        *spec = config::resolve_image(spec, &settings);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use serde_json::json;

    use lkb_rules::bundle_spec::LABEL_KEY;
    use lkb_rules::config::ImageSpec;

    use super::*;

    fn spec() -> ImageSpec {
        let config = config::parse_config(
            "services:\n- name: s\n  image: linuxkit/s:1\n  env: [A=1]\n",
            Path::new("t.yml"),
        )
        .expect("valid");
        config.services[0].clone()
    }

    #[test]
    fn reads_the_image_config() {
        let blob = json!({
            "architecture": "amd64",
            "config": {
                "Entrypoint": ["/bin/s"],
                "Cmd": ["-v"],
                "Env": ["PATH=/bin"],
                "WorkingDir": "/srv",
                "Labels": {LABEL_KEY: "{\"capabilities\":[\"CAP_NET_ADMIN\"],\"net\":\"new\"}"}
            }
        });
        let settings = image_settings(&blob, &spec()).expect("valid");
        assert_eq!(settings.command, ["/bin/s", "-v"]);
        assert_eq!(settings.env, ["PATH=/bin"]);
        assert_eq!(settings.working_dir, "/srv");
        assert_eq!(
            settings.label.net.as_ref().map(|n| n.value.as_str()),
            Some("new")
        );
        let resolved = config::resolve_image(&spec(), &settings);
        let config = Config {
            services: vec![resolved],
            ..Config::default()
        };
        let text = String::from_utf8(config::render_metadata(&config, MetadataFormat::Yaml))
            .expect("utf-8");
        assert!(
            text.contains(
                "- name: s\n  image: docker.io/linuxkit/s:1\n  capabilities:\n  - CAP_NET_ADMIN\n  \
                 command:\n  - /bin/s\n  - -v\n  env:\n  - A=1\n  cwd: /srv\n  net: new\n"
            ),
            "{text}"
        );
    }

    #[test]
    fn rejects_bad_labels_and_types() {
        let label = json!({"config": {"Labels": {LABEL_KEY: "{\"name\": \"x\"}"}}});
        let err = image_settings(&label, &spec()).expect_err("name in label");
        assert!(
            err.to_string()
                .contains("cannot be set in the org.mobyproject.config label")
        );
        let env = json!({"config": {"Env": "PATH=/bin"}});
        assert!(image_settings(&env, &spec()).is_err());
        // The same rules as the bundles: `Labels` must be an object.
        let labels = json!({"config": {"Labels": "not an object"}});
        let err = image_settings(&labels, &spec()).expect_err("labels not an object");
        assert!(
            err.to_string().contains("`Labels` is not an object"),
            "{err}"
        );
        assert!(image_settings(&json!({}), &spec()).is_ok());
    }
}
