//! Scenario files: TOML that users copy and edit, parsed and then validated completely
//! (types, sizes, alignment, names, paths, pools) into a [`Plan`] before anything is
//! created. Every error names the file, line and column and what to write instead.

use crate::names::{check_dataset, check_device, check_name};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use toml::Spanned;
use zvbench_agent::engine::IoEngine;
use zvbench_agent::pass::{PassSpec, SyncMode, Workload};
use zvbench_agent::ByteSize;

/// A scenario file as written. Unknown keys are errors (a typo must not silently fall back
/// to a default).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioFile {
    /// `[run]`.
    #[serde(default)]
    pub run: RunSection,
    /// `[guest]`: defaults for every guest target.
    #[serde(default)]
    pub guest: GuestKeys,
    /// `[[target]]`.
    pub target: Vec<TargetDef>,
    /// `[[workload]]`.
    pub workload: Vec<WorkloadDef>,
}

/// `[run]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Each (target, workload) pass is repeated this many times (default 3), or "auto":
    /// until the 95% interval of every workload's median MiB/s is within
    /// ±[`AUTO_HALF_WIDTH_PCT`], at least [`AUTO_MIN_REPS`] and at most `max_repetitions`
    /// times, and no more repetitions once `max_auto_s` have passed on the target.
    #[serde(default)]
    pub repetitions: Repetitions,
    /// Most repetitions of "auto" (default 10).
    #[serde(default = "d_max_reps")]
    pub max_repetitions: u32,
    /// Seconds after which "auto" starts no more repetitions of a target (default 1800).
    #[serde(default = "d_max_auto_s")]
    pub max_auto_s: u64,
    /// Size of every provisioned disk unless a target overrides it (default 1G).
    #[serde(default = "d_disk")]
    pub disk_size: ByteSize,
    /// Longest a guest may run before it is killed, seconds (default 900).
    #[serde(default = "d_timeout")]
    pub guest_timeout_s: u64,
}

/// `[run] repetitions`: a count or "auto" (any other word is refused by [`parse`]).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Repetitions {
    /// A fixed count.
    Count(u32),
    /// "auto": repeat until the median is known to ±[`AUTO_HALF_WIDTH_PCT`].
    Word(String),
}

impl Default for Repetitions {
    fn default() -> Self {
        Repetitions::Count(3)
    }
}

/// "auto" stops when the 95% bootstrap interval of each workload's median MiB/s lies within
/// ±3.5% of it: a tighter bar than the Phoronix Test Suite's (standard deviation under 3.5%
/// of the mean), since an interval of the median is narrower than the spread only by √n.
pub const AUTO_HALF_WIDTH_PCT: f64 = 3.5;

/// "auto" runs at least this many repetitions (an interval from fewer means nothing).
pub const AUTO_MIN_REPS: u32 = 3;

/// Adaptive repetitions of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AutoReps {
    /// No new repetition of a target after this many seconds on it.
    pub max_s: u64,
}

fn d_max_reps() -> u32 {
    10
}
fn d_max_auto_s() -> u64 {
    1800
}
fn d_disk() -> ByteSize {
    ByteSize(1 << 30)
}
fn d_timeout() -> u64 {
    900
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            repetitions: Repetitions::default(),
            max_repetitions: d_max_reps(),
            max_auto_s: d_max_auto_s(),
            disk_size: d_disk(),
            guest_timeout_s: d_timeout(),
        }
    }
}

/// Guest settings; each key optional so that a target can override any of them.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GuestKeys {
    /// qemu | virtualbox.
    pub hypervisor: Option<Hypervisor>,
    /// Guest memory (default 512M).
    pub memory: Option<ByteSize>,
    /// Guest CPUs (default 1).
    pub cpus: Option<u32>,
    /// virtio | sata | nvme | scsi (default virtio).
    pub bus: Option<Bus>,
    /// QEMU cache mode (default none).
    pub cache: Option<CacheMode>,
    /// QEMU aio (default threads).
    pub aio: Option<Aio>,
    /// QEMU: boot the kernel directly (default) or from the guest ISO.
    pub boot: Option<Boot>,
    /// QEMU: cap the disk at this many bytes per second, reads and writes together
    /// (`throttling.bps-total`), to emulate a slower disk or inject a known slowdown
    /// (scripts/bench-gate). Default: no cap.
    pub throttle_bps: Option<ByteSize>,
    /// VirtualBox: the controller's host I/O cache (default off, VirtualBox's for SATA/NVMe).
    pub host_io_cache: Option<bool>,
    /// VirtualBox: `IgnoreFlush` extradata (applies with the host I/O cache on; its default
    /// there is true).
    pub ignore_flush: Option<bool>,
    /// VirtualBox: `IgnoreFlushAsync` extradata (applies with the host I/O cache off; its
    /// default there is false).
    pub ignore_flush_async: Option<bool>,
}

/// Which hypervisor runs a guest target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// QEMU (KVM when it works, else TCG).
    Qemu,
    /// VirtualBox through VBoxManage.
    Virtualbox,
}

/// The virtual disk controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Bus {
    /// virtio-blk.
    Virtio,
    /// AHCI (VirtualBox's IntelAhci).
    Sata,
    /// NVMe.
    Nvme,
    /// virtio-scsi.
    Scsi,
}

/// How a QEMU guest boots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Boot {
    /// `-kernel`/`-initrd`: fastest.
    #[default]
    Kernel,
    /// The guest ISO on a CD drive, as VirtualBox boots it.
    Iso,
}

