//! One measured pass: sequential writes or reads over a file or block device, with the
//! flush controls fio and sysbench users know.
//!
//! The hot loop does no allocation and no formatting: one aligned buffer, two clock reads
//! and one histogram increment per request.

use crate::aligned::{AlignError, AlignedBuf};
use crate::cache::drop_caches;
use crate::hist::LatencyHist;
use crate::record::{PassRecord, VerifyResult, SCHEMA_VERSION};
use crate::size::ByteSize;
use crate::target::{check_writable, Created, OpenMode, PathKind, Refusal, Target, TargetError};
use crate::verify::{check_block, fill_block, fill_random};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Smallest block size.
pub const MIN_BS: u64 = 512;
/// Largest block size.
pub const MAX_BS: u64 = 64 << 20;

/// Sequential write or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Sequential write.
    Seqwr,
    /// Sequential read.
    Seqrd,
}

impl Workload {
    /// The name used in records and scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Seqwr => "seqwr",
            Workload::Seqrd => "seqrd",
        }
    }
}

/// How writes are made durable.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// No flush but the end flush.
    #[default]
    None,
    /// fsync(2) every `sync_every` writes.
    Fsync,
    /// fdatasync(2) every `sync_every` writes.
    Fdatasync,
    /// Open with O_SYNC: every write is durable on return; no flush calls.
    Osync,
    /// Open with O_DSYNC.
    Odsync,
}

