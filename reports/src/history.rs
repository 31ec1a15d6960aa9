//! `zvbench history DIR...`: one metric across many runs, ordered by the date in each
//! run's `run.json`, as a table (median with min–max per run) and a trend plot.

use crate::compare::{Metric, METRICS};
use crate::plot::{Chart, Figure, Series};
use crate::row::ReadError;
use crate::run_json;
use crate::stats::{self, Spread};
use crate::summary::order;
use crate::{read_results, ResultRow};
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Why the runs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// A run's `results.csv` is missing or malformed.
    #[error(transparent)]
    Results(#[from] ReadError),
    /// A run's `run.json` cannot be read or is not a JSON object.
    #[error(transparent)]
    RunJsonFile(#[from] run_json::RunJsonError),
    /// A run's `run.json` is missing or has no `date`.
    #[error("{path}: {problem}; history orders runs by the date in run.json (written by `zvbench run` and `zvbench import`)")]
    RunJson {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A directory of runs cannot be listed.
    #[error("cannot list {path}")]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Neither a run directory nor a directory of them.
    #[error("{0} holds no results.csv, and no subdirectory of it does: give a run directory (written by `zvbench run` or `zvbench import`) or a directory of them")]
    NoRuns(PathBuf),
    /// The metric is not one of [`METRICS`].
    #[error("unknown metric {0:?}: use one of {names}", names = metric_names())]
    Metric(String),
}

fn metric_names() -> String {
    METRICS
        .iter()
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The metric called `name`.
pub fn metric(name: &str) -> Result<&'static Metric, HistoryError> {
    METRICS
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| HistoryError::Metric(name.to_string()))
}

/// One run: where it is, when it ran, its rows.
#[derive(Debug)]
pub struct Run {
    /// The run directory.
    pub dir: PathBuf,
    /// `date` from `run.json` (RFC 3339, UTC).
    pub date: String,
    /// `run_id` from `run.json`, or the directory name.
    pub id: String,
    /// Its results.
    pub rows: Vec<ResultRow>,
}

/// Reads one run directory.
pub fn load(dir: &Path) -> Result<Run, HistoryError> {
    let path = dir.join("run.json");
    let bad = |problem: String| HistoryError::RunJson {
        path: path.clone(),
        problem,
    };
    let run = run_json::read(dir)?.ok_or_else(|| bad("no such file".into()))?;
    let date = run.date.ok_or_else(|| bad("no \"date\"".into()))?;
    let id = run.run_id.unwrap_or_else(|| {
        dir.file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into())
    });
    Ok(Run {
        dir: dir.to_path_buf(),
        date,
        id,
        rows: read_results(&dir.join("results.csv"))?,
    })
}

/// The runs of `dirs`, oldest first (RFC 3339 UTC dates sort as text).
pub fn load_all(dirs: &[PathBuf]) -> Result<Vec<Run>, HistoryError> {
    let mut runs = dirs
        .iter()
        .map(|d| load(d))
        .collect::<Result<Vec<_>, _>>()?;
    runs.sort_by(|a, b| a.date.cmp(&b.date).then_with(|| a.id.cmp(&b.id)));
    Ok(runs)
}

/// The run directories `path` stands for: itself when it holds `results.csv`, else its
/// subdirectories that do, by name (`zvbench run`'s default names sort by time).
pub fn run_dirs(path: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    if path.join("results.csv").exists() {
        return Ok(vec![path.to_path_buf()]);
    }
    let io = |source| HistoryError::Dir {
        path: path.to_path_buf(),
        source,
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("results.csv").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(HistoryError::NoRuns(path.to_path_buf()));
    }
    Ok(dirs)
}

/// A metric's values per (target, workload) across runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    /// The metric's column name.
    pub metric: &'static str,
    /// (date, run id) per run, oldest first.
    pub runs: Vec<(String, String)>,
    /// "target / workload" and its spread in each run (`None`: not in that run).
    pub lines: Vec<(String, Vec<Option<Spread>>)>,
}

