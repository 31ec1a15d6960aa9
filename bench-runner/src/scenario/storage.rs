//! A target's storage: what backs it ([`StorageKind`] as written), the keys each kind
//! takes, and the checked [`StorageSpec`] — directories that exist, ZFS names and
//! properties that are valid, a real raw key for encryption, a device path that is safe.

use super::target::TargetDef;
use crate::names::{check_dataset, check_device};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What backs a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    /// No guest: the agent on the host, on a file in `dir`.
    Host,
    /// A file in `dir` attached as a loop device.
    Loop,
    /// A disk image file in `dir`.
    Image,
    /// An OpenZFS volume under `parent`.
    Zvol,
    /// An existing block device.
    Blockdev,
}

/// Disk image formats `qemu-img` creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// VirtualBox VDI.
    Vdi,
    /// VMware VMDK.
    Vmdk,
    /// Hyper-V VHDX.
    Vhdx,
    /// QEMU qcow2.
    Qcow2,
    /// Raw file.
    Raw,
}

impl ImageFormat {
    /// Whether zvbench attaches images of this format to VirtualBox guests (VDI, VMDK).
    pub fn virtualbox_opens(self) -> bool {
        matches!(self, ImageFormat::Vdi | ImageFormat::Vmdk)
    }
}

/// Allocation of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Grows on demand.
    #[default]
    Dynamic,
    /// Preallocated.
    Fixed,
}

/// ZFS volume settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ZvolConfig {
    /// Parent dataset.
    pub parent: String,
    /// Properties to set at creation, validated, in a fixed order.
    pub props: Vec<(String, String)>,
    /// Key file of an encrypted volume: its encrypted parent's raw key.
    pub keyfile: Option<PathBuf>,
    /// Where the volume is sent after its last repetition, a dataset on another pool.
    pub send_to: Option<String>,
}

/// What a target's storage is, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum StorageSpec {
    /// Agent on the host, file in dir.
    Host {
        /// Directory.
        dir: PathBuf,
    },
    /// Loop device over a file in dir.
    Loop {
        /// Directory.
        dir: PathBuf,
    },
    /// Image file.
    Image {
        /// Directory.
        dir: PathBuf,
        /// Format.
        format: ImageFormat,
        /// Allocation.
        variant: Variant,
    },
    /// ZFS volume.
    Zvol(ZvolConfig),
    /// User's device.
    Blockdev {
        /// The device.
        device: PathBuf,
    },
}

impl StorageSpec {
    /// The format of an image target.
    pub fn image_format(&self) -> Option<ImageFormat> {
        match self {
            StorageSpec::Image { format, .. } => Some(*format),
            _ => None,
        }
    }
}

const COMPRESSION: &[&str] = &["on", "off", "lz4", "zstd", "gzip", "lzjb", "zle"];
const ZSYNC: &[&str] = &["standard", "always", "disabled"];
const LOGBIAS: &[&str] = &["latency", "throughput"];
const PRIMARYCACHE: &[&str] = &["all", "none", "metadata"];

/// An error if a key of another storage kind is set.
pub(super) fn only(key: &str, set: bool, kinds: &str) -> Result<(), String> {
    if set {
        Err(format!(
            "{key} only applies to storage = {kinds}; remove it"
        ))
    } else {
        Ok(())
    }
}

