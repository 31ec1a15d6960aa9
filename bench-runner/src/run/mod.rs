//! `zvbench run`: validate, check the host, provision each target, run its passes
//! (on the host or in guests), write every result as it arrives, tear down.

pub mod provenance;

use crate::guest::kernel::GuestKernel;
use crate::guest::{
    build_initramfs, delta, BootTimeline, GuestPass, Handshake, LowerLayers, PassTrace, APPEND,
};
use crate::host::owner::RunLock;
use crate::host::storage::{check_blockdev, provision, Provisioned};
use crate::host::zfs;
use crate::hypervisor::boot::{self, Below, Guest};
use crate::hypervisor::qemu::vm::Qemu;
use crate::hypervisor::qemu::{Accel, Firmware};
use crate::hypervisor::vbox::vm::VirtualBox;
use crate::hypervisor::vbox::{self, VBoxManage, VboxDisk};
use crate::hypervisor::vm_name;
use crate::scenario::{
    key_name, GuestConfig, Hypervisor, ImageFormat, Plan, StorageKind, StorageSpec, TargetPlan,
    AUTO_HALF_WIDTH_PCT, AUTO_MIN_REPS,
};
use crate::Interrupt;
use anyhow::{bail, Context, Result};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zvbench_agent::pass::{run_pass, Observer, PassSpec, Workload};
use zvbench_agent::PassRecord;
use zvbench_reports::run_json::RunInfo;
use zvbench_reports::ResultRow;

/// Options of a run beyond the scenario.
pub struct RunOptions {
    /// Output directory (must not hold results already).
    pub out: PathBuf,
    /// The static agent binary for guests.
    pub agent: PathBuf,
    /// The guest kernel (resolved by the caller when a guest target exists).
    pub kernel: Option<GuestKernel>,
    /// Accelerator for guests.
    pub accel: Accel,
    /// Devices the user allows zvbench to overwrite.
    pub allow_destroy: Vec<PathBuf>,
    /// The scenario's text, kept in run.json.
    pub scenario_text: String,
    /// Where the run's lock goes (`owner::runtime_dir`).
    pub runtime: PathBuf,
    /// A simulated power cut per guest boot (`--powercut N`).
    pub powercut: Option<crate::powercut::Options>,
    /// The `VBoxManage` program for VirtualBox targets (a path, or a name on PATH).
    pub vboxmanage: OsString,
}

/// The host pass's observer: stops the pass when the run is interrupted.
struct StopOnSignal<'a>(&'a Interrupt);

impl Observer for StopOnSignal<'_> {
    fn stop_requested(&mut self) -> bool {
        self.0.is_set()
    }
}

/// Appends rows and records as passes complete, flushing each, so a later failure or
/// Ctrl-C loses nothing already measured.
pub struct ResultsSink {
    csv: csv::Writer<File>,
    jsonl: File,
    /// Rows written so far.
    pub rows: Vec<ResultRow>,
}

impl ResultsSink {
    /// Creates `results.csv` and `results.jsonl` in `out`; either existing is an error (no
    /// earlier result is overwritten, not even by a run started at the same moment).
    pub fn create(out: &Path) -> Result<ResultsSink> {
        let new = |name: &str| {
            let path = out.join(name);
            File::options()
                .write(true)
                .create_new(true)
                .open(&path)
                .with_context(|| {
                    format!("cannot create {}; choose a new --out directory so no earlier result is overwritten", path.display())
                })
        };
        let csv = new("results.csv")?;
        let jsonl = new("results.jsonl").inspect_err(|_| {
            // The empty results.csv just created is ours: not left behind.
            let _ = std::fs::remove_file(out.join("results.csv"));
        })?;
        Ok(ResultsSink {
            csv: csv::Writer::from_writer(csv),
            jsonl,
            rows: Vec::new(),
        })
    }

    /// Writes a row (checked first) and its record.
    pub fn add(
        &mut self,
        row: ResultRow,
        rec: &PassRecord,
        boot: Option<&BootTimeline>,
    ) -> Result<()> {
        // A row the reports would refuse (a guest's record is untrusted) is not written.
        row.check().with_context(|| {
            format!(
                "pass {} of {} repetition {}",
                row.workload, row.target, row.repetition
            )
        })?;
        self.csv.serialize(&row)?;
        self.csv.flush()?;
        let mut v = serde_json::to_value(rec)?;
        v["target"] = row.target.clone().into();
        v["workload"] = row.workload.clone().into();
        v["repetition"] = row.repetition.into();
        if let Some(b) = boot {
            v["boot"] = serde_json::to_value(b)?;
        }
        writeln!(self.jsonl, "{v}")?;
        self.jsonl.flush()?;
        self.rows.push(row);
        Ok(())
    }
}

