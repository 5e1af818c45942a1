//! Lowering: a loaded config plus its resolved images → actions in the engine's graph.
//!
//! Pure: no I/O, no network. The same inputs always give the same graph, which `lkb query`
//! prints. The engine de-duplicates identical actions, so an image (or a layer) shared by
//! several containers or several targets is fetched, unpacked and merged once.

mod sbom;
#[cfg(test)]
mod tests;
mod volume;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lkb_engine::{GraphBuilder, NodeId};
use lkb_store::ErrorCategory;

use crate::actions::{
    ApkDbAction, BundleAction, FetchBlobAction, FileItem, FilesAction, InitRootAction,
    KernelAction, MergeImageAction, UnpackLayerAction,
};
use crate::bundle_spec::{BundleInput, bundle_spec};
use crate::compress::Codec;
use crate::config::{Config, ConfigError, IdMap, ImageRole, ImageSpec, VolumeFormat};
use crate::formats::{Format, KernelParts, MediaOptions, OutputSpec, Parts, SectionTree};
use crate::indexes::{IndexInfo, IndexRequest};
use crate::layer::Limits;
use crate::oci::{ImageRef, ImageSource, LayerDesc};
use crate::resolve::ImageInfo;

pub use sbom::SbomOptions;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("image {0} was not resolved")]
    Unresolved(String),
    #[error("no output: the config has neither a kernel nor any contents for the initrd")]
    Empty,
    /// Two formats write different files under one name (LinuxKit's `iso-bios` and
    /// `kernel+iso` both write `NAME.iso`).
    #[error(
        "formats {first} and {second} both write {file}; build them separately (or with --name)"
    )]
    OutputClash {
        file: String,
        first: &'static str,
        second: &'static str,
    },
}

impl LowerError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            LowerError::Config(e) => e.category(),
            LowerError::Unresolved(_) => ErrorCategory::Internal,
            LowerError::Empty | LowerError::OutputClash { .. } => ErrorCategory::User,
        }
    }
}

/// Everything lowering needs besides the graph.
pub struct LowerInput<'a> {
    pub config: &'a Config,
    /// Resolved images by canonical ref.
    pub images: &'a BTreeMap<String, Arc<ImageInfo>>,
    /// `files:` entries with their content resolved (host sources read by the load phase).
    pub files: Vec<FileItem>,
    pub sources: Arc<dyn ImageSource>,
    pub codec: Codec,
    pub limits: Limits,
    /// What the image indexes hold beyond the resolved platform, by canonical ref: what
    /// [`index_requests`] asked [`crate::resolve::Resolver::resolve_indexes`] for.
    pub indexes: &'a BTreeMap<String, Arc<IndexInfo>>,
    /// How to write `sbom.spdx.json`; `None` leaves it out (`--no-sbom`).
    pub sbom: Option<SbomOptions>,
    /// The boot loader image and `--size`, for the boot-media formats.
    pub media: MediaOptions,
}

/// What lowering `configs` needs from image indexes: for the SBOM (`sbom`), the attestations
/// of every image whose filesystem lands in the output (LinuxKit's `ImageTar` callers: the
/// kernel, init images, `filesystem` volumes and containers); for `oci` volumes, every
/// manifest of the index.
pub fn index_requests<'c>(
    configs: impl IntoIterator<Item = &'c Config>,
    sbom: bool,
) -> BTreeMap<String, IndexRequest> {
    let mut requests: BTreeMap<String, IndexRequest> = BTreeMap::new();
    let mut want = |reference: String, request: IndexRequest| {
        requests.entry(reference).or_default().merge(request);
    };
    let for_sbom = IndexRequest {
        manifests: false,
        sbom: true,
    };
    for config in configs {
        for (reference, role) in crate::config::image_uses(config) {
            match role {
                ImageRole::Volume(VolumeFormat::Oci) => want(
                    reference,
                    IndexRequest {
                        manifests: true,
                        sbom: false,
                    },
                ),
                // Every image whose filesystem lands in the output.
                _ if sbom => want(reference, for_sbom),
                _ => {}
            }
        }
    }
    requests
}

