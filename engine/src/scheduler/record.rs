//! The scheduler's two conversations with the store: looking an action up in the cache
//! (with the reason it must run on a miss) and recording an executed action's result.

use lkb_store::{ActionKey, ActionResult, Lookup, MetaTable, Store, StoreError};
use tokio::sync::OwnedSemaphorePermit;

use crate::history::HistoryRecord;
use crate::{ActionError, ExecCtx, RebuildReason};

pub(super) enum LookupOutcome {
    Hit(ActionResult),
    Miss(RebuildReason),
}

pub(super) enum ExecFailure {
    Action(ActionError),
    Store(StoreError),
}

/// Consults the action cache (blocking); on a miss, works out why from the history.
pub(super) fn look_up(
    store: &Store,
    key: &ActionKey,
    identity: &str,
    record: &HistoryRecord,
) -> Result<LookupOutcome, StoreError> {
    let previous = HistoryRecord::load(store, identity)?;
    match store.get_action_checked(key)? {
        Lookup::Hit(result) => {
            if previous.as_ref().map(|p| p.key) != Some(*key) {
                store.put_meta(MetaTable::History, identity, &record.to_json())?;
            }
            Ok(LookupOutcome::Hit(result))
        }
        Lookup::Damaged { missing } => Ok(LookupOutcome::Miss(RebuildReason::CacheEntryDamaged {
            blob: missing,
        })),
        Lookup::Miss => Ok(LookupOutcome::Miss(record.reason_since(previous.as_ref()))),
    }
}

/// Executes an action and records its result and history in one index transaction.
///
/// The permit bounds execution only: it is released before recording (a `syncfs` and a
/// durable commit, which is waiting, not computing), so the next action can start meanwhile.
pub(super) async fn execute_and_record(
    action: &dyn crate::Action,
    ctx: &ExecCtx,
    key: ActionKey,
    history: Vec<u8>,
    permit: OwnedSemaphorePermit,
) -> Result<ActionResult, ExecFailure> {
    let executed = action.execute(ctx).await;
    drop(permit);
    let result = executed.map_err(ExecFailure::Action)?;
    let store = ctx.store.clone();
    let identity = action.identity();
    ctx.blocking(move || {
        store
            .put_action_with_meta(&key, &result, &[(MetaTable::History, &identity, &history)])
            .map(|()| result)
    })
    .await
    .map_err(ExecFailure::Store)
}
