//! `zvbench compare --format …`: a [`Comparison`] in the formats of the trackers people
//! already run in CI, and as a GitHub job summary.
//!
//! - github-action-benchmark's custom tools take a JSON array of
//!   `{name, unit, value, range?, extra?}`, one direction per file: `customBiggerIsBetter`
//!   (throughput, IOPS) or `customSmallerIsBetter` (latencies).
//! - Bencher Metric Format (BMF) is `{benchmark: {measure: {value, lower_value?,
//!   upper_value?}}}`; here the benchmark is `target/workload` and each compared metric a
//!   measure whose bounds are the band the verdict rests on, around the baseline.
//! - The value exported is the current run's value as `compare` judged it (each change's
//!   `per_run`: the best pass for throughput with two or more baseline runs, the median
//!   pass otherwise), so a tracked series changes statistic when the history grows from
//!   one run to two.
//! - The step summary is Markdown for `$GITHUB_STEP_SUMMARY`: the verdict first, then the
//!   regressions, then every change folded away.

use crate::compare::{Comparison, Outcome, Verdict, METRICS};
use crate::stats::fixed;
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// Which direction of github-action-benchmark's custom tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// `customBiggerIsBetter`: throughput and IOPS.
    Bigger,
    /// `customSmallerIsBetter`: latencies.
    Smaller,
}

fn higher_is_better(metric: &str) -> bool {
    METRICS
        .iter()
        .find(|m| m.name == metric)
        .is_none_or(|m| m.higher_is_better)
}

fn unit(metric: &str) -> &'static str {
    match metric {
        "mib_per_s" => "MiB/s",
        "iops" => "IOPS",
        m if m.ends_with("_us") => "us",
        _ => "",
    }
}

/// github-action-benchmark custom JSON of the metrics of one direction (current values).
pub fn github_action_benchmark(c: &Comparison, dir: Direction) -> Value {
    let want_bigger = dir == Direction::Bigger;
    Value::Array(
        c.changes
            .iter()
            .filter(|ch| higher_is_better(ch.metric) == want_bigger && ch.cur.is_finite())
            .map(|ch| {
                json!({
                    "name": format!("{}/{}/{}", ch.target, ch.workload, ch.metric),
                    "unit": unit(ch.metric),
                    "value": ch.cur,
                    "range": format!("band of the verdict {:+.1}% … {:+.1}%", ch.ci_pct.0, ch.ci_pct.1),
                    "extra": format!("baseline {}; {:+.1}%; {}", fixed(ch.base, 1), ch.change_pct, ch.verdict.label()),
                })
            })
            .collect(),
    )
}

/// Bencher Metric Format JSON of every change (current values).
pub fn bencher(c: &Comparison) -> Value {
    let mut out = Map::new();
    for ch in c.changes.iter().filter(|ch| ch.cur.is_finite()) {
        let mut measure = Map::new();
        measure.insert("value".into(), json!(ch.cur));
        let (lo, hi) = (
            ch.base * (1.0 + ch.ci_pct.0 / 100.0),
            ch.base * (1.0 + ch.ci_pct.1 / 100.0),
        );
        if lo.is_finite() && hi.is_finite() && lo <= hi {
            measure.insert("lower_value".into(), json!(lo));
            measure.insert("upper_value".into(), json!(hi));
        }
        let bench = out
            .entry(format!("{}/{}", ch.target, ch.workload))
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(m) = bench {
            m.insert(ch.metric.replace('_', "-"), Value::Object(measure));
        }
    }
    Value::Object(out)
}

