//! `zvbench run`: a scenario provisioned, benchmarked, traced, torn down and reported.

use super::{cache_dir, find_agent, GuestArgs};
use crate::guest::kernel::GuestKernel;
use crate::hypervisor::qemu::{choose_accel, kvm_works, Accel};
use crate::run::RunOptions;
use crate::Interrupt;
use anyhow::{bail, Result};
use clap::ValueEnum;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Which accelerator QEMU guests use.
#[derive(Clone, Copy, ValueEnum)]
pub enum AccelChoice {
    /// KVM if a probe boot works, else TCG.
    Auto,
    /// Force KVM.
    Kvm,
    /// Force TCG.
    Tcg,
}

/// `zvbench run`'s arguments.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Output directory for results.csv, results.jsonl, run.json and the report.
    #[arg(long)]
    pub out: PathBuf,
    /// The agent and kernel the guests boot.
    #[command(flatten)]
    pub guest: GuestArgs,
    /// Accelerator.
    #[arg(long, value_enum, default_value_t = AccelChoice::Auto)]
    pub accel: AccelChoice,
    /// Allow overwriting this exact device although it holds data (repeatable).
    #[arg(long = "allow-destroy", value_name = "DEVICE")]
    pub allow_destroy: Vec<PathBuf>,
    /// Simulate power cuts on QEMU targets and VirtualBox image targets: log what reaches
    /// stable storage, kill the VM hard, and check every acknowledged block at the end
    /// and N random points per pass.
    #[arg(long, value_name = "N")]
    pub powercut: Option<usize>,
    /// Keep the power-cut logs and reconstructions (guests/*/powercut.*).
    #[arg(long, requires = "powercut")]
    pub keep: bool,
}

/// The accelerator asked for, checked against what the host can run.
fn accel(choice: AccelChoice, kernel: Option<&GuestKernel>, cache: &Path) -> Result<Accel> {
    Ok(match (choice, kernel) {
        (AccelChoice::Kvm, Some(k)) if !kvm_works(&k.image, cache) => bail!(
            "--accel kvm: KVM cannot run a guest on this host (a probe boot under KVM printed nothing within 8 s; see {}); use --accel auto or tcg",
            cache.join("kvm-probe.qemu.log").display()
        ),
        (AccelChoice::Kvm, _) => Accel::Kvm,
        (AccelChoice::Tcg, _) | (AccelChoice::Auto, None) => Accel::Tcg,
        (AccelChoice::Auto, Some(k)) => choose_accel(&k.image, cache),
    })
}

/// Runs the scenario, then writes and prints the report (unless nothing of this run is in
/// `--out`, or a signal stopped it); exit status 0, or the run's error.
pub fn run(a: RunArgs, stop: &Interrupt) -> Result<i32> {
    let (plan, scenario_text) = crate::scenario::load_with_text(&a.scenario)?;
    let has_guest = plan.targets.iter().any(|t| t.guest.is_some());
    let cache = cache_dir();
    let (kernel, agent) = if has_guest {
        let k = a.guest.kernel(&cache, stop)?;
        (Some(k), find_agent(a.guest.agent)?)
    } else {
        (None, PathBuf::new())
    };
    let opts = RunOptions {
        out: a.out.clone(),
        agent,
        accel: accel(a.accel, kernel.as_ref(), &cache)?,
        kernel,
        allow_destroy: a.allow_destroy,
        scenario_text,
        runtime: crate::host::owner::runtime_dir(),
        powercut: a
            .powercut
            .map(|cuts| crate::powercut::Options { cuts, keep: a.keep }),
        vboxmanage: super::vboxmanage(),
    };
    let out = &a.out;
    let started = std::time::Instant::now();
    let result = crate::run::run(&plan, &opts, stop);
    if matches!(&result, Err(e) if e.is::<crate::run::NothingWritten>()) {
        // `--out` holds nothing of this run, perhaps another run's results: no report there.
    } else if stop.is_set() {
        eprintln!(
            "zvbench: stopped by a signal; what was measured is in {} (`zvbench report` makes its report)",
            out.display()
        );
    } else if out.join("results.csv").exists() {
        match super::report::write(out) {
            Ok(md) => {
                // Everything is torn down by now: a reader that went away is no reason to
                // fail the run.
                let _ = writeln!(std::io::stdout().lock(), "{md}");
            }
            // The run's own error says more (a run that failed before its first pass leaves
            // a results.csv without rows).
            Err(e) if result.is_err() => eprintln!("zvbench: no report: {}", crate::chain(&e)),
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
