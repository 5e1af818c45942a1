//! lkb's command-line front end, as a library.
//!
//! - [`args`]: the clap definitions.
//! - `commands/`: one file per command; each is a thin wrapper over an operation in [`ops`].
//! - [`ops`]: the operations (`build`), which run lkb's phases over the library crates.
//! - `reporter`: renders the engine's build events (bars, plain lines, JSON lines).
//! - `printer`: the only place that writes to stdout/stderr.
//! - `settings`: the only place that reads the environment.

pub mod args;
pub mod ops;
pub mod settings;

mod commands;
pub mod errors;
mod printer;
mod reporter;

use std::process::ExitCode;

use clap::Parser;

/// Runs the `lkb` command line and returns its exit code.
pub fn main() -> ExitCode {
    limit_malloc_arenas();
    quiet_redb_panics();
    let cli = args::Cli::parse();
    init_logging(&cli.global);
    let settings = settings::Settings::from_env(cli.global.store.clone());
    let result = commands::run(&cli, &settings);
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => errors::report(&error),
    };
    printer::flush();
    code
}

/// redb panics on some damaged index files; the store catches that panic and reports the index
/// as damaged (with `lkb cache clean` as the fix), so the default hook's "thread panicked"
/// message would only make a handled error look like a crash. Panics anywhere else print as
/// always.
fn quiet_redb_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let in_redb = info
            .location()
            .is_some_and(|location| location.file().contains("/redb-"));
        if !in_redb {
            default(info);
        }
    }));
}

fn init_logging(global: &args::GlobalArgs) {
    let default = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .without_time()
        .with_target(false)
        .try_init();
}

/// Caps glibc's malloc arenas. By default every thread that allocates under contention gets
/// its own arena (up to 8 per CPU) and arenas keep freed memory, so peak RSS grew with the
/// number of blocking threads and with the image size; with two arenas it stays near the live
/// data (docs/performance.md). `MALLOC_ARENA_MAX` in the environment still wins (and then the
/// mmap threshold is left alone too).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn limit_malloc_arenas() {
    if settings::Settings::malloc_arena_max_set() {
        return;
    }
    // SAFETY: mallopt only adjusts allocator parameters; it is called once at startup,
    // before any other thread exists, with a valid parameter and value.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        // Buffers of 1 MiB and more (segment members being compressed) are mapped and given
        // back when freed. Without a fixed threshold glibc raises it after the first large
        // free, and later members then stay in the arenas.
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}
