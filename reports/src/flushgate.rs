//! The flush-count gate of `compare`: per (target, workload) and per layer of the flush
//! trace ([`Layer::ALL`], so a layer added there is gated here too), whether as
//! many flushes arrived as in the baseline. Counts are exact, so there is no noise band:
//! fewer is a loss whatever the throughput did. Two known effects are handled by rule:
//!
//! - **QEMU's skip.** QEMU completes a flush without passing it down when nothing was
//!   written since the previous one (docs/architecture.md, "Counters"). In a pass that is at
//!   most its closing flush, so a layer below a QEMU hypervisor may see exactly one fewer
//!   than before: reported as [`FlushVerdict::QemuSkip`], not a loss. Never down to 0: the
//!   first flush after the pass's writes always goes down (measured: with cache=unsafe a
//!   1M write pass went from 1 host flush to 0, and that is a loss).
//! - **Shared host counters.** A host device (and what is below it) also counts other
//!   programs' flushes, which can only add. A target whose file lies on a host filesystem
//!   (`storage` host or image: the device carries that filesystem's journal and everyone's
//!   files) shares it always; any other target does when `diagnose::shared_host_counter`
//!   finds it in either run. Such host-side layers are compared by their smallest count
//!   over the passes (the least disturbed), and a change no larger than the most the
//!   counter saw in a pass of the target that issued no flush (pure noise) is not gated.
//!   In a workload whose agent issued no flush such a counter holds only other programs'
//!   flushes: nothing to gate. Measured: a VDI with cache=unsafe went from 5 host flushes
//!   to 0 between two same-commit runs, while its read passes saw up to 118.

use crate::diagnose;
use crate::layer::Layer;
use crate::stats::Spread;
use crate::ResultRow;
use std::collections::BTreeSet;

/// What happened to one layer's flush count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FlushVerdict {
    /// As many as before.
    Same,
    /// Fewer arrived: a regression whatever the noise.
    Lost,
    /// More arrived: something adds flushes.
    Amplified,
    /// Exactly one fewer below a QEMU hypervisor: its skip of a flush with nothing written.
    QemuSkip,
    /// The layer reads 0 while a layer below it still counts: a counter that cannot see
    /// flushes (bio-based device, NVMe in QEMU's stats), not a loss.
    Blind,
}

/// One layer of one (target, workload).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FlushChange {
    /// Target.
    pub target: String,
    /// Workload.
    pub workload: String,
    /// The layer (its name in JSON and Markdown).
    pub layer: Layer,
    /// Baseline count per pass (median; the minimum on a shared counter).
    pub base: f64,
    /// Current count per pass, the same statistic.
    pub cur: f64,
    /// The counter also counts other programs' flushes.
    pub shared: bool,
    /// On a shared counter: the most it counted in a pass of the target that issued no
    /// flush; a change within it is not gated.
    pub noise: f64,
    /// The verdict.
    pub verdict: FlushVerdict,
}

/// The count of `layer` in each pass that has it.
fn counts(rows: &[&ResultRow], layer: Layer) -> Vec<f64> {
    rows.iter()
        .filter_map(|r| layer.flushes(r).map(|n| n as f64))
        .collect()
}

fn stat(v: &[f64], shared: bool) -> Option<f64> {
    let s = Spread::of(v.iter().copied())?;
    Some(if shared { s.min } else { s.median })
}

