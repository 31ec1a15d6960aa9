//! One measured pass: sequential, random or mixed reads and writes over a file or block
//! device, at a queue depth, by one or more jobs, for a size or a time, with the flush
//! controls fio and sysbench users know.
//!
//! Each job is a thread on its own region of the target with its own engine
//! ([`crate::engine`]), buffers and histograms; this thread watches them (progress, the
//! observer's stop) and merges what they measured. The hot loop does no allocation and no
//! formatting: buffers, slots and the completion list are made before the clock starts;
//! per request a histogram increment, and a clock read per batch submitted and reaped.

use crate::aligned::{AlignError, AlignedBuf};
use crate::cache::drop_caches;
use crate::engine::{self, IoEngine};
use crate::hist::LatencyHist;
use crate::offsets::OffsetGen;
use crate::record::{PassRecord, VerifyResult, SCHEMA_VERSION};
use crate::series;
use crate::size::ByteSize;
use crate::target::{check_writable, Created, OpenMode, PathKind, Refusal, Target, TargetError};
use crate::verify::fill_random;
use crate::worker::{nanos, Acks, End, Job, JobOut, Plan};
use serde::{Deserialize, Serialize};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Smallest block size.
pub const MIN_BS: u64 = 512;
/// Largest block size.
pub const MAX_BS: u64 = 64 << 20;

/// What a pass does: fio's `rw=write|read|randwrite|randread|randrw`, with sysbench's
/// names for the sequential two.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Workload {
    /// Sequential write.
    Seqwr,
    /// Sequential read.
    Seqrd,
    /// Random write.
    Randwrite,
    /// Random read.
    Randread,
    /// Random reads and writes, `rwmixread` percent of them reads.
    Randrw,
}

