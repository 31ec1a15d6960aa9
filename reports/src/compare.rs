//! `zvbench compare BASE... CUR`: per (target, workload, metric), the change of the median
//! and a verdict that rests on the noise between runs, plus the flush-count gate
//! ([`crate::flushgate`]).
//!
//! - With two or more baseline runs: a **t-test over the baseline runs** (Bencher's
//!   t-test threshold over a lookback window): each run's median is one sample, on a log
//!   scale (throughput changes are ratios); the current median regresses when it lies
//!   beyond the one-sided `boundary` quantile of Student's t with n − 1 degrees of freedom,
//!   times the baseline runs' standard deviation, times √(1 + 1/n) (a prediction interval
//!   for one new run), and beyond the `threshold` as well.
//! - With one baseline run the noise between runs is unknown: a 95% bootstrap interval
//!   over the repetitions (criterion's approach) must lie wholly beyond
//!   [`SINGLE_RUN_THRESHOLD_PCT`] (or the `threshold`, if larger). Two same-commit runs on
//!   this machine differed by up to −32% (interval to −21%), so the bar is 25%.

use crate::flushgate::{self, FlushChange, FlushVerdict};
use crate::stats::{fixed, student_t_quantile, Spread};
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
    /// For a tail percentile: how many samples of a row it rests on (requests, flushes),
    /// if known. A percentile of too few samples is not gated ([`MIN_TAIL_SAMPLES`]).
    pub samples: Option<fn(&ResultRow) -> Option<f64>>,
}

/// The fewest samples per pass a p99 must rest on to be gated: with 1,000 requests ten
/// lie above it; with the quick scenario's 64 it is the second largest, one stray
/// request — measured here, such p99s moved by +100…+270% between same-commit runs.
pub const MIN_TAIL_SAMPLES: f64 = 1000.0;

/// The metrics compared.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "mib_per_s",
        get: |r| Some(r.mib_per_s),
        higher_is_better: true,
        samples: None,
    },
    Metric {
        name: "iops",
        get: |r| Some(r.iops),
        higher_is_better: true,
        samples: None,
    },
    Metric {
        name: "lat_p99_us",
        get: |r| Some(r.lat_p99_us),
        higher_is_better: false,
        samples: Some(|r| Some(r.iops * r.seconds).filter(|n| n.is_finite())),
    },
    Metric {
        name: "flush_p99_us",
        get: |r| r.flush_p99_us,
        higher_is_better: false,
        samples: Some(|r| Some(r.agent_flushes as f64)),
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
    /// The interval the verdict rests on, percent: with several baseline runs the band of
    /// changes their between-run noise allows (t-test); with one, the 95% bootstrap
    /// interval of the change.
    pub ci_pct: (f64, f64),
    /// Baseline runs with a value: 1 means between-run noise is unknown.
    pub baseline_runs: usize,
    /// The verdict.
    pub verdict: Verdict,
}

/// The noise threshold with a single baseline run, percent: between-run noise is unknown.
pub const SINGLE_RUN_THRESHOLD_PCT: f64 = 25.0;

/// The default one-sided boundary of the t-test: 0.999, since one comparison of the quick
/// scenario tests about 36 metrics and each A/A comparison must pass as a whole.
pub const DEFAULT_BOUNDARY: f64 = 0.999;

/// How a comparison decides.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Settings {
    /// Smallest change that counts, percent.
    pub threshold_pct: f64,
    /// One-sided quantile of the t-test (e.g. 0.999).
    pub boundary: f64,
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

/// The 2.5% and 97.5% quantiles of `stat` over 2000 bootstrap draws (the same seeded
/// sequence every time); `None` when no draw gave a finite value.
fn bootstrap_95(mut stat: impl FnMut(&mut Rng) -> f64) -> Option<(f64, f64)> {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut d: Vec<f64> = (0..2000)
        .map(|_| stat(&mut rng))
        .filter(|x| x.is_finite())
        .collect();
    d.sort_by(f64::total_cmp);
    let at = |per_mille: usize| d[(d.len() * per_mille / 1000).min(d.len() - 1)];
    (!d.is_empty()).then(|| (at(25), at(975)))
}

