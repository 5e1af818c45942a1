//! `lkb-fixtures`: builds the fixtures that come from Debian packages, and boots things.
//!
//! ```text
//! lkb-fixtures examples --out <dir> [--debs <dir>] [--force]
//! lkb-fixtures synthetic --out <dir>
//! lkb-fixtures boot-smoke [--debs <dir>] [--timeout <secs>]
//! lkb-fixtures boot --kernel <file> --initrd <file> [--cmdline <text>] [--marker <text>] [--timeout <secs>]
//! ```

use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use lkb_tests::debs::DebCache;
use lkb_tests::examples::{self, BOOT_MARKER, DONE_MARKER, ExampleDebs, Sources};
use lkb_tests::{initrd, qemu};

const USAGE: &str = "usage:
  lkb-fixtures examples --out <dir> [--debs <dir>] [--force]
      Write the example images (kernel, init, getty, dhcpcd, sshd, rngd) as an OCI layout.
  lkb-fixtures synthetic --out <dir>
      Write the synthetic fixtures (lkb_tests::synthetic) as an OCI layout.
  lkb-fixtures boot-smoke [--debs <dir>] [--timeout <secs>]
      Boot the Debian kernel with a hand-made busybox initrd (cpio) and wait for the marker.
  lkb-fixtures boot --kernel <file> --initrd <file> [--cmdline <text>] [--marker <text>] [--timeout <secs>]
      Boot any kernel and initrd under qemu (TCG) and print the console log.
The .deb cache defaults to $LKB_FIXTURES_DEBS, $XDG_CACHE_HOME/lkb-fixtures/debs or ~/.cache/lkb-fixtures/debs.";

#[derive(Default)]
struct Args {
    out: Option<PathBuf>,
    debs: Option<PathBuf>,
    force: bool,
    timeout: Option<u64>,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: Option<String>,
    marker: Option<String>,
}

fn parse(mut raw: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut args = Args::default();
    while let Some(flag) = raw.next() {
        let mut value = || raw.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--out" => args.out = Some(value()?.into()),
            "--debs" => args.debs = Some(value()?.into()),
            "--force" => args.force = true,
            "--timeout" => args.timeout = Some(value()?.parse().context("--timeout")?),
            "--kernel" => args.kernel = Some(value()?.into()),
            "--initrd" => args.initrd = Some(value()?.into()),
            "--cmdline" => args.cmdline = Some(value()?),
            "--marker" => args.marker = Some(value()?),
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(args)
}

fn cache(args: &Args) -> anyhow::Result<DebCache> {
    match &args.debs {
        Some(dir) => DebCache::new(dir),
        None => DebCache::open_default(),
    }
}

fn say(text: &str) -> anyhow::Result<()> {
    writeln!(std::io::stdout(), "{text}")?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut raw = std::env::args().skip(1);
    let command = raw.next().unwrap_or_default();
    let args = parse(raw)?;
    match command.as_str() {
        "examples" => {
            let out = args.out.clone().context("examples needs --out <dir>")?;
            let started = Instant::now();
            let outcome = examples::write_layout(&cache(&args)?, &out, args.force)?;
            let state = if outcome.up_to_date {
                "up to date"
            } else {
                "written"
            };
            say(&format!(
                "{}: {state} ({:.1?})",
                out.display(),
                started.elapsed()
            ))?;
            for reference in outcome.refs {
                say(&format!("  {reference}"))?;
            }
        }
        "synthetic" => {
            let out = args.out.clone().context("synthetic needs --out <dir>")?;
            for reference in lkb_tests::synthetic::write_layout(&out)? {
                say(&reference)?;
            }
        }
        "boot-smoke" => {
            let cache = cache(&args)?;
            let debs = ExampleDebs::fetch(&cache)?;
            let sources = Sources::unpack(&cache, &debs)?;
            let work = tempfile::Builder::new().prefix("lkb-smoke-").tempdir()?;
            let root = work.path().join("root");
            examples::write_smoke_rootfs(&sources, &root)?;
            let initrd_path = work.path().join("initrd.img");
            fs_err::write(&initrd_path, initrd::gzip_initrd_from_dir(&root)?)?;
            let timeout = Duration::from_secs(args.timeout.unwrap_or(120));
            let options = qemu::BootOptions::new(
                &sources.kernel(),
                &initrd_path,
                "console=tty0 console=ttyS0 console=ttyAMA0",
                DONE_MARKER,
                timeout,
            );
            let report = qemu::boot(&options)?;
            say(&report.tail(12))?;
            say(&format!(
                "kernel {} ({}), marker {BOOT_MARKER}: {}, done after {:?}, exited by itself: {}, total {:.2?}",
                sources.kernel_release(),
                debs.kernel.version,
                report.log.contains(BOOT_MARKER),
                report.marker_after,
                report.exited,
                report.elapsed
            ))?;
            if report.marker_after.is_none() || !report.log.contains(BOOT_MARKER) {
                bail!("boot smoke failed");
            }
        }
        "boot" => {
            let kernel = args.kernel.clone().context("boot needs --kernel")?;
            let initrd_path = args.initrd.clone().context("boot needs --initrd")?;
            let mut options = qemu::BootOptions::new(
                &kernel,
                &initrd_path,
                args.cmdline.as_deref().unwrap_or(""),
                args.marker.as_deref().unwrap_or(DONE_MARKER),
                Duration::from_secs(args.timeout.unwrap_or(120)),
            );
            options.memory_mib = 512;
            let report = qemu::boot(&options)?;
            say(&report.log)?;
            say(&format!(
                "marker after {:?}, exited by itself: {}, total {:.2?}",
                report.marker_after, report.exited, report.elapsed
            ))?;
            if report.marker_after.is_none() {
                bail!("marker not seen");
            }
        }
        "" | "help" | "--help" | "-h" => say(USAGE)?,
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
    Ok(())
}
