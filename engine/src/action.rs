//! The [`Action`] trait, its execution context and its error type.

use std::collections::BTreeMap;
use std::error::Error;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use lkb_store::{ActionResult, Artifact, ArtifactKind, BlobRef, ErrorCategory, Store, StoreError};

use crate::{BuildEvent, CancelToken, KeyHasher, NodeId, Reporter};

/// What bounds an action's parallelism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActionClass {
    /// CPU or disk work; bounded by `-j` ([`BuildOptions::jobs`](crate::BuildOptions::jobs)).
    Cpu,
    /// Network work; bounded by [`BuildOptions::io_jobs`](crate::BuildOptions::io_jobs).
    Io,
}

/// The writer of an artifact's bytes whose own version changes them: a file-system encoding,
/// a compressor and its library version. Declared with an [`OutputDecl`], it enters the key of
/// every action producing such an output, so a new codec version never hits an old entry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Codec {
    /// What writes the bytes, e.g. `lkb-tree` or `gzip`.
    pub name: &'static str,
    /// Everything about it that changes the bytes, e.g. `1` or `level=5;libdeflate=1.26.1`.
    pub version: String,
}

/// One artifact an action produces: its name, its kind and (optionally) its codec.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OutputDecl {
    pub name: &'static str,
    pub kind: ArtifactKind,
    pub codec: Option<Codec>,
}

impl OutputDecl {
    /// An output of `kind` without a versioned codec.
    pub fn new(name: &'static str, kind: ArtifactKind) -> Self {
        OutputDecl {
            name,
            kind,
            codec: None,
        }
    }

    /// The same output, written by `codec`.
    #[must_use]
    pub fn codec(mut self, name: &'static str, version: impl Into<String>) -> Self {
        self.codec = Some(Codec {
            name,
            version: version.into(),
        });
        self
    }
}

/// The kinds of artifact an action takes, in order: `fixed` first, then any number of `rest`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InputKinds {
    pub fixed: Vec<ArtifactKind>,
    pub rest: Option<ArtifactKind>,
}

impl InputKinds {
    /// No inputs.
    pub fn none() -> Self {
        Self::default()
    }

    /// Exactly these inputs.
    pub fn exactly(kinds: impl Into<Vec<ArtifactKind>>) -> Self {
        InputKinds {
            fixed: kinds.into(),
            rest: None,
        }
    }

    /// Any number of inputs of one kind.
    pub fn each(kind: ArtifactKind) -> Self {
        InputKinds {
            fixed: Vec::new(),
            rest: Some(kind),
        }
    }

    /// `fixed`, then any number of `rest`.
    pub fn then_each(fixed: impl Into<Vec<ArtifactKind>>, rest: ArtifactKind) -> Self {
        InputKinds {
            fixed: fixed.into(),
            rest: Some(rest),
        }
    }

    /// The kind input `index` must have, or `None` when there is no such input.
    pub fn at(&self, index: usize) -> Option<ArtifactKind> {
        self.fixed.get(index).copied().or(self.rest)
    }

    /// Whether `count` inputs are enough.
    pub fn enough(&self, count: usize) -> bool {
        count >= self.fixed.len()
    }
}

/// A pure function from input artifacts and parameters to output artifacts.
///
/// The engine derives the action's key from [`kind`](Action::kind),
/// [`version`](Action::version), [`params`](Action::params) and the results of its inputs, so
/// an action cannot forget to hash an input. Two actions with the same key must produce the
/// same outputs.
#[async_trait]
pub trait Action: Send + Sync + fmt::Debug + 'static {
    /// A stable name for this kind of action, e.g. `"unpack"`.
    fn kind(&self) -> &'static str;

    /// Bump when the action's output for the same inputs and parameters changes.
    fn version(&self) -> u32 {
        1
    }

    /// What a human calls this action, e.g. `unpack layer sha256:ab12… of localhost/busybox`.
    fn label(&self) -> String;

    /// A name that stays the same across builds when the inputs change, e.g.
    /// `bundle onboot[0] dhcpcd`; the history for `--explain` is keyed by it.
    fn identity(&self) -> String;

    /// Writes every fact other than the inputs that affects the output, canonically.
    ///
    /// Group the writes into named [`KeyHasher::field`]s (`cmdline`, `files[3].contents`):
    /// when the params change, `--explain` names the fields that changed.
    fn params(&self, key: &mut KeyHasher);

    /// The outside source this action reads, if any, e.g. `image localhost/app:v2` for a
    /// fetch. When the action is new, its dependents name this as the origin of their input
    /// change. Not part of the key.
    fn source(&self) -> Option<String> {
        None
    }

    /// The artifacts this action produces, in the order its result lists them. The engine
    /// checks every result against it, and puts it (with each codec's version) into the key.
    fn outputs(&self) -> Vec<OutputDecl>;

    /// The kind of each input artifact; the graph builder refuses any other wiring.
    fn inputs(&self) -> InputKinds;

    /// Which semaphore bounds this action.
    fn class(&self) -> ActionClass {
        ActionClass::Cpu
    }

    /// Produces the outputs. Blobs are written to [`ExecCtx::store`]; the engine records the
    /// result. Blocking or CPU-heavy work goes through [`ExecCtx::blocking`].
    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError>;
}

