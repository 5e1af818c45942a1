//! The [`Scheduler`]: runs a [`Graph`] against a [`Store`], in parallel, cache first.
//!
//! The scheduler is one async loop that owns all bookkeeping; actions and store calls run as
//! tasks in a `JoinSet` and report back when they end. A node becomes *ready* when all its
//! inputs have results; its key is computed and the action cache is consulted (on the blocking
//! pool). A miss queues it, by critical path, for a permit of its class; an executing node holds
//! the permit while it executes and releases it before its result is recorded.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lkb_store::{ActionKey, ActionResult, Artifact, Store, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument as _;

mod record;

use record::{ExecFailure, LookupOutcome, execute_and_record, look_up};

use crate::action::Counters;
use crate::history::{HistoryRecord, field_list};
use crate::key::action_key;
use crate::{
    ActionClass, ActionError, BuildError, BuildEvent, BuildOptions, BuildOutcome, BuildStats,
    EngineError, ExecCtx, Graph, NodeId, RebuildReason, Remote, RemoteUse, Reporter,
};

/// Runs action graphs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Scheduler;

impl Scheduler {
    /// Builds the nodes `opts.targets` need (all by default), taking what it can from the
    /// store's action cache. On the first failure, or when `opts.cancel` is tripped, nothing new
    /// starts; running actions finish and are recorded; then the error is returned.
    pub async fn run(
        graph: &Graph,
        store: &Store,
        opts: &BuildOptions,
        reporter: Arc<dyn Reporter>,
    ) -> Result<BuildOutcome, BuildError> {
        let started = Instant::now();
        let needed = needed_nodes(graph, opts.targets.as_deref())?;
        if opts.cancel.is_cancelled() {
            return Err(BuildError::Cancelled);
        }
        let mut run = Run::new(graph, store, opts, reporter, needed);
        run.drive().await;
        run.finish(started.elapsed())
    }
}

/// Marks the nodes the targets depend on (all nodes without targets).
fn needed_nodes(graph: &Graph, targets: Option<&[NodeId]>) -> Result<Vec<bool>, EngineError> {
    let Some(targets) = targets else {
        return Ok(vec![true; graph.len()]);
    };
    let mut needed = vec![false; graph.len()];
    let mut stack = Vec::new();
    for &target in targets {
        if target.index() >= graph.len() {
            return Err(EngineError::UnknownNode { node: target });
        }
        stack.push(target);
    }
    while let Some(node) = stack.pop() {
        if !std::mem::replace(&mut needed[node.index()], true) {
            stack.extend_from_slice(graph.inputs(node));
        }
    }
    Ok(needed)
}

/// A node waiting for a permit. Higher critical path first, then insertion order.
struct Queued {
    priority: usize,
    node: usize,
    reason: RebuildReason,
}

impl PartialEq for Queued {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Queued {}
impl PartialOrd for Queued {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Queued {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.node.cmp(&self.node))
    }
}

/// What a task reports when it ends.
enum TaskOutput {
    /// One batch of cache lookups: per node, the outcome and how long it took.
    Looked(Vec<(usize, Result<LookupOutcome, StoreError>, Duration)>),
    /// One executed action (boxed: it is much larger than a batch).
    Executed(Box<Executed>),
    /// The remote cache was asked about a local miss: its result (now in the store), or
    /// `None` and the node runs for `reason`.
    RemoteLooked {
        node: usize,
        reason: RebuildReason,
        result: Option<ActionResult>,
        duration: Duration,
    },
    /// An executed result went to the remote cache (or the attempt was warned about).
    Uploaded,
}

struct Executed {
    node: usize,
    reason: RebuildReason,
    outcome: Result<ActionResult, ExecFailure>,
    duration: Duration,
}

const CLASSES: [ActionClass; 2] = [ActionClass::Cpu, ActionClass::Io];

fn class_slot(class: ActionClass) -> usize {
    match class {
        ActionClass::Cpu => 0,
        ActionClass::Io => 1,
    }
}