/// Shows which step runs and an estimate of the time left.
struct Progress {
    start: Instant,
    total: usize,
    done: usize,
}

impl Progress {
    fn step(&mut self, what: &str) {
        let el = self.start.elapsed().as_secs();
        let left = if self.done > 0 {
            format!(
                "~{} s left",
                el * (self.total - self.done) as u64 / self.done as u64
            )
        } else {
            "estimating".into()
        };
        crate::observe::progress!(
            "[{}/{}] {what} · {el} s elapsed, {left}",
            self.done + 1,
            self.total
        );
    }
}

/// The passes of one repetition of a target: a fill (a size-based sequential write at the
/// read's block size, depth and jobs) before any read with no covering write before it.
pub fn passes_for(plan: &Plan, disk: &Path, rep: u32, allow_destroy: bool) -> Vec<PassSpec> {
    let mut v = Vec::new();
    for w in &plan.workloads {
        let mut s = w.spec.clone();
        s.path = disk.to_owned();
        s.allow_destroy = allow_destroy;
        s.seed = rep as u64;
        if w.needs_fill {
            v.push(PassSpec {
                workload: Workload::Seqwr,
                label: "fill".into(),
                sync: Default::default(),
                sync_every: None,
                end_fsync: true,
                rwmixread: None,
                norandommap: false,
                runtime: None,
                ramp_time: None,
                ..s.clone()
            });
        }
        s.label = w.name.clone();
        v.push(s);
    }
    v
}

/// The ZFS layers of a pass into its row: ZIL commits and the pool vdevs' flushes and bytes.
fn zfs_layers(row: &mut ResultRow, lower: &LowerLayers) {
    row.zil_commits = lower.zil_commits;
    row.vdev_flushes = lower.vdev_flushes;
    row.vdev_read_bytes = lower.vdev_read_bytes;
    row.vdev_write_bytes = lower.vdev_write_bytes;
}

/// A pass's row with what the target and the record say (a guest's hypervisor layer is
/// [`guest_row`]'s).
fn base_row(t: &TargetPlan, rec: &PassRecord, rep: u32) -> ResultRow {
    let mut row = ResultRow::from_record(rec);
    row.target = t.name.clone();
    row.storage = key_name(t.storage_kind);
    row.workload = rec.label.clone();
    row.repetition = rep;
    match &t.guest {
        None => {
            row.hypervisor = "none".into();
            row.host_dev_flushes = rec.device.as_ref().and_then(|d| d.flush_ios);
            row.host_dev_flush_ms = rec.device.as_ref().and_then(|d| d.flush_ms);
            row.host_dev_write_bytes = rec.device.as_ref().map(|d| d.write_bytes);
            row.guest_dev_flushes = None;
        }
        Some(g) => {
            row.hypervisor = key_name(g.hypervisor);
            row.bus = key_name(g.bus);
        }
    }
    row
}

/// The logical block size of the block device under `path` (a device, or a file system's
/// device for a directory), which O_DIRECT requests must be multiples of.
fn logical_block_size(path: &Path) -> Option<u64> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::metadata(path).ok()?;
    let dev = if m.file_type().is_block_device() {
        m.rdev()
    } else {
        m.dev()
    };
    let sys = std::fs::canonicalize(format!(
        "/sys/dev/block/{}:{}",
        libc::major(dev),
        libc::minor(dev)
    ))
    .ok()?;
    // A partition has no queue/ of its own: its disk's applies.
    [sys.join("queue"), sys.join("../queue")]
        .iter()
        .find_map(|q| std::fs::read_to_string(q.join("logical_block_size")).ok())
        .and_then(|s| s.trim().parse().ok())
}

