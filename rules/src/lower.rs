//! Lowering: a loaded config plus its resolved images → actions in the engine's graph.
//!
//! Pure: no I/O, no network. The same inputs always give the same graph, which `lkb query`
//! prints. The engine de-duplicates identical actions, so an image (or a layer) shared by
//! several containers or several targets is fetched, unpacked and merged once.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use lkb_engine::{GraphBuilder, NodeId};
use lkb_store::ErrorCategory;

use crate::actions::{
    ApkDbAction, BundleAction, DEFAULT_MTIME, FetchBlobAction, FileItem, FilesAction,
    InitRootAction, InitrdAction, KernelAction, MergeImageAction, SbomAction, SbomPart,
    SegmentAction, UnpackLayerAction, VolumeAction, VolumeContent,
};
use crate::bundle_spec::{BundleInput, bundle_spec};
use crate::compress::Codec;
use crate::config::{Config, ConfigError, IdMap, ImageSpec, Volume, VolumeFormat};
use crate::formats::{Format, OutputSpec, Parts};
use crate::indexes::{IndexInfo, IndexRequest};
use crate::layer::Limits;
use crate::oci::{Descriptor, ImageRef, ImageSource, LayerDesc, Platform};
use crate::resolve::ImageInfo;

#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("image {0} was not resolved")]
    Unresolved(String),
    #[error("no output: the config has neither a kernel nor any contents for the initrd")]
    Empty,
}

