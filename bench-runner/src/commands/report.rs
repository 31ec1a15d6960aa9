//! `zvbench report`: the report files for a run directory (see `zvbench_reports::report`).

use anyhow::{Context, Result};
use std::path::Path;

/// Writes `summary.md`, `plots/` and `report.html` in `dir`; returns the summary's text.
pub fn write(dir: &Path) -> Result<String> {
    let w = zvbench_reports::report::write(dir)
        .with_context(|| format!("cannot make the report for {}", dir.display()))?;
    Ok(w.summary)
}
