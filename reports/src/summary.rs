//! `summary.md`: one GitHub-flavoured Markdown table per workload, medians with their
//! min–max spread, each target relative to the host baseline, the flush trace, and the
//! diagnosis.

use crate::diagnose::{trace, Finding};
use crate::layer::Layer;
use crate::stats::{cell, Spread};
use crate::ResultRow;
use std::fmt::Write;

/// The distinct keys of `rows` in first-seen order.
pub(crate) fn order<'a>(
    rows: impl IntoIterator<Item = &'a ResultRow>,
    key: impl Fn(&'a ResultRow) -> &'a str,
) -> Vec<&'a str> {
    let mut v: Vec<&str> = Vec::new();
    for r in rows {
        let k = key(r);
        if !v.contains(&k) {
            v.push(k);
        }
    }
    v
}

/// One workload's table: its heading, column names and cells, shared by `summary.md` and
/// `report.html`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The workload and its parameters.
    pub heading: String,
    /// Cells, one row per target, in [`COLUMNS`] order.
    pub rows: Vec<Vec<String>>,
}

/// Column names of a [`Table`], and whether each is numeric (right-aligned).
pub const COLUMNS: [(&str, bool); 9] = [
    ("target", false),
    ("storage", false),
    ("cache", false),
    ("MiB/s median (min–max)", true),
    ("IOPS", true),
    ("p99 latency µs", true),
    ("p99 flush µs", true),
    ("vs host", true),
    (
        "flushes: agent → guest dev → hypervisor → host dev → ZIL → vdevs",
        false,
    ),
];

/// One table per workload, in first-seen order.
pub fn tables(rows: &[ResultRow]) -> Vec<Table> {
    let mut out = Vec::new();
    for w in order(rows, |r| r.workload.as_str()) {
        let wrows: Vec<&ResultRow> = rows.iter().filter(|r| r.workload == w).collect();
        let f = wrows[0];
        let every = if f.sync_every > 0 {
            format!(" every {}", f.sync_every)
        } else {
            String::new()
        };
        // Queue depth, jobs, mix and time: only where they differ from a plain pass.
        let mut shape = String::new();
        if f.kind == "randrw" {
            if let Some(m) = f.rw_mix_read {
                shape.push_str(&format!(", {m}% reads"));
            }
        }
        if let (Some(qd), Some(engine)) = (f.iodepth, f.engine.as_deref()) {
            if qd > 1 || f.numjobs.is_some_and(|n| n > 1) {
                shape.push_str(&format!(", iodepth={qd} ({engine})"));
            }
        }
        if let Some(n) = f.numjobs.filter(|&n| n > 1) {
            shape.push_str(&format!(", numjobs={n}"));
        }
        if let Some(t) = f.runtime_s {
            shape.push_str(&format!(", runtime={t} s"));
        }
        let heading = format!(
            "{w} — {} bs {} B, {} B, direct={}, sync={}{every}{shape}",
            f.kind, f.bs_bytes, f.size_bytes, f.direct, f.sync
        );
        let host_mib = Spread::of(
            wrows
                .iter()
                .filter(|r| r.storage == "host")
                .map(|r| r.mib_per_s),
        );
        let mut cells = Vec::new();
        for t in order(wrows.iter().copied(), |r| r.target.as_str()) {
            let trows: Vec<&ResultRow> = wrows.iter().copied().filter(|r| r.target == t).collect();
            let mib = Spread::of(trows.iter().map(|r| r.mib_per_s));
            let rel = match (mib, host_mib) {
                (Some(m), Some(h)) if h.median > 0.0 => format!("{:.2}x host", m.median / h.median),
                _ => "–".into(),
            };
            let tr = trace(&trows);
            let trace_cell = Layer::ALL
                .iter()
                .map(|l| {
                    tr.iter()
                        .find(|(n, _)| n == l)
                        .map(|(_, v)| format!("{v:.0}"))
                        .unwrap_or_else(|| "·".into())
                })
                .collect::<Vec<_>>()
                .join(" → ");
            cells.push(vec![
                t.to_string(),
                trows[0].storage.clone(),
                if trows[0].cache.is_empty() {
                    "–".into()
                } else {
                    trows[0].cache.clone()
                },
                cell(mib, 1),
                cell(Spread::of(trows.iter().map(|r| r.iops)), 0),
                cell(Spread::of(trows.iter().map(|r| r.lat_p99_us)), 0),
                cell(Spread::of(trows.iter().filter_map(|r| r.flush_p99_us)), 0),
                rel,
                trace_cell,
            ]);
        }
        out.push(Table {
            heading,
            rows: cells,
        });
    }
    out
}

/// Column names of the power-cut table.
pub const POWERCUT_COLUMNS: [&str; 9] = [
    "target",
    "workload",
    "cache",
    "cuts",
    "acked blocks",
    "lost (most at one cut)",
    "cuts with loss",
    "stale / torn",
    "verdict",
];