/// Gates the flush counts of every (target, workload) of `cur` that is in `base` (all
/// baseline runs' rows together: counts do not drift between runs).
pub fn gate(base: &[ResultRow], cur: &[ResultRow]) -> Vec<FlushChange> {
    let bg = diagnose::groups(base);
    let cg = diagnose::groups(cur);
    // Targets whose host counters count flushes of passes that issued none.
    let shared: BTreeSet<String> = diagnose::shared_host_counter(&bg)
        .into_iter()
        .chain(diagnose::shared_host_counter(&cg))
        .map(|f| f.target)
        .collect();
    let mut out = Vec::new();
    for ((t, w), crows) in &cg {
        let Some(brows) = bg.get(&(t.clone(), w.clone())) else {
            continue;
        };
        let qemu = crows[0].hypervisor == "qemu";
        // On a shared counter, passes that issued no flush count only other programs'.
        let issued = stat(&counts(brows, Layer::Agent), false).unwrap_or(0.0) > 0.0;
        let cur_trace = diagnose::trace(crows);
        let on_host_fs = matches!(crows[0].storage.as_str(), "host" | "image");
        // The target's passes that issued no flush, in either run (for the shared layers).
        let quiet: Vec<&ResultRow> = if on_host_fs || shared.contains(t) {
            base.iter()
                .chain(cur)
                .filter(|r| &r.target == t && r.agent_flushes == 0)
                .collect()
        } else {
            Vec::new()
        };
        for layer in Layer::ALL {
            let is_shared = (on_host_fs || shared.contains(t)) && layer.on_host();
            let (Some(b), Some(c)) = (
                stat(&counts(brows, layer), is_shared),
                stat(&counts(crows, layer), is_shared),
            ) else {
                continue;
            };
            let below_counts = cur_trace
                .iter()
                .filter(|&&(l, _)| l > layer)
                .any(|&(_, n)| n > 0.0);
            // Other programs' flushes seen on this counter in passes that issued none (the
            // target's, in either run): a difference within them proves nothing.
            let noise = if is_shared {
                counts(&quiet, layer).into_iter().fold(0.0, f64::max)
            } else {
                0.0
            };
            let verdict = if c == b || (is_shared && (!issued || (c - b).abs() <= noise)) {
                FlushVerdict::Same
            } else if c == 0.0 && below_counts {
                FlushVerdict::Blind
            } else if qemu && layer.on_host() && (b - c).abs() <= 1.0 && c > 0.0 {
                if c < b {
                    FlushVerdict::QemuSkip
                } else {
                    FlushVerdict::Same
                }
            } else if c < b {
                FlushVerdict::Lost
            } else {
                FlushVerdict::Amplified
            };
            out.push(FlushChange {
                target: t.clone(),
                workload: w.clone(),
                layer,
                base: b,
                cur: c,
                shared: is_shared,
                noise,
                verdict,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pass with these counts at agent, guest device, hypervisor, host device.
    fn pass(target: &str, hv: &str, counts: [u64; 4]) -> ResultRow {
        ResultRow {
            target: target.into(),
            workload: "fsync".into(),
            hypervisor: hv.into(),
            agent_flushes: counts[0],
            guest_dev_flushes: Some(counts[1]),
            hv_flushes: Some(counts[2]),
            host_dev_flushes: Some(counts[3]),
            ..Default::default()
        }
    }

    fn verdicts(base: &[ResultRow], cur: &[ResultRow]) -> Vec<(&'static str, FlushVerdict)> {
        gate(base, cur)
            .into_iter()
            .filter(|c| c.verdict != FlushVerdict::Same)
            .map(|c| (c.layer.name(), c.verdict))
            .collect()
    }

    #[test]
    fn a_dropped_flush_is_lost_at_its_layer_and_more_is_amplification() {
        let base = vec![pass("vdi", "qemu", [129, 129, 129, 128]); 3];
        assert!(verdicts(&base, &base).is_empty());
        // cache=unsafe: the host device sees none.
        let cur = vec![pass("vdi", "qemu", [129, 129, 129, 0]); 3];
        assert_eq!(verdicts(&base, &cur), [("host device", FlushVerdict::Lost)]);
        // Two fewer is not QEMU's skip.
        let cur = vec![pass("vdi", "qemu", [129, 129, 129, 126]); 3];
        assert_eq!(verdicts(&base, &cur), [("host device", FlushVerdict::Lost)]);
        // The guest's disk stops flushing (write through): lost there, and below.
        let cur = vec![pass("vdi", "qemu", [129, 0, 0, 0]); 3];
        assert_eq!(
            verdicts(&base, &cur),
            [
                ("guest device", FlushVerdict::Lost),
                ("hypervisor", FlushVerdict::Lost),
                ("host device", FlushVerdict::Lost)
            ]
        );
        let cur = vec![pass("vdi", "qemu", [129, 129, 129, 400]); 3];
        assert_eq!(
            verdicts(&base, &cur),
            [("host device", FlushVerdict::Amplified)]
        );
    }

    #[test]
    fn qemu_skip_is_one_below_the_hypervisor_only() {
        let base = vec![pass("raw", "qemu", [129, 129, 129, 129]); 3];
        let cur = vec![pass("raw", "qemu", [129, 129, 129, 128]); 3];
        assert_eq!(
            verdicts(&base, &cur),
            [("host device", FlushVerdict::QemuSkip)]
        );
        // Not above the hypervisor: the guest device losing one is a loss.
        let cur = vec![pass("raw", "qemu", [129, 128, 128, 128]); 3];
        assert_eq!(
            verdicts(&base, &cur),
            [
                ("guest device", FlushVerdict::Lost),
                ("hypervisor", FlushVerdict::Lost),
                ("host device", FlushVerdict::QemuSkip)
            ]
        );
        // Never down to zero: the first flush after writes is never skipped.
        let base = vec![pass("raw", "qemu", [1, 1, 1, 1]); 3];
        let cur = vec![pass("raw", "qemu", [1, 1, 1, 0]); 3];
        assert_eq!(verdicts(&base, &cur), [("host device", FlushVerdict::Lost)]);
        // Not under another hypervisor.
        let base = vec![pass("vdi", "virtualbox", [129, 129, 129, 129]); 3];
        let cur = vec![pass("vdi", "virtualbox", [129, 129, 129, 128]); 3];
        assert_eq!(verdicts(&base, &cur), [("host device", FlushVerdict::Lost)]);
    }

    #[test]
    fn shared_host_counter_compares_least_disturbed_passes() {
        // A pass that issued no flush yet saw 5 on the host device marks it shared.
        let quiet = |host| ResultRow {
            workload: "read".into(),
            ..pass("host", "none", [0, 0, 0, host])
        };
        let host = |n| ResultRow {
            guest_dev_flushes: None,
            hv_flushes: None,
            ..pass("host", "none", [129, 0, 0, n])
        };
        let base = vec![host(129), host(140), host(129), quiet(5)];
        // Other programs' flushes in the current run's passes are not amplification...
        let cur = vec![host(131), host(135), host(129), quiet(0)];
        assert!(
            verdicts(&base, &cur).is_empty(),
            "{:?}",
            verdicts(&base, &cur)
        );
        // ...and noise in the baseline does not make the current run lose flushes.
        let cur = vec![host(129), host(129), host(129), quiet(0)];
        assert!(verdicts(&base, &cur).is_empty());
        let g = gate(&base, &cur);
        assert!(g.iter().any(|c| c.layer == Layer::HostDevice && c.shared));
        // A difference within what quiet passes saw is noise...
        let noisy = vec![host(0), host(140), host(129), quiet(5)];
        let cur = vec![host(0), host(0), host(0), quiet(0)];
        let base_vdi = vec![host(5), host(6), host(5), quiet(118)];
        assert!(verdicts(&base_vdi, &cur).is_empty());
        assert_eq!(
            verdicts(&noisy, &[host(0), host(0), host(0)]),
            [],
            "0 → 0 by the minimum"
        );
        // A real loss still fails.
        let cur = vec![host(100), host(110), host(129), quiet(0)];
        assert_eq!(verdicts(&base, &cur), [("host device", FlushVerdict::Lost)]);
        // Without the quiet pass the counter is not known to be shared: the median counts.
        let base = vec![host(129), host(140), host(140)];
        let cur = vec![host(129); 3];
        assert_eq!(verdicts(&base, &cur), [("host device", FlushVerdict::Lost)]);
    }

    #[test]
    fn a_blind_counter_is_not_a_loss() {
        // NVMe: QEMU's flush_operations stops counting, the host still sees them.
        let base = vec![pass("raw", "qemu", [129, 129, 129, 129]); 3];
        let cur = vec![pass("raw", "qemu", [129, 129, 0, 129]); 3];
        assert_eq!(verdicts(&base, &cur), [("hypervisor", FlushVerdict::Blind)]);
    }
}