/// The state of one build.
struct Run<'a> {
    graph: &'a Graph,
    store: Store,
    opts: &'a BuildOptions,
    reporter: Arc<dyn Reporter>,
    counters: Counters,
    needed: Vec<bool>,
    /// Per node: inputs without a result yet (counted with multiplicity).
    waiting: Vec<usize>,
    results: Vec<Option<Arc<ActionResult>>>,
    keys: Vec<Option<ActionKey>>,
    /// Per ready node: what it is keyed on, written to the history when it runs.
    records: Vec<Option<HistoryRecord>>,
    /// Ready nodes whose cache lookup has not started; looked up together in one blocking task
    /// so that all of them are queued (and ordered by critical path) at once.
    to_look_up: Vec<usize>,
    /// Per class ([`class_slot`]): nodes waiting for a permit.
    queued: [BinaryHeap<Queued>; 2],
    semaphores: [Arc<Semaphore>; 2],
    /// Keys queued or executing → other nodes with the same key, to be completed with its result.
    in_flight: HashMap<ActionKey, Vec<usize>>,
    tasks: JoinSet<TaskOutput>,
    task_nodes: HashMap<tokio::task::Id, usize>,
    failure: Option<BuildError>,
    cancelled: bool,
    reasons: BTreeMap<NodeId, RebuildReason>,
    /// Per node executed in this build: the upstream change that made it run (see
    /// [`Run::explain`]), handed on to the reasons of its dependents.
    origins: Vec<Option<String>>,
    /// Per node: what the remote cache had to do with it.
    remote_use: Vec<RemoteUse>,
    cached: usize,
    executed: usize,
}

impl<'a> Run<'a> {
    fn new(
        graph: &'a Graph,
        store: &Store,
        opts: &'a BuildOptions,
        reporter: Arc<dyn Reporter>,
        needed: Vec<bool>,
    ) -> Self {
        let count = graph.len();
        Run {
            graph,
            store: store.clone(),
            opts,
            reporter,
            counters: Arc::new(Mutex::new(BTreeMap::new())),
            needed,
            waiting: graph.nodes.iter().map(|node| node.inputs.len()).collect(),
            results: vec![None; count],
            keys: vec![None; count],
            records: vec![None; count],
            to_look_up: Vec::new(),
            queued: [BinaryHeap::new(), BinaryHeap::new()],
            semaphores: [
                Arc::new(Semaphore::new(opts.jobs.max(1))),
                Arc::new(Semaphore::new(opts.io_jobs.max(1))),
            ],
            in_flight: HashMap::new(),
            tasks: JoinSet::new(),
            task_nodes: HashMap::new(),
            failure: None,
            cancelled: false,
            reasons: BTreeMap::new(),
            origins: vec![None; count],
            remote_use: vec![RemoteUse::NotAsked; count],
            cached: 0,
            executed: 0,
        }
    }

    fn stopping(&self) -> bool {
        self.failure.is_some() || self.cancelled
    }

    fn label(&self, node: usize) -> String {
        self.graph.nodes[node].action.label()
    }

    async fn drive(&mut self) {
        for node in 0..self.graph.len() {
            if self.needed[node] && self.waiting[node] == 0 {
                self.on_ready(node);
            }
        }
        let cancel = self.opts.cancel.clone();
        loop {
            self.start_lookups();
            self.start_queued();
            if self.tasks.is_empty() {
                break;
            }
            let joined = tokio::select! {
                biased;
                () = cancel.cancelled(), if !self.cancelled => None,
                joined = self.tasks.join_next_with_id() => joined,
            };
            match joined {
                None if !self.cancelled => {
                    tracing::info!("build cancelled; waiting for running actions");
                    self.cancelled = true;
                    self.queued.iter_mut().for_each(BinaryHeap::clear);
                }
                None => {}
                Some(joined) => {
                    self.on_joined(joined);
                    // Take every other finished task before starting work, so the queue is
                    // ordered by critical path over as many ready nodes as possible.
                    while let Some(joined) = self.tasks.try_join_next_with_id() {
                        self.on_joined(joined);
                    }
                }
            }
        }
    }