impl SyncMode {
    /// The name used in records and scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::None => "none",
            SyncMode::Fsync => "fsync",
            SyncMode::Fdatasync => "fdatasync",
            SyncMode::Osync => "osync",
            SyncMode::Odsync => "odsync",
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_seed() -> u64 {
    1
}

/// Everything that defines a pass. The same struct is the agent's command line and an
/// entry of the job file the runner puts in a guest's initramfs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, clap::Args)]
pub struct PassSpec {
    /// File or block device to run on.
    #[arg(long)]
    pub path: PathBuf,
    /// seqwr or seqrd.
    #[arg(long, value_enum)]
    pub workload: Workload,
    /// Block size of each request, 512 to 64M (K/M/G suffixes are powers of 1024).
    #[arg(long)]
    pub bs: ByteSize,
    /// Bytes to move; a multiple of --bs.
    #[arg(long)]
    pub size: ByteSize,
    /// O_DIRECT, with buffers aligned to what the file or device requires.
    #[arg(long)]
    #[serde(default)]
    pub direct: bool,
    /// Flush control: none, fsync, fdatasync, osync (O_SYNC), odsync (O_DSYNC).
    #[arg(long, value_enum, default_value_t = SyncMode::None)]
    #[serde(default)]
    pub sync: SyncMode,
    /// A flush after every N writes (default 1 with --sync fsync|fdatasync, else 0).
    #[arg(long)]
    #[serde(default)]
    pub sync_every: Option<u64>,
    /// Skip the final flush after the last write (on by default; --end-fsync restates it).
    #[arg(long = "no-end-fsync", action = clap::ArgAction::SetFalse, default_value_t = true)]
    #[serde(default = "default_true")]
    pub end_fsync: bool,
    /// Write headers and checksums; on reads, check every block.
    #[arg(long)]
    #[serde(default)]
    pub verify: bool,
    /// Seed of the verify headers; a read pass must use its write pass's seed.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Write the file or device even though it holds data zvbench did not write (never
    /// one in use). On the command line `--allow-destroy PATH`, naming `--path`.
    #[arg(skip)]
    #[serde(default)]
    pub allow_destroy: bool,
    /// A label copied into the record.
    #[arg(long, default_value = "")]
    #[serde(default)]
    pub label: String,
}

/// Why a pass could not run or did not complete.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// A parameter is out of range or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The target could not be opened.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// O_DIRECT needs an alignment the block size does not have.
    #[error("--bs {bs} is not a multiple of {align} bytes, the O_DIRECT alignment {path} requires; use a block size that is a multiple of {align}")]
    Misaligned {
        /// Block size.
        bs: ByteSize,
        /// Required alignment.
        align: u32,
        /// The path.
        path: String,
    },
    /// The buffer could not be allocated.
    #[error(transparent)]
    Buffer(#[from] AlignError),
    /// The file or device is in use or holds data zvbench did not write.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The observer asked the pass to stop (the host runner's Ctrl-C or SIGTERM).
    #[error("the pass was stopped before its end")]
    Stopped,
    /// A read, write or flush failed.
    #[error("{op} at offset {offset} of {path} failed")]
    Io {
        /// The operation.
        op: &'static str,
        /// Byte offset.
        offset: u64,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The two instants of a pass that lower layers' counters are read at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// After cache drops, right before the first request.
    Start,
    /// Right after the last request and the end flush.
    End,
}

/// Watches a pass. Every method has a no-op default.
pub trait Observer {
    /// Called about once a second with bytes done, bytes total and time elapsed.
    fn progress(&mut self, _done: u64, _total: u64, _elapsed: Duration) {}
    /// Called at [`Phase::Start`] and [`Phase::End`], outside the timed section; in a
    /// guest this lets the host read the hypervisor's and host device's counters.
    fn phase(&mut self, _phase: Phase) {}
    /// Called when the first `blocks` blocks of a write pass are durable by the pass's own
    /// rules: after each completed fsync/fdatasync (and the end flush), and after each write
    /// with O_SYNC/O_DSYNC. A power-cut check counts these as acknowledged.
    fn synced(&mut self, _blocks: u64) {}
    /// Asked before the pass and then about once a second, with `progress`; `true` ends
    /// the pass at once with [`PassError::Stopped`].
    fn stop_requested(&mut self) -> bool {
        false
    }
}

/// An observer that does nothing.
pub struct Quiet;

impl Observer for Quiet {}

impl PassSpec {
    /// A pass of `workload` on `path` with every other setting at its default: buffered,
    /// no flush but the end flush, no verify, seed 1, nothing destroyed.
    pub fn new(path: PathBuf, workload: Workload, bs: ByteSize, size: ByteSize) -> PassSpec {
        PassSpec {
            path,
            workload,
            bs,
            size,
            direct: false,
            sync: SyncMode::None,
            sync_every: None,
            end_fsync: true,
            verify: false,
            seed: 1,
            allow_destroy: false,
            label: String::new(),
        }
    }

    /// The flush interval in effect.
    pub fn effective_sync_every(&self) -> u64 {
        self.sync_every.unwrap_or(match self.sync {
            SyncMode::Fsync | SyncMode::Fdatasync => 1,
            _ => 0,
        })
    }

    /// Checks everything that can be checked without opening the target.
    pub fn validate(&self) -> Result<(), PassError> {
        let bs = self.bs.bytes();
        let bad = |m: String| Err(PassError::Invalid(m));
        if !(MIN_BS..=MAX_BS).contains(&bs) {
            return bad(format!("--bs {} is outside 512 to 64M", self.bs));
        }
        if self.size.bytes() < bs || !self.size.bytes().is_multiple_of(bs) {
            return bad(format!(
                "--size {} must be a non-zero multiple of --bs {}",
                self.size, self.bs
            ));
        }
        if self.sync_every.unwrap_or(0) > 0
            && !matches!(self.sync, SyncMode::Fsync | SyncMode::Fdatasync)
        {
            return bad(format!(
                "--sync-every needs --sync fsync or fdatasync to choose the flush call (got --sync {})",
                self.sync.as_str()
            ));
        }
        Ok(())
    }

    fn mode(&self) -> OpenMode {
        OpenMode {
            write: self.workload == Workload::Seqwr,
            direct: self.direct,
            osync: self.sync == SyncMode::Osync,
            odsync: self.sync == SyncMode::Odsync,
        }
    }
}

fn cpu_times() -> (f64, f64) {
    use nix::sys::resource::{getrusage, UsageWho};
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
            (s(u.user_time()), s(u.system_time()))
        }
        Err(_) => (0.0, 0.0),
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

/// Runs one pass, telling `obs` its progress and phases.
pub fn run_pass(spec: &PassSpec, obs: &mut dyn Observer) -> Result<PassRecord, PassError> {
    spec.validate()?;
    if obs.stop_requested() {
        return Err(PassError::Stopped);
    }
    let path_s = spec.path.display().to_string();
    let writing = spec.workload == Workload::Seqwr;
    let created = if writing {
        check_writable(&spec.path, spec.allow_destroy)?;
        Some(Created::new_file(&spec.path)?)
    } else {
        None
    };
    let t = Target::open(&spec.path, spec.mode())?;
    let bs = spec.bs.bytes();
    let size = spec.size.bytes();
    if spec.direct && !bs.is_multiple_of(u64::from(t.dio_offset_align)) {
        return Err(PassError::Misaligned {
            bs: spec.bs,
            align: t.dio_offset_align,
            path: path_s,
        });
    }
    if (t.kind == PathKind::Blockdev || !writing) && t.size_bytes < size {
        let what = if writing { "device" } else { "file or device" };
        return Err(PassError::Invalid(format!(
            "{path_s}: the {what} has {} bytes but the pass needs {size}; lower --size{}",
            t.size_bytes,
            if writing {
                ""
            } else {
                " or run a seqwr pass first"
            }
        )));
    }
    let mut buf = AlignedBuf::new(bs as usize, (t.dio_mem_align as usize).max(4096))?;
    fill_random(buf.as_mut_slice(), spec.seed);
    if let Some(c) = created {
        c.keep();
    }
    let cache_drop = if writing { Vec::new() } else { drop_caches(&t) };
    let sync_every = spec.effective_sync_every();
    let datasync = spec.sync == SyncMode::Fdatasync;
    let osync = matches!(spec.sync, SyncMode::Osync | SyncMode::Odsync);
    let io_err = |op, offset| {
        let path = path_s.clone();
        move |source| PassError::Io {
            op,
            offset,
            path,
            source,
        }
    };

    let mut hist_io = LatencyHist::new();
    let mut hist_flush = LatencyHist::new();
    let mut verify = VerifyResult::default();
    let mut flushes = 0u64;
    let mut flush = |offset: u64| -> Result<(), PassError> {
        let t0 = Instant::now();
        let r = if datasync {
            t.file.sync_data()
        } else {
            t.file.sync_all()
        };
        r.map_err(io_err("flush", offset))?;
        hist_flush.record_ns(nanos(t0.elapsed()));
        flushes += 1;
        Ok(())
    };

    obs.phase(Phase::Start);
    let stat_before = t.stat_source.as_ref().and_then(|s| s.read().ok());
    let (cpu_u0, cpu_s0) = cpu_times();
    let start = Instant::now();
    let mut next_report = Duration::from_secs(1);
    let ops = size / bs;
    for i in 0..ops {
        let off = i * bs;
        let done = if writing {
            if spec.verify {
                fill_block(buf.as_mut_slice(), i, spec.seed);
            }
            let t0 = Instant::now();
            t.file
                .write_all_at(buf.as_slice(), off)
                .map_err(io_err("write", off))?;
            let t1 = Instant::now();
            hist_io.record_ns(nanos(t1 - t0));
            if sync_every > 0 && (i + 1) % sync_every == 0 {
                flush(off)?;
                obs.synced(i + 1);
            } else if osync {
                obs.synced(i + 1);
            }
            t1
        } else {
            let t0 = Instant::now();
            t.file
                .read_exact_at(buf.as_mut_slice(), off)
                .map_err(io_err("read", off))?;
            let t1 = Instant::now();
            hist_io.record_ns(nanos(t1 - t0));
            if spec.verify {
                verify.add(check_block(buf.as_mut_slice(), i, spec.seed));
            }
            t1
        };
        // Progress reuses the request's end time: no extra clock read per request.
        let el = done - start;
        if el >= next_report {
            next_report = el + Duration::from_secs(1);
            obs.progress(off + bs, size, el);
            if obs.stop_requested() {
                return Err(PassError::Stopped);
            }
        }
    }
    if writing && spec.end_fsync {
        flush(size)?;
        obs.synced(ops);
    }
    let seconds = start.elapsed().as_secs_f64();
    let (cpu_u1, cpu_s1) = cpu_times();
    let device = match (&t.stat_source, stat_before) {
        (Some(src), Some(before)) => src.read().ok().map(|after| after.delta(&before, &src.name)),
        _ => None,
    };
    obs.phase(Phase::End);
    let lat = hist_io.percentiles().unwrap_or_default();
    let flush_p = hist_flush.percentiles();
    let secs = seconds.max(1e-9);
    Ok(PassRecord {
        schema_version: SCHEMA_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        label: spec.label.clone(),
        kind: spec.workload,
        path: spec.path.display().to_string(),
        path_kind: t.kind,
        bs_bytes: bs,
        size_bytes: size,
        direct: spec.direct,
        sync: spec.sync,
        sync_every,
        end_fsync: writing && spec.end_fsync,
        verify: spec.verify,
        seed: spec.seed,
        dio_offset_align: t.dio_offset_align,
        dio_mem_align: t.dio_mem_align,
        seconds,
        bytes: size,
        ops,
        mib_per_s: size as f64 / (1u64 << 20) as f64 / secs,
        iops: ops as f64 / secs,
        lat_p50_us: lat.p50_us,
        lat_p99_us: lat.p99_us,
        lat_max_us: lat.max_us,
        lat,
        flush_p50_us: flush_p.map(|p| p.p50_us),
        flush_p99_us: flush_p.map(|p| p.p99_us),
        flush: flush_p,
        agent_flushes: flushes,
        guest_dev_flushes: device.as_ref().and_then(|d| d.flush_ios),
        device_write_cache: t
            .stat_source
            .as_ref()
            .and_then(|s| s.queue_attr("write_cache")),
        device_fua: t
            .stat_source
            .as_ref()
            .and_then(|s| s.queue_attr("fua"))
            .map(|v| v == "1"),
        device,
        cpu_user_s: cpu_u1 - cpu_u0,
        cpu_sys_s: cpu_s1 - cpu_s0,
        cache_drop,
        verify_result: (!writing && spec.verify).then_some(verify),
        hist_io: hist_io.to_base64(),
        hist_flush: hist_flush.to_base64(),
    })
}

/// Whether a verify outcome should fail the run (any block not OK).
pub fn verify_failed(r: &PassRecord) -> bool {
    r.verify_result.is_some_and(|v| !v.passed())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records what a pass acknowledged.
    #[derive(Default)]
    struct Acks(Vec<u64>);

    impl Observer for Acks {
        fn synced(&mut self, blocks: u64) {
            self.0.push(blocks);
        }
    }

    #[test]
    fn synced_reports_each_completed_sync() {
        let dir = tempfile::tempdir().unwrap();
        let spec = |sync, every, end| PassSpec {
            sync,
            sync_every: every,
            end_fsync: end,
            ..PassSpec::new(
                dir.path().join(format!("f-{}", sync.as_str())),
                Workload::Seqwr,
                ByteSize(4096),
                ByteSize(5 * 4096),
            )
        };
        for (s, want) in [
            (spec(SyncMode::Fsync, Some(2), true), vec![2, 4, 5]),
            (spec(SyncMode::Fdatasync, None, false), vec![1, 2, 3, 4, 5]),
            (spec(SyncMode::Osync, None, false), vec![1, 2, 3, 4, 5]),
            (spec(SyncMode::None, None, false), vec![]),
        ] {
            let mut a = Acks::default();
            run_pass(&s, &mut a).unwrap();
            assert_eq!(a.0, want, "{:?} every {:?}", s.sync, s.sync_every);
        }
    }
}
