//! `[[target]]`: one table per thing measured — its storage (see [`super::storage`]), its
//! disk size, and its guest keys laid over `[guest]`'s (see [`super::guest`]) — checked
//! into a [`TargetPlan`].

use super::file::{ScenarioError, Source};
use super::guest::{guest_keys, with_guest_keys, Aio, Boot, Bus, CacheMode, GuestConfig};
use super::guest::{GuestKeys, Hypervisor};
use super::storage::{self, only, ImageFormat, StorageKind, StorageSpec, Variant, ZvolConfig};
use crate::names::{check_dataset, check_device, check_name};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use toml::Spanned;
use zvbench_agent::ByteSize;

guest_keys!(with_guest_keys! {
    /// `[[target]]` as written: its own keys, then every `[guest]` key, each overriding
    /// `[guest]`'s for this target.
    #[derive(Debug, Clone, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct TargetDef {
        /// Unique name.
        pub name: Spanned<String>,
        /// What backs it.
        pub storage: StorageKind,
        /// Directory for host files, loop backing files and images.
        pub dir: Option<PathBuf>,
        /// Image format (image targets; default vdi).
        pub format: Option<ImageFormat>,
        /// Image allocation (image targets; default dynamic).
        pub variant: Option<Variant>,
        /// Parent dataset of the zvol.
        pub parent: Option<String>,
        /// zvol volblocksize.
        pub volblocksize: Option<ByteSize>,
        /// zvol compression.
        pub compression: Option<String>,
        /// zvol sync.
        pub sync: Option<String>,
        /// zvol logbias.
        pub logbias: Option<String>,
        /// zvol primarycache.
        pub primarycache: Option<String>,
        /// Encrypt the zvol: it is created under an encrypted parent dataset zvbench makes
        /// for it (`<parent>/<run>-<target>-enc`, encryption=on, keyformat=raw, the key read
        /// from `keyfile`, never mounted) and inherits its encryption (needs `keyfile`).
        pub encryption: Option<bool>,
        /// Raw 32-byte key file for an encrypted zvol.
        pub keyfile: Option<PathBuf>,
        /// Run the agent on the host, on the zvol's device, with no guest: the host baseline
        /// on a zvol (default false).
        pub on_host: Option<bool>,
        /// A dataset on another pool: after the last repetition the zvol is sent there
        /// (`zfs send | zfs receive`, timed, the copy destroyed).
        pub send_to: Option<String>,
        /// The device of a blockdev target.
        pub device: Option<PathBuf>,
        /// Overrides `[run] disk_size`.
        pub disk_size: Option<ByteSize>,
    }
});

/// One target, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetPlan {
    /// Name.
    pub name: String,
    /// Storage kind as written.
    pub storage_kind: StorageKind,
    /// Storage.
    pub storage: StorageSpec,
    /// Guest settings; `None` for the host baseline.
    pub guest: Option<GuestConfig>,
    /// Disk size.
    pub disk_size: ByteSize,
}

/// The largest file Linux can have (`MAX_LFS_FILESIZE`, `i64::MAX`).
const MAX_DISK: u64 = i64::MAX as u64;

/// What every target is checked against: `[run]`'s disk size, `[guest]`, the largest
/// workload.
pub(super) struct Context<'a> {
    /// `[run] disk_size`.
    pub disk_size: ByteSize,
    /// `[guest]`.
    pub guest: &'a GuestKeys,
    /// Bytes of the largest workload: every disk must hold it.
    pub max_size: u64,
}

/// Checks every target in order (names unique); errors point at the target's name.
pub(super) fn plan_all(
    defs: &[TargetDef],
    cx: &Context,
    src: &Source,
) -> Result<Vec<TargetPlan>, ScenarioError> {
    let mut targets: Vec<TargetPlan> = Vec::new();
    for t in defs {
        let tname = t.name.get_ref();
        let at = |msg: String| src.err_at(t.name.span().start, format!("target {tname:?}: {msg}"));
        check_name(tname).map_err(at)?;
        if targets.iter().any(|x| &x.name == tname) {
            return Err(at(
                "the name is used twice; give each target its own name".into()
            ));
        }
        targets.push(t.plan(cx).map_err(at)?);
    }
    Ok(targets)
}