impl LowerError {
    pub fn category(&self) -> ErrorCategory {
        match self {
            LowerError::Config(e) => e.category(),
            LowerError::Unresolved(_) => ErrorCategory::Internal,
            LowerError::Empty => ErrorCategory::User,
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
}

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
        if sbom {
            if let Some(image) = config.kernel.as_ref().and_then(|k| k.image()) {
                want(crate::config::expand_ref(image), for_sbom);
            }
            for image in &config.init {
                want(crate::config::expand_ref(&image.value), for_sbom);
            }
            for spec in config
                .onboot
                .iter()
                .chain(&config.onshutdown)
                .chain(&config.services)
            {
                want(spec.reference(), for_sbom);
            }
        }
        for volume in &config.volumes {
            let Some(image) = &volume.image else {
                continue;
            };
            let reference = crate::config::expand_ref(&image.value);
            match volume.format {
                VolumeFormat::Filesystem if sbom => want(reference, for_sbom),
                VolumeFormat::Filesystem => {}
                VolumeFormat::Oci => want(
                    reference,
                    IndexRequest {
                        manifests: true,
                        sbom: false,
                    },
                ),
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
    let parts = lowering.parts()?;
    let mut outputs = Vec::new();
    for format in formats {
        outputs.extend(format.lower(lowering.g, name, &parts));
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
        for layer in &info.resolved.layers {
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

    /// One `volumes:` entry (reference §2.5).
    fn volume(&mut self, i: usize, volume: &Volume) -> Result<NodeId, LowerError> {
        let name = volume.name.value.clone();
        let location = format!("volume[{i}]");
        let Some(image) = &volume.image else {
            let action = VolumeAction {
                name,
                location,
                content: VolumeContent::Blank,
            };
            return Ok(self.g.add(Arc::new(action), &[]));
        };
        let reference = crate::config::expand_ref(&image.value);
        if volume.format == VolumeFormat::Filesystem {
            let merged = self.image(&reference)?;
            self.sbom_sources.push((
                reference.clone(),
                format!("containers/volumes/{name}/lower/"),
            ));
            let action = VolumeAction {
                name,
                location,
                content: VolumeContent::Filesystem { source: reference },
            };
            return Ok(self.g.add(Arc::new(action), &[merged]));
        }
        let platforms = volume
            .platforms
            .iter()
            .map(|p| {
                Platform::parse(&p.value)
                    .map_err(|e| ConfigError::new(p.span.clone(), format!("volume `{name}`: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let info = Arc::clone(self.info(&reference)?);
        let Some(index) = self.input.indexes.get(&reference).cloned() else {
            if info.resolved.index_digest.is_some() {
                return Err(LowerError::Unresolved(format!("{reference} (its index)")));
            }
            return Err(ConfigError::new(
                image.span.clone(),
                format!(
                    "volume `{name}`: format `oci` needs an image index, but {reference} is a \
                     single-platform image manifest"
                ),
            )
            .with_hint("LinuxKit writes OCI-layout volumes from multi-platform indexes only")
            .into());
        };
        let r = &info.resolved.reference;
        let mut inputs: Vec<NodeId> = Vec::new();
        for manifest in index
            .manifests
            .iter()
            .filter(|m| platform_wanted(&platforms, &m.descriptor))
        {
            for blob in manifest.blobs() {
                let node = self.fetch(r, blob);
                if !inputs.contains(&node) {
                    inputs.push(node);
                }
            }
        }
        inputs.push(self.fetch(r, &index.index));
        let action = VolumeAction {
            name,
            location,
            content: VolumeContent::Oci { source: reference },
        };
        Ok(self.g.add(Arc::new(action), &inputs))
    }

    /// `sbom.spdx.json` from the SPDX attestations of every extracted image, in output order.
    fn sbom(&mut self, options: SbomOptions) -> Result<NodeId, LowerError> {
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

    fn segment(&mut self, node: NodeId, artifact: &str, what: String) -> NodeId {
        self.g.add(
            Arc::new(SegmentAction {
                artifact: artifact.to_string(),
                codec: self.input.codec,
                what,
            }),
            &[node],
        )
    }

    fn parts(&mut self) -> Result<Parts, LowerError> {
        let config = self.input.config;
        let mut segments = Vec::new();
        let mut trees = Vec::new();

        let mut kernel_node = None;
        let mut has_ucode = false;
        let mut cmdline_empty = true;
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
            has_ucode = kernel.ucode().is_some();
            cmdline_empty = kernel.cmdline().is_empty();
            segments.push(self.segment(node, "initrd", "kernel".into()));
            kernel_node = Some(node);
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
            segments.push(self.segment(node, "tree", format!("{location} {reference}")));
            trees.push((node, "tree".to_string()));
            init_roots.push(node);
        }
        // With two or more init images, LinuxKit appends the union of their APK databases.
        if init_roots.len() > 1 {
            let node = self.g.add(Arc::new(ApkDbAction), &init_roots);
            segments.push(self.segment(node, "tree", "init APK database".into()));
            trees.push((node, "tree".to_string()));
        }

        for (i, volume) in config.volumes.iter().enumerate() {
            let node = self.volume(i, volume)?;
            let what = format!("volume[{i}] {}", volume.name.value);
            segments.push(self.segment(node, "tree", what));
            trees.push((node, "tree".to_string()));
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
                segments.push(self.segment(
                    node,
                    "tree",
                    format!("{location} {}", spec.name.value),
                ));
                trees.push((node, "tree".to_string()));
            }
        }

        if !self.input.files.is_empty() {
            let node = self.g.add(
                Arc::new(FilesAction {
                    items: self.input.files.clone(),
                }),
                &[],
            );
            segments.push(self.segment(node, "tree", "files".into()));
            trees.push((node, "tree".to_string()));
        }

        if segments.is_empty() && kernel_node.is_none() {
            return Err(LowerError::Empty);
        }
        if let Some(options) = self.input.sbom {
            let node = self.sbom(options)?;
            segments.push(self.segment(node, "tree", "sbom".into()));
            trees.push((node, "tree".to_string()));
        }
        let mut initrd_inputs = Vec::new();
        if has_ucode {
            initrd_inputs.extend(kernel_node);
        }
        initrd_inputs.extend(segments);
        let initrd = self
            .g
            .add(Arc::new(InitrdAction { ucode: has_ucode }), &initrd_inputs);
        Ok(Parts {
            kernel: kernel_node,
            cmdline_empty,
            initrd,
            trees,
        })
    }
}

/// Does an index entry match the `platforms` of an `oci` volume? LinuxKit compares OS and
/// architecture exactly and the variant only when one is asked for; no platforms means every
/// image manifest. Entries without a platform match only then.
fn platform_wanted(platforms: &[Platform], entry: &Descriptor) -> bool {
    if platforms.is_empty() {
        return true;
    }
    let Some(have) = &entry.platform else {
        return false;
    };
    platforms.iter().any(|want| {
        want.os == have.os
            && want.architecture == have.architecture
            && want
                .variant
                .as_ref()
                .is_none_or(|v| Some(v) == have.variant.as_ref())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use lkb_engine::{Action as _, Graph};
    use lkb_store::{BlobRef, ErrorCategory};
    use serde_json::json;

    use super::*;
    use crate::actions::FetchBlobAction;
    use crate::indexes::IndexedManifest;
    use crate::oci::{
        DescriptorPlatform, ImageSources, OCI_MANIFEST, ResolvedImage, sha256_digest,
    };

    const YML: &str = "\
init:
  - example.com/lkb/init-a:1
  - example.com/lkb/init-b:1
volumes:
  - name: blank
  - name: fs
    image: example.com/lkb/vol:1
  - name: arm
    image: example.com/lkb/vol:1
    format: oci
    platforms: [linux/arm64]
onboot:
  - name: app
    image: example.com/lkb/app:1
    binds: [\"fs:/data\"]
";

    fn desc(seed: &str, media_type: &str) -> LayerDesc {
        LayerDesc {
            digest: sha256_digest(seed.as_bytes()),
            size: seed.len() as u64,
            media_type: media_type.into(),
        }
    }

    fn blob(d: &LayerDesc) -> BlobRef {
        BlobRef {
            digest: d.digest,
            size: d.size,
        }
    }

    fn image(reference: &str, index: bool) -> Arc<ImageInfo> {
        let layer = desc(&format!("{reference} layer"), "tar+gzip");
        Arc::new(ImageInfo {
            resolved: ResolvedImage {
                reference: ImageRef::parse(reference).expect("ref"),
                platform: Platform::linux("amd64"),
                index_digest: index.then(|| sha256_digest(format!("{reference} index").as_bytes())),
                manifest: blob(&desc(&format!("{reference} manifest"), OCI_MANIFEST)),
                config: blob(&desc(&format!("{reference} config"), "config")),
                layers: vec![layer],
            },
            config: json!({"config": {"Entrypoint": ["/bin/true"]}}),
        })
    }

    fn platform_manifest(seed: &str, arch: &str, shared: &LayerDesc) -> IndexedManifest {
        IndexedManifest {
            descriptor: Descriptor {
                media_type: OCI_MANIFEST.into(),
                digest: desc(&format!("{seed} manifest"), OCI_MANIFEST)
                    .digest
                    .to_string(),
                size: 10,
                platform: Some(DescriptorPlatform {
                    architecture: arch.into(),
                    os: "linux".into(),
                    variant: None,
                    os_version: None,
                    os_features: Vec::new(),
                }),
                annotations: BTreeMap::new(),
                urls: Vec::new(),
            },
            manifest: desc(&format!("{seed} manifest"), OCI_MANIFEST),
            config: desc(&format!("{seed} config"), "config"),
            layers: vec![
                shared.clone(),
                desc(&format!("{seed} own layer"), "tar+gzip"),
            ],
        }
    }

    struct Fixture {
        config: Config,
        images: BTreeMap<String, Arc<ImageInfo>>,
        indexes: BTreeMap<String, Arc<IndexInfo>>,
    }

    fn fixture(yml: &str) -> Fixture {
        let config = crate::config::parse_config(yml, Path::new("t.yml")).expect("yml");
        let mut images = BTreeMap::new();
        for r in ["init-a", "init-b", "vol", "app"] {
            let reference = format!("example.com/lkb/{r}:1");
            images.insert(reference.clone(), image(&reference, r != "init-b"));
        }
        let shared = desc("shared layer", "tar+gzip");
        let mut indexes = BTreeMap::new();
        let index = |seed: &str, manifests, sbom_layers| {
            Arc::new(IndexInfo {
                index: desc(&format!("{seed} index"), OCI_INDEX_TYPE),
                manifests,
                sbom_layers,
            })
        };
        indexes.insert(
            "example.com/lkb/init-a:1".to_string(),
            index("init-a", Vec::new(), vec![desc("spdx a", "in-toto")]),
        );
        indexes.insert(
            "example.com/lkb/app:1".to_string(),
            index("app", Vec::new(), vec![desc("spdx app", "in-toto")]),
        );
        indexes.insert(
            "example.com/lkb/vol:1".to_string(),
            index(
                "vol",
                vec![
                    platform_manifest("amd", "amd64", &shared),
                    platform_manifest("arm", "arm64", &shared),
                ],
                Vec::new(),
            ),
        );
        Fixture {
            config,
            images,
            indexes,
        }
    }

    const OCI_INDEX_TYPE: &str = crate::oci::OCI_INDEX;

    fn lower_tar(f: &Fixture, sbom: Option<SbomOptions>) -> Result<(Graph, NodeId), LowerError> {
        let input = LowerInput {
            config: &f.config,
            images: &f.images,
            files: Vec::new(),
            sources: Arc::new(ImageSources::default()),
            codec: Codec::None,
            limits: Limits::default(),
            indexes: &f.indexes,
            sbom,
        };
        let mut g = GraphBuilder::new();
        let outputs = lower(&mut g, "t", &[Format::Tar], &input)?;
        let node = outputs[0].node;
        Ok((g.build().expect("graph"), node))
    }

    fn kinds(graph: &Graph, nodes: &[NodeId]) -> Vec<&'static str> {
        nodes
            .iter()
            .map(|n| graph.action(*n).expect("node").kind())
            .collect()
    }

    fn fetched(graph: &Graph, node: NodeId) -> Vec<String> {
        graph
            .inputs(node)
            .iter()
            .map(|n| graph.action(*n).expect("node").label())
            .collect()
    }

    fn fetch_label(reference: &str, d: &LayerDesc) -> String {
        FetchBlobAction {
            reference: ImageRef::parse(reference).expect("ref"),
            layer: d.clone(),
            source: Arc::new(ImageSources::default()),
        }
        .label()
    }

    #[test]
    fn sections_come_in_linuxkit_order() {
        let f = fixture(YML);
        let (graph, tar) = lower_tar(&f, Some(SbomOptions::default())).expect("lower");
        let trees = graph.inputs(tar).to_vec();
        assert_eq!(
            kinds(&graph, &trees),
            [
                "init-root",
                "init-root",
                "apk-db",
                "volume",
                "volume",
                "volume",
                "bundle",
                "sbom"
            ]
        );
        let labels: Vec<String> = trees[3..6]
            .iter()
            .map(|n| graph.action(*n).expect("node").label())
            .collect();
        assert_eq!(
            labels,
            [
                "volume[0] blank (blank)",
                "volume[1] fs (example.com/lkb/vol:1)",
                "volume[2] arm (OCI layout of example.com/lkb/vol:1)"
            ]
        );
        // The APK union reads both init roots, in order.
        assert_eq!(graph.inputs(trees[2]), &trees[..2]);
        // The filesystem volume reads the merged image.
        assert_eq!(kinds(&graph, graph.inputs(trees[4])), ["merge"]);
    }

    #[test]
    fn oci_volume_fetches_the_selected_platforms_blobs_then_the_index() {
        let f = fixture(YML);
        let (graph, tar) = lower_tar(&f, None).expect("lower");
        let oci = graph.inputs(tar)[5];
        let vol = &f.indexes["example.com/lkb/vol:1"];
        let arm = &vol.manifests[1];
        let r = "example.com/lkb/vol:1";
        let mut expected: Vec<String> = arm.blobs().map(|d| fetch_label(r, d)).collect();
        expected.push(fetch_label(r, &vol.index));
        assert_eq!(fetched(&graph, oci), expected);

        // Without platforms: every manifest; the shared layer is fetched once.
        let all = YML.replace("    platforms: [linux/arm64]\n", "");
        let f = fixture(&all);
        let (graph, tar) = lower_tar(&f, None).expect("lower");
        let oci = graph.inputs(tar)[5];
        let vol = &f.indexes[r];
        let mut expected: Vec<String> = Vec::new();
        for m in &vol.manifests {
            for d in m.blobs() {
                let label = fetch_label(r, d);
                if !expected.contains(&label) {
                    expected.push(label);
                }
            }
        }
        expected.push(fetch_label(r, &vol.index));
        assert_eq!(fetched(&graph, oci), expected);
        // Two manifests of config, shared layer, own layer, manifest; then the index.
        assert_eq!(expected.len(), 2 * 4 - 1 + 1, "{expected:?}");
    }

    #[test]
    fn sbom_reads_the_attestations_of_extracted_images_in_order() {
        let f = fixture(YML);
        let (graph, tar) = lower_tar(&f, Some(SbomOptions::default())).expect("lower");
        let sbom = *graph.inputs(tar).last().expect("sbom");
        assert_eq!(
            fetched(&graph, sbom),
            [
                fetch_label("example.com/lkb/init-a:1", &desc("spdx a", "in-toto")),
                fetch_label("example.com/lkb/app:1", &desc("spdx app", "in-toto")),
            ]
        );
        // --no-sbom: no SBOM action at all.
        let (graph, tar) = lower_tar(&f, None).expect("lower");
        assert!(!kinds(&graph, graph.inputs(tar)).contains(&"sbom"));
        // One init image: no APK union.
        let one = YML.replace("  - example.com/lkb/init-b:1\n", "");
        let f = fixture(&one);
        let (graph, tar) = lower_tar(&f, None).expect("lower");
        assert!(!kinds(&graph, graph.inputs(tar)).contains(&"apk-db"));
    }

    #[test]
    fn oci_volume_needs_an_index_and_valid_platforms() {
        let yml = YML.replace(
            "example.com/lkb/vol:1\n    format",
            "example.com/lkb/init-b:1\n    format",
        );
        let f = fixture(&yml);
        let err = lower_tar(&f, None).expect_err("not an index");
        assert_eq!(err.category(), ErrorCategory::User);
        assert!(err.to_string().contains("needs an image index"), "{err}");

        let yml = YML.replace("[linux/arm64]", "[linux]");
        let f = fixture(&yml);
        let err = lower_tar(&f, None).expect_err("bad platform");
        assert_eq!(err.category(), ErrorCategory::User);
        assert!(err.to_string().contains("volume `arm`"), "{err}");
    }

    #[test]
    fn index_requests_follow_what_is_extracted() {
        let f = fixture(YML);
        let with = index_requests([&f.config], true);
        let sbom_only = IndexRequest {
            manifests: false,
            sbom: true,
        };
        assert_eq!(with["example.com/lkb/init-a:1"], sbom_only);
        assert_eq!(with["example.com/lkb/app:1"], sbom_only);
        assert_eq!(
            with["example.com/lkb/vol:1"],
            IndexRequest {
                manifests: true,
                sbom: true
            }
        );
        let without = index_requests([&f.config], false);
        assert_eq!(
            without.keys().collect::<Vec<_>>(),
            ["example.com/lkb/vol:1"]
        );
        assert!(!without["example.com/lkb/vol:1"].sbom);
    }

    #[test]
    fn platform_matching_is_linuxkits() {
        let entry = |arch: &str, variant: Option<&str>| Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: String::new(),
            size: 0,
            platform: Some(DescriptorPlatform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
                os_version: None,
                os_features: Vec::new(),
            }),
            annotations: BTreeMap::new(),
            urls: Vec::new(),
        };
        let p = |s: &str| Platform::parse(s).expect("platform");
        assert!(platform_wanted(&[], &entry("amd64", None)));
        assert!(platform_wanted(
            &[p("linux/arm64")],
            &entry("arm64", Some("v8"))
        ));
        assert!(platform_wanted(
            &[p("linux/arm64/v8")],
            &entry("arm64", Some("v8"))
        ));
        assert!(!platform_wanted(
            &[p("linux/arm64/v8")],
            &entry("arm64", None)
        ));
        assert!(!platform_wanted(&[p("linux/amd64")], &entry("arm64", None)));
        let mut bare = entry("amd64", None);
        bare.platform = None;
        assert!(platform_wanted(&[], &bare));
        assert!(!platform_wanted(&[p("linux/amd64")], &bare));
    }
}
