//! `zvbench compare BASE CUR`: per (target, workload, metric), the change of the median
//! with a bootstrap confidence interval over the repetitions, and a verdict against a
//! noise threshold (criterion's approach): a change counts only when the whole 95%
//! interval lies beyond the threshold.

use crate::stats::{fixed, Spread};
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

/// A matched (target, workload, metric) that could not be compared, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NotCompared {
    /// Target.
    pub target: String,
    /// Workload.
    pub workload: String,
    /// Metric name.
    pub metric: &'static str,
    /// Why not.
    pub why: &'static str,
}

/// Everything a comparison found: the changes, and what could not be compared.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Comparison {
    /// One per (target, workload, metric) measured in both runs.
    pub changes: Vec<Change>,
    /// (target, workload) only in the baseline.
    pub only_in_base: Vec<(String, String)>,
    /// (target, workload) only in the current run.
    pub only_in_current: Vec<(String, String)>,
    /// Matched metrics without a comparable value.
    pub not_compared: Vec<NotCompared>,
}

/// Why two runs could not be compared at all.
#[derive(Debug, thiserror::Error)]
#[error("nothing to compare: {}", self.0)]
pub struct NothingComparable(String);

/// The distinct (target, workload) keys of `rows`, first-seen order.
fn keys(rows: &[ResultRow]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = Vec::new();
    for r in rows {
        let k = (r.target.clone(), r.workload.clone());
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

/// Compares two result sets; `threshold_pct` is the noise band. Only finite values count
/// (NaN is "not measured"). An error when not one metric of one (target, workload) could be
/// compared: a CI gate must not pass on nothing.
pub fn compare(
    base: &[ResultRow],
    cur: &[ResultRow],
    threshold_pct: f64,
) -> Result<Comparison, NothingComparable> {
    let collect = |rows: &[ResultRow], m: &Metric| {
        let mut g: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
        for r in rows {
            if let Some(v) = (m.get)(r).filter(|v| v.is_finite()) {
                g.entry((r.target.clone(), r.workload.clone()))
                    .or_default()
                    .push(v);
            }
        }
        g
    };
    let (base_keys, cur_keys) = (keys(base), keys(cur));
    let only = |a: &[(String, String)], b: &[(String, String)]| -> Vec<(String, String)> {
        a.iter().filter(|k| !b.contains(k)).cloned().collect()
    };
    let mut out = Comparison {
        changes: Vec::new(),
        only_in_base: only(&base_keys, &cur_keys),
        only_in_current: only(&cur_keys, &base_keys),
        not_compared: Vec::new(),
    };
    for m in METRICS {
        let (b, c) = (collect(base, m), collect(cur, m));
        for key in cur_keys.iter().filter(|k| base_keys.contains(k)) {
            let skip = |why| NotCompared {
                target: key.0.clone(),
                workload: key.1.clone(),
                metric: m.name,
                why,
            };
            let (bv, cv) = match (b.get(key), c.get(key)) {
                (Some(bv), Some(cv)) => (bv, cv),
                // A metric neither run measured (flush latency of a workload that never
                // flushes) is not a gap.
                (None, None) => continue,
                (None, Some(_)) => {
                    out.not_compared
                        .push(skip("no finite value in the baseline"));
                    continue;
                }
                (Some(_), None) => {
                    out.not_compared
                        .push(skip("no finite value in the current run"));
                    continue;
                }
            };
            let (Some(bm), Some(cm)) = (
                Spread::of(bv.iter().copied()),
                Spread::of(cv.iter().copied()),
            ) else {
                continue;
            };
            let change_pct = (cm.median / bm.median - 1.0) * 100.0;
            let ci = bootstrap_ci(bv, cv);
            if bm.median == 0.0
                || !change_pct.is_finite()
                || !(ci.0.is_finite() && ci.1.is_finite())
            {
                out.not_compared.push(skip(
                    "the baseline median is 0 or the change is not a finite percentage",
                ));
                continue;
            }
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
            out.changes.push(Change {
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
    if out.changes.is_empty() {
        let names = |v: &[(String, String)]| {
            v.iter()
                .map(|(t, w)| format!("{t} / {w}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let why = if base.is_empty() || cur.is_empty() {
            format!(
                "the {} run has no rows",
                if base.is_empty() {
                    "baseline"
                } else {
                    "current"
                }
            )
        } else if out.only_in_base.len() == base_keys.len() {
            format!(
                "the runs share no target and workload (baseline: {}; current: {})",
                names(&base_keys),
                names(&cur_keys)
            )
        } else {
            format!(
                "no metric has a finite, non-zero value in both runs ({})",
                out.not_compared
                    .iter()
                    .map(|n| format!("{} / {} {}: {}", n.target, n.workload, n.metric, n.why))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        };
        return Err(NothingComparable(why));
    }
    Ok(out)
}

/// A signed percentage.
fn pct(v: f64) -> String {
    format!("{}{}%", if v >= 0.0 { "+" } else { "" }, fixed(v, 1))
}

/// A Markdown table for CI summaries, then what could not be compared.
pub fn markdown(c: &Comparison, threshold_pct: f64) -> String {
    let mut md = format!("# zvbench compare (noise threshold ±{threshold_pct}%)\n\n");
    md.push_str("| target | workload | metric | base | current | change | 95% CI | verdict |\n|---|---|---|---:|---:|---:|---:|---|\n");
    for c in &c.changes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} … {} | {} |",
            c.target,
            c.workload,
            c.metric,
            fixed(c.base, 1),
            fixed(c.cur, 1),
            pct(c.change_pct),
            pct(c.ci_pct.0),
            pct(c.ci_pct.1),
            match c.verdict {
                Verdict::Improved => "improved",
                Verdict::Regressed => "**regressed**",
                Verdict::NoChange => "no change",
            }
        );
    }
    for (label, keys) in [
        ("Only in the baseline", &c.only_in_base),
        ("Only in the current run", &c.only_in_current),
    ] {
        if !keys.is_empty() {
            let _ = writeln!(md, "\n{label} (not compared):\n");
            for (t, w) in keys {
                let _ = writeln!(md, "- {t} / {w}");
            }
        }
    }
    if !c.not_compared.is_empty() {
        let _ = writeln!(md, "\nNot compared:\n");
        for n in &c.not_compared {
            let _ = writeln!(
                md,
                "- {} / {} {}: {}",
                n.target, n.workload, n.metric, n.why
            );
        }
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
        let c = compare(&base, &cur, 5.0).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(
            verdict(&c.changes, "lat_p99_us"),
            Verdict::Regressed,
            "higher latency is worse"
        );
        let c = compare(&cur, &base, 5.0).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        assert!(markdown(&c, 5.0).contains("| vdi | w | mib_per_s | 80.0 | 100.0 | +25.0% |"));
    }

    #[test]
    fn noise_is_no_change() {
        let base = rows(&[100.0, 104.0, 96.0, 102.0, 98.0], &[500.0; 5]);
        let cur = rows(&[101.0, 97.0, 103.0, 99.0, 100.5], &[502.0; 5]);
        let c = compare(&base, &cur, 5.0).unwrap().changes;
        assert!(c.iter().all(|x| x.verdict == Verdict::NoChange), "{c:?}");
    }

    fn row(target: &str, workload: &str, mib: f64) -> ResultRow {
        ResultRow {
            target: target.into(),
            workload: workload.into(),
            mib_per_s: mib,
            iops: mib,
            lat_p99_us: 100.0,
            ..Default::default()
        }
    }

    /// Issue 9 item 10: each of these passed as "no change" (exit 0) before.
    #[test]
    fn nothing_comparable_is_an_error() {
        let a = vec![row("vdi", "w", 100.0)];
        let b = vec![row("zvol", "w", 100.0)];
        let e = compare(&a, &b, 5.0).unwrap_err().to_string();
        assert!(
            e.contains("share no target") && e.contains("vdi / w") && e.contains("zvol / w"),
            "{e}"
        );
        let e = compare(&a, &[], 5.0).unwrap_err().to_string();
        assert!(e.contains("current run has no rows"), "{e}");
        let e = compare(&[], &a, 5.0).unwrap_err().to_string();
        assert!(e.contains("baseline run has no rows"), "{e}");
        let nan = vec![ResultRow {
            mib_per_s: f64::NAN,
            iops: f64::INFINITY,
            lat_p99_us: f64::NAN,
            ..row("vdi", "w", 0.0)
        }];
        let e = compare(&a, &nan, 5.0).unwrap_err().to_string();
        assert!(
            e.contains("mib_per_s: no finite value in the current run"),
            "{e}"
        );
        let e = compare(&nan, &a, 5.0).unwrap_err().to_string();
        assert!(e.contains("no finite value in the baseline"), "{e}");
        let zero = vec![ResultRow {
            lat_p99_us: 0.0,
            ..row("vdi", "w", 0.0)
        }];
        let e = compare(&zero, &zero, 5.0).unwrap_err().to_string();
        assert!(e.contains("mib_per_s") && e.contains("median is 0"), "{e}");
    }

    #[test]
    fn unmatched_rows_are_listed() {
        let base = vec![row("vdi", "w", 100.0), row("old", "w", 1.0)];
        let cur = vec![row("vdi", "w", 100.0), row("new", "x", 1.0)];
        let c = compare(&base, &cur, 5.0).unwrap();
        assert_eq!(c.only_in_base, [("old".to_string(), "w".to_string())]);
        assert_eq!(c.only_in_current, [("new".to_string(), "x".to_string())]);
        let md = markdown(&c, 5.0);
        assert!(
            md.contains("Only in the baseline (not compared):\n\n- old / w"),
            "{md}"
        );
        assert!(
            md.contains("Only in the current run (not compared):\n\n- new / x"),
            "{md}"
        );
    }
}
