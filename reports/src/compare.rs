//! `zvbench compare BASE... CUR [--confirm CUR2]`: per (target, workload, metric), the
//! change of a run's value and a verdict that rests on the noise between runs, plus the
//! flush-count gate ([`crate::flushgate`]).
//!
//! - A run's value of a metric is its **best pass** for throughput (MiB/s, IOPS) and its
//!   median pass for latency percentiles ([`PerRun`]): on a shared machine interference
//!   only slows a pass down, so the fastest pass is the steadiest measure of what the stack
//!   can do — the minimum time of Chen & Revels, "Robust benchmarking in noisy
//!   environments" (2016), which BenchmarkTools.jl's regression judgement rests on.
//! - With two or more baseline runs: a **t-test over the baseline runs** (Bencher's
//!   t-test threshold over a lookback window): each run's value is one sample, on a log
//!   scale (throughput changes are ratios); the current value regresses when it lies
//!   beyond the one-sided `boundary` quantile of Student's t with n − 1 degrees of freedom,
//!   times the baseline runs' standard deviation, times √(1 + 1/n) (a prediction interval
//!   for one new run), and beyond the `threshold` as well.
//! - With one baseline run the noise between runs is unknown: a 95% bootstrap interval
//!   of the change of the median over the repetitions (criterion's approach) must lie
//!   wholly beyond [`SINGLE_RUN_THRESHOLD_PCT`] (or the `threshold`, if larger). Two
//!   same-commit runs on this machine differed by up to −32% (interval to −21%), so the
//!   bar is 25%.
//! - **Confirmation**: a metric that regresses in one current run is only a suspicion
//!   ([`Outcome::Unconfirmed`], exit 3): one run of this machine in five or six is slow as
//!   a whole. Given a second current run (`--confirm`), a metric regresses (or improves)
//!   only when both runs lie beyond the band. Lost flushes need no confirmation: counts are
//!   exact.

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
    /// Which pass stands for a run in the t-test over runs.
    pub per_run: PerRun,
    /// For a tail percentile: how many samples of a row it rests on (requests, flushes),
    /// if known. A percentile of too few samples is not gated ([`MIN_TAIL_SAMPLES`]).
    pub samples: Option<fn(&ResultRow) -> Option<f64>>,
}

/// Which pass of a run stands for the run in the t-test over runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PerRun {
    /// The best pass (the highest throughput; the lowest latency): interference only
    /// slows passes down. Measured here over 16 same-commit runs of `scenarios/ci.toml`:
    /// the raw target's seqrd medians spread 19% between runs, its best passes 7.5%.
    Best,
    /// The median pass: for latency percentiles, where the tail is the point.
    Median,
}

impl PerRun {
    /// The pass in a word ("best", "median").
    pub fn label(self) -> &'static str {
        match self {
            Self::Best => "best",
            Self::Median => "median",
        }
    }

    /// The value of a run with the passes `v`; `None` for no pass.
    pub fn of(self, v: &[f64], higher_is_better: bool) -> Option<f64> {
        let s = Spread::of(v.iter().copied())?;
        Some(match (self, higher_is_better) {
            (Self::Median, _) => s.median,
            (Self::Best, true) => s.max,
            (Self::Best, false) => s.min,
        })
    }
}

/// The fewest samples per pass a p99 must rest on to be gated: with 10,000 requests a
/// hundred lie above it. Measured here: of the quick scenario's 64 requests a pass the
/// p99 is the second largest, and same-commit runs moved it by +100…+270%; of
/// `scenarios/ci.toml`'s 1,024 it is the eleventh largest, ten slow requests of a disk
/// hiccup, and it spread 36–57% between same-commit runs and tripled in a run and in
/// its confirmation run (session 7), while their throughput stayed within the band.
pub const MIN_TAIL_SAMPLES: f64 = 10_000.0;

