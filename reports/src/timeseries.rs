//! Performance over time: the per-interval series each pass carries in `results.jsonl`
//! (throughput, IOPS, p99 latency, flushes), drawn per workload, and the rule that finds
//! periodic stalls — intervals far below the median at a regular period, as ZFS
//! transaction-group syncs and host write-back make, which a pass's median hides.

use crate::diagnose::Finding;
use crate::plot::{stem, Chart, Figure, Series as Line};
use crate::row::{read_bytes, ReadError};
use crate::stats::plain;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use zvbench_agent::series::{Series, SeriesPoint};

pub use zvbench_agent::series::MAX_POINTS;

/// One pass's series with where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct PassSeries {
    /// Target.
    pub target: String,
    /// Workload.
    pub workload: String,
    /// Repetition.
    pub repetition: u64,
    /// The series.
    pub series: Series,
}

/// Why `results.jsonl` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    /// Unreadable or too large.
    #[error("cannot read {path}: {why}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A line's series is malformed or holds an impossible value.
    #[error("{path}: line {line}: {why}; fix or remove that line")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        why: String,
    },
}

fn check(s: &Series) -> Result<(), String> {
    if s.points.len() > MAX_POINTS {
        return Err(format!(
            "a series of {} points, over the {MAX_POINTS} allowed",
            s.points.len()
        ));
    }
    if s.interval_ms == 0 {
        return Err("a series with interval_ms 0".into());
    }
    for p in &s.points {
        let values = [Some(p.t_s), Some(p.mib_per_s), Some(p.iops), p.lat_p99_us];
        if let Some(v) = values
            .into_iter()
            .flatten()
            .find(|v| !v.is_finite() || *v < 0.0)
        {
            return Err(format!(
                "a series point holds {}, not a finite non-negative number",
                plain(v)
            ));
        }
    }
    Ok(())
}

/// The series of every pass in `DIR/results.jsonl`; none when the file is absent (an
/// imported run) or its passes carry none (zvbench before time series).
pub fn read(dir: &Path) -> Result<Vec<PassSeries>, SeriesError> {
    let path = dir.join("results.jsonl");
    let read_err = |why: String| SeriesError::Read {
        path: path.clone(),
        why,
    };
    let bytes = match read_bytes(&path) {
        Err(ReadError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Vec::new())
        }
        r => r.map_err(|e| read_err(e.to_string()))?,
    };
    let text = String::from_utf8(bytes).map_err(|e| read_err(e.to_string()))?;
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line_err = |why: String| SeriesError::Line {
            path: path.clone(),
            line: i + 1,
            why,
        };
        if l.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l).map_err(|e| line_err(e.to_string()))?;
        if v["series"].is_null() {
            continue;
        }
        let series: Series = serde_json::from_value(v["series"].clone())
            .map_err(|e| line_err(format!("series: {e}")))?;
        check(&series).map_err(line_err)?;
        out.push(PassSeries {
            target: v["target"].as_str().unwrap_or_default().to_string(),
            workload: v["workload"].as_str().unwrap_or_default().to_string(),
            repetition: v["repetition"].as_u64().unwrap_or(0),
            series,
        });
    }
    Ok(out)
}

/// Per workload with a series of at least two points: throughput and p99 latency over
/// time, one line per target and repetition.
pub fn figures(passes: &[PassSeries]) -> Vec<Figure> {
    let mut by_workload: BTreeMap<&str, Vec<&PassSeries>> = BTreeMap::new();
    for p in passes.iter().filter(|p| p.series.points.len() >= 2) {
        by_workload.entry(p.workload.as_str()).or_default().push(p);
    }
    let mut out = Vec::new();
    for (w, ps) in by_workload {
        let longest = ps.iter().map(|p| p.series.points.len()).max().unwrap_or(0);
        let interval = ps[0].series.interval_ms as f64 / 1000.0;
        let categories: Vec<String> = (1..=longest)
            .map(|i| crate::plot::short(i as f64 * interval))
            .collect();
        let lines = |f: fn(&SeriesPoint) -> Option<f64>| -> Vec<Line> {
            ps.iter()
                .map(|p| Line {
                    name: format!("{} #{}", p.target, p.repetition),
                    values: (0..longest)
                        .map(|i| p.series.points.get(i).and_then(f))
                        .collect(),
                })
                .collect()
        };
        let ms = ps[0].series.interval_ms;
        out.push(Figure {
            stem: stem(&["timeline", w]),
            title: format!("{w}: throughput per {ms} ms interval"),
            y_label: "MiB/s (x: seconds)".into(),
            chart: Chart::Lines {
                categories: categories.clone(),
                series: lines(|p| Some(p.mib_per_s)),
                log_y: false,
                labels: false,
            },
        });
        out.push(Figure {
            stem: stem(&["timeline-p99", w]),
            title: format!("{w}: p99 latency per {ms} ms interval"),
            y_label: "p99 latency, µs (log; x: seconds)".into(),
            chart: Chart::Lines {
                categories,
                series: lines(|p| p.lat_p99_us),
                log_y: true,
                labels: false,
            },
        });
    }
    out
}

/// An interval is a stall below this share of the pass's median throughput.
const STALL_SHARE: f64 = 0.3;
/// Fewest stalls that can show a period.
const MIN_STALLS: usize = 3;
/// Largest spread of the gaps between stalls (coefficient of variation) still "regular".
const MAX_GAP_CV: f64 = 0.25;

