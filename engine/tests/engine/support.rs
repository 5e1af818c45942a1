//! `CountingAction` and a small world (store + counters + recorded events) to run graphs in.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use lkb_engine::{
    Action, ActionClass, ActionError, BuildError, BuildEvent, BuildOptions, BuildOutcome,
    ErrorCategory, ExecCtx, Graph, KeyHasher, NodeId, Reporter, Scheduler,
};
use lkb_engine::{ArtifactKind, InputKinds, OutputDecl};
use lkb_store::{ActionResult, Store};

/// Executions per action name, and how many ran at once per class.
#[derive(Debug, Default)]
pub struct Counts {
    runs: Mutex<BTreeMap<String, usize>>,
    running: [AtomicUsize; 2],
    max_running: [AtomicUsize; 2],
}

impl Counts {
    pub fn runs(&self, name: &str) -> usize {
        self.runs
            .lock()
            .expect("counts lock")
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    pub fn total(&self) -> usize {
        self.runs.lock().expect("counts lock").values().sum()
    }

    /// Names that executed at least once, sorted.
    pub fn executed(&self) -> Vec<String> {
        self.runs
            .lock()
            .expect("counts lock")
            .keys()
            .cloned()
            .collect()
    }

    pub fn reset(&self) {
        self.runs.lock().expect("counts lock").clear();
        for max in &self.max_running {
            max.store(0, Ordering::SeqCst);
        }
    }

    pub fn max_running(&self, class: ActionClass) -> usize {
        self.max_running[slot(class)].load(Ordering::SeqCst)
    }
}

fn slot(class: ActionClass) -> usize {
    match class {
        ActionClass::Cpu => 0,
        ActionClass::Io => 1,
    }
}

/// How a [`CountingAction`] ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Behaviour {
    /// Writes bytes derived from its params and its inputs' bytes.
    Derived,
    /// Writes these bytes whatever its inputs (to test early cut-off).
    Fixed(String),
    /// Fails with this category (the cause has a cause of its own).
    Fail(ErrorCategory),
    /// Panics.
    Panic,
    /// Runs until the build is cancelled, then succeeds.
    UntilCancelled,
}

/// A synthetic action: counts executions, writes a deterministic output.
#[derive(Debug, Clone)]
pub struct CountingAction {
    pub name: String,
    pub salt: String,
    pub version: u32,
    pub class: ActionClass,
    pub behaviour: Behaviour,
    pub delay: Duration,
    /// What [`Action::source`] says (not part of the key).
    pub source: Option<String>,
    pub counts: Arc<Counts>,
}

impl CountingAction {
    pub fn new(counts: &Arc<Counts>, name: &str) -> Self {
        CountingAction {
            name: name.to_owned(),
            salt: String::new(),
            version: 1,
            class: ActionClass::Cpu,
            behaviour: Behaviour::Derived,
            delay: Duration::ZERO,
            source: None,
            counts: counts.clone(),
        }
    }

    pub fn salt(mut self, salt: &str) -> Self {
        self.salt = salt.to_owned();
        self
    }

    pub fn behaviour(mut self, behaviour: Behaviour) -> Self {
        self.behaviour = behaviour;
        self
    }

    pub fn delay_ms(mut self, ms: u64) -> Self {
        self.delay = Duration::from_millis(ms);
        self
    }

    pub fn class(mut self, class: ActionClass) -> Self {
        self.class = class;
        self
    }

    pub fn version(mut self, version: u32) -> Self {
        self.version = version;
        self
    }

    pub fn source(mut self, source: &str) -> Self {
        self.source = Some(source.to_owned());
        self
    }

    pub fn arc(self) -> Arc<dyn Action> {
        Arc::new(self)
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{name} refused to work")]
pub(crate) struct Refused {
    name: String,
    #[source]
    source: std::io::Error,
}

struct RunningGuard<'a>(&'a AtomicUsize);

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[async_trait]
impl Action for CountingAction {
    fn kind(&self) -> &'static str {
        "counting"
    }

    fn version(&self) -> u32 {
        self.version
    }

    fn label(&self) -> String {
        format!("count {}", self.name)
    }

    fn identity(&self) -> String {
        self.name.clone()
    }

    fn params(&self, key: &mut KeyHasher) {
        key.field("name", |key| {
            key.str(&self.name);
        })
        .field("salt", |key| {
            key.str(&self.salt);
        })
        .field("behaviour", |key| {
            match &self.behaviour {
                Behaviour::Derived => key.str("derived"),
                Behaviour::Fixed(bytes) => key.str("fixed").str(bytes),
                Behaviour::Fail(category) => key.str("fail").str(&format!("{category:?}")),
                Behaviour::Panic => key.str("panic"),
                Behaviour::UntilCancelled => key.str("until-cancelled"),
            };
        });
    }