/// Whether the file system of `dir` can have a file of `size` bytes, tried on an unnamed
/// `O_TMPFILE` that vanishes on close (nothing appears in `dir`). A file system without
/// `O_TMPFILE` is not judged here.
fn can_hold(dir: &Path, size: u64) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .mode(0o600)
        .open(dir)
    else {
        return Ok(());
    };
    match f.set_len(size) {
        Err(e)
            if e.raw_os_error() == Some(libc::EFBIG) || e.raw_os_error() == Some(libc::EINVAL) =>
        {
            bail!("no file that large can exist on the file system of {} ({e}); lower disk_size or use another dir", dir.display())
        }
        _ => Ok(()),
    }
}

/// Every check that needs nothing created: what `zvbench check` runs, and the first half
/// of [`preflight`]. Root for loop devices, zvols and raw devices; a blockdev's contents
/// and users; O_DIRECT block sizes against the device under each host target; the space a
/// preallocated image needs; zvol parents; ISO tools and VirtualBox (`vboxmanage`).
pub fn checks(plan: &Plan, allow_destroy: &[PathBuf], vboxmanage: &OsStr) -> Result<()> {
    let root = nix::unistd::Uid::effective().is_root();
    for t in &plan.targets {
        let needs_root = matches!(
            t.storage_kind,
            StorageKind::Loop | StorageKind::Zvol | StorageKind::Blockdev
        );
        if needs_root && !root {
            bail!("target {:?} (storage {:?}) needs root for losetup/zfs/raw devices; run zvbench as root", t.name, t.storage_kind);
        }
        if let StorageSpec::Blockdev { device } = &t.storage {
            check_blockdev(device, allow_destroy)
                .with_context(|| format!("target {:?}", t.name))?;
        }
        let under = match &t.storage {
            StorageSpec::Host { dir } => Some(dir.as_path()),
            StorageSpec::Blockdev { device } => Some(device.as_path()),
            _ => None,
        };
        if let Some(lbs) = under.and_then(logical_block_size) {
            for w in plan.workloads.iter().filter(|w| w.spec.direct) {
                if !w.spec.bs.bytes().is_multiple_of(lbs) {
                    bail!(
                        "target {:?}, workload {:?}: direct = true needs bs to be a multiple of {lbs} bytes, the logical block size of the device under {}; use bs = \"{}\"",
                        t.name,
                        w.name,
                        under.unwrap_or(Path::new("")).display(),
                        zvbench_agent::ByteSize(w.spec.bs.bytes().div_ceil(lbs) * lbs)
                    );
                }
            }
        }
        let sized_file_in = match &t.storage {
            StorageSpec::Loop { dir }
            | StorageSpec::Image {
                dir,
                format: crate::scenario::ImageFormat::Raw,
                ..
            } => Some(dir),
            _ => None,
        };
        if let Some(dir) = sized_file_in {
            can_hold(dir, t.disk_size.bytes())
                .with_context(|| format!("target {:?}: disk_size {}", t.name, t.disk_size))?;
        }
        if let StorageSpec::Image {
            dir,
            variant: crate::scenario::Variant::Fixed,
            ..
        } = &t.storage
        {
            let free = nix::sys::statvfs::statvfs(dir.as_path())
                .map(|v| v.blocks_available() * v.fragment_size())
                .with_context(|| format!("statvfs {}", dir.display()))?;
            if free < t.disk_size.bytes() {
                bail!(
                    "target {:?}: a fixed image of disk_size {} does not fit in {} ({} free); lower disk_size or use variant = \"dynamic\"",
                    t.name,
                    t.disk_size,
                    dir.display(),
                    zvbench_agent::ByteSize(free)
                );
            }
        }
        if let StorageSpec::Zvol(z) = &t.storage {
            if !Path::new("/dev/zfs").exists() || !Path::new("/sys/module/zfs").exists() {
                bail!(
                    "target {:?}: zvols need kernel OpenZFS (/sys/module/zfs); zfs-fuse has none. Install zfsutils-linux and zfs-dkms, or use storage = \"loop\" with dir on a ZFS dataset",
                    t.name
                );
            }
            crate::host::zfs::exists_argv(&z.parent)
                .run()
                .with_context(|| {
                    format!(
                        "target {:?}: parent dataset {} does not exist; create it with zfs create",
                        t.name, z.parent
                    )
                })?;
            if let Some(to) = &z.send_to {
                crate::host::zfs::exists_argv(to).run().with_context(|| {
                    format!(
                        "target {:?}: send_to dataset {to} does not exist; create it on the second pool with zfs create",
                        t.name
                    )
                })?;
            }
        }
        if let Some(g) = &t.guest {
            let iso =
                g.hypervisor == Hypervisor::Virtualbox || g.boot == crate::scenario::Boot::Iso;
            if iso {
                crate::guest::iso::check_tools().with_context(|| format!("target {:?}", t.name))?;
            }
            if g.hypervisor == Hypervisor::Virtualbox {
                VBoxManage::detect(vboxmanage).with_context(|| format!("target {:?}", t.name))?;
            }
        }
    }
    Ok(())
}

