//! `[run]`: how often each pass repeats (a count, or "auto" within limits), the default
//! disk size and the guest time limit, checked into [`RunPlan`].

use super::file::{ScenarioError, Source};
use serde::{Deserialize, Serialize};
use zvbench_agent::ByteSize;

/// `[run]`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunSection {
    /// Each (target, workload) pass is repeated this many times (default 3), or "auto":
    /// until the 95% interval of every workload's median MiB/s is within
    /// ±[`AUTO_HALF_WIDTH_PCT`], at least [`AUTO_MIN_REPS`] and at most `max_repetitions`
    /// times, and no more repetitions once `max_auto_s` have passed on the target.
    #[serde(default)]
    pub repetitions: Repetitions,
    /// Most repetitions of "auto" (default 10).
    #[serde(default = "d_max_reps")]
    pub max_repetitions: u32,
    /// Seconds after which "auto" starts no more repetitions of a target (default 1800).
    #[serde(default = "d_max_auto_s")]
    pub max_auto_s: u64,
    /// Size of every provisioned disk unless a target overrides it (default 1G).
    #[serde(default = "d_disk")]
    pub disk_size: ByteSize,
    /// Longest a guest may run before it is killed, seconds (default 900).
    #[serde(default = "d_timeout")]
    pub guest_timeout_s: u64,
}

/// `[run] repetitions`: a count or "auto" (any other word is refused when `[run]` is
/// checked).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum Repetitions {
    /// A fixed count.
    Count(u32),
    /// "auto": repeat until the median is known to ±[`AUTO_HALF_WIDTH_PCT`].
    Word(String),
}

impl Default for Repetitions {
    fn default() -> Self {
        Repetitions::Count(3)
    }
}

/// "auto" stops when the 95% bootstrap interval of each workload's median MiB/s lies within
/// ±3.5% of it: a tighter bar than the Phoronix Test Suite's (standard deviation under 3.5%
/// of the mean), since an interval of the median is narrower than the spread only by √n.
pub const AUTO_HALF_WIDTH_PCT: f64 = 3.5;

/// "auto" runs at least this many repetitions (an interval from fewer means nothing).
pub const AUTO_MIN_REPS: u32 = 3;

/// Adaptive repetitions of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AutoReps {
    /// No new repetition of a target after this many seconds on it.
    pub max_s: u64,
}

fn d_max_reps() -> u32 {
    10
}
fn d_max_auto_s() -> u64 {
    1800
}
fn d_disk() -> ByteSize {
    ByteSize(1 << 30)
}
fn d_timeout() -> u64 {
    900
}

impl Default for RunSection {
    fn default() -> Self {
        RunSection {
            repetitions: Repetitions::default(),
            max_repetitions: d_max_reps(),
            max_auto_s: d_max_auto_s(),
            disk_size: d_disk(),
            guest_timeout_s: d_timeout(),
        }
    }
}

/// Bounds of `guest_timeout_s`: a guest boots in seconds, and a week is past any pass.
const MIN_TIMEOUT_S: u64 = 10;
const MAX_TIMEOUT_S: u64 = 7 * 86_400;

/// `[run]`, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct RunPlan {
    /// Repetitions (with "auto": the most).
    pub repetitions: u32,
    /// "auto" and its time limit.
    pub auto: Option<AutoReps>,
}

impl RunSection {
    /// Checks the repetitions and the guest timeout; errors point at the key.
    pub(super) fn plan(&self, src: &Source) -> Result<RunPlan, ScenarioError> {
        let (repetitions, auto) = match &self.repetitions {
            Repetitions::Count(n) => (*n, None),
            Repetitions::Word(w) if w != "auto" => {
                return Err(src.err_at_key(
                    "repetitions",
                    format!("[run] repetitions = {w:?}: write a count (1 to 100) or \"auto\""),
                ))
            }
            Repetitions::Word(_) => (
                self.max_repetitions,
                Some(AutoReps {
                    max_s: self.max_auto_s,
                }),
            ),
        };
        if !(1..=100).contains(&repetitions) {
            let key = if auto.is_some() {
                "max_repetitions"
            } else {
                "repetitions"
            };
            return Err(
                src.err_at_key(key, format!("[run] {key} = {repetitions} must be 1 to 100"))
            );
        }
        if auto.is_some() && (repetitions < AUTO_MIN_REPS || self.max_auto_s == 0) {
            return Err(src.err_at_key(
                "max_repetitions",
                format!("[run] repetitions = \"auto\" needs max_repetitions of at least {AUTO_MIN_REPS} and max_auto_s above 0"),
            ));
        }
        if !(MIN_TIMEOUT_S..=MAX_TIMEOUT_S).contains(&self.guest_timeout_s) {
            return Err(src.err_at_key(
                "guest_timeout_s",
                format!(
                    "[run] guest_timeout_s = {} must be {MIN_TIMEOUT_S} to {MAX_TIMEOUT_S} (7 days) seconds",
                    self.guest_timeout_s
                ),
            ));
        }
        Ok(RunPlan { repetitions, auto })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(text: &str) -> Result<RunPlan, String> {
        let src = Source {
            name: "r.toml",
            text,
        };
        let run: RunSection = toml::from_str(text).map_err(|e| e.to_string())?;
        run.plan(&src).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_are_three_repetitions_and_900_seconds() {
        let r = RunSection::default();
        assert_eq!(r.repetitions, Repetitions::Count(3));
        assert_eq!(
            (r.max_repetitions, r.max_auto_s, r.guest_timeout_s),
            (10, 1800, 900)
        );
        assert_eq!(r.disk_size, ByteSize(1 << 30));
        assert_eq!(
            plan("").unwrap(),
            RunPlan {
                repetitions: 3,
                auto: None
            }
        );
    }

    #[test]
    fn errors_point_at_the_key_that_is_wrong() {
        let e = plan("guest_timeout_s = 30\nrepetitions = 101\n").unwrap_err();
        assert_eq!(e, "r.toml:2:1: [run] repetitions = 101 must be 1 to 100");
        let e = plan("repetitions = \"auto\"\nmax_repetitions = 0\n").unwrap_err();
        assert_eq!(e, "r.toml:2:1: [run] max_repetitions = 0 must be 1 to 100");
        let e = plan("repetitions = \"auto\"\nmax_auto_s = 0\n").unwrap_err();
        assert!(e.contains("max_auto_s above 0"), "{e}");
        let e = plan("repetitions = 1\n\nguest_timeout_s = 604801\n").unwrap_err();
        assert!(
            e.starts_with("r.toml:3:1: [run] guest_timeout_s = 604801 must be 10"),
            "{e}"
        );
    }
}