    fn outputs(&self) -> Vec<OutputDecl> {
        vec![OutputDecl::new("out", ArtifactKind::Blob)]
    }

    fn inputs(&self) -> InputKinds {
        InputKinds::each(ArtifactKind::Blob)
    }

    fn class(&self) -> ActionClass {
        self.class
    }

    fn source(&self) -> Option<String> {
        self.source.clone()
    }

    async fn execute(&self, ctx: &ExecCtx) -> Result<ActionResult, ActionError> {
        *self
            .counts
            .runs
            .lock()
            .expect("counts lock")
            .entry(self.name.clone())
            .or_default() += 1;
        let slot = slot(self.class);
        let now = self.counts.running[slot].fetch_add(1, Ordering::SeqCst) + 1;
        self.counts.max_running[slot].fetch_max(now, Ordering::SeqCst);
        let _running = RunningGuard(&self.counts.running[slot]);

        tokio::time::sleep(self.delay).await;
        let mut output = match &self.behaviour {
            Behaviour::Fail(category) => {
                let source = std::io::Error::other("disk says no");
                return Err(ActionError::new(
                    *category,
                    Refused {
                        name: self.name.clone(),
                        source,
                    },
                ));
            }
            Behaviour::Panic => panic!("{} exploded", self.name),
            Behaviour::UntilCancelled => {
                while !ctx.cancelled() {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                format!("{} survived", self.name).into_bytes()
            }
            Behaviour::Fixed(bytes) => bytes.clone().into_bytes(),
            Behaviour::Derived => format!("{}/{}", self.name, self.salt).into_bytes(),
        };
        if self.behaviour == Behaviour::Derived {
            for input in ctx.inputs() {
                let blob = input.blob;
                let store = ctx.store().clone();
                let bytes = ctx.blocking(move || store.read_blob(&blob.digest)).await?;
                output.push(b'|');
                output.extend_from_slice(&bytes);
            }
        }
        ctx.progress(output.len() as u64);
        ctx.add_counter("bytes written", output.len() as u64);
        let store = ctx.store().clone();
        let blob = ctx.blocking(move || store.put_bytes(&output)).await?;
        Ok(ActionResult::new().with("out", ArtifactKind::Blob, blob))
    }
}

/// Records every event.
#[derive(Debug, Default)]
pub struct Recorder {
    pub events: Mutex<Vec<BuildEvent>>,
}

impl Reporter for Recorder {
    fn event(&self, event: &BuildEvent) {
        self.events.lock().expect("events lock").push(event.clone());
    }
}

impl Recorder {
    pub fn take(&self) -> Vec<BuildEvent> {
        std::mem::take(&mut *self.events.lock().expect("events lock"))
    }

    pub fn started_labels(&self) -> Vec<String> {
        let events = self.events.lock().expect("events lock");
        events
            .iter()
            .filter_map(|event| match event {
                BuildEvent::ActionStarted { label, .. } => Some(label.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A store, shared counters and a recorder.
pub struct World {
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub counts: Arc<Counts>,
    pub recorder: Arc<Recorder>,
}

impl World {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open store");
        World {
            dir,
            store,
            counts: Arc::default(),
            recorder: Arc::default(),
        }
    }

    pub fn action(&self, name: &str) -> CountingAction {
        CountingAction::new(&self.counts, name)
    }

    /// Runs with fresh counters and events.
    pub async fn run_with(
        &self,
        graph: &Graph,
        opts: &BuildOptions,
    ) -> Result<BuildOutcome, BuildError> {
        self.counts.reset();
        self.recorder.take();
        Scheduler::run(graph, &self.store, opts, self.recorder.clone()).await
    }

    pub async fn run(&self, graph: &Graph) -> BuildOutcome {
        self.run_with(
            graph,
            &BuildOptions {
                jobs: 2,
                ..BuildOptions::default()
            },
        )
        .await
        .expect("build succeeds")
    }

    /// The bytes of a node's `out` artifact.
    pub fn output(&self, outcome: &BuildOutcome, node: NodeId) -> String {
        let blob = outcome.results[&node].get("out").expect("out artifact");
        String::from_utf8(self.store.read_blob(&blob.digest).expect("read output"))
            .expect("utf-8 output")
    }
}
