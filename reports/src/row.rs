//! One row of `results.csv`: one pass, long format, units in column names, empty where a
//! layer of the flush trace does not apply.

use serde::{Deserialize, Serialize};
use std::path::Path;
use zvbench_agent::PassRecord;

/// A row of `results.csv`. Column order is field order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ResultRow {
    /// Target name from the scenario.
    pub target: String,
    /// host | loop | image | zvol | blockdev.
    pub storage: String,
    /// none (host baseline) | qemu | virtualbox.
    pub hypervisor: String,
    /// kvm | tcg; empty for the host.
    pub accel: String,
    /// virtio | sata | nvme | scsi; empty for the host.
    pub bus: String,
    /// QEMU cache mode; empty for the host.
    pub cache: String,
    /// Workload name.
    pub workload: String,
    /// seqwr | seqrd | randwrite | randread | randrw.
    pub kind: String,
    /// Block size.
    pub bs_bytes: u64,
    /// Bytes per pass.
    pub size_bytes: u64,
    /// O_DIRECT in the agent.
    pub direct: bool,
    /// The agent's flush control.
    pub sync: String,
    /// A flush every N writes.
    pub sync_every: u64,
    /// 1-based repetition.
    pub repetition: u32,
    /// Wall time of the pass.
    pub seconds: f64,
    /// Throughput.
    pub mib_per_s: f64,
    /// Requests per second.
    pub iops: f64,
    /// Median request latency.
    pub lat_p50_us: f64,
    /// 90th percentile request latency (absent in results of zvbench before it).
    #[serde(default)]
    pub lat_p90_us: Option<f64>,
    /// 99th percentile request latency.
    pub lat_p99_us: f64,
    /// 99.9th percentile request latency.
    #[serde(default)]
    pub lat_p999_us: Option<f64>,
    /// Largest request latency.
    pub lat_max_us: f64,
    /// Median flush latency.
    pub flush_p50_us: Option<f64>,
    /// 90th percentile flush latency.
    #[serde(default)]
    pub flush_p90_us: Option<f64>,
    /// 99th percentile flush latency.
    pub flush_p99_us: Option<f64>,
    /// 99.9th percentile flush latency.
    #[serde(default)]
    pub flush_p999_us: Option<f64>,
    /// Largest flush latency.
    #[serde(default)]
    pub flush_max_us: Option<f64>,
    /// Flush calls the agent made.
    pub agent_flushes: u64,
    /// Flushes the guest's virtual disk completed (guest `/sys/block`).
    pub guest_dev_flushes: Option<u64>,
    /// The agent's device's `queue/write_cache` ("write back" or "write through").
    pub dev_write_cache: Option<String>,
    /// Flushes the hypervisor performed (QMP `flush_operations`).
    pub hv_flushes: Option<u64>,
    /// Time the hypervisor spent flushing.
    pub hv_flush_ms: Option<f64>,
    /// Flushes the host device completed (`/sys/block/<dev>/stat` field 16).
    pub host_dev_flushes: Option<u64>,
    /// Time the host device spent flushing (field 17).
    pub host_dev_flush_ms: Option<u64>,
    /// ZIL commits of the zvol, or of the dataset holding a host file, loop backing file or
    /// image on kernel ZFS.
    pub zil_commits: Option<u64>,
    /// Flushes the pool's leaf vdevs completed (their `/sys/block` stat field 16, summed):
    /// the bottom of the trace below a zvol, whose own counters see no flushes, or below a
    /// dataset, which has none.
    #[serde(default)]
    pub vdev_flushes: Option<u64>,
    /// Bytes the host device wrote during the pass.
    pub host_dev_write_bytes: Option<u64>,
    /// Kernel start to agent start in the guest.
    pub guest_boot_ms: Option<u64>,
    /// VM start to the agent's Hello, on the host's clock (absent in results of zvbench
    /// before the boot timeline).
    #[serde(default)]
    pub boot_hello_ms: Option<u64>,
    /// VM start to the first pass's start, on the host's clock.
    #[serde(default)]
    pub boot_first_pass_ms: Option<u64>,
    /// Agent user CPU.
    pub cpu_user_s: f64,
    /// Agent system CPU.
    pub cpu_sys_s: f64,
    /// Blocks that verified, when verifying.
    pub verify_ok: Option<u64>,
    /// Blocks checked, when verifying.
    pub verify_checked: Option<u64>,
    /// Power cuts simulated for the pass (`zvbench run --powercut`).
    pub powercut_cuts: Option<u64>,
    /// Blocks the guest had acknowledged as durable at the last cut.
    pub powercut_acked_blocks: Option<u64>,
    /// The most acknowledged blocks lost at one cut.
    pub powercut_lost_blocks: Option<u64>,
    /// Cuts that lost at least one acknowledged block.
    pub powercut_cuts_lost: Option<u64>,
    /// How long before its cut the newest lost block was acknowledged (the oldest over cuts).
    pub powercut_newest_loss_ms: Option<u64>,
    /// The most lost blocks at one cut that held an older intact block.
    pub powercut_stale_blocks: Option<u64>,
    /// The most lost blocks at one cut that were half written.
    pub powercut_torn_blocks: Option<u64>,
    /// Flushes that reached the power-cut log (stable storage) during the pass.
    pub powercut_log_flushes: Option<u64>,
    /// `durable` (no acknowledged block lost at any cut) or `not durable`.
    pub powercut_verdict: Option<String>,
    /// When not durable: the layer that dropped the flushes, from the flush trace.
    pub powercut_dropped_at: Option<String>,
    /// Percent of requests that read: 100 read, 0 write, rwmixread for randrw (empty in
    /// results of zvbench before random workloads).
    #[serde(default)]
    pub rw_mix_read: Option<u8>,
    /// Requests in flight per job.
    #[serde(default)]
    pub iodepth: Option<u32>,
    /// Jobs (threads) of the pass.
    #[serde(default)]
    pub numjobs: Option<u32>,
    /// I/O engine: psync | io_uring | libaio (or the imported tool's).
    #[serde(default)]
    pub engine: Option<String>,
    /// The time a time-based pass was asked to run; empty for a size-based pass.
    #[serde(default)]
    pub runtime_s: Option<f64>,
    /// Bytes the agent wrote in the pass (empty in results of zvbench before it).
    #[serde(default)]
    pub agent_write_bytes: Option<u64>,
    /// Bytes the pool's leaf vdevs wrote during the pass (the pool synced at its start and
    /// end: its transaction group included); empty off kernel ZFS.
    #[serde(default)]
    pub vdev_write_bytes: Option<u64>,
    /// Bytes the pool's leaf vdevs read during the pass.
    #[serde(default)]
    pub vdev_read_bytes: Option<u64>,
}