/// The 2.5% and 97.5% quantiles of the change in percent of the median, from 2000
/// resamples of each side's repetitions.
pub fn bootstrap_ci(base: &[f64], cur: &[f64]) -> (f64, f64) {
    bootstrap_95(|rng| {
        let b = resampled_median(base, rng);
        (resampled_median(cur, rng) / b - 1.0) * 100.0
    })
    .unwrap_or((f64::NAN, f64::NAN))
}

/// How far the 95% bootstrap interval of the median of `v` reaches from the median, in
/// percent of it (`repetitions = "auto"` stops below a bar); infinite for fewer than two
/// values or a zero median.
pub fn median_half_width_pct(v: &[f64]) -> f64 {
    let Some(m) = Spread::of(v.iter().copied()).filter(|s| s.n >= 2 && s.median != 0.0) else {
        return f64::INFINITY;
    };
    let Some((lo, hi)) = bootstrap_95(|rng| resampled_median(v, rng)) else {
        return f64::INFINITY;
    };
    (m.median - lo).max(hi - m.median) / m.median.abs() * 100.0
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
    /// Flush counts per layer of every (target, workload) in both.
    pub flushes: Vec<FlushChange>,
    /// Baseline runs given.
    pub baseline_runs: usize,
    /// How the verdicts were decided.
    pub settings: Settings,
}

impl Comparison {
    /// Whether the gate fails: a metric regressed or flushes were lost at some layer.
    pub fn failed(&self) -> bool {
        self.changes.iter().any(|c| c.verdict == Verdict::Regressed)
            || self.flushes.iter().any(|f| f.verdict == FlushVerdict::Lost)
    }

