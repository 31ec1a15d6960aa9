//! `zvbench report`: the report files for a run directory (see `zvbench_reports::report`).

use anyhow::{Context, Result};
use std::path::{Path, PathBuf};

/// `zvbench report`'s arguments.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// A directory written by `zvbench run`.
    pub dir: PathBuf,
}

/// Writes `summary.md`, `plots/` and `report.html` in `dir`; returns the summary's text.
pub fn write(dir: &Path) -> Result<String> {
    let w = zvbench_reports::report::write(dir)
        .with_context(|| format!("cannot make the report for {}", dir.display()))?;
    Ok(w.summary)
}

/// `zvbench report DIR`: writes the report, prints the summary; exit status 0.
pub fn report(a: &ReportArgs) -> Result<i32> {
    println!("{}", write(&a.dir)?);
    eprintln!(
        "zvbench: summary.md, report.html and plots/ in {}",
        a.dir.display()
    );
    Ok(0)
}
