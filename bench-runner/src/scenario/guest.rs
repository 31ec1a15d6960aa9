//! Guest settings: the keys of `[guest]` and of each `[[target]]` (one list,
//! [`guest_keys!`]), a target's keys laid over `[guest]`'s, and the result resolved into a
//! [`GuestConfig`] with each hypervisor's defaults and the settings the other one lacks
//! refused.
//!
//! Why a macro and not `#[serde(flatten)]`: a flattened struct is deserialized from
//! buffered content, which loses TOML spans (a bad value or an unknown key is reported at
//! the `[[target]]` header, and the unknown-key message loses its list of keys), and serde
//! documents `deny_unknown_fields` as unsupported with `flatten`. The macro keeps plain derived
//! structs, so every error keeps its line and column.

use super::storage::ImageFormat;
use serde::{Deserialize, Serialize};
use zvbench_agent::ByteSize;

/// The guest keys, written once: calls `$then! { [$($args)*] key: Type, ... }` with every
/// key's doc, name and type, in the order errors list them.
macro_rules! guest_keys {
    ($then:ident ! { $($args:tt)* }) => {
        $then! { [$($args)*]
            /// qemu | virtualbox.
            hypervisor: Hypervisor,
            /// Guest memory (default 512M).
            memory: ByteSize,
            /// Guest CPUs (default 1).
            cpus: u32,
            /// virtio | sata | nvme | scsi (default virtio).
            bus: Bus,
            /// QEMU cache mode (default none).
            cache: CacheMode,
            /// QEMU aio (default threads).
            aio: Aio,
            /// QEMU: boot the kernel directly (default) or from the guest ISO.
            boot: Boot,
            /// QEMU: cap the disk at this many bytes per second, reads and writes together
            /// (`throttling.bps-total`), to emulate a slower disk or inject a known slowdown
            /// (scripts/bench-gate). Default: no cap.
            throttle_bps: ByteSize,
            /// VirtualBox: the controller's host I/O cache (default off, VirtualBox's for
            /// SATA/NVMe).
            host_io_cache: bool,
            /// VirtualBox: `IgnoreFlush` extradata (applies with the host I/O cache on; its
            /// default there is true).
            ignore_flush: bool,
            /// VirtualBox: `IgnoreFlushAsync` extradata (applies with the host I/O cache
            /// off; its default there is false).
            ignore_flush_async: bool,
        }
    };
}