/// Checks everything about the host that can fail before anything is provisioned:
/// [`checks`], then the guest kernel and agent.
pub fn preflight(plan: &Plan, opts: &RunOptions) -> Result<()> {
    checks(plan, &opts.allow_destroy, &opts.vboxmanage)?;
    for t in &plan.targets {
        if t.guest.is_some() {
            if opts.kernel.is_none() {
                bail!("guest targets need a guest kernel");
            }
            if !opts.agent.exists() {
                bail!(
                    "the guest agent {} does not exist; build it with scripts/build-agent",
                    opts.agent.display()
                );
            }
        }
    }
    Ok(())
}

/// The context of a run's error when it stopped before creating its own results files:
/// `--out` holds nothing of this run (perhaps another run's results), so nothing may be
/// reported there.
#[derive(Debug, thiserror::Error)]
#[error("nothing of this run was written to {}", .0.display())]
pub struct NothingWritten(pub PathBuf);

/// Checks the host and creates the run's results files.
fn begin(plan: &Plan, opts: &RunOptions, stop: &Interrupt) -> Result<ResultsSink> {
    preflight(plan, opts)?;
    if stop.is_set() {
        bail!("interrupted");
    }
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    ResultsSink::create(&opts.out)
}

/// Runs a validated plan. Returns the rows written; failing targets are reported and the
/// run goes on with the next, then fails at the end. An error before the results files
/// exist has the context [`NothingWritten`].
pub fn run(plan: &Plan, opts: &RunOptions, stop: &Interrupt) -> Result<Vec<ResultRow>> {
    let mut sink =
        begin(plan, opts, stop).map_err(|e| e.context(NothingWritten(opts.out.clone())))?;
    let run_id = provenance::run_id();
    // Held until every target is torn down: `zvbench clean` leaves a live run alone.
    let lock = RunLock::acquire(&opts.runtime, &run_id)?;
    let given = provenance::Given {
        accel: opts.accel,
        kernel: opts.kernel.as_ref(),
        scenario_text: &opts.scenario_text,
    };
    let mut prov = provenance::collect(&run_id, &given, plan)?;
    provenance::write(&opts.out, &prov)?;
    let mut progress = Progress {
        start: Instant::now(),
        total: plan.targets.len() * plan.repetitions as usize,
        done: 0,
    };
    let mut failures = Vec::new();
    for t in &plan.targets {
        if stop.is_set() {
            bail!("interrupted");
        }
        let tr = TargetRun {
            plan,
            opts,
            t,
            lock: &lock,
            stop,
        };
        let r = run_target(&tr, &mut sink, &mut progress, &mut prov);
        provenance::write(&opts.out, &prov)?;
        if let Err(e) = r {
            if stop.is_set() {
                return Err(e);
            }
            let why = crate::chain(&e);
            crate::observe::warning!("zvbench: target {:?} failed: {why}", t.name);
            failures.push(format!("{} ({why})", t.name));
            progress.done += plan.repetitions as usize;
        }
    }
    if !failures.is_empty() {
        bail!(
            "targets failed: {}; their results so far are in {}",
            failures.join("; "),
            opts.out.display()
        );
    }
    Ok(sink.rows)
}

/// One target of a run: what its repetitions share.
struct TargetRun<'a> {
    plan: &'a Plan,
    opts: &'a RunOptions,
    t: &'a TargetPlan,
    lock: &'a RunLock,
    stop: &'a Interrupt,
}

