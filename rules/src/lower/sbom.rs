//! Lowering of `sbom.spdx.json`: one action over the SPDX attestations of every image whose
//! filesystem lands in the output, in output order.

use std::sync::Arc;

use lkb_engine::NodeId;

use super::{LowerError, Lowering};
use crate::actions::{DEFAULT_MTIME, SbomAction, SbomPart};

/// Settings of the merged SBOM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbomOptions {
    /// `creationInfo.created`, seconds since the epoch.
    pub created: i64,
}

impl Default for SbomOptions {
    /// LinuxKit's default: its default mtime, so the document is reproducible.
    fn default() -> Self {
        SbomOptions {
            created: DEFAULT_MTIME,
        }
    }
}

impl Lowering<'_, '_> {
    /// `sbom.spdx.json` from the SPDX attestations of every extracted image, in output order.
    pub(super) fn sbom(&mut self, options: SbomOptions) -> Result<NodeId, LowerError> {
        let mut inputs: Vec<NodeId> = Vec::new();
        let mut parts = Vec::new();
        for (reference, prefix) in std::mem::take(&mut self.sbom_sources) {
            let Some(index) = self.input.indexes.get(&reference).cloned() else {
                continue;
            };
            let r = self.info(&reference)?.resolved.reference.clone();
            for layer in &index.sbom_layers {
                let node = self.fetch(&r, layer);
                let input = match inputs.iter().position(|n| *n == node) {
                    Some(at) => at,
                    None => {
                        inputs.push(node);
                        inputs.len() - 1
                    }
                };
                parts.push(SbomPart {
                    prefix: prefix.clone(),
                    input,
                });
            }
        }
        let action = SbomAction {
            parts,
            created: options.created,
        };
        Ok(self.g.add(Arc::new(action), &inputs))
    }
}
