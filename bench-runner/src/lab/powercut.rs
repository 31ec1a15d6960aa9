//! A power cut under ZFS (`zvbench lab --powercut N`): the lab VM's pool disk is logged by
//! `blklogwrites` at the host's QEMU, the agent writes a zvol per sync setting inside the
//! lab (no nested guest) with an fsync after every write and sends each acknowledgement
//! over the lab's second serial port (the frame channel of a guest boot, read by the same
//! [`Session`]), and the host notes the log's length at each. The VM is then killed hard.
//!
//! For each cut point, the pool disk is rebuilt from the log's prefix as stable storage
//! would hold it ([`crate::powercut::Replay`], the legal worst case), then one second lab
//! VM imports the pool from each reconstruction in turn (read-write, so the ZIL replays;
//! each is a scratch copy), copies out the zvol's acknowledged bytes and exports it. The
//! host checks those blocks with the agent's verify headers ([`crate::powercut::check_cut`]).
//! Two lab boots in all, however many cuts.

use super::cutstep::{self, Check, Plan, SYNCS};
use super::machine::{self, Attach, LabOptions};
use crate::guest::{GuestPass, Session, Snapshot, Step};
use crate::hypervisor::qemu::{qemu_escape, QemuGuard};
use crate::powercut::{check_cut, pick_cuts, scan, Ack, Op, Replay, Summary};
use crate::Interrupt;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::io::{Read, Write};
use std::ops::Range;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zvbench_agent::pass::{PassSpec, SyncMode, Workload};
use zvbench_agent::ByteSize;
use zvbench_reports::run_json::{LabPowercut, RunInfo};
use zvbench_reports::ResultRow;

/// The pool's name inside the lab.
pub const POOL: &str = "zvcut";
/// Block size of the write passes.
const BS: u64 = 4096;

/// What `zvbench lab --powercut` was asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// Random cut points per sync setting, besides the end.
    pub cuts: usize,
    /// Blocks each write pass writes (an fsync after each).
    pub blocks: u64,
    /// Where results.csv and results.jsonl go (must not hold them already).
    pub out: PathBuf,
    /// Keep the log and the reconstructions (in a directory named at the end).
    pub keep: bool,
}

/// How long each step took, seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timing {
    /// The write VM, boot to the hard kill.
    pub write_s: f64,
    /// Reading the log and writing the reconstructions.
    pub rebuild_s: f64,
    /// The verification VM, boot to power-off.
    pub verify_s: f64,
}

/// The write passes: one per sync setting, on its zvol, each with its own seed.
pub fn passes(blocks: u64) -> Vec<PassSpec> {
    SYNCS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut p = PassSpec::new(
                cutstep::zvol_dev(POOL, s),
                Workload::Seqwr,
                ByteSize(BS),
                ByteSize(blocks * BS),
            );
            p.direct = true;
            p.sync = SyncMode::Fsync;
            p.verify = true;
            p.seed = 0x5a_0000 + i as u64 + 1;
            p.label = "fsync-4k".into();
            p
        })
        .collect()
}

/// The agent's job: the passes, frames on the lab's ttyS1, a mark handshake, and a
/// [`zvbench_agent::frame::Frame::Synced`] after every completed fsync.
fn agent_job(blocks: u64) -> zvbench_agent::job::Job {
    let passes = passes(blocks);
    zvbench_agent::job::Job {
        schema_version: zvbench_agent::SCHEMA_VERSION,
        modules: Vec::new(),
        disk: passes[0].path.clone(),
        disk_wait_s: 30,
        frame_port: "/dev/ttyS1".into(),
        ack_timeout_ms: 120_000,
        mark_pause_ms: 0,
        sync_marks: true,
        passes,
    }
}

/// The write VM's frame channel and pool-disk log: a [`Session`] fed from ttyS1.
struct Frames<'a> {
    log: PathBuf,
    session: Session<'a>,
    stream: Option<UnixStream>,
    sock: PathBuf,
    got: Vec<GuestPass>,
}