/// The metrics compared.
pub const METRICS: &[Metric] = &[
    Metric {
        name: "mib_per_s",
        per_run: PerRun::Best,
        get: |r| Some(r.mib_per_s),
        higher_is_better: true,
        samples: None,
    },
    Metric {
        name: "iops",
        per_run: PerRun::Best,
        get: |r| Some(r.iops),
        higher_is_better: true,
        samples: None,
    },
    Metric {
        name: "lat_p99_us",
        per_run: PerRun::Median,
        get: |r| Some(r.lat_p99_us),
        higher_is_better: false,
        samples: Some(|r| Some(r.iops * r.seconds).filter(|n| n.is_finite())),
    },
    Metric {
        name: "flush_p99_us",
        per_run: PerRun::Median,
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

impl Verdict {
    /// The verdict in words.
    pub fn label(self) -> &'static str {
        match self {
            Self::Improved => "improved",
            Self::Regressed => "regressed",
            Self::NoChange => "no change",
        }
    }
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
    /// Which pass stands for a run in `base` and `cur` (the median with one baseline run).
    pub per_run: PerRun,
    /// Baseline value (with several runs: the geometric mean of the runs' values).
    pub base: f64,
    /// Current run's value.
    pub cur: f64,
    /// Change in percent.
    pub change_pct: f64,
    /// The confirmation run's change in percent, if one was given.
    pub confirm_pct: Option<f64>,
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

/// The default one-sided boundary of the t-test: 0.995. One comparison of the quick or
/// the CI scenario gates 18 metrics (MiB/s and IOPS of 9 target-workloads; their p99s
/// rest on too few requests) and each A/A comparison must pass as a whole; a
/// regression fails the gate only when a confirmation run lies beyond the band too, so
/// the false alarms of the two runs multiply (replayed over session 6's 16 same-commit
/// runs of `scenarios/ci.toml` with 12 baseline runs: 8% of single comparisons alarmed,
/// none confirmed).
pub const DEFAULT_BOUNDARY: f64 = 0.995;

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
    /// The same for the confirmation run (empty without one).
    pub confirm_flushes: Vec<FlushChange>,
    /// Baseline runs given.
    pub baseline_runs: usize,
    /// Whether a confirmation run was given (not whether it confirmed anything).
    pub confirmation_given: bool,
    /// How the verdicts were decided.
    pub settings: Settings,
}

/// What a comparison means for a CI job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing regressed, no flush lost: exit 0.
    Pass,
    /// Flushes lost at a layer, or a metric regressed in the current run and in the
    /// confirmation run: exit 1.
    Regressed,
    /// A metric regressed in the one current run given: run the scenario once more and
    /// compare with `--confirm` (exit 3).
    Unconfirmed,
}

impl Outcome {
    /// The exit status `zvbench compare` gives it.
    pub fn exit_code(self) -> i32 {
        match self {
            Self::Pass => 0,
            Self::Regressed => 1,
            Self::Unconfirmed => 3,
        }
    }
}

impl Comparison {
    /// What the gate says: lost flushes fail at once; a metric regression fails once a
    /// confirmation run agrees.
    pub fn outcome(&self) -> Outcome {
        let lost = self
            .flushes
            .iter()
            .chain(&self.confirm_flushes)
            .any(|f| f.verdict == FlushVerdict::Lost);
        let regressed = self.changes.iter().any(|c| c.verdict == Verdict::Regressed);
        match (lost, regressed, self.confirmation_given) {
            (true, _, _) | (false, true, true) => Outcome::Regressed,
            (false, true, false) => Outcome::Unconfirmed,
            (false, false, _) => Outcome::Pass,
        }
    }

    /// Whether the gate does not pass (a regression, confirmed or not, or lost flushes).
    pub fn failed(&self) -> bool {
        self.outcome() != Outcome::Pass
    }