    /// The method in words, for output.
    pub fn method(&self) -> String {
        if self.baseline_runs < 2 {
            format!(
                "1 baseline run: between-run noise unknown; a change counts when its 95% bootstrap interval over the repetitions lies beyond ±{}%",
                fixed(self.settings.threshold_pct.max(SINGLE_RUN_THRESHOLD_PCT), 1)
            )
        } else {
            format!(
                "t-test over {} baseline runs (each run's median, log scale, one-sided boundary {}), and beyond ±{}%",
                self.baseline_runs,
                self.settings.boundary,
                fixed(self.settings.threshold_pct, 1)
            )
        }
    }
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

/// A verdict and the interval it rests on.
struct Decision {
    base: f64,
    cur: f64,
    change_pct: f64,
    interval: (f64, f64),
    verdict: Verdict,
}

/// The verdict for `change` (percent, signed so that positive is better) given an
/// interval (also signed better-positive) that must lie wholly beyond `threshold`.
fn verdict(lo: f64, hi: f64, threshold: f64) -> Verdict {
    if lo > threshold {
        Verdict::Improved
    } else if hi < -threshold {
        Verdict::Regressed
    } else {
        Verdict::NoChange
    }
}

/// One baseline run: a bootstrap over the repetitions against the conservative threshold.
fn decide_one_run(m: &Metric, bv: &[f64], cv: &[f64], s: Settings) -> Option<Decision> {
    let (bm, cm) = (
        Spread::of(bv.iter().copied())?,
        Spread::of(cv.iter().copied())?,
    );
    let change_pct = (cm.median / bm.median - 1.0) * 100.0;
    let ci = bootstrap_ci(bv, cv);
    if bm.median == 0.0 || !change_pct.is_finite() || !(ci.0.is_finite() && ci.1.is_finite()) {
        return None;
    }
    let (lo, hi) = if m.higher_is_better {
        (ci.0, ci.1)
    } else {
        (-ci.1, -ci.0)
    };
    Some(Decision {
        base: bm.median,
        cur: cm.median,
        change_pct,
        interval: ci,
        verdict: verdict(lo, hi, s.threshold_pct.max(SINGLE_RUN_THRESHOLD_PCT)),
    })
}

/// Several baseline runs: the t-test over their medians on a log scale.
fn decide_runs(m: &Metric, run_medians: &[f64], cv: &[f64], s: Settings) -> Option<Decision> {
    let cm = Spread::of(cv.iter().copied())?.median;
    if cm <= 0.0 || run_medians.iter().any(|&v| v <= 0.0) {
        return None;
    }
    let logs: Vec<f64> = run_medians.iter().map(|v| v.ln()).collect();
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let sd = (logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let half = student_t_quantile(s.boundary, n - 1.0) * sd * (1.0 + 1.0 / n).sqrt();
    let base = mean.exp();
    let change_pct = (cm / base - 1.0) * 100.0;
    let band = ((-half).exp_m1() * 100.0, half.exp_m1() * 100.0);
    if !(change_pct.is_finite() && band.0.is_finite() && band.1.is_finite()) {
        return None;
    }
    let x = cm.ln() - mean;
    let better = if m.higher_is_better { x } else { -x };
    let signed = if m.higher_is_better {
        change_pct
    } else {
        -change_pct
    };
    let verdict = if better > half && signed > s.threshold_pct {
        Verdict::Improved
    } else if better < -half && signed < -s.threshold_pct {
        Verdict::Regressed
    } else {
        Verdict::NoChange
    };
    Some(Decision {
        base,
        cur: cm,
        change_pct,
        interval: band,
        verdict,
    })
}

/// Finite values of metric `m` per (target, workload).
fn collect(rows: &[ResultRow], m: &Metric) -> BTreeMap<(String, String), Vec<f64>> {
    let mut g: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for r in rows {
        if let Some(v) = (m.get)(r).filter(|v| v.is_finite()) {
            g.entry((r.target.clone(), r.workload.clone()))
                .or_default()
                .push(v);
        }
    }
    g
}

/// The fewest samples a row of each (target, workload) rests on (0 when unknown).
fn fewest_samples<'a>(
    rows: impl Iterator<Item = &'a ResultRow>,
    samples: fn(&ResultRow) -> Option<f64>,
) -> BTreeMap<(String, String), f64> {
    let mut g: BTreeMap<(String, String), f64> = BTreeMap::new();
    for r in rows {
        let n = samples(r).unwrap_or(0.0);
        g.entry((r.target.clone(), r.workload.clone()))
            .and_modify(|m| *m = m.min(n))
            .or_insert(n);
    }
    g
}

/// Compares the current results with a history of baseline runs (oldest first). Only
/// finite values count (NaN is "not measured"). An error when not one metric or flush
/// count of one (target, workload) could be compared: a CI gate must not pass on nothing.
pub fn compare(
    history: &[Vec<ResultRow>],
    cur: &[ResultRow],
    settings: Settings,
) -> Result<Comparison, NothingComparable> {
    let base: Vec<ResultRow> = history.iter().flatten().cloned().collect();
    let (base_keys, cur_keys) = (keys(&base), keys(cur));
    let only = |a: &[(String, String)], b: &[(String, String)]| -> Vec<(String, String)> {
        a.iter().filter(|k| !b.contains(k)).cloned().collect()
    };
    let mut out = Comparison {
        changes: Vec::new(),
        only_in_base: only(&base_keys, &cur_keys),
        only_in_current: only(&cur_keys, &base_keys),
        not_compared: Vec::new(),
        flushes: flushgate::gate(&base, cur),
        baseline_runs: history.len(),
        settings,
    };
    for m in METRICS {
        let (b, c) = (collect(&base, m), collect(cur, m));
        let per_run: Vec<_> = history.iter().map(|run| collect(run, m)).collect();
        let fewest = m
            .samples
            .map(|samples| fewest_samples(base.iter().chain(cur), samples));
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
            if fewest
                .as_ref()
                .is_some_and(|f| f.get(key).is_none_or(|&n| n < MIN_TAIL_SAMPLES))
            {
                out.not_compared.push(skip(
                    "a p99 of under 1,000 samples a pass (or an unknown count) is too few to gate",
                ));
                continue;
            }
            let run_medians: Vec<f64> = per_run
                .iter()
                .filter_map(|g| g.get(key).and_then(|v| Spread::of(v.iter().copied())))
                .map(|s| s.median)
                .collect();
            let decision = if run_medians.len() >= 2 {
                decide_runs(m, &run_medians, cv, settings)
            } else {
                decide_one_run(m, bv, cv, settings)
            };
            let Some(d) = decision else {
                out.not_compared.push(skip(
                    "a baseline median is 0 or the change is not a finite percentage",
                ));
                continue;
            };
            out.changes.push(Change {
                target: key.0.clone(),
                workload: key.1.clone(),
                metric: m.name,
                base: d.base,
                cur: d.cur,
                change_pct: d.change_pct,
                ci_pct: d.interval,
                baseline_runs: run_medians.len(),
                verdict: d.verdict,
            });
        }
    }
    let flushes_counted = out.flushes.iter().any(|f| f.base > 0.0 || f.cur > 0.0);
    if out.changes.is_empty() && !flushes_counted {
        return Err(nothing_comparable(&base, cur, &base_keys, &cur_keys, &out));
    }
    Ok(out)
}