    fn on_joined(&mut self, joined: Result<(tokio::task::Id, TaskOutput), tokio::task::JoinError>) {
        if let Some(remote) = &self.opts.remote {
            for message in remote.take_warnings() {
                self.reporter.event(&BuildEvent::Warning { message });
            }
        }
        match joined {
            Ok((id, output)) => {
                self.task_nodes.remove(&id);
                self.on_task_output(output);
            }
            Err(error) => {
                let node = self.task_nodes.remove(&error.id());
                self.on_task_panic(node, error);
            }
        }
    }

    fn finish(self, wall: Duration) -> Result<BuildOutcome, BuildError> {
        if let Some(failure) = self.failure {
            return Err(failure);
        }
        if self.cancelled {
            return Err(BuildError::Cancelled);
        }
        let mut outcome = BuildOutcome::default();
        for id in self.graph.node_ids() {
            if !self.needed[id.index()] {
                continue;
            }
            let (Some(result), Some(key)) = (&self.results[id.index()], self.keys[id.index()])
            else {
                return Err(EngineError::Stalled {
                    label: self.label(id.index()),
                }
                .into());
            };
            outcome.results.insert(id, result.clone());
            outcome.keys.insert(id, key);
        }
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        outcome.stats = BuildStats {
            total: outcome.results.len(),
            cached: self.cached,
            executed: self.executed,
            counters: counters
                .iter()
                .map(|(name, n)| ((*name).to_owned(), *n))
                .collect(),
            remote: self.opts.remote.as_ref().map(|remote| remote.stats()),
            wall,
        };
        outcome.reasons = self.reasons;
        Ok(outcome)
    }

    /// The artifacts wired into `node`, in order.
    fn input_artifacts(&self, node: usize) -> Vec<Artifact> {
        self.graph.nodes[node]
            .wires
            .iter()
            .map(|wire| {
                let result = self.results[wire.node().index()]
                    .as_ref()
                    .expect("a ready node has all input results");
                result.outputs[wire.index()].clone()
            })
            .collect()
    }

    /// All inputs of `node` have results: key it and look it up (or queue it when forced).
    fn on_ready(&mut self, node: usize) {
        if self.stopping() {
            return;
        }
        let graph_node = &self.graph.nodes[node];
        let action = &graph_node.action;
        let inputs = self.input_artifacts(node);
        let key = action_key(
            action.kind(),
            action.version(),
            &graph_node.params.hash,
            &graph_node.outputs,
            inputs.iter(),
        );
        let labels = graph_node
            .inputs
            .iter()
            .map(|input| self.label(input.index()));
        let record = HistoryRecord::new(
            key,
            action.kind(),
            action.version(),
            &graph_node.params,
            &graph_node.outputs,
            labels.zip(inputs),
        );
        self.keys[node] = Some(key);
        self.records[node] = Some(record);
        if self.opts.rebuild {
            self.enqueue(node, RebuildReason::Forced);
            return;
        }
        self.to_look_up.push(node);
    }

    /// Looks up every node in `to_look_up`, in one blocking task.
    fn start_lookups(&mut self) {
        if self.to_look_up.is_empty() || self.stopping() {
            self.to_look_up.clear();
            return;
        }
        let batch: Vec<_> = self
            .to_look_up
            .drain(..)
            .map(|node| {
                let key = self.keys[node].expect("a ready node has a key");
                let record = self.records[node]
                    .clone()
                    .expect("a ready node has a record");
                (node, key, self.graph.nodes[node].history_key(), record)
            })
            .collect();
        let first = batch[0].0;
        let store = self.store.clone();
        let remote = self.opts.remote.clone().filter(|remote| remote.active());
        let handle = self.tasks.spawn_blocking(move || {
            let looked = batch
                .into_iter()
                .map(|(node, key, history_key, record)| {
                    let started = Instant::now();
                    let lookup = look_up(&store, &key, &history_key, &record, remote.as_deref());
                    (node, lookup, started.elapsed())
                })
                .collect();
            TaskOutput::Looked(looked)
        });
        self.task_nodes.insert(handle.id(), first);
    }