fn run_target(
    tr: &TargetRun,
    sink: &mut ResultsSink,
    progress: &mut Progress,
    prov: &mut RunInfo,
) -> Result<()> {
    let (plan, t) = (tr.plan, tr.t);
    let mut p: Provisioned = provision(t, tr.lock, &tr.opts.allow_destroy)
        .with_context(|| format!("provision {:?}", t.name))?;
    prov.storage.insert(t.name.clone(), p.props.clone());
    if let Some(z) = &p.zvol {
        zfs::snapshot_clean_argv(z).run()?;
        prov.storage_mut(&t.name).repetitions_start =
            Some(format!("each from {z}@{}", zfs::CLEAN_SNAPSHOT));
    }
    let started = Instant::now();
    for rep in 1..=plan.repetitions {
        if tr.stop.is_set() {
            bail!("interrupted");
        }
        if let (Some(z), true) = (&p.zvol, rep > 1) {
            zfs::rollback_clean_argv(z).run()?;
        }
        progress.step(&format!("{} repetition {rep}/{}", t.name, plan.repetitions));
        match (&t.guest, &p.host_file, &p.disk) {
            (None, Some(file), _) => tr.host_rep(&p, file, rep, sink)?,
            (Some(cfg), _, Some((disk, format))) => {
                tr.guest_rep(&p, cfg, (disk, *format), rep, sink, prov)?
            }
            _ => bail!(
                "target {:?} has neither a host file nor a guest disk",
                t.name
            ),
        }
        progress.done += 1;
        if tr.auto_stop(rep, started, sink, prov).is_some() {
            progress.done += (plan.repetitions - rep) as usize;
            break;
        }
    }
    tr.send_step(&mut p, prov)
}

