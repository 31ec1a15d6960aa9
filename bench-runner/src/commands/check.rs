//! `zvbench check`: a scenario validated and every host check run that creates nothing.

use anyhow::Result;
use std::path::PathBuf;

/// `zvbench check`'s arguments.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// The scenario file.
    pub scenario: PathBuf,
    /// A device `run` will be allowed to overwrite (repeatable).
    #[arg(long = "allow-destroy", value_name = "DEVICE")]
    pub allow_destroy: Vec<PathBuf>,
}

/// Loads the scenario, runs the checks and prints what it holds; exit status 0.
pub fn check(a: &CheckArgs) -> Result<i32> {
    let plan = crate::scenario::load(&a.scenario)?;
    crate::run::checks(&plan, &a.allow_destroy, &super::vboxmanage())?;
    println!(
        "{}: ok ({} targets, {} workloads, {}{} repetitions)",
        a.scenario.display(),
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