/// Why not one metric or flush count could be compared, for [`NothingComparable`].
fn nothing_comparable(
    base: &[ResultRow],
    cur: &[ResultRow],
    base_keys: &[(String, String)],
    cur_keys: &[(String, String)],
    out: &Comparison,
) -> NothingComparable {
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
            names(base_keys),
            names(cur_keys)
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
    NothingComparable(why)
}

/// A signed percentage.
fn pct(v: f64) -> String {
    format!("{}{}%", if v >= 0.0 { "+" } else { "" }, fixed(v, 1))
}

/// The flush gate: every layer whose count changed, then how many did not.
pub(crate) fn flush_section(f: &[FlushChange]) -> String {
    let mut md = String::from("## Flush counts per layer\n\n");
    let same = f.iter().filter(|c| c.verdict == FlushVerdict::Same).count();
    for c in f {
        let what = match c.verdict {
            FlushVerdict::Lost => format!("**flushes lost at {}**", c.layer),
            FlushVerdict::Amplified => format!("flush amplification at {}", c.layer),
            FlushVerdict::QemuSkip => format!(
                "one fewer at {}: QEMU skips a flush with nothing written since the last (not a loss)",
                c.layer
            ),
            FlushVerdict::Blind => format!(
                "{} counts none while a layer below still counts: a blind counter, not a loss",
                c.layer
            ),
            FlushVerdict::Same => continue,
        };
        let _ = writeln!(
            md,
            "- {} / {}: {what}: {} → {} per pass{}",
            c.target,
            c.workload,
            fixed(c.base, 1),
            fixed(c.cur, 1),
            if c.shared {
                " (shared host counter: least disturbed pass of each run)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(md, "- {same} layer counts unchanged");
    md
}

/// A Markdown report for CI summaries: the method and how many baseline runs it rests on,
/// the flush gate, the metrics, then what could not be compared.
pub fn markdown(c: &Comparison) -> String {
    let mut md = format!("# zvbench compare\n\nMethod: {}.\n\n", c.method());
    md.push_str(&flush_section(&c.flushes));
    md.push_str("\n| target | workload | metric | base | current | change | interval | runs | verdict |\n|---|---|---|---:|---:|---:|---:|---:|---|\n");
    for c in &c.changes {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} … {} | {} | {} |",
            c.target,
            c.workload,
            c.metric,
            fixed(c.base, 1),
            fixed(c.cur, 1),
            pct(c.change_pct),
            pct(c.ci_pct.0),
            pct(c.ci_pct.1),
            c.baseline_runs,
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

    const S: Settings = Settings {
        threshold_pct: 5.0,
        boundary: DEFAULT_BOUNDARY,
    };

    fn rows(mib: &[f64], p99: &[f64]) -> Vec<ResultRow> {
        mib.iter()
            .zip(p99)
            .map(|(&m, &l)| ResultRow {
                target: "vdi".into(),
                workload: "w".into(),
                mib_per_s: m,
                iops: m * 10.0,
                // m * 100 requests a pass: enough for the p99 to be gated.
                seconds: 10.0,
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
        // One baseline run: only beyond the conservative 25% threshold.
        let cur = rows(
            &[60.0, 61.0, 59.0, 62.0, 58.0],
            &[700.0, 710.0, 690.0, 705.0, 695.0],
        );
        let c = compare(std::slice::from_ref(&base), &cur, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(
            verdict(&c.changes, "lat_p99_us"),
            Verdict::Regressed,
            "higher latency is worse"
        );
        let c = compare(std::slice::from_ref(&cur), &base, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        let md = markdown(&c);
        assert!(
            md.contains("| vdi | w | mib_per_s | 60.0 | 100.0 | +66.7% |"),
            "{md}"
        );
        assert!(
            md.contains("1 baseline run: between-run noise unknown"),
            "{md}"
        );
        // 20% is within the single-run threshold.
        let cur = rows(&[80.0, 81.0, 79.0, 82.0, 78.0], &[500.0; 5]);
        let c = compare(std::slice::from_ref(&base), &cur, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
    }

    /// A run whose repetitions agree closely around `mib`.
    fn run(mib: f64) -> Vec<ResultRow> {
        rows(&[mib * 0.99, mib, mib * 1.01], &[500.0; 3])
    }

    /// The A/A failure: runs drift between each other far more than within.
    #[test]
    fn between_run_drift_is_no_change_but_a_drop_beyond_it_regresses() {
        let drifting: Vec<_> = [100.0, 130.0, 80.0, 110.0].map(run).into();
        let c = compare(&drifting, &run(75.0), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        assert_eq!(c.changes[0].baseline_runs, 4);
        // Against the one run closest in time, the same value looks like a regression.
        let c = compare(&[run(110.0)], &run(75.0), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        let steady: Vec<_> = [100.0, 101.0, 99.0, 100.5].map(run).into();
        let c = compare(&steady, &run(70.0), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert!(c.failed());
        assert!(markdown(&c).contains("t-test over 4 baseline runs"));
        let c = compare(&steady, &run(97.0), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        assert!(!c.failed());
        let c = compare(&steady, &run(140.0), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        // A change inside the threshold never counts, however steady the runs.
        let exact: Vec<_> = [100.0, 100.0, 100.0]
            .map(|m| rows(&[m; 3], &[500.0; 3]))
            .into();
        let c = compare(&exact, &rows(&[97.0; 3], &[500.0; 3]), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
    }

    /// A p99 of 64 requests is one stray request: reported, not gated.
    #[test]
    fn a_p99_of_too_few_requests_is_not_gated() {
        let few = |mib: f64, p99: f64| -> Vec<ResultRow> {
            rows(&[mib; 3], &[p99; 3])
                .into_iter()
                .map(|r| ResultRow {
                    seconds: 64.0 / r.iops,
                    ..r
                })
                .collect()
        };
        let history: Vec<_> = [100.0, 101.0, 99.0].map(|m| few(m, 500.0)).into();
        let c = compare(&history, &few(100.0, 5000.0), S).unwrap();
        assert!(!c.failed(), "{:?}", c.changes);
        assert!(c.changes.iter().all(|x| x.metric != "lat_p99_us"));
        let n = c
            .not_compared
            .iter()
            .find(|n| n.metric == "lat_p99_us")
            .unwrap();
        assert!(n.why.contains("under 1,000 samples"), "{}", n.why);
        // With 1,000 requests a pass the same p99 jump is a regression.
        let many: Vec<_> = [100.0, 101.0, 99.0]
            .map(|m| rows(&[m; 3], &[500.0, 505.0, 495.0]))
            .into();
        let c = compare(&many, &rows(&[100.0; 3], &[5000.0; 3]), S).unwrap();
        assert_eq!(verdict(&c.changes, "lat_p99_us"), Verdict::Regressed);
    }

    #[test]
    fn half_width_of_the_median() {
        assert!(median_half_width_pct(&[100.0, 100.5, 99.5, 100.2, 99.8]) < 1.0);
        assert!(median_half_width_pct(&[100.0, 130.0, 70.0]) > 20.0);
        assert_eq!(median_half_width_pct(&[100.0]), f64::INFINITY);
        assert_eq!(median_half_width_pct(&[0.0, 0.0]), f64::INFINITY);
    }

    /// Issue 16: the flush gate fails the comparison even when throughput improved.
    #[test]
    fn lost_flushes_fail_even_when_faster() {
        let with_flushes = |mib: f64, host: u64| -> Vec<ResultRow> {
            run(mib)
                .into_iter()
                .map(|r| ResultRow {
                    hypervisor: "qemu".into(),
                    agent_flushes: 129,
                    guest_dev_flushes: Some(129),
                    hv_flushes: Some(129),
                    host_dev_flushes: Some(host),
                    ..r
                })
                .collect()
        };
        let history: Vec<_> = [100.0, 101.0, 99.0].map(|m| with_flushes(m, 128)).into();
        let c = compare(&history, &with_flushes(300.0, 0), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        assert!(c.failed());
        let md = markdown(&c);
        assert!(
            md.contains("vdi / w: **flushes lost at host device**: 128.0 → 0.0 per pass"),
            "{md}"
        );
        let c = compare(&history, &with_flushes(100.0, 127), S).unwrap();
        assert!(!c.failed(), "QEMU's skip of one flush is not a loss");
        assert!(markdown(&c).contains("one fewer at host device"));
    }

    #[test]
    fn noise_is_no_change() {
        let base = rows(&[100.0, 104.0, 96.0, 102.0, 98.0], &[500.0; 5]);
        let cur = rows(&[101.0, 97.0, 103.0, 99.0, 100.5], &[502.0; 5]);
        let c = compare(std::slice::from_ref(&base), &cur, S)
            .unwrap()
            .changes;
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
        let e = compare(std::slice::from_ref(&a), &b, S)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("share no target") && e.contains("vdi / w") && e.contains("zvol / w"),
            "{e}"
        );
        let e = compare(std::slice::from_ref(&a), &[], S)
            .unwrap_err()
            .to_string();
        assert!(e.contains("current run has no rows"), "{e}");
        let e = compare(&[vec![]], &a, S).unwrap_err().to_string();
        assert!(e.contains("baseline run has no rows"), "{e}");
        let nan = vec![ResultRow {
            mib_per_s: f64::NAN,
            iops: f64::INFINITY,
            lat_p99_us: f64::NAN,
            ..row("vdi", "w", 0.0)
        }];
        let e = compare(std::slice::from_ref(&a), &nan, S)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mib_per_s: no finite value in the current run"),
            "{e}"
        );
        let e = compare(std::slice::from_ref(&nan), &a, S)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no finite value in the baseline"), "{e}");
        let zero = vec![ResultRow {
            lat_p99_us: 0.0,
            ..row("vdi", "w", 0.0)
        }];
        let e = compare(std::slice::from_ref(&zero), &zero, S)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mib_per_s") && e.contains("median is 0"), "{e}");
    }

    #[test]
    fn unmatched_rows_are_listed() {
        let base = vec![row("vdi", "w", 100.0), row("old", "w", 1.0)];
        let cur = vec![row("vdi", "w", 100.0), row("new", "x", 1.0)];
        let c = compare(std::slice::from_ref(&base), &cur, S).unwrap();
        assert_eq!(c.only_in_base, [("old".to_string(), "w".to_string())]);
        assert_eq!(c.only_in_current, [("new".to_string(), "x".to_string())]);
        let md = markdown(&c);
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