impl ResultRow {
    /// The agent's part of a row; the caller fills in target, guest and lower layers.
    pub fn from_record(r: &PassRecord) -> ResultRow {
        ResultRow {
            kind: r.kind.as_str().into(),
            bs_bytes: r.bs_bytes,
            size_bytes: r.size_bytes,
            direct: r.direct,
            sync: r.sync.as_str().into(),
            sync_every: r.sync_every,
            seconds: r.seconds,
            mib_per_s: r.mib_per_s,
            iops: r.iops,
            lat_p50_us: r.lat_p50_us,
            lat_p90_us: Some(r.lat.p90_us),
            lat_p99_us: r.lat_p99_us,
            lat_p999_us: Some(r.lat.p999_us),
            lat_max_us: r.lat_max_us,
            flush_p50_us: r.flush_p50_us,
            flush_p90_us: r.flush.as_ref().map(|f| f.p90_us),
            flush_p99_us: r.flush_p99_us,
            flush_p999_us: r.flush.as_ref().map(|f| f.p999_us),
            flush_max_us: r.flush.as_ref().map(|f| f.max_us),
            agent_flushes: r.agent_flushes,
            guest_dev_flushes: r.guest_dev_flushes,
            dev_write_cache: r.device_write_cache.clone(),
            cpu_user_s: r.cpu_user_s,
            cpu_sys_s: r.cpu_sys_s,
            verify_ok: r.verify_result.map(|v| v.ok),
            verify_checked: r.verify_result.map(|v| v.checked),
            rw_mix_read: Some(r.rw_mix_read),
            iodepth: Some(r.iodepth),
            numjobs: Some(r.numjobs),
            engine: Some(r.engine.clone()),
            runtime_s: r.runtime_s,
            agent_write_bytes: Some(r.write_bytes),
            ..Default::default()
        }
    }
}