/// One row per (target, workload) checked with `--powercut`, summed over repetitions
/// (the most lost, stale and torn at one cut; cuts and cuts with loss added up).
pub fn powercut_rows(rows: &[ResultRow]) -> Vec<Vec<String>> {
    let checked: Vec<&ResultRow> = rows.iter().filter(|r| r.powercut_cuts.is_some()).collect();
    let mut out = Vec::new();
    for t in order(checked.iter().copied(), |r| r.target.as_str()) {
        let trows: Vec<&ResultRow> = checked.iter().copied().filter(|r| r.target == t).collect();
        for w in order(trows.iter().copied(), |r| r.workload.as_str()) {
            let g: Vec<&ResultRow> = trows.iter().copied().filter(|r| r.workload == w).collect();
            let sum = |f: fn(&ResultRow) -> Option<u64>| {
                g.iter()
                    .filter_map(|r| f(r))
                    .fold(0u64, u64::saturating_add)
            };
            let max =
                |f: fn(&ResultRow) -> Option<u64>| g.iter().filter_map(|r| f(r)).max().unwrap_or(0);
            let lost = max(|r| r.powercut_lost_blocks);
            let verdict = match g.iter().find_map(|r| r.powercut_dropped_at.as_deref()) {
                Some(at) if lost > 0 => format!("not durable: {at}"),
                _ if lost > 0 => "not durable".into(),
                _ => "durable".into(),
            };
            out.push(vec![
                t.to_string(),
                w.to_string(),
                g[0].cache.clone(),
                sum(|r| r.powercut_cuts).to_string(),
                max(|r| r.powercut_acked_blocks).to_string(),
                lost.to_string(),
                sum(|r| r.powercut_cuts_lost).to_string(),
                format!(
                    "{} / {}",
                    max(|r| r.powercut_stale_blocks),
                    max(|r| r.powercut_torn_blocks)
                ),
                verdict,
            ]);
        }
    }
    out
}

/// The power-cut section of `summary.md` from [`powercut_rows`] (empty when no pass was
/// checked).
pub fn render_powercut(cells: &[Vec<String>]) -> String {
    md_table(
        "Power cuts",
        POWERCUT_INTRO,
        &POWERCUT_COLUMNS,
        cells,
        powercut_numeric,
    )
}

/// The power-cut table's explanation, under its heading.
pub const POWERCUT_INTRO: &str = "Acknowledged blocks checked after simulated power cuts (`--powercut`): stable storage rebuilt from the write log (QEMU's `blklogwrites`; under a VirtualBox image, zvbench's FUSE log), every write before the last completed flush and none after.";

/// Which of [`POWERCUT_COLUMNS`] hold numbers (right-aligned).
pub fn powercut_numeric(i: usize) -> bool {
    (3..8).contains(&i)
}

/// Where a finding applies, as the summary prints it (empty for run-wide findings).
pub fn place(f: &Finding) -> String {
    match (f.target.is_empty(), f.workload.is_empty()) {
        (true, _) => String::new(),
        (false, true) => f.target.clone(),
        (false, false) => format!("{} / {}", f.target, f.workload),
    }
}

/// Said when no rule fired.
pub const NO_FINDINGS: &str =
    "No rule fired: no flush dropped or amplified between layers, no guest faster than its host, no cache measured.";

/// Renders the summary of `tables` (see [`tables`]). `title` heads the page; `powercut`
/// ([`render_powercut`], maybe empty) goes before the diagnosis it backs.
pub fn render(title: &str, tables: &[Table], findings: &[Finding], powercut: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {title}\n");
    for t in tables {
        let _ = writeln!(md, "## {}\n", t.heading);
        let names: Vec<&str> = COLUMNS.iter().map(|c| c.0).collect();
        let _ = writeln!(md, "| {} |", names.join(" | "));
        let align: Vec<&str> = COLUMNS
            .iter()
            .map(|c| if c.1 { "---:" } else { "---" })
            .collect();
        let _ = writeln!(md, "|{}|", align.join("|"));
        for r in &t.rows {
            let _ = writeln!(md, "| {} |", r.join(" | "));
        }
        md.push('\n');
    }
    if !powercut.is_empty() {
        md.push_str(powercut.trim_start_matches('\n'));
        md.push('\n');
    }
    let _ = writeln!(md, "## Diagnosis\n");
    if findings.is_empty() {
        let _ = writeln!(md, "{NO_FINDINGS}");
    }
    for f in findings {
        let place = match place(f) {
            p if p.is_empty() => p,
            p => format!("**{p}**: "),
        };
        let _ = writeln!(
            md,
            "- `{}` {place}{}. Evidence: {}",
            f.rule, f.message, f.evidence
        );
    }
    md
}