/// Lowers one target. Returns the output files of every requested format.
pub fn lower(
    g: &mut GraphBuilder,
    name: &str,
    formats: &[Format],
    input: &LowerInput<'_>,
) -> Result<Vec<OutputSpec>, LowerError> {
    let mut lowering = Lowering {
        g,
        input,
        images: HashMap::new(),
        sbom_sources: Vec::new(),
    };
    let mut parts = lowering.parts()?;
    for reference in formats
        .iter()
        .flat_map(|format| format.tool_images(&input.media))
    {
        let merged = lowering.image(&reference)?;
        let tree = lowering.g.only(merged);
        parts.add_tool_image(reference, tree);
    }
    let mut outputs: Vec<OutputSpec> = Vec::new();
    let mut writers: HashMap<String, &'static str> = HashMap::new();
    for format in formats {
        for output in format.lower(lowering.g, name, &mut parts) {
            match outputs.iter().find(|o| o.file_name == output.file_name) {
                // Formats sharing a file (`NAME-kernel`) write the same artifact once.
                Some(same) if same.parts().eq(output.parts()) => {}
                Some(_) => {
                    return Err(LowerError::OutputClash {
                        first: writers[&output.file_name],
                        second: format.name(),
                        file: output.file_name,
                    });
                }
                None => {
                    writers.insert(output.file_name.clone(), format.name());
                    outputs.push(output);
                }
            }
        }
    }
    Ok(outputs)
}

struct Lowering<'g, 'a> {
    g: &'g mut GraphBuilder,
    input: &'a LowerInput<'a>,
    images: HashMap<String, NodeId>,
    /// Images whose filesystem is extracted, in output order, with the extraction prefix:
    /// where their SPDX documents come from.
    sbom_sources: Vec<(String, String)>,
}

impl Lowering<'_, '_> {
    fn info(&self, reference: &str) -> Result<&Arc<ImageInfo>, LowerError> {
        self.input
            .images
            .get(reference)
            .ok_or_else(|| LowerError::Unresolved(reference.to_string()))
    }

    /// fetch → unpack per layer, then merge: the image's filesystem tree.
    fn image(&mut self, reference: &str) -> Result<NodeId, LowerError> {
        if let Some(node) = self.images.get(reference) {
            return Ok(*node);
        }
        let info = Arc::clone(self.info(reference)?);
        let r = &info.resolved.reference;
        let mut layers = Vec::new();
        for (index, layer) in info.resolved.layers.iter().enumerate() {
            let fetch = self.g.add(
                Arc::new(FetchBlobAction {
                    reference: r.clone(),
                    layer: layer.clone(),
                    source: Arc::clone(&self.input.sources),
                }),
                &[],
            );
            let unpack = self.g.add(
                Arc::new(UnpackLayerAction {
                    reference: reference.to_string(),
                    layer: layer.clone(),
                    diff_id: info.diff_id(index),
                    limits: self.input.limits,
                }),
                &[fetch],
            );
            layers.push(unpack);
        }
        let merge = self.g.add(
            Arc::new(MergeImageAction {
                reference: reference.to_string(),
            }),
            &layers,
        );
        self.images.insert(reference.to_string(), merge);
        Ok(merge)
    }

    /// Fetches one blob of `r` (a layer, config, manifest or index) into the store.
    fn fetch(&mut self, r: &ImageRef, blob: &LayerDesc) -> NodeId {
        self.g.add(
            Arc::new(FetchBlobAction {
                reference: r.clone(),
                layer: blob.clone(),
                source: Arc::clone(&self.input.sources),
            }),
            &[],
        )
    }