/// Markdown for a GitHub job summary.
pub fn step_summary(c: &Comparison, threshold_pct: f64) -> String {
    let count = |v| c.changes.iter().filter(|ch| ch.verdict == v).count();
    let (reg, imp) = (count(Verdict::Regressed), count(Verdict::Improved));
    let mut md = String::from("## zvbench compare\n\n");
    let _ = writeln!(
        md,
        "{} {reg} regressed, {imp} improved, {} within noise (a change counts beyond the band of the noise and beyond ±{threshold_pct}%).\n\nOutcome: {}.\n",
        match c.outcome() {
            Outcome::Pass => ":white_check_mark:",
            Outcome::Regressed => ":x:",
            Outcome::Unconfirmed => ":warning:",
        },
        c.changes.len() - reg - imp,
        crate::compare::outcome_line(c)
    );
    let table = |md: &mut String, rows: &mut dyn Iterator<Item = &crate::compare::Change>| {
        md.push_str("| target | workload | metric | pass | base | current | change | band |\n|---|---|---|---|---:|---:|---:|---:|\n");
        for ch in rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {:+.1}% | {:+.1}% … {:+.1}% |",
                ch.target.replace('|', "\\|"),
                ch.workload.replace('|', "\\|"),
                ch.metric,
                ch.per_run.label(),
                fixed(ch.base, 1),
                fixed(ch.cur, 1),
                ch.change_pct,
                ch.ci_pct.0,
                ch.ci_pct.1
            );
        }
    };
    if reg > 0 {
        md.push_str("### Regressions\n\n");
        table(
            &mut md,
            &mut c
                .changes
                .iter()
                .filter(|ch| ch.verdict == Verdict::Regressed),
        );
        md.push('\n');
    }
    // Lost flushes fail the gate whatever the throughput did: the same section as `--format md`.
    for (title, flushes) in [
        (crate::compare::FLUSH_TITLE, &c.flushes),
        (crate::compare::CONFIRM_FLUSH_TITLE, &c.confirm_flushes),
    ] {
        if flushes
            .iter()
            .any(|f| f.verdict != crate::flushgate::FlushVerdict::Same)
        {
            md.push_str(&crate::compare::flush_section(title, flushes));
            md.push('\n');
        }
    }
    md.push_str("<details><summary>Every compared metric</summary>\n\n");
    table(&mut md, &mut c.changes.iter());
    md.push_str("\n</details>\n");
    let unmatched = c.only_in_base.len() + c.only_in_current.len();
    if unmatched > 0 {
        let _ = writeln!(
            md,
            "\n{unmatched} target/workload pairs are in only one run and were not compared."
        );
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::compare;
    use crate::ResultRow;

    fn rows(mib: &[f64], lat: f64) -> Vec<ResultRow> {
        mib.iter()
            .enumerate()
            .map(|(i, &m)| ResultRow {
                target: "zvol".into(),
                workload: "rand4k".into(),
                repetition: i as u32 + 1,
                mib_per_s: m,
                iops: m * 256.0,
                seconds: 1.0,
                lat_p99_us: lat,
                ..Default::default()
            })
            .collect()
    }

    const SETTINGS: crate::compare::Settings = crate::compare::Settings {
        threshold_pct: 5.0,
        boundary: 0.999,
    };

    fn comparison() -> Comparison {
        compare(
            &[rows(&[100.0, 101.0, 99.0], 50.0)],
            &rows(&[60.0, 61.0, 59.0], 50.0),
            None,
            SETTINGS,
        )
        .unwrap()
    }

    #[test]
    fn github_action_benchmark_splits_by_direction() {
        let c = comparison();
        let big = github_action_benchmark(&c, Direction::Bigger);
        let names: Vec<&str> = big
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["zvol/rand4k/mib_per_s", "zvol/rand4k/iops"]);
        assert_eq!(big[0]["unit"], "MiB/s");
        assert_eq!(big[0]["value"], 60.0);
        assert!(big[0]["extra"].as_str().unwrap().contains("regressed"));
        let small = github_action_benchmark(&c, Direction::Smaller);
        assert_eq!(small[0]["name"], "zvol/rand4k/lat_p99_us");
        assert_eq!(small[0]["unit"], "us");
    }

    #[test]
    fn bencher_metric_format_nests_measures_under_benchmarks() {
        let b = bencher(&comparison());
        let m = &b["zvol/rand4k"]["mib-per-s"];
        assert_eq!(m["value"], 60.0);
        let (lo, hi) = (
            m["lower_value"].as_f64().unwrap(),
            m["upper_value"].as_f64().unwrap(),
        );
        assert!(lo <= 60.0 + 1.0 && hi >= 60.0 - 1.0 && lo <= hi, "{m}");
        assert_eq!(b["zvol/rand4k"]["lat-p99-us"]["value"], 50.0);
    }

    #[test]
    fn step_summary_leads_with_the_verdict_and_lists_regressions() {
        let md = step_summary(&comparison(), 5.0);
        // One current run: a regression is a suspicion until a confirmation run shows it.
        assert!(md.contains(":warning: 2 regressed"), "{md}");
        assert!(md.contains("unconfirmed"), "{md}");
        assert!(md.contains("### Regressions"));
        assert!(md.contains("<details>"));
        let same = compare(
            &[rows(&[100.0, 101.0, 99.0], 50.0)],
            &rows(&[100.0, 101.0, 99.0], 50.0),
            None,
            SETTINGS,
        )
        .unwrap();
        let md = step_summary(&same, 5.0);
        assert!(
            md.contains(":white_check_mark: 0 regressed") && !md.contains("### Regressions"),
            "{md}"
        );
    }
}
