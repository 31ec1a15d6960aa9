//! `zvbench run`: validate, check the host, provision each target, run its passes
//! (on the host or in guests), write every result as it arrives, tear down.

use crate::guest::{GuestPass, GuestRun};
use crate::kernel::GuestKernel;
use crate::provenance;
use crate::qemu::Accel;
use crate::scenario::{key_name, Hypervisor, Plan, StorageKind, StorageSpec, TargetPlan};
use crate::storage::{check_blockdev, provision, Provisioned};
use crate::vbox::{VboxDisk, VboxRun};
use crate::zfs;
use crate::Interrupt;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zvbench_agent::pass::{run_pass, PassSpec, Quiet, Workload};
use zvbench_agent::PassRecord;
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
    /// Creates `results.csv` and `results.jsonl` in `out`.
    pub fn create(out: &Path) -> Result<ResultsSink> {
        let csv_path = out.join("results.csv");
        if csv_path.exists() {
            bail!("{} already exists; choose a new --out directory so no earlier result is overwritten", csv_path.display());
        }
        Ok(ResultsSink {
            csv: csv::Writer::from_path(&csv_path)?,
            jsonl: File::create(out.join("results.jsonl"))?,
            rows: Vec::new(),
        })
    }

    fn add(&mut self, row: ResultRow, rec: &PassRecord) -> Result<()> {
        self.csv.serialize(&row)?;
        self.csv.flush()?;
        let mut v = serde_json::to_value(rec)?;
        v["target"] = row.target.clone().into();
        v["workload"] = row.workload.clone().into();
        v["repetition"] = row.repetition.into();
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
        eprintln!(
            "[{}/{}] {what} · {el} s elapsed, {left}",
            self.done + 1,
            self.total
        );
    }
}

/// The passes of one repetition of a target: a fill before any seqrd with no seqwr before it.
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
                ..s.clone()
            });
        }
        s.label = w.name.clone();
        v.push(s);
    }
    v
}

fn base_row(t: &TargetPlan, accel: Accel, rec: &PassRecord, rep: u32) -> ResultRow {
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
            match g.hypervisor {
                Hypervisor::Qemu => {
                    row.accel = accel.as_str().into();
                    row.cache = key_name(g.cache);
                }
                Hypervisor::Virtualbox => row.cache = g.vbox.describe(),
            }
        }
    }
    row
}

/// Checks everything about the host that can fail before anything is provisioned.
pub fn preflight(plan: &Plan, opts: &RunOptions) -> Result<()> {
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
            check_blockdev(device, &opts.allow_destroy)
                .with_context(|| format!("target {:?}", t.name))?;
        }
        if let StorageSpec::Zvol(z) = &t.storage {
            if !Path::new("/dev/zfs").exists() || !Path::new("/sys/module/zfs").exists() {
                bail!(
                    "target {:?}: zvols need kernel OpenZFS (/sys/module/zfs); zfs-fuse has none. Install zfsutils-linux and zfs-dkms, or use storage = \"loop\" with dir on a ZFS dataset",
                    t.name
                );
            }
            crate::zfs::exists_argv(&z.parent).run().with_context(|| {
                format!(
                    "target {:?}: parent dataset {} does not exist; create it with zfs create",
                    t.name, z.parent
                )
            })?;
        }
        if let Some(g) = &t.guest {
            let iso =
                g.hypervisor == Hypervisor::Virtualbox || g.boot == crate::scenario::Boot::Iso;
            if iso {
                crate::iso::check_tools().with_context(|| format!("target {:?}", t.name))?;
            }
            if g.hypervisor == Hypervisor::Virtualbox {
                crate::vbox::detect().with_context(|| format!("target {:?}", t.name))?;
            }
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

/// Runs a validated plan. Returns the rows written; failing targets are reported and the
/// run goes on with the next, then fails at the end.
pub fn run(plan: &Plan, opts: &RunOptions, stop: &Interrupt) -> Result<Vec<ResultRow>> {
    preflight(plan, opts)?;
    std::fs::create_dir_all(&opts.out).with_context(|| format!("create {}", opts.out.display()))?;
    let mut sink = ResultsSink::create(&opts.out)?;
    let run_id = provenance::run_id();
    let mut prov = provenance::collect(&run_id, opts, plan);
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
        let r = run_target(
            plan,
            opts,
            t,
            &run_id,
            stop,
            &mut sink,
            &mut progress,
            &mut prov,
        );
        provenance::write(&opts.out, &prov)?;
        if let Err(e) = r {
            if stop.is_set() {
                return Err(e);
            }
            eprintln!("zvbench: target {:?} failed: {}", t.name, crate::chain(&e));
            failures.push(t.name.clone());
            progress.done += plan.repetitions as usize;
        }
    }
    if !failures.is_empty() {
        bail!(
            "targets failed: {} (their results so far are in {})",
            failures.join(", "),
            opts.out.display()
        );
    }
    Ok(sink.rows)
}