impl Attach for Frames<'_> {
    fn disk_log(&self) -> Option<&Path> {
        Some(&self.log)
    }

    fn args(&mut self, work: &Path) -> Result<Vec<OsString>> {
        self.sock = work.join("frames.sock");
        Ok(vec![
            "-chardev".into(),
            format!(
                "socket,id=frames,path={},server=on,wait=on",
                qemu_escape(&self.sock)
            )
            .into(),
            "-serial".into(),
            "chardev:frames".into(),
        ])
    }

    fn started(&mut self, qemu: &mut QemuGuard) -> Result<()> {
        let s = crate::hypervisor::qemu::connect(&self.sock, Duration::from_secs(20), qemu)
            .context("connect to the lab VM's frame channel")?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        self.stream = Some(s);
        Ok(())
    }

    fn poll(&mut self) -> Result<bool> {
        let Some(s) = self.stream.as_mut() else {
            return Ok(false);
        };
        let mut buf = [0u8; 16 << 10];
        let n = match s.read(&mut buf) {
            Ok(0) => bail!("the lab VM closed its frame channel before the agent was done"),
            Ok(n) => n,
            Err(e) if crate::guest::no_bytes_yet(&e) => return Ok(false),
            Err(e) => return Err(anyhow::Error::from(e).context("read the frame channel")),
        };
        let mut w = s.try_clone()?;
        let got = &mut self.got;
        let step = self.session.feed(
            &buf[..n],
            &mut Snapshot::default,
            &mut || Ok(w.write_all(b"A")?),
            &mut |gp| {
                got.push(gp);
                Ok(())
            },
        )?;
        Ok(step == Step::Done)
    }
}

/// Copies the bytes `range` of `from` to a new sparse file `to` (only its data extents).
fn sparse_copy(from: &std::fs::File, range: &Range<u64>, to: &Path) -> Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let dst = std::fs::File::create(to).with_context(|| format!("create {}", to.display()))?;
    dst.set_len(range.end - range.start)?;
    let mut pos = range.start;
    let mut buf = vec![0u8; 1 << 20];
    while pos < range.end {
        let data = match lseek(from.as_raw_fd(), i64::try_from(pos)?, Whence::SeekData) {
            Ok(d) => d as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(e.into()),
        };
        let hole = (lseek(from.as_raw_fd(), i64::try_from(data)?, Whence::SeekHole)? as u64)
            .min(range.end);
        let mut at = data;
        while at < hole {
            let n = buf.len().min((hole - at) as usize);
            from.read_exact_at(&mut buf[..n], at)?;
            dst.write_all_at(&buf[..n], at - range.start)?;
            at += n as u64;
        }
        pos = hole.max(data);
    }
    Ok(())
}

/// The byte range of the first partition of a GPT-partitioned disk (what `zpool create`
/// makes of a whole disk: the pool's vdev is that partition, and `zpool import -d FILE`
/// looks for labels at the file's own start). 512-byte sectors, as the lab's virtio disks.
fn first_partition(disk: &std::fs::File, disk_bytes: u64) -> Result<Range<u64>> {
    use std::os::unix::fs::FileExt;
    let mut h = [0u8; 512];
    disk.read_exact_at(&mut h, 512)?;
    if &h[..8] != b"EFI PART" {
        bail!("the pool disk has no GPT at the cut (zpool create's partition table is not on stable storage)");
    }
    let u64_at = |o: usize| u64::from_le_bytes(h[o..o + 8].try_into().expect("8 bytes"));
    let entries_lba = u64_at(72);
    let entry_size = u32::from_le_bytes(h[84..88].try_into().expect("4 bytes")) as u64;
    if !(128..=4096).contains(&entry_size) || entries_lba.saturating_mul(512) >= disk_bytes {
        bail!("the pool disk's GPT header is damaged");
    }
    let mut e = [0u8; 48];
    disk.read_exact_at(&mut e, entries_lba * 512)?;
    let first = u64::from_le_bytes(e[32..40].try_into().expect("8 bytes"));
    let last = u64::from_le_bytes(e[40..48].try_into().expect("8 bytes"));
    let r = first.saturating_mul(512)..last.saturating_add(1).saturating_mul(512);
    if first == 0 || r.start >= r.end || r.end > disk_bytes {
        bail!("the pool disk's first GPT partition ({first}..={last}) is not on the disk");
    }
    Ok(r)
}

