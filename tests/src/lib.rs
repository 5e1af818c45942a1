//! Test support for lkb: fixture builders and launchers for the real programs the tests use.
//!
//! - [`oci`]: OCI images built in code from synthetic trees: layers, configs, manifests,
//!   multi-platform indexes, and OCI layout directories. Deterministic bytes.
//! - [`registry`]: a real registry (Debian's `docker-registry`) on 127.0.0.1 with its own
//!   storage dir, optional htpasswd auth, a minimal HTTP/1.1 client to push images, and a hook
//!   to corrupt stored blobs.
//! - [`buildgrid`]: a real Remote Execution API cache (BuildGrid, from PyPI) on 127.0.0.1
//!   with its own disk storage, for the remote cache tests.
//! - [`debs`]: Debian packages fetched with `apt-get download` into a cache and unpacked with
//!   `dpkg -x`.
//! - [`elf`]: the shared libraries a Debian program loads (`PT_INTERP`, `DT_NEEDED`, followed
//!   through an unpacked tree), so the example images ship exactly those.
//! - [`examples`]: the bootable example images (kernel, init, getty, dhcpcd, sshd, rngd) made
//!   from those packages, mirroring LinuxKit's `examples/`.
//! - [`boot_image`]: the boot loader image of the boot-media formats (syslinux, isolinux,
//!   GRUB, systemd-boot), from Debian packages.
//! - [`fault_registry`]: a hostile registry on 127.0.0.1 (threads in the test process) that
//!   serves images built in code and misbehaves on request: slow, stalled or truncated bodies,
//!   wrong bytes, huge or odd token replies.
//! - [`mutate`]: a deterministic mutation fuzzer (seeded PRNG, JSON/header-minded mutations)
//!   for no-panic tests of parsers, run as ordinary tests.
//! - [`initrd`]: gzip'd newc initrds made with Debian's `cpio`, for hand-made boots.
//! - [`synthetic`]: canned synthetic images (long names, whiteouts, hostile paths, multi-arch,
//!   a fake kernel) and the expected flattened tree of the layered one.
//! - [`qemu`]: boots a kernel and initrd under `qemu-system-x86_64 -accel tcg` and waits for a
//!   marker on the serial console.
//!
//! Everything runs here without Docker or the internet, except `apt-get download` in [`debs`].

pub mod boot_image;
pub mod buildgrid;
pub mod cli;
pub mod debs;
pub mod elf;
pub mod examples;
pub mod fault_registry;
pub mod initrd;
pub mod mutate;
pub mod oci;
pub mod qemu;
pub mod registry;
pub mod synthetic;
pub mod syslinux_payload;