/// The storage of target `t`, checked: no key of another kind, each kind's keys valid.
pub(super) fn resolve(t: &TargetDef) -> Result<StorageSpec, String> {
    only(
        "format/variant",
        (t.format.is_some() || t.variant.is_some()) && t.storage != StorageKind::Image,
        "\"image\"",
    )?;
    only(
        "parent/volblocksize/compression/sync/logbias/primarycache/encryption/keyfile/send_to",
        (t.parent.is_some()
            || t.send_to.is_some()
            || t.volblocksize.is_some()
            || t.compression.is_some()
            || t.sync.is_some()
            || t.logbias.is_some()
            || t.primarycache.is_some()
            || t.encryption.is_some()
            || t.keyfile.is_some())
            && t.storage != StorageKind::Zvol,
        "\"zvol\"",
    )?;
    only(
        "device",
        t.device.is_some() && t.storage != StorageKind::Blockdev,
        "\"blockdev\"",
    )?;
    Ok(match t.storage {
        StorageKind::Host => StorageSpec::Host {
            dir: need_dir(t, "host")?,
        },
        StorageKind::Loop => StorageSpec::Loop {
            dir: need_dir(t, "loop")?,
        },
        StorageKind::Image => StorageSpec::Image {
            dir: need_dir(t, "image")?,
            format: t.format.unwrap_or(ImageFormat::Vdi),
            variant: t.variant.unwrap_or_default(),
        },
        StorageKind::Zvol => StorageSpec::Zvol(zvol_config(t)?),
        StorageKind::Blockdev => {
            let d = t
                .device
                .clone()
                .ok_or("storage = \"blockdev\" needs device = \"/dev/...\"")?;
            check_device(&d)?;
            StorageSpec::Blockdev { device: d }
        }
    })
}

/// The `dir` of a `what` target: given, absolute, without ',', an existing directory.
fn need_dir(t: &TargetDef, what: &str) -> Result<PathBuf, String> {
    let d = t.dir.clone().ok_or_else(|| {
        format!("storage = \"{what}\" needs dir = \"/var/tmp/zvbench\" (a directory for its files)")
    })?;
    if !d.is_absolute() || d.to_string_lossy().contains(',') {
        return Err(format!(
            "dir {:?} must be an absolute path without ','",
            d.display()
        ));
    }
    match std::fs::metadata(&d) {
        Ok(m) if m.is_dir() => Ok(d),
        Ok(_) => Err(format!(
            "dir {} is a file, not a directory; name a directory",
            d.display()
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "dir {} does not exist; create it (mkdir -p {}) or name another",
            d.display(),
            d.display()
        )),
        Err(e) => Err(format!("dir {}: {e}", d.display())),
    }
}

/// A zvol target's parent, properties, key file and send destination, checked.
fn zvol_config(t: &TargetDef) -> Result<ZvolConfig, String> {
    let parent = t
        .parent
        .clone()
        .ok_or("storage = \"zvol\" needs parent = \"pool/dataset\"")?;
    check_dataset(&parent)?;
    let mut props = Vec::new();
    if let Some(v) = t.volblocksize {
        let b = v.bytes();
        if !b.is_power_of_two() || !(512..=128 << 10).contains(&b) {
            return Err(format!("volblocksize {v} must be a power of two from 512 to 128K, e.g. volblocksize = \"16K\""));
        }
        props.push(("volblocksize".into(), v.to_string()));
    }
    for (key, val, allowed) in [
        ("compression", &t.compression, COMPRESSION),
        ("sync", &t.sync, ZSYNC),
        ("logbias", &t.logbias, LOGBIAS),
        ("primarycache", &t.primarycache, PRIMARYCACHE),
    ] {
        if let Some(v) = val {
            if !allowed.contains(&v.as_str()) {
                return Err(format!(
                    "{key} = {v:?} is not one of {}",
                    allowed.join(", ")
                ));
            }
            props.push((key.to_string(), v.clone()));
        }
    }
    let keyfile = match t.encryption {
        Some(true) => Some(raw_key(t.keyfile.clone())?),
        _ => None,
    };
    let send_to = t.send_to.clone();
    if let Some(to) = &send_to {
        check_send_to(to, &parent)?;
    }
    Ok(ZvolConfig {
        parent,
        props,
        keyfile,
        send_to,
    })
}

