//! `zvbench`: the host CLI — a thin shell over the library.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::Write;
use std::path::{Path, PathBuf};
use zvbench::guest::kernel::GuestKernel;
use zvbench::hypervisor::qemu::{choose_accel, Accel};
use zvbench::run::RunOptions;
use zvbench::Interrupt;

/// Benchmarks a VM guest's storage end to end and traces every flush from the guest down
/// to the host device.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Clone, Copy, ValueEnum)]
enum AccelChoice {
    /// KVM if a probe boot works, else TCG.
    Auto,
    /// Force KVM.
    Kvm,
    /// Force TCG.
    Tcg,
}

#[derive(Clone, Copy, ValueEnum)]
enum CompareFormat {
    /// Markdown table.
    Md,
    /// JSON array.
    Json,
    /// github-action-benchmark `customBiggerIsBetter` JSON (throughput, IOPS).
    GithubBigger,
    /// github-action-benchmark `customSmallerIsBetter` JSON (latencies).
    GithubSmaller,
    /// Bencher Metric Format JSON.
    Bencher,
    /// Markdown for `$GITHUB_STEP_SUMMARY`.
    StepSummary,
}

fn parse_boundary(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.5..=0.99999).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a boundary from 0.5 to 0.99999 (e.g. 0.999)"
        )),
    }
}