    fn parts(&mut self) -> Result<Parts, LowerError> {
        let config = self.input.config;
        let mut trees = Vec::new();
        let add_tree = |g: &mut GraphBuilder, trees: &mut Vec<SectionTree>, node, what| {
            trees.push(SectionTree {
                tree: g.only(node),
                what,
            });
        };

        let mut kernel_parts = None;
        if let Some(kernel) = &config.kernel
            && let Some(image) = kernel.image()
        {
            let reference = crate::config::expand_ref(image);
            let merged = self.image(&reference)?;
            let node = self.g.add(
                Arc::new(KernelAction {
                    source: reference.clone(),
                    binary: kernel.binary().to_string(),
                    tar: kernel.tar().map(str::to_string),
                    ucode: kernel.ucode().map(str::to_string),
                    cmdline: kernel.cmdline().to_string(),
                    limits: self.input.limits,
                }),
                &[merged],
            );
            self.sbom_sources.push((reference.clone(), String::new()));
            kernel_parts = Some(KernelParts {
                kernel: self.g.out(node, "kernel"),
                cmdline: self.g.out(node, "cmdline"),
                ucode: kernel.ucode().map(|_| self.g.out(node, "ucode")),
                rootfs: self.g.out(node, "rootfs"),
                initrd: self.g.out(node, "initrd"),
                cmdline_empty: kernel.cmdline().is_empty(),
            });
        }

        let mut init_roots = Vec::new();
        for (i, image) in config.init.iter().enumerate() {
            let reference = crate::config::expand_ref(&image.value);
            let merged = self.image(&reference)?;
            self.sbom_sources.push((reference.clone(), String::new()));
            let location = format!("init[{i}]");
            let node = self.g.add(
                Arc::new(InitRootAction {
                    source: reference.clone(),
                    location: location.clone(),
                }),
                &[merged],
            );
            add_tree(self.g, &mut trees, node, format!("{location} {reference}"));
            init_roots.push(node);
        }
        // With two or more init images, LinuxKit appends the union of their APK databases.
        if init_roots.len() > 1 {
            let node = self.g.add(Arc::new(ApkDbAction), &init_roots);
            add_tree(self.g, &mut trees, node, "init APK database".into());
        }

        for (i, volume) in config.volumes.iter().enumerate() {
            let node = self.volume(i, volume)?;
            add_tree(
                self.g,
                &mut trees,
                node,
                format!("volume[{i}] {}", volume.name.value),
            );
        }

        let ids = IdMap::from_config(config);
        // LinuxKit extracts an image once per build; later containers reuse that directory.
        let mut extracted: HashMap<String, String> = HashMap::new();
        let sections: [(&str, &[ImageSpec]); 3] = [
            ("onboot", &config.onboot),
            ("onshutdown", &config.onshutdown),
            ("services", &config.services),
        ];
        for (section, specs) in sections {
            for (i, spec) in specs.iter().enumerate() {
                let reference = spec.reference();
                let info = Arc::clone(self.info(&reference)?);
                let bundle = match section {
                    "services" => format!("containers/services/{}", spec.name.value),
                    _ => format!("containers/{section}/{i:03}-{}", spec.name.value),
                };
                let shared = extracted.get(&reference).cloned();
                let built = bundle_spec(&BundleInput {
                    spec,
                    image_config: &info.config,
                    ids: &ids,
                    volumes: &config.volumes,
                    bundle_path: &bundle,
                    shared_root: shared.as_deref(),
                })?;
                let location = format!("{section}[{i}]");
                let own_root = match &shared {
                    Some(_) => None,
                    None => Some(
                        built
                            .root
                            .strip_prefix(&format!("{bundle}/"))
                            .unwrap_or(&built.root)
                            .to_string(),
                    ),
                };
                let action = BundleAction {
                    bundle: bundle.clone(),
                    root: own_root,
                    readonly: built.readonly,
                    config_json: built.config_json,
                    runtime_json: built.runtime_json,
                    source: reference.clone(),
                    location: location.clone(),
                };
                let node = if shared.is_none() {
                    let merged = self.image(&reference)?;
                    self.sbom_sources
                        .push((reference.clone(), format!("{}/", built.root)));
                    extracted.insert(reference.clone(), built.root.clone());
                    self.g.add(Arc::new(action), &[merged])
                } else {
                    self.g.add(Arc::new(action), &[])
                };
                add_tree(
                    self.g,
                    &mut trees,
                    node,
                    format!("{location} {}", spec.name.value),
                );
            }
        }

        if !self.input.files.is_empty() {
            let node = self.g.add(
                Arc::new(FilesAction {
                    items: self.input.files.clone(),
                }),
                &[],
            );
            add_tree(self.g, &mut trees, node, "files".into());
        }

        if trees.is_empty() && kernel_parts.is_none() {
            return Err(LowerError::Empty);
        }
        let sbom_last = self.input.sbom.is_some();
        if let Some(options) = self.input.sbom {
            let node = self.sbom(options)?;
            add_tree(self.g, &mut trees, node, "sbom".into());
        }
        Ok(Parts::new(
            kernel_parts,
            trees,
            self.input.codec,
            self.input.media.clone(),
            sbom_last,
        ))
    }
}
