//! `lkb cache ls | du | gc [--max-size SIZE] | verify | clean`: results on stdout, the
//! "waiting for the store lock" notice on stderr.

use std::time::{SystemTime, UNIX_EPOCH};

use lkb_store::{BlobClass, BlobDamage, RecordDamage, Usage};

use super::human_bytes;
use crate::args::{CacheCommand, GlobalArgs};
use crate::ops::cache::{self, Collection, DiskUsage, Listing, Verification};
use crate::printer;
use crate::settings::Settings;

pub(crate) fn run(
    global: &GlobalArgs,
    command: &CacheCommand,
    settings: &Settings,
) -> crate::errors::Result<()> {
    let quiet = global.quiet;
    let notify = move |line: &str| {
        if !quiet {
            printer::err(line);
        }
    };
    let none_yet = || printer::out(&format!("no store at {}", settings.store.display()));
    match command {
        CacheCommand::Ls => {
            let listing = cache::ls(settings, &notify)?;
            if listing.store.is_none() {
                none_yet();
            } else {
                print_listing(&listing, now_ms());
            }
        }
        CacheCommand::Du => {
            let usage = cache::du(settings, &notify)?;
            if usage.store.is_none() {
                none_yet();
            } else {
                print_usage(&usage);
            }
        }
        CacheCommand::Gc { max_size } => {
            let max_size = max_size.as_deref().map(cache::parse_size).transpose()?;
            let collection = cache::gc(settings, max_size, &notify)?;
            print_collection(&collection, max_size);
        }
        CacheCommand::Verify => {
            let verification = cache::verify(settings, &notify)?;
            print_verification(&verification);
        }
        CacheCommand::Clean => {
            let (dir, report) = cache::clean(settings, &notify)?;
            if report.files == 0 {
                printer::out(&format!("nothing to remove at {}", dir.display()));
            } else {
                printer::out(&format!(
                    "removed {}: {} files, {}",
                    dir.display(),
                    report.files,
                    human_bytes(report.bytes)
                ));
            }
        }
    }
    Ok(())
}

fn print_listing(listing: &Listing, now_ms: u64) {
    if listing.targets.is_empty() {
        printer::out("no target has been built with this store");
    } else {
        let width = listing
            .targets
            .iter()
            .map(|t| t.label.len())
            .max()
            .unwrap_or(0)
            .max("TARGET".len());
        printer::out(&format!(
            "{:<width$}  {:>9}  {:>7}  {:>7}  {:>10}",
            "TARGET", "BUILT", "ACTIONS", "BLOBS", "SIZE"
        ));
        for target in &listing.targets {
            let built = target
                .built_at_ms
                .map_or_else(|| "unknown".to_owned(), |ms| age(now_ms, ms));
            printer::out(&format!(
                "{:<width$}  {:>9}  {:>7}  {:>7}  {:>10}",
                target.label,
                built,
                target.actions,
                target.blobs.blobs,
                human_bytes(target.blobs.bytes)
            ));
        }
    }
    for label in &listing.unreadable_roots {
        printer::out(&format!("unreadable GC root: {label} (ignored)"));
    }
    printer::out(&format!(
        "store: {} action entries, {}",
        listing.actions,
        blobs(listing.blobs)
    ));
    printer::out(&format!(
        "not reachable from any target: {} action entries, {}{}",
        listing.unreachable_actions,
        blobs(listing.unreachable),
        if listing.unreachable_actions + listing.unreachable.blobs > 0 {
            " (`lkb cache gc` removes them)"
        } else {
            ""
        }
    ));
}

fn class_name(class: &BlobClass) -> String {
    match class {
        BlobClass::Artifact(name) => format!("output `{name}`"),
        BlobClass::Referenced => "file contents".to_owned(),
        BlobClass::Other => "other".to_owned(),
    }
}

