//! `zvbench lab`: a command (or a power-cut check) in the ZFS lab VM, and the hidden
//! subcommands that run inside it (`lab-guest`, `lab-cut-step`).

use super::{cache_dir, find_agent};
use crate::hypervisor::qemu::Accel;
use crate::lab::{self, openzfs::Branch};
use crate::Interrupt;
use anyhow::{Context, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use zvbench_agent::size::ByteSize;

/// `zvbench lab`'s arguments.
#[derive(clap::Args)]
pub struct LabArgs {
    /// OpenZFS version: 2.3 (bookworm-backports) or 2.1 (bookworm).
    #[arg(long, value_enum, default_value = "2.3")]
    pub openzfs: Branch,
    /// Number of pool disks (raw files, virtio-blk, cache=none).
    #[arg(long, default_value_t = 1)]
    pub disks: usize,
    /// Size of each pool disk (sparse).
    #[arg(long, default_value = "1G")]
    pub disk_size: ByteSize,
    /// Guest memory.
    #[arg(long, default_value = "1536M")]
    pub memory: ByteSize,
    /// Guest CPUs.
    #[arg(long, default_value_t = 2)]
    pub cpus: u32,
    /// Create this pool before the command (its file system on /var/tmp/POOL inside).
    /// Repeat for more pools: the disks are shared out in order (`--disks 2 --pool
    /// tank --pool backup`: one disk each).
    #[arg(long = "pool")]
    pub pools: Vec<String>,
    /// A host directory the command can write, seen at the same path inside.
    #[arg(long)]
    pub share: Option<PathBuf>,
    /// Where the lab's disk files and control files go (removed at the end).
    #[arg(long, default_value = "/var/tmp")]
    pub tmp: PathBuf,
    /// Time limit for the whole VM, seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout: u64,
    /// Only build (or find) OpenZFS for the guest kernel and print where it is.
    #[arg(long, conflicts_with = "argv")]
    pub build_only: bool,
    /// Instead of a command: cut the power under ZFS at the end and N random points of
    /// an fsync-per-write pass on a sync=standard and a sync=disabled zvol (the pool's
    /// disk logged by blklogwrites), import the pool from each reconstruction and count
    /// the acknowledged blocks lost. Results in --out.
    #[arg(long, value_name = "N", conflicts_with_all = ["argv", "build_only"], requires = "out")]
    pub powercut: Option<usize>,
    /// With --powercut: blocks (4 KiB) each pass writes.
    #[arg(long, default_value_t = 128, requires = "powercut")]
    pub powercut_blocks: u64,
    /// With --powercut: where results.csv and results.jsonl go.
    #[arg(long, requires = "powercut")]
    pub out: Option<PathBuf>,
    /// With --powercut: keep the pool disk's log and the reconstructions.
    #[arg(long, requires = "powercut")]
    pub keep: bool,
    /// With --powercut: the static guest agent (default: built by scripts/build-agent).
    #[arg(long, requires = "powercut")]
    pub agent: Option<PathBuf>,
    /// The command and its arguments (after `--`).
    #[arg(last = true, required_unless_present_any = ["build_only", "powercut"])]
    pub argv: Vec<String>,
}

/// The halves of `zvbench lab --powercut` inside the lab VM.
#[derive(clap::Subcommand)]
pub enum CutStep {
    /// Make the zvols on the pool and run the agent's job.
    Write {
        /// The pool.
        #[arg(long)]
        pool: String,
        /// Size of each zvol, bytes.
        #[arg(long)]
        zvol_size: u64,
        /// The agent.
        #[arg(long)]
        agent: PathBuf,
        /// The agent's job file.
        #[arg(long)]
        job: PathBuf,
    },
    /// Import the pool from each reconstruction of the plan and copy the zvol out.
    Verify {
        /// The plan (JSON).
        #[arg(long)]
        plan: PathBuf,
    },
}

/// `zvbench lab`: builds OpenZFS only, runs the power-cut check, or runs the command; exit
/// status: the command's (0 for the other two).
pub fn lab(a: LabArgs, stop: &Interrupt) -> Result<i32> {
    let cache = cache_dir();
    if a.build_only {
        let b = lab::build_only(&cache, a.openzfs, stop)?;
        println!("{}", b.userland.parent().unwrap_or(&b.userland).display());
        return Ok(0);
    }
    let opts = lab::LabOptions {
        branch: a.openzfs,
        disks: a.disks,
        disk_bytes: a.disk_size.bytes(),
        memory_bytes: a.memory.bytes(),
        cpus: a.cpus,
        pools: a.pools,
        share: a.share,
        tmp: a.tmp,
        timeout: Duration::from_secs(a.timeout),
        accel: Accel::Tcg,
        argv: a.argv,
    };
    if let (Some(cuts), Some(out)) = (a.powercut, a.out) {
        let pc = lab::powercut::Options {
            cuts,
            blocks: a.powercut_blocks,
            out,
            keep: a.keep,
        };
        return powercut(&opts, &pc, a.agent, &cache, stop);
    }
    let o = lab::run(&opts, &cache, stop)?;
    eprintln!(
        "zvbench lab: exit {}; command started {} s after boot; VM ran {:.1} s",
        o.code,
        o.boot_s.map_or("?".into(), |b| format!("{b:.1}")),
        o.vm_s
    );
    Ok(o.code)
}

/// `zvbench lab --powercut N`: prints the result table and how long each step took.
fn powercut(
    opts: &lab::LabOptions,
    pc: &lab::powercut::Options,
    agent: Option<PathBuf>,
    cache: &Path,
    stop: &Interrupt,
) -> Result<i32> {
    std::fs::create_dir_all(&pc.out).with_context(|| format!("create {}", pc.out.display()))?;
    let start = Instant::now();
    let (rows, t) = lab::powercut::run(opts, pc, &find_agent(agent)?, cache, stop)?;
    println!("{}", lab::powercut::table(&rows));
    eprintln!(
        "zvbench lab --powercut: {:.0} s in all (write VM {:.0} s, reconstructions {:.1} s, verification VM {:.0} s); results in {}",
        start.elapsed().as_secs_f64(),
        t.write_s,
        t.rebuild_s,
        t.verify_s,
        pc.out.display()
    );
    Ok(0)
}

/// `zvbench lab-cut-step`: one half of the power-cut check, inside the lab VM.
pub fn cut_step(step: CutStep) -> Result<i32> {
    match step {
        CutStep::Write {
            pool,
            zvol_size,
            agent,
            job,
        } => lab::cutstep::write(&pool, zvol_size, &agent, &job),
        CutStep::Verify { plan } => lab::cutstep::verify(&plan).map(|_| 0),
    }
}
