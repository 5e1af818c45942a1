//! Getting images into trees: fetch a layer blob, unpack it, merge an image's layers.

use std::sync::Arc;

use async_trait::async_trait;
use lkb_engine::{
    Action, ActionClass, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl,
};
use lkb_store::{ActionResult, BlobDigest, BlobRef, Store, StoreError};

use super::{blob_result, input_blobs, load_tree, tree_error, tree_outputs, tree_result};
use crate::layer::{Limits, unpack_layer};
use crate::oci::{ImageRef, ImageSource, LayerDesc};
use crate::tree::Tree;

/// Fetches one blob (a layer) from wherever the image lives into the store.
///
/// The key is the blob's digest and size only: where it comes from does not change the bytes.
#[derive(Debug)]
pub struct FetchBlobAction {
    pub reference: ImageRef,
    pub layer: LayerDesc,
    pub source: Arc<dyn ImageSource>,
}

#[async_trait]
impl Action for FetchBlobAction {
    fn kind(&self) -> &'static str {
        "fetch"
    }
    fn label(&self) -> String {
        format!(
            "fetch {} of {}",
            short(&self.layer.digest.to_string()),
            self.reference
        )
    }
    fn identity(&self) -> String {
        format!("fetch {}", self.layer.digest)
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("blob", |key| {
            key.digest(&self.layer.digest).u64(self.layer.size);
        });
    }
    fn class(&self) -> ActionClass {
        ActionClass::Io
    }
    /// The image, so that what a new layer changes downstream is traced back to it.
    fn source(&self) -> Option<String> {
        Some(format!("image {}", self.reference.canonical()))
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("blob", ArtifactKind::Blob)]
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::none()
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let wanted = BlobRef {
            digest: self.layer.digest,
            size: self.layer.size,
        };
        // A stored copy is re-hashed before it is reused: the fetch runs only when its record
        // is missing or on `--rebuild`, and then a damaged copy (even of the right size) is
        // removed and fetched again instead of being unpacked.
        let store = ctx.store().clone();
        let intact = ctx
            .blocking(move || reusable_blob(&store, &wanted))
            .await
            .map_err(|e| ActionError::new(e.category(), e))?;
        if intact {
            return Ok(blob_result("blob", wanted));
        }
        let progress = |n: u64| ctx.progress(n);
        let blob = self
            .source
            .fetch_blob(&self.reference, &self.layer, ctx.store(), &progress)
            .await
            .map_err(|e| ActionError::new(e.category(), e))?;
        ctx.add_counter("bytes_fetched", blob.size);
        Ok(blob_result("blob", blob))
    }
}

/// Whether the store holds `wanted` intact; a damaged copy is removed so that it is fetched
/// again (the sources skip blobs whose file exists).
fn reusable_blob(store: &Store, wanted: &BlobRef) -> Result<bool, StoreError> {
    if !store.has_blob(wanted) {
        return Ok(false);
    }
    match store.verify_blob(&wanted.digest) {
        Ok(_) => Ok(true),
        Err(error @ StoreError::CorruptBlob { .. }) => {
            tracing::warn!(%error, "fetching the blob again");
            store.remove_blob(&wanted.digest)?;
            Ok(false)
        }
        Err(StoreError::BlobMissing { .. }) => Ok(false),
        Err(error) => Err(error),
    }
}

/// Unpacks one layer blob into a per-layer tree (whiteouts kept as markers).
#[derive(Debug)]
pub struct UnpackLayerAction {
    pub reference: String,
    pub layer: LayerDesc,
    /// The layer's entry in the image config's `rootfs.diff_ids`: the uncompressed stream must
    /// hash to it. `None` when the config lists none.
    pub diff_id: Option<BlobDigest>,
    pub limits: Limits,
}

#[async_trait]
impl Action for UnpackLayerAction {
    fn kind(&self) -> &'static str {
        "unpack"
    }
    fn version(&self) -> u32 {
        // 2: a layer's `./` entry is kept as the tree's root (tree format 2).
        // 3: the compression trailer is checked and the diff_id compared.
        3
    }
    fn label(&self) -> String {
        format!(
            "unpack {} of {}",
            short(&self.layer.digest.to_string()),
            self.reference
        )
    }
    fn identity(&self) -> String {
        format!("unpack {}", self.layer.digest)
    }
    fn params(&self, key: &mut KeyHasher) {
        // The compression is taken from the blob's magic bytes, so only whether the media type
        // is an accepted layer type matters: the same layer listed with Docker and OCI media
        // types is unpacked once.
        key.field("media_type", |key| {
            match crate::layer::layer_media_type(&self.layer.media_type) {
                Ok(_) => key.str("layer"),
                Err(_) => key.str(&self.layer.media_type),
            };
        })
        .field("limits", |key| limits_key(&self.limits, key))
        .field("diff_id", |key| {
            match &self.diff_id {
                Some(diff_id) => key.digest(diff_id),
                None => key.str("none"),
            };
        });
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::exactly([ArtifactKind::Blob])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let blob = *ctx.input(0)?;
        let store = ctx.store().clone();
        let media_type = self.layer.media_type.clone();
        let limits = self.limits;
        let digest = self.layer.digest;
        let diff_id = self.diff_id;
        ctx.blocking(move || {
            let file = store.open_blob(&blob.digest)?;
            let reader = std::io::BufReader::with_capacity(256 * 1024, file);
            let tree = unpack_layer(&store, reader, &media_type, &limits, diff_id.as_ref())
                .map_err(|e| ActionError::new(e.category(), e.in_layer(digest)))?;
            tree_result(&store, &tree)
        })
        .await
    }
}

/// Merges an image's layer trees (in order) into its filesystem, applying whiteouts.
#[derive(Debug)]
pub struct MergeImageAction {
    pub reference: String,
}

#[async_trait]
impl Action for MergeImageAction {
    fn kind(&self) -> &'static str {
        "merge"
    }
    fn label(&self) -> String {
        format!("merge {}", self.reference)
    }
    fn identity(&self) -> String {
        format!("merge {}", self.reference)
    }
    fn params(&self, _key: &mut KeyHasher) {}
    fn outputs(&self) -> Vec<OutputDecl> {
        tree_outputs()
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::each(ArtifactKind::Tree)
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let blobs: Vec<BlobRef> = input_blobs(ctx);
        let store = ctx.store().clone();
        ctx.blocking(move || {
            let layers = blobs
                .iter()
                .map(|b| load_tree(&store, b))
                .collect::<Result<Vec<_>, _>>()?;
            let merged = Tree::merge_layers(&layers).map_err(tree_error)?;
            tree_result(&store, &merged)
        })
        .await
    }
}

/// `sha256:abcdef012345` (the first 12 hex digits) for labels.
pub(crate) fn short(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    format!("sha256:{}", &hex[..hex.len().min(12)])
}

/// Layer limits go into keys: a build with other limits may fail where this one did not.
pub(crate) fn limits_key(limits: &Limits, key: &mut KeyHasher) {
    key.u64(limits.max_entries)
        .u64(limits.max_path_len as u64)
        .u64(limits.max_total_bytes);
}
