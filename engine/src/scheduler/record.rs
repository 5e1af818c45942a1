//! The scheduler's two conversations with the store: looking an action up in the cache
//! (with the reason it must run on a miss) and recording an executed action's result.

use lkb_store::{ActionKey, ActionResult, Lookup, MetaTable, Store, StoreError};
use tokio::sync::OwnedSemaphorePermit;

use crate::history::HistoryRecord;
use crate::{ActionError, EngineError, ExecCtx, OutputDecl, RebuildReason};

pub(super) enum LookupOutcome {
    Hit(ActionResult),
    Miss(RebuildReason),
}

pub(super) enum ExecFailure {
    Action(ActionError),
    Store(StoreError),
    /// An input from a remote hit could not be downloaded.
    RemoteLost(crate::RemoteLost),
}

/// Consults the action cache (blocking), then the results a build without the bytes kept
/// aside for `remote`; on a miss, works out why from the history.
pub(super) fn look_up(
    store: &Store,
    key: &ActionKey,
    history_key: &str,
    record: &HistoryRecord,
    remote: Option<&crate::Remote>,
) -> Result<LookupOutcome, StoreError> {
    let previous = HistoryRecord::load(store, history_key)?;
    let lookup = match store.get_action_checked(key)? {
        Lookup::Miss => match remote.and_then(|remote| remote.known(store, key)) {
            Some(result) => Lookup::Hit(result),
            None => Lookup::Miss,
        },
        other => other,
    };
    match lookup {
        Lookup::Hit(result) => {
            if previous.as_ref().map(|p| p.key) != Some(*key) {
                store.put_meta(MetaTable::History, history_key, &record.to_json())?;
            }
            Ok(LookupOutcome::Hit(result))
        }
        Lookup::Damaged { missing } => Ok(LookupOutcome::Miss(RebuildReason::CacheEntryDamaged {
            blob: missing,
        })),
        Lookup::Miss => Ok(LookupOutcome::Miss(record.reason_since(previous.as_ref()))),
    }
}

/// Where an executed action's result goes besides the cache: its history row, and the
/// outputs it must have returned.
pub(super) struct Recording {
    pub(super) history_key: String,
    pub(super) history: Vec<u8>,
    pub(super) declared: Vec<OutputDecl>,
}

/// Executes an action, checks its result against its declared outputs, and records the result
/// and history in one index transaction.
///
/// The permit bounds execution only: it is released before recording (a sync of the new blobs and a
/// durable commit, which is waiting, not computing), so the next action can start meanwhile.
pub(super) async fn execute_and_record(
    action: &dyn crate::Action,
    ctx: &ExecCtx,
    key: ActionKey,
    recording: &Recording,
    permit: OwnedSemaphorePermit,
) -> Result<ActionResult, ExecFailure> {
    let executed = action.execute(ctx).await;
    drop(permit);
    let result = executed.map_err(ExecFailure::Action)?;
    check_outputs(action, &recording.declared, &result).map_err(ExecFailure::Action)?;
    let store = ctx.store.clone();
    let history_key = recording.history_key.clone();
    let history = recording.history.clone();
    ctx.blocking(move || {
        store
            .put_action_with_meta(
                &key,
                &result,
                &[(MetaTable::History, &history_key, &history)],
            )
            .map(|()| result)
    })
    .await
    .map_err(ExecFailure::Store)
}

/// An internal error unless `result` has exactly the declared outputs (names and kinds, in
/// order).
fn check_outputs(
    action: &dyn crate::Action,
    declared: &[OutputDecl],
    result: &ActionResult,
) -> Result<(), ActionError> {
    let matches = declared.len() == result.outputs.len()
        && declared
            .iter()
            .zip(&result.outputs)
            .all(|(decl, artifact)| decl.name == artifact.name && decl.kind == artifact.kind);
    if matches {
        return Ok(());
    }
    let list = |items: Vec<String>| format!("[{}]", items.join(", "));
    Err(ActionError::internal(EngineError::UndeclaredOutputs {
        action: action.label(),
        returned: list(
            result
                .outputs
                .iter()
                .map(|a| format!("{} ({})", a.name, a.kind))
                .collect(),
        ),
        declared: list(
            declared
                .iter()
                .map(|d| format!("{} ({})", d.name, d.kind))
                .collect(),
        ),
    }))
}