/// One cut to check: its pass, the acknowledgements before it, when it happened.
struct Cut {
    pass: usize,
    acks: Vec<Ack>,
    ms: u64,
    check: Option<Check>,
}

/// Rebuilds the pool disk at each cut point of each pass into `dir` (one sparse scratch
/// image per cut that acknowledged anything), from the log and a disk that was all
/// zeros before it began.
fn rebuild(
    log: &Path,
    disk_bytes: u64,
    traces: &[&crate::guest::PassTrace],
    cuts: usize,
    dir: &Path,
) -> Result<(Vec<Cut>, Vec<u64>)> {
    let file = std::fs::File::open(log).with_context(|| format!("open {}", log.display()))?;
    let entries = scan(&file).with_context(|| format!("read {}", log.display()))?;
    let flushes = traces
        .iter()
        .map(|t| crate::powercut::flushes_in(&entries, t.start_log..t.end_log))
        .collect();
    let mut replay = Replay::new(&file, &entries);
    let stable = dir.join("stable.img");
    let mut img = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&stable)?;
    img.set_len(disk_bytes)?;
    let mut out = Vec::new();
    for (p, trace) in traces.iter().enumerate() {
        for i in pick_cuts(trace.acks.len(), cuts, 0x5a ^ p as u64) {
            let (at, ms, acks) = match trace.acks.get(i) {
                Some(a) => (a.log_len, a.ms, &trace.acks[..=i]),
                None => (trace.end_log, trace.end_ms, &trace.acks[..]),
            };
            let fua = replay.cut(at, &mut img)?;
            let bytes = acks.iter().map(|a| a.blocks).max().unwrap_or(0) * BS;
            let check = if bytes == 0 {
                None
            } else {
                let n = out.len();
                let image = dir.join(format!("cut{n:03}.img"));
                let part = first_partition(&img, disk_bytes)?;
                sparse_copy(&img, &part, &image)?;
                // FUA writes after the last flush are durable by themselves.
                let copy = std::fs::OpenOptions::new().write(true).open(&image)?;
                for &f in &fua {
                    if let Op::Write { offset, data, .. } = &entries[f].op {
                        let (a, b) = (
                            (*offset).max(part.start),
                            (offset + data.len() as u64).min(part.end),
                        );
                        if a < b {
                            let mut buf = vec![0u8; (b - a) as usize];
                            replay.overlay(&[f], &mut buf, a)?;
                            std::os::unix::fs::FileExt::write_all_at(&copy, &buf, a - part.start)?;
                        }
                    }
                }
                Some(Check {
                    image,
                    zvol: SYNCS[p].into(),
                    bytes,
                    out: dir.join(format!("cut{n:03}.zvol")),
                })
            };
            out.push(Cut {
                pass: p,
                acks: acks.to_vec(),
                ms,
                check,
            });
        }
    }
    drop(img);
    std::fs::remove_file(&stable)?;
    Ok((out, flushes))
}

/// The acknowledgements came from the lab VM: none may claim more blocks than its pass
/// writes (they size what is read back).
fn check_acks(traces: &[&crate::guest::PassTrace], blocks: u64) -> Result<()> {
    for (t, s) in traces.iter().zip(SYNCS) {
        if let Some(a) = t.acks.iter().find(|a| a.blocks > blocks) {
            bail!(
                "the lab's agent acknowledged {} blocks on the sync={s} zvol, which it wrote only {blocks} of",
                a.blocks
            );
        }
    }
    Ok(())
}

