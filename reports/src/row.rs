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
    /// seqwr | seqrd.
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
    /// ZIL commits of the zvol.
    pub zil_commits: Option<u64>,
    /// Flushes the zvol's pool's leaf vdevs completed (their `/sys/block` stat field 16,
    /// summed): the bottom of the trace below a zvol, whose own counters see no flushes.
    #[serde(default)]
    pub vdev_flushes: Option<u64>,
    /// Bytes the host device wrote during the pass.
    pub host_dev_write_bytes: Option<u64>,
    /// Kernel start to agent start in the guest.
    pub guest_boot_ms: Option<u64>,
    /// Agent user CPU.
    pub cpu_user_s: f64,
    /// Agent system CPU.
    pub cpu_sys_s: f64,
    /// Blocks that verified, when verifying.
    pub verify_ok: Option<u64>,
    /// Blocks checked, when verifying.
    pub verify_checked: Option<u64>,
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
            ..Default::default()
        }
    }
}

/// Why results could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The CSV is missing or malformed.
    #[error("cannot read {path}")]
    Csv {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: csv::Error,
    },
}

/// Reads a `results.csv`.
pub fn read_results(path: &Path) -> Result<Vec<ResultRow>, ReadError> {
    let err = |source| ReadError::Csv {
        path: path.display().to_string(),
        source,
    };
    let mut r = csv::Reader::from_path(path).map_err(err)?;
    r.deserialize()
        .collect::<Result<Vec<ResultRow>, _>>()
        .map_err(err)
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
            ..Default::default()
        })
        .unwrap();
        w.flush().unwrap();
        drop(w);
        let text = std::fs::read_to_string(&p).unwrap();
        let drop_cols = [
            "lat_p90_us",
            "lat_p999_us",
            "flush_p90_us",
            "flush_p999_us",
            "flush_max_us",
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
    }
}