impl TargetDef {
    /// This target checked: its disk size, storage, where the agent runs and its guest.
    fn plan(&self, cx: &Context) -> Result<TargetPlan, String> {
        let disk_size = self.disk_size.unwrap_or(cx.disk_size);
        if disk_size.bytes() > MAX_DISK {
            return Err(format!(
                "disk_size {disk_size} is larger than any Linux file or device can be (8 EiB)"
            ));
        }
        let storage = self.storage()?;
        let on_host = self.on_host == Some(true);
        only(
            "on_host",
            on_host && self.storage != StorageKind::Zvol,
            "\"zvol\" (storage = \"host\" runs on the host already)",
        )?;
        let fix = || {
            format!(
                "set disk_size = \"{}\"",
                ByteSize(cx.max_size.div_ceil(1 << 20) << 20)
            )
        };
        let guest = if on_host {
            let set = self.guest_keys().set_keys();
            if !set.is_empty() {
                return Err(format!(
                    "on_host = true runs no guest: remove the target's guest keys ({})",
                    set.join(", ")
                ));
            }
            if disk_size.bytes() < cx.max_size {
                return Err(format!(
                    "disk_size {disk_size} must hold the largest workload ({}); {}",
                    ByteSize(cx.max_size),
                    fix()
                ));
            }
            None
        } else if self.storage == StorageKind::Host {
            None
        } else {
            let cfg = self
                .guest_keys()
                .over(cx.guest)
                .resolve(storage.image_format())?;
            if disk_size.bytes() < cx.max_size || !disk_size.bytes().is_multiple_of(1 << 20) {
                return Err(format!(
                    "disk_size {disk_size} must be a multiple of 1M and hold the largest workload ({}); {}",
                    ByteSize(cx.max_size),
                    fix()
                ));
            }
            Some(cfg)
        };
        Ok(TargetPlan {
            name: self.name.get_ref().clone(),
            storage_kind: self.storage,
            storage,
            guest,
            disk_size,
        })
    }
}

impl TargetDef {
    /// This target's storage, checked: no key of another kind, each kind's keys valid.
    fn storage(&self) -> Result<StorageSpec, String> {
        only(
            "format/variant",
            (self.format.is_some() || self.variant.is_some()) && self.storage != StorageKind::Image,
            "\"image\"",
        )?;
        only(
            "parent/volblocksize/compression/sync/logbias/primarycache/encryption/keyfile/send_to",
            (self.parent.is_some()
                || self.send_to.is_some()
                || self.volblocksize.is_some()
                || self.compression.is_some()
                || self.sync.is_some()
                || self.logbias.is_some()
                || self.primarycache.is_some()
                || self.encryption.is_some()
                || self.keyfile.is_some())
                && self.storage != StorageKind::Zvol,
            "\"zvol\"",
        )?;
        only(
            "device",
            self.device.is_some() && self.storage != StorageKind::Blockdev,
            "\"blockdev\"",
        )?;
        let dir = |what| storage::existing_dir(self.dir.as_ref(), what);
        Ok(match self.storage {
            StorageKind::Host => StorageSpec::Host { dir: dir("host")? },
            StorageKind::Loop => StorageSpec::Loop { dir: dir("loop")? },
            StorageKind::Image => StorageSpec::Image {
                dir: dir("image")?,
                format: self.format.unwrap_or(ImageFormat::Vdi),
                variant: self.variant.unwrap_or_default(),
            },
            StorageKind::Zvol => StorageSpec::Zvol(self.zvol()?),
            StorageKind::Blockdev => {
                let d = self
                    .device
                    .clone()
                    .ok_or("storage = \"blockdev\" needs device = \"/dev/...\"")?;
                check_device(&d)?;
                StorageSpec::Blockdev { device: d }
            }
        })
    }