fn print_usage(usage: &DiskUsage) {
    if let Some(dir) = &usage.store {
        printer::out(&format!("store  {}", dir.display()));
    }
    printer::out(&format!(
        "blobs  {:>10}  {} blobs",
        human_bytes(usage.blobs.bytes),
        usage.blobs.blobs
    ));
    let mut classes: Vec<(&BlobClass, &Usage)> = usage.by_class.iter().collect();
    classes.sort_by(|a, b| b.1.bytes.cmp(&a.1.bytes).then(a.0.cmp(b.0)));
    for (class, class_usage) in classes {
        printer::out(&format!(
            "       {:>10}  {} ({})",
            human_bytes(class_usage.bytes),
            class_name(class),
            class_usage.blobs
        ));
    }
    printer::out(&format!(
        "index  {:>10}  {} action entries, {} target roots, {} history rows",
        human_bytes(usage.index_bytes),
        usage.actions,
        usage.roots,
        usage.history
    ));
    printer::out(&format!("total  {:>10}", human_bytes(usage.total_bytes())));
}

fn print_collection(collection: &Collection, max_size: Option<u64>) {
    for label in &collection.evicted {
        printer::out(&format!(
            "evicted {label} to fit {}",
            human_bytes(max_size.unwrap_or(0))
        ));
    }
    let report = &collection.report;
    printer::out(&format!(
        "removed {} action entries and {}, freed {}",
        report.actions_removed,
        blobs(report.blobs_removed),
        human_bytes(report.blobs_removed.bytes)
    ));
    printer::out(&format!(
        "kept {} action entries and {}",
        collection.plan.kept_actions,
        blobs(collection.plan.kept)
    ));
}

fn print_verification(verification: &Verification) {
    let report = &verification.report;
    printer::out(&format!(
        "checked {} and {} action entries",
        blobs(report.checked),
        report.actions_checked
    ));
    for blob in &report.damaged_blobs {
        let what = match &blob.damage {
            BlobDamage::Corrupt { actual } => format!("content hashes to {actual}"),
            BlobDamage::Unreadable { error } => format!("unreadable: {error}"),
        };
        printer::out(&format!(
            "damaged blob {} ({}): {what}; deleted",
            blob.digest,
            human_bytes(blob.size)
        ));
    }
    for dropped in &report.dropped_actions {
        let short: String = dropped.key.chars().take(12).collect();
        let name = verification
            .identities
            .get(&dropped.key)
            .map_or_else(String::new, |identity| format!(" ({identity})"));
        let why = match &dropped.damage {
            RecordDamage::Unreadable { error } => format!("the entry is unreadable: {error}"),
            RecordDamage::Output { artifact, blob } => {
                format!("output `{artifact}` {} is damaged or missing", blob.digest)
            }
            RecordDamage::Reference { artifact, digest } => {
                format!("output `{artifact}` refers to {digest}, which is damaged or missing")
            }
            RecordDamage::References { artifact, error } => {
                format!("output `{artifact}` cannot be read: {error}")
            }
        };
        printer::out(&format!("dropped cache entry {short}{name}: {why}"));
    }
    if report.damaged_blobs.is_empty() && report.dropped_actions.is_empty() {
        printer::out("no damage found");
    } else {
        printer::out(&format!(
            "deleted {} damaged blobs and dropped {} cache entries; the next build re-runs those actions",
            report.damaged_blobs.len(),
            report.dropped_actions.len()
        ));
    }
}

fn blobs(usage: Usage) -> String {
    format!("{} blobs ({})", usage.blobs, human_bytes(usage.bytes))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// "42s ago", "5m ago", "3h ago", "2d ago".
fn age(now_ms: u64, then_ms: u64) -> String {
    let seconds = now_ms.saturating_sub(then_ms) / 1000;
    match seconds {
        0..60 => format!("{seconds}s ago"),
        60..3600 => format!("{}m ago", seconds / 60),
        3600..86_400 => format!("{}h ago", seconds / 3600),
        _ => format!("{}d ago", seconds / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::{age, human_bytes};

    #[test]
    fn ages_and_sizes() {
        assert_eq!(age(61_000, 0), "1m ago");
        assert_eq!(age(5_000, 1_000), "4s ago");
        assert_eq!(age(0, 1_000), "0s ago");
        assert_eq!(age(3 * 86_400_000, 0), "3d ago");
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
