//! The generic build engine of lkb: action graphs, action keys, and a parallel scheduler.
//!
//! It knows nothing about OCI or LinuxKit: `lkb-rules` implements [`Action`] for fetch,
//! unpack, merge, … and lowers a yml into a [`Graph`].
//!
//! # Overview
//!
//! - [`Action`] (`action`): a pure function from its input artifacts plus parameters to the
//!   artifacts it declares ([`Action::outputs`]: name, [`ArtifactKind`], optional [`Codec`]),
//!   returned as an [`ActionResult`](lkb_store::ActionResult); executed with an [`ExecCtx`].
//! - [`KeyHasher`] (`key`): canonical, typed, length-prefixed key material.
//! - [`GraphBuilder`] → [`Graph`] (`graph`): nodes are actions; an input is one artifact of
//!   an earlier node, handed out as a typed [`Out`] ([`GraphBuilder::out`] by name). Wiring
//!   is checked against each action's [`Action::inputs`] kinds when the graph is built.
//!   Identical actions are merged; cycles are reported with every member.
//! - [`Scheduler::run`] (`scheduler`): computes each ready node's [`ActionKey`], takes hits
//!   from the store's action cache, executes misses under `-j`/io limits (critical path first),
//!   records results, and explains each execution with a [`RebuildReason`] (`history`).
//! - [`BuildEvent`]s go to a [`Reporter`] (`event`); [`CancelToken`] (`cancel`) stops a build.
//! - [`Remote`] (`remote`): the remote cache layer the scheduler consults on a local miss and
//!   uploads executed results through.
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
//! | 5 | declared outputs ([`Action::outputs`]) | `list`; each `str` name, `str` kind, `opt_str` codec name and (if any) `str` codec version |
//! | 6 | input artifacts, in wiring order      | `list`; each `str` kind, `digest` sha256, `u64` size |
//!
//! Each write is a type tag, then (for strings, bytes and lists) a little-endian `u64` length,
//! then the value. Row 5 puts the version of every codec an action writes with (the tree
//! encoding, the cpio and tar writers, the compressor and its library version) into the key
//! without the action having to remember it. Not in the key: the action's label or identity,
//! the name its producer gives an input artifact, paths, times, the host,
//! the environment, or how the inputs were produced. Because inputs enter the key only through
//! the *bytes they produced*, an upstream action that re-runs and writes identical output
//! leaves every downstream key unchanged, and those actions hit the cache (early cut-off).
//! Any change to this encoding must bump [`KEY_SCHEMA_VERSION`]; golden tests pin it.
//!
//! # Build history
//!
//! After executing (or on a cache hit with a different key than last time), the scheduler
//! stores a [`HistoryRecord`] in [`MetaTable::History`](lkb_store::MetaTable::History) under
//! the node's history key: the scope its lowering set ([`GraphBuilder::set_scope`], lkb uses
//! the workspace root and target label) and the action's [`Action::identity`], so targets and
//! workspaces sharing a store keep their own history. The record holds the key, kind,
//! version, params hash, every input artifact and every declared output with its codec, plus a
//! short digest per params field ([`KeyHasher::field`]). The next miss compares against it to
//! produce the [`RebuildReason`]: which params fields changed (`files[3].contents`), which
//! input changed from what to what, or which output's codec changed. The scheduler
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
mod remote;
mod scheduler;

pub use action::{Action, ActionClass, ActionError, Codec, ExecCtx, InputKinds, OutputDecl};
pub use build::{BuildOptions, BuildOutcome, BuildStats};
pub use cancel::CancelToken;
pub use error::{BuildError, EngineError};
pub use event::{BuildEvent, NullReporter, RemoteUse, Reporter};
pub use graph::{Graph, GraphBuilder, NodeId, Out};
pub use history::{HistoryRecord, InputRecord, RebuildReason};
pub use key::{
    KEY_SCHEMA_VERSION, KeyHasher, ParamsDigest, UNNAMED_FIELD, action_key, params_digest,
    params_hash,
};
pub use lkb_store::{ActionKey, ArtifactKind, ErrorCategory};
pub use probe::{CacheState, NodeProbe, probe};
pub use remote::{Download, References, Remote, RemoteLost, RemoteStats};
pub use scheduler::Scheduler;