/// VirtualBox's flush settings for the benchmark disk, as the scenario gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct VboxFlush {
    /// The controller's host I/O cache.
    pub host_io_cache: bool,
    /// `IgnoreFlush`, if set.
    pub ignore_flush: Option<bool>,
    /// `IgnoreFlushAsync`, if set.
    pub ignore_flush_async: Option<bool>,
}

impl VboxFlush {
    /// Whether VirtualBox drops the guest's flushes: with the host I/O cache on, the
    /// synchronous path and `IgnoreFlush` (default true) decide; with it off, the
    /// asynchronous path and `IgnoreFlushAsync` (default false).
    pub fn ignored(&self) -> bool {
        if self.host_io_cache {
            self.ignore_flush.unwrap_or(true)
        } else {
            self.ignore_flush_async.unwrap_or(false)
        }
    }

    /// The `cache` column of a result row: the settings that decide flushing.
    pub fn describe(&self) -> String {
        format!(
            "hostiocache={} flushes={}",
            if self.host_io_cache { "on" } else { "off" },
            if self.ignored() { "ignored" } else { "passed" }
        )
    }
}

/// QEMU's cache modes (`qemu-options.hx`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheMode {
    /// O_DIRECT on the host, flushes passed.
    None,
    /// Host page cache, flushes passed.
    Writeback,
    /// Every write flushed.
    Writethrough,
    /// O_DIRECT and every write flushed.
    Directsync,
    /// Guest flushes ignored.
    Unsafe,
}

/// QEMU's aio engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aio {
    /// Thread pool.
    Threads,
    /// Linux native AIO (needs O_DIRECT: cache none or directsync).
    Native,
    /// io_uring.
    IoUring,
}

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

/// `[[target]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetDef {
    /// Unique name.
    pub name: Spanned<String>,
    /// What backs it.
    pub storage: StorageKind,
    /// Directory for host files, loop backing files and images.
    pub dir: Option<PathBuf>,
    /// Image format (image targets; default vdi).
    pub format: Option<ImageFormat>,
    /// Image allocation (image targets; default dynamic).
    pub variant: Option<Variant>,
    /// Parent dataset of the zvol.
    pub parent: Option<String>,
    /// zvol volblocksize.
    pub volblocksize: Option<ByteSize>,
    /// zvol compression.
    pub compression: Option<String>,
    /// zvol sync.
    pub sync: Option<String>,
    /// zvol logbias.
    pub logbias: Option<String>,
    /// zvol primarycache.
    pub primarycache: Option<String>,
    /// Encrypt the zvol: it is created under an encrypted parent dataset zvbench makes
    /// for it (`<parent>/<run>-<target>-enc`, encryption=on, keyformat=raw, the key read
    /// from `keyfile`, never mounted) and inherits its encryption (needs `keyfile`).
    pub encryption: Option<bool>,
    /// Raw 32-byte key file for an encrypted zvol.
    pub keyfile: Option<PathBuf>,
    /// Run the agent on the host, on the zvol's device, with no guest: the host baseline
    /// on a zvol (default false).
    pub on_host: Option<bool>,
    /// A dataset on another pool: after the last repetition the zvol is sent there
    /// (`zfs send | zfs receive`, timed, the copy destroyed).
    pub send_to: Option<String>,
    /// The device of a blockdev target.
    pub device: Option<PathBuf>,
    /// Overrides `[run] disk_size`.
    pub disk_size: Option<ByteSize>,
    /// Overrides of `[guest]`.
    pub hypervisor: Option<Hypervisor>,
    /// Override.
    pub memory: Option<ByteSize>,
    /// Override.
    pub cpus: Option<u32>,
    /// Override.
    pub bus: Option<Bus>,
    /// Override.
    pub cache: Option<CacheMode>,
    /// Override.
    pub aio: Option<Aio>,
    /// Override.
    pub boot: Option<Boot>,
    /// Override.
    pub throttle_bps: Option<ByteSize>,
    /// Override.
    pub host_io_cache: Option<bool>,
    /// Override.
    pub ignore_flush: Option<bool>,
    /// Override.
    pub ignore_flush_async: Option<bool>,
}

/// `[[workload]]` as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadDef {
    /// Unique name.
    pub name: Spanned<String>,
    /// seqwr | seqrd | randwrite | randread | randrw.
    pub kind: Workload,
    /// Block size.
    pub bs: ByteSize,
    /// Bytes per pass.
    pub size: ByteSize,
    /// O_DIRECT.
    #[serde(default)]
    pub direct: bool,
    /// Flush control.
    #[serde(default)]
    pub sync: SyncMode,
    /// A flush every N writes.
    pub sync_every: Option<u64>,
    /// Final flush (default true).
    pub end_fsync: Option<bool>,
    /// Verify headers and checks.
    #[serde(default)]
    pub verify: bool,
    /// Percent of randrw requests that read (default 50).
    pub rwmixread: Option<u8>,
    /// Requests in flight per job (default 1).
    pub iodepth: Option<u32>,
    /// auto | psync | io_uring | libaio (default auto).
    #[serde(default)]
    pub ioengine: IoEngine,
    /// Jobs, each on its own region (default 1).
    pub numjobs: Option<u32>,
    /// Seed of the random offsets (default 1).
    pub randseed: Option<u64>,
    /// Independent random blocks instead of each once per pass.
    #[serde(default)]
    pub norandommap: bool,
    /// Seconds to run instead of moving `size` once.
    pub runtime: Option<f64>,
    /// Seconds run first and left out.
    pub ramp_time: Option<f64>,
    /// Time-series interval, milliseconds (default 1000).
    pub log_avg_msec: Option<u64>,
    /// Fresh content for every write, this percent compressible (0-100; fio's
    /// `buffer_compress_percentage`); absent: one random buffer for every write.
    pub buffer_compress_percentage: Option<u8>,
}

