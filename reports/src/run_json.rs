//! `run.json`: where a run's numbers came from, as one type, [`RunInfo`], that the runner
//! writes and every reader (`report`, `history`, `import`) reads back, bounded in size and
//! checked field by field. Every field is optional, because older files lack those added
//! since (the first run.json had no `boots`, `repetitions`, `imported`, `lab_powercut`, nor
//! a storage entry's `zil_source`, `dataset`, `vdevs`, `send`, `virtualbox`,
//! `async_flushes_disabled` or `repetitions_start`; an import writes only `run_id`, `date`
//! and `zvbench_version`; the lab's power-cut check only `storage` and `lab_powercut`), and
//! keys this version does not know are kept as they were, so a file read and written
//! again (`zvbench import`) loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest `run.json` read (the scenario text and provenance stay far below it).
pub const MAX_RUN_JSON: u64 = 16 << 20;

/// Why `run.json` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RunJsonError {
    /// It exists but cannot be read (a directory, no permission).
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Over [`MAX_RUN_JSON`].
    #[error("{path} is {bytes} bytes, over the {MAX_RUN_JSON}-byte limit: fix or move it")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        bytes: u64,
    },
    /// Not JSON.
    #[error("{path} is not valid JSON: fix or move it")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// JSON, but not an object.
    #[error("{path} is JSON but not an object as zvbench writes it: fix or move it")]
    NotObject {
        /// The file.
        path: PathBuf,
    },
    /// An object, but a field holds another type than zvbench writes there.
    #[error("{path}: {field:?} is not as zvbench writes it: fix or move the file")]
    Field {
        /// The file.
        path: PathBuf,
        /// The field, `storage.<target>.<key>` inside a storage entry.
        field: String,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

/// `run.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    /// The zvbench version that wrote it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zvbench_version: Option<String>,
    /// Its git revision (`unknown` outside a checkout).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_revision: Option<String>,
    /// The result record's schema version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    /// The run's id (also in its file and dataset names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    /// When it started, RFC 3339 UTC (`history` orders runs by it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// The host it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<Host>,
    /// `qemu-system-x86_64 --version`'s first line; `null` without QEMU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qemu_version: Option<String>,
    /// The accelerator: `kvm` or `tcg`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accel: Option<String>,
    /// The guest kernel as the runner describes it (image, modules, source, direct boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest_kernel: Option<Value>,
    /// The scenario's targets as the runner planned them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub targets: Option<Value>,
    /// What each target's storage was, by target name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub storage: BTreeMap<String, TargetStorage>,
    /// Each guest boot's timeline, by `<target>-<repetition>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub boots: BTreeMap<String, Value>,
    /// How `repetitions = "auto"` stopped, by target name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub repetitions: BTreeMap<String, Value>,
    /// The scenario file's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The files `zvbench import` added, oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub imported: Vec<Imported>,
    /// The settings and step times of `zvbench lab --powercut`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lab_powercut: Option<LabPowercut>,
    /// Keys this version does not know, kept as they were.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// The host a run ran on (a field missing in the file reads as empty).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Host {
    /// Kernel release.
    pub kernel: String,
    /// Machine (`x86_64`).
    pub machine: String,
    /// CPU model.
    pub cpu: String,
    /// CPUs available to zvbench.
    pub cpus: usize,
}

/// One target's storage: what zvbench made (each property a string as zvbench or
/// `zfs get` wrote it) and what happened to it during the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetStorage {
    /// The provisioned object's properties: `file`, `backing_file`, `loop_device`,
    /// `image`, `format`, `variant`, `zvol`, `dataset`, `zil_source`, `vdevs`,
    /// `volblocksize`, `sync`, … (see the runner's `host::storage`).
    #[serde(flatten)]
    pub props: BTreeMap<String, Value>,
    /// How each repetition of a zvol starts (from its clean snapshot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repetitions_start: Option<String>,
    /// The VirtualBox settings of a VirtualBox target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtualbox: Option<Value>,
    /// The `VBox.log` line that disabled async flushes, by repetition.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub async_flushes_disabled: BTreeMap<String, String>,
    /// The timed `zfs send | zfs receive` of a `send_to` target; an entry that is not
    /// one is kept as it was and left out of the report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<Checked<SendStep>>,
}

