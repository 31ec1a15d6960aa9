//! Storage of a target: what backs it ([`StorageKind`], [`ImageFormat`], [`Variant`] as
//! written), the checked [`StorageSpec`], and the checks of storage values — directories
//! that exist, ZFS properties and names that are valid, a real raw key for encryption.

use crate::names::check_dataset;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use zvbench_agent::ByteSize;

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

    /// QEMU's format driver for the format (`-drive format=`, `qemu-img -f`), which is
    /// also the scenario's spelling.
    pub fn qemu_driver(self) -> &'static str {
        match self {
            ImageFormat::Vdi => "vdi",
            ImageFormat::Vmdk => "vmdk",
            ImageFormat::Vhdx => "vhdx",
            ImageFormat::Qcow2 => "qcow2",
            ImageFormat::Raw => "raw",
        }
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

/// The `dir` of a `what` target: given, absolute, without ',', an existing directory.
pub(super) fn existing_dir(dir: Option<&PathBuf>, what: &str) -> Result<PathBuf, String> {
    let d = dir.cloned().ok_or_else(|| {
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

/// The zvol properties to set at creation, checked, in a fixed order.
pub(super) fn zvol_props(
    volblocksize: Option<ByteSize>,
    compression: Option<&String>,
    sync: Option<&String>,
    logbias: Option<&String>,
    primarycache: Option<&String>,
) -> Result<Vec<(String, String)>, String> {
    let mut props = Vec::new();
    if let Some(v) = volblocksize {
        let b = v.bytes();
        if !b.is_power_of_two() || !(512..=128 << 10).contains(&b) {
            return Err(format!("volblocksize {v} must be a power of two from 512 to 128K, e.g. volblocksize = \"16K\""));
        }
        props.push(("volblocksize".into(), v.to_string()));
    }
    for (key, val, allowed) in [
        ("compression", compression, COMPRESSION),
        ("sync", sync, ZSYNC),
        ("logbias", logbias, LOGBIAS),
        ("primarycache", primarycache, PRIMARYCACHE),
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
    Ok(props)
}

/// The key file of an encrypted zvol: given, 32 bytes (a raw ZFS key), an absolute path
/// that `keylocation=file://` can hold.
pub(super) fn raw_key(keyfile: Option<PathBuf>) -> Result<PathBuf, String> {
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
pub(super) fn check_send_to(to: &str, parent: &str) -> Result<(), String> {
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

    #[test]
    fn dir_must_be_given_absolute_and_a_directory() {
        let e = existing_dir(None, "loop").unwrap_err();
        assert!(e.starts_with("storage = \"loop\" needs dir = "), "{e}");
        let e = existing_dir(Some(&PathBuf::from("tmp")), "image").unwrap_err();
        assert!(e.contains("must be an absolute path"), "{e}");
        let f = tempfile::NamedTempFile::new().unwrap();
        let e = existing_dir(Some(&f.path().to_path_buf()), "host").unwrap_err();
        assert!(e.contains("is a file, not a directory"), "{e}");
        assert_eq!(
            existing_dir(Some(&PathBuf::from("/tmp")), "host").unwrap(),
            PathBuf::from("/tmp")
        );
    }

    #[test]
    fn zvol_properties_are_checked_and_ordered() {
        let lz4 = "lz4".to_string();
        let meta = "metadata".to_string();
        let props = zvol_props(Some(ByteSize(8192)), Some(&lz4), None, None, Some(&meta)).unwrap();
        let want = [
            ("volblocksize", "8K"),
            ("compression", "lz4"),
            ("primarycache", "metadata"),
        ];
        assert_eq!(props, want.map(|(k, v)| (k.to_string(), v.to_string())));
        let fast = "fast".to_string();
        let e = zvol_props(None, None, None, Some(&fast), None).unwrap_err();
        assert_eq!(e, "logbias = \"fast\" is not one of latency, throughput");
        let e = zvol_props(Some(ByteSize(256 << 10)), None, None, None, None).unwrap_err();
        assert!(
            e.starts_with("volblocksize 256K must be a power of two from 512 to 128K"),
            "{e}"
        );
    }

    #[test]
    fn send_to_must_be_on_another_pool() {
        assert!(check_send_to("backup/x", "tank/zvbench").is_ok());
        let e = check_send_to("tank/x", "tank/zvbench").unwrap_err();
        assert!(e.contains("on the zvol's own pool \"tank\""), "{e}");
    }

    #[test]
    fn raw_key_is_32_bytes_at_an_absolute_path() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(&k, [1u8; 31]).unwrap();
        assert!(raw_key(Some(k.clone()))
            .unwrap_err()
            .contains("has 31 bytes"));
        std::fs::write(&k, [1u8; 32]).unwrap();
        assert_eq!(raw_key(Some(k.clone())).unwrap(), k);
        assert!(raw_key(None).unwrap_err().contains("needs keyfile"));
    }

    #[test]
    fn formats_virtualbox_opens_and_their_qemu_drivers() {
        use ImageFormat::*;
        let all = [Vdi, Vmdk, Vhdx, Qcow2, Raw];
        let opens: Vec<_> = all.into_iter().filter(|f| f.virtualbox_opens()).collect();
        assert_eq!(opens, [Vdi, Vmdk]);
        for f in all {
            assert_eq!(
                f.qemu_driver(),
                crate::scenario::key_name(f),
                "the scenario's spelling is QEMU's"
            );
        }
    }
}
