//! The `cache` column of a result row, parsed once: QEMU's cache mode, or the VirtualBox
//! settings that decide whether the guest's flushes are passed. The column's text is what
//! [`Cache`]'s `Display` writes (`unsafe`, `hostiocache=on flushes=ignored`); the runner
//! writes it, the diagnosis matches on the parsed value.

use std::fmt;

/// QEMU's cache modes (`qemu-options.hx`), as the column spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QemuCache {
    /// O_DIRECT on the host, flushes passed.
    None,
    /// The host's page cache, flushes passed.
    Writeback,
    /// The host's page cache, every write synced.
    Writethrough,
    /// O_DIRECT and every write synced.
    Directsync,
    /// The host's page cache, flushes ignored.
    Unsafe,
}

impl QemuCache {
    const ALL: [(QemuCache, &'static str); 5] = [
        (QemuCache::None, "none"),
        (QemuCache::Writeback, "writeback"),
        (QemuCache::Writethrough, "writethrough"),
        (QemuCache::Directsync, "directsync"),
        (QemuCache::Unsafe, "unsafe"),
    ];
}

/// A row's `cache` cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cache {
    /// A QEMU cache mode.
    Qemu(QemuCache),
    /// VirtualBox: its host I/O cache, and whether it drops the guest's flushes.
    Virtualbox {
        /// `hostiocache=on`.
        host_io_cache: bool,
        /// `flushes=ignored` (else `flushes=passed`).
        flushes_ignored: bool,
    },
    /// Anything else (empty for the host baseline and imports), kept as written.
    Other(String),
}

impl Cache {
    /// Parses a `cache` cell; text of neither form is [`Cache::Other`].
    pub fn parse(cell: &str) -> Cache {
        if let Some(&(q, _)) = QemuCache::ALL.iter().find(|(_, n)| *n == cell) {
            return Cache::Qemu(q);
        }
        let vbox = |host: &str, flushes: &str| {
            let host_io_cache = match host {
                "on" => true,
                "off" => false,
                _ => return None,
            };
            let flushes_ignored = match flushes {
                "ignored" => true,
                "passed" => false,
                _ => return None,
            };
            Some(Cache::Virtualbox {
                host_io_cache,
                flushes_ignored,
            })
        };
        cell.strip_prefix("hostiocache=")
            .and_then(|rest| rest.split_once(" flushes="))
            .and_then(|(h, f)| vbox(h, f))
            .unwrap_or_else(|| Cache::Other(cell.to_string()))
    }
}

impl fmt::Display for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cache::Qemu(q) => {
                let name = QemuCache::ALL
                    .iter()
                    .find(|(m, _)| m == q)
                    .map_or("", |x| x.1);
                f.write_str(name)
            }
            Cache::Virtualbox {
                host_io_cache,
                flushes_ignored,
            } => write!(
                f,
                "hostiocache={} flushes={}",
                if *host_io_cache { "on" } else { "off" },
                if *flushes_ignored {
                    "ignored"
                } else {
                    "passed"
                }
            ),
            Cache::Other(s) => f.write_str(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cell_the_runner_writes_reads_back_the_same() {
        for cell in [
            "none",
            "writeback",
            "writethrough",
            "directsync",
            "unsafe",
            "hostiocache=on flushes=ignored",
            "hostiocache=on flushes=passed",
            "hostiocache=off flushes=ignored",
            "hostiocache=off flushes=passed",
            "",
            "hostiocache=maybe flushes=ignored",
            "hostiocache=on",
        ] {
            assert_eq!(Cache::parse(cell).to_string(), cell);
        }
        assert_eq!(
            Cache::parse("hostiocache=on flushes=ignored"),
            Cache::Virtualbox {
                host_io_cache: true,
                flushes_ignored: true
            }
        );
        assert!(matches!(
            Cache::parse("hostiocache=maybe flushes=ignored"),
            Cache::Other(_)
        ));
    }
}