/// The guest settings of one target, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GuestConfig {
    /// Hypervisor.
    pub hypervisor: Hypervisor,
    /// Memory in bytes.
    pub memory: ByteSize,
    /// CPUs.
    pub cpus: u32,
    /// Disk controller.
    pub bus: Bus,
    /// Cache mode.
    pub cache: CacheMode,
    /// aio engine.
    pub aio: Aio,
    /// QEMU boot method.
    pub boot: Boot,
    /// QEMU throughput cap of the disk, bytes per second.
    pub throttle_bps: Option<u64>,
    /// VirtualBox flush settings.
    pub vbox: VboxFlush,
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

/// One target, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetPlan {
    /// Name.
    pub name: String,
    /// Storage kind as written.
    pub storage_kind: StorageKind,
    /// Storage.
    pub storage: StorageSpec,
    /// Guest settings; `None` for the host baseline.
    pub guest: Option<GuestConfig>,
    /// Disk size.
    pub disk_size: ByteSize,
}

/// One workload, validated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WorkloadPlan {
    /// Name.
    pub name: String,
    /// The agent's pass (path filled per target).
    pub spec: PassSpec,
    /// A fill pass (unmeasured seqwr) must run first: a seqrd with no seqwr before it.
    pub needs_fill: bool,
}

/// A validated scenario, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The scenario as written.
    pub file: ScenarioFile,
    /// Repetitions (with "auto": the most).
    pub repetitions: u32,
    /// "auto": repeat until the medians are known, within these limits.
    pub auto: Option<AutoReps>,
    /// Guest timeout.
    pub guest_timeout_s: u64,
    /// Targets in order.
    pub targets: Vec<TargetPlan>,
    /// Workloads in order.
    pub workloads: Vec<WorkloadPlan>,
}

/// The scenario spelling of a unit enum value (`CacheMode::Unsafe` → `unsafe`), derived
/// from its serde name so that scenarios, argv and results cannot disagree.
pub fn key_name<T: Serialize>(v: T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default()
}

/// A scenario problem with its place in the file.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct ScenarioError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// What is wrong and what to write instead.
    pub msg: String,
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map(|i| before.len() - i)
        .unwrap_or(before.len() + 1);
    (line, col)
}

/// Bounds of `guest_timeout_s`: a guest boots in seconds, and a week is past any pass.
const MIN_TIMEOUT_S: u64 = 10;
const MAX_TIMEOUT_S: u64 = 7 * 86_400;
/// The largest file Linux can have (`MAX_LFS_FILESIZE`, `i64::MAX`).
const MAX_DISK: u64 = i64::MAX as u64;

/// Where `key = ` is first written in `text` (for errors about a value serde has no span
/// for); 0 if absent.
fn key_offset(text: &str, key: &str) -> usize {
    text.match_indices(key)
        .find(|(i, _)| {
            text[..*i]
                .rsplit('\n')
                .next()
                .is_some_and(|l| l.trim().is_empty())
                && text[i + key.len()..].trim_start().starts_with('=')
        })
        .map_or(0, |(i, _)| i)
}

const COMPRESSION: &[&str] = &["on", "off", "lz4", "zstd", "gzip", "lzjb", "zle"];
const ZSYNC: &[&str] = &["standard", "always", "disabled"];
const LOGBIAS: &[&str] = &["latency", "throughput"];
const PRIMARYCACHE: &[&str] = &["all", "none", "metadata"];

/// The largest scenario file read (a scenario is a few KiB; `/dev/zero` is endless).
pub const MAX_SCENARIO_BYTES: u64 = 1 << 20;

/// Reads, parses and validates a scenario file.
pub fn load(path: &Path) -> Result<Plan, ScenarioError> {
    load_with_text(path).map(|(plan, _)| plan)
}