    /// The upstream origin recorded for the first of `inputs` that has one.
    fn first_origin<'i>(&self, mut inputs: impl Iterator<Item = &'i NodeId>) -> Option<String> {
        inputs.find_map(|input| self.origins[input.index()].clone())
    }

    /// Completes a miss's reason with the origin of the change upstream, and records what
    /// this node's own run means to its dependents:
    /// - changed params: `<identity> <fields> changed` (just the fields when they already
    ///   start with the identity, as in `files[3].contents changed`);
    /// - a new action: its [`Action::source`](crate::Action::source), else its inputs' origin;
    /// - a changed input: that input's origin (for a changed count, the first input's that
    ///   has one);
    /// - a new version: `<identity> version changed`.
    fn explain(&mut self, node: usize, reason: RebuildReason) -> RebuildReason {
        let graph_node = &self.graph.nodes[node];
        let action = &graph_node.action;
        let (reason, origin) = match reason {
            RebuildReason::ParamsChanged { fields } => {
                let identity = action.identity();
                let origin = if fields.is_empty() {
                    format!("{identity} parameters changed")
                } else if fields.iter().all(|field| field.starts_with(&identity)) {
                    format!("{} changed", field_list(&fields))
                } else {
                    format!("{identity} {} changed", field_list(&fields))
                };
                (RebuildReason::ParamsChanged { fields }, Some(origin))
            }
            RebuildReason::New => {
                let origin = action
                    .source()
                    .or_else(|| self.first_origin(graph_node.inputs.iter()));
                (RebuildReason::New, origin)
            }
            RebuildReason::InputChanged {
                input,
                input_label,
                artifact,
                old,
                new,
                origin: _,
            } => {
                let origin = self.first_origin(graph_node.inputs.get(input).into_iter());
                let reason = RebuildReason::InputChanged {
                    input,
                    input_label,
                    artifact,
                    old,
                    new,
                    origin: origin.clone(),
                };
                (reason, origin)
            }
            RebuildReason::InputCountChanged { old, new, .. } => {
                let origin = self.first_origin(graph_node.inputs.iter());
                let reason = RebuildReason::InputCountChanged {
                    old,
                    new,
                    origin: origin.clone(),
                };
                (reason, origin)
            }
            RebuildReason::VersionChanged { old, new } => (
                RebuildReason::VersionChanged { old, new },
                Some(format!("{} version changed", action.identity())),
            ),
            RebuildReason::OutputChanged { output, old, new } => {
                let origin = Some(format!("{} output {output} changed", action.identity()));
                (RebuildReason::OutputChanged { output, old, new }, origin)
            }
            other @ (RebuildReason::Forced
            | RebuildReason::CacheEntryDamaged { .. }
            | RebuildReason::CacheEntryMissing) => (other, None),
        };
        self.origins[node] = origin;
        reason
    }

    /// Queues a cache miss for a permit, unless the same key is already queued or running.
    fn enqueue(&mut self, node: usize, reason: RebuildReason) {
        let key = self.keys[node].expect("a queued node has a key");
        if let Some(duplicates) = self.in_flight.get_mut(&key) {
            duplicates.push(node);
            return;
        }
        self.in_flight.insert(key, Vec::new());
        let slot = class_slot(self.graph.nodes[node].action.class());
        self.queued[slot].push(Queued {
            priority: self.graph.critical[node],
            node,
            reason,
        });
    }

    /// Starts queued nodes while permits are free.
    fn start_queued(&mut self) {
        for class in CLASSES {
            let slot = class_slot(class);
            while !self.stopping() && !self.queued[slot].is_empty() {
                let Ok(permit) = self.semaphores[slot].clone().try_acquire_owned() else {
                    break;
                };
                let queued = self.queued[slot].pop().expect("checked non-empty");
                self.start(queued.node, queued.reason, permit);
            }
        }
    }

    fn start(&mut self, node: usize, reason: RebuildReason, permit: OwnedSemaphorePermit) {
        let action = self.graph.nodes[node].action.clone();
        let key = self.keys[node].expect("a started node has a key");
        let target = record::Recording {
            history_key: self.graph.nodes[node].history_key(),
            history: self.records[node]
                .take()
                .expect("a started node has a record")
                .to_json(),
            declared: self.graph.nodes[node].outputs.clone(),
        };
        let id = NodeId::from_index(node);
        self.reporter.event(&BuildEvent::ActionStarted {
            node: id,
            kind: action.kind(),
            label: action.label(),
        });
        let ctx = ExecCtx {
            node: id,
            inputs: self.input_artifacts(node),
            store: self.store.clone(),
            reporter: self.reporter.clone(),
            counters: self.counters.clone(),
            cancel: self.opts.cancel.clone(),
        };
        let span = tracing::info_span!("action", kind = action.kind(), key = %key.short());
        let remote = self.opts.remote.clone();
        let handle = self.tasks.spawn(
            async move {
                let started = Instant::now();
                // Inputs that are remote hits not yet downloaded come first.
                let fetched = match &remote {
                    Some(remote) => remote.materialize(&ctx.store, &ctx.inputs).await,
                    None => Ok(()),
                };
                let outcome = match fetched {
                    Ok(()) => execute_and_record(&*action, &ctx, key, &target, permit).await,
                    Err(lost) => Err(ExecFailure::RemoteLost(lost)),
                };
                TaskOutput::Executed(Box::new(Executed {
                    node,
                    reason,
                    outcome,
                    duration: started.elapsed(),
                }))
            }
            .instrument(span),
        );
        self.task_nodes.insert(handle.id(), node);
    }

    fn on_task_output(&mut self, output: TaskOutput) {
        match output {
            TaskOutput::Looked(looked) => {
                for (node, lookup, duration) in looked {
                    self.on_lookup(node, lookup, duration);
                }
            }
            TaskOutput::RemoteLooked {
                node,
                reason,
                result,
                duration,
            } => self.on_remote_looked(node, reason, result, duration),
            TaskOutput::Uploaded => {}
            TaskOutput::Executed(executed) => {
                let Executed {
                    node,
                    reason,
                    outcome,
                    duration,
                } = *executed;
                let key = self.keys[node].expect("an executed node has a key");
                let duplicates = self.in_flight.remove(&key).unwrap_or_default();
                match outcome {
                    Ok(result) => {
                        let result = Arc::new(result);
                        self.executed += 1;
                        self.upload(node, &result);
                        self.reasons
                            .insert(NodeId::from_index(node), reason.clone());
                        self.complete(node, result.clone(), Some(reason), duration);
                        for duplicate in duplicates {
                            self.origins[duplicate] = self.origins[node].clone();
                            self.complete(duplicate, result.clone(), None, Duration::ZERO);
                        }
                    }
                    Err(ExecFailure::Action(source)) => self.action_failed(node, source),
                    Err(ExecFailure::RemoteLost(source)) => {
                        // Not an action failure: the caller retries without the cache.
                        let label = self.label(node);
                        self.fail(BuildError::RemoteLost {
                            node: NodeId::from_index(node),
                            label,
                            source,
                        });
                    }
                    Err(ExecFailure::Store(source)) => {
                        let label = self.label(node);
                        self.report_failure(node, &source);
                        let id = NodeId::from_index(node);
                        self.fail(BuildError::Store {
                            node: id,
                            label,
                            source,
                        });
                    }
                }
            }
        }
    }

    fn on_lookup(
        &mut self,
        node: usize,
        lookup: Result<LookupOutcome, StoreError>,
        duration: Duration,
    ) {
        match lookup {
            Ok(LookupOutcome::Hit(result)) => {
                self.complete(node, Arc::new(result), None, duration);
            }
            Ok(LookupOutcome::Miss(_)) if self.stopping() => {}
            Ok(LookupOutcome::Miss(reason)) => match self.opts.remote.clone() {
                Some(remote) if remote.active() => self.ask_remote(node, reason, remote),
                _ => {
                    let reason = self.explain(node, reason);
                    self.enqueue(node, reason);
                }
            },
            Err(source) => {
                let label = self.label(node);
                self.fail(BuildError::Store {
                    node: NodeId::from_index(node),
                    label,
                    source,
                });
            }
        }
    }

    /// Asks the remote cache about a local miss, in a task.
    fn ask_remote(&mut self, node: usize, reason: RebuildReason, remote: Arc<Remote>) {
        let key = self.keys[node].expect("a looked-up node has a key");
        let history_key = self.graph.nodes[node].history_key();
        let history = self.records[node]
            .as_ref()
            .expect("a looked-up node has a record")
            .to_json();
        let store = self.store.clone();
        let handle = self.tasks.spawn(async move {
            let started = Instant::now();
            let result = remote.fetch(&store, &key, (&history_key, &history)).await;
            TaskOutput::RemoteLooked {
                node,
                reason,
                result,
                duration: started.elapsed(),
            }
        });
        self.task_nodes.insert(handle.id(), node);
    }

    fn on_remote_looked(
        &mut self,
        node: usize,
        reason: RebuildReason,
        result: Option<ActionResult>,
        duration: Duration,
    ) {
        match result {
            Some(result) => {
                self.remote_use[node] = RemoteUse::Hit;
                self.complete(node, Arc::new(result), None, duration);
            }
            None => {
                self.remote_use[node] = RemoteUse::Miss;
                if !self.stopping() {
                    let reason = self.explain(node, reason);
                    self.enqueue(node, reason);
                }
            }
        }
    }

    /// Sends an executed result to the remote cache, in a task the build waits for.
    fn upload(&mut self, node: usize, result: &Arc<ActionResult>) {
        let Some(remote) = self.opts.remote.clone().filter(|r| r.uploads()) else {
            return;
        };
        let key = self.keys[node].expect("an executed node has a key");
        let store = self.store.clone();
        let result = result.clone();
        self.tasks.spawn(async move {
            remote.upload(&store, &key, &result).await;
            TaskOutput::Uploaded
        });
    }

    fn on_task_panic(&mut self, node: Option<usize>, error: tokio::task::JoinError) {
        let message = if error.is_panic() {
            let payload = error.into_panic();
            let text = payload
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned());
            format!("panicked: {text}")
        } else {
            format!("task ended abnormally: {error}")
        };
        match node {
            Some(node) => {
                if let Some(key) = self.keys[node] {
                    self.in_flight.remove(&key);
                }
                self.action_failed(node, ActionError::internal(message));
            }
            None => self.fail(BuildError::Graph(EngineError::Stalled { label: message })),
        }
    }

    fn action_failed(&mut self, node: usize, source: ActionError) {
        if self.cancelled && self.failure.is_none() {
            tracing::debug!(label = self.label(node), error = %source, "action stopped after cancellation");
            return;
        }
        self.report_failure(node, &source);
        let label = self.label(node);
        self.fail(BuildError::ActionFailed {
            node: NodeId::from_index(node),
            label,
            source,
        });
    }

    fn report_failure(&self, node: usize, error: &dyn std::error::Error) {
        let mut chain = error.to_string();
        let mut cause = error.source();
        while let Some(next) = cause {
            chain.push_str(&format!(": {next}"));
            cause = next.source();
        }
        let action = &self.graph.nodes[node].action;
        self.reporter.event(&BuildEvent::ActionFailed {
            node: NodeId::from_index(node),
            kind: action.kind(),
            label: action.label(),
            error: chain,
        });
    }

    fn fail(&mut self, error: BuildError) {
        if self.failure.is_some() {
            tracing::error!(error = %error, "another action failed after the first failure");
            return;
        }
        self.failure = Some(error);
        self.queued.iter_mut().for_each(BinaryHeap::clear);
    }

    /// Records a node's result and readies its dependents.
    fn complete(
        &mut self,
        node: usize,
        result: Arc<ActionResult>,
        reason: Option<RebuildReason>,
        duration: Duration,
    ) {
        let action = &self.graph.nodes[node].action;
        let cached = reason.is_none();
        if cached {
            self.cached += 1;
        }
        self.reporter.event(&BuildEvent::ActionFinished {
            node: NodeId::from_index(node),
            kind: action.kind(),
            label: action.label(),
            cached,
            reason,
            remote: self.remote_use[node],
            duration,
        });
        self.results[node] = Some(result);
        for dependent in &self.graph.dependents[node] {
            let dependent = dependent.index();
            if !self.needed[dependent] {
                continue;
            }
            self.waiting[dependent] -= 1;
            if self.waiting[dependent] == 0 {
                self.on_ready(dependent);
            }
        }
    }
}
