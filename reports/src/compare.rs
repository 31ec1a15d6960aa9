//! `zvbench compare BASE CUR`: per (target, workload, metric), the change of the median
//! with a bootstrap confidence interval over the repetitions, and a verdict against a
//! noise threshold (criterion's approach): a change counts only when the whole 95%
//! interval lies beyond the threshold.

use crate::stats::Spread;
use crate::ResultRow;
use std::collections::BTreeMap;
use std::fmt::Write;

/// A compared metric: its name, how to read it, and whether higher is better.
pub struct Metric {
    /// Column name.
    pub name: &'static str,
    /// Value of a row, if the row has one.
    pub get: fn(&ResultRow) -> Option<f64>,
    /// Throughput-like (true) or latency-like (false).
    pub higher_is_better: bool,
}

/// The metrics compared.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "mib_per_s",
        get: |r| Some(r.mib_per_s),
        higher_is_better: true,
    },
    Metric {
        name: "iops",
        get: |r| Some(r.iops),
        higher_is_better: true,
    },
    Metric {
        name: "lat_p99_us",
        get: |r| Some(r.lat_p99_us),
        higher_is_better: false,
    },
    Metric {
        name: "flush_p99_us",
        get: |r| r.flush_p99_us,
        higher_is_better: false,
    },
];

/// Improved, regressed or no change beyond noise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Better beyond the threshold.
    Improved,
    /// Worse beyond the threshold.
    Regressed,
    /// Within noise.
    NoChange,
}

/// One compared (target, workload, metric).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Change {
    /// Target.
    pub target: String,
    /// Workload.
    pub workload: String,
    /// Metric name.
    pub metric: &'static str,
    /// Baseline median.
    pub base: f64,
    /// Current median.
    pub cur: f64,
    /// Change of the median in percent.
    pub change_pct: f64,
    /// 95% bootstrap interval of the change, percent.
    pub ci_pct: (f64, f64),
    /// The verdict.
    pub verdict: Verdict,
}

/// A small deterministic generator (xorshift64*), so a comparison is reproducible.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) as usize % n
    }
}

fn resampled_median(v: &[f64], rng: &mut Rng) -> f64 {
    Spread::of((0..v.len()).map(|_| v[rng.below(v.len())]))
        .map(|s| s.median)
        .unwrap_or(f64::NAN)
}

/// The 2.5% and 97.5% quantiles of the change in percent of the median, from 2000
/// resamples of each side's repetitions.
pub fn bootstrap_ci(base: &[f64], cur: &[f64]) -> (f64, f64) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut d: Vec<f64> = (0..2000)
        .map(|_| {
            let b = resampled_median(base, &mut rng);
            (resampled_median(cur, &mut rng) / b - 1.0) * 100.0
        })
        .filter(|x| x.is_finite())
        .collect();
    d.sort_by(f64::total_cmp);
    if d.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    (
        d[d.len() * 25 / 1000],
        d[(d.len() * 975 / 1000).min(d.len() - 1)],
    )
}

/// Compares two result sets; `threshold_pct` is the noise band.
pub fn compare(base: &[ResultRow], cur: &[ResultRow], threshold_pct: f64) -> Vec<Change> {
    let collect = |rows: &[ResultRow], m: &Metric| {
        let mut g: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for r in rows {
            if let Some(v) = (m.get)(r) {
                g.entry((r.target.clone(), r.workload.clone()))
                    .or_default()
                    .push(v);
            }
        }
        g
    };
    let mut out = Vec::new();
    for m in METRICS {
        let b = collect(base, m);
        for (key, cv) in collect(cur, m) {
            let Some(bv) = b.get(&key) else { continue };
            let (Some(bm), Some(cm)) = (
                Spread::of(bv.iter().copied()),
                Spread::of(cv.iter().copied()),
            ) else {
                continue;
            };
            if bm.median == 0.0 {
                continue;
            }
            let change_pct = (cm.median / bm.median - 1.0) * 100.0;
            let ci = bootstrap_ci(bv, &cv);
            let sign = if m.higher_is_better { 1.0 } else { -1.0 };
            let (lo, hi) = if sign > 0.0 {
                (ci.0, ci.1)
            } else {
                (-ci.1, -ci.0)
            };
            let verdict = if lo > threshold_pct {
                Verdict::Improved
            } else if hi < -threshold_pct {
                Verdict::Regressed
            } else {
                Verdict::NoChange
            };
            out.push(Change {
                target: key.0.clone(),
                workload: key.1.clone(),
                metric: m.name,
                base: bm.median,
                cur: cm.median,
                change_pct,
                ci_pct: ci,
                verdict,
            });
        }
    }
    out
}

/// A Markdown table for CI summaries.
pub fn markdown(changes: &[Change], threshold_pct: f64) -> String {
    let mut md = format!("# zvbench compare (noise threshold ±{threshold_pct}%)\n\n");
    md.push_str("| target | workload | metric | base | current | change | 95% CI | verdict |\n|---|---|---|---:|---:|---:|---:|---|\n");
    for c in changes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1} | {:.1} | {:+.1}% | {:+.1}% … {:+.1}% | {} |",
            c.target,
            c.workload,
            c.metric,
            c.base,
            c.cur,
            c.change_pct,
            c.ci_pct.0,
            c.ci_pct.1,
            match c.verdict {
                Verdict::Improved => "improved",
                Verdict::Regressed => "**regressed**",
                Verdict::NoChange => "no change",
            }
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(mib: &[f64], p99: &[f64]) -> Vec<ResultRow> {
        mib.iter()
            .zip(p99)
            .map(|(&m, &l)| ResultRow {
                target: "vdi".into(),
                workload: "w".into(),
                mib_per_s: m,
                iops: m * 10.0,
                lat_p99_us: l,
                ..Default::default()
            })
            .collect()
    }

    fn verdict(c: &[Change], metric: &str) -> Verdict {
        c.iter().find(|x| x.metric == metric).unwrap().verdict
    }

    #[test]
    fn injected_regression_is_found() {
        let base = rows(
            &[100.0, 102.0, 98.0, 101.0, 99.0],
            &[500.0, 510.0, 490.0, 505.0, 495.0],
        );
        let cur = rows(
            &[80.0, 81.0, 79.0, 82.0, 78.0],
            &[700.0, 710.0, 690.0, 705.0, 695.0],
        );
        let c = compare(&base, &cur, 5.0);
        assert_eq!(verdict(&c, "mib_per_s"), Verdict::Regressed);
        assert_eq!(
            verdict(&c, "lat_p99_us"),
            Verdict::Regressed,
            "higher latency is worse"
        );
        let c = compare(&cur, &base, 5.0);
        assert_eq!(verdict(&c, "mib_per_s"), Verdict::Improved);
        assert!(markdown(&c, 5.0).contains("| vdi | w | mib_per_s | 80.0 | 100.0 | +25.0% |"));
    }

    #[test]
    fn noise_is_no_change() {
        let base = rows(&[100.0, 104.0, 96.0, 102.0, 98.0], &[500.0; 5]);
        let cur = rows(&[101.0, 97.0, 103.0, 99.0, 100.5], &[502.0; 5]);
        let c = compare(&base, &cur, 5.0);
        assert!(c.iter().all(|x| x.verdict == Verdict::NoChange), "{c:?}");
    }
}
