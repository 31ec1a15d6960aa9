//! `zvbench report DIR`: from `results.csv` and `run.json`, writes `summary.md`,
//! `plots/*.png` + `plots/*.svg` and the self-contained `report.html`.

use crate::diagnose::{diagnose, Context};
use crate::figures::figures;
use crate::plot::{self, PlotError};
use crate::row::ReadError;
use crate::{html, read_results, summary};
use std::path::{Path, PathBuf};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `results.csv` is missing or malformed.
    #[error(transparent)]
    Results(#[from] ReadError),
    /// `run.json` exists but is not JSON.
    #[error("{path} is not valid JSON (fix or remove it; the report then has no provenance)")]
    RunJson {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A figure could not be drawn.
    #[error(transparent)]
    Plot(#[from] PlotError),
}

/// What a report wrote.
#[derive(Debug)]
pub struct Written {
    /// The text of `summary.md`.
    pub summary: String,
    /// Every file written, summary first.
    pub files: Vec<PathBuf>,
}

/// The diagnosis context from `run.json`: the volblocksize and `sync` of each zvol target.
pub fn context(run: &serde_json::Value) -> Context {
    let mut ctx = Context::default();
    if let Some(storage) = run["storage"].as_object() {
        for (target, props) in storage {
            if let Some(v) = props["volblocksize"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok())
            {
                ctx.volblocksize.insert(target.clone(), v);
            }
            if let Some(s) = props["sync"].as_str() {
                ctx.zfs_sync.insert(target.clone(), s.to_string());
            }
        }
    }
    ctx
}

fn write_file(path: PathBuf, bytes: &[u8], files: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    std::fs::write(&path, bytes).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    files.push(path);
    Ok(())
}

/// Reads `DIR/results.csv` and `DIR/run.json` (optional) and writes the report files.
pub fn write(dir: &Path) -> Result<Written, ReportError> {
    let rows = read_results(&dir.join("results.csv"))?;
    let run_path = dir.join("run.json");
    let run: serde_json::Value = match std::fs::read(&run_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|source| ReportError::RunJson {
            path: run_path.clone(),
            source,
        })?,
        Err(_) => serde_json::Value::Null,
    };
    let title = format!("zvbench run {}", run["run_id"].as_str().unwrap_or(""));
    let title = title.trim();
    let findings = diagnose(&rows, &context(&run));
    let tables = summary::tables(&rows);
    let summary = summary::render(title, &tables, &findings);
    let mut files = Vec::new();
    write_file(dir.join("summary.md"), summary.as_bytes(), &mut files)?;

    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|source| ReportError::Write {
        path: plots.clone(),
        source,
    })?;
    let mut inline = Vec::new();
    for fig in figures(&rows) {
        let svg = plot::svg(&fig)?;
        write_file(
            plots.join(format!("{}.svg", fig.stem)),
            svg.as_bytes(),
            &mut files,
        )?;
        let png = plots.join(format!("{}.png", fig.stem));
        plot::png(&fig, &png)?;
        files.push(png);
        inline.push((format!("plots/{0}.png, plots/{0}.svg", fig.stem), svg));
    }
    let page = html::render(title, &tables, &findings, &inline, &run);
    write_file(dir.join("report.html"), page.as_bytes(), &mut files)?;
    Ok(Written { summary, files })
}