impl TargetRun<'_> {
    /// One repetition on the host: each pass run here, between counter reads.
    fn host_rep(
        &self,
        p: &Provisioned,
        file: &Path,
        rep: u32,
        sink: &mut ResultsSink,
    ) -> Result<()> {
        // A zvol on the host is zvbench's own, created for this run.
        let own_device = p.zvol.is_some();
        let below = Below {
            host_stat: None,
            zil: p.zil.as_ref(),
            vdevs: p.vdevs.as_ref(),
        };
        for spec in passes_for(self.plan, file, rep, own_device) {
            crate::observe::progress!("      {} on the host", spec.label);
            // A fill pass makes no row: no counters (and no `zpool sync`) around it.
            let measured = spec.label != "fill";
            let counters = || measured.then(|| below.read(None));
            let before = counters();
            let rec = run_pass(&spec, &mut StopOnSignal(self.stop))
                .with_context(|| format!("{} on the host", spec.label))?;
            if let (Some(before), Some(after)) = (before, counters()) {
                let mut row = base_row(self.t, &rec, rep);
                zfs_layers(&mut row, &delta(&before, &after));
                sink.add(row, &rec, None)?;
            }
        }
        Ok(())
    }

    /// One repetition in a guest: the hypervisor chosen, the VM booted through it, each
    /// record written as it arrives (or, under a power-cut check, once the log is read).
    fn guest_rep(
        &self,
        p: &Provisioned,
        cfg: &GuestConfig,
        (disk, format): (&Path, ImageFormat),
        rep: u32,
        sink: &mut ResultsSink,
        prov: &mut RunInfo,
    ) -> Result<()> {
        let (t, opts) = (self.t, self.opts);
        p.check()?;
        let kernel = opts.kernel.as_ref().context("no guest kernel")?;
        let work = opts.out.join("guests").join(format!("{}-{rep}", t.name));
        let pc_files = opts
            .powercut
            .map(|_| (work.join("powercut.log"), work.join("powercut.img")));
        let hv = hypervisor(t, cfg, (disk, format), opts, pc_files.clone())?;
        let powercut = opts.powercut.filter(|_| hv.write_log().is_some());
        let pc_files = pc_files.filter(|_| powercut.is_some());
        let guest_disk = PathBuf::from(crate::guest::kernel::guest_disk(cfg.bus));
        let mut passes = passes_for(self.plan, &guest_disk, rep, true);
        if powercut.is_some() {
            powercut_passes(&mut passes, rep);
        } else if opts.powercut.is_some() {
            crate::observe::warning!("zvbench: warning: target {:?} is not checked for power cuts: it has no write log (QEMU guests use blklogwrites, VirtualBox a FUSE log under a VDI or dynamic VMDK file; not under a raw-disk or fixed VMDK)", t.name);
        }
        if let Some(settings) = hv.settings(cfg)? {
            prov.storage_mut(&t.name).virtualbox = Some(settings);
        }
        if let Some((_, img)) = &pc_files {
            std::fs::create_dir_all(&work)?;
            // VirtualBox creates its image at start and copies it there itself.
            if cfg.hypervisor == Hypervisor::Qemu {
                crate::powercut::copy_disk(disk, img)?;
            }
        }
        let guest = Guest {
            cfg,
            kernel,
            agent: &opts.agent,
            below: Below {
                host_stat: p.host_stat.as_ref(),
                zil: p.zil.as_ref(),
                vdevs: p.vdevs.as_ref(),
            },
            work,
            timeout: Duration::from_secs(self.plan.guest_timeout_s),
            name: vm_name(&self.lock.run_id, &t.name, rep),
        };
        let mut boot = None;
        let mut pending = Vec::new();
        let mut on_pass = |gp: GuestPass| {
            boot = Some(gp.boot);
            if gp.record.label == "fill" {
                return Ok(());
            }
            let row = guest_row(t, (hv.as_ref(), cfg), &gp, rep);
            if powercut.is_some() {
                // Checked once QEMU is dead, so the check steals no time from a pass.
                pending.push((row, gp.record, gp.powercut, gp.boot));
                return Ok(());
            }
            sink.add(row, &gp.record, Some(&gp.boot))
        };
        boot::run(hv.as_ref(), &guest, &passes, self.stop, &mut on_pass)
            .inspect_err(|_| remove_powercut_files(pc_files.as_ref(), powercut))?;
        // Flushes the hypervisor stopped passing while the VM ran.
        if let Some(line) = hv.flushes_disabled(&guest.work) {
            prov.storage_mut(&t.name)
                .async_flushes_disabled
                .insert(rep.to_string(), line);
        }
        if let Some(b) = boot {
            prov.boots
                .insert(format!("{}-{rep}", t.name), serde_json::to_value(b)?);
        }
        if let (Some(pc), Some((log, img))) = (powercut, &pc_files) {
            crate::observe::progress!(
                "      power cuts: checking the log of {} repetition {rep}",
                t.name
            );
            let r = finish_powercut(pc, log, img, format, pending, sink);
            remove_powercut_files(pc_files.as_ref(), powercut);
            r?;
        }
        Ok(())
    }

    /// With `repetitions = "auto"`: whether the target stops after `rep` (converged, out
    /// of time or of repetitions), noted in `prov`.
    fn auto_stop(
        &self,
        rep: u32,
        started: Instant,
        sink: &ResultsSink,
        prov: &mut RunInfo,
    ) -> Option<&'static str> {
        let auto = self.plan.auto?;
        let widths = auto_widths(&sink.rows, &self.t.name);
        let why = if rep >= AUTO_MIN_REPS && widths.values().all(|w| *w <= AUTO_HALF_WIDTH_PCT) {
            "converged"
        } else if started.elapsed().as_secs() >= auto.max_s {
            "max_auto_s"
        } else if rep == self.plan.repetitions {
            "max_repetitions"
        } else {
            return None;
        };
        prov.repetitions.insert(
            self.t.name.clone(),
            serde_json::json!({
                "mode": "auto",
                "count": rep,
                "stopped": why,
                "target_half_width_pct": AUTO_HALF_WIDTH_PCT,
                "half_width_pct": widths,
            }),
        );
        Some(why)
    }

    /// A zvol target's `send_to` step, after its repetitions.
    fn send_step(&self, p: &mut Provisioned, prov: &mut RunInfo) -> Result<()> {
        let t = self.t;
        if let (Some(z), StorageSpec::Zvol(cfg)) = (p.zvol.clone(), &t.storage) {
            if let Some(to) = &cfg.send_to {
                crate::observe::progress!("      zfs send {z} | zfs receive under {to}");
                let limit = Duration::from_secs(self.plan.guest_timeout_s);
                let sent = crate::host::send::send_step(p, self.lock, &z, to, limit, self.stop)
                    .with_context(|| format!("send step of {:?} (send_to = {to:?})", t.name))?;
                crate::observe::progress!(
                    "      sent {} bytes in {:.2} s ({:.1} MiB/s)",
                    sent.bytes,
                    sent.seconds,
                    sent.mib_per_s
                );
                prov.storage_mut(&t.name).send =
                    Some(zvbench_reports::run_json::Checked::Valid(sent));
            }
        }
        Ok(())
    }
}