/// A failed action: the cause, and who has to act on it.
///
/// Displays as its cause and reports the cause's own source as its source, so the chain of
/// causes prints each message once.
pub struct ActionError {
    category: ErrorCategory,
    source: Box<dyn Error + Send + Sync>,
}

impl ActionError {
    /// An error of the given category; `source` may be an error or a message.
    pub fn new(category: ErrorCategory, source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        ActionError {
            category,
            source: source.into(),
        }
    }

    /// The input is wrong.
    pub fn user(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::new(ErrorCategory::User, source)
    }

    /// The machine or network is at fault.
    pub fn environment(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::new(ErrorCategory::Environment, source)
    }

    /// A bug: an invariant did not hold.
    pub fn internal(source: impl Into<Box<dyn Error + Send + Sync>>) -> Self {
        Self::new(ErrorCategory::Internal, source)
    }

    /// Who has to act on this error.
    pub fn category(&self) -> ErrorCategory {
        self.category
    }

    /// The cause.
    pub fn cause(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.source, f)
    }
}

impl fmt::Debug for ActionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ActionError")
            .field("category", &self.category)
            .field("source", &self.source)
            .finish()
    }
}

impl Error for ActionError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.source()
    }
}

impl From<StoreError> for ActionError {
    fn from(error: StoreError) -> Self {
        Self::new(error.category(), error)
    }
}

/// Build-wide counters actions add to (e.g. bytes fetched).
pub(crate) type Counters = Arc<Mutex<BTreeMap<&'static str, u64>>>;

/// What an executing action can see and do.
pub struct ExecCtx {
    pub(crate) node: NodeId,
    pub(crate) inputs: Vec<Artifact>,
    pub(crate) store: Store,
    pub(crate) reporter: Arc<dyn Reporter>,
    pub(crate) counters: Counters,
    pub(crate) cancel: CancelToken,
}

impl fmt::Debug for ExecCtx {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExecCtx")
            .field("node", &self.node)
            .field("inputs", &self.inputs)
            .finish_non_exhaustive()
    }
}

impl ExecCtx {
    /// The node being executed.
    pub fn node(&self) -> NodeId {
        self.node
    }

    /// The input artifacts, in the order they were wired.
    pub fn inputs(&self) -> &[Artifact] {
        &self.inputs
    }

    /// The blob of input `index`, or an internal error naming the index.
    pub fn input(&self, index: usize) -> Result<&BlobRef, ActionError> {
        self.inputs
            .get(index)
            .map(|artifact| &artifact.blob)
            .ok_or_else(|| {
                ActionError::internal(format!(
                    "action has {} inputs, input {index} was asked for",
                    self.inputs.len()
                ))
            })
    }

    /// The store to read inputs from and write outputs to.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Reports that `bytes` more bytes were processed.
    pub fn progress(&self, bytes: u64) {
        self.reporter.event(&BuildEvent::Progress {
            node: self.node,
            bytes,
        });
    }

    /// Adds `n` to the build-wide counter `name`, shown in [`BuildStats`](crate::BuildStats).
    pub fn add_counter(&self, name: &'static str, n: u64) {
        let mut counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *counters.entry(name).or_default() += n;
    }

    /// Whether the build was cancelled; long actions should check it and stop early.
    pub fn cancelled(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Runs blocking or CPU-heavy work off the async workers (`spawn_blocking`). A panic in
    /// `work` resumes in the caller.
    pub async fn blocking<T, F>(&self, work: F) -> T
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        match tokio::task::spawn_blocking(work).await {
            Ok(value) => value,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => panic!("blocking task did not run (runtime shutting down): {error}"),
        }
    }
}