/// A value a row cannot hold: infinite, negative, or NaN where NaN does not mean "not measured".
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("column {column}: {} {problem}", crate::stats::plain(*value))]
pub struct BadValue {
    /// The column.
    pub column: &'static str,
    /// The value found.
    pub value: f64,
    /// What is wrong with it.
    pub problem: &'static str,
}

/// Whether NaN in a float column is allowed: it is zvbench's "not measured" in the four
/// required columns an imported tool may not report (sysbench has no median latency).
#[derive(Clone, Copy, PartialEq)]
enum Nan {
    NotMeasured,
    Refused,
}

impl ResultRow {
    /// Every float column: name, value (`None`: empty cell), and what NaN means there.
    fn floats(&self) -> [(&'static str, Option<f64>, Nan); 17] {
        use Nan::{NotMeasured, Refused};
        [
            ("seconds", Some(self.seconds), Refused),
            ("mib_per_s", Some(self.mib_per_s), Refused),
            ("iops", Some(self.iops), NotMeasured),
            ("lat_p50_us", Some(self.lat_p50_us), NotMeasured),
            ("lat_p90_us", self.lat_p90_us, Refused),
            ("lat_p99_us", Some(self.lat_p99_us), NotMeasured),
            ("lat_p999_us", self.lat_p999_us, Refused),
            ("lat_max_us", Some(self.lat_max_us), NotMeasured),
            ("flush_p50_us", self.flush_p50_us, Refused),
            ("flush_p90_us", self.flush_p90_us, Refused),
            ("flush_p99_us", self.flush_p99_us, Refused),
            ("flush_p999_us", self.flush_p999_us, Refused),
            ("flush_max_us", self.flush_max_us, Refused),
            ("hv_flush_ms", self.hv_flush_ms, Refused),
            ("cpu_user_s", Some(self.cpu_user_s), Refused),
            ("cpu_sys_s", Some(self.cpu_sys_s), Refused),
            ("runtime_s", self.runtime_s, Refused),
        ]
    }

    /// Checks that every float is a measurement: finite and not negative (NaN only where
    /// it means "not measured"). Integer columns cannot hold such values.
    pub fn check(&self) -> Result<(), BadValue> {
        for (column, value, nan) in self.floats() {
            let Some(value) = value else { continue };
            let problem = if value.is_nan() {
                (nan == Nan::Refused)
                    .then_some("is not a number (leave the cell empty when there is no value)")
            } else if value.is_infinite() {
                Some("is not a finite number")
            } else if value < 0.0 {
                Some("is negative")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(BadValue {
                    column,
                    value,
                    problem,
                });
            }
        }
        Ok(())
    }
}

/// Largest `results.csv` read (a row is about 400 bytes: over half a million passes).
pub const MAX_RESULTS_BYTES: u64 = 256 << 20;

/// Why results could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A directory (or device, socket...) where the file should be.
    #[error("{path} is not a regular file; a run directory holds its results (results.csv, results.jsonl) as files written by `zvbench run` or `zvbench import`")]
    NotAFile {
        /// The path.
        path: String,
    },
    /// Over [`MAX_RESULTS_BYTES`].
    #[error("{path} is {bytes} bytes, over the {MAX_RESULTS_BYTES}-byte limit: is it really a results file?")]
    TooLarge {
        /// The file.
        path: String,
        /// Its size.
        bytes: u64,
    },
    /// The CSV is malformed (wrong columns, broken quoting).
    #[error("cannot read {path}")]
    Csv {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: csv::Error,
    },
    /// A cell cannot be read or holds an impossible value.
    #[error("{path}: row {row} (line {line}), column {column}: {value:?} {problem}; fix or remove that row")]
    Cell {
        /// The file.
        path: String,
        /// 1-based data row.
        row: u64,
        /// 1-based line in the file.
        line: u64,
        /// The column.
        column: String,
        /// The cell's text.
        value: String,
        /// What is wrong with it.
        problem: String,
    },
    /// Empty or header only.
    #[error("{path} has no rows: nothing to read; run `zvbench run` or `zvbench import` into this directory first")]
    Empty {
        /// The file.
        path: String,
    },
}

