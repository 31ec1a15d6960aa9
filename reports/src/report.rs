//! `zvbench report DIR`: from `results.csv` and `run.json`, writes `summary.md`,
//! `plots/*.png` + `plots/*.svg` and the self-contained `report.html` (with the send
//! step's table when run.json has one).

use crate::diagnose::{diagnose, Context};
use crate::figures::figures;
use crate::plot::{self, PlotError};
use crate::row::ReadError;
use crate::run_json::{self, RunInfo, RunJsonError};
use crate::timeseries::{self, SeriesError};
use crate::{html, read_results, send, summary, zfs_sources};
use std::path::{Path, PathBuf};

/// Why a report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// `results.csv` is missing or malformed.
    #[error(transparent)]
    Results(#[from] ReadError),
    /// `run.json` exists but cannot be read or is not a JSON object.
    #[error(transparent)]
    RunJson(#[from] RunJsonError),
    /// `results.jsonl` exists but its time series cannot be read.
    #[error(transparent)]
    Series(#[from] SeriesError),
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

/// The diagnosis context from `run.json`: the volblocksize and the ZFS properties of each
/// zvol target, and the `VBox.log` line of VirtualBox targets whose async flushes were
/// disabled.
pub fn context(run: &RunInfo) -> Context {
    let mut ctx = Context::default();
    for (target, st) in &run.storage {
        if let Some(v) = st.prop("volblocksize").and_then(|s| s.parse::<u64>().ok()) {
            ctx.volblocksize.insert(target.clone(), v);
        }
        if let Some(line) = st.async_flushes_disabled.values().next() {
            ctx.async_flushes_disabled
                .insert(target.clone(), line.clone());
        }
        for prop in crate::diagnose::ZFS_PROPS {
            if let Some(v) = st.prop(prop) {
                ctx.zfs
                    .entry(target.clone())
                    .or_default()
                    .insert(prop.to_string(), v.to_string());
            }
        }
    }
    ctx
}

fn write_file(path: PathBuf, bytes: &[u8], files: &mut Vec<PathBuf>) -> Result<(), ReportError> {
    crate::atomic::write(&path, bytes).map_err(|source| ReportError::Write {
        path: path.clone(),
        source,
    })?;
    files.push(path);
    Ok(())
}

/// Reads `DIR/results.csv` (at least one row, every value checked) and `DIR/run.json`
/// (optional) and writes the report files; nothing is written when either is refused.
pub fn write(dir: &Path) -> Result<Written, ReportError> {
    let rows = read_results(&dir.join("results.csv"))?;
    let run = run_json::read(dir)?.unwrap_or_default();
    let title = format!("zvbench run {}", run.run_id.as_deref().unwrap_or(""));
    let title = title.trim();
    let series = timeseries::read(dir)?;
    let mut findings = diagnose(&rows, &context(&run));
    findings.extend(timeseries::diagnose(&series));
    let tables = summary::tables(&rows);
    let sends = send::rows(&run);
    let sources = zfs_sources::rows(&run);
    let cuts = summary::powercut_rows(&rows);
    let summary = summary::render(title, &tables, &findings, &summary::render_powercut(&cuts))
        + &summary::boot_overhead(&rows)
        + &zfs_sources::markdown(&sources)
        + &send::markdown(&sends);
    let mut files = Vec::new();
    write_file(dir.join("summary.md"), summary.as_bytes(), &mut files)?;

    let plots = dir.join("plots");
    std::fs::create_dir_all(&plots).map_err(|source| ReportError::Write {
        path: plots.clone(),
        source,
    })?;
    let mut inline = Vec::new();
    for fig in figures(&rows)
        .into_iter()
        .chain(timeseries::figures(&series))
    {
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
    let page = html::render(
        title,
        &tables,
        &findings,
        &inline,
        &run,
        &(html::powercut_table(&cuts) + &zfs_sources::html(&sources) + &send::html(&sends)),
    );
    write_file(dir.join("report.html"), page.as_bytes(), &mut files)?;
    Ok(Written { summary, files })
}