    /// A zvol target's parent, properties, key file and send destination, checked.
    fn zvol(&self) -> Result<ZvolConfig, String> {
        let parent = self
            .parent
            .clone()
            .ok_or("storage = \"zvol\" needs parent = \"pool/dataset\"")?;
        check_dataset(&parent)?;
        let props = storage::zvol_props(
            self.volblocksize,
            self.compression.as_ref(),
            self.sync.as_ref(),
            self.logbias.as_ref(),
            self.primarycache.as_ref(),
        )?;
        let keyfile = match self.encryption {
            Some(true) => Some(storage::raw_key(self.keyfile.clone())?),
            _ => None,
        };
        if let Some(to) = &self.send_to {
            storage::check_send_to(to, &parent)?;
        }
        Ok(ZvolConfig {
            parent,
            props,
            keyfile,
            send_to: self.send_to.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(target: &str, guest: &str) -> Result<TargetPlan, String> {
        let t: TargetDef = toml::from_str(target).map_err(|e| e.to_string())?;
        let g: GuestKeys = toml::from_str(guest).unwrap();
        t.plan(&Context {
            disk_size: ByteSize(64 << 20),
            guest: &g,
            max_size: 4 << 20,
        })
    }

    const LOOP: &str = "name = \"l\"\nstorage = \"loop\"\ndir = \"/tmp\"\n";

    #[test]
    fn a_target_overriding_one_guest_key_keeps_the_others() {
        let guest = "cache = \"writeback\"\ncpus = 2\nmemory = \"256M\"\naio = \"io_uring\"\n";
        let g = plan(&format!("{LOOP}cache = \"unsafe\"\n"), guest)
            .unwrap()
            .guest
            .unwrap();
        assert_eq!(g.cache, CacheMode::Unsafe, "the target's key wins");
        assert_eq!(
            (g.cpus, g.memory, g.aio),
            (2, ByteSize(256 << 20), Aio::IoUring),
            "[guest]'s stay"
        );
        assert_eq!(
            (g.hypervisor, g.bus, g.boot),
            (Hypervisor::Qemu, Bus::Virtio, Boot::Kernel),
            "defaults"
        );
    }

    #[test]
    fn unknown_key_in_a_target_is_named_at_its_place() {
        let text = format!("{LOOP}cahce = \"unsafe\"\n");
        let e = toml::from_str::<TargetDef>(&text).unwrap_err();
        assert_eq!(e.span().map(|s| s.start), Some(LOOP.len()), "{e}");
        assert!(
            e.message()
                .starts_with("unknown field `cahce`, expected one of `name`, `storage`")
                && e.message()
                    .ends_with("`ignore_flush`, `ignore_flush_async`"),
            "{e}"
        );
    }

    #[test]
    fn guest_keys_of_a_target_are_its_own_only() {
        let t: TargetDef = toml::from_str(&format!("{LOOP}bus = \"nvme\"\n")).unwrap();
        let k = t.guest_keys();
        assert_eq!((k.bus, k.set_keys()), (Some(Bus::Nvme), vec!["bus"]));
    }

    #[test]
    fn on_host_names_the_guest_keys_to_remove() {
        let z = "name = \"z\"\nstorage = \"zvol\"\nparent = \"tank\"\non_host = true\n";
        let p = plan(z, "cache = \"unsafe\"").unwrap();
        assert_eq!(
            p.guest, None,
            "[guest] does not apply to a target with no guest"
        );
        let e = plan(&format!("{z}cpus = 2\nboot = \"iso\"\n"), "").unwrap_err();
        assert_eq!(
            e,
            "on_host = true runs no guest: remove the target's guest keys (cpus, boot)"
        );
    }

    #[test]
    fn each_kind_takes_its_own_keys() {
        let t = |keys: &str| toml::from_str::<TargetDef>(&format!("name = \"t\"\n{keys}")).unwrap();
        let e = t("storage = \"zvol\"").storage().unwrap_err();
        assert!(e.contains("needs parent = \"pool/dataset\""), "{e}");
        let e = t("storage = \"loop\"\ndir = \"/tmp\"\ndevice = \"/dev/sdz\"")
            .storage()
            .unwrap_err();
        assert_eq!(
            e,
            "device only applies to storage = \"blockdev\"; remove it"
        );
        let s = t("storage = \"image\"\ndir = \"/tmp\"").storage().unwrap();
        assert_eq!(
            s.image_format(),
            Some(ImageFormat::Vdi),
            "image: a dynamic vdi by default"
        );
        assert!(matches!(
            s,
            StorageSpec::Image {
                variant: Variant::Dynamic,
                ..
            }
        ));
        let z = t("storage = \"zvol\"\nparent = \"tank\"\nsync = \"always\"\nsend_to = \"b\"")
            .zvol()
            .unwrap();
        assert_eq!(
            (z.props.len(), z.send_to.as_deref(), z.keyfile),
            (1, Some("b"), None)
        );
    }

    #[test]
    fn disk_size_must_hold_the_largest_workload() {
        let e = plan(&format!("{LOOP}disk_size = \"3M\"\n"), "").unwrap_err();
        assert!(
            e.ends_with("hold the largest workload (4M); set disk_size = \"4M\""),
            "{e}"
        );
        let e = plan(&format!("{LOOP}disk_size = \"9000000T\"\n"), "").unwrap_err();
        assert!(e.contains("larger than any Linux file"), "{e}");
    }
}
