//! `zvbench history`: one metric across many runs, ordered by their `run.json` date.

use anyhow::{bail, Result};
use std::path::PathBuf;
use zvbench_reports::{history, plot};

/// `zvbench history`'s arguments.
#[derive(clap::Args)]
pub struct HistoryArgs {
    /// Run directories (each with results.csv and run.json).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The metric: mib_per_s, iops, lat_p99_us or flush_p99_us.
    #[arg(long, default_value = "mib_per_s")]
    pub metric: String,
    /// Only this workload.
    #[arg(long)]
    pub workload: Option<String>,
    /// Also write history.md, history.png and history.svg here.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Prints the trend table (and writes it with its plot under `--out`); exit status 0.
pub fn history(a: &HistoryArgs) -> Result<i32> {
    let metric = history::metric(&a.metric)?;
    let runs = history::load_all(&a.dirs)?;
    let workload = a.workload.as_deref();
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
    if let Some(out) = &a.out {
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