/// A Markdown section: `## heading`, the intro, and a table of `cells` under `columns`
/// (right-aligned where `numeric` says); empty when there are no cells.
pub fn md_table(
    heading: &str,
    intro: &str,
    columns: &[&str],
    cells: &[Vec<String>],
    numeric: impl Fn(usize) -> bool,
) -> String {
    if cells.is_empty() {
        return String::new();
    }
    let align: Vec<&str> = (0..columns.len())
        .map(|i| if numeric(i) { "---:" } else { "---" })
        .collect();
    let mut md = format!(
        "\n## {heading}\n\n{intro}\n\n| {} |\n|{}|\n",
        columns.join(" | "),
        align.join("|")
    );
    for r in cells {
        md.push_str(&format!("| {} |\n", r.join(" | ")));
    }
    md
}

/// `summary.md`'s "Guest boot" section: per guest target, over its boots (one per
/// repetition), the time from the VM's start to the agent's Hello and to the first pass,
/// the guest kernel's uptime at the agent's start, and the passes' own time — so a boot
/// that costs more than the measurement shows. Empty when no row has a boot timeline.
pub fn boot_overhead(rows: &[ResultRow]) -> String {
    let booted: Vec<&ResultRow> = rows.iter().filter(|r| r.boot_hello_ms.is_some()).collect();
    if booted.is_empty() {
        return String::new();
    }
    let mut md = String::from(
        "\n## Guest boot\n\n| target | boots | VM start → agent Hello s | kernel start → agent s (guest clock) | VM start → first pass s | passes s per boot |\n|---|---:|---:|---:|---:|---:|\n",
    );
    let secs = |v: Vec<f64>| crate::stats::cell(Spread::of(v), 1);
    for t in order(booted.iter().copied(), |r| r.target.as_str()) {
        let trows: Vec<&ResultRow> = booted.iter().copied().filter(|r| r.target == t).collect();
        // One boot per repetition: its timeline is on each of its rows.
        let reps = order(trows.iter().copied(), |r| r.workload.as_str())
            .first()
            .map(|w| {
                trows
                    .iter()
                    .copied()
                    .filter(|r| r.workload == *w)
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let ms = |f: fn(&ResultRow) -> Option<u64>| {
            reps.iter()
                .filter_map(|r| f(r))
                .map(|m| m as f64 / 1000.0)
                .collect::<Vec<_>>()
        };
        let passes: Vec<f64> = reps
            .iter()
            .map(|b| {
                trows
                    .iter()
                    .filter(|r| r.repetition == b.repetition)
                    .map(|r| r.seconds)
                    .sum()
            })
            .collect();
        let _ = writeln!(
            md,
            "| {t} | {} | {} | {} | {} | {} |",
            reps.len(),
            secs(ms(|r| r.boot_hello_ms)),
            secs(ms(|r| r.guest_boot_ms)),
            secs(ms(|r| r.boot_first_pass_ms)),
            secs(passes)
        );
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{diagnose, Context};

    fn rows() -> Vec<ResultRow> {
        let mut v = Vec::new();
        for (rep, (h, d)) in [(30.0, 50.0), (36.0, 54.0), (40.0, 60.0)]
            .into_iter()
            .enumerate()
        {
            v.push(ResultRow {
                target: "host".into(),
                storage: "host".into(),
                hypervisor: "none".into(),
                workload: "fsync".into(),
                kind: "seqwr".into(),
                bs_bytes: 16384,
                size_bytes: 1 << 20,
                sync: "fsync".into(),
                sync_every: 1,
                repetition: rep as u32 + 1,
                mib_per_s: h,
                iops: h * 64.0,
                lat_p99_us: 100.0,
                flush_p99_us: Some(2000.0),
                agent_flushes: 65,
                host_dev_flushes: Some(65),
                ..Default::default()
            });
            v.push(ResultRow {
                target: "vdi".into(),
                storage: "image".into(),
                hypervisor: "qemu".into(),
                accel: "tcg".into(),
                bus: "virtio".into(),
                cache: "unsafe".into(),
                workload: "fsync".into(),
                kind: "seqwr".into(),
                bs_bytes: 16384,
                size_bytes: 1 << 20,
                sync: "fsync".into(),
                sync_every: 1,
                repetition: rep as u32 + 1,
                mib_per_s: d,
                iops: d * 64.0,
                lat_p99_us: 300.0,
                flush_p99_us: Some(500.0),
                agent_flushes: 65,
                guest_dev_flushes: Some(65),
                hv_flushes: Some(65),
                host_dev_flushes: Some(0),
                ..Default::default()
            });
        }
        v
    }

    #[test]
    fn boot_overhead_is_one_line_per_guest_target_one_boot_per_repetition() {
        let mut rows = rows();
        assert_eq!(boot_overhead(&rows), "", "no timeline, no section");
        for (i, r) in rows.iter_mut().filter(|r| r.target == "vdi").enumerate() {
            r.boot_hello_ms = Some(3000 + 100 * i as u64);
            r.guest_boot_ms = Some(2500);
            r.boot_first_pass_ms = Some(3500 + 100 * i as u64);
            r.seconds = 0.5;
        }
        let mut second = rows.iter().find(|r| r.target == "vdi").unwrap().clone();
        second.workload = "read".into();
        rows.push(second);
        let md = boot_overhead(&rows);
        let lines: Vec<&str> = md.lines().collect();
        assert_eq!(
            lines[..2],
            ["", "## Guest boot"],
            "a blank line after the diagnosis"
        );
        assert_eq!(lines.len(), 7, "{md}");
        // Repetition 1 ran two workloads: 1.0 s of passes in that boot.
        assert_eq!(
            lines[5],
            "| vdi | 3 | 3.1 (3.0–3.2) | 2.5 (2.5–2.5) | 3.6 (3.5–3.7) | 0.5 (0.5–1.0) |"
        );
    }

    /// Golden test: the whole page for a small, known result set.
    #[test]
    fn powercut_table_only_for_checked_passes() {
        let mut rows = rows();
        assert_eq!(render_powercut(&powercut_rows(&rows)), "");
        for r in rows.iter_mut().filter(|r| r.target == "vdi") {
            r.powercut_cuts = Some(21);
            r.powercut_cuts_lost = Some(20);
            r.powercut_acked_blocks = Some(64);
            r.powercut_lost_blocks = Some(r.repetition as u64);
            r.powercut_stale_blocks = Some(0);
            r.powercut_torn_blocks = Some(0);
            r.powercut_dropped_at = Some("QEMU cache=unsafe".into());
        }
        let md = render_powercut(&powercut_rows(&rows));
        assert!(
            md.contains("| vdi | fsync | unsafe | 63 | 64 | 3 | 60 | 0 / 0 | not durable: QEMU cache=unsafe |"),
            "{md}"
        );
        assert!(!md.contains("| host |"), "{md}");
    }

    #[test]
    fn golden_summary() {
        let rows = rows();
        let md = render(
            "zvbench quick",
            &tables(&rows),
            &diagnose(&rows, &Context::default()),
            "",
        );
        let want = "# zvbench quick

## fsync — seqwr bs 16384 B, 1048576 B, direct=false, sync=fsync every 1

| target | storage | cache | MiB/s median (min–max) | IOPS | p99 latency µs | p99 flush µs | vs host | flushes: agent → guest dev → hypervisor → host dev → ZIL → vdevs |
|---|---|---|---:|---:|---:|---:|---:|---|
| host | host | – | 36.0 (30.0–40.0) | 2304 (1920–2560) | 100 (100–100) | 2000 (2000–2000) | 1.00x host | 65 → · → · → 65 → · → · |
| vdi | image | unsafe | 54.0 (50.0–60.0) | 3456 (3200–3840) | 300 (300–300) | 500 (500–500) | 1.50x host | 65 → 65 → 65 → 0 → · → · |

## Diagnosis

- `flushes-dropped` **vdi / fsync**: flushes dropped between hypervisor and host device: QEMU cache=unsafe ignores guest flushes: the results are not durable. Evidence: agent 65 → guest device 65 → hypervisor 65 → host device 0
- `guest-faster-than-host` **vdi / fsync**: a guest out-writes its own host on a flush-bound workload: its flushes are not reaching the disk. Evidence: 54.0 MiB/s in the guest vs 36.0 MiB/s on the host (1.50x)
- `software-emulation` guests ran under TCG software emulation: compare guests with each other and flush counts anywhere, but not guest throughput with a KVM host. Evidence: accel=tcg for vdi
";
        assert_eq!(md, want);
    }

    #[test]
    fn headings_name_depth_jobs_mix_and_time_only_when_set() {
        let mut rows = rows();
        for r in &mut rows {
            (r.kind, r.rw_mix_read, r.iodepth, r.numjobs) =
                ("randrw".into(), Some(70), Some(16), Some(2));
            (r.engine, r.runtime_s) = (Some("io_uring".into()), Some(10.0));
        }
        let md = render("t", &tables(&rows), &[], "");
        assert!(
            md.contains(
                "sync=fsync every 1, 70% reads, iodepth=16 (io_uring), numjobs=2, runtime=10 s\n"
            ),
            "{md}"
        );
        for r in &mut rows {
            (r.kind, r.iodepth, r.numjobs, r.runtime_s) = ("seqwr".into(), Some(1), Some(1), None);
        }
        let md = render("t", &tables(&rows), &[], "");
        assert!(md.contains("sync=fsync every 1\n"), "{md}");
    }
}