fn parse_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage like 5%"))?;
    if (0.0..100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("threshold {v} must be from 0 to 100 percent"))
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scenario: provision, benchmark, trace flushes, tear down, report.
    Run {
        /// The scenario file (TOML).
        scenario: PathBuf,
        /// Output directory for results.csv, results.jsonl, run.json and the report.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        guest: GuestArgs,
        /// Accelerator.
        #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
        accel: AccelChoice,
        /// Allow overwriting this exact device although it holds data (repeatable).
        #[arg(long = "allow-destroy", value_name = "DEVICE")]
        allow_destroy: Vec<PathBuf>,
        /// Simulate power cuts on QEMU targets: log what reaches stable storage, kill QEMU
        /// hard, and check every acknowledged block at the end and N random points per pass.
        #[arg(long, value_name = "N")]
        powercut: Option<usize>,
        /// Keep the power-cut logs and reconstructions (guests/*/powercut.*).
        #[arg(long, requires = "powercut")]
        keep: bool,
    },
    /// Validate a scenario and run every host check that creates nothing.
    Check {
        /// The scenario file.
        scenario: PathBuf,
        /// A device `run` will be allowed to overwrite (repeatable).
        #[arg(long = "allow-destroy", value_name = "DEVICE")]
        allow_destroy: Vec<PathBuf>,
    },
    /// Write summary.md, plots/ (PNG, SVG) and report.html for a run directory; print the summary.
    Report {
        /// A directory written by `zvbench run`.
        dir: PathBuf,
    },
    /// Compare a history of baseline runs with the current run; exit 1 on a significant
    /// regression or on flushes lost at any layer, 2 on bad input.
    Compare {
        /// Baseline run directories or directories of them, oldest first (several runs: a
        /// t-test over the runs; one: a conservative 25% threshold).
        #[arg(required = true, num_args = 1..)]
        base: Vec<PathBuf>,
        /// The current run directory.
        #[arg(required = true)]
        cur: PathBuf,
        /// Smallest change that counts, in percent (`5` or `5%`).
        #[arg(long, default_value = "5%", value_parser = parse_pct)]
        threshold: f64,
        /// Use only the newest N baseline runs (the lookback window).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
        lookback: u32,
        /// One-sided boundary of the t-test, from 0.5 to 0.99999.
        #[arg(long, default_value_t = zvbench_reports::compare::DEFAULT_BOUNDARY, value_parser = parse_boundary)]
        boundary: f64,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CompareFormat::Md)]
        format: CompareFormat,
    },
    /// Turn fio JSON or sysbench fileio text into results.csv rows in a run directory.
    Import {
        #[command(subcommand)]
        tool: ImportTool,
    },
    /// One metric across many runs, ordered by their run.json date: a table and a plot.
    History {
        /// Run directories (each with results.csv and run.json).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The metric: mib_per_s, iops, lat_p99_us or flush_p99_us.
        #[arg(long, default_value = "mib_per_s")]
        metric: String,
        /// Only this workload.
        #[arg(long)]
        workload: Option<String>,
        /// Also write history.md, history.png and history.svg here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// The bootable guest ISO.
    Image {
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Remove what dead runs left (never a live run's): their QEMU processes, loop devices,
    /// files named as zvbench names them, tagged datasets, VirtualBox VMs. Exit 1 if
    /// something could not be removed.
    Clean {
        /// Only what runs left in these directories (repeatable); without it: everything
        /// of dead runs, and zvbench's files in /var/tmp/zvbench.
        #[arg(long = "dir")]
        dirs: Vec<PathBuf>,
    },
    /// Say what this host can run and what is missing.
    Doctor,
    /// Run a command in the ZFS lab: a VM with real OpenZFS (modules built once for the
    /// guest kernel), the host's root read-only, and pool disks /dev/vda, /dev/vdb, ….
    /// Exits with the command's status.
    Lab {
        /// OpenZFS version: 2.3 (bookworm-backports) or 2.1 (bookworm).
        #[arg(long, value_enum, default_value = "2.3")]
        openzfs: zvbench::lab::openzfs::Branch,
        /// Number of pool disks (raw files, virtio-blk, cache=none).
        #[arg(long, default_value_t = 1)]
        disks: usize,
        /// Size of each pool disk (sparse).
        #[arg(long, default_value = "1G")]
        disk_size: zvbench_agent::size::ByteSize,
        /// Guest memory.
        #[arg(long, default_value = "1536M")]
        memory: zvbench_agent::size::ByteSize,
        /// Guest CPUs.
        #[arg(long, default_value_t = 2)]
        cpus: u32,
        /// Create this pool before the command (its file system on /var/tmp/POOL inside).
        /// Repeat for more pools: the disks are shared out in order (`--disks 2 --pool
        /// tank --pool backup`: one disk each).
        #[arg(long = "pool")]
        pools: Vec<String>,
        /// A host directory the command can write, seen at the same path inside.
        #[arg(long)]
        share: Option<PathBuf>,
        /// Where the lab's disk files and control files go (removed at the end).
        #[arg(long, default_value = "/var/tmp")]
        tmp: PathBuf,
        /// Time limit for the whole VM, seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
        /// Only build (or find) OpenZFS for the guest kernel and print where it is.
        #[arg(long, conflicts_with = "argv")]
        build_only: bool,
        /// Instead of a command: cut the power under ZFS at the end and N random points of
        /// an fsync-per-write pass on a sync=standard and a sync=disabled zvol (the pool's
        /// disk logged by blklogwrites), import the pool from each reconstruction and count
        /// the acknowledged blocks lost. Results in --out.
        #[arg(long, value_name = "N", conflicts_with_all = ["argv", "build_only"], requires = "out")]
        powercut: Option<usize>,
        /// With --powercut: blocks (4 KiB) each pass writes.
        #[arg(long, default_value_t = 128, requires = "powercut")]
        powercut_blocks: u64,
        /// With --powercut: where results.csv and results.jsonl go.
        #[arg(long, requires = "powercut")]
        out: Option<PathBuf>,
        /// With --powercut: keep the pool disk's log and the reconstructions.
        #[arg(long, requires = "powercut")]
        keep: bool,
        /// With --powercut: the static guest agent (default: built by scripts/build-agent).
        #[arg(long, requires = "powercut")]
        agent: Option<PathBuf>,
        /// The command and its arguments (after `--`).
        #[arg(last = true, required_unless_present_any = ["build_only", "powercut"])]
        argv: Vec<String>,
    },
    /// Inside the lab VM: one half of `zvbench lab --powercut` (run as the lab's command).
    #[command(hide = true)]
    LabCutStep {
        #[command(subcommand)]
        step: CutStep,
    },
    /// Inside the lab VM: PID 1 on the host's root (started by the lab's initramfs).
    #[command(hide = true)]
    LabGuest {
        /// The job file in the control share.
        job: PathBuf,
    },
}

/// The halves of `zvbench lab --powercut` inside the lab VM.
#[derive(Subcommand)]
enum CutStep {
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

#[derive(Subcommand)]
enum ImageAction {
    /// Build the ISO a target's guest boots (ISOLINUX, guest kernel, initramfs with the
    /// agent and the target's job), as `zvbench run` does for VirtualBox and boot = "iso".
    Build {
        /// The scenario file.
        scenario: PathBuf,
        /// The guest target whose job the ISO carries.
        #[arg(long)]
        target: String,
        /// The ISO to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        guest: GuestArgs,
    },
}

/// What a guest boots: the agent and the kernel.
#[derive(clap::Args)]
struct GuestArgs {
    /// The static guest agent (default: built by scripts/build-agent).
    #[arg(long)]
    agent: Option<PathBuf>,
    /// Guest kernel image (with --modules); default: the host's, else Debian's package.
    #[arg(long, requires = "modules")]
    kernel: Option<PathBuf>,
    /// The guest kernel's lib/modules/<release> directory.
    #[arg(long, requires = "kernel")]
    modules: Option<PathBuf>,
    /// zvbench's minimal guest kernel instead: Debian's linux-source-6.1 with only what the
    /// agent needs, built in; built once into the cache (about 10 min on 2 cores). Boots
    /// faster under TCG, most of all nested in a VM (the ZFS lab).
    #[arg(long, conflicts_with = "kernel")]
    tiny_kernel: bool,
}

/// The guest kernel `g` names: the minimal one, the given one, the host's or Debian's.
fn guest_kernel(g: &GuestArgs, cache: &Path, stop: &Interrupt) -> Result<GuestKernel> {
    if g.tiny_kernel {
        return zvbench::guest::tiny::ensure(cache, &|| stop.is_set());
    }
    zvbench::guest::kernel::find(g.kernel.clone().zip(g.modules.clone()), cache)
}

/// Where imported rows go and whose they are.
#[derive(clap::Args)]
struct ImportArgs {
    /// Files to import; each becomes a repetition.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The run directory to add the rows to (created if absent).
    #[arg(long)]
    out: PathBuf,
    /// Target name for the rows (default: the tool's name).
    #[arg(long)]
    target: Option<String>,
    /// The results are the host baseline (other targets are compared with it).
    #[arg(long)]
    baseline: bool,
}

#[derive(Subcommand)]
enum ImportTool {
    /// fio output written with --output-format=json: a row per job and direction.
    Fio {
        #[command(flatten)]
        args: ImportArgs,
    },
    /// The text of `sysbench fileio ... run` (sysbench 1.0.20): a row per file.
    Sysbench {
        #[command(flatten)]
        args: ImportArgs,
        /// Workload name (default: mode and block size, e.g. seqwr-16K).
        #[arg(long)]
        workload: Option<String>,
    },
}

fn import(tool: ImportTool) -> Result<i32> {
    let (name, args) = match &tool {
        ImportTool::Fio { args } => ("fio", args),
        ImportTool::Sysbench { args, .. } => ("sysbench", args),
    };
    let origin = zvbench_reports::import::Origin {
        target: args.target.clone().unwrap_or_else(|| name.to_string()),
        baseline: args.baseline,
    };
    zvbench::names::check_name(&origin.target).map_err(|e| anyhow::anyhow!("--target: {e}"))?;
    // Every file parsed and checked before anything is written.
    let mut imports = Vec::new();
    for file in &args.files {
        let text =
            std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
        let text = String::from_utf8_lossy(&text);
        let rows = match &tool {
            ImportTool::Fio { .. } => zvbench_reports::import::fio(&text, &origin),
            ImportTool::Sysbench { workload, .. } => {
                zvbench_reports::import::sysbench(&text, &origin, workload.as_deref())
                    .map(|r| vec![r])
            }
        }
        .with_context(|| format!("cannot import {}", file.display()))?;
        imports.push(zvbench::commands::import::Imported {
            tool: name,
            file: file.clone(),
            rows,
        });
    }
    zvbench::commands::import::append(&args.out, &mut imports)?;
    for i in &imports {
        println!(
            "{}: {} rows into {}",
            i.file.display(),
            i.rows.len(),
            args.out.join("results.csv").display()
        );
    }
    Ok(0)
}

fn history(
    dirs: &[PathBuf],
    metric: &str,
    workload: Option<&str>,
    out: Option<&Path>,
) -> Result<i32> {
    use zvbench_reports::{history, plot};
    let metric = history::metric(metric)?;
    let runs = history::load_all(dirs)?;
    let trend = history::trend(&runs, metric, workload);
    if trend.lines.is_empty() {
        bail!(
            "no rows for workload {:?} in these runs; their workloads: {}",
            workload.unwrap_or(""),
            history::workloads(&runs).join(", ")
        );
    }
    let md = history::markdown(&trend);
    println!("{md}");
    if let Some(out) = out {
        std::fs::create_dir_all(out)?;
        let fig = history::figure(&trend);
        std::fs::write(out.join("history.md"), &md)?;
        std::fs::write(out.join("history.svg"), plot::svg(&fig)?)?;
        plot::png(&fig, &out.join("history.png"))?;
        eprintln!(
            "zvbench: history.md, history.png and history.svg in {}",
            out.display()
        );
    }
    Ok(0)
}

fn cache_dir() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/tmp"))
        .join("zvbench")
}

/// The static agent: `--agent`, else next to this binary's target directory.
fn find_agent(given: Option<PathBuf>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p,
        None => {
            let exe = std::env::current_exe()?;
            let target_dir = exe
                .parent()
                .and_then(Path::parent)
                .context("cannot locate the target directory")?;
            target_dir.join("x86_64-unknown-linux-gnu/agent/zvbench-agent")
        }
    };
    let bytes = std::fs::read(&path).with_context(|| {
        format!(
            "guest agent {} not found; build it with scripts/build-agent or pass --agent",
            path.display()
        )
    })?;
    match zvbench::guest::initramfs::elf_is_static(&bytes) {
        Some(true) => {}
        Some(false) => bail!(
            "{} is dynamically linked; the guest has no libc: build it with scripts/build-agent",
            path.display()
        ),
        None => bail!("{} is not an x86-64 ELF executable", path.display()),
    }
    Ok(path)
}

fn main() {
    let cli = Cli::parse();
    let stop = Interrupt::default();
    if !matches!(
        cli.cmd,
        Cmd::Run { .. } | Cmd::Lab { .. } | Cmd::LabGuest { .. }
    ) {
        // Output-only commands stop quietly when their reader goes (`zvbench compare … |
        // head`), as Unix tools do, instead of panicking on a write to a closed pipe.
        // SAFETY: setting a signal's disposition before any thread is started.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // A run and a lab VM unwind through their guards on a signal; every other command has
    // nothing to tear down and stops at once.
    if let Err(e) = stop.watch(matches!(cli.cmd, Cmd::Run { .. } | Cmd::Lab { .. })) {
        eprintln!("zvbench: warning: cannot catch signals ({e}); an interrupted run may leave files: `zvbench clean`");
    }
    let r = real_main(cli.cmd, &stop);
    let code = stop.exit_code();
    match r {
        Ok(c) => std::process::exit(code.unwrap_or(c)),
        Err(e) => {
            eprintln!("zvbench: error: {}", zvbench::chain(&e));
            std::process::exit(code.unwrap_or(2));
        }
    }
}

fn real_main(cmd: Cmd, stop: &Interrupt) -> Result<i32> {
    match cmd {
        Cmd::Check {
            scenario,
            allow_destroy,
        } => {
            let plan = zvbench::scenario::load(&scenario)?;
            zvbench::run::checks(&plan, &allow_destroy)?;
            println!(
                "{}: ok ({} targets, {} workloads, {}{} repetitions)",
                scenario.display(),
                plan.targets.len(),
                plan.workloads.len(),
                if plan.auto.is_some() {
                    "auto, at most "
                } else {
                    ""
                },
                plan.repetitions
            );
            Ok(0)
        }
        Cmd::Run {
            scenario,
            out,
            guest,
            accel,
            allow_destroy,
            powercut,
            keep,
        } => {
            let (plan, scenario_text) = zvbench::scenario::load_with_text(&scenario)?;
            let has_guest = plan.targets.iter().any(|t| t.guest.is_some());
            let cache = cache_dir();
            let (kernel, agent) = if has_guest {
                let k = guest_kernel(&guest, &cache, stop)?;
                (Some(k), find_agent(guest.agent)?)
            } else {
                (None, PathBuf::new())
            };
            let accel = match (accel, &kernel) {
                (AccelChoice::Kvm, Some(k))
                    if !zvbench::hypervisor::qemu::kvm_works(&k.image, &cache) =>
                {
                    bail!(
                        "--accel kvm: KVM cannot run a guest on this host (a probe boot under KVM printed nothing within 8 s; see {}); use --accel auto or tcg",
                        cache.join("kvm-probe.qemu.log").display()
                    )
                }
                (AccelChoice::Kvm, _) => Accel::Kvm,
                (AccelChoice::Tcg, _) | (AccelChoice::Auto, None) => Accel::Tcg,
                (AccelChoice::Auto, Some(k)) => choose_accel(&k.image, &cache),
            };
            let opts = RunOptions {
                out: out.clone(),
                agent,
                kernel,
                accel,
                allow_destroy,
                scenario_text,
                runtime: zvbench::host::owner::runtime_dir(),
                powercut: powercut.map(|cuts| zvbench::powercut::Options { cuts, keep }),
            };
            let started = std::time::Instant::now();
            let result = zvbench::run::run(&plan, &opts, stop);
            if matches!(&result, Err(e) if e.is::<zvbench::run::NothingWritten>()) {
                // `--out` holds nothing of this run, perhaps another run's results: no
                // report there.
            } else if stop.is_set() {
                eprintln!(
                    "zvbench: stopped by a signal; what was measured is in {} (`zvbench report` makes its report)",
                    out.display()
                );
            } else if out.join("results.csv").exists() {
                match zvbench::commands::report::write(&out) {
                    Ok(md) => {
                        // Everything is torn down by now: a reader that went away is
                        // no reason to fail the run.
                        let _ = writeln!(std::io::stdout().lock(), "{md}");
                    }
                    // The run's own error says more (a run that failed before its first
                    // pass leaves a results.csv without rows).
                    Err(e) if result.is_err() => {
                        eprintln!("zvbench: no report: {}", zvbench::chain(&e))
                    }
                    Err(e) => return Err(e),
                }
            }
            let rows = result?;
            eprintln!(
                "zvbench: {} passes in {:.0} s; results in {}, report in {}",
                rows.len(),
                started.elapsed().as_secs_f64(),
                out.display(),
                out.join("report.html").display()
            );
            Ok(0)
        }
        Cmd::Report { dir } => {
            println!("{}", zvbench::commands::report::write(&dir)?);
            eprintln!(
                "zvbench: summary.md, report.html and plots/ in {}",
                dir.display()
            );
            Ok(0)
        }
        Cmd::Compare {
            base,
            cur,
            threshold,
            lookback,
            boundary,
            format,
        } => {
            use zvbench_reports::compare;
            let read = |d: &Path| zvbench_reports::read_results(&d.join("results.csv"));
            let mut dirs = Vec::new();
            for b in &base {
                dirs.extend(zvbench_reports::history::run_dirs(b)?);
            }
            let dirs = &dirs[dirs.len().saturating_sub(lookback as usize)..];
            let history = dirs
                .iter()
                .map(|d| read(d))
                .collect::<Result<Vec<_>, _>>()?;
            let settings = compare::Settings {
                threshold_pct: threshold,
                boundary,
            };
            let c = compare::compare(&history, &read(&cur)?, settings)?;
            match format {
                CompareFormat::Md => println!("{}", compare::markdown(&c)),
                CompareFormat::Json => println!("{}", serde_json::to_string_pretty(&c)?),
                CompareFormat::GithubBigger | CompareFormat::GithubSmaller => {
                    use zvbench_reports::export::{github_action_benchmark, Direction};
                    let dir = match format {
                        CompareFormat::GithubBigger => Direction::Bigger,
                        _ => Direction::Smaller,
                    };
                    let v = github_action_benchmark(&c, dir);
                    println!("{}", serde_json::to_string_pretty(&v)?)
                }
                CompareFormat::Bencher => println!(
                    "{}",
                    serde_json::to_string_pretty(&zvbench_reports::export::bencher(&c))?
                ),
                CompareFormat::StepSummary => {
                    print!("{}", zvbench_reports::export::step_summary(&c, threshold))
                }
            }
            Ok(i32::from(c.failed()))
        }
        Cmd::Import { tool } => import(tool),
        Cmd::Image {
            action:
                ImageAction::Build {
                    scenario,
                    target,
                    out,
                    guest,
                },
        } => {
            let plan = zvbench::scenario::load(&scenario)?;
            let kernel = guest_kernel(&guest, &cache_dir(), stop)?;
            zvbench::guest::iso::for_target(
                &plan,
                &target,
                &kernel,
                &find_agent(guest.agent)?,
                &out,
            )?;
            println!("{}", out.display());
            Ok(0)
        }
        Cmd::History {
            dirs,
            metric,
            workload,
            out,
        } => history(&dirs, &metric, workload.as_deref(), out.as_deref()),
        Cmd::Clean { dirs } => {
            let scope = zvbench::commands::clean::Scope {
                only_dirs: !dirs.is_empty(),
                dirs: if dirs.is_empty() {
                    vec![PathBuf::from("/var/tmp/zvbench")]
                } else {
                    dirs
                },
                runtime: zvbench::host::owner::runtime_dir(),
            };
            let done = zvbench::commands::clean::clean(&scope);
            if done.is_empty() {
                println!("nothing to clean");
            }
            for d in &done {
                println!("{d}");
            }
            let failed = done
                .iter()
                .any(|d| matches!(d, zvbench::commands::clean::Outcome::Failed(_)));
            Ok(i32::from(failed))
        }
        Cmd::Doctor => Ok(zvbench::commands::doctor::report(&cache_dir())),
        Cmd::Lab {
            openzfs,
            disks,
            disk_size,
            memory,
            cpus,
            pools,
            share,
            tmp,
            timeout,
            build_only,
            powercut,
            powercut_blocks,
            out,
            keep,
            agent,
            argv,
        } => {
            let cache = cache_dir();
            if build_only {
                let b = zvbench::lab::build_only(&cache, openzfs, stop)?;
                println!("{}", b.userland.parent().unwrap_or(&b.userland).display());
                return Ok(0);
            }
            let opts = zvbench::lab::LabOptions {
                branch: openzfs,
                disks,
                disk_bytes: disk_size.bytes(),
                memory_bytes: memory.bytes(),
                cpus,
                pools,
                share,
                tmp,
                timeout: std::time::Duration::from_secs(timeout),
                accel: Accel::Tcg,
                argv,
            };
            if let (Some(cuts), Some(out)) = (powercut, out) {
                std::fs::create_dir_all(&out)
                    .with_context(|| format!("create {}", out.display()))?;
                let pc = zvbench::lab::powercut::Options {
                    cuts,
                    blocks: powercut_blocks,
                    out,
                    keep,
                };
                let start = std::time::Instant::now();
                let (rows, t) =
                    zvbench::lab::powercut::run(&opts, &pc, &find_agent(agent)?, &cache, stop)?;
                println!("{}", zvbench::lab::powercut::table(&rows));
                eprintln!(
                    "zvbench lab --powercut: {:.0} s in all (write VM {:.0} s, reconstructions {:.1} s, verification VM {:.0} s); results in {}",
                    start.elapsed().as_secs_f64(),
                    t.write_s,
                    t.rebuild_s,
                    t.verify_s,
                    pc.out.display()
                );
                return Ok(0);
            }
            let o = zvbench::lab::run(&opts, &cache, stop)?;
            eprintln!(
                "zvbench lab: exit {}; command started {} s after boot; VM ran {:.1} s",
                o.code,
                o.boot_s.map_or("?".into(), |b| format!("{b:.1}")),
                o.vm_s
            );
            Ok(o.code)
        }
        Cmd::LabGuest { job } => zvbench::lab::guest::main(&job),
        Cmd::LabCutStep { step } => match step {
            CutStep::Write {
                pool,
                zvol_size,
                agent,
                job,
            } => zvbench::lab::cutstep::write(&pool, zvol_size, &agent, &job),
            CutStep::Verify { plan } => zvbench::lab::cutstep::verify(&plan).map(|_| 0),
        },
    }
}