/// Reads a `results.csv` of at least one row, every value checked ([`ResultRow::check`]).
pub fn read_results(path: &Path) -> Result<Vec<ResultRow>, ReadError> {
    let rows = read_rows(path)?;
    if rows.is_empty() {
        return Err(ReadError::Empty {
            path: path.display().to_string(),
        });
    }
    Ok(rows)
}

/// Reads a `results.csv` that may be empty or header-only (zvbench writes the header with
/// the first row), every value checked.
pub fn read_rows(path: &Path) -> Result<Vec<ResultRow>, ReadError> {
    parse(&read_bytes(path)?, &path.display().to_string())
}

/// The bytes of a results file (`results.csv`, `results.jsonl`): a regular file of at most
/// [`MAX_RESULTS_BYTES`].
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, ReadError> {
    let name = || path.display().to_string();
    let io = |source| ReadError::Io {
        path: name(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(ReadError::NotAFile { path: name() });
    }
    if meta.len() > MAX_RESULTS_BYTES {
        return Err(ReadError::TooLarge {
            path: name(),
            bytes: meta.len(),
        });
    }
    std::fs::read(path).map_err(io)
}

/// Parses the text of a `results.csv` (possibly empty), every value checked; `path` names
/// the file in errors.
pub fn parse(bytes: &[u8], path: &str) -> Result<Vec<ResultRow>, ReadError> {
    let csv_error = |source| ReadError::Csv {
        path: path.into(),
        source,
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut r = csv::Reader::from_reader(bytes);
    let headers = r.headers().map_err(csv_error)?.clone();
    let mut rows = Vec::new();
    let mut rec = csv::StringRecord::new();
    while r.read_record(&mut rec).map_err(csv_error)? {
        let row = rows.len() as u64 + 1;
        let line = rec.position().map_or(0, csv::Position::line);
        let cell = |column: &str, problem: String| {
            let value = headers
                .iter()
                .position(|h| h == column)
                .and_then(|i| rec.get(i))
                .unwrap_or_default();
            ReadError::Cell {
                path: path.into(),
                row,
                line,
                column: column.into(),
                value: value.into(),
                problem,
            }
        };
        let parsed: ResultRow = rec.deserialize(Some(&headers)).map_err(|e| {
            let column = match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err
                    .field()
                    .and_then(|i| headers.get(i as usize))
                    .map(str::to_string),
                _ => None,
            };
            match column {
                Some(c) => {
                    let why = match e.kind() {
                        csv::ErrorKind::Deserialize { err, .. } => err.kind().to_string(),
                        _ => e.to_string(),
                    };
                    cell(&c, format!("cannot be read ({why})"))
                }
                None => csv_error(e),
            }
        })?;
        parsed
            .check()
            .map_err(|b| cell(b.column, b.problem.into()))?;
        rows.push(parsed);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip_with_empty_layers() {
        let row = ResultRow {
            target: "vdi".into(),
            storage: "image".into(),
            kind: "seqwr".into(),
            hv_flushes: Some(17),
            mib_per_s: 12.5,
            ..Default::default()
        };
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        let mut w = csv::Writer::from_path(&p).unwrap();
        w.serialize(&row).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&p).unwrap();
        let header = text.lines().next().unwrap();
        for col in [
            "target",
            "hv_flushes",
            "host_dev_flushes",
            "zil_commits",
            "flush_p99_us",
            "lat_p50_us",
        ] {
            assert!(
                header.split(',').any(|c| c == col),
                "{col} missing from {header}"
            );
        }
        assert!(text.lines().nth(1).unwrap().contains(",17,"), "{text}");
        assert_eq!(read_results(&p).unwrap(), vec![row]);
    }

    /// A results.csv written before the p90/p99.9/max flush columns existed still reads.
    #[test]
    fn older_results_without_the_new_percentiles() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        let mut w = csv::Writer::from_path(&p).unwrap();
        w.serialize(ResultRow {
            target: "t".into(),
            lat_p90_us: Some(1.0),
            iodepth: Some(32),
            engine: Some("io_uring".into()),
            ..Default::default()
        })
        .unwrap();
        w.flush().unwrap();
        drop(w);
        assert_eq!(read_results(&p).unwrap()[0].iodepth, Some(32));
        let text = std::fs::read_to_string(&p).unwrap();
        let drop_cols = [
            "lat_p90_us",
            "lat_p999_us",
            "flush_p90_us",
            "flush_p999_us",
            "flush_max_us",
            "rw_mix_read",
            "iodepth",
            "numjobs",
            "engine",
            "runtime_s",
        ];
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let keep: Vec<usize> = (0..header.len())
            .filter(|&i| !drop_cols.contains(&header[i]))
            .collect();
        let old: String = text
            .lines()
            .map(|l| {
                let cells: Vec<&str> = l.split(',').collect();
                keep.iter().map(|&i| cells[i]).collect::<Vec<_>>().join(",") + "\n"
            })
            .collect();
        std::fs::write(&p, old).unwrap();
        let rows = read_results(&p).unwrap();
        assert_eq!((rows[0].target.as_str(), rows[0].lat_p90_us), ("t", None));
        assert_eq!((rows[0].iodepth, rows[0].engine.as_deref()), (None, None));
    }

    /// A results.csv of one good row with `column` set to the text `value`.
    fn with_cell(column: &str, value: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        let mut w = csv::Writer::from_path(&p).unwrap();
        w.serialize(ResultRow {
            target: "t".into(),
            seconds: 1.0,
            mib_per_s: 2.0,
            ..Default::default()
        })
        .unwrap();
        w.serialize(ResultRow::default()).unwrap();
        w.flush().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&p).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let i = header.iter().position(|h| *h == column).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
        let mut cells: Vec<&str> = lines[2].split(',').collect();
        cells[i] = value;
        lines[2] = cells.join(",");
        std::fs::write(&p, lines.join("\n") + "\n").unwrap();
        (dir, p)
    }

    /// Issue 9 item 8: inf and f64::MAX overflows were read and hung the plots; negative
    /// values were read as measurements.
    #[test]
    fn impossible_values_are_refused_with_file_row_and_column() {
        for (column, value, says) in [
            ("mib_per_s", "inf", "\"inf\" is not a finite number"),
            ("iops", "-inf", "\"-inf\" is not a finite number"),
            ("lat_p99_us", "1e400", "\"1e400\" is not a finite number"),
            ("seconds", "-1", "\"-1\" is negative"),
            ("flush_p99_us", "-0.5", "is negative"),
            ("mib_per_s", "NaN", "is not a number (leave the cell empty"),
            ("flush_max_us", "nan", "is not a number"),
            (
                "bs_bytes",
                "-4096",
                "\"-4096\" cannot be read (invalid digit",
            ),
            ("agent_flushes", "1e3", "\"1e3\" cannot be read"),
            ("direct", "maybe", "\"maybe\" cannot be read"),
        ] {
            let (_d, p) = with_cell(column, value);
            let e = read_results(&p).unwrap_err().to_string();
            let place = format!("{}: row 2 (line 3), column {column}: ", p.display());
            assert!(
                e.contains(&place) && e.contains(says),
                "{column}={value}: {e}"
            );
        }
        // NaN is "not measured" in the four columns an imported tool may not report, and
        // huge finite values are measurements the reports must survive.
        for (column, value) in [
            ("lat_p50_us", "NaN"),
            ("iops", "NaN"),
            ("mib_per_s", "1.7976931348623157e308"),
        ] {
            let (_d, p) = with_cell(column, value);
            assert_eq!(read_results(&p).unwrap().len(), 2, "{column}={value}");
        }
    }

    /// Issue 9 item 11: an empty or header-only file, or a directory, read as no rows.
    #[test]
    fn empty_header_only_and_directories_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("results.csv");
        for text in ["", "target,storage\n"] {
            std::fs::write(&p, text).unwrap();
            let e = read_results(&p).unwrap_err();
            assert!(matches!(e, ReadError::Empty { .. }), "{text:?}: {e}");
            assert!(e.to_string().contains("has no rows"), "{e}");
        }
        std::fs::remove_file(&p).unwrap();
        std::fs::create_dir(&p).unwrap();
        let e = read_results(&p).unwrap_err().to_string();
        assert!(e.contains("is not a regular file"), "{e}");
        let e = read_results(&dir.path().join("missing.csv")).unwrap_err();
        assert!(matches!(e, ReadError::Io { .. }), "{e}");
    }
}
