//! The `raw-efi` disk: GPT with one EFI System Partition at LBA 2048 holding systemd-boot as
//! the removable-media boot path and the system as one unified kernel image.
//!
//! | path on the ESP | content |
//! |---|---|
//! | `EFI/BOOT/BOOTX64.EFI` | systemd-boot |
//! | `EFI/Linux/linuxkit.efi` | the unified kernel image (a Type #2 boot loader entry) |
//! | `loader/loader.conf` | `timeout 0`: boot the only entry without a menu |
//!
//! Sizes follow LinuxKit's `mkimage-raw-efi`: the ESP is its files plus 1 MiB of headroom,
//! rounded up to a whole MiB; the disk is the ESP plus 4 MiB (1 MiB before the ESP, the rest
//! for the backup GPT), or `size` when the caller asks for a larger disk. The partition is
//! named `EFI System` and carries the legacy-BIOS-bootable attribute, as LinuxKit's `sgdisk`
//! call sets.

use crate::fat::{self, FatFile, FatOptions, FatPlan, FatSpec};
use crate::gpt::{self, ATTR_LEGACY_BIOS_BOOTABLE, Gpt, GptPlan, Guid, Partition};
use crate::{Data, DiskError, Sink};

const MIB: u64 = 1 << 20;
/// The ESP's first sector, as LinuxKit (and every partitioning tool) aligns it.
pub const ESP_START_LBA: u64 = 2048;
/// `loader/loader.conf`.
pub const LOADER_CONF: &str = "timeout 0\n";

/// What goes on the disk.
#[derive(Debug, Clone)]
pub struct RawEfi {
    /// systemd-boot (`systemd-bootx64.efi`).
    pub systemd_boot: Data,
    /// The unified kernel image.
    pub uki: Data,
    /// The whole disk in bytes; `None` sizes it to the content.
    pub size: Option<u64>,
    /// 32 bytes derived from the content: the disk and partition GUIDs and the FAT serial are
    /// taken from them.
    pub seed: [u8; 32],
}

/// A planned disk.
#[derive(Debug)]
pub struct RawEfiPlan {
    gpt: GptPlan,
    esp: FatPlan,
    size: u64,
}

/// Lays out the disk; reads nothing.
pub fn plan(disk: RawEfi) -> Result<RawEfiPlan, DiskError> {
    let files = vec![
        FatFile::new("EFI/BOOT/BOOTX64.EFI", disk.systemd_boot),
        FatFile::new("EFI/Linux/linuxkit.efi", disk.uki),
        FatFile::new("loader/loader.conf", Data::Bytes(LOADER_CONF.into())),
    ];
    let content: u64 = files.iter().map(|f| f.data.len()).sum();
    let esp_size = (content + MIB).div_ceil(MIB) * MIB;
    let seed = disk.seed;
    let volume_id = u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]);
    let spec = |size: u64| FatSpec {
        files: files.clone(),
        dirs: Vec::new(),
        options: FatOptions {
            volume_id,
            label: Some("EFI".into()),
            size: Some(size),
            hidden_sectors: ESP_START_LBA as u32,
            ..FatOptions::default()
        },
    };
    // A FAT type has a smallest volume (a whole number of clusters past its limits): when the
    // content is smaller, the ESP grows to that, in whole MiB.
    let esp = match fat::plan(spec(esp_size)) {
        Err(DiskError::TooSmall { needed, .. }) if needed > esp_size => {
            fat::plan(spec(needed.div_ceil(MIB) * MIB))?
        }
        other => other?,
    };
    let esp_size = esp.size();
    let natural = ESP_START_LBA * gpt::SECTOR + esp_size + 3 * MIB;
    let size = match disk.size {
        None => natural,
        Some(requested) if requested >= natural => requested.div_ceil(gpt::SECTOR) * gpt::SECTOR,
        Some(requested) => {
            return Err(DiskError::TooSmall {
                what: "the raw-efi disk".into(),
                needed: natural,
                requested,
            });
        }
    };
    let guid = |at: usize| {
        let mut bytes = [0; 16];
        bytes.copy_from_slice(&seed[at..at + 16]);
        Guid::from_hash(bytes)
    };
    let gpt = gpt::plan(&Gpt {
        disk_size: size,
        disk_guid: guid(4),
        partitions: vec![Partition {
            type_guid: gpt::ESP,
            guid: guid(16),
            first_lba: ESP_START_LBA,
            last_lba: ESP_START_LBA + esp_size / gpt::SECTOR - 1,
            attributes: ATTR_LEGACY_BIOS_BOOTABLE,
            name: "EFI System".into(),
        }],
    })?;
    Ok(RawEfiPlan { gpt, esp, size })
}

impl RawEfiPlan {
    /// The disk's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes the disk front to back: GPT head, the ESP, zeros (a hole), the backup GPT.
    pub fn write(&self, out: &mut dyn Sink) -> Result<(), DiskError> {
        let head = self.gpt.head();
        out.write_all(head).map_err(DiskError::Io)?;
        let esp_start = ESP_START_LBA * gpt::SECTOR;
        out.zeros(esp_start - head.len() as u64)
            .map_err(DiskError::Io)?;
        self.esp.write(out)?;
        let written = esp_start + self.esp.size();
        out.zeros(self.gpt.tail_offset() - written)
            .map_err(DiskError::Io)?;
        out.write_all(self.gpt.tail()).map_err(DiskError::Io)?;
        Ok(())
    }
}