/// Declares a struct with its own fields followed by every guest key (each optional), and
/// its `guest_keys()` returning those as a [`GuestKeys`]: how `[[target]]` takes the guest
/// keys without a second list of them.
macro_rules! with_guest_keys {
    (
        [$(#[$attr:meta])* $vis:vis struct $name:ident {
            $($(#[$fattr:meta])* $fvis:vis $f:ident: $fty:ty,)*
        }]
        $($(#[$gattr:meta])* $g:ident: $gty:ty,)*
    ) => {
        $(#[$attr])*
        $vis struct $name {
            $($(#[$fattr])* $fvis $f: $fty,)*
            $($(#[$gattr])* pub $g: Option<$gty>,)*
        }

        impl $name {
            /// This table's guest keys, the ones it does not set `None`.
            pub fn guest_keys(&self) -> GuestKeys {
                GuestKeys { $($g: self.$g,)* }
            }
        }
    };
}
pub(super) use {guest_keys, with_guest_keys};

/// Declares [`GuestKeys`] and its overlay from the one list.
macro_rules! define_guest_keys {
    ([] $($(#[$gattr:meta])* $g:ident: $gty:ty,)*) => {
        /// Guest settings; each key optional so that a target can override any of them.
        #[derive(Debug, Clone, Default, Deserialize, Serialize)]
        #[serde(deny_unknown_fields)]
        pub struct GuestKeys {
            $($(#[$gattr])* pub $g: Option<$gty>,)*
        }

        impl GuestKeys {
            /// These keys laid over `base`: each key set here wins, the others are `base`'s.
            pub fn over(&self, base: &GuestKeys) -> GuestKeys {
                GuestKeys { $($g: self.$g.or(base.$g),)* }
            }

            /// The names of the keys that are set, in the order of the list.
            pub fn set_keys(&self) -> Vec<&'static str> {
                let mut set = Vec::new();
                $(if self.$g.is_some() {
                    set.push(stringify!($g));
                })*
                set
            }
        }
    };
}
guest_keys!(define_guest_keys! {});

/// Keys only QEMU takes.
const QEMU_ONLY: &[&str] = &["cache", "aio", "boot", "throttle_bps"];
/// Keys only VirtualBox takes.
const VBOX_ONLY: &[&str] = &["host_io_cache", "ignore_flush", "ignore_flush_async"];

/// Which hypervisor runs a guest target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// QEMU (KVM when it works, else TCG).
    Qemu,
    /// VirtualBox through VBoxManage.
    Virtualbox,
}

/// The virtual disk controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// virtio-blk.
    Virtio,
    /// AHCI (VirtualBox's IntelAhci).
    Sata,
    /// NVMe.
    Nvme,
    /// virtio-scsi.
    Scsi,
}

/// How a QEMU guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// `-kernel`/`-initrd`: fastest.
    #[default]
    Kernel,
    /// The guest ISO on a CD drive, as VirtualBox boots it.
    Iso,
}

/// VirtualBox's flush settings for the benchmark disk, as the scenario gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct VboxFlush {
    /// The controller's host I/O cache.
    pub host_io_cache: bool,
    /// `IgnoreFlush`, if set.
    pub ignore_flush: Option<bool>,
    /// `IgnoreFlushAsync`, if set.
    pub ignore_flush_async: Option<bool>,
}

impl VboxFlush {
    /// Whether VirtualBox drops the guest's flushes: with the host I/O cache on, the
    /// synchronous path and `IgnoreFlush` (default true) decide; with it off, the
    /// asynchronous path and `IgnoreFlushAsync` (default false).
    pub fn ignored(&self) -> bool {
        if self.host_io_cache {
            self.ignore_flush.unwrap_or(true)
        } else {
            self.ignore_flush_async.unwrap_or(false)
        }
    }

    /// The `cache` column of a result row: the settings that decide flushing.
    pub fn describe(&self) -> String {
        zvbench_reports::cache::Cache::Virtualbox {
            host_io_cache: self.host_io_cache,
            flushes_ignored: self.ignored(),
        }
        .to_string()
    }
}

/// QEMU's cache modes (`qemu-options.hx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// O_DIRECT on the host, flushes passed.
    None,
    /// Host page cache, flushes passed.
    Writeback,
    /// Every write flushed.
    Writethrough,
    /// O_DIRECT and every write flushed.
    Directsync,
    /// Guest flushes ignored.
    Unsafe,
}

/// QEMU's aio engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aio {
    /// Thread pool.
    Threads,
    /// Linux native AIO (needs O_DIRECT: cache none or directsync).
    Native,
    /// io_uring.
    IoUring,
}

/// The guest settings of one target, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestConfig {
    /// Hypervisor.
    pub hypervisor: Hypervisor,
    /// Memory in bytes.
    pub memory: ByteSize,
    /// CPUs.
    pub cpus: u32,
    /// Disk controller.
    pub bus: Bus,
    /// Cache mode.
    pub cache: CacheMode,
    /// aio engine.
    pub aio: Aio,
    /// QEMU boot method.
    pub boot: Boot,
    /// QEMU throughput cap of the disk, bytes per second.
    pub throttle_bps: Option<u64>,
    /// VirtualBox flush settings.
    pub vbox: VboxFlush,
}

impl GuestKeys {
    /// The guest of a target whose keys (laid over `[guest]`'s) are these, with each
    /// hypervisor's defaults; `image` is the format of an image target. Refuses settings
    /// of the other hypervisor and values out of range; the message says what to write.
    pub(super) fn resolve(&self, image: Option<ImageFormat>) -> Result<GuestConfig, String> {
        let hypervisor = self.hypervisor.unwrap_or(Hypervisor::Qemu);
        let cfg = GuestConfig {
            hypervisor,
            memory: self.memory.unwrap_or(ByteSize(512 << 20)),
            cpus: self.cpus.unwrap_or(1),
            bus: self.bus.unwrap_or(match hypervisor {
                Hypervisor::Qemu => Bus::Virtio,
                Hypervisor::Virtualbox => Bus::Sata,
            }),
            cache: self.cache.unwrap_or(CacheMode::None),
            aio: self.aio.unwrap_or(Aio::Threads),
            boot: self.boot.unwrap_or_default(),
            throttle_bps: self.throttle_bps.map(|b| b.bytes()),
            vbox: VboxFlush {
                host_io_cache: self.host_io_cache.unwrap_or(false),
                ignore_flush: self.ignore_flush,
                ignore_flush_async: self.ignore_flush_async,
            },
        };
        self.check_hypervisor(&cfg, image)?;
        if cfg.throttle_bps.is_some_and(|b| b < 1 << 20) {
            return Err(
                "throttle_bps must be at least 1M (bytes per second); leave it out for no cap"
                    .into(),
            );
        }
        if cfg.aio == Aio::Native && !matches!(cfg.cache, CacheMode::None | CacheMode::Directsync) {
            return Err("aio = \"native\" needs cache = \"none\" or \"directsync\" (QEMU requires O_DIRECT for it)".into());
        }
        if !(1..=64).contains(&cfg.cpus) || !(128 << 20..=64 << 30).contains(&cfg.memory.bytes()) {
            return Err("cpus must be 1-64 and memory 128M-64G".into());
        }
        Ok(cfg)
    }

    /// Refuses what `cfg`'s hypervisor cannot do: the other hypervisor's keys, VirtualBox
    /// with virtio-blk or an image format it does not open.
    fn check_hypervisor(
        &self,
        cfg: &GuestConfig,
        image: Option<ImageFormat>,
    ) -> Result<(), String> {
        let set = self.set_keys();
        let other = |only: &[&str]| set.iter().copied().find(|k| only.contains(k));
        match cfg.hypervisor {
            Hypervisor::Virtualbox => {
                if let Some(key) = other(QEMU_ONLY) {
                    return Err(format!("{key} is a QEMU setting; VirtualBox boots the guest ISO and takes host_io_cache, ignore_flush and ignore_flush_async"));
                }
                if cfg.bus == Bus::Virtio {
                    return Err("VirtualBox has no virtio-blk: use bus = \"sata\" (IntelAhci, its default), \"nvme\" or \"scsi\" (virtio-scsi)".into());
                }
                if let Some(format) = image.filter(|f| !f.virtualbox_opens()) {
                    return Err(format!(
                        "VirtualBox images here are vdi or vmdk, not {}; use format = \"vdi\"",
                        format.qemu_driver()
                    ));
                }
            }
            Hypervisor::Qemu => {
                if let Some(key) = other(VBOX_ONLY) {
                    return Err(format!("{key} is a VirtualBox setting; for QEMU set cache = \"none\"|\"writeback\"|\"unsafe\"|..."));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(text: &str) -> GuestKeys {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_key_set_over_the_base_wins_and_the_others_stay() {
        let base = keys("cache = \"none\"\ncpus = 2\nmemory = \"1G\"\n");
        let target = keys("cache = \"unsafe\"\n");
        let both = target.over(&base);
        assert_eq!(both.cache, Some(CacheMode::Unsafe));
        assert_eq!((both.cpus, both.memory), (Some(2), Some(ByteSize(1 << 30))));
        assert_eq!(both.set_keys(), ["memory", "cpus", "cache"]);
        assert!(GuestKeys::default()
            .over(&GuestKeys::default())
            .set_keys()
            .is_empty());
    }

    #[test]
    fn every_hypervisor_only_key_is_a_guest_key() {
        let all = keys(
            "hypervisor = \"qemu\"\nmemory = \"1G\"\ncpus = 1\nbus = \"sata\"\ncache = \"none\"\n\
             aio = \"threads\"\nboot = \"iso\"\nthrottle_bps = \"1M\"\nhost_io_cache = true\n\
             ignore_flush = true\nignore_flush_async = true\n",
        );
        let set = all.set_keys();
        assert_eq!(set.len(), 11, "{set:?}");
        for k in QEMU_ONLY.iter().chain(VBOX_ONLY) {
            assert!(set.contains(k), "{k}");
        }
    }

    #[test]
    fn unknown_guest_key_is_an_error_with_its_place() {
        let e = toml::from_str::<GuestKeys>("cpus = 1\ncahce = \"none\"\n").unwrap_err();
        assert_eq!(e.span().map(|s| s.start), Some(9), "{e}");
        assert!(
            e.message()
                .starts_with("unknown field `cahce`, expected one of `hypervisor`"),
            "{e}"
        );
    }

    #[test]
    fn defaults_per_hypervisor() {
        let q = GuestKeys::default().resolve(None).unwrap();
        assert_eq!(
            (q.hypervisor, q.bus, q.cache, q.aio),
            (Hypervisor::Qemu, Bus::Virtio, CacheMode::None, Aio::Threads)
        );
        assert_eq!(
            (q.memory, q.cpus, q.boot, q.throttle_bps),
            (ByteSize(512 << 20), 1, Boot::Kernel, None)
        );
        let v = keys("hypervisor = \"virtualbox\"\n")
            .resolve(Some(ImageFormat::Vmdk))
            .unwrap();
        assert_eq!(v.bus, Bus::Sata);
        assert!(
            !v.vbox.ignored(),
            "host I/O cache off: IgnoreFlushAsync's default, passed"
        );
        let e = keys("hypervisor = \"virtualbox\"\n")
            .resolve(Some(ImageFormat::Vhdx))
            .unwrap_err();
        assert!(e.contains("not vhdx"), "{e}");
    }

    #[test]
    fn vbox_flush_describes_what_decides() {
        let f = VboxFlush {
            host_io_cache: true,
            ignore_flush: Some(false),
            ignore_flush_async: Some(true),
        };
        assert_eq!(f.describe(), "hostiocache=on flushes=passed");
        let f = VboxFlush {
            host_io_cache: false,
            ..f
        };
        assert_eq!(f.describe(), "hostiocache=off flushes=ignored");
    }
}
