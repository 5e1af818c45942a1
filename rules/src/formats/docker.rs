//! `docker`: `NAME.docker`, the `tar` output with LinuxKit's `Dockerfile` entry after the
//! `files:` entries (and before the SBOM), so `docker build - < NAME.docker` makes an image
//! of the system. Needs no initrd.

use std::sync::Arc;

use lkb_engine::GraphBuilder;

use super::{OutputFormat, OutputSpec, Parts};
use crate::actions::{DockerfileAction, RootfsTarAction};

pub(crate) struct Docker;

impl OutputFormat for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let dockerfile = g.add(Arc::new(DockerfileAction), &[]);
        let trees = parts.rootfs_trees_with(g.only(dockerfile));
        let tar = g.add_wired(Arc::new(RootfsTarAction { format: "docker" }), &trees);
        vec![OutputSpec::new(
            format!("{name}.docker"),
            g.only(tar),
            "tar",
        )]
    }
}