/// The one place a target's hypervisor is chosen: QEMU or VirtualBox, given its disk.
fn hypervisor(
    t: &TargetPlan,
    cfg: &GuestConfig,
    (disk, format): (&Path, ImageFormat),
    opts: &RunOptions,
    powercut: Option<(PathBuf, PathBuf)>,
) -> Result<Box<dyn boot::Hypervisor>> {
    Ok(match cfg.hypervisor {
        Hypervisor::Qemu => Box::new(Qemu {
            accel: opts.accel,
            disk: (disk.to_owned(), format.qemu_driver()),
            powercut_log: powercut.map(|p| p.0),
            firmware: Firmware::for_direct_boot(),
        }),
        Hypervisor::Virtualbox => {
            let disk = match &t.storage {
                StorageSpec::Image { variant, .. } => VboxDisk::Image {
                    path: disk.to_owned(),
                    format: if format == ImageFormat::Vmdk {
                        "VMDK"
                    } else {
                        "VDI"
                    },
                    variant: *variant,
                    size: t.disk_size.bytes(),
                },
                _ => VboxDisk::Raw {
                    device: disk.to_owned(),
                },
            };
            Box::new(VirtualBox {
                vbox: VBoxManage::detect(&opts.vboxmanage)?,
                disk,
                powercut,
            })
        }
    })
}

/// How a guest of hypervisor `h` waits at each phase mark.
fn handshake(h: Hypervisor) -> Handshake {
    match h {
        Hypervisor::Qemu => Handshake::Ack,
        Hypervisor::Virtualbox => Handshake::Pause(vbox::MARK_PAUSE),
    }
}