/// Reads what the verification VM copied out for `c`: at most `c.bytes`, zeros after
/// whatever is missing (the guest's file is untrusted).
fn read_back(c: &Check) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(&c.out)
        .with_context(|| format!("the lab did not copy out {}", c.out.display()))?
        .take(c.bytes)
        .read_to_end(&mut buf)?;
    buf.resize(c.bytes as usize, 0);
    Ok(buf)
}

/// Runs the whole check; `lab` gives the VM settings (memory, CPUs, timeout, the
/// temporary directory, OpenZFS branch); its disks, pool, share and command are set here.
pub fn run(
    lab: &LabOptions,
    o: &Options,
    agent: &Path,
    cache: &Path,
    stop: &Interrupt,
) -> Result<(Vec<ResultRow>, Timing)> {
    let zvol_bytes = check_options(lab, o)?;
    let tmp = tempfile::Builder::new()
        .prefix("zvbench-labcut-")
        .tempdir_in(&lab.tmp)
        .with_context(|| format!("make a directory in {}", lab.tmp.display()))?;
    // Kept whatever happens with --keep (a failed check is what one wants to look at).
    let dir = if o.keep {
        let d = tmp.keep();
        crate::observe::note!("zvbench lab --powercut: keeping {}", d.display());
        Kept::Path(d)
    } else {
        Kept::Temp(tmp)
    };
    // What the lab VMs see (read-write, over 9p): the job, the reconstructions and the
    // plan; the pool disk's log and the frame log stay outside, out of the guest's reach.
    let shared = dir.path().join("share");
    std::fs::create_dir(&shared)?;
    let log = dir.path().join("pool-disk.log");
    std::fs::File::create(&log)?;
    let mut timing = Timing::default();
    let t = Instant::now();
    let got = write_step(
        lab,
        o,
        zvol_bytes,
        agent,
        (dir.path(), &shared, &log),
        cache,
        stop,
    )?;
    timing.write_s = t.elapsed().as_secs_f64();
    let traces: Vec<_> = got
        .iter()
        .map(|g| {
            g.powercut
                .as_ref()
                .context("a pass without its power-cut trace")
        })
        .collect::<Result<_>>()?;
    check_acks(&traces, o.blocks)?;
    let t = Instant::now();
    let cuts_dir = shared.join("cuts");
    std::fs::create_dir(&cuts_dir)?;
    let (cuts, log_flushes) = rebuild(&log, lab.disk_bytes, &traces, o.cuts, &cuts_dir)?;
    timing.rebuild_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    verify_step(lab, &cuts, &shared, cache, stop)?;
    timing.verify_s = t.elapsed().as_secs_f64();
    let rows = record(o, &got, &cuts, &log_flushes, &timing)?;
    Ok((rows, timing))
}

/// Refuses impossible options and earlier results in `--out` before any VM; the size of
/// each zvol.
fn check_options(lab: &LabOptions, o: &Options) -> Result<u64> {
    if o.blocks == 0 || o.blocks > 1 << 16 {
        bail!("--powercut-blocks must be from 1 to 65536");
    }
    let zvol_bytes = (o.blocks * BS).next_multiple_of(1 << 20);
    if zvol_bytes * 2 + (64 << 20) > lab.disk_bytes {
        bail!(
            "--disk-size {} is too small for two zvols of {zvol_bytes} bytes and the pool",
            lab.disk_bytes
        );
    }
    // Refused now rather than after the VMs (the files are created, new, at the end, so a
    // failed check leaves none behind).
    for f in ["results.csv", "results.jsonl", "run.json"] {
        if o.out.join(f).exists() {
            bail!(
                "{} exists; choose a new --out directory so no earlier result is overwritten",
                o.out.join(f).display()
            );
        }
    }
    Ok(zvol_bytes)
}