/// The key file of an encrypted zvol: given, 32 bytes (a raw ZFS key), an absolute path
/// that `keylocation=file://` can hold.
fn raw_key(keyfile: Option<PathBuf>) -> Result<PathBuf, String> {
    let k = keyfile.ok_or("encryption = true needs keyfile = \"/path/to/32-byte-raw-key\"")?;
    let len = std::fs::metadata(&k)
        .map_err(|e| format!("keyfile {}: {e}", k.display()))?
        .len();
    if len != 32 {
        return Err(format!(
            "keyfile {} has {len} bytes; a raw ZFS key has 32 (head -c 32 /dev/urandom > FILE)",
            k.display()
        ));
    }
    if k.to_string_lossy()
        .chars()
        .any(|c| c.is_whitespace() || c == ',')
        || !k.is_absolute()
    {
        return Err("keyfile must be an absolute path without spaces or ','".into());
    }
    Ok(k)
}

/// `send_to`: a valid dataset on another pool than `parent`'s.
fn check_send_to(to: &str, parent: &str) -> Result<(), String> {
    check_dataset(to).map_err(|e| format!("send_to: {e}"))?;
    let pool = |d: &str| d.split('/').next().unwrap_or_default().to_string();
    if pool(to) == pool(parent) {
        return Err(format!(
            "send_to = {to:?} is on the zvol's own pool {:?}; the send step copies to a second pool: name a dataset there, e.g. send_to = \"backup\"",
            pool(parent)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(keys: &str) -> TargetDef {
        toml::from_str(&format!("name = \"t\"\n{keys}")).unwrap()
    }

    #[test]
    fn each_kind_needs_its_own_keys() {
        let e = resolve(&target("storage = \"loop\"")).unwrap_err();
        assert!(e.starts_with("storage = \"loop\" needs dir = "), "{e}");
        let e = resolve(&target("storage = \"zvol\"")).unwrap_err();
        assert!(e.contains("needs parent = \"pool/dataset\""), "{e}");
        let e = resolve(&target(
            "storage = \"loop\"\ndir = \"/tmp\"\ndevice = \"/dev/sdz\"",
        ))
        .unwrap_err();
        assert_eq!(
            e,
            "device only applies to storage = \"blockdev\"; remove it"
        );
        let e = resolve(&target("storage = \"image\"\ndir = \"tmp\"")).unwrap_err();
        assert!(e.contains("must be an absolute path"), "{e}");
    }

    #[test]
    fn image_defaults_to_a_dynamic_vdi() {
        let s = resolve(&target("storage = \"image\"\ndir = \"/tmp\"")).unwrap();
        assert_eq!(s.image_format(), Some(ImageFormat::Vdi));
        assert!(matches!(
            s,
            StorageSpec::Image {
                variant: Variant::Dynamic,
                ..
            }
        ));
        assert_eq!(
            resolve(&target("storage = \"loop\"\ndir = \"/tmp\""))
                .unwrap()
                .image_format(),
            None
        );
    }

    #[test]
    fn dir_that_is_a_file_is_refused() {
        let f = tempfile::NamedTempFile::new().unwrap();
        let t = target(&format!(
            "storage = \"host\"\ndir = \"{}\"",
            f.path().display()
        ));
        assert!(resolve(&t)
            .unwrap_err()
            .contains("is a file, not a directory"));
    }

    #[test]
    fn zvol_properties_are_checked_and_ordered() {
        let z = zvol_config(&target(
            "storage = \"zvol\"\nparent = \"tank\"\nprimarycache = \"metadata\"\ncompression = \"lz4\"",
        ))
        .unwrap();
        assert_eq!(
            z.props,
            [
                ("compression".to_string(), "lz4".to_string()),
                ("primarycache".into(), "metadata".into())
            ]
        );
        let e = zvol_config(&target(
            "storage = \"zvol\"\nparent = \"tank\"\nlogbias = \"fast\"",
        ))
        .unwrap_err();
        assert_eq!(e, "logbias = \"fast\" is not one of latency, throughput");
    }

    #[test]
    fn only_vdi_and_vmdk_open_in_virtualbox() {
        use ImageFormat::*;
        let opens: Vec<_> = [Vdi, Vmdk, Vhdx, Qcow2, Raw]
            .into_iter()
            .filter(|f| f.virtualbox_opens())
            .collect();
        assert_eq!(opens, [Vdi, Vmdk]);
    }
}