impl TargetStorage {
    /// A property that is a string (`zvol`, `volblocksize`, `sync`, …).
    pub fn prop(&self, key: &str) -> Option<&str> {
        self.props.get(key).and_then(Value::as_str)
    }

    /// Sets a property.
    pub fn set(&mut self, key: &str, value: impl Into<Value>) {
        self.props.insert(key.to_string(), value.into());
    }
}

/// A value as zvbench writes it, or what was there instead (kept, not shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Checked<T> {
    /// As zvbench writes it.
    Valid(T),
    /// Something else.
    Unreadable(Value),
}

impl<T> Checked<T> {
    /// The value, when it is as zvbench writes it.
    pub fn valid(&self) -> Option<&T> {
        match self {
            Checked::Valid(v) => Some(v),
            Checked::Unreadable(_) => None,
        }
    }
}

/// A timed send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendStep {
    /// The snapshot sent.
    pub snapshot: String,
    /// The dataset it was received as (destroyed after the measurement).
    pub received_as: String,
    /// Bytes of the send stream.
    pub bytes: u64,
    /// Seconds from starting both commands to both having exited.
    pub seconds: f64,
    /// `bytes` per second, MiB/s (the report computes it again from the two above).
    #[serde(default)]
    pub mib_per_s: f64,
    /// The two commands, as run.
    #[serde(default)]
    pub commands: String,
}

/// One file `zvbench import` added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Imported {
    /// `fio` or `sysbench`.
    pub tool: String,
    /// The file.
    pub file: String,
    /// The target of its rows (none for a file without rows).
    pub target: Option<String>,
    /// How many rows.
    pub rows: usize,
    /// When, RFC 3339 UTC.
    pub date: String,
}

/// `zvbench lab --powercut`'s settings and step times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabPowercut {
    /// Cut points per zvol, the end included.
    pub cuts_per_zvol: usize,
    /// Blocks each pass wrote.
    pub blocks: u64,
    /// Their size, bytes.
    pub block_bytes: u64,
    /// OpenZFS's `zfs_txg_timeout` during the check.
    pub zfs_txg_timeout_s: String,
    /// The write VM, seconds.
    pub write_vm_s: f64,
    /// The reconstructions, seconds.
    pub rebuild_s: f64,
    /// The verification VM, seconds.
    pub verify_vm_s: f64,
}

impl RunInfo {
    /// The storage entry of `target`, made empty if absent.
    pub fn storage_mut(&mut self, target: &str) -> &mut TargetStorage {
        self.storage.entry(target.to_string()).or_default()
    }
}

/// `dir/run.json`; `None` when there is no such file.
pub fn read(dir: &Path) -> Result<Option<RunInfo>, RunJsonError> {
    let path = dir.join("run.json");
    let io = |source| RunJsonError::Io {
        path: path.clone(),
        source,
    };
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(e)),
    };
    if meta.len() > MAX_RUN_JSON {
        return Err(RunJsonError::TooLarge {
            path,
            bytes: meta.len(),
        });
    }
    let bytes = std::fs::read(&path).map_err(io)?;
    parse(&bytes, &path).map(Some)
}

/// Parses the text of a `run.json` (`path` names it in errors).
pub fn parse(bytes: &[u8], path: &Path) -> Result<RunInfo, RunJsonError> {
    let v: Value = serde_json::from_slice(bytes).map_err(|source| RunJsonError::Json {
        path: path.into(),
        source,
    })?;
    from_value(&v, path)
}

/// A `run.json` already parsed as JSON (`path` names it in errors): the first field that
/// is not as zvbench writes it is named.
pub fn from_value(v: &Value, path: &Path) -> Result<RunInfo, RunJsonError> {
    let Value::Object(map) = v else {
        return Err(RunJsonError::NotObject { path: path.into() });
    };
    RunInfo::deserialize(v).map_err(|source| {
        let field = map
            .iter()
            .find_map(|(k, v)| bad_field(k, v))
            .unwrap_or_default();
        RunJsonError::Field {
            path: path.into(),
            field,
            source,
        }
    })
}