#[allow(clippy::too_many_arguments)]
fn run_target(
    plan: &Plan,
    opts: &RunOptions,
    t: &TargetPlan,
    run_id: &str,
    stop: &Interrupt,
    sink: &mut ResultsSink,
    progress: &mut Progress,
    prov: &mut serde_json::Value,
) -> Result<()> {
    let p: Provisioned = provision(t, run_id, &opts.allow_destroy)
        .with_context(|| format!("provision {:?}", t.name))?;
    prov["storage"][&t.name] = serde_json::Value::Object(p.props.clone());
    if let Some(z) = &p.zvol {
        zfs::snapshot_clean_argv(z).run()?;
        prov["storage"][&t.name]["repetitions_start"] =
            format!("each from {z}@{}", zfs::CLEAN_SNAPSHOT).into();
    }
    for rep in 1..=plan.repetitions {
        if stop.is_set() {
            bail!("interrupted");
        }
        if let (Some(z), true) = (&p.zvol, rep > 1) {
            zfs::rollback_clean_argv(z).run()?;
        }
        progress.step(&format!("{} repetition {rep}/{}", t.name, plan.repetitions));
        match (&t.guest, &p.host_file, &p.disk) {
            (None, Some(file), _) => {
                for spec in passes_for(plan, file, rep, false) {
                    eprintln!("      {} on the host", spec.label);
                    let rec = run_pass(&spec, &mut Quiet)
                        .with_context(|| format!("{} on the host", spec.label))?;
                    if rec.label != "fill" {
                        sink.add(base_row(t, opts.accel, &rec, rep), &rec)?;
                    }
                }
            }
            (Some(cfg), _, Some((disk, format))) => {
                let kernel = opts.kernel.as_ref().context("no guest kernel")?;
                let guest_disk = PathBuf::from(crate::kernel::guest_disk(cfg.bus));
                let passes = passes_for(plan, &guest_disk, rep, true);
                let work = opts.out.join("guests").join(format!("{}-{rep}", t.name));
                let timeout = Duration::from_secs(plan.guest_timeout_s);
                let mut on_pass = |gp: GuestPass| {
                    if gp.record.label == "fill" {
                        return Ok(());
                    }
                    let mut row = base_row(t, opts.accel, &gp.record, rep);
                    row.hv_flushes = gp.lower.hv.map(|h| h.flush_operations);
                    row.hv_flush_ms = gp
                        .lower
                        .hv
                        .filter(|_| cfg.hypervisor == Hypervisor::Qemu)
                        .map(|h| h.flush_total_time_ns as f64 / 1e6);
                    row.host_dev_flushes = gp.lower.host_flushes;
                    row.host_dev_flush_ms = gp.lower.host_flush_ms;
                    row.host_dev_write_bytes = gp.lower.host_write_bytes;
                    row.zil_commits = gp.lower.zil_commits;
                    row.vdev_flushes = gp.lower.vdev_flushes;
                    row.guest_boot_ms = Some(gp.boot_ms);
                    sink.add(row, &gp.record)
                };
                match cfg.hypervisor {
                    Hypervisor::Qemu => GuestRun {
                        cfg,
                        kernel,
                        agent: &opts.agent,
                        accel: opts.accel,
                        disk: (disk, format),
                        host_stat: p.host_stat.as_ref(),
                        zil: p.zil.as_ref(),
                        vdevs: &p.vdevs,
                        work,
                        timeout,
                    }
                    .run(&passes, stop, &mut on_pass)?,
                    Hypervisor::Virtualbox => {
                        let major = crate::vbox::detect()?;
                        let vdisk = match &t.storage {
                            StorageSpec::Image { variant, .. } => VboxDisk::Image {
                                path: disk.clone(),
                                format: if *format == "vmdk" { "VMDK" } else { "VDI" },
                                variant: *variant,
                                size: t.disk_size.bytes(),
                            },
                            _ => VboxDisk::Raw {
                                device: disk.clone(),
                            },
                        };
                        prov["storage"][&t.name]["virtualbox"] =
                            crate::vbox::settings(major, cfg, &vdisk)?;
                        VboxRun {
                            cfg,
                            major,
                            kernel,
                            agent: &opts.agent,
                            vm: crate::vbox::vm_name(run_id, &t.name, rep),
                            disk: vdisk,
                            host_stat: p.host_stat.as_ref(),
                            zil: p.zil.as_ref(),
                            vdevs: &p.vdevs,
                            work,
                            timeout,
                        }
                        .run(&passes, stop, &mut on_pass)?
                    }
                }
            }
            _ => bail!(
                "target {:?} has neither a host file nor a guest disk",
                t.name
            ),
        }
        progress.done += 1;
    }
    Ok(())
}