/// Periodic stalls of one series: the period in seconds, the stall count and the median
/// throughput, when there are at least [`MIN_STALLS`] stall runs at a regular period.
pub fn periodic_stalls(s: &Series) -> Option<(f64, usize, f64)> {
    // The last interval is usually partial (the end flush): left out.
    let pts = &s.points[..s.points.len().saturating_sub(1)];
    if pts.len() < 8 {
        return None;
    }
    let mut tp: Vec<f64> = pts.iter().map(|p| p.mib_per_s).collect();
    tp.sort_by(f64::total_cmp);
    let median = tp[tp.len() / 2];
    if median <= 0.0 {
        return None;
    }
    // The start of each run of consecutive stalled intervals.
    let mut starts = Vec::new();
    let mut prev = false;
    for (i, p) in pts.iter().enumerate() {
        let stalled = p.mib_per_s < STALL_SHARE * median;
        if stalled && !prev {
            starts.push(i);
        }
        prev = stalled;
    }
    if starts.len() < MIN_STALLS {
        return None;
    }
    let gaps: Vec<f64> = starts.windows(2).map(|w| (w[1] - w[0]) as f64).collect();
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    let var = gaps.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / gaps.len() as f64;
    if mean < 2.0 || var.sqrt() / mean > MAX_GAP_CV {
        return None;
    }
    Some((mean * s.interval_ms as f64 / 1000.0, starts.len(), median))
}

/// The `periodic-stalls` finding for every pass whose series shows them.
pub fn diagnose(passes: &[PassSeries]) -> Vec<Finding> {
    passes
        .iter()
        .filter_map(|p| {
            let (period, n, median) = periodic_stalls(&p.series)?;
            Some(Finding {
                rule: "periodic-stalls",
                target: p.target.clone(),
                workload: p.workload.clone(),
                message: format!(
                    "throughput collapses about every {period:.1} s: a regular stall a median hides. \
                     On a zvol this is the pattern of ZFS transaction-group syncs (zfs_txg_timeout, \
                     5 s by default, or dirty data reaching zfs_dirty_data_sync); on an image file, \
                     host write-back (vm.dirty_expire_centisecs)."
                ),
                evidence: format!(
                    "repetition {}: {n} stalls below {:.0}% of the median {} MiB/s, {} ms intervals",
                    p.repetition,
                    STALL_SHARE * 100.0,
                    crate::plot::short(median),
                    p.series.interval_ms
                ),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(tp: &[f64]) -> Series {
        Series {
            interval_ms: 500,
            points: tp
                .iter()
                .enumerate()
                .map(|(i, &m)| SeriesPoint {
                    t_s: (i + 1) as f64 * 0.5,
                    mib_per_s: m,
                    iops: m * 256.0,
                    lat_p99_us: Some(100.0),
                    flushes: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn regular_stalls_are_found_with_their_period() {
        // A stall every 10 intervals (5 s at 500 ms), as txg syncs make.
        let tp: Vec<f64> = (0..41)
            .map(|i| if i % 10 == 4 { 5.0 } else { 200.0 })
            .collect();
        let (period, n, median) = periodic_stalls(&series(&tp)).unwrap();
        assert!((period - 5.0).abs() < 1e-9, "{period}");
        assert_eq!((n, median), (4, 200.0));
        let f = diagnose(&[PassSeries {
            target: "zvol".into(),
            workload: "w".into(),
            repetition: 1,
            series: series(&tp),
        }]);
        assert_eq!(f.len(), 1);
        assert!(f[0].message.contains("5.0 s"), "{}", f[0].message);
    }

    #[test]
    fn irregular_dips_steady_runs_and_short_series_are_not_stalls() {
        let steady: Vec<f64> = (0..40).map(|i| 200.0 + (i % 3) as f64).collect();
        assert_eq!(periodic_stalls(&series(&steady)), None);
        let mut irregular = vec![200.0; 40];
        for i in [2, 3, 4, 20, 37] {
            irregular[i] = 1.0;
        }
        irregular[3] = 200.0;
        assert_eq!(periodic_stalls(&series(&irregular)), None);
        assert_eq!(periodic_stalls(&series(&[200.0, 1.0, 200.0, 1.0])), None);
    }

    #[test]
    fn reads_series_from_results_jsonl_and_refuses_impossible_points() {
        let dir = tempfile::tempdir().unwrap();
        let good = serde_json::json!({"target": "t", "workload": "w", "repetition": 1,
            "series": series(&[1.0, 2.0, 3.0])});
        let old = serde_json::json!({"target": "t", "workload": "old", "repetition": 1});
        std::fs::write(dir.path().join("results.jsonl"), format!("{good}\n{old}\n")).unwrap();
        let got = read(dir.path()).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].series.points.len(), 3);
        let figs = figures(&got);
        assert_eq!(figs.len(), 2);
        assert_eq!(figs[0].stem, "timeline-w");

        let bad = good
            .to_string()
            .replace("\"mib_per_s\":2.0", "\"mib_per_s\":-2.0");
        std::fs::write(dir.path().join("results.jsonl"), format!("{old}\n{bad}\n")).unwrap();
        let e = read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("line 2") && e.contains("-2"), "{e}");
        assert!(read(&dir.path().join("none")).unwrap().is_empty());
    }
}
