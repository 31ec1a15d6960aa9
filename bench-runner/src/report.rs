//! `zvbench report`: turns a run directory into `summary.md`.

use anyhow::{Context, Result};
use std::path::Path;
use zvbench_reports::diagnose::{diagnose, Context as DiagContext};
use zvbench_reports::{read_results, summary};

/// Reads `DIR/results.csv` and `DIR/run.json`, writes `DIR/summary.md`, returns its text.
pub fn write(dir: &Path) -> Result<String> {
    let rows = read_results(&dir.join("results.csv"))?;
    let run: serde_json::Value = std::fs::read(dir.join("run.json"))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let mut ctx = DiagContext::default();
    if let Some(storage) = run["storage"].as_object() {
        for (target, props) in storage {
            if let Some(v) = props["volblocksize"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
            {
                ctx.volblocksize.insert(target.clone(), v);
            }
        }
    }
    let title = format!("zvbench run {}", run["run_id"].as_str().unwrap_or(""));
    let md = summary::render(title.trim(), &rows, &diagnose(&rows, &ctx));
    let path = dir.join("summary.md");
    std::fs::write(&path, &md).with_context(|| format!("write {}", path.display()))?;
    Ok(md)
}