/// `key` (or, in `storage`, `storage.<target>.<key>`) when it alone fails to read.
fn bad_field(key: &str, v: &Value) -> Option<String> {
    let alone = |k: &str, v: &Value| {
        let mut m = serde_json::Map::new();
        m.insert(k.to_string(), v.clone());
        Value::Object(m)
    };
    serde_json::from_value::<RunInfo>(alone(key, v)).err()?;
    if let (Some(targets), "storage") = (v.as_object(), key) {
        for (t, entry) in targets {
            for (k, val) in entry.as_object().into_iter().flatten() {
                if serde_json::from_value::<TargetStorage>(alone(k, val)).is_err() {
                    return Some(format!("storage.{t}.{k}"));
                }
            }
        }
    }
    Some(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(s: &str) -> Result<RunInfo, RunJsonError> {
        parse(s.as_bytes(), Path::new("d/run.json"))
    }

    /// The provenance of the first zvbench (commit 3df55f1) still reads.
    #[test]
    fn the_first_run_json_reads() {
        let first = r#"{"zvbench_version": "0.1.0", "git_revision": "unknown", "schema_version": 1,
            "run_id": "20261120T101500-4242", "date": "2026-11-20T10:15:00Z",
            "host": {"kernel": "6.1.0-26-amd64", "machine": "x86_64", "cpu": "AMD EPYC", "cpus": 2},
            "qemu_version": null, "accel": "tcg", "guest_kernel": null,
            "targets": [{"name": "host"}],
            "storage": {"host": {"file": "/var/tmp/zvbench-x-host.dat"}},
            "scenario": "[run]\n"}"#;
        let r = parse_str(first).unwrap();
        assert_eq!(r.date.as_deref(), Some("2026-11-20T10:15:00Z"));
        assert_eq!(r.host.as_ref().unwrap().cpus, 2);
        assert_eq!(r.qemu_version, None);
        assert_eq!(
            r.storage["host"].prop("file"),
            Some("/var/tmp/zvbench-x-host.dat")
        );
        assert!(r.imported.is_empty() && r.boots.is_empty() && r.other.is_empty());
    }

    /// A run.json written by zvbench before `RunInfo` (commit 4708889, a host and a loop
    /// target in a QEMU guest) reads, and writes back as it was.
    #[test]
    fn a_run_json_from_before_reads_and_writes_back_the_same() {
        let text = include_str!("../tests/data/run-before-runinfo.json");
        let r = parse_str(text).unwrap();
        assert_eq!(r.storage["raw"].prop("loop_device"), Some("/dev/loop2"));
        assert_eq!(r.boots.len(), 1);
        assert!(r.other.is_empty(), "{:?}", r.other.keys());
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&r).unwrap(), want);
    }

    /// Unknown keys survive a read and a write; known ones come back the same.
    #[test]
    fn a_round_trip_keeps_every_key() {
        let text = r#"{"run_id": "r", "future": {"x": [1, 2]},
            "storage": {"zv": {"zvol": "tank/r-zv", "volblocksize": "16384", "new_prop": 3,
                               "async_flushes_disabled": {"1": "line"},
                               "send": {"snapshot": "a@b", "received_as": "c/d", "bytes": 1,
                                        "seconds": 1.0, "mib_per_s": 1.0, "commands": "zfs send"}},
                        "bad": {"send": {"bytes": "1"}}},
            "imported": [{"tool": "fio", "file": "f.json", "target": "fio", "rows": 2,
                          "date": "2026-11-27T00:00:00Z"}]}"#;
        let r = parse_str(text).unwrap();
        assert_eq!(r.other["future"], serde_json::json!({"x": [1, 2]}));
        assert!(r.storage["zv"].send.as_ref().unwrap().valid().is_some());
        assert!(r.storage["bad"].send.as_ref().unwrap().valid().is_none());
        let again: Value = serde_json::to_value(&r).unwrap();
        let want: Value = serde_json::from_str(text).unwrap();
        assert_eq!(again, want);
    }

    #[test]
    fn a_field_of_another_type_is_named() {
        for (text, field) in [
            (r#"{"imported": 5}"#, "\"imported\""),
            (r#"{"date": 5}"#, "\"date\""),
            (
                r#"{"storage": {"zv": {"async_flushes_disabled": [1]}}}"#,
                "\"storage.zv.async_flushes_disabled\"",
            ),
        ] {
            let e = parse_str(text).unwrap_err().to_string();
            assert!(e.contains(field) && e.contains("d/run.json"), "{e}");
        }
        assert!(matches!(
            parse_str("[1, 2]"),
            Err(RunJsonError::NotObject { .. })
        ));
    }
}