/// Reads (at most [`MAX_SCENARIO_BYTES`], once: a pipe cannot be read twice), parses and
/// validates a scenario file; also returns its text.
pub fn load_with_text(path: &Path) -> Result<(Plan, String), ScenarioError> {
    use std::io::Read;
    let name = path.display().to_string();
    let unreadable = |msg: String| ScenarioError {
        file: name.clone(),
        line: 0,
        col: 0,
        msg,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SCENARIO_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| unreadable(format!("cannot read the scenario: {e}")))?;
    if bytes.len() as u64 > MAX_SCENARIO_BYTES {
        return Err(unreadable(format!(
            "the scenario is larger than {} KiB: is this a scenario file?",
            MAX_SCENARIO_BYTES >> 10
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        unreadable(format!(
            "cannot read the scenario: not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((parse(&name, &text)?, text))
}

/// Parses and validates scenario text; `name` is used in messages.
pub fn parse(name: &str, text: &str) -> Result<Plan, ScenarioError> {
    let err_at = |offset: usize, msg: String| {
        let (line, col) = line_col(text, offset);
        ScenarioError {
            file: name.to_string(),
            line,
            col,
            msg,
        }
    };
    let file: ScenarioFile = toml::from_str(text).map_err(|e| {
        let off = e.span().map(|s| s.start).unwrap_or(0);
        err_at(off, e.message().to_string())
    })?;
    let run = &file.run;
    let (repetitions, auto) = match &run.repetitions {
        Repetitions::Count(n) => (*n, None),
        Repetitions::Word(w) if w != "auto" => {
            return Err(err_at(
                key_offset(text, "repetitions"),
                format!("[run] repetitions = {w:?}: write a count (1 to 100) or \"auto\""),
            ))
        }
        Repetitions::Word(_) => (
            run.max_repetitions,
            Some(AutoReps {
                max_s: run.max_auto_s,
            }),
        ),
    };
    if !(1..=100).contains(&repetitions) {
        let key = if auto.is_some() {
            "max_repetitions"
        } else {
            "repetitions"
        };
        return Err(err_at(
            key_offset(text, key),
            format!("[run] {key} = {repetitions} must be 1 to 100"),
        ));
    }
    if auto.is_some() && (repetitions < AUTO_MIN_REPS || run.max_auto_s == 0) {
        return Err(err_at(
            key_offset(text, "max_repetitions"),
            format!("[run] repetitions = \"auto\" needs max_repetitions of at least {AUTO_MIN_REPS} and max_auto_s above 0"),
        ));
    }
    if !(MIN_TIMEOUT_S..=MAX_TIMEOUT_S).contains(&run.guest_timeout_s) {
        return Err(err_at(
            key_offset(text, "guest_timeout_s"),
            format!(
                "[run] guest_timeout_s = {} must be {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S} (7 days) seconds",
                run.guest_timeout_s
            ),
        ));
    }
    if file.target.is_empty() || file.workload.is_empty() {
        return Err(err_at(
            0,
            "a scenario needs at least one [[target]] and one [[workload]]".into(),
        ));
    }

    let mut workloads: Vec<WorkloadPlan> = Vec::new();
    for w in &file.workload {
        let at = |msg: String| {
            err_at(
                w.name.span().start,
                format!("workload {:?}: {msg}", w.name.get_ref()),
            )
        };
        check_name(w.name.get_ref()).map_err(at)?;
        if workloads.iter().any(|x| &x.name == w.name.get_ref()) {
            return Err(at(
                "the name is used twice; give each workload its own name".into(),
            ));
        }
        let spec = PassSpec {
            direct: w.direct,
            sync: w.sync,
            sync_every: w.sync_every,
            end_fsync: w.end_fsync.unwrap_or(true),
            verify: w.verify,
            rwmixread: w.rwmixread,
            iodepth: w.iodepth.unwrap_or(1),
            ioengine: w.ioengine,
            numjobs: w.numjobs.unwrap_or(1),
            randseed: w.randseed.unwrap_or(1),
            norandommap: w.norandommap,
            runtime: w.runtime,
            ramp_time: w.ramp_time,
            log_avg_msec: w.log_avg_msec.unwrap_or(1000),
            buffer_compress_percentage: w.buffer_compress_percentage,
            ..PassSpec::new(PathBuf::new(), w.kind, w.bs, w.size)
        };
        spec.validate().map_err(|e| {
            at(e.to_string()
                .replace("--", "")
                .replace("sync-every", "sync_every")
                .replace("ramp-time", "ramp_time")
                .replace("log-avg-msec", "log_avg_msec")
                .replace("buffer-compress-percentage", "buffer_compress_percentage"))
        })?;
        if spec.direct && !spec.bs.bytes().is_multiple_of(512) {
            return Err(at(format!(
                "direct = true needs bs to be a multiple of 512 bytes (the smallest logical block of any disk); got {}",
                spec.bs
            )));
        }
        // A read reads what an earlier write left, if one covered its size (every block:
        // sequential, or random with the random map; and, when verifying, verified blocks
        // of the same size); otherwise it fills first.
        let covered = workloads.iter().any(|p: &WorkloadPlan| {
            let s = &p.spec;
            matches!(s.workload, Workload::Seqwr | Workload::Randwrite)
                && !s.norandommap
                && s.size >= spec.size
                && (!spec.verify || (s.verify && s.bs == spec.bs))
        });
        let needs_fill = w.kind.reads() && !covered;
        workloads.push(WorkloadPlan {
            name: w.name.get_ref().clone(),
            spec,
            needs_fill,
        });
    }
    let max_size = workloads
        .iter()
        .map(|w| w.spec.size.bytes())
        .max()
        .unwrap_or(0);

    let mut targets: Vec<TargetPlan> = Vec::new();
    for t in &file.target {
        let tname = t.name.get_ref();
        let at = |msg: String| err_at(t.name.span().start, format!("target {tname:?}: {msg}"));
        check_name(tname).map_err(at)?;
        if targets.iter().any(|x| &x.name == tname) {
            return Err(at(
                "the name is used twice; give each target its own name".into()
            ));
        }
        let disk_size = t.disk_size.unwrap_or(run.disk_size);
        if disk_size.bytes() > MAX_DISK {
            return Err(at(format!(
                "disk_size {disk_size} is larger than any Linux file or device can be (8 EiB)"
            )));
        }
        let need_dir = |what: &str| -> Result<PathBuf, ScenarioError> {
            let d = t.dir.clone().ok_or_else(|| at(format!("storage = \"{what}\" needs dir = \"/var/tmp/zvbench\" (a directory for its files)")))?;
            if !d.is_absolute() || d.to_string_lossy().contains(',') {
                return Err(at(format!(
                    "dir {:?} must be an absolute path without ','",
                    d.display()
                )));
            }
            match std::fs::metadata(&d) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => {
                    return Err(at(format!(
                        "dir {} is a file, not a directory; name a directory",
                        d.display()
                    )))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(at(format!(
                        "dir {} does not exist; create it (mkdir -p {}) or name another",
                        d.display(),
                        d.display()
                    )))
                }
                Err(e) => return Err(at(format!("dir {}: {e}", d.display()))),
            }
            Ok(d)
        };
        let only = |key: &str, set: bool, kinds: &str| -> Result<(), ScenarioError> {
            if set {
                Err(at(format!(
                    "{key} only applies to storage = {kinds}; remove it"
                )))
            } else {
                Ok(())
            }
        };
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
        let storage = match t.storage {
            StorageKind::Host => StorageSpec::Host {
                dir: need_dir("host")?,
            },
            StorageKind::Loop => StorageSpec::Loop {
                dir: need_dir("loop")?,
            },
            StorageKind::Image => StorageSpec::Image {
                dir: need_dir("image")?,
                format: t.format.unwrap_or(ImageFormat::Vdi),
                variant: t.variant.unwrap_or_default(),
            },
            StorageKind::Zvol => StorageSpec::Zvol(zvol_config(t).map_err(at)?),
            StorageKind::Blockdev => {
                let d = t.device.clone().ok_or_else(|| {
                    at("storage = \"blockdev\" needs device = \"/dev/...\"".into())
                })?;
                check_device(&d).map_err(at)?;
                StorageSpec::Blockdev { device: d }
            }
        };
        let on_host = t.on_host == Some(true);
        only(
            "on_host",
            on_host && t.storage != StorageKind::Zvol,
            "\"zvol\" (storage = \"host\" runs on the host already)",
        )?;
        if on_host {
            let guest_keys = [
                t.hypervisor.is_some(),
                t.memory.is_some(),
                t.cpus.is_some(),
                t.bus.is_some(),
                t.cache.is_some(),
                t.aio.is_some(),
                t.boot.is_some(),
                t.throttle_bps.is_some(),
                t.host_io_cache.is_some(),
                t.ignore_flush.is_some(),
                t.ignore_flush_async.is_some(),
            ];
            if guest_keys.contains(&true) {
                return Err(at("on_host = true runs no guest: remove the target's guest keys (hypervisor, memory, cpus, bus, cache, aio, boot, throttle_bps, host_io_cache, ignore_flush*)".into()));
            }
            if disk_size.bytes() < max_size {
                return Err(at(format!(
                    "disk_size {disk_size} must hold the largest workload ({}); set disk_size = \"{}\"",
                    ByteSize(max_size),
                    ByteSize(max_size.div_ceil(1 << 20) << 20)
                )));
            }
        }
        let guest = if t.storage == StorageKind::Host || on_host {
            None
        } else {
            let g = &file.guest;
            let hypervisor = t.hypervisor.or(g.hypervisor).unwrap_or(Hypervisor::Qemu);
            let vbox = VboxFlush {
                host_io_cache: t.host_io_cache.or(g.host_io_cache).unwrap_or(false),
                ignore_flush: t.ignore_flush.or(g.ignore_flush),
                ignore_flush_async: t.ignore_flush_async.or(g.ignore_flush_async),
            };
            let cfg = GuestConfig {
                hypervisor,
                memory: t.memory.or(g.memory).unwrap_or(ByteSize(512 << 20)),
                cpus: t.cpus.or(g.cpus).unwrap_or(1),
                bus: t.bus.or(g.bus).unwrap_or(match hypervisor {
                    Hypervisor::Qemu => Bus::Virtio,
                    Hypervisor::Virtualbox => Bus::Sata,
                }),
                cache: t.cache.or(g.cache).unwrap_or(CacheMode::None),
                aio: t.aio.or(g.aio).unwrap_or(Aio::Threads),
                boot: t.boot.or(g.boot).unwrap_or_default(),
                throttle_bps: t.throttle_bps.or(g.throttle_bps).map(|b| b.bytes()),
                vbox,
            };
            match hypervisor {
                Hypervisor::Virtualbox => {
                    for (key, set) in [
                        ("cache", t.cache.is_some() || g.cache.is_some()),
                        ("aio", t.aio.is_some() || g.aio.is_some()),
                        ("boot", t.boot.is_some() || g.boot.is_some()),
                        ("throttle_bps", cfg.throttle_bps.is_some()),
                    ] {
                        if set {
                            return Err(at(format!("{key} is a QEMU setting; VirtualBox boots the guest ISO and takes host_io_cache, ignore_flush and ignore_flush_async")));
                        }
                    }
                    if cfg.bus == Bus::Virtio {
                        return Err(at("VirtualBox has no virtio-blk: use bus = \"sata\" (IntelAhci, its default), \"nvme\" or \"scsi\" (virtio-scsi)".into()));
                    }
                    if let StorageSpec::Image { format, .. } = &storage {
                        if !matches!(format, ImageFormat::Vdi | ImageFormat::Vmdk) {
                            return Err(at(format!("VirtualBox images here are vdi or vmdk, not {}; use format = \"vdi\"", key_name(format))));
                        }
                    }
                }
                Hypervisor::Qemu => {
                    for (key, set) in [
                        (
                            "host_io_cache",
                            t.host_io_cache.is_some() || g.host_io_cache.is_some(),
                        ),
                        (
                            "ignore_flush",
                            t.ignore_flush.is_some() || g.ignore_flush.is_some(),
                        ),
                        (
                            "ignore_flush_async",
                            t.ignore_flush_async.is_some() || g.ignore_flush_async.is_some(),
                        ),
                    ] {
                        if set {
                            return Err(at(format!("{key} is a VirtualBox setting; for QEMU set cache = \"none\"|\"writeback\"|\"unsafe\"|...")));
                        }
                    }
                }
            }
            if cfg.throttle_bps.is_some_and(|b| b < 1 << 20) {
                return Err(at(
                    "throttle_bps must be at least 1M (bytes per second); leave it out for no cap"
                        .into(),
                ));
            }
            if cfg.aio == Aio::Native
                && !matches!(cfg.cache, CacheMode::None | CacheMode::Directsync)
            {
                return Err(at("aio = \"native\" needs cache = \"none\" or \"directsync\" (QEMU requires O_DIRECT for it)".into()));
            }
            if !(1..=64).contains(&cfg.cpus)
                || !(128 << 20..=64 << 30).contains(&cfg.memory.bytes())
            {
                return Err(at("cpus must be 1-64 and memory 128M-64G".into()));
            }
            if disk_size.bytes() < max_size || disk_size.bytes() % (1 << 20) != 0 {
                return Err(at(format!(
                    "disk_size {disk_size} must be a multiple of 1M and hold the largest workload ({}); set disk_size = \"{}\"",
                    ByteSize(max_size),
                    ByteSize(max_size.div_ceil(1 << 20) << 20)
                )));
            }
            Some(cfg)
        };
        targets.push(TargetPlan {
            name: tname.clone(),
            storage_kind: t.storage,
            storage,
            guest,
            disk_size,
        });
    }
    Ok(Plan {
        repetitions,
        auto,
        guest_timeout_s: run.guest_timeout_s,
        file,
        targets,
        workloads,
    })
}

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
    let keyfile = if t.encryption == Some(true) {
        let k = t
            .keyfile
            .clone()
            .ok_or("encryption = true needs keyfile = \"/path/to/32-byte-raw-key\"")?;
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
        Some(k)
    } else {
        None
    };
    let send_to = t.send_to.clone();
    if let Some(to) = &send_to {
        check_dataset(to).map_err(|e| format!("send_to: {e}"))?;
        let pool = |d: &str| d.split('/').next().unwrap_or_default().to_string();
        if pool(to) == pool(&parent) {
            return Err(format!(
                "send_to = {to:?} is on the zvol's own pool {:?}; the send step copies to a second pool: name a dataset there, e.g. send_to = \"backup\"",
                pool(&parent)
            ));
        }
    }
    Ok(ZvolConfig {
        parent,
        props,
        keyfile,
        send_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> String {
        r#"
[run]
repetitions = 2
disk_size = "64M"

[guest]
cache = "none"

[[target]]
name = "host"
storage = "host"
dir = "/tmp"

[[target]]
name = "vdi"
storage = "image"
format = "vdi"
dir = "/tmp"
cache = "unsafe"

[[target]]
name = "zvol"
storage = "zvol"
parent = "tank/zvbench"
volblocksize = "16K"
sync = "always"

[[workload]]
name = "rd"
kind = "seqrd"
bs = "1M"
size = "16M"

[[workload]]
name = "wr"
kind = "seqwr"
bs = "4K"
size = "1M"
sync = "fsync"
sync_every = 4
"#
        .to_string()
    }

    #[test]
    fn shipped_scenarios_validate() {
        std::fs::create_dir_all("/var/tmp/zvbench").unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        for f in ["quick.toml", "seed-sysbench.toml", "story-virtualbox.toml"] {
            let p = load(&root.join(f)).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                p.targets
                    .iter()
                    .any(|t| t.storage_kind == StorageKind::Host),
                "{f}"
            );
        }
    }

    #[test]
    fn random_workload_keys_reach_the_pass_and_reads_fill_first() {
        let text = "[[target]]\nname=\"h\"\nstorage=\"host\"\ndir=\"/tmp\"\n\
             [[workload]]\nname=\"mix\"\nkind=\"randrw\"\nbs=\"4K\"\nsize=\"4M\"\n\
             rwmixread=70\niodepth=16\nnumjobs=2\nioengine=\"io_uring\"\nrandseed=9\n\
             runtime=2.5\nramp_time=0.5\nlog_avg_msec=100\n";
        let p = parse("s.toml", text).unwrap();
        let w = &p.workloads[0];
        assert!(w.needs_fill, "randrw reads: it fills first");
        let s = &w.spec;
        assert_eq!((s.rwmixread, s.iodepth, s.numjobs), (Some(70), 16, 2));
        assert_eq!((s.ioengine, s.randseed), (IoEngine::IoUring, 9));
        assert_eq!(
            (s.runtime, s.ramp_time, s.log_avg_msec),
            (Some(2.5), Some(0.5), 100)
        );
        let passes = crate::run::passes_for(&p, Path::new("/dev/vdb"), 1, true);
        let fill = &passes[0];
        assert_eq!(
            (fill.workload, fill.label.as_str()),
            (Workload::Seqwr, "fill")
        );
        assert_eq!(
            (fill.runtime, fill.ramp_time, fill.rwmixread),
            (None, None, None)
        );
        assert!(
            fill.validate().is_ok(),
            "the fill is a valid size-based write"
        );
        assert_eq!(passes[1].workload, Workload::Randrw);

        let e = err(&text.replace(
            "rwmixread=70",
            "rwmixread=70\nnorandommap=true\nverify=true",
        ));
        assert!(e.contains("verify"), "{e}");
        let e = err(&text.replace("ramp_time=0.5", "ramp_time=-1.0"));
        assert!(e.contains("ramp_time -1"), "{e}");
    }

    #[test]
    fn compressible_writes_are_a_write_workload_key_from_0_to_100() {
        let text = "[[target]]\nname=\"h\"\nstorage=\"host\"\ndir=\"/tmp\"\n\
             [[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"64K\"\nsize=\"4M\"\n\
             buffer_compress_percentage=50\n";
        let p = parse("s.toml", text).unwrap();
        assert_eq!(p.workloads[0].spec.buffer_compress_percentage, Some(50));
        let e = err(&text.replace("=50", "=101"));
        assert!(
            e.contains("buffer_compress_percentage 101 is outside 0 to 100"),
            "{e}"
        );
        let e = err(&text.replace("seqwr", "seqrd"));
        assert!(
            e.contains("buffer_compress_percentage applies to workloads that write"),
            "{e}"
        );
    }

    #[test]
    fn on_host_runs_the_agent_on_a_zvol_without_a_guest() {
        let base = "[[target]]\nname=\"z\"\nstorage=\"zvol\"\nparent=\"tank\"\non_host=true\n\
             [[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"4K\"\nsize=\"4M\"\n";
        let p = parse("s.toml", base).unwrap();
        assert_eq!(p.targets[0].guest, None);
        let e = err(&base.replace("on_host=true", "on_host=true\ncache=\"none\""));
        assert!(e.contains("on_host = true runs no guest"), "{e}");
        let e = err(&base.replace("[[workload]]", "disk_size=\"1M\"\n[[workload]]"));
        assert!(e.contains("must hold the largest workload"), "{e}");
        let e = err(&base.replace(
            "storage=\"zvol\"\nparent=\"tank\"",
            "storage=\"loop\"\ndir=\"/tmp\"",
        ));
        assert!(
            e.contains("on_host only applies to storage = \"zvol\""),
            "{e}"
        );
    }

    #[test]
    fn reads_fill_first_unless_an_earlier_write_covers_them() {
        let text = |w_size: &str, w_verify: bool, r_verify: bool| {
            format!(
                "[[target]]\nname=\"h\"\nstorage=\"host\"\ndir=\"/tmp\"\n\
                 [[workload]]\nname=\"w\"\nkind=\"seqwr\"\nbs=\"64K\"\nsize=\"{w_size}\"\nverify={w_verify}\n\
                 [[workload]]\nname=\"r\"\nkind=\"seqrd\"\nbs=\"64K\"\nsize=\"4M\"\nverify={r_verify}\n"
            )
        };
        let fill = |t: String| parse("s.toml", &t).unwrap().workloads[1].needs_fill;
        assert!(
            fill(text("512K", false, false)),
            "a smaller write does not cover the read"
        );
        assert!(!fill(text("4M", false, false)));
        assert!(
            fill(text("4M", false, true)),
            "a verified read needs verified blocks"
        );
        assert!(!fill(text("4M", true, true)));
    }

    /// `throttle_bps` (scripts/bench-gate's injected slowdown): at least 1M, reaches the plan.
    #[test]
    fn throttle_is_a_checked_qemu_setting() {
        let e = err(&good().replace(
            "cache = \"unsafe\"",
            "cache = \"unsafe\"\nthrottle_bps = 1000",
        ));
        assert!(e.contains("throttle_bps must be at least 1M"), "{e}");
        let p = parse(
            "s.toml",
            &good().replace(
                "cache = \"unsafe\"",
                "cache = \"unsafe\"\nthrottle_bps = \"20M\"",
            ),
        )
        .unwrap();
        let g = p.targets[1].guest.as_ref().unwrap();
        assert_eq!(g.throttle_bps, Some(20 << 20));
    }

    #[test]
    fn auto_repetitions_have_limits() {
        let p = parse("s.toml", &good()).unwrap();
        assert_eq!((p.repetitions, p.auto), (2, None));
        let auto = good().replace("repetitions = 2", "repetitions = \"auto\"");
        let p = parse("s.toml", &auto).unwrap();
        assert_eq!(
            (p.repetitions, p.auto),
            (10, Some(AutoReps { max_s: 1800 }))
        );
        let p = parse(
            "s.toml",
            &auto.replace("[run]", "[run]\nmax_repetitions = 5\nmax_auto_s = 60"),
        )
        .unwrap();
        assert_eq!((p.repetitions, p.auto), (5, Some(AutoReps { max_s: 60 })));
        let e = err(&auto.replace("[run]", "[run]\nmax_repetitions = 2"));
        assert!(e.contains("needs max_repetitions of at least 3"), "{e}");
        let e = err(&good().replace("repetitions = 2", "repetitions = \"many\""));
        assert!(e.contains("write a count (1 to 100) or \"auto\""), "{e}");
    }

    #[test]
    fn parses_and_resolves_overrides() {
        let p = parse("s.toml", &good()).unwrap();
        assert_eq!(p.repetitions, 2);
        assert!(p.targets[0].guest.is_none());
        assert_eq!(
            p.targets[1].guest.as_ref().unwrap().cache,
            CacheMode::Unsafe
        );
        assert_eq!(p.targets[2].guest.as_ref().unwrap().cache, CacheMode::None);
        assert!(matches!(
            &p.targets[1].storage,
            StorageSpec::Image {
                format: ImageFormat::Vdi,
                variant: Variant::Dynamic,
                ..
            }
        ));
        match &p.targets[2].storage {
            StorageSpec::Zvol(z) => assert_eq!(
                z.props,
                vec![
                    ("volblocksize".to_string(), "16K".to_string()),
                    ("sync".to_string(), "always".to_string())
                ]
            ),
            other => panic!("{other:?}"),
        }
        assert!(
            p.workloads[0].needs_fill,
            "a seqrd with no seqwr before it fills first"
        );
        assert!(!p.workloads[1].needs_fill);
    }

    fn err(text: &str) -> String {
        parse("s.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_line_column_and_fix() {
        let e = err(&good().replace("volblocksize = \"16K\"", "volblocksize = \"3K\""));
        assert!(
            e.starts_with("s.toml:22:8: target \"zvol\": volblocksize 3K must be a power of two"),
            "{e}"
        );
        let e = err(&good().replace("kind = \"seqrd\"", "kind = \"randrx\""));
        assert!(e.starts_with("s.toml:30:8:") && e.contains("seqwr"), "{e}");
        let e = err(&good().replace("repetitions = 2", "repetitons = 2"));
        assert!(e.contains("unknown field `repetitons`"), "{e}");
        let e = err(&good().replace("tank/zvbench", "tank/$(reboot)"));
        assert!(e.contains("ZFS dataset name"), "{e}");
        let e = err(&good().replace("size = \"1M\"", "size = \"1001K\""));
        assert!(e.contains("multiple of bs"), "{e}");
        let e = err(&good().replace("disk_size = \"64M\"", "disk_size = \"8M\""));
        assert!(e.contains("set disk_size = \"16M\""), "{e}");
        let e = err(&good().replace("dir = \"/tmp\"\ncache", "dir = \"/nonexistent/x\"\ncache"));
        assert!(e.contains("mkdir -p /nonexistent/x"), "{e}");
        let e = err(&good().replace("name = \"vdi\"", "name = \"host\""));
        assert!(e.contains("used twice"), "{e}");
        let e = err(&good().replace("cache = \"unsafe\"", "cache = \"unsafe\"\naio = \"native\""));
        assert!(e.contains("aio = \"native\" needs cache"), "{e}");
        let e = err(&good().replace("sync = \"always\"", "sync = \"always\"\nformat = \"vdi\""));
        assert!(e.contains("only applies to storage = \"image\""), "{e}");
    }

    #[test]
    fn send_to_is_a_dataset_on_another_pool() {
        let with = |v: &str| good().replace("sync = \"always\"", &format!("send_to = {v:?}"));
        let p = parse("s.toml", &with("backup/copies")).unwrap();
        let StorageSpec::Zvol(z) = &p.targets[2].storage else {
            panic!()
        };
        assert_eq!(z.send_to.as_deref(), Some("backup/copies"));
        assert!(err(&with("tank/copies")).contains("on the zvol's own pool \"tank\""));
        assert!(err(&with("backup/$(x)")).contains("send_to: ZFS dataset name"));
        let e = err(&good().replace("cache = \"unsafe\"", "cache = \"unsafe\"\nsend_to = \"b\""));
        assert!(
            e.contains("send_to only applies to storage = \"zvol\""),
            "{e}"
        );
    }

    #[test]
    fn encryption_needs_a_real_raw_key() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k");
        std::fs::write(&key, [7u8; 16]).unwrap();
        let text = good().replace(
            "sync = \"always\"",
            &format!("encryption = true\nkeyfile = \"{}\"", key.display()),
        );
        assert!(err(&text).contains("has 16 bytes"));
        std::fs::write(&key, [7u8; 32]).unwrap();
        let p = parse("s.toml", &text).unwrap();
        let StorageSpec::Zvol(z) = &p.targets[2].storage else {
            panic!()
        };
        assert_eq!(z.keyfile.as_deref(), Some(key.as_path()));
        assert!(
            !z.props
                .iter()
                .any(|(k, _)| k.starts_with("encryption") || k.starts_with("key")),
            "the encrypted parent carries the encryption, not the zvol: {:?}",
            z.props
        );
    }
}

#[cfg(test)]
mod virtualbox_tests {
    use super::*;

    const VBOX: &str = r#"
[guest]
hypervisor = "virtualbox"

[[target]]
name = "vdi"
storage = "image"
dir = "/tmp"
host_io_cache = true

[[workload]]
name = "w"
kind = "seqwr"
bs = "16K"
size = "1M"
"#;

    fn err(text: &str) -> String {
        parse("v.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn virtualbox_defaults_and_settings() {
        let p = parse("v.toml", VBOX).unwrap();
        let g = p.targets[0].guest.as_ref().unwrap();
        assert_eq!(
            g.bus,
            Bus::Sata,
            "VirtualBox's default controller, as in the story"
        );
        assert!(g.vbox.host_io_cache && g.vbox.ignored());
        let p = parse(
            "v.toml",
            &VBOX.replace("host_io_cache = true", "ignore_flush_async = true"),
        )
        .unwrap();
        assert!(p.targets[0].guest.as_ref().unwrap().vbox.ignored());
    }

    #[test]
    fn settings_of_the_other_hypervisor_are_refused() {
        let e = err(&VBOX.replace("host_io_cache = true", "cache = \"unsafe\""));
        assert!(e.contains("cache is a QEMU setting"), "{e}");
        let e = err(&VBOX.replace("host_io_cache = true", "bus = \"virtio\""));
        assert!(e.contains("no virtio-blk"), "{e}");
        let e = err(&VBOX.replace(
            "storage = \"image\"",
            "storage = \"image\"\nformat = \"qcow2\"",
        ));
        assert!(e.contains("vdi or vmdk"), "{e}");
        let e = err(&VBOX.replace("hypervisor = \"virtualbox\"", "hypervisor = \"qemu\""));
        assert!(e.contains("host_io_cache is a VirtualBox setting"), "{e}");
        let e = err(&VBOX.replace("host_io_cache = true", "throttle_bps = \"10M\""));
        assert!(e.contains("throttle_bps is a QEMU setting"), "{e}");
        // VirtualBox's own 0|1 is written true|false here; the error points at the value.
        let e = err(&VBOX.replace("host_io_cache = true", "ignore_flush = 1"));
        assert!(
            e.starts_with("v.toml:9:16:") && e.contains("expected a boolean"),
            "{e}"
        );
    }
}
