//! Linux block-device counters from `/sys/block/<dev>/stat` and their deltas.
//!
//! Fields 16-17 (Linux 5.5+) count flush requests the device completed and the
//! milliseconds spent on them: the layer under the agent's `fsync` calls. Older kernels
//! have 11 or 15 fields; the flush counters are then absent, never guessed.

use serde::{Deserialize, Serialize};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Most fields a stat line may carry; more are ignored (bounded parsing).
const MAX_FIELDS: usize = 32;

/// One reading of a device's stat file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DevStat {
    /// Reads completed.
    pub read_ios: u64,
    /// Sectors (512 B) read.
    pub read_sectors: u64,
    /// Writes completed.
    pub write_ios: u64,
    /// Sectors (512 B) written.
    pub write_sectors: u64,
    /// Flush requests completed (field 16); `None` before Linux 5.5.
    pub flush_ios: Option<u64>,
    /// Milliseconds spent flushing (field 17).
    pub flush_ticks_ms: Option<u64>,
}

/// What changed on a device over one pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevDelta {
    /// Kernel name of the device, e.g. `vda`, `loop3`.
    pub name: String,
    /// Reads completed.
    pub read_ios: u64,
    /// Bytes read.
    pub read_bytes: u64,
    /// Writes completed.
    pub write_ios: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Flushes completed; absent when the kernel does not count them.
    pub flush_ios: Option<u64>,
    /// Milliseconds spent flushing.
    pub flush_ms: Option<u64>,
}

/// Why a stat line could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DevStatError {
    /// The stat file could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The stat file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The line had too few or non-numeric fields.
    #[error("{path}: not a block stat line: {line:?}")]
    Parse {
        /// The stat file.
        path: PathBuf,
        /// The first 200 characters of the line.
        line: String,
    },
}

impl DevStat {
    /// Parses the whitespace-separated fields of a stat line.
    pub fn parse(line: &str) -> Option<DevStat> {
        let mut f = [0u64; MAX_FIELDS];
        let mut n = 0;
        for tok in line.split_ascii_whitespace().take(MAX_FIELDS) {
            f[n] = tok.parse().ok()?;
            n += 1;
        }
        if n < 11 {
            return None;
        }
        let (flush_ios, flush_ticks_ms) = if n >= 17 {
            (Some(f[15]), Some(f[16]))
        } else {
            (None, None)
        };
        Some(DevStat {
            read_ios: f[0],
            read_sectors: f[2],
            write_ios: f[4],
            write_sectors: f[6],
            flush_ios,
            flush_ticks_ms,
        })
    }

    /// Reads a stat file.
    pub fn read(path: &Path) -> Result<DevStat, DevStatError> {
        let text = fs::read_to_string(path).map_err(|source| DevStatError::Read {
            path: path.to_owned(),
            source,
        })?;
        DevStat::parse(&text).ok_or_else(|| DevStatError::Parse {
            path: path.to_owned(),
            line: text.chars().take(200).collect(),
        })
    }

    /// The change from `before` to `self` (counters are monotonic; a wrap reads as 0).
    pub fn delta(&self, before: &DevStat, name: &str) -> DevDelta {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        DevDelta {
            name: name.to_string(),
            read_ios: d(self.read_ios, before.read_ios),
            read_bytes: d(self.read_sectors, before.read_sectors) * 512,
            write_ios: d(self.write_ios, before.write_ios),
            write_bytes: d(self.write_sectors, before.write_sectors) * 512,
            flush_ios: self.flush_ios.zip(before.flush_ios).map(|(a, b)| d(a, b)),
            flush_ms: self
                .flush_ticks_ms
                .zip(before.flush_ticks_ms)
                .map(|(a, b)| d(a, b)),
        }
    }
}

/// A whole block device's stat file, found from a device number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatSource {
    /// Kernel name, e.g. `loop0`.
    pub name: String,
    /// Path of its `stat` file.
    pub stat_path: PathBuf,
}

impl StatSource {
    /// The whole disk behind device number `major:minor` under a sysfs root
    /// (`/sys` normally). A partition resolves to its disk, since the kernel does not
    /// count flushes per partition. `None` when sysfs has no such block device
    /// (e.g. a FUSE or tmpfs file system).
    pub fn for_devno(sys_root: &Path, major: u64, minor: u64) -> Option<StatSource> {
        let link = sys_root.join(format!("dev/block/{major}:{minor}"));
        let mut dir = fs::canonicalize(&link).ok()?;
        if dir.join("partition").exists() {
            dir = dir.parent()?.to_path_buf();
        }
        let stat_path = dir.join("stat");
        let name = dir.file_name()?.to_str()?.to_string();
        stat_path.exists().then_some(StatSource { name, stat_path })
    }

    /// The stat source of a kernel block device name such as `loop0` or `vda`.
    pub fn for_name(sys_root: &Path, name: &str) -> Option<StatSource> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        let stat_path = sys_root.join("block").join(name).join("stat");
        (valid && stat_path.exists()).then(|| StatSource {
            name: name.to_string(),
            stat_path,
        })
    }

    /// A queue attribute of the device, e.g. `write_cache` ("write back" when the device
    /// says it has a volatile cache, so flushes are sent; "write through" when the block
    /// layer drops them) or `fua`.
    pub fn queue_attr(&self, attr: &str) -> Option<String> {
        let dir = self.stat_path.parent()?;
        let text = fs::read_to_string(dir.join("queue").join(attr)).ok()?;
        Some(text.trim().chars().take(64).collect())
    }

    /// Reads the counters now.
    pub fn read(&self) -> Result<DevStat, DevStatError> {
        DevStat::read(&self.stat_path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE17: &str = "  100 2 800 30  50 0 4096 70  0 90 100  0 0 0 0  17 23\n";

    #[test]
    fn parses_seventeen_fields() {
        let s = DevStat::parse(LINE17).unwrap();
        assert_eq!(s.read_ios, 100);
        assert_eq!(s.read_sectors, 800);
        assert_eq!(s.write_ios, 50);
        assert_eq!(s.write_sectors, 4096);
        assert_eq!(s.flush_ios, Some(17));
        assert_eq!(s.flush_ticks_ms, Some(23));
    }

    #[test]
    fn old_kernels_have_no_flush_fields() {
        let s = DevStat::parse("1 2 3 4 5 6 7 8 9 10 11").unwrap();
        assert_eq!(s.flush_ios, None);
        let s = DevStat::parse("1 2 3 4 5 6 7 8 9 10 11 12 13 14 15").unwrap();
        assert_eq!(s.flush_ios, None);
    }

    #[test]
    fn rejects_short_or_garbled_lines() {
        assert!(DevStat::parse("1 2 3").is_none());
        assert!(DevStat::parse("1 2 3 4 5 6 7 8 9 10 x").is_none());
        assert!(DevStat::parse("").is_none());
    }

    #[test]
    fn delta_in_bytes_and_flushes() {
        let a = DevStat::parse(LINE17).unwrap();
        let b = DevStat::parse("110 2 1000 30 60 0 6144 70 0 90 100 0 0 0 0 21 30").unwrap();
        let d = b.delta(&a, "loop0");
        assert_eq!(d.read_ios, 10);
        assert_eq!(d.read_bytes, 200 * 512);
        assert_eq!(d.write_bytes, 2048 * 512);
        assert_eq!(d.flush_ios, Some(4));
        assert_eq!(d.flush_ms, Some(7));
    }

    #[test]
    fn rejects_path_like_names() {
        assert!(StatSource::for_name(Path::new("/sys"), "../etc").is_none());
        assert!(StatSource::for_name(Path::new("/sys"), "").is_none());
    }
}
