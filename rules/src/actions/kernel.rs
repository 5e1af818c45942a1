//! The `kernel:` section: one kernel image split into the kernel, its command line, microcode
//! and the modules tar, as the artifacts the archive actions put together.

use async_trait::async_trait;
use lkb_engine::{Action, ActionError, ArtifactKind, ExecCtx, InputKinds, KeyHasher, OutputDecl};
use lkb_store::{ActionResult, Artifact, BlobRef, Store};

use super::image::limits_key;
use super::{
    GENERATED_DIR, GENERATED_FILE, insert, load_tree, save_tree, tag, tree_error, tree_output,
};
use crate::layer::{Limits, unpack_layer};
use crate::tree::{Entry, Meta, Tree};

/// Splits a kernel image into the kernel, its command line, microcode and modules.
#[derive(Debug)]
pub struct KernelAction {
    pub source: String,
    pub binary: String,
    pub tar: Option<String>,
    pub ucode: Option<String>,
    pub cmdline: String,
    pub limits: Limits,
}

#[async_trait]
impl Action for KernelAction {
    fn kind(&self) -> &'static str {
        "kernel"
    }
    fn version(&self) -> u32 {
        // 2: the kernel tar's `./` entry is kept as the root of `rootfs` and `initrd`.
        2
    }
    fn label(&self) -> String {
        format!("kernel {}", self.source)
    }
    fn identity(&self) -> String {
        "kernel".into()
    }
    fn params(&self, key: &mut KeyHasher) {
        key.field("image", |key| {
            key.str(&self.source);
        })
        .field("binary", |key| {
            key.str(&self.binary);
        })
        .field("tar", |key| {
            key.opt_str(self.tar.as_deref());
        })
        .field("ucode", |key| {
            key.opt_str(self.ucode.as_deref());
        })
        .field("cmdline", |key| {
            key.str(&self.cmdline);
        })
        .field("limits", |key| limits_key(&self.limits, key));
    }
    fn outputs(&self) -> Vec<OutputDecl> {
        let mut outputs = vec![
            OutputDecl::new("kernel", ArtifactKind::Blob),
            OutputDecl::new("cmdline", ArtifactKind::Blob),
        ];
        if self.ucode.is_some() {
            outputs.push(OutputDecl::new("ucode", ArtifactKind::Blob));
        }
        outputs.push(tree_output("rootfs"));
        outputs.push(tree_output("initrd"));
        outputs
    }
    fn inputs(&self) -> InputKinds {
        InputKinds::exactly([ArtifactKind::Tree])
    }
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        let image = *ctx.input(0)?;
        let store = ctx.store().clone();
        let this = KernelAction {
            source: self.source.clone(),
            binary: self.binary.clone(),
            tar: self.tar.clone(),
            ucode: self.ucode.clone(),
            cmdline: self.cmdline.clone(),
            limits: self.limits,
        };
        ctx.blocking(move || this.split(&store, &load_tree(&store, &image)?))
            .await
    }
}

impl KernelAction {
    fn split(&self, store: &Store, image: &Tree) -> Result<ActionResult, ActionError> {
        let find = |name: &str, what: &str| -> Result<(BlobRef, Meta), ActionError> {
            let path = name.trim_start_matches('/');
            match image.resolve(path) {
                Some(e) => match e.blob() {
                    Some(b) => Ok((*b, e.meta())),
                    None => Err(ActionError::user(format!(
                        "{what} `{name}` in kernel image {} is a {}, not a file",
                        self.source,
                        e.kind.name()
                    ))),
                },
                None => Err(ActionError::user(format!(
                    "did not find {what} `{name}` in kernel image {}",
                    self.source
                ))),
            }
        };
        let (kernel, kernel_meta) = find(&self.binary, "kernel")?;
        let cmdline = store.put_bytes(self.cmdline.as_bytes())?;
        let mut outputs = vec![
            Artifact {
                name: "kernel".into(),
                kind: ArtifactKind::Blob,
                blob: kernel,
            },
            Artifact {
                name: "cmdline".into(),
                kind: ArtifactKind::Blob,
                blob: cmdline,
            },
        ];
        let mut rootfs = Tree::new();
        let mut initrd = Tree::new();
        for t in [&mut rootfs, &mut initrd] {
            insert(t, Entry::dir("boot", GENERATED_DIR))?;
        }
        insert(
            &mut rootfs,
            Entry::file("boot/cmdline", cmdline, GENERATED_FILE),
        )?;
        insert(&mut rootfs, Entry::file("boot/kernel", kernel, kernel_meta))?;
        if let Some(tar) = &self.tar {
            let (blob, _) = find(tar, "kernel tar")?;
            let file = store.open_blob(&blob.digest)?;
            let layer = unpack_layer(
                store,
                std::io::BufReader::new(file),
                "application/vnd.oci.image.layer.v1.tar",
                &self.limits,
                None,
            )
            .map_err(|e| ActionError::new(e.category(), e))?;
            let modules = Tree::merge_layers(&[layer]).map_err(tree_error)?;
            // LinuxKit copies the tar's `./` entry too, so its owner and mode reach `/`.
            for t in [&mut rootfs, &mut initrd] {
                t.set_root(modules.root().cloned()).map_err(tree_error)?;
            }
            for entry in modules.iter() {
                insert(&mut rootfs, entry.clone())?;
                insert(&mut initrd, entry.clone())?;
            }
        }
        if let Some(ucode) = &self.ucode {
            let (blob, meta) = find(ucode, "ucode")?;
            insert(&mut rootfs, Entry::file("boot/ucode.cpio", blob, meta))?;
            outputs.push(Artifact {
                name: "ucode".into(),
                kind: ArtifactKind::Blob,
                blob,
            });
        }
        for t in [&mut rootfs, &mut initrd] {
            tag(t, &self.source, "kernel");
        }
        outputs.push(Artifact {
            name: "rootfs".into(),
            kind: ArtifactKind::Tree,
            blob: save_tree(store, &rootfs)?,
        });
        outputs.push(Artifact {
            name: "initrd".into(),
            kind: ArtifactKind::Tree,
            blob: save_tree(store, &initrd)?,
        });
        Ok(ActionResult { outputs })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::changed_params as changed;

    fn kernel() -> KernelAction {
        KernelAction {
            source: "localhost/kernel:1".into(),
            binary: "/kernel".into(),
            tar: Some("/kernel.tar".into()),
            ucode: None,
            cmdline: "console=ttyS0".into(),
            limits: Limits::default(),
        }
    }

    #[test]
    fn kernel_params_name_each_setting() {
        let base = kernel();
        let cmdline = KernelAction {
            cmdline: "console=ttyS0 quiet".into(),
            ..kernel()
        };
        assert_eq!(changed(&base, &cmdline), ["cmdline"]);
        let parts = KernelAction {
            binary: "/bzImage".into(),
            tar: None,
            ucode: Some("/ucode.cpio".into()),
            ..kernel()
        };
        assert_eq!(changed(&base, &parts), ["binary", "tar", "ucode"]);
        let image = KernelAction {
            source: "localhost/kernel:2".into(),
            ..kernel()
        };
        assert_eq!(changed(&base, &image), ["image"]);
        let limits = KernelAction {
            limits: Limits {
                max_entries: 7,
                ..Limits::default()
            },
            ..kernel()
        };
        assert_eq!(changed(&base, &limits), ["limits"]);
    }
}