impl Workload {
    /// The name used in records and scenarios.
    pub fn as_str(self) -> &'static str {
        match self {
            Workload::Seqwr => "seqwr",
            Workload::Seqrd => "seqrd",
            Workload::Randwrite => "randwrite",
            Workload::Randread => "randread",
            Workload::Randrw => "randrw",
        }
    }

    /// Whether the pass writes (and so may create, and needs the destroy check).
    pub fn writes(self) -> bool {
        matches!(
            self,
            Workload::Seqwr | Workload::Randwrite | Workload::Randrw
        )
    }

    /// Whether the pass reads (and so needs data already there).
    pub fn reads(self) -> bool {
        !matches!(self, Workload::Seqwr | Workload::Randwrite)
    }

    /// Whether offsets are random.
    pub fn random(self) -> bool {
        matches!(
            self,
            Workload::Randwrite | Workload::Randread | Workload::Randrw
        )
    }

    /// Percent of requests that read, given `rwmixread` (used by `randrw` only, default 50).
    pub fn read_pct(self, rwmixread: Option<u8>) -> u8 {
        match self {
            Workload::Seqrd | Workload::Randread => 100,
            Workload::Seqwr | Workload::Randwrite => 0,
            Workload::Randrw => rwmixread.unwrap_or(50),
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

fn default_one() -> u32 {
    1
}

fn default_log_ms() -> u64 {
    1000
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
    /// Percent of randrw requests that read, 0 to 100 (default 50; fio's `rwmixread`).
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
    #[serde(default)]
    pub rwmixread: Option<u8>,
    /// Requests in flight per job, 1 to 1024 (fio's `iodepth`).
    #[arg(long, default_value_t = 1)]
    #[serde(default = "default_one")]
    pub iodepth: u32,
    /// auto (psync at iodepth 1, else io_uring, else libaio), psync, io_uring or libaio.
    #[arg(long, value_enum, default_value_t = IoEngine::Auto)]
    #[serde(default)]
    pub ioengine: IoEngine,
    /// Jobs (threads), each on its own equal region of the target, 1 to 64.
    #[arg(long, default_value_t = 1)]
    #[serde(default = "default_one")]
    pub numjobs: u32,
    /// Seed of the random offsets and of randrw's read/write choice (fio's `randseed`).
    #[arg(long, default_value_t = 1)]
    #[serde(default = "default_seed")]
    pub randseed: u64,
    /// Draw random blocks independently (some repeat, some are missed) instead of every
    /// block once per pass (fio's `norandommap`).
    #[arg(long)]
    #[serde(default)]
    pub norandommap: bool,
    /// Run for this many seconds, wrapping over the region, instead of moving --size once.
    #[arg(long, value_name = "SECONDS")]
    #[serde(default)]
    pub runtime: Option<f64>,
    /// Run this many seconds first and leave them out of the results (fio's `ramp_time`).
    #[arg(long, value_name = "SECONDS")]
    #[serde(default)]
    pub ramp_time: Option<f64>,
    /// Length of one time-series interval, milliseconds (fio's `log_avg_msec`).
    #[arg(long, default_value_t = 1000)]
    #[serde(default = "default_log_ms")]
    pub log_avg_msec: u64,
    /// Fresh content for every write, of which about this percent compresses away: the
    /// end of every 512-byte chunk is zeros (fio's `buffer_compress_percentage` with its
    /// default `buffer_compress_chunk`), 0 to 100; 0 is incompressible. Without it every
    /// write of a job sends the same random buffer, which compresses wherever several
    /// blocks share a ZFS record (a 4K write into a 16K volblocksize).
    #[arg(long, value_name = "PCT", value_parser = clap::value_parser!(u8).range(0..=100))]
    #[serde(default)]
    pub buffer_compress_percentage: Option<u8>,
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
    /// The I/O engine could not be set up.
    #[error("cannot set up the {engine} engine at --iodepth {iodepth} for {path}; try --ioengine libaio or psync")]
    Engine {
        /// The engine asked for.
        engine: &'static str,
        /// The queue depth.
        iodepth: u32,
        /// The path.
        path: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
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
    /// with O_SYNC/O_DSYNC. A power-cut check counts these as acknowledged. Only for a
    /// sequential write pass with one job (where what is durable is a prefix), and only
    /// when [`Observer::wants_synced`] says so; the calls come from the thread that runs
    /// the pass, in order, at most one poll interval (20 ms) after the sync completed.
    fn synced(&mut self, _blocks: u64) {}
    /// Whether [`Observer::synced`] is wanted (it costs a message per sync, or per write
    /// with O_SYNC).
    fn wants_synced(&self) -> bool {
        false
    }
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
            rwmixread: None,
            iodepth: 1,
            ioengine: IoEngine::Auto,
            numjobs: 1,
            randseed: 1,
            norandommap: false,
            runtime: None,
            ramp_time: None,
            log_avg_msec: 1000,
            buffer_compress_percentage: None,
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
        let w = self.workload.as_str();
        if !(1..=1024).contains(&self.iodepth) {
            return bad(format!("--iodepth {} is outside 1 to 1024", self.iodepth));
        }
        if self.ioengine == IoEngine::Psync && self.iodepth > 1 {
            return bad(format!(
                "--ioengine psync has one request in flight; use io_uring or libaio for --iodepth {}",
                self.iodepth
            ));
        }
        if !(1..=64).contains(&self.numjobs) {
            return bad(format!("--numjobs {} is outside 1 to 64", self.numjobs));
        }
        if self.size.bytes() / bs < u64::from(self.numjobs) {
            return bad(format!(
                "--size {} holds fewer blocks of --bs {} than --numjobs {}: each job needs a region",
                self.size, self.bs, self.numjobs
            ));
        }
        if self.rwmixread.is_some() && self.workload != Workload::Randrw {
            return bad(format!("--rwmixread applies to randrw, not {w}"));
        }
        match self.buffer_compress_percentage {
            Some(p) if p > 100 => {
                return bad(format!(
                    "--buffer-compress-percentage {p} is outside 0 to 100"
                ))
            }
            Some(_) if !self.workload.writes() => {
                return bad(format!(
                    "--buffer-compress-percentage applies to workloads that write, not {w}"
                ))
            }
            _ => {}
        }
        if self.norandommap && !self.workload.random() {
            return bad(format!(
                "--norandommap applies to random workloads, not {w}"
            ));
        }
        if self.verify && (self.workload == Workload::Randrw || self.norandommap) {
            return bad(format!(
                "--verify needs every block written once before it is read: not with randrw or --norandommap (got {w})"
            ));
        }
        for (name, v, min) in [
            ("runtime", self.runtime, 1e-3),
            ("ramp-time", self.ramp_time, 0.0),
        ] {
            if let Some(v) = v {
                if !v.is_finite() || v < min || v > 1e6 {
                    return bad(format!(
                        "--{name} {v} is not a number of seconds from {min} to 1e6"
                    ));
                }
            }
        }
        if !(1..=3_600_000).contains(&self.log_avg_msec) {
            return bad(format!(
                "--log-avg-msec {} is outside 1 to 3600000",
                self.log_avg_msec
            ));
        }
        Ok(())
    }

    fn mode(&self) -> OpenMode {
        OpenMode {
            write: self.workload.writes(),
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

/// Opens a gate once: jobs wait at it for the measured start, which the pass's thread
/// sets after the ramp, the cache drop and the observer's start phase.
struct Gate {
    start: Mutex<Option<Instant>>,
    cv: Condvar,
}

impl Gate {
    fn open(&self, at: Instant) {
        *self.start.lock().unwrap_or_else(|e| e.into_inner()) = Some(at);
        self.cv.notify_all();
    }

    fn wait(&self) -> Instant {
        let mut g = self.start.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(t) = *g {
                return t;
            }
            g = self.cv.wait(g).unwrap_or_else(|e| e.into_inner());
        }
    }
}

fn secs(s: Option<f64>) -> Option<Duration> {
    s.filter(|v| *v > 0.0).map(Duration::from_secs_f64)
}

/// Runs one pass, telling `obs` its progress and phases.
pub fn run_pass(spec: &PassSpec, obs: &mut dyn Observer) -> Result<PassRecord, PassError> {
    spec.validate()?;
    if obs.stop_requested() {
        return Err(PassError::Stopped);
    }
    let path_s = spec.path.display().to_string();
    let writing = spec.workload.writes();
    let created = if writing {
        check_writable(&spec.path, spec.allow_destroy)?;
        Some(Created::new_file(&spec.path)?)
    } else {
        None
    };
    let t = Target::open(&spec.path, spec.mode())?;
    check_fits(spec, &t, &path_s)?;
    let shape = Shape::of(spec);
    let stop = AtomicBool::new(false);
    // The acknowledged prefix, when the observer wants it and what is durable is a prefix.
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<u64>();
    let acks = (obs.wants_synced() && spec.workload == Workload::Seqwr && shape.jobs == 1)
        .then_some(Acks {
            tx: ack_tx,
            // With more than one write in flight, completions are not in block order: a
            // completed write proves no prefix, so only the drained flushes count there.
            each_write: matches!(spec.sync, SyncMode::Osync | SyncMode::Odsync) && shape.qd == 1,
        });
    let plan = Plan {
        file: &t.file,
        path: &path_s,
        bs: shape.bs,
        qd: shape.qd,
        sync_every: spec.effective_sync_every(),
        datasync: spec.sync == SyncMode::Fdatasync,
        verify: spec.verify,
        seed: spec.seed,
        compress: spec.buffer_compress_percentage,
        stop: &stop,
        acks,
    };
    let done: Vec<AtomicU64> = (0..shape.jobs).map(|_| AtomicU64::new(0)).collect();
    let jobs = open_jobs(spec, &t, &plan, &shape, &done)?;
    let engine_name = jobs[0].engine_name();
    if let Some(c) = created {
        c.keep();
    }
    let cache_drop = if writing {
        Vec::new()
    } else {
        drop_caches(&t, !spec.direct)
    };
    let shared = Shared {
        gate: Gate {
            start: Mutex::new(None),
            cv: Condvar::new(),
        },
        ramped: AtomicUsize::new(0),
        stop: &stop,
        done: &done,
    };
    let driven = drive(spec, &t, &shape, jobs, &shared, &ack_rx, obs)?;
    let mut m = Merged::of(driven.outs, driven.start)?;
    if writing && spec.end_fsync {
        end_fsync(&t, &plan, &mut m, driven.start, &path_s, shape.size)?;
        if plan.acks.is_some() {
            obs.synced(m.writes);
        }
    }
    let seconds = (m.ended - driven.start).as_secs_f64();
    let (cpu_u1, cpu_s1) = cpu_times();
    let device = match (&t.stat_source, driven.stat_before) {
        (Some(src), Some(before)) => src.read().ok().map(|after| after.delta(&before, &src.name)),
        _ => None,
    };
    obs.phase(Phase::End);
    let run = Ran {
        seconds,
        cpu: (cpu_u1 - driven.cpu0.0, cpu_s1 - driven.cpu0.1),
        device,
        cache_drop,
        engine: engine_name,
        sync_every: plan.sync_every,
    };
    Ok(record(spec, &t, &shape, m, run))
}

/// The request size, the pass's size and how it is split over jobs and queue slots.
struct Shape {
    bs: u64,
    size: u64,
    qd: usize,
    jobs: u64,
    blocks: u64,
    per_job: u64,
}

impl Shape {
    fn of(spec: &PassSpec) -> Shape {
        let (bs, size) = (spec.bs.bytes(), spec.size.bytes());
        let jobs = u64::from(spec.numjobs);
        Shape {
            bs,
            size,
            qd: spec.iodepth as usize,
            jobs,
            blocks: size / bs,
            per_job: size / bs / jobs,
        }
    }

    /// Blocks of job `j`: an equal share, the last job taking the remainder.
    fn region(&self, j: u64) -> u64 {
        if j == self.jobs - 1 {
            self.blocks - self.per_job * (self.jobs - 1)
        } else {
            self.per_job
        }
    }
}

/// Refuses a pass the target cannot take: requests not aligned for O_DIRECT, or a device
/// or file smaller than the pass.
fn check_fits(spec: &PassSpec, t: &Target, path_s: &str) -> Result<(), PassError> {
    let (bs, size) = (spec.bs.bytes(), spec.size.bytes());
    if spec.direct && !bs.is_multiple_of(u64::from(t.dio_offset_align)) {
        return Err(PassError::Misaligned {
            bs: spec.bs,
            align: t.dio_offset_align,
            path: path_s.to_string(),
        });
    }
    if (t.kind == PathKind::Blockdev || spec.workload.reads()) && t.size_bytes < size {
        let what = if spec.workload.writes() {
            "device"
        } else {
            "file or device"
        };
        return Err(PassError::Invalid(format!(
            "{path_s}: the {what} has {} bytes but the pass needs {size}; lower --size{}",
            t.size_bytes,
            if t.kind == PathKind::Blockdev && !spec.workload.reads() {
                ""
            } else {
                " or run a seqwr pass first"
            }
        )));
    }
    Ok(())
}

/// One job per `numjobs`, each with its buffers (random data, `qd + 1` requests' worth)
/// and its engine, on its own region of the target.
fn open_jobs<'a>(
    spec: &PassSpec,
    t: &Target,
    plan: &'a Plan<'a>,
    shape: &Shape,
    done: &'a [AtomicU64],
) -> Result<Vec<Job<'a>>, PassError> {
    let mut jobs = Vec::with_capacity(done.len());
    for (j, done) in (0..shape.jobs).zip(done) {
        let len = shape.bs as usize * (shape.qd + 1);
        let mut buf = AlignedBuf::new(len, (t.dio_mem_align as usize).max(4096))?;
        for b in buf.as_mut_slice().chunks_mut(shape.bs as usize) {
            fill_random(b, spec.seed);
        }
        let engine =
            engine::open(spec.ioengine, t.file.as_raw_fd(), spec.iodepth).map_err(|source| {
                PassError::Engine {
                    engine: match spec.ioengine {
                        IoEngine::Libaio => "libaio",
                        IoEngine::Psync => "psync",
                        IoEngine::IoUring => "io_uring",
                        IoEngine::Auto => "auto (io_uring, else libaio)",
                    },
                    iodepth: spec.iodepth,
                    path: plan.path.to_string(),
                    source,
                }
            })?;
        jobs.push(Job::new(plan, engine, buf, j * shape.per_job, done));
    }
    Ok(jobs)
}

/// What the pass's thread and its jobs share while they run.
struct Shared<'a> {
    gate: Gate,
    /// Jobs done with their ramp.
    ramped: AtomicUsize,
    stop: &'a AtomicBool,
    /// Requests completed, per job.
    done: &'a [AtomicU64],
}

/// The jobs' results and what was read when the measured part began.
struct Driven {
    outs: Vec<Result<Ended, PassError>>,
    start: Instant,
    stat_before: Option<crate::devstat::DevStat>,
    cpu0: (f64, f64),
}

/// Runs the jobs on threads of their own: each ramps (if asked), waits at the gate, then
/// runs its region or its time; meanwhile this thread answers a stop, reports progress
/// once a second and passes acknowledgements on.
fn drive(
    spec: &PassSpec,
    t: &Target,
    shape: &Shape,
    jobs: Vec<Job<'_>>,
    sh: &Shared<'_>,
    ack_rx: &std::sync::mpsc::Receiver<u64>,
    obs: &mut dyn Observer,
) -> Result<Driven, PassError> {
    let interval = Duration::from_millis(spec.log_avg_msec);
    let runtime = secs(spec.runtime);
    let expected = runtime.map_or(64, |r| (r.as_nanos() / interval.as_nanos()) as usize + 2);
    let mut stopped = false;
    // Each job says when it is done (also when it panics: the signal is sent on drop), so
    // that this thread wakes at once and counts the jobs done — an end fsync then starts
    // without delay; it still wakes every `poll` for progress, acks and a stop.
    let (ended_tx, ended_rx) = std::sync::mpsc::channel::<()>();
    let jobs_n = jobs.len();
    let (outs, (stat_before, cpu0, start)) = std::thread::scope(|sc| {
        let handles: Vec<_> = jobs
            .into_iter()
            .enumerate()
            .map(|(j, job)| {
                let j = j as u64;
                let signal = EndSignal(ended_tx.clone());
                sc.spawn(move || {
                    let _signal = signal;
                    job_thread(spec, job, shape.region(j), j, sh, expected)
                })
            })
            .collect();
        let poll = Duration::from_millis(20);
        // The ramp: wait for every job, still answering a stop.
        let ramp_from = Instant::now();
        let mut next = Duration::from_secs(1);
        while sh.ramped.load(Ordering::Acquire) < sh.done.len() {
            std::thread::sleep(poll);
            if ramp_from.elapsed() >= next {
                next += Duration::from_secs(1);
                if obs.stop_requested() {
                    sh.stop.store(true, Ordering::Relaxed);
                    stopped = true;
                }
            }
        }
        obs.phase(Phase::Start);
        let before = (
            t.stat_source.as_ref().and_then(|s| s.read().ok()),
            cpu_times(),
            Instant::now(),
        );
        let start = before.2;
        sh.gate.open(start);
        let mut next = Duration::from_secs(1);
        let mut ended = 0;
        while ended < jobs_n {
            if ended_rx.recv_timeout(poll).is_ok() {
                ended += 1;
            }
            ack_rx.try_iter().for_each(|n| obs.synced(n));
            let el = start.elapsed();
            if el >= next {
                next = el + Duration::from_secs(1);
                let d: u64 = sh.done.iter().map(|a| a.load(Ordering::Relaxed)).sum();
                let total = match runtime {
                    Some(r) => (d as f64 * r.as_secs_f64() / el.as_secs_f64().max(1e-9)) as u64,
                    None => shape.size,
                };
                obs.progress(d, total.max(d), el);
                if obs.stop_requested() {
                    sh.stop.store(true, Ordering::Relaxed);
                    stopped = true;
                }
            }
        }
        let joined = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        ack_rx.try_iter().for_each(|n| obs.synced(n));
        (joined, before)
    });
    if stopped {
        return Err(PassError::Stopped);
    }
    Ok(Driven {
        outs,
        start,
        stat_before,
        cpu0,
    })
}

/// One job's thread: the ramp (results discarded), the gate, then the measured run.
fn job_thread(
    spec: &PassSpec,
    mut job: Job<'_>,
    region: u64,
    j: u64,
    sh: &Shared<'_>,
    expected: usize,
) -> Result<Ended, PassError> {
    let interval = Duration::from_millis(spec.log_avg_msec);
    let random = spec.workload.random();
    let read_pct = spec.workload.read_pct(spec.rwmixread);
    let job_seed = spec.randseed.wrapping_add(j);
    let gen = || OffsetGen::new(region, random, spec.norandommap, job_seed, read_pct);
    let ramp_result = match secs(spec.ramp_time) {
        Some(r) => {
            let t0 = Instant::now();
            let mut scratch = JobOut::new(interval, 1);
            job.run(&mut gen(), End::At(t0 + r), t0, &mut scratch)
        }
        None => Ok(()),
    };
    if ramp_result.is_err() {
        sh.stop.store(true, Ordering::Relaxed);
    }
    sh.ramped.fetch_add(1, Ordering::Release);
    let start = sh.gate.wait();
    ramp_result?;
    let mut out = JobOut::new(interval, expected);
    if sh.stop.load(Ordering::Relaxed) {
        return Ok(Ended {
            out,
            at: Instant::now(),
        });
    }
    let end = match secs(spec.runtime) {
        Some(r) => End::At(start + r),
        None => End::Requests(region),
    };
    let r = job.run(&mut gen(), end, start, &mut out);
    let at = Instant::now();
    if r.is_err() {
        sh.stop.store(true, Ordering::Relaxed);
    }
    r.map(|()| Ended { out, at })
}

/// Tells the pass's thread that a job ended, when dropped: at the end of the job's thread,
/// or while it unwinds from a panic.
struct EndSignal(std::sync::mpsc::Sender<()>);

impl Drop for EndSignal {
    fn drop(&mut self) {
        // The receiver lives until every job is joined: the send cannot fail.
        let _ = self.0.send(());
    }
}

/// A job's results and when its last request completed: the pass's time ends at the last
/// job's end (or at the end fsync), not when the driving thread next looked — that look,
/// once every 20 ms, made a 60 ms pass read up to a third slower, in 20 ms steps.
struct Ended {
    out: JobOut,
    at: Instant,
}

/// Every job's results added up; the series kept per job until merged.
struct Merged {
    hist_io: LatencyHist,
    hist_flush: LatencyHist,
    verify: VerifyResult,
    read_bytes: u64,
    write_bytes: u64,
    reads: u64,
    writes: u64,
    flushes: u64,
    recorders: Vec<series::SeriesRecorder>,
    /// When the last job's last request completed.
    ended: Instant,
}

impl Merged {
    /// The jobs' results, or the first job's error.
    fn of(outs: Vec<Result<Ended, PassError>>, start: Instant) -> Result<Merged, PassError> {
        let mut m = Merged {
            hist_io: LatencyHist::new(),
            hist_flush: LatencyHist::new(),
            verify: VerifyResult::default(),
            read_bytes: 0,
            write_bytes: 0,
            reads: 0,
            writes: 0,
            flushes: 0,
            recorders: Vec::with_capacity(outs.len()),
            ended: start,
        };
        let outs: Vec<Ended> = outs.into_iter().collect::<Result<_, _>>()?;
        for Ended { out: o, at } in outs {
            m.ended = m.ended.max(at);
            m.hist_io.add(&o.hist_io);
            m.hist_flush.add(&o.hist_flush);
            m.verify.merge(&o.verify);
            m.read_bytes += o.read_bytes;
            m.write_bytes += o.write_bytes;
            m.reads += o.reads;
            m.writes += o.writes;
            m.flushes += o.flushes;
            m.recorders.push(o.series);
        }
        Ok(m)
    }
}

/// The flush at the end of a writing pass (`--end-fsync`), timed and counted like the
/// others and marked in the first job's series.
fn end_fsync(
    t: &Target,
    plan: &Plan<'_>,
    m: &mut Merged,
    start: Instant,
    path_s: &str,
    size: u64,
) -> Result<(), PassError> {
    let t0 = Instant::now();
    let r = if plan.datasync {
        t.file.sync_data()
    } else {
        t.file.sync_all()
    };
    r.map_err(|source| PassError::Io {
        op: "flush",
        offset: size,
        path: path_s.to_string(),
        source,
    })?;
    let t1 = Instant::now();
    m.ended = t1;
    m.hist_flush.record_ns(nanos(t1 - t0));
    if let Some(r0) = m.recorders.first_mut() {
        r0.flush(t1 - start);
    }
    m.flushes += 1;
    Ok(())
}

/// What the pass's run gave besides the jobs' own numbers.
struct Ran {
    seconds: f64,
    /// User and system CPU seconds of the measured part.
    cpu: (f64, f64),
    device: Option<crate::devstat::DevDelta>,
    cache_drop: Vec<crate::record::CacheDrop>,
    engine: &'static str,
    sync_every: u64,
}

/// The pass's record.
fn record(spec: &PassSpec, t: &Target, shape: &Shape, m: Merged, run: Ran) -> PassRecord {
    let writing = spec.workload.writes();
    let lat = m.hist_io.percentiles().unwrap_or_default();
    let flush_p = m.hist_flush.percentiles();
    let secs = run.seconds.max(1e-9);
    let bytes = m.read_bytes + m.write_bytes;
    let ops = m.reads + m.writes;
    let queue_attr = |name| t.stat_source.as_ref().and_then(|s| s.queue_attr(name));
    PassRecord {
        schema_version: SCHEMA_VERSION,
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        label: spec.label.clone(),
        kind: spec.workload,
        path: spec.path.display().to_string(),
        path_kind: t.kind,
        bs_bytes: shape.bs,
        size_bytes: shape.size,
        direct: spec.direct,
        sync: spec.sync,
        sync_every: run.sync_every,
        end_fsync: writing && spec.end_fsync,
        verify: spec.verify,
        seed: spec.seed,
        dio_offset_align: t.dio_offset_align,
        dio_mem_align: t.dio_mem_align,
        seconds: run.seconds,
        bytes,
        ops,
        mib_per_s: bytes as f64 / (1u64 << 20) as f64 / secs,
        iops: ops as f64 / secs,
        lat_p50_us: lat.p50_us,
        lat_p99_us: lat.p99_us,
        lat_max_us: lat.max_us,
        lat,
        flush_p50_us: flush_p.map(|p| p.p50_us),
        flush_p99_us: flush_p.map(|p| p.p99_us),
        flush: flush_p,
        agent_flushes: m.flushes,
        guest_dev_flushes: run.device.as_ref().and_then(|d| d.flush_ios),
        device_write_cache: queue_attr("write_cache"),
        device_fua: queue_attr("fua").map(|v| v == "1"),
        device: run.device,
        cpu_user_s: run.cpu.0,
        cpu_sys_s: run.cpu.1,
        cache_drop: run.cache_drop,
        verify_result: (spec.workload.reads() && spec.verify).then_some(m.verify),
        hist_io: m.hist_io.to_base64(),
        hist_flush: m.hist_flush.to_base64(),
        rw_mix_read: spec.workload.read_pct(spec.rwmixread),
        iodepth: spec.iodepth,
        numjobs: spec.numjobs,
        engine: run.engine.to_string(),
        runtime_s: spec.runtime,
        ramp_time_s: spec.ramp_time,
        randseed: spec.workload.random().then_some(spec.randseed),
        norandommap: spec.norandommap,
        buffer_compress_percentage: spec.buffer_compress_percentage,
        read_bytes: m.read_bytes,
        write_bytes: m.write_bytes,
        series: Some(series::merge(m.recorders, run.seconds)),
    }
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
    struct Acked(Vec<u64>);

    impl Observer for Acked {
        fn synced(&mut self, blocks: u64) {
            self.0.push(blocks);
        }
        fn wants_synced(&self) -> bool {
            true
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
            let mut a = Acked::default();
            run_pass(&s, &mut a).unwrap();
            assert_eq!(a.0, want, "{:?} every {:?}", s.sync, s.sync_every);
        }
    }
}