    /// The method in words, for output.
    pub fn method(&self) -> String {
        let confirm = if self.confirmation_given {
            "; a change counts only when the confirmation run shows it too"
        } else {
            ""
        };
        if self.baseline_runs < 2 {
            format!(
                "1 baseline run: between-run noise unknown; a change counts when its 95% bootstrap interval over the repetitions (medians) lies beyond ±{}%{confirm}",
                fixed(self.settings.threshold_pct.max(SINGLE_RUN_THRESHOLD_PCT), 1)
            )
        } else {
            format!(
                "t-test over {} baseline runs (a run's best pass for MiB/s and IOPS, its median pass for latencies; log scale; one-sided boundary {}), and beyond ±{}%{confirm}",
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

/// Several baseline runs: the t-test's band over their values, on a log scale. Computed
/// once per (target, workload, metric) and applied to the current and the confirmation run.
struct Band {
    /// Mean of the runs' logarithms.
    mean: f64,
    /// Half-width of the prediction interval, in log units.
    half: f64,
}

impl Band {
    /// The band of `run_values` (one per run, two or more); `None` when a value is 0 or
    /// the band is not finite.
    fn of(run_values: &[f64], s: Settings) -> Option<Band> {
        if run_values.iter().any(|&v| v <= 0.0) {
            return None;
        }
        let logs: Vec<f64> = run_values.iter().map(|v| v.ln()).collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let sd = (logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        let half = student_t_quantile(s.boundary, n - 1.0) * sd * (1.0 + 1.0 / n).sqrt();
        let band = Band { mean, half };
        let (lo, hi) = band.pct();
        (lo.is_finite() && hi.is_finite()).then_some(band)
    }

    /// The band in percent of the baseline.
    fn pct(&self) -> (f64, f64) {
        ((-self.half).exp_m1() * 100.0, self.half.exp_m1() * 100.0)
    }

    /// The verdict on a run with the passes `cv`.
    fn judge(&self, m: &Metric, cv: &[f64], s: Settings) -> Option<Decision> {
        let cm = m.per_run.of(cv, m.higher_is_better)?;
        let base = self.mean.exp();
        let change_pct = (cm / base - 1.0) * 100.0;
        if cm <= 0.0 {
            // Nothing where the baseline had something: no throughput is the largest drop
            // there is (a latency of 0 is no measurement).
            return m.higher_is_better.then_some(Decision {
                base,
                cur: cm,
                change_pct: -100.0,
                interval: self.pct(),
                verdict: Verdict::Regressed,
            });
        }
        if !change_pct.is_finite() {
            return None;
        }
        let x = cm.ln() - self.mean;
        let better = if m.higher_is_better { x } else { -x };
        let signed = if m.higher_is_better {
            change_pct
        } else {
            -change_pct
        };
        let verdict = if better > self.half && signed > s.threshold_pct {
            Verdict::Improved
        } else if better < -self.half && signed < -s.threshold_pct {
            Verdict::Regressed
        } else {
            Verdict::NoChange
        };
        Some(Decision {
            base,
            cur: cm,
            change_pct,
            interval: self.pct(),
            verdict,
        })
    }
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

/// The change of metric `m` of `key`: the t-test over the baseline runs' values
/// (`run_values`, each by `m.per_run`) with two or more, else the bootstrap over the one
/// run's passes (`bv`). With a confirmation run's passes, a verdict only where both runs
/// agree; where the confirmation run cannot be judged (no value, or a latency of 0) the
/// current run's verdict stands. `None` when a baseline value is 0 or the change is not
/// finite.
fn change_of(
    m: &Metric,
    key: &(String, String),
    run_values: &[f64],
    bv: &[f64],
    cv: &[f64],
    confirm: Option<&Vec<f64>>,
    s: Settings,
) -> Option<Change> {
    let several = run_values.len() >= 2;
    let band = if several {
        Some(Band::of(run_values, s)?)
    } else {
        None
    };
    let decide = |v: &[f64]| match &band {
        Some(b) => b.judge(m, v, s),
        None => decide_one_run(m, bv, v, s),
    };
    let d = decide(cv)?;
    let confirm = confirm.and_then(|v| decide(v));
    Some(Change {
        target: key.0.clone(),
        workload: key.1.clone(),
        metric: m.name,
        per_run: if several { m.per_run } else { PerRun::Median },
        base: d.base,
        cur: d.cur,
        change_pct: d.change_pct,
        confirm_pct: confirm.as_ref().map(|c| c.change_pct),
        ci_pct: d.interval,
        baseline_runs: run_values.len(),
        // Confirmed: both runs beyond the band on the same side.
        verdict: match confirm {
            Some(c) if c.verdict != d.verdict => Verdict::NoChange,
            _ => d.verdict,
        },
    })
}

/// Compares the current results (and, if given, a confirmation run of the same scenario)
/// with a history of baseline runs (oldest first). Only finite values count (NaN is "not
/// measured"). An error when not one metric or flush count of one (target, workload)
/// could be compared: a CI gate must not pass on nothing.
pub fn compare(
    history: &[Vec<ResultRow>],
    cur: &[ResultRow],
    confirm: Option<&[ResultRow]>,
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
        confirm_flushes: confirm.map_or_else(Vec::new, |c| flushgate::gate(&base, c)),
        baseline_runs: history.len(),
        confirmation_given: confirm.is_some(),
        settings,
    };
    for m in METRICS {
        let (b, c) = (collect(&base, m), collect(cur, m));
        let confirm_values = confirm.map(|rows| collect(rows, m));
        let per_run: Vec<_> = history.iter().map(|run| collect(run, m)).collect();
        let fewest = m.samples.map(|samples| {
            fewest_samples(
                base.iter().chain(cur).chain(confirm.into_iter().flatten()),
                samples,
            )
        });
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
                    "a p99 of under 10,000 samples a pass (or an unknown count) is too few to gate",
                ));
                continue;
            }
            let confirm_v = confirm_values.as_ref().and_then(|g| g.get(key));
            if confirm_values.is_some() && confirm_v.is_none() {
                out.not_compared.push(skip(
                    "no finite value in the confirmation run: the current run's verdict stands",
                ));
            }
            let history_v: Vec<&Vec<f64>> = per_run.iter().filter_map(|g| g.get(key)).collect();
            // The best of N passes grows with N: only runs of as many passes compare by it.
            // (The confirmation run, of the same scenario, is judged as the current run.)
            let mut counts = history_v.iter().map(|v| v.len()).chain([cv.len()]);
            let first = counts.next();
            let per_pass = if counts.all(|n| Some(n) == first) {
                m.per_run
            } else {
                PerRun::Median
            };
            let run_values: Vec<f64> = history_v
                .iter()
                .filter_map(|v| per_pass.of(v, m.higher_is_better))
                .collect();
            let m = &Metric {
                per_run: per_pass,
                ..*m
            };
            match change_of(m, key, &run_values, bv, cv, confirm_v, settings) {
                Some(ch) => out.changes.push(ch),
                None => out.not_compared.push(skip(
                    "a baseline value is 0 or the change is not a finite percentage",
                )),
            }
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

/// The flush gate under the heading `title`: every layer whose count changed, then how
/// many did not.
pub(crate) fn flush_section(title: &str, f: &[FlushChange]) -> String {
    let mut md = format!("## {title}\n\n");
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

/// The heading of the flush gate's section.
pub(crate) const FLUSH_TITLE: &str = "Flush counts per layer";
/// The heading of the flush gate's section for the confirmation run.
pub(crate) const CONFIRM_FLUSH_TITLE: &str = "Flush counts per layer, confirmation run";

/// What the outcome asks of a CI job, in one sentence.
pub fn outcome_line(c: &Comparison) -> &'static str {
    match c.outcome() {
        Outcome::Pass => "pass: nothing regressed, no flush lost (exit 0)",
        Outcome::Regressed => "**fail**: flushes lost, or a regression the confirmation run shows too (exit 1)",
        Outcome::Unconfirmed => "**regression in this run, unconfirmed**: run the scenario once more and compare again with `--confirm DIR` (exit 3)",
    }
}

/// A Markdown report for CI summaries: the method and how many baseline runs it rests on,
/// the outcome, the flush gate, the metrics, then what could not be compared.
pub fn markdown(c: &Comparison) -> String {
    let mut md = format!(
        "# zvbench compare\n\nMethod: {}.\n\nOutcome: {}.\n\n",
        c.method(),
        outcome_line(c)
    );
    md.push_str(&flush_section(FLUSH_TITLE, &c.flushes));
    if c.confirmation_given {
        md.push('\n');
        md.push_str(&flush_section(CONFIRM_FLUSH_TITLE, &c.confirm_flushes));
    }
    let confirm_head = if c.confirmation_given {
        " confirmation |"
    } else {
        ""
    };
    let confirm_rule = if c.confirmation_given { "---:|" } else { "" };
    let _ = write!(
        md,
        "\n| target | workload | metric | pass | base | current | change |{confirm_head} interval | runs | verdict |\n|---|---|---|---|---:|---:|---:|{confirm_rule}---:|---:|---|\n"
    );
    for c in &c.changes {
        let confirm = match (c.confirm_pct, confirm_head.is_empty()) {
            (_, true) => String::new(),
            (Some(p), false) => format!(" {} |", pct(p)),
            (None, false) => " — |".to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |{confirm} {} … {} | {} | {} |",
            c.target,
            c.workload,
            c.metric,
            c.per_run.label(),
            fixed(c.base, 1),
            fixed(c.cur, 1),
            pct(c.change_pct),
            pct(c.ci_pct.0),
            pct(c.ci_pct.1),
            c.baseline_runs,
            match c.verdict {
                Verdict::Regressed => "**regressed**",
                v => v.label(),
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
                // m * 1,000 requests a pass: enough for the p99 to be gated.
                seconds: 100.0,
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
        let c = compare(std::slice::from_ref(&base), &cur, None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(
            verdict(&c.changes, "lat_p99_us"),
            Verdict::Regressed,
            "higher latency is worse"
        );
        let c = compare(std::slice::from_ref(&cur), &base, None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        let md = markdown(&c);
        assert!(
            md.contains("| vdi | w | mib_per_s | median | 60.0 | 100.0 | +66.7% |"),
            "{md}"
        );
        assert!(
            md.contains("1 baseline run: between-run noise unknown"),
            "{md}"
        );
        // 20% is within the single-run threshold.
        let cur = rows(&[80.0, 81.0, 79.0, 82.0, 78.0], &[500.0; 5]);
        let c = compare(std::slice::from_ref(&base), &cur, None, S).unwrap();
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
        let c = compare(&drifting, &run(75.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        assert_eq!(c.changes[0].baseline_runs, 4);
        // Against the one run closest in time, the same value looks like a regression.
        let c = compare(&[run(110.0)], &run(75.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        let steady: Vec<_> = [100.0, 101.0, 99.0, 100.5].map(run).into();
        let c = compare(&steady, &run(70.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert!(c.failed());
        assert!(markdown(&c).contains("t-test over 4 baseline runs"));
        let c = compare(&steady, &run(97.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        assert!(!c.failed());
        let c = compare(&steady, &run(140.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        // A change inside the threshold never counts, however steady the runs.
        let exact: Vec<_> = [100.0, 100.0, 100.0]
            .map(|m| rows(&[m; 3], &[500.0; 3]))
            .into();
        let c = compare(&exact, &rows(&[97.0; 3], &[500.0; 3]), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
    }

    /// Interference slows single passes down: the runs' medians spread, their best passes
    /// do not, so a uniform 30% drop stands out of the best passes' noise.
    #[test]
    fn a_run_is_its_best_pass_for_throughput_and_its_median_pass_for_latency() {
        let slowed: Vec<_> = [
            [100.0, 60.0, 62.0],
            [101.0, 99.0, 58.0],
            [99.0, 100.0, 101.0],
            [100.0, 57.0, 98.0],
        ]
        .map(|p| rows(&p, &[400.0, 500.0, 600.0]))
        .into();
        let c = compare(
            &slowed,
            &rows(&[70.0, 69.0, 70.5], &[450.0, 900.0, 300.0]),
            None,
            S,
        )
        .unwrap();
        let mib = c.changes.iter().find(|x| x.metric == "mib_per_s").unwrap();
        assert_eq!(
            (mib.per_run, mib.verdict),
            (PerRun::Best, Verdict::Regressed)
        );
        assert!((mib.cur - 70.5).abs() < 1e-9 && (mib.change_pct + 29.6).abs() < 0.5);
        let lat = c.changes.iter().find(|x| x.metric == "lat_p99_us").unwrap();
        assert_eq!((lat.per_run, lat.cur), (PerRun::Median, 450.0));
        assert!((lat.base - 500.0).abs() < 1e-9, "{lat:?}");
        // A current run with one slow pass of its own is no change.
        let c = compare(&slowed, &rows(&[55.0, 100.5, 99.0], &[500.0; 3]), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        assert!(markdown(&c).contains("| vdi | w | mib_per_s | best | 100.5 | 100.5 |"));
        // Runs whose values spread as these runs' medians do (62, 99, 100, 98) hide it.
        let medians: Vec<_> = [62.0, 99.0, 100.0, 98.0].map(run).into();
        let c = compare(&medians, &run(70.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        // The best of fewer passes is lower by itself: runs of unequal pass counts are
        // compared by their median pass.
        let c = compare(&slowed, &rows(&[100.0, 99.0], &[500.0; 2]), None, S).unwrap();
        let mib = c.changes.iter().find(|x| x.metric == "mib_per_s").unwrap();
        assert_eq!(mib.per_run, PerRun::Median);
    }

    /// One run beyond the band is a suspicion (exit 3); a confirmation run decides.
    #[test]
    fn a_regression_fails_only_when_the_confirmation_run_shows_it() {
        let steady: Vec<_> = [100.0, 101.0, 99.0, 100.5].map(run).into();
        let c = compare(&steady, &run(70.0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(
            (c.outcome(), c.outcome().exit_code()),
            (Outcome::Unconfirmed, 3)
        );
        assert!(markdown(&c).contains("compare again with `--confirm DIR` (exit 3)"));
        let slow = run(70.0);
        let c = compare(&steady, &run(70.0), Some(&slow), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(
            (c.outcome(), c.outcome().exit_code()),
            (Outcome::Regressed, 1)
        );
        let mib = &c.changes[0];
        assert!(
            mib.confirm_pct.is_some_and(|p| (p + 29.6).abs() < 0.5),
            "{mib:?}"
        );
        assert!(markdown(&c).contains("confirmation run shows it too"));
        // The confirmation run is as fast as the history: no change, pass.
        let fine = run(100.0);
        let c = compare(&steady, &run(70.0), Some(&fine), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        assert_eq!(c.outcome(), Outcome::Pass);
        // Both beyond the band, on opposite sides: no change.
        let fast = run(140.0);
        let c = compare(&steady, &run(70.0), Some(&fast), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        // A confirmation run with nothing of this workload cannot clear it: the current
        // run's verdict stands, and the output says why.
        let other: Vec<_> = run(70.0)
            .into_iter()
            .map(|r| ResultRow {
                workload: "other".into(),
                ..r
            })
            .collect();
        let c = compare(&steady, &run(70.0), Some(&other), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(c.outcome(), Outcome::Regressed);
        assert!(c.not_compared.iter().any(|n| n.metric == "mib_per_s"
            && n.why.starts_with("no finite value in the confirmation run")));
        assert!(markdown(&c).contains("| — |"), "{}", markdown(&c));
        // Nor can one whose throughput is 0: that is the largest drop there is.
        let dead = rows(&[0.0; 3], &[500.0; 3]);
        let c = compare(&steady, &run(70.0), Some(&dead), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        assert_eq!(c.changes[0].confirm_pct, Some(-100.0));
        let c = compare(&steady, &dead, None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Regressed);
        // With one baseline run the confirmation run decides the same way.
        let c = compare(&[run(100.0)], &run(50.0), Some(&run(100.0)), S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::NoChange);
        let c = compare(&[run(100.0)], &run(50.0), Some(&run(52.0)), S).unwrap();
        assert_eq!(c.outcome(), Outcome::Regressed);
    }

    /// A QEMU run of `mib` whose 129 flushes a pass reach the host device `host` times.
    fn with_flushes(mib: f64, host: u64) -> Vec<ResultRow> {
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
    }

    /// Flushes lost in the confirmation run alone fail the gate too.
    #[test]
    fn flushes_lost_in_the_confirmation_run_fail() {
        let history: Vec<_> = [100.0; 3].map(|m| with_flushes(m, 128)).into();
        let c = compare(
            &history,
            &with_flushes(100.0, 128),
            Some(&with_flushes(100.0, 0)),
            S,
        )
        .unwrap();
        assert_eq!(c.outcome(), Outcome::Regressed);
        let md = markdown(&c);
        assert!(
            md.contains("## Flush counts per layer, confirmation run\n\n- vdi / w: **flushes lost at host device**"),
            "{md}"
        );
        assert!(crate::export::step_summary(&c, 5.0).contains("confirmation run"));
    }

    /// A p99 of 64 requests is one stray request, of 1,024 a disk hiccup: reported, not
    /// gated.
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
        // 64 requests a pass (the quick scenario) and 1,024 (scenarios/ci.toml).
        for requests in [64.0, 1024.0] {
            let few = |mib: f64, p99: f64| -> Vec<ResultRow> {
                few(mib, p99)
                    .into_iter()
                    .map(|r| ResultRow {
                        seconds: requests / r.iops,
                        ..r
                    })
                    .collect()
            };
            let history: Vec<_> = [100.0, 101.0, 99.0].map(|m| few(m, 500.0)).into();
            let c = compare(&history, &few(100.0, 5000.0), None, S).unwrap();
            assert!(!c.failed(), "{:?}", c.changes);
            assert!(c.changes.iter().all(|x| x.metric != "lat_p99_us"));
            let n = c
                .not_compared
                .iter()
                .find(|n| n.metric == "lat_p99_us")
                .unwrap();
            assert!(n.why.contains("under 10,000 samples"), "{}", n.why);
        }
        // With 10,000 requests a pass the same p99 jump is a regression.
        let many: Vec<_> = [100.0, 101.0, 99.0]
            .map(|m| rows(&[m; 3], &[500.0, 505.0, 495.0]))
            .into();
        let c = compare(&many, &rows(&[100.0; 3], &[5000.0; 3]), None, S).unwrap();
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
        let history: Vec<_> = [100.0, 101.0, 99.0].map(|m| with_flushes(m, 128)).into();
        let c = compare(&history, &with_flushes(300.0, 0), None, S).unwrap();
        assert_eq!(verdict(&c.changes, "mib_per_s"), Verdict::Improved);
        assert!(c.failed());
        let md = markdown(&c);
        assert!(
            md.contains("vdi / w: **flushes lost at host device**: 128.0 → 0.0 per pass"),
            "{md}"
        );
        let c = compare(&history, &with_flushes(100.0, 127), None, S).unwrap();
        assert!(!c.failed(), "QEMU's skip of one flush is not a loss");
        assert!(markdown(&c).contains("one fewer at host device"));
    }

    #[test]
    fn noise_is_no_change() {
        let base = rows(&[100.0, 104.0, 96.0, 102.0, 98.0], &[500.0; 5]);
        let cur = rows(&[101.0, 97.0, 103.0, 99.0, 100.5], &[502.0; 5]);
        let c = compare(std::slice::from_ref(&base), &cur, None, S)
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
        let e = compare(std::slice::from_ref(&a), &b, None, S)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("share no target") && e.contains("vdi / w") && e.contains("zvol / w"),
            "{e}"
        );
        let e = compare(std::slice::from_ref(&a), &[], None, S)
            .unwrap_err()
            .to_string();
        assert!(e.contains("current run has no rows"), "{e}");
        let e = compare(&[vec![]], &a, None, S).unwrap_err().to_string();
        assert!(e.contains("baseline run has no rows"), "{e}");
        let nan = vec![ResultRow {
            mib_per_s: f64::NAN,
            iops: f64::INFINITY,
            lat_p99_us: f64::NAN,
            ..row("vdi", "w", 0.0)
        }];
        let e = compare(std::slice::from_ref(&a), &nan, None, S)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mib_per_s: no finite value in the current run"),
            "{e}"
        );
        let e = compare(std::slice::from_ref(&nan), &a, None, S)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no finite value in the baseline"), "{e}");
        let zero = vec![ResultRow {
            lat_p99_us: 0.0,
            ..row("vdi", "w", 0.0)
        }];
        let e = compare(std::slice::from_ref(&zero), &zero, None, S)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("mib_per_s") && e.contains("baseline value is 0"),
            "{e}"
        );
    }

    #[test]
    fn unmatched_rows_are_listed() {
        let base = vec![row("vdi", "w", 100.0), row("old", "w", 1.0)];
        let cur = vec![row("vdi", "w", 100.0), row("new", "x", 1.0)];
        let c = compare(std::slice::from_ref(&base), &cur, None, S).unwrap();
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
