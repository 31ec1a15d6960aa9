//! `zvbench compare`: a history of baseline runs against the current run, in one of the
//! formats CI tools read.

use anyhow::Result;
use clap::ValueEnum;
use std::path::{Path, PathBuf};
use zvbench_reports::compare;
use zvbench_reports::export::{self, Direction};

/// How the comparison is printed.
#[derive(Clone, Copy, ValueEnum)]
pub enum CompareFormat {
    /// Markdown table.
    Md,
    /// JSON array.
    Json,
    /// github-action-benchmark `customBiggerIsBetter` JSON (throughput, IOPS).
    GithubBigger,
    /// github-action-benchmark `customSmallerIsBetter` JSON (latencies).
    GithubSmaller,
    /// Bencher Metric Format JSON.
    Bencher,
    /// Markdown for `$GITHUB_STEP_SUMMARY`.
    StepSummary,
}

fn parse_boundary(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.5..=0.99999).contains(&v) => Ok(v),
        _ => Err(format!(
            "{s:?} is not a boundary from 0.5 to 0.99999 (e.g. 0.999)"
        )),
    }
}

fn parse_pct(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage like 5%"))?;
    if (0.0..100.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("threshold {v} must be from 0 to 100 percent"))
    }
}

fn pretty(v: &impl serde::Serialize) -> Result<String> {
    Ok(serde_json::to_string_pretty(v)?)
}

/// `zvbench compare`'s arguments.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Baseline run directories or directories of them, oldest first (several runs: a
    /// t-test over the runs; one: a conservative 25% threshold).
    #[arg(required = true, num_args = 1..)]
    pub base: Vec<PathBuf>,
    /// The current run directory.
    #[arg(required = true)]
    pub cur: PathBuf,
    /// A second run of the current commit (same scenario): a metric regresses only when
    /// both runs lie beyond the band. Give it after an exit 3.
    #[arg(long, value_name = "DIR")]
    pub confirm: Option<PathBuf>,
    /// Smallest change that counts, in percent (`5` or `5%`).
    #[arg(long, default_value = "5%", value_parser = parse_pct)]
    pub threshold: f64,
    /// Use only the newest N baseline runs (the lookback window).
    #[arg(long, default_value_t = 12, value_parser = clap::value_parser!(u32).range(1..))]
    pub lookback: u32,
    /// One-sided boundary of the t-test, from 0.5 to 0.99999.
    #[arg(long, default_value_t = compare::DEFAULT_BOUNDARY, value_parser = parse_boundary)]
    pub boundary: f64,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CompareFormat::Md)]
    pub format: CompareFormat,
}

/// Prints the comparison; exit status 1 on flushes lost at any layer or a regression the
/// confirmation run shows too, 3 on a regression in the one current run given (confirm
/// it), else 0.
pub fn compare(a: &CompareArgs) -> Result<i32> {
    let read = |d: &Path| zvbench_reports::read_results(&d.join("results.csv"));
    let mut dirs = Vec::new();
    for b in &a.base {
        dirs.extend(zvbench_reports::history::run_dirs(b)?);
    }
    let dirs = &dirs[dirs.len().saturating_sub(a.lookback as usize)..];
    let history = dirs
        .iter()
        .map(|d| read(d))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = compare::Settings {
        threshold_pct: a.threshold,
        boundary: a.boundary,
    };
    // A run compared with itself hides what the gate is for. Paths are resolved once; one
    // that does not resolve is reported when it is read.
    let history_at: Vec<PathBuf> = dirs.iter().filter_map(|d| d.canonicalize().ok()).collect();
    let cur_at = a.cur.canonicalize().ok();
    if cur_at.as_ref().is_some_and(|c| history_at.contains(c)) {
        anyhow::bail!(
            "the current run {} is also one of the baseline runs: compare it with the runs before it",
            a.cur.display()
        );
    }
    if let Some(c) = &a.confirm {
        let at = c.canonicalize().ok();
        if at.is_some() && (at == cur_at || at.as_ref().is_some_and(|p| history_at.contains(p))) {
            anyhow::bail!(
                "--confirm {} is the current run or a baseline run: give a second, fresh run of the same commit and scenario",
                c.display()
            );
        }
    }
    let confirm = a.confirm.as_deref().map(read).transpose()?;
    let c = compare::compare(&history, &read(&a.cur)?, confirm.as_deref(), settings)?;
    match a.format {
        CompareFormat::Md => println!("{}", compare::markdown(&c)),
        CompareFormat::Json => println!("{}", pretty(&c)?),
        CompareFormat::GithubBigger => println!(
            "{}",
            pretty(&export::github_action_benchmark(&c, Direction::Bigger))?
        ),
        CompareFormat::GithubSmaller => println!(
            "{}",
            pretty(&export::github_action_benchmark(&c, Direction::Smaller))?
        ),
        CompareFormat::Bencher => println!("{}", pretty(&export::bencher(&c))?),
        CompareFormat::StepSummary => print!("{}", export::step_summary(&c, a.threshold)),
    }
    Ok(c.outcome().exit_code())
}