fn arg(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// The write VM: the zvols made and the agent's job run with the pool disk logged to
/// `log`, killed hard once the agent is done; the passes it reported. `dirs`: the check's
/// directory, the share the VM sees, the log.
fn write_step(
    lab: &LabOptions,
    o: &Options,
    zvol_bytes: u64,
    agent: &Path,
    dirs: (&Path, &Path, &Path),
    cache: &Path,
    stop: &Interrupt,
) -> Result<Vec<GuestPass>> {
    let (dir, shared, log) = dirs;
    let job_path = shared.join("agent-job.json");
    let job = agent_job(o.blocks);
    std::fs::write(&job_path, serde_json::to_vec_pretty(&job)?)?;
    let write_vm = LabOptions {
        disks: 1,
        pools: vec![POOL.into()],
        share: Some(shared.to_owned()),
        argv: vec![
            arg(&std::env::current_exe()?),
            "lab-cut-step".into(),
            "write".into(),
            "--pool".into(),
            POOL.into(),
            "--zvol-size".into(),
            zvol_bytes.to_string(),
            "--agent".into(),
            arg(agent),
            "--job".into(),
            arg(&job_path),
        ],
        ..lab.clone()
    };
    let mut frames = Frames {
        log: log.to_owned(),
        session: Session::new(dir, &job.passes, agent, lab.timeout)?
            .trace_log(Some(log.to_owned())),
        stream: None,
        sock: PathBuf::new(),
        got: Vec::new(),
    };
    crate::observe::progress!(
        "zvbench lab --powercut: write VM (pool disk logged by blklogwrites)"
    );
    let w = machine::run_attached(&write_vm, cache, stop, Some(&mut frames))?;
    if !w.cut {
        bail!(
            "the write step in the lab ended (exit {}) before the agent was done",
            w.code
        );
    }
    Ok(std::mem::take(&mut frames.got))
}

/// The verification VM: the pool imported from each reconstruction of `cuts` and the
/// acknowledged bytes copied out beside it.
fn verify_step(
    lab: &LabOptions,
    cuts: &[Cut],
    shared: &Path,
    cache: &Path,
    stop: &Interrupt,
) -> Result<()> {
    let plan = Plan {
        pool: POOL.into(),
        checks: cuts.iter().filter_map(|c| c.check.clone()).collect(),
    };
    let plan_path = shared.join("verify-plan.json");
    std::fs::write(&plan_path, serde_json::to_vec_pretty(&plan)?)?;
    crate::observe::progress!(
        "zvbench lab --powercut: verification VM ({} reconstructions to import)",
        plan.checks.len()
    );
    let verify_vm = LabOptions {
        disks: 0,
        pools: Vec::new(),
        share: Some(shared.to_owned()),
        argv: vec![
            arg(&std::env::current_exe()?),
            "lab-cut-step".into(),
            "verify".into(),
            "--plan".into(),
            arg(&plan_path),
        ],
        ..lab.clone()
    };
    let v = machine::run(&verify_vm, cache, stop)?;
    if v.code != 0 {
        bail!("the verification step in the lab failed (exit {})", v.code);
    }
    Ok(())
}

/// Checks each cut's copied-out blocks and writes a row per zvol to `o.out`
/// (results.csv, results.jsonl) and run.json; the rows.
fn record(
    o: &Options,
    got: &[GuestPass],
    cuts: &[Cut],
    log_flushes: &[u64],
    timing: &Timing,
) -> Result<Vec<ResultRow>> {
    let mut sink = crate::run::ResultsSink::create(&o.out)?;
    let mut sums = vec![Summary::default(); got.len()];
    for c in cuts {
        let p = &got[c.pass].record;
        let r = match &c.check {
            Some(ch) => check_cut(&mut read_back(ch)?, BS, p.seed, &c.acks, c.ms),
            None => Default::default(),
        };
        sums[c.pass].add(&r);
    }
    let mut rows = Vec::new();
    for (i, (gp, mut s)) in got.iter().zip(sums).enumerate() {
        s.log_flushes = log_flushes[i];
        let mut row = ResultRow::from_record(&gp.record);
        row.target = format!("zvol-{}", SYNCS[i]);
        row.storage = "zvol".into();
        row.hypervisor = "none".into();
        row.workload = gp.record.label.clone();
        row.repetition = 1;
        // A zvol is bio-based: its own counters see no flush (unknown, not zero).
        row.guest_dev_flushes = None;
        row.host_dev_flushes = None;
        row.vdev_flushes = Some(s.log_flushes);
        crate::powercut::fill_row(&mut row, &s);
        if s.lost > 0 {
            row.powercut_dropped_at = Some(crate::powercut::zfs_dropped_at(
                SYNCS[i],
                row.agent_flushes,
                s.log_flushes,
            ));
        }
        sink.add(row.clone(), &gp.record, Some(&gp.boot))?;
        rows.push(row);
    }
    // What the reports read beside the rows: each zvol's sync property (the
    // `zfs-sync-disabled` rule) and how the check went.
    let mut run = RunInfo {
        lab_powercut: Some(LabPowercut {
            cuts_per_zvol: o.cuts + 1,
            blocks: o.blocks,
            block_bytes: BS,
            zfs_txg_timeout_s: "default (5)".into(),
            write_vm_s: timing.write_s,
            rebuild_s: timing.rebuild_s,
            verify_vm_s: timing.verify_s,
        }),
        ..RunInfo::default()
    };
    for s in SYNCS {
        let st = run.storage_mut(&format!("zvol-{s}"));
        st.set("kind", "zvol");
        st.set("pool", POOL);
        st.set("sync", s);
    }
    crate::run::provenance::write(&o.out, &run)?;
    Ok(rows)
}

/// The check's directory: removed at the end, or kept (`--keep`).
enum Kept {
    Temp(tempfile::TempDir),
    Path(PathBuf),
}

impl Kept {
    fn path(&self) -> &Path {
        match self {
            Kept::Temp(t) => t.path(),
            Kept::Path(p) => p,
        }
    }
}

/// The result as a Markdown table, with units.
pub fn table(rows: &[ResultRow]) -> String {
    let mut t = String::from(
        "| target | fsyncs | pool-disk flushes | cuts | acked blocks (4 KiB) | lost blocks (worst cut) | cuts with loss | newest loss age ms | verdict | dropped at |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---|---|\n",
    );
    let n = |v: Option<u64>| v.map_or("–".to_string(), |v| v.to_string());
    for r in rows {
        t += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            r.target,
            r.agent_flushes,
            n(r.powercut_log_flushes),
            n(r.powercut_cuts),
            n(r.powercut_acked_blocks),
            n(r.powercut_lost_blocks),
            n(r.powercut_cuts_lost),
            n(r.powercut_newest_loss_ms),
            r.powercut_verdict.as_deref().unwrap_or("–"),
            r.powercut_dropped_at.as_deref().unwrap_or("–"),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_verifiable_fsync_pass_per_sync_setting() {
        let p = passes(128);
        assert_eq!(p.len(), SYNCS.len());
        for (p, s) in p.iter().zip(SYNCS) {
            assert_eq!(p.path, cutstep::zvol_dev(POOL, s));
            assert!(p.verify && p.direct && p.sync == SyncMode::Fsync);
            assert_eq!(p.size.bytes(), 128 * BS);
            assert_eq!(p.effective_sync_every(), 1);
        }
        assert_ne!(
            p[0].seed, p[1].seed,
            "a block of one pass never passes for the other's"
        );
    }

    #[test]
    fn bad_options_and_earlier_results_are_refused_before_any_vm() {
        let out = tempfile::tempdir().unwrap();
        let lab = LabOptions {
            branch: super::super::openzfs::Branch::V2_3,
            disks: 1,
            disk_bytes: 256 << 20,
            memory_bytes: 1 << 30,
            cpus: 1,
            pools: Vec::new(),
            share: None,
            tmp: out.path().into(),
            timeout: Duration::from_secs(1),
            accel: crate::hypervisor::qemu::Accel::Tcg,
            argv: vec![],
        };
        let o = |blocks| Options {
            cuts: 20,
            blocks,
            out: out.path().into(),
            keep: false,
        };
        let err = |lab: &LabOptions, o: &Options| {
            let e = run(
                lab,
                o,
                Path::new("/nonexistent"),
                out.path(),
                &Interrupt::default(),
            );
            e.unwrap_err().to_string()
        };
        assert!(err(&lab, &o(0)).contains("--powercut-blocks"));
        let small = LabOptions {
            disk_bytes: 64 << 20,
            ..lab.clone()
        };
        assert!(err(&small, &o(128)).contains("too small"));
        std::fs::write(out.path().join("results.csv"), "kept").unwrap();
        assert!(err(&lab, &o(128)).contains("results.csv exists"));
        assert_eq!(
            std::fs::read_to_string(out.path().join("results.csv")).unwrap(),
            "kept"
        );
        let left: Vec<_> = std::fs::read_dir(out.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "nothing made besides the earlier result");
    }

    #[test]
    fn an_acknowledgement_past_the_pass_is_refused() {
        let ack = |blocks| Ack {
            ms: 1,
            blocks,
            log_len: 512,
        };
        let ok = crate::guest::PassTrace {
            acks: vec![ack(1), ack(128)],
            ..Default::default()
        };
        assert!(check_acks(&[&ok, &ok], 128).is_ok());
        let bad = crate::guest::PassTrace {
            acks: vec![ack(1), ack(u64::MAX)],
            ..Default::default()
        };
        let e = check_acks(&[&ok, &bad], 128).unwrap_err().to_string();
        assert!(e.contains("sync=disabled"), "{e}");
    }

    #[test]
    fn a_sparse_copy_of_a_range_keeps_data_and_holes() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a"), d.path().join("b"));
        let f = std::fs::File::create(&a).unwrap();
        f.set_len(64 << 20).unwrap();
        f.write_all_at(b"before", 0).unwrap();
        f.write_all_at(b"start", 1 << 20).unwrap();
        f.write_all_at(b"middle", 40 << 20).unwrap();
        f.write_all_at(b"after", 60 << 20).unwrap();
        let f = std::fs::File::open(&a).unwrap();
        sparse_copy(&f, &((1 << 20)..(56 << 20)), &b).unwrap();
        let whole = std::fs::read(&a).unwrap();
        assert_eq!(std::fs::read(&b).unwrap(), whole[1 << 20..56 << 20]);
        use std::os::unix::fs::MetadataExt;
        let blocks = std::fs::metadata(&b).unwrap().blocks();
        assert!(
            blocks * 512 < 4 << 20,
            "the copy is sparse: {blocks} blocks"
        );
    }

    #[test]
    fn the_pool_partition_comes_from_the_gpt() {
        use std::os::unix::fs::FileExt;
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk");
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        f.set_len(256 << 20).unwrap();
        assert!(first_partition(&f, 256 << 20)
            .unwrap_err()
            .to_string()
            .contains("no GPT"));
        let mut h = [0u8; 92];
        h[..8].copy_from_slice(b"EFI PART");
        h[72..80].copy_from_slice(&2u64.to_le_bytes());
        h[84..88].copy_from_slice(&128u32.to_le_bytes());
        f.write_all_at(&h, 512).unwrap();
        let mut e = [0u8; 48];
        e[32..40].copy_from_slice(&2048u64.to_le_bytes());
        e[40..48].copy_from_slice(&507903u64.to_le_bytes());
        f.write_all_at(&e, 1024).unwrap();
        assert_eq!(
            first_partition(&f, 256 << 20).unwrap(),
            (1 << 20)..(507904 * 512)
        );
        e[40..48].copy_from_slice(&(1u64 << 40).to_le_bytes());
        f.write_all_at(&e, 1024).unwrap();
        assert!(
            first_partition(&f, 256 << 20).is_err(),
            "past the disk's end"
        );
    }
}