/// The trend of `metric` over `runs`, optionally for one workload.
pub fn trend(runs: &[Run], metric: &'static Metric, workload: Option<&str>) -> Trend {
    let all: Vec<&ResultRow> = runs
        .iter()
        .flat_map(|r| &r.rows)
        .filter(|r| workload.is_none_or(|w| r.workload == w))
        .collect();
    let mut keys: Vec<(String, String)> = Vec::new();
    for r in &all {
        let k = (r.target.clone(), r.workload.clone());
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    let lines = keys
        .into_iter()
        .map(|(t, w)| {
            let per_run = runs
                .iter()
                .map(|run| {
                    Spread::of(
                        run.rows
                            .iter()
                            .filter(|r| r.target == t && r.workload == w)
                            .filter_map(metric.get),
                    )
                })
                .collect();
            (format!("{t} / {w}"), per_run)
        })
        .collect();
    Trend {
        metric: metric.name,
        runs: runs
            .iter()
            .map(|r| (r.date.clone(), r.id.clone()))
            .collect(),
        lines,
    }
}

/// The trend as a Markdown table: a row per run, a column per (target, workload).
pub fn markdown(t: &Trend) -> String {
    let mut md = format!(
        "# History of {} (median, min–max)\n\n| date | run |",
        t.metric
    );
    for (name, _) in &t.lines {
        let _ = write!(md, " {name} |");
    }
    md.push_str("\n|---|---|");
    md.push_str(&"---:|".repeat(t.lines.len()));
    md.push('\n');
    for (i, (date, id)) in t.runs.iter().enumerate() {
        let _ = write!(md, "| {date} | {id} |");
        for (_, values) in &t.lines {
            let _ = write!(md, " {} |", stats::cell(values[i], 1));
        }
        md.push('\n');
    }
    md
}

/// The trend plot: medians per run, one line per (target, workload).
pub fn figure(t: &Trend) -> Figure {
    // Dates are RFC 3339: the day and minute are enough under each point.
    let categories = t
        .runs
        .iter()
        .map(|(d, _)| d.get(..16).unwrap_or(d).replace('T', " "))
        .collect();
    Figure {
        stem: "history".into(),
        title: format!("{} across runs (median)", t.metric),
        y_label: t.metric.into(),
        chart: Chart::Lines {
            categories,
            series: t
                .lines
                .iter()
                .map(|(name, v)| Series {
                    name: name.clone(),
                    values: v.iter().map(|s| s.map(|s| s.median)).collect(),
                })
                .collect(),
            log_y: false,
            labels: false,
        },
    }
}

/// The distinct workloads of the runs, first-seen order (for messages).
pub fn workloads(runs: &[Run]) -> Vec<String> {
    order(runs.iter().flat_map(|r| &r.rows), |r| r.workload.as_str())
        .into_iter()
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(date: &str, mib: &[f64]) -> Run {
        Run {
            dir: PathBuf::new(),
            date: date.into(),
            id: date.into(),
            rows: mib
                .iter()
                .map(|&m| ResultRow {
                    target: "zvol".into(),
                    workload: "seqwr".into(),
                    mib_per_s: m,
                    ..Default::default()
                })
                .collect(),
        }
    }

    #[test]
    fn a_directory_of_runs_is_its_runs_by_name() {
        let d = tempfile::tempdir().unwrap();
        for name in ["b", "a", "empty"] {
            std::fs::create_dir(d.path().join(name)).unwrap();
        }
        for name in ["b", "a"] {
            std::fs::write(d.path().join(name).join("results.csv"), "x").unwrap();
        }
        assert_eq!(
            run_dirs(d.path()).unwrap(),
            [d.path().join("a"), d.path().join("b")]
        );
        assert_eq!(run_dirs(&d.path().join("a")).unwrap(), [d.path().join("a")]);
        let e = run_dirs(&d.path().join("empty")).unwrap_err().to_string();
        assert!(e.contains("holds no results.csv"), "{e}");
        let e = run_dirs(&d.path().join("missing")).unwrap_err().to_string();
        assert!(e.contains("cannot list"), "{e}");
    }

    #[test]
    fn one_line_per_target_and_workload_with_gaps() {
        let mut runs = vec![
            run("2026-11-02T00:00:00Z", &[10.0, 12.0]),
            run("2026-11-01T00:00:00Z", &[20.0]),
        ];
        runs.push(Run {
            rows: vec![ResultRow {
                target: "vdi".into(),
                workload: "seqwr".into(),
                mib_per_s: 5.0,
                ..Default::default()
            }],
            ..run("2026-11-03T00:00:00Z", &[])
        });
        runs.sort_by(|a, b| a.date.cmp(&b.date));
        let t = trend(&runs, metric("mib_per_s").unwrap(), None);
        assert_eq!(t.lines.len(), 2);
        let zvol: Vec<Option<f64>> = t.lines[0].1.iter().map(|s| s.map(|s| s.median)).collect();
        assert_eq!(zvol, [Some(20.0), Some(11.0), None]);
        let md = markdown(&t);
        assert!(
            md.contains("| 2026-11-02T00:00:00Z | 2026-11-02T00:00:00Z | 11.0 (10.0–12.0) | – |"),
            "{md}"
        );
        assert!(trend(&runs, metric("mib_per_s").unwrap(), Some("other"))
            .lines
            .is_empty());
        let err = metric("bogus").err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("mib_per_s, iops")));
    }
}
