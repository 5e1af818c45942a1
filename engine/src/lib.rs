//! The generic build engine of lkb: action graphs, action keys, and a parallel scheduler.
//!
//! It knows nothing about OCI or LinuxKit: `lkb-rules` implements [`Action`] for fetch,
//! unpack, merge, … and lowers a yml into a [`Graph`].
//!
//! # Overview
//!
//! - [`Action`] (`action`): a pure function from the results of its inputs plus parameters to
//!   an [`ActionResult`](lkb_store::ActionResult); executed with an [`ExecCtx`].
//! - [`KeyHasher`] (`key`): canonical, typed, length-prefixed key material.
//! - [`GraphBuilder`] → [`Graph`] (`graph`): nodes are actions, edges are inputs in declared
//!   order. Identical actions are merged; cycles are reported with every member.
//! - [`Scheduler::run`] (`scheduler`): computes each ready node's [`ActionKey`], takes hits
//!   from the store's action cache, executes misses under `-j`/io limits (critical path first),
//!   records results, and explains each execution with a [`RebuildReason`] (`history`).
//! - [`BuildEvent`]s go to a [`Reporter`] (`event`); [`CancelToken`] (`cancel`) stops a build.
//! - [`probe`] (`probe`): the keys and cache state of a graph's nodes without running
//!   anything (for `lkb query`).
//!
//! # Action keys
//!
//! An [`ActionKey`] is the BLAKE3 hash of this sequence of [`KeyHasher`] writes:
//!
//! | # | what                                  | written as                                     |
//! |---|---------------------------------------|------------------------------------------------|
//! | 1 | [`KEY_SCHEMA_VERSION`]                | `u64`                                          |
//! | 2 | [`Action::kind`]                      | `str`                                          |
//! | 3 | [`Action::version`]                   | `u64`                                          |
//! | 4 | params: BLAKE3 of [`Action::params`]' writes | `bytes` (32)                            |
//! | 5 | inputs, in declared order             | `list` of inputs; each a `list` of its result's artifacts in output order, each `str` name, `digest` sha256, `u64` size |
//!
//! Each write is a type tag, then (for strings, bytes and lists) a little-endian `u64` length,
//! then the value. Not in the key: the action's label or identity, paths, times, the host,
//! the environment, or how the inputs were produced. Because inputs enter the key only through
//! the *bytes they produced*, an upstream action that re-runs and writes identical output
//! leaves every downstream key unchanged, and those actions hit the cache (early cut-off).
//! Any change to this encoding must bump [`KEY_SCHEMA_VERSION`]; golden tests pin it.
//!
//! # Build history
//!
//! After executing (or on a cache hit with a different key than last time), the scheduler
//! stores a [`HistoryRecord`] under the action's [`Action::identity`] in
//! [`MetaTable::History`](lkb_store::MetaTable::History): key, kind, version, params hash and
//! every input's artifacts, plus a short digest per params field ([`KeyHasher::field`]). The
//! next miss compares against it to produce the [`RebuildReason`]: which params fields
//! changed (`files[3].contents`), or which input changed from what to what. The scheduler
//! also hands each run's *origin* downstream (a changed field, or a new action's
//! [`Action::source`] such as an image), so an input change names the change upstream that
//! caused it.

mod action;
mod build;
mod cancel;
mod error;
mod event;
mod graph;
mod history;
mod key;
mod probe;
mod scheduler;

pub use action::{Action, ActionClass, ActionError, Codec, ExecCtx, InputKinds, OutputDecl};
pub use build::{BuildOptions, BuildOutcome, BuildStats};
pub use cancel::CancelToken;
pub use error::{BuildError, EngineError};
pub use event::{BuildEvent, NullReporter, Reporter};
pub use graph::{Graph, GraphBuilder, NodeId, Out};
pub use history::{HistoryRecord, InputRecord, RebuildReason};
pub use key::{
    KEY_SCHEMA_VERSION, KeyHasher, ParamsDigest, UNNAMED_FIELD, action_key, params_digest,
    params_hash,
};
pub use lkb_store::{ActionKey, ArtifactKind, ErrorCategory};
pub use probe::{CacheState, NodeProbe, probe};
pub use scheduler::Scheduler;
