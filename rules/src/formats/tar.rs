//! `tar`: `NAME.tar`, the whole root file system (the kernel's `boot/` files, then every
//! section tree) as one PAX tar. Needs no initrd.

use std::sync::Arc;

use lkb_engine::GraphBuilder;

use super::{OutputFormat, OutputSpec, Parts};
use crate::actions::RootfsTarAction;

pub(crate) struct Tar;

impl OutputFormat for Tar {
    fn name(&self) -> &'static str {
        "tar"
    }

    fn lower(&self, g: &mut GraphBuilder, name: &str, parts: &mut Parts) -> Vec<OutputSpec> {
        let tar = g.add_wired(
            Arc::new(RootfsTarAction { format: "tar" }),
            &parts.rootfs_trees(),
        );
        vec![OutputSpec::new(format!("{name}.tar"), g.only(tar), "tar")]
    }
}