/// The guest ISO of one target of a plan (repetition 1), as `zvbench run` builds it:
/// `zvbench image build`. The handshake follows the target's hypervisor.
pub fn guest_image(
    plan: &Plan,
    target: &str,
    kernel: &GuestKernel,
    agent: &Path,
    out: &Path,
) -> Result<()> {
    let Some(t) = plan.targets.iter().find(|t| t.name == target) else {
        bail!(
            "no target {target:?} in the scenario; its targets: {}",
            plan.targets
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let Some(g) = &t.guest else {
        bail!("target {target:?} is the host baseline: it has no guest to boot");
    };
    let disk = PathBuf::from(crate::guest::kernel::guest_disk(g.bus));
    let passes = passes_for(plan, &disk, 1, true);
    let initramfs = build_initramfs(
        kernel,
        g.bus,
        agent,
        &passes,
        handshake(g.hypervisor),
        false,
    )?;
    crate::guest::iso::build(&kernel.image, &initramfs, APPEND, out)
}

/// A guest pass's row: the base row with the hypervisor's accelerator and cache setting,
/// the layers below the guest and the boot.
fn guest_row(
    t: &TargetPlan,
    (hv, cfg): (&dyn boot::Hypervisor, &GuestConfig),
    gp: &GuestPass,
    rep: u32,
) -> ResultRow {
    let mut row = base_row(t, &gp.record, rep);
    if let Some(accel) = hv.accel() {
        row.accel = accel.as_str().into();
    }
    row.cache = hv.cache(cfg);
    let flush_time = hv.flush_time();
    row.hv_flushes = gp.lower.hv.map(|h| h.flush_operations);
    row.hv_flush_ms = gp
        .lower
        .hv
        .filter(|_| flush_time)
        .map(|h| h.flush_total_time_ns as f64 / 1e6);
    row.host_dev_flushes = gp.lower.host_flushes;
    row.host_dev_flush_ms = gp.lower.host_flush_ms;
    row.host_dev_write_bytes = gp.lower.host_write_bytes;
    zfs_layers(&mut row, &gp.lower);
    row.guest_boot_ms = gp.boot.guest_uptime_ms;
    row.boot_hello_ms = gp.boot.hello_ms;
    row.boot_first_pass_ms = gp.boot.first_pass_ms;
    row
}

/// Makes passes checkable by a power cut: every written block carries its header, and each
/// write pass its own seed (so a block an earlier pass left durable at the same place,
/// identical but for the seed, never passes for a later pass's lost block); a read pass
/// keeps the seed of the write before it.
pub fn powercut_passes(passes: &mut [PassSpec], rep: u32) {
    let mut seed = u64::from(rep);
    for (i, p) in passes.iter_mut().enumerate() {
        if p.workload == Workload::Seqwr {
            p.verify = true;
            seed = (u64::from(rep) << 32) | (i as u64 + 1);
        }
        p.seed = seed;
    }
}

/// Checks a boot's passes against its power-cut log, fills their power-cut columns and
/// writes their rows.
fn finish_powercut(
    pc: crate::powercut::Options,
    log: &Path,
    img: &Path,
    format: ImageFormat,
    pending: Vec<(ResultRow, PassRecord, Option<PassTrace>, BootTimeline)>,
    sink: &mut ResultsSink,
) -> Result<()> {
    let checked: Vec<_> = pending
        .iter()
        .map(|(_, rec, tr, _)| {
            tr.as_ref()
                .filter(|_| rec.kind == Workload::Seqwr && rec.verify)
                .map(|t| (t, rec.bs_bytes, rec.seed))
        })
        .collect();
    let sums = crate::powercut::check_boot(log, img, format, &checked, pc.cuts)?;
    for ((mut row, rec, _, boot), sum) in pending.into_iter().zip(sums) {
        if let Some(s) = sum {
            crate::powercut::fill_row(&mut row, &s);
        }
        sink.add(row, &rec, Some(&boot))?;
    }
    Ok(())
}

/// Removes a power-cut log and reconstruction unless `--keep` was given.
fn remove_powercut_files(files: Option<&(PathBuf, PathBuf)>, pc: Option<crate::powercut::Options>) {
    if let (Some((log, img)), Some(pc)) = (files, pc) {
        if !pc.keep {
            let _ = std::fs::remove_file(log);
            let _ = std::fs::remove_file(img);
        }
    }
}

/// Per workload of `target`, how far the 95% interval of the median MiB/s reaches, percent
/// (`repetitions = "auto"`); a width that is not finite is written as 1e9 (JSON has no inf).
fn auto_widths(rows: &[ResultRow], target: &str) -> std::collections::BTreeMap<String, f64> {
    let mut by: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
    for r in rows.iter().filter(|r| r.target == target) {
        by.entry(r.workload.clone()).or_default().push(r.mib_per_s);
    }
    by.into_iter()
        .map(|(w, v)| {
            let h = zvbench_reports::compare::median_half_width_pct(&v);
            (w, if h.is_finite() { h } else { 1e9 })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use zvbench_agent::ByteSize;

    #[test]
    fn auto_widths_per_workload_of_the_target() {
        let row = |t: &str, w: &str, mib| ResultRow {
            target: t.into(),
            workload: w.into(),
            mib_per_s: mib,
            ..Default::default()
        };
        let rows = [
            row("a", "steady", 100.0),
            row("a", "steady", 100.5),
            row("a", "steady", 99.5),
            row("a", "noisy", 50.0),
            row("a", "noisy", 150.0),
            row("a", "noisy", 100.0),
            row("b", "steady", 1.0),
        ];
        let w = auto_widths(&rows, "a");
        assert_eq!(w.len(), 2);
        assert!(w["steady"] <= AUTO_HALF_WIDTH_PCT, "{w:?}");
        assert!(w["noisy"] > AUTO_HALF_WIDTH_PCT, "{w:?}");
        assert_eq!(auto_widths(&rows, "b")["steady"], 1e9);
    }

    /// results.jsonl was truncated by File::create when only results.csv was checked.
    #[test]
    fn powercut_passes_get_their_own_seeds_and_reads_follow_their_write() {
        let spec = |w| PassSpec::new("/dev/vda".into(), w, ByteSize(4096), ByteSize(8192));
        let mut v = vec![
            spec(Workload::Seqwr),
            spec(Workload::Seqrd),
            spec(Workload::Seqwr),
        ];
        powercut_passes(&mut v, 2);
        assert!(v[0].verify && v[2].verify);
        assert_ne!(v[0].seed, v[2].seed);
        assert_eq!(
            v[1].seed, v[0].seed,
            "a read checks what the write before it wrote"
        );
    }

    #[test]
    fn the_sink_never_overwrites_earlier_results() {
        for (existing, other) in [
            ("results.csv", "results.jsonl"),
            ("results.jsonl", "results.csv"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join(existing), "earlier").unwrap();
            let e = ResultsSink::create(dir.path()).err().unwrap();
            assert!(
                crate::chain(&e).contains("choose a new --out directory"),
                "{e:#}"
            );
            assert_eq!(
                std::fs::read_to_string(dir.path().join(existing)).unwrap(),
                "earlier"
            );
            assert!(!dir.path().join(other).exists(), "{other} left behind");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(ResultsSink::create(dir.path()).is_ok());
    }
}
