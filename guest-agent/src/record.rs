//! The result record: one per pass, the same in the agent's JSON Lines, in the guest's
//! frames and in the runner's `results.jsonl`. Field names that also appear in the
//! runner's `results.csv` are spelled the same there.

use crate::devstat::DevDelta;
use crate::hist::Percentiles;
use crate::pass::{SyncMode, Workload};
use crate::series::Series;
use crate::target::PathKind;
use serde::{Deserialize, Serialize};

/// Version of [`PassRecord`] and of the frame payloads. Bumped on any incompatible change.
pub const SCHEMA_VERSION: u32 = 1;

/// How one cache-dropping step before a read pass went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheDrop {
    /// `fadvise_dontneed`, `blkflsbuf` or `drop_caches`.
    pub method: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// The error, when it failed or was skipped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a `--verify` read pass found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VerifyResult {
    /// Blocks checked.
    pub checked: u64,
    /// Blocks whose header and checksum matched.
    pub ok: u64,
    /// Blocks without a zvbench header (never written, or foreign data).
    pub mismatched: u64,
    /// Blocks with a valid header from another run or another position.
    pub stale: u64,
    /// Blocks whose header matched but whose checksum did not (a torn or partial write).
    pub torn: u64,
}

impl VerifyResult {
    /// Adds another job's counts.
    pub fn merge(&mut self, o: &VerifyResult) {
        self.checked += o.checked;
        self.ok += o.ok;
        self.mismatched += o.mismatched;
        self.stale += o.stale;
        self.torn += o.torn;
    }

    /// Whether every block checked out.
    pub fn passed(&self) -> bool {
        self.checked == self.ok
    }
}

/// One pass's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassRecord {
    /// [`SCHEMA_VERSION`] at the time of writing.
    pub schema_version: u32,
    /// Version of the agent that measured.
    pub agent_version: String,
    /// A label given by the caller (the runner puts its pass id here).
    #[serde(default)]
    pub label: String,
    /// `seqwr` or `seqrd`.
    pub kind: Workload,
    /// The path measured.
    pub path: String,
    /// File or block device.
    pub path_kind: PathKind,
    /// Block size of each request.
    pub bs_bytes: u64,
    /// Bytes the pass moves.
    pub size_bytes: u64,
    /// O_DIRECT.
    pub direct: bool,
    /// Flush control.
    pub sync: SyncMode,
    /// A flush after every N writes (0: none but the end flush).
    pub sync_every: u64,
    /// A final flush after the last write.
    pub end_fsync: bool,
    /// Whether blocks carried verify headers (writes) or were checked (reads).
    pub verify: bool,
    /// Seed of the verify headers.
    pub seed: u64,
    /// O_DIRECT offset alignment the kernel required.
    pub dio_offset_align: u32,
    /// O_DIRECT buffer alignment used.
    pub dio_mem_align: u32,
    /// Wall time of the I/O and flushes, seconds.
    pub seconds: f64,
    /// Bytes moved.
    pub bytes: u64,
    /// Read or write requests.
    pub ops: u64,
    /// Throughput in MiB/s (2^20 bytes per second).
    pub mib_per_s: f64,
    /// Requests per second.
    pub iops: f64,
    /// I/O latency percentiles.
    pub lat: Percentiles,
    /// Median I/O latency, µs (also in `lat`; flat for CSV).
    pub lat_p50_us: f64,
    /// 99th percentile I/O latency, µs.
    pub lat_p99_us: f64,
    /// Largest I/O latency, µs.
    pub lat_max_us: f64,
    /// Flush latency percentiles, kept apart from I/O (as fio does); absent without flushes.
    pub flush: Option<Percentiles>,
    /// Median flush latency, µs.
    pub flush_p50_us: Option<f64>,
    /// 99th percentile flush latency, µs.
    pub flush_p99_us: Option<f64>,
    /// Flush system calls the agent issued (fsync or fdatasync).
    pub agent_flushes: u64,
    /// Flushes the block device under the path completed during the pass (inside a guest:
    /// the guest's virtual disk), from `/sys/block/<dev>/stat` field 16.
    pub guest_dev_flushes: Option<u64>,
    /// The whole counter delta of that device.
    pub device: Option<DevDelta>,
    /// That device's `queue/write_cache`: "write back" (flushes are sent to it) or
    /// "write through" (the block layer drops flushes: the device claims no volatile cache).
    #[serde(default)]
    pub device_write_cache: Option<String>,
    /// That device's `queue/fua` (forced unit access supported).
    #[serde(default)]
    pub device_fua: Option<bool>,
    /// User CPU seconds of the agent.
    pub cpu_user_s: f64,
    /// System CPU seconds of the agent.
    pub cpu_sys_s: f64,
    /// Cache-dropping steps done before a read pass.
    pub cache_drop: Vec<CacheDrop>,
    /// Verify outcome of a `--verify` read pass.
    pub verify_result: Option<VerifyResult>,
    /// I/O latency histogram (base64 HdrHistogram V2 deflate, ns).
    pub hist_io: String,
    /// Flush latency histogram, same encoding.
    pub hist_flush: String,
    /// Percent of requests that read: 100 for read workloads, 0 for writes, `rwmixread`
    /// for randrw (records older than these fields read as sequential, depth 1, one job).
    #[serde(default)]
    pub rw_mix_read: u8,
    /// Requests in flight per job.
    #[serde(default = "one")]
    pub iodepth: u32,
    /// Jobs (threads), each on its own region.
    #[serde(default = "one")]
    pub numjobs: u32,
    /// The I/O engine used: `psync`, `io_uring` or `libaio`.
    #[serde(default = "psync")]
    pub engine: String,
    /// The time the pass was asked to run for, seconds (absent: a size-based pass).
    #[serde(default)]
    pub runtime_s: Option<f64>,
    /// Seconds run before the measurement and left out of it.
    #[serde(default)]
    pub ramp_time_s: Option<f64>,
    /// Seed of the random offsets (absent for sequential passes).
    #[serde(default)]
    pub randseed: Option<u64>,
    /// Random blocks drawn independently rather than each once per pass.
    #[serde(default)]
    pub norandommap: bool,
    /// Fresh write content per write, this percent compressible (absent: one buffer).
    #[serde(default)]
    pub buffer_compress_percentage: Option<u8>,
    /// Bytes read.
    #[serde(default)]
    pub read_bytes: u64,
    /// Bytes written.
    #[serde(default)]
    pub write_bytes: u64,
    /// Throughput, IOPS, p99 latency and flushes per interval.
    #[serde(default)]
    pub series: Option<Series>,
}

fn one() -> u32 {
    1
}

fn psync() -> String {
    "psync".to_string()
}
